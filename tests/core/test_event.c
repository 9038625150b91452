/*
 * test_event.c - core/event.c: every type round-trips; exactly its fields
 * are demanded, an optional one ("limits" of tenant_set) may be absent, and
 * a log written before it existed still decodes; the same for "by", the
 * audit record every type may carry.
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

/* The audit record: every type may carry it, a user's and the operator's
 * forms round-trip, and an older record without it decodes with kind 0. */
static void by_round_trips_on_every_type(void **state)
{
    (void)state;
    mpw w;
    mpw_init(&w);
    for (int t = 1; t <= EV_TYPE_MAX; t++) {
        ev e, d;
        ev_init(&e, (ev_type)t, 5);
        /* only the by field matters here: the type's own fields are filled
         * with valid values by a decode of a minimal valid record */
        e.tenant = S("acme"), e.account = S("bigco"), e.user = S("ana"), e.key = S("k");
        e.name = S("n"), e.desc = S("d");
        e.by = (ev_by){.kind = TK_ACTOR_USER, .tenant = S("acme"), .account = S("bigco"),
                       .user = S("bob"), .has_key = true, .peer = S("[::1]:40000"),
                       .listener = S("binary")};
        e.by.key.b[0] = 7;
        mpw_reset(&w);
        ev_encode(&e, &w);
        assert_int_equal(ev_decode(w.buf.data, w.buf.size, &d), 0);
        assert_int_equal(d.by.kind, TK_ACTOR_USER);
        assert_memory_equal(d.by.user.p, "bob", 3);
        assert_true(d.by.has_key);
        assert_int_equal(d.by.key.b[0], 7);
        assert_false(d.by.session);
        assert_memory_equal(d.by.peer.p, "[::1]:40000", 11);
        /* the operator's: no user, no key */
        e.by = (ev_by){.kind = TK_ACTOR_OPERATOR, .peer = S("127.0.0.1:1"),
                       .listener = S("http")};
        mpw_reset(&w);
        ev_encode(&e, &w);
        assert_int_equal(ev_decode(w.buf.data, w.buf.size, &d), 0);
        assert_int_equal(d.by.kind, TK_ACTOR_OPERATOR);
        assert_false(d.by.has_key);
        /* none: as written before the audit record existed */
        e.by.kind = 0;
        mpw_reset(&w);
        ev_encode(&e, &w);
        assert_int_equal(ev_decode(w.buf.data, w.buf.size, &d), 0);
        assert_int_equal(d.by.kind, 0);
    }
    mpw_free(&w);
}

/* A token_delete {"t", "ts", "id", "by": <fill>}. */
static int decode_with_by(void (*fill)(mpw *w))
{
    mpw w;
    ev d;
    uint8_t id[TK_ID_LEN] = {1};
    mpw_init(&w);
    mpw_map(&w, 4);
    mpw_cstr(&w, "t");
    mpw_uint(&w, EV_TOKEN_DELETE);
    mpw_cstr(&w, "ts");
    mpw_int(&w, 1);
    mpw_cstr(&w, "id");
    mpw_bin(&w, id, sizeof id);
    mpw_cstr(&w, "by");
    fill(&w);
    int rc = ev_decode(w.buf.data, w.buf.size, &d);
    mpw_free(&w);
    return rc;
}

static void kv(mpw *w, const char *k, const char *v)
{
    mpw_cstr(w, k);
    mpw_cstr(w, v);
}

static void by_operator(mpw *w)
{
    mpw_map(w, 3);
    kv(w, "kind", "operator"), kv(w, "peer", "x"), kv(w, "listener", "http");
}

static void by_no_peer(mpw *w)
{
    mpw_map(w, 2);
    kv(w, "kind", "operator"), kv(w, "listener", "http");
}

static void by_bad_kind(mpw *w)
{
    mpw_map(w, 3);
    kv(w, "kind", "root"), kv(w, "peer", "x"), kv(w, "listener", "http");
}

static void by_user_without_slugs(mpw *w)
{
    mpw_map(w, 3);
    kv(w, "kind", "user"), kv(w, "peer", "x"), kv(w, "listener", "http");
}

static void by_operator_with_user(mpw *w)
{
    mpw_map(w, 4);
    kv(w, "kind", "operator"), kv(w, "peer", "x"), kv(w, "listener", "http");
    kv(w, "user", "ana");
}

static void by_unknown_key(mpw *w)
{
    mpw_map(w, 4);
    kv(w, "kind", "operator"), kv(w, "peer", "x"), kv(w, "listener", "http");
    kv(w, "secret", "no");
}

static void by_twice(mpw *w)
{
    mpw_map(w, 4);
    kv(w, "kind", "operator"), kv(w, "peer", "x"), kv(w, "listener", "http");
    kv(w, "peer", "y");
}

static void by_not_a_map(mpw *w)
{
    mpw_cstr(w, "operator");
}

static void by_decoded_strictly(void **state)
{
    (void)state;
    assert_int_equal(decode_with_by(by_operator), 0);
    assert_int_equal(decode_with_by(by_no_peer), TK_ECORRUPT);
    assert_int_equal(decode_with_by(by_bad_kind), TK_ECORRUPT);
    assert_int_equal(decode_with_by(by_user_without_slugs), TK_ECORRUPT);
    assert_int_equal(decode_with_by(by_operator_with_user), TK_ECORRUPT);
    assert_int_equal(decode_with_by(by_unknown_key), TK_ECORRUPT);
    assert_int_equal(decode_with_by(by_twice), TK_ECORRUPT);
    assert_int_equal(decode_with_by(by_not_a_map), TK_ECORRUPT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tenant_set_with_and_without_limits),
        cmocka_unit_test(limits_decoded_strictly),
        cmocka_unit_test(limits_only_on_tenant_set),
        cmocka_unit_test(by_round_trips_on_every_type),
        cmocka_unit_test(by_decoded_strictly),
    };
    return cmocka_run_group_tests_name("event", tests, NULL, NULL);
}
