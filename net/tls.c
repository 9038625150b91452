/*
 * tls.c - TLS contexts, their reload, and record I/O on OpenSSL; see tls.h.
 *
 * A tls object keeps the paths it was made from and one SSL_CTX, the one
 * new connections get. Building a context is one function per role
 * (server_ctx, client_ctx) over the shared policy (ctx_new), so a reload is
 * "build another, swap only when it loaded": OpenSSL counts the SSLs that
 * use a context, so the old one lives on under the connections made from
 * it and goes with the last of them.
 *
 * Errors. OpenSSL keeps its errors in a per-thread queue; every call here
 * that can fail starts from an empty queue (so SSL_get_error is right)
 * and leaves it empty, turning the most specific entry into the reason of
 * a tk_why ("wrong version number", "certificate verify failed: hostname
 * mismatch", "tlsv13 alert certificate required").
 */
#include "net/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "core/xmalloc.h"

/* Mozilla's "intermediate" configuration (server-side TLS guidelines, v5.7)
 * for TLS 1.2: forward secrecy and AEAD only. TLS 1.3 keeps OpenSSL's
 * default suites (AES-GCM, ChaCha20-Poly1305), which are that list's too. */
#define TLS_CIPHERS_12                                                                    \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                          \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                          \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                          \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
#define TLS_SID_CTX "tokend"   /* session id context: resumption works with mTLS too */
#define TLS_TICKETS 1          /* TLS 1.3 tickets sent after a handshake (default 2) */
/* This module's socket BIO type. A fixed index, not BIO_get_new_index(),
 * which hands out at most 128 per process: a client makes a context per
 * handle. The index only matters to BIO_find_type, which nothing uses. */
#define TLS_BIO_TYPE (0x7e | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR)
#ifndef SSL_OP_IGNORE_UNEXPECTED_EOF
#define SSL_OP_IGNORE_UNEXPECTED_EOF 0
#endif

struct tls {
    bool server;
    bool any_name;       /* client: no name check */
    SSL_CTX *ctx;        /* the context new connections get */
    BIO_METHOD *bio;     /* send/recv on a descriptor, for SSLs made on one */
    char *cert, *key, *ca; /* the files, for reload (ca: client_ca or the client's ca) */
    char desc[640];      /* tls_describe's text for the context in use */
};

/* ---- errors ---------------------------------------------------------------- */

/* The most specific reason OpenSSL queued on this thread (fallback when it
 * queued none), into buf; the queue is emptied. */
static const char *ossl_reason(char *buf, size_t cap, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    if (r)
        snprintf(buf, cap, "%s", r);
    else if (e)
        ERR_error_string_n(e, buf, cap);
    else
        snprintf(buf, cap, "%s", fallback);
    ERR_clear_error();
    return buf;
}

/* Empties this thread's error queue before an SSL call, so that
 * SSL_get_error reads the call's own errors; a peek, which costs less than
 * a clear, on the record path, where the queue is empty. */
static void err_reset(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

/* ---- the socket BIO -------------------------------------------------------- */

static int bio_fd(BIO *b)
{
    return (int)(intptr_t)BIO_get_data(b);
}

static int bio_write(BIO *b, const char *p, int n)
{
    ssize_t k = send(bio_fd(b), p, (size_t)n, MSG_NOSIGNAL);
    BIO_clear_retry_flags(b);
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)k;
}

static int bio_read(BIO *b, char *p, int n)
{
    ssize_t k = recv(bio_fd(b), p, (size_t)n, 0);
    BIO_clear_retry_flags(b);
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_read(b);
    return (int)k;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    switch (cmd) {
    case BIO_CTRL_FLUSH: return 1; /* nothing is held here */
    case BIO_C_GET_FD:
        if (ptr)
            *(int *)ptr = bio_fd(b);
        return bio_fd(b);
    default: return 0;
    }
}

static BIO_METHOD *bio_method(void)
{
    BIO_METHOD *m = BIO_meth_new(TLS_BIO_TYPE, "tokend socket");
    if (!m || !BIO_meth_set_write(m, bio_write) || !BIO_meth_set_read(m, bio_read)
        || !BIO_meth_set_ctrl(m, bio_ctrl)) {
        BIO_meth_free(m);
        return NULL;
    }
    return m;
}

/* ---- loading --------------------------------------------------------------- */

/* The policy both roles share (tls.h). */
static SSL_CTX *ctx_new(bool server)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx)
        return NULL;
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)
        || !SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS_12)) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION
                                 | SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Partial writes and a moving buffer: a reply queue's chunks are
     * written as they come, and retried from wherever they sit. Buffers go
     * back while a connection is idle. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                              | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(ctx, 1); /* one recv for every record the socket holds */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (server) {
        SSL_CTX_set_num_tickets(ctx, TLS_TICKETS);
        SSL_CTX_set_session_id_context(ctx, (const unsigned char *)TLS_SID_CTX,
                                       sizeof TLS_SID_CTX - 1);
        SSL_CTX_set_dh_auto(ctx, 1); /* the DHE suites of the list */
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    return ctx;
}

/* Whether path can be opened for reading (what says which file, for the
 * message). 0 or TK_EIO. */
static int readable(const char *what, const char *path, tk_why *why)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return tk_say(why, TK_EIO, "cannot read the %s %s: %s", what, path, strerror(errno));
    close(fd);
    return 0;
}

static int load_cert(SSL_CTX *ctx, const char *path, tk_why *why)
{
    char r[256];
    int rc = readable("TLS certificate", path, why);
    if (rc)
        return rc;
    if (SSL_CTX_use_certificate_chain_file(ctx, path) != 1)
        return tk_say(why, TK_EINVAL, "cannot load the TLS certificate %s: %s (expected PEM: "
                      "the certificate, then its chain)", path, ossl_reason(r, sizeof r, "?"));
    return 0;
}

/* A key protected by a passphrase is refused rather than asked for. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* The private key of path into ctx, checked against its certificate. The
 * mode is read from the descriptor the key is then read from. */
static int load_key(SSL_CTX *ctx, const char *path, tk_why *why)
{
    char r[256];
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return tk_say(why, TK_EIO, "cannot read the TLS key %s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return tk_say(why, TK_EIO, "cannot read the TLS key %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return tk_say(why, TK_EINVAL, "the TLS key %s is not a file", path);
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        close(fd);
        return tk_say(why, TK_EINVAL, "the TLS key %s is open to its group or others (mode "
                      "%04o); a private key must be its owner's alone: chmod 600 %s", path,
                      (unsigned)(st.st_mode & 07777), path);
    }
    BIO *b = BIO_new_fd(fd, BIO_CLOSE);
    if (!b) {
        close(fd);
        return tk_say(why, TK_ENOMEM, "cannot read the TLS key %s: out of memory", path);
    }
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL);
    BIO_free(b);
    if (!k)
        return tk_say(why, TK_EINVAL, "cannot load the TLS key %s: %s (expected an unencrypted "
                      "PEM private key)", path, ossl_reason(r, sizeof r, "?"));
    int ok = SSL_CTX_use_PrivateKey(ctx, k) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(k);
    if (!ok)
        return tk_say(why, TK_EINVAL, "the TLS key %s does not match its certificate: %s", path,
                      ossl_reason(r, sizeof r, "?"));
    return 0;
}

/* The CAs of path as the ones a peer's certificate must chain to. */
static int load_ca(SSL_CTX *ctx, const char *what, const char *path, tk_why *why)
{
    char r[256];
    int rc = readable(what, path, why);
    if (rc)
        return rc;
    if (SSL_CTX_load_verify_locations(ctx, path, NULL) != 1)
        return tk_say(why, TK_EINVAL, "cannot load the %s %s: %s (expected PEM certificates)",
                      what, path, ossl_reason(r, sizeof r, "?"));
    return 0;
}

static int server_ctx(const tls *t, SSL_CTX **out, tk_why *why)
{
    char r[256];
    int rc;
    SSL_CTX *ctx = ctx_new(true);
    if (!ctx)
        return tk_say(why, TK_ENOMEM, "cannot make a TLS context: %s",
                      ossl_reason(r, sizeof r, "out of memory"));
    if ((rc = load_cert(ctx, t->cert, why)) || (rc = load_key(ctx, t->key, why)))
        goto fail;
    if (t->ca) {
        if ((rc = load_ca(ctx, "TLS client CA", t->ca, why)))
            goto fail;
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->ca);
        if (!names || sk_X509_NAME_num(names) == 0) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            rc = tk_say(why, TK_EINVAL, "no certificate in the TLS client CA %s", t->ca);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names); /* the hint a client picks its certificate by */
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    ERR_clear_error();
    *out = ctx;
    return 0;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return rc;
}

/* "CN=..., SHA-256 AB:..., expires ..." of ctx's certificate into t->desc. */
static void describe(tls *t)
{
    X509 *x = SSL_CTX_get0_certificate(t->ctx);
    char cn[256] = "", fp[3 * EVP_MAX_MD_SIZE + 1] = "", until[32] = "?";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    struct tm tm;
    if (!x) {
        snprintf(t->desc, sizeof t->desc, "no certificate");
        return;
    }
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn) < 0)
        X509_NAME_oneline(X509_get_subject_name(x), cn, sizeof cn);
    if (X509_digest(x, EVP_sha256(), md, &n))
        for (unsigned int i = 0; i < n; i++) /* "AB", then ":CD" from offset 2 */
            snprintf(fp + (i ? 3 * i - 1 : 0), sizeof fp - (i ? 3 * i - 1 : 0), "%s%02X",
                     i ? ":" : "", md[i]);
    const ASN1_TIME *na = X509_get0_notAfter(x);
    if (ASN1_TIME_to_tm(na, &tm))
        strftime(until, sizeof until, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int len = snprintf(t->desc, sizeof t->desc, "certificate %s (CN=%s, SHA-256 %s, expires %s%s)",
                       t->cert, cn, fp, until, X509_cmp_current_time(na) < 0 ? ": EXPIRED" : "");
    if (t->ca && len > 0 && (size_t)len < sizeof t->desc)
        snprintf(t->desc + len, sizeof t->desc - (size_t)len,
                 "; client certificates required, signed by %s", t->ca);
    ERR_clear_error();
}

static tls *tls_alloc(bool server)
{
    tls *t = xcalloc(1, sizeof *t);
    t->server = server;
    t->bio = bio_method();
    if (!t->bio) {
        free(t);
        return NULL;
    }
    return t;
}

int tls_server_new(const tls_server_opts *o, tls **out, tk_why *why)
{
    if (!o->cert || !o->key)
        return tk_say(why, TK_EINVAL, "TLS needs a certificate and its key (--tls-cert and "
                      "--tls-key)");
    tls *t = tls_alloc(true);
    if (!t)
        return tk_say(why, TK_ENOMEM, "cannot make a TLS context: out of memory");
    t->cert = xstrdup(o->cert);
    t->key = xstrdup(o->key);
    t->ca = o->client_ca ? xstrdup(o->client_ca) : NULL;
    int rc = server_ctx(t, &t->ctx, why);
    if (rc) {
        tls_free(t);
        return rc;
    }
    describe(t);
    *out = t;
    return 0;
}

int tls_client_new(const tls_client_opts *o, tls **out, tk_why *why)
{
    char r[256];
    int rc = 0;
    if (!o->cert != !o->key)
        return tk_say(why, TK_EINVAL, "a TLS client certificate needs its key, and a key its "
                      "certificate");
    tls *t = tls_alloc(false);
    if (!t || !(t->ctx = ctx_new(false))) {
        tls_free(t);
        return tk_say(why, TK_ENOMEM, "cannot make a TLS context: %s",
                      ossl_reason(r, sizeof r, "out of memory"));
    }
    t->any_name = o->any_name;
    if (o->ca)
        rc = load_ca(t->ctx, "TLS CA", o->ca, why);
    else if (SSL_CTX_set_default_verify_paths(t->ctx) != 1)
        rc = tk_say(why, TK_EIO, "cannot load the system's CA certificates: %s",
                    ossl_reason(r, sizeof r, "?"));
    if (!rc && o->cert && !(rc = load_cert(t->ctx, o->cert, why)))
        rc = load_key(t->ctx, o->key, why);
    ERR_clear_error();
    if (rc) {
        tls_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int tls_reload(tls *t, tk_why *why)
{
    SSL_CTX *ctx;
    if (!t->server)
        return tk_say(why, TK_EINVAL, "only a server's TLS context is reloaded");
    int rc = server_ctx(t, &ctx, why);
    if (rc)
        return rc;
    SSL_CTX_free(t->ctx); /* its connections hold their own references */
    t->ctx = ctx;
    describe(t);
    return 0;
}

void tls_describe(const tls *t, char *out, size_t cap)
{
    snprintf(out, cap, "%s", t->desc);
}

void tls_free(tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    BIO_meth_free(t->bio);
    free(t->cert);
    free(t->key);
    free(t->ca);
    free(t);
}

/* ---- connections ----------------------------------------------------------- */

int tls_conn_new(tls *t, int fd, const char *name, SSL **out)
{
    SSL *s = SSL_new(t->ctx);
    if (!s)
        goto oom;
    if (fd >= 0) {
        BIO *b = BIO_new(t->bio);
        if (!b)
            goto oom;
        BIO_set_data(b, (void *)(intptr_t)fd);
        BIO_set_init(b, 1);
        SSL_set_bio(s, b, b);
    } else {
        /* libevent's openssl bufferevent looks for buffered bytes with
         * SSL_pending only, which does not count whole records read ahead:
         * a request that came with the handshake's last flight would wait
         * for the socket forever. One record per read there. */
        SSL_set_read_ahead(s, 0);
    }
    if (t->server) {
        SSL_set_accept_state(s);
    } else {
        SSL_set_connect_state(s);
        unsigned char ip[16];
        bool is_ip = name && (inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1);
        if (name && *name && !is_ip && !SSL_set_tlsext_host_name(s, name)) /* SNI: names only */
            goto oom;
        if (name && *name && !t->any_name) {
            bool ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), name) == 1
                            : SSL_set1_host(s, name) == 1;
            if (!ok)
                goto oom;
            SSL_set_hostflags(s, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        }
    }
    *out = s;
    return 0;
oom:
    ERR_clear_error();
    SSL_free(s);
    return TK_ENOMEM;
}

/* After a failed SSL call (ret, and the errno it left, saved): -1 with
 * errno as tls.h says, or 0 when the peer ended the stream. */
static ssize_t io_fail(SSL *s, int ret, int saved, bool *want_write, tk_why *why)
{
    char r[256];
    bool init = !SSL_is_init_finished(s);
    switch (SSL_get_error(s, ret)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        if (want_write)
            *want_write = SSL_get_error(s, ret) == SSL_ERROR_WANT_WRITE;
        ERR_clear_error();
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return 0;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0) { /* else OpenSSL said why: as below */
            SSL_set_quiet_shutdown(s, 1); /* nothing more may be sent on it */
            if (saved == 0)
                return 0; /* EOF where OpenSSL still calls it a system error */
            errno = saved;
            return -1;
        }
        __attribute__((fallthrough));
    default: {
        SSL_set_quiet_shutdown(s, 1);
        unsigned long e = ERR_peek_last_error();
        long vr = SSL_get_verify_result(s);
        if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED
            && vr != X509_V_OK) {
            tk_say(why, TK_EPROTO, "%scertificate verify failed: %s",
                   init ? "TLS handshake failed: " : "TLS: ", X509_verify_cert_error_string(vr));
            ERR_clear_error();
        } else {
            tk_say(why, TK_EPROTO, "%s%s", init ? "TLS handshake failed: " : "TLS: ",
                   ossl_reason(r, sizeof r, "the connection failed"));
        }
        errno = EPROTO;
        return -1;
    }
    }
}

int tls_handshake(SSL *s, bool *want_write, tk_why *why)
{
    *want_write = false;
    err_reset();
    errno = 0;
    int ret = SSL_do_handshake(s);
    if (ret == 1)
        return 0;
    int saved = errno;
    ssize_t n = io_fail(s, ret, saved, want_write, why);
    if (n == 0) { /* closed before the handshake ended: refused all the same */
        tk_say(why, TK_EPROTO, "TLS handshake failed: the peer closed the connection");
        errno = EPROTO;
    }
    return -1;
}

ssize_t tls_read(SSL *s, void *buf, size_t n, bool *want_write, tk_why *why)
{
    size_t got = 0;
    *want_write = false;
    while (got < n) {
        size_t k = 0;
        err_reset();
        errno = 0;
        int ret = SSL_read_ex(s, (char *)buf + got, n - got, &k);
        if (ret == 1) {
            got += k;
            if (!SSL_has_pending(s)) /* the socket's turn: no recv that would only say EAGAIN */
                break;
            continue;
        }
        int saved = errno;
        if (got > 0) { /* these first; what stopped the loop comes again on the next call */
            ERR_clear_error();
            break;
        }
        return io_fail(s, ret, saved, want_write, why);
    }
    return (ssize_t)got;
}

ssize_t tls_write(SSL *s, const void *buf, size_t n, tk_why *why)
{
    size_t k = 0;
    bool want_write = false;
    err_reset();
    errno = 0;
    int ret = SSL_write_ex(s, buf, n, &k);
    if (ret == 1)
        return (ssize_t)k;
    int saved = errno;
    ssize_t r = io_fail(s, ret, saved, &want_write, why);
    if (r == 0 || (r < 0 && errno == EAGAIN && !want_write)) {
        /* A write that wants to read: renegotiation is off, so a peer
         * that gets here broke the protocol. */
        SSL_set_quiet_shutdown(s, 1);
        tk_say(why, TK_EPROTO, "TLS: the peer ended the connection or wants a renegotiation");
        errno = EPROTO;
        return -1;
    }
    return r;
}

bool tls_pending(const SSL *s)
{
    /* Decrypted bytes, or buffered ones that are not the start of a record
     * still waiting for the socket (after which OpenSSL wants to read). */
    return SSL_pending(s) > 0 || (SSL_has_pending(s) && !SSL_want_read(s));
}

void tls_close_notify(SSL *s)
{
    if (!s || SSL_get_quiet_shutdown(s) || !SSL_is_init_finished(s)
        || (SSL_get_shutdown(s) & SSL_SENT_SHUTDOWN))
        return;
    ERR_clear_error();
    (void)SSL_shutdown(s);
    ERR_clear_error();
}

void tls_conn_end(SSL *s)
{
    if (!s)
        return;
    tls_close_notify(s);
    SSL_free(s);
}
