/*
 * test_tls.c - TLS on both listeners (net/tls.c, and its use by
 * net/server.c, net/conn.c, net/http.c, net/client.c and tokenctl),
 * against the real bin/tokend.
 *
 * The certificates are made once per run with the openssl command
 * (tests/support/tlst.h): a CA, a server certificate for 127.0.0.1 (IP
 * SAN) and localhost, a second one with the same names for reloads, a
 * client certificate, and a rogue CA with a client certificate of its
 * own. Each test starts $BIN/tokend on free loopback ports with
 * --tls-cert/--tls-key (and --tls-client-ca for mTLS) and talks to it
 * through tlst's client, which is written on OpenSSL apart from net/tls.c
 * and hands the test a plain socket, so raw.h's frames and hraw.h's HTTP
 * work over it unchanged. A watchdog bounds every test; servers die with
 * the test process.
 *
 * The bad-input suites of the plain listeners are not copied: the last
 * three tests run test_server's bad_* tests, test_http's *bad* tests and
 * its gateway verification tests against the verify listener again, over
 * TLS (TKT_TLS, raw.h), and expect every one to pass.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "core/err.h"
#include "core/mp.h"
#include "net/client.h"
#include "net/proto.h"
#include "net/server.h"
#include "net/tls.h"
#include "tests/support/hraw.h"
#include "tests/support/raw.h"
#include "tests/support/suite.h"
#include "tests/support/tkt.h"
#include "tests/support/tlst.h"

#define TEST_SECONDS 90
#define SUITE_SECONDS 240 /* a suite run again over TLS */

static char *pki_dir; /* made once, for every test */
static tlst_pki P;

static const char *const VIEWER[] = {"viewer", NULL};
static const char *const READ[] = {"orders:read", NULL};

/* A test's server and what world() made in it. */
typedef struct ctx {
    raw_server s;
    char *tmp;          /* the test's own files (copies of certificates) */
    char op_key[128];
    char alice_key[128];
    char secret[128];   /* alice's token, viewer */
    char client_id[64];
} ctx;

static uint32_t next_id = 1;

/* ---- helpers ------------------------------------------------------------- */

static void copy_file(const char *from, const char *to, mode_t mode)
{
    size_t n;
    unsigned char *b = tkt_read_file(from, &n);
    assert_non_null(b);
    char part[PATH_MAX];
    snprintf(part, sizeof part, "%s.part", to);
    assert_int_equal(tkt_write_file(part, b, n), 0);
    assert_int_equal(chmod(part, mode), 0);
    assert_int_equal(rename(part, to), 0); /* whole, as a deployment swaps files */
    free(b);
}

/* Starts tokend with TLS on cert and key, then the NULL-terminated extra
 * arguments. */
static void start_with(ctx *c, const char *cert, const char *key, const char *const *extra)
{
    const char *args[16];
    int n = 0;
    args[n++] = "--tls-cert";
    args[n++] = cert;
    args[n++] = "--tls-key";
    args[n++] = key;
    for (; extra && *extra && n < 15; extra++)
        args[n++] = *extra;
    args[n] = NULL;
    assert_int_equal(raw_server_start(&c->s, NULL, args), 0);
    assert_true(c->s.http_port > 0);
    assert_true(raw_server_log_has(&c->s, "TLS on both listeners"));
}

static int tconn_with(int port, const char *cert, const char *key, tlst_info *info)
{
    tlst_opts o = {.ca = P.ca, .cert = cert, .key = key};
    return tlst_connect(port, &o, info);
}

/* A TLS connection to port trusting the test CA (asserted). */
static int tconn(int port)
{
    tlst_info info;
    int fd = tconn_with(port, NULL, NULL, &info);
    if (fd < 0)
        fail_msg("TLS connection to %d: %s", port, info.error);
    return fd;
}

static int callf(int fd, uint16_t op, raw_reply *r, const char *spec, ...)
{
    va_list ap;
    mpw w;
    raw_reply local;
    mpw_init(&w);
    va_start(ap, spec);
    raw_vmap(&w, spec, ap);
    va_end(ap);
    int st = raw_call(fd, op, next_id++, &w, r ? r : &local);
    mpw_free(&w);
    if (!r)
        raw_reply_free(&local);
    return st;
}

static void assert_ping(int fd)
{
    raw_reply r;
    int64_t v = 0;
    assert_int_equal(raw_call(fd, OP_PING, next_id++, NULL, &r), 0);
    assert_true(raw_get_int(&r, "version", &v));
    assert_int_equal(v, PROTO_VERSION);
    raw_reply_free(&r);
}

/* fd answers nothing to a PING and is closed (a refused handshake, seen
 * by a TLS 1.3 client at its first read, or a plain client on TLS). */
static void assert_refused(int fd)
{
    raw_reply r;
    mpw f;
    mpw_init(&f);
    raw_frame(&f, OP_PING, 0, 7, NULL, 0);
    (void)raw_write(fd, f.buf.data, f.buf.size); /* may already be closed */
    mpw_free(&f);
    assert_int_not_equal(raw_recv(fd, &r, 5000), 0);
    assert_true(raw_closed_within(fd, 5000));
}

/* Over TLS, as the operator: tenant acme (API tokens on), role viewer
 * {orders:read}, account globex, user alice (viewer, portal); then as
 * alice a token with the viewer role. */
static void world(ctx *c)
{
    raw_reply r;
    char actor[32];
    assert_int_equal(raw_read_key(&c->s, "operator.key", c->op_key, sizeof c->op_key), 0);
    int op = tconn(c->s.port);
    assert_int_equal(callf(op, OP_AUTH, &r, "key:s", c->op_key), 0);
    assert_true(raw_get_str(&r, "actor", actor, sizeof actor));
    assert_string_equal(actor, "operator");
    raw_reply_free(&r);
    assert_int_equal(callf(op, OP_TENANT_CREATE, NULL, "tenant:s", "acme"), 0);
    assert_int_equal(callf(op, OP_TENANT_SET, NULL, "tenant:s api_tokens:b", "acme", 1), 0);
    assert_int_equal(callf(op, OP_ROLE_PUT, NULL, "tenant:s key:s level:u permissions:a", "acme",
                           "viewer", (uint64_t)2, READ),
                     0);
    assert_int_equal(callf(op, OP_ACCOUNT_CREATE, NULL, "tenant:s account:s", "acme", "globex"), 0);
    assert_int_equal(callf(op, OP_USER_CREATE, &r, "tenant:s account:s user:s roles:a portal:b",
                           "acme", "globex", "alice", VIEWER, 1),
                     0);
    assert_true(raw_get_str(&r, "personal_key", c->alice_key, sizeof c->alice_key));
    raw_reply_free(&r);
    close(op);
    int al = tconn(c->s.port);
    assert_int_equal(callf(al, OP_AUTH, NULL, "key:s", c->alice_key), 0);
    assert_int_equal(callf(al, OP_TOKEN_CREATE, &r, "description:s roles:a", "ci", VIEWER), 0);
    assert_true(raw_get_str(&r, "secret", c->secret, sizeof c->secret));
    assert_true(raw_get_str(&r, "client_id", c->client_id, sizeof c->client_id));
    raw_reply_free(&r);
    close(al);
}

/* VERIFY of c's token on fd: valid, with its identity. */
static void assert_verifies(ctx *c, int fd)
{
    raw_reply r;
    bool valid = false;
    char s[128];
    assert_int_equal(callf(fd, OP_VERIFY, &r, "secret:s", c->secret), 0);
    assert_true(raw_get_bool(&r, "valid", &valid));
    assert_true(valid);
    assert_true(raw_get_str(&r, "client_id", s, sizeof s));
    assert_string_equal(s, c->client_id);
    assert_true(raw_get_str(&r, "tenant", s, sizeof s));
    assert_string_equal(s, "acme");
    raw_reply_free(&r);
}

/* GET /v1/verify over HTTPS with c's token: its status. */
static int https_verify(ctx *c, int fd)
{
    char auth[200];
    hraw_resp r;
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->secret);
    const char *h[] = {auth, NULL};
    if (hraw_call(fd, "GET", "/v1/verify", h, NULL, &r) != 0)
        return 0;
    int st = r.status;
    char v[64];
    if (st == 200) {
        assert_true(hraw_header(&r, "X-Tokend-Tenant", v, sizeof v));
        assert_string_equal(v, "acme");
        assert_true(hraw_header(&r, "X-Tokend-Client-Id", v, sizeof v));
        assert_string_equal(v, c->client_id);
    }
    hraw_free(&r);
    return st;
}

/* Both listeners still serve over TLS: a VERIFY and an HTTPS GET. */
static void alive(ctx *c)
{
    int fd = tconn(c->s.port);
    assert_verifies(c, fd);
    close(fd);
    fd = tconn(c->s.http_port);
    assert_int_equal(https_verify(c, fd), 200);
    close(fd);
}

/* Waits (at most 5 s) for the server's log to hold needle, n times. */
static bool log_count_within(const raw_server *s, const char *needle, int n)
{
    for (int i = 0; i < 500; i++) {
        size_t len;
        unsigned char *t = tkt_read_file(s->log, &len);
        int k = 0;
        for (unsigned char *p = t; t && (p = memmem(p, len - (size_t)(p - t), needle,
                                                     strlen(needle)));
             p++)
            k++;
        free(t);
        if (k >= n)
            return true;
        tkt_sleep_ms(10);
    }
    return false;
}

static const char *bin_dir(void)
{
    const char *b = getenv("BIN");
    return b && *b ? b : "bin";
}

/* ---- fixtures ------------------------------------------------------------ */

static int group_setup(void **state)
{
    (void)state;
    pki_dir = tkt_mkdtemp();
    return pki_dir && tlst_pki_make(pki_dir, &P) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    tlst_pki_free(&P);
    if (pki_dir)
        tkt_rmdir(pki_dir);
    free(pki_dir);
    return 0;
}

static int setup(void **state)
{
    ctx *c = calloc(1, sizeof *c);
    c->tmp = tkt_mkdtemp();
    raw_watchdog(TEST_SECONDS);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx *c = *state;
    raw_server_free(&c->s);
    tkt_rmdir(c->tmp);
    free(c->tmp);
    free(c);
    raw_watchdog(0);
    return 0;
}

/* ---- the listeners --------------------------------------------------------- */

/* A token made through the operator key and a user's key over TLS verifies
 * over the binary listener, and over HTTPS at /v1/verify; the server shows
 * the certificate it was given, and a client that offers only TLS 1.2 is
 * served with Mozilla's intermediate suites. */
static void verify_over_both_listeners(void **state)
{
    ctx *c = *state;
    start_with(c, P.server, P.server_key, NULL);
    world(c);
    tlst_info info;
    char want[65];
    assert_int_equal(tlst_file_fingerprint(P.server, want), 0);
    int fd = tconn_with(c->s.port, NULL, NULL, &info);
    assert_true(fd >= 0);
    assert_string_equal(info.fingerprint, want);
    assert_string_equal(info.version, "TLSv1.3");
    assert_ping(fd);
    for (int i = 0; i < 3; i++)
        assert_verifies(c, fd);
    close(fd);

    fd = tconn_with(c->s.http_port, NULL, NULL, &info);
    assert_true(fd >= 0);
    assert_string_equal(info.fingerprint, want);
    for (int i = 0; i < 3; i++) /* keep-alive */
        assert_int_equal(https_verify(c, fd), 200);
    close(fd);

    /* Over TLS the portal's links are https:// (no --portal-url here). */
    char op[200], want_url[64];
    snprintf(op, sizeof op, "Authorization: Bearer %s", c->op_key);
    const char *oh[] = {op, NULL};
    hraw_resp r;
    fd = tconn(c->s.http_port);
    assert_int_equal(hraw_call(fd, "POST", "/v1/portal/sessions", oh,
                               "{\"tenant\":\"acme\",\"account\":\"globex\",\"user\":\"alice\"}",
                               &r),
                     0);
    assert_int_equal(r.status, 201);
    snprintf(want_url, sizeof want_url, "\"url\":\"https://127.0.0.1/portal/");
    if (!strstr(r.body, want_url))
        fail_msg("no %s in %s", want_url, r.body);
    hraw_free(&r);
    close(fd);

    tlst_opts v12 = {.ca = P.ca, .max_version = TLS1_2_VERSION};
    fd = tlst_connect(c->s.port, &v12, &info);
    if (fd < 0)
        fail_msg("TLS 1.2: %s", info.error);
    assert_string_equal(info.version, "TLSv1.2");
    assert_verifies(c, fd);
    close(fd);
    assert_int_equal(raw_server_stop(&c->s), 0);
}

/* A plain client on either port is refused (the binary one logs why) and
 * the server goes on serving TLS. */
static void plain_client_refused(void **state)
{
    ctx *c = *state;
    start_with(c, P.server, P.server_key, NULL);
    world(c);
    int fd = raw_connect(c->s.port); /* plain: this suite does not set TKT_TLS */
    assert_true(fd >= 0);
    assert_refused(fd);
    close(fd);
    assert_true(log_count_within(&c->s, "TLS handshake failed: wrong version number", 1));

    fd = raw_connect(c->s.http_port);
    assert_true(fd >= 0);
    const char get[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(raw_write(fd, get, sizeof get - 1), 0);
    hraw_resp r;
    assert_int_not_equal(hraw_read(fd, &r, 5000), 0); /* no HTTP answer */
    close(fd);
    alive(c);
}

/* TLS 1.1 (and older) is refused by the server, which says so. */
static void old_versions_refused(void **state)
{
    ctx *c = *state;
    start_with(c, P.server, P.server_key, NULL);
    tlst_info info;
    tlst_opts v11 = {.ca = P.ca, .max_version = TLS1_1_VERSION};
    assert_int_equal(tlst_connect(c->s.port, &v11, &info), -1);
    assert_non_null(strstr(info.error, "handshake failed"));
    assert_true(log_count_within(&c->s, "unsupported protocol", 1));
    assert_int_equal(tlst_connect(c->s.http_port, &v11, &info), -1);
    int fd = tconn(c->s.port);
    assert_ping(fd);
    close(fd);
}

/* With --tls-client-ca: a client without a certificate, or with one from
 * another CA, is refused on both listeners; one with a certificate of the
 * CA is served. */
static void mtls_requires_client_certificate(void **state)
{
    ctx *c = *state;
    const char *const extra[] = {"--tls-client-ca", P.ca, NULL};
    start_with(c, P.server, P.server_key, extra);
    assert_true(raw_server_log_has(&c->s, "client certificates required"));
    int ports[2] = {c->s.port, c->s.http_port};
    for (int i = 0; i < 2; i++) {
        tlst_info info;
        /* TLS 1.3: the client's handshake ends before the server has
         * judged its certificate; the refusal comes at the first read. */
        int fd = tconn_with(ports[i], NULL, NULL, &info);
        if (fd >= 0) {
            assert_refused(fd);
            close(fd);
        }
        if (i == 0) { /* the binary listener says why (one line a second) */
            assert_true(log_count_within(&c->s, "peer did not return a certificate", 1));
            tkt_sleep_ms(1100);
        }
        fd = tconn_with(ports[i], P.rogue, P.rogue_key, &info);
        if (fd >= 0) {
            assert_refused(fd);
            close(fd);
        }
        if (i == 0)
            assert_true(log_count_within(&c->s, "certificate verify failed: unable to get "
                                                 "local issuer certificate", 1));
    }
    int fd = tconn_with(c->s.port, P.client, P.client_key, NULL);
    assert_true(fd >= 0);
    assert_ping(fd);
    close(fd);
    fd = tconn_with(c->s.http_port, P.client, P.client_key, NULL);
    assert_true(fd >= 0);
    hraw_resp r;
    assert_int_equal(hraw_call(fd, "GET", "/healthz", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    hraw_free(&r);
    close(fd);
}

/* SIGHUP reloads the certificate: a connection opened before keeps its
 * session and works on; a new one gets the new certificate. A reload that
 * fails (a broken certificate, a key left open to others) keeps the one in
 * use and says why. */
static void sighup_reload(void **state)
{
    ctx *c = *state;
    char *cert = tkt_path(c->tmp, "cert.pem"), *key = tkt_path(c->tmp, "key.pem");
    char f1[65], f2[65];
    tlst_info info;
    copy_file(P.server, cert, 0644);
    copy_file(P.server_key, key, 0600);
    assert_int_equal(tlst_file_fingerprint(P.server, f1), 0);
    assert_int_equal(tlst_file_fingerprint(P.server2, f2), 0);
    assert_string_not_equal(f1, f2);
    start_with(c, cert, key, NULL);
    world(c);
    int before = tconn_with(c->s.port, NULL, NULL, &info);
    assert_true(before >= 0);
    assert_string_equal(info.fingerprint, f1);
    int before_http = tconn_with(c->s.http_port, NULL, NULL, NULL);
    assert_true(before_http >= 0);
    assert_verifies(c, before);
    assert_int_equal(https_verify(c, before_http), 200);

    copy_file(P.server2, cert, 0644);
    copy_file(P.server2_key, key, 0600);
    assert_int_equal(kill(c->s.pid, SIGHUP), 0);
    assert_true(log_count_within(&c->s, "SIGHUP: TLS reloaded", 1));
    assert_verifies(c, before); /* the old session goes on */
    assert_int_equal(https_verify(c, before_http), 200);
    int after = tconn_with(c->s.port, NULL, NULL, &info);
    assert_true(after >= 0);
    assert_string_equal(info.fingerprint, f2);
    assert_verifies(c, after);
    int fd = tconn_with(c->s.http_port, NULL, NULL, &info);
    assert_true(fd >= 0);
    assert_string_equal(info.fingerprint, f2);
    assert_int_equal(https_verify(c, fd), 200);
    close(fd);

    /* A broken certificate: kept the one in use. */
    assert_int_equal(tkt_write_file(cert, "not a certificate\n", 18), 0);
    assert_int_equal(kill(c->s.pid, SIGHUP), 0);
    assert_true(log_count_within(&c->s, "SIGHUP: TLS reload failed", 1));
    assert_true(raw_server_log_has(&c->s, "cannot load the TLS certificate"));
    fd = tconn_with(c->s.port, NULL, NULL, &info);
    assert_true(fd >= 0);
    assert_string_equal(info.fingerprint, f2);
    assert_verifies(c, fd);
    close(fd);
    /* The key opened to others: refused too, and kept. */
    copy_file(P.server, cert, 0644);
    copy_file(P.server_key, key, 0644);
    assert_int_equal(kill(c->s.pid, SIGHUP), 0);
    assert_true(log_count_within(&c->s, "SIGHUP: TLS reload failed", 2));
    assert_true(raw_server_log_has(&c->s, "chmod 600"));
    fd = tconn_with(c->s.port, NULL, NULL, &info);
    assert_true(fd >= 0);
    assert_string_equal(info.fingerprint, f2);
    close(fd);
    assert_verifies(c, before);
    assert_verifies(c, after);
    close(before);
    close(before_http);
    close(after);
    assert_int_equal(raw_server_stop(&c->s), 0);
    free(cert);
    free(key);
}

/* The key file's mode is checked as ssh checks one: readable or writable
 * by its group or others, the server does not start and says why; so do
 * a missing file, a key of another certificate and half a pair. */
static void bad_files_refused(void **state)
{
    ctx *c = *state;
    char *key = tkt_path(c->tmp, "key.pem");
    static const struct {
        mode_t mode;
        const char *why;
    } modes[] = {{0644, "open to its group or others (mode 0644)"},
                 {0640, "open to its group or others (mode 0640)"},
                 {0604, "chmod 600"},
                 {0620, "chmod 600"}};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        copy_file(P.server_key, key, modes[i].mode);
        const char *args[] = {"--tls-cert", P.server, "--tls-key", key, NULL};
        assert_int_equal(raw_server_start(&c->s, NULL, args), -1);
        assert_int_equal(raw_server_wait(&c->s, 5000), -1); /* reaped by start */
        if (!raw_server_log_has(&c->s, modes[i].why))
            fail_msg("mode %04o: no \"%s\" in the log", (unsigned)modes[i].mode, modes[i].why);
        raw_server_free(&c->s);
    }
    copy_file(P.server_key, key, 0400); /* read-only for its owner: fine */
    const char *ok[] = {"--tls-cert", P.server, "--tls-key", key, NULL};
    assert_int_equal(raw_server_start(&c->s, NULL, ok), 0);
    raw_server_free(&c->s);
    static const struct {
        const char *cert, *key, *why;
    } bad[] = {
        {"/nonexistent/cert.pem", NULL, "cannot read the TLS certificate /nonexistent/cert.pem"},
        {NULL, "/nonexistent/key.pem", "cannot read the TLS key /nonexistent/key.pem"},
        {NULL, NULL, "does not match its certificate"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        copy_file(i == 2 ? P.client_key : P.server_key, key, 0600);
        const char *args[] = {"--tls-cert", bad[i].cert ? bad[i].cert : P.server, "--tls-key",
                              bad[i].key ? bad[i].key : key, NULL};
        assert_int_equal(raw_server_start(&c->s, NULL, args), -1);
        if (!raw_server_log_has(&c->s, bad[i].why))
            fail_msg("no \"%s\" in the log", bad[i].why);
        raw_server_free(&c->s);
    }
    const char *half[] = {"--tls-cert", P.server, NULL};
    assert_int_equal(raw_server_start(&c->s, NULL, half), -1);
    assert_true(raw_server_log_has(&c->s, "--tls-cert and --tls-key"));
    free(key);
}

/* ---- the clients ------------------------------------------------------------ */

/* tokenctl --tls with the CA: ping and verify; the system's store does not
 * know the test CA; a client certificate under mTLS; the environment. */
static void tokenctl_over_tls(void **state)
{
    ctx *c = *state;
    char ctl[PATH_MAX], addr[64], out[8192];
    snprintf(ctl, sizeof ctl, "%s/tokenctl", bin_dir());
    start_with(c, P.server, P.server_key, NULL);
    world(c);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", c->s.port);
    const char *ping[] = {ctl, "--addr", addr, "--tls", "--ca", P.ca, "ping", NULL};
    assert_int_equal(st_run(ping, NULL, out, sizeof out, 30), 0);
    assert_non_null(strstr(out, "protocol version 1"));
    const char *verify[] = {ctl, "--addr", addr, "--tls", "--ca", P.ca, "verify", c->secret, NULL};
    assert_int_equal(st_run(verify, NULL, out, sizeof out, 30), 0);
    assert_non_null(strstr(out, "valid: tenant acme"));
    const char *env[] = {"TOKEND_TLS", "1", "TOKEND_CA", P.ca, NULL};
    const char *verify_env[] = {ctl, "--addr", addr, "verify", c->secret, NULL};
    assert_int_equal(st_run(verify_env, env, out, sizeof out, 30), 0);
    const char *system_store[] = {ctl, "--addr", addr, "--tls", "ping", NULL};
    assert_int_equal(st_run(system_store, NULL, out, sizeof out, 30), 4);
    assert_non_null(strstr(out, "certificate verify failed"));
    const char *plain[] = {ctl, "--addr", addr, "ping", NULL};
    assert_int_equal(st_run(plain, NULL, out, sizeof out, 30), 4);
    const char *no_tls[] = {ctl, "--addr", addr, "--ca", P.ca, "ping", NULL};
    assert_int_equal(st_run(no_tls, NULL, out, sizeof out, 30), 2);
    assert_int_equal(raw_server_stop(&c->s), 0);
    raw_server_free(&c->s);

    const char *extra[] = {"--tls-client-ca", P.ca, NULL};
    start_with(c, P.server, P.server_key, extra);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", c->s.port);
    const char *mtls[] = {ctl, "--addr", addr, "--tls", "--ca", P.ca, "--cert", P.client,
                          "--cert-key", P.client_key, "ping", NULL};
    assert_int_equal(st_run(mtls, NULL, out, sizeof out, 30), 0);
    const char *no_cert[] = {ctl, "--addr", addr, "--tls", "--ca", P.ca, "ping", NULL};
    assert_int_equal(st_run(no_cert, NULL, out, sizeof out, 30), 4);
}

/* The client library: the certificate must name the host dialled (an IP
 * address, or a name), unless only the CA is pinned; a wrong CA, a client
 * certificate without its key, and a key others may read are refused
 * before connecting. */
static void client_library_checks(void **state)
{
    ctx *c = *state;
    char addr[64];
    start_with(c, P.server, P.server_key, NULL);
    tkc *k = tkc_new();
    tkc_set_timeout(k, 10000);
    tkc_tls t = {.ca = P.ca};
    assert_int_equal(tkc_set_tls(k, &t), 0);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", c->s.port);
    assert_int_equal(tkc_connect(k, addr), 0);
    assert_int_equal(tkc_ping(k, NULL), 0);
    for (int i = 0; i < 200; i++) /* a pipeline, replies read through OpenSSL */
        assert_int_equal(tkc_send(k, OP_PING, NULL, 0, NULL), 0);
    for (int i = 0; i < 200; i++) {
        uint16_t st = 1;
        assert_int_equal(tkc_recv(k, &st, NULL, NULL), 0);
        assert_int_equal(st, 0);
    }
    snprintf(addr, sizeof addr, "localhost:%d", c->s.port);
    assert_int_equal(tkc_connect(k, addr), 0);
    t.server_name = "tokens.example.com";
    assert_int_equal(tkc_set_tls(k, &t), 0);
    assert_int_equal(tkc_connect(k, addr), TK_EIO);
    assert_non_null(strstr(tkc_errmsg(k), "hostname mismatch"));
    t.ca_only = true;
    assert_int_equal(tkc_set_tls(k, &t), 0);
    assert_int_equal(tkc_connect(k, addr), 0);
    assert_int_equal(tkc_ping(k, NULL), 0);
    tkc_tls rogue = {.ca = P.rogue_ca};
    assert_int_equal(tkc_set_tls(k, &rogue), 0);
    assert_int_equal(tkc_connect(k, addr), TK_EIO);
    assert_non_null(strstr(tkc_errmsg(k), "certificate verify failed"));
    tkc_tls half = {.ca = P.ca, .cert = P.client};
    assert_int_equal(tkc_set_tls(k, &half), TK_EINVAL);
    char *key = tkt_path(c->tmp, "client.key");
    copy_file(P.client_key, key, 0644);
    tkc_tls open_key = {.ca = P.ca, .cert = P.client, .key = key};
    assert_int_equal(tkc_set_tls(k, &open_key), TK_EINVAL);
    assert_non_null(strstr(tkc_errmsg(k), "chmod 600"));
    free(key);
    tkc_free(k);
}

/* ---- memory ---------------------------------------------------------------- */

/* What one server connection's TLS state costs (net/tls.h, TLS_CONN_BYTES,
 * and docs/server.md, "The memory bound"): 200 connections over
 * socketpairs, their clients in a child process so that the heap measured
 * (mallinfo2) is the server side's alone: in the middle of the handshake
 * (the server's flight sent, the client's awaited), idle after a request
 * (OpenSSL gives its buffers back), then busy, each one holding a record
 * half taken and a write its peer does not read. */
static void tls_memory_per_connection(void **state)
{
    (void)state;
    enum { N = 200 };
    tls *stls, *ctls;
    tk_why why;
    tls_server_opts so = {.cert = P.server, .key = P.server_key};
    tls_client_opts co = {.ca = P.ca};
    assert_int_equal(tls_server_new(&so, &stls, &why), 0);
    assert_int_equal(tls_client_new(&co, &ctls, &why), 0);
    int sv[N][2], go[2];
    for (int i = 0; i < N; i++)
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]), 0);
    assert_int_equal(pipe(go), 0);
    pid_t pid = fork();
    if (pid == 0) { /* the clients: every ClientHello; on "g" every handshake's end
                     * and a request; on "g" 16 KiB each; then wait for the end */
        static char big[16384];
        static SSL *cs[N];
        char b;
        bool ww;
        close(go[1]);
        for (int i = 0; i < N; i++) {
            close(sv[i][0]);
            fcntl(sv[i][1], F_SETFL, fcntl(sv[i][1], F_GETFL) | O_NONBLOCK);
            if (tls_conn_new(ctls, sv[i][1], NULL, &cs[i]) || tls_handshake(cs[i], &ww, &why) == 0
                || errno != EAGAIN)
                _exit(2);
        }
        if (read(go[0], &b, 1) != 1)
            _exit(3);
        for (int i = 0; i < N; i++) {
            fcntl(sv[i][1], F_SETFL, fcntl(sv[i][1], F_GETFL) & ~O_NONBLOCK);
            if (tls_handshake(cs[i], &ww, &why) || tls_write(cs[i], "ping", 4, NULL) != 4)
                _exit(4);
        }
        if (read(go[0], &b, 1) != 1)
            _exit(5);
        for (int i = 0; i < N; i++)
            if (tls_write(cs[i], big, sizeof big, NULL) != (ssize_t)sizeof big)
                _exit(6);
        if (read(go[0], &b, 1) < 0) /* EOF: the parent is done */
            _exit(7);
        _exit(0);
    }
    raw_track(pid, true);
    close(go[0]);
    for (int i = 0; i < N; i++) {
        close(sv[i][1]);
        fcntl(sv[i][0], F_SETFL, fcntl(sv[i][0], F_GETFL) | O_NONBLOCK);
    }
    struct mallinfo2 m0 = mallinfo2();
    SSL *s[N];
    char b[8];
    bool ww;
    ssize_t n;
    for (int i = 0; i < N; i++) { /* the ClientHello taken, the server's flight sent */
        assert_int_equal(tls_conn_new(stls, sv[i][0], NULL, &s[i]), 0);
        int64_t end = tkt_now_ms() + 10000;
        while ((n = tls_read(s[i], b, 4, &ww, &why)) < 0 && errno == EAGAIN && SSL_in_before(s[i])
               && tkt_now_ms() < end) {
            struct pollfd p = {sv[i][0], POLLIN, 0};
            poll(&p, 1, 100);
        }
        assert_int_equal(n, -1);
        assert_int_equal(errno, EAGAIN);
        assert_false(SSL_in_before(s[i]));
    }
    struct mallinfo2 mh = mallinfo2();
    assert_int_equal(write(go[1], "g", 1), 1);
    for (int i = 0; i < N; i++) { /* the handshake's end and "ping" */
        int64_t end = tkt_now_ms() + 10000;
        while ((n = tls_read(s[i], b, 4, &ww, &why)) < 0 && errno == EAGAIN && tkt_now_ms() < end) {
            struct pollfd p = {sv[i][0], ww ? POLLOUT : POLLIN, 0};
            poll(&p, 1, 100);
        }
        assert_int_equal(n, 4);
    }
    struct mallinfo2 m1 = mallinfo2();
    assert_int_equal(write(go[1], "g", 1), 1);
    for (int i = 0; i < N; i++) { /* busy: a 16 KiB record, one byte taken */
        int64_t end = tkt_now_ms() + 10000;
        while ((n = tls_read(s[i], b, 1, &ww, &why)) < 0 && errno == EAGAIN && tkt_now_ms() < end) {
            struct pollfd p = {sv[i][0], POLLIN, 0};
            poll(&p, 1, 100);
        }
        assert_int_equal(n, 1);
        assert_true(tls_pending(s[i]));
        static char chunk[16384];
        while (tls_write(s[i], chunk, sizeof chunk, NULL) > 0) /* until the peer's buffer is full */
            ;
        assert_int_equal(errno, EAGAIN);
    }
    struct mallinfo2 m2 = mallinfo2();
    size_t hs = (mh.uordblks - m0.uordblks) / N, idle = (m1.uordblks - m0.uordblks) / N,
           busy = (m2.uordblks - m0.uordblks) / N;
    print_message("# TLS server connection: %zu bytes in its handshake, %zu idle (after a "
                  "request), %zu busy (a read and a write buffer held); TLS_CONN_BYTES %u%s\n",
                  hs, idle, busy, TLS_CONN_BYTES,
                  SANITIZED ? " (under ASan mallinfo2 does not see the heap: not checked)" : "");
    if (!SANITIZED) {
        assert_true(busy > idle);
        assert_true(hs <= TLS_CONN_BYTES);
        assert_true(busy <= TLS_CONN_BYTES);
    }
    for (int i = 0; i < N; i++) {
        tls_conn_end(s[i]);
        close(sv[i][0]);
    }
    close(go[1]);
    int st;
    waitpid(pid, &st, 0);
    raw_track(pid, false);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    tls_free(stls);
    tls_free(ctls);
}

/* The memory bound counts TLS_CONN_BYTES for every connection of both
 * listeners when TLS is on, and nothing when it is off. */
static void memory_bound_counts_tls(void **state)
{
    (void)state;
    srv_opts o;
    srv_opts_default(&o);
    size_t plain = srv_memory_bound(&o);
    o.tls.cert = P.server;
    o.tls.key = P.server_key;
    assert_int_equal(srv_memory_bound(&o) - plain,
                     ((size_t)o.conn.max_connections + o.http.max_connections) * TLS_CONN_BYTES);
    o.http_listen = "none";
    size_t binary = srv_memory_bound(&o);
    o.tls.cert = o.tls.key = NULL;
    assert_int_equal(binary - srv_memory_bound(&o), (size_t)o.conn.max_connections * TLS_CONN_BYTES);
}

/* ---- the plain suites' bad input, over TLS --------------------------------- */

/* Runs the sibling suite name (built beside this one) with filter over
 * TLS; every test it selects must pass, and at least min must run. */
static void suite_over_tls(const char *name, const char *filter, int min)
{
    const char *env[] = {"TKT_TLS", pki_dir, NULL};
    st_suite_again(name, env, filter, min, SUITE_SECONDS, "over TLS");
}

static void server_bad_input_over_tls(void **state)
{
    (void)state;
    /* bad_random_bytes, bad_oversized_length, bad_truncated_frame_then_close,
     * bad_msgpack, bad_huge_array_count, bad_opcodes_and_flags */
    suite_over_tls("test_server", "bad_*", 6);
}

static void http_bad_input_over_tls(void **state)
{
    (void)state;
    suite_over_tls("test_http", "*bad*", 2); /* api_bad_requests, bad_http_input */
}

/* The verify listener speaks TLS as the others: test_http's gateway
 * verification tests against it (credential forms, required permissions,
 * toggle off), over TLS. */
static void verify_listener_over_tls(void **state)
{
    (void)state;
    suite_over_tls("test_http", "*on_verify_listener", 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(verify_over_both_listeners, setup, teardown),
        cmocka_unit_test_setup_teardown(plain_client_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(old_versions_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(mtls_requires_client_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(sighup_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_files_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(tokenctl_over_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(client_library_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(tls_memory_per_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(memory_bound_counts_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(server_bad_input_over_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(http_bad_input_over_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(verify_listener_over_tls, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    if (getenv("TEST_FILTER"))
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
