/*
 * engine.c - the facade over core and store; see engine.h.
 *
 * A request becomes zero or more events in two steps: validation (rules.h
 * over records read in the batch's write transaction) builds the events,
 * then each is applied to that transaction and its encoding kept for the
 * log. Validation finishes before anything is applied, so a request either
 * contributes all its events or none.
 */
#include "store/engine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "core/err.h"
#include "core/event.h"
#include "core/mp.h"
#include "core/ratelimit.h"
#include "core/rules.h"
#include "core/view.h"
#include "core/xmalloc.h"
#include "core/sha256.h"
#include "store/elog.h"
#include "store/fio.h"
#include "store/keyfile.h"
#include "store/state.h"

#define OPERATOR_KEY_LEN KEYFILE_KEY_LEN
#define REPLAY_BATCH 10000
#define CHECKPOINT_MS 1000  /* flush LMDB at most this long after a commit */
#define BOOT_ID_LEN 36

struct eng {
    char *dir;
    char *logdir;
    elog *log;
    state *st;
    view *v;
    bool fenced;
    /* LMDB lacks a batch the log holds (a step after the log's fsync
     * failed): it was set aside for a rebuild at the next open, and
     * listings, which read LMDB, are refused until then. */
    bool stale;
    char fence_msg[sizeof(((eng_res *)0)->msg)]; /* why writes are refused */
    secret_pool *pool;
    rl *rate;                       /* token creations per user (the tenant's rate, burst) */
    /* The storage reserve (DIR/reserve; "space" below). */
    int reserve_fd;                 /* -1: none could be made */
    uint64_t reserve_want;          /* its size when whole */
    uint64_t reserve_have;          /* its size now */              /* randomness for new credentials (NULL: none) */
    /* LMDB commits without fsync (the log is the durable copy); a marker
     * file says "commits may be unflushed, made on boot <id>". */
    bool nosync;
    bool dirty;                     /* the marker is on disk */
    bool log_open;                  /* elog_open_end has succeeded */
    int64_t synced_ms;              /* last checkpoint */
    char boot_id[BOOT_ID_LEN + 1];
    char *marker;                   /* DIR/state.unsynced */
    char op_key[OPERATOR_KEY_LEN + 1];
    uint8_t op_hash[TK_HASH_LEN];
    /* Per-batch scratch, kept between calls. */
    mpw evbuf;          /* encoded events, back to back */
    size_t *evoff;      /* evoff[i]: end offset of event i in evbuf */
    size_t nev, evcap;
    st_change *changes; /* what the view learns when the batch commits */
    size_t nchg, chgcap;
};

static _Thread_local char last_error[512];

const char *eng_last_error(void)
{
    return last_error;
}

__attribute__((format(printf, 1, 2)))
static void set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the view learns from changes ------------------------------------ */

static void view_learn(void *arg, const st_change *c)
{
    view *v = arg;
    switch (c->type) {
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
    case EV_TOKEN_DELETE:
        view_cred_del(v, &c->cid);
        break;
    default:
        break;
    }
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
        view_learn(l->v, c);
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

/* Collects a change for publishing after commit. */
static void collect(void *arg, const st_change *c)
{
    eng *e = arg;
    if (e->nchg == e->chgcap) {
        e->chgcap = e->chgcap ? e->chgcap * 2 : 16;
        e->changes = xrealloc(e->changes, e->chgcap * sizeof *e->changes);
    }
    e->changes[e->nchg++] = *c;
}

/* ---- LMDB checkpoints ------------------------------------------------- *
 *
 * Every change is durable in the event log before it is acknowledged, so
 * LMDB need not be fsynced at each commit: it is opened with MDB_NOSYNC
 * and flushed at checkpoints (at most CHECKPOINT_MS after a commit, and at
 * close). That saves one fsync per batch on the write path.
 *
 * A process crash loses nothing of LMDB (its writes are in the page cache,
 * in commit order), and the open replays the log after LMDB's applied
 * sequence as always. A machine crash (power, kernel) between checkpoints
 * can leave LMDB's meta page on disk ahead of its data pages. So before the
 * first unflushed commit after a checkpoint, the file DIR/state.unsynced is
 * written and fsynced holding this boot's id (/proc/sys/kernel/random/
 * boot_id); a checkpoint removes it. At open, a marker from another boot
 * means the machine went down with LMDB unflushed: LMDB is set aside
 * (DIR/state.untrusted-<time>) and rebuilt from the log. Where the boot id
 * cannot be read, LMDB is synced at every commit instead. */

static int read_boot_id(char out[BOOT_ID_LEN + 1])
{
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, out, BOOT_ID_LEN);
    close(fd);
    if (n != BOOT_ID_LEN)
        return -1;
    out[BOOT_ID_LEN] = '\0';
    return 0;
}

/* Written to a temporary name and renamed, so that a kill part-way never
 * leaves a short marker (which would read as another boot's). */
static int mark_unsynced(eng *e)
{
    char *tmp = xasprintf("%s.tmp", e->marker);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0;
    if (ok) {
        ssize_t n = write(fd, e->boot_id, BOOT_ID_LEN);
        if (n >= 0 && n != BOOT_ID_LEN)
            errno = EIO; /* short write: errno was not set */
        ok = n == BOOT_ID_LEN && fsync(fd) == 0;
        close(fd);
    }
    ok = ok && rename(tmp, e->marker) == 0 && fio_fsync_dir(e->dir) == 0;
    if (!ok) {
        int saved = errno;
        unlink(tmp); /* best effort; errno is the failure's */
        errno = saved;
    }
    free(tmp);
    if (!ok)
        return TK_EIO;
    e->dirty = true;
    return 0;
}

/* Renames the LMDB directory state_dir to state_dir.<why>-<time>[-k], a
 * name not taken yet (two set-asides can fall in one second), and fsyncs
 * the data directory. later: the rebuild is at the next open, not now.
 * 0 (also when there is no state_dir) or TK_EIO. */
static int set_aside(eng *e, const char *state_dir, const char *why, const char *what,
                     bool later)
{
    long long now = (long long)time(NULL);
    char *aside = NULL;
    int rc = TK_EIO;
    struct stat st;

    bool free_name = false;
    for (int k = 0; k < 1000 && !free_name; k++) {
        free(aside);
        aside = k ? xasprintf("%s.%s-%lld-%d", state_dir, why, now, k)
                  : xasprintf("%s.%s-%lld", state_dir, why, now);
        free_name = lstat(aside, &st) != 0 && errno == ENOENT;
    }
    if (!free_name) {
        set_error("cannot set aside %s: no free name like %s", state_dir, aside);
    } else if (rename(state_dir, aside) != 0) {
        if (errno == ENOENT)
            rc = 0; /* no state to set aside: it is built from the log */
        else
            set_error("cannot set aside %s: %s", state_dir, strerror(errno));
    } else if (fio_fsync_dir(e->dir) != 0) {
        set_error("cannot fsync %s: %s", e->dir, strerror(errno));
    } else {
        fprintf(stderr, "tokend: %s: %s the state from the event log (the old state "
                        "is kept in %s)\n", what, later ? "the next start rebuilds" : "rebuilding",
                aside);
        rc = 0;
    }
    free(aside);
    return rc;
}

static int checkpoint(eng *e)
{
    if (state_sync(e->st) != 0)
        return TK_EIO;
    if (unlink(e->marker) != 0 && errno != ENOENT)
        return TK_EIO;
    if (fio_fsync_dir(e->dir) != 0)
        return TK_EIO;
    e->dirty = false;
    e->synced_ms = now_ms();
    return 0;
}

static int log_join(eng *e);

/* At open: sets LMDB aside when a marker from another boot says the machine
 * went down with unflushed commits. */
static int check_marker(eng *e, const char *state_dir)
{
    char seen[BOOT_ID_LEN + 1] = {0};
    int fd = open(e->marker, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : TK_EIO;
    ssize_t n = read(fd, seen, BOOT_ID_LEN);
    close(fd);
    if (n == BOOT_ID_LEN && e->nosync && memcmp(seen, e->boot_id, BOOT_ID_LEN) == 0)
        return 0; /* a process crash on this boot: LMDB is whole */
    int rc = log_join(e); /* a damaged log refuses the open before anything moves */
    if (rc)
        return rc;
    rc = set_aside(e, state_dir, "untrusted", "the machine went down before LMDB was flushed",
                   false);
    if (rc == 0 && (unlink(e->marker) != 0 || fio_fsync_dir(e->dir) != 0)) {
        set_error("cannot remove %s: %s", e->marker, strerror(errno));
        rc = TK_EIO;
    }
    return rc;
}

/* ---- space (rule 12: revocation always goes through) ------------------- *
 *
 * DIR/reserve holds reserve_want bytes of the filesystem back: allocated
 * with posix_fallocate, so they are really taken, and statvfs counts them
 * as used. Before a batch is written the free space is compared with what
 * it needs: its log bytes and SPACE_SLACK (LMDB's copy-on-write pages, the
 * marker, the log's look-ahead). Short of that the store is full: requests
 * that would make it hold more get TK_ENOSPC, not applied and fencing
 * nothing, and those that only take access away (deletes, API tokens off,
 * role and user changes that remove) go through, the reserve shrunk by what
 * they need so that they find the room. What they took is owed back: until
 * the reserve is whole again, that much of the free space is not free for
 * growth, and the reserve is grown back as soon as the room is there. With
 * 16 MiB a reserve covers tens of thousands of deletes. */

#define SPACE_SLACK (2ll << 20)

/* Free bytes in the data directory's filesystem (as an unprivileged
 * writer sees them), or INT64_MAX when statvfs cannot tell. */
static int64_t space_free(const eng *e)
{
    struct statvfs sv;
    if (statvfs(e->dir, &sv) != 0)
        return INT64_MAX; /* unknown: the write itself will tell */
    return (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
}

/* The reserve's allocated size now. */
static uint64_t reserve_size(const eng *e)
{
    struct stat st;
    if (e->reserve_fd < 0 || fstat(e->reserve_fd, &st) != 0)
        return 0;
    uint64_t allocated = (uint64_t)st.st_blocks * 512;
    return allocated < (uint64_t)st.st_size ? allocated : (uint64_t)st.st_size;
}

/* Grows the reserve back to its size when spare bytes (free beyond what
 * the batch needs) leave room for it and the slack. Best effort; true when
 * it grew. */
static bool reserve_grow(eng *e, int64_t spare)
{
    if (e->reserve_fd < 0 || e->reserve_have >= e->reserve_want)
        return false;
    int64_t missing = (int64_t)(e->reserve_want - e->reserve_have);
    if (spare < missing + SPACE_SLACK)
        return false;
    if (posix_fallocate(e->reserve_fd, 0, (off_t)e->reserve_want) != 0)
        (void)ftruncate(e->reserve_fd, (off_t)e->reserve_have); /* undo a partial one */
    e->reserve_have = reserve_size(e);
    return true;
}

/* Gives bytes of the reserve back to the filesystem. */
static void reserve_shrink(eng *e, uint64_t bytes)
{
    if (e->reserve_fd < 0 || e->reserve_have == 0)
        return;
    bytes += 1u << 20; /* a little more: the estimate of LMDB's pages is rough */
    uint64_t to = e->reserve_have > bytes ? e->reserve_have - bytes : 0;
    if (ftruncate(e->reserve_fd, (off_t)to) == 0)
        e->reserve_have = reserve_size(e);
}

/* Opens DIR/reserve (0600), creating it; grows it to reserve_want when the
 * filesystem has the room. Never fails the open: a store without a reserve
 * still refuses growth when full, its revocations have no room kept. */
static void reserve_open(eng *e, uint64_t want)
{
    char *path = xpath(e->dir, "reserve");
    e->reserve_want = want;
    e->reserve_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(path);
    e->reserve_have = reserve_size(e);
    int64_t avail = space_free(e);
    reserve_grow(e, avail);
}

/* ---- open ------------------------------------------------------------ */

/* Reads DIR/operator.key, creating it (0600, fsynced) at first start. */
static int operator_key(eng *e)
{
    int rc = keyfile_load(e->dir, "operator.key", "tko_", e->op_key, last_error,
                          sizeof last_error);
    if (rc == 0)
        sha256(e->op_hash, (const uint8_t *)e->op_key, OPERATOR_KEY_LEN);
    return rc;
}

/* Brings LMDB up to the log: applies every record after its applied seq. */
static int replay(eng *e)
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
        set_error("LMDB state has applied event %llu but the log ends at %llu: the log is "
                  "missing records; restore it or rebuild the state with tokenreplay",
                  (unsigned long long)applied, (unsigned long long)last);
        rc = TK_ECORRUPT;
        goto fail;
    }
    if (applied == last) {
        state_abort(t);
        return 0;
    }
    if ((rc = log_join(e))) /* nothing is applied from a log that failed its check */
        goto fail;
    if ((rc = elog_iter_open(e->logdir, applied + 1, &it)))
        goto fail;
    size_t in_txn = 0;
    while ((more = elog_iter_next(it, &seq, &p, &len)) == 1 && seq <= last) {
        if (ev_decode(p, len, &x) != 0) {
            set_error("event %llu in the log cannot be decoded", (unsigned long long)seq);
            rc = TK_ECORRUPT;
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
            set_error("event %llu (%s) does not apply to the state: %s",
                      (unsigned long long)seq, ev_type_name(x.type), tk_strerror(rc));
            goto fail;
        }
        if (++in_txn == REPLAY_BATCH) {
            rc = state_commit(t);
            t = NULL;
            if (rc || (rc = state_begin(e->st, true, &t)))
                goto fail;
            in_txn = 0;
        }
    }
    if (more < 0) {
        set_error("%s", elog_last_error());
        rc = more;
        goto fail;
    }
    elog_iter_free(it);
    it = NULL;
    if (state_applied_seq(t) != last) {
        set_error("replay stopped at event %llu of %llu",
                  (unsigned long long)state_applied_seq(t), (unsigned long long)last);
        rc = TK_ECORRUPT;
        goto fail;
    }
    rc = state_commit(t);
    t = NULL;
    if (rc)
        goto fail;
    return 0;
fail:
    if (!last_error[0])
        set_error("replaying the log into LMDB failed: %s", tk_strerror(rc));
    state_abort(t);
    elog_iter_free(it);
    return rc;
}

/* Waits for the log's check (elog_open_end), once. Every step of the open
 * that changes the data directory (setting a state aside, creating a new
 * one, replaying) comes after it, so that a damaged log is refused with
 * the directory as it was ("keep the directory", the message says). */
static int log_join(eng *e)
{
    if (e->log_open)
        return 0;
    int rc = elog_open_end(e->log);
    if (rc) {
        set_error("%s", elog_last_error());
        return rc;
    }
    e->log_open = true;
    return 0;
}

int eng_open(const char *dir, const eng_opts *opts, eng **out)
{
    eng *e = xcalloc(1, sizeof *e);
    state_txn *t = NULL;
    char *sub = NULL;
    int rc = TK_EIO;
    elog_opts lo = {.segment_bytes = opts ? opts->segment_bytes : 0};

    last_error[0] = '\0';
    e->dir = xstrdup(dir);
    e->pool = secret_pool_new();
    e->reserve_fd = -1;
    rl_new(&e->rate);
    mpw_init(&e->evbuf);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        set_error("cannot create data directory %s: %s", dir, strerror(errno));
        goto fail;
    }
    if ((rc = operator_key(e)))
        goto fail;
    reserve_open(e, opts && opts->reserve_bytes ? opts->reserve_bytes : ENG_RESERVE_DEFAULT);
    e->logdir = xpath(dir, "log");
    /* The log's full check runs on its own thread while LMDB opens and
     * the view loads (the two take about as long); it must pass before
     * anything is written to LMDB (replay) or the open succeeds. */
    if ((rc = elog_open_begin(e->logdir, &lo, &e->log))) {
        set_error("%s", elog_last_error());
        goto fail;
    }
    sub = xpath(dir, "state");
    e->marker = xpath(dir, "state.unsynced");
    e->nosync = read_boot_id(e->boot_id) == 0;
    if ((rc = check_marker(e, sub)))
        goto fail;
    struct stat sst;
    if (stat(sub, &sst) != 0 && (rc = log_join(e))) /* a new state: after the verdict */
        goto fail;
    if ((rc = state_open(sub, e->nosync, &e->st))) {
        set_error("cannot open LMDB state in %s: %s", sub, tk_strerror(rc));
        goto fail;
    }
    if (!state_format_ok(e->st)) { /* an older layout: rebuild from the log */
        state_close(e->st);
        e->st = NULL;
        if ((rc = log_join(e)))
            goto fail;
        rc = set_aside(e, sub, "oldformat", "the LMDB state has an older layout", false);
        if (rc || (rc = state_open(sub, e->nosync, &e->st))) {
            if (!last_error[0])
                set_error("cannot open LMDB state in %s: %s", sub, tk_strerror(rc));
            goto fail;
        }
    }
    if (e->nosync && mark_unsynced(e) != 0) {
        /* A full disk must not keep verification down: use the reserve,
         * and if there is still no room for the marker, let LMDB sync each
         * commit instead (no marker needed; writes are refused anyway). */
        int err = errno;
        if (err == ENOSPC || err == EDQUOT) {
            reserve_shrink(e, e->reserve_have);
            if (mark_unsynced(e) != 0 && state_set_nosync(e->st, false) == 0) {
                e->nosync = false;
                err = 0;
            } else if (e->dirty) {
                err = 0;
            }
        }
        if (err) {
            set_error("cannot write %s: %s", e->marker, strerror(err));
            rc = TK_EIO;
            goto fail;
        }
    }
    if ((rc = replay(e)))
        goto fail;
    if (e->nosync && (rc = checkpoint(e))) {
        set_error("cannot flush LMDB in %s", sub);
        goto fail;
    }
    view_new(&e->v);
    if (!(rc = state_begin(e->st, false, &t))) {
        view_reserve(e->v, state_cred_count(t)); /* the load never grows the index */
        loader *l = xcalloc(1, sizeof *l);
        l->v = e->v;
        rc = state_load(t, load_learn, l);
        load_flush(l);
        free(l);
    }
    if (rc) {
        set_error("cannot load the state into memory: %s", tk_strerror(rc));
        goto fail;
    }
    state_abort(t);
    t = NULL;
    view_settle(e->v); /* no growth left half done by the bulk load */
    if ((rc = log_join(e)))
        goto fail;
    free(sub);
    *out = e;
    return 0;
fail:
    state_abort(t);
    free(sub);
    eng_close(e);
    return rc;
}

void eng_close(eng *e)
{
    if (!e)
        return;
    view_free(e->v);
    if (e->st && e->dirty && !e->fenced)
        checkpoint(e);
    state_close(e->st);
    free(e->marker);
    elog_close(e->log);
    mpw_free(&e->evbuf);
    free(e->evoff);
    free(e->changes);
    sodium_memzero(e->op_key, sizeof e->op_key);
    secret_pool_free(e->pool);
    rl_free(e->rate);
    if (e->reserve_fd >= 0)
        close(e->reserve_fd);
    free(e->logdir);
    free(e->dir);
    free(e);
}

const char *eng_operator_key(const eng *e)
{
    return e->op_key;
}

/* ---- validation: requests into events ------------------------------- */

/* The event a request produces (n is 0 or 1: one request, one event, so a
 * torn log tail never keeps half a request). */
typedef struct plan {
    secret_pool *pool;  /* the engine's, for new credentials */
    rl *rate;           /* the engine's, for creations per user */
    int64_t now_ms;
    size_t n;
    bool revokes;       /* the event only takes access away (rule 12: it may use the reserve) */
    ev evs[1];
    /* Storage the events' strings may point into. */
    char slugs[3][TK_SLUG_MAX + 1];
    char keys[TK_MAX_ROLES][TK_KEY_MAX + 1];
} plan;

static bool str_ok_slug(tk_str s)
{
    return model_slug_ok(s.p, s.n);
}

/* Why the request being planned was refused: one line for the requester,
 * copied into its eng_res by stage(). Empty when the code says enough. */
static _Thread_local char why_buf[sizeof(((eng_res *)0)->msg)];

static int why(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int why(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why_buf, sizeof why_buf, fmt, ap);
    va_end(ap);
    return code;
}

/* A slice, printable with "%.*s". */
#define SL(s) (int)((s).n > 64 ? 64 : (s).n), (s).p

static void set_str(tk_str *dst, const char *s)
{
    dst->p = s;
    dst->n = strlen(s);
}

/* The tenant (and account) a request acts in: a user's own, or the ones an
 * operator names. */
static int scope(state_txn *t, const eng_req *r, bool need_account, st_tenant *tn,
                 st_account *ac)
{
    int rc;
    if (r->actor.kind == TK_ACTOR_USER) {
        if ((rc = state_tenant_by_id(t, r->actor.tenant, tn)))
            return rc;
        return need_account ? state_account_by_id(t, r->actor.account, ac) : 0;
    }
    if (!str_ok_slug(r->tenant))
        return why(TK_EINVAL, "'%.*s' is not a tenant slug ([a-z0-9][a-z0-9-]{0,62})",
                   SL(r->tenant));
    if ((rc = state_tenant_by_slug(t, r->tenant.p, r->tenant.n, tn)))
        return rc == TK_ENOTFOUND ? why(rc, "no tenant '%.*s'", SL(r->tenant)) : rc;
    if (!need_account)
        return 0;
    if (!str_ok_slug(r->account))
        return why(TK_EINVAL, "'%.*s' is not an account slug ([a-z0-9][a-z0-9-]{0,62})",
                   SL(r->account));
    rc = state_account_by_slug(t, tn->id, r->account.p, r->account.n, ac);
    return rc == TK_ENOTFOUND
               ? why(rc, "no account '%.*s' in tenant '%s'", SL(r->account), tn->slug)
               : rc;
}

/* Checks role keys exist in the tenant; fills their levels. */
static int check_roles(state_txn *t, uint32_t tenant, const tk_str *items, uint32_t n,
                       uint32_t *levels)
{
    if (n > TK_MAX_ROLES)
        return why(TK_ELIMIT, "at most %d roles", TK_MAX_ROLES);
    for (uint32_t i = 0; i < n; i++) {
        st_role role;
        if (!model_key_ok(items[i].p, items[i].n))
            return why(TK_EINVAL, "'%.*s' is not a role key", SL(items[i]));
        int rc = state_role_by_key(t, tenant, items[i].p, items[i].n, &role);
        if (rc)
            return rc == TK_ENOTFOUND ? why(rc, "no role '%.*s' in this tenant", SL(items[i]))
                                      : rc;
        if (levels)
            levels[i] = role.level;
    }
    return 0;
}

/* Fills a credential-creating event with a fresh id and secret. */
static void new_credential(plan *p, ev *x, tk_kind kind, eng_res *res)
{
    secret_new_credential(p->pool, kind, &x->id, res->secret, x->hash);
    res->id = x->id;
}

/* Does a USER_SET only take access away: the portal flag not given, and
 * every role kept one the user has already? */
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

/* Does a ROLE_PUT only take access away: an existing role, no stronger,
 * with no permission it did not have? */
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

static int plan_user(state_txn *t, const eng_req *r, int64_t now_s, plan *p, eng_res *res)
{
    st_tenant tn;
    st_account ac;
    st_user u;
    int rc = scope(t, r, true, &tn, &ac);
    if (rc)
        return rc;
    if (!str_ok_slug(r->user))
        return why(TK_EINVAL, "'%.*s' is not a user slug ([a-z0-9][a-z0-9-]{0,62})", SL(r->user));
    rc = state_user_by_slug(t, ac.id, r->user.p, r->user.n, &u);
    if (r->op == ENG_USER_CREATE && rc != TK_ENOTFOUND)
        return rc ? rc : why(TK_EEXIST, "user '%.*s' already exists in %s/%s", SL(r->user),
                             tn.slug, ac.slug);
    if (r->op != ENG_USER_CREATE && rc)
        return rc == TK_ENOTFOUND ? why(rc, "no user '%.*s' in %s/%s", SL(r->user), tn.slug,
                                        ac.slug)
                                  : rc;

    ev *x = &p->evs[p->n++];
    if (r->op == ENG_KEY_CREATE) {
        if (tn.lim.keys && u.nkeys >= tn.lim.keys)
            return why(TK_ELIMIT, "user '%s' has %u personal keys, the limit of tenant '%s' "
                                  "(max_keys); delete one first", u.slug, u.nkeys, tn.slug);
        ev_init(x, EV_KEY_CREATE, 0);
    } else {
        ev_init(x, r->op == ENG_USER_CREATE ? EV_USER_CREATE : EV_USER_PUT, 0);
        if (r->op == ENG_USER_CREATE || r->has_items) {
            x->nitems = r->nitems;
            memcpy(x->items, r->items, r->nitems * sizeof *r->items);
            model_dedup(x->items, &x->nitems);
            if ((rc = check_roles(t, tn.id, x->items, x->nitems, NULL)))
                return rc;
        } else { /* unchanged roles: the current ones that still exist */
            for (uint32_t i = 0; i < u.nroles; i++) {
                st_role role;
                if (state_role_by_id(t, u.roles[i], &role) == 0) {
                    uint32_t k = x->nitems++;
                    strcpy(p->keys[k], role.key);
                    set_str(&x->items[k], p->keys[k]);
                }
            }
        }
        if (r->op == ENG_USER_CREATE)
            x->flag = r->flag == 1;
        else
            x->flag = r->flag < 0 ? u.portal : r->flag == 1;
        if (r->op == ENG_USER_SET)
            p->revokes = user_set_revokes(t, tn.id, &u, x);
    }
    set_str(&x->tenant, strcpy(p->slugs[0], tn.slug));
    set_str(&x->account, strcpy(p->slugs[1], ac.slug));
    x->user = r->user;
    if (r->op != ENG_USER_SET) { /* with a personal key */
        if (!model_expiry_ok(r->expires, now_s))
            return why(TK_EINVAL, "expires_at must be in the future (and before 2106), or 0 "
                                  "for never");
        x->expires = r->expires;
        new_credential(p, x, TK_KIND_PERSONAL, res);
    }
    return 0;
}

static int plan_token_create(state_txn *t, const eng_req *r, int64_t now_s, plan *p,
                             eng_res *res)
{
    st_tenant tn;
    st_account ac;
    st_user u;
    uint32_t user_levels[TK_MAX_ROLES], nuser = 0, role_levels[TK_MAX_ROLES];
    tk_str roles[TK_MAX_ROLES];
    uint32_t nroles = r->nitems;
    int rc;

    if (r->actor.kind != TK_ACTOR_USER)
        return why(rules_may_manage_tokens(&r->actor, false, true),
                   "tokens are created by a user (personal key), not by the operator key");
    if ((rc = scope(t, r, true, &tn, &ac)) || (rc = state_user_by_id(t, r->actor.user, &u)))
        return rc == TK_ENOTFOUND ? TK_EUNAUTH : rc;
    for (uint32_t i = 0; i < u.nroles; i++) {
        st_role role;
        if (state_role_by_id(t, u.roles[i], &role) == 0)
            user_levels[nuser++] = role.level;
    }
    if (nroles > TK_MAX_ROLES)
        return why(TK_ELIMIT, "at most %d roles on a token", TK_MAX_ROLES);
    memcpy(roles, r->items, nroles * sizeof *roles);
    model_dedup(roles, &nroles);
    if (!model_text_ok(r->desc.p, r->desc.n, TK_DESC_MAX))
        return why(TK_EINVAL, "the description must be UTF-8 text of at most %d bytes",
                   TK_DESC_MAX);
    if (!model_expiry_ok(r->expires, now_s))
        return why(TK_EINVAL, "expires_at must be in the future (and before 2106), or 0 for "
                              "never");
    /* Rule 2 before anything about roles is revealed. */
    if ((rc = rules_may_manage_tokens(&r->actor, u.portal, true)))
        return why(rc, "user '%s' may not manage API tokens (no portal access)", u.slug);
    if ((rc = check_roles(t, tn.id, roles, nroles, role_levels)))
        return rc;
    if ((rc = rules_token_create(tn.api_tokens, &r->actor, u.portal, user_levels, nuser,
                                 role_levels, nroles))) {
        if (rc == TK_EDISABLED)
            return why(rc, "API tokens are switched off for tenant '%s'", tn.slug);
        if (rc == TK_EINVAL)
            return why(rc, "a token needs at least one role");
        if (nuser == 0)
            return why(rc, "user '%s' has no roles, so may give a token none", u.slug);
        uint32_t strongest = user_levels[0];
        for (uint32_t i = 1; i < nuser; i++)
            strongest = user_levels[i] < strongest ? user_levels[i] : strongest;
        for (uint32_t i = 0; i < nroles; i++)
            if (role_levels[i] < strongest)
                return why(rc, "role '%.*s' (level %u) is stronger than %s's own roles (level %u)",
                           SL(roles[i]), role_levels[i], u.slug, strongest);
        return rc;
    }
    if (tn.lim.tokens && ac.live >= tn.lim.tokens)
        return why(TK_ELIMIT, "account '%s' has %u API tokens, the limit of tenant '%s' "
                              "(max_tokens); delete some first", ac.slug, ac.live, tn.slug);
    int64_t wait_ms = 0;
    if (!rl_take(p->rate, u.id, tn.lim.rate, tn.lim.burst, p->now_ms, &wait_ms)) {
        res->retry_after_ms = (uint32_t)(wait_ms > 0 ? wait_ms : 1);
        return why(TK_ERATE, "user '%s' may create %u API tokens a second (burst %u): retry "
                             "after %u ms", u.slug, tn.lim.rate, tn.lim.burst, res->retry_after_ms);
    }

    ev *x = &p->evs[p->n++];
    ev_init(x, EV_TOKEN_CREATE, 0);
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

static int plan_cred_delete(state_txn *t, const eng_req *r, plan *p)
{
    st_cred cr;
    int rc;
    bool token = r->op == ENG_TOKEN_DELETE;
    if (token && r->actor.kind == TK_ACTOR_USER) {
        st_user u;
        if ((rc = state_user_by_id(t, r->actor.user, &u)))
            return rc == TK_ENOTFOUND ? TK_EUNAUTH : rc;
        if ((rc = rules_may_manage_tokens(&r->actor, u.portal, false)))
            return why(rc, "user '%s' may not manage API tokens (no portal access)", u.slug);
    } else if (r->actor.kind != TK_ACTOR_OPERATOR) {
        return why(TK_EDENIED, "only the operator key manages personal keys");
    }
    char idstr[TK_ID_STR_LEN + 1];
    secret_id_format(&r->id, idstr);
    rc = state_cred_by_id(t, &r->id, &cr);
    /* Absent, another kind, or another tenant's or account's: all look the
     * same (rule 7). */
    if (rc == TK_ENOTFOUND || (!rc && (cr.kind != (token ? TK_KIND_TOKEN : TK_KIND_PERSONAL)
                                       || !rules_may_see(&r->actor, cr.tenant, cr.account))))
        return why(TK_ENOTFOUND, "no %s %s%s", token ? "token" : "personal key", idstr,
                   r->actor.kind == TK_ACTOR_USER ? " in your account" : "");
    if (rc)
        return rc;
    ev *x = &p->evs[p->n++];
    ev_init(x, token ? EV_TOKEN_DELETE : EV_KEY_DELETE, 0);
    x->id = r->id;
    p->revokes = true;
    return 0;
}

/* Operator-only operations on tenants, permissions, roles and accounts. */
static int plan_admin(state_txn *t, const eng_req *r, plan *p)
{
    st_tenant tn;
    st_account ac;
    st_role role;
    st_perm perm;
    int rc;

    ev *x = &p->evs[p->n++];
    if (!str_ok_slug(r->tenant))
        return why(TK_EINVAL, "'%.*s' is not a tenant slug ([a-z0-9][a-z0-9-]{0,62})",
                   SL(r->tenant));
    if (r->op == ENG_TENANT_CREATE) {
        rc = state_tenant_by_slug(t, r->tenant.p, r->tenant.n, &tn);
        if (rc != TK_ENOTFOUND)
            return rc ? rc : why(TK_EEXIST, "tenant '%.*s' already exists", SL(r->tenant));
        ev_init(x, EV_TENANT_CREATE, 0);
        x->tenant = r->tenant;
        return 0;
    }
    if ((rc = state_tenant_by_slug(t, r->tenant.p, r->tenant.n, &tn)))
        return rc == TK_ENOTFOUND ? why(rc, "no tenant '%.*s'", SL(r->tenant)) : rc;
    switch (r->op) {
    case ENG_TENANT_SET:
        if (r->flag < 0 && !r->limits_set)
            return why(TK_EINVAL, "nothing to set: give api_tokens or a limit");
        ev_init(x, EV_TENANT_SET, 0);
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
        break;
    case ENG_PERM_PUT:
        if (!model_key_ok(r->key.p, r->key.n))
            return why(TK_EINVAL, "'%.*s' is not a permission key", SL(r->key));
        if (!model_text_ok(r->desc.p, r->desc.n, TK_DESC_MAX))
            return why(TK_EINVAL, "the description must be UTF-8 text of at most %d bytes",
                       TK_DESC_MAX);
        if (state_perm_by_key(t, tn.id, r->key.p, r->key.n, &perm) == TK_ENOTFOUND
            && tn.nperms >= TK_MAX_TENANT_PERMS)
            return why(TK_ELIMIT, "at most %d permissions in a tenant", TK_MAX_TENANT_PERMS);
        ev_init(x, EV_PERM_PUT, 0);
        x->key = r->key;
        x->desc = r->desc;
        break;
    case ENG_ROLE_PUT: {
        if (!model_key_ok(r->key.p, r->key.n))
            return why(TK_EINVAL, "'%.*s' is not a role key ([A-Za-z0-9][A-Za-z0-9:._-]*)",
                       SL(r->key));
        if (!model_text_ok(r->name.p, r->name.n, TK_NAME_MAX))
            return why(TK_EINVAL, "the name must be UTF-8 text of at most %d bytes", TK_NAME_MAX);
        if (r->level > TK_MAX_LEVEL)
            return why(TK_EINVAL, "levels go from 0 (strongest) to %d", TK_MAX_LEVEL);
        if (r->nitems > TK_MAX_ROLE_PERMS)
            return why(TK_ELIMIT, "at most %d permissions in a role", TK_MAX_ROLE_PERMS);
        ev_init(x, EV_ROLE_PUT, 0);
        x->nitems = r->nitems;
        memcpy(x->items, r->items, r->nitems * sizeof *r->items);
        model_dedup(x->items, &x->nitems); /* a permission named twice is there once */
        uint32_t fresh = 0;
        for (uint32_t i = 0; i < x->nitems; i++) {
            if (!model_key_ok(x->items[i].p, x->items[i].n))
                return why(TK_EINVAL,
                           "'%.*s' is not a permission key ([A-Za-z0-9][A-Za-z0-9:._-]*)",
                           SL(x->items[i]));
            rc = state_perm_by_key(t, tn.id, x->items[i].p, x->items[i].n, &perm);
            if (rc == TK_ENOTFOUND)
                fresh++;
            else if (rc)
                return rc;
        }
        if (tn.nperms + fresh > TK_MAX_TENANT_PERMS)
            return why(TK_ELIMIT, "at most %d permissions in a tenant", TK_MAX_TENANT_PERMS);
        x->key = r->key;
        x->name = r->name;
        x->level = r->level;
        if (state_role_by_key(t, tn.id, r->key.p, r->key.n, &role) == TK_ENOTFOUND
            && tn.lim.roles && tn.nroles >= tn.lim.roles)
            return why(TK_ELIMIT, "tenant '%s' has %u roles, its limit (max_roles)", tn.slug,
                       tn.nroles);
        p->revokes = role_put_revokes(t, tn.id, x);
        break;
    }
    case ENG_ROLE_DELETE:
        if (!model_key_ok(r->key.p, r->key.n))
            return why(TK_EINVAL, "'%.*s' is not a role key", SL(r->key));
        if ((rc = state_role_by_key(t, tn.id, r->key.p, r->key.n, &role)))
            return rc == TK_ENOTFOUND ? why(rc, "no role '%.*s' in tenant '%s'", SL(r->key), tn.slug)
                                      : rc;
        ev_init(x, EV_ROLE_DELETE, 0);
        x->key = r->key;
        p->revokes = true;
        break;
    case ENG_ACCOUNT_CREATE:
        if (!str_ok_slug(r->account))
            return why(TK_EINVAL, "'%.*s' is not an account slug ([a-z0-9][a-z0-9-]{0,62})",
                       SL(r->account));
        rc = state_account_by_slug(t, tn.id, r->account.p, r->account.n, &ac);
        if (rc != TK_ENOTFOUND)
            return rc ? rc : why(TK_EEXIST, "account '%.*s' already exists in tenant '%s'",
                                 SL(r->account), tn.slug);
        ev_init(x, EV_ACCOUNT_CREATE, 0);
        x->account = r->account;
        break;
    default:
        return TK_EINVAL;
    }
    x->tenant = r->tenant;
    return 0;
}

/* Rule 11: a user acts only through a personal key that still stands in t
 * (the batch's transaction, after the writes before this request). */
static int actor_stands(state_txn *t, const tk_actor *a, int64_t now_s)
{
    st_cred key;
    int rc = state_cred_by_id(t, &a->key, &key);
    if (rc && rc != TK_ENOTFOUND)
        return rc;
    if (!rules_key_acts(rc == 0, key.kind, key.user, a->user, key.expires, now_s))
        return why(TK_EUNAUTH, "the personal key is no longer valid (deleted or expired)");
    return 0;
}

/* Validates r against the state in t and fills p with its events. */
static int plan_request(state_txn *t, const eng_req *r, int64_t now_s, plan *p, eng_res *res)
{
    int rc;
    p->n = 0;
    p->revokes = false;
    if (r->actor.kind != TK_ACTOR_OPERATOR && r->actor.kind != TK_ACTOR_USER)
        return TK_EUNAUTH;
    if (r->actor.kind == TK_ACTOR_USER && (rc = actor_stands(t, &r->actor, now_s)))
        return rc;
    switch (r->op) {
    case ENG_TOKEN_CREATE:
        return plan_token_create(t, r, now_s, p, res);
    case ENG_TOKEN_DELETE:
    case ENG_KEY_DELETE:
        return plan_cred_delete(t, r, p);
    default:
        break;
    }
    /* Everything else is the vendor's backend: the operator only. */
    if (r->actor.kind != TK_ACTOR_OPERATOR)
        return why(TK_EDENIED, "only the operator key manages tenants, roles, accounts and users");
    switch (r->op) {
    case ENG_USER_CREATE:
    case ENG_USER_SET:
    case ENG_KEY_CREATE:
        return plan_user(t, r, now_s, p, res);
    case ENG_TENANT_CREATE:
    case ENG_TENANT_SET:
    case ENG_PERM_PUT:
    case ENG_ROLE_PUT:
    case ENG_ROLE_DELETE:
    case ENG_ACCOUNT_CREATE:
        return plan_admin(t, r, p);
    default:
        return TK_EINVAL;
    }
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
    p.pool = e->pool;
    p.rate = e->rate;
    p.now_ms = ts;
    uint64_t seq = elog_next_seq(e->log);
    mpw_reset(&e->evbuf);
    e->nev = 0;
    e->nchg = 0;
    for (size_t i = 0; i < n; i++) {
        memset(&res[i], 0, sizeof res[i]);
        why_buf[0] = '\0';
        if (full_msg && op_grows(reqs[i].op)) {
            res[i].status = TK_ENOSPC;
            snprintf(res[i].msg, sizeof res[i].msg, "%s", full_msg);
            continue;
        }
        res[i].status = plan_request(t, &reqs[i], ts / 1000, &p, &res[i]);
        if (res[i].status == 0 && full_msg && !p.revokes) {
            res[i].status = TK_ENOSPC;
            snprintf(why_buf, sizeof why_buf, "%s", full_msg);
        }
        if (res[i].status) {
            res[i].secret[0] = '\0';
            memcpy(res[i].msg, why_buf, sizeof res[i].msg);
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
    }
    return 0;
}

/* Refuses every later write, saying why in their replies (one line). */
__attribute__((format(printf, 2, 3)))
static void fence(eng *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->fence_msg, sizeof e->fence_msg, fmt, ap);
    va_end(ap);
    e->fenced = true;
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
    char *what = xasprintf("%s failed after a batch was durable in the log", step);
    e->stale = true;
    last_error[0] = '\0';
    if (set_aside(e, sub, "failed", what, true) != 0)
        fprintf(stderr, "tokend: %s; %s: stop tokend and move %s away before the next start "
                        "(it is rebuilt from the log)\n", what, eng_last_error(), sub);
    free(what);
    free(sub);
    fence(e, "%s failed after a committed batch (%s): writes refused until tokend restarts "
             "(the state is then rebuilt from the log)", step, strerror(err));
}

/* Stages the batch into a new write transaction (*out), growing LMDB's
 * map when it is full, then buffers its events in the log. */
static int stage_all(eng *e, const eng_req *reqs, eng_res *res, size_t n, int64_t ts,
                     const char *full_msg, state_txn **out)
{
    state_txn *t;
    int rc;
    for (;;) {
        if ((rc = state_begin(e->st, true, &t)))
            return rc;
        rc = stage(e, t, reqs, res, n, ts, full_msg);
        if (rc != TK_ELIMIT)
            break;
        state_abort(t); /* the map is full: grow it and stage again */
        if ((rc = state_grow(e->st)))
            return rc;
    }
    size_t off = 0;
    for (size_t i = 0; rc == 0 && i < e->nev; i++) {
        rc = elog_append(e->log, e->evbuf.buf.data + off, e->evoff[i] - off, NULL);
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

int eng_commit(eng *e, const eng_req *reqs, eng_res *res, size_t n)
{
    state_txn *t = NULL;
    int rc;
    int64_t ts = now_ms();
    char full_msg[sizeof res->msg];

    e->nchg = 0;
    if (e->fenced) {
        fail_all(res, n, TK_EFENCED);
        for (size_t i = 0; i < n; i++)
            memcpy(res[i].msg, e->fence_msg, sizeof res[i].msg);
        return TK_EFENCED;
    }
    if ((rc = stage_all(e, reqs, res, n, ts, NULL, &t)))
        goto fail;
    if (e->nev > 0) {
        /* Rule 12: is there room? Short of it, stage again with growth
         * refused, and let what remains (revocations) use the reserve. */
        int64_t need = (int64_t)elog_pending(e->log) + SPACE_SLACK;
        int64_t avail = space_free(e);
        /* What revocations took from the reserve is not free for growth:
         * it is the reserve's until grown back. */
        int64_t owed = e->reserve_fd >= 0 ? (int64_t)(e->reserve_want - e->reserve_have) : 0;
        if (avail - owed < need) {
            elog_discard(e->log);
            state_abort(t);
            t = NULL;
            snprintf(full_msg, sizeof full_msg, "storage full: %lld bytes free in %s, %lld "
                     "needed; only revocations (deletes, API tokens off, ...) are accepted",
                     (long long)avail, e->dir, (long long)need);
            if ((rc = stage_all(e, reqs, res, n, ts, full_msg, &t)))
                goto fail;
            need = (int64_t)elog_pending(e->log) + SPACE_SLACK;
            if (e->nev > 0 && avail < need)
                reserve_shrink(e, (uint64_t)(need - avail));
            elog_set_lookahead(e->log, 0);
        } else {
            if (reserve_grow(e, avail - need)) {
                avail = space_free(e);
                owed = (int64_t)(e->reserve_want - e->reserve_have);
            }
            /* The log's look-ahead takes only room beyond the slack. */
            int64_t spare = avail - owed - need;
            elog_set_lookahead(e->log, spare > 0 ? (uint64_t)spare : 0);
        }
    }
    if (e->nev == 0) { /* every request refused: nothing to log */
        state_abort(t);
        return 0;
    }
    if ((rc = elog_sync(e->log)) == TK_ENOSPC) {
        /* No room after all (the disk filled since the check): nothing
         * was written, the log goes on; refused like growth, not applied. */
        state_abort(t);
        e->nchg = 0;
        for (size_t i = 0; i < n; i++) {
            sodium_memzero(res[i].secret, sizeof res[i].secret);
            if (res[i].status == 0) {
                res[i].status = TK_ENOSPC;
                snprintf(res[i].msg, sizeof res[i].msg, "storage full: %s", elog_last_error());
            }
        }
        return 0;
    }
    if (rc) {
        fence(e, "not applied: %s; writes refused until tokend restarts", elog_last_error());
        goto fail;
    }
    /* The commit point: from here the batch is committed, whatever fails. */
    if (e->nosync && !e->dirty && mark_unsynced(e) != 0) {
        /* The marker must be on disk before LMDB holds an unflushed
         * commit: without it, LMDB is not written at all. */
        int err = errno;
        state_abort(t);
        late_failure(e, "writing state.unsynced", err);
        return 0;
    }
    rc = state_commit(t);
    t = NULL;
    if (rc) {
        late_failure(e, "the LMDB commit", errno);
        return 0;
    }
    if (e->nosync && now_ms() - e->synced_ms >= CHECKPOINT_MS && checkpoint(e) != 0)
        late_failure(e, "flushing LMDB", errno);
    return 0;
fail:
    state_abort(t);
    e->fenced = true;
    if (!e->fence_msg[0])
        fence(e, "not applied: %s; writes refused until tokend restarts", tk_strerror(rc));
    e->nchg = 0;
    for (size_t i = 0; i < n; i++)
        sodium_memzero(res[i].secret, sizeof res[i].secret);
    rc = rc == TK_EFENCED ? TK_EFENCED : TK_EIO;
    fail_all(res, n, rc);
    for (size_t i = 0; i < n; i++)
        memcpy(res[i].msg, e->fence_msg, sizeof res[i].msg);
    return rc;
}

bool eng_fenced(const eng *e, const char **why)
{
    if (why)
        *why = e->fence_msg;
    return e->fenced;
}

void eng_publish(eng *e)
{
    for (size_t i = 0; i < e->nchg; i++)
        view_learn(e->v, &e->changes[i]);
    e->nchg = 0;
}

int eng_exec(eng *e, const eng_req *reqs, eng_res *res, size_t n)
{
    int rc = eng_commit(e, reqs, res, n);
    eng_publish(e);
    return rc;
}

/* ---- authentication, verification, listing ---------------------------- */

int eng_authenticate(const eng *e, const char *cred, size_t len, int64_t now, tk_actor *out)
{
    if (len == OPERATOR_KEY_LEN) {
        uint8_t h[TK_HASH_LEN];
        sha256(h, (const uint8_t *)cred, len);
        if (secret_hash_equal(h, e->op_hash)) {
            memset(out, 0, sizeof *out);
            out->kind = TK_ACTOR_OPERATOR;
            return 0;
        }
        return TK_EUNAUTH;
    }
    return view_auth_personal(e->v, cred, len, now, out) == TK_V_VALID ? 0 : TK_EUNAUTH;
}

tk_verdict eng_verify(const eng *e, const tk_id *client_id, const char *secret, size_t len,
                      int64_t now, tk_verify *out)
{
    return view_verify(e->v, client_id, secret, len, now, out);
}

void eng_verify_start(const eng *e, const view_vreq *reqs, size_t n, view_probe *probes)
{
    view_verify_start(e->v, reqs, n, probes);
}

tk_verdict eng_verify_finish(const eng *e, const view_probe *p, int64_t now, tk_verify *out)
{
    return view_verify_finish(e->v, p, now, out);
}

/* ---- listing cursors ---------------------------------------------------- *
 *
 * A cursor names a position in an account's listing, not a token: the
 * number (st_cred.ord) of the token before it, counted in that account.
 * It is never resolved to a token, so it cannot tell whether any ID exists
 * (a foreign, deleted or made-up one), and a page whose last token was
 * deleted meanwhile still leads to the next. The number is the account's
 * own (how many tokens were ever made in it, which its users may know),
 * not the log's seq, which counts every tenant's changes and would show
 * how busy the others are; and it is the same on every copy of the state
 * (a rebuild, a replica), since the log's order assigns it. A forged
 * cursor is only another position in the caller's own listing. Its text:
 * the 8 bytes big-endian, base64url without padding. */

#define CURSOR_BYTES 8

static void cursor_format(uint64_t ord, char out[ENG_CURSOR_LEN + 1])
{
    uint8_t b[CURSOR_BYTES];
    for (int i = 0; i < CURSOR_BYTES; i++)
        b[i] = (uint8_t)(ord >> (56 - 8 * i));
    sodium_bin2base64(out, ENG_CURSOR_LEN + 1, b, sizeof b,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* 0, or TK_EINVAL when text is not a cursor. */
static int cursor_parse(const char *text, size_t n, uint64_t *ord)
{
    uint8_t b[CURSOR_BYTES];
    size_t len = 0;
    if (n != ENG_CURSOR_LEN
        || sodium_base642bin(b, sizeof b, text, n, NULL, &len, NULL,
                             sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0
        || len != sizeof b)
        return TK_EINVAL;
    uint64_t v = 0;
    for (int i = 0; i < CURSOR_BYTES; i++)
        v = v << 8 | b[i];
    *ord = v;
    return 0;
}

bool eng_cursor_ok(const char *text, size_t n)
{
    uint64_t ord;
    return cursor_parse(text, n, &ord) == 0;
}

typedef struct list_ctx {
    state_txn *t;
    int (*fn)(void *arg, const eng_token_info *info);
    void *arg;
    eng_token_info info;
} list_ctx;

static int list_one(void *arg, const st_cred *c)
{
    list_ctx *lc = arg;
    eng_token_info *in = &lc->info;
    st_user u;
    memset(in, 0, sizeof *in);
    in->client_id = c->id;
    strcpy(in->description, c->desc);
    for (uint32_t i = 0; i < c->nroles; i++) {
        st_role role;
        if (state_role_by_id(lc->t, c->roles[i], &role) == 0)
            strcpy(in->roles[in->nroles++], role.key);
    }
    if (state_user_by_id(lc->t, c->user, &u) == 0)
        strcpy(in->created_by, u.slug);
    in->created_ms = c->created_ms;
    in->expires = c->expires;
    cursor_format(c->ord, in->cursor);
    return lc->fn(lc->arg, in);
}

int eng_token_list(eng *e, const tk_actor *a, tk_str tenant, tk_str account, const tk_str *after,
                   uint32_t limit, int (*fn)(void *arg, const eng_token_info *t), void *arg)
{
    list_ctx lc = {.fn = fn, .arg = arg};
    st_tenant tn;
    st_account ac;
    uint64_t from = 0;
    if (e->stale)
        return TK_EFENCED; /* LMDB lacks a committed batch: it would contradict the view */
    if (after && cursor_parse(after->p, after->n, &from))
        return TK_EINVAL;
    int rc = state_begin(e->st, false, &lc.t);
    if (rc)
        return rc;
    if (a->kind == TK_ACTOR_USER) {
        st_user u;
        why_buf[0] = '\0';
        if ((rc = actor_stands(lc.t, a, time(NULL))))
            goto done;
        if ((rc = state_user_by_id(lc.t, a->user, &u)))
            goto done;
        if ((rc = rules_may_manage_tokens(a, u.portal, false)))
            goto done;
    }
    eng_req r;
    eng_req_init(&r, ENG_TOKEN_DELETE, a);
    r.tenant = tenant;
    r.account = account;
    if ((rc = scope(lc.t, &r, true, &tn, &ac)))
        goto done;
    if (!rules_may_see(a, tn.id, ac.id)) {
        rc = TK_ENOTFOUND;
        goto done;
    }
    rc = state_account_tokens(lc.t, ac.id, from, limit, list_one, &lc);
done:
    state_abort(lc.t);
    return rc;
}

size_t eng_cred_count(const eng *e)
{
    return view_cred_count(e->v);
}

size_t eng_index_bytes(const eng *e)
{
    return view_index_bytes(e->v);
}

uint64_t eng_last_seq(const eng *e)
{
    return elog_last_seq(e->log);
}

int eng_read(eng *e, int (*fn)(void *arg, state_txn *t), void *arg)
{
    state_txn *t;
    int rc = state_begin(e->st, false, &t);
    if (rc)
        return rc;
    rc = fn(arg, t);
    state_abort(t);
    return rc;
}
