/*
 * suite.h - running programs and sibling suites in a child process, for
 * suites that run another suite again on a different path (test_tls: over
 * TLS; test_sockq: with io_uring off).
 */
#ifndef TK_TEST_SUITE_H
#define TK_TEST_SUITE_H
#include <stddef.h>

/* Runs argv (argv[0] a path) with env (NULL, or name/value pairs ending in
 * NULL) added to this environment, its stdout and stderr into out (cap
 * bytes, NUL-terminated, the rest dropped), for at most seconds (then
 * SIGKILL). Its exit code (128 + signal), or -1 when it was killed for
 * time. The child is tracked (raw_track): it dies with this process. */
int st_run(const char *const *argv, const char *const *env, char *out, size_t cap, int seconds);

/* Runs the sibling suite name (the test binary beside this one) with env
 * and TEST_FILTER filter (NULL: every test), in TAP, for at most seconds;
 * fails the calling test (cmocka) unless it exits 0 with no test failed
 * and at least min passed. what names the path in messages ("over TLS").
 * Prints one line with the counts. */
void st_suite_again(const char *name, const char *const *env, const char *filter, int min,
                    int seconds, const char *what);

#endif
