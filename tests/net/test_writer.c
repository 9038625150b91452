/*
 * test_writer.c - net/writer.c: how batches are formed from per-connection
 * queues (turns, the batch reply budget) and what cancelling a queue does,
 * driven with synthetic jobs against a real engine in a temp directory.
 *
 * Batches are seen through one log of what ran, in order: a read logs "R"
 * with its tag on the writer thread, a done logs "D" on the loop thread.
 * Every done of a batch comes after every read of it and before any read of
 * the next, so a job's batch is the number of D-to-R turns before its D.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "core/err.h"
#include "net/writer.h"
#include "store/engine.h"
#include "tests/support/fixture.h"
#include "tests/support/tkt.h"

#define MAX_LOG 8192
#define MiB (1u << 20)

typedef struct tjob {
    wrt_job job; /* first: the writer's view */
    int tag;
    eng_req req;
} tjob;

typedef struct ctx {
    char *dir;
    eng *e;
    struct event_base *base;
    wrt *w;
    pthread_mutex_t mu;
    char kind[MAX_LOG];
    int tag[MAX_LOG];
    int n;
    int done, want; /* the loop stops when done reaches want */
    /* A read that blocks until released (tag block_tag). */
    int block_tag;
    bool blocked, released;
    pthread_cond_t cv;
} ctx;

static ctx *the; /* the callbacks' context */

static void note(char kind, int tag)
{
    pthread_mutex_lock(&the->mu);
    if (the->n < MAX_LOG) {
        the->kind[the->n] = kind;
        the->tag[the->n] = tag;
        the->n++;
    }
    pthread_mutex_unlock(&the->mu);
}

static void job_read(eng *e, wrt_job *j)
{
    tjob *t = (tjob *)j;
    (void)e;
    note('R', t->tag);
    if (t->tag == the->block_tag) {
        pthread_mutex_lock(&the->mu);
        the->blocked = true;
        pthread_cond_broadcast(&the->cv);
        while (!the->released)
            pthread_cond_wait(&the->cv, &the->mu);
        pthread_mutex_unlock(&the->mu);
    }
}

static void job_done(wrt_job *j)
{
    tjob *t = (tjob *)j;
    note('D', t->tag);
    if (++the->done == the->want)
        event_base_loopbreak(the->base);
}

static int setup_opts(void **state, size_t batch_replies)
{
    tk_why said = {.msg = ""};
    static bool threads;
    ctx *c = calloc(1, sizeof *c);
    if (!threads) {
        evthread_use_pthreads();
        threads = true;
    }
    c->dir = tkt_mkdtemp();
    assert_non_null(c->dir);
    assert_int_equal(eng_open(c->dir, NULL, &c->e, &said), 0);
    c->base = event_base_new();
    assert_non_null(c->base);
    wrt_opts o = {.max_backlog = 64 * MiB, .batch_replies = batch_replies};
    assert_int_equal(wrt_start(c->base, c->e, &o, &c->w), 0);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->block_tag = -1;
    the = c;
    *state = c;
    return 0;
}

static int setup(void **state)
{
    return setup_opts(state, 16 * MiB);
}

static int setup_small(void **state)
{
    return setup_opts(state, 4 * MiB);
}

static int teardown(void **state)
{
    ctx *c = *state;
    wrt_free(c->w);
    event_base_free(c->base);
    eng_close(c->e);
    tkt_rmdir(c->dir);
    free(c->dir);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
    the = NULL;
    return 0;
}

static tjob *new_read(int tag, size_t reply_max)
{
    tjob *t = calloc(1, sizeof *t);
    t->tag = tag;
    t->job.read = job_read;
    t->job.done = job_done;
    t->job.bytes = sizeof *t;
    t->job.reply_max = reply_max;
    return t;
}

/* A write: a tenant named after tag. */
static tjob *new_write(int tag)
{
    static char names[64][16];
    tjob *t = calloc(1, sizeof *t);
    char *name = names[tag % 64];
    snprintf(name, sizeof names[0], "t%d", tag);
    t->tag = tag;
    eng_req_init(&t->req, ENG_TENANT_CREATE, &fx_operator);
    t->req.tenant = (tk_str){name, strlen(name)};
    t->job.req = &t->req;
    t->job.done = job_done;
    t->job.bytes = sizeof *t;
    t->job.reply_max = 512;
    return t;
}

static void run(ctx *c, int want)
{
    c->want = want;
    event_base_loop(c->base, EVLOOP_NO_EXIT_ON_EMPTY); /* the writer wakes it from outside */
    assert_int_equal(c->done, want);
}

/* The batch each tag's done came in (-1: no done), from the log. */
static void batches(const ctx *c, int *of, int ntags)
{
    int b = 0;
    bool after_done = false;
    for (int i = 0; i < ntags; i++)
        of[i] = -1;
    for (int i = 0; i < c->n; i++) {
        if (c->kind[i] == 'R') {
            b += after_done;
            after_done = false;
        } else {
            after_done = true;
            if (c->tag[i] < ntags)
                of[c->tag[i]] = b;
        }
    }
}

/* Where kind/tag is in the log, or -1. */
static int pos(const ctx *c, char kind, int tag)
{
    for (int i = 0; i < c->n; i++)
        if (c->kind[i] == kind && c->tag[i] == tag)
            return i;
    return -1;
}

static bool ran(const ctx *c, int tag)
{
    for (int i = 0; i < c->n; i++)
        if (c->kind[i] == 'R' && c->tag[i] == tag)
            return true;
    return false;
}

/* One connection queued 2000 requests, then another queued one write: the
 * write goes in the first batch (taken in turn), not behind the 2000. */
static void another_queue_goes_in_the_next_batch(void **state)
{
    ctx *c = *state;
    enum { FLOOD = 2000, VICTIM = FLOOD };
    static int of[FLOOD + 1];
    wrt_queue *a, *b;
    tjob *jobs[FLOOD + 1];
    wrt_queue_new(c->w, &a);
    wrt_queue_new(c->w, &b);
    for (int i = 0; i < FLOOD; i++)
        assert_int_equal(wrt_submit(c->w, a, &(jobs[i] = new_read(i, 512))->job), 0);
    assert_int_equal(wrt_submit(c->w, b, &(jobs[FLOOD] = new_write(VICTIM))->job), 0);
    run(c, FLOOD + 1);
    batches(c, of, FLOOD + 1);
    /* Done before the flood's 1024th job even ran: in the first batch (a
     * write-only batch would not show as one in `of`). */
    assert_true(pos(c, 'D', VICTIM) < pos(c, 'R', WRT_MAX_BATCH - 1));
    assert_true(pos(c, 'R', WRT_MAX_BATCH - 2) < pos(c, 'D', VICTIM));
    assert_int_equal(jobs[VICTIM]->job.res.status, 0);
    assert_int_equal(of[0], 0);
    for (int i = 1; i < FLOOD; i++) /* the flood's own order */
        assert_true(pos(c, 'R', i) > pos(c, 'R', i - 1));
    for (int i = 0; i <= FLOOD; i++)
        free(jobs[i]);
    wrt_queue_free(a);
    wrt_queue_free(b);
}

/* A write alone leaves LMDB's transaction carried (store/engine.h,
 * eng_apply_some); the writer thread commits it before it ends, on the
 * thread whose LMDB writer lock it holds, not eng_close on another. The
 * stop comes within the 1 ms idle commit's wait (when it does not, the
 * idle commit did the work and the check passes either way). */
static void carried_transaction_ends_on_the_writer(void **state)
{
    ctx *c = *state;
    wrt_queue *q;
    tjob *j = new_write(0);
    wrt_queue_new(c->w, &q);
    assert_int_equal(wrt_submit(c->w, q, &j->job), 0);
    run(c, 1);
    assert_int_equal(j->job.res.status, 0);
    wrt_free(c->w);
    c->w = NULL;
    assert_false(eng_carrying(c->e));
    wrt_queue_free(q);
    free(j);
}

/* A batch holds at most batch_replies (4 MiB here) of replies, counting
 * each job at its reply_max; its first job always joins, however large. */
static void batch_replies_are_capped(void **state)
{
    ctx *c = *state;
    enum { N = 10, BIG = N };
    int of[N + 1];
    tjob *jobs[N + 1];
    wrt_queue *a, *b;
    wrt_queue_new(c->w, &a);
    wrt_queue_new(c->w, &b);
    for (int i = 0; i < N; i++)
        assert_int_equal(wrt_submit(c->w, a, &(jobs[i] = new_read(i, MiB))->job), 0);
    run(c, N);
    batches(c, of, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(of[i], i / 4);
    c->n = c->done = 0;
    assert_int_equal(wrt_submit(c->w, b, &(jobs[BIG] = new_read(BIG, 10 * MiB))->job), 0);
    run(c, 1);
    assert_true(ran(c, BIG));
    for (int i = 0; i <= N; i++)
        free(jobs[i]);
    wrt_queue_free(a);
    wrt_queue_free(b);
}

/* Queues a budget kept out of a batch are first in the next one: with
 * room for two jobs a batch, three busy queues each get a turn every
 * other batch at worst (always starting from the first queue, the third
 * would never run while the first two had work). */
static void queues_left_out_go_first_next_time(void **state)
{
    ctx *c = *state;
    enum { Q = 3, PER = 10, N = Q * PER };
    int of[N];
    tjob *jobs[N];
    wrt_queue *q[Q];
    for (int k = 0; k < Q; k++)
        wrt_queue_new(c->w, &q[k]);
    for (int i = 0; i < PER; i++)
        for (int k = 0; k < Q; k++) {
            int tag = k * PER + i;
            assert_int_equal(wrt_submit(c->w, q[k], &(jobs[tag] = new_read(tag, 2 * MiB))->job),
                             0);
        }
    run(c, N);
    batches(c, of, N);
    for (int k = 0; k < Q; k++)
        for (int i = 0; i < PER; i++) /* job i of each queue within its fair share */
            assert_true(of[k * PER + i] <= (Q * (i + 1) + 1) / 2);
    for (int i = 0; i < N; i++)
        free(jobs[i]);
    for (int k = 0; k < Q; k++)
        wrt_queue_free(q[k]);
}

typedef struct cancel_arg {
    wrt_queue *q;
    size_t dropped;
} cancel_arg;

static void cancel_now(evutil_socket_t fd, short what, void *arg)
{
    ctx *c = the;
    cancel_arg *ca = arg;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&c->mu);
    while (!c->blocked) /* the batch is in flight, its first read running */
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    ca->dropped = wrt_cancel(c->w, ca->q);
    assert_int_equal(wrt_cancel(c->w, ca->q), 0);
    pthread_mutex_lock(&c->mu);
    c->released = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* A queue cancelled while a batch of it is in flight: its jobs not in the
 * batch are handed back (never run, no done), its reads in the batch are
 * not run (done still comes), and another queue's jobs are untouched. */
static void cancel_drops_queued_and_skips_reads_in_flight(void **state)
{
    ctx *c = *state;
    enum { X = 5, BLOCK = 100 };
    tjob *xs[X], *y;
    wrt_queue *qx, *qy;
    cancel_arg ca;
    wrt_queue_new(c->w, &qx);
    wrt_queue_new(c->w, &qy);
    c->block_tag = BLOCK;
    /* 4 MiB a batch: the blocking read of y, then x0 and x1 (1 MiB each
     * after y's 2 MiB); x2..x4 wait for the next batch. */
    assert_int_equal(wrt_submit(c->w, qy, &(y = new_read(BLOCK, 2 * MiB))->job), 0);
    for (int i = 0; i < X; i++)
        assert_int_equal(wrt_submit(c->w, qx, &(xs[i] = new_read(i, MiB))->job), 0);
    ca.q = qx;
    struct event *ev = evtimer_new(c->base, cancel_now, &ca);
    struct timeval tv = {0, 1000};
    evtimer_add(ev, &tv);
    run(c, 3); /* y, x0, x1 */
    event_free(ev);
    assert_int_equal(ca.dropped, 3);
    assert_true(ran(c, BLOCK));
    for (int i = 0; i < X; i++)
        assert_false(ran(c, i));
    int d = 0;
    for (int i = 0; i < c->n; i++)
        d += c->kind[i] == 'D';
    assert_int_equal(d, 3);
    assert_true(wrt_idle(c->w));
    for (int i = 0; i < X; i++)
        free(xs[i]);
    free(y);
    wrt_queue_free(qx);
    wrt_queue_free(qy);
}

/* The backlog counts job bytes queued or in flight; over it: EBUSY, and
 * the job is not queued. */
static void backlog_full_is_ebusy(void **state)
{
    ctx *c = *state;
    wrt_queue *q;
    wrt_queue_new(c->w, &q);
    tjob *big = new_read(1, 512), *small = new_read(2, 512);
    big->job.bytes = 64 * MiB;
    assert_int_equal(wrt_submit(c->w, q, &big->job), 0);
    assert_int_equal(wrt_submit(c->w, q, &small->job), TK_EBUSY);
    run(c, 1);
    assert_int_equal(wrt_submit(c->w, q, &small->job), 0); /* room again */
    run(c, 2);
    free(big);
    free(small);
    wrt_queue_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(another_queue_goes_in_the_next_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(batch_replies_are_capped, setup_small, teardown),
        cmocka_unit_test_setup_teardown(queues_left_out_go_first_next_time, setup_small, teardown),
        cmocka_unit_test_setup_teardown(cancel_drops_queued_and_skips_reads_in_flight, setup_small,
                                        teardown),
        cmocka_unit_test_setup_teardown(backlog_full_is_ebusy, setup, teardown),
        cmocka_unit_test_setup_teardown(carried_transaction_ends_on_the_writer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
