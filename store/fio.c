/*
 * fio.c - the store's file I/O wrappers, with fault injection; see fio.h.
 *
 * Every byte the event log makes durable goes through fio_write_all and
 * fio_fsync, so a test can fail exactly the Nth write or fsync (SQLite's
 * method) and check that the log fences itself instead of acknowledging
 * data that never reached the disk. fio_fsync_dir counts as an FIO_FSYNC
 * call: a directory fsync is just as much part of making a record durable.
 *
 * The countdowns are process-wide atomics: unarmed, a call costs one relaxed
 * load. An injected fault sets errno to EIO and leaves the file untouched,
 * as if the device had refused the call.
 */
#include "store/fio.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <unistd.h>

#include "core/err.h"
#include "core/xmalloc.h"

/* Largest single write(); Linux caps one call a little below 2 GiB. */
#define FIO_CHUNK ((size_t)1 << 30)

static _Atomic unsigned fault_left[FIO_OP_COUNT];

void fio_fault_arm(fio_op op, unsigned n)
{
    if ((unsigned)op < FIO_OP_COUNT)
        atomic_store(&fault_left[op], n);
}

/* Counts one call of op; true when it is the call armed to fail. */
static bool fault_fires(fio_op op)
{
    unsigned n = atomic_load_explicit(&fault_left[op], memory_order_relaxed);

    while (n != 0) {
        if (atomic_compare_exchange_weak_explicit(&fault_left[op], &n, n - 1,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed)) {
            if (n != 1)
                return false;
            errno = EIO;
            return true;
        }
    }
    return false;
}

int fio_write_all(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;

    if (fault_fires(FIO_WRITE))
        return TK_EIO;
    while (len > 0) {
        ssize_t n = write(fd, p, len > FIO_CHUNK ? FIO_CHUNK : len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return TK_EIO;
        }
        if (n == 0) { /* no progress and no errno: do not spin */
            errno = EIO;
            return TK_EIO;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int fio_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
    const unsigned char *p = buf;

    if (fault_fires(FIO_WRITE))
        return TK_EIO;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len > FIO_CHUNK ? FIO_CHUNK : len, off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return TK_EIO;
        }
        if (n == 0) {
            errno = EIO;
            return TK_EIO;
        }
        p += n;
        off += n;
        len -= (size_t)n;
    }
    return 0;
}

int fio_fsync(int fd)
{
    if (fault_fires(FIO_FSYNC))
        return TK_EIO;
    while (fdatasync(fd) != 0) {
        if (errno != EINTR)
            return TK_EIO;
    }
    return 0;
}

int fio_fsync_dir(const char *path)
{
    int fd, rc = 0, saved;

    if (fault_fires(FIO_FSYNC))
        return TK_EIO;
    fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return TK_EIO;
    while (fsync(fd) != 0) {
        if (errno != EINTR) {
            rc = TK_EIO;
            break;
        }
    }
    saved = errno; /* close() must not hide why fsync failed */
    close(fd);
    errno = saved;
    return rc;
}

int fio_fsync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    int rc;

    if (!slash)
        return fio_fsync_dir(".");
    if (slash == path)
        return fio_fsync_dir("/");
    dir = xasprintf("%.*s", (int)(slash - path), path);
    rc = fio_fsync_dir(dir);
    free(dir);
    return rc;
}
