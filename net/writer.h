/*
 * writer.h - the writer and sync threads: group commit, pipelined, and
 * listings off the event loop, served fairly between the connections that
 * queue them.
 *
 * The engine's contract (store/engine.h): eng_commit (plan a batch, write
 * it to the log), eng_apply (LMDB's commit) and eng_token_list (an LMDB
 * read transaction) run on the writer thread; eng_sync (the log's
 * fdatasync) on the sync thread; eng_publish (the in-memory view) on the
 * loop thread. LMDB may grow its map inside eng_commit, which needs no
 * other transaction open in the process, so listings run on the writer
 * thread too, serialised with commits.
 *
 * Jobs are queued per source (a wrt_queue: one per connection), each queue
 * in its own order. When the writer thread is free and fewer than
 * WRT_IN_FLIGHT batches are out, the loop thread forms a batch by taking
 * one job from each waiting queue in turn, round after round, until a
 * limit is reached: WRT_MAX_BATCH jobs, WRT_MAX_BATCH writes, or the batch
 * reply cap (the sum of the jobs' reply_max; the first job of a batch is
 * always taken). From each queue it takes a prefix of that queue: reads,
 * then writes, never a read after a write (it goes in the next batch). The
 * writer thread runs the reads once every earlier batch is durable or
 * failed, then every write of the batch as ONE eng_commit, hands the batch
 * to the sync thread (whose one eng_sync covers every batch written before
 * it), tells the loop it is free for the next, and commits LMDB
 * (eng_apply). When the sync thread is idle the writer thread waits for the
 * disk itself instead (one hand-over fewer for a request alone). So a read
 * sees exactly the writes queued before it on its own queue (writes of
 * different queues have no order between them), never one that could still
 * fail, and a queue's backlog delays another queue's job by at most the
 * batches in flight (queues served in a batch go to the back of the turn).
 * When batches are durable the loop is woken (event_active on an event of
 * a base with libevent_pthreads enabled); it calls eng_publish and only
 * THEN each job's done callback, in order, so a change is visible to
 * verification before it is acknowledged (rule 5).
 *
 * A source that goes away cancels its queue: jobs not yet in a batch are
 * dropped at once (handed back to the caller, never run); in a batch in
 * flight, its reads and the writes not yet begun are skipped (their done
 * is still called; a skipped write has TK_EBUSY); writes begun commit
 * (they may be in the log already).
 *
 * If eng_commit fails (TK_EIO, TK_EFENCED), every write of the batch gets
 * that status; if eng_sync fails, every write it did not make durable
 * does; one line is logged, and the writer goes on: the engine refuses
 * later writes itself, and verifications keep working. A failure after
 * the log's fsync is not a failed batch (the log holds it): its writes are
 * answered as committed (engine.h, eng_exec).
 */
#ifndef TK_NET_WRITER_H
#define TK_NET_WRITER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "store/engine.h"

#define WRT_MAX_BATCH 1024
#define WRT_IN_FLIGHT 2 /* batches: one being written while one waits for the disk */

typedef struct wrt wrt;
typedef struct wrt_job wrt_job;
typedef struct wrt_queue wrt_queue;

typedef struct wrt_opts {
    size_t max_backlog;   /* bytes of jobs (wrt_job.bytes) queued or in flight; 0: no cap */
    size_t batch_replies; /* reply bytes (wrt_job.reply_max) one batch may hold */
} wrt_opts;

/* One request for the writer. The submitter embeds it in its own struct
 * and owns it; the writer borrows it from wrt_submit until done is called
 * (on the loop thread) or wrt_cancel hands it back. Everything the job
 * points to (req and the strings inside it) must stay alive and unchanged
 * until then. */
struct wrt_job {
    /* Set by the submitter: exactly one of req and read. */
    const eng_req *req;                /* a write, committed in a batch */
    void (*read)(eng *e, wrt_job *j);  /* a read, run on the writer thread */
    void (*done)(wrt_job *j);          /* loop thread, after eng_publish; may free j */
    size_t bytes;                      /* memory held while queued (backlog cap) */
    size_t reply_max;                  /* the largest reply it can make (batch reply cap) */
    /* Set by the writer for a write: its result (res.status, and the
     * created credential, whose secret the submitter should wipe). */
    eng_res res;
    /* Private to the writer. */
    wrt_job *next;
    wrt_queue *q;
    int phase;
    bool batch_end;    /* the last job of its batch */
    uint64_t batch_no; /* eng_commit's number for its batch (0: nothing logged) */
};

/* Starts the writer thread. base must have been created after
 * evthread_use_pthreads(); base and e are borrowed for the writer's life;
 * o is copied. 0 or TK_EIO. */
int wrt_start(struct event_base *base, eng *e, const wrt_opts *o, wrt **out);

/* A new, empty queue of w (loop thread; allocation aborts on failure). */
void wrt_queue_new(wrt *w, wrt_queue **out);

/* Frees q (q may be NULL). Call when none of its jobs is queued or in
 * flight (after wrt_cancel and the done of every job in flight), or once
 * the writer is freed. */
void wrt_queue_free(wrt_queue *q);

/* Queues j at the end of q (loop thread). Returns 0, or TK_EBUSY when the
 * backlog is full (j is then not queued and done will not be called). q
 * must not have been cancelled. */
int wrt_submit(wrt *w, wrt_queue *q, wrt_job *j);

/* The source of q is gone (loop thread): q's jobs not yet handed to the
 * writer are dropped (the caller owns them again: their done will not be
 * called), and the reads among its jobs in the batch in flight are not run
 * (their done is still called; the writes among them commit). Returns the
 * number of jobs dropped. Later calls return 0. */
size_t wrt_cancel(wrt *w, wrt_queue *q);

/* The revocation barrier (net/barrier.h): a write that may take access
 * away (res.revokes) and committed is answered only once gate(arg, its
 * res.seq) is true, and every job done after it waits behind it (the
 * batches held stay in flight). When the gate may have opened, the caller
 * calls wrt_regate (loop thread). Set before the first job. */
typedef bool (*wrt_gate_fn)(void *arg, uint64_t seq);
void wrt_set_gate(wrt *w, wrt_gate_fn gate, void *arg);
void wrt_regate(wrt *w);

/* True when nothing is queued or in flight (loop thread). */
bool wrt_idle(const wrt *w);

/* The most memory the writer holds beyond the jobs' own (docs/server.md,
 * "The memory bound"): the batch's replies (at most
 * max(o->batch_replies, reply_max): a batch's first job is always taken),
 * the slack of the reply being built, and the batch arrays. reply_max is
 * the largest reply any job can make. */
size_t wrt_memory_bound(const wrt_opts *o, size_t reply_max);

/* Writes per batch (per eng_commit), for /metrics (core/hist.h). */
const hist *wrt_batch_hist(const wrt *w);

/* Stops and joins the thread. Call on the loop thread when wrt_idle(w) (a
 * batch still in flight is waited for, but its jobs' done is not called).
 * w may be NULL. */
void wrt_free(wrt *w);

#endif
