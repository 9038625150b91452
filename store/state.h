/*
 * state.h - the durable state in LMDB.
 *
 * One LMDB environment (DIR/state) with named databases: each entity keyed
 * by its dense id, plus a name index per entity, the credentials by ID,
 * an (account, created_at, ID) index for listing, and "meta" holding the id
 * counters and the sequence number of the last applied event. That number
 * is written in the same transaction as the change it records, so after any
 * crash LMDB says exactly which log records it already holds.
 *
 * Changes enter only through state_apply(event): the live write path and
 * the replay at open run the same code, so the log alone rebuilds the state.
 * Apply does not check domain rules (the engine has, before logging); it
 * checks only what keeps the database consistent.
 *
 * Durability comes from the event log, not from LMDB: the engine opens the
 * environment with MDB_NOSYNC (no fsync per commit) and calls state_sync
 * at checkpoints; see engine.c for how a machine crash between checkpoints
 * is detected and repaired from the log. Without nosync it is opened with
 * MDB_NOMETASYNC (data pages synced at each commit). The map grows (doubles) before a write
 * transaction when it is over 3/4 full, so a write does not fail for space.
 * Records returned are copies: nothing points into an LMDB page after the
 * call returns.
 */
#ifndef TK_STATE_H
#define TK_STATE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/event.h"
#include "core/model.h"
#include "core/secret.h"

typedef struct state state;
typedef struct state_txn state_txn;

typedef struct st_tenant {
    uint32_t id;
    char slug[TK_SLUG_MAX + 1];
    bool api_tokens;
    uint32_t nperms;   /* permissions defined now (numbered from 0; a deleted one's
                          number is given to the next new one) */
    uint32_t nroles;   /* roles defined now */
    tk_limits lim;   /* its quotas (TK_LIMITS_DEFAULT at creation) */
} st_tenant;

typedef struct st_perm {
    uint32_t tenant;
    uint32_t num;
    char key[TK_KEY_MAX + 1];
    char desc[TK_DESC_MAX + 1];
} st_perm;

typedef struct st_role {
    uint32_t id, tenant;
    char key[TK_KEY_MAX + 1];
    char name[TK_NAME_MAX + 1];
    uint32_t level;
    uint32_t nperms;
    uint16_t perms[TK_MAX_ROLE_PERMS];
} st_role;

typedef struct st_account {
    uint32_t id, tenant;
    char slug[TK_SLUG_MAX + 1];
    uint64_t tokens; /* tokens ever made in it (deleted ones too): the last ord given */
    uint32_t live;   /* its tokens now */
} st_account;

typedef struct st_user {
    uint32_t id, tenant, account;
    char slug[TK_SLUG_MAX + 1];
    bool portal;
    uint32_t nroles;
    uint32_t roles[TK_MAX_ROLES]; /* role ids; a deleted role's id stays but resolves to nothing */
    uint32_t nkeys; /* its personal keys now */
    uint64_t keys_made; /* personal keys ever made for it: the last ord given */
} st_user;

typedef struct st_cred {
    tk_id id;
    uint8_t kind; /* tk_kind */
    uint8_t hash[TK_HASH_LEN];
    uint32_t tenant, account, user;
    uint32_t nroles;
    uint32_t roles[TK_MAX_ROLES];
    int64_t created_ms; /* unix milliseconds (the event's timestamp) */
    uint64_t ord;       /* its number in its account (a token) or user (a personal key),
                           1, 2, ... in creation order: the listing's order and position */
    char creator[TK_SLUG_MAX + 1]; /* the creating user's slug, kept when the user goes */
    int64_t expires;    /* unix seconds; 0 = never */
    char desc[TK_DESC_MAX + 1];
} st_cred;

/* What the in-memory view must learn from an applied event (or from the
 * whole state at load). One event may emit several changes (a role put
 * that defines new permissions emits those first). */
typedef struct st_change {
    ev_type type; /* EV_TENANT_SET (create too), EV_PERM_PUT, EV_ROLE_PUT, EV_ROLE_DELETE,
                     EV_ACCOUNT_CREATE, EV_TOKEN_CREATE (keys too), EV_TOKEN_DELETE (keys too),
                     EV_KEYRING_ADD, EV_KEYRING_REMOVE (text: the name, kind: ST_RING_*,
                     cid, hash) */
    uint32_t id, tenant, account, user, level;
    bool flag;
    char text[TK_KEY_MAX + 1]; /* slug or key */
    size_t len;
    uint8_t kind;
    uint32_t n;
    uint32_t list[TK_MAX_ROLE_PERMS]; /* role: permission numbers; token: role ids */
    tk_id cid;
    uint8_t hash[TK_HASH_LEN];
    int64_t expires;
} st_change;

typedef void (*st_emit_fn)(void *arg, const st_change *c);

/* A named key of the server's keyring (EV_KEYRING_*). */
enum { ST_RING_GONE = 0, ST_RING_OPERATOR = 1, ST_RING_GATEWAY = 2 };
typedef struct st_ring {
    char name[TK_SLUG_MAX + 1];
    uint8_t kind;        /* ST_RING_*: GONE is a removed name (a tombstone) */
    tk_id id;
    uint8_t hash[TK_HASH_LEN]; /* SHA-256 of the key; zeros for a tombstone */
    int64_t created_ms;  /* of the record: the add, or the removal */
} st_ring;

/* The keyring record of name (tombstones too): 0 or TK_ENOTFOUND. */
int state_ring_by_name(state_txn *t, const char *name, size_t n, st_ring *out);

/* Every keyring record, tombstones too, by name; fn's non-zero return stops
 * and is returned. */
int state_ring_walk(state_txn *t, int (*fn)(void *arg, const st_ring *r), void *arg);

/* Opens (creating) the environment in dir (a directory made if missing) and
 * runs mdb_reader_check. nosync: commits do not fsync (state_sync does).
 * 0, TK_EIO, TK_ECORRUPT. */
int state_open(const char *dir, bool nosync, state **out);

/* False when the state was written by a tokend with another record layout:
 * the engine then sets it aside and rebuilds it from the log. */
bool state_format_ok(const state *s);

/* Switches per-commit syncing: nosync false makes every later commit
 * sync LMDB (used when the marker that nosync needs cannot be written).
 * 0 or TK_EIO. */
int state_set_nosync(state *s, bool nosync);

/* Flushes every committed transaction to disk (mdb_env_sync, forced).
 * 0 or TK_EIO (errno says why). */
int state_sync(state *s);
void state_close(state *s); /* s may be NULL; no transaction may be open */

/* Begins a transaction. Only one write transaction at a time. Read
 * transactions may be used from any thread (MDB_NOTLS). */
int state_begin(state *s, bool write, state_txn **out);
/* Begins a write transaction nested in parent, which it sees and which
 * waits for it: its state_commit hands its changes to parent (no I/O),
 * its state_abort drops only them. Same thread as parent. */
int state_begin_in(state_txn *parent, state_txn **out);
int state_commit(state_txn *t);  /* 0 or TK_EIO (errno says why); frees t either way */
void state_abort(state_txn *t);  /* frees t */

/* The sequence number of the last event applied (0 for a new state). */
uint64_t state_applied_seq(state_txn *t);

/* The log's chain hash at the applied seq, kept with it so that the open can
 * tell a log that is not the one the state followed (edited and chained
 * again, or another log): set before state_commit, with the seq's last
 * apply; false for a state written before tokend kept it. */
void state_set_chain(state_txn *t, const uint8_t hash[TK_HASH_LEN]);
bool state_chain(state_txn *t, uint8_t out[TK_HASH_LEN]);

/* Applies event e, which has log sequence number seq, and records seq as
 * applied. Emits what the view must learn (emit may be NULL).
 * 0; TK_ECORRUPT when the event does not fit the state (a log that does
 * not belong to this state); TK_EIO on an LMDB failure. */
int state_apply(state_txn *t, uint64_t seq, const ev *e, st_emit_fn emit, void *arg);

/* Emits the whole state as changes, for building the view at open: with
 * ST_LOAD_NO_CREDS in flags, all but the credentials (which then come
 * from a view image, store/vimage.h). The order is the same either way. */
#define ST_LOAD_NO_CREDS 1u
int state_load(state_txn *t, unsigned flags, st_emit_fn emit, void *arg);

/* Lookups by name or id. 0 or TK_ENOTFOUND (or TK_ECORRUPT/TK_EIO). */
int state_tenant_by_slug(state_txn *t, const char *slug, size_t n, st_tenant *out);
int state_tenant_by_id(state_txn *t, uint32_t id, st_tenant *out);
int state_perm_by_key(state_txn *t, uint32_t tenant, const char *key, size_t n, st_perm *out);
int state_perm_by_num(state_txn *t, uint32_t tenant, uint32_t num, st_perm *out);
int state_role_by_key(state_txn *t, uint32_t tenant, const char *key, size_t n, st_role *out);
int state_role_by_id(state_txn *t, uint32_t id, st_role *out);
int state_account_by_slug(state_txn *t, uint32_t tenant, const char *slug, size_t n,
                          st_account *out);
int state_account_by_id(state_txn *t, uint32_t id, st_account *out);
int state_user_by_slug(state_txn *t, uint32_t account, const char *slug, size_t n, st_user *out);
int state_user_by_id(state_txn *t, uint32_t id, st_user *out);
int state_cred_by_id(state_txn *t, const tk_id *id, st_cred *out);

/* Calls fn for each tenant API token of account, oldest first (by ord:
 * event order, so tokens created in the same millisecond keep theirs),
 * starting with the first whose ord is above `after` (0: from the start;
 * no token need have ord `after` now); stops when fn returns non-zero
 * (that value is returned) or after limit calls. */
int state_account_tokens(state_txn *t, uint32_t account, uint64_t after, uint32_t limit,
                         int (*fn)(void *arg, const st_cred *c), void *arg);

/* The same for the personal keys of user (by ord: creation order). */
int state_user_keys(state_txn *t, uint32_t user, uint64_t after, uint32_t limit,
                    int (*fn)(void *arg, const st_cred *c), void *arg);

/* Listings by name (bytewise order), after the name `after` (NULL: from
 * the first; it need not exist), at most limit, each record a copy for the
 * call; a non-zero return of fn stops the walk and is returned. TK_EINVAL
 * for an `after` longer than any name. */
int state_tenants(state_txn *t, const tk_str *after, uint32_t limit,
                  int (*fn)(void *arg, const st_tenant *r), void *arg);
int state_perms(state_txn *t, uint32_t tenant, const tk_str *after, uint32_t limit,
                int (*fn)(void *arg, const st_perm *r), void *arg);
int state_roles(state_txn *t, uint32_t tenant, const tk_str *after, uint32_t limit,
                int (*fn)(void *arg, const st_role *r), void *arg);
int state_accounts(state_txn *t, uint32_t tenant, const tk_str *after, uint32_t limit,
                   int (*fn)(void *arg, const st_account *r), void *arg);
int state_users(state_txn *t, uint32_t account, const tk_str *after, uint32_t limit,
                int (*fn)(void *arg, const st_user *r), void *arg);

/* Callbacks for state_visit; each may be NULL (that kind is skipped). */
typedef struct st_visitor {
    int (*tenant)(void *arg, const st_tenant *r);
    int (*perm)(void *arg, const st_perm *r);
    int (*role)(void *arg, const st_role *r);
    int (*account)(void *arg, const st_account *r);
    int (*user)(void *arg, const st_user *r);
    int (*cred)(void *arg, const st_cred *r); /* tokens and personal keys */
    void *arg;
} st_visitor;

/* Calls v's callbacks for every record of the state: all tenants, then
 * permissions, roles, accounts, users, credentials; each kind in key order
 * (ids ascending; permissions by tenant, then number; credentials by the
 * bytes of their ID). Records are copies, valid for the call. A non-zero
 * return stops the walk and is returned. 0, TK_ECORRUPT, TK_EIO. */
int state_visit(state_txn *t, const st_visitor *v);

/* Number of credentials (tokens and personal keys) stored. */
size_t state_cred_count(state_txn *t);

/* Doubles the map size. Only while no transaction of this process is open
 * (used after a write failed with TK_ELIMIT: map full). */
int state_grow(state *s);

/* Writes a compacted copy of the environment (mdb_env_copyfd2 with
 * MDB_CP_COMPACT: a data.mdb that LMDB opens as it is) to fd from its
 * current offset, and says which applied seq and chain hash the copy
 * holds: the copy runs in a read transaction of its own, between two reads
 * of the newest seq; every commit that changes the state moves the seq, so
 * when the two agree the copy holds exactly that seq (when they differ, a
 * commit ran during the copy: TK_EBUSY, try again). has_chain false: a
 * state that never kept its chain hash. Any thread; writes may go on
 * meanwhile. 0, TK_EBUSY, TK_EIO (errno), TK_ECORRUPT. */
int state_copy(state *s, int fd, uint64_t *seq, uint8_t chain[TK_HASH_LEN], bool *has_chain);

/* Bytes of map in use and the map size, for metrics and tests. */
void state_usage(state *s, uint64_t *used, uint64_t *mapsize);

#endif
