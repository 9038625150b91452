/*
 * test_rules.c - core/rules.c, each rule as a pure decision: the answer,
 * and for rule 3 the role and levels a refusal names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/rules.h"

static const tk_actor OPERATOR = {.kind = TK_ACTOR_OPERATOR};
static const tk_actor USER = {.kind = TK_ACTOR_USER, .tenant = 1, .account = 2, .user = 3};

static void rule2_portal(void **state)
{
    (void)state;
    assert_int_equal(rules_may_manage_tokens(&USER, true, true), 0);
    assert_int_equal(rules_may_manage_tokens(&USER, true, false), 0);
    assert_int_equal(rules_may_manage_tokens(&USER, false, true), TK_EDENIED);
    assert_int_equal(rules_may_manage_tokens(&USER, false, false), TK_EDENIED);
    /* The operator lists and deletes, never creates. */
    assert_int_equal(rules_may_manage_tokens(&OPERATOR, false, false), 0);
    assert_int_equal(rules_may_manage_tokens(&OPERATOR, true, true), TK_EDENIED);
    tk_actor nobody = {0};
    assert_int_equal(rules_may_manage_tokens(&nobody, true, false), TK_EDENIED);
}

static void rule3_levels(void **state)
{
    (void)state;
    rules_why w;
    const uint32_t user[] = {5, 2, 9}; /* the user's level is 2 */
    const uint32_t same[] = {2}, weaker[] = {7, 65535}, mixed[] = {3, 1, 0};
    assert_int_equal(rules_may_assign(user, 3, same, 1, &w), 0); /* the same level is allowed */
    assert_int_equal(rules_may_assign(user, 3, weaker, 2, &w), 0);
    assert_int_equal(rules_may_assign(user, 3, mixed, 3, &w), TK_EDENIED);
    assert_false(w.no_level);
    assert_int_equal(w.strongest, 2);
    assert_int_equal(w.role, 1); /* the first role stronger than 2 */
    /* No roles left: no level, nothing may be given. */
    assert_int_equal(rules_may_assign(user, 0, weaker, 1, &w), TK_EDENIED);
    assert_true(w.no_level);
    assert_int_equal(rules_may_assign(user, 3, mixed, 3, NULL), TK_EDENIED); /* why optional */
}

static void rules_1_and_3_at_creation(void **state)
{
    (void)state;
    rules_why w;
    const uint32_t user[] = {1}, ok[] = {1}, strong[] = {0};
    uint32_t many[TK_MAX_ROLES + 1] = {0};
    for (int i = 0; i <= TK_MAX_ROLES; i++)
        many[i] = 5;
    assert_int_equal(rules_token_create(true, user, 1, ok, 1, &w), 0);
    assert_int_equal(rules_token_create(false, user, 1, ok, 1, &w), TK_EDISABLED); /* rule 1 */
    assert_int_equal(rules_token_create(false, user, 1, strong, 1, &w), TK_EDISABLED); /* first */
    assert_int_equal(rules_token_create(true, user, 1, ok, 0, &w), TK_EINVAL); /* no roles */
    assert_int_equal(rules_token_create(true, user, 1, many, TK_MAX_ROLES + 1, &w), TK_EINVAL);
    assert_int_equal(rules_token_create(true, user, 1, strong, 1, &w), TK_EDENIED);
    assert_int_equal(w.strongest, 1);
    assert_int_equal(w.role, 0);
}

static void rule7_isolation(void **state)
{
    (void)state;
    assert_true(rules_may_see(&OPERATOR, 9, 9));
    assert_true(rules_may_see(&USER, 1, 2));
    assert_false(rules_may_see(&USER, 1, 7)); /* another account of the tenant */
    assert_false(rules_may_see(&USER, 4, 2)); /* another tenant */
}

static void rules_1_and_8_at_verification(void **state)
{
    (void)state;
    assert_int_equal(rules_verify_state(TK_KIND_TOKEN, TK_KIND_TOKEN, true, 0, 100), TK_V_VALID);
    assert_int_equal(rules_verify_state(TK_KIND_TOKEN, TK_KIND_PERSONAL, true, 0, 100),
                     TK_V_WRONG_KIND);
    assert_int_equal(rules_verify_state(TK_KIND_PERSONAL, TK_KIND_TOKEN, true, 0, 100),
                     TK_V_WRONG_KIND);
    assert_int_equal(rules_verify_state(TK_KIND_TOKEN, TK_KIND_TOKEN, false, 0, 100),
                     TK_V_DISABLED);
    /* The toggle is the tenant's API: personal keys do not follow it. */
    assert_int_equal(rules_verify_state(TK_KIND_PERSONAL, TK_KIND_PERSONAL, false, 0, 100),
                     TK_V_VALID);
    assert_int_equal(rules_verify_state(TK_KIND_TOKEN, TK_KIND_TOKEN, true, 101, 100),
                     TK_V_VALID);
    assert_int_equal(rules_verify_state(TK_KIND_TOKEN, TK_KIND_TOKEN, true, 100, 100),
                     TK_V_EXPIRED); /* at expires_at it has expired */
    /* Disabled wins over expired. */
    assert_int_equal(rules_verify_state(TK_KIND_TOKEN, TK_KIND_TOKEN, false, 50, 100),
                     TK_V_DISABLED);
}

static void rule11_the_key_must_stand(void **state)
{
    (void)state;
    assert_true(rules_key_acts(true, TK_KIND_PERSONAL, 3, 3, 0, 100));
    assert_false(rules_key_acts(false, TK_KIND_PERSONAL, 3, 3, 0, 100)); /* deleted */
    assert_false(rules_key_acts(true, TK_KIND_PERSONAL, 4, 3, 0, 100));  /* another user's */
    assert_false(rules_key_acts(true, TK_KIND_TOKEN, 3, 3, 0, 100));     /* not a key */
    assert_false(rules_key_acts(true, TK_KIND_PERSONAL, 3, 3, 100, 100)); /* expired */
    assert_true(rules_key_acts(true, TK_KIND_PERSONAL, 3, 3, 101, 100));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rule2_portal),
        cmocka_unit_test(rule3_levels),
        cmocka_unit_test(rules_1_and_3_at_creation),
        cmocka_unit_test(rule7_isolation),
        cmocka_unit_test(rules_1_and_8_at_verification),
        cmocka_unit_test(rule11_the_key_must_stand),
    };
    return cmocka_run_group_tests_name("rules", tests, NULL, NULL);
}
