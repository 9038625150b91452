/*
 * test_log.c - net/log.c: text lines and JSON lines (--log-format json),
 * each one write, and the limiter's count of held-back lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/log.h"
#include "tests/support/tkt.h"

/* Runs fn with stderr going to a file; what it wrote, malloc'd. */
static char *captured(void (*fn)(void))
{
    char path[] = "/tmp/tokend-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fd);
    size_t len;
    char *text = (char *)tkt_read_file(path, &len);
    unlink(path);
    text = realloc(text, len + 1);
    text[len] = '\0';
    return text;
}

static void three_lines(void)
{
    lg_limit l = {0};
    lg_line("listening on %s", "127.0.0.1:7070");
    lg_line("odd \"peer\" \\ with\ttab, \x01, caf\xc3\xa9 and \xff");
    lg_limited(&l, "bad request from %s", "a");
    lg_limited(&l, "bad request from %s", "b"); /* held back: within the second */
    tkt_sleep_ms(1100);
    lg_limited(&l, "bad request from %s", "c");
}

static void text_lines(void **state)
{
    (void)state;
    lg_set_json(false);
    char *t = captured(three_lines);
    assert_non_null(strstr(t, "tokend: listening on 127.0.0.1:7070\n"));
    assert_non_null(strstr(t, "tokend: bad request from a\n"));
    assert_null(strstr(t, "from b"));
    assert_non_null(strstr(t, "tokend: bad request from c (1 more like it not shown)\n"));
    free(t);
}

static void json_lines_are_json(void **state)
{
    (void)state;
    lg_set_json(true);
    char *t = captured(three_lines);
    lg_set_json(false);
    int n = 0;
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n"), n++) {
        json_error_t err;
        json_t *j = json_loads(line, 0, &err);
        if (!j)
            fail_msg("not JSON: %s (%s)", line, err.text);
        const char *time = json_string_value(json_object_get(j, "time"));
        const char *msg = json_string_value(json_object_get(j, "msg"));
        assert_non_null(time);
        assert_int_equal(strlen(time), 24); /* 2026-12-01T16:40:00.123Z */
        assert_int_equal(time[23], 'Z');
        assert_non_null(msg);
        if (n == 0)
            assert_string_equal(msg, "listening on 127.0.0.1:7070");
        if (n == 1) /* escaped; UTF-8 kept, the stray byte as its code point */
            assert_string_equal(msg, "odd \"peer\" \\ with\ttab, \x01, caf\xc3\xa9 and \xc3\xbf");
        if (n == 2)
            assert_null(json_object_get(j, "held"));
        if (n == 3) {
            assert_string_equal(msg, "bad request from c");
            assert_int_equal(json_integer_value(json_object_get(j, "held")), 1);
        }
        json_decref(j);
    }
    assert_int_equal(n, 4);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(text_lines),
        cmocka_unit_test(json_lines_are_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
