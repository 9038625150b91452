/*
 * engine.h - the facade over core and store that the server and the tools
 * drive: open a data directory, run management operations durably, list,
 * and verify.
 *
 * Data directory layout:
 *     DIR/operator.key   the operator key (created at first open, mode 0600)
 *     DIR/log/           the event log (elog.h): the source of truth
 *     DIR/state/         LMDB (state.h): the log applied
 *
 * Write path, one order always (eng_exec): validate each request against
 * the state as it stands (earlier requests of the same batch included) ->
 * apply its events to an open LMDB write transaction -> append them to the
 * log -> one fsync for the whole batch (group commit) -> commit LMDB (the
 * applied sequence number in the same transaction) -> update the in-memory
 * view -> return. A result is final only when eng_exec returns 0: the
 * events are durable and a verification already sees them (rule 5). When
 * the log's write or fsync fails, nothing of the batch is acknowledged, the
 * LMDB transaction is dropped, and the engine refuses every later write
 * (TK_EFENCED) until it is reopened.
 *
 * Open: LMDB is brought up to the log (records after its applied sequence
 * are replayed through the same apply), then the view is built from LMDB.
 *
 * Threads: eng_exec is eng_commit (LMDB, and the log written), eng_sync
 * (the log's fdatasync) and eng_publish (the in-memory view). A server
 * runs eng_commit and eng_token_list on one writer thread, eng_sync on a
 * second, and eng_publish, eng_verify and eng_authenticate on its
 * event-loop thread: the view is only ever touched by that thread, so
 * verification takes no lock, never blocks and never allocates.
 */
#ifndef TK_ENGINE_H
#define TK_ENGINE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/hist.h"
#include "core/model.h"
#include "core/view.h"
#include "core/secret.h"

typedef struct eng eng;

typedef struct eng_opts {
    uint64_t segment_bytes; /* log segment size; 0 = default */
    uint64_t reserve_bytes; /* space kept back for revocations; 0 = ENG_RESERVE_DEFAULT */
    const char *sign_key;   /* an Ed25519 key file outside the data directory (made with its
                               .pub when missing): signed heads (store/head.h); NULL: none */
    bool full_log_check;    /* every link of the log's chain before the open returns
                               (ELOG_CHECK_FULL); else the rest after it, in the background */
    /* A line for the operator's log, from any thread (the background check's
     * outcome); msg borrowed for the call. NULL: none. */
    void (*notice)(void *arg, const char *msg);
    void *notice_arg;
    bool no_view_image;     /* no view image (store/vimage.h): the view is always built from
                               LMDB at open and none is saved at close (any there is removed) */
} eng_opts;

/* Where an open's time went, in seconds (tokend logs it). The check of the
 * log's sealed segments runs on its own thread from log_tail_s on, beside
 * state_s and load_s; log_wait_s is what the open then still waited for
 * it. */
typedef struct eng_open_times {
    double log_tail_s;  /* the last segment's check (the tail), the others' check started */
    double state_s;     /* LMDB opened and caught up with the log */
    double load_s;      /* the view built from LMDB */
    double log_wait_s;  /* then the wait for the sealed segments' check */
    double total_s;
    size_t creds;       /* credentials loaded */
    /* The view image (state/view.img): image is true when the credentials
     * came from it (image_s of load_s); image_rc is vimg_load's answer (0,
     * TK_ENOTFOUND: none or stale, TK_ECORRUPT / TK_EIO: refused, the
     * view built from LMDB), TK_ENOTFOUND when it was not tried. */
    bool image;
    double image_s;
    int image_rc;
} eng_open_times;

/* The storage reserve: DIR/reserve holds this much disk space back, so that
 * revocations commit when the disk is full (DESIGN rule 12; eng_exec). */
#define ENG_RESERVE_DEFAULT (16ull << 20)

/* Opens (creating) the data directory. opts may be NULL. 0, or TK_EIO /
 * TK_ECORRUPT / TK_EINVAL saying why (a file, a step, what to do). Damage
 * that only the background check of the log's chain finds (elog.h,
 * "check") fences the store when found: writes are refused, saying why,
 * until a restart; verification goes on, as after any storage failure.
 * With a signing key, a log shorter than its latest signed head, or whose chain
 * hash at the head's seq differs, is TK_ECORRUPT (tampered); while writes
 * come a head is signed at most once a second, and at eng_close. */
int eng_open(const char *dir, const eng_opts *opts, eng **out, tk_why *why);

/* The check of every link of the log's chain (elog.h, "check"): 0 while
 * the background check after the open runs, 1 once every link passed (at
 * the open, or after it), -1 when one did not or a segment could not be
 * read (damage fences the store). */
int eng_log_checked(const eng *e);

/* How long the open of e took, step by step. */
const eng_open_times *eng_open_stats(const eng *e);
/* Closes e (may be NULL). After a clean run (not fenced, LMDB flushed
 * and at the log's last record, every batch published) it saves the
 * view's credentials to state/view.img for the next open, unless
 * opts->no_view_image; a failure to save only costs that open its speed. */
void eng_close(eng *e);


/* ---- management ------------------------------------------------------- */

typedef enum eng_op {
    ENG_TENANT_CREATE = 1, /* operator: tenant */
    ENG_TENANT_SET,        /* operator: tenant; flag (api_tokens, -1 = unchanged) and/or
                              limits (those in limits_set) */
    ENG_PERM_PUT,          /* operator: tenant, key, desc */
    ENG_ROLE_PUT,          /* operator: tenant, key, name, level, items = permission keys */
    ENG_ROLE_DELETE,       /* operator: tenant, key */
    ENG_ACCOUNT_CREATE,    /* operator: tenant, account */
    ENG_USER_CREATE,       /* operator: tenant, account, user, items = role keys, flag (portal);
                              returns the user's first personal key */
    ENG_USER_SET,          /* operator: tenant, account, user; has_items -> roles, flag >= 0 -> portal */
    ENG_KEY_CREATE,        /* operator: tenant, account, user, expires; returns a personal key */
    ENG_KEY_DELETE,        /* operator: id */
    ENG_TOKEN_CREATE,      /* user: desc, items = role keys, expires; returns the token */
    ENG_TOKEN_DELETE,      /* user (own account) or operator: id */
    ENG_TOKEN_SET,         /* user (own account) or operator: id, desc (nothing else of a
                              token changes) */
    ENG_USER_DELETE,       /* operator: tenant, account, user: its personal keys end, its
                              tokens stay (they belong to the account) */
    ENG_ACCOUNT_DELETE,    /* operator: tenant, account: its tokens, users and keys end */
    ENG_PERM_DELETE,       /* operator: tenant, key: drops out of every role */
    ENG_TENANT_DELETE,     /* operator: tenant: everything of it ends */
    ENG_KEYRING_ADD,       /* operator: name, flag (1: a gateway key); returns the key
                              (res.secret), shown once */
    ENG_KEYRING_REMOVE,    /* operator: name: it acts no more */
    ENG_OP_MAX = ENG_KEYRING_REMOVE
} eng_op;

/* One request. Strings are borrowed for the call. A user actor's own
 * tenant and account always apply; the tenant/account fields are then
 * ignored (rule 7). */
typedef struct eng_req {
    eng_op op;
    tk_actor actor;
    tk_str tenant, account, user, key, name, desc;
    int flag;          /* 0 or 1; for ENG_USER_SET and ENG_TENANT_SET, -1 = unchanged */
    unsigned limits_set; /* ENG_TENANT_SET: which of limits to set (ENG_LIM_* bits) */
    tk_limits limits;
    bool has_items;    /* ENG_USER_SET: replace the roles */
    uint32_t level;
    uint32_t nitems;
    tk_str items[TK_MAX_ROLE_PERMS];
    int64_t expires;   /* unix seconds, 0 = never */
    tk_id id;          /* deletes */
    /* Where it came from, for the event's audit record ("by"): the
     * client's address and port and the listener ("binary", "http"); empty
     * for an in-process caller. */
    tk_str peer, listener;
} eng_req;

/* A refusal's reason: one line, at most this many bytes with its NUL. */
#define ENG_MSG_MAX 160

/* ENG_TENANT_SET's limits_set bits, one per tk_limits field. */
enum {
    ENG_LIM_TOKENS = 1u << 0,
    ENG_LIM_ROLES = 1u << 1,
    ENG_LIM_KEYS = 1u << 2,
    ENG_LIM_RATE = 1u << 3,
    ENG_LIM_BURST = 1u << 4,
};

typedef struct eng_res {
    int status;                        /* 0 or a TK_E* code */
    uint32_t retry_after_ms;           /* TK_ERATE: when to try again */
    tk_id id;                          /* created credential's ID */
    char secret[TK_SECRET_LEN + 1];    /* created secret: the only copy there will ever be */
    char msg[ENG_MSG_MAX];             /* a refusal's reason, one line ("" when the code says
                                          enough: then use tk_strerror(status)) */
    uint64_t seq;                      /* done: the log seq of its last event (0: none) */
    bool revokes;                      /* done: it may take access away (a delete, API tokens
                                          off, a role or user losing permissions): the
                                          revocation barrier holds its answer (net/barrier.h) */
} eng_res;

/* Executes n requests as one durable batch (see the top of this file).
 * Returns 0 when the batch was committed: res[i].status says how each
 * request fared (a refused request changes nothing). Returns TK_EFENCED or
 * TK_EIO when the store failed before the log's fsync: nothing was applied,
 * every res[i].status is that code and res[i].msg says why.
 *
 * The commit point is the log's fsync. A failure after it (the unsynced
 * marker, the LMDB commit, an LMDB flush) does not undo the batch: the
 * next open applies it from the log, so eng_exec still returns 0 with each
 * request's own status, and the view learns the batch. The engine then
 * sets the LMDB state aside (state.failed-<time>: the next open rebuilds it
 * from the log), refuses every later write (TK_EFENCED, with the reason in
 * res[i].msg) and every listing (TK_EFENCED) until it is reopened;
 * verification goes on. eng_fenced says so. */
int eng_exec(eng *e, const eng_req *reqs, eng_res *res, size_t n);

/* True once writes are refused; *why (may be NULL) gets the reason, one
 * line, borrowed from e. */
bool eng_fenced(const eng *e, const char **why);

/* True when the last batch that reached the log found the store full
 * (only revocations went through); false again once growth commits. Any
 * thread. */
bool eng_full(const eng *e);

/* The log's fdatasync durations (eng_sync's), in nanoseconds: written by
 * the syncing thread, readable from any (core/hist.h). */
const hist *eng_sync_hist(const eng *e);

/* The three steps of eng_exec, for a server that pipelines them on three
 * threads (net/writer.c): while one batch waits for the disk, the next is
 * planned. eng_commit (the writer thread: it alone, and listings, use
 * LMDB) plans the batch and writes its records to the log (not yet
 * durable); its results are not answers yet. eng_apply (the same thread,
 * before its next eng_commit or listing; eng_commit takes the batch into
 * the carried transaction if the caller did not) commits that batch, and
 * those eng_apply_some carried, to LMDB: the writer does it while the log's
 * fdatasync runs, or after the answers went out. *batch gets the
 * batch's number (1, 2, ...), or 0 when it wrote nothing to the log. eng_sync
 * (any one thread, concurrently with eng_commit) makes every batch
 * eng_commit wrote before the call durable, and sets *durable to the
 * highest number durable: each batch numbered above it, and written before
 * the call, failed and never will be (its requests failed: eng_sync then
 * returns TK_EIO or TK_EFENCED, the engine is fenced, and LMDB, which went
 * ahead, is set aside for a rebuild at the next open).
 * eng_publish (the loop thread) lets verification see every batch made
 * durable; a reply waits for it (rule 5). A batch eng_commit refused as a
 * whole (its return is not 0), or that logged nothing, needs no sync. The
 * LMDB checkpoint runs inside eng_commit, and flushes the log first. */
int eng_commit(eng *e, const eng_req *reqs, eng_res *res, size_t n, uint64_t *batch);
void eng_apply(eng *e);
/* eng_apply for the pipeline: LMDB takes the batch into a write
 * transaction carried over small batches (at most 4 requests each), up
 * to 16 batches or 5 ms, whose one commit writes the pages of them all
 * (each later one is a transaction nested in it, so a batch refused or
 * staged again drops only its own changes); a larger batch commits what
 * is carried before it is staged, and is committed on its own. The
 * engine's reads (eng_query_run, eng_read, ...) commit it first, so they
 * see every batch written; a caller that goes idle with eng_carrying true
 * calls eng_apply soon (the server's writer thread: after 1 ms), so that
 * LMDB on disk is not left behind the log. A crash loses nothing: the
 * open replays the log past LMDB's applied seq. */
void eng_apply_some(eng *e);
bool eng_carrying(const eng *e);
/* LMDB commits of batches since the open (any thread), and their
 * histograms: durations in ns, or (batches) the batches each covered. */
uint64_t eng_lmdb_commits(const eng *e);
const hist *eng_lmdb_commit_hist(const eng *e, bool batches);
int eng_sync(eng *e, uint64_t *durable);
void eng_publish(eng *e);

/* ---- a replica (net/follower.h) ---------------------------------------- */

/* One record of the primary's log, as a replica receives it: borrowed for
 * the call. */
typedef struct eng_rec {
    uint64_t seq;
    const uint8_t *hash;  /* its chain hash in the primary's log (TK_HASH_LEN bytes) */
    const void *payload;  /* the event, as the primary logged it */
    size_t len;
} eng_rec;

/* A replica's eng_commit (writer thread, in the same pipeline: eng_apply,
 * eng_sync and eng_publish follow as for any batch): appends the primary's
 * records, in order, to this log, where they get the primary's seqs and
 * chain hashes, and applies them to LMDB (and, once durable, to the view).
 * A record at or below this log's last seq is a redelivery, skipped. The
 * first record taken must be the log's next seq, and each record's chain
 * hash here must equal the primary's: else TK_ECORRUPT (a gap, a broken
 * chain), as for an event that does not decode or apply; nothing of the
 * call is applied then, and why says which record and how. 0 (*batch as
 * eng_commit's, *last the last seq taken), TK_ECORRUPT, TK_ENOSPC (the
 * log found no room: nothing written, try later), TK_EIO or TK_EFENCED. */
int eng_follow(eng *e, const eng_rec *recs, size_t n, uint64_t *batch, uint64_t *last,
               tk_why *why);

/* The tap: fn gets every record the log makes durable, in seq order, on
 * the loop thread inside eng_publish, just after the view learnt its
 * batch (so never a record that could still fail). r and what it points
 * to are borrowed for the call. For a publisher (net/publisher.h); set it
 * before the first eng_commit (NULL: none, and no copy is kept). */
typedef void (*eng_tap_fn)(void *arg, const eng_rec *r);
void eng_set_tap(eng *e, eng_tap_fn fn, void *arg);

/* Reads e's own log (any thread; a publisher catching up): an iterator
 * from from_seq (store/elog.h's elog_iter_*: it ends at the last whole
 * record, so the caller stops at eng_last_seq), and the chain hash of
 * record seq. 0, or elog's codes with why. */
typedef struct elog_iter elog_iter;
int eng_log_iter(const eng *e, uint64_t from_seq, elog_iter **out, tk_why *why);
int eng_log_hash(const eng *e, uint64_t seq, uint8_t out[TK_HASH_LEN], tk_why *why);

/* A replica's log (before serving): a batch counts as durable for the
 * pipeline once written, and the log is flushed for real at most once a
 * second, at every checkpoint and snapshot, and at close. A replica's
 * records are durable on its primary and in the stream already, and its
 * own fdatasync (hundreds of milliseconds at its tail on a busy disk)
 * would only delay them: a crash that loses its tail loses records it
 * fetches again. LMDB never gets ahead of the log on disk (a checkpoint
 * flushes the log first, and a machine crash sets LMDB aside, as always);
 * a failed flush sets LMDB aside too (it holds batches the log lost). Not
 * for a log that starts after a base (a bootstrapped replica: its LMDB is
 * synced at every commit, since the log cannot rebuild it): there it does
 * nothing. */
void eng_set_lazy_sync(eng *e, bool lazy);

/* Makes e a replica's engine (before serving): every eng_commit refuses
 * its requests with TK_EREADONLY and msg (one line naming the primary;
 * copied; NULL: writable again). Any thread. */
void eng_set_readonly(eng *e, const char *msg);

/* While false, every verification answers TK_V_UNAVAILABLE (a replica
 * that lost its primary past its lease fails closed). True at open. Any
 * thread; the loop reads it on every verification. */
void eng_set_available(eng *e, bool available);
bool eng_available(const eng *e);

/* Resets r to an empty request for op by actor. */
void eng_req_init(eng_req *r, eng_op op, const tk_actor *actor);

/* ---- authentication and verification --------------------------------- */

/* Authenticates a management credential: an operator key of the keyring
 * (DIR/operator.key's, or one added with KEYRING_ADD) gives a
 * TK_ACTOR_OPERATOR whose key is that key's id (zeros for the bootstrap
 * key), a personal API key a TK_ACTOR_USER. A tenant API token
 * is refused (rule 8). 0 or TK_EUNAUTH. now is unix seconds. */
int eng_authenticate(const eng *e, const char *cred, size_t len, int64_t now, tk_actor *out);

/* True when key is a gateway key of the keyring (a "tkg_" key added with
 * KEYRING_ADD gateway). DIR/gateway.key is the server's own check. */
bool eng_gateway_key(const eng *e, const char *key, size_t len);

/* The same from the key's SHA-256, for a caller that has it already (the
 * HTTP verify path hashes a presented key once). */
bool eng_gateway_hash(const eng *e, const uint8_t hash[TK_HASH_LEN]);

/* Changes whenever a key leaves the keyring: a connection that
 * authenticated with an operator or gateway key checks it again when it
 * moved (the key may be gone). */
uint64_t eng_keyring_gen(const eng *e);

/* Verifies a tenant API token (view_verify): client_id may be NULL. */
tk_verdict eng_verify(const eng *e, const tk_id *client_id, const char *secret, size_t len,
                      int64_t now, tk_verify *out);

/* The same, batched for pipelined requests (view_verify_start and
 * view_verify_finish): start n <= VIEW_BATCH, then finish each in turn,
 * with no eng_publish in between. */
void eng_verify_start(const eng *e, const view_vreq *reqs, size_t n, view_probe *probes);
tk_verdict eng_verify_finish(const eng *e, const view_probe *p, int64_t now, tk_verify *out);
/* Starts the lookups of verifications about to come one by one
 * (view_verify_prefetch): a hint, n <= VIEW_BATCH. */
void eng_verify_prefetch(const eng *e, const view_vreq *reqs, size_t n);

/* ---- listing --------------------------------------------------------- */

/* A listing cursor's length: an opaque position (base64url), see
 * eng_token_list. */
#define ENG_CURSOR_LEN 11

/* What a listing shows of a token: metadata only, never a secret or its
 * hash (rule 9). */
typedef struct eng_token_info {
    tk_id client_id;
    char description[TK_DESC_MAX + 1];
    uint32_t nroles;
    char roles[TK_MAX_ROLES][TK_KEY_MAX + 1]; /* deleted roles left out */
    char created_by[TK_SLUG_MAX + 1];         /* the creating user's slug */
    int64_t created_ms;
    int64_t expires;
    char cursor[ENG_CURSOR_LEN + 1]; /* the position after this token: `after` for the rest */
} eng_token_info;

/* Lists the tokens of an account, oldest first, after the position `after`
 * (a cursor from an earlier listing's eng_token_info; NULL: from the
 * start), at most limit. A cursor is a position, never looked up: it
 * resumes correctly when its token was deleted meanwhile, and tells
 * nothing of other IDs (any text that is not a cursor is TK_EINVAL,
 * whatever ID it names). A user lists its own account (portal needed,
 * rule 2; its key must still stand, rule 11); the operator names tenant and
 * account. fn gets each token (borrowed for the call); a non-zero return
 * stops and is returned. 0, TK_EINVAL, TK_EDENIED, TK_ENOTFOUND,
 * TK_EUNAUTH, TK_EIO, TK_EFENCED (the state is stale after a failure:
 * see eng_commit). */
int eng_token_list(eng *e, const tk_actor *a, tk_str tenant, tk_str account, const tk_str *after,
                   uint32_t limit, int (*fn)(void *arg, const eng_token_info *t), void *arg);

/* True when text has the form of a listing cursor (for a decoder that
 * refuses a malformed one before it reaches the engine). */
bool eng_cursor_ok(const char *text, size_t n);

/* ---- reading everything else (store/query.c) ---------------------------- */

/* What a read is about. */
typedef enum eng_kind {
    ENG_TENANTS = 1, /* the operator: every tenant */
    ENG_PERMS,       /* a tenant's permissions */
    ENG_ROLES,       /* a tenant's roles */
    ENG_ACCOUNTS,    /* the operator: a tenant's accounts */
    ENG_USERS,       /* an account's users */
    ENG_KEYS,        /* a user's personal keys */
    ENG_TOKENS,      /* an account's tokens */
    ENG_KEYRING,     /* the operator: the server's named keys (never the keys) */
    ENG_KIND_MAX = ENG_KEYRING
} eng_kind;

/* A listing or a get. The operator names the scope (tenant; account for
 * USERS, KEYS, TOKENS; user for KEYS); a user's own applies and these are
 * ignored (rule 7). A user may read, with the portal flag (rule 2), its
 * tenant's permissions and roles, its account's users and tokens; and its
 * own personal keys, with or without it; never tenants or accounts (but
 * its own tenant with ENG_TENANTS as a get). */
typedef struct eng_query {
    eng_kind kind;
    tk_actor actor;
    tk_str tenant, account, user;
    bool has_after;
    tk_str after;    /* a listing: the `cursor` of the last row of the page before */
    uint32_t limit;  /* a listing: at most this many rows */
    tk_str search;   /* ENG_TOKENS: only those whose description, client ID or
                        creator holds this (ASCII case-insensitive); empty: all */
    bool get;        /* one row instead: the one the query names (tenant for
                        ENG_TENANTS, user for ENG_USERS, id for ENG_TOKENS) */
    tk_id id;
} eng_query;

#define ENG_ROW_CURSOR_MAX (TK_KEY_MAX + 1) /* a cursor of any listing fits */

/* One row, borrowed for the callback. Metadata only: never a secret or a
 * hash (rule 9). */
typedef struct eng_row {
    eng_kind kind;
    char cursor[ENG_ROW_CURSOR_MAX + 1]; /* the position after this row */
    union {
        struct {
            char slug[TK_SLUG_MAX + 1];
            bool api_tokens;
            tk_limits limits;
            uint32_t roles, permissions; /* how many */
        } tenant;
        struct {
            char key[TK_KEY_MAX + 1];
            char description[TK_DESC_MAX + 1];
        } perm;
        struct {
            char key[TK_KEY_MAX + 1];
            char name[TK_NAME_MAX + 1];
            uint32_t level;
            uint32_t nperms;
            const char *perms[TK_MAX_ROLE_PERMS]; /* their keys */
        } role;
        struct {
            char slug[TK_SLUG_MAX + 1];
            uint32_t tokens; /* live */
        } account;
        struct {
            char slug[TK_SLUG_MAX + 1];
            bool portal;
            uint32_t nroles;
            const char *roles[TK_MAX_ROLES]; /* their keys (deleted ones left out) */
            uint32_t keys; /* live personal keys */
        } user;
        struct {
            tk_id id;
            int64_t created_ms;
            int64_t expires; /* 0 = never */
        } key;
        eng_token_info token;
        struct {
            char name[TK_SLUG_MAX + 1];
            bool gateway;
            int64_t created_ms; /* 0: the bootstrap key (DIR/operator.key) */
        } ring;
    } u;
} eng_row;

/* Runs q: each row to fn (the row and the strings it points to are
 * borrowed for that call only; a non-zero return stops and is returned), oldest
 * first for keys and tokens, by name for the rest. A get calls fn once.
 * 0; TK_EINVAL (a malformed field or cursor), TK_ENOTFOUND (the scope, or
 * the row of a get, is not there or not the caller's: one answer for both),
 * TK_EDENIED, TK_EUNAUTH, TK_EIO, TK_EFENCED (see eng_token_list); msg
 * (ENG_MSG_MAX bytes, may be NULL) says why. Runs on the writer thread (an
 * LMDB read transaction), like eng_token_list. */
int eng_query_run(eng *e, const eng_query *q, int (*fn)(void *arg, const eng_row *row), void *arg,
                  char *msg);

/* Number of credentials in the verify index, and its memory. */
size_t eng_cred_count(const eng *e);
size_t eng_index_bytes(const eng *e);

/* Sequence number of the last durable event. */
uint64_t eng_last_seq(const eng *e);

/* The log's head: the last durable seq and its chain hash (for the start
 * and stop log lines). */
void eng_head(const eng *e, uint64_t *seq, uint8_t hash[TK_HASH_LEN]);

/* ---- portal sessions ---------------------------------------------------- */

typedef struct ses_table ses_table; /* core/session.h */

/* Portal sessions (core/session.h): a request or a read of an actor with a
 * session commits only while that session is live, and a session whose
 * user no longer stands (deleted, portal flag gone) is ended there (rule
 * 11). Call before serving; t is borrowed for e's life (NULL: none). */
void eng_set_sessions(eng *e, ses_table *t);

/* The user actor (without a session yet) that a portal session for
 * tenant/account/user acts as. 0; TK_EINVAL, TK_ENOTFOUND, TK_EDENIED (no
 * portal flag), TK_EFENCED, TK_EIO; msg (ENG_MSG_MAX bytes) says why.
 * Runs on the writer thread (an LMDB read transaction), like
 * eng_query_run. */
int eng_portal_user(eng *e, tk_str tenant, tk_str account, tk_str user, tk_actor *out,
                    char *msg);

/* The slugs a user actor acts as. */
typedef struct eng_names {
    char tenant[TK_SLUG_MAX + 1], account[TK_SLUG_MAX + 1], user[TK_SLUG_MAX + 1];
} eng_names;

/* The slugs of user actor a while its credential (personal key or portal
 * session) stands (rule 11). 0, TK_EUNAUTH, TK_EFENCED, TK_EIO; msg
 * (ENG_MSG_MAX bytes) says why. Writer thread, like eng_query_run. */
int eng_actor_names(eng *e, const tk_actor *a, eng_names *out, char *msg);

/* ---- snapshots (store/snap.h) ------------------------------------------ */

/* Writes a snapshot of e's state to path (store/snap.h: the file appears
 * whole or not at all): a compacted LMDB copy with the applied seq S and
 * the log's chain hash H at S, which go to *seq and hash. The snapshot never
 * holds a batch that is not durable in the log: S is the copy's own, and
 * when it is past the log's durable seq (eng_apply committed a batch whose
 * eng_sync has not finished) the log is flushed here first, as a
 * checkpoint does; if the flush fails, nothing is written (its TK_EIO, the
 * engine fenced). Runs on the writer thread (it applies the writer's last
 * batch first, like eng_commit), like eng_query_run; a server's sync thread
 * may run meanwhile. 0; TK_EFENCED (a fenced or stale engine), TK_EBUSY
 * (the state changed during the copy: try again), TK_EIO, TK_ECORRUPT (the
 * state's chain hash is not the log's). */
int eng_snapshot(eng *e, const char *path, uint64_t *seq, uint8_t hash[TK_HASH_LEN],
                 tk_why *why);

/* Makes a data directory dir from the snapshot at snapshot_path: dir must
 * be missing or empty (else TK_EEXIST: a log, a state, or anything else is
 * there). The snapshot is checked whole (TK_ECORRUPT: damaged), its LMDB
 * data installed as state/data.mdb and checked to hold S and H, and
 * log/base written (elog.h): eng_open then opens dir as the source engine
 * was at S, and new events continue at S+1 linking to H. Built in
 * dir.bootstrap and renamed to dir, so a kill at any step leaves no dir
 * (or the empty one there was) and a later call starts over; on failure
 * nothing is left. DIR/operator.key is per server: eng_open makes one. 0,
 * TK_EEXIST, TK_ECORRUPT, TK_EINVAL (another snapshot or state version),
 * TK_EIO. */
int eng_bootstrap(const char *dir, const char *snapshot_path, tk_why *why);

/* 0 when dir may be bootstrapped (it is missing or empty), else TK_EEXIST
 * (it holds a log, a state or anything else: why says what) or TK_EIO: the
 * check eng_bootstrap begins with, for a caller that must know before it
 * fetches a snapshot. */
int eng_bootstrap_target(const char *dir, tk_why *why);

/* ---- reading the whole state (tools) ---------------------------------- */

typedef struct state_txn state_txn; /* store/state.h */

/* Runs fn in one read transaction of the LMDB state, for tools that walk
 * the whole state (tokenreplay compare: state_visit). fn must not write and
 * must keep nothing from t past its return. Returns fn's value, or TK_EIO /
 * TK_ECORRUPT when the transaction cannot begin. */
int eng_read(eng *e, int (*fn)(void *arg, state_txn *t), void *arg);

#endif
