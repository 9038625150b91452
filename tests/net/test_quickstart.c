/*
 * test_quickstart.c - the README's quickstart, verbatim, against the real
 * server, and then what a user must be refused, all through bin/tokenctl.
 *
 * The quickstart block is read from README.md (between the quickstart
 * markers) and run by bash in a scratch directory laid out like the
 * README's: bin/ (the programs under test) and var/ (the server's data
 * directory), with TOKEND_ADDR pointing at the test's server. Then:
 * a portal-less user, a weaker user asking for a stronger role, users of
 * another account and of another tenant, a personal key offered to verify,
 * a tenant token offered as a management key, the toggle off and on, and
 * the data directory searched for every secret, as text and as raw bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/secret.h"
#include "tests/support/fixture.h"
#include "tests/support/raw.h"
#include "tests/support/tkt.h"

typedef struct world {
    raw_server s;
    char *work;
    char addr[64];
} world;

/* Runs a shell command line in the work directory with TOKEND_ADDR set and
 * TOKEND_KEY unset; stdout and stderr together into out. Returns the exit
 * code. */
static int sh(world *w, const char *cmd, char *out, size_t cap)
{
    char *line = NULL;
    size_t n = 0;
    if (asprintf(&line, "cd '%s' && unset TOKEND_KEY && TOKEND_ADDR=%s bash -c '%s' 2>&1", w->work,
                 w->addr, cmd) < 0)
        return -1;
    FILE *p = popen(line, "r");
    free(line);
    if (!p)
        return -1;
    if (out && cap) {
        n = fread(out, 1, cap - 1, p);
        out[n] = '\0';
    } else {
        char sink[4096];
        while (fread(sink, 1, sizeof sink, p) > 0) {
        }
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* The quickstart block of README.md, malloc'd. */
static char *quickstart(void)
{
    size_t len;
    char *readme = (char *)tkt_read_file("README.md", &len);
    assert_non_null(readme);
    char *a = strstr(readme, "<!-- quickstart:begin -->");
    assert_non_null(a);
    a = strstr(a, "```sh\n");
    assert_non_null(a);
    a += 6;
    char *b = strstr(a, "```");
    assert_non_null(b);
    char *block = strndup(a, (size_t)(b - a));
    free(readme);
    return block;
}

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    raw_watchdog(120);
    assert_int_equal(raw_server_start(&w->s, NULL, NULL), 0);
    snprintf(w->addr, sizeof w->addr, "127.0.0.1:%d", w->s.port);
    w->work = tkt_path(w->s.tmp, "work");
    assert_int_equal(mkdir(w->work, 0700), 0);
    const char *bin = getenv("BIN") ? getenv("BIN") : "bin";
    char abs_bin[PATH_MAX];
    assert_non_null(realpath(bin, abs_bin));
    char *lbin = tkt_path(w->work, "bin"), *lvar = tkt_path(w->work, "var");
    assert_int_equal(symlink(abs_bin, lbin), 0);
    assert_int_equal(symlink(w->s.dir, lvar), 0);
    free(lbin);
    free(lvar);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    assert_int_equal(raw_server_stop(&w->s), 0); /* SIGTERM: a clean exit 0 */
    raw_server_free(&w->s);
    free(w->work);
    free(w);
    raw_watchdog(0);
    return 0;
}

static void contains(const char *out, const char *needle)
{
    if (!strstr(out, needle))
        fail_msg("expected \"%s\" in:\n%s", needle, out);
}

/* The last line of out (a secret or key printed last), into dst. */
static void last_line(const char *out, char *dst, size_t cap)
{
    size_t n = strlen(out);
    while (n && out[n - 1] == '\n')
        n--;
    size_t b = n;
    while (b && out[b - 1] != '\n')
        b--;
    snprintf(dst, cap, "%.*s", (int)(n - b), out + b);
}

static void readme_quickstart_runs_verbatim(void **state)
{
    world *w = *state;
    static char out[1 << 16];
    char *block = quickstart();
    char *script = tkt_path(w->work, "quickstart.sh");
    assert_int_equal(tkt_write_file(script, block, strlen(block)), 0);
    int rc = sh(w, "set -euo pipefail; . ./quickstart.sh", out, sizeof out);
    if (rc != 0)
        fail_msg("quickstart exited %d:\n%s", rc, out);
    contains(out, "tenant acme created");
    contains(out, "role admin saved in acme: level 0, permissions orders:read,orders:write");
    contains(out, "alice         viewer            CI");
    contains(out, "valid: tenant acme, account globex, roles viewer, permissions orders:read, expires");
    contains(out, "permissions orders:read,orders:list, expires");
    contains(out, "deleted");
    contains(out, "invalid: unknown");
    contains(out, "exit 1: the token is gone");
    contains(out, "role viewer deleted from acme");
    free(script);
    free(block);
}

static void refusals_and_secrets(void **state)
{
    world *w = *state;
    static char out[1 << 16];
    char alice[128], bob[128], carol[128], dave[128], ellen[128], secret[128], cid[64];
    const char *op = "bin/tokenctl --key @var/operator.key";
    char cmd[1024];
    int rc;

#define OP(...)                                                                                   \
    do {                                                                                          \
        char c_[800], l_[1024];                                                                   \
        snprintf(c_, sizeof c_, __VA_ARGS__);                                                     \
        snprintf(l_, sizeof l_, "%s %s", op, c_);                                                 \
        if (sh(w, l_, out, sizeof out) != 0)                                                      \
            fail_msg("%s failed:\n%s", l_, out);                                                  \
    } while (0)

    OP("tenant create acme");
    OP("tenant set acme --api-tokens on");
    OP("role put acme admin --level 0 --perm orders:read --perm orders:write");
    OP("role put acme viewer --level 2 --perm orders:read");
    OP("account create acme globex");
    OP("account create acme initech");
    OP("user create acme globex alice --role admin --portal");
    last_line(out, alice, sizeof alice);
    OP("user create acme globex bob --role viewer --portal");
    last_line(out, bob, sizeof bob);
    OP("user create acme globex carol --role admin");
    last_line(out, carol, sizeof carol);
    OP("user create acme initech dave --role admin --portal");
    last_line(out, dave, sizeof dave);
    OP("tenant create umbrella");
    OP("tenant set umbrella --api-tokens on");
    OP("role put umbrella admin --level 0 --perm labs:read");
    OP("account create umbrella raccoon");
    OP("user create umbrella raccoon ellen --role admin --portal");
    last_line(out, ellen, sizeof ellen);

    snprintf(cmd, sizeof cmd, "bin/tokenctl --key %s token create --role viewer --description ci", alice);
    assert_int_equal(sh(w, cmd, out, sizeof out), 0);
    last_line(out, secret, sizeof secret);
    assert_int_equal(strlen(secret), TK_SECRET_LEN);
    snprintf(cmd, sizeof cmd, "bin/tokenctl --json verify %s | jq -r .client_id", secret);
    assert_int_equal(sh(w, cmd, out, sizeof out), 0);
    last_line(out, cid, sizeof cid);
    assert_int_equal(strlen(cid), TK_ID_STR_LEN);

    /* A user without the portal flag. */
    snprintf(cmd, sizeof cmd, "bin/tokenctl --key %s token create --role viewer", carol);
    assert_int_equal(sh(w, cmd, out, sizeof out), 3);
    contains(out, "tokenctl: denied: user 'carol' may not manage API tokens");
    snprintf(cmd, sizeof cmd, "bin/tokenctl --key %s token list", carol);
    assert_int_equal(sh(w, cmd, out, sizeof out), 3);
    /* A weaker user asking for a stronger role. */
    snprintf(cmd, sizeof cmd, "bin/tokenctl --key %s token create --role admin", bob);
    assert_int_equal(sh(w, cmd, out, sizeof out), 3);
    contains(out, "stronger than bob's own roles");
    /* Another account of the tenant, and another tenant: not found, not listed. */
    snprintf(cmd, sizeof cmd, "bin/tokenctl --key %s token delete %s", dave, cid);
    assert_int_equal(sh(w, cmd, out, sizeof out), 3);
    contains(out, "not found");
    snprintf(cmd, sizeof cmd, "bin/tokenctl --key %s token delete %s", ellen, cid);
    assert_int_equal(sh(w, cmd, out, sizeof out), 3);
    contains(out, "not found");
    snprintf(cmd, sizeof cmd, "bin/tokenctl --key %s token list", ellen);
    assert_int_equal(sh(w, cmd, out, sizeof out), 0);
    assert_null(strstr(out, cid));
    snprintf(cmd, sizeof cmd, "bin/tokenctl --key %s token create --role viewer", ellen);
    assert_int_equal(sh(w, cmd, out, sizeof out), 3); /* acme's role is not umbrella's */
    /* A personal key offered to verify; a tenant token offered as a key. */
    snprintf(cmd, sizeof cmd, "bin/tokenctl verify %s", alice);
    assert_int_equal(sh(w, cmd, out, sizeof out), 1);
    contains(out, "invalid: wrong_kind");
    snprintf(cmd, sizeof cmd, "bin/tokenctl --key %s token list", secret);
    assert_int_equal(sh(w, cmd, out, sizeof out), 3);
    contains(out, "unauthenticated");
    /* The toggle: off fails every token of the tenant, on restores them. */
    snprintf(cmd, sizeof cmd, "bin/tokenctl verify %s", secret);
    assert_int_equal(sh(w, cmd, out, sizeof out), 0);
    OP("tenant set acme --api-tokens off");
    assert_int_equal(sh(w, cmd, out, sizeof out), 1);
    contains(out, "invalid: disabled");
    OP("tenant set acme --api-tokens on");
    assert_int_equal(sh(w, cmd, out, sizeof out), 0);

    /* No secret anywhere in the data directory, as text or raw bytes. */
    const char *secrets[] = {secret, alice, bob, carol, dave, ellen};
    for (size_t i = 0; i < sizeof secrets / sizeof *secrets; i++) {
        uint8_t raw[48];
        assert_int_equal(fx_secret_decode(secrets[i], raw), 0);
        assert_false(tkt_dir_contains(w->s.dir, secrets[i], TK_SECRET_LEN));
        assert_false(tkt_dir_contains(w->s.dir, secrets[i] + 4, 66));
        assert_false(tkt_dir_contains(w->s.dir, raw + 16, 32));
    }
    /* Nor in the server's log. */
    for (size_t i = 0; i < sizeof secrets / sizeof *secrets; i++)
        assert_false(raw_server_log_has(&w->s, secrets[i]));

    /* Delete: refused at once. */
    snprintf(cmd, sizeof cmd, "bin/tokenctl --key %s token delete %s && bin/tokenctl verify %s",
             bob, cid, secret);
    rc = sh(w, cmd, out, sizeof out);
    if (rc != 1)
        fail_msg("delete then verify: exit %d:\n%s", rc, out);
    contains(out, "invalid: unknown");
#undef OP
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(readme_quickstart_runs_verbatim, setup, teardown),
        cmocka_unit_test_setup_teardown(refusals_and_secrets, setup, teardown),
    };
    return cmocka_run_group_tests_name("quickstart", tests, NULL, NULL);
}
