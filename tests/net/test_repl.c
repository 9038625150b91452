/*
 * test_repl.c - verify-only replicas over NATS JetStream (docs/scale.md),
 * end to end: real nats-server processes (tests/support/natst.h), a real
 * primary (--publish) and real replicas (--follow) from bin/tokend, driven
 * over the binary protocol with the C client (net/client.h) and over HTTP.
 *
 * Each case starts its own NATS and tokend processes and stops them by pid
 * (raw_server_free, natst_free); a watchdog bounds each. Figures (latency
 * percentiles, counts) are printed with a "# " prefix; the assertions are
 * the contract: every change reaches every replica, a revocation
 * acknowledged under the barrier never verifies on a replica afterwards, a
 * replica killed or a primary killed converges without gaps or duplicates,
 * a replica refuses a record it cannot check, and writes on a replica are
 * refused naming the primary.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "core/err.h"
#include "core/model.h"
#include "core/mp.h"
#include "net/client.h"
#include "net/proto.h"
#include "net/repl.h"
#include "tests/support/hraw.h"
#include "tests/support/japi.h"
#include "tests/support/natst.h"
#include "tests/support/raw.h"
#include "tests/support/tkt.h"

#define LEASE "2"
#define LEASE_MS 2000

typedef struct tok {
    char id[TK_ID_STR_LEN + 1];
    char secret[TK_SECRET_LEN + 1];
} tok;


/* A case's time limit, in seconds: more under the sanitizers. */
#define WATCHDOG(s) ((s) * (SANITIZED ? 3 : 1))
static const char *const viewer[] = {"viewer"};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void need_nats(natst *n, int nodes)
{
    if (!natst_available())
        skip();
    assert_int_equal(natst_start(n, nodes), 0);
}

/* ---- servers ------------------------------------------------------------ */

/* A primary (role "--publish") or a replica ("--follow") on dir (NULL:
 * fresh), with the lease and up to 6 more args. */
static void start_node(raw_server *s, const char *dir, const char *role, const char *urls,
                       const char *a1, const char *a2, const char *a3)
{
    const char *args[16] = {role, urls, "--lease", LEASE};
    int k = 4;
    if (a1)
        args[k++] = a1;
    if (a2)
        args[k++] = a2;
    if (a3)
        args[k++] = a3;
    args[k] = NULL;
    if (raw_server_start(s, dir, args) != 0)
        fail_msg("tokend %s %s --lease %s %s %s %s did not start listening within 15 s (a "
                 "primary blocks in natsConnection_Connect, net/repl.c, when it cannot connect "
                 "at once)",
                 role, urls, LEASE, a1 ? a1 : "", a2 ? a2 : "", a3 ? a3 : "");
}

static tkc *conn(int port, const char *key)
{
    char addr[64];
    tkc *c = tkc_new();
    tkc_set_timeout(c, 30000);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    assert_int_equal(tkc_connect(c, addr), 0);
    if (key)
        assert_int_equal(tkc_auth(c, key, NULL), 0);
    return c;
}

/* The world on the primary: tenant acme (no limits), role viewer,
 * account bigco, user alice (portal) whose personal key goes to alice. */
static void world(const raw_server *p, char alice[TK_SECRET_LEN + 1])
{
    char op[128];
    tkc_key k;
    tkc_limits lim = {0, 0, 0, 0, 0};
    static const char *const perms[] = {"orders:read"};
    assert_int_equal(raw_read_key(p, "operator.key", op, sizeof op), 0);
    tkc *c = conn(p->port, op);
    assert_int_equal(tkc_tenant_create(c, "acme"), 0);
    assert_int_equal(tkc_tenant_limits(c, "acme", 1, &lim), 0);
    assert_int_equal(tkc_perm_put(c, "acme", "orders:read", "read"), 0);
    assert_int_equal(tkc_role_put(c, "acme", "viewer", "Viewer", 5, perms, 1), 0);
    assert_int_equal(tkc_account_create(c, "acme", "bigco"), 0);
    assert_int_equal(tkc_user_create(c, "acme", "bigco", "alice", viewer, 1, true, &k), 0);
    snprintf(alice, TK_SECRET_LEN + 1, "%s", k.personal_key);
    tkc_free(c);
}

/* NATS (one node), a primary (with pflag, or NULL) and a replica
 * following it, and the world on the primary (alice's key into alice). */
static void pair_up(natst *n, raw_server *p, raw_server *r, char alice[TK_SECRET_LEN + 1],
                    const char *pflag)
{
    need_nats(n, 1);
    start_node(p, NULL, "--publish", natst_url(n), pflag, NULL, NULL);
    start_node(r, NULL, "--follow", natst_url(n), NULL, NULL, NULL);
    world(p, alice);
}

static void create_one(tkc *c, tok *t)
{
    tkc_new_token nt;
    assert_int_equal(tkc_token_create(c, "one", viewer, 1, 0, &nt), 0);
    snprintf(t->id, sizeof t->id, "%s", nt.client_id);
    snprintf(t->secret, sizeof t->secret, "%s", nt.secret);
}

/* The verdict of secret on port (a fresh connection each time). */
static tk_verdict verdict_on(int port, const char *secret)
{
    tkc_verify_res r = TKC_VERIFY_RES_INIT;
    tkc *c = conn(port, NULL);
    tkc_set_timeout(c, 3000);
    int rc = tkc_verify(c, secret, NULL, &r);
    tk_verdict v = rc == 0 ? r.verdict : (tk_verdict)-1;
    tkc_verify_res_free(&r);
    tkc_free(c);
    return v;
}

/* Waits at most ms for secret's verdict on port to be want; the time it
 * took in ms, or -1. */
static int64_t wait_verdict(int port, const char *secret, tk_verdict want, int ms)
{
    int64_t t0 = tkt_now_ms();
    while (tkt_now_ms() - t0 < ms) {
        if (verdict_on(port, secret) == want)
            return tkt_now_ms() - t0;
        tkt_sleep_ms(20);
    }
    return -1;
}

/* A metric's value from /metrics on port (the first line that starts with
 * name followed by a space or '{'), or -1. */
static double metric(int port, const char *name)
{
    hraw_resp r;
    double v = -1;
    if (hraw_once(port, "GET", "/metrics", NULL, NULL, &r) != 0 || r.status != 200) {
        hraw_free(&r);
        return -1;
    }
    size_t n = strlen(name);
    for (char *l = r.body; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (!strncmp(l, name, n) && (l[n] == ' ' || l[n] == '{')) {
            char *sp = strchr(l, ' ');
            if (sp)
                v = strtod(sp + 1, NULL);
            break;
        }
    }
    hraw_free(&r);
    return v;
}

/* Waits at most ms for the replica's applied seq to equal the primary's
 * log seq (and be > 0), all of it published. true when it did. (The
 * published seq alone may lag the log: a replica equal to it is not yet
 * caught up.) */
static bool wait_converged(const raw_server *p, const raw_server *r, int ms)
{
    int64_t t0 = tkt_now_ms();
    while (tkt_now_ms() - t0 < ms) {
        double a = metric(p->http_port, "tokend_log_seq");
        double pub = metric(p->http_port, "tokend_replication_published_seq");
        double b = metric(r->http_port, "tokend_replica_applied_seq");
        if (a > 0 && a == b && pub == a)
            return true;
        tkt_sleep_ms(50);
    }
    print_error("not converged: primary's log %.0f, published %.0f, replica applied %.0f\n",
                metric(p->http_port, "tokend_log_seq"),
                metric(p->http_port, "tokend_replication_published_seq"),
                metric(r->http_port, "tokend_replica_applied_seq"));
    return false;
}

/* tokenreplay with args; its stdout into out (cap bytes); its exit code. */
static int replay_out(const char *args, char *out, size_t cap)
{
    const char *bin = getenv("BIN");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s/tokenreplay %s 2>&1", bin ? bin : "bin", args);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int compare_dirs(const char *a, const char *b)
{
    char args[1200], out[4096];
    snprintf(args, sizeof args, "compare --a %s --b %s", a, b);
    int rc = replay_out(args, out, sizeof out);
    if (rc != 0)
        print_error("tokenreplay %s: exit %d: %s\n", args, rc, out);
    return rc;
}

/* The end of a case that ran pair_up: both stopped cleanly, the replica's
 * state equal to the primary's (tokenreplay compare), everything freed. */
static void pair_end(natst *n, raw_server *p, raw_server *r)
{
    assert_int_equal(raw_server_stop(p), 0);
    assert_int_equal(raw_server_stop(r), 0);
    assert_int_equal(compare_dirs(p->dir, r->dir), 0);
    raw_server_free(r);
    raw_server_free(p);
    natst_free(n);
    raw_watchdog(0);
}

/* tokenreplay check on dir: its exit code; its output into out. */
static int check_dir(const char *dir, char *out, size_t cap)
{
    char args[1200];
    snprintf(args, sizeof args, "check --data %s", dir);
    return replay_out(args, out, cap);
}

/* The last seq that tokenreplay check reports ("... N records ..." or
 * "last seq N"): the largest number after "seq" in its output, or 0. */
static unsigned long long check_last_seq(const char *out)
{
    unsigned long long best = 0;
    for (const char *p = out; (p = strstr(p, "seq")); p += 3) {
        const char *q = p + 3;
        while (*q == ' ' || *q == '=' || *q == ':')
            q++;
        if (*q >= '0' && *q <= '9') {
            unsigned long long v = strtoull(q, NULL, 10);
            if (v > best)
                best = v;
        }
    }
    return best;
}

/* Prints the first line of s's log that holds needle, with label. */
static void print_log_line(const raw_server *s, const char *needle, const char *label)
{
    size_t len;
    char *text = (char *)tkt_read_file(s->log, &len);
    if (!text)
        return;
    text = realloc(text, len + 1);
    text[len] = '\0';
    char *at = strstr(text, needle);
    if (at) {
        while (at > text && at[-1] != '\n')
            at--;
        char *end = strchr(at, '\n');
        print_message("# %s: %.*s\n", label, end ? (int)(end - at) : (int)strlen(at), at);
    }
    free(text);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* p50/p99/max of n values (sorted in place), in ms, printed after label. */
static void pct(const char *label, int64_t *v, size_t n, double *p99_out)
{
    if (n == 0) {
        print_message("# %s: no samples\n", label);
        return;
    }
    qsort(v, n, sizeof *v, cmp_i64);
    double p50 = v[n / 2] / 1000.0, p99 = v[(n * 99) / 100] / 1000.0, mx = v[n - 1] / 1000.0;
    print_message("# %s: n=%zu p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", label, n, p50, p99, mx);
    if (p99_out)
        *p99_out = p99;
}

/* ---- pipelined writes --------------------------------------------------- */

static void body_create(mpw *b)
{
    static const char *const roles[] = {"viewer", NULL};
    mpw_reset(b);
    raw_map(b, "description:s roles:a", "repl", roles);
}

static void body_delete(mpw *b, const char *id)
{
    mpw_reset(b);
    raw_map(b, "client_id:s", id);
}

/* Takes one create's reply into t; 0, or the failure (local or refused). */
static int recv_create(tkc *c, tok *t)
{
    uint16_t st;
    const uint8_t *rep;
    size_t len;
    int rc = tkc_recv(c, &st, &rep, &len);
    if (rc != 0)
        return rc;
    if (st != 0)
        return proto_err(st);
    raw_reply rr = {.body = (uint8_t *)rep};
    rr.h.len = (uint32_t)len;
    if (!raw_get_str(&rr, "client_id", t->id, sizeof t->id)
        || !raw_get_str(&rr, "secret", t->secret, sizeof t->secret))
        return TK_EPROTO;
    return 0;
}

static int recv_status(tkc *c)
{
    uint16_t st;
    int rc = tkc_recv(c, &st, NULL, NULL);
    return rc ? rc : st ? proto_err(st) : 0;
}

/* ======== 1. two_replicas_see_every_change ================================ */

#define V_CREATES 9000
#define V_DELETES 1500
#define V_CHANGES (V_CREATES + V_DELETES)
#define V_WINDOW 64
#define V_LIMIT_US 5000000

typedef struct vchg {
    int tok;       /* index into vis.toks */
    int create_of; /* for a delete: the index of its token's create change */
    bool del;
    int64_t ack_us;
} vchg;

static struct {
    tok toks[V_CREATES];
    vchg chg[V_CHANGES];
    atomic_size_t nacked;
    atomic_bool stop;
} vis;

typedef struct poller {
    pthread_t th;
    int port;
    int64_t seen[V_CHANGES]; /* reply time of the first verify that showed the change */
    uint64_t verifies, unavailable;
    bool timed_out, failed;
} poller;

static void *poll_main(void *arg)
{
    poller *p = arg;
    char addr[64];
    tkc *c = tkc_new();
    tkc_verify_res r = TKC_VERIFY_RES_INIT;
    snprintf(addr, sizeof addr, "127.0.0.1:%d", p->port);
    if (tkc_connect(c, addr) != 0) {
        p->failed = true;
        goto out;
    }
    static __thread int batch[512];
    size_t lo = 0;
    for (;;) {
        size_t hi = atomic_load(&vis.nacked);
        if (lo == V_CHANGES || (atomic_load(&vis.stop) && lo >= hi))
            break;
        int n = 0;
        int64_t now = now_us();
        for (size_t k = lo; k < hi && k < lo + 4096 && n < 512; k++) {
            if (p->seen[k])
                continue;
            if (now - vis.chg[k].ack_us > V_LIMIT_US) {
                p->timed_out = true;
                goto out;
            }
            if (vis.chg[k].del && !p->seen[vis.chg[k].create_of])
                continue;
            batch[n++] = (int)k;
            if (tkc_verify_send(c, vis.toks[vis.chg[k].tok].secret, NULL) != 0) {
                p->failed = true;
                goto out;
            }
        }
        if (n == 0) {
            usleep(200);
            continue;
        }
        for (int i = 0; i < n; i++) {
            if (tkc_verify_recv(c, &r) != 0) {
                p->failed = true;
                goto out;
            }
            int64_t t = now_us();
            p->verifies++;
            const vchg *ch = &vis.chg[batch[i]];
            if (r.verdict == TK_V_UNAVAILABLE)
                p->unavailable++;
            else if (ch->del ? !r.valid : r.valid)
                p->seen[batch[i]] = t;
        }
        while (lo < hi && p->seen[lo])
            lo++;
    }
out:
    tkc_verify_res_free(&r);
    tkc_free(c);
    return NULL;
}

static void two_replicas_see_every_change(void **state)
{
    (void)state;
    natst n = {0};
    raw_server p, r[2];
    char alice[TK_SECRET_LEN + 1];
    static poller pl[2];
    raw_watchdog(WATCHDOG(120));
    need_nats(&n, 1);
    start_node(&p, NULL, "--publish", natst_url(&n), NULL, NULL, NULL);
    for (int i = 0; i < 2; i++)
        start_node(&r[i], NULL, "--follow", natst_url(&n), NULL, NULL, NULL);
    world(&p, alice);
    tkc *c = conn(p.port, alice);
    tok sentinel;
    create_one(c, &sentinel);
    for (int i = 0; i < 2; i++) {
        int64_t ms = wait_verdict(r[i].port, sentinel.secret, TK_V_VALID, 15000);
        assert_true(ms >= 0);
        print_message("# replica %d answering after %lld ms\n", i, (long long)ms);
    }

    memset(&vis, 0, sizeof vis);
    memset(pl, 0, sizeof pl);
    /* the plan: creates, then deletes of every sixth token */
    for (int k = 0; k < V_CREATES; k++)
        vis.chg[k].tok = k;
    for (int d = 0; d < V_DELETES; d++) {
        vchg *ch = &vis.chg[V_CREATES + d];
        ch->tok = ch->create_of = d * 6;
        ch->del = true;
    }
    for (int i = 0; i < 2; i++) {
        pl[i].port = r[i].port;
        assert_int_equal(pthread_create(&pl[i].th, NULL, poll_main, &pl[i]), 0);
    }
    mpw b;
    mpw_init(&b);
    int64_t t0 = now_us();
    size_t sent = 0, acked = 0;
    while (acked < V_CHANGES) {
        while (sent < V_CHANGES && sent - acked < V_WINDOW
               && (sent < V_CREATES || acked >= V_CREATES)) {
            const vchg *ch = &vis.chg[sent];
            if (ch->del)
                body_delete(&b, vis.toks[ch->tok].id);
            else
                body_create(&b);
            assert_int_equal(tkc_send(c, ch->del ? OP_TOKEN_DELETE : OP_TOKEN_CREATE,
                                      b.buf.data, b.buf.size, NULL),
                             0);
            sent++;
        }
        vchg *ch = &vis.chg[acked];
        int rc = ch->del ? recv_status(c) : recv_create(c, &vis.toks[ch->tok]);
        assert_int_equal(rc, 0);
        ch->ack_us = now_us();
        atomic_store(&vis.nacked, ++acked);
    }
    int64_t write_us = now_us() - t0;
    atomic_store(&vis.stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(pl[i].th, NULL);
    int64_t all_us = now_us() - t0;
    print_message("# %d changes (%d creates, %d deletes) acknowledged in %.2f s (%.0f/s); all "
                  "seen on both replicas after %.2f s\n",
                  V_CHANGES, V_CREATES, V_DELETES, write_us / 1e6, V_CHANGES / (write_us / 1e6),
                  all_us / 1e6);
    static int64_t lat[V_CHANGES];
    for (int i = 0; i < 2; i++) {
        size_t m = 0, early = 0, missing = 0;
        for (size_t k = 0; k < V_CHANGES; k++) {
            if (!pl[i].seen[k]) {
                missing++;
                continue;
            }
            int64_t d = pl[i].seen[k] - vis.chg[k].ack_us;
            if (d < 0) {
                early++;
                d = 0;
            }
            lat[m++] = d;
        }
        char label[96];
        double p99 = 0;
        snprintf(label, sizeof label, "replica %d, primary's ack to visible", i);
        pct(label, lat, m, &p99);
        print_message("# replica %d: %llu verifications, %llu unavailable, %zu seen before the "
                      "ack was read, %zu never seen; p99 %s the 100 ms goal\n",
                      i, (unsigned long long)pl[i].verifies,
                      (unsigned long long)pl[i].unavailable, early, missing,
                      p99 <= 100 ? "within" : "OVER");
        assert_false(pl[i].timed_out);
        assert_false(pl[i].failed);
        assert_int_equal(missing, 0);
        assert_true(lat[m - 1] <= V_LIMIT_US);
    }
    mpw_free(&b);
    tkc_free(c);
    for (int i = 0; i < 2; i++)
        assert_true(wait_converged(&p, &r[i], 10000));
    assert_int_equal(raw_server_stop(&p), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(raw_server_stop(&r[i]), 0);
        assert_int_equal(compare_dirs(p.dir, r[i].dir), 0);
        raw_server_free(&r[i]);
    }
    raw_server_free(&p);
    natst_free(&n);
    raw_watchdog(0);
}

/* ======== 2. barrier_no_replica_answers_a_deleted_token ================== */

#define B_TOKENS 1500
#define B_VERIFIERS 4 /* two per replica */
#define B_WINDOW 8

typedef struct bshm {
    tok toks[B_TOKENS];
    _Atomic int cursor; /* the next token to delete */
    atomic_int stop;
    _Atomic int64_t ack[B_TOKENS];                 /* 0: not acknowledged yet */
    _Atomic int64_t maxvalid[B_VERIFIERS][B_TOKENS]; /* latest send of a "valid" answer */
    atomic_ullong verifies[B_VERIFIERS], checked[B_VERIFIERS], unavailable[B_VERIFIERS];
} bshm;

/* A verifier process: hammers the tokens around the delete cursor (and a
 * few anywhere) on port, noting the send time of each batch (taken before
 * its first byte goes out) against every "valid" answer. */
static void verifier(bshm *m, int v, int port)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(120);
    char addr[64];
    tkc *c = tkc_new();
    tkc_verify_res r = TKC_VERIFY_RES_INIT;
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    tkc_set_timeout(c, 10000);
    if (tkc_connect(c, addr) != 0)
        _exit(3);
    unsigned seed = (unsigned)v * 7919u;
    while (!atomic_load(&m->stop)) {
        int cur = atomic_load(&m->cursor), idx[40], n = 0;
        for (int i = cur - 24; i < cur + 8; i++)
            if (i >= 0 && i < B_TOKENS)
                idx[n++] = i;
        for (int i = 0; i < 4; i++)
            idx[n++] = (int)(rand_r(&seed) % B_TOKENS);
        int64_t ts = now_us();
        for (int i = 0; i < n; i++)
            if (tkc_verify_send(c, m->toks[idx[i]].secret, NULL) != 0)
                _exit(4);
        for (int i = 0; i < n; i++) {
            if (tkc_verify_recv(c, &r) != 0)
                _exit(5);
            atomic_fetch_add(&m->verifies[v], 1);
            if (r.verdict == TK_V_UNAVAILABLE)
                atomic_fetch_add(&m->unavailable[v], 1);
            int64_t a = atomic_load(&m->ack[idx[i]]);
            if (a && ts > a)
                atomic_fetch_add(&m->checked[v], 1);
            if (r.valid && ts > atomic_load(&m->maxvalid[v][idx[i]]))
                atomic_store(&m->maxvalid[v][idx[i]], ts);
        }
    }
    _exit(0);
}

static void barrier_run(bool barrier)
{
    natst n = {0};
    raw_server p, r[2];
    char alice[TK_SECRET_LEN + 1];
    raw_watchdog(WATCHDOG(120));
    need_nats(&n, 1);
    start_node(&p, NULL, "--publish", natst_url(&n), barrier ? "--revocation-barrier" : NULL,
               NULL, NULL);
    for (int i = 0; i < 2; i++)
        start_node(&r[i], NULL, "--follow", natst_url(&n), NULL, NULL, NULL);
    world(&p, alice);
    bshm *m = mmap(NULL, sizeof *m, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    memset(m, 0, sizeof *m);
    tkc *c = conn(p.port, alice);
    mpw b;
    mpw_init(&b);
    size_t sent = 0, got = 0;
    while (got < B_TOKENS) {
        while (sent < B_TOKENS && sent - got < 64) {
            body_create(&b);
            assert_int_equal(tkc_send(c, OP_TOKEN_CREATE, b.buf.data, b.buf.size, NULL), 0);
            sent++;
        }
        assert_int_equal(recv_create(c, &m->toks[got]), 0);
        got++;
    }
    for (int i = 0; i < 2; i++) {
        assert_true(wait_verdict(r[i].port, m->toks[B_TOKENS - 1].secret, TK_V_VALID, 15000) >= 0);
        assert_true(wait_converged(&p, &r[i], 10000));
    }
    pid_t kids[B_VERIFIERS];
    for (int v = 0; v < B_VERIFIERS; v++) {
        kids[v] = fork();
        assert_true(kids[v] >= 0);
        if (kids[v] == 0)
            verifier(m, v, r[v % 2].port);
    }
    tkt_sleep_ms(300);
    static int64_t sent_at[B_TOKENS], lat[B_TOKENS];
    int64_t t0 = now_us();
    sent = got = 0;
    while (got < B_TOKENS) {
        while (sent < B_TOKENS && sent - got < B_WINDOW) {
            body_delete(&b, m->toks[sent].id);
            sent_at[sent] = now_us();
            assert_int_equal(tkc_send(c, OP_TOKEN_DELETE, b.buf.data, b.buf.size, NULL), 0);
            sent++;
            atomic_store(&m->cursor, (int)sent);
        }
        assert_int_equal(recv_status(c), 0);
        int64_t t = now_us();
        atomic_store(&m->ack[got], t);
        lat[got] = t - sent_at[got];
        got++;
    }
    int64_t del_us = now_us() - t0;
    tkt_sleep_ms(300); /* verifications after the last ack */
    atomic_store(&m->stop, 1);
    for (int v = 0; v < B_VERIFIERS; v++) {
        int st = 0;
        waitpid(kids[v], &st, 0);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    unsigned long long verifies = 0, checked = 0, unavail = 0, violations = 0;
    for (int v = 0; v < B_VERIFIERS; v++) {
        verifies += m->verifies[v];
        checked += m->checked[v];
        unavail += m->unavailable[v];
        for (int i = 0; i < B_TOKENS; i++)
            if (m->maxvalid[v][i] > m->ack[i]) {
                if (violations < 5)
                    print_message("# %s: token %d answered valid on replica %d in a "
                                  "verification sent %.3f ms after its delete's ack\n",
                                  barrier ? "barrier" : "control", i, v % 2,
                                  (m->maxvalid[v][i] - m->ack[i]) / 1000.0);
                violations++;
            }
    }
    print_message("# %s: %d deletes in %.2f s (window %d); %llu verifications, %llu sent after "
                  "their token's delete was acknowledged, %llu unavailable; %llu valid after "
                  "the ack\n",
                  barrier ? "barrier" : "control (no barrier)", B_TOKENS, del_us / 1e6,
                  B_WINDOW, verifies, checked, unavail, violations);
    pct(barrier ? "barrier: delete send to ack" : "control: delete send to ack", lat, B_TOKENS,
        NULL);
    if (barrier) {
        assert_true(checked > (unsigned long long)B_TOKENS);
        assert_int_equal(violations, 0);
    }
    mpw_free(&b);
    tkc_free(c);
    munmap(m, sizeof *m);
    for (int i = 0; i < 2; i++)
        raw_server_free(&r[i]);
    raw_server_free(&p);
    natst_free(&n);
    raw_watchdog(0);
}

static void barrier_no_replica_answers_a_deleted_token(void **state)
{
    (void)state;
    barrier_run(true);
}

static void control_without_barrier_reports_late_revocations(void **state)
{
    (void)state;
    barrier_run(false);
}

/* ======== a writer thread, for the kill cases ============================ */

#define W_MAX 20000

typedef struct wload {
    pthread_t th;
    int port;
    const char *key;
    int max;           /* creates to make at most */
    atomic_bool stop;
    tok toks[W_MAX];   /* acknowledged creates, in order */
    atomic_int nacked;
    int deleted_every; /* every k-th acknowledged token is then deleted (0: none) */
    int ndeleted;
    int deleted[W_MAX / 4];
    int err;           /* how it ended (0: stopped or done) */
} wload;

static void *wload_main(void *arg)
{
    wload *w = arg;
    char addr[64];
    tkc *c = tkc_new();
    mpw b;
    mpw_init(&b);
    tkc_set_timeout(c, 10000);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", w->port);
    if ((w->err = tkc_connect(c, addr)) || (w->err = tkc_auth(c, w->key, NULL)))
        goto out;
    while (!atomic_load(&w->stop) && atomic_load(&w->nacked) < w->max) {
        int k = 0;
        for (; k < 16; k++) {
            body_create(&b);
            if ((w->err = tkc_send(c, OP_TOKEN_CREATE, b.buf.data, b.buf.size, NULL)))
                goto out;
        }
        for (int i = 0; i < k; i++) {
            int at = atomic_load(&w->nacked);
            if ((w->err = recv_create(c, &w->toks[at])))
                goto out;
            atomic_store(&w->nacked, at + 1);
            if (w->deleted_every && at % w->deleted_every == 0)
                w->deleted[w->ndeleted++] = -1 - at; /* to delete */
        }
        for (int i = 0; i < w->ndeleted; i++)
            if (w->deleted[i] < 0) {
                int t = -1 - w->deleted[i];
                body_delete(&b, w->toks[t].id);
                if ((w->err = tkc_send(c, OP_TOKEN_DELETE, b.buf.data, b.buf.size, NULL))
                    || (w->err = recv_status(c)))
                    goto out;
                w->deleted[i] = t;
            }
    }
out:
    mpw_free(&b);
    tkc_free(c);
    return NULL;
}

/* Starts w's thread: max creates as alice on port, every every-th deleted. */
static void wload_start(wload *w, int port, const char *alice, int max, int every)
{
    memset(w, 0, sizeof *w);
    w->port = port;
    w->key = alice;
    w->max = max;
    w->deleted_every = every;
    assert_int_equal(pthread_create(&w->th, NULL, wload_main, w), 0);
}

/* Token t of the load: 1 its delete was acknowledged, -1 its delete was
 * due or in flight when the load ended (it may or may not have happened),
 * 0 live. */
static int wload_deleted(const wload *w, int t)
{
    for (int i = 0; i < w->ndeleted; i++)
        if (w->deleted[i] == t)
            return 1;
        else if (w->deleted[i] == -1 - t)
            return -1;
    return 0;
}

/* ======== 3. replica_killed_catches_up =================================== */

static void replica_killed_catches_up(void **state)
{
    (void)state;
    natst n = {0};
    raw_server p, r, r2;
    char alice[TK_SECRET_LEN + 1], out[8192];
    static wload w;
    raw_watchdog(WATCHDOG(90));
    pair_up(&n, &p, &r, alice, NULL);
    wload_start(&w, p.port, alice, 8000, 7);
    tkt_sleep_ms(800);
    int before = atomic_load(&w.nacked);
    kill(r.pid, SIGKILL);
    assert_int_equal(raw_server_wait(&r, 10000), 128 + SIGKILL);
    tkt_sleep_ms(500);
    start_node(&r2, r.dir, "--follow", natst_url(&n), NULL, NULL, NULL);
    pthread_join(w.th, NULL);
    assert_int_equal(w.err, 0);
    print_message("# replica killed after %d acknowledged creates, restarted; %d creates, %d "
                  "deletes in all\n",
                  before, atomic_load(&w.nacked), w.ndeleted);
    int64_t t0 = tkt_now_ms();
    assert_true(wait_converged(&p, &r2, 15000));
    print_message("# caught up %lld ms after the load ended\n", (long long)(tkt_now_ms() - t0));
    /* the newest and a deleted one answer as on the primary, once the
     * restarted replica holds a lease again (it answers "unavailable" until
     * the primary has granted one: a round trip after it caught up) */
    assert_true(wait_verdict(r2.port, w.toks[atomic_load(&w.nacked) - 1].secret, TK_V_VALID,
                             5000) >= 0);
    assert_int_equal(verdict_on(r2.port, w.toks[0].secret), TK_V_UNKNOWN);
    assert_int_equal(raw_server_stop(&p), 0);
    assert_int_equal(raw_server_stop(&r2), 0);
    assert_int_equal(compare_dirs(p.dir, r.dir), 0);
    assert_int_equal(check_dir(p.dir, out, sizeof out), 0);
    unsigned long long plast = check_last_seq(out);
    int rc = check_dir(r.dir, out, sizeof out);
    print_message("# tokenreplay check on the replica: exit %d: %s", rc, out);
    assert_int_equal(rc, 0);
    assert_true(plast > 0);
    assert_int_equal(check_last_seq(out), plast);
    raw_server_free(&r2);
    raw_server_free(&r);
    raw_server_free(&p);
    natst_free(&n);
    raw_watchdog(0);
}

/* ---- libnats from the test ---------------------------------------------- */

static void js_open(const char *urls, natsConnection **nc, jsCtx **js)
{
    natsOptions *o = NULL;
    jsOptions jo;
    /* Each URL a server of its own: libnats's SetURL takes one. */
    char copy[512];
    const char *servers[8];
    int n = 0;
    snprintf(copy, sizeof copy, "%s", urls);
    for (char *save = NULL, *u = strtok_r(copy, ",", &save); u && n < 8;
         u = strtok_r(NULL, ",", &save))
        servers[n++] = u;
    assert_int_equal(natsOptions_Create(&o), NATS_OK);
    assert_int_equal(natsOptions_SetServers(o, servers, n), NATS_OK);
    assert_int_equal(natsOptions_SetTimeout(o, 2000), NATS_OK);
    assert_int_equal(natsConnection_Connect(nc, o), NATS_OK);
    natsOptions_Destroy(o);
    jsOptions_Init(&jo);
    jo.Wait = 5000;
    assert_int_equal(natsConnection_JetStream(js, *nc, &jo), NATS_OK);
}

static void js_close(natsConnection *nc, jsCtx *js)
{
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

/* Messages in stream name, or -1 when it cannot be read. */
static int64_t stream_msgs(jsCtx *js, const char *name)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    if (js_GetStreamInfo(&si, js, name, NULL, &jerr) != NATS_OK)
        return -1;
    int64_t v = (int64_t)si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return v;
}

/* ======== 4. empty_replica_bootstraps_from_a_snapshot ==================== */

static void empty_replica_bootstraps_from_a_snapshot(void **state)
{
    (void)state;
    natst n = {0};
    raw_server p, r;
    char alice[TK_SECRET_LEN + 1], out[8192];
    natsConnection *nc;
    jsCtx *js;
    tok early[50], late;
    raw_watchdog(WATCHDOG(60));
    need_nats(&n, 1);
    start_node(&p, NULL, "--publish", natst_url(&n), "--snapshot-every", "1", NULL);
    world(&p, alice);
    tkc *c = conn(p.port, alice);
    for (int i = 0; i < 50; i++)
        create_one(c, &early[i]);
    assert_int_equal(tkc_token_delete(c, early[0].id), 0);
    js_open(natst_url(&n), &nc, &js);
    int64_t t0 = tkt_now_ms(), snaps = -1;
    while (tkt_now_ms() - t0 < 8000 && (snaps = stream_msgs(js, "OBJ_tokend-snapshots")) <= 0) {
        create_one(c, &late); /* "while events come" */
        tkt_sleep_ms(200);
    }
    if (snaps <= 0)
        fail_msg("no snapshot in the object store bucket tokend-snapshots 8 s after a start "
                 "with --snapshot-every 1 (stream OBJ_tokend-snapshots: %lld messages): the "
                 "primary does not write snapshots (docs/scale.md, \"Snapshots and a new "
                 "replica\")",
                 (long long)snaps);
    print_message("# a snapshot after %lld ms\n", (long long)(tkt_now_ms() - t0));
    /* the stream loses its first events */
    jsOptions po;
    jsErrCode jerr = 0;
    jsOptions_Init(&po);
    po.Stream.Purge.Sequence = 20;
    assert_int_equal(js_PurgeStream(js, "tokend", &po, &jerr), NATS_OK);
    create_one(c, &late);
    start_node(&r, NULL, "--follow", natst_url(&n), NULL, NULL, NULL);
    assert_true(wait_verdict(r.port, late.secret, TK_V_VALID, 15000) >= 0);
    assert_int_equal(verdict_on(r.port, early[1].secret), TK_V_VALID);
    assert_int_equal(verdict_on(r.port, early[0].secret), TK_V_UNKNOWN);
    char *base = tkt_path(r.dir, "log/base");
    assert_int_equal(access(base, F_OK), 0);
    free(base);
    assert_true(wait_converged(&p, &r, 10000));
    tkc_free(c);
    js_close(nc, js);
    assert_int_equal(raw_server_stop(&p), 0);
    assert_int_equal(raw_server_stop(&r), 0);
    assert_int_equal(compare_dirs(p.dir, r.dir), 0);
    int rc = check_dir(r.dir, out, sizeof out);
    print_message("# tokenreplay check on the bootstrapped replica: exit %d: %s", rc, out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "base"));
    raw_server_free(&r);
    raw_server_free(&p);
    natst_free(&n);
    raw_watchdog(0);
}

/* ======== 5. primary_killed_republishes_without_duplicates =============== */

static void primary_killed_republishes_without_duplicates(void **state)
{
    (void)state;
    natst n = {0};
    raw_server p, p2, r;
    char alice[TK_SECRET_LEN + 1], out[8192];
    static wload w;
    raw_watchdog(WATCHDOG(90));
    pair_up(&n, &p, &r, alice, NULL);
    wload_start(&w, p.port, alice, W_MAX, 9);
    tkt_sleep_ms(1000);
    kill(p.pid, SIGKILL);
    assert_int_equal(raw_server_wait(&p, 10000), 128 + SIGKILL);
    pthread_join(w.th, NULL);
    int acked = atomic_load(&w.nacked);
    print_message("# primary killed after %d acknowledged creates and %d deletes (the writer "
                  "ended with %d)\n",
                  acked, w.ndeleted, w.err);
    assert_true(acked > 100);
    start_node(&p2, p.dir, "--publish", natst_url(&n), NULL, NULL, NULL);
    /* every acknowledged change is there */
    tkc *c = conn(p2.port, NULL);
    tkc_verify_res vr = TKC_VERIFY_RES_INIT;
    int bad = 0;
    for (int i = 0; i < acked; i++) {
        assert_int_equal(tkc_verify_send(c, w.toks[i].secret, NULL), 0);
        if (i % 256 == 255 || i == acked - 1)
            for (int j = i - (i % 256); j <= i; j++) {
                assert_int_equal(tkc_verify_recv(c, &vr), 0);
                int del = wload_deleted(&w, j);
                bool want = !del;
                if (del >= 0 && vr.valid != want && bad++ < 5)
                    print_error("token %d: valid %d after the restart, want %d\n", j, vr.valid,
                                want);
            }
    }
    assert_int_equal(bad, 0);
    tkc_verify_res_free(&vr);
    tkc_free(c);
    /* more writes after the restart */
    c = conn(p2.port, alice);
    tok late;
    create_one(c, &late);
    tkc_free(c);
    assert_true(wait_verdict(r.port, late.secret, TK_V_VALID, 15000) >= 0);
    assert_true(wait_converged(&p2, &r, 15000));
    assert_int_equal(raw_server_stop(&p2), 0);
    assert_int_equal(raw_server_stop(&r), 0);
    assert_int_equal(check_dir(p.dir, out, sizeof out), 0);
    unsigned long long last = check_last_seq(out);
    /* the stream: one message per record, Tokend-Seq 1..last each once */
    natsConnection *nc;
    jsCtx *js;
    js_open(natst_url(&n), &nc, &js);
    int64_t msgs = stream_msgs(js, "tokend");
    natsSubscription *sub = NULL;
    jsSubOptions so;
    jsErrCode jerr = 0;
    jsSubOptions_Init(&so);
    so.Ordered = true;
    assert_int_equal(js_SubscribeSync(&sub, js, "tokend.log", NULL, &so, &jerr), NATS_OK);
    unsigned char *seen = calloc(last + 2, 1);
    unsigned long long got = 0, dups = 0, outside = 0;
    natsMsg *m = NULL;
    while (got < (unsigned long long)msgs && natsSubscription_NextMsg(&m, sub, 3000) == NATS_OK) {
        const char *v = NULL;
        got++;
        if (natsMsgHeader_Get(m, "Tokend-Seq", &v) == NATS_OK) {
            unsigned long long s = strtoull(v, NULL, 10);
            if (s == 0 || s > last)
                outside++;
            else if (seen[s]++)
                dups++;
        } else {
            outside++;
        }
        natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(sub);
    js_close(nc, js);
    print_message("# the stream holds %lld messages, read %llu; the log's last seq %llu; %llu "
                  "duplicate Tokend-Seq, %llu outside 1..last\n",
                  (long long)msgs, got, last, dups, outside);
    assert_int_equal(msgs, (int64_t)last);
    assert_int_equal(got, last);
    assert_int_equal(dups, 0);
    assert_int_equal(outside, 0);
    free(seen);
    assert_int_equal(compare_dirs(p.dir, r.dir), 0);
    raw_server_free(&r);
    raw_server_free(&p2);
    raw_server_free(&p);
    natst_free(&n);
    raw_watchdog(0);
}

/* ======== 6. nats_cluster_node_loss ====================================== */

typedef struct delarg {
    int port;
    const char *key, *id;
    int rc;
    int64_t sent_us, ack_us;
} delarg;

static void *del_main(void *arg)
{
    delarg *d = arg;
    char addr[64];
    tkc *c = tkc_new();
    tkc_set_timeout(c, 30000);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", d->port);
    d->sent_us = now_us();
    d->rc = tkc_connect(c, addr);
    if (!d->rc)
        d->rc = tkc_auth(c, d->key, NULL);
    if (!d->rc)
        d->rc = tkc_token_delete(c, d->id);
    d->ack_us = now_us();
    tkc_free(c);
    return NULL;
}

static void nats_cluster_node_loss(void **state)
{
    (void)state;
    natst n = {0};
    raw_server p, r;
    char alice[TK_SECRET_LEN + 1];
    tok t1, t2, t3;
    raw_watchdog(WATCHDOG(150));
    need_nats(&n, 3);
    start_node(&p, NULL, "--publish", natst_url(&n), "--stream-replicas", "3",
               "--revocation-barrier");
    start_node(&r, NULL, "--follow", natst_url(&n), NULL, NULL, NULL);
    world(&p, alice);
    tkc *c = conn(p.port, alice);
    create_one(c, &t1);
    assert_true(wait_verdict(r.port, t1.secret, TK_V_VALID, 20000) >= 0);
    /* the stream's leader goes */
    natsConnection *nc;
    jsCtx *js;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    js_open(natst_url(&n), &nc, &js);
    assert_int_equal(js_GetStreamInfo(&si, js, "tokend", NULL, &jerr), NATS_OK);
    int leader = 0;
    if (si->Cluster && si->Cluster->Leader)
        for (int i = 0; i < n.nodes; i++)
            if (!strcmp(si->Cluster->Leader, n.node[i].name))
                leader = i;
    print_message("# stream leader %s (%d copies)\n",
                  si->Cluster && si->Cluster->Leader ? si->Cluster->Leader : "?",
                  (int)si->Config->Replicas);
    assert_int_equal(si->Config->Replicas, 3);
    jsStreamInfo_Destroy(si);
    js_close(nc, js);
    assert_int_equal(natst_kill(&n, leader), 0);
    int64_t t0 = tkt_now_ms();
    create_one(c, &t2);
    int64_t ms = wait_verdict(r.port, t2.secret, TK_V_VALID, 20000);
    print_message("# leader node %d killed: a new token valid on the replica %lld ms after "
                  "the kill (%lld ms after its create was acknowledged)\n",
                  leader, (long long)(tkt_now_ms() - t0), (long long)ms);
    assert_true(ms >= 0 && tkt_now_ms() - t0 <= 20000);
    assert_int_equal(natst_restart(&n, leader), 0);
    create_one(c, &t3);
    assert_true(wait_verdict(r.port, t3.secret, TK_V_VALID, 20000) >= 0);
    tkc_free(c);

    /* every node stops: a delete under the barrier waits for the replica's lease */
    natst_stop_all(&n);
    delarg d = {.port = p.port, .key = alice, .id = t1.id};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, del_main, &d), 0);
    int64_t unavail_at = -1, late_valid = 0, t_stop = tkt_now_ms();
    while (tkt_now_ms() - t_stop < 8000) {
        int64_t ts = now_us();
        tk_verdict v = verdict_on(r.port, t1.secret);
        if (v == TK_V_VALID && d.ack_us && ts > d.ack_us)
            late_valid++;
        if (v == TK_V_UNAVAILABLE && unavail_at < 0)
            unavail_at = tkt_now_ms() - t_stop;
        if (unavail_at >= 0 && d.ack_us)
            break;
        tkt_sleep_ms(50);
    }
    pthread_join(th, NULL);
    print_message("# NATS down: the delete under the barrier answered %d after %.0f ms; the "
                  "replica answered unavailable after %lld ms; %lld valid answers after the ack\n",
                  d.rc, (d.ack_us - d.sent_us) / 1000.0, (long long)unavail_at,
                  (long long)late_valid);
    assert_int_equal(d.rc, 0);
    assert_true(d.ack_us - d.sent_us <= (LEASE_MS + 3000) * 1000LL);
    assert_true(unavail_at >= 0);
    assert_int_equal(late_valid, 0);
    hraw_resp hr;
    assert_int_equal(hraw_once(r.http_port, "GET", "/readyz", NULL, NULL, &hr), 0);
    assert_int_equal(hr.status, 503);
    assert_non_null(strstr(hr.body, "unavailable"));
    hraw_free(&hr);

    /* NATS comes back: the replica answers again and converges */
    t0 = tkt_now_ms();
    assert_int_equal(natst_restart_all(&n), 0);
    ms = wait_verdict(r.port, t2.secret, TK_V_VALID, 30000);
    print_message("# NATS back: the replica answers valid again after %lld ms (%lld ms after "
                  "the restart began)\n",
                  (long long)ms, (long long)(tkt_now_ms() - t0));
    assert_true(ms >= 0);
    assert_int_equal(verdict_on(r.port, t1.secret), TK_V_UNKNOWN);
    assert_true(wait_converged(&p, &r, 15000));
    pair_end(&n, &p, &r);
}

/* ======== NATS away: writes go on, the stream catches up ================== */

/* A primary started while its NATS is away starts, takes writes and
 * answers them (NATS never stops a write), and once NATS is back publishes
 * every record from its log: a replica started then answers them all. */
static void writes_go_on_while_nats_is_away(void **state)
{
    (void)state;
    natst n = {0};
    raw_server p, r;
    char alice[TK_SECRET_LEN + 1];
    tok t[20];
    raw_watchdog(WATCHDOG(60));
    need_nats(&n, 1);
    assert_int_equal(natst_kill(&n, 0), 0); /* its port is known, nobody listens */
    int64_t t0 = tkt_now_ms();
    start_node(&p, NULL, "--publish", natst_url(&n), NULL, NULL, NULL);
    world(&p, alice);
    tkc *c = conn(p.port, alice);
    for (int i = 0; i < 20; i++)
        create_one(c, &t[i]);
    assert_int_equal(tkc_token_delete(c, t[0].id), 0);
    tkc_free(c);
    print_message("# NATS away: started and 21 writes answered in %lld ms\n",
                  (long long)(tkt_now_ms() - t0));
    assert_true(metric(p.http_port, "tokend_replication_published_seq") == 0);
    assert_true(metric(p.http_port, "tokend_replication_connected") == 0);
    assert_int_equal(natst_restart(&n, 0), 0);
    start_node(&r, NULL, "--follow", natst_url(&n), NULL, NULL, NULL);
    assert_true(wait_verdict(r.port, t[19].secret, TK_V_VALID, 20000) >= 0);
    assert_true(wait_converged(&p, &r, 15000));
    for (int i = 1; i < 20; i++)
        assert_int_equal(verdict_on(r.port, t[i].secret), TK_V_VALID);
    assert_int_equal(verdict_on(r.port, t[0].secret), TK_V_UNKNOWN);
    pair_end(&n, &p, &r);
}

/* ======== 7. a_forged_record_stops_the_replica =========================== */

static void forged_run(bool gap)
{
    natst n = {0};
    raw_server p, r;
    char alice[TK_SECRET_LEN + 1], out[8192];
    tok t[5];
    raw_watchdog(WATCHDOG(60));
    pair_up(&n, &p, &r, alice, NULL);
    tkc *c = conn(p.port, alice);
    for (int i = 0; i < 5; i++)
        create_one(c, &t[i]);
    tkc_free(c);
    assert_true(wait_verdict(r.port, t[4].secret, TK_V_VALID, 15000) >= 0);
    assert_true(wait_converged(&p, &r, 10000));
    double applied = metric(r.http_port, "tokend_replica_applied_seq");
    assert_int_equal(metric(r.http_port, "tokend_replica_stopped"), 0);
    natsConnection *nc;
    jsCtx *js;
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    char bad[80], seq[24];
    const char *hash = NULL;
    js_open(natst_url(&n), &nc, &js);
    raw_server r2;
    if (!gap) {
        /* The primary's next record, made while the replica is down, is
         * taken out of the stream and put back with a wrong chain hash: an
         * event that would apply, refused for its hash alone. */
        assert_int_equal(raw_server_stop(&r), 0);
        c = conn(p.port, alice);
        tok x;
        create_one(c, &x);
        tkc_free(c);
        int64_t t1 = tkt_now_ms();
        while (metric(p.http_port, "tokend_replication_published_seq") < applied + 1
               && tkt_now_ms() - t1 < 5000)
            tkt_sleep_ms(20);
        assert_int_equal(raw_server_stop(&p), 0);
        jsStreamInfo *si = NULL;
        assert_int_equal(js_GetStreamInfo(&si, js, "tokend", NULL, &jerr), NATS_OK);
        uint64_t sseq = si->State.LastSeq;
        jsStreamInfo_Destroy(si);
        natsMsg *real = NULL;
        assert_int_equal(js_GetMsg(&real, js, "tokend", sseq, NULL, &jerr), NATS_OK);
        assert_int_equal(natsMsgHeader_Get(real, "Tokend-Hash", &hash), NATS_OK);
        snprintf(bad, sizeof bad, "%s", hash);
        bad[0] = bad[0] == '0' ? '1' : '0';
        snprintf(seq, sizeof seq, "%.0f", applied + 1);
        assert_int_equal(natsMsg_Create(&m, "tokend.log", NULL, natsMsg_GetData(real),
                                        natsMsg_GetDataLength(real)),
                         NATS_OK);
        natsMsg_Destroy(real);
        assert_int_equal(js_DeleteMsg(js, "tokend", sseq, NULL, &jerr), NATS_OK);
    } else {
        /* the next message skips a seq */
        natsMsg *last = NULL;
        assert_int_equal(raw_server_stop(&p), 0);
        assert_int_equal(js_GetLastMsg(&last, js, "tokend", "tokend.log", NULL, &jerr), NATS_OK);
        assert_int_equal(natsMsgHeader_Get(last, "Tokend-Hash", &hash), NATS_OK);
        snprintf(bad, sizeof bad, "%s", hash);
        snprintf(seq, sizeof seq, "%.0f", applied + 2);
        assert_int_equal(natsMsg_Create(&m, "tokend.log", NULL, natsMsg_GetData(last),
                                        natsMsg_GetDataLength(last)),
                         NATS_OK);
        natsMsg_Destroy(last);
    }
    assert_int_equal(natsMsgHeader_Set(m, "Tokend-Seq", seq), NATS_OK);
    assert_int_equal(natsMsgHeader_Set(m, "Tokend-Hash", bad), NATS_OK);
    jsPubOptions pop;
    jsPubAck *pa = NULL;
    jsPubOptions_Init(&pop);
    pop.MsgId = gap ? "forged-gap" : "forged-hash";
    assert_int_equal(js_PublishMsg(&pa, js, m, &pop, &jerr), NATS_OK);
    assert_false(pa->Duplicate);
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
    js_close(nc, js);
    if (!gap) {
        start_node(&r2, r.dir, "--follow", natst_url(&n), NULL, NULL, NULL);
    } else {
        r2 = r;
        memset(&r, 0, sizeof r);
    }

    int64_t t0 = tkt_now_ms();
    while (tkt_now_ms() - t0 < 5000 && !raw_server_log_has(&r2, "stopped applying"))
        tkt_sleep_ms(50);
    print_message("# %s: the replica %s after %lld ms\n", gap ? "a seq gap" : "a wrong hash",
                  raw_server_log_has(&r2, "stopped applying") ? "stopped applying"
                                                            : "did NOT stop applying",
                  (long long)(tkt_now_ms() - t0));
    print_log_line(&r2, "stopped applying", "replica log");
    if (!gap && !raw_server_log_has(&r2, "hash"))
        fail_msg("the replica refused the record with a wrong Tokend-Hash, but not for its "
                 "hash (its log line above names another reason)");
    assert_true(raw_server_log_has(&r2, "replica: stopped applying the primary's log"));
    assert_int_equal(metric(r2.http_port, "tokend_replica_stopped"), 1);
    assert_true(metric(r2.http_port, "tokend_replica_applied_seq") == applied);
    assert_true(wait_verdict(r2.port, t[0].secret, TK_V_UNAVAILABLE, LEASE_MS + 2000) >= 0);
    assert_int_equal(raw_server_stop(&r2), 0);
    assert_int_equal(check_dir(r2.dir, out, sizeof out), 0);
    assert_int_equal(check_last_seq(out), (unsigned long long)applied);
    /* a gap: nothing more was made; a wrong hash: the primary has one
     * event the replica refused */
    if (gap)
        assert_int_equal(compare_dirs(p.dir, r2.dir), 0);
    else
        assert_int_not_equal(compare_dirs(p.dir, r2.dir), 0);
    raw_server_free(&r2);
    raw_server_free(&r);
    raw_server_free(&p);
    natst_free(&n);
    raw_watchdog(0);
}

static void a_forged_record_stops_the_replica(void **state)
{
    (void)state;
    forged_run(false);
}

static void a_seq_gap_stops_the_replica(void **state)
{
    (void)state;
    forged_run(true);
}

/* ======== 8. writes_on_a_replica_are_refused ============================= */

static void writes_on_a_replica_are_refused(void **state)
{
    (void)state;
    natst n = {0};
    raw_server p, r;
    char alice[TK_SECRET_LEN + 1], rop[128], hdr[256], want[64];
    tkc_new_token nt;
    tok t;
    raw_watchdog(WATCHDOG(60));
    pair_up(&n, &p, &r, alice, NULL);
    tkc *c = conn(p.port, alice);
    create_one(c, &t);
    tkc_free(c);
    assert_true(wait_verdict(r.port, t.secret, TK_V_VALID, 15000) >= 0);
    hraw_resp hr;
    assert_int_equal(hraw_once(r.http_port, "GET", "/readyz", NULL, NULL, &hr), 0);
    assert_int_equal(hr.status, 200);
    hraw_free(&hr);
    snprintf(want, sizeof want, "127.0.0.1:%d", p.port);

    /* binary: a user's write and the replica's own operator's */
    c = conn(r.port, alice);
    assert_int_equal(tkc_token_create(c, "no", viewer, 1, 0, &nt), TK_EREADONLY);
    print_message("# refused on the replica: %s\n", tkc_errmsg(c));
    assert_non_null(strstr(tkc_errmsg(c), want));
    assert_int_equal(tkc_token_delete(c, t.id), TK_EREADONLY);
    tkc_token_page pg = TKC_TOKEN_PAGE_INIT;
    assert_int_equal(tkc_token_list(c, NULL, NULL, NULL, 0, &pg), 0);
    assert_int_equal(pg.n, 1);
    assert_string_equal(pg.tokens[0].client_id, t.id);
    tkc_token_page_free(&pg);
    tkc_free(c);
    assert_int_equal(raw_read_key(&r, "operator.key", rop, sizeof rop), 0);
    c = conn(r.port, rop);
    assert_int_equal(tkc_tenant_create(c, "other"), TK_EREADONLY);
    assert_int_equal(tkc_tenant_set(c, "acme", false), TK_EREADONLY);
    tkc_account_page ap = TKC_PAGE_INIT;
    assert_int_equal(tkc_account_list(c, "acme", NULL, 0, &ap), 0);
    assert_int_equal(ap.n, 1);
    tkc_account_page_free(&ap);
    tkc_free(c);

    /* JSON API */
    snprintf(hdr, sizeof hdr, "Authorization: Bearer %s", alice);
    const char *uh[] = {hdr, "Content-Type: application/json", NULL};
    japi_refused(r.http_port, uh, "POST", "/v1/tokens", "{\"roles\":[\"viewer\"]}", 421,
                 "read_only");
    json_t *j = NULL;
    assert_int_equal(japi_call(r.http_port, uh, "GET", "/v1/tokens", NULL, &j, NULL), 200);
    json_decref(j);
    char ohdr[256];
    snprintf(ohdr, sizeof ohdr, "Authorization: Bearer %s", rop);
    const char *oh[] = {ohdr, "Content-Type: application/json", NULL};
    japi_refused(r.http_port, oh, "POST", "/v1/tenants", "{\"tenant\":\"other\"}", 421,
                 "read_only");
    hraw_resp keep;
    japi_call(r.http_port, oh, "POST", "/v1/tenants", "{\"tenant\":\"other\"}", NULL, &keep);
    assert_non_null(strstr(keep.body, want));
    hraw_free(&keep);

    /* the primary goes: unavailable after the lease, on both protocols */
    assert_int_equal(raw_server_stop(&p), 0);
    assert_true(wait_verdict(r.port, t.secret, TK_V_UNAVAILABLE, LEASE_MS + 2000) >= 0);
    assert_int_equal(hraw_once(r.http_port, "GET", "/readyz", NULL, NULL, &hr), 0);
    assert_int_equal(hr.status, 503);
    assert_non_null(strstr(hr.body, "unavailable"));
    hraw_free(&hr);
    char vh[256], reason[64];
    snprintf(vh, sizeof vh, "Authorization: Bearer %s", t.secret);
    const char *vhs[] = {vh, NULL};
    assert_int_equal(hraw_once(r.verify_port, "GET", "/v1/verify", vhs, NULL, &hr), 0);
    assert_int_equal(hr.status, 503);
    assert_true(hraw_header(&hr, "X-Tokend-Reason", reason, sizeof reason));
    assert_string_equal(reason, "unavailable");
    hraw_free(&hr);
    raw_server_free(&r);
    raw_server_free(&p);
    natst_free(&n);
    raw_watchdog(0);
}

/* ======== mixed workload: the replica's state compares equal ============= */

static void mixed_workload_compares_equal(void **state)
{
    (void)state;
    natst n = {0};
    raw_server p, r;
    char alice[TK_SECRET_LEN + 1], op[128];
    tok t[40];
    static const char *const perms[] = {"orders:read", "orders:write"};
    raw_watchdog(WATCHDOG(60));
    pair_up(&n, &p, &r, alice, NULL);
    assert_int_equal(raw_read_key(&p, "operator.key", op, sizeof op), 0);
    tkc *u = conn(p.port, alice), *o = conn(p.port, op);
    for (int i = 0; i < 40; i++) {
        create_one(u, &t[i]);
        if (i % 4 == 3)
            assert_int_equal(tkc_token_delete(u, t[i - 1].id), 0);
    }
    assert_int_equal(tkc_perm_put(o, "acme", "orders:write", "write"), 0);
    assert_int_equal(tkc_role_put(o, "acme", "viewer", "Viewer", 5, perms, 2), 0);
    assert_int_equal(tkc_tenant_create(o, "beta"), 0);
    assert_int_equal(tkc_account_create(o, "beta", "b1"), 0);
    assert_int_equal(tkc_tenant_set(o, "acme", false), 0);
    tok last;
    assert_int_equal(tkc_tenant_set(o, "acme", true), 0);
    create_one(u, &last);
    assert_int_equal(tkc_tenant_set(o, "acme", false), 0);
    assert_int_equal(tkc_tenant_delete(o, "beta"), 0);
    assert_true(wait_converged(&p, &r, 10000));
    tk_verdict vp = verdict_on(p.port, last.secret), vr = verdict_on(r.port, last.secret);
    tk_verdict dp = verdict_on(p.port, t[2].secret), dr = verdict_on(r.port, t[2].secret);
    tk_verdict ep = verdict_on(p.port, t[0].secret), er = verdict_on(r.port, t[0].secret);
    print_message("# verdicts primary/replica: the last token %d/%d, a deleted one %d/%d, an "
                  "early one %d/%d; applied seq %.0f, published %.0f\n",
                  vp, vr, dp, dr, ep, er, metric(r.http_port, "tokend_replica_applied_seq"),
                  metric(p.http_port, "tokend_replication_published_seq"));
    tkc_free(u);
    tkc_free(o);
    assert_int_equal(raw_server_stop(&p), 0);
    assert_int_equal(raw_server_stop(&r), 0);
    int same = compare_dirs(p.dir, r.dir);
    assert_int_equal(vp, TK_V_DISABLED);
    assert_int_equal(vr, vp);
    assert_int_equal(dr, dp);
    assert_int_equal(er, ep);
    assert_int_equal(same, 0);
    raw_server_free(&r);
    raw_server_free(&p);
    natst_free(&n);
    raw_watchdog(0);
}

/* ---- the messages, without NATS (net/repl.h) ----------------------------- */

/* A lease request and reply read back as written; a wrong magic, a flag
 * byte other than 0 or 1, a control byte in a name, a request without a
 * name, a name past REPL_NAME_MAX and a short message are refused; a
 * record's headers are read back, a malformed seq or hash refused. */
static void the_messages_round_trip_and_refuse_bad_input(void **state)
{
    (void)state;
    uint8_t b[REPL_LEASE_MAX], x[REPL_LEASE_MAX + 64];
    repl_lease_req q = {.applied = 77, .sent_ns = 1234567890123ull, .join = true}, q2;
    snprintf(q.name, sizeof q.name, "eu-1");
    size_t n = repl_lease_req_put(&q, b);
    assert_int_equal(repl_lease_req_get(b, n, &q2), 0);
    assert_int_equal(q2.applied, 77);
    assert_int_equal(q2.sent_ns, 1234567890123ull);
    assert_true(q2.join);
    assert_string_equal(q2.name, "eu-1");
    for (size_t cut = 0; cut <= n - strlen(q.name); cut++) /* the fixed fields, no name */
        assert_int_equal(repl_lease_req_get(b, cut, &q2), TK_EPROTO);
    memcpy(x, b, n);
    x[0] = 'X';
    assert_int_equal(repl_lease_req_get(x, n, &q2), TK_EPROTO);
    memcpy(x, b, n);
    x[20] = 2; /* the join flag */
    assert_int_equal(repl_lease_req_get(x, n, &q2), TK_EPROTO);
    memcpy(x, b, n);
    x[n - 1] = '\n';
    assert_int_equal(repl_lease_req_get(x, n, &q2), TK_EPROTO);
    memcpy(x, b, n);
    memset(x + n, 'a', REPL_NAME_MAX); /* a name of 4 + 64 bytes */
    assert_int_equal(repl_lease_req_get(x, n + REPL_NAME_MAX, &q2), TK_EPROTO);

    repl_lease_rep r = {.sent_ns = 5, .durable = 9, .catch_up = 8, .lease_ms = 2000,
                        .barrier = true, .granted = true}, r2;
    snprintf(r.addr, sizeof r.addr, "binary 10.0.0.1:7070");
    n = repl_lease_rep_put(&r, b);
    assert_int_equal(repl_lease_rep_get(b, n, &r2), 0);
    assert_true(r2.sent_ns == 5 && r2.durable == 9 && r2.catch_up == 8 && r2.lease_ms == 2000
                && r2.barrier && r2.granted);
    assert_string_equal(r2.addr, "binary 10.0.0.1:7070");
    assert_int_equal(repl_lease_rep_get(b, 33, &r2), TK_EPROTO);
    memcpy(x, b, n);
    x[33] = 7; /* the granted flag */
    assert_int_equal(repl_lease_rep_get(x, n, &r2), TK_EPROTO);
    /* A request is not a reply. */
    n = repl_lease_req_put(&q, b);
    assert_int_equal(repl_lease_rep_get(b, n, &r2) == 0 && r2.granted, false);

    natsMsg *m = NULL;
    uint8_t hash[TK_HASH_LEN], got[TK_HASH_LEN];
    uint64_t seq = 0;
    assert_int_equal(nats_Open(-1), NATS_OK); /* messages need the library (a connection opens it) */
    memset(hash, 0xab, sizeof hash);
    assert_int_equal(repl_record_msg(&m, "tokend.log", 42, hash, "ev", 2), NATS_OK);
    assert_int_equal(repl_record_of(m, &seq, got), 0);
    assert_int_equal(seq, 42);
    assert_memory_equal(got, hash, TK_HASH_LEN);
    assert_int_equal(natsMsgHeader_Set(m, "Tokend-Seq", "4x2"), NATS_OK);
    assert_int_equal(repl_record_of(m, &seq, got), TK_EPROTO);
    assert_int_equal(natsMsgHeader_Set(m, "Tokend-Seq", "0"), NATS_OK);
    assert_int_equal(repl_record_of(m, &seq, got), TK_EPROTO);
    assert_int_equal(natsMsgHeader_Set(m, "Tokend-Seq", "42"), NATS_OK);
    assert_int_equal(natsMsgHeader_Set(m, "Tokend-Hash", "abcd"), NATS_OK);
    assert_int_equal(repl_record_of(m, &seq, got), TK_EPROTO);
    natsMsg_Destroy(m);
    assert_true(repl_stream_ok("tokend") && repl_stream_ok("eu-west_2"));
    assert_false(repl_stream_ok("") || repl_stream_ok("a.b") || repl_stream_ok("a b")
                 || repl_stream_ok("a*") || repl_stream_ok("012345678901234567890123456789012"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_messages_round_trip_and_refuse_bad_input),
        cmocka_unit_test(two_replicas_see_every_change),
        cmocka_unit_test(barrier_no_replica_answers_a_deleted_token),
        cmocka_unit_test(control_without_barrier_reports_late_revocations),
        cmocka_unit_test(replica_killed_catches_up),
        cmocka_unit_test(empty_replica_bootstraps_from_a_snapshot),
        cmocka_unit_test(primary_killed_republishes_without_duplicates),
        cmocka_unit_test(nats_cluster_node_loss),
        cmocka_unit_test(writes_go_on_while_nats_is_away),
        cmocka_unit_test(a_forged_record_stops_the_replica),
        cmocka_unit_test(a_seq_gap_stops_the_replica),
        cmocka_unit_test(writes_on_a_replica_are_refused),
        cmocka_unit_test(mixed_workload_compares_equal),
    };
    if (getenv("REPL_ONLY")) /* one case by name (a glob), when debugging */
        cmocka_set_test_filter(getenv("REPL_ONLY"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
