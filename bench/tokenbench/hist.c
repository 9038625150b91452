/* hist.c - log-linear latency histogram; see hist.h. */
#include "bench/tokenbench/hist.h"

#include <string.h>

void hist_reset(hist *h)
{
    memset(h, 0, sizeof *h);
}

uint32_t hist_index(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (uint32_t)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - HIST_SUB_BITS;
    /* v >> shift lies in [HIST_SUB, 2 * HIST_SUB) */
    return shift * HIST_SUB + (uint32_t)(v >> shift);
}

uint64_t hist_bucket_high(uint32_t i)
{
    if (i < 2 * HIST_SUB)
        return i;
    unsigned shift = i / HIST_SUB - 1;
    uint64_t m = i - shift * HIST_SUB;
    uint64_t high = ((m + 1) << shift) - 1;
    return high < (m << shift) ? UINT64_MAX : high; /* the last bucket */
}

void hist_record(hist *h, uint64_t v)
{
    h->n[hist_index(v)]++;
    if (h->count == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->count++;
    h->sum += (double)v;
}

void hist_merge(hist *dst, const hist *src)
{
    if (src->count == 0)
        return;
    for (uint32_t i = 0; i < HIST_BUCKETS; i++)
        dst->n[i] += src->n[i];
    if (dst->count == 0 || src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    dst->count += src->count;
    dst->sum += src->sum;
}

uint64_t hist_quantile(const hist *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q >= 1.0)
        return h->max;
    if (q < 0)
        q = 0;
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if ((double)rank < q * (double)h->count)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->n[i];
        if (seen >= rank) {
            uint64_t high = hist_bucket_high(i);
            return high < h->max ? high : h->max;
        }
    }
    return h->max;
}
