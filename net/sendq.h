/*
 * sendq.h - the sends of one loop turn, in one system call.
 *
 * A loop turn answers every connection that became readable; each then has
 * reply bytes to send. One sendmsg per connection is a system call per
 * request, and on a paravirtualised machine the kernel entry is a large
 * part of a small request's cost. sq_send hands all of a turn's sends to
 * the kernel in one io_uring submission (io_uring_enter), or, where
 * io_uring is not there (an old kernel, kernel.io_uring_disabled, a
 * seccomp filter that refuses io_uring_setup, or turned off), makes one
 * sendmsg each: the same result either way.
 *
 * Every send is non-blocking (MSG_DONTWAIT: io_uring answers -EAGAIN at
 * once rather than waiting for room) and never raises SIGPIPE
 * (MSG_NOSIGNAL), so sq_send returns with every result in, and nothing of
 * the caller's buffers stays borrowed after it.
 *
 * Not thread-safe: one sq per loop thread. The caller owns the sq.
 */
#ifndef TK_SENDQ_H
#define TK_SENDQ_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct sq sq;

/* One send: iov[0..iovcnt) to the socket fd; res is filled with the bytes
 * taken (possibly fewer than offered, or 0) or -errno (-EAGAIN: the socket
 * is full). iov is borrowed for the call. */
typedef struct sq_item {
    int fd;
    const struct iovec *iov;
    int iovcnt;
    ssize_t res;
} sq_item;

/* Creates a send queue; with use_uring, on an io_uring ring when the
 * kernel gives one. Never fails (allocation aborts): without a ring it
 * sends with sendmsg. */
void sq_new(bool use_uring, sq **out);

/* Frees q; q may be NULL. */
void sq_free(sq *q);

/* True when q sends through io_uring. */
bool sq_uring(const sq *q);

/* How q sends, for the start's log: "io_uring", or "sendmsg" with the
 * reason (turned off, or the ring's setup error). Borrowed from q. */
const char *sq_describe(const sq *q);

/* Sends items[0..n), filling each res. System calls: one io_uring_enter
 * per SQ_RING sends with a ring (one sendmsg when n is 1), n sendmsg
 * without. Returns the io_uring submissions made (0: all by sendmsg). */
size_t sq_send(sq *q, sq_item *items, size_t n);

/* Submission entries of the ring: the most sends one io_uring_enter takes. */
#define SQ_RING 256

#endif
