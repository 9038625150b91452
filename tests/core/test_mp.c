/* test_mp.c - MessagePack writer and bounds-checked reader.
 *
 * Round trips at every encoding boundary; a nested document read back whole,
 * then cut at every length (each prefix copied into an allocation of exactly
 * that size, so ASan reports any read past the end); hostile counts; type
 * mismatches and sticky errors; mpr_skip over every format and nesting
 * depth; seeded random inputs; UTF-8 validation cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/mp.h"

static uint64_t rng_state = 0x243F6A8885A308D3ull;

static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* An exact-size heap copy: reading one byte past it is an ASan report. */
static uint8_t *exact_copy(const void *p, size_t n)
{
    uint8_t *q = malloc(n ? n : 1);
    assert_non_null(q);
    if (n)
        memcpy(q, p, n);
    return q;
}

static void assert_failed(const mpr *r)
{
    assert_int_equal(r->err, TK_EINVAL);
    assert_false(mpr_done(r));
}

/* ---- round trips -------------------------------------------------------- */

static void uint_round_trip(void **state)
{
    (void)state;
    static const struct {
        uint64_t v;
        size_t size; /* smallest encoding */
    } cases[] = {
        {0, 1}, {1, 1}, {127, 1}, {128, 2}, {255, 2}, {256, 3}, {65535, 3},
        {65536, 5}, {UINT32_MAX, 5}, {(uint64_t)UINT32_MAX + 1, 9},
        {(uint64_t)INT64_MAX, 9}, {(uint64_t)INT64_MAX + 1, 9}, {UINT64_MAX, 9},
    };
    mpw w;
    mpw_init(&w);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mpr r;
        uint64_t u = 12345;
        int64_t s = 12345;
        mpw_reset(&w);
        mpw_uint(&w, cases[i].v);
        assert_int_equal(w.buf.size, cases[i].size);

        mpr_init(&r, w.buf.data, w.buf.size);
        assert_int_equal(mpr_uint(&r, &u), 0);
        assert_true(u == cases[i].v);
        assert_true(mpr_done(&r));

        mpr_init(&r, w.buf.data, w.buf.size);
        if (cases[i].v <= (uint64_t)INT64_MAX) {
            assert_int_equal(mpr_int(&r, &s), 0);
            assert_true(s == (int64_t)cases[i].v);
            assert_true(mpr_done(&r));
        } else {
            assert_int_equal(mpr_int(&r, &s), TK_EINVAL); /* > INT64_MAX */
            assert_failed(&r);
        }
    }
    mpw_free(&w);
}

static void int_round_trip(void **state)
{
    (void)state;
    static const struct {
        int64_t v;
        size_t size;
    } cases[] = {
        {0, 1}, {1, 1}, {127, 1}, {128, 2}, {255, 2}, {256, 3}, {65535, 3},
        {65536, 5}, {INT64_MAX, 9}, {-1, 1}, {-32, 1}, {-33, 2}, {-128, 2},
        {-129, 3}, {-32768, 3}, {-32769, 5}, {INT32_MIN, 5},
        {(int64_t)INT32_MIN - 1, 9}, {INT64_MIN, 9},
    };
    mpw w;
    mpw_init(&w);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mpr r;
        uint64_t u = 12345;
        int64_t s = 12345;
        mpw_reset(&w);
        mpw_int(&w, cases[i].v);
        assert_int_equal(w.buf.size, cases[i].size);

        mpr_init(&r, w.buf.data, w.buf.size);
        assert_int_equal(mpr_int(&r, &s), 0);
        assert_true(s == cases[i].v);
        assert_true(mpr_done(&r));

        mpr_init(&r, w.buf.data, w.buf.size);
        if (cases[i].v >= 0) {
            assert_int_equal(mpr_uint(&r, &u), 0);
            assert_true(u == (uint64_t)cases[i].v);
        } else {
            assert_int_equal(mpr_uint(&r, &u), TK_EINVAL);
            assert_failed(&r);
            assert_true(u == 12345); /* untouched */
        }
    }
    mpw_free(&w);
}

/* Encodings msgpack-c's packer never produces but a peer may send. */
static void integer_formats_by_hand(void **state)
{
    (void)state;
    static const struct {
        uint8_t b[9];
        size_t n;
        int uint_ok;
        uint64_t u;
        int int_ok;
        int64_t s;
    } cases[] = {
        {{0xd0, 0x05}, 2, 1, 5, 1, 5},                        /* int8 +5 */
        {{0xd0, 0xff}, 2, 0, 0, 1, -1},                       /* int8 -1 */
        {{0xd0, 0x80}, 2, 0, 0, 1, -128},
        {{0xd1, 0x7f, 0xff}, 3, 1, 32767, 1, 32767},          /* int16 */
        {{0xd1, 0x80, 0x00}, 3, 0, 0, 1, -32768},
        {{0xd2, 0x00, 0x01, 0x00, 0x00}, 5, 1, 65536, 1, 65536},
        {{0xd2, 0x80, 0, 0, 0}, 5, 0, 0, 1, INT32_MIN},
        {{0xd3, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, 1,
         (uint64_t)INT64_MAX, 1, INT64_MAX},
        {{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}, 9, 0, 0, 1, INT64_MIN},
        {{0xd3, 0, 0, 0, 0, 0, 0, 0, 0}, 9, 1, 0, 1, 0},
        {{0xcc, 0x00}, 2, 1, 0, 1, 0},                         /* non-minimal uint */
        {{0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, 1,
         (uint64_t)INT64_MAX, 1, INT64_MAX},
        {{0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0}, 9, 1, (uint64_t)INT64_MAX + 1, 0, 0},
        {{0xe0}, 1, 0, 0, 1, -32},                              /* negative fixint */
        {{0xff}, 1, 0, 0, 1, -1},
        {{0x7f}, 1, 1, 127, 1, 127},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *buf = exact_copy(cases[i].b, cases[i].n);
        mpr r;
        uint64_t u;
        int64_t s;

        mpr_init(&r, buf, cases[i].n);
        assert_int_equal(mpr_uint(&r, &u), cases[i].uint_ok ? 0 : TK_EINVAL);
        if (cases[i].uint_ok) {
            assert_true(u == cases[i].u);
            assert_true(mpr_done(&r));
        }
        mpr_init(&r, buf, cases[i].n);
        assert_int_equal(mpr_int(&r, &s), cases[i].int_ok ? 0 : TK_EINVAL);
        if (cases[i].int_ok) {
            assert_true(s == cases[i].s);
            assert_true(mpr_done(&r));
        }
        /* Every truncation of the integer fails. */
        for (size_t cut = 0; cut < cases[i].n; cut++) {
            uint8_t *t = exact_copy(cases[i].b, cut);
            mpr_init(&r, t, cut);
            assert_int_equal(mpr_int(&r, &s), TK_EINVAL);
            mpr_init(&r, t, cut);
            assert_int_equal(mpr_uint(&r, &u), TK_EINVAL);
            mpr_init(&r, t, cut);
            assert_int_equal(mpr_skip(&r), TK_EINVAL);
            free(t);
        }
        free(buf);
    }
}

static void bool_and_nil(void **state)
{
    (void)state;
    mpw w;
    mpr r;
    bool b = false;

    mpw_init(&w);
    mpw_bool(&w, true);
    mpw_bool(&w, false);
    mpw_nil(&w);
    assert_int_equal(w.buf.size, 3);
    assert_memory_equal(w.buf.data, "\xc3\xc2\xc0", 3);

    mpr_init(&r, w.buf.data, w.buf.size);
    assert_false(mpr_is_nil(&r));
    assert_int_equal(mpr_bool(&r, &b), 0);
    assert_true(b);
    assert_int_equal(mpr_bool(&r, &b), 0);
    assert_false(b);
    assert_true(mpr_is_nil(&r));
    assert_true(mpr_is_nil(&r)); /* peeking does not consume */
    assert_int_equal(mpr_nil(&r), 0);
    assert_true(mpr_done(&r));
    assert_false(mpr_is_nil(&r)); /* nothing left */
    assert_int_equal(mpr_nil(&r), TK_EINVAL);
    assert_failed(&r);
    mpw_free(&w);
    mpw_free(&w); /* harmless twice */
}

static void str_round_trip(void **state)
{
    (void)state;
    static const struct {
        size_t len;
        uint8_t type;
        size_t hdr;
    } cases[] = {
        {0, 0xa0, 1}, {1, 0xa1, 1}, {31, 0xbf, 1}, {32, 0xd9, 2}, {255, 0xd9, 2},
        {256, 0xda, 3}, {65535, 0xda, 3}, {65536, 0xdb, 5},
    };
    char *src = malloc(65536);
    assert_non_null(src);
    for (size_t i = 0; i < 65536; i++)
        src[i] = (char)('a' + rng() % 26);
    mpw w;
    mpw_init(&w);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mpr r;
        const char *s = NULL;
        size_t len = 99;
        size_t n = cases[i].len;

        mpw_reset(&w);
        mpw_str(&w, src, n);
        assert_int_equal(w.buf.size, cases[i].hdr + n);
        assert_int_equal((uint8_t)w.buf.data[0], cases[i].type);

        uint8_t *buf = exact_copy(w.buf.data, w.buf.size);
        mpr_init(&r, buf, w.buf.size);
        assert_int_equal(mpr_str(&r, &s, &len), 0);
        assert_int_equal(len, n);
        assert_ptr_equal(s, (const char *)buf + cases[i].hdr); /* borrowed */
        assert_memory_equal(s, src, n);
        assert_true(mpr_done(&r));

        /* A str is not a bin. */
        mpr_init(&r, buf, w.buf.size);
        const uint8_t *bp;
        assert_int_equal(mpr_bin(&r, &bp, &len), TK_EINVAL);
        assert_failed(&r);

        /* One byte short of the declared length. */
        mpr_init(&r, buf, w.buf.size - 1);
        assert_int_equal(mpr_str(&r, &s, &len), TK_EINVAL);
        free(buf);
    }
    /* Short strings take a fast path: the same bytes as msgpack-c's own
     * packer, whether or not they fit the buffer's room. */
    for (size_t room = 0; room < 40; room++) {
        for (size_t n = 0; n <= 33; n++) {
            msgpack_sbuffer ref;
            msgpack_packer pk;
            msgpack_sbuffer_init(&ref);
            msgpack_packer_init(&pk, &ref, msgpack_sbuffer_write);
            msgpack_pack_str(&pk, n);
            msgpack_pack_str_body(&pk, src, n);
            mpw f; /* a fresh buffer, filled to leave exactly `room` bytes */
            mpw_init(&f);
            mpw_nil(&f);
            assert_true(f.buf.alloc - f.buf.size > room);
            while (f.buf.alloc - f.buf.size > room)
                mpw_nil(&f);
            size_t before = f.buf.size;
            mpw_str(&f, src, n);
            assert_int_equal(f.buf.size - before, ref.size);
            assert_memory_equal(f.buf.data + before, ref.data, ref.size);
            mpw_free(&f);
            msgpack_sbuffer_destroy(&ref);
        }
    }
    /* An empty string may come as NULL (an absent optional field). */
    mpw_reset(&w);
    mpw_str(&w, NULL, 0);
    assert_int_equal(w.buf.size, 1);
    assert_int_equal((uint8_t)w.buf.data[0], 0xa0);
    /* mpw_cstr writes the same as mpw_str with strlen. */
    mpw_reset(&w);
    mpw_cstr(&w, "hello");
    assert_int_equal(w.buf.size, 6);
    assert_memory_equal(w.buf.data, "\xa5hello", 6);
    mpw_free(&w);
    free(src);
}

static void bin_round_trip(void **state)
{
    (void)state;
    static const struct {
        size_t len;
        uint8_t type;
        size_t hdr;
    } cases[] = {
        {0, 0xc4, 2}, {1, 0xc4, 2}, {31, 0xc4, 2}, {255, 0xc4, 2}, {256, 0xc5, 3},
        {65535, 0xc5, 3}, {65536, 0xc6, 5},
    };
    uint8_t *src = malloc(65536);
    assert_non_null(src);
    for (size_t i = 0; i < 65536; i++)
        src[i] = (uint8_t)rng();
    mpw w;
    mpw_init(&w);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mpr r;
        const uint8_t *p = NULL;
        size_t len = 99;
        size_t n = cases[i].len;

        mpw_reset(&w);
        mpw_bin(&w, src, n);
        assert_int_equal(w.buf.size, cases[i].hdr + n);
        assert_int_equal((uint8_t)w.buf.data[0], cases[i].type);

        uint8_t *buf = exact_copy(w.buf.data, w.buf.size);
        mpr_init(&r, buf, w.buf.size);
        assert_int_equal(mpr_bin(&r, &p, &len), 0);
        assert_int_equal(len, n);
        assert_ptr_equal(p, buf + cases[i].hdr);
        assert_memory_equal(p, src, n);
        assert_true(mpr_done(&r));

        mpr_init(&r, buf, w.buf.size);
        const char *s;
        assert_int_equal(mpr_str(&r, &s, &len), TK_EINVAL); /* a bin is not a str */
        assert_failed(&r);

        mpr_init(&r, buf, w.buf.size - 1);
        assert_int_equal(mpr_bin(&r, &p, &len), TK_EINVAL);
        free(buf);
    }
    mpw_free(&w);
    free(src);
}

static void array_and_map_round_trip(void **state)
{
    (void)state;
    static const struct {
        uint32_t n;
        size_t hdr;
    } cases[] = {{0, 1}, {1, 1}, {15, 1}, {16, 3}, {65535, 3}, {65536, 5}, {70000, 5}};
    mpw w;
    mpw_init(&w);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int map = 0; map < 2; map++) {
            mpr r;
            uint32_t n = 0;
            uint32_t elems = map ? 2 * cases[i].n : cases[i].n;
            mpw_reset(&w);
            if (map)
                mpw_map(&w, cases[i].n);
            else
                mpw_array(&w, cases[i].n);
            assert_int_equal(w.buf.size, cases[i].hdr);
            for (uint32_t k = 0; k < elems; k++)
                mpw_uint(&w, k & 0x7f);

            mpr_init(&r, w.buf.data, w.buf.size);
            assert_int_equal(map ? mpr_map(&r, &n) : mpr_array(&r, &n), 0);
            assert_int_equal(n, cases[i].n);
            for (uint32_t k = 0; k < elems; k++) {
                uint64_t v;
                assert_int_equal(mpr_uint(&r, &v), 0);
                assert_int_equal(v, k & 0x7f);
            }
            assert_true(mpr_done(&r));

            /* Array is not map and vice versa. */
            mpr_init(&r, w.buf.data, w.buf.size);
            assert_int_equal(map ? mpr_array(&r, &n) : mpr_map(&r, &n), TK_EINVAL);
            assert_failed(&r);

            /* Skip takes the whole container. */
            mpr_init(&r, w.buf.data, w.buf.size);
            assert_int_equal(mpr_skip(&r), 0);
            assert_true(mpr_done(&r));
        }
    }
    mpw_free(&w);
}

static void reset_keeps_memory(void **state)
{
    (void)state;
    mpw w;
    mpw_init(&w);
    for (int i = 0; i < 1000; i++)
        mpw_uint(&w, UINT64_MAX);
    assert_int_equal(w.buf.size, 9000);
    char *data = w.buf.data;
    size_t alloc = w.buf.alloc;
    mpw_reset(&w);
    assert_int_equal(w.buf.size, 0);
    assert_ptr_equal(w.buf.data, data);
    assert_int_equal(w.buf.alloc, alloc);
    mpw_nil(&w);
    assert_int_equal(w.buf.size, 1);
    assert_int_equal((uint8_t)w.buf.data[0], 0xc0);
    mpw_free(&w);
}

/* ---- a nested document -------------------------------------------------- */

static const char doc_name[] = "tokend \xe2\x9c\x93"; /* check mark, UTF-8 */
static const char doc_long[] = "a string long enough for a str8 header....";

static void write_doc(mpw *w)
{
    uint8_t blob[20];
    for (int i = 0; i < 20; i++)
        blob[i] = (uint8_t)(i * 13);
    mpw_map(w, 6);
    mpw_cstr(w, "id");
    mpw_uint(w, 123456789012ull);
    mpw_cstr(w, "name");
    mpw_cstr(w, doc_name);
    mpw_cstr(w, "neg");
    mpw_int(w, -300);
    mpw_cstr(w, "flags");
    mpw_array(w, 3);
    mpw_bool(w, true);
    mpw_bool(w, false);
    mpw_nil(w);
    mpw_cstr(w, "blob");
    mpw_bin(w, blob, sizeof blob);
    mpw_cstr(w, "nested");
    mpw_map(w, 1);
    mpw_cstr(w, "deep");
    mpw_array(w, 2);
    mpw_array(w, 1);
    mpw_uint(w, 65536);
    mpw_cstr(w, doc_long);
}

static int expect_key(mpr *r, const char *key)
{
    const char *s;
    size_t n;
    if (mpr_str(r, &s, &n))
        return -1;
    return n == strlen(key) && memcmp(s, key, n) == 0 ? 0 : -1;
}

/* Reads the document exactly as written; 0 when every value matches and
 * nothing is left over. */
static int read_doc(const uint8_t *data, size_t len)
{
    mpr r;
    uint32_t n;
    uint64_t u;
    int64_t i64;
    bool b;
    const char *s;
    const uint8_t *p;
    size_t sl;

    mpr_init(&r, data, len);
    if (mpr_map(&r, &n) || n != 6)
        return -1;
    if (expect_key(&r, "id") || mpr_uint(&r, &u) || u != 123456789012ull)
        return -1;
    if (expect_key(&r, "name") || mpr_str(&r, &s, &sl) || sl != strlen(doc_name) ||
        memcmp(s, doc_name, sl) != 0 || !mpr_utf8_valid(s, sl))
        return -1;
    if (expect_key(&r, "neg") || mpr_int(&r, &i64) || i64 != -300)
        return -1;
    if (expect_key(&r, "flags") || mpr_array(&r, &n) || n != 3)
        return -1;
    if (mpr_bool(&r, &b) || !b || mpr_bool(&r, &b) || b || mpr_nil(&r))
        return -1;
    if (expect_key(&r, "blob") || mpr_bin(&r, &p, &sl) || sl != 20 || p[19] != (uint8_t)(19 * 13))
        return -1;
    if (expect_key(&r, "nested") || mpr_map(&r, &n) || n != 1)
        return -1;
    if (expect_key(&r, "deep") || mpr_array(&r, &n) || n != 2 || mpr_array(&r, &n) || n != 1)
        return -1;
    if (mpr_uint(&r, &u) || u != 65536)
        return -1;
    if (mpr_str(&r, &s, &sl) || sl != strlen(doc_long) || memcmp(s, doc_long, sl) != 0)
        return -1;
    return mpr_done(&r) ? 0 : -1;
}

static void nested_document(void **state)
{
    (void)state;
    mpw w;
    mpw_init(&w);
    write_doc(&w);
    size_t n = w.buf.size;
    uint8_t *full = exact_copy(w.buf.data, n);
    assert_int_equal(read_doc(full, n), 0);

    mpr r;
    mpr_init(&r, full, n);
    assert_int_equal(mpr_skip(&r), 0);
    assert_true(mpr_done(&r));
    free(full);

    /* One byte too many: everything reads but mpr_done says no. */
    uint8_t *more = malloc(n + 1);
    assert_non_null(more);
    memcpy(more, w.buf.data, n);
    more[n] = 0xc0;
    assert_int_equal(read_doc(more, n + 1), -1);
    free(more);
    mpw_free(&w);
}

static void truncated_document_fails_at_every_length(void **state)
{
    (void)state;
    mpw w;
    mpw_init(&w);
    write_doc(&w);
    size_t n = w.buf.size;
    assert_true(n > 100);

    for (size_t cut = 0; cut < n; cut++) {
        uint8_t *t = exact_copy(w.buf.data, cut);
        mpr r;
        assert_int_equal(read_doc(t, cut), -1);

        mpr_init(&r, t, cut);
        assert_int_equal(mpr_skip(&r), TK_EINVAL);
        assert_failed(&r);
        assert_true(r.p >= t && r.p <= t + cut);
        free(t);
    }
    mpw_free(&w);
}

/* ---- hostile counts, mismatches, sticky errors -------------------------- */

static void huge_counts_refused(void **state)
{
    (void)state;
    uint8_t buf[5 + 10];
    mpr r;
    uint32_t n = 7;

    /* array32 claiming 0xFFFFFFFF elements, 10 bytes behind it. */
    memset(buf, 0xc0, sizeof buf);
    memcpy(buf, "\xdd\xff\xff\xff\xff", 5);
    mpr_init(&r, buf, sizeof buf);
    assert_int_equal(mpr_array(&r, &n), TK_EINVAL);
    assert_failed(&r);
    assert_int_equal(n, 7);
    mpr_init(&r, buf, sizeof buf);
    assert_int_equal(mpr_skip(&r), TK_EINVAL);

    buf[0] = 0xdf; /* map32 likewise */
    mpr_init(&r, buf, sizeof buf);
    assert_int_equal(mpr_map(&r, &n), TK_EINVAL);
    mpr_init(&r, buf, sizeof buf);
    assert_int_equal(mpr_skip(&r), TK_EINVAL);

    /* Exactly at the limit: array of 10 with 10 bytes left is fine, 11 not. */
    memcpy(buf, "\xdd\x00\x00\x00\x0a", 5);
    mpr_init(&r, buf, sizeof buf);
    assert_int_equal(mpr_array(&r, &n), 0);
    assert_int_equal(n, 10);
    buf[4] = 11;
    mpr_init(&r, buf, sizeof buf);
    assert_int_equal(mpr_array(&r, &n), TK_EINVAL);

    /* A map needs two bytes per entry: 5 entries fit in 10 bytes, 6 do not. */
    memcpy(buf, "\xdf\x00\x00\x00\x05", 5);
    mpr_init(&r, buf, sizeof buf);
    assert_int_equal(mpr_map(&r, &n), 0);
    assert_int_equal(n, 5);
    buf[4] = 6;
    mpr_init(&r, buf, sizeof buf);
    assert_int_equal(mpr_map(&r, &n), TK_EINVAL);

    /* Fixed-size headers too: fixmap of 15 entries with 29 bytes left. */
    uint8_t fm[30];
    memset(fm, 0xc0, sizeof fm);
    fm[0] = 0x8f;
    mpr_init(&r, fm, sizeof fm);
    assert_int_equal(mpr_map(&r, &n), TK_EINVAL);
    mpr_init(&r, fm, sizeof fm);
    assert_int_equal(mpr_skip(&r), TK_EINVAL);

    /* str32 / bin32 claiming 4 GiB. */
    uint8_t s32[] = {0xdb, 0xff, 0xff, 0xff, 0xff, 'a', 'b'};
    const char *s;
    size_t sl;
    mpr_init(&r, s32, sizeof s32);
    assert_int_equal(mpr_str(&r, &s, &sl), TK_EINVAL);
    s32[0] = 0xc6;
    mpr_init(&r, s32, sizeof s32);
    const uint8_t *bp;
    assert_int_equal(mpr_bin(&r, &bp, &sl), TK_EINVAL);
    mpr_init(&r, s32, sizeof s32);
    assert_int_equal(mpr_skip(&r), TK_EINVAL);
}

static void type_mismatch_refused_and_sticky(void **state)
{
    (void)state;
    /* One value of each kind; each reader accepts exactly its own. */
    static const uint8_t vals[][3] = {
        {0x05}, {0xc0}, {0xc3}, {0xa1, 'x'}, {0xc4, 0x01, 0x00}, {0x91, 0x01}, {0x81, 0x01, 0x02},
    };
    enum { V_INT, V_NIL, V_BOOL, V_STR, V_BIN, V_ARR, V_MAP, NV };
    static const size_t lens[NV] = {1, 1, 1, 2, 3, 2, 3};

    for (int v = 0; v < NV; v++) {
        for (int reader = 0; reader < NV; reader++) {
            mpr r;
            uint64_t u;
            int64_t i64;
            bool b;
            const char *s;
            const uint8_t *p;
            size_t sl;
            uint32_t n;
            int rc = 0;

            mpr_init(&r, vals[v], lens[v]);
            switch (reader) {
            case V_INT:
                rc = mpr_uint(&r, &u);
                if (rc == 0) {
                    mpr_init(&r, vals[v], lens[v]);
                    rc = mpr_int(&r, &i64);
                }
                break;
            case V_NIL: rc = mpr_nil(&r); break;
            case V_BOOL: rc = mpr_bool(&r, &b); break;
            case V_STR: rc = mpr_str(&r, &s, &sl); break;
            case V_BIN: rc = mpr_bin(&r, &p, &sl); break;
            case V_ARR: rc = mpr_array(&r, &n); break;
            case V_MAP: rc = mpr_map(&r, &n); break;
            }
            if (reader == v) {
                assert_int_equal(rc, 0);
                if (v != V_ARR && v != V_MAP) /* containers: elements remain */
                    assert_true(mpr_done(&r));
                assert_int_equal(r.err, 0);
                continue;
            }
            assert_int_equal(rc, TK_EINVAL);
            assert_failed(&r);
            /* Sticky: even the right reader fails now, and peeks say no. */
            assert_false(mpr_is_nil(&r));
            assert_int_equal(mpr_skip(&r), TK_EINVAL);
            assert_int_equal(mpr_int(&r, &i64), TK_EINVAL);
            assert_int_equal(mpr_nil(&r), TK_EINVAL);
            assert_int_equal(mpr_bool(&r, &b), TK_EINVAL);
            assert_int_equal(mpr_str(&r, &s, &sl), TK_EINVAL);
            assert_int_equal(mpr_bin(&r, &p, &sl), TK_EINVAL);
            assert_int_equal(mpr_array(&r, &n), TK_EINVAL);
            assert_int_equal(mpr_map(&r, &n), TK_EINVAL);
            assert_int_equal(mpr_uint(&r, &u), TK_EINVAL);
            assert_int_equal(r.err, TK_EINVAL);
        }
    }

    /* Sticky after a valid read too: nil is there but err was set. */
    static const uint8_t two[] = {0xc2, 0xc0};
    mpr r;
    uint32_t n;
    mpr_init(&r, two, sizeof two);
    assert_int_equal(mpr_array(&r, &n), TK_EINVAL);
    bool b;
    assert_int_equal(mpr_bool(&r, &b), TK_EINVAL);

    /* Float and ext are readable only by mpr_skip. */
    static const uint8_t f32[] = {0xca, 0x3f, 0x80, 0x00, 0x00};
    int64_t i64;
    uint64_t u;
    mpr_init(&r, f32, sizeof f32);
    assert_int_equal(mpr_int(&r, &i64), TK_EINVAL);
    mpr_init(&r, f32, sizeof f32);
    assert_int_equal(mpr_uint(&r, &u), TK_EINVAL);
    mpr_init(&r, f32, sizeof f32);
    assert_int_equal(mpr_skip(&r), 0);
    assert_true(mpr_done(&r));
}

/* ---- skip --------------------------------------------------------------- */

static void skip_every_format(void **state)
{
    (void)state;
    static const struct {
        uint8_t b[24];
        size_t n;
    } v[] = {
        {{0x00}, 1}, {{0x7f}, 1}, {{0xe0}, 1}, {{0xff}, 1},        /* fixints */
        {{0xc0}, 1}, {{0xc2}, 1}, {{0xc3}, 1},                     /* nil, bools */
        {{0xcc, 1}, 2}, {{0xcd, 1, 2}, 3}, {{0xce, 1, 2, 3, 4}, 5},
        {{0xcf, 1, 2, 3, 4, 5, 6, 7, 8}, 9},                       /* uints */
        {{0xd0, 1}, 2}, {{0xd1, 1, 2}, 3}, {{0xd2, 1, 2, 3, 4}, 5},
        {{0xd3, 1, 2, 3, 4, 5, 6, 7, 8}, 9},                       /* ints */
        {{0xca, 1, 2, 3, 4}, 5}, {{0xcb, 1, 2, 3, 4, 5, 6, 7, 8}, 9}, /* floats */
        {{0xa0}, 1}, {{0xa3, 'a', 'b', 'c'}, 4},                   /* fixstr */
        {{0xd9, 2, 'a', 'b'}, 4}, {{0xda, 0, 2, 'a', 'b'}, 5},
        {{0xdb, 0, 0, 0, 2, 'a', 'b'}, 7},                         /* str 8/16/32 */
        {{0xc4, 2, 1, 2}, 4}, {{0xc5, 0, 2, 1, 2}, 5},
        {{0xc6, 0, 0, 0, 2, 1, 2}, 7},                             /* bin 8/16/32 */
        {{0xd4, 7, 1}, 3}, {{0xd5, 7, 1, 2}, 4}, {{0xd6, 7, 1, 2, 3, 4}, 6},
        {{0xd7, 7, 1, 2, 3, 4, 5, 6, 7, 8}, 10},
        {{0xd8, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, 18}, /* fixext */
        {{0xc7, 2, 7, 1, 2}, 5}, {{0xc8, 0, 2, 7, 1, 2}, 6},
        {{0xc9, 0, 0, 0, 2, 7, 1, 2}, 8},                          /* ext 8/16/32 */
        {{0xc7, 0, 7}, 3},                                         /* empty ext */
        {{0x90}, 1}, {{0x92, 0x01, 0xc0}, 3}, {{0xdc, 0, 1, 0x01}, 4},
        {{0xdd, 0, 0, 0, 1, 0x01}, 6},                             /* arrays */
        {{0x80}, 1}, {{0x81, 0x01, 0x02}, 3}, {{0xde, 0, 1, 0x01, 0x02}, 5},
        {{0xdf, 0, 0, 0, 1, 0x01, 0x02}, 7},                       /* maps */
        {{0x92, 0x91, 0x90, 0x81, 0xa1, 'k', 0xcb, 1, 2, 3, 4, 5, 6, 7, 8}, 15},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint8_t buf[32];
        mpr r;
        uint64_t u;

        /* The value then a sentinel: skip must land exactly on the sentinel. */
        memcpy(buf, v[i].b, v[i].n);
        buf[v[i].n] = 0x2a;
        uint8_t *t = exact_copy(buf, v[i].n + 1);
        mpr_init(&r, t, v[i].n + 1);
        assert_int_equal(mpr_skip(&r), 0);
        assert_ptr_equal(r.p, t + v[i].n);
        assert_int_equal(mpr_uint(&r, &u), 0);
        assert_int_equal(u, 0x2a);
        assert_true(mpr_done(&r));
        free(t);

        /* Every truncation of it fails. */
        for (size_t cut = 0; cut < v[i].n; cut++) {
            t = exact_copy(v[i].b, cut);
            mpr_init(&r, t, cut);
            assert_int_equal(mpr_skip(&r), TK_EINVAL);
            assert_failed(&r);
            free(t);
        }
    }

    /* 0xc1 is never used. */
    static const uint8_t c1[] = {0xc1};
    mpr r;
    mpr_init(&r, c1, 1);
    assert_int_equal(mpr_skip(&r), TK_EINVAL);
    mpr_init(&r, c1, 1);
    assert_int_equal(mpr_nil(&r), TK_EINVAL);
}

/* depth nested containers (arrays, or maps keyed by nil when map is set)
 * around a single 1, followed by a sentinel. */
static size_t nest(uint8_t *buf, int depth, bool map)
{
    size_t n = 0;
    for (int i = 0; i < depth; i++) {
        if (map) {
            buf[n++] = 0x81;
            buf[n++] = 0xc0;
        } else {
            buf[n++] = 0x91;
        }
    }
    buf[n++] = 0x01;
    return n;
}

static void skip_depth_bounded(void **state)
{
    (void)state;
    uint8_t buf[128];
    mpr r;

    for (int map = 0; map < 2; map++) {
        for (int depth = 0; depth <= 40; depth++) {
            size_t n = nest(buf, depth, map);
            buf[n] = 0x2a;
            mpr_init(&r, buf, n + 1);
            if (depth <= 32) {
                assert_int_equal(mpr_skip(&r), 0);
                assert_ptr_equal(r.p, buf + n);
            } else {
                assert_int_equal(mpr_skip(&r), TK_EINVAL);
                assert_failed(&r);
            }
        }
    }
    /* An empty container still counts as a level. */
    memset(buf, 0x91, 32);
    buf[32] = 0x90;
    mpr_init(&r, buf, 33);
    assert_int_equal(mpr_skip(&r), TK_EINVAL);
    buf[31] = 0x90;
    mpr_init(&r, buf, 32);
    assert_int_equal(mpr_skip(&r), 0);
    assert_true(mpr_done(&r));

    /* Siblings after a deep branch: [[1,[2,[3]]],4,{5:[6]}] then sentinel. */
    static const uint8_t sib[] = {0x93, 0x92, 0x01, 0x92, 0x02, 0x91, 0x03, 0x04,
                                  0x81, 0x05, 0x91, 0x06, 0x2a};
    mpr_init(&r, sib, sizeof sib);
    assert_int_equal(mpr_skip(&r), 0);
    assert_ptr_equal(r.p, sib + sizeof sib - 1);

    /* Deep nesting well past the bound is refused without recursion. */
    uint8_t *deep = malloc(100000);
    assert_non_null(deep);
    memset(deep, 0x91, 100000);
    mpr_init(&r, deep, 100000);
    assert_int_equal(mpr_skip(&r), TK_EINVAL);
    free(deep);
}

/* ---- random input ------------------------------------------------------- */

/* Drives every reader over buf and checks the cursor never leaves it, never
 * stalls on success, and stays failed once failed. */
static void drive(const uint8_t *buf, size_t len, int mode)
{
    mpr r;
    mpr_init(&r, buf, len);
    for (int step = 0; step < 100 && !r.err && r.p < r.end; step++) {
        const uint8_t *before = r.p;
        uint8_t t = *r.p;
        uint64_t u;
        int64_t i64;
        bool b;
        const char *s = NULL;
        const uint8_t *p = NULL;
        size_t sl = 0;
        uint32_t n = 0;
        int rc;
        int which = mode == 0 ? (int)(rng() % 9) : -1;

        if (which < 0) { /* pick the reader the type byte asks for */
            if (t <= 0x7f || t >= 0xe0 || (t >= 0xcc && t <= 0xd3))
                which = (t & 1) ? 0 : 1;
            else if (t >= 0x80 && t <= 0x8f) which = 7;
            else if (t >= 0x90 && t <= 0x9f) which = 6;
            else if ((t >= 0xa0 && t <= 0xbf) || (t >= 0xd9 && t <= 0xdb)) which = 4;
            else if (t >= 0xc4 && t <= 0xc6) which = 5;
            else if (t == 0xc0) which = 2;
            else if (t == 0xc2 || t == 0xc3) which = 3;
            else if (t == 0xdc || t == 0xdd) which = 6;
            else if (t == 0xde || t == 0xdf) which = 7;
            else which = 8;
        }
        switch (which) {
        case 0: rc = mpr_uint(&r, &u); break;
        case 1: rc = mpr_int(&r, &i64); break;
        case 2: rc = mpr_nil(&r); break;
        case 3: rc = mpr_bool(&r, &b); break;
        case 4: rc = mpr_str(&r, &s, &sl); break;
        case 5: rc = mpr_bin(&r, &p, &sl); break;
        case 6: rc = mpr_array(&r, &n); break;
        case 7: rc = mpr_map(&r, &n); break;
        default: rc = mpr_skip(&r); break;
        }
        assert_true(r.p >= buf && r.p <= buf + len);
        if (rc == 0) {
            assert_int_equal(r.err, 0);
            assert_true(r.p > before);
            if (which == 4) {
                assert_true((const uint8_t *)s >= buf && (const uint8_t *)s + sl <= r.p);
                (void)mpr_utf8_valid(s, sl);
            }
            if (which == 5)
                assert_true(p >= buf && p + sl <= r.p);
            if (which == 6)
                assert_true(n <= (size_t)(r.end - r.p));
            if (which == 7)
                assert_true(2 * (uint64_t)n <= (size_t)(r.end - r.p));
        } else {
            assert_int_equal(rc, TK_EINVAL);
            assert_int_equal(r.err, TK_EINVAL);
            assert_int_equal(mpr_skip(&r), TK_EINVAL);
            assert_false(mpr_done(&r));
        }
    }
    (void)mpr_utf8_valid((const char *)buf, len);
}

static void random_bytes_never_crash(void **state)
{
    (void)state;
    uint8_t src[64];
    for (int i = 0; i < 100000; i++) {
        size_t len = (size_t)(rng() % 65);
        for (size_t k = 0; k < len; k++)
            src[k] = (uint8_t)rng();
        uint8_t *t = exact_copy(src, len);
        drive(t, len, i & 1);
        free(t);
    }
}

static void mutated_document_never_crashes(void **state)
{
    (void)state;
    mpw w;
    mpw_init(&w);
    write_doc(&w);
    size_t n = w.buf.size;
    for (int i = 0; i < 20000; i++) {
        uint8_t *t = exact_copy(w.buf.data, n);
        int flips = 1 + (int)(rng() % 4);
        for (int k = 0; k < flips; k++)
            t[rng() % n] = (uint8_t)rng();
        size_t len = (i & 3) ? n : (size_t)(rng() % (n + 1));
        (void)read_doc(t, len);
        drive(t, len, 1);
        mpr r;
        mpr_init(&r, t, len);
        if (mpr_skip(&r) == 0)
            assert_true(r.p <= t + len);
        free(t);
    }
    mpw_free(&w);
}

/* ---- UTF-8 -------------------------------------------------------------- */

static void utf8_cases(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t n;
        bool ok;
    } c[] = {
        {"", 0, true},
        {"plain ascii", 11, true},
        {"\x00", 1, true},                          /* U+0000 is well-formed */
        {"\x7f", 1, true},
        {"\xc2\x80", 2, true},                      /* U+0080 */
        {"\xc3\xa9", 2, true},                      /* e acute */
        {"\xdf\xbf", 2, true},                      /* U+07FF */
        {"\xe0\xa0\x80", 3, true},                  /* U+0800 */
        {"\xe2\x82\xac", 3, true},                  /* euro sign */
        {"\xed\x9f\xbf", 3, true},                  /* U+D7FF */
        {"\xee\x80\x80", 3, true},                  /* U+E000 */
        {"\xef\xbf\xbf", 3, true},                  /* U+FFFF */
        {"\xf0\x90\x80\x80", 4, true},              /* U+10000 */
        {"\xf0\x9f\x98\x80", 4, true},              /* emoji */
        {"\xf4\x8f\xbf\xbf", 4, true},              /* U+10FFFF */
        {"a\xc3\xa9z\xe2\x82\xac!", 7, true},
        {"\xc0\x80", 2, false},                     /* overlong NUL */
        {"\xc1\xbf", 2, false},                     /* overlong */
        {"\xe0\x80\x80", 3, false},                 /* overlong */
        {"\xe0\x9f\xbf", 3, false},                 /* overlong U+07FF */
        {"\xf0\x80\x80\x80", 4, false},             /* overlong */
        {"\xf0\x8f\xbf\xbf", 4, false},             /* overlong U+FFFF */
        {"\xed\xa0\x80", 3, false},                 /* surrogate D800 */
        {"\xed\xbf\xbf", 3, false},                 /* surrogate DFFF */
        {"\xf4\x90\x80\x80", 4, false},             /* U+110000 */
        {"\xf5\x80\x80\x80", 4, false},
        {"\xff", 1, false},
        {"\xfe", 1, false},
        {"\xe2\x82", 2, false},                     /* truncated */
        {"\xc3", 1, false},
        {"\xf0\x9f\x98", 3, false},
        {"ab\xe2\x82", 4, false},
        {"\x80", 1, false},                         /* lone continuation */
        {"\xbf", 1, false},
        {"a\x80z", 3, false},
        {"\xc3\x28", 2, false},                     /* bad continuation */
        {"\xe2\x28\xa1", 3, false},
        {"\xe2\x82\x28", 3, false},
        {"\xf0\x90\x28\xbc", 4, false},
        {"\xf0\x90\x80\x28", 4, false},
        {"\xc3\xa9\xc3", 3, false},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char *t = (char *)exact_copy(c[i].s, c[i].n);
        if (mpr_utf8_valid(t, c[i].n) != c[i].ok)
            fail_msg("case %zu: expected %s", i, c[i].ok ? "valid" : "invalid");
        free(t);
    }
    assert_true(mpr_utf8_valid(NULL, 0));

    /* The same cases inside ASCII runs of every length around them: the
     * validator goes a word at a time over ASCII, and a sequence must be
     * judged the same at every alignment. */
    char buf[64];
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        for (size_t pre = 0; pre <= 17; pre++) {
            for (size_t post = 0; post <= 9; post++) {
                memset(buf, 'x', pre);
                memcpy(buf + pre, c[i].s, c[i].n);
                memset(buf + pre + c[i].n, 'y', post);
                size_t n = pre + c[i].n + post;
                char *t = (char *)exact_copy(buf, n);
                if (mpr_utf8_valid(t, n) != c[i].ok)
                    fail_msg("case %zu after %zu ASCII bytes, before %zu: expected %s", i, pre,
                             post, c[i].ok ? "valid" : "invalid");
                free(t);
            }
        }
    }
}

/* Every code point encodes to bytes the validator accepts; every surrogate
 * encoded the same way is refused. */
static void utf8_every_code_point(void **state)
{
    (void)state;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        char b[4];
        size_t n;
        if (cp < 0x80) {
            b[0] = (char)cp;
            n = 1;
        } else if (cp < 0x800) {
            b[0] = (char)(0xC0 | cp >> 6);
            b[1] = (char)(0x80 | (cp & 0x3F));
            n = 2;
        } else if (cp < 0x10000) {
            b[0] = (char)(0xE0 | cp >> 12);
            b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
            b[2] = (char)(0x80 | (cp & 0x3F));
            n = 3;
        } else {
            b[0] = (char)(0xF0 | cp >> 18);
            b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
            b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
            b[3] = (char)(0x80 | (cp & 0x3F));
            n = 4;
        }
        bool want = cp < 0xD800 || cp > 0xDFFF;
        if (mpr_utf8_valid(b, n) != want)
            fail_msg("U+%04X", (unsigned)cp);
        if (n > 1 && mpr_utf8_valid(b, n - 1))
            fail_msg("U+%04X truncated accepted", (unsigned)cp);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(uint_round_trip),
        cmocka_unit_test(int_round_trip),
        cmocka_unit_test(integer_formats_by_hand),
        cmocka_unit_test(bool_and_nil),
        cmocka_unit_test(str_round_trip),
        cmocka_unit_test(bin_round_trip),
        cmocka_unit_test(array_and_map_round_trip),
        cmocka_unit_test(reset_keeps_memory),
        cmocka_unit_test(nested_document),
        cmocka_unit_test(truncated_document_fails_at_every_length),
        cmocka_unit_test(huge_counts_refused),
        cmocka_unit_test(type_mismatch_refused_and_sticky),
        cmocka_unit_test(skip_every_format),
        cmocka_unit_test(skip_depth_bounded),
        cmocka_unit_test(random_bytes_never_crash),
        cmocka_unit_test(mutated_document_never_crashes),
        cmocka_unit_test(utf8_cases),
        cmocka_unit_test(utf8_every_code_point),
    };
    return cmocka_run_group_tests_name("mp", tests, NULL, NULL);
}
