/* test_crc32c.c - CRC-32C: known answers, hardware and table paths agree with
 * a bit-at-a-time reference at every length and alignment, extension. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/crc32c.h"

/* Test hook: the table-driven path, defined non-static in core/crc32c.c and
 * deliberately not in crc32c.h. crc32c_extend takes the SSE4.2 path on CPUs
 * that have it, so comparing the two covers both. */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);

/* Independent reference: one bit at a time, straight from the definition. */
static uint32_t crc32c_ref(uint32_t crc, const uint8_t *p, size_t len)
{
    crc = ~crc;
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void fill_random(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rng();
}

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

static void check_vectors(crc_fn f)
{
    uint8_t buf[32];

    assert_int_equal(f(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(f(0, "", 0), 0u);
    assert_int_equal(f(0, NULL, 0), 0u);
    assert_int_equal(f(0x12345678u, NULL, 0), 0x12345678u);

    memset(buf, 0, sizeof buf);
    assert_int_equal(f(0, buf, sizeof buf), 0x8A9136AAu);
    memset(buf, 0xFF, sizeof buf);
    assert_int_equal(f(0, buf, sizeof buf), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i; /* RFC 3720 B.4, incrementing */
    assert_int_equal(f(0, buf, sizeof buf), 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i); /* RFC 3720 B.4, decrementing */
    assert_int_equal(f(0, buf, sizeof buf), 0x113FDB5Cu);
}

static void known_answers_public(void **state)
{
    (void)state;
    check_vectors(crc32c_extend);
}

static void known_answers_table(void **state)
{
    (void)state;
    check_vectors(crc32c_sw);
}

static void known_answers_reference(void **state)
{
    (void)state;
    /* The reference itself must be right, or the agreement tests mean nothing. */
    assert_int_equal(crc32c_ref(0, (const uint8_t *)"123456789", 9), 0xE3069283u);
}

/* Every length 0..300 at every alignment 0..15, with random guard bytes
 * around the range: all three implementations agree, and bytes outside
 * [buf, buf+len) play no part. */
static void paths_agree_every_length_and_alignment(void **state)
{
    (void)state;
    static uint8_t big[300 + 16 + 16];
    for (size_t align = 0; align < 16; align++) {
        for (size_t len = 0; len <= 300; len++) {
            fill_random(big, sizeof big);
            const uint8_t *p = big + align;
            uint32_t seed = (len & 1) ? (uint32_t)rng() : 0;
            uint32_t want = crc32c_ref(seed, p, len);
            assert_int_equal(crc32c_extend(seed, p, len), want);
            assert_int_equal(crc32c_sw(seed, p, len), want);
        }
    }
}

static void extending_in_pieces_equals_one_pass(void **state)
{
    (void)state;
    uint8_t buf[257];
    fill_random(buf, sizeof buf);
    uint32_t whole = crc32c_extend(0, buf, sizeof buf);
    assert_int_equal(whole, crc32c_ref(0, buf, sizeof buf));

    for (size_t cut = 0; cut <= sizeof buf; cut++) {
        uint32_t c = crc32c_extend(0, buf, cut);
        assert_int_equal(crc32c_extend(c, buf + cut, sizeof buf - cut), whole);
        c = crc32c_sw(0, buf, cut);
        assert_int_equal(crc32c_sw(c, buf + cut, sizeof buf - cut), whole);
    }
    /* Byte by byte. */
    uint32_t c = 0;
    for (size_t i = 0; i < sizeof buf; i++)
        c = crc32c_extend(c, buf + i, 1);
    assert_int_equal(c, whole);
    /* Random three-way splits. */
    for (int k = 0; k < 1000; k++) {
        size_t a = (size_t)(rng() % (sizeof buf + 1));
        size_t b = a + (size_t)(rng() % (sizeof buf - a + 1));
        c = crc32c_extend(0, buf, a);
        c = crc32c_extend(c, buf + a, b - a);
        c = crc32c_extend(c, buf + b, sizeof buf - b);
        assert_int_equal(c, whole);
    }
}

static void every_single_bit_flip_changes_the_crc(void **state)
{
    (void)state;
    uint8_t buf[64];
    fill_random(buf, sizeof buf);
    uint32_t whole = crc32c_extend(0, buf, sizeof buf);
    for (size_t i = 0; i < sizeof buf * 8; i++) {
        buf[i / 8] ^= (uint8_t)(1u << (i % 8));
        assert_int_not_equal(crc32c_extend(0, buf, sizeof buf), whole);
        assert_int_not_equal(crc32c_sw(0, buf, sizeof buf), whole);
        buf[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(known_answers_reference),
        cmocka_unit_test(known_answers_public),
        cmocka_unit_test(known_answers_table),
        cmocka_unit_test(paths_agree_every_length_and_alignment),
        cmocka_unit_test(extending_in_pieces_equals_one_pass),
        cmocka_unit_test(every_single_bit_flip_changes_the_crc),
    };
    return cmocka_run_group_tests_name("crc32c", tests, NULL, NULL);
}
