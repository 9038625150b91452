/* test_sha256.c - SHA-256 known answers (FIPS 180-2 examples) and the
 * incremental form agreeing with the one-shot form at every split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/sha256.h"

static void hex(const uint8_t *d, char out[65])
{
    for (int i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void check(const void *msg, size_t len, const char *want)
{
    uint8_t d[32];
    char h[65];
    sha256(d, msg, len);
    hex(d, h);
    assert_string_equal(h, want);
}

static void known_answers(void **state)
{
    (void)state;
    check("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    check("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    size_t n = 1000000;
    char *a = malloc(n);
    memset(a, 'a', n);
    check(a, n, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}

static void pieces_equal_one_pass(void **state)
{
    (void)state;
    uint8_t msg[300], one[32], inc[32];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)(i * 7 + 3);
    sha256(one, msg, sizeof msg);
    for (size_t split = 0; split <= sizeof msg; split++) {
        sha256_ctx c;
        sha256_init(&c);
        sha256_update(&c, msg, split);
        sha256_update(&c, msg + split, sizeof msg - split);
        sha256_final(&c, inc);
        assert_memory_equal(one, inc, 32);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(known_answers),
        cmocka_unit_test(pieces_equal_one_pass),
    };
    return cmocka_run_group_tests_name("sha256", tests, NULL, NULL);
}
