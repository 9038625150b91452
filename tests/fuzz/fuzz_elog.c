/*
 * fuzz_elog.c - event-log recovery (store/elog.h) over arbitrary segment
 * contents.
 *
 * Input: three control bytes, then the content.
 *   byte 0, flags:
 *     0x01 WHOLE   the content is the whole first segment file (its header
 *                  too); otherwise a valid header for seq 1 comes first
 *     0x02 FIXCRC  fix the hcrc and crc of every record the content frames
 *     0x04 FIXLINK also set each record's seq and prev so the chain holds
 *                  (with FIXCRC: whole, valid records with fuzzed lengths
 *                  and payloads, which plain mutation would almost never
 *                  produce past two CRCs and a SHA-256 link)
 *     0x08 SPLIT   start a second segment after record 1 + (byte 1 & 3),
 *                  if the content has that many whole records, named after
 *                  the seq that follows
 *     0x40 ANYCUT  with SPLIT: cut at byte (byte 1) * len / 256 instead,
 *                  wherever that falls (a record torn across segments)
 *     0x10 BADNAME name that segment (byte 2 % 9) - 4 off its right name
 *     0x20 SMALL   open with 64-byte segments (the append below rolls)
 *   byte 1: where to split
 *   byte 2: from_seq of a second, partial iteration (0..255); name offset
 * Records are framed by their length field alone (8 bytes len+hcrc, then
 * 44 + len), whatever their CRCs say.
 *
 * Each run writes the segment(s) into an empty directory (on tmpfs when
 * /dev/shm is there) and checks:
 *  - elog_iter from seq 1 returns consecutive seqs from 1, then 0 or
 *    TK_ECORRUPT, and keeps returning that;
 *  - elog_open agrees with it: 0 with last_seq = the records iterated when
 *    the iteration ended cleanly, TK_ECORRUPT with a message when it hit
 *    damage (never TK_EIO here, never a crash or a leak);
 *  - an iteration from another seq returns exactly the records >= it when
 *    the log is clean;
 *  - after a successful open, one appended and synced record is readable:
 *    the log now iterates cleanly to last_seq + 1 with that payload, the
 *    records before it unchanged (same chain hash), and reopens there.
 * The directory is emptied after every run and removed at exit.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "core/crc32c.h"
#include "core/err.h"
#include "store/elog.h"
#include "tests/fuzz/fuzz.h"

#define F_WHOLE 0x01
#define F_FIXCRC 0x02
#define F_FIXLINK 0x04
#define F_SPLIT 0x08
#define F_BADNAME 0x10
#define F_SMALL 0x20
#define F_ANYCUT 0x40
#define MAX_ENDS 64

#define SEG_HDR 16
#define REC_HDR 48 /* len, hcrc, seq, prev */
#define REC_OVERHEAD 52
#define HCRC_XOR 0xA282EAD8u

static char dir[PATH_MAX];

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void empty_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[PATH_MAX + 256];

    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FZ_CHECK(unlink(path) == 0, "cleaning the fuzz directory");
    }
    closedir(d);
}

static void remove_dir(void)
{
    empty_dir();
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct stat st;
    const char *base = "/dev/shm";

    (void)argc;
    (void)argv;
    if (stat(base, &st) != 0 || !S_ISDIR(st.st_mode) || access(base, W_OK) != 0) {
        base = getenv("TMPDIR");
        if (!base || !*base)
            base = "/tmp";
    }
    snprintf(dir, sizeof dir, "%s/tokend-fuzz-elog-XXXXXX", base);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "fuzz_elog: mkdtemp %s: %s\n", dir, strerror(errno));
        abort();
    }
    atexit(remove_dir);
    if (sodium_init() < 0)
        abort();
    return 0;
}

static void write_file(uint64_t first, bool header, const uint8_t *p, size_t n)
{
    char path[PATH_MAX + 64];
    uint8_t hdr[SEG_HDR];
    int fd;

    snprintf(path, sizeof path, "%s/%020" PRIu64 ".seg", dir, first);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FZ_CHECK(fd >= 0, "creating a segment file");
    if (header) {
        memcpy(hdr, "TKLOG001", 8);
        put_le64(hdr + 8, first);
        FZ_CHECK(write(fd, hdr, sizeof hdr) == (ssize_t)sizeof hdr, "writing a header");
    }
    if (n)
        FZ_CHECK(write(fd, p, n) == (ssize_t)n, "writing a segment");
    close(fd);
}

/* Frames records in buf[from..n) by their length fields, fixing them as
 * flags ask. Fills ends[] with the end offset of each whole record (up to
 * max) and returns how many there are. */
static size_t frame(uint8_t *buf, size_t from, size_t n, unsigned flags, size_t *ends,
                    size_t max)
{
    uint8_t prev[ELOG_HASH_LEN] = { 0 };
    size_t off = from, count = 0;
    uint64_t seq = 1;

    while (n - off >= 8) {
        uint8_t *p = buf + off;
        uint32_t len = get_le32(p);
        if (flags & (F_FIXCRC | F_FIXLINK))
            put_le32(p + 4, crc32c_extend(0, p, 4) ^ HCRC_XOR);
        if ((uint64_t)len + REC_OVERHEAD > n - off)
            break;
        uint8_t *body = p + 8;
        size_t blen = 8 + ELOG_HASH_LEN + len;
        if (flags & F_FIXLINK) {
            put_le64(body, seq);
            memcpy(body + 8, prev, ELOG_HASH_LEN);
        }
        if (flags & (F_FIXCRC | F_FIXLINK))
            put_le32(body + blen, crc32c_extend(0, body, blen));
        crypto_hash_sha256(prev, body, blen);
        off += REC_OVERHEAD + len;
        if (count < max)
            ends[count] = off;
        count++;
        seq++;
    }
    return count;
}

/* Iterates the log from from_seq to the end. Returns the final result (0 or
 * a TK_E* code), the number of records in *n, the last chain hash in hash,
 * and the payload of the last record in last/last_len (a copy; caller
 * frees). */
static int iterate(uint64_t from_seq, uint64_t *n, uint8_t hash[ELOG_HASH_LEN], uint8_t **last,
                   size_t *last_len)
{
    tk_why said = {.msg = ""};
    elog_iter *it;
    uint64_t seq, want = from_seq ? from_seq : 1;
    const void *payload;
    size_t len;
    int rc;

    *n = 0;
    if (last) {
        *last = NULL;
        *last_len = 0;
    }
    rc = elog_iter_open(dir, from_seq, &it, &said);
    FZ_CHECK(rc == 0, "elog_iter_open on a readable directory");
    while ((rc = elog_iter_next(it, &seq, &payload, &len, &said)) == 1) {
        FZ_CHECK(seq == want, "the iterator returns consecutive seqs from from_seq");
        FZ_CHECK(len <= ELOG_MAX_PAYLOAD, "payload within limit");
        if (last) {
            free(*last);
            *last = malloc(len ? len : 1);
            FZ_CHECK(*last != NULL, "malloc");
            if (len)
                memcpy(*last, payload, len); /* ASan checks the slice */
            *last_len = len;
        }
        want++;
        (*n)++;
    }
    FZ_CHECK(rc == 0 || rc == TK_ECORRUPT, "the iterator ends with 0 or TK_ECORRUPT");
    if (rc == TK_ECORRUPT)
        FZ_CHECK(said.msg[0] != '\0', "damage comes with a message");
    FZ_CHECK(elog_iter_next(it, &seq, &payload, &len, &said) == rc, "the end is sticky");
    memcpy(hash, elog_iter_hash(it), ELOG_HASH_LEN);
    elog_iter_free(it);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tk_why said = {.msg = ""};
    unsigned flags, b1, b2;
    uint8_t *buf;
    size_t n, ends[MAX_ENDS], nrec, split = 0, before = 0;
    uint64_t n_iter, n_from, n_after, seq;
    uint8_t hash_iter[ELOG_HASH_LEN], hash_tmp[ELOG_HASH_LEN], *last = NULL;
    size_t last_len = 0;
    elog_opts opts = { 0 };
    elog *lg = NULL;
    int rc_iter, rc;

    if (size < 3)
        return 0;
    flags = data[0];
    b1 = data[1];
    b2 = data[2];
    n = size - 3;
    buf = malloc(n ? n : 1);
    FZ_CHECK(buf != NULL, "malloc");
    if (n)
        memcpy(buf, data + 3, n);

    nrec = frame(buf, (flags & F_WHOLE) ? (n < SEG_HDR ? n : SEG_HDR) : 0, n, flags, ends,
                 MAX_ENDS);
    if ((flags & F_SPLIT) && (flags & F_ANYCUT)) {
        split = (size_t)b1 * n / 256;
        while (before < nrec && before < MAX_ENDS && ends[before] <= split)
            before++; /* whole records in the first segment */
    } else if ((flags & F_SPLIT) && nrec >= 1 + (b1 & 3u)) {
        split = ends[b1 & 3u];
        before = 1 + (b1 & 3u);
    }
    if (split) {
        uint64_t first = before + 1;
        if (flags & F_BADNAME)
            first += (uint64_t)(int64_t)((int)(b2 % 9) - 4);
        write_file(1, !(flags & F_WHOLE), buf, split);
        if (first != 1) /* a second segment named 1 would overwrite the first */
            write_file(first, true, buf + split, n - split);
    } else {
        write_file(1, !(flags & F_WHOLE), buf, n);
    }

    rc_iter = iterate(1, &n_iter, hash_iter, NULL, NULL);
    if (split) {
        rc = iterate(b2, &n_from, hash_tmp, NULL, NULL);
        if (rc_iter == 0) {
            uint64_t lo = b2 ? b2 : 1;
            FZ_CHECK(rc == 0 && n_from == (lo <= n_iter ? n_iter - lo + 1 : 0),
                     "a clean log iterates from any seq");
        }
    }

    if (flags & F_SMALL)
        opts.segment_bytes = 64;
    rc = elog_open(dir, &opts, &lg, &said);
    if (rc_iter == 0) {
        if (rc != 0)
            fprintf(stderr, "elog_open: %d %s\n", rc, said.msg);
        FZ_CHECK(rc == 0, "elog_open recovers a log the iterator reads cleanly");
        FZ_CHECK(elog_last_seq(lg) == n_iter, "elog_open keeps every record the iterator saw");
        FZ_CHECK(elog_next_seq(lg) == n_iter + 1, "next seq follows");
    } else {
        FZ_CHECK(rc == TK_ECORRUPT && lg == NULL, "elog_open refuses a damaged log");
        FZ_CHECK(said.msg[0] != '\0', "damage comes with a message");
        goto out;
    }

    /* Append one record after the recovered ones. */
    size_t plen = n < 100 ? n : 100;
    FZ_CHECK(elog_append(lg, data + 3, plen, &seq) == 0 && seq == n_iter + 1, "append");
    rc = elog_sync(lg, &said);
    if (rc != 0)
        fprintf(stderr, "elog_sync: %d %s\n", rc, said.msg);
    FZ_CHECK(rc == 0, "sync after recovery");
    FZ_CHECK(elog_last_seq(lg) == n_iter + 1, "the appended record is durable");
    elog_close(lg);
    lg = NULL;

    uint8_t hash_prev[ELOG_HASH_LEN];
    if (n_iter > 0) {
        /* The chain hash of record n_iter, read again after recovery. */
        elog_iter *it;
        const void *p;
        size_t len;
        FZ_CHECK(elog_iter_open(dir, 1, &it, &said) == 0, "iter open");
        for (uint64_t i = 0; i < n_iter; i++)
            FZ_CHECK(elog_iter_next(it, &seq, &p, &len, &said) == 1, "recovered records still read");
        memcpy(hash_prev, elog_iter_hash(it), ELOG_HASH_LEN);
        elog_iter_free(it);
        FZ_CHECK(memcmp(hash_prev, hash_iter, ELOG_HASH_LEN) == 0,
                 "recovery keeps the records it reported, unchanged");
    }
    rc = iterate(1, &n_after, hash_tmp, &last, &last_len);
    if (rc != 0)
        fprintf(stderr, "after append: %d %s\n", rc, said.msg);
    FZ_CHECK(rc == 0 && n_after == n_iter + 1, "the log iterates cleanly after an append");
    FZ_CHECK(last_len == plen && (plen == 0 || memcmp(last, data + 3, plen) == 0),
             "the appended payload reads back");

    rc = elog_open(dir, &opts, &lg, &said);
    FZ_CHECK(rc == 0 && elog_last_seq(lg) == n_iter + 1, "the log reopens after an append");
    elog_close(lg);
    lg = NULL;
out:
    elog_close(lg);
    free(last);
    free(buf);
    empty_dir();
    return 0;
}
