/*
 * snap.c - a snapshot of the LMDB state in one file; see snap.h for the
 * format and the contract.
 *
 * Writing: LMDB writes its compacted copy straight into the file after a
 * header-sized gap (mdb_env_copyfd2 writes from the descriptor's offset),
 * so the state is never held in memory; the header, which needs the
 * copy's length and seq, is written into the gap afterwards, and the
 * digest is computed by reading the file back (from the page cache).
 * Reading: one pass hashes header and data while the data goes to
 * data.mdb, so the file is read once; the digest is compared before the
 * version is trusted, so that a flipped bit is always "damaged".
 */
#include "store/snap.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "core/le.h"
#include "core/sha256.h"
#include "core/xmalloc.h"
#include "store/fio.h"

#define SNAP_DIGEST_LEN 32u
#define SNAP_CHUNK ((size_t)1 << 20)

static void header_encode(uint8_t h[SNAP_HDR_LEN], const snap_info *in)
{
    memset(h, 0, SNAP_HDR_LEN);
    memcpy(h, SNAP_MAGIC, 8);
    le_put32(h + 8, SNAP_VERSION);
    le_put64(h + 16, in->seq);
    memcpy(h + 24, in->hash, TK_HASH_LEN);
    le_put64(h + 56, in->data_len);
}

/* Reads exactly n bytes at off; 0, or -1 (errno; 0 at an early end). */
static int pread_all(int fd, void *buf, size_t n, off_t off)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = pread(fd, (uint8_t *)buf + got, n - got, off + (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = 0;
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

/* SHA-256 of the first n bytes of fd. 0 or TK_EIO. */
static int digest_of(int fd, uint64_t n, uint8_t out[SNAP_DIGEST_LEN])
{
    uint8_t *buf = xmalloc(SNAP_CHUNK);
    sha256_ctx c;
    int rc = 0;

    sha256_init(&c);
    for (uint64_t off = 0; off < n && rc == 0;) {
        size_t k = n - off < SNAP_CHUNK ? (size_t)(n - off) : SNAP_CHUNK;
        if (pread_all(fd, buf, k, (off_t)off) != 0)
            rc = TK_EIO;
        sha256_update(&c, buf, k);
        off += k;
    }
    sha256_final(&c, out);
    free(buf);
    return rc;
}

/* The copy, the keep decision, the header and the digest, into fd. */
static int write_body(state *st, int fd, snap_keep_fn keep, void *arg, snap_info *info,
                      tk_why *why)
{
    uint8_t hdr[SNAP_HDR_LEN] = {0}, digest[SNAP_DIGEST_LEN];
    struct stat sb;
    bool has_chain;
    int rc;

    if (fio_write_all(fd, hdr, sizeof hdr) != 0)
        return tk_say(why, TK_EIO, "snapshot: cannot write: %s", strerror(errno));
    rc = state_copy(st, fd, &info->seq, info->hash, &has_chain);
    if (rc == TK_EBUSY)
        return tk_say(why, rc, "snapshot: the state changed during the copy; try again");
    if (rc)
        return tk_say(why, rc, "snapshot: cannot copy the LMDB state: %s", strerror(errno));
    if (!has_chain)
        memset(info->hash, 0, TK_HASH_LEN);
    if (keep && (rc = keep(arg, info->seq, info->hash, why)))
        return rc;
    if (fstat(fd, &sb) != 0 || (uint64_t)sb.st_size < SNAP_HDR_LEN)
        return tk_say(why, TK_EIO, "snapshot: cannot stat the copy: %s", strerror(errno));
    info->data_len = (uint64_t)sb.st_size - SNAP_HDR_LEN;
    header_encode(hdr, info);
    if (fio_pwrite_all(fd, hdr, sizeof hdr, 0) != 0 ||
        digest_of(fd, (uint64_t)sb.st_size, digest) != 0 ||
        fio_pwrite_all(fd, digest, sizeof digest, sb.st_size) != 0 || fio_fsync(fd) != 0)
        return tk_say(why, TK_EIO, "snapshot: cannot write: %s", strerror(errno));
    return 0;
}

int snap_write(state *st, const char *path, snap_keep_fn keep, void *arg, snap_info *out,
               tk_why *why)
{
    char *tmp = xasprintf("%s.tmp", path);
    snap_info info = {0};
    int fd, rc;

    fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = tk_say(why, TK_EIO, "snapshot: cannot create %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if ((rc = write_body(st, fd, keep, arg, &info, why)))
        goto fail;
    close(fd);
    fd = -1;
    if (rename(tmp, path) != 0 || fio_fsync_parent(path) != 0) {
        rc = tk_say(why, TK_EIO, "snapshot: cannot rename %s to %s: %s", tmp, path,
                    strerror(errno));
        goto fail;
    }
    if (out)
        *out = info;
    free(tmp);
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    free(tmp);
    return rc;
}

static int damaged(tk_why *why, const char *path, const char *what)
{
    return tk_say(why, TK_ECORRUPT, "snapshot %s is damaged: %s; it cannot be used (take a new "
                  "one, or fetch it again)", path, what);
}

/* Hashes the header and copies data_len bytes of data from in (at
 * SNAP_HDR_LEN) to out, then compares the digest that follows. */
static int copy_checked(int in, int out, const char *path, const uint8_t hdr[SNAP_HDR_LEN],
                        uint64_t data_len, tk_why *why)
{
    uint8_t *buf = xmalloc(SNAP_CHUNK), want[SNAP_DIGEST_LEN], got[SNAP_DIGEST_LEN];
    sha256_ctx c;
    int rc = 0;

    sha256_init(&c);
    sha256_update(&c, hdr, SNAP_HDR_LEN);
    for (uint64_t off = 0; off < data_len && rc == 0; ) {
        size_t k = data_len - off < SNAP_CHUNK ? (size_t)(data_len - off) : SNAP_CHUNK;
        if (pread_all(in, buf, k, (off_t)(SNAP_HDR_LEN + off)) != 0)
            rc = tk_say(why, TK_EIO, "snapshot: cannot read %s: %s", path, strerror(errno));
        else if (fio_write_all(out, buf, k) != 0)
            rc = tk_say(why, TK_EIO, "snapshot: cannot write the state: %s", strerror(errno));
        sha256_update(&c, buf, k);
        off += k;
    }
    sha256_final(&c, got);
    if (rc == 0 && pread_all(in, want, sizeof want, (off_t)(SNAP_HDR_LEN + data_len)) != 0)
        rc = tk_say(why, TK_EIO, "snapshot: cannot read %s: %s", path, strerror(errno));
    if (rc == 0 && sodium_memcmp(want, got, sizeof got) != 0)
        rc = damaged(why, path, "its SHA-256 does not match its contents");
    free(buf);
    return rc;
}

/* The header of the file at fd (size bytes): magic and lengths. */
static int check_header(int fd, uint64_t size, const char *path, uint8_t hdr[SNAP_HDR_LEN],
                        snap_info *out, tk_why *why)
{
    if (size < SNAP_HDR_LEN + SNAP_DIGEST_LEN)
        return damaged(why, path, "shorter than a header and a digest");
    if (pread_all(fd, hdr, SNAP_HDR_LEN, 0) != 0)
        return tk_say(why, TK_EIO, "snapshot: cannot read %s: %s", path, strerror(errno));
    if (memcmp(hdr, SNAP_MAGIC, 8) != 0)
        return damaged(why, path, "no TKSNAP01 magic (not a tokend snapshot)");
    out->seq = le_get64(hdr + 16);
    memcpy(out->hash, hdr + 24, TK_HASH_LEN);
    out->data_len = le_get64(hdr + 56);
    if (out->data_len != size - SNAP_HDR_LEN - SNAP_DIGEST_LEN)
        return damaged(why, path, "its data length does not match the file's size");
    return 0;
}

int snap_install(const char *path, const char *state_dir, snap_info *out, tk_why *why)
{
    char *data = xpath(state_dir, "data.mdb");
    uint8_t hdr[SNAP_HDR_LEN];
    struct stat sb;
    int in = -1, fd = -1, rc;

    if ((in = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(in, &sb) != 0) {
        rc = tk_say(why, TK_EIO, "snapshot: cannot open %s: %s", path, strerror(errno));
        goto done;
    }
    if ((rc = check_header(in, (uint64_t)sb.st_size, path, hdr, out, why)))
        goto done;
    if (mkdir(state_dir, 0700) != 0) {
        rc = tk_say(why, errno == EEXIST ? TK_EEXIST : TK_EIO, "snapshot: cannot create %s: %s",
                    state_dir, strerror(errno));
        goto done;
    }
    if ((fd = open(data, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
        rc = tk_say(why, TK_EIO, "snapshot: cannot create %s: %s", data, strerror(errno));
        goto done;
    }
    if ((rc = copy_checked(in, fd, path, hdr, out->data_len, why)))
        goto done;
    if (le_get32(hdr + 8) != SNAP_VERSION) {
        rc = tk_say(why, TK_EINVAL, "snapshot %s has format version %" PRIu32 "; this tokend "
                    "reads version %u", path, le_get32(hdr + 8), SNAP_VERSION);
        goto done;
    }
    if (fio_fsync(fd) != 0 || fio_fsync_dir(state_dir) != 0)
        rc = tk_say(why, TK_EIO, "snapshot: cannot fsync %s: %s", data, strerror(errno));
done:
    if (fd >= 0)
        close(fd);
    if (in >= 0)
        close(in);
    free(data);
    return rc;
}
