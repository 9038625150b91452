/*
 * fault.c - a shared library LD_PRELOADed into the real bin/tokend (never
 * linked into a test): fails the Nth call of one system call on one kind
 * of file, once or for ever, with EIO or ENOSPC. SQLite's method, for the
 * server as a whole: its log, LMDB's own writes and syncs, its renames.
 *
 * TOKEND_FAULT="CALL:PATH:NTH:ERRNO:MODE", e.g. "fdatasync:/log/:1:EIO:once"
 *   CALL  write (write, pwrite, writev: the writes of data), fdatasync (also
 *         fsync), rename
 *   PATH  a part of the file's path (the new path for rename)
 *   NTH   the call that fails first, 1 = the first counted
 *   ERRNO EIO or ENOSPC
 *   MODE  once, or always (that call and every later one)
 * TOKEND_FAULT_ARM=FILE: calls are counted only once FILE exists, so that a
 * test builds its world first and then arms the fault for one request.
 * Each fault that fires appends one line to FILE.fired.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

typedef enum { C_NONE, C_WRITE, C_SYNC, C_RENAME } call_kind;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static int (*real_fdatasync)(int);
static int (*real_fsync)(int);
static int (*real_rename)(const char *, const char *);

static struct {
    bool parsed;
    call_kind call;
    char path[256];
    unsigned long nth;
    int err;
    bool always;
    char arm[PATH_MAX];
    atomic_ulong count;
} F;

__attribute__((constructor)) static void fault_init(void)
{
    real_write = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    real_pwrite = (ssize_t(*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
    real_writev = (ssize_t(*)(int, const struct iovec *, int))dlsym(RTLD_NEXT, "writev");
    real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    real_rename = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
    const char *spec = getenv("TOKEND_FAULT");
    const char *arm = getenv("TOKEND_FAULT_ARM");
    char call[32] = "", err[16] = "", mode[16] = "";
    F.parsed = true;
    if (!spec
        || sscanf(spec, "%31[^:]:%255[^:]:%lu:%15[^:]:%15s", call, F.path, &F.nth, err, mode)
               != 5)
        return;
    F.call = !strcmp(call, "write")       ? C_WRITE
             : !strcmp(call, "fdatasync") ? C_SYNC
             : !strcmp(call, "rename")    ? C_RENAME
                                          : C_NONE;
    F.err = !strcmp(err, "ENOSPC") ? ENOSPC : EIO;
    F.always = !strcmp(mode, "always");
    snprintf(F.arm, sizeof F.arm, "%s", arm ? arm : "");
}

/* The path of descriptor fd, or "" (sockets, pipes: never matched). */
static const char *path_of(int fd, char *buf, size_t cap)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, buf, cap - 1);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

/* Whether this call (of kind k, on path) fails: then errno is set. */
static bool fails(call_kind k, const char *path)
{
    if (F.call != k || !path || !strstr(path, F.path))
        return false;
    struct stat st;
    if (F.arm[0] && stat(F.arm, &st) != 0)
        return false;
    unsigned long n = atomic_fetch_add(&F.count, 1) + 1;
    if (n < F.nth || (!F.always && n != F.nth))
        return false;
    if (F.arm[0]) {
        char fired[PATH_MAX + 8], line[PATH_MAX + 64];
        snprintf(fired, sizeof fired, "%s.fired", F.arm);
        int fd = open(fired, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0) {
            int len = snprintf(line, sizeof line, "%lu %s\n", n, path);
            if (real_write(fd, line, (size_t)len) < 0) {
                /* nothing to do: the test sees no line */
            }
            close(fd);
        }
    }
    errno = F.err;
    return true;
}

static bool fd_fails(call_kind k, int fd)
{
    if (!F.parsed) /* a call before the constructor ran */
        fault_init();
    char buf[PATH_MAX];
    return F.call == k && fails(k, path_of(fd, buf, sizeof buf));
}

ssize_t write(int fd, const void *p, size_t n)
{
    return fd_fails(C_WRITE, fd) ? -1 : real_write(fd, p, n);
}

ssize_t pwrite(int fd, const void *p, size_t n, off_t off)
{
    return fd_fails(C_WRITE, fd) ? -1 : real_pwrite(fd, p, n, off);
}

ssize_t pwrite64(int fd, const void *p, size_t n, off_t off)
{
    return fd_fails(C_WRITE, fd) ? -1 : real_pwrite(fd, p, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
    return fd_fails(C_WRITE, fd) ? -1 : real_writev(fd, iov, n);
}

int fdatasync(int fd)
{
    return fd_fails(C_SYNC, fd) ? -1 : real_fdatasync(fd);
}

int fsync(int fd)
{
    return fd_fails(C_SYNC, fd) ? -1 : real_fsync(fd);
}

int rename(const char *from, const char *to)
{
    if (!F.parsed)
        fault_init();
    return F.call == C_RENAME && fails(C_RENAME, to) ? -1 : real_rename(from, to);
}
