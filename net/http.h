/*
 * http.h - the HTTP listener (prefix http_): gateway verification at
 * /v1/verify, the JSON API under /v1/, the self-service page at /portal/
 * (net/portal.h), /metrics, /healthz and /readyz, on
 * libevent's HTTP server (evhttp), on the loop thread beside the binary
 * listener (docs/http.md).
 *
 * One implementation of every rule: a verification is eng_verify, as for a
 * VERIFY frame; a JSON request becomes the msgpack body of its operation
 * (net/hjson.h), decoded by net/dispatch.c and queued on the same writer,
 * so both listeners give the same answers. The routes are the schema's
 * (sch_routes).
 *
 * Limits: the request line and headers together (max_headers bytes, so
 * their count too), the body (max_body), a timeout on every read and
 * write (idle keep-alive included), and max_connections. evhttp answers
 * one request at a time per connection, so a connection's requests take
 * effect in order (rule 10) and it holds at most one reply. At the
 * connection cap, a newcomer takes the slot of the connection least
 * recently given a request that has none in progress (slow or idle
 * sockets go first); with none such, the newcomer is closed.
 */
#ifndef TK_NET_HTTP_H
#define TK_NET_HTTP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "net/conn.h"
#include "net/metrics.h"
#include "net/portal.h"
#include "net/tls.h"
#include "net/writer.h"
#include "store/engine.h"

#define HTTP_DEFAULT_LISTEN "127.0.0.1:7080"

typedef struct http_opts {
    uint32_t max_connections; /* default 1024 */
    uint32_t max_headers;     /* bytes of request line and headers (default 8 KiB) */
    uint32_t max_body;        /* bytes (default 1 MiB) */
    double timeout;           /* seconds a read or a write may wait (default 60) */
    ptl_opts portal;          /* the self-service page (net/portal.h) */
    uint32_t log_requests;    /* one request in this many gets a log line (0: none) */
} http_opts;

/* The documented defaults (docs/server.md, "Flags"). */
void http_opts_default(http_opts *o);

/* The most memory the HTTP connections can hold with options o, beyond
 * the writer's (docs/server.md, "The memory bound"). */
size_t http_memory_bound(const http_opts *o);

/* What the listener serves from; every pointer borrowed for its life. */
typedef struct http_env {
    struct event_base *base;
    eng *e;
    wrt *w;
    met *m;
    const conn_hub *hub;     /* for the binary listener's connection gauge */
    const conn_hub *vhub;    /* the verify listener's (--http-verify), or NULL */
    const char *gateway_key; /* when set, /v1/verify needs X-Tokend-Gateway-Key;
                                only its hash is kept */
    tls *tls;                /* when set, connections speak TLS (net/tls.h): each one
                                gets an SSL of its current context; NULL: plain */
    void (*repl)(void *arg, met_repl *out); /* replication's state for /metrics and
                                               /readyz (net/repl.h), or NULL */
    void *repl_arg;
} http_env;

typedef struct http_srv http_srv;

/* Serves HTTP on lis (a listening socket; owned by the listener from now
 * on, freed by http_stop or http_free). Allocation aborts; never fails. */
void http_open(const http_env *env, const http_opts *o, struct evconnlistener *lis,
               http_srv **out);

/* The HTTP status of a TK_E* refusal (docs/http.md, "Errors"; 503 for the
 * store's and the server's own failures). */
int http_status_of(int rc);

/* HTTP connections open. */
size_t http_count(const http_srv *h);

/* Graceful stop: no new connections; empty(arg) is called once, from an
 * event callback, when no request of this listener is in the writer. */
void http_stop(http_srv *h, void (*empty)(void *arg), void *arg);

/* Frees every connection and the listener. Call after the loop stopped and
 * the writer was joined. h may be NULL. */
void http_free(http_srv *h);

#endif
