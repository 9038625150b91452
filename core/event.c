/*
 * event.c - event encoding; see event.h.
 *
 * One table says which fields each type carries (and which of them may be
 * absent); the encoder writes exactly those and the decoder demands exactly
 * those, so the two cannot drift. An optional field is how an event type
 * grows without making older logs unreadable: tenant_set gained "limits",
 * and every type gained "by" (who made the change).
 */
#include "core/event.h"

#include <string.h>

#include "core/err.h"

enum {
    F_TENANT = 1 << 0,
    F_ACCOUNT = 1 << 1,
    F_USER = 1 << 2,
    F_KEY = 1 << 3,
    F_NAME = 1 << 4,
    F_DESC = 1 << 5,
    F_FLAG = 1 << 6,
    F_LEVEL = 1 << 7,
    F_ITEMS = 1 << 8,
    F_ID = 1 << 9,
    F_HASH = 1 << 10,
    F_EXPIRES = 1 << 11,
    F_LIMITS = 1 << 12,
    F_BY = 1 << 13,
    F_COUNT = 14
};

static const struct {
    const char *name;
    unsigned fields;
    unsigned optional; /* of fields, those that may be absent */
} types[EV_TYPE_MAX + 1] = {
    [EV_TENANT_CREATE] = {"tenant_create", F_TENANT, 0},
    [EV_TENANT_SET] = {"tenant_set", F_TENANT | F_FLAG | F_LIMITS, F_LIMITS},
    [EV_PERM_PUT] = {"perm_put", F_TENANT | F_KEY | F_DESC, 0},
    [EV_ROLE_PUT] = {"role_put", F_TENANT | F_KEY | F_NAME | F_LEVEL | F_ITEMS, 0},
    [EV_ROLE_DELETE] = {"role_delete", F_TENANT | F_KEY, 0},
    [EV_ACCOUNT_CREATE] = {"account_create", F_TENANT | F_ACCOUNT, 0},
    [EV_USER_PUT] = {"user_put", F_TENANT | F_ACCOUNT | F_USER | F_FLAG | F_ITEMS, 0},
    [EV_KEY_CREATE] = {"key_create", F_TENANT | F_ACCOUNT | F_USER | F_ID | F_HASH | F_EXPIRES, 0},
    [EV_KEY_DELETE] = {"key_delete", F_ID, 0},
    [EV_TOKEN_CREATE] = {"token_create", F_TENANT | F_ACCOUNT | F_USER | F_ID | F_HASH | F_DESC
                                             | F_ITEMS | F_EXPIRES, 0},
    [EV_TOKEN_DELETE] = {"token_delete", F_ID, 0},
    [EV_USER_CREATE] = {"user_create", F_TENANT | F_ACCOUNT | F_USER | F_FLAG | F_ITEMS | F_ID
                                           | F_HASH | F_EXPIRES, 0},
    [EV_TOKEN_SET] = {"token_set", F_ID | F_DESC, 0},
    [EV_USER_DELETE] = {"user_delete", F_TENANT | F_ACCOUNT | F_USER, 0},
    [EV_ACCOUNT_DELETE] = {"account_delete", F_TENANT | F_ACCOUNT, 0},
    [EV_PERM_DELETE] = {"perm_delete", F_TENANT | F_KEY, 0},
    [EV_TENANT_DELETE] = {"tenant_delete", F_TENANT, 0},
    [EV_KEYRING_ADD] = {"keyring_add", F_KEY | F_FLAG | F_ID | F_HASH, 0},
    [EV_KEYRING_REMOVE] = {"keyring_remove", F_KEY, 0},
};

/* Wire names of the fields, in bit order. */
static const char *const field_names[F_COUNT] = {
    "tenant", "account", "user", "key", "name", "desc",
    "flag", "level", "items", "id", "hash", "expires", "limits", "by",
};

/* The keys of a "by" map. */
static const char *const by_names[] = {"kind", "tenant", "account", "user", "key",
                                       "session", "peer", "listener", "key_name"};
#define BY_KEYS (sizeof by_names / sizeof by_names[0])

/* The keys of a "limits" map, in tk_limits order. */
static const char *const limit_names[5] = {"tokens", "roles", "keys", "rate", "burst"};

static uint32_t *limit_slot(tk_limits *l, int i)
{
    uint32_t *slots[5] = {&l->tokens, &l->roles, &l->keys, &l->rate, &l->burst};
    return slots[i];
}

/* The fields e carries: its type's, less the optional ones it lacks. */
static unsigned fields_of(const ev *e)
{
    unsigned f = types[e->type].fields | F_BY;
    if (!e->has_limits)
        f &= ~(unsigned)F_LIMITS;
    if (!e->by.kind)
        f &= ~(unsigned)F_BY;
    return f;
}

/* Every type may carry "by" (older records do not). */
static unsigned allowed_of(ev_type t)
{
    return types[t].fields | F_BY;
}

static unsigned optional_of(ev_type t)
{
    return types[t].optional | F_BY;
}

static void put_by(const ev_by *b, mpw *w)
{
    bool user = b->kind == TK_ACTOR_USER;
    bool named = !user && b->key_name.n > 0;
    mpw_map(w, 3 + (user ? 4 : 0) + (b->has_key ? 1 : 0) + (named ? 1 : 0));
    mpw_cstr(w, "kind");
    mpw_cstr(w, user ? "user" : "operator");
    if (user) {
        mpw_cstr(w, "tenant");
        mpw_str(w, b->tenant.p, b->tenant.n);
        mpw_cstr(w, "account");
        mpw_str(w, b->account.p, b->account.n);
        mpw_cstr(w, "user");
        mpw_str(w, b->user.p, b->user.n);
        mpw_cstr(w, "session");
        mpw_bool(w, b->session);
    }
    if (b->has_key) {
        mpw_cstr(w, "key");
        mpw_bin(w, b->key.b, TK_ID_LEN);
    }
    mpw_cstr(w, "peer");
    mpw_str(w, b->peer.p, b->peer.n);
    mpw_cstr(w, "listener");
    mpw_str(w, b->listener.p, b->listener.n);
    if (named) {
        mpw_cstr(w, "key_name");
        mpw_str(w, b->key_name.p, b->key_name.n);
    }
}

void ev_init(ev *e, ev_type type, int64_t ts)
{
    memset(e, 0, sizeof *e);
    e->type = type;
    e->ts = ts;
}

const char *ev_type_name(ev_type t)
{
    if (t < 1 || t > EV_TYPE_MAX)
        return "unknown";
    return types[t].name;
}

static void put_field(const ev *e, int bit, mpw *w)
{
    mpw_cstr(w, field_names[bit]);
    switch (1 << bit) {
    case F_TENANT: mpw_str(w, e->tenant.p, e->tenant.n); break;
    case F_ACCOUNT: mpw_str(w, e->account.p, e->account.n); break;
    case F_USER: mpw_str(w, e->user.p, e->user.n); break;
    case F_KEY: mpw_str(w, e->key.p, e->key.n); break;
    case F_NAME: mpw_str(w, e->name.p, e->name.n); break;
    case F_DESC: mpw_str(w, e->desc.p, e->desc.n); break;
    case F_FLAG: mpw_bool(w, e->flag); break;
    case F_LEVEL: mpw_uint(w, e->level); break;
    case F_ITEMS:
        mpw_array(w, e->nitems);
        for (uint32_t i = 0; i < e->nitems; i++)
            mpw_str(w, e->items[i].p, e->items[i].n);
        break;
    case F_ID: mpw_bin(w, e->id.b, TK_ID_LEN); break;
    case F_HASH: mpw_bin(w, e->hash, TK_HASH_LEN); break;
    case F_EXPIRES: mpw_int(w, e->expires); break;
    case F_LIMITS: {
        tk_limits l = e->limits;
        mpw_map(w, 5);
        for (int i = 0; i < 5; i++) {
            mpw_cstr(w, limit_names[i]);
            mpw_uint(w, *limit_slot(&l, i));
        }
        break;
    }
    case F_BY: put_by(&e->by, w); break;
    }
}

void ev_encode(const ev *e, mpw *w)
{
    unsigned f = fields_of(e);
    mpw_map(w, 2 + (uint32_t)__builtin_popcount(f));
    mpw_cstr(w, "t");
    mpw_uint(w, (uint64_t)e->type);
    mpw_cstr(w, "ts");
    mpw_int(w, e->ts);
    for (int bit = 0; bit < F_COUNT; bit++)
        if (f & (1u << bit))
            put_field(e, bit, w);
}

static int read_slug(mpr *r, tk_str *out)
{
    if (mpr_str(r, &out->p, &out->n) || !model_slug_ok(out->p, out->n))
        return TK_ECORRUPT;
    return 0;
}

static int read_key(mpr *r, tk_str *out)
{
    if (mpr_str(r, &out->p, &out->n) || !model_key_ok(out->p, out->n))
        return TK_ECORRUPT;
    return 0;
}

static int read_text(mpr *r, tk_str *out, size_t max)
{
    if (mpr_str(r, &out->p, &out->n) || !model_text_ok(out->p, out->n, max))
        return TK_ECORRUPT;
    return 0;
}

static int read_fixed_bin(mpr *r, uint8_t *out, size_t want)
{
    const uint8_t *p;
    size_t n;
    if (mpr_bin(r, &p, &n) || n != want)
        return TK_ECORRUPT;
    memcpy(out, p, n);
    return 0;
}

/* A "by" map: kind, peer and listener always; a user's tenant, account,
 * user and session; key when a personal key acted. */
static int read_by(mpr *r, ev_by *b)
{
    uint32_t n;
    unsigned got = 0;
    if (mpr_map(r, &n) || n > BY_KEYS)
        return TK_ECORRUPT;
    for (uint32_t i = 0; i < n; i++) {
        const char *k, *v;
        size_t kn, vn;
        int which = -1;
        if (mpr_str(r, &k, &kn))
            return TK_ECORRUPT;
        for (size_t j = 0; j < BY_KEYS; j++)
            if (strlen(by_names[j]) == kn && memcmp(by_names[j], k, kn) == 0)
                which = (int)j;
        if (which < 0 || (got & (1u << which)))
            return TK_ECORRUPT;
        got |= 1u << which;
        int rc = 0;
        switch (which) {
        case 0:
            if (mpr_str(r, &v, &vn))
                return TK_ECORRUPT;
            if (vn == 4 && memcmp(v, "user", 4) == 0)
                b->kind = TK_ACTOR_USER;
            else if (vn == 8 && memcmp(v, "operator", 8) == 0)
                b->kind = TK_ACTOR_OPERATOR;
            else
                return TK_ECORRUPT;
            break;
        case 1: rc = read_slug(r, &b->tenant); break;
        case 2: rc = read_slug(r, &b->account); break;
        case 3: rc = read_slug(r, &b->user); break;
        case 4:
            rc = read_fixed_bin(r, b->key.b, TK_ID_LEN);
            b->has_key = true;
            break;
        case 5: rc = mpr_bool(r, &b->session) ? TK_ECORRUPT : 0; break;
        case 6: rc = read_text(r, &b->peer, TK_PEER_MAX); break;
        case 7: rc = read_text(r, &b->listener, 16); break;
        case 8: rc = read_slug(r, &b->key_name); break;
        }
        if (rc)
            return TK_ECORRUPT;
    }
    unsigned always = 1u << 0 | 1u << 6 | 1u << 7;
    unsigned user = 1u << 1 | 1u << 2 | 1u << 3 | 1u << 5;
    if ((got & always) != always)
        return TK_ECORRUPT;
    if (b->kind == TK_ACTOR_USER ? (got & user) != user || (got & 1u << 8)
                                 : (got & (user | 1u << 4)) != 0)
        return TK_ECORRUPT;
    return 0;
}

static int read_field(mpr *r, int bit, ev *e)
{
    uint64_t u;
    switch (1 << bit) {
    case F_TENANT: return read_slug(r, &e->tenant);
    case F_ACCOUNT: return read_slug(r, &e->account);
    case F_USER: return read_slug(r, &e->user);
    case F_KEY: return read_key(r, &e->key);
    case F_NAME: return read_text(r, &e->name, TK_NAME_MAX);
    case F_DESC: return read_text(r, &e->desc, TK_DESC_MAX);
    case F_FLAG: return mpr_bool(r, &e->flag) ? TK_ECORRUPT : 0;
    case F_LEVEL:
        if (mpr_uint(r, &u) || u > TK_MAX_LEVEL)
            return TK_ECORRUPT;
        e->level = (uint32_t)u;
        return 0;
    case F_ITEMS: {
        uint32_t n;
        if (mpr_array(r, &n) || n > TK_MAX_ROLE_PERMS)
            return TK_ECORRUPT;
        e->nitems = n;
        for (uint32_t i = 0; i < n; i++)
            if (read_key(r, &e->items[i]))
                return TK_ECORRUPT;
        return 0;
    }
    case F_ID: return read_fixed_bin(r, e->id.b, TK_ID_LEN);
    case F_HASH: return read_fixed_bin(r, e->hash, TK_HASH_LEN);
    case F_EXPIRES:
        return mpr_int(r, &e->expires) || e->expires < 0 || e->expires > TK_MAX_EXPIRES
                   ? TK_ECORRUPT : 0;
    case F_BY: return read_by(r, &e->by);
    case F_LIMITS: {
        uint32_t n;
        unsigned got = 0;
        if (mpr_map(r, &n) || n != 5)
            return TK_ECORRUPT;
        for (uint32_t i = 0; i < n; i++) {
            const char *k;
            size_t kn;
            int which = -1;
            if (mpr_str(r, &k, &kn) || mpr_uint(r, &u) || u > UINT32_MAX)
                return TK_ECORRUPT;
            for (int j = 0; j < 5; j++)
                if (strlen(limit_names[j]) == kn && memcmp(limit_names[j], k, kn) == 0)
                    which = j;
            if (which < 0 || (got & (1u << which)))
                return TK_ECORRUPT;
            got |= 1u << which;
            *limit_slot(&e->limits, which) = (uint32_t)u;
        }
        e->has_limits = true;
        return 0;
    }
    }
    return TK_ECORRUPT;
}

static int field_bit(const char *k, size_t n)
{
    for (int bit = 0; bit < F_COUNT; bit++)
        if (strlen(field_names[bit]) == n && memcmp(field_names[bit], k, n) == 0)
            return bit;
    return -1;
}

int ev_decode(const void *data, size_t len, ev *e)
{
    mpr r;
    uint32_t n;
    uint64_t type = 0;
    bool have_type = false, have_ts = false;
    unsigned seen = 0;

    memset(e, 0, sizeof *e);
    mpr_init(&r, data, len);
    if (mpr_map(&r, &n))
        return TK_ECORRUPT;
    /* "t" must come first so the fields can be checked against the type. */
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        size_t kn;
        if (mpr_str(&r, &k, &kn))
            return TK_ECORRUPT;
        if (kn == 1 && k[0] == 't' && !have_type) {
            if (i != 0 || mpr_uint(&r, &type) || type < 1 || type > EV_TYPE_MAX)
                return TK_ECORRUPT;
            e->type = (ev_type)type;
            have_type = true;
            continue;
        }
        if (!have_type)
            return TK_ECORRUPT;
        if (kn == 2 && k[0] == 't' && k[1] == 's' && !have_ts) {
            if (mpr_int(&r, &e->ts))
                return TK_ECORRUPT;
            have_ts = true;
            continue;
        }
        int bit = field_bit(k, kn);
        if (bit < 0 || !(allowed_of(e->type) & (1u << bit)) || (seen & (1u << bit)))
            return TK_ECORRUPT;
        if (read_field(&r, bit, e))
            return TK_ECORRUPT;
        seen |= 1u << bit;
    }
    if (!have_type || !have_ts || (seen | optional_of(e->type)) != allowed_of(e->type)
        || !mpr_done(&r))
        return TK_ECORRUPT;
    return 0;
}
