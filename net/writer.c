/*
 * writer.c - the writer thread: one batch in flight, group commit, listings;
 * see writer.h.
 *
 * Hand-over is one mutex and one condition variable: the loop thread sets
 * `batch` and signals; the writer thread runs it, moves it to `finished`
 * and wakes the loop with event_active. The loop thread owns the queue and
 * never touches a batch while it is in flight; the writer thread never
 * touches the queue. So the only shared fields are the two batch pointers
 * and the stop flag, all under the mutex, and the mutex also orders the
 * writer's results (and the engine's pending view changes) before the
 * loop's eng_publish.
 */
#include "net/writer.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/err.h"
#include "core/xmalloc.h"
#include "net/log.h"

struct wrt {
    struct event_base *base;
    eng *e;
    size_t max_backlog;
    /* Loop thread only. */
    size_t backlog;     /* bytes of jobs queued or in flight */
    wrt_job *qhead, *qtail;
    bool in_flight;
    struct event *kick; /* hands over the next batch at the end of this iteration */
    struct event *wake; /* activated by the writer thread when a batch is done */
    /* Shared, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    wrt_job *batch;     /* handed to the writer */
    wrt_job *finished;  /* handed back */
    bool stop;
    /* Writer thread only. */
    pthread_t th;
    bool started;
    eng_req *reqs;      /* WRT_MAX_BATCH each: eng_commit takes arrays */
    eng_res *res;
    wrt_job **writes;
    lg_limit fenced_log;
};

/* ---- writer thread ------------------------------------------------------ */

static void run_batch(wrt *w, wrt_job *batch)
{
    size_t n = 0;
    for (wrt_job *j = batch; j; j = j->next) {
        if (j->req) {
            w->writes[n] = j;
            w->reqs[n] = *j->req;
            n++;
        } else if (n == 0) { /* a read queued before every write of the batch */
            j->read(w->e, j);
        }
    }
    if (n > 0) {
        const char *why;
        bool was_fenced = eng_fenced(w->e, NULL);
        int rc = eng_commit(w->e, w->reqs, w->res, n);
        bool fenced = eng_fenced(w->e, &why);
        if (rc == TK_EFENCED)
            lg_limited(&w->fenced_log, "refused %zu writes: %s", n, why);
        else if (rc)
            lg_line("storage failure: %zu writes refused, and every later write until restart "
                    "(verification goes on): %s", n, why);
        else if (fenced && !was_fenced) /* committed, then a later step failed */
            lg_line("storage failure: %zu writes committed (in the log), then %s", n, why);
        for (size_t i = 0; i < n; i++) {
            w->writes[i]->res = w->res[i];
            sodium_memzero(w->res[i].secret, sizeof w->res[i].secret);
        }
    }
    bool after = false; /* reads queued after the writes see them */
    for (wrt_job *j = batch; j; j = j->next) {
        if (j->req)
            after = true;
        else if (after)
            j->read(w->e, j);
    }
}

static void *writer_main(void *arg)
{
    wrt *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->batch && !w->stop)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->batch)
            break; /* stop, and nothing left to run */
        wrt_job *b = w->batch;
        pthread_mutex_unlock(&w->mu);
        run_batch(w, b);
        pthread_mutex_lock(&w->mu);
        w->batch = NULL;
        w->finished = b;
        pthread_mutex_unlock(&w->mu);
        event_active(w->wake, 0, 0);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- loop thread -------------------------------------------------------- */

/* Takes the next batch off the queue: reads, writes (at most
 * WRT_MAX_BATCH), reads; never a write after a read that follows a write. */
static wrt_job *take_batch(wrt *w)
{
    wrt_job *head = NULL, **tail = &head;
    size_t writes = 0, total = 0;
    bool trailing = false;
    while (w->qhead && total < WRT_MAX_BATCH) {
        wrt_job *j = w->qhead;
        if (j->req) {
            if (trailing || writes == WRT_MAX_BATCH)
                break;
            writes++;
        } else if (writes) {
            trailing = true;
        }
        w->qhead = j->next;
        j->next = NULL;
        *tail = j;
        tail = &j->next;
        total++;
    }
    if (!w->qhead)
        w->qtail = NULL;
    return head;
}

static void hand_over(wrt *w)
{
    if (w->in_flight || !w->qhead)
        return;
    wrt_job *b = take_batch(w);
    w->in_flight = true;
    pthread_mutex_lock(&w->mu);
    w->batch = b;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

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
    w->finished = NULL;
    pthread_mutex_unlock(&w->mu);
    if (!b)
        return;
    eng_publish(w->e); /* visible to verification before anyone is told (rule 5) */
    w->in_flight = false;
    while (b) {
        wrt_job *next = b->next;
        w->backlog -= b->bytes;
        b->done(b); /* may free b */
        b = next;
    }
    hand_over(w);
}

int wrt_start(struct event_base *base, eng *e, size_t max_backlog, wrt **out)
{
    wrt *w = xcalloc(1, sizeof *w);
    sigset_t all, old;
    w->base = base;
    w->e = e;
    w->max_backlog = max_backlog;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->reqs = xcalloc(WRT_MAX_BATCH, sizeof *w->reqs);
    w->res = xcalloc(WRT_MAX_BATCH, sizeof *w->res);
    w->writes = xcalloc(WRT_MAX_BATCH, sizeof *w->writes);
    w->kick = event_new(base, -1, 0, kick_cb, w);
    w->wake = event_new(base, -1, 0, wake_cb, w);
    if (!w->kick || !w->wake)
        goto fail;
    /* Signals are for the main thread: the writer blocks them all. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&w->th, NULL, writer_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        goto fail;
    w->started = true;
    *out = w;
    return 0;
fail:
    lg_line("cannot start the writer thread");
    wrt_free(w);
    return TK_EIO;
}

int wrt_submit(wrt *w, wrt_job *j)
{
    if (w->max_backlog && w->backlog + j->bytes > w->max_backlog)
        return TK_EBUSY;
    w->backlog += j->bytes;
    j->next = NULL;
    if (w->qtail)
        w->qtail->next = j;
    else
        w->qhead = j;
    w->qtail = j;
    if (!w->in_flight)
        event_active(w->kick, 0, 0); /* after this iteration: batch what it queued */
    return 0;
}

bool wrt_idle(const wrt *w)
{
    return !w->in_flight && !w->qhead;
}

void wrt_free(wrt *w)
{
    if (!w)
        return;
    if (w->started) {
        pthread_mutex_lock(&w->mu);
        w->stop = true;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->th, NULL);
    }
    if (w->kick)
        event_free(w->kick);
    if (w->wake)
        event_free(w->wake);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->reqs);
    free(w->res);
    free(w->writes);
    free(w);
}
