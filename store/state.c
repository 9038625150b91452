/*
 * state.c - the durable state in LMDB; see state.h.
 *
 * Keys are big-endian ids (so cursors walk in id order) or a big-endian
 * parent id followed by a name. Values are small msgpack arrays read with
 * the bounds-checked cursor of core/mp.h and copied into fixed records.
 */
#include "store/state.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"
#include "core/mp.h"
#include "core/xmalloc.h"

enum { DB_META, DB_TENANT, DB_TENANT_NAME, DB_PERM, DB_PERM_NAME, DB_ROLE, DB_ROLE_NAME,
       DB_ACCOUNT, DB_ACCOUNT_NAME, DB_USER, DB_USER_NAME, DB_CRED, DB_ACCOUNT_TOKENS,
       DB_USER_KEYS, DB_KEYRING, DB_COUNT };

static const char *const db_names[DB_COUNT] = {
    "meta", "tenant", "tenant_name", "perm", "perm_name", "role", "role_name",
    "account", "account_name", "user", "user_name", "cred", "account_tokens", "user_keys",
    "keyring",
};

#define INITIAL_MAP (256ull << 20)
/* The layout of the records; a state written with another one is rebuilt
 * from the log by the engine. 2: credentials carry their event's seq.
 * 3: tokens carry their number in their account (the listing's order, and
 * its cursors), accounts the count of tokens made in them. 4: the counts
 * the quotas need (live tokens per account, keys per user, roles per
 * tenant) and each tenant's limits. 5: deletions (a user's keys indexed,
 * permission numbers given again, a credential keeps its creator's slug).
 * 6: a tenant no longer keeps the top of its permission numbers.
 * 7: the keyring (named operator and gateway keys). */
#define STATE_FORMAT 7u

struct state {
    MDB_env *env;
    MDB_dbi dbi[DB_COUNT];
    bool format_ok;
};

/* Id counters kept in meta under "ids", in this order. */
enum { ID_TENANT, ID_ROLE, ID_ACCOUNT, ID_USER, ID_COUNT };

struct state_txn {
    state *s;
    MDB_txn *txn;
    bool write;
    bool dirty;            /* seq or ids changed: write them at commit */
    uint64_t seq;
    bool has_chain;        /* chain: the log's chain hash at seq (states before it lack it) */
    uint8_t chain[TK_HASH_LEN];
    uint32_t ids[ID_COUNT];
    state_txn *parent;     /* state_begin_in's: its commit goes into parent */
};

static int map_err(int rc)
{
    switch (rc) {
    case 0: return 0;
    case MDB_NOTFOUND: return TK_ENOTFOUND;
    case MDB_MAP_FULL: return TK_ELIMIT;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH: return TK_ECORRUPT;
    case ENOMEM: return TK_ENOMEM;
    default: return TK_EIO;
    }
}

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t rd_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t rd_be64(const uint8_t *p)
{
    return (uint64_t)rd_be32(p) << 32 | rd_be32(p + 4);
}

static void be64(uint8_t *p, uint64_t v)
{
    be32(p, (uint32_t)(v >> 32));
    be32(p + 4, (uint32_t)v);
}

/* ---- raw access ------------------------------------------------------- */

static int db_get(state_txn *t, int db, const void *k, size_t kn, MDB_val *v)
{
    MDB_val key = {kn, (void *)k};
    return map_err(mdb_get(t->txn, t->s->dbi[db], &key, v));
}

static int db_put(state_txn *t, int db, const void *k, size_t kn, const void *v, size_t vn)
{
    MDB_val key = {kn, (void *)k}, val = {vn, (void *)v};
    return map_err(mdb_put(t->txn, t->s->dbi[db], &key, &val, 0));
}

static int db_del(state_txn *t, int db, const void *k, size_t kn)
{
    MDB_val key = {kn, (void *)k};
    return map_err(mdb_del(t->txn, t->s->dbi[db], &key, NULL));
}

/* A name-index key: parent id, then the name. */
typedef struct nkey {
    uint8_t b[4 + TK_KEY_MAX];
    size_t n;
} nkey;

static int name_key(nkey *k, uint32_t parent, const char *name, size_t n)
{
    if (n > TK_KEY_MAX)
        return TK_EINVAL;
    be32(k->b, parent);
    memcpy(k->b + 4, name, n);
    k->n = 4 + n;
    return 0;
}

static int name_get(state_txn *t, int db, uint32_t parent, const char *name, size_t n,
                    uint32_t *id)
{
    nkey k;
    MDB_val v;
    int rc = name_key(&k, parent, name, n);
    if (!rc)
        rc = db_get(t, db, k.b, k.n, &v);
    if (rc)
        return rc == TK_EINVAL ? TK_ENOTFOUND : rc;
    if (v.mv_size != 4)
        return TK_ECORRUPT;
    *id = rd_be32(v.mv_data);
    return 0;
}

static int name_put(state_txn *t, int db, uint32_t parent, const char *name, size_t n,
                    uint32_t id)
{
    nkey k;
    uint8_t v[4];
    int rc = name_key(&k, parent, name, n);
    if (rc)
        return TK_ECORRUPT;
    be32(v, id);
    return db_put(t, db, k.b, k.n, v, 4);
}

static int name_del(state_txn *t, int db, uint32_t parent, const char *name, size_t n)
{
    nkey k;
    int rc = name_key(&k, parent, name, n);
    return rc ? TK_ECORRUPT : db_del(t, db, k.b, k.n);
}

static int id_get(state_txn *t, int db, uint32_t id, MDB_val *v)
{
    uint8_t k[4];
    be32(k, id);
    return db_get(t, db, k, 4, v);
}

static int id_put(state_txn *t, int db, uint32_t id, const mpw *w)
{
    uint8_t k[4];
    be32(k, id);
    return db_put(t, db, k, 4, w->buf.data, w->buf.size);
}

/* The first record of db at or after key from[0..fromlen) whose key starts
 * with prefix[0..plen): 0 (k, v set), TK_ENOTFOUND, or an LMDB error. Used
 * to walk a parent's children in key order and, deleting as it goes, to
 * take them all. */
static int first_from(state_txn *t, int db, const void *prefix, size_t plen, const void *from,
                      size_t fromlen, MDB_val *k, MDB_val *v)
{
    MDB_cursor *c;
    int rc = map_err(mdb_cursor_open(t->txn, t->s->dbi[db], &c));
    if (rc)
        return rc;
    k->mv_size = fromlen;
    k->mv_data = (void *)from;
    int mrc = mdb_cursor_get(c, k, v, MDB_SET_RANGE);
    mdb_cursor_close(c);
    if (mrc == MDB_NOTFOUND)
        return TK_ENOTFOUND;
    if (mrc)
        return map_err(mrc);
    if (k->mv_size < plen || memcmp(k->mv_data, prefix, plen) != 0)
        return TK_ENOTFOUND;
    return 0;
}

/* ---- value decoding --------------------------------------------------- */

static int rd_u32(mpr *r, uint32_t *v)
{
    uint64_t u;
    if (mpr_uint(r, &u) || u > UINT32_MAX)
        return TK_ECORRUPT;
    *v = (uint32_t)u;
    return 0;
}

static int rd_cstr(mpr *r, char *out, size_t cap)
{
    const char *s;
    size_t n;
    if (mpr_str(r, &s, &n) || n >= cap)
        return TK_ECORRUPT;
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

static int rd_header(mpr *r, const MDB_val *v, uint32_t want)
{
    uint32_t n;
    mpr_init(r, v->mv_data, v->mv_size);
    return mpr_array(r, &n) || n != want ? TK_ECORRUPT : 0;
}

static int rd_ids(mpr *r, uint32_t *out, uint32_t *n, uint32_t max)
{
    if (mpr_array(r, n) || *n > max)
        return TK_ECORRUPT;
    for (uint32_t i = 0; i < *n; i++)
        if (rd_u32(r, &out[i]))
            return TK_ECORRUPT;
    return 0;
}

static int dec_tenant(const MDB_val *v, uint32_t id, st_tenant *o)
{
    mpr r;
    o->id = id;
    if (rd_header(&r, v, 9) || rd_cstr(&r, o->slug, sizeof o->slug)
        || mpr_bool(&r, &o->api_tokens) || rd_u32(&r, &o->nperms) || rd_u32(&r, &o->nroles)
        || rd_u32(&r, &o->lim.tokens) || rd_u32(&r, &o->lim.roles) || rd_u32(&r, &o->lim.keys)
        || rd_u32(&r, &o->lim.rate) || rd_u32(&r, &o->lim.burst))
        return TK_ECORRUPT;
    return 0;
}

static void enc_tenant(mpw *w, const st_tenant *o)
{
    mpw_array(w, 9);
    mpw_cstr(w, o->slug);
    mpw_bool(w, o->api_tokens);
    mpw_uint(w, o->nperms);
    mpw_uint(w, o->nroles);
    mpw_uint(w, o->lim.tokens);
    mpw_uint(w, o->lim.roles);
    mpw_uint(w, o->lim.keys);
    mpw_uint(w, o->lim.rate);
    mpw_uint(w, o->lim.burst);
}

static int dec_perm(const MDB_val *v, uint32_t tenant, uint32_t num, st_perm *o)
{
    mpr r;
    o->tenant = tenant;
    o->num = num;
    if (rd_header(&r, v, 2) || rd_cstr(&r, o->key, sizeof o->key)
        || rd_cstr(&r, o->desc, sizeof o->desc))
        return TK_ECORRUPT;
    return 0;
}

static int dec_role(const MDB_val *v, uint32_t id, st_role *o)
{
    mpr r;
    uint32_t nums[TK_MAX_ROLE_PERMS];
    o->id = id;
    if (rd_header(&r, v, 5) || rd_u32(&r, &o->tenant) || rd_cstr(&r, o->key, sizeof o->key)
        || rd_cstr(&r, o->name, sizeof o->name) || rd_u32(&r, &o->level)
        || rd_ids(&r, nums, &o->nperms, TK_MAX_ROLE_PERMS))
        return TK_ECORRUPT;
    for (uint32_t i = 0; i < o->nperms; i++) {
        if (nums[i] >= TK_MAX_TENANT_PERMS)
            return TK_ECORRUPT;
        o->perms[i] = (uint16_t)nums[i];
    }
    return 0;
}

static void enc_role(mpw *w, const st_role *o)
{
    mpw_array(w, 5);
    mpw_uint(w, o->tenant);
    mpw_cstr(w, o->key);
    mpw_cstr(w, o->name);
    mpw_uint(w, o->level);
    mpw_array(w, o->nperms);
    for (uint32_t i = 0; i < o->nperms; i++)
        mpw_uint(w, o->perms[i]);
}

static int dec_account(const MDB_val *v, uint32_t id, st_account *o)
{
    mpr r;
    o->id = id;
    if (rd_header(&r, v, 4) || rd_u32(&r, &o->tenant) || rd_cstr(&r, o->slug, sizeof o->slug)
        || mpr_uint(&r, &o->tokens) || rd_u32(&r, &o->live))
        return TK_ECORRUPT;
    return 0;
}

static void enc_account(mpw *w, const st_account *o)
{
    mpw_array(w, 4);
    mpw_uint(w, o->tenant);
    mpw_cstr(w, o->slug);
    mpw_uint(w, o->tokens);
    mpw_uint(w, o->live);
}

static int dec_user(const MDB_val *v, uint32_t id, st_user *o)
{
    mpr r;
    o->id = id;
    if (rd_header(&r, v, 7) || rd_u32(&r, &o->tenant) || rd_u32(&r, &o->account)
        || rd_cstr(&r, o->slug, sizeof o->slug) || mpr_bool(&r, &o->portal)
        || rd_ids(&r, o->roles, &o->nroles, TK_MAX_ROLES) || rd_u32(&r, &o->nkeys)
        || mpr_uint(&r, &o->keys_made))
        return TK_ECORRUPT;
    return 0;
}

static void enc_user(mpw *w, const st_user *o)
{
    mpw_array(w, 7);
    mpw_uint(w, o->tenant);
    mpw_uint(w, o->account);
    mpw_cstr(w, o->slug);
    mpw_bool(w, o->portal);
    mpw_array(w, o->nroles);
    for (uint32_t i = 0; i < o->nroles; i++)
        mpw_uint(w, o->roles[i]);
    mpw_uint(w, o->nkeys);
    mpw_uint(w, o->keys_made);
}

static int dec_cred(const MDB_val *k, const MDB_val *v, st_cred *o)
{
    mpr r;
    uint32_t kind;
    const uint8_t *h;
    size_t hn;
    if (k->mv_size != TK_ID_LEN)
        return TK_ECORRUPT;
    memcpy(o->id.b, k->mv_data, TK_ID_LEN);
    if (rd_header(&r, v, 11) || rd_u32(&r, &kind) || mpr_bin(&r, &h, &hn) || hn != TK_HASH_LEN
        || rd_u32(&r, &o->tenant) || rd_u32(&r, &o->account) || rd_u32(&r, &o->user)
        || rd_ids(&r, o->roles, &o->nroles, TK_MAX_ROLES) || mpr_int(&r, &o->created_ms)
        || mpr_int(&r, &o->expires) || rd_cstr(&r, o->desc, sizeof o->desc)
        || mpr_uint(&r, &o->ord) || rd_cstr(&r, o->creator, sizeof o->creator))
        return TK_ECORRUPT;
    if (kind != TK_KIND_TOKEN && kind != TK_KIND_PERSONAL)
        return TK_ECORRUPT;
    o->kind = (uint8_t)kind;
    memcpy(o->hash, h, TK_HASH_LEN);
    return 0;
}

static void enc_cred(mpw *w, const st_cred *o)
{
    mpw_array(w, 11);
    mpw_uint(w, o->kind);
    mpw_bin(w, o->hash, TK_HASH_LEN);
    mpw_uint(w, o->tenant);
    mpw_uint(w, o->account);
    mpw_uint(w, o->user);
    mpw_array(w, o->nroles);
    for (uint32_t i = 0; i < o->nroles; i++)
        mpw_uint(w, o->roles[i]);
    mpw_int(w, o->created_ms);
    mpw_int(w, o->expires);
    mpw_cstr(w, o->desc);
    mpw_uint(w, o->ord);
    mpw_cstr(w, o->creator);
}

/* ---- lookups ---------------------------------------------------------- */

int state_tenant_by_id(state_txn *t, uint32_t id, st_tenant *out)
{
    MDB_val v;
    int rc = id_get(t, DB_TENANT, id, &v);
    return rc ? rc : dec_tenant(&v, id, out);
}

int state_tenant_by_slug(state_txn *t, const char *slug, size_t n, st_tenant *out)
{
    uint32_t id;
    int rc = name_get(t, DB_TENANT_NAME, 0, slug, n, &id);
    return rc ? rc : state_tenant_by_id(t, id, out);
}

int state_perm_by_num(state_txn *t, uint32_t tenant, uint32_t num, st_perm *out)
{
    uint8_t k[8];
    MDB_val v;
    be32(k, tenant);
    be32(k + 4, num);
    int rc = db_get(t, DB_PERM, k, 8, &v);
    return rc ? rc : dec_perm(&v, tenant, num, out);
}

int state_perm_by_key(state_txn *t, uint32_t tenant, const char *key, size_t n, st_perm *out)
{
    uint32_t num;
    int rc = name_get(t, DB_PERM_NAME, tenant, key, n, &num);
    return rc ? rc : state_perm_by_num(t, tenant, num, out);
}

int state_role_by_id(state_txn *t, uint32_t id, st_role *out)
{
    MDB_val v;
    int rc = id_get(t, DB_ROLE, id, &v);
    return rc ? rc : dec_role(&v, id, out);
}

int state_role_by_key(state_txn *t, uint32_t tenant, const char *key, size_t n, st_role *out)
{
    uint32_t id;
    int rc = name_get(t, DB_ROLE_NAME, tenant, key, n, &id);
    return rc ? rc : state_role_by_id(t, id, out);
}

int state_account_by_id(state_txn *t, uint32_t id, st_account *out)
{
    MDB_val v;
    int rc = id_get(t, DB_ACCOUNT, id, &v);
    return rc ? rc : dec_account(&v, id, out);
}

int state_account_by_slug(state_txn *t, uint32_t tenant, const char *slug, size_t n,
                          st_account *out)
{
    uint32_t id;
    int rc = name_get(t, DB_ACCOUNT_NAME, tenant, slug, n, &id);
    return rc ? rc : state_account_by_id(t, id, out);
}

int state_user_by_id(state_txn *t, uint32_t id, st_user *out)
{
    MDB_val v;
    int rc = id_get(t, DB_USER, id, &v);
    return rc ? rc : dec_user(&v, id, out);
}

int state_user_by_slug(state_txn *t, uint32_t account, const char *slug, size_t n, st_user *out)
{
    uint32_t id;
    int rc = name_get(t, DB_USER_NAME, account, slug, n, &id);
    return rc ? rc : state_user_by_id(t, id, out);
}

int state_cred_by_id(state_txn *t, const tk_id *id, st_cred *out)
{
    MDB_val k = {TK_ID_LEN, (void *)id->b}, v;
    int rc = map_err(mdb_get(t->txn, t->s->dbi[DB_CRED], &k, &v));
    return rc ? rc : dec_cred(&k, &v, out);
}

/* ---- apply ------------------------------------------------------------ */

static uint32_t next_id(state_txn *t, int which)
{
    t->dirty = true;
    return ++t->ids[which];
}

/* Copies a slice into a NUL-terminated fixed field (the caller checked n). */
static void copy_str(char *dst, tk_str s)
{
    if (s.n)
        memcpy(dst, s.p, s.n);
    dst[s.n] = '\0';
}

static void emit_text(st_change *c, const char *s, size_t n)
{
    memcpy(c->text, s, n);
    c->text[n] = '\0';
    c->len = n;
}

/* An event names things that must exist: a miss means the log does not
 * belong to this state. */
static int must(int rc)
{
    return rc == TK_ENOTFOUND ? TK_ECORRUPT : rc;
}

/* Resolves role keys to ids within tenant. */
static int resolve_roles(state_txn *t, uint32_t tenant, const ev *e, uint32_t *ids)
{
    if (e->nitems > TK_MAX_ROLES)
        return TK_ECORRUPT;
    for (uint32_t i = 0; i < e->nitems; i++) {
        st_role r;
        int rc = state_role_by_key(t, tenant, e->items[i].p, e->items[i].n, &r);
        if (rc)
            return must(rc);
        ids[i] = r.id;
    }
    return 0;
}

/* The number a new permission of tn gets: the lowest one no permission has
 * (a deleted one's, or the next above them all). Replays alike. */
static int perm_free_num(state_txn *t, const st_tenant *tn, uint32_t *num)
{
    MDB_cursor *c;
    MDB_val k, v;
    uint8_t from[8];
    uint32_t expect = 0;
    int rc = map_err(mdb_cursor_open(t->txn, t->s->dbi[DB_PERM], &c));
    if (rc)
        return rc;
    be32(from, tn->id);
    be32(from + 4, 0);
    k.mv_size = 8;
    k.mv_data = from;
    int mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    while (mrc == 0 && k.mv_size == 8 && rd_be32(k.mv_data) == tn->id
           && rd_be32((uint8_t *)k.mv_data + 4) == expect) {
        expect++;
        mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    if (mrc != 0 && mrc != MDB_NOTFOUND)
        return map_err(mrc);
    *num = expect; /* the first gap, or the top */
    return 0;
}

/* Finds permission key in tenant, defining it (with desc) if new. */
static int perm_define(state_txn *t, st_tenant *tn, const tk_str *key, const tk_str *desc,
                       bool overwrite_desc, uint32_t *num, st_emit_fn emit, void *arg)
{
    st_perm p;
    int rc = state_perm_by_key(t, tn->id, key->p, key->n, &p);
    if (rc && rc != TK_ENOTFOUND)
        return rc;
    bool fresh = rc == TK_ENOTFOUND;
    if (fresh) {
        if (tn->nperms >= TK_MAX_TENANT_PERMS)
            return TK_ECORRUPT;
        p.tenant = tn->id;
        if ((rc = perm_free_num(t, tn, &p.num)))
            return rc;
        tn->nperms++;
        copy_str(p.key, *key);
        p.desc[0] = '\0';
        mpw w;
        mpw_init(&w);
        enc_tenant(&w, tn);
        rc = id_put(t, DB_TENANT, tn->id, &w);
        mpw_free(&w);
        if (!rc)
            rc = name_put(t, DB_PERM_NAME, tn->id, key->p, key->n, p.num);
        if (rc)
            return rc;
    }
    if (fresh || overwrite_desc) {
        if (desc)
            copy_str(p.desc, *desc);
        uint8_t k[8];
        mpw w;
        be32(k, tn->id);
        be32(k + 4, p.num);
        mpw_init(&w);
        mpw_array(&w, 2);
        mpw_cstr(&w, p.key);
        mpw_cstr(&w, p.desc);
        rc = db_put(t, DB_PERM, k, 8, w.buf.data, w.buf.size);
        mpw_free(&w);
        if (rc)
            return rc;
    }
    if (fresh && emit) {
        st_change c;
        c.type = EV_PERM_PUT;
        c.tenant = tn->id;
        c.id = p.num;
        emit_text(&c, key->p, key->n);
        emit(arg, &c);
    }
    *num = p.num;
    return 0;
}

static void tenant_change(const st_tenant *tn, st_change *c)
{
    c->type = EV_TENANT_SET;
    c->id = tn->id;
    c->flag = tn->api_tokens;
    emit_text(c, tn->slug, strlen(tn->slug));
}

static void role_change(const st_role *r, st_change *c)
{
    c->type = EV_ROLE_PUT;
    c->id = r->id;
    c->tenant = r->tenant;
    c->level = r->level;
    c->n = r->nperms;
    for (uint32_t i = 0; i < r->nperms; i++)
        c->list[i] = r->perms[i];
    emit_text(c, r->key, strlen(r->key));
}

static void cred_change(const st_cred *cr, st_change *c)
{
    c->type = EV_TOKEN_CREATE;
    c->kind = cr->kind;
    c->cid = cr->id;
    memcpy(c->hash, cr->hash, TK_HASH_LEN);
    c->tenant = cr->tenant;
    c->account = cr->account;
    c->user = cr->user;
    c->expires = cr->expires;
    c->n = cr->nroles;
    memcpy(c->list, cr->roles, cr->nroles * sizeof *cr->roles);
}

/* An account's tokens, or a user's personal keys, in listing order:
 * (account or user, ord), big-endian, to the credential's ID. */
#define ORD_KEY 12

static void ord_key(uint8_t k[ORD_KEY], uint32_t parent, uint64_t ord)
{
    be32(k, parent);
    be64(k + 4, ord);
}

static int apply_cred_create(state_txn *t, const ev *e, st_emit_fn emit, void *arg)
{
    st_tenant tn;
    st_account ac;
    st_user us;
    st_cred cr, old;
    int rc;
    memset(&cr, 0, sizeof cr);
    if ((rc = must(state_tenant_by_slug(t, e->tenant.p, e->tenant.n, &tn)))
        || (rc = must(state_account_by_slug(t, tn.id, e->account.p, e->account.n, &ac)))
        || (rc = must(state_user_by_slug(t, ac.id, e->user.p, e->user.n, &us))))
        return rc;
    rc = state_cred_by_id(t, &e->id, &old);
    if (rc != TK_ENOTFOUND)
        return rc ? rc : TK_ECORRUPT; /* an ID is never reused */
    cr.id = e->id;
    cr.kind = e->type == EV_TOKEN_CREATE ? TK_KIND_TOKEN : TK_KIND_PERSONAL;
    cr.nroles = 0;
    memcpy(cr.hash, e->hash, TK_HASH_LEN);
    cr.tenant = tn.id;
    cr.account = ac.id;
    cr.user = us.id;
    cr.created_ms = e->ts;
    cr.expires = e->expires;
    copy_str(cr.creator, e->user);
    mpw w;
    mpw_init(&w);
    if (cr.kind == TK_KIND_TOKEN) {
        if ((rc = resolve_roles(t, tn.id, e, cr.roles)))
            goto done;
        cr.nroles = e->nitems;
        copy_str(cr.desc, e->desc);
        cr.ord = ++ac.tokens; /* event order: a replay numbers alike */
        ac.live++;
        enc_account(&w, &ac);
        rc = id_put(t, DB_ACCOUNT, ac.id, &w);
    } else {
        cr.ord = ++us.keys_made;
        us.nkeys++;
        enc_user(&w, &us);
        rc = id_put(t, DB_USER, us.id, &w);
    }
    mpw_reset(&w);
    if (rc)
        goto done;
    enc_cred(&w, &cr);
    rc = db_put(t, DB_CRED, cr.id.b, TK_ID_LEN, w.buf.data, w.buf.size);
    if (!rc) {
        uint8_t k[ORD_KEY];
        ord_key(k, cr.kind == TK_KIND_TOKEN ? cr.account : cr.user, cr.ord);
        rc = db_put(t, cr.kind == TK_KIND_TOKEN ? DB_ACCOUNT_TOKENS : DB_USER_KEYS, k, sizeof k,
                    cr.id.b, TK_ID_LEN);
    }
done:
    mpw_free(&w);
    if (rc)
        return rc;
    if (emit) {
        st_change c;
        cred_change(&cr, &c);
        emit(arg, &c);
    }
    return 0;
}

/* A credential gone: one less in its account's (a token) or its user's
 * (a personal key) count. */
static int uncount_cred(state_txn *t, const st_cred *cr)
{
    mpw w;
    int rc;
    mpw_init(&w);
    if (cr->kind == TK_KIND_TOKEN) {
        st_account ac;
        if (!(rc = must(state_account_by_id(t, cr->account, &ac)))) {
            ac.live -= ac.live > 0;
            enc_account(&w, &ac);
            rc = id_put(t, DB_ACCOUNT, ac.id, &w);
        }
    } else {
        st_user us;
        if (!(rc = must(state_user_by_id(t, cr->user, &us)))) {
            us.nkeys -= us.nkeys > 0;
            enc_user(&w, &us);
            rc = id_put(t, DB_USER, us.id, &w);
        }
    }
    mpw_free(&w);
    return rc;
}

/* Removes credential cr (its record, its listing entry, its count) and
 * tells the view. */
static int drop_cred(state_txn *t, const st_cred *c, st_emit_fn emit, void *arg)
{
    st_cred cr = *c;
    int rc = db_del(t, DB_CRED, cr.id.b, TK_ID_LEN);
    if (!rc) {
        uint8_t k[ORD_KEY];
        ord_key(k, cr.kind == TK_KIND_TOKEN ? cr.account : cr.user, cr.ord);
        rc = db_del(t, cr.kind == TK_KIND_TOKEN ? DB_ACCOUNT_TOKENS : DB_USER_KEYS, k, sizeof k);
    }
    if (!rc)
        rc = uncount_cred(t, &cr);
    if (!rc && emit) {
        st_change ch;
        ch.type = EV_TOKEN_DELETE;
        ch.cid = cr.id;
        emit(arg, &ch);
    }
    return rc;
}

static int apply_cred_delete(state_txn *t, const ev *e, st_emit_fn emit, void *arg)
{
    st_cred cr;
    int rc = must(state_cred_by_id(t, &e->id, &cr));
    if (rc)
        return rc;
    if (cr.kind != (e->type == EV_TOKEN_DELETE ? TK_KIND_TOKEN : TK_KIND_PERSONAL))
        return TK_ECORRUPT;
    return drop_cred(t, &cr, emit, arg);
}

static int apply_token_set(state_txn *t, const ev *e)
{
    st_cred cr;
    int rc = must(state_cred_by_id(t, &e->id, &cr));
    if (rc)
        return rc;
    if (cr.kind != TK_KIND_TOKEN)
        return TK_ECORRUPT;
    copy_str(cr.desc, e->desc);
    mpw w;
    mpw_init(&w);
    enc_cred(&w, &cr);
    rc = db_put(t, DB_CRED, cr.id.b, TK_ID_LEN, w.buf.data, w.buf.size);
    mpw_free(&w);
    return rc;
}

/* ---- deletions: everything below goes with its parent ----------------- *
 *
 * Each takes the children one at a time, always the first left (the walk
 * deletes what it walks), so an event alone says what goes and a replay
 * takes exactly the same. */

/* Drops every credential listed under parent in db (DB_ACCOUNT_TOKENS or
 * DB_USER_KEYS). */
static int drop_listed(state_txn *t, int db, uint32_t parent, st_emit_fn emit, void *arg)
{
    uint8_t prefix[4];
    MDB_val k, v;
    int rc;
    be32(prefix, parent);
    while ((rc = first_from(t, db, prefix, 4, prefix, 4, &k, &v)) == 0) {
        st_cred cr;
        tk_id id;
        if (v.mv_size != TK_ID_LEN)
            return TK_ECORRUPT;
        memcpy(id.b, v.mv_data, TK_ID_LEN);
        if ((rc = must(state_cred_by_id(t, &id, &cr))) || (rc = drop_cred(t, &cr, emit, arg)))
            return rc;
    }
    return rc == TK_ENOTFOUND ? 0 : rc;
}

/* The id under the first name of parent in a name index, or TK_ENOTFOUND. */
static int first_child(state_txn *t, int db, uint32_t parent, uint32_t *id)
{
    uint8_t prefix[4];
    MDB_val k, v;
    be32(prefix, parent);
    int rc = first_from(t, db, prefix, 4, prefix, 4, &k, &v);
    if (rc)
        return rc;
    if (v.mv_size != 4)
        return TK_ECORRUPT;
    *id = rd_be32(v.mv_data);
    return 0;
}

static int drop_user(state_txn *t, const st_user *u, st_emit_fn emit, void *arg)
{
    uint8_t k[4];
    int rc = drop_listed(t, DB_USER_KEYS, u->id, emit, arg);
    if (rc)
        return rc;
    be32(k, u->id);
    if ((rc = db_del(t, DB_USER, k, 4)))
        return rc;
    return name_del(t, DB_USER_NAME, u->account, u->slug, strlen(u->slug));
}

static int drop_account(state_txn *t, const st_account *ac, st_emit_fn emit, void *arg)
{
    uint32_t uid;
    uint8_t k[4];
    int rc = drop_listed(t, DB_ACCOUNT_TOKENS, ac->id, emit, arg);
    while (!rc && (rc = first_child(t, DB_USER_NAME, ac->id, &uid)) == 0) {
        st_user u;
        if (!(rc = must(state_user_by_id(t, uid, &u))))
            rc = drop_user(t, &u, emit, arg);
    }
    if (rc != TK_ENOTFOUND)
        return rc;
    be32(k, ac->id);
    if ((rc = db_del(t, DB_ACCOUNT, k, 4))
        || (rc = name_del(t, DB_ACCOUNT_NAME, ac->tenant, ac->slug, strlen(ac->slug))))
        return rc;
    if (emit) {
        st_change c;
        c.type = EV_ACCOUNT_DELETE;
        c.id = ac->id;
        emit(arg, &c);
    }
    return 0;
}

static int role_drop_perm(state_txn *t, st_role *r, uint32_t num, st_emit_fn emit, void *arg);
static void role_change(const st_role *r, st_change *c);

static int name_walk(state_txn *t, int db, uint32_t parent, const tk_str *after, uint32_t limit,
                     int (*fn)(state_txn *t, void *arg, uint32_t id), void *arg);

/* drop_perm's walk over the tenant's roles. */
typedef struct perm_out {
    uint32_t num;
    st_emit_fn emit;
    void *arg;
} perm_out;

static int role_without(state_txn *t, void *arg, uint32_t id)
{
    perm_out *o = arg;
    st_role r;
    int rc = must(state_role_by_id(t, id, &r));
    return rc ? rc : role_drop_perm(t, &r, o->num, o->emit, o->arg);
}

/* A permission goes: out of every role of the tenant first (unless the
 * roles go too). */
static int drop_perm(state_txn *t, st_tenant *tn, const st_perm *p, bool roles, st_emit_fn emit,
                     void *arg)
{
    perm_out o = {p->num, emit, arg};
    int rc;
    if (roles && (rc = name_walk(t, DB_ROLE_NAME, tn->id, NULL, UINT32_MAX, role_without, &o)))
        return rc;
    uint8_t pk[8];
    be32(pk, tn->id);
    be32(pk + 4, p->num);
    if ((rc = db_del(t, DB_PERM, pk, 8))
        || (rc = name_del(t, DB_PERM_NAME, tn->id, p->key, strlen(p->key))))
        return rc;
    tn->nperms -= tn->nperms > 0;
    if (emit) {
        st_change c;
        c.type = EV_PERM_DELETE;
        c.tenant = tn->id;
        c.id = p->num;
        emit(arg, &c);
    }
    return 0;
}

static int id_del_role(state_txn *t, const st_role *r);

/* A role goes (its tenant's count is the caller's). */
static int drop_role(state_txn *t, const st_role *r, st_emit_fn emit, void *arg)
{
    int rc = id_del_role(t, r);
    if (rc == 0 && emit) {
        st_change c;
        c.type = EV_ROLE_DELETE;
        c.id = r->id;
        emit(arg, &c);
    }
    return rc;
}

static int drop_tenant(state_txn *t, st_tenant *tn, st_emit_fn emit, void *arg)
{
    uint32_t id;
    uint8_t k[4];
    int rc;
    while ((rc = first_child(t, DB_ACCOUNT_NAME, tn->id, &id)) == 0) {
        st_account ac;
        if ((rc = must(state_account_by_id(t, id, &ac))) || (rc = drop_account(t, &ac, emit, arg)))
            return rc;
    }
    if (rc != TK_ENOTFOUND)
        return rc;
    while ((rc = first_child(t, DB_ROLE_NAME, tn->id, &id)) == 0) {
        st_role r;
        if ((rc = must(state_role_by_id(t, id, &r))) || (rc = drop_role(t, &r, emit, arg)))
            return rc;
    }
    if (rc != TK_ENOTFOUND)
        return rc;
    while ((rc = first_child(t, DB_PERM_NAME, tn->id, &id)) == 0) {
        st_perm p;
        if ((rc = must(state_perm_by_num(t, tn->id, id, &p)))
            || (rc = drop_perm(t, tn, &p, false, NULL, NULL)))
            return rc;
    }
    if (rc != TK_ENOTFOUND)
        return rc;
    be32(k, tn->id);
    if ((rc = db_del(t, DB_TENANT, k, 4))
        || (rc = name_del(t, DB_TENANT_NAME, 0, tn->slug, strlen(tn->slug))))
        return rc;
    if (emit) {
        st_change c;
        c.type = EV_TENANT_DELETE;
        c.id = tn->id;
        emit(arg, &c);
    }
    return 0;
}

static int put_tenant(state_txn *t, const st_tenant *tn, st_emit_fn emit, void *arg);

/* Takes permission number num out of role r, if it has it. */
static int role_drop_perm(state_txn *t, st_role *r, uint32_t num, st_emit_fn emit, void *arg)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < r->nperms; i++)
        if (r->perms[i] != num)
            r->perms[kept++] = r->perms[i];
    if (kept == r->nperms)
        return 0;
    r->nperms = kept;
    mpw w;
    mpw_init(&w);
    enc_role(&w, r);
    int rc = id_put(t, DB_ROLE, r->id, &w);
    mpw_free(&w);
    if (!rc && emit) {
        st_change c;
        role_change(r, &c);
        emit(arg, &c);
    }
    return rc;
}

static int apply_role_put(state_txn *t, st_tenant *tn, const ev *e, st_emit_fn emit, void *arg)
{
    st_role r;
    int rc = state_role_by_key(t, tn->id, e->key.p, e->key.n, &r);
    if (rc == TK_ENOTFOUND) {
        memset(&r, 0, sizeof r);
        r.id = next_id(t, ID_ROLE);
        r.tenant = tn->id;
        copy_str(r.key, e->key);
        rc = name_put(t, DB_ROLE_NAME, tn->id, e->key.p, e->key.n, r.id);
        tn->nroles++;
        if (!rc)
            rc = put_tenant(t, tn, NULL, NULL); /* the view needs no word of a count */
    }
    if (rc)
        return rc;
    copy_str(r.name, e->name);
    r.level = e->level;
    r.nperms = 0;
    for (uint32_t i = 0; i < e->nitems; i++) {
        uint32_t num;
        if ((rc = perm_define(t, tn, &e->items[i], NULL, false, &num, emit, arg)))
            return rc;
        bool dup = false;
        for (uint32_t j = 0; j < r.nperms; j++)
            dup |= r.perms[j] == num;
        if (!dup)
            r.perms[r.nperms++] = (uint16_t)num;
    }
    mpw w;
    mpw_init(&w);
    enc_role(&w, &r);
    rc = id_put(t, DB_ROLE, r.id, &w);
    mpw_free(&w);
    if (!rc && emit) {
        st_change c;
        role_change(&r, &c);
        emit(arg, &c);
    }
    return rc;
}

static int apply_user_put(state_txn *t, const st_tenant *tn, const ev *e)
{
    st_account ac;
    st_user u;
    int rc = must(state_account_by_slug(t, tn->id, e->account.p, e->account.n, &ac));
    if (rc)
        return rc;
    rc = state_user_by_slug(t, ac.id, e->user.p, e->user.n, &u);
    if (e->type == EV_USER_CREATE && rc != TK_ENOTFOUND)
        return rc ? rc : TK_ECORRUPT;
    if (e->type == EV_USER_PUT && rc == TK_ENOTFOUND)
        return TK_ECORRUPT;
    if (rc == TK_ENOTFOUND) {
        memset(&u, 0, sizeof u);
        u.id = next_id(t, ID_USER);
        u.tenant = tn->id;
        u.account = ac.id;
        copy_str(u.slug, e->user);
        rc = name_put(t, DB_USER_NAME, ac.id, e->user.p, e->user.n, u.id);
    }
    if (rc || (rc = resolve_roles(t, tn->id, e, u.roles)))
        return rc;
    u.nroles = e->nitems;
    u.portal = e->flag;
    mpw w;
    mpw_init(&w);
    enc_user(&w, &u);
    rc = id_put(t, DB_USER, u.id, &w);
    mpw_free(&w);
    return rc;
}

static int put_tenant(state_txn *t, const st_tenant *tn, st_emit_fn emit, void *arg)
{
    mpw w;
    mpw_init(&w);
    enc_tenant(&w, tn);
    int rc = id_put(t, DB_TENANT, tn->id, &w);
    mpw_free(&w);
    if (!rc && emit) {
        st_change c;
        tenant_change(tn, &c);
        emit(arg, &c);
    }
    return rc;
}

static int id_del_role(state_txn *t, const st_role *r)
{
    uint8_t k[4];
    be32(k, r->id);
    int rc = db_del(t, DB_ROLE, k, 4);
    return rc ? rc : name_del(t, DB_ROLE_NAME, r->tenant, r->key, strlen(r->key));
}

/* ---- the keyring ------------------------------------------------------- */

/* A keyring record, under its name: kind (1), id (16), hash (32),
 * created_ms (8). Kind 0 is a tombstone: the bootstrap key of that name
 * (DIR/operator.key, "initial") was removed. */
#define RING_REC (1 + TK_ID_LEN + TK_HASH_LEN + 8)

static int dec_ring(const MDB_val *k, const MDB_val *v, st_ring *out)
{
    const uint8_t *p = v->mv_data;
    if (k->mv_size == 0 || k->mv_size > TK_SLUG_MAX || v->mv_size != RING_REC || p[0] > 2)
        return TK_ECORRUPT;
    memset(out, 0, sizeof *out);
    memcpy(out->name, k->mv_data, k->mv_size);
    out->kind = p[0];
    memcpy(out->id.b, p + 1, TK_ID_LEN);
    memcpy(out->hash, p + 1 + TK_ID_LEN, TK_HASH_LEN);
    out->created_ms = (int64_t)rd_be64(p + 1 + TK_ID_LEN + TK_HASH_LEN);
    return 0;
}

int state_ring_by_name(state_txn *t, const char *name, size_t n, st_ring *out)
{
    MDB_val v, k = {n, (void *)name};
    if (n == 0 || n > TK_SLUG_MAX)
        return TK_ENOTFOUND;
    int rc = db_get(t, DB_KEYRING, name, n, &v);
    return rc ? rc : dec_ring(&k, &v, out);
}

int state_ring_walk(state_txn *t, int (*fn)(void *arg, const st_ring *r), void *arg)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc = map_err(mdb_cursor_open(t->txn, t->s->dbi[DB_KEYRING], &c));
    if (rc)
        return rc;
    int mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    while (mrc == 0 && !rc) {
        st_ring r;
        rc = dec_ring(&k, &v, &r) ? TK_ECORRUPT : fn(arg, &r);
        mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    if (!rc && mrc != MDB_NOTFOUND)
        rc = map_err(mrc);
    return rc;
}

static void ring_change(const st_ring *r, ev_type type, st_change *c)
{
    memset(c, 0, sizeof *c);
    c->type = type;
    c->kind = r->kind;
    c->cid = r->id;
    memcpy(c->hash, r->hash, TK_HASH_LEN);
    emit_text(c, r->name, strlen(r->name));
}

static int put_ring(state_txn *t, const st_ring *r, st_emit_fn emit, void *arg)
{
    uint8_t rec[RING_REC];
    rec[0] = r->kind;
    memcpy(rec + 1, r->id.b, TK_ID_LEN);
    memcpy(rec + 1 + TK_ID_LEN, r->hash, TK_HASH_LEN);
    be64(rec + 1 + TK_ID_LEN + TK_HASH_LEN, (uint64_t)r->created_ms);
    int rc = db_put(t, DB_KEYRING, r->name, strlen(r->name), rec, sizeof rec);
    if (!rc && emit) {
        st_change c;
        ring_change(r, EV_KEYRING_ADD, &c);
        emit(arg, &c);
    }
    return rc;
}

static int apply_ring(state_txn *t, const ev *e, st_emit_fn emit, void *arg)
{
    st_ring r;
    int rc = state_ring_by_name(t, e->key.p, e->key.n, &r);
    if (rc && rc != TK_ENOTFOUND)
        return rc;
    if (e->type == EV_KEYRING_ADD) {
        if (rc == 0 && r.kind != ST_RING_GONE) /* a live name is never given twice */
            return TK_ECORRUPT;
        memset(&r, 0, sizeof r);
        copy_str(r.name, e->key);
        r.kind = e->flag ? ST_RING_GATEWAY : ST_RING_OPERATOR;
        r.id = e->id;
        memcpy(r.hash, e->hash, TK_HASH_LEN);
        r.created_ms = e->ts;
        return put_ring(t, &r, emit, arg);
    }
    /* Removed: a tombstone, so that the bootstrap key, which has no record
     * while it acts, stays removed. */
    if (rc == TK_ENOTFOUND) {
        memset(&r, 0, sizeof r);
        copy_str(r.name, e->key);
    } else if (r.kind == ST_RING_GONE) {
        return TK_ECORRUPT;
    }
    st_ring gone = r;
    gone.kind = ST_RING_GONE;
    memset(gone.hash, 0, sizeof gone.hash);
    gone.created_ms = e->ts;
    if ((rc = put_ring(t, &gone, NULL, NULL)))
        return rc;
    if (emit) {
        st_change c;
        ring_change(&r, EV_KEYRING_REMOVE, &c);
        emit(arg, &c);
    }
    return 0;
}

static int apply(state_txn *t, const ev *e, st_emit_fn emit, void *arg)
{
    st_tenant tn;
    int rc;

    switch (e->type) {
    case EV_KEYRING_ADD:
    case EV_KEYRING_REMOVE:
        return apply_ring(t, e, emit, arg);
    case EV_KEY_DELETE:
    case EV_TOKEN_DELETE:
        return apply_cred_delete(t, e, emit, arg);
    case EV_TOKEN_SET:
        return apply_token_set(t, e);
    case EV_KEY_CREATE:
    case EV_TOKEN_CREATE:
        return apply_cred_create(t, e, emit, arg);
    case EV_TENANT_CREATE:
        rc = state_tenant_by_slug(t, e->tenant.p, e->tenant.n, &tn);
        if (rc != TK_ENOTFOUND)
            return rc ? rc : TK_ECORRUPT;
        memset(&tn, 0, sizeof tn);
        tn.id = next_id(t, ID_TENANT);
        tn.lim = TK_LIMITS_DEFAULT;
        copy_str(tn.slug, e->tenant);
        if ((rc = name_put(t, DB_TENANT_NAME, 0, e->tenant.p, e->tenant.n, tn.id)))
            return rc;
        return put_tenant(t, &tn, emit, arg);
    default:
        break;
    }
    /* Every other event acts inside an existing tenant. */
    if ((rc = must(state_tenant_by_slug(t, e->tenant.p, e->tenant.n, &tn))))
        return rc;
    switch (e->type) {
    case EV_TENANT_SET:
        tn.api_tokens = e->flag;
        if (e->has_limits)
            tn.lim = e->limits;
        return put_tenant(t, &tn, emit, arg);
    case EV_PERM_PUT: {
        uint32_t num;
        return perm_define(t, &tn, &e->key, &e->desc, true, &num, emit, arg);
    }
    case EV_ROLE_PUT:
        return apply_role_put(t, &tn, e, emit, arg);
    case EV_ROLE_DELETE: {
        st_role r;
        if ((rc = must(state_role_by_key(t, tn.id, e->key.p, e->key.n, &r)))
            || (rc = drop_role(t, &r, emit, arg)))
            return rc;
        tn.nroles -= tn.nroles > 0;
        return put_tenant(t, &tn, NULL, NULL);
    }
    case EV_ACCOUNT_CREATE: {
        st_account ac;
        rc = state_account_by_slug(t, tn.id, e->account.p, e->account.n, &ac);
        if (rc != TK_ENOTFOUND)
            return rc ? rc : TK_ECORRUPT;
        memset(&ac, 0, sizeof ac);
        ac.id = next_id(t, ID_ACCOUNT);
        ac.tenant = tn.id;
        copy_str(ac.slug, e->account);
        mpw w;
        mpw_init(&w);
        enc_account(&w, &ac);
        rc = id_put(t, DB_ACCOUNT, ac.id, &w);
        mpw_free(&w);
        if (!rc)
            rc = name_put(t, DB_ACCOUNT_NAME, tn.id, e->account.p, e->account.n, ac.id);
        if (!rc && emit) {
            st_change c;
            c.type = EV_ACCOUNT_CREATE;
            c.id = ac.id;
            c.tenant = tn.id;
            emit_text(&c, e->account.p, e->account.n);
            emit(arg, &c);
        }
        return rc;
    }
    case EV_USER_PUT:
        return apply_user_put(t, &tn, e);
    case EV_USER_CREATE:
        if ((rc = apply_user_put(t, &tn, e)))
            return rc;
        return apply_cred_create(t, e, emit, arg);
    case EV_USER_DELETE: {
        st_account ac;
        st_user u;
        if ((rc = must(state_account_by_slug(t, tn.id, e->account.p, e->account.n, &ac)))
            || (rc = must(state_user_by_slug(t, ac.id, e->user.p, e->user.n, &u))))
            return rc;
        return drop_user(t, &u, emit, arg);
    }
    case EV_ACCOUNT_DELETE: {
        st_account ac;
        if ((rc = must(state_account_by_slug(t, tn.id, e->account.p, e->account.n, &ac))))
            return rc;
        return drop_account(t, &ac, emit, arg);
    }
    case EV_PERM_DELETE: {
        st_perm p;
        if ((rc = must(state_perm_by_key(t, tn.id, e->key.p, e->key.n, &p)))
            || (rc = drop_perm(t, &tn, &p, true, emit, arg)))
            return rc;
        return put_tenant(t, &tn, NULL, NULL);
    }
    case EV_TENANT_DELETE:
        return drop_tenant(t, &tn, emit, arg);
    default:
        return TK_ECORRUPT;
    }
}

int state_apply(state_txn *t, uint64_t seq, const ev *e, st_emit_fn emit, void *arg)
{
    if (!t->write || seq != t->seq + 1)
        return TK_ECORRUPT;
    int rc = apply(t, e, emit, arg);
    if (rc)
        return rc;
    t->seq = seq;
    t->dirty = true;
    return 0;
}

/* ---- load ------------------------------------------------------------- */

/* Walks every record of db, calling fn(key, value). */
static int walk(state_txn *t, int db, int (*fn)(state_txn *, const MDB_val *, const MDB_val *,
                                                 st_emit_fn, void *),
                st_emit_fn emit, void *arg)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc = map_err(mdb_cursor_open(t->txn, t->s->dbi[db], &c));
    if (rc)
        return rc;
    int mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    while (mrc == 0 && !rc) {
        rc = fn(t, &k, &v, emit, arg);
        mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    if (!rc && mrc != MDB_NOTFOUND)
        rc = map_err(mrc);
    return rc;
}

static int load_tenant(state_txn *t, const MDB_val *k, const MDB_val *v, st_emit_fn emit,
                       void *arg)
{
    (void)t;
    st_tenant tn;
    st_change c;
    if (k->mv_size != 4 || dec_tenant(v, rd_be32(k->mv_data), &tn))
        return TK_ECORRUPT;
    tenant_change(&tn, &c);
    emit(arg, &c);
    return 0;
}

static int load_perm(state_txn *t, const MDB_val *k, const MDB_val *v, st_emit_fn emit,
                     void *arg)
{
    (void)t;
    st_perm p;
    st_change c;
    if (k->mv_size != 8 || dec_perm(v, rd_be32(k->mv_data), rd_be32((uint8_t *)k->mv_data + 4), &p))
        return TK_ECORRUPT;
    c.type = EV_PERM_PUT;
    c.tenant = p.tenant;
    c.id = p.num;
    emit_text(&c, p.key, strlen(p.key));
    emit(arg, &c);
    return 0;
}

static int load_role(state_txn *t, const MDB_val *k, const MDB_val *v, st_emit_fn emit,
                     void *arg)
{
    (void)t;
    st_role r;
    st_change c;
    if (k->mv_size != 4 || dec_role(v, rd_be32(k->mv_data), &r))
        return TK_ECORRUPT;
    role_change(&r, &c);
    emit(arg, &c);
    return 0;
}

static int load_account(state_txn *t, const MDB_val *k, const MDB_val *v, st_emit_fn emit,
                        void *arg)
{
    (void)t;
    st_account a;
    st_change c;
    if (k->mv_size != 4 || dec_account(v, rd_be32(k->mv_data), &a))
        return TK_ECORRUPT;
    c.type = EV_ACCOUNT_CREATE;
    c.id = a.id;
    c.tenant = a.tenant;
    emit_text(&c, a.slug, strlen(a.slug));
    emit(arg, &c);
    return 0;
}

static int load_ring(state_txn *t, const MDB_val *k, const MDB_val *v, st_emit_fn emit,
                     void *arg)
{
    (void)t;
    st_ring r;
    st_change c;
    if (dec_ring(k, v, &r))
        return TK_ECORRUPT;
    ring_change(&r, r.kind == ST_RING_GONE ? EV_KEYRING_REMOVE : EV_KEYRING_ADD, &c);
    emit(arg, &c);
    return 0;
}

static int load_cred(state_txn *t, const MDB_val *k, const MDB_val *v, st_emit_fn emit,
                     void *arg)
{
    (void)t;
    st_cred cr;
    st_change c;
    if (dec_cred(k, v, &cr))
        return TK_ECORRUPT;
    cred_change(&cr, &c);
    emit(arg, &c);
    return 0;
}

int state_load(state_txn *t, unsigned flags, st_emit_fn emit, void *arg)
{
    int rc;
    if ((rc = walk(t, DB_TENANT, load_tenant, emit, arg))
        || (rc = walk(t, DB_PERM, load_perm, emit, arg))
        || (rc = walk(t, DB_ROLE, load_role, emit, arg))
        || (rc = walk(t, DB_ACCOUNT, load_account, emit, arg))
        || (!(flags & ST_LOAD_NO_CREDS) && (rc = walk(t, DB_CRED, load_cred, emit, arg)))
        || (rc = walk(t, DB_KEYRING, load_ring, emit, arg)))
        return rc;
    return 0;
}

/* ---- visiting (tokenreplay) -------------------------------------------- */

/* Decodes one record of db and hands it to its callback. */
static int visit_one(int db, const MDB_val *k, const MDB_val *v, const st_visitor *vis)
{
    union {
        st_tenant tn;
        st_perm p;
        st_role r;
        st_account a;
        st_user u;
        st_cred c;
    } x;

    if (db == DB_CRED)
        return dec_cred(k, v, &x.c) ? TK_ECORRUPT : vis->cred(vis->arg, &x.c);
    if (db == DB_PERM) {
        if (k->mv_size != 8
            || dec_perm(v, rd_be32(k->mv_data), rd_be32((uint8_t *)k->mv_data + 4), &x.p))
            return TK_ECORRUPT;
        return vis->perm(vis->arg, &x.p);
    }
    if (k->mv_size != 4)
        return TK_ECORRUPT;
    uint32_t id = rd_be32(k->mv_data);
    switch (db) {
    case DB_TENANT:
        return dec_tenant(v, id, &x.tn) ? TK_ECORRUPT : vis->tenant(vis->arg, &x.tn);
    case DB_ROLE:
        return dec_role(v, id, &x.r) ? TK_ECORRUPT : vis->role(vis->arg, &x.r);
    case DB_ACCOUNT:
        return dec_account(v, id, &x.a) ? TK_ECORRUPT : vis->account(vis->arg, &x.a);
    default:
        return dec_user(v, id, &x.u) ? TK_ECORRUPT : vis->user(vis->arg, &x.u);
    }
}

int state_visit(state_txn *t, const st_visitor *v)
{
    static const int order[] = {DB_TENANT, DB_PERM, DB_ROLE, DB_ACCOUNT, DB_USER, DB_CRED};
    const bool want[] = {v->tenant, v->perm, v->role, v->account, v->user, v->cred};
    int rc = 0;

    for (size_t i = 0; i < sizeof order / sizeof order[0] && !rc; i++) {
        MDB_cursor *c;
        MDB_val k, val;
        if (!want[i])
            continue;
        if ((rc = map_err(mdb_cursor_open(t->txn, t->s->dbi[order[i]], &c))))
            break;
        int mrc = mdb_cursor_get(c, &k, &val, MDB_FIRST);
        while (mrc == 0 && !rc) {
            rc = visit_one(order[i], &k, &val, v);
            mrc = mdb_cursor_get(c, &k, &val, MDB_NEXT);
        }
        mdb_cursor_close(c);
        if (!rc && mrc != MDB_NOTFOUND)
            rc = map_err(mrc);
    }
    return rc;
}

/* ---- listing ---------------------------------------------------------- */

/* The credentials listed under parent in db, from ord after + 1 on. */
static int ord_walk(state_txn *t, int db, uint32_t parent, uint64_t after, uint32_t limit,
                    int (*fn)(void *arg, const st_cred *c), void *arg)
{
    uint8_t prefix[4], from[ORD_KEY];
    MDB_val k, v;
    int rc = 0;
    if (after == UINT64_MAX) /* nothing comes after the last possible number */
        return 0;
    be32(prefix, parent);
    /* A position, whether or not a credential has it now. */
    ord_key(from, parent, after + 1);
    for (uint32_t n = 0; n < limit; n++) {
        if ((rc = first_from(t, db, prefix, 4, from, sizeof from, &k, &v)))
            return rc == TK_ENOTFOUND ? 0 : rc;
        tk_id id;
        st_cred cr;
        if (k.mv_size != ORD_KEY || v.mv_size != TK_ID_LEN)
            return TK_ECORRUPT;
        memcpy(id.b, v.mv_data, TK_ID_LEN);
        if ((rc = must(state_cred_by_id(t, &id, &cr))) || (rc = fn(arg, &cr)))
            return rc;
        uint64_t ord = rd_be64((uint8_t *)k.mv_data + 4);
        if (ord == UINT64_MAX)
            return 0;
        ord_key(from, parent, ord + 1);
    }
    return 0;
}

int state_account_tokens(state_txn *t, uint32_t account, uint64_t after, uint32_t limit,
                         int (*fn)(void *arg, const st_cred *c), void *arg)
{
    return ord_walk(t, DB_ACCOUNT_TOKENS, account, after, limit, fn, arg);
}

int state_user_keys(state_txn *t, uint32_t user, uint64_t after, uint32_t limit,
                    int (*fn)(void *arg, const st_cred *c), void *arg)
{
    return ord_walk(t, DB_USER_KEYS, user, after, limit, fn, arg);
}

/* The ids (or permission numbers) under parent in a name index, by name,
 * after the name `after` (NULL: from the first). */
static int name_walk(state_txn *t, int db, uint32_t parent, const tk_str *after, uint32_t limit,
                     int (*fn)(state_txn *t, void *arg, uint32_t id), void *arg)
{
    uint8_t prefix[4], from[4 + TK_KEY_MAX + 1];
    size_t fromlen = 4;
    MDB_val k, v;
    int rc;
    be32(prefix, parent);
    memcpy(from, prefix, 4);
    if (after) {
        if (after->n > TK_KEY_MAX)
            return TK_EINVAL;
        memcpy(from + 4, after->p, after->n);
        from[4 + after->n] = '\0'; /* the first name above it */
        fromlen = 4 + after->n + 1;
    }
    for (uint32_t n = 0; n < limit; n++) {
        if ((rc = first_from(t, db, prefix, 4, from, fromlen, &k, &v)))
            return rc == TK_ENOTFOUND ? 0 : rc;
        if (v.mv_size != 4 || k.mv_size > 4 + TK_KEY_MAX)
            return TK_ECORRUPT;
        if ((rc = fn(t, arg, rd_be32(v.mv_data))))
            return rc;
        memcpy(from, k.mv_data, k.mv_size);
        from[k.mv_size] = '\0';
        fromlen = k.mv_size + 1;
    }
    return 0;
}

/* The walkers' callbacks: look the record up, hand it on. */
typedef struct walk_to {
    uint32_t parent;
    union {
        int (*tenant)(void *arg, const st_tenant *r);
        int (*perm)(void *arg, const st_perm *r);
        int (*role)(void *arg, const st_role *r);
        int (*account)(void *arg, const st_account *r);
        int (*user)(void *arg, const st_user *r);
    } fn;
    void *arg;
} walk_to;

static int to_tenant(state_txn *t, void *arg, uint32_t id)
{
    walk_to *w = arg;
    st_tenant r;
    int rc = must(state_tenant_by_id(t, id, &r));
    return rc ? rc : w->fn.tenant(w->arg, &r);
}

static int to_perm(state_txn *t, void *arg, uint32_t num)
{
    walk_to *w = arg;
    st_perm r;
    int rc = must(state_perm_by_num(t, w->parent, num, &r));
    return rc ? rc : w->fn.perm(w->arg, &r);
}

static int to_role(state_txn *t, void *arg, uint32_t id)
{
    walk_to *w = arg;
    st_role r;
    int rc = must(state_role_by_id(t, id, &r));
    return rc ? rc : w->fn.role(w->arg, &r);
}

static int to_account(state_txn *t, void *arg, uint32_t id)
{
    walk_to *w = arg;
    st_account r;
    int rc = must(state_account_by_id(t, id, &r));
    return rc ? rc : w->fn.account(w->arg, &r);
}

static int to_user(state_txn *t, void *arg, uint32_t id)
{
    walk_to *w = arg;
    st_user r;
    int rc = must(state_user_by_id(t, id, &r));
    return rc ? rc : w->fn.user(w->arg, &r);
}

int state_tenants(state_txn *t, const tk_str *after, uint32_t limit,
                  int (*fn)(void *arg, const st_tenant *r), void *arg)
{
    walk_to w = {.parent = 0, .fn.tenant = fn, .arg = arg};
    return name_walk(t, DB_TENANT_NAME, 0, after, limit, to_tenant, &w);
}

int state_perms(state_txn *t, uint32_t tenant, const tk_str *after, uint32_t limit,
                int (*fn)(void *arg, const st_perm *r), void *arg)
{
    walk_to w = {.parent = tenant, .fn.perm = fn, .arg = arg};
    return name_walk(t, DB_PERM_NAME, tenant, after, limit, to_perm, &w);
}

int state_roles(state_txn *t, uint32_t tenant, const tk_str *after, uint32_t limit,
                int (*fn)(void *arg, const st_role *r), void *arg)
{
    walk_to w = {.parent = tenant, .fn.role = fn, .arg = arg};
    return name_walk(t, DB_ROLE_NAME, tenant, after, limit, to_role, &w);
}

int state_accounts(state_txn *t, uint32_t tenant, const tk_str *after, uint32_t limit,
                   int (*fn)(void *arg, const st_account *r), void *arg)
{
    walk_to w = {.parent = tenant, .fn.account = fn, .arg = arg};
    return name_walk(t, DB_ACCOUNT_NAME, tenant, after, limit, to_account, &w);
}

int state_users(state_txn *t, uint32_t account, const tk_str *after, uint32_t limit,
                int (*fn)(void *arg, const st_user *r), void *arg)
{
    walk_to w = {.parent = account, .fn.user = fn, .arg = arg};
    return name_walk(t, DB_USER_NAME, account, after, limit, to_user, &w);
}

/* ---- environment and transactions -------------------------------------- */

int state_open(const char *dir, bool nosync, state **out)
{
    state *s = xcalloc(1, sizeof *s);
    MDB_txn *txn = NULL;
    int rc, dead;

    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        goto fail_io;
    if ((rc = mdb_env_create(&s->env)))
        goto fail_mdb;
    mdb_env_set_maxdbs(s->env, DB_COUNT + 2);
    mdb_env_set_mapsize(s->env, INITIAL_MAP);
    if ((rc = mdb_env_open(s->env, dir, (nosync ? MDB_NOSYNC : MDB_NOMETASYNC) | MDB_NOTLS,
                           0600)))
        goto fail_mdb;
    /* Clear reader slots left by processes that died (kill -9). */
    mdb_reader_check(s->env, &dead);
    /* A map larger than ours was set by an earlier run: adopt it. */
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    if (info.me_mapsize < INITIAL_MAP)
        mdb_env_set_mapsize(s->env, INITIAL_MAP);
    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)))
        goto fail_mdb;
    for (int i = 0; i < DB_COUNT; i++)
        if ((rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &s->dbi[i])))
            goto fail_mdb;
    /* A new state gets the current format; an old one keeps what it says. */
    MDB_val fk = {6, "format"}, fv, sk = {3, "seq"}, sv;
    uint32_t format = STATE_FORMAT;
    if (mdb_get(txn, s->dbi[DB_META], &fk, &fv) == 0) {
        s->format_ok = fv.mv_size == 4 && memcmp(fv.mv_data, &format, 4) == 0;
    } else if (mdb_get(txn, s->dbi[DB_META], &sk, &sv) == MDB_NOTFOUND) {
        fv.mv_size = 4;
        fv.mv_data = &format;
        if ((rc = mdb_put(txn, s->dbi[DB_META], &fk, &fv, 0)))
            goto fail_mdb;
        s->format_ok = true;
    }
    if ((rc = mdb_txn_commit(txn))) {
        txn = NULL;
        goto fail_mdb;
    }
    *out = s;
    return 0;

fail_mdb:
    fprintf(stderr, "tokend: lmdb %s: %s\n", dir, mdb_strerror(rc));
    if (txn)
        mdb_txn_abort(txn);
    if (s->env)
        mdb_env_close(s->env);
    free(s);
    return map_err(rc) == TK_ECORRUPT ? TK_ECORRUPT : TK_EIO;
fail_io:
    free(s);
    return TK_EIO;
}

bool state_format_ok(const state *s)
{
    return s->format_ok;
}

int state_set_nosync(state *s, bool nosync)
{
    return mdb_env_set_flags(s->env, MDB_NOSYNC, nosync ? 1 : 0) ? TK_EIO : 0;
}

int state_sync(state *s)
{
    int rc = mdb_env_sync(s->env, 1);
    if (rc > 0)
        errno = rc; /* LMDB returns the system's error code */
    return rc ? TK_EIO : 0;
}

void state_close(state *s)
{
    if (!s)
        return;
    mdb_env_close(s->env);
    free(s);
}

/* The applied seq and chain of the newest commit, in a read transaction
 * of their own. */
static int read_head(state *s, uint64_t *seq, uint8_t chain[TK_HASH_LEN], bool *has_chain)
{
    state_txn *t;
    int rc = state_begin(s, false, &t);
    if (rc)
        return rc;
    *seq = t->seq;
    *has_chain = state_chain(t, chain);
    state_abort(t);
    return 0;
}

int state_copy(state *s, int fd, uint64_t *seq, uint8_t chain[TK_HASH_LEN], bool *has_chain)
{
    uint64_t after;
    uint8_t c2[TK_HASH_LEN];
    bool h2;
    int rc = read_head(s, seq, chain, has_chain);
    if (rc)
        return rc;
    if ((rc = mdb_env_copyfd2(s->env, fd, MDB_CP_COMPACT))) {
        if (rc > 0)
            errno = rc; /* LMDB returns the system's error code */
        return map_err(rc) == TK_ECORRUPT ? TK_ECORRUPT : TK_EIO;
    }
    if ((rc = read_head(s, &after, c2, &h2)))
        return rc;
    return after == *seq ? 0 : TK_EBUSY;
}

void state_usage(state *s, uint64_t *used, uint64_t *mapsize)
{
    MDB_envinfo info;
    MDB_stat st;
    mdb_env_info(s->env, &info);
    mdb_env_stat(s->env, &st);
    *used = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
    *mapsize = info.me_mapsize;
}

/* Doubles the map while it is over 3/4 used. Only between transactions. */
static int grow_if_needed(state *s)
{
    uint64_t used, size;
    state_usage(s, &used, &size);
    if (used * 4 < size * 3)
        return 0;
    while (used * 4 >= size * 3)
        size *= 2;
    return map_err(mdb_env_set_mapsize(s->env, (size_t)size));
}

size_t state_cred_count(state_txn *t)
{
    MDB_stat st;
    return mdb_stat(t->txn, t->s->dbi[DB_CRED], &st) == 0 ? st.ms_entries : 0;
}

int state_grow(state *s)
{
    uint64_t used, size;
    state_usage(s, &used, &size);
    return map_err(mdb_env_set_mapsize(s->env, (size_t)(size * 2)));
}

static int read_meta(state_txn *t)
{
    MDB_val v;
    int rc = db_get(t, DB_META, "seq", 3, &v);
    if (rc == TK_ENOTFOUND)
        return 0;
    if (rc || v.mv_size != 8)
        return rc ? rc : TK_ECORRUPT;
    memcpy(&t->seq, v.mv_data, 8);
    rc = db_get(t, DB_META, "ids", 3, &v);
    if (rc || v.mv_size != sizeof t->ids)
        return rc ? rc : TK_ECORRUPT;
    memcpy(t->ids, v.mv_data, sizeof t->ids);
    rc = db_get(t, DB_META, "chain", 5, &v);
    if (rc == TK_ENOTFOUND)
        return 0;
    if (rc || v.mv_size != TK_HASH_LEN)
        return rc ? rc : TK_ECORRUPT;
    memcpy(t->chain, v.mv_data, TK_HASH_LEN);
    t->has_chain = true;
    return 0;
}

int state_begin(state *s, bool write, state_txn **out)
{
    state_txn *t = xcalloc(1, sizeof *t);
    int rc = write ? grow_if_needed(s) : 0;
    t->s = s;
    t->write = write;
    if (!rc)
        rc = map_err(mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &t->txn));
    if (rc) {
        free(t);
        return rc;
    }
    if ((rc = read_meta(t))) {
        mdb_txn_abort(t->txn);
        free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int state_begin_in(state_txn *parent, state_txn **out)
{
    state_txn *t = xcalloc(1, sizeof *t);
    int rc = map_err(mdb_txn_begin(parent->s->env, parent->txn, 0, &t->txn));
    if (rc) {
        free(t);
        return rc;
    }
    t->s = parent->s;
    t->write = true;
    t->parent = parent;
    t->seq = parent->seq;
    t->has_chain = parent->has_chain;
    memcpy(t->chain, parent->chain, TK_HASH_LEN);
    memcpy(t->ids, parent->ids, sizeof t->ids);
    *out = t;
    return 0;
}

/* A nested transaction's commit: LMDB merges its pages into the parent's
 * (no I/O); the meta it changed goes with them, to be written at the
 * parent's own commit. */
static int commit_in(state_txn *t)
{
    state_txn *p = t->parent;
    int m = mdb_txn_commit(t->txn);
    int rc = map_err(m);
    if (m > 0)
        errno = m;
    if (!rc && t->dirty) {
        p->dirty = true;
        p->seq = t->seq;
        p->has_chain = t->has_chain;
        memcpy(p->chain, t->chain, TK_HASH_LEN);
        memcpy(p->ids, t->ids, sizeof p->ids);
    }
    free(t);
    return rc;
}

int state_commit(state_txn *t)
{
    int rc = 0;
    if (t->parent)
        return commit_in(t);
    if (t->dirty) {
        rc = db_put(t, DB_META, "seq", 3, &t->seq, 8);
        if (!rc)
            rc = db_put(t, DB_META, "ids", 3, t->ids, sizeof t->ids);
        if (!rc && t->has_chain)
            rc = db_put(t, DB_META, "chain", 5, t->chain, TK_HASH_LEN);
    }
    if (rc) {
        mdb_txn_abort(t->txn);
    } else {
        int m = mdb_txn_commit(t->txn);
        if (m > 0)
            errno = m; /* LMDB returns the system's error code */
        rc = map_err(m);
    }
    free(t);
    return rc;
}

void state_abort(state_txn *t)
{
    if (!t)
        return;
    mdb_txn_abort(t->txn);
    free(t);
}

void state_set_chain(state_txn *t, const uint8_t hash[TK_HASH_LEN])
{
    memcpy(t->chain, hash, TK_HASH_LEN);
    t->has_chain = true;
    t->dirty = true;
}

bool state_chain(state_txn *t, uint8_t out[TK_HASH_LEN])
{
    if (t->has_chain)
        memcpy(out, t->chain, TK_HASH_LEN);
    return t->has_chain;
}

uint64_t state_applied_seq(state_txn *t)
{
    return t->seq;
}
