/*
 * recbuf.c - log records back to back in one buffer; see recbuf.h.
 */
#include "store/recbuf.h"

#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"

#define RB_HEAD (sizeof(uint64_t) + TK_HASH_LEN + sizeof(uint32_t))

void rb_put(recbuf *q, uint64_t seq, const uint8_t hash[TK_HASH_LEN], const void *payload,
            size_t len)
{
    size_t need = RB_HEAD + len;
    uint32_t l = (uint32_t)len; /* <= ELOG_MAX_PAYLOAD */
    if (q->cap - q->n < need && q->head > 0) { /* room at the front first */
        memmove(q->b, q->b + q->head, q->n - q->head);
        q->n -= q->head;
        q->head = 0;
    }
    if (q->cap - q->n < need) {
        q->cap = q->cap * 2 > q->n + need ? q->cap * 2 : q->n + need;
        q->b = xrealloc(q->b, q->cap);
    }
    uint8_t *d = q->b + q->n;
    memcpy(d, &seq, sizeof seq);
    memcpy(d + sizeof seq, hash, TK_HASH_LEN);
    memcpy(d + sizeof seq + TK_HASH_LEN, &l, sizeof l);
    if (len)
        memcpy(d + RB_HEAD, payload, len);
    q->n += need;
    q->count++;
}

bool rb_peek(const recbuf *q, eng_rec *out)
{
    if (q->head >= q->n)
        return false;
    const uint8_t *d = q->b + q->head;
    uint32_t l;
    memcpy(&out->seq, d, sizeof out->seq);
    out->hash = d + sizeof out->seq;
    memcpy(&l, d + sizeof out->seq + TK_HASH_LEN, sizeof l);
    out->payload = d + RB_HEAD;
    out->len = l;
    return true;
}

void rb_pop(recbuf *q)
{
    eng_rec r;
    if (rb_peek(q, &r))
        q->head += RB_HEAD + r.len;
}

size_t rb_bytes(const recbuf *q)
{
    return q->n - q->head;
}

void rb_clear(recbuf *q)
{
    q->head = q->n = q->count = 0;
}

void rb_swap(recbuf *a, recbuf *b)
{
    recbuf t = *a;
    *a = *b;
    *b = t;
}

void rb_free(recbuf *q)
{
    free(q->b);
    memset(q, 0, sizeof *q);
}
