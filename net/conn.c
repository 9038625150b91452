/*
 * conn.c - connections on the loop thread; see conn.h for the states.
 *
 * Memory per connection is bounded by construction:
 *   input   the connection's own buffer holds at most rd_high bytes:
 *           READ_HIGH (64 KiB), raised to one frame's size only while a
 *           frame that large is arriving, so at most max(64 KiB, 12 +
 *           max_frame); it starts at IN_START and is given back when it
 *           empties above IN_KEEP, so an idle connection holds little;
 *   output  unsent reply bytes, plus replies held behind requests in the
 *           writer, stay within max_output (a reply always fits an empty
 *           output, so a page larger than the cap can still be served):
 *           a reply that would take them over closes the connection,
 *           since a peer that does not read its replies cannot be served
 *           anyway. The writer's replies do not get there by themselves:
 *           a request for the writer is read only while the largest
 *           replies of everything the connection has there (`owed`, each
 *           request's reply_max) fit beside the unsent bytes; otherwise
 *           the connection stops reading until replies come back or the
 *           peer takes bytes;
 *   queue   at most max_inflight requests without a reply, and at most
 *           max_queued bytes of requests in the writer (a request holds a
 *           copy of its body and its eng_req); at either the connection
 *           stops reading until replies drain. The writer's backlog cap
 *           bounds the requests across connections.
 *
 * Slots. Every connection with an open socket is on an LRU list, touched
 * by each complete frame. At max_connections a newcomer closes the least
 * recently active connection with nothing in flight, so idle sockets
 * cannot lock gateways out; a new connection must complete its first frame
 * within frame_timeout; an optional per-peer cap (peers.h) stops one
 * address from taking every slot.
 *
 * Sockets are driven by two plain events (read, write) rather than a
 * bufferevent: a bufferevent sizes every read with ioctl(FIONREAD), a third
 * system call per request beside read and write, and on this kind of VM
 * system calls are most of a small request's cost. Input is read straight
 * into the connection's buffer, where frames are parsed in place; output
 * stays an evbuffer (replies held behind writer requests move in whole).
 *
 * TLS (conn_hub_set_tls): a connection gets an SSL at its accept and its
 * bytes go through tls_read / tls_write (net/tls.h) instead of read and
 * sendmsg, into and out of the same buffers: the only difference on the
 * path is one test of c->ssl per read and per write. OpenSSL may hold
 * whole records that the socket will not announce again, so a TLS
 * connection's read event comes back on the next loop turn while some
 * wait (tls_read_cb, and rd_enable after a pause); a read that must send
 * first (a TLS 1.3 key update answered behind a full socket) retries on a
 * write event of its own (tls_wr). A newcomer refused at the accept is
 * closed without the EBUSY frame: there is no session to say it in yet.
 *
 * Replies are framed in place: a 12-byte placeholder, the body encoded
 * after it, then the header patched with the body's length. Inline replies
 * use one scratch buffer of the hub (reused, so the verify path allocates
 * only when the output buffer grows); a request for the writer carries its
 * own reply buffer, filled when its batch returns.
 */
#include "net/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <sodium.h>

#include "core/err.h"
#include "core/mp.h"
#include "core/secret.h"
#include "core/xmalloc.h"
#include "core/sha256.h"
#include "net/dispatch.h"
#include "net/gateway.h"
#include "net/log.h"
#include "net/metrics.h"
#include "net/peers.h"
#include "net/proto.h"
#include "net/sockq.h"
#include "net/tls.h"
#include "net/vhttp.h"
#include "store/keyfile.h"

#define READ_HIGH (64u * 1024)   /* input buffered per connection between frames */
#define IN_START 4096u           /* first input buffer; doubled while reads fill it */
#define IN_KEEP (16u * 1024)     /* an empty input buffer larger than this is freed */
#define LINGER_SECONDS 2.0       /* FAILED: time for the peer to read our last reply */
#define AUTH_KEY_MAX 128         /* the longest key kept for re-authentication */
#define PAGE_BY_REFERENCE 4096   /* listing replies this large join the output by reference */
#define CONN_FIXED (sizeof(conn) + 1024) /* the struct, its events, evbuffer and queue */
#define TLS_CHUNK 16384          /* output bytes handed to one SSL write: one record */
#define STOP_READS 16            /* reads of what a socket holds when the server stops */

typedef enum cstate { CS_OPEN, CS_ENDING, CS_FAILED, CS_LINGER, CS_CLOSED } cstate;
typedef enum cauth { AU_NONE, AU_OPERATOR, AU_USER, AU_GATEWAY } cauth;

typedef struct conn conn;
typedef struct pending pending;

/* A request in the writer, and the slot its reply waits in. */
struct pending {
    wrt_job job;              /* first: the writer's view of it */
    conn *c;
    pending *next;            /* the connection's FIFO */
    uint32_t id;
    bool list;                /* a read (a listing or a get); else a write */
    uint16_t code;            /* its opcode (metrics) */
    bool done;                /* reply ready in `reply` */
    int status;               /* a read's status (writes: job.res.status) */
    char msg[ENG_MSG_MAX];    /* a read's refusal, why */
    mpw reply;                /* framed reply: placeholder header, body */
    struct evbuffer *after;   /* replies completed behind this one */
    uint32_t nafter;
    union {
        eng_req req;
        dsp_read list;
    } u;
    char peer[TK_PEER_MAX + 1]; /* a write's audit record: the connection's address */
    size_t body_len;
    uint8_t body[];           /* the request body: u's strings point into it */
};

struct conn {
    conn_hub *h;
    conn *prev, *next;        /* hub->all */
    conn *lru_prev, *lru_next; /* hub's LRU list, while the socket is open */
    conn *dead_next;          /* hub->dead, while waiting to be reaped */
    bool on_dead;
    bool tq_on[2];            /* on hub->tq_head[op] (sq_op): readable, or with
                                 output, for the turn's end (tq_add) */
    conn *tq_next[2];
    evutil_socket_t fd;       /* -1 once the socket is closed */
    struct event *rd, *wr;    /* readable (idle timeout), writable (stall timeout) */
    bool rd_on, wr_on;        /* added to the loop */
    struct event *gone;       /* while not reading: the peer's reset (watch_gone), or NULL */
    bool gone_on;
    struct evbuffer *out;     /* replies not yet written */
    uint8_t *in;              /* input: bytes [ioff, ilen) not yet consumed */
    size_t ioff, ilen, icap;
    struct event *timer;      /* frame deadline, or linger */
    bool timer_armed;
    size_t rd_high;           /* at most this much input is held */
    cstate st;
    bool framed;              /* a complete frame has arrived */
    bool paused;              /* not reading: a limit (in flight, queued, room) */
    bool waiting;             /* not reading: the next frame waits for the writer */
    cauth auth;
    size_t keylen;
    char key[AUTH_KEY_MAX];   /* the AUTH key (personal, operator, gateway), checked again:
                                 a personal or operator key on each request, a gateway
                                 key when the keyring lost a key (ring_gen) */
    uint64_t ring_gen;        /* eng_keyring_gen at the AUTH */
    pending *head, *tail;     /* requests in the writer, oldest first */
    wrt_queue *q;             /* their queue in the writer */
    uint32_t inflight;        /* requests whose reply is not yet in the output */
    uint32_t jobs;            /* of them, in the writer (keep this struct alive) */
    size_t queued;            /* request bytes of those jobs (job.bytes) */
    size_t owed;              /* their largest replies (job.reply_max) */
    size_t held;              /* bytes of replies held behind pending ones */
    time_t active;            /* when its last complete frame (or its accept) was, seconds */
    bool counted;             /* addr is counted in the hub's peers */
    uint8_t addr[PEERS_ADDR_LEN];
    char peer[64];
    SSL *ssl;                 /* TLS: the session (NULL: plain) */
    struct event *tls_wr;     /* TLS: a read waiting for the socket to take bytes */
    uint64_t skip;            /* HTTP: body bytes still to come, to be dropped */
};

struct conn_hub {
    struct event_base *base;
    eng *e;
    wrt *w;
    conn_opts o;
    gw_key gw;                /* DIR/gateway.key, with --require-gateway-key */
    mpw scratch;              /* inline replies */
    met *m;                   /* counters (NULL: none) */
    lg_sampler sample;        /* --log-requests */
    uint16_t cur_code;        /* the opcode being answered inline, for m */
    const struct timeval *idle; /* a common timeout: idle_timeout */
    conn *all;                /* every connection not yet freed */
    size_t nopen;             /* of them, with an open socket */
    conn *lru_old, *lru_new;  /* those, least recently active first */
    peers *peers;             /* open sockets per address (max_per_peer) */
    conn *dead;               /* closed, to be reaped */
    struct event *reap;
    bool stopping;
    void (*empty)(void *arg);
    void *empty_arg;
    bool empty_called;
    lg_limit log_busy, log_frame, log_bad, log_slow, log_idle, log_auth, log_queue, log_inflight,
        log_queued, log_evict, log_tls;
    tls *tls;                 /* TLS context of new connections (NULL: plain) */
    vh *vh;                   /* HTTP verification instead of frames (NULL: frames) */
    h1_out hout;              /* an HTTP response being written */
    sq *sq;                   /* the turn's reads and sends, one submission each
                                 (NULL: a read and a sendmsg in each callback) */
    conn *tq_head[2];         /* per sq_op: the turn's connections, newest first */
    struct event *tq_ev[2];   /* active while that list is not empty: runs it */
    sq_item *sq_items;        /* scratch for one sq_run, sq_cap of each */
    conn **sq_conns;          /* the connection of each item */
    struct iovec *sq_iov;     /* SQ_IOV per item */
    size_t sq_cap;
    char sends[160];          /* without a ring (sq freed at the start): sq_describe's reason */
};

static void process(conn *c);
static void process_end(conn *c, bool consumed, bool partial, size_t want);
static void close_now(conn *c);
static void resume(conn *c);
static void read_cb(evutil_socket_t fd, short what, void *arg);
static void tq_add(conn *c, sq_op op);

/* ---- small helpers ------------------------------------------------------ */

static struct timeval tv_of(double seconds)
{
    struct timeval tv;
    tv.tv_sec = (time_t)seconds;
    tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
    return tv;
}

static void peer_name(const struct sockaddr *sa, char *out, size_t cap)
{
    char a[INET6_ADDRSTRLEN] = "?";
    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, a, sizeof a);
        snprintf(out, cap, "%s:%u", a, ntohs(in->sin_port));
    } else if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof a);
        snprintf(out, cap, "[%s]:%u", a, ntohs(in6->sin6_port));
    } else {
        snprintf(out, cap, "(local)");
    }
}

static void frame_begin(mpw *w)
{
    static const uint8_t zero[PROTO_HEADER_LEN];
    mpw_reset(w);
    w->pk.callback(w->pk.data, (const char *)zero, sizeof zero);
}

static void frame_end(mpw *w, uint32_t id, int status)
{
    proto_header hd = {
        .len = (uint32_t)(w->buf.size - PROTO_HEADER_LEN),
        .code = proto_status(status),
        .flags = 0,
        .id = id,
    };
    proto_header_put((uint8_t *)w->buf.data, &hd);
}

static struct evbuffer *output(conn *c)
{
    return c->out;
}

/* ---- the LRU list of open sockets ---------------------------------------- */

static void lru_unlink(conn *c)
{
    conn_hub *h = c->h;
    if (c->lru_prev)
        c->lru_prev->lru_next = c->lru_next;
    else if (h->lru_old == c)
        h->lru_old = c->lru_next;
    if (c->lru_next)
        c->lru_next->lru_prev = c->lru_prev;
    else if (h->lru_new == c)
        h->lru_new = c->lru_prev;
    c->lru_prev = c->lru_next = NULL;
}

static void lru_append(conn *c)
{
    conn_hub *h = c->h;
    c->lru_prev = h->lru_new;
    c->lru_next = NULL;
    if (h->lru_new)
        h->lru_new->lru_next = c;
    else
        h->lru_old = c;
    h->lru_new = c;
}

/* A complete frame arrived: c is now the most recently active. The time
 * is only for the eviction's log line: time(2) (a vDSO read), not the
 * loop's cached time, which takes the base's lock. */
static void lru_touch(conn *c)
{
    c->active = time(NULL);
    if (c->h->lru_new == c)
        return;
    lru_unlink(c);
    lru_append(c);
}

/* ---- the socket's events ------------------------------------------------ */

static void unwatch_gone(conn *c);

static void rd_enable(conn *c)
{
    unwatch_gone(c); /* a read tells of a reset itself */
    if (!c->rd_on && c->fd >= 0) {
        event_add(c->rd, c->h->idle);
        c->rd_on = true;
        if (c->ssl && tls_pending(c->ssl)) /* records OpenSSL holds: the socket is silent */
            event_active(c->rd, EV_READ, 0);
    }
}

static void rd_disable(conn *c)
{
    if (c->rd_on) {
        event_del(c->rd);
        c->rd_on = false;
    }
}

/* A reset of a connection that is not being read: its socket is out of the
 * poll set, so without this the reset would be seen only at the next send,
 * and with the ring that send waits for the turn's end, after the writer
 * may have been handed this connection's queued requests (which must be
 * dropped: "closed connections' requests are dropped before they run").
 * The watch is edge-triggered: it fires once at once (input is waiting:
 * that is why reading stopped), then as the socket changes (more input, a
 * half-close, a reset), and the TCP state tells a reset from the rest.
 * (EV_CLOSED would not do: libevent reports a reset's EPOLLERR as read
 * and write, not as EV_CLOSED.) */
static void gone_cb(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    (void)what;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == TCP_CLOSE)
        close_now(c);
}

/* Called where reading stops for a limit or rule 10's wait; rd_enable
 * ends it. */
static void watch_gone(conn *c)
{
    if (c->gone_on || c->fd < 0)
        return;
    if (!c->gone && !(c->gone = event_new(c->h->base, c->fd, EV_READ | EV_ET | EV_PERSIST,
                                          gone_cb, c)))
        return; /* out of memory: the next send sees the reset */
    c->gone_on = event_add(c->gone, NULL) == 0;
}

static void unwatch_gone(conn *c)
{
    if (c->gone_on) {
        event_del(c->gone);
        c->gone_on = false;
    }
}

static void wr_enable(conn *c)
{
    if (!c->wr_on && c->fd >= 0) {
        event_add(c->wr, c->h->idle);
        c->wr_on = true;
    }
}

static void wr_disable(conn *c)
{
    if (c->wr_on) {
        event_del(c->wr);
        c->wr_on = false;
    }
}

static size_t in_len(const conn *c)
{
    return c->ilen - c->ioff;
}

static void in_drop(conn *c)
{
    c->ioff = c->ilen = 0;
}

/* After frames were consumed: moves a partial frame to the front, and
 * gives back a large buffer that has emptied. */
static void in_settle(conn *c)
{
    if (c->ioff == c->ilen) {
        c->ioff = c->ilen = 0;
        if (c->icap > IN_KEEP) {
            free(c->in);
            c->in = NULL;
            c->icap = 0;
        }
    } else if (c->ioff > 0) {
        memmove(c->in, c->in + c->ioff, c->ilen - c->ioff);
        c->ilen -= c->ioff;
        c->ioff = 0;
    }
}

/* A TLS read that had to send first: read again now the socket takes
 * bytes; a peer that takes none for idle_timeout is closed. */
static void tls_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    if (what & EV_TIMEOUT) {
        lg_limited(&c->h->log_slow, "closing %s: took no bytes for %g s", c->peer,
                   c->h->o.idle_timeout);
        close_now(c);
        return;
    }
    read_cb(fd, EV_READ, c);
}

/* in_read over TLS: records into the input, as read(2) would. */
static ssize_t tls_in_read(conn *c, size_t room)
{
    bool want_write;
    tk_why why;
    ssize_t n = tls_read(c->ssl, c->in + c->ilen, room, &want_write, &why);
    if (n < 0 && errno == EAGAIN && want_write) {
        if (!c->tls_wr)
            c->tls_wr = event_new(c->h->base, c->fd, EV_WRITE, tls_retry_cb, c);
        if (!c->tls_wr || event_add(c->tls_wr, c->h->idle) != 0)
            errno = ENOMEM;
    } else if (n < 0 && errno == EPROTO) {
        lg_limited(&c->h->log_tls, "closing %s: %s", c->peer, why.msg);
    }
    return n;
}

/* The input's room for the next read, grown first when it is full and
 * below rd_high; 0 when the frame parser has what it can take. */
static size_t in_room(conn *c)
{
    size_t want = c->rd_high;
    if (c->ilen == c->icap && c->icap < want) {
        size_t cap = c->icap ? c->icap * 2 : IN_START;
        while (cap < c->ilen + 1)
            cap *= 2;
        c->in = xrealloc(c->in, cap < want ? cap : want);
        c->icap = cap < want ? cap : want;
    }
    return (c->icap < want ? c->icap : want) - c->ilen;
}

/* One read() into the input buffer, growing it toward rd_high while reads
 * fill it. >0 bytes read, 0 at EOF, -1 on error (errno; EAGAIN: nothing). */
static ssize_t in_read(conn *c)
{
    size_t room = in_room(c);
    if (room == 0) { /* full: the frame parser has what it can take */
        errno = EAGAIN;
        return -1;
    }
    ssize_t n;
    if (c->ssl)
        n = tls_in_read(c, room);
    else
        do
            n = read(c->fd, c->in + c->ilen, room);
        while (n < 0 && errno == EINTR);
    if (n > 0)
        c->ilen += (size_t)n;
    return n;
}

static size_t unsent(conn *c)
{
    return evbuffer_get_length(output(c)) + c->held;
}

/* ---- replies, in order -------------------------------------------------- */

/* Whether a reply of n bytes may join the unsent ones: within max_output,
 * or into an empty output. If not, the connection is closed (a reader too
 * slow for its pipeline) and false returned. */
static bool output_room(conn *c, size_t n)
{
    size_t u = unsent(c);
    if (u == 0 || u + n <= c->h->o.max_output)
        return true;
    lg_limited(&c->h->log_slow, "closing %s: %zu reply bytes unsent, over --max-output %zu "
               "(a reader too slow for its pipeline)", c->peer, u + n, c->h->o.max_output);
    close_now(c);
    return false;
}

/* Whether a request whose reply may take n bytes can go to the writer now:
 * the largest replies of everything the connection has there fit beside
 * its unsent ones (or nothing is owed or unsent at all), so the writer's
 * replies never take the output over max_output. */
static bool writer_room(const conn *c, size_t n)
{
    size_t u = evbuffer_get_length(c->out) + c->held;
    return (c->owed == 0 && u == 0) || c->owed + u + n <= c->h->o.max_output;
}

/* Queues a framed reply behind every earlier one. */
static void emit(conn *c, const void *p, size_t n)
{
    if (c->st == CS_CLOSED || !output_room(c, n))
        return;
    if (!c->head) {
        evbuffer_add(output(c), p, n);
    } else {
        pending *t = c->tail;
        if (!t->after)
            t->after = evbuffer_new();
        evbuffer_add(t->after, p, n);
        t->nafter++;
        c->held += n;
        c->inflight++;
    }
}

/* The hub's scratch buffer, ready for a reply body. */
static mpw *reply_begin(conn *c)
{
    frame_begin(&c->h->scratch);
    return &c->h->scratch;
}

/* A sampled request's line (--log-requests): never a key or a body. */
static void log_request(const conn *c, uint16_t code, int status)
{
    const sch_op *op = sch_find(code);
    lg_request("binary", op ? op->name : "unknown", status ? tk_errcode(status) : "ok", c->peer);
}

static void reply_end(conn *c, uint32_t id, int status)
{
    mpw *w = &c->h->scratch;
    if (c->h->m)
        met_request(c->h->m, MET_BINARY, c->h->cur_code, status);
    if (lg_sampled(&c->h->sample))
        log_request(c, c->h->cur_code, status);
    frame_end(w, id, status);
    emit(c, w->buf.data, w->buf.size);
}

static void reply_error(conn *c, uint32_t id, int status, const char *msg)
{
    dsp_put_error(reply_begin(c), msg);
    reply_end(c, id, status);
}

/* A request that did not decode: logged (limited) with the peer, answered. */
static void refuse_request(conn *c, uint32_t id, int status, const char *msg)
{
    lg_limited(&c->h->log_bad, "bad request from %s: %s", c->peer, msg);
    reply_error(c, id, status, msg);
}

static void pending_free(pending *p)
{
    if (p->after)
        evbuffer_free(p->after);
    if (p->reply.buf.data) /* NULL once a page went to the output (add_reply) */
        sodium_memzero(p->reply.buf.data, p->reply.buf.size); /* may hold a new secret */
    mpw_free(&p->reply);
    free(p);
}

static void page_free(const void *data, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    free((void *)data);
}

/* A reply from the writer into the output. A listing's page (up to
 * megabytes, and no secret in it: rule 9) is handed over by reference, so
 * it is neither copied nor held twice; anything else is copied, and its
 * buffer wiped with the pending (a create's secret). */
static void add_reply(conn *c, pending *p)
{
    msgpack_sbuffer *b = &p->reply.buf;
    if (p->list && b->size >= PAGE_BY_REFERENCE
        && evbuffer_add_reference(output(c), b->data, b->size, page_free, NULL) == 0) {
        b->data = NULL; /* the output owns it now */
        b->size = b->alloc = 0;
        return;
    }
    evbuffer_add(output(c), b->data, b->size);
}

/* Moves the replies that are ready, oldest first, to the output (or drops
 * them once the socket is gone), then lets a connection that stopped
 * reading for a limit, or for its writes (rule 10), go on. */
static void flush(conn *c)
{
    while (c->head && c->head->done) {
        pending *p = c->head;
        c->head = p->next;
        if (!c->head)
            c->tail = NULL;
        c->inflight -= 1 + p->nafter;
        /* Room for the reply, the replies held behind it being counted already. */
        bool keep = c->st != CS_CLOSED && output_room(c, p->reply.buf.size);
        if (p->after)
            c->held -= evbuffer_get_length(p->after);
        if (keep) {
            add_reply(c, p);
            if (p->after)
                evbuffer_add_buffer(output(c), p->after);
        }
        pending_free(p);
    }
    if (c->st == CS_CLOSED)
        return;
    bool go = c->paused; /* process stops again if the limit still holds */
    if (c->waiting && !c->head) { /* the writes the next frame waited for are out */
        c->waiting = false;
        go = true;
    }
    if (go)
        resume(c);
}

/* ---- closing -------------------------------------------------------------- */

static void schedule_reap(conn *c)
{
    if (c->on_dead)
        return;
    c->on_dead = true;
    c->dead_next = c->h->dead;
    c->h->dead = c;
    event_active(c->h->reap, 0, 0);
}

/* Its requests not yet in a batch are dropped (the pendings stay in the
 * FIFO until conn_free); those in the batch in flight come back, their
 * reads not run. */
static void close_now(conn *c)
{
    if (c->st == CS_CLOSED)
        return;
    c->st = CS_CLOSED;
    if (c->q)
        c->jobs -= (uint32_t)wrt_cancel(c->h->w, c->q);
    rd_disable(c);
    wr_disable(c);
    unwatch_gone(c);
    event_del(c->timer);
    c->timer_armed = false;
    schedule_reap(c);
}

static void arm_timer(conn *c, double seconds)
{
    struct timeval tv = tv_of(seconds);
    evtimer_add(c->timer, &tv);
    c->timer_armed = true;
}

static void disarm_timer(conn *c)
{
    if (c->timer_armed)
        evtimer_del(c->timer);
    c->timer_armed = false;
}

/* ENDING or FAILED: once every reply is out, close or linger. */
static void maybe_finish(conn *c)
{
    if ((c->st != CS_ENDING && c->st != CS_FAILED) || c->head
        || evbuffer_get_length(output(c)) > 0)
        return;
    if (c->st == CS_ENDING) {
        close_now(c);
        return;
    }
    c->st = CS_LINGER;
    if (c->ssl)
        tls_close_notify(c->ssl);
    shutdown(c->fd, SHUT_WR);
    in_drop(c);
    rd_enable(c);
    arm_timer(c, LINGER_SECONDS);
}

/* out_write over TLS: the output's first bytes as records (TLS_CHUNK at a
 * time, made contiguous) until it is empty or the socket full. Bytes
 * sent, or -1 (errno). */
static ssize_t tls_out_write(conn *c)
{
    size_t total = 0, len;
    while ((len = evbuffer_get_length(c->out)) > 0) {
        size_t chunk = len < TLS_CHUNK ? len : TLS_CHUNK;
        tk_why why;
        ssize_t n = tls_write(c->ssl, evbuffer_pullup(c->out, (ev_ssize_t)chunk), chunk, &why);
        if (n <= 0) {
            if (errno == EPROTO)
                lg_limited(&c->h->log_tls, "closing %s: %s", c->peer, why.msg);
            return total ? (ssize_t)total : -1; /* an error comes again on the next write */
        }
        evbuffer_drain(c->out, (size_t)n);
        total += (size_t)n;
    }
    return (ssize_t)total;
}

/* One sendmsg of the output's first chunks; MSG_NOSIGNAL, so a peer that
 * has gone is an error return even where SIGPIPE is not ignored (a gateway
 * embedding the server). Bytes sent, or -1 (errno). */
static ssize_t out_write(conn *c)
{
    if (c->ssl)
        return tls_out_write(c);
    struct iovec v[16];
    struct msghdr m = {.msg_iov = v};
    int n = evbuffer_peek(c->out, -1, NULL, v, 16);
    m.msg_iovlen = (size_t)(n < 16 ? n : 16);
    ssize_t sent = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent > 0)
        evbuffer_drain(c->out, (size_t)sent);
    return sent;
}

/* A write's errno that means the peer is gone (EPIPE, ECONNRESET), not a
 * full socket or a signal. */
static bool write_gone(int err)
{
    return err != EAGAIN && err != EWOULDBLOCK && err != EINTR;
}

/* One write of the output's first bytes now; true when it failed for good. */
static bool write_now(conn *c)
{
    return evbuffer_get_length(output(c)) > 0 && out_write(c) < 0 && write_gone(errno);
}

/* After a write of the output's first bytes (before: its length then;
 * failed: the write failed for good): closes on a failure, lets a
 * connection that waited for room read on, and watches for writability
 * while bytes are left (the write event's timeout catching a peer that
 * takes nothing), or finishes an ending connection once all is out. */
static void send_rest(conn *c, size_t before, bool failed)
{
    struct evbuffer *out = output(c);
    for (;;) {
        if (failed) {
            close_now(c); /* the peer is gone (EPIPE, ECONNRESET) */
            return;
        }
        /* Bytes taken make room: a connection waiting for room reads on
         * (the buffered frames go first, so this ends with the input). */
        if (!c->paused || evbuffer_get_length(out) == before)
            break;
        resume(c);
        if (c->st == CS_CLOSED)
            return;
        before = evbuffer_get_length(out);
        failed = write_now(c);
    }
    if (evbuffer_get_length(out) > 0) {
        wr_enable(c);
    } else {
        wr_disable(c);
        maybe_finish(c);
    }
}

/* One write of the output now, then send_rest. */
static void send_direct(conn *c)
{
    if (c->st == CS_CLOSED || c->fd < 0)
        return;
    size_t before = evbuffer_get_length(output(c));
    send_rest(c, before, write_now(c));
}

/* Writes the replies the output holds to the socket at the end of the
 * callback that made them, rather than on the next loop turn's writable
 * event: no EV_WRITE registration (two epoll_ctl calls and a wake-up per
 * reply) unless the socket is full. With the hub's socket queue (sockq.h)
 * the write waits for the end of the loop turn instead, where every
 * connection answered in the turn is sent in one system call (tq_run);
 * without it (io_uring off or missing, and TLS, whose records OpenSSL
 * writes), one sendmsg here. Every callback that can add output ends
 * here. */
static void send_now(conn *c)
{
    if (c->st == CS_CLOSED || c->fd < 0)
        return;
    conn_hub *h = c->h;
    if (h->sq && !c->ssl && evbuffer_get_length(output(c)) > 0) {
        tq_add(c, SQ_SEND);
        return;
    }
    send_direct(c);
}

#define SQ_IOV 16 /* chunks of the output in one send */

/* Room for n items in the hub's scratch. */
static void sq_room(conn_hub *h, size_t n)
{
    if (n <= h->sq_cap)
        return;
    h->sq_cap = n * 2;
    h->sq_items = xrealloc(h->sq_items, h->sq_cap * sizeof *h->sq_items);
    h->sq_conns = xrealloc(h->sq_conns, h->sq_cap * sizeof *h->sq_conns);
    h->sq_iov = xrealloc(h->sq_iov, h->sq_cap * SQ_IOV * sizeof *h->sq_iov);
}

/* The peer broke framing: reply (in order) with status, then fail. */
static void fail_framing(conn *c, uint32_t id, int status, const char *msg)
{
    reply_error(c, id, status, msg);
    if (c->st == CS_CLOSED)
        return;
    c->st = CS_FAILED;
    disarm_timer(c);
    in_drop(c);
    maybe_finish(c);
}

/* ---- requests ------------------------------------------------------------- */

/* A gateway's or operator's AUTH still holds: checked again only when the
 * keyring lost a key since (one compare per verification run otherwise). */
static bool auth_holds(conn *c)
{
    tk_actor a;
    uint64_t gen = eng_keyring_gen(c->h->e);
    if ((c->auth != AU_GATEWAY && c->auth != AU_OPERATOR) || gen == c->ring_gen)
        return true;
    bool ok = c->auth == AU_GATEWAY
                  ? gw_key_ok(&c->h->gw, c->h->e, c->key, c->keylen)
                  : eng_authenticate(c->h->e, c->key, c->keylen, time(NULL), &a) == 0;
    if (ok) {
        c->ring_gen = gen;
        return true;
    }
    c->auth = AU_NONE;
    sodium_memzero(c->key, sizeof c->key);
    c->keylen = 0;
    return false;
}

static void do_auth(conn *c, uint32_t id, const uint8_t *body, size_t len)
{
    conn_hub *h = c->h;
    tk_str key;
    dsp_err err;
    tk_actor actor;
    const char *who = NULL;
    int rc = dsp_auth(body, len, &key, &err);
    if (rc) {
        refuse_request(c, id, rc, err.msg);
        return;
    }
    /* A new AUTH replaces the old one, failed or not. */
    c->auth = AU_NONE;
    sodium_memzero(c->key, sizeof c->key);
    c->keylen = 0;
    if (gw_key_ok(&h->gw, h->e, key.p, key.n)) {
        c->auth = AU_GATEWAY;
        who = "gateway";
    } else if (eng_authenticate(h->e, key.p, key.n, time(NULL), &actor) == 0) {
        c->auth = actor.kind == TK_ACTOR_OPERATOR ? AU_OPERATOR : AU_USER;
        who = actor.kind == TK_ACTOR_OPERATOR ? "operator" : "user";
    }
    if (who && key.n <= sizeof c->key) {
        memcpy(c->key, key.p, key.n);
        c->keylen = key.n;
        c->ring_gen = eng_keyring_gen(h->e);
    } else {
        c->auth = AU_NONE;
        who = NULL;
    }
    if (!who) {
        lg_limited(&h->log_auth, "failed AUTH from %s", c->peer);
        reply_error(c, id, TK_EUNAUTH, "unknown, expired or deleted key");
        return;
    }
    dsp_put_auth(reply_begin(c), who);
    reply_end(c, id, 0);
}

/* True when a whole VERIFY frame of flags 0 (what verify_run answers)
 * starts at off of c's input, whose bytes end at end; *hd is its header. */
static bool verify_frame_at(const conn *c, size_t off, size_t end, proto_header *hd)
{
    if (end - off < PROTO_HEADER_LEN)
        return false;
    proto_header_get(c->in + off, hd);
    return hd->code == OP_VERIFY && hd->flags == 0 && hd->len <= c->h->o.max_frame
           && end - off - PROTO_HEADER_LEN >= hd->len;
}

/* VERIFY requests, answered in runs: the whole VERIFY frames at the front
 * of the input (flags 0; at most VIEW_BATCH, and no more than the in-flight
 * limit allows) are decoded, the lookups of those that need one started
 * together so that their index misses overlap (eng_verify_start), then
 * every frame is answered in order: a verdict, or the refusal of a body
 * that does not decode or of a connection without the gateway key. A
 * client_id that is not a UUID gets the verdict "malformed" without a
 * lookup. One frame is a run of one. Called with a whole VERIFY frame at
 * the front; returns the bytes of input answered. */
static size_t verify_run(conn *c)
{
    conn_hub *h = c->h;
    struct {
        uint32_t id;
        int rc;       /* the body's decoding */
        int probe;    /* index into probes, or -1: no lookup */
        int verdict;  /* the answer's tk_verdict, or -1: refused (metrics) */
        dsp_verify v;
        dsp_err err;
    } f[VIEW_BATCH];
    view_vreq reqs[VIEW_BATCH];
    view_probe probes[VIEW_BATCH];
    size_t n = 0, nreq = 0, off = c->ioff, max = VIEW_BATCH;
    bool refused = h->o.require_gateway
                   && ((c->auth != AU_GATEWAY && c->auth != AU_OPERATOR) || !auth_holds(c));
    proto_header hd;

    /* No request of this connection is in the writer (process waits for
     * them first), so every reply goes straight to the output. */
    while (n < max && verify_frame_at(c, off, c->ilen, &hd)) {
        f[n].id = hd.id;
        f[n].rc = dsp_verify_req(c->in + off + PROTO_HEADER_LEN, hd.len, &f[n].v, &f[n].err);
        f[n].probe = -1;
        f[n].verdict = -1;
        if (f[n].rc == 0 && !refused && (!f[n].v.has_client_id || f[n].v.client_id_ok)) {
            const dsp_verify *v = &f[n].v;
            reqs[nreq] = (view_vreq){v->has_client_id ? &v->client_id : NULL, v->secret.p,
                                     v->secret.n};
            f[n].probe = (int)nreq++;
        }
        off += PROTO_HEADER_LEN + hd.len;
        n++;
    }
    uint64_t t0 = h->m ? met_now_ns() : 0;
    if (nreq)
        eng_verify_start(h->e, reqs, nreq, probes);
    int64_t now = time(NULL);
    h->cur_code = OP_VERIFY;
    for (size_t i = 0; i < n && c->st != CS_CLOSED; i++) {
        tk_verify out;
        if (f[i].rc) {
            refuse_request(c, f[i].id, f[i].rc, f[i].err.msg);
        } else if (refused) {
            reply_error(c, f[i].id, TK_EUNAUTH, "VERIFY needs AUTH with the gateway key");
        } else {
            if (f[i].probe < 0)
                out.verdict = TK_V_MALFORMED; /* the client_id is not a UUID */
            else
                eng_verify_finish(h->e, &probes[f[i].probe], now, &out);
            /* Encoded now: out's strings are borrowed from the view. */
            dsp_put_verify(reply_begin(c), &out);
            reply_end(c, f[i].id, 0);
            f[i].verdict = (int)out.verdict;
        }
    }
    if (h->m) { /* each verification gets the run's mean time */
        uint64_t ns = met_now_ns() - t0;
        for (size_t i = 0; i < n; i++)
            if (f[i].verdict >= 0)
                met_verify(h->m, MET_BINARY, (tk_verdict)f[i].verdict, ns / n);
    }
    for (size_t i = 0; h->sample.every && i < n; i++)
        if (lg_sampled(&h->sample))
            lg_request("binary", "VERIFY",
                       f[i].verdict >= 0 ? model_verdict_name((tk_verdict)f[i].verdict)
                                         : tk_errcode(f[i].rc ? f[i].rc : TK_EUNAUTH),
                       c->peer);
    return off - c->ioff;
}

/* Writer thread: a read. */
static void run_list(eng *e, wrt_job *j)
{
    pending *p = (pending *)j;
    p->status = dsp_run_read(e, &p->u.list, &p->reply, p->msg);
}

/* Loop thread, after eng_publish: the reply of a request back from the
 * writer. */
static void job_done(wrt_job *j)
{
    pending *p = (pending *)j;
    conn *c = p->c;
    c->jobs--;
    c->queued -= j->bytes;
    c->owed -= j->reply_max;
    if (c->st == CS_CLOSED) { /* nobody to tell (a listing was not even run) */
        sodium_memzero(j->res.secret, sizeof j->res.secret);
        p->done = true;
        flush(c);
        if (c->jobs == 0)
            schedule_reap(c);
        return;
    }
    int status = p->list ? p->status : j->res.status;
    if (c->h->m)
        met_request(c->h->m, MET_BINARY, p->code, status);
    if (lg_sampled(&c->h->sample))
        log_request(c, p->code, status);
    if (status != 0 || !p->list)
        frame_begin(&p->reply);
    if (status != 0 && p->list)
        dsp_put_error(&p->reply, p->msg[0] ? p->msg : tk_strerror(status));
    else if (status != 0) /* the engine's reason when it gave one, and a retry hint */
        dsp_put_write_error(&p->reply, &j->res);
    else if (!p->list)
        dsp_put_write(&p->reply, &p->u.req, &j->res);
    sodium_memzero(j->res.secret, sizeof j->res.secret);
    frame_end(&p->reply, p->id, status);
    p->done = true;
    flush(c);
    if (c->st == CS_CLOSED) {
        if (c->jobs == 0)
            schedule_reap(c);
        return;
    }
    maybe_finish(c);
    send_now(c);
}

/* The actor of a management request, or an error reply. */
static bool actor_of(conn *c, uint32_t id, tk_actor *a)
{
    switch (c->auth) {
    case AU_OPERATOR:
    case AU_USER:
        /* Checked again each time: a deleted personal key, or an operator
         * key taken off the keyring, stops here at once (and at commit). */
        if (eng_authenticate(c->h->e, c->key, c->keylen, time(NULL), a) == 0)
            return true;
        reply_error(c, id, TK_EUNAUTH,
                    c->auth == AU_USER ? "the personal key is no longer valid"
                                       : "the operator key was removed from the keyring");
        c->auth = AU_NONE;
        sodium_memzero(c->key, sizeof c->key);
        return false;
    case AU_GATEWAY:
        reply_error(c, id, TK_EUNAUTH, "the gateway key may only verify");
        return false;
    default:
        reply_error(c, id, TK_EUNAUTH, "authenticate first (AUTH)");
        return false;
    }
}

static void do_manage(conn *c, const proto_header *hd, const uint8_t *body, bool list)
{
    conn_hub *h = c->h;
    tk_actor actor;
    dsp_err err;
    if (!actor_of(c, hd->id, &actor))
        return;
    pending *p = xmalloc(sizeof *p + hd->len);
    memset(p, 0, sizeof *p);
    memcpy(p->body, body, hd->len);
    p->body_len = hd->len;
    int rc = list ? dsp_read_req(hd->code, p->body, hd->len, &p->u.list, &err)
                  : dsp_write_req(hd->code, p->body, hd->len, &p->u.req, &err);
    if (rc) {
        free(p);
        refuse_request(c, hd->id, rc, err.msg);
        return;
    }
    p->c = c;
    p->id = hd->id;
    p->code = hd->code;
    p->list = list;
    mpw_init(&p->reply);
    frame_begin(&p->reply);
    if (list) {
        p->u.list.q.actor = actor;
        p->job.read = run_list;
    } else {
        p->u.req.actor = actor;
        snprintf(p->peer, sizeof p->peer, "%s", c->peer);
        p->u.req.peer = (tk_str){p->peer, strlen(p->peer)};
        p->u.req.listener = (tk_str){"binary", 6};
        p->job.req = &p->u.req;
    }
    p->job.done = job_done;
    /* The request and its reply's buffer (a listing's page is counted in
     * the batch that builds it, and in the output room it waited for). */
    p->job.bytes = sizeof *p + hd->len + DSP_WRITE_REPLY_MAX;
    p->job.reply_max = list ? dsp_read_reply_max(&p->u.list) : DSP_WRITE_REPLY_MAX;
    if (wrt_submit(h->w, c->q, &p->job)) {
        pending_free(p);
        lg_limited(&h->log_queue, "writer backlog full: EBUSY to %s", c->peer);
        reply_error(c, hd->id, TK_EBUSY, "the server's write queue is full; try again");
        return;
    }
    if (c->tail)
        c->tail->next = p;
    else
        c->head = p;
    c->tail = p;
    c->inflight++;
    c->jobs++;
    c->queued += p->job.bytes;
    c->owed += p->job.reply_max;
}

/* One whole frame (a VERIFY with flags 0 goes to verify_run instead). */
static void handle(conn *c, const proto_header *hd, const uint8_t *body)
{
    dsp_err err;
    int rc;
    c->h->cur_code = hd->code;
    if (hd->flags != 0) {
        refuse_request(c, hd->id, TK_EPROTO, "flags must be 0 in protocol version 1");
        return;
    }
    switch (hd->code) {
    case OP_PING:
        if ((rc = dsp_ping(body, hd->len, &err))) {
            refuse_request(c, hd->id, rc, err.msg);
            return;
        }
        dsp_put_ping(reply_begin(c));
        reply_end(c, hd->id, 0);
        return;
    case OP_AUTH: do_auth(c, hd->id, body, hd->len); return;
    default: break; /* VERIFY with flags 0 never comes here: verify_run */
    }
    switch (dsp_classify(hd->code)) {
    case DSP_WRITE: do_manage(c, hd, body, false); return;
    case DSP_READ: do_manage(c, hd, body, true); return;
    case DSP_HTTP:
        refuse_request(c, hd->id, TK_EOPCODE,
                       "portal sessions are served over HTTP only (docs/portal.md)");
        return;
    default:
        refuse_request(c, hd->id, TK_EOPCODE, "unknown opcode");
        return;
    }
}

/* Stops reading for a limit; flush and send_now resume (resume). */
static void pause_reading(conn *c)
{
    if (!c->paused) {
        c->paused = true;
        rd_disable(c); /* what is buffered stays; the socket holds the rest */
        watch_gone(c);
    }
}

/* Reads on after a limit or the writes it waited for (rule 10) may have
 * cleared: process answers what is buffered and stops again where a limit
 * still holds. */
static void resume(conn *c)
{
    c->paused = false;
    if (c->st == CS_OPEN && !c->waiting)
        rd_enable(c);
    process(c);
}

/* The largest reply the writer can make to this frame (a write or a
 * read; one that does not decode gets a small error reply). */
static size_t writer_reply_max(const proto_header *hd, const uint8_t *body)
{
    dsp_read r;
    dsp_err err;
    if (dsp_classify(hd->code) == DSP_READ && dsp_read_req(hd->code, body, hd->len, &r, &err) == 0)
        return dsp_read_reply_max(&r);
    return DSP_WRITE_REPLY_MAX;
}

/* The verify listener (conn_hub_set_http): answers every whole request
 * buffered, in order, each straight into the output; the body of one is
 * dropped as it comes (skip). A response that ends the connection (an
 * error, Connection: close) is its last: the rest of the input is dropped
 * and the connection lingers as after a framing error, so the peer reads
 * the response rather than a reset. */
static void process_http(conn *c)
{
    conn_hub *h = c->h;
    size_t want = READ_HIGH;
    bool consumed = false, partial = false;
    while ((c->st == CS_OPEN || c->st == CS_ENDING) && in_len(c) > 0) {
        if (c->skip) {
            size_t n = in_len(c) < c->skip ? in_len(c) : (size_t)c->skip;
            c->ioff += n;
            c->skip -= n;
            continue;
        }
        vh_result r;
        h->hout.n = 0;
        if (vh_answer(h->vh, c->in + c->ioff, in_len(c), c->peer, h->stopping, &h->hout, &r)
            == VH_PARTIAL) {
            partial = true;
            if (r.want > want)
                want = r.want;
            break;
        }
        emit(c, h->hout.p, h->hout.n);
        if (c->st == CS_CLOSED)
            return;
        c->ioff += r.used;
        c->skip = r.skip;
        consumed = true;
        if (r.close) {
            lru_touch(c);
            c->st = CS_FAILED;
            disarm_timer(c);
            in_drop(c);
            maybe_finish(c);
            return;
        }
    }
    process_end(c, consumed, partial || c->skip > 0, want);
}

/* Answers every whole frame buffered, while the connection may. */
static void process(conn *c)
{
    conn_hub *h = c->h;
    if (c->st != CS_OPEN && c->st != CS_ENDING)
        return;
    if (h->vh) {
        process_http(c);
        return;
    }
    size_t want = READ_HIGH;
    bool consumed = false, partial = false;
    for (;;) {
        if (c->st != CS_OPEN && c->st != CS_ENDING)
            return;
        if (c->inflight >= h->o.max_inflight) {
            if (!c->paused)
                lg_limited(&h->log_inflight, "not reading from %s: %u requests in flight, the "
                           "limit; until replies drain", c->peer, c->inflight);
            pause_reading(c);
            break;
        }
        if (c->queued >= h->o.max_queued) {
            if (!c->paused)
                lg_limited(&h->log_queued, "not reading from %s: %zu bytes of requests in the "
                           "writer (--max-queued %zu); until they are done", c->peer, c->queued,
                           h->o.max_queued);
            pause_reading(c);
            break;
        }
        size_t avail = in_len(c);
        if (avail == 0)
            break;
        if (avail < PROTO_HEADER_LEN) {
            partial = true;
            break;
        }
        const uint8_t *frame = c->in + c->ioff;
        proto_header hd;
        proto_header_get(frame, &hd);
        if (hd.len > h->o.max_frame) {
            lg_limited(&h->log_frame, "closing %s: frame of %u bytes over --max-frame %u",
                       c->peer, hd.len, h->o.max_frame);
            fail_framing(c, hd.id, TK_ELIMIT, "frame longer than the server's maximum");
            return;
        }
        size_t total = PROTO_HEADER_LEN + (size_t)hd.len;
        if (avail < total) {
            partial = true;
            if (total > want)
                want = total;
            break;
        }
        if (c->head && dsp_classify(hd.code) == DSP_INLINE) {
            /* Rule 10, one order per connection: answered now, this VERIFY,
             * AUTH or PING would see the state before this connection's
             * own writes still in the writer. It waits until they are
             * published (flush resumes), and so does everything behind
             * it. Requests for the writer need not wait: the writer keeps
             * their order and runs each after the writes queued before. */
            if (!c->waiting) {
                c->waiting = true;
                rd_disable(c); /* what is buffered stays; the socket holds the rest */
                watch_gone(c);
            }
            break;
        }
        if (dsp_classify(hd.code) != DSP_INLINE
            && !writer_room(c, writer_reply_max(&hd, frame + PROTO_HEADER_LEN))) {
            /* Its reply might not fit the output beside the replies owed:
             * the frame waits, unread, for replies to come back (flush) or
             * for the peer to take bytes (send_now). Not logged: this is
             * how a pipeline of listings is paced. A refusal (an unknown
             * opcode, flags) waits too: queued behind a listing, it would
             * count against that listing's room when the listing's reply
             * comes back. */
            pause_reading(c);
            break;
        }
        size_t used = total;
        if (hd.code == OP_VERIFY && hd.flags == 0)
            used = verify_run(c); /* this frame and the VERIFY frames after it */
        else
            handle(c, &hd, frame + PROTO_HEADER_LEN);
        if (c->st == CS_CLOSED)
            return;
        c->ioff += used;
        consumed = true;
    }
    process_end(c, consumed, partial, want);
}

/* After process's frames (or requests) were answered: the input settled,
 * the connection marked active, and then for an ENDING one a partial frame
 * dropped and the end begun; else the next read's size (want) and the
 * frame deadline, which runs from the first byte of a frame we wait for. */
static void process_end(conn *c, bool consumed, bool partial, size_t want)
{
    conn_hub *h = c->h;
    in_settle(c);
    if (consumed) {
        c->framed = true;
        lru_touch(c);
    }
    if (c->st == CS_ENDING) {
        if (partial && !c->paused) {
            if (!h->stopping)
                lg_limited(&h->log_frame, "%s closed in the middle of a frame", c->peer);
            in_drop(c);
        }
        disarm_timer(c);
        maybe_finish(c);
        return;
    }
    c->rd_high = want;
    if (!c->framed)
        return; /* the first frame's deadline runs from the accept */
    if (!partial || c->paused || c->waiting)
        disarm_timer(c);
    else if (consumed || !c->timer_armed)
        arm_timer(c, h->o.frame_timeout);
}

/* ---- libevent callbacks --------------------------------------------------- */

/* No byte for idle_timeout: close an idle connection; a busy one (requests
 * in the writer, replies or a frame on the way) is left alone. */
static void read_idle(conn *c)
{
    conn_hub *h = c->h;
    if (c->st == CS_OPEN && c->inflight == 0 && evbuffer_get_length(output(c)) == 0
        && in_len(c) == 0) {
        lg_limited(&h->log_idle, "closing %s: idle for %g s", c->peer, h->o.idle_timeout);
        close_now(c);
    }
}

/* After a read of n bytes into the input (in_read's result: -1 with
 * errno, 0 at the peer's end): answers what came, or ends. */
static void read_done(conn *c, ssize_t n)
{
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            close_now(c); /* ECONNRESET and the like */
        return;
    }
    if (n == 0) { /* EOF */
        rd_disable(c);
        if (c->st == CS_OPEN) {
            c->st = CS_ENDING; /* answer what was sent, then close */
            process(c);
            send_now(c);
        } else if (c->st == CS_LINGER) {
            close_now(c);
        }
        return;
    }
    if (c->st == CS_LINGER || c->st == CS_FAILED) { /* nothing more is answered */
        in_drop(c);
        return;
    }
    process(c);
    send_now(c);
}

/* ---- the loop turn's socket work (sockq.h) ------------------------------
 *
 * A plain connection that is readable (read_cb), or has output (send_now),
 * goes on the turn's list for that op. The list's event, made active by
 * its first entry, runs after every callback already due in the turn: one
 * sq_run for the whole list (one
 * io_uring_enter), then each connection goes on as after its own read or
 * write. The reads' list runs first, so the replies they make all go in
 * the sends' list. */

static void tq_add(conn *c, sq_op op)
{
    conn_hub *h = c->h;
    if (c->tq_on[op])
        return;
    c->tq_on[op] = true;
    c->tq_next[op] = h->tq_head[op];
    if (!h->tq_head[op])
        event_active(h->tq_ev[op], EV_TIMEOUT, 0);
    h->tq_head[op] = c;
}

/* Takes c off the turn's lists (it is being freed). */
static void tq_unlink(conn *c)
{
    for (int op = 0; op < 2; op++) {
        if (!c->tq_on[op])
            continue;
        for (conn **pp = &c->h->tq_head[op]; *pp; pp = &(*pp)->tq_next[op])
            if (*pp == c) {
                *pp = c->tq_next[op];
                break;
            }
        c->tq_on[op] = false;
    }
}

/* Fills *it (its iovecs at v) with c's part of the turn's op; false when it
 * has none: closed, or an input with no room (as in_read: the frame parser
 * has what it can take). */
static bool tq_item(conn *c, sq_op op, struct iovec *v, sq_item *it)
{
    if (c->st == CS_CLOSED || c->fd < 0)
        return false;
    if (op == SQ_SEND) {
        int k = evbuffer_peek(c->out, -1, NULL, v, SQ_IOV);
        *it = (sq_item){SQ_SEND, c->fd, v, k < SQ_IOV ? k : SQ_IOV, 0};
        return true;
    }
    size_t room = in_room(c);
    if (room == 0)
        return false;
    *v = (struct iovec){c->in + c->ilen, room};
    *it = (sq_item){SQ_RECV, c->fd, v, 1, 0};
    return true;
}

/* c goes on as after its own read or write, whose result was res (bytes,
 * or -errno). */
static void tq_done(conn *c, sq_op op, ssize_t res)
{
    if (op == SQ_SEND) {
        size_t before = evbuffer_get_length(c->out);
        if (res > 0)
            evbuffer_drain(c->out, (size_t)res);
        send_rest(c, before, res < 0 && write_gone((int)-res));
        return;
    }
    if (res > 0)
        c->ilen += (size_t)res;
    else if (res < 0)
        errno = (int)-res;
    read_done(c, res < 0 ? -1 : res);
}

/* The ring failed (sq_run goes by read and sendmsg from now on): said
 * once in the log (conn_hub_sends tells it from then on). */
static void ring_failed(conn_hub *h)
{
    lg_line("socket reads and sends by %s from now on", sq_describe(h->sq));
}

static void prefetch(conn_hub *h, const view_vreq *reqs, size_t k)
{
    eng_verify_prefetch(h->e, reqs, k);
    if (h->m)
        met_prefetch(h->m, k);
}

/* The lookups of the turn's verifications started together
 * (eng_verify_prefetch), before the first is answered. A gateway keeps one
 * request in flight per connection, so a connection seldom has two whose
 * cache misses could overlap (verify_run's runs); a turn has many
 * connections' requests. Takes the first whole VERIFY frame of each
 * connection read in the turn (n items, res the bytes read). A hint only:
 * each is still answered in its connection's order by verify_run. A
 * connection alone in the turn gains nothing and is passed over. Binary
 * listener only: the verify listener's heads would be parsed twice. */
static void turn_prefetch(conn_hub *h, size_t n)
{
    view_vreq reqs[VIEW_BATCH];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        conn *c = h->sq_conns[i];
        ssize_t res = h->sq_items[i].res;
        proto_header hd;
        dsp_verify v;
        dsp_err err;
        if (res <= 0 || c->st != CS_OPEN
            || !verify_frame_at(c, c->ioff, c->ilen + (size_t)res, &hd)
            || dsp_verify_req(c->in + c->ioff + PROTO_HEADER_LEN, hd.len, &v, &err) != 0)
            continue;
        reqs[k++] = (view_vreq){NULL, v.secret.p, v.secret.n};
        if (k == VIEW_BATCH) {
            prefetch(h, reqs, k);
            k = 0;
        }
    }
    if (k > 1) /* one alone: its own verify_run is as early */
        prefetch(h, reqs, k);
}

/* Runs the turn's list for op. It is taken whole first: a connection that
 * comes back on it (a send's send_rest that reads on and answers) starts
 * a new list, whose event runs once more in the same turn. */
static void tq_run(conn_hub *h, sq_op op)
{
    size_t n = 0;
    for (conn *c = h->tq_head[op]; c; c = c->tq_next[op])
        n++;
    sq_room(h, n);
    n = 0;
    for (conn *c = h->tq_head[op]; c; c = c->tq_next[op]) {
        c->tq_on[op] = false;
        if (tq_item(c, op, &h->sq_iov[n * SQ_IOV], &h->sq_items[n]))
            h->sq_conns[n++] = c;
    }
    h->tq_head[op] = NULL;
    bool ring = sq_uring(h->sq);
    size_t enters = sq_run(h->sq, h->sq_items, n);
    if (ring && !sq_uring(h->sq)) /* it failed in this run, which went on without it */
        ring_failed(h);
    if (h->m && enters)
        met_io(h->m, op == SQ_RECV ? MET_IO_RECV : MET_IO_SEND, enters, n);
    if (op == SQ_RECV && !h->vh && n > 1)
        turn_prefetch(h, n);
    for (size_t i = 0; i < n; i++) {
        conn *c = h->sq_conns[i];
        if (c->st != CS_CLOSED && c->fd >= 0) /* else closed by an earlier one's answer */
            tq_done(c, op, h->sq_items[i].res);
    }
}

static void reads_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    tq_run(arg, SQ_RECV);
}

static void sends_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    tq_run(arg, SQ_SEND);
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    (void)fd;
    if (what & EV_TIMEOUT) {
        read_idle(c);
        return;
    }
    conn_hub *h = c->h;
    if (h->sq && !c->ssl) {
        tq_add(c, SQ_RECV); /* read with the turn's others */
        return;
    }
    read_done(c, in_read(c));
}

static void write_cb(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    (void)fd;
    if (what & EV_TIMEOUT) {
        lg_limited(&c->h->log_slow, "closing %s: took no reply bytes for %g s", c->peer,
                   c->h->o.idle_timeout);
        close_now(c);
        return;
    }
    send_now(c); /* writes what it can; drained: stops watching, may finish */
}

/* A TLS connection's read event: read_cb, then once more on the next loop
 * turn while OpenSSL holds records the input had no room for. */
static void tls_read_cb(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    read_cb(fd, what, c);
    if (c->st != CS_CLOSED && c->rd_on && c->ssl && tls_pending(c->ssl))
        event_active(c->rd, EV_READ, 0);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    (void)fd;
    (void)what;
    c->timer_armed = false;
    if (c->st == CS_OPEN && !c->framed)
        lg_limited(&c->h->log_frame, "closing %s: no complete frame within %g s of connecting",
                   c->peer, c->h->o.frame_timeout);
    else if (c->st == CS_OPEN)
        lg_limited(&c->h->log_frame, "closing %s: a frame unfinished after %g s", c->peer,
                   c->h->o.frame_timeout);
    close_now(c);
}

/* ---- the hub -------------------------------------------------------------- */

/* Closes the socket (its events are deleted first). */
static void close_socket(conn *c)
{
    if (c->fd < 0)
        return;
    rd_disable(c);
    wr_disable(c);
    unwatch_gone(c);
    if (c->ssl) {
        if (c->tls_wr)
            event_del(c->tls_wr);
        tls_conn_end(c->ssl); /* close_notify when the session is sound */
        c->ssl = NULL;
    }
    evutil_closesocket(c->fd);
    c->fd = -1;
}

static void conn_free(conn *c)
{
    tq_unlink(c);
    while (c->head) {
        pending *p = c->head;
        c->head = p->next;
        pending_free(p);
    }
    close_socket(c);
    wrt_queue_free(c->q);
    if (c->rd)
        event_free(c->rd);
    if (c->wr)
        event_free(c->wr);
    if (c->out)
        evbuffer_free(c->out);
    free(c->in);
    if (c->timer)
        event_free(c->timer);
    if (c->tls_wr)
        event_free(c->tls_wr);
    if (c->gone)
        event_free(c->gone);
    sodium_memzero(c->key, sizeof c->key);
    free(c);
}

static void unlink_conn(conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        c->h->all = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

static void check_empty(conn_hub *h)
{
    if (h->stopping && !h->empty_called && h->all == NULL && (!h->w || wrt_idle(h->w))) {
        h->empty_called = true;
        h->empty(h->empty_arg);
    }
}

/* Gives back c's slot: its socket closes, and it leaves the LRU list and
 * its address's count. */
static void release_slot(conn *c)
{
    conn_hub *h = c->h;
    if (c->fd < 0)
        return;
    close_socket(c);
    h->nopen--;
    lru_unlink(c); /* on the list from its accept (fd >= 0) */
    if (c->counted) {
        peers_del(h->peers, c->addr);
        c->counted = false;
    }
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
    conn_hub *h = arg;
    (void)fd;
    (void)what;
    while (h->dead) {
        conn *c = h->dead;
        h->dead = c->dead_next;
        c->on_dead = false;
        release_slot(c);
        if (c->jobs == 0) { /* else job_done reschedules it */
            unlink_conn(c);
            conn_free(c);
        }
    }
    check_empty(h);
}

const char *conn_hub_sends(const conn_hub *h)
{
    return h->sq ? sq_describe(h->sq) : h->sends;
}

void conn_hub_set_metrics(conn_hub *h, met *m)
{
    h->m = m;
}

void conn_hub_set_tls(conn_hub *h, tls *t)
{
    h->tls = t;
}

void conn_hub_set_http(conn_hub *h, vh *v)
{
    h->vh = v;
}

void conn_hub_new(struct event_base *base, eng *e, wrt *w, const conn_opts *opts,
                  const char *gateway_key, conn_hub **out)
{
    conn_hub *h = xcalloc(1, sizeof *h);
    h->base = base;
    h->e = e;
    h->w = w;
    h->o = *opts;
    h->sample.every = opts->log_requests;
    gw_key_init(&h->gw, gateway_key);
    if (opts->max_per_peer)
        peers_new((size_t)opts->max_connections + 1, &h->peers);
    mpw_init(&h->scratch);
    struct timeval idle = tv_of(opts->idle_timeout);
    h->idle = event_base_init_common_timeout(base, &idle); /* one queue, O(1) re-arm */
    if (!h->idle) {
        lg_line("cannot create a timeout queue (out of memory)");
        abort();
    }
    h->reap = event_new(base, -1, 0, reap_cb, h);
    sq_new(opts->io_uring, &h->sq);
    if (!sq_uring(h->sq)) { /* the fallback: a read and a sendmsg per callback, as before */
        snprintf(h->sends, sizeof h->sends, "%s", sq_describe(h->sq));
        sq_free(h->sq);
        h->sq = NULL;
    }
    h->tq_ev[SQ_SEND] = h->sq ? event_new(base, -1, 0, sends_cb, h) : NULL;
    h->tq_ev[SQ_RECV] = h->sq ? event_new(base, -1, 0, reads_cb, h) : NULL;
    if (!h->reap || (h->sq && (!h->tq_ev[SQ_SEND] || !h->tq_ev[SQ_RECV]))) {
        lg_line("cannot create an event (out of memory)");
        abort();
    }
    *out = h;
}

/* The server's word on a connection it closes: one EBUSY reply with id 0,
 * written straight to the socket, or to its TLS session (best effort:
 * whatever else it holds is sent or unsent, the peer is closed either
 * way). */
static void say_busy(conn_hub *h, evutil_socket_t fd, SSL *ssl, const char *why)
{
    mpw *w = &h->scratch;
    const void *p;
    size_t len;
    if (h->vh) { /* an HTTP 503 */
        h->hout.n = 0;
        vh_busy(&h->hout, why);
        p = h->hout.p;
        len = h->hout.n;
    } else {
        frame_begin(w);
        dsp_put_error(w, why);
        frame_end(w, 0, TK_EBUSY);
        p = w->buf.data;
        len = w->buf.size;
    }
    ssize_t n = ssl ? tls_write(ssl, p, len, NULL) : send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)n;
}

/* A newcomer turned away: EBUSY with why (over TLS there is no session to
 * say it in yet), then close. */
static void refuse(conn_hub *h, evutil_socket_t fd, const char *why)
{
    if (!h->tls)
        say_busy(h, fd, NULL, why);
    evutil_closesocket(fd);
}

/* The least recently active connection with nothing in flight: no request
 * unanswered, no reply unsent (a closed one waiting to be reaped holds its
 * slot for nothing). NULL when every connection is busy. */
static conn *lru_victim(conn_hub *h)
{
    for (conn *c = h->lru_old; c; c = c->lru_next)
        if (c->st == CS_CLOSED
            || (c->inflight == 0 && c->jobs == 0 && evbuffer_get_length(c->out) == 0))
            return c;
    return NULL;
}

/* Closes v to give its slot to the newcomer from peer. */
static void evict(conn_hub *h, conn *v, const char *peer)
{
    if (v->st != CS_CLOSED) {
        long long idle = (long long)(time(NULL) - v->active);
        lg_limited(&h->log_evict, "closing %s: least recently active of %zu connections (idle "
                   "%lld s), for %s (--max-connections)", v->peer, h->nopen, idle, peer);
        /* An idle HTTP connection is closed without a word: a response
         * nobody asked for would be read as the answer to the next request. */
        if (!h->vh)
            say_busy(h, v->fd, v->ssl, "connection closed: its slot went to a new connection (it "
                                       "was the least recently active at the server's "
                                       "connection limit)");
        close_now(v);
    }
    release_slot(v);
}

void conn_hub_accept(conn_hub *h, evutil_socket_t fd, const struct sockaddr *sa, int salen)
{
    char peer[64];
    uint8_t key[PEERS_ADDR_LEN];
    bool keyed = false;
    (void)salen;
    peer_name(sa, peer, sizeof peer);
    if (h->stopping) {
        refuse(h, fd, "server is stopping");
        return;
    }
    if (h->peers && (keyed = peers_key(sa, key))
        && peers_count(h->peers, key) >= h->o.max_per_peer) {
        lg_limited(&h->log_busy, "refusing %s: %u connections from its address (--max-per-peer)",
                   peer, peers_count(h->peers, key));
        refuse(h, fd, "too many connections from this address");
        return;
    }
    if (h->nopen >= h->o.max_connections) {
        conn *v = lru_victim(h);
        if (!v) {
            lg_limited(&h->log_busy, "refusing %s: %zu connections open (--max-connections), "
                       "every one with requests in flight", peer, h->nopen);
            refuse(h, fd, "too many connections");
            return;
        }
        evict(h, v, peer);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* replies are small */
    evutil_make_socket_nonblocking(fd);
    conn *c = xcalloc(1, sizeof *c);
    c->h = h;
    memcpy(c->peer, peer, sizeof peer);
    c->fd = fd;
    c->rd = event_new(h->base, fd, EV_READ | EV_PERSIST, h->tls ? tls_read_cb : read_cb, c);
    c->wr = event_new(h->base, fd, EV_WRITE | EV_PERSIST, write_cb, c);
    c->out = evbuffer_new();
    c->timer = evtimer_new(h->base, timer_cb, c);
    if (h->w) /* a hub without a writer (HTTP verification) answers everything inline */
        wrt_queue_new(h->w, &c->q);
    if (!c->rd || !c->wr || !c->out || !c->timer
        || (h->tls && tls_conn_new(h->tls, fd, NULL, &c->ssl) != 0)) {
        lg_line("cannot set up a connection from %s (out of memory)", peer);
        conn_free(c); /* closes fd */
        return;
    }
    c->rd_high = READ_HIGH;
    rd_enable(c); /* writable only while output waits: send_now */
    arm_timer(c, h->o.frame_timeout); /* the first frame's deadline */
    c->next = h->all;
    if (h->all)
        h->all->prev = c;
    h->all = c;
    h->nopen++;
    lru_touch(c); /* a newcomer counts as active from its accept */
    if (keyed) {
        memcpy(c->addr, key, sizeof key);
        peers_add(h->peers, key);
        c->counted = true;
    }
}

size_t conn_hub_count(const conn_hub *h)
{
    return h->nopen;
}

/* Each connection's struct, input and output. Output: libevent rounds a
 * chain up to a power of two, so unsent bytes may take up to twice their
 * size; a reply always fits an empty output. */
static size_t per_conn_bound(const conn_opts *o, size_t reply_max)
{
    size_t in = PROTO_HEADER_LEN + (size_t)o->max_frame;
    size_t out = o->max_output > reply_max ? o->max_output : reply_max;
    if (in < READ_HIGH)
        in = READ_HIGH;
    return (size_t)o->max_connections * (CONN_FIXED + in + 2 * out);
}

size_t conn_memory_bound(const conn_opts *o, size_t max_backlog)
{
    /* Requests: at most max_queued, plus the one that crossed it, per
     * connection; max_backlog in all. */
    size_t job = sizeof(pending) + o->max_frame + DSP_WRITE_REPLY_MAX;
    size_t queued = (size_t)o->max_connections * (o->max_queued + job);
    if (max_backlog && max_backlog < queued)
        queued = max_backlog;
    return per_conn_bound(o, dsp_reply_max()) + queued;
}

size_t conn_http_memory_bound(const conn_opts *o)
{
    /* Plus the hub's response buffer and vhttp's list scratch: one each. */
    return per_conn_bound(o, vh_reply_max()) + 2 * vh_reply_max();
}

/* A stop answers what the peer has sent, including what is still in the
 * socket: it is read into the input (at most STOP_READS reads, so a peer
 * that keeps sending cannot hold the stop), answered only when the input
 * is full, as on any turn; the rest is answered as the connection ends, so
 * that an HTTP connection's last answer can say it closes. */
static void drain_socket(conn *c)
{
    for (int i = 0; i < STOP_READS && c->st == CS_OPEN && !c->paused && !c->waiting; i++) {
        if (c->ilen >= c->rd_high) {
            process(c);
            send_direct(c); /* now: the next read's replies must find room */
            if (c->st != CS_OPEN || c->ilen >= c->rd_high)
                break; /* waiting for the writer, or for the peer to read */
        }
        if (in_read(c) <= 0)
            break; /* nothing more (EAGAIN), the end, or an error */
    }
}

void conn_hub_stop(conn_hub *h, void (*empty)(void *arg), void *arg)
{
    for (conn *c = h->all; c; c = c->next)
        if (c->st == CS_OPEN)
            drain_socket(c);
    h->stopping = true;
    h->empty = empty;
    h->empty_arg = arg;
    for (conn *c = h->all; c; c = c->next) {
        if (c->st != CS_OPEN)
            continue;
        c->st = CS_ENDING;
        rd_disable(c);
        process(c);
        send_now(c);
    }
    event_active(h->reap, 0, 0); /* checks for empty, from an event callback */
}

void conn_hub_abort(conn_hub *h)
{
    for (conn *c = h->all; c; c = c->next)
        close_now(c);
}

void conn_hub_free(conn_hub *h)
{
    if (!h)
        return;
    while (h->all) {
        conn *c = h->all;
        h->all = c->next;
        conn_free(c);
    }
    if (h->reap)
        event_free(h->reap);
    for (int op = 0; op < 2; op++)
        if (h->tq_ev[op])
            event_free(h->tq_ev[op]);
    sq_free(h->sq);
    free(h->sq_items);
    free(h->sq_conns);
    free(h->sq_iov);
    peers_free(h->peers);
    mpw_free(&h->scratch);
    h1_out_free(&h->hout);
    free(h);
}
