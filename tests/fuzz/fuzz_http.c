/*
 * fuzz_http.c - the HTTP listener (net/http.c, on libevent's evhttp) over
 * arbitrary bytes from a peer: the request line and headers as evhttp
 * parses them, then tokend's own reading of them (credentials, routes,
 * queries, bodies), through to the engine and back.
 *
 * Setup, once: an engine in a temp dir on /dev/shm with a small world (a
 * tenant with API tokens on, a role, an account, a portal user, a token),
 * the writer thread, and the listener on 127.0.0.1:0, all in this process.
 * Input: the bytes a client sends on one connection, where "@OP@", "@PK@"
 * and "@TOKEN@" are replaced by the operator key, the user's personal key
 * and the token's secret (so the fuzzer reaches past authentication); then
 * the client's side is shut for writing, and the loop runs until the server
 * closes the connection (at most ~2 s: more is a hang).
 *
 * Checked beyond memory safety (ASan, UBSan, LeakSanitizer at exit): every
 * answer starts with a status line ("HTTP/x.y NNN", 100 to 599: evhttp
 * answers in the request's version); the server
 * closes the connection once the peer has ended; and afterwards a fresh
 * connection still gets an answer for the token, 200, or 401 where the
 * input itself revoked it with the operator key (nothing the input did took
 * the listener down).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>

#include "core/model.h"
#include "net/http.h"
#include "net/metrics.h"
#include "net/writer.h"
#include "store/engine.h"
#include "store/keyfile.h"
#include "tests/fuzz/fuzz.h"

static struct event_base *base;
static eng *e;
static wrt *w;
static met *m;
static http_srv *hs;
static int port;
static char op_key[128], pk[TK_SECRET_LEN + 1], token[TK_SECRET_LEN + 1];

static tk_str S(const char *s)
{
    return (tk_str){s, strlen(s)};
}

static void run(eng_req *r, eng_res *res)
{
    FZ_CHECK(eng_exec(e, r, res, 1) == 0 && res->status == 0, "the world is built");
}

static void world(void)
{
    tk_actor op = {.kind = TK_ACTOR_OPERATOR};
    eng_req r;
    eng_res res;
    eng_req_init(&r, ENG_TENANT_CREATE, &op);
    r.tenant = S("acme");
    run(&r, &res);
    eng_req_init(&r, ENG_TENANT_SET, &op);
    r.tenant = S("acme");
    r.flag = 1;
    run(&r, &res);
    eng_req_init(&r, ENG_ROLE_PUT, &op);
    r.tenant = S("acme");
    r.key = r.name = S("viewer");
    r.level = 5;
    r.nitems = 1;
    r.items[0] = S("orders:read");
    run(&r, &res);
    eng_req_init(&r, ENG_ACCOUNT_CREATE, &op);
    r.tenant = S("acme");
    r.account = S("bigco");
    run(&r, &res);
    eng_req_init(&r, ENG_USER_CREATE, &op);
    r.tenant = S("acme");
    r.account = S("bigco");
    r.user = S("alice");
    r.flag = 1;
    r.nitems = 1;
    r.items[0] = S("viewer");
    run(&r, &res);
    memcpy(pk, res.secret, sizeof pk);
    tk_actor alice;
    FZ_CHECK(eng_authenticate(e, pk, strlen(pk), time(NULL), &alice) == 0, "alice's key");
    eng_req_init(&r, ENG_TOKEN_CREATE, &alice);
    r.nitems = 1;
    r.items[0] = S("viewer");
    run(&r, &res);
    memcpy(token, res.secret, sizeof token);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char dir[] = "/dev/shm/fuzz_http.XXXXXX";
    char tmpl[] = "/tmp/fuzz_http.XXXXXX";
    const char *d = mkdtemp(dir);
    if (!d)
        d = mkdtemp(tmpl);
    FZ_CHECK(d != NULL, "a temp dir");
    tk_why why;
    FZ_CHECK(eng_open(d, NULL, &e, &why) == 0, "the engine opens");
    world();
    FZ_CHECK(keyfile_load(d, "operator.key", "tko_", op_key, &why) == 0, "the operator key");
    FZ_CHECK(evthread_use_pthreads() == 0, "libevent threads");
    base = event_base_new();
    wrt_opts wo = {64u << 20, 16u << 20};
    FZ_CHECK(wrt_start(base, e, &wo, &w) == 0, "the writer starts");
    met_new(&m);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct evconnlistener *lis =
        evconnlistener_new_bind(base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 128,
                                (struct sockaddr *)&a, sizeof a);
    FZ_CHECK(lis != NULL, "a listening socket");
    socklen_t al = sizeof a;
    getsockname(evconnlistener_get_fd(lis), (struct sockaddr *)&a, &al);
    port = ntohs(a.sin_port);
    http_opts o;
    http_opts_default(&o);
    o.timeout = 2;
    http_env env = {.base = base, .e = e, .w = w, .m = m};
    http_open(&env, &o, lis, &hs);
    return 0;
}

/* The input with the placeholders replaced, into out (at most cap). */
static size_t expand(const uint8_t *in, size_t n, char *out, size_t cap)
{
    static const struct {
        const char *tag;
        const char *val;
    } subs[] = {{"@OP@", op_key}, {"@PK@", pk}, {"@TOKEN@", token}};
    size_t o = 0;
    for (size_t i = 0; i < n && o < cap;) {
        bool done = false;
        for (size_t k = 0; k < 3 && !done; k++) {
            size_t tl = strlen(subs[k].tag), vl = strlen(subs[k].val);
            if (n - i >= tl && memcmp(in + i, subs[k].tag, tl) == 0 && o + vl <= cap) {
                memcpy(out + o, subs[k].val, vl);
                o += vl;
                i += tl;
                done = true;
            }
        }
        if (!done)
            out[o++] = (char)in[i++];
    }
    return o;
}

/* Sends bytes on a new connection, shuts our side, runs the loop until the
 * server closes; the answer in resp (at most cap - 1 bytes kept). */
static size_t exchange(const char *bytes, size_t n, char *resp, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    FZ_CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect");
    fcntl(fd, F_SETFL, O_NONBLOCK);
    size_t sent = 0, got = 0;
    bool eof = false;
    for (int round = 0; round < 2000 && !eof; round++) {
        while (sent < n) {
            ssize_t k = write(fd, bytes + sent, n - sent);
            if (k <= 0)
                break;
            sent += (size_t)k;
        }
        if (sent == n) {
            shutdown(fd, SHUT_WR);
            sent++; /* shut once */
        }
        struct timeval tv = {0, 1000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
        for (;;) {
            char buf[4096];
            ssize_t k = read(fd, buf, sizeof buf);
            if (k == 0) {
                eof = true;
                break;
            }
            if (k < 0) {
                if (errno == ECONNRESET)
                    eof = true;
                break;
            }
            size_t keep = got + (size_t)k < cap - 1 ? (size_t)k : cap - 1 - got;
            memcpy(resp + got, buf, keep);
            got += keep;
        }
    }
    resp[got] = 0;
    close(fd);
    FZ_CHECK(eof, "the server closes the connection once the peer has ended");
    return got;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char req[16384], resp[65536];
    if (size > 4096)
        return 0;
    size_t n = expand(data, size, req, sizeof req);
    size_t got = exchange(req, n, resp, sizeof resp);
    if (got > 0) {
        /* evhttp answers in the request's version (HTTP/1.0 gets 1.0) */
        int major = -1, minor = -1, status = 0;
        FZ_CHECK(sscanf(resp, "HTTP/%d.%d %3d", &major, &minor, &status) == 3,
                 "an answer is an HTTP status line");
        FZ_CHECK(status >= 100 && status < 600, "with a status");
    }
    /* An unrelated verification still says the same. */
    char probe[256];
    int pn = snprintf(probe, sizeof probe,
                      "GET /v1/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                      "Connection: close\r\n\r\n",
                      token);
    got = exchange(probe, (size_t)pn, resp, sizeof resp);
    FZ_CHECK(got > 12 && (strncmp(resp, "HTTP/1.1 200", 12) == 0
                          || strncmp(resp, "HTTP/1.1 401", 12) == 0),
             "the listener still answers a verification on a fresh connection");
    return 0;
}
