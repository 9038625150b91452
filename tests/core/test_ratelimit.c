/*
 * test_ratelimit.c - core/ratelimit.c: token buckets with a test clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/ratelimit.h"

static void burst_then_rate(void **state)
{
    (void)state;
    rl *r;
    int64_t wait = -1;
    rl_new(&r);
    /* 10 a second, 3 at once: three now, the fourth waits 100 ms. */
    for (int i = 0; i < 3; i++)
        assert_true(rl_take(r, 7, 10, 3, 1000, &wait));
    assert_false(rl_take(r, 7, 10, 3, 1000, &wait));
    assert_int_equal(wait, 100);
    assert_false(rl_take(r, 7, 10, 3, 1099, &wait));
    assert_int_equal(wait, 1);
    assert_true(rl_take(r, 7, 10, 3, 1100, &wait));
    assert_false(rl_take(r, 7, 10, 3, 1100, &wait));
    /* Refills up to the burst, no more. */
    for (int i = 0; i < 3; i++)
        assert_true(rl_take(r, 7, 10, 3, 60000, NULL));
    assert_false(rl_take(r, 7, 10, 3, 60000, NULL));
    rl_free(r);
}

static void keys_are_apart(void **state)
{
    (void)state;
    rl *r;
    rl_new(&r);
    assert_true(rl_take(r, 1, 1, 1, 0, NULL));
    assert_false(rl_take(r, 1, 1, 1, 0, NULL));
    assert_true(rl_take(r, 2, 1, 1, 0, NULL)); /* another user: its own bucket */
    assert_true(rl_take(r, 0, 1, 1, 0, NULL)); /* key 0 is a key like any */
    assert_false(rl_take(r, 0, 1, 1, 0, NULL));
    rl_free(r);
}

static void rate_zero_is_no_limit(void **state)
{
    (void)state;
    rl *r;
    rl_new(&r);
    for (int i = 0; i < 100000; i++)
        assert_true(rl_take(r, 9, 0, 0, 0, NULL));
    assert_int_equal(rl_count(r), 0);
    rl_free(r);
}

static void a_clock_going_back_refills_nothing(void **state)
{
    (void)state;
    rl *r;
    rl_new(&r);
    assert_true(rl_take(r, 3, 1, 1, 5000, NULL));
    assert_false(rl_take(r, 3, 1, 1, 4000, NULL));
    rl_free(r);
}

/* Memory follows the users creating now, not every user ever seen: ten
 * waves of 10,000 new users a second apart never hold more than about two
 * waves (buckets full again are dropped when the table is rebuilt). */
static void full_buckets_are_forgotten(void **state)
{
    (void)state;
    rl *r;
    rl_new(&r);
    uint32_t most = 0;
    for (uint32_t wave = 0; wave < 10; wave++) {
        for (uint32_t k = 0; k < 10000; k++)
            assert_true(rl_take(r, wave * 10000 + k, 100, 10, (int64_t)wave * 1000, NULL));
        if (rl_count(r) > most)
            most = rl_count(r);
    }
    assert_true(most <= 2 * 10000 + 16);
    /* A user forgotten starts with a full bucket. */
    for (int i = 0; i < 10; i++)
        assert_true(rl_take(r, 5, 100, 10, 20000, NULL));
    assert_false(rl_take(r, 5, 100, 10, 20000, NULL));
    rl_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(burst_then_rate),
        cmocka_unit_test(keys_are_apart),
        cmocka_unit_test(rate_zero_is_no_limit),
        cmocka_unit_test(a_clock_going_back_refills_nothing),
        cmocka_unit_test(full_buckets_are_forgotten),
    };
    return cmocka_run_group_tests_name("ratelimit", tests, NULL, NULL);
}
