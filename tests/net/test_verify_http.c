/*
 * test_verify_http.c - the verify listener (--http-verify, net/vhttp.c,
 * net/h1.c, process_http in net/conn.c) end to end against the real
 * bin/tokend, written from its contract: docs/http.md ("Gateway
 * verification", "The verify listener") and docs/gateways.md ("Listeners:
 * who reaches what").
 *
 * Each test starts the server with a fresh data directory (raw.h starts it
 * with --http and --http-verify on free loopback ports), builds a small
 * world through the JSON API of the main HTTP listener, then drives the
 * verify listener with HTTP written by hand: its answers must be the main
 * listener's for the same request (parity), keep-alive and pipelining
 * must hold, bad input must be refused with the documented status and a
 * close, and every listener must serve after it (alive()).
 *
 * The world: tenant acme (API tokens on) with roles admin (level 0:
 * orders:read, orders:write) and viewer (level 5: orders:read), account
 * bigco with alice (viewer, portal) and carol (admin and viewer, portal);
 * alice's token (viewer), carol's token (admin and viewer), and the secret
 * of a token of alice's that was deleted (unknown).
 *
 * Responses are read with a buffered reader of this file (not hraw_read):
 * a pipeline's answers are taken one by one from the same buffer, and the
 * answer to a HEAD is a head alone whatever its Content-Length. Every read
 * has a deadline; runs with TKT_TLS over TLS unchanged (raw.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/mp.h"
#include "net/proto.h"
#include "tests/support/hraw.h"
#include "tests/support/japi.h"
#include "tests/support/raw.h"
#include "tests/support/tkt.h"

#define TEST_SECONDS 40  /* the watchdog, per test */
#define READ_MS 5000     /* an answer that should come */
#define CLOSE_MS 3000    /* a close that should come (--http-timeout 1: ~1-2 s) */

typedef struct world {
    raw_server srv;
    char op_key[128];
    char op[200];          /* "Authorization: Bearer <operator key>" */
    char alice[200];       /* ... alice's personal key */
    char alice_pk[128];
    char carol[200];
    char secret[128];      /* alice's token (viewer) */
    char client_id[64];
    char wide[128];        /* carol's token (admin, viewer) */
    char wide_id[64];
    char gone[128];        /* a deleted token's secret */
} world;

static world W;

/* ---- the world ------------------------------------------------------------ */

static void bearer(char *out, size_t cap, const char *key)
{
    snprintf(out, cap, "Authorization: Bearer %s", key);
}

static void expect(const char *auth, const char *method, const char *path, const char *body,
                   int status)
{
    const char *h[] = {auth, NULL};
    japi_expect(W.srv.http_port, h, method, path, body, status);
}

static void get_str(json_t *j, const char *k, char *out, size_t cap)
{
    const char *v = json_string_value(json_object_get(j, k));
    assert_non_null(v);
    snprintf(out, cap, "%s", v);
}

/* A token of the user whose Authorization line is auth, with roles (JSON). */
static void make_token(const char *auth, const char *roles, char *secret, size_t scap, char *id,
                       size_t icap)
{
    char body[200];
    const char *h[] = {auth, NULL};
    json_t *j;
    snprintf(body, sizeof body, "{\"description\":\"gw\",\"roles\":%s}", roles);
    assert_int_equal(japi_call(W.srv.http_port, h, "POST", "/v1/tokens", body, &j, NULL), 201);
    get_str(j, "secret", secret, scap);
    get_str(j, "client_id", id, icap);
    json_decref(j);
}

static void start(const char *const *extra)
{
    memset(&W, 0, sizeof W);
    assert_int_equal(raw_server_start(&W.srv, NULL, extra), 0);
    assert_true(W.srv.http_port > 0);
    assert_true(W.srv.verify_port > 0);
    assert_int_equal(raw_read_key(&W.srv, "operator.key", W.op_key, sizeof W.op_key), 0);
    bearer(W.op, sizeof W.op, W.op_key);
    expect(W.op, "POST", "/v1/tenants", "{\"tenant\":\"acme\"}", 201);
    expect(W.op, "PATCH", "/v1/tenants/acme", "{\"api_tokens\":true}", 200);
    expect(W.op, "PUT", "/v1/tenants/acme/roles/admin",
           "{\"level\":0,\"permissions\":[\"orders:read\",\"orders:write\"]}", 200);
    expect(W.op, "PUT", "/v1/tenants/acme/roles/viewer",
           "{\"level\":5,\"permissions\":[\"orders:read\"]}", 200);
    expect(W.op, "POST", "/v1/tenants/acme/accounts", "{\"account\":\"bigco\"}", 201);
    japi_user(W.srv.http_port, W.op, "acme", "bigco", "alice", "[\"viewer\"]", true, W.alice,
              sizeof W.alice, W.alice_pk, sizeof W.alice_pk);
    japi_user(W.srv.http_port, W.op, "acme", "bigco", "carol", "[\"admin\",\"viewer\"]", true,
              W.carol, sizeof W.carol, NULL, 0);
    make_token(W.alice, "[\"viewer\"]", W.secret, sizeof W.secret, W.client_id,
               sizeof W.client_id);
    make_token(W.carol, "[\"admin\",\"viewer\"]", W.wide, sizeof W.wide, W.wide_id,
               sizeof W.wide_id);
    char gone_id[64], path[128];
    make_token(W.alice, "[\"viewer\"]", W.gone, sizeof W.gone, gone_id, sizeof gone_id);
    snprintf(path, sizeof path, "/v1/tokens/%s", gone_id);
    expect(W.alice, "DELETE", path, NULL, 200);
}

static int setup_with(const char *const *extra)
{
    raw_watchdog(TEST_SECONDS);
    start(extra);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    return setup_with(NULL);
}

static int setup_small(void **state)
{
    (void)state;
    static const char *const extra[] = {"--http-max-body", "1024", "--http-max-headers", "2048",
                                        NULL};
    return setup_with(extra);
}

static int setup_timeout(void **state)
{
    (void)state;
    static const char *const extra[] = {"--http-timeout", "1", NULL};
    return setup_with(extra);
}

static int setup_cap(void **state)
{
    (void)state;
    static const char *const extra[] = {"--http-max-connections", "4", NULL};
    return setup_with(extra);
}

static int setup_gwkey(void **state)
{
    (void)state;
    static const char *const extra[] = {"--require-gateway-key", NULL};
    return setup_with(extra);
}

/* The server stops cleanly after every test: exit 0 (under the sanitizers,
 * also no report). */
static int teardown(void **state)
{
    (void)state;
    int rc = W.srv.pid > 0 ? raw_server_stop(&W.srv) : 0;
    if (rc != 0) {
        size_t n;
        char *log = (char *)tkt_read_file(W.srv.log, &n);
        fprintf(stderr, "# the server exited %d; its log:\n%.*s\n", rc,
                (int)(n > 8000 ? 8000 : n), log ? log : "");
        free(log);
    }
    raw_server_free(&W.srv);
    raw_watchdog(0);
    return rc == 0 ? 0 : -1;
}

/* ---- a buffered HTTP client ---------------------------------------------- */

enum { RD_EOF = -1, RD_TIMEOUT = -2, RD_BAD = -3 };

typedef struct hc {
    int fd;
    char *buf;
    size_t n, cap;
    size_t got;           /* bytes ever received */
} hc;

static void hc_open(hc *c, int port)
{
    memset(c, 0, sizeof *c);
    c->fd = raw_connect(port);
    assert_true(c->fd >= 0);
}

static void hc_close(hc *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

static void hc_send(hc *c, const void *p, size_t n)
{
    assert_int_equal(raw_write(c->fd, p, n), 0);
}

static void hc_sends(hc *c, const char *s)
{
    hc_send(c, s, strlen(s));
}

/* One read before the deadline: 0, RD_EOF or RD_TIMEOUT. */
static int hc_fill(hc *c, int64_t deadline)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 65536;
        c->buf = realloc(c->buf, c->cap + 1);
        assert_non_null(c->buf);
    }
    int64_t left = deadline - tkt_now_ms();
    if (left <= 0)
        return RD_TIMEOUT;
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    int pr = poll(&p, 1, (int)left);
    if (pr < 0 && errno == EINTR)
        return 0;
    if (pr <= 0)
        return RD_TIMEOUT;
    ssize_t k = read(c->fd, c->buf + c->n, c->cap - c->n);
    if (k < 0 && errno == EINTR)
        return 0;
    if (k <= 0)
        return RD_EOF;
    c->n += (size_t)k;
    c->got += (size_t)k;
    return 0;
}

/* Reads one response: the head (r->head: the status line and the header
 * lines, as hraw.h keeps it, so hraw_header works), then Content-Length
 * bytes of body unless head_only (the answer to a HEAD). 0, RD_EOF,
 * RD_TIMEOUT or RD_BAD. */
static int hc_read(hc *c, bool head_only, int timeout_ms, hraw_resp *r)
{
    int64_t deadline = tkt_now_ms() + timeout_ms;
    memset(r, 0, sizeof *r);
    for (;;) {
        char *end = c->n ? memmem(c->buf, c->n, "\r\n\r\n", 4) : NULL;
        if (end) {
            size_t hl = (size_t)(end - c->buf) + 4, body = 0;
            r->head = strndup(c->buf, hl - 2);
            char v[32];
            if (!head_only && hraw_header(r, "Content-Length", v, sizeof v))
                body = strtoul(v, NULL, 10);
            if (body > (8u << 20)) {
                hraw_free(r);
                return RD_BAD;
            }
            while (c->n < hl + body) {
                int rc = hc_fill(c, deadline);
                if (rc) {
                    hraw_free(r);
                    return rc;
                }
            }
            r->body = malloc(body + 1);
            memcpy(r->body, c->buf + hl, body);
            r->body[body] = 0;
            r->body_len = body;
            memmove(c->buf, c->buf + hl + body, c->n - hl - body);
            c->n -= hl + body;
            if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1) {
                hraw_free(r);
                return RD_BAD;
            }
            return 0;
        }
        int rc = hc_fill(c, deadline);
        if (rc)
            return rc;
    }
}

/* True when the peer closes within timeout_ms (whatever it sends first). */
static bool hc_closed(hc *c, int timeout_ms)
{
    int64_t deadline = tkt_now_ms() + timeout_ms;
    for (;;) {
        c->n = 0;
        int rc = hc_fill(c, deadline);
        if (rc == RD_EOF)
            return true;
        if (rc == RD_TIMEOUT)
            return false;
    }
}

/* A request: "METHOD path HTTP/1.1", Host, the header lines (NULL-
 * terminated, may be NULL), the blank line. Its length. */
static size_t mkreq(char *b, size_t cap, const char *method, const char *path,
                    const char *const *h)
{
    int n = snprintf(b, cap, "%s %s HTTP/1.1\r\nHost: tokend\r\n", method, path);
    for (; h && *h; h++)
        n += snprintf(b + n, cap - (size_t)n, "%s\r\n", *h);
    n += snprintf(b + n, cap - (size_t)n, "\r\n");
    assert_true((size_t)n < cap);
    return (size_t)n;
}

/* The port fd is connected to (TKT_TLS: 0, a socketpair). */
static int port_of(int fd)
{
    struct sockaddr_in a;
    socklen_t n = sizeof a;
    if (getpeername(fd, (struct sockaddr *)&a, &n) != 0 || a.sin_family != AF_INET)
        return 0;
    return ntohs(a.sin_port);
}

/* Sends a request on c and reads its answer (asserted): the status. */
static int ask(hc *c, const char *method, const char *path, const char *const *h, hraw_resp *r)
{
    char b[8192];
    size_t n = mkreq(b, sizeof b, method, path, h);
    hc_send(c, b, n);
    hraw_resp tmp;
    hraw_resp *p = r ? r : &tmp;
    int rc = hc_read(c, strcmp(method, "HEAD") == 0, READ_MS, p);
    if (rc)
        fail_msg("%s %s: no answer (%d) on the connection to port %d", method, path, rc,
                 port_of(c->fd));
    int st = p->status;
    if (!r)
        hraw_free(p);
    return st;
}

/* The same on a new connection to port. */
static int ask_once(int port, const char *method, const char *path, const char *const *h,
                    hraw_resp *r)
{
    hc c;
    hc_open(&c, port);
    int st = ask(&c, method, path, h, r);
    hc_close(&c);
    return st;
}

/* A verification of secret (Bearer) on c: the status. */
static int verify_on(hc *c, const char *secret, const char *path, hraw_resp *r)
{
    char h[300];
    bearer(h, sizeof h, secret);
    const char *hs[] = {h, NULL};
    return ask(c, "GET", path, hs, r);
}

static int vgw(const char *secret)
{
    hc c;
    hc_open(&c, W.srv.verify_port);
    int st = verify_on(&c, secret, "/v1/verify", NULL);
    hc_close(&c);
    return st;
}

static void hdr(const hraw_resp *r, const char *name, const char *want)
{
    char v[1024];
    if (!hraw_header(r, name, v, sizeof v))
        fail_msg("no %s in:\n%s", name, r->head);
    if (strcmp(v, want) != 0)
        fail_msg("%s: \"%s\", expected \"%s\" in:\n%s", name, v, want, r->head);
}

static bool has_hdr(const hraw_resp *r, const char *name)
{
    char v[8];
    return hraw_header(r, name, v, sizeof v);
}

/* An answer that keeps the connection does not say Connection: close. */
static void not_closing(const hraw_resp *r)
{
    char v[64];
    if (hraw_header(r, "Connection", v, sizeof v) && strcasecmp(v, "close") == 0)
        fail_msg("Connection: close on an answer that keeps the connection:\n%s", r->head);
}

static json_t *body_json(const hraw_resp *r)
{
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    if (!j)
        fail_msg("not JSON: \"%s\"", r->body ? r->body : "");
    return j;
}

/* r's body is {"error": code, "message": a string, ...}. */
static void error_is(const hraw_resp *r, const char *code)
{
    json_t *j = body_json(r);
    const char *e = json_string_value(json_object_get(j, "error"));
    if (!e || strcmp(e, code) != 0)
        fail_msg("error \"%s\", expected \"%s\": %s", e ? e : "(none)", code, r->body);
    assert_true(json_is_string(json_object_get(j, "message")));
    json_decref(j);
}

/* Every answer of the verify listener has Date and Content-Length. */
static void framed(const hraw_resp *r)
{
    if (!has_hdr(r, "Date") || !has_hdr(r, "Content-Length"))
        fail_msg("no Date or Content-Length:\n%s", r->head);
}

/* Every listener still serves: a verification on the verify listener and
 * on the main one, and a binary PING. */
static void alive(void)
{
    assert_int_equal(vgw(W.secret), 200);
    char h[300];
    bearer(h, sizeof h, W.secret);
    const char *hs[] = {h, NULL};
    assert_int_equal(ask_once(W.srv.http_port, "GET", "/v1/verify", hs, NULL), 200);
    assert_int_equal(raw_ping(W.srv.port), 0);
}

/* ---- /metrics, on the main listener ---------------------------------------- */

static long metric(const char *text, const char *line_start)
{
    const char *p = text;
    size_t n = strlen(line_start);
    while ((p = strstr(p, line_start))) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return atol(p + n + 1);
        p += n;
    }
    return -1;
}

static char *metrics_text(void)
{
    hraw_resp r;
    assert_int_equal(ask_once(W.srv.http_port, "GET", "/metrics", NULL, &r), 200);
    char *t = r.body;
    r.body = NULL;
    hraw_free(&r);
    return t;
}

/* ---- parity with the main listener ----------------------------------------- */

/* Appends each X-Tokend-* header name of r (lowercased) to names[]. */
static void tokend_names(const hraw_resp *r, char names[][64], int *n, int cap)
{
    for (const char *p = strstr(r->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2, *colon = strchr(line, ':');
        if (!colon || strncasecmp(line, "X-Tokend-", 9) != 0 || colon - line >= 64)
            continue;
        char name[64];
        size_t k = (size_t)(colon - line);
        for (size_t i = 0; i < k; i++)
            name[i] = (char)(line[i] >= 'A' && line[i] <= 'Z' ? line[i] + 32 : line[i]);
        name[k] = 0;
        bool dup = false;
        for (int i = 0; i < *n; i++)
            dup |= strcmp(names[i], name) == 0;
        if (!dup && *n < cap)
            snprintf(names[(*n)++], 64, "%s", name);
    }
}

/* Fails, saying how (both answers freed first: a failed test leaks nothing). */
static void differ(const char *what, const char *method, const char *path, hraw_resp *m,
                   hraw_resp *v)
{
    print_error("%s %s: %s differs\n--- main listener:\n%s\n%s\n--- verify listener:\n%s\n%s\n",
                method, path, what, m->head, m->body, v->head, v->body);
    hraw_free(m);
    hraw_free(v);
    fail();
}

/* The request on a new connection to each listener: the verify
 * listener's status, X-Tokend-* headers, WWW-Authenticate, Cache-Control
 * and body must be the main listener's. The verify listener's answer in
 * *vr (the caller frees it). */
static void both(const char *method, const char *path, const char *const *h, hraw_resp *vr)
{
    hraw_resp mr;
    ask_once(W.srv.http_port, method, path, h, &mr);
    ask_once(W.srv.verify_port, method, path, h, vr);
    if (mr.status != vr->status)
        differ("the status", method, path, &mr, vr);
    if (mr.body_len != vr->body_len || memcmp(mr.body, vr->body, mr.body_len) != 0)
        differ("the body", method, path, &mr, vr);
    char names[40][64];
    int n = 0;
    tokend_names(&mr, names, &n, 36);
    tokend_names(vr, names, &n, 36);
    snprintf(names[n++], 64, "www-authenticate");
    snprintf(names[n++], 64, "cache-control");
    for (int i = 0; i < n; i++) {
        char a[1024], b[1024];
        bool ha = hraw_header(&mr, names[i], a, sizeof a), hb = hraw_header(vr, names[i], b,
                                                                            sizeof b);
        if (ha != hb || (ha && strcmp(a, b) != 0))
            differ(names[i], method, path, &mr, vr);
    }
    framed(vr);
    hraw_free(&mr);
}

/* both(), then the documented answer: status, X-Tokend-Reason, and for a
 * 401 the challenge and {"valid":false,"reason":R}, for a 200 an empty
 * body; never cached. */
static void parity(const char *method, const char *path, const char *const *h, int status,
                   const char *reason, hraw_resp *keep)
{
    hraw_resp r;
    both(method, path, h, &r);
    if (r.status != status)
        fail_msg("%s %s: %d, expected %d\n%s\n%s", method, path, r.status, status, r.head,
                 r.body);
    hdr(&r, "X-Tokend-Reason", reason);
    hdr(&r, "Cache-Control", "no-store");
    if (status == 401) {
        hdr(&r, "WWW-Authenticate", "Bearer realm=\"tokend\"");
        json_t *j = body_json(&r);
        assert_true(json_is_false(json_object_get(j, "valid")));
        assert_string_equal(json_string_value(json_object_get(j, "reason")), reason);
        json_decref(j);
    } else if (status == 200) {
        assert_int_equal(r.body_len, 0);
        hdr(&r, "Content-Length", "0");
        assert_false(has_hdr(&r, "WWW-Authenticate"));
    }
    if (keep)
        *keep = r;
    else
        hraw_free(&r);
}


static void basic(char *h, size_t cap, const char *id, const char *secret)
{
    char pair[300], enc[420];
    snprintf(pair, sizeof pair, "%s:%s", id, secret);
    tkt_base64(pair, enc);
    snprintf(h, cap, "Authorization: Basic %s", enc);
}

/* Splits a comma-separated header value; true when it is exactly the set
 * want (NULL-terminated), without spaces. */
static bool list_is(const char *v, const char *const *want)
{
    if (strchr(v, ' '))
        return false;
    char copy[512];
    snprintf(copy, sizeof copy, "%s", v);
    int n = 0, k = 0;
    while (want[k])
        k++;
    for (char *save, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        bool in = false;
        for (int i = 0; i < k; i++)
            in |= strcmp(t, want[i]) == 0;
        if (!in)
            return false;
        n++;
    }
    return n == k;
}

static void parity_credentials(void **state)
{
    (void)state;
    hraw_resp r;
    char h[600], h2[600], v[512];

    /* a valid token: 200 and who it is */
    bearer(h, sizeof h, W.secret);
    const char *valid[] = {h, NULL};
    parity("GET", "/v1/verify", valid, 200, "valid", &r);
    hdr(&r, "X-Tokend-Tenant", "acme");
    hdr(&r, "X-Tokend-Account", "bigco");
    hdr(&r, "X-Tokend-Client-Id", W.client_id);
    hdr(&r, "X-Tokend-Roles", "viewer");
    hdr(&r, "X-Tokend-Permissions", "orders:read");
    hraw_free(&r);
    /* two roles: comma-separated, no spaces */
    bearer(h2, sizeof h2, W.wide);
    const char *wide[] = {h2, NULL};
    parity("GET", "/v1/verify", wide, 200, "valid", &r);
    hdr(&r, "X-Tokend-Client-Id", W.wide_id);
    static const char *const roles[] = {"admin", "viewer", NULL};
    static const char *const perms[] = {"orders:read", "orders:write", NULL};
    assert_true(hraw_header(&r, "X-Tokend-Roles", v, sizeof v));
    if (!list_is(v, roles))
        fail_msg("X-Tokend-Roles: \"%s\"", v);
    assert_true(hraw_header(&r, "X-Tokend-Permissions", v, sizeof v));
    if (!list_is(v, perms))
        fail_msg("X-Tokend-Permissions: \"%s\"", v);
    hraw_free(&r);

    /* unknown (deleted), malformed, a personal key, none */
    bearer(h, sizeof h, W.gone);
    parity("GET", "/v1/verify", valid, 401, "unknown", NULL);
    bearer(h, sizeof h, "tkt_nope");
    parity("GET", "/v1/verify", valid, 401, "malformed", NULL);
    bearer(h, sizeof h, W.alice_pk);
    parity("GET", "/v1/verify", valid, 401, "wrong_kind", NULL);
    parity("GET", "/v1/verify", NULL, 401, "missing", NULL);
    const char *other[] = {"X-Other: 1", NULL};
    parity("GET", "/v1/verify", other, 401, "missing", NULL);

    /* Basic: the pair, an empty client ID, another token's ID, undecodable */
    basic(h, sizeof h, W.client_id, W.secret);
    parity("GET", "/v1/verify", valid, 200, "valid", &r);
    hdr(&r, "X-Tokend-Client-Id", W.client_id);
    hraw_free(&r);
    basic(h, sizeof h, "", W.secret);
    parity("GET", "/v1/verify", valid, 200, "valid", NULL);
    basic(h, sizeof h, W.wide_id, W.secret);
    parity("GET", "/v1/verify", valid, 401, "mismatch", NULL);
    snprintf(h, sizeof h, "Authorization: Basic !!!notbase64");
    parity("GET", "/v1/verify", valid, 401, "malformed", NULL);
    snprintf(h, sizeof h, "Authorization: Basic bm9jb2xvbg=="); /* "nocolon" */
    parity("GET", "/v1/verify", valid, 401, "malformed", NULL);

    /* X-API-Key */
    snprintf(h, sizeof h, "X-API-Key: %s", W.secret);
    parity("GET", "/v1/verify", valid, 200, "valid", &r);
    hdr(&r, "X-Tokend-Client-Id", W.client_id);
    hraw_free(&r);
    snprintf(h, sizeof h, "X-API-Key: %s", W.alice_pk);
    parity("GET", "/v1/verify", valid, 401, "wrong_kind", NULL);
    /* the order: Bearer before X-API-Key */
    snprintf(h, sizeof h, "Authorization: Bearer tkt_nope");
    snprintf(h2, sizeof h2, "X-API-Key: %s", W.secret);
    const char *two[] = {h, h2, NULL};
    parity("GET", "/v1/verify", two, 401, "malformed", NULL);
}

static void parity_permissions(void **state)
{
    (void)state;
    hraw_resp r;
    char h[300];
    bearer(h, sizeof h, W.secret);
    const char *hs[] = {h, NULL};
    parity("GET", "/v1/verify?permission=orders:read", hs, 200, "valid", NULL);
    parity("GET", "/v1/verify?permission=orders%3Aread&other=1", hs, 200, "valid", NULL);
    static const struct {
        const char *path, *missing;
    } lacking[] = {
        {"/v1/verify?permission=orders:write", "orders:write"},
        {"/v1/verify/x?permission=orders:read&permission=orders:write", "orders:write"},
        {"/v1/verify?x&permission=orders:write", "orders:write"},
        {"/v1/verify?permission=orders%3Awrite", "orders:write"},
        {"/v1/verify?permission", NULL},
    };
    for (size_t i = 0; i < sizeof lacking / sizeof lacking[0]; i++) {
        parity("GET", lacking[i].path, hs, 403, "permission", &r);
        json_t *j = body_json(&r);
        assert_string_equal(json_string_value(json_object_get(j, "error")), "denied");
        assert_true(json_is_string(json_object_get(j, "message")));
        if (lacking[i].missing)
            assert_string_equal(json_string_value(json_object_get(j, "permission")),
                                lacking[i].missing);
        json_decref(j);
        assert_false(has_hdr(&r, "X-Tokend-Tenant"));
        hraw_free(&r);
    }
    /* the header, comma-separated and repeatable */
    const char *one[] = {h, "X-Tokend-Require-Permission: orders:read", NULL};
    parity("GET", "/v1/verify", one, 200, "valid", NULL);
    const char *list[] = {h, "X-Tokend-Require-Permission: orders:read, orders:write", NULL};
    parity("GET", "/v1/verify", list, 403, "permission", &r);
    json_t *j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "permission")), "orders:write");
    json_decref(j);
    hraw_free(&r);
    const char *rep[] = {h, "X-Tokend-Require-Permission: orders:read",
                         "X-Tokend-Require-Permission: orders:write", NULL};
    parity("GET", "/v1/verify", rep, 403, "permission", NULL);
    /* carol's token has both */
    bearer(h, sizeof h, W.wide);
    parity("GET", "/v1/verify?permission=orders:write", hs, 200, "valid", NULL);
    parity("GET", "/v1/verify", list, 200, "valid", NULL);
    /* a permission check never rescues an invalid token */
    bearer(h, sizeof h, W.gone);
    parity("GET", "/v1/verify?permission=orders:read", hs, 401, "unknown", NULL);
}

static void parity_methods_and_paths(void **state)
{
    (void)state;
    hraw_resp r;
    char h[300];
    bearer(h, sizeof h, W.secret);
    const char *hs[] = {h, "Content-Length: 0", NULL};
    parity("POST", "/v1/verify/orders/7?x=1", hs, 200, "valid", NULL);
    parity("DELETE", "/v1/verify/", hs, 200, "valid", NULL);
    parity("PUT", "/v1/verify/a/b/c", hs, 200, "valid", NULL);
    parity("PATCH", "/v1/verify", hs, 200, "valid", NULL);
    parity("OPTIONS", "/v1/verify", hs, 200, "valid", NULL);
    parity("POST", "/v1/verify", hs, 200, "valid", NULL); /* no body: a header verification */
    const char *bad[] = {"Authorization: Bearer tkt_nope", NULL};
    parity("POST", "/v1/verify/orders/7?x=1", bad, 401, "malformed", NULL);

    /* anything else: 404 not_found, with any credential */
    static const char *const paths[] = {"/v1/verifyx", "/", "/metrics", "/v1/tokens",
                                        "/v1/ping", "/healthz", "/readyz", "/portal/",
                                        "/v1/tenants", "/v1/verifyx/a", "/v2/verify",
                                        "/V1/verify"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        const char *ah[] = {h, NULL};
        assert_int_equal(ask_once(W.srv.verify_port, "GET", paths[i], ah, &r), 404);
        error_is(&r, "not_found");
        framed(&r);
        hraw_free(&r);
    }
    /* the JSON API is not there, even with the operator key */
    const char *op[] = {W.op, NULL};
    assert_int_equal(ask_once(W.srv.verify_port, "GET", "/v1/tenants", op, &r), 404);
    error_is(&r, "not_found");
    hraw_free(&r);
    const char *post[] = {W.op, "Content-Type: application/json", "Content-Length: 17", NULL};
    hc c;
    hc_open(&c, W.srv.verify_port);
    char b[1024];
    size_t n = mkreq(b, sizeof b, "POST", "/v1/tenants", post);
    memcpy(b + n, "{\"tenant\":\"evil\"}", 17);
    hc_send(&c, b, n + 17);
    assert_int_equal(hc_read(&c, false, READ_MS, &r), 0);
    assert_int_equal(r.status, 404);
    error_is(&r, "not_found");
    hraw_free(&r);
    /* a 404 does not end the connection */
    assert_int_equal(verify_on(&c, W.secret, "/v1/verify", NULL), 200);
    hc_close(&c);
    assert_int_equal(ask_once(W.srv.http_port, "GET", "/v1/tenants/evil", op, NULL), 404);
    /* the main listener's metrics are still on the main listener */
    assert_int_equal(ask_once(W.srv.http_port, "GET", "/metrics", NULL, NULL), 200);
}

/* ---- changes are seen at once ------------------------------------------------ */

static void reason_is(const hraw_resp *r, int status, const char *reason)
{
    if (r->status != status)
        fail_msg("%d, expected %d: %s", r->status, status, r->body);
    hdr(r, "X-Tokend-Reason", reason);
    if (status == 401) {
        json_t *j = body_json(r);
        assert_string_equal(json_string_value(json_object_get(j, "reason")), reason);
        json_decref(j);
    }
}

static void revocation_on_open_connection(void **state)
{
    (void)state;
    hraw_resp r;
    hc c;
    hc_open(&c, W.srv.verify_port);
    assert_int_equal(verify_on(&c, W.secret, "/v1/verify", &r), 200);
    reason_is(&r, 200, "valid");
    hraw_free(&r);
    assert_int_equal(verify_on(&c, W.secret, "/v1/verify?permission=orders:write", NULL), 403);

    /* a role change, acknowledged, is seen by the next verification */
    expect(W.op, "PUT", "/v1/tenants/acme/roles/viewer",
           "{\"level\":5,\"permissions\":[\"orders:read\",\"orders:write\"]}", 200);
    assert_int_equal(verify_on(&c, W.secret, "/v1/verify?permission=orders:write", &r), 200);
    hdr(&r, "X-Tokend-Permissions", "orders:read,orders:write");
    hraw_free(&r);

    /* the delete, acknowledged: the very next verification on this
     * already-open connection is 401 unknown */
    char path[128];
    snprintf(path, sizeof path, "/v1/tokens/%s", W.client_id);
    expect(W.alice, "DELETE", path, NULL, 200);
    assert_int_equal(verify_on(&c, W.secret, "/v1/verify", &r), 401);
    reason_is(&r, 401, "unknown");
    hraw_free(&r);
    /* and on a new connection */
    assert_int_equal(vgw(W.secret), 401);

    /* the tenant's toggle: off is 401 disabled, on again 200 */
    make_token(W.alice, "[\"viewer\"]", W.secret, sizeof W.secret, W.client_id,
               sizeof W.client_id);
    assert_int_equal(verify_on(&c, W.secret, "/v1/verify", NULL), 200);
    expect(W.op, "PATCH", "/v1/tenants/acme", "{\"api_tokens\":false}", 200);
    assert_int_equal(verify_on(&c, W.secret, "/v1/verify", &r), 401);
    reason_is(&r, 401, "disabled");
    hraw_free(&r);
    assert_int_equal(verify_on(&c, W.wide, "/v1/verify", &r), 401);
    reason_is(&r, 401, "disabled");
    hraw_free(&r);
    expect(W.op, "PATCH", "/v1/tenants/acme", "{\"api_tokens\":true}", 200);
    assert_int_equal(verify_on(&c, W.secret, "/v1/verify", &r), 200);
    reason_is(&r, 200, "valid");
    hraw_free(&r);
    /* the connection was kept through all of it */
    assert_true(c.got > 0);
    hc_close(&c);
}

/* ---- keep-alive and pipelining --------------------------------------------- */

static void pipeline_200(void **state)
{
    (void)state;
    enum { N = 200 };
    static const int want[] = {200, 401, 404, 200, 401, 403, 404};
    size_t cap = 64u << 10, n = 0;
    char *b = malloc(cap);
    char ok[300], bad[] = "Authorization: Bearer tkt_nope";
    bearer(ok, sizeof ok, W.secret);
    bool head[N];
    for (int i = 0; i < N; i++) {
        const char *okh[] = {ok, NULL}, *badh[] = {bad, NULL};
        head[i] = false;
        switch (i % 7) {
        case 0: n += mkreq(b + n, cap - n, "GET", "/v1/verify", okh); break;
        case 1: n += mkreq(b + n, cap - n, "GET", "/v1/verify/x", badh); break;
        case 2: n += mkreq(b + n, cap - n, "GET", "/nothing", okh); break;
        case 3:
            n += mkreq(b + n, cap - n, "HEAD", "/v1/verify", okh);
            head[i] = true;
            break;
        case 4:
            n += mkreq(b + n, cap - n, "HEAD", "/v1/verify", badh);
            head[i] = true;
            break;
        case 5: n += mkreq(b + n, cap - n, "GET", "/v1/verify?permission=orders:write", okh); break;
        case 6:
            n += mkreq(b + n, cap - n, "HEAD", "/metrics", okh);
            head[i] = true;
            break;
        }
    }
    /* the 401's body, as a GET gets it: a HEAD's Content-Length says its length */
    char malformed_len[16];
    snprintf(malformed_len, sizeof malformed_len, "%zu",
             strlen("{\"valid\":false,\"reason\":\"malformed\"}") + 1);
    hc c;
    hc_open(&c, W.srv.verify_port);
    hc_send(&c, b, n); /* one write */
    for (int i = 0; i < N; i++) {
        hraw_resp r;
        int rc = hc_read(&c, head[i], READ_MS, &r);
        if (rc)
            fail_msg("answer %d of %d: none (%d)", i, N, rc);
        if (r.status != want[i % 7])
            fail_msg("answer %d: %d, expected %d\n%s\n%s", i, r.status, want[i % 7], r.head,
                     r.body);
        framed(&r);
        not_closing(&r);
        switch (i % 7) {
        case 0: hdr(&r, "X-Tokend-Client-Id", W.client_id); break;
        case 1: {
            json_t *j = body_json(&r);
            assert_string_equal(json_string_value(json_object_get(j, "reason")), "malformed");
            json_decref(j);
            break;
        }
        case 2: error_is(&r, "not_found"); break;
        case 3:
            hdr(&r, "Content-Length", "0");
            hdr(&r, "X-Tokend-Client-Id", W.client_id);
            break;
        case 4:
            hdr(&r, "Content-Length", malformed_len);
            hdr(&r, "X-Tokend-Reason", "malformed");
            break;
        case 5: hdr(&r, "X-Tokend-Reason", "permission"); break;
        case 6: {
            char v[32];
            assert_true(hraw_header(&r, "Content-Length", v, sizeof v));
            assert_true(atoi(v) > 0);
            break;
        }
        }
        hraw_free(&r);
    }
    /* nothing more came (a HEAD's body would be here), and the connection
     * stays open */
    assert_int_equal(c.n, 0);
    assert_int_equal(verify_on(&c, W.secret, "/v1/verify", NULL), 200);
    assert_int_equal(c.n, 0);
    hc_close(&c);
    free(b);
}

static void connection_semantics(void **state)
{
    (void)state;
    hraw_resp r;
    char b[1024];
    int n;
    hc c;

    /* HTTP/1.0: closed after the answer, which says so */
    hc_open(&c, W.srv.verify_port);
    n = snprintf(b, sizeof b, "GET /v1/verify HTTP/1.0\r\nAuthorization: Bearer %s\r\n\r\n",
                 W.secret);
    hc_send(&c, b, (size_t)n);
    assert_int_equal(hc_read(&c, false, READ_MS, &r), 0);
    reason_is(&r, 200, "valid");
    hdr(&r, "Connection", "close");
    framed(&r);
    hraw_free(&r);
    assert_true(hc_closed(&c, CLOSE_MS));
    hc_close(&c);

    /* HTTP/1.0 with Connection: keep-alive: open, and said */
    hc_open(&c, W.srv.verify_port);
    n = snprintf(b, sizeof b,
                 "GET /v1/verify HTTP/1.0\r\nConnection: keep-alive\r\nAuthorization: Bearer "
                 "%s\r\n\r\n", W.secret);
    for (int i = 0; i < 3; i++) {
        hc_send(&c, b, (size_t)n);
        assert_int_equal(hc_read(&c, false, READ_MS, &r), 0);
        reason_is(&r, 200, "valid");
        hdr(&r, "Connection", "keep-alive");
        hraw_free(&r);
    }
    /* an error answer that does not end it says keep-alive too */
    n = snprintf(b, sizeof b, "GET /v1/verify HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    hc_send(&c, b, (size_t)n);
    assert_int_equal(hc_read(&c, false, READ_MS, &r), 0);
    reason_is(&r, 401, "missing");
    hdr(&r, "Connection", "keep-alive");
    hraw_free(&r);
    /* then a 1.0 request without it: answered, then closed */
    n = snprintf(b, sizeof b, "GET /v1/verify HTTP/1.0\r\nAuthorization: Bearer %s\r\n\r\n",
                 W.secret);
    hc_send(&c, b, (size_t)n);
    assert_int_equal(hc_read(&c, false, READ_MS, &r), 0);
    assert_int_equal(r.status, 200);
    hdr(&r, "Connection", "close");
    hraw_free(&r);
    assert_true(hc_closed(&c, CLOSE_MS));
    hc_close(&c);

    /* HTTP/1.1 with Connection: close: answered, then closed; what was
     * pipelined after it is not answered */
    hc_open(&c, W.srv.verify_port);
    n = snprintf(b, sizeof b,
                 "GET /v1/verify HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: "
                 "Bearer %s\r\n\r\nGET /v1/verify HTTP/1.1\r\nHost: t\r\n\r\n", W.secret);
    hc_send(&c, b, (size_t)n);
    assert_int_equal(hc_read(&c, false, READ_MS, &r), 0);
    reason_is(&r, 200, "valid");
    hdr(&r, "Connection", "close");
    hraw_free(&r);
    assert_int_equal(hc_read(&c, false, CLOSE_MS, &r), RD_EOF);
    hc_close(&c);

    /* a 404 with Connection: close */
    hc_open(&c, W.srv.verify_port);
    const char *cl[] = {"Connection: close", NULL};
    assert_int_equal(ask(&c, "GET", "/", cl, &r), 404);
    hdr(&r, "Connection", "close");
    error_is(&r, "not_found");
    hraw_free(&r);
    assert_true(hc_closed(&c, CLOSE_MS));
    hc_close(&c);

    /* HTTP/1.1 without it: open through several requests, LF-only lines too */
    hc_open(&c, W.srv.verify_port);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(verify_on(&c, W.secret, "/v1/verify", &r), 200);
        not_closing(&r);
        hraw_free(&r);
    }
    n = snprintf(b, sizeof b, "GET /v1/verify HTTP/1.1\nHost: t\nAuthorization: Bearer %s\n\n",
                 W.secret);
    hc_send(&c, b, (size_t)n);
    assert_int_equal(hc_read(&c, false, READ_MS, &r), 0);
    reason_is(&r, 200, "valid");
    hraw_free(&r);
    assert_int_equal(verify_on(&c, W.secret, "/v1/verify", NULL), 200);
    /* each pipelined request is answered as soon as it is whole: the first
     * while the second is still coming */
    const char *ah[] = {"Authorization: Bearer tkt_nope", NULL};
    size_t k = mkreq(b, sizeof b, "GET", "/v1/verify", ah);
    n = snprintf(b + k, sizeof b - k, "GET /v1/verify HTTP/1.1\r\nAuthorization: Bearer %s",
                 W.secret);
    hc_send(&c, b, k + (size_t)n);
    assert_int_equal(hc_read(&c, false, READ_MS, &r), 0);
    reason_is(&r, 401, "malformed");
    hraw_free(&r);
    hc_sends(&c, "\r\n\r\n");
    assert_int_equal(hc_read(&c, false, READ_MS, &r), 0);
    reason_is(&r, 200, "valid");
    hraw_free(&r);
    hc_close(&c);
    alive();
}

/* ---- bodies ------------------------------------------------------------------ */

static void bodies_skipped(void **state)
{
    (void)state;
    hraw_resp r;
    char b[4096], h[300];
    size_t n;
    hc c;
    bearer(h, sizeof h, W.secret);

    /* Content-Length: 10 in pieces, with pauses: the verification is
     * answered when the head is in, the body skipped as it comes */
    hc_open(&c, W.srv.verify_port);
    const char *ten[] = {h, "Content-Type: application/json", "Content-Length: 10", NULL};
    n = mkreq(b, sizeof b, "POST", "/v1/verify", ten);
    hc_send(&c, b, n);
    hc_send(&c, "GET", 3);
    assert_int_equal(hc_read(&c, false, READ_MS, &r), 0);
    reason_is(&r, 200, "valid");
    hdr(&r, "X-Tokend-Client-Id", W.client_id);
    assert_int_equal(r.body_len, 0);
    hraw_free(&r);
    tkt_sleep_ms(100);
    hc_send(&c, " / H", 4);
    tkt_sleep_ms(100);
    hc_send(&c, "TT", 2);
    tkt_sleep_ms(100);
    hc_send(&c, "P", 1); /* 10 bytes: "GET / HTTP", not a request */
    assert_int_equal(verify_on(&c, W.secret, "/v1/verify", &r), 200);
    hdr(&r, "X-Tokend-Client-Id", W.client_id);
    hraw_free(&r);
    /* a body pipelined with the next request, in one write */
    n = mkreq(b, sizeof b, "POST", "/v1/verify/orders", ten);
    memcpy(b + n, "0123456789", 10);
    n += 10;
    n += mkreq(b + n, sizeof b - n, "GET", "/v1/verify", (const char *[]){h, NULL});
    hc_send(&c, b, n);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(hc_read(&c, false, READ_MS, &r), 0);
        reason_is(&r, 200, "valid");
        hraw_free(&r);
    }
    hc_close(&c);

    /* a body is never the JSON form here: no credential in the headers is
     * 401 missing, whatever the body says */
    hc_open(&c, W.srv.verify_port);
    char json[200];
    int jn = snprintf(json, sizeof json, "{\"secret\":\"%s\"}", W.secret);
    char clen[64];
    snprintf(clen, sizeof clen, "Content-Length: %d", jn);
    const char *form[] = {"Content-Type: application/json", clen, NULL};
    n = mkreq(b, sizeof b, "POST", "/v1/verify", form);
    memcpy(b + n, json, (size_t)jn);
    hc_send(&c, b, n + (size_t)jn);
    assert_int_equal(hc_read(&c, false, READ_MS, &r), 0);
    reason_is(&r, 401, "missing");
    hdr(&r, "WWW-Authenticate", "Bearer realm=\"tokend\"");
    hraw_free(&r);
    assert_int_equal(verify_on(&c, W.secret, "/v1/verify", NULL), 200);
    hc_close(&c);

    /* Expect: 100-continue: no interim answer, the verification at once */
    hc_open(&c, W.srv.verify_port);
    const char *cont[] = {h, "Expect: 100-continue", "Content-Length: 5", NULL};
    n = mkreq(b, sizeof b, "POST", "/v1/verify", cont);
    hc_send(&c, b, n);
    assert_int_equal(hc_read(&c, false, READ_MS, &r), 0);
    reason_is(&r, 200, "valid");
    hraw_free(&r);
    hc_send(&c, "hello", 5);
    assert_int_equal(verify_on(&c, W.secret, "/v1/verify", NULL), 200);
    hc_close(&c);

    /* at --http-max-body (1024): skipped; over it: 413 limit, then closed */
    hc_open(&c, W.srv.verify_port);
    const char *at[] = {h, "Content-Length: 1024", NULL};
    n = mkreq(b, sizeof b, "POST", "/v1/verify", at);
    memset(b + n, 'x', 1024);
    hc_send(&c, b, n + 1024);
    assert_int_equal(hc_read(&c, false, READ_MS, &r), 0);
    reason_is(&r, 200, "valid");
    hraw_free(&r);
    assert_int_equal(verify_on(&c, W.secret, "/v1/verify", NULL), 200);
    const char *over[] = {h, "Content-Length: 1025", NULL};
    n = mkreq(b, sizeof b, "POST", "/v1/verify", over);
    hc_send(&c, b, n);
    assert_int_equal(hc_read(&c, false, READ_MS, &r), 0);
    assert_int_equal(r.status, 413);
    error_is(&r, "limit");
    hdr(&r, "Connection", "close");
    framed(&r);
    hraw_free(&r);
    assert_true(hc_closed(&c, CLOSE_MS));
    hc_close(&c);
    /* far over it, body sent */
    hc_open(&c, W.srv.verify_port);
    const char *far[] = {h, "Content-Length: 100000", NULL};
    n = mkreq(b, sizeof b, "POST", "/v1/verify", far);
    hc_send(&c, b, n);
    assert_int_equal(hc_read(&c, false, READ_MS, &r), 0);
    assert_int_equal(r.status, 413);
    error_is(&r, "limit");
    hraw_free(&r);
    assert_true(hc_closed(&c, CLOSE_MS));
    hc_close(&c);

    /* Transfer-Encoding: 501, then closed */
    static const char *const te_values[] = {"chunked", "gzip, chunked", "identity"};
    for (size_t i = 0; i < 3; i++) {
        char te[64];
        snprintf(te, sizeof te, "Transfer-Encoding: %s", te_values[i]);
        hc_open(&c, W.srv.verify_port);
        const char *chunked[] = {h, te, NULL};
        n = mkreq(b, sizeof b, "POST", "/v1/verify", chunked);
        memcpy(b + n, "5\r\nhello\r\n0\r\n\r\n", 15);
        hc_send(&c, b, n + 15);
        assert_int_equal(hc_read(&c, false, READ_MS, &r), 0);
        if (r.status != 501)
            fail_msg("%s: %d, expected 501", te, r.status);
        hdr(&r, "Connection", "close");
        json_t *j = body_json(&r);
        assert_true(json_is_string(json_object_get(j, "error")));
        json_decref(j);
        framed(&r);
        hraw_free(&r);
        assert_true(hc_closed(&c, CLOSE_MS));
        hc_close(&c);
    }
    alive();
}

/* ---- bad input ---------------------------------------------------------------- */

/* Sends n bytes on a new connection to the verify listener: the answer
 * must be status with the error code (when not NULL), say Connection:
 * close, and the connection must close; then every listener serves. */
static void refused(const char *what, const void *bytes, size_t n, int status, const char *code)
{
    hc c;
    hraw_resp r;
    hc_open(&c, W.srv.verify_port);
    raw_write(c.fd, bytes, n); /* the server may close before taking it all */
    int rc = hc_read(&c, false, READ_MS, &r);
    if (rc)
        fail_msg("%s: no answer (%d), expected %d", what, rc, status);
    if (r.status != status)
        fail_msg("%s: %d, expected %d\n%s\n%s", what, r.status, status, r.head, r.body);
    if (code)
        error_is(&r, code);
    hdr(&r, "Connection", "close");
    framed(&r);
    hraw_free(&r);
    if (!hc_closed(&c, CLOSE_MS))
        fail_msg("%s: the connection stayed open after %d", what, status);
    hc_close(&c);
    alive();
}

static void refused_s(const char *bytes, int status, const char *code)
{
    refused(bytes, bytes, strlen(bytes), status, code);
}

static void bad_input(void **state)
{
    (void)state;
    char b[8192];
    int n;
    char auth[300];
    bearer(auth, sizeof auth, W.secret);

    /* the request line */
    refused_s("GARBAGE\r\n\r\n", 400, "protocol");
    refused_s("GET /v1/verify\r\n\r\n", 400, "protocol");
    refused_s("GET\r\n\r\n", 400, "protocol");
    refused_s("GET http://tokend/v1/verify HTTP/1.1\r\nHost: t\r\n\r\n", 400, "protocol");
    refused_s("GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400, "protocol");
    refused_s("GET /v1/verify HTTP/1.1 extra\r\nHost: t\r\n\r\n", 400, "protocol");
    refused_s("GET /v1/verify FTP/1.1\r\nHost: t\r\n\r\n", 400, "protocol");
    refused_s("G(T /v1/verify HTTP/1.1\r\nHost: t\r\n\r\n", 400, "protocol");
    /* header lines that are not Name: value */
    refused_s("GET /v1/verify HTTP/1.1\r\nHost: t\r\nX-A: a\r\n  folded\r\n\r\n", 400,
              "protocol");
    refused_s("GET /v1/verify HTTP/1.1\r\nHost: t\r\nX-A: a\r\n\tfolded\r\n\r\n", 400,
              "protocol");
    refused_s("GET /v1/verify HTTP/1.1\r\nHost: t\r\nX-A : a\r\n\r\n", 400, "protocol");
    refused_s("GET /v1/verify HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n", 400, "protocol");
    refused_s("GET /v1/verify HTTP/1.1\r\nHost: t\r\nX-A: a\x01z\r\n\r\n", 400, "protocol");
    refused_s("GET /v1/verify HTTP/1.1\r\nHost: t\r\nX-A: a\rz\r\n\r\n", 400, "protocol");
    static const char nul[] = "GET /v1/verify HTTP/1.1\r\nHost: t\r\nX-A: a\0b\r\n\r\n";
    refused("a NUL in a header value", nul, sizeof nul - 1, 400, "protocol");
    n = snprintf(b, sizeof b, "GET /v1/verify HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
                 "%s\x7f\r\n\r\n", W.secret);
    refused("DEL in the Authorization value", b, (size_t)n, 400, "protocol");
    /* Content-Length */
    refused_s("POST /v1/verify HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6"
              "\r\n\r\nhello!", 400, "protocol");
    refused_s("POST /v1/verify HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400,
              "protocol");
    refused_s("POST /v1/verify HTTP/1.1\r\nHost: t\r\nContent-Length: 5x\r\n\r\nhello", 400,
              "protocol");
    /* other versions */
    refused_s("GET /v1/verify HTTP/2.0\r\nHost: t\r\n\r\n", 505, NULL);
    refused_s("GET /v1/verify HTTP/1.2\r\nHost: t\r\n\r\n", 505, NULL);
    refused_s("GET /v1/verify HTTP/0.9\r\nHost: t\r\n\r\n", 505, NULL);

    /* a head over --http-max-headers (2048): 431 limit */
    n = snprintf(b, sizeof b, "GET /v1/verify HTTP/1.1\r\nHost: t\r\n%s\r\nX-Big: ", auth);
    memset(b + n, 'a', 3000);
    n += 3000;
    n += snprintf(b + n, sizeof b - (size_t)n, "\r\n\r\n");
    refused("a 3000-byte header", b, (size_t)n, 431, "limit");
    /* the same, never finished: the limit is found as the bytes come */
    refused("a 3000-byte header, no end", b, (size_t)n - 4, 431, "limit");
    /* 100 header fields are taken, 101 are not */
    for (int fields = 100; fields <= 101; fields++) {
        n = snprintf(b, sizeof b, "GET /v1/verify HTTP/1.1\r\nHost: t\r\n%s\r\n", auth);
        for (int i = 2; i < fields; i++)
            n += snprintf(b + n, sizeof b - (size_t)n, "X-F%d: v\r\n", i);
        n += snprintf(b + n, sizeof b - (size_t)n, "\r\n");
        assert_true(n < 2048);
        if (fields == 100) {
            hc c;
            hraw_resp r;
            hc_open(&c, W.srv.verify_port);
            hc_send(&c, b, (size_t)n);
            assert_int_equal(hc_read(&c, false, READ_MS, &r), 0);
            reason_is(&r, 200, "valid");
            hraw_free(&r);
            hc_close(&c);
        } else {
            refused("101 header fields", b, (size_t)n, 431, "limit");
        }
    }

    /* an error ends the connection after the answers before it */
    {
        hc c;
        hraw_resp r;
        hc_open(&c, W.srv.verify_port);
        n = (int)mkreq(b, sizeof b, "GET", "/v1/verify", (const char *[]){auth, NULL});
        n += snprintf(b + n, sizeof b - (size_t)n, "BAD LINE\r\n\r\n");
        n += (int)mkreq(b + n, sizeof b - (size_t)n, "GET", "/v1/verify",
                        (const char *[]){auth, NULL});
        hc_send(&c, b, (size_t)n);
        assert_int_equal(hc_read(&c, false, READ_MS, &r), 0);
        reason_is(&r, 200, "valid");
        hraw_free(&r);
        assert_int_equal(hc_read(&c, false, READ_MS, &r), 0);
        assert_int_equal(r.status, 400);
        error_is(&r, "protocol");
        hdr(&r, "Connection", "close");
        hraw_free(&r);
        assert_int_equal(hc_read(&c, false, CLOSE_MS, &r), RD_EOF);
        hc_close(&c);
    }

    /* one byte per write: still answered, and the connection kept */
    {
        hc c;
        hraw_resp r;
        hc_open(&c, W.srv.verify_port);
        size_t len = mkreq(b, sizeof b, "GET", "/v1/verify?permission=orders:read",
                           (const char *[]){auth, NULL});
        for (size_t i = 0; i < len; i++) {
            hc_send(&c, b + i, 1);
            if (i % 16 == 0)
                tkt_sleep_ms(1);
        }
        assert_int_equal(hc_read(&c, false, READ_MS, &r), 0);
        reason_is(&r, 200, "valid");
        hdr(&r, "X-Tokend-Client-Id", W.client_id);
        hraw_free(&r);
        assert_int_equal(verify_on(&c, W.secret, "/v1/verify", NULL), 200);
        hc_close(&c);
    }
    alive();
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Random bytes: an error answer or a close, never a crash. */
static void bad_random_bytes(void **state)
{
    (void)state;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    char b[8192];
    for (int round = 0; round < 12; round++) {
        size_t n = 0;
        if (round % 2) /* behind a good request line: the header parser's */
            n = (size_t)snprintf(b, sizeof b, "GET /v1/verify HTTP/1.1\r\n");
        size_t len = 2048 + xorshift(&seed) % 2048;
        for (size_t i = 0; i < len; i++) {
            uint8_t c = (uint8_t)xorshift(&seed);
            if (round % 4 == 3 && c < 0x20 && c != '\n')
                c = 'a'; /* mostly printable: deeper into the head */
            b[n++] = (char)c;
        }
        hc c;
        hraw_resp r;
        hc_open(&c, W.srv.verify_port);
        raw_write(c.fd, b, n);
        shutdown(c.fd, SHUT_WR); /* nothing more comes */
        int rc = hc_read(&c, false, READ_MS, &r);
        if (rc == 0) {
            if (r.status < 400 || r.status > 599)
                fail_msg("round %d: %d to random bytes", round, r.status);
            hdr(&r, "Connection", "close");
            hraw_free(&r);
            assert_true(hc_closed(&c, CLOSE_MS));
        } else if (rc != RD_EOF) {
            fail_msg("round %d: neither an answer nor a close (%d)", round, rc);
        }
        hc_close(&c);
        assert_int_equal(raw_server_wait(&W.srv, 0), -1); /* still running */
    }
    alive();
}

/* ---- limits and deadlines ----------------------------------------------------- */

static void timeouts(void **state)
{
    (void)state;
    hc c;

    /* an idle keep-alive connection, after its answer */
    hc_open(&c, W.srv.verify_port);
    assert_int_equal(verify_on(&c, W.secret, "/v1/verify", NULL), 200);
    assert_true(hc_closed(&c, CLOSE_MS));
    hc_close(&c);

    /* a new connection that sends nothing */
    hc_open(&c, W.srv.verify_port);
    assert_true(hc_closed(&c, CLOSE_MS));
    hc_close(&c);

    /* a head that stops half way */
    hc_open(&c, W.srv.verify_port);
    hc_sends(&c, "GET /v1/verify HTTP/1.1\r\nHost: t\r\nAuthoriz");
    assert_true(hc_closed(&c, CLOSE_MS));
    hc_close(&c);

    /* a head that keeps coming, a byte at a time, never ends: the time a
     * started request may take, not the time between its bytes */
    hc_open(&c, W.srv.verify_port);
    hc_sends(&c, "GET /v1/verify HTTP/1.1\r\nHost: t\r\nX-Slow: ");
    bool closed = false;
    int64_t deadline = tkt_now_ms() + CLOSE_MS;
    while (!closed && tkt_now_ms() < deadline) {
        if (send(c.fd, "a", 1, MSG_NOSIGNAL) != 1) {
            closed = true;
            break;
        }
        closed = hc_closed(&c, 200);
    }
    assert_true(closed);
    hc_close(&c);

    /* a body that stops half way */
    hc_open(&c, W.srv.verify_port);
    char h[300], b[1024];
    bearer(h, sizeof h, W.secret);
    size_t n = mkreq(b, sizeof b, "POST", "/v1/verify",
                     (const char *[]){h, "Content-Length: 100", NULL});
    hc_send(&c, b, n);
    hc_send(&c, "abc", 3);
    hraw_resp r;
    assert_int_equal(hc_read(&c, false, READ_MS, &r), 0);
    reason_is(&r, 200, "valid");
    hraw_free(&r);
    assert_true(hc_closed(&c, CLOSE_MS));
    hc_close(&c);

    /* a connection kept busy stays */
    hc_open(&c, W.srv.verify_port);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(verify_on(&c, W.secret, "/v1/verify", NULL), 200);
        tkt_sleep_ms(300);
    }
    hc_close(&c);
    alive();
}

/* True when c is closed by the server without a byte of answer. */
static bool closed_silently(hc *c, int timeout_ms)
{
    hraw_resp r;
    int rc = hc_read(c, false, timeout_ms, &r);
    if (rc == 0)
        hraw_free(&r);
    return rc == RD_EOF && c->got == 0;
}

static void connection_cap(void **state)
{
    (void)state;
    enum { CAP = 4 };
    hc v[CAP + 1], m[CAP - 1];
    for (int i = 0; i < CAP; i++) { /* 0 is the least recently active */
        hc_open(&v[i], W.srv.verify_port);
        assert_int_equal(verify_on(&v[i], W.secret, "/v1/verify", NULL), 200);
    }
    /* the verify listener at its cap: the main listener and the binary one
     * still serve, and take no slot of it (the main listener's own cap is
     * 4 too: 3 kept and 1 more) */
    for (int i = 0; i < CAP - 1; i++) {
        hc_open(&m[i], W.srv.http_port);
        assert_int_equal(verify_on(&m[i], W.secret, "/v1/verify", NULL), 200);
    }
    char h[300];
    bearer(h, sizeof h, W.secret);
    const char *hs[] = {h, NULL};
    assert_int_equal(ask_once(W.srv.http_port, "GET", "/v1/verify", hs, NULL), 200);
    assert_int_equal(raw_ping(W.srv.port), 0);
    /* every verify connection kept its slot, every main one too */
    for (int i = 0; i < CAP; i++)
        if (verify_on(&v[i], W.secret, "/v1/verify", NULL) != 200)
            fail_msg("verify connection %d lost its slot to other listeners' traffic", i);
    for (int i = 0; i < CAP - 1; i++) {
        if (verify_on(&m[i], W.secret, "/v1/verify", NULL) != 200)
            fail_msg("main connection %d lost", i);
        hc_close(&m[i]);
    }
    for (int i = 0; i < CAP; i++)
        v[i].got = 0;

    /* a 5th: served, and the least recently active (v[0]) is closed without
     * an answer */
    hc_open(&v[CAP], W.srv.verify_port);
    assert_int_equal(verify_on(&v[CAP], W.secret, "/v1/verify", NULL), 200);
    assert_true(closed_silently(&v[0], READ_MS));
    hc_close(&v[0]);
    for (int i = 1; i <= CAP; i++)
        assert_int_equal(verify_on(&v[i], W.secret, "/v1/verify", NULL), 200);
    /* again: v[1] is now the least recently active */
    v[1].got = 0;
    hc_open(&v[0], W.srv.verify_port);
    assert_int_equal(verify_on(&v[0], W.secret, "/v1/verify", NULL), 200);
    assert_true(closed_silently(&v[1], READ_MS));
    hc_close(&v[1]);
    for (int i = 0; i <= CAP; i++) {
        if (i == 1)
            continue;
        assert_int_equal(verify_on(&v[i], W.secret, "/v1/verify", NULL), 200);
        hc_close(&v[i]);
    }
    alive();
}

static long verify_conns(void)
{
    char *t = metrics_text();
    long n = metric(t, "tokend_connections{listener=\"http-verify\"}");
    free(t);
    return n;
}

/* A client that pipelines and never reads: closed once more than 256 KiB
 * of answers wait for it (beyond what the kernel's buffers hold), not
 * buffered without end. Seen by the client (a reset) or, over TLS, where
 * the test's TLS pump holds the socket, by the server's connection gauge. */
static void unread_answers_closed(void **state)
{
    (void)state;
    char h[300], one[512];
    bearer(h, sizeof h, W.secret);
    size_t n = mkreq(one, sizeof one, "GET", "/v1/verify", (const char *[]){h, NULL});
    enum { BATCH = 64 };
    char *b = malloc(n * BATCH);
    for (int i = 0; i < BATCH; i++)
        memcpy(b + (size_t)i * n, one, n);
    hc c;
    hc_open(&c, W.srv.verify_port);
    assert_int_equal(verify_on(&c, W.secret, "/v1/verify", NULL), 200); /* it is accepted */
    assert_int_equal(verify_conns(), 1);
    int fl = fcntl(c.fd, F_GETFL);
    fcntl(c.fd, F_SETFL, fl | O_NONBLOCK);
    size_t sent = 0, off = 0;
    bool closed = false;
    int64_t t0 = tkt_now_ms(), deadline = t0 + 12000, check = 0;
    while (!closed && tkt_now_ms() < deadline) {
        if (sent > (256u << 20))
            tkt_sleep_ms(10); /* far over any limit: slower from here */
        ssize_t w = send(c.fd, b + off, n * BATCH - off, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            closed = true; /* reset or broken pipe */
            break;
        }
        if (w > 0) {
            sent += (size_t)w;
            off = (off + (size_t)w) % (n * BATCH);
        } else {
            struct pollfd p = {.fd = c.fd, .events = POLLOUT};
            poll(&p, 1, 20);
        }
        if (tkt_now_ms() >= check) {
            closed = verify_conns() == 0;
            check = tkt_now_ms() + 200;
        }
    }
    if (!closed) {
        size_t ln;
        char *log = (char *)tkt_read_file(W.srv.log, &ln);
        fprintf(stderr, "# server log:\n%.*s\n", (int)(ln > 4000 ? 4000 : ln), log ? log : "");
        free(log);
    }
    if (!closed)
        fail_msg("%zu bytes of requests sent in %lld ms, no answer read, and the connection "
                 "is still open (the server's resident set: %ld KiB, %ld KiB "
                 "at its peak)", sent, (long long)(tkt_now_ms() - t0),
                 raw_server_rss_kb(&W.srv), raw_server_hwm_kb(&W.srv));
    hc_close(&c);
    free(b);
    alive();
}

/* ---- the gateway key ----------------------------------------------------------- */

/* The gateway key's header lines: the key, the operator key, a wrong one. */
typedef struct gwk {
    char tok[300], key[300], op[300], wrong[300];
} gwk;

static void gw_keys(gwk *k)
{
    char key[128];
    assert_int_equal(raw_read_key(&W.srv, "gateway.key", key, sizeof key), 0);
    bearer(k->tok, sizeof k->tok, W.secret);
    snprintf(k->key, sizeof k->key, "X-Tokend-Gateway-Key: %s", key);
    snprintf(k->op, sizeof k->op, "X-Tokend-Gateway-Key: %s", W.op_key);
    snprintf(k->wrong, sizeof k->wrong, "X-Tokend-Gateway-Key: %s", key);
    size_t n = strlen(k->wrong);
    k->wrong[n - 1] = k->wrong[n - 1] == 'A' ? 'B' : 'A'; /* one character off */
}

/* 401 for want of the key: the challenge and a JSON error, no identity. */
static void keyless(const hraw_resp *r)
{
    if (r->status != 401)
        fail_msg("%d, expected 401 without the gateway key\n%s\n%s", r->status, r->head,
                 r->body);
    hdr(r, "WWW-Authenticate", "Bearer realm=\"tokend\"");
    error_is(r, "unauthenticated");
    assert_false(has_hdr(r, "X-Tokend-Tenant"));
    assert_false(has_hdr(r, "X-Tokend-Client-Id"));
    framed(r);
}

/* --require-gateway-key on the verify listener, as documented. */
static void gateway_key_required(void **state)
{
    (void)state;
    gwk k;
    hraw_resp r;
    gw_keys(&k);
    const char *none[] = {k.tok, NULL}, *with[] = {k.tok, k.key, NULL},
               *op[] = {k.tok, k.op, NULL}, *wrong[] = {k.tok, k.wrong, NULL},
               *empty[] = {k.tok, "X-Tokend-Gateway-Key: ", NULL};
    char th[300];
    snprintf(th, sizeof th, "X-Tokend-Gateway-Key: %s", W.secret);
    const char *token_as_key[] = {k.tok, th, NULL};

    /* without the key, a wrong one, an empty one, a token offered as one */
    const char *const *refusals[] = {none, wrong, empty, token_as_key};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(ask_once(W.srv.verify_port, "GET", "/v1/verify", refusals[i], &r), 401);
        keyless(&r);
        hraw_free(&r);
    }
    /* with the key, or the operator key: the verification */
    assert_int_equal(ask_once(W.srv.verify_port, "GET", "/v1/verify", with, &r), 200);
    reason_is(&r, 200, "valid");
    hdr(&r, "X-Tokend-Client-Id", W.client_id);
    hraw_free(&r);
    assert_int_equal(ask_once(W.srv.verify_port, "GET", "/v1/verify/orders/7?x=1", op, &r), 200);
    reason_is(&r, 200, "valid");
    hraw_free(&r);

    /* on one keep-alive connection, all in turn: a refusal keeps it */
    hc c;
    hc_open(&c, W.srv.verify_port);
    assert_int_equal(ask(&c, "GET", "/v1/verify", none, NULL), 401);
    assert_int_equal(ask(&c, "GET", "/v1/verify", with, NULL), 200);
    assert_int_equal(ask(&c, "GET", "/v1/verify", wrong, NULL), 401);
    assert_int_equal(ask(&c, "GET", "/v1/verify", op, NULL), 200);
    hc_close(&c);
    /* the key gives nothing else on this listener */
    const char *k404[] = {k.key, NULL};
    assert_int_equal(ask_once(W.srv.verify_port, "GET", "/v1/tokens", k404, &r), 404);
    error_is(&r, "not_found");
    hraw_free(&r);
    /* and with the key, the answers are the main listener's */
    parity("GET", "/v1/verify", with, 200, "valid", NULL);
    parity("GET", "/v1/verify/orders/7?x=1", op, 200, "valid", NULL);
    const char *with_perm[] = {k.tok, k.key, "X-Tokend-Require-Permission: orders:write", NULL};
    parity("GET", "/v1/verify", with_perm, 403, "permission", NULL);
    char bad[300];
    bearer(bad, sizeof bad, W.gone);
    const char *gone[] = {bad, k.key, NULL};
    parity("GET", "/v1/verify", gone, 401, "unknown", NULL); /* the token still decides */
    const char *missing[] = {k.key, NULL};
    parity("GET", "/v1/verify", missing, 401, "missing", NULL);
}

/* A refusal for want of the gateway key is the main listener's, headers
 * and body ("--require-gateway-key the same way"), and like every
 * verification answer it is never cached. */
static void gateway_key_refusal_parity(void **state)
{
    (void)state;
    gwk k;
    hraw_resp r;
    gw_keys(&k);
    const char *none[] = {k.tok, NULL}, *wrong[] = {k.tok, k.wrong, NULL};
    const char *const *refusals[] = {none, wrong};
    for (size_t i = 0; i < 2; i++) {
        both("GET", "/v1/verify", refusals[i], &r);
        keyless(&r);
        hdr(&r, "Cache-Control", "no-store");
        hraw_free(&r);
    }
}

/* ---- metrics -------------------------------------------------------------------- */

static void metrics_by_listener(void **state)
{
    (void)state;
    hc c[3];
    for (int i = 0; i < 3; i++)
        hc_open(&c[i], W.srv.verify_port);
    for (int i = 0; i < 4; i++)
        assert_int_equal(verify_on(&c[0], W.secret, "/v1/verify", NULL), 200);
    for (int i = 0; i < 2; i++)
        assert_int_equal(verify_on(&c[1], "tkt_nope", "/v1/verify", NULL), 401);
    assert_int_equal(verify_on(&c[2], W.gone, "/v1/verify/x", NULL), 401);
    assert_int_equal(verify_on(&c[2], W.secret, "/nothing", NULL), 404);
    assert_int_equal(verify_on(&c[2], W.secret, "/metrics", NULL), 404);
    char *t = metrics_text();
    static const struct {
        const char *line;
        long want;
    } lines[] = {
        {"tokend_verifications_total{listener=\"http-verify\",result=\"valid\"}", 4},
        {"tokend_verifications_total{listener=\"http-verify\",result=\"malformed\"}", 2},
        {"tokend_verifications_total{listener=\"http-verify\",result=\"unknown\"}", 1},
        {"tokend_verifications_total{listener=\"http-verify\",result=\"wrong_kind\"}", 0},
        {"tokend_verify_duration_seconds_count{listener=\"http-verify\"}", 7},
        {"tokend_requests_total{listener=\"http-verify\",operation=\"VERIFY\",status=\"ok\"}", 4},
        {"tokend_requests_total{listener=\"http-verify\",operation=\"VERIFY\","
         "status=\"unauthenticated\"}", 3},
        {"tokend_requests_total{listener=\"http-verify\",operation=\"unknown\","
         "status=\"not_found\"}", 2},
        {"tokend_connections{listener=\"http-verify\"}", 3},
        /* none of it counted as the main listener's */
        {"tokend_verifications_total{listener=\"http\",result=\"valid\"}", 0},
        {"tokend_verifications_total{listener=\"http\",result=\"malformed\"}", 0},
        {"tokend_verify_duration_seconds_count{listener=\"http\"}", 0},
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        long got = metric(t, lines[i].line);
        if (got != lines[i].want)
            fail_msg("%s: %ld, expected %ld\n%s", lines[i].line, got, lines[i].want, t);
    }
    free(t);
    /* the gauge follows the connections */
    for (int i = 0; i < 3; i++)
        hc_close(&c[i]);
    long conns = -1;
    for (int i = 0; i < 50 && conns != 0; i++) {
        t = metrics_text();
        conns = metric(t, "tokend_connections{listener=\"http-verify\"}");
        free(t);
        if (conns)
            tkt_sleep_ms(50);
    }
    assert_int_equal(conns, 0);
    /* and the counters go on */
    assert_int_equal(vgw(W.secret), 200);
    t = metrics_text();
    assert_int_equal(
        metric(t, "tokend_verifications_total{listener=\"http-verify\",result=\"valid\"}"), 5);
    free(t);
}

/* ---- stop ------------------------------------------------------------------------- */

static void sigterm_answers_then_exits(void **state)
{
    (void)state;
    enum { N = 100 };
    char h[300];
    bearer(h, sizeof h, W.secret);
    const char *hs[] = {h, NULL};
    size_t cap = 64u << 10, n = 0;
    char *b = malloc(cap);
    for (int i = 0; i < N; i++)
        n += mkreq(b + n, cap - n, "GET", i % 2 ? "/v1/verify" : "/v1/verify/x", hs);
    hc idle, part, busy;
    hc_open(&idle, W.srv.verify_port); /* keep-alive, nothing to answer */
    assert_int_equal(verify_on(&idle, W.secret, "/v1/verify", NULL), 200);
    hc_open(&part, W.srv.verify_port); /* a request started, not finished */
    hc_sends(&part, "GET /v1/verify HTTP/1.1\r\nHost: t\r\n");
    hc_open(&busy, W.srv.verify_port);
    hc_send(&busy, b, n); /* N requests, one write */
    hraw_resp r;
    assert_int_equal(hc_read(&busy, false, READ_MS, &r), 0); /* the write is in */
    assert_int_equal(r.status, 200);
    hraw_free(&r);
    int64_t t0 = tkt_now_ms();
    assert_int_equal(raw_server_stop(&W.srv), 0); /* SIGTERM; exit 0 */
    int64_t took = tkt_now_ms() - t0;
    if (took > 8000)
        fail_msg("the stop took %lld ms with idle connections open", (long long)took);
    assert_true(hc_closed(&idle, CLOSE_MS));
    assert_true(hc_closed(&part, CLOSE_MS));
    /* every request sent before the stop was answered */
    int answered = 1, rc = 0;
    char last[1024] = "";
    while (answered < N && (rc = hc_read(&busy, false, READ_MS, &r)) == 0) {
        reason_is(&r, 200, "valid");
        snprintf(last, sizeof last, "%s", r.head);
        hraw_free(&r);
        answered++;
    }
    if (answered < N) {
        hc_close(&busy);
        hc_close(&idle);
        hc_close(&part);
        free(b);
        fail_msg("%d verifications pipelined in one write, SIGTERM once the first was "
                 "answered: %d answered, then %s; the last answer:\n%s", N, answered,
                 rc == RD_EOF ? "the connection closed" : "nothing", last);
    }
    assert_true(hc_closed(&busy, CLOSE_MS));
    hc_close(&busy);
    hc_close(&idle);
    hc_close(&part);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(parity_credentials, setup, teardown),
        cmocka_unit_test_setup_teardown(parity_permissions, setup, teardown),
        cmocka_unit_test_setup_teardown(parity_methods_and_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(revocation_on_open_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(pipeline_200, setup, teardown),
        cmocka_unit_test_setup_teardown(connection_semantics, setup, teardown),
        cmocka_unit_test_setup_teardown(bodies_skipped, setup_small, teardown),
        cmocka_unit_test_setup_teardown(bad_input, setup_small, teardown),
        cmocka_unit_test_setup_teardown(bad_random_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(timeouts, setup_timeout, teardown),
        cmocka_unit_test_setup_teardown(connection_cap, setup_cap, teardown),
        cmocka_unit_test_setup_teardown(unread_answers_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(gateway_key_required, setup_gwkey, teardown),
        cmocka_unit_test_setup_teardown(gateway_key_refusal_parity, setup_gwkey, teardown),
        cmocka_unit_test_setup_teardown(metrics_by_listener, setup, teardown),
        cmocka_unit_test_setup_teardown(sigterm_answers_then_exits, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    if (getenv("TEST_FILTER"))
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD) {
        fprintf(stderr, "# a child process is still running\n");
        failed++;
    }
    return failed;
}
