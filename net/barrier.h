/*
 * barrier.h - the revocation barrier's book of replicas and their leases
 * (the primary's side; no I/O: net/publisher.c feeds it from NATS, and the
 * writer asks it before answering a revocation).
 *
 * A replica renews its lease by a request that says what it has applied
 * (repl.h). Heard at time T, it stays in the barrier until T + lease; the
 * replica's own lease runs from the request's sending, so it expires
 * first, and a replica dropped from the barrier has already stopped
 * answering "valid" (docs/scale.md). A revocation at seq S is answered once
 * every replica in the barrier has applied S. A replica (re)joining gets
 * the primary's durable seq as its catch-up: it answers "valid" again only
 * once it has applied that, which holds every revocation answered while
 * it was out. After the primary's own start, no revocation is answered for
 * one lease: a replica may still hold a lease from before the restart.
 *
 * Thread-safe (one mutex): NATS's thread tells it, the loop asks it.
 */
#ifndef TK_NET_BARRIER_H
#define TK_NET_BARRIER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BAR_MAX_REPLICAS 256

typedef struct bar bar;

/* A book with this lease, started at now_ns (monotonic). Aborts on
 * allocation failure. */
void bar_new(uint32_t lease_ms, uint64_t now_ns, bar **out);
void bar_free(bar *b); /* b may be NULL */

/* Replica name was heard at now_ns having applied `applied`; durable is
 * the primary's last durable seq. *catch_up gets the seq it must apply
 * before answering "valid" (0: none, it was in the barrier already).
 * 0, or TK_ELIMIT when BAR_MAX_REPLICAS others hold leases (it gets none). */
int bar_heard(bar *b, const char *name, uint64_t applied, uint64_t durable, uint64_t now_ns,
              uint64_t *catch_up);

/* True when a revocation at seq may be answered at now_ns: the start's
 * lease is over and every replica still in the barrier has applied seq.
 * Replicas silent past their lease are dropped first. Else *recheck_ns
 * gets the latest time to ask again without being told (a lease's or the
 * start's end); a replica's progress also calls for a new look. */
bool bar_passed(bar *b, uint64_t seq, uint64_t now_ns, uint64_t *recheck_ns);

/* For the metrics: replicas in the barrier at now_ns, and the least seq
 * applied among them (0 when none). */
void bar_stats(bar *b, uint64_t now_ns, size_t *live, uint64_t *min_applied);

#endif
