/*
 * tls.h - TLS on OpenSSL (prefix tls_) for tokend's two listeners, the C
 * client library, tokenctl and tokenbench: the contexts (certificate, key,
 * trusted CAs, the protocol and cipher policy), their life and reload,
 * record I/O on a non-blocking socket, and the one place where OpenSSL's
 * errors become a line for a person.
 *
 * Why one module. The policy is written once: TLS 1.2 at least; for 1.2
 * Mozilla's "intermediate" cipher list (ECDHE/DHE with AES-GCM or
 * ChaCha20-Poly1305), for 1.3 OpenSSL's default suites; no compression, no
 * renegotiation; session tickets (stateless, one per handshake) and no
 * server-side session cache, so a session costs the server nothing once
 * its connection ends. Both listeners, the client and the benchmark follow
 * it. Connections only ask for an SSL for a new socket and move bytes with
 * tls_read / tls_write, which behave like read(2) / write(2) on a
 * non-blocking socket, so net/conn.c keeps its own input buffer and parses
 * frames in place exactly as without TLS.
 *
 * Reload. tls_reload builds a new context from the same files and swaps it
 * in only if every file loads; an SSL holds a reference to the context it
 * was made from, so open connections keep their certificate and session
 * until they end, and new ones get the new certificate. A failed reload
 * keeps the old context and says why.
 *
 * Sockets. An SSL made on a descriptor (tls_conn_new with fd >= 0) reads
 * and writes it through this module's BIO, with send(MSG_NOSIGNAL) and
 * recv(), so a peer gone mid-write is an error return, never a SIGPIPE (as
 * for the plain paths); that BIO belongs to the tls object, so every SSL
 * made from one must be ended before it is freed. OpenSSL reads ahead: one
 * recv takes as many records as the socket has, and tls_pending says when
 * decrypted or whole undecrypted records wait inside the SSL (a readiness
 * event will not say so). SSLs for a bufferevent (fd -1) do not read ahead:
 * libevent checks SSL_pending only.
 *
 * Threads: a tls object and its SSLs are used by one thread at a time (the
 * server's loop thread; a client handle's thread).
 */
#ifndef TK_NET_TLS_H
#define TK_NET_TLS_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "core/err.h"

/* What one server connection's TLS state can hold at most, for the memory
 * bound (docs/server.md, "The memory bound"): OpenSSL's SSL object with its
 * record layer and cipher state, a read buffer (a 16 KiB record and its
 * overhead, read ahead) and a write buffer, or during the handshake its
 * transient state; the peer's certificate under mTLS; libevent's openssl
 * bufferevent on HTTP. Measured by test_tls (tls_memory_per_connection,
 * glibc's heap over 200 connections): up to 55 KiB in the handshake, 46 KiB busy
 * (a record half read, a write the peer does not take), 14 KiB idle (the
 * buffers given back: SSL_MODE_RELEASE_BUFFERS). The bound is the
 * handshake's with room for a client certificate chain and the bufferevent. */
#define TLS_CONN_BYTES (80u << 10)

/* A server's files. Paths are copied. */
typedef struct tls_server_opts {
    const char *cert;      /* PEM: the certificate, then its chain, leaf first */
    const char *key;       /* PEM: its private key, unencrypted; a file that its group or
                              others may read (or write) is refused, as ssh refuses one */
    const char *client_ca; /* PEM: the CAs a client's certificate must chain to (mTLS: a
                              client without one is refused); NULL: none is asked for */
} tls_server_opts;

/* A client's trust and identity. Paths are copied. */
typedef struct tls_client_opts {
    const char *ca;   /* PEM: the only CAs that may sign the server's certificate (pinned);
                         NULL: the system's store */
    const char *cert; /* PEM: the client's certificate (mTLS), or NULL */
    const char *key;  /* its key (checked as the server's); with cert, or NULL */
    bool any_name;    /* accept any certificate a trusted CA signed, whatever names it
                         carries (pin the CA only); default false: the name must match */
} tls_client_opts;

typedef struct tls tls;

/* A server context from o's files: 0, or TK_EIO (a file cannot be read),
 * TK_EINVAL (not PEM, no certificate, a key that does not match it, an
 * encrypted key, a key file whose mode lets others read it), with the
 * reason (the file and what is wrong, e.g. "the TLS key
 * var/k.pem is readable by its group or others (mode 0644): chmod 600
 * var/k.pem") in why. *out is owned by the caller (tls_free). */
int tls_server_new(const tls_server_opts *o, tls **out, tk_why *why);

/* A client context: the same codes as tls_server_new. */
int tls_client_new(const tls_client_opts *o, tls **out, tk_why *why);

/* Server: reads the files again and, if all of them load, makes the new
 * context the one new connections get. 0, or the error of tls_server_new
 * with why: the old context stays. */
int tls_reload(tls *t, tk_why *why);

/* The server certificate in use, for the log: "CN=host, SHA-256 AB:CD:..,
 * expires 2027-01-01T00:00:00Z" (and ", client certificates required
 * (CA FILE)" under mTLS). */
void tls_describe(const tls *t, char *out, size_t cap);

/* Frees t (NULL is fine). Every SSL made on a descriptor from t must have
 * been ended first (tls_conn_end); SSLs handed to libevent keep their own
 * context reference. */
void tls_free(tls *t);

/* A new connection's SSL from t's current context, in *out (owned by the
 * caller: tls_conn_end). Server: in the accepting state; fd the accepted
 * socket (non-blocking), or -1 for a bufferevent that sets its own.
 * Client: in the connecting state on fd; name is the server's host as
 * dialled (a DNS name, sent as SNI, or an IP address): the certificate
 * must name it unless the context has any_name; NULL checks no name. 0 or
 * TK_ENOMEM. */
int tls_conn_new(tls *t, int fd, const char *name, SSL **out);

/* Drives a client's handshake. 0 when it is done (the server's certificate
 * verified), or -1 with errno: EAGAIN, call again when the socket is
 * readable (*want_write false) or writable (true); EPROTO, refused, with
 * why (e.g. "certificate verify failed: hostname mismatch"); another
 * errno, the socket's error. */
int tls_handshake(SSL *s, bool *want_write, tk_why *why);

/* Reads up to n bytes of application data (completing the handshake
 * first), taking every whole record already buffered. > 0 bytes; 0 when
 * the peer ended the stream (close_notify, or a plain EOF: the framing of
 * both protocols says where a message ends); -1 with errno: EAGAIN, call
 * again when the socket is readable (*want_write false) or writable
 * (true); EPROTO, a TLS failure (a handshake refused: not TLS, an old
 * version, no or a bad client certificate; a corrupt record), with why;
 * another errno (ECONNRESET), the socket's. why may be NULL. */
ssize_t tls_read(SSL *s, void *buf, size_t n, bool *want_write, tk_why *why);

/* Writes up to n bytes as records: the bytes taken (> 0, maybe fewer than
 * n), or -1 with errno: EAGAIN, call again with the same bytes when the
 * socket is writable; EPIPE (with why) for a TLS failure; another errno,
 * the socket's. Never needs to read: renegotiation is off, and every
 * write follows the handshake. why may be NULL. */
ssize_t tls_write(SSL *s, const void *buf, size_t n, tk_why *why);

/* True when s holds bytes a tls_read would return without the socket
 * being readable. */
bool tls_pending(const SSL *s);

/* Sends close_notify if the connection is sound (never waits: a full
 * socket drops it). */
void tls_close_notify(SSL *s);

/* tls_close_notify, then frees s (NULL is fine). The descriptor stays
 * open: the caller closes it. */
void tls_conn_end(SSL *s);

#endif
