/*
 * conn.h - the server's connections: framing, in-order replies, limits,
 * deadlines and per-connection authentication, all on the loop thread.
 *
 * A hub holds every connection of one server. Each connection reads frames
 * (docs/protocol.md), answers PING, AUTH and VERIFY inline (the verify
 * reply is encoded while the view's strings are valid, into the output
 * buffer, without touching LMDB), and queues management requests on the
 * writer (writer.h). Requests take effect in the order they were sent
 * (DESIGN rule 10): while the connection has requests in the writer, a
 * frame it would answer inline waits, unread, until they are published, so
 * a VERIFY behind the connection's own delete sees the delete. Replies
 * leave in request order: a per-connection FIFO holds the requests waiting
 * for the writer, and any reply completed behind one of them is held until
 * it goes.
 *
 * A connection is an explicit state machine:
 *
 *   OPEN    reading and answering.
 *   ENDING  no more reading (the peer sent EOF, or the server stops): the
 *           complete frames already received are answered, the replies
 *           flushed, then the socket is closed.
 *   FAILED  the peer broke framing (a length over the maximum): nothing
 *           more is answered; replies so far and the error reply flush,
 *           then LINGER.
 *   LINGER  our side is shut down for writing; input is read and dropped
 *           until the peer closes or a short timer runs out, so the peer
 *           reads our last reply instead of a reset.
 *   CLOSED  the socket is gone. The struct lives on until every request
 *           it has in the writer returns, then is freed.
 *
 * Nothing is freed inside its own callback: closing marks the connection
 * and schedules a reap event that frees it later (STYLE.md).
 */
#ifndef TK_NET_CONN_H
#define TK_NET_CONN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/util.h>

#include "net/writer.h"
#include "store/engine.h"

typedef struct conn_opts {
    uint32_t max_frame;       /* body bytes; a longer len gets ELIMIT, then close */
    uint32_t max_connections; /* at it, a newcomer takes the slot of the least
                                 recently active connection with nothing in
                                 flight; with none such: EBUSY (id 0), close */
    uint32_t max_per_peer;    /* connections from one address (IPv6: one /64);
                                 beyond: EBUSY (id 0), close; 0: no cap */
    size_t max_output;        /* unsent reply bytes per connection; beyond: close.
                                 Requests for the writer also wait (unread) while
                                 their largest replies would not fit */
    size_t max_queued;        /* request bytes a connection has in the writer;
                                 at it, stop reading */
    uint32_t max_inflight;    /* requests not yet replied; at it, stop reading */
    double idle_timeout;      /* seconds without a request (or without the peer
                                 taking reply bytes): close */
    double frame_timeout;     /* seconds a started frame may take to arrive, and
                                 a new connection may take to send its first */
    bool require_gateway;     /* VERIFY needs AUTH by the gateway or operator key */
    uint32_t log_requests;    /* one request in this many gets a log line (0: none) */
    bool io_uring;            /* a loop turn's reads in one io_uring submission and
                                 its sends in another (net/sockq.h); false, or no
                                 io_uring in the kernel: a read and a sendmsg per
                                 connection and callback */
} conn_opts;

typedef struct conn_hub conn_hub;

/* Creates an empty hub. base, e and w are borrowed for the hub's life (w
 * NULL: no writer, for a hub that answers everything inline, as
 * conn_hub_set_http's); opts is copied. gateway_key: the gateway key's text (only its hash is
 * kept), or NULL when there is none. Never fails (allocation aborts). */
void conn_hub_new(struct event_base *base, eng *e, wrt *w, const conn_opts *opts,
                  const char *gateway_key, conn_hub **out);

/* How the hub reads and writes sockets, for the start's log: "io_uring
 * (...)", or "read and sendmsg (...)" with the reason; after a later
 * failure of the ring, the failure (also logged then). Borrowed from h. */
const char *conn_hub_sends(const conn_hub *h);

/* Takes over fd, a socket just accepted from peer sa (closed in every
 * case). At max_connections the least recently active connection (by its
 * last complete frame, or its accept) that has nothing in flight (no
 * request unanswered, no reply unsent) is closed to make room, after one
 * EBUSY reply with id 0 saying why. When there is none, over max_per_peer,
 * or once stopping, the newcomer gets that reply instead and is closed. */
void conn_hub_accept(conn_hub *h, evutil_socket_t fd, const struct sockaddr *sa, int salen);

/* Counts what the hub answers in m (borrowed for the hub's life). */
typedef struct met met;
void conn_hub_set_metrics(conn_hub *h, met *m);

/* New connections speak TLS with t's current context (net/tls.h; borrowed
 * for the hub's life; NULL, the default: plain). Call before the first
 * accept. */
typedef struct tls tls;
void conn_hub_set_tls(conn_hub *h, tls *t);

/* The hub speaks HTTP/1.x verification (net/vhttp.h: the verify listener,
 * --http-verify) instead of the binary protocol: every request is answered
 * inline by v (borrowed for the hub's life), with this layer's limits,
 * deadlines, cap and TLS. Call before the first accept. */
typedef struct vh vh;
void conn_hub_set_http(conn_hub *h, vh *v);

/* Connections with an open socket. */
size_t conn_hub_count(const conn_hub *h);

/* Graceful stop: every connection stops reading, answers the complete
 * requests it has already received, flushes and closes. empty(arg) is
 * called once, from an event callback, when no connection and no writer
 * job is left. */
void conn_hub_stop(conn_hub *h, void (*empty)(void *arg), void *arg);

/* Closes every socket now (a stop that ran out of time). Requests still in
 * the writer finish; empty is called as above. */
void conn_hub_abort(conn_hub *h);

/* The most memory the connections can hold with these options, in bytes,
 * beyond the engine and the writer (docs/server.md, "The memory bound"):
 * each connection's struct, input and output, plus the requests queued for
 * the writer, which max_backlog (the writer's cap) also bounds. */
size_t conn_memory_bound(const conn_opts *o, size_t max_backlog);

/* The same for a hub that speaks HTTP verification (conn_hub_set_http):
 * nothing of it waits in the writer, and its replies are verify answers. */
size_t conn_http_memory_bound(const conn_opts *o);

/* Frees every connection and the hub. Call after the loop has stopped and
 * the writer has been joined (wrt_free). h may be NULL. */
void conn_hub_free(conn_hub *h);

#endif
