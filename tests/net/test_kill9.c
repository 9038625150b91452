/*
 * test_kill9.c - the real bin/tokend killed with SIGKILL at random moments
 * while several client processes create and delete tokens over the binary
 * protocol, then started again on the same data, cycle after cycle.
 *
 * Each client writes to its own file, with one write(2) each, first its
 * intent and then, once the server answered, what was acknowledged. After
 * each restart:
 *   - every acknowledged create verifies and every acknowledged delete does
 *     not (rule 5: a delete is effective before it is acknowledged);
 *   - the account's listing holds every acknowledged live token, and
 *     beyond them at most one unacknowledged create per client; a delete in
 *     flight may or may not have happened, but whole: the token either
 *     verifies and is listed, or neither;
 * and every 25 cycles the server is stopped cleanly and a state rebuilt
 * from the log alone (tokenreplay rebuild) compares equal to the live one
 * (tokenreplay compare). 100 cycles by default, 1000 with SOAK=1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/err.h"
#include "core/mp.h"
#include "net/proto.h"
#include "tests/support/raw.h"
#include "tests/support/tkt.h"

#define CLIENTS 3
#define ID_LEN 36
#define SECRET_MAX 128

typedef struct tok {
    char id[ID_LEN + 1];
    char secret[SECRET_MAX];
} tok;

/* What the test knows to be live: acknowledged creates, not deleted. */
static tok *live;
static size_t nlive, cap;

static int find_live(const char *id)
{
    for (size_t i = 0; i < nlive; i++)
        if (!strcmp(live[i].id, id))
            return (int)i;
    return -1;
}

static void drop_live(int i)
{
    live[i] = live[--nlive];
}

static void say(int fd, const char *s)
{
    if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
        _exit(5);
}

/* A client: creates and deletes its own tokens until the server or the
 * test ends it. */
static void client(int port, const char *key, const char *acks, unsigned seed)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(30);
    int fd = raw_connect(port), out = open(acks, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd < 0 || out < 0)
        _exit(0);
    mpw b;
    raw_reply r;
    static const char *const viewer[] = {"viewer", NULL};
    static tok mine[4096];
    size_t n = 0;
    uint32_t id = 1;
    mpw_init(&b);
    raw_map(&b, "key:s", key);
    if (raw_call(fd, OP_AUTH, id++, &b, &r) != 0)
        _exit(0);
    raw_reply_free(&r);
    srand(seed);
    for (;;) {
        char line[512];
        mpw_reset(&b);
        if (n < 4 || rand() % 3) {
            say(out, "I C\n");
            raw_map(&b, "description:s roles:a", "kill9", viewer);
            if (raw_call(fd, OP_TOKEN_CREATE, id++, &b, &r) != 0 || n == 4096)
                _exit(0); /* the server went away (or refused: the test says) */
            if (!raw_get_str(&r, "client_id", mine[n].id, sizeof mine[n].id)
                || !raw_get_str(&r, "secret", mine[n].secret, sizeof mine[n].secret))
                _exit(6);
            raw_reply_free(&r);
            snprintf(line, sizeof line, "C %s %s\n", mine[n].id, mine[n].secret);
            say(out, line);
            n++;
        } else {
            size_t k = (size_t)rand() % n;
            snprintf(line, sizeof line, "I D %s\n", mine[k].id);
            say(out, line);
            raw_map(&b, "client_id:s", mine[k].id);
            if (raw_call(fd, OP_TOKEN_DELETE, id++, &b, &r) != 0)
                _exit(0);
            raw_reply_free(&r);
            snprintf(line, sizeof line, "D %s\n", mine[k].id);
            say(out, line);
            mine[k] = mine[--n];
        }
    }
}

/* VERIFY over the binary protocol: valid or not. */
static bool verifies(int fd, const char *secret)
{
    mpw b;
    raw_reply r;
    bool valid = false;
    mpw_init(&b);
    raw_map(&b, "secret:s", secret);
    assert_int_equal(raw_call(fd, OP_VERIFY, 9, &b, &r), 0);
    assert_true(raw_get_bool(&r, "valid", &valid));
    raw_reply_free(&r);
    mpw_free(&b);
    return valid;
}

/* The account's tokens, counted through every page (as the operator). */
static int listed(int fd)
{
    char after[64] = "";
    int total = 0;
    for (;;) {
        mpw b;
        raw_reply r;
        mpw_init(&b);
        if (after[0])
            raw_map(&b, "tenant:s account:s limit:u after:s", "acme", "bigco", (uint64_t)1000,
                    after);
        else
            raw_map(&b, "tenant:s account:s limit:u", "acme", "bigco", (uint64_t)1000);
        assert_int_equal(raw_call(fd, OP_TOKEN_LIST, 8, &b, &r), 0);
        total += raw_get_count(&r, "tokens");
        bool more = false;
        assert_true(raw_get_bool(&r, "more", &more));
        if (more)
            assert_true(raw_get_str(&r, "next", after, sizeof after));
        raw_reply_free(&r);
        mpw_free(&b);
        if (!more)
            return total;
    }
}

static int op_conn(const raw_server *s, const char *op_key)
{
    mpw b;
    raw_reply r;
    int fd = raw_connect(s->port);
    assert_true(fd >= 0);
    mpw_init(&b);
    raw_map(&b, "key:s", op_key);
    assert_int_equal(raw_call(fd, OP_AUTH, 1, &b, &r), 0);
    raw_reply_free(&r);
    mpw_free(&b);
    return fd;
}

static void call_ok(int fd, uint16_t op, const char *spec, ...)
{
    mpw b;
    raw_reply r;
    va_list ap;
    mpw_init(&b);
    va_start(ap, spec);
    raw_vmap(&b, spec, ap);
    va_end(ap);
    assert_int_equal(raw_call(fd, op, 2, &b, &r), 0);
    raw_reply_free(&r);
    mpw_free(&b);
}

/* Reads a client's file: applies its acknowledged creates and deletes to
 * the live set; counts the creates in flight; returns the id of a delete
 * in flight into pending (empty: none). */
static void read_acks(const char *path, int *creates_in_flight, char pending[ID_LEN + 1])
{
    size_t len;
    char *text = (char *)tkt_read_file(path, &len);
    *creates_in_flight = 0;
    pending[0] = '\0';
    if (!text)
        return;
    text = realloc(text, len + 1);
    text[len] = '\0';
    bool intent_c = false;
    for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n")) {
        if (!strcmp(l, "I C")) {
            intent_c = true;
        } else if (!strncmp(l, "C ", 2)) {
            intent_c = false;
            if (nlive == cap) {
                cap = cap ? 2 * cap : 1024;
                live = realloc(live, cap * sizeof *live);
                assert_non_null(live);
            }
            tok *t = &live[nlive++];
            assert_int_equal(sscanf(l, "C %36s %127s", t->id, t->secret), 2);
        } else if (!strncmp(l, "I D ", 4)) {
            snprintf(pending, ID_LEN + 1, "%s", l + 4);
        } else if (!strncmp(l, "D ", 2)) {
            int i = find_live(l + 2);
            assert_true(i >= 0);
            drop_live(i);
            pending[0] = '\0';
        }
    }
    *creates_in_flight = intent_c;
    free(text);
}

static void kill9_under_concurrent_clients(void **state)
{
    (void)state;
    int cycles = getenv("SOAK") ? 1000 : 100;
    raw_server base, s;
    char op_key[128], alice[128];
    mpw b;
    raw_reply r;
    raw_watchdog(600);
    assert_int_equal(raw_server_start(&base, NULL, NULL), 0);
    assert_int_equal(raw_read_key(&base, "operator.key", op_key, sizeof op_key), 0);
    int op = op_conn(&base, op_key);
    static const char *const perms[] = {"orders:read", NULL}, *const viewer[] = {"viewer", NULL};
    call_ok(op, OP_TENANT_CREATE, "tenant:s", "acme");
    call_ok(op, OP_TENANT_SET, "tenant:s api_tokens:b max_tokens:u create_rate:u", "acme", 1,
            (uint64_t)0, (uint64_t)0);
    call_ok(op, OP_ROLE_PUT, "tenant:s key:s level:u permissions:a", "acme", "viewer",
            (uint64_t)5, perms);
    call_ok(op, OP_ACCOUNT_CREATE, "tenant:s account:s", "acme", "bigco");
    mpw_init(&b);
    raw_map(&b, "tenant:s account:s user:s roles:a portal:b", "acme", "bigco", "alice", viewer, 1);
    assert_int_equal(raw_call(op, OP_USER_CREATE, 3, &b, &r), 0);
    assert_true(raw_get_str(&r, "personal_key", alice, sizeof alice));
    raw_reply_free(&r);
    mpw_free(&b);
    close(op);
    assert_int_equal(raw_server_stop(&base), 0);

    int unknown = 0; /* listed tokens whose create was never acknowledged */
    uint64_t checked = 0, kills_mid = 0;
    srand(12345);
    for (int cycle = 0; cycle < cycles; cycle++) {
        assert_int_equal(raw_server_start(&s, base.dir, NULL), 0);
        pid_t kids[CLIENTS];
        char acks[CLIENTS][512];
        for (int k = 0; k < CLIENTS; k++) {
            snprintf(acks[k], sizeof acks[k], "%s/acks-%d-%d", base.tmp, cycle, k);
            kids[k] = fork();
            assert_true(kids[k] >= 0);
            if (kids[k] == 0)
                client(s.port, alice, acks[k], (unsigned)(cycle * CLIENTS + k));
        }
        tkt_sleep_ms(20 + rand() % 180);
        kill(s.pid, SIGKILL);
        assert_int_equal(raw_server_wait(&s, 10000), 128 + SIGKILL);
        for (int k = 0; k < CLIENTS; k++) {
            kill(kids[k], SIGKILL);
            waitpid(kids[k], NULL, 0);
        }
        raw_server_free(&s);

        /* The next start: every acknowledged change is there, whole. */
        int in_flight = 0;
        char pending[CLIENTS][ID_LEN + 1];
        for (int k = 0; k < CLIENTS; k++) {
            int c;
            read_acks(acks[k], &c, pending[k]);
            in_flight += c;
        }
        assert_int_equal(raw_server_start(&s, base.dir, NULL), 0);
        int fd = op_conn(&s, op_key);
        for (int k = 0; k < CLIENTS; k++) { /* a delete in flight: happened or not, whole */
            if (!pending[k][0])
                continue;
            int i = find_live(pending[k]);
            assert_true(i >= 0);
            if (!verifies(fd, live[i].secret)) {
                drop_live(i);
                kills_mid++;
            }
        }
        /* the newest acknowledged, and a sample of the rest */
        for (size_t i = 0; i < nlive; i++)
            if (i + 40 >= nlive || rand() % 16 == 0) {
                if (!verifies(fd, live[i].secret))
                    fail_msg("cycle %d: acknowledged token %s does not verify", cycle,
                             live[i].id);
                checked++;
            }
        int n = listed(fd);
        if (n < (int)nlive + unknown || n > (int)nlive + unknown + in_flight)
            fail_msg("cycle %d: %d listed, %zu acknowledged live, %d unacknowledged before, "
                     "%d creates in flight",
                     cycle, n, nlive, unknown, in_flight);
        unknown = n - (int)nlive;
        close(fd);
        if (cycle % 25 == 24) { /* a rebuild from the log alone: the same state */
            assert_int_equal(raw_server_stop(&s), 0);
            char to[600];
            snprintf(to, sizeof to, "%s/rebuilt-%d", base.tmp, cycle);
            const char *rb[] = {"rebuild", "--from", base.dir, "--to", to, NULL};
            const char *cmp[] = {"compare", "--a", base.dir, "--b", to, NULL};
            assert_int_equal(raw_run_tool("tokenreplay", rb), 0);
            assert_int_equal(raw_run_tool("tokenreplay", cmp), 0);
            tkt_rmdir(to);
        } else {
            kill(s.pid, SIGKILL);
            raw_server_wait(&s, 10000);
        }
        raw_server_free(&s);
    }
    print_message("# %d cycles, %zu tokens live, %llu acknowledged tokens verified, %d listed "
                  "without an acknowledgement, %llu deletes in flight found done\n",
                  cycles, nlive, (unsigned long long)checked, unknown,
                  (unsigned long long)kills_mid);
    raw_server_free(&base);
    free(live);
    raw_watchdog(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kill9_under_concurrent_clients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
