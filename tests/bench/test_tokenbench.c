/*
 * test_tokenbench.c - smoke run of every bin/tokenbench mode, about a second
 * each, never the benchmark itself.
 *
 * tokend modes: the real $BIN/tokend on a free loopback port with a temp
 * data directory; `load` 200 tokens, `verify` (with unknown secrets mixed
 * in) and `create` for 1 s, `delete` of a loaded file (then its tokens
 * verify as unknown, and deleting past the file's end counts wrong), `http` against the HTTP listener's /v1/verify
 * and, as a peer by URL, its /healthz, `index --tokens 10000`. Each must
 * exit 0, print one JSON object with ops_per_sec (and latency quantiles
 * where they apply) and report 0 wrong answers.
 *
 * Redis modes: against a real redis-server (make deps installs it, so
 * make test runs them on a fresh machine). A redis-server of the test's own
 * (AOF with appendfsync always, on a free loopback port, in a temp dir)
 * takes `redis-load`, `redis --load` and `redis-create`. Without it the
 * test is reported as SKIP with the reason (a skip fails the run under
 * CI=true: tests/run.sh), so the output says what ran.
 *
 * Everything started here is a child that dies with the test
 * (PR_SET_PDEATHSIG) and is killed and reaped by pid at the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "core/secret.h"
#include "tests/support/raw.h"
#include "tests/support/tkt.h"

#define TEST_SECONDS 240
#define RUN_SECONDS 60 /* one tokenbench run, at most */

static char tb_path[512];

/* Runs tokenbench with argv (NULL-terminated, argv[0] ignored), stdout to
 * a file in dir; returns its exit status (-1 if it did not exit by itself
 * within RUN_SECONDS) and the parsed JSON in *out (NULL if none). */
static int run_tb(const char *dir, const char *const *argv, json_t **out)
{
    char *outp = tkt_path(dir, "tokenbench.out");
    const char *args[40];
    int n = 0;
    args[n++] = tb_path;
    for (int i = 1; argv[i] && n < 38; i++)
        args[n++] = argv[i];
    args[n++] = "--json";
    args[n] = NULL;

    pid_t parent = getpid(), pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0)
            _exit(120);
        dup2(fd, STDOUT_FILENO);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(121);
        execv(tb_path, (char *const *)args);
        _exit(122);
    }
    int st = 0, rc = -1;
    for (int waited = 0; waited < RUN_SECONDS * 100; waited++) {
        if (waitpid(pid, &st, WNOHANG) == pid) {
            rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            break;
        }
        usleep(10000);
    }
    if (rc == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    json_error_t err;
    *out = json_load_file(outp, 0, &err);
    if (!*out)
        fprintf(stderr, "# %s %s: no JSON on stdout (%s)\n", tb_path, argv[1], err.text);
    free(outp);
    return rc;
}

static double num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_number(v))
        fail_msg("no number '%s' in the JSON", key);
    return json_number_value(v);
}

/* A load-generator result: ran, checked replies, no wrong answer. */
static void check_gen(json_t *o)
{
    assert_true(num(o, "ops_per_sec") > 0);
    assert_true(num(o, "ops") > 0);
    assert_true(num(o, "checked") >= num(o, "ops"));
    assert_true(num(o, "wrong") == 0);
    assert_true(num(o, "errors") == 0);
    double p50 = num(o, "p50_us"), p90 = num(o, "p90_us"), p99 = num(o, "p99_us");
    double p999 = num(o, "p999_us"), max = num(o, "max_us");
    assert_true(p50 > 0 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max);
}

static void tokend_modes(void **state)
{
    (void)state;
    raw_server s;
    char addr[64], key[300], tokens[512];
    json_t *o;

    raw_watchdog(TEST_SECONDS);
    assert_int_equal(raw_server_start(&s, NULL, NULL), 0);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", s.port);
    snprintf(key, sizeof key, "@%s/operator.key", s.dir);
    snprintf(tokens, sizeof tokens, "%s/tokens", s.tmp);

    const char *load[] = {"", "load", "--addr", addr, "--key", key, "--tokens", "200",
                          "--out", tokens, NULL};
    assert_int_equal(run_tb(s.tmp, load, &o), 0);
    assert_non_null(o);
    assert_true(num(o, "tokens") == 200 && num(o, "ops_per_sec") > 0);
    json_decref(o);
    size_t len;
    char *file = (char *)tkt_read_file(tokens, &len);
    assert_non_null(file);
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += file[i] == '\n';
    assert_int_equal(lines, 201); /* the header and one secret per line */
    free(file);

    const char *verify[] = {"", "verify", "--addr", addr, "--tokens-file", tokens,
                            "--connections", "2", "--pipeline", "4", "--duration", "1",
                            "--warmup", "0", "--invalid-ratio", "0.2", NULL};
    assert_int_equal(run_tb(s.tmp, verify, &o), 0);
    assert_non_null(o);
    check_gen(o);
    json_decref(o);

    /* HTTP/1.1 keep-alive: every known token 200, every unknown secret 401;
     * then the same requests to a URL (a peer server: here /healthz). */
    char haddr[64], hurl[96];
    assert_true(s.http_port > 0);
    snprintf(haddr, sizeof haddr, "127.0.0.1:%d", s.http_port);
    snprintf(hurl, sizeof hurl, "http://127.0.0.1:%d/healthz", s.http_port);
    const char *http[] = {"", "http", "--addr", haddr, "--tokens-file", tokens,
                          "--connections", "2", "--pipeline", "4", "--duration", "1",
                          "--warmup", "0", "--invalid-ratio", "0.2", NULL};
    assert_int_equal(run_tb(s.tmp, http, &o), 0);
    assert_non_null(o);
    check_gen(o);
    assert_true(num(o, "status_200") > 0 && num(o, "status_401") > 0);
    assert_true(num(o, "status_200") + num(o, "status_401") == num(o, "checked"));
    json_decref(o);
    const char *peer[] = {"", "http", "--url", hurl, "--expect-status", "200",
                          "--tokens-file", tokens, "--connections", "2", "--duration", "0.5",
                          "--warmup", "0", NULL};
    assert_int_equal(run_tb(s.tmp, peer, &o), 0);
    assert_non_null(o);
    check_gen(o);
    assert_true(num(o, "status_200") == num(o, "checked"));
    json_decref(o);

    const char *zipf[] = {"", "verify", "--addr", addr, "--tokens-file", tokens,
                          "--duration", "0.3", "--warmup", "0", "--zipf", "1.1", NULL};
    assert_int_equal(run_tb(s.tmp, zipf, &o), 0);
    assert_non_null(o);
    check_gen(o);
    json_decref(o);

    const char *create[] = {"", "create", "--addr", addr, "--key", key, "--connections", "2",
                            "--duration", "1", "--warmup", "0", NULL};
    assert_int_equal(run_tb(s.tmp, create, &o), 0);
    assert_non_null(o);
    check_gen(o);
    json_decref(o);

    /* A token the server does not know, passed off as known: the checker
     * must count it wrong (exit 1), not wave it through. */
    FILE *f = fopen(tokens, "a");
    char bogus[TK_SECRET_LEN + 1];
    uint8_t hash[TK_HASH_LEN];
    tk_id id;
    assert_non_null(f);
    secret_new_id(&id);
    secret_generate(TK_KIND_TOKEN, &id, bogus, hash);
    fprintf(f, "%s\n", bogus);
    fclose(f);
    const char *lying[] = {"", "verify", "--addr", addr, "--tokens-file", tokens,
                           "--duration", "0.5", "--warmup", "0", "--zipf", "0", NULL};
    assert_int_equal(run_tb(s.tmp, lying, &o), 1);
    assert_non_null(o);
    assert_true(num(o, "wrong") > 0);
    json_decref(o);
    const char *hlying[] = {"", "http", "--addr", haddr, "--tokens-file", tokens,
                            "--duration", "0.5", "--warmup", "0", NULL};
    assert_int_equal(run_tb(s.tmp, hlying, &o), 1);
    assert_non_null(o);
    assert_true(num(o, "wrong") > 0 && num(o, "status_401") > 0);
    json_decref(o);

    /* delete: each token of the file once, status 0 each; the deleted ones
     * then verify as unknown, which the verify checker counts wrong. */
    char dtokens[512];
    snprintf(dtokens, sizeof dtokens, "%s/dtokens", s.tmp);
    const char *dload[] = {"", "load", "--addr", addr, "--key", key, "--tokens", "2000",
                           "--out", dtokens, NULL};
    assert_int_equal(run_tb(s.tmp, dload, &o), 0);
    json_decref(o);
    const char *del[] = {"", "delete", "--addr", addr, "--key", key, "--tokens-file", dtokens,
                         "--duration", "0.1", "--warmup", "0", NULL};
    assert_int_equal(run_tb(s.tmp, del, &o), 0);
    assert_non_null(o);
    check_gen(o);
    assert_true(num(o, "picked") >= num(o, "checked") && num(o, "picked") < 2000);
    json_decref(o);
    const char *dver[] = {"", "verify", "--addr", addr, "--tokens-file", dtokens,
                          "--duration", "0.3", "--warmup", "0", "--zipf", "1.1", NULL};
    assert_int_equal(run_tb(s.tmp, dver, &o), 1);
    assert_non_null(o);
    assert_true(num(o, "wrong") > 0);
    json_decref(o);
    /* More deletes than the file holds: the ones past it count wrong (exit 1). */
    const char *dmore[] = {"", "delete", "--addr", addr, "--key", key, "--tokens-file", tokens,
                           "--connections", "2", "--duration", "1", "--warmup", "0", NULL};
    assert_int_equal(run_tb(s.tmp, dmore, &o), 1);
    assert_non_null(o);
    assert_true(num(o, "wrong") > 0 && num(o, "picked") > 201);
    json_decref(o);

    assert_int_equal(raw_server_stop(&s), 0);
    raw_server_free(&s);
    raw_watchdog(0);
}

static void index_mode(void **state)
{
    (void)state;
    char *tmp = tkt_mkdtemp();
    json_t *o;
    const char *index[] = {"", "index", "--tokens", "10000", NULL};
    raw_watchdog(TEST_SECONDS);
    assert_int_equal(run_tb(tmp, index, &o), 0);
    assert_non_null(o);
    assert_true(num(o, "tokens") == 10000);
    assert_true(num(o, "verify_ns") > 0 && num(o, "ops_per_sec") > 0);
    assert_true(num(o, "verify_batch_ns") > 0);
    assert_true(num(o, "index_bytes_per_token") > 0 && num(o, "build_s") > 0);
    assert_true(num(o, "wrong") == 0);
    json_decref(o);
    tkt_rmdir(tmp);
    free(tmp);
    raw_watchdog(0);
}

/* ---- Redis, when installed ------------------------------------------------- */

static const char *redis_server(void)
{
    static const char *const where[] = {"/usr/bin/redis-server", "/usr/local/bin/redis-server",
                                        NULL};
    for (int i = 0; where[i]; i++)
        if (access(where[i], X_OK) == 0)
            return where[i];
    return NULL;
}

/* A loopback port nobody listens on right now. */
static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0
        || getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* Starts redis-server (AOF, fsync always, in dir) on a free port; its pid,
 * or -1. */
static pid_t redis_start(const char *bin, const char *dir, int *port)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        char ports[16];
        *port = free_port();
        snprintf(ports, sizeof ports, "%d", *port);
        char *log = tkt_path(dir, "redis.log");
        pid_t parent = getpid(), pid = fork();
        if (pid < 0)
            return -1;
        if (pid == 0) {
            int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            if (fd >= 0) {
                dup2(fd, STDOUT_FILENO);
                dup2(fd, STDERR_FILENO);
            }
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(121);
            execl(bin, bin, "--port", ports, "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "yes", "--appendfsync", "always", "--dir", dir,
                  "--daemonize", "no", (char *)NULL);
            _exit(122);
        }
        free(log);
        for (int i = 0; i < 500; i++) { /* 5 s */
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid)
                break; /* exited: the port was taken after all; try another */
            int fd = raw_connect(*port);
            if (fd >= 0) {
                close(fd);
                return pid;
            }
            usleep(10000);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return -1;
}

static void redis_modes(void **state)
{
    (void)state;
    const char *bin = redis_server();
    if (!bin) {
        printf("# redis-server is not installed: the Redis modes (redis-load, redis, "
               "redis-create) were NOT run; 'make deps' installs it\n");
        fflush(stdout);
        skip();
    }
    raw_watchdog(TEST_SECONDS);
    char *tmp = tkt_mkdtemp(), *tokens = tkt_path(tmp, "tokens"), addr[64];
    int port;
    json_t *o;

    /* Secrets in the tokens file need not exist anywhere: Redis only sees
     * their hashes. */
    FILE *f = fopen(tokens, "w");
    assert_non_null(f);
    fprintf(f, "# tokenbench tenant=bench account=acct roles=reader\n");
    for (int i = 0; i < 200; i++) {
        char secret[TK_SECRET_LEN + 1];
        uint8_t hash[TK_HASH_LEN];
        tk_id id;
        secret_new_id(&id);
        secret_generate(TK_KIND_TOKEN, &id, secret, hash);
        fprintf(f, "%s\n", secret);
    }
    fclose(f);
    pid_t pid = redis_start(bin, tmp, &port);
    assert_true(pid > 0);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);

    const char *load[] = {"", "redis-load", "--addr", addr, "--tokens-file", tokens, NULL};
    int rc = run_tb(tmp, load, &o);
    assert_int_equal(rc, 0);
    assert_true(num(o, "tokens") == 200 && num(o, "ops_per_sec") > 0);
    json_decref(o);

    const char *get[] = {"", "redis", "--load", "--addr", addr, "--tokens-file", tokens,
                         "--connections", "2", "--pipeline", "4", "--duration", "1",
                         "--warmup", "0", "--invalid-ratio", "0.2", NULL};
    assert_int_equal(run_tb(tmp, get, &o), 0);
    assert_non_null(o);
    check_gen(o);
    json_decref(o);

    const char *create[] = {"", "redis-create", "--addr", addr, "--connections", "2",
                            "--duration", "1", "--warmup", "0", NULL};
    assert_int_equal(run_tb(tmp, create, &o), 0);
    assert_non_null(o);
    check_gen(o);
    assert_string_equal(json_string_value(json_object_get(o, "appendfsync")), "always");
    json_decref(o);
    printf("# redis modes ran against %s (appendfsync always)\n", bin);

    kill(pid, SIGTERM);
    int st;
    for (int i = 0; i < 1000 && waitpid(pid, &st, WNOHANG) != pid; i++)
        usleep(10000);
    if (kill(pid, 0) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    tkt_rmdir(tmp);
    free(tokens);
    free(tmp);
    raw_watchdog(0);
}

int main(void)
{
    const char *bin = getenv("BIN");
    snprintf(tb_path, sizeof tb_path, "%s/tokenbench", bin && *bin ? bin : "bin");
    if (sodium_init() < 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tokend_modes),
        cmocka_unit_test(index_mode),
        cmocka_unit_test(redis_modes),
    };
    return cmocka_run_group_tests_name("tokenbench", tests, NULL, NULL);
}
