/*
 * fuzz_mp.c - the MessagePack pull reader (core/mp.h) over arbitrary bytes.
 *
 * A generic walker reads whatever value comes next with the mpr_* call its
 * type byte calls for, recursing into arrays and maps, until the input is
 * used up or a read fails. Along the way it checks the reader's contract
 * against an independent reading of the type byte:
 *  - the cursor never leaves the input; slices returned lie inside it;
 *  - a count from mpr_array/mpr_map fits in the bytes left;
 *  - every reader of another type refuses the value; a failure is sticky
 *    (err set, every later call fails, mpr_done false);
 *  - integers read by mpr_uint and mpr_int agree with a reference decoding,
 *    each succeeding exactly when the value fits its type;
 *  - mpr_utf8_valid agrees with a reference decoder (code points, overlongs,
 *    surrogates, U+10FFFF) on the whole input, on every sequence in it, and
 *    on every string;
 *  - mpr_skip over the same value succeeds exactly when the walk does (the
 *    walk stopping at the same nesting limit of 32) and ends at the same byte;
 *  - the walk re-encodes what it read with mpw_* (floats and exts, which the
 *    reader has no call for, become nil); reading that encoding back must
 *    succeed and encode to the same bytes (writer and reader agree).
 * libFuzzer's own data buffer is an exact-size allocation, so any read past
 * the end is an AddressSanitizer report.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/mp.h"
#include "tests/fuzz/fuzz.h"

#define SKIP_MAX_DEPTH 32 /* mpr_skip's documented nesting bound (mp.h) */

enum { W_OK, W_FAIL, W_DEEP };

/* What a type byte announces, decided here without the reader's help. */
enum cls { C_NIL, C_BOOL, C_UINT, C_INT, C_STR, C_BIN, C_ARRAY, C_MAP, C_OTHER, C_NEVER };

typedef struct walkctx {
    const uint8_t *start, *end; /* the input the cursor must stay inside */
    mpw *w;                     /* re-encoding of what was read */
} walkctx;

static enum cls classify(uint8_t t)
{
    if (t <= 0x7f) return C_UINT;
    if (t <= 0x8f) return C_MAP;
    if (t <= 0x9f) return C_ARRAY;
    if (t <= 0xbf) return C_STR;
    if (t >= 0xe0) return C_INT;
    switch (t) {
    case 0xc0: return C_NIL;
    case 0xc1: return C_NEVER;
    case 0xc2: case 0xc3: return C_BOOL;
    case 0xc4: case 0xc5: case 0xc6: return C_BIN;
    case 0xcc: case 0xcd: case 0xce: case 0xcf: return C_UINT;
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: return C_INT;
    case 0xd9: case 0xda: case 0xdb: return C_STR;
    case 0xdc: case 0xdd: return C_ARRAY;
    case 0xde: case 0xdf: return C_MAP;
    default: return C_OTHER; /* float 32/64, ext 8/16/32, fixext */
    }
}

/* The reference UTF-8 decoder (code points, not mp.c's table of second-byte
 * ranges): the length of the sequence at s[0..n), n > 0, when it is
 * well-formed; otherwise 0, and *bad the bytes that make it ill-formed (the
 * lead and the continuations it calls for, as far as there are any), which
 * no correct validator may accept. */
static size_t ref_seq(const uint8_t *s, size_t n, size_t *bad)
{
    uint8_t c = s[0];
    uint32_t cp, min;
    size_t need;

    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0) {
        need = 1; cp = c & 0x1Fu; min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        need = 2; cp = c & 0x0Fu; min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        need = 3; cp = c & 0x07u; min = 0x10000;
    } else {
        *bad = 1;
        return 0;
    }
    *bad = need + 1 < n ? need + 1 : n;
    if (n - 1 < need)
        return 0;
    for (size_t k = 1; k <= need; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[k] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0; /* overlong, past U+10FFFF, surrogate */
    return need + 1;
}

static bool ref_utf8(const uint8_t *s, size_t n)
{
    size_t i = 0, bad;
    while (i < n) {
        size_t l = ref_seq(s + i, n - i, &bad);
        if (l == 0)
            return false;
        i += l;
    }
    return true;
}

/* mpr_utf8_valid against the reference on the whole of p[0..n), and on
 * every sequence in it: each run of well-formed sequences must be accepted
 * and each ill-formed one refused, wherever it sits (the whole-input answer
 * only ever depends on the first bad byte). */
static void check_utf8(const void *p, size_t n)
{
    const uint8_t *s = p;
    size_t i = 0, run = 0, bad;

    FZ_CHECK(mpr_utf8_valid(p, n) == ref_utf8(s, n), "mpr_utf8_valid agrees with reference");
    while (i < n) {
        size_t l = ref_seq(s + i, n - i, &bad);
        if (l) {
            i += l;
            continue;
        }
        FZ_CHECK(mpr_utf8_valid((const char *)s + run, i - run),
                 "a run of well-formed UTF-8 is accepted");
        FZ_CHECK(!mpr_utf8_valid((const char *)s + i, bad), "an ill-formed sequence is refused");
        run = ++i;
    }
    FZ_CHECK(mpr_utf8_valid((const char *)s + run, n - run), "a run of well-formed UTF-8 is accepted");
}

static void check_cursor(const walkctx *c, const mpr *r)
{
    FZ_CHECK(r->p >= c->start && r->p <= c->end && r->end == c->end,
             "cursor stays inside its input");
}

/* A failed cursor: err set, and every call fails from now on. */
static void check_dead(const walkctx *c, const mpr *r)
{
    mpr k;
    uint32_t n;
    uint64_t u;
    int64_t i;
    bool b;
    const char *s;
    const uint8_t *p;
    size_t len;

    check_cursor(c, r);
    FZ_CHECK(r->err == TK_EINVAL, "a failed read sets err");
    FZ_CHECK(!mpr_done(r) && !mpr_is_nil(r), "a failed cursor is neither done nor at nil");
    k = *r; FZ_CHECK(mpr_nil(&k) == TK_EINVAL, "sticky error: nil");
    k = *r; FZ_CHECK(mpr_bool(&k, &b) == TK_EINVAL, "sticky error: bool");
    k = *r; FZ_CHECK(mpr_uint(&k, &u) == TK_EINVAL, "sticky error: uint");
    k = *r; FZ_CHECK(mpr_int(&k, &i) == TK_EINVAL, "sticky error: int");
    k = *r; FZ_CHECK(mpr_str(&k, &s, &len) == TK_EINVAL, "sticky error: str");
    k = *r; FZ_CHECK(mpr_bin(&k, &p, &len) == TK_EINVAL, "sticky error: bin");
    k = *r; FZ_CHECK(mpr_array(&k, &n) == TK_EINVAL, "sticky error: array");
    k = *r; FZ_CHECK(mpr_map(&k, &n) == TK_EINVAL, "sticky error: map");
    k = *r; FZ_CHECK(mpr_skip(&k) == TK_EINVAL, "sticky error: skip");
}

static int dead(const walkctx *c, const mpr *r)
{
    check_dead(c, r);
    return W_FAIL;
}

/* Every reader not meant for class k must refuse the next value (on a
 * copy of the cursor) and leave that copy failed. (The full sticky-error
 * check runs once per input, where the walk itself fails: running it here
 * for every value would cost most of the time.) */
static void check_wrong_readers(const walkctx *c, const mpr *r, enum cls k)
{
    mpr x;
    uint32_t n;
    uint64_t u;
    int64_t i;
    bool b;
    const char *s;
    const uint8_t *p;
    size_t len;

#define REFUSES(cond, call, what)                                             \
    if (cond) {                                                               \
        x = *r;                                                               \
        FZ_CHECK((call) == TK_EINVAL && x.err == TK_EINVAL && !mpr_done(&x),  \
                 "wrong reader refuses: " what);                              \
        check_cursor(c, &x);                                                  \
    }
    REFUSES(k != C_NIL, mpr_nil(&x), "nil");
    REFUSES(k != C_BOOL, mpr_bool(&x, &b), "bool");
    REFUSES(k != C_UINT && k != C_INT, mpr_uint(&x, &u), "uint");
    REFUSES(k != C_UINT && k != C_INT, mpr_int(&x, &i), "int");
    REFUSES(k != C_STR, mpr_str(&x, &s, &len), "str");
    REFUSES(k != C_BIN, mpr_bin(&x, &p, &len), "bin");
    REFUSES(k != C_ARRAY, mpr_array(&x, &n), "array");
    REFUSES(k != C_MAP, mpr_map(&x, &n), "map");
#undef REFUSES
    FZ_CHECK(mpr_is_nil(r) == (k == C_NIL), "mpr_is_nil matches the type byte");
}

static uint64_t ref_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * (n - 1 - i));
    return v;
}

static int walk_int(const walkctx *c, mpr *r, uint8_t t, enum cls k)
{
    size_t left = (size_t)(r->end - r->p);
    int width = t <= 0x7f || t >= 0xe0 ? 0 : 1 << (t & 3);
    mpr ru = *r, ri = *r;
    uint64_t u = 0, ref_u = 0;
    int64_t i = 0, ref_s = 0;
    int eu = mpr_uint(&ru, &u), ei = mpr_int(&ri, &i);

    if (left < 1 + (size_t)width) {
        FZ_CHECK(eu == TK_EINVAL && ei == TK_EINVAL, "a truncated integer is refused");
        check_dead(c, &ru);
        check_dead(c, &ri);
        *r = ri;
        return W_FAIL;
    }
    if (k == C_UINT) {
        ref_u = width == 0 ? t : ref_be(r->p + 1, width);
        FZ_CHECK(eu == 0 && u == ref_u, "mpr_uint reads an unsigned format");
        FZ_CHECK((ei == 0) == (ref_u <= (uint64_t)INT64_MAX), "mpr_int takes uints that fit");
        if (ei == 0)
            FZ_CHECK(i == (int64_t)ref_u, "mpr_int value of a uint");
    } else {
        if (width == 0) {
            ref_s = (int64_t)t - 256;
        } else {
            uint64_t raw = ref_be(r->p + 1, width);
            ref_s = width == 8 ? (int64_t)raw
                    : raw >> (8 * width - 1) ? (int64_t)raw - ((int64_t)1 << (8 * width))
                                             : (int64_t)raw;
        }
        FZ_CHECK(ei == 0 && i == ref_s, "mpr_int reads a signed format");
        FZ_CHECK((eu == 0) == (ref_s >= 0), "mpr_uint takes non-negative ints only");
        if (eu == 0)
            FZ_CHECK(u == (uint64_t)ref_s, "mpr_uint value of an int");
    }
    if (eu == 0)
        FZ_CHECK(ru.p == r->p + 1 + width, "mpr_uint consumes exactly the integer");
    else
        check_dead(c, &ru);
    if (ei == 0)
        FZ_CHECK(ri.p == r->p + 1 + width, "mpr_int consumes exactly the integer");
    else
        check_dead(c, &ri);
    if (ei == 0) {
        *r = ri;
        mpw_int(c->w, i);
    } else {
        *r = ru;
        mpw_uint(c->w, u);
    }
    return W_OK;
}

static int walk(const walkctx *c, mpr *r, int depth)
{
    check_cursor(c, r);
    if (r->p == r->end) {
        mpr x = *r;
        FZ_CHECK(mpr_skip(&x) == TK_EINVAL, "nothing left: skip fails");
        return dead(c, &x);
    }

    uint8_t t = r->p[0];
    enum cls k = classify(t);
    const uint8_t *before = r->p;

    check_wrong_readers(c, r, k);
    switch (k) {
    case C_NIL:
        FZ_CHECK(mpr_nil(r) == 0 && r->p == before + 1, "nil");
        mpw_nil(c->w);
        return W_OK;
    case C_BOOL: {
        bool v;
        FZ_CHECK(mpr_bool(r, &v) == 0 && v == (t == 0xc3) && r->p == before + 1, "bool");
        mpw_bool(c->w, v);
        return W_OK;
    }
    case C_UINT:
    case C_INT:
        return walk_int(c, r, t, k);
    case C_STR: {
        const char *s;
        size_t n;
        if (mpr_str(r, &s, &n))
            return dead(c, r);
        FZ_CHECK((const uint8_t *)s > before && (const uint8_t *)s + n == r->p,
                 "a string is the slice just read");
        check_utf8(s, n);
        mpw_str(c->w, s, n);
        return W_OK;
    }
    case C_BIN: {
        const uint8_t *p;
        size_t n;
        if (mpr_bin(r, &p, &n))
            return dead(c, r);
        FZ_CHECK(p > before && p + n == r->p, "a bin is the slice just read");
        mpw_bin(c->w, p, n);
        return W_OK;
    }
    case C_ARRAY:
    case C_MAP: {
        uint32_t n;
        uint64_t children;
        if (depth == SKIP_MAX_DEPTH)
            return W_DEEP; /* mpr_skip refuses this deep; stop here too */
        if ((k == C_MAP ? mpr_map(r, &n) : mpr_array(r, &n)) != 0)
            return dead(c, r);
        children = k == C_MAP ? 2 * (uint64_t)n : n;
        FZ_CHECK(children <= (uint64_t)(r->end - r->p), "a count fits in the bytes left");
        if (k == C_MAP)
            mpw_map(c->w, n);
        else
            mpw_array(c->w, n);
        for (uint64_t i = 0; i < children; i++) {
            int rc = walk(c, r, depth + 1);
            if (rc != W_OK)
                return rc;
        }
        return W_OK;
    }
    case C_OTHER:
        if (mpr_skip(r))
            return dead(c, r);
        FZ_CHECK(r->p > before, "skip advances");
        mpw_nil(c->w);
        return W_OK;
    case C_NEVER:
        FZ_CHECK(mpr_skip(r) == TK_EINVAL, "0xc1 is never a value");
        return dead(c, r);
    }
    return W_FAIL;
}

/* Reads the re-encoding of the values walked back and checks it encodes
 * the same. */
static void check_reencoding(const mpw *w1)
{
    size_t n = w1->buf.size;
    uint8_t *copy = malloc(n ? n : 1);
    mpw w2;
    mpr r;
    walkctx c;

    FZ_CHECK(copy != NULL, "malloc");
    if (n)
        memcpy(copy, w1->buf.data, n);
    mpw_init(&w2);
    mpr_init(&r, copy, n);
    c.start = r.p;
    c.end = r.end;
    c.w = &w2;
    while (!mpr_done(&r))
        FZ_CHECK(walk(&c, &r, 0) == W_OK, "the re-encoding of a value reads back");
    FZ_CHECK(w2.buf.size == n && (n == 0 || memcmp(w2.buf.data, copy, n) == 0),
             "reading and writing again is the identity");
    mpw_free(&w2);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mpr r;
    mpw w;
    walkctx c;

    check_utf8(data, size);
    mpw_init(&w);
    mpr_init(&r, data, size);
    c.start = r.p;
    c.end = r.end;
    c.w = &w;
    /* The input as a sequence of values, each walked, then skipped from the
     * same place; the re-encodings of the whole values are checked at the end. */
    while (!mpr_done(&r)) {
        mpr s = r;
        size_t mark = w.buf.size;
        int rc, rs;

        rc = walk(&c, &r, 0);
        rs = mpr_skip(&s);
        if (rc != W_OK) {
            FZ_CHECK(rs == TK_EINVAL, "mpr_skip fails where the walk fails");
            w.buf.size = mark; /* drop the half-written value */
            break;
        }
        FZ_CHECK(rs == 0 && s.p == r.p, "mpr_skip steps over exactly the value walked");
    }
    check_reencoding(&w);
    mpw_free(&w);
    return 0;
}
