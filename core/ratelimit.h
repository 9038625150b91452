/*
 * ratelimit.h - token buckets keyed by a 32-bit id (prefix rl_): how many
 * creations one user may make a second, and at once.
 *
 * Pure: the caller passes the time, so a test drives the clock. A bucket
 * holds up to `burst` units and refills at `rate` units a second; a take
 * removes one. A key whose bucket would be full again holds no memory: the
 * table keeps only buckets that are partly drained, so its size follows
 * the users creating now, not every user there is. One thread at a time
 * (the engine's writer).
 */
#ifndef TK_RATELIMIT_H
#define TK_RATELIMIT_H
#include <stdbool.h>
#include <stdint.h>

typedef struct rl rl;

/* A new, empty set of buckets (allocation aborts on failure). */
void rl_new(rl **out);
void rl_free(rl *r); /* r may be NULL */

/* Takes one unit from key's bucket at now_ms, with the given rate (units
 * a second, > 0) and burst (bucket size; 0 counts as 1). Returns true when
 * taken; false when the bucket is empty, and then *retry_ms (may be NULL)
 * gets the milliseconds until a unit is there. */
bool rl_take(rl *r, uint32_t key, uint32_t rate, uint32_t burst, int64_t now_ms,
             int64_t *retry_ms);

/* Buckets held (partly drained ones), for tests. */
uint32_t rl_count(const rl *r);

#endif
