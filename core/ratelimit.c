/*
 * ratelimit.c - token buckets; see ratelimit.h.
 *
 * Levels are kept in thousandths of a unit, so that a refill of `rate`
 * units a second is exactly `rate` thousandths a millisecond: integers
 * only. The table is open addressing with linear probing; nothing is ever
 * deleted in place. When it is half full it is rebuilt, keeping only the
 * buckets that are not full again by then (a full bucket is the same as
 * none), so it shrinks back when a burst of users is over.
 */
#include "core/ratelimit.h"

#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"

#define MILLI 1000
#define MIN_SLOTS 16u

typedef struct rl_slot {
    uint32_t key;
    bool used;
    int64_t at_ms;   /* when level was last brought up to date */
    int64_t level;   /* thousandths of a unit */
    int64_t full_ms; /* from then on the bucket is full: the slot may go */
} rl_slot;

struct rl {
    rl_slot *slots;
    uint32_t cap; /* a power of two */
    uint32_t n;
};

static uint32_t rl_hash(uint32_t k)
{
    k ^= k >> 16; /* a 32-bit mix (murmur3's finaliser) */
    k *= 0x85ebca6bu;
    k ^= k >> 13;
    k *= 0xc2b2ae35u;
    k ^= k >> 16;
    return k;
}

void rl_new(rl **out)
{
    rl *r = xcalloc(1, sizeof *r);
    r->cap = MIN_SLOTS;
    r->slots = xcalloc(r->cap, sizeof *r->slots);
    *out = r;
}

void rl_free(rl *r)
{
    if (!r)
        return;
    free(r->slots);
    free(r);
}

static rl_slot *rl_find(rl *r, uint32_t key, bool *found)
{
    uint32_t i = rl_hash(key) & (r->cap - 1);
    while (r->slots[i].used && r->slots[i].key != key)
        i = (i + 1) & (r->cap - 1);
    *found = r->slots[i].used;
    return &r->slots[i];
}

/* Rebuilds the table without the buckets that are full again at now_ms. */
static void rl_rebuild(rl *r, int64_t now_ms)
{
    uint32_t live = 0;
    for (uint32_t i = 0; i < r->cap; i++)
        live += r->slots[i].used && r->slots[i].full_ms > now_ms;
    uint32_t cap = MIN_SLOTS;
    while (cap < live * 4)
        cap *= 2;
    rl_slot *old = r->slots;
    uint32_t old_cap = r->cap;
    r->slots = xcalloc(cap, sizeof *r->slots);
    r->cap = cap;
    r->n = 0;
    for (uint32_t i = 0; i < old_cap; i++) {
        if (!old[i].used || old[i].full_ms <= now_ms)
            continue;
        bool found;
        *rl_find(r, old[i].key, &found) = old[i];
        r->n++;
    }
    free(old);
}

bool rl_take(rl *r, uint32_t key, uint32_t rate, uint32_t burst, int64_t now_ms,
             int64_t *retry_ms)
{
    if (rate == 0)
        return true; /* no limit */
    int64_t cap = (int64_t)(burst ? burst : 1) * MILLI;
    bool found;
    rl_slot *s = rl_find(r, key, &found);
    int64_t level = cap;
    if (found && now_ms < s->full_ms) {
        int64_t elapsed = now_ms > s->at_ms ? now_ms - s->at_ms : 0;
        level = s->level + elapsed * (int64_t)rate;
        if (level > cap)
            level = cap;
    }
    bool taken = level >= MILLI;
    if (taken)
        level -= MILLI;
    else if (retry_ms)
        *retry_ms = (MILLI - level + rate - 1) / rate;
    if (!found) {
        if ((r->n + 1) * 2 > r->cap) {
            rl_rebuild(r, now_ms);
            s = rl_find(r, key, &found);
        }
        r->n++;
    }
    s->key = key;
    s->used = true;
    s->at_ms = now_ms;
    s->level = level;
    s->full_ms = now_ms + (cap - level + rate - 1) / rate;
    return taken;
}

uint32_t rl_count(const rl *r)
{
    return r->n;
}
