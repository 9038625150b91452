/*
 * server.h - bin/tokend's server: the data directory, the listening socket
 * and the event loop, around the connection hub (conn.h) and the writer
 * thread (writer.h).
 *
 * Threads: the caller's thread runs the libevent loop (srv_run): it owns
 * every connection and the engine's in-memory view. One writer thread runs
 * the engine's durable commits and listings. See docs/server.md.
 */
#ifndef TK_NET_SERVER_H
#define TK_NET_SERVER_H
#include <stdbool.h>

#include "net/conn.h"
#include "net/http.h"
#include "net/repl.h"
#include "net/tls.h"

#define SRV_DEFAULT_LISTEN "127.0.0.1:7070"
#define SRV_DEFAULT_DATA "./var"

#define SRV_WRITER_BACKLOG (64u << 20) /* bytes of requests queued for the writer */

typedef struct srv_opts {
    const char *listen;     /* "HOST:PORT" (IPv6 as "[::1]:7070"); port 0 picks one */
    const char *http_listen; /* the HTTP listener's "HOST:PORT"; NULL or "none": none */
    http_opts http;         /* its limits (http.h) */
    const char *verify_listen; /* the verify listener's "HOST:PORT" (HTTP verification
                               only, net/vhttp.h, with http's limits); NULL or "none",
                               the default: none */
    const char *data_dir;   /* created at first start, with the operator key */
    bool require_gateway;   /* create/load DIR/gateway.key; VERIFY needs it */
    conn_opts conn;         /* limits (conn.h); conn.require_gateway is set from above */
    size_t batch_replies;   /* reply bytes one writer batch may hold (writer.h) */
    tls_server_opts tls;    /* TLS on both listeners when tls.cert is set (net/tls.h;
                               docs/server.md, "TLS"); all NULL, the default: plain */
    const char *sign_key;   /* signed heads of the log (store/head.h); NULL: none */
    bool full_log_check;    /* every chain link checked before serving (elog.h, "check") */
    const char *log_format; /* "text" (the default) or "json" (net/log.h) */
    uint32_t log_requests;  /* one request in this many gets a log line; 0: none */
    repl_opts repl;         /* replication (net/repl.h; docs/scale.md): none by default */
} srv_opts;

/* The documented defaults (docs/server.md, "Flags"). */
void srv_opts_default(srv_opts *o);

/* The most memory, in bytes, that the connections and the writer can hold
 * with options o, beyond the engine (its view, index and the LMDB pages it
 * has touched) and the program itself: docs/server.md, "The memory
 * bound", states it as a formula of the flags; this is that formula. */
size_t srv_memory_bound(const srv_opts *o);

typedef struct srv srv;

/* Opens the engine on o->data_dir (creating it and the operator key at
 * first start), the gateway key if asked, the TLS files if given (then
 * SIGHUP reloads them: srv_run's loop catches it), binds the listening
 * socket and logs the start line ("tokend: listening on HOST:PORT, ...").
 * o's strings are copied. 0, or TK_EIO / TK_ECORRUPT / TK_EINVAL with the
 * reason logged. */
int srv_open(const srv_opts *o, srv **out);

/* The address actually bound, as "HOST:PORT" (borrowed; lives as long as s). */
const char *srv_address(const srv *s);

/* The HTTP listener's address, or NULL when there is none (borrowed). */
const char *srv_http_address(const srv *s);

/* The verify listener's address, or NULL when there is none (borrowed). */
const char *srv_verify_address(const srv *s);

/* Runs the loop until a stop completes. Returns 0. */
int srv_run(srv *s);

/* Asks the loop to stop: accept nothing more, answer the requests already
 * received, flush, close, return from srv_run. A second call closes every
 * connection at once. Async-signal-safe (one write to a pipe): call it
 * from a signal handler. */
void srv_stop(srv *s);

/* Frees everything (s may be NULL). */
void srv_close(srv *s);

#endif
