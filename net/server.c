/*
 * server.c - the server's frame: data directory, gateway key, listening
 * socket, stop; see server.h.
 *
 * What is here and not in conn.c is everything that exists once per
 * process: the engine, the writer thread, the listener (with its answer to
 * running out of file descriptors), and the stop sequence. Stopping is
 * driven by a self-pipe so that a signal handler can ask for it safely;
 * the loop then closes the listener, lets every connection answer what it
 * has received, and leaves the loop once the hub reports it is empty (or a
 * grace period runs out). With TLS, the certificate is reloaded on SIGHUP,
 * caught on the loop thread (evsignal), where the connections ask for it.
 */
#include "net/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <sodium.h>

#include "core/err.h"
#include "core/xmalloc.h"
#include "net/dispatch.h"
#include "net/follower.h"
#include "net/log.h"
#include "net/notify.h"
#include "net/proto.h"
#include "net/publisher.h"
#include "net/vhttp.h"
#include "net/writer.h"
#include "store/keyfile.h"

#define GATEWAY_KEY_LEN KEYFILE_KEY_LEN
#define ACCEPT_PAUSE_MS 100         /* after EMFILE: stop accepting this long */
#define STOP_GRACE_SECONDS 10       /* a stop closes what is left after this */
#define LISTEN_BACKLOG 1024
#define VERIFY_MAX_OUTPUT (256u << 10) /* unsent responses of one verify connection: hundreds
                                          of pipelined answers; a larger one always fits */

struct srv {
    char *data_dir;
    char addr[80];
    struct event_base *base;
    eng *e;
    wrt *w;
    conn_hub *hub;
    met *m;
    http_srv *http;
    char http_addr[80];
    struct evconnlistener *lis;
    struct evconnlistener *http_lis; /* owned by http; NULL once stopped */
    conn_hub *vhub;         /* the verify listener's connections, or NULL */
    vh *vh;                 /* its requests */
    struct evconnlistener *vlis;
    char verify_addr[80];
    int waiting;            /* parts still answering during a stop */
    struct event *resume;   /* re-enables accepting after a pause */
    struct event *stop_ev;  /* the self-pipe's read end */
    struct event *grace;    /* stop deadline */
    tls *tls;               /* both listeners' TLS context, or NULL */
    struct event *hup;      /* SIGHUP: reload it */
    int pipe[2];
    int stops;              /* stop requests seen */
    lg_limit log_accept;
    pub *pub;               /* a primary publishing its log (--publish), or NULL */
    fol *fol;               /* a replica (--follow), or NULL */
};

void srv_opts_default(srv_opts *o)
{
    memset(o, 0, sizeof *o);
    o->listen = SRV_DEFAULT_LISTEN;
    o->http_listen = HTTP_DEFAULT_LISTEN;
    http_opts_default(&o->http);
    o->data_dir = SRV_DEFAULT_DATA;
    o->conn.max_frame = PROTO_DEFAULT_MAX_FRAME;
    o->conn.max_connections = 1024;
    o->conn.max_output = 4u << 20;
    o->conn.max_queued = 8u << 20;
    o->conn.max_per_peer = 0;
    o->conn.max_inflight = 1024;
    o->conn.idle_timeout = 300;
    o->conn.frame_timeout = 10;
    o->conn.io_uring = true;
    o->batch_replies = 16u << 20;
    o->log_format = "text";
    o->repl.stream = REPL_STREAM_DEFAULT;
    o->repl.stream_replicas = 1;
    o->repl.lease_s = REPL_LEASE_DEFAULT_S;
    o->repl.snapshot_s = 300;
}

static bool listen_set(const char *spec)
{
    return spec && *spec && strcmp(spec, "none") != 0;
}

static bool http_enabled(const srv_opts *o)
{
    return listen_set(o->http_listen);
}

/* The verify listener's connection limits: the HTTP listener's, on the
 * binary listener's connection layer. Its requests are answered inline,
 * never queued for the writer. */
static void verify_opts(const srv_opts *o, conn_opts *v)
{
    *v = o->conn;
    v->max_frame = o->http.max_headers;
    v->max_connections = o->http.max_connections;
    v->max_per_peer = 0; /* gateways: a few addresses, many connections */
    v->max_output = VERIFY_MAX_OUTPUT;
    v->idle_timeout = o->http.timeout;
    v->frame_timeout = o->http.timeout;
    v->require_gateway = false; /* the gateway key is checked per request (vhttp.h) */
    v->log_requests = 0;        /* vhttp.h samples its own */
}

static void writer_opts(const srv_opts *o, wrt_opts *w)
{
    w->max_backlog = SRV_WRITER_BACKLOG;
    w->batch_replies = o->batch_replies;
}

size_t srv_memory_bound(const srv_opts *o)
{
    wrt_opts w;
    writer_opts(o, &w);
    conn_opts vo;
    verify_opts(o, &vo);
    bool verify = listen_set(o->verify_listen);
    size_t tls_conns = o->tls.cert ? (size_t)o->conn.max_connections
                                         + (http_enabled(o) ? o->http.max_connections : 0)
                                         + (verify ? vo.max_connections : 0)
                                   : 0;
    return conn_memory_bound(&o->conn, w.max_backlog) + wrt_memory_bound(&w, dsp_reply_max())
           + (http_enabled(o) ? http_memory_bound(&o->http) : 0)
           + (verify ? conn_http_memory_bound(&vo) : 0) + tls_conns * TLS_CONN_BYTES;
}

/* ---- TLS ------------------------------------------------------------------ */

/* SIGHUP: the certificate, key and client CA are read again; new
 * connections get them, open ones keep their session. A failed reload
 * keeps what was loaded. */
static void hup_cb(evutil_socket_t sig, short what, void *arg)
{
    srv *s = arg;
    tk_why why;
    char d[640];
    (void)sig;
    (void)what;
    if (tls_reload(s->tls, &why) != 0) {
        tls_describe(s->tls, d, sizeof d);
        lg_line("SIGHUP: TLS reload failed: %s; still serving the %s", why.msg, d);
        return;
    }
    tls_describe(s->tls, d, sizeof d);
    lg_line("SIGHUP: TLS reloaded: new connections get the %s", d);
}

/* No core dumps: the process holds keys and secrets in memory (the keys
 * only hashed, but a new token's secret passes through it). */
static void no_core_dumps(void)
{
    struct rlimit rl = {0, 0};
    if (setrlimit(RLIMIT_CORE, &rl) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        lg_line("cannot turn core dumps off: %s", strerror(errno));
}

/* The log's head (seq and chain hash), at start and stop: a figure to keep
 * elsewhere (tokenreplay check --expect-head SEQ:HASH). */
static void log_head(const eng *e, const char *when, const char *sign_key)
{
    uint64_t seq;
    uint8_t h[TK_HASH_LEN];
    char hex[2 * TK_HASH_LEN + 1];
    eng_head(e, &seq, h);
    sodium_bin2hex(hex, sizeof hex, h, TK_HASH_LEN);
    lg_line("log head at %s: %llu:%s%s%s", when, (unsigned long long)seq, hex,
            sign_key ? ", heads signed with " : "", sign_key ? sign_key : "");
}

/* ---- the gateway key ------------------------------------------------------ */

/* Reads DIR/gateway.key into key, creating it (0600, fsynced) if missing. */
static int gateway_key(const char *dir, char key[GATEWAY_KEY_LEN + 1])
{
    tk_why why;
    int rc = keyfile_load(dir, "gateway.key", "tkg_", key, &why);
    if (rc)
        lg_line("%s", why.msg);
    return rc;
}

/* ---- listening ------------------------------------------------------------ */

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    srv *s = arg;
    conn_hub_accept(l == s->vlis ? s->vhub : s->hub, fd, sa, salen);
}

/* accept() failed. Out of descriptors (or memory) the listening socket
 * stays readable, so accepting again at once would spin: pause instead. */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    srv *s = arg;
    int err = EVUTIL_SOCKET_ERROR();
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
        lg_limited(&s->log_accept, "accept: %s; not accepting for %d ms (%zu connections open)",
                   strerror(err), ACCEPT_PAUSE_MS, conn_hub_count(s->hub));
        evconnlistener_disable(l);
        evtimer_add(s->resume, &tv);
    } else {
        lg_limited(&s->log_accept, "accept: %s", strerror(err));
    }
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    srv *s = arg;
    (void)fd;
    (void)what;
    if (s->lis)
        evconnlistener_enable(s->lis);
    if (s->http_lis)
        evconnlistener_enable(s->http_lis);
    if (s->vlis)
        evconnlistener_enable(s->vlis);
}

static void format_addr(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    char a[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof a);
        snprintf(out, cap, "[%s]:%u", a, ntohs(in6->sin6_port));
    } else {
        const struct sockaddr_in *in = (const void *)ss;
        inet_ntop(AF_INET, &in->sin_addr, a, sizeof a);
        snprintf(out, cap, "%s:%u", a, ntohs(in->sin_port));
    }
}

/* Splits "HOST:PORT" or "[V6]:PORT" and resolves it (numeric port, 0..65535). */
static int parse_listen(const char *spec, struct sockaddr_storage *ss, int *len)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    const char *h = spec;
    size_t hn;
    struct addrinfo hints, *ai = NULL;
    if (!colon || colon[1] == '\0' || strspn(colon + 1, "0123456789") != strlen(colon + 1)
        || strlen(colon + 1) > 5 || atoi(colon + 1) > 65535)
        return -1;
    hn = (size_t)(colon - spec);
    if (hn >= 2 && spec[0] == '[' && spec[hn - 1] == ']') {
        h++;
        hn -= 2;
    }
    if (hn == 0 || hn >= sizeof host)
        return -1;
    memcpy(host, h, hn);
    host[hn] = '\0';
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0 || !ai)
        return -1;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = (int)ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

/* A listening socket on spec (flag names the flag, for the message), its
 * address in addr. The HTTP listener's is handed to evhttp, which sets its
 * own accept callback; all share the pause on running out of descriptors. */
static int listen_on(srv *s, const char *flag, const char *spec, struct evconnlistener **out,
                     char *addr, size_t cap)
{
    struct sockaddr_storage ss;
    int len = 0;
    memset(&ss, 0, sizeof ss);
    if (parse_listen(spec, &ss, &len) != 0) {
        lg_line("%s %s: expected HOST:PORT (IPv6 as [ADDR]:PORT, port 0 to 65535)", flag, spec);
        return TK_EINVAL;
    }
    struct evconnlistener *l = evconnlistener_new_bind(
        s->base, accept_cb, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        LISTEN_BACKLOG, (struct sockaddr *)&ss, len);
    if (!l) {
        lg_line("cannot listen on %s (%s): %s", spec, flag, strerror(errno));
        return TK_EIO;
    }
    *out = l;
    evconnlistener_set_error_cb(l, accept_error_cb);
    socklen_t sl = sizeof ss;
    if (getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&ss, &sl) != 0) {
        lg_line("getsockname: %s", strerror(errno));
        return TK_EIO;
    }
    format_addr(&ss, addr, cap);
    return 0;
}

/* Enough descriptors for max_connections (plus the data files and some
 * slack): raise the soft limit toward the hard one if needed. */
static void raise_fd_limit(uint32_t max_connections)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)max_connections + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < want)
        lg_line("warning: open-file limit %llu is below --max-connections %u + 64; accept "
                "will pause when it is reached",
                (unsigned long long)rl.rlim_cur, max_connections);
}

/* ---- stopping ------------------------------------------------------------- */

/* The hub, and the HTTP listener, each call this once when they have
 * answered everything: the loop ends after the last. */
static void part_empty(void *arg)
{
    srv *s = arg;
    if (--s->waiting == 0)
        event_base_loopexit(s->base, NULL);
}

static void grace_cb(evutil_socket_t fd, short what, void *arg)
{
    srv *s = arg;
    (void)fd;
    (void)what;
    lg_line("stop: %zu connections still open after %d s; closing them",
            conn_hub_count(s->hub) + (s->vhub ? conn_hub_count(s->vhub) : 0), STOP_GRACE_SECONDS);
    conn_hub_abort(s->hub);
    if (s->vhub)
        conn_hub_abort(s->vhub);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    srv *s = arg;
    char buf[16];
    (void)what;
    while (read(fd, buf, sizeof buf) > 0)
        s->stops++;
    if (s->stops > 1 && s->lis == NULL) {
        lg_line("second stop request: closing every connection now");
        conn_hub_abort(s->hub);
        if (s->vhub)
            conn_hub_abort(s->vhub);
        return;
    }
    if (s->lis == NULL)
        return;
    lg_line("stopping: no new connections; answering what %zu connections sent",
            conn_hub_count(s->hub));
    tk_why nw;
    if (notify_send("STOPPING=1", &nw))
        lg_line("%s", nw.msg);
    evconnlistener_free(s->lis);
    s->lis = NULL;
    s->http_lis = NULL; /* freed by http_stop */
    if (s->vlis)
        evconnlistener_free(s->vlis);
    s->vlis = NULL;
    struct timeval tv = {STOP_GRACE_SECONDS, 0};
    evtimer_add(s->grace, &tv);
    s->waiting = 1 + (s->http != NULL) + (s->vhub != NULL);
    if (s->http)
        http_stop(s->http, part_empty, s);
    if (s->vhub)
        conn_hub_stop(s->vhub, part_empty, s);
    conn_hub_stop(s->hub, part_empty, s);
}

void srv_stop(srv *s)
{
    char b = 's';
    ssize_t n = write(s->pipe[1], &b, 1);
    (void)n; /* a full pipe already holds a stop request */
}

/* ---- replication (docs/scale.md) ---------------------------------------- */

/* The replication flags that cannot go together, refused before anything
 * opens. */
static int repl_check(const repl_opts *r)
{
    if (r->publish && r->follow) {
        lg_line("--publish and --follow: a server is a primary or a replica, not both");
        return TK_EINVAL;
    }
    if (r->barrier && !r->publish) {
        lg_line("--revocation-barrier needs --publish (the primary runs the barrier)");
        return TK_EINVAL;
    }
    if (!repl_stream_ok(r->stream ? r->stream : REPL_STREAM_DEFAULT)) {
        lg_line("--stream %s: letters, digits, - and _ only, at most 32", r->stream);
        return TK_EINVAL;
    }
    return 0;
}

/* What /metrics and /readyz show of replication (http.h's repl hook). */
static void repl_state(void *arg, met_repl *out)
{
    srv *s = arg;
    memset(out, 0, sizeof *out);
    if (s->pub)
        pub_get_state(s->pub, out);
    else if (s->fol)
        fol_get_state(s->fol, out);
}

/* Starts the publisher or the follower, once the listeners are bound (a
 * replica is named after its own, a primary's replicas are told them). */
static int repl_begin(srv *s, const srv_opts *o)
{
    tk_why why = {.msg = ""};
    int rc = 0;
    if (o->repl.follow) {
        char host[64] = "localhost", name[REPL_NAME_MAX + 1];
        const char *port = strrchr(s->addr, ':');
        (void)gethostname(host, sizeof host - 1);
        snprintf(name, sizeof name, "%s%s", host, port ? port : "");
        if ((rc = fol_start(s->base, s->e, s->w, &o->repl, name, &s->fol, &why)) == 0)
            lg_line("replica of stream %s at %s, as %s (lease %.3g s%s): writes refused, "
                    "verification answers \"unavailable\" until the primary grants a lease",
                    o->repl.stream, o->repl.follow, o->repl.name ? o->repl.name : name,
                    o->repl.lease_s, o->repl.fail_open ? ", fail-open" : "");
    } else if (o->repl.publish) {
        char addr[REPL_ADDR_MAX + 1];
        snprintf(addr, sizeof addr, "binary %s%s%s", s->addr, s->http ? ", http " : "",
                 s->http ? s->http_addr : "");
        char *snap = xasprintf("%s/snapshot", o->data_dir);
        rc = pub_start(s->base, s->e, s->w, &o->repl, addr, snap, &s->pub, &why);
        free(snap);
        if (rc == 0)
            lg_line("publishing the log to stream %s at %s (lease %.3g s, revocation barrier "
                    "%s)",
                    o->repl.stream, o->repl.publish, o->repl.lease_s,
                    o->repl.barrier ? "on" : "off");
    }
    if (rc)
        lg_line("replication: %s", why.msg);
    return rc;
}

/* ---- open, run, close --------------------------------------------------- */

/* The engine's lines for the operator (the log's background check). */
static void srv_notice(void *arg, const char *msg)
{
    (void)arg;
    lg_line("%s", msg);
}

int srv_open(const srv_opts *o, srv **out)
{
    static bool threads_on;
    srv *s = xcalloc(1, sizeof *s);
    char gw[GATEWAY_KEY_LEN + 1];
    bool new_dir;
    struct stat st;
    int rc = TK_EIO;
    conn_opts co = o->conn;
    srv_opts oo = *o; /* the HTTP listener's copy, with the request sampling */
    co.log_requests = o->log_requests;
    oo.http.log_requests = o->log_requests;

    s->pipe[0] = s->pipe[1] = -1;
    s->data_dir = xstrdup(o->data_dir);
    if ((rc = repl_check(&o->repl)))
        goto fail;
    rc = TK_EIO;
    if (!threads_on && evthread_use_pthreads() != 0) {
        lg_line("libevent has no pthreads support");
        goto fail;
    }
    threads_on = true;
    no_core_dumps();
    lg_set_json(o->log_format && strcmp(o->log_format, "json") == 0);
    raise_fd_limit(co.max_connections);
    new_dir = stat(o->data_dir, &st) != 0;
    tk_why why;
    if (o->repl.follow) {
        rc = fol_bootstrap(&o->repl, o->data_dir, 10000, &why);
        if (rc == 0)
            lg_line("replica: %s made from the latest snapshot of stream %s", o->data_dir,
                    o->repl.stream);
        else if (rc == TK_ENOTFOUND)
            lg_line("replica: no snapshot of stream %s yet: following it from event 1",
                    o->repl.stream);
        else if (rc != TK_EEXIST)
            lg_line("replica: no bootstrap from a snapshot (%s): following the stream from "
                    "event 1", why.msg);
        new_dir = stat(o->data_dir, &st) != 0;
    }
    eng_opts eo = {.sign_key = o->sign_key,
                   .full_log_check = o->full_log_check,
                   .notice = srv_notice};
    if ((rc = eng_open(o->data_dir, &eo, &s->e, &why))) {
        lg_line("cannot open the data directory %s: %s", o->data_dir, why.msg);
        goto fail;
    }
    const eng_open_times *ot = eng_open_stats(s->e);
    lg_line("opened %s in %.2f s: %zu credentials; the log's last segment %.2f s, LMDB %.2f s, "
            "the view %.2f s (%s), then %.2f s for the log's check", o->data_dir, ot->total_s,
            ot->creds, ot->log_tail_s, ot->state_s, ot->load_s,
            ot->image ? "its credentials from state/view.img"
            : ot->image_rc == TK_ENOTFOUND ? "from LMDB" : "from LMDB: state/view.img refused",
            ot->log_wait_s);
    co.require_gateway = o->require_gateway;
    if (o->require_gateway && (rc = gateway_key(o->data_dir, gw)))
        goto fail;
    if ((o->tls.cert || o->tls.key || o->tls.client_ca)
        && (rc = tls_server_new(&o->tls, &s->tls, &why))) {
        lg_line("%s", why.msg);
        goto fail;
    }
    rc = TK_EIO;
    /* The epoll changelist folds an event added and deleted in the same loop
     * turn into no system call (send_now relies on it). */
    struct event_config *cfg = event_config_new();
    if (cfg)
        event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    s->base = cfg ? event_base_new_with_config(cfg) : NULL;
    if (cfg)
        event_config_free(cfg);
    if (!s->base) {
        lg_line("cannot create the event loop");
        goto fail;
    }
    wrt_opts wo;
    writer_opts(o, &wo);
    if ((rc = wrt_start(s->base, s->e, &wo, &s->w)))
        goto fail;
    conn_hub_new(s->base, s->e, s->w, &co, o->require_gateway ? gw : NULL, &s->hub);
    conn_hub_set_tls(s->hub, s->tls);
    rc = TK_EIO;
    if (pipe2(s->pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        lg_line("pipe: %s", strerror(errno));
        goto fail;
    }
    s->stop_ev = event_new(s->base, s->pipe[0], EV_READ | EV_PERSIST, stop_cb, s);
    s->resume = evtimer_new(s->base, resume_cb, s);
    s->grace = evtimer_new(s->base, grace_cb, s);
    if (!s->stop_ev || !s->resume || !s->grace || event_add(s->stop_ev, NULL) != 0) {
        lg_line("cannot create events (out of memory)");
        goto fail;
    }
    if (s->tls && (!(s->hup = evsignal_new(s->base, SIGHUP, hup_cb, s))
                   || event_add(s->hup, NULL) != 0)) {
        lg_line("cannot catch SIGHUP for TLS reloads");
        goto fail;
    }
    if ((rc = listen_on(s, "--listen", o->listen, &s->lis, s->addr, sizeof s->addr)))
        goto fail;
    met_new(&s->m);
    conn_hub_set_metrics(s->hub, s->m);
    if (http_enabled(o)) {
        raise_fd_limit(co.max_connections + o->http.max_connections);
        if ((rc = listen_on(s, "--http", o->http_listen, &s->http_lis, s->http_addr,
                            sizeof s->http_addr)))
            goto fail;
    }
    if (listen_set(o->verify_listen)) {
        conn_opts vo;
        verify_opts(o, &vo);
        raise_fd_limit(co.max_connections + o->http.max_connections + vo.max_connections);
        if ((rc = listen_on(s, "--http-verify", o->verify_listen, &s->vlis, s->verify_addr,
                            sizeof s->verify_addr)))
            goto fail;
        vh_opts vho = {o->http.max_headers, o->http.max_body, o->log_requests};
        vh_new(s->e, s->m, o->require_gateway ? gw : NULL, &vho, &s->vh);
        conn_hub_new(s->base, s->e, NULL, &vo, NULL, &s->vhub); /* no writer: all inline */
        conn_hub_set_tls(s->vhub, s->tls);
        conn_hub_set_metrics(s->vhub, s->m);
        conn_hub_set_http(s->vhub, s->vh);
    }
    if (s->http_lis) {
        http_env env = {s->base, s->e, s->w, s->m, s->hub, s->vhub,
                        o->require_gateway ? gw : NULL, s->tls, repl_state, s};
        http_open(&env, &oo.http, s->http_lis, &s->http);
    }
    if ((rc = repl_begin(s, o)))
        goto fail;
    sodium_memzero(gw, sizeof gw);
    /* Listening: a Type=notify unit is started now (docs/install.md). */
    tk_why nw;
    if (notify_send("READY=1", &nw))
        lg_line("%s", nw.msg);
    /* Before the "listening on" line, which tests and scripts wait for. */
    if (s->tls) {
        char d[640];
        tls_describe(s->tls, d, sizeof d);
        lg_line("TLS on both listeners (plain connections are refused; SIGHUP reloads): %s", d);
    }
    lg_line("socket reads and sends by %s%s", conn_hub_sends(s->hub),
            s->tls ? "; over TLS, by OpenSSL's" : "");
    if (s->vhub)
        lg_line("http-verify on %s (gateway verification at /v1/verify only; "
                "docs/gateways.md)",
                s->verify_addr);
    if (s->http)
        lg_line("http on %s (gateway verification at /v1/verify, the JSON API under /v1/, "
                "/metrics, /healthz; docs/http.md)",
                s->http_addr);
    lg_line("listening on %s, data in %s (%zu credentials), operator key in %s/operator.key%s",
            s->addr, o->data_dir, eng_cred_count(s->e), o->data_dir,
            new_dir ? " (new)" : "");
    log_head(s->e, "start", o->sign_key);

    lg_line("memory bound: %zu MiB for connections and the writer, beyond the engine's "
            "(docs/server.md, \"The memory bound\")", srv_memory_bound(o) >> 20);
    if (o->require_gateway)
        lg_line("VERIFY requires AUTH with the gateway key in %s/gateway.key (or the operator "
                "key)",
                o->data_dir);
    *out = s;
    return 0;
fail:
    sodium_memzero(gw, sizeof gw);
    srv_close(s);
    return rc;
}

const char *srv_address(const srv *s)
{
    return s->addr;
}

const char *srv_http_address(const srv *s)
{
    return s->http ? s->http_addr : NULL;
}

const char *srv_verify_address(const srv *s)
{
    return s->vhub ? s->verify_addr : NULL;
}

int srv_run(srv *s)
{
    event_base_dispatch(s->base);
    lg_line("stopped (%llu events in the log)", (unsigned long long)eng_last_seq(s->e));
    log_head(s->e, "stop", NULL);
    return 0;
}

void srv_close(srv *s)
{
    if (!s)
        return;
    if (s->lis)
        evconnlistener_free(s->lis);
    if (s->http_lis && !s->http)
        evconnlistener_free(s->http_lis);
    if (s->vlis)
        evconnlistener_free(s->vlis);
    wrt_free(s->w);
    fol_free(s->fol); /* after the writer: it may have been running its job */
    pub_free(s->pub);
    http_free(s->http);
    conn_hub_free(s->hub);
    conn_hub_free(s->vhub);
    vh_free(s->vh);
    met_free(s->m);
    if (s->stop_ev)
        event_free(s->stop_ev);
    if (s->resume)
        event_free(s->resume);
    if (s->grace)
        event_free(s->grace);
    if (s->hup)
        event_free(s->hup);
    if (s->base)
        event_base_free(s->base);
    eng_close(s->e);
    tls_free(s->tls); /* after the connections, which end their sessions */
    if (s->pipe[0] >= 0)
        close(s->pipe[0]);
    if (s->pipe[1] >= 0)
        close(s->pipe[1]);
    free(s->data_dir);
    free(s);
}
