/*
 * test_faults.c - the real bin/tokend with system calls failing under it
 * (tests/preload/fault.c, LD_PRELOADed): a write of its log, the log's
 * fdatasync, LMDB's own write, the rename of a signed head; EIO and
 * ENOSPC; once and for ever. Each case builds a world, arms the fault,
 * asks for two creates, then restarts without the fault and checks the
 * rule the log gives (docs/storage.md): a create is acknowledged only once
 * it is durable, so every acknowledged token verifies after the restart
 * and an unacknowledged one was never kept; a failed log write or sync is
 * never retried and then acknowledged (the store refuses writes until
 * restarted), except a write refused for room, which is cut back and only
 * refuses its batch; verification goes on meanwhile; a failure after the
 * commit point (LMDB) still answers the change as committed.
 *
 * The same under concurrent clients (faults_under_concurrent_creates):
 * several connections creating at once keep a batch being written while
 * the one before waits for its fdatasync (net/writer.c's pipeline), so a
 * fault lands between the two; after the restart exactly the acknowledged
 * creates are there.
 */
#include <sys/wait.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/mp.h"
#include "net/proto.h"
#include "tests/support/raw.h"
#include "tests/support/tkt.h"

typedef struct fcase {
    const char *spec;    /* TOKEND_FAULT */
    bool signed_heads;   /* start with --sign-key */
    bool first_acked;    /* the first create after the fault is acknowledged */
    bool second_acked;   /* ... and the second */
} fcase;

static const fcase cases[] = {
    /* the log: nothing is acknowledged once a write or a sync failed: the
     * store is fenced until restarted ... */
    {"write:/log/:1:EIO:once", false, false, false},
    {"write:/log/:1:EIO:always", false, false, false},
    /* ... but a write refused for room is cut back exactly, never synced,
     * and does not fence: that batch gets ENOSPC (docs/storage.md, "A full
     * disk"), the next one is written when there is room */
    {"write:/log/:1:ENOSPC:once", false, false, true},
    {"write:/log/:1:ENOSPC:always", false, false, false},
    {"fdatasync:/log/:1:EIO:once", false, false, false},
    {"fdatasync:/log/:1:ENOSPC:once", false, false, false},
    {"fdatasync:/log/:1:EIO:always", false, false, false},
    /* LMDB, after the commit point: committed, then the store refuses writes */
    {"write:/state/:1:EIO:once", false, true, false},
    {"write:/state/:1:ENOSPC:always", false, true, false},
    /* a signed head that cannot be renamed into place: nothing is refused */
    {"rename:/log/head:1:EIO:always", true, true, true},
    {"rename:.head:1:ENOSPC:always", true, true, true},
};

static char preload[PATH_MAX];

/* tests/preload/libfault.so beside this suite's build directory. */
static void find_preload(void)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(n > 0);
    self[n] = '\0';
    char *dir = dirname(dirname(self)); /* .../build/rel/tests */
    snprintf(preload, sizeof preload, "%s/preload/libfault.so", dir);
    struct stat st;
    if (stat(preload, &st) != 0)
        fail_msg("%s is missing (make builds it with the suite)", preload);
}

static int call(int fd, uint16_t op, raw_reply *r, const char *spec, ...)
{
    static uint32_t id = 1;
    mpw b;
    va_list ap;
    mpw_init(&b);
    va_start(ap, spec);
    raw_vmap(&b, spec, ap);
    va_end(ap);
    int st = raw_call(fd, op, id++, &b, r);
    mpw_free(&b);
    return st;
}

static int auth(int port, const char *key)
{
    raw_reply r;
    int fd = raw_connect(port);
    assert_true(fd >= 0);
    assert_int_equal(call(fd, OP_AUTH, &r, "key:s", key), 0);
    raw_reply_free(&r);
    return fd;
}

/* A create as alice: 0 and its secret, or the refusal's status. */
static int create(int fd, char *secret, size_t cap)
{
    static const char *const viewer[] = {"viewer", NULL};
    raw_reply r;
    int st = call(fd, OP_TOKEN_CREATE, &r, "description:s roles:a", "fault", viewer);
    if (st == 0)
        assert_true(raw_get_str(&r, "secret", secret, cap));
    raw_reply_free(&r);
    return st;
}

static bool verifies(int port, const char *secret)
{
    raw_reply r;
    bool valid = false;
    int fd = raw_connect(port);
    assert_int_equal(call(fd, OP_VERIFY, &r, "secret:s", secret), 0);
    assert_true(raw_get_bool(&r, "valid", &valid));
    raw_reply_free(&r);
    close(fd);
    return valid;
}

static int count_tokens(int port, const char *op_key)
{
    raw_reply r;
    int fd = auth(port, op_key);
    assert_int_equal(call(fd, OP_TOKEN_LIST, &r, "tenant:s account:s", "acme", "bigco"), 0);
    int n = raw_get_count(&r, "tokens");
    raw_reply_free(&r);
    close(fd);
    return n;
}

/* After a case: the restarted store takes writes again; then both servers
 * and the temp dir go. */
static void writes_again_then_free(raw_server *again, raw_server *s, const char *alice, char *tmp)
{
    char t[128];
    int al = auth(again->port, alice);
    assert_int_equal(create(al, t, sizeof t), 0);
    close(al);
    assert_int_equal(raw_server_stop(again), 0);
    raw_server_free(again);
    raw_server_free(s);
    tkt_rmdir(tmp);
    free(tmp);
}

/* Starts a faulty server with the world built: acme/bigco, role viewer,
 * alice (key in alice). */
static void start_world(raw_server *s, const char *spec, const char *arm, const char *const *extra,
                        char *op_key, char *alice)
{
    raw_reply r;
    static const char *const perms[] = {"orders:read", NULL}, *const viewer[] = {"viewer", NULL};
    setenv("LD_PRELOAD", preload, 1);
    setenv("ASAN_OPTIONS", "verify_asan_link_order=0:detect_leaks=0", 1);
    setenv("TOKEND_FAULT", spec, 1);
    setenv("TOKEND_FAULT_ARM", arm, 1);
    int started = raw_server_start(s, NULL, extra);
    unsetenv("LD_PRELOAD"), unsetenv("TOKEND_FAULT"), unsetenv("TOKEND_FAULT_ARM");
    unsetenv("ASAN_OPTIONS");
    assert_int_equal(started, 0);
    assert_int_equal(raw_read_key(s, "operator.key", op_key, 128), 0);
    int op = auth(s->port, op_key);
    assert_int_equal(call(op, OP_TENANT_CREATE, &r, "tenant:s", "acme"), 0);
    raw_reply_free(&r);
    assert_int_equal(call(op, OP_TENANT_SET, &r, "tenant:s api_tokens:b", "acme", 1), 0);
    raw_reply_free(&r);
    assert_int_equal(call(op, OP_ROLE_PUT, &r, "tenant:s key:s level:u permissions:a", "acme",
                          "viewer", (uint64_t)5, perms),
                     0);
    raw_reply_free(&r);
    assert_int_equal(call(op, OP_ACCOUNT_CREATE, &r, "tenant:s account:s", "acme", "bigco"), 0);
    raw_reply_free(&r);
    assert_int_equal(call(op, OP_USER_CREATE, &r, "tenant:s account:s user:s roles:a portal:b",
                          "acme", "bigco", "alice", viewer, 1),
                     0);
    assert_true(raw_get_str(&r, "personal_key", alice, 128));
    raw_reply_free(&r);
    close(op);
}

static void run_case(const fcase *fc)
{
    raw_server s, again;
    char op_key[128], alice[128], arm[PATH_MAX], t0[128], t1[128] = "", t2[128] = "";
    char key[PATH_MAX];
    char *tmp = tkt_mkdtemp();
    snprintf(arm, sizeof arm, "%s/arm", tmp);
    snprintf(key, sizeof key, "%s/sign.key", tmp);
    const char *signed_args[] = {"--sign-key", key, NULL};
    start_world(&s, fc->spec, arm, fc->signed_heads ? signed_args : NULL, op_key, alice);
    int al = auth(s.port, alice);
    assert_int_equal(create(al, t0, sizeof t0), 0);
    /* LMDB takes a batch after its answer (eng_apply): a listing, which
     * runs after it on the writer thread, says it is done before arming. */
    assert_int_equal(count_tokens(s.port, op_key), 1);

    /* Armed: the next calls of that kind on that file fail. */
    assert_int_equal(tkt_write_file(arm, "on\n", 3), 0);
    tkt_sleep_ms(fc->signed_heads ? 1100 : 0); /* a second on: the next batch signs */
    int st1 = create(al, t1, sizeof t1);
    /* LMDB commits the transaction it carries once the writer has been
     * idle for a millisecond (eng_apply_some): the second create comes
     * after that commit, and its outcome. */
    tkt_sleep_ms(fc->signed_heads ? 1100 : 50);
    int st2 = create(al, t2, sizeof t2);
    char fired[PATH_MAX + 8];
    snprintf(fired, sizeof fired, "%s.fired", arm);
    struct stat fst;
    if (stat(fired, &fst) != 0)
        fail_msg("%s: the fault never fired", fc->spec);
    if ((st1 == 0) != fc->first_acked || (st2 == 0) != fc->second_acked)
        fail_msg("%s: the creates answered %d and %d", fc->spec, st1, st2);
    assert_true(verifies(s.port, t0)); /* verification goes on */
    close(al);
    raw_server_stop(&s);

    /* Without the fault: what was acknowledged is there, nothing else. */
    assert_int_equal(raw_server_start(&again, s.dir, fc->signed_heads ? signed_args : NULL), 0);
    assert_true(verifies(again.port, t0));
    if (st1 == 0)
        assert_true(verifies(again.port, t1));
    if (st2 == 0)
        assert_true(verifies(again.port, t2));
    assert_int_equal(count_tokens(again.port, op_key), 1 + (st1 == 0) + (st2 == 0));
    writes_again_then_free(&again, &s, alice, tmp);
}

#define CLIENTS 6
#define PER_CLIENT 60

/* One client process: creates until refused or PER_CLIENT, one
 * acknowledged secret per line into path. */
static void client_main(int port, const char *alice, const char *path)
{
    FILE *f = fopen(path, "w");
    int fd = raw_connect(port);
    raw_reply r;
    if (!f || fd < 0 || call(fd, OP_AUTH, &r, "key:s", alice) != 0)
        _exit(2);
    raw_reply_free(&r);
    char secret[128];
    for (int i = 0; i < PER_CLIENT; i++) {
        if (create(fd, secret, sizeof secret) != 0)
            break;
        fprintf(f, "%s\n", secret);
        fflush(f);
    }
    fclose(f);
    _exit(0);
}

static void concurrent_case(const char *spec)
{
    raw_server s, again;
    char op_key[128], alice[128], arm[PATH_MAX], path[PATH_MAX];
    char *tmp = tkt_mkdtemp();
    snprintf(arm, sizeof arm, "%s/arm", tmp);
    start_world(&s, spec, arm, NULL, op_key, alice);
    assert_int_equal(tkt_write_file(arm, "on\n", 3), 0); /* the Nth call from now fails */
    pid_t kids[CLIENTS];
    for (int k = 0; k < CLIENTS; k++) {
        snprintf(path, sizeof path, "%s/acked-%d", tmp, k);
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0)
            client_main(s.port, alice, path);
    }
    for (int k = 0; k < CLIENTS; k++) {
        int ws;
        assert_int_equal(waitpid(kids[k], &ws, 0), kids[k]);
        assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    }
    char fired[PATH_MAX + 8];
    snprintf(fired, sizeof fired, "%s.fired", arm);
    struct stat fst;
    if (stat(fired, &fst) != 0)
        fail_msg("%s: the fault never fired", spec);
    raw_server_stop(&s);

    /* Without the fault: every acknowledged create, and nothing else. */
    assert_int_equal(raw_server_start(&again, s.dir, NULL), 0);
    int acked = 0;
    for (int k = 0; k < CLIENTS; k++) {
        snprintf(path, sizeof path, "%s/acked-%d", tmp, k);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        char line[256];
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\n")] = '\0';
            if (!verifies(again.port, line))
                fail_msg("%s: an acknowledged create is gone after the restart", spec);
            acked++;
        }
        fclose(f);
    }
    if (acked >= CLIENTS * PER_CLIENT)
        fail_msg("%s: nothing was refused", spec);
    assert_int_equal(count_tokens(again.port, op_key), acked);
    print_message("# %s under %d clients: %d acknowledged, all there after the restart\n", spec,
                  CLIENTS, acked);
    writes_again_then_free(&again, &s, alice, tmp);
}

static void faults_under_concurrent_creates(void **state)
{
    (void)state;
    raw_watchdog(120);
    find_preload();
    concurrent_case("fdatasync:/log/:8:EIO:once");
    concurrent_case("write:/log/:8:EIO:once");
    concurrent_case("fdatasync:/log/:8:ENOSPC:always");
    concurrent_case("write:/state/:4:EIO:once");
    raw_watchdog(0);
}

static void log_and_lmdb_and_head_faults(void **state)
{
    (void)state;
    raw_watchdog(120);
    find_preload();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i]);
    raw_watchdog(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(log_and_lmdb_and_head_faults),
        cmocka_unit_test(faults_under_concurrent_creates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
