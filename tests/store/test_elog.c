/*
 * test_elog.c - the event log and its file I/O (store/elog.c, store/fio.c).
 *
 * Each test guards one rule of elog.h / fio.h: the on-disk format (checked
 * against an independent encoder here), group commit (one write, one fsync
 * per batch, counted with the fault countdowns), recovery of a torn tail at
 * every byte offset, refusal of damage at every byte offset without touching
 * the files, the hash chain against an edited record with a valid CRC, and
 * fencing after an injected write or fsync failure, including during a
 * segment roll.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <sodium.h>

#include "core/crc32c.h"
#include "core/err.h"
#include "store/elog.h"
#include "store/fio.h"
#include "tests/support/tkt.h"

#define MAXF 64
#define SEG_HDR 16
#define REC_OVERHEAD 52
#define HCRC_XOR 0xA282EAD8u

typedef struct fixture {
    char *tmp; /* temp dir, removed by teardown */
    char *dir; /* tmp/log, not created: elog_open must create it */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->tmp = tkt_mkdtemp();
    assert_non_null(f->tmp);
    f->dir = tkt_path(f->tmp, "log");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    fio_fault_arm(FIO_WRITE, 0);
    fio_fault_arm(FIO_FSYNC, 0);
    tkt_rmdir(f->tmp);
    free(f->dir);
    free(f->tmp);
    free(f);
    return 0;
}

/* ---- helpers --------------------------------------------------------- */

/* Deterministic payload of record seq: 5..44 bytes. */
static size_t payload_for(uint64_t seq, uint8_t *out)
{
    size_t n = 5 + (size_t)(seq * 13 % 40);
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(seq * 31 + i * 7 + 1);
    return n;
}

static elog *open_log(const char *dir, uint64_t segment_bytes)
{
    tk_why said = {.msg = ""};
    elog_opts o = { .segment_bytes = segment_bytes };
    elog *lg = NULL;
    int rc = elog_open(dir, &o, &lg, &said);
    if (rc != 0)
        print_error("elog_open: %s\n", said.msg);
    assert_int_equal(rc, 0);
    assert_non_null(lg);
    return lg;
}

static int try_open(const char *dir, uint64_t segment_bytes, tk_why *said)
{
    elog_opts o = { .segment_bytes = segment_bytes };
    elog *lg = (elog *)&o; /* must be reset to NULL on failure */
    int rc = elog_open(dir, &o, &lg, said);
    if (rc == 0)
        elog_close(lg);
    else
        assert_null(lg);
    return rc;
}

static int try_open_full(const char *dir, uint64_t segment_bytes, tk_why *said)
{
    elog_opts o = {.segment_bytes = segment_bytes, .check = ELOG_CHECK_FULL};
    elog *lg = NULL;
    int rc = elog_open(dir, &o, &lg, said);
    if (rc == 0)
        elog_close(lg);
    return rc;
}

/* The scrub's report, as elog_open's caller gets it. */
typedef struct scrubbed {
    pthread_mutex_t mu;
    int calls, rc;
    uint64_t checked_to;
    tk_why why;
} scrubbed;

static void on_scrub(void *arg, int rc, uint64_t checked_to, double seconds, const tk_why *why)
{
    scrubbed *s = arg;
    (void)seconds;
    pthread_mutex_lock(&s->mu);
    s->calls++;
    s->rc = rc;
    s->checked_to = checked_to;
    s->why = *why;
    pthread_mutex_unlock(&s->mu);
}

/* Opens dir with the fast check (which must pass) and waits for the
 * scrub's outcome: its rc (why says why), or 1 when no scrub ran. */
static int scrub_of(const char *dir, uint64_t segment_bytes, tk_why *said, uint64_t *checked_to)
{
    scrubbed s = {.mu = PTHREAD_MUTEX_INITIALIZER};
    elog_opts o = {.segment_bytes = segment_bytes, .on_scrub = on_scrub, .scrub_arg = &s};
    elog *lg = NULL;
    int rc = elog_open(dir, &o, &lg, said), calls = 0;
    if (rc != 0)
        print_error("elog_open: %s\n", said->msg);
    assert_int_equal(rc, 0);
    for (int i = 0; i < 2000 && calls == 0; i++) { /* up to 10 s */
        pthread_mutex_lock(&s.mu);
        calls = s.calls;
        pthread_mutex_unlock(&s.mu);
        if (!calls)
            usleep(5000);
    }
    elog_close(lg);
    if (s.calls == 0)
        return 1;
    assert_int_equal(s.calls, 1);
    *said = s.why;
    if (checked_to)
        *checked_to = s.checked_to;
    return s.rc;
}

static void append_one(elog *lg)
{
    uint8_t p[64];
    uint64_t want = elog_next_seq(lg), seq = 0;
    size_t n = payload_for(want, p);
    assert_int_equal(elog_append(lg, p, n, &seq), 0);
    assert_int_equal(seq, want);
    assert_int_equal(elog_next_seq(lg), want + 1);
}

/* Appends n records, syncing after every sync_every of them and at the end. */
static void fill(elog *lg, uint64_t n, uint64_t sync_every)
{
    tk_why said = {.msg = ""};
    for (uint64_t i = 1; i <= n; i++) {
        append_one(lg);
        if (i % sync_every == 0 || i == n)
            assert_int_equal(elog_sync(lg, &said), 0);
    }
    assert_int_equal(elog_last_seq(lg), elog_next_seq(lg) - 1);
}

static void le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Chain hash per elog.h: SHA-256(seq || prev || payload). */
static void chain(uint8_t out[32], uint64_t seq, const uint8_t prev[32], const void *p, size_t n)
{
    crypto_hash_sha256_state st;
    uint8_t s[8];
    le64(s, seq);
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, s, 8);
    crypto_hash_sha256_update(&st, prev, 32);
    crypto_hash_sha256_update(&st, p, n);
    crypto_hash_sha256_final(&st, out);
}

/* Iterates dir from from_seq; every record must be payload_for(seq) and the
 * chain hash must match an independent computation. Expects exactly the
 * records max(from_seq,1)..last, then a clean end. */
static void check_log(const char *dir, uint64_t from_seq, uint64_t last)
{
    tk_why said = {.msg = ""};
    elog_iter *it = NULL;
    uint8_t h[32] = { 0 }, want[64];
    uint64_t seq, expect = from_seq ? from_seq : 1, s;
    const void *p;
    size_t n;
    int rc;

    assert_int_equal(elog_iter_open(dir, from_seq, &it, &said), 0);
    assert_true(sodium_is_zero(elog_iter_hash(it), 32));
    /* recompute the chain up to the first record returned */
    for (s = 1; s < expect && s <= last; s++) {
        size_t wn = payload_for(s, want);
        chain(h, s, h, want, wn);
    }
    while ((rc = elog_iter_next(it, &seq, &p, &n, &said)) == 1) {
        size_t wn = payload_for(expect, want);
        assert_int_equal(seq, expect);
        assert_int_equal(n, wn);
        assert_memory_equal(p, want, wn);
        chain(h, seq, h, want, wn);
        assert_memory_equal(elog_iter_hash(it), h, 32);
        expect++;
    }
    if (rc != 0)
        print_error("iterator: %s\n", said.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(expect, (from_seq > last + 1 ? from_seq : last + 1));
    assert_int_equal(elog_iter_next(it, &seq, &p, &n, &said), 0); /* stays at the end */
    elog_iter_free(it);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the regular files in dir (not . or ..); returns count. */
static size_t list_files(const char *dir, char **names, size_t max)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        assert_true(n < max);
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, name_cmp);
    return n;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
}

/* Number of files in dir whose name starts with prefix and ends with
 * suffix; the last one's name goes to *found (malloc'd) if not NULL. */
static size_t count_files(const char *dir, const char *prefix, const char *suffix, char **found)
{
    char *names[MAXF] = { 0 };
    size_t n = list_files(dir, names, MAXF), hits = 0;
    if (found)
        *found = NULL;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(names[i]), sl = strlen(suffix);
        if (strncmp(names[i], prefix, strlen(prefix)) == 0 && l >= sl &&
            strcmp(names[i] + l - sl, suffix) == 0) {
            hits++;
            if (found) {
                free(*found);
                *found = strdup(names[i]);
            }
        }
    }
    free_names(names, n);
    return hits;
}

static off_t file_size(const char *dir, const char *name)
{
    char *p = tkt_path(dir, name);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    free(p);
    return st.st_size;
}

/* A copy of every file of a directory. */
typedef struct snap {
    size_t n;
    char *name[MAXF];
    unsigned char *data[MAXF];
    size_t len[MAXF];
} snap;

static void snap_take(const char *dir, snap *s)
{
    s->n = list_files(dir, s->name, MAXF);
    for (size_t i = 0; i < s->n; i++) {
        char *p = tkt_path(dir, s->name[i]);
        s->data[i] = tkt_read_file(p, &s->len[i]);
        assert_non_null(s->data[i]);
        free(p);
    }
}

static void snap_free(snap *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->name[i]);
        free(s->data[i]);
    }
    s->n = 0;
}

/* Makes dir hold exactly the files of s. */
static void snap_restore(const char *dir, const snap *s)
{
    tkt_rmdir(dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    for (size_t i = 0; i < s->n; i++) {
        char *p = tkt_path(dir, s->name[i]);
        assert_int_equal(tkt_write_file(p, s->data[i], s->len[i]), 0);
        free(p);
    }
}

/* True when dir holds exactly the files of s, byte for byte. */
static bool snap_same(const char *dir, const snap *s)
{
    snap now;
    bool same;
    snap_take(dir, &now);
    same = now.n == s->n;
    for (size_t i = 0; same && i < s->n; i++)
        same = !strcmp(now.name[i], s->name[i]) && now.len[i] == s->len[i] &&
               !memcmp(now.data[i], s->data[i], s->len[i]);
    snap_free(&now);
    return same;
}

/* Record start offsets of a segment image, parsed independently of
 * elog.c; offs[count] is the end of the last whole record. */
static size_t rec_offsets(const uint8_t *b, size_t len, size_t *offs, size_t max)
{
    size_t off = SEG_HDR, n = 0;
    while (off + 8 <= len) {
        uint32_t l = (uint32_t)b[off] | (uint32_t)b[off + 1] << 8 |
                     (uint32_t)b[off + 2] << 16 | (uint32_t)b[off + 3] << 24;
        if (off + REC_OVERHEAD + l > len)
            break;
        assert_true(n + 1 < max);
        offs[n++] = off;
        off += REC_OVERHEAD + l;
    }
    offs[n] = off;
    return n;
}

static uint64_t seg_first(const char *name)
{
    return strtoull(name, NULL, 10);
}

/* Appends and syncs records until the last segment file is past limit, so
 * the next sync must start a new segment. */
static void fill_to_roll(elog *lg, const char *dir, uint64_t limit)
{
    for (;;) {
        char *last = NULL;
        bool full;
        count_files(dir, "", ".seg", &last);
        full = (uint64_t)file_size(dir, last) > limit;
        free(last);
        if (full)
            return;
        fill(lg, 1, 1);
    }
}

/* ---- fio ------------------------------------------------------------- */

static void fault_fires_once_on_the_nth_call(void **state)
{
    fixture *f = *state;
    char *p = tkt_path(f->tmp, "probe");
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);

    fio_fault_arm(FIO_WRITE, 3);
    assert_int_equal(fio_write_all(fd, "a", 1), 0);
    assert_int_equal(fio_write_all(fd, "b", 1), 0);
    assert_int_equal(fio_write_all(fd, "c", 1), TK_EIO);
    assert_int_equal(errno, EIO);
    assert_int_equal(fio_write_all(fd, "d", 1), 0);
    assert_int_equal(fio_write_all(fd, "e", 1), 0);

    fio_fault_arm(FIO_FSYNC, 2);
    assert_int_equal(fio_fsync(fd), 0);
    assert_int_equal(fio_fsync_dir(f->tmp), TK_EIO); /* a dir fsync counts */
    assert_int_equal(fio_fsync(fd), 0);
    assert_int_equal(fio_fsync_dir(f->tmp), 0);

    fio_fault_arm(FIO_WRITE, 1);
    fio_fault_arm(FIO_WRITE, 0); /* disarmed */
    assert_int_equal(fio_write_all(fd, "f", 1), 0);
    close(fd);

    size_t n = 0;
    unsigned char *b = tkt_read_file(p, &n);
    assert_non_null(b);
    assert_int_equal(n, 5); /* the failed write wrote nothing */
    assert_memory_equal(b, "abdef", 5);
    free(b);
    free(p);
}

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

typedef struct reader {
    int fd;
    size_t got;
    bool in_order;
} reader;

static void *slow_reader(void *arg)
{
    reader *r = arg;
    uint8_t b[4096];
    ssize_t n;
    r->in_order = true;
    while ((n = read(r->fd, b, sizeof b)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            if (b[i] != (uint8_t)((r->got + (size_t)i) * 7))
                r->in_order = false;
        r->got += (size_t)n;
        usleep(20);
    }
    return NULL;
}

/* Signals without SA_RESTART interrupt write() on a full pipe: it returns
 * short or fails with EINTR. fio_write_all must still deliver every byte. */
static void write_all_survives_short_writes_and_eintr(void **state)
{
    (void)state;
    const size_t total = 8u << 20;
    uint8_t *data = malloc(total);
    struct sigaction sa = { .sa_handler = on_alarm }, old;
    struct itimerval tv = { { 0, 200 }, { 0, 200 } }, off = { { 0, 0 }, { 0, 0 } };
    reader r = { 0 };
    pthread_t th;
    sigset_t block;
    int p[2];

    assert_non_null(data);
    for (size_t i = 0; i < total; i++)
        data[i] = (uint8_t)(i * 7);
    assert_int_equal(pipe(p), 0);
    r.fd = p[0];
    /* only this thread takes the alarms */
    sigemptyset(&block);
    sigaddset(&block, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &block, NULL);
    assert_int_equal(pthread_create(&th, NULL, slow_reader, &r), 0);
    pthread_sigmask(SIG_UNBLOCK, &block, NULL);
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART */
    sigaction(SIGALRM, &sa, &old);
    alarms = 0;
    setitimer(ITIMER_REAL, &tv, NULL);

    int rc = fio_write_all(p[1], data, total);

    setitimer(ITIMER_REAL, &off, NULL);
    sigaction(SIGALRM, &old, NULL);
    close(p[1]);
    pthread_join(th, NULL);
    close(p[0]);
    assert_int_equal(rc, 0);
    assert_true(alarms > 0);
    assert_int_equal(r.got, total);
    assert_true(r.in_order);
    free(data);
}

/* ---- format and round trip ------------------------------------------- */

static void round_trip_and_format(void **state)
{
    fixture *f = *state;
    struct stat st;
    uint64_t seq = 0;
    elog *lg = open_log(f->dir, 0);

    assert_int_equal(stat(f->dir, &st), 0); /* created, private */
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(elog_last_seq(lg), 0);
    assert_int_equal(elog_next_seq(lg), 1);
    assert_false(elog_fenced(lg));

    fill(lg, 3, 100);
    assert_int_equal(elog_last_seq(lg), 3);
    /* appended but not synced: not durable, dropped by close */
    assert_int_equal(elog_append(lg, "zz", 2, &seq), 0);
    assert_int_equal(seq, 4);
    assert_int_equal(elog_last_seq(lg), 3);
    elog_close(lg);

    /* the bytes on disk, built here from the elog.h comment */
    uint8_t want[4096], pay[64], prev[32] = { 0 };
    size_t w = 0;
    memcpy(want, "TKLOG001", 8);
    le64(want + 8, 1);
    w = 16;
    for (uint64_t s = 1; s <= 3; s++) {
        size_t n = payload_for(s, pay), body = w + 8;
        le32(want + w, (uint32_t)n);
        le32(want + w + 4, crc32c_extend(0, want + w, 4) ^ HCRC_XOR);
        le64(want + body, s);
        memcpy(want + body + 8, prev, 32);
        memcpy(want + body + 40, pay, n);
        le32(want + body + 40 + n, crc32c_extend(0, want + body, 40 + n));
        chain(prev, s, prev, pay, n);
        w = body + 40 + n + 4;
    }
    char *p = tkt_path(f->dir, "00000000000000000001.seg");
    size_t got_len = 0;
    unsigned char *got = tkt_read_file(p, &got_len);
    assert_non_null(got);
    assert_int_equal(got_len, w);
    assert_memory_equal(got, want, w);
    free(got);
    free(p);

    lg = open_log(f->dir, 0);
    assert_int_equal(elog_last_seq(lg), 3);
    assert_int_equal(elog_next_seq(lg), 4);
    fill(lg, 2, 1);
    elog_close(lg);
    check_log(f->dir, 1, 5);
}

static void empty_and_max_payloads(void **state)
{
    tk_why said = {.msg = ""};
    fixture *f = *state;
    uint8_t *big = malloc(ELOG_MAX_PAYLOAD + 1);
    uint64_t seq = 0;
    elog *lg = open_log(f->dir, 0);

    assert_non_null(big);
    for (size_t i = 0; i <= ELOG_MAX_PAYLOAD; i++)
        big[i] = (uint8_t)(i * 131 + (i >> 9));
    assert_int_equal(elog_append(lg, NULL, 0, &seq), 0);
    assert_int_equal(seq, 1);
    assert_int_equal(elog_append(lg, big, ELOG_MAX_PAYLOAD, &seq), 0);
    assert_int_equal(seq, 2);
    assert_int_equal(elog_append(lg, big, ELOG_MAX_PAYLOAD + 1, &seq), TK_ELIMIT);
    assert_int_equal(seq, 2);                 /* untouched */
    assert_int_equal(elog_next_seq(lg), 3);   /* nothing buffered */
    assert_int_equal(elog_append(lg, "x", 1, NULL), 0);
    assert_int_equal(elog_sync(lg, &said), 0);
    assert_int_equal(elog_last_seq(lg), 3);
    elog_close(lg);

    lg = open_log(f->dir, 0);
    assert_int_equal(elog_last_seq(lg), 3);
    elog_close(lg);

    elog_iter *it;
    const void *p;
    size_t n;
    assert_int_equal(elog_iter_open(f->dir, 1, &it, &said), 0);
    assert_int_equal(elog_iter_next(it, &seq, &p, &n, &said), 1);
    assert_int_equal(seq, 1);
    assert_int_equal(n, 0);
    assert_int_equal(elog_iter_next(it, &seq, &p, &n, &said), 1);
    assert_int_equal(seq, 2);
    assert_int_equal(n, ELOG_MAX_PAYLOAD);
    assert_memory_equal(p, big, ELOG_MAX_PAYLOAD);
    assert_int_equal(elog_iter_next(it, &seq, &p, &n, &said), 1);
    assert_int_equal(seq, 3);
    assert_int_equal(n, 1);
    assert_memory_equal(p, "x", 1);
    assert_int_equal(elog_iter_next(it, &seq, &p, &n, &said), 0);
    elog_iter_free(it);
    free(big);
}

static void iterator_from_any_seq_across_segments(void **state)
{
    tk_why said = {.msg = ""};
    fixture *f = *state;
    const uint64_t n = 300;
    elog *lg = open_log(f->dir, 4096);

    fill(lg, n, 3);
    elog_close(lg);
    assert_true(count_files(f->dir, "", ".seg", NULL) >= 5);

    /* every start: seq 0 and 1 mean the beginning, each segment boundary,
     * every record in between, and past the end */
    for (uint64_t from = 0; from <= n + 2; from++)
        check_log(f->dir, from, n);

    /* segments really start where their names say, and the iterator
     * started exactly there */
    char *names[MAXF] = { 0 };
    size_t k = list_files(f->dir, names, MAXF);
    for (size_t i = 1; i < k; i++) {
        uint64_t first = seg_first(names[i]), seq;
        elog_iter *it;
        const void *p;
        size_t len;
        assert_true(first > 1 && first <= n);
        assert_int_equal(elog_iter_open(f->dir, first, &it, &said), 0);
        assert_int_equal(elog_iter_next(it, &seq, &p, &len, &said), 1);
        assert_int_equal(seq, first);
        elog_iter_free(it);
    }
    free_names(names, k);

    lg = open_log(f->dir, 4096);
    assert_int_equal(elog_last_seq(lg), n);
    elog_close(lg);
}

/* segment_bytes smaller than a segment header: every sync rolls, and an
 * empty segment (fresh, or left by a failed batch) is written into, not
 * replaced by a second file of the same name. */
static void tiny_segments_roll_every_sync(void **state)
{
    tk_why said = {.msg = ""};
    fixture *f = *state;
    elog *lg = open_log(f->dir, 1);
    fill(lg, 3, 1);
    elog_close(lg);
    assert_int_equal(count_files(f->dir, "", ".seg", NULL), 3);

    lg = open_log(f->dir, 1);
    append_one(lg);
    fio_fault_arm(FIO_WRITE, 2); /* the roll succeeds, the batch fails */
    assert_int_equal(elog_sync(lg, &said), TK_EIO);
    elog_close(lg);
    assert_int_equal(count_files(f->dir, "", ".seg", NULL), 4);

    lg = open_log(f->dir, 1);
    assert_int_equal(elog_last_seq(lg), 3);
    fill(lg, 2, 1);
    elog_close(lg);
    assert_int_equal(count_files(f->dir, "", ".seg", NULL), 5);
    check_log(f->dir, 1, 5);
    check_log(f->dir, 4, 5);
}

static void iterator_on_missing_dir_is_an_error(void **state)
{
    tk_why said = {.msg = ""};
    fixture *f = *state;
    elog_iter *it = (elog_iter *)f;
    assert_int_equal(elog_iter_open(f->dir, 1, &it, &said), TK_EIO);
    assert_null(it);
    assert_non_null(strstr(said.msg, f->dir));
}

/* ---- group commit ---------------------------------------------------- */

/* With the Nth call armed, after a sync the countdown shows how many writes
 * and fsyncs that sync made: exactly one each, or the probe would not fail
 * (zero calls) or the sync would have failed (two or more). */
static void assert_one_write_one_fsync(elog *lg, int probe, uint64_t records)
{
    tk_why said = {.msg = ""};
    fio_fault_arm(FIO_WRITE, 2);
    fio_fault_arm(FIO_FSYNC, 2);
    for (uint64_t i = 0; i < records; i++)
        append_one(lg);
    assert_int_equal(elog_sync(lg, &said), 0);
    assert_int_equal(fio_write_all(probe, "p", 1), TK_EIO);
    assert_int_equal(fio_fsync(probe), TK_EIO);
    assert_int_equal(fio_write_all(probe, "p", 1), 0);
    assert_int_equal(fio_fsync(probe), 0);
}

static void group_commit_is_one_write_one_fsync(void **state)
{
    tk_why said = {.msg = ""};
    fixture *f = *state;
    char *pp = tkt_path(f->tmp, "probe");
    int probe = open(pp, O_RDWR | O_CREAT | O_TRUNC, 0600);
    elog *lg = open_log(f->dir, 0);

    assert_true(probe >= 0);
    assert_one_write_one_fsync(lg, probe, 100);
    assert_int_equal(elog_last_seq(lg), 100);
    assert_one_write_one_fsync(lg, probe, 1000);
    assert_int_equal(elog_last_seq(lg), 1100);

    /* a sync with nothing buffered does no I/O */
    fio_fault_arm(FIO_WRITE, 1);
    fio_fault_arm(FIO_FSYNC, 1);
    assert_int_equal(elog_sync(lg, &said), 0);
    fio_fault_arm(FIO_WRITE, 0);
    fio_fault_arm(FIO_FSYNC, 0);
    elog_close(lg);
    close(probe);
    free(pp);
    check_log(f->dir, 1, 1100);
}

/* ---- torn tails ------------------------------------------------------ */

static void torn_tail_cut_at_every_offset(void **state)
{
    fixture *f = *state;
    const uint64_t seg_bytes = 1024;
    elog *lg = open_log(f->dir, seg_bytes);
    snap base;
    size_t offs[256], nrec, last;
    uint64_t first;

    fill(lg, 40, 1);
    elog_close(lg);
    snap_take(f->dir, &base);
    assert_true(base.n >= 3); /* several segments */
    last = base.n - 1;
    first = seg_first(base.name[last]);
    nrec = rec_offsets(base.data[last], base.len[last], offs, 256);
    assert_true(nrec >= 4);
    assert_int_equal(offs[nrec], base.len[last]);

    for (size_t len = offs[nrec - 3]; len < offs[nrec]; len++) {
        size_t whole = 0; /* records of the last segment that survive */
        while (whole < nrec && offs[whole + 1] <= len)
            whole++;
        uint64_t want_last = first - 1 + whole;
        size_t cut = len - offs[whole];
        char *seg = tkt_path(f->dir, base.name[last]);

        snap_restore(f->dir, &base);
        assert_int_equal(tkt_truncate(seg, len), 0);

        /* the iterator is read-only: stops before the tail, cuts nothing */
        check_log(f->dir, 1, want_last);
        assert_int_equal(file_size(f->dir, base.name[last]), len);

        lg = open_log(f->dir, seg_bytes);
        assert_int_equal(elog_last_seq(lg), want_last);
        assert_int_equal(elog_next_seq(lg), want_last + 1);
        assert_int_equal(file_size(f->dir, base.name[last]), offs[whole]);
        char *torn = NULL;
        size_t ntorn = count_files(f->dir, "torn-", ".bin", &torn);
        if (cut == 0) {
            assert_int_equal(ntorn, 0);
        } else {
            char prefix[64];
            size_t tl = 0;
            assert_int_equal(ntorn, 1);
            snprintf(prefix, sizeof prefix, "torn-%" PRIu64 "-", want_last + 1);
            assert_true(strncmp(torn, prefix, strlen(prefix)) == 0);
            char *tp = tkt_path(f->dir, torn);
            unsigned char *tb = tkt_read_file(tp, &tl);
            assert_non_null(tb);
            assert_int_equal(tl, cut);
            assert_memory_equal(tb, base.data[last] + offs[whole], cut);
            free(tb);
            free(tp);
        }
        free(torn);
        check_log(f->dir, 1, want_last);

        /* the log goes on, and the chain holds after reopen */
        fill(lg, 1, 1);
        elog_close(lg);
        lg = open_log(f->dir, seg_bytes);
        assert_int_equal(elog_last_seq(lg), want_last + 1);
        elog_close(lg);
        check_log(f->dir, 1, want_last + 1);
        free(seg);
    }
    snap_free(&base);
}

/* Zeros after the last record are the log's own preallocated space (a
 * crash leaves them there): kept, not saved as a torn tail, and written
 * over by the next records; a close trims what is left. */
static void trailing_zeros_are_free_space(void **state)
{
    fixture *f = *state;
    static const uint8_t zeros[4096];
    elog *lg = open_log(f->dir, 1 << 20);
    char *names[MAXF] = { 0 };
    size_t n;

    fill(lg, 30, 1);
    elog_close(lg);
    n = list_files(f->dir, names, MAXF);
    char *seg = tkt_path(f->dir, names[n - 1]);
    off_t size = file_size(f->dir, names[n - 1]);
    int fd = open(seg, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, zeros, sizeof zeros), (ssize_t)sizeof zeros);
    close(fd);

    check_log(f->dir, 1, 30);
    /* elog_check agrees: free space, not a torn tail (kill -9 leaves it) */
    elog_report rep;
    tk_why said = {.msg = ""};
    assert_int_equal(elog_check(f->dir, NULL, NULL, &rep, &said), 0);
    assert_int_equal(rep.records, 30);
    assert_int_equal(rep.torn_bytes, 0);
    assert_int_equal(rep.free_bytes, sizeof zeros);
    lg = open_log(f->dir, 1 << 20);
    assert_int_equal(elog_last_seq(lg), 30);
    assert_int_equal(file_size(f->dir, names[n - 1]), size + (off_t)sizeof zeros);
    assert_int_equal(count_files(f->dir, "torn-", ".bin", NULL), 0);
    fill(lg, 1, 1);
    elog_close(lg);
    check_log(f->dir, 1, 31);
    off_t after = file_size(f->dir, names[n - 1]);
    assert_true(after > size && after < size + (off_t)sizeof zeros); /* trimmed */
    free(seg);
    free_names(names, n);
}

/* A write cut short inside preallocated space (SIGKILL between pages, a
 * crash between sectors) leaves a record's start followed by zeros from a
 * 512-byte boundary on: for every such boundary inside any record of the
 * last segment, the open recovers to the record before it and saves the
 * cut bytes. The same image with one nonzero byte after the boundary, or
 * the cut in a segment that is not the last, stays damage. */
static void write_cut_short_into_zeros(void **state)
{
    tk_why said = {.msg = ""};
    fixture *f = *state;
    elog *lg = open_log(f->dir, 1 << 20);
    snap base;
    size_t offs[512], nrec, cuts = 0;

    fill(lg, 200, 3);
    elog_close(lg);
    snap_take(f->dir, &base);
    assert_int_equal(base.n, 1);
    nrec = rec_offsets(base.data[0], base.len[0], offs, 512);
    assert_int_equal(offs[nrec], base.len[0]);
    const size_t pad = 8192; /* preallocated zeros after the cut */
    unsigned char *img = malloc(base.len[0] + pad);
    char *seg = tkt_path(f->dir, base.name[0]);

    for (size_t r = 0; r < nrec; r++) {
        for (size_t b = (offs[r] / 512 + 1) * 512; b < offs[r + 1]; b += 512) {
            memcpy(img, base.data[0], b);
            memset(img + b, 0, base.len[0] + pad - b);

            /* one nonzero byte after the boundary: damage, nothing changes */
            snap_restore(f->dir, &base);
            img[base.len[0] + pad - 1] = 1;
            assert_int_equal(tkt_write_file(seg, img, base.len[0] + pad), 0);
            assert_int_equal(try_open(f->dir, 1 << 20, &said), TK_ECORRUPT);
            assert_int_equal(file_size(f->dir, base.name[0]), (off_t)(base.len[0] + pad));
            assert_int_equal(count_files(f->dir, "torn-", ".bin", NULL), 0);
            img[base.len[0] + pad - 1] = 0;

            /* zeros to the end: a torn tail, cut at record r */
            assert_int_equal(tkt_write_file(seg, img, base.len[0] + pad), 0);
            check_log(f->dir, 1, r); /* records 1..r are whole */
            elog_report rep;
            assert_int_equal(elog_check(f->dir, NULL, NULL, &rep, &said), 0);
            assert_int_equal(rep.records, r);
            assert_true(rep.torn_bytes > 0 && rep.torn_bytes <= b - offs[r]); /* no zeros */
            assert_int_equal(rep.free_bytes, 0);
            lg = open_log(f->dir, 1 << 20);
            assert_int_equal(elog_last_seq(lg), r);
            assert_int_equal(file_size(f->dir, base.name[0]), (off_t)offs[r]);
            char *torn = NULL;
            assert_int_equal(count_files(f->dir, "torn-", ".bin", &torn), 1);
            char *tp = tkt_path(f->dir, torn);
            size_t tl = 0;
            unsigned char *tb = tkt_read_file(tp, &tl);
            assert_true(tl > 0 && tl <= b - offs[r]); /* the record's start, no zeros past b */
            assert_memory_equal(tb, base.data[0] + offs[r], tl);
            free(tb);
            free(tp);
            free(torn);
            fill(lg, 1, 1); /* and the log goes on */
            elog_close(lg);
            check_log(f->dir, 1, r + 1);
            cuts++;
        }
    }
    assert_true(cuts >= 10);

    /* the same cut in a segment that is not the last: damage */
    snap_restore(f->dir, &base);
    lg = open_log(f->dir, 1024); /* past its limit: the next sync rolls */
    fill(lg, 1, 1);
    elog_close(lg);
    assert_int_equal(count_files(f->dir, "", ".seg", NULL), 2);
    size_t r = nrec / 2, b;
    while ((b = (offs[r] / 512 + 1) * 512) >= offs[r + 1])
        r++;
    memcpy(img, base.data[0], b);
    memset(img + b, 0, base.len[0] - b);
    assert_int_equal(tkt_write_file(seg, img, base.len[0]), 0);
    assert_int_equal(try_open(f->dir, 1 << 20, &said), TK_ECORRUPT);
    assert_int_equal(count_files(f->dir, "torn-", ".bin", NULL), 0);
    free(img);
    free(seg);
    snap_free(&base);
}

/* While the log is open its last segment runs ahead of the records with
 * zeros, so a sync rewrites space inside the file: its size does not
 * change from one sync to the next. */
static void syncs_write_inside_preallocated_space(void **state)
{
    fixture *f = *state;
    elog *lg = open_log(f->dir, 0);
    const char *seg = "00000000000000000001.seg";
    fill(lg, 1, 1);
    off_t size = file_size(f->dir, seg);
    assert_true(size >= (off_t)(1u << 20));
    for (int i = 0; i < 50; i++) {
        fill(lg, 1, 1);
        assert_int_equal(file_size(f->dir, seg), size);
    }
    elog_close(lg);
    check_log(f->dir, 1, 51);
    assert_true(file_size(f->dir, seg) < size);
}

/* A roll creates the segment, then writes and fsyncs its header: a crash in
 * between leaves a last segment shorter than 16 bytes. Chosen behaviour: a
 * prefix of the expected header (0 bytes included) or zeros is a torn
 * header; its bytes are kept aside and the header is rewritten in place.
 * Other short contents are damage. */
static void short_last_segment_is_a_torn_header(void **state)
{
    tk_why said = {.msg = ""};
    fixture *f = *state;
    elog *lg = open_log(f->dir, 1024);
    snap base;
    uint8_t hdr[16];
    char name[32];

    fill(lg, 30, 1);
    elog_close(lg);
    snap_take(f->dir, &base);
    snprintf(name, sizeof name, "%020d.seg", 31);
    memcpy(hdr, "TKLOG001", 8);
    le64(hdr + 8, 31);
    char *seg = tkt_path(f->dir, name);

    for (size_t len = 0; len < 16; len++) {
        int variants = len > 0 ? 2 : 1; /* header prefix, zeros */
        for (int zeros = 0; zeros < variants; zeros++) {
            static const uint8_t z[16];
            const uint8_t *content = zeros ? z : hdr;
            char *torn = NULL;
            size_t ntorn;

            snap_restore(f->dir, &base);
            assert_int_equal(tkt_write_file(seg, content, len), 0);
            check_log(f->dir, 1, 30);
            lg = open_log(f->dir, 1024);
            assert_int_equal(elog_last_seq(lg), 30);
            assert_int_equal(file_size(f->dir, name), 16);
            ntorn = count_files(f->dir, "torn-31-", ".bin", &torn);
            assert_int_equal(ntorn, len > 0);
            if (torn) {
                size_t tl = 0;
                char *tp = tkt_path(f->dir, torn);
                unsigned char *tb = tkt_read_file(tp, &tl);
                assert_int_equal(tl, len);
                assert_memory_equal(tb, content, len);
                free(tb);
                free(tp);
                free(torn);
            }
            fill(lg, 1, 1); /* goes into the repaired segment */
            elog_close(lg);
            assert_true(file_size(f->dir, name) > 16);
            check_log(f->dir, 1, 31);
        }
    }

    /* wrong bytes in a short last segment: damage, nothing changed */
    snap_restore(f->dir, &base);
    assert_int_equal(tkt_write_file(seg, "TKLOGXX", 7), 0);
    snap bad;
    snap_take(f->dir, &bad);
    assert_int_equal(try_open(f->dir, 1024, &said), TK_ECORRUPT);
    assert_non_null(strstr(said.msg, name));
    assert_non_null(strstr(said.msg, "bad segment header"));
    assert_true(snap_same(f->dir, &bad));
    snap_free(&bad);

    /* an empty segment whose name skips a seq is a gap, not a torn header */
    snap_restore(f->dir, &base);
    free(seg);
    snprintf(name, sizeof name, "%020d.seg", 32);
    seg = tkt_path(f->dir, name);
    assert_int_equal(tkt_write_file(seg, "", 0), 0);
    assert_int_equal(try_open(f->dir, 1024, &said), TK_ECORRUPT);
    assert_non_null(strstr(said.msg, "seq gap"));
    assert_int_equal(file_size(f->dir, name), 0);

    /* the only segment, empty: a fresh log */
    tkt_rmdir(f->dir);
    assert_int_equal(mkdir(f->dir, 0700), 0);
    free(seg);
    seg = tkt_path(f->dir, "00000000000000000001.seg");
    assert_int_equal(tkt_write_file(seg, "", 0), 0);
    lg = open_log(f->dir, 1024);
    assert_int_equal(elog_last_seq(lg), 0);
    fill(lg, 2, 1);
    elog_close(lg);
    check_log(f->dir, 1, 2);
    free(seg);
    snap_free(&base);
}

static int iterate_all(const char *dir, uint64_t from)
{
    tk_why said = {.msg = ""};
    elog_iter *it;
    uint64_t seq;
    const void *p;
    size_t n;
    int rc;
    assert_int_equal(elog_iter_open(dir, from, &it, &said), 0);
    while ((rc = elog_iter_next(it, &seq, &p, &n, &said)) == 1)
        ;
    elog_iter_free(it);
    return rc;
}

/* ---- damage ---------------------------------------------------------- */

/* One bit flipped in every byte of every segment (headers, every record,
 * the last ones included): refused with the file, offset and cause named,
 * by elog_open and by the iterator, and no file is changed. */
static void damage_at_every_byte_is_refused(void **state)
{
    tk_why said = {.msg = ""};
    fixture *f = *state;
    elog *lg = open_log(f->dir, 256);
    snap base;
    size_t opens = 0;

    /* small records: ~60 bytes, a few per segment */
    for (uint64_t s = 1; s <= 20; s++) {
        uint8_t p[8];
        memset(p, (int)s, sizeof p);
        assert_int_equal(elog_append(lg, p, 1 + s % 8, NULL), 0);
        assert_int_equal(elog_sync(lg, &said), 0);
    }
    elog_close(lg);
    snap_take(f->dir, &base);
    assert_true(base.n >= 4);

    for (size_t fi = 0; fi < base.n; fi++) {
        size_t offs[64], nrec = rec_offsets(base.data[fi], base.len[fi], offs, 64);
        unsigned char *copy = malloc(base.len[fi]);
        char *seg = tkt_path(f->dir, base.name[fi]);
        assert_int_equal(offs[nrec], base.len[fi]);
        for (size_t b = 0; b < base.len[fi]; b++) {
            size_t at = 0;
            const char *why = "bad segment header";
            char where[128];
            elog_iter *it;
            uint64_t seq;
            const void *p;
            size_t n;
            int rc;

            if (b >= SEG_HDR) {
                size_t r = 0;
                while (offs[r + 1] <= b)
                    r++;
                at = offs[r];
                why = b - at < 8 ? "bad length header" : "crc mismatch";
            }
            snprintf(where, sizeof where, "%s offset %zu (", base.name[fi], at);
            memcpy(copy, base.data[fi], base.len[fi]);
            copy[b] ^= (unsigned char)(1u << (b % 8));
            assert_int_equal(tkt_write_file(seg, copy, base.len[fi]), 0);

            assert_int_equal(try_open(f->dir, 256, &said), TK_ECORRUPT);
            opens++;
            if (!strstr(said.msg, where) || !strstr(said.msg, why))
                print_error("byte %zu of %s: %s\n", b, base.name[fi], said.msg);
            assert_non_null(strstr(said.msg, where));
            assert_non_null(strstr(said.msg, why));
            assert_non_null(strstr(said.msg, "tokenreplay repair --data"));

            /* nothing cut, nothing added */
            base.data[fi][b] ^= (unsigned char)(1u << (b % 8));
            assert_true(snap_same(f->dir, &base));
            base.data[fi][b] ^= (unsigned char)(1u << (b % 8));

            assert_int_equal(elog_iter_open(f->dir, 1, &it, &said), 0);
            while ((rc = elog_iter_next(it, &seq, &p, &n, &said)) == 1)
                ;
            assert_int_equal(rc, TK_ECORRUPT);
            assert_non_null(strstr(said.msg, where));
            elog_iter_free(it);
        }
        assert_int_equal(tkt_write_file(seg, base.data[fi], base.len[fi]), 0);
        free(copy);
        free(seg);
    }
    assert_true(opens > 500);
    assert_int_equal(iterate_all(f->dir, 1), 0); /* restored: whole again */
    assert_int_equal(try_open(f->dir, 256, &said), 0);
    snap_free(&base);
}

/* elog_open_begin checks only the last segment and leaves the others to a
 * thread; elog_open_end gives its verdict. Damage in a sealed segment
 * fails elog_open_end (not begin), names the place, and changes nothing:
 * a torn tail of the last segment is not cut, no torn-*.bin appears. A
 * clean log opens the same in halves as whole, and a log closed between
 * the halves (a caller's own start-up failed) joins the thread and leaks
 * nothing. */
static void open_in_halves(void **state)
{
    tk_why said = {.msg = ""};
    fixture *f = *state;
    elog *lg = open_log(f->dir, 512);
    snap base;

    fill(lg, 60, 1);
    elog_close(lg);
    snap_take(f->dir, &base);
    assert_true(base.n >= 4);

    /* clean: the same as elog_open, and the log goes on */
    elog_opts o = {.segment_bytes = 512};
    assert_int_equal(elog_open_begin(f->dir, &o, &lg, &said), 0);
    assert_int_equal(elog_last_seq(lg), 60); /* known before the end */
    assert_int_equal(elog_open_end(lg, &said), 0);
    assert_int_equal(elog_next_seq(lg), 61);
    fill(lg, 1, 1);
    elog_close(lg);
    check_log(f->dir, 1, 61);

    /* closed between the halves */
    snap_restore(f->dir, &base);
    assert_int_equal(elog_open_begin(f->dir, &o, &lg, &said), 0);
    elog_close(lg);
    assert_true(snap_same(f->dir, &base));

    /* damage in a sealed segment, and a torn tail: begin passes, end
     * refuses, nothing is cut */
    size_t last = base.n - 1;
    base.data[1][SEG_HDR + 20] ^= 0x10; /* inside segment 2's first record */
    base.len[last] -= 3;                /* the last record torn */
    snap_restore(f->dir, &base);
    assert_int_equal(elog_open_begin(f->dir, &o, &lg, &said), 0);
    assert_int_equal(elog_open_end(lg, &said), TK_ECORRUPT);
    char where[96];
    snprintf(where, sizeof where, "%s offset %d (", base.name[1], SEG_HDR);
    assert_non_null(strstr(said.msg, where));
    elog_close(lg);
    assert_true(snap_same(f->dir, &base));
    assert_int_equal(count_files(f->dir, "torn-", ".bin", NULL), 0);
    assert_int_equal(try_open(f->dir, 512, &said), TK_ECORRUPT); /* whole: the same verdict */
    assert_non_null(strstr(said.msg, where));
    assert_true(snap_same(f->dir, &base));

    /* damage in the last segment as well: the first damage is named */
    base.len[last] += 3;
    base.data[last][SEG_HDR + 20] ^= 0x10;
    snap_restore(f->dir, &base);
    assert_int_equal(elog_open_begin(f->dir, &o, &lg, &said), TK_ECORRUPT);
    assert_non_null(strstr(said.msg, where));
    assert_true(snap_same(f->dir, &base));
    base.data[1][SEG_HDR + 20] ^= 0x10; /* only the last segment's damage left */
    snap_restore(f->dir, &base);
    assert_int_equal(try_open(f->dir, 512, &said), TK_ECORRUPT);
    snprintf(where, sizeof where, "%s offset %d (", base.name[last], SEG_HDR);
    assert_non_null(strstr(said.msg, where));
    snap_free(&base);
}

/* Rewrites payload byte 0 of record idx of segment file fi with a CRC that
 * matches, as an editor of the log would. */
static void forge_record(const char *dir, const snap *s, size_t fi, size_t idx)
{
    size_t offs[256], nrec = rec_offsets(s->data[fi], s->len[fi], offs, 256);
    unsigned char *b = malloc(s->len[fi]);
    size_t at, len;
    assert_true(idx < nrec);
    memcpy(b, s->data[fi], s->len[fi]);
    at = offs[idx];
    len = offs[idx + 1] - at - REC_OVERHEAD;
    assert_true(len > 0);
    b[at + 48] ^= 0x5a;
    le32(b + at + 48 + len, crc32c_extend(0, b + at + 8, 40 + len));
    char *p = tkt_path(dir, s->name[fi]);
    assert_int_equal(tkt_write_file(p, b, s->len[fi]), 0);
    free(p);
    free(b);
}

static void hash_chain_catches_an_edited_record(void **state)
{
    tk_why said = {.msg = ""};
    fixture *f = *state;
    elog *lg = open_log(f->dir, 1024);
    snap base;
    size_t offs[256], nrec;
    char where[128];

    fill(lg, 60, 1);
    elog_close(lg);
    snap_take(f->dir, &base);
    assert_true(base.n >= 3);

    /* record 3 of segment 1 (seq 4) edited: its CRC is fine, the next
     * record's link is not */
    nrec = rec_offsets(base.data[1], base.len[1], offs, 256);
    assert_true(nrec >= 6);
    uint64_t first = seg_first(base.name[1]);
    forge_record(f->dir, &base, 1, 3);
    snap bad;
    snap_take(f->dir, &bad);
    assert_int_equal(try_open_full(f->dir, 1024, &said), TK_ECORRUPT);
    snprintf(where, sizeof where, "%s offset %zu (record seq %" PRIu64 "): broken hash chain",
             base.name[1], offs[4], first + 4);
    assert_non_null(strstr(said.msg, where));
    assert_true(snap_same(f->dir, &bad));
    /* the fast check opens it (every CRC holds); the scrub then names the
     * same spot */
    said.msg[0] = '\0';
    assert_int_equal(scrub_of(f->dir, 1024, &said, NULL), TK_ECORRUPT);
    assert_non_null(strstr(said.msg, where));
    assert_true(snap_same(f->dir, &bad));
    snap_free(&bad);
    /* the iterator verifies the chain from the start of the segment that
     * holds from_seq, even when from_seq is past the edit */
    assert_int_equal(iterate_all(f->dir, 1), TK_ECORRUPT);
    assert_int_equal(iterate_all(f->dir, first + 5), TK_ECORRUPT);
    assert_non_null(strstr(said.msg, "broken hash chain"));
    /* documented scope: from a later segment on, that segment's first prev
     * is taken as the link */
    check_log(f->dir, seg_first(base.name[2]), 60);

    /* the last record of a segment edited: caught across the boundary */
    snap_restore(f->dir, &base);
    nrec = rec_offsets(base.data[0], base.len[0], offs, 256);
    forge_record(f->dir, &base, 0, nrec - 1);
    assert_int_equal(try_open(f->dir, 1024, &said), TK_ECORRUPT);
    snprintf(where, sizeof where, "%s offset 16 (record seq %" PRIu64 "): broken hash chain",
             base.name[1], seg_first(base.name[1]));
    assert_non_null(strstr(said.msg, where));
    assert_int_equal(iterate_all(f->dir, 1), TK_ECORRUPT);

    /* the very last record's seq rewritten, CRC recomputed: no later link
     * can catch it, the seq check must */
    snap_restore(f->dir, &base);
    size_t li = base.n - 1;
    nrec = rec_offsets(base.data[li], base.len[li], offs, 256);
    unsigned char *b = malloc(base.len[li]);
    size_t at = offs[nrec - 1], len = offs[nrec] - at - REC_OVERHEAD;
    memcpy(b, base.data[li], base.len[li]);
    le64(b + at + 8, 61);
    le32(b + at + 48 + len, crc32c_extend(0, b + at + 8, 40 + len));
    char *p = tkt_path(f->dir, base.name[li]);
    assert_int_equal(tkt_write_file(p, b, base.len[li]), 0);
    assert_int_equal(try_open(f->dir, 1024, &said), TK_ECORRUPT);
    snprintf(where, sizeof where, "%s offset %zu (record seq 60): seq gap", base.name[li], at);
    assert_non_null(strstr(said.msg, where));
    assert_int_equal(iterate_all(f->dir, 1), TK_ECORRUPT);
    free(p);
    free(b);
    snap_free(&base);
}

/* The fast check cuts the sealed segments into pieces checked on threads
 * of their own; whichever piece a segment boundary falls in (or between),
 * an edit of the last record before it is refused at the open, and an
 * intact log's scrub checks every link up to the last segment. */
static void fast_check_links_every_segment_and_the_scrub_the_rest(void **state)
{
    tk_why said = {.msg = ""};
    fixture *f = *state;
    elog *lg = open_log(f->dir, 512);
    snap base;
    char where[128];
    uint64_t checked_to = 0;

    fill(lg, 120, 1);
    elog_close(lg);
    snap_take(f->dir, &base);
    assert_true(base.n >= 6);
    assert_int_equal(scrub_of(f->dir, 512, &said, &checked_to), 0);
    assert_int_equal(checked_to, seg_first(base.name[base.n - 1]) - 1);
    for (size_t i = 1; i < base.n; i++) {
        size_t offs[256], nrec = rec_offsets(base.data[i - 1], base.len[i - 1], offs, 256);
        snap_restore(f->dir, &base);
        forge_record(f->dir, &base, i - 1, nrec - 1);
        said.msg[0] = '\0';
        assert_int_equal(try_open(f->dir, 512, &said), TK_ECORRUPT);
        snprintf(where, sizeof where, "%s offset 16 (record seq %" PRIu64 "): broken hash chain",
                 base.name[i], seg_first(base.name[i]));
        assert_non_null(strstr(said.msg, where));
    }
    snap_free(&base);
}

static void missing_or_cut_middle_segment_is_refused(void **state)
{
    tk_why said = {.msg = ""};
    fixture *f = *state;
    elog *lg = open_log(f->dir, 1024);
    snap base, bad;

    fill(lg, 60, 1);
    elog_close(lg);
    snap_take(f->dir, &base);
    assert_true(base.n >= 4);

    /* a middle segment missing */
    char *p = tkt_path(f->dir, base.name[1]);
    assert_int_equal(unlink(p), 0);
    free(p);
    snap_take(f->dir, &bad);
    assert_int_equal(try_open(f->dir, 1024, &said), TK_ECORRUPT);
    assert_non_null(strstr(said.msg, base.name[2]));
    assert_non_null(strstr(said.msg, "seq gap"));
    assert_true(snap_same(f->dir, &bad));
    assert_int_equal(iterate_all(f->dir, 1), TK_ECORRUPT);
    snap_free(&bad);

    /* the first segment missing */
    snap_restore(f->dir, &base);
    p = tkt_path(f->dir, base.name[0]);
    assert_int_equal(unlink(p), 0);
    free(p);
    assert_int_equal(try_open(f->dir, 1024, &said), TK_ECORRUPT);
    assert_non_null(strstr(said.msg, "seq gap"));

    /* a middle segment cut short: only the last segment has a torn tail */
    snap_restore(f->dir, &base);
    p = tkt_path(f->dir, base.name[1]);
    assert_int_equal(tkt_truncate(p, base.len[1] - 10), 0);
    free(p);
    snap_take(f->dir, &bad);
    assert_int_equal(try_open(f->dir, 1024, &said), TK_ECORRUPT);
    assert_non_null(strstr(said.msg, base.name[1]));
    assert_true(snap_same(f->dir, &bad));
    snap_free(&bad);

    /* zeros after a middle segment are damage too */
    snap_restore(f->dir, &base);
    p = tkt_path(f->dir, base.name[1]);
    unsigned char *z = calloc(1, base.len[1] + 100);
    memcpy(z, base.data[1], base.len[1]);
    assert_int_equal(tkt_write_file(p, z, base.len[1] + 100), 0);
    free(z);
    free(p);
    assert_int_equal(try_open(f->dir, 1024, &said), TK_ECORRUPT);
    snap_free(&base);
}

static void stray_files_and_bad_names(void **state)
{
    tk_why said = {.msg = ""};
    fixture *f = *state;
    assert_int_equal(mkdir(f->dir, 0700), 0);
    char *p = tkt_path(f->dir, "notes.txt");
    assert_int_equal(tkt_write_file(p, "hello", 5), 0);
    free(p);
    p = tkt_path(f->dir, "00000000000000000007.seg.bak");
    assert_int_equal(tkt_write_file(p, "junk", 4), 0);
    free(p);

    elog *lg = open_log(f->dir, 0);
    fill(lg, 5, 2);
    elog_close(lg);
    check_log(f->dir, 1, 5);
    assert_int_equal(count_files(f->dir, "", ".seg", NULL), 1);

    /* a .seg file that is not named as a segment is not guessed at */
    p = tkt_path(f->dir, "7.seg");
    assert_int_equal(tkt_write_file(p, "junk", 4), 0);
    free(p);
    assert_int_equal(try_open(f->dir, 0, &said), TK_ECORRUPT);
    assert_non_null(strstr(said.msg, "7.seg"));
    assert_int_equal(iterate_all(f->dir, 1), TK_ECORRUPT);
}

static void second_writer_is_refused(void **state)
{
    tk_why said = {.msg = ""};
    fixture *f = *state;
    elog *lg = open_log(f->dir, 0);
    fill(lg, 2, 1);
    assert_int_equal(try_open(f->dir, 0, &said), TK_EIO);
    assert_non_null(strstr(said.msg, "in use"));
    check_log(f->dir, 1, 2); /* readers are welcome */
    elog_close(lg);
    lg = open_log(f->dir, 0);
    assert_int_equal(elog_last_seq(lg), 2);
    elog_close(lg);
}

/* ---- fault injection ------------------------------------------------- */

/* One failed sync of 3 records after 5 durable ones. Chosen behaviour: the
 * segment is truncated back to its durable size, so after reopen the failed
 * batch is absent whichever call failed. */
static void failed_sync_fences(const fixture *f, fio_op op)
{
    tk_why said = {.msg = ""};
    elog *lg = open_log(f->dir, 0);
    const char *seg = "00000000000000000001.seg";
    uint64_t seq = 0;
    off_t size;

    fill(lg, 5, 5);
    elog_close(lg); /* trims the preallocated zeros: size is the records' end */
    size = file_size(f->dir, seg);
    lg = open_log(f->dir, 0);
    for (int i = 0; i < 3; i++)
        append_one(lg);
    fio_fault_arm(op, 1);
    assert_int_equal(elog_sync(lg, &said), TK_EIO);
    assert_true(elog_fenced(lg));
    assert_int_equal(elog_last_seq(lg), 5);
    assert_int_equal(elog_next_seq(lg), 6); /* the failed batch is dropped */
    assert_int_equal(file_size(f->dir, seg), size);
    /* latched: never retried, never acknowledged */
    assert_int_equal(elog_append(lg, "x", 1, &seq), TK_EFENCED);
    assert_int_equal(elog_sync(lg, &said), TK_EFENCED);
    assert_true(elog_fenced(lg));
    elog_close(lg);

    lg = open_log(f->dir, 0);
    assert_int_equal(elog_last_seq(lg), 5);
    assert_false(elog_fenced(lg));
    assert_int_equal(count_files(f->dir, "torn-", ".bin", NULL), 0);
    fill(lg, 2, 2);
    elog_close(lg);
    check_log(f->dir, 1, 7);
}

static void failed_write_fences(void **state)
{
    failed_sync_fences(*state, FIO_WRITE);
}

static void failed_fsync_fences(void **state)
{
    failed_sync_fences(*state, FIO_FSYNC);
}

/* A sync that starts a new segment makes, in order: header write (W1),
 * header fdatasync (F1), directory fsync (F2), batch write (W2), batch
 * fdatasync (F3). Each one failing must fence and lose only the batch. */
static void failed_roll_fences(void **state)
{
    tk_why said = {.msg = ""};
    fixture *f = *state;
    static const struct { fio_op op; unsigned n; } cases[] = {
        { FIO_WRITE, 1 }, { FIO_FSYNC, 1 }, { FIO_FSYNC, 2 },
        { FIO_WRITE, 2 }, { FIO_FSYNC, 3 },
    };
    elog *lg = open_log(f->dir, 512);
    snap base;
    uint64_t last;
    size_t nseg;

    fill(lg, 3, 1);
    fill_to_roll(lg, f->dir, 512);
    last = elog_last_seq(lg);
    elog_close(lg);
    snap_take(f->dir, &base);
    nseg = base.n;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snap_restore(f->dir, &base);
        lg = open_log(f->dir, 512);
        append_one(lg);
        append_one(lg);
        fio_fault_arm(cases[i].op, cases[i].n);
        assert_int_equal(elog_sync(lg, &said), TK_EIO);
        fio_fault_arm(cases[i].op, 0);
        assert_true(elog_fenced(lg));
        assert_int_equal(elog_append(lg, "x", 1, NULL), TK_EFENCED);
        assert_int_equal(elog_sync(lg, &said), TK_EFENCED);
        elog_close(lg);

        lg = open_log(f->dir, 512);
        assert_int_equal(elog_last_seq(lg), last);
        elog_close(lg);
        check_log(f->dir, 1, last);
        assert_int_equal(count_files(f->dir, "torn-", ".bin", NULL), 0);

        lg = open_log(f->dir, 512);
        fill(lg, 2, 2); /* this sync rolls */
        elog_close(lg);
        assert_int_equal(count_files(f->dir, "", ".seg", NULL), nseg + 1);
        check_log(f->dir, 1, last + 2);
    }
    snap_free(&base);
}

/* ---- the base ---------------------------------------------------------- */

/* A log with a base starts after it: an empty one reports S and H, the
 * first append is S+1 linking to H, and every reader agrees, across
 * segments and a reopen. */
static void a_based_log_starts_after_its_base(void **state)
{
    fixture *f = *state;
    tk_why said = {.msg = ""};
    uint8_t h[32], got[32], zero[32] = {0};
    uint64_t bs = 0, seq;
    elog_iter *it;
    const void *p;
    size_t len;

    for (int i = 0; i < 32; i++)
        h[i] = (uint8_t)(i * 7 + 3);
    assert_int_equal(elog_base_read(f->dir, &bs, got, &said), TK_ENOTFOUND);
    assert_int_equal(elog_base_write(f->dir, 1000, h, &said), 0);
    assert_int_equal(elog_base_write(f->dir, 1000, h, &said), TK_EEXIST);
    assert_int_equal(elog_base_read(f->dir, &bs, got, &said), 0);
    assert_int_equal(bs, 1000);
    assert_memory_equal(got, h, 32);

    elog *lg = open_log(f->dir, 1024);
    assert_int_equal(elog_base_seq(lg), 1000);
    assert_int_equal(elog_last_seq(lg), 1000);
    assert_int_equal(elog_next_seq(lg), 1001);
    assert_memory_equal(elog_head_hash(lg), h, 32);
    elog_durable_head(lg, &seq, got);
    assert_int_equal(seq, 1000);
    assert_memory_equal(got, h, 32);
    assert_int_equal(elog_hash_at(f->dir, 1000, got, &said), 0);
    assert_memory_equal(got, h, 32);
    fill(lg, 200, 7); /* several segments */
    elog_close(lg);
    assert_int_equal(elog_base_write(f->dir, 5, zero, &said), TK_EEXIST); /* segments */

    lg = open_log(f->dir, 1024);
    assert_int_equal(elog_last_seq(lg), 1200);
    elog_close(lg);
    /* the first record links to H */
    assert_int_equal(elog_iter_open(f->dir, 1001, &it, &said), 0);
    assert_memory_equal(elog_iter_hash(it), h, 32);
    assert_int_equal(elog_iter_next(it, &seq, &p, &len, &said), 1);
    assert_int_equal(seq, 1001);
    elog_iter_free(it);
    /* every record, its payload, and the chain from H */
    uint8_t link[32], want[64];
    memcpy(link, h, 32);
    assert_int_equal(elog_iter_open(f->dir, 1001, &it, &said), 0);
    for (uint64_t expect = 1001; expect <= 1200; expect++) {
        size_t wn = payload_for(expect, want);
        assert_int_equal(elog_iter_next(it, &seq, &p, &len, &said), 1);
        assert_int_equal(seq, expect);
        assert_int_equal(len, wn);
        assert_memory_equal(p, want, wn);
        chain(link, seq, link, want, wn);
        assert_memory_equal(elog_iter_hash(it), link, 32);
    }
    assert_int_equal(elog_iter_next(it, &seq, &p, &len, &said), 0);
    elog_iter_free(it);
    assert_int_equal(iterate_all(f->dir, 1100), 0);
    /* before the base: not in this log */
    assert_int_equal(elog_iter_open(f->dir, 1000, &it, &said), TK_ENOTFOUND);
    assert_non_null(strstr(said.msg, "starts after event 1000"));
    assert_int_equal(elog_iter_open(f->dir, 1, &it, &said), TK_ENOTFOUND);
    assert_int_equal(elog_hash_at(f->dir, 999, got, &said), TK_ENOTFOUND);

    elog_report rep;
    assert_int_equal(elog_check(f->dir, NULL, NULL, &rep, &said), 0);
    assert_int_equal(rep.base_seq, 1000);
    assert_memory_equal(rep.base_hash, h, 32);
    assert_int_equal(rep.records, 200);
    assert_int_equal(rep.last_seq, 1200);
}

/* A based log is damaged when its base does not check, is gone, or does
 * not match where the log begins and what its first record links to. */
static void a_based_log_that_does_not_fit_its_base_is_refused(void **state)
{
    fixture *f = *state;
    tk_why said = {.msg = ""};
    uint8_t h[32] = {1, 2, 3};
    elog_report rep;
    size_t n;

    assert_int_equal(elog_base_write(f->dir, 50, h, &said), 0);
    elog *lg = open_log(f->dir, 0);
    fill(lg, 10, 3);
    elog_close(lg);
    char *base = tkt_path(f->dir, "base");
    uint8_t *orig = tkt_read_file(base, &n);
    assert_int_equal(n, 52);

    for (size_t off = 0; off < n; off++) { /* any flipped bit: not a base */
        orig[off] ^= 4;
        assert_int_equal(tkt_write_file(base, orig, n), 0);
        orig[off] ^= 4;
        assert_int_equal(try_open(f->dir, 0, &said), TK_ECORRUPT);
        assert_non_null(strstr(said.msg, "not a valid base file"));
        assert_int_equal(elog_check(f->dir, NULL, NULL, &rep, &said), TK_ECORRUPT);
        assert_true(rep.bad_base);
    }
    /* the base file removed: the log starts at 51 with nothing before */
    assert_int_equal(unlink(base), 0);
    assert_int_equal(try_open(f->dir, 0, &said), TK_ECORRUPT);
    assert_non_null(strstr(said.msg, "no base file"));
    assert_int_equal(elog_check(f->dir, NULL, NULL, &rep, &said), TK_ECORRUPT);
    assert_int_equal(iterate_all(f->dir, 51), TK_ECORRUPT);
    /* another hash: the first record does not link to it */
    h[0] ^= 1;
    assert_int_equal(elog_base_write(f->dir, 50, h, &said), TK_EEXIST); /* segments */
    uint8_t b[52];
    memcpy(b, orig, 52);
    b[16] ^= 1;
    le32(b + 48, crc32c_extend(0, b, 48));
    assert_int_equal(tkt_write_file(base, b, 52), 0);
    assert_int_equal(try_open(f->dir, 0, &said), TK_ECORRUPT);
    assert_non_null(strstr(said.msg, "does not link to the base"));
    assert_int_equal(elog_check(f->dir, NULL, NULL, &rep, &said), TK_ECORRUPT);
    /* another seq: the first segment is not base + 1 */
    memcpy(b, orig, 52);
    le64(b + 8, 49);
    le32(b + 48, crc32c_extend(0, b, 48));
    assert_int_equal(tkt_write_file(base, b, 52), 0);
    assert_int_equal(try_open(f->dir, 0, &said), TK_ECORRUPT);
    assert_non_null(strstr(said.msg, "says its first event is 50"));
    /* put back: whole */
    assert_int_equal(tkt_write_file(base, orig, n), 0);
    assert_int_equal(try_open(f->dir, 0, &said), 0);
    free(orig);
    free(base);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(fault_fires_once_on_the_nth_call),
        T(write_all_survives_short_writes_and_eintr),
        T(round_trip_and_format),
        T(empty_and_max_payloads),
        T(iterator_from_any_seq_across_segments),
        T(tiny_segments_roll_every_sync),
        T(iterator_on_missing_dir_is_an_error),
        T(group_commit_is_one_write_one_fsync),
        T(torn_tail_cut_at_every_offset),
        T(trailing_zeros_are_free_space),
        T(write_cut_short_into_zeros),
        T(open_in_halves),
        T(syncs_write_inside_preallocated_space),
        T(short_last_segment_is_a_torn_header),
        T(damage_at_every_byte_is_refused),
        T(hash_chain_catches_an_edited_record),
        T(fast_check_links_every_segment_and_the_scrub_the_rest),
        T(missing_or_cut_middle_segment_is_refused),
        T(stray_files_and_bad_names),
        T(second_writer_is_refused),
        T(failed_write_fences),
        T(failed_fsync_fences),
        T(failed_roll_fences),
        T(a_based_log_starts_after_its_base),
        T(a_based_log_that_does_not_fit_its_base_is_refused),
    };
#undef T
    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests_name("elog", tests, NULL, NULL);
}
