/*
 * hjson.h - the JSON API's bodies, to and from the protocol's msgpack
 * bodies (prefix hj_), so that one decoder (net/dispatch.c) checks every
 * request of both listeners and one encoder writes every reply.
 *
 * A JSON request becomes the msgpack map a binary client would send, member
 * for member, without judging it: dispatch refuses what the binary
 * protocol refuses, with the same words. The one thing JSON has that
 * protocol refuses, with the same words (a fraction travels as a msgpack
 * float, which no field takes). A reply
 * body is read back through the operation's reply fields in the schema
 * (net/schema.h), so a JSON reply has exactly the binary reply's fields.
 *
 * Pure: no I/O, no state. Uses jansson (Debian's libjansson, as tokenctl
 * does): it checks UTF-8, refuses duplicate members when asked, and bounds
 * nesting, which a hand parser would have to get right again.
 */
#ifndef TK_NET_HJSON_H
#define TK_NET_HJSON_H
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/mp.h"
#include "net/dispatch.h"
#include "net/schema.h"

/* Appends obj (a JSON object) to w as a msgpack map. 0, or TK_EINVAL with
 * err saying why (not an object, nesting deeper than 8). */
int hj_to_body(const json_t *obj, mpw *w, dsp_err *err);

/* Sets obj[name] from text, a value from a URL (its path or its query),
 * typed by op's request field of that name: a number for SCH_UINT and
 * SCH_INT, true/false for SCH_BOOL, a string otherwise; SCH_STRS values
 * collect into an array (the parameter repeated). A name op does not take
 * is kept as a string, for dispatch to refuse by name. 0, or TK_EINVAL
 * (err says why: not a number, given twice). */
int hj_set_param(json_t *obj, const sch_op *op, const char *name, const char *text,
                 dsp_err *err);

/* The JSON of a successful reply body of op (msgpack, as dispatch wrote
 * it): a new object, or NULL when the body does not decode (a bug). */
json_t *hj_reply(const sch_op *op, const uint8_t *body, size_t len);

#endif
