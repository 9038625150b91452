/*
 * test_sockq.c - a loop turn's socket reads in one system call and its
 * sends in another (net/sockq.h), and the fallback to a read and a sendmsg
 * each.
 *
 * sq_run itself, both ways, on socket pairs: every byte arrives in order
 * across several chunks and is read back by receives in one submission, a
 * full socket answers -EAGAIN at once (never a wait) and so does an empty
 * one, a peer that has gone answers -EPIPE without SIGPIPE and a receive
 * its end (0), a closed descriptor -EBADF, more items than the ring holds
 * go in several submissions, and one alone goes by its own call. Then the
 * server: twenty connections whose requests arrive in one loop turn
 * (written while the server is stopped) are read by one submission and
 * answered by one more, and with --io-uring=false, or under a seccomp
 * filter that refuses io_uring_setup, by read and sendmsg (none counted).
 * Last, the server, concurrency and HTTP verify suites run again with
 * every server on the fallback path (TKT_IO_URING=0, tests/support/raw.h):
 * both paths pass them on every run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/secret.h"
#include "core/view.h"
#include "net/proto.h"
#include "net/sockq.h"
#include "tests/support/hraw.h"
#include "tests/support/raw.h"
#include "tests/support/suite.h"
#include "tests/support/tkt.h"

#define TEST_SECONDS 60
#define SUITE_SECONDS 420 /* a whole suite run again (the sanitizers' time) */
#define PAIRS 40

static bool ring_here(void)
{
    sq *q;
    sq_new(true, &q);
    bool yes = sq_uring(q);
    sq_free(q);
    return yes;
}

static void pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

/* Reads exactly n bytes from fd (non-blocking, bounded wait) into out. */
static void read_all(int fd, uint8_t *out, size_t n)
{
    size_t got = 0;
    int64_t end = tkt_now_ms() + 5000;
    while (got < n && tkt_now_ms() < end) {
        ssize_t k = read(fd, out + got, n - got);
        if (k > 0)
            got += (size_t)k;
        else
            tkt_sleep_ms(1);
    }
    assert_int_equal(got, n);
}

/* PAIRS sends of three chunks each, with contents of their own, in one
 * run: each arrives whole and in order, and res is its length; then PAIRS
 * receives in one run read them back; then one more receive on each finds
 * nothing (-EAGAIN, at once). */
static void sends_both_ways(bool uring)
{
    sq *q;
    sq_new(uring, &q);
    if (uring && !sq_uring(q))
        fail_msg("this kernel gives no io_uring ring: %s", sq_describe(q));
    assert_int_equal(sq_uring(q), uring);
    int sv[PAIRS][2];
    uint8_t data[PAIRS][3][97], got[PAIRS][3 * 97 + 10];
    struct iovec iov[PAIRS][3], in[PAIRS];
    sq_item it[PAIRS];
    size_t len[PAIRS];
    for (int i = 0; i < PAIRS; i++) {
        pair(sv[i]);
        for (int c = 0; c < 3; c++) {
            for (size_t b = 0; b < sizeof data[i][c]; b++)
                data[i][c][b] = (uint8_t)(i * 7 + c * 31 + b);
            iov[i][c] = (struct iovec){data[i][c], (size_t)(13 + i + c * 20)};
        }
        len[i] = iov[i][0].iov_len + iov[i][1].iov_len + iov[i][2].iov_len;
        it[i] = (sq_item){SQ_SEND, sv[i][0], iov[i], 3, -12345};
    }
    assert_int_equal(sq_run(q, it, PAIRS), uring ? 1 : 0); /* io_uring_enter calls */
    for (int i = 0; i < PAIRS; i++) {
        assert_int_equal(it[i].res, (ssize_t)len[i]);
        in[i] = (struct iovec){got[i], sizeof got[i]};
        it[i] = (sq_item){SQ_RECV, sv[i][1], &in[i], 1, -12345};
    }
    assert_int_equal(sq_run(q, it, PAIRS), uring ? 1 : 0);
    for (int i = 0; i < PAIRS; i++) {
        assert_int_equal(it[i].res, (ssize_t)len[i]); /* a Unix stream pair: all at once */
        size_t off = 0;
        for (int c = 0; c < 3; c++) {
            assert_memory_equal(got[i] + off, data[i][c], iov[i][c].iov_len);
            off += iov[i][c].iov_len;
        }
        it[i].res = 0;
    }
    int64_t t0 = tkt_now_ms();
    sq_run(q, it, PAIRS);
    for (int i = 0; i < PAIRS; i++)
        assert_int_equal(it[i].res, -EAGAIN);
    assert_true(tkt_now_ms() - t0 < 1000);
    for (int i = 0; i < PAIRS; i++) {
        close(sv[i][0]);
        close(sv[i][1]);
    }
    sq_free(q);
}

static void ring_sends_every_byte_in_order(void **state)
{
    (void)state;
    sends_both_ways(true);
}

static void plain_sends_every_byte_in_order(void **state)
{
    (void)state;
    sends_both_ways(false);
}

/* A full socket, a gone peer and a closed descriptor, in one call: each
 * gets its own answer, at once; a receive where the peer has gone, its
 * end. */
static void errors_both_ways(bool uring)
{
    sq *q;
    sq_new(uring, &q);
    assert_int_equal(sq_uring(q), uring);
    int full[2], gone[2], ok[2];
    pair(full);
    pair(gone);
    pair(ok);
    static uint8_t big[1 << 16];
    memset(big, 'x', sizeof big);
    while (write(full[0], big, sizeof big) > 0) /* until the socket takes nothing */
        ;
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    close(gone[1]);
    int dead[2];
    pair(dead);
    close(dead[0]);
    close(dead[1]);
    struct iovec v = {big, 100}, r = {big + 100, 100};
    sq_item it[5] = {{SQ_SEND, full[0], &v, 1, 0}, {SQ_SEND, gone[0], &v, 1, 0},
                     {SQ_SEND, dead[0], &v, 1, 0}, {SQ_SEND, ok[0], &v, 1, 0},
                     {SQ_RECV, gone[0], &r, 1, -1}};
    void (*old)(int) = signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would end the suite */
    int64_t t0 = tkt_now_ms();
    assert_int_equal(sq_run(q, it, 5), uring ? 1 : 0);
    int64_t took = tkt_now_ms() - t0;
    signal(SIGPIPE, old);
    print_message("# %s: full %zd, gone %zd, closed %zd, ok %zd, receive from gone %zd in "
                  "%lld ms\n",
                  uring ? "io_uring" : "sendmsg", it[0].res, it[1].res, it[2].res, it[3].res,
                  it[4].res, (long long)took);
    assert_int_equal(it[0].res, -EAGAIN);
    assert_int_equal(it[1].res, -EPIPE);
    assert_int_equal(it[2].res, -EBADF);
    assert_int_equal(it[3].res, 100);
    assert_int_equal(it[4].res, 0); /* the peer's end */
    assert_true(took < 1000);
    close(full[0]);
    close(full[1]);
    close(gone[0]);
    close(ok[0]);
    close(ok[1]);
    sq_free(q);
}

static void ring_answers_each_error(void **state)
{
    (void)state;
    if (!ring_here())
        fail_msg("this kernel gives no io_uring ring");
    errors_both_ways(true);
}

static void sendmsg_answers_each_error(void **state)
{
    (void)state;
    errors_both_ways(false);
}

/* More sends than the ring has entries: several submissions, every one
 * answered, and the ring still works after; one alone goes by sendmsg. (Spread over a few sockets: a
 * Unix socket's buffer holds a few hundred one-byte sends.) */
static void more_sends_than_the_ring(void **state)
{
    (void)state;
    enum { N = 2 * SQ_RING + 37, SOCKS = 8 };
    sq *q;
    sq_new(true, &q);
    assert_true(sq_uring(q));
    int sv[SOCKS][2];
    for (int k = 0; k < SOCKS; k++)
        pair(sv[k]);
    uint8_t b[N];
    struct iovec v[N];
    sq_item it[N];
    for (int i = 0; i < N; i++) {
        b[i] = (uint8_t)i;
        v[i] = (struct iovec){&b[i], 1};
        it[i] = (sq_item){SQ_SEND, sv[i % SOCKS][0], &v[i], 1, 0};
    }
    for (int round = 0; round < 2; round++) {
        assert_int_equal(sq_run(q, it, N), 3); /* 256 + 256 + 37 */
        for (int i = 0; i < N; i++)
            assert_int_equal(it[i].res, 1);
        /* Each socket's bytes come in submission order. */
        for (int k = 0; k < SOCKS; k++) {
            uint8_t got[N / SOCKS + 1], want[N / SOCKS + 1];
            size_t n = 0;
            for (int i = k; i < N; i += SOCKS)
                want[n++] = b[i];
            read_all(sv[k][1], got, n);
            assert_memory_equal(got, want, n);
        }
    }
    /* One send alone goes by sendmsg: no submission. */
    assert_int_equal(sq_run(q, it, 1), 0);
    assert_int_equal(it[0].res, 1);
    uint8_t one;
    read_all(sv[0][1], &one, 1);
    assert_int_equal(one, b[0]);
    assert_true(sq_uring(q));
    for (int k = 0; k < SOCKS; k++) {
        close(sv[k][0]);
        close(sv[k][1]);
    }
    sq_free(q);
}

/* ---- the server ----------------------------------------------------------- */

/* The value of the metric line that starts with name (then a space). */
static long long metric(int http_port, const char *name)
{
    hraw_resp h;
    assert_int_equal(hraw_once(http_port, "GET", "/metrics", NULL, NULL, &h), 0);
    assert_int_equal(h.status, 200);
    char want[128];
    snprintf(want, sizeof want, "\n%s ", name);
    const char *p = strstr(h.body, want);
    if (!p)
        fail_msg("no %s in /metrics", name);
    long long v = strtoll(p + strlen(want), NULL, 10);
    hraw_free(&h);
    return v;
}

enum { CONNS = 20 };

typedef struct io_counts {
    long long recv_subs, recvs, send_subs, sends;
} io_counts;

static void io_read(int http_port, io_counts *k)
{
    k->recv_subs = metric(http_port, "tokend_io_submissions_total{op=\"recv\"}");
    k->recvs = metric(http_port, "tokend_io_submitted_total{op=\"recv\"}");
    k->send_subs = metric(http_port, "tokend_io_submissions_total{op=\"send\"}");
    k->sends = metric(http_port, "tokend_io_submitted_total{op=\"send\"}");
}

/* Writes f[i * step] to fd[i], for each of the CONNS connections, while the
 * server is stopped (SIGSTOP), so that all arrive in one loop turn. */
static void write_in_one_turn(const raw_server *s, const int *fd, const mpw *f, int step)
{
    assert_int_equal(kill(s->pid, SIGSTOP), 0);
    for (int i = 0; i < CONNS; i++)
        assert_int_equal(raw_write(fd[i], f[i * step].buf.data, f[i * step].buf.size), 0);
    tkt_sleep_ms(50); /* every frame in its socket */
    assert_int_equal(kill(s->pid, SIGCONT), 0);
}

/* CONNS connections each get one PING in while the server is stopped
 * (SIGSTOP), so all arrive in one loop turn; every reply comes back, once. The
 * submissions and their reads and sends /metrics counted for it. */
static void one_turn(raw_server *s, io_counts *d)
{
    int fd[CONNS];
    raw_reply r;
    for (int i = 0; i < CONNS; i++) {
        fd[i] = raw_connect(s->port);
        assert_true(fd[i] >= 0);
        assert_int_equal(raw_call(fd[i], OP_PING, 1, NULL, &r), 0); /* accepted, read */
        raw_reply_free(&r);
    }
    io_counts k0, k1;
    io_read(s->http_port, &k0);
    mpw f;
    mpw_init(&f);
    raw_frame(&f, OP_PING, 0, 2, NULL, 0);
    write_in_one_turn(s, fd, &f, 0);
    for (int i = 0; i < CONNS; i++) {
        assert_int_equal(raw_recv(fd[i], &r, 5000), 0);
        assert_int_equal(r.h.id, 2);
        assert_int_equal(r.h.code, 0); /* the status */
        raw_reply_free(&r);
    }
    mpw_free(&f);
    tkt_sleep_ms(20);
    for (int i = 0; i < CONNS; i++) { /* each reply once: no byte more */
        uint8_t b;
        assert_int_equal(recv(fd[i], &b, 1, MSG_DONTWAIT), -1);
        assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    }
    io_read(s->http_port, &k1); /* before the closes: each is one more read (its end) */
    for (int i = 0; i < CONNS; i++)
        close(fd[i]);
    *d = (io_counts){k1.recv_subs - k0.recv_subs, k1.recvs - k0.recvs,
                     k1.send_subs - k0.send_subs, k1.sends - k0.sends};
}

/* Starts s on an io_uring ring (the kernel must give one), with system
 * call refuse (0: none) refused to it from the start (raw.h). */
static void start_on_ring(raw_server *s, long refuse)
{
    if (!ring_here())
        fail_msg("this kernel gives no io_uring ring");
    raw_child_refuse_syscall(refuse);
    int rc = raw_server_start(s, NULL, NULL);
    raw_child_refuse_syscall(0);
    assert_int_equal(rc, 0);
    assert_true(raw_server_log_has(s, "socket reads and sends by io_uring"));
}

static void turn_is_one_submission_each(void **state)
{
    (void)state;
    raw_server s;
    start_on_ring(&s, 0);
    io_counts d;
    one_turn(&s, &d);
    print_message("# %d connections in one turn: %lld read submission(s) of %lld reads, %lld "
                  "send submission(s) of %lld sends\n",
                  CONNS, d.recv_subs, d.recvs, d.send_subs, d.sends);
    /* One each, unless the kernel split the readiness over two turns. */
    assert_int_equal(d.recvs, CONNS);
    assert_true(d.recv_subs >= 1 && d.recv_subs <= 2);
    assert_int_equal(d.sends, CONNS);
    assert_true(d.send_subs >= 1 && d.send_subs <= 2);
    assert_int_equal(raw_server_stop(&s), 0);
    raw_server_free(&s);
}

/* CONNS connections each send one VERIFY (a secret of an ID never issued:
 * well formed, answered unknown, or with a bad checksum, answered
 * malformed) while the server is stopped: the turn starts their lookups
 * together, in batches of up to VIEW_BATCH (tokend_verify_prefetch*),
 * before it answers each, and every answer is its own. */
static void turn_starts_the_lookups_together(void **state)
{
    (void)state;
    raw_server s;
    start_on_ring(&s, 0);
    int fd[CONNS];
    char secret[CONNS][TK_SECRET_LEN + 1];
    mpw f[CONNS];
    raw_reply r;
    for (int i = 0; i < CONNS; i++) {
        tk_id id;
        uint8_t hash[TK_HASH_LEN];
        secret_new_id(&id);
        secret_generate(TK_KIND_TOKEN, &id, secret[i], hash);
        if (i % 2) /* the ID reads, the checksum fails: malformed, after the lookup began */
            secret[i][TK_SECRET_LEN - 1] = secret[i][TK_SECRET_LEN - 1] == 'a' ? 'b' : 'a';
        mpw body;
        mpw_init(&body);
        raw_map(&body, "secret:s", secret[i]);
        mpw_init(&f[i]);
        raw_frame(&f[i], OP_VERIFY, 0, (uint32_t)i + 10, body.buf.data, body.buf.size);
        mpw_free(&body);
        fd[i] = raw_connect(s.port);
        assert_true(fd[i] >= 0);
        assert_int_equal(raw_call(fd[i], OP_PING, 1, NULL, &r), 0); /* accepted, read */
        raw_reply_free(&r);
    }
    long long p0 = metric(s.http_port, "tokend_verify_prefetches_total");
    long long n0 = metric(s.http_port, "tokend_verify_prefetched_total");
    long long u0 = metric(s.http_port,
                          "tokend_verifications_total{listener=\"binary\",result=\"unknown\"}");
    write_in_one_turn(&s, fd, f, 1);
    for (int i = 0; i < CONNS; i++) {
        assert_int_equal(raw_recv(fd[i], &r, 5000), 0);
        assert_int_equal(r.h.id, (uint32_t)i + 10);
        assert_int_equal(r.h.code, 0);
        char reason[32];
        bool valid = true;
        assert_true(raw_get_bool(&r, "valid", &valid));
        assert_false(valid);
        assert_true(raw_get_str(&r, "reason", reason, sizeof reason));
        assert_string_equal(reason, i % 2 ? "malformed" : "unknown"); /* its own answer */
        raw_reply_free(&r);
        mpw_free(&f[i]);
    }
    long long starts = metric(s.http_port, "tokend_verify_prefetches_total") - p0;
    long long started = metric(s.http_port, "tokend_verify_prefetched_total") - n0;
    long long unknown = metric(s.http_port,
                               "tokend_verifications_total{listener=\"binary\",result=\"unknown\"}")
                        - u0;
    print_message("# %d VERIFY in one turn: %lld lookups started together in %lld batch(es)\n",
                  CONNS, started, starts);
    assert_int_equal(unknown, CONNS / 2);
    /* ceil(CONNS / VIEW_BATCH) batches, unless the kernel split the
     * readiness over two turns (then one more, and a lone one is skipped). */
    assert_true(starts >= (CONNS + VIEW_BATCH - 1) / VIEW_BATCH
                && starts <= (CONNS + VIEW_BATCH - 1) / VIEW_BATCH + 1);
    assert_true(started >= CONNS - 1 && started <= CONNS);
    for (int i = 0; i < CONNS; i++)
        close(fd[i]);
    assert_int_equal(raw_server_stop(&s), 0);
    raw_server_free(&s);
}

static void turned_off_is_read_and_sendmsg(void **state)
{
    (void)state;
    raw_server s;
    static const char *const off[] = {"--io-uring=false", NULL};
    assert_int_equal(raw_server_start(&s, NULL, off), 0);
    assert_true(raw_server_log_has(&s, "socket reads and sends by read and sendmsg (io_uring "
                                       "turned off)"));
    io_counts d;
    one_turn(&s, &d);
    assert_true(!d.recv_subs && !d.recvs && !d.send_subs && !d.sends);
    assert_int_equal(raw_server_stop(&s), 0);
    raw_server_free(&s);
}

/* A kernel (or sandbox) that refuses io_uring_setup: the server says so,
 * serves, and reads and sends with read and sendmsg. */
static void refused_ring_is_read_and_sendmsg(void **state)
{
    (void)state;
    raw_server s;
    raw_child_refuse_syscall(__NR_io_uring_setup);
    int rc = raw_server_start(&s, NULL, NULL);
    raw_child_refuse_syscall(0);
    assert_int_equal(rc, 0);
    assert_true(raw_server_log_has(&s, "socket reads and sends by read and sendmsg "
                                       "(io_uring_queue_init: Operation not permitted)"));
    io_counts d;
    one_turn(&s, &d);
    assert_true(!d.recv_subs && !d.recvs && !d.send_subs && !d.sends);
    assert_int_equal(raw_server_stop(&s), 0);
    raw_server_free(&s);
}

/* A ring that fails after the start (here every io_uring_enter is refused:
 * the ring is set up, its first submission fails): that turn's reads and
 * sends go by read and sendmsg, and so does all later work. Every reply
 * comes back once, the log says so, and no submission is counted. */
static void failed_ring_falls_back_for_good(void **state)
{
    (void)state;
    raw_server s;
    start_on_ring(&s, __NR_io_uring_enter); /* set up, its first submission refused */
    for (int turn = 0; turn < 2; turn++) {
        io_counts d;
        one_turn(&s, &d); /* every reply, each once (its id checked) */
        assert_true(!d.recv_subs && !d.recvs && !d.send_subs && !d.sends);
    }
    assert_true(raw_server_log_has(&s, "socket reads and sends by read and sendmsg (io_uring "
                                       "failed: Operation not permitted) from now on"));
    assert_int_equal(raw_ping(s.port), 0);
    assert_int_equal(raw_server_stop(&s), 0);
    raw_server_free(&s);
}

/* ---- the suites again, on the fallback path ------------------------------ */

static const char *const fallback[] = {"TKT_IO_URING", "0", NULL};

static void server_suite_by_sendmsg(void **state)
{
    (void)state;
    st_suite_again("test_server", fallback, NULL, 40, SUITE_SECONDS, "with --io-uring=false");
}

static void concurrency_suite_by_sendmsg(void **state)
{
    (void)state;
    st_suite_again("test_concurrency", fallback, NULL, 1, SUITE_SECONDS, "with --io-uring=false");
}

static void verify_http_suite_by_sendmsg(void **state)
{
    (void)state;
    st_suite_again("test_verify_http", fallback, NULL, 16, SUITE_SECONDS,
                   "with --io-uring=false");
}

static int setup(void **state)
{
    (void)state;
    raw_watchdog(TEST_SECONDS);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(ring_sends_every_byte_in_order, setup),
        cmocka_unit_test_setup(plain_sends_every_byte_in_order, setup),
        cmocka_unit_test_setup(ring_answers_each_error, setup),
        cmocka_unit_test_setup(sendmsg_answers_each_error, setup),
        cmocka_unit_test_setup(more_sends_than_the_ring, setup),
        cmocka_unit_test_setup(turn_is_one_submission_each, setup),
        cmocka_unit_test_setup(turn_starts_the_lookups_together, setup),
        cmocka_unit_test_setup(turned_off_is_read_and_sendmsg, setup),
        cmocka_unit_test_setup(refused_ring_is_read_and_sendmsg, setup),
        cmocka_unit_test_setup(failed_ring_falls_back_for_good, setup),
        cmocka_unit_test(server_suite_by_sendmsg),
        cmocka_unit_test(concurrency_suite_by_sendmsg),
        cmocka_unit_test(verify_http_suite_by_sendmsg),
    };
    signal(SIGPIPE, SIG_IGN);
    if (getenv("TEST_FILTER"))
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
