/*
 * h1.h - HTTP/1.x on the verify listener (prefix h1_): a request head read
 * strictly, in place, and a response written into a byte buffer.
 *
 * The verify listener (--http-verify, docs/gateways.md) answers gateways on
 * the binary listener's connection layer (net/conn.c), where bytes are read
 * with one read(2) into the connection's own buffer and replies leave with
 * one sendmsg(2). evhttp (the main HTTP listener, net/http.c) cannot parse
 * from a buffer it does not own, Debian's C HTTP parsers are either
 * unmaintained upstream (nodejs/http-parser, archived) or not packaged for
 * C (llhttp), and what this listener needs is small: the request line, the
 * header fields, Content-Length. So this is a parser of that subset of RFC
 * 9112, strict: anything outside it (a folded line, a field name with
 * spaces, control bytes, Transfer-Encoding, a version other than 1.0 and
 * 1.1, a request-target that is not a path) is refused with a status and
 * the connection closed, never guessed at. tests/fuzz/fuzz_h1.c runs it on
 * arbitrary bytes.
 *
 * Nothing here allocates but h1_out's buffer; a parsed request points into
 * the bytes it was read from.
 */
#ifndef TK_NET_H1_H
#define TK_NET_H1_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/model.h"

#define H1_MAX_FIELDS 100 /* header fields of one request (as the main listener) */

typedef struct h1_field {
    tk_str name, value;       /* value without its leading and trailing blanks */
} h1_field;

typedef struct h1_req {
    tk_str method;            /* a token, as sent (methods are case-sensitive) */
    tk_str path;              /* the request-target up to '?' (starts with '/') */
    tk_str query;             /* after '?', n = 0 when none */
    int minor;                /* HTTP/1.minor: 0 or 1 */
    size_t head_len;          /* bytes of the head, its blank line included */
    uint64_t body_len;        /* Content-Length (0 without one) */
    bool keep_alive;          /* HTTP/1.1 without "Connection: close", or 1.0 with
                                 "Connection: keep-alive" */
    size_t nfields;
    h1_field fields[H1_MAX_FIELDS]; /* last: h1_parse clears what is before it */
} h1_req;

/* Parses the request head at the front of b[0..len). Returns 0 with *r
 * filled, H1_PARTIAL when the head is not complete yet and could still fit
 * in max_head bytes, or the status to answer before closing: 400 (malformed;
 * *why says what), 431 (the head is over max_head bytes, or has more than
 * H1_MAX_FIELDS fields), 501 (Transfer-Encoding: a body this listener
 * cannot delimit), 505 (a version other than HTTP/1.0 and 1.1). */
#define H1_PARTIAL 1
int h1_parse(const uint8_t *b, size_t len, size_t max_head, h1_req *r, const char **why);

/* The value of r's i-th field (from 0) named name (case-insensitive), or
 * NULL past the last. */
const tk_str *h1_find(const h1_req *r, const char *name, size_t i);

/* A response being written: bytes [0, n) of p (grown as needed). */
typedef struct h1_out {
    char *p;
    size_t n, cap;
} h1_out;

void h1_put(h1_out *o, const char *s, size_t n);
void h1_puts(h1_out *o, const char *s);
/* The status line ("HTTP/1.1 200 OK\r\n"). */
void h1_status(h1_out *o, int code);
/* One field line "name: value\r\n". */
void h1_field_put(h1_out *o, const char *name, const char *value, size_t n);
/* The end of the head: Date (per second), Content-Length, Content-Type when
 * body_len > 0, Connection: close when !keep_alive (keep-alive to an
 * HTTP/1.0 client that asked for it), then the blank line. */
void h1_head_end(h1_out *o, size_t body_len, const char *content_type, bool keep_alive,
                 int minor);
void h1_out_free(h1_out *o);

/* The reason phrase of code ("Not Found"), "Unknown" for others. */
const char *h1_reason(int code);

#endif
