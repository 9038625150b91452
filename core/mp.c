/*
 * mp.c - MessagePack writer (msgpack-c packer) and bounds-checked pull
 * reader; see mp.h.
 *
 * Writer. msgpack-c's packer already knows the smallest encoding of every
 * value, so mpw is a thin wrapper. The packer's write callback is our own
 * rather than msgpack_sbuffer_write: that one reports a failed realloc by
 * returning -1, which the void mpw_* calls would drop, leaving a silently
 * truncated message. Ours grows the same msgpack_sbuffer through xrealloc,
 * which aborts on exhaustion (STYLE.md: internal allocations go through one
 * aborting allocator). A string or bin longer than 2^32-1 bytes cannot be
 * expressed in MessagePack at all and msgpack-c would write a wrong length;
 * that is a caller bug and aborts too.
 *
 * An mpw must not be copied or moved after mpw_init: the packer keeps a
 * pointer to the sbuffer inside the same struct.
 *
 * Reader. A cursor over borrowed bytes. Every read first checks the bytes
 * left; nothing is allocated; a count is refused when its elements could not
 * fit in the bytes left (each needs at least one), so a header claiming 2^32
 * elements fails at once instead of driving a caller's loop or allocation.
 * Errors are sticky: after the first failure r->err is TK_EINVAL and every
 * later call fails, so a decoder can check once at the end. mpr_skip is a
 * loop over an explicit stack of 32 pending counts, so hostile nesting
 * cannot exhaust the C stack.
 */
#include "core/mp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/xmalloc.h"

#define MPR_MAX_DEPTH 32

/* ---- writing ------------------------------------------------------------ */

static int mpw_write(void *data, const char *buf, size_t len)
{
    msgpack_sbuffer *sb = data;

    if (len == 0)
        return 0;
    if (sb->alloc - sb->size < len) {
        size_t want = sb->size + len;
        size_t n = sb->alloc ? sb->alloc : 256;
        if (want < sb->size) {
            fprintf(stderr, "tokend: msgpack buffer size overflow\n");
            abort();
        }
        while (n < want)
            n = n * 2 > n ? n * 2 : want;
        sb->data = xrealloc(sb->data, n);
        sb->alloc = n;
    }
    memcpy(sb->data + sb->size, buf, len);
    sb->size += len;
    return 0;
}

static void check_len(size_t len)
{
    if (len > UINT32_MAX) {
        fprintf(stderr, "tokend: msgpack string or bin of %zu bytes\n", len);
        abort();
    }
}

void mpw_init(mpw *w)
{
    msgpack_sbuffer_init(&w->buf);
    msgpack_packer_init(&w->pk, &w->buf, mpw_write);
}

void mpw_reset(mpw *w)
{
    msgpack_sbuffer_clear(&w->buf);
}

void mpw_free(mpw *w)
{
    msgpack_sbuffer_destroy(&w->buf);
    msgpack_sbuffer_init(&w->buf); /* a second mpw_free is harmless */
}

/* mpw_write never fails (it aborts), so the packers' return values carry
 * nothing and are dropped. */
void mpw_array(mpw *w, uint32_t n)
{
    (void)msgpack_pack_array(&w->pk, n);
}

void mpw_map(mpw *w, uint32_t n)
{
    (void)msgpack_pack_map(&w->pk, n);
}

void mpw_uint(mpw *w, uint64_t v)
{
    (void)msgpack_pack_uint64(&w->pk, v);
}

void mpw_int(mpw *w, int64_t v)
{
    (void)msgpack_pack_int64(&w->pk, v);
}

void mpw_bool(mpw *w, bool v)
{
    if (v)
        (void)msgpack_pack_true(&w->pk);
    else
        (void)msgpack_pack_false(&w->pk);
}

void mpw_nil(mpw *w)
{
    (void)msgpack_pack_nil(&w->pk);
}

void mpw_str(mpw *w, const char *s, size_t len)
{
    check_len(len);
    if (len < 32 && w->buf.alloc - w->buf.size > len) {
        /* A fixstr (one header byte, then the bytes) straight into the
         * buffer: most strings we write are short, and this skips two
         * packer callbacks. The same bytes msgpack_pack_str would write. */
        uint8_t *d = (uint8_t *)w->buf.data + w->buf.size;
        d[0] = (uint8_t)(0xa0u | len);
        if (len) /* s may be NULL when len is 0 */
            memcpy(d + 1, s, len);
        w->buf.size += len + 1;
        return;
    }
    (void)msgpack_pack_str(&w->pk, len);
    (void)msgpack_pack_str_body(&w->pk, s, len);
}

void mpw_bin(mpw *w, const void *p, size_t len)
{
    check_len(len);
    (void)msgpack_pack_bin(&w->pk, len);
    (void)msgpack_pack_bin_body(&w->pk, p, len);
}

/* ---- reading ------------------------------------------------------------ */

void mpr_init(mpr *r, const void *data, size_t len)
{
    static const uint8_t empty[1];

    /* NULL + 0 is undefined behaviour in C; point an empty range elsewhere. */
    r->p = data ? data : empty;
    r->end = r->p + (data ? len : 0);
    r->err = 0;
}

static int fail(mpr *r)
{
    r->err = TK_EINVAL;
    return TK_EINVAL;
}

static size_t left(const mpr *r)
{
    return (size_t)(r->end - r->p);
}

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* Reads a big-endian unsigned of n bytes (1, 2, 4, 8) after the type byte:
 * checks bytes, advances past type byte and value. */
static int take_be(mpr *r, int n, uint64_t *v)
{
    if (left(r) < 1 + (size_t)n)
        return fail(r);
    *v = be(r->p + 1, n);
    r->p += 1 + n;
    return 0;
}

/* Integer formats, read as a sign flag and a magnitude-like raw value:
 * neg false: v is the unsigned value; neg true: the value is (int64_t)v < 0. */
static int read_integer(mpr *r, bool *neg, uint64_t *v)
{
    if (r->err || r->p == r->end)
        return fail(r);
    uint8_t t = r->p[0];
    uint64_t u;

    if (t <= 0x7f) {
        *neg = false;
        *v = t;
        r->p++;
        return 0;
    }
    if (t >= 0xe0) {
        *neg = true;
        *v = (uint64_t)((int64_t)t - 256); /* 0xe0..0xff = -32..-1 */
        r->p++;
        return 0;
    }
    switch (t) {
    case 0xcc: case 0xcd: case 0xce: case 0xcf: {
        int n = 1 << (t - 0xcc);
        if (take_be(r, n, &u))
            return TK_EINVAL;
        *neg = false;
        *v = u;
        return 0;
    }
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        int n = 1 << (t - 0xd0);
        if (take_be(r, n, &u))
            return TK_EINVAL;
        int64_t s;
        switch (n) { /* sign-extend */
        case 1: s = (int8_t)u; break;
        case 2: s = (int16_t)u; break;
        case 4: s = (int32_t)u; break;
        default: s = (int64_t)u; break;
        }
        *neg = s < 0;
        *v = (uint64_t)s;
        return 0;
    }
    default:
        return fail(r);
    }
}

int mpr_uint(mpr *r, uint64_t *v)
{
    const uint8_t *save = r->p;
    bool neg;
    uint64_t u;

    if (read_integer(r, &neg, &u))
        return TK_EINVAL;
    if (neg) {
        r->p = save;
        return fail(r);
    }
    *v = u;
    return 0;
}

int mpr_int(mpr *r, int64_t *v)
{
    const uint8_t *save = r->p;
    bool neg;
    uint64_t u;

    if (read_integer(r, &neg, &u))
        return TK_EINVAL;
    if (!neg && u > (uint64_t)INT64_MAX) {
        r->p = save;
        return fail(r);
    }
    *v = (int64_t)u; /* u came from an int64 when neg; in range otherwise */
    return 0;
}

int mpr_bool(mpr *r, bool *v)
{
    if (r->err || r->p == r->end)
        return fail(r);
    if (r->p[0] != 0xc2 && r->p[0] != 0xc3)
        return fail(r);
    *v = r->p[0] == 0xc3;
    r->p++;
    return 0;
}

int mpr_nil(mpr *r)
{
    if (r->err || r->p == r->end || r->p[0] != 0xc0)
        return fail(r);
    r->p++;
    return 0;
}

bool mpr_is_nil(const mpr *r)
{
    return !r->err && r->p != r->end && r->p[0] == 0xc0;
}

/* Length of a str (bin false) or bin (bin true) whose type byte is next.
 * On success *len is the payload length, *hdr the header length, and the
 * payload is known to fit. Does not advance. */
static int peek_bytes(mpr *r, bool bin, size_t *hdr, size_t *len)
{
    uint8_t t = r->p[0];
    size_t avail = left(r);
    uint64_t n;
    int w;

    if (!bin && t >= 0xa0 && t <= 0xbf) {
        *hdr = 1;
        *len = t & 0x1f;
        return *len <= avail - 1 ? 0 : TK_EINVAL;
    }
    if (!bin && t >= 0xd9 && t <= 0xdb)
        w = 1 << (t - 0xd9);
    else if (bin && t >= 0xc4 && t <= 0xc6)
        w = 1 << (t - 0xc4);
    else
        return TK_EINVAL;
    if (avail < 1 + (size_t)w)
        return TK_EINVAL;
    n = be(r->p + 1, w);
    if (n > avail - 1 - (size_t)w)
        return TK_EINVAL;
    *hdr = 1 + (size_t)w;
    *len = (size_t)n;
    return 0;
}

int mpr_str(mpr *r, const char **s, size_t *len)
{
    size_t hdr, n;

    if (r->err || r->p == r->end || peek_bytes(r, false, &hdr, &n))
        return fail(r);
    *s = (const char *)r->p + hdr;
    *len = n;
    r->p += hdr + n;
    return 0;
}

int mpr_bin(mpr *r, const uint8_t **p, size_t *len)
{
    size_t hdr, n;

    if (r->err || r->p == r->end || peek_bytes(r, true, &hdr, &n))
        return fail(r);
    *p = r->p + hdr;
    *len = n;
    r->p += hdr + n;
    return 0;
}

/* Reads an array (map false) or map (map true) header; *n is the count of
 * entries (pairs for a map), already checked against the bytes left. */
static int read_container(mpr *r, bool map, uint32_t *n)
{
    if (r->err || r->p == r->end)
        return fail(r);
    uint8_t t = r->p[0];
    uint64_t c;
    size_t hdr;

    if (!map && t >= 0x90 && t <= 0x9f) {
        c = t & 0x0f;
        hdr = 1;
    } else if (map && t >= 0x80 && t <= 0x8f) {
        c = t & 0x0f;
        hdr = 1;
    } else if (t == (map ? 0xde : 0xdc) || t == (map ? 0xdf : 0xdd)) {
        int w = (t & 1) ? 4 : 2;
        if (left(r) < 1 + (size_t)w)
            return fail(r);
        c = be(r->p + 1, w);
        hdr = 1 + (size_t)w;
    } else {
        return fail(r);
    }
    /* Each element takes at least one byte; a map has 2 per entry. */
    if ((map ? 2 * c : c) > left(r) - hdr)
        return fail(r);
    r->p += hdr;
    *n = (uint32_t)c;
    return 0;
}

int mpr_array(mpr *r, uint32_t *n)
{
    return read_container(r, false, n);
}

int mpr_map(mpr *r, uint32_t *n)
{
    return read_container(r, true, n);
}

/* Steps over the value whose type byte is next. For a scalar, str, bin or
 * ext the whole value is consumed and *children is 0; for an array or map
 * only the header is consumed, *container is set and *children is the
 * number of values that follow (2 per map entry). */
static int skip_header(mpr *r, bool *container, uint64_t *children)
{
    size_t avail = left(r);
    uint8_t t;
    size_t hdr, body;
    uint64_t n;

    if (avail == 0)
        return TK_EINVAL;
    t = r->p[0];
    *container = false;
    *children = 0;

    if (t <= 0x7f || t >= 0xe0 || (t >= 0xc0 && t <= 0xc3 && t != 0xc1)) {
        r->p++; /* fixint, nil, false, true */
        return 0;
    }
    if (t <= 0x8f || (t >= 0x90 && t <= 0x9f)) {
        n = t & 0x0f;
        *container = true;
        *children = t <= 0x8f ? 2 * n : n;
        hdr = 1;
        if (*children > avail - hdr)
            return TK_EINVAL;
        r->p += hdr;
        return 0;
    }
    if (t <= 0xbf) { /* fixstr */
        hdr = 1;
        body = t & 0x1f;
        goto payload;
    }
    switch (t) {
    case 0xc4: case 0xc5: case 0xc6: /* bin 8/16/32 */
    case 0xd9: case 0xda: case 0xdb: { /* str 8/16/32 */
        int w = 1 << (t <= 0xc6 ? t - 0xc4 : t - 0xd9);
        if (avail < 1 + (size_t)w)
            return TK_EINVAL;
        n = be(r->p + 1, w);
        if (n > avail - 1 - (size_t)w)
            return TK_EINVAL;
        hdr = 1 + (size_t)w;
        body = (size_t)n;
        goto payload;
    }
    case 0xc7: case 0xc8: case 0xc9: { /* ext 8/16/32: length, type, data */
        int w = 1 << (t - 0xc7);
        if (avail < 2 + (size_t)w)
            return TK_EINVAL;
        n = be(r->p + 1, w);
        if (n > avail - 2 - (size_t)w)
            return TK_EINVAL;
        hdr = 2 + (size_t)w;
        body = (size_t)n;
        goto payload;
    }
    case 0xca: hdr = 1; body = 4; goto payload;  /* float 32 */
    case 0xcb: hdr = 1; body = 8; goto payload;  /* float 64 */
    case 0xcc: case 0xcd: case 0xce: case 0xcf: /* uint 8..64 */
        hdr = 1;
        body = (size_t)1 << (t - 0xcc);
        goto payload;
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: /* int 8..64 */
        hdr = 1;
        body = (size_t)1 << (t - 0xd0);
        goto payload;
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: /* fixext 1..16 */
        hdr = 2;
        body = (size_t)1 << (t - 0xd4);
        goto payload;
    case 0xdc: case 0xdd: case 0xde: case 0xdf: { /* array/map 16/32 */
        int w = (t & 1) ? 4 : 2;
        if (avail < 1 + (size_t)w)
            return TK_EINVAL;
        n = be(r->p + 1, w);
        *container = true;
        *children = t >= 0xde ? 2 * n : n;
        hdr = 1 + (size_t)w;
        if (*children > avail - hdr)
            return TK_EINVAL;
        r->p += hdr;
        return 0;
    }
    default: /* 0xc1, never used */
        return TK_EINVAL;
    }

payload:
    if (avail < hdr || body > avail - hdr)
        return TK_EINVAL;
    r->p += hdr + body;
    return 0;
}

int mpr_skip(mpr *r)
{
    uint64_t pending[MPR_MAX_DEPTH]; /* values still to skip at each open level */
    int depth = 0;

    if (r->err)
        return fail(r);
    for (;;) {
        bool container;
        uint64_t children;

        if (skip_header(r, &container, &children))
            return fail(r);
        if (container) {
            if (depth == MPR_MAX_DEPTH)
                return fail(r);
            if (children > 0) {
                pending[depth++] = children;
                continue;
            }
        }
        /* One value finished: it completes its parent's slot, and a parent
         * whose last slot this was is itself a finished value. */
        while (depth > 0 && --pending[depth - 1] == 0)
            depth--;
        if (depth == 0)
            return 0;
    }
}

bool mpr_done(const mpr *r)
{
    return !r->err && r->p == r->end;
}

/* ---- UTF-8 -------------------------------------------------------------- */

/* Unicode Table 3-7 (well-formed UTF-8 byte sequences): the second byte's
 * range depends on the lead byte, which is what rules out overlongs (C0, C1,
 * E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and values above U+10FFFF
 * (F4 90.., F5..FF). */
bool mpr_utf8_valid(const char *s, size_t len)
{
    if (len == 0)
        return true;
    const uint8_t *p = (const uint8_t *)s;
    const uint8_t *end = p + len;

    while (p < end) {
        /* ASCII runs (secrets, slugs: most of what we see) 8 bytes at a time */
        while (end - p >= 8) {
            uint64_t word;
            memcpy(&word, p, sizeof word);
            if (word & 0x8080808080808080ull)
                break;
            p += 8;
        }
        if (p == end)
            break;
        uint8_t c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else {
            return false; /* continuation byte, C0, C1, F5..FF */
        }
        if ((size_t)(end - p) <= need)
            return false; /* truncated */
        if (p[1] < lo || p[1] > hi)
            return false;
        for (size_t i = 2; i <= need; i++)
            if ((p[i] & 0xC0) != 0x80)
                return false;
        p += need + 1;
    }
    return true;
}
