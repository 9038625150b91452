/*
 * http.h - HTTP/1.1 for tokenbench (prefix htp_): a strict parser for one
 * response, and the generator driver of the `http` mode, which sends a
 * gateway's verification over keep-alive connections: GET with
 * "Authorization: Bearer <secret>", as nginx auth_request or Envoy
 * ext_authz ask an authorisation service.
 *
 * Two targets, one request: tokend's HTTP listener (GET /v1/verify; a
 * known token must be answered 200 with its identity in the X-Tokend-*
 * headers and an empty body, an unknown secret 401), or any HTTP server
 * named by a URL (the peer, e.g. nginx `return 204`), whose answer must
 * carry the expected status. The peer gets the same bytes (the same
 * Authorization header, so the same request size), on the same
 * connections, from the same generator (gen.h).
 *
 * Why a parser of our own: as for RESP (resp.h), the generator owns its
 * sockets and buffers, and what it needs from a response is its status, a
 * few headers and where it ends. The parser allocates nothing, reads
 * nothing outside its input and takes only what a keep-alive benchmark
 * can rely on: every line ends in CRLF, the body is delimited by
 * Content-Length (or absent: 204, 304). A chunked body, a body that runs
 * until the server closes, or an interim 1xx response is refused with its
 * own code, so the run stops saying why instead of misreading the stream.
 */
#ifndef TB_HTTP_H
#define TB_HTTP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench/tokenbench/gen.h"
#include "bench/tokenbench/work.h"

#define HTP_HEAD_MAX (16u << 10) /* status line and headers, at most */
#define HTP_BODY_MAX (64u << 10) /* a larger Content-Length is refused */
#define HTP_HOST_MAX 280
#define HTP_PATH_MAX 256

/* htp_parse's refusals (0 means "not complete yet"). */
enum {
    HTP_EBAD = -1,      /* not an HTTP/1.x response as this parser takes it */
    HTP_ECHUNKED = -2,  /* Transfer-Encoding (chunked): not supported */
    HTP_EUNTIL = -3,    /* neither Content-Length nor a status without body: body until close */
    HTP_ETOOBIG = -4,   /* head over HTP_HEAD_MAX, or Content-Length over HTP_BODY_MAX */
    HTP_EINTERIM = -5,  /* a 1xx response (tokenbench never sends Expect or Upgrade) */
};

typedef struct htp_resp {
    int status;           /* 200..599 */
    int minor;            /* HTTP/1.minor */
    bool close;           /* the server will close: Connection: close, or 1.0 without keep-alive */
    const uint8_t *head;  /* the header lines, each ending in CRLF (borrowed from the input) */
    size_t head_len;
    const uint8_t *body;  /* borrowed from the input */
    size_t body_len;
} htp_resp;

/* Parses one response to a GET from in[0..len). Returns the bytes it takes
 * (> 0) and fills r; 0 when in holds only part of it; an HTP_E* code (< 0)
 * when it cannot be taken. r's pointers are borrowed from in. */
long htp_parse(const uint8_t *in, size_t len, htp_resp *r);

/* What an HTP_E* code means, in a few words. */
const char *htp_strerror(long code);

/* The value of header name (case-insensitive; the first one), without
 * surrounding blanks, borrowed from r's input; false when absent. */
bool htp_header(const htp_resp *r, const char *name, const uint8_t **val, size_t *len);

/* A URL "http://HOST[:PORT][/PATH]" split into the address to dial
 * ("HOST:PORT", port 80 when absent), the Host header's value and the
 * path ("/" when absent). 0, or -1 (not http://, empty host, too long). */
int htp_url(const char *url, char addr[HTP_HOST_MAX], char host[HTP_HOST_MAX],
            char path[HTP_PATH_MAX]);

#define HTP_STATUS_MIN 100
#define HTP_STATUS_N 500 /* counts[i]: status HTP_STATUS_MIN + i */

typedef struct htp_ctx {
    const work_tokens *t;   /* borrowed */
    bool tokend;            /* tokend's /v1/verify: check the identity headers */
    int expect;             /* peer: the status every answer must have; 0: any 2xx */
    char addr[HTP_HOST_MAX];
    char req[GEN_REQ_MAX];  /* the request up to "Bearer ", the secret and "\r\n\r\n" follow */
    size_t req_len;
    uint32_t nroles;
    char roles[TK_MAX_ROLES][TK_KEY_MAX + 1];
    uint64_t counts[HTP_STATUS_N]; /* every response parsed, by status, once the run ended */
    _Atomic int said;       /* the first wrong answer and refusal were described on stderr */
} htp_ctx;

/* Prepares the driver: requests GET url's path to url's host, with the
 * secret of each item; tokend says whether the target is tokend's
 * /v1/verify (identity checked) or a peer that must answer expect (0: any
 * 2xx). 0, or -1 with the reason on stderr (a bad URL, the tokens file's
 * roles, a request longer than GEN_REQ_MAX). */
int htp_init(htp_ctx *x, const work_tokens *t, const char *url, bool tokend, int expect);

/* Driver: one GET per item, checked as said above; a response that tells
 * the connection will close counts as wrong. The per-thread counts of
 * statuses are added into x->counts when the run ends. */
void htp_driver(htp_ctx *x, gen_driver *d);

#endif
