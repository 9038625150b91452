/*
 * browser.c - a headless Chromium driven from a test; see browser.h.
 *
 * The child (python3 browser.py) is forked with one end of a socketpair as
 * its stdin and stdout: like a pair of pipes, but writes can use
 * MSG_NOSIGNAL, so a dead child is an error here rather than a SIGPIPE
 * that kills the test. The child is put in a process group of its own,
 * which brw_close sweeps with SIGKILL once the child is done, so that no
 * chromedriver or Chromium outlives the handle.
 */
#include "tests/support/browser.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BRW_PYTHON "/usr/bin/python3"
#define BRW_SCRIPT "tests/support/browser.py"
#define BRW_READY_MS 30000
#define BRW_REPLY_MS 20000
#define BRW_MARGIN_MS 15000 /* on top of a command's own "timeout" */
#define BRW_CLOSE_MS 10000
#define BRW_LINE_MAX (64u << 20)

struct brw {
    pid_t pid;       /* the child, also its process group; 0 once reaped */
    int fd;          /* our end of the socketpair */
    char *buf;       /* bytes read, not yet consumed */
    size_t len, cap;
    long next_id;
    int timeout_ms;
    bool broken;     /* a reply was missed or the child is gone */
    char err[2048];
    char broken_why[1024]; /* the error that made it broken */
};

static _Thread_local char brw_open_err[2048];

static int64_t brw_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void brw_nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

static void brw_fail(brw *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void brw_fail(brw *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->err, sizeof b->err, fmt, ap);
    va_end(ap);
}

const char *brw_error(const brw *b)
{
    return b ? b->err : brw_open_err;
}

void brw_set_timeout(brw *b, int ms)
{
    if (b)
        b->timeout_ms = ms > 0 ? ms : BRW_REPLY_MS;
}

/* ---- processes ------------------------------------------------------- */

/* In the child between fork and exec: async-signal-safe calls only. io is
 * put on fd 0 and 1 (-1: /dev/null), fd 2 is kept, every other descriptor
 * is closed, signals are reset, and the child dies with the forking thread. */
static void brw_child(pid_t parent, int io, bool own_group, const char *const argv[])
{
    if (own_group)
        setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(127);
    int s = io >= 0 ? fcntl(io, F_DUPFD, 3) : open("/dev/null", O_RDWR);
    if (s < 0 || dup2(s, 0) < 0 || dup2(s, 1) < 0)
        _exit(127);
    if (io < 0 && dup2(s, 2) < 0)
        _exit(127);
    if (syscall(SYS_close_range, 3u, ~0u, 0u) != 0) {
        long max = sysconf(_SC_OPEN_MAX);
        for (long fd = 3; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
            close((int)fd);
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    const int sigs[] = {SIGPIPE, SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGALRM, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execv(argv[0], (char *const *)argv);
    _exit(127);
}

static pid_t brw_fork(int io, bool own_group, const char *const argv[])
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        brw_child(parent, io, own_group, argv);
    if (pid > 0 && own_group)
        setpgid(pid, pid); /* also here, so the group exists before we go on */
    return pid;
}

/* Waits up to ms for pid to exit, without reaping it (so that its pid,
 * and the process group named after it, cannot be reused meanwhile).
 * true once it has exited (or is not ours to wait for any more). */
static bool brw_exited(pid_t pid, int ms)
{
    int64_t end = brw_now_ms() + ms;
    for (;;) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0)
            return errno != EINTR;
        if (si.si_pid == pid)
            return true;
        if (brw_now_ms() >= end)
            return false;
        brw_nap_ms(10);
    }
}

/* Ends pid: waits up to ms, then SIGKILL; with group, SIGKILLs whatever
 * is left in its process group; then reaps it. The exit status, or -1. */
static int brw_reap(pid_t pid, int ms, bool group)
{
    if (!brw_exited(pid, ms)) {
        kill(pid, SIGKILL);
        brw_exited(pid, 5000);
    }
    if (group)
        killpg(pid, SIGKILL);
    int st = 0;
    pid_t r;
    while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
        ;
    return r == pid ? st : -1;
}

static void brw_describe_status(int st, char *out, size_t cap)
{
    if (st < 0)
        snprintf(out, cap, "gone");
    else if (WIFEXITED(st))
        snprintf(out, cap, "exit status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(out, cap, "killed by signal %d", WTERMSIG(st));
    else
        snprintf(out, cap, "status %#x", (unsigned)st);
}

bool brw_available(char *why, size_t cap)
{
    static const struct {
        const char *path, *pkg;
    } need[] = {{BRW_PYTHON, "python3"}, {"/usr/bin/chromium", "chromium"}, {"/usr/bin/chromedriver", "chromium-driver"}};
    char msg[512] = "";
    size_t n = 0;
    bool python = true;
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        if (access(need[i].path, X_OK) == 0)
            continue;
        if (i == 0)
            python = false;
        n += (size_t)snprintf(msg + n, sizeof msg - n, "%s%s (Debian package %s)", n ? ", " : "",
                              need[i].path, need[i].pkg);
        if (n >= sizeof msg)
            n = sizeof msg - 1;
    }
    bool selenium = false;
    if (python) {
        const char *const argv[] = {BRW_PYTHON, "-I", "-c", "import selenium.webdriver", NULL};
        pid_t pid = brw_fork(-1, false, argv);
        selenium = pid > 0 && brw_reap(pid, 10000, false) == 0;
    }
    if (!selenium)
        snprintf(msg + n, sizeof msg - n, "%sthe python3 module selenium (Debian package python3-selenium)",
                 n ? ", " : "");
    bool ok = msg[0] == 0;
    if (!ok && why && cap)
        snprintf(why, cap, "browser tests need: %s", msg);
    else if (why && cap)
        why[0] = 0;
    return ok;
}

/* ---- the line protocol ---------------------------------------------- */

/* The next line from the child (without its '\n'), malloc'd; NULL on
 * timeout (*eof false) or when the child closed its end (*eof true). */
static char *brw_line(brw *b, int64_t deadline, bool *eof)
{
    *eof = false;
    for (;;) {
        char *nl = b->len ? memchr(b->buf, '\n', b->len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - b->buf);
            char *line = strndup(b->buf, n);
            memmove(b->buf, nl + 1, b->len - n - 1);
            b->len -= n + 1;
            return line;
        }
        if (b->len == b->cap) {
            if (b->cap >= BRW_LINE_MAX) {
                *eof = true; /* not a protocol we can follow any more */
                return NULL;
            }
            size_t cap = b->cap ? b->cap * 2 : 65536;
            char *nb = realloc(b->buf, cap);
            if (!nb)
                return NULL;
            b->buf = nb;
            b->cap = cap;
        }
        int64_t left = deadline - brw_now_ms();
        if (left <= 0)
            return NULL;
        struct pollfd p = {b->fd, POLLIN, 0};
        int r = poll(&p, 1, (int)(left > INT32_MAX ? INT32_MAX : left));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? (*eof = true, NULL) : NULL;
        ssize_t got = recv(b->fd, b->buf + b->len, b->cap - b->len, 0);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0) {
            *eof = true;
            return NULL;
        }
        b->len += (size_t)got;
    }
}

static int brw_send(brw *b, const char *data, size_t n, int64_t deadline)
{
    while (n) {
        struct pollfd p = {b->fd, POLLOUT, 0};
        int64_t left = deadline - brw_now_ms();
        if (left <= 0)
            return -1;
        int r = poll(&p, 1, (int)(left > INT32_MAX ? INT32_MAX : left));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        ssize_t w = send(b->fd, data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (w <= 0)
            return -1;
        data += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Makes every later call fail at once, naming the current error. */
static void brw_mark_broken(brw *b)
{
    size_t n = strnlen(b->err, sizeof b->broken_why - 1);
    memcpy(b->broken_why, b->err, n);
    b->broken_why[n] = 0;
    b->broken = true;
}

/* Why the child stopped talking, for a message. */
static void brw_gone(brw *b, const char *what)
{
    char st[64] = "still running";
    if (b->pid > 0 && brw_exited(b->pid, 2000)) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        waitid(P_PID, (id_t)b->pid, &si, WEXITED | WNOHANG | WNOWAIT);
        if (si.si_code == CLD_EXITED)
            snprintf(st, sizeof st, "exit status %d", si.si_status);
        else
            snprintf(st, sizeof st, "killed by signal %d", si.si_status);
    }
    brw_fail(b, "%s: the browser process closed its output (%s)", what, st);
    brw_mark_broken(b);
}

json_t *brw_call(brw *b, const char *op, json_t *args)
{
    if (!b || !op) {
        json_decref(args);
        return NULL;
    }
    b->err[0] = 0;
    char what[256];
    json_t *css = args ? json_object_get(args, "css") : NULL;
    if (json_is_string(css))
        snprintf(what, sizeof what, "%s '%s'", op, json_string_value(css));
    else
        snprintf(what, sizeof what, "%s", op);
    if (args && !json_is_object(args)) {
        json_decref(args);
        brw_fail(b, "%s: args must be a JSON object", what);
        return NULL;
    }
    if (b->broken) {
        json_decref(args);
        brw_fail(b, "%s: the browser is unusable since: %s", what, b->broken_why);
        return NULL;
    }
    int ms = b->timeout_ms;
    json_t *t = args ? json_object_get(args, "timeout") : NULL;
    if (json_is_number(t) && json_number_value(t) * 1000 + BRW_MARGIN_MS > ms)
        ms = (int)(json_number_value(t) * 1000 + BRW_MARGIN_MS);
    json_t *cmd = json_object();
    if (args)
        json_object_update(cmd, args);
    json_decref(args);
    long id = ++b->next_id;
    json_object_set_new(cmd, "op", json_string(op));
    json_object_set_new(cmd, "id", json_integer(id));
    char *line = json_dumps(cmd, JSON_COMPACT);
    json_decref(cmd);
    if (!line) {
        brw_fail(b, "%s: cannot encode the command (not UTF-8?)", what);
        return NULL;
    }
    size_t n = strlen(line);
    char *msg = malloc(n + 2);
    memcpy(msg, line, n);
    msg[n] = '\n';
    free(line);
    int64_t deadline = brw_now_ms() + ms;
    int rc = brw_send(b, msg, n + 1, deadline);
    free(msg);
    if (rc) {
        brw_gone(b, what);
        return NULL;
    }
    for (;;) {
        bool eof;
        char *reply = brw_line(b, deadline, &eof);
        if (!reply) {
            if (eof) {
                brw_gone(b, what);
            } else {
                brw_fail(b, "%s: no reply from the browser in %.1f s (handle now unusable)", what, ms / 1000.0);
                brw_mark_broken(b);
            }
            return NULL;
        }
        json_error_t je;
        json_t *r = json_loads(reply, 0, &je);
        free(reply);
        json_t *rid = json_object_get(r, "id");
        if (!json_is_object(r) || !json_is_integer(rid) || json_integer_value(rid) != id) {
            json_decref(r); /* a late reply to a command given up on, or noise */
            continue;
        }
        json_t *v = NULL;
        if (json_is_true(json_object_get(r, "ok"))) {
            v = json_object_get(r, "value");
            v = v ? json_incref(v) : json_null();
        } else {
            const char *e = json_string_value(json_object_get(r, "error"));
            brw_fail(b, "%s", e ? e : "the browser replied ok:false without a message");
        }
        json_decref(r);
        return v;
    }
}

/* ---- open / close ---------------------------------------------------- */

int brw_open(brw **out)
{
    brw_open_err[0] = 0;
    if (!out)
        return -1;
    *out = NULL;
    const char *script = getenv("TOKEND_BROWSER_PY");
    if (!script || !*script)
        script = BRW_SCRIPT;
    if (access(BRW_PYTHON, X_OK) != 0) {
        snprintf(brw_open_err, sizeof brw_open_err, "brw_open: %s missing (Debian package python3)", BRW_PYTHON);
        return -1;
    }
    if (access(script, R_OK) != 0) {
        snprintf(brw_open_err, sizeof brw_open_err,
                 "brw_open: cannot read %s (%s; run from the repository root or set TOKEND_BROWSER_PY)", script,
                 strerror(errno));
        return -1;
    }
    brw *b = calloc(1, sizeof *b);
    int sv[2];
    if (!b || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        snprintf(brw_open_err, sizeof brw_open_err, "brw_open: %s", strerror(errno ? errno : ENOMEM));
        free(b);
        return -1;
    }
    b->timeout_ms = BRW_REPLY_MS;
    const char *const argv[] = {BRW_PYTHON, "-I", "-B", script, NULL};
    b->pid = brw_fork(sv[1], true, argv);
    int fe = errno;
    close(sv[1]);
    b->fd = sv[0];
    if (b->pid < 0) {
        snprintf(brw_open_err, sizeof brw_open_err, "brw_open: fork: %s", strerror(fe));
        close(b->fd);
        free(b);
        return -1;
    }
    int64_t deadline = brw_now_ms() + BRW_READY_MS;
    bool eof = false;
    char *line = brw_line(b, deadline, &eof);
    json_t *r = line ? json_loads(line, 0, NULL) : NULL;
    const char *ready = json_string_value(json_object_get(r, "value"));
    if (json_is_true(json_object_get(r, "ok")) && ready && strcmp(ready, "ready") == 0) {
        json_decref(r);
        free(line);
        *out = b;
        return 0;
    }
    const char *e = json_string_value(json_object_get(r, "error"));
    char st[64];
    if (!line && !eof) {
        brw_describe_status(brw_reap(b->pid, 0, true), st, sizeof st);
        snprintf(brw_open_err, sizeof brw_open_err, "brw_open: the browser was not ready in %d s (killed)",
                 BRW_READY_MS / 1000);
    } else {
        brw_describe_status(brw_reap(b->pid, 5000, true), st, sizeof st);
        snprintf(brw_open_err, sizeof brw_open_err, "brw_open: %s (%s %s, %s)",
                 e ? e : line ? line : "no ready line", BRW_PYTHON, script, st);
    }
    json_decref(r);
    free(line);
    close(b->fd);
    free(b->buf);
    free(b);
    return -1;
}

void brw_close(brw *b)
{
    if (!b)
        return;
    if (b->pid > 0) {
        if (!b->broken) {
            static const char quit[] = "{\"op\":\"quit\"}\n";
            brw_send(b, quit, sizeof quit - 1, brw_now_ms() + 1000);
        }
        shutdown(b->fd, SHUT_WR); /* EOF: the driver quits on that too */
        brw_reap(b->pid, BRW_CLOSE_MS, true);
    }
    close(b->fd);
    free(b->buf);
    free(b);
}

/* ---- the commands ---------------------------------------------------- */

/* brw_call with args packed by json_pack's fmt (NULL: none). */
static json_t *brw_callf(brw *b, const char *op, const char *fmt, ...)
{
    json_t *args = NULL;
    if (fmt) {
        json_error_t je;
        va_list ap;
        va_start(ap, fmt);
        args = json_vpack_ex(&je, 0, fmt, ap);
        va_end(ap);
        if (!args) {
            if (b)
                brw_fail(b, "%s: bad arguments (%s)", op, je.text);
            return NULL;
        }
    }
    return brw_call(b, op, args);
}

static int brw_done(json_t *v)
{
    if (!v)
        return -1;
    json_decref(v);
    return 0;
}

/* The value as a malloc'd string: strings as they are, null as NULL (the
 * error left ""), anything else as JSON text. */
static char *brw_string(brw *b, json_t *v)
{
    if (!v)
        return NULL;
    char *s = json_is_string(v) ? strdup(json_string_value(v))
              : json_is_null(v) ? NULL
                                : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!s && !json_is_null(v))
        brw_fail(b, "out of memory");
    json_decref(v);
    return s;
}

int brw_get(brw *b, const char *url)
{
    return brw_done(brw_callf(b, "get", "{s:s}", "url", url));
}

int brw_click(brw *b, const char *css)
{
    return brw_done(brw_callf(b, "click", "{s:s}", "css", css));
}

int brw_type(brw *b, const char *css, const char *text)
{
    return brw_done(brw_callf(b, "type", "{s:s, s:s}", "css", css, "text", text));
}

int brw_key(brw *b, const char *css, const char *key)
{
    return brw_done(brw_callf(b, "key", "{s:s?, s:s}", "css", css, "key", key));
}

int brw_select(brw *b, const char *css, const char *value)
{
    return brw_done(brw_callf(b, "select", "{s:s, s:s}", "css", css, "value", value));
}

int brw_size(brw *b, int w, int h)
{
    return brw_done(brw_callf(b, "size", "{s:i, s:i}", "w", w, "h", h));
}

int brw_shot(brw *b, const char *path)
{
    return brw_done(brw_callf(b, "shot", "{s:s}", "path", path));
}

int brw_wait(brw *b, const char *css, const char *state)
{
    return brw_done(brw_callf(b, "wait", "{s:s, s:s}", "css", css, "state", state));
}

char *brw_text(brw *b, const char *css)
{
    return brw_string(b, brw_callf(b, "text", "{s:s}", "css", css));
}

char *brw_value(brw *b, const char *css)
{
    return brw_string(b, brw_callf(b, "value", "{s:s}", "css", css));
}

char *brw_attr(brw *b, const char *css, const char *name)
{
    return brw_string(b, brw_callf(b, "attr", "{s:s, s:s}", "css", css, "name", name));
}

char *brw_clipboard(brw *b)
{
    return brw_string(b, brw_callf(b, "clipboard", NULL));
}

int brw_count(brw *b, const char *css)
{
    json_t *v = brw_callf(b, "count", "{s:s}", "css", css);
    int n = json_is_integer(v) ? (int)json_integer_value(v) : -1;
    if (v && n < 0 && b)
        brw_fail(b, "count '%s': not a number in the reply", css);
    json_decref(v);
    return n;
}

int brw_visible(brw *b, const char *css)
{
    json_t *v = brw_callf(b, "visible", "{s:s}", "css", css);
    int r = v ? json_is_true(v) : -1;
    json_decref(v);
    return r;
}

json_t *brw_js(brw *b, const char *script)
{
    return brw_callf(b, "js", "{s:s}", "script", script);
}
