/*
 * publisher.c - the primary's log to JetStream, and the replicas' leases;
 * see publisher.h.
 *
 * The thread's one loop: know where the stream stands (its last message's
 * Tokend-Seq, checked against this log's chain hash at that seq: a stream
 * that holds another history is never written to), then publish a window
 * of records asynchronously and wait for their acknowledgements. Each
 * record carries its seq as the message id (JetStream drops a duplicate)
 * and the seq before it as the stream's expected last sequence (JetStream
 * refuses a record that would leave a hole): so a window that half failed
 * is simply asked about again.
 */
#include "net/publisher.h"

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "core/nap.h"
#include "core/xmalloc.h"
#include "net/barrier.h"
#include "net/objstore.h"
#include "net/log.h"
#include "store/elog.h"
#include "store/recbuf.h"

#define PUB_WINDOW 512                /* records in flight to JetStream */
#define PUB_QUEUE_MAX (64u << 20)     /* bytes of records queued from the tap */
#define PUB_ACK_WAIT_MS 5000
#define PUB_RETRY_MS 250

/* One record's payload, copied for its message. */
typedef struct pbuf {
    uint8_t *b;
    size_t n, cap;
} pbuf;

static void pbuf_set(pbuf *x, const void *p, size_t n)
{
    if (n > x->cap) {
        x->cap = n;
        x->b = xrealloc(x->b, n ? n : 1);
    }
    memcpy(x->b, p, n);
    x->n = n;
}

struct pub {
    struct event_base *base;
    eng *e;
    wrt *w;
    char *stream, *addr;
    char log_subject[REPL_SUBJECT_MAX], lease_subject[REPL_SUBJECT_MAX];
    uint32_t lease_ms, replicas;
    bool barrier;
    natsConnection *nc;
    jsCtx *js;
    natsSubscription *leases;
    bar *b;
    struct event *regate; /* activated by NATS's thread when a waiter may pass */
    struct event *recheck; /* a lease's or the start's end, while answers wait */
    pthread_t th;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    uint64_t told;      /* mu: counts the tap's records, so that one that came while the
                           thread was busy is never slept over */
    recbuf q;           /* mu: the tap's records, oldest first (emptied when full: the
                           thread reads the log instead) */
    /* The thread's own. */
    uint64_t next;      /* the next seq to publish; 0: ask the stream */
    elog_iter *it;      /* reading the log, while catching up */
    uint64_t it_next;   /* the seq it returns next */
    /* Shared with the ack handler (mu). */
    uint64_t acked;     /* the highest seq acknowledged in this window */
    bool failed;        /* a record of this window was refused */
    char fail_msg[200];
    /* Read by pub_get_state (mu). */
    uint64_t published;
    uint64_t held;
    char problem[300];
    bool waiting;       /* an answer waits for the barrier (atomic) */
    /* Snapshots: the loop's timer takes one on the writer thread (a read
     * job of its own queue), the snapshot thread puts it in the bucket. */
    char *snap_path;
    char bucket[REPL_SUBJECT_MAX];
    struct event *snap_timer;
    double snap_s;
    wrt_queue *snap_q;
    wrt_job snap_job;
    bool snap_busy;     /* loop: a snapshot taken or being put */
    int snap_rc;        /* the job's eng_snapshot */
    uint64_t snap_seq;  /* its seq */
    tk_why snap_why;
    pthread_t sth;
    bool sstarted;
    bool snap_ready;    /* mu: the file waits for the snapshot thread */
    uint64_t snap_put;  /* mu: the seq of the last one put */
};

/* ---- the tap: durable records, from the loop ------------------------------ */

static void tap_cb(void *arg, const eng_rec *r)
{
    pub *p = arg;
    pthread_mutex_lock(&p->mu);
    if (rb_bytes(&p->q) + r->len > PUB_QUEUE_MAX)
        rb_clear(&p->q); /* the log has them: the thread reads it instead */
    else
        rb_put(&p->q, r->seq, r->hash, r->payload, r->len);
    p->told++;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* ---- the barrier: answers that wait, on the loop ------------------------- */

static bool gate_cb(void *arg, uint64_t seq)
{
    pub *p = arg;
    uint64_t now = met_now_ns(), at;
    if (bar_passed(p->b, seq, now, &at)) {
        __atomic_store_n(&p->waiting, false, __ATOMIC_RELAXED);
        return true;
    }
    if (!__atomic_exchange_n(&p->waiting, true, __ATOMIC_RELAXED)) {
        pthread_mutex_lock(&p->mu);
        p->held++;
        pthread_mutex_unlock(&p->mu);
    }
    uint64_t in = at > now ? at - now : 0;
    if (in > 50000000ull)
        in = 50000000ull; /* a look at least every 50 ms */
    struct timeval tv = {.tv_sec = 0, .tv_usec = (suseconds_t)(in / 1000 + 1)};
    evtimer_add(p->recheck, &tv);
    return false;
}

static void regate_cb(evutil_socket_t fd, short what, void *arg)
{
    pub *p = arg;
    (void)fd;
    (void)what;
    wrt_regate(p->w);
}

/* ---- leases, on NATS's thread -------------------------------------------- */

static void lease_cb(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
    pub *p = arg;
    repl_lease_req rq;
    repl_lease_rep rp = {0};
    uint8_t buf[REPL_LEASE_MAX];
    (void)sub;
    const char *reply = natsMsg_GetReply(m);
    if (!reply || repl_lease_req_get(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &rq)) {
        natsMsg_Destroy(m);
        return; /* not a replica of this version: no lease */
    }
    rp.sent_ns = rq.sent_ns;
    rp.durable = eng_last_seq(p->e);
    rp.lease_ms = p->lease_ms;
    rp.barrier = p->barrier;
    snprintf(rp.addr, sizeof rp.addr, "%s", p->addr);
    rp.granted = rq.join;
    if (rq.join && p->barrier
        && bar_heard(p->b, rq.name, rq.applied, rp.durable, met_now_ns(), &rp.catch_up) != 0)
        rp.granted = false; /* the book is full: no lease, the replica stays unavailable */
    (void)natsConnection_Publish(nc, reply, buf, (int)repl_lease_rep_put(&rp, buf));
    natsMsg_Destroy(m);
    if (__atomic_load_n(&p->waiting, __ATOMIC_RELAXED))
        event_active(p->regate, 0, 0);
}

/* ---- the publisher thread ------------------------------------------------ */

static void say_problem(pub *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say_problem(pub *p, const char *fmt, ...)
{
    char msg[sizeof p->problem];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&p->mu);
    bool same = strcmp(p->problem, msg) == 0;
    memcpy(p->problem, msg, sizeof msg);
    pthread_mutex_unlock(&p->mu);
    if (!same)
        lg_line("publish: %s", msg);
}

/* Waits ms at most, or until told (a record, the stop). mu held. */
static void nap(pub *p, int ms)
{
    (void)tk_nap(&p->cv, &p->mu, (uint64_t)ms * 1000000u);
}

static void ack_cb(jsCtx *js, natsMsg *m, jsPubAck *pa, jsPubAckErr *pae, void *arg)
{
    pub *p = arg;
    (void)js;
    uint64_t seq = 0;
    uint8_t hash[TK_HASH_LEN];
    pthread_mutex_lock(&p->mu);
    if (pae) {
        if (!p->failed)
            snprintf(p->fail_msg, sizeof p->fail_msg, "%s",
                     pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err));
        p->failed = true;
    } else if (m && repl_record_of(m, &seq, hash) == 0 && seq > p->acked) {
        p->acked = seq;
    }
    pthread_mutex_unlock(&p->mu);
    (void)pa;
    natsMsg_Destroy(m);
}

/* The stream made when missing (file storage, p->replicas copies). */
static int ensure_stream(pub *p)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, p->js, p->stream, NULL, &jerr);
    if (s == NATS_OK) {
        jsStreamInfo_Destroy(si);
        return 0;
    }
    if (jerr != JSStreamNotFoundErr) {
        say_problem(p, "stream %s: %s", p->stream, natsStatus_GetText(s));
        return TK_EIO;
    }
    jsStreamConfig c;
    jsStreamConfig_Init(&c);
    const char *subjects[] = {p->log_subject};
    c.Name = p->stream;
    c.Subjects = subjects;
    c.SubjectsLen = 1;
    c.Storage = js_FileStorage;
    c.Replicas = (int64_t)p->replicas;
    s = js_AddStream(&si, p->js, &c, NULL, &jerr);
    if (s != NATS_OK) {
        say_problem(p, "cannot make stream %s: %s (%d)", p->stream, natsStatus_GetText(s),
                    (int)jerr);
        return TK_EIO;
    }
    jsStreamInfo_Destroy(si);
    lg_line("publish: made stream %s (subject %s, %u copies)", p->stream, p->log_subject,
            p->replicas);
    return 0;
}

/* Where the stream stands: p->next after its last record, once that
 * record is this log's (same seq, same chain hash). */
static int find_next(pub *p)
{
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    uint8_t theirs[TK_HASH_LEN], ours[TK_HASH_LEN];
    uint64_t last = 0;
    tk_why why = {.msg = ""};
    if (ensure_stream(p))
        return TK_EIO;
    natsStatus s = js_GetLastMsg(&m, p->js, p->stream, p->log_subject, NULL, &jerr);
    if (s != NATS_OK && jerr != JSNoMessageFoundErr) {
        say_problem(p, "stream %s: %s", p->stream, natsStatus_GetText(s));
        return TK_EIO;
    }
    if (s == NATS_OK) {
        uint64_t stream_seq = natsMsg_GetSequence(m);
        int rc = repl_record_of(m, &last, theirs);
        natsMsg_Destroy(m);
        if (rc || stream_seq != last) {
            say_problem(p, "stream %s holds messages that are not this log's records (its "
                        "sequence %llu, record %llu): give tokend a stream of its own",
                        p->stream, (unsigned long long)stream_seq, (unsigned long long)last);
            return TK_ECORRUPT;
        }
        uint64_t durable = eng_last_seq(p->e);
        if (last > durable) {
            say_problem(p, "stream %s holds event %llu, but this log ends at %llu: it follows "
                        "another history (a log restored from a backup?); nothing published",
                        p->stream, (unsigned long long)last, (unsigned long long)durable);
            return TK_ECORRUPT;
        }
        if (eng_log_hash(p->e, last, ours, &why) != 0
            || sodium_memcmp(ours, theirs, TK_HASH_LEN) != 0) {
            say_problem(p, "stream %s's event %llu differs from this log's (%s): it follows "
                        "another history; nothing published", p->stream,
                        (unsigned long long)last, why.msg[0] ? why.msg : "chain hashes differ");
            return TK_ECORRUPT;
        }
    }
    p->next = last + 1;
    say_problem(p, "%s", "");
    return 0;
}

/* The next record to publish: from the tap's queue when it holds it,
 * else from the log. 1 (copied into *buf), 0 (none yet), or < 0. */
static int next_record(pub *p, uint64_t durable, pbuf *buf, uint64_t *seq, uint8_t *hash)
{
    eng_rec r;
    pthread_mutex_lock(&p->mu);
    for (; rb_peek(&p->q, &r) && r.seq <= p->next; rb_pop(&p->q)) {
        if (r.seq < p->next)
            continue; /* published already */
        *seq = r.seq;
        memcpy(hash, r.hash, TK_HASH_LEN);
        pbuf_set(buf, r.payload, r.len);
        rb_pop(&p->q);
        pthread_mutex_unlock(&p->mu);
        return 1;
    }
    pthread_mutex_unlock(&p->mu);
    if (p->next > durable)
        return 0;
    /* The log has it: an iterator, kept while it is in step. */
    tk_why why = {.msg = ""};
    if (p->it && p->it_next != p->next) {
        elog_iter_free(p->it);
        p->it = NULL;
    }
    if (!p->it) {
        if (eng_log_iter(p->e, p->next, &p->it, &why) != 0) {
            say_problem(p, "cannot read the log: %s", why.msg);
            return TK_EIO;
        }
        p->it_next = p->next;
    }
    const void *pl;
    size_t len;
    int more = elog_iter_next(p->it, seq, &pl, &len, &why);
    if (more != 1 || *seq != p->next) {
        elog_iter_free(p->it);
        p->it = NULL;
        if (more < 0)
            say_problem(p, "cannot read the log: %s", why.msg);
        return more < 0 ? more : 0; /* 0: the iterator's read of the file ended first */
    }
    memcpy(hash, elog_iter_hash(p->it), TK_HASH_LEN);
    pbuf_set(buf, pl, len);
    p->it_next = *seq + 1;
    return 1;
}

/* One window: up to PUB_WINDOW records sent, their acks waited for. */
static void publish_window(pub *p, uint64_t durable, pbuf *buf)
{
    size_t sent = 0;
    uint64_t seq, last = 0;
    uint8_t hash[TK_HASH_LEN];
    char id[24];
    pthread_mutex_lock(&p->mu);
    p->acked = 0;
    p->failed = false;
    pthread_mutex_unlock(&p->mu);
    while (sent < PUB_WINDOW) {
        int rc = next_record(p, durable, buf, &seq, hash);
        if (rc != 1)
            break;
        natsMsg *m = NULL;
        if (repl_record_msg(&m, p->log_subject, seq, hash, buf->b, buf->n)
            != NATS_OK)
            break;
        jsPubOptions po;
        jsPubOptions_Init(&po);
        snprintf(id, sizeof id, "%llu", (unsigned long long)seq);
        po.MsgId = id;
        po.ExpectLastSeq = seq - 1; /* 0 for the first: no expectation */
        po.MaxWait = PUB_ACK_WAIT_MS;
        if (js_PublishMsgAsync(p->js, &m, &po) != NATS_OK) {
            natsMsg_Destroy(m);
            pthread_mutex_lock(&p->mu);
            p->failed = true;
            snprintf(p->fail_msg, sizeof p->fail_msg, "not connected");
            pthread_mutex_unlock(&p->mu);
            break;
        }
        p->next = seq + 1;
        last = seq;
        sent++;
    }
    if (sent == 0)
        return;
    jsPubOptions co;
    jsPubOptions_Init(&co);
    co.MaxWait = PUB_ACK_WAIT_MS;
    natsStatus s = js_PublishAsyncComplete(p->js, &co);
    pthread_mutex_lock(&p->mu);
    bool ok = s == NATS_OK && !p->failed && p->acked == last;
    if (ok)
        p->published = last;
    char msg[sizeof p->fail_msg];
    snprintf(msg, sizeof msg, "%s", p->failed ? p->fail_msg : natsStatus_GetText(s));
    pthread_mutex_unlock(&p->mu);
    if (!ok) {
        /* Some may be stored: ask the stream where it stands. */
        natsMsgList pending = {0};
        if (js_PublishAsyncGetPendingList(&pending, p->js) == NATS_OK)
            natsMsgList_Destroy(&pending);
        say_problem(p, "publishing to %s: %s; asking the stream and going on", p->stream, msg);
        p->next = 0;
    }
}

static void *pub_main(void *arg)
{
    pub *p = arg;
    pbuf buf = {0};
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        uint64_t told = p->told;
        pthread_mutex_unlock(&p->mu);
        bool idle = false, caught_up = false;
        if (natsConnection_Status(p->nc) != NATS_CONN_STATUS_CONNECTED) {
            idle = true;
        } else if (p->next == 0) {
            idle = find_next(p) != 0;
        } else {
            uint64_t durable = eng_last_seq(p->e);
            if (p->next > durable)
                idle = caught_up = true;
            else
                publish_window(p, durable, &buf);
        }
        pthread_mutex_lock(&p->mu);
        if (idle && !p->stop && !(caught_up && p->told != told))
            nap(p, p->next == 0 ? PUB_RETRY_MS * 4 : PUB_RETRY_MS);
    }
    pthread_mutex_unlock(&p->mu);
    elog_iter_free(p->it);
    p->it = NULL;
    free(buf.b);
    return NULL;
}

/* ---- snapshots ------------------------------------------------------------ */

/* The writer thread: the state copied to the file (eng_snapshot). */
static void snap_take(eng *e, wrt_job *j)
{
    pub *p = (pub *)((char *)j - offsetof(pub, snap_job));
    uint8_t hash[TK_HASH_LEN];
    p->snap_why.msg[0] = 0;
    p->snap_rc = eng_snapshot(e, p->snap_path, &p->snap_seq, hash, &p->snap_why);
}

/* The loop, the copy done: the file to the snapshot thread. */
static void snap_taken(wrt_job *j)
{
    pub *p = (pub *)((char *)j - offsetof(pub, snap_job));
    if (p->snap_rc) {
        lg_line("snapshot: %s", p->snap_why.msg);
        p->snap_busy = false;
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->snap_ready = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void snap_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    pub *p = arg;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&p->mu);
    uint64_t put = p->snap_put;
    bool ready = p->snap_ready;
    pthread_mutex_unlock(&p->mu);
    if (p->snap_busy && !ready && put >= p->snap_seq)
        p->snap_busy = false; /* the last one is in the bucket */
    if (p->snap_busy || eng_last_seq(p->e) <= put)
        return; /* one at a time; none while no event came */
    memset(&p->snap_job, 0, sizeof p->snap_job);
    p->snap_job.read = snap_take;
    p->snap_job.done = snap_taken;
    if (wrt_submit(p->w, p->snap_q, &p->snap_job) == 0)
        p->snap_busy = true;
}

/* The snapshot thread: each file taken, put in the bucket. */
static void *snap_main(void *arg)
{
    pub *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        if (!p->snap_ready || !p->js
            || natsConnection_Status(p->nc) != NATS_CONN_STATUS_CONNECTED) {
            nap(p, 1000);
            continue;
        }
        uint64_t seq = p->snap_seq;
        pthread_mutex_unlock(&p->mu);
        tk_why why = {.msg = ""};
        uint64_t t0 = met_now_ns();
        int rc = obj_put_file(p->js, p->bucket, p->replicas, "latest", p->snap_path, &why);
        if (rc)
            lg_line("snapshot: event %llu not put in bucket %s: %s; trying again",
                    (unsigned long long)seq, p->bucket, why.msg);
        else
            lg_line("snapshot: event %llu put in bucket %s as \"latest\" (%.2f s)",
                    (unsigned long long)seq, p->bucket, (double)(met_now_ns() - t0) / 1e9);
        pthread_mutex_lock(&p->mu);
        if (rc == 0) {
            p->snap_ready = false;
            p->snap_put = seq;
        } else {
            nap(p, 1000);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- start, stop, state ------------------------------------------------- */

int pub_start(struct event_base *base, eng *e, wrt *w, const repl_opts *o, const char *addr,
              const char *snapshot_path, pub **out, tk_why *why)
{
    pub *p = xcalloc(1, sizeof *p);
    int rc;
    p->base = base;
    p->e = e;
    p->w = w;
    p->stream = xstrdup(o->stream ? o->stream : REPL_STREAM_DEFAULT);
    p->addr = xstrdup(addr);
    p->lease_ms = (uint32_t)((o->lease_s > 0 ? o->lease_s : REPL_LEASE_DEFAULT_S) * 1000.0);
    p->replicas = o->stream_replicas ? o->stream_replicas : 1;
    p->barrier = o->barrier;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    repl_log_subject(p->stream, p->log_subject);
    repl_lease_subject(p->stream, p->lease_subject);
    bar_new(p->lease_ms, met_now_ns(), &p->b);
    p->regate = event_new(base, -1, 0, regate_cb, p);
    p->recheck = evtimer_new(base, regate_cb, p);
    p->snap_path = xstrdup(snapshot_path);
    p->snap_s = o->snapshot_s;
    snprintf(p->bucket, sizeof p->bucket, "%s-snapshots", p->stream);
    wrt_queue_new(w, &p->snap_q);
    p->snap_timer = event_new(base, -1, EV_PERSIST, snap_timer_cb, p);
    if ((rc = repl_connect(o->publish, "tokend primary", &p->nc, why)))
        goto fail;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = PUB_WINDOW;
    jo.PublishAsync.AckHandler = ack_cb;
    jo.PublishAsync.AckHandlerClosure = p;
    natsStatus s = natsConnection_JetStream(&p->js, p->nc, &jo);
    if (s == NATS_OK)
        s = natsConnection_Subscribe(&p->leases, p->nc, p->lease_subject, lease_cb, p);
    if (s != NATS_OK) {
        rc = tk_say(why, TK_EIO, "NATS at %s: %s", o->publish, natsStatus_GetText(s));
        goto fail;
    }
    eng_set_tap(e, tap_cb, p);
    if (p->barrier)
        wrt_set_gate(w, gate_cb, p);
    if (pthread_create(&p->th, NULL, pub_main, p) != 0) {
        rc = tk_say(why, TK_EIO, "cannot start the publisher thread");
        goto fail;
    }
    p->started = true;
    if (p->snap_s > 0) {
        if (pthread_create(&p->sth, NULL, snap_main, p) != 0) {
            rc = tk_say(why, TK_EIO, "cannot start the snapshot thread");
            goto fail;
        }
        p->sstarted = true;
        struct timeval tv = {(time_t)p->snap_s,
                             (suseconds_t)((p->snap_s - (double)(time_t)p->snap_s) * 1e6)};
        evtimer_add(p->snap_timer, &tv);
    }
    *out = p;
    return 0;
fail:
    pub_free(p);
    *out = NULL;
    return rc;
}

void pub_free(pub *p)
{
    if (!p)
        return;
    if (p->started) {
        pthread_mutex_lock(&p->mu);
        p->stop = true;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->th, NULL);
    }
    if (p->sstarted)
        pthread_join(p->sth, NULL);
    if (p->snap_timer)
        event_free(p->snap_timer);
    wrt_queue_free(p->snap_q);
    free(p->snap_path);
    eng_set_tap(p->e, NULL, NULL);
    if (p->leases) {
        natsSubscription_Unsubscribe(p->leases);
        natsSubscription_Destroy(p->leases);
    }
    jsCtx_Destroy(p->js);
    natsConnection_Destroy(p->nc);
    if (p->regate)
        event_free(p->regate);
    if (p->recheck)
        event_free(p->recheck);
    bar_free(p->b);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    rb_free(&p->q);
    free(p->stream);
    free(p->addr);
    free(p);
}

void pub_get_state(pub *p, met_repl *out)
{
    memset(out, 0, sizeof *out);
    out->role = "primary";
    out->connected = natsConnection_Status(p->nc) == NATS_CONN_STATUS_CONNECTED;
    bar_stats(p->b, met_now_ns(), &out->replicas, &out->min_applied);
    pthread_mutex_lock(&p->mu);
    out->published = p->published;
    out->held = p->held;
    snprintf(out->problem, sizeof out->problem, "%s", p->problem);
    pthread_mutex_unlock(&p->mu);
}
