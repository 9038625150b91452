/*
 * test_session.c - core/session.c: one-time codes and portal sessions,
 * with a test clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "core/err.h"
#include "core/session.h"

static ses_who who_of(uint32_t tenant, uint32_t user)
{
    ses_who w;
    memset(&w, 0, sizeof w);
    w.tenant = tenant, w.account = 1, w.user = user;
    snprintf(w.tenant_slug, sizeof w.tenant_slug, "t%u", tenant);
    snprintf(w.account_slug, sizeof w.account_slug, "a");
    snprintf(w.user_slug, sizeof w.user_slug, "u%u", user);
    return w;
}

static ses_table *table(uint32_t max, uint32_t per_tenant)
{
    ses_opts o;
    ses_opts_default(&o);
    o.max = max, o.per_tenant = per_tenant;
    ses_table *t;
    ses_new(&o, &t);
    return t;
}

static void code_opens_one_session_once(void **state)
{
    (void)state;
    ses_table *t = table(4, 4);
    ses_who w = who_of(7, 3);
    char code[SES_TEXT_LEN + 1], sid[SES_TEXT_LEN + 1], sid2[SES_TEXT_LEN + 1], msg[128];
    int64_t exp = 0;
    assert_int_equal(ses_mint(t, &w, 1000, code, &exp, msg, sizeof msg), 0);
    assert_int_equal(exp, 1060);
    assert_int_equal(strlen(code), SES_TEXT_LEN);
    ses_info in, found;
    assert_int_equal(ses_open(t, code, strlen(code), 1010, sid, &in), 0);
    assert_int_equal(in.expires, 1010 + 900);
    assert_int_equal(in.who.user, 3);
    assert_string_equal(in.who.user_slug, "u3");
    assert_int_equal(strlen(in.csrf), SES_CSRF_LEN);
    assert_string_not_equal(sid, code);
    /* The code is used: a second use is refused, whatever the time. */
    assert_int_equal(ses_open(t, code, strlen(code), 1011, sid2, &found), TK_EUNAUTH);
    /* A code is not a session, a session is not a code. */
    assert_int_equal(ses_find(t, code, strlen(code), 1011, &found), TK_EUNAUTH);
    assert_int_equal(ses_open(t, sid, strlen(sid), 1011, sid2, &found), TK_EUNAUTH);
    assert_int_equal(ses_find(t, sid, strlen(sid), 1011, &found), 0);
    assert_true(found.handle == in.handle);
    assert_string_equal(found.csrf, in.csrf);
    assert_true(ses_live(t, in.handle, 1011));
    ses_free(t);
}

static void code_expires(void **state)
{
    (void)state;
    ses_table *t = table(4, 4);
    ses_who w = who_of(1, 1);
    char code[SES_TEXT_LEN + 1], sid[SES_TEXT_LEN + 1], msg[128];
    int64_t exp;
    ses_info in;
    assert_int_equal(ses_mint(t, &w, 1000, code, &exp, msg, sizeof msg), 0);
    assert_int_equal(ses_open(t, code, strlen(code), 1060, sid, &in), TK_EUNAUTH);
    ses_free(t);
}

static void session_expires_and_ends(void **state)
{
    (void)state;
    ses_table *t = table(4, 4);
    ses_who w = who_of(1, 1);
    char code[SES_TEXT_LEN + 1], sid[SES_TEXT_LEN + 1], msg[128];
    int64_t exp;
    ses_info in, f;
    assert_int_equal(ses_mint(t, &w, 0, code, &exp, msg, sizeof msg), 0);
    assert_int_equal(ses_open(t, code, strlen(code), 0, sid, &in), 0);
    assert_int_equal(ses_find(t, sid, strlen(sid), 899, &f), 0);
    assert_int_equal(ses_find(t, sid, strlen(sid), 900, &f), TK_EUNAUTH);
    assert_false(ses_live(t, in.handle, 900));
    assert_int_equal(ses_sweep(t, 900), 0);
    /* Ended by sign-out: its handle and its text act no more, and the
     * slot's next session has another handle. */
    assert_int_equal(ses_mint(t, &w, 1000, code, &exp, msg, sizeof msg), 0);
    assert_int_equal(ses_open(t, code, strlen(code), 1000, sid, &in), 0);
    ses_end(t, in.handle);
    assert_false(ses_live(t, in.handle, 1001));
    assert_int_equal(ses_find(t, sid, strlen(sid), 1001, &f), TK_EUNAUTH);
    uint64_t old = in.handle;
    for (int i = 0; i < 4; i++) { /* every slot once more */
        assert_int_equal(ses_mint(t, &w, 1002, code, &exp, msg, sizeof msg), 0);
        assert_int_equal(ses_open(t, code, strlen(code), 1002, sid, &in), 0);
        assert_true(in.handle != old);
    }
    assert_false(ses_live(t, old, 1003));
    ses_end(t, old); /* stale: nothing happens */
    assert_int_equal(ses_sweep(t, 1003), 4);
    ses_free(t);
}

static void forged_texts_are_refused(void **state)
{
    (void)state;
    ses_table *t = table(4, 4);
    ses_who w = who_of(1, 1);
    char code[SES_TEXT_LEN + 1], sid[SES_TEXT_LEN + 1], bad[SES_TEXT_LEN + 1], msg[128];
    int64_t exp;
    ses_info in, f;
    assert_int_equal(ses_mint(t, &w, 0, code, &exp, msg, sizeof msg), 0);
    assert_int_equal(ses_open(t, code, strlen(code), 0, sid, &in), 0);
    /* Every character changed in turn (the index, the generation, the
     * random part): never found. */
    for (size_t i = 0; i < SES_TEXT_LEN; i++) {
        memcpy(bad, sid, sizeof bad);
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        assert_int_equal(ses_find(t, bad, SES_TEXT_LEN, 1, &f), TK_EUNAUTH);
    }
    assert_int_equal(ses_find(t, sid, SES_TEXT_LEN - 1, 1, &f), TK_EUNAUTH);
    assert_int_equal(ses_find(t, "", 0, 1, &f), TK_EUNAUTH);
    memset(bad, '_', SES_TEXT_LEN);
    assert_int_equal(ses_find(t, bad, SES_TEXT_LEN, 1, &f), TK_EUNAUTH);
    memset(bad, '!', SES_TEXT_LEN); /* not base64url */
    assert_int_equal(ses_find(t, bad, SES_TEXT_LEN, 1, &f), TK_EUNAUTH);
    assert_false(ses_live(t, 0, 1));
    assert_false(ses_live(t, (uint64_t)1 << 40 | 99, 1));
    ses_free(t);
}

static void one_tenant_cannot_fill_the_table(void **state)
{
    (void)state;
    ses_table *t = table(5, 3);
    ses_who a = who_of(1, 1), b = who_of(2, 1);
    char code[SES_TEXT_LEN + 1], msg[128];
    int64_t exp;
    for (int i = 0; i < 3; i++)
        assert_int_equal(ses_mint(t, &a, 0, code, &exp, msg, sizeof msg), 0);
    assert_int_equal(ses_mint(t, &a, 0, code, &exp, msg, sizeof msg), TK_ELIMIT);
    assert_non_null(strstr(msg, "tenant 't1'"));
    assert_int_equal(ses_mint(t, &b, 0, code, &exp, msg, sizeof msg), 0);
    assert_int_equal(ses_mint(t, &b, 0, code, &exp, msg, sizeof msg), 0);
    assert_int_equal(ses_mint(t, &b, 0, code, &exp, msg, sizeof msg), TK_ELIMIT);
    assert_non_null(strstr(msg, "the server"));
    /* Unused codes expire and free their slots. */
    assert_int_equal(ses_mint(t, &a, 60, code, &exp, msg, sizeof msg), 0);
    ses_free(t);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(code_opens_one_session_once),
        cmocka_unit_test(code_expires),
        cmocka_unit_test(session_expires_and_ends),
        cmocka_unit_test(forged_texts_are_refused),
        cmocka_unit_test(one_tenant_cannot_fill_the_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
