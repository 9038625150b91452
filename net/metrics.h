/*
 * metrics.h - the server's counters and their Prometheus text (prefix
 * met_), served at /metrics by the HTTP listener (docs/http.md,
 * "Metrics").
 *
 * The loop thread counts what it answers (verifications by listener and
 * result, with their latency; requests by listener, operation and status);
 * the writer and the engine keep their own histograms (writer.h, engine.h),
 * and gauges are read when a scrape renders (met_render). One owner per
 * name: every metric's name, type and help line is written here.
 */
#ifndef TK_NET_METRICS_H
#define TK_NET_METRICS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/hist.h"
#include "core/model.h"

/* The listeners: the binary protocol (--listen), the main HTTP listener
 * (--http) and the verify listener (--http-verify). */
typedef enum met_listener { MET_BINARY, MET_HTTP, MET_VERIFY_HTTP, MET_NLISTENERS } met_listener;

typedef struct met met;

/* A new set of counters, all zero (allocation aborts). */
void met_new(met **out);
void met_free(met *m); /* m may be NULL */

/* The monotonic clock in nanoseconds: what the durations below are
 * measured with. */
uint64_t met_now_ns(void);

/* Loop thread: one verification answered on listener l, with verdict v,
 * taking ns nanoseconds (a pipelined run's share). */
void met_verify(met *m, met_listener l, tk_verdict v, uint64_t ns);

/* Loop thread: one request of operation code (an opcode of net/proto.h)
 * answered on l with status (0 or a TK_E* code). Codes the schema does not
 * know count as "unknown". */
void met_request(met *m, met_listener l, uint16_t code, int status);

/* The socket work a loop turn batches (net/sockq.h). */
typedef enum met_io_op { MET_IO_RECV, MET_IO_SEND, MET_NIO } met_io_op;

/* Loop thread: enters io_uring submissions that did n connections' reads
 * or sends (those by read or sendmsg are not counted). */
void met_io(met *m, met_io_op op, size_t enters, size_t n);

/* Loop thread: the index lookups of n verifications from different
 * connections of a loop turn, started together (eng_verify_prefetch). */
void met_prefetch(met *m, size_t n);

/* Replication's state (docs/scale.md), for a primary that publishes or a
 * replica; role NULL: neither. Strings borrowed for the render. */
typedef struct met_repl {
    const char *role;        /* "primary", "replica" or NULL */
    bool connected;          /* to NATS */
    char problem[300];       /* why it does not publish / stopped applying, or "" */
    /* primary */
    uint64_t published;      /* the last seq the stream acknowledged */
    size_t replicas;         /* replicas in the barrier */
    uint64_t min_applied;    /* the least seq applied among them */
    uint64_t held;           /* revocations whose answer waited for the barrier */
    /* replica */
    bool available;          /* answering "valid" (lease held, caught up) */
    uint64_t applied, primary; /* the last seq applied here; the primary's, last heard */
    double since_primary_s;  /* since the primary last answered (-1: never) */
} met_repl;

/* What a scrape reads besides the counters. */
typedef struct met_gauges {
    size_t conns[MET_NLISTENERS];
    size_t index_entries, index_bytes;
    size_t portal_sessions;       /* live portal sessions (net/portal.h) */
    uint64_t events;              /* appended since the start */
    uint64_t log_seq;             /* the log's last durable seq (its head) */
    int log_chain;                /* eng_log_checked: 0 running, 1 passed, -1 failed */
    const char *store_state;      /* "ok", "full" or "fenced" */
    const hist *batches;          /* writes per batch (writer.h) */
    const hist *lmdb_commit_ns;   /* LMDB commit durations (engine.h) */
    const hist *lmdb_commit_batches; /* ... and the batches each covered */
    const hist *syncs;            /* log sync ns (engine.h) */
    met_repl repl;                /* replication (role NULL: none) */
} met_gauges;

/* Writes every metric in the Prometheus text format 0.0.4. */
void met_render(const met *m, const met_gauges *g, FILE *out);

#endif
