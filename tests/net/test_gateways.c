/*
 * test_gateways.c - docs/gateways.md for real. The nginx and Caddy
 * configurations are read from the doc (the fenced block after each
 * "<!-- test:NAME -->" marker), their placeholder addresses replaced by
 * free loopback ports, and run by the Debian nginx and caddy between a
 * client (tests/support/hraw.h) and two servers: bin/tokend with
 * --require-gateway-key, and an upstream (a thread here) that answers
 * every request 200 with the request's head as its body, so a test sees
 * exactly which headers the gateway passed on, and counts the requests
 * that reached it. Envoy and Traefik are not installed: the requests they
 * send to tokend, as the doc describes them, are replayed byte for byte.
 *
 * Each test has its own tokend, upstream and gateway. The gateway runs in
 * the foreground as a child (nginx with master_process off: one pid), gets
 * SIGKILL if the test process dies (PR_SET_PDEATHSIG), and is stopped by
 * its pid in teardown; a watchdog kills every child of a hung test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/hraw.h"
#include "tests/support/raw.h"
#include "tests/support/tkt.h"

#define TEST_SECONDS 25
#define DOC "docs/gateways.md"

/* The doc's placeholder addresses. */
#define PH_TOKEND "127.0.0.1:7081" /* tokend's verify listener */
#define PH_GATEWAY "127.0.0.1:8080"
#define PH_UPSTREAM "127.0.0.1:9000"


/* ---- children ------------------------------------------------------------------- */

/* Starts argv[0] with envp in cwd, stdout and stderr to log; the pid or -1. */
static pid_t spawn(const char *const *argv, const char *const *envp, const char *cwd,
                   const char *log)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || nul < 0)
            _exit(120);
        dup2(nul, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        if (getppid() != parent)
            _exit(121);
        if (chdir(cwd) != 0)
            _exit(122);
        execve(argv[0], (char *const *)argv, (char *const *)envp);
        _exit(123);
    }
    if (pid > 0)
        raw_track(pid, true);
    return pid;
}

/* SIGTERM, at most 10 s, then SIGKILL; reaps. The exit status or -1. */
static int stop_child(pid_t *pid)
{
    int st = -1;
    if (*pid <= 0)
        return -1;
    kill(*pid, SIGTERM);
    int64_t deadline = tkt_now_ms() + 10000;
    pid_t r;
    while ((r = waitpid(*pid, &st, WNOHANG)) == 0 && tkt_now_ms() < deadline)
        tkt_sleep_ms(10);
    if (r != *pid) {
        kill(*pid, SIGKILL);
        waitpid(*pid, &st, 0);
    }
    raw_track(*pid, false);
    *pid = 0;
    return st;
}

/* Prints a child's log into the test output, each line prefixed "# ". */
static void show_log(const char *what, const char *log)
{
    size_t len;
    char *t = (char *)tkt_read_file(log, &len);
    if (!t)
        return;
    fprintf(stderr, "# %s log:\n# ", what);
    for (size_t i = 0; i < len; i++) {
        fputc(t[i], stderr);
        if (t[i] == '\n' && i + 1 < len)
            fputs("# ", stderr);
    }
    fputc('\n', stderr);
    free(t);
}

/* A free loopback port: bound, read, released. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0
        && getsockname(fd, (struct sockaddr *)&a, &n) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* ---- the upstream --------------------------------------------------------- */

/* One request at a time: reads its head and its Content-Length body, answers
 * 200 with the head (request line and headers) and a last line
 * "X-Echo-Body-Length: N", and closes. */
typedef struct upstream {
    int lfd;
    int port;
    pthread_t th;
    bool started;
    atomic_bool stop;
    atomic_int hits;
} upstream;

/* The value of header name in the head text h (case-insensitive), or -1. */
static long head_number(const char *h, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = strstr(h, "\r\n"); p; p = strstr(p + 2, "\r\n"))
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':')
            return strtol(p + 3 + n, NULL, 10);
    return -1;
}

static void up_serve(upstream *u, int c)
{
    char buf[16384], sink[4096];
    size_t len = 0;
    char *end = NULL;
    struct timeval tv = {5, 0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (!end && len < sizeof buf - 1) {
        ssize_t n = recv(c, buf + len, sizeof buf - 1 - len, 0);
        if (n <= 0)
            return;
        len += (size_t)n;
        buf[len] = 0;
        end = strstr(buf, "\r\n\r\n");
    }
    if (!end)
        return;
    *end = 0;
    size_t hl = (size_t)(end - buf);
    long want = head_number(buf, "Content-Length");
    size_t have = len - hl - 4;
    while (want > 0 && have < (size_t)want) {
        ssize_t n = recv(c, sink, sizeof sink, 0);
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    char tail[64], head[160];
    int tl = snprintf(tail, sizeof tail, "\r\nX-Echo-Body-Length: %zu", have);
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     hl + (size_t)tl);
    atomic_fetch_add(&u->hits, 1);
    if (raw_write(c, head, (size_t)n) == 0 && raw_write(c, buf, hl) == 0)
        raw_write(c, tail, (size_t)tl);
}

static void *up_main(void *arg)
{
    upstream *u = arg;
    while (!atomic_load(&u->stop)) {
        struct pollfd p = {u->lfd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int c = accept4(u->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        up_serve(u, c);
        shutdown(c, SHUT_WR);
        close(c);
    }
    return NULL;
}

static int up_start(upstream *u)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    memset(u, 0, sizeof *u);
    u->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (u->lfd < 0 || bind(u->lfd, (struct sockaddr *)&a, sizeof a) != 0
        || getsockname(u->lfd, (struct sockaddr *)&a, &n) != 0 || listen(u->lfd, 64) != 0)
        return -1;
    u->port = ntohs(a.sin_port);
    if (pthread_create(&u->th, NULL, up_main, u) != 0)
        return -1;
    u->started = true;
    return 0;
}

static void up_stop(upstream *u)
{
    if (u->started) {
        atomic_store(&u->stop, true);
        pthread_join(u->th, NULL);
        u->started = false;
    }
    if (u->lfd >= 0)
        close(u->lfd);
    u->lfd = -1;
}

/* ---- the world: tokend, its tenant, the upstream, a gateway ---------------- */

typedef struct world {
    raw_server s;
    upstream up;
    char op[128];         /* operator key */
    char gw_key[128];     /* DIR/gateway.key */
    char alice[160];      /* alice's personal key (role admin) */
    char viewer[160];     /* a token of alice's: role viewer (orders:read) */
    char viewer_id[64];
    char writer[160];     /* another: role admin (orders:read, orders:write) */
    char writer_id[64];
    pid_t gw_pid;         /* the gateway, while running */
    int gw_port;
    int tport;            /* the listener the replays go to: the verify listener's port,
                             or the HTTP listener's (setup_main) */
    char *gw_dir;         /* its temp dir (config, logs, HOME) */
    char *gw_log;
} world;

/* A JSON API request to tokend as key; *out (may be NULL) gets the reply's
 * JSON (caller decrefs). The status, or -1. */
static int api(world *w, const char *key, const char *method, const char *path,
               const char *body, json_t **out)
{
    char auth[256];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    const char *h[] = {auth, NULL};
    hraw_resp r;
    if (hraw_once(w->s.http_port, method, path, h, body, &r) != 0)
        return -1;
    int st = r.status;
    if (st >= 300)
        fprintf(stderr, "# %s %s -> %d %s\n", method, path, st, r.body);
    if (out)
        *out = json_loads(r.body, 0, NULL);
    hraw_free(&r);
    return st;
}

static void get_str(json_t *j, const char *key, char *out, size_t cap)
{
    const char *v = json_string_value(json_object_get(j, key));
    assert_non_null(v);
    snprintf(out, cap, "%s", v);
}

/* A token of alice's with one role: its secret and client ID. */
static void make_token(world *w, const char *desc, const char *role, char *secret, size_t scap,
                       char *id, size_t icap)
{
    char body[256];
    json_t *j = NULL;
    snprintf(body, sizeof body, "{\"description\":\"%s\",\"roles\":[\"%s\"]}", desc, role);
    assert_int_equal(api(w, w->alice, "POST", "/v1/tokens", body, &j), 201);
    get_str(j, "secret", secret, scap);
    get_str(j, "client_id", id, icap);
    json_decref(j);
}

static int teardown(void **state)
{
    world *w = *state;
    if (!w)
        return 0;
    if (w->gw_pid > 0)
        stop_child(&w->gw_pid);
    up_stop(&w->up);
    raw_server_free(&w->s);
    raw_watchdog(0);
    if (w->gw_dir) {
        tkt_rmdir(w->gw_dir);
        free(w->gw_dir);
    }
    free(w->gw_log);
    free(w);
    *state = NULL;
    alarm(0);
    return 0;
}

/* tokend (--require-gateway-key) and the upstream. cmocka runs no teardown
 * after a failed setup: it cleans up itself. */
static int setup(void **state)
{
    const char *extra[] = {"--require-gateway-key", NULL};
    world *w = calloc(1, sizeof *w);
    if (!w)
        return -1;
    *state = w;
    w->up.lfd = -1;
    raw_watchdog(TEST_SECONDS);
    int rc = raw_server_start(&w->s, NULL, extra); /* tracked for the watchdog by raw */
    w->tport = w->s.verify_port;
    if (rc != 0 || w->s.http_port <= 0 || w->s.verify_port <= 0
        || raw_read_key(&w->s, "operator.key", w->op, sizeof w->op) != 0
        || raw_read_key(&w->s, "gateway.key", w->gw_key, sizeof w->gw_key) != 0
        || up_start(&w->up) != 0) {
        fprintf(stderr, "# setup: cannot start tokend or the upstream\n");
        teardown(state);
        return -1;
    }
    return 0;
}

/* Tenant acme (API tokens on), roles admin (level 0: orders:read,
 * orders:write) and viewer (level 5: orders:read), account bigco, user
 * alice (admin, portal), and two tokens of hers: viewer and writer. */
static void provision(world *w)
{
    json_t *j = NULL;
    assert_int_equal(api(w, w->op, "POST", "/v1/tenants", "{\"tenant\":\"acme\"}", NULL), 201);
    assert_int_equal(api(w, w->op, "PATCH", "/v1/tenants/acme", "{\"api_tokens\":true}", NULL),
                     200);
    assert_int_equal(api(w, w->op, "PUT", "/v1/tenants/acme/roles/admin",
                         "{\"level\":0,\"permissions\":[\"orders:read\",\"orders:write\"]}", NULL),
                     200);
    assert_int_equal(api(w, w->op, "PUT", "/v1/tenants/acme/roles/viewer",
                         "{\"level\":5,\"permissions\":[\"orders:read\"]}", NULL),
                     200);
    assert_int_equal(
        api(w, w->op, "POST", "/v1/tenants/acme/accounts", "{\"account\":\"bigco\"}", NULL), 201);
    assert_int_equal(api(w, w->op, "POST", "/v1/tenants/acme/accounts/bigco/users",
                         "{\"user\":\"alice\",\"roles\":[\"admin\"],\"portal\":true}", &j),
                     201);
    get_str(j, "personal_key", w->alice, sizeof w->alice);
    json_decref(j);
    make_token(w, "ci", "viewer", w->viewer, sizeof w->viewer, w->viewer_id, sizeof w->viewer_id);
    make_token(w, "deploy", "admin", w->writer, sizeof w->writer, w->writer_id,
               sizeof w->writer_id);
}

/* ---- the doc's blocks ------------------------------------------------------ */

/* The fenced block right after "<!-- test:name -->" in docs/gateways.md,
 * without its fences (malloc'd). Fails the test when the marker is missing
 * or not unique, or no fenced block follows it. */
static char *doc_block(const char *name)
{
    size_t len;
    char marker[64], why[160] = "";
    char *doc = (char *)tkt_read_file(DOC, &len), *block = NULL;
    if (!doc)
        fail_msg("cannot read %s (run the suite from the repository root)", DOC);
    char *t = realloc(doc, len + 1);
    if (!t) {
        free(doc);
        fail_msg("out of memory");
    }
    doc = t;
    doc[len] = 0;
    snprintf(marker, sizeof marker, "<!-- test:%s -->\n", name);
    char *m = strstr(doc, marker);
    if (!m || strstr(m + 1, marker)) {
        snprintf(why, sizeof why, "the marker %s must appear exactly once", marker);
    } else {
        char *fence = m + strlen(marker);
        char *start = strchr(fence, '\n');
        char *end = start ? strstr(start, "\n```\n") : NULL;
        if (strncmp(fence, "```", 3) != 0 || !end)
            snprintf(why, sizeof why, "no fenced block right after %s", marker);
        else
            block = strndup(start + 1, (size_t)(end - start));
    }
    free(doc);
    if (!block)
        fail_msg("%s: %s", DOC, why);
    return block;
}

/* text with every occurrence of from replaced by to (text is freed); fails
 * the test when from does not occur: the doc and the test must agree. */
static char *subst(char *text, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to), count = 0;
    for (const char *p = text; (p = strstr(p, from)); p += fl)
        count++;
    if (count == 0)
        fail_msg("%s: the block no longer contains %s", DOC, from);
    char *out = malloc(strlen(text) + count * tl + 1), *o = out;
    const char *p = text, *q;
    while ((q = strstr(p, from))) {
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        memcpy(o, to, tl);
        o += tl;
        p = q + fl;
    }
    strcpy(o, p);
    free(text);
    return out;
}

/* The block with the three placeholder addresses replaced by w's ports. */
static char *doc_config(world *w, const char *name)
{
    char addr[32];
    char *c = doc_block(name);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", w->s.verify_port);
    c = subst(c, PH_TOKEND, addr);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", w->gw_port);
    c = subst(c, PH_GATEWAY, addr);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", w->up.port);
    return subst(c, PH_UPSTREAM, addr);
}

static const char *program(const char *env, const char *path, const char *what)
{
    const char *p = getenv(env) && *getenv(env) ? getenv(env) : path;
    if (access(p, X_OK) != 0)
        fail_msg("%s is not installed (%s not found): make deps installs it", what, p);
    return p;
}

/* Waits (at most 10 s) until the gateway answers a request without a
 * credential with 401 and a Server header starting with server (so it is
 * the gateway, not some other process that took the port first). Returns
 * 0, or 1 when the gateway exited first (its port was taken: the caller
 * retries with another); fails the test, with the gateway's log, on
 * timeout. */
static int gateway_ready(world *w, const char *what, const char *server)
{
    int64_t deadline = tkt_now_ms() + 10000;
    while (tkt_now_ms() < deadline) {
        int st;
        hraw_resp r;
        if (waitpid(w->gw_pid, &st, WNOHANG) == w->gw_pid) {
            raw_track(w->gw_pid, false);
            w->gw_pid = 0;
            show_log(what, w->gw_log);
            fprintf(stderr, "# %s exited before serving (status 0x%x)\n", what, st);
            return 1;
        }
        if (hraw_once(w->gw_port, "GET", "/", NULL, NULL, &r) == 0) {
            char v[64];
            bool ours = r.status == 401 && hraw_header(&r, "Server", v, sizeof v)
                        && strncmp(v, server, strlen(server)) == 0;
            hraw_free(&r);
            if (ours)
                return 0;
        }
        tkt_sleep_ms(20);
    }
    show_log(what, w->gw_log);
    fail_msg("%s did not serve on 127.0.0.1:%d within 10 s", what, w->gw_port);
    return -1;
}

/* nginx with the doc's block as a conf.d file, inside an http {} that keeps
 * its logs and temp files in the test's dir; one process, in the
 * foreground. */
static void launch_nginx(world *w, const char *bin)
{
    w->gw_port = free_port();
    char *conf = doc_config(w, "nginx");
    conf = subst(conf, "GATEWAY_KEY", w->gw_key);
    char *site = tkt_path(w->gw_dir, "tokend.conf"), *top = tkt_path(w->gw_dir, "nginx.conf");
    char *outer = NULL, *g = NULL, *prefix = NULL;
    assert_int_equal(tkt_write_file(site, conf, strlen(conf)), 0);
    int n = asprintf(&outer,
                     "events { worker_connections 256; }\n"
                     "http {\n"
                     "    access_log %1$s/access.log;\n"
                     "    client_body_temp_path %1$s/client_body;\n"
                     "    proxy_temp_path %1$s/proxy;\n"
                     "    fastcgi_temp_path %1$s/fastcgi;\n"
                     "    uwsgi_temp_path %1$s/uwsgi;\n"
                     "    scgi_temp_path %1$s/scgi;\n"
                     "    include %2$s;\n"
                     "}\n",
                     w->gw_dir, site);
    assert_true(n > 0);
    assert_int_equal(tkt_write_file(top, outer, strlen(outer)), 0);
    n = asprintf(&g, "daemon off; master_process off; pid %s/nginx.pid; error_log stderr notice;",
                 w->gw_dir);
    assert_true(n > 0);
    n = asprintf(&prefix, "%s/", w->gw_dir);
    assert_true(n > 0);
    const char *argv[] = {bin, "-e", "stderr", "-p", prefix, "-c", top, "-g", g, NULL};
    const char *envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
    w->gw_pid = spawn(argv, envp, w->gw_dir, w->gw_log);
    free(conf);
    free(site);
    free(top);
    free(outer);
    free(g);
    free(prefix);
    assert_true(w->gw_pid > 0);
}

/* caddy run with the doc's Caddyfile; HOME and the XDG dirs in the test's
 * dir, so it writes nothing outside; the gateway key in its environment. */
static void launch_caddy(world *w, const char *bin)
{
    w->gw_port = free_port();
    char *conf = doc_config(w, "caddy");
    if (!strstr(conf, "{$TOKEND_GATEWAY_KEY}"))
        fail_msg("%s: the caddy block no longer sends {$TOKEND_GATEWAY_KEY}", DOC);
    char *file = tkt_path(w->gw_dir, "Caddyfile");
    assert_int_equal(tkt_write_file(file, conf, strlen(conf)), 0);
    char *home = NULL, *cfg = NULL, *data = NULL, *key = NULL;
    assert_true(asprintf(&home, "HOME=%s", w->gw_dir) > 0);
    assert_true(asprintf(&cfg, "XDG_CONFIG_HOME=%s/config", w->gw_dir) > 0);
    assert_true(asprintf(&data, "XDG_DATA_HOME=%s/data", w->gw_dir) > 0);
    assert_true(asprintf(&key, "TOKEND_GATEWAY_KEY=%s", w->gw_key) > 0);
    const char *argv[] = {bin, "run", "--config", file, "--adapter", "caddyfile", NULL};
    const char *envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", home, cfg, data, key, NULL};
    w->gw_pid = spawn(argv, envp, w->gw_dir, w->gw_log);
    free(conf);
    free(file);
    free(home);
    free(cfg);
    free(data);
    free(key);
    assert_true(w->gw_pid > 0);
}

/* Starts the gateway (what: "nginx" or "caddy"), on another free port if
 * the first was taken meanwhile. */
static void start_gateway(world *w, const char *what)
{
    bool nginx = strcmp(what, "nginx") == 0;
    const char *bin = nginx ? program("NGINX", "/usr/sbin/nginx", "nginx")
                            : program("CADDY", "/usr/bin/caddy", "caddy");
    w->gw_dir = tkt_mkdtemp();
    w->gw_log = tkt_path(w->gw_dir, nginx ? "nginx.log" : "caddy.log");
    for (int attempt = 0; attempt < 3; attempt++) {
        if (nginx)
            launch_nginx(w, bin);
        else
            launch_caddy(w, bin);
        if (gateway_ready(w, what, nginx ? "nginx" : "Caddy") == 0)
            return;
    }
    fail_msg("%s exited before serving, three times (its log is above)", what);
}

/* ---- requests through the gateway ------------------------------------------ */

/* One request through the gateway on a new connection; the status. */
static int via(world *w, const char *method, const char *path, const char *const *headers,
               const char *body, hraw_resp *r)
{
    if (hraw_once(w->gw_port, method, path, headers, body, r) != 0) {
        show_log("gateway", w->gw_log);
        fail_msg("no response from the gateway to %s %s", method, path);
    }
    return r->status;
}

/* What the upstream received (the body it answered with): header name. */
static bool upstream_got(const hraw_resp *r, const char *name, char *out, size_t cap)
{
    hraw_resp echo = {.head = r->body};
    return hraw_header(&echo, name, out, cap);
}

static void expect_upstream(const hraw_resp *r, const char *name, const char *want)
{
    char v[512];
    if (!upstream_got(r, name, v, sizeof v))
        fail_msg("the upstream did not get %s; it got:\n%s", name, r->body);
    if (strcmp(v, want) != 0)
        fail_msg("the upstream got %s: '%s', not '%s'", name, v, want);
}

static void expect_not_upstream(const hraw_resp *r, const char *name)
{
    char v[512];
    if (upstream_got(r, name, v, sizeof v))
        fail_msg("the upstream got %s: '%s'; it must not", name, v);
}

/* A refusal with status want that did not reach the upstream. */
static void expect_refused(world *w, int want, const char *method, const char *path,
                           const char *const *headers, const char *body, hraw_resp *r)
{
    int before = atomic_load(&w->up.hits);
    int st = via(w, method, path, headers, body, r);
    if (st != want)
        fail_msg("%s %s: %d, not %d; body:\n%s", method, path, st, want, r->body);
    assert_int_equal(atomic_load(&w->up.hits), before);
}

/* A request passed to the upstream, which got the identity of a token. */
static void expect_passed(world *w, const char *method, const char *path,
                          const char *const *headers, const char *body, hraw_resp *r)
{
    int before = atomic_load(&w->up.hits);
    int st = via(w, method, path, headers, body, r);
    if (st != 200)
        fail_msg("%s %s: %d, not 200; body:\n%s", method, path, st, r->body);
    assert_int_equal(atomic_load(&w->up.hits), before + 1);
    expect_upstream(r, "X-Tokend-Tenant", "acme");
    expect_upstream(r, "X-Tokend-Account", "bigco");
    /* The secret and the gateway key stay between the gateway and tokend. */
    expect_not_upstream(r, "Authorization");
    expect_not_upstream(r, "X-API-Key");
    expect_not_upstream(r, "X-Tokend-Gateway-Key");
}

static void bearer(char *out, size_t cap, const char *secret)
{
    snprintf(out, cap, "Authorization: Bearer %s", secret);
}

static void basic(char *out, size_t cap, const char *id, const char *secret)
{
    char pair[256], b64[400];
    snprintf(pair, sizeof pair, "%s:%s", id, secret);
    sodium_bin2base64(b64, sizeof b64, (const unsigned char *)pair, strlen(pair),
                      sodium_base64_VARIANT_ORIGINAL);
    snprintf(out, cap, "Authorization: Basic %s", b64);
}

/* The doc's promises, through a running gateway. caddy: the client sees
 * tokend's refusal as it is (nginx shows its own error page). */
static void gateway_flow(world *w, bool caddy)
{
    char vb[256], wb[256], vbasic[512], vkey[256], mism[512], v[256];
    hraw_resp r;
    bearer(vb, sizeof vb, w->viewer);
    bearer(wb, sizeof wb, w->writer);
    basic(vbasic, sizeof vbasic, w->viewer_id, w->viewer);
    basic(mism, sizeof mism, w->writer_id, w->viewer);
    snprintf(vkey, sizeof vkey, "X-API-Key: %s", w->viewer);
    const char *h_v[] = {vb, NULL}, *h_w[] = {wb, NULL}, *h_basic[] = {vbasic, NULL};
    const char *h_key[] = {vkey, NULL}, *h_mism[] = {mism, NULL};

    /* No credential: 401 with tokend's challenge; the upstream never sees it. */
    expect_refused(w, 401, "GET", "/orders/7", NULL, NULL, &r);
    assert_true(hraw_header(&r, "WWW-Authenticate", v, sizeof v));
    assert_string_equal(v, "Bearer realm=\"tokend\"");
    if (caddy)
        assert_non_null(strstr(r.body, "\"reason\":\"missing\""));
    else /* nginx's own page */
        assert_null(strstr(r.body, "\"reason\""));
    hraw_free(&r);
    /* A body that looks like the JSON verification changes nothing. */
    expect_refused(w, 401, "POST", "/orders", NULL, "{\"secret\":\"tkt_x\"}", &r);
    hraw_free(&r);

    /* Bearer: 200 from the upstream, which got the identity. */
    expect_passed(w, "GET", "/orders/7?x=1", h_v, NULL, &r);
    assert_non_null(strstr(r.body, "GET /orders/7?x=1 HTTP/1."));
    expect_upstream(&r, "X-Tokend-Client-Id", w->viewer_id);
    expect_upstream(&r, "X-Tokend-Roles", "viewer");
    expect_upstream(&r, "X-Tokend-Permissions", "orders:read");
    hraw_free(&r);
    /* Basic base64(client_id:secret) and X-API-Key. */
    expect_passed(w, "GET", "/orders/7", h_basic, NULL, &r);
    expect_upstream(&r, "X-Tokend-Client-Id", w->viewer_id);
    hraw_free(&r);
    expect_passed(w, "DELETE", "/orders/7", h_key, NULL, &r);
    expect_upstream(&r, "X-Tokend-Roles", "viewer");
    hraw_free(&r);
    /* The client's body goes upstream (and not to tokend: the verification
     * stays a verification). */
    expect_passed(w, "POST", "/orders", h_v, "{\"secret\":\"tkt_x\",\"item\":7}", &r);
    assert_non_null(strstr(r.body, "POST /orders HTTP/1."));
    expect_upstream(&r, "X-Echo-Body-Length", "27");
    hraw_free(&r);

    /* Bad credentials: 401, never upstream. */
    const char *h_bad[] = {"Authorization: Bearer tkt_not-a-secret", NULL};
    expect_refused(w, 401, "GET", "/orders/7", h_bad, NULL, &r);
    hraw_free(&r);
    expect_refused(w, 401, "GET", "/orders/7", h_mism, NULL, &r);
    if (caddy)
        assert_non_null(strstr(r.body, "\"reason\":\"mismatch\""));
    hraw_free(&r);

    /* Spoofed identity headers: the upstream gets tokend's, not the client's. */
    const char *h_spoof[] = {vb,
                             "X-Tokend-Tenant: evil",
                             "X-Tokend-Account: evil",
                             "X-Tokend-Client-Id: evil",
                             "X-Tokend-Roles: admin,evil",
                             "X-Tokend-Permissions: orders:write,evil",
                             NULL};
    expect_passed(w, "GET", "/orders/7", h_spoof, NULL, &r);
    expect_upstream(&r, "X-Tokend-Roles", "viewer");
    expect_upstream(&r, "X-Tokend-Permissions", "orders:read");
    expect_upstream(&r, "X-Tokend-Client-Id", w->viewer_id);
    if (strstr(r.body, "evil"))
        fail_msg("a spoofed header reached the upstream:\n%s", r.body);
    hraw_free(&r);
    expect_refused(w, 401, "GET", "/orders/7", h_spoof + 1, NULL, &r);
    hraw_free(&r);

    /* The route that requires orders:write: 403 for the viewer, under every
     * spelling of its path; 200 for the writer. */
    const char *paths[] = {"/orders/write/1", "//orders/write/1", "/orders/%77rite/1",
                           "/orders/./write/1"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        expect_refused(w, 403, "POST", paths[i], h_v, NULL, &r);
        if (caddy)
            assert_non_null(strstr(r.body, "\"permission\":\"orders:write\""));
        hraw_free(&r);
    }
    expect_passed(w, "POST", "/orders/write/1", h_w, NULL, &r);
    expect_upstream(&r, "X-Tokend-Roles", "admin");
    assert_true(upstream_got(&r, "X-Tokend-Permissions", v, sizeof v));
    assert_non_null(strstr(v, "orders:write"));
    assert_non_null(strstr(v, "orders:read"));
    hraw_free(&r);

    /* tokend itself refuses a verification without the gateway key: the
     * gateway added it above. */
    assert_int_equal(hraw_once(w->s.verify_port, "GET", "/v1/verify", h_v, NULL, &r), 0);
    assert_int_equal(r.status, 401);
    hraw_free(&r);

    /* Deleted: 401 on the very next request. */
    char path[128];
    snprintf(path, sizeof path, "/v1/tokens/%s", w->viewer_id);
    assert_int_equal(api(w, w->alice, "DELETE", path, NULL, NULL), 200);
    expect_refused(w, 401, "GET", "/orders/7", h_v, NULL, &r);
    if (caddy)
        assert_non_null(strstr(r.body, "\"reason\":\"unknown\""));
    hraw_free(&r);
    expect_passed(w, "GET", "/orders/7", h_w, NULL, &r);
    hraw_free(&r);

    /* The tenant's API tokens off: 401 at once. */
    assert_int_equal(api(w, w->op, "PATCH", "/v1/tenants/acme", "{\"api_tokens\":false}", NULL),
                     200);
    expect_refused(w, 401, "GET", "/orders/7", h_w, NULL, &r);
    if (caddy)
        assert_non_null(strstr(r.body, "\"reason\":\"disabled\""));
    hraw_free(&r);

    /* tokend gone: the gateway fails closed. */
    assert_int_equal(raw_server_stop(&w->s), 0);
    int before = atomic_load(&w->up.hits);
    int st = via(w, "GET", "/orders/7", h_w, NULL, &r);
    if (st != (caddy ? 502 : 500))
        fail_msg("tokend down: the gateway answered %d, not %d", st, caddy ? 502 : 500);
    assert_int_equal(atomic_load(&w->up.hits), before);
    hraw_free(&r);
}

static void nginx_auth_request(void **state)
{
    world *w = *state;
    provision(w);
    start_gateway(w, "nginx");
    gateway_flow(w, false);
    assert_int_equal(stop_child(&w->gw_pid), 0);
}

static void caddy_forward_auth(void **state)
{
    world *w = *state;
    provision(w);
    start_gateway(w, "caddy");
    gateway_flow(w, true);
    int st = stop_child(&w->gw_pid);
    assert_true(WIFEXITED(st));
}

/* ---- Envoy and Traefik, replayed ------------------------------------------- */

/* Sends the request text (printf-style) on fd and reads the answer. */
__attribute__((format(printf, 3, 4))) static int replay(int fd, hraw_resp *r, const char *fmt,
                                                        ...);
static int replay(int fd, hraw_resp *r, const char *fmt, ...)
{
    char req[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(req, sizeof req, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof req);
    assert_int_equal(raw_write(fd, req, (size_t)n), 0);
    if (hraw_read(fd, r, 10000) != 0)
        fail_msg("no answer from tokend to:\n%s", req);
    return r->status;
}

static void expect_identity(const hraw_resp *r, const char *id, const char *roles)
{
    char v[256];
    assert_int_equal(r->status, 200);
    assert_int_equal(r->body_len, 0);
    assert_true(hraw_header(r, "X-Tokend-Tenant", v, sizeof v));
    assert_string_equal(v, "acme");
    assert_true(hraw_header(r, "X-Tokend-Account", v, sizeof v));
    assert_string_equal(v, "bigco");
    assert_true(hraw_header(r, "X-Tokend-Client-Id", v, sizeof v));
    assert_string_equal(v, id);
    assert_true(hraw_header(r, "X-Tokend-Roles", v, sizeof v));
    assert_string_equal(v, roles);
    assert_true(hraw_header(r, "X-Tokend-Permissions", v, sizeof v));
    assert_non_null(strstr(v, "orders:read"));
    assert_true(hraw_header(r, "X-Tokend-Reason", v, sizeof v));
    assert_string_equal(v, "valid");
    assert_true(hraw_header(r, "Cache-Control", v, sizeof v));
    assert_string_equal(v, "no-store");
}

static void expect_401(const hraw_resp *r, const char *reason)
{
    char v[256], body[96];
    assert_int_equal(r->status, 401);
    assert_true(hraw_header(r, "WWW-Authenticate", v, sizeof v));
    assert_string_equal(v, "Bearer realm=\"tokend\"");
    snprintf(body, sizeof body, "{\"valid\":false,\"reason\":\"%s\"}", reason);
    if (!strstr(r->body, body))
        fail_msg("401 body '%s', not %s", r->body, body);
}

static void expect_403(const hraw_resp *r, const char *perm)
{
    char v[256], want[96];
    assert_int_equal(r->status, 403);
    assert_true(hraw_header(r, "X-Tokend-Reason", v, sizeof v));
    assert_string_equal(v, "permission");
    snprintf(want, sizeof want, "\"permission\":\"%s\"", perm);
    assert_non_null(strstr(r->body, want));
}

/* Envoy's ext_authz HTTP service (path_prefix /v1/verify): the client's
 * method, the prefix + the client's path and query, host the client's
 * authority, content-length: 0, the allowed headers, headers_to_add, and
 * the router's x-envoy-expected-rq-timeout-ms, x-forwarded-proto,
 * x-request-id; lower-case names, one keep-alive connection. */
#define ENVOY                                                                                 \
    "%s /v1/verify%s HTTP/1.1\r\n"                                                            \
    "host: api.example.com\r\n"                                                               \
    "%s"                                                                                      \
    "%s"                                                                                      \
    "content-length: 0\r\n"                                                                   \
    "x-forwarded-proto: https\r\n"                                                            \
    "x-request-id: 2cbd2bad-8298-4e75-af98-c9301b7ba061\r\n"                                  \
    "x-envoy-expected-rq-timeout-ms: 250\r\n"                                                 \
    "\r\n"

/* Traefik's forwardAuth: GET address (path and query as configured), the
 * authRequestHeaders the client sent (the key added by the headers
 * middleware), the X-Forwarded-* set; Go's canonical names. */
#define TRAEFIK                                                                               \
    "GET /v1/verify%s HTTP/1.1\r\n"                                                           \
    "Host: 127.0.0.1:%d\r\n"                                                                  \
    "User-Agent: Go-http-client/1.1\r\n"                                                      \
    "%s"                                                                                      \
    "%s"                                                                                      \
    "X-Forwarded-For: 203.0.113.7\r\n"                                                        \
    "X-Forwarded-Host: api.example.com\r\n"                                                   \
    "X-Forwarded-Method: %s\r\n"                                                              \
    "X-Forwarded-Proto: https\r\n"                                                            \
    "X-Forwarded-Uri: %s\r\n"                                                                 \
    "Accept-Encoding: gzip\r\n"                                                               \
    "\r\n"

static void envoy_and_traefik_requests(void **state)
{
    world *w = *state;
    provision(w);
    char ekey[192], tkey[192], eauth[256], tauth[256], wauth[256], xkey[256], basic_v[512];
    char ereq[256];
    hraw_resp r;
    snprintf(ekey, sizeof ekey, "x-tokend-gateway-key: %s\r\n", w->gw_key);
    snprintf(tkey, sizeof tkey, "X-Tokend-Gateway-Key: %s\r\n", w->gw_key);
    snprintf(eauth, sizeof eauth, "authorization: Bearer %s\r\n", w->viewer);
    snprintf(tauth, sizeof tauth, "Authorization: Bearer %s\r\n", w->viewer);
    snprintf(wauth, sizeof wauth, "Authorization: Bearer %s\r\n", w->writer);
    snprintf(xkey, sizeof xkey, "x-api-key: %s\r\n", w->viewer);
    basic(basic_v, sizeof basic_v - 2, w->viewer_id, w->viewer);
    basic_v[0] = 'a'; /* Envoy's lower-case name */
    strcat(basic_v, "\r\n");
    int fd = raw_connect(w->tport);
    assert_true(fd >= 0);

    /* Envoy. */
    replay(fd, &r, ENVOY, "GET", "/orders/7?x=1", eauth, ekey);
    expect_identity(&r, w->viewer_id, "viewer");
    hraw_free(&r);
    replay(fd, &r, ENVOY, "POST", "/orders", xkey, ekey);
    expect_identity(&r, w->viewer_id, "viewer");
    hraw_free(&r);
    replay(fd, &r, ENVOY, "PUT", "/", basic_v, ekey);
    expect_identity(&r, w->viewer_id, "viewer");
    hraw_free(&r);
    replay(fd, &r, ENVOY, "DELETE", "/orders/7", "", ekey);
    expect_401(&r, "missing");
    hraw_free(&r);
    replay(fd, &r, ENVOY, "GET", "/orders/7", "authorization: Bearer tkt_nope\r\n", ekey);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, "\"valid\":false"));
    hraw_free(&r);
    /* The second filter's headers_to_add: a permission the viewer lacks... */
    snprintf(ereq, sizeof ereq, "%sx-tokend-require-permission: orders:write\r\n", ekey);
    replay(fd, &r, ENVOY, "PATCH", "/orders/write/1", eauth, ereq);
    expect_403(&r, "orders:write");
    hraw_free(&r);
    /* ...and one it has. */
    snprintf(ereq, sizeof ereq, "%sx-tokend-require-permission: orders:read\r\n", ekey);
    replay(fd, &r, ENVOY, "GET", "/orders/7", eauth, ereq);
    expect_identity(&r, w->viewer_id, "viewer");
    hraw_free(&r);
    /* A client's own ?permission= only restricts itself. */
    replay(fd, &r, ENVOY, "GET", "/orders/7?permission=orders:write", eauth, ekey);
    expect_403(&r, "orders:write");
    hraw_free(&r);
    /* headers_to_add forgotten: tokend refuses without the gateway key. */
    replay(fd, &r, ENVOY, "GET", "/orders/7", eauth, "");
    assert_int_equal(r.status, 401);
    hraw_free(&r);

    /* Traefik. */
    replay(fd, &r, TRAEFIK, "", w->tport, tauth, tkey, "POST", "/orders/7?x=1");
    expect_identity(&r, w->viewer_id, "viewer");
    hraw_free(&r);
    char tx[256];
    snprintf(tx, sizeof tx, "X-Api-Key: %s\r\n", w->viewer);
    replay(fd, &r, TRAEFIK, "", w->tport, tx, tkey, "GET", "/orders/7");
    expect_identity(&r, w->viewer_id, "viewer");
    hraw_free(&r);
    replay(fd, &r, TRAEFIK, "", w->tport, "", tkey, "GET", "/orders/7");
    expect_401(&r, "missing");
    hraw_free(&r);
    /* The tokend-orders-write middleware's address. */
    replay(fd, &r, TRAEFIK, "?permission=orders:write", w->tport, tauth, tkey, "PUT",
           "/orders/write/1");
    expect_403(&r, "orders:write");
    hraw_free(&r);
    replay(fd, &r, TRAEFIK, "?permission=orders:write", w->tport, wauth, tkey, "PUT",
           "/orders/write/1");
    expect_identity(&r, w->writer_id, "admin");
    hraw_free(&r);
    replay(fd, &r, TRAEFIK, "", w->tport, tauth, "", "GET", "/orders/7");
    assert_int_equal(r.status, 401);
    hraw_free(&r);

    /* Deleted, then toggled off: 401 on the next request of each, on the
     * same keep-alive connection. */
    char path[128];
    snprintf(path, sizeof path, "/v1/tokens/%s", w->viewer_id);
    assert_int_equal(api(w, w->alice, "DELETE", path, NULL, NULL), 200);
    replay(fd, &r, ENVOY, "GET", "/orders/7", eauth, ekey);
    expect_401(&r, "unknown");
    hraw_free(&r);
    replay(fd, &r, TRAEFIK, "", w->tport, tauth, tkey, "GET", "/orders/7");
    expect_401(&r, "unknown");
    hraw_free(&r);
    assert_int_equal(api(w, w->op, "PATCH", "/v1/tenants/acme", "{\"api_tokens\":false}", NULL),
                     200);
    replay(fd, &r, TRAEFIK, "", w->tport, wauth, tkey, "GET", "/orders/7");
    expect_401(&r, "disabled");
    hraw_free(&r);
    close(fd);
}

/* The same replays against the main HTTP listener, which answers
 * /v1/verify by the same rules. */
static int setup_main(void **state)
{
    int rc = setup(state);
    if (rc == 0)
        ((world *)*state)->tport = ((world *)*state)->s.http_port;
    return rc;
}

static void envoy_and_traefik_on_main_listener(void **state)
{
    envoy_and_traefik_requests(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(nginx_auth_request, setup, teardown),
        cmocka_unit_test_setup_teardown(caddy_forward_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(envoy_and_traefik_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(envoy_and_traefik_on_main_listener, setup_main,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
