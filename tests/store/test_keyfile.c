/* test_keyfile.c - key files: created once (0600) and read back the same;
 * anything that is not a key is refused with a reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"
#include "store/keyfile.h"
#include "tests/support/tkt.h"

static void created_once_then_read_back(void **state)
{
    (void)state;
    char *dir = tkt_mkdtemp();
    char a[KEYFILE_KEY_LEN + 1], b[KEYFILE_KEY_LEN + 1];
    tk_why err;
    assert_int_equal(keyfile_load(dir, "operator.key", "tko_", a, &err), 0);
    assert_int_equal(strlen(a), KEYFILE_KEY_LEN);
    assert_memory_equal(a, "tko_", 4);
    char *path = tkt_path(dir, "operator.key");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(keyfile_load(dir, "operator.key", "tko_", b, &err), 0);
    assert_string_equal(a, b);
    /* Another name gets another key. */
    assert_int_equal(keyfile_load(dir, "gateway.key", "tkg_", b, &err), 0);
    assert_memory_not_equal(a + 4, b + 4, 64);
    free(path);
    tkt_rmdir(dir);
    free(dir);
}

/* A key file others may read is refused, with the command that fixes it. */
static void loose_mode_is_refused(void **state)
{
    (void)state;
    char *dir = tkt_mkdtemp();
    char k[KEYFILE_KEY_LEN + 1];
    tk_why err;
    char *path = tkt_path(dir, "operator.key");
    assert_int_equal(keyfile_load(dir, "operator.key", "tko_", k, &err), 0); /* made 0600 */
    for (int mode = 0604; mode <= 0660; mode += 0054) { /* 0604 and 0660: others, group */
        assert_int_equal(chmod(path, (mode_t)mode), 0);
        assert_int_equal(keyfile_load(dir, "operator.key", "tko_", k, &err), TK_EINVAL);
        assert_non_null(strstr(err.msg, "chmod 600"));
    }
    assert_int_equal(chmod(path, 0400), 0); /* read-only for its owner is fine */
    assert_int_equal(keyfile_load(dir, "operator.key", "tko_", k, &err), 0);
    free(path);
    tkt_rmdir(dir);
    free(dir);
}

static void not_a_key_is_refused(void **state)
{
    (void)state;
    char *dir = tkt_mkdtemp();
    char k[KEYFILE_KEY_LEN + 1];
    tk_why err;
    char *path = tkt_path(dir, "operator.key");
    const char *bad[] = {
        "tkg_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", /* prefix */
        "tko_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeZ\n", /* hex */
        "tko_0123\n",                                                               /* short */
        "tko_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0\n", /* long */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(tkt_write_file(path, bad[i], strlen(bad[i])), 0);
        assert_int_equal(chmod(path, 0600), 0); /* the owner's alone: only the content is wrong */
        err.msg[0] = '\0';
        assert_int_equal(keyfile_load(dir, "operator.key", "tko_", k, &err), TK_EINVAL);
        assert_non_null(strstr(err.msg, "is not a key file"));
    }
    free(path);
    tkt_rmdir(dir);
    free(dir);
}

/* The key's form alone (the client checks the keyring's keys with it):
 * exactly the prefix and 64 lowercase hex digits. */
static void key_form(void **state)
{
    (void)state;
    const char *ok = "tko_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char k[KEYFILE_KEY_LEN + 2];
    assert_true(keyfile_key_ok(ok, strlen(ok), "tko_"));
    assert_false(keyfile_key_ok(ok, strlen(ok), "tkg_"));
    assert_false(keyfile_key_ok(ok, strlen(ok) - 1, "tko_"));
    memcpy(k, ok, KEYFILE_KEY_LEN + 1);
    k[KEYFILE_KEY_LEN] = 'a';
    assert_false(keyfile_key_ok(k, KEYFILE_KEY_LEN + 1, "tko_"));
    for (size_t i = 4; i < KEYFILE_KEY_LEN; i++) {
        static const char bad[] = {'A', 'F', 'g', '\0', '\n', ' '};
        for (size_t b = 0; b < sizeof bad; b++) {
            memcpy(k, ok, KEYFILE_KEY_LEN + 1);
            k[i] = bad[b];
            assert_false(keyfile_key_ok(k, KEYFILE_KEY_LEN, "tko_"));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(created_once_then_read_back),
        cmocka_unit_test(not_a_key_is_refused),
        cmocka_unit_test(loose_mode_is_refused),
        cmocka_unit_test(key_form),
    };
    return cmocka_run_group_tests_name("keyfile", tests, NULL, NULL);
}
