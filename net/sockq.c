/* sockq.c - the socket reads and sends of one loop turn; see sockq.h. */
#include "net/sockq.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <liburing.h>

#include "core/xmalloc.h"

#define SQ_SEND_FLAGS (MSG_NOSIGNAL | MSG_DONTWAIT)

struct sq {
    bool uring;              /* the ring is in use */
    bool ring_up;            /* the ring was set up (exited at sq_free, in use or not) */
    struct io_uring ring;
    struct msghdr msg[SQ_RING]; /* one per submission entry, alive until its completion */
    char describe[160];
};

/* A ring, with the flags that make it cheaper where the kernel has them:
 * only this thread submits (SINGLE_ISSUER, 6.0) and completions need no
 * interrupt of the submitter (COOP_TASKRUN, 5.19). An older kernel refuses
 * unknown flags with EINVAL: then plain. 0 or -errno. */
static int ring_init(struct io_uring *r)
{
    unsigned flags = 0;
#ifdef IORING_SETUP_SINGLE_ISSUER
    flags |= IORING_SETUP_SINGLE_ISSUER;
#endif
#ifdef IORING_SETUP_COOP_TASKRUN
    flags |= IORING_SETUP_COOP_TASKRUN;
#endif
    int rc = io_uring_queue_init(SQ_RING, r, flags);
    if (rc == -EINVAL && flags)
        rc = io_uring_queue_init(SQ_RING, r, 0);
    return rc;
}

void sq_new(bool use_uring, sq **out)
{
    sq *q = xcalloc(1, sizeof *q);
    if (!use_uring) {
        snprintf(q->describe, sizeof q->describe, "read and sendmsg (io_uring turned off)");
    } else {
        int rc = ring_init(&q->ring);
        q->uring = q->ring_up = rc == 0;
        if (q->uring)
            snprintf(q->describe, sizeof q->describe,
                     "io_uring (a loop turn's reads in one submission, its sends in another)");
        else
            snprintf(q->describe, sizeof q->describe, "read and sendmsg (io_uring_queue_init: %s)",
                     strerror(-rc));
    }
    *out = q;
}

void sq_free(sq *q)
{
    if (!q)
        return;
    if (q->ring_up)
        io_uring_queue_exit(&q->ring);
    free(q);
}

bool sq_uring(const sq *q)
{
    return q->uring;
}

const char *sq_describe(const sq *q)
{
    return q->describe;
}

static void run_one(sq_item *it)
{
    ssize_t n;
    if (it->op == SQ_RECV) {
        do
            n = read(it->fd, it->iov[0].iov_base, it->iov[0].iov_len);
        while (n < 0 && errno == EINTR);
    } else {
        struct msghdr m = {.msg_iov = (struct iovec *)it->iov, .msg_iovlen = (size_t)it->iovcnt};
        n = sendmsg(it->fd, &m, SQ_SEND_FLAGS);
    }
    it->res = n < 0 ? -errno : n;
}

/* The ring failed (io_uring_enter refused a submission, or a completion
 * could not be waited for): later work goes by read and sendmsg. Entries
 * still in the submission ring are never submitted (the ring is not
 * entered again, only exited at sq_free), so nothing is sent twice. */
static void ring_broken(sq *q, int rc)
{
    q->uring = false;
    snprintf(q->describe, sizeof q->describe, "read and sendmsg (io_uring failed: %s)",
             strerror(-rc));
}

/* Up to SQ_RING items through the ring: every entry prepared, one
 * io_uring_enter that submits them and waits for all their completions
 * (each completes within the submission: MSG_DONTWAIT), then the results.
 * Items the kernel did not take are run one by one. True when the ring
 * took any (a submission made; false: it failed at once). */
static bool run_ring(sq *q, sq_item *items, size_t n)
{
    size_t prepared = 0;
    for (; prepared < n; prepared++) {
        struct io_uring_sqe *e = io_uring_get_sqe(&q->ring);
        if (!e)
            break; /* cannot happen: the ring has SQ_RING entries, all free */
        const sq_item *it = &items[prepared];
        if (it->op == SQ_RECV) {
            io_uring_prep_recv(e, it->fd, it->iov[0].iov_base, it->iov[0].iov_len, MSG_DONTWAIT);
        } else {
            q->msg[prepared] = (struct msghdr){.msg_iov = (struct iovec *)it->iov,
                                               .msg_iovlen = (size_t)it->iovcnt};
            io_uring_prep_sendmsg(e, it->fd, &q->msg[prepared], SQ_SEND_FLAGS);
        }
        io_uring_sqe_set_data64(e, prepared);
    }
    size_t submitted = 0;
    while (submitted < prepared) {
        int rc = io_uring_submit_and_wait(&q->ring, (unsigned)(prepared - submitted));
        if (rc == -EINTR)
            continue;
        if (rc <= 0) {
            ring_broken(q, rc ? rc : -EIO);
            break;
        }
        submitted += (size_t)rc;
    }
    /* Every submitted entry completes: all are reaped, so no msghdr, iov
     * or buffer stays borrowed past this call. */
    for (size_t got = 0; got < submitted;) {
        struct io_uring_cqe *cqe = NULL;
        int rc = io_uring_wait_cqe(&q->ring, &cqe);
        if (rc == -EINTR)
            continue;
        if (rc < 0) { /* cannot happen with entries in flight */
            ring_broken(q, rc);
            abort(); /* their buffers would be borrowed past the call */
        }
        uint64_t i = io_uring_cqe_get_data64(cqe);
        if (i < n)
            items[i].res = cqe->res;
        io_uring_cqe_seen(&q->ring, cqe);
        got++;
    }
    for (size_t i = submitted; i < n; i++)
        run_one(&items[i]);
    return submitted > 0;
}

size_t sq_run(sq *q, sq_item *items, size_t n)
{
    size_t enters = 0;
    /* One item alone goes by its own call: the same one system call,
     * without the ring's own work (a single client's turn). */
    if (!q->uring || n == 1) {
        for (size_t i = 0; i < n; i++)
            run_one(&items[i]);
        return 0;
    }
    for (size_t i = 0; i < n; i += SQ_RING) {
        size_t k = n - i < SQ_RING ? n - i : SQ_RING;
        if (q->uring) {
            enters += run_ring(q, items + i, k);
        } else {
            for (size_t j = 0; j < k; j++)
                run_one(&items[i + j]);
        }
    }
    return enters;
}
