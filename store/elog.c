/*
 * elog.c - the append-only event log; see elog.h for the on-disk format and
 * the contract.
 *
 * How it is built, and why:
 *
 * - Group commit. elog_append only encodes a record into one growing buffer,
 *   computing its CRC and chain hash there; elog_sync hands the whole buffer
 *   to one fio_write_all and one fio_fsync. A batch of 1000 records costs one
 *   write and one fdatasync. When a sync leaves the segment past
 *   segment_bytes, the next sync first starts a new one: create, header
 *   write, fdatasync, directory fsync (a failure there fences too, and the
 *   half-made file is removed, best effort).
 *
 * - Durable and pending state are kept apart. last_seq, hash and seg_size
 *   describe what an fsync has confirmed; next_seq, bhash and buf what is
 *   only buffered. Only a successful sync moves pending into durable, so the
 *   chain never advances over a record that is not on disk. When a write or
 *   fsync fails, the pending records are dropped (next_seq goes back to
 *   last_seq + 1, bhash back to hash), the segment is truncated back to its
 *   last durable size and that truncation fsynced (best effort), and the log
 *   is fenced: every later append or sync returns TK_EFENCED. So after a
 *   reopen the failed batch is absent. Only if the truncation itself fails
 *   can whole records of the failed batch survive a reopen (records that
 *   were never acknowledged); a partial one is then cut as a torn tail.
 *
 * - One reader for recovery and iteration: a walk reads one segment at a
 *   time into memory with read() (not mmap: a reader must not die of SIGBUS
 *   when a file shrinks under it), checks the segment header and every
 *   record (hcrc, length, CRC, seq, chain link) and classifies the first bad
 *   spot as a torn tail or as damage. elog_open walks the whole log: the
 *   last segment first (elog_open_begin: the tail, and the seq and link
 *   its first record claims), then every earlier segment from seq 1 on a
 *   thread of its own, which must end at exactly that seq and link
 *   (elog_open_end waits for it, and only then cuts a torn tail); the
 *   engine loads its state meanwhile. The iterator starts at the segment
 *   holding from_seq and takes that
 *   segment's first record's prev as the starting link: the chain is
 *   verified from the start of that segment (from seq 1 and the all-zero
 *   link when that is the first segment, or from the base's S+1 and H),
 *   not from the start of the log. The base (DIR/base) is read by every
 *   walk's start and nowhere else, so no reader can forget it.
 *   Memory: one segment (segment_bytes plus at most one batch) at a time.
 *   elog_check (for tokenreplay) is elog_open's walk without the lock and
 *   without the cut, reporting where it stopped.
 *
 * - Damage never changes a file. A torn tail is cut only after every record
 *   of every segment has been checked; the cut bytes are saved and fsynced
 *   to DIR/torn-<seq>-<unix time>.bin (a -<k> suffix if that name is
 *   taken: evidence is never overwritten) before the segment is truncated.
 *   Every failure says why in the caller's tk_why (core/err.h).
 *
 * - Torn segment header. A new segment is created, its header written and
 *   fsynced before any record goes in. A crash in between leaves a last
 *   segment shorter than its 16-byte header (often 0 bytes). If those bytes
 *   are a prefix of the header its name calls for, or zeros, this is a torn
 *   tail like any other: the bytes (if any) are saved, the header is
 *   rewritten in place and the log goes on in that segment. Anything else
 *   there is damage ("bad segment header").
 *
 * - Segment names are exactly 20 digits + ".seg"; any other *.seg name is
 *   refused as damage (a renamed or copied segment is not guessed at).
 *   Files not ending in .seg (torn-*.bin, notes) are ignored.
 *
 * - elog_open fdatasyncs the last segment and fsyncs the directory after
 *   recovery, so the records it reports, including any that a crashed
 *   process wrote but never synced, are durable before anyone applies them
 *   to LMDB.
 *
 * - Preallocation. The current segment is kept zero-filled (real zeros,
 *   written: fallocate's unwritten extents would make each fdatasync
 *   convert them) up to PREALLOC bytes past its last record, so a sync
 *   rewrites bytes inside the file and its fdatasync has no file size to
 *   flush: measured here, 0.3 ms against 0.6-1.2 ms for an append. The
 *   zeros are written by plain pwrite outside the fault-injection points
 *   (a failure there fences like any other) and made durable by the next
 *   sync's fdatasync. A zero remainder at the end of the last segment is
 *   therefore free space, not a torn tail: open keeps it (nothing is saved
 *   to a torn-*.bin file), and a roll or a close trims it first, so only the
 *   last segment ever has one.
 *
 * - A write cut short inside preallocated space. A batch's pwrite can stop
 *   part-way: SIGKILL ends a buffered write between pages, and a machine
 *   crash can keep some sectors of a write and not others. Into
 *   preallocated space that leaves a record whose start is there and whose
 *   rest is zeros, so its length or CRC does not check, though nothing is
 *   damaged. In the last segment a record that fails those checks is taken
 *   as such a torn tail when the file is all zeros from a 512-byte boundary
 *   inside that record to its end (512 divides every page and sector size);
 *   anything else stays damage. The bytes are saved like any torn tail.
 *
 * - The directory is flock()ed for the life of an elog: a second writer
 *   (another process, or a second elog_open in this one) gets TK_EIO rather
 *   than interleaving records. Iterators take no lock.
 */
#include "store/elog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "core/crc32c.h"
#include "core/err.h"
#include "core/le.h"
#include "core/xmalloc.h"
#include "core/sha256.h"
#include "store/fio.h"

#define SEG_MAGIC "TKLOG001"
#define SEG_HDR_LEN 16u
#define REC_HDR_LEN 48u   /* len, hcrc, seq, prev */
#define REC_OVERHEAD (REC_HDR_LEN + 4u) /* + trailing crc */
#define REC_BODY_OFF 8u   /* seq||prev||payload starts here */
#define HCRC_XOR 0xA282EAD8u
#define SEG_NAME_DIGITS 20
#define DEFAULT_SEGMENT_BYTES ((uint64_t)64 << 20)
#define BUF_KEEP ((size_t)4 << 20) /* a sync frees a buffer larger than this */
#define PREALLOC ((uint64_t)4 << 20) /* zero-filled space kept ahead of the last record */

/* ---- small helpers --------------------------------------------------- */

static char *seg_path(const char *dir, uint64_t first)
{
    return xasprintf("%s/%020" PRIu64 ".seg", dir, first);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static void seg_header(uint8_t hdr[SEG_HDR_LEN], uint64_t first)
{
    memcpy(hdr, SEG_MAGIC, 8);
    le_put64(hdr + 8, first);
}

static uint32_t len_crc(const uint8_t len_bytes[4])
{
    return crc32c_extend(0, len_bytes, 4) ^ HCRC_XOR;
}

static void damage(tk_why *why, const char *dir, uint64_t seg, size_t off, uint64_t seq,
                   const char *what)
{
    tk_say(why, TK_ECORRUPT, "event log damaged: %s/%020" PRIu64 ".seg offset %zu (record seq "
           "%" PRIu64 "): %s; the records after it cannot be trusted. Keep the directory, then "
           "run: tokenreplay repair --data %s", dir, seg, off, seq, what, dir);
}

/* ---- segment listing ------------------------------------------------- */

typedef struct seglist {
    uint64_t *first; /* first seq of each segment, ascending */
    size_t n;
} seglist;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Parses "%020llu.seg"; false for any other name. */
static bool parse_seg_name(const char *name, uint64_t *first)
{
    uint64_t v = 0;

    if (strlen(name) != SEG_NAME_DIGITS + 4 || strcmp(name + SEG_NAME_DIGITS, ".seg") != 0)
        return false;
    for (int i = 0; i < SEG_NAME_DIGITS; i++) {
        unsigned d = (unsigned)(name[i] - '0');
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *first = v;
    return v != 0;
}

/* Lists the segments of dir. 0, TK_EIO, TK_ECORRUPT (a *.seg file with a
 * name that is not a segment name; that name goes to bad[0..badcap) when
 * bad is not NULL). The caller frees out->first. */
static int list_segments(const char *dir, seglist *out, char *bad, size_t badcap, tk_why *why)
{
    DIR *d;
    struct dirent *e;
    size_t cap = 0;
    int rc = 0;

    out->first = NULL;
    out->n = 0;
    d = opendir(dir);
    if (!d) {
        return tk_say(why, TK_EIO, "event log: cannot read directory %s: %s", dir,
                      strerror(errno));
    }
    while ((e = readdir(d)) != NULL) {
        size_t nl = strlen(e->d_name);
        uint64_t first;
        if (nl < 4 || strcmp(e->d_name + nl - 4, ".seg") != 0)
            continue;
        if (!parse_seg_name(e->d_name, &first)) {
            tk_say(why, TK_ECORRUPT, "event log damaged: %s/%s is not a segment name (20 "
                   "digits, .seg); the log cannot be trusted. Keep the directory, then run: "
                   "tokenreplay repair --data %s", dir, e->d_name, dir);
            if (bad)
                snprintf(bad, badcap, "%s", e->d_name);
            rc = TK_ECORRUPT;
            goto fail;
        }
        if (out->n == cap) {
            cap = cap ? cap * 2 : 16;
            out->first = xrealloc(out->first, cap * sizeof *out->first);
        }
        out->first[out->n++] = first;
    }
    closedir(d);
    if (out->n > 1)
        qsort(out->first, out->n, sizeof *out->first, cmp_u64);
    return 0;
fail:
    closedir(d);
    free(out->first);
    out->first = NULL;
    out->n = 0;
    return rc;
}

/* ---- the walk: reading and checking segments ------------------------- */

enum { WALK_MORE, WALK_END, WALK_FAILED };

typedef struct walk {
    const char *dir;          /* borrowed */
    seglist segs;
    size_t idx;               /* segment in buf (or the next one to load) */
    size_t stop;              /* segments from here on are not walked */
    bool loaded;
    uint8_t *buf;             /* contents of segment idx */
    size_t size, cap, off;    /* off: first byte not yet checked */
    uint64_t seq;             /* seq the next record must carry */
    uint8_t link[ELOG_HASH_LEN]; /* what the next record's prev must be */
    bool link_known;          /* false: take the next record's prev */
    int state;                /* WALK_MORE, then WALK_END or WALK_FAILED */
    int rc;                   /* result repeated once not WALK_MORE */
    bool torn;                /* stopped before a torn tail */
    bool torn_header;         /* ... inside the last segment's header */
    char bad_name[ELOG_NAME_MAX]; /* walk_init: a *.seg name that is not a segment name */
    bool bad_base;            /* walk_init: DIR/base does not check */
    uint64_t base_seq;        /* the log's base (0: none): its first record is base_seq + 1 */
    uint8_t base_hash[ELOG_HASH_LEN]; /* ... and links to this */
    /* The open's fast check (crc_only): each record's CRC, length, seq and
     * framing, but its chain hash only for the last record of each segment
     * (last_body), which the next segment's first prev must match. */
    bool crc_only;
    const uint8_t *last_body; /* into buf: seq||prev||payload of the last record checked */
    size_t last_blen;
    const atomic_bool *stop_flag; /* the scrub's: set, the walk ends as damage-free EIO */
    tk_why why;               /* why it failed */
} walk;

/* The check of the sealed segments (all but the last) runs in up to
 * CHECK_PARTS pieces of consecutive segments, each on a thread: a piece
 * after the first takes its first record's prev on trust (first_link),
 * and the join then checks each piece against the one before it (seq and
 * chain link), and the last against the last segment. */
#define CHECK_PARTS 4

typedef struct check_part {
    walk w;
    pthread_t thread;
    bool running;
    int rc;               /* its result (w.why says why it failed) */
    bool has_first;       /* it held a record: first_link is that record's prev */
    uint8_t first_link[ELOG_HASH_LEN];
    uint64_t start_seq;   /* the seq its first segment's name says */
} check_part;

typedef struct rec {
    uint64_t seq;
    const uint8_t *payload;   /* into walk.buf */
    uint32_t len;
    uint8_t hash[ELOG_HASH_LEN];
} rec;

struct elog {
    char *dir;
    int dfd;            /* directory, held open for the flock */
    int fd;             /* current (last) segment; written with pwrite at seg_size */
    uint64_t alloc_end; /* the file's size: zeros from seg_size to here */
    uint64_t seg_limit;
    uint64_t lookahead; /* zeros laid ahead of the last record: PREALLOC, or less */
    uint64_t seg_size;  /* durable size of the current segment */
    bool need_roll;     /* the next write starts a new segment */
    bool fenced;
    uint64_t last_seq;  /* durable */
    uint8_t hash[ELOG_HASH_LEN]; /* chain hash of record last_seq */
    uint64_t base_seq;  /* DIR/base's seq (0: none) */
    /* Written (elog_write) but not yet flushed: equal to the durable three
     * when nothing waits for an fdatasync. */
    uint64_t wr_size, wr_seq;
    uint8_t wr_hash[ELOG_HASH_LEN];
    /* elog_flush may run on a thread other than the writer's: mu guards the
     * durable and written fields, fd and fenced; `flushing` is set while an
     * fdatasync runs outside mu (one at a time, and no roll meanwhile). */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool flushing;
    uint64_t next_seq;  /* pending: seq of the next append */
    uint8_t bhash[ELOG_HASH_LEN]; /* chain hash of the last buffered record */
    uint8_t *buf;       /* encoded records not yet synced */
    size_t blen, bcap;
    /* Between elog_open_begin and elog_open_end. */
    walk *tail;         /* the last segment's walk, its tail not cut yet */
    bool tail_linked;   /* the last segment has a record: in_link is its prev */
    uint8_t in_link[ELOG_HASH_LEN];
    check_part part[CHECK_PARTS]; /* the sealed segments' check, in nparts pieces */
    size_t nparts;
    bool joined;        /* parts_join ran: its result is sealed_rc, sealed_why */
    int sealed_rc;
    tk_why sealed_why;
    bool full_check;    /* opts->check == ELOG_CHECK_FULL */
    uint64_t sealed_seq; /* after the check: the seq the last segment starts at ... */
    uint8_t sealed_link[ELOG_HASH_LEN]; /* ... and the chain hash of the record before it */
    /* The scrub: the full chain of the sealed segments, after a fast open. */
    elog_scrub_fn on_scrub;
    void *scrub_arg;
    bool scrubbing;
    pthread_t scrubber;
    atomic_bool scrub_stop;
    walk scrub;
};

/* Sets w up to walk from the segment that holds from_seq: from the base
 * (seq 1 and the zero link without one) when that is the first segment.
 * 0, TK_EIO, TK_ECORRUPT (a bad segment name, or a base that does not
 * check: bad_base). */
static int walk_init(walk *w, const char *dir, uint64_t from_seq)
{
    int rc;

    memset(w, 0, sizeof *w);
    w->dir = dir;
    rc = elog_base_read(dir, &w->base_seq, w->base_hash, &w->why);
    if (rc == TK_ECORRUPT || rc == TK_EIO) {
        w->bad_base = rc == TK_ECORRUPT;
        return rc;
    }
    w->seq = w->base_seq + 1;
    memcpy(w->link, w->base_hash, ELOG_HASH_LEN);
    w->link_known = true;
    rc = list_segments(dir, &w->segs, w->bad_name, sizeof w->bad_name, &w->why);
    if (rc != 0)
        return rc;
    w->stop = w->segs.n;
    /* The last segment whose first seq <= from_seq; the first one starts
     * the log, so it is checked against the base (or seq 1 and the zero
     * link). */
    for (size_t i = 1; i < w->segs.n && w->segs.first[i] <= from_seq; i++) {
        w->idx = i;
        w->seq = w->segs.first[i];
        w->link_known = false;
    }
    return 0;
}

static void walk_free(walk *w)
{
    free(w->segs.first);
    free(w->buf);
    w->segs.first = NULL;
    w->buf = NULL;
}

static bool walk_in_last(const walk *w)
{
    return w->idx + 1 == w->segs.n;
}

/* Reads segment idx into buf. 0 or TK_EIO. */
static int walk_read(walk *w)
{
    char *path = seg_path(w->dir, w->segs.first[w->idx]);
    struct stat st;
    int fd, rc = TK_EIO;
    size_t got = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        tk_say(&w->why, TK_EIO, "event log: cannot read %s: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        tk_say(&w->why, TK_EIO, "event log: %s is not a regular file", path);
        goto fail;
    }
    if ((uintmax_t)st.st_size > SIZE_MAX / 2) {
        tk_say(&w->why, TK_EIO, "event log: %s is too large", path);
        goto fail;
    }
    if (!w->buf || (size_t)st.st_size > w->cap) {
        free(w->buf);
        w->cap = st.st_size > 0 ? (size_t)st.st_size : 1;
        w->buf = xmalloc(w->cap);
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, w->buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            tk_say(&w->why, TK_EIO, "event log: cannot read %s: %s", path, strerror(errno));
            goto fail;
        }
        if (n == 0)
            break; /* shrank under us: take what is there */
        got += (size_t)n;
    }
    w->size = got;
    w->off = 0;
    rc = 0;
fail:
    if (fd >= 0)
        close(fd);
    free(path);
    return rc;
}

/* Loads segment idx and checks its header. 0 (w->off past the header, or
 * w->torn_header set), TK_EIO, TK_ECORRUPT. */
static int walk_load(walk *w)
{
    uint64_t first = w->segs.first[w->idx];
    uint8_t hdr[SEG_HDR_LEN];
    int rc;

    if (first != w->seq) {
        char what[160];
        if (w->idx == 0 && w->base_seq)
            snprintf(what, sizeof what, "seq gap: the log's base (base) says its first "
                     "event is %" PRIu64 ", but its first segment starts at %" PRIu64, w->seq,
                     first);
        else if (w->idx == 0)
            snprintf(what, sizeof what, "seq gap: the log starts at event %" PRIu64
                     " with no base file: its first segments, or its base (from a "
                     "snapshot), are missing", first);
        else
            snprintf(what, sizeof what, "seq gap");
        damage(&w->why, w->dir, first, 0, w->seq, what);
        return TK_ECORRUPT;
    }
    rc = walk_read(w);
    if (rc != 0)
        return rc;
    w->loaded = true;
    seg_header(hdr, first);
    if (w->size < SEG_HDR_LEN) {
        if (walk_in_last(w) &&
            (memcmp(w->buf, hdr, w->size) == 0 || all_zero(w->buf, w->size))) {
            w->torn = w->torn_header = true;
            return 0;
        }
        damage(&w->why, w->dir, first, 0, w->seq, "bad segment header");
        return TK_ECORRUPT;
    }
    if (memcmp(w->buf, hdr, SEG_HDR_LEN) != 0) {
        damage(&w->why, w->dir, first, 0, w->seq, "bad segment header");
        return TK_ECORRUPT;
    }
    w->off = SEG_HDR_LEN;
    return 0;
}

enum { REC_OK, REC_END, REC_TORN, REC_BAD };

#define CUT_ALIGN 512u /* the smallest unit a write is cut at (see the top) */

/* The first CUT_ALIGN boundary from which the loaded segment holds only
 * zeros up to its end (past w->off; it may lie beyond w->size). */
static size_t zeros_from(const walk *w)
{
    size_t z = w->size;

    while (z > w->off && w->buf[z - 1] == 0)
        z--;
    return (z + CUT_ALIGN - 1) / CUT_ALIGN * CUT_ALIGN;
}

/* True when the bad record at w->off, which ends at rec_end as far as its
 * header tells (w->off + 8 when the header itself is bad), is a write cut
 * short: the file is zeros from a CUT_ALIGN boundary inside the record to
 * its end. */
static bool cut_write(const walk *w, size_t rec_end)
{
    size_t b = zeros_from(w);
    return b > w->off && b < rec_end && b < w->size;
}

/* Checks the record at w->off of the loaded segment. On REC_BAD, *why
 * names the problem. */
static int check_record(const walk *w, rec *r, size_t *end, const char **why)
{
    const uint8_t *p = w->buf + w->off, *body;
    size_t left = w->size - w->off, blen;
    bool last = walk_in_last(w);
    uint32_t len;

    if (left == 0)
        return REC_END;
    if (last && all_zero(p, left))
        return REC_TORN;
    if (left < 8) {
        *why = "truncated record";
        return last ? REC_TORN : REC_BAD;
    }
    len = le_get32(p);
    if (len_crc(p) != le_get32(p + 4) || len > ELOG_MAX_PAYLOAD) {
        *why = "bad length header";
        return last && cut_write(w, w->off + 8) ? REC_TORN : REC_BAD;
    }
    if (REC_OVERHEAD + (size_t)len > left) {
        *why = "truncated record";
        return last ? REC_TORN : REC_BAD;
    }
    body = p + REC_BODY_OFF;
    blen = 8 + ELOG_HASH_LEN + (size_t)len;
    if (crc32c_extend(0, body, blen) != le_get32(body + blen)) {
        *why = "crc mismatch";
        return last && cut_write(w, w->off + REC_OVERHEAD + len) ? REC_TORN : REC_BAD;
    }
    if (le_get64(body) != w->seq) {
        *why = "seq gap";
        return REC_BAD;
    }
    if (w->link_known && memcmp(body + 8, w->link, ELOG_HASH_LEN) != 0) {
        *why = w->base_seq && w->seq == w->base_seq + 1
                   ? "broken hash chain: the first record does not link to the base's chain hash"
                   : "broken hash chain";
        return REC_BAD;
    }
    r->seq = w->seq;
    r->payload = body + 8 + ELOG_HASH_LEN;
    r->len = len;
    if (!w->crc_only)
        sha256(r->hash, body, blen);
    *end = w->off + REC_OVERHEAD + len;
    return REC_OK;
}

/* A crc_only walk at the end of a segment: the chain hash of its last
 * record, which the next record's prev must match. */
static void seal_link(walk *w)
{
    if (!w->crc_only || !w->last_body)
        return;
    sha256(w->link, w->last_body, w->last_blen);
    w->link_known = true;
    w->last_body = NULL;
}

/* Next record of the walk: 1 (*r set, borrowed until the next call), 0 at
 * the end or before a torn tail (w->torn), TK_ECORRUPT, TK_EIO. Once it
 * has returned something other than 1 it keeps returning that. */
static int walk_next(walk *w, rec *r)
{
    const char *why = "";
    size_t end = 0;
    int rc;

    while (w->state == WALK_MORE) {
        if (w->stop_flag && atomic_load_explicit(w->stop_flag, memory_order_relaxed)) {
            w->state = WALK_FAILED;
            w->rc = TK_EBUSY;
            tk_say(&w->why, TK_EBUSY, "event log: the check was stopped");
            break;
        }
        if (!w->loaded) {
            if (w->idx >= w->stop) {
                w->state = WALK_END;
                break;
            }
            rc = walk_load(w);
            if (rc != 0) {
                w->state = WALK_FAILED;
                w->rc = rc;
                break;
            }
            if (w->torn) {
                w->state = WALK_END;
                break;
            }
        }
        switch (check_record(w, r, &end, &why)) {
        case REC_OK:
            w->off = end;
            w->seq++;
            if (w->crc_only) {
                w->last_body = r->payload - ELOG_HASH_LEN - 8;
                w->last_blen = 8 + ELOG_HASH_LEN + r->len;
                w->link_known = false;
            } else {
                memcpy(w->link, r->hash, ELOG_HASH_LEN);
                w->link_known = true;
            }
            return 1;
        case REC_END:
            seal_link(w);
            if (walk_in_last(w)) {
                w->state = WALK_END;
            } else {
                w->idx++;
                w->loaded = false;
            }
            break;
        case REC_TORN:
            seal_link(w);
            w->torn = true;
            w->state = WALK_END;
            break;
        default:
            damage(&w->why, w->dir, w->segs.first[w->idx], w->off, w->seq, why);
            w->state = WALK_FAILED;
            w->rc = TK_ECORRUPT;
            break;
        }
    }
    return w->state == WALK_END ? 0 : w->rc;
}

/* ---- writing segments ------------------------------------------------ */

/* Creates (or, with O_TRUNC, rewrites) the segment file at path with its
 * header, fdatasynced. *fd is set as soon as the file is open, even on
 * failure; the caller closes it. 0 or TK_EIO. */
static int create_segment(const char *path, uint64_t first, int flags, int *fd, tk_why *why)
{
    uint8_t hdr[SEG_HDR_LEN];

    seg_header(hdr, first);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | flags, 0600);
    if (*fd < 0 || fio_write_all(*fd, hdr, sizeof hdr) != 0 || fio_fsync(*fd) != 0) {
        int err = errno;
        tk_say(why, TK_EIO, "event log: cannot create %s: %s", path, strerror(err));
        errno = err;
        return TK_EIO;
    }
    return 0;
}

/* Saves the bytes cut off a torn tail to dir/torn-<seq>-<unix time>.bin
 * (a -<k> suffix if that name is taken), fsynced. 0 or TK_EIO. */
static int save_torn(const char *dir, uint64_t seq, const uint8_t *bytes, size_t n,
                     tk_why *why)
{
    long long now = (long long)time(NULL);
    char *path = NULL;
    int fd = -1, rc = TK_EIO;

    for (int k = 0; k < 100 && fd < 0; k++) {
        free(path);
        path = k == 0 ? xasprintf("%s/torn-%" PRIu64 "-%lld.bin", dir, seq, now)
                      : xasprintf("%s/torn-%" PRIu64 "-%lld-%d.bin", dir, seq, now, k);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0 || fio_write_all(fd, bytes, n) != 0 || fio_fsync(fd) != 0 ||
        fio_fsync_dir(dir) != 0) {
        tk_say(why, TK_EIO, "event log: cannot save the torn tail to %s: %s", path,
               strerror(errno));
        goto fail;
    }
    rc = 0;
fail:
    if (fd >= 0)
        close(fd);
    free(path);
    return rc;
}

/* Creates dir (0700) if missing, fsyncing its parent. 0 or TK_EIO. */
static int make_dir(const char *dir, tk_why *why)
{
    char *parent;
    size_t n;
    int rc = 0;

    if (mkdir(dir, 0700) != 0) {
        if (errno == EEXIST)
            return 0;
        return tk_say(why, TK_EIO, "event log: cannot create directory %s: %s", dir,
                      strerror(errno));
    }
    parent = xstrdup(dir);
    n = strlen(parent);
    while (n > 1 && parent[n - 1] == '/')
        parent[--n] = '\0';
    while (n > 0 && parent[n - 1] != '/')
        n--;
    if (n == 0)
        strcpy(parent, ".");
    else
        parent[n > 1 ? n - 1 : 1] = '\0';
    if (fio_fsync_dir(parent) != 0) {
        rc = tk_say(why, TK_EIO, "event log: cannot fsync directory %s: %s", parent,
                    strerror(errno));
    }
    free(parent);
    return rc;
}

/* Makes the recovered last segment the one to append to: cuts a torn tail
 * (saving the bytes first), rewrites a torn header, creates segment 1 in an
 * empty log, then makes it all durable. Fills lg->fd, seg_size. */
static int open_tail(elog *lg, walk *w, tk_why *why)
{
    uint64_t first = w->segs.n ? w->segs.first[w->segs.n - 1] : w->seq; /* base + 1 */
    char *path = seg_path(lg->dir, first);
    int rc;

    if (w->segs.n == 0 || w->torn_header) {
        if (w->torn_header && w->size > 0 &&
            (rc = save_torn(lg->dir, first, w->buf, w->size, why)) != 0)
            goto fail;
        rc = create_segment(path, first, w->segs.n ? O_TRUNC : O_EXCL, &lg->fd, why);
        if (rc != 0)
            goto fail;
        lg->seg_size = lg->alloc_end = SEG_HDR_LEN;
    } else {
        /* Zeros after the last record are preallocated space, kept. A cut
         * tail is saved up to the CUT_ALIGN boundary after its last
         * nonzero byte: the rest is preallocated zeros, not evidence. */
        bool cut = w->torn && !all_zero(w->buf + w->off, w->size - w->off);
        size_t keep = zeros_from(w) < w->size ? zeros_from(w) : w->size;
        if (cut && (rc = save_torn(lg->dir, w->seq, w->buf + w->off, keep - w->off, why)) != 0)
            goto fail;
        lg->fd = open(path, O_RDWR | O_CLOEXEC);
        if (lg->fd < 0 || (cut && ftruncate(lg->fd, (off_t)w->off) != 0) ||
            fio_fsync(lg->fd) != 0) {
            rc = tk_say(why, TK_EIO, "event log: cannot recover %s: %s", path, strerror(errno));
            goto fail;
        }
        lg->seg_size = w->off;
        lg->alloc_end = cut ? w->off : w->size;
    }
    if (fio_fsync_dir(lg->dir) != 0) {
        rc = tk_say(why, TK_EIO, "event log: cannot fsync directory %s: %s", lg->dir,
                    strerror(errno));
        goto fail;
    }
    rc = 0;
fail:
    free(path);
    return rc;
}

/* ---- the writer ------------------------------------------------------ */

/* True when the next sync must start a new segment. A segment without
 * records never is: the new one would have its name. */
static bool seg_full(const elog *lg)
{
    return lg->wr_size > lg->seg_limit && lg->wr_size > SEG_HDR_LEN;
}

/* ---- the check of the sealed segments -------------------------------- */

/* Walks one piece of the sealed segments to its end (a thread's body). */
static void *part_run(void *arg)
{
    check_part *p = arg;
    rec r;
    int rc;

    while ((rc = walk_next(&p->w, &r)) == 1)
        if (!p->has_first) {
            memcpy(p->first_link, r.payload - ELOG_HASH_LEN, ELOG_HASH_LEN);
            p->has_first = true;
        }
    p->rc = rc; /* and p->w.why says why */
    return NULL;
}

/* Cuts the nsealed sealed segments into pieces, one per core (at most
 * CHECK_PARTS), and starts them: on threads when threads is set (the
 * caller goes on meanwhile), else here, one after another. crc_only: the
 * open's fast check (see walk). 0, or TK_EIO / TK_ECORRUPT from listing
 * the directory (why says why). */
static int parts_start(elog *lg, size_t nsealed, bool crc_only, bool threads, tk_why *why)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t n = cpus < 1 ? 1 : (size_t)cpus;

    if (n > CHECK_PARTS)
        n = CHECK_PARTS;
    if (n > nsealed)
        n = nsealed;
    for (size_t i = 0; i < n; i++) {
        check_part *p = &lg->part[i];
        walk *w = &p->w;
        size_t lo = nsealed * i / n, hi = nsealed * (i + 1) / n;
        int rc = walk_init(w, lg->dir, 1);
        lg->nparts = i + 1;
        if (rc == 0 && w->segs.n != nsealed + 1) /* the directory changed under us */
            rc = tk_say(&w->why, TK_EIO, "event log: %s changed while it was opened", lg->dir);
        if (rc != 0) {
            if (why)
                *why = w->why;
            for (size_t j = 0; j <= i; j++)
                walk_free(&lg->part[j].w);
            lg->nparts = 0;
            return rc;
        }
        if (lo > 0) {
            w->idx = lo;
            w->seq = w->segs.first[lo];
            w->link_known = false;
        }
        w->stop = hi;
        w->crc_only = crc_only;
        p->start_seq = w->seq;
    }
    for (size_t i = 0; i < n; i++) {
        check_part *p = &lg->part[i];
        if (threads && pthread_create(&p->thread, NULL, part_run, p) == 0)
            p->running = true;
        else
            part_run(p);
    }
    return 0;
}

/* Waits for the pieces and joins their results: each must begin where the
 * one before it ended (seq and chain link), and the last where the last
 * segment begins (its first seq, and the link its first record carries).
 * The first damage in log order is reported. Once: the result is kept. */
static int parts_join(elog *lg, tk_why *why)
{
    uint64_t seq = 0, last_first;
    uint8_t link[ELOG_HASH_LEN] = {0};
    int rc = 0;

    if (lg->joined) {
        if (lg->sealed_rc != 0 && why)
            *why = lg->sealed_why;
        return lg->sealed_rc;
    }
    for (size_t i = 0; i < lg->nparts; i++)
        if (lg->part[i].running) {
            pthread_join(lg->part[i].thread, NULL);
            lg->part[i].running = false;
        }
    for (size_t i = 0; i < lg->nparts && rc == 0; i++) {
        check_part *p = &lg->part[i];
        walk *w = &p->w;
        if (i > 0 && seq != p->start_seq) {
            damage(&lg->sealed_why, lg->dir, p->start_seq, 0, seq, "seq gap");
            rc = TK_ECORRUPT;
        } else if (i > 0 && p->has_first && memcmp(link, p->first_link, ELOG_HASH_LEN) != 0) {
            damage(&lg->sealed_why, lg->dir, p->start_seq, SEG_HDR_LEN, p->start_seq,
                   "broken hash chain");
            rc = TK_ECORRUPT;
        } else if (p->rc != 0) {
            lg->sealed_why = w->why;
            rc = p->rc;
        } else {
            seq = w->seq;
            if (w->link_known) /* the first piece starts known; an empty one passes it on */
                memcpy(link, w->link, ELOG_HASH_LEN);
        }
    }
    if (rc == 0 && lg->nparts > 0) {
        last_first = lg->part[0].w.segs.first[lg->part[0].w.segs.n - 1];
        if (seq != last_first) {
            damage(&lg->sealed_why, lg->dir, last_first, 0, seq, "seq gap");
            rc = TK_ECORRUPT;
        } else if (lg->tail_linked && memcmp(link, lg->in_link, ELOG_HASH_LEN) != 0) {
            damage(&lg->sealed_why, lg->dir, last_first, SEG_HDR_LEN, last_first,
                   "broken hash chain");
            rc = TK_ECORRUPT;
        }
        lg->sealed_seq = seq;
        memcpy(lg->sealed_link, link, ELOG_HASH_LEN);
    }
    for (size_t i = 0; i < lg->nparts; i++)
        walk_free(&lg->part[i].w); /* a segment's buffer each: give it back now */
    lg->joined = true;
    lg->sealed_rc = rc;
    if (rc != 0 && why)
        *why = lg->sealed_why;
    return rc;
}

/* ---- the scrub -------------------------------------------------------- */

/* After a fast open: the whole chain of the sealed segments, from seq 1,
 * on a thread that takes only otherwise idle CPU (SCHED_IDLE), so that
 * serving never waits for it. It must end where the open's check did. */
static void *scrub_run(void *arg)
{
    elog *lg = arg;
    walk *w = &lg->scrub;
    struct sched_param sp = {0};
    struct timespec t0, t1;
    rec r;
    int rc;

    /* Best effort, both: the CPU and the disk that nothing else wants
     * (ioprio: the idle class, for this thread; schedulers without
     * classes ignore it). */
    (void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
    (void)syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0 /* this thread */,
                  3 << 13 /* IOPRIO_CLASS_IDLE */);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while ((rc = walk_next(w, &r)) == 1)
        ;
    if (rc == 0 && w->seq != lg->sealed_seq) {
        damage(&w->why, lg->dir, lg->sealed_seq, 0, w->seq, "seq gap");
        rc = TK_ECORRUPT;
    } else if (rc == 0 && memcmp(w->link, lg->sealed_link, ELOG_HASH_LEN) != 0) {
        damage(&w->why, lg->dir, lg->sealed_seq, SEG_HDR_LEN, lg->sealed_seq,
               "broken hash chain");
        rc = TK_ECORRUPT;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (lg->on_scrub)
        lg->on_scrub(lg->scrub_arg, rc, rc == 0 ? w->seq - 1 : 0,
                     (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
                     &w->why);
    walk_free(w);
    return NULL;
}

/* Starts the scrub of the sealed segments the open's fast check read. */
static void scrub_start(elog *lg)
{
    walk *w = &lg->scrub;
    if (lg->full_check || lg->sealed_seq == 0)
        return;
    if (walk_init(w, lg->dir, 1) != 0 || w->segs.n == 0
        || w->segs.first[w->segs.n - 1] != lg->sealed_seq) {
        walk_free(w); /* the directory moved under the open: the next open checks it */
        return;
    }
    w->stop = w->segs.n - 1;
    w->stop_flag = &lg->scrub_stop;
    if (pthread_create(&lg->scrubber, NULL, scrub_run, lg) == 0)
        lg->scrubbing = true;
    else
        walk_free(w);
}

int elog_open_begin(const char *dir, const elog_opts *opts, elog **out, tk_why *why)
{
    elog *lg = xcalloc(1, sizeof *lg);
    walk *w;
    rec r;
    int rc;

    lg->dfd = lg->fd = -1;
    pthread_mutex_init(&lg->mu, NULL);
    pthread_cond_init(&lg->cv, NULL);
    lg->lookahead = PREALLOC;
    lg->dir = xstrdup(dir);
    lg->seg_limit = opts && opts->segment_bytes ? opts->segment_bytes : DEFAULT_SEGMENT_BYTES;
    lg->full_check = opts && opts->check == ELOG_CHECK_FULL;
    lg->on_scrub = opts ? opts->on_scrub : NULL;
    lg->scrub_arg = opts ? opts->scrub_arg : NULL;
    w = lg->tail = xcalloc(1, sizeof *lg->tail);
    if (sodium_init() < 0) {
        rc = tk_say(why, TK_EIO, "event log: libsodium failed to initialise");
        goto fail;
    }
    if ((rc = make_dir(dir, why)) != 0)
        goto fail;
    lg->dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (lg->dfd < 0) {
        rc = tk_say(why, TK_EIO, "event log: cannot open directory %s: %s", dir,
                    strerror(errno));
        goto fail;
    }
    if (flock(lg->dfd, LOCK_EX | LOCK_NB) != 0) {
        rc = tk_say(why, TK_EIO, "event log: %s is in use by another writer (%s)", dir,
                    strerror(errno));
        goto fail;
    }
    /* The last segment first: it holds the tail, and the records a crash
     * may have left unsynced. Its first record's prev is taken on trust
     * until the sealed segments' check confirms it. */
    if ((rc = walk_init(w, lg->dir, UINT64_MAX)) != 0)
        goto walk_failed;
    lg->base_seq = w->base_seq;
    while ((rc = walk_next(w, &r)) == 1)
        if (r.seq == w->segs.first[w->idx]) {
            memcpy(lg->in_link, r.payload - ELOG_HASH_LEN, ELOG_HASH_LEN);
            lg->tail_linked = true;
        }
    if (rc == TK_ECORRUPT && w->segs.n > 1) {
        /* Name the first damage, as a walk from seq 1 would: check the
         * earlier segments too (every link), here, before failing. */
        tk_why early;
        if (parts_start(lg, w->segs.n - 1, false, false, &early) == 0
            && parts_join(lg, &early) != 0) {
            rc = lg->sealed_rc;
            if (why)
                *why = early;
            goto fail;
        }
    }
    if (rc != 0)
        goto walk_failed;
    /* What the walk reports is applied to LMDB before elog_open_end: make
     * it durable now (the cut of a torn tail waits for the verdict). */
    if (w->segs.n > 0) {
        char *path = seg_path(lg->dir, w->segs.first[w->segs.n - 1]);
        int fd = open(path, O_RDWR | O_CLOEXEC);
        bool ok = fd >= 0 && fio_fsync(fd) == 0;
        if (!ok)
            tk_say(why, TK_EIO, "event log: cannot sync %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        free(path);
        if (!ok) {
            rc = TK_EIO;
            goto fail;
        }
    }
    lg->last_seq = w->seq - 1;
    if (w->segs.n > 1 && (rc = parts_start(lg, w->segs.n - 1, !lg->full_check, true, why)))
        goto fail;
    *out = lg;
    return 0;
walk_failed:
    if (why)
        *why = w->why;
fail:
    elog_close(lg);
    *out = NULL;
    return rc;
}

int elog_open_end(elog *lg, tk_why *why)
{
    walk *w = lg->tail;
    int rc;

    if ((rc = parts_join(lg, why)) != 0)
        return rc;
    if ((rc = open_tail(lg, w, why)) != 0)
        return rc;
    lg->last_seq = w->seq - 1;
    /* The chain hash of the last record: the last segment's own, or, when
     * it holds none, where the sealed segments end. */
    if (w->link_known)
        memcpy(lg->hash, w->link, ELOG_HASH_LEN);
    else
        memcpy(lg->hash, lg->sealed_link, ELOG_HASH_LEN);
    lg->next_seq = w->seq;
    memcpy(lg->bhash, lg->hash, ELOG_HASH_LEN);
    lg->wr_size = lg->seg_size;
    lg->wr_seq = lg->last_seq;
    memcpy(lg->wr_hash, lg->hash, ELOG_HASH_LEN);
    lg->need_roll = seg_full(lg);
    walk_free(w);
    free(w);
    lg->tail = NULL;
    scrub_start(lg);
    return 0;
}

int elog_open(const char *dir, const elog_opts *opts, elog **out, tk_why *why)
{
    int rc = elog_open_begin(dir, opts, out, why);
    if (rc == 0 && (rc = elog_open_end(*out, why)) != 0) {
        elog_close(*out);
        *out = NULL;
    }
    return rc;
}

/* Drops the preallocated zeros after the last record (before a roll, and
 * at close, so only a running log's last segment has them). */
static int trim(elog *lg)
{
    if (lg->alloc_end == lg->seg_size)
        return 0;
    if (ftruncate(lg->fd, (off_t)lg->seg_size) != 0 || fio_fsync(lg->fd) != 0)
        return TK_EIO;
    lg->alloc_end = lg->seg_size;
    return 0;
}

/* Zero-fills the current segment so that `need` bytes fit, and the
 * look-ahead more (not past the segment limit). Durable with the next
 * fdatasync. */
static int prealloc(elog *lg, uint64_t need)
{
    static const uint8_t zeros[1 << 16];
    uint64_t end = lg->alloc_end + lg->lookahead;
    if (end > lg->seg_limit)
        end = lg->seg_limit;
    if (end < need)
        end = need;
    for (uint64_t off = lg->alloc_end; off < end;) {
        size_t n = end - off < sizeof zeros ? (size_t)(end - off) : sizeof zeros;
        ssize_t w = pwrite(lg->fd, zeros, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return TK_EIO;
        off += (uint64_t)w;
        lg->alloc_end = off;
    }
    return 0;
}

void elog_close(elog *lg)
{
    if (!lg)
        return;
    (void)parts_join(lg, NULL);
    if (lg->scrubbing) {
        atomic_store(&lg->scrub_stop, true);
        pthread_join(lg->scrubber, NULL);
    }
    if (lg->tail) {
        walk_free(lg->tail);
        free(lg->tail);
    }
    if (lg->fd >= 0 && !lg->fenced)
        (void)trim(lg); /* best effort: a log left with zeros opens all the same */
    if (lg->fd >= 0)
        close(lg->fd);
    if (lg->dfd >= 0)
        close(lg->dfd); /* releases the flock */
    free(lg->buf);
    free(lg->dir);
    pthread_mutex_destroy(&lg->mu);
    pthread_cond_destroy(&lg->cv);
    free(lg);
}

uint64_t elog_last_seq(const elog *lg)
{
    return __atomic_load_n(&lg->last_seq, __ATOMIC_ACQUIRE);
}

void elog_durable_head(elog *lg, uint64_t *seq, uint8_t hash[ELOG_HASH_LEN])
{
    pthread_mutex_lock(&lg->mu);
    *seq = lg->last_seq;
    memcpy(hash, lg->hash, ELOG_HASH_LEN);
    pthread_mutex_unlock(&lg->mu);
}

uint64_t elog_base_seq(const elog *lg)
{
    return lg->base_seq;
}

uint64_t elog_next_seq(const elog *lg)
{
    return lg->next_seq;
}

bool elog_scrub_started(const elog *lg)
{
    return lg->scrubbing;
}

bool elog_fenced(const elog *lg)
{
    return __atomic_load_n(&lg->fenced, __ATOMIC_ACQUIRE);
}

const uint8_t *elog_head_hash(const elog *lg)
{
    return lg->bhash;
}

int elog_append(elog *lg, const void *payload, size_t len, uint64_t *seq)
{
    size_t need, blen;
    uint8_t *p, *body;

    if (elog_fenced(lg))
        return TK_EFENCED;
    if (len > ELOG_MAX_PAYLOAD)
        return TK_ELIMIT;
    need = lg->blen + REC_OVERHEAD + len;
    if (need > lg->bcap) {
        size_t cap = lg->bcap ? lg->bcap : 64 * 1024;
        while (cap < need)
            cap *= 2;
        lg->buf = xrealloc(lg->buf, cap);
        lg->bcap = cap;
    }
    p = lg->buf + lg->blen;
    body = p + REC_BODY_OFF;
    blen = 8 + ELOG_HASH_LEN + len;
    le_put32(p, (uint32_t)len);
    le_put32(p + 4, len_crc(p));
    le_put64(body, lg->next_seq);
    memcpy(body + 8, lg->bhash, ELOG_HASH_LEN);
    if (len)
        memcpy(body + 8 + ELOG_HASH_LEN, payload, len);
    le_put32(body + blen, crc32c_extend(0, body, blen));
    sha256(lg->bhash, body, blen);
    lg->blen = need;
    if (seq)
        *seq = lg->next_seq;
    lg->next_seq++;
    return 0;
}

/* Starts segment last_seq + 1: create, header, fdatasync, directory fsync.
 * On failure the new file is removed (best effort). 0, TK_ENOSPC (no room
 * for the new segment; errno says which) or TK_EIO. */
static int roll(elog *lg, tk_why *why)
{
    uint64_t first = lg->last_seq + 1;
    char *path = seg_path(lg->dir, first);
    int fd = -1, rc;

    /* The segment being left keeps no zeros: only the last one may. */
    rc = trim(lg);
    if (rc == 0 && (rc = create_segment(path, first, O_EXCL, &fd, why)) != 0
        && (errno == ENOSPC || errno == EDQUOT))
        rc = TK_ENOSPC; /* no room for the new file, which is removed: nothing changed */
    if (rc == 0 && fio_fsync_dir(lg->dir) != 0)
        rc = tk_say(why, TK_EIO, "event log: cannot fsync directory %s: %s", lg->dir,
                    strerror(errno));
    if (rc == TK_EIO && why && !why->msg[0])
        tk_say(why, rc, "event log: cannot start a new segment in %s: %s", lg->dir,
               strerror(errno));
    if (rc != 0)
        goto fail;
    close(lg->fd);
    lg->fd = fd;
    lg->seg_size = lg->alloc_end = lg->wr_size = SEG_HDR_LEN;
    lg->need_roll = false;
    free(path);
    return 0;
fail:;
    int err = errno; /* the failure's, for the caller */
    if (fd >= 0) {
        close(fd);
        unlink(path); /* we created it (O_EXCL); a leftover is a torn header */
    }
    free(path);
    errno = err;
    return rc;
}

void elog_set_lookahead(elog *lg, uint64_t bytes)
{
    lg->lookahead = bytes < PREALLOC ? bytes : PREALLOC;
}

size_t elog_pending(const elog *lg)
{
    return lg->blen;
}

void elog_discard(elog *lg)
{
    lg->blen = 0;
    pthread_mutex_lock(&lg->mu);
    lg->next_seq = lg->wr_seq + 1;
    memcpy(lg->bhash, lg->wr_hash, ELOG_HASH_LEN);
    pthread_mutex_unlock(&lg->mu);
}

static bool no_room(int err)
{
    return err == ENOSPC || err == EDQUOT;
}

/* Makes the written records durable: the caller holds mu, no flush runs,
 * and written is ahead of durable. mu is released around the fdatasync. On
 * failure the segment is cut back to its durable size (made durable too,
 * best effort) and the log fenced: pages of records never acknowledged must
 * not come back after a crash. */
static int flush_locked(elog *lg, tk_why *why)
{
    uint64_t size = lg->wr_size, seq = lg->wr_seq;
    uint8_t hash[ELOG_HASH_LEN];
    int fd = lg->fd;
    memcpy(hash, lg->wr_hash, ELOG_HASH_LEN);
    lg->flushing = true;
    pthread_mutex_unlock(&lg->mu);
    int rc = fio_fsync(fd);
    int err = errno;
    pthread_mutex_lock(&lg->mu);
    lg->flushing = false;
    pthread_cond_broadcast(&lg->cv);
    if (lg->fenced) /* a failed write meanwhile cut what this flush covered */
        return tk_say(why, TK_EIO, "event log: a write in %s failed during the fsync", lg->dir);
    if (rc != 0) {
        tk_say(why, TK_EIO, "event log: cannot fsync the last segment in %s: %s", lg->dir,
               strerror(err));
        if (ftruncate(lg->fd, (off_t)lg->seg_size) == 0)
            (void)fio_fsync(lg->fd);
        lg->alloc_end = lg->wr_size = lg->seg_size;
        lg->wr_seq = lg->last_seq;
        memcpy(lg->wr_hash, lg->hash, ELOG_HASH_LEN);
        __atomic_store_n(&lg->fenced, true, __ATOMIC_RELEASE);
        errno = err;
        return TK_EIO;
    }
    if (seq > lg->last_seq) {
        lg->seg_size = size;
        memcpy(lg->hash, hash, ELOG_HASH_LEN);
        __atomic_store_n(&lg->last_seq, seq, __ATOMIC_RELEASE);
    }
    return 0;
}

int elog_flush(elog *lg, tk_why *why)
{
    int rc = 0;
    if (why)
        why->msg[0] = '\0';
    pthread_mutex_lock(&lg->mu);
    while (lg->flushing)
        pthread_cond_wait(&lg->cv, &lg->mu);
    if (lg->fenced)
        rc = tk_say(why, TK_EFENCED, "event log: fenced after an earlier failure");
    else if (lg->wr_seq > lg->last_seq)
        rc = flush_locked(lg, why);
    pthread_mutex_unlock(&lg->mu);
    return rc;
}

int elog_write(elog *lg, tk_why *why)
{
    int rc = 0;

    if (elog_fenced(lg)) {
        elog_discard(lg);
        return TK_EFENCED;
    }
    if (lg->blen == 0)
        return 0;
    if (why)
        why->msg[0] = '\0';
    pthread_mutex_lock(&lg->mu);
    if (lg->need_roll) {
        /* A new segment only once the one being left is all durable, and
         * with no fdatasync on its descriptor. */
        while (lg->flushing)
            pthread_cond_wait(&lg->cv, &lg->mu);
        if (!lg->fenced && lg->wr_seq > lg->last_seq)
            rc = flush_locked(lg, why);
        if (rc == 0 && lg->fenced)
            rc = TK_EFENCED;
        if (rc == 0 && (rc = roll(lg, why)) == TK_ENOSPC) {
            /* roll removed what it began: nothing written */
            pthread_mutex_unlock(&lg->mu);
            elog_discard(lg);
            return TK_ENOSPC;
        }
        if (rc != 0)
            goto fail; /* said why */
    }
    /* The look-ahead is best effort: the write below extends the file
     * itself when the zeros could not be laid down. */
    if (lg->wr_size + lg->blen > lg->alloc_end)
        (void)prealloc(lg, lg->wr_size + lg->blen);
    rc = fio_pwrite_all(lg->fd, lg->buf, lg->blen, (off_t)lg->wr_size);
    if (rc != 0) {
        int err = errno;
        tk_say(why, TK_EIO, "event log: cannot write the last segment in %s: %s", lg->dir,
               strerror(err));
        /* Leave only what was written before in the file (durable, or
         * waiting for a flush that will tell). */
        bool cut = ftruncate(lg->fd, (off_t)lg->wr_size) == 0;
        lg->alloc_end = lg->wr_size;
        /* The cut is made durable before anything is answered: pages of
         * the refused write that reached the file must not come back after
         * a crash as records whose requests were told no. */
        bool cut_durable = cut && fio_fsync(lg->fd) == 0;
        if (cut_durable && no_room(err)) {
            /* Refused for room: the records before it are untouched and
             * the cut is exact (and it made them durable), so the log goes
             * on (the store refuses growth until there is room). */
            if (lg->wr_seq > lg->last_seq) {
                lg->seg_size = lg->wr_size;
                memcpy(lg->hash, lg->wr_hash, ELOG_HASH_LEN);
                __atomic_store_n(&lg->last_seq, lg->wr_seq, __ATOMIC_RELEASE);
            }
            pthread_mutex_unlock(&lg->mu);
            elog_discard(lg);
            errno = err;
            return TK_ENOSPC;
        }
        /* Anything else: the records written but not flushed go too. */
        if (ftruncate(lg->fd, (off_t)lg->seg_size) == 0)
            (void)fio_fsync(lg->fd);
        lg->alloc_end = lg->wr_size = lg->seg_size;
        lg->wr_seq = lg->last_seq;
        memcpy(lg->wr_hash, lg->hash, ELOG_HASH_LEN);
        errno = err;
        goto fail;
    }
    lg->wr_size += lg->blen;
    lg->wr_seq = lg->next_seq - 1;
    memcpy(lg->wr_hash, lg->bhash, ELOG_HASH_LEN);
    lg->need_roll = seg_full(lg);
    pthread_mutex_unlock(&lg->mu);
    lg->blen = 0;
    if (lg->bcap > BUF_KEEP) {
        free(lg->buf);
        lg->buf = NULL;
        lg->bcap = 0;
    }
    return 0;
fail:
    __atomic_store_n(&lg->fenced, true, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&lg->mu);
    elog_discard(lg);
    return rc == TK_EFENCED ? TK_EFENCED : TK_EIO;
}

int elog_sync(elog *lg, tk_why *why)
{
    if (elog_fenced(lg))
        return TK_EFENCED;
    if (lg->blen == 0)
        return 0;
    int rc = elog_write(lg, why);
    if (rc == 0 && (rc = elog_flush(lg, why)) != 0)
        elog_discard(lg); /* the records cut from the file are not pending either */
    return rc;
}

/* ---- the iterator ---------------------------------------------------- */

struct elog_iter {
    char *dir;
    walk w;
    uint64_t from_seq;
    uint8_t hash[ELOG_HASH_LEN]; /* chain hash of the last record returned */
    int rc;                      /* sticky result once not 1 (w.why says why) */
};

int elog_iter_open(const char *dir, uint64_t from_seq, elog_iter **out, tk_why *why)
{
    elog_iter *it = xcalloc(1, sizeof *it);
    int rc;

    it->dir = xstrdup(dir);
    it->from_seq = from_seq;
    it->rc = 1;
    if (sodium_init() < 0) {
        rc = tk_say(why, TK_EIO, "event log: libsodium failed to initialise");
        goto fail;
    }
    rc = walk_init(&it->w, it->dir, from_seq);
    if (rc == TK_ECORRUPT) { /* reported by the first elog_iter_next */
        it->rc = rc;
    } else if (rc != 0) {
        if (why)
            *why = it->w.why;
        goto fail;
    } else if (it->w.base_seq && from_seq <= it->w.base_seq) {
        rc = tk_say(why, TK_ENOTFOUND, "event log: %s starts after event %" PRIu64 " (its base: "
                    "the events up to it are held by a snapshot); event %" PRIu64 " is not in it",
                    dir, it->w.base_seq, from_seq);
        goto fail;
    }
    if (it->w.idx == 0) /* the chain hash before the first record: the base's */
        memcpy(it->hash, it->w.base_hash, ELOG_HASH_LEN);
    *out = it;
    return 0;
fail:
    elog_iter_free(it);
    *out = NULL;
    return rc;
}

int elog_iter_next(elog_iter *it, uint64_t *seq, const void **payload, size_t *len,
                   tk_why *why)
{
    rec r = { 0 };
    int rc;

    if (it->rc != 1) {
        if (it->rc < 0 && why)
            *why = it->w.why;
        return it->rc;
    }
    while ((rc = walk_next(&it->w, &r)) == 1 && r.seq < it->from_seq)
        ;
    if (rc != 1) {
        it->rc = rc;
        if (rc < 0 && why)
            *why = it->w.why;
        return rc;
    }
    memcpy(it->hash, r.hash, ELOG_HASH_LEN);
    *seq = r.seq;
    *payload = r.payload;
    *len = r.len;
    return 1;
}

const uint8_t *elog_iter_hash(const elog_iter *it)
{
    return it->hash;
}

void elog_iter_free(elog_iter *it)
{
    if (!it)
        return;
    walk_free(&it->w);
    free(it->dir);
    free(it);
}

/* ---- checking -------------------------------------------------------- */

int elog_check(const char *dir, elog_check_fn fn, void *arg, elog_report *out, tk_why *why)
{
    walk w;
    rec r = { 0 };
    int rc;

    memset(out, 0, sizeof *out);
    memset(&w, 0, sizeof w);
    if (sodium_init() < 0)
        return tk_say(why, TK_EIO, "event log: libsodium failed to initialise");
    rc = walk_init(&w, dir, 1);
    out->bad_base = w.bad_base;
    if (rc == TK_ECORRUPT)
        snprintf(out->bad_name, sizeof out->bad_name, "%s", w.bad_name);
    if (rc != 0)
        goto fail;
    out->base_seq = out->last_seq = w.base_seq;
    memcpy(out->base_hash, w.base_hash, ELOG_HASH_LEN);
    memcpy(out->head, w.base_hash, ELOG_HASH_LEN);
    out->segments = w.segs.n;
    while ((rc = walk_next(&w, &r)) == 1) {
        if (fn && (rc = fn(arg, r.seq, r.payload, r.len)) != 0)
            goto fail;
        out->records++;
        out->last_seq = r.seq;
        memcpy(out->head, r.hash, ELOG_HASH_LEN);
    }
    if (rc == TK_ECORRUPT) {
        out->bad_seg = w.segs.first[w.idx];
        out->bad_off = w.loaded ? w.off : 0; /* not loaded: its name broke the order */
    } else if (rc == 0 && w.torn && !w.torn_header && all_zero(w.buf + w.off, w.size - w.off)) {
        out->free_bytes = w.size - w.off; /* as elog_open sees it: kept, nothing to cut */
    } else if (rc == 0 && w.torn) {
        size_t keep = zeros_from(&w) < w.size ? zeros_from(&w) : w.size;
        out->torn_seg = w.segs.first[w.idx];
        out->torn_bytes = w.torn_header ? w.size : keep - w.off;
    }
fail:
    if (rc < 0 && why && w.why.msg[0])
        *why = w.why;
    walk_free(&w);
    return rc;
}

int elog_hash_at(const char *dir, uint64_t seq, uint8_t out[ELOG_HASH_LEN], tk_why *why)
{
    elog_iter *it;
    uint64_t got = 0, base;
    uint8_t bhash[ELOG_HASH_LEN];
    const void *p;
    size_t len;
    int rc = elog_base_read(dir, &base, bhash, why);
    if (rc == 0 && seq == base) {
        memcpy(out, bhash, ELOG_HASH_LEN);
        return 0;
    }
    if (rc != 0 && rc != TK_ENOTFOUND)
        return rc;
    if ((rc = elog_iter_open(dir, seq, &it, why)))
        return rc;
    int more = elog_iter_next(it, &got, &p, &len, why);
    if (more == 1 && got == seq)
        memcpy(out, elog_iter_hash(it), ELOG_HASH_LEN);
    rc = more < 0 ? more : more == 1 && got == seq ? 0 : TK_ENOTFOUND;
    elog_iter_free(it);
    return rc;
}

/* ---- the base -------------------------------------------------------- */

/* DIR/base: BASE_MAGIC, u64 seq (LE), the chain hash of record seq, then
 * crc32c of those 48 bytes (LE): 52 bytes, written once, never changed. */
#define BASE_NAME "base"
#define BASE_MAGIC "TKBASE01"
#define BASE_LEN (8u + 8u + ELOG_HASH_LEN + 4u)

int elog_base_read(const char *dir, uint64_t *seq, uint8_t hash[ELOG_HASH_LEN], tk_why *why)
{
    char *path = xasprintf("%s/" BASE_NAME, dir);
    uint8_t b[BASE_LEN + 1];
    ssize_t n = -1;
    int fd, rc;

    *seq = 0;
    memset(hash, 0, ELOG_HASH_LEN);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        rc = TK_ENOTFOUND;
        goto done;
    }
    if (fd >= 0)
        while ((n = read(fd, b, sizeof b)) < 0 && errno == EINTR)
            ;
    if (n < 0) {
        rc = tk_say(why, TK_EIO, "event log: cannot read %s: %s", path, strerror(errno));
        goto done;
    }
    if ((size_t)n != BASE_LEN || memcmp(b, BASE_MAGIC, 8) != 0 ||
        crc32c_extend(0, b, BASE_LEN - 4) != le_get32(b + BASE_LEN - 4)) {
        rc = tk_say(why, TK_ECORRUPT, "event log damaged: %s (the log's base: where it starts "
                    "after a snapshot) is not a valid base file (%zd bytes, bad magic, length or "
                    "crc); the log cannot be trusted without it. Keep the directory; restore the "
                    "file or bootstrap the data directory again from a snapshot", path, n);
        goto done;
    }
    *seq = le_get64(b + 8);
    memcpy(hash, b + 16, ELOG_HASH_LEN);
    rc = 0;
done:
    if (fd >= 0)
        close(fd);
    free(path);
    return rc;
}

int elog_base_write(const char *dir, uint64_t seq, const uint8_t hash[ELOG_HASH_LEN], tk_why *why)
{
    char *path = xasprintf("%s/" BASE_NAME, dir), *tmp = xasprintf("%s.tmp", path);
    uint8_t b[BASE_LEN];
    seglist segs = {0};
    struct stat st;
    int fd = -1, rc;

    if ((rc = make_dir(dir, why)) || (rc = list_segments(dir, &segs, NULL, 0, why)))
        goto done;
    if (segs.n > 0 || stat(path, &st) == 0) {
        rc = tk_say(why, TK_EEXIST, "event log: %s already holds %s: a base is written only "
                    "into an empty log", dir, segs.n ? "segments" : "a base");
        goto done;
    }
    memcpy(b, BASE_MAGIC, 8);
    le_put64(b + 8, seq);
    memcpy(b + 16, hash, ELOG_HASH_LEN);
    le_put32(b + BASE_LEN - 4, crc32c_extend(0, b, BASE_LEN - 4));
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || fio_write_all(fd, b, sizeof b) != 0 || fio_fsync(fd) != 0 ||
        rename(tmp, path) != 0 || fio_fsync_dir(dir) != 0) {
        rc = tk_say(why, TK_EIO, "event log: cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        goto done;
    }
    rc = 0;
done:
    if (fd >= 0)
        close(fd);
    free(segs.first);
    free(tmp);
    free(path);
    return rc;
}
