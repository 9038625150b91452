/*
 * query.c - the engine's reads; see query.h.
 *
 * A read is checked in one order, whatever it is about: the personal key
 * still stands (rule 11), the actor may read that kind (the operator
 * anything; a user what eng_query says, with the portal flag where rule 2
 * asks), the scope (a user's own, or the one the operator names), the
 * cursor; then the rows, each built from the records of the transaction
 * into one reused row.
 */
#include "store/query.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/err.h"
#include "core/keyring.h"
#include "core/rules.h"
#include "core/xmalloc.h"
#include "store/plan.h"

/* ---- cursors ------------------------------------------------------------ *
 *
 * Keys and tokens: the ord of the one before, in its user or account (how
 * many were ever made there, which the caller may know; the log's seq would
 * show how busy other tenants are), the 8 bytes big-endian in base64url.
 * The rest: the name of the one before. */

#define ORD_BYTES 8

static bool by_ord(eng_kind k)
{
    return k == ENG_KEYS || k == ENG_TOKENS;
}

static void ord_format(uint64_t ord, char out[ENG_CURSOR_LEN + 1])
{
    uint8_t b[ORD_BYTES];
    for (int i = 0; i < ORD_BYTES; i++)
        b[i] = (uint8_t)(ord >> (56 - 8 * i));
    sodium_bin2base64(out, ENG_CURSOR_LEN + 1, b, sizeof b,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static int ord_parse(const char *text, size_t n, uint64_t *ord)
{
    uint8_t b[ORD_BYTES];
    size_t len = 0;
    if (n != ENG_CURSOR_LEN
        || sodium_base642bin(b, sizeof b, text, n, NULL, &len, NULL,
                             sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0
        || len != sizeof b)
        return TK_EINVAL;
    uint64_t v = 0;
    for (int i = 0; i < ORD_BYTES; i++)
        v = v << 8 | b[i];
    *ord = v;
    return 0;
}

/* Slugs name tenants, accounts and users; keys name roles and permissions. */
static bool name_ok(eng_kind k, const char *text, size_t n)
{
    return k == ENG_PERMS || k == ENG_ROLES ? model_key_ok(text, n) : model_slug_ok(text, n);
}

bool query_cursor_ok(eng_kind kind, const char *text, size_t n)
{
    uint64_t ord;
    return by_ord(kind) ? ord_parse(text, n, &ord) == 0 : name_ok(kind, text, n);
}

/* ---- rows ------------------------------------------------------------- */

typedef struct qctx {
    state_txn *t;
    const eng_query *q;
    int (*fn)(void *arg, const eng_row *row);
    void *arg;
    uint32_t tenant;                            /* the scope's */
    uint32_t found;                             /* a search's rows given to fn */
    eng_row row;                                /* reused for every row */
    char names[TK_MAX_ROLE_PERMS][TK_KEY_MAX + 1]; /* what row's pointers point to */
} qctx;

static void name_cursor(eng_row *row, const char *name)
{
    snprintf(row->cursor, sizeof row->cursor, "%s", name);
}

static int row_tenant(void *arg, const st_tenant *r)
{
    qctx *c = arg;
    eng_row *row = &c->row;
    row->kind = ENG_TENANTS;
    strcpy(row->u.tenant.slug, r->slug);
    row->u.tenant.api_tokens = r->api_tokens;
    row->u.tenant.limits = r->lim;
    row->u.tenant.roles = r->nroles;
    row->u.tenant.permissions = r->nperms;
    name_cursor(row, r->slug);
    return c->fn(c->arg, row);
}

static int row_perm(void *arg, const st_perm *r)
{
    qctx *c = arg;
    eng_row *row = &c->row;
    row->kind = ENG_PERMS;
    strcpy(row->u.perm.key, r->key);
    strcpy(row->u.perm.description, r->desc);
    name_cursor(row, r->key);
    return c->fn(c->arg, row);
}

static int row_role(void *arg, const st_role *r)
{
    qctx *c = arg;
    eng_row *row = &c->row;
    row->kind = ENG_ROLES;
    strcpy(row->u.role.key, r->key);
    strcpy(row->u.role.name, r->name);
    row->u.role.level = r->level;
    row->u.role.nperms = 0;
    for (uint32_t i = 0; i < r->nperms; i++) {
        st_perm p;
        int rc = state_perm_by_num(c->t, r->tenant, r->perms[i], &p);
        if (rc == TK_ENOTFOUND)
            continue;
        if (rc)
            return rc;
        uint32_t k = row->u.role.nperms++;
        strcpy(c->names[k], p.key);
        row->u.role.perms[k] = c->names[k];
    }
    name_cursor(row, r->key);
    return c->fn(c->arg, row);
}

static int row_account(void *arg, const st_account *r)
{
    qctx *c = arg;
    eng_row *row = &c->row;
    row->kind = ENG_ACCOUNTS;
    strcpy(row->u.account.slug, r->slug);
    row->u.account.tokens = r->live;
    name_cursor(row, r->slug);
    return c->fn(c->arg, row);
}

static int row_user(void *arg, const st_user *r)
{
    qctx *c = arg;
    eng_row *row = &c->row;
    row->kind = ENG_USERS;
    strcpy(row->u.user.slug, r->slug);
    row->u.user.portal = r->portal;
    row->u.user.keys = r->nkeys;
    row->u.user.nroles = 0;
    for (uint32_t i = 0; i < r->nroles; i++) {
        st_role role;
        if (state_role_by_id(c->t, r->roles[i], &role) != 0)
            continue; /* deleted */
        uint32_t k = row->u.user.nroles++;
        strcpy(c->names[k], role.key);
        row->u.user.roles[k] = c->names[k];
    }
    name_cursor(row, r->slug);
    return c->fn(c->arg, row);
}

static int row_cred(void *arg, const st_cred *r)
{
    qctx *c = arg;
    eng_row *row = &c->row;
    if (r->kind == TK_KIND_PERSONAL) {
        row->kind = ENG_KEYS;
        row->u.key.id = r->id;
        row->u.key.created_ms = r->created_ms;
        row->u.key.expires = r->expires;
    } else {
        eng_token_info *in = &row->u.token;
        row->kind = ENG_TOKENS;
        memset(in, 0, sizeof *in);
        in->client_id = r->id;
        strcpy(in->description, r->desc);
        for (uint32_t i = 0; i < r->nroles; i++) {
            st_role role;
            if (state_role_by_id(c->t, r->roles[i], &role) == 0)
                strcpy(in->roles[in->nroles++], role.key);
        }
        strcpy(in->created_by, r->creator);
        in->created_ms = r->created_ms;
        in->expires = r->expires;
        ord_format(r->ord, in->cursor);
    }
    ord_format(r->ord, row->cursor);
    return c->fn(c->arg, row);
}

/* ASCII case-insensitive: does hay hold needle? (UTF-8 beyond ASCII is
 * compared as bytes.) */
static bool holds(const char *hay, tk_str needle)
{
    size_t n = strlen(hay);
    for (size_t i = 0; needle.n <= n && i <= n - needle.n; i++) {
        size_t j = 0;
        while (j < needle.n && tolower((unsigned char)hay[i + j])
                                   == tolower((unsigned char)needle.p[j]))
            j++;
        if (j == needle.n)
            return true;
    }
    return false;
}

#define SEARCH_FULL 1 /* a search's page is full: the walk stops there */

/* A token listing with a search: the rows whose description, client ID or
 * creator holds the text, until the page is full. */
static int row_found(void *arg, const st_cred *r)
{
    qctx *c = arg;
    char idstr[TK_ID_STR_LEN + 1];
    secret_id_format(&r->id, idstr);
    if (!holds(r->desc, c->q->search) && !holds(idstr, c->q->search)
        && !holds(r->creator, c->q->search))
        return 0;
    if (c->found == c->q->limit)
        return SEARCH_FULL;
    c->found++;
    return row_cred(arg, r);
}

/* ---- who may read what ------------------------------------------------ */

static const char *const kind_names[ENG_KIND_MAX + 1] = {
    [ENG_TENANTS] = "tenants", [ENG_PERMS] = "permissions", [ENG_ROLES] = "roles",
    [ENG_ACCOUNTS] = "accounts", [ENG_USERS] = "users", [ENG_KEYS] = "personal keys",
    [ENG_TOKENS] = "tokens", [ENG_KEYRING] = "the keyring",
};

/* A user's read: its key stands (rule 11); the kind is one users may
 * read; the portal flag where rule 2 asks (everything but its own keys). */
static int user_may_read(state_txn *t, const eng_query *q, int64_t now_s, char *msg)
{
    st_user u;
    int rc = plan_actor_stands(t, &q->actor, now_s, msg);
    if (rc)
        return rc;
    if (q->kind == ENG_ACCOUNTS || (q->kind == ENG_TENANTS && !q->get))
        return plan_why(msg, TK_EDENIED, "only the operator key reads %s", kind_names[q->kind]);
    if (q->kind == ENG_KEYS)
        return 0; /* its own, portal or not */
    if ((rc = state_user_by_id(t, q->actor.user, &u)))
        return rc == TK_ENOTFOUND ? TK_EUNAUTH : rc;
    if ((rc = rules_may_manage_tokens(&q->actor, u.portal, false)))
        return plan_why(msg, rc, "user '%s' may not read %s (no portal access)", u.slug,
                        kind_names[q->kind]);
    return 0;
}

/* The user a KEYS or USERS query is about, in account ac. */
static int user_named(state_txn *t, const eng_query *q, const st_tenant *tn,
                      const st_account *ac, st_user *u, char *msg)
{
    if (q->actor.kind == TK_ACTOR_USER && q->kind == ENG_KEYS)
        return state_user_by_id(t, q->actor.user, u);
    if (!model_slug_ok(q->user.p, q->user.n))
        return plan_why(msg, TK_EINVAL, "'%.*s' is not a user slug ([a-z0-9][a-z0-9-]{0,62})",
                        PLAN_SL(q->user));
    int rc = state_user_by_slug(t, ac->id, q->user.p, q->user.n, u);
    return rc == TK_ENOTFOUND
               ? plan_why(msg, rc, "no user '%.*s' in %s/%s", PLAN_SL(q->user), tn->slug, ac->slug)
               : rc;
}

/* A token by client ID: the operator's, or one of the user's account;
 * anything else is "no such token" (rule 7). */
static int get_token(qctx *c, char *msg)
{
    st_cred cr;
    char idstr[TK_ID_STR_LEN + 1];
    const tk_actor *a = &c->q->actor;
    int rc = state_cred_by_id(c->t, &c->q->id, &cr);
    if (rc == TK_ENOTFOUND
        || (!rc && (cr.kind != TK_KIND_TOKEN || !rules_may_see(a, cr.tenant, cr.account)))) {
        secret_id_format(&c->q->id, idstr);
        return plan_why(msg, TK_ENOTFOUND, "no token %s%s", idstr,
                        a->kind == TK_ACTOR_USER ? " in your account" : "");
    }
    return rc ? rc : row_cred(c, &cr);
}

/* ---- the keyring ---------------------------------------------------------- */

typedef struct ring_ctx {
    const eng_query *q;
    int (*fn)(void *arg, const eng_row *row);
    void *arg;
    uint32_t shown;
    bool boot_named;
    eng_row row;
} ring_ctx;

#define RING_FULL 1 /* the page is full: the walk stops */

static int ring_row(ring_ctx *c, const char *name, bool gateway, int64_t created_ms)
{
    if (c->q->has_after) { /* at or before the cursor: shown on a page before */
        size_t n = strlen(name), m = c->q->after.n;
        int cmp = memcmp(name, c->q->after.p, n < m ? n : m);
        if (cmp < 0 || (cmp == 0 && n <= m))
            return 0;
    }
    if (c->shown == c->q->limit)
        return RING_FULL;
    c->shown++;
    memset(&c->row, 0, sizeof c->row);
    c->row.kind = ENG_KEYRING;
    snprintf(c->row.u.ring.name, sizeof c->row.u.ring.name, "%s", name);
    c->row.u.ring.gateway = gateway;
    c->row.u.ring.created_ms = created_ms;
    name_cursor(&c->row, name);
    return c->fn(c->arg, &c->row);
}

static int ring_each(void *arg, const st_ring *r)
{
    ring_ctx *c = arg;
    if (strcmp(r->name, KR_BOOTSTRAP) == 0)
        c->boot_named = true;
    if (r->kind == ST_RING_GONE)
        return 0;
    /* The bootstrap key sorts among the records: shown before the first
     * record that comes after its name. */
    if (!c->boot_named && strcmp(r->name, KR_BOOTSTRAP) > 0) {
        c->boot_named = true;
        int rc = ring_row(c, KR_BOOTSTRAP, false, 0);
        if (rc)
            return rc;
    }
    return ring_row(c, r->name, r->kind == KR_GATEWAY, r->created_ms);
}

/* The keyring by name: its records, and the bootstrap key while no record
 * has its name. */
static int ring_list(state_txn *t, const eng_query *q, int (*fn)(void *arg, const eng_row *row),
                     void *arg, char *msg)
{
    ring_ctx *c = xcalloc(1, sizeof *c);
    c->q = q, c->fn = fn, c->arg = arg;
    int rc = state_ring_walk(t, ring_each, c);
    if (!rc) {
        /* no record named it, or none came after its name: it is last */
        st_ring r;
        int nr = state_ring_by_name(t, KR_BOOTSTRAP, strlen(KR_BOOTSTRAP), &r);
        if (nr == TK_ENOTFOUND && !c->boot_named)
            rc = ring_row(c, KR_BOOTSTRAP, false, 0);
        else if (nr && nr != TK_ENOTFOUND)
            rc = nr;
    }
    free(c);
    (void)msg;
    return rc == RING_FULL ? 0 : rc;
}

int query_run(state_txn *t, const eng_query *q, int64_t now_s,
              int (*fn)(void *arg, const eng_row *row), void *arg, char *msg)
{
    st_tenant tn;
    st_account ac;
    st_user u;
    char scratch[ENG_MSG_MAX];
    int rc;
    if (!msg)
        msg = scratch;
    msg[0] = '\0';
    if (q->kind < 1 || q->kind > ENG_KIND_MAX)
        return plan_why(msg, TK_EINVAL, "nothing to read");
    if (q->actor.kind != TK_ACTOR_OPERATOR && q->actor.kind != TK_ACTOR_USER)
        return TK_EUNAUTH;
    if (q->actor.kind == TK_ACTOR_USER && (rc = user_may_read(t, q, now_s, msg)))
        return rc;
    if (q->actor.kind == TK_ACTOR_OPERATOR && (rc = plan_operator_stands(t, &q->actor, msg)))
        return rc;
    if (q->kind == ENG_KEYRING)
        return q->actor.kind == TK_ACTOR_OPERATOR
                   ? ring_list(t, q, fn, arg, msg)
                   : plan_why(msg, TK_EDENIED, "only the operator key reads the keyring");
    if (q->get && q->kind != ENG_TENANTS && q->kind != ENG_USERS && q->kind != ENG_TOKENS)
        return plan_why(msg, TK_EINVAL, "%s are listed, not got one by one", kind_names[q->kind]);

    qctx *c = xcalloc(1, sizeof *c);
    c->t = t;
    c->q = q;
    c->fn = fn;
    c->arg = arg;
    if (q->get && q->kind == ENG_TOKENS) { /* by ID: no scope to name */
        rc = get_token(c, msg);
        goto done;
    }
    /* The scope: the operator names it. */
    bool need_account = q->kind == ENG_USERS || q->kind == ENG_KEYS || q->kind == ENG_TOKENS;
    if (q->actor.kind == TK_ACTOR_OPERATOR && (q->kind != ENG_TENANTS || q->get)
        && (q->tenant.n == 0 || (need_account && q->account.n == 0)
            || (q->kind == ENG_KEYS && q->user.n == 0))) {
        rc = plan_why(msg, TK_EINVAL, "the operator names the scope: give %s",
                      q->kind == ENG_KEYS ? "tenant, account and user"
                      : need_account      ? "tenant and account"
                                          : "tenant");
        goto done;
    }
    if (q->kind != ENG_TENANTS || q->get) {
        rc = plan_scope(t, &q->actor, q->tenant, q->account, need_account, &tn, &ac, msg);
        if (rc)
            goto done;
        c->tenant = tn.id;
    }
    if (q->get) {
        if (q->kind == ENG_TENANTS)
            rc = row_tenant(c, &tn);
        else if (!(rc = user_named(t, q, &tn, &ac, &u, msg)))
            rc = row_user(c, &u);
        goto done;
    }
    /* The cursor: a position, checked for its form only. */
    uint64_t from = 0;
    const tk_str *after = q->has_after ? &q->after : NULL;
    if (after && (by_ord(q->kind) ? ord_parse(after->p, after->n, &from) != 0
                                  : !name_ok(q->kind, after->p, after->n))) {
        rc = plan_why(msg, TK_EINVAL,
                      "field \"after\": not a listing cursor (pass the \"next\" of "
                      "the page before)");
        goto done;
    }
    switch (q->kind) {
    case ENG_TENANTS: rc = state_tenants(t, after, q->limit, row_tenant, c); break;
    case ENG_PERMS: rc = state_perms(t, tn.id, after, q->limit, row_perm, c); break;
    case ENG_ROLES: rc = state_roles(t, tn.id, after, q->limit, row_role, c); break;
    case ENG_ACCOUNTS: rc = state_accounts(t, tn.id, after, q->limit, row_account, c); break;
    case ENG_USERS: rc = state_users(t, ac.id, after, q->limit, row_user, c); break;
    case ENG_KEYS:
        if (!(rc = user_named(t, q, &tn, &ac, &u, msg)))
            rc = state_user_keys(t, u.id, from, q->limit, row_cred, c);
        break;
    case ENG_KEYRING: break; /* ring_list, above */
    case ENG_TOKENS:
        if (q->search.n == 0) {
            rc = state_account_tokens(t, ac.id, from, q->limit, row_cred, c);
        } else { /* the whole account at most (its max_tokens) */
            rc = state_account_tokens(t, ac.id, from, UINT32_MAX, row_found, c);
            rc = rc == SEARCH_FULL ? 0 : rc;
        }
        break;
    }
done:
    free(c);
    return rc;
}

int query_portal_user(state_txn *t, tk_str tenant, tk_str account, tk_str user, tk_actor *out,
                      char *msg)
{
    static const tk_actor op = {.kind = TK_ACTOR_OPERATOR};
    st_tenant tn;
    st_account ac;
    st_user u;
    int rc = plan_scope(t, &op, tenant, account, true, &tn, &ac, msg);
    if (rc)
        return rc;
    if (!model_slug_ok(user.p, user.n))
        return plan_why(msg, TK_EINVAL, "'%.*s' is not a user slug ([a-z0-9][a-z0-9-]{0,62})",
                        PLAN_SL(user));
    if ((rc = state_user_by_slug(t, ac.id, user.p, user.n, &u)))
        return rc == TK_ENOTFOUND ? plan_why(msg, rc, "no user '%.*s' in %s/%s", PLAN_SL(user),
                                             tn.slug, ac.slug)
                                  : rc;
    if (!u.portal) /* rule 2: the page is for managing tokens */
        return plan_why(msg, TK_EDENIED, "user '%s' has no portal access (USER_SET portal)",
                        u.slug);
    *out = (tk_actor){.kind = TK_ACTOR_USER, .tenant = tn.id, .account = ac.id, .user = u.id};
    return 0;
}

int query_actor_names(state_txn *t, const tk_actor *a, int64_t now_s, eng_names *out, char *msg)
{
    st_tenant tn;
    st_account ac;
    st_user u;
    int rc = plan_actor_stands(t, a, now_s, msg);
    if (!rc)
        rc = state_tenant_by_id(t, a->tenant, &tn);
    if (!rc)
        rc = state_account_by_id(t, a->account, &ac);
    if (!rc)
        rc = state_user_by_id(t, a->user, &u);
    if (rc == TK_ENOTFOUND) /* gone with its user: the credential stands no more */
        return plan_why(msg, TK_EUNAUTH, "the user this credential acts as is gone");
    if (rc)
        return rc;
    memcpy(out->tenant, tn.slug, sizeof out->tenant);
    memcpy(out->account, ac.slug, sizeof out->account);
    memcpy(out->user, u.slug, sizeof out->user);
    return 0;
}
