/*
 * test_event.c - core/event.c: every type round-trips; exactly its fields
 * are demanded, an optional one ("limits" of tenant_set) may be absent, and
 * a log written before it existed still decodes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/event.h"
#include "core/mp.h"

static tk_str S(const char *s)
{
    return (tk_str){s, strlen(s)};
}

static void tenant_set_with_and_without_limits(void **state)
{
    (void)state;
    ev e, d;
    mpw w;
    mpw_init(&w);
    ev_init(&e, EV_TENANT_SET, 1700000000000);
    e.tenant = S("acme");
    e.flag = true;
    ev_encode(&e, &w); /* as before limits existed: no "limits" key */
    assert_int_equal(ev_decode(w.buf.data, w.buf.size, &d), 0);
    assert_false(d.has_limits);
    assert_true(d.flag);

    mpw_reset(&w);
    e.has_limits = true;
    e.limits = (tk_limits){.tokens = 5, .roles = 0, .keys = 7, .rate = 3, .burst = 4000000000u};
    ev_encode(&e, &w);
    assert_int_equal(ev_decode(w.buf.data, w.buf.size, &d), 0);
    assert_true(d.has_limits);
    assert_int_equal(d.limits.tokens, 5);
    assert_int_equal(d.limits.roles, 0);
    assert_int_equal(d.limits.keys, 7);
    assert_int_equal(d.limits.rate, 3);
    assert_int_equal(d.limits.burst, 4000000000u);
    mpw_free(&w);
}

/* Builds {"t": type, "ts": 1, "tenant": "acme", "flag": true, "limits": {...}}
 * with the given limits body written by fill. */
static int decode_with_limits(void (*fill)(mpw *w))
{
    mpw w;
    ev d;
    mpw_init(&w);
    mpw_map(&w, 5);
    mpw_cstr(&w, "t");
    mpw_uint(&w, EV_TENANT_SET);
    mpw_cstr(&w, "ts");
    mpw_int(&w, 1);
    mpw_cstr(&w, "tenant");
    mpw_cstr(&w, "acme");
    mpw_cstr(&w, "flag");
    mpw_bool(&w, true);
    mpw_cstr(&w, "limits");
    fill(&w);
    int rc = ev_decode(w.buf.data, w.buf.size, &d);
    mpw_free(&w);
    return rc;
}

static void five(mpw *w, const char *names[5], uint64_t v)
{
    mpw_map(w, 5);
    for (int i = 0; i < 5; i++) {
        mpw_cstr(w, names[i]);
        mpw_uint(w, v);
    }
}

static void lim_ok(mpw *w)
{
    const char *n[5] = {"tokens", "roles", "keys", "rate", "burst"};
    five(w, n, 1);
}
static void lim_unknown_key(mpw *w)
{
    const char *n[5] = {"tokens", "roles", "keys", "rate", "bursts"};
    five(w, n, 1);
}
static void lim_twice(mpw *w)
{
    const char *n[5] = {"tokens", "roles", "keys", "rate", "rate"};
    five(w, n, 1);
}
static void lim_too_big(mpw *w)
{
    const char *n[5] = {"tokens", "roles", "keys", "rate", "burst"};
    five(w, n, 1ull << 32);
}
static void lim_short(mpw *w)
{
    mpw_map(w, 1);
    mpw_cstr(w, "tokens");
    mpw_uint(w, 1);
}
static void lim_not_a_map(mpw *w)
{
    mpw_uint(w, 1);
}

static void limits_decoded_strictly(void **state)
{
    (void)state;
    assert_int_equal(decode_with_limits(lim_ok), 0);
    assert_int_equal(decode_with_limits(lim_unknown_key), TK_ECORRUPT);
    assert_int_equal(decode_with_limits(lim_twice), TK_ECORRUPT);
    assert_int_equal(decode_with_limits(lim_too_big), TK_ECORRUPT);
    assert_int_equal(decode_with_limits(lim_short), TK_ECORRUPT);
    assert_int_equal(decode_with_limits(lim_not_a_map), TK_ECORRUPT);
}

/* "limits" is optional only where the table says so. */
static void limits_only_on_tenant_set(void **state)
{
    (void)state;
    ev e, d;
    mpw w;
    mpw_init(&w);
    ev_init(&e, EV_ROLE_DELETE, 1);
    e.tenant = S("acme");
    e.key = S("admin");
    e.has_limits = true; /* not a field of role_delete: not written */
    ev_encode(&e, &w);
    assert_int_equal(ev_decode(w.buf.data, w.buf.size, &d), 0);
    assert_false(d.has_limits);
    /* A required field missing is still refused. */
    mpw_reset(&w);
    mpw_map(&w, 3);
    mpw_cstr(&w, "t");
    mpw_uint(&w, EV_TENANT_SET);
    mpw_cstr(&w, "ts");
    mpw_int(&w, 1);
    mpw_cstr(&w, "tenant");
    mpw_cstr(&w, "acme");
    assert_int_equal(ev_decode(w.buf.data, w.buf.size, &d), TK_ECORRUPT); /* no flag */
    mpw_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tenant_set_with_and_without_limits),
        cmocka_unit_test(limits_decoded_strictly),
        cmocka_unit_test(limits_only_on_tenant_set),
    };
    return cmocka_run_group_tests_name("event", tests, NULL, NULL);
}
