/*
 * recbuf.h - log records back to back in one growable buffer (prefix rb_):
 * each the seq, its chain hash, the payload's length and the payload (host
 * order: a record buffer never leaves the process). The engine keeps a
 * batch's records in one for its tap, the publisher queues the tap's
 * records in one, a replica's follower gathers the stream's in one: the
 * layout is written here once.
 *
 * Records are read from `head` on (rb_next) and appended at the end
 * (rb_put); rb_put first moves the unread records to the front when that
 * makes room. One thread at a time, as its owner arranges.
 */
#ifndef TK_STORE_RECBUF_H
#define TK_STORE_RECBUF_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/engine.h"

typedef struct recbuf {
    uint8_t *b;
    size_t head, n, cap; /* unread: [head, n) */
    size_t count;        /* records appended since the last rb_clear */
} recbuf;

/* Appends one record (copied; allocation aborts). */
void rb_put(recbuf *q, uint64_t seq, const uint8_t hash[TK_HASH_LEN], const void *payload,
            size_t len);

/* The next unread record into *out (pointing into q, valid until the next
 * rb_put or rb_clear), without consuming it: true, or false when none. */
bool rb_peek(const recbuf *q, eng_rec *out);

/* Consumes the record rb_peek gave. */
void rb_pop(recbuf *q);

/* Unread bytes. */
size_t rb_bytes(const recbuf *q);

/* Empties q (memory kept). */
void rb_clear(recbuf *q);

/* Exchanges two buffers (a writer hands its records over whole). */
void rb_swap(recbuf *a, recbuf *b);

void rb_free(recbuf *q);

#endif
