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
    uint32_t max_connections; /* beyond: one EBUSY reply (id 0), then close */
    size_t max_output;        /* unsent reply bytes per connection; beyond: close */
    uint32_t max_inflight;    /* requests not yet replied; at it, stop reading */
    double idle_timeout;      /* seconds without a request (or without the peer
                                 taking reply bytes): close */
    double frame_timeout;     /* seconds a started frame may take to arrive */
    bool require_gateway;     /* VERIFY needs AUTH by the gateway or operator key */
} conn_opts;

typedef struct conn_hub conn_hub;

/* Creates an empty hub. base, e and w are borrowed for the hub's life;
 * opts is copied. gateway_key: the gateway key's text (only its hash is
 * kept), or NULL when there is none. Never fails (allocation aborts). */
void conn_hub_new(struct event_base *base, eng *e, wrt *w, const conn_opts *opts,
                  const char *gateway_key, conn_hub **out);

/* Takes over fd, a socket just accepted from peer sa (closed in every
 * case). Over max_connections, or once stopping, the peer gets one EBUSY
 * reply with id 0 and is closed at once. */
void conn_hub_accept(conn_hub *h, evutil_socket_t fd, const struct sockaddr *sa, int salen);

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

/* Frees every connection and the hub. Call after the loop has stopped and
 * the writer has been joined (wrt_free). h may be NULL. */
void conn_hub_free(conn_hub *h);

#endif
