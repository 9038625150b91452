/*
 * engine.c - the facade over core and store; see engine.h.
 *
 * It reads as its three steps. Open (eng_open): the operator key, the log's
 * check, LMDB caught up with the log, the in-memory view loaded (its
 * credentials from the view image a clean close left, store/vimage.c, when
 * it is this state's; eng_close writes it). Commit
 * (eng_commit): each request is planned (store/plan.c: the rules, over
 * records read in the batch's write transaction) into events, which are
 * applied to that transaction and encoded for the log; a request
 * contributes all its events or none; the log's fsync is the commit point,
 * LMDB's commit follows. Publish (eng_publish): the view learns the
 * batch's changes, so verification sees it before any reply goes out.
 * Reads go to store/query.c; the marker and checkpoints to store/ckpt.c;
 * the space kept for revocations to store/reserve.c.
 */
#include "store/engine.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "core/err.h"
#include "core/event.h"
#include "core/keyring.h"
#include "core/mp.h"
#include "core/ratelimit.h"
#include "core/session.h"
#include "core/view.h"
#include "core/xmalloc.h"
#include "core/sha256.h"
#include "store/ckpt.h"
#include "store/elog.h"
#include "store/fio.h"
#include "store/head.h"
#include "store/keyfile.h"
#include "store/plan.h"
#include "store/query.h"
#include "store/recbuf.h"
#include "store/reserve.h"
#include "store/snap.h"
#include "store/state.h"
#include "store/vimage.h"

#define OPERATOR_KEY_LEN KEYFILE_KEY_LEN
#define REPLAY_BATCH 10000

/* The view's changes of one committed batch, kept until its log records
 * are durable (eng_sync) and it is published (eng_publish), or dropped
 * when the flush failed. */
typedef struct pend {
    uint64_t batch;     /* eng_commit's count */
    st_change *changes;
    size_t nchg, chgcap;
    tk_id *dels;
    size_t ndel, delcap;
    recbuf tap;         /* its records, for the tap (eng_set_tap; empty without one) */
    struct pend *next;
} pend;

struct eng {
    char *dir;
    char *logdir;
    elog *log;
    state *st;
    view *v;
    bool fenced;                    /* atomic: eng_sync may fence from its thread */
    bool full;                      /* the last batch that logged found the store full
                                       (writer thread writes, eng_full reads: atomic) */
    hist syncs;                     /* the log's fdatasync durations, ns (eng_sync_hist) */
    /* LMDB lacks a batch the log holds (a step after the log's fsync
     * failed): it was set aside for a rebuild at the next open, and
     * listings, which read LMDB, are refused until then. */
    bool stale;                     /* atomic, as fenced */
    char fence_msg[sizeof(((eng_res *)0)->msg)]; /* why writes are refused */
    void (*notice)(void *arg, const char *msg); /* eng_opts' */
    void *notice_arg;
    int scrub_rc;                   /* atomic: eng_log_checked */
    secret_pool *pool;              /* randomness for new credentials (NULL: none) */
    rl *rate;                       /* token creations per user (the tenant's rate, burst) */
    reserve *rsv;                   /* disk space kept back for revocations */
    ckpt *ck;                       /* LMDB's checkpoints and the crash marker */
    bool log_open;                  /* elog_open_end has succeeded */
    ses_table *sessions;            /* portal sessions (borrowed; may be NULL) */
    head_key *sign;                 /* signed heads (NULL: none) */
    pthread_mutex_t hmu;            /* sign_head: one thread at a time */
    uint64_t signed_seq;            /* the last head signed */
    int64_t signed_ms;
    kr *ring;                       /* the named operator and gateway keys (hashes only) */
    uint8_t boot_hash[TK_HASH_LEN]; /* DIR/operator.key's, until the load decides on it */
    /* Per-batch scratch, kept between calls. */
    mpw evbuf;          /* encoded events, back to back */
    size_t *evoff;      /* evoff[i]: end offset of event i in evbuf */
    size_t nev, evcap;
    st_change *changes; /* what the view learns when the batch commits */
    size_t nchg, chgcap;
    tk_id *dels;        /* ... and the credentials it loses */
    size_t ndel, delcap;
    /* The pipeline (eng_commit, eng_sync, eng_publish on three threads):
     * pmu guards the fence's message, the batches committed and made
     * durable, and the pending change lists (oldest first) with their free
     * list. */
    pthread_mutex_t pmu;
    uint64_t committed;  /* batches eng_commit wrote to the log */
    uint64_t durable;    /* of those, the last an eng_sync made durable */
    bool flush_failed;   /* a log flush failed: every batch after durable is lost */
    pend *phead, *ptail, *pfree;
    eng_open_times times; /* the open's steps (eng_open_stats) */
    bool no_image;       /* eng_opts.no_view_image */
    bool opened;         /* eng_open succeeded: the view is the whole state */
    state_txn *txn;      /* the batch written, for eng_apply */
    uint64_t txn_batch;  /* its number */
    size_t txn_events;   /* its events */
    uint64_t applied;    /* the last batch LMDB took (into carry, or committed) */
    /* LMDB's write transaction, carried over several small batches (the
     * later ones nested in it: txn is, whenever carry is set): one commit's
     * page writes then cover them all. See eng_apply_some. */
    state_txn *carry;
    unsigned carry_n;      /* the batches it holds */
    double carry_since;    /* when it began (mono_s) */
    hist commit_ns;        /* LMDB commits of batches: their durations, ns */
    hist commit_batches;   /* ... and the batches each covered */
    /* A replica (eng_set_readonly, eng_set_available): pmu guards the
     * message; the flags are atomic (the loop reads unavailable on every
     * verification). */
    bool readonly;
    char readonly_msg[ENG_MSG_MAX];
    bool unavailable;
    bool lazy;          /* a replica's log: eng_set_lazy_sync */
    int64_t flushed_ms; /* atomic: the last real flush of a lazy log (monotonic) */
    /* The durable records, for a publisher (eng_set_tap). */
    eng_tap_fn tap_fn;
    void *tap_arg;
    recbuf tap;         /* the batch's, until pend_push hands it to its node */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool is_fenced(const eng *e)
{
    return __atomic_load_n(&e->fenced, __ATOMIC_ACQUIRE);
}

/* ---- portal sessions ------------------------------------------------- */

/* Rule 11 for a session actor, before its request is planned: the session
 * must be live. TK_EUNAUTH (msg, ENG_MSG_MAX bytes), or 0. */
static int session_gone(eng *e, const tk_actor *a, int64_t now_s, char *msg)
{
    if (!a->session || (e->sessions && ses_live(e->sessions, a->session, now_s)))
        return 0;
    snprintf(msg, ENG_MSG_MAX, "the portal session has ended (expired or signed out)");
    return TK_EUNAUTH;
}

/* After a session actor's request: refused for its credential (the user
 * was deleted or lost the portal flag: plan_actor_stands), it ends. */
static void session_check(eng *e, const tk_actor *a, int rc)
{
    if (a->session && rc == TK_EUNAUTH && e->sessions)
        ses_end(e->sessions, a->session);
}

/* ---- the view learns from changes ------------------------------------ */

static void view_learn(void *arg, const st_change *c)
{
    view *v = arg;
    switch (c->type) {
    case EV_KEYRING_ADD:
    case EV_KEYRING_REMOVE:
        break; /* the keyring's (learn) */
    case EV_TENANT_SET:
        view_tenant_put(v, c->id, c->text, c->len, c->flag);
        break;
    case EV_PERM_PUT:
        view_perm_put(v, c->tenant, c->id, c->text, c->len);
        break;
    case EV_ROLE_PUT: {
        uint16_t perms[TK_MAX_ROLE_PERMS];
        for (uint32_t i = 0; i < c->n; i++)
            perms[i] = (uint16_t)c->list[i];
        view_role_put(v, c->id, c->tenant, c->text, c->len, c->level, perms, c->n);
        break;
    }
    case EV_ROLE_DELETE:
        view_role_del(v, c->id);
        break;
    case EV_ACCOUNT_CREATE:
        view_account_put(v, c->id, c->tenant, c->text, c->len);
        break;
    case EV_TOKEN_CREATE:
        view_cred_put(v, (tk_kind)c->kind, &c->cid, c->hash, c->tenant, c->account, c->user,
                      c->list, c->n, c->expires);
        break;
    /* EV_TOKEN_DELETE never comes here: collect() keeps credential
     * deletes apart and eng_publish hands them over as IDs. */
    case EV_PERM_DELETE:
        view_perm_del(v, c->tenant, c->id);
        break;
    case EV_ACCOUNT_DELETE:
        view_account_del(v, c->id);
        break;
    case EV_TENANT_DELETE:
        view_tenant_del(v, c->id);
        break;
    default:
        break;
    }
}

/* What the engine's memory learns of a change: the keyring's own, the
 * view the rest. */
static void learn(view *v, kr *ring, const st_change *c)
{
    if (c->type == EV_KEYRING_ADD)
        (void)kr_put(ring, c->text, c->len, (kr_kind)c->kind, &c->cid, c->hash); /* plan caps it */
    else if (c->type == EV_KEYRING_REMOVE)
        kr_del(ring, c->text, c->len);
    else
        view_learn(v, c);
}

/* The load at open. Credentials come in ID order, which scatters them over
 * the index: each is put LOAD_AHEAD credentials after its slot was
 * prefetched, so the cache misses overlap instead of adding up (as a
 * verify batch's do). Order is kept: any other change first puts the
 * credentials waiting. */
#define LOAD_AHEAD 16

typedef struct load_cred {
    uint8_t kind;
    tk_id cid;
    uint8_t hash[TK_HASH_LEN];
    uint32_t tenant, account, user, n;
    uint32_t roles[TK_MAX_ROLES];
    int64_t expires;
} load_cred;

typedef struct loader {
    view *v;
    kr *keys;
    load_cred ring[LOAD_AHEAD];
    size_t head, n;
} loader;

static void load_put_one(loader *l)
{
    const load_cred *c = &l->ring[l->head];
    view_cred_put(l->v, (tk_kind)c->kind, &c->cid, c->hash, c->tenant, c->account, c->user,
                  c->roles, c->n, c->expires);
    l->head = (l->head + 1) % LOAD_AHEAD;
    l->n--;
}

static void load_flush(loader *l)
{
    while (l->n)
        load_put_one(l);
}

static void load_learn(void *arg, const st_change *c)
{
    loader *l = arg;
    if (c->type != EV_TOKEN_CREATE || c->n > TK_MAX_ROLES) {
        load_flush(l);
        learn(l->v, l->keys, c);
        return;
    }
    if (l->n == LOAD_AHEAD)
        load_put_one(l);
    load_cred *d = &l->ring[(l->head + l->n) % LOAD_AHEAD];
    d->kind = c->kind;
    d->cid = c->cid;
    memcpy(d->hash, c->hash, sizeof d->hash);
    d->tenant = c->tenant;
    d->account = c->account;
    d->user = c->user;
    d->n = c->n;
    memcpy(d->roles, c->list, c->n * sizeof *c->list);
    d->expires = c->expires;
    l->n++;
    view_cred_prefetch(l->v, &c->cid);
}

/* Collects a change for publishing after commit. Credential deletes are
 * kept apart, as bare IDs: an account's or a tenant's deletion may take
 * millions, and a full st_change is a kilobyte. They are published after
 * the other changes, which is the same: an ID is never used again, so no
 * later change of the batch can be about it. */
static void collect(void *arg, const st_change *c)
{
    eng *e = arg;
    if (c->type == EV_TOKEN_DELETE) {
        if (e->ndel == e->delcap) {
            e->delcap = e->delcap ? e->delcap * 2 : 64;
            e->dels = xrealloc(e->dels, e->delcap * sizeof *e->dels);
        }
        e->dels[e->ndel++] = c->cid;
        return;
    }
    if (e->nchg == e->chgcap) {
        e->chgcap = e->chgcap ? e->chgcap * 2 : 16;
        e->changes = xrealloc(e->changes, e->chgcap * sizeof *e->changes);
    }
    e->changes[e->nchg++] = *c;
}

/* ---- setting the state aside (store/ckpt.h has the marker) ------------ */

static int log_join(eng *e, tk_why *w);
static int sync_log(eng *e, uint64_t *durable, bool force);

/* At open: sets LMDB aside when a marker from another boot says the machine
 * went down with unflushed commits. */
static int check_marker(eng *e, const char *state_dir, tk_why *w)
{
    int rc = ckpt_found(e->ck);
    if (rc <= 0)
        return rc;
    if ((rc = log_join(e, w))) /* a damaged log refuses the open before anything moves */
        return rc;
    rc = ckpt_set_aside(e->dir, state_dir, "untrusted",
                        "the machine went down before LMDB was flushed", false, w);
    if (rc == 0 && ckpt_clear(e->ck) != 0)
        rc = tk_say(w, TK_EIO, "cannot remove %s/state.unsynced: %s", e->dir, strerror(errno));
    return rc;
}

/* ---- signed heads (store/head.h) -------------------------------------- */

/* Signs the durable head when the log moved: at most once a second (after
 * an fdatasync, eng_sync), or now (at close). A head that cannot be written
 * fences nothing (the batch is durable and acknowledged): the next batch
 * tries again. */
static void sign_head(eng *e, bool now)
{
    /* eng_sync runs on the sync thread and, for a checkpoint, on the
     * writer: one signs, and the other leaves it (it signs the same head,
     * or the next sync does). At close, wait for it. */
    if (now)
        pthread_mutex_lock(&e->hmu);
    else if (pthread_mutex_trylock(&e->hmu) != 0)
        return;
    int64_t t = now_ms();
    head_rec h = {.time_ms = t};
    elog_durable_head(e->log, &h.seq, h.hash);
    if (h.seq != e->signed_seq && (now || t - e->signed_ms >= 1000)
        && head_write(e->sign, e->logdir, &h, NULL) == 0) {
        e->signed_seq = h.seq;
        e->signed_ms = t;
    }
    pthread_mutex_unlock(&e->hmu);
}

/* With a signing key: the log must hold its latest signed head. */
static int heads_open(eng *e, const char *key, tk_why *w)
{
    uint8_t pub[32], at[TK_HASH_LEN];
    char a[2 * TK_HASH_LEN + 1], b[2 * TK_HASH_LEN + 1];
    head_rec h;
    bool found;
    int rc = head_key_load(key, &e->sign, w);
    if (rc)
        return rc;
    head_key_pub(e->sign, pub);
    if ((rc = head_latest(pub, e->logdir, key, &h, &found, w)))
        return rc;
    uint64_t last = elog_last_seq(e->log);
    e->signed_seq = found ? h.seq : 0;
    if (!found || h.seq == 0)
        return 0;
    sodium_bin2hex(b, sizeof b, h.hash, TK_HASH_LEN);
    if (last < h.seq)
        return tk_say(w, TK_ECORRUPT,
                      "the log is tampered: it ends at event %llu, before its signed head at "
                      "%llu (%.16s...): records were cut; restore the log from a backup",
                      (unsigned long long)last, (unsigned long long)h.seq, b);
    if ((rc = elog_hash_at(e->logdir, h.seq, at, w)))
        return rc == TK_ENOTFOUND ? tk_say(w, TK_ECORRUPT, "the log has no event %llu",
                                           (unsigned long long)h.seq)
                                  : rc;
    if (sodium_memcmp(at, h.hash, TK_HASH_LEN) != 0) {
        sodium_bin2hex(a, sizeof a, at, TK_HASH_LEN);
        return tk_say(w, TK_ECORRUPT,
                      "the log is tampered: at event %llu its chain hash is %.16s..., its "
                      "signed head's %.16s...: a record up to there was changed",
                      (unsigned long long)h.seq, a, b);
    }
    return 0;
}

/* ---- open ------------------------------------------------------------ */

/* Reads DIR/operator.key, creating it (0600, fsynced) at first start, and
 * keeps its hash only. */
static int operator_key(eng *e, tk_why *w)
{
    char key[OPERATOR_KEY_LEN + 1];
    int rc = keyfile_load(e->dir, "operator.key", "tko_", key, w);
    if (rc == 0)
        sha256(e->boot_hash, (const uint8_t *)key, OPERATOR_KEY_LEN);
    sodium_memzero(key, sizeof key);
    return rc;
}

/* The bootstrap key (DIR/operator.key) acts as the operator key called
 * KR_BOOTSTRAP while the keyring has no record of that name: removing it
 * leaves a tombstone, and a key added under the name replaces it. */
static int bootstrap_key(eng *e, state_txn *t)
{
    st_ring r;
    static const tk_id none;
    int rc = state_ring_by_name(t, KR_BOOTSTRAP, strlen(KR_BOOTSTRAP), &r);
    if (rc == TK_ENOTFOUND) {
        kr_put(e->ring, KR_BOOTSTRAP, strlen(KR_BOOTSTRAP), KR_OPERATOR, &none, e->boot_hash);
        rc = 0;
    }
    sodium_memzero(e->boot_hash, sizeof e->boot_hash);
    return rc;
}

/* The log's chain hash at the state's applied seq is the one the state
 * kept (states written before it was kept are taken as they are): else the
 * log is not the history the state followed (edited and chained again, or
 * replaced), and the open stops. */
static int same_history(state_txn *t, uint64_t applied, const uint8_t *log_hash, tk_why *w)
{
    uint8_t kept[TK_HASH_LEN];
    char a[2 * TK_HASH_LEN + 1], b[2 * TK_HASH_LEN + 1];
    if (applied == 0 || !state_chain(t, kept) || sodium_memcmp(kept, log_hash, TK_HASH_LEN) == 0)
        return 0;
    sodium_bin2hex(a, sizeof a, log_hash, TK_HASH_LEN);
    sodium_bin2hex(b, sizeof b, kept, TK_HASH_LEN);
    return tk_say(w, TK_ECORRUPT,
                  "the log's history differs from the one the state followed: at event %llu "
                  "the log's chain hash is %.16s..., the state's %.16s... (the log was edited "
                  "and chained again, or replaced); check it with tokenreplay check, or move "
                  "state/ away to trust this log",
                  (unsigned long long)applied, a, b);
}

/* Brings LMDB up to the log: applies every record after its applied seq
 * (the offline rebuild is store/replay.c's). */
static int catch_up(eng *e, tk_why *w)
{
    state_txn *t = NULL;
    elog_iter *it = NULL;
    uint64_t applied, seq, last = elog_last_seq(e->log);
    const void *p;
    size_t len;
    int rc, more;
    ev x;

again:
    if ((rc = state_begin(e->st, true, &t)))
        goto fail;
    applied = state_applied_seq(t);
    if (applied > last) {
        rc = tk_say(w, TK_ECORRUPT, "LMDB state has applied event %llu but the log ends at "
                    "%llu: the log is missing records; restore it or rebuild the state with "
                    "tokenreplay", (unsigned long long)applied, (unsigned long long)last);
        goto fail;
    }
    if (applied == last) { /* nothing to apply: the applied record is still checked */
        uint8_t at[TK_HASH_LEN];
        rc = applied ? elog_hash_at(e->logdir, applied, at, w) : 0;
        if (rc == TK_ENOTFOUND)
            rc = tk_say(w, TK_ECORRUPT, "the log has no event %llu", (unsigned long long)applied);
        else if (!rc)
            rc = same_history(t, applied, at, w);
        state_abort(t);
        return rc;
    }
    if ((rc = log_join(e, w))) /* nothing is applied from a log that failed its check */
        goto fail;
    /* From the applied record itself, when there is one: its chain hash
     * must be the one the state kept. A state at the log's base (a
     * bootstrapped directory) starts at the base's next record, and the
     * iterator's hash before it is the base's. A state behind the base
     * cannot catch up: the iterator refuses, saying so. */
    bool at_base = applied && applied == elog_base_seq(e->log);
    if ((rc = elog_iter_open(e->logdir, at_base ? applied + 1 : applied ? applied : 1, &it, w)))
        goto fail;
    if (at_base && (rc = same_history(t, applied, elog_iter_hash(it), w)))
        goto fail;
    if (applied && !at_base) {
        if ((more = elog_iter_next(it, &seq, &p, &len, w)) != 1 || seq != applied) {
            rc = more < 0 ? more : tk_say(w, TK_ECORRUPT, "the log has no event %llu",
                                          (unsigned long long)applied);
            goto fail;
        }
        if ((rc = same_history(t, applied, elog_iter_hash(it), w)))
            goto fail;
    }
    size_t in_txn = 0;
    while ((more = elog_iter_next(it, &seq, &p, &len, w)) == 1 && seq <= last) {
        if (ev_decode(p, len, &x) != 0) {
            rc = tk_say(w, TK_ECORRUPT, "event %llu in the log cannot be decoded",
                        (unsigned long long)seq);
            goto fail;
        }
        rc = state_apply(t, seq, &x, NULL, NULL);
        if (rc == TK_ELIMIT) { /* map full: grow, redo from the last commit */
            state_abort(t);
            elog_iter_free(it);
            t = NULL;
            it = NULL;
            if ((rc = state_grow(e->st)))
                goto fail;
            goto again;
        }
        if (rc) {
            tk_say(w, rc, "event %llu (%s) does not apply to the state: %s",
                   (unsigned long long)seq, ev_type_name(x.type), tk_strerror(rc));
            goto fail;
        }
        state_set_chain(t, elog_iter_hash(it));
        if (++in_txn == REPLAY_BATCH) {
            rc = state_commit(t);
            t = NULL;
            if (rc || (rc = state_begin(e->st, true, &t)))
                goto fail;
            in_txn = 0;
        }
    }
    if (more < 0) {
        rc = more;
        goto fail;
    }
    elog_iter_free(it);
    it = NULL;
    if (state_applied_seq(t) != last) {
        rc = tk_say(w, TK_ECORRUPT, "replay stopped at event %llu of %llu",
                    (unsigned long long)state_applied_seq(t), (unsigned long long)last);
        goto fail;
    }
    rc = state_commit(t);
    t = NULL;
    if (rc)
        goto fail;
    return 0;
fail:
    if (!w->msg[0])
        tk_say(w, rc, "replaying the log into LMDB failed: %s", tk_strerror(rc));
    state_abort(t);
    elog_iter_free(it);
    return rc;
}

/* Waits for the log's check (elog_open_end), once. Every step of the open
 * that changes the data directory (setting a state aside, creating a new
 * one, replaying) comes after it, so that a damaged log is refused with
 * the directory as it was ("keep the directory", the message says). */
static int log_join(eng *e, tk_why *w)
{
    if (e->log_open)
        return 0;
    int rc = elog_open_end(e->log, w);
    if (rc)
        return rc;
    e->log_open = true;
    if (!elog_scrub_started(e->log)) { /* every link checked already: nothing runs after */
        int none = 0;
        __atomic_compare_exchange_n(&e->scrub_rc, &none, 1, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE);
    }
    return 0;
}

/* Log sync durations' buckets, ns: 50 us to 1 s. */
static const uint64_t sync_bounds[] = {50000,    100000,    250000,    500000,   1000000,
                                       2500000,  5000000,   10000000,  25000000, 50000000,
                                       100000000, 250000000, 500000000, 1000000000};

static const uint64_t commit_batch_bounds[] = {1, 2, 4, 8, 16};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fence(eng *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A line for the operator: to eng_opts.notice (the server's log, in its
 * format), or, without one (tools, tests), to stderr. Any thread. */
__attribute__((format(printf, 2, 3)))
static void say(const eng *e, const char *fmt, ...)
{
    char msg[sizeof(((tk_why *)0)->msg) + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (e->notice)
        e->notice(e->notice_arg, msg);
    else
        fprintf(stderr, "tokend: %s\n", msg);
}

/* The log's background check of its chain ended (store/elog.h, "check"):
 * damage found fences the store, as a failed write does; the outcome goes
 * to the operator's log. From the check's thread. */
static void scrub_done(void *arg, int rc, uint64_t checked_to, double seconds, const tk_why *why)
{
    eng *e = arg;

    if (rc == TK_EBUSY) /* stopped by the close */
        return;
    if (rc == TK_ECORRUPT) {
        fence(e, "the log is damaged (found by its background check; tokend's log says "
              "where): writes refused until tokend restarts");
        say(e, "storage failure: the background check of the log's chain found damage "
            "(writes are refused; verification goes on): %s", why->msg);
    } else if (rc) {
        say(e, "the background check of the log's chain stopped: %s", why->msg);
    } else {
        say(e, "the log's chain checked in the background: every link through event %llu, "
            "in %.2f s", (unsigned long long)checked_to, seconds);
    }
    /* Last: whoever sees the outcome (eng_log_checked) sees its fence too. */
    __atomic_store_n(&e->scrub_rc, rc == 0 ? 1 : -1, __ATOMIC_RELEASE);
}

/* ---- the view image (store/vimage.h) ----------------------------------
 *
 * Its stamp is LMDB's applied seq and the chain hash the state keeps
 * there: the image is read only into a view of exactly that state, and
 * written only when the view is exactly LMDB's state, which is at the
 * log's last record. */

/* Reads the credentials from state/view.img when it was saved at t's
 * state; true when it did (the rest then comes from LMDB). The file is
 * gone after this, read or not: the state changes from here on. */
static bool image_load(eng *e, state_txn *t, const char *sub)
{
    uint8_t chain[TK_HASH_LEN];
    uint64_t applied = state_applied_seq(t);
    tk_why w = {.msg = ""};

    if (e->no_image || applied == 0 || applied != elog_last_seq(e->log) ||
        !state_chain(t, chain)) {
        vimg_remove(sub);
        return false;
    }
    double t0 = mono_s();
    int rc = vimg_load(sub, applied, chain, e->v, &w);
    e->times.image_s = mono_s() - t0;
    e->times.image_rc = rc;
    e->times.image = rc == 0;
    /* None, or stale after a run that did not close cleanly: the usual
     * open, nothing to say. A damaged one is worth a line. */
    if (rc != 0 && rc != TK_ENOTFOUND)
        say(e, "%s; the view is built from LMDB instead", w.msg);
    return rc == 0;
}

/* At eng_close, after the last flush: saves the view's credentials when
 * they are certainly LMDB's state. Not after a failed open (the view may
 * be partial), nor fenced or with LMDB set aside (stale), nor with a batch
 * committed and not published (LMDB has it, the view not), nor with LMDB
 * unflushed (the marker stays: the next open sets LMDB aside and rebuilds,
 * and the image would go with it anyway). */
static void image_save(eng *e)
{
    uint8_t chain[TK_HASH_LEN];
    state_txn *t = NULL;
    tk_why w = {.msg = ""};

    if (!e->opened || e->no_image || !e->v || !e->st || !e->log || !e->log_open || e->txn || e->carry ||
        is_fenced(e) || __atomic_load_n(&e->stale, __ATOMIC_ACQUIRE) || ckpt_dirty(e->ck))
        return;
    pthread_mutex_lock(&e->pmu);
    bool settled = !e->phead && e->durable == e->committed;
    pthread_mutex_unlock(&e->pmu);
    if (!settled || state_begin(e->st, false, &t) != 0)
        return;
    uint64_t applied = state_applied_seq(t);
    bool has_chain = state_chain(t, chain);
    state_abort(t);
    if (applied == 0 || !has_chain || applied != elog_last_seq(e->log) ||
        elog_next_seq(e->log) != applied + 1 ||
        sodium_memcmp(chain, elog_head_hash(e->log), TK_HASH_LEN) != 0)
        return;
    char *sub = xpath(e->dir, "state");
    if (vimg_save(sub, applied, chain, e->v, ENG_RESERVE_DEFAULT, &w) != 0)
        say(e, "no view image saved (%s): the next open builds the view from LMDB", w.msg);
    free(sub);
}

const eng_open_times *eng_open_stats(const eng *e)
{
    return &e->times;
}

int eng_log_checked(const eng *e)
{
    return __atomic_load_n(&e->scrub_rc, __ATOMIC_ACQUIRE);
}

int eng_open(const char *dir, const eng_opts *opts, eng **out, tk_why *why)
{
    double t0 = mono_s(), t1;
    eng *e = xcalloc(1, sizeof *e);
    if (opts) {
        e->notice = opts->notice;
        e->notice_arg = opts->notice_arg;
    }
    pthread_mutex_init(&e->pmu, NULL);
    pthread_mutex_init(&e->hmu, NULL);
    hist_init(&e->syncs, sync_bounds, sizeof sync_bounds / sizeof sync_bounds[0]);
    hist_init(&e->commit_ns, sync_bounds, sizeof sync_bounds / sizeof sync_bounds[0]);
    hist_init(&e->commit_batches, commit_batch_bounds,
              sizeof commit_batch_bounds / sizeof commit_batch_bounds[0]);
    state_txn *t = NULL;
    char *sub = NULL;
    int rc = TK_EIO;
    elog_opts lo = {.segment_bytes = opts ? opts->segment_bytes : 0,
                    .check = opts && opts->full_log_check ? ELOG_CHECK_FULL : ELOG_CHECK_FAST,
                    .on_scrub = scrub_done,
                    .scrub_arg = e};
    tk_why scratch; /* the steps below test whether one has said why yet */
    tk_why *w = why ? why : &scratch;

    w->msg[0] = '\0';
    e->dir = xstrdup(dir);
    e->no_image = opts && opts->no_view_image;
    e->times.image_rc = TK_ENOTFOUND;
    e->pool = secret_pool_new();
    rl_new(&e->rate);
    kr_new(&e->ring);
    mpw_init(&e->evbuf);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        tk_say(w, TK_EIO, "cannot create data directory %s: %s", dir, strerror(errno));
        goto fail;
    }
    if ((rc = operator_key(e, w)))
        goto fail;
    rsv_open(dir, opts && opts->reserve_bytes ? opts->reserve_bytes : ENG_RESERVE_DEFAULT,
             &e->rsv);
    e->logdir = xpath(dir, "log");
    /* The log's full check runs on its own thread while LMDB opens and
     * the view loads (the two take about as long); it must pass before
     * anything is written to LMDB (replay) or the open succeeds. */
    if ((rc = elog_open_begin(e->logdir, &lo, &e->log, w)))
        goto fail;
    t1 = mono_s();
    e->times.log_tail_s = t1 - t0;
    sub = xpath(dir, "state");
    ckpt_new(dir, &e->ck);
    /* A based log (bootstrapped from a snapshot) cannot rebuild the state
     * it started from: LMDB then syncs every commit, so that no machine
     * crash ever leaves it to be rebuilt. */
    if (elog_base_seq(e->log))
        ckpt_sync_always(e->ck);
    if ((rc = check_marker(e, sub, w)))
        goto fail;
    struct stat sst;
    if (stat(sub, &sst) != 0 && (rc = log_join(e, w))) /* a new state: after the verdict */
        goto fail;
    if ((rc = state_open(sub, ckpt_nosync(e->ck), &e->st))) {
        tk_say(w, rc, "cannot open LMDB state in %s: %s", sub, tk_strerror(rc));
        goto fail;
    }
    if (!state_format_ok(e->st)) { /* an older layout: rebuild from the log */
        state_close(e->st);
        e->st = NULL;
        if ((rc = log_join(e, w)))
            goto fail;
        rc = ckpt_set_aside(dir, sub, "oldformat", "the LMDB state has an older layout", false,
                            w);
        if (rc || (rc = state_open(sub, ckpt_nosync(e->ck), &e->st))) {
            if (!w->msg[0])
                tk_say(w, rc, "cannot open LMDB state in %s: %s", sub, tk_strerror(rc));
            goto fail;
        }
    }
    if (ckpt_mark(e->ck) != 0) {
        /* A full disk must not keep verification down: use the reserve,
         * and if there is still no room for the marker, let LMDB sync each
         * commit instead (no marker needed; writes are refused anyway). */
        int err = errno;
        if (err == ENOSPC || err == EDQUOT) {
            rsv_shrink(e->rsv, rsv_have(e->rsv));
            if (ckpt_mark(e->ck) == 0) {
                err = 0;
            } else if (state_set_nosync(e->st, false) == 0) {
                ckpt_sync_always(e->ck);
                err = 0;
            }
        }
        if (err) {
            rc = tk_say(w, TK_EIO, "cannot write %s/state.unsynced: %s", dir, strerror(err));
            goto fail;
        }
    }
    if ((rc = catch_up(e, w)))
        goto fail;
    if (ckpt_nosync(e->ck) && (rc = ckpt_flush(e->ck, e->st, now_ms()))) {
        tk_say(w, rc, "cannot flush LMDB in %s: %s", sub, strerror(errno));
        goto fail;
    }
    double t2 = mono_s();
    e->times.state_s = t2 - t1;
    view_new(&e->v);
    if (!(rc = state_begin(e->st, false, &t))) {
        unsigned flags = 0;
        if (image_load(e, t, sub))
            flags = ST_LOAD_NO_CREDS;
        else
            view_reserve(e->v, state_cred_count(t)); /* the load never grows the index */
        loader *l = xcalloc(1, sizeof *l);
        l->v = e->v;
        l->keys = e->ring;
        rc = state_load(t, flags, load_learn, l);
        load_flush(l);
        free(l);
    }
    if (!rc) /* DIR/operator.key acts until its name is removed (or given again) */
        rc = bootstrap_key(e, t);
    if (rc) {
        tk_say(w, rc, "cannot load the state into memory: %s", tk_strerror(rc));
        goto fail;
    }
    state_abort(t);
    t = NULL;
    view_settle(e->v); /* no growth left half done by the bulk load */
    double t3 = mono_s();
    e->times.load_s = t3 - t2;
    e->times.creds = view_cred_count(e->v);
    if ((rc = log_join(e, w)))
        goto fail;
    e->times.log_wait_s = mono_s() - t3;
    if (opts && opts->sign_key && (rc = heads_open(e, opts->sign_key, w)))
        goto fail;
    free(sub);
    e->times.total_s = mono_s() - t0;
    e->opened = true;
    *out = e;
    return 0;
fail:
    if (!w->msg[0])
        tk_say(w, rc, "cannot open the data directory %s: %s", dir, tk_strerror(rc));
    state_abort(t);
    free(sub);
    eng_close(e);
    return rc;
}

void eng_close(eng *e)
{
    if (!e)
        return;
    /* LMDB may hold batches written to the log and not flushed (a server
     * stopped with none in flight has none): flushed, or LMDB set aside. */
    uint64_t durable;
    eng_apply(e);
    if (e->log && e->log_open && !is_fenced(e))
        (void)sync_log(e, &durable, true);
    if (e->sign && e->log && !is_fenced(e))
        sign_head(e, true);
    head_key_free(e->sign);
    if (e->st && e->ck && ckpt_dirty(e->ck) && !is_fenced(e))
        (void)ckpt_flush(e->ck, e->st, now_ms());
    image_save(e);
    view_free(e->v);
    state_close(e->st);
    ckpt_free(e->ck);
    elog_close(e->log);
    mpw_free(&e->evbuf);
    free(e->evoff);
    free(e->changes);
    free(e->dels);
    for (pend *lists[2] = {e->phead, e->pfree}, **l = lists; l < lists + 2; l++)
        for (pend *p = *l, *next; p; p = next) {
            next = p->next;
            free(p->changes);
            free(p->dels);
            rb_free(&p->tap);
            free(p);
        }
    rb_free(&e->tap);
    pthread_mutex_destroy(&e->pmu);
    pthread_mutex_destroy(&e->hmu);
    kr_free(e->ring);
    secret_pool_free(e->pool);
    rl_free(e->rate);
    rsv_close(e->rsv);
    free(e->logdir);
    free(e->dir);
    free(e);
}

/* ---- execution ------------------------------------------------------- */

void eng_req_init(eng_req *r, eng_op op, const tk_actor *actor)
{
    memset(r, 0, sizeof *r);
    r->op = op;
    r->actor = *actor;
    r->flag = -1;
}

static void keep_event(eng *e, const ev *x)
{
    ev_encode(x, &e->evbuf);
    if (e->nev == e->evcap) {
        e->evcap = e->evcap ? e->evcap * 2 : 16;
        e->evoff = xrealloc(e->evoff, e->evcap * sizeof *e->evoff);
    }
    e->evoff[e->nev++] = e->evbuf.buf.size;
}

static void fail_all(eng_res *res, size_t n, int rc)
{
    for (size_t i = 0; i < n; i++)
        res[i].status = rc;
}

/* Operations that always make the store hold more (rule 12 refuses them
 * when it is full, without planning them). The others are planned first:
 * deletes always take access away, and a toggle, a role or a user change
 * may (plan.revokes). */
static bool op_grows(eng_op op)
{
    switch (op) {
    case ENG_TENANT_CREATE:
    case ENG_PERM_PUT:
    case ENG_ACCOUNT_CREATE:
    case ENG_USER_CREATE:
    case ENG_KEY_CREATE:
    case ENG_TOKEN_CREATE: return true;
    default: return false;
    }
}

/* Validates and applies every request into t; fills res. full: the store
 * is full (see "space"): only requests that take access away go through,
 * the rest get TK_ENOSPC with full_msg. Returns 0, or the store error that
 * fails the whole batch (TK_ELIMIT: map full, retry). */
static int stage(eng *e, state_txn *t, const eng_req *reqs, eng_res *res, size_t n, int64_t ts,
                 const char *full_msg)
{
    plan p;
    p.t = t;
    p.pool = e->pool;
    p.rate = e->rate;
    p.now_ms = ts;
    uint64_t seq = elog_next_seq(e->log);
    mpw_reset(&e->evbuf);
    e->nev = 0;
    e->nchg = e->ndel = 0;
    for (size_t i = 0; i < n; i++) {
        memset(&res[i], 0, sizeof res[i]);
        if (full_msg && op_grows(reqs[i].op)) {
            res[i].status = TK_ENOSPC;
            snprintf(res[i].msg, sizeof res[i].msg, "%s", full_msg);
            continue;
        }
        res[i].status = session_gone(e, &reqs[i].actor, ts / 1000, res[i].msg);
        if (!res[i].status)
            res[i].status = plan_request(&p, &reqs[i], &res[i]);
        session_check(e, &reqs[i].actor, res[i].status);
        if (res[i].status == 0 && full_msg && !p.revokes) {
            res[i].status = TK_ENOSPC;
            snprintf(res[i].msg, sizeof res[i].msg, "%s", full_msg);
        }
        if (res[i].status) {
            sodium_memzero(res[i].secret, sizeof res[i].secret);
            if (res[i].status == TK_EIO || res[i].status == TK_ECORRUPT)
                return res[i].status;
            continue;
        }
        for (size_t j = 0; j < p.n; j++) {
            p.evs[j].ts = ts;
            int rc = state_apply(t, seq, &p.evs[j], collect, e);
            if (rc)
                return rc == TK_ECORRUPT ? TK_EIO : rc;
            keep_event(e, &p.evs[j]);
            seq++;
        }
        res[i].seq = p.n ? seq - 1 : 0;
        res[i].revokes = p.revokes;
    }
    return 0;
}

/* Refuses every later write, saying why in their replies (one line; the
 * first reason stays: the writer and eng_sync's thread may both find a
 * failure). */
__attribute__((format(printf, 2, 3)))
static void fence(eng *e, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&e->pmu);
    if (!is_fenced(e)) {
        va_start(ap, fmt);
        vsnprintf(e->fence_msg, sizeof e->fence_msg, fmt, ap);
        va_end(ap);
        __atomic_store_n(&e->fenced, true, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&e->pmu);
}

/* A step after the log's fsync failed: the batch is committed (the log
 * holds it and the next open applies it), so its requests are answered as
 * committed and the view learns it; but LMDB may lack it or be unsure on
 * disk. The state directory is moved aside at once (a rename needs no free
 * space), so the next open rebuilds it from the log whatever LMDB holds;
 * until then writes and listings are refused. */
static void late_failure(eng *e, const char *step, int err)
{
    char *sub = xpath(e->dir, "state");
    char *what = xasprintf("%s failed after a batch was written to the log", step);
    tk_why w = {.msg = ""};
    /* Once: the writer (LMDB) and the sync thread (the log) may both fail. */
    if (__atomic_exchange_n(&e->stale, true, __ATOMIC_ACQ_REL))
        goto fenced;
    if (ckpt_set_aside(e->dir, sub, "failed", what, true, &w) != 0)
        say(e, "%s; %s: stop tokend and move %s away before the next start (it is rebuilt "
            "from the log)", what, w.msg, sub);
fenced:
    free(what);
    free(sub);
    fence(e, "%s failed after a committed batch (%s): writes refused until tokend restarts "
             "(the state is then rebuilt from the log)", step, strerror(err));
}

/* Hands each record of t to the tap, in order. */
static void tap_run(eng *e, recbuf *t)
{
    eng_rec r;
    for (; rb_peek(t, &r); rb_pop(t))
        e->tap_fn(e->tap_arg, &r);
}

static void carry_end(eng *e);
static void commit_now(eng *e, state_txn *t, unsigned batches);
static void take_batch(eng *e, bool carry);

/* A batch of at most this many events may be carried (eng_apply_some).
 * Small batches are where a commit per batch costs: a client alone pays
 * for its page writes before its next request is taken, and the pages a
 * create dirties are mostly those the next one dirties again. A larger
 * batch already shares them within its own commit, and staging it nested
 * would cost LMDB a search of two dirty lists per page: it commits what is
 * carried first, and is staged and committed on its own. */
#define CARRY_EVENTS 4

/* Stages the batch into a new write transaction (*out), growing LMDB's
 * map when it is full, then buffers its events in the log. */
static int stage_all(eng *e, const eng_req *reqs, eng_res *res, size_t n, int64_t ts,
                     const char *full_msg, state_txn **out)
{
    state_txn *t;
    int rc;
    if (n > CARRY_EVENTS) /* one request is one event at most */
        carry_end(e);
    for (;;) {
        /* In the carried transaction, when there is one: a batch refused or
         * staged again then drops only its own changes. */
        if ((rc = e->carry ? state_begin_in(e->carry, &t) : state_begin(e->st, true, &t)))
            return rc;
        rc = stage(e, t, reqs, res, n, ts, full_msg);
        if (rc != TK_ELIMIT)
            break;
        /* The map is full: LMDB commits what it holds, grows, and the
         * batch is staged again. */
        state_abort(t);
        carry_end(e);
        if (is_fenced(e))
            return TK_EFENCED;
        if ((rc = state_grow(e->st)))
            return rc;
    }
    size_t off = 0;
    rb_clear(&e->tap);
    for (size_t i = 0; rc == 0 && i < e->nev; i++) {
        uint64_t seq;
        rc = elog_append(e->log, e->evbuf.buf.data + off, e->evoff[i] - off, &seq);
        if (rc == 0 && e->tap_fn) /* the record, with the chain hash it got */
            rb_put(&e->tap, seq, elog_head_hash(e->log), e->evbuf.buf.data + off,
                   e->evoff[i] - off);
        off = e->evoff[i];
    }
    if (rc) {
        elog_discard(e->log);
        state_abort(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* Stages the batch again (*t replaced) with growth refused (full_msg in
 * the refusals), and gives the log what the revocations that remain need
 * from the reserve: what is missing beyond avail free bytes. */
static int restage_full(eng *e, const eng_req *reqs, eng_res *res, size_t n, int64_t ts,
                        state_txn **t, const char *full_msg, int64_t avail)
{
    elog_discard(e->log);
    state_abort(*t);
    *t = NULL;
    int rc = stage_all(e, reqs, res, n, ts, full_msg, t);
    if (rc)
        return rc;
    int64_t need = (int64_t)elog_pending(e->log) + RSV_SLACK;
    if (e->nev > 0 && avail < need)
        rsv_shrink(e->rsv, (uint64_t)(need - avail));
    elog_set_lookahead(e->log, 0);
    return 0;
}

/* Rule 12: is there room for the staged batch? Short of it (*full), stages
 * it again with growth refused and lets what remains (revocations) use the
 * reserve. Else sets how far the log may preallocate. */
static int make_room(eng *e, const eng_req *reqs, eng_res *res, size_t n, int64_t ts,
                     state_txn **t, bool *full)
{
    char full_msg[sizeof res->msg];
    int64_t need = (int64_t)elog_pending(e->log) + RSV_SLACK;
    int64_t avail = rsv_free(e->rsv);
    /* What revocations took from the reserve is not free for growth: it is
     * the reserve's until grown back. */
    int64_t owed = rsv_owed(e->rsv);
    *full = avail - owed < need;
    if (*full) {
        snprintf(full_msg, sizeof full_msg, "storage full: %lld bytes free in %s, %lld needed; "
                 "only revocations (deletes, API tokens off, ...) are accepted",
                 (long long)avail, e->dir, (long long)need);
        return restage_full(e, reqs, res, n, ts, t, full_msg, avail);
    }
    if (rsv_grow(e->rsv, avail - need)) {
        avail = rsv_free(e->rsv);
        owed = rsv_owed(e->rsv);
    }
    /* The log's look-ahead takes only room beyond the slack. */
    int64_t spare = avail - owed - need;
    elog_set_lookahead(e->log, spare > 0 ? (uint64_t)spare : 0);
    return 0;
}

/* The log found no room even for revocations: nothing was written and the
 * log goes on; the batch is refused, not applied. */
static void refuse_unwritten(eng *e, state_txn *t, eng_res *res, size_t n, const char *why)
{
    state_abort(t);
    e->nchg = e->ndel = 0;
    for (size_t i = 0; i < n; i++) {
        sodium_memzero(res[i].secret, sizeof res[i].secret);
        if (res[i].status == 0) {
            res[i].status = TK_ENOSPC;
            snprintf(res[i].msg, sizeof res[i].msg, "storage full: %s", why);
        }
    }
}

/* Hands the batch's view changes to the pending list (the arrays move to
 * a node; the next batch gets those of a recycled one). */
static uint64_t pend_push(eng *e)
{
    pthread_mutex_lock(&e->pmu);
    pend *p = e->pfree;
    if (p)
        e->pfree = p->next;
    else
        p = xcalloc(1, sizeof *p);
    st_change *c = p->changes;
    tk_id *d = p->dels;
    size_t cc = p->chgcap, dc = p->delcap;
    p->changes = e->changes, p->nchg = e->nchg, p->chgcap = e->chgcap;
    p->dels = e->dels, p->ndel = e->ndel, p->delcap = e->delcap;
    e->changes = c, e->chgcap = cc, e->dels = d, e->delcap = dc;
    rb_swap(&p->tap, &e->tap);
    rb_clear(&e->tap);
    e->nchg = e->ndel = 0;
    p->batch = ++e->committed;
    p->next = NULL;
    if (e->ptail)
        e->ptail->next = p;
    else
        e->phead = p;
    e->ptail = p;
    uint64_t batch = p->batch;
    pthread_mutex_unlock(&e->pmu);
    return batch;
}

/* LMDB's checkpoint: every batch it holds must be durable in the log
 * first (the marker is cleared: a crash then trusts LMDB, which must not
 * be ahead of the log), so the log is flushed here, on the writer. */
static void checkpoint(eng *e)
{
    int64_t t_ms = now_ms();
    uint64_t durable;
    if (!ckpt_nosync(e->ck) || !ckpt_due(e->ck, t_ms) || is_fenced(e))
        return;
    if (sync_log(e, &durable, true) != 0)
        return; /* fenced, and the batches lost are failed by their own sync */
    if (ckpt_flush(e->ck, e->st, t_ms) != 0)
        late_failure(e, "flushing LMDB", errno);
}

int eng_commit(eng *e, const eng_req *reqs, eng_res *res, size_t n, uint64_t *batch)
{
    state_txn *t = NULL;
    int rc;
    int64_t ts = now_ms();
    tk_why w = {.msg = ""};

    *batch = 0;
    e->nchg = e->ndel = 0;
    take_batch(e, true); /* a caller's last batch, if it did not */
    if (is_fenced(e)) {
        carry_end(e);
        fail_all(res, n, TK_EFENCED);
        for (size_t i = 0; i < n; i++)
            memcpy(res[i].msg, e->fence_msg, sizeof res[i].msg);
        return TK_EFENCED;
    }
    if (__atomic_load_n(&e->readonly, __ATOMIC_ACQUIRE)) {
        pthread_mutex_lock(&e->pmu);
        for (size_t i = 0; i < n; i++) {
            memset(&res[i], 0, sizeof res[i]);
            res[i].status = TK_EREADONLY;
            memcpy(res[i].msg, e->readonly_msg, sizeof res[i].msg);
        }
        pthread_mutex_unlock(&e->pmu);
        return 0;
    }
    checkpoint(e);
    if ((rc = stage_all(e, reqs, res, n, ts, NULL, &t)))
        goto fail;
    bool full = false;
    if (e->nev > 0 && (rc = make_room(e, reqs, res, n, ts, &t, &full)))
        goto fail;
    if (e->nev == 0) { /* every request refused: nothing to log */
        state_abort(t);
        return 0;
    }
    rc = elog_write(e->log, &w);
    if (rc == TK_ENOSPC && !full) {
        /* The file system found no room that the free-space count showed
         * (the disk filled since, or a quota): growth is refused after all,
         * and the revocations get the reserve, as rule 12 wants. */
        char full_msg[sizeof res->msg];
        snprintf(full_msg, sizeof full_msg, "storage full: %s; only revocations (deletes, API "
                 "tokens off, ...) are accepted", w.msg);
        if ((rc = restage_full(e, reqs, res, n, ts, &t, full_msg, 0)))
            goto fail;
        full = true;
        if (e->nev == 0) {
            state_abort(t);
            __atomic_store_n(&e->full, true, __ATOMIC_RELAXED);
            return 0;
        }
        rc = elog_write(e->log, &w);
    }
    __atomic_store_n(&e->full, full || rc == TK_ENOSPC, __ATOMIC_RELAXED);
    if (rc == TK_ENOSPC) {
        refuse_unwritten(e, t, res, n, w.msg);
        return 0;
    }
    if (rc) {
        fence(e, "not applied: %s; writes refused until tokend restarts", w.msg);
        goto fail;
    }
    /* Written: the flush (eng_sync) decides the batch, whatever fails
     * later; LMDB follows in eng_apply (eng_sync sets it aside if the flush
     * fails). */
    *batch = pend_push(e);
    state_set_chain(t, elog_head_hash(e->log)); /* the open checks the log has it */
    e->txn = t;
    e->txn_batch = *batch;
    e->txn_events = e->nev;
    return 0;
fail:
    state_abort(t);
    fence(e, "not applied: %s; writes refused until tokend restarts", tk_strerror(rc));
    e->nchg = e->ndel = 0;
    for (size_t i = 0; i < n; i++)
        sodium_memzero(res[i].secret, sizeof res[i].secret);
    rc = rc == TK_EFENCED ? TK_EFENCED : TK_EIO;
    fail_all(res, n, rc);
    for (size_t i = 0; i < n; i++)
        memcpy(res[i].msg, e->fence_msg, sizeof res[i].msg);
    return rc;
}

/* ---- a replica: the primary's records (eng_follow) ---------------------- */

/* Stages the primary's records into t, each decoded, applied, appended to
 * the log and its chain hash compared with the primary's. 0 (*taken:
 * records appended), TK_ELIMIT (LMDB's map full: grow and stage again), or
 * the refusal (why says which record). */
static int follow_stage(eng *e, state_txn *t, const eng_rec *recs, size_t n, size_t *taken,
                        tk_why *w)
{
    char here[2 * TK_HASH_LEN + 1], there[2 * TK_HASH_LEN + 1];
    ev x;
    int rc;
    *taken = 0;
    e->nchg = e->ndel = 0;
    for (size_t i = 0; i < n; i++) {
        const eng_rec *r = &recs[i];
        unsigned long long seq = (unsigned long long)r->seq;
        uint64_t next = elog_next_seq(e->log);
        if (r->seq < next)
            continue; /* delivered again: taken already */
        if (r->seq > next)
            return tk_say(w, TK_ECORRUPT, "the primary's event %llu came where %llu was due: a "
                          "gap in the stream", seq, (unsigned long long)next);
        /* The chain first: a record that is not the primary's is refused
         * as such, whatever it would do to the state. */
        if ((rc = elog_append(e->log, r->payload, r->len, NULL)))
            return tk_say(w, rc, "event %llu cannot be logged: %s", seq, tk_strerror(rc));
        if (sodium_memcmp(elog_head_hash(e->log), r->hash, TK_HASH_LEN) != 0) {
            sodium_bin2hex(here, sizeof here, elog_head_hash(e->log), TK_HASH_LEN);
            sodium_bin2hex(there, sizeof there, r->hash, TK_HASH_LEN);
            return tk_say(w, TK_ECORRUPT, "the primary's event %llu breaks the chain: its chain "
                          "hash here is %.16s..., the primary's %.16s...", seq, here, there);
        }
        if (ev_decode(r->payload, r->len, &x) != 0)
            return tk_say(w, TK_ECORRUPT, "the primary's event %llu cannot be decoded", seq);
        rc = state_apply(t, r->seq, &x, collect, e);
        if (rc == TK_ELIMIT)
            return rc;
        if (rc)
            return tk_say(w, TK_ECORRUPT, "the primary's event %llu (%s) does not apply to this "
                          "replica's state: %s", seq, ev_type_name(x.type), tk_strerror(rc));
        (*taken)++;
    }
    return 0;
}

int eng_follow(eng *e, const eng_rec *recs, size_t n, uint64_t *batch, uint64_t *last,
               tk_why *why)
{
    state_txn *t = NULL;
    size_t taken;
    int rc;
    tk_why w = {.msg = ""};

    *batch = 0;
    *last = elog_next_seq(e->log) - 1;
    eng_apply(e);
    if (is_fenced(e))
        return tk_say(why, TK_EFENCED, "%s", e->fence_msg);
    checkpoint(e);
    for (;;) {
        if ((rc = state_begin(e->st, true, &t)))
            return tk_say(why, rc, "a write transaction cannot begin: %s", tk_strerror(rc));
        rc = follow_stage(e, t, recs, n, &taken, why);
        if (rc != TK_ELIMIT)
            break;
        elog_discard(e->log);
        state_abort(t);
        if ((rc = state_grow(e->st)))
            return tk_say(why, rc, "LMDB's map cannot grow: %s", tk_strerror(rc));
    }
    if (rc || taken == 0) {
        elog_discard(e->log);
        state_abort(t);
        e->nchg = e->ndel = 0;
        return rc; /* why says which record */
    }
    if ((rc = elog_write(e->log, &w))) {
        state_abort(t);
        e->nchg = e->ndel = 0;
        if (rc == TK_ENOSPC) {
            elog_discard(e->log);
            return tk_say(why, rc, "%s", w.msg);
        }
        fence(e, "not applied: %s; restart tokend", w.msg);
        return tk_say(why, rc, "%s", w.msg);
    }
    rb_clear(&e->tap); /* a replica keeps no records for a tap */
    *batch = pend_push(e);
    *last = elog_next_seq(e->log) - 1;
    state_set_chain(t, elog_head_hash(e->log));
    e->txn = t;
    e->txn_batch = *batch;
    e->txn_events = taken;
    return 0;
}

/* LMDB takes the batch written (e->txn): into the carried transaction
 * (carry: a small batch may begin one), or committed. A batch whose flush
 * failed already is not taken (LMDB never had it); one being flushed is,
 * and a failed flush then sets LMDB aside (eng_sync). */
static void take_batch(eng *e, bool carry)
{
    state_txn *t = e->txn;
    if (!t)
        return;
    e->txn = NULL;
    pthread_mutex_lock(&e->pmu);
    /* Lost only to a failed flush: a fence for another reason (the log's
     * background check, a later batch's write) leaves this one's flush to
     * decide, and a batch it makes durable is answered as committed, so
     * LMDB must hold it. An LMDB set aside (stale) takes nothing more. */
    bool lost = (e->flush_failed && e->txn_batch > e->durable)
                || __atomic_load_n(&e->stale, __ATOMIC_ACQUIRE);
    if (!lost)
        e->applied = e->txn_batch;
    pthread_mutex_unlock(&e->pmu);
    if (lost) {
        state_abort(t);
        return;
    }
    if (!e->carry) { /* a transaction of its own */
        if (carry && e->txn_events <= CARRY_EVENTS) { /* it begins the carry */
            e->carry = t;
            e->carry_n = 1;
            e->carry_since = mono_s();
        } else {
            commit_now(e, t, 1);
        }
        return;
    }
    if (state_commit(t) != 0) { /* into the carry: memory only */
        late_failure(e, "the LMDB commit", errno);
        return;
    }
    e->carry_n++;
}

/* Commits the carried transaction to LMDB (unless LMDB was set aside:
 * then it holds batches the log lost, and it is dropped). */
static void carry_end(eng *e)
{
    state_txn *t = e->carry;
    if (!t)
        return;
    e->carry = NULL;
    if (__atomic_load_n(&e->stale, __ATOMIC_ACQUIRE)) {
        state_abort(t);
        return;
    }
    commit_now(e, t, e->carry_n);
}

/* LMDB's commit of t, a top-level write transaction holding that many
 * batches. */
static void commit_now(eng *e, state_txn *t, unsigned batches)
{
    struct timespec a, b;
    if (ckpt_mark(e->ck) != 0) {
        /* The marker must be on disk before LMDB holds an unflushed
         * commit: without it, LMDB is not written at all. */
        int err = errno;
        state_abort(t);
        late_failure(e, "writing state.unsynced", err);
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (state_commit(t) != 0) {
        late_failure(e, "the LMDB commit", errno);
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    hist_add(&e->commit_ns,
             (uint64_t)((b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec)));
    hist_add(&e->commit_batches, batches);
}

uint64_t eng_lmdb_commits(const eng *e)
{
    return __atomic_load_n(&e->commit_ns.count, __ATOMIC_RELAXED);
}

const hist *eng_lmdb_commit_hist(const eng *e, bool batches)
{
    return batches ? &e->commit_batches : &e->commit_ns;
}

void eng_apply(eng *e)
{
    take_batch(e, false);
    carry_end(e);
}

/* How many batches, and for how long, LMDB's write transaction is carried
 * over before it is committed: bounded so that its dirty pages (memory)
 * and the replay after a crash stay small. */
#define CARRY_BATCHES 16
#define CARRY_S 0.005

void eng_apply_some(eng *e)
{
    take_batch(e, true);
    if (e->carry && (e->carry_n >= CARRY_BATCHES
                     || mono_s() - e->carry_since >= CARRY_S || is_fenced(e)))
        carry_end(e);
}

bool eng_carrying(const eng *e)
{
    return e->carry != NULL;
}

/* A lazy log (a replica's, eng_set_lazy_sync) is flushed for real at most
 * this often, and at every checkpoint, snapshot and close. */
#define LAZY_FLUSH_MS 1000

int eng_sync(eng *e, uint64_t *durable)
{
    return sync_log(e, durable, false);
}

/* eng_sync; force: a real flush even of a lazy log (a checkpoint, a
 * snapshot, the close need the log on disk). */
static int sync_log(eng *e, uint64_t *durable, bool force)
{
    struct timespec a, b;
    tk_why w = {.msg = ""};
    pthread_mutex_lock(&e->pmu);
    uint64_t target = e->committed; /* each written before this flush begins */
    *durable = e->durable;
    if (e->lazy && !force && target > *durable
        && (int64_t)(mono_s() * 1000) - __atomic_load_n(&e->flushed_ms, __ATOMIC_RELAXED) < LAZY_FLUSH_MS) {
        e->durable = *durable = target; /* written: enough for a replica (see the header) */
        pthread_mutex_unlock(&e->pmu);
        return is_fenced(e) ? TK_EFENCED : 0;
    }
    pthread_mutex_unlock(&e->pmu);
    if (target == *durable && !(e->lazy && force))
        return is_fenced(e) ? TK_EFENCED : 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int rc = elog_flush(e->log, &w);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (rc == 0) {
        hist_add(&e->syncs,
                 (uint64_t)((b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec)));
        __atomic_store_n(&e->flushed_ms, (int64_t)(mono_s() * 1000), __ATOMIC_RELAXED);
        pthread_mutex_lock(&e->pmu);
        if (target > e->durable)
            e->durable = target;
        *durable = e->durable;
        pthread_mutex_unlock(&e->pmu);
        if (e->sign)
            sign_head(e, false);
        return 0;
    }
    /* Never durable, never acknowledged: LMDB (which went ahead) is set
     * aside, and the view never learns them. */
    /* flush_failed is set under pmu with the check of what LMDB took: a
     * batch LMDB takes after it is dropped (take_batch), one it took before
     * sets LMDB aside (below). */
    if (rc == TK_EIO)
        fence(e, "not applied: %s; writes refused until tokend restarts", w.msg);
    else
        fence(e, "not applied: the log failed; writes refused until tokend restarts");
    pthread_mutex_lock(&e->pmu);
    e->flush_failed = true;
    *durable = e->durable;
    /* LMDB has batches the log lost: those after the last flush, and on a
     * lazy log those the pipeline took as durable before it. */
    bool lost = e->applied > e->durable || e->lazy;
    /* Drop the lost ones' changes; those made durable by an earlier sync
     * (older, so first) stay for eng_publish. */
    pend **pp = &e->phead, *last = NULL;
    while (*pp && (*pp)->batch <= e->durable) {
        last = *pp;
        pp = &(*pp)->next;
    }
    while (*pp && (*pp)->batch <= target) {
        pend *p = *pp;
        *pp = p->next;
        p->next = e->pfree;
        e->pfree = p;
    }
    if (!*pp)
        e->ptail = last;
    pthread_mutex_unlock(&e->pmu);
    if (lost)
        late_failure(e, "the log's write or fsync", EIO);
    return rc == TK_EIO ? TK_EIO : TK_EFENCED;
}

bool eng_full(const eng *e)
{
    return __atomic_load_n(&e->full, __ATOMIC_RELAXED);
}

const hist *eng_sync_hist(const eng *e)
{
    return &e->syncs;
}

bool eng_fenced(const eng *e, const char **why)
{
    if (why)
        *why = e->fence_msg;
    return is_fenced(e);
}

void eng_publish(eng *e)
{
    for (;;) {
        pthread_mutex_lock(&e->pmu);
        pend *p = e->phead;
        if (p && p->batch <= e->durable) {
            e->phead = p->next;
            if (!e->phead)
                e->ptail = NULL;
        } else {
            p = NULL;
        }
        pthread_mutex_unlock(&e->pmu);
        if (!p)
            return;
        for (size_t i = 0; i < p->nchg; i++)
            learn(e->v, e->ring, &p->changes[i]);
        for (size_t i = 0; i < p->ndel; i++)
            view_cred_del(e->v, &p->dels[i]);
        if (e->tap_fn)
            tap_run(e, &p->tap);
        pthread_mutex_lock(&e->pmu);
        p->next = e->pfree;
        e->pfree = p;
        pthread_mutex_unlock(&e->pmu);
    }
}

int eng_exec(eng *e, const eng_req *reqs, eng_res *res, size_t n)
{
    uint64_t batch, durable;
    int rc = eng_commit(e, reqs, res, n, &batch);
    eng_apply(e);
    if (rc == 0 && eng_sync(e, &durable) != 0 && batch > durable) {
        rc = TK_EIO;
        for (size_t i = 0; i < n; i++) {
            sodium_memzero(res[i].secret, sizeof res[i].secret);
            res[i].status = TK_EIO;
            memcpy(res[i].msg, e->fence_msg, sizeof res[i].msg);
        }
    }
    eng_publish(e);
    return rc;
}

/* ---- authentication, verification, listing ---------------------------- */

int eng_authenticate(const eng *e, const char *cred, size_t len, int64_t now, tk_actor *out)
{
    if (keyfile_key_ok(cred, len, "tko_")) {
        uint8_t h[TK_HASH_LEN];
        tk_id id;
        sha256(h, (const uint8_t *)cred, len);
        if (kr_find(e->ring, h, KR_OPERATOR, &id, NULL)) {
            memset(out, 0, sizeof *out);
            out->kind = TK_ACTOR_OPERATOR;
            out->key = id; /* which one: it must still stand at commit (plan) */
            return 0;
        }
        return TK_EUNAUTH;
    }
    return view_auth_personal(e->v, cred, len, now, out) == TK_V_VALID ? 0 : TK_EUNAUTH;
}

bool eng_gateway_key(const eng *e, const char *key, size_t len)
{
    uint8_t h[TK_HASH_LEN];
    if (!keyfile_key_ok(key, len, "tkg_"))
        return false;
    sha256(h, (const uint8_t *)key, len);
    return eng_gateway_hash(e, h);
}

bool eng_gateway_hash(const eng *e, const uint8_t hash[TK_HASH_LEN])
{
    return kr_find(e->ring, hash, KR_GATEWAY, NULL, NULL);
}

uint64_t eng_keyring_gen(const eng *e)
{
    return kr_gen(e->ring);
}

/* A replica past its lease vouches for nothing (eng_set_available). */
static tk_verdict unavailable(const eng *e, tk_verify *out)
{
    if (!__atomic_load_n(&e->unavailable, __ATOMIC_RELAXED))
        return out->verdict;
    out->verdict = TK_V_UNAVAILABLE;
    out->tenant = out->account = NULL;
    out->nroles = out->nperms = 0;
    out->expires_at = 0;
    return out->verdict;
}

tk_verdict eng_verify(const eng *e, const tk_id *client_id, const char *secret, size_t len,
                      int64_t now, tk_verify *out)
{
    view_verify(e->v, client_id, secret, len, now, out);
    return unavailable(e, out);
}

void eng_verify_start(const eng *e, const view_vreq *reqs, size_t n, view_probe *probes)
{
    view_verify_start(e->v, reqs, n, probes);
}

tk_verdict eng_verify_finish(const eng *e, const view_probe *p, int64_t now, tk_verify *out)
{
    view_verify_finish(e->v, p, now, out);
    return unavailable(e, out);
}

void eng_verify_prefetch(const eng *e, const view_vreq *reqs, size_t n)
{
    view_verify_prefetch(e->v, reqs, n);
}

int eng_log_iter(const eng *e, uint64_t from_seq, elog_iter **out, tk_why *why)
{
    return elog_iter_open(e->logdir, from_seq, out, why);
}

int eng_log_hash(const eng *e, uint64_t seq, uint8_t out[TK_HASH_LEN], tk_why *why)
{
    return elog_hash_at(e->logdir, seq, out, why);
}

void eng_set_tap(eng *e, eng_tap_fn fn, void *arg)
{
    e->tap_fn = fn;
    e->tap_arg = arg;
}

void eng_set_lazy_sync(eng *e, bool lazy)
{
    /* A log after a base is not: its LMDB is synced at every commit (it
     * cannot be rebuilt from the log), and must never be ahead of it. */
    e->lazy = lazy && elog_base_seq(e->log) == 0;
}

void eng_set_readonly(eng *e, const char *msg)
{
    pthread_mutex_lock(&e->pmu);
    snprintf(e->readonly_msg, sizeof e->readonly_msg, "%s", msg ? msg : "");
    __atomic_store_n(&e->readonly, msg != NULL, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&e->pmu);
}

void eng_set_available(eng *e, bool available)
{
    __atomic_store_n(&e->unavailable, !available, __ATOMIC_RELAXED);
}

bool eng_available(const eng *e)
{
    return !__atomic_load_n(&e->unavailable, __ATOMIC_RELAXED);
}

/* ---- reading (store/query.c) ------------------------------------------ */

bool eng_cursor_ok(const char *text, size_t n)
{
    return query_cursor_ok(ENG_TOKENS, text, n);
}

/* The read transaction of every engine read: LMDB first takes each batch
 * written (the carried transaction, eng_apply_some), so that a read sees
 * every write acknowledged before it. Refused (msg, when not NULL, says
 * why) once LMDB was set aside: it lacks a committed batch, and would
 * contradict the view. */
static int read_begin(eng *e, state_txn **t, char *msg)
{
    eng_apply(e); /* the carried transaction first */
    if (__atomic_load_n(&e->stale, __ATOMIC_ACQUIRE)) {
        if (msg)
            snprintf(msg, ENG_MSG_MAX, "%s", e->fence_msg);
        return TK_EFENCED;
    }
    return state_begin(e->st, false, t);
}

int eng_query_run(eng *e, const eng_query *q, int (*fn)(void *arg, const eng_row *row), void *arg,
                  char *msg)
{
    state_txn *t;
    char scratch[ENG_MSG_MAX];
    int rc = read_begin(e, &t, msg);
    if (rc)
        return rc;
    if ((rc = session_gone(e, &q->actor, time(NULL), msg ? msg : scratch))) {
        state_abort(t);
        return rc;
    }
    rc = query_run(t, q, time(NULL), fn, arg, msg);
    state_abort(t);
    session_check(e, &q->actor, rc);
    return rc;
}

void eng_set_sessions(eng *e, ses_table *t)
{
    e->sessions = t;
}

int eng_actor_names(eng *e, const tk_actor *a, eng_names *out, char *msg)
{
    state_txn *t;
    int rc = read_begin(e, &t, msg);
    if (rc)
        return rc;
    if ((rc = session_gone(e, a, time(NULL), msg))) {
        state_abort(t);
        return rc;
    }
    rc = query_actor_names(t, a, time(NULL), out, msg);
    state_abort(t);
    session_check(e, a, rc);
    return rc;
}

int eng_portal_user(eng *e, tk_str tenant, tk_str account, tk_str user, tk_actor *out,
                    char *msg)
{
    state_txn *t;
    int rc = read_begin(e, &t, msg);
    if (rc)
        return rc;
    rc = query_portal_user(t, tenant, account, user, out, msg);
    state_abort(t);
    return rc;
}

typedef struct token_rows {
    int (*fn)(void *arg, const eng_token_info *info);
    void *arg;
} token_rows;

static int token_row(void *arg, const eng_row *row)
{
    token_rows *tr = arg;
    return tr->fn(tr->arg, &row->u.token);
}

int eng_token_list(eng *e, const tk_actor *a, tk_str tenant, tk_str account, const tk_str *after,
                   uint32_t limit, int (*fn)(void *arg, const eng_token_info *t), void *arg)
{
    eng_query q = {.kind = ENG_TOKENS, .actor = *a, .tenant = tenant, .account = account,
                   .limit = limit};
    token_rows tr = {fn, arg};
    if (after) {
        q.has_after = true;
        q.after = *after;
    }
    return eng_query_run(e, &q, token_row, &tr, NULL);
}

size_t eng_cred_count(const eng *e)
{
    return view_cred_count(e->v);
}

size_t eng_index_bytes(const eng *e)
{
    return view_index_bytes(e->v);
}

void eng_head(const eng *e, uint64_t *seq, uint8_t hash[TK_HASH_LEN])
{
    *seq = elog_last_seq(e->log);
    memcpy(hash, elog_head_hash(e->log), TK_HASH_LEN);
}

uint64_t eng_last_seq(const eng *e)
{
    return elog_last_seq(e->log);
}

int eng_read(eng *e, int (*fn)(void *arg, state_txn *t), void *arg)
{
    state_txn *t;
    int rc = read_begin(e, &t, NULL);
    if (rc)
        return rc;
    rc = fn(arg, t);
    state_abort(t);
    return rc;
}

/* ---- snapshots and bootstrapping (store/snap.h) ------------------------ */

/* snap_write's keep: the copy holds events up to seq; each must be durable
 * in the log (LMDB commits a batch before its fsync ends: eng_apply runs
 * while eng_sync flushes). When the copy is ahead, the log is flushed
 * here, as a checkpoint does; a copy still ahead after that (the flush
 * failed) is refused. hash becomes the log's chain hash at seq, which the
 * state's own (when it kept one) must equal. */
static int snap_keep(void *arg, uint64_t seq, uint8_t hash[TK_HASH_LEN], tk_why *why)
{
    eng *e = arg;
    uint64_t d, durable;
    uint8_t dh[TK_HASH_LEN], at[TK_HASH_LEN], zero[TK_HASH_LEN] = {0};
    int rc = 0;

    elog_durable_head(e->log, &d, dh);
    if (seq > d) {
        rc = sync_log(e, &durable, true);
        elog_durable_head(e->log, &d, dh);
    }
    if (seq > d)
        return tk_say(why, rc ? rc : TK_EBUSY, "snapshot: the state holds event %llu but the "
                      "log is durable only up to %llu (%s)", (unsigned long long)seq,
                      (unsigned long long)d, rc ? e->fence_msg : "try again");
    if (seq == 0)
        return 0;
    if ((rc = elog_hash_at(e->logdir, seq, at, why)))
        return rc == TK_ENOTFOUND
                   ? tk_say(why, TK_ECORRUPT, "snapshot: the log has no event %llu",
                            (unsigned long long)seq)
                   : rc;
    if (sodium_memcmp(hash, zero, TK_HASH_LEN) != 0 && sodium_memcmp(hash, at, TK_HASH_LEN) != 0)
        return tk_say(why, TK_ECORRUPT, "snapshot: at event %llu the state's chain hash differs "
                      "from the log's", (unsigned long long)seq);
    memcpy(hash, at, TK_HASH_LEN);
    return 0;
}

int eng_snapshot(eng *e, const char *path, uint64_t *seq, uint8_t hash[TK_HASH_LEN],
                 tk_why *why)
{
    snap_info info;
    int rc;

    eng_apply(e); /* LMDB holds every batch written to the log */
    if (is_fenced(e) || __atomic_load_n(&e->stale, __ATOMIC_ACQUIRE))
        return tk_say(why, TK_EFENCED, "snapshot refused: %s", e->fence_msg);
    if ((rc = snap_write(e->st, path, snap_keep, e, &info, why)))
        return rc;
    *seq = info.seq;
    memcpy(hash, info.hash, TK_HASH_LEN);
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* Removes the tree at path (nothing when it is not there). 0 or TK_EIO. */
static int remove_tree(const char *path, tk_why *why)
{
    struct stat sb;
    if (lstat(path, &sb) != 0 && errno == ENOENT)
        return 0;
    if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return tk_say(why, TK_EIO, "bootstrap: cannot remove %s: %s", path, strerror(errno));
    return 0;
}

int eng_bootstrap_target(const char *dir, tk_why *why)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int rc = 0;

    if (!d && errno == ENOENT)
        return 0;
    if (!d)
        return tk_say(why, TK_EIO, "bootstrap: cannot read %s: %s", dir, strerror(errno));
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (strcmp(de->d_name, "log") == 0 || strcmp(de->d_name, "state") == 0)
            rc = tk_say(why, TK_EEXIST, "bootstrap refused: %s already holds a %s; bootstrap "
                        "only into a new data directory", dir, de->d_name);
        else
            rc = tk_say(why, TK_EEXIST, "bootstrap refused: %s is not empty (it holds %s); "
                        "bootstrap only into a new data directory", dir, de->d_name);
    }
    closedir(d);
    return rc;
}

/* The installed state in sub says what the snapshot's header does. */
static int bootstrap_check_state(const char *sub, const snap_info *info, const char *path,
                                 tk_why *why)
{
    state *st = NULL;
    state_txn *t = NULL;
    uint8_t chain[TK_HASH_LEN];
    int rc = state_open(sub, false, &st);

    if (rc) {
        tk_say(why, rc, "bootstrap: the state in snapshot %s does not open: %s", path,
               tk_strerror(rc));
        goto done;
    }
    if (!state_format_ok(st)) {
        rc = tk_say(why, TK_EINVAL, "bootstrap: the state in snapshot %s has another layout "
                    "(another tokend version): take the snapshot with this one", path);
        goto done;
    }
    if ((rc = state_begin(st, false, &t)))
        goto done;
    if (state_applied_seq(t) != info->seq ||
        (info->seq && (!state_chain(t, chain) || sodium_memcmp(chain, info->hash, TK_HASH_LEN))))
        rc = tk_say(why, TK_ECORRUPT, "bootstrap: snapshot %s says event %llu, but its state "
                    "holds event %llu or another chain hash", path,
                    (unsigned long long)info->seq, (unsigned long long)state_applied_seq(t));
done:
    state_abort(t);
    state_close(st);
    return rc;
}

int eng_bootstrap(const char *dir, const char *snapshot_path, tk_why *why)
{
    char *tmp = xasprintf("%s.bootstrap", dir), *sub = xpath(tmp, "state");
    char *logdir = xpath(tmp, "log");
    snap_info info;
    bool made = false;
    int rc;

    if ((rc = eng_bootstrap_target(dir, why)) || (rc = remove_tree(tmp, why)))
        goto done;
    if (mkdir(tmp, 0700) != 0) {
        rc = tk_say(why, TK_EIO, "bootstrap: cannot create %s: %s", tmp, strerror(errno));
        goto done;
    }
    made = true;
    if ((rc = snap_install(snapshot_path, sub, &info, why)) ||
        (rc = bootstrap_check_state(sub, &info, snapshot_path, why)) ||
        (rc = elog_base_write(logdir, info.seq, info.hash, why)))
        goto done;
    if (fio_fsync_dir(tmp) != 0 || rename(tmp, dir) != 0 || fio_fsync_parent(dir) != 0)
        rc = tk_say(why, TK_EIO, "bootstrap: cannot move %s to %s: %s", tmp, dir,
                    strerror(errno));
done:
    if (rc && made)
        (void)remove_tree(tmp, NULL); /* nothing half made is left; a retry starts over */
    free(logdir);
    free(sub);
    free(tmp);
    return rc;
}
