/*
 * fuzz_client.c - the client library (net/client.h) reading arbitrary
 * bytes from its server.
 *
 * Input: one byte choosing the call, then everything "the server" sends.
 * The bytes are written into one end of a socketpair, which is then shut
 * for writing; the other end is handed to tkc_attach and the chosen typed
 * call (or a pipeline of three verifies, or two raw calls) runs against it.
 * So the frame reader (header, length limit, request ids, the id-0 notice,
 * EOF mid-frame) and every strict reply decoder (every listing and get of
 * the schema's among them) see hostile input without
 * any timing: the whole answer, and then EOF, is there before the call.
 *
 * Checked: no crash, leak or out-of-bounds access; the result is 0, a
 * local failure (TK_EPROTO, TK_EIO) or a server refusal (tkc_refused);
 * tkc_errmsg is "" after a success and otherwise (a failure, or a raw
 * call's reply with a non-zero status) a one-line message without control
 * characters; on success the outputs are well-formed
 * (credentials parse as secrets of the right kind and agree with their
 * IDs, IDs are canonical UUIDs, strings are terminated within their
 * arrays, lists within their limits, a page's next given with more and
 * only then, a get one row).
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "core/err.h"
#include "core/model.h"
#include "core/secret.h"
#include "net/client.h"
#include "net/proto.h"
#include "tests/fuzz/fuzz.h"

/* The calls; new ones go last, so that gen_corpus's seeds keep their call. */
enum { C_PING, C_AUTH, C_VERIFY, C_PIPELINE, C_TENANT, C_LIST, C_TOKEN, C_KEY, C_USER, C_RAW,
       C_TOKEN_GET, C_TOKEN_SET, C_TENANT_LIST, C_TENANT_GET, C_TENANT_DELETE, C_PERM_LIST,
       C_ROLE_LIST, C_ACCOUNT_LIST, C_USER_LIST, C_USER_GET, C_KEY_LIST, C_COUNT };

/* What the requests carry; no server reads them. */
static const char secret[] = "tkt_not-checked-by-the-client";

static volatile uint8_t sink; /* reads of reply bodies that must not be optimised away */

static void check_str(const char *s, size_t cap, const char *what)
{
    FZ_CHECK(memchr(s, '\0', cap) != NULL, what);
}

static void check_uuid(const char *s, tk_id *id)
{
    tk_id tmp;
    char again[TK_ID_STR_LEN + 1];
    FZ_CHECK(strlen(s) == TK_ID_STR_LEN && secret_id_parse(s, TK_ID_STR_LEN, &tmp) == 0,
             "an ID is a UUID");
    secret_id_format(&tmp, again);
    FZ_CHECK(strcmp(again, s) == 0, "an ID is canonical lowercase");
    if (id)
        *id = tmp;
}

static void check_secret(const char *s, tk_kind want, const tk_id *id)
{
    tk_kind kind;
    tk_id sid;
    uint8_t hash[TK_HASH_LEN];
    FZ_CHECK(strlen(s) == TK_SECRET_LEN && secret_parse(s, TK_SECRET_LEN, &kind, &sid, hash) == 0,
             "a credential parses");
    FZ_CHECK(kind == want, "a credential of the kind asked for");
    if (id)
        FZ_CHECK(memcmp(&sid, id, sizeof sid) == 0, "the secret carries the ID given with it");
}

static void check_verify(const tkc_verify_res *r)
{
    FZ_CHECK(r->valid == (r->verdict == TK_V_VALID), "valid matches verdict");
    if (!r->valid) {
        FZ_CHECK(r->nroles == 0 && r->nperms == 0 && r->client_id[0] == '\0',
                 "an invalid answer carries nothing");
        return;
    }
    check_uuid(r->client_id, NULL);
    check_str(r->tenant, sizeof r->tenant, "tenant terminated");
    check_str(r->account, sizeof r->account, "account terminated");
    FZ_CHECK(r->nroles <= TK_MAX_ROLES && r->nperms <= TK_MAX_TENANT_PERMS, "list limits");
}

static void check_page(const tkc_token_page *p)
{
    FZ_CHECK(p->n <= TKC_LIST_MAX && (!p->more || p->n > 0), "page limits");
    for (size_t i = 0; i < p->n; i++) {
        const tkc_token *t = &p->tokens[i];
        check_uuid(t->client_id, NULL);
        FZ_CHECK(t->description && strlen(t->description) <= TK_DESC_MAX, "description");
        FZ_CHECK(t->nroles <= TK_MAX_ROLES, "roles per token");
        for (uint32_t k = 0; k < t->nroles; k++)
            FZ_CHECK(strlen(t->roles[k]) <= TK_KEY_MAX, "role length");
        check_str(t->created_by, sizeof t->created_by, "created_by terminated");
        FZ_CHECK(t->created_at >= 0 && t->expires_at >= 0, "times not negative");
    }
}

/* Any page: the cursor rule, the row count, next terminated in its array. */
#define CHECK_PAGE(p)                                                                       \
    do {                                                                                    \
        FZ_CHECK((p)->n <= TKC_LIST_MAX && (!(p)->more || (p)->n > 0), "page limits");      \
        check_str((p)->next, sizeof(p)->next, "next terminated");                            \
        FZ_CHECK((p)->more == ((p)->next[0] != '\0'), "next comes with more, and only then"); \
    } while (0)

static void check_text(const char *s, size_t max, const char *what)
{
    FZ_CHECK(s != NULL && strlen(s) <= max, what);
}

static void check_list(const char *const *v, uint32_t n, uint32_t max, const char *what)
{
    FZ_CHECK(n <= max, what);
    for (uint32_t i = 0; i < n; i++)
        check_text(v[i], TK_KEY_MAX, what);
}

static void check_token_page(const tkc_token_page *p, bool get)
{
    CHECK_PAGE(p);
    FZ_CHECK(!get || (p->n == 1 && !p->more), "a get is one row");
    check_page(p);
}

/* The new reads, each checked as far as its types go. */
static int run_read(tkc *c, unsigned call)
{
    int rc = 0;
    switch (call) {
    case C_TOKEN_GET: {
        tkc_token_page p = TKC_PAGE_INIT;
        rc = tkc_token_get(c, "00000000-0000-4000-8000-000000000000", &p);
        if (rc == 0)
            check_token_page(&p, true);
        tkc_token_page_free(&p);
        break;
    }
    case C_TENANT_LIST:
    case C_TENANT_GET: {
        tkc_tenant_page p = TKC_PAGE_INIT;
        rc = call == C_TENANT_GET ? tkc_tenant_get(c, NULL, &p) : tkc_tenant_list(c, NULL, 0, &p);
        if (rc == 0) {
            CHECK_PAGE(&p);
            FZ_CHECK(call != C_TENANT_GET || p.n == 1, "a get is one row");
            for (size_t i = 0; i < p.n; i++)
                check_str(p.tenants[i].tenant, sizeof p.tenants[i].tenant, "tenant terminated");
        }
        tkc_tenant_page_free(&p);
        break;
    }
    case C_PERM_LIST: {
        tkc_perm_page p = TKC_PAGE_INIT;
        rc = tkc_perm_list(c, "acme", NULL, 0, &p);
        if (rc == 0) {
            CHECK_PAGE(&p);
            for (size_t i = 0; i < p.n; i++) {
                check_text(p.perms[i].key, TK_KEY_MAX, "permission key");
                check_text(p.perms[i].description, TK_DESC_MAX, "description");
            }
        }
        tkc_perm_page_free(&p);
        break;
    }
    case C_ROLE_LIST: {
        tkc_role_page p = TKC_PAGE_INIT;
        rc = tkc_role_list(c, "acme", NULL, 0, &p);
        if (rc == 0) {
            CHECK_PAGE(&p);
            for (size_t i = 0; i < p.n; i++) {
                check_text(p.roles[i].key, TK_KEY_MAX, "role key");
                check_text(p.roles[i].name, TK_NAME_MAX, "role name");
                FZ_CHECK(p.roles[i].level <= TK_MAX_LEVEL, "level");
                check_list(p.roles[i].perms, p.roles[i].nperms, TK_MAX_ROLE_PERMS, "role perms");
            }
        }
        tkc_role_page_free(&p);
        break;
    }
    case C_ACCOUNT_LIST: {
        tkc_account_page p = TKC_PAGE_INIT;
        rc = tkc_account_list(c, "acme", NULL, 0, &p);
        if (rc == 0) {
            CHECK_PAGE(&p);
            for (size_t i = 0; i < p.n; i++)
                check_str(p.accounts[i].account, sizeof p.accounts[i].account, "account");
        }
        tkc_account_page_free(&p);
        break;
    }
    case C_USER_LIST:
    case C_USER_GET: {
        tkc_user_page p = TKC_PAGE_INIT;
        rc = call == C_USER_GET ? tkc_user_get(c, NULL, NULL, "alice", &p)
                                : tkc_user_list(c, NULL, NULL, NULL, 0, &p);
        if (rc == 0) {
            CHECK_PAGE(&p);
            FZ_CHECK(call != C_USER_GET || p.n == 1, "a get is one row");
            for (size_t i = 0; i < p.n; i++) {
                check_str(p.users[i].user, sizeof p.users[i].user, "user terminated");
                check_list(p.users[i].roles, p.users[i].nroles, TK_MAX_ROLES, "user roles");
            }
        }
        tkc_user_page_free(&p);
        break;
    }
    case C_KEY_LIST: {
        tkc_key_page p = TKC_PAGE_INIT;
        rc = tkc_key_list(c, NULL, NULL, NULL, NULL, 0, &p);
        if (rc == 0) {
            CHECK_PAGE(&p);
            for (size_t i = 0; i < p.n; i++) {
                check_uuid(p.keys[i].key_id, NULL);
                FZ_CHECK(p.keys[i].created_at >= 0 && p.keys[i].expires_at >= 0, "times");
            }
        }
        tkc_key_page_free(&p);
        break;
    }
    case C_TOKEN_SET: rc = tkc_token_set(c, "00000000-0000-4000-8000-000000000000", "x"); break;
    case C_TENANT_DELETE: rc = tkc_tenant_delete(c, "acme"); break;
    }
    return rc;
}

/* Set by a raw call that succeeded with a non-zero status: tkc_call then
 * returns 0 and tkc_errmsg holds the server's message (client.h). */
static bool raw_refusal;

static int run(tkc *c, unsigned call)
{
    static const char *const roles[] = {"admin"};
    int rc = 0;

    switch (call) {
    case C_PING: {
        uint32_t v;
        rc = tkc_ping(c, &v);
        break;
    }
    case C_AUTH: {
        tkc_whoami who;
        rc = tkc_auth(c, secret, &who);
        if (rc == 0) {
            FZ_CHECK(who.actor >= TKC_ACTOR_OPERATOR && who.actor <= TKC_ACTOR_GATEWAY, "actor");
            check_str(who.tenant, sizeof who.tenant, "tenant terminated");
            check_str(who.account, sizeof who.account, "account terminated");
            check_str(who.user, sizeof who.user, "user terminated");
        }
        break;
    }
    case C_VERIFY: {
        tkc_verify_res r = TKC_VERIFY_RES_INIT;
        rc = tkc_verify(c, secret, NULL, &r);
        if (rc == 0)
            check_verify(&r);
        tkc_verify_res_free(&r);
        break;
    }
    case C_PIPELINE: {
        tkc_verify_res r = TKC_VERIFY_RES_INIT;
        for (int i = 0; i < 3 && rc == 0; i++)
            rc = tkc_verify_send(c, secret, i == 1 ? "00000000-0000-4000-8000-000000000000" : NULL);
        FZ_CHECK(rc == 0, "queueing three verifies");
        for (int i = 0; i < 3; i++) {
            rc = tkc_verify_recv(c, &r);
            if (rc == 0)
                check_verify(&r);
            else if (!tkc_refused(c) || tkc_fd(c) < 0)
                break;
        }
        tkc_verify_res_free(&r);
        break;
    }
    case C_TENANT:
        rc = tkc_tenant_create(c, "acme");
        break;
    case C_LIST: {
        tkc_token_page p = TKC_TOKEN_PAGE_INIT;
        rc = tkc_token_list(c, "acme", "globex", NULL, 0, &p);
        if (rc == 0)
            check_token_page(&p, false);
        tkc_token_page_free(&p);
        break;
    }
    case C_TOKEN: {
        tkc_new_token t;
        tk_id id;
        rc = tkc_token_create(c, "ci", roles, 1, 0, &t);
        if (rc == 0) {
            check_uuid(t.client_id, &id);
            check_secret(t.secret, TK_KIND_TOKEN, &id);
            FZ_CHECK(t.expires_at >= 0, "expires_at not negative");
        }
        break;
    }
    case C_KEY:
    case C_USER: {
        tkc_key k;
        rc = call == C_KEY ? tkc_key_create(c, "acme", "globex", "alice", 0, &k)
                           : tkc_user_create(c, "acme", "globex", "alice", roles, 1, true, &k);
        if (rc == 0) {
            check_uuid(k.key_id, NULL);
            check_secret(k.personal_key, TK_KIND_PERSONAL, NULL);
        }
        break;
    }
    case C_RAW: {
        uint16_t status;
        const uint8_t *reply;
        size_t len;
        for (int i = 0; i < 2 && rc == 0; i++) {
            rc = tkc_call(c, OP_PING, NULL, 0, &status, &reply, &len);
            raw_refusal = rc == 0 && status != 0;
            if (raw_refusal)
                break; /* the message would be cleared by the next call */
            for (size_t k = 0; rc == 0 && k < len; k++)
                sink ^= reply[k]; /* the whole body is readable (ASan) */
        }
        break;
    }
    default: rc = run_read(c, call);
    }
    return rc;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (sodium_init() < 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int sv[2];
    tkc *c;
    int rc;

    if (size < 1)
        return 0;
    FZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
    /* max_len keeps this far below the socket buffer: the write cannot block. */
    if (size > 1)
        FZ_CHECK(write(sv[1], data + 1, size - 1) == (ssize_t)(size - 1), "feeding the reply");
    FZ_CHECK(shutdown(sv[1], SHUT_WR) == 0, "shutdown");

    c = tkc_new();
    tkc_set_timeout(c, 5000);
    tkc_attach(c, sv[0]);
    raw_refusal = false;
    rc = run(c, data[0] % C_COUNT);
    const char *msg = tkc_errmsg(c);
    size_t mlen = strnlen(msg, TKC_ERRMSG_MAX);
    FZ_CHECK(mlen < TKC_ERRMSG_MAX, "the message is terminated");
    if (rc == 0 && !raw_refusal) {
        FZ_CHECK(mlen == 0, "no message after a success");
    } else {
        FZ_CHECK(rc == 0 || rc == TK_EPROTO || rc == TK_EIO || tkc_refused(c),
                 "a failure is local (EPROTO, EIO) or the server's refusal");
        FZ_CHECK(mlen > 0, "a failure says why");
        for (size_t i = 0; i < mlen; i++)
            FZ_CHECK((unsigned char)msg[i] >= 0x20 && msg[i] != 0x7f,
                     "the message is one line without control characters");
    }
    tkc_free(c);
    close(sv[1]);
    return 0;
}
