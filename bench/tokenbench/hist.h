/*
 * hist.h - latency histogram with log-linear buckets (HdrHistogram's
 * layout, written small).
 *
 * Why: a benchmark that reports p99.9 must record every request, not a
 * sample, and must do it in a few nanoseconds without allocating. Values
 * (nanoseconds) below 2^(HIST_SUB_BITS+1) get one bucket each; above, every
 * power of two is split into 2^HIST_SUB_BITS linear sub-buckets, so any
 * recorded value is known to within 1/2^HIST_SUB_BITS (0.8 %) of itself,
 * from 1 ns to 2^64 ns, in a fixed array of counters. The exact maximum is
 * kept apart. One histogram per generator thread; hist_merge adds them.
 */
#ifndef TB_HIST_H
#define TB_HIST_H
#include <stdint.h>

#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS ((64 - HIST_SUB_BITS) * HIST_SUB + HIST_SUB)

typedef struct hist {
    uint64_t count;
    uint64_t max;
    uint64_t min;
    double sum;
    uint64_t n[HIST_BUCKETS];
} hist;

/* Empties h (every counter 0). */
void hist_reset(hist *h);

/* Records one value (ns). Never fails, never allocates. */
void hist_record(hist *h, uint64_t v);

/* Adds every count of src into dst. */
void hist_merge(hist *dst, const hist *src);

/* The value at quantile q (0..1): the highest value equivalent to the bucket
 * that holds the ceil(q * count)-th smallest record (so never below the true
 * value, at most 0.8 % above it), capped at the exact maximum. 0 when h is
 * empty. q >= 1 gives the exact maximum. */
uint64_t hist_quantile(const hist *h, double q);

/* Bucket index of v, and the highest value of bucket i (for tests). */
uint32_t hist_index(uint64_t v);
uint64_t hist_bucket_high(uint32_t i);

#endif
