/*
 * nap.h - a bounded wait on a condition variable (prefix tk_nap): for the
 * threads that wake on a signal or after a while (the writer's idle LMDB
 * commit, a replica's follower, the publisher's retries).
 */
#ifndef TK_NAP_H
#define TK_NAP_H
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Waits on cv with mu held, as pthread_cond_wait does, until cv is
 * signalled or ns nanoseconds have passed (cv on its default clock,
 * CLOCK_REALTIME). True when the time ran out. A wake-up may be spurious:
 * the caller checks its own condition, as after any wait. */
bool tk_nap(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t ns);

#endif
