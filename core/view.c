/*
 * view.c - the in-memory verification state; see view.h.
 *
 * Tables are plain arrays indexed by the dense internal ids (id 0 unused),
 * grown by doubling on the write side only. Role sets are interned in a
 * small open-addressing table keyed by their content and reference-counted
 * by the tokens that use them.
 */
#include "core/view.h"

#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/idx.h"
#include "core/rules.h"
#include "core/secret.h"
#include "core/xmalloc.h"

#include <sodium.h>


typedef struct vtenant {
    char *slug;      /* NULL: no such tenant */
    bool api_tokens;
    uint32_t nperms; /* perms[0..nperms) by local permission number */
    uint32_t cap;
    char **perms;
} vtenant;

typedef struct vrole {
    char *key;       /* NULL: no such role (or deleted) */
    uint32_t tenant;
    uint32_t level;
    uint32_t nperms;
    uint16_t *perms;
} vrole;

typedef struct vaccount {
    char *slug;
    uint32_t tenant;
} vaccount;

typedef struct vroleset {
    uint32_t refs;   /* 0: dead (n == UINT32_MAX once on the free list) */
    uint32_t n;
    uint32_t roles[TK_MAX_ROLES]; /* sorted */
} vroleset;

struct view {
    idx *creds;
    vtenant *tenants;
    uint32_t ntenants;
    vrole *roles;
    uint32_t nroles;
    vaccount *accounts;
    uint32_t naccounts;
    vroleset *sets;      /* sets[0] unused */
    uint32_t nsets;      /* ids handed out so far (+1) */
    uint32_t sets_cap;   /* allocated entries of sets[] */
    uint32_t free_set;   /* a free set id to reuse, or 0 */
    uint32_t set_dead;   /* sets with no reference still in the table */
    uint32_t *set_table; /* open addressing: set id, 0 = empty */
    uint32_t set_cap;    /* power of two */
    uint32_t set_live;
};

/* Grows an id-indexed array so that index id exists; new slots zeroed. */
static void *grow_to(void *arr, uint32_t *count, uint32_t id, size_t elem)
{
    if (id < *count)
        return arr;
    uint32_t n = *count ? *count : 16;
    while (n <= id)
        n *= 2;
    arr = xrealloc(arr, (size_t)n * elem);
    memset((char *)arr + (size_t)*count * elem, 0, (size_t)(n - *count) * elem);
    *count = n;
    return arr;
}

int view_new(view **out)
{
    view *v = xcalloc(1, sizeof *v);
    idx_new(&v->creds);
    v->set_cap = 64;
    v->set_table = xcalloc(v->set_cap, sizeof *v->set_table);
    v->nsets = 1;
    v->sets = grow_to(NULL, &v->sets_cap, 16, sizeof *v->sets);
    *out = v;
    return 0;
}

void view_free(view *v)
{
    if (!v)
        return;
    idx_free(v->creds);
    for (uint32_t i = 0; i < v->ntenants; i++) {
        free(v->tenants[i].slug);
        for (uint32_t j = 0; j < v->tenants[i].nperms; j++)
            free(v->tenants[i].perms[j]);
        free(v->tenants[i].perms);
    }
    for (uint32_t i = 0; i < v->nroles; i++) {
        free(v->roles[i].key);
        free(v->roles[i].perms);
    }
    for (uint32_t i = 0; i < v->naccounts; i++)
        free(v->accounts[i].slug);
    free(v->tenants);
    free(v->roles);
    free(v->accounts);
    free(v->sets);
    free(v->set_table);
    free(v);
}

void view_tenant_put(view *v, uint32_t id, const char *slug, size_t n, bool api_tokens)
{
    v->tenants = grow_to(v->tenants, &v->ntenants, id, sizeof *v->tenants);
    vtenant *t = &v->tenants[id];
    free(t->slug);
    t->slug = xstrndup(slug, n);
    t->api_tokens = api_tokens;
}

void view_perm_put(view *v, uint32_t tenant, uint32_t perm, const char *key, size_t n)
{
    if (tenant >= v->ntenants || perm >= TK_MAX_TENANT_PERMS)
        return;
    vtenant *t = &v->tenants[tenant];
    if (perm >= t->cap) {
        uint32_t cap = t->cap;
        t->perms = grow_to(t->perms, &cap, perm, sizeof *t->perms);
        t->cap = cap;
    }
    free(t->perms[perm]);
    t->perms[perm] = xstrndup(key, n);
    if (perm >= t->nperms)
        t->nperms = perm + 1;
}

void view_role_put(view *v, uint32_t id, uint32_t tenant, const char *key, size_t n,
                   uint32_t level, const uint16_t *perms, uint32_t nperms)
{
    v->roles = grow_to(v->roles, &v->nroles, id, sizeof *v->roles);
    vrole *r = &v->roles[id];
    free(r->key);
    free(r->perms);
    r->key = xstrndup(key, n);
    r->tenant = tenant;
    r->level = level;
    r->nperms = nperms;
    r->perms = xmalloc(sizeof *r->perms * (nperms ? nperms : 1));
    if (nperms) /* perms may be NULL for none */
        memcpy(r->perms, perms, sizeof *r->perms * nperms);
}

void view_role_del(view *v, uint32_t id)
{
    if (id >= v->nroles)
        return;
    vrole *r = &v->roles[id];
    free(r->key);
    free(r->perms);
    memset(r, 0, sizeof *r);
}

void view_account_put(view *v, uint32_t id, uint32_t tenant, const char *slug, size_t n)
{
    v->accounts = grow_to(v->accounts, &v->naccounts, id, sizeof *v->accounts);
    vaccount *a = &v->accounts[id];
    free(a->slug);
    a->slug = xstrndup(slug, n);
    a->tenant = tenant;
}

void view_tenant_del(view *v, uint32_t id)
{
    if (id >= v->ntenants)
        return;
    vtenant *t = &v->tenants[id];
    free(t->slug);
    for (uint32_t j = 0; j < t->nperms; j++)
        free(t->perms[j]);
    free(t->perms);
    memset(t, 0, sizeof *t);
}

void view_perm_del(view *v, uint32_t tenant, uint32_t perm)
{
    if (tenant >= v->ntenants || perm >= v->tenants[tenant].nperms)
        return;
    vtenant *t = &v->tenants[tenant];
    free(t->perms[perm]);
    t->perms[perm] = NULL; /* the number may be given again */
}

void view_account_del(view *v, uint32_t id)
{
    if (id >= v->naccounts)
        return;
    free(v->accounts[id].slug);
    memset(&v->accounts[id], 0, sizeof v->accounts[id]);
}

/* ---- role sets -------------------------------------------------------- */

static uint32_t set_hash(const uint32_t *roles, uint32_t n)
{
    uint32_t h = 2166136261u ^ n;
    for (uint32_t i = 0; i < n; i++)
        h = (h ^ roles[i]) * 16777619u;
    return h ^ (h >> 15);
}

static void set_table_insert(view *v, uint32_t sid)
{
    uint32_t mask = v->set_cap - 1;
    uint32_t i = set_hash(v->sets[sid].roles, v->sets[sid].n) & mask;
    while (v->set_table[i])
        i = (i + 1) & mask;
    v->set_table[i] = sid;
}

/* Rebuilds the table from the live sets; unreferenced sets go to the free
 * list (chained through n). Amortised: runs when the dead outnumber the
 * live, or when the table is half full. */
static void set_table_rebuild(view *v, uint32_t cap)
{
    free(v->set_table);
    v->set_cap = cap;
    v->set_table = xcalloc(cap, sizeof *v->set_table);
    for (uint32_t sid = 1; sid < v->nsets; sid++) {
        vroleset *s = &v->sets[sid];
        if (s->refs) {
            set_table_insert(v, sid);
        } else if (s->n != UINT32_MAX) { /* dead but not yet on the free list */
            s->n = UINT32_MAX;
            s->roles[0] = v->free_set;
            v->free_set = sid;
        }
    }
    v->set_dead = 0;
}

/* Returns the id of the set holding roles (sorted, deduplicated here),
 * taking a reference. */
static uint32_t set_ref(view *v, const uint32_t *in, uint32_t n)
{
    uint32_t roles[TK_MAX_ROLES], m = 0;
    for (uint32_t i = 0; i < n && i < TK_MAX_ROLES; i++) {
        uint32_t r = in[i], j = m;
        while (j > 0 && roles[j - 1] > r)
            j--;
        if (j > 0 && roles[j - 1] == r)
            continue;
        memmove(&roles[j + 1], &roles[j], (m - j) * sizeof *roles);
        roles[j] = r;
        m++;
    }
    uint32_t mask = v->set_cap - 1;
    for (uint32_t i = set_hash(roles, m) & mask; v->set_table[i]; i = (i + 1) & mask) {
        vroleset *s = &v->sets[v->set_table[i]];
        if (s->n == m && memcmp(s->roles, roles, m * sizeof *roles) == 0) {
            if (s->refs++ == 0) { /* revive a dead set still in the table */
                v->set_dead--;
                v->set_live++;
            }
            return v->set_table[i];
        }
    }
    uint32_t sid = v->free_set;
    if (sid) {
        v->free_set = v->sets[sid].roles[0];
    } else {
        sid = v->nsets++;
        v->sets = grow_to(v->sets, &v->sets_cap, sid, sizeof *v->sets);
    }
    vroleset *s = &v->sets[sid];
    s->refs = 1;
    s->n = m;
    memcpy(s->roles, roles, m * sizeof *roles);
    v->set_live++;
    if ((v->set_live + v->set_dead) * 2 > v->set_cap)
        set_table_rebuild(v, v->set_live * 2 > v->set_cap ? v->set_cap * 2 : v->set_cap);
    else
        set_table_insert(v, sid);
    return sid;
}

static void set_unref(view *v, uint32_t sid)
{
    if (--v->sets[sid].refs)
        return;
    v->set_live--;
    v->set_dead++;
    if (v->set_dead > 64 && v->set_dead > v->set_live)
        set_table_rebuild(v, v->set_cap);
}

/* ---- credentials ------------------------------------------------------ */

void view_cred_put(view *v, tk_kind kind, const tk_id *id, const uint8_t hash[TK_HASH_LEN],
                   uint32_t tenant, uint32_t account, uint32_t user,
                   const uint32_t *roles, uint32_t nroles, int64_t expires_at)
{
    idx_entry e;
    memset(&e, 0, sizeof e);
    memcpy(e.id, id->b, TK_ID_LEN);
    memcpy(e.hash, hash, IDX_HASH_LEN);
    /* The engine refuses expiries past 2106 (model.h), so this fits. */
    e.expires_at = expires_at < 0 || expires_at > (int64_t)UINT32_MAX ? UINT32_MAX
                                                                      : (uint32_t)expires_at;
    e.tenant = tenant;
    e.account = account;
    e.kind = (uint8_t)kind;
    e.ref = kind == TK_KIND_TOKEN ? set_ref(v, roles, nroles) : user;
    idx_entry old;
    if (idx_swap(v->creds, &e, &old) && old.kind == TK_KIND_TOKEN)
        set_unref(v, old.ref);
    sodium_memzero(&old, sizeof old); /* it held the old secret's hash */
}

void view_cred_prefetch(const view *v, const tk_id *id)
{
    idx_prefetch(v->creds, id->b);
}

int view_cred_del(view *v, const tk_id *id)
{
    const idx_entry *old = idx_get(v->creds, id->b);
    if (!old)
        return TK_ENOTFOUND;
    if (old->kind == TK_KIND_TOKEN)
        set_unref(v, old->ref);
    return idx_del(v->creds, id->b);
}

/* The part of a verification that needs no lookup (the secret's format,
 * its agreement with a given client ID, its kind), with the lookup started
 * (idx_probe_start: the slot's cache miss) as soon as the ID is read, so
 * that the rest of the format check runs while that miss is in flight
 * instead of before it. p->verdict is TK_V_VALID when the lookup decides.
 * hashed: the rest is checked and p->hash filled in one pass (a batch);
 * otherwise the secret is left to probe_lookup to hash. A lookup started
 * and not used costs nothing. */
static inline void probe_one(const view *v, const view_vreq *r, tk_kind want, bool hashed,
                             view_probe *p)
{
    tk_kind kind;
    if (secret_parse_id(r->secret, r->len, &kind, &p->id)) {
        memset(&p->id, 0, sizeof p->id);
        p->verdict = TK_V_MALFORMED;
        return;
    }
    idx_probe_start(v->creds, p->id.b, &p->ip);
    if (hashed ? secret_parse_rest(r->secret, &p->id, p->hash) : secret_parse_check(r->secret)) {
        memset(&p->id, 0, sizeof p->id);
        p->verdict = TK_V_MALFORMED;
    } else if (r->client_id && memcmp(r->client_id->b, p->id.b, TK_ID_LEN) != 0) {
        p->verdict = TK_V_MISMATCH;
    } else if (kind != want) {
        p->verdict = TK_V_WRONG_KIND;
    } else {
        p->verdict = TK_V_VALID; /* so far: the lookup decides */
    }
}

/* The lookup and the secret's check: the entry, or NULL and *verdict.
 * secret is NULL when p->hash is set (a batch); one verification at a time
 * passes the secret p came from, hashed here and only when its ID is
 * indexed: an unknown ID costs no SHA-256, which tells nothing the answer
 * (unknown, not mismatch) does not. The hash is computed while the entry's
 * cache miss is in flight when the slot already points at a likely entry
 * (idx_probe_next), after the lookup otherwise. */
static inline const idx_entry *probe_lookup(const view *v, const view_probe *p,
                                            const char *secret, tk_verdict *verdict)
{
    uint8_t late[TK_HASH_LEN];
    const uint8_t *hash = p->hash;

    *verdict = p->verdict;
    if (p->verdict != TK_V_VALID)
        return NULL;
    if (secret && idx_probe_next(v->creds, &p->ip)) {
        secret_parse_hash(secret, &p->id, late);
        hash = late;
        secret = NULL;
    }
    const idx_entry *e = idx_probe_get(v->creds, &p->ip);
    if (!e) {
        *verdict = TK_V_UNKNOWN;
        return NULL;
    }
    if (secret) {
        secret_parse_hash(secret, &p->id, late);
        hash = late;
    }
    if (!secret_equal(hash, e->hash, IDX_HASH_LEN)) { /* constant time */
        *verdict = TK_V_MISMATCH;
        return NULL;
    }
    return e;
}

void view_verify_start(const view *v, const view_vreq *reqs, size_t n, view_probe *probes)
{
    /* Hashed here, while the lookups' misses are in flight: the strings
     * need not outlive this call. */
    for (size_t i = 0; i < n; i++)
        probe_one(v, &reqs[i], TK_KIND_TOKEN, true, &probes[i]);
    for (size_t i = 0; i < n; i++)
        if (probes[i].verdict == TK_V_VALID)
            idx_probe_next(v->creds, &probes[i].ip);
}

void view_verify_prefetch(const view *v, const view_vreq *reqs, size_t n)
{
    tk_id ids[VIEW_BATCH];
    idx_probe ps[VIEW_BATCH];
    size_t k = 0;
    tk_kind kind;
    /* Both steps for all, as view_verify_start: every slot's miss is in
     * flight before the first is waited for, then every entry's. */
    for (size_t i = 0; i < n && k < VIEW_BATCH; i++)
        if (secret_parse_id(reqs[i].secret, reqs[i].len, &kind, &ids[k]) == 0) {
            idx_probe_start(v->creds, ids[k].b, &ps[k]);
            k++;
        }
    for (size_t i = 0; i < k; i++)
        (void)idx_probe_next(v->creds, &ps[i]);
}

/* view_verify_finish, for a probe hashed (secret NULL) or not. */
static inline tk_verdict verify_answer(const view *v, const view_probe *p, const char *secret,
                                       int64_t now, tk_verify *out)
{
    out->nroles = 0;
    out->nperms = 0;
    out->tenant = out->account = NULL;
    out->expires_at = 0;
    out->client_id = p->id;
    const idx_entry *e = probe_lookup(v, p, secret, &out->verdict);
    if (!e)
        return out->verdict;
    const vtenant *t = e->tenant < v->ntenants ? &v->tenants[e->tenant] : NULL;
    if (!t || !t->slug || e->account >= v->naccounts || !v->accounts[e->account].slug) {
        out->verdict = TK_V_UNKNOWN; /* cannot happen with a consistent view */
        return out->verdict;
    }
    out->verdict = rules_verify_state(TK_KIND_TOKEN, e->kind, t->api_tokens, e->expires_at, now);
    /* Only a token's ref is a role set (a personal key's is its user):
     * checked after the kind, so a re-labelled key answers wrong_kind. */
    if (out->verdict == TK_V_VALID && e->ref >= v->nsets)
        out->verdict = TK_V_UNKNOWN; /* cannot happen with a consistent view */
    if (out->verdict != TK_V_VALID)
        return out->verdict;
    out->tenant = t->slug;
    out->account = v->accounts[e->account].slug;
    out->expires_at = e->expires_at;

    /* Rule 6: permissions are the union over the roles as they are now;
     * a deleted role (key NULL) drops out. */
    uint64_t seen[TK_MAX_TENANT_PERMS / 64] = {0};
    const vroleset *s = &v->sets[e->ref];
    for (uint32_t i = 0; i < s->n; i++) {
        uint32_t rid = s->roles[i];
        if (rid >= v->nroles || !v->roles[rid].key)
            continue;
        const vrole *r = &v->roles[rid];
        out->roles[out->nroles++] = r->key;
        for (uint32_t j = 0; j < r->nperms; j++) {
            uint16_t q = r->perms[j];
            if (q >= t->nperms || !t->perms[q] || (seen[q / 64] >> (q % 64)) & 1)
                continue;
            seen[q / 64] |= 1ull << (q % 64);
            out->perms[out->nperms++] = t->perms[q];
        }
    }
    return out->verdict;
}

tk_verdict view_verify_finish(const view *v, const view_probe *p, int64_t now, tk_verify *out)
{
    return verify_answer(v, p, NULL, now, out);
}

tk_verdict view_verify(const view *v, const tk_id *client_id, const char *secret,
                       size_t len, int64_t now, tk_verify *out)
{
    view_vreq r = {client_id, secret, len};
    view_probe p;
    probe_one(v, &r, TK_KIND_TOKEN, false, &p);
    return verify_answer(v, &p, secret, now, out);
}

tk_verdict view_auth_personal(const view *v, const char *secret, size_t len, int64_t now,
                              tk_actor *actor)
{
    tk_verdict verdict;
    view_vreq r = {NULL, secret, len};
    view_probe p;
    probe_one(v, &r, TK_KIND_PERSONAL, false, &p);
    const idx_entry *e = probe_lookup(v, &p, secret, &verdict);
    if (!e)
        return verdict;
    verdict = rules_verify_state(TK_KIND_PERSONAL, e->kind, true, e->expires_at, now);
    if (verdict != TK_V_VALID)
        return verdict;
    memset(actor, 0, sizeof *actor);
    actor->kind = TK_ACTOR_USER;
    actor->tenant = e->tenant;
    actor->account = e->account;
    actor->user = e->ref;
    actor->key = p.id;
    return TK_V_VALID;
}

void view_step(view *v)
{
    idx_step(v->creds, 64);
}

void view_reserve(view *v, size_t n)
{
    idx_reserve(v->creds, n);
}

void view_settle(view *v)
{
    while (idx_growing(v->creds))
        idx_step(v->creds, 1u << 16);
}

size_t view_cred_count(const view *v)
{
    return idx_count(v->creds);
}

size_t view_index_bytes(const view *v)
{
    return idx_bytes(v->creds);
}

/* ---- images (view_save_creds, view_load_creds) ------------------------
 *
 * The stream: nsets (u32), sets[1..nsets) as they are, then the index
 * (idx_save). The sets' hash table is not written: rebuilt on load from
 * the sets, a few thousand at most. A token entry's ref indexes sets[] on
 * the verify path (verify_answer bounds it) and on every delete or replace
 * (set_unref, which does not), so each token entry's ref is checked as the
 * index reads it (idx_check_fn, while the entry is in cache), and the
 * reference counts are counted again from the entries and must be the
 * ones saved: a set's count can then never fall below zero. That is one
 * increment per token, cheaper than sizing sets[] for any 32-bit ref. The
 * free list of set ids is not trusted from the stream either: every set
 * without a reference is put on a fresh one. */

#define VIEW_MAX_SETS (1u << 30)

typedef struct set_check {
    const vroleset *sets;
    uint32_t nsets;
    uint32_t *counts;
} set_check;

static int check_cred(void *arg, const idx_entry *e)
{
    set_check *c = arg;
    if (e->kind == TK_KIND_PERSONAL)
        return 0;
    if (e->kind != TK_KIND_TOKEN || e->ref == 0 || e->ref >= c->nsets ||
        c->sets[e->ref].n > TK_MAX_ROLES)
        return -1;
    c->counts[e->ref]++;
    return 0;
}

int view_save_creds(view *v, idx_put_fn put, void *arg)
{
    uint32_t nsets = v->nsets;
    int rc = put(arg, &nsets, sizeof nsets);
    if (!rc && nsets > 1)
        rc = put(arg, &v->sets[1], (size_t)(nsets - 1) * sizeof *v->sets);
    return rc ? rc : idx_save(v->creds, put, arg);
}

int view_load_creds(view *v, idx_get_fn get, void *arg, size_t max_bytes)
{
    uint32_t nsets, cap = 0;
    vroleset *sets = NULL;
    set_check chk = {0};
    idx *ix = NULL;
    int rc;

    if (idx_count(v->creds) != 0 || v->nsets != 1)
        return TK_EINVAL;
    if ((rc = get(arg, &nsets, sizeof nsets)))
        return rc;
    size_t set_bytes = (size_t)(nsets ? nsets - 1 : 0) * sizeof *sets;
    if (nsets == 0 || nsets > VIEW_MAX_SETS || max_bytes < sizeof nsets ||
        set_bytes > max_bytes - sizeof nsets)
        return TK_ECORRUPT;
    sets = grow_to(NULL, &cap, nsets - 1 < 16 ? 16 : nsets - 1, sizeof *sets);
    if (nsets > 1 && (rc = get(arg, &sets[1], set_bytes)))
        goto done;
    rc = TK_ECORRUPT;
    for (uint32_t sid = 1; sid < nsets; sid++)
        if (sets[sid].n != UINT32_MAX && sets[sid].n > TK_MAX_ROLES)
            goto done;
    chk.sets = sets;
    chk.nsets = nsets;
    chk.counts = xcalloc(nsets, sizeof *chk.counts);
    rc = idx_load(get, arg, max_bytes - sizeof nsets - set_bytes, check_cred, &chk, &ix);
    if (rc)
        goto done;
    rc = TK_ECORRUPT;
    uint32_t live = 0;
    for (uint32_t sid = 1; sid < nsets; sid++) {
        if (chk.counts[sid] != sets[sid].refs)
            goto done;
        if (sets[sid].refs) {
            live++;
        } else { /* dead: set_table_rebuild puts it on the new free list */
            sets[sid].n = 0;
        }
    }
    free(v->sets);
    v->sets = sets;
    v->sets_cap = cap;
    v->nsets = nsets;
    v->free_set = 0;
    v->set_live = live;
    uint32_t tcap = 64;
    while (live * 2 > tcap)
        tcap *= 2;
    set_table_rebuild(v, tcap);
    idx_free(v->creds);
    v->creds = ix;
    sets = NULL;
    ix = NULL;
    rc = 0;
done:
    free(chk.counts);
    free(sets);
    idx_free(ix);
    return rc;
}

void view_drop_creds(view *v)
{
    idx_free(v->creds);
    idx_new(&v->creds);
    memset(v->sets, 0, (size_t)v->sets_cap * sizeof *v->sets);
    v->nsets = 1;
    v->free_set = 0;
    v->set_dead = 0;
    v->set_live = 0;
    memset(v->set_table, 0, (size_t)v->set_cap * sizeof *v->set_table);
}
