/*
 * vhttp.h - the verify listener's requests (prefix vh_): gateway
 * verification over HTTP/1.x (--http-verify, docs/gateways.md) on the
 * binary listener's connection layer.
 *
 * net/conn.c reads the bytes (one read per readable socket, into the
 * connection's own buffer), keeps the limits, deadlines and the connection
 * cap, and sends the replies (one sendmsg per burst); this module turns the
 * request at the front of a connection's input into its whole response:
 * /v1/verify and every path under it are verifications (net/gateway.h, the
 * main listener's rules), anything else is 404. The body of a request is
 * never looked at: it is skipped as it arrives (within --http-max-body).
 * Requests are answered one at a time, in order, as they come; a pipelined
 * request is answered in the same loop turn as the one before it.
 *
 * Loop thread only.
 */
#ifndef TK_NET_VHTTP_H
#define TK_NET_VHTTP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/h1.h"
#include "net/metrics.h"
#include "store/engine.h"

typedef struct vh_opts {
    size_t max_head;          /* request line and headers (--http-max-headers) */
    uint64_t max_body;        /* a body skipped, at most (--http-max-body) */
    uint32_t log_requests;    /* one request in this many gets a log line (0: none) */
} vh_opts;

typedef struct vh vh;

/* e and m (NULL: no counters) are borrowed for vh's life; gateway_key is
 * the gateway key's text, or NULL (only its hash is kept). Never fails
 * (allocation aborts). */
void vh_new(eng *e, met *m, const char *gateway_key, const vh_opts *o, vh **out);
void vh_free(vh *v); /* v may be NULL */

typedef struct vh_result {
    size_t used;              /* input bytes taken: the head, and the body as far as it
                                 is in */
    uint64_t skip;            /* the body's bytes still to come: the caller drops them */
    bool close;               /* the connection ends after this response (Connection:
                                 close, HTTP/1.0 without keep-alive, or an error) */
    size_t want;              /* VH_PARTIAL: the bytes the head may still need, at most */
} vh_result;

#define VH_PARTIAL 1

/* Answers the request at the front of b[0..len) from peer: 0 with its
 * whole response appended to out and *res filled, or VH_PARTIAL when the
 * head is not complete yet. A request that cannot be read (h1_parse's
 * refusals, a body over max_body) gets its error response and res->close.
 * stopping: the server is stopping; the answer to the last whole request
 * in b then says Connection: close (and sets res->close). */
int vh_answer(vh *v, const uint8_t *b, size_t len, const char *peer, bool stopping, h1_out *out,
              vh_result *res);

/* The longest response vh_answer writes: a valid token's with the most
 * roles and permissions at their longest keys. */
size_t vh_reply_max(void);

/* The response of a connection turned away at the accept (503, close). */
void vh_busy(h1_out *out, const char *why);

#endif
