/*
 * test_tbunits.c - tokenbench's pure modules: the histogram's bucket
 * bounds and quantiles (bench/tokenbench/hist.c), the strict RESP parser
 * fed whole, split at every offset and fed bad input (resp.c), the HTTP/1.1
 * response parser the same way and the http mode's answer check (http.c),
 * the request picker and the tokens file (work.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "bench/tokenbench/hist.h"
#include "bench/tokenbench/http.h"
#include "bench/tokenbench/resp.h"
#include "bench/tokenbench/work.h"
#include "tests/support/tkt.h"

/* Every value lies in its bucket, within 1/HIST_SUB of the bucket's top,
 * and indexes never go down as values go up. */
static void hist_buckets_bound_values(void **state)
{
    (void)state;
    uint32_t last = 0;
    for (uint64_t v = 0; v < 5000000; v += 1 + v / 97) {
        uint32_t i = hist_index(v);
        assert_true(i < HIST_BUCKETS);
        assert_true(i >= last);
        last = i;
        uint64_t high = hist_bucket_high(i);
        assert_true(high >= v);
        assert_true((double)(high - v) <= (double)v / HIST_SUB + 1);
        if (i > 0)
            assert_true(hist_bucket_high(i - 1) < v);
    }
    assert_true(hist_index(UINT64_MAX) == HIST_BUCKETS - 1);
    assert_true(hist_bucket_high(HIST_BUCKETS - 1) == UINT64_MAX);
}

static void hist_quantiles_are_close_and_never_below(void **state)
{
    (void)state;
    hist *h = malloc(sizeof *h), *g = malloc(sizeof *g);
    hist_reset(h);
    hist_reset(g);
    assert_int_equal(hist_quantile(h, 0.5), 0);
    /* 1..100000 ns: the q-quantile is q * 100000 */
    for (uint64_t v = 1; v <= 100000; v++)
        hist_record(v % 2 ? h : g, v);
    hist_merge(h, g);
    assert_int_equal(h->count, 100000);
    assert_int_equal(h->min, 1);
    assert_int_equal(h->max, 100000);
    const double qs[] = {0.5, 0.9, 0.99, 0.999};
    for (int i = 0; i < 4; i++) {
        double want = qs[i] * 100000;
        double got = (double)hist_quantile(h, qs[i]);
        assert_true(got >= want);
        assert_true(got <= want * (1 + 1.0 / HIST_SUB) + 1);
    }
    assert_int_equal(hist_quantile(h, 1.0), 100000);
    /* one outlier: the maximum is exact, not a bucket's top */
    hist_record(h, 123456789);
    assert_int_equal(hist_quantile(h, 1.0), 123456789);
    free(h);
    free(g);
}

/* ---- RESP ----------------------------------------------------------------- */

typedef struct resp_case {
    const char *in;
    resp_kind kind;
    const char *s; /* expected bytes (status, error, bulk) */
    int64_t num;
} resp_case;

static const resp_case good[] = {
    {"+OK\r\n", RESP_STATUS, "OK", 0},
    {"-ERR wrong type\r\n", RESP_ERROR, "ERR wrong type", 0},
    {":0\r\n", RESP_INT, NULL, 0},
    {":-42\r\n", RESP_INT, NULL, -42},
    {"$-1\r\n", RESP_NIL, NULL, 0},
    {"*-1\r\n", RESP_NIL, NULL, 0},
    {"$0\r\n\r\n", RESP_BULK, "", 0},
    {"$5\r\nab\r\nc\r\n", RESP_BULK, "ab\r\nc", 0},
    {"*2\r\n", RESP_ARRAY, NULL, 2},
};

static void resp_whole_and_split(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof good / sizeof good[0]; c++) {
        const uint8_t *in = (const uint8_t *)good[c].in;
        size_t len = strlen(good[c].in);
        resp_reply r;
        /* every proper prefix is incomplete, never an error */
        for (size_t cut = 0; cut < len; cut++)
            assert_int_equal(resp_parse(in, cut, &r), 0);
        /* whole, and with the next reply glued on: takes exactly its bytes */
        char two[128];
        snprintf(two, sizeof two, "%s+NEXT\r\n", good[c].in);
        assert_int_equal(resp_parse(in, len, &r), (long)len);
        assert_int_equal(resp_parse((const uint8_t *)two, strlen(two), &r), (long)len);
        assert_int_equal(r.kind, good[c].kind);
        assert_true(r.num == good[c].num);
        if (good[c].s) {
            assert_int_equal(r.len, strlen(good[c].s));
            assert_memory_equal(r.s, good[c].s, r.len);
        }
    }
}

static void resp_refuses_what_is_not_resp2(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "?\r\n",          "OK\r\n",        "+OK\n",        "+O\rK\r\n", ":+1\r\n",
        ":01\r\n",        ":-0\r\n",       ":1a\r\n",      ":\r\n",     "$-2\r\n",
        "$3\r\nabcd\r\n", "$3\r\nabc\n\n", "$99999999999\r\n",
        ":99999999999999999999\r\n",       "$2097152\r\n", "*-2\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        resp_reply r;
        long k = resp_parse((const uint8_t *)bad[i], strlen(bad[i]), &r);
        if (k != -1)
            fail_msg("accepted %zu: '%s' (%ld)", i, bad[i], k);
    }
    /* a line longer than the limit is refused, not waited for */
    size_t n = RESP_LINE_MAX + 10;
    uint8_t *big = malloc(n);
    memset(big, 'x', n);
    big[0] = '+';
    resp_reply r;
    assert_int_equal(resp_parse(big, n, &r), -1);
    free(big);
}

static void resp_command_round_trip(void **state)
{
    (void)state;
    uint8_t out[128];
    const char *argv[3] = {"SET", "k", "v\r\n"};
    size_t argl[3] = {3, 1, 3};
    size_t n = resp_command(out, sizeof out, 3, argv, argl);
    const char want[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n";
    assert_int_equal(n, sizeof want - 1);
    assert_memory_equal(out, want, n);
    assert_int_equal(resp_command(out, 10, 3, argv, argl), 0); /* no room: nothing */
}

/* ---- HTTP/1.1 responses ------------------------------------------------------ */

typedef struct http_case {
    const char *in;
    int status;
    bool close;
    const char *body;
} http_case;

static const http_case http_good[] = {
    /* nginx `return 204`: no Content-Length, no body */
    {"HTTP/1.1 204 No Content\r\nServer: nginx/1.22.1\r\nDate: Tue, 01 Dec 2026 13:38:04 GMT\r\n"
     "Connection: keep-alive\r\n\r\n",
     204, false, ""},
    /* tokend's 200: identity headers, an empty body */
    {"HTTP/1.1 200 OK\r\nX-Tokend-Tenant: acme\r\nX-Tokend-Roles: viewer,editor\r\n"
     "Content-Length: 0\r\n\r\n",
     200, false, ""},
    {"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 35\r\n\r\n"
     "{\"valid\":false,\"reason\":\"unknown\"}\n",
     401, false, "{\"valid\":false,\"reason\":\"unknown\"}\n"},
    {"HTTP/1.1 200\r\ncontent-length:  3 \r\n\r\nabc", 200, false, "abc"}, /* no reason */
    {"HTTP/1.1 404 \r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n\r\n", 404, false, "\r\n"},
    {"HTTP/1.1 200 OK\r\nConnection: Upgrade, Close\r\nContent-Length: 0\r\n\r\n", 200, true, ""},
    {"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, true, "ok"},
    {"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", 200, false, ""},
    /* 304: the Content-Length is the resource's, not a body */
    {"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", 304, false, ""},
    {"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 1\r\n\r\nx", 503,
     false, "x"},
};

static void http_whole_and_split(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof http_good / sizeof http_good[0]; c++) {
        const http_case *k = &http_good[c];
        size_t len = strlen(k->in);
        htp_resp r;
        /* every proper prefix is incomplete, never an error */
        for (size_t cut = 0; cut < len; cut++)
            if (htp_parse((const uint8_t *)k->in, cut, &r) != 0)
                fail_msg("case %zu: prefix of %zu bytes is not 'incomplete'", c, cut);
        /* whole, and with the next response glued on: takes exactly its bytes */
        char two[1024];
        snprintf(two, sizeof two, "%s%s", k->in, http_good[0].in);
        assert_int_equal(htp_parse((const uint8_t *)two, strlen(two), &r), (long)len);
        assert_int_equal(htp_parse((const uint8_t *)k->in, len, &r), (long)len);
        assert_int_equal(r.status, k->status);
        assert_int_equal(r.close, k->close);
        assert_int_equal(r.body_len, strlen(k->body));
        assert_memory_equal(r.body, k->body, r.body_len);
    }
    /* Two responses in one stream, split at every offset, as the generator
     * reads them: the first is taken once whole, the second from its end. */
    char stream[512];
    snprintf(stream, sizeof stream, "%s%s", http_good[2].in, http_good[0].in);
    size_t first = strlen(http_good[2].in), n = strlen(stream);
    for (size_t cut = 0; cut <= n; cut++) {
        htp_resp r;
        long k = htp_parse((const uint8_t *)stream, cut, &r);
        assert_int_equal(k, cut < first ? 0 : (long)first);
        k = cut < first ? 0 : htp_parse((const uint8_t *)stream + first, cut - first, &r);
        assert_int_equal(k, cut < n ? 0 : (long)(n - first));
        if (cut == n)
            assert_int_equal(r.status, 204);
    }
}

static void http_headers_by_name(void **state)
{
    (void)state;
    const char *in = http_good[1].in;
    htp_resp r;
    const uint8_t *v;
    size_t vl;
    assert_true(htp_parse((const uint8_t *)in, strlen(in), &r) > 0);
    assert_true(htp_header(&r, "x-tokend-roles", &v, &vl));
    assert_int_equal(vl, strlen("viewer,editor"));
    assert_memory_equal(v, "viewer,editor", vl);
    assert_true(htp_header(&r, "X-TOKEND-TENANT", &v, &vl));
    assert_int_equal(vl, 4);
    assert_memory_equal(v, "acme", 4);
    assert_false(htp_header(&r, "X-Tokend", &v, &vl)); /* a prefix is not the name */
    assert_false(htp_header(&r, "Date", &v, &vl));
}

static void http_refuses_what_it_cannot_frame(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        long code;
    } bad[] = {
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
         HTP_ECHUNKED},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
         HTP_ECHUNKED},
        {"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", HTP_EUNTIL},
        {"HTTP/1.0 200 OK\r\n\r\nuntil close", HTP_EUNTIL},
        {"HTTP/1.1 100 Continue\r\n\r\n", HTP_EINTERIM},
        {"HTTP/1.1 200 OK\r\nContent-Length: 65537\r\n\r\n", HTP_ETOOBIG},
        {"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", HTP_ETOOBIG},
        {"X", HTP_EBAD},
        {"HTTP/2 200\r\n\r\n", HTP_EBAD},
        {"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n", HTP_EBAD},
        {"HTTP/1.1 600 OK\r\nContent-Length: 0\r\n\r\n", HTP_EBAD},
        {"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", HTP_EBAD},
        {"HTTP/1.1 200OK\r\nContent-Length: 0\r\n\r\n", HTP_EBAD},
        {"HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n", HTP_EBAD},
        {"HTTP/1.1 200 OK\nContent-Length: 0\n\n", HTP_EBAD},
        {"HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n\r\n", HTP_EBAD},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", HTP_EBAD},
        {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", HTP_EBAD},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1a\r\n\r\n", HTP_EBAD},
        {"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", HTP_EBAD},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\nx", HTP_EBAD},
        {"HTTP/1.1 200 OK\r\nA: b\r\n c\r\nContent-Length: 0\r\n\r\n", HTP_EBAD}, /* obs-fold */
        {"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n", HTP_EBAD},
        {"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n", HTP_EBAD},
        {"HTTP/1.1 200 OK\r\n: x\r\nContent-Length: 0\r\n\r\n", HTP_EBAD},
        {"HTTP/1.1 200 OK\r\nX: a\x01z\r\nContent-Length: 0\r\n\r\n", HTP_EBAD},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        htp_resp r;
        long k = htp_parse((const uint8_t *)bad[i].in, strlen(bad[i].in), &r);
        if (k != bad[i].code)
            fail_msg("case %zu: '%s': %ld, want %ld", i, bad[i].in, k, bad[i].code);
        assert_true(strcmp(htp_strerror(k), "no error") != 0);
    }
    /* a NUL inside a header value */
    static const char nul[] = "HTTP/1.1 200 OK\r\nX: a\0b\r\nContent-Length: 0\r\n\r\n";
    htp_resp r;
    assert_int_equal(htp_parse((const uint8_t *)nul, sizeof nul - 1, &r), HTP_EBAD);
    /* a bare LF is refused as soon as it is seen, not once 16 KiB came */
    static const char lf[] = "HTTP/1.1 200 OK\nContent-Length: 0\n";
    assert_int_equal(htp_parse((const uint8_t *)lf, sizeof lf - 1, &r), HTP_EBAD);
    /* a head that never ends is refused at the limit, not waited for */
    size_t n = HTP_HEAD_MAX + 10;
    char *big = malloc(n);
    memset(big, 'x', n);
    memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 21);
    assert_int_equal(htp_parse((const uint8_t *)big, HTP_HEAD_MAX - 1, &r), 0);
    assert_int_equal(htp_parse((const uint8_t *)big, n, &r), HTP_ETOOBIG);
    free(big);
}

static void http_url_splits(void **state)
{
    (void)state;
    char addr[HTP_HOST_MAX], host[HTP_HOST_MAX], path[HTP_PATH_MAX];
    assert_int_equal(htp_url("http://127.0.0.1:7080/v1/verify", addr, host, path), 0);
    assert_string_equal(addr, "127.0.0.1:7080");
    assert_string_equal(host, "127.0.0.1:7080");
    assert_string_equal(path, "/v1/verify");
    assert_int_equal(htp_url("http://localhost", addr, host, path), 0);
    assert_string_equal(addr, "localhost:80");
    assert_string_equal(host, "localhost");
    assert_string_equal(path, "/");
    assert_int_equal(htp_url("HTTP://[::1]:8080/a?b=c", addr, host, path), 0);
    assert_string_equal(addr, "[::1]:8080");
    assert_string_equal(path, "/a?b=c");
    assert_int_equal(htp_url("http://[::1]/", addr, host, path), 0);
    assert_string_equal(addr, "[::1]:80");
    static const char *const bad[] = {
        "https://a/",   "127.0.0.1:80/", "http://",        "http:///x",    "http://a:/",
        "http://a:0/",  "http://a:65536", "http://a:8x/",  "http://u@a/",  "http://a b/",
        "http://a/ b",  "http://[::1/",   "http://[::1]x/", "http://:80/", "http://a/#f",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (htp_url(bad[i], addr, host, path) != -1)
            fail_msg("accepted URL '%s'", bad[i]);
}

/* The http mode's check: a known token needs 200 with its own identity
 * and no body, an unknown secret 401, a peer its expected status; a
 * response saying the connection closes is wrong whatever its status. */
static void http_driver_checks_answers(void **state)
{
    (void)state;
    work_tokens t;
    work_tokens_alloc(&t, 1, "acme", "globex", "viewer,editor");
    t.secret = realloc(t.secret, 2 * sizeof *t.secret);
    t.client_id = realloc(t.client_id, 2 * sizeof *t.client_id);
    t.ninvalid = 1;
    for (size_t i = 0; i < 2; i++) {
        tk_id id;
        uint8_t hash[TK_HASH_LEN];
        secret_new_id(&id);
        secret_generate(TK_KIND_TOKEN, &id, t.secret[i], hash);
    }
    assert_int_equal(work_tokens_index(&t), 0);

    htp_ctx *x = calloc(1, sizeof *x);
    gen_driver d;
    assert_int_equal(htp_init(x, &t, "http://127.0.0.1:7080/v1/verify", true, 0), 0);
    assert_string_equal(x->addr, "127.0.0.1:7080");
    htp_driver(x, &d);
    void *l = d.local_new(d.ctx);
    uint8_t req[GEN_REQ_MAX];
    char want[512];
    size_t n = d.encode(l, 0, 1, req);
    snprintf(want, sizeof want,
             "GET /v1/verify HTTP/1.1\r\nHost: 127.0.0.1:7080\r\nAuthorization: Bearer %s\r\n\r\n",
             t.secret[0]);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(req, want, n);

    char id_hdr[128];
    snprintf(id_hdr, sizeof id_hdr, "X-Tokend-Client-Id: %s\r\n", t.client_id[0]);
    const char *rest = "X-Tokend-Tenant: acme\r\nX-Tokend-Account: globex\r\n";
    static const struct {
        const char *head, *tail; /* before and after the client ID's header */
        uint32_t item;
        bool ok;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\n", "X-Tokend-Roles: editor,viewer\r\nContent-Length: 0\r\n\r\n", 0,
         true},
        {"HTTP/1.1 401 Unauthorized\r\n", "Content-Length: 0\r\n\r\n", 0, false},
        {"HTTP/1.1 204 No Content\r\n", "X-Tokend-Roles: viewer,editor\r\n\r\n", 0, false},
        {"HTTP/1.1 200 OK\r\n", "X-Tokend-Roles: viewer\r\nContent-Length: 0\r\n\r\n", 0, false},
        {"HTTP/1.1 200 OK\r\n", "X-Tokend-Roles: viewer,editor,admin\r\nContent-Length: 0\r\n\r\n",
         0, false},
        {"HTTP/1.1 200 OK\r\n", "Content-Length: 0\r\n\r\n", 0, false},
        {"HTTP/1.1 200 OK\r\n", "X-Tokend-Roles: viewer,editor\r\nContent-Length: 2\r\n\r\n{}", 0,
         false},
        {"HTTP/1.1 200 OK\r\nConnection: close\r\n",
         "X-Tokend-Roles: viewer,editor\r\nContent-Length: 0\r\n\r\n", 0, false},
        /* the unknown secret (item 1): 401 only */
        {"HTTP/1.1 401 Unauthorized\r\n", "Content-Length: 0\r\n\r\n", 1, true},
        {"HTTP/1.1 200 OK\r\n", "X-Tokend-Roles: viewer,editor\r\nContent-Length: 0\r\n\r\n", 1,
         false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char resp[1024];
        snprintf(resp, sizeof resp, "%s%s%s%s", cases[i].head, id_hdr, rest, cases[i].tail);
        bool ok = !cases[i].ok;
        long k = d.parse(l, (const uint8_t *)resp, strlen(resp), cases[i].item, 1, &ok);
        assert_int_equal(k, (long)strlen(resp));
        if (ok != cases[i].ok)
            fail_msg("case %zu: judged %s: %s", i, ok ? "right" : "wrong", resp);
    }
    /* another token's client ID, a tenant twice */
    char resp[1024];
    snprintf(resp, sizeof resp,
             "HTTP/1.1 200 OK\r\nX-Tokend-Client-Id: %s\r\n%sX-Tokend-Roles: viewer,editor\r\n"
             "Content-Length: 0\r\n\r\n",
             t.client_id[1], rest);
    bool ok = true;
    assert_true(d.parse(l, (const uint8_t *)resp, strlen(resp), 0, 1, &ok) > 0);
    assert_false(ok);
    snprintf(resp, sizeof resp,
             "HTTP/1.1 200 OK\r\n%sX-Tokend-Tenant: other\r\n%sX-Tokend-Roles: viewer,editor\r\n"
             "Content-Length: 0\r\n\r\n",
             id_hdr, rest);
    ok = true;
    assert_true(d.parse(l, (const uint8_t *)resp, strlen(resp), 0, 1, &ok) > 0);
    assert_false(ok);
    /* a chunked response stops the connection */
    const char *chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_int_equal(d.parse(l, (const uint8_t *)chunked, strlen(chunked), 0, 1, &ok), -1);
    d.local_free(l);
    /* every response parsed is counted by its status */
    assert_int_equal(x->counts[200 - HTP_STATUS_MIN], 9);
    assert_int_equal(x->counts[401 - HTP_STATUS_MIN], 2);
    assert_int_equal(x->counts[204 - HTP_STATUS_MIN], 1);

    /* a peer: its expected status, or any 2xx */
    static const struct {
        int expect, status;
        bool ok;
    } peer[] = {{204, 204, true}, {204, 200, false}, {0, 200, true}, {0, 204, true},
                {0, 302, false}, {0, 500, false},   {401, 401, true}};
    for (size_t i = 0; i < sizeof peer / sizeof peer[0]; i++) {
        assert_int_equal(htp_init(x, &t, "http://[::1]:81/", false, peer[i].expect), 0);
        htp_driver(x, &d);
        l = d.local_new(d.ctx);
        snprintf(resp, sizeof resp, "HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n", peer[i].status);
        ok = !peer[i].ok;
        assert_true(d.parse(l, (const uint8_t *)resp, strlen(resp), 0, 1, &ok) > 0);
        if (ok != peer[i].ok)
            fail_msg("peer case %zu: judged %s", i, ok ? "right" : "wrong");
        d.local_free(l);
    }
    assert_int_equal(htp_init(x, &t, "http://a/", false, 100), -1);
    free(x);
    work_tokens_free(&t);
}

/* ---- workload ------------------------------------------------------------- */

static void picker_mixes_and_skews(void **state)
{
    (void)state;
    char *dir = tkt_mkdtemp(), *path = tkt_path(dir, "tokens");
    work_tokens t, back;
    work_tokens_alloc(&t, 1000, "acme", "globex", "viewer,editor");
    for (size_t i = 0; i < t.n; i++) {
        tk_id id;
        uint8_t hash[TK_HASH_LEN];
        secret_new_id(&id);
        secret_generate(TK_KIND_TOKEN, &id, t.secret[i], hash);
    }
    assert_int_equal(work_tokens_index(&t), 0);
    assert_int_equal(work_tokens_save(path, &t), 0);
    assert_int_equal(work_tokens_read(path, 64, &back), 0);
    assert_int_equal(back.n, 1000);
    assert_int_equal(back.ninvalid, 64);
    assert_string_equal(back.tenant, "acme");
    assert_string_equal(back.account, "globex");
    assert_string_equal(back.roles, "viewer,editor");
    for (size_t i = 0; i < t.n; i++) {
        assert_string_equal(back.secret[i], t.secret[i]);
        assert_string_equal(back.client_id[i], t.client_id[i]);
    }

    work_pick p;
    uint64_t rng = 1;
    enum { DRAWS = 200000 };
    assert_int_equal(work_pick_init(&p, &back, 0.25, 0), 0);
    size_t invalid = 0;
    for (int i = 0; i < DRAWS; i++)
        invalid += work_pick_next(&p, &rng) >= 1000;
    assert_true(invalid > DRAWS * 0.24 && invalid < DRAWS * 0.26);
    work_pick_free(&p);

    assert_int_equal(work_pick_init(&p, &back, 0, 1.0), 0);
    size_t first = 0, last = 0;
    for (int i = 0; i < DRAWS; i++) {
        uint32_t k = work_pick_next(&p, &rng);
        assert_true(k < 1000);
        first += k == 0;
        last += k == 999;
    }
    /* Zipf(1) over 1000: item 0 has weight 1/H(1000) ~ 13 %, item 999 ~ 0.013 % */
    assert_true(first > DRAWS / 10 && first < DRAWS / 6);
    assert_true(last < DRAWS / 1000);
    work_pick_free(&p);
    assert_int_equal(work_pick_init(&p, &t, 0.5, 0), -1); /* no unknown secrets to draw */

    work_tokens_free(&t);
    work_tokens_free(&back);
    tkt_rmdir(dir);
    free(path);
    free(dir);
}

static void tokens_file_refuses_garbage(void **state)
{
    (void)state;
    char *dir = tkt_mkdtemp(), *path = tkt_path(dir, "tokens");
    work_tokens t;
    const char *nohdr = "tkt_notasecret\n";
    assert_int_equal(tkt_write_file(path, nohdr, strlen(nohdr)), 0);
    assert_int_equal(work_tokens_read(path, 0, &t), -1);
    char body[256];
    snprintf(body, sizeof body, "# tokenbench tenant=a account=b roles=c\n%.76s\n",
             "tkt_0000000000000000000000000000000000000000000000000000000000000000000000x");
    assert_int_equal(tkt_write_file(path, body, strlen(body)), 0);
    assert_int_equal(work_tokens_read(path, 0, &t), -1); /* bad checksum */
    tkt_rmdir(dir);
    free(path);
    free(dir);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hist_buckets_bound_values),
        cmocka_unit_test(hist_quantiles_are_close_and_never_below),
        cmocka_unit_test(resp_whole_and_split),
        cmocka_unit_test(resp_refuses_what_is_not_resp2),
        cmocka_unit_test(resp_command_round_trip),
        cmocka_unit_test(http_whole_and_split),
        cmocka_unit_test(http_headers_by_name),
        cmocka_unit_test(http_refuses_what_it_cannot_frame),
        cmocka_unit_test(http_url_splits),
        cmocka_unit_test(http_driver_checks_answers),
        cmocka_unit_test(picker_mixes_and_skews),
        cmocka_unit_test(tokens_file_refuses_garbage),
    };
    return cmocka_run_group_tests_name("tbunits", tests, NULL, NULL);
}
