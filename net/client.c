/*
 * client.c - blocking client of the tokend wire protocol; see client.h and
 * docs/protocol.md.
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
        ssize_t n = recv(c->fd, c->in + c->in_end, c->in_cap - c->in_end, MSG_DONTWAIT);
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
        return fail_conn(c, TK_EIO, "receive from %s: %s", c->addr, strerror(errno));
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
        ssize_t n =
            send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
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
        return fail_conn(c, TK_EIO, "send to %s: %s", c->addr, strerror(errno));
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

/* ---- reply decoding ----------------------------------------------------- */

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

/* A reply's field name, with its length (the decoders run per request on
 * the verify path: no strlen there). */
typedef struct key_name {
    const char *s;
    size_t n;
} key_name;

#define KN(lit) {lit, sizeof(lit) - 1}
#define KN_END {NULL, 0}

/* Reads a key; *bit gets its position in names (or -1 when unknown, which
 * the caller skips). A key seen twice is an error. */
static int dec_key(mpr *r, const key_name *names, unsigned *seen, int *bit)
{
    const char *k;
    size_t kn;
    if (mpr_str(r, &k, &kn) != 0)
        return TK_EPROTO;
    *bit = -1;
    for (int i = 0; names[i].s; i++) {
        if (names[i].n == kn && !memcmp(names[i].s, k, kn)) {
            if (*seen & (1u << i))
                return TK_EPROTO;
            *seen |= 1u << i;
            *bit = i;
            break;
        }
    }
    return 0;
}

/* A string acceptable to hand to C callers: UTF-8, no NUL. */
static int dec_text(mpr *r, const char **s, size_t *n, size_t max)
{
    if (mpr_str(r, s, n) != 0 || *n > max || memchr(*s, '\0', *n) || !mpr_utf8_valid(*s, *n))
        return TK_EPROTO;
    return 0;
}

/* Copies a string of at most cap-1 bytes into dst. */
static int dec_copy(mpr *r, char *dst, size_t cap)
{
    const char *s;
    size_t n;
    if (dec_text(r, &s, &n, cap - 1) != 0)
        return TK_EPROTO;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

/* A canonical lowercase UUID into dst[TK_ID_STR_LEN + 1]; id may be NULL. */
static int dec_uuid(mpr *r, char *dst, tk_id *id)
{
    const char *s;
    size_t n;
    tk_id tmp;
    if (mpr_str(r, &s, &n) != 0 || secret_id_parse(s, n, &tmp) != 0)
        return TK_EPROTO;
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 'A' && s[i] <= 'F')
            return TK_EPROTO;
    memcpy(dst, s, n);
    dst[n] = '\0';
    if (id)
        *id = tmp;
    return 0;
}

/* A well-formed secret of the given kind into dst[TK_SECRET_LEN + 1]. */
static int dec_secret(mpr *r, tk_kind want, char *dst, tk_id *id)
{
    const char *s;
    size_t n;
    tk_kind kind;
    uint8_t hash[TK_HASH_LEN];
    if (mpr_str(r, &s, &n) != 0 || secret_parse(s, n, &kind, id, hash) != 0 || kind != want)
        return TK_EPROTO;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

static int dec_time(mpr *r, int64_t *t)
{
    return mpr_int(r, t) != 0 || *t < 0 ? TK_EPROTO : 0;
}

/* Appends a string to a store of known sufficient size. */
static const char *store_put(char *store, size_t *used, const char *s, size_t n)
{
    char *p = store + *used;
    memcpy(p, s, n);
    p[n] = '\0';
    *used += n + 1;
    return p;
}

/* An array of at most max strings into out[], copied into store. */
static int dec_strlist(mpr *r, const char **out, uint32_t *count, uint32_t max, size_t each,
                       char *store, size_t *used)
{
    uint32_t n;
    if (mpr_array(r, &n) != 0 || n > max)
        return TK_EPROTO;
    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        size_t sn;
        if (dec_text(r, &s, &sn, each) != 0)
            return TK_EPROTO;
        out[i] = store_put(store, used, s, sn);
    }
    *count = n;
    return 0;
}

/* Ensures *store holds at least need bytes (reused across calls). */
static void store_reserve(char **store, size_t *cap, size_t need)
{
    if (need > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < need)
            c *= 2;
        free(*store);
        *store = xmalloc(c);
        *cap = c;
    }
}

/* {} reply to a write: any map (keys unknown to us are skipped). */
static int dec_empty(const uint8_t *body, size_t len)
{
    mpr r;
    uint32_t n;
    if (dec_map(&r, body, len, &n) != 0)
        return TK_EPROTO;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        size_t kn;
        if (mpr_str(&r, &k, &kn) != 0 || mpr_skip(&r) != 0)
            return TK_EPROTO;
    }
    return mpr_done(&r) ? 0 : TK_EPROTO;
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

static int verdict_of(const char *s, size_t n, tk_verdict *v)
{
    static const tk_verdict all[] = {TK_V_VALID,      TK_V_MALFORMED, TK_V_UNKNOWN, TK_V_MISMATCH,
                                     TK_V_WRONG_KIND, TK_V_DISABLED,  TK_V_EXPIRED};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        const char *name = model_verdict_name(all[i]);
        if (strlen(name) == n && !memcmp(name, s, n)) {
            *v = all[i];
            return 0;
        }
    }
    return TK_EPROTO;
}

int tkc_verify_decode(const void *body, size_t len, tkc_verify_res *res)
{
    static const key_name names[] = {KN("valid"),       KN("reason"),     KN("client_id"),
                                     KN("tenant"),      KN("account"),    KN("roles"),
                                     KN("permissions"), KN("expires_at"), KN_END};
    enum { K_VALID, K_REASON, K_ID, K_TENANT, K_ACCOUNT, K_ROLES, K_PERMS, K_EXPIRES };
    const unsigned need_valid = 0xffu, need_invalid = 0x3u;
    mpr r;
    uint32_t n;
    unsigned seen = 0;
    size_t used = 0;
    bool valid = false;
    tk_verdict v = TK_V_MALFORMED;

    verify_clear(res);
    store_reserve(&res->store_, &res->store_cap_, len + 1);
    if (dec_map(&r, body, len, &n) != 0)
        goto fail;
    for (uint32_t i = 0; i < n; i++) {
        int bit;
        const char *s;
        size_t sn;
        if (dec_key(&r, names, &seen, &bit) != 0)
            goto fail;
        switch (bit) {
        case K_VALID:
            if (mpr_bool(&r, &valid) != 0)
                goto fail;
            break;
        case K_REASON:
            if (mpr_str(&r, &s, &sn) != 0 || verdict_of(s, sn, &v) != 0)
                goto fail;
            break;
        case K_ID:
            if (dec_uuid(&r, res->client_id, NULL) != 0)
                goto fail;
            break;
        case K_TENANT:
            if (dec_copy(&r, res->tenant, sizeof res->tenant) != 0)
                goto fail;
            break;
        case K_ACCOUNT:
            if (dec_copy(&r, res->account, sizeof res->account) != 0)
                goto fail;
            break;
        case K_ROLES:
            if (dec_strlist(&r, res->roles, &res->nroles, TK_MAX_ROLES, TK_KEY_MAX, res->store_,
                            &used) != 0)
                goto fail;
            break;
        case K_PERMS:
            if (dec_strlist(&r, res->perms, &res->nperms, TK_MAX_TENANT_PERMS, TK_KEY_MAX,
                            res->store_, &used) != 0)
                goto fail;
            break;
        case K_EXPIRES:
            if (dec_time(&r, &res->expires_at) != 0)
                goto fail;
            break;
        default:
            if (mpr_skip(&r) != 0)
                goto fail;
        }
    }
    if (!mpr_done(&r) || (seen & need_invalid) != need_invalid)
        goto fail;
    if (valid != (v == TK_V_VALID))
        goto fail;
    if (valid && (seen & need_valid) != need_valid)
        goto fail;
    if (!valid) {
        verify_clear(res);
        res->verdict = v;
        res->reason = model_verdict_name(v);
        return 0;
    }
    res->valid = true;
    res->verdict = TK_V_VALID;
    res->reason = model_verdict_name(TK_V_VALID);
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

void tkc_token_page_free(tkc_token_page *p)
{
    if (!p)
        return;
    free(p->tokens);
    free(p->store_);
    memset(p, 0, sizeof *p);
}

static int dec_token(mpr *r, tkc_token *t, char *store, size_t *used)
{
    static const key_name names[] = {
        KN("client_id"),  KN("description"), KN("roles"), KN("created_by"),
        KN("created_at"), KN("expires_at"),  KN_END};
    enum { K_ID, K_DESC, K_ROLES, K_BY, K_CREATED, K_EXPIRES };
    uint32_t n;
    unsigned seen = 0;

    if (mpr_map(r, &n) != 0)
        return TK_EPROTO;
    for (uint32_t i = 0; i < n; i++) {
        int bit, rc = 0;
        const char *s;
        size_t sn;
        if (dec_key(r, names, &seen, &bit) != 0)
            return TK_EPROTO;
        switch (bit) {
        case K_ID: rc = dec_uuid(r, t->client_id, NULL); break;
        case K_DESC:
            rc = dec_text(r, &s, &sn, TK_DESC_MAX);
            if (rc == 0)
                t->description = store_put(store, used, s, sn);
            break;
        case K_ROLES:
            rc = dec_strlist(r, t->roles, &t->nroles, TK_MAX_ROLES, TK_KEY_MAX, store, used);
            break;
        case K_BY: rc = dec_copy(r, t->created_by, sizeof t->created_by); break;
        case K_CREATED: rc = dec_time(r, &t->created_at); break;
        case K_EXPIRES: rc = dec_time(r, &t->expires_at); break;
        default: rc = mpr_skip(r);
        }
        if (rc)
            return TK_EPROTO;
    }
    return seen == 0x3fu ? 0 : TK_EPROTO;
}

static int dec_page(const uint8_t *body, size_t len, tkc_token_page *p)
{
    static const key_name names[] = {KN("tokens"), KN("more"), KN("next"), KN_END};
    mpr r;
    uint32_t n;
    unsigned seen = 0;
    size_t used = 0;

    p->n = 0;
    p->more = false;
    p->next[0] = '\0';
    store_reserve(&p->store_, &p->store_cap_, len + 1);
    if (dec_map(&r, body, len, &n) != 0)
        goto fail;
    for (uint32_t i = 0; i < n; i++) {
        int bit;
        uint32_t nt;
        if (dec_key(&r, names, &seen, &bit) != 0)
            goto fail;
        if (bit == 0) {
            if (mpr_array(&r, &nt) != 0 || nt > TKC_LIST_MAX)
                goto fail;
            if (nt > p->cap_) {
                free(p->tokens);
                p->tokens = xcalloc(nt, sizeof *p->tokens);
                p->cap_ = nt;
            }
            for (uint32_t j = 0; j < nt; j++) {
                memset(&p->tokens[j], 0, sizeof p->tokens[j]);
                if (dec_token(&r, &p->tokens[j], p->store_, &used) != 0)
                    goto fail;
            }
            p->n = nt;
        } else if (bit == 1) {
            if (mpr_bool(&r, &p->more) != 0)
                goto fail;
        } else if (bit == 2) {
            const char *s;
            size_t sn;
            if (mpr_str(&r, &s, &sn) != 0 || sn == 0 || sn > TKC_CURSOR_MAX)
                goto fail;
            memcpy(p->next, s, sn);
            p->next[sn] = '\0';
        } else if (mpr_skip(&r) != 0) {
            goto fail;
        }
    }
    /* more comes with the cursor of the rest */
    if (!mpr_done(&r) || (seen & 0x3u) != 0x3u || p->more != (p->next[0] != '\0')
        || (p->more && p->n == 0))
        goto fail;
    return 0;
fail:
    p->n = 0;
    p->more = false;
    p->next[0] = '\0';
    return TK_EPROTO;
}

static int dec_key_reply(uint8_t *body, size_t len, tkc_key *out)
{
    static const key_name names[] = {KN("key_id"), KN("personal_key"), KN_END};
    mpr r;
    uint32_t n;
    unsigned seen = 0;
    tk_id id;
    int rc = TK_EPROTO;

    if (dec_map(&r, body, len, &n) != 0)
        goto done;
    for (uint32_t i = 0; i < n; i++) {
        int bit, krc;
        if (dec_key(&r, names, &seen, &bit) != 0)
            goto done;
        if (bit == 0)
            krc = dec_uuid(&r, out->key_id, NULL);
        else if (bit == 1)
            krc = dec_secret(&r, TK_KIND_PERSONAL, out->personal_key, &id);
        else
            krc = mpr_skip(&r);
        if (krc)
            goto done;
    }
    if (mpr_done(&r) && seen == 0x3u)
        rc = 0;
done:
    wipe(body, len);
    if (rc)
        wipe(out, sizeof *out);
    return rc;
}

static int dec_token_reply(uint8_t *body, size_t len, tkc_new_token *out)
{
    static const key_name names[] = {KN("client_id"), KN("secret"), KN("expires_at"), KN_END};
    mpr r;
    uint32_t n;
    unsigned seen = 0;
    tk_id id_field, id_secret;
    int rc = TK_EPROTO;

    if (dec_map(&r, body, len, &n) != 0)
        goto done;
    for (uint32_t i = 0; i < n; i++) {
        int bit, krc;
        if (dec_key(&r, names, &seen, &bit) != 0)
            goto done;
        if (bit == 0)
            krc = dec_uuid(&r, out->client_id, &id_field);
        else if (bit == 1)
            krc = dec_secret(&r, TK_KIND_TOKEN, out->secret, &id_secret);
        else if (bit == 2)
            krc = dec_time(&r, &out->expires_at);
        else
            krc = mpr_skip(&r);
        if (krc)
            goto done;
    }
    /* The secret carries its client ID; the two must agree. */
    if (mpr_done(&r) && seen == 0x7u && !memcmp(&id_field, &id_secret, sizeof id_field))
        rc = 0;
done:
    wipe(body, len);
    if (rc)
        wipe(out, sizeof *out);
    return rc;
}

static int dec_auth(const uint8_t *body, size_t len, tkc_whoami *who)
{
    static const key_name names[] = {KN("actor"), KN("tenant"), KN("account"), KN("user"), KN_END};
    mpr r;
    uint32_t n;
    unsigned seen = 0;

    memset(who, 0, sizeof *who);
    if (dec_map(&r, body, len, &n) != 0)
        return TK_EPROTO;
    for (uint32_t i = 0; i < n; i++) {
        int bit, rc = 0;
        const char *s;
        size_t sn;
        if (dec_key(&r, names, &seen, &bit) != 0)
            return TK_EPROTO;
        switch (bit) {
        case 0:
            if (mpr_str(&r, &s, &sn) != 0)
                return TK_EPROTO;
            if (sn == 8 && !memcmp(s, "operator", 8))
                who->actor = TKC_ACTOR_OPERATOR;
            else if (sn == 4 && !memcmp(s, "user", 4))
                who->actor = TKC_ACTOR_USER;
            else if (sn == 7 && !memcmp(s, "gateway", 7))
                who->actor = TKC_ACTOR_GATEWAY;
            else
                return TK_EPROTO;
            break;
        case 1: rc = dec_copy(&r, who->tenant, sizeof who->tenant); break;
        case 2: rc = dec_copy(&r, who->account, sizeof who->account); break;
        case 3: rc = dec_copy(&r, who->user, sizeof who->user); break;
        default: rc = mpr_skip(&r);
        }
        if (rc)
            return TK_EPROTO;
    }
    return mpr_done(&r) && (seen & 1u) ? 0 : TK_EPROTO;
}

static int dec_ping(const uint8_t *body, size_t len, uint32_t *version)
{
    static const key_name names[] = {KN("version"), KN_END};
    mpr r;
    uint32_t n;
    unsigned seen = 0;
    uint64_t v = 0;

    if (dec_map(&r, body, len, &n) != 0)
        return TK_EPROTO;
    for (uint32_t i = 0; i < n; i++) {
        int bit;
        if (dec_key(&r, names, &seen, &bit) != 0)
            return TK_EPROTO;
        if (bit == 0) {
            if (mpr_uint(&r, &v) != 0 || v > UINT32_MAX)
                return TK_EPROTO;
        } else if (mpr_skip(&r) != 0) {
            return TK_EPROTO;
        }
    }
    if (!mpr_done(&r) || seen != 1u)
        return TK_EPROTO;
    *version = (uint32_t)v;
    return 0;
}

/* A malformed reply: the connection is dropped (the server broke the
 * contract; what follows cannot be trusted). */
static int bad_reply(tkc *c, const char *what)
{
    return fail_conn(c, TK_EPROTO, "malformed %s reply from %s", what, c->addr);
}

/* ---- request encoding --------------------------------------------------- */

static void put_str(mpw *w, const char *k, const char *v)
{
    mpw_cstr(w, k);
    mpw_cstr(w, v);
}

static void put_list(mpw *w, const char *k, const char *const *v, size_t n)
{
    mpw_cstr(w, k);
    mpw_array(w, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        mpw_cstr(w, v[i]);
}

/* Checks the caller's arguments before anything is encoded. */
static int need(tkc *c, const char *what, const void *p)
{
    if (p)
        return 0;
    (void)fail(c, TK_EINVAL, "%s is required", what);
    return TK_EINVAL;
}

static int need_list(tkc *c, const char *what, const char *const *v, size_t n)
{
    if (n > UINT32_MAX || (n && !v))
        return fail(c, TK_EINVAL, "bad %s list", what);
    for (size_t i = 0; i < n; i++)
        if (!v[i])
            return fail(c, TK_EINVAL, "%s %zu is NULL", what, i);
    return 0;
}

void tkc_verify_encode(mpw *w, const char *secret, size_t secret_len, const char *client_id)
{
    mpw_map(w, client_id ? 2 : 1);
    mpw_cstr(w, "secret");
    mpw_str(w, secret, secret_len);
    if (client_id)
        put_str(w, "client_id", client_id);
}

/* Runs a write whose reply is {}. */
static int write_op(tkc *c, uint16_t op, const char *what)
{
    uint8_t *body = NULL;
    size_t len = 0;
    int rc = roundtrip(c, op, &body, &len);
    if (rc)
        return rc;
    return dec_empty(body, len) ? bad_reply(c, what) : 0;
}

/* ---- operations --------------------------------------------------------- */

int tkc_ping(tkc *c, uint32_t *version)
{
    uint8_t *body = NULL;
    size_t len = 0;
    uint32_t v;

    begin(c);
    mpw_reset(&c->w);
    int rc = roundtrip(c, OP_PING, &body, &len);
    if (rc)
        return rc;
    if (dec_ping(body, len, &v) != 0)
        return bad_reply(c, "PING");
    if (version)
        *version = v;
    return 0;
}

int tkc_auth(tkc *c, const char *key, tkc_whoami *who)
{
    uint8_t *body = NULL;
    size_t len = 0;
    tkc_whoami tmp;

    begin(c);
    if (need(c, "key", key))
        return TK_EINVAL;
    mpw_reset(&c->w);
    mpw_map(&c->w, 1);
    put_str(&c->w, "key", key);
    int rc = roundtrip(c, OP_AUTH, &body, &len);
    if (rc)
        return rc;
    if (dec_auth(body, len, who ? who : &tmp) != 0)
        return bad_reply(c, "AUTH");
    return 0;
}

int tkc_verify_send(tkc *c, const char *secret, const char *client_id)
{
    begin(c);
    if (need(c, "secret", secret))
        return TK_EINVAL;
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
    if (need(c, "secret", secret))
        return TK_EINVAL;
    int rc = check_usable(c);
    if (rc)
        return rc;
    if (c->inflight)
        return fail(c, TK_EINVAL, "%zu pipelined requests still in flight", c->inflight);
    if ((rc = tkc_verify_send(c, secret, client_id)) != 0)
        return rc;
    return tkc_verify_recv(c, res);
}

int tkc_tenant_create(tkc *c, const char *tenant)
{
    begin(c);
    if (need(c, "tenant", tenant))
        return TK_EINVAL;
    mpw_reset(&c->w);
    mpw_map(&c->w, 1);
    put_str(&c->w, "tenant", tenant);
    return write_op(c, OP_TENANT_CREATE, "TENANT_CREATE");
}

int tkc_tenant_set(tkc *c, const char *tenant, bool api_tokens)
{
    begin(c);
    if (need(c, "tenant", tenant))
        return TK_EINVAL;
    mpw_reset(&c->w);
    mpw_map(&c->w, 2);
    put_str(&c->w, "tenant", tenant);
    mpw_cstr(&c->w, "api_tokens");
    mpw_bool(&c->w, api_tokens);
    return write_op(c, OP_TENANT_SET, "TENANT_SET");
}

int tkc_tenant_limits(tkc *c, const char *tenant, int api_tokens, const tkc_limits *lim)
{
    const char *names[5] = {"max_tokens", "max_roles", "max_keys", "create_rate",
                            "create_burst"};
    const int64_t v[5] = {lim->max_tokens, lim->max_roles, lim->max_keys, lim->create_rate,
                          lim->create_burst};
    uint32_t n = 1 + (api_tokens != TKC_UNCHANGED);
    begin(c);
    if (need(c, "tenant", tenant) || need(c, "limits", lim))
        return TK_EINVAL;
    if (api_tokens != TKC_UNCHANGED && api_tokens != 0 && api_tokens != 1)
        return fail(c, TK_EINVAL, "api_tokens must be 0, 1 or TKC_UNCHANGED");
    for (int i = 0; i < 5; i++) {
        if (v[i] > (int64_t)UINT32_MAX)
            return fail(c, TK_EINVAL, "%s above 4294967295", names[i]);
        n += v[i] >= 0;
    }
    if (n == 1)
        return fail(c, TK_EINVAL, "nothing to set");
    mpw_reset(&c->w);
    mpw_map(&c->w, n);
    put_str(&c->w, "tenant", tenant);
    if (api_tokens != TKC_UNCHANGED) {
        mpw_cstr(&c->w, "api_tokens");
        mpw_bool(&c->w, api_tokens == 1);
    }
    for (int i = 0; i < 5; i++) {
        if (v[i] < 0)
            continue;
        mpw_cstr(&c->w, names[i]);
        mpw_uint(&c->w, (uint64_t)v[i]);
    }
    return write_op(c, OP_TENANT_SET, "TENANT_SET");
}

int tkc_perm_put(tkc *c, const char *tenant, const char *key, const char *description)
{
    begin(c);
    if (need(c, "tenant", tenant) || need(c, "permission key", key))
        return TK_EINVAL;
    mpw_reset(&c->w);
    mpw_map(&c->w, description ? 3 : 2);
    put_str(&c->w, "tenant", tenant);
    put_str(&c->w, "key", key);
    if (description)
        put_str(&c->w, "description", description);
    return write_op(c, OP_PERM_PUT, "PERM_PUT");
}

int tkc_role_put(tkc *c, const char *tenant, const char *key, const char *name, uint32_t level,
                 const char *const *perms, size_t nperms)
{
    begin(c);
    if (need(c, "tenant", tenant) || need(c, "role key", key) ||
        need_list(c, "permission", perms, nperms))
        return TK_EINVAL;
    mpw_reset(&c->w);
    mpw_map(&c->w, name ? 5 : 4);
    put_str(&c->w, "tenant", tenant);
    put_str(&c->w, "key", key);
    if (name)
        put_str(&c->w, "name", name);
    mpw_cstr(&c->w, "level");
    mpw_uint(&c->w, level);
    put_list(&c->w, "permissions", perms, nperms);
    return write_op(c, OP_ROLE_PUT, "ROLE_PUT");
}

int tkc_role_delete(tkc *c, const char *tenant, const char *key)
{
    begin(c);
    if (need(c, "tenant", tenant) || need(c, "role key", key))
        return TK_EINVAL;
    mpw_reset(&c->w);
    mpw_map(&c->w, 2);
    put_str(&c->w, "tenant", tenant);
    put_str(&c->w, "key", key);
    return write_op(c, OP_ROLE_DELETE, "ROLE_DELETE");
}

int tkc_account_create(tkc *c, const char *tenant, const char *account)
{
    begin(c);
    if (need(c, "tenant", tenant) || need(c, "account", account))
        return TK_EINVAL;
    mpw_reset(&c->w);
    mpw_map(&c->w, 2);
    put_str(&c->w, "tenant", tenant);
    put_str(&c->w, "account", account);
    return write_op(c, OP_ACCOUNT_CREATE, "ACCOUNT_CREATE");
}

int tkc_user_create(tkc *c, const char *tenant, const char *account, const char *user,
                    const char *const *roles, size_t nroles, bool portal, tkc_key *key)
{
    uint8_t *body = NULL;
    size_t len = 0;

    begin(c);
    if (need(c, "tenant", tenant) || need(c, "account", account) || need(c, "user", user) ||
        need_list(c, "role", roles, nroles) || need(c, "key result", key))
        return TK_EINVAL;
    mpw_reset(&c->w);
    mpw_map(&c->w, 5);
    put_str(&c->w, "tenant", tenant);
    put_str(&c->w, "account", account);
    put_str(&c->w, "user", user);
    put_list(&c->w, "roles", roles, nroles);
    mpw_cstr(&c->w, "portal");
    mpw_bool(&c->w, portal);
    int rc = roundtrip(c, OP_USER_CREATE, &body, &len);
    if (rc)
        return rc;
    return dec_key_reply(body, len, key) ? bad_reply(c, "USER_CREATE") : 0;
}

int tkc_user_set(tkc *c, const char *tenant, const char *account, const char *user,
                 const char *const *roles, size_t nroles, int portal)
{
    begin(c);
    if (need(c, "tenant", tenant) || need(c, "account", account) || need(c, "user", user) ||
        (roles && need_list(c, "role", roles, nroles)))
        return TK_EINVAL;
    if (portal != 0 && portal != 1 && portal != TKC_UNCHANGED)
        return fail(c, TK_EINVAL, "portal must be 0, 1 or TKC_UNCHANGED");
    mpw_reset(&c->w);
    mpw_map(&c->w, 3 + (roles ? 1 : 0) + (portal != TKC_UNCHANGED ? 1 : 0));
    put_str(&c->w, "tenant", tenant);
    put_str(&c->w, "account", account);
    put_str(&c->w, "user", user);
    if (roles)
        put_list(&c->w, "roles", roles, nroles);
    if (portal != TKC_UNCHANGED) {
        mpw_cstr(&c->w, "portal");
        mpw_bool(&c->w, portal == 1);
    }
    return write_op(c, OP_USER_SET, "USER_SET");
}

int tkc_key_create(tkc *c, const char *tenant, const char *account, const char *user,
                   int64_t expires_at, tkc_key *key)
{
    uint8_t *body = NULL;
    size_t len = 0;

    begin(c);
    if (need(c, "tenant", tenant) || need(c, "account", account) || need(c, "user", user) ||
        need(c, "key result", key))
        return TK_EINVAL;
    mpw_reset(&c->w);
    mpw_map(&c->w, expires_at ? 4 : 3);
    put_str(&c->w, "tenant", tenant);
    put_str(&c->w, "account", account);
    put_str(&c->w, "user", user);
    if (expires_at) {
        mpw_cstr(&c->w, "expires_at");
        mpw_int(&c->w, expires_at);
    }
    int rc = roundtrip(c, OP_KEY_CREATE, &body, &len);
    if (rc)
        return rc;
    return dec_key_reply(body, len, key) ? bad_reply(c, "KEY_CREATE") : 0;
}

int tkc_key_delete(tkc *c, const char *key_id)
{
    begin(c);
    if (need(c, "key id", key_id))
        return TK_EINVAL;
    mpw_reset(&c->w);
    mpw_map(&c->w, 1);
    put_str(&c->w, "key_id", key_id);
    return write_op(c, OP_KEY_DELETE, "KEY_DELETE");
}

int tkc_token_create(tkc *c, const char *description, const char *const *roles, size_t nroles,
                     int64_t expires_at, tkc_new_token *out)
{
    uint8_t *body = NULL;
    size_t len = 0;

    begin(c);
    if (need_list(c, "role", roles, nroles) || need(c, "token result", out))
        return TK_EINVAL;
    mpw_reset(&c->w);
    mpw_map(&c->w, 1 + (description ? 1 : 0) + (expires_at ? 1 : 0));
    if (description)
        put_str(&c->w, "description", description);
    put_list(&c->w, "roles", roles, nroles);
    if (expires_at) {
        mpw_cstr(&c->w, "expires_at");
        mpw_int(&c->w, expires_at);
    }
    int rc = roundtrip(c, OP_TOKEN_CREATE, &body, &len);
    if (rc)
        return rc;
    return dec_token_reply(body, len, out) ? bad_reply(c, "TOKEN_CREATE") : 0;
}

int tkc_token_list(tkc *c, const char *tenant, const char *account, const char *after,
                   uint32_t limit, tkc_token_page *page)
{
    uint8_t *body = NULL;
    size_t len = 0;

    begin(c);
    if (need(c, "page", page))
        return TK_EINVAL;
    page->n = 0;
    page->more = false;
    page->next[0] = '\0';
    mpw_reset(&c->w);
    mpw_map(&c->w,
            (tenant ? 1u : 0u) + (account ? 1u : 0u) + (after ? 1u : 0u) + (limit ? 1u : 0u));
    if (tenant)
        put_str(&c->w, "tenant", tenant);
    if (account)
        put_str(&c->w, "account", account);
    if (after)
        put_str(&c->w, "after", after);
    if (limit) {
        mpw_cstr(&c->w, "limit");
        mpw_uint(&c->w, limit);
    }
    int rc = roundtrip(c, OP_TOKEN_LIST, &body, &len);
    if (rc)
        return rc;
    return dec_page(body, len, page) ? bad_reply(c, "TOKEN_LIST") : 0;
}

int tkc_token_delete(tkc *c, const char *client_id)
{
    begin(c);
    if (need(c, "client id", client_id))
        return TK_EINVAL;
    mpw_reset(&c->w);
    mpw_map(&c->w, 1);
    put_str(&c->w, "client_id", client_id);
    return write_op(c, OP_TOKEN_DELETE, "TOKEN_DELETE");
}
