/*
 * repl.h - replication over NATS JetStream: the names and message forms
 * that the primary's publisher (publisher.h) and a replica's follower
 * (follower.h) share, written once here. docs/scale.md is the design.
 *
 *   stream STREAM (JetStream, file storage), subject "STREAM.log": one
 *       message per record of the primary's log, in seq order, so the
 *       stream's sequence is the log's. Message id (deduplication): the
 *       seq in decimal. Headers: Tokend-Seq (decimal) and Tokend-Hash (the
 *       record's chain hash, 64 hex digits). Body: the event, as logged.
 *   subject "STREAM.lease" (core NATS, not stored): a replica's lease
 *       request, the primary's reply (repl_lease_req / repl_lease_rep).
 *
 * The NATS C client (libnats) runs its own threads; every callback of
 * this module's users runs on one of them, never on the event loop.
 */
#ifndef TK_NET_REPL_H
#define TK_NET_REPL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "core/err.h"
#include "core/model.h"

#define REPL_STREAM_DEFAULT "tokend"
#define REPL_LEASE_DEFAULT_S 2.0
#define REPL_NAME_MAX 64    /* a replica's name, bytes */
#define REPL_ADDR_MAX 200   /* the primary's listeners, as text */
#define REPL_SUBJECT_MAX 160
#define REPL_MAX_URLS 16    /* NATS servers given to one connection */

/* The replication flags of one server (docs/server.md, "Replication"). */
typedef struct repl_opts {
    const char *publish;  /* primary: NATS URLs, "nats://HOST:PORT[,...]"; NULL: none */
    const char *follow;   /* replica: the same; NULL: not a replica */
    const char *stream;   /* the stream's name (REPL_STREAM_DEFAULT) */
    const char *name;     /* replica: its name in the primary's barrier (NULL: host:port of
                             its binary listener) */
    double lease_s;       /* a replica answers "valid" only within its lease (seconds) */
    uint32_t stream_replicas; /* primary: copies of the stream in a NATS cluster (1..5) */
    bool barrier;         /* primary: revocations wait for every live replica */
    bool fail_open;       /* replica: keep answering past the lease (documented risk) */
    double snapshot_s;    /* primary: a snapshot to the object store this often (0: never) */
} repl_opts;

/* The subjects of stream (its log, its leases) into out (REPL_SUBJECT_MAX). */
void repl_log_subject(const char *stream, char *out);
void repl_lease_subject(const char *stream, char *out);

/* True when name is a usable stream name (letters, digits, '-' and '_',
 * at most 32 bytes): it goes into subjects. */
bool repl_stream_ok(const char *name);

/* A connection to urls that never gives up: it starts even while no
 * server answers (it connects in the background) and reconnects for ever.
 * name is the client's name in NATS's monitoring. 0 or TK_EIO / TK_EINVAL
 * (a malformed URL) with why. */
int repl_connect(const char *urls, const char *name, natsConnection **out, tk_why *why);

/* One record as a message of the stream (the caller destroys it). */
natsStatus repl_record_msg(natsMsg **out, const char *subject, uint64_t seq,
                           const uint8_t hash[TK_HASH_LEN], const void *payload, size_t len);

/* Reads a record's seq and chain hash from m's headers: 0, or
 * TK_EPROTO (a header missing or malformed). */
int repl_record_of(natsMsg *m, uint64_t *seq, uint8_t hash[TK_HASH_LEN]);

/* A replica's lease request: what it has applied, and its own send time
 * (met_now_ns, monotonic), echoed by the reply (so a lease runs from the
 * request's sending, never from a later moment). */
typedef struct repl_lease_req {
    uint64_t applied;
    uint64_t sent_ns;
    bool join;             /* a lease asked for (false: a probe, for the primary's seq only:
                              a replica far behind joins once it has caught up) */
    char name[REPL_NAME_MAX + 1];
} repl_lease_req;

/* The primary's reply. */
typedef struct repl_lease_rep {
    uint64_t sent_ns;      /* the request's, echoed */
    bool granted;          /* a lease from sent_ns (an answer to a join) */
    uint64_t durable;      /* the primary's last durable seq */
    uint64_t catch_up;     /* a replica (re)joining the barrier answers "valid" again only
                              once it has applied this seq; 0: no condition */
    uint32_t lease_ms;     /* the primary's lease (replicas use the shorter of theirs and it) */
    bool barrier;          /* the primary runs the revocation barrier */
    char addr[REPL_ADDR_MAX + 1]; /* the primary's listeners, for a replica's refusals */
} repl_lease_rep;

/* Encodings (bytes written to out, at most REPL_LEASE_MAX) and decodings
 * (0 or TK_EPROTO) of the two. */
#define REPL_LEASE_MAX 320
size_t repl_lease_req_put(const repl_lease_req *r, uint8_t *out);
int repl_lease_req_get(const void *p, size_t n, repl_lease_req *out);
size_t repl_lease_rep_put(const repl_lease_rep *r, uint8_t *out);
int repl_lease_rep_get(const void *p, size_t n, repl_lease_rep *out);

#endif
