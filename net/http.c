/*
 * http.c - the HTTP listener; see http.h.
 *
 * Connections. evhttp owns its connections and tells nothing of their
 * life, but it asks us for each one's bufferevent (evhttp_set_bevcb). We
 * make it, hold one reference of our own, and keep a record (hconn) on an
 * LRU list: that gives the connection cap and the per-connection writer
 * queue. When evhttp is done with a connection it shuts the socket down for
 * writing (the peer sees the end at once) and frees the bufferevent, which
 * clears its callbacks; our reference keeps the bufferevent, and with it
 * the socket (BEV_OPT_CLOSE_ON_FREE: evhttp then leaves the close to it),
 * until a sweep sees the callbacks gone and drops it. Keeping the socket
 * open matters: a descriptor closed under a live bufferevent would be
 * reused by the next connection while libevent still has the old one's
 * events on it, and the newcomer would never be read. Sweeps run at the
 * cap (records of closed connections count against it, so descriptors
 * stay bounded by the cap) and once a second. A connection is evicted by
 * shutting its socket down: evhttp reads the end and frees it as for any
 * peer that left.
 *
 * A request's connection is found from its bufferevent's socket through a
 * table indexed by descriptor (checked against the bufferevent: a slot may
 * still hold a closed connection whose descriptor was reused).
 *
 * Management requests wait for the writer in an hreq, which holds the
 * request body (msgpack, from the JSON) that the engine request borrows;
 * the reply is written when the batch is published (rule 5).
 */
#include "net/http.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <sodium.h>

#include "core/err.h"
#include "core/secret.h"
#include "core/sha256.h"
#include "core/xmalloc.h"
#include "net/dispatch.h"
#include "net/gateway.h"
#include "net/hjson.h"
#include "net/log.h"
#include "net/proto.h"
#include "store/keyfile.h"

#define SWEEP_SECONDS 1
#define SEG_MAX 256          /* a path segment, decoded */
#define PATH_SEGS 12
#define HCONN_BYTES 2048     /* an hconn, its bufferevent and evhttp's connection */
#define PAGE_ROWS 100        /* rows of one page over HTTP at most (a larger limit gives */
#define PAGE_BYTES (256u << 10) /* ... this many, or fewer so that a page at its rows'
                                   field limits stays within this) */
/* A JSON reply's memory per byte of its msgpack page, at most: the page,
 * the JSON tree, and the text, whose escapes (\u0001) can make a string six
 * times longer. */
#define JSON_FACTOR 8

typedef struct hconn hconn;
struct hconn {
    struct bufferevent *bev;  /* our reference */
    hconn *prev, *next;       /* LRU: least recently given a request first */
    time_t last;
    int fd;                   /* its slot in byfd once a request named it, or -1 */
    bool busy;                /* a request of it is being answered */
    uint32_t jobs;            /* in the writer */
    wrt_queue *q;             /* created at its first management request */
};

struct http_srv {
    http_env env;
    http_opts o;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    struct event *sweep;
    hconn *head, *tail;
    size_t count;
    hconn **byfd;
    size_t nbyfd;
    gw_key gw;                /* DIR/gateway.key, with --require-gateway-key */
    h1_out lists;             /* a verification's joined roles and permissions */
    bool stopping;
    uint64_t first_seq;       /* the log's last seq at open: events appended since */
    size_t jobs;
    void (*empty)(void *);
    void *empty_arg;
    lg_limit log_evict;
    lg_sampler sample;        /* --log-requests */
    struct evbuffer *scratch;
    ptl *portal;
};

typedef struct hreq {
    wrt_job job; /* first: the writer's view of it */
    http_srv *h;
    hconn *hc;
    struct evhttp_request *req;
    const sch_op *op;
    uint16_t ok;
    int status;               /* a read's */
    char msg[ENG_MSG_MAX];
    mpw reply;
    mpw body;                 /* the request's msgpack: u's strings point into it */
    char peer[TK_PEER_MAX + 1]; /* a write's audit record: the client's address */
    union {
        eng_req req;
        dsp_read read;
        ptl_call portal;
    } u;
} hreq;

void http_opts_default(http_opts *o)
{
    o->max_connections = 1024;
    o->max_headers = 8u << 10;
    o->max_body = 64u << 10;
    o->timeout = 60;
    ptl_opts_default(&o->portal);
}

/* The most rows of one HTTP page of op (dispatch.h, dsp_page_fit). */
static uint32_t page_rows(const sch_op *op)
{
    return dsp_page_fit(op, PAGE_BYTES, PAGE_ROWS);
}

size_t http_memory_bound(const http_opts *o)
{
    /* Per connection (one request at a time): its records, the headers and
     * body being read, the request's msgpack and engine request, and one
     * reply as msgpack and JSON. */
    return (size_t)o->max_connections
           * (HCONN_BYTES + o->max_headers + 2 * (size_t)o->max_body + sizeof(hreq)
              + JSON_FACTOR * dsp_reply_max_paged(PAGE_BYTES, PAGE_ROWS))
           + ptl_memory_bound(&o->portal);
}

/* Out of memory while setting up: nothing sensible to do (as xmalloc). */
static void die(const char *what)
{
    lg_line("out of memory creating %s", what);
    abort();
}

/* ---- connections ---------------------------------------------------------- */

static void lru_unlink(http_srv *h, hconn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        h->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        h->tail = c->prev;
    c->prev = c->next = NULL;
}

static void lru_append(http_srv *h, hconn *c)
{
    c->prev = h->tail;
    c->next = NULL;
    if (h->tail)
        h->tail->next = c;
    else
        h->head = c;
    h->tail = c;
}

/* evhttp has freed c's bufferevent (its callbacks are gone). */
static bool hconn_gone(const hconn *c)
{
    bufferevent_event_cb ev = NULL;
    bufferevent_getcb(c->bev, NULL, NULL, &ev, NULL);
    return ev == NULL;
}

static void hconn_free(http_srv *h, hconn *c)
{
    lru_unlink(h, c);
    if (c->fd >= 0 && h->byfd[c->fd] == c)
        h->byfd[c->fd] = NULL;
    wrt_queue_free(c->q);
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    bufferevent_decref(c->bev); /* the last reference once evhttp freed it: closes */
    h->count--;
    free(c);
}

/* Drops the records of connections evhttp has closed. */
static void sweep(http_srv *h)
{
    hconn *next;
    for (hconn *c = h->head; c; c = next) {
        next = c->next;
        if (c->jobs == 0 && hconn_gone(c))
            hconn_free(h, c);
    }
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sweep(arg);
    ptl_sweep(((http_srv *)arg)->portal);
}

/* Closes the least recently used connection with nothing in progress.
 * False when there is none. */
static bool evict_one(http_srv *h)
{
    for (hconn *c = h->head; c; c = c->next) {
        if (c->busy || c->jobs || hconn_gone(c))
            continue;
        evutil_socket_t fd = bufferevent_getfd(c->bev);
        if (fd < 0)
            continue;
        shutdown(fd, SHUT_RDWR); /* evhttp reads the end and frees it */
        lru_unlink(h, c);
        lru_append(h, c); /* not chosen twice while it goes */
        c->busy = true;
        return true;
    }
    return false;
}

static void refuse_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bufferevent *bev = arg;
    (void)fd;
    (void)what;
    evutil_socket_t s = bufferevent_getfd(bev);
    if (s >= 0)
        shutdown(s, SHUT_RDWR);
    bufferevent_decref(bev);
}

/* A TLS connection's bufferevent: OpenSSL's, accepting, on the socket
 * evhttp sets after this hook; it frees the SSL with itself. A peer that
 * closes without close_notify is an end, not an error (HTTP/1.1 says where
 * a message ends). NULL when out of memory. */
static struct bufferevent *tls_bev(http_srv *h, struct event_base *base)
{
    SSL *ssl;
    if (tls_conn_new(h->env.tls, -1, NULL, &ssl) != 0)
        return NULL;
    struct bufferevent *bev = bufferevent_openssl_socket_new(base, -1, ssl,
                                                             BUFFEREVENT_SSL_ACCEPTING,
                                                             BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

/* evhttp's hook for a new connection: its bufferevent, and our record. */
static struct bufferevent *new_bev(struct event_base *base, void *arg)
{
    http_srv *h = arg;
    struct bufferevent *bev = h->env.tls ? tls_bev(h, base)
                                         : bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        return NULL; /* evhttp then makes its own, which we cannot count: rare */
    if (h->count >= h->o.max_connections)
        sweep(h);
    if (h->count >= h->o.max_connections && !evict_one(h)) {
        /* Every slot is answering: this one is closed once evhttp has set
         * its socket (after this hook returns). */
        lg_limited(&h->log_evict, "HTTP: %zu connections, all busy: a newcomer is closed",
                   h->count);
        bufferevent_incref(bev);
        event_base_once(base, -1, EV_TIMEOUT, refuse_cb, bev, NULL);
        return bev;
    }
    hconn *c = xcalloc(1, sizeof *c);
    c->bev = bev;
    c->fd = -1;
    bufferevent_incref(bev);
    c->last = time(NULL);
    lru_append(h, c);
    h->count++;
    return bev;
}

/* The record of req's connection (NULL for a connection evhttp made
 * itself), moved to the LRU's end. */
static hconn *conn_of(http_srv *h, struct evhttp_request *req)
{
    struct evhttp_connection *evc = evhttp_request_get_connection(req);
    struct bufferevent *bev = evc ? evhttp_connection_get_bufferevent(evc) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= h->nbyfd) {
        size_t n = h->nbyfd ? h->nbyfd : 256;
        while (n <= (size_t)fd)
            n *= 2;
        h->byfd = xrealloc(h->byfd, n * sizeof *h->byfd);
        memset(h->byfd + h->nbyfd, 0, (n - h->nbyfd) * sizeof *h->byfd);
        h->nbyfd = n;
    }
    hconn *c = h->byfd[fd];
    if (!c || c->bev != bev) {
        for (c = h->head; c && c->bev != bev; c = c->next)
            ;
        h->byfd[fd] = c;
        if (c)
            c->fd = fd;
    }
    if (c) {
        c->last = time(NULL);
        lru_unlink(h, c);
        lru_append(h, c);
    }
    return c;
}

size_t http_count(const http_srv *h)
{
    size_t n = 0;
    for (const hconn *c = h->head; c; c = c->next)
        n += !hconn_gone(c);
    return n;
}

/* ---- replies ---------------------------------------------------------------- */

int http_status_of(int rc)
{
    switch (rc) {
    case TK_EINVAL:
    case TK_EPROTO: return 400;
    case TK_EUNAUTH: return 401;
    case TK_EDENIED:
    case TK_EDISABLED: return 403;
    case TK_ENOTFOUND:
    case TK_EOPCODE: return 404;
    case TK_EEXIST: return 409;
    case TK_ELIMIT: return 413;
    case TK_ERATE: return 429;
    case TK_EREADONLY: return 421; /* Misdirected Request: this server cannot write */
    default: return 503; /* EBUSY, ENOSPC, EFENCED, EIO, ENOMEM, ECORRUPT */
    }
}

/* evhttp_send_reply, then the reply written to the socket at once and
 * evhttp told it is sent, in this callback. evhttp alone turns the write
 * event on for every reply and off after the next loop turn has written
 * it: two epoll_ctl calls and a second epoll_wait per request. Writing now
 * and running its write callback (bufferevent_trigger) makes the on and
 * the off meet in one loop turn, where libevent's changelist folds them
 * into no system call (docs/http.md, "Why libevent's HTTP server"). A
 * reply the socket does not take whole is left to evhttp as before. The
 * reference taken keeps the bufferevent alive through evhttp_send_done,
 * which may free the connection. */
static void send_reply(struct evhttp_request *req, int code)
{
    struct evhttp_connection *evc = evhttp_request_get_connection(req);
    struct bufferevent *bev = evc ? evhttp_connection_get_bufferevent(evc) : NULL;
    if (bev)
        bufferevent_incref(bev);
    evhttp_send_reply(req, code, NULL, NULL); /* req may be gone from here */
    if (!bev)
        return;
    struct evbuffer *out = bufferevent_get_output(bev);
    /* Over TLS the bytes go through OpenSSL's bufferevent, never straight
     * to the socket: it writes them itself, and says when they are sent. */
    evutil_socket_t fd = bufferevent_openssl_get_ssl(bev) ? -1 : bufferevent_getfd(bev);
    while (fd >= 0 && evbuffer_get_length(out) > 0 && evbuffer_write(out, fd) > 0)
        ;
    if (evbuffer_get_length(out) == 0)
        bufferevent_trigger(bev, EV_WRITE, 0);
    bufferevent_decref(bev);
}

/* A reply's text once sent: wiped first, as a new secret may be in it. */
static void free_text(const void *data, size_t len, void *arg)
{
    (void)arg;
    sodium_memzero((void *)data, len);
    free((void *)data);
}

static void send_json(struct evhttp_request *req, int code, json_t *body)
{
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    evhttp_add_header(oh, "Content-Type", "application/json");
    evhttp_add_header(oh, "Cache-Control", "no-store");
    char *s = json_dumps(body, JSON_COMPACT);
    struct evbuffer *b = evhttp_request_get_output_buffer(req);
    if (s) { /* by reference: the text is not copied again */
        size_t n = strlen(s);
        evbuffer_add_reference(b, s, n, free_text, NULL);
        evbuffer_add(b, "\n", 1);
    }
    json_decref(body);
    send_reply(req, code);
}

/* The client's address and port ("127.0.0.1:5000", "[::1]:5000"). */
static void peer_of(struct evhttp_request *req, char *out, size_t cap)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    const char *host = NULL;
    uint16_t port = 0;
    if (evcon)
        evhttp_connection_get_peer(evcon, (char **)&host, &port);
    snprintf(out, cap, strchr(host ? host : "", ':') ? "[%s]:%u" : "%s:%u", host ? host : "?",
             (unsigned)port);
}

/* A sampled request's line (--log-requests): never a key or a body. */
static void log_request(struct evhttp_request *req, uint16_t code, const char *result)
{
    char peer[TK_PEER_MAX + 1];
    const sch_op *op = sch_find(code);
    peer_of(req, peer, sizeof peer);
    lg_request("http", op ? op->name : "unknown", result, peer);
}

/* {"error": code, "message": msg}, with Retry-After for TK_ERATE. */
static void send_error(http_srv *h, struct evhttp_request *req, uint16_t op, int rc,
                       const char *msg, uint32_t retry_ms)
{
    json_t *b = json_pack("{s:s,s:s}", "error", tk_errcode(rc), "message",
                          msg && msg[0] ? msg : tk_strerror(rc));
    if (!b) /* a message that is not UTF-8 cannot happen: ours are ASCII */
        b = json_pack("{s:s}", "error", tk_errcode(rc));
    if (rc == TK_ERATE) {
        char s[16];
        snprintf(s, sizeof s, "%u", (retry_ms + 999) / 1000);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", s);
        json_object_set_new(b, "retry_after_ms", json_integer(retry_ms));
    }
    if (rc == TK_EUNAUTH)
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                          "Bearer realm=\"tokend\"");
    met_request(h->env.m, MET_HTTP, op, rc);
    if (lg_sampled(&h->sample))
        log_request(req, op, tk_errcode(rc));
    send_json(req, http_status_of(rc), b);
}

/* ---- gateway verification ------------------------------------------------- */

/* gw_in over evhttp's fields. */
static const char *ev_field(const void *arg, const char *name, size_t i, size_t *n)
{
    const struct evkeyvalq *in = arg;
    for (struct evkeyval *kv = in->tqh_first; kv; kv = kv->next.tqe_next)
        if (strcasecmp(kv->key, name) == 0 && i-- == 0) {
            *n = strlen(kv->value);
            return kv->value;
        }
    return NULL;
}

static void ev_add_field(void *arg, const char *name, const char *value, size_t n)
{
    (void)n; /* value is a string */
    evhttp_add_header(arg, name, value);
}

/* /v1/verify[/...], any method, no body: the answer is the status and the
 * identity headers (net/gateway.h), for nginx auth_request, Caddy
 * forward_auth, Envoy ext_authz and Traefik forwardAuth. */
static void gateway_verify(http_srv *h, struct evhttp_request *req, const char *query)
{
    uint64_t t0 = met_now_ns();
    gw_in in = {ev_field, evhttp_request_get_input_headers(req)};
    gw_answer a;
    gw_verify(h->env.e, &h->gw, &in, query, query ? strlen(query) : 0, time(NULL), &a);
    if (a.keyless) {
        send_error(h, req, OP_VERIFY, TK_EUNAUTH,
                   "verification needs the gateway key (X-Tokend-Gateway-Key)", 0);
        return;
    }
    gw_each_field(&a, &h->lists, ev_add_field, evhttp_request_get_output_headers(req));
    if (a.body_len)
        evbuffer_add(evhttp_request_get_output_buffer(req), a.body, a.body_len);
    met_verify(h->env.m, MET_HTTP, a.v.verdict, met_now_ns() - t0);
    met_request(h->env.m, MET_HTTP, OP_VERIFY, a.status);
    if (lg_sampled(&h->sample))
        log_request(req, OP_VERIFY, a.reason);
    send_reply(req, a.code);
}

/* ---- the JSON API ---------------------------------------------------------- */

/* Decodes one %-encoded path segment [s, e) into out. */
static bool seg_decode(const char *s, const char *e, char *out, size_t cap)
{
    size_t n = 0;
    for (; s < e; s++) {
        if (n + 1 >= cap)
            return false;
        if (*s == '%') {
            if (e - s < 3 || !isxdigit((unsigned char)s[1]) || !isxdigit((unsigned char)s[2]))
                return false;
            char hex[3] = {s[1], s[2], 0};
            out[n++] = (char)strtol(hex, NULL, 16);
            s += 2;
        } else {
            out[n++] = *s;
        }
    }
    out[n] = 0;
    return memchr(out, 0, n) == NULL;
}

typedef struct pathval {
    char name[24];
    char val[SEG_MAX];
} pathval;

/* Matches path against template t; fills vals. */
static bool match(const char *t, const char *path, pathval *vals, size_t *nvals)
{
    *nvals = 0;
    while (*t && *path) {
        if (*t != '/' || *path != '/')
            return false;
        t++;
        path++;
        const char *te = strchr(t, '/'), *pe = strchr(path, '/');
        if (!te)
            te = t + strlen(t);
        if (!pe)
            pe = path + strlen(path);
        if (*t == '{') {
            if (pe == path || *nvals == PATH_SEGS)
                return false;
            pathval *v = &vals[(*nvals)++];
            snprintf(v->name, sizeof v->name, "%.*s", (int)(te - t - 2), t + 1);
            if (!seg_decode(path, pe, v->val, sizeof v->val))
                return false;
        } else if (te - t != pe - path || memcmp(t, path, (size_t)(te - t)) != 0) {
            return false;
        }
        t = te;
        path = pe;
    }
    return *t == 0 && *path == 0;
}

static const char *method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    default: return "OTHER";
    }
}

/* The request's JSON body, or an empty object; NULL with err set. */
static json_t *read_body(struct evhttp_request *req, dsp_err *err)
{
    struct evbuffer *b = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(b);
    if (n == 0)
        return json_object();
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    if (ct && strncasecmp(ct, "application/json", 16) != 0) {
        snprintf(err->msg, sizeof err->msg, "the body must be application/json");
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb((const char *)evbuffer_pullup(b, -1), n, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        snprintf(err->msg, sizeof err->msg, "the body is not JSON: %.80s (at byte %d)", je.text,
                 je.position);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        snprintf(err->msg, sizeof err->msg, "the body must be a JSON object");
        return NULL;
    }
    return j;
}

/* The request's fields as one JSON object: the path's, the query's, the
 * body's; a name given twice is refused. */
static json_t *gather(struct evhttp_request *req, const sch_op *op, const pathval *pv,
                      size_t npv, const char *query, dsp_err *err)
{
    json_t *o = read_body(req, err);
    if (!o)
        return NULL;
    for (size_t i = 0; i < npv; i++)
        if (json_object_get(o, pv[i].name) || hj_set_param(o, op, pv[i].name, pv[i].val, err))
            goto twice;
    if (query && *query) {
        struct evkeyvalq q;
        TAILQ_INIT(&q);
        if (evhttp_parse_query_str(query, &q) != 0) {
            snprintf(err->msg, sizeof err->msg, "the query string does not decode");
            json_decref(o);
            return NULL;
        }
        int rc = 0;
        for (struct evkeyval *kv = q.tqh_first; kv && !rc; kv = kv->next.tqe_next)
            rc = hj_set_param(o, op, kv->key, kv->value, err);
        evhttp_clear_headers(&q);
        if (rc) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
twice:
    if (!err->msg[0] || json_object_get(o, pv[0].name))
        snprintf(err->msg, sizeof err->msg, "a field of the path is also in the body");
    json_decref(o);
    return NULL;
}

static void hreq_free(hreq *r)
{
    mpw_free(&r->reply);
    mpw_free(&r->body);
    free(r);
}

/* A reply body of op as JSON with status code; counted as status mstatus
 * (0, or TK_EUNAUTH for a verification's "not valid"). */
static void reply_ok(http_srv *h, struct evhttp_request *req, const sch_op *op, uint16_t code,
                     const mpw *w, int mstatus)
{
    json_t *j = hj_reply(op, (const uint8_t *)w->buf.data, w->buf.size);
    if (!j) {
        send_error(h, req, op->code, TK_EIO, "the reply did not encode (a bug: please report)",
                   0);
        return;
    }
    met_request(h->env.m, MET_HTTP, op->code, mstatus);
    if (lg_sampled(&h->sample))
        log_request(req, op->code, mstatus ? tk_errcode(mstatus) : "ok");
    send_json(req, code, j);
}

/* Writer thread: a read. */
static void run_read(eng *e, wrt_job *j)
{
    hreq *r = (hreq *)j;
    r->status = dsp_run_read(e, &r->u.read, &r->reply, r->msg);
}

/* Writer thread: a portal operation (in the writer's order, like a read). */
static void run_portal(eng *e, wrt_job *j)
{
    hreq *r = (hreq *)j;
    r->status = ptl_run(r->h->portal, e, &r->u.portal, &r->reply, r->msg);
}

static void finish_stop(http_srv *h)
{
    if (h->stopping && h->jobs == 0 && h->empty) {
        void (*cb)(void *) = h->empty;
        h->empty = NULL;
        cb(h->empty_arg);
    }
}

/* Loop thread, after eng_publish. */
static void job_done(wrt_job *j)
{
    hreq *r = (hreq *)j;
    http_srv *h = r->h;
    h->jobs--;
    if (r->hc) {
        r->hc->jobs--;
        r->hc->busy = false;
    }
    int status = r->job.req ? j->res.status : r->status;
    if (status) {
        send_error(h, r->req, r->op->code, status, r->job.req ? j->res.msg : r->msg,
                   j->res.retry_after_ms);
    } else if (r->job.req) {
        mpw_reset(&r->reply);
        dsp_put_write(&r->reply, &r->u.req, &j->res);
        reply_ok(h, r->req, r->op, r->ok, &r->reply, 0);
    } else {
        reply_ok(h, r->req, r->op, r->ok, &r->reply, 0);
    }
    sodium_memzero(j->res.secret, sizeof j->res.secret);
    mpw_reset(&r->reply); /* a created secret's bytes */
    sodium_memzero(r->reply.buf.data, r->reply.buf.alloc);
    hreq_free(r);
    finish_stop(h);
}


/* The actor of a management request: its Bearer credential, else the
 * portal session of its cookie (info then filled). */
static int actor_of(http_srv *h, struct evhttp_request *req, tk_actor *a, ses_info *info,
                    const char **msg)
{
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    size_t kn = auth ? strlen(auth) : 0;
    const char *key = auth ? gw_scheme(auth, &kn, "Bearer") : NULL;
    int rc;
    if (!auth && (rc = ptl_credential(h->portal, req, a, info, msg)) != PTL_NO_COOKIE)
        return rc;
    if (!key) {
        *msg = "send the operator key or a personal key as Authorization: Bearer <key>";
        return TK_EUNAUTH;
    }
    if (gw_key_ok(&h->gw, h->env.e, key, kn)) {
        *msg = "the gateway key may only verify";
        return TK_EUNAUTH;
    }
    if (eng_authenticate(h->env.e, key, kn, time(NULL), a) != 0) {
        *msg = "unknown, expired or deleted key (a tenant API token is not a management key)";
        return TK_EUNAUTH;
    }
    return 0;
}

static void inline_op(http_srv *h, struct evhttp_request *req, const sch_op *op,
                      const tk_actor *a, const mpw *body)
{
    mpw w;
    mpw_init(&w);
    dsp_err err = {""};
    int rc = 0;
    int code = 200, status = 0;
    if (op->code == OP_PING) {
        rc = dsp_ping((const uint8_t *)body->buf.data, body->buf.size, &err);
        if (!rc)
            dsp_put_ping(&w);
    } else if (op->code == OP_AUTH) { /* the key is the Bearer credential: no fields */
        if (body->buf.size != 1 || (uint8_t)body->buf.data[0] != 0x80) {
            rc = TK_EINVAL;
            snprintf(err.msg, sizeof err.msg, "whoami takes no fields: the key is the Bearer "
                                              "credential");
        } else {
            dsp_put_auth(&w, a->kind == TK_ACTOR_OPERATOR ? "operator" : "user");
        }
    } else { /* VERIFY, answered in JSON */
        dsp_verify v;
        tk_verify out;
        uint64_t t0 = met_now_ns();
        rc = dsp_verify_req((const uint8_t *)body->buf.data, body->buf.size, &v, &err);
        gw_in in = {ev_field, evhttp_request_get_input_headers(req)};
        if (!rc && !gw_allowed(h->env.e, &h->gw, &in, time(NULL))) {
            rc = TK_EUNAUTH;
            snprintf(err.msg, sizeof err.msg,
                     "verification needs the gateway key (X-Tokend-Gateway-Key)");
        }
        if (!rc) {
            if (v.has_client_id && !v.client_id_ok)
                out.verdict = TK_V_MALFORMED;
            else
                eng_verify(h->env.e, v.has_client_id ? &v.client_id : NULL, v.secret.p,
                           v.secret.n, time(NULL), &out);
            dsp_put_verify(&w, &out);
            if (out.verdict != TK_V_VALID) {
                code = gw_refused_code(out.verdict, &status);
                evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                                  "Bearer realm=\"tokend\"");
            }
            met_verify(h->env.m, MET_HTTP, out.verdict, met_now_ns() - t0);
        }
    }
    if (rc) {
        send_error(h, req, op->code, rc, err.msg, 0);
    } else {
        /* An invalid token is 401 (503 on a replica past its lease) here
         * too, body and all: a gateway that forwarded a client's JSON body to
         * this path must not read "200" as "let it through" (the trap of
         * verify APIs that always say 200). */
        reply_ok(h, req, op, code, &w, status);
    }
    mpw_free(&w);
}

static void api(http_srv *h, struct evhttp_request *req, hconn *hc, const char *path,
                const char *query)
{
    size_t nroutes;
    const sch_route *routes = sch_routes(&nroutes), *rt = NULL;
    const char *method = method_name(evhttp_request_get_command(req));
    pathval pv[PATH_SEGS];
    size_t npv = 0;
    bool path_known = false;
    for (size_t i = 0; i < nroutes && !rt; i++)
        if (match(routes[i].path, path, pv, &npv)) {
            path_known = true;
            if (strcmp(routes[i].method, method) == 0)
                rt = &routes[i];
        }
    if (!rt) {
        if (path_known) {
            char allow[64] = "";
            for (size_t i = 0; i < nroutes; i++)
                if (match(routes[i].path, path, pv, &npv) && strlen(allow) + 8 < sizeof allow)
                    snprintf(allow + strlen(allow), sizeof allow - strlen(allow), "%s%s",
                             allow[0] ? ", " : "", routes[i].method);
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
            met_request(h->env.m, MET_HTTP, 0, TK_EOPCODE);
            send_json(req, 405,
                      json_pack("{s:s,s:s}", "error", "method_not_allowed", "message", allow));
            return;
        }
        send_error(h, req, 0, TK_ENOTFOUND, "no such resource (docs/http.md lists them)", 0);
        return;
    }
    const sch_op *op = sch_find(rt->code);
    tk_actor actor;
    ses_info info;
    memset(&actor, 0, sizeof actor);
    const char *why = NULL;
    int rc;
    if (op->code != OP_PING && op->code != OP_VERIFY
        && (rc = actor_of(h, req, &actor, &info, &why))) {
        send_error(h, req, op->code, rc, why, 0);
        return;
    }
    if (actor.kind == TK_ACTOR_USER && strstr(rt->path, "{tenant}")) {
        /* A personal key acts in its own scope, named by the short paths. */
        send_error(h, req, op->code, TK_ENOTFOUND,
                   "a personal key uses its own scope: /v1/tokens, /v1/roles, /v1/permissions, "
                   "/v1/users, /v1/keys, /v1/tenant",
                   0);
        return;
    }
    dsp_err err = {""};
    json_t *args = gather(req, op, pv, npv, query, &err);
    hreq *r = xcalloc(1, sizeof *r);
    mpw_init(&r->body);
    mpw_init(&r->reply);
    if (!args || (rc = hj_to_body(args, &r->body, &err))) {
        json_decref(args);
        hreq_free(r);
        send_error(h, req, op->code, TK_EINVAL, err.msg, 0);
        return;
    }
    json_decref(args);
    if (op->run == SCH_INLINE) {
        inline_op(h, req, op, &actor, &r->body);
        hreq_free(r);
        return;
    }
    const uint8_t *b = (const uint8_t *)r->body.buf.data;
    size_t blen = r->body.buf.size;
    if (op->run == SCH_PORTAL
        && (rc = ptl_call_init(h->portal, req, op, &actor, &info, b, blen, &r->u.portal,
                               r->msg))) {
        send_error(h, req, op->code, rc, r->msg, 0);
        hreq_free(r);
        return;
    }
    if (op->run == SCH_READ || op->run == SCH_WRITE) {
        rc = op->run == SCH_READ ? dsp_read_req(op->code, b, blen, &r->u.read, &err)
                                 : dsp_write_req(op->code, b, blen, &r->u.req, &err);
        if (rc) {
            hreq_free(r);
            send_error(h, req, op->code, rc, err.msg, 0);
            return;
        }
    }
    r->h = h;
    r->hc = hc;
    r->req = req;
    r->op = op;
    r->ok = rt->ok;
    if (op->run == SCH_PORTAL) {
        r->job.read = run_portal;
        r->job.reply_max = PTL_REPLY_MAX;
    } else if (op->run == SCH_READ) {
        if (!op->get && r->u.read.q.limit > page_rows(op))
            r->u.read.q.limit = page_rows(op); /* "more" and "next" say there is the rest */
        r->u.read.q.actor = actor;
        r->job.read = run_read;
        r->job.reply_max = dsp_read_reply_max(&r->u.read);
    } else {
        r->u.req.actor = actor;
        peer_of(req, r->peer, sizeof r->peer);
        r->u.req.peer = (tk_str){r->peer, strlen(r->peer)};
        r->u.req.listener = (tk_str){"http", 4};
        r->job.req = &r->u.req;
        r->job.reply_max = DSP_WRITE_REPLY_MAX;
    }
    r->job.done = job_done;
    r->job.bytes = sizeof *r + blen;
    if (hc && !hc->q)
        wrt_queue_new(h->env.w, &hc->q);
    wrt_queue *q = hc ? hc->q : NULL;
    if (!q) { /* a connection evhttp made itself (our hook failed): not counted, not served */
        hreq_free(r);
        send_error(h, req, op->code, TK_EBUSY, "the server is at its connection limit", 0);
        return;
    }
    if (wrt_submit(h->env.w, q, &r->job)) {
        hreq_free(r);
        send_error(h, req, op->code, TK_EBUSY, "the server's write queue is full; try again", 0);
        return;
    }
    h->jobs++;
    hc->jobs++;
    hc->busy = true;
}

/* ---- operations endpoints -------------------------------------------------- */

/* /healthz: 200 while the store takes writes, 503 with the reason when it
 * is full (revocations only) or fenced. /readyz: 200 while serving (a full
 * or fenced store still verifies), 503 once stopping, and on a replica
 * while it vouches for nothing (no lease, behind, stopped applying). */
static void health(http_srv *h, struct evhttp_request *req, bool ready)
{
    const char *why = "";
    const char *state = "ok";
    met_repl r = {0}; /* why may point into it */
    bool ok;
    if (eng_fenced(h->env.e, &why))
        state = "fenced";
    else if (eng_full(h->env.e))
        state = "full", why = "storage full: only revocations are accepted";
    ok = why[0] == 0;
    if (ready) {
        if (h->env.repl)
            h->env.repl(h->env.repl_arg, &r);
        ok = !h->stopping;
        if (h->stopping) {
            state = "stopping", why = "the server is stopping";
        } else if (r.role && strcmp(r.role, "replica") == 0 && !r.available) {
            /* A replica that cannot vouch for a token is not ready for gateways. */
            ok = false;
            state = "unavailable";
            why = r.problem[0]
                      ? r.problem
                      : "no lease from the primary, or behind it: verifications answer "
                        "unavailable";
        }
    }
    send_json(req, ok ? 200 : 503, json_pack("{s:s,s:s}", "status", state, "reason", why));
}

static void metrics(http_srv *h, struct evhttp_request *req)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        evhttp_send_error(req, 503, NULL);
        return;
    }
    uint64_t seq = eng_last_seq(h->env.e);
    const char *why;
    met_gauges g = {
        .conns = {h->env.hub ? conn_hub_count(h->env.hub) : 0, http_count(h),
                  h->env.vhub ? conn_hub_count(h->env.vhub) : 0},
        .index_entries = eng_cred_count(h->env.e),
        .index_bytes = eng_index_bytes(h->env.e),
        .portal_sessions = ptl_sessions(h->portal),
        .events = seq - h->first_seq,
        .log_seq = seq,
        .log_chain = eng_log_checked(h->env.e),
        .store_state = eng_fenced(h->env.e, &why) ? "fenced" : eng_full(h->env.e) ? "full" : "ok",
        .batches = wrt_batch_hist(h->env.w),
        .lmdb_commit_ns = eng_lmdb_commit_hist(h->env.e, false),
        .lmdb_commit_batches = eng_lmdb_commit_hist(h->env.e, true),
        .syncs = eng_sync_hist(h->env.e),
    };
    if (h->env.repl)
        h->env.repl(h->env.repl_arg, &g.repl);
    met_render(h->env.m, &g, f);
    fclose(f);
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    evhttp_add_header(oh, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    evhttp_add_header(oh, "Cache-Control", "no-store");
    evbuffer_add(evhttp_request_get_output_buffer(req), text, len);
    free(text);
    send_reply(req, 200);
}

/* ---- the request callback ------------------------------------------------- */

static void on_request(struct evhttp_request *req, void *arg)
{
    http_srv *h = arg;
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    if (!evhttp_request_get_uri(req) || !u) {
        /* evhttp refused it while reading (too large, malformed): say so. */
        int code = evhttp_request_get_response_code(req);
        met_request(h->env.m, MET_HTTP, 0, code == 413 ? TK_ELIMIT : TK_EPROTO);
        evhttp_send_error(req, code >= 400 ? code : 400, NULL);
        return;
    }
    hconn *hc = conn_of(h, req);
    const char *path = evhttp_uri_get_path(u);
    const char *query = evhttp_uri_get_query(u);
    if (!path || !*path)
        path = "/";
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    size_t nh = 0;
    for (struct evkeyval *kv = in->tqh_first; kv; kv = kv->next.tqe_next)
        nh++;
    if (nh > 100) {
        send_error(h, req, 0, TK_ELIMIT, "more than 100 headers", 0);
        return;
    }
    if (strncmp(path, "/v1/verify", 10) == 0 && (path[10] == 0 || path[10] == '/')) {
        bool json = path[10] == 0 && evhttp_request_get_command(req) == EVHTTP_REQ_POST
                    && evbuffer_get_length(evhttp_request_get_input_buffer(req)) > 0;
        if (!json) {
            gateway_verify(h, req, query);
            return;
        }
    } else if (strcmp(path, "/metrics") == 0) {
        metrics(h, req);
        return;
    } else if (strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0) {
        health(h, req, path[1] == 'r');
        return;
    } else if (ptl_page(h->portal, req, path, query)) {
        return;
    } else if (strncmp(path, "/v1/", 4) != 0) {
        send_error(h, req, 0, TK_ENOTFOUND, "no such resource (docs/http.md lists them)", 0);
        return;
    }
    api(h, req, hc, path, query);
}

/* ---- open, stop, free ------------------------------------------------------ */

void http_open(const http_env *env, const http_opts *o, struct evconnlistener *lis,
               http_srv **out)
{
    http_srv *h = xcalloc(1, sizeof *h);
    h->env = *env;
    h->o = *o;
    h->sample.every = o->log_requests;
    h->http = evhttp_new(env->base);
    h->scratch = evbuffer_new();
    if (!h->http || !h->scratch)
        die("the HTTP listener");
    gw_key_init(&h->gw, env->gateway_key);
    h->env.gateway_key = NULL;
    h->first_seq = eng_last_seq(env->e);
    h->o.portal.https = env->tls != NULL;
    ptl_open(&h->o.portal, env->e, &h->portal);
    evhttp_set_max_headers_size(h->http, o->max_headers);
    evhttp_set_max_body_size(h->http, o->max_body);
    struct timeval tv = {(time_t)o->timeout, (suseconds_t)((o->timeout - (time_t)o->timeout) * 1e6)};
    evhttp_set_timeout_tv(h->http, &tv);
    evhttp_set_default_content_type(h->http, "application/json");
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT
                                            | EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE
                                            | EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS);
    evhttp_set_bevcb(h->http, new_bev, h);
    evhttp_set_gencb(h->http, on_request, h);
    h->bound = evhttp_bind_listener(h->http, lis);
    if (!h->bound)
        die("the HTTP listener");
    h->sweep = event_new(env->base, -1, EV_PERSIST, sweep_cb, h);
    struct timeval sv = {SWEEP_SECONDS, 0};
    if (!h->sweep || event_add(h->sweep, &sv) != 0)
        die("the HTTP listener");
    *out = h;
}

void http_stop(http_srv *h, void (*empty)(void *arg), void *arg)
{
    if (h->bound) {
        evhttp_del_accept_socket(h->http, h->bound);
        h->bound = NULL;
    }
    h->stopping = true;
    h->empty = empty;
    h->empty_arg = arg;
    finish_stop(h);
}

void http_free(http_srv *h)
{
    if (!h)
        return;
    if (h->http)
        evhttp_free(h->http); /* frees its connections' bufferevents */
    while (h->head) {
        h->head->jobs = 0;
        hconn_free(h, h->head);
    }
    if (h->sweep)
        event_free(h->sweep);
    if (h->scratch)
        evbuffer_free(h->scratch);
    free(h->byfd);
    ptl_free(h->portal);
    h1_out_free(&h->lists);
    free(h);
}
