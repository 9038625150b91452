/*
 * fio.h - the store's file I/O, with fault injection.
 *
 * Every write and fsync of the event log goes through here so that tests can
 * make the Nth call fail (SQLite's method). Arming is process-wide and meant
 * for tests; unarmed, the wrappers cost one branch.
 */
#ifndef TK_FIO_H
#define TK_FIO_H
#include <stddef.h>
#include <sys/types.h>

typedef enum fio_op { FIO_WRITE = 0, FIO_FSYNC = 1, FIO_OP_COUNT } fio_op;

/* Makes the nth call of op from now on fail with EIO (1 = the next call).
 * n = 0 disarms. The fault fires once. */
void fio_fault_arm(fio_op op, unsigned n);

/* Writes all len bytes (retrying short writes and EINTR). 0 or TK_EIO. */
int fio_write_all(int fd, const void *buf, size_t len);

/* Writes all len bytes at offset off (pwrite; retries short writes and
 * EINTR). Counts as an FIO_WRITE. 0 or TK_EIO. */
int fio_pwrite_all(int fd, const void *buf, size_t len, off_t off);

/* fdatasync(fd). 0 or TK_EIO. */
int fio_fsync(int fd);

/* fsyncs the directory at path (after creating or renaming files in it). */
int fio_fsync_dir(const char *path);

/* fsyncs the directory that holds path ("." for a bare name; a path with a
 * trailing slash names itself). 0 or TK_EIO. */
int fio_fsync_parent(const char *path);

#endif
