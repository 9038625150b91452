/*
 * writer.h - the writer thread: group commit and listings off the event
 * loop.
 *
 * The engine's contract (store/engine.h): eng_commit (LMDB and the log,
 * which blocks on fsync) and eng_token_list (an LMDB read transaction) run
 * on one writer thread; eng_publish (the in-memory view) runs on the loop
 * thread, after each commit and before the next. LMDB may grow its map
 * inside eng_commit, which needs no other transaction open in the process,
 * so listings run on the writer thread too, serialised with commits.
 *
 * The loop thread queues jobs (wrt_submit). Once per loop iteration, when
 * no batch is in flight, it hands the writer a batch: reads queued before
 * the first write, then up to WRT_MAX_BATCH writes as ONE eng_commit (one
 * fsync for all of them), then the reads queued after those writes, up to
 * the next write. So a read sees exactly the writes queued before it, and
 * every queue order is kept. When the writer is done it wakes the loop
 * (event_active on an event of a base with libevent_pthreads threading
 * enabled); the loop calls eng_publish and only THEN each job's done
 * callback, so a change is visible to verification before it is
 * acknowledged (rule 5). Then the next batch goes.
 *
 * If eng_commit fails (TK_EIO, TK_EFENCED), every write of the batch gets
 * that status, one line is logged, and the writer goes on: the engine
 * refuses later writes itself, and verifications keep working. A failure
 * after the log's fsync is not a failed batch (the log holds it): its
 * writes are answered as committed, and one line says the store is now
 * fenced (engine.h, eng_exec).
 */
#ifndef TK_NET_WRITER_H
#define TK_NET_WRITER_H
#include <stdbool.h>
#include <stddef.h>

#include <event2/event.h>

#include "store/engine.h"

#define WRT_MAX_BATCH 1024

typedef struct wrt wrt;
typedef struct wrt_job wrt_job;

/* One request for the writer. The submitter embeds it in its own struct
 * and owns it; the writer borrows it from wrt_submit until done is called
 * (on the loop thread). Everything the job points to (req and the strings
 * inside it) must stay alive and unchanged until then. */
struct wrt_job {
    /* Set by the submitter: exactly one of req and read. */
    const eng_req *req;                /* a write, committed in a batch */
    void (*read)(eng *e, wrt_job *j);  /* a read, run on the writer thread */
    void (*done)(wrt_job *j);          /* loop thread, after eng_publish; may free j */
    size_t bytes;                      /* memory held while queued (backlog cap) */
    /* Set by the writer for a write: its result (res.status, and the
     * created credential, whose secret the submitter should wipe). */
    eng_res res;
    /* Private to the writer. */
    wrt_job *next;
};

/* Starts the writer thread. base must have been created after
 * evthread_use_pthreads(); base and e are borrowed for the writer's life.
 * max_backlog caps the bytes of queued jobs (0: no cap). 0 or TK_EIO. */
int wrt_start(struct event_base *base, eng *e, size_t max_backlog, wrt **out);

/* Queues j (loop thread). Returns 0, or TK_EBUSY when the backlog is full
 * (j is then not queued and done will not be called). */
int wrt_submit(wrt *w, wrt_job *j);

/* True when nothing is queued or in flight (loop thread). */
bool wrt_idle(const wrt *w);

/* Stops and joins the thread. Call on the loop thread when wrt_idle(w) (a
 * batch still in flight is waited for, but its jobs' done is not called).
 * w may be NULL. */
void wrt_free(wrt *w);

#endif
