/*
 * publisher.h - the primary's side of replication (prefix pub_): its
 * durable log published to a NATS JetStream stream, and the replicas'
 * leases answered (with the revocation barrier, net/barrier.h, when asked).
 *
 * A thread of its own follows the durable log: records reach it from the
 * engine's tap (engine.h, eng_set_tap: after their fsync, never before)
 * into a bounded queue, and from the log itself (an iterator) whenever the
 * queue does not hold the next one: at the start, after NATS was away,
 * after the queue overflowed. It publishes each record with its seq as the
 * message id and as the expected last stream seq of the next, so the
 * stream can neither miss a record nor hold one twice; a failure of any
 * kind makes it ask the stream where it stands and go on from there. NATS
 * being down never blocks or fails a write: the engine does not wait for
 * the publisher, only the barrier's answers wait for the replicas.
 *
 * Threads: pub_start and pub_free on the loop thread; the tap and the gate
 * are called on the loop thread; the rest runs on the publisher's thread
 * and libnats's.
 */
#ifndef TK_NET_PUBLISHER_H
#define TK_NET_PUBLISHER_H
#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

#include "net/metrics.h"
#include "net/repl.h"
#include "net/writer.h"
#include "store/engine.h"

typedef struct pub pub;

/* Starts publishing e's log to o->publish (stream o->stream, made when
 * missing, with o->stream_replicas copies) and answering leases; with
 * o->barrier, sets w's gate. addr: the listeners as a replica names them
 * in its refusals (copied). With o->snapshot_s, every so often while
 * events come, a snapshot (engine.h, eng_snapshot, on the writer thread)
 * is written to snapshot_path and put in the bucket STREAM-snapshots as
 * the object "latest" by a thread of its own. Call before serving. 0, or TK_EINVAL / TK_EIO
 * with why. NATS need not be up. */
int pub_start(struct event_base *base, eng *e, wrt *w, const repl_opts *o, const char *addr,
              const char *snapshot_path, pub **out, tk_why *why);

/* Stops the thread and closes the connection (loop thread, once the
 * writer is idle). p may be NULL. */
void pub_free(pub *p);

/* What /metrics shows (net/metrics.h): role "primary", NATS, the last seq
 * published, the barrier's book, why it does not publish (the stream holds
 * another history, ...). Any thread. */
void pub_get_state(pub *p, met_repl *out);

#endif
