/*
 * gen_corpus.c - writes the seed corpus of every fuzz target into
 * OUTDIR/<target>/ (make builds it and runs it before fuzzing).
 *
 * Seeds are made with the project's own writers (ev_encode, mpw_*,
 * secret_generate, elog_append) rather than checked in as binary files, so
 * they follow the formats when the formats change. A valid encoding is the
 * most useful seed: mutation then starts past the checks that random bytes
 * would never pass (a msgpack map of known keys, a secret checksum, record
 * CRCs and the hash chain).
 *
 * Usage: gen_corpus OUTDIR
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/event.h"
#include "core/mp.h"
#include "net/repl.h"
#include "core/secret.h"
#include "core/view.h"
#include "net/proto.h"
#include "net/schema.h"
#include "store/elog.h"
#include "tests/fuzz/fuzz.h"

static const char *outdir;

static _Noreturn void die(const char *what)
{
    fprintf(stderr, "gen_corpus: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void put(const char *target, const char *name, const void *p, size_t n)
{
    char path[PATH_MAX];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", outdir, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        die(path);
    snprintf(path, sizeof path, "%s/%s/%s", outdir, target, name);
    f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0)
        die(path);
}

static tk_str S(const char *s)
{
    tk_str t = { s, strlen(s) };
    return t;
}

/* One plausible event of each type (fields the type does not use are
 * ignored by ev_encode). */
static void make_event(ev *e, ev_type t)
{
    ev_init(e, t, 1700000000000 + (int64_t)t);
    e->tenant = S("acme");
    e->account = S("globex-1");
    e->user = S("alice");
    e->key = S(t == EV_PERM_PUT ? "orders:read" : "admin");
    e->name = S("Administrators \xc3\xa9quipe");
    e->desc = S(t == EV_TOKEN_CREATE ? "ci deploy token\twith tab" : "");
    e->flag = t % 2;
    e->level = t == EV_ROLE_PUT ? 10 : 0;
    e->nitems = 2;
    e->items[0] = S(t == EV_ROLE_PUT ? "orders:read" : "admin");
    e->items[1] = S(t == EV_ROLE_PUT ? "orders.write" : "viewer");
    for (int i = 0; i < TK_ID_LEN; i++)
        e->id.b[i] = (uint8_t)(0x11 * i + t);
    for (int i = 0; i < TK_HASH_LEN; i++)
        e->hash[i] = (uint8_t)(0xA5 ^ i);
    e->expires = t == EV_TOKEN_CREATE ? 1900000000 : 0;
    e->has_limits = t == EV_TENANT_SET; /* the optional field, present */
    e->limits = (tk_limits){.tokens = 10000, .roles = 0, .keys = 100, .rate = 10, .burst = 100};
    /* who made it: a user through a personal key, or the operator */
    e->by = (ev_by){.kind = t % 3 ? TK_ACTOR_USER : TK_ACTOR_OPERATOR, .peer = S("[::1]:40000"),
                    .listener = S(t % 2 ? "binary" : "http")};
    if (e->by.kind == TK_ACTOR_USER) {
        e->by.tenant = S("acme"), e->by.account = S("globex-1"), e->by.user = S("bob");
        e->by.has_key = t % 3 == 1;
        e->by.session = !e->by.has_key;
        e->by.key.b[0] = (uint8_t)t;
    }
}

static void seeds_event(mpw *all)
{
    char name[32];

    for (int t = 1; t <= EV_TYPE_MAX; t++) {
        ev e;
        mpw w;
        make_event(&e, (ev_type)t);
        mpw_init(&w);
        ev_encode(&e, &w);
        snprintf(name, sizeof name, "type-%02d", t);
        put("event", name, w.buf.data, w.buf.size);
        put("mp", name, w.buf.data, w.buf.size);
        mpw_bin(all, w.buf.data, w.buf.size);
        mpw_free(&w);
    }
}

static void seeds_mp(void)
{
    /* Every format once, as raw bytes (floats and exts have no writer). */
    static const uint8_t formats[] = {
        0x9f, 0xc0, 0xc2, 0xc3, 0x7f, 0xe0, 0xcc, 0xff, 0xcd, 0xff, 0xff,
        0xce, 0x80, 0, 0, 0, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xd0, 0x80, 0xd1, 0x80, 0, 0xd2, 0x80, 0, 0, 0, 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0,
        0xca, 0, 0, 0, 0, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0,
        0xd4, 1, 0, 0xc7, 1, 2, 0, 0xd9, 2, 'h', 'i', 0xc4, 1, 0,
        0x81, 0xa1, 'k', 0x90,
    };
    static const uint8_t utf8[] = { 0xa9, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80,
                                    0x00 };
    uint8_t deep[40];
    mpw w;

    put("mp", "formats", formats, sizeof formats);
    put("mp", "utf8", utf8, sizeof utf8);
    for (int d = 31; d <= 33; d++) {
        char name[16];
        memset(deep, 0x91, (size_t)d);
        deep[d] = 0xc0;
        snprintf(name, sizeof name, "depth-%d", d);
        put("mp", name, deep, (size_t)d + 1);
    }
    mpw_init(&w);
    mpw_map(&w, 3);
    mpw_cstr(&w, "a");
    mpw_array(&w, 3);
    mpw_int(&w, -129);
    mpw_uint(&w, 65536);
    mpw_int(&w, INT64_MIN);
    mpw_cstr(&w, "b");
    mpw_bin(&w, "\x00\x01", 2);
    mpw_str(&w, "long string over thirty-one bytes long", 38);
    mpw_bool(&w, true);
    put("mp", "document", w.buf.data, w.buf.size);
    mpw_free(&w);
}

static void seeds_secret(void)
{
    char s[TK_SECRET_LEN + 1], id_s[TK_ID_STR_LEN + 1];
    uint8_t hash[TK_HASH_LEN];
    tk_id id;

    secret_new_id(&id);
    secret_generate(TK_KIND_TOKEN, &id, s, hash);
    put("secret", "token", s, TK_SECRET_LEN);
    secret_generate(TK_KIND_PERSONAL, &id, s, hash);
    put("secret", "personal", s, TK_SECRET_LEN);
    secret_id_format(&id, id_s);
    put("secret", "id", id_s, TK_ID_STR_LEN);
    for (char *p = id_s; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    put("secret", "id-upper", id_s, TK_ID_STR_LEN);
    /* The largest body word 2^64-1 is "LygHa16AHYF"; one more overflows. */
    memcpy(s + 4, "LygHa16AHYG", 11);
    put("secret", "overflow", s, TK_SECRET_LEN);
}

/* Control bytes (flags, b1, b2) then content: see fuzz_elog.c. */
static void put_elog(const char *name, unsigned flags, unsigned b1, unsigned b2,
                     const uint8_t *p, size_t n, size_t zeros)
{
    uint8_t *buf = calloc(1, 3 + n + zeros);
    if (!buf)
        die("calloc");
    buf[0] = (uint8_t)flags;
    buf[1] = (uint8_t)b1;
    buf[2] = (uint8_t)b2;
    memcpy(buf + 3, p, n);
    put("elog", name, buf, 3 + n + zeros);
    free(buf);
}

static void seeds_elog(const mpw *events)
{
    tk_why said = {.msg = ""};
    char tmpl[] = "/tmp/tokend-gen-corpus-XXXXXX", path[PATH_MAX];
    elog *lg;
    mpr r;
    FILE *f;
    uint8_t *file;
    long size;

    if (!mkdtemp(tmpl))
        die("mkdtemp");
    if (elog_open(tmpl, NULL, &lg, &said) != 0) {
        fprintf(stderr, "gen_corpus: elog_open: %s\n", said.msg);
        exit(1);
    }
    /* Five records: the first five events (short ones keep inputs small). */
    mpr_init(&r, events->buf.data, events->buf.size);
    for (int i = 0; i < 5; i++) {
        const uint8_t *p;
        size_t n;
        if (mpr_bin(&r, &p, &n) || elog_append(lg, p, n, NULL) != 0)
            die("elog_append");
    }
    if (elog_sync(lg, &said) != 0)
        die("elog_sync");
    elog_close(lg);

    snprintf(path, sizeof path, "%s/%020d.seg", tmpl, 1);
    f = fopen(path, "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 16 || fseek(f, 0, SEEK_SET) != 0)
        die(path);
    file = malloc((size_t)size);
    if (!file || fread(file, 1, (size_t)size, f) != (size_t)size)
        die(path);
    fclose(f);
    unlink(path);
    rmdir(tmpl);

    const uint8_t *recs = file + 16;
    size_t n = (size_t)size - 16;
    put_elog("clean", 0, 0, 0, recs, n, 0);
    put_elog("whole-file", 0x01, 0, 0, file, (size_t)size, 0);
    put_elog("fixed", 0x06, 0, 0, recs, n, 0);
    put_elog("split", 0x08, 1, 4, recs, n, 0);
    put_elog("split-badname", 0x18, 0x71, 3, recs, n, 0);
    put_elog("split-mid-record", 0x48, 0x80, 0, recs, n, 0);
    put_elog("small-segments", 0x20, 0, 0, recs, n, 0);
    put_elog("torn", 0, 0, 0, recs, n - 7, 0);
    put_elog("zero-tail", 0, 0, 0, recs, n, 24);
    put_elog("torn-header", 0x01, 0, 0, file, 9, 0);
    put_elog("empty", 0, 0, 0, recs, 0, 0);
    free(file);
}

/* ---- protocol: request bodies, reply bodies and reply streams ---------- */

static void kv_str(mpw *w, const char *k, const char *v)
{
    mpw_cstr(w, k);
    mpw_cstr(w, v);
}

static void kv_list(mpw *w, const char *k, const char *v)
{
    mpw_cstr(w, k);
    mpw_array(w, 1);
    mpw_cstr(w, v);
}

/* A reply stream as the client reads it: frames back to back. */
typedef struct stream {
    uint8_t *p;
    size_t n;
} stream;

static void append(stream *s, const void *p, size_t n)
{
    uint8_t *q = realloc(s->p, s->n + n + 1);
    if (!q)
        die("realloc");
    s->p = q;
    if (n)
        memcpy(s->p + s->n, p, n);
    s->n += n;
}

/* Appends one frame (header + body) to s. */
static void add_frame(stream *s, uint16_t code, uint32_t id, const mpw *body)
{
    uint8_t hdr[PROTO_HEADER_LEN];
    proto_header h = {.len = (uint32_t)body->buf.size, .code = code, .flags = 0, .id = id};
    proto_header_put(hdr, &h);
    append(s, hdr, sizeof hdr);
    append(s, body->buf.data, body->buf.size);
}

/* A client seed: the call selector of fuzz_client.c, then the stream. */
static void put_client(const char *name, unsigned call, const stream *s)
{
    uint8_t *buf = malloc(1 + s->n);
    if (!buf)
        die("malloc");
    buf[0] = (uint8_t)call;
    if (s->n)
        memcpy(buf + 1, s->p, s->n);
    put("client", name, buf, 1 + s->n);
    free(buf);
}

/* A dispatch seed: the opcode byte, then the request body. */
static void put_request(const char *name, uint8_t op, const mpw *body)
{
    uint8_t *buf = malloc(1 + body->buf.size);
    if (!buf)
        die("malloc");
    buf[0] = op;
    if (body->buf.size)
        memcpy(buf + 1, body->buf.data, body->buf.size);
    put("dispatch", name, buf, 1 + body->buf.size);
    free(buf);
}

static void seeds_protocol(void)
{
    /* fuzz_client.c's calls, in its order. */
    enum { C_PING, C_AUTH, C_VERIFY, C_PIPELINE, C_TENANT, C_LIST, C_TOKEN, C_KEY, C_USER,
           C_RAW };
    char tok[TK_SECRET_LEN + 1], per[TK_SECRET_LEN + 1], id_s[TK_ID_STR_LEN + 1];
    uint8_t hash[TK_HASH_LEN];
    tk_id id;
    mpw b, empty;
    stream s = {NULL, 0};

    secret_new_id(&id);
    secret_id_format(&id, id_s);
    secret_generate(TK_KIND_TOKEN, &id, tok, hash);
    secret_generate(TK_KIND_PERSONAL, &id, per, hash);
    mpw_init(&b);
    mpw_init(&empty);

    /* VERIFY replies: valid, invalid. */
    mpw_map(&b, 8);
    mpw_cstr(&b, "valid");
    mpw_bool(&b, true);
    kv_str(&b, "reason", "valid");
    kv_str(&b, "client_id", id_s);
    kv_str(&b, "tenant", "acme");
    kv_str(&b, "account", "globex");
    kv_list(&b, "roles", "admin");
    kv_list(&b, "permissions", "orders:read");
    mpw_cstr(&b, "expires_at");
    mpw_int(&b, 1900000000);
    put("verify_reply", "valid", b.buf.data, b.buf.size);
    add_frame(&s, 0, 1, &b);
    put_client("verify-valid", C_VERIFY, &s);
    mpw_reset(&b);
    mpw_map(&b, 2);
    mpw_cstr(&b, "valid");
    mpw_bool(&b, false);
    kv_str(&b, "reason", "expired");
    put("verify_reply", "invalid", b.buf.data, b.buf.size);
    add_frame(&s, 0, 2, &b);
    add_frame(&s, 0, 3, &b);
    put_client("verify-pipeline", C_PIPELINE, &s);

    /* Refusals: a status with a message, and the server's id-0 notice. */
    s.n = 0;
    mpw_reset(&b);
    mpw_map(&b, 1);
    kv_str(&b, "error", "denied: rule 2 (portal flag)");
    add_frame(&s, proto_status(-4), 1, &b);
    put_client("refused", C_TENANT, &s);
    s.n = 0;
    add_frame(&s, proto_status(-14), 0, &b);
    put_client("busy", C_PING, &s);

    /* PING, AUTH, a write's {}. */
    s.n = 0;
    mpw_reset(&b);
    mpw_map(&b, 1);
    mpw_cstr(&b, "version");
    mpw_uint(&b, PROTO_VERSION);
    add_frame(&s, 0, 1, &b);
    put_client("ping", C_PING, &s);
    add_frame(&s, 0, 2, &b);
    put_client("raw", C_RAW, &s);
    s.n = 0;
    mpw_reset(&b);
    mpw_map(&b, 4);
    kv_str(&b, "actor", "user");
    kv_str(&b, "tenant", "acme");
    kv_str(&b, "account", "globex");
    kv_str(&b, "user", "alice");
    add_frame(&s, 0, 1, &b);
    put_client("auth", C_AUTH, &s);
    s.n = 0;
    add_frame(&s, 0, 1, &empty);
    put_client("write", C_TENANT, &s);

    /* TOKEN_LIST page, TOKEN_CREATE, KEY_CREATE / USER_CREATE. */
    s.n = 0;
    mpw_reset(&b);
    mpw_map(&b, 2);
    mpw_cstr(&b, "tokens");
    mpw_array(&b, 1);
    mpw_map(&b, 6);
    kv_str(&b, "client_id", id_s);
    kv_str(&b, "description", "ci deploy");
    kv_list(&b, "roles", "admin");
    kv_str(&b, "created_by", "alice");
    mpw_cstr(&b, "created_at");
    mpw_int(&b, 1700000000);
    mpw_cstr(&b, "expires_at");
    mpw_int(&b, 0);
    mpw_cstr(&b, "more");
    mpw_bool(&b, true);
    add_frame(&s, 0, 1, &b);
    put_client("list", C_LIST, &s);
    s.n = 0;
    mpw_reset(&b);
    mpw_map(&b, 3);
    kv_str(&b, "client_id", id_s);
    kv_str(&b, "secret", tok);
    mpw_cstr(&b, "expires_at");
    mpw_int(&b, 0);
    add_frame(&s, 0, 1, &b);
    put_client("token", C_TOKEN, &s);
    s.n = 0;
    mpw_reset(&b);
    mpw_map(&b, 2);
    kv_str(&b, "key_id", id_s);
    kv_str(&b, "personal_key", per);
    add_frame(&s, 0, 1, &b);
    put_client("key", C_KEY, &s);
    put_client("user", C_USER, &s);

    /* Request bodies, one per opcode (for the server's decoders). */
    put_request("ping", OP_PING, &empty);
    mpw_reset(&b);
    mpw_map(&b, 1);
    kv_str(&b, "key", per);
    put_request("auth", OP_AUTH, &b);
    mpw_reset(&b);
    mpw_map(&b, 2);
    kv_str(&b, "secret", tok);
    kv_str(&b, "client_id", id_s);
    put_request("verify", OP_VERIFY, &b);
    mpw_reset(&b);
    mpw_map(&b, 1);
    kv_str(&b, "tenant", "acme");
    put_request("tenant-create", OP_TENANT_CREATE, &b);
    mpw_reset(&b);
    mpw_map(&b, 2);
    kv_str(&b, "tenant", "acme");
    mpw_cstr(&b, "api_tokens");
    mpw_bool(&b, true);
    put_request("tenant-set", OP_TENANT_SET, &b);
    mpw_reset(&b);
    mpw_map(&b, 3);
    kv_str(&b, "tenant", "acme");
    kv_str(&b, "key", "orders:read");
    kv_str(&b, "description", "read orders");
    put_request("perm-put", OP_PERM_PUT, &b);
    mpw_reset(&b);
    mpw_map(&b, 5);
    kv_str(&b, "tenant", "acme");
    kv_str(&b, "key", "admin");
    kv_str(&b, "name", "Administrators");
    mpw_cstr(&b, "level");
    mpw_uint(&b, 10);
    kv_list(&b, "permissions", "orders:read");
    put_request("role-put", OP_ROLE_PUT, &b);
    mpw_reset(&b);
    mpw_map(&b, 2);
    kv_str(&b, "tenant", "acme");
    kv_str(&b, "key", "admin");
    put_request("role-delete", OP_ROLE_DELETE, &b);
    mpw_reset(&b);
    mpw_map(&b, 2);
    kv_str(&b, "tenant", "acme");
    kv_str(&b, "account", "globex");
    put_request("account-create", OP_ACCOUNT_CREATE, &b);
    mpw_reset(&b);
    mpw_map(&b, 5);
    kv_str(&b, "tenant", "acme");
    kv_str(&b, "account", "globex");
    kv_str(&b, "user", "alice");
    kv_list(&b, "roles", "admin");
    mpw_cstr(&b, "portal");
    mpw_bool(&b, true);
    put_request("user-create", OP_USER_CREATE, &b);
    put_request("user-set", OP_USER_SET, &b);
    mpw_reset(&b);
    mpw_map(&b, 4);
    kv_str(&b, "tenant", "acme");
    kv_str(&b, "account", "globex");
    kv_str(&b, "user", "alice");
    mpw_cstr(&b, "expires_at");
    mpw_int(&b, 1900000000);
    put_request("key-create", OP_KEY_CREATE, &b);
    mpw_reset(&b);
    mpw_map(&b, 1);
    kv_str(&b, "key_id", id_s);
    put_request("key-delete", OP_KEY_DELETE, &b);
    mpw_reset(&b);
    mpw_map(&b, 3);
    kv_str(&b, "description", "ci deploy");
    kv_list(&b, "roles", "admin");
    mpw_cstr(&b, "expires_at");
    mpw_int(&b, 0);
    put_request("token-create", OP_TOKEN_CREATE, &b);
    mpw_reset(&b);
    mpw_map(&b, 4);
    kv_str(&b, "tenant", "acme");
    kv_str(&b, "account", "globex");
    kv_str(&b, "after", id_s);
    mpw_cstr(&b, "limit");
    mpw_uint(&b, 10);
    put_request("token-list", OP_TOKEN_LIST, &b);
    mpw_reset(&b);
    mpw_map(&b, 1);
    kv_str(&b, "client_id", id_s);
    put_request("token-delete", OP_TOKEN_DELETE, &b);

    mpw_free(&b);
    mpw_free(&empty);
    free(s.p);
}

/* JSON API bodies: the operation's index in the schema, then JSON. */
static void seeds_hjson(void)
{
    static const struct {
        const char *op, *json;
    } seeds[] = {
        {"TENANT_CREATE", "{\"tenant\":\"acme\"}"},
        {"TENANT_SET", "{\"tenant\":\"acme\",\"api_tokens\":true,\"max_tokens\":5}"},
        {"ROLE_PUT", "{\"tenant\":\"acme\",\"key\":\"viewer\",\"level\":5,"
                     "\"permissions\":[\"orders:read\"]}"},
        {"USER_CREATE", "{\"tenant\":\"a\",\"account\":\"b\",\"user\":\"c\","
                        "\"roles\":[\"r\"],\"portal\":false}"},
        {"TOKEN_CREATE", "{\"description\":\"ci\",\"roles\":[\"viewer\"],\"expires_at\":1.5}"},
        {"TOKEN_LIST", "{\"limit\":10,\"after\":\"AAAAAAAAAAA\"}"},
        {"VERIFY", "{\"secret\":\"tkt_x\",\"client_id\":null}"},
        {"KEY_DELETE", "{\"key_id\":[{\"a\":[[[[]]]]}]}"},
        /* deeper than hj_to_body carries: refused (it once tripped the check) */
        {"TOKEN_CREATE", "{\"id\":[{\"\":[[[{\"id\":[{\"\":[[[]]]}]}]]]}]}"},
    };
    size_t nops;
    const sch_op *ops = sch_all(&nops);
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        const sch_op *op = sch_named(seeds[i].op);
        size_t n = strlen(seeds[i].json);
        uint8_t *buf = malloc(1 + n);
        if (!buf || !op)
            die("hjson seed");
        buf[0] = (uint8_t)(op - ops);
        memcpy(buf + 1, seeds[i].json, n);
        char name[32];
        snprintf(name, sizeof name, "json-%zu", i);
        put("hjson", name, buf, 1 + n);
        free(buf);
    }
}

/* HTTP requests (fuzz_http): @OP@, @PK@ and @TOKEN@ stand for the keys. */
static void seeds_http(void)
{
    static const char *const reqs[] = {
        "GET /v1/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer @TOKEN@\r\n\r\n",
        "GET /v1/verify/a/b?permission=orders:read&x HTTP/1.1\r\nX-API-Key: @TOKEN@\r\n"
        "X-Tokend-Require-Permission: orders:read, orders:write\r\n\r\n",
        "GET /v1/verify HTTP/1.1\r\nAuthorization: Basic OmFiYw==\r\n\r\n",
        "POST /v1/verify HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 23\r\n"
        "\r\n{\"secret\":\"@TOKEN@\"}",
        "POST /v1/tokens HTTP/1.1\r\nAuthorization: Bearer @PK@\r\nContent-Type: "
        "application/json\r\nContent-Length: 21\r\n\r\n{\"roles\":[\"viewer\"]}",
        "GET /v1/tokens?limit=2 HTTP/1.1\r\nAuthorization: Bearer @PK@\r\n\r\n"
        "GET /v1/roles HTTP/1.1\r\nAuthorization: Bearer @PK@\r\n\r\n",
        "PUT /v1/tenants/acme/roles/r%20x HTTP/1.1\r\nAuthorization: Bearer @OP@\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        "c\r\n{\"level\":1}\r\n0\r\n\r\n",
        "GET /metrics HTTP/1.1\r\n\r\nGET /healthz HTTP/1.0\r\n\r\n",
        "DELETE /v1/keys/00000000-0000-4000-8000-000000000000 HTTP/1.1\r\nAuthorization: Bearer "
        "@OP@\r\nExpect: 100-continue\r\n\r\n",
        /* the portal: a link minted, a code, the page, cookies and CSRF */
        "POST /v1/portal/sessions HTTP/1.1\r\nAuthorization: Bearer @OP@\r\nContent-Type: "
        "application/json\r\nContent-Length: 50\r\n\r\n"
        "{\"tenant\":\"acme\",\"account\":\"bigco\",\"user\":\"alice\"}",
        "GET /portal/?code=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA&x=1 HTTP/1.1\r\n"
        "\r\nGET /portal HTTP/1.1\r\n\r\nGET /portal/portal.js HTTP/1.1\r\n\r\n",
        "GET /v1/tokens?search=a%20b HTTP/1.1\r\nCookie: a=b; tokend_portal=AAAAAAAAAAAAAAAAAAAA"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA; c\r\n\r\n",
        "DELETE /v1/portal/session HTTP/1.1\r\nCookie: tokend_portal=x\r\nX-Tokend-CSRF: y\r\n"
        "\r\nGET /v1/portal/session HTTP/1.1\r\nAuthorization: Bearer @PK@\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "req-%zu", i);
        put("http", name, reqs[i], strlen(reqs[i]));
    }
}

/* Verify listener request heads (fuzz_h1): what a gateway sends, pipelined
 * runs, and one of each refusal, so mutation starts on both sides of a rule. */
static void seeds_h1(void)
{
    static const char *const reqs[] = {
        "GET /v1/verify HTTP/1.1\r\nHost: tokend\r\nAuthorization: Bearer tkt_x\r\n\r\n",
        "GET /v1/verify/orders?permission=orders:read HTTP/1.1\r\nX-API-Key: k\r\n"
        "X-Tokend-Require-Permission: orders:read, orders:write\r\nConnection: close\r\n\r\n",
        "HEAD /v1/verify HTTP/1.0\nConnection: keep-alive\nX-Forwarded-For: 10.0.0.1\n\n",
        "\r\nPOST /v1/verify HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\n{}"
        "GET /v1/verify HTTP/1.1\r\n\r\nGET /x?y HTTP/1.0\r\nA:\r\nB: \t v \t\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
        "GET http://x/ HTTP/1.1\r\nHost : x\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "req-%zu", i);
        put("h1", name, reqs[i], strlen(reqs[i]));
    }
    /* 100 fields (the most taken) and 101 (431) */
    char many[1024];
    size_t n = (size_t)snprintf(many, sizeof many, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 101; i++) {
        n += (size_t)snprintf(many + n, sizeof many - n, "%c%c:\n", 'a' + i / 26, 'a' + i % 26);
        if (i >= 99) {
            memcpy(many + n, "\n", 1);
            put("h1", i == 99 ? "fields-100" : "fields-101", many, n + 1);
        }
    }
}

/* Lease messages (fuzz_lease): a request and a reply as the two sides
 * write them. */
static void seeds_lease(void)
{
    uint8_t b[REPL_LEASE_MAX];
    repl_lease_req q = {.applied = 42, .sent_ns = 123456789, .join = true};
    snprintf(q.name, sizeof q.name, "replica-1:7070");
    put("lease", "request", b, repl_lease_req_put(&q, b));
    q.join = false;
    put("lease", "probe", b, repl_lease_req_put(&q, b));
    repl_lease_rep r = {.sent_ns = 123456789, .durable = 50, .catch_up = 50, .lease_ms = 2000,
                        .barrier = true, .granted = true};
    snprintf(r.addr, sizeof r.addr, "binary 10.0.0.1:7070, http 10.0.0.1:7080");
    put("lease", "reply", b, repl_lease_rep_put(&r, b));
}

/* The view image's body (fuzz_vimage): a view's credentials as
 * view_save_creds writes them, small enough to mutate well: tokens sharing
 * role sets, a personal key, a replaced and a deleted credential (so the
 * free lists are not empty). */
static void seeds_vimage(void)
{
    static const uint32_t sets[3][2] = {{1, 2}, {2, 0}, {3, 1}};
    uint8_t hash[TK_HASH_LEN] = {0};
    fz_buf b = {0};
    view *v;
    tk_id id;

    for (int size = 0; size < 2; size++) {
        view_new(&v);
        for (uint32_t i = 0; i < (size ? 40u : 6u); i++) {
            memset(&id, 0, sizeof id);
            id.b[0] = (uint8_t)i;
            id.b[15] = (uint8_t)(i * 7);
            hash[0] = (uint8_t)i;
            if (i % 5 == 4)
                view_cred_put(v, TK_KIND_PERSONAL, &id, hash, 1, 1, 3, NULL, 0, 0);
            else
                view_cred_put(v, TK_KIND_TOKEN, &id, hash, 1, 1, 0, sets[i % 3],
                              i % 3 == 1 ? 1 : 2, i % 2 ? 1900000000 : 0);
        }
        id.b[0] = 2; /* replaced, then one deleted */
        id.b[15] = 14;
        view_cred_put(v, TK_KIND_TOKEN, &id, hash, 1, 2, 0, sets[2], 2, 0);
        id.b[0] = 1;
        id.b[15] = 7;
        (void)view_cred_del(v, &id);
        b.len = 0;
        if (view_save_creds(v, fz_buf_put, &b) != 0)
            die("view_save_creds");
        put("vimage", size ? "forty" : "six", b.p, b.len);
        view_free(v);
    }
    free(b.p);
}

int main(int argc, char **argv)
{
    mpw events;

    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus OUTDIR\n");
        return 2;
    }
    outdir = argv[1];
    if (mkdir(outdir, 0755) != 0 && errno != EEXIST)
        die(outdir);
    mpw_init(&events);
    seeds_event(&events);
    seeds_mp();
    seeds_secret();
    seeds_elog(&events);
    seeds_protocol();
    seeds_hjson();
    seeds_http();
    seeds_h1();
    seeds_lease();
    seeds_vimage();
    mpw_free(&events);
    return 0;
}
