/* test_err.c - the error scheme: every code has its own message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"

static void codes_have_distinct_messages(void **state)
{
    (void)state;
    const char *unknown = tk_strerror(-9999);
    for (int a = TK_ELAST; a <= 0; a++) {
        assert_true(strcmp(tk_strerror(a), unknown) != 0);
        for (int b = TK_ELAST; b < a; b++)
            assert_string_not_equal(tk_strerror(a), tk_strerror(b));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(codes_have_distinct_messages),
    };
    return cmocka_run_group_tests_name("err", tests, NULL, NULL);
}
