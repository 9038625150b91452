/*
 * hist.c - fixed-bucket histograms; see hist.h.
 */
#include "core/hist.h"

#include <string.h>

void hist_init(hist *h, const uint64_t *bounds, size_t nb)
{
    memset(h, 0, sizeof *h);
    h->bounds = bounds;
    h->nb = nb > HIST_MAX_BUCKETS ? HIST_MAX_BUCKETS : nb;
}

/* One writer per histogram (hist.h): a relaxed load and store, not a
 * read-modify-write, so that no add costs a locked instruction (this runs
 * for every verification). */
static void bump(uint64_t *p, uint64_t by)
{
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + by, __ATOMIC_RELAXED);
}

void hist_add(hist *h, uint64_t v)
{
    size_t i = 0;
    while (i < h->nb && v > h->bounds[i])
        i++;
    if (i < h->nb)
        bump(&h->le[i], 1);
    bump(&h->sum, v);
    bump(&h->count, 1);
}

void hist_read(const hist *h, uint64_t cum[HIST_MAX_BUCKETS], uint64_t *count, uint64_t *sum)
{
    uint64_t run = 0;
    /* Count first, buckets after: a value landing meanwhile can make a
     * bucket exceed the count read, never the reverse order's gap; the
     * cumulative buckets are then capped at the count. */
    uint64_t c = __atomic_load_n(&h->count, __ATOMIC_RELAXED);
    for (size_t i = 0; i < h->nb; i++) {
        run += __atomic_load_n(&h->le[i], __ATOMIC_RELAXED);
        cum[i] = run > c ? c : run;
    }
    *count = c;
    *sum = __atomic_load_n(&h->sum, __ATOMIC_RELAXED);
}
