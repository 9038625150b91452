/* redis.c - Redis records, GET/SET drivers and the loader; see redis.h. */
#include "bench/tokenbench/redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "bench/tokenbench/resp.h"
#include "core/xmalloc.h"

#define LOAD_BATCH 1000

static void hex_sha256(const void *p, size_t n, char out[RDS_KEY_LEN + 1])
{
    uint8_t h[32];
    crypto_hash_sha256(h, p, n);
    sodium_bin2hex(out, RDS_KEY_LEN + 1, h, sizeof h);
}

void rds_init(rds_ctx *x, const work_tokens *t)
{
    memset(x, 0, sizeof *x);
    x->t = t;
    randombytes_buf(&x->nonce, sizeof x->nonce);
    if (!t)
        return;
    size_t n = t->n + t->ninvalid;
    x->key = xmalloc((n ? n : 1) * sizeof *x->key);
    for (size_t i = 0; i < n; i++)
        hex_sha256(t->secret[i], TK_SECRET_LEN, x->key[i]);
    x->suffix_len = (size_t)snprintf(x->suffix, sizeof x->suffix, "|%s|%s|%s", t->tenant,
                                     t->account, t->roles);
}

void rds_free(rds_ctx *x)
{
    free(x->key);
    x->key = NULL;
}

size_t rds_value(const rds_ctx *x, uint32_t i, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s%s", x->t->client_id[i], x->suffix);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

/* ---- GET ------------------------------------------------------------------ */

static size_t get_encode(void *local, uint32_t item, uint32_t id, uint8_t *out)
{
    static const char head[] = "*2\r\n$3\r\nGET\r\n$64\r\n";
    const rds_ctx *x = local;
    (void)id;
    memcpy(out, head, sizeof head - 1);
    memcpy(out + sizeof head - 1, x->key[item], RDS_KEY_LEN);
    memcpy(out + sizeof head - 1 + RDS_KEY_LEN, "\r\n", 2);
    return sizeof head - 1 + RDS_KEY_LEN + 2;
}

static long get_parse(void *local, const uint8_t *in, size_t len, uint32_t item, uint32_t id,
                      bool *ok)
{
    const rds_ctx *x = local;
    resp_reply r;
    (void)id;
    long k = resp_parse(in, len, &r);
    if (k <= 0)
        return k;
    if (item >= x->t->n) {
        *ok = r.kind == RESP_NIL;
    } else {
        const char *cid = x->t->client_id[item];
        *ok = r.kind == RESP_BULK && r.len == TK_ID_STR_LEN + x->suffix_len
              && !memcmp(r.s, cid, TK_ID_STR_LEN)
              && !memcmp(r.s + TK_ID_STR_LEN, x->suffix, x->suffix_len);
    }
    return r.kind == RESP_ARRAY ? -1 : k;
}

void rds_get_driver(rds_ctx *x, gen_driver *d)
{
    memset(d, 0, sizeof *d);
    d->ctx = x;
    d->encode = get_encode;
    d->parse = get_parse;
}

/* ---- SET ------------------------------------------------------------------ */

static size_t set_encode(void *local, uint32_t item, uint32_t id, uint8_t *out)
{
    const rds_ctx *x = local;
    uint64_t seed[2] = {x->nonce, item};
    char key[RDS_KEY_LEN + 1], value[160], cid[TK_ID_STR_LEN + 1];
    tk_id tid;
    (void)id;
    /* A record shaped like a token's: a client ID made from the key. */
    hex_sha256(seed, sizeof seed, key);
    memcpy(tid.b, seed, sizeof tid.b);
    secret_id_format(&tid, cid);
    int vn = snprintf(value, sizeof value, "%s|bench|acct|reader", cid);
    const char *argv[3] = {"SET", key, value};
    size_t argl[3] = {3, RDS_KEY_LEN, (size_t)vn};
    return resp_command(out, GEN_REQ_MAX, 3, argv, argl);
}

static long set_parse(void *local, const uint8_t *in, size_t len, uint32_t item, uint32_t id,
                      bool *ok)
{
    resp_reply r;
    (void)local;
    (void)item;
    (void)id;
    long k = resp_parse(in, len, &r);
    if (k <= 0)
        return k;
    *ok = r.kind == RESP_STATUS && r.len == 2 && !memcmp(r.s, "OK", 2);
    return r.kind == RESP_ARRAY ? -1 : k;
}

void rds_set_driver(rds_ctx *x, gen_driver *d)
{
    memset(d, 0, sizeof *d);
    d->ctx = x;
    d->encode = set_encode;
    d->parse = set_parse;
}

/* ---- blocking helpers ----------------------------------------------------- */

/* Reads into buf (cap) until one whole reply is parsed at *off; fills r.
 * *len is the bytes held. 0 or -1. */
static int read_reply(gen_io *io, uint8_t *buf, size_t cap, size_t *off, size_t *len,
                      resp_reply *r)
{
    for (;;) {
        long k = resp_parse(buf + *off, *len - *off, r);
        if (k < 0)
            return -1;
        if (k > 0) {
            *off += (size_t)k;
            return 0;
        }
        if (*off > 0) {
            memmove(buf, buf + *off, *len - *off);
            *len -= *off;
            *off = 0;
        }
        if (*len == cap)
            return -1;
        ssize_t n = gen_read(io, buf + *len, cap - *len);
        if (n <= 0)
            return -1;
        *len += (size_t)n;
    }
}

int rds_load(const char *addr, tls *t, const rds_ctx *x, double *seconds)
{
    gen_io io;
    int rc = -1, fd = gen_open(addr, t, &io) == 0 ? io.fd : -1;
    size_t cap = (size_t)LOAD_BATCH * GEN_REQ_MAX, inlen = 0, off = 0;
    uint8_t *out = xmalloc(cap), *in = xmalloc(1u << 16);
    uint64_t t0 = gen_now_ns();

    if (fd < 0)
        goto done;
    for (size_t at = 0; at < x->t->n;) {
        size_t k = x->t->n - at < LOAD_BATCH ? x->t->n - at : LOAD_BATCH, len = 0;
        for (size_t i = 0; i < k; i++) {
            char value[256];
            size_t vn = rds_value(x, (uint32_t)(at + i), value, sizeof value);
            const char *argv[3] = {"SET", x->key[at + i], value};
            size_t argl[3] = {3, RDS_KEY_LEN, vn};
            len += resp_command(out + len, cap - len, 3, argv, argl);
        }
        if (gen_write_all(&io, out, len) != 0) {
            fprintf(stderr, "tokenbench: redis load: write failed\n");
            goto done;
        }
        for (size_t i = 0; i < k; i++) {
            resp_reply r = {.kind = RESP_NIL};
            if (read_reply(&io, in, 1u << 16, &off, &inlen, &r) != 0 || r.kind != RESP_STATUS) {
                fprintf(stderr, "tokenbench: redis load: SET failed (%.*s)\n",
                        r.kind == RESP_ERROR ? (int)r.len : 0, (const char *)r.s);
                goto done;
            }
        }
        at += k;
    }
    *seconds = (double)(gen_now_ns() - t0) / 1e9;
    rc = 0;
done:
    if (fd >= 0)
        gen_close(&io);
    free(out);
    free(in);
    return rc;
}

int rds_config_get(const char *addr, tls *t, const char *name, char *out, size_t cap)
{
    gen_io io;
    int rc = -1;
    uint8_t cmd[256], in[4096];
    size_t off = 0, len = 0;
    resp_reply r;
    const char *argv[3] = {"CONFIG", "GET", name};
    size_t argl[3] = {6, 3, strlen(name)};

    if (gen_open(addr, t, &io) != 0)
        return -1;
    size_t n = resp_command(cmd, sizeof cmd, 3, argv, argl);
    if (n == 0 || gen_write_all(&io, cmd, n) != 0
        || read_reply(&io, in, sizeof in, &off, &len, &r) != 0 || r.kind != RESP_ARRAY
        || r.num != 2)
        goto done;
    for (int i = 0; i < 2; i++)
        if (read_reply(&io, in, sizeof in, &off, &len, &r) != 0 || r.kind != RESP_BULK)
            goto done;
    snprintf(out, cap, "%.*s", (int)r.len, (const char *)r.s);
    rc = 0;
done:
    gen_close(&io);
    return rc;
}
