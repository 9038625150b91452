/*
 * vimage.c - the view image's file; see vimage.h.
 *
 * Layout (docs/storage.md), integers little-endian:
 *   0  magic "TKVIMG01"            8 bytes
 *   8  format version (1)          u32
 *  12  zero                        u32
 *  16  LMDB applied seq            u64   } the stamp
 *  24  the log's chain hash there  32    }
 *  56  body length                 u64
 *  64  body: view_save_creds's stream (machine-specific: native layout)
 *  ..  CRC-32C of every byte before it   u32
 *
 * The body is large (about 80 bytes a credential) and is moved in large
 * pieces: written through a 4 MiB buffer (pieces that large go straight
 * to write(2)), read with read(2) straight into the index's memory, the
 * CRC extended as the bytes pass.
 */
#include "store/vimage.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/crc32c.h"
#include "core/le.h"
#include "core/xmalloc.h"
#include "store/fio.h"

#define VIMG_MAGIC "TKVIMG01"
#define VIMG_VERSION 1
#define VIMG_HDR 64
#define VIMG_TRAILER 4
#define VIMG_BUF (4u << 20)

/* ---- writing ---------------------------------------------------------- */

typedef struct vimg_writer {
    int fd;          /* -1: only count (the body's length, before the header) */
    uint8_t *buf;
    size_t used;
    uint64_t total;  /* bytes put */
    uint32_t crc;
} vimg_writer;

static int vimg_flush(vimg_writer *w)
{
    int rc = w->used ? fio_write_all(w->fd, w->buf, w->used) : 0;
    w->used = 0;
    return rc;
}

static int vimg_put(void *arg, const void *p, size_t n)
{
    vimg_writer *w = arg;
    int rc;

    w->total += n;
    if (w->fd < 0)
        return 0;
    w->crc = crc32c_extend(w->crc, p, n);
    if (n >= VIMG_BUF) { /* the slot table, an entry chunk: no copy */
        if ((rc = vimg_flush(w)))
            return rc;
        return fio_write_all(w->fd, p, n);
    }
    if (w->used + n > VIMG_BUF && (rc = vimg_flush(w)))
        return rc;
    memcpy(w->buf + w->used, p, n);
    w->used += n;
    return 0;
}

static void vimg_header(uint8_t h[VIMG_HDR], uint64_t seq, const uint8_t hash[TK_HASH_LEN],
                        uint64_t body)
{
    memset(h, 0, VIMG_HDR);
    memcpy(h, VIMG_MAGIC, 8);
    le_put32(h + 8, VIMG_VERSION);
    le_put64(h + 16, seq);
    memcpy(h + 24, hash, TK_HASH_LEN);
    le_put64(h + 56, body);
}

int vimg_save(const char *state_dir, uint64_t seq, const uint8_t hash[TK_HASH_LEN], view *v,
              uint64_t keep_free, tk_why *why)
{
    char *tmp = xpath(state_dir, VIMG_TMP_NAME), *path = xpath(state_dir, VIMG_NAME);
    vimg_writer w = {.fd = -1};
    uint8_t h[VIMG_HDR], trailer[VIMG_TRAILER];
    struct statvfs fs;
    int rc;

    /* A first pass only counts: the body's length goes in the header, and
     * the CRC runs over the header first. */
    view_save_creds(v, vimg_put, &w);
    uint64_t body = w.total, need = VIMG_HDR + body + VIMG_TRAILER;
    w.total = 0;
    w.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (w.fd < 0) {
        rc = tk_say(why, errno == ENOSPC || errno == EDQUOT ? TK_ENOSPC : TK_EIO,
                    "cannot create %s: %s", tmp, strerror(errno));
        goto fail;
    }
    /* A cache must not take the room the store needs. */
    if (fstatvfs(w.fd, &fs) == 0 &&
        (uint64_t)fs.f_bavail * fs.f_frsize < need + keep_free) {
        rc = tk_say(why, TK_ENOSPC, "no room for %s (%llu bytes)", path,
                    (unsigned long long)need);
        goto fail;
    }
    w.buf = xmalloc(VIMG_BUF);
    vimg_header(h, seq, hash, body);
    if ((rc = vimg_put(&w, h, sizeof h)) || (rc = view_save_creds(v, vimg_put, &w)) ||
        (rc = vimg_flush(&w)))
        goto write_failed;
    le_put32(trailer, w.crc);
    if ((rc = fio_write_all(w.fd, trailer, sizeof trailer)))
        goto write_failed;
    if (w.total != VIMG_HDR + body) {
        rc = tk_say(why, TK_EIO, "%s: the view changed while it was written", tmp);
        goto fail;
    }
    int fd = w.fd;
    w.fd = -1;
    if (close(fd) != 0) {
        rc = TK_EIO;
        goto write_failed;
    }
    if (rename(tmp, path) != 0) {
        rc = tk_say(why, TK_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto fail;
    }
    free(w.buf);
    free(tmp);
    free(path);
    return 0;
write_failed:
    rc = tk_say(why, errno == ENOSPC || errno == EDQUOT ? TK_ENOSPC : rc,
                "cannot write %s: %s", tmp, strerror(errno));
fail:
    if (w.fd >= 0)
        close(w.fd);
    (void)unlink(tmp); /* a directory of that name stays: unlink refuses it */
    free(w.buf);
    free(tmp);
    free(path);
    return rc;
}

/* ---- reading ---------------------------------------------------------- */

typedef struct vimg_reader {
    int fd;
    uint64_t left;   /* body bytes not yet read */
    uint32_t crc;
    int err;         /* errno of a failed read, 0 for the end of the file */
} vimg_reader;

/* Reads exactly n bytes. 0, TK_ECORRUPT (the file ends), TK_EIO. */
static int vimg_read(vimg_reader *r, void *p, size_t n)
{
    uint8_t *b = p;
    while (n > 0) {
        ssize_t k = read(r->fd, b, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            r->err = k < 0 ? errno : 0;
            return k < 0 ? TK_EIO : TK_ECORRUPT;
        }
        r->crc = crc32c_extend(r->crc, b, (size_t)k);
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

static int vimg_get(void *arg, void *p, size_t n)
{
    vimg_reader *r = arg;
    if (n > r->left)
        return TK_ECORRUPT; /* the stream runs past the body */
    r->left -= n;
    return vimg_read(r, p, n);
}

void vimg_remove(const char *state_dir)
{
    char *path = xpath(state_dir, VIMG_NAME), *tmp = xpath(state_dir, VIMG_TMP_NAME);
    (void)unlink(path);
    (void)unlink(tmp);
    free(path);
    free(tmp);
}

int vimg_load(const char *state_dir, uint64_t seq, const uint8_t hash[TK_HASH_LEN], view *v,
              tk_why *why)
{
    char *path = xpath(state_dir, VIMG_NAME);
    vimg_reader r = {.fd = -1};
    uint8_t h[VIMG_HDR], trailer[VIMG_TRAILER];
    struct stat st;
    int rc;

    r.fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    vimg_remove(state_dir); /* used at most once, whatever follows */
    if (r.fd < 0) {
        rc = errno == ENOENT ? TK_ENOTFOUND : TK_EIO;
        tk_say(why, rc, "cannot open %s: %s", path, strerror(errno));
        goto done;
    }
    (void)posix_fadvise(r.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    if (fstat(r.fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        (uint64_t)st.st_size < VIMG_HDR + VIMG_TRAILER) {
        rc = tk_say(why, TK_ECORRUPT, "%s is not a view image (too short)", path);
        goto done;
    }
    if ((rc = vimg_read(&r, h, sizeof h)))
        goto short_read;
    if (memcmp(h, VIMG_MAGIC, 8) != 0) {
        rc = tk_say(why, TK_ECORRUPT, "%s is not a view image (magic)", path);
        goto done;
    }
    if (le_get32(h + 8) != VIMG_VERSION) {
        rc = tk_say(why, TK_ENOTFOUND, "%s has format version %u, not %u", path,
                    (unsigned)le_get32(h + 8), VIMG_VERSION);
        goto done;
    }
    if (le_get64(h + 16) != seq || memcmp(h + 24, hash, TK_HASH_LEN) != 0) {
        rc = tk_say(why, TK_ENOTFOUND, "%s is stale: saved at event %llu, the state is at %llu",
                    path, (unsigned long long)le_get64(h + 16), (unsigned long long)seq);
        goto done;
    }
    uint64_t body = le_get64(h + 56);
    if (body != (uint64_t)st.st_size - VIMG_HDR - VIMG_TRAILER) {
        rc = tk_say(why, TK_ECORRUPT, "%s is torn: its body is %llu bytes, the file %llu",
                    path, (unsigned long long)body, (unsigned long long)st.st_size);
        goto done;
    }
    r.left = body;
    rc = view_load_creds(v, vimg_get, &r, (size_t)body);
    if (rc == TK_EIO)
        goto short_read;
    if (rc) {
        tk_say(why, rc, "%s does not hold a sound view: %s", path, tk_strerror(rc));
        goto done;
    }
    uint32_t crc = r.crc;
    if (r.left != 0 || (rc = vimg_read(&r, trailer, sizeof trailer)) ||
        le_get32(trailer) != crc) {
        view_drop_creds(v);
        rc = tk_say(why, rc == TK_EIO ? TK_EIO : TK_ECORRUPT, "%s fails its %s", path,
                    r.left != 0 ? "length" : "CRC");
        goto done;
    }
    rc = 0;
    goto done;
short_read:
    rc = tk_say(why, rc, "cannot read %s: %s", path, r.err ? strerror(r.err) : "it ends early");
done:
    if (r.fd >= 0)
        close(r.fd);
    free(path);
    return rc;
}
