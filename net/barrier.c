/*
 * barrier.c - the revocation barrier's book; see barrier.h.
 *
 * A small array, searched by name: a barrier over hundreds of replicas is
 * already slower than its wire (every revocation waits for the slowest).
 */
#include "net/barrier.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/xmalloc.h"
#include "net/repl.h"

typedef struct bar_rep {
    char name[REPL_NAME_MAX + 1];
    uint64_t applied;
    uint64_t until_ns; /* in the barrier until then */
} bar_rep;

struct bar {
    pthread_mutex_t mu;
    uint64_t lease_ns;
    uint64_t grace_ns; /* no revocation answered before: the start's lease */
    bar_rep reps[BAR_MAX_REPLICAS];
    size_t n;
};

void bar_new(uint32_t lease_ms, uint64_t now_ns, bar **out)
{
    bar *b = xcalloc(1, sizeof *b);
    pthread_mutex_init(&b->mu, NULL);
    b->lease_ns = (uint64_t)lease_ms * 1000000ull;
    b->grace_ns = now_ns + b->lease_ns;
    *out = b;
}

void bar_free(bar *b)
{
    if (!b)
        return;
    pthread_mutex_destroy(&b->mu);
    free(b);
}

/* Drops the replicas whose lease is over (mu held). */
static void bar_expire(bar *b, uint64_t now_ns)
{
    for (size_t i = 0; i < b->n;) {
        if (b->reps[i].until_ns > now_ns) {
            i++;
            continue;
        }
        b->reps[i] = b->reps[--b->n];
    }
}

int bar_heard(bar *b, const char *name, uint64_t applied, uint64_t durable, uint64_t now_ns,
              uint64_t *catch_up)
{
    int rc = 0;
    pthread_mutex_lock(&b->mu);
    bar_expire(b, now_ns);
    bar_rep *r = NULL;
    for (size_t i = 0; i < b->n && !r; i++)
        if (strcmp(b->reps[i].name, name) == 0)
            r = &b->reps[i];
    *catch_up = 0;
    if (!r) {
        if (b->n == BAR_MAX_REPLICAS) {
            rc = TK_ELIMIT;
            goto out;
        }
        r = &b->reps[b->n++];
        memset(r, 0, sizeof *r);
        snprintf(r->name, sizeof r->name, "%s", name);
        *catch_up = durable; /* every revocation answered without it is at or below */
    }
    if (applied > r->applied)
        r->applied = applied;
    r->until_ns = now_ns + b->lease_ns;
out:
    pthread_mutex_unlock(&b->mu);
    return rc;
}

bool bar_passed(bar *b, uint64_t seq, uint64_t now_ns, uint64_t *recheck_ns)
{
    pthread_mutex_lock(&b->mu);
    bar_expire(b, now_ns);
    bool ok = now_ns >= b->grace_ns;
    uint64_t next = ok ? UINT64_MAX : b->grace_ns;
    for (size_t i = 0; i < b->n; i++) {
        if (b->reps[i].applied >= seq)
            continue;
        ok = false;
        if (b->reps[i].until_ns < next)
            next = b->reps[i].until_ns;
    }
    pthread_mutex_unlock(&b->mu);
    *recheck_ns = next;
    return ok;
}

void bar_stats(bar *b, uint64_t now_ns, size_t *live, uint64_t *min_applied)
{
    pthread_mutex_lock(&b->mu);
    bar_expire(b, now_ns);
    *live = b->n;
    *min_applied = 0;
    for (size_t i = 0; i < b->n; i++)
        if (i == 0 || b->reps[i].applied < *min_applied)
            *min_applied = b->reps[i].applied;
    pthread_mutex_unlock(&b->mu);
}
