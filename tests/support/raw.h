/*
 * raw.h - drive the real bin/tokend from a test: start it as a child
 * process on a free loopback port with a fresh data directory, speak the
 * wire protocol over plain blocking sockets (frames built by hand, so a
 * test can also send what no client library would), and read reply bodies.
 *
 * Written independently of net/client.c on purpose: the server suite must
 * not trust the code it is checking against.
 *
 * Over TLS: with TKT_TLS=DIR in the environment (DIR made by tlst_pki_make,
 * tests/support/tlst.h), every server is started with --tls-cert
 * DIR/server.pem --tls-key DIR/server.key and raw_connect (so hraw_once
 * too) connects through tlst_connect, trusting DIR/ca.pem: a suite's tests
 * then run over TLS unchanged. test_tls runs test_server's and test_http's
 * bad-input tests this way.
 *
 * With io_uring off: with TKT_IO_URING=0, every server is started with
 * --io-uring=false, so it reads and sends each connection with its own read
 * and sendmsg (the fallback path, net/sockq.h). test_sockq runs the
 * server, concurrency and verify suites again this way.
 */
#ifndef TK_TEST_RAW_H
#define TK_TEST_RAW_H
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/mp.h"
#include "net/proto.h"

/* ---- the server process ------------------------------------------------- */

typedef struct raw_server {
    pid_t pid;      /* 0 once reaped */
    int port;
    int http_port;  /* the HTTP listener's, or -1 with --http none */
    int verify_port; /* the verify listener's (--http-verify), or -1 with
                        --http-verify none */
    char *dir;      /* data directory (owned) */
    char *log;      /* the server's stderr, a file in the test's temp dir (owned) */
    char *tmp;      /* the test's temp dir (owned; holds dir and log) */
} raw_server;

/* Starts $BIN/tokend (BIN from the environment, else "bin") with
 * --listen 127.0.0.1:0 --http 127.0.0.1:0 --http-verify 127.0.0.1:0
 * --data <dir> and the NULL-terminated extra args (which may turn either
 * HTTP listener off: "--http none").
 * dir: an existing data directory to reuse, or NULL for a fresh one. Waits
 * (at most 15 s) for the "tokend: listening on HOST:PORT" line and parses
 * the port. The child gets SIGKILL if the test process dies. 0 or -1. */
int raw_server_start(raw_server *s, const char *dir, const char *const *extra);

/* Waits at most timeout_ms for the server to exit by itself. Returns its
 * exit code (128 + signal if killed by one), or -1 if it is still running. */
int raw_server_wait(raw_server *s, int timeout_ms);

/* CPU time (user + system) the server has used, in ms, or -1. */
long raw_server_cpu_ms(const raw_server *s);

/* Servers started from now on get this open-file limit (soft and hard), set
 * in the child before exec; 0 leaves the limit alone. */
void raw_child_nofile(unsigned long n);

/* Servers started from now on run under a seccomp filter that refuses
 * system call nr (__NR_io_uring_setup: a kernel or sandbox without
 * io_uring) with EPERM; 0 turns it off. */
void raw_child_refuse_syscall(long nr);

/* SIGTERM, then waits at most 15 s. Returns the exit code (128 + signal
 * if killed by one), or -1 on timeout (the child is then SIGKILLed and
 * reaped). The data directory is kept. */
int raw_server_stop(raw_server *s);

/* Runs $BIN/tool (BIN from the environment, else "bin") with args
 * (NULL-terminated, at most 14), its stdout to /dev/null (stderr kept for
 * the suite's log); its exit code, or -1 (it did not run, or a signal
 * ended it). */
int raw_run_tool(const char *tool, const char *const *args);

/* SIGKILL and reap if still running, remove the temp dir, free. */
void raw_server_free(raw_server *s);

/* The server's resident set in KiB (/proc/PID/status VmRSS), or -1. */
long raw_server_rss_kb(const raw_server *s);

/* The server's peak resident set since it started, in KiB (VmHWM), or -1. */
long raw_server_hwm_kb(const raw_server *s);

/* True when the server's log holds needle. */
bool raw_server_log_has(const raw_server *s, const char *needle);

/* Reads DIR/name (a key file) into out without its newline; 0 or -1. */
int raw_read_key(const raw_server *s, const char *name, char *out, size_t cap);

/* Arms a watchdog: after seconds, kills every server started and not yet
 * reaped (and every child raw_track names), prints why and exits 1 (a hung
 * test must not hang the suite). 0 disarms. */
void raw_watchdog(unsigned seconds);

/* Adds (on) or removes a child of the test that the watchdog kills: a
 * server the test runs beside tokend (nginx, caddy, ...). */
void raw_track(pid_t pid, bool on);

/* ---- sockets and frames ------------------------------------------------- */

/* A blocking TCP connection to 127.0.0.1:port (over TLS with TKT_TLS, as
 * above); -1 on failure. */
int raw_connect(int port);

/* Closes fd with a reset (SO_LINGER 0): the peer's next read fails with
 * ECONNRESET, as when a client process dies. */
void raw_reset(int fd);

/* Writes all n bytes; 0 or -1. */
int raw_write(int fd, const void *p, size_t n);

/* Appends one frame (header and body bytes) to out, a byte buffer. */
void raw_frame(mpw *out, uint16_t op, uint16_t flags, uint32_t id, const void *body,
               size_t len);

/* One reply. */
typedef struct raw_reply {
    proto_header h;
    uint8_t *body; /* malloc'd */
} raw_reply;

/* Reads one frame within timeout_ms; 0, or -1 on EOF, error or timeout. */
int raw_recv(int fd, raw_reply *r, int timeout_ms);
void raw_reply_free(raw_reply *r);

/* True when the peer closes (EOF or reset) within timeout_ms, dropping
 * anything it sends first. */
bool raw_closed_within(int fd, int timeout_ms);

/* Sends one request (body: a finished mpw, or NULL for an empty body) with
 * id and reads its reply into r. Returns the reply status, or -1 when no
 * reply came or its id differs. */
int raw_call(int fd, uint16_t op, uint32_t id, const mpw *body, raw_reply *r);

/* One PING on a new connection to port: its reply's status (0 when the
 * listener serves), or -1 when there was no reply. */
int raw_ping(int port);

/* ---- bodies ------------------------------------------------------------- */

/* Builds a map body from a spec of space-separated "key:type" items, each
 * taking one argument: s const char *, b int (bool), u uint64_t, i
 * int64_t, a const char *const * (NULL-terminated array of strings). */
void raw_map(mpw *w, const char *spec, ...);
void raw_vmap(mpw *w, const char *spec, va_list ap);

/* Looks key up in a reply body's top-level map. */
bool raw_get_str(const raw_reply *r, const char *key, char *out, size_t cap);
bool raw_get_bool(const raw_reply *r, const char *key, bool *out);
bool raw_get_int(const raw_reply *r, const char *key, int64_t *out);
/* An array of strings, joined with commas into out; returns the count or
 * -1. */
int raw_get_strs(const raw_reply *r, const char *key, char *out, size_t cap);
/* An array of maps (TOKEN_LIST's tokens): its count, or -1. */
int raw_get_count(const raw_reply *r, const char *key);
/* Element i of the array of maps under key, as a reply of its own (row's
 * body is borrowed from r: do not free row), so that raw_get_* read its
 * fields. false when there is no such element. */
bool raw_get_row(const raw_reply *r, const char *key, int i, raw_reply *row);

#endif
