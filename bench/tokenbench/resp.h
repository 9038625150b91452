/*
 * resp.h - the few pieces of the Redis protocol (RESP2) that tokenbench
 * needs: writing a command, and a strict parser for one reply.
 *
 * Why not hiredis: the generator must own its sockets and buffers (one
 * event loop drives tokend and Redis alike), and what it needs from a reply
 * is a bounds-checked slice, not an object tree. The parser allocates
 * nothing, reads nothing outside its input, and refuses anything that is
 * not exactly RESP2: every line must end in CRLF, integers are decimal
 * without '+' or leading zeros, a bulk string's length must match its bytes.
 */
#ifndef TB_RESP_H
#define TB_RESP_H
#include <stddef.h>
#include <stdint.h>

#define RESP_BULK_MAX (1u << 20) /* longer bulk strings are refused */
#define RESP_LINE_MAX 4096       /* longest status/error/integer line */

typedef enum resp_kind {
    RESP_STATUS = '+', /* s, len: the text */
    RESP_ERROR = '-',  /* s, len: the text */
    RESP_INT = ':',    /* num */
    RESP_BULK = '$',   /* s, len: the bytes */
    RESP_NIL = 'n',    /* $-1 (or *-1) */
    RESP_ARRAY = '*',  /* num elements follow, each a reply of its own */
} resp_kind;

typedef struct resp_reply {
    resp_kind kind;
    const uint8_t *s; /* borrowed from the input */
    size_t len;
    int64_t num;
} resp_reply;

/* Parses one reply (an array: its header only) from in[0..len). Returns the
 * bytes it takes (> 0) and fills r, 0 when in holds only part of it, -1
 * when the bytes are not RESP2 (or exceed the limits above). */
long resp_parse(const uint8_t *in, size_t len, resp_reply *r);

/* Writes the command argv[0..argc) as an array of bulk strings into out
 * (cap bytes). Returns its length, or 0 when it does not fit. */
size_t resp_command(uint8_t *out, size_t cap, int argc, const char *const *argv,
                    const size_t *argl);

#endif
