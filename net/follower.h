/*
 * follower.h - a replica's side of replication (prefix fol_): the
 * primary's records read from the JetStream stream and applied here, and
 * the lease that lets this server answer "valid".
 *
 * Records: an ordered consumer from this log's next seq; a burst of them
 * goes to the writer as one job (engine.h, eng_follow: seq continuity and
 * the chain checked, appended to this log, LMDB and the view updated, in
 * the ordinary pipeline). A gap, a broken chain or an event that does not
 * apply stops the applying for good (until restarted), with the reason
 * logged and shown; the server then stops renewing its lease, so it soon
 * answers "unavailable" rather than go on with a state it cannot trust.
 *
 * The lease: a request to the primary every quarter lease, and at once
 * after each applied burst (the barrier waits for it); a lease runs from
 * the request's sending. Verification answers "valid" (eng_set_available)
 * only while the lease runs and this replica has applied what the primary
 * had made durable when the lease was first granted (a replica coming
 * back holds every revocation answered without it before it answers
 * again). With fail_open, it answers whatever its state says, always.
 *
 * Writes are refused (eng_set_readonly) with a message naming the primary.
 * Threads: fol_start and fol_free on the loop thread; the follower and the
 * lease have a thread each; libnats has its own.
 */
#ifndef TK_NET_FOLLOWER_H
#define TK_NET_FOLLOWER_H
#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

#include "net/metrics.h"
#include "net/repl.h"
#include "net/writer.h"
#include "store/engine.h"

typedef struct fol fol;

/* Before the engine opens: when dir is missing or empty, makes it from
 * the latest snapshot in the bucket STREAM-snapshots (engine.h,
 * eng_bootstrap), waiting at most wait_ms for NATS. 0 (bootstrapped),
 * TK_EEXIST (dir holds something: it follows from its own log),
 * TK_ENOTFOUND (no snapshot: it follows the stream from event 1), or
 * TK_EIO / TK_ECORRUPT with why (NATS away, a damaged snapshot: dir is
 * left as it was). */
int fol_bootstrap(const repl_opts *o, const char *dir, int wait_ms, tk_why *why);

/* Starts following o->follow (stream o->stream) into e, with jobs on w.
 * name: this replica's name when o->name is NULL (copied). Call before
 * serving. 0, or TK_EINVAL / TK_EIO with why. NATS need not be up. */
int fol_start(struct event_base *base, eng *e, wrt *w, const repl_opts *o, const char *name,
              fol **out, tk_why *why);

/* Stops the threads (loop thread, the writer idle). f may be NULL. */
void fol_free(fol *f);

/* What /metrics and /readyz show (net/metrics.h): role "replica", NATS,
 * availability, the seqs applied and heard, why applying stopped for good.
 * Any thread. */
void fol_get_state(fol *f, met_repl *out);

#endif
