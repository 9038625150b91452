/* test_install.c - make install, the systemd unit (tools/tokend.service),
 * the man pages (docs/man/) and the server's readiness notification
 * (net/notify.c) as systemd sees them; docs/install.md.
 *
 * The group setup runs `make install DESTDIR=<tmp> PREFIX=/usr` from the
 * repository root (the tests' working directory) on the binaries already
 * built, as the unprivileged user nobody when this runs as root (DESTDIR
 * must not need root), and every test looks at that tree:
 *   - every file landed, nothing else did, with its mode (programs 0755,
 *     the rest 0644) and its bytes (the programs are $BIN's, the unit is
 *     tools/tokend.service with its ExecStart filled in);
 *   - the installed programs run: tokend serves a PING (and does so with the
 *     example configuration, once tokend has --config and docs/tokend.conf
 *     exists; until then that one step is skipped, saying so), the
 *     installed tokenctl talks to it, tokenreplay checks its log;
 *   - an operator's /etc/tokend/tokend.conf survives a second install;
 *   - uninstall removes what install put, and only that (default PREFIX);
 *   - the man pages render without a groff or man warning, whatis can read
 *     their NAME, and they name every flag and command of --help;
 *   - the unit holds each directive the issue asks for, and
 *     `systemd-analyze verify` passes on it without a word (the check is
 *     shown to catch a typo, a bad value, a missing binary and a missing
 *     man page), and `systemd-analyze security` rates it OK;
 *   - tokend, run as nobody without capabilities under umask 0077, makes
 *     only system calls the unit's SystemCallFilter allows, opens only the
 *     address families it allows, never asks for writable executable
 *     memory, and creates no file group or others can read;
 *   - with NOTIFY_SOCKET set it sends READY=1 by the time it logs
 *     "listening on" and STOPPING=1 on SIGTERM (a path and an abstract
 *     socket), and a socket nobody listens on costs a log line, nothing
 *     more.
 * Tools a test needs (systemd-analyze, groff, man, strace) come from make
 * deps; a test skips, saying which, when one is missing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/mp.h"
#include "net/proto.h"
#include "net/server.h"
#include "tests/support/hraw.h"
#include "tests/support/raw.h"
#include "tests/support/tkt.h"

#define WATCHDOG_S 180 /* per test: strace slows tokend down, ASan more */
#define NOBODY 65534
#define PROGS_N 3

/* cmocka's skip() after a line that says what did not run, and why. */
#define skip_msg(...)                                                                              \
    do {                                                                                           \
        fprintf(stderr, "# " __VA_ARGS__);                                                         \
        fprintf(stderr, "\n");                                                                     \
        skip();                                                                                    \
    } while (0)

static const char *const progs[PROGS_N] = {"tokend", "tokenctl", "tokenreplay"};

/* The tree the group setup installed, shared by the tests. */
static struct {
    char *tmp;     /* the group's temp dir (holds root and the logs) */
    char *root;    /* DESTDIR */
    char *bindir;  /* root/usr/bin */
    char *build;   /* the build's programs ($BIN) */
    bool have_conf; /* docs/tokend.conf exists */
    bool as_nobody; /* make install ran as nobody */
    int runs;      /* commands run, for their log names */
} g;

/* ---- running commands ---------------------------------------------------- */

static char *slurp(const char *path)
{
    size_t n = 0;
    unsigned char *t = tkt_read_file(path, &n);
    if (!t)
        return NULL;
    char *s = realloc(t, n + 1);
    assert_non_null(s);
    s[n] = '\0';
    return s;
}

static bool is_root(void)
{
    return geteuid() == 0;
}

/* Runs argv (argv[0] found on PATH) with stdin from /dev/null, stdout into
 * out and stderr into err (NULL: into out; out NULL: /dev/null). env: NULL
 * or NULL-terminated "K=V" to set and "K" to unset. as_nobody: drop to
 * uid/gid 65534 first. Returns the exit code, 128 + signal if killed. */
static int run(const char *const *argv, const char *const *env, bool as_nobody, const char *out,
               const char *err)
{
    pid_t parent = getpid(), pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126);
        int in = open("/dev/null", O_RDONLY);
        int fo = open(out ? out : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fe = err ? open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644) : fo;
        if (in < 0 || fo < 0 || fe < 0 || dup2(in, 0) < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0)
            _exit(126);
        for (; env && *env; env++) {
            const char *eq = strchr(*env, '=');
            if (eq) {
                char k[128];
                snprintf(k, sizeof k, "%.*s", (int)(eq - *env), *env);
                setenv(k, eq + 1, 1);
            } else {
                unsetenv(*env);
            }
        }
        if (as_nobody && (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 || setuid(NOBODY) != 0))
            _exit(125);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    raw_track(pid, true);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    raw_track(pid, false);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A fresh log path in the group's temp dir ("name-N.log"); owned by caller. */
static char *log_path(const char *name)
{
    char n[96];
    snprintf(n, sizeof n, "%s-%d.log", name, ++g.runs);
    return tkt_path(g.tmp, n);
}

/* True when prog is on PATH. */
static bool have(const char *prog)
{
    const char *argv[] = {"sh", "-c", "command -v \"$0\" >/dev/null", prog, NULL};
    return run(argv, NULL, false, NULL, NULL) == 0;
}

/* Runs make GOAL DESTDIR=destdir [PREFIX=prefix] from the repository root,
 * without the MAKEFLAGS of an enclosing make (its jobserver is not ours),
 * keeping SANITIZE so that it installs the build this suite runs with. The
 * output goes to a log; on failure its tail is printed. */
static int make(const char *goal, const char *destdir, const char *prefix, bool as_nobody,
                char **log_out)
{
    char dd[PATH_MAX + 8], pf[PATH_MAX + 8], san[256];
    const char *argv[8];
    int n = 0;
    const char *sanitize = getenv("SANITIZE");
    argv[n++] = "make";
    argv[n++] = "--no-print-directory";
    argv[n++] = goal;
    snprintf(dd, sizeof dd, "DESTDIR=%s", destdir);
    argv[n++] = dd;
    if (prefix) {
        snprintf(pf, sizeof pf, "PREFIX=%s", prefix);
        argv[n++] = pf;
    }
    if (sanitize && *sanitize) {
        snprintf(san, sizeof san, "SANITIZE=%s", sanitize);
        argv[n++] = san;
    }
    argv[n] = NULL;
    const char *env[] = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", NULL};
    char *log = log_path(goal);
    int rc = run(argv, env, as_nobody, log, NULL);
    if (rc != 0) {
        char *t = slurp(log);
        fprintf(stderr, "# make %s %s exited %d:\n%s\n", goal, dd, rc, t ? t : "(no output)");
        free(t);
    }
    if (log_out)
        *log_out = log;
    else
        free(log);
    return rc;
}

/* ---- files --------------------------------------------------------------- */

/* root/rel, malloc'd. */
static char *under(const char *root, const char *rel)
{
    return tkt_path(root, rel);
}

static bool same_bytes(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *x = tkt_read_file(a, &na), *y = tkt_read_file(b, &nb);
    bool same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static void write_text(const char *path, const char *text)
{
    assert_int_equal(tkt_write_file(path, text, strlen(text)), 0);
}

/* Every regular file under a tree, relative to its root (nftw has no
 * closure argument: one walk at a time). */
static struct {
    size_t root_len;
    char **files;
    size_t n;
} walk;

static int walk_cb(const char *path, const struct stat *st, int type, struct FTW *f)
{
    (void)f;
    if (type == FTW_F) {
        assert_true(S_ISREG(st->st_mode)); /* no symlinks, devices, sockets */
        walk.files = realloc(walk.files, (walk.n + 1) * sizeof *walk.files);
        assert_non_null(walk.files);
        walk.files[walk.n++] = strdup(path + walk.root_len + 1);
    }
    return 0;
}

static void walk_tree(const char *root)
{
    walk.root_len = strlen(root);
    walk.files = NULL;
    walk.n = 0;
    assert_int_equal(nftw(root, walk_cb, 16, FTW_PHYS), 0);
}

static void walk_free(void)
{
    for (size_t i = 0; i < walk.n; i++)
        free(walk.files[i]);
    free(walk.files);
    walk.files = NULL;
    walk.n = 0;
}

/* The unit as make install writes it for bindir. */
static char *expected_unit(const char *bindir)
{
    char *src = slurp("tools/tokend.service");
    assert_non_null(src);
    size_t cap = strlen(src) * 2 + 256, o = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    for (const char *p = src; *p;) {
        if (strncmp(p, "@BINDIR@", 8) == 0) {
            o += (size_t)snprintf(out + o, cap - o, "%s", bindir);
            p += 8;
        } else {
            out[o++] = *p++;
        }
        assert_true(o < cap - 1);
    }
    out[o] = '\0';
    free(src);
    return out;
}

/* ---- the group: one install for every test ---------------------------- */

static int group_setup(void **state)
{
    (void)state;
    const char *bin = getenv("BIN");
    memset(&g, 0, sizeof g);
    g.build = strdup(bin && *bin ? bin : "bin");
    g.tmp = tkt_mkdtemp();
    assert_non_null(g.tmp);
    g.root = tkt_path(g.tmp, "root");
    g.bindir = tkt_path(g.root, "usr/bin");
    g.have_conf = access("docs/tokend.conf", F_OK) == 0;
    unsetenv("NOTIFY_SOCKET"); /* a suite run under a service manager: not ours */
    signal(SIGPIPE, SIG_IGN);

    /* Installs what is built: make install would otherwise rebuild as
     * nobody, who cannot write build/. */
    const char *q[] = {"make", "--no-print-directory", "-q", "all", NULL};
    const char *env[] = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", NULL};
    if (run(q, env, false, NULL, NULL) != 0) {
        fprintf(stderr, "# the build is not up to date: run make (or make test) first\n");
        return -1;
    }
    if (is_root()) {
        /* nobody must read the tree and write DESTDIR; a checkout under a
         * private home cannot be read: then root installs, and says so. */
        if (chown(g.tmp, NOBODY, NOBODY) != 0)
            return -1;
        char t[PATH_MAX + 64];
        snprintf(t, sizeof t, "test -r Makefile && test -r \"%s/tokend\" && test -w \"%s\"",
                 g.build, g.tmp);
        const char *probe[] = {"sh", "-c", t, NULL};
        g.as_nobody = run(probe, NULL, true, NULL, NULL) == 0;
        if (!g.as_nobody)
            fprintf(stderr, "# nobody cannot read this checkout: make install runs as root\n");
    }
    if (make("install", g.root, "/usr", g.as_nobody, NULL) != 0)
        return -1;
    setenv("BIN", g.bindir, 1); /* raw_server_start runs the installed tokend */
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (g.tmp)
        tkt_rmdir(g.tmp);
    free(g.tmp);
    free(g.root);
    free(g.bindir);
    free(g.build);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    raw_watchdog(WATCHDOG_S);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    raw_watchdog(0);
    return 0;
}

/* ---- what landed ------------------------------------------------------- */

typedef struct want_file {
    char rel[PATH_MAX];
    mode_t mode;
    char src[PATH_MAX]; /* the bytes it must have, or "" (checked apart) */
    bool seen;
} want_file;

static size_t want_add(want_file *w, size_t n, const char *rel, mode_t mode, const char *src)
{
    snprintf(w[n].rel, sizeof w[n].rel, "%s", rel);
    w[n].mode = mode;
    snprintf(w[n].src, sizeof w[n].src, "%s", src);
    w[n].seen = false;
    return n + 1;
}

/* What make install puts under DESTDIR for prefix ("usr" or "usr/local",
 * without the slash), as docs/install.md lists it. */
static size_t want_tree(want_file *w, size_t cap, const char *prefix)
{
    char rel[PATH_MAX], src[PATH_MAX];
    size_t n = 0;
    glob_t gl;
    for (int i = 0; i < PROGS_N; i++) {
        snprintf(rel, sizeof rel, "%s/bin/%s", prefix, progs[i]);
        snprintf(src, sizeof src, "%s/%s", g.build, progs[i]);
        n = want_add(w, n, rel, 0755, src);
        snprintf(rel, sizeof rel, "%s/share/man/man1/%s.1", prefix, progs[i]);
        snprintf(src, sizeof src, "docs/man/%s.1", progs[i]);
        n = want_add(w, n, rel, 0644, src);
    }
    snprintf(rel, sizeof rel, "%s/lib/systemd/system/tokend.service", prefix);
    n = want_add(w, n, rel, 0644, "");
    snprintf(rel, sizeof rel, "%s/share/doc/tokend/README.md", prefix);
    n = want_add(w, n, rel, 0644, "README.md");
    snprintf(rel, sizeof rel, "%s/share/doc/tokend/openapi.yaml", prefix);
    n = want_add(w, n, rel, 0644, "docs/openapi.yaml");
    assert_int_equal(glob("docs/*.md", 0, NULL, &gl), 0);
    for (size_t i = 0; i < gl.gl_pathc; i++) {
        assert_true(n < cap - 2);
        snprintf(rel, sizeof rel, "%s/share/doc/tokend/%s", prefix, gl.gl_pathv[i] + 5);
        n = want_add(w, n, rel, 0644, gl.gl_pathv[i]);
    }
    globfree(&gl);
    if (g.have_conf) {
        snprintf(rel, sizeof rel, "%s/share/doc/tokend/tokend.conf", prefix);
        n = want_add(w, n, rel, 0644, "docs/tokend.conf");
        n = want_add(w, n, "etc/tokend/tokend.conf", 0644, "docs/tokend.conf");
    }
    return n;
}

/* Every wanted file is there with its mode and bytes, and nothing else. */
static void check_tree(const char *root, const char *prefix)
{
    want_file w[64];
    size_t n = want_tree(w, 64, prefix);
    char bindir[PATH_MAX];
    snprintf(bindir, sizeof bindir, "/%s/bin", prefix);
    walk_tree(root);
    for (size_t i = 0; i < walk.n; i++) {
        size_t j = 0;
        while (j < n && strcmp(w[j].rel, walk.files[i]) != 0)
            j++;
        if (j == n)
            fail_msg("make install put %s/%s, which docs/install.md does not list", root,
                     walk.files[i]);
        w[j].seen = true;
    }
    walk_free();
    for (size_t j = 0; j < n; j++) {
        char *p = under(root, w[j].rel);
        struct stat st;
        if (!w[j].seen || stat(p, &st) != 0)
            fail_msg("make install did not put %s", p);
        if ((st.st_mode & 07777) != w[j].mode)
            fail_msg("%s: mode %04o, expected %04o", p, (unsigned)(st.st_mode & 07777),
                     (unsigned)w[j].mode);
        if (w[j].src[0] && !same_bytes(p, w[j].src))
            fail_msg("%s differs from %s", p, w[j].src);
        free(p);
    }
    /* The unit: tools/tokend.service with ExecStart's directory filled in. */
    char rel[PATH_MAX];
    snprintf(rel, sizeof rel, "%s/lib/systemd/system/tokend.service", prefix);
    char *p = under(root, rel), *got = slurp(p), *exp = expected_unit(bindir);
    assert_non_null(got);
    assert_string_equal(got, exp);
    assert_null(strstr(got, "@BINDIR@"));
    free(p);
    free(got);
    free(exp);
}

static void files_land_with_modes(void **state)
{
    (void)state;
    check_tree(g.root, "usr");
    char *etc = under(g.root, "etc/tokend");
    struct stat st;
    if (g.have_conf) {
        assert_int_equal(stat(etc, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0755);
    } else {
        /* Nothing in the example's place until it exists. */
        assert_int_equal(stat(etc, &st), -1);
    }
    free(etc);
    if (is_root() && g.as_nobody) {
        /* Installed by nobody: nothing asked for root (no chown, no -o). */
        char *b = under(g.bindir, "tokend");
        assert_int_equal(stat(b, &st), 0);
        assert_int_equal(st.st_uid, NOBODY);
        free(b);
    }
}

/* ---- the installed programs run -------------------------------------- */

static bool help_has(const char *flag)
{
    char *exe = under(g.bindir, "tokend"), *out = log_path("help");
    const char *argv[] = {exe, "--help", NULL};
    assert_int_equal(run(argv, NULL, false, out, NULL), 0);
    char *t = slurp(out);
    bool has = t && strstr(t, flag) != NULL;
    free(t);
    free(out);
    free(exe);
    return has;
}

static void ping_ok(const raw_server *s)
{
    raw_reply r;
    int fd = raw_connect(s->port);
    assert_true(fd >= 0);
    assert_int_equal(raw_call(fd, OP_PING, 1, NULL, &r), 0);
    raw_reply_free(&r);
    close(fd);
}

static void installed_programs_run(void **state)
{
    (void)state;
    for (int i = 0; i < PROGS_N; i++) {
        char *exe = under(g.bindir, progs[i]), *out = log_path("help"), want[64];
        const char *argv[] = {exe, "--help", NULL};
        assert_int_equal(run(argv, NULL, false, out, NULL), 0);
        char *t = slurp(out);
        snprintf(want, sizeof want, "usage: %s ", progs[i]);
        assert_non_null(t);
        assert_true(strncmp(t, want, strlen(want)) == 0);
        free(t);
        free(out);
        free(exe);
    }

    /* tokend from DESTDIR serves; the installed tokenctl reaches it. */
    raw_server s;
    char addr[64];
    assert_int_equal(raw_server_start(&s, NULL, NULL), 0);
    ping_ok(&s);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", s.port);
    char *ctl = under(g.bindir, "tokenctl"), *out = log_path("ctl");
    const char *ping[] = {ctl, "--addr", addr, "ping", NULL};
    assert_int_equal(run(ping, NULL, false, out, NULL), 0);
    char *t = slurp(out);
    assert_non_null(strstr(t, "protocol version"));
    free(t);
    free(out);
    free(ctl);
    assert_int_equal(raw_server_stop(&s), 0);
    char *rp = under(g.bindir, "tokenreplay");
    out = log_path("replay");
    const char *check[] = {rp, "check", "--data", s.dir, NULL};
    assert_int_equal(run(check, NULL, false, out, NULL), 0);
    free(out);
    free(rp);
    raw_server_free(&s);

    /* With the example configuration, as the unit starts it. */
    if (!help_has("--config"))
        skip_msg("the installed tokend has no --config yet (its --help lists none): the "
                 "start with the example configuration was not run; every other step passed");
    if (!g.have_conf)
        skip_msg("docs/tokend.conf does not exist yet: the start with the example "
                 "configuration was not run; every other step passed");
    char *conf = under(g.root, "etc/tokend/tokend.conf");
    const char *extra[] = {"--config", conf, NULL};
    assert_int_equal(raw_server_start(&s, NULL, extra), 0);
    ping_ok(&s);
    assert_int_equal(raw_server_stop(&s), 0);
    raw_server_free(&s);
    free(conf);
}

static void operator_config_survives_reinstall(void **state)
{
    (void)state;
    char *log = NULL;
    /* A second install over the first works (upgrades are make install). */
    assert_int_equal(make("install", g.root, "/usr", g.as_nobody, &log), 0);
    char *conf = under(g.root, "etc/tokend/tokend.conf");
    if (!g.have_conf) {
        assert_int_equal(access(conf, F_OK), -1);
        free(conf);
        free(log);
        skip_msg("docs/tokend.conf does not exist yet: nothing to keep (the install put "
                 "nothing in its place)");
    }
    write_text(conf, "# the operator's own\n");
    free(log);
    assert_int_equal(make("install", g.root, "/usr", g.as_nobody, &log), 0);
    char *t = slurp(conf), *l = slurp(log);
    assert_string_equal(t, "# the operator's own\n");
    assert_non_null(strstr(l, "kept"));
    char *doc = under(g.root, "usr/share/doc/tokend/tokend.conf");
    assert_true(same_bytes(doc, "docs/tokend.conf")); /* the example is still updated */
    free(doc);
    free(t);
    free(l);
    free(conf);
    free(log);
}

static void uninstall_removes_what_install_put(void **state)
{
    (void)state;
    char *tmp = tkt_mkdtemp(), *root = tkt_path(tmp, "root");
    if (g.as_nobody)
        assert_int_equal(chown(tmp, NOBODY, NOBODY), 0);
    /* The default PREFIX, /usr/local. */
    assert_int_equal(make("install", root, NULL, g.as_nobody, NULL), 0);
    check_tree(root, "usr/local");
    char *conf = under(root, "etc/tokend/tokend.conf");
    if (g.have_conf)
        write_text(conf, "# the operator's own\n");
    assert_int_equal(make("uninstall", root, NULL, g.as_nobody, NULL), 0);
    walk_tree(root);
    if (g.have_conf) {
        assert_int_equal(walk.n, 1); /* the operator's configuration stays */
        assert_string_equal(walk.files[0], "etc/tokend/tokend.conf");
    } else {
        if (walk.n)
            fail_msg("uninstall left %s/%s", root, walk.files[0]);
    }
    walk_free();
    tkt_rmdir(tmp);
    free(conf);
    free(root);
    free(tmp);
}

/* ---- man pages ---------------------------------------------------------- */

/* Collapses every run of blanks (newlines included) into one space. */
static void squeeze(char *s)
{
    char *o = s;
    bool blank = false;
    for (char *p = s; *p; p++) {
        if (*p == ' ' || *p == '\t' || *p == '\n') {
            blank = true;
            continue;
        }
        if (blank && o != s)
            *o++ = ' ';
        blank = false;
        *o++ = *p;
    }
    *o = '\0';
}

/* True when text holds flag ("--data") as a whole word. */
static bool has_flag(const char *text, const char *flag)
{
    size_t n = strlen(flag);
    for (const char *p = text; (p = strstr(p, flag)); p++) {
        bool start = p == text || !(p[-1] == '-' || (p[-1] >= 'a' && p[-1] <= 'z'));
        char c = p[n];
        bool end = !(c == '-' || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'));
        if (start && end)
            return true;
    }
    return false;
}

/* Calls fn for every "--flag" word in text. */
static void each_flag(const char *text, void (*fn)(const char *flag, void *arg), void *arg)
{
    for (const char *p = text; (p = strstr(p, "--"));) {
        if (p != text && (p[-1] == '-' || (p[-1] >= 'a' && p[-1] <= 'z'))) {
            p += 2;
            continue;
        }
        size_t n = 2;
        while ((p[n] >= 'a' && p[n] <= 'z') || (p[n] >= '0' && p[n] <= '9') || p[n] == '-')
            n++;
        /* "--http-KEY" on the page names a family of flags, not a flag. */
        if (n > 2 && p[2] >= 'a' && p[2] <= 'z' && p[n - 1] != '-') {
            char f[64];
            snprintf(f, sizeof f, "%.*s", (int)n, p);
            fn(f, arg);
        }
        p += n;
    }
}

typedef struct flag_check {
    const char *page, *text, *what;
} flag_check;

static void flag_in(const char *flag, void *arg)
{
    const flag_check *c = arg;
    if (!has_flag(c->text, flag) && strcmp(flag, "--help") != 0) /* --help made the text */
        fail_msg("%s: %s is %s", c->page, flag, c->what);
}

static void man_pages_render_and_match_help(void **state)
{
    (void)state;
    if (!have("groff"))
        skip_msg("groff is missing (make deps installs groff-base)");
    bool man = have("man"), lexgrog = have("lexgrog");
    bool config_landed = help_has("--config");
    for (int i = 0; i < PROGS_N; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "usr/share/man/man1/%s.1", progs[i]);
        char *page = under(g.root, rel), *out = log_path("groff"), *text;

        /* No warning from groff, all of them on, nor from man. */
        const char *lint[] = {"groff", "-man", "-ww", "-z", page, NULL};
        assert_int_equal(run(lint, NULL, false, out, NULL), 0);
        text = slurp(out);
        if (*text)
            fail_msg("groff -man -ww: %s:\n%s", page, text);
        free(text);
        free(out);
        if (man) {
            const char *mw[] = {"man", "--warnings", "-l", page, NULL};
            const char *env[] = {"MANWIDTH=80", "LC_ALL=C.UTF-8", "MANPAGER=cat", "PAGER=cat",
                                 NULL};
            out = log_path("man-warnings");
            assert_int_equal(run(mw, env, false, "/dev/null", out), 0);
            text = slurp(out);
            if (*text)
                fail_msg("man --warnings: %s:\n%s", page, text);
            free(text);
            free(out);
        }
        if (lexgrog) { /* whatis and apropos read the NAME section */
            const char *lg[] = {"lexgrog", page, NULL};
            char want[64];
            out = log_path("lexgrog");
            assert_int_equal(run(lg, NULL, false, out, NULL), 0);
            text = slurp(out);
            snprintf(want, sizeof want, ": \"%s - ", progs[i]);
            if (!strstr(text, want))
                fail_msg("lexgrog %s: %s", page, text);
            free(text);
            free(out);
        }

        /* The page, as plain text on lines long enough never to break. */
        const char *render[] = {"groff", "-man", "-Tascii", "-rLL=400n", "-rHY=0",
                                "-P-cbou", page, NULL};
        out = log_path("render");
        assert_int_equal(run(render, NULL, false, out, "/dev/null"), 0);
        text = slurp(out);
        squeeze(text);
        free(out);
        char *exe = under(g.bindir, progs[i]);
        const char *help[] = {exe, "--help", NULL};
        out = log_path("help");
        assert_int_equal(run(help, NULL, false, out, NULL), 0);
        char *h = slurp(out);
        free(out);

        /* Every flag of --help is on the page... */
        flag_check fc = {page, text, "in --help but not on the page"};
        each_flag(h, flag_in, &fc);
        /* ...and every flag on the page is in --help (once --config has
         * landed: the page documents it already). */
        if (config_landed || i > 0) {
            flag_check rc = {page, h, "on the page but not in --help"};
            each_flag(text, flag_in, &rc);
        }
        /* Every command's usage line is on the page, word for word. */
        for (char *line = strtok(h, "\n"); line; line = strtok(NULL, "\n")) {
            char usage[512];
            usage[0] = '\0';
            if (i == 1 && strncmp(line, "  tokenctl ", 11) == 0)
                snprintf(usage, sizeof usage, "%s", line + 11);
            else if (i == 2 && line[0] == ' ' && line[1] == ' ' && line[2] >= 'a'
                     && line[2] <= 'z' && strstr(line, " --"))
                snprintf(usage, sizeof usage, "tokenreplay %s", line + 2);
            if (!usage[0])
                continue;
            squeeze(usage);
            if (!strstr(text, usage))
                fail_msg("%s: the usage \"%s\" of --help is not on the page", page, usage);
        }
        /* And it says where the full documentation is. */
        assert_non_null(strstr(text, "share/doc/tokend"));
        free(h);
        free(exe);
        free(text);
        free(page);
    }
    if (!config_landed)
        fprintf(stderr, "# tokend.1 lists --config and --check-config, which tokend --help "
                        "does not have yet: that direction of the check waits for them\n");
}

/* ---- the unit ------------------------------------------------------------ */

/* The installed unit's text (owned). */
static char *installed_unit(void)
{
    char *p = under(g.root, "usr/lib/systemd/system/tokend.service"), *t = slurp(p);
    assert_non_null(t);
    free(p);
    return t;
}

/* The values of key in the unit's [section], one per line it is set on;
 * n_out: how many (at most cap). */
static int unit_values(const char *unit, const char *section, const char *key, char out[][256],
                       int cap)
{
    char *copy = strdup(unit), *save = NULL;
    bool in = false;
    int n = 0;
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (l[0] == '[') {
            in = strncmp(l + 1, section, strlen(section)) == 0 && l[1 + strlen(section)] == ']';
            continue;
        }
        size_t k = strlen(key);
        if (in && strncmp(l, key, k) == 0 && l[k] == '=' && n < cap)
            snprintf(out[n++], 256, "%s", l + k + 1);
    }
    free(copy);
    return n;
}

static void unit_has_its_directives(void **state)
{
    (void)state;
    static const char *const want[][2] = {
        {"Type", "notify"},
        {"ExecStart", "/usr/bin/tokend --config /etc/tokend/tokend.conf --data /var/lib/tokend"},
        {"StateDirectory", "tokend"},
        {"StateDirectoryMode", "0700"},
        {"DynamicUser", "yes"},
        {"ProtectSystem", "strict"},
        {"ProtectHome", "yes"},
        {"PrivateTmp", "yes"},
        {"PrivateDevices", "yes"},
        {"NoNewPrivileges", "yes"},
        {"MemoryDenyWriteExecute", "yes"},
        {"RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"},
        {"SystemCallFilter", "@system-service"},
        {"SystemCallFilter", "~@privileged"},
        {"SystemCallErrorNumber", "EPERM"},
        {"LockPersonality", "yes"},
        {"RestrictRealtime", "yes"},
        {"RestrictNamespaces", "yes"},
        {"CapabilityBoundingSet", ""},
        {"UMask", "0077"},
        {"LimitCORE", "0"},
        {"KillSignal", "SIGTERM"},
        {"Restart", "on-failure"},
        {"RestartPreventExitStatus", "2"}, /* a bad configuration: no restart loop */
    };
    char *unit = installed_unit();
    char v[4][256];
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int n = unit_values(unit, "Service", want[i][0], v, 4);
        bool found = false;
        for (int j = 0; j < n; j++)
            found |= strcmp(v[j], want[i][1]) == 0;
        if (!found)
            fail_msg("tokend.service: [Service] has no %s=%s", want[i][0], want[i][1]);
    }
    /* Enough descriptors for the default connection caps, which tokend
     * would otherwise raise its soft limit to (raise_fd_limit). */
    srv_opts o;
    srv_opts_default(&o);
    unsigned long need = (unsigned long)o.conn.max_connections + o.http.max_connections + 64;
    assert_int_equal(unit_values(unit, "Service", "LimitNOFILE", v, 4), 1);
    assert_true(strtoul(v[0], NULL, 10) >= need);
    assert_int_equal(unit_values(unit, "Install", "WantedBy", v, 4), 1);
    assert_string_equal(v[0], "multi-user.target");
    free(unit);
}

/* Writes a copy of the installed unit, as dir/tokend.service, whose
 * ExecStart runs the DESTDIR binary (verify checks that it exists), with
 * every `from` replaced by `to` (from NULL: no change). */
static char *unit_copy(const char *dir, const char *from, const char *to)
{
    char *unit = installed_unit(), exec[PATH_MAX + 32];
    const char *old = "ExecStart=/usr/bin/tokend ";
    char *at = strstr(unit, old);
    assert_non_null(at);
    snprintf(exec, sizeof exec, "ExecStart=%s/tokend ", g.bindir);
    size_t cap = strlen(unit) + PATH_MAX + 256;
    char *out = malloc(cap);
    assert_non_null(out);
    snprintf(out, cap, "%.*s%s%s", (int)(at - unit), unit, exec, at + strlen(old));
    if (from) {
        char *f = strstr(out, from);
        assert_non_null(f);
        char *rest = strdup(f + strlen(from));
        snprintf(f, cap - (size_t)(f - out), "%s%s", to, rest);
        free(rest);
    }
    mkdir(dir, 0755);
    char *path = tkt_path(dir, "tokend.service");
    write_text(path, out);
    free(out);
    free(unit);
    return path;
}

/* systemd-analyze verify on path with the DESTDIR man pages (or manpath):
 * NULL when it passes without a word, else what it said (owned). */
static char *verify(const char *path, const char *manpath)
{
    char env0[PATH_MAX + 16], *mp = under(g.root, "usr/share/man");
    snprintf(env0, sizeof env0, "MANPATH=%s", manpath ? manpath : mp);
    const char *env[] = {env0, NULL};
    const char *argv[] = {"systemd-analyze", "verify", path, NULL};
    char *out = log_path("verify");
    int rc = run(argv, env, false, out, NULL);
    char *t = slurp(out);
    free(out);
    free(mp);
    if (rc == 0 && t && !*t) {
        free(t);
        return NULL;
    }
    if (!t || !*t) {
        free(t);
        t = strdup("(no output)");
    }
    size_t cap = strlen(t) + 32;
    char *r = malloc(cap);
    assert_non_null(r);
    snprintf(r, cap, "exit %d: %s", rc, t);
    free(t);
    return r;
}

static void unit_passes_systemd_analyze(void **state)
{
    (void)state;
    if (!have("systemd-analyze"))
        skip_msg("systemd-analyze is missing (make deps installs systemd)");
    if (!have("man"))
        skip_msg("man is missing (make deps installs man-db): verify checks the unit's "
                 "man: pages with it");
    char *dir = tkt_path(g.tmp, "verify");
    char *good = unit_copy(dir, NULL, NULL), *said = verify(good, NULL);
    if (said)
        fail_msg("systemd-analyze verify tokend.service: %s", said);

    /* The check is live: each of these makes it speak. */
    static const char *const bad[][2] = {
        {"ProtectSystem=strict", "ProtectSytem=strict"}, /* a typo in a directive */
        {"Type=notify", "Type=notfy"},                   /* a bad value */
        {"/tokend --config", "/tokend-missing --config"}, /* ExecStart's binary */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char d[32];
        snprintf(d, sizeof d, "bad-%zu", i);
        char *bdir = tkt_path(dir, d), *p = unit_copy(bdir, bad[i][0], bad[i][1]);
        char *s = verify(p, NULL);
        if (!s)
            fail_msg("verify passed a unit with %s", bad[i][1]);
        free(s);
        free(p);
        free(bdir);
    }
    char *nowhere = tkt_path(g.tmp, "no-man"); /* man:tokend(1) not found */
    mkdir(nowhere, 0755);
    char *s = verify(good, nowhere);
    assert_non_null(s);
    assert_non_null(strstr(s, "man"));
    free(s);
    free(nowhere);

    /* systemd's own rating of the sandbox: exposure at most 1.5, its rating now. */
    const char *sec[] = {"systemd-analyze", "security", "--offline=true", "--threshold=15",
                         good, NULL};
    char *out = log_path("security");
    int rc = run(sec, NULL, false, out, NULL);
    char *t = slurp(out);
    if (rc != 0)
        fail_msg("systemd-analyze security: exposure over 1.5 (exit %d):\n%s", rc, t);
    assert_non_null(strstr(t, "Overall exposure level for tokend.service"));
    free(t);
    free(out);
    free(good);
    free(dir);
}

/* ---- the sandbox, approximated: strace ----------------------------------- */

typedef struct sysset {
    char **names;
    size_t n;
} sysset;

static bool set_has(const sysset *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0)
            return true;
    return false;
}

static void set_add(sysset *s, const char *name)
{
    if (set_has(s, name))
        return;
    s->names = realloc(s->names, (s->n + 1) * sizeof *s->names);
    assert_non_null(s->names);
    s->names[s->n++] = strdup(name);
}

static void set_del(sysset *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0) {
            free(s->names[i]);
            s->names[i] = s->names[--s->n];
            return;
        }
}

static void set_free(sysset *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->names[i]);
    free(s->names);
    memset(s, 0, sizeof *s);
}

/* Adds to s what item names in `systemd-analyze syscall-filter`'s listing
 * (text): a system call, or a @group and, recursively, its members. */
static void expand(const char *text, const char *item, sysset *s, int depth)
{
    assert_true(depth < 16);
    if (item[0] != '@') {
        set_add(s, item);
        return;
    }
    char head[80];
    snprintf(head, sizeof head, "\n%s\n", item);
    const char *p = strstr(text, head); /* text starts with a newline */
    if (!p)
        fail_msg("systemd-analyze syscall-filter lists no group %s", item);
    p += strlen(head);
    while (*p == ' ') { /* the group's lines are indented; a blank line ends it */
        const char *e = strchr(p, '\n');
        if (!e)
            e = p + strlen(p);
        const char *w = p;
        while (*w == ' ')
            w++;
        if (*w != '#') {
            char name[80];
            snprintf(name, sizeof name, "%.*s", (int)(e - w), w);
            expand(text, name, s, depth + 1);
        }
        p = *e ? e + 1 : e;
    }
}

/* The system calls the installed unit's SystemCallFilter= lines allow: the
 * first line's list, less every later "~" list. */
static void unit_allowed(sysset *allow)
{
    char *unit = installed_unit(), v[4][256];
    int n = unit_values(unit, "Service", "SystemCallFilter", v, 4);
    assert_true(n >= 1);
    assert_true(v[0][0] != '~');
    char *out = log_path("syscall-filter");
    const char *argv[] = {"systemd-analyze", "syscall-filter", NULL};
    assert_int_equal(run(argv, NULL, false, out, "/dev/null"), 0);
    char *listing = slurp(out);
    assert_non_null(listing);
    char *text = malloc(strlen(listing) + 2);
    assert_non_null(text);
    sprintf(text, "\n%s", listing);
    free(listing);
    for (int i = 0; i < n; i++) {
        bool deny = v[i][0] == '~';
        sysset items = {0};
        char *save = NULL;
        for (char *w = strtok_r(v[i] + deny, " ", &save); w; w = strtok_r(NULL, " ", &save))
            expand(text, w, &items, 0);
        for (size_t j = 0; j < items.n; j++) {
            if (deny)
                set_del(allow, items.names[j]);
            else
                set_add(allow, items.names[j]);
        }
        set_free(&items);
    }
    free(text);
    free(out);
    free(unit);
}

/* The pid of the child of parent (strace's tracee), or -1. */
static pid_t child_of(pid_t parent)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    pid_t found = -1;
    assert_non_null(d);
    while (found < 0 && (e = readdir(d))) {
        char path[300], buf[512];
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        char *rp = strrchr(buf, ')');
        int ppid;
        char st;
        if (rp && sscanf(rp + 1, " %c %d", &st, &ppid) == 2 && ppid == parent)
            found = (pid_t)atoi(e->d_name);
    }
    closedir(d);
    return found;
}

/* What the traced run did that the unit would refuse, appended to bad. */
typedef struct trace_check {
    sysset used;
    char bad[4096];
    size_t bad_len;
    bool synced;
} trace_check;

static void flag_bad(trace_check *c, const char *why, const char *line)
{
    int n = snprintf(c->bad + c->bad_len, sizeof c->bad - c->bad_len, "  %s: %.160s\n", why, line);
    if (n > 0 && (size_t)n < sizeof c->bad - c->bad_len)
        c->bad_len += (size_t)n;
}

/* Reads an strace -f log from the execve of real on: what setpriv did
 * before it is systemd's part, not tokend's. */
static void read_trace(const char *path, const char *real, trace_check *c)
{
    char *t = slurp(path), *save = NULL, exec[PATH_MAX + 16];
    bool started = false;
    assert_non_null(t);
    snprintf(exec, sizeof exec, "execve(\"%s\", ", real);
    for (char *l = strtok_r(t, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        char *call = l;
        while (*call >= '0' && *call <= '9')
            call++;
        while (*call == ' ')
            call++;
        if (!started) {
            size_t n = strlen(call);
            started = strncmp(call, exec, strlen(exec)) == 0 && n > 4
                      && strcmp(call + n - 4, " = 0") == 0;
            if (!started)
                continue;
        }
        char *paren = strchr(call, '(');
        if (!paren || call[0] == '<' || call[0] == '+' || call[0] == '-')
            continue; /* "<... x resumed>", "+++ exited", "--- SIGTERM" */
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(paren - call), call);
        set_add(&c->used, name);
        if (!strcmp(name, "fsync") || !strcmp(name, "fdatasync"))
            c->synced = true;
        if ((!strcmp(name, "socket") || !strcmp(name, "socketpair"))
            && strncmp(paren + 1, "AF_UNIX,", 8) && strncmp(paren + 1, "AF_INET,", 8)
            && strncmp(paren + 1, "AF_INET6,", 9))
            flag_bad(c, "an address family RestrictAddressFamilies= refuses", call);
        if ((!strcmp(name, "mmap") && strstr(call, "PROT_WRITE") && strstr(call, "PROT_EXEC"))
            || ((!strcmp(name, "mprotect") || !strcmp(name, "pkey_mprotect"))
                && strstr(call, "PROT_EXEC")))
            flag_bad(c, "executable memory MemoryDenyWriteExecute= refuses", call);
        if (!strcmp(name, "personality") && !strstr(call, "0xffffffff"))
            flag_bad(c, "a personality change LockPersonality= refuses", call);
        if (strstr(call, "CLONE_NEW") || !strcmp(name, "unshare") || !strcmp(name, "setns"))
            flag_bad(c, "a namespace RestrictNamespaces= refuses", call);
        if (!strcmp(name, "sched_setscheduler")
            && (strstr(call, "SCHED_FIFO") || strstr(call, "SCHED_RR")))
            flag_bad(c, "real-time scheduling RestrictRealtime= refuses", call);
    }
    if (!started)
        fail_msg("%s: no execve of %s", path, real);
    free(t);
}

static struct {
    bool open;
} data_walk;

static int private_cb(const char *path, const struct stat *st, int type, struct FTW *f)
{
    (void)f;
    (void)type;
    if (st->st_mode & 077) {
        fprintf(stderr, "# %s: mode %04o\n", path, (unsigned)(st->st_mode & 07777));
        data_walk.open = true;
    }
    if (is_root() && st->st_uid != NOBODY) {
        fprintf(stderr, "# %s: owned by uid %u, not the service's\n", path, (unsigned)st->st_uid);
        data_walk.open = true;
    }
    return 0;
}

/* One traced run of the installed tokend on data: start, a PING, a write
 * (its fsync), a verification, HTTP, SIGTERM. */
static void traced_run(const char *data, const char *trace, const char *work)
{
    raw_server s;
    raw_reply r;
    mpw w;
    char key[128];
    setenv("TK_TRACE", trace, 1);
    setenv("BIN", work, 1);
    int rc = raw_server_start(&s, data, NULL);
    setenv("BIN", g.bindir, 1);
    assert_int_equal(rc, 0);
    int fd = raw_connect(s.port);
    assert_true(fd >= 0);
    assert_int_equal(raw_call(fd, OP_PING, 1, NULL, &r), 0);
    raw_reply_free(&r);
    assert_int_equal(raw_read_key(&s, "operator.key", key, sizeof key), 0);
    mpw_init(&w);
    raw_map(&w, "key:s", key);
    assert_int_equal(raw_call(fd, OP_AUTH, 2, &w, &r), 0);
    raw_reply_free(&r);
    mpw_reset(&w);
    char tenant[32];
    snprintf(tenant, sizeof tenant, "acme%ld", (long)tkt_now_ms() % 100000);
    raw_map(&w, "tenant:s", tenant);
    assert_int_equal(raw_call(fd, OP_TENANT_CREATE, 3, &w, &r), 0);
    raw_reply_free(&r);
    mpw_reset(&w);
    raw_map(&w, "secret:s", "tkt_not_a_secret");
    assert_int_equal(raw_call(fd, OP_VERIFY, 4, &w, &r), 0);
    raw_reply_free(&r);
    mpw_free(&w);
    close(fd);
    hraw_resp h;
    assert_int_equal(hraw_once(s.http_port, "GET", "/healthz", NULL, NULL, &h), 0);
    assert_int_equal(h.status, 200);
    hraw_free(&h);
    assert_int_equal(hraw_once(s.http_port, "GET", "/metrics", NULL, NULL, &h), 0);
    assert_int_equal(h.status, 200);
    hraw_free(&h);

    /* SIGTERM to tokend itself, as systemd's KillSignal; strace then exits
     * with its status. */
    pid_t tokend = child_of(s.pid);
    assert_true(tokend > 0);
    assert_int_equal(kill(tokend, SIGTERM), 0);
    assert_int_equal(raw_server_wait(&s, 30000), 0);
    assert_true(raw_server_log_has(&s, "stopped ("));
    raw_server_free(&s);
    unsetenv("TK_TRACE");
}

static void tokend_stays_inside_the_sandbox(void **state)
{
    (void)state;
    if (!have("strace") || !have("setpriv"))
        skip_msg("strace or setpriv is missing (make deps installs strace; setpriv is "
                 "util-linux's)");
    if (!have("systemd-analyze"))
        skip_msg("systemd-analyze is missing (make deps installs systemd)");
    sysset allow = {0};
    unit_allowed(&allow);
    assert_true(set_has(&allow, "epoll_wait") && !set_has(&allow, "reboot"));

    /* A work dir the service's user owns: its data, its traces, and a
     * wrapper in place of tokend that becomes that user (nobody, no
     * capabilities, no new privileges, umask 0077 as UMask=) and runs the
     * installed tokend under strace -f. */
    char *work = tkt_mkdtemp(), *data = tkt_path(work, "data");
    char *wrap = tkt_path(work, "tokend"), *real = under(g.bindir, "tokend"), script[2048];
    assert_int_equal(chmod(work, 0755), 0);
    /* setpriv also makes tokend die with strace (--pdeathsig), as
     * raw_server_start does for the servers it starts itself. Under
     * SANITIZE, LeakSanitizer cannot work under ptrace (it would fail the
     * exit): off for this run only; every other suite checks for leaks. */
    snprintf(script, sizeof script,
             "#!/bin/sh\n"
             "umask 0077\n"
             "ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0\"\n"
             "export ASAN_OPTIONS\n"
             "exec strace -f -qq -o \"$TK_TRACE\" -- setpriv %s--pdeathsig KILL '%s' \"$@\"\n",
             is_root() ? "--reuid=65534 --regid=65534 --clear-groups --inh-caps=-all "
                         "--bounding-set=-all --no-new-privs "
                       : "",
             real);
    write_text(wrap, script);
    assert_int_equal(chmod(wrap, 0755), 0);
    char *tdir = tkt_path(work, "traces");
    assert_int_equal(mkdir(tdir, 0700), 0);
    if (is_root()) {
        assert_int_equal(chown(tdir, NOBODY, NOBODY), 0);
        assert_int_equal(mkdir(data, 0700), 0); /* StateDirectory= makes it, empty */
        assert_int_equal(chown(data, NOBODY, NOBODY), 0);
    }
    char *t1 = tkt_path(tdir, "first"), *t2 = tkt_path(tdir, "again");
    traced_run(data, t1, work); /* a fresh data directory */
    traced_run(data, t2, work); /* the same, reopened: the log checked, LMDB caught up */

    trace_check c = {0};
    read_trace(t1, real, &c);
    read_trace(t2, real, &c);
    assert_true(set_has(&c.used, "execve") && set_has(&c.used, "exit_group"));
    assert_true(c.synced); /* the write was traced */
    for (size_t i = 0; i < c.used.n; i++)
        if (!set_has(&allow, c.used.names[i]))
            flag_bad(&c, "a system call SystemCallFilter= refuses", c.used.names[i]);
    if (c.bad_len)
        fail_msg("tokend does what tokend.service forbids (traces in %s):\n%s", tdir, c.bad);

    /* Nothing it made is readable by anyone but the service's user. */
    data_walk.open = false;
    assert_int_equal(nftw(data, private_cb, 16, FTW_PHYS), 0);
    assert_false(data_walk.open);

    set_free(&c.used);
    set_free(&allow);
    tkt_rmdir(work);
    free(t1);
    free(t2);
    free(tdir);
    free(wrap);
    free(real);
    free(data);
    free(work);
}

/* ---- readiness ----------------------------------------------------------- */

/* A bound AF_UNIX datagram socket: a path, or "@name" (abstract). */
static int notify_listen(const char *name)
{
    struct sockaddr_un sa;
    size_t n = strlen(name);
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    assert_true(n < sizeof sa.sun_path);
    memcpy(sa.sun_path, name, n);
    if (name[0] == '@')
        sa.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(
        bind(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)),
        0);
    return fd;
}

/* The next datagram within ms (0: only one already there), or NULL. */
static char *notify_next(int fd, int ms, char *buf, size_t cap)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, ms) != 1)
        return NULL;
    ssize_t n = recv(fd, buf, cap - 1, MSG_DONTWAIT);
    if (n < 0)
        return NULL;
    buf[n] = '\0';
    return buf;
}

static void ready_then_stopping(const char *name)
{
    raw_server s;
    char buf[256];
    int fd = notify_listen(name);
    setenv("NOTIFY_SOCKET", name, 1);
    int rc = raw_server_start(&s, NULL, NULL);
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(rc, 0);
    /* Sent before the "listening on" line that raw_server_start waited for. */
    char *got = notify_next(fd, 0, buf, sizeof buf);
    if (!got)
        fail_msg("NOTIFY_SOCKET=%s: no READY=1 by the time tokend logged \"listening on\"", name);
    assert_string_equal(got, "READY=1");
    assert_null(notify_next(fd, 100, buf, sizeof buf)); /* nothing more while it serves */
    ping_ok(&s);
    assert_null(notify_next(fd, 0, buf, sizeof buf));
    assert_int_equal(raw_server_stop(&s), 0);
    got = notify_next(fd, 0, buf, sizeof buf);
    if (!got)
        fail_msg("NOTIFY_SOCKET=%s: no STOPPING=1 on SIGTERM", name);
    assert_string_equal(got, "STOPPING=1");
    assert_null(notify_next(fd, 0, buf, sizeof buf));
    raw_server_free(&s);
    close(fd);
}

static void notify_ready_then_stopping(void **state)
{
    (void)state;
    char *path = tkt_path(g.tmp, "notify.sock"), abs[64];
    ready_then_stopping(path);
    snprintf(abs, sizeof abs, "@tokend-test-install-%ld", (long)getpid());
    ready_then_stopping(abs);
    free(path);

    /* A socket nobody listens on: a line in the log, and tokend serves. */
    raw_server s;
    char *gone = tkt_path(g.tmp, "nobody-listens.sock");
    setenv("NOTIFY_SOCKET", gone, 1);
    int rc = raw_server_start(&s, NULL, NULL);
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(rc, 0);
    ping_ok(&s);
    assert_true(raw_server_log_has(&s, "cannot send READY=1 to NOTIFY_SOCKET="));
    assert_int_equal(raw_server_stop(&s), 0);
    assert_true(raw_server_log_has(&s, "cannot send STOPPING=1 to NOTIFY_SOCKET="));
    raw_server_free(&s);
    free(gone);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(files_land_with_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(installed_programs_run, setup, teardown),
        cmocka_unit_test_setup_teardown(operator_config_survives_reinstall, setup, teardown),
        cmocka_unit_test_setup_teardown(uninstall_removes_what_install_put, setup, teardown),
        cmocka_unit_test_setup_teardown(man_pages_render_and_match_help, setup, teardown),
        cmocka_unit_test_setup_teardown(unit_has_its_directives, setup, teardown),
        cmocka_unit_test_setup_teardown(unit_passes_systemd_analyze, setup, teardown),
        cmocka_unit_test_setup_teardown(tokend_stays_inside_the_sandbox, setup, teardown),
        cmocka_unit_test_setup_teardown(notify_ready_then_stopping, setup, teardown),
    };
    return cmocka_run_group_tests_name("install", tests, group_setup, group_teardown);
}
