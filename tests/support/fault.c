/*
 * fault.c - failing a chosen write or sync of a chosen file; see fault.h.
 *
 * The wrappers reach the real calls through dlsym(RTLD_NEXT): glibc's, or
 * the sanitizer's interceptors in a sanitizer build. A file is known by
 * its descriptor's /proc/self/fd link, read only while armed.
 */
#include "tests/support/fault.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h> /* the prototypes this file defines */

static atomic_bool armed;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static fault_op f_op;
static const char *f_path;
static unsigned f_left;
static int f_err, f_fired;

void fault_arm(fault_op op, const char *path_part, unsigned nth, int err)
{
    pthread_mutex_lock(&mu);
    f_op = op;
    f_path = path_part;
    f_left = nth;
    f_err = err;
    f_fired = 0;
    pthread_mutex_unlock(&mu);
    atomic_store(&armed, nth > 0);
}

int fault_disarm(void)
{
    atomic_store(&armed, false);
    pthread_mutex_lock(&mu);
    int fired = f_fired;
    f_path = NULL;
    pthread_mutex_unlock(&mu);
    return fired;
}

/* True when this call is the one to fail (errno is then set). */
static bool hit(fault_op op, int fd)
{
    if (!atomic_load(&armed))
        return false;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0)
        return false;
    path[n] = '\0';
    bool fail = false;
    pthread_mutex_lock(&mu);
    if (f_path && f_left > 0 && op == f_op && strstr(path, f_path) && --f_left == 0) {
        fail = true;
        f_fired++;
        atomic_store(&armed, false);
    }
    int err = f_err;
    pthread_mutex_unlock(&mu);
    if (fail)
        errno = err;
    return fail;
}

/* The next definition of name (glibc's, or a sanitizer's interceptor),
 * looked up once. */
static void *real(void **slot, const char *name)
{
    void *f = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (!f) {
        f = dlsym(RTLD_NEXT, name);
        __atomic_store_n(slot, f, __ATOMIC_RELEASE);
    }
    return f;
}

typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef int (*sync_fn)(int);

ssize_t write(int fd, const void *buf, size_t n)
{
    static void *slot;
    write_fn f = (write_fn)real(&slot, "write");
    return hit(FAULT_WRITE, fd) ? -1 : f(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    static void *slot;
    pwrite_fn f = (pwrite_fn)real(&slot, "pwrite");
    return hit(FAULT_WRITE, fd) ? -1 : f(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    static void *slot;
    writev_fn f = (writev_fn)real(&slot, "writev");
    return hit(FAULT_WRITE, fd) ? -1 : f(fd, iov, iovcnt);
}

int fsync(int fd)
{
    static void *slot;
    sync_fn f = (sync_fn)real(&slot, "fsync");
    return hit(FAULT_SYNC, fd) ? -1 : f(fd);
}

int fdatasync(int fd)
{
    static void *slot;
    sync_fn f = (sync_fn)real(&slot, "fdatasync");
    return hit(FAULT_SYNC, fd) ? -1 : f(fd);
}
