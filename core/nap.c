/*
 * nap.c - a bounded wait on a condition variable; see nap.h.
 */
#include "core/nap.h"

#include <errno.h>
#include <time.h>

bool tk_nap(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t at = (uint64_t)ts.tv_nsec + ns;
    ts.tv_sec += (time_t)(at / 1000000000ull);
    ts.tv_nsec = (long)(at % 1000000000ull);
    return pthread_cond_timedwait(cv, mu, &ts) == ETIMEDOUT;
}
