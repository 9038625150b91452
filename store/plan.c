/*
 * plan.c - validation: requests into events; see plan.h.
 *
 * Each operation has one planner (the table at the end). A planner checks
 * the request's fields in the order its operation names them (tenant,
 * account, user, then the rest: each for its form, then for what it names),
 * asks core/rules.c, and fills the event. Every refusal says why in the
 * request's own result (plan_why()), never in shared state.
 */
#include "store/plan.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "core/err.h"
#include "core/keyring.h"
#include "core/rules.h"
#include "core/sha256.h"
#include "store/keyfile.h"

int plan_why(char *msg, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, ENG_MSG_MAX, fmt, ap);
    va_end(ap);
    return code;
}

static bool str_ok_slug(tk_str s)
{
    return model_slug_ok(s.p, s.n);
}

static void set_str(tk_str *dst, const char *s)
{
    dst->p = s;
    dst->n = strlen(s);
}

/* The plan's one event, initialised. */
static ev *event(plan *p, ev_type type)
{
    ev *x = &p->evs[p->n++];
    ev_init(x, type, 0);
    return x;
}

/* ---- shared checks ------------------------------------------------------ */

int plan_scope(state_txn *t, const tk_actor *a, tk_str tenant, tk_str account,
               bool need_account, st_tenant *tn, st_account *ac, char *msg)
{
    int rc;
    if (a->kind == TK_ACTOR_USER) { /* rule 7: a user's own, whatever it names */
        if ((rc = state_tenant_by_id(t, a->tenant, tn)))
            return rc;
        return need_account ? state_account_by_id(t, a->account, ac) : 0;
    }
    if (!str_ok_slug(tenant))
        return plan_why(msg, TK_EINVAL, "'%.*s' is not a tenant slug ([a-z0-9][a-z0-9-]{0,62})",
                        PLAN_SL(tenant));
    if ((rc = state_tenant_by_slug(t, tenant.p, tenant.n, tn)))
        return rc == TK_ENOTFOUND ? plan_why(msg, rc, "no tenant '%.*s'", PLAN_SL(tenant)) : rc;
    if (!need_account)
        return 0;
    if (!str_ok_slug(account))
        return plan_why(msg, TK_EINVAL, "'%.*s' is not an account slug ([a-z0-9][a-z0-9-]{0,62})",
                        PLAN_SL(account));
    rc = state_account_by_slug(t, tn->id, account.p, account.n, ac);
    return rc == TK_ENOTFOUND
               ? plan_why(msg, rc, "no account '%.*s' in tenant '%s'", PLAN_SL(account), tn->slug)
               : rc;
}

int plan_actor_stands(state_txn *t, const tk_actor *a, int64_t now_s, char *msg)
{
    if (a->session) { /* the session's own life is the engine's check (ses_live) */
        st_user u;
        int rc = state_user_by_id(t, a->user, &u);
        if (rc && rc != TK_ENOTFOUND)
            return rc;
        if (rc)
            return plan_why(msg, TK_EUNAUTH, "the portal session ended: its user was deleted");
        if (!u.portal)
            return plan_why(msg, TK_EUNAUTH,
                            "the portal session ended: user '%s' no longer has portal access",
                            u.slug);
        return 0;
    }
    st_cred key;
    int rc = state_cred_by_id(t, &a->key, &key);
    if (rc && rc != TK_ENOTFOUND)
        return rc;
    if (!rules_key_acts(rc == 0, key.kind, key.user, a->user, key.expires, now_s))
        return plan_why(msg, TK_EUNAUTH,
                        "the personal key is no longer valid (deleted or expired)");
    return 0;
}

/* Checks role keys exist in the tenant; fills their levels (may be NULL). */
static int check_roles(state_txn *t, uint32_t tenant, const tk_str *items, uint32_t n,
                       uint32_t *levels, char *msg)
{
    if (n > TK_MAX_ROLES)
        return plan_why(msg, TK_ELIMIT, "at most %d roles", TK_MAX_ROLES);
    for (uint32_t i = 0; i < n; i++) {
        st_role role;
        if (!model_key_ok(items[i].p, items[i].n))
            return plan_why(msg, TK_EINVAL, "'%.*s' is not a role key", PLAN_SL(items[i]));
        int rc = state_role_by_key(t, tenant, items[i].p, items[i].n, &role);
        if (rc)
            return rc == TK_ENOTFOUND
                       ? plan_why(msg, rc, "no role '%.*s' in this tenant", PLAN_SL(items[i]))
                       : rc;
        if (levels)
            levels[i] = role.level;
    }
    return 0;
}

/* The levels of a user's roles that still exist: rule 3's "own roles". */
static uint32_t user_levels(state_txn *t, const st_user *u, uint32_t *levels)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < u->nroles; i++) {
        st_role role;
        if (state_role_by_id(t, u->roles[i], &role) == 0)
            levels[n++] = role.level;
    }
    return n;
}

/* Fills a credential-creating event with a fresh id and secret. */
static void new_credential(plan *p, ev *x, tk_kind kind, eng_res *res)
{
    secret_new_credential(p->pool, kind, &x->id, res->secret, x->hash);
    res->id = x->id;
}

static int check_expiry(const plan *p, int64_t expires, char *msg)
{
    if (!model_expiry_ok(expires, p->now_ms / 1000))
        return plan_why(msg, TK_EINVAL,
                        "expires_at must be in the future (and before 2106), or 0 "
                        "for never");
    return 0;
}

/* The tenant an operator request names. */
static int tenant_named(plan *p, const eng_req *r, st_tenant *tn, char *msg)
{
    return plan_scope(p->t, &r->actor, r->tenant, r->account, false, tn, NULL, msg);
}

/* The user an operator request names, in tn/ac. */
static int user_named(plan *p, const eng_req *r, st_tenant *tn, st_account *ac, st_user *u,
                      char *msg)
{
    int rc = plan_scope(p->t, &r->actor, r->tenant, r->account, true, tn, ac, msg);
    if (rc)
        return rc;
    if (!str_ok_slug(r->user))
        return plan_why(msg, TK_EINVAL, "'%.*s' is not a user slug ([a-z0-9][a-z0-9-]{0,62})",
                        PLAN_SL(r->user));
    rc = state_user_by_slug(p->t, ac->id, r->user.p, r->user.n, u);
    return rc == TK_ENOTFOUND
               ? plan_why(msg, rc, "no user '%.*s' in %s/%s", PLAN_SL(r->user), tn->slug, ac->slug)
               : rc;
}

/* Rule 12's question for a USER_SET: does it only take access away (the
 * portal flag not given, every role kept one the user has already)? */
static bool user_set_revokes(state_txn *t, uint32_t tenant, const st_user *u, const ev *x)
{
    if (x->flag && !u->portal)
        return false;
    for (uint32_t i = 0; i < x->nitems; i++) {
        st_role role;
        bool had = false;
        if (state_role_by_key(t, tenant, x->items[i].p, x->items[i].n, &role) != 0)
            return false;
        for (uint32_t j = 0; j < u->nroles && !had; j++)
            had = u->roles[j] == role.id;
        if (!had)
            return false;
    }
    return true;
}

/* ... and for a ROLE_PUT: an existing role, no stronger, with no
 * permission it did not have? */
static bool role_put_revokes(state_txn *t, uint32_t tenant, const ev *x)
{
    st_role old;
    if (state_role_by_key(t, tenant, x->key.p, x->key.n, &old) != 0 || x->level < old.level)
        return false;
    for (uint32_t i = 0; i < x->nitems; i++) {
        st_perm perm;
        bool had = false;
        if (state_perm_by_key(t, tenant, x->items[i].p, x->items[i].n, &perm) != 0)
            return false;
        for (uint32_t j = 0; j < old.nperms && !had; j++)
            had = old.perms[j] == perm.num;
        if (!had)
            return false;
    }
    return true;
}

/* ---- tenants, permissions, roles, accounts (the operator) --------------- */

static int plan_tenant_create(plan *p, const eng_req *r, eng_res *res)
{
    st_tenant tn;
    if (!str_ok_slug(r->tenant))
        return plan_why(res->msg, TK_EINVAL,
                        "'%.*s' is not a tenant slug ([a-z0-9][a-z0-9-]{0,62})",
                        PLAN_SL(r->tenant));
    int rc = state_tenant_by_slug(p->t, r->tenant.p, r->tenant.n, &tn);
    if (rc != TK_ENOTFOUND)
        return rc ? rc
                  : plan_why(res->msg, TK_EEXIST, "tenant '%.*s' already exists",
                             PLAN_SL(r->tenant));
    event(p, EV_TENANT_CREATE)->tenant = r->tenant;
    return 0;
}

static int plan_tenant_set(plan *p, const eng_req *r, eng_res *res)
{
    st_tenant tn;
    int rc = tenant_named(p, r, &tn, res->msg);
    if (rc)
        return rc;
    if (r->flag < 0 && !r->limits_set)
        return plan_why(res->msg, TK_EINVAL, "nothing to set: give api_tokens or a limit");
    ev *x = event(p, EV_TENANT_SET);
    x->tenant = r->tenant;
    x->flag = r->flag < 0 ? tn.api_tokens : r->flag == 1;
    if (r->limits_set) {
        const unsigned bit[5] = {ENG_LIM_TOKENS, ENG_LIM_ROLES, ENG_LIM_KEYS, ENG_LIM_RATE,
                                 ENG_LIM_BURST};
        uint32_t *to[5] = {&x->limits.tokens, &x->limits.roles, &x->limits.keys,
                           &x->limits.rate, &x->limits.burst};
        const uint32_t from[5] = {r->limits.tokens, r->limits.roles, r->limits.keys,
                                  r->limits.rate, r->limits.burst};
        x->has_limits = true;
        x->limits = tn.lim; /* the event carries the whole set */
        for (int i = 0; i < 5; i++)
            if (r->limits_set & bit[i])
                *to[i] = from[i];
    }
    p->revokes = !x->flag; /* API tokens off (or left off) */
    return 0;
}

static int plan_perm_put(plan *p, const eng_req *r, eng_res *res)
{
    st_tenant tn;
    st_perm perm;
    int rc = tenant_named(p, r, &tn, res->msg);
    if (rc)
        return rc;
    if (!model_key_ok(r->key.p, r->key.n))
        return plan_why(res->msg, TK_EINVAL, "'%.*s' is not a permission key", PLAN_SL(r->key));
    if (!model_text_ok(r->desc.p, r->desc.n, TK_DESC_MAX))
        return plan_why(res->msg, TK_EINVAL,
                        "the description must be UTF-8 text of at most %d bytes", TK_DESC_MAX);
    if (state_perm_by_key(p->t, tn.id, r->key.p, r->key.n, &perm) == TK_ENOTFOUND
        && tn.nperms >= TK_MAX_TENANT_PERMS)
        return plan_why(res->msg, TK_ELIMIT, "at most %d permissions in a tenant",
                        TK_MAX_TENANT_PERMS);
    ev *x = event(p, EV_PERM_PUT);
    x->tenant = r->tenant;
    x->key = r->key;
    x->desc = r->desc;
    return 0;
}

static int plan_role_put(plan *p, const eng_req *r, eng_res *res)
{
    st_tenant tn;
    st_role role;
    st_perm perm;
    int rc = tenant_named(p, r, &tn, res->msg);
    if (rc)
        return rc;
    if (!model_key_ok(r->key.p, r->key.n))
        return plan_why(res->msg, TK_EINVAL,
                        "'%.*s' is not a role key ([A-Za-z0-9][A-Za-z0-9:._-]*)", PLAN_SL(r->key));
    if (!model_text_ok(r->name.p, r->name.n, TK_NAME_MAX))
        return plan_why(res->msg, TK_EINVAL, "the name must be UTF-8 text of at most %d bytes",
                        TK_NAME_MAX);
    if (r->level > TK_MAX_LEVEL)
        return plan_why(res->msg, TK_EINVAL, "levels go from 0 (strongest) to %d", TK_MAX_LEVEL);
    if (r->nitems > TK_MAX_ROLE_PERMS)
        return plan_why(res->msg, TK_ELIMIT, "at most %d permissions in a role", TK_MAX_ROLE_PERMS);
    ev *x = event(p, EV_ROLE_PUT);
    x->nitems = r->nitems;
    memcpy(x->items, r->items, r->nitems * sizeof *r->items);
    model_dedup(x->items, &x->nitems); /* a permission named twice is there once */
    uint32_t fresh = 0;
    for (uint32_t i = 0; i < x->nitems; i++) {
        if (!model_key_ok(x->items[i].p, x->items[i].n))
            return plan_why(res->msg, TK_EINVAL,
                            "'%.*s' is not a permission key ([A-Za-z0-9][A-Za-z0-9:._-]*)",
                            PLAN_SL(x->items[i]));
        rc = state_perm_by_key(p->t, tn.id, x->items[i].p, x->items[i].n, &perm);
        if (rc == TK_ENOTFOUND)
            fresh++;
        else if (rc)
            return rc;
    }
    if (tn.nperms + fresh > TK_MAX_TENANT_PERMS)
        return plan_why(res->msg, TK_ELIMIT, "at most %d permissions in a tenant",
                        TK_MAX_TENANT_PERMS);
    if (state_role_by_key(p->t, tn.id, r->key.p, r->key.n, &role) == TK_ENOTFOUND
        && tn.lim.roles && tn.nroles >= tn.lim.roles)
        return plan_why(res->msg, TK_ELIMIT, "tenant '%s' has %u roles, its limit (max_roles)",
                        tn.slug, tn.nroles);
    x->tenant = r->tenant;
    x->key = r->key;
    x->name = r->name;
    x->level = r->level;
    p->revokes = role_put_revokes(p->t, tn.id, x);
    return 0;
}

/* ROLE_DELETE and PERM_DELETE: a key in the tenant named. */
static int plan_key_delete(plan *p, const eng_req *r, eng_res *res)
{
    bool role = r->op == ENG_ROLE_DELETE;
    const char *noun = role ? "role" : "permission";
    st_tenant tn;
    int rc = tenant_named(p, r, &tn, res->msg);
    if (rc)
        return rc;
    if (!model_key_ok(r->key.p, r->key.n))
        return plan_why(res->msg, TK_EINVAL, "'%.*s' is not a %s key", PLAN_SL(r->key), noun);
    if (role) {
        st_role ro;
        rc = state_role_by_key(p->t, tn.id, r->key.p, r->key.n, &ro);
    } else {
        st_perm pe;
        rc = state_perm_by_key(p->t, tn.id, r->key.p, r->key.n, &pe);
    }
    if (rc)
        return rc == TK_ENOTFOUND ? plan_why(res->msg, rc, "no %s '%.*s' in tenant '%s'", noun,
                                             PLAN_SL(r->key), tn.slug)
                                  : rc;
    ev *x = event(p, role ? EV_ROLE_DELETE : EV_PERM_DELETE);
    x->tenant = r->tenant;
    x->key = r->key;
    p->revokes = true;
    return 0;
}

static int plan_account_create(plan *p, const eng_req *r, eng_res *res)
{
    st_tenant tn;
    st_account ac;
    int rc = tenant_named(p, r, &tn, res->msg);
    if (rc)
        return rc;
    if (!str_ok_slug(r->account))
        return plan_why(res->msg, TK_EINVAL,
                        "'%.*s' is not an account slug ([a-z0-9][a-z0-9-]{0,62})",
                        PLAN_SL(r->account));
    rc = state_account_by_slug(p->t, tn.id, r->account.p, r->account.n, &ac);
    if (rc != TK_ENOTFOUND)
        return rc ? rc
                  : plan_why(res->msg, TK_EEXIST, "account '%.*s' already exists in tenant '%s'",
                             PLAN_SL(r->account), tn.slug);
    ev *x = event(p, EV_ACCOUNT_CREATE);
    x->tenant = r->tenant;
    x->account = r->account;
    return 0;
}

/* ---- users and personal keys (the operator) ------------------------------ */

/* The names of the user's event, copied into the plan (the state's copies
 * go when the planner returns). */
static void user_names(plan *p, ev *x, const st_tenant *tn, const st_account *ac, tk_str user)
{
    set_str(&x->tenant, strcpy(p->slugs[0], tn->slug));
    set_str(&x->account, strcpy(p->slugs[1], ac->slug));
    x->user = user;
}

/* The roles a user request gives (duplicates dropped), checked. */
static int user_roles(plan *p, const eng_req *r, const st_tenant *tn, ev *x, char *msg)
{
    x->nitems = r->nitems;
    memcpy(x->items, r->items, r->nitems * sizeof *r->items);
    model_dedup(x->items, &x->nitems);
    return check_roles(p->t, tn->id, x->items, x->nitems, NULL, msg);
}

static int plan_user_create(plan *p, const eng_req *r, eng_res *res)
{
    st_tenant tn;
    st_account ac;
    st_user u;
    int rc = plan_scope(p->t, &r->actor, r->tenant, r->account, true, &tn, &ac, res->msg);
    if (rc)
        return rc;
    if (!str_ok_slug(r->user))
        return plan_why(res->msg, TK_EINVAL, "'%.*s' is not a user slug ([a-z0-9][a-z0-9-]{0,62})",
                        PLAN_SL(r->user));
    rc = state_user_by_slug(p->t, ac.id, r->user.p, r->user.n, &u);
    if (rc != TK_ENOTFOUND)
        return rc ? rc
                  : plan_why(res->msg, TK_EEXIST, "user '%.*s' already exists in %s/%s",
                             PLAN_SL(r->user), tn.slug, ac.slug);
    ev *x = event(p, EV_USER_CREATE);
    if ((rc = user_roles(p, r, &tn, x, res->msg)) || (rc = check_expiry(p, r->expires, res->msg)))
        return rc;
    x->flag = r->flag == 1;
    user_names(p, x, &tn, &ac, r->user);
    x->expires = r->expires;
    new_credential(p, x, TK_KIND_PERSONAL, res); /* the user's first personal key */
    return 0;
}

static int plan_user_set(plan *p, const eng_req *r, eng_res *res)
{
    st_tenant tn;
    st_account ac;
    st_user u;
    int rc = user_named(p, r, &tn, &ac, &u, res->msg);
    if (rc)
        return rc;
    ev *x = event(p, EV_USER_PUT);
    if (r->has_items) {
        if ((rc = user_roles(p, r, &tn, x, res->msg)))
            return rc;
    } else { /* unchanged roles: the current ones that still exist */
        for (uint32_t i = 0; i < u.nroles; i++) {
            st_role role;
            if (state_role_by_id(p->t, u.roles[i], &role) == 0) {
                uint32_t k = x->nitems++;
                strcpy(p->keys[k], role.key);
                set_str(&x->items[k], p->keys[k]);
            }
        }
    }
    x->flag = r->flag < 0 ? u.portal : r->flag == 1;
    user_names(p, x, &tn, &ac, r->user);
    p->revokes = user_set_revokes(p->t, tn.id, &u, x);
    return 0;
}

static int plan_key_create(plan *p, const eng_req *r, eng_res *res)
{
    st_tenant tn;
    st_account ac;
    st_user u;
    int rc = user_named(p, r, &tn, &ac, &u, res->msg);
    if (rc || (rc = check_expiry(p, r->expires, res->msg)))
        return rc;
    if (tn.lim.keys && u.nkeys >= tn.lim.keys)
        return plan_why(res->msg, TK_ELIMIT,
                        "user '%s' has %u personal keys, the limit of tenant "
                        "'%s' (max_keys); delete one first",
                        u.slug, u.nkeys, tn.slug);
    ev *x = event(p, EV_KEY_CREATE);
    user_names(p, x, &tn, &ac, r->user);
    x->expires = r->expires;
    new_credential(p, x, TK_KIND_PERSONAL, res);
    return 0;
}

/* ---- tokens (users) and credential deletes -------------------------------- */

static int plan_token_create(plan *p, const eng_req *r, eng_res *res)
{
    st_tenant tn;
    st_account ac;
    st_user u;
    uint32_t levels[TK_MAX_ROLES], nuser, role_levels[TK_MAX_ROLES];
    tk_str roles[TK_MAX_ROLES];
    uint32_t nroles = r->nitems;
    rules_why rw;
    int rc;

    if (r->actor.kind != TK_ACTOR_USER)
        return plan_why(res->msg, rules_may_manage_tokens(&r->actor, false, true),
                        "tokens are created by a user (personal key), not by the operator key");
    if ((rc = plan_scope(p->t, &r->actor, r->tenant, r->account, true, &tn, &ac, res->msg))
        || (rc = state_user_by_id(p->t, r->actor.user, &u)))
        return rc == TK_ENOTFOUND ? TK_EUNAUTH : rc;
    nuser = user_levels(p->t, &u, levels);
    if (nroles > TK_MAX_ROLES)
        return plan_why(res->msg, TK_ELIMIT, "at most %d roles on a token", TK_MAX_ROLES);
    memcpy(roles, r->items, nroles * sizeof *roles);
    model_dedup(roles, &nroles);
    if (!model_text_ok(r->desc.p, r->desc.n, TK_DESC_MAX))
        return plan_why(res->msg, TK_EINVAL,
                        "the description must be UTF-8 text of at most %d bytes", TK_DESC_MAX);
    if ((rc = check_expiry(p, r->expires, res->msg)))
        return rc;
    /* Rule 2 before anything about roles is revealed. */
    if ((rc = rules_may_manage_tokens(&r->actor, u.portal, true)))
        return plan_why(res->msg, rc, "user '%s' may not manage API tokens (no portal access)",
                        u.slug);
    if ((rc = check_roles(p->t, tn.id, roles, nroles, role_levels, res->msg)))
        return rc;
    switch (rules_token_create(tn.api_tokens, levels, nuser, role_levels, nroles, &rw)) {
    case 0: break;
    case TK_EDISABLED:
        return plan_why(res->msg, TK_EDISABLED, "API tokens are switched off for tenant '%s'",
                        tn.slug);
    case TK_EINVAL: return plan_why(res->msg, TK_EINVAL, "a token needs at least one role");
    default:
        if (rw.no_level)
            return plan_why(res->msg, TK_EDENIED,
                            "user '%s' has no roles, so may give a token none", u.slug);
        return plan_why(res->msg, TK_EDENIED,
                        "role '%.*s' (level %u) is stronger than %s's own roles (level %u)",
                        PLAN_SL(roles[rw.role]), role_levels[rw.role], u.slug, rw.strongest);
    }
    if (tn.lim.tokens && ac.live >= tn.lim.tokens)
        return plan_why(res->msg, TK_ELIMIT,
                        "account '%s' has %u API tokens, the limit of tenant "
                        "'%s' (max_tokens); delete some first",
                        ac.slug, ac.live, tn.slug);
    int64_t wait_ms = 0;
    if (!rl_take(p->rate, u.id, tn.lim.rate, tn.lim.burst, p->now_ms, &wait_ms)) {
        res->retry_after_ms = (uint32_t)(wait_ms > 0 ? wait_ms : 1);
        return plan_why(res->msg, TK_ERATE,
                        "user '%s' may create %u API tokens a second (burst %u): "
                        "retry after %u ms",
                        u.slug, tn.lim.rate, tn.lim.burst, res->retry_after_ms);
    }
    ev *x = event(p, EV_TOKEN_CREATE);
    set_str(&x->tenant, strcpy(p->slugs[0], tn.slug));
    set_str(&x->account, strcpy(p->slugs[1], ac.slug));
    set_str(&x->user, strcpy(p->slugs[2], u.slug));
    x->desc = r->desc;
    x->nitems = nroles;
    memcpy(x->items, roles, nroles * sizeof *roles);
    x->expires = r->expires;
    new_credential(p, x, TK_KIND_TOKEN, res);
    return 0;
}

/* TOKEN_DELETE (a user of the account, with the portal flag, or the
 * operator) and KEY_DELETE (the operator). */
static int plan_cred_delete(plan *p, const eng_req *r, eng_res *res)
{
    st_cred cr;
    int rc;
    bool token = r->op == ENG_TOKEN_DELETE;
    if (r->actor.kind == TK_ACTOR_USER) {
        st_user u;
        if ((rc = state_user_by_id(p->t, r->actor.user, &u)))
            return rc == TK_ENOTFOUND ? TK_EUNAUTH : rc;
        if ((rc = rules_may_manage_tokens(&r->actor, u.portal, false)))
            return plan_why(res->msg, rc, "user '%s' may not manage API tokens (no portal access)",
                            u.slug);
    }
    char idstr[TK_ID_STR_LEN + 1];
    secret_id_format(&r->id, idstr);
    rc = state_cred_by_id(p->t, &r->id, &cr);
    /* Absent, another kind, or another tenant's or account's: all look the
     * same (rule 7). */
    if (rc == TK_ENOTFOUND || (!rc && (cr.kind != (token ? TK_KIND_TOKEN : TK_KIND_PERSONAL)
                                       || !rules_may_see(&r->actor, cr.tenant, cr.account))))
        return plan_why(res->msg, TK_ENOTFOUND, "no %s %s%s", token ? "token" : "personal key",
                        idstr, r->actor.kind == TK_ACTOR_USER ? " in your account" : "");
    if (rc)
        return rc;
    event(p, token ? EV_TOKEN_DELETE : EV_KEY_DELETE)->id = r->id;
    p->revokes = true;
    return 0;
}

/* A token's description: its creator's account under rule 2, or the
 * operator. */
static int plan_token_set(plan *p, const eng_req *r, eng_res *res)
{
    st_cred cr;
    int rc;
    if (r->actor.kind == TK_ACTOR_USER) {
        st_user u;
        if ((rc = state_user_by_id(p->t, r->actor.user, &u)))
            return rc == TK_ENOTFOUND ? TK_EUNAUTH : rc;
        if ((rc = rules_may_manage_tokens(&r->actor, u.portal, false)))
            return plan_why(res->msg, rc, "user '%s' may not manage API tokens (no portal access)",
                            u.slug);
    }
    if (!model_text_ok(r->desc.p, r->desc.n, TK_DESC_MAX))
        return plan_why(res->msg, TK_EINVAL,
                        "the description must be UTF-8 text of at most %d bytes", TK_DESC_MAX);
    char idstr[TK_ID_STR_LEN + 1];
    secret_id_format(&r->id, idstr);
    rc = state_cred_by_id(p->t, &r->id, &cr);
    if (rc == TK_ENOTFOUND || (!rc && (cr.kind != TK_KIND_TOKEN
                                       || !rules_may_see(&r->actor, cr.tenant, cr.account))))
        return plan_why(res->msg, TK_ENOTFOUND, "no token %s%s", idstr,
                        r->actor.kind == TK_ACTOR_USER ? " in your account" : "");
    if (rc)
        return rc;
    ev *x = event(p, EV_TOKEN_SET);
    x->id = r->id;
    x->desc = r->desc;
    return 0;
}

/* ---- deletions (the operator) ----------------------------------------------
 *
 * Each is one event; what goes with it (a user's keys; an account's tokens,
 * users and keys; a permission out of its roles; all of a tenant) is taken
 * by the apply (store/state.c), so the log says it once and a replay takes
 * the same. They take access away: rule 12 lets them use the reserve. */

static int plan_user_delete(plan *p, const eng_req *r, eng_res *res)
{
    st_tenant tn;
    st_account ac;
    st_user u;
    int rc = user_named(p, r, &tn, &ac, &u, res->msg);
    if (rc)
        return rc;
    ev *x = event(p, EV_USER_DELETE);
    user_names(p, x, &tn, &ac, r->user);
    p->revokes = true;
    return 0;
}

static int plan_account_delete(plan *p, const eng_req *r, eng_res *res)
{
    st_tenant tn;
    st_account ac;
    int rc = plan_scope(p->t, &r->actor, r->tenant, r->account, true, &tn, &ac, res->msg);
    if (rc)
        return rc;
    ev *x = event(p, EV_ACCOUNT_DELETE);
    set_str(&x->tenant, strcpy(p->slugs[0], tn.slug));
    set_str(&x->account, strcpy(p->slugs[1], ac.slug));
    p->revokes = true;
    return 0;
}

static int plan_tenant_delete(plan *p, const eng_req *r, eng_res *res)
{
    st_tenant tn;
    int rc = tenant_named(p, r, &tn, res->msg);
    if (rc)
        return rc;
    event(p, EV_TENANT_DELETE)->tenant = r->tenant;
    p->revokes = true;
    return 0;
}

/* ---- the keyring -------------------------------------------------------- */

typedef struct ring_count {
    uint32_t live, operators;
    bool boot_named; /* a record (live or removed) is called KR_BOOTSTRAP */
    const tk_id *id; /* plan_operator_stands: the key looked for */
    bool found;
} ring_count;

static int count_ring(void *arg, const st_ring *r)
{
    ring_count *c = arg;
    c->boot_named |= strcmp(r->name, KR_BOOTSTRAP) == 0;
    if (r->kind == ST_RING_GONE)
        return 0;
    c->live++;
    c->operators += r->kind == KR_OPERATOR;
    if (c->id && memcmp(c->id->b, r->id.b, TK_ID_LEN) == 0)
        c->found = true;
    return 0;
}

/* The live keys: the records, and the bootstrap key while no record has
 * its name (its id is zeros). */
static int ring_counts(state_txn *t, const tk_id *id, ring_count *c)
{
    static const tk_id none;
    memset(c, 0, sizeof *c);
    c->id = id;
    int rc = state_ring_walk(t, count_ring, c);
    if (!rc && !c->boot_named) {
        c->live++, c->operators++;
        c->found |= id && memcmp(id->b, none.b, TK_ID_LEN) == 0;
    }
    return rc;
}

int plan_operator_stands(state_txn *t, const tk_actor *a, char *msg)
{
    ring_count c;
    int rc = ring_counts(t, &a->key, &c);
    if (rc)
        return rc;
    return c.found ? 0
                   : plan_why(msg, TK_EUNAUTH, "the operator key was removed from the keyring");
}

static bool is_boot(tk_str name)
{
    return name.n == strlen(KR_BOOTSTRAP) && memcmp(name.p, KR_BOOTSTRAP, name.n) == 0;
}

static int plan_ring_add(plan *p, const eng_req *r, eng_res *res)
{
    ring_count c;
    st_ring old;
    if (!str_ok_slug(r->name))
        return plan_why(res->msg, TK_EINVAL, "'%.*s' is not a key name ([a-z0-9][a-z0-9-]{0,62})",
                        PLAN_SL(r->name));
    int rc = state_ring_by_name(p->t, r->name.p, r->name.n, &old);
    if (rc && rc != TK_ENOTFOUND)
        return rc;
    if ((rc == 0 && old.kind != ST_RING_GONE) || (rc == TK_ENOTFOUND && is_boot(r->name)))
        return plan_why(res->msg, TK_EEXIST, "the keyring has a key called '%.*s'",
                        PLAN_SL(r->name));
    if ((rc = ring_counts(p->t, NULL, &c)))
        return rc;
    if (c.live >= KR_MAX)
        return plan_why(res->msg, TK_ELIMIT, "the keyring holds %d keys, its most", KR_MAX);
    ev *x = event(p, EV_KEYRING_ADD);
    memcpy(p->slugs[0], r->name.p, r->name.n);
    p->slugs[0][r->name.n] = '\0';
    x->key = (tk_str){p->slugs[0], r->name.n};
    x->flag = r->flag == 1;
    /* The key: the key file's form, returned once; the event keeps its hash
     * (rule 4's way). */
    randombytes_buf(x->id.b, TK_ID_LEN);
    keyfile_new_key(x->flag ? "tkg_" : "tko_", res->secret);
    sha256(x->hash, res->secret, KEYFILE_KEY_LEN);
    res->id = x->id;
    return 0;
}

static int plan_ring_remove(plan *p, const eng_req *r, eng_res *res)
{
    ring_count c;
    st_ring old;
    int rc = state_ring_by_name(p->t, r->name.p, r->name.n, &old);
    if (rc && rc != TK_ENOTFOUND)
        return rc;
    bool live = rc == 0 ? old.kind != ST_RING_GONE : is_boot(r->name);
    if (!str_ok_slug(r->name) || !live)
        return plan_why(res->msg, TK_ENOTFOUND, "the keyring has no key called '%.*s'",
                        PLAN_SL(r->name));
    bool oper = rc == 0 ? old.kind == KR_OPERATOR : true;
    if ((rc = ring_counts(p->t, NULL, &c)))
        return rc;
    if (oper && c.operators == 1) /* nobody could manage anything any more */
        return plan_why(res->msg, TK_EDENIED,
                        "'%.*s' is the last operator key: add another one first",
                        PLAN_SL(r->name));
    ev *x = event(p, EV_KEYRING_REMOVE);
    memcpy(p->slugs[0], r->name.p, r->name.n);
    p->slugs[0][r->name.n] = '\0';
    x->key = (tk_str){p->slugs[0], r->name.n};
    p->revokes = true; /* it takes access away: rule 12's reserve applies */
    return 0;
}

/* ---- the table ----------------------------------------------------------- */

typedef int (*planner)(plan *p, const eng_req *r, eng_res *res);

/* Who may ask: the operator only, or users too (their own account's, under
 * rule 2; the planner checks what applies). */
static const struct {
    planner fn;
    bool users;
} planners[ENG_OP_MAX + 1] = {
    [ENG_TENANT_CREATE] = {plan_tenant_create, false},
    [ENG_TENANT_SET] = {plan_tenant_set, false},
    [ENG_PERM_PUT] = {plan_perm_put, false},
    [ENG_ROLE_PUT] = {plan_role_put, false},
    [ENG_ROLE_DELETE] = {plan_key_delete, false},
    [ENG_ACCOUNT_CREATE] = {plan_account_create, false},
    [ENG_USER_CREATE] = {plan_user_create, false},
    [ENG_USER_SET] = {plan_user_set, false},
    [ENG_KEY_CREATE] = {plan_key_create, false},
    [ENG_KEY_DELETE] = {plan_cred_delete, false},
    [ENG_TOKEN_CREATE] = {plan_token_create, true},
    [ENG_TOKEN_DELETE] = {plan_cred_delete, true},
    [ENG_TOKEN_SET] = {plan_token_set, true},
    [ENG_USER_DELETE] = {plan_user_delete, false},
    [ENG_ACCOUNT_DELETE] = {plan_account_delete, false},
    [ENG_PERM_DELETE] = {plan_key_delete, false},
    [ENG_TENANT_DELETE] = {plan_tenant_delete, false},
    [ENG_KEYRING_ADD] = {plan_ring_add, false},
    [ENG_KEYRING_REMOVE] = {plan_ring_remove, false},
};

typedef struct ring_named {
    const tk_id *id;
    char *out;
    bool found;
} ring_named;

static int name_of_id(void *arg, const st_ring *r)
{
    ring_named *n = arg;
    if (r->kind != ST_RING_GONE && memcmp(r->id.b, n->id->b, TK_ID_LEN) == 0) {
        memcpy(n->out, r->name, sizeof r->name);
        n->found = true;
    }
    return 0;
}

/* The keyring name of the operator key id: a record's, or the bootstrap
 * key's (zeros). */
static int ring_name(plan *p, const tk_id *id, tk_str *out)
{
    static const tk_id none;
    ring_named n = {id, p->by[0], false};
    int rc = state_ring_walk(p->t, name_of_id, &n);
    if (rc)
        return rc;
    if (!n.found && memcmp(id->b, none.b, TK_ID_LEN) == 0)
        memcpy(p->by[0], KR_BOOTSTRAP, sizeof KR_BOOTSTRAP);
    else if (!n.found)
        p->by[0][0] = '\0';
    *out = (tk_str){p->by[0], strlen(p->by[0])};
    return 0;
}

/* The audit record of the request's event: who (the actor, by slugs, as
 * it stands now: a user deleted later stays named), with which key, from
 * where. 0, or a store error. */
static int by(plan *p, const eng_req *r)
{
    ev_by *b = &p->evs[0].by;
    b->kind = (uint8_t)r->actor.kind;
    b->peer = r->peer;
    b->listener = r->listener;
    if (r->actor.kind != TK_ACTOR_USER)
        return ring_name(p, &r->actor.key, &b->key_name);
    st_tenant tn;
    st_account ac;
    st_user u;
    int rc = state_tenant_by_id(p->t, r->actor.tenant, &tn);
    if (!rc)
        rc = state_account_by_id(p->t, r->actor.account, &ac);
    if (!rc)
        rc = state_user_by_id(p->t, r->actor.user, &u);
    if (rc)
        return rc == TK_ENOTFOUND ? TK_EIO : rc; /* it stood a moment ago (plan_actor_stands) */
    memcpy(p->by[0], tn.slug, sizeof p->by[0]);
    memcpy(p->by[1], ac.slug, sizeof p->by[1]);
    memcpy(p->by[2], u.slug, sizeof p->by[2]);
    b->tenant = (tk_str){p->by[0], strlen(p->by[0])};
    b->account = (tk_str){p->by[1], strlen(p->by[1])};
    b->user = (tk_str){p->by[2], strlen(p->by[2])};
    b->session = r->actor.session != 0;
    b->has_key = !b->session;
    b->key = r->actor.key;
    return 0;
}

int plan_request(plan *p, const eng_req *r, eng_res *res)
{
    int rc;
    p->n = 0;
    p->revokes = false;
    if (r->op < 1 || r->op > ENG_OP_MAX || !planners[r->op].fn)
        return plan_why(res->msg, TK_EINVAL, "unknown operation");
    if (r->actor.kind != TK_ACTOR_OPERATOR && r->actor.kind != TK_ACTOR_USER)
        return TK_EUNAUTH;
    if (r->actor.kind == TK_ACTOR_OPERATOR
        && (rc = plan_operator_stands(p->t, &r->actor, res->msg)))
        return rc; /* rule 11 for the operator: its key is still on the keyring */
    if (r->actor.kind == TK_ACTOR_USER) {
        if ((rc = plan_actor_stands(p->t, &r->actor, p->now_ms / 1000, res->msg)))
            return rc;
        if (!planners[r->op].users)
            return plan_why(
                res->msg, TK_EDENIED,
                r->op == ENG_KEY_DELETE
                    ? "only the operator key manages personal keys"
                    : "only the operator key manages tenants, roles, accounts and users");
    }
    if ((rc = planners[r->op].fn(p, r, res)) || p->n == 0)
        return rc;
    return by(p, r);
}
