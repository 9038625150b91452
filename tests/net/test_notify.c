/* test_notify.c - net/notify.c: sd_notify's datagram without libsystemd.
 *
 * Each test binds an AF_UNIX datagram socket of its own (a path in a fresh
 * temp dir, or an abstract name), points NOTIFY_SOCKET at it and checks
 * what arrives: the exact bytes, one datagram per call. Without the
 * variable nothing is sent and the call succeeds (a server started by hand
 * or by the other suites behaves as before); a value that names no socket,
 * or a socket nobody listens on, is an error with a reason. The server's
 * own READY=1 and STOPPING=1 are checked on the real bin/tokend in
 * tests/tools/test_install.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "net/notify.h"
#include "tests/support/tkt.h"

/* A bound datagram socket: path (a file, or "@name" for the abstract
 * namespace), as NOTIFY_SOCKET would name it. */
static int bind_dgram(const char *path)
{
    struct sockaddr_un sa;
    size_t n = strlen(path);
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    assert_true(n < sizeof sa.sun_path);
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
    return fd;
}

/* The next datagram within ms, into buf (NUL-terminated); its length, or
 * -1 when none came. */
static int recv_within(int fd, char *buf, size_t cap, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, ms) != 1)
        return -1;
    ssize_t n = recv(fd, buf, cap - 1, 0);
    assert_true(n >= 0);
    buf[n] = '\0';
    return (int)n;
}

static void unset_sends_nothing(void **state)
{
    (void)state;
    tk_why w = {"untouched"};
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(notify_send("READY=1", &w), 0);
    assert_string_equal(w.msg, "untouched");
    setenv("NOTIFY_SOCKET", "", 1);
    assert_int_equal(notify_send("READY=1", &w), 0);
    assert_string_equal(w.msg, "untouched");
    unsetenv("NOTIFY_SOCKET");
}

static void path_socket_gets_each_state(void **state)
{
    (void)state;
    char *dir = tkt_mkdtemp(), *path = tkt_path(dir, "notify");
    char buf[256];
    int fd = bind_dgram(path);
    setenv("NOTIFY_SOCKET", path, 1);
    assert_int_equal(notify_send("READY=1", NULL), 0);
    assert_int_equal(notify_send("STOPPING=1", NULL), 0);
    assert_int_equal(recv_within(fd, buf, sizeof buf, 1000), 7);
    assert_string_equal(buf, "READY=1");
    assert_int_equal(recv_within(fd, buf, sizeof buf, 1000), 10);
    assert_string_equal(buf, "STOPPING=1");
    assert_int_equal(recv_within(fd, buf, sizeof buf, 50), -1); /* one datagram per call */
    unsetenv("NOTIFY_SOCKET");
    close(fd);
    tkt_rmdir(dir);
    free(path);
    free(dir);
}

static void abstract_socket_with_at(void **state)
{
    (void)state;
    char name[64], buf[256];
    snprintf(name, sizeof name, "@tokend-test-notify-%ld", (long)getpid());
    int fd = bind_dgram(name);
    setenv("NOTIFY_SOCKET", name, 1);
    assert_int_equal(notify_send("READY=1", NULL), 0);
    assert_int_equal(recv_within(fd, buf, sizeof buf, 1000), 7);
    assert_string_equal(buf, "READY=1");
    close(fd);
    /* The '@' stands for the leading NUL: a file named "@..." is not it. */
    assert_int_equal(access(name, F_OK), -1);
    unsetenv("NOTIFY_SOCKET");
}

static void unusable_values_refused_with_reason(void **state)
{
    (void)state;
    char longpath[200];
    tk_why w;
    setenv("NOTIFY_SOCKET", "run/notify", 1); /* relative */
    assert_int_equal(notify_send("READY=1", &w), TK_EINVAL);
    assert_non_null(strstr(w.msg, "NOTIFY_SOCKET=run/notify"));
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    setenv("NOTIFY_SOCKET", longpath, 1);
    assert_int_equal(notify_send("READY=1", &w), TK_EINVAL);
    setenv("NOTIFY_SOCKET", "vsock:2:1234", 1); /* newer systemd's; not supported */
    assert_int_equal(notify_send("READY=1", &w), TK_EINVAL);
    unsetenv("NOTIFY_SOCKET");
}

static void nobody_listening_is_eio(void **state)
{
    (void)state;
    char *dir = tkt_mkdtemp(), *path = tkt_path(dir, "gone");
    tk_why w;
    setenv("NOTIFY_SOCKET", path, 1);
    assert_int_equal(notify_send("READY=1", &w), TK_EIO);
    assert_non_null(strstr(w.msg, "cannot send READY=1 to NOTIFY_SOCKET="));
    close(bind_dgram(path)); /* a socket file whose owner has gone */
    assert_int_equal(notify_send("READY=1", &w), TK_EIO);
    unsetenv("NOTIFY_SOCKET");
    tkt_rmdir(dir);
    free(path);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unset_sends_nothing),
        cmocka_unit_test(path_socket_gets_each_state),
        cmocka_unit_test(abstract_socket_with_at),
        cmocka_unit_test(unusable_values_refused_with_reason),
        cmocka_unit_test(nobody_listening_is_eio),
    };
    return cmocka_run_group_tests_name("notify", tests, NULL, NULL);
}
