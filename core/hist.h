/*
 * hist.h - a fixed-bucket histogram that one thread writes and another
 * reads (prefix hist_), for the server's metrics (net/metrics.h).
 *
 * The writer (the loop thread for verifications, the writer thread for
 * batches and log syncs; exactly one per histogram) adds with relaxed
 * atomic loads and stores: no lock, no locked instruction, no allocation. A reader (the loop thread rendering
 * /metrics) sees each count on its own; a scrape taken while an
 * observation lands may see the bucket before the sum, which Prometheus
 * tolerates (counters only ever grow).
 *
 * Values are integers in the histogram's unit (nanoseconds, requests); the
 * bounds are the buckets' inclusive upper ends, ascending, and +Inf is
 * implicit (the count).
 */
#ifndef TK_CORE_HIST_H
#define TK_CORE_HIST_H
#include <stddef.h>
#include <stdint.h>

#define HIST_MAX_BUCKETS 16

typedef struct hist {
    const uint64_t *bounds;     /* borrowed: static bounds, nb of them */
    size_t nb;
    uint64_t le[HIST_MAX_BUCKETS]; /* observations <= bounds[i] (not cumulative) */
    uint64_t count;
    uint64_t sum;
} hist;

/* An empty histogram over bounds[0..nb) (nb <= HIST_MAX_BUCKETS; bounds
 * borrowed for the histogram's life). */
void hist_init(hist *h, const uint64_t *bounds, size_t nb);

/* Records one value (any thread, but only ever one thread per histogram). */
void hist_add(hist *h, uint64_t v);

/* A consistent-enough copy for rendering: cumulative counts in cum[0..nb),
 * the total count and sum. */
void hist_read(const hist *h, uint64_t cum[HIST_MAX_BUCKETS], uint64_t *count, uint64_t *sum);

#endif
