/* fixture.c - engine helpers for tests; see fixture.h. */
#include "tests/support/fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/err.h"
#include "store/state.h"

const tk_actor fx_operator = {.kind = TK_ACTOR_OPERATOR};

static tk_str S(const char *s)
{
    tk_str t = {s, s ? strlen(s) : 0};
    return t;
}

static void items(eng_req *r, const char *const *list)
{
    r->nitems = 0;
    for (; list && *list; list++)
        r->items[r->nitems++] = S(*list);
}

int fx_exec(eng *e, const eng_req *r, eng_res *res)
{
    eng_res local;
    eng_res *out = res ? res : &local;
    int rc = eng_exec(e, r, out, 1);
    return rc ? rc : out->status;
}

int fx_tenant(eng *e, const char *tenant)
{
    eng_req r;
    eng_req_init(&r, ENG_TENANT_CREATE, &fx_operator);
    r.tenant = S(tenant);
    return fx_exec(e, &r, NULL);
}

int fx_toggle(eng *e, const char *tenant, bool on)
{
    eng_req r;
    eng_req_init(&r, ENG_TENANT_SET, &fx_operator);
    r.tenant = S(tenant);
    r.flag = on;
    return fx_exec(e, &r, NULL);
}

int fx_limits(eng *e, const char *tenant, tk_limits lim)
{
    eng_req r;
    eng_req_init(&r, ENG_TENANT_SET, &fx_operator);
    r.tenant = S(tenant);
    r.limits_set = ENG_LIM_TOKENS | ENG_LIM_ROLES | ENG_LIM_KEYS | ENG_LIM_RATE | ENG_LIM_BURST;
    r.limits = lim;
    return fx_exec(e, &r, NULL);
}

int fx_role(eng *e, const char *tenant, const char *key, uint32_t level, const char *const *perms)
{
    eng_req r;
    eng_req_init(&r, ENG_ROLE_PUT, &fx_operator);
    r.tenant = S(tenant);
    r.key = S(key);
    r.name = S(key);
    r.level = level;
    items(&r, perms);
    return fx_exec(e, &r, NULL);
}

int fx_role_delete(eng *e, const char *tenant, const char *key)
{
    eng_req r;
    eng_req_init(&r, ENG_ROLE_DELETE, &fx_operator);
    r.tenant = S(tenant);
    r.key = S(key);
    return fx_exec(e, &r, NULL);
}

int fx_delete(eng *e, eng_op op, const char *tenant, const char *account, const char *user,
              const char *key)
{
    eng_req r;
    eng_req_init(&r, op, &fx_operator);
    r.tenant = S(tenant);
    r.account = S(account);
    r.user = S(user);
    r.key = S(key);
    return fx_exec(e, &r, NULL);
}

int fx_account(eng *e, const char *tenant, const char *account)
{
    eng_req r;
    eng_req_init(&r, ENG_ACCOUNT_CREATE, &fx_operator);
    r.tenant = S(tenant);
    r.account = S(account);
    return fx_exec(e, &r, NULL);
}

int fx_user(eng *e, const char *tenant, const char *account, const char *user, bool portal,
            const char *const *roles, char *key_out)
{
    eng_req r;
    eng_res res;
    eng_req_init(&r, ENG_USER_CREATE, &fx_operator);
    r.tenant = S(tenant);
    r.account = S(account);
    r.user = S(user);
    r.flag = portal;
    items(&r, roles);
    int rc = fx_exec(e, &r, &res);
    if (rc == 0 && key_out)
        memcpy(key_out, res.secret, TK_SECRET_LEN + 1);
    return rc;
}

int fx_auth(eng *e, const char *key, tk_actor *actor)
{
    return eng_authenticate(e, key, strlen(key), time(NULL), actor);
}

int fx_token(eng *e, const tk_actor *actor, const char *desc, const char *const *roles,
             int64_t expires, tk_id *id, char *secret_out)
{
    eng_req r;
    eng_res res;
    eng_req_init(&r, ENG_TOKEN_CREATE, actor);
    r.desc = S(desc ? desc : "");
    r.expires = expires;
    items(&r, roles);
    int rc = fx_exec(e, &r, &res);
    if (rc == 0) {
        if (id)
            *id = res.id;
        if (secret_out)
            memcpy(secret_out, res.secret, TK_SECRET_LEN + 1);
    }
    return rc;
}

int fx_token_delete(eng *e, const tk_actor *actor, const tk_id *id)
{
    eng_req r;
    eng_req_init(&r, ENG_TOKEN_DELETE, actor);
    r.id = *id;
    return fx_exec(e, &r, NULL);
}

typedef struct roles_q {
    uint32_t user, n;
} roles_q;

static int read_roles(void *arg, state_txn *t)
{
    roles_q *q = arg;
    st_user u;
    int rc = state_user_by_id(t, q->user, &u);
    q->n = rc ? 0 : u.nroles;
    return rc;
}

int fx_user_roles(eng *e, const tk_actor *user, uint32_t *n)
{
    roles_q q = {user->user, 0};
    int rc = eng_read(e, read_roles, &q);
    *n = q.n;
    return rc;
}

tk_verdict fx_verify(eng *e, const char *secret, tk_verify *out)
{
    return eng_verify(e, NULL, secret, strlen(secret), time(NULL), out);
}

static void user_actor(eng *e, const char *tenant, const char *account, const char *user,
                       bool portal, const char *const *roles, tk_actor *a, char *key_copy)
{
    char key[TK_SECRET_LEN + 1];
    assert_int_equal(fx_user(e, tenant, account, user, portal, roles, key), 0);
    assert_int_equal(fx_auth(e, key, a), 0);
    if (key_copy)
        memcpy(key_copy, key, sizeof key);
}

void fx_scenario(eng *e, fx_world *w)
{
    static const char *const admin_p[] = {"orders:read", "orders:write", NULL};
    static const char *const editor_p[] = {"orders:read", "orders:edit", NULL};
    static const char *const viewer_p[] = {"orders:read", NULL};
    static const char *const labs_p[] = {"labs:read", NULL};
    static const char *const admin[] = {"admin", NULL};
    static const char *const viewer[] = {"viewer", NULL};

    assert_int_equal(fx_tenant(e, "acme"), 0);
    assert_int_equal(fx_toggle(e, "acme", true), 0);
    assert_int_equal(fx_limits(e, "acme", (tk_limits){0}), 0);
    assert_int_equal(fx_role(e, "acme", "admin", 0, admin_p), 0);
    assert_int_equal(fx_role(e, "acme", "editor", 1, editor_p), 0);
    assert_int_equal(fx_role(e, "acme", "viewer", 2, viewer_p), 0);
    assert_int_equal(fx_account(e, "acme", "globex"), 0);
    assert_int_equal(fx_account(e, "acme", "initech"), 0);
    user_actor(e, "acme", "globex", "alice", true, admin, &w->alice, w->alice_key);
    user_actor(e, "acme", "globex", "bob", true, viewer, &w->bob, NULL);
    user_actor(e, "acme", "globex", "carol", false, admin, &w->carol, NULL);
    user_actor(e, "acme", "initech", "dave", true, admin, &w->dave, NULL);
    assert_int_equal(fx_tenant(e, "umbrella"), 0);
    assert_int_equal(fx_toggle(e, "umbrella", true), 0);
    assert_int_equal(fx_limits(e, "umbrella", (tk_limits){0}), 0);
    assert_int_equal(fx_role(e, "umbrella", "admin", 0, labs_p), 0);
    assert_int_equal(fx_account(e, "umbrella", "raccoon"), 0);
    user_actor(e, "umbrella", "raccoon", "ellen", true, admin, &w->ellen, NULL);
}

#include "core/crc32c.h"

static const char B62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static void digits(uint64_t v, int n, char *out)
{
    for (int i = n - 1; i >= 0; i--) {
        out[i] = B62[v % 62];
        v /= 62;
    }
}

int fx_secret_decode(const char *secret, uint8_t out[48])
{
    if (strlen(secret) != TK_SECRET_LEN)
        return -1;
    for (int w = 0; w < 6; w++) {
        unsigned __int128 v = 0;
        for (int i = 0; i < 11; i++) {
            const char *p = strchr(B62, secret[4 + w * 11 + i]);
            if (!p || !*p)
                return -1;
            v = v * 62 + (unsigned)(p - B62);
        }
        for (int b = 0; b < 8; b++)
            out[w * 8 + b] = (uint8_t)(v >> (56 - 8 * b));
    }
    return 0;
}

void fx_secret_encode(const char *prefix, const uint8_t in[48], char out[TK_SECRET_LEN + 1])
{
    memcpy(out, prefix, 4);
    for (int w = 0; w < 6; w++) {
        uint64_t v = 0;
        for (int b = 0; b < 8; b++)
            v = v << 8 | in[w * 8 + b];
        digits(v, 11, out + 4 + w * 11);
    }
    digits(crc32c_extend(0, out, 70), 6, out + 70);
    out[TK_SECRET_LEN] = '\0';
}
