/* tokend.c - tokend set-up, bulk create and generator drivers; see tokend.h. */
#include "bench/tokenbench/tokend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "core/err.h"
#include "core/mp.h"
#include "core/xmalloc.h"
#include "net/client.h"
#include "net/proto.h"

#define SETUP_TIMEOUT_MS 60000

static int refused(tkc *c, const char *what, int rc)
{
    fprintf(stderr, "tokenbench: %s: %s (%s)\n", what, tk_strerror(rc), tkc_errmsg(c));
    return -1;
}

/* Connects c to addr (over TLS with tlso) and authenticates with key. */
static int connect_auth(tkc *c, const char *addr, const tkc_tls *tlso, const char *key)
{
    int rc;
    tkc_set_timeout(c, SETUP_TIMEOUT_MS);
    if ((tlso && (rc = tkc_set_tls(c, tlso)) != 0) || (rc = tkc_connect(c, addr)) != 0)
        return rc;
    return tkc_auth(c, key, NULL);
}

int tkd_setup(const char *addr, const tkc_tls *tlso, const char *operator_key,
              const tkd_world *w, char key[TK_SECRET_LEN + 1])
{
    static const char *const perms[] = TKD_PERMS;
    const size_t nperms = sizeof perms / sizeof perms[0];
    const char *roles[1] = {w->role};
    tkc *c = tkc_new();
    tkc_key k;
    int rc, ret = -1;

    if ((rc = connect_auth(c, addr, tlso, operator_key)) != 0) {
        refused(c, "connect and AUTH as the operator", rc);
        goto done;
    }
    if ((rc = tkc_tenant_create(c, w->tenant)) != 0 && rc != TK_EEXIST) {
        refused(c, "TENANT_CREATE", rc);
        goto done;
    }
    /* A benchmark makes millions of tokens as fast as it can: its own
     * tenant has no quotas and no creation rate limit. */
    tkc_limits none = {0, 0, 0, 0, 0};
    if ((rc = tkc_tenant_limits(c, w->tenant, 1, &none)) != 0) {
        refused(c, "TENANT_SET", rc);
        goto done;
    }
    for (size_t i = 0; i < nperms; i++)
        if ((rc = tkc_perm_put(c, w->tenant, perms[i], "tokenbench")) != 0) {
            refused(c, "PERM_PUT", rc);
            goto done;
        }
    if ((rc = tkc_role_put(c, w->tenant, w->role, "tokenbench", 1, perms, nperms)) != 0) {
        refused(c, "ROLE_PUT", rc);
        goto done;
    }
    if ((rc = tkc_account_create(c, w->tenant, w->account)) != 0 && rc != TK_EEXIST) {
        refused(c, "ACCOUNT_CREATE", rc);
        goto done;
    }
    rc = tkc_user_create(c, w->tenant, w->account, w->user, roles, 1, true, &k);
    if (rc == TK_EEXIST) {
        if ((rc = tkc_user_set(c, w->tenant, w->account, w->user, roles, 1, 1)) != 0) {
            refused(c, "USER_SET", rc);
            goto done;
        }
        rc = tkc_key_create(c, w->tenant, w->account, w->user, 0, &k);
    }
    if (rc != 0) {
        refused(c, "USER_CREATE / KEY_CREATE", rc);
        goto done;
    }
    memcpy(key, k.personal_key, TK_SECRET_LEN + 1);
    ret = 0;
done:
    sodium_memzero(&k, sizeof k);
    tkc_free(c);
    return ret;
}

/* Decodes TOKEN_CREATE's reply {"client_id", "secret", "expires_at"} into
 * secret (the secret must be a tenant token of that client ID). 0 or -1. */
static int dec_created(const uint8_t *body, size_t len, char secret[TK_SECRET_LEN + 1])
{
    mpr r;
    uint32_t n;
    unsigned seen = 0;
    tk_id cid, sid;
    mpr_init(&r, body, len);
    if (mpr_map(&r, &n) != 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *k, *s;
        size_t kn, sn;
        int64_t v;
        if (mpr_str(&r, &k, &kn) != 0)
            return -1;
        if (kn == 9 && !memcmp(k, "client_id", 9)) {
            if (mpr_str(&r, &s, &sn) != 0 || secret_id_parse(s, sn, &cid) != 0)
                return -1;
            seen |= 1;
        } else if (kn == 6 && !memcmp(k, "secret", 6)) {
            tk_kind kind;
            uint8_t hash[TK_HASH_LEN];
            if (mpr_str(&r, &s, &sn) != 0 || secret_parse(s, sn, &kind, &sid, hash) != 0
                || kind != TK_KIND_TOKEN)
                return -1;
            if (secret) {
                memcpy(secret, s, sn);
                secret[sn] = '\0';
            }
            seen |= 2;
        } else if (kn == 10 && !memcmp(k, "expires_at", 10)) {
            if (mpr_int(&r, &v) != 0)
                return -1;
            seen |= 4;
        } else if (mpr_skip(&r) != 0) {
            return -1;
        }
    }
    if (!mpr_done(&r) || seen != 7 || memcmp(cid.b, sid.b, TK_ID_LEN) != 0)
        return -1;
    return 0;
}

int tkd_init(tkd_ctx *x, const work_tokens *t, const char *key, const char *roles)
{
    memset(x, 0, sizeof *x);
    x->t = t;
    x->key = key;
    if (!roles)
        roles = t ? t->roles : "";
    for (const char *p = roles; *p;) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n > TK_KEY_MAX || x->nroles == TK_MAX_ROLES)
            return -1;
        memcpy(x->roles[x->nroles], p, n);
        x->roles[x->nroles++][n] = '\0';
        p += n + (p[n] == ',');
    }
    if (x->nroles == 0)
        return -1;
    mpw w;
    mpw_init(&w);
    mpw_map(&w, 2);
    mpw_cstr(&w, "roles");
    mpw_array(&w, x->nroles);
    for (uint32_t i = 0; i < x->nroles; i++)
        mpw_cstr(&w, x->roles[i]);
    mpw_cstr(&w, "description");
    mpw_cstr(&w, "tokenbench");
    if (w.buf.size + PROTO_HEADER_LEN > GEN_REQ_MAX || w.buf.size > sizeof x->create_body) {
        mpw_free(&w);
        return -1;
    }
    memcpy(x->create_body, w.buf.data, w.buf.size);
    x->create_len = w.buf.size;
    mpw_free(&w);
    return 0;
}

int tkd_load(const char *addr, const tkc_tls *tlso, const char *key, unsigned window,
             work_tokens *t, double *seconds)
{
    tkd_ctx x;
    tkc *c = tkc_new();
    int rc, ret = -1;
    size_t sent = 0, got = 0;
    uint64_t t0 = 0;

    if (tkd_init(&x, NULL, NULL, t->roles) != 0) {
        fprintf(stderr, "tokenbench: bad roles '%s'\n", t->roles);
        goto done;
    }
    if ((rc = connect_auth(c, addr, tlso, key)) != 0) {
        refused(c, "connect and AUTH as the user", rc);
        goto done;
    }
    t0 = gen_now_ns();
    while (got < t->n) {
        while (sent < t->n && sent - got < window) {
            if ((rc = tkc_send(c, OP_TOKEN_CREATE, x.create_body, x.create_len, NULL)) != 0) {
                refused(c, "TOKEN_CREATE", rc);
                goto done;
            }
            sent++;
        }
        uint16_t status;
        const uint8_t *body;
        size_t len;
        if ((rc = tkc_recv(c, &status, &body, &len)) != 0 || (rc = proto_err(status)) != 0) {
            refused(c, "TOKEN_CREATE", rc);
            goto done;
        }
        if (dec_created(body, len, t->secret[got]) != 0) {
            fprintf(stderr, "tokenbench: TOKEN_CREATE: malformed reply\n");
            goto done;
        }
        got++;
    }
    *seconds = (double)(gen_now_ns() - t0) / 1e9;
    if (work_tokens_index(t) != 0) {
        fprintf(stderr, "tokenbench: a created secret does not parse\n");
        goto done;
    }
    ret = 0;
done:
    tkc_free(c);
    return ret;
}

/* ---- generator drivers ---------------------------------------------------- */

/* Per generator thread. A reply that passed the full check is kept per
 * item (its length, then its bytes): the answer for a token does not change
 * during a run, so a later reply for the same item is right exactly when it
 * is byte-identical to it. That keeps the check strict while its cost per
 * request stays below a decode (on two cores the generator's CPU is taken
 * from the server). */
typedef struct tkd_local {
    const tkd_ctx *x;
    tkc_verify_res res;
    uint8_t **good; /* per item, NULL until a reply passed the full check */
    size_t ngood;
} tkd_local;

static void *local_new(void *ctx)
{
    tkd_local *l = xcalloc(1, sizeof *l);
    l->x = ctx;
    if (l->x->t) {
        l->ngood = l->x->t->n + l->x->t->ninvalid;
        l->good = xcalloc(l->ngood ? l->ngood : 1, sizeof *l->good);
    }
    return l;
}

static void local_free(void *local)
{
    tkd_local *l = local;
    tkc_verify_res_free(&l->res);
    for (size_t i = 0; i < l->ngood; i++)
        free(l->good[i]);
    free(l->good);
    free(l);
}

static size_t frame(uint8_t *out, uint16_t op, uint32_t id, const void *body, size_t len)
{
    proto_header h = {.len = (uint32_t)len, .code = op, .flags = 0, .id = id};
    proto_header_put(out, &h);
    memcpy(out + PROTO_HEADER_LEN, body, len);
    return PROTO_HEADER_LEN + len;
}

/* Splits one reply frame off in[0..len): 0 incomplete, -1 broken (too long,
 * or not the reply to request id), else its size with *h and *body set. */
static long split(const uint8_t *in, size_t len, uint32_t id, proto_header *h,
                  const uint8_t **body)
{
    if (len < PROTO_HEADER_LEN)
        return 0;
    proto_header_get(in, h);
    if (h->len > TKC_MAX_REPLY || h->id != id)
        return -1;
    if (len - PROTO_HEADER_LEN < h->len)
        return 0;
    *body = in + PROTO_HEADER_LEN;
    return (long)(PROTO_HEADER_LEN + h->len);
}

/* AUTH {"key"} on a new connection, by hand (plain or TLS alike): the
 * reply must be status 0 with the request's id. */
static int hello(void *ctx, gen_io *io)
{
    const tkd_ctx *x = ctx;
    uint8_t out[GEN_REQ_MAX], in[1024];
    size_t have = 0;
    proto_header h;
    const uint8_t *body;
    long k = 0;
    mpw w;
    if (!x->key)
        return 0;
    mpw_init(&w);
    mpw_map(&w, 1);
    mpw_cstr(&w, "key");
    mpw_cstr(&w, x->key);
    size_t n = w.buf.size + PROTO_HEADER_LEN <= sizeof out
                   ? frame(out, OP_AUTH, 1, w.buf.data, w.buf.size)
                   : 0;
    sodium_memzero(w.buf.data, w.buf.size);
    mpw_free(&w);
    int rc = n ? gen_write_all(io, out, n) : -1;
    sodium_memzero(out, sizeof out);
    while (rc == 0 && (k = split(in, have, 1, &h, &body)) == 0) {
        ssize_t got = have < sizeof in ? gen_read(io, in + have, sizeof in - have) : -1;
        if (got <= 0)
            rc = -1;
        else
            have += (size_t)got;
    }
    if (rc || k < 0 || h.code != 0) {
        fprintf(stderr, "tokenbench: AUTH: %s\n",
                rc ? "the connection failed" : k < 0 ? "a malformed reply" : tk_strerror(proto_err(h.code)));
        return -1;
    }
    return 0;
}

static size_t verify_encode(void *local, uint32_t item, uint32_t id, uint8_t *out)
{
    const tkd_local *l = local;
    /* {"secret": str8(76)}: fixmap 1, fixstr "secret", str8 header */
    static const uint8_t head[] = {0x81, 0xa6, 's', 'e', 'c', 'r', 'e', 't', 0xd9, TK_SECRET_LEN};
    uint8_t body[sizeof head + TK_SECRET_LEN];
    memcpy(body, head, sizeof head);
    memcpy(body + sizeof head, l->x->t->secret[item], TK_SECRET_LEN);
    return frame(out, OP_VERIFY, id, body, sizeof body);
}

static bool has_role(const tkc_verify_res *r, const char *role)
{
    for (uint32_t i = 0; i < r->nroles; i++)
        if (!strcmp(r->roles[i], role))
            return true;
    return false;
}

/* The full check of a VERIFY reply body for item (see tokend.h). */
static bool verify_check(tkd_local *l, uint32_t item, const uint8_t *body, size_t len)
{
    const work_tokens *t = l->x->t;
    if (tkc_verify_decode(body, len, &l->res) != 0)
        return false;
    if (item >= t->n)
        return !l->res.valid && l->res.verdict == TK_V_UNKNOWN;
    if (!l->res.valid || strcmp(l->res.client_id, t->client_id[item])
        || strcmp(l->res.tenant, t->tenant) || strcmp(l->res.account, t->account)
        || l->res.nroles != l->x->nroles)
        return false;
    for (uint32_t i = 0; i < l->x->nroles; i++)
        if (!has_role(&l->res, l->x->roles[i]))
            return false;
    return true;
}

static long verify_parse(void *local, const uint8_t *in, size_t len, uint32_t item, uint32_t id,
                         bool *ok)
{
    tkd_local *l = local;
    proto_header h;
    const uint8_t *body = NULL;
    long k = split(in, len, id, &h, &body);
    if (k <= 0)
        return k;
    *ok = false;
    if (h.code != 0 || h.len > UINT16_MAX)
        return k;
    const uint8_t *g = l->good[item];
    if (g && (size_t)(g[0] | g[1] << 8) == h.len && !memcmp(g + 2, body, h.len)) {
        *ok = true;
        return k;
    }
    if (verify_check(l, item, body, h.len)) {
        *ok = true;
        free(l->good[item]);
        l->good[item] = xmalloc(2 + (size_t)h.len);
        l->good[item][0] = (uint8_t)h.len;
        l->good[item][1] = (uint8_t)(h.len >> 8);
        memcpy(l->good[item] + 2, body, h.len);
    }
    return k;
}

void tkd_verify_driver(tkd_ctx *x, gen_driver *d)
{
    memset(d, 0, sizeof *d);
    d->ctx = x;
    d->hello = hello;
    d->local_new = local_new;
    d->local_free = local_free;
    d->encode = verify_encode;
    d->parse = verify_parse;
}

static size_t create_encode(void *local, uint32_t item, uint32_t id, uint8_t *out)
{
    const tkd_ctx *x = local;
    (void)item;
    return frame(out, OP_TOKEN_CREATE, id, x->create_body, x->create_len);
}

static long create_parse(void *local, const uint8_t *in, size_t len, uint32_t item, uint32_t id,
                         bool *ok)
{
    proto_header h;
    const uint8_t *body = NULL;
    (void)local;
    (void)item;
    long k = split(in, len, id, &h, &body);
    if (k > 0)
        *ok = h.code == 0 && dec_created(body, h.len, NULL) == 0;
    return k;
}

void tkd_create_driver(tkd_ctx *x, gen_driver *d)
{
    memset(d, 0, sizeof *d);
    d->ctx = x;
    d->hello = hello;
    d->encode = create_encode;
    d->parse = create_parse;
}

/* TOKEN_DELETE {"client_id": str8(36)}, each item once (a counter picks). */
static size_t delete_encode(void *local, uint32_t item, uint32_t id, uint8_t *out)
{
    const tkd_ctx *x = local;
    static const uint8_t head[] = {0x81, 0xa9, 'c', 'l', 'i', 'e', 'n', 't', '_', 'i', 'd',
                                   0xd9, TK_ID_STR_LEN};
    uint8_t body[sizeof head + TK_ID_STR_LEN];
    memcpy(body, head, sizeof head);
    /* Past the file's tokens: an unknown ID, which answers "not found" and counts as wrong. */
    memcpy(body + sizeof head, x->t->client_id[item < x->t->n ? item : x->t->n], TK_ID_STR_LEN);
    return frame(out, OP_TOKEN_DELETE, id, body, sizeof body);
}

static long delete_parse(void *local, const uint8_t *in, size_t len, uint32_t item, uint32_t id,
                         bool *ok)
{
    proto_header h;
    const uint8_t *body = NULL;
    long k = split(in, len, id, &h, &body);
    if (k > 0)
        *ok = h.code == 0 && item < ((const tkd_ctx *)local)->t->n;
    return k;
}

void tkd_delete_driver(tkd_ctx *x, gen_driver *d)
{
    memset(d, 0, sizeof *d);
    d->ctx = x;
    d->hello = hello;
    d->encode = delete_encode;
    d->parse = delete_parse;
}
