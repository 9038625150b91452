/*
 * writer.c - the writer and sync threads: a two-stage pipeline, group
 * commit, listings, per-queue turns; see writer.h.
 *
 * Hand-over is one mutex and two condition variables: the loop thread
 * sets `batch` and signals `cv`; the writer thread runs it, appends it to
 * `syncq`, signals `scv` and wakes the loop (`freed`: the next batch may
 * come); the sync thread takes every batch in `syncq`, syncs them with one
 * eng_sync, moves them to `finished` and wakes the loop (`wake`). The loop
 * thread owns the queues and never touches a batch while it is in flight;
 * the other two never touch the queues. The loop hands over a batch only
 * when the writer thread has none given and is not `busy` with one (a
 * wake-up such as `freed` may come late: the state under the mutex is what
 * counts). So the shared fields are the batch pointers, `busy`, `syncing`
 * and the stop flag, all under the mutex (which also
 * orders the threads' results, and the engine's pending view changes,
 * before the loop's eng_publish), and each queue's `cancelled` flag, an
 * atomic the writer only reads.
 *
 * Turns: the queues with jobs waiting are on one list, in turn order. A
 * batch is formed in rounds over a snapshot of that list (`cand`), one job
 * per queue per round; a queue leaves the rounds when it is empty or its
 * next job may not join this batch (a read after its writes, or a reply
 * that does not fit the cap): taking only a prefix of each queue is what
 * keeps its order. Afterwards the queues that were served and still wait
 * move to the back of the list, behind those a cap kept out, which are
 * first next time.
 */
#include "net/writer.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include <sodium.h>

#include "core/err.h"
#include "core/nap.h"
#include "core/xmalloc.h"
#include "net/log.h"

/* How long the writer thread waits idle before LMDB commits the
 * transaction it carries (eng_apply_some). */
#define IDLE_COMMIT_NS 1000000u

/* A job's place in its batch. */
enum { PH_READ, PH_WRITE };

/* A queue's progress while a batch is formed. */
enum { QS_READS, QS_WRITES };

struct wrt_queue {
    wrt_job *head, *tail;    /* loop thread: jobs not yet in a batch */
    wrt_queue *prev, *next;  /* the writer's list of queues waiting */
    bool listed;
    bool served;             /* took part in the batch being formed */
    int state;               /* QS_*, while a batch is formed */
    atomic_bool cancelled;   /* set by the loop thread, read by the writer */
};

struct wrt {
    struct event_base *base;
    eng *e;
    wrt_opts o;
    /* Loop thread only. */
    size_t backlog;     /* bytes of jobs queued or in flight */
    wrt_queue *lhead, *ltail; /* queues with jobs waiting, in turn order */
    wrt_queue **cand;   /* scratch for take_batch */
    size_t ncand_cap;
    int in_flight;      /* batches handed over and not yet back (at most WRT_IN_FLIGHT) */
    struct event *kick; /* hands over the next batch at the end of this iteration */
    struct event *freed; /* activated by the writer thread when it can take the next */
    struct event *wake; /* activated by the sync thread when batches are done */
    wrt_gate_fn gate;   /* the revocation barrier (wrt_set_gate), or NULL */
    void *gate_arg;
    wrt_job *held, *held_tail; /* done, not yet answered: the gate holds the first */
    /* Shared, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;  /* the writer thread waits here for a batch, or for the syncs */
    pthread_cond_t scv; /* the sync thread waits here for batches */
    wrt_job *batch;     /* handed to the writer thread, not yet taken */
    bool busy;          /* the writer thread is planning and writing a batch */
    wrt_job *syncq[WRT_IN_FLIGHT]; /* written, waiting for the log's fsync (oldest first) */
    size_t nsyncq;
    bool syncing;       /* the sync thread is working on batches it took */
    wrt_job *finished;  /* handed back: batches, chained by their jobs' next, oldest first
                           (each batch's last job has batch_end) */
    wrt_job *finished_tail;
    bool stop;
    /* Writer thread writes, any thread reads (wrt_batch_hist). */
    hist batches;       /* writes per eng_commit */
    /* Writer thread only. */
    pthread_t th, sth;
    bool started, sstarted;
    eng_req *reqs;      /* WRT_MAX_BATCH each: eng_commit takes arrays */
    eng_res *res;
    wrt_job **writes;
    lg_limit fenced_log;
};

/* ---- writer and sync threads ----------------------------------------- */

/* A read, unless its source has gone (then its done is called all the
 * same, with nothing run). */
static void run_read(wrt *w, wrt_job *j)
{
    if (!atomic_load_explicit(&j->q->cancelled, memory_order_relaxed))
        j->read(w->e, j);
}

/* Writer thread: the batch's reads, once every batch before it is durable
 * or failed (so they see no write that could still fail), then its writes
 * as one eng_commit, written to the log for the sync thread to make
 * durable. */
static void run_batch(wrt *w, wrt_job *batch)
{
    size_t n = 0;
    bool reads = false;
    for (wrt_job *j = batch; j; j = j->next) {
        j->batch_no = 0;
        if (j->phase == PH_WRITE && atomic_load_explicit(&j->q->cancelled, memory_order_relaxed)) {
            /* Its source went away before the write began: dropped, as a
             * queued one is (done still runs; nobody is answered). */
            memset(&j->res, 0, sizeof j->res);
            j->res.status = TK_EBUSY;
            snprintf(j->res.msg, sizeof j->res.msg, "the connection closed first");
        } else if (j->phase == PH_WRITE) {
            w->writes[n] = j;
            w->reqs[n] = *j->req;
            n++;
        } else {
            reads = true;
        }
    }
    if (reads) {
        pthread_mutex_lock(&w->mu);
        while (w->nsyncq > 0 || w->syncing)
            pthread_cond_wait(&w->cv, &w->mu);
        pthread_mutex_unlock(&w->mu);
        for (wrt_job *j = batch; j; j = j->next)
            if (j->phase == PH_READ)
                run_read(w, j);
    }
    if (n > 0) {
        const char *why;
        uint64_t no;
        int rc = eng_commit(w->e, w->reqs, w->res, n, &no);
        hist_add(&w->batches, n);
        if (rc == TK_EFENCED) {
            eng_fenced(w->e, &why);
            lg_limited(&w->fenced_log, "refused %zu writes: %s", n, why);
        } else if (rc) {
            eng_fenced(w->e, &why);
            lg_line("storage failure: %zu writes refused, and every later write until restart "
                    "(verification goes on): %s", n, why);
        }
        for (size_t i = 0; i < n; i++) {
            w->writes[i]->res = w->res[i];
            w->writes[i]->batch_no = no;
            sodium_memzero(w->res[i].secret, sizeof w->res[i].secret);
        }
    }
}

static void sync_group(wrt *w);

static void *writer_main(void *arg)
{
    wrt *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->batch && !w->stop) {
            if (!eng_carrying(w->e)) {
                pthread_cond_wait(&w->cv, &w->mu);
                continue;
            }
            /* Idle with LMDB's transaction carried: committed if nothing
             * comes within IDLE_COMMIT_NS. */
            if (tk_nap(&w->cv, &w->mu, IDLE_COMMIT_NS) && !w->batch) {
                pthread_mutex_unlock(&w->mu);
                eng_apply(w->e);
                pthread_mutex_lock(&w->mu);
            }
        }
        if (!w->batch)
            break; /* stop, and nothing left to run */
        wrt_job *b = w->batch;
        w->batch = NULL;
        w->busy = true;
        pthread_mutex_unlock(&w->mu);
        run_batch(w, b);
        pthread_mutex_lock(&w->mu);
        w->busy = false; /* in the log: the loop may hand over the next */
        w->syncq[w->nsyncq++] = b;
        if (w->nsyncq == 1 && !w->syncing) {
            /* The sync thread idle: wait for the disk here, which saves a
             * thread hand-over (a request alone pays for two); the loop
             * hands over the next batch with this one's answers. */
            sync_group(w);
        } else {
            pthread_cond_signal(&w->scv);
            pthread_mutex_unlock(&w->mu);
            event_active(w->freed, 0, 0); /* the next batch may be planned meanwhile */
            pthread_mutex_lock(&w->mu);
        }
        /* LMDB takes the batch while the disk or the answers go on. */
        pthread_mutex_unlock(&w->mu);
        eng_apply_some(w->e);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    /* LMDB's carried transaction ends on the thread that began it (its
     * writer lock is this thread's), not at eng_close on another. */
    eng_apply(w->e);
    return NULL;
}

/* Sync thread: takes every batch written so far, makes them durable with
 * one eng_sync, fails the writes of those that did not become durable, and
 * hands them back to the loop in order. */
/* Takes every batch written so far, makes them durable with one
 * eng_sync, fails the writes of those that did not become durable, and
 * hands them back to the loop in order. Called with mu held (released
 * meanwhile); the sync thread's work, or the writer's when it is idle. */
static void sync_group(wrt *w)
{
    wrt_job *group[WRT_IN_FLIGHT];
    size_t ng = w->nsyncq;
    memcpy(group, w->syncq, ng * sizeof *group);
    w->nsyncq = 0;
    w->syncing = true;
    pthread_mutex_unlock(&w->mu);
    uint64_t durable;
    const char *why;
    bool was_fenced = eng_fenced(w->e, NULL);
    int rc = eng_sync(w->e, &durable);
    size_t lost = 0;
    for (size_t g = 0; g < ng; g++)
        for (wrt_job *j = group[g]; j; j = j->next) {
            if (j->phase != PH_WRITE || j->batch_no <= durable || j->res.status != 0)
                continue;
            eng_fenced(w->e, &why);
            sodium_memzero(j->res.secret, sizeof j->res.secret);
            j->res.status = rc == TK_EIO ? TK_EIO : TK_EFENCED;
            snprintf(j->res.msg, sizeof j->res.msg, "%s", why);
            lost++;
        }
    if (lost > 0 && !was_fenced) {
        eng_fenced(w->e, &why);
        lg_line("storage failure: %zu writes refused, and every later write until restart "
                "(verification goes on): %s", lost, why);
    }
    pthread_mutex_lock(&w->mu);
    for (size_t g = 0; g < ng; g++) {
        wrt_job *last = group[g];
        while (last->next)
            last = last->next;
        last->batch_end = true;
        if (w->finished_tail)
            w->finished_tail->next = group[g];
        else
            w->finished = group[g];
        w->finished_tail = last;
    }
    w->syncing = false;
    pthread_cond_broadcast(&w->cv); /* a writer waiting for the syncs (reads) */
    pthread_mutex_unlock(&w->mu);
    event_active(w->wake, 0, 0);
    pthread_mutex_lock(&w->mu);
}

/* The sync thread: batches as the writer thread writes them. */
static void *sync_main(void *arg)
{
    wrt *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->nsyncq == 0 && !w->stop)
            pthread_cond_wait(&w->scv, &w->mu);
        if (w->nsyncq == 0)
            break;
        sync_group(w);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- loop thread -------------------------------------------------------- */

static void list_append(wrt *w, wrt_queue *q)
{
    q->prev = w->ltail;
    q->next = NULL;
    if (w->ltail)
        w->ltail->next = q;
    else
        w->lhead = q;
    w->ltail = q;
    q->listed = true;
}

static void list_remove(wrt *w, wrt_queue *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        w->lhead = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        w->ltail = q->prev;
    q->prev = q->next = NULL;
    q->listed = false;
}

/* Whether q's next job may join the batch formed so far. */
static bool may_take(const wrt *w, const wrt_queue *q, size_t total, size_t writes,
                     size_t replies)
{
    const wrt_job *j = q->head;
    if (j->req && writes == WRT_MAX_BATCH)
        return false;
    if (!j->req && q->state == QS_WRITES)
        return false; /* a read after writes: the next batch, where it sees them durable */
    return total == 0 || replies + j->reply_max <= w->o.batch_replies;
}

/* Forms the next batch: one job from each waiting queue in turn, round
 * after round, a prefix of each queue (see the top of this file). Then the
 * served queues that still wait go to the back of the turn. */
static wrt_job *take_batch(wrt *w)
{
    wrt_job *head = NULL, **tail = &head;
    size_t n = 0, total = 0, writes = 0, replies = 0;
    for (wrt_queue *q = w->lhead; q; q = q->next) {
        if (n == w->ncand_cap) {
            w->ncand_cap = w->ncand_cap ? 2 * w->ncand_cap : 64;
            w->cand = xrealloc(w->cand, w->ncand_cap * sizeof *w->cand);
        }
        w->cand[n++] = q;
        q->state = QS_READS;
        q->served = false;
    }
    while (n > 0 && total < WRT_MAX_BATCH) {
        size_t keep = 0;
        for (size_t i = 0; i < n; i++) {
            wrt_queue *q = w->cand[i];
            if (total == WRT_MAX_BATCH || !may_take(w, q, total, writes, replies))
                continue; /* out of this batch's rounds */
            wrt_job *j = q->head;
            q->head = j->next;
            if (!q->head)
                q->tail = NULL;
            if (j->req) {
                j->phase = PH_WRITE;
                q->state = QS_WRITES;
                writes++;
            } else {
                j->phase = PH_READ;
            }
            j->next = NULL;
            j->batch_end = false;
            *tail = j;
            tail = &j->next;
            total++;
            replies += j->reply_max;
            q->served = true;
            if (q->head)
                w->cand[keep++] = q;
        }
        n = keep;
    }
    /* The turn: emptied queues leave the list; served ones go to the back. */
    wrt_queue *back = NULL, *back_tail = NULL;
    for (wrt_queue *q = w->lhead, *next; q; q = next) {
        next = q->next;
        if (q->head && !q->served)
            continue;
        list_remove(w, q);
        if (q->head) {
            q->next = NULL;
            if (back_tail)
                back_tail->next = q;
            else
                back = q;
            back_tail = q;
        }
    }
    for (wrt_queue *q = back, *next; q; q = next) {
        next = q->next;
        list_append(w, q);
    }
    return head;
}

static void hand_over(wrt *w)
{
    if (w->in_flight == WRT_IN_FLIGHT || !w->lhead)
        return;
    /* Only the loop sets `batch`, so the writer thread, once seen free,
     * stays free until it is given one. */
    pthread_mutex_lock(&w->mu);
    bool free_now = !w->batch && !w->busy;
    pthread_mutex_unlock(&w->mu);
    if (!free_now)
        return;
    wrt_job *b = take_batch(w);
    w->in_flight++;
    pthread_mutex_lock(&w->mu);
    w->batch = b;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* The writer thread put its batch in the log and left it to the sync
 * thread: the next may be planned while the disk works. */
static void freed_cb(evutil_socket_t fd, short what, void *arg)
{
    wrt *w = arg;
    (void)fd;
    (void)what;
    hand_over(w);
}

static void answer(wrt *w);

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hand_over(arg);
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    wrt *w = arg;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&w->mu);
    wrt_job *b = w->finished;
    w->finished = w->finished_tail = NULL;
    pthread_mutex_unlock(&w->mu);
    if (!b)
        return;
    eng_publish(w->e); /* visible to verification before anyone is told (rule 5) */
    if (w->held_tail)
        w->held_tail->next = b;
    else
        w->held = b;
    while (b->next)
        b = b->next;
    w->held_tail = b;
    answer(w);
}

/* Answers the jobs done, in order, up to the first revocation the gate
 * holds (every later job waits behind it: a connection's answers keep
 * their order). A batch stays in flight until its last job is answered,
 * so the batches held count against WRT_IN_FLIGHT and the memory bound. */
static void answer(wrt *w)
{
    while (w->held) {
        wrt_job *j = w->held;
        if (w->gate && j->phase == PH_WRITE && j->res.status == 0 && j->res.revokes
            && !w->gate(w->gate_arg, j->res.seq))
            break;
        w->held = j->next;
        if (!w->held)
            w->held_tail = NULL;
        bool end = j->batch_end;
        w->backlog -= j->bytes;
        j->done(j); /* may free j */
        if (end)
            w->in_flight--;
    }
    hand_over(w);
}

void wrt_set_gate(wrt *w, wrt_gate_fn gate, void *arg)
{
    w->gate = gate;
    w->gate_arg = arg;
}

void wrt_regate(wrt *w)
{
    if (w->held)
        answer(w);
}

/* Writes per batch: 1 to WRT_MAX_BATCH. */
static const uint64_t batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, WRT_MAX_BATCH};

const hist *wrt_batch_hist(const wrt *w)
{
    return &w->batches;
}

int wrt_start(struct event_base *base, eng *e, const wrt_opts *o, wrt **out)
{
    wrt *w = xcalloc(1, sizeof *w);
    sigset_t all, old;
    w->base = base;
    w->e = e;
    w->o = *o;
    hist_init(&w->batches, batch_bounds, sizeof batch_bounds / sizeof batch_bounds[0]);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_cond_init(&w->scv, NULL);
    w->reqs = xcalloc(WRT_MAX_BATCH, sizeof *w->reqs);
    w->res = xcalloc(WRT_MAX_BATCH, sizeof *w->res);
    w->writes = xcalloc(WRT_MAX_BATCH, sizeof *w->writes);
    w->kick = event_new(base, -1, 0, kick_cb, w);
    w->freed = event_new(base, -1, 0, freed_cb, w);
    w->wake = event_new(base, -1, 0, wake_cb, w);
    if (!w->kick || !w->freed || !w->wake)
        goto fail;
    /* Signals are for the main thread: the two threads block them all. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&w->th, NULL, writer_main, w);
    if (rc == 0) {
        w->started = true;
        rc = pthread_create(&w->sth, NULL, sync_main, w);
        w->sstarted = rc == 0;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        goto fail;
    *out = w;
    return 0;
fail:
    lg_line("cannot start the writer thread");
    wrt_free(w);
    return TK_EIO;
}

void wrt_queue_new(wrt *w, wrt_queue **out)
{
    (void)w;
    wrt_queue *q = xcalloc(1, sizeof *q);
    atomic_init(&q->cancelled, false);
    *out = q;
}

void wrt_queue_free(wrt_queue *q)
{
    free(q);
}

int wrt_submit(wrt *w, wrt_queue *q, wrt_job *j)
{
    if (w->o.max_backlog && w->backlog + j->bytes > w->o.max_backlog)
        return TK_EBUSY;
    w->backlog += j->bytes;
    j->next = NULL;
    j->q = q;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    if (!q->listed)
        list_append(w, q);
    if (w->in_flight < WRT_IN_FLIGHT)
        event_active(w->kick, 0, 0); /* after this iteration: batch what it queued */
    return 0;
}

size_t wrt_cancel(wrt *w, wrt_queue *q)
{
    size_t n = 0;
    atomic_store_explicit(&q->cancelled, true, memory_order_relaxed);
    for (wrt_job *j = q->head; j; j = j->next) {
        w->backlog -= j->bytes;
        n++;
    }
    q->head = q->tail = NULL;
    if (q->listed)
        list_remove(w, q);
    return n;
}

bool wrt_idle(const wrt *w)
{
    return w->in_flight == 0 && !w->lhead;
}

size_t wrt_memory_bound(const wrt_opts *o, size_t reply_max)
{
    size_t replies = o->batch_replies > reply_max ? o->batch_replies : reply_max;
    /* Each batch in flight holds its replies; the reply being built may
     * have up to twice its size allocated before it is trimmed (doubling
     * growth), and the batch arrays are touched as batches fill them. */
    return WRT_IN_FLIGHT * replies + 2 * reply_max
           + WRT_MAX_BATCH * (sizeof(eng_req) + sizeof(eng_res) + sizeof(wrt_job *));
}

void wrt_free(wrt *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_broadcast(&w->cv);
    pthread_cond_broadcast(&w->scv);
    pthread_mutex_unlock(&w->mu);
    if (w->started)
        pthread_join(w->th, NULL); /* first: it may hand a last batch to the sync thread */
    if (w->sstarted)
        pthread_join(w->sth, NULL);
    if (w->kick)
        event_free(w->kick);
    if (w->freed)
        event_free(w->freed);
    if (w->wake)
        event_free(w->wake);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    pthread_cond_destroy(&w->scv);
    free(w->reqs);
    free(w->res);
    free(w->writes);
    free(w->cand);
    free(w);
}
