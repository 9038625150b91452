/*
 * sockq.h - the socket reads and sends of one loop turn, each kind in one
 * system call.
 *
 * A loop turn serves every connection that became readable: each is read,
 * then has reply bytes to send. A read and a sendmsg per connection is two
 * system calls per request, and on a paravirtualised machine the kernel
 * entry is a large part of a small request's cost. sq_run hands a batch of
 * reads, or of sends, to the kernel in one io_uring submission
 * (io_uring_enter); where io_uring is not there (an old kernel,
 * kernel.io_uring_disabled, a seccomp filter that refuses io_uring_setup,
 * or turned off) it makes one read or sendmsg each: the same results
 * either way.
 *
 * Every operation is non-blocking (MSG_DONTWAIT: io_uring answers -EAGAIN
 * at once rather than waiting for data or room) and a send never raises
 * SIGPIPE (MSG_NOSIGNAL), so sq_run returns with every result in, and none
 * of the caller's buffers stays borrowed after it.
 *
 * Not thread-safe: one sq per loop thread. The caller owns the sq.
 */
#ifndef TK_SOCKQ_H
#define TK_SOCKQ_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct sq sq;

typedef enum sq_op { SQ_SEND, SQ_RECV } sq_op;

/* One operation on the socket fd. SQ_SEND: iov[0..iovcnt) out; SQ_RECV:
 * into iov[0] (iovcnt 1). res is filled with the bytes moved (0 for a
 * receive: the peer's end) or -errno (-EAGAIN: no data, or no room). iov
 * is borrowed for the call. */
typedef struct sq_item {
    sq_op op;
    int fd;
    const struct iovec *iov;
    int iovcnt;
    ssize_t res;
} sq_item;

/* Creates a queue; with use_uring, on an io_uring ring when the kernel
 * gives one. Never fails (allocation aborts): without a ring it uses read
 * and sendmsg. */
void sq_new(bool use_uring, sq **out);

/* Frees q; q may be NULL. */
void sq_free(sq *q);

/* True when q goes through io_uring: from sq_new until its ring fails (an
 * io_uring_enter refused), after which every sq_run goes by read and
 * sendmsg. */
bool sq_uring(const sq *q);

/* How q does its work, for the start's log: "io_uring (...)", or "read and
 * sendmsg (...)" with the reason (turned off, the ring's setup error, or
 * its later failure). Borrowed from q. */
const char *sq_describe(const sq *q);

/* Runs items[0..n), filling each res. System calls: one io_uring_enter
 * per SQ_RING items with a ring (one read or sendmsg when n is 1), one
 * each without. Returns the io_uring submissions made (0: none; a
 * submission the kernel refused is not one: its items went by read and
 * sendmsg). */
size_t sq_run(sq *q, sq_item *items, size_t n);

/* Submission entries of the ring: the most items one io_uring_enter takes. */
#define SQ_RING 256

#endif
