/*
 * client.c - blocking client of the tokend wire protocol; see client.h and
 * docs/protocol.md. The operations, their fields, types and limits come
 * from one table, net/schema.h: one encoder writes any request from it and
 * one decoder reads any reply against it; a typed call only names its
 * values and copies the decoded ones into its result.
 *
 * Why it is built this way. The users are a CLI (one request at a time), a
 * load generator (many connections, deep verify pipelines) and gateways, so
 * the handle is a plain blocking socket with two byte buffers:
 *
 *   out  frames queued by tkc_send; written with send(MSG_DONTWAIT) and
 *        poll() when the kernel has no room;
 *   in   bytes read from the socket; frames are parsed in place and a reply
 *        body is handed out as a borrowed slice of this buffer.
 *
 * Both buffers and the scratch encoder are reused, so after warm-up a
 * pipelined verify costs no allocation: the request is encoded into the
 * scratch mpw, copied behind its header into `out`, and the reply is
 * decoded from `in` into the caller's tkc_verify_res, whose string storage
 * is sized once by the body length (a body of len bytes cannot hold more
 * than len bytes of strings and their NULs, since each string has at least
 * one header byte).
 *
 * While a flush waits for room to send it also reads whatever replies have
 * arrived: the server stops reading a connection with 1024 requests in
 * flight, so a client that only wrote could deadlock against it.
 *
 * Replies are decoded with the bounds-checked mpr cursor. The decoders are
 * strict where a wrong answer could mislead (types, required fields, UUID
 * and secret syntax, string lengths, UTF-8, embedded NULs, duplicate keys,
 * trailing bytes) and lenient only about unknown keys, which a later server
 * may add. A malformed reply is TK_EPROTO and the connection is dropped.
 *
 * Timeouts: each public call computes one deadline; every poll() waits at
 * most until it. Name resolution (getaddrinfo) is outside the deadline.
 *
 * TLS (tkc_set_tls): the context is made once per handle (net/tls.h, which
 * owns the policy and the messages); each connection gets an SSL on a
 * non-blocking socket, its handshake driven by poll() within the connect's
 * deadline. Then the two system calls of the stream, recv and send, become
 * tls_read and tls_write, and wait_io looks inside the SSL first (records
 * OpenSSL holds make no socket readable) and waits for writability when a
 * read has to send first (tls_ww).
 */
#include "net/client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "core/err.h"
#include "core/xmalloc.h"
#include "net/proto.h"
#include "net/schema.h"
#include "net/tls.h"
#include "store/keyfile.h"

_Static_assert(TKC_RING_KEY_LEN == KEYFILE_KEY_LEN, "a keyring key is a key file's key");

#define TKC_IN_INIT (64u << 10)
#define TKC_IN_MAX (256u << 20)   /* unread replies we are willing to hold */
#define TKC_OUT_FLUSH (64u << 10) /* queued bytes that trigger a send */
#define TKC_ADDR_MAX 300
#define TKC_PRINTF(f, a) __attribute__((format(printf, f, a)))

struct tkc {
    int fd;
    int timeout_ms;
    bool broken;      /* the stream's position is lost: only tkc_connect helps */
    bool refused;     /* the last failure was a server status */
    bool wipe_out;    /* out holds a credential (AUTH): wipe once sent */
    uint32_t next_id; /* id of the next request queued */
    uint32_t recv_id; /* id of the oldest request in flight */
    size_t inflight;
    char addr[TKC_ADDR_MAX];
    char err[TKC_ERRMSG_MAX];
    uint32_t retry_ms;  /* the last refusal's retry_after_ms (ERATE), else 0 */

    uint8_t *out;
    size_t out_off, out_len, out_cap;

    uint8_t *in;
    size_t in_start, in_end, in_cap;
    size_t consumed; /* bytes at in_start handed out by the last receive */

    mpw w; /* scratch encoder for request bodies */
    char *scratch; /* the strings of a reply that is not a page (call_scratch) */
    size_t scratch_cap;

    tls *tls;        /* TLS for the next connections (tkc_set_tls), or NULL */
    char *tls_name;  /* the name their certificates must carry, or NULL: the host */
    SSL *ssl;        /* this connection's session, or NULL */
    bool tls_ww;     /* the last TLS read must send first: wait to write */
};

/* ---- small helpers ------------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t deadline_of(const tkc *c)
{
    return c->timeout_ms > 0 ? now_ms() + c->timeout_ms : -1;
}

static uint32_t id_after(uint32_t id)
{
    return id == UINT32_MAX ? 1 : id + 1; /* 0 is the server's "no request" */
}

/* Starts a public call: forgets the last error. */
static void begin(tkc *c)
{
    c->err[0] = '\0';
    c->refused = false;
    c->retry_ms = 0;
}

static void set_errv(tkc *c, const char *fmt, va_list ap) TKC_PRINTF(2, 0);
static void set_errv(tkc *c, const char *fmt, va_list ap)
{
    vsnprintf(c->err, sizeof c->err, fmt, ap);
}

static int fail(tkc *c, int code, const char *fmt, ...) TKC_PRINTF(3, 4);
static int fail_conn(tkc *c, int code, const char *fmt, ...) TKC_PRINTF(3, 4);

/* A local failure that leaves the connection usable (a bad argument). */
static int fail(tkc *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_errv(c, fmt, ap);
    va_end(ap);
    c->refused = false;
    c->retry_ms = 0;
    return code;
}

/* A failure after which the stream cannot be trusted: the connection is
 * closed at once so the server sees it go. */
static int fail_conn(tkc *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_errv(c, fmt, ap);
    va_end(ap);
    c->refused = false;
    c->broken = true;
    tls_conn_end(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    return code;
}

static void wipe(void *p, size_t n)
{
    if (p && n)
        sodium_memzero(p, n);
}

/* ---- the handle --------------------------------------------------------- */

tkc *tkc_new(void)
{
    tkc *c = xcalloc(1, sizeof *c);
    c->fd = -1;
    c->timeout_ms = TKC_DEFAULT_TIMEOUT_MS;
    c->next_id = 1;
    c->recv_id = 1;
    mpw_init(&c->w);
    return c;
}

/* Drops the connection and everything queued or buffered. */
static void reset_conn(tkc *c)
{
    tls_conn_end(c->ssl); /* close_notify first */
    c->ssl = NULL;
    c->tls_ww = false;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->broken = false;
    c->wipe_out = false;
    c->next_id = c->recv_id = 1;
    c->inflight = 0;
    wipe(c->out, c->out_len);
    c->out_off = c->out_len = 0;
    wipe(c->in, c->in_end);
    c->in_start = c->in_end = c->consumed = 0;
}

void tkc_free(tkc *c)
{
    if (!c)
        return;
    reset_conn(c);
    wipe(c->w.buf.data, c->w.buf.alloc);
    mpw_free(&c->w);
    wipe(c->scratch, c->scratch_cap);
    free(c->scratch);
    tls_free(c->tls);
    free(c->tls_name);
    free(c->out);
    free(c->in);
    free(c);
}

void tkc_set_timeout(tkc *c, int ms)
{
    c->timeout_ms = ms;
}

int tkc_fd(const tkc *c)
{
    return c->fd;
}

const char *tkc_errmsg(const tkc *c)
{
    return c->err;
}

bool tkc_refused(const tkc *c)
{
    return c->refused;
}

uint32_t tkc_retry_after_ms(const tkc *c)
{
    return c->retry_ms;
}

size_t tkc_inflight(const tkc *c)
{
    return c->inflight;
}

static void setup_socket(int fd)
{
    int one = 1;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void tkc_attach(tkc *c, int fd)
{
    int one = 1;
    reset_conn(c);
    c->fd = fd;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails on non-TCP: fine */
    snprintf(c->addr, sizeof c->addr, "fd %d", fd);
}

int tkc_set_tls(tkc *c, const tkc_tls *t)
{
    tk_why why;
    begin(c);
    reset_conn(c);
    tls_free(c->tls);
    c->tls = NULL;
    free(c->tls_name);
    c->tls_name = NULL;
    if (!t)
        return 0;
    tls_client_opts o = {.ca = t->ca, .cert = t->cert, .key = t->key, .any_name = t->ca_only};
    int rc = tls_client_new(&o, &c->tls, &why);
    if (rc)
        return fail(c, rc, "%s", why.msg);
    c->tls_name = t->server_name ? xstrdup(t->server_name) : NULL;
    return 0;
}

/* The TLS handshake on c's new connection (fd non-blocking), until
 * deadline; host names the server unless tls_name does. 0 or TK_EIO (the
 * connection is closed). */
static int tls_start(tkc *c, const char *host, int64_t deadline)
{
    tk_why why;
    if (tls_conn_new(c->tls, c->fd, c->tls_name ? c->tls_name : host, &c->ssl) != 0)
        return fail_conn(c, TK_EIO, "cannot connect to %s: out of memory", c->addr);
    for (;;) {
        bool ww = false;
        if (tls_handshake(c->ssl, &ww, &why) == 0)
            return 0;
        if (errno != EAGAIN)
            return fail_conn(c, TK_EIO, "cannot connect to %s: %s", c->addr,
                             errno == EPROTO ? why.msg : strerror(errno));
        struct pollfd pfd = {.fd = c->fd, .events = ww ? POLLOUT : POLLIN};
        int64_t left = deadline >= 0 ? deadline - now_ms() : -1;
        if (deadline >= 0 && left <= 0)
            return fail_conn(c, TK_EIO, "cannot connect to %s: timed out in the TLS handshake",
                             c->addr);
        if (poll(&pfd, 1, left < 0 ? -1 : left > INT32_MAX ? INT32_MAX : (int)left) < 0
            && errno != EINTR)
            return fail_conn(c, TK_EIO, "poll: %s", strerror(errno));
    }
}

/* Splits "HOST:PORT" / "[V6]:PORT" into host and port (NUL-terminated
 * copies). 0 or TK_EINVAL. */
static int split_addr(const char *addr, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *h = addr, *hend, *p;

    if (addr[0] == '[') {
        h = addr + 1;
        hend = strchr(h, ']');
        if (!hend || hend[1] != ':')
            return TK_EINVAL;
        p = hend + 2;
    } else {
        hend = strrchr(addr, ':');
        if (!hend || memchr(addr, ':', (size_t)(hend - addr)))
            return TK_EINVAL; /* no port, or a bare IPv6 address */
        p = hend + 1;
    }
    size_t hn = (size_t)(hend - h), pn = strlen(p);
    if (hn == 0 || hn >= hcap || pn == 0 || pn > 5 || pn >= pcap)
        return TK_EINVAL;
    unsigned long v = 0;
    for (size_t i = 0; i < pn; i++) {
        if (p[i] < '0' || p[i] > '9')
            return TK_EINVAL;
        v = v * 10 + (unsigned long)(p[i] - '0');
    }
    if (v == 0 || v > 65535)
        return TK_EINVAL;
    memcpy(host, h, hn);
    host[hn] = '\0';
    memcpy(port, p, pn + 1);
    return 0;
}

/* Non-blocking connect to one address, waiting until deadline. Returns the
 * connected fd or -1 with errno set. */
static int connect_one(const struct addrinfo *ai, int64_t deadline)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0)
        return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        return fd;
    if (errno != EINPROGRESS)
        goto fail;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int wait = -1;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0) {
                errno = ETIMEDOUT;
                goto fail;
            }
            wait = left > INT32_MAX ? INT32_MAX : (int)left;
        }
        int n = poll(&pfd, 1, wait);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        if (n == 0) {
            errno = ETIMEDOUT;
            goto fail;
        }
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
            goto fail;
        if (soerr) {
            errno = soerr;
            goto fail;
        }
        return fd;
    }
fail:;
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

int tkc_connect(tkc *c, const char *addr)
{
    char host[256], port[8];
    struct addrinfo hints, *res = NULL;
    int64_t deadline = deadline_of(c);
    int fd = -1, saved = ECONNREFUSED;

    begin(c);
    reset_conn(c);
    if (!addr || split_addr(addr, host, sizeof host, port, sizeof port) != 0)
        return fail(c, TK_EINVAL, "bad address \"%s\": expected HOST:PORT ([V6ADDR]:PORT for IPv6)",
                    addr ? addr : "");
    snprintf(c->addr, sizeof c->addr, "%s", addr);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0) {
        return fail(c, TK_EIO, "cannot connect to %s: %s", addr, gai_strerror(g));
    }
    for (const struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = connect_one(ai, deadline);
        if (fd < 0)
            saved = errno;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        return fail(c, TK_EIO, "cannot connect to %s: %s", addr,
                    saved == ETIMEDOUT ? "timed out" : strerror(saved));
    }
    setup_socket(fd);
    c->fd = fd;
    if (c->tls) { /* OpenSSL's reads and writes must not block: the deadline is poll's */
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
            return fail_conn(c, TK_EIO, "cannot connect to %s: fcntl: %s", addr, strerror(errno));
        return tls_start(c, host, deadline);
    }
    return 0;
}

/* ---- raw I/O ------------------------------------------------------------ */

static int check_usable(tkc *c)
{
    if (c->fd < 0)
        return fail(c, TK_EIO,
                    c->broken ? "connection is closed after an earlier error" : "not connected");
    return 0;
}

/* Waits for events on the socket until deadline; *revents gets what came.
 * 0, or TK_EIO on timeout (connection dropped). */
static int wait_io(tkc *c, short events, int64_t deadline, short *revents)
{
    if (c->ssl && (events & POLLIN) && tls_pending(c->ssl)) {
        *revents = POLLIN; /* records OpenSSL holds: the socket will not say */
        return 0;
    }
    if (c->ssl && c->tls_ww)
        events |= POLLOUT; /* a read that must send first */
    for (;;) {
        struct pollfd pfd = {.fd = c->fd, .events = events};
        int wait = -1;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0)
                return fail_conn(c, TK_EIO, "timed out after %d ms waiting for %s", c->timeout_ms,
                                 c->addr);
            wait = left > INT32_MAX ? INT32_MAX : (int)left;
        }
        int n = poll(&pfd, 1, wait);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return fail_conn(c, TK_EIO, "poll: %s", strerror(errno));
        if (n == 0)
            continue; /* the deadline check above ends it */
        *revents = pfd.revents;
        return 0;
    }
}

/* Forgets the frame handed out by the last receive. */
static void drop_consumed(tkc *c)
{
    c->in_start += c->consumed;
    c->consumed = 0;
    if (c->in_start == c->in_end)
        c->in_start = c->in_end = 0;
}

/* Reads what the socket has into `in` without blocking. Returns the bytes
 * read (> 0), 0 when nothing was available, TK_EPROTO when the server
 * closed the connection (*eof set), or a local failure. */
static int read_some(tkc *c, bool *eof)
{
    drop_consumed(c);
    if (c->in_end == c->in_cap) {
        if (c->in_start > 0) {
            memmove(c->in, c->in + c->in_start, c->in_end - c->in_start);
            c->in_end -= c->in_start;
            c->in_start = 0;
        } else {
            size_t cap = c->in_cap ? c->in_cap * 2 : TKC_IN_INIT;
            if (cap > TKC_IN_MAX)
                return fail_conn(c, TK_EIO, "more than %u MiB of unread replies", TKC_IN_MAX >> 20);
            c->in = xrealloc(c->in, cap);
            c->in_cap = cap;
        }
    }
    for (;;) {
        tk_why why;
        ssize_t n = c->ssl ? tls_read(c->ssl, c->in + c->in_end, c->in_cap - c->in_end,
                                      &c->tls_ww, &why)
                           : recv(c->fd, c->in + c->in_end, c->in_cap - c->in_end, MSG_DONTWAIT);
        if (n > 0) {
            c->in_end += (size_t)n;
            return n > INT32_MAX ? INT32_MAX : (int)n;
        }
        if (n == 0) {
            *eof = true;
            return TK_EPROTO;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        if (errno == ECONNRESET) {
            *eof = true;
            return TK_EPROTO;
        }
        return fail_conn(c, TK_EIO, "receive from %s: %s", c->addr,
                         c->ssl && errno == EPROTO ? why.msg : strerror(errno));
    }
}

/* Decodes {"error": str, "retry_after_ms"?: uint} into c->err (one line,
 * control characters replaced; falls back to the status's name) and
 * c->retry_ms. */
static void set_server_msg(tkc *c, uint16_t status, const uint8_t *body, size_t len)
{
    mpr r;
    uint32_t n = 0;
    const char *msg = NULL;
    size_t mlen = 0;

    c->retry_ms = 0;
    mpr_init(&r, body, len);
    if (len > 0 && mpr_map(&r, &n) == 0) {
        for (uint32_t i = 0; i < n && !r.err; i++) {
            const char *k, *m;
            size_t kn, ml;
            uint64_t u;
            if (mpr_str(&r, &k, &kn) != 0)
                break;
            if (kn == 5 && !memcmp(k, "error", 5) && mpr_str(&r, &m, &ml) == 0) {
                msg = m;
                mlen = ml;
            } else if (kn == 14 && !memcmp(k, "retry_after_ms", 14) && mpr_uint(&r, &u) == 0) {
                c->retry_ms = u > UINT32_MAX ? UINT32_MAX : (uint32_t)u;
            } else if (mpr_skip(&r) != 0) {
                break;
            }
        }
    }
    if (!msg || mlen == 0 || !mpr_utf8_valid(msg, mlen)) {
        snprintf(c->err, sizeof c->err, "%s", tk_strerror(proto_err(status)));
        return;
    }
    if (mlen > sizeof c->err - 1)
        mlen = sizeof c->err - 1;
    for (size_t i = 0; i < mlen; i++) {
        unsigned char ch = (unsigned char)msg[i];
        c->err[i] = (char)(ch < 0x20 || ch == 0x7f ? ' ' : ch);
    }
    c->err[mlen] = '\0';
}

/* The peer went away: if it said why first (EBUSY at its connection limit,
 * ELIMIT for an oversized frame), that reply is the answer. */
static int peer_gone(tkc *c, const char *what)
{
    bool eof = false;
    while (!eof && c->fd >= 0 && read_some(c, &eof) > 0)
        ;
    if (c->fd >= 0 && c->in_end - c->in_start >= PROTO_HEADER_LEN) {
        proto_header h;
        proto_header_get(c->in + c->in_start, &h);
        size_t avail = c->in_end - c->in_start - PROTO_HEADER_LEN;
        if (h.code != 0 && h.len <= avail && (h.id == 0 || h.id == c->recv_id)) {
            set_server_msg(c, h.code, c->in + c->in_start + PROTO_HEADER_LEN, h.len);
            char msg[TKC_ERRMSG_MAX];
            memcpy(msg, c->err, sizeof msg);
            (void)fail_conn(c, proto_err(h.code), "%s", msg);
            c->refused = true;
            return proto_err(h.code);
        }
    }
    if (c->fd < 0 && c->err[0])
        return TK_EIO;
    return fail_conn(c, TK_EIO, "%s closed the connection%s", c->addr, what);
}

/* Sends everything queued, reading replies meanwhile when the kernel has
 * no room. 0 or a failure (connection dropped). */
static int flush_out(tkc *c, int64_t deadline)
{
    while (c->out_off < c->out_len) {
        tk_why why;
        ssize_t n =
            c->ssl ? tls_write(c->ssl, c->out + c->out_off, c->out_len - c->out_off, &why)
                   : send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                          MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            short rev = 0;
            int rc = wait_io(c, POLLOUT | POLLIN, deadline, &rev);
            if (rc)
                return rc;
            if (rev & POLLIN) {
                bool eof = false;
                rc = read_some(c, &eof);
                if (eof)
                    return peer_gone(c, " while requests were being sent");
                if (rc < 0)
                    return rc;
            }
            continue;
        }
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
            return peer_gone(c, " while requests were being sent");
        return fail_conn(c, TK_EIO, "send to %s: %s", c->addr,
                         c->ssl && errno == EPROTO ? why.msg : strerror(errno));
    }
    if (c->wipe_out) {
        wipe(c->out, c->out_len);
        c->wipe_out = false;
    }
    c->out_off = c->out_len = 0;
    return 0;
}

/* Appends one frame to `out`. */
static int queue_frame(tkc *c, uint16_t op, const void *body, size_t len, uint32_t *id)
{
    if (len > TKC_MAX_REPLY)
        return fail(c, TK_EINVAL, "request body of %zu bytes is too large", len);
    size_t end = c->out_len + PROTO_HEADER_LEN + len;
    if (end > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < end)
            cap *= 2;
        c->out = xrealloc(c->out, cap);
        c->out_cap = cap;
    }
    proto_header h = {.len = (uint32_t)len, .code = op, .flags = 0, .id = c->next_id};
    proto_header_put(c->out + c->out_len, &h);
    if (len)
        memcpy(c->out + c->out_len + PROTO_HEADER_LEN, body, len);
    c->out_len = end;
    if (id)
        *id = c->next_id;
    c->next_id = id_after(c->next_id);
    c->inflight++;
    return 0;
}

/* Receives the reply to the oldest request in flight: *h its header, *body
 * its body (inside `in`, valid until the next call). */
static int recv_frame(tkc *c, int64_t deadline, proto_header *h, uint8_t **body)
{
    int rc = check_usable(c);
    if (rc)
        return rc;
    if (c->inflight == 0)
        return fail(c, TK_EINVAL, "no request in flight");
    drop_consumed(c);
    if ((rc = flush_out(c, deadline)) != 0)
        return rc;
    for (;;) {
        size_t avail = c->in_end - c->in_start;
        if (avail >= PROTO_HEADER_LEN) {
            proto_header_get(c->in + c->in_start, h);
            if (h->len > TKC_MAX_REPLY)
                return fail_conn(c, TK_EPROTO, "reply of %u bytes exceeds the limit (%u)", h->len,
                                 TKC_MAX_REPLY);
            if (avail - PROTO_HEADER_LEN >= h->len)
                break;
        }
        short rev = 0;
        if ((rc = wait_io(c, POLLIN, deadline, &rev)) != 0)
            return rc;
        bool eof = false;
        rc = read_some(c, &eof);
        if (eof)
            return peer_gone(c, avail ? " in the middle of a reply" : "");
        if (rc < 0)
            return rc;
    }
    *body = c->in + c->in_start + PROTO_HEADER_LEN;
    if (h->id != c->recv_id) {
        if (h->id == 0 && h->code != 0) { /* the server's word on the connection */
            set_server_msg(c, h->code, *body, h->len);
            char msg[TKC_ERRMSG_MAX];
            memcpy(msg, c->err, sizeof msg);
            (void)fail_conn(c, proto_err(h->code), "%s", msg);
            c->refused = true;
            return proto_err(h->code);
        }
        return fail_conn(c, TK_EPROTO, "reply id %u does not match request id %u", h->id,
                         c->recv_id);
    }
    if (h->flags != 0)
        return fail_conn(c, TK_EPROTO, "reply with flags 0x%x", (unsigned)h->flags);
    c->consumed = PROTO_HEADER_LEN + h->len;
    c->recv_id = id_after(c->recv_id);
    c->inflight--;
    return 0;
}

/* ---- generic calls ------------------------------------------------------ */

int tkc_send(tkc *c, uint16_t op, const void *body, size_t len, uint32_t *id)
{
    begin(c);
    int rc = check_usable(c);
    if (rc)
        return rc;
    if ((rc = queue_frame(c, op, body, len, id)) != 0)
        return rc;
    if (c->out_len - c->out_off >= TKC_OUT_FLUSH)
        return flush_out(c, deadline_of(c));
    return 0;
}

int tkc_flush(tkc *c)
{
    begin(c);
    int rc = check_usable(c);
    return rc ? rc : flush_out(c, deadline_of(c));
}

int tkc_recv(tkc *c, uint16_t *status, const uint8_t **reply, size_t *reply_len)
{
    proto_header h = {0};
    uint8_t *body = NULL;

    begin(c);
    int rc = recv_frame(c, deadline_of(c), &h, &body);
    if (rc)
        return rc;
    if (h.code != 0)
        set_server_msg(c, h.code, body, h.len);
    if (status)
        *status = h.code;
    if (reply)
        *reply = body;
    if (reply_len)
        *reply_len = h.len;
    return 0;
}

int tkc_call(tkc *c, uint16_t op, const void *body, size_t len, uint16_t *status,
             const uint8_t **reply, size_t *reply_len)
{
    begin(c);
    int rc = check_usable(c);
    if (rc)
        return rc;
    if (c->inflight)
        return fail(c, TK_EINVAL, "%zu pipelined requests still in flight", c->inflight);
    if ((rc = queue_frame(c, op, body, len, NULL)) != 0)
        return rc;
    return tkc_recv(c, status, reply, reply_len);
}

/* Sends the body in c->w as op and waits for the reply. 0 with the body,
 * the server's refusal (message in c->err), or a local failure. */
static int roundtrip(tkc *c, uint16_t op, uint8_t **body, size_t *len)
{
    proto_header h = {0};
    int64_t deadline = deadline_of(c);
    int rc = check_usable(c);
    if (rc)
        return rc;
    if (c->inflight)
        return fail(c, TK_EINVAL, "%zu pipelined requests still in flight", c->inflight);
    rc = queue_frame(c, op, c->w.buf.data, c->w.buf.size, NULL);
    if (op == OP_AUTH) { /* the key: keep no copy beyond the send */
        wipe(c->w.buf.data, c->w.buf.size);
        c->wipe_out = true;
    }
    if (rc)
        return rc;
    if ((rc = recv_frame(c, deadline, &h, body)) != 0)
        return rc;
    *len = h.len;
    if (h.code != 0) {
        set_server_msg(c, h.code, *body, h.len);
        c->refused = true;
        return proto_err(h.code);
    }
    return 0;
}

/* ---- request encoding ---------------------------------------------------- *
 *
 * A typed call gives the values of its request's fields as an array of
 * fvals; enc_request writes the present ones in the schema's order (the
 * server takes any order), counts the map, and refuses what the schema
 * forbids (a required field missing, a value over its limit) before
 * anything is sent. */

/* One request field's value. */
typedef struct fval {
    sch_fid f;
    bool set;             /* absent fields are not sent */
    const char *s;        /* SCH_STR */
    const char *const *v; /* SCH_STRS: v[0..n) */
    size_t n;
    int64_t i; /* SCH_BOOL (0 or 1), SCH_UINT, SCH_INT */
} fval;

#define NARGS(a) (sizeof(a) / sizeof((a)[0]))

/* A string; NULL is absent. */
static fval a_str(sch_fid f, const char *s)
{
    return (fval){.f = f, .set = s != NULL, .s = s};
}

/* A list of strings, sent when set (even empty). */
static fval a_strs(sch_fid f, const char *const *v, size_t n, bool set)
{
    return (fval){.f = f, .set = set, .v = v, .n = n};
}

/* A bool or a number, sent when set. */
static fval a_num(sch_fid f, int64_t i, bool set)
{
    return (fval){.f = f, .set = set, .i = i};
}

/* Every listing's paging. */
#define PAGING(after, limit) a_str(SF_AFTER, after), a_num(SF_LIMIT, limit, (limit) != 0)

/* Checks a field's value against the schema (a limit of 0 is none). */
static int fval_check(tkc *c, const sch_field *f, const fval *a)
{
    switch (f->type) {
    case SCH_STR:
        if (f->max && strlen(a->s) > f->max)
            return fail(c, TK_EINVAL, "%s is longer than %u bytes", f->name, f->max);
        return 0;
    case SCH_BOOL: return a->i == 0 || a->i == 1 ? 0 : fail(c, TK_EINVAL, "%s: not 0 or 1", f->name);
    case SCH_UINT:
        if (a->i < 0 || (f->max && (uint64_t)a->i > f->max))
            return fail(c, TK_EINVAL, "%s: %lld is out of range (0 to %u)", f->name,
                        (long long)a->i, f->max);
        return 0;
    case SCH_INT: return 0;
    case SCH_STRS:
        if (a->n && !a->v)
            return fail(c, TK_EINVAL, "bad %s list", f->name);
        if (f->max && a->n > f->max)
            return fail(c, TK_EINVAL, "%s: %zu of them, at most %u", f->name, a->n, f->max);
        for (size_t i = 0; i < a->n; i++) {
            if (!a->v[i])
                return fail(c, TK_EINVAL, "%s %zu is NULL", f->name, i);
            if (f->elem_max && strlen(a->v[i]) > f->elem_max)
                return fail(c, TK_EINVAL, "%s %zu is longer than %u bytes", f->name, i,
                            f->elem_max);
        }
        return 0;
    case SCH_ROWS: break;
    }
    return fail(c, TK_EINVAL, "%s cannot be sent", f->name);
}

static void put_value(mpw *w, const sch_field *f, const fval *a)
{
    mpw_str(w, f->name, f->len);
    switch (f->type) {
    case SCH_STR: mpw_cstr(w, a->s); break;
    case SCH_BOOL: mpw_bool(w, a->i == 1); break;
    case SCH_UINT: mpw_uint(w, (uint64_t)a->i); break;
    case SCH_INT: mpw_int(w, a->i); break;
    case SCH_STRS:
        mpw_array(w, (uint32_t)a->n);
        for (size_t i = 0; i < a->n; i++)
            mpw_cstr(w, a->v[i]);
        break;
    case SCH_ROWS: break; /* refused by fval_check */
    }
}

/* Encodes op's request from a[0..na) into c->w. 0 or TK_EINVAL (nothing
 * encoded: a field missing, over its limit, or not op's). */
static int enc_request(tkc *c, const sch_op *op, const fval *a, size_t na)
{
    const fval *by[SCH_MAX_USES] = {NULL}; /* the value of each of op's fields */
    uint32_t n = 0;

    for (size_t k = 0; k < na; k++) {
        size_t i = 0;
        while (SCH_USED(&op->req[i]) && op->req[i].f != a[k].f)
            i++;
        if (!SCH_USED(&op->req[i]))
            return fail(c, TK_EINVAL, "%s has no field %s", op->name, sch_fields[a[k].f].name);
        if (a[k].set)
            by[i] = &a[k];
    }
    for (size_t i = 0; SCH_USED(&op->req[i]); i++) {
        const sch_field *f = &sch_fields[op->req[i].f];
        if (!by[i] && op->req[i].required)
            return fail(c, TK_EINVAL, "%s is required", f->name);
        if (by[i] && fval_check(c, f, by[i]) != 0)
            return TK_EINVAL;
        n += by[i] != NULL;
    }
    mpw_reset(&c->w);
    mpw_map(&c->w, n);
    for (size_t i = 0; SCH_USED(&op->req[i]); i++)
        if (by[i])
            put_value(&c->w, &sch_fields[op->req[i].f], by[i]);
    return 0;
}

/* The verify request, specialised: it runs per request on a gateway's
 * pipeline (no schema walk, no args), with the schema's names. */
void tkc_verify_encode(mpw *w, const char *secret, size_t secret_len, const char *client_id)
{
    mpw_map(w, client_id ? 2 : 1);
    mpw_str(w, sch_fields[SF_SECRET].name, sch_fields[SF_SECRET].len);
    mpw_str(w, secret, secret_len);
    if (client_id) {
        mpw_str(w, sch_fields[SF_CLIENT_ID].name, sch_fields[SF_CLIENT_ID].len);
        mpw_cstr(w, client_id);
    }
}

/* Checks a result pointer the caller must give. */
static int need(tkc *c, const char *what, const void *p)
{
    return p ? 0 : fail(c, TK_EINVAL, "%s is required", what);
}

/* ---- reply decoding ------------------------------------------------------ *
 *
 * walk_map reads one map against a list of the schema's fields (a reply's,
 * or a listing row's): each known key's value goes to a sink, unknown keys
 * are skipped (a later server may add some), a key twice is refused, and
 * every required field must come. The generic sink (put_dval) checks each
 * value against its field's type and limits and keeps it in a dval; the
 * typed calls then copy dvals into their results, checking what the
 * schema cannot say (UUIDs, secrets, the cursor rule). The verify decoder
 * has its own sink, straight into tkc_verify_res: see there.
 *
 * Strings are copied, NUL-terminated, into a store sized by the body: a
 * body of len bytes holds at most len bytes of strings and NULs, since
 * every string has at least one header byte. */

/* A reply body is a map; an empty body is an empty map. */
static int dec_map(mpr *r, const void *body, size_t len, uint32_t *n)
{
    mpr_init(r, body, len);
    if (len == 0) {
        *n = 0;
        return 0;
    }
    return mpr_map(r, n);
}

/* Whether name is k[0..kn): the first differing byte ends it, and nothing
 * is read past name's NUL. */
static bool name_is(const char *name, const char *k, size_t kn)
{
    size_t i = 0;
    while (i < kn && name[i] == k[i] && name[i] != '\0')
        i++;
    return i == kn && name[i] == '\0';
}

/* sch_find_use, tuned for the verify path (every key of every reply):
 * the search starts at from, the field after the last one found, so a
 * reply written in the schema's order (as tokend writes it) finds each key
 * at the first comparison; any order is still found. */
static const sch_use *use_named(const sch_use *uses, const sch_use *from, const char *k, size_t kn)
{
    for (const sch_use *u = from; SCH_USED(u); u++)
        if (name_is(sch_fields[u->f].name, k, kn))
            return u;
    for (const sch_use *u = uses; u != from; u++)
        if (name_is(sch_fields[u->f].name, k, kn))
            return u;
    return NULL;
}

/* Reads the value of u (the sink must consume exactly one value). */
typedef int (*field_fn)(void *arg, mpr *r, const sch_use *u);

/* Reads n keys of a map of the fields uses. *unseen (may be NULL) gets how
 * many of the fields did not come. 0 or TK_EPROTO. */
static int walk_map(mpr *r, uint32_t n, const sch_use *uses, field_fn fn, void *arg,
                    size_t *unseen)
{
    bool seen[SCH_MAX_USES] = {false};
    size_t missing = 0;
    const sch_use *from = uses;

    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        size_t kn;
        if (mpr_str(r, &k, &kn) != 0)
            return TK_EPROTO;
        const sch_use *u = use_named(uses, from, k, kn);
        if (!u) {
            if (mpr_skip(r) != 0)
                return TK_EPROTO;
            continue;
        }
        if (seen[u - uses])
            return TK_EPROTO;
        seen[u - uses] = true;
        from = u + 1;
        if (fn(arg, r, u) != 0)
            return TK_EPROTO;
    }
    for (const sch_use *u = uses; SCH_USED(u); u++) {
        if (!seen[u - uses] && u->required)
            return TK_EPROTO;
        missing += !seen[u - uses];
    }
    if (unseen)
        *unseen = missing;
    return 0;
}

/* Where strings go. */
typedef struct store {
    char *p;
    size_t used;
} store;

/* Ensures *p holds at least need bytes (reused across calls). */
static void store_reserve(char **p, size_t *cap, size_t need_bytes)
{
    if (need_bytes > *cap) {
        size_t n = *cap ? *cap : 256;
        while (n < need_bytes)
            n *= 2;
        free(*p);
        *p = xmalloc(n);
        *cap = n;
    }
}

/* Appends a string to a store of known sufficient size. */
static const char *store_put(store *st, const char *s, size_t n)
{
    char *p = st->p + st->used;
    memcpy(p, s, n);
    p[n] = '\0';
    st->used += n + 1;
    return p;
}

/* A string acceptable to hand to C callers: at most max bytes (0: any),
 * UTF-8, no NUL. Borrowed from the body. */
static int dec_text(mpr *r, uint32_t max, const char **s, size_t *n)
{
    if (mpr_str(r, s, n) != 0 || (max && *n > max) || memchr(*s, '\0', *n) ||
        !mpr_utf8_valid(*s, *n))
        return TK_EPROTO;
    return 0;
}

/* s[0..n) into dst[cap]. The schema's limits and the result's arrays
 * agree; a string too long for its array is refused all the same. */
static int copy_text(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        return TK_EPROTO;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

/* A string of field f into dst[cap]. */
static int dec_copy(mpr *r, const sch_field *f, char *dst, size_t cap)
{
    const char *s;
    size_t n;
    return dec_text(r, f->max, &s, &n) != 0 ? TK_EPROTO : copy_text(dst, cap, s, n);
}

/* An array of at most max strings of at most elem_max bytes (0: any), copied one
 * after the other into st from *first on; out[i] (out may be NULL) gets
 * each. */
static int dec_strs(mpr *r, uint32_t max, uint32_t elem_max, store *st, const char **out,
                    const char **first, size_t *count)
{
    uint32_t n;
    if (mpr_array(r, &n) != 0 || (max && n > max))
        return TK_EPROTO;
    *first = "";
    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        size_t sn;
        if (dec_text(r, elem_max, &s, &sn) != 0)
            return TK_EPROTO;
        s = store_put(st, s, sn);
        if (i == 0)
            *first = s;
        if (out)
            out[i] = s;
    }
    *count = n;
    return 0;
}

/* A canonical lowercase UUID; *id (may be NULL) gets it. */
static int uuid_ok(const char *s, size_t n, tk_id *id)
{
    tk_id tmp;
    if (secret_id_parse(s, n, &tmp) != 0)
        return TK_EPROTO;
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 'A' && s[i] <= 'F')
            return TK_EPROTO;
    if (id)
        *id = tmp;
    return 0;
}

/* One decoded field (dvals are indexed by sch_fid). An absent field reads
 * as "", 0, false. */
typedef struct dval {
    bool set;
    bool b;           /* SCH_BOOL */
    const char *s;    /* SCH_STR; SCH_STRS: the first of n strings, one after the other */
    size_t n;         /* SCH_STR: bytes; SCH_STRS: strings; SCH_ROWS: rows */
    uint64_t u;       /* SCH_UINT */
    int64_t i;        /* SCH_INT */
} dval;

static void dval_clear(dval *v, const sch_use *uses)
{
    for (const sch_use *u = uses; SCH_USED(u); u++)
        v[u->f] = (dval){.s = ""};
}

/* Copies a listing's row, or a get's reply, into the typed result. */
typedef int (*row_fn)(void *arg, const dval *v, size_t i, size_t n);

/* The generic sink's state: the values of the map being read, the store,
 * and the rows' fields and sink (while not inside a row: rows never nest). */
typedef struct dec {
    dval *v;
    store *st;
    const sch_use *row;
    row_fn on_row;
    void *arg;
} dec;

static int put_dval(void *arg, mpr *r, const sch_use *u);

/* A listing's rows: each a map of d->row's fields, handed to d->on_row. */
static int dec_rows(mpr *r, dec *d, size_t *count)
{
    uint32_t n;
    dval v[SF_COUNT];
    dec in = {v, d->st, NULL, NULL, NULL};

    if (!d->row || mpr_array(r, &n) != 0 || n > TKC_LIST_MAX)
        return TK_EPROTO;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t nk;
        dval_clear(v, d->row);
        if (mpr_map(r, &nk) != 0 || walk_map(r, nk, d->row, put_dval, &in, NULL) != 0 ||
            d->on_row(d->arg, v, i, n) != 0)
            return TK_EPROTO;
    }
    *count = n;
    return 0;
}

/* Every SCH_INT of the protocol is a time, unix seconds: never negative. */
static int put_dval(void *arg, mpr *r, const sch_use *u)
{
    dec *d = arg;
    const sch_field *f = &sch_fields[u->f];
    dval *v = &d->v[u->f];
    const char *s;

    v->set = true;
    switch (f->type) {
    case SCH_STR:
        if (dec_text(r, f->max, &s, &v->n) != 0)
            return TK_EPROTO;
        v->s = store_put(d->st, s, v->n);
        return 0;
    case SCH_BOOL: return mpr_bool(r, &v->b) != 0 ? TK_EPROTO : 0;
    case SCH_UINT: return mpr_uint(r, &v->u) != 0 || (f->max && v->u > f->max) ? TK_EPROTO : 0;
    case SCH_INT: return mpr_int(r, &v->i) != 0 || v->i < 0 ? TK_EPROTO : 0;
    case SCH_STRS: return dec_strs(r, f->max, f->elem_max, d->st, NULL, &v->s, &v->n);
    case SCH_ROWS: return dec_rows(r, d, &v->n);
    }
    return TK_EPROTO;
}

/* ---- from dvals to typed results (what the schema cannot say) ------------ */

static int text_to(const dval *v, char *dst, size_t cap)
{
    return copy_text(dst, cap, v->s, v->n);
}

static int uuid_to(const dval *v, char *dst, tk_id *id)
{
    return uuid_ok(v->s, v->n, id) != 0 ? TK_EPROTO : text_to(v, dst, TK_ID_STR_LEN + 1);
}

/* A well-formed secret of the given kind (prefix, checksum); *id gets the
 * client ID it carries. */
static int secret_to(const dval *v, tk_kind want, char *dst, tk_id *id)
{
    tk_kind kind;
    uint8_t hash[TK_HASH_LEN];
    if (secret_parse(v->s, v->n, &kind, id, hash) != 0 || kind != want)
        return TK_EPROTO;
    return text_to(v, dst, TK_SECRET_LEN + 1);
}

/* A keyring key of the kind asked for: the key files' form, its prefix
 * the kind's. */
static int ring_key_to(const dval *v, bool gateway, char dst[TKC_RING_KEY_LEN + 1])
{
    if (!keyfile_key_ok(v->s, v->n, gateway ? "tkg_" : "tko_"))
        return TK_EPROTO;
    return text_to(v, dst, TKC_RING_KEY_LEN + 1);
}

static int u32_to(const dval *v, uint32_t *out)
{
    if (v->u > UINT32_MAX)
        return TK_EPROTO;
    *out = (uint32_t)v->u;
    return 0;
}

/* A list's strings into out[cap]. */
static int strs_to(const dval *v, const char **out, size_t cap, uint32_t *count)
{
    const char *s = v->s;
    if (v->n > cap)
        return TK_EPROTO;
    for (size_t i = 0; i < v->n; i++, s += strlen(s) + 1)
        out[i] = s;
    *count = (uint32_t)v->n;
    return 0;
}

/* Makes room for n rows (allocated anew only when more than before). */
static void *rows_grow(void *rows, size_t *cap, size_t n, size_t size)
{
    if (n <= *cap)
        return rows;
    free(rows);
    *cap = n;
    return xcalloc(n, size);
}

/* ---- calls --------------------------------------------------------------- */

/* A malformed reply: the connection is dropped (the server broke the
 * contract; what follows cannot be trusted). */
static int bad_reply(tkc *c, const char *what)
{
    return fail_conn(c, TK_EPROTO, "malformed %s reply from %s", what, c->addr);
}

/* Runs op: its request from a[0..na), then its reply decoded against the
 * schema into v (rows, for a listing, to on_row), strings into *buf
 * (reserved here to the reply's size). 0, TK_EINVAL (nothing sent), the
 * server's refusal, a local failure, or TK_EPROTO for a malformed reply
 * (the connection is dropped). */
static int call_op(tkc *c, const sch_op *op, const fval *a, size_t na, char **buf, size_t *cap,
                   dval *v, row_fn on_row, void *row_arg)
{
    uint8_t *body = NULL;
    size_t len = 0;
    uint32_t n;
    mpr r;

    begin(c);
    int rc = enc_request(c, op, a, na);
    if (rc == 0)
        rc = roundtrip(c, op->code, &body, &len);
    if (rc)
        return rc;
    store_reserve(buf, cap, len + 1);
    store st = {*buf, 0};
    dec d = {v, &st, op->get ? NULL : op->row, on_row, row_arg};
    dval_clear(v, sch_reply(op));
    if (dec_map(&r, body, len, &n) != 0 || walk_map(&r, n, sch_reply(op), put_dval, &d, NULL) != 0
        || !mpr_done(&r))
        return bad_reply(c, op->name);
    return 0;
}

/* A call whose reply is decoded into the handle's scratch store. */
static int call_scratch(tkc *c, uint16_t code, const fval *a, size_t na, dval *v)
{
    return call_op(c, sch_find(code), a, na, &c->scratch, &c->scratch_cap, v, NULL, NULL);
}

/* A change whose reply is {} (keys unknown to us skipped). */
static int write_call(tkc *c, uint16_t code, const fval *a, size_t na)
{
    dval v[SF_COUNT];
    return call_scratch(c, code, a, na, v);
}

/* The reply carried a new secret: wipe every copy but the caller's (on
 * failure too, and the caller's then). */
static int secret_done(tkc *c, int rc, void *out, size_t size)
{
    if (c->in)
        wipe(c->in + c->in_start, c->consumed);
    wipe(c->scratch, c->scratch_cap);
    if (rc)
        wipe(out, size);
    return rc;
}

/* A page, as every page type has it (borrowed from the typed page). */
typedef struct page_ref {
    size_t *n;
    bool *more;
    char *next;
    size_t next_cap;
    tkc_page_st_ *st;
    row_fn row;
    void *arg;
} page_ref;

#define PAGE_REF(p, fn)                                                                     \
    ((p) ? (page_ref){&(p)->n, &(p)->more, (p)->next, sizeof(p)->next, &(p)->st_, (fn), (p)} \
         : (page_ref){0})

/* "more" comes with rows and with the cursor of the rest, "next" only with
 * "more". */
static int page_tail(const dval *v, page_ref pg)
{
    *pg.more = v[SF_MORE].b;
    if (v[SF_NEXT].set && (v[SF_NEXT].n == 0 || text_to(&v[SF_NEXT], pg.next, pg.next_cap) != 0))
        return TK_EPROTO;
    return *pg.more != v[SF_NEXT].set || (*pg.more && *pg.n == 0) ? TK_EPROTO : 0;
}

static void page_clear(page_ref pg)
{
    *pg.n = 0;
    *pg.more = false;
    pg.next[0] = '\0';
}

/* A listing (a page of rows) or a get (the page's one row). */
static int read_call(tkc *c, uint16_t code, const fval *a, size_t na, page_ref pg)
{
    const sch_op *op = sch_find(code);
    dval v[SF_COUNT];

    if (!pg.n)
        return need(c, "page", NULL);
    page_clear(pg);
    int rc = call_op(c, op, a, na, &pg.st->store_, &pg.st->store_cap_, v, pg.row, pg.arg);
    if (rc == 0 && (op->get ? pg.row(pg.arg, v, 0, 1) : page_tail(v, pg)) != 0)
        rc = bad_reply(c, op->name);
    if (rc)
        page_clear(pg);
    return rc;
}

static void page_free(void *page, size_t size, void *rows, tkc_page_st_ *st)
{
    free(rows);
    free(st->store_);
    memset(page, 0, size);
}

/* ---- the rows ------------------------------------------------------------ */
/* Each gets row i of n (the first call makes room for all) from v. */

static int token_row(void *arg, const dval *v, size_t i, size_t n)
{
    tkc_token_page *p = arg;
    if (i == 0)
        p->tokens = rows_grow(p->tokens, &p->st_.cap_, n, sizeof *p->tokens);
    tkc_token *t = &p->tokens[i];
    memset(t, 0, sizeof *t);
    t->description = v[SF_DESCRIPTION].s;
    t->created_at = v[SF_CREATED_AT].i;
    t->expires_at = v[SF_EXPIRES_AT].i;
    p->n = i + 1;
    return uuid_to(&v[SF_CLIENT_ID], t->client_id, NULL) ||
           strs_to(&v[SF_ROLES], t->roles, TK_MAX_ROLES, &t->nroles) ||
           text_to(&v[SF_CREATED_BY], t->created_by, sizeof t->created_by) ? TK_EPROTO : 0;
}

static int tenant_row(void *arg, const dval *v, size_t i, size_t n)
{
    tkc_tenant_page *p = arg;
    if (i == 0)
        p->tenants = rows_grow(p->tenants, &p->st_.cap_, n, sizeof *p->tenants);
    tkc_tenant *t = &p->tenants[i];
    memset(t, 0, sizeof *t);
    t->api_tokens = v[SF_API_TOKENS].b;
    p->n = i + 1;
    return text_to(&v[SF_TENANT], t->tenant, sizeof t->tenant) ||
           u32_to(&v[SF_MAX_TOKENS], &t->max_tokens) || u32_to(&v[SF_MAX_ROLES], &t->max_roles) ||
           u32_to(&v[SF_MAX_KEYS], &t->max_keys) || u32_to(&v[SF_CREATE_RATE], &t->create_rate) ||
           u32_to(&v[SF_CREATE_BURST], &t->create_burst) ||
           u32_to(&v[SF_ROLE_COUNT], &t->role_count) ||
           u32_to(&v[SF_PERM_COUNT], &t->permission_count) ? TK_EPROTO : 0;
}

static int perm_row(void *arg, const dval *v, size_t i, size_t n)
{
    tkc_perm_page *p = arg;
    if (i == 0)
        p->perms = rows_grow(p->perms, &p->st_.cap_, n, sizeof *p->perms);
    p->perms[i] = (tkc_perm){v[SF_KEY].s, v[SF_DESCRIPTION].s};
    p->n = i + 1;
    return 0;
}

static int role_row(void *arg, const dval *v, size_t i, size_t n)
{
    tkc_role_page *p = arg;
    if (i == 0)
        p->roles = rows_grow(p->roles, &p->st_.cap_, n, sizeof *p->roles);
    tkc_role *r = &p->roles[i];
    r->key = v[SF_KEY].s;
    r->name = v[SF_NAME].s;
    p->n = i + 1;
    return u32_to(&v[SF_LEVEL], &r->level) ||
           strs_to(&v[SF_PERMISSIONS], r->perms, TK_MAX_ROLE_PERMS, &r->nperms) ? TK_EPROTO : 0;
}

static int account_row(void *arg, const dval *v, size_t i, size_t n)
{
    tkc_account_page *p = arg;
    if (i == 0)
        p->accounts = rows_grow(p->accounts, &p->st_.cap_, n, sizeof *p->accounts);
    tkc_account *a = &p->accounts[i];
    p->n = i + 1;
    return text_to(&v[SF_ACCOUNT], a->account, sizeof a->account) ||
           u32_to(&v[SF_TOKEN_COUNT], &a->token_count) ? TK_EPROTO : 0;
}

static int user_row(void *arg, const dval *v, size_t i, size_t n)
{
    tkc_user_page *p = arg;
    if (i == 0)
        p->users = rows_grow(p->users, &p->st_.cap_, n, sizeof *p->users);
    tkc_user *u = &p->users[i];
    u->portal = v[SF_PORTAL].b;
    p->n = i + 1;
    return text_to(&v[SF_USER], u->user, sizeof u->user) ||
           strs_to(&v[SF_ROLES], u->roles, TK_MAX_ROLES, &u->nroles) ||
           u32_to(&v[SF_KEY_COUNT], &u->key_count) ? TK_EPROTO : 0;
}

static int key_row(void *arg, const dval *v, size_t i, size_t n)
{
    tkc_key_page *p = arg;
    if (i == 0)
        p->keys = rows_grow(p->keys, &p->st_.cap_, n, sizeof *p->keys);
    tkc_key_info *k = &p->keys[i];
    k->created_at = v[SF_CREATED_AT].i;
    k->expires_at = v[SF_EXPIRES_AT].i;
    p->n = i + 1;
    return uuid_to(&v[SF_KEY_ID], k->key_id, NULL);
}

static int ring_row(void *arg, const dval *v, size_t i, size_t n)
{
    tkc_ring_page *p = arg;
    if (i == 0)
        p->keyring = rows_grow(p->keyring, &p->st_.cap_, n, sizeof *p->keyring);
    tkc_ring *k = &p->keyring[i];
    k->gateway = v[SF_GATEWAY].b;
    k->created_at = v[SF_CREATED_AT].i;
    p->n = i + 1;
    return text_to(&v[SF_NAME], k->name, sizeof k->name);
}

void tkc_token_page_free(tkc_token_page *p)
{
    if (p)
        page_free(p, sizeof *p, p->tokens, &p->st_);
}

void tkc_tenant_page_free(tkc_tenant_page *p)
{
    if (p)
        page_free(p, sizeof *p, p->tenants, &p->st_);
}

void tkc_perm_page_free(tkc_perm_page *p)
{
    if (p)
        page_free(p, sizeof *p, p->perms, &p->st_);
}

void tkc_role_page_free(tkc_role_page *p)
{
    if (p)
        page_free(p, sizeof *p, p->roles, &p->st_);
}

void tkc_account_page_free(tkc_account_page *p)
{
    if (p)
        page_free(p, sizeof *p, p->accounts, &p->st_);
}

void tkc_user_page_free(tkc_user_page *p)
{
    if (p)
        page_free(p, sizeof *p, p->users, &p->st_);
}

void tkc_key_page_free(tkc_key_page *p)
{
    if (p)
        page_free(p, sizeof *p, p->keys, &p->st_);
}

void tkc_ring_page_free(tkc_ring_page *p)
{
    if (p)
        page_free(p, sizeof *p, p->keyring, &p->st_);
}

/* ---- verify -------------------------------------------------------------- *
 *
 * The verify reply has its own sink: it runs once per request on a
 * gateway's pipeline, so it decodes each field straight into the caller's
 * tkc_verify_res (no dvals, no second copy) and allocates nothing once the
 * result's store is large enough. It walks the schema's VERIFY reply all
 * the same (names, required fields, limits). */

typedef struct vdec {
    tkc_verify_res *res;
    store st;
    bool valid;
    tk_verdict v;
} vdec;

static int verdict_of(const char *s, size_t n, tk_verdict *v)
{
    static const tk_verdict all[] = {TK_V_VALID,      TK_V_MALFORMED, TK_V_UNKNOWN, TK_V_MISMATCH,
                                     TK_V_WRONG_KIND, TK_V_DISABLED,  TK_V_EXPIRED,
                                     TK_V_UNAVAILABLE};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        const char *name = model_verdict_name(all[i]);
        if (strlen(name) == n && !memcmp(name, s, n)) {
            *v = all[i];
            return 0;
        }
    }
    return TK_EPROTO;
}

/* The schema's limit (0: none), but no more than the result holds. */
static uint32_t within(uint32_t max, uint32_t cap)
{
    return max && max < cap ? max : cap;
}

static int put_verify(void *arg, mpr *r, const sch_use *u)
{
    vdec *x = arg;
    tkc_verify_res *res = x->res;
    const sch_field *f = &sch_fields[u->f];
    const char *s;
    size_t n = 0;
    bool bad;

    switch (u->f) {
    case SF_VALID: bad = mpr_bool(r, &x->valid) != 0; break;
    case SF_REASON: bad = dec_text(r, f->max, &s, &n) != 0 || verdict_of(s, n, &x->v) != 0; break;
    case SF_CLIENT_ID: /* the UUID's syntax says more than dec_text would */
        bad = mpr_str(r, &s, &n) != 0 || (f->max && n > f->max) || uuid_ok(s, n, NULL) != 0 ||
              copy_text(res->client_id, sizeof res->client_id, s, n) != 0;
        break;
    case SF_TENANT: bad = dec_copy(r, f, res->tenant, sizeof res->tenant) != 0; break;
    case SF_ACCOUNT: bad = dec_copy(r, f, res->account, sizeof res->account) != 0; break;
    case SF_ROLES:
        bad = dec_strs(r, within(f->max, TK_MAX_ROLES), f->elem_max, &x->st, res->roles, &s, &n);
        res->nroles = (uint32_t)n;
        break;
    case SF_GRANTS:
        bad = dec_strs(r, within(f->max, TK_MAX_TENANT_PERMS), f->elem_max, &x->st, res->perms,
                       &s, &n);
        res->nperms = (uint32_t)n;
        break;
    case SF_EXPIRES_AT: bad = mpr_int(r, &res->expires_at) != 0 || res->expires_at < 0; break;
    default: bad = mpr_skip(r) != 0; /* a field this client has no use for */
    }
    return bad ? TK_EPROTO : 0;
}

static void verify_clear(tkc_verify_res *res)
{
    res->valid = false;
    res->verdict = TK_V_MALFORMED;
    res->reason = model_verdict_name(TK_V_MALFORMED);
    res->client_id[0] = res->tenant[0] = res->account[0] = '\0';
    res->expires_at = 0;
    res->nroles = res->nperms = 0;
}

int tkc_verify_decode(const void *body, size_t len, tkc_verify_res *res)
{
    const sch_use *uses = sch_reply(sch_find(OP_VERIFY));
    vdec x = {res, {NULL, 0}, false, TK_V_MALFORMED};
    size_t unseen = 0;
    uint32_t n;
    mpr r;

    verify_clear(res);
    store_reserve(&res->store_, &res->store_cap_, len + 1);
    x.st.p = res->store_;
    if (dec_map(&r, body, len, &n) != 0 || walk_map(&r, n, uses, put_verify, &x, &unseen) != 0 ||
        !mpr_done(&r))
        goto fail;
    /* "valid" agrees with "reason"; a valid answer carries every field. */
    if (x.valid != (x.v == TK_V_VALID) || (x.valid && unseen != 0))
        goto fail;
    if (!x.valid)
        verify_clear(res);
    res->valid = x.valid;
    res->verdict = x.v;
    res->reason = model_verdict_name(x.v);
    return 0;
fail:
    verify_clear(res);
    return TK_EPROTO;
}

void tkc_verify_res_free(tkc_verify_res *r)
{
    if (!r)
        return;
    free(r->store_);
    r->store_ = NULL;
    r->store_cap_ = 0;
    verify_clear(r);
}

/* ---- operations ---------------------------------------------------------- */

int tkc_ping(tkc *c, uint32_t *version)
{
    dval v[SF_COUNT];
    uint32_t ver;
    int rc = call_scratch(c, OP_PING, NULL, 0, v);
    if (rc == 0 && u32_to(&v[SF_VERSION], &ver) != 0)
        return bad_reply(c, "PING");
    if (rc == 0 && version)
        *version = ver;
    return rc;
}

static int actor_of(const dval *v, tkc_actor *a)
{
    static const struct {
        const char *name;
        tkc_actor actor;
    } all[] = {{"operator", TKC_ACTOR_OPERATOR}, {"user", TKC_ACTOR_USER},
               {"gateway", TKC_ACTOR_GATEWAY}};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(v->s, all[i].name) == 0) {
            *a = all[i].actor;
            return 0;
        }
    }
    return TK_EPROTO;
}

int tkc_auth(tkc *c, const char *key, tkc_whoami *who)
{
    const fval a[] = {a_str(SF_KEY, key)};
    dval v[SF_COUNT];
    tkc_whoami tmp;

    who = who ? who : &tmp;
    memset(who, 0, sizeof *who);
    int rc = call_scratch(c, OP_AUTH, a, NARGS(a), v);
    if (rc == 0 && (actor_of(&v[SF_ACTOR], &who->actor) != 0 ||
                    text_to(&v[SF_TENANT], who->tenant, sizeof who->tenant) != 0 ||
                    text_to(&v[SF_ACCOUNT], who->account, sizeof who->account) != 0 ||
                    text_to(&v[SF_USER], who->user, sizeof who->user) != 0))
        rc = bad_reply(c, "AUTH");
    if (rc)
        memset(who, 0, sizeof *who);
    return rc;
}

int tkc_verify_send(tkc *c, const char *secret, const char *client_id)
{
    begin(c);
    if (!secret)
        return fail(c, TK_EINVAL, "%s is required", sch_fields[SF_SECRET].name);
    int rc = check_usable(c);
    if (rc)
        return rc;
    mpw_reset(&c->w);
    tkc_verify_encode(&c->w, secret, strlen(secret), client_id);
    if ((rc = queue_frame(c, OP_VERIFY, c->w.buf.data, c->w.buf.size, NULL)) != 0)
        return rc;
    if (c->out_len - c->out_off >= TKC_OUT_FLUSH)
        return flush_out(c, deadline_of(c));
    return 0;
}

int tkc_verify_recv(tkc *c, tkc_verify_res *res)
{
    proto_header h = {0};
    uint8_t *body = NULL;

    begin(c);
    int rc = recv_frame(c, deadline_of(c), &h, &body);
    if (rc)
        return rc;
    if (h.code != 0) {
        set_server_msg(c, h.code, body, h.len);
        c->refused = true;
        return proto_err(h.code);
    }
    if (tkc_verify_decode(body, h.len, res) != 0)
        return bad_reply(c, "VERIFY");
    return 0;
}

int tkc_verify(tkc *c, const char *secret, const char *client_id, tkc_verify_res *res)
{
    begin(c);
    int rc = check_usable(c);
    if (rc == 0 && c->inflight)
        rc = fail(c, TK_EINVAL, "%zu pipelined requests still in flight", c->inflight);
    if (rc == 0)
        rc = tkc_verify_send(c, secret, client_id); /* refuses a NULL secret */
    return rc ? rc : tkc_verify_recv(c, res);
}

int tkc_tenant_create(tkc *c, const char *tenant)
{
    const fval a[] = {a_str(SF_TENANT, tenant)};
    return write_call(c, OP_TENANT_CREATE, a, NARGS(a));
}

int tkc_tenant_set(tkc *c, const char *tenant, bool api_tokens)
{
    const tkc_limits same = TKC_LIMITS_UNCHANGED;
    return tkc_tenant_limits(c, tenant, api_tokens ? 1 : 0, &same);
}

int tkc_tenant_limits(tkc *c, const char *tenant, int api_tokens, const tkc_limits *lim)
{
    if (need(c, "limits", lim))
        return TK_EINVAL;
    if (api_tokens != TKC_UNCHANGED && api_tokens != 0 && api_tokens != 1)
        return fail(c, TK_EINVAL, "api_tokens must be 0, 1 or TKC_UNCHANGED");
    const fval a[] = {
        a_str(SF_TENANT, tenant),
        a_num(SF_API_TOKENS, api_tokens, api_tokens != TKC_UNCHANGED),
        a_num(SF_MAX_TOKENS, lim->max_tokens, lim->max_tokens >= 0),
        a_num(SF_MAX_ROLES, lim->max_roles, lim->max_roles >= 0),
        a_num(SF_MAX_KEYS, lim->max_keys, lim->max_keys >= 0),
        a_num(SF_CREATE_RATE, lim->create_rate, lim->create_rate >= 0),
        a_num(SF_CREATE_BURST, lim->create_burst, lim->create_burst >= 0),
    };
    bool any = false;
    for (size_t i = 1; i < NARGS(a); i++)
        any |= a[i].set;
    if (!any)
        return fail(c, TK_EINVAL, "nothing to set");
    return write_call(c, OP_TENANT_SET, a, NARGS(a));
}

int tkc_tenant_list(tkc *c, const char *after, uint32_t limit, tkc_tenant_page *page)
{
    const fval a[] = {PAGING(after, limit)};
    return read_call(c, OP_TENANT_LIST, a, NARGS(a), PAGE_REF(page, tenant_row));
}

int tkc_tenant_get(tkc *c, const char *tenant, tkc_tenant_page *page)
{
    const fval a[] = {a_str(SF_TENANT, tenant)};
    return read_call(c, OP_TENANT_GET, a, NARGS(a), PAGE_REF(page, tenant_row));
}

int tkc_tenant_delete(tkc *c, const char *tenant)
{
    const fval a[] = {a_str(SF_TENANT, tenant)};
    return write_call(c, OP_TENANT_DELETE, a, NARGS(a));
}

int tkc_perm_put(tkc *c, const char *tenant, const char *key, const char *description)
{
    const fval a[] = {a_str(SF_TENANT, tenant), a_str(SF_KEY, key),
                     a_str(SF_DESCRIPTION, description)};
    return write_call(c, OP_PERM_PUT, a, NARGS(a));
}

int tkc_perm_list(tkc *c, const char *tenant, const char *after, uint32_t limit,
                  tkc_perm_page *page)
{
    const fval a[] = {a_str(SF_TENANT, tenant), PAGING(after, limit)};
    return read_call(c, OP_PERM_LIST, a, NARGS(a), PAGE_REF(page, perm_row));
}

int tkc_perm_delete(tkc *c, const char *tenant, const char *key)
{
    const fval a[] = {a_str(SF_TENANT, tenant), a_str(SF_KEY, key)};
    return write_call(c, OP_PERM_DELETE, a, NARGS(a));
}

int tkc_role_put(tkc *c, const char *tenant, const char *key, const char *name, uint32_t level,
                 const char *const *perms, size_t nperms)
{
    const fval a[] = {a_str(SF_TENANT, tenant), a_str(SF_KEY, key), a_str(SF_NAME, name),
                     a_num(SF_LEVEL, level, true), a_strs(SF_PERMISSIONS, perms, nperms, true)};
    return write_call(c, OP_ROLE_PUT, a, NARGS(a));
}

int tkc_role_delete(tkc *c, const char *tenant, const char *key)
{
    const fval a[] = {a_str(SF_TENANT, tenant), a_str(SF_KEY, key)};
    return write_call(c, OP_ROLE_DELETE, a, NARGS(a));
}

int tkc_role_list(tkc *c, const char *tenant, const char *after, uint32_t limit,
                  tkc_role_page *page)
{
    const fval a[] = {a_str(SF_TENANT, tenant), PAGING(after, limit)};
    return read_call(c, OP_ROLE_LIST, a, NARGS(a), PAGE_REF(page, role_row));
}

int tkc_account_create(tkc *c, const char *tenant, const char *account)
{
    const fval a[] = {a_str(SF_TENANT, tenant), a_str(SF_ACCOUNT, account)};
    return write_call(c, OP_ACCOUNT_CREATE, a, NARGS(a));
}

int tkc_account_list(tkc *c, const char *tenant, const char *after, uint32_t limit,
                     tkc_account_page *page)
{
    const fval a[] = {a_str(SF_TENANT, tenant), PAGING(after, limit)};
    return read_call(c, OP_ACCOUNT_LIST, a, NARGS(a), PAGE_REF(page, account_row));
}

int tkc_account_delete(tkc *c, const char *tenant, const char *account)
{
    const fval a[] = {a_str(SF_TENANT, tenant), a_str(SF_ACCOUNT, account)};
    return write_call(c, OP_ACCOUNT_DELETE, a, NARGS(a));
}

/* USER_CREATE and KEY_CREATE: a new personal key. */
static int new_key(tkc *c, uint16_t code, const fval *a, size_t na, tkc_key *out)
{
    dval v[SF_COUNT];
    tk_id id;
    if (need(c, "key result", out))
        return TK_EINVAL;
    int rc = call_scratch(c, code, a, na, v);
    if (rc == 0 && (uuid_to(&v[SF_KEY_ID], out->key_id, NULL) != 0 ||
                    secret_to(&v[SF_PERSONAL_KEY], TK_KIND_PERSONAL, out->personal_key, &id) != 0))
        rc = bad_reply(c, sch_find(code)->name);
    return secret_done(c, rc, out, sizeof *out);
}

int tkc_user_create(tkc *c, const char *tenant, const char *account, const char *user,
                    const char *const *roles, size_t nroles, bool portal, tkc_key *key)
{
    const fval a[] = {a_str(SF_TENANT, tenant), a_str(SF_ACCOUNT, account), a_str(SF_USER, user),
                     a_strs(SF_ROLES, roles, nroles, true), a_num(SF_PORTAL, portal, true)};
    return new_key(c, OP_USER_CREATE, a, NARGS(a), key);
}

int tkc_user_set(tkc *c, const char *tenant, const char *account, const char *user,
                 const char *const *roles, size_t nroles, int portal)
{
    if (portal != 0 && portal != 1 && portal != TKC_UNCHANGED)
        return fail(c, TK_EINVAL, "portal must be 0, 1 or TKC_UNCHANGED");
    const fval a[] = {a_str(SF_TENANT, tenant), a_str(SF_ACCOUNT, account), a_str(SF_USER, user),
                     a_strs(SF_ROLES, roles, nroles, roles != NULL),
                     a_num(SF_PORTAL, portal, portal != TKC_UNCHANGED)};
    return write_call(c, OP_USER_SET, a, NARGS(a));
}

int tkc_user_list(tkc *c, const char *tenant, const char *account, const char *after,
                  uint32_t limit, tkc_user_page *page)
{
    const fval a[] = {a_str(SF_TENANT, tenant), a_str(SF_ACCOUNT, account), PAGING(after, limit)};
    return read_call(c, OP_USER_LIST, a, NARGS(a), PAGE_REF(page, user_row));
}

int tkc_user_get(tkc *c, const char *tenant, const char *account, const char *user,
                 tkc_user_page *page)
{
    const fval a[] = {a_str(SF_TENANT, tenant), a_str(SF_ACCOUNT, account), a_str(SF_USER, user)};
    return read_call(c, OP_USER_GET, a, NARGS(a), PAGE_REF(page, user_row));
}

int tkc_user_delete(tkc *c, const char *tenant, const char *account, const char *user)
{
    const fval a[] = {a_str(SF_TENANT, tenant), a_str(SF_ACCOUNT, account), a_str(SF_USER, user)};
    return write_call(c, OP_USER_DELETE, a, NARGS(a));
}

int tkc_key_create(tkc *c, const char *tenant, const char *account, const char *user,
                   int64_t expires_at, tkc_key *key)
{
    const fval a[] = {a_str(SF_TENANT, tenant), a_str(SF_ACCOUNT, account), a_str(SF_USER, user),
                     a_num(SF_EXPIRES_AT, expires_at, expires_at != 0)};
    return new_key(c, OP_KEY_CREATE, a, NARGS(a), key);
}

int tkc_key_delete(tkc *c, const char *key_id)
{
    const fval a[] = {a_str(SF_KEY_ID, key_id)};
    return write_call(c, OP_KEY_DELETE, a, NARGS(a));
}

int tkc_key_list(tkc *c, const char *tenant, const char *account, const char *user,
                 const char *after, uint32_t limit, tkc_key_page *page)
{
    const fval a[] = {a_str(SF_TENANT, tenant), a_str(SF_ACCOUNT, account), a_str(SF_USER, user),
                     PAGING(after, limit)};
    return read_call(c, OP_KEY_LIST, a, NARGS(a), PAGE_REF(page, key_row));
}

int tkc_token_create(tkc *c, const char *description, const char *const *roles, size_t nroles,
                     int64_t expires_at, tkc_new_token *out)
{
    const fval a[] = {a_str(SF_DESCRIPTION, description), a_strs(SF_ROLES, roles, nroles, true),
                     a_num(SF_EXPIRES_AT, expires_at, expires_at != 0)};
    dval v[SF_COUNT];
    tk_id in_field, in_secret;

    if (need(c, "token result", out))
        return TK_EINVAL;
    int rc = call_scratch(c, OP_TOKEN_CREATE, a, NARGS(a), v);
    /* The secret carries its client ID; the two must agree. */
    if (rc == 0 && (uuid_to(&v[SF_CLIENT_ID], out->client_id, &in_field) != 0 ||
                    secret_to(&v[SF_SECRET], TK_KIND_TOKEN, out->secret, &in_secret) != 0 ||
                    memcmp(&in_field, &in_secret, sizeof in_field) != 0))
        rc = bad_reply(c, "TOKEN_CREATE");
    if (rc == 0)
        out->expires_at = v[SF_EXPIRES_AT].i;
    return secret_done(c, rc, out, sizeof *out);
}

int tkc_token_list(tkc *c, const char *tenant, const char *account, const char *after,
                   uint32_t limit, tkc_token_page *page)
{
    const fval a[] = {a_str(SF_TENANT, tenant), a_str(SF_ACCOUNT, account), PAGING(after, limit)};
    return read_call(c, OP_TOKEN_LIST, a, NARGS(a), PAGE_REF(page, token_row));
}

int tkc_token_get(tkc *c, const char *client_id, tkc_token_page *page)
{
    const fval a[] = {a_str(SF_CLIENT_ID, client_id)};
    return read_call(c, OP_TOKEN_GET, a, NARGS(a), PAGE_REF(page, token_row));
}

int tkc_token_set(tkc *c, const char *client_id, const char *description)
{
    const fval a[] = {a_str(SF_CLIENT_ID, client_id), a_str(SF_DESCRIPTION, description)};
    return write_call(c, OP_TOKEN_SET, a, NARGS(a));
}

int tkc_token_delete(tkc *c, const char *client_id)
{
    const fval a[] = {a_str(SF_CLIENT_ID, client_id)};
    return write_call(c, OP_TOKEN_DELETE, a, NARGS(a));
}

int tkc_keyring_add(tkc *c, const char *name, bool gateway, char key[TKC_RING_KEY_LEN + 1])
{
    const fval a[] = {a_str(SF_NAME, name), a_num(SF_GATEWAY, gateway, gateway)};
    dval v[SF_COUNT];

    if (need(c, "key result", key))
        return TK_EINVAL;
    int rc = call_scratch(c, OP_KEYRING_ADD, a, NARGS(a), v);
    if (rc == 0 && ring_key_to(&v[SF_KEY], gateway, key) != 0)
        rc = bad_reply(c, "KEYRING_ADD");
    return secret_done(c, rc, key, TKC_RING_KEY_LEN + 1);
}

int tkc_keyring_list(tkc *c, const char *after, uint32_t limit, tkc_ring_page *page)
{
    const fval a[] = {PAGING(after, limit)};
    return read_call(c, OP_KEYRING_LIST, a, NARGS(a), PAGE_REF(page, ring_row));
}

int tkc_keyring_remove(tkc *c, const char *name)
{
    const fval a[] = {a_str(SF_NAME, name)};
    return write_call(c, OP_KEYRING_REMOVE, a, NARGS(a));
}
