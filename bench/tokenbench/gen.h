/*
 * gen.h - the closed-loop load generator that drives every network mode,
 * tokend and Redis alike: only the driver (request encoding and reply
 * checking) differs between them.
 *
 * Design: T threads (default 1), each running its own epoll loop over its
 * share of C non-blocking TCP connections. Every connection keeps P
 * requests in flight: as soon as a reply is parsed, a new request takes its
 * place; all the requests made ready by one read() go out in one write(),
 * which is what a pipelining client does. Each request carries the
 * monotonic time just before the write() that sent it; its latency is taken
 * at the read() that brought its reply, and every reply is recorded in the
 * thread's histogram (hist.h), with no sampling. Replies are matched to
 * requests by order (both protocols answer in order) and each is checked
 * by the driver against the item it answers; a wrong answer is counted,
 * never ignored.
 *
 * Timeline: connect and hello every connection first (not timed), then
 * warm-up (requests flow, nothing is recorded), then the measured window
 * (duration), then drain: no new requests, replies still in flight are
 * checked (not timed) for at most GEN_DRAIN_S, then every connection is
 * closed. A connection that breaks is counted in errors and dropped.
 *
 * TLS (gen_opts.tls): each connection makes its handshake at the dial,
 * blocking, then its requests and replies go through OpenSSL (tls_read,
 * tls_write: net/tls.h) on the same non-blocking socket, with the same one
 * write per burst; records OpenSSL holds, which epoll cannot see, are read
 * before the connection waits again, and a read that must send first
 * waits for EPOLLOUT. Every server of a run gets the same client code.
 */
#ifndef TB_GEN_H
#define TB_GEN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench/tokenbench/hist.h"
#include "net/tls.h"

#define GEN_REQ_MAX 512     /* bytes of one encoded request, at most */
#define GEN_IN_CAP (256u << 10)
#define GEN_DRAIN_S 5.0
#define GEN_MAX_THREADS 8

/* One blocking connection: its socket and, over TLS, its session. */
typedef struct gen_io {
    int fd;   /* -1: none */
    SSL *ssl; /* NULL: plain */
} gen_io;

/* What differs between servers. A driver's ctx is shared by all threads;
 * per-thread scratch (e.g. a decoder's buffers) comes from local_new. */
typedef struct gen_driver {
    void *ctx;
    /* Blocking set-up on a freshly connected socket (e.g. AUTH), before
     * any load, through gen_write_all and gen_read; NULL for none. 0, or
     * -1 with the reason on stderr. */
    int (*hello)(void *ctx, gen_io *io);
    /* Per-thread state handed to encode and parse; NULL: ctx is passed. */
    void *(*local_new)(void *ctx);
    void (*local_free)(void *local);
    /* Writes the request for item, with request id (the driver may ignore
     * it), into out (room for GEN_REQ_MAX bytes); returns its length. */
    size_t (*encode)(void *local, uint32_t item, uint32_t id, uint8_t *out);
    /* Parses the oldest reply from in[0..len): returns the bytes it takes
     * (> 0) and sets *ok to whether it is the right answer for (item, id),
     * 0 when the reply is not complete yet, -1 when the stream cannot be
     * parsed (the connection is then dropped). */
    long (*parse)(void *local, const uint8_t *in, size_t len, uint32_t item, uint32_t id,
                  bool *ok);
} gen_driver;

typedef struct gen_opts {
    const char *addr;       /* "HOST:PORT" */
    tls *tls;               /* TLS for every connection (borrowed), or NULL: plain */
    unsigned connections;   /* >= 1 */
    unsigned pipeline;      /* requests in flight per connection, >= 1 */
    unsigned threads;       /* 1 .. GEN_MAX_THREADS, at most connections */
    double warmup_s, duration_s;
    /* The item of each new request (work.h's picker, or a counter). */
    uint32_t (*pick)(void *arg, uint64_t *rng);
    void *pick_arg;
} gen_opts;

typedef struct gen_result {
    uint64_t ops;       /* replies received inside the measured window */
    uint64_t wrong;     /* replies that were not the right answer (whole run) */
    uint64_t checked;   /* replies checked (whole run, drain included) */
    uint64_t errors;    /* connections broken or lost */
    double seconds;     /* length of the measured window */
    double cpu_s;       /* the generator's CPU time (user + system), all of the run */
    double wall_s;      /* the run's wall time: warm-up, window and drain */
    hist lat;           /* latency (ns) of every reply in the window */
} gen_result;

/* Runs the load. 0 when the run took place (look at wrong and errors), -1
 * when it could not start (cannot connect, hello failed, bad options), with
 * the reason on stderr. out is filled in both cases. */
int gen_run(const gen_opts *o, const gen_driver *d, gen_result *out);

/* A blocking TCP connection to addr ("HOST:PORT", "[v6]:PORT") with
 * TCP_NODELAY into io; with t, over TLS: the handshake is done and the
 * server's certificate checked against the host of addr. 0, or -1 with
 * the reason on stderr. */
int gen_open(const char *addr, tls *t, gen_io *io);

/* Writes all n bytes; 0 or -1. */
int gen_write_all(gen_io *io, const void *p, size_t n);

/* One blocking read: > 0 bytes, 0 at the end of the stream, -1. */
ssize_t gen_read(gen_io *io, void *buf, size_t n);

/* Ends the session and closes the socket (io->fd -1 after; twice is fine). */
void gen_close(gen_io *io);

/* Monotonic clock, nanoseconds. */
uint64_t gen_now_ns(void);

#endif
