/* tlst.c - test certificates and a TLS client behind a socketpair; see tlst.h. */
#include "tests/support/tlst.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tests/support/tkt.h"

#define PUMP_BUF (64u << 10)

/* ---- certificates ---------------------------------------------------------- */

int tlst_pki_make(const char *dir, tlst_pki *p)
{
    /* EC P-256 keys (quick to make); each leaf signed by its CA, with the
     * extensions a verifier checks. */
    static const char script[] =
        "set -e\n"
        "cd \"$0\"\n"
        "key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out \"$1\"; "
        "chmod 600 \"$1\"; }\n"
        "ca() { key \"$1.key\"; openssl req -x509 -new -key \"$1.key\" -out \"$1.pem\" -days 3 "
        "-subj \"/CN=$2\" -addext basicConstraints=critical,CA:TRUE "
        "-addext keyUsage=critical,keyCertSign,cRLSign; }\n"
        "leaf() { key \"$1.key\"; openssl req -new -key \"$1.key\" -out \"$1.csr\" -subj \"/CN=$3\"; "
        "printf '%s\\n' \"$4\" basicConstraints=CA:FALSE > \"$1.ext\"; "
        "openssl x509 -req -in \"$1.csr\" -CA \"$2.pem\" -CAkey \"$2.key\" -CAcreateserial "
        "-out \"$1.pem\" -days 2 -extfile \"$1.ext\"; }\n"
        "ca ca tokend-test-ca\n"
        "ca rogue-ca rogue-ca\n"
        "leaf server ca localhost 'subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "extendedKeyUsage=serverAuth'\n"
        "leaf server2 ca localhost 'subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "extendedKeyUsage=serverAuth'\n"
        "leaf client ca gateway extendedKeyUsage=clientAuth\n"
        "leaf rogue rogue-ca gateway extendedKeyUsage=clientAuth\n";
    char *log = tkt_path(dir, "openssl.log");
    memset(p, 0, sizeof *p);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        alarm(60);
        execlp("sh", "sh", "-c", script, dir, (char *)NULL);
        _exit(127);
    }
    int st = -1;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        size_t n = 0;
        unsigned char *text = tkt_read_file(log, &n);
        fprintf(stderr, "# making the test certificates failed (is the openssl command "
                        "installed? make deps):\n%.*s\n", (int)n, text ? (char *)text : "");
        free(text);
        free(log);
        return -1;
    }
    free(log);
    p->ca = tkt_path(dir, "ca.pem");
    p->ca_key = tkt_path(dir, "ca.key");
    p->server = tkt_path(dir, "server.pem");
    p->server_key = tkt_path(dir, "server.key");
    p->server2 = tkt_path(dir, "server2.pem");
    p->server2_key = tkt_path(dir, "server2.key");
    p->client = tkt_path(dir, "client.pem");
    p->client_key = tkt_path(dir, "client.key");
    p->rogue_ca = tkt_path(dir, "rogue-ca.pem");
    p->rogue = tkt_path(dir, "rogue.pem");
    p->rogue_key = tkt_path(dir, "rogue.key");
    return 0;
}

void tlst_pki_free(tlst_pki *p)
{
    char **f[] = {&p->ca, &p->ca_key, &p->server, &p->server_key, &p->server2, &p->server2_key,
                  &p->client, &p->client_key, &p->rogue_ca, &p->rogue, &p->rogue_key};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        free(*f[i]);
        *f[i] = NULL;
    }
}

static void hex_digest(X509 *x, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    out[0] = '\0';
    if (x && X509_digest(x, EVP_sha256(), md, &n) && n == 32)
        for (unsigned int i = 0; i < n; i++)
            snprintf(out + 2 * i, 3, "%02x", md[i]);
}

int tlst_file_fingerprint(const char *path, char out[65])
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    hex_digest(x, out);
    X509_free(x);
    return out[0] ? 0 : -1;
}

/* ---- the pump ------------------------------------------------------------- */

typedef struct pump {
    SSL *ssl;
    SSL_CTX *ctx;
    int tcp, sp;
} pump;

static void set_nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Moves bytes both ways until both ends are done or the time is up.
 * up: the test's bytes on their way to the server; dn: the server's on
 * their way to the test. */
static void *pump_main(void *arg)
{
    pump *pm = arg;
    unsigned char *up = malloc(PUMP_BUF), *dn = malloc(PUMP_BUF);
    size_t ulen = 0, dlen = 0;
    bool test_eof = false, server_eof = false, shut = false;
    bool rd_wants_w = false, wr_wants_r = false;
    int64_t end = tkt_now_ms() + TLST_PUMP_SECONDS * 1000;
    set_nonblock(pm->tcp);
    set_nonblock(pm->sp);
    while (up && dn && tkt_now_ms() < end) {
        if (server_eof && dlen == 0)
            break; /* the server is done and the test has all of it */
        if (test_eof && ulen == 0 && !shut) {
            SSL_shutdown(pm->ssl); /* close_notify, then the TCP write side */
            shutdown(pm->tcp, SHUT_WR);
            shut = true;
        }
        struct pollfd f[2] = {{pm->sp, 0, 0}, {pm->tcp, 0, 0}};
        if (!test_eof && ulen < PUMP_BUF)
            f[0].events |= POLLIN;
        if (dlen > 0)
            f[0].events |= POLLOUT;
        if (!server_eof && dlen < PUMP_BUF)
            f[1].events |= rd_wants_w ? POLLOUT : POLLIN;
        if (ulen > 0 && !shut)
            f[1].events |= wr_wants_r ? POLLIN : POLLOUT;
        bool ready = !server_eof && dlen < PUMP_BUF && SSL_pending(pm->ssl) > 0;
        if (poll(f, 2, ready ? 0 : 100) < 0 && errno != EINTR)
            break;
        if (f[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(pm->sp, up + ulen, PUMP_BUF - ulen, 0);
            if (n > 0)
                ulen += (size_t)n;
            else if (n == 0 || (errno != EAGAIN && errno != EINTR))
                test_eof = true;
        }
        if (ulen > 0 && !shut && !server_eof) {
            ERR_clear_error();
            size_t k = 0;
            if (SSL_write_ex(pm->ssl, up, ulen, &k)) {
                memmove(up, up + k, ulen - k);
                ulen -= k;
                wr_wants_r = false;
            } else {
                int e = SSL_get_error(pm->ssl, 0);
                if (e == SSL_ERROR_WANT_READ)
                    wr_wants_r = true;
                else if (e != SSL_ERROR_WANT_WRITE)
                    ulen = 0; /* the server is gone: what the test sends is lost */
            }
        }
        if (!server_eof && dlen < PUMP_BUF) {
            ERR_clear_error();
            size_t k = 0;
            if (SSL_read_ex(pm->ssl, dn + dlen, PUMP_BUF - dlen, &k)) {
                dlen += k;
                rd_wants_w = false;
            } else {
                int e = SSL_get_error(pm->ssl, 0);
                if (e == SSL_ERROR_WANT_WRITE)
                    rd_wants_w = true;
                else if (e != SSL_ERROR_WANT_READ)
                    server_eof = true; /* close_notify, EOF, reset or a TLS error */
            }
        }
        if (dlen > 0) {
            ssize_t n = send(pm->sp, dn, dlen, MSG_NOSIGNAL);
            if (n > 0) {
                memmove(dn, dn + n, dlen - (size_t)n);
                dlen -= (size_t)n;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                break; /* the test closed its end */
            }
        }
        if (test_eof && server_eof)
            break;
    }
    ERR_clear_error();
    SSL_free(pm->ssl);
    SSL_CTX_free(pm->ctx);
    close(pm->tcp);
    close(pm->sp); /* the test reads the end */
    free(up);
    free(dn);
    free(pm);
    return NULL;
}

static void say(tlst_info *info, const char *what, const char *why)
{
    if (info)
        snprintf(info->error, sizeof info->error, "%s: %s", what, why ? why : "?");
}

int tlst_connect(int port, const tlst_opts *o, tlst_info *info)
{
    char reason[256];
    signal(SIGPIPE, SIG_IGN);
    if (info)
        memset(info, 0, sizeof *info);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return -1;
    if (o->max_version) {
        /* Old versions need security level 0 on OpenSSL 3: this client
         * must be able to offer them for the server to refuse. */
        SSL_CTX_set_security_level(ctx, 0);
        SSL_CTX_set_min_proto_version(ctx, 0);
        SSL_CTX_set_max_proto_version(ctx, o->max_version);
        SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0");
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1
        || (o->cert && (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1
                        || SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1))) {
        say(info, "cannot load the test's files", ERR_reason_error_string(ERR_peek_last_error()));
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return -1;
    }
    int tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {10, 0};
    int one = 1;
    setsockopt(tcp, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(tcp, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(tcp, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    SSL *ssl = SSL_new(ctx);
    if (tcp < 0 || connect(tcp, (struct sockaddr *)&a, sizeof a) != 0 || !ssl) {
        say(info, "cannot connect", strerror(errno));
        goto fail;
    }
    SSL_set_fd(ssl, tcp);
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), "127.0.0.1");
    ERR_clear_error();
    if (SSL_connect(ssl) != 1) {
        unsigned long e = ERR_peek_last_error();
        long vr = SSL_get_verify_result(ssl);
        snprintf(reason, sizeof reason, "%s%s%s",
                 e ? ERR_reason_error_string(e) : "the server closed the connection",
                 vr != X509_V_OK ? ": " : "", vr != X509_V_OK ? X509_verify_cert_error_string(vr) : "");
        say(info, "handshake failed", reason);
        ERR_clear_error();
        goto fail;
    }
    if (info) {
        X509 *peer = SSL_get1_peer_certificate(ssl);
        hex_digest(peer, info->fingerprint);
        X509_free(peer);
        snprintf(info->version, sizeof info->version, "%s", SSL_get_version(ssl));
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        goto fail;
    pump *pm = malloc(sizeof *pm);
    *pm = (pump){ssl, ctx, tcp, sv[1]};
    pthread_t th;
    if (pthread_create(&th, NULL, pump_main, pm) != 0) {
        free(pm);
        close(sv[0]);
        close(sv[1]);
        goto fail;
    }
    pthread_detach(th);
    return sv[0];
fail:
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    if (tcp >= 0)
        close(tcp);
    return -1;
}
