/*
 * test_http.c - bin/tokend's HTTP listener end to end (net/http.c): each
 * test starts the real server with a fresh data directory, builds a small
 * world through the JSON API, and drives /v1/verify, the JSON API,
 * /metrics and the health endpoints with hand-written HTTP
 * (tests/support/hraw.h). After each bad-input test both listeners must
 * still answer (alive()).
 *
 * The world: tenant acme (API tokens on) with roles admin (level 0:
 * orders:read, orders:write) and viewer (level 5: orders:read), account
 * bigco with alice (viewer, portal) and bob (viewer, no portal), and alice's
 * token (viewer); tenant other with account x and eve (viewer, portal).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/mp.h"
#include "net/proto.h"
#include "net/schema.h"
#include "tests/support/hraw.h"
#include "tests/support/japi.h"
#include "tests/support/raw.h"
#include "tests/support/tkt.h"

#define TEST_SECONDS 60

typedef struct world {
    raw_server srv;
    char op[160];          /* "Authorization: Bearer <operator key>" */
    char alice[160];       /* ... alice's personal key */
    char bob[160];
    char eve[160];
    char alice_pk[128];
    char secret[128];      /* alice's token */
    char client_id[64];
} world;

static world W;
/* The listener gateway verifications go to: the HTTP listener's port, or
 * the verify listener's (setup_verify), which must answer alike. */
static int GW_PORT;

/* ---- helpers ------------------------------------------------------------ */

/* A JSON API call on a new connection with one header line (or none);
 * the body parsed into *out (may be NULL). Returns the status. */
static int call(const char *auth, const char *method, const char *path, const char *body,
                json_t **out)
{
    const char *h[] = {auth, NULL};
    return japi_call(W.srv.http_port, h, method, path, body, out, NULL);
}

static void expect(const char *auth, const char *method, const char *path, const char *body,
                   int status)
{
    const char *h[] = {auth, NULL};
    japi_expect(W.srv.http_port, h, method, path, body, status);
}

/* The "error" code of a refusal. */
static void expect_error(const char *auth, const char *method, const char *path,
                         const char *body, int status, const char *code)
{
    const char *h[] = {auth, NULL};
    japi_refused(W.srv.http_port, h, method, path, body, status, code);
}

static void bearer(char *out, size_t cap, const char *key)
{
    snprintf(out, cap, "Authorization: Bearer %s", key);
}

/* A gateway verification with one header line (or none): the status, and
 * the response kept in *r when r is not NULL. */
static int gw(const char *path, const char *header, hraw_resp *r)
{
    const char *h[] = {header, NULL};
    hraw_resp tmp;
    hraw_resp *p = r ? r : &tmp;
    if (hraw_once(GW_PORT, "GET", path, header ? h : NULL, NULL, p) != 0)
        return 0;
    int st = p->status;
    if (!r)
        hraw_free(p);
    return st;
}

static int gw_secret(const char *secret)
{
    char h[200];
    bearer(h, sizeof h, secret);
    return gw("/v1/verify", h, NULL);
}


/* Both listeners still answer: an HTTP verification and a binary PING. */
static void alive(void)
{
    assert_int_equal(gw_secret(W.secret), 200);
    assert_int_equal(raw_ping(W.srv.port), 0);
}

static void get_str(json_t *j, const char *k, char *out, size_t cap)
{
    const char *v = json_string_value(json_object_get(j, k));
    assert_non_null(v);
    snprintf(out, cap, "%s", v);
}

static void make_user(const char *tenant, const char *account, const char *user,
                      const char *roles, bool portal, char *auth, size_t cap)
{
    bool alice = strcmp(user, "alice") == 0;
    japi_user(W.srv.http_port, W.op, tenant, account, user, roles, portal, auth, cap,
              alice ? W.alice_pk : NULL, sizeof W.alice_pk);
}

/* A token of alice's with roles (JSON array): its secret and client ID. */
static void make_token(const char *roles, char *secret, size_t scap, char *id, size_t icap)
{
    char body[200];
    json_t *j;
    snprintf(body, sizeof body, "{\"description\":\"ci\",\"roles\":%s}", roles);
    assert_int_equal(call(W.alice, "POST", "/v1/tokens", body, &j), 201);
    get_str(j, "secret", secret, scap);
    get_str(j, "client_id", id, icap);
    json_decref(j);
}

static void start(const char *const *extra)
{
    char key[128];
    memset(&W, 0, sizeof W);
    assert_int_equal(raw_server_start(&W.srv, NULL, extra), 0);
    assert_true(W.srv.http_port > 0);
    GW_PORT = W.srv.http_port;
    assert_int_equal(raw_read_key(&W.srv, "operator.key", key, sizeof key), 0);
    bearer(W.op, sizeof W.op, key);
    expect(W.op, "POST", "/v1/tenants", "{\"tenant\":\"acme\"}", 201);
    expect(W.op, "PATCH", "/v1/tenants/acme", "{\"api_tokens\":true}", 200);
    expect(W.op, "PUT", "/v1/tenants/acme/roles/admin",
           "{\"level\":0,\"permissions\":[\"orders:read\",\"orders:write\"]}", 200);
    expect(W.op, "PUT", "/v1/tenants/acme/roles/viewer",
           "{\"level\":5,\"permissions\":[\"orders:read\"]}", 200);
    expect(W.op, "POST", "/v1/tenants/acme/accounts", "{\"account\":\"bigco\"}", 201);
    make_user("acme", "bigco", "alice", "[\"viewer\"]", true, W.alice, sizeof W.alice);
    make_user("acme", "bigco", "bob", "[\"viewer\"]", false, W.bob, sizeof W.bob);
    expect(W.op, "POST", "/v1/tenants", "{\"tenant\":\"other\"}", 201);
    expect(W.op, "PATCH", "/v1/tenants/other", "{\"api_tokens\":true}", 200);
    expect(W.op, "PUT", "/v1/tenants/other/roles/viewer",
           "{\"level\":5,\"permissions\":[\"orders:read\"]}", 200);
    expect(W.op, "POST", "/v1/tenants/other/accounts", "{\"account\":\"x\"}", 201);
    make_user("other", "x", "eve", "[\"viewer\"]", true, W.eve, sizeof W.eve);
    make_token("[\"viewer\"]", W.secret, sizeof W.secret, W.client_id, sizeof W.client_id);
}

static int setup(void **state)
{
    (void)state;
    raw_watchdog(TEST_SECONDS);
    start(NULL);
    return 0;
}

static int setup_verify(void **state)
{
    setup(state);
    assert_true(W.srv.verify_port > 0);
    GW_PORT = W.srv.verify_port;
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

/* ---- gateway verification ------------------------------------------------ */

static void verify_credential_forms(void **state)
{
    (void)state;
    hraw_resp r;
    char h[600], v[200];

    bearer(h, sizeof h, W.secret);
    assert_int_equal(gw("/v1/verify", h, &r), 200);
    assert_true(hraw_header(&r, "X-Tokend-Tenant", v, sizeof v));
    assert_string_equal(v, "acme");
    assert_true(hraw_header(&r, "X-Tokend-Account", v, sizeof v));
    assert_string_equal(v, "bigco");
    assert_true(hraw_header(&r, "X-Tokend-Client-Id", v, sizeof v));
    assert_string_equal(v, W.client_id);
    assert_true(hraw_header(&r, "X-Tokend-Roles", v, sizeof v));
    assert_string_equal(v, "viewer");
    assert_true(hraw_header(&r, "X-Tokend-Permissions", v, sizeof v));
    assert_string_equal(v, "orders:read");
    hraw_free(&r);

    snprintf(h, sizeof h, "X-API-Key: %s", W.secret);
    assert_int_equal(gw("/v1/verify", h, NULL), 200);

    /* Basic base64(client_id:secret), and the pair must agree. */
    char pair[256], b64[400];
    snprintf(pair, sizeof pair, "%s:%s", W.client_id, W.secret);
    tkt_base64(pair, b64);
    snprintf(h, sizeof h, "Authorization: Basic %s", b64);
    assert_int_equal(gw("/v1/verify", h, NULL), 200);
    /* Another token's client ID with this secret: a mismatch. */
    char s2[128], id2[64];
    make_token("[\"viewer\"]", s2, sizeof s2, id2, sizeof id2);
    snprintf(pair, sizeof pair, "%s:%s", id2, W.secret);
    tkt_base64(pair, b64);
    snprintf(h, sizeof h, "Authorization: Basic %s", b64);
    assert_int_equal(gw("/v1/verify", h, &r), 401);
    assert_true(hraw_header(&r, "X-Tokend-Reason", v, sizeof v));
    assert_string_equal(v, "mismatch");
    hraw_free(&r);

    /* Malformed Basic: not base64, no colon. */
    assert_int_equal(gw("/v1/verify", "Authorization: Basic !!!notbase64", &r), 401);
    assert_true(hraw_header(&r, "X-Tokend-Reason", v, sizeof v));
    assert_string_equal(v, "malformed");
    hraw_free(&r);
    assert_int_equal(gw("/v1/verify", "Authorization: Basic bm9jb2xvbg==", NULL), 401);

    /* None: 401 with the challenge and a JSON body. */
    assert_int_equal(gw("/v1/verify", NULL, &r), 401);
    assert_true(hraw_header(&r, "WWW-Authenticate", v, sizeof v));
    assert_string_equal(v, "Bearer realm=\"tokend\"");
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    assert_non_null(j);
    assert_true(json_is_false(json_object_get(j, "valid")));
    assert_string_equal(json_string_value(json_object_get(j, "reason")), "missing");
    json_decref(j);
    hraw_free(&r);

    /* Any path under /v1/verify, any method, no body (Envoy's ext_authz). */
    bearer(h, sizeof h, W.secret);
    const char *hs[] = {h, "Content-Length: 0", NULL};
    assert_int_equal(hraw_once(GW_PORT, "POST", "/v1/verify/orders/7?x=1", hs, NULL, &r),
                     0);
    assert_int_equal(r.status, 200);
    hraw_free(&r);
    assert_int_equal(hraw_once(GW_PORT, "DELETE", "/v1/verify/", hs, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    hraw_free(&r);
    /* Not a prefix match on a longer word. */
    assert_int_equal(gw("/v1/verifyx", h, NULL), 404);

    /* A personal key is another kind (rule 8). */
    bearer(h, sizeof h, W.alice_pk);
    assert_int_equal(gw("/v1/verify", h, &r), 401);
    assert_true(hraw_header(&r, "X-Tokend-Reason", v, sizeof v));
    assert_string_equal(v, "wrong_kind");
    hraw_free(&r);
}

static void verify_required_permission(void **state)
{
    (void)state;
    char h[300];
    bearer(h, sizeof h, W.secret);
    assert_int_equal(gw("/v1/verify?permission=orders:read", h, NULL), 200);
    assert_int_equal(gw("/v1/verify?permission=orders:write", h, NULL), 403);
    assert_int_equal(gw("/v1/verify/x?permission=orders:read&permission=orders:write", h, NULL),
                     403);
    /* a requirement beside an item without '=' is still a requirement (it
     * was dropped with it: the answer was 200) */
    assert_int_equal(gw("/v1/verify?permission=orders:write&x", h, NULL), 403);
    assert_int_equal(gw("/v1/verify?x&permission=orders:write", h, NULL), 403);
    assert_int_equal(gw("/v1/verify?permission=orders:write&=1", h, NULL), 403);
    assert_int_equal(gw("/v1/verify?permission=orders%3Awrite", h, NULL), 403);
    assert_int_equal(gw("/v1/verify?permission=orders%3Aread&y", h, NULL), 200);
    assert_int_equal(gw("/v1/verify?permission", h, NULL), 403);
    const char *two[] = {h, "X-Tokend-Require-Permission: orders:read, orders:write", NULL};
    hraw_resp r;
    assert_int_equal(hraw_once(GW_PORT, "GET", "/v1/verify", two, NULL, &r), 0);
    assert_int_equal(r.status, 403);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "permission")), "orders:write");
    json_decref(j);
    hraw_free(&r);
    const char *one[] = {h, "X-Tokend-Require-Permission: orders:read", NULL};
    assert_int_equal(hraw_once(GW_PORT, "GET", "/v1/verify", one, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    hraw_free(&r);
    /* A role gaining the permission changes the answer at once (rule 6). */
    expect(W.op, "PUT", "/v1/tenants/acme/roles/viewer",
           "{\"level\":5,\"permissions\":[\"orders:read\",\"orders:write\"]}", 200);
    assert_int_equal(gw("/v1/verify?permission=orders:write", h, NULL), 200);
}

/* Rule 10 over HTTP: a verification pipelined behind the same connection's
 * delete sees the delete; rule 5: so does every other connection. */
static void delete_then_verify_pipelined(void **state)
{
    (void)state;
    int fd = raw_connect(W.srv.http_port);
    assert_true(fd >= 0);
    char reqs[2048];
    int n = snprintf(reqs, sizeof reqs,
                     "DELETE /v1/tokens/%s HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n"
                     "GET /v1/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n",
                     W.client_id, W.alice, W.secret);
    assert_int_equal(raw_write(fd, reqs, (size_t)n), 0);
    hraw_resp a, b;
    assert_int_equal(hraw_read(fd, &a, 10000), 0);
    assert_int_equal(a.status, 200);
    assert_int_equal(hraw_read(fd, &b, 10000), 0);
    assert_int_equal(b.status, 401);
    hraw_free(&a);
    hraw_free(&b);
    close(fd);
    assert_int_equal(gw_secret(W.secret), 401);
    /* Irreversible: gone from the listing and from a get. */
    char path[128];
    snprintf(path, sizeof path, "/v1/tokens/%s", W.client_id);
    expect_error(W.alice, "GET", path, NULL, 404, "not_found");
    expect_error(W.alice, "DELETE", path, NULL, 404, "not_found");
    make_token("[\"viewer\"]", W.secret, sizeof W.secret, W.client_id, sizeof W.client_id);
}

static void toggle_off_fails_verification(void **state)
{
    (void)state;
    hraw_resp r;
    char h[300], v[64];
    expect(W.op, "PATCH", "/v1/tenants/acme", "{\"api_tokens\":false}", 200);
    bearer(h, sizeof h, W.secret);
    assert_int_equal(gw("/v1/verify", h, &r), 401);
    assert_true(hraw_header(&r, "X-Tokend-Reason", v, sizeof v));
    assert_string_equal(v, "disabled");
    hraw_free(&r);
    /* and no token can be made meanwhile (rule 1) */
    expect_error(W.alice, "POST", "/v1/tokens", "{\"roles\":[\"viewer\"]}", 403, "disabled");
    expect(W.op, "PATCH", "/v1/tenants/acme", "{\"api_tokens\":true}", 200);
    assert_int_equal(gw_secret(W.secret), 200);
}

static void verify_json_for_backends(void **state)
{
    (void)state;
    char body[300];
    json_t *j;
    snprintf(body, sizeof body, "{\"secret\":\"%s\"}", W.secret);
    assert_int_equal(call(NULL, "POST", "/v1/verify", body, &j), 200);
    assert_true(json_is_true(json_object_get(j, "valid")));
    assert_string_equal(json_string_value(json_object_get(j, "tenant")), "acme");
    assert_string_equal(json_string_value(json_object_get(j, "client_id")), W.client_id);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "permissions"), 0)),
                        "orders:read");
    json_decref(j);
    /* not valid: 401, with the JSON answer (never a 200 a gateway could
     * read as "let it through") */
    snprintf(body, sizeof body, "{\"secret\":\"%s\"}", W.alice_pk);
    assert_int_equal(call(NULL, "POST", "/v1/verify", body, &j), 401);
    assert_true(json_is_false(json_object_get(j, "valid")));
    assert_string_equal(json_string_value(json_object_get(j, "reason")), "wrong_kind");
    json_decref(j);
    expect_error(NULL, "POST", "/v1/verify", "{\"secret\":1}", 400, "invalid");
    expect_error(NULL, "POST", "/v1/verify", "{\"sekret\":\"x\"}", 400, "invalid");
}

/* The same on the verify listener (docs/http.md, "The verify listener"). */
static void verify_forms_on_verify_listener(void **state)
{
    verify_credential_forms(state);
}

static void permissions_on_verify_listener(void **state)
{
    verify_required_permission(state);
}

static void toggle_off_on_verify_listener(void **state)
{
    toggle_off_fails_verification(state);
}

/* ---- the JSON API ------------------------------------------------------------ */

/* Every operation of the table, each through its route, and the rules'
 * refusals the binary protocol gives (portal, ceiling, isolation, kinds,
 * limits). */
static void api_every_operation(void **state)
{
    (void)state;
    json_t *j;
    char path[200], body[300], kid[64];
    bool seen[256] = {false};
    size_t nroutes;
    const sch_route *routes = sch_routes(&nroutes);
    (void)routes;

#define SEEN(code) (seen[code] = true)
    expect(NULL, "GET", "/v1/ping", NULL, 200), SEEN(OP_PING);
    assert_int_equal(call(W.alice, "GET", "/v1/whoami", NULL, &j), 200), SEEN(OP_AUTH);
    assert_string_equal(json_string_value(json_object_get(j, "actor")), "user");
    json_decref(j);
    snprintf(body, sizeof body, "{\"secret\":\"%s\"}", W.secret);
    expect(NULL, "POST", "/v1/verify", body, 200), SEEN(OP_VERIFY);
    expect(W.op, "POST", "/v1/tenants", "{\"tenant\":\"t3\"}", 201), SEEN(OP_TENANT_CREATE);
    expect_error(W.op, "POST", "/v1/tenants", "{\"tenant\":\"t3\"}", 409, "exists");
    expect(W.op, "PATCH", "/v1/tenants/t3", "{\"api_tokens\":true,\"max_tokens\":1}", 200),
        SEEN(OP_TENANT_SET);
    expect(W.op, "PUT", "/v1/tenants/t3/permissions/p:a", "{\"description\":\"A\"}", 200),
        SEEN(OP_PERM_PUT);
    expect(W.op, "PUT", "/v1/tenants/t3/roles/r", "{\"level\":1,\"permissions\":[\"p:a\"]}", 200),
        SEEN(OP_ROLE_PUT);
    expect(W.op, "PUT", "/v1/tenants/t3/roles/gone", "{\"level\":1,\"permissions\":[]}", 200);
    expect(W.op, "DELETE", "/v1/tenants/t3/roles/gone", NULL, 200), SEEN(OP_ROLE_DELETE);
    expect(W.op, "POST", "/v1/tenants/t3/accounts", "{\"account\":\"a\"}", 201),
        SEEN(OP_ACCOUNT_CREATE);
    assert_int_equal(call(W.op, "POST", "/v1/tenants/t3/accounts/a/users",
                          "{\"user\":\"u\",\"roles\":[\"r\"],\"portal\":true}", &j),
                     201),
        SEEN(OP_USER_CREATE);
    char upk[160], uauth[200];
    get_str(j, "personal_key", upk, sizeof upk);
    json_decref(j);
    bearer(uauth, sizeof uauth, upk);
    expect(W.op, "PATCH", "/v1/tenants/t3/accounts/a/users/u", "{\"portal\":true}", 200),
        SEEN(OP_USER_SET);
    assert_int_equal(call(W.op, "POST", "/v1/tenants/t3/accounts/a/users/u/keys", "{}", &j), 201),
        SEEN(OP_KEY_CREATE);
    get_str(j, "key_id", kid, sizeof kid);
    json_decref(j);
    snprintf(path, sizeof path, "/v1/keys/%s", kid);
    expect(W.op, "DELETE", path, NULL, 200), SEEN(OP_KEY_DELETE);
    assert_int_equal(call(uauth, "POST", "/v1/tokens", "{\"roles\":[\"r\"]}", &j), 201),
        SEEN(OP_TOKEN_CREATE);
    char tid[64];
    get_str(j, "client_id", tid, sizeof tid);
    json_decref(j);
    /* max_tokens 1: the tenant's quota */
    expect_error(uauth, "POST", "/v1/tokens", "{\"roles\":[\"r\"]}", 413, "limit");
    assert_int_equal(call(uauth, "GET", "/v1/tokens?limit=10", NULL, &j), 200),
        SEEN(OP_TOKEN_LIST);
    assert_int_equal(json_array_size(json_object_get(j, "tokens")), 1);
    json_decref(j);
    expect(W.op, "GET", "/v1/tenants/t3/accounts/a/tokens", NULL, 200);
    snprintf(path, sizeof path, "/v1/tokens/%s", tid);
    assert_int_equal(call(uauth, "GET", path, NULL, &j), 200), SEEN(OP_TOKEN_GET);
    assert_string_equal(json_string_value(json_object_get(j, "created_by")), "u");
    assert_null(json_object_get(j, "secret")); /* rule 9 */
    json_decref(j);
    expect(uauth, "PATCH", path, "{\"description\":\"new\"}", 200), SEEN(OP_TOKEN_SET);
    expect_error(uauth, "PATCH", path, "{\"roles\":[\"r\"]}", 400, "invalid");
    expect(W.op, "GET", "/v1/tenants", NULL, 200), SEEN(OP_TENANT_LIST);
    expect(W.op, "GET", "/v1/tenants/t3", NULL, 200), SEEN(OP_TENANT_GET);
    expect(uauth, "GET", "/v1/tenant", NULL, 200);
    assert_int_equal(call(uauth, "GET", "/v1/permissions", NULL, &j), 200), SEEN(OP_PERM_LIST);
    assert_int_equal(json_array_size(json_object_get(j, "permissions")), 1);
    json_decref(j);
    expect(W.op, "GET", "/v1/tenants/t3/permissions", NULL, 200);
    expect(uauth, "GET", "/v1/roles", NULL, 200), SEEN(OP_ROLE_LIST);
    expect(W.op, "GET", "/v1/tenants/t3/accounts", NULL, 200), SEEN(OP_ACCOUNT_LIST);
    expect(uauth, "GET", "/v1/users", NULL, 200), SEEN(OP_USER_LIST);
    expect(W.op, "GET", "/v1/tenants/t3/accounts/a/users", NULL, 200);
    expect(W.op, "GET", "/v1/tenants/t3/accounts/a/users/u", NULL, 200), SEEN(OP_USER_GET);
    expect(uauth, "GET", "/v1/keys", NULL, 200), SEEN(OP_KEY_LIST);
    /* The portal's (test_portal drives them with sessions and a browser). */
    expect(W.op, "POST", "/v1/portal/sessions",
           "{\"tenant\":\"t3\",\"account\":\"a\",\"user\":\"u\"}", 201),
        SEEN(OP_PORTAL_SESSION_CREATE);
    assert_int_equal(call(uauth, "GET", "/v1/portal/session", NULL, &j), 200),
        SEEN(OP_PORTAL_SESSION_GET);
    assert_string_equal(json_string_value(json_object_get(j, "via")), "key");
    assert_string_equal(json_string_value(json_object_get(j, "user")), "u");
    json_decref(j);
    expect_error(uauth, "DELETE", "/v1/portal/session", NULL, 400, "invalid"),
        SEEN(OP_PORTAL_SESSION_DELETE);
    /* The keyring: a new operator key acts at once, removed it acts no
     * more; a user manages no keys. */
    char nk[200];
    assert_int_equal(call(W.op, "POST", "/v1/keyring", "{\"name\":\"backend-2\"}", &j), 201),
        SEEN(OP_KEYRING_ADD);
    snprintf(nk, sizeof nk, "Authorization: Bearer %s",
             json_string_value(json_object_get(j, "key")));
    json_decref(j);
    expect(nk, "GET", "/v1/tenants", NULL, 200);
    assert_int_equal(call(nk, "GET", "/v1/keyring", NULL, &j), 200), SEEN(OP_KEYRING_LIST);
    assert_int_equal(json_array_size(json_object_get(j, "keyring")), 2);
    json_decref(j);
    expect_error(uauth, "POST", "/v1/keyring", "{\"name\":\"mine\"}", 403, "denied");
    expect_error(W.op, "POST", "/v1/keyring", "{\"name\":\"backend-2\"}", 409, "exists");
    expect(W.op, "DELETE", "/v1/keyring/backend-2", NULL, 200), SEEN(OP_KEYRING_REMOVE);
    expect_error(nk, "GET", "/v1/tenants", NULL, 401, "unauthenticated");
    expect_error(W.op, "DELETE", "/v1/keyring/initial", NULL, 403, "denied"); /* the last one */
    expect(W.op, "GET", "/v1/tenants/t3/accounts/a/users/u/keys", NULL, 200);
    expect(uauth, "DELETE", path, NULL, 200), SEEN(OP_TOKEN_DELETE);
    expect(W.op, "DELETE", "/v1/tenants/t3/permissions/p:a", NULL, 200), SEEN(OP_PERM_DELETE);
    expect(W.op, "DELETE", "/v1/tenants/t3/accounts/a/users/u", NULL, 200), SEEN(OP_USER_DELETE);
    expect_error(uauth, "GET", "/v1/tokens", NULL, 401, "unauthenticated"); /* its keys ended */
    expect(W.op, "DELETE", "/v1/tenants/t3/accounts/a", NULL, 200), SEEN(OP_ACCOUNT_DELETE);
    expect(W.op, "DELETE", "/v1/tenants/t3", NULL, 200), SEEN(OP_TENANT_DELETE);
    expect_error(W.op, "GET", "/v1/tenants/t3", NULL, 404, "not_found");
#undef SEEN
    size_t nops;
    const sch_op *ops = sch_all(&nops);
    for (size_t i = 0; i < nops; i++) {
        if (!seen[ops[i].code])
            fprintf(stderr, "# %s was not reached over HTTP\n", ops[i].name);
        assert_true(seen[ops[i].code]);
    }
}

static void api_rules(void **state)
{
    (void)state;
    char path[200];
    json_t *j;
    /* rule 2: bob has no portal flag */
    expect_error(W.bob, "POST", "/v1/tokens", "{\"roles\":[\"viewer\"]}", 403, "denied");
    expect_error(W.bob, "GET", "/v1/tokens", NULL, 403, "denied");
    /* rule 3: no stronger role, and no token without roles */
    expect_error(W.alice, "POST", "/v1/tokens", "{\"roles\":[\"admin\"]}", 403, "denied");
    expect_error(W.alice, "POST", "/v1/tokens", "{\"roles\":[]}", 400, "invalid");
    /* rule 7: eve (tenant other) sees nothing of acme */
    snprintf(path, sizeof path, "/v1/tokens/%s", W.client_id);
    expect_error(W.eve, "GET", path, NULL, 404, "not_found");
    expect_error(W.eve, "DELETE", path, NULL, 404, "not_found");
    expect_error(W.eve, "PATCH", path, "{\"description\":\"x\"}", 404, "not_found");
    assert_int_equal(call(W.eve, "GET", "/v1/tokens", NULL, &j), 200);
    assert_int_equal(json_array_size(json_object_get(j, "tokens")), 0);
    json_decref(j);
    /* a personal key cannot name another scope in the path */
    expect_error(W.eve, "GET", "/v1/tenants/acme/roles", NULL, 404, "not_found");
    expect_error(W.alice, "GET", "/v1/tenants", NULL, 403, "denied");
    /* operator-only operations refuse a user */
    expect_error(W.alice, "POST", "/v1/tenants", "{\"tenant\":\"zz\"}", 403, "denied");
}

static void api_kinds_and_credentials(void **state)
{
    (void)state;
    char h[300];
    /* rule 8: a tenant token never authenticates a management request */
    bearer(h, sizeof h, W.secret);
    expect_error(h, "GET", "/v1/tokens", NULL, 401, "unauthenticated");
    expect_error(NULL, "GET", "/v1/tokens", NULL, 401, "unauthenticated");
    expect_error("Authorization: Bearer tkp_nope", "GET", "/v1/tokens", NULL, 401,
                 "unauthenticated");
    expect_error("Authorization: Basic eDp5", "GET", "/v1/tokens", NULL, 401, "unauthenticated");
    hraw_resp r;
    char v[100];
    const char *hs[] = {h, NULL};
    assert_int_equal(hraw_once(W.srv.http_port, "GET", "/v1/tokens", hs, NULL, &r), 0);
    assert_true(hraw_header(&r, "WWW-Authenticate", v, sizeof v));
    hraw_free(&r);
}

static void api_bad_requests(void **state)
{
    (void)state;
    hraw_resp r;
    char v[100];
    expect_error(W.op, "GET", "/v1/nothing", NULL, 404, "not_found");
    expect_error(W.op, "GET", "/nothing", NULL, 404, "not_found");
    const char *hs[] = {W.op, NULL};
    assert_int_equal(hraw_once(W.srv.http_port, "PUT", "/v1/tenants", hs, NULL, &r), 0);
    assert_int_equal(r.status, 405);
    assert_true(hraw_header(&r, "Allow", v, sizeof v));
    assert_string_equal(v, "POST, GET");
    hraw_free(&r);
    expect_error(W.op, "POST", "/v1/tenants", "{\"tenant\":", 400, "invalid");
    expect_error(W.op, "POST", "/v1/tenants", "[1,2]", 400, "invalid");
    expect_error(W.op, "POST", "/v1/tenants", "{\"tenant\":\"a\",\"tenant\":\"b\"}", 400,
                 "invalid");
    expect_error(W.op, "POST", "/v1/tenants", "{\"tenant\":\"a\",\"bogus\":1}", 400, "invalid");
    expect_error(W.op, "POST", "/v1/tenants", "{\"tenant\":1.5}", 400, "invalid");
    expect_error(W.op, "POST", "/v1/tenants", "{\"tenant\":\"\\u00ff\\u0000\"}", 400, "invalid");
    expect_error(W.op, "POST", "/v1/tenants/acme/accounts", "{\"account\":\"BAD SLUG\"}", 400,
                 "invalid");
    expect_error(W.op, "PUT", "/v1/tenants/acme/roles/r", "{\"tenant\":\"x\",\"level\":1,"
                 "\"permissions\":[]}", 400, "invalid"); /* the path's field again */
    expect_error(W.op, "GET", "/v1/tenants?limit=abc", NULL, 400, "invalid");
    expect_error(W.op, "GET", "/v1/tenants?bogus=1", NULL, 400, "invalid");
    expect_error(W.op, "GET", "/v1/whoami?key=x", NULL, 400, "invalid");
    expect_error(NULL, "GET", "/v1/ping?x=1", NULL, 400, "invalid");
    /* a description over its limit */
    char big[1200];
    memset(big, 'a', sizeof big);
    snprintf(big, sizeof big, "{\"description\":\"%0*d\"}", 1100, 0);
    char path[200];
    snprintf(path, sizeof path, "/v1/tokens/%s", W.client_id);
    expect_error(W.alice, "PATCH", path, big, 400, "invalid");
    /* not JSON by its content type */
    const char *form[] = {W.op, "Content-Type: application/x-www-form-urlencoded",
                          "Content-Length: 8", NULL};
    int fd = raw_connect(W.srv.http_port);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "POST /v1/tenants HTTP/1.1\r\nHost: x\r\n%s\r\n%s\r\n%s\r\n\r\ntenant=a",
                     form[0], form[1], form[2]);
    assert_int_equal(raw_write(fd, req, (size_t)n), 0);
    assert_int_equal(hraw_read(fd, &r, 5000), 0);
    assert_int_equal(r.status, 400);
    hraw_free(&r);
    close(fd);
    /* not UTF-8 */
    expect_error(W.op, "POST", "/v1/tenants", "{\"tenant\":\"\xff\xfe\"}", 400, "invalid");
    alive();
}

/* An HTTP page holds at most 100 rows, fewer when its rows can be large
 * (the memory bound, docs/http.md): a larger limit gives a page with
 * "more" and "next", and following "next" gives every row once. */
static void http_pages_are_bounded(void **state)
{
    (void)state;
    char path[200], after[200] = "";
    for (int i = 0; i < 20; i++) {
        snprintf(path, sizeof path, "/v1/tenants/acme/roles/r%02d", i);
        expect(W.op, "PUT", path, "{\"level\":9,\"permissions\":[]}", 200);
    }
    size_t total = 0, pages = 0, first = 0;
    for (;;) {
        json_t *j;
        snprintf(path, sizeof path, "/v1/tenants/acme/roles?limit=1000%s%s",
                 after[0] ? "&after=" : "", after);
        assert_int_equal(call(W.op, "GET", path, NULL, &j), 200);
        size_t n = json_array_size(json_object_get(j, "roles"));
        if (!pages)
            first = n;
        total += n;
        pages++;
        bool more = json_is_true(json_object_get(j, "more"));
        if (more)
            get_str(j, "next", after, sizeof after);
        json_decref(j);
        if (!more)
            break;
        assert_true(pages < 30);
    }
    assert_true(first >= 1 && first < 22); /* a role names up to 256 permissions */
    assert_int_equal(total, 22);           /* admin, viewer and the 20 */
    assert_true(pages > 1);
}

/* expires_in: seconds from the server's now, for tokens and keys alike;
 * never beside expires_at. */
static void expires_in_sets_expires_at(void **state)
{
    (void)state;
    json_t *j;
    long now = (long)time(NULL);
    assert_int_equal(call(W.alice, "POST", "/v1/tokens",
                          "{\"roles\":[\"viewer\"],\"expires_in\":3600}", &j),
                     201);
    long at = (long)json_integer_value(json_object_get(j, "expires_at"));
    assert_true(at >= now + 3600 && at <= now + 3605);
    json_decref(j);
    expect_error(W.alice, "POST", "/v1/tokens",
                 "{\"roles\":[\"viewer\"],\"expires_in\":60,\"expires_at\":99999999999}",
                 400, "invalid");
    expect_error(W.alice, "POST", "/v1/tokens", "{\"roles\":[\"viewer\"],\"expires_in\":0}",
                 400, "invalid");
    expect(W.op, "POST", "/v1/tenants/acme/accounts/bigco/users/bob/keys",
           "{\"expires_in\":86400}", 201);
}

/* ---- bad HTTP ---------------------------------------------------------------- */

/* Sends raw bytes on a new connection: the status of the answer, or 0 when
 * the connection closed without one. */
static int raw_http(const char *bytes, size_t n)
{
    if (n == 0)
        n = strlen(bytes);
    int fd = raw_connect(W.srv.http_port);
    assert_true(fd >= 0);
    raw_write(fd, bytes, n); /* the server may close before taking it all */
    hraw_resp r;
    int st = hraw_read(fd, &r, 5000) == 0 ? r.status : 0;
    if (st)
        hraw_free(&r);
    close(fd);
    return st;
}

static void bad_http_input(void **state)
{
    (void)state;
    size_t cap = 3u << 20;
    char *b = malloc(cap);
    int st;
    /* one header larger than the header limit */
    int n = snprintf(b, cap, "GET /v1/verify HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(b + n, 'a', 20000);
    n += 20000;
    n += snprintf(b + n, cap - (size_t)n, "\r\n\r\n");
    st = raw_http(b, (size_t)n);
    assert_true(st == 0 || (st >= 400 && st < 500));
    /* too many headers, each small */
    n = snprintf(b, cap, "GET /v1/verify HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 150; i++)
        n += snprintf(b + n, cap - (size_t)n, "X-H%d: v\r\n", i);
    n += snprintf(b + n, cap - (size_t)n, "\r\n");
    st = raw_http(b, (size_t)n);
    assert_true(st >= 400 && st < 500);
    /* a body over the limit, announced */
    n = snprintf(b, cap, "POST /v1/tenants HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Type: "
                 "application/json\r\nContent-Length: 2000000\r\n\r\n", W.op);
    memset(b + n, ' ', 2000000);
    st = raw_http(b, (size_t)n + 2000000);
    assert_true(st == 0 || st == 413);
    /* garbage, pipelined after a good request */
    char good[400];
    n = snprintf(good, sizeof good,
                 "GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE \x01\x02 nonsense\r\n\r\n");
    int fd = raw_connect(W.srv.http_port);
    assert_int_equal(raw_write(fd, good, (size_t)n), 0);
    hraw_resp r;
    assert_int_equal(hraw_read(fd, &r, 5000), 0);
    assert_int_equal(r.status, 200);
    hraw_free(&r);
    if (hraw_read(fd, &r, 5000) == 0) {
        assert_true(r.status >= 400 && r.status < 500);
        hraw_free(&r);
    }
    close(fd);
    /* a request line that is not HTTP, and a bad method */
    st = raw_http("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 15);
    assert_true(st == 0 || (st >= 400 && st < 500));
    st = raw_http("BREW /v1/verify HTTP/1.1\r\nHost: x\r\n\r\n", 0);
    assert_true(st == 0 || st == 501 || (st >= 400 && st < 500)); /* 501: not a method it knows */
    /* a bad percent escape in the path */
    assert_int_equal(raw_http("GET /v1/tokens/%zz HTTP/1.1\r\nHost: x\r\n\r\n", 0), 404);
    free(b);
    alive();
}

/* A connection the server ended (an error reply closes it) while its peer
 * keeps the socket: the next connection, which may get the same descriptor
 * number in the server, must be served (it once was never read: the closed
 * descriptor's events were still registered). */
static void connection_after_server_close(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        int fd = raw_connect(W.srv.http_port);
        const char *brew = "BREW /v1/verify HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_int_equal(raw_write(fd, brew, strlen(brew)), 0);
        hraw_resp r;
        assert_int_equal(hraw_read(fd, &r, 5000), 0);
        assert_int_equal(r.status, 501);
        hraw_free(&r);
        assert_int_equal(gw_secret(W.secret), 200); /* while fd stays open here */
        close(fd);
    }
}

/* A thousand connections that never finish a request cannot keep a
 * gateway out: at the cap, the least recently used idle one gives way. */
static void thousand_slow_connections(void **state)
{
    (void)state;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
    setrlimit(RLIMIT_NOFILE, &rl);
    raw_server_stop(&W.srv);
    raw_server_free(&W.srv);
    static const char *const extra[] = {"--http-max-connections", "200", NULL};
    start(extra);
    enum { SLOW = 1000 };
    static int fds[SLOW];
    int opened = 0;
    for (int i = 0; i < SLOW && (size_t)opened + 40 < rl.rlim_cur; i++) {
        fds[i] = raw_connect(W.srv.http_port);
        if (fds[i] < 0)
            break;
        raw_write(fds[i], "GET /v1/verify HTTP/1.1\r\nHost: x\r\nX-Slow: ", 43);
        opened++;
    }
    assert_true(opened >= 900);
    alive();
    alive();
    for (int i = 0; i < opened; i++)
        close(fds[i]);
    alive();
}

/* ---- metrics and health ---------------------------------------------------- */

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

static void metrics_count_the_work(void **state)
{
    (void)state;
    char h[300];
    for (int i = 0; i < 5; i++)
        assert_int_equal(gw_secret(W.secret), 200);
    for (int i = 0; i < 3; i++)
        assert_int_equal(gw_secret("tkt_nope"), 401);
    /* two binary verifications */
    int fd = raw_connect(W.srv.port);
    for (uint32_t i = 0; i < 2; i++) {
        mpw b;
        mpw_init(&b);
        raw_map(&b, "secret:s", W.secret);
        raw_reply r;
        assert_int_equal(raw_call(fd, OP_VERIFY, i + 1, &b, &r), 0);
        raw_reply_free(&r);
        mpw_free(&b);
    }
    close(fd);
    /* The writer commits the LMDB transaction it carries after 1 ms idle. */
    tkt_sleep_ms(20);
    hraw_resp r;
    assert_int_equal(hraw_once(W.srv.http_port, "GET", "/metrics", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    const char *t = r.body;
    assert_int_equal(metric(t, "tokend_verifications_total{listener=\"http\",result=\"valid\"}"), 5);
    assert_int_equal(metric(t, "tokend_verifications_total{listener=\"http\",result=\"malformed\"}"),
                     3);
    assert_int_equal(metric(t, "tokend_verifications_total{listener=\"binary\",result=\"valid\"}"),
                     2);
    assert_int_equal(metric(t, "tokend_verify_duration_seconds_count{listener=\"http\"}"), 8);
    assert_int_equal(
        metric(t, "tokend_requests_total{listener=\"http\",operation=\"TOKEN_CREATE\","
                  "status=\"ok\"}"),
        1);
    assert_int_equal(
        metric(t, "tokend_requests_total{listener=\"http\",operation=\"USER_CREATE\","
                  "status=\"ok\"}"),
        3);
    assert_int_equal(
        metric(t, "tokend_requests_total{listener=\"binary\",operation=\"VERIFY\",status=\"ok\"}"),
        2);
    assert_int_equal(metric(t, "tokend_index_entries"), 4); /* 3 personal keys and 1 token */
    assert_int_equal(metric(t, "tokend_log_seq"), 13); /* a fresh log: its head is the last of them */
    /* start()'s 13 writes, one event and one sync each (one at a time) */
    assert_int_equal(metric(t, "tokend_events_appended_total"), 13);
    assert_int_equal(metric(t, "tokend_log_sync_duration_seconds_count"), 13);
    assert_int_equal(metric(t, "tokend_batch_writes_count"), 13);
    /* ... all in LMDB by now, in one commit or more (carried: docs/design.md) */
    assert_int_equal(metric(t, "tokend_lmdb_commit_batches_sum"), 13);
    assert_true(metric(t, "tokend_lmdb_commit_duration_seconds_count") >= 1);
    assert_int_equal(metric(t, "tokend_lmdb_commit_batches_count"),
                     metric(t, "tokend_lmdb_commit_duration_seconds_count"));
    assert_int_equal(metric(t, "tokend_store_state{state=\"ok\"}"), 1);
    /* one segment: every link checked at the start */
    assert_int_equal(metric(t, "tokend_log_chain_check{state=\"passed\"}"), 1);
    assert_int_equal(metric(t, "tokend_log_chain_check{state=\"running\"}"), 0);
    assert_true(metric(t, "tokend_connections{listener=\"http\"}") >= 1);

    /* promtool, the real checker */
    char *dir = tkt_mkdtemp(), cmd[600];
    char *file = tkt_path(dir, "metrics.txt");
    FILE *f = fopen(file, "w");
    fwrite(r.body, 1, r.body_len, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s > %s.out 2>&1", file, file);
    int rc = system(cmd);
    if (rc != 0) {
        snprintf(cmd, sizeof cmd, "cat %s.out >&2", file);
        if (system(cmd) != 0)
            fprintf(stderr, "# promtool failed (is it installed? make deps installs prometheus)\n");
    }
    assert_int_equal(rc, 0);
    free(file);
    tkt_rmdir(dir);
    free(dir);
    hraw_free(&r);
    (void)h;
}

static void health_endpoints(void **state)
{
    (void)state;
    json_t *j;
    assert_int_equal(call(NULL, "GET", "/healthz", NULL, &j), 200);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
    json_decref(j);
    assert_int_equal(call(NULL, "GET", "/readyz", NULL, &j), 200);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(verify_credential_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(verify_required_permission, setup, teardown),
        cmocka_unit_test_setup_teardown(delete_then_verify_pipelined, setup, teardown),
        cmocka_unit_test_setup_teardown(toggle_off_fails_verification, setup, teardown),
        cmocka_unit_test_setup_teardown(verify_json_for_backends, setup, teardown),
        cmocka_unit_test_setup_teardown(verify_forms_on_verify_listener, setup_verify, teardown),
        cmocka_unit_test_setup_teardown(permissions_on_verify_listener, setup_verify, teardown),
        cmocka_unit_test_setup_teardown(toggle_off_on_verify_listener, setup_verify, teardown),
        cmocka_unit_test_setup_teardown(api_every_operation, setup, teardown),
        cmocka_unit_test_setup_teardown(api_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(api_kinds_and_credentials, setup, teardown),
        cmocka_unit_test_setup_teardown(api_bad_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(expires_in_sets_expires_at, setup, teardown),
        cmocka_unit_test_setup_teardown(http_pages_are_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_http_input, setup, teardown),
        cmocka_unit_test_setup_teardown(connection_after_server_close, setup, teardown),
        cmocka_unit_test_setup_teardown(thousand_slow_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(metrics_count_the_work, setup, teardown),
        cmocka_unit_test_setup_teardown(health_endpoints, setup, teardown),
    };
    if (getenv("TEST_FILTER"))
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD) {
        fprintf(stderr, "# a child process is still running\n");
        failed++;
    }
    return failed;
}
