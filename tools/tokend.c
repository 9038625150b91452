/*
 * tokend.c - the server program: flags, signals, and net/server.h.
 *
 * Thin on purpose: everything the server does lives in net/ (server.c,
 * conn.c, writer.c, dispatch.c); this file turns the command line into
 * srv_opts and SIGTERM/SIGINT into srv_stop. Exit status: 0 after a clean
 * stop, 1 when the server cannot start, 2 for a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "net/server.h"

static srv *the_server;

static void on_signal(int sig)
{
    (void)sig;
    if (the_server)
        srv_stop(the_server);
}

static void usage(FILE *f, const srv_opts *d)
{
    fprintf(f,
            "usage: tokend [options]\n"
            "\n"
            "The tokend server: the binary protocol (docs/protocol.md) over TCP, and HTTP\n"
            "(docs/http.md).\n"
            "\n"
            "  --listen HOST:PORT       address to listen on (default %s; port 0 picks a free\n"
            "                           port, printed on stderr; IPv6 as [ADDR]:PORT)\n"
            "  --http HOST:PORT         the HTTP listener: gateway verification, the JSON API,\n"
            "                           /metrics (docs/http.md); default %s, \"none\": off\n"
            "  --http-max-connections N HTTP connections at once; at the limit a new one\n"
            "                           takes the slot of the least recently used idle one\n"
            "                           (default %u)\n"
            "  --http-max-headers BYTES request line and headers together (default %u)\n"
            "  --http-max-body BYTES    request body (default %u)\n"
            "  --http-timeout SECONDS   a read or a write may wait this long, keep-alive\n"
            "                           idle included (default %g)\n"
            "  --portal-url URL         the self-service page's public base, as browsers\n"
            "                           reach it (https://tokens.example.com); its links\n"
            "                           start with it (default: http:// and the Host\n"
            "                           header of the request that mints one; docs/portal.md)\n"
            "  --portal-session-ttl SECONDS  a portal session's life (default %u)\n"
            "  --portal-link-ttl SECONDS     a portal link's one-time code's (default %u)\n"
            "  --portal-max-sessions N  portal sessions and unused links at once (default %u)\n"
            "  --portal-tenant-sessions N  of them one tenant may hold (default %u)\n"
            "  --portal-frame-ancestors SOURCES  who may frame the page (CSP\n"
            "                           frame-ancestors; default %s)\n"
            "  --data DIR               data directory, created at first start with the\n"
            "                           operator key in DIR/operator.key (default %s)\n"
            "  --max-frame BYTES        largest request body (default %u; K/M suffixes)\n"
            "  --max-connections N      connections at once; at the limit a new one takes\n"
            "                           the slot of the least recently active connection\n"
            "                           with nothing in flight, else gets EBUSY (default %u)\n"
            "  --max-per-peer N         connections from one address (IPv6: one /64);\n"
            "                           more get EBUSY (default %u: no cap)\n"
            "  --max-output BYTES       unsent reply bytes per connection before it is\n"
            "                           closed as too slow a reader (default %zu; K/M)\n"
            "  --max-queued BYTES       request bytes one connection may have waiting for\n"
            "                           the writer before it is no longer read (default %zu)\n"
            "  --batch-replies BYTES    reply bytes one writer batch may hold (worst case\n"
            "                           of its listings; default %zu, at least 4M)\n"
            "  --idle-timeout SECONDS   close a connection idle this long (default %g)\n"
            "  --frame-timeout SECONDS  close a connection whose frame takes longer than\n"
            "                           this to arrive, or whose first frame does not\n"
            "                           arrive this long after it connects (default %g)\n"
            "  --require-gateway-key    VERIFY only after AUTH with DIR/gateway.key (created\n"
            "                           0600 if missing) or the operator key\n"
            "  --help                   this text\n"
            "\n"
            "Memory: the start log says how much the connections and the writer can hold\n"
            "with these flags (docs/server.md, \"The memory bound\").\n"
            "Logs go to stderr, one line per event; keys and secrets are never logged.\n"
            "SIGTERM or SIGINT: stop accepting, answer what was received, exit 0.\n",
            d->listen, d->http_listen, d->http.max_connections, d->http.max_headers,
            d->http.max_body, d->http.timeout, d->http.portal.ses.ttl, d->http.portal.ses.code_ttl,
            d->http.portal.ses.max, d->http.portal.ses.per_tenant, d->http.portal.frame_ancestors,
            d->data_dir, d->conn.max_frame, d->conn.max_connections,
            d->conn.max_per_peer, d->conn.max_output, d->conn.max_queued, d->batch_replies,
            d->conn.idle_timeout, d->conn.frame_timeout);
}

/* A byte count with an optional K or M suffix, within [min, max]. */
static int parse_bytes(const char *flag, const char *s, unsigned long long min,
                       unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end != s && (*end == 'K' || *end == 'k')) {
        v = v > ULLONG_MAX >> 10 ? ULLONG_MAX : v << 10;
        end++;
    } else if (end != s && (*end == 'M' || *end == 'm')) {
        v = v > ULLONG_MAX >> 20 ? ULLONG_MAX : v << 20;
        end++;
    }
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
        fprintf(stderr, "tokend: %s %s: expected a number of bytes from %llu to %llu\n", flag,
                s, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_seconds(const char *flag, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < 0.001 || v > 86400 * 365) {
        fprintf(stderr, "tokend: %s %s: expected seconds (from 0.001)\n", flag, s);
        return -1;
    }
    *out = v;
    return 0;
}

enum {
    O_LISTEN = 1,
    O_HTTP,
    O_HTTP_MAX_CONN,
    O_HTTP_MAX_HEADERS,
    O_HTTP_MAX_BODY,
    O_HTTP_TIMEOUT,
    O_PORTAL_URL,
    O_PORTAL_TTL,
    O_PORTAL_LINK_TTL,
    O_PORTAL_MAX,
    O_PORTAL_TENANT,
    O_PORTAL_FRAMES,
    O_DATA,
    O_MAX_FRAME,
    O_MAX_CONN,
    O_MAX_PER_PEER,
    O_MAX_OUTPUT,
    O_MAX_QUEUED,
    O_BATCH_REPLIES,
    O_IDLE,
    O_FRAME_TIMEOUT,
    O_GATEWAY,
    O_HELP,
};

static int parse_args(int argc, char **argv, srv_opts *o)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, O_LISTEN},
        {"http", required_argument, NULL, O_HTTP},
        {"http-max-connections", required_argument, NULL, O_HTTP_MAX_CONN},
        {"http-max-headers", required_argument, NULL, O_HTTP_MAX_HEADERS},
        {"http-max-body", required_argument, NULL, O_HTTP_MAX_BODY},
        {"http-timeout", required_argument, NULL, O_HTTP_TIMEOUT},
        {"portal-url", required_argument, NULL, O_PORTAL_URL},
        {"portal-session-ttl", required_argument, NULL, O_PORTAL_TTL},
        {"portal-link-ttl", required_argument, NULL, O_PORTAL_LINK_TTL},
        {"portal-max-sessions", required_argument, NULL, O_PORTAL_MAX},
        {"portal-tenant-sessions", required_argument, NULL, O_PORTAL_TENANT},
        {"portal-frame-ancestors", required_argument, NULL, O_PORTAL_FRAMES},
        {"data", required_argument, NULL, O_DATA},
        {"max-frame", required_argument, NULL, O_MAX_FRAME},
        {"max-connections", required_argument, NULL, O_MAX_CONN},
        {"max-per-peer", required_argument, NULL, O_MAX_PER_PEER},
        {"max-output", required_argument, NULL, O_MAX_OUTPUT},
        {"max-queued", required_argument, NULL, O_MAX_QUEUED},
        {"batch-replies", required_argument, NULL, O_BATCH_REPLIES},
        {"idle-timeout", required_argument, NULL, O_IDLE},
        {"frame-timeout", required_argument, NULL, O_FRAME_TIMEOUT},
        {"require-gateway-key", no_argument, NULL, O_GATEWAY},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    srv_opts d;
    unsigned long long v;
    int ch;
    srv_opts_default(&d);
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case O_LISTEN: o->listen = optarg; break;
        case O_HTTP: o->http_listen = optarg; break;
        case O_HTTP_MAX_CONN:
            if (parse_bytes("--http-max-connections", optarg, 1, 1000000, &v))
                return 2;
            o->http.max_connections = (uint32_t)v;
            break;
        case O_HTTP_MAX_HEADERS:
            if (parse_bytes("--http-max-headers", optarg, 1024, 1u << 20, &v))
                return 2;
            o->http.max_headers = (uint32_t)v;
            break;
        case O_HTTP_MAX_BODY:
            if (parse_bytes("--http-max-body", optarg, 1024, 1u << 30, &v))
                return 2;
            o->http.max_body = (uint32_t)v;
            break;
        case O_HTTP_TIMEOUT:
            if (parse_seconds("--http-timeout", optarg, &o->http.timeout))
                return 2;
            break;
        case O_PORTAL_URL:
            if (!ptl_url_ok(optarg)) {
                fprintf(stderr, "tokend: --portal-url %s: expected http(s)://HOST[:PORT], "
                                "nothing after it\n",
                        optarg);
                return 2;
            }
            o->http.portal.url = optarg;
            break;
        case O_PORTAL_TTL:
            if (parse_bytes("--portal-session-ttl", optarg, 1, 86400, &v))
                return 2;
            o->http.portal.ses.ttl = (uint32_t)v;
            break;
        case O_PORTAL_LINK_TTL:
            if (parse_bytes("--portal-link-ttl", optarg, 1, 3600, &v))
                return 2;
            o->http.portal.ses.code_ttl = (uint32_t)v;
            break;
        case O_PORTAL_MAX:
            if (parse_bytes("--portal-max-sessions", optarg, 1, 10000000, &v))
                return 2;
            o->http.portal.ses.max = (uint32_t)v;
            break;
        case O_PORTAL_TENANT:
            if (parse_bytes("--portal-tenant-sessions", optarg, 1, 10000000, &v))
                return 2;
            o->http.portal.ses.per_tenant = (uint32_t)v;
            break;
        case O_PORTAL_FRAMES:
            if (strpbrk(optarg, ";,\r\n") || strlen(optarg) > 256) {
                fprintf(stderr, "tokend: --portal-frame-ancestors: CSP sources, space-separated "
                                "('self', 'none', https://app.example.com), at most 256 bytes\n");
                return 2;
            }
            o->http.portal.frame_ancestors = optarg;
            break;
        case O_DATA: o->data_dir = optarg; break;
        case O_MAX_FRAME:
            if (parse_bytes("--max-frame", optarg, 1024, 1u << 30, &v))
                return 2;
            o->conn.max_frame = (uint32_t)v;
            break;
        case O_MAX_CONN:
            if (parse_bytes("--max-connections", optarg, 1, 1000000, &v))
                return 2;
            o->conn.max_connections = (uint32_t)v;
            break;
        case O_MAX_PER_PEER:
            if (parse_bytes("--max-per-peer", optarg, 0, 1000000, &v))
                return 2;
            o->conn.max_per_peer = (uint32_t)v;
            break;
        case O_MAX_OUTPUT:
            if (parse_bytes("--max-output", optarg, 64 * 1024, 1ull << 32, &v))
                return 2;
            o->conn.max_output = (size_t)v;
            break;
        case O_MAX_QUEUED:
            if (parse_bytes("--max-queued", optarg, 64 * 1024, 1ull << 32, &v))
                return 2;
            o->conn.max_queued = (size_t)v;
            break;
        case O_BATCH_REPLIES:
            /* At least one page of 1000 tokens at their field limits: the
             * first job of a batch is always taken anyway. */
            if (parse_bytes("--batch-replies", optarg, 4u << 20, 1ull << 32, &v))
                return 2;
            o->batch_replies = (size_t)v;
            break;
        case O_IDLE:
            if (parse_seconds("--idle-timeout", optarg, &o->conn.idle_timeout))
                return 2;
            break;
        case O_FRAME_TIMEOUT:
            if (parse_seconds("--frame-timeout", optarg, &o->conn.frame_timeout))
                return 2;
            break;
        case O_GATEWAY: o->require_gateway = true; break;
        case O_HELP: usage(stdout, &d); return 0;
        default: usage(stderr, &d); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tokend: unexpected argument %s (see --help)\n", argv[optind]);
        return 2;
    }
    return -1;
}

int main(int argc, char **argv)
{
    srv_opts o;
    struct sigaction sa;
    srv_opts_default(&o);
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL); /* a peer gone mid-write is an error return, not a death */
    if (srv_open(&o, &the_server) != 0)
        return 1;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    rc = srv_run(the_server);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    srv_close(the_server);
    the_server = NULL;
    libevent_global_shutdown();
    return rc;
}
