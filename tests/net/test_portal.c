/*
 * test_portal.c - the self-service page end to end (net/portal.c, the
 * page in net/portal/): the real bin/tokend, portal sessions minted and
 * used over hand-written HTTP (tests/support/hraw.h), and the whole flow
 * walked in a real headless Chromium (tests/support/browser.h), which
 * writes a screenshot of each step into build/test-logs/portal/.
 *
 * The world: tenant acme (API tokens on) with roles owner (level 0),
 * editor (level 1: orders:read, orders:write) and viewer (level 5:
 * orders:read); account bigco with ana (editor, portal) and bob (viewer,
 * no portal); tenant other with account x and eve (viewer, portal).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "core/mp.h"
#include "net/proto.h"
#include "tests/support/browser.h"
#include "tests/support/hraw.h"
#include "tests/support/japi.h"
#include "tests/support/raw.h"
#include "tests/support/tkt.h"

#define TEST_SECONDS 120
#define SHOTS "build/test-logs/portal"

typedef struct world {
    raw_server srv;
    char op[160];     /* "Authorization: Bearer <operator key>" */
    char op_key[128];
    char ana[160];    /* ... ana's personal key */
    char ana_key[128];
    char bob[160];
    char eve[160];
} world;

static world W;

/* A portal session as the browser holds it. */
typedef struct session {
    char cookie[320]; /* "Cookie: tokend_portal=..." */
    char csrf[160];   /* "X-Tokend-CSRF: ..." */
    char set_cookie[300];
} session;

/* ---- helpers ------------------------------------------------------------ */

/* One request with up to three header lines (NULL ends them); the body
 * parsed into *out (may be NULL) and the response kept in *keep (may be
 * NULL). Returns the status. */
static int call3(const char *h1, const char *h2, const char *h3, const char *method,
                 const char *path, const char *body, json_t **out, hraw_resp *keep)
{
    const char *h[] = {h1, h2, h3, NULL};
    return japi_call(W.srv.http_port, h, method, path, body, out, keep);
}

static int call(const char *auth, const char *method, const char *path, const char *body,
                json_t **out)
{
    return call3(auth, NULL, NULL, method, path, body, out, NULL);
}

/* A refusal's status and "error" code, from a call with up to two headers. */
static void refused(const char *h1, const char *h2, const char *method, const char *path,
                    const char *body, int status, const char *code)
{
    const char *h[] = {h1, h2, NULL};
    japi_refused(W.srv.http_port, h, method, path, body, status, code);
}

static void ok(const char *auth, const char *method, const char *path, const char *body,
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

static void make_user(const char *tenant, const char *account, const char *user,
                      const char *roles, bool portal, char *auth, size_t cap, char *key,
                      size_t kcap)
{
    japi_user(W.srv.http_port, W.op, tenant, account, user, roles, portal, auth, cap, key,
              kcap);
}

static void start(const char *const *extra)
{
    memset(&W, 0, sizeof W);
    assert_int_equal(raw_server_start(&W.srv, NULL, extra), 0);
    assert_true(W.srv.http_port > 0);
    assert_int_equal(raw_read_key(&W.srv, "operator.key", W.op_key, sizeof W.op_key), 0);
    snprintf(W.op, sizeof W.op, "Authorization: Bearer %s", W.op_key);
    ok(W.op, "POST", "/v1/tenants", "{\"tenant\":\"acme\"}", 201);
    ok(W.op, "PATCH", "/v1/tenants/acme", "{\"api_tokens\":true}", 200);
    ok(W.op, "PUT", "/v1/tenants/acme/roles/owner",
       "{\"name\":\"Owner\",\"level\":0,\"permissions\":[\"orders:read\",\"orders:write\","
       "\"billing:write\"]}",
       200);
    ok(W.op, "PUT", "/v1/tenants/acme/roles/editor",
       "{\"name\":\"Editor\",\"level\":1,\"permissions\":[\"orders:read\",\"orders:write\"]}",
       200);
    ok(W.op, "PUT", "/v1/tenants/acme/roles/viewer",
       "{\"name\":\"Viewer\",\"level\":5,\"permissions\":[\"orders:read\"]}", 200);
    ok(W.op, "POST", "/v1/tenants/acme/accounts", "{\"account\":\"bigco\"}", 201);
    make_user("acme", "bigco", "ana", "[\"editor\"]", true, W.ana, sizeof W.ana, W.ana_key,
              sizeof W.ana_key);
    make_user("acme", "bigco", "bob", "[\"viewer\"]", false, W.bob, sizeof W.bob, NULL, 0);
    ok(W.op, "POST", "/v1/tenants", "{\"tenant\":\"other\"}", 201);
    ok(W.op, "PATCH", "/v1/tenants/other", "{\"api_tokens\":true}", 200);
    ok(W.op, "PUT", "/v1/tenants/other/roles/viewer",
       "{\"level\":5,\"permissions\":[\"orders:read\"]}", 200);
    ok(W.op, "POST", "/v1/tenants/other/accounts", "{\"account\":\"x\"}", 201);
    make_user("other", "x", "eve", "[\"viewer\"]", true, W.eve, sizeof W.eve, NULL, 0);
}

static int setup(void **state)
{
    (void)state;
    raw_watchdog(TEST_SECONDS);
    start(NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    raw_server_stop(&W.srv);
    raw_server_free(&W.srv);
    raw_watchdog(0);
    return 0;
}

/* The link's path and query ("/portal/?code=...") from a mint for
 * tenant/account/user; its full URL into url when not NULL. */
static void mint(const char *tenant, const char *account, const char *user, char *path,
                 size_t cap, char *url, size_t ucap)
{
    char body[300], u[512];
    json_t *j;
    snprintf(body, sizeof body, "{\"tenant\":\"%s\",\"account\":\"%s\",\"user\":\"%s\"}",
             tenant, account, user);
    assert_int_equal(call(W.op, "POST", "/v1/portal/sessions", body, &j), 201);
    get_str(j, "url", u, sizeof u);
    json_int_t exp = json_integer_value(json_object_get(j, "expires_at"));
    assert_true(exp > time(NULL) && exp <= time(NULL) + 61);
    json_decref(j);
    /* The link's base is the Host the request named (hraw's: no port). */
    const char *prefix = "http://127.0.0.1/portal/?code=";
    assert_memory_equal(u, prefix, strlen(prefix));
    snprintf(path, cap, "%s", strstr(u + 8, "/portal/"));
    if (url) /* for the browser, which reaches the port */
        snprintf(url, ucap, "http://127.0.0.1:%d%s", W.srv.http_port, path);
}

/* Opens the session of a link (path): the cookie and its CSRF token. */
static void open_link(const char *path, session *s)
{
    hraw_resp r;
    char v[300], loc[64];
    assert_int_equal(call3(NULL, NULL, NULL, "GET", path, NULL, NULL, &r), 303);
    assert_true(hraw_header(&r, "Location", loc, sizeof loc));
    assert_string_equal(loc, "/portal/");
    assert_true(hraw_header(&r, "Set-Cookie", v, sizeof v));
    hraw_free(&r);
    snprintf(s->set_cookie, sizeof s->set_cookie, "%s", v);
    char *semi = strchr(v, ';');
    assert_non_null(semi);
    *semi = 0;
    snprintf(s->cookie, sizeof s->cookie, "Cookie: %s", v);
    json_t *j;
    assert_int_equal(call3(s->cookie, NULL, NULL, "GET", "/v1/portal/session", NULL, &j, NULL),
                     200);
    char csrf[100];
    get_str(j, "csrf", csrf, sizeof csrf);
    json_decref(j);
    snprintf(s->csrf, sizeof s->csrf, "X-Tokend-CSRF: %s", csrf);
}

/* A token made by session s: its secret and client ID. */
static void session_token(const session *s, const char *roles, char *secret, size_t scap,
                          char *id, size_t icap)
{
    char body[200];
    json_t *j;
    snprintf(body, sizeof body, "{\"description\":\"by session\",\"roles\":%s}", roles);
    assert_int_equal(call3(s->cookie, s->csrf, NULL, "POST", "/v1/tokens", body, &j, NULL), 201);
    get_str(j, "secret", secret, scap);
    get_str(j, "client_id", id, icap);
    json_decref(j);
}

/* A gateway verification of secret over HTTP: the status; the roles
 * header into roles when not NULL. */
static int http_verify(const char *secret, char *roles, size_t cap)
{
    char h[200];
    hraw_resp r;
    snprintf(h, sizeof h, "Authorization: Bearer %s", secret);
    int st = call3(h, NULL, NULL, "GET", "/v1/verify", NULL, NULL, &r);
    if (roles && !hraw_header(&r, "X-Tokend-Roles", roles, cap))
        roles[0] = 0;
    hraw_free(&r);
    return st;
}

/* VERIFY over the binary protocol: valid, and its roles joined. */
static bool binary_verify(const char *secret, char *roles, size_t cap)
{
    int fd = raw_connect(W.srv.port);
    assert_true(fd >= 0);
    mpw b;
    mpw_init(&b);
    raw_map(&b, "secret:s", secret);
    raw_reply r;
    assert_int_equal(raw_call(fd, OP_VERIFY, 1, &b, &r), 0);
    bool valid = false;
    assert_true(raw_get_bool(&r, "valid", &valid));
    if (valid && roles)
        raw_get_strs(&r, "roles", roles, cap);
    raw_reply_free(&r);
    mpw_free(&b);
    close(fd);
    return valid;
}

/* ---- minting ------------------------------------------------------------- */

static void mint_is_the_operators_for_portal_users(void **state)
{
    (void)state;
    char path[300];
    const char *body = "{\"tenant\":\"acme\",\"account\":\"bigco\",\"user\":\"ana\"}";
    refused(NULL, NULL, "POST", "/v1/portal/sessions", body, 401, "unauthenticated");
    refused(W.ana, NULL, "POST", "/v1/portal/sessions", body, 403, "denied");
    /* rule 2: bob has no portal flag */
    refused(W.op, NULL, "POST", "/v1/portal/sessions",
            "{\"tenant\":\"acme\",\"account\":\"bigco\",\"user\":\"bob\"}", 403, "denied");
    refused(W.op, NULL, "POST", "/v1/portal/sessions",
            "{\"tenant\":\"acme\",\"account\":\"bigco\",\"user\":\"nobody\"}", 404, "not_found");
    /* rule 7: eve is in another tenant */
    refused(W.op, NULL, "POST", "/v1/portal/sessions",
            "{\"tenant\":\"acme\",\"account\":\"x\",\"user\":\"eve\"}", 404, "not_found");
    refused(W.op, NULL, "POST", "/v1/portal/sessions",
            "{\"tenant\":\"acme\",\"account\":\"bigco\"}", 400, "invalid");
    refused(W.op, NULL, "POST", "/v1/portal/sessions",
            "{\"tenant\":\"acme\",\"account\":\"bigco\",\"user\":\"ana\",\"x\":1}", 400,
            "invalid");
    refused(W.op, NULL, "POST", "/v1/portal/sessions",
            "{\"tenant\":\"acme\",\"account\":\"bigco\",\"user\":\"Ana\"}", 400, "invalid");
    char big[400];
    snprintf(big, sizeof big, "{\"tenant\":\"acme\",\"account\":\"bigco\",\"user\":\"%0200d\"}",
             0);
    refused(W.op, NULL, "POST", "/v1/portal/sessions", big, 400, "invalid");
    refused(W.op, NULL, "POST", "/v1/portal/sessions", "{\"tenant\":", 400, "invalid");
    mint("acme", "bigco", "ana", path, sizeof path, NULL, 0);
    /* Over the binary protocol: refused by name, the connection goes on. */
    int fd = raw_connect(W.srv.port);
    assert_true(fd >= 0);
    mpw b;
    mpw_init(&b);
    raw_map(&b, "tenant:s account:s user:s", "acme", "bigco", "ana");
    raw_reply r;
    assert_int_equal(raw_call(fd, OP_PORTAL_SESSION_CREATE, 1, &b, &r), proto_status(TK_EOPCODE));
    raw_reply_free(&r);
    mpw_reset(&b);
    mpw_map(&b, 0);
    assert_int_equal(raw_call(fd, OP_PING, 2, &b, &r), 0);
    raw_reply_free(&r);
    mpw_free(&b);
    close(fd);
}

/* ---- the link and the cookie ------------------------------------------- */

static void link_opens_one_session_once(void **state)
{
    (void)state;
    char path[300];
    session s;
    hraw_resp r;
    mint("acme", "bigco", "ana", path, sizeof path, NULL, 0);
    open_link(path, &s);
    /* The cookie: never for scripts, never cross-site, only for the API. */
    assert_non_null(strstr(s.set_cookie, "HttpOnly"));
    assert_non_null(strstr(s.set_cookie, "SameSite=Strict"));
    assert_non_null(strstr(s.set_cookie, "Path=/v1/"));
    assert_non_null(strstr(s.set_cookie, "Max-Age=900"));
    assert_null(strstr(s.set_cookie, "Secure")); /* plain http here: see link_secure_... */
    /* Used: a second use is refused, with a page that says so. */
    assert_int_equal(call3(NULL, NULL, NULL, "GET", path, NULL, NULL, &r), 401);
    assert_non_null(strstr(r.body, "This link is not valid"));
    char v[200];
    assert_false(hraw_header(&r, "Set-Cookie", v, sizeof v));
    hraw_free(&r);
    /* A made-up code, a truncated one, garbage. */
    assert_int_equal(call3(NULL, NULL, NULL, "GET",
                           "/portal/?code=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                           NULL, NULL, NULL),
                     401);
    path[strlen(path) - 1] = 0;
    assert_int_equal(call3(NULL, NULL, NULL, "GET", path, NULL, NULL, NULL), 401);
    assert_int_equal(call3(NULL, NULL, NULL, "GET", "/portal/?code=%00%ff", NULL, NULL, NULL),
                     401);
    /* The session acts as ana. */
    json_t *j;
    assert_int_equal(call3(s.cookie, NULL, NULL, "GET", "/v1/portal/session", NULL, &j, NULL),
                     200);
    assert_string_equal(json_string_value(json_object_get(j, "actor")), "user");
    assert_string_equal(json_string_value(json_object_get(j, "via")), "session");
    assert_string_equal(json_string_value(json_object_get(j, "tenant")), "acme");
    assert_string_equal(json_string_value(json_object_get(j, "account")), "bigco");
    assert_string_equal(json_string_value(json_object_get(j, "user")), "ana");
    assert_true(json_integer_value(json_object_get(j, "expires_at")) > time(NULL) + 800);
    json_decref(j);
    /* Counted in /metrics (once a second). */
    tkt_sleep_ms(1300);
    assert_int_equal(call3(NULL, NULL, NULL, "GET", "/metrics", NULL, NULL, &r), 200);
    const char *m = strstr(r.body, "\ntokend_portal_sessions ");
    assert_non_null(m);
    assert_int_equal(atoi(m + strlen("\ntokend_portal_sessions ")), 1);
    hraw_free(&r);
}

static void link_expires(void **state)
{
    (void)state;
    const char *extra[] = {"--portal-link-ttl", "1", NULL};
    teardown(state);
    raw_watchdog(TEST_SECONDS);
    start(extra);
    char path[300];
    mint("acme", "bigco", "ana", path, sizeof path, NULL, 0);
    tkt_sleep_ms(2100);
    assert_int_equal(call3(NULL, NULL, NULL, "GET", path, NULL, NULL, NULL), 401);
}

static void link_secure_when_the_page_is_https(void **state)
{
    (void)state;
    const char *extra[] = {"--portal-url", "https://tokens.example.com/", NULL};
    teardown(state);
    raw_watchdog(TEST_SECONDS);
    start(extra);
    json_t *j;
    assert_int_equal(call(W.op, "POST", "/v1/portal/sessions",
                          "{\"tenant\":\"acme\",\"account\":\"bigco\",\"user\":\"ana\"}", &j),
                     201);
    char url[300];
    get_str(j, "url", url, sizeof url);
    json_decref(j);
    const char *prefix = "https://tokens.example.com/portal/?code=";
    assert_memory_equal(url, prefix, strlen(prefix));
    char path[300];
    snprintf(path, sizeof path, "%s", url + strlen("https://tokens.example.com"));
    session s;
    open_link(path, &s);
    assert_non_null(strstr(s.set_cookie, "; Secure"));
}

/* ---- what a session may do ------------------------------------------------ */

static void changes_need_the_csrf_token(void **state)
{
    (void)state;
    char path[300], secret[128], id[64], p[200];
    session s;
    mint("acme", "bigco", "ana", path, sizeof path, NULL, 0);
    open_link(path, &s);
    const char *body = "{\"description\":\"x\",\"roles\":[\"viewer\"]}";
    refused(s.cookie, NULL, "POST", "/v1/tokens", body, 403, "denied");
    refused(s.cookie, "X-Tokend-CSRF: nope", "POST", "/v1/tokens", body, 403, "denied");
    char wrong[160];
    snprintf(wrong, sizeof wrong, "%s", s.csrf);
    wrong[strlen(wrong) - 1] ^= 1;
    refused(s.cookie, wrong, "POST", "/v1/tokens", body, 403, "denied");
    session_token(&s, "[\"viewer\"]", secret, sizeof secret, id, sizeof id);
    assert_int_equal(http_verify(secret, NULL, 0), 200);
    snprintf(p, sizeof p, "/v1/tokens/%s", id);
    refused(s.cookie, NULL, "DELETE", p, NULL, 403, "denied");
    refused(s.cookie, NULL, "DELETE", "/v1/portal/session", NULL, 403, "denied");
    assert_int_equal(http_verify(secret, NULL, 0), 200); /* nothing was deleted */
    /* Reads need no token; changes with it go through. */
    ok(s.cookie, "GET", "/v1/tokens", NULL, 200);
    assert_int_equal(call3(s.cookie, s.csrf, NULL, "DELETE", p, NULL, NULL, NULL), 200);
    assert_int_equal(http_verify(secret, NULL, 0), 401);
}

static void session_is_bound_by_the_users_rules(void **state)
{
    (void)state;
    char path[300], secret[128], id[64], p[200];
    session ana, eve;
    mint("acme", "bigco", "ana", path, sizeof path, NULL, 0);
    open_link(path, &ana);
    mint("other", "x", "eve", path, sizeof path, NULL, 0);
    open_link(path, &eve);
    /* rule 3: no role stronger than ana's own (editor, level 1) */
    refused(ana.cookie, ana.csrf, "POST", "/v1/tokens", "{\"roles\":[\"owner\"]}", 403,
            "denied");
    session_token(&ana, "[\"editor\",\"viewer\"]", secret, sizeof secret, id, sizeof id);
    char roles[100];
    assert_true(binary_verify(secret, roles, sizeof roles));
    assert_string_equal(roles, "editor,viewer");
    /* rule 7: eve's session sees nothing of acme, whatever it names */
    snprintf(p, sizeof p, "/v1/tokens/%s", id);
    refused(eve.cookie, NULL, "GET", p, NULL, 404, "not_found");
    refused(eve.cookie, eve.csrf, "DELETE", p, NULL, 404, "not_found");
    refused(eve.cookie, NULL, "GET", "/v1/tenants/acme/roles", NULL, 404, "not_found");
    refused(eve.cookie, NULL, "GET", "/v1/tenants", NULL, 403, "denied");
    json_t *j;
    assert_int_equal(call3(eve.cookie, NULL, NULL, "GET", "/v1/tokens", NULL, &j, NULL), 200);
    assert_int_equal(json_array_size(json_object_get(j, "tokens")), 0);
    json_decref(j);
    /* One session's CSRF token does not pass for another's. */
    char mixed[160];
    snprintf(mixed, sizeof mixed, "%s", eve.csrf);
    refused(ana.cookie, mixed, "POST", "/v1/tokens", "{\"roles\":[\"viewer\"]}", 403, "denied");
    /* Operator-only operations refuse a session. */
    refused(ana.cookie, ana.csrf, "POST", "/v1/portal/sessions",
            "{\"tenant\":\"acme\",\"account\":\"bigco\",\"user\":\"ana\"}", 403, "denied");
    refused(ana.cookie, ana.csrf, "PATCH", "/v1/tenant", "{\"api_tokens\":false}", 405,
            "method_not_allowed");
    /* Oversized and malformed fields, as on the JSON API. */
    char big[1400];
    memset(big, 0, sizeof big);
    memcpy(big, "{\"description\":\"", 16);
    memset(big + 16, 'd', 1100);
    strcat(big, "\",\"roles\":[\"viewer\"]}");
    refused(ana.cookie, ana.csrf, "POST", "/v1/tokens", big, 400, "invalid");
    refused(ana.cookie, ana.csrf, "POST", "/v1/tokens", "{\"description\":\"\\u0001\","
                                                        "\"roles\":[\"viewer\"]}",
            400, "invalid");
    refused(ana.cookie, NULL, "GET", "/v1/tokens?search=%ff", NULL, 400, "invalid");
    /* Forged cookies. */
    refused("Cookie: tokend_portal=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL,
            "GET", "/v1/tokens", NULL, 401, "unauthenticated");
    refused("Cookie: tokend_portal=", NULL, "GET", "/v1/tokens", NULL, 401, "unauthenticated");
    char forged[320];
    snprintf(forged, sizeof forged, "%s", ana.cookie);
    forged[strlen(forged) - 3] ^= 2;
    refused(forged, NULL, "GET", "/v1/tokens", NULL, 401, "unauthenticated");
    /* A key wins over a cookie: ambient credentials do not mix. */
    ok(W.op, "GET", "/v1/tenants", NULL, 200);
    assert_int_equal(call3(W.op, ana.cookie, NULL, "GET", "/v1/tenants", NULL, NULL, NULL), 200);
    /* A gateway never takes a session for a token. */
    assert_int_equal(call3(ana.cookie, NULL, NULL, "GET", "/v1/verify", NULL, NULL, NULL), 401);
}

static void search_finds_by_description_id_and_creator(void **state)
{
    (void)state;
    char path[300], secret[128], id[64], q[200];
    session s;
    json_t *j;
    mint("acme", "bigco", "ana", path, sizeof path, NULL, 0);
    open_link(path, &s);
    for (int i = 0; i < 5; i++) {
        char body[200];
        snprintf(body, sizeof body, "{\"description\":\"%s %d\",\"roles\":[\"viewer\"]}",
                 i % 2 ? "Billing Export" : "deploy bot", i);
        assert_int_equal(call3(s.cookie, s.csrf, NULL, "POST", "/v1/tokens", body, &j, NULL),
                         201);
        if (i == 4)
            get_str(j, "client_id", id, sizeof id);
        json_decref(j);
    }
    (void)secret;
    assert_int_equal(call3(s.cookie, NULL, NULL, "GET", "/v1/tokens?search=billing%20EXPORT",
                           NULL, &j, NULL),
                     200);
    assert_int_equal(json_array_size(json_object_get(j, "tokens")), 2);
    json_decref(j);
    /* Paged: one a page, then the next. */
    assert_int_equal(call3(s.cookie, NULL, NULL, "GET", "/v1/tokens?search=deploy&limit=2",
                           NULL, &j, NULL),
                     200);
    assert_int_equal(json_array_size(json_object_get(j, "tokens")), 2);
    assert_true(json_is_true(json_object_get(j, "more")));
    char next[64];
    get_str(j, "next", next, sizeof next);
    json_decref(j);
    snprintf(q, sizeof q, "/v1/tokens?search=deploy&limit=2&after=%s", next);
    assert_int_equal(call3(s.cookie, NULL, NULL, "GET", q, NULL, &j, NULL), 200);
    assert_int_equal(json_array_size(json_object_get(j, "tokens")), 1);
    assert_false(json_is_true(json_object_get(j, "more")));
    json_decref(j);
    snprintf(q, sizeof q, "/v1/tokens?search=%.8s", id + 4);
    assert_int_equal(call3(s.cookie, NULL, NULL, "GET", q, NULL, &j, NULL), 200);
    assert_int_equal(json_array_size(json_object_get(j, "tokens")), 1);
    json_decref(j);
    assert_int_equal(call3(s.cookie, NULL, NULL, "GET", "/v1/tokens?search=AN", NULL, &j, NULL),
                     200); /* the creator, ana */
    assert_int_equal(json_array_size(json_object_get(j, "tokens")), 5);
    json_decref(j);
    assert_int_equal(call3(s.cookie, NULL, NULL, "GET", "/v1/tokens?search=zzz", NULL, &j, NULL),
                     200);
    assert_int_equal(json_array_size(json_object_get(j, "tokens")), 0);
    assert_false(json_is_true(json_object_get(j, "more")));
    json_decref(j);
}

/* ---- a session's end -------------------------------------------------------- */

static void session_ends_on_sign_out_flag_and_delete(void **state)
{
    (void)state;
    char path[300];
    session s;
    hraw_resp r;
    char v[200];
    /* Signed out: the cookie is cleared and acts no more. */
    mint("acme", "bigco", "ana", path, sizeof path, NULL, 0);
    open_link(path, &s);
    assert_int_equal(call3(s.cookie, s.csrf, NULL, "DELETE", "/v1/portal/session", NULL, NULL, &r),
                     200);
    assert_true(hraw_header(&r, "Set-Cookie", v, sizeof v));
    assert_non_null(strstr(v, "Max-Age=0"));
    hraw_free(&r);
    refused(s.cookie, NULL, "GET", "/v1/tokens", NULL, 401, "unauthenticated");
    /* The portal flag taken away: ended, even when given back. */
    mint("acme", "bigco", "ana", path, sizeof path, NULL, 0);
    open_link(path, &s);
    ok(W.op, "PATCH", "/v1/tenants/acme/accounts/bigco/users/ana", "{\"portal\":false}", 200);
    refused(s.cookie, NULL, "GET", "/v1/tokens", NULL, 401, "unauthenticated");
    ok(W.op, "PATCH", "/v1/tenants/acme/accounts/bigco/users/ana", "{\"portal\":true}", 200);
    refused(s.cookie, NULL, "GET", "/v1/portal/session", NULL, 401, "unauthenticated");
    /* The user deleted. */
    mint("acme", "bigco", "ana", path, sizeof path, NULL, 0);
    open_link(path, &s);
    ok(W.op, "DELETE", "/v1/tenants/acme/accounts/bigco/users/ana", NULL, 200);
    refused(s.cookie, s.csrf, "POST", "/v1/tokens", "{\"roles\":[\"viewer\"]}", 401,
            "unauthenticated");
}

static void session_expires(void **state)
{
    (void)state;
    const char *extra[] = {"--portal-session-ttl", "1", NULL};
    teardown(state);
    raw_watchdog(TEST_SECONDS);
    start(extra);
    char path[300];
    session s;
    mint("acme", "bigco", "ana", path, sizeof path, NULL, 0);
    open_link(path, &s);
    tkt_sleep_ms(2100);
    refused(s.cookie, NULL, "GET", "/v1/tokens", NULL, 401, "unauthenticated");
}

/* One tenant's links and sessions cannot take the table from another. */
static void one_tenant_cannot_hold_every_session(void **state)
{
    (void)state;
    const char *extra[] = {"--portal-tenant-sessions", "3", "--portal-max-sessions", "5", NULL};
    teardown(state);
    raw_watchdog(TEST_SECONDS);
    start(extra);
    char path[300];
    const char *body = "{\"tenant\":\"acme\",\"account\":\"bigco\",\"user\":\"ana\"}";
    for (int i = 0; i < 3; i++)
        mint("acme", "bigco", "ana", path, sizeof path, NULL, 0);
    refused(W.op, NULL, "POST", "/v1/portal/sessions", body, 413, "limit");
    mint("other", "x", "eve", path, sizeof path, NULL, 0);
    mint("other", "x", "eve", path, sizeof path, NULL, 0);
    refused(W.op, NULL, "POST", "/v1/portal/sessions",
            "{\"tenant\":\"other\",\"account\":\"x\",\"user\":\"eve\"}", 413, "limit");
}

/* ---- the page's files -------------------------------------------------------- */

static void page_is_self_contained_and_strict(void **state)
{
    (void)state;
    hraw_resp r;
    char v[600];
    const char *files[] = {"/portal/", "/portal/portal.js", "/portal/portal.css"};
    const char *types[] = {"text/html", "text/javascript", "text/css"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(call3(NULL, NULL, NULL, "GET", files[i], NULL, NULL, &r), 200);
        assert_true(hraw_header(&r, "Content-Type", v, sizeof v));
        assert_memory_equal(v, types[i], strlen(types[i]));
        assert_true(hraw_header(&r, "Content-Security-Policy", v, sizeof v));
        assert_null(strstr(v, "unsafe-inline"));
        assert_null(strstr(v, "unsafe-eval"));
        assert_non_null(strstr(v, "script-src 'self'"));
        assert_non_null(strstr(v, "default-src 'none'"));
        assert_true(hraw_header(&r, "X-Content-Type-Options", v, sizeof v));
        assert_true(hraw_header(&r, "Referrer-Policy", v, sizeof v));
        assert_string_equal(v, "no-referrer");
        /* Nothing from the network: no absolute URL to load, no @import. */
        assert_null(strstr(r.body, "src=\"http"));
        assert_null(strstr(r.body, "href=\"http"));
        assert_null(strstr(r.body, "url(http"));
        assert_null(strstr(r.body, "@import"));
        if (i == 0) { /* no inline script, style or handler: the CSP would block them */
            assert_null(strstr(r.body, "<script>"));
            assert_null(strstr(r.body, "<style"));
            assert_null(strstr(r.body, " style="));
            assert_null(strstr(r.body, " onclick="));
        }
        hraw_free(&r);
    }
    assert_int_equal(call3(NULL, NULL, NULL, "GET", "/portal/nope.js", NULL, NULL, NULL), 404);
    assert_int_equal(call3(NULL, NULL, NULL, "GET", "/portal/../v1/ping", NULL, NULL, NULL), 404);
    assert_int_equal(call3(NULL, NULL, NULL, "POST", "/portal/", "x", NULL, NULL), 405);
    assert_int_equal(call3(NULL, NULL, NULL, "GET", "/portal", NULL, NULL, &r), 308);
    assert_true(hraw_header(&r, "Location", v, sizeof v));
    assert_string_equal(v, "/portal/");
    hraw_free(&r);
}

/* ---- the whole flow, in a browser ------------------------------------------- */

static brw *B;

static void shot(const char *name, int width)
{
    char path[200];
    snprintf(path, sizeof path, SHOTS "/%d-%s.png", width, name);
    if (brw_shot(B, path) != 0)
        fail_msg("screenshot %s: %s", path, brw_error(B));
}

#define BRW(call)                                                                          \
    do {                                                                                   \
        if ((call) != 0)                                                                   \
            fail_msg("%s: %s", #call, brw_error(B));                                       \
    } while (0)

static bool page_holds(const char *needle)
{
    char script[300];
    snprintf(script, sizeof script, "return document.documentElement.outerHTML.includes('%s');",
             needle);
    json_t *v = brw_js(B, script);
    if (!v)
        fail_msg("js: %s", brw_error(B));
    bool yes = json_is_true(v);
    json_decref(v);
    return yes;
}

static int js_int(const char *script)
{
    json_t *v = brw_js(B, script);
    if (!v)
        fail_msg("js: %s", brw_error(B));
    int n = (int)json_integer_value(v);
    json_decref(v);
    return n;
}

/* Types text into css after clearing it. */
static int type_clear(const char *css, const char *text)
{
    json_t *v = brw_call(B, "type", json_pack("{s:s,s:s,s:b}", "css", css, "text", text,
                                              "clear", 1));
    int rc = v ? 0 : -1;
    json_decref(v);
    return rc;
}

static void walk_the_flow_in_a_browser(void **state)
{
    (void)state;
    char why[300];
    if (!brw_available(why, sizeof why))
        fail_msg("%s", why);
    mkdir("build", 0755);
    mkdir("build/test-logs", 0755);
    mkdir(SHOTS, 0755);
    if (brw_open(&B) != 0)
        fail_msg("the browser: %s", brw_error(NULL));
    char path[300], url[512], sel[200], roles[100];
    mint("acme", "bigco", "ana", path, sizeof path, url, sizeof url);

    /* The user arrives from the vendor's redirect. */
    BRW(brw_size(B, 1440, 900));
    BRW(brw_get(B, url));
    BRW(brw_wait(B, "#app", "visible"));
    char *t = brw_text(B, "#whoami");
    assert_non_null(t);
    assert_non_null(strstr(t, "ana"));
    free(t);
    json_t *loc = brw_js(B, "return location.href;");
    assert_non_null(loc);
    assert_null(strstr(json_string_value(loc), "code=")); /* gone from the address bar */
    json_decref(loc);
    BRW(brw_wait(B, "#tokens-empty", "visible"));
    shot("1-empty-list", 1440);

    /* Generate: a stronger role is shown but cannot be chosen. */
    BRW(brw_click(B, "#generate"));
    BRW(brw_wait(B, "#generate-dialog", "visible"));
    char *dis = brw_attr(B, "#role-owner", "disabled");
    assert_non_null(dis);
    free(dis);
    t = brw_text(B, "#role-reason-owner");
    assert_non_null(t);
    assert_non_null(strstr(t, "Stronger"));
    free(t);
    dis = brw_attr(B, "#role-editor", "disabled");
    assert_null(dis);
    /* Not clickable (brw_click waits for an enabled element), and a click
     * from script does not check it either. */
    json_t *checked = brw_js(B, "const o = document.getElementById('role-owner'); o.click();"
                                "return o.checked;");
    assert_true(json_is_false(checked));
    json_decref(checked);
    BRW(brw_type(B, "#gen-description", "deploy bot"));
    BRW(brw_click(B, "#role-editor"));
    BRW(brw_select(B, "#gen-expiry", "2592000"));
    shot("2-generate", 1440);
    BRW(brw_click(B, "#gen-submit"));
    BRW(brw_wait(B, "#secret-dialog", "visible"));
    char *secret = brw_text(B, "#secret-value");
    char *cid = brw_text(B, "#secret-client-id");
    assert_non_null(secret);
    assert_non_null(cid);
    assert_true(strlen(secret) > 40);
    t = brw_text(B, "#secret-warning");
    assert_non_null(strstr(t, "will not be shown again"));
    free(t);
    BRW(brw_key(B, NULL, "Escape")); /* does not close it: the secret is shown once */
    assert_int_equal(brw_visible(B, "#secret-dialog"), 1);
    BRW(brw_click(B, "#copy-secret"));
    char *clip = brw_clipboard(B);
    if (!clip)
        fail_msg("clipboard: %s", brw_error(B));
    assert_string_equal(clip, secret);
    free(clip);
    shot("3-secret-once", 1440);

    /* The copied secret verifies, over HTTP and the binary protocol, with
     * the role chosen. */
    assert_int_equal(http_verify(secret, roles, sizeof roles), 200);
    assert_string_equal(roles, "editor");
    assert_true(binary_verify(secret, roles, sizeof roles));
    assert_string_equal(roles, "editor");

    /* Closed: the secret is nowhere on the page; the token is listed. */
    BRW(brw_click(B, "#secret-done"));
    BRW(brw_wait(B, "#secret-dialog", "gone"));
    snprintf(sel, sizeof sel, "tr[data-client-id=\"%s\"]", cid);
    BRW(brw_wait(B, sel, "visible"));
    assert_false(page_holds(secret));
    t = brw_text(B, sel);
    assert_non_null(strstr(t, "deploy bot"));
    assert_non_null(strstr(t, "editor"));
    free(t);
    shot("4-listed", 1440);

    /* Search. */
    BRW(brw_type(B, "#tokens-search", "nothing-like-it"));
    BRW(brw_wait(B, "#tokens-empty", "visible"));
    BRW(type_clear("#tokens-search", "DEPLOY"));
    BRW(brw_wait(B, sel, "visible"));

    /* At a phone's width: no sideways scroll. */
    BRW(brw_size(B, 360, 780));
    BRW(brw_wait(B, sel, "present"));
    assert_true(js_int("return document.documentElement.scrollWidth;") <= 360);
    shot("4-listed", 360);
    BRW(brw_click(B, "#generate"));
    BRW(brw_wait(B, "#generate-dialog", "visible"));
    assert_true(js_int("return document.documentElement.scrollWidth;") <= 360);
    shot("2-generate", 360);
    BRW(brw_key(B, NULL, "Escape"));
    BRW(brw_wait(B, "#generate-dialog", "gone"));
    BRW(brw_size(B, 1440, 900));

    /* Delete from the token's menu, confirmed: it no longer verifies. */
    char menu[260];
    snprintf(menu, sizeof menu, "%s button.token-menu", sel);
    BRW(brw_click(B, menu));
    snprintf(menu, sizeof menu, "%s button.token-delete", sel);
    BRW(brw_click(B, menu));
    BRW(brw_wait(B, "#delete-dialog", "visible"));
    t = brw_text(B, "#delete-dialog");
    assert_non_null(strstr(t, "cannot be undone"));
    assert_non_null(strstr(t, cid));
    free(t);
    shot("5-delete-confirm", 1440);
    BRW(brw_click(B, "#delete-confirm"));
    BRW(brw_wait(B, sel, "gone"));
    assert_int_equal(http_verify(secret, NULL, 0), 401);
    assert_false(binary_verify(secret, NULL, 0));
    shot("6-deleted", 1440);

    /* Reloaded: the page comes back through the cookie, no secret in it. */
    char page[100];
    snprintf(page, sizeof page, "http://127.0.0.1:%d/portal/", W.srv.http_port);
    BRW(brw_get(B, page));
    BRW(brw_wait(B, "#app", "visible"));
    assert_false(page_holds(secret));
    json_t *cookies = brw_call(B, "cookies", NULL);
    assert_non_null(cookies);
    char *dump = json_dumps(cookies, 0);
    assert_null(strstr(dump, secret));
    free(dump);
    json_decref(cookies);

    /* The personal keys, apart, reached from the keyboard: the arrow keys
     * move between the tabs. */
    BRW(brw_key(B, "#tab-tokens", "ArrowRight"));
    BRW(brw_wait(B, "#panel-keys", "visible"));
    char *sel_attr = brw_attr(B, "#tab-keys", "aria-selected");
    assert_non_null(sel_attr);
    assert_string_equal(sel_attr, "true");
    free(sel_attr);
    BRW(brw_wait(B, "#keys-table tr[data-key-id]", "visible"));
    shot("7-keys", 1440);

    /* The link, used already, is refused in the browser too. */
    BRW(brw_get(B, url));
    BRW(brw_wait(B, "#link-error", "visible"));
    shot("8-link-used", 1440);

    /* Signed out: the session is gone. */
    BRW(brw_get(B, page));
    BRW(brw_wait(B, "#app", "visible"));
    BRW(brw_click(B, "#signout"));
    BRW(brw_wait(B, "#app", "gone"));
    json_t *st = brw_js(B, "return fetch('/v1/portal/session', {credentials: 'same-origin'})"
                           ".then(r => r.status);");
    (void)st;
    json_decref(st);

    /* An operator pastes the operator key: the tenant admin view. */
    BRW(brw_get(B, page));
    BRW(brw_wait(B, "#signin", "visible"));
    BRW(brw_type(B, "#signin-key", W.op_key));
    BRW(brw_click(B, "#signin-submit"));
    BRW(brw_wait(B, "#panel-admin", "visible"));
    BRW(brw_select(B, "#admin-tenant", "acme"));
    BRW(brw_wait(B, "#admin-roles-table tr[data-role=\"owner\"]", "visible"));
    t = brw_text(B, "#admin-roles-table");
    assert_non_null(strstr(t, "Editor"));
    free(t);
    shot("9-admin", 1440);
    /* The toggle off: ana's other tokens stop verifying (rule 1). */
    char s2[128], id2[64];
    session s;
    mint("acme", "bigco", "ana", path, sizeof path, NULL, 0);
    open_link(path, &s);
    session_token(&s, "[\"viewer\"]", s2, sizeof s2, id2, sizeof id2);
    assert_int_equal(http_verify(s2, NULL, 0), 200);
    BRW(brw_click(B, "#admin-api-tokens"));
    BRW(brw_wait(B, "#status", "visible"));
    assert_int_equal(http_verify(s2, NULL, 0), 401);
    BRW(brw_click(B, "#admin-api-tokens"));
    tkt_sleep_ms(300);
    assert_int_equal(http_verify(s2, NULL, 0), 200);

    /* A user pastes a personal key: the same tokens tab. */
    BRW(brw_get(B, page));
    BRW(brw_wait(B, "#signin", "visible"));
    BRW(brw_type(B, "#signin-key", W.ana_key));
    BRW(brw_click(B, "#signin-submit"));
    BRW(brw_wait(B, "#panel-tokens", "visible"));
    snprintf(sel, sizeof sel, "tr[data-client-id=\"%s\"]", id2);
    BRW(brw_wait(B, sel, "visible"));
    /* The API's refusal, in words: API tokens switched off meanwhile. */
    ok(W.op, "PATCH", "/v1/tenants/acme", "{\"api_tokens\":false}", 200);
    BRW(brw_click(B, "#generate"));
    BRW(brw_wait(B, "#generate-dialog", "visible"));
    BRW(brw_click(B, "#role-viewer"));
    BRW(brw_click(B, "#gen-submit"));
    BRW(brw_wait(B, "#gen-error", "visible"));
    t = brw_text(B, "#gen-error");
    assert_non_null(strstr(t, "Could not create the token"));
    assert_non_null(strstr(t, "acme"));
    free(t);
    shot("10-refused", 1440);
    ok(W.op, "PATCH", "/v1/tenants/acme", "{\"api_tokens\":true}", 200);
    /* A wrong key is refused in words. */
    BRW(brw_get(B, page));
    BRW(brw_wait(B, "#signin", "visible"));
    BRW(brw_type(B, "#signin-key", "tk_nope"));
    BRW(brw_click(B, "#signin-submit"));
    BRW(brw_wait(B, "#signin-error", "visible"));

    /* The page ran under its CSP without a violation. */
    json_t *console = brw_call(B, "console", NULL);
    assert_true(json_is_array(console));
    char *log = json_dumps(console, 0);
    if (strstr(log, "Content Security Policy") || strstr(log, "Refused to"))
        fail_msg("the browser's console: %s", log);
    free(log);
    json_decref(console);
    free(secret);
    free(cid);
    brw_close(B);
    B = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(mint_is_the_operators_for_portal_users, setup, teardown),
        cmocka_unit_test_setup_teardown(link_opens_one_session_once, setup, teardown),
        cmocka_unit_test_setup_teardown(link_expires, setup, teardown),
        cmocka_unit_test_setup_teardown(link_secure_when_the_page_is_https, setup, teardown),
        cmocka_unit_test_setup_teardown(changes_need_the_csrf_token, setup, teardown),
        cmocka_unit_test_setup_teardown(session_is_bound_by_the_users_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(search_finds_by_description_id_and_creator, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(session_ends_on_sign_out_flag_and_delete, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(session_expires, setup, teardown),
        cmocka_unit_test_setup_teardown(one_tenant_cannot_hold_every_session, setup, teardown),
        cmocka_unit_test_setup_teardown(page_is_self_contained_and_strict, setup, teardown),
        cmocka_unit_test_setup_teardown(walk_the_flow_in_a_browser, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
