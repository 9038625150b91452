/*
 * replay.c - check, rebuild, compare and repair; see replay.h.
 *
 * How it is built, and why:
 *
 * - No second reader of the log format. check and repair use elog_check
 *   (elog_open's own walk, minus the lock and the cut), rebuild reads with
 *   elog_iter and writes through elog_append/elog_sync, and the state is
 *   built by eng_open: what these commands accept is exactly what tokend
 *   accepts. Rebuild copies payloads unchanged from seq 1, so the new log's
 *   hash chain is the old one's over the same records.
 *
 * - The flock of the log directory (elog.c holds it exclusively for the
 *   life of a writer) keeps these offline tools off a log a running tokend
 *   has open: readers take it shared, repair exclusively, and a conflict is
 *   an immediate error that says why.
 *
 * - Repair never destroys a byte. The damaged segment's remainder is
 *   copied to DIR/log/damaged-<time>/ and fsynced before the segment is
 *   truncated; later segments are renamed there. The directory sits inside
 *   the log directory (the log ignores names that do not end in .seg), so
 *   the evidence stays with the log it came from. Each step leaves a state
 *   that a second run of repair finishes, and the LMDB state is set aside
 *   (renamed, never removed) only when it is ahead of the repaired log,
 *   because eng_open refuses such a state.
 *
 * - Canonical compare: internal ids depend on history (a role deleted and
 *   put again gets a new id), so states are compared by names. Each store
 *   is dumped to a temporary file as sorted lines keyed by name (entities
 *   sorted in memory; credentials, the one kind that can be millions, come
 *   from LMDB already in ID order and are streamed), then the two files are
 *   merged line by line: memory stays bounded by the non-credential part.
 */
#include "store/replay.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "core/err.h"
#include "core/event.h"
#include "core/xmalloc.h"
#include "store/fio.h"
#include "store/head.h"
#include "store/state.h"

#define SYNC_BYTES ((uint64_t)8 << 20) /* rebuild: one elog_sync per this much */
#define REPAIR_ROUNDS 1000             /* bad names are moved one per round */
#define HEX_HASH (ELOG_HASH_LEN * 2 + 1)
#define TIME_STR 40

/* ---- small helpers --------------------------------------------------- */

/* Appends to the reason already given. */
__attribute__((format(printf, 2, 3)))
static void add_why(tk_why *why, const char *fmt, ...)
{
    if (!why)
        return;
    size_t n = strlen(why->msg);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why->msg + n, sizeof why->msg - n, fmt, ap);
    va_end(ap);
}

static void hex(const uint8_t *p, size_t n, char *out, size_t cap)
{
    sodium_bin2hex(out, cap, p, n);
}

/* Unix milliseconds as "2024-05-01T10:00:00.123Z". */
static void fmt_ms(int64_t ms, char out[TIME_STR])
{
    int64_t s = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
    time_t t = (time_t)s;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        snprintf(out, TIME_STR, "%" PRId64 "ms", ms);
        return;
    }
    size_t n = strftime(out, TIME_STR, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, TIME_STR - n, ".%03dZ", (int)(ms - s * 1000));
}

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

/* The directory part of path ("." when there is none). Caller frees. */
static char *parent_of(const char *path)
{
    char *p = xstrdup(path);
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = '\0';
    char *slash = strrchr(p, '/');
    if (!slash) {
        free(p);
        return xstrdup(".");
    }
    if (slash == p)
        slash[1] = '\0';
    else
        *slash = '\0';
    return p;
}

/* The last component of path, without trailing slashes, into out. */
static void base_of(const char *path, char *out, size_t cap)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/')
        b--;
    snprintf(out, cap, "%.*s", (int)(n - b), path + b);
}

/* Parses a segment file name (20 digits, ".seg"); false for anything else. */
static bool seg_name(const char *name, uint64_t *first)
{
    uint64_t v = 0;
    if (strlen(name) != 24 || strcmp(name + 20, ".seg") != 0)
        return false;
    for (int i = 0; i < 20; i++) {
        unsigned d = (unsigned)(name[i] - '0');
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *first = v;
    return true;
}

static bool has_segments(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    bool found = false;
    if (!d)
        return false;
    while (!found && (e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        found = n > 4 && strcmp(e->d_name + n - 4, ".seg") == 0;
    }
    closedir(d);
    return found;
}

/* Where a DIR argument points: a data directory, or its log directory. */
typedef struct where {
    char *data; /* the data directory; NULL for a bare log directory */
    char *log;  /* the event log directory */
} where;

static void where_free(where *w)
{
    free(w->data);
    free(w->log);
    w->data = w->log = NULL;
}

/* Resolves path: DIR with DIR/log in it, or DIR/log itself (the path the
 * damage message names), or any directory holding segments. 0, TK_EINVAL. */
static int resolve(const char *path, where *w, tk_why *why)
{
    char *sub = xpath(path, "log");
    char base[ELOG_NAME_MAX];

    w->data = w->log = NULL;
    if (is_dir(sub)) {
        w->data = xstrdup(path);
        w->log = sub;
        return 0;
    }
    free(sub);
    if (!is_dir(path)) {
        return tk_say(why, TK_EINVAL, "%s: %s", path, exists(path) ? "not a directory" : "no such directory");
    }
    base_of(path, base, sizeof base);
    if (strcmp(base, "log") == 0 || has_segments(path)) {
        w->log = xstrdup(path);
        w->data = strcmp(base, "log") == 0 ? parent_of(path) : NULL;
        return 0;
    }
    return tk_say(why, TK_EINVAL, "%s is neither a data directory (no log/ in it) nor an event log (no *.seg "
              "files in it)",
              path);
}

/* Takes the log directory's flock (see the top of this file); *fd holds it
 * until closed. 0 or TK_EIO. */
static int lock_log(const char *log, bool exclusive, int *fd, tk_why *why)
{
    int err;

    *fd = open(log, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*fd < 0) {
        return tk_say(why, TK_EIO, "cannot open %s: %s", log, strerror(errno));
    }
    if (flock(*fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0)
        return 0;
    err = errno;
    close(*fd);
    *fd = -1;
    if (err == EWOULDBLOCK)
        return tk_say(why, TK_EIO, "%s is in use: a running tokend has this log open (or "
                      "another tokenreplay is working on it). tokenreplay works offline: stop "
                      "tokend first", log);
    return tk_say(why, TK_EIO, "cannot lock %s: %s", log, strerror(err));
}

static void unlock_log(int fd)
{
    if (fd >= 0)
        close(fd);
}

/* Copies len bytes at offset off of src into a new file dst (0600, must
 * not exist), fsynced. 0 or TK_EIO. */
static int copy_range(int src, uint64_t off, uint64_t len, const char *dst, tk_why *why)
{
    uint8_t buf[64 * 1024];
    int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int rc = TK_EIO;

    if (fd < 0) {
        return tk_say(why, TK_EIO, "cannot create %s: %s", dst, strerror(errno));
    }
    while (len > 0) {
        size_t want = len < sizeof buf ? (size_t)len : sizeof buf;
        ssize_t n = pread(src, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            tk_say(why, rc, "cannot read the bytes for %s: %s", dst,
                   n < 0 ? strerror(errno) : "file shrank");
            goto fail;
        }
        if (fio_write_all(fd, buf, (size_t)n) != 0) {
            tk_say(why, rc, "cannot write %s: %s", dst, strerror(errno));
            goto fail;
        }
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    if (fio_fsync(fd) != 0) {
        tk_say(why, rc, "cannot fsync %s: %s", dst, strerror(errno));
        goto fail;
    }
    rc = 0;
fail:
    close(fd);
    return rc;
}

static int sync_dir(const char *dir, tk_why *why)
{
    if (fio_fsync_dir(dir) == 0)
        return 0;
    return tk_say(why, TK_EIO, "cannot fsync directory %s: %s", dir, strerror(errno));
}

/* ---- progress ------------------------------------------------------------ */

/* Long runs (check, rebuild, dump) show how far they are on a terminal
 * (stderr, a line rewritten at most 5 times a second) and end with their
 * rate. */
typedef struct progress {
    bool tty;
    int64_t start_ms, last_ms;
    const char *what;
} progress;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void prog_start(progress *p, const char *what)
{
    p->tty = isatty(STDERR_FILENO);
    p->start_ms = p->last_ms = mono_ms();
    p->what = what;
}

static void prog_tick(progress *p, uint64_t n)
{
    if (!p->tty || (n & 1023) != 0)
        return;
    int64_t now = mono_ms();
    if (now - p->last_ms < 200)
        return;
    p->last_ms = now;
    double s = (double)(now - p->start_ms) / 1000.0;
    fprintf(stderr, "\r%s %" PRIu64 " events, %.0f events/s ", p->what, n, s > 0 ? n / s : 0);
}

/* The run's rate, for its last line: events/s (0 when too quick to tell). */
static double prog_end(progress *p, uint64_t n)
{
    if (p->tty && p->last_ms != p->start_ms)
        fputs("\r\033[K", stderr); /* the progress line goes */
    double s = (double)(mono_ms() - p->start_ms) / 1000.0;
    return s > 0 ? n / s : 0;
}

/* ---- check ----------------------------------------------------------- */

typedef struct check_ctx {
    uint64_t bad_seq; /* the event that did not decode */
    bool any;
    int64_t first_ts, last_ts;
    uint64_t n;
    progress prog;
} check_ctx;

#define CHECK_UNDECODABLE 1

static int check_event(void *arg, uint64_t seq, const void *payload, size_t len)
{
    check_ctx *c = arg;
    ev x;

    if (ev_decode(payload, len, &x) != 0) {
        c->bad_seq = seq;
        return CHECK_UNDECODABLE;
    }
    if (!c->any)
        c->first_ts = x.ts;
    c->last_ts = x.ts;
    c->any = true;
    prog_tick(&c->prog, ++c->n);
    return 0;
}

int replay_check(const char *path, FILE *out, elog_report *rep_out, tk_why *why)
{
    tk_why scratch = {.msg = ""}; /* the reason is printed, too */
    if (!why)
        why = &scratch;
    where w = {0};
    elog_report rep;
    check_ctx cc = {0};
    char h[HEX_HASH], t1[TIME_STR], t2[TIME_STR];
    int lfd = -1, rc;

    memset(&rep, 0, sizeof rep);
    if ((rc = resolve(path, &w, why)) || (rc = lock_log(w.log, false, &lfd, why)))
        goto fail;
    prog_start(&cc.prog, "check");
    rc = elog_check(w.log, check_event, &cc, &rep, why);
    double rate = prog_end(&cc.prog, cc.n);
    if (rc != 0 && rc != TK_ECORRUPT && rc != CHECK_UNDECODABLE)
        goto fail;
    hex(rep.head, ELOG_HASH_LEN, h, sizeof h);
    fprintf(out, "log        %s\n", w.log);
    if (rep.base_seq) {
        char b[HEX_HASH];
        hex(rep.base_hash, ELOG_HASH_LEN, b, sizeof b);
        fprintf(out, "base       starts after event %" PRIu64 ", chain hash %.16s..., from a "
                "snapshot (checked from there)\n", rep.base_seq, b);
    }
    fprintf(out, "segments   %" PRIu64 "\n", rep.segments);
    fprintf(out, "records    %" PRIu64 "%s\n", rep.records, rc ? " intact before the damage" : "");
    fprintf(out, "last seq   %" PRIu64 "\n", rep.last_seq);
    fprintf(out, "head hash  %s\n", h);
    if (cc.any) {
        fmt_ms(cc.first_ts, t1);
        fmt_ms(cc.last_ts, t2);
        fprintf(out, "events     %s .. %s\n", t1, t2);
    }
    if (rc == 0) {
        if (rep.torn_bytes)
            fprintf(out,
                    "torn tail  %" PRIu64 " bytes at the end of %020" PRIu64 ".seg: an "
                    "interrupted write, not damage; the next start cuts it (keeping the bytes "
                    "in torn-*.bin)\n",
                    rep.torn_bytes, rep.torn_seg);
        if (rep.free_bytes)
            fprintf(out,
                    "free space %" PRIu64 " zero bytes after the last record (preallocated by a "
                    "tokend that did not stop cleanly: not a torn tail; kept)\n",
                    rep.free_bytes);
        fprintf(out, "rate       %.0f events/s\n", rate);
        fprintf(out, "result     intact\n");
    } else {
        if (rc == CHECK_UNDECODABLE)
            tk_say(why, rc, "event %" PRIu64 " is framed intact but does not decode as an "
                   "event (written by a newer tokend, or broken before it was logged); records "
                   "%" PRIu64 "..%" PRIu64 " are good", cc.bad_seq, rep.base_seq + 1,
                   rep.last_seq);
        fprintf(out, "result     DAMAGED: %s\n", why->msg);
        rc = TK_ECORRUPT;
    }
fail:
    if (rep_out)
        *rep_out = rep;
    unlock_log(lfd);
    where_free(&w);
    return rc;
}

/* ---- rebuild --------------------------------------------------------- */

/* Makes to a new directory, or accepts an existing empty one. *made says
 * that it is ours (reported on a later failure). 0, TK_EINVAL, TK_EIO. */
static int prepare_target(const char *to, bool *made, tk_why *why)
{
    DIR *d;
    struct dirent *e;
    bool empty = true;

    *made = false;
    if (mkdir(to, 0700) == 0) {
        char *parent = parent_of(to);
        int rc = sync_dir(parent, why);
        free(parent);
        *made = true;
        return rc;
    }
    if (errno != EEXIST) {
        return tk_say(why, TK_EIO, "cannot create %s: %s", to, strerror(errno));
    }
    if (!is_dir(to)) {
        return tk_say(why, TK_EINVAL, "%s exists and is not a directory", to);
    }
    if (!(d = opendir(to))) {
        return tk_say(why, TK_EIO, "cannot read %s: %s", to, strerror(errno));
    }
    while (empty && (e = readdir(d)) != NULL)
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    if (!empty) {
        return tk_say(why, TK_EINVAL, "%s is not empty: rebuild writes only into a new or "
                      "empty directory", to);
    }
    *made = true;
    return 0;
}

/* Copies from/operator.key to to/operator.key (0600). *copied says whether
 * there was one. 0 or TK_EIO. */
static int copy_operator_key(const char *from, const char *to, bool *copied, tk_why *why)
{
    char *src = from ? xpath(from, "operator.key") : NULL, *dst = xpath(to, "operator.key");
    struct stat st;
    int fd = -1, rc = 0;

    *copied = false;
    if (!src || (fd = open(src, O_RDONLY | O_CLOEXEC)) < 0) {
        if (src && errno != ENOENT) {
            rc = tk_say(why, TK_EIO, "cannot read %s: %s", src, strerror(errno));
        }
        goto done;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > 4096) {
        rc = tk_say(why, TK_EIO, "%s is not an operator key file", src);
        goto done;
    }
    if ((rc = copy_range(fd, 0, (uint64_t)st.st_size, dst, why)) || (rc = sync_dir(to, why)))
        goto done;
    *copied = true;
done:
    if (fd >= 0)
        close(fd);
    free(src);
    free(dst);
    return rc;
}

/* A based log (bootstrapped from a snapshot) lacks the events before its
 * base: it cannot rebuild a state alone. 0 (no base), TK_EINVAL, or
 * elog_base_read's error. */
static int refuse_based(const char *log, tk_why *why)
{
    uint64_t base;
    uint8_t bh[ELOG_HASH_LEN];
    char h[HEX_HASH];
    int rc = elog_base_read(log, &base, bh, why);
    if (rc == TK_ENOTFOUND || (rc == 0 && base == 0))
        return 0;
    if (rc)
        return rc;
    hex(bh, ELOG_HASH_LEN, h, sizeof h);
    return tk_say(why, TK_EINVAL, "%s starts after event %" PRIu64 " (its base, log/base: "
                  "chain hash %.16s..., from a snapshot): the events before it are held by "
                  "that snapshot, not by this log, so it cannot rebuild a state alone; "
                  "bootstrap a data directory from the snapshot instead", log, base, h);
}

int replay_rebuild(const char *from, const char *to, const replay_limit *lim, FILE *out,
                   uint64_t *events, tk_why *why)
{
    tk_why scratch = {.msg = ""}; /* the reason is printed, too */
    if (!why)
        why = &scratch;
    where w = {0};
    elog *lg = NULL;
    elog_iter *it = NULL;
    eng *e = NULL;
    char *newlog = NULL, stop[128] = "at the end of the log";
    char h[HEX_HASH], tbuf[TIME_STR];
    uint8_t head[ELOG_HASH_LEN] = {0};
    uint64_t n = 0, pending = 0, seq;
    const void *p;
    size_t len;
    bool made = false, key = false;
    int lfd = -1, rc, more = 0;

    if (events)
        *events = 0;
    if ((rc = resolve(from, &w, why)) || (rc = lock_log(w.log, false, &lfd, why)) ||
        (rc = refuse_based(w.log, why)) || (rc = prepare_target(to, &made, why)))
        goto fail;
    newlog = xpath(to, "log");
    if ((rc = elog_open(newlog, NULL, &lg, why)) || (rc = elog_iter_open(w.log, 1, &it, why)))
        goto fail;
    progress prog;
    prog_start(&prog, "rebuild");
    for (;;) {
        /* Stop before reading past the limit: what lies after it (damage
         * included) is no concern of this rebuild. */
        if (lim && lim->has_seq && n == lim->seq) {
            snprintf(stop, sizeof stop, "at --upto-seq %" PRIu64, n);
            break;
        }
        if ((more = elog_iter_next(it, &seq, &p, &len, why)) != 1)
            break;
        if (lim && lim->has_time) {
            ev x;
            if (ev_decode(p, len, &x) != 0) {
                rc = tk_say(why, TK_ECORRUPT, "event %" PRIu64 " of %s does not decode, so "
                            "its time is unknown", seq, w.log);
                goto fail;
            }
            if (x.ts > lim->time_ms) {
                fmt_ms(x.ts, tbuf);
                snprintf(stop, sizeof stop, "before seq %" PRIu64 " (at %s, after --upto-time)",
                         seq, tbuf);
                break;
            }
        }
        if ((rc = elog_append(lg, p, len, NULL))) {
            tk_say(why, rc, "cannot append event %" PRIu64 " to %s: %s", seq, newlog,
                   tk_strerror(rc));
            goto fail;
        }
        memcpy(head, elog_iter_hash(it), ELOG_HASH_LEN);
        n++;
        prog_tick(&prog, n);
        pending += len;
        if (pending >= SYNC_BYTES) {
            if ((rc = elog_sync(lg, why)))
                goto fail;
            pending = 0;
        }
    }
    if (more < 0) {
        char damage[TK_WHY_MAX];
        snprintf(damage, sizeof damage, "%s", why->msg);
        rc = tk_say(why, more, "the source log is damaged before the limit: %s. Records 1..%"
                    PRIu64 " are intact: rebuild them with --upto-seq %" PRIu64, damage, n, n);
        goto fail;
    }
    if (lim && lim->has_seq && n < lim->seq) {
        rc = tk_say(why, TK_EINVAL, "--upto-seq %" PRIu64 " is past the end of the log in %s "
                    "(last seq %" PRIu64 ")", lim->seq, w.log, n);
        goto fail;
    }
    if ((rc = elog_sync(lg, why)))
        goto fail;
    elog_close(lg);
    lg = NULL;
    elog_iter_free(it);
    it = NULL;
    if ((rc = copy_operator_key(w.data, to, &key, why)))
        goto fail;
    tk_why opening;
    if ((rc = eng_open(to, NULL, &e, &opening))) {
        tk_say(why, rc, "the rebuilt log does not open: %s", opening.msg);
        goto fail;
    }
    if (eng_last_seq(e) != n) {
        rc = tk_say(why, TK_EIO, "the rebuilt store ends at seq %" PRIu64 ", not %" PRIu64,
                    eng_last_seq(e), n);
        goto fail;
    }
    hex(head, ELOG_HASH_LEN, h, sizeof h);
    double rate = prog_end(&prog, n);
    fprintf(out, "rebuilt    %s from %s\n", to, w.log);
    fprintf(out, "events     %" PRIu64 " (seq 1..%" PRIu64 "), stopped %s\n", n, n, stop);
    fprintf(out, "head hash  %s\n", h);
    fprintf(out, "state      %zu credentials\n", eng_cred_count(e));
    fprintf(out, "rate       %.0f events/s (the log copied; the state built after)\n", rate);
    if (key)
        fprintf(out, "operator   key copied from %s/operator.key\n", w.data);
    else
        fprintf(out, "operator   no key in the source: a new one was made in %s/operator.key\n",
                to);
    if (events)
        *events = n;
    rc = 0;
fail:
    eng_close(e);
    elog_iter_free(it);
    elog_close(lg);
    if (rc && made)
        add_why(why, " (%s holds a partial rebuild: remove it before trying again)", to);
    unlock_log(lfd);
    free(newlog);
    where_free(&w);
    return rc;
}

/* ---- canonical dump -------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_reserve(sbuf *b, size_t more)
{
    if (b->n + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more + 1)
        cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
}

static void sb_putc(sbuf *b, char c)
{
    sb_reserve(b, 1);
    b->p[b->n++] = c;
    b->p[b->n] = '\0';
}

__attribute__((format(printf, 2, 3)))
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    sb_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}

/* Free text in double quotes: \" \\ \t and other control bytes escaped, so
 * a line never holds a raw tab or newline. */
static void sb_quoted(sbuf *b, const char *s)
{
    sb_putc(b, '"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            sb_putc(b, '\\');
            sb_putc(b, (char)c);
        } else if (c == '\t') {
            sb_printf(b, "\\t");
        } else if (c < 0x20 || c == 0x7f) {
            sb_printf(b, "\\x%02x", c);
        } else {
            sb_putc(b, (char)c);
        }
    }
    sb_putc(b, '"');
}

typedef char keybuf[TK_KEY_MAX + 1];

static int cmp_key(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* "[k1,k2]", sorted: a set, whatever order it was given in. */
static void sb_keys(sbuf *b, keybuf *keys, uint32_t n)
{
    qsort(keys, n, sizeof *keys, cmp_key);
    sb_putc(b, '[');
    for (uint32_t i = 0; i < n; i++)
        sb_printf(b, "%s%s", i ? "," : "", keys[i]);
    sb_putc(b, ']');
}

typedef struct dump_ctx {
    state_txn *t;
    FILE *out;
    sbuf sb;
    char **lines; /* entity lines, sorted before they are written */
    size_t n, cap;
    uint64_t ncreds;
} dump_ctx;

static void keep_line(dump_ctx *d)
{
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 64;
        d->lines = xrealloc(d->lines, d->cap * sizeof *d->lines);
    }
    d->lines[d->n++] = xstrndup(d->sb.p, d->sb.n);
    d->sb.n = 0;
}

/* A name that an id must resolve to: a miss is an inconsistent state. */
static int tenant_slug(dump_ctx *d, uint32_t id, char *out)
{
    st_tenant tn;
    int rc = state_tenant_by_id(d->t, id, &tn);
    if (rc)
        return rc == TK_ENOTFOUND ? TK_ECORRUPT : rc;
    strcpy(out, tn.slug);
    return 0;
}

/* Role ids to keys; a deleted role (id that no longer resolves) drops out. */
static int role_keys(dump_ctx *d, const uint32_t *ids, uint32_t n, keybuf *keys, uint32_t *nk)
{
    *nk = 0;
    for (uint32_t i = 0; i < n; i++) {
        st_role r;
        int rc = state_role_by_id(d->t, ids[i], &r);
        if (rc == TK_ENOTFOUND)
            continue;
        if (rc)
            return rc;
        strcpy(keys[(*nk)++], r.key);
    }
    return 0;
}

static int dump_tenant(void *arg, const st_tenant *r)
{
    dump_ctx *d = arg;
    sb_printf(&d->sb,
              "1 tenant %s\tapi_tokens=%s\tmax_tokens=%u\tmax_roles=%u\tmax_keys=%u"
              "\tcreate_rate=%u\tcreate_burst=%u",
              r->slug, r->api_tokens ? "on" : "off", r->lim.tokens, r->lim.roles, r->lim.keys,
              r->lim.rate, r->lim.burst);
    keep_line(d);
    return 0;
}

static int dump_perm(void *arg, const st_perm *r)
{
    dump_ctx *d = arg;
    char tn[TK_SLUG_MAX + 1];
    int rc = tenant_slug(d, r->tenant, tn);
    if (rc)
        return rc;
    sb_printf(&d->sb, "2 permission %s/%s\tdescription=", tn, r->key);
    sb_quoted(&d->sb, r->desc);
    keep_line(d);
    return 0;
}

static int dump_role(void *arg, const st_role *r)
{
    dump_ctx *d = arg;
    char tn[TK_SLUG_MAX + 1];
    keybuf keys[TK_MAX_ROLE_PERMS];
    int rc = tenant_slug(d, r->tenant, tn);
    if (rc)
        return rc;
    for (uint32_t i = 0; i < r->nperms; i++) {
        st_perm p;
        if ((rc = state_perm_by_num(d->t, r->tenant, r->perms[i], &p)))
            return rc == TK_ENOTFOUND ? TK_ECORRUPT : rc;
        strcpy(keys[i], p.key);
    }
    sb_printf(&d->sb, "3 role %s/%s\tname=", tn, r->key);
    sb_quoted(&d->sb, r->name);
    sb_printf(&d->sb, "\tlevel=%" PRIu32 "\tpermissions=", r->level);
    sb_keys(&d->sb, keys, r->nperms);
    keep_line(d);
    return 0;
}

static int dump_account(void *arg, const st_account *r)
{
    dump_ctx *d = arg;
    char tn[TK_SLUG_MAX + 1];
    int rc = tenant_slug(d, r->tenant, tn);
    if (rc)
        return rc;
    sb_printf(&d->sb, "4 account %s/%s", tn, r->slug);
    keep_line(d);
    return 0;
}

/* tenant/account slugs of an account id. */
static int account_path(dump_ctx *d, uint32_t account, char *tn, char *ac)
{
    st_account a;
    int rc = state_account_by_id(d->t, account, &a);
    if (rc)
        return rc == TK_ENOTFOUND ? TK_ECORRUPT : rc;
    strcpy(ac, a.slug);
    return tenant_slug(d, a.tenant, tn);
}

static int dump_user(void *arg, const st_user *r)
{
    dump_ctx *d = arg;
    char tn[TK_SLUG_MAX + 1], ac[TK_SLUG_MAX + 1];
    keybuf keys[TK_MAX_ROLES];
    uint32_t nk;
    int rc;
    if ((rc = account_path(d, r->account, tn, ac)) ||
        (rc = role_keys(d, r->roles, r->nroles, keys, &nk)))
        return rc;
    sb_printf(&d->sb, "5 user %s/%s/%s\tportal=%s\troles=", tn, ac, r->slug,
              r->portal ? "yes" : "no");
    sb_keys(&d->sb, keys, nk);
    keep_line(d);
    return 0;
}

static int dump_cred(void *arg, const st_cred *r)
{
    dump_ctx *d = arg;
    char tn[TK_SLUG_MAX + 1], ac[TK_SLUG_MAX + 1], id[TK_ID_STR_LEN + 1], h[TK_HASH_LEN * 2 + 1];
    char created[TIME_STR], expires[TIME_STR];
    keybuf keys[TK_MAX_ROLES];
    uint32_t nk;
    int rc;

    /* The creator by its slug: a deleted user's tokens stay (a user made
     * again with the slug is another user, but the same name here). */
    if ((rc = account_path(d, r->account, tn, ac)) ||
        (rc = role_keys(d, r->roles, r->nroles, keys, &nk)))
        return rc;
    secret_id_format(&r->id, id);
    hex(r->hash, TK_HASH_LEN, h, sizeof h);
    fmt_ms(r->created_ms, created);
    if (r->expires)
        fmt_ms(r->expires * 1000, expires);
    else
        strcpy(expires, "never");
    sb_printf(&d->sb, "6 credential %s\tkind=%s\thash=%s\ttenant=%s\taccount=%s\tuser=%s\tord=%"
              PRIu64 "\troles=", id, r->kind == TK_KIND_TOKEN ? "token" : "personal", h, tn, ac,
              r->creator, r->ord);
    sb_keys(&d->sb, keys, nk);
    sb_printf(&d->sb, "\tdescription=");
    sb_quoted(&d->sb, r->desc);
    sb_printf(&d->sb, "\tcreated=%s\texpires=%s\n", created, expires);
    if (fwrite(d->sb.p, 1, d->sb.n, d->out) != d->sb.n)
        return TK_EIO;
    d->sb.n = 0;
    d->ncreds++;
    return 0;
}

static int cmp_line(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int dump_txn(void *arg, state_txn *t)
{
    dump_ctx *d = arg;
    st_visitor ents = {.tenant = dump_tenant, .perm = dump_perm, .role = dump_role,
                       .account = dump_account, .user = dump_user, .arg = d};
    st_visitor creds = {.cred = dump_cred, .arg = d};
    int rc;

    d->t = t;
    if ((rc = state_visit(t, &ents)))
        return rc;
    qsort(d->lines, d->n, sizeof *d->lines, cmp_line);
    for (size_t i = 0; i < d->n; i++)
        if (fprintf(d->out, "%s\n", d->lines[i]) < 0)
            return TK_EIO;
    return state_visit(t, &creds);
}

int replay_dump(eng *e, FILE *out, uint64_t *ncreds, tk_why *why)
{
    dump_ctx d;
    int rc;

    memset(&d, 0, sizeof d);
    d.out = out;
    rc = eng_read(e, dump_txn, &d);
    if (rc == 0 && fflush(out) != 0)
        rc = TK_EIO;
    if (rc)
        tk_say(why, rc, "cannot dump the state: %s", tk_strerror(rc));
    if (ncreds)
        *ncreds = d.ncreds;
    for (size_t i = 0; i < d.n; i++)
        free(d.lines[i]);
    free(d.lines);
    free(d.sb.p);
    return rc;
}

/* ---- compare --------------------------------------------------------- */

/* Opens the data directory dir (a data directory, not a bare log) and dumps
 * it into f. */
static int dump_dir(const char *path, FILE *f, uint64_t *ncreds, tk_why *why)
{
    where w = {0};
    eng *e = NULL;
    int rc;

    if ((rc = resolve(path, &w, why)))
        return rc;
    if (!w.data || !is_dir(w.data)) {
        rc = tk_say(why, TK_EINVAL, "%s: compare needs a data directory, not a bare event log "
                    "(rebuild it into one first)", path);
        goto fail;
    }
    tk_why opening;
    if ((rc = eng_open(w.data, NULL, &e, &opening))) {
        tk_say(why, rc, "cannot open %s: %s", w.data, opening.msg);
        goto fail;
    }
    rc = replay_dump(e, f, ncreds, why);
fail:
    eng_close(e);
    where_free(&w);
    return rc;
}

/* Reads one line without its newline; false at the end. */
static bool read_line(FILE *f, char **line, size_t *cap)
{
    ssize_t n = getline(line, cap, f);
    if (n <= 0)
        return false;
    if ((*line)[n - 1] == '\n')
        (*line)[n - 1] = '\0';
    return true;
}

/* Compares the keys of two dump lines (the text before the first tab). */
static int cmp_keys(const char *a, const char *b)
{
    size_t na = strcspn(a, "\t"), nb = strcspn(b, "\t");
    int c = memcmp(a, b, na < nb ? na : nb);
    return c ? c : (na > nb) - (na < nb);
}

/* Prints a dump line for people: without its section number, tabs as
 * spaces. */
static void put_line(FILE *out, const char *line)
{
    const char *p = strchr(line, ' ');
    for (p = p ? p + 1 : line; *p; p++)
        fputc(*p == '\t' ? ' ' : *p, out);
}

/* Two lines with the same key (so the same fields, in the same order):
 * names the first field that differs. */
static void put_field_diff(FILE *out, const char *a, const char *b)
{
    size_t key = strcspn(a, "\t");
    const char *fa = a + key, *fb = b + key, *shown = strchr(a, ' ') + 1;

    fprintf(out, "different: %.*s", (int)(a + key - shown), shown);
    while (*fa == '\t' && *fb == '\t') {
        size_t na = strcspn(++fa, "\t"), nb = strcspn(++fb, "\t");
        if (na != nb || memcmp(fa, fb, na) != 0) {
            size_t ea = strcspn(fa, "="), eb = strcspn(fb, "=");
            if (ea < na && eb < nb)
                fprintf(out, ": %.*s: a has %.*s, b has %.*s\n", (int)ea, fa,
                        (int)(na - ea - 1), fa + ea + 1, (int)(nb - eb - 1), fb + eb + 1);
            else
                fprintf(out, ": a has %.*s, b has %.*s\n", (int)na, fa, (int)nb, fb);
            return;
        }
        fa += na;
        fb += nb;
    }
    fputc('\n', out);
}

int replay_compare(const char *a, const char *b, FILE *out, bool *same, tk_why *why)
{
    FILE *fa = NULL, *fb = NULL;
    char *la = NULL, *lb = NULL, *ra = NULL, *rb = NULL;
    size_t ca = 0, cb = 0;
    uint64_t na = 0, nb = 0;
    where wa = {0}, wb = {0};
    bool ha, hb;
    int rc = TK_EIO;

    *same = false;
    if ((rc = resolve(a, &wa, why)) || (rc = resolve(b, &wb, why)))
        goto fail;
    ra = wa.data ? realpath(wa.data, NULL) : NULL;
    rb = wb.data ? realpath(wb.data, NULL) : NULL;
    if (ra && rb && strcmp(ra, rb) == 0) {
        rc = tk_say(why, TK_EINVAL, "--a and --b are the same data directory (%s)", ra);
        goto fail;
    }
    if (!(fa = tmpfile()) || !(fb = tmpfile())) {
        rc = tk_say(why, TK_EIO, "cannot create a temporary file: %s", strerror(errno));
        goto fail;
    }
    if ((rc = dump_dir(a, fa, &na, why)) || (rc = dump_dir(b, fb, &nb, why)))
        goto fail;
    rewind(fa);
    rewind(fb);
    ha = read_line(fa, &la, &ca);
    hb = read_line(fb, &lb, &cb);
    for (;;) {
        int c;
        if (!ha && !hb) {
            fprintf(out, "same state (%" PRIu64 " credentials)\n", na);
            *same = true;
            break;
        }
        c = !ha ? 1 : !hb ? -1 : cmp_keys(la, lb);
        if (c != 0) {
            fprintf(out, "different: only in %s (%s): ", c < 0 ? "a" : "b", c < 0 ? a : b);
            put_line(out, c < 0 ? la : lb);
            fputc('\n', out);
            break;
        }
        if (strcmp(la, lb) != 0) {
            put_field_diff(out, la, lb);
            break;
        }
        ha = read_line(fa, &la, &ca);
        hb = read_line(fb, &lb, &cb);
    }
    rc = 0;
fail:
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    free(la);
    free(lb);
    free(ra);
    free(rb);
    where_free(&wa);
    where_free(&wb);
    return rc;
}

/* ---- repair ---------------------------------------------------------- */

/* Makes log/damaged-<unix time> (or -<k> when taken) for info->aside. */
static int make_aside(const char *log, replay_repair_info *info, tk_why *why)
{
    long long now = (long long)time(NULL);

    for (int k = 0; k < 100; k++) {
        if (k == 0)
            snprintf(info->aside, sizeof info->aside, "%s/damaged-%lld", log, now);
        else
            snprintf(info->aside, sizeof info->aside, "%s/damaged-%lld-%d", log, now, k);
        if (mkdir(info->aside, 0700) == 0)
            return sync_dir(log, why);
        if (errno != EEXIST)
            break;
    }
    tk_say(why, TK_EIO, "cannot create %s: %s", info->aside, strerror(errno));
    info->aside[0] = '\0';
    return TK_EIO;
}

/* Renames log/name into the aside directory. */
static int move_aside(const char *log, const char *name, replay_repair_info *info, FILE *out, tk_why *why)
{
    char *src = xpath(log, name), *dst = xpath(info->aside, name);
    struct stat st;
    int rc = 0;

    if (lstat(src, &st) != 0 || exists(dst) || rename(src, dst) != 0) {
        rc = tk_say(why, TK_EIO, "cannot move %s to %s: %s", src, dst,
                    exists(dst) ? "the target exists" : strerror(errno));
    } else {
        info->moved++;
        fprintf(out, "moved      %s (%lld bytes) -> %s\n", src, (long long)st.st_size, dst);
    }
    free(src);
    free(dst);
    return rc;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Moves every segment after segment `after` aside, in order. */
static int move_later(const char *log, uint64_t after, replay_repair_info *info, FILE *out, tk_why *why)
{
    DIR *d = opendir(log);
    struct dirent *e;
    uint64_t *later = NULL, first;
    size_t n = 0, cap = 0;
    int rc = 0;

    if (!d) {
        return tk_say(why, TK_EIO, "cannot read %s: %s", log, strerror(errno));
    }
    while ((e = readdir(d)) != NULL) {
        if (!seg_name(e->d_name, &first) || first <= after)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            later = xrealloc(later, cap * sizeof *later);
        }
        later[n++] = first;
    }
    closedir(d);
    if (n > 1)
        qsort(later, n, sizeof *later, cmp_u64);
    for (size_t i = 0; i < n && !rc; i++) {
        char name[ELOG_NAME_MAX];
        snprintf(name, sizeof name, "%020" PRIu64 ".seg", later[i]);
        rc = move_aside(log, name, info, out, why);
    }
    free(later);
    return rc;
}

/* Moves the bytes of segment seg from off to its end aside (copied and
 * fsynced first), then truncates the segment at off. off 0: the whole
 * segment is moved. */
static int cut_segment(const char *log, uint64_t seg, uint64_t off, replay_repair_info *info,
                       FILE *out, tk_why *why)
{
    char name[ELOG_NAME_MAX];
    char *path = NULL, *dst = NULL;
    struct stat st;
    int fd = -1, rc = TK_EIO;

    snprintf(name, sizeof name, "%020" PRIu64 ".seg", seg);
    if (off == 0)
        return move_aside(log, name, info, out, why);
    path = xpath(log, name);
    dst = xasprintf("%s/%s.from-%" PRIu64, info->aside, name, off);
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        tk_say(why, rc, "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    if ((uint64_t)st.st_size < off) {
        tk_say(why, rc, "%s is shorter (%lld bytes) than the damage offset %" PRIu64, path,
                  (long long)st.st_size, off);
        goto fail;
    }
    if ((rc = copy_range(fd, off, (uint64_t)st.st_size - off, dst, why)) ||
        (rc = sync_dir(info->aside, why)))
        goto fail;
    info->moved++;
    if (ftruncate(fd, (off_t)off) != 0 || fio_fsync(fd) != 0) {
        rc = tk_say(why, TK_EIO, "cannot cut %s at byte %" PRIu64 ": %s (its bytes from there "
                    "are saved in %s)", path, off, strerror(errno), dst);
        goto fail;
    }
    fprintf(out,
            "cut        %s at byte %" PRIu64 " of %lld: bytes %" PRIu64 "..%lld (%lld bytes) -> "
            "%s\n",
            path, off, (long long)st.st_size, off, (long long)st.st_size,
            (long long)st.st_size - (long long)off, dst);
    rc = 0;
fail:
    if (fd >= 0)
        close(fd);
    free(path);
    free(dst);
    return rc;
}

/* The applied seq of the LMDB state in dir. */
static int state_seq(const char *dir, uint64_t *seq)
{
    state *s = NULL;
    state_txn *t = NULL;
    int rc = state_open(dir, false, &s);
    if (rc == 0 && (rc = state_begin(s, false, &t)) == 0) {
        *seq = state_applied_seq(t);
        state_abort(t);
    }
    state_close(s);
    return rc;
}

/* Sets DIR/state aside when it is ahead of the log (last) or unreadable. */
static int check_state(const char *data, uint64_t last, replay_repair_info *info, FILE *out, tk_why *why)
{
    char *sdir = xpath(data, "state");
    uint64_t applied = 0;
    long long now = (long long)time(NULL);
    int rc, read_rc;

    if (!is_dir(sdir)) {
        fprintf(out, "state      none yet: the next start builds it from the log\n");
        rc = 0;
        goto done;
    }
    rc = read_rc = state_seq(sdir, &applied);
    if (rc == 0 && applied <= last) {
        fprintf(out,
                "state      applied up to seq %" PRIu64 ", within the log: kept (the next start "
                "applies records %" PRIu64 "..%" PRIu64 ")\n",
                applied, applied + 1, last);
        goto done;
    }
    for (int k = 0; k < 100; k++) {
        if (k == 0)
            snprintf(info->stale, sizeof info->stale, "%s/state.stale-%lld", data, now);
        else
            snprintf(info->stale, sizeof info->stale, "%s/state.stale-%lld-%d", data, now, k);
        if (!exists(info->stale))
            break;
    }
    if (exists(info->stale) || rename(sdir, info->stale) != 0) {
        rc = tk_say(why, TK_EIO, "cannot move %s to %s: %s", sdir, info->stale,
                  exists(info->stale) ? "the target exists" : strerror(errno));
        goto done;
    }
    if ((rc = sync_dir(data, why)))
        goto done;
    info->state_moved = true;
    if (read_rc == 0)
        fprintf(out,
                "state      applied up to seq %" PRIu64 ", past the log's end (%" PRIu64 "): "
                "moved to %s; the next start rebuilds it from the log\n",
                applied, last, info->stale);
    else
        fprintf(out,
                "state      cannot be read (%s): moved to %s; the next start rebuilds it from "
                "the log\n",
                tk_strerror(read_rc), info->stale);
done:
    free(sdir);
    return rc;
}

int replay_repair(const char *path, FILE *out, replay_repair_info *info, tk_why *why)
{
    tk_why scratch = {.msg = ""}; /* the reason is printed, too */
    if (!why)
        why = &scratch;
    replay_repair_info local;
    where w = {0};
    elog_report rep;
    char h[HEX_HASH];
    int lfd = -1, rc;

    if (!info)
        info = &local;
    memset(info, 0, sizeof *info);
    if ((rc = resolve(path, &w, why)) || (rc = lock_log(w.log, true, &lfd, why)))
        goto fail;
    for (int round = 0;; round++) {
        rc = elog_check(w.log, NULL, NULL, &rep, why);
        if (rc == 0)
            break;
        if (rc != TK_ECORRUPT)
            goto fail;
        if (rep.bad_base) { /* where the log starts is not guessed: nothing is moved */
            char damage[TK_WHY_MAX];
            snprintf(damage, sizeof damage, "%s", why->msg);
            rc = tk_say(why, TK_EINVAL, "repair refused: %s", damage);
            goto fail;
        }
        if (round == REPAIR_ROUNDS) {
            char damage[TK_WHY_MAX];
            snprintf(damage, sizeof damage, "%s", why->msg);
            tk_say(why, rc, "the log is still damaged after %d repairs: %s", round, damage);
            goto fail;
        }
        fprintf(out, "damage     %s\n", why->msg);
        info->damaged = true;
        if (!info->aside[0] && (rc = make_aside(w.log, info, why)))
            goto fail;
        if (rep.bad_name[0]) {
            rc = move_aside(w.log, rep.bad_name, info, out, why);
        } else {
            /* Later segments first: a crash in between leaves a log whose
             * only damage is the one a second run cuts. */
            rc = move_later(w.log, rep.bad_seg, info, out, why);
            if (!rc)
                rc = cut_segment(w.log, rep.bad_seg, rep.bad_off, info, out, why);
        }
        if (rc || (rc = sync_dir(info->aside, why)) || (rc = sync_dir(w.log, why)))
            goto fail;
    }
    info->kept_seq = rep.last_seq;
    hex(rep.head, ELOG_HASH_LEN, h, sizeof h);
    if (info->damaged)
        fprintf(out,
                "kept       records 1..%" PRIu64 " in %" PRIu64 " segment%s (head hash %s); "
                "%" PRIu32 " file%s set aside in %s\n",
                rep.last_seq, rep.segments, rep.segments == 1 ? "" : "s", h, info->moved,
                info->moved == 1 ? "" : "s", info->aside);
    else
        fprintf(out, "log        intact (records 1..%" PRIu64 "): nothing to repair\n",
                rep.last_seq);
    if (w.data && (rc = check_state(w.data, rep.last_seq, info, out, why)))
        goto fail;
    rc = 0;
fail:
    unlock_log(lfd);
    where_free(&w);
    return rc;
}

/* ---- time limits ----------------------------------------------------- */

/* Reads exactly n digits. */
static bool digits(const char **s, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if ((*s)[i] < '0' || (*s)[i] > '9')
            return false;
        *v = *v * 10 + ((*s)[i] - '0');
    }
    *s += n;
    return true;
}

/* Reads ".ddd..." (any number of digits, the first three kept) as ms. */
static bool fraction(const char **s, int *ms)
{
    int scale = 100;
    *ms = 0;
    if (**s != '.')
        return true;
    (*s)++;
    if (**s < '0' || **s > '9')
        return false;
    for (; **s >= '0' && **s <= '9'; (*s)++) {
        *ms += (**s - '0') * scale;
        scale /= 10;
    }
    return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Hinnant). */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : dm[m - 1];
}

int replay_parse_time(const char *s, int64_t *ms)
{
    const char *p = s;
    int y, mo, d, h, mi, sec = 0, frac = 0, zh = 0, zm = 0, sign = 0;

    if (*p >= '0' && *p <= '9' && strspn(p, "0123456789") == strcspn(p, ".")) {
        /* unix seconds[.fraction] */
        int64_t v = 0;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (v > (INT64_MAX / 1000 - 9) / 10)
                return TK_EINVAL;
            v = v * 10 + (*p - '0');
        }
        if (!fraction(&p, &frac) || *p)
            return TK_EINVAL;
        *ms = v * 1000 + frac;
        return 0;
    }
    if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
        !digits(&p, 2, &d))
        return TK_EINVAL;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return TK_EINVAL;
    p++;
    if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi))
        return TK_EINVAL;
    if (*p == ':') {
        p++;
        if (!digits(&p, 2, &sec))
            return TK_EINVAL;
    }
    if (!fraction(&p, &frac))
        return TK_EINVAL;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p++ == '-' ? -1 : 1;
        if (!digits(&p, 2, &zh))
            return TK_EINVAL;
        if (*p == ':') { /* +HH:MM */
            p++;
            if (!digits(&p, 2, &zm))
                return TK_EINVAL;
        } else if (*p && !digits(&p, 2, &zm)) { /* +HHMM, or just +HH */
            return TK_EINVAL;
        }
    } else {
        return TK_EINVAL; /* no zone: ambiguous */
    }
    if (*p || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 ||
        mi > 59 || sec > 59 || zh > 23 || zm > 59)
        return TK_EINVAL;
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    t -= sign * (zh * 3600 + zm * 60);
    *ms = t * 1000 + frac;
    return 0;
}

/* ---- dump: the events, for audits ------------------------------------ */

static json_t *jstr(tk_str s)
{
    return json_stringn(s.p ? s.p : "", s.n);
}

static json_t *jid(const tk_id *id)
{
    char text[TK_ID_STR_LEN + 1];
    secret_id_format(id, text);
    return json_string(text);
}

/* One event as a JSON object: its fields by their log names (the ones its
 * type carries), "by" when recorded. */
static json_t *event_json(uint64_t seq, const ev *x)
{
    char t[TIME_STR];
    fmt_ms(x->ts, t);
    json_t *o = json_pack("{s:I,s:s,s:I,s:s}", "seq", (json_int_t)seq, "time", t, "ts",
                          (json_int_t)x->ts, "type", ev_type_name(x->type));
    const struct {
        const char *name;
        tk_str v;
    } strs[] = {{"tenant", x->tenant}, {"account", x->account}, {"user", x->user},
                {"key", x->key},       {"name", x->name},       {"description", x->desc}};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (strs[i].v.p)
            json_object_set_new(o, strs[i].name, jstr(strs[i].v));
    switch (x->type) {
    case EV_TENANT_SET: json_object_set_new(o, "api_tokens", json_boolean(x->flag)); break;
    case EV_USER_PUT:
    case EV_USER_CREATE: json_object_set_new(o, "portal", json_boolean(x->flag)); break;
    case EV_ROLE_PUT: json_object_set_new(o, "level", json_integer(x->level)); break;
    default: break;
    }
    if (x->nitems) {
        json_t *a = json_array();
        for (uint32_t i = 0; i < x->nitems; i++)
            json_array_append_new(a, jstr(x->items[i]));
        json_object_set_new(o, x->type == EV_ROLE_PUT ? "permissions" : "roles", a);
    }
    static const uint8_t zero[TK_ID_LEN];
    if (memcmp(x->id.b, zero, TK_ID_LEN) != 0)
        json_object_set_new(o, "id", jid(&x->id));
    if (x->type == EV_KEY_CREATE || x->type == EV_TOKEN_CREATE || x->type == EV_USER_CREATE)
        json_object_set_new(o, "expires_at", json_integer(x->expires));
    if (x->has_limits)
        json_object_set_new(o, "limits",
                            json_pack("{s:i,s:i,s:i,s:i,s:i}", "tokens", (int)x->limits.tokens,
                                      "roles", (int)x->limits.roles, "keys", (int)x->limits.keys,
                                      "rate", (int)x->limits.rate, "burst", (int)x->limits.burst));
    if (x->by.kind) {
        const ev_by *b = &x->by;
        json_t *by = json_pack("{s:s}", "kind", b->kind == TK_ACTOR_USER ? "user" : "operator");
        if (b->kind == TK_ACTOR_USER) {
            json_object_set_new(by, "tenant", jstr(b->tenant));
            json_object_set_new(by, "account", jstr(b->account));
            json_object_set_new(by, "user", jstr(b->user));
            json_object_set_new(by, "via", json_string(b->session ? "portal session"
                                                                  : "personal key"));
        }
        if (b->has_key)
            json_object_set_new(by, "key_id", jid(&b->key));
        if (b->key_name.n)
            json_object_set_new(by, "key_name", jstr(b->key_name));
        json_object_set_new(by, "peer", jstr(b->peer));
        json_object_set_new(by, "listener", jstr(b->listener));
        json_object_set_new(o, "by", by);
    }
    return o;
}

/* The text form: "seq time type k=v ... by WHO [key ID] from PEER (LISTENER)". */
static void event_text(FILE *out, json_t *o)
{
    const char *k;
    json_t *v;
    fprintf(out, "%-6" PRId64 " %s %s", (int64_t)json_integer_value(json_object_get(o, "seq")),
            json_string_value(json_object_get(o, "time")),
            json_string_value(json_object_get(o, "type")));
    json_object_foreach(o, k, v) {
        if (!strcmp(k, "seq") || !strcmp(k, "time") || !strcmp(k, "ts") || !strcmp(k, "type")
            || !strcmp(k, "by"))
            continue;
        char *text = json_is_string(v) ? NULL : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        fprintf(out, " %s=%s", k, text ? text : json_string_value(v));
        free(text);
    }
    json_t *by = json_object_get(o, "by");
    if (by) {
        const char *kind = json_string_value(json_object_get(by, "kind"));
        if (!strcmp(kind, "user"))
            fprintf(out, " by user %s/%s/%s via %s",
                    json_string_value(json_object_get(by, "tenant")),
                    json_string_value(json_object_get(by, "account")),
                    json_string_value(json_object_get(by, "user")),
                    json_string_value(json_object_get(by, "via")));
        else if (json_object_get(by, "key_name"))
            fprintf(out, " by operator key %s",
                    json_string_value(json_object_get(by, "key_name")));
        else
            fprintf(out, " by operator");
        json_t *key = json_object_get(by, "key_id");
        if (key)
            fprintf(out, " %s", json_string_value(key));
        const char *peer = json_string_value(json_object_get(by, "peer"));
        const char *lis = json_string_value(json_object_get(by, "listener"));
        if (peer[0])
            fprintf(out, " from %s (%s)", peer, lis);
        else
            fprintf(out, " in process");
    }
    fputc('\n', out);
}

int replay_log_dump(const char *path, const replay_dump_opts *o, FILE *out, uint64_t *shown,
                    tk_why *why)
{
    where w = {0};
    elog_iter *it = NULL;
    uint64_t n = 0, seq;
    const void *p;
    size_t len;
    int lfd = -1, rc, more;
    int want = 0;

    if (shown)
        *shown = 0;
    if (o->type) {
        for (int t = 1; t <= EV_TYPE_MAX && !want; t++)
            if (!strcmp(ev_type_name((ev_type)t), o->type))
                want = t;
        if (!want)
            return tk_say(why, TK_EINVAL, "no event type '%s' (token_create, token_delete, "
                          "key_create, user_put, tenant_set, ...: docs/storage.md)", o->type);
    }
    uint64_t base = 0, from = o->from_seq ? o->from_seq : 1;
    uint8_t bh[ELOG_HASH_LEN];
    if ((rc = resolve(path, &w, why)) || (rc = lock_log(w.log, false, &lfd, why)))
        goto done;
    if ((rc = elog_base_read(w.log, &base, bh, why)) && rc != TK_ENOTFOUND)
        goto done;
    if (from <= base) /* a based log: its first event is base + 1 */
        from = base + 1;
    if ((rc = elog_iter_open(w.log, from, &it, why)))
        goto done;
    progress prog;
    uint64_t read = 0;
    prog_start(&prog, "dump");
    prog.tty = prog.tty && !isatty(fileno(out)); /* the events themselves go to the terminal */
    while ((more = elog_iter_next(it, &seq, &p, &len, why)) == 1) {
        ev x;
        prog_tick(&prog, ++read);
        if (ev_decode(p, len, &x) != 0) {
            rc = tk_say(why, TK_ECORRUPT, "event %" PRIu64 " of %s does not decode", seq, w.log);
            goto done;
        }
        if (want && (int)x.type != want)
            continue;
        json_t *j = event_json(seq, &x);
        if (o->json) {
            char *line = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
            fprintf(out, "%s\n", line);
            free(line);
        } else {
            event_text(out, j);
        }
        json_decref(j);
        n++;
    }
    rc = more < 0 ? more : 0;
    double rate = prog_end(&prog, read);
    if (prog.tty || isatty(STDERR_FILENO))
        fprintf(stderr, "dump: %" PRIu64 " events read, %" PRIu64 " shown, %.0f events/s\n", read,
                n, rate);
done:
    if (shown)
        *shown = n;
    elog_iter_free(it);
    unlock_log(lfd);
    where_free(&w);
    return rc;
}

/* ---- check against a head ------------------------------------------------ */

/* Compares the log with head h (what: where it came from); prints the
 * verdict and sets *tampered when the log does not hold it. */
static int against(const where *w, const head_rec *h, const char *what, FILE *out,
                   bool *tampered, tk_why *why)
{
    uint8_t at[TK_HASH_LEN];
    char a[HEX_HASH], b[HEX_HASH];
    hex(h->hash, TK_HASH_LEN, b, sizeof b);
    if (h->seq == 0) {
        fprintf(out, "%-10s seq 0: nothing to compare\n", what);
        return 0;
    }
    int rc = elog_hash_at(w->log, h->seq, at, why);
    if (rc == TK_ENOTFOUND) {
        *tampered = true;
        fprintf(out, "%-10s TAMPERED: the log ends before seq %" PRIu64 " (hash %s): records "
                     "were cut\n",
                what, h->seq, b);
        return 0;
    }
    if (rc)
        return rc;
    hex(at, TK_HASH_LEN, a, sizeof a);
    if (sodium_memcmp(at, h->hash, TK_HASH_LEN) != 0) {
        *tampered = true;
        fprintf(out, "%-10s TAMPERED: at seq %" PRIu64 " the log's hash is %s, the head's %s\n",
                what, h->seq, a, b);
        return 0;
    }
    fprintf(out, "%-10s seq %" PRIu64 " hash %s: the log holds it\n", what, h->seq, b);
    return 0;
}

int replay_check_head(const char *path, const char *pub_path, const char *expect, FILE *out,
                      bool *tampered, tk_why *why)
{
    where w = {0};
    int rc = resolve(path, &w, why);
    *tampered = false;
    if (!rc && pub_path) {
        uint8_t pub[32];
        head_rec h;
        bool found = false;
        char *key = NULL;
        size_t n = strlen(pub_path);
        if (n > 4 && strcmp(pub_path + n - 4, ".pub") == 0) { /* FILE.pub: FILE.head beside */
            key = xstrdup(pub_path);
            key[n - 4] = '\0';
        }
        rc = head_pub_load(pub_path, pub, why);
        if (rc == TK_ENOTFOUND)
            rc = TK_EINVAL;
        if (!rc) {
            rc = head_latest(pub, w.log, key, &h, &found, why);
            if (rc == TK_ECORRUPT) { /* a head that does not verify: forged */
                *tampered = true;
                fprintf(out, "signed     TAMPERED: %s\n", why->msg);
                rc = 0;
            } else if (!rc && !found) {
                fprintf(out, "signed     no signed head (neither %s/head nor a copy beside the "
                             "key)\n",
                        w.log);
            } else if (!rc) {
                char t[TIME_STR];
                fmt_ms(h.time_ms, t);
                fprintf(out, "signed at  %s\n", t);
                rc = against(&w, &h, "signed", out, tampered, why);
            }
        }
        free(key);
    }
    if (!rc && expect) {
        head_rec h;
        if (head_parse(expect, &h) != 0)
            rc = tk_say(why, TK_EINVAL, "--expect-head takes SEQ:HASH (64 hex digits), as "
                        "check prints them");
        else
            rc = against(&w, &h, "expected", out, tampered, why);
    }
    where_free(&w);
    return rc;
}
