/*
 * follower.c - a replica: the stream applied here, and the lease; see
 * follower.h.
 *
 * Three hands: the follower thread reads the stream into `pend` (bounded:
 * it waits for room), the loop hands what is pending to the writer as one
 * job (one at a time, so bursts group themselves while a job runs), and
 * the lease thread asks the primary for leases and decides, alone, whether
 * verification may answer "valid".
 */
#include "net/follower.h"

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/nap.h"
#include "core/xmalloc.h"
#include "net/log.h"
#include "net/objstore.h"
#include "store/recbuf.h"

#define FOL_PEND_MAX (16u << 20)  /* bytes of records read and not yet handed over */
#define FOL_JOB_MAX 4096          /* records per job */
#define FOL_WAIT_MS 100           /* the follower's longest wait for a message */
#define FOL_RETRY_MS 500

struct fol {
    struct event_base *base;
    eng *e;
    wrt *w;
    char *stream, *name;
    char log_subject[REPL_SUBJECT_MAX], lease_subject[REPL_SUBJECT_MAX];
    uint64_t lease_ns;
    bool fail_open;
    natsConnection *nc;
    jsCtx *js;
    natsInbox *inbox;
    natsSubscription *replies; /* the primary's answers to lease requests */
    pthread_t th, lth;
    bool started, lstarted;
    pthread_mutex_t mu;
    pthread_cond_t room;   /* the follower waits for room in pend */
    pthread_cond_t lcv;    /* the lease thread waits here */
    bool stop;
    recbuf pend;           /* mu: read, not yet handed over */
    /* The job with the writer (loop thread; the writer between submit and
     * done). */
    wrt_queue *q;
    wrt_job job;
    bool in_flight;
    recbuf jbuf;           /* the job's records (eng_follow's recs point into it) */
    eng_rec *recs;
    size_t nrecs, reccap;
    int job_rc;
    uint64_t job_last;
    tk_why job_why;
    struct event *kick;    /* something pending: hand it over */
    struct event *retry;   /* the log had no room: try the same job again */
    /* The lease (mu). */
    uint64_t applied;      /* the last seq applied (the view has it) */
    uint64_t primary;      /* the primary's durable seq, last heard */
    uint64_t need;         /* "valid" again once applied reaches it */
    uint64_t lease_until;  /* monotonic ns; 0: none */
    uint64_t heard_ns;     /* the primary's last answer */
    uint64_t asked_ns;     /* a request out since (0: none) */
    bool progress;         /* applied moved: tell the primary now */
    bool available;        /* what eng_set_available was last told */
    char stopped[300];     /* applying stopped for good: why */
};

static void say_stopped(fol *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say_stopped(fol *f, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&f->mu);
    if (!f->stopped[0]) {
        va_start(ap, fmt);
        vsnprintf(f->stopped, sizeof f->stopped, fmt, ap);
        va_end(ap);
        lg_line("replica: stopped applying the primary's log: %s", f->stopped);
    }
    pthread_cond_broadcast(&f->lcv);
    pthread_cond_broadcast(&f->room);
    pthread_mutex_unlock(&f->mu);
}

/* Waits ms at most on cv, or until told. mu held. */
static void nap(fol *f, pthread_cond_t *cv, uint64_t ns)
{
    (void)tk_nap(cv, &f->mu, ns);
}

/* ---- the follower thread: the stream into pend --------------------------- */

/* An ordered consumer of the log's subject from seq `from`. */
static natsSubscription *subscribe(fol *f, uint64_t from)
{
    natsSubscription *sub = NULL;
    jsSubOptions so;
    jsErrCode jerr = 0;
    jsSubOptions_Init(&so);
    so.Stream = f->stream;
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = from;
    /* Its server gone (a NATS node killed), the consumer is noticed missing
     * after two heartbeats and made again elsewhere: 1 s, not libnats's 5. */
    so.Config.Heartbeat = 1000000000LL;
    if (js_SubscribeSync(&sub, f->js, f->log_subject, NULL, &so, &jerr) != NATS_OK)
        return NULL;
    return sub;
}

/* Keeps one message's record in pend (waiting for room). False once
 * stopping. */
static bool keep(fol *f, uint64_t seq, const uint8_t *hash, const void *data, size_t len)
{
    pthread_mutex_lock(&f->mu);
    while (!f->stop && rb_bytes(&f->pend) > 0 && rb_bytes(&f->pend) + len > FOL_PEND_MAX)
        pthread_cond_wait(&f->room, &f->mu);
    if (f->stop) {
        pthread_mutex_unlock(&f->mu);
        return false;
    }
    rb_put(&f->pend, seq, hash, data, len);
    pthread_mutex_unlock(&f->mu);
    return true;
}

static bool stopping(fol *f)
{
    pthread_mutex_lock(&f->mu);
    bool s = f->stop || f->stopped[0];
    pthread_mutex_unlock(&f->mu);
    return s;
}

static void *follow_main(void *arg)
{
    fol *f = arg;
    natsSubscription *sub = NULL;
    uint64_t want = eng_last_seq(f->e) + 1;
    while (!stopping(f)) {
        if (natsConnection_Status(f->nc) != NATS_CONN_STATUS_CONNECTED) {
            nats_Sleep(FOL_WAIT_MS);
            continue;
        }
        if (!sub && !(sub = subscribe(f, want))) {
            nats_Sleep(FOL_RETRY_MS); /* no stream yet: the primary makes it */
            continue;
        }
        natsMsg *m = NULL;
        natsStatus s = natsSubscription_NextMsg(&m, sub, FOL_WAIT_MS);
        if (s == NATS_TIMEOUT)
            continue;
        if (s != NATS_OK) {
            natsSubscription_Destroy(sub); /* read again from where it stands */
            sub = NULL;
            continue;
        }
        uint64_t seq;
        uint8_t hash[TK_HASH_LEN];
        if (repl_record_of(m, &seq, hash) != 0) {
            say_stopped(f, "stream %s's message %llu is not a record of a tokend log (no "
                        "Tokend-Seq or Tokend-Hash header)", f->stream,
                        (unsigned long long)natsMsg_GetSequence(m));
        } else if (seq >= want) {
            if (keep(f, seq, hash, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m))) {
                want = seq + 1;
                event_active(f->kick, 0, 0);
            }
        }
        natsMsg_Destroy(m);
    }
    if (sub) {
        natsSubscription_Unsubscribe(sub);
        natsSubscription_Destroy(sub);
    }
    return NULL;
}

/* ---- the loop: pend to the writer, one job at a time --------------------- */

static void job_done(wrt_job *j);

static void job_read(eng *e, wrt_job *j)
{
    fol *f = (fol *)((char *)j - offsetof(fol, job));
    uint64_t batch;
    f->job_why.msg[0] = 0;
    f->job_rc = eng_follow(e, f->recs, f->nrecs, &batch, &f->job_last, &f->job_why);
}

static void submit(fol *f)
{
    memset(&f->job, 0, sizeof f->job);
    f->job.read = job_read;
    f->job.done = job_done;
    f->job.bytes = f->jbuf.n; /* every record of it, read into recs already */
    if (wrt_submit(f->w, f->q, &f->job) != 0) {
        struct timeval tv = {0, 10000};
        evtimer_add(f->retry, &tv); /* the writer's backlog is full: soon again */
        return;
    }
    f->in_flight = true;
}

/* Takes what is pending into the job's buffers. False when nothing is. */
static bool take(fol *f)
{
    pthread_mutex_lock(&f->mu);
    if (rb_bytes(&f->pend) == 0) {
        pthread_mutex_unlock(&f->mu);
        return false;
    }
    rb_swap(&f->jbuf, &f->pend);
    rb_clear(&f->pend);
    pthread_cond_signal(&f->room);
    pthread_mutex_unlock(&f->mu);
    if (f->jbuf.count > f->reccap) {
        f->reccap = f->jbuf.count;
        f->recs = xrealloc(f->recs, f->reccap * sizeof *f->recs);
    }
    for (f->nrecs = 0; rb_peek(&f->jbuf, &f->recs[f->nrecs]); rb_pop(&f->jbuf))
        f->nrecs++;
    return true;
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    fol *f = arg;
    (void)fd;
    (void)what;
    if (f->in_flight || stopping(f))
        return;
    if (f->nrecs == 0 && !take(f))
        return;
    submit(f);
}

static void job_done(wrt_job *j)
{
    fol *f = (fol *)((char *)j - offsetof(fol, job));
    const char *why;
    f->in_flight = false;
    if (f->job_rc == TK_ENOSPC) {
        lg_line("replica: %s; trying again in 1 s", f->job_why.msg);
        struct timeval tv = {1, 0};
        evtimer_add(f->retry, &tv); /* the same records again */
        return;
    }
    f->nrecs = 0;
    if (f->job_rc != 0) {
        say_stopped(f, "%s", f->job_why.msg);
        return;
    }
    if (eng_fenced(f->e, &why) && eng_last_seq(f->e) < f->job_last) {
        say_stopped(f, "this replica's log failed: %s", why);
        return;
    }
    pthread_mutex_lock(&f->mu);
    if (f->job_last > f->applied) {
        f->applied = f->job_last;
        f->progress = true;
        pthread_cond_signal(&f->lcv);
    }
    pthread_mutex_unlock(&f->mu);
    kick_cb(-1, 0, f);
}

/* ---- the lease ---------------------------------------------------------- */

static void reply_cb(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
    fol *f = arg;
    repl_lease_rep r;
    (void)nc;
    (void)sub;
    if (repl_lease_rep_get(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &r) != 0) {
        natsMsg_Destroy(m);
        return;
    }
    natsMsg_Destroy(m);
    uint64_t lease = (uint64_t)r.lease_ms * 1000000ull;
    if (lease == 0 || lease > f->lease_ns)
        lease = f->lease_ns;
    char msg[ENG_MSG_MAX + REPL_ADDR_MAX]; /* eng_set_readonly keeps what fits */
    snprintf(msg, sizeof msg, "a read-only replica of stream %s: send writes to the primary "
             "(%s)", f->stream, r.addr[0] ? r.addr : "its address unknown");
    eng_set_readonly(f->e, msg);
    pthread_mutex_lock(&f->mu);
    uint64_t now = met_now_ns();
    f->heard_ns = now;
    f->asked_ns = 0;
    if (r.durable > f->primary)
        f->primary = r.durable;
    if (r.granted) {
        if (f->lease_until <= now) /* a lease begins: first what was answered without it */
            f->need = f->need > r.durable ? f->need : r.durable;
        if (r.catch_up > f->need)
            f->need = r.catch_up;
        /* A margin for the two clocks' rates: expire first. */
        uint64_t until = r.sent_ns + lease - lease / 10;
        if (until > f->lease_until)
            f->lease_until = until;
    }
    pthread_cond_signal(&f->lcv);
    pthread_mutex_unlock(&f->mu);
}

/* One request: a renewal while the lease runs; without one, a join once
 * caught up with what the primary last said, a probe before (a replica far
 * behind would hold every revocation of the barrier while it catches up).
 * mu held. */
static void ask(fol *f, uint64_t now)
{
    repl_lease_req q = {.applied = f->applied, .sent_ns = now};
    q.join = f->lease_until > now || (f->applied >= f->primary && f->heard_ns != 0);
    snprintf(q.name, sizeof q.name, "%s", f->name);
    uint8_t buf[REPL_LEASE_MAX];
    size_t n = repl_lease_req_put(&q, buf);
    f->asked_ns = now;
    f->progress = false;
    pthread_mutex_unlock(&f->mu);
    (void)natsConnection_PublishRequest(f->nc, f->lease_subject, (const char *)f->inbox, buf,
                                        (int)n);
    pthread_mutex_lock(&f->mu);
}

static void *lease_main(void *arg)
{
    fol *f = arg;
    uint64_t beat = f->lease_ns / 4, next = 0;
    pthread_mutex_lock(&f->mu);
    while (!f->stop) {
        uint64_t now = met_now_ns();
        bool ok = f->fail_open
                  || (!f->stopped[0] && now < f->lease_until && f->applied >= f->need);
        if (ok != f->available) {
            f->available = ok;
            eng_set_available(f->e, ok);
            lg_line(ok ? "replica: answering (lease held, caught up to %llu)"
                       : "replica: answering \"unavailable\" (no lease from the primary, or "
                         "behind it: applied %llu)",
                    (unsigned long long)f->applied);
        }
        bool outstanding = f->asked_ns && now - f->asked_ns < beat / 2;
        if (!f->stopped[0] && (now >= next || (f->progress && !outstanding))) {
            ask(f, now);
            next = now + beat;
            continue;
        }
        uint64_t wake = next;
        if (f->lease_until > now && f->lease_until < wake)
            wake = f->lease_until;
        nap(f, &f->lcv, wake > now ? wake - now : 1000000);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

/* ---- a new replica's first state ------------------------------------------ */

int fol_bootstrap(const repl_opts *o, const char *dir, int wait_ms, tk_why *why)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    char bucket[REPL_SUBJECT_MAX];
    int rc;
    if ((rc = eng_bootstrap_target(dir, why)))
        return rc;
    snprintf(bucket, sizeof bucket, "%s-snapshots", o->stream ? o->stream : REPL_STREAM_DEFAULT);
    if ((rc = repl_connect(o->follow, "tokend replica bootstrap", &nc, why)))
        return rc;
    for (int t = 0; t < wait_ms && natsConnection_Status(nc) != NATS_CONN_STATUS_CONNECTED;
         t += 50)
        nats_Sleep(50);
    char *file = xasprintf("%s.snapshot", dir);
    if (natsConnection_Status(nc) != NATS_CONN_STATUS_CONNECTED) {
        rc = tk_say(why, TK_EIO, "NATS at %s did not answer within %d ms", o->follow, wait_ms);
    } else if (natsConnection_JetStream(&js, nc, NULL) != NATS_OK) {
        rc = tk_say(why, TK_EIO, "NATS at %s: no JetStream context", o->follow);
    } else if ((rc = obj_get_file(js, bucket, "latest", file, why)) == 0) {
        rc = eng_bootstrap(dir, file, why);
    }
    unlink(file);
    free(file);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return rc;
}

/* ---- start, stop, state ------------------------------------------------- */

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    kick_cb(fd, what, arg);
}

int fol_start(struct event_base *base, eng *e, wrt *w, const repl_opts *o, const char *name,
              fol **out, tk_why *why)
{
    fol *f = xcalloc(1, sizeof *f);
    int rc;
    f->base = base;
    f->e = e;
    f->w = w;
    f->stream = xstrdup(o->stream ? o->stream : REPL_STREAM_DEFAULT);
    f->name = xstrdup(o->name ? o->name : name);
    f->lease_ns = (uint64_t)((o->lease_s > 0 ? o->lease_s : REPL_LEASE_DEFAULT_S) * 1e9);
    f->fail_open = o->fail_open;
    f->applied = eng_last_seq(e);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->room, NULL);
    pthread_cond_init(&f->lcv, NULL);
    repl_log_subject(f->stream, f->log_subject);
    repl_lease_subject(f->stream, f->lease_subject);
    wrt_queue_new(w, &f->q);
    f->kick = event_new(base, -1, 0, kick_cb, f);
    f->retry = evtimer_new(base, retry_cb, f);
    char msg[ENG_MSG_MAX];
    snprintf(msg, sizeof msg, "a read-only replica of stream %s: send writes to the primary",
             f->stream);
    eng_set_readonly(e, msg);
    eng_set_lazy_sync(e, true); /* the stream holds the records: no fdatasync before they show */
    f->available = f->fail_open;
    eng_set_available(e, f->available);
    if ((rc = repl_connect(o->follow, "tokend replica", &f->nc, why)))
        goto fail;
    natsStatus s = natsConnection_JetStream(&f->js, f->nc, NULL);
    if (s == NATS_OK)
        s = natsInbox_Create(&f->inbox);
    if (s == NATS_OK)
        s = natsConnection_Subscribe(&f->replies, f->nc, (const char *)f->inbox, reply_cb, f);
    if (s != NATS_OK) {
        rc = tk_say(why, TK_EIO, "NATS at %s: %s", o->follow, natsStatus_GetText(s));
        goto fail;
    }
    if (pthread_create(&f->th, NULL, follow_main, f) != 0) {
        rc = tk_say(why, TK_EIO, "cannot start the follower thread");
        goto fail;
    }
    f->started = true;
    if (pthread_create(&f->lth, NULL, lease_main, f) != 0) {
        rc = tk_say(why, TK_EIO, "cannot start the lease thread");
        goto fail;
    }
    f->lstarted = true;
    *out = f;
    return 0;
fail:
    fol_free(f);
    *out = NULL;
    return rc;
}

void fol_free(fol *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->mu);
    f->stop = true;
    pthread_cond_broadcast(&f->room);
    pthread_cond_broadcast(&f->lcv);
    pthread_mutex_unlock(&f->mu);
    if (f->started)
        pthread_join(f->th, NULL);
    if (f->lstarted)
        pthread_join(f->lth, NULL);
    if (f->replies) {
        natsSubscription_Unsubscribe(f->replies);
        natsSubscription_Destroy(f->replies);
    }
    jsCtx_Destroy(f->js);
    natsConnection_Destroy(f->nc);
    natsInbox_Destroy(f->inbox);
    if (f->kick)
        event_free(f->kick);
    if (f->retry)
        event_free(f->retry);
    wrt_queue_free(f->q);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->room);
    pthread_cond_destroy(&f->lcv);
    rb_free(&f->pend);
    rb_free(&f->jbuf);
    free(f->recs);
    free(f->stream);
    free(f->name);
    free(f);
}

void fol_get_state(fol *f, met_repl *out)
{
    memset(out, 0, sizeof *out);
    out->role = "replica";
    out->connected = natsConnection_Status(f->nc) == NATS_CONN_STATUS_CONNECTED;
    pthread_mutex_lock(&f->mu);
    out->available = f->available;
    out->applied = f->applied;
    out->primary = f->primary;
    out->since_primary_s =
        f->heard_ns ? (double)(met_now_ns() - f->heard_ns) / 1e9 : -1.0;
    snprintf(out->problem, sizeof out->problem, "%s", f->stopped);
    pthread_mutex_unlock(&f->mu);
}
