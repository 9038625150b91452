/* resp.c - RESP2 command writer and strict reply parser; see resp.h. */
#include "bench/tokenbench/resp.h"

#include <stdio.h>
#include <string.h>

/* Finds the CRLF ending the line that starts at in; its offset, 0 when not
 * there yet, -1 when the line is too long or holds a lone CR or LF. */
static long line_end(const uint8_t *in, size_t len)
{
    size_t lim = len < RESP_LINE_MAX ? len : RESP_LINE_MAX;
    for (size_t i = 1; i < lim; i++) {
        if (in[i] == '\r') {
            if (i + 1 == len)
                return 0;
            return in[i + 1] == '\n' ? (long)i : -1;
        }
        if (in[i] == '\n')
            return -1;
    }
    return len < RESP_LINE_MAX ? 0 : -1;
}

/* Decimal integer in s[0..n): '-'? digits, no leading zeros. 0 or -1. */
static int parse_int(const uint8_t *s, size_t n, int64_t *out)
{
    int neg = 0;
    uint64_t v = 0;
    if (n > 0 && s[0] == '-') {
        neg = 1;
        s++;
        n--;
    }
    if (n == 0 || n > 19 || (s[0] == '0' && n > 1) || (neg && s[0] == '0'))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > (uint64_t)INT64_MAX)
        return -1;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

long resp_parse(const uint8_t *in, size_t len, resp_reply *r)
{
    if (len == 0)
        return 0;
    long e = line_end(in, len);
    if (e <= 0)
        return e;
    const uint8_t *body = in + 1;
    size_t blen = (size_t)e - 1;
    size_t head = (size_t)e + 2;
    memset(r, 0, sizeof *r);
    switch (in[0]) {
    case '+':
    case '-':
        r->kind = (resp_kind)in[0];
        r->s = body;
        r->len = blen;
        return (long)head;
    case ':':
        r->kind = RESP_INT;
        return parse_int(body, blen, &r->num) == 0 ? (long)head : -1;
    case '*':
    case '$':
        if (parse_int(body, blen, &r->num) != 0 || r->num < -1)
            return -1;
        if (r->num == -1) {
            r->kind = RESP_NIL;
            r->num = 0;
            return (long)head;
        }
        if (in[0] == '*') {
            r->kind = RESP_ARRAY;
            return (long)head;
        }
        if (r->num > (int64_t)RESP_BULK_MAX)
            return -1;
        r->kind = RESP_BULK;
        r->len = (size_t)r->num;
        r->num = 0;
        if (len - head < r->len + 2)
            return 0;
        if (in[head + r->len] != '\r' || in[head + r->len + 1] != '\n')
            return -1;
        r->s = in + head;
        return (long)(head + r->len + 2);
    default:
        return -1;
    }
}

size_t resp_command(uint8_t *out, size_t cap, int argc, const char *const *argv,
                    const size_t *argl)
{
    size_t at = 0;
    int n = snprintf((char *)out, cap, "*%d\r\n", argc);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    at = (size_t)n;
    for (int i = 0; i < argc; i++) {
        n = snprintf((char *)out + at, cap - at, "$%zu\r\n", argl[i]);
        if (n < 0 || (size_t)n >= cap - at || cap - at - (size_t)n < argl[i] + 2)
            return 0;
        at += (size_t)n;
        memcpy(out + at, argv[i], argl[i]);
        at += argl[i];
        out[at++] = '\r';
        out[at++] = '\n';
    }
    return at;
}
