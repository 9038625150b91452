/* test_tokenctl.c - bin/tokenctl (tools/tokenctl.c, docs/tokenctl.md)
 * against the real bin/tokend.
 *
 * Each test starts $BIN/tokend on a free loopback port in a fresh data
 * directory (tests/support/raw.h: a child process, stopped by its pid in
 * the teardown and killed by the kernel if this process dies first; a
 * watchdog bounds every test) and runs $BIN/tokenctl as a user would: one
 * process per command, its exit code, stdout and stderr captured. One test
 * per command group (ping, tenant, perm, role, account, user, key, token,
 * verify, keyring, and usage): every verb's human and --json output (parsed with
 * jansson: the protocol's field names and the values), and each rule's
 * refusal with exit 3 and one line on stderr: the portal flag (rule 2), the
 * ceiling (rule 3), a user's own tenant and account whatever it names
 * (rule 7), a tenant token never a management key (rule 8); bad usage exits
 * 2 before connecting. Deletes are shown effective with tokenctl verify: a
 * deleted account's or tenant's token is invalid (exit 1), a deleted user's
 * personal key no longer authenticates while its tenant tokens still verify.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "core/model.h"
#include "net/client.h"
#include "tests/support/raw.h"
#include "tests/support/tkt.h"

#define WATCHDOG_S 120 /* per test, ASan included; tokenctl's own timeout is 10 s a request */
#define KEYARG_MAX (PATH_MAX + 8)

/* One tokenctl run: exit code, stdout, stderr. */
typedef struct ctl_out {
    int code;
    char *out, *err;
} ctl_out;

/* A test's server and the world built in it (world()). Key arguments are
 * "--key=@FILE" with the key in a file of the test's temp dir. */
typedef struct ctx {
    raw_server s;
    char addr[64];
    char op[KEYARG_MAX];               /* the operator */
    char alice[KEYARG_MAX];            /* acme/globex, admin, portal */
    char bob[KEYARG_MAX];              /* acme/globex, viewer, no portal */
    char dave[KEYARG_MAX];             /* acme/globex, viewer, portal */
    char erin[KEYARG_MAX];             /* acme/initech, admin, portal */
    char carol[KEYARG_MAX];            /* umbrella/corp, staff, portal */
    char alice_key[TK_SECRET_LEN + 1]; /* alice's personal key itself */
    char alice_key_id[TK_ID_STR_LEN + 1];
    char ci_id[TK_ID_STR_LEN + 1]; /* alice's token "CI" (viewer, 30 days) */
    char ci[TK_SECRET_LEN + 1];
    char lab_id[TK_ID_STR_LEN + 1]; /* carol's token "lab" (staff, never expires) */
    char lab[TK_SECRET_LEN + 1];
    ctl_out o;
} ctx;

/* ---- running tokenctl ---------------------------------------------------- */

static void ctl_free(ctl_out *o)
{
    free(o->out);
    free(o->err);
    memset(o, 0, sizeof *o);
}

static char *slurp(const char *path)
{
    size_t n = 0;
    unsigned char *t = tkt_read_file(path, &n);
    assert_non_null(t);
    char *s = realloc(t, n + 1);
    assert_non_null(s);
    s[n] = '\0';
    return s;
}

/* Runs $BIN/tokenctl with args (NULL-terminated), TOKEND_ADDR=addr (unset
 * when NULL) and TOKEND_KEY unset, and waits for it (tokenctl bounds each
 * request by its own 10 s timeout; the watchdog bounds the test). */
static void ctl_run(ctx *t, const char *addr, const char *const *args)
{
    const char *bin = getenv("BIN");
    char *exe = tkt_path(bin && *bin ? bin : "bin", "tokenctl");
    char *outp = tkt_path(t->s.tmp, "ctl.out"), *errp = tkt_path(t->s.tmp, "ctl.err");
    const char *argv[32];
    int n = 0;
    argv[n++] = exe;
    for (int i = 0; args[i]; i++) {
        assert_true(n < 31);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    ctl_free(&t->o);
    pid_t parent = getpid(), pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        /* dup2, not freopen: stdio would flush the parent's buffered
         * output (cmocka's) a second time from the child. */
        int fo = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0)
            _exit(127);
        if (addr)
            setenv("TOKEND_ADDR", addr, 1);
        else
            unsetenv("TOKEND_ADDR");
        unsetenv("TOKEND_KEY");
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!WIFEXITED(st))
        fail_msg("tokenctl did not exit (status 0x%x)", st);
    t->o.code = WEXITSTATUS(st);
    t->o.out = slurp(outp);
    t->o.err = slurp(errp);
    free(exe);
    free(outp);
    free(errp);
}

/* CTL(t, args...): one tokenctl run against t's server, into t->o. */
#define CTL(t, ...)                                                                                \
    do {                                                                                           \
        const char *ctl_args_[] = {__VA_ARGS__, NULL};                                             \
        ctl_run((t), (t)->addr, ctl_args_);                                                        \
    } while (0)

static void expect_code(const ctl_out *o, int code)
{
    if (o->code != code)
        fail_msg("tokenctl exit %d, wanted %d; stdout: %s; stderr: %s", o->code, code, o->out,
                 o->err);
}

/* Success with nothing on stderr. */
static void expect_ok(const ctl_out *o)
{
    expect_code(o, 0);
    if (o->err[0])
        fail_msg("stderr not empty: %s", o->err);
}

static void contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("expected \"%s\" in:\n%s", needle, hay);
}

/* A refusal or bad usage: the exit code, nothing on stdout, and stderr
 * starting with "tokenctl: <what>"; for a refusal (3) exactly one line. */
static void expect_refused(const ctl_out *o, int code, const char *what)
{
    char prefix[256];
    expect_code(o, code);
    if (o->out[0])
        fail_msg("stdout not empty on a refusal: %s", o->out);
    snprintf(prefix, sizeof prefix, "tokenctl: %s", what);
    if (strncmp(o->err, prefix, strlen(prefix)) != 0)
        fail_msg("stderr \"%s\" does not start with \"%s\"", o->err, prefix);
    const char *nl = strchr(o->err, '\n');
    assert_non_null(nl);
    if (code == 3 && nl[1] != '\0')
        fail_msg("more than one line on stderr: %s", o->err);
}

/* REFUSED(t, code, what, args...): run, then expect_refused. */
#define REFUSED(t, code, what, ...)                                                                \
    do {                                                                                           \
        CTL(t, __VA_ARGS__);                                                                       \
        expect_refused(&(t)->o, code, what);                                                       \
    } while (0)

static json_t *json_of(const ctl_out *o)
{
    json_error_t je;
    json_t *j = json_loads(o->out, 0, &je);
    if (!j)
        fail_msg("not JSON (%s): %s", je.text, o->out);
    return j;
}

static void expect_ok_json(const ctl_out *o)
{
    expect_ok(o);
    json_t *j = json_of(o);
    assert_true(json_is_true(json_object_get(j, "ok")));
    assert_int_equal(json_object_size(j), 1);
    json_decref(j);
}

static const char *jstr(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        fail_msg("field \"%s\" is not a string", key);
    return json_string_value(v);
}

static json_int_t jint(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        fail_msg("field \"%s\" is not an integer", key);
    return json_integer_value(v);
}

/* Exactly the keys given (NULL-terminated), in that order: the protocol's
 * row fields, nothing more (no secret). */
static void expect_keys(const json_t *obj, const char *const *keys)
{
    size_t n = 0;
    const char *k;
    const json_t *v;
    assert_true(json_is_object(obj));
    json_object_foreach((json_t *)obj, k, v)
    {
        (void)v;
        if (!keys[n] || strcmp(k, keys[n]) != 0)
            fail_msg("key %zu is \"%s\", wanted \"%s\"", n, k, keys[n] ? keys[n] : "(none)");
        n++;
    }
    if (keys[n])
        fail_msg("key \"%s\" missing", keys[n]);
}

/* A list as a JSON array of n objects. */
static json_t *json_rows(const ctl_out *o, size_t n)
{
    expect_ok(o);
    json_t *j = json_of(o);
    assert_true(json_is_array(j));
    if (json_array_size(j) != n)
        fail_msg("%zu rows, wanted %zu: %s", json_array_size(j), n, o->out);
    return j;
}

/* The strings of a JSON array, joined with commas. */
static void expect_strs(const json_t *obj, const char *key, const char *joined)
{
    const json_t *a = json_object_get(obj, key);
    char buf[4096] = "";
    size_t i;
    const json_t *v;
    assert_true(json_is_array(a));
    json_array_foreach(a, i, v)
    {
        assert_true(json_is_string(v));
        size_t n = strlen(buf);
        snprintf(buf + n, sizeof buf - n, "%s%s", i ? "," : "", json_string_value(v));
    }
    assert_string_equal(buf, joined);
}

/* Lines of s. */
static int lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* ISO-8601 UTC as tokenctl writes it: 2026-01-31T12:00:00Z. */
static void expect_iso(const char *s)
{
    assert_int_equal(strlen(s), 20);
    assert_int_equal(s[4], '-');
    assert_int_equal(s[10], 'T');
    assert_int_equal(s[19], 'Z');
}

/* ---- the world ------------------------------------------------------------ */

/* Writes a personal key into NAME.key in the temp dir and "--key=@FILE"
 * into arg. */
static void key_file(ctx *t, const char *name, const char *key, char arg[KEYARG_MAX])
{
    char fname[80];
    snprintf(fname, sizeof fname, "%s.key", name);
    char *path = tkt_path(t->s.tmp, fname);
    assert_int_equal(tkt_write_file(path, key, strlen(key)), 0);
    snprintf(arg, KEYARG_MAX, "--key=@%s", path);
    free(path);
}

/* tokenctl user create (JSON), its key into a file; the key itself into
 * key and its ID into key_id when not NULL. */
static void make_user(ctx *t, const char *tenant, const char *account, const char *user,
                      const char *role, bool portal, char arg[KEYARG_MAX], char *key, char *key_id)
{
    if (portal)
        CTL(t, t->op, "--json", "user", "create", tenant, account, user, "--role", role,
            "--portal");
    else
        CTL(t, t->op, "--json", "user", "create", tenant, account, user, "--role", role);
    expect_ok(&t->o);
    json_t *j = json_of(&t->o);
    key_file(t, user, jstr(j, "personal_key"), arg);
    if (key)
        snprintf(key, TK_SECRET_LEN + 1, "%s", jstr(j, "personal_key"));
    if (key_id)
        snprintf(key_id, TK_ID_STR_LEN + 1, "%s", jstr(j, "key_id"));
    json_decref(j);
}

/* tokenctl token create (JSON) as keyarg: its client ID and secret. */
static void make_token(ctx *t, const char *keyarg, const char *desc, const char *role,
                       const char *expires, char *id, char *secret)
{
    CTL(t, keyarg, "--json", "token", "create", "--description", desc, "--role", role, "--expires",
        expires);
    expect_ok(&t->o);
    json_t *j = json_of(&t->o);
    snprintf(id, TK_ID_STR_LEN + 1, "%s", jstr(j, "client_id"));
    snprintf(secret, TK_SECRET_LEN + 1, "%s", jstr(j, "secret"));
    json_decref(j);
}

/* Every step through tokenctl, each one checked for exit 0:
 *   acme (api tokens on): perm orders:read "Read orders", roles admin L0
 *     "Administrator" {orders:read, orders:write}, viewer L2 {orders:read};
 *     account globex: alice (admin, portal), bob (viewer), dave (viewer,
 *     portal); account initech: erin (admin, portal)
 *   umbrella (api tokens on): role staff L1 "Staff" {labs:enter};
 *     account corp: carol (staff, portal)
 *   tokens: alice's "CI" (viewer, 30d), carol's "lab" (staff, never). */
static void world(ctx *t)
{
    static const char *const steps[][12] = {
        {"tenant", "create", "acme"},
        {"tenant", "set", "acme", "--api-tokens", "on"},
        {"perm", "put", "acme", "orders:read", "--description", "Read orders"},
        {"role", "put", "acme", "admin", "--level", "0", "--perm", "orders:read", "--perm",
         "orders:write", "--name", "Administrator"},
        {"role", "put", "acme", "viewer", "--level", "2", "--perm", "orders:read"},
        {"account", "create", "acme", "globex"},
        {"account", "create", "acme", "initech"},
        {"tenant", "create", "umbrella"},
        {"tenant", "set", "umbrella", "--api-tokens", "on"},
        {"role", "put", "umbrella", "staff", "--level", "1", "--perm", "labs:enter", "--name",
         "Staff"},
        {"account", "create", "umbrella", "corp"},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        const char *args[16] = {t->op};
        for (int k = 0; k < 12 && steps[i][k]; k++)
            args[k + 1] = steps[i][k];
        ctl_run(t, t->addr, args);
        expect_ok(&t->o);
    }
    make_user(t, "acme", "globex", "alice", "admin", true, t->alice, t->alice_key, t->alice_key_id);
    make_user(t, "acme", "globex", "bob", "viewer", false, t->bob, NULL, NULL);
    make_user(t, "acme", "globex", "dave", "viewer", true, t->dave, NULL, NULL);
    make_user(t, "acme", "initech", "erin", "admin", true, t->erin, NULL, NULL);
    make_user(t, "umbrella", "corp", "carol", "staff", true, t->carol, NULL, NULL);
    make_token(t, t->alice, "CI", "viewer", "30d", t->ci_id, t->ci);
    make_token(t, t->carol, "lab", "staff", "never", t->lab_id, t->lab);
}

/* verify SECRET: the exit code (0 valid, 1 not) and the human line. */
static void expect_verify(ctx *t, const char *secret, int code, const char *line_start)
{
    CTL(t, "verify", secret);
    expect_code(&t->o, code);
    if (strncmp(t->o.out, line_start, strlen(line_start)) != 0)
        fail_msg("verify said \"%s\", wanted \"%s...\"", t->o.out, line_start);
}

/* A tenant API token offered as the key of a management command: AUTH
 * refuses it (rule 8), exit 3 and one line. */
static void expect_token_not_a_key(ctx *t, const char *const *cmd)
{
    char arg[TK_SECRET_LEN + 8];
    const char *args[16] = {arg};
    snprintf(arg, sizeof arg, "--key=%s", t->ci);
    for (int k = 0; cmd[k]; k++)
        args[k + 1] = cmd[k];
    ctl_run(t, t->addr, args);
    expect_refused(&t->o, 3, "unauthenticated");
}

static int setup(void **state)
{
    ctx *t = calloc(1, sizeof *t);
    assert_non_null(t);
    raw_watchdog(WATCHDOG_S);
    assert_int_equal(raw_server_start(&t->s, NULL, NULL), 0);
    snprintf(t->addr, sizeof t->addr, "127.0.0.1:%d", t->s.port);
    char opkey[128];
    assert_int_equal(raw_read_key(&t->s, "operator.key", opkey, sizeof opkey), 0);
    key_file(t, "operator", opkey, t->op);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    ctx *t = *state;
    ctl_free(&t->o);
    assert_int_equal(raw_server_stop(&t->s), 0); /* SIGTERM: a clean exit 0 */
    raw_server_free(&t->s);
    free(t);
    raw_watchdog(0);
    return 0;
}

/* ---- ping ------------------------------------------------------------------ */

static void ping(void **state)
{
    ctx *t = *state;
    CTL(t, "--json", "ping");
    expect_ok(&t->o);
    json_t *j = json_of(&t->o);
    assert_true(json_is_true(json_object_get(j, "ok")));
    assert_int_equal(jint(j, "version"), 1);
    json_decref(j);
    CTL(t, "ping");
    expect_ok(&t->o);
    contains(t->o.out, "protocol version 1");
}

/* ---- tenant ----------------------------------------------------------------- */

static void tenant_group(void **state)
{
    ctx *t = *state;
    static const char *const tenant_keys[] = {
        "tenant",      "api_tokens",   "max_tokens", "max_roles",        "max_keys",
        "create_rate", "create_burst", "role_count", "permission_count", NULL};

    /* create and set (the commands world() uses): their output. */
    CTL(t, t->op, "--json", "tenant", "create", "acme");
    expect_ok_json(&t->o);
    REFUSED(t, 3, "already exists: tenant 'acme' already exists", t->op, "tenant", "create",
            "acme");
    CTL(t, t->op, "tenant", "create", "umbrella");
    expect_ok(&t->o);
    assert_string_equal(t->o.out, "tenant umbrella created\n");
    CTL(t, t->op, "tenant", "set", "acme", "--api-tokens", "on");
    expect_ok(&t->o);
    assert_string_equal(t->o.out, "tenant acme: api tokens on\n");
    CTL(t, t->op, "tenant", "set", "umbrella", "--max-tokens", "none", "--create-rate", "20");
    expect_ok(&t->o);
    assert_string_equal(t->o.out, "tenant umbrella: max tokens none, create rate 20\n");
    REFUSED(t, 2, "--api-tokens takes on or off", t->op, "tenant", "set", "umbrella",
            "--api-tokens", "maybe");

    /* tenant list: the operator's; by slug; columns, or the protocol's rows. */
    CTL(t, t->op, "tenant", "list");
    expect_ok(&t->o);
    assert_string_equal(t->o.out, "TENANT            API TOKENS  MAX TOKENS  MAX ROLES  MAX KEYS  "
                                  "CREATE RATE  CREATE BURST  ROLES  PERMISSIONS\n"
                                  "acme              on          10000       1000       100       "
                                  "10           100           0      0\n"
                                  "umbrella          off         none        1000       100       "
                                  "20           100           0      0\n");
    CTL(t, t->op, "--json", "tenant", "list");
    json_t *j = json_rows(&t->o, 2);
    json_t *r = json_array_get(j, 0);
    expect_keys(r, tenant_keys);
    assert_string_equal(jstr(r, "tenant"), "acme");
    assert_true(json_is_true(json_object_get(r, "api_tokens")));
    assert_int_equal(jint(r, "max_tokens"), 10000);
    assert_int_equal(jint(r, "max_roles"), 1000);
    assert_int_equal(jint(r, "max_keys"), 100);
    assert_int_equal(jint(r, "create_rate"), 10);
    assert_int_equal(jint(r, "create_burst"), 100);
    r = json_array_get(j, 1);
    assert_string_equal(jstr(r, "tenant"), "umbrella");
    assert_true(json_is_false(json_object_get(r, "api_tokens")));
    assert_int_equal(jint(r, "max_tokens"), 0); /* none, as the protocol says it */
    assert_int_equal(jint(r, "create_rate"), 20);
    json_decref(j);
    CTL(t, t->op, "tenant", "list", "--limit", "1");
    expect_ok(&t->o);
    assert_int_equal(lines(t->o.out), 2);
    contains(t->o.out, "acme ");
    REFUSED(t, 2, "--limit takes a positive number", t->op, "tenant", "list", "--limit", "0");

    /* The rest of the world (acme and umbrella exist: their steps repeat). */
    CTL(t, t->op, "tenant", "delete", "acme");
    expect_ok(&t->o);
    CTL(t, t->op, "tenant", "delete", "umbrella");
    expect_ok(&t->o);
    world(t);

    /* tenant show: toggle, limits, counts. */
    CTL(t, t->op, "tenant", "show", "acme");
    expect_ok(&t->o);
    assert_string_equal(t->o.out, "tenant:        acme\n"
                                  "api tokens:    on\n"
                                  "max tokens:    10000\n"
                                  "max roles:     1000\n"
                                  "max keys:      100\n"
                                  "create rate:   10\n"
                                  "create burst:  100\n"
                                  "roles:         2\n"
                                  "permissions:   2\n");
    CTL(t, t->op, "--json", "tenant", "show", "umbrella");
    expect_ok(&t->o);
    j = json_of(&t->o);
    expect_keys(j, tenant_keys);
    assert_string_equal(jstr(j, "tenant"), "umbrella");
    assert_true(json_is_true(json_object_get(j, "api_tokens")));
    assert_int_equal(jint(j, "role_count"), 1);
    assert_int_equal(jint(j, "permission_count"), 1);
    json_decref(j);
    /* A user (portal) gets its own tenant, whatever it names (rule 7). */
    CTL(t, t->alice, "--json", "tenant", "show", "umbrella");
    expect_ok(&t->o);
    j = json_of(&t->o);
    assert_string_equal(jstr(j, "tenant"), "acme");
    json_decref(j);
    CTL(t, t->carol, "tenant", "show");
    expect_ok(&t->o);
    contains(t->o.out, "tenant:        umbrella\n");
    /* Refusals: no portal flag (rule 2); a name that is not there; the
     * operator names it; a tenant token is no key (rule 8). */
    REFUSED(t, 3, "denied: ", t->bob, "tenant", "show");
    contains(t->o.err, "portal");
    REFUSED(t, 3, "not found", t->op, "tenant", "show", "nosuch");
    REFUSED(t, 3, "invalid: the operator names the scope", t->op, "tenant", "show");
    REFUSED(t, 2, "unexpected argument \"umbrella\"", t->op, "tenant", "show", "acme", "umbrella");
    expect_token_not_a_key(t, (const char *const[]){"tenant", "show", NULL});

    /* tenant list is the operator's alone. */
    REFUSED(t, 3, "denied: only the operator key reads tenants", t->alice, "tenant", "list");
    REFUSED(t, 3, "denied", t->bob, "--json", "tenant", "list");
    REFUSED(t, 3, "unauthenticated", "tenant", "list");
    contains(t->o.err, "--key");
    expect_token_not_a_key(t, (const char *const[]){"tenant", "list", NULL});

    /* tenant delete: the operator's; everything of it ends at once. */
    REFUSED(t, 3, "denied", t->carol, "tenant", "delete", "umbrella");
    expect_token_not_a_key(t, (const char *const[]){"tenant", "delete", "umbrella", NULL});
    expect_verify(t, t->lab, 0, "valid: tenant umbrella");
    CTL(t, t->op, "--json", "tenant", "delete", "umbrella");
    expect_ok_json(&t->o);
    expect_verify(t, t->lab, 1, "invalid: unknown");
    REFUSED(t, 3, "unauthenticated", t->carol, "key", "list");
    REFUSED(t, 3, "not found", t->op, "tenant", "show", "umbrella");
    REFUSED(t, 3, "not found", t->op, "tenant", "delete", "umbrella");
    CTL(t, t->op, "--json", "tenant", "list");
    j = json_rows(&t->o, 1);
    assert_string_equal(jstr(json_array_get(j, 0), "tenant"), "acme");
    json_decref(j);
    CTL(t, t->op, "tenant", "delete", "acme");
    expect_ok(&t->o);
    assert_string_equal(t->o.out, "tenant acme deleted\n");
    expect_verify(t, t->ci, 1, "invalid: unknown");
    CTL(t, t->op, "tenant", "list");
    expect_ok(&t->o);
    assert_string_equal(t->o.out, "no tenants\n");
    CTL(t, t->op, "--json", "tenant", "list");
    json_decref(json_rows(&t->o, 0));
    /* The slug is free again: a new, empty tenant. */
    CTL(t, t->op, "tenant", "create", "umbrella");
    expect_ok(&t->o);
    CTL(t, t->op, "role", "list", "--tenant", "umbrella");
    expect_ok(&t->o);
    assert_string_equal(t->o.out, "no roles\n");
    REFUSED(t, 2, "missing argument", t->op, "tenant", "delete");
}

/* ---- perm ------------------------------------------------------------------- */

static void perm_group(void **state)
{
    ctx *t = *state;
    static const char *const perm_keys[] = {"key", "description", NULL};
    world(t);

    CTL(t, t->op, "perm", "put", "acme", "orders:audit", "--description", "Audit");
    expect_ok(&t->o);
    assert_string_equal(t->o.out, "permission orders:audit saved in acme\n");
    CTL(t, t->op, "--json", "perm", "put", "acme", "orders:audit", "--description", "Audit orders");
    expect_ok_json(&t->o);

    /* perm list: by key; the operator names the tenant. */
    CTL(t, t->op, "perm", "list", "--tenant", "acme");
    expect_ok(&t->o);
    assert_string_equal(t->o.out, "KEY                       DESCRIPTION\n"
                                  "orders:audit              Audit orders\n"
                                  "orders:read               Read orders\n"
                                  "orders:write              \n");
    CTL(t, t->op, "--json", "perm", "list", "--tenant", "acme");
    json_t *j = json_rows(&t->o, 3);
    json_t *r = json_array_get(j, 1);
    expect_keys(r, perm_keys);
    assert_string_equal(jstr(r, "key"), "orders:read");
    assert_string_equal(jstr(r, "description"), "Read orders");
    assert_string_equal(jstr(json_array_get(j, 2), "description"), "");
    json_decref(j);
    CTL(t, t->op, "perm", "list", "--tenant", "acme", "--limit", "2");
    expect_ok(&t->o);
    assert_int_equal(lines(t->o.out), 3);
    /* A user (portal) lists its own tenant's, whatever it names (rule 7). */
    CTL(t, t->alice, "--json", "perm", "list", "--tenant", "umbrella");
    j = json_rows(&t->o, 3);
    assert_string_equal(jstr(json_array_get(j, 0), "key"), "orders:audit");
    json_decref(j);
    CTL(t, t->carol, "--json", "perm", "list", "--tenant", "acme");
    j = json_rows(&t->o, 1);
    assert_string_equal(jstr(json_array_get(j, 0), "key"), "labs:enter");
    json_decref(j);
    /* Refusals. */
    REFUSED(t, 3, "denied: ", t->bob, "perm", "list");
    contains(t->o.err, "portal");
    REFUSED(t, 3, "invalid: the operator names the scope", t->op, "perm", "list");
    REFUSED(t, 3, "not found", t->op, "perm", "list", "--tenant", "nosuch");
    REFUSED(t, 2, "option --account does not apply", t->op, "perm", "list", "--account", "globex");
    expect_token_not_a_key(t, (const char *const[]){"perm", "list", NULL});

    /* perm delete: the operator's; out of every role and token at once. */
    expect_verify(t, t->ci, 0,
                  "valid: tenant acme, account globex, roles viewer, "
                  "permissions orders:read,");
    REFUSED(t, 3, "denied", t->alice, "perm", "delete", "acme", "orders:read");
    REFUSED(t, 3, "denied", t->carol, "perm", "delete", "acme", "orders:read");
    expect_token_not_a_key(t, (const char *const[]){"perm", "delete", "acme", "orders:read", NULL});
    CTL(t, t->op, "perm", "delete", "acme", "orders:read");
    expect_ok(&t->o);
    assert_string_equal(t->o.out, "permission orders:read deleted from acme\n");
    CTL(t, "--json", "verify", t->ci);
    expect_ok(&t->o);
    j = json_of(&t->o);
    assert_true(json_is_true(json_object_get(j, "valid")));
    expect_strs(j, "permissions", "");
    json_decref(j);
    CTL(t, t->op, "--json", "role", "list", "--tenant", "acme");
    j = json_rows(&t->o, 2);
    expect_strs(json_array_get(j, 0), "permissions", "orders:write");
    json_decref(j);
    CTL(t, t->op, "--json", "perm", "delete", "acme", "orders:audit");
    expect_ok_json(&t->o);
    CTL(t, t->op, "--json", "perm", "list", "--tenant", "acme");
    j = json_rows(&t->o, 1);
    assert_string_equal(jstr(json_array_get(j, 0), "key"), "orders:write");
    json_decref(j);
    REFUSED(t, 3, "not found", t->op, "perm", "delete", "acme", "orders:read");
    CTL(t, t->op, "perm", "delete", "umbrella", "orders:write"); /* acme's, not umbrella's */
    expect_refused(&t->o, 3, "not found");
    REFUSED(t, 2, "missing argument", t->op, "perm", "delete", "acme");
    CTL(t, t->op, "perm", "list", "--tenant", "umbrella");
    expect_ok(&t->o);
    contains(t->o.out, "labs:enter");
}

/* ---- role ------------------------------------------------------------------- */

/* n roles r000.. in a new tenant, through the client library (fast). */
static void many_roles(ctx *t, const char *tenant, int n)
{
    char opkey[128], key[16];
    const char *perms[] = {"p:read"};
    assert_int_equal(raw_read_key(&t->s, "operator.key", opkey, sizeof opkey), 0);
    tkc *c = tkc_new();
    assert_int_equal(tkc_connect(c, t->addr), 0);
    assert_int_equal(tkc_auth(c, opkey, NULL), 0);
    assert_int_equal(tkc_tenant_create(c, tenant), 0);
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "r%03d", i);
        if (tkc_role_put(c, tenant, key, NULL, (uint32_t)i, perms, 1) != 0)
            fail_msg("role put %s: %s", key, tkc_errmsg(c));
    }
    tkc_free(c);
}

static void role_group(void **state)
{
    ctx *t = *state;
    static const char *const role_keys[] = {"key", "name", "level", "permissions", NULL};
    world(t);

    CTL(t, t->op, "role", "put", "acme", "editor", "--level", "1", "--perm", "orders:read",
        "--perm", "orders:edit");
    expect_ok(&t->o);
    assert_string_equal(t->o.out, "role editor saved in acme: level 1, "
                                  "permissions orders:read,orders:edit\n");
    CTL(t, t->op, "--json", "role", "put", "acme", "empty", "--level", "9");
    expect_ok_json(&t->o);
    REFUSED(t, 2, "--level takes a number from 0 to 65535", t->op, "role", "put", "acme", "x",
            "--level", "65536");
    REFUSED(t, 2, "missing --level", t->op, "role", "put", "acme", "x");

    /* role list: key, name, level, permissions; by key. */
    CTL(t, t->op, "role", "list", "--tenant", "acme");
    expect_ok(&t->o);
    assert_string_equal(t->o.out,
                        "KEY               NAME              LEVEL  PERMISSIONS\n"
                        "admin             Administrator     0      orders:read,orders:write\n"
                        "editor            editor            1      orders:read,orders:edit\n"
                        "empty             empty             9      (none)\n"
                        "viewer            viewer            2      orders:read\n");
    CTL(t, t->op, "--json", "role", "list", "--tenant", "acme");
    json_t *j = json_rows(&t->o, 4);
    json_t *r = json_array_get(j, 0);
    expect_keys(r, role_keys);
    assert_string_equal(jstr(r, "key"), "admin");
    assert_string_equal(jstr(r, "name"), "Administrator");
    assert_int_equal(jint(r, "level"), 0);
    expect_strs(r, "permissions", "orders:read,orders:write");
    r = json_array_get(j, 2);
    assert_int_equal(jint(r, "level"), 9);
    expect_strs(r, "permissions", "");
    json_decref(j);
    /* A user (portal) lists its own tenant's roles, whatever it names. */
    CTL(t, t->dave, "--json", "role", "list");
    json_decref(json_rows(&t->o, 4));
    CTL(t, t->carol, "--json", "role", "list", "--tenant", "acme");
    j = json_rows(&t->o, 1);
    assert_string_equal(jstr(json_array_get(j, 0), "key"), "staff");
    assert_string_equal(jstr(json_array_get(j, 0), "name"), "Staff");
    json_decref(j);
    /* Refusals. */
    REFUSED(t, 3, "denied: ", t->bob, "role", "list");
    contains(t->o.err, "portal");
    REFUSED(t, 3, "invalid: the operator names the scope", t->op, "role", "list");
    expect_token_not_a_key(t, (const char *const[]){"role", "list", NULL});

    /* Every page is followed (a role page holds at most 124 rows), or
     * --limit N rows. */
    many_roles(t, "big", 300);
    CTL(t, t->op, "role", "list", "--tenant", "big");
    expect_ok(&t->o);
    assert_int_equal(lines(t->o.out), 301);
    contains(t->o.out, "\nr000 ");
    contains(t->o.out, "\nr299 ");
    CTL(t, t->op, "--json", "role", "list", "--tenant", "big");
    j = json_rows(&t->o, 300);
    assert_string_equal(jstr(json_array_get(j, 299), "key"), "r299");
    assert_int_equal(jint(json_array_get(j, 299), "level"), 299);
    json_decref(j);
    CTL(t, t->op, "--json", "role", "list", "--tenant", "big", "--limit", "130");
    j = json_rows(&t->o, 130);
    assert_string_equal(jstr(json_array_get(j, 129), "key"), "r129");
    json_decref(j);

    /* role delete: out of the tokens that had it. */
    REFUSED(t, 3, "denied", t->alice, "role", "delete", "acme", "viewer");
    CTL(t, t->op, "role", "delete", "acme", "viewer");
    expect_ok(&t->o);
    assert_string_equal(t->o.out, "role viewer deleted from acme\n");
    expect_verify(t, t->ci, 0,
                  "valid: tenant acme, account globex, roles (none), permissions "
                  "(none)");
    CTL(t, t->op, "--json", "role", "delete", "acme", "empty");
    expect_ok_json(&t->o);
    CTL(t, t->op, "--json", "role", "list", "--tenant", "acme");
    json_decref(json_rows(&t->o, 2));
    REFUSED(t, 3, "not found", t->op, "role", "delete", "acme", "viewer");
}

/* ---- account ------------------------------------------------------------------ */

static void account_group(void **state)
{
    ctx *t = *state;
    static const char *const account_keys[] = {"account", "token_count", NULL};
    char tok2_id[TK_ID_STR_LEN + 1], tok2[TK_SECRET_LEN + 1];
    world(t);

    CTL(t, t->op, "account", "create", "acme", "hooli");
    expect_ok(&t->o);
    assert_string_equal(t->o.out, "account hooli created in acme\n");
    REFUSED(t, 3, "already exists", t->op, "--json", "account", "create", "acme", "hooli");
    make_token(t, t->alice, "deploy", "admin", "never", tok2_id, tok2);

    /* account list: the operator's, by slug, with live tokens. */
    CTL(t, t->op, "account", "list", "--tenant", "acme");
    expect_ok(&t->o);
    assert_string_equal(t->o.out, "ACCOUNT           TOKENS\n"
                                  "globex            2\n"
                                  "hooli             0\n"
                                  "initech           0\n");
    CTL(t, t->op, "--json", "account", "list", "--tenant", "acme");
    json_t *j = json_rows(&t->o, 3);
    expect_keys(json_array_get(j, 0), account_keys);
    assert_string_equal(jstr(json_array_get(j, 0), "account"), "globex");
    assert_int_equal(jint(json_array_get(j, 0), "token_count"), 2);
    assert_string_equal(jstr(json_array_get(j, 2), "account"), "initech");
    json_decref(j);
    CTL(t, t->op, "account", "list", "--tenant", "acme", "--limit", "1");
    expect_ok(&t->o);
    assert_int_equal(lines(t->o.out), 2);
    CTL(t, t->op, "account", "list", "--tenant", "umbrella");
    expect_ok(&t->o);
    contains(t->o.out, "\ncorp ");
    /* Refusals: users never list accounts; the tenant is required. */
    REFUSED(t, 3, "denied", t->alice, "account", "list", "--tenant", "acme");
    REFUSED(t, 3, "denied", t->bob, "account", "list", "--tenant", "acme");
    REFUSED(t, 2, "missing --tenant", t->op, "account", "list");
    REFUSED(t, 3, "not found", t->op, "account", "list", "--tenant", "nosuch");
    expect_token_not_a_key(t, (const char *const[]){"account", "list", "--tenant", "acme", NULL});

    /* account delete: its tokens, users and keys end at once. */
    REFUSED(t, 3, "denied", t->alice, "account", "delete", "acme", "globex");
    REFUSED(t, 3, "denied", t->erin, "account", "delete", "acme", "globex");
    expect_token_not_a_key(t, (const char *const[]){"account", "delete", "acme", "globex", NULL});
    expect_verify(t, t->ci, 0, "valid: tenant acme, account globex");
    CTL(t, t->op, "account", "delete", "acme", "globex");
    expect_ok(&t->o);
    assert_string_equal(t->o.out, "account globex deleted from acme\n");
    expect_verify(t, t->ci, 1, "invalid: unknown");
    expect_verify(t, tok2, 1, "invalid: unknown");
    REFUSED(t, 3, "unauthenticated", t->alice, "token", "list");
    REFUSED(t, 3, "unauthenticated", t->bob, "key", "list");
    REFUSED(t, 3, "not found", t->op, "user", "list", "--tenant", "acme", "--account", "globex");
    CTL(t, t->op, "--json", "account", "list", "--tenant", "acme");
    j = json_rows(&t->o, 2);
    assert_string_equal(jstr(json_array_get(j, 0), "account"), "hooli");
    json_decref(j);
    CTL(t, t->op, "--json", "account", "delete", "acme", "hooli");
    expect_ok_json(&t->o);
    REFUSED(t, 3, "not found", t->op, "account", "delete", "acme", "globex");
    CTL(t, t->op, "account", "delete", "umbrella", "initech"); /* acme's, not umbrella's */
    expect_refused(&t->o, 3, "not found");
    expect_verify(t, t->lab, 0, "valid: tenant umbrella"); /* other tenants untouched */
    REFUSED(t, 2, "missing argument", t->op, "account", "delete", "acme");
}

/* ---- user ------------------------------------------------------------------- */

static void user_group(void **state)
{
    ctx *t = *state;
    static const char *const user_keys[] = {"user", "roles", "portal", "key_count", NULL};
    world(t);

    /* create and set (world() made the users): their output. */
    CTL(t, t->op, "user", "create", "acme", "globex", "frank", "--role", "viewer");
    expect_ok(&t->o);
    contains(t->o.out, "user frank created in acme/globex (key id ");
    contains(t->o.out, "frank's personal key (shown once, store it now):\ntkp_");
    CTL(t, t->op, "user", "set", "acme", "globex", "frank", "--portal");
    expect_ok(&t->o);
    assert_string_equal(t->o.out, "user frank updated\n");
    CTL(t, t->op, "--json", "user", "set", "acme", "globex", "frank", "--no-portal", "--role",
        "viewer", "--role", "admin");
    expect_ok_json(&t->o);
    REFUSED(t, 2, "nothing to change", t->op, "user", "set", "acme", "globex", "frank");
    REFUSED(t, 2, "--portal and --no-portal exclude each other", t->op, "user", "set", "acme",
            "globex", "frank", "--portal", "--no-portal");

    /* user list: roles, portal flag, live keys; by slug. */
    CTL(t, t->op, "user", "list", "--tenant", "acme", "--account", "globex");
    expect_ok(&t->o);
    assert_string_equal(t->o.out, "USER              ROLES             PORTAL  KEYS\n"
                                  "alice             admin             yes     1\n"
                                  "bob               viewer            no      1\n"
                                  "dave              viewer            yes     1\n"
                                  "frank             viewer,admin      no      1\n");
    CTL(t, t->op, "--json", "user", "list", "--tenant", "acme", "--account", "globex");
    json_t *j = json_rows(&t->o, 4);
    json_t *r = json_array_get(j, 0);
    expect_keys(r, user_keys);
    assert_string_equal(jstr(r, "user"), "alice");
    expect_strs(r, "roles", "admin");
    assert_true(json_is_true(json_object_get(r, "portal")));
    assert_int_equal(jint(r, "key_count"), 1);
    r = json_array_get(j, 1);
    assert_string_equal(jstr(r, "user"), "bob");
    assert_true(json_is_false(json_object_get(r, "portal")));
    json_decref(j);
    CTL(t, t->op, "user", "list", "--tenant", "acme", "--account", "globex", "--limit", "3");
    expect_ok(&t->o);
    assert_int_equal(lines(t->o.out), 4);
    /* A user (portal) lists its own account's, whatever it names. */
    CTL(t, t->alice, "--json", "user", "list", "--tenant", "umbrella", "--account", "corp");
    j = json_rows(&t->o, 4);
    assert_string_equal(jstr(json_array_get(j, 0), "user"), "alice");
    json_decref(j);
    CTL(t, t->erin, "--json", "user", "list");
    j = json_rows(&t->o, 1);
    assert_string_equal(jstr(json_array_get(j, 0), "user"), "erin");
    json_decref(j);
    /* Refusals. */
    REFUSED(t, 3, "denied: ", t->bob, "user", "list");
    contains(t->o.err, "portal");
    REFUSED(t, 2, "--tenant and --account go together", t->op, "user", "list", "--tenant", "acme");
    REFUSED(t, 3, "invalid: the operator names the scope", t->op, "user", "list");
    REFUSED(t, 3, "not found", t->op, "user", "list", "--tenant", "acme", "--account", "nosuch");
    expect_token_not_a_key(t, (const char *const[]){"user", "list", NULL});

    /* user show: one user. */
    CTL(t, t->alice, "user", "show", "bob");
    expect_ok(&t->o);
    assert_string_equal(t->o.out, "user:    bob\n"
                                  "roles:   viewer\n"
                                  "portal:  no\n"
                                  "keys:    1\n");
    CTL(t, t->op, "--json", "user", "show", "alice", "--tenant", "acme", "--account", "globex");
    expect_ok(&t->o);
    j = json_of(&t->o);
    expect_keys(j, user_keys);
    assert_string_equal(jstr(j, "user"), "alice");
    expect_strs(j, "roles", "admin");
    assert_true(json_is_true(json_object_get(j, "portal")));
    assert_int_equal(jint(j, "key_count"), 1);
    json_decref(j);
    /* Another account's or tenant's user is not there for a user (rule 7). */
    REFUSED(t, 3, "not found", t->erin, "user", "show", "bob");
    REFUSED(t, 3, "not found", t->alice, "user", "show", "carol", "--tenant", "umbrella",
            "--account", "corp");
    REFUSED(t, 3, "not found", t->carol, "user", "show", "alice");
    REFUSED(t, 3, "denied: ", t->bob, "user", "show", "bob");
    contains(t->o.err, "portal");
    REFUSED(t, 3, "not found", t->op, "user", "show", "nobody", "--tenant", "acme", "--account",
            "globex");
    REFUSED(t, 3, "invalid: the operator names the scope", t->op, "user", "show", "bob");
    REFUSED(t, 2, "missing argument", t->op, "user", "show");
    expect_token_not_a_key(t, (const char *const[]){"user", "show", "bob", NULL});

    /* user delete: the operator's; the user's personal keys end at once,
     * the tokens it created stay (they are the account's). */
    REFUSED(t, 3, "denied", t->alice, "user", "delete", "acme", "globex", "bob");
    REFUSED(t, 3, "denied", t->carol, "user", "delete", "acme", "globex", "bob");
    expect_token_not_a_key(t,
                           (const char *const[]){"user", "delete", "acme", "globex", "bob", NULL});
    CTL(t, t->op, "user", "delete", "acme", "globex", "alice");
    expect_ok(&t->o);
    assert_string_equal(t->o.out, "user alice deleted from acme/globex\n");
    REFUSED(t, 3, "unauthenticated", t->alice, "key", "list");
    REFUSED(t, 3, "unauthenticated", t->alice, "token", "list");
    expect_verify(t, t->ci, 0, "valid: tenant acme, account globex, roles viewer");
    CTL(t, t->op, "--json", "token", "show", t->ci_id);
    expect_ok(&t->o);
    j = json_of(&t->o);
    assert_string_equal(jstr(j, "created_by"), "alice");
    json_decref(j);
    REFUSED(t, 3, "not found", t->op, "user", "show", "alice", "--tenant", "acme", "--account",
            "globex");
    CTL(t, t->dave, "--json", "user", "list");
    j = json_rows(&t->o, 3);
    assert_string_equal(jstr(json_array_get(j, 0), "user"), "bob");
    json_decref(j);
    CTL(t, t->op, "--json", "user", "delete", "acme", "globex", "frank");
    expect_ok_json(&t->o);
    REFUSED(t, 3, "not found", t->op, "user", "delete", "acme", "globex", "alice");
    CTL(t, t->op, "user", "delete", "acme", "initech", "bob"); /* globex's, not initech's */
    expect_refused(&t->o, 3, "not found");
    REFUSED(t, 2, "missing argument", t->op, "user", "delete", "acme", "globex");
}

/* ---- key -------------------------------------------------------------------- */

static void key_group(void **state)
{
    ctx *t = *state;
    static const char *const key_keys[] = {"key_id", "created_at", "expires_at", NULL};
    char extra_id[TK_ID_STR_LEN + 1], extra[KEYARG_MAX];
    world(t);

    /* key create: another personal key, shown once. */
    CTL(t, t->op, "key", "create", "acme", "globex", "alice", "--expires", "30d");
    expect_ok(&t->o);
    contains(t->o.out, "personal key created for acme/globex/alice (key id ");
    contains(t->o.out, "alice's personal key (shown once, store it now):\ntkp_");
    CTL(t, t->op, "--json", "key", "create", "acme", "globex", "alice");
    expect_ok(&t->o);
    json_t *j = json_of(&t->o);
    snprintf(extra_id, sizeof extra_id, "%s", jstr(j, "key_id"));
    key_file(t, "alice2", jstr(j, "personal_key"), extra);
    json_decref(j);
    REFUSED(t, 2, "--expires takes", t->op, "key", "create", "acme", "globex", "alice", "--expires",
            "soon");

    /* key list: metadata only, oldest first. A user its own (portal or
     * not); the operator names tenant, account and user. */
    CTL(t, t->op, "--json", "key", "list", "--tenant", "acme", "--account", "globex", "--user",
        "alice");
    j = json_rows(&t->o, 3);
    json_t *r = json_array_get(j, 0);
    expect_keys(r, key_keys);
    assert_string_equal(jstr(r, "key_id"), t->alice_key_id);
    expect_iso(jstr(r, "created_at"));
    assert_true(json_is_null(json_object_get(r, "expires_at")));
    expect_iso(jstr(json_array_get(j, 1), "expires_at"));
    assert_string_equal(jstr(json_array_get(j, 2), "key_id"), extra_id);
    json_decref(j);
    assert_null(strstr(t->o.out, "tkp_"));
    CTL(t, t->alice, "key", "list");
    expect_ok(&t->o);
    assert_int_equal(lines(t->o.out), 4);
    assert_true(strncmp(t->o.out,
                        "KEY ID                                CREATED               "
                        "EXPIRES\n",
                        strlen("KEY ID                                CREATED               "
                               "EXPIRES\n")) == 0);
    contains(t->o.out, t->alice_key_id);
    contains(t->o.out, "  never\n");
    assert_null(strstr(t->o.out, t->alice_key));
    assert_null(strstr(t->o.out, "tkp_"));
    CTL(t, t->alice, "key", "list", "--limit", "1");
    expect_ok(&t->o);
    assert_int_equal(lines(t->o.out), 2);
    contains(t->o.out, t->alice_key_id);
    /* bob has no portal flag and still lists his own keys. */
    CTL(t, t->bob, "--json", "key", "list");
    j = json_rows(&t->o, 1);
    json_decref(j);
    /* A user's own keys, whatever it names (rule 7). */
    CTL(t, t->carol, "--json", "key", "list", "--tenant", "acme", "--account", "globex", "--user",
        "alice");
    j = json_rows(&t->o, 1);
    assert_true(strcmp(jstr(json_array_get(j, 0), "key_id"), t->alice_key_id) != 0);
    json_decref(j);
    /* Refusals. */
    REFUSED(t, 2, "--tenant, --account and --user go together", t->op, "key", "list", "--tenant",
            "acme", "--account", "globex");
    REFUSED(t, 3, "invalid: the operator names the scope", t->op, "key", "list");
    REFUSED(t, 3, "not found", t->op, "key", "list", "--tenant", "acme", "--account", "globex",
            "--user", "nobody");
    expect_token_not_a_key(t, (const char *const[]){"key", "list", NULL});

    /* key delete: the key stops working at once. */
    CTL(t, extra, "key", "list");
    expect_ok(&t->o);
    REFUSED(t, 3, "denied", t->alice, "key", "delete", extra_id);
    CTL(t, t->op, "key", "delete", extra_id);
    expect_ok(&t->o);
    char want[128];
    snprintf(want, sizeof want, "personal key %s deleted\n", extra_id);
    assert_string_equal(t->o.out, want);
    REFUSED(t, 3, "unauthenticated", extra, "key", "list");
    CTL(t, t->op, "--json", "key", "list", "--tenant", "acme", "--account", "globex", "--user",
        "alice");
    json_decref(json_rows(&t->o, 2));
    REFUSED(t, 3, "not found", t->op, "key", "delete", extra_id);
    CTL(t, t->op, "key", "delete", t->ci_id); /* a token's ID is no key */
    expect_refused(&t->o, 3, "not found");
}

/* ---- token ------------------------------------------------------------------ */

static void token_group(void **state)
{
    ctx *t = *state;
    static const char *const token_keys[] = {"client_id",  "description", "roles", "created_by",
                                             "created_at", "expires_at",  NULL};
    char id[TK_ID_STR_LEN + 1], secret[TK_SECRET_LEN + 1], want[512];
    world(t);

    /* token create: the secret once, the last line. */
    CTL(t, t->alice, "token", "create", "--description", "deploy bot", "--role", "admin");
    expect_ok(&t->o);
    contains(t->o.out, "token created, expires never\nclient ID: ");
    contains(t->o.out, "secret (shown once, store it now):\ntkt_");
    CTL(t, t->alice, "--json", "token", "create", "--role", "viewer", "--expires", "1h");
    expect_ok(&t->o);
    json_t *j = json_of(&t->o);
    snprintf(id, sizeof id, "%s", jstr(j, "client_id"));
    snprintf(secret, sizeof secret, "%s", jstr(j, "secret"));
    assert_int_equal(strlen(id), TK_ID_STR_LEN);
    assert_int_equal(strncmp(secret, "tkt_", 4), 0);
    expect_iso(jstr(j, "expires_at"));
    json_decref(j);
    /* Rule 2: no portal flag. Rule 3: the ceiling (dave is a viewer). */
    REFUSED(t, 3, "denied: ", t->bob, "token", "create", "--role", "viewer");
    contains(t->o.err, "portal");
    REFUSED(t, 3,
            "denied: role 'admin' (level 0) is stronger than dave's own roles "
            "(level 2)",
            t->dave, "token", "create", "--role", "admin");
    CTL(t, t->dave, "--json", "token", "create", "--role", "viewer");
    expect_ok(&t->o);
    CTL(t, t->carol, "token", "create", "--role", "viewer"); /* acme's role, not umbrella's */
    expect_refused(&t->o, 3, "not found");
    REFUSED(t, 2, "missing --role", t->alice, "token", "create");
    REFUSED(t, 3, "denied", t->op, "token", "create", "--role", "viewer");
    expect_token_not_a_key(t, (const char *const[]){"token", "create", "--role", "viewer", NULL});
    /* Rule 1: the toggle off refuses creation and every token's verify. */
    CTL(t, t->op, "tenant", "set", "acme", "--api-tokens", "off");
    expect_ok(&t->o);
    REFUSED(t, 3, "disabled", t->alice, "--json", "token", "create", "--role", "viewer");
    expect_verify(t, t->ci, 1, "invalid: disabled");
    CTL(t, t->op, "tenant", "set", "acme", "--api-tokens", "on");
    expect_ok(&t->o);

    /* token list: metadata, oldest first; never a secret. */
    CTL(t, t->alice, "--json", "token", "list");
    j = json_rows(&t->o, 4);
    json_t *r = json_array_get(j, 0);
    expect_keys(r, token_keys);
    assert_string_equal(jstr(r, "client_id"), t->ci_id);
    assert_string_equal(jstr(r, "description"), "CI");
    expect_strs(r, "roles", "viewer");
    assert_string_equal(jstr(r, "created_by"), "alice");
    expect_iso(jstr(r, "created_at"));
    expect_iso(jstr(r, "expires_at"));
    assert_true(json_is_null(json_object_get(json_array_get(j, 1), "expires_at")));
    assert_string_equal(jstr(json_array_get(j, 3), "created_by"), "dave");
    json_decref(j);
    assert_null(strstr(t->o.out, t->ci));
    assert_null(strstr(t->o.out, "tkt_"));
    CTL(t, t->op, "token", "list", "--tenant", "acme", "--account", "globex");
    expect_ok(&t->o);
    assert_int_equal(lines(t->o.out), 5);
    contains(t->o.out, "CLIENT ID                             CREATED               EXPIRES       "
                       "        CREATED BY    ROLES             DESCRIPTION\n");
    contains(t->o.out, t->ci_id);
    contains(t->o.out, "  alice         viewer            CI\n");
    assert_null(strstr(t->o.out, "tkt_"));
    CTL(t, t->alice, "token", "list", "--limit", "1");
    expect_ok(&t->o);
    assert_int_equal(lines(t->o.out), 2);
    contains(t->o.out, t->ci_id);
    CTL(t, t->erin, "token", "list");
    expect_ok(&t->o);
    assert_string_equal(t->o.out, "no tokens\n");
    CTL(t, t->erin, "--json", "token", "list");
    json_decref(json_rows(&t->o, 0));
    REFUSED(t, 3, "denied: ", t->bob, "token", "list");
    REFUSED(t, 2, "--tenant and --account go together", t->op, "token", "list", "--tenant", "acme");
    expect_token_not_a_key(t, (const char *const[]){"token", "list", NULL});

    /* token show: one token's metadata, never its secret. */
    CTL(t, t->alice, "token", "show", t->ci_id);
    expect_ok(&t->o);
    snprintf(want, sizeof want,
             "client id:    %s\ndescription:  CI\nroles:        viewer\n"
             "created by:   alice\ncreated:      ",
             t->ci_id);
    assert_true(strncmp(t->o.out, want, strlen(want)) == 0);
    contains(t->o.out, "\nexpires:      ");
    assert_int_equal(lines(t->o.out), 6);
    assert_null(strstr(t->o.out, "tkt_"));
    CTL(t, t->op, "--json", "token", "show", t->lab_id);
    expect_ok(&t->o);
    j = json_of(&t->o);
    expect_keys(j, token_keys);
    assert_string_equal(jstr(j, "client_id"), t->lab_id);
    assert_string_equal(jstr(j, "description"), "lab");
    expect_strs(j, "roles", "staff");
    assert_string_equal(jstr(j, "created_by"), "carol");
    assert_true(json_is_null(json_object_get(j, "expires_at")));
    json_decref(j);
    assert_null(strstr(t->o.out, "tkt_"));
    CTL(t, t->dave, "--json", "token", "show", t->ci_id); /* the account's, not the creator's */
    expect_ok(&t->o);
    /* Another account's, another tenant's, a key's ID: not found (rule 7). */
    snprintf(want, sizeof want, "not found: no token %s in your account", t->ci_id);
    REFUSED(t, 3, want, t->erin, "token", "show", t->ci_id);
    REFUSED(t, 3, want, t->carol, "token", "show", t->ci_id);
    REFUSED(t, 3, "not found", t->alice, "token", "show", t->lab_id);
    REFUSED(t, 3, "not found", t->alice, "token", "show", t->alice_key_id);
    REFUSED(t, 3, "denied: ", t->bob, "token", "show", t->ci_id);
    contains(t->o.err, "portal");
    REFUSED(t, 2, "missing argument", t->alice, "token", "show");
    expect_token_not_a_key(t, (const char *const[]){"token", "show", t->ci_id, NULL});

    /* token set: the description and nothing else; it still verifies. */
    CTL(t, t->alice, "token", "set", t->ci_id, "--description", "nightly");
    expect_ok(&t->o);
    snprintf(want, sizeof want, "token %s updated\n", t->ci_id);
    assert_string_equal(t->o.out, want);
    CTL(t, t->op, "--json", "token", "show", t->ci_id);
    expect_ok(&t->o);
    j = json_of(&t->o);
    assert_string_equal(jstr(j, "description"), "nightly");
    expect_strs(j, "roles", "viewer");
    expect_iso(jstr(j, "expires_at"));
    json_decref(j);
    expect_verify(t, t->ci, 0, "valid: tenant acme, account globex, roles viewer");
    CTL(t, t->op, "--json", "token", "set", t->ci_id, "--description", "");
    expect_ok_json(&t->o);
    CTL(t, t->alice, "--json", "token", "list", "--limit", "1");
    j = json_rows(&t->o, 1);
    assert_string_equal(jstr(json_array_get(j, 0), "description"), "");
    json_decref(j);
    REFUSED(t, 3, "denied: ", t->bob, "token", "set", t->ci_id, "--description", "x");
    REFUSED(t, 3, "not found", t->erin, "token", "set", t->ci_id, "--description", "x");
    REFUSED(t, 3, "not found", t->carol, "token", "set", t->ci_id, "--description", "x");
    REFUSED(t, 3, "invalid", t->alice, "token", "set", t->ci_id, "--description", "bad\x01text");
    REFUSED(t, 2, "missing --description", t->alice, "token", "set", t->ci_id);
    REFUSED(t, 2, "option --role does not apply", t->alice, "token", "set", t->ci_id, "--role",
            "admin");
    expect_token_not_a_key(
        t, (const char *const[]){"token", "set", t->ci_id, "--description", "x", NULL});
    CTL(t, t->op, "--json", "token", "show", t->ci_id);
    expect_ok(&t->o);
    j = json_of(&t->o);
    assert_string_equal(jstr(j, "description"), "");
    json_decref(j);

    /* token delete: irreversible; the token is invalid at once. */
    REFUSED(t, 3, "not found", t->erin, "token", "delete", t->ci_id);
    REFUSED(t, 3, "denied", t->bob, "token", "delete", t->ci_id);
    expect_token_not_a_key(t, (const char *const[]){"token", "delete", t->ci_id, NULL});
    CTL(t, t->alice, "--json", "token", "delete", t->ci_id);
    expect_ok_json(&t->o);
    CTL(t, "--json", "verify", t->ci);
    expect_code(&t->o, 1);
    j = json_of(&t->o);
    assert_string_equal(jstr(j, "reason"), "unknown");
    json_decref(j);
    REFUSED(t, 3, "not found", t->alice, "token", "delete", t->ci_id);
    REFUSED(t, 3, "not found", t->alice, "token", "show", t->ci_id);
    CTL(t, t->op, "token", "delete", id);
    expect_ok(&t->o);
    snprintf(want, sizeof want, "token %s deleted\n", id);
    assert_string_equal(t->o.out, want);
    expect_verify(t, secret, 1, "invalid: unknown");
}

/* ---- verify ------------------------------------------------------------------ */

static void verify_group(void **state)
{
    ctx *t = *state;
    world(t);

    CTL(t, "--json", "verify", t->ci);
    expect_ok(&t->o);
    json_t *j = json_of(&t->o);
    assert_true(json_is_true(json_object_get(j, "valid")));
    assert_string_equal(jstr(j, "reason"), "valid");
    assert_string_equal(jstr(j, "tenant"), "acme");
    assert_string_equal(jstr(j, "account"), "globex");
    assert_string_equal(jstr(j, "client_id"), t->ci_id);
    expect_strs(j, "roles", "viewer");
    expect_strs(j, "permissions", "orders:read");
    expect_iso(jstr(j, "expires_at"));
    json_decref(j);
    CTL(t, "verify", t->ci_id, t->ci);
    expect_ok(&t->o);
    assert_true(strncmp(t->o.out,
                        "valid: tenant acme, account globex, roles viewer, "
                        "permissions orders:read, expires ",
                        strlen("valid: tenant acme, account globex, roles viewer, "
                               "permissions orders:read, expires ")) == 0);
    CTL(t, "verify", t->lab_id, t->ci);
    expect_code(&t->o, 1);
    assert_string_equal(t->o.out, "invalid: mismatch\n");
    CTL(t, "--json", "verify", "tkt_not-a-token");
    expect_code(&t->o, 1);
    j = json_of(&t->o);
    assert_true(json_is_false(json_object_get(j, "valid")));
    assert_string_equal(jstr(j, "reason"), "malformed");
    assert_true(json_is_null(json_object_get(j, "tenant")));
    assert_int_equal(json_array_size(json_object_get(j, "roles")), 0);
    json_decref(j);
    /* A personal key never verifies as a tenant token (rule 8). */
    CTL(t, "verify", t->alice_key);
    expect_code(&t->o, 1);
    assert_string_equal(t->o.out, "invalid: wrong_kind\n");
    REFUSED(t, 2, "missing argument", "verify");
}

/* ---- keyring ---------------------------------------------------------------- */

/* The last line of s (its newline dropped) into out. */
static void last_line(const char *s, char *out, size_t cap)
{
    size_t n = strlen(s);
    assert_true(n > 0 && s[n - 1] == '\n');
    n--;
    size_t start = n;
    while (start > 0 && s[start - 1] != '\n')
        start--;
    assert_true(n - start < cap);
    memcpy(out, s + start, n - start);
    out[n - start] = '\0';
}

/* A keyring key: its prefix and 64 lowercase hex digits. */
static void expect_ring_key(const char *key, const char *prefix)
{
    assert_int_equal(strlen(key), TKC_RING_KEY_LEN);
    assert_int_equal(strncmp(key, prefix, 4), 0);
    for (size_t i = 4; i < TKC_RING_KEY_LEN; i++)
        assert_true((key[i] >= '0' && key[i] <= '9') || (key[i] >= 'a' && key[i] <= 'f'));
}

/* keyring add / list / remove: a new operator key acts at once, the
 * bootstrap key removed with it acts no more, a gateway key comes and goes,
 * the last operator key stays; names only in the listing, never a key. */
static void keyring_group(void **state)
{
    ctx *t = *state;
    static const char *const ring_keys[] = {"name", "gateway", "created_at", NULL};
    static const char *const add_keys[] = {"name", "key", NULL};
    char boot[KEYARG_MAX], ci[KEYARG_MAX], edge[KEYARG_MAX], key[TKC_RING_KEY_LEN + 2];
    char *bootfile = tkt_path(t->s.dir, "operator.key"); /* the data dir's own file */
    snprintf(boot, sizeof boot, "--key=@%s", bootfile);
    free(bootfile);
    world(t);

    /* add: an operator key, shown once, on its own last line. */
    CTL(t, boot, "keyring", "add", "ci");
    expect_ok(&t->o);
    assert_int_equal(lines(t->o.out), 3);
    assert_true(strncmp(t->o.out,
                        "operator key ci added to the keyring\n"
                        "its key (shown once, store it now):\n",
                        strlen("operator key ci added to the keyring\n"
                               "its key (shown once, store it now):\n")) == 0);
    last_line(t->o.out, key, sizeof key);
    expect_ring_key(key, "tko_");
    key_file(t, "ci", key, ci);
    /* It acts at once: --key with it manages. */
    CTL(t, ci, "tenant", "create", "wayne");
    expect_ok(&t->o);
    CTL(t, ci, "tenant", "list");
    expect_ok(&t->o);
    contains(t->o.out, "\nwayne ");

    /* --gateway: a gateway key, with --json {"name", "key"}; it verifies
     * and manages nothing. */
    CTL(t, ci, "--json", "keyring", "add", "edge-1", "--gateway");
    expect_ok(&t->o);
    json_t *j = json_of(&t->o);
    expect_keys(j, add_keys);
    assert_string_equal(jstr(j, "name"), "edge-1");
    expect_ring_key(jstr(j, "key"), "tkg_");
    key_file(t, "edge", jstr(j, "key"), edge);
    json_decref(j);
    CTL(t, edge, "verify", t->ci);
    expect_ok(&t->o);
    contains(t->o.out, "valid: tenant acme");
    REFUSED(t, 3, "unauthenticated: the gateway key may only verify", edge, "keyring", "list");

    /* list: names, kinds, creation times (initial's unknown); no key. */
    CTL(t, ci, "keyring", "list");
    expect_ok(&t->o);
    assert_int_equal(lines(t->o.out), 4);
    assert_true(strncmp(t->o.out, "NAME                      GATEWAY  CREATED\n"
                                  "ci                        no       20",
                        strlen("NAME                      GATEWAY  CREATED\n"
                               "ci                        no       20")) == 0);
    contains(t->o.out, "\nedge-1                    yes      20");
    contains(t->o.out, "\ninitial                   no       -\n");
    assert_null(strstr(t->o.out, "tko_"));
    assert_null(strstr(t->o.out, "tkg_"));
    CTL(t, ci, "--json", "keyring", "list");
    j = json_rows(&t->o, 3);
    assert_null(strstr(t->o.out, "tko_"));
    assert_null(strstr(t->o.out, "tkg_"));
    json_t *r = json_array_get(j, 0);
    expect_keys(r, ring_keys);
    assert_string_equal(jstr(r, "name"), "ci");
    assert_true(json_is_false(json_object_get(r, "gateway")));
    expect_iso(jstr(r, "created_at"));
    r = json_array_get(j, 1);
    assert_string_equal(jstr(r, "name"), "edge-1");
    assert_true(json_is_true(json_object_get(r, "gateway")));
    r = json_array_get(j, 2);
    expect_keys(r, ring_keys);
    assert_string_equal(jstr(r, "name"), "initial");
    assert_true(json_is_null(json_object_get(r, "created_at")));
    json_decref(j);
    CTL(t, ci, "keyring", "list", "--limit", "1");
    expect_ok(&t->o);
    assert_int_equal(lines(t->o.out), 2);
    contains(t->o.out, "\nci ");

    /* Refusals (3) and bad usage (2). */
    REFUSED(t, 3, "already exists", ci, "keyring", "add", "ci");
    REFUSED(t, 3, "already exists", ci, "keyring", "add", "initial");
    REFUSED(t, 3, "invalid", ci, "keyring", "add", "Not-A-Slug");
    REFUSED(t, 3, "not found", ci, "keyring", "remove", "nosuch");
    REFUSED(t, 3, "denied", t->alice, "keyring", "list");
    REFUSED(t, 3, "denied", t->alice, "keyring", "add", "mine");
    REFUSED(t, 3, "unauthenticated", "keyring", "list");
    contains(t->o.err, "--key");
    expect_token_not_a_key(t, (const char *const[]){"keyring", "add", "tok", NULL});
    REFUSED(t, 2, "missing argument", ci, "keyring", "add");
    REFUSED(t, 2, "option --gateway does not apply", ci, "keyring", "remove", "edge-1",
            "--gateway");

    /* remove initial with the new key: the bootstrap key is refused now. */
    CTL(t, ci, "keyring", "remove", "initial");
    expect_ok(&t->o);
    assert_string_equal(t->o.out, "key initial removed from the keyring\n");
    REFUSED(t, 3, "unauthenticated", boot, "tenant", "list");
    REFUSED(t, 3, "unauthenticated", t->op, "keyring", "list"); /* the same key, a copy */
    CTL(t, ci, "keyring", "list");
    expect_ok(&t->o);
    assert_int_equal(lines(t->o.out), 3);
    assert_null(strstr(t->o.out, "initial"));

    /* The gateway key removed: it authenticates no more. */
    CTL(t, ci, "--json", "keyring", "remove", "edge-1");
    expect_ok_json(&t->o);
    REFUSED(t, 3, "unauthenticated", edge, "verify", t->ci);

    /* The last operator key stays (denied, 3), and goes on working. */
    REFUSED(t, 3, "denied", ci, "keyring", "remove", "ci");
    contains(t->o.err, "last operator key");
    CTL(t, ci, "--json", "keyring", "list");
    j = json_rows(&t->o, 1);
    assert_string_equal(jstr(json_array_get(j, 0), "name"), "ci");
    json_decref(j);
}

/* ---- usage, keys and connections ------------------------------------------------ */

static void usage_and_errors(void **state)
{
    ctx *t = *state;
    char deadaddr[64];

    /* No key where one is needed: refused (3) with a hint. */
    REFUSED(t, 3, "unauthenticated", "tenant", "create", "nokey");
    contains(t->o.err, "--key");
    REFUSED(t, 2, "cannot read key file", "--key=@/nonexistent/op.key", "tenant", "list");

    /* Bad usage (2): unknown command, unknown flag, missing argument. */
    CTL(t, "frobnicate");
    expect_code(&t->o, 2);
    contains(t->o.err, "usage: tokenctl");
    CTL(t, "token", "create", "--role", "viewer", "--bogus");
    expect_code(&t->o, 2);
    CTL(t, "tenant", "create");
    expect_code(&t->o, 2);
    CTL(t, "tenant", "frob");
    expect_code(&t->o, 2);
    contains(t->o.err, "usage: tokenctl tenant show [TENANT]\n");
    CTL(t, "--help");
    expect_ok(&t->o);
    contains(t->o.out, "Exit codes");
    static const char *const verbs[] = {
        "tenant list", "tenant show",  "tenant delete",  "perm list", "perm delete",
        "role list",   "account list", "account delete", "user list", "user show",
        "user delete", "key list",     "token show",     "token set", "keyring add",
        "keyring list", "keyring remove", NULL};
    for (int i = 0; verbs[i]; i++) {
        char line[64];
        snprintf(line, sizeof line, "  tokenctl %s", verbs[i]);
        contains(t->o.out, line);
    }

    /* Nothing listening (4). */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    snprintf(deadaddr, sizeof deadaddr, "--addr=127.0.0.1:%d", ntohs(a.sin_port));
    REFUSED(t, 4, "cannot connect to ", deadaddr, "--json",
            "ping"); /* bound, not listening: refused */
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(ping, setup, teardown),
        cmocka_unit_test_setup_teardown(tenant_group, setup, teardown),
        cmocka_unit_test_setup_teardown(perm_group, setup, teardown),
        cmocka_unit_test_setup_teardown(role_group, setup, teardown),
        cmocka_unit_test_setup_teardown(account_group, setup, teardown),
        cmocka_unit_test_setup_teardown(user_group, setup, teardown),
        cmocka_unit_test_setup_teardown(key_group, setup, teardown),
        cmocka_unit_test_setup_teardown(token_group, setup, teardown),
        cmocka_unit_test_setup_teardown(verify_group, setup, teardown),
        cmocka_unit_test_setup_teardown(keyring_group, setup, teardown),
        cmocka_unit_test_setup_teardown(usage_and_errors, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests_name("tokenctl", tests, NULL, NULL);
}
