/*
 * tlst.h - TLS from a test (prefix tlst_): the certificates a suite needs,
 * made at test time with the openssl command, and a TLS client that hands
 * the test a plain socket.
 *
 * The client is written on OpenSSL directly, independently of net/tls.c
 * and net/client.c, so the suites do not trust the code they check. It
 * connects to 127.0.0.1, completes the handshake (verifying the server's
 * certificate and its IP address against the CA given), then returns one
 * end of a socketpair and pumps bytes between it and the TLS connection on
 * a thread of its own. Every helper that takes a socket (raw.h's frames,
 * hraw.h's HTTP, raw_closed_within, shutdown(SHUT_WR)) therefore works
 * over TLS unchanged: bytes written to the descriptor reach the server as
 * TLS records, the server's come out of it. Ends map across: the test's
 * shutdown or close sends close_notify and shuts the TCP write side; the
 * server's end (close_notify, EOF or reset) closes the descriptor once its
 * last bytes are delivered. A pump lives at most TLST_PUMP_SECONDS.
 *
 * The process ignores SIGPIPE from the first connection on (OpenSSL writes
 * with write(2)).
 */
#ifndef TK_TEST_TLST_H
#define TK_TEST_TLST_H
#include <stdbool.h>
#include <stddef.h>

#define TLST_PUMP_SECONDS 120

/* Files made in dir by tlst_pki (paths inside it, owned by the struct). */
typedef struct tlst_pki {
    char *ca, *ca_key;            /* the test CA (CN=tokend-test-ca) */
    char *server, *server_key;    /* CN=localhost, SAN IP:127.0.0.1 and DNS:localhost */
    char *server2, *server2_key;  /* the same names, another key: a reload's */
    char *client, *client_key;    /* CN=gateway, clientAuth, signed by the CA */
    char *rogue_ca;               /* another CA */
    char *rogue, *rogue_key;      /* a client certificate the rogue CA signed */
} tlst_pki;

/* Makes every file of p in dir (keys mode 0600) with the openssl command,
 * within 60 s. 0, or -1 with the command's output on stderr. */
int tlst_pki_make(const char *dir, tlst_pki *p);
void tlst_pki_free(tlst_pki *p);

/* A client's choices. */
typedef struct tlst_opts {
    const char *ca;          /* the CA the server's certificate must chain to */
    const char *cert, *key;  /* a client certificate (mTLS), or NULL */
    int max_version;         /* e.g. TLS1_1_VERSION for a client too old; 0: any */
} tlst_opts;

/* What a connection learned. */
typedef struct tlst_info {
    char fingerprint[65];    /* the server certificate's SHA-256, lowercase hex */
    char version[16];        /* "TLSv1.3" */
    char error[512];         /* why the handshake failed */
} tlst_info;

/* Connects to 127.0.0.1:port over TLS (within 10 s) and returns the test's
 * end of the pump: a blocking socket, closed by the caller. -1 when the
 * connection or the handshake fails (info->error says why). info may be
 * NULL. */
int tlst_connect(int port, const tlst_opts *o, tlst_info *info);

/* The SHA-256 fingerprint (lowercase hex) of the PEM certificate at path
 * into out; 0 or -1. */
int tlst_file_fingerprint(const char *path, char out[65]);

#endif
