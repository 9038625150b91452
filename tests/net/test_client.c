/* test_client.c - the client library (net/client.c); tokenctl is
 * tests/tools/test_tokenctl.c's.
 *
 * Unit part, no server: the client is attached to one end of a socketpair
 * and the test plays the server on the other end with hand-made bytes. The
 * request bytes are compared with an encoder written here independently of
 * mpw; replies are fed whole, cut at every length, mutated at random and
 * broken one field at a time (each cut or mutation in an exact-size heap
 * copy, so ASan catches any read past the end). Frame-level faults (wrong
 * id, flags, oversized length, a peer that closes or goes silent, the
 * server's EBUSY with id 0) drop the connection with a clear error. A fake
 * server thread that stops reading while its replies are not read checks
 * that a deep pipeline cannot deadlock, and an allocation counter (glibc
 * interposition, or ASan's malloc hooks) that the pipelined verify path
 * allocates nothing per request once warm.
 *
 * Integration part: each test starts the real $BIN/tokend on a free
 * loopback port in a fresh data directory (child process, killed and reaped
 * in the teardown, and by the kernel if this process dies first) and drives
 * it through the library (every operation, 1000 pipelined verifications,
 * the server's error strings). When $BIN/tokend does not exist these tests
 * are skipped (a failure under CI).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "core/mp.h"
#include "core/secret.h"
#include "net/client.h"
#include "net/proto.h"
#include "net/schema.h"
#include "tests/support/allocs.h"
#include "tests/support/tkt.h"

/* ---- a MessagePack encoder of our own (test side) ----------------------- */

typedef struct hb {
    uint8_t *b;
    size_t n, cap;
} hb;

static void hb_raw(hb *h, const void *p, size_t n)
{
    if (h->n + n > h->cap) {
        size_t cap = h->cap ? h->cap : 256;
        while (cap < h->n + n)
            cap *= 2;
        h->b = realloc(h->b, cap);
        assert_non_null(h->b);
        h->cap = cap;
    }
    if (n)
        memcpy(h->b + h->n, p, n);
    h->n += n;
}

static void hb_byte(hb *h, uint8_t v)
{
    hb_raw(h, &v, 1);
}

static void hb_be(hb *h, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--)
        hb_byte(h, (uint8_t)(v >> (8 * i)));
}

static void hb_map(hb *h, uint32_t n)
{
    if (n < 16) {
        hb_byte(h, (uint8_t)(0x80 | n));
    } else {
        hb_byte(h, 0xde);
        hb_be(h, n, 2);
    }
}

static void hb_arr(hb *h, uint32_t n)
{
    if (n < 16) {
        hb_byte(h, (uint8_t)(0x90 | n));
    } else {
        hb_byte(h, 0xdc);
        hb_be(h, n, 2);
    }
}

static void hb_strn(hb *h, const char *s, size_t n)
{
    if (n < 32) {
        hb_byte(h, (uint8_t)(0xa0 | n));
    } else if (n < 256) {
        hb_byte(h, 0xd9);
        hb_byte(h, (uint8_t)n);
    } else {
        hb_byte(h, 0xda);
        hb_be(h, n, 2);
    }
    hb_raw(h, s, n);
}

static void hb_str(hb *h, const char *s)
{
    hb_strn(h, s, strlen(s));
}

static void hb_bool(hb *h, bool v)
{
    hb_byte(h, v ? 0xc3 : 0xc2);
}

/* Smallest encoding of a non-negative integer, as msgpack-c writes it. */
static void hb_uint(hb *h, uint64_t v)
{
    if (v < 128) {
        hb_byte(h, (uint8_t)v);
    } else if (v < 256) {
        hb_byte(h, 0xcc);
        hb_be(h, v, 1);
    } else if (v < 65536) {
        hb_byte(h, 0xcd);
        hb_be(h, v, 2);
    } else if (v <= UINT32_MAX) {
        hb_byte(h, 0xce);
        hb_be(h, v, 4);
    } else {
        hb_byte(h, 0xcf);
        hb_be(h, v, 8);
    }
}

static void hb_kv(hb *h, const char *k, const char *v)
{
    hb_str(h, k);
    hb_str(h, v);
}

static void hb_free(hb *h)
{
    free(h->b);
    memset(h, 0, sizeof *h);
}

static uint8_t *exact_copy(const void *p, size_t n)
{
    uint8_t *q = malloc(n ? n : 1);
    assert_non_null(q);
    if (n)
        memcpy(q, p, n);
    return q;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ---- credentials for fake replies --------------------------------------- */

typedef struct cred {
    tk_id id;
    char id_str[TK_ID_STR_LEN + 1];
    char secret[TK_SECRET_LEN + 1];
} cred;

static void make_cred(tk_kind kind, cred *c)
{
    uint8_t hash[TK_HASH_LEN];
    secret_new_id(&c->id);
    secret_id_format(&c->id, c->id_str);
    secret_generate(kind, &c->id, c->secret, hash);
}

/* ---- the fake server: the other end of a socketpair ---------------------- */

typedef struct fake {
    tkc *c;
    int peer;
    uint32_t next_id; /* the id the client will give its next request */
} fake;

static void fake_open(fake *f)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    f->c = tkc_new();
    tkc_set_timeout(f->c, 3000);
    tkc_attach(f->c, sv[0]);
    f->peer = sv[1];
    f->next_id = 1;
}

static void fake_close(fake *f)
{
    tkc_free(f->c);
    if (f->peer >= 0)
        close(f->peer);
    f->c = NULL;
    f->peer = -1;
}

static void write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        assert_true(w > 0);
        b += w;
        n -= (size_t)w;
    }
}

/* Reads exactly n bytes within 5 s; 0, or -1 on EOF/timeout. */
static int read_all(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    while (n) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 5000) <= 0)
            return -1;
        ssize_t r = read(fd, b, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static void put_frame(int fd, uint16_t code, uint16_t flags, uint32_t id, const void *body,
                      uint32_t len)
{
    proto_header h = {.len = len, .code = code, .flags = flags, .id = id};
    uint8_t *frame = malloc(PROTO_HEADER_LEN + (size_t)len);
    assert_non_null(frame);
    proto_header_put(frame, &h);
    if (len)
        memcpy(frame + PROTO_HEADER_LEN, body, len);
    write_all(fd, frame,
              PROTO_HEADER_LEN + (size_t)len); /* one write: socket buffers count writes */
    free(frame);
}

/* Queues the reply to the client's next request. */
static void fake_reply(fake *f, uint16_t status, const hb *body)
{
    put_frame(f->peer, status, 0, f->next_id++, body ? body->b : NULL,
              body ? (uint32_t)body->n : 0);
}

/* Reads one request frame; returns its body (malloc'd, caller frees). */
static uint8_t *get_request(int fd, proto_header *h)
{
    uint8_t hdr[PROTO_HEADER_LEN];
    assert_int_equal(read_all(fd, hdr, sizeof hdr), 0);
    proto_header_get(hdr, h);
    uint8_t *body = malloc(h->len ? h->len : 1);
    assert_non_null(body);
    assert_int_equal(read_all(fd, body, h->len), 0);
    return body;
}

/* Checks that the client sent exactly op with body want and id id. */
static void expect_request(fake *f, uint16_t op, uint32_t id, const hb *want)
{
    proto_header h;
    uint8_t *body = get_request(f->peer, &h);
    assert_int_equal(h.code, op);
    assert_int_equal(h.flags, 0);
    assert_int_equal(h.id, id);
    assert_int_equal(h.len, want ? want->n : 0);
    if (want && want->n)
        assert_memory_equal(body, want->b, want->n);
    free(body);
}

/* ---- request encoding --------------------------------------------------- */

static const hb EMPTY_OK; /* an empty body: the {} reply */

static void encode_operator_ops(void **state)
{
    (void)state;
    fake f;
    hb w = {0}, r = {0};
    const char *perms[] = {"orders:read", "orders:write"};
    const char *roles[] = {"admin"};
    tkc_key key;
    cred pk;

    fake_open(&f);

    /* TENANT_CREATE {"tenant": "acme"}: the bytes spelled out by hand once. */
    static const uint8_t tenant_create[] = {0x81, 0xa6, 't', 'e', 'n', 'a', 'n',
                                            't',  0xa4, 'a', 'c', 'm', 'e'};
    fake_reply(&f, 0, &EMPTY_OK);
    assert_int_equal(tkc_tenant_create(f.c, "acme"), 0);
    hb_raw(&w, tenant_create, sizeof tenant_create);
    expect_request(&f, OP_TENANT_CREATE, 1, &w);

    w.n = 0;
    hb_map(&w, 2);
    hb_kv(&w, "tenant", "acme");
    hb_str(&w, "api_tokens");
    hb_bool(&w, true);
    fake_reply(&f, 0, &EMPTY_OK);
    assert_int_equal(tkc_tenant_set(f.c, "acme", true), 0);
    expect_request(&f, OP_TENANT_SET, 2, &w);

    w.n = 0;
    hb_map(&w, 2);
    hb_kv(&w, "tenant", "acme");
    hb_kv(&w, "key", "orders:read");
    fake_reply(&f, 0, &EMPTY_OK);
    assert_int_equal(tkc_perm_put(f.c, "acme", "orders:read", NULL), 0);
    expect_request(&f, OP_PERM_PUT, 3, &w);

    w.n = 0;
    hb_map(&w, 3);
    hb_kv(&w, "tenant", "acme");
    hb_kv(&w, "key", "orders:read");
    hb_kv(&w, "description", "Read orders");
    fake_reply(&f, 0, &EMPTY_OK);
    assert_int_equal(tkc_perm_put(f.c, "acme", "orders:read", "Read orders"), 0);
    expect_request(&f, OP_PERM_PUT, 4, &w);

    w.n = 0;
    hb_map(&w, 5);
    hb_kv(&w, "tenant", "acme");
    hb_kv(&w, "key", "admin");
    hb_kv(&w, "name", "Administrator");
    hb_str(&w, "level");
    hb_uint(&w, 300);
    hb_str(&w, "permissions");
    hb_arr(&w, 2);
    hb_str(&w, "orders:read");
    hb_str(&w, "orders:write");
    fake_reply(&f, 0, &EMPTY_OK);
    assert_int_equal(tkc_role_put(f.c, "acme", "admin", "Administrator", 300, perms, 2), 0);
    expect_request(&f, OP_ROLE_PUT, 5, &w);

    w.n = 0; /* no name, no permissions: an empty array, never absent */
    hb_map(&w, 4);
    hb_kv(&w, "tenant", "acme");
    hb_kv(&w, "key", "nobody");
    hb_str(&w, "level");
    hb_uint(&w, 0);
    hb_str(&w, "permissions");
    hb_arr(&w, 0);
    fake_reply(&f, 0, &EMPTY_OK);
    assert_int_equal(tkc_role_put(f.c, "acme", "nobody", NULL, 0, NULL, 0), 0);
    expect_request(&f, OP_ROLE_PUT, 6, &w);

    w.n = 0;
    hb_map(&w, 2);
    hb_kv(&w, "tenant", "acme");
    hb_kv(&w, "key", "nobody");
    fake_reply(&f, 0, &EMPTY_OK);
    assert_int_equal(tkc_role_delete(f.c, "acme", "nobody"), 0);
    expect_request(&f, OP_ROLE_DELETE, 7, &w);

    w.n = 0;
    hb_map(&w, 2);
    hb_kv(&w, "tenant", "acme");
    hb_kv(&w, "account", "globex");
    fake_reply(&f, 0, &EMPTY_OK);
    assert_int_equal(tkc_account_create(f.c, "acme", "globex"), 0);
    expect_request(&f, OP_ACCOUNT_CREATE, 8, &w);

    make_cred(TK_KIND_PERSONAL, &pk);
    r.n = 0;
    hb_map(&r, 2);
    hb_kv(&r, "key_id", pk.id_str);
    hb_kv(&r, "personal_key", pk.secret);
    w.n = 0;
    hb_map(&w, 5);
    hb_kv(&w, "tenant", "acme");
    hb_kv(&w, "account", "globex");
    hb_kv(&w, "user", "alice");
    hb_str(&w, "roles");
    hb_arr(&w, 1);
    hb_str(&w, "admin");
    hb_str(&w, "portal");
    hb_bool(&w, true);
    fake_reply(&f, 0, &r);
    assert_int_equal(tkc_user_create(f.c, "acme", "globex", "alice", roles, 1, true, &key), 0);
    expect_request(&f, OP_USER_CREATE, 9, &w);
    assert_string_equal(key.key_id, pk.id_str);
    assert_string_equal(key.personal_key, pk.secret);

    /* USER_SET: absent fields stay unchanged; an empty roles list is sent. */
    w.n = 0;
    hb_map(&w, 4);
    hb_kv(&w, "tenant", "acme");
    hb_kv(&w, "account", "globex");
    hb_kv(&w, "user", "alice");
    hb_str(&w, "portal");
    hb_bool(&w, false);
    fake_reply(&f, 0, &EMPTY_OK);
    assert_int_equal(tkc_user_set(f.c, "acme", "globex", "alice", NULL, 0, 0), 0);
    expect_request(&f, OP_USER_SET, 10, &w);

    w.n = 0;
    hb_map(&w, 4);
    hb_kv(&w, "tenant", "acme");
    hb_kv(&w, "account", "globex");
    hb_kv(&w, "user", "alice");
    hb_str(&w, "roles");
    hb_arr(&w, 0);
    fake_reply(&f, 0, &EMPTY_OK);
    assert_int_equal(tkc_user_set(f.c, "acme", "globex", "alice", roles, 0, TKC_UNCHANGED), 0);
    expect_request(&f, OP_USER_SET, 11, &w);

    w.n = 0;
    hb_map(&w, 4);
    hb_kv(&w, "tenant", "acme");
    hb_kv(&w, "account", "globex");
    hb_kv(&w, "user", "alice");
    hb_str(&w, "expires_at");
    hb_uint(&w, 4102444800u); /* 2100-01-01 */
    fake_reply(&f, 0, &r);
    assert_int_equal(tkc_key_create(f.c, "acme", "globex", "alice", 4102444800, &key), 0);
    expect_request(&f, OP_KEY_CREATE, 12, &w);
    assert_string_equal(key.personal_key, pk.secret);

    w.n = 0;
    hb_map(&w, 3);
    hb_kv(&w, "tenant", "acme");
    hb_kv(&w, "account", "globex");
    hb_kv(&w, "user", "alice");
    fake_reply(&f, 0, &r);
    assert_int_equal(tkc_key_create(f.c, "acme", "globex", "alice", 0, &key), 0);
    expect_request(&f, OP_KEY_CREATE, 13, &w);

    w.n = 0;
    hb_map(&w, 1);
    hb_kv(&w, "key_id", pk.id_str);
    fake_reply(&f, 0, &EMPTY_OK);
    assert_int_equal(tkc_key_delete(f.c, pk.id_str), 0);
    expect_request(&f, OP_KEY_DELETE, 14, &w);

    /* PING is the empty map (0x80: the encoder always writes a map); AUTH
     * carries the key. */
    r.n = 0;
    hb_map(&r, 1);
    hb_str(&r, "version");
    hb_uint(&r, 1);
    fake_reply(&f, 0, &r);
    uint32_t v = 0;
    assert_int_equal(tkc_ping(f.c, &v), 0);
    assert_int_equal(v, 1);
    w.n = 0;
    hb_map(&w, 0);
    expect_request(&f, OP_PING, 15, &w);

    r.n = 0;
    hb_map(&r, 1);
    hb_kv(&r, "actor", "operator");
    w.n = 0;
    hb_map(&w, 1);
    hb_kv(&w, "key", "opkey");
    fake_reply(&f, 0, &r);
    tkc_whoami who;
    assert_int_equal(tkc_auth(f.c, "opkey", &who), 0);
    assert_int_equal(who.actor, TKC_ACTOR_OPERATOR);
    assert_string_equal(who.tenant, "");
    expect_request(&f, OP_AUTH, 16, &w);

    hb_free(&w);
    hb_free(&r);
    fake_close(&f);
}

static void encode_user_ops(void **state)
{
    (void)state;
    fake f;
    hb w = {0}, r = {0};
    const char *roles[] = {"viewer", "editor"};
    tkc_new_token t;
    tkc_token_page page = TKC_TOKEN_PAGE_INIT;
    cred tok;

    fake_open(&f);
    make_cred(TK_KIND_TOKEN, &tok);

    hb_map(&r, 3);
    hb_kv(&r, "client_id", tok.id_str);
    hb_kv(&r, "secret", tok.secret);
    hb_str(&r, "expires_at");
    hb_uint(&r, 4102444800u);
    hb_map(&w, 3);
    hb_kv(&w, "description", "CI");
    hb_str(&w, "roles");
    hb_arr(&w, 2);
    hb_str(&w, "viewer");
    hb_str(&w, "editor");
    hb_str(&w, "expires_at");
    hb_uint(&w, 4102444800u);
    fake_reply(&f, 0, &r);
    assert_int_equal(tkc_token_create(f.c, "CI", roles, 2, 4102444800, &t), 0);
    expect_request(&f, OP_TOKEN_CREATE, 1, &w);
    assert_string_equal(t.client_id, tok.id_str);
    assert_string_equal(t.secret, tok.secret);
    assert_true(t.expires_at == 4102444800);

    w.n = 0;
    hb_map(&w, 1);
    hb_str(&w, "roles");
    hb_arr(&w, 1);
    hb_str(&w, "viewer");
    fake_reply(&f, 0, &r);
    assert_int_equal(tkc_token_create(f.c, NULL, roles, 1, 0, &t), 0);
    expect_request(&f, OP_TOKEN_CREATE, 2, &w);

    r.n = 0;
    hb_map(&r, 2);
    hb_str(&r, "tokens");
    hb_arr(&r, 0);
    hb_str(&r, "more");
    hb_bool(&r, false);
    fake_reply(&f, 0, &r);
    assert_int_equal(tkc_token_list(f.c, NULL, NULL, NULL, 0, &page), 0);
    w.n = 0;
    hb_map(&w, 0); /* a user's first page: {} */
    expect_request(&f, OP_TOKEN_LIST, 3, &w);
    assert_int_equal(page.n, 0);
    assert_false(page.more);

    w.n = 0;
    hb_map(&w, 4);
    hb_kv(&w, "tenant", "acme");
    hb_kv(&w, "account", "globex");
    hb_kv(&w, "after", "AAAAAAAAAAo"); /* a cursor, as the server gave it */
    hb_str(&w, "limit");
    hb_uint(&w, 1000);
    fake_reply(&f, 0, &r);
    assert_int_equal(tkc_token_list(f.c, "acme", "globex", "AAAAAAAAAAo", 1000,
                                    &page), 0);
    expect_request(&f, OP_TOKEN_LIST, 4, &w);

    w.n = 0;
    hb_map(&w, 1);
    hb_kv(&w, "client_id", tok.id_str);
    fake_reply(&f, 0, &EMPTY_OK);
    assert_int_equal(tkc_token_delete(f.c, tok.id_str), 0);
    expect_request(&f, OP_TOKEN_DELETE, 5, &w);

    /* VERIFY: the secret alone, and the pair. */
    r.n = 0;
    hb_map(&r, 2);
    hb_str(&r, "valid");
    hb_bool(&r, false);
    hb_kv(&r, "reason", "unknown");
    tkc_verify_res res = TKC_VERIFY_RES_INIT;
    w.n = 0;
    hb_map(&w, 1);
    hb_kv(&w, "secret", tok.secret);
    fake_reply(&f, 0, &r);
    assert_int_equal(tkc_verify(f.c, tok.secret, NULL, &res), 0);
    expect_request(&f, OP_VERIFY, 6, &w);
    assert_false(res.valid);
    assert_int_equal(res.verdict, TK_V_UNKNOWN);
    assert_string_equal(res.reason, "unknown");

    w.n = 0;
    hb_map(&w, 2);
    hb_kv(&w, "secret", tok.secret);
    hb_kv(&w, "client_id", tok.id_str);
    fake_reply(&f, 0, &r);
    assert_int_equal(tkc_verify(f.c, tok.secret, tok.id_str, &res), 0);
    expect_request(&f, OP_VERIFY, 7, &w);

    /* The codec alone writes the same body. */
    mpw mw;
    mpw_init(&mw);
    tkc_verify_encode(&mw, tok.secret, strlen(tok.secret), tok.id_str);
    assert_int_equal(mw.buf.size, w.n);
    assert_memory_equal(mw.buf.data, w.b, w.n);
    mpw_free(&mw);

    tkc_verify_res_free(&res);
    tkc_token_page_free(&page);
    hb_free(&w);
    hb_free(&r);
    fake_close(&f);
}

/* ---- the rows of the new listings (test side) ---------------------------- */

static void hb_tenant_row(hb *h, const char *slug, uint64_t roles)
{
    hb_map(h, 9);
    hb_kv(h, "tenant", slug);
    hb_str(h, "api_tokens");
    hb_bool(h, true);
    hb_str(h, "max_tokens");
    hb_uint(h, 10000);
    hb_str(h, "max_roles");
    hb_uint(h, 0);
    hb_str(h, "max_keys");
    hb_uint(h, UINT32_MAX);
    hb_str(h, "create_rate");
    hb_uint(h, 10);
    hb_str(h, "create_burst");
    hb_uint(h, 100);
    hb_str(h, "role_count");
    hb_uint(h, roles);
    hb_str(h, "permission_count");
    hb_uint(h, 3);
}

static void hb_perm_row(hb *h, const char *key, const char *desc)
{
    hb_map(h, 2);
    hb_kv(h, "key", key);
    hb_kv(h, "description", desc);
}

static void hb_role_row(hb *h, const char *key, const char *name, uint64_t level, int nperms)
{
    hb_map(h, 4);
    hb_kv(h, "key", key);
    hb_kv(h, "name", name);
    hb_str(h, "level");
    hb_uint(h, level);
    hb_str(h, "permissions");
    hb_arr(h, (uint32_t)nperms);
    for (int i = 0; i < nperms; i++) {
        char p[32];
        snprintf(p, sizeof p, "orders:%d", i);
        hb_str(h, p);
    }
}

static void hb_account_row(hb *h, const char *slug, uint64_t tokens)
{
    hb_map(h, 2);
    hb_kv(h, "account", slug);
    hb_str(h, "token_count");
    hb_uint(h, tokens);
}

static void hb_user_row(hb *h, const char *slug, int nroles, bool portal)
{
    hb_map(h, 4);
    hb_kv(h, "user", slug);
    hb_str(h, "roles");
    hb_arr(h, (uint32_t)nroles);
    for (int i = 0; i < nroles; i++)
        hb_str(h, i ? "viewer" : "admin");
    hb_str(h, "portal");
    hb_bool(h, portal);
    hb_str(h, "key_count");
    hb_uint(h, 2);
}

static void hb_key_row(hb *h, const char *id, uint64_t created, uint64_t expires)
{
    hb_map(h, 3);
    hb_kv(h, "key_id", id);
    hb_str(h, "created_at");
    hb_uint(h, created);
    hb_str(h, "expires_at");
    hb_uint(h, expires);
}

static void hb_ring_row(hb *h, const char *name, bool gateway, uint64_t created)
{
    hb_map(h, 3);
    hb_kv(h, "name", name);
    hb_str(h, "gateway");
    hb_bool(h, gateway);
    hb_str(h, "created_at");
    hb_uint(h, created);
}

/* A keyring key as the server makes one: a prefix and 64 lowercase hex
 * digits. */
static void make_ring_key(const char *prefix, char key[TKC_RING_KEY_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    memcpy(key, prefix, 4);
    for (int i = 4; i < TKC_RING_KEY_LEN; i++)
        key[i] = hex[rng() % 16];
    key[TKC_RING_KEY_LEN] = '\0';
}

/* KEYRING_ADD's reply: {"key": key}. */
static void hb_ring_add(hb *h, const char *key)
{
    hb_map(h, 1);
    hb_kv(h, "key", key);
}

static void hb_list_token(hb *h, const char *id, const char *desc, int nroles);

/* {rows: [], "more": false}: an empty page. */
static void hb_empty_page(hb *h, const char *rows)
{
    hb_map(h, 2);
    hb_str(h, rows);
    hb_arr(h, 0);
    hb_str(h, "more");
    hb_bool(h, false);
}

/* Each new operation sends exactly its fields, in the schema's order, only
 * those given. */
static void encode_new_ops(void **state)
{
    (void)state;
    fake f;
    hb w = {0}, r = {0};
    cred tok, pk;
    tkc_token_page tp = TKC_PAGE_INIT;
    tkc_tenant_page tn = TKC_PAGE_INIT;
    tkc_perm_page pp = TKC_PAGE_INIT;
    tkc_role_page rp = TKC_PAGE_INIT;
    tkc_account_page ap = TKC_PAGE_INIT;
    tkc_user_page up = TKC_PAGE_INIT;
    tkc_key_page kp = TKC_PAGE_INIT;
    tkc_ring_page gp = TKC_PAGE_INIT;
    char ring_key[TKC_RING_KEY_LEN + 1], got[TKC_RING_KEY_LEN + 1];
    uint32_t id = 1;

    make_cred(TK_KIND_TOKEN, &tok);
    make_cred(TK_KIND_PERSONAL, &pk);
    fake_open(&f);

#define EXPECT(op) expect_request(&f, (op), id++, &w)
#define BODY(nkeys) (w.n = 0, hb_map(&w, (nkeys)))
#define REPLY(build) (r.n = 0, build, fake_reply(&f, 0, &r))

    REPLY(hb_list_token(&r, tok.id_str, "CI", 1));
    assert_int_equal(tkc_token_get(f.c, tok.id_str, &tp), 0);
    BODY(1);
    hb_kv(&w, "client_id", tok.id_str);
    EXPECT(OP_TOKEN_GET);
    assert_int_equal(tp.n, 1);
    assert_false(tp.more);
    assert_string_equal(tp.tokens[0].client_id, tok.id_str);

    fake_reply(&f, 0, &EMPTY_OK);
    assert_int_equal(tkc_token_set(f.c, tok.id_str, "nightly"), 0);
    BODY(2);
    hb_kv(&w, "client_id", tok.id_str);
    hb_kv(&w, "description", "nightly");
    EXPECT(OP_TOKEN_SET);

    REPLY(hb_empty_page(&r, "tenants"));
    assert_int_equal(tkc_tenant_list(f.c, NULL, 0, &tn), 0);
    BODY(0);
    EXPECT(OP_TENANT_LIST);
    REPLY(hb_empty_page(&r, "tenants"));
    assert_int_equal(tkc_tenant_list(f.c, "acme", 2, &tn), 0);
    BODY(2);
    hb_kv(&w, "after", "acme");
    hb_str(&w, "limit");
    hb_uint(&w, 2);
    EXPECT(OP_TENANT_LIST);
    assert_int_equal(tn.n, 0);

    REPLY(hb_tenant_row(&r, "acme", 2));
    assert_int_equal(tkc_tenant_get(f.c, "acme", &tn), 0);
    BODY(1);
    hb_kv(&w, "tenant", "acme");
    EXPECT(OP_TENANT_GET);
    assert_int_equal(tn.n, 1);
    REPLY(hb_tenant_row(&r, "acme", 2));
    assert_int_equal(tkc_tenant_get(f.c, NULL, &tn), 0); /* a user: its own */
    BODY(0);
    EXPECT(OP_TENANT_GET);

    fake_reply(&f, 0, &EMPTY_OK);
    assert_int_equal(tkc_tenant_delete(f.c, "acme"), 0);
    BODY(1);
    hb_kv(&w, "tenant", "acme");
    EXPECT(OP_TENANT_DELETE);

    REPLY(hb_empty_page(&r, "permissions"));
    assert_int_equal(tkc_perm_list(f.c, "acme", "orders:read", 10, &pp), 0);
    BODY(3);
    hb_kv(&w, "tenant", "acme");
    hb_kv(&w, "after", "orders:read");
    hb_str(&w, "limit");
    hb_uint(&w, 10);
    EXPECT(OP_PERM_LIST);
    REPLY(hb_empty_page(&r, "permissions"));
    assert_int_equal(tkc_perm_list(f.c, NULL, NULL, 0, &pp), 0);
    BODY(0);
    EXPECT(OP_PERM_LIST);

    fake_reply(&f, 0, &EMPTY_OK);
    assert_int_equal(tkc_perm_delete(f.c, "acme", "orders:read"), 0);
    BODY(2);
    hb_kv(&w, "tenant", "acme");
    hb_kv(&w, "key", "orders:read");
    EXPECT(OP_PERM_DELETE);

    REPLY(hb_empty_page(&r, "roles"));
    assert_int_equal(tkc_role_list(f.c, "acme", NULL, 0, &rp), 0);
    BODY(1);
    hb_kv(&w, "tenant", "acme");
    EXPECT(OP_ROLE_LIST);

    REPLY(hb_empty_page(&r, "accounts"));
    assert_int_equal(tkc_account_list(f.c, "acme", NULL, 1000, &ap), 0);
    BODY(2);
    hb_kv(&w, "tenant", "acme");
    hb_str(&w, "limit");
    hb_uint(&w, 1000);
    EXPECT(OP_ACCOUNT_LIST);

    fake_reply(&f, 0, &EMPTY_OK);
    assert_int_equal(tkc_account_delete(f.c, "acme", "globex"), 0);
    BODY(2);
    hb_kv(&w, "tenant", "acme");
    hb_kv(&w, "account", "globex");
    EXPECT(OP_ACCOUNT_DELETE);

    REPLY(hb_empty_page(&r, "users"));
    assert_int_equal(tkc_user_list(f.c, "acme", "globex", "bob", 0, &up), 0);
    BODY(3);
    hb_kv(&w, "tenant", "acme");
    hb_kv(&w, "account", "globex");
    hb_kv(&w, "after", "bob");
    EXPECT(OP_USER_LIST);

    REPLY(hb_user_row(&r, "alice", 1, true));
    assert_int_equal(tkc_user_get(f.c, "acme", "globex", "alice", &up), 0);
    BODY(3);
    hb_kv(&w, "tenant", "acme");
    hb_kv(&w, "account", "globex");
    hb_kv(&w, "user", "alice");
    EXPECT(OP_USER_GET);
    REPLY(hb_user_row(&r, "bob", 1, false));
    assert_int_equal(tkc_user_get(f.c, NULL, NULL, "bob", &up), 0); /* a user: its account */
    BODY(1);
    hb_kv(&w, "user", "bob");
    EXPECT(OP_USER_GET);
    assert_string_equal(up.users[0].user, "bob");

    fake_reply(&f, 0, &EMPTY_OK);
    assert_int_equal(tkc_user_delete(f.c, "acme", "globex", "alice"), 0);
    BODY(3);
    hb_kv(&w, "tenant", "acme");
    hb_kv(&w, "account", "globex");
    hb_kv(&w, "user", "alice");
    EXPECT(OP_USER_DELETE);

    REPLY(hb_empty_page(&r, "keys"));
    assert_int_equal(tkc_key_list(f.c, "acme", "globex", "alice", "AAAAAAAAAAE", 5, &kp), 0);
    BODY(5);
    hb_kv(&w, "tenant", "acme");
    hb_kv(&w, "account", "globex");
    hb_kv(&w, "user", "alice");
    hb_kv(&w, "after", "AAAAAAAAAAE");
    hb_str(&w, "limit");
    hb_uint(&w, 5);
    EXPECT(OP_KEY_LIST);
    REPLY(hb_empty_page(&r, "keys"));
    assert_int_equal(tkc_key_list(f.c, NULL, NULL, NULL, NULL, 0, &kp), 0);
    BODY(0);
    EXPECT(OP_KEY_LIST);

    /* The keyring: gateway is sent only when true. */
    make_ring_key("tko_", ring_key);
    REPLY(hb_ring_add(&r, ring_key));
    assert_int_equal(tkc_keyring_add(f.c, "ci", false, got), 0);
    BODY(1);
    hb_kv(&w, "name", "ci");
    EXPECT(OP_KEYRING_ADD);
    assert_string_equal(got, ring_key);
    make_ring_key("tkg_", ring_key);
    REPLY(hb_ring_add(&r, ring_key));
    assert_int_equal(tkc_keyring_add(f.c, "edge-1", true, got), 0);
    BODY(2);
    hb_kv(&w, "name", "edge-1");
    hb_str(&w, "gateway");
    hb_bool(&w, true);
    EXPECT(OP_KEYRING_ADD);
    assert_string_equal(got, ring_key);

    REPLY(hb_empty_page(&r, "keyring"));
    assert_int_equal(tkc_keyring_list(f.c, "ci", 3, &gp), 0);
    BODY(2);
    hb_kv(&w, "after", "ci");
    hb_str(&w, "limit");
    hb_uint(&w, 3);
    EXPECT(OP_KEYRING_LIST);
    REPLY(hb_empty_page(&r, "keyring"));
    assert_int_equal(tkc_keyring_list(f.c, NULL, 0, &gp), 0);
    BODY(0);
    EXPECT(OP_KEYRING_LIST);
    assert_int_equal(gp.n, 0);

    fake_reply(&f, 0, &EMPTY_OK);
    assert_int_equal(tkc_keyring_remove(f.c, "initial"), 0);
    BODY(1);
    hb_kv(&w, "name", "initial");
    EXPECT(OP_KEYRING_REMOVE);

#undef EXPECT
#undef BODY
#undef REPLY
    tkc_token_page_free(&tp);
    tkc_tenant_page_free(&tn);
    tkc_perm_page_free(&pp);
    tkc_role_page_free(&rp);
    tkc_account_page_free(&ap);
    tkc_user_page_free(&up);
    tkc_key_page_free(&kp);
    tkc_ring_page_free(&gp);
    hb_free(&w);
    hb_free(&r);
    fake_close(&f);
}

/* The client's cursor bound is the schema's (client.h says why it is a
 * number of its own). */
static void cursor_bound_is_the_schemas(void **state)
{
    (void)state;
    assert_int_equal(sch_fields[SF_NEXT].max, TKC_CURSOR_MAX);
    assert_int_equal(sch_fields[SF_AFTER].max, TKC_CURSOR_MAX);
}

/* Bad arguments are refused before anything is sent; the connection goes on. */
static void bad_arguments(void **state)
{
    (void)state;
    fake f;
    tkc_key key;
    const char *holes[] = {"admin", NULL};

    fake_open(&f);
    assert_int_equal(tkc_tenant_create(f.c, NULL), TK_EINVAL);
    assert_false(tkc_refused(f.c));
    assert_non_null(strstr(tkc_errmsg(f.c), "tenant"));
    assert_int_equal(tkc_user_create(f.c, "a", "b", "c", holes, 2, false, &key), TK_EINVAL);
    assert_int_equal(tkc_user_create(f.c, "a", "b", "c", NULL, 1, false, &key), TK_EINVAL);
    assert_int_equal(tkc_token_create(f.c, NULL, holes, 1, 0, NULL), TK_EINVAL);
    assert_int_equal(tkc_user_set(f.c, "a", "b", "c", NULL, 0, 7), TK_EINVAL);
    assert_int_equal(tkc_verify(f.c, NULL, NULL, NULL), TK_EINVAL);
    assert_int_equal(tkc_auth(f.c, NULL, NULL), TK_EINVAL);
    assert_int_equal(tkc_recv(f.c, NULL, NULL, NULL), TK_EINVAL); /* nothing in flight */

    /* What the schema refuses, each saying which field: a required one
     * missing, a value over its limit. */
    const char *id = "0f8fad5b-d9cb-469f-a165-70867728950e";
    char s64[80], s129[140], s161[170], s1025[1030];
    memset(s64, 'a', 64);
    s64[64] = '\0';
    memset(s129, 'p', 129);
    s129[129] = '\0';
    memset(s161, 'c', 161);
    s161[161] = '\0';
    memset(s1025, 'd', 1025);
    s1025[1025] = '\0';
    const char *many[17], *long_perm[] = {s129};
    for (int i = 0; i < 17; i++)
        many[i] = "viewer";
    tkc_role_page rp = TKC_PAGE_INIT;
    tkc_user_page up = TKC_PAGE_INIT;
    tkc_account_page ap = TKC_PAGE_INIT;
    tkc_limits big = TKC_LIMITS_UNCHANGED;
    big.max_tokens = (int64_t)UINT32_MAX + 1;
#define REFUSED(call, msg)                                                                         \
    do {                                                                                           \
        assert_int_equal((call), TK_EINVAL);                                                       \
        if (!strstr(tkc_errmsg(f.c), (msg)))                                                       \
            fail_msg("%s: \"%s\" does not say \"%s\"", #call, tkc_errmsg(f.c), (msg));            \
        assert_false(tkc_refused(f.c));                                                            \
    } while (0)
    REFUSED(tkc_token_set(f.c, id, NULL), "description is required");
    REFUSED(tkc_token_set(f.c, id, s1025), "description is longer than 1024 bytes");
    REFUSED(tkc_token_get(f.c, NULL, NULL), "page is required");
    REFUSED(tkc_token_delete(f.c, NULL), "client_id is required");
    REFUSED(tkc_tenant_create(f.c, s64), "tenant is longer than 63 bytes");
    REFUSED(tkc_role_put(f.c, "acme", "admin", NULL, TK_MAX_LEVEL + 1, NULL, 0),
            "level: 65536 is out of range (0 to 65535)");
    REFUSED(tkc_role_put(f.c, "acme", "admin", NULL, 0, long_perm, 1),
            "permissions 0 is longer than 128 bytes");
    REFUSED(tkc_user_create(f.c, "a", "b", "c", many, 17, false, &key), "roles: 17 of them");
    REFUSED(tkc_role_list(f.c, NULL, s161, 0, &rp), "after is longer than 160 bytes");
    REFUSED(tkc_account_list(f.c, NULL, NULL, 0, &ap), "tenant is required");
    REFUSED(tkc_perm_delete(f.c, "acme", NULL), "key is required");
    REFUSED(tkc_user_get(f.c, "acme", "globex", NULL, &up), "user is required");
    REFUSED(tkc_tenant_limits(f.c, "acme", TKC_UNCHANGED, &big), "max_tokens: 4294967296");
    REFUSED(tkc_role_list(f.c, "acme", NULL, 0, NULL), "page is required");
    char ring_key[TKC_RING_KEY_LEN + 1];
    REFUSED(tkc_keyring_add(f.c, NULL, false, ring_key), "name is required");
    REFUSED(tkc_keyring_add(f.c, s129, true, ring_key), "name is longer than 128 bytes");
    REFUSED(tkc_keyring_add(f.c, "ci", false, NULL), "key result is required");
    REFUSED(tkc_keyring_remove(f.c, NULL), "name is required");
    REFUSED(tkc_keyring_list(f.c, s161, 0, NULL), "page is required");
#undef REFUSED
    tkc_role_page_free(&rp);
    tkc_user_page_free(&up);
    tkc_account_page_free(&ap);

    /* Nothing reached the peer, and the next request is id 1. */
    struct pollfd pfd = {.fd = f.peer, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 0), 0);
    fake_reply(&f, 0, &EMPTY_OK);
    assert_int_equal(tkc_tenant_create(f.c, "acme"), 0);
    assert_string_equal(tkc_errmsg(f.c), "");
    fake_close(&f);

    /* An unconnected handle. */
    tkc *c = tkc_new();
    assert_int_equal(tkc_ping(c, NULL), TK_EIO);
    assert_string_equal(tkc_errmsg(c), "not connected");
    assert_int_equal(tkc_fd(c), -1);
    tkc_free(c);
    tkc_free(NULL);
}

/* ---- reply decoding ------------------------------------------------------ */

static void hb_verify_valid(hb *h, const char *id, int nperms)
{
    hb_map(h, 8);
    hb_str(h, "valid");
    hb_bool(h, true);
    hb_kv(h, "reason", "valid");
    hb_kv(h, "client_id", id);
    hb_kv(h, "tenant", "acme");
    hb_kv(h, "account", "globex");
    hb_str(h, "roles");
    hb_arr(h, 2);
    hb_str(h, "viewer");
    hb_str(h, "editor");
    hb_str(h, "permissions");
    hb_arr(h, (uint32_t)nperms);
    for (int i = 0; i < nperms; i++) {
        char p[32];
        snprintf(p, sizeof p, "perm:%d", i);
        hb_str(h, p);
    }
    hb_str(h, "expires_at");
    hb_uint(h, 1700000000);
}

static void verify_decode_valid(void **state)
{
    (void)state;
    hb h = {0};
    tkc_verify_res res = TKC_VERIFY_RES_INIT;
    const char *id = "0f8fad5b-d9cb-469f-a165-70867728950e";

    hb_verify_valid(&h, id, 3);
    uint8_t *copy = exact_copy(h.b, h.n);
    assert_int_equal(tkc_verify_decode(copy, h.n, &res), 0);
    assert_true(res.valid);
    assert_int_equal(res.verdict, TK_V_VALID);
    assert_string_equal(res.reason, "valid");
    assert_string_equal(res.client_id, id);
    assert_string_equal(res.tenant, "acme");
    assert_string_equal(res.account, "globex");
    assert_int_equal(res.nroles, 2);
    assert_string_equal(res.roles[0], "viewer");
    assert_string_equal(res.roles[1], "editor");
    assert_int_equal(res.nperms, 3);
    assert_string_equal(res.perms[2], "perm:2");
    assert_true(res.expires_at == 1700000000);
    /* The strings are copies: the body may go. */
    memset(copy, 0, h.n);
    free(copy);
    assert_string_equal(res.roles[1], "editor");

    /* Keys in any order, unknown keys skipped (a later server may add some). */
    hb_free(&h);
    hb_map(&h, 9);
    hb_str(&h, "expires_at");
    hb_uint(&h, 0);
    hb_str(&h, "permissions");
    hb_arr(&h, 0);
    hb_str(&h, "future_field");
    hb_map(&h, 1);
    hb_kv(&h, "x", "y");
    hb_str(&h, "roles");
    hb_arr(&h, 0);
    hb_kv(&h, "account", "globex");
    hb_kv(&h, "tenant", "acme");
    hb_kv(&h, "client_id", id);
    hb_kv(&h, "reason", "valid");
    hb_str(&h, "valid");
    hb_bool(&h, true);
    assert_int_equal(tkc_verify_decode(h.b, h.n, &res), 0);
    assert_true(res.valid);
    assert_int_equal(res.nroles, 0);
    assert_int_equal(res.nperms, 0);

    /* Every "invalid" reason; the strings are emptied. */
    static const char *const reasons[] = {"malformed",  "unknown",  "mismatch",
                                          "wrong_kind", "disabled", "expired"};
    static const tk_verdict verdicts[] = {TK_V_MALFORMED,  TK_V_UNKNOWN,  TK_V_MISMATCH,
                                          TK_V_WRONG_KIND, TK_V_DISABLED, TK_V_EXPIRED};
    for (size_t i = 0; i < 6; i++) {
        hb_free(&h);
        hb_map(&h, 2);
        hb_str(&h, "valid");
        hb_bool(&h, false);
        hb_kv(&h, "reason", reasons[i]);
        assert_int_equal(tkc_verify_decode(h.b, h.n, &res), 0);
        assert_false(res.valid);
        assert_int_equal(res.verdict, verdicts[i]);
        assert_string_equal(res.reason, reasons[i]);
        assert_string_equal(res.tenant, "");
        assert_int_equal(res.nroles, 0);
    }
    hb_free(&h);
    tkc_verify_res_free(&res);
}

/* Each case: a body that must be refused. */
typedef void (*body_fn)(hb *h);

static void vb_not_map(hb *h)
{
    hb_arr(h, 0);
}
static void vb_nil(hb *h)
{
    hb_byte(h, 0xc0);
}
static void vb_empty(hb *h)
{
    (void)h;
}
static void vb_missing_reason(hb *h)
{
    hb_map(h, 1);
    hb_str(h, "valid");
    hb_bool(h, false);
}
static void vb_valid_not_bool(hb *h)
{
    hb_map(h, 2);
    hb_kv(h, "valid", "yes");
    hb_kv(h, "reason", "valid");
}
static void vb_unknown_reason(hb *h)
{
    hb_map(h, 2);
    hb_str(h, "valid");
    hb_bool(h, false);
    hb_kv(h, "reason", "sunspots");
}
static void vb_valid_but_reason(hb *h)
{
    hb_map(h, 2);
    hb_str(h, "valid");
    hb_bool(h, true);
    hb_kv(h, "reason", "unknown");
}
static void vb_invalid_but_reason_valid(hb *h)
{
    hb_map(h, 2);
    hb_str(h, "valid");
    hb_bool(h, false);
    hb_kv(h, "reason", "valid");
}
static void vb_valid_missing_fields(hb *h)
{
    hb_map(h, 2);
    hb_str(h, "valid");
    hb_bool(h, true);
    hb_kv(h, "reason", "valid");
}
static void vb_duplicate_key(hb *h)
{
    hb_map(h, 3);
    hb_str(h, "valid");
    hb_bool(h, false);
    hb_kv(h, "reason", "unknown");
    hb_str(h, "valid");
    hb_bool(h, true);
}
static void vb_trailing(hb *h)
{
    hb_map(h, 2);
    hb_str(h, "valid");
    hb_bool(h, false);
    hb_kv(h, "reason", "unknown");
    hb_byte(h, 0xc0);
}
static void vb_key_not_str(hb *h)
{
    hb_map(h, 2);
    hb_uint(h, 1);
    hb_bool(h, false);
    hb_kv(h, "reason", "unknown");
}
/* Rewrites one field of a valid body. */
static void vb_valid_with(hb *h, const char *field, void (*val)(hb *h))
{
    static const char *const keys[] = {"valid",   "reason", "client_id",   "tenant",
                                       "account", "roles",  "permissions", "expires_at"};
    hb_map(h, 8);
    for (int i = 0; i < 8; i++) {
        hb_str(h, keys[i]);
        if (!strcmp(keys[i], field)) {
            val(h);
            continue;
        }
        switch (i) {
        case 0: hb_bool(h, true); break;
        case 1: hb_str(h, "valid"); break;
        case 2: hb_str(h, "0f8fad5b-d9cb-469f-a165-70867728950e"); break;
        case 3: hb_str(h, "acme"); break;
        case 4: hb_str(h, "globex"); break;
        case 5:
            hb_arr(h, 1);
            hb_str(h, "viewer");
            break;
        case 6:
            hb_arr(h, 1);
            hb_str(h, "orders:read");
            break;
        default: hb_uint(h, 0);
        }
    }
}
static void v_upper_uuid(hb *h)
{
    hb_str(h, "0F8FAD5B-D9CB-469F-A165-70867728950E");
}
static void v_short_uuid(hb *h)
{
    hb_str(h, "0f8fad5b-d9cb-469f-a165");
}
static void v_long_slug(hb *h)
{
    char s[80];
    memset(s, 'a', 64);
    s[64] = '\0';
    hb_str(h, s);
}
static void v_nul_in_str(hb *h)
{
    hb_strn(h, "ac\0me", 5);
}
static void v_bad_utf8(hb *h)
{
    hb_strn(h, "ac\xc3\x28", 4);
}
static void v_too_many_roles(hb *h)
{
    hb_arr(h, 17);
    for (int i = 0; i < 17; i++)
        hb_str(h, "r");
}
static void v_role_not_str(hb *h)
{
    hb_arr(h, 2);
    hb_str(h, "r");
    hb_uint(h, 5);
}
static void v_roles_map(hb *h)
{
    hb_map(h, 0);
}
static void v_too_many_perms(hb *h)
{
    hb_arr(h, TK_MAX_TENANT_PERMS + 1);
    for (int i = 0; i <= TK_MAX_TENANT_PERMS; i++)
        hb_str(h, "p");
}
static void v_long_perm(hb *h)
{
    char s[200];
    memset(s, 'p', TK_KEY_MAX + 1);
    s[TK_KEY_MAX + 1] = '\0';
    hb_arr(h, 1);
    hb_str(h, s);
}
static void v_negative_time(hb *h)
{
    hb_byte(h, 0xff); /* fixint -1 */
}
static void v_time_str(hb *h)
{
    hb_str(h, "never");
}
static void v_huge_count(hb *h)
{
    hb_byte(h, 0xdd); /* array32 of 2^32-1 elements, none present */
    hb_be(h, UINT32_MAX, 4);
}
static void v_tenant_num(hb *h)
{
    hb_uint(h, 7);
}

#define VALID_WITH(name, field, fn)                                                                \
    static void name(hb *h)                                                                        \
    {                                                                                              \
        vb_valid_with(h, field, fn);                                                               \
    }
VALID_WITH(vb_upper_uuid, "client_id", v_upper_uuid)
VALID_WITH(vb_short_uuid, "client_id", v_short_uuid)
VALID_WITH(vb_long_tenant, "tenant", v_long_slug)
VALID_WITH(vb_nul_account, "account", v_nul_in_str)
VALID_WITH(vb_utf8_tenant, "tenant", v_bad_utf8)
VALID_WITH(vb_many_roles, "roles", v_too_many_roles)
VALID_WITH(vb_role_num, "roles", v_role_not_str)
VALID_WITH(vb_roles_map, "roles", v_roles_map)
VALID_WITH(vb_many_perms, "permissions", v_too_many_perms)
VALID_WITH(vb_long_perm, "permissions", v_long_perm)
VALID_WITH(vb_neg_time, "expires_at", v_negative_time)
VALID_WITH(vb_time_str, "expires_at", v_time_str)
VALID_WITH(vb_huge_perms, "permissions", v_huge_count)
VALID_WITH(vb_tenant_num, "tenant", v_tenant_num)

static void verify_decode_strict(void **state)
{
    (void)state;
    static const body_fn bad[] = {
        vb_not_map,
        vb_nil,
        vb_empty,
        vb_missing_reason,
        vb_valid_not_bool,
        vb_unknown_reason,
        vb_valid_but_reason,
        vb_invalid_but_reason_valid,
        vb_valid_missing_fields,
        vb_duplicate_key,
        vb_trailing,
        vb_key_not_str,
        vb_upper_uuid,
        vb_short_uuid,
        vb_long_tenant,
        vb_nul_account,
        vb_utf8_tenant,
        vb_many_roles,
        vb_role_num,
        vb_roles_map,
        vb_many_perms,
        vb_long_perm,
        vb_neg_time,
        vb_time_str,
        vb_huge_perms,
        vb_tenant_num,
    };
    tkc_verify_res res = TKC_VERIFY_RES_INIT;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hb h = {0};
        bad[i](&h);
        uint8_t *copy = exact_copy(h.b, h.n);
        if (tkc_verify_decode(copy, h.n, &res) != TK_EPROTO)
            fail_msg("bad verify body #%zu was accepted", i);
        assert_false(res.valid);
        assert_int_equal(res.verdict, TK_V_MALFORMED);
        assert_int_equal(res.nroles, 0);
        free(copy);
        hb_free(&h);
    }
    tkc_verify_res_free(&res);
}

/* A valid body cut at every length, then mutated at random: refused or
 * decoded, never a read outside the bytes (ASan) or a broken result. */
static void verify_decode_cut_and_fuzz(void **state)
{
    (void)state;
    hb h = {0};
    tkc_verify_res res = TKC_VERIFY_RES_INIT;

    hb_verify_valid(&h, "0f8fad5b-d9cb-469f-a165-70867728950e", 40);
    for (size_t cut = 0; cut < h.n; cut++) {
        uint8_t *copy = exact_copy(h.b, cut);
        assert_int_equal(tkc_verify_decode(copy, cut, &res), TK_EPROTO);
        assert_false(res.valid);
        free(copy);
    }
    for (int round = 0; round < 20000; round++) {
        size_t n = h.n;
        uint8_t *copy = exact_copy(h.b, n);
        int flips = 1 + (int)(rng() % 4);
        for (int k = 0; k < flips; k++)
            copy[rng() % n] = (uint8_t)rng();
        if (rng() % 4 == 0)
            n = (size_t)(rng() % (n + 1));
        int rc = tkc_verify_decode(copy, n, &res);
        assert_true(rc == 0 || rc == TK_EPROTO);
        if (rc == 0 && res.valid) {
            assert_true(res.nroles <= TK_MAX_ROLES);
            assert_true(res.nperms <= TK_MAX_TENANT_PERMS);
            for (uint32_t i = 0; i < res.nperms; i++)
                assert_true(strlen(res.perms[i]) <= TK_KEY_MAX);
            assert_int_equal(strlen(res.client_id), TK_ID_STR_LEN);
        }
        free(copy);
    }
    /* Pure noise. */
    for (int round = 0; round < 20000; round++) {
        uint8_t buf[64];
        size_t n = (size_t)(rng() % sizeof buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)rng();
        if (n)
            buf[0] = (uint8_t)(0x80 | (rng() % 9)); /* mostly maps */
        uint8_t *copy = exact_copy(buf, n);
        int rc = tkc_verify_decode(copy, n, &res);
        assert_true(rc == 0 || rc == TK_EPROTO);
        free(copy);
    }
    hb_free(&h);
    tkc_verify_res_free(&res);
}

/* ---- typed replies through a connection --------------------------------- */

static cred g_tok, g_pk;
static bool g_check = true; /* the ops below check what they decoded (off while fuzzing) */

typedef int (*op_fn)(tkc *c);

static int op_ping(tkc *c)
{
    return tkc_ping(c, NULL);
}
static int op_auth(tkc *c)
{
    tkc_whoami who;
    return tkc_auth(c, "k", &who);
}
static int op_user_create(tkc *c)
{
    tkc_key k;
    const char *roles[] = {"admin"};
    return tkc_user_create(c, "a", "b", "c", roles, 1, true, &k);
}
static int op_key_create(tkc *c)
{
    tkc_key k;
    return tkc_key_create(c, "a", "b", "c", 0, &k);
}
static int op_token_create(tkc *c)
{
    tkc_new_token t;
    const char *roles[] = {"viewer"};
    int rc = tkc_token_create(c, NULL, roles, 1, 0, &t);
    if (rc == 0 && g_check) {
        assert_string_equal(t.client_id, g_tok.id_str);
        assert_string_equal(t.secret, g_tok.secret);
    }
    return rc;
}
static int op_token_list(tkc *c)
{
    tkc_token_page p = TKC_TOKEN_PAGE_INIT;
    int rc = tkc_token_list(c, NULL, NULL, NULL, 0, &p);
    if (rc == 0 && g_check) {
        assert_int_equal(p.n, 2);
        assert_true(p.more);
        assert_string_equal(p.tokens[0].client_id, g_tok.id_str);
        assert_string_equal(p.tokens[0].description, "CI pipeline");
        assert_int_equal(p.tokens[0].nroles, 2);
        assert_string_equal(p.tokens[0].roles[1], "editor");
        assert_string_equal(p.tokens[0].created_by, "alice");
        assert_true(p.tokens[0].created_at == 1700000000);
        assert_true(p.tokens[0].expires_at == 0);
        assert_string_equal(p.tokens[1].description, "");
        assert_int_equal(p.tokens[1].nroles, 0);
    }
    tkc_token_page_free(&p);
    return rc;
}
static int op_verify(tkc *c)
{
    tkc_verify_res r = TKC_VERIFY_RES_INIT;
    int rc = tkc_verify(c, g_tok.secret, NULL, &r);
    tkc_verify_res_free(&r);
    return rc;
}
static int op_tenant_create(tkc *c)
{
    return tkc_tenant_create(c, "acme");
}
static int op_token_set(tkc *c)
{
    return tkc_token_set(c, g_tok.id_str, "new description");
}
static int op_tenant_delete(tkc *c)
{
    return tkc_tenant_delete(c, "acme");
}
static int op_perm_delete(tkc *c)
{
    return tkc_perm_delete(c, "acme", "orders:read");
}
static int op_account_delete(tkc *c)
{
    return tkc_account_delete(c, "acme", "globex");
}
static int op_user_delete(tkc *c)
{
    return tkc_user_delete(c, "acme", "globex", "alice");
}

static void body_ping(hb *h)
{
    hb_map(h, 1);
    hb_str(h, "version");
    hb_uint(h, 1);
}
static void body_auth(hb *h)
{
    hb_map(h, 4);
    hb_kv(h, "actor", "user");
    hb_kv(h, "tenant", "acme");
    hb_kv(h, "account", "globex");
    hb_kv(h, "user", "alice");
}
static void body_key(hb *h)
{
    hb_map(h, 2);
    hb_kv(h, "key_id", g_pk.id_str);
    hb_kv(h, "personal_key", g_pk.secret);
}
static void body_token(hb *h)
{
    hb_map(h, 3);
    hb_kv(h, "client_id", g_tok.id_str);
    hb_kv(h, "secret", g_tok.secret);
    hb_str(h, "expires_at");
    hb_uint(h, 0);
}
static void hb_list_token(hb *h, const char *id, const char *desc, int nroles)
{
    hb_map(h, 6);
    hb_kv(h, "client_id", id);
    hb_kv(h, "description", desc);
    hb_str(h, "roles");
    hb_arr(h, (uint32_t)nroles);
    if (nroles > 0)
        hb_str(h, "viewer");
    if (nroles > 1)
        hb_str(h, "editor");
    hb_kv(h, "created_by", "alice");
    hb_str(h, "created_at");
    hb_uint(h, 1700000000);
    hb_str(h, "expires_at");
    hb_uint(h, 0);
}
static void body_list(hb *h)
{
    hb_map(h, 3);
    hb_str(h, "tokens");
    hb_arr(h, 2);
    hb_list_token(h, g_tok.id_str, "CI pipeline", 2);
    hb_list_token(h, g_pk.id_str, "", 0);
    hb_str(h, "more");
    hb_bool(h, true);
    hb_kv(h, "next", "AAAAAAAAAAI");
}
static void body_verify(hb *h)
{
    hb_verify_valid(h, g_tok.id_str, 2);
}

/* The new reads: each decodes two rows (or a get's one) and checks them. */
static char g_long_key[TK_KEY_MAX + 1]; /* a role key as long as they come: its cursor too */

static int op_token_get(tkc *c)
{
    tkc_token_page p = TKC_PAGE_INIT;
    int rc = tkc_token_get(c, g_tok.id_str, &p);
    if (rc == 0 && g_check) {
        assert_int_equal(p.n, 1);
        assert_false(p.more);
        assert_string_equal(p.next, "");
        assert_string_equal(p.tokens[0].client_id, g_tok.id_str);
        assert_string_equal(p.tokens[0].description, "CI pipeline");
        assert_string_equal(p.tokens[0].roles[0], "viewer");
        assert_string_equal(p.tokens[0].created_by, "alice");
    }
    tkc_token_page_free(&p);
    return rc;
}
static void check_tenant(const tkc_tenant *t, const char *slug, uint32_t roles)
{
    assert_string_equal(t->tenant, slug);
    assert_true(t->api_tokens);
    assert_int_equal(t->max_tokens, 10000);
    assert_int_equal(t->max_roles, 0);
    assert_int_equal(t->max_keys, UINT32_MAX);
    assert_int_equal(t->create_rate, 10);
    assert_int_equal(t->create_burst, 100);
    assert_int_equal(t->role_count, roles);
    assert_int_equal(t->permission_count, 3);
}
static int op_tenant_list(tkc *c)
{
    tkc_tenant_page p = TKC_PAGE_INIT;
    int rc = tkc_tenant_list(c, NULL, 0, &p);
    if (rc == 0 && g_check) {
        assert_int_equal(p.n, 2);
        check_tenant(&p.tenants[0], "acme", 2);
        check_tenant(&p.tenants[1], "globex", UINT32_MAX);
        assert_true(p.more);
        assert_string_equal(p.next, "globex");
    }
    tkc_tenant_page_free(&p);
    return rc;
}
static int op_tenant_get(tkc *c)
{
    tkc_tenant_page p = TKC_PAGE_INIT;
    int rc = tkc_tenant_get(c, NULL, &p);
    if (rc == 0 && g_check) {
        assert_int_equal(p.n, 1);
        check_tenant(&p.tenants[0], "acme", 2);
    }
    tkc_tenant_page_free(&p);
    return rc;
}
static int op_perm_list(tkc *c)
{
    tkc_perm_page p = TKC_PAGE_INIT;
    int rc = tkc_perm_list(c, "acme", NULL, 0, &p);
    if (rc == 0 && g_check) {
        assert_int_equal(p.n, 2);
        assert_string_equal(p.perms[0].key, "orders:read");
        assert_string_equal(p.perms[0].description, "Read orders");
        assert_string_equal(p.perms[1].key, "orders:write");
        assert_string_equal(p.perms[1].description, "");
        assert_false(p.more);
    }
    tkc_perm_page_free(&p);
    return rc;
}
static int op_role_list(tkc *c)
{
    tkc_role_page p = TKC_PAGE_INIT;
    int rc = tkc_role_list(c, "acme", NULL, 0, &p);
    if (rc == 0 && g_check) {
        assert_int_equal(p.n, 2);
        assert_string_equal(p.roles[0].key, "admin");
        assert_string_equal(p.roles[0].name, "Administrator");
        assert_int_equal(p.roles[0].level, 0);
        assert_int_equal(p.roles[0].nperms, 3);
        assert_string_equal(p.roles[0].perms[2], "orders:2");
        assert_string_equal(p.roles[1].key, g_long_key);
        assert_int_equal(p.roles[1].level, TK_MAX_LEVEL);
        assert_int_equal(p.roles[1].nperms, 0);
        assert_true(p.more);
        assert_string_equal(p.next, g_long_key);
    }
    tkc_role_page_free(&p);
    return rc;
}
static int op_account_list(tkc *c)
{
    tkc_account_page p = TKC_PAGE_INIT;
    int rc = tkc_account_list(c, "acme", NULL, 0, &p);
    if (rc == 0 && g_check) {
        assert_int_equal(p.n, 2);
        assert_string_equal(p.accounts[0].account, "globex");
        assert_int_equal(p.accounts[0].token_count, 7);
        assert_string_equal(p.accounts[1].account, "initech");
        assert_int_equal(p.accounts[1].token_count, 0);
        assert_false(p.more);
    }
    tkc_account_page_free(&p);
    return rc;
}
static int op_user_list(tkc *c)
{
    tkc_user_page p = TKC_PAGE_INIT;
    int rc = tkc_user_list(c, NULL, NULL, NULL, 0, &p);
    if (rc == 0 && g_check) {
        assert_int_equal(p.n, 2);
        assert_string_equal(p.users[0].user, "alice");
        assert_int_equal(p.users[0].nroles, 2);
        assert_string_equal(p.users[0].roles[1], "viewer");
        assert_true(p.users[0].portal);
        assert_int_equal(p.users[0].key_count, 2);
        assert_string_equal(p.users[1].user, "bob");
        assert_int_equal(p.users[1].nroles, 0);
        assert_false(p.users[1].portal);
        assert_true(p.more);
        assert_string_equal(p.next, "bob");
    }
    tkc_user_page_free(&p);
    return rc;
}
static int op_user_get(tkc *c)
{
    tkc_user_page p = TKC_PAGE_INIT;
    int rc = tkc_user_get(c, NULL, NULL, "alice", &p);
    if (rc == 0 && g_check) {
        assert_int_equal(p.n, 1);
        assert_string_equal(p.users[0].user, "alice");
        assert_string_equal(p.users[0].roles[0], "admin");
    }
    tkc_user_page_free(&p);
    return rc;
}
static int op_key_list(tkc *c)
{
    tkc_key_page p = TKC_PAGE_INIT;
    int rc = tkc_key_list(c, NULL, NULL, NULL, NULL, 0, &p);
    if (rc == 0 && g_check) {
        assert_int_equal(p.n, 2);
        assert_string_equal(p.keys[0].key_id, g_pk.id_str);
        assert_true(p.keys[0].created_at == 1700000000);
        assert_true(p.keys[0].expires_at == 0);
        assert_string_equal(p.keys[1].key_id, g_tok.id_str);
        assert_true(p.keys[1].expires_at == 4102444800);
        assert_true(p.more);
        assert_string_equal(p.next, "AAAAAAAAAAI");
    }
    tkc_key_page_free(&p);
    return rc;
}

/* The keyring's: a key of the kind asked for; on any failure the
 * caller's buffer is zeroed. */
static char g_ring_key[TKC_RING_KEY_LEN + 1];

static int ring_add(tkc *c, const char *name, bool gateway)
{
    char key[TKC_RING_KEY_LEN + 1];
    memset(key, 'x', sizeof key);
    int rc = tkc_keyring_add(c, name, gateway, key);
    if (rc == 0 && g_check)
        assert_string_equal(key, g_ring_key);
    if (rc != 0)
        for (size_t i = 0; i < sizeof key; i++)
            assert_int_equal(key[i], 0);
    return rc;
}
static int op_keyring_add(tkc *c)
{
    return ring_add(c, "ci", false);
}
static int op_keyring_add_gateway(tkc *c)
{
    return ring_add(c, "edge-1", true);
}
static int op_keyring_list(tkc *c)
{
    tkc_ring_page p = TKC_PAGE_INIT;
    int rc = tkc_keyring_list(c, NULL, 0, &p);
    if (rc == 0 && g_check) {
        assert_int_equal(p.n, 2);
        assert_string_equal(p.keyring[0].name, "ci");
        assert_false(p.keyring[0].gateway);
        assert_true(p.keyring[0].created_at == 1700000000);
        assert_string_equal(p.keyring[1].name, "edge-1");
        assert_true(p.keyring[1].gateway);
        assert_true(p.keyring[1].created_at == 0);
        assert_true(p.more);
        assert_string_equal(p.next, "edge-1");
    }
    tkc_ring_page_free(&p);
    return rc;
}
static int op_keyring_remove(tkc *c)
{
    return tkc_keyring_remove(c, "ci");
}

static void body_ring_add(hb *h)
{
    make_ring_key("tko_", g_ring_key);
    hb_ring_add(h, g_ring_key);
}
static void body_ring_add_gateway(hb *h)
{
    make_ring_key("tkg_", g_ring_key);
    hb_ring_add(h, g_ring_key);
}
static void body_ring_list(hb *h)
{
    hb_map(h, 3);
    hb_str(h, "keyring");
    hb_arr(h, 2);
    hb_ring_row(h, "ci", false, 1700000000);
    hb_ring_row(h, "edge-1", true, 0);
    hb_str(h, "more");
    hb_bool(h, true);
    hb_kv(h, "next", "edge-1");
}

static void body_token_get(hb *h)
{
    hb_list_token(h, g_tok.id_str, "CI pipeline", 2);
}
static void body_tenant_list(hb *h)
{
    hb_map(h, 3);
    hb_str(h, "tenants");
    hb_arr(h, 2);
    hb_tenant_row(h, "acme", 2);
    hb_tenant_row(h, "globex", UINT32_MAX);
    hb_str(h, "more");
    hb_bool(h, true);
    hb_kv(h, "next", "globex");
}
static void body_tenant_get(hb *h)
{
    hb_tenant_row(h, "acme", 2);
}
static void body_perm_list(hb *h)
{
    hb_map(h, 2);
    hb_str(h, "permissions");
    hb_arr(h, 2);
    hb_perm_row(h, "orders:read", "Read orders");
    hb_perm_row(h, "orders:write", "");
    hb_str(h, "more");
    hb_bool(h, false);
}
static void body_role_list(hb *h)
{
    memset(g_long_key, 'k', TK_KEY_MAX);
    g_long_key[TK_KEY_MAX] = '\0';
    hb_map(h, 3);
    hb_str(h, "roles");
    hb_arr(h, 2);
    hb_role_row(h, "admin", "Administrator", 0, 3);
    hb_role_row(h, g_long_key, "", TK_MAX_LEVEL, 0);
    hb_str(h, "more");
    hb_bool(h, true);
    hb_kv(h, "next", g_long_key);
}
static void body_account_list(hb *h)
{
    hb_map(h, 2);
    hb_str(h, "accounts");
    hb_arr(h, 2);
    hb_account_row(h, "globex", 7);
    hb_account_row(h, "initech", 0);
    hb_str(h, "more");
    hb_bool(h, false);
}
static void body_user_list(hb *h)
{
    hb_map(h, 3);
    hb_str(h, "users");
    hb_arr(h, 2);
    hb_user_row(h, "alice", 2, true);
    hb_user_row(h, "bob", 0, false);
    hb_str(h, "more");
    hb_bool(h, true);
    hb_kv(h, "next", "bob");
}
static void body_user_get(hb *h)
{
    hb_user_row(h, "alice", 1, true);
}
static void body_key_list(hb *h)
{
    hb_map(h, 3);
    hb_str(h, "keys");
    hb_arr(h, 2);
    hb_key_row(h, g_pk.id_str, 1700000000, 0);
    hb_key_row(h, g_tok.id_str, 1700000001, 4102444800u);
    hb_str(h, "more");
    hb_bool(h, true);
    hb_kv(h, "next", "AAAAAAAAAAI");
}

static const struct reply_case {
    const char *name;
    op_fn run;
    body_fn body;
} reply_cases[] = {
    {"ping", op_ping, body_ping},
    {"auth", op_auth, body_auth},
    {"user create", op_user_create, body_key},
    {"key create", op_key_create, body_key},
    {"token create", op_token_create, body_token},
    {"token list", op_token_list, body_list},
    {"verify", op_verify, body_verify},
    {"token get", op_token_get, body_token_get},
    {"tenant list", op_tenant_list, body_tenant_list},
    {"tenant get", op_tenant_get, body_tenant_get},
    {"perm list", op_perm_list, body_perm_list},
    {"role list", op_role_list, body_role_list},
    {"account list", op_account_list, body_account_list},
    {"user list", op_user_list, body_user_list},
    {"user get", op_user_get, body_user_get},
    {"key list", op_key_list, body_key_list},
    {"keyring add", op_keyring_add, body_ring_add},
    {"keyring add gateway", op_keyring_add_gateway, body_ring_add_gateway},
    {"keyring list", op_keyring_list, body_ring_list},
};

/* Runs op against a fake that answers status/body[0..len); returns rc and
 * leaves the fake open for more checks. */
static int run_with_reply(fake *f, op_fn run, uint16_t status, const uint8_t *body, size_t len)
{
    fake_open(f);
    put_frame(f->peer, status, 0, 1, body, (uint32_t)len);
    return run(f->c);
}

static void replies_whole_and_cut(void **state)
{
    (void)state;
    make_cred(TK_KIND_TOKEN, &g_tok);
    make_cred(TK_KIND_PERSONAL, &g_pk);
    for (size_t i = 0; i < sizeof reply_cases / sizeof reply_cases[0]; i++) {
        const struct reply_case *rc = &reply_cases[i];
        hb h = {0};
        fake f;
        rc->body(&h);

        if (run_with_reply(&f, rc->run, 0, h.b, h.n) != 0)
            fail_msg("%s: a valid reply was refused: %s", rc->name, tkc_errmsg(f.c));
        fake_close(&f);

        /* A frame whose body is any proper prefix: malformed, connection dropped. */
        for (size_t cut = 0; cut < h.n; cut++) {
            int r = run_with_reply(&f, rc->run, 0, h.b, cut);
            if (r != TK_EPROTO)
                fail_msg("%s cut at %zu: got %d", rc->name, cut, r);
            assert_false(tkc_refused(f.c));
            assert_non_null(strstr(tkc_errmsg(f.c), "malformed"));
            assert_int_equal(tkc_fd(f.c), -1);
            assert_int_equal(tkc_ping(f.c, NULL), TK_EIO);
            assert_non_null(strstr(tkc_errmsg(f.c), "earlier error"));
            fake_close(&f);
        }
        /* Random corruption: refused or decoded, never a crash. */
        g_check = false;
        for (int round = 0; round < 300; round++) {
            uint8_t *copy = exact_copy(h.b, h.n);
            copy[rng() % h.n] = (uint8_t)rng();
            int r = run_with_reply(&f, rc->run, 0, copy, h.n);
            assert_true(r == 0 || r == TK_EPROTO);
            fake_close(&f);
            free(copy);
        }
        g_check = true;
        hb_free(&h);
    }
}

/* Replies that are well-formed MessagePack but break the contract. */
static void reply_mismatch_tokid(hb *h)
{
    cred other;
    make_cred(TK_KIND_TOKEN, &other);
    hb_map(h, 3);
    hb_kv(h, "client_id", other.id_str); /* not the ID inside the secret */
    hb_kv(h, "secret", g_tok.secret);
    hb_str(h, "expires_at");
    hb_uint(h, 0);
}
static void reply_token_as_key(hb *h)
{
    hb_map(h, 2);
    hb_kv(h, "key_id", g_tok.id_str);
    hb_kv(h, "personal_key", g_tok.secret); /* a tkt_ where a tkp_ belongs */
}
static void reply_bad_checksum(hb *h)
{
    char s[TK_SECRET_LEN + 1];
    memcpy(s, g_pk.secret, sizeof s);
    s[TK_SECRET_LEN - 1] = s[TK_SECRET_LEN - 1] == 'A' ? 'B' : 'A';
    hb_map(h, 2);
    hb_kv(h, "key_id", g_pk.id_str);
    hb_kv(h, "personal_key", s);
}
static void reply_more_without_next(hb *h)
{
    hb_map(h, 2);
    hb_str(h, "tokens");
    hb_arr(h, 1);
    hb_list_token(h, g_tok.id_str, "x", 1);
    hb_str(h, "more");
    hb_bool(h, true);
}
static void reply_more_but_empty(hb *h)
{
    hb_map(h, 2);
    hb_str(h, "tokens");
    hb_arr(h, 0);
    hb_str(h, "more");
    hb_bool(h, true);
}
static void reply_too_many_tokens(hb *h)
{
    hb_map(h, 2);
    hb_str(h, "tokens");
    hb_arr(h, TKC_LIST_MAX + 1); /* refused on the count alone: filler will do */
    for (int i = 0; i <= TKC_LIST_MAX; i++)
        hb_byte(h, 0xc0);
    hb_str(h, "more");
    hb_bool(h, false);
}
static void reply_token_missing_field(hb *h)
{
    hb_map(h, 2);
    hb_str(h, "tokens");
    hb_arr(h, 1);
    hb_map(h, 1);
    hb_kv(h, "client_id", g_tok.id_str);
    hb_str(h, "more");
    hb_bool(h, false);
}
static void reply_long_description(hb *h)
{
    char d[TK_DESC_MAX + 2];
    memset(d, 'd', TK_DESC_MAX + 1);
    d[TK_DESC_MAX + 1] = '\0';
    hb_map(h, 2);
    hb_str(h, "tokens");
    hb_arr(h, 1);
    hb_list_token(h, g_tok.id_str, d, 0);
    hb_str(h, "more");
    hb_bool(h, false);
}
static void reply_actor_unknown(hb *h)
{
    hb_map(h, 1);
    hb_kv(h, "actor", "root");
}
static void reply_version_str(hb *h)
{
    hb_map(h, 1);
    hb_kv(h, "version", "1");
}
static void reply_write_nil(hb *h)
{
    hb_byte(h, 0xc0);
}
static void reply_write_trailing(hb *h)
{
    hb_map(h, 0);
    hb_map(h, 0);
}

/* The new replies, broken one rule at a time. */
static void reply_level_too_high(hb *h)
{
    hb_map(h, 2);
    hb_str(h, "roles");
    hb_arr(h, 1);
    hb_role_row(h, "admin", "", TK_MAX_LEVEL + 1, 0); /* over the schema's limit */
    hb_str(h, "more");
    hb_bool(h, false);
}
static void reply_role_many_perms(hb *h)
{
    hb_map(h, 2);
    hb_str(h, "roles");
    hb_arr(h, 1);
    hb_role_row(h, "admin", "", 0, TK_MAX_ROLE_PERMS + 1);
    hb_str(h, "more");
    hb_bool(h, false);
}
/* A tenant row with the count fields[big] at 2^32 (none when big < 0) and
 * api_tokens a string when toggle_str. */
static void hb_odd_tenant(hb *h, int big, bool toggle_str)
{
    static const char *const f[] = {"max_tokens", "max_roles", "max_keys", "create_rate",
                                    "create_burst", "role_count", "permission_count"};
    hb_map(h, 9);
    hb_kv(h, "tenant", "acme");
    hb_str(h, "api_tokens");
    if (toggle_str)
        hb_str(h, "on");
    else
        hb_bool(h, true);
    for (int i = 0; i < 7; i++) {
        hb_str(h, f[i]);
        hb_uint(h, i == big ? (uint64_t)UINT32_MAX + 1 : 1);
    }
}
static void reply_limit_over_32_bits(hb *h)
{
    hb_odd_tenant(h, 0, false); /* over the schema's limit */
}
static void reply_count_over_32_bits(hb *h)
{
    hb_odd_tenant(h, 5, false); /* the schema has no limit: the result's uint32_t has */
}
static void reply_tenant_toggle_str(hb *h)
{
    hb_odd_tenant(h, -1, true);
}
static void reply_user_many_roles(hb *h)
{
    hb_map(h, 4);
    hb_kv(h, "user", "alice");
    hb_str(h, "roles");
    hb_arr(h, TK_MAX_ROLES + 1);
    for (int i = 0; i <= TK_MAX_ROLES; i++)
        hb_str(h, "r");
    hb_str(h, "portal");
    hb_bool(h, true);
    hb_str(h, "key_count");
    hb_uint(h, 1);
}
static void reply_user_get_as_page(hb *h)
{
    hb_map(h, 2); /* a listing's reply where a get's row belongs */
    hb_str(h, "users");
    hb_arr(h, 1);
    hb_user_row(h, "alice", 1, true);
    hb_str(h, "more");
    hb_bool(h, false);
}
static void reply_key_upper_id(hb *h)
{
    char id[TK_ID_STR_LEN + 1];
    for (int i = 0; i <= TK_ID_STR_LEN; i++)
        id[i] = (char)(g_pk.id_str[i] >= 'a' && g_pk.id_str[i] <= 'f' ? g_pk.id_str[i] - 32
                                                                     : g_pk.id_str[i]);
    hb_map(h, 2);
    hb_str(h, "keys");
    hb_arr(h, 1);
    hb_key_row(h, id, 1, 0);
    hb_str(h, "more");
    hb_bool(h, false);
}
static void reply_key_negative_time(hb *h)
{
    hb_map(h, 2);
    hb_str(h, "keys");
    hb_arr(h, 1);
    hb_map(h, 3);
    hb_kv(h, "key_id", g_pk.id_str);
    hb_str(h, "created_at");
    hb_byte(h, 0xff); /* -1 */
    hb_str(h, "expires_at");
    hb_uint(h, 0);
    hb_str(h, "more");
    hb_bool(h, false);
}
static void reply_token_get_missing(hb *h)
{
    hb_map(h, 5); /* no expires_at */
    hb_kv(h, "client_id", g_tok.id_str);
    hb_kv(h, "description", "x");
    hb_str(h, "roles");
    hb_arr(h, 0);
    hb_kv(h, "created_by", "alice");
    hb_str(h, "created_at");
    hb_uint(h, 1);
}
static void reply_perm_more_without_next(hb *h)
{
    hb_map(h, 2);
    hb_str(h, "permissions");
    hb_arr(h, 1);
    hb_perm_row(h, "orders:read", "");
    hb_str(h, "more");
    hb_bool(h, true);
}
static void reply_account_next_without_more(hb *h)
{
    hb_map(h, 3);
    hb_str(h, "accounts");
    hb_arr(h, 1);
    hb_account_row(h, "globex", 1);
    hb_str(h, "more");
    hb_bool(h, false);
    hb_kv(h, "next", "globex");
}
static void reply_next_too_long(hb *h)
{
    char next[TKC_CURSOR_MAX + 2];
    memset(next, 'n', TKC_CURSOR_MAX + 1);
    next[TKC_CURSOR_MAX + 1] = '\0';
    hb_map(h, 3);
    hb_str(h, "users");
    hb_arr(h, 1);
    hb_user_row(h, "alice", 1, true);
    hb_str(h, "more");
    hb_bool(h, true);
    hb_kv(h, "next", next);
}
static void reply_rows_not_maps(hb *h)
{
    hb_map(h, 2);
    hb_str(h, "tenants");
    hb_arr(h, 1);
    hb_str(h, "acme");
    hb_str(h, "more");
    hb_bool(h, false);
}
static void reply_row_duplicate_key(hb *h)
{
    hb_map(h, 2);
    hb_str(h, "permissions");
    hb_arr(h, 1);
    hb_map(h, 3);
    hb_kv(h, "key", "orders:read");
    hb_kv(h, "description", "");
    hb_kv(h, "key", "orders:write");
    hb_str(h, "more");
    hb_bool(h, false);
}
static void reply_perm_key_nul(hb *h)
{
    hb_map(h, 2);
    hb_str(h, "permissions");
    hb_arr(h, 1);
    hb_map(h, 2);
    hb_str(h, "key");
    hb_strn(h, "ord\0ers", 7);
    hb_kv(h, "description", "");
    hb_str(h, "more");
    hb_bool(h, false);
}

/* A keyring key reply of the wrong kind or form: TK_EPROTO, the
 * caller's buffer zeroed (ring_add checks). */
static void reply_ring_gateway_for_operator(hb *h)
{
    char k[TKC_RING_KEY_LEN + 1];
    make_ring_key("tkg_", k); /* asked for an operator key */
    hb_ring_add(h, k);
}
static void reply_ring_operator_for_gateway(hb *h)
{
    char k[TKC_RING_KEY_LEN + 1];
    make_ring_key("tko_", k); /* asked for a gateway key */
    hb_ring_add(h, k);
}
static void reply_ring_upper_hex(hb *h)
{
    char k[TKC_RING_KEY_LEN + 1];
    make_ring_key("tko_", k);
    k[10] = 'A';
    hb_ring_add(h, k);
}
static void reply_ring_short(hb *h)
{
    char k[TKC_RING_KEY_LEN + 1];
    make_ring_key("tko_", k);
    k[TKC_RING_KEY_LEN - 1] = '\0';
    hb_ring_add(h, k);
}
static void reply_ring_long(hb *h)
{
    char k[TKC_RING_KEY_LEN + 2];
    make_ring_key("tko_", k);
    k[TKC_RING_KEY_LEN] = 'a';
    k[TKC_RING_KEY_LEN + 1] = '\0';
    hb_ring_add(h, k);
}
static void reply_ring_personal_key(hb *h)
{
    hb_ring_add(h, g_pk.secret); /* a tkp_ where a keyring key belongs */
}
static void reply_ring_no_key(hb *h)
{
    hb_map(h, 0);
}
static void reply_ring_name_long(hb *h)
{
    char name[TK_SLUG_MAX + 2];
    memset(name, 'n', TK_SLUG_MAX + 1); /* within the schema's 128, over a slug */
    name[TK_SLUG_MAX + 1] = '\0';
    hb_map(h, 2);
    hb_str(h, "keyring");
    hb_arr(h, 1);
    hb_ring_row(h, name, false, 1);
    hb_str(h, "more");
    hb_bool(h, false);
}
static void reply_ring_row_no_gateway(hb *h)
{
    hb_map(h, 2);
    hb_str(h, "keyring");
    hb_arr(h, 1);
    hb_map(h, 2);
    hb_kv(h, "name", "ci");
    hb_str(h, "created_at");
    hb_uint(h, 1);
    hb_str(h, "more");
    hb_bool(h, false);
}
static void reply_ring_gateway_str(hb *h)
{
    hb_map(h, 2);
    hb_str(h, "keyring");
    hb_arr(h, 1);
    hb_map(h, 3);
    hb_kv(h, "name", "ci");
    hb_kv(h, "gateway", "no");
    hb_str(h, "created_at");
    hb_uint(h, 1);
    hb_str(h, "more");
    hb_bool(h, false);
}

static void replies_contract(void **state)
{
    (void)state;
    static const struct {
        op_fn run;
        body_fn body;
    } bad[] = {
        {op_token_create, reply_mismatch_tokid},
        {op_user_create, reply_token_as_key},
        {op_key_create, reply_bad_checksum},
        {op_token_list, reply_more_but_empty},
        {op_token_list, reply_more_without_next},
        {op_token_list, reply_too_many_tokens},
        {op_token_list, reply_token_missing_field},
        {op_token_list, reply_long_description},
        {op_auth, reply_actor_unknown},
        {op_ping, reply_version_str},
        {op_tenant_create, reply_write_nil},
        {op_tenant_create, reply_write_trailing},
        {op_role_list, reply_level_too_high},
        {op_role_list, reply_role_many_perms},
        {op_tenant_get, reply_limit_over_32_bits},
        {op_tenant_get, reply_count_over_32_bits},
        {op_tenant_get, reply_tenant_toggle_str},
        {op_user_get, reply_user_many_roles},
        {op_user_get, reply_user_get_as_page},
        {op_key_list, reply_key_upper_id},
        {op_key_list, reply_key_negative_time},
        {op_token_get, reply_token_get_missing},
        {op_perm_list, reply_perm_more_without_next},
        {op_account_list, reply_account_next_without_more},
        {op_user_list, reply_next_too_long},
        {op_tenant_list, reply_rows_not_maps},
        {op_perm_list, reply_row_duplicate_key},
        {op_perm_list, reply_perm_key_nul},
        {op_keyring_add, reply_ring_gateway_for_operator},
        {op_keyring_add_gateway, reply_ring_operator_for_gateway},
        {op_keyring_add, reply_ring_upper_hex},
        {op_keyring_add, reply_ring_short},
        {op_keyring_add, reply_ring_long},
        {op_keyring_add, reply_ring_personal_key},
        {op_keyring_add, reply_ring_no_key},
        {op_keyring_list, reply_ring_name_long},
        {op_keyring_list, reply_ring_row_no_gateway},
        {op_keyring_list, reply_ring_gateway_str},
    };
    make_cred(TK_KIND_TOKEN, &g_tok);
    make_cred(TK_KIND_PERSONAL, &g_pk);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hb h = {0};
        fake f;
        bad[i].body(&h);
        int r = run_with_reply(&f, bad[i].run, 0, h.b, h.n);
        if (r != TK_EPROTO)
            fail_msg("contract case #%zu: got %d", i, r);
        fake_close(&f);
        hb_free(&h);
    }
    /* A write's reply may be {} as a map, or carry keys we do not know;
     * nil or bytes after the map are refused. Every write alike. */
    static const op_fn writes[] = {op_tenant_create,  op_token_set,   op_tenant_delete,
                                   op_perm_delete,    op_account_delete, op_user_delete,
                                   op_keyring_remove};
    for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++) {
        static const body_fn bodies[] = {reply_write_nil, reply_write_trailing};
        hb h = {0};
        fake f;
        hb_map(&h, 1);
        hb_kv(&h, "note", "later servers may say more");
        if (run_with_reply(&f, writes[i], 0, h.b, h.n) != 0)
            fail_msg("write #%zu: %s", i, tkc_errmsg(f.c));
        fake_close(&f);
        for (size_t k = 0; k < 2; k++) {
            h.n = 0;
            bodies[k](&h);
            assert_int_equal(run_with_reply(&f, writes[i], 0, h.b, h.n), TK_EPROTO);
            fake_close(&f);
        }
        hb_free(&h);
    }
}

/* Refusals: the server's message, the connection goes on. */
static void server_refusals(void **state)
{
    (void)state;
    fake f;
    hb e = {0};

    fake_open(&f);
    hb_map(&e, 1);
    hb_kv(&e, "error", "role admin is stronger than yours");
    fake_reply(&f, proto_status(TK_EDENIED), &e);
    assert_int_equal(tkc_tenant_create(f.c, "acme"), TK_EDENIED);
    assert_true(tkc_refused(f.c));
    assert_string_equal(tkc_errmsg(f.c), "role admin is stronger than yours");

    /* No body: the status's name. */
    fake_reply(&f, proto_status(TK_ENOTFOUND), NULL);
    assert_int_equal(tkc_ping(f.c, NULL), TK_ENOTFOUND);
    assert_string_equal(tkc_errmsg(f.c), tk_strerror(TK_ENOTFOUND));

    /* Control characters never reach a terminal. */
    e.n = 0;
    hb_map(&e, 1);
    hb_kv(&e, "error", "bad\nline\x1b[31m");
    fake_reply(&f, proto_status(TK_EINVAL), &e);
    assert_int_equal(tkc_tenant_create(f.c, "acme"), TK_EINVAL);
    assert_string_equal(tkc_errmsg(f.c), "bad line [31m");

    /* A status this client does not know is still a refusal. */
    fake_reply(&f, 99, NULL);
    assert_int_equal(tkc_tenant_create(f.c, "acme"), -99);
    assert_true(tkc_refused(f.c));

    /* A verify refused (gateway key required). */
    e.n = 0;
    hb_map(&e, 1);
    hb_kv(&e, "error", "verification needs the gateway key");
    fake_reply(&f, proto_status(TK_EUNAUTH), &e);
    tkc_verify_res res = TKC_VERIFY_RES_INIT;
    assert_int_equal(tkc_verify(f.c, "tkt_x", NULL, &res), TK_EUNAUTH);
    assert_string_equal(tkc_errmsg(f.c), "verification needs the gateway key");

    /* After all that, the stream is still in step. */
    fake_reply(&f, 0, &EMPTY_OK);
    assert_int_equal(tkc_tenant_create(f.c, "acme"), 0);
    assert_false(tkc_refused(f.c));
    assert_string_equal(tkc_errmsg(f.c), "");

    /* The generic call: any status is an answer. */
    e.n = 0;
    hb_map(&e, 1);
    hb_kv(&e, "error", "unknown opcode 0x7f");
    fake_reply(&f, proto_status(TK_EOPCODE), &e);
    uint16_t status = 0;
    const uint8_t *body = NULL;
    size_t len = 0;
    static const uint8_t raw[] = {0x81, 0xa1, 'x', 0x01};
    assert_int_equal(tkc_call(f.c, 0x7f, raw, sizeof raw, &status, &body, &len), 0);
    assert_int_equal(status, proto_status(TK_EOPCODE));
    assert_int_equal(len, e.n);
    assert_memory_equal(body, e.b, e.n);
    assert_string_equal(tkc_errmsg(f.c), "unknown opcode 0x7f");
    proto_header h;
    for (int i = 0; i < 6; i++)
        free(get_request(f.peer, &h));
    uint8_t *req = get_request(f.peer, &h);
    assert_int_equal(h.code, 0x7f);
    assert_int_equal(h.id, 7);
    assert_int_equal(h.len, sizeof raw);
    assert_memory_equal(req, raw, sizeof raw);
    free(req);

    tkc_verify_res_free(&res);
    hb_free(&e);
    fake_close(&f);
}

/* Frame-level faults drop the connection with a clear local error. */
static void frame_faults(void **state)
{
    (void)state;
    fake f;
    hb ok = {0};
    body_ping(&ok);

    /* A reply for another request. */
    fake_open(&f);
    put_frame(f.peer, 0, 0, 2, ok.b, (uint32_t)ok.n);
    assert_int_equal(tkc_ping(f.c, NULL), TK_EPROTO);
    assert_non_null(strstr(tkc_errmsg(f.c), "does not match"));
    assert_int_equal(tkc_ping(f.c, NULL), TK_EIO);
    fake_close(&f);

    /* Flags set. */
    fake_open(&f);
    put_frame(f.peer, 0, 1, 1, ok.b, (uint32_t)ok.n);
    assert_int_equal(tkc_ping(f.c, NULL), TK_EPROTO);
    fake_close(&f);

    /* A length past the limit is refused from the header alone. */
    fake_open(&f);
    put_frame(f.peer, 0, 0, 1, NULL, 0);
    uint8_t hdr[PROTO_HEADER_LEN];
    proto_header big = {.len = TKC_MAX_REPLY + 1, .code = 0, .flags = 0, .id = 2};
    proto_header_put(hdr, &big);
    write_all(f.peer, hdr, sizeof hdr);
    assert_int_equal(tkc_tenant_create(f.c, "a"), 0);
    assert_int_equal(tkc_tenant_create(f.c, "b"), TK_EPROTO);
    assert_non_null(strstr(tkc_errmsg(f.c), "exceeds"));
    fake_close(&f);

    /* The server closes mid-header, mid-body, and before any byte. */
    for (int where = 0; where < 3; where++) {
        fake_open(&f);
        uint8_t frame[PROTO_HEADER_LEN + 64];
        proto_header h = {.len = (uint32_t)ok.n, .code = 0, .flags = 0, .id = 1};
        proto_header_put(frame, &h);
        memcpy(frame + PROTO_HEADER_LEN, ok.b, ok.n);
        size_t n = where == 0 ? 5 : where == 1 ? PROTO_HEADER_LEN + 1 : 0;
        if (n)
            write_all(f.peer, frame, n);
        shutdown(f.peer, SHUT_WR);
        assert_int_equal(tkc_ping(f.c, NULL), TK_EIO);
        assert_false(tkc_refused(f.c));
        assert_non_null(strstr(tkc_errmsg(f.c), "closed the connection"));
        if (n)
            assert_non_null(strstr(tkc_errmsg(f.c), "middle"));
        fake_close(&f);
    }

    /* A server that goes silent: the timeout ends the wait. */
    fake_open(&f);
    tkc_set_timeout(f.c, 150);
    int64_t t0 = (int64_t)time(NULL);
    assert_int_equal(tkc_ping(f.c, NULL), TK_EIO);
    assert_non_null(strstr(tkc_errmsg(f.c), "timed out"));
    assert_true((int64_t)time(NULL) - t0 <= 2);
    fake_close(&f);

    /* At its connection limit the server says EBUSY with id 0 and closes. */
    fake_open(&f);
    hb e = {0};
    hb_map(&e, 1);
    hb_kv(&e, "error", "too many connections");
    put_frame(f.peer, proto_status(TK_EBUSY), 0, 0, e.b, (uint32_t)e.n);
    close(f.peer);
    f.peer = -1;
    assert_int_equal(tkc_ping(f.c, NULL), TK_EBUSY);
    assert_true(tkc_refused(f.c));
    assert_string_equal(tkc_errmsg(f.c), "too many connections");
    assert_int_equal(tkc_ping(f.c, NULL), TK_EIO);
    fake_close(&f);
    hb_free(&e);
    hb_free(&ok);
}

/* ---- pipelining against a fake ------------------------------------------ */

/* Queue 300 verifications, read them on the fake side (ids 1..300 in
 * order, bodies as sent), answer, and take the answers in order. */
static void pipeline_in_order(void **state)
{
    (void)state;
    fake f;
    cred toks[3];
    tkc_verify_res res = TKC_VERIFY_RES_INIT;
    const int n = 300;

    for (int i = 0; i < 3; i++)
        make_cred(TK_KIND_TOKEN, &toks[i]);
    fake_open(&f);
    for (int i = 0; i < n; i++)
        assert_int_equal(tkc_verify_send(f.c, toks[i % 3].secret, NULL), 0);
    assert_int_equal(tkc_inflight(f.c), (size_t)n);
    /* A one-shot call must not steal a pipelined reply. */
    assert_int_equal(tkc_ping(f.c, NULL), TK_EINVAL);
    assert_int_equal(tkc_flush(f.c), 0);
    for (int i = 0; i < n; i++) {
        proto_header h;
        uint8_t *body = get_request(f.peer, &h);
        assert_int_equal(h.code, OP_VERIFY);
        assert_int_equal(h.id, (uint32_t)(i + 1));
        hb want = {0};
        hb_map(&want, 1);
        hb_kv(&want, "secret", toks[i % 3].secret);
        assert_int_equal(h.len, want.n);
        assert_memory_equal(body, want.b, want.n);
        hb_free(&want);
        free(body);

        hb r = {0};
        if (i % 3 == 0) {
            hb_verify_valid(&r, toks[0].id_str, 1);
        } else {
            hb_map(&r, 2);
            hb_str(&r, "valid");
            hb_bool(&r, false);
            hb_kv(&r, "reason", i % 3 == 1 ? "unknown" : "expired");
        }
        put_frame(f.peer, 0, 0, h.id, r.b, (uint32_t)r.n);
        hb_free(&r);
        /* Take the answers in batches, so this one thread never fills the
         * socket buffer it is writing into. */
        if (i % 50 == 49) {
            for (int k = i - 49; k <= i; k++) {
                assert_int_equal(tkc_verify_recv(f.c, &res), 0);
                assert_int_equal(res.valid, k % 3 == 0);
                if (k % 3 == 0)
                    assert_string_equal(res.client_id, toks[0].id_str);
                else
                    assert_int_equal(res.verdict, k % 3 == 1 ? TK_V_UNKNOWN : TK_V_EXPIRED);
            }
        }
    }
    assert_int_equal(tkc_inflight(f.c), 0);
    assert_int_equal(tkc_verify_recv(f.c, &res), TK_EINVAL);
    tkc_verify_res_free(&res);
    fake_close(&f);
}

/* A fake server that answers each request as it reads it, with a large
 * reply, and blocks on its own writes: like tokend, it stops reading while
 * its replies are not read. A client that only wrote would deadlock. */
typedef struct echo_arg {
    int fd;
    int n;
    int ok;
} echo_arg;

static void *echo_server(void *p)
{
    echo_arg *a = p;
    hb r = {0};
    for (int i = 0; i < a->n; i++) {
        uint8_t hdr[PROTO_HEADER_LEN], body[512];
        proto_header h;
        if (read_all(a->fd, hdr, sizeof hdr))
            goto out;
        proto_header_get(hdr, &h);
        if (h.len > sizeof body || read_all(a->fd, body, h.len))
            goto out;
        char tenant[32];
        snprintf(tenant, sizeof tenant, "t%u", h.id);
        r.n = 0;
        hb_map(&r, 8);
        hb_str(&r, "valid");
        hb_bool(&r, true);
        hb_kv(&r, "reason", "valid");
        hb_kv(&r, "client_id", "0f8fad5b-d9cb-469f-a165-70867728950e");
        hb_kv(&r, "tenant", tenant);
        hb_kv(&r, "account", "globex");
        hb_str(&r, "roles");
        hb_arr(&r, 0);
        hb_str(&r, "permissions");
        hb_arr(&r, 16);
        for (int k = 0; k < 16; k++)
            hb_str(&r, "orders:read:all-of-them-with-a-long-name-to-fill-buffers");
        hb_str(&r, "expires_at");
        hb_uint(&r, 0);
        put_frame(a->fd, 0, 0, h.id, r.b, (uint32_t)r.n);
    }
    a->ok = 1;
out:
    hb_free(&r);
    return NULL;
}

static void pipeline_no_deadlock(void **state)
{
    (void)state;
    fake f;
    cred tok;
    pthread_t th;
    tkc_verify_res res = TKC_VERIFY_RES_INIT;
    const int n = 20000; /* ~20 MB of replies: far more than the socket buffers */

    make_cred(TK_KIND_TOKEN, &tok);
    fake_open(&f);
    tkc_set_timeout(f.c, 20000);
    echo_arg a = {.fd = f.peer, .n = n, .ok = 0};
    assert_int_equal(pthread_create(&th, NULL, echo_server, &a), 0);
    for (int i = 0; i < n; i++)
        if (tkc_verify_send(f.c, tok.secret, NULL) != 0)
            fail_msg("send %d: %s", i, tkc_errmsg(f.c));
    for (int i = 0; i < n; i++) {
        char want[32];
        if (tkc_verify_recv(f.c, &res) != 0)
            fail_msg("recv %d: %s", i, tkc_errmsg(f.c));
        snprintf(want, sizeof want, "t%d", i + 1);
        assert_string_equal(res.tenant, want);
        assert_int_equal(res.nperms, 16);
    }
    pthread_join(th, NULL);
    assert_int_equal(a.ok, 1);
    tkc_verify_res_free(&res);
    fake_close(&f);
}

/* Once warm, the pipelined verify path allocates nothing per request:
 * windows of 50 requests, 2000 to warm up, then 20000 counted. */
static void pipeline_allocation_free(void **state)
{
    (void)state;
    fake f;
    cred tok;
    pthread_t th;
    tkc_verify_res res = TKC_VERIFY_RES_INIT;
    const int warm = 2000, counted = 20000, window = 50;

    make_cred(TK_KIND_TOKEN, &tok);
    fake_open(&f);
    echo_arg a = {.fd = f.peer, .n = warm + counted, .ok = 0};
    assert_int_equal(pthread_create(&th, NULL, echo_server, &a), 0);
    for (int done = 0; done < warm + counted; done += window) {
        if (done == warm)
            allocs_start();
        for (int i = 0; i < window; i++)
            if (tkc_verify_send(f.c, tok.secret, NULL) != 0)
                break;
        for (int i = 0; i < window; i++)
            if (tkc_verify_recv(f.c, &res) != 0 || !res.valid)
                break;
    }
    long during = allocs_stop();
    pthread_join(th, NULL);
    assert_int_equal(a.ok, 1);
    char want[32];
    snprintf(want, sizeof want, "t%d", warm + counted);
    assert_string_equal(res.tenant, want); /* every reply was taken */

    /* The counter does count. */
    allocs_start();
    tkc *c = tkc_new();
    long made = allocs_stop();
    tkc_free(c);
    assert_true(made > 0);

    assert_int_equal(during, 0);
    tkc_verify_res_free(&res);
    fake_close(&f);
}

/* ---- connecting --------------------------------------------------------- */

/* A listening socket on a free port of addr (AF_INET or AF_INET6); -1 when
 * the family is unavailable. */
static int listen_on(int family, int *port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    if (family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sl = sizeof *s4;
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_loopback;
        sl = sizeof *s6;
    }
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 8) != 0) {
        close(fd);
        return -1;
    }
    sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                    : ((struct sockaddr_in6 *)&ss)->sin6_port);
    return fd;
}

/* A loopback port with nothing listening. */
static int dead_port(void)
{
    int port = 0;
    int fd = listen_on(AF_INET, &port);
    assert_true(fd >= 0);
    close(fd);
    return port;
}

static void connecting(void **state)
{
    (void)state;
    tkc *c = tkc_new();
    char addr[64];
    int port;
    static const char *const bad[] = {"",           "nohost",   "127.0.0.1", "::1:80",
                                      "[::1]",      "[::1]:",   "[::1]80",   "host:0",
                                      "host:65536", "host:12a", ":7070",     "host:123456"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (tkc_connect(c, bad[i]) != TK_EINVAL)
            fail_msg("address \"%s\" was accepted", bad[i]);
        assert_non_null(strstr(tkc_errmsg(c), "bad address"));
    }
    assert_int_equal(tkc_connect(c, NULL), TK_EINVAL);

    snprintf(addr, sizeof addr, "127.0.0.1:%d", dead_port());
    assert_int_equal(tkc_connect(c, addr), TK_EIO);
    assert_non_null(strstr(tkc_errmsg(c), "cannot connect"));
    assert_false(tkc_refused(c));
    assert_int_equal(tkc_ping(c, NULL), TK_EIO);
    assert_string_equal(tkc_errmsg(c), "not connected");

    int lfd = listen_on(AF_INET, &port);
    assert_true(lfd >= 0);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    assert_int_equal(tkc_connect(c, addr), 0);
    assert_true(tkc_fd(c) >= 0);
    snprintf(addr, sizeof addr, "localhost:%d", port); /* ::1 may refuse first */
    assert_int_equal(tkc_connect(c, addr), 0);
    close(lfd);

    lfd = listen_on(AF_INET6, &port);
    if (lfd >= 0) {
        snprintf(addr, sizeof addr, "[::1]:%d", port);
        assert_int_equal(tkc_connect(c, addr), 0);
        close(lfd);
    }
    tkc_free(c);
}

/* ---- the real server ---------------------------------------------------- */

typedef struct srv {
    char *dir;
    pid_t pid;
    char addr[64];
    char opkey[256];
} srv;

static const char *bin_dir(void)
{
    const char *b = getenv("BIN");
    return b && *b ? b : "bin";
}

static char *bin_path(const char *name)
{
    return tkt_path(bin_dir(), name);
}

static bool have_server(void)
{
    char *p = bin_path("tokend");
    bool ok = access(p, X_OK) == 0;
    free(p);
    return ok;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Stops the server (SIGTERM, then SIGKILL after 5 s), reaps it, removes the
 * data directory and frees s (may be NULL). */
static void srv_stop(srv *s)
{
    if (!s)
        return;
    if (s->pid > 0) {
        int st;
        kill(s->pid, SIGTERM);
        for (int i = 0; i < 500; i++) {
            if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
                s->pid = 0;
                break;
            }
            sleep_ms(10);
        }
        if (s->pid > 0) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &st, 0);
        }
    }
    tkt_rmdir(s->dir);
    free(s->dir);
    free(s);
}

/* Starts $BIN/tokend on a free loopback port with a fresh data directory;
 * waits for "tokend: listening on HOST:PORT" in its stderr (a file, so the
 * child can never block on a full pipe). */
static int srv_setup(void **state)
{
    if (!have_server()) {
        *state = NULL;
        return 0;
    }
    srv *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->dir = tkt_mkdtemp();
    assert_non_null(s->dir);
    char *data = tkt_path(s->dir, "data");
    char *log = tkt_path(s->dir, "tokend.log");
    char *exe = bin_path("tokend");
    pid_t parent = getpid();

    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        if (getppid() != parent)
            _exit(127);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0)
            _exit(127);
        dup2(fd, 2);
        dup2(fd, 1);
        execl(exe, exe, "--listen", "127.0.0.1:0", "--http", "none", "--data", data, (char *)NULL);
        _exit(127);
    }
    /* Wait up to 15 s for the listening line. */
    for (int i = 0; i < 1500 && !s->addr[0]; i++) {
        size_t n = 0;
        unsigned char *text = tkt_read_file(log, &n);
        if (text) {
            char *t = realloc(text, n + 1);
            assert_non_null(t);
            t[n] = '\0';
            char *line = strstr(t, "tokend: listening on ");
            if (line && strchr(line, '\n')) {
                line += strlen("tokend: listening on ");
                size_t k = strcspn(line, " ,\r\n");
                if (k < sizeof s->addr) {
                    memcpy(s->addr, line, k);
                    s->addr[k] = '\0';
                }
            }
            free(t);
        }
        int st;
        if (!s->addr[0] && waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            break;
        }
        if (!s->addr[0])
            sleep_ms(10);
    }
    int ret = -1;
    char *keyfile = tkt_path(data, "operator.key");
    size_t n = 0;
    unsigned char *k = s->addr[0] ? tkt_read_file(keyfile, &n) : NULL;
    while (k && n > 0 && (k[n - 1] == '\n' || k[n - 1] == '\r' || k[n - 1] == ' '))
        n--;
    if (k && n > 0 && n < sizeof s->opkey) {
        memcpy(s->opkey, k, n);
        s->opkey[n] = '\0';
        *state = s;
        ret = 0;
    } else {
        size_t ln = 0;
        unsigned char *text = tkt_read_file(log, &ln);
        fprintf(stderr, "tokend did not start (or no operator key); its output:\n%.*s\n", (int)ln,
                text ? (char *)text : "");
        free(text);
        srv_stop(s); /* a failed setup gets no teardown: leave nothing behind */
        *state = NULL;
    }
    free(k);
    free(keyfile);
    free(data);
    free(log);
    free(exe);
    return ret;
}

static int srv_teardown(void **state)
{
    srv_stop(*state);
    return 0;
}

#define NEED_SERVER(s)                                                                             \
    srv *s = *state;                                                                               \
    if (!s) {                                                                                      \
        skip();                                                                                    \
        return;                                                                                    \
    }

static tkc *srv_connect(const srv *s, const char *key)
{
    tkc *c = tkc_new();
    tkc_set_timeout(c, 10000);
    if (tkc_connect(c, s->addr) != 0)
        fail_msg("connect %s: %s", s->addr, tkc_errmsg(c));
    if (key && tkc_auth(c, key, NULL) != 0)
        fail_msg("auth: %s", tkc_errmsg(c));
    return c;
}

#define OK(call)                                                                                   \
    do {                                                                                           \
        int ok_rc_ = (call);                                                                       \
        if (ok_rc_ != 0)                                                                           \
            fail_msg("%s: %d %s", #call, ok_rc_, tkc_errmsg(op));                                  \
    } while (0)

/* acme: roles admin L0 {orders:read, orders:write}, viewer L2 {orders:read};
 * account globex: alice (admin, portal), bob (viewer, no portal). */
static void world(tkc *op, tkc_key *alice, tkc_key *bob)
{
    const char *admin_perms[] = {"orders:read", "orders:write"};
    const char *viewer_perms[] = {"orders:read"};
    const char *admin[] = {"admin"}, *viewer[] = {"viewer"};
    OK(tkc_tenant_create(op, "acme"));
    OK(tkc_perm_put(op, "acme", "orders:read", "Read orders"));
    OK(tkc_role_put(op, "acme", "admin", "Administrator", 0, admin_perms, 2));
    OK(tkc_role_put(op, "acme", "viewer", NULL, 2, viewer_perms, 1));
    OK(tkc_account_create(op, "acme", "globex"));
    OK(tkc_user_create(op, "acme", "globex", "alice", admin, 1, true, alice));
    OK(tkc_user_create(op, "acme", "globex", "bob", viewer, 1, false, bob));
}

static void server_every_operation(void **state)
{
    NEED_SERVER(s);
    tkc_key alice, bob, extra;
    tkc_whoami who;
    tkc_new_token t1, t2;
    tkc_verify_res res = TKC_VERIFY_RES_INIT;
    tkc_token_page page = TKC_TOKEN_PAGE_INIT;
    const char *viewer[] = {"viewer"}, *admin[] = {"admin"};
    uint32_t version = 0;

    /* Unauthenticated: PING and VERIFY only. */
    tkc *anon = srv_connect(s, NULL);
    assert_int_equal(tkc_ping(anon, &version), 0);
    assert_int_equal(version, PROTO_VERSION);
    assert_int_equal(tkc_tenant_create(anon, "acme"), TK_EUNAUTH);
    assert_true(tkc_refused(anon));
    assert_true(tkc_errmsg(anon)[0] != '\0');
    assert_int_equal(tkc_auth(anon, "tkp_not-a-key", NULL), TK_EUNAUTH);

    tkc *op = srv_connect(s, NULL);
    assert_int_equal(tkc_auth(op, s->opkey, &who), 0);
    assert_int_equal(who.actor, TKC_ACTOR_OPERATOR);
    world(op, &alice, &bob);
    assert_int_equal(strncmp(alice.personal_key, "tkp_", 4), 0);

    /* Rule 1: no tokens while the toggle is off. */
    tkc *ua = srv_connect(s, NULL);
    assert_int_equal(tkc_auth(ua, alice.personal_key, &who), 0);
    assert_int_equal(who.actor, TKC_ACTOR_USER);
    assert_int_equal(tkc_token_create(ua, "CI", viewer, 1, 0, &t1), TK_EDISABLED);
    OK(tkc_tenant_set(op, "acme", true));

    int64_t exp = (int64_t)time(NULL) + 86400;
    assert_int_equal(tkc_token_create(ua, "CI", viewer, 1, exp, &t1), 0);
    assert_true(t1.expires_at == exp);
    assert_int_equal(strncmp(t1.secret, "tkt_", 4), 0);
    assert_int_equal(tkc_token_create(ua, NULL, admin, 1, 0, &t2), 0);

    assert_int_equal(tkc_verify(anon, t1.secret, NULL, &res), 0);
    assert_true(res.valid);
    assert_string_equal(res.client_id, t1.client_id);
    assert_string_equal(res.tenant, "acme");
    assert_string_equal(res.account, "globex");
    assert_int_equal(res.nroles, 1);
    assert_string_equal(res.roles[0], "viewer");
    assert_int_equal(res.nperms, 1);
    assert_string_equal(res.perms[0], "orders:read");
    assert_true(res.expires_at == exp);
    assert_int_equal(tkc_verify(anon, t1.secret, t1.client_id, &res), 0);
    assert_true(res.valid);
    assert_int_equal(tkc_verify(anon, t1.secret, t2.client_id, &res), 0);
    assert_false(res.valid);
    assert_int_equal(res.verdict, TK_V_MISMATCH);
    assert_int_equal(tkc_verify(anon, "tkt_garbage", NULL, &res), 0);
    assert_int_equal(res.verdict, TK_V_MALFORMED);
    assert_int_equal(tkc_verify(anon, alice.personal_key, NULL, &res), 0);
    assert_int_equal(res.verdict, TK_V_WRONG_KIND); /* rule 8 */
    assert_int_equal(tkc_auth(anon, t1.secret, NULL), TK_EUNAUTH);

    /* Listing: the user's own account, and the operator naming it; pages. */
    assert_int_equal(tkc_token_list(ua, NULL, NULL, NULL, 0, &page), 0);
    assert_int_equal(page.n, 2);
    assert_false(page.more);
    assert_string_equal(page.tokens[0].client_id, t1.client_id);
    assert_string_equal(page.tokens[0].description, "CI");
    assert_string_equal(page.tokens[0].created_by, "alice");
    assert_string_equal(page.tokens[0].roles[0], "viewer");
    assert_true(page.tokens[0].expires_at == exp);
    assert_true(llabs(page.tokens[0].created_at - (int64_t)time(NULL)) < 60);
    assert_int_equal(tkc_token_list(op, "acme", "globex", NULL, 1, &page), 0);
    assert_int_equal(page.n, 1);
    assert_true(page.more);
    char after[TKC_CURSOR_MAX + 1];
    memcpy(after, page.next, sizeof after);
    assert_int_equal(tkc_token_list(op, "acme", "globex", after, 1, &page), 0);
    assert_int_equal(page.n, 1);
    assert_false(page.more);
    assert_string_equal(page.next, "");
    assert_string_equal(page.tokens[0].client_id, t2.client_id);
    /* A client ID is not a cursor. */
    assert_int_equal(tkc_token_list(op, "acme", "globex", t1.client_id, 1, &page), TK_EINVAL);

    /* Rule 2 and 3 through USER_SET: bob gets the portal, stays a viewer. */
    tkc *ub = srv_connect(s, bob.personal_key);
    assert_int_equal(tkc_token_create(ub, "x", viewer, 1, 0, &t2), TK_EDENIED);
    OK(tkc_user_set(op, "acme", "globex", "bob", NULL, 0, 1));
    assert_int_equal(tkc_token_create(ub, "x", admin, 1, 0, &t2), TK_EDENIED);
    assert_true(tkc_errmsg(ub)[0] != '\0');
    assert_int_equal(tkc_token_create(ub, "x", viewer, 1, 0, &t2), 0);
    OK(tkc_user_set(op, "acme", "globex", "bob", admin, 1, TKC_UNCHANGED));
    assert_int_equal(tkc_token_create(ub, "y", admin, 1, 0, &t2), 0);

    /* Personal keys: a second one works, a deleted one stops at once. */
    OK(tkc_key_create(op, "acme", "globex", "alice", exp, &extra));
    tkc *ux = srv_connect(s, extra.personal_key);
    assert_int_equal(tkc_token_list(ux, NULL, NULL, NULL, 0, &page), 0);
    OK(tkc_key_delete(op, extra.key_id));
    assert_int_equal(tkc_token_list(ux, NULL, NULL, NULL, 0, &page), TK_EUNAUTH);
    tkc_free(ux);

    /* Rule 6: a deleted role drops out of its tokens. */
    OK(tkc_role_delete(op, "acme", "viewer"));
    assert_int_equal(tkc_verify(anon, t1.secret, NULL, &res), 0);
    assert_true(res.valid);
    assert_int_equal(res.nroles, 0);
    assert_int_equal(res.nperms, 0);

    /* Rule 5: delete, then it no longer verifies. */
    assert_int_equal(tkc_token_delete(ua, t1.client_id), 0);
    assert_int_equal(tkc_verify(anon, t1.secret, NULL, &res), 0);
    assert_int_equal(res.verdict, TK_V_UNKNOWN);
    assert_int_equal(tkc_token_delete(ua, t1.client_id), TK_ENOTFOUND);

    /* Rule 1, second half: off again, every token of the tenant fails. */
    OK(tkc_tenant_set(op, "acme", false));
    assert_int_equal(tkc_verify(anon, t2.secret, NULL, &res), 0);
    assert_int_equal(res.verdict, TK_V_DISABLED);

    tkc_verify_res_free(&res);
    tkc_token_page_free(&page);
    tkc_free(ub);
    tkc_free(ua);
    tkc_free(op);
    tkc_free(anon);
}

/* world() plus a second tenant, umbrella: role staff {labs:enter}, account
 * corp, carol (staff, portal). API tokens on in both. */
static void two_tenants(tkc *op, tkc_key *alice, tkc_key *bob, tkc_key *carol)
{
    const char *labs[] = {"labs:enter"}, *staff[] = {"staff"};
    world(op, alice, bob);
    OK(tkc_tenant_create(op, "umbrella"));
    OK(tkc_role_put(op, "umbrella", "staff", "Staff", 1, labs, 1));
    OK(tkc_account_create(op, "umbrella", "corp"));
    OK(tkc_user_create(op, "umbrella", "corp", "carol", staff, 1, true, carol));
    OK(tkc_tenant_set(op, "acme", true));
    OK(tkc_tenant_set(op, "umbrella", true));
}

/* A refusal: the status, and the server said why. */
#define REFUSED(c, call, code)                                                                     \
    do {                                                                                           \
        int refused_rc_ = (call);                                                                  \
        if (refused_rc_ != (code))                                                                 \
            fail_msg("%s: %d (%s), wanted %d", #call, refused_rc_, tkc_errmsg(c), (code));         \
        assert_true(tkc_refused(c));                                                               \
        assert_true(tkc_errmsg(c)[0] != '\0');                                                     \
    } while (0)

/* Every read, by the operator and by users, with the refusal of each rule
 * that applies: kinds only the operator reads, the portal flag (rule 2), a
 * user's own tenant and account whatever it names (rule 7). */
static void server_reads(void **state)
{
    NEED_SERVER(s);
    tkc_key alice, bob, carol, extra;
    tkc_new_token t, tc;
    tkc_tenant_page tn = TKC_PAGE_INIT;
    tkc_perm_page pp = TKC_PAGE_INIT;
    tkc_role_page rp = TKC_PAGE_INIT;
    tkc_account_page ap = TKC_PAGE_INIT;
    tkc_user_page up = TKC_PAGE_INIT;
    tkc_key_page kp = TKC_PAGE_INIT;
    tkc_token_page tp = TKC_PAGE_INIT;
    tkc_verify_res res = TKC_VERIFY_RES_INIT;
    const char *viewer[] = {"viewer"}, *staff[] = {"staff"};
    char after[TKC_CURSOR_MAX + 1];
    int64_t exp = (int64_t)time(NULL) + 86400, now = (int64_t)time(NULL);

    tkc *op = srv_connect(s, s->opkey);
    two_tenants(op, &alice, &bob, &carol);
    tkc *ua = srv_connect(s, alice.personal_key), *ub = srv_connect(s, bob.personal_key);
    tkc *uc = srv_connect(s, carol.personal_key), *anon = srv_connect(s, NULL);

    /* Tenants: the operator lists them by slug, in pages; nobody else. */
    OK(tkc_tenant_list(op, NULL, 1, &tn));
    assert_int_equal(tn.n, 1);
    assert_string_equal(tn.tenants[0].tenant, "acme");
    assert_true(tn.more);
    snprintf(after, sizeof after, "%s", tn.next);
    OK(tkc_tenant_list(op, after, 0, &tn));
    assert_int_equal(tn.n, 1);
    assert_string_equal(tn.tenants[0].tenant, "umbrella");
    assert_false(tn.more);
    REFUSED(ua, tkc_tenant_list(ua, NULL, 0, &tn), TK_EDENIED);
    REFUSED(anon, tkc_tenant_list(anon, NULL, 0, &tn), TK_EUNAUTH);

    /* One tenant: toggle, limits, counts. A user gets its own, whatever it
     * names; without the portal flag, nothing. */
    OK(tkc_tenant_get(op, "acme", &tn));
    assert_int_equal(tn.n, 1);
    const tkc_tenant *acme = &tn.tenants[0];
    assert_string_equal(acme->tenant, "acme");
    assert_true(acme->api_tokens);
    assert_int_equal(acme->max_tokens, 10000);
    assert_int_equal(acme->max_roles, 1000);
    assert_int_equal(acme->max_keys, 100);
    assert_int_equal(acme->create_rate, 10);
    assert_int_equal(acme->create_burst, 100);
    assert_int_equal(acme->role_count, 2);
    assert_int_equal(acme->permission_count, 2);
    OK(tkc_tenant_get(ua, "umbrella", &tn));
    assert_string_equal(tn.tenants[0].tenant, "acme");
    OK(tkc_tenant_get(uc, NULL, &tn));
    assert_string_equal(tn.tenants[0].tenant, "umbrella");
    assert_int_equal(tn.tenants[0].role_count, 1);
    REFUSED(ub, tkc_tenant_get(ub, NULL, &tn), TK_EDENIED);
    assert_int_equal(tn.n, 0); /* a refusal leaves an empty page */
    REFUSED(op, tkc_tenant_get(op, "nosuch", &tn), TK_ENOTFOUND);
    REFUSED(op, tkc_tenant_get(op, NULL, &tn), TK_EINVAL); /* the operator names it */

    /* Permissions: of the tenant named, or the user's own; in pages. */
    OK(tkc_perm_list(op, "acme", NULL, 0, &pp));
    assert_int_equal(pp.n, 2);
    assert_string_equal(pp.perms[0].key, "orders:read");
    assert_string_equal(pp.perms[0].description, "Read orders");
    assert_string_equal(pp.perms[1].key, "orders:write");
    assert_string_equal(pp.perms[1].description, "");
    assert_false(pp.more);
    OK(tkc_perm_list(ua, NULL, NULL, 1, &pp));
    assert_int_equal(pp.n, 1);
    assert_true(pp.more);
    snprintf(after, sizeof after, "%s", pp.next);
    OK(tkc_perm_list(ua, NULL, after, 1, &pp));
    assert_int_equal(pp.n, 1);
    assert_string_equal(pp.perms[0].key, "orders:write");
    assert_false(pp.more);
    OK(tkc_perm_list(uc, "acme", NULL, 0, &pp));
    assert_int_equal(pp.n, 1);
    assert_string_equal(pp.perms[0].key, "labs:enter");
    REFUSED(ub, tkc_perm_list(ub, NULL, NULL, 0, &pp), TK_EDENIED);
    REFUSED(op, tkc_perm_list(op, NULL, NULL, 0, &pp), TK_EINVAL);

    /* Roles: names, levels, permissions. */
    OK(tkc_role_list(op, "acme", NULL, 0, &rp));
    assert_int_equal(rp.n, 2);
    assert_string_equal(rp.roles[0].key, "admin");
    assert_string_equal(rp.roles[0].name, "Administrator");
    assert_int_equal(rp.roles[0].level, 0);
    assert_int_equal(rp.roles[0].nperms, 2);
    assert_string_equal(rp.roles[0].perms[1], "orders:write");
    assert_string_equal(rp.roles[1].key, "viewer");
    assert_int_equal(rp.roles[1].level, 2);
    assert_int_equal(rp.roles[1].nperms, 1);
    assert_string_equal(rp.roles[1].perms[0], "orders:read");
    OK(tkc_role_list(ua, NULL, NULL, 1, &rp));
    assert_int_equal(rp.n, 1);
    assert_true(rp.more);
    assert_string_equal(rp.next, "admin");
    OK(tkc_role_list(uc, "acme", NULL, 0, &rp));
    assert_int_equal(rp.n, 1);
    assert_string_equal(rp.roles[0].key, "staff");
    assert_string_equal(rp.roles[0].name, "Staff");
    REFUSED(ub, tkc_role_list(ub, NULL, NULL, 0, &rp), TK_EDENIED);

    /* Accounts: the operator's alone. */
    OK(tkc_account_list(op, "acme", NULL, 0, &ap));
    assert_int_equal(ap.n, 1);
    assert_string_equal(ap.accounts[0].account, "globex");
    assert_int_equal(ap.accounts[0].token_count, 0);
    REFUSED(ua, tkc_account_list(ua, "acme", NULL, 0, &ap), TK_EDENIED);
    REFUSED(op, tkc_account_list(op, "nosuch", NULL, 0, &ap), TK_ENOTFOUND);

    /* Users: of the account named, or the user's own. */
    OK(tkc_user_list(op, "acme", "globex", NULL, 0, &up));
    assert_int_equal(up.n, 2);
    assert_string_equal(up.users[0].user, "alice");
    assert_int_equal(up.users[0].nroles, 1);
    assert_string_equal(up.users[0].roles[0], "admin");
    assert_true(up.users[0].portal);
    assert_int_equal(up.users[0].key_count, 1);
    assert_string_equal(up.users[1].user, "bob");
    assert_false(up.users[1].portal);
    OK(tkc_user_list(ua, "umbrella", "corp", NULL, 0, &up));
    assert_int_equal(up.n, 2);
    assert_string_equal(up.users[0].user, "alice");
    OK(tkc_user_list(uc, NULL, NULL, NULL, 0, &up));
    assert_int_equal(up.n, 1);
    assert_string_equal(up.users[0].user, "carol");
    REFUSED(ub, tkc_user_list(ub, NULL, NULL, NULL, 0, &up), TK_EDENIED);
    REFUSED(op, tkc_user_list(op, "acme", NULL, NULL, 0, &up), TK_EINVAL);
    OK(tkc_user_get(op, "acme", "globex", "bob", &up));
    assert_int_equal(up.n, 1);
    assert_string_equal(up.users[0].user, "bob");
    assert_string_equal(up.users[0].roles[0], "viewer");
    OK(tkc_user_get(ua, NULL, NULL, "bob", &up));
    assert_string_equal(up.users[0].user, "bob");
    REFUSED(ua, tkc_user_get(ua, "umbrella", "corp", "carol", &up), TK_ENOTFOUND);
    REFUSED(ub, tkc_user_get(ub, NULL, NULL, "bob", &up), TK_EDENIED);
    REFUSED(op, tkc_user_get(op, "acme", "globex", "nobody", &up), TK_ENOTFOUND);

    /* Personal keys: metadata, oldest first; a user lists its own, portal
     * or not, whatever it names. */
    OK(tkc_key_create(op, "acme", "globex", "alice", exp, &extra));
    OK(tkc_key_list(op, "acme", "globex", "alice", NULL, 1, &kp));
    assert_int_equal(kp.n, 1);
    assert_string_equal(kp.keys[0].key_id, alice.key_id);
    assert_true(llabs(kp.keys[0].created_at - now) < 60);
    assert_true(kp.keys[0].expires_at == 0);
    assert_true(kp.more);
    snprintf(after, sizeof after, "%s", kp.next);
    OK(tkc_key_list(op, "acme", "globex", "alice", after, 1, &kp));
    assert_int_equal(kp.n, 1);
    assert_string_equal(kp.keys[0].key_id, extra.key_id);
    assert_true(kp.keys[0].expires_at == exp);
    assert_false(kp.more);
    OK(tkc_key_list(ub, "acme", "globex", "alice", NULL, 0, &kp));
    assert_int_equal(kp.n, 1);
    assert_string_equal(kp.keys[0].key_id, bob.key_id);
    OK(tkc_key_list(uc, NULL, NULL, NULL, NULL, 0, &kp));
    assert_int_equal(kp.n, 1);
    assert_string_equal(kp.keys[0].key_id, carol.key_id);
    REFUSED(op, tkc_key_list(op, "acme", "globex", NULL, NULL, 0, &kp), TK_EINVAL);

    /* Tokens by ID: the user's own account's (portal), the operator's any;
     * a personal key's ID is no token. */
    OK(tkc_token_create(ua, "CI", viewer, 1, exp, &t));
    OK(tkc_token_create(uc, "lab", staff, 1, 0, &tc));
    OK(tkc_token_get(ua, t.client_id, &tp));
    assert_int_equal(tp.n, 1);
    assert_string_equal(tp.tokens[0].client_id, t.client_id);
    assert_string_equal(tp.tokens[0].description, "CI");
    assert_int_equal(tp.tokens[0].nroles, 1);
    assert_string_equal(tp.tokens[0].roles[0], "viewer");
    assert_string_equal(tp.tokens[0].created_by, "alice");
    assert_true(tp.tokens[0].expires_at == exp);
    OK(tkc_token_get(op, tc.client_id, &tp));
    assert_string_equal(tp.tokens[0].created_by, "carol");
    REFUSED(uc, tkc_token_get(uc, t.client_id, &tp), TK_ENOTFOUND);
    REFUSED(ua, tkc_token_get(ua, tc.client_id, &tp), TK_ENOTFOUND);
    REFUSED(ub, tkc_token_get(ub, t.client_id, &tp), TK_EDENIED);
    REFUSED(ua, tkc_token_get(ua, alice.key_id, &tp), TK_ENOTFOUND);
    OK(tkc_account_list(op, "acme", NULL, 0, &ap));
    assert_int_equal(ap.accounts[0].token_count, 1);

    /* TOKEN_SET: the description and nothing else; the token still verifies. */
    OK(tkc_token_set(ua, t.client_id, "nightly"));
    OK(tkc_token_get(op, t.client_id, &tp));
    assert_string_equal(tp.tokens[0].description, "nightly");
    assert_string_equal(tp.tokens[0].roles[0], "viewer");
    assert_true(tp.tokens[0].expires_at == exp);
    OK(tkc_token_set(op, t.client_id, ""));
    OK(tkc_token_get(ua, t.client_id, &tp));
    assert_string_equal(tp.tokens[0].description, "");
    REFUSED(uc, tkc_token_set(uc, t.client_id, "x"), TK_ENOTFOUND);
    REFUSED(ub, tkc_token_set(ub, t.client_id, "x"), TK_EDENIED);
    REFUSED(ua, tkc_token_set(ua, t.client_id, "bad\x01text"), TK_EINVAL);
    OK(tkc_verify(anon, t.secret, NULL, &res));
    assert_true(res.valid);
    assert_string_equal(res.perms[0], "orders:read");

    tkc_tenant_page_free(&tn);
    tkc_perm_page_free(&pp);
    tkc_role_page_free(&rp);
    tkc_account_page_free(&ap);
    tkc_user_page_free(&up);
    tkc_key_page_free(&kp);
    tkc_token_page_free(&tp);
    tkc_verify_res_free(&res);
    tkc_free(anon);
    tkc_free(uc);
    tkc_free(ub);
    tkc_free(ua);
    tkc_free(op);
}

/* The deletes: operator only; each is effective for verification (on
 * another connection) once acknowledged, and takes with it what the
 * protocol says: a permission out of its roles, a user's keys (its tokens
 * stay), an account's tokens, users and keys, everything of a tenant. */
static void server_deletes(void **state)
{
    NEED_SERVER(s);
    tkc_key alice, bob, carol;
    tkc_new_token ta, tc;
    tkc_role_page rp = TKC_PAGE_INIT;
    tkc_user_page up = TKC_PAGE_INIT;
    tkc_account_page ap = TKC_PAGE_INIT;
    tkc_tenant_page tn = TKC_PAGE_INIT;
    tkc_token_page tp = TKC_PAGE_INIT;
    tkc_key_page kp = TKC_PAGE_INIT;
    tkc_verify_res res = TKC_VERIFY_RES_INIT;
    const char *admin[] = {"admin"}, *staff[] = {"staff"};

    tkc *op = srv_connect(s, s->opkey);
    two_tenants(op, &alice, &bob, &carol);
    tkc *ua = srv_connect(s, alice.personal_key), *ub = srv_connect(s, bob.personal_key);
    tkc *uc = srv_connect(s, carol.personal_key), *g = srv_connect(s, NULL);
    OK(tkc_token_create(ua, "CI", admin, 1, 0, &ta));
    OK(tkc_token_create(uc, "lab", staff, 1, 0, &tc));
    OK(tkc_verify(g, ta.secret, NULL, &res));
    assert_int_equal(res.nperms, 2);

    /* PERM_DELETE: out of every role, and so out of every token, at once. */
    REFUSED(ua, tkc_perm_delete(ua, "acme", "orders:write"), TK_EDENIED);
    OK(tkc_perm_delete(op, "acme", "orders:write"));
    OK(tkc_verify(g, ta.secret, NULL, &res));
    assert_true(res.valid);
    assert_int_equal(res.nperms, 1);
    assert_string_equal(res.perms[0], "orders:read");
    OK(tkc_role_list(op, "acme", NULL, 0, &rp));
    assert_int_equal(rp.roles[0].nperms, 1);
    REFUSED(op, tkc_perm_delete(op, "acme", "orders:write"), TK_ENOTFOUND);

    /* USER_DELETE: the user's keys end at once, on its open connection too;
     * the tokens it created stay (they are the account's). */
    REFUSED(ua, tkc_user_delete(ua, "acme", "globex", "bob"), TK_EDENIED);
    OK(tkc_user_delete(op, "acme", "globex", "alice"));
    REFUSED(ua, tkc_token_get(ua, ta.client_id, &tp), TK_EUNAUTH);
    tkc *again = srv_connect(s, NULL);
    REFUSED(again, tkc_auth(again, alice.personal_key, NULL), TK_EUNAUTH);
    OK(tkc_verify(g, ta.secret, NULL, &res));
    assert_true(res.valid);
    OK(tkc_token_get(op, ta.client_id, &tp));
    assert_string_equal(tp.tokens[0].created_by, "alice");
    REFUSED(op, tkc_user_get(op, "acme", "globex", "alice", &up), TK_ENOTFOUND);
    OK(tkc_user_list(op, "acme", "globex", NULL, 0, &up));
    assert_int_equal(up.n, 1);
    assert_string_equal(up.users[0].user, "bob");

    /* ACCOUNT_DELETE: its tokens, users and keys end. */
    REFUSED(ub, tkc_account_delete(ub, "acme", "globex"), TK_EDENIED);
    OK(tkc_account_delete(op, "acme", "globex"));
    OK(tkc_verify(g, ta.secret, NULL, &res));
    assert_int_equal(res.verdict, TK_V_UNKNOWN);
    REFUSED(ub, tkc_key_list(ub, NULL, NULL, NULL, NULL, 0, &kp), TK_EUNAUTH); /* bob's key */
    OK(tkc_account_list(op, "acme", NULL, 0, &ap));
    assert_int_equal(ap.n, 0);
    REFUSED(op, tkc_user_list(op, "acme", "globex", NULL, 0, &up), TK_ENOTFOUND);
    REFUSED(op, tkc_account_delete(op, "acme", "globex"), TK_ENOTFOUND);

    /* TENANT_DELETE: everything of it ends. */
    REFUSED(uc, tkc_tenant_delete(uc, "umbrella"), TK_EDENIED);
    OK(tkc_tenant_delete(op, "umbrella"));
    OK(tkc_verify(g, tc.secret, NULL, &res));
    assert_int_equal(res.verdict, TK_V_UNKNOWN);
    REFUSED(uc, tkc_tenant_get(uc, NULL, &tn), TK_EUNAUTH);
    REFUSED(op, tkc_tenant_get(op, "umbrella", &tn), TK_ENOTFOUND);
    OK(tkc_tenant_list(op, NULL, 0, &tn));
    assert_int_equal(tn.n, 1);
    assert_string_equal(tn.tenants[0].tenant, "acme");
    REFUSED(op, tkc_tenant_delete(op, "umbrella"), TK_ENOTFOUND);
    OK(tkc_tenant_create(op, "umbrella")); /* the slug is free again: a new tenant */
    OK(tkc_role_list(op, "umbrella", NULL, 0, &rp));
    assert_int_equal(rp.n, 0);

    tkc_role_page_free(&rp);
    tkc_user_page_free(&up);
    tkc_account_page_free(&ap);
    tkc_tenant_page_free(&tn);
    tkc_token_page_free(&tp);
    tkc_key_page_free(&kp);
    tkc_verify_res_free(&res);
    tkc_free(again);
    tkc_free(g);
    tkc_free(uc);
    tkc_free(ub);
    tkc_free(ua);
    tkc_free(op);
}

/* The keyring through the library: a new operator key acts at once, the
 * bootstrap key removed with it acts no more (on its open connection too),
 * a gateway key verifies and manages nothing, the last operator key stays;
 * the listing has names, kinds and times, in pages. */
static void server_keyring(void **state)
{
    NEED_SERVER(s);
    char ci[TKC_RING_KEY_LEN + 1], edge[TKC_RING_KEY_LEN + 1], other[TKC_RING_KEY_LEN + 1];
    tkc_ring_page rp = TKC_PAGE_INIT;
    tkc_tenant_page tn = TKC_PAGE_INIT;
    tkc_verify_res res = TKC_VERIFY_RES_INIT;
    tkc_whoami who;
    int64_t now = (int64_t)time(NULL);

    tkc *op = srv_connect(s, s->opkey);
    OK(tkc_keyring_add(op, "ci", false, ci));
    assert_int_equal(strlen(ci), TKC_RING_KEY_LEN);
    assert_int_equal(strncmp(ci, "tko_", 4), 0);
    OK(tkc_keyring_add(op, "edge-1", true, edge));
    assert_int_equal(strncmp(edge, "tkg_", 4), 0);
    REFUSED(op, tkc_keyring_add(op, "ci", true, other), TK_EEXIST);
    REFUSED(op, tkc_keyring_add(op, "initial", false, other), TK_EEXIST);
    REFUSED(op, tkc_keyring_add(op, "Not-A-Slug", false, other), TK_EINVAL);

    /* The new operator key acts at once. */
    tkc *byci = srv_connect(s, NULL);
    assert_int_equal(tkc_auth(byci, ci, &who), 0);
    assert_int_equal(who.actor, TKC_ACTOR_OPERATOR);
    assert_int_equal(tkc_tenant_create(byci, "acme"), 0);

    /* The listing, by name; initial's time is 0; pages of one. */
    assert_int_equal(tkc_keyring_list(byci, NULL, 0, &rp), 0);
    assert_int_equal(rp.n, 3);
    assert_false(rp.more);
    assert_string_equal(rp.keyring[0].name, "ci");
    assert_false(rp.keyring[0].gateway);
    assert_true(llabs(rp.keyring[0].created_at - now) < 60);
    assert_string_equal(rp.keyring[1].name, "edge-1");
    assert_true(rp.keyring[1].gateway);
    assert_string_equal(rp.keyring[2].name, "initial");
    assert_false(rp.keyring[2].gateway);
    assert_true(rp.keyring[2].created_at == 0);
    static const char *const names[] = {"ci", "edge-1", "initial"};
    char after[TKC_CURSOR_MAX + 1] = "";
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tkc_keyring_list(byci, after[0] ? after : NULL, 1, &rp), 0);
        assert_int_equal(rp.n, 1);
        assert_string_equal(rp.keyring[0].name, names[i]);
        assert_true(rp.more == (i < 2));
        snprintf(after, sizeof after, "%s", rp.next);
    }

    /* The gateway key verifies, and manages nothing. */
    tkc *gw = srv_connect(s, NULL);
    assert_int_equal(tkc_auth(gw, edge, &who), 0);
    assert_int_equal(who.actor, TKC_ACTOR_GATEWAY);
    assert_int_equal(tkc_verify(gw, "tkt_garbage", NULL, &res), 0);
    assert_int_equal(res.verdict, TK_V_MALFORMED);
    REFUSED(gw, tkc_keyring_list(gw, NULL, 0, &rp), TK_EUNAUTH);
    REFUSED(gw, tkc_keyring_add(gw, "mine", false, other), TK_EUNAUTH);

    /* initial removed with the new key: the bootstrap key stops at once,
     * on its open connection too. */
    assert_int_equal(tkc_keyring_remove(byci, "initial"), 0);
    REFUSED(op, tkc_tenant_list(op, NULL, 0, &tn), TK_EUNAUTH);
    tkc *again = srv_connect(s, NULL);
    REFUSED(again, tkc_auth(again, s->opkey, NULL), TK_EUNAUTH);
    REFUSED(byci, tkc_keyring_remove(byci, "initial"), TK_ENOTFOUND);

    /* The gateway key removed: it authenticates no more. */
    assert_int_equal(tkc_keyring_remove(byci, "edge-1"), 0);
    REFUSED(again, tkc_auth(again, edge, NULL), TK_EUNAUTH);

    /* The last operator key stays. */
    REFUSED(byci, tkc_keyring_remove(byci, "ci"), TK_EDENIED);
    assert_int_equal(tkc_keyring_list(byci, NULL, 0, &rp), 0);
    assert_int_equal(rp.n, 1);
    assert_string_equal(rp.keyring[0].name, "ci");
    assert_int_equal(tkc_tenant_list(byci, NULL, 0, &tn), 0);
    assert_int_equal(tn.n, 1);

    tkc_ring_page_free(&rp);
    tkc_tenant_page_free(&tn);
    tkc_verify_res_free(&res);
    tkc_free(again);
    tkc_free(gw);
    tkc_free(byci);
    tkc_free(op);
}

/* A role's cursor is its key, up to 128 bytes (a token's is 11): a page
 * that ends on the longest key still gives its next, and the listing goes
 * on from it. */
static void server_long_cursor(void **state)
{
    NEED_SERVER(s);
    char long_key[TK_KEY_MAX + 1];
    tkc_role_page rp = TKC_PAGE_INIT;

    memset(long_key, 'b', TK_KEY_MAX);
    long_key[TK_KEY_MAX] = '\0';
    tkc *op = srv_connect(s, s->opkey);
    OK(tkc_tenant_create(op, "acme"));
    OK(tkc_role_put(op, "acme", "a", NULL, 1, NULL, 0));
    OK(tkc_role_put(op, "acme", long_key, NULL, 1, NULL, 0));
    OK(tkc_role_put(op, "acme", "c", NULL, 1, NULL, 0));
    OK(tkc_role_list(op, "acme", NULL, 2, &rp));
    assert_int_equal(rp.n, 2);
    assert_true(rp.more);
    assert_string_equal(rp.next, long_key);
    char after[TKC_CURSOR_MAX + 1];
    snprintf(after, sizeof after, "%s", rp.next);
    OK(tkc_role_list(op, "acme", after, 2, &rp));
    assert_int_equal(rp.n, 1);
    assert_string_equal(rp.roles[0].key, "c");
    assert_false(rp.more);
    tkc_role_page_free(&rp);
    tkc_free(op);
}

/* A token's permissions are the union of its roles': up to a tenant's
 * 1024, more than one role may hold (256, the schema's limit of a role's
 * "permissions"). The client reads all of them. */
static void server_verify_many_permissions(void **state)
{
    NEED_SERVER(s);
    enum { NROLES = TK_MAX_TENANT_PERMS / TK_MAX_ROLE_PERMS };
    static char names[TK_MAX_TENANT_PERMS][16];
    const char *perms[TK_MAX_ROLE_PERMS], *roles[NROLES];
    char role_keys[NROLES][8];
    tkc_key alice;
    tkc_new_token t;
    tkc_verify_res res = TKC_VERIFY_RES_INIT;

    tkc *op = srv_connect(s, s->opkey);
    OK(tkc_tenant_create(op, "acme"));
    OK(tkc_tenant_set(op, "acme", true));
    for (int r = 0; r < NROLES; r++) {
        for (int i = 0; i < TK_MAX_ROLE_PERMS; i++) {
            snprintf(names[r * TK_MAX_ROLE_PERMS + i], sizeof names[0], "p%04d",
                     r * TK_MAX_ROLE_PERMS + i);
            perms[i] = names[r * TK_MAX_ROLE_PERMS + i];
        }
        snprintf(role_keys[r], sizeof role_keys[r], "r%d", r);
        roles[r] = role_keys[r];
        OK(tkc_role_put(op, "acme", roles[r], NULL, 0, perms, TK_MAX_ROLE_PERMS));
    }
    OK(tkc_account_create(op, "acme", "globex"));
    OK(tkc_user_create(op, "acme", "globex", "alice", roles, NROLES, true, &alice));
    tkc *ua = srv_connect(s, alice.personal_key);
    if (tkc_token_create(ua, "all", roles, NROLES, 0, &t) != 0)
        fail_msg("token create: %s", tkc_errmsg(ua));
    if (tkc_verify(op, t.secret, NULL, &res) != 0)
        fail_msg("verify: %s", tkc_errmsg(op));
    assert_true(res.valid);
    assert_int_equal(res.nroles, NROLES);
    assert_int_equal(res.nperms, TK_MAX_TENANT_PERMS);
    tkc_verify_res_free(&res);
    tkc_free(ua);
    tkc_free(op);
}

/* The server's one-line errors reach the caller; the connection goes on. */
static void server_errors(void **state)
{
    NEED_SERVER(s);
    tkc *op = srv_connect(s, s->opkey);
    OK(tkc_tenant_create(op, "acme"));
    assert_int_equal(tkc_tenant_create(op, "acme"), TK_EEXIST);
    assert_true(tkc_refused(op));
    assert_true(strlen(tkc_errmsg(op)) > 0);
    assert_null(strchr(tkc_errmsg(op), '\n'));
    assert_int_equal(tkc_tenant_create(op, "Not A Slug!"), TK_EINVAL);
    assert_true(strlen(tkc_errmsg(op)) > 0);
    assert_int_equal(tkc_account_create(op, "nosuch", "globex"), TK_ENOTFOUND);
    assert_int_equal(tkc_role_delete(op, "acme", "nosuch"), TK_ENOTFOUND);

    /* An unknown opcode and an unknown field: refused with a reason. */
    uint16_t status = 0;
    assert_int_equal(tkc_call(op, 0x7e, NULL, 0, &status, NULL, NULL), 0);
    assert_int_equal(status, proto_status(TK_EOPCODE));
    static const uint8_t typo[] = {0x82, 0xa6, 't', 'e', 'n', 'a', 'n',  't', 0xa1,
                                   'z',  0xa4, 'n', 'a', 'm', 'e', 0xa1, 'x'};
    assert_int_equal(tkc_call(op, OP_TENANT_CREATE, typo, sizeof typo, &status, NULL, NULL), 0);
    assert_int_equal(status, proto_status(TK_EINVAL));
    assert_non_null(strstr(tkc_errmsg(op), "name"));
    static const uint8_t not_map[] = {0x93, 1, 2, 3};
    assert_int_equal(tkc_call(op, OP_PING, not_map, sizeof not_map, &status, NULL, NULL), 0);
    assert_int_equal(status, proto_status(TK_EINVAL));

    /* Still in step. */
    uint32_t v = 0;
    assert_int_equal(tkc_ping(op, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(tkc_tenant_create(op, "umbrella"), 0);

    /* A frame over the server's maximum: ELIMIT, then the server closes.
     * The reply is normally read while the body is still being sent; a
     * reset may discard it, which is then a lost connection. Either way
     * nothing hangs, and the server serves the next connection. */
    size_t big = 2u << 20;
    uint8_t *body = calloc(1, big);
    assert_non_null(body);
    body[0] = 0x80;
    int rc = tkc_call(op, OP_PING, body, big, &status, NULL, NULL);
    free(body);
    if (!((rc == 0 && status == proto_status(TK_ELIMIT)) || rc == TK_ELIMIT || rc == TK_EIO))
        fail_msg("oversized frame: rc %d status %u: %s", rc, status, tkc_errmsg(op));
    assert_int_equal(tkc_ping(op, NULL), TK_EIO);
    tkc_free(op);
    op = srv_connect(s, s->opkey);
    assert_int_equal(tkc_tenant_create(op, "initech"), 0);
    tkc_free(op);
}

/* 1000 pipelined verifications, valid and invalid interleaved, come back in
 * order; then a pipeline deeper than the server's in-flight limit. */
static void server_pipeline(void **state)
{
    NEED_SERVER(s);
    tkc_key alice, bob;
    tkc_new_token t[3];
    const char *viewer[] = {"viewer"}, *admin[] = {"admin"};
    tkc_verify_res res = TKC_VERIFY_RES_INIT;

    tkc *op = srv_connect(s, s->opkey);
    world(op, &alice, &bob);
    OK(tkc_tenant_set(op, "acme", true));
    tkc *ua = srv_connect(s, alice.personal_key);
    assert_int_equal(tkc_token_create(ua, "a", viewer, 1, 0, &t[0]), 0);
    assert_int_equal(tkc_token_create(ua, "b", admin, 1, 0, &t[1]), 0);
    assert_int_equal(tkc_token_create(ua, "c", viewer, 1, 0, &t[2]), 0);
    assert_int_equal(tkc_token_delete(ua, t[2].client_id), 0);

    tkc *g = srv_connect(s, NULL);
    for (int round = 0; round < 2; round++) {
        int n = round == 0 ? 1000 : 5000;
        for (int i = 0; i < n; i++) {
            const char *sec = i % 4 == 3 ? "tkt_nonsense" : t[i % 4 == 2 ? 2 : i % 2].secret;
            if (tkc_verify_send(g, sec, NULL) != 0)
                fail_msg("send %d: %s", i, tkc_errmsg(g));
        }
        for (int i = 0; i < n; i++) {
            if (tkc_verify_recv(g, &res) != 0)
                fail_msg("recv %d: %s", i, tkc_errmsg(g));
            switch (i % 4) {
            case 0:
            case 1:
                assert_true(res.valid);
                assert_string_equal(res.client_id, t[i % 2].client_id);
                assert_string_equal(res.roles[0], i % 2 ? "admin" : "viewer");
                assert_int_equal(res.nperms, i % 2 ? 2 : 1);
                break;
            case 2: assert_int_equal(res.verdict, TK_V_UNKNOWN); break;
            default: assert_int_equal(res.verdict, TK_V_MALFORMED);
            }
        }
        assert_int_equal(tkc_inflight(g), 0);
    }
    /* Writes pipelined on one connection are answered in order too. */
    static const uint8_t tc[] = {0x81, 0xa6, 't', 'e', 'n', 'a', 'n', 't', 0xa2, 'p', '0'};
    for (int i = 0; i < 10; i++) {
        uint8_t body[sizeof tc];
        memcpy(body, tc, sizeof tc);
        body[sizeof tc - 1] = (uint8_t)('0' + i);
        assert_int_equal(tkc_send(op, OP_TENANT_CREATE, body, sizeof body, NULL), 0);
    }
    assert_int_equal(tkc_send(op, OP_TENANT_CREATE, tc, sizeof tc, NULL), 0); /* p0 again */
    for (int i = 0; i < 11; i++) {
        uint16_t status = 99;
        assert_int_equal(tkc_recv(op, &status, NULL, NULL), 0);
        assert_int_equal(status, i < 10 ? 0 : proto_status(TK_EEXIST));
    }
    tkc_verify_res_free(&res);
    tkc_free(g);
    tkc_free(ua);
    tkc_free(op);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encode_operator_ops),
        cmocka_unit_test(encode_user_ops),
        cmocka_unit_test(encode_new_ops),
        cmocka_unit_test(cursor_bound_is_the_schemas),
        cmocka_unit_test(bad_arguments),
        cmocka_unit_test(verify_decode_valid),
        cmocka_unit_test(verify_decode_strict),
        cmocka_unit_test(verify_decode_cut_and_fuzz),
        cmocka_unit_test(replies_whole_and_cut),
        cmocka_unit_test(replies_contract),
        cmocka_unit_test(server_refusals),
        cmocka_unit_test(frame_faults),
        cmocka_unit_test(pipeline_in_order),
        cmocka_unit_test(pipeline_no_deadlock),
        cmocka_unit_test(pipeline_allocation_free),
        cmocka_unit_test(connecting),
        cmocka_unit_test_setup_teardown(server_every_operation, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(server_reads, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(server_deletes, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(server_keyring, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(server_long_cursor, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(server_verify_many_permissions, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(server_errors, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(server_pipeline, srv_setup, srv_teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests_name("client", tests, NULL, NULL);
}
