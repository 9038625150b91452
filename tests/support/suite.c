/* suite.c - programs and sibling suites in a child process; see suite.h. */
#include "tests/support/suite.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/raw.h"
#include "tests/support/tkt.h"

int st_run(const char *const *argv, const char *const *env, char *out, size_t cap, int seconds)
{
    int pfd[2];
    assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], STDOUT_FILENO); /* not inherited further: the servers log to files */
        dup2(pfd[1], STDERR_FILENO);
        for (; env && *env; env += 2)
            setenv(env[0], env[1], 1);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    raw_track(pid, true);
    size_t have = 0;
    int64_t end = tkt_now_ms() + seconds * 1000;
    for (;;) {
        struct pollfd p = {pfd[0], POLLIN, 0};
        int64_t left = end - tkt_now_ms();
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        char buf[4096];
        ssize_t n = read(pfd[0], buf, sizeof buf);
        if (n <= 0)
            break;
        size_t k = (size_t)n < cap - 1 - have ? (size_t)n : cap - 1 - have;
        memcpy(out + have, buf, k);
        have += k;
    }
    out[have] = '\0';
    close(pfd[0]);
    int st = 0, rc = -1;
    while (tkt_now_ms() < end && waitpid(pid, &st, WNOHANG) == 0)
        tkt_sleep_ms(10);
    if (waitpid(pid, &st, WNOHANG) == pid || kill(pid, 0) != 0)
        rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (rc < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    raw_track(pid, false);
    return rc;
}

void st_suite_again(const char *name, const char *const *env, const char *filter, int min,
                    int seconds, const char *what)
{
    char self[PATH_MAX], path[PATH_MAX];
    static char out[1 << 20];
    const char *all[32];
    int k = 0;
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(n > 0);
    self[n] = '\0';
    snprintf(path, sizeof path, "%s/%s", dirname(self), name);
    if (access(path, X_OK) != 0)
        fail_msg("%s is not built (make %s)", path, path);
    for (; env && *env && k < 26; env += 2) {
        all[k++] = env[0];
        all[k++] = env[1];
    }
    if (filter) {
        all[k++] = "TEST_FILTER";
        all[k++] = filter;
    }
    all[k++] = "CMOCKA_MESSAGE_OUTPUT";
    all[k++] = "TAP";
    all[k] = NULL;
    const char *argv[] = {path, NULL};
    raw_watchdog(seconds + 10);
    int rc = st_run(argv, all, out, sizeof out, seconds);
    int ok = 0, bad = 0;
    for (char *p = out; (p = strstr(p, "ok ")); p += 3) {
        if (p == out || p[-1] == '\n')
            ok++;
        else if (p >= out + 4 && !strncmp(p - 4, "not ", 4) && (p == out + 4 || p[-5] == '\n'))
            bad++;
    }
    print_message("# %s %s %s: %d passed, %d failed (exit %d)\n", name, filter ? filter : "(all)",
                  what, ok, bad, rc);
    if (rc != 0 || bad || ok < min)
        fail_msg("%s %s:\n%s", name, what, out);
}
