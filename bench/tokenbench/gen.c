/* gen.c - epoll load generator with per-request timestamps; see gen.h. */
#include "bench/tokenbench/gen.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/xmalloc.h"

/* One connection: its buffers and the ring of requests in flight. */
typedef struct gconn {
    int fd;                 /* -1 once closed */
    SSL *ssl;               /* its TLS session, or NULL */
    bool want_out;          /* EPOLLOUT armed: a write was partial, or rd_ww */
    bool rd_ww;             /* TLS: the last read must send first */
    uint8_t *out;           /* requests not yet written: [out_off, out_len) */
    size_t out_len, out_off, out_cap;
    uint8_t *in;            /* bytes read, not yet parsed: [0, in_len) */
    size_t in_len;
    uint32_t *item, *id;    /* the ring, pipeline entries */
    uint64_t *sent;         /* send time (ns) of each entry */
    unsigned head, count;   /* oldest entry, entries in flight */
    unsigned unstamped;     /* newest entries queued but not yet stamped */
    uint32_t next_id;
} gconn;

typedef struct gthread {
    const gen_opts *o;
    const gen_driver *d;
    void *local;
    gconn *conns;
    unsigned nconns, open;
    int ep;
    uint64_t rng;
    uint64_t t_window, t_end, t_drain; /* window start, window end, drain end */
    hist lat;
    uint64_t ops, wrong, checked, errors;
    pthread_t tid;
} gthread;

uint64_t gen_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int gen_write_all(gen_io *io, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = io->ssl ? tls_write(io->ssl, b, n, NULL) : send(io->fd, b, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

ssize_t gen_read(gen_io *io, void *buf, size_t n)
{
    bool ww;
    for (;;) {
        ssize_t k = io->ssl ? tls_read(io->ssl, buf, n, &ww, NULL) : read(io->fd, buf, n);
        if (k >= 0 || errno != EINTR)
            return k;
    }
}

void gen_close(gen_io *io)
{
    tls_conn_end(io->ssl);
    io->ssl = NULL;
    if (io->fd >= 0)
        close(io->fd);
    io->fd = -1;
}

/* A blocking TCP connection to addr; host (cap bytes) gets its host part. */
static int gen_dial(const char *addr, char *host, size_t cap)
{
    char port[16];
    const char *colon = strrchr(addr, ':');
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
    int fd = -1, one = 1;

    if (!colon || colon == addr || (size_t)(colon - addr) >= cap
        || strlen(colon + 1) == 0 || strlen(colon + 1) >= sizeof port) {
        fprintf(stderr, "tokenbench: bad address '%s' (want HOST:PORT)\n", addr);
        return -1;
    }
    const char *h = addr;
    size_t hl = (size_t)(colon - addr);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    snprintf(port, sizeof port, "%s", colon + 1);
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "tokenbench: %s: %s\n", addr, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "tokenbench: cannot connect to %s: %s\n", addr, strerror(errno));
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int gen_open(const char *addr, tls *t, gen_io *io)
{
    char host[256];
    tk_why why;
    bool ww;
    io->ssl = NULL;
    if ((io->fd = gen_dial(addr, host, sizeof host)) < 0)
        return -1;
    if (!t)
        return 0;
    if (tls_conn_new(t, io->fd, host, &io->ssl) != 0 || tls_handshake(io->ssl, &ww, &why) != 0) {
        fprintf(stderr, "tokenbench: cannot connect to %s: %s\n", addr,
                io->ssl ? (errno == EPROTO ? why.msg : strerror(errno)) : "out of memory");
        gen_close(io);
        return -1;
    }
    return 0;
}

static void conn_close(gthread *t, gconn *c)
{
    if (c->fd < 0)
        return;
    epoll_ctl(t->ep, EPOLL_CTL_DEL, c->fd, NULL);
    tls_conn_end(c->ssl);
    c->ssl = NULL;
    close(c->fd);
    c->fd = -1;
    t->open--;
}

static void conn_broken(gthread *t, gconn *c, const char *why)
{
    t->errors++;
    if (t->errors <= 3)
        fprintf(stderr, "tokenbench: connection dropped: %s (%u requests in flight)\n", why,
                c->count);
    conn_close(t, c);
}

/* Queues new requests until the pipeline is full (only before t_end). */
static void conn_fill(gthread *t, gconn *c, uint64_t now)
{
    unsigned p = t->o->pipeline;
    if (now >= t->t_end)
        return;
    while (c->count < p) {
        if (c->out_cap - c->out_len < GEN_REQ_MAX) {
            if (c->out_off == 0)
                break;
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
            continue;
        }
        unsigned slot = (c->head + c->count) % p;
        c->item[slot] = t->o->pick(t->o->pick_arg, &t->rng);
        c->id[slot] = c->next_id++;
        c->sent[slot] = 0;
        c->out_len += t->d->encode(t->local, c->item[slot], c->id[slot], c->out + c->out_len);
        c->count++;
        c->unstamped++;
    }
}

/* Watches for writability while bytes wait (rest) or a TLS read must send. */
static void conn_watch(gthread *t, gconn *c, bool rest)
{
    bool out = rest || c->rd_ww;
    if (out != c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = out;
    }
}

/* Writes what is queued; stamps the requests it carries for the first time. */
static void conn_flush(gthread *t, gconn *c)
{
    unsigned p = t->o->pipeline;
    if (c->out_len == c->out_off)
        return;
    if (c->unstamped) {
        uint64_t now = gen_now_ns();
        for (unsigned k = c->count - c->unstamped; k < c->count; k++)
            c->sent[(c->head + k) % p] = now;
        c->unstamped = 0;
    }
    ssize_t n = c->ssl ? tls_write(c->ssl, c->out + c->out_off, c->out_len - c->out_off, NULL)
                       : send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
        conn_broken(t, c, strerror(errno));
        return;
    }
    if (n > 0)
        c->out_off += (size_t)n;
    bool rest = c->out_off < c->out_len;
    if (!rest)
        c->out_off = c->out_len = 0;
    conn_watch(t, c, rest);
}

/* One read and the replies it completes; true when TLS records may still
 * wait inside OpenSSL (the caller reads again: epoll cannot see them). */
static bool conn_read_once(gthread *t, gconn *c)
{
    unsigned p = t->o->pipeline;
    bool ww = false;
    ssize_t n = c->ssl ? tls_read(c->ssl, c->in + c->in_len, GEN_IN_CAP - c->in_len, &ww, NULL)
                       : recv(c->fd, c->in + c->in_len, GEN_IN_CAP - c->in_len, 0);
    if (c->ssl && ww != c->rd_ww) {
        c->rd_ww = ww;
        conn_watch(t, c, c->out_off < c->out_len);
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return false;
    if (n <= 0) {
        conn_broken(t, c, n == 0 ? "closed by the server" : strerror(errno));
        return false;
    }
    uint64_t now = gen_now_ns();
    bool timed = now >= t->t_window && now < t->t_end;
    c->in_len += (size_t)n;
    size_t off = 0;
    while (c->count > 0) {
        bool ok = false;
        long k = t->d->parse(t->local, c->in + off, c->in_len - off, c->item[c->head],
                             c->id[c->head], &ok);
        if (k == 0)
            break;
        if (k < 0) {
            conn_broken(t, c, "reply cannot be parsed");
            return false;
        }
        off += (size_t)k;
        t->checked++;
        if (!ok)
            t->wrong++;
        if (timed) {
            t->ops++;
            hist_record(&t->lat, now - c->sent[c->head]);
        }
        c->head = (c->head + 1) % p;
        c->count--;
    }
    if (off < c->in_len && (c->count == 0 || (off == 0 && c->in_len == GEN_IN_CAP))) {
        conn_broken(t, c, c->count == 0 ? "bytes no request asked for" : "reply too large");
        return false;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    conn_fill(t, c, now);
    conn_flush(t, c);
    if (c->fd >= 0 && now >= t->t_end && c->count == 0)
        conn_close(t, c);
    return c->fd >= 0 && c->ssl && tls_pending(c->ssl);
}

static void conn_read(gthread *t, gconn *c)
{
    while (conn_read_once(t, c))
        ;
}

static void *thread_main(void *arg)
{
    gthread *t = arg;
    struct epoll_event evs[64];
    uint64_t now = gen_now_ns();

    for (unsigned i = 0; i < t->nconns; i++) {
        conn_fill(t, &t->conns[i], now);
        conn_flush(t, &t->conns[i]);
    }
    while (t->open > 0) {
        now = gen_now_ns();
        uint64_t until = now < t->t_end ? t->t_end : t->t_drain;
        if (now >= t->t_drain)
            break;
        if (now >= t->t_end) /* drain: close connections that owe nothing */
            for (unsigned i = 0; i < t->nconns; i++)
                if (t->conns[i].fd >= 0 && t->conns[i].count == 0)
                    conn_close(t, &t->conns[i]);
        uint64_t wait_ms = (until - now) / 1000000u + 1;
        int n = epoll_wait(t->ep, evs, 64, wait_ms > 100 ? 100 : (int)wait_ms);
        for (int i = 0; i < n; i++) {
            gconn *c = evs[i].data.ptr;
            if (c->fd >= 0 && (evs[i].events & EPOLLOUT) && c->rd_ww)
                conn_read(t, c); /* a TLS read that had to send first */
            if (c->fd >= 0 && (evs[i].events & EPOLLOUT))
                conn_flush(t, c);
            if (c->fd >= 0 && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                conn_read(t, c);
        }
    }
    for (unsigned i = 0; i < t->nconns; i++) {
        if (t->conns[i].fd >= 0 && t->conns[i].count > 0) {
            t->errors++;
            fprintf(stderr, "tokenbench: %u replies still missing after the drain\n",
                    t->conns[i].count);
        }
        conn_close(t, &t->conns[i]);
    }
    return NULL;
}

static double cpu_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6
           + (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void conn_free(gconn *c)
{
    tls_conn_end(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    free(c->out);
    free(c->in);
    free(c->item);
    free(c->id);
    free(c->sent);
}

int gen_run(const gen_opts *o, const gen_driver *d, gen_result *out)
{
    unsigned nt = o->threads ? o->threads : 1;
    int rc = -1;
    gthread *th = NULL;
    gconn *conns = NULL;

    memset(out, 0, sizeof *out);
    if (o->connections == 0 || o->pipeline == 0 || nt > GEN_MAX_THREADS || nt > o->connections
        || !(o->duration_s > 0) || !(o->warmup_s >= 0) || !o->pick) {
        fprintf(stderr, "tokenbench: bad generator options\n");
        return -1;
    }
    conns = xcalloc(o->connections, sizeof *conns);
    th = xcalloc(nt, sizeof *th);
    for (unsigned i = 0; i < o->connections; i++)
        conns[i].fd = -1;
    for (unsigned i = 0; i < nt; i++)
        th[i].ep = -1;
    for (unsigned i = 0; i < o->connections; i++) {
        gconn *c = &conns[i];
        gen_io io;
        if (gen_open(o->addr, o->tls, &io) != 0)
            goto done;
        c->fd = io.fd;
        c->ssl = io.ssl;
        if (d->hello && d->hello(d->ctx, &io) != 0)
            goto done;
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        c->out_cap = (size_t)o->pipeline * GEN_REQ_MAX;
        c->out = xmalloc(c->out_cap);
        c->in = xmalloc(GEN_IN_CAP);
        c->item = xcalloc(o->pipeline, sizeof *c->item);
        c->id = xcalloc(o->pipeline, sizeof *c->id);
        c->sent = xcalloc(o->pipeline, sizeof *c->sent);
        c->next_id = 1;
    }
    uint64_t seed = gen_now_ns();
    for (unsigned i = 0; i < nt; i++) {
        gthread *t = &th[i];
        t->o = o;
        t->d = d;
        t->rng = seed + i * 0x632be59bd9b4e019ull;
        hist_reset(&t->lat);
        if ((t->ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
            perror("tokenbench: epoll_create1");
            goto done;
        }
    }
    /* Thread i owns a contiguous range of connections. */
    for (unsigned i = 0, at = 0; i < nt; i++) {
        gthread *t = &th[i];
        t->conns = &conns[at];
        t->nconns = t->open = o->connections / nt + (i < o->connections % nt);
        for (unsigned j = 0; j < t->nconns; j++) {
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &t->conns[j]};
            if (epoll_ctl(t->ep, EPOLL_CTL_ADD, t->conns[j].fd, &ev) != 0) {
                perror("tokenbench: epoll_ctl");
                goto done;
            }
        }
        at += t->nconns;
    }
    double cpu0 = cpu_now();
    uint64_t t0 = gen_now_ns();
    uint64_t window = t0 + (uint64_t)(o->warmup_s * 1e9);
    uint64_t end = window + (uint64_t)(o->duration_s * 1e9);
    for (unsigned i = 0; i < nt; i++) {
        th[i].local = d->local_new ? d->local_new(d->ctx) : d->ctx;
        th[i].t_window = window;
        th[i].t_end = end;
        th[i].t_drain = end + (uint64_t)(GEN_DRAIN_S * 1e9);
        if (pthread_create(&th[i].tid, NULL, thread_main, &th[i]) != 0) {
            fprintf(stderr, "tokenbench: cannot start a thread\n");
            for (unsigned j = 0; j < i; j++)
                pthread_join(th[j].tid, NULL);
            goto done;
        }
    }
    for (unsigned i = 0; i < nt; i++)
        pthread_join(th[i].tid, NULL);
    out->wall_s = (double)(gen_now_ns() - t0) / 1e9;
    out->cpu_s = cpu_now() - cpu0;
    out->seconds = o->duration_s;
    for (unsigned i = 0; i < nt; i++) {
        out->ops += th[i].ops;
        out->wrong += th[i].wrong;
        out->checked += th[i].checked;
        out->errors += th[i].errors;
        hist_merge(&out->lat, &th[i].lat);
    }
    rc = 0;
done:
    for (unsigned i = 0; i < o->connections; i++)
        conn_free(&conns[i]);
    for (unsigned i = 0; i < nt; i++) {
        if (th[i].ep >= 0)
            close(th[i].ep);
        if (th[i].local && d->local_free)
            d->local_free(th[i].local);
    }
    free(conns);
    free(th);
    return rc;
}
