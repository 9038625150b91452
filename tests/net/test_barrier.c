/*
 * test_barrier.c - the revocation barrier's book (net/barrier.h), on a
 * clock of the test's own: nothing is answered within the start's lease; a
 * replica behind holds a revocation until it has applied it or its lease
 * ends; a replica (re)joining is told to catch up to the primary's durable
 * seq; the book is bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>

#include "core/err.h"
#include "net/barrier.h"

#define MS 1000000ull
#define LEASE 2000 /* ms */
#define T0 (1000 * MS)

static void nothing_is_answered_within_the_starts_lease(void **state)
{
    (void)state;
    bar *b;
    uint64_t at;
    bar_new(LEASE, T0, &b);
    /* No replica known, but one may hold a lease from before a restart. */
    assert_false(bar_passed(b, 1, T0 + LEASE * MS - 1, &at));
    assert_int_equal(at, T0 + LEASE * MS);
    assert_true(bar_passed(b, 1, T0 + LEASE * MS, &at));
    bar_free(b);
}

static void a_replica_behind_holds_a_revocation(void **state)
{
    (void)state;
    bar *b;
    uint64_t at, cu, t = T0 + LEASE * MS;
    bar_new(LEASE, T0, &b);
    assert_int_equal(bar_heard(b, "r1", 5, 5, t, &cu), 0);
    assert_int_equal(bar_heard(b, "r2", 5, 5, t, &cu), 0);
    assert_true(bar_passed(b, 5, t, &at));
    assert_false(bar_passed(b, 6, t, &at));
    assert_int_equal(at, t + LEASE * MS); /* at the latest when their leases end */
    assert_int_equal(bar_heard(b, "r1", 6, 6, t + MS, &cu), 0);
    assert_false(bar_passed(b, 6, t + MS, &at)); /* r2 still behind */
    assert_int_equal(bar_heard(b, "r2", 7, 7, t + 2 * MS, &cu), 0);
    assert_true(bar_passed(b, 6, t + 2 * MS, &at));
    /* A lower applied seq (a late message) does not move it back. */
    assert_int_equal(bar_heard(b, "r2", 3, 7, t + 3 * MS, &cu), 0);
    assert_false(bar_passed(b, 7, t + 3 * MS, &at)); /* r1 is at 6 */
    size_t live;
    uint64_t least;
    bar_stats(b, t + 3 * MS, &live, &least);
    assert_int_equal(live, 2);
    assert_int_equal(least, 6);
    bar_free(b);
}

static void a_silent_replica_is_dropped_at_its_leases_end(void **state)
{
    (void)state;
    bar *b;
    uint64_t at, cu, t = T0 + LEASE * MS;
    bar_new(LEASE, T0, &b);
    assert_int_equal(bar_heard(b, "r1", 1, 1, t, &cu), 0);
    assert_false(bar_passed(b, 2, t + LEASE * MS - 1, &at));
    assert_true(bar_passed(b, 2, t + LEASE * MS, &at)); /* dropped: it answers no more */
    size_t live;
    uint64_t least;
    bar_stats(b, t + LEASE * MS, &live, &least);
    assert_int_equal(live, 0);
    bar_free(b);
}

static void a_joining_replica_catches_up_first(void **state)
{
    (void)state;
    bar *b;
    uint64_t cu, t = T0;
    bar_new(LEASE, T0, &b);
    assert_int_equal(bar_heard(b, "r1", 3, 9, t, &cu), 0);
    assert_int_equal(cu, 9); /* new: everything answered so far first */
    assert_int_equal(bar_heard(b, "r1", 9, 12, t + MS, &cu), 0);
    assert_int_equal(cu, 0); /* in the barrier: no condition */
    /* Silent past its lease, then back: a condition again. */
    assert_int_equal(bar_heard(b, "r1", 9, 20, t + MS + LEASE * MS, &cu), 0);
    assert_int_equal(cu, 20);
    bar_free(b);
}

static void the_book_is_bounded(void **state)
{
    (void)state;
    bar *b;
    uint64_t cu;
    char name[32];
    bar_new(LEASE, T0, &b);
    for (int i = 0; i < BAR_MAX_REPLICAS; i++) {
        snprintf(name, sizeof name, "r%d", i);
        assert_int_equal(bar_heard(b, name, 1, 1, T0, &cu), 0);
    }
    assert_int_equal(bar_heard(b, "one-more", 1, 1, T0, &cu), TK_ELIMIT);
    assert_int_equal(bar_heard(b, "r7", 2, 2, T0, &cu), 0); /* those in it renew */
    /* Once the others' leases end, there is room. */
    assert_int_equal(bar_heard(b, "one-more", 1, 1, T0 + LEASE * MS, &cu), 0);
    bar_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nothing_is_answered_within_the_starts_lease),
        cmocka_unit_test(a_replica_behind_holds_a_revocation),
        cmocka_unit_test(a_silent_replica_is_dropped_at_its_leases_end),
        cmocka_unit_test(a_joining_replica_catches_up_first),
        cmocka_unit_test(the_book_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
