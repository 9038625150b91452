/*
 * options.c - bin/tokend's option table, and the command line, the
 * configuration file, --help and --check-config made from it.
 *
 * opt_table below is the only list of options: a row is a flag, its
 * [section] and key in the file, a type with its range, the help text and
 * the srv_opts field it fills (offset and size). Adding a row adds the
 * flag, the key, the --help entry and the --check-config line at once; a
 * test walks the rows through both the flag and the file. Values are
 * checked by one function per type (opt_check), so a bad value gets the
 * same explanation from the command line and from the file, where the
 * subject names the file's line and key instead of the flag.
 *
 * The file is INI, parsed by libinih; the notes above opt_file ("the
 * file" below) say how inih is set up and why its lines come through a
 * reader of ours.
 */
#include "net/options.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "core/xmalloc.h"
#include "net/portal.h"

/* ---- the table ---------------------------------------------------------- */

typedef enum opt_kind {
    OPT_STR,     /* any string: an address, a directory (srv_open checks them) */
    OPT_COUNT,   /* an integer in [min, max]; K and M suffixes accepted */
    OPT_BYTES,   /* the same, a size: printed with K or M when exact */
    OPT_SECONDS, /* a number of seconds, fractions accepted, from 0.001 to a year */
    OPT_BOOL,    /* a flag without argument; true or false in the file */
    OPT_URL,     /* the portal's public base (ptl_url_ok); NULL: unset */
    OPT_CSP,     /* CSP frame-ancestors sources */
} opt_kind;

typedef struct opt_def {
    const char *flag;    /* --flag, without the dashes */
    const char *section; /* [section] in the file */
    const char *key;     /* key in that section */
    opt_kind kind;
    const char *arg;     /* the argument's name in --help; NULL for OPT_BOOL */
    unsigned long long min, max; /* OPT_COUNT, OPT_BYTES */
    size_t off, size;    /* the srv_opts field: offset, sizeof */
    const char *help;    /* --help's text; the default and range are added */
    const char *unset;   /* what a NULL default means (OPT_URL, OPT_STR) */
} opt_def;

/* The OPT_STR options that take one of a few words (NULL-ended). */
static const char *const opt_log_formats[] = {"text", "json", NULL};
static const struct {
    const char *flag;
    const char *const *words;
} opt_choices[] = {{"log-format", opt_log_formats}};

static const char *const *opt_words(const opt_def *d)
{
    for (size_t i = 0; i < sizeof opt_choices / sizeof opt_choices[0]; i++)
        if (strcmp(opt_choices[i].flag, d->flag) == 0)
            return opt_choices[i].words;
    return NULL;
}

#define OPT_AT(m) offsetof(srv_opts, m), sizeof(((srv_opts *)0)->m)
#define OPT_SECONDS_MAX (86400.0 * 365)
#define OPT_CSP_MAX 256

static const opt_def opt_table[] = {
    {"listen", "server", "listen", OPT_STR, "HOST:PORT", 0, 0, OPT_AT(listen),
     "address to listen on for the binary protocol; port 0 picks a free port, printed "
     "on stderr; IPv6 as [ADDR]:PORT",
     NULL},
    {"data", "server", "data", OPT_STR, "DIR", 0, 0, OPT_AT(data_dir),
     "data directory, created at first start with the operator key in DIR/operator.key",
     NULL},
    {"max-frame", "server", "max-frame", OPT_BYTES, "BYTES", 1024, 1u << 30,
     OPT_AT(conn.max_frame), "largest request body", NULL},
    {"max-connections", "server", "max-connections", OPT_COUNT, "N", 1, 1000000,
     OPT_AT(conn.max_connections),
     "connections at once; at the limit a new one takes the slot of the least recently "
     "active connection with nothing in flight, else gets EBUSY",
     NULL},
    {"max-per-peer", "server", "max-per-peer", OPT_COUNT, "N", 0, 1000000,
     OPT_AT(conn.max_per_peer),
     "connections from one address (IPv6: one /64); more get EBUSY; 0: no cap", NULL},
    {"max-output", "server", "max-output", OPT_BYTES, "BYTES", 64 * 1024, 1ull << 32,
     OPT_AT(conn.max_output),
     "unsent reply bytes per connection before it is closed as too slow a reader", NULL},
    {"max-queued", "server", "max-queued", OPT_BYTES, "BYTES", 64 * 1024, 1ull << 32,
     OPT_AT(conn.max_queued),
     "request bytes one connection may have waiting for the writer before it is no "
     "longer read",
     NULL},
    /* At least one page of 1000 tokens at their field limits: the first job
     * of a batch is always taken anyway. */
    {"batch-replies", "server", "batch-replies", OPT_BYTES, "BYTES", 4u << 20, 1ull << 32,
     OPT_AT(batch_replies),
     "reply bytes one writer batch may hold, counting each listing at its largest page",
     NULL},
    {"idle-timeout", "server", "idle-timeout", OPT_SECONDS, "SECONDS", 0, 0,
     OPT_AT(conn.idle_timeout), "close a connection idle this long", NULL},
    {"frame-timeout", "server", "frame-timeout", OPT_SECONDS, "SECONDS", 0, 0,
     OPT_AT(conn.frame_timeout),
     "close a connection whose frame takes longer than this to arrive, or whose first "
     "frame does not arrive this long after it connects",
     NULL},
    {"require-gateway-key", "server", "require-gateway-key", OPT_BOOL, NULL, 0, 0,
     OPT_AT(require_gateway),
     "VERIFY only after AUTH with DIR/gateway.key (created 0600 if missing) or the "
     "operator key; --require-gateway-key=false turns it off over the file",
     NULL},
    {"tls-cert", "server", "tls-cert", OPT_STR, "FILE", 0, 0, OPT_AT(tls.cert),
     "TLS on both listeners with this certificate (PEM, then its chain): plain "
     "connections are refused there; SIGHUP reloads it and the key; docs/server.md, \"TLS\"",
     "none, plain TCP and HTTP"},
    {"tls-key", "server", "tls-key", OPT_STR, "FILE", 0, 0, OPT_AT(tls.key),
     "the certificate's private key (PEM, unencrypted); refused when its group or others "
     "may read it (chmod 600)",
     "none"},
    {"tls-client-ca", "server", "tls-client-ca", OPT_STR, "FILE", 0, 0, OPT_AT(tls.client_ca),
     "with TLS, require a client certificate signed by one of these CAs (PEM) on both "
     "listeners (mTLS, for gateways)",
     "none asked"},
    {"sign-key", "server", "sign-key", OPT_STR, "FILE", 0, 0, OPT_AT(sign_key),
     "sign the log's head with this Ed25519 key (made 0600 with FILE.pub when missing; keep "
     "it outside the data directory): a log cut short or edited refuses to start "
     "(docs/storage.md, \"Signed heads\")",
     "no signed heads"},
    {"full-log-check", "server", "full-log-check", OPT_BOOL, NULL, 0, 0, OPT_AT(full_log_check),
     "check every link of the log's hash chain before serving; by default the start checks "
     "every CRC and the last segment's links, and the other links are checked in the "
     "background on idle CPU (docs/storage.md, \"The start's check\")",
     NULL},
    {"io-uring", "server", "io-uring", OPT_BOOL, NULL, 0, 0, OPT_AT(conn.io_uring),
     "read the connections of a loop turn in one io_uring submission and send their "
     "replies in another; --io-uring=false, or a kernel without io_uring: a read and a "
     "sendmsg per connection (docs/server.md, \"System calls\")",
     NULL},
    {"log-format", "server", "log-format", OPT_STR, "FORMAT", 0, 0, OPT_AT(log_format),
     "the log's lines: text, or json (one object a line: time, msg, and a request's fields)",
     NULL},
    {"log-requests", "server", "log-requests", OPT_COUNT, "N", 0, 1000000, OPT_AT(log_requests),
     "log one request in N (listener, operation, result, peer; never a key or a secret); "
     "0: none",
     NULL},

    {"http", "http", "listen", OPT_STR, "HOST:PORT", 0, 0, OPT_AT(http_listen),
     "the HTTP listener: gateway verification, the JSON API, /metrics (docs/http.md); "
     "\"none\": off",
     NULL},
    {"http-verify", "http", "verify", OPT_STR, "HOST:PORT", 0, 0, OPT_AT(verify_listen),
     "the verify listener: gateway verification (/v1/verify) only, over HTTP, at 1.6 to "
     "4 times the main listener's rate, with its limits (docs/gateways.md); \"none\": off",
     "none"},
    {"http-max-connections", "http", "max-connections", OPT_COUNT, "N", 1, 1000000,
     OPT_AT(http.max_connections),
     "HTTP connections at once; at the limit a new one takes the slot of the least "
     "recently used idle one",
     NULL},
    {"http-max-headers", "http", "max-headers", OPT_BYTES, "BYTES", 1024, 1u << 20,
     OPT_AT(http.max_headers), "request line and headers together", NULL},
    {"http-max-body", "http", "max-body", OPT_BYTES, "BYTES", 1024, 1u << 30,
     OPT_AT(http.max_body), "request body", NULL},
    {"http-timeout", "http", "timeout", OPT_SECONDS, "SECONDS", 0, 0, OPT_AT(http.timeout),
     "a read or a write may wait this long, keep-alive idle included", NULL},

    {"publish", "replication", "publish", OPT_STR, "URLS", 0, 0, OPT_AT(repl.publish),
     "publish the durable log to NATS JetStream at nats://HOST:PORT[,...] for replicas "
     "(docs/scale.md); NATS being away never stops a write",
     "none"},
    {"follow", "replication", "follow", OPT_STR, "URLS", 0, 0, OPT_AT(repl.follow),
     "be a verify-only replica of the primary whose log is at nats://HOST:PORT[,...]: "
     "verification and reads, writes refused",
     "none: a primary"},
    {"stream", "replication", "stream", OPT_STR, "NAME", 0, 0, OPT_AT(repl.stream),
     "the JetStream stream of the log (letters, digits, - and _; subjects NAME.log and "
     "NAME.lease)",
     NULL},
    {"stream-replicas", "replication", "stream-replicas", OPT_COUNT, "N", 1, 5,
     OPT_AT(repl.stream_replicas),
     "copies of the stream a NATS cluster keeps, when the primary makes it", NULL},
    {"replica-name", "replication", "name", OPT_STR, "NAME", 0, 0, OPT_AT(repl.name),
     "this replica's name in the primary's barrier (unique per stream)",
     "HOST:PORT of its binary listener"},
    {"lease", "replication", "lease", OPT_SECONDS, "SECONDS", 0, 0, OPT_AT(repl.lease_s),
     "a replica answers \"valid\" only while its lease from the primary runs; the primary's "
     "barrier drops a replica silent this long",
     NULL},
    {"snapshot-every", "replication", "snapshot-every", OPT_SECONDS, "SECONDS", 0, 0,
     OPT_AT(repl.snapshot_s),
     "primary: put a snapshot of the state in the object store bucket STREAM-snapshots this "
     "often while events come; a replica started with an empty data directory bootstraps "
     "from the latest, then follows the stream from there",
     NULL},
    {"revocation-barrier", "replication", "revocation-barrier", OPT_BOOL, NULL, 0, 0,
     OPT_AT(repl.barrier),
     "primary: answer a change that takes access away only once every live replica has "
     "applied it",
     NULL},
    {"fail-open", "replication", "fail-open", OPT_BOOL, NULL, 0, 0, OPT_AT(repl.fail_open),
     "replica: keep answering from its state without a lease (a revoked token may pass "
     "while it is cut off; docs/scale.md)",
     NULL},

    {"portal-url", "portal", "url", OPT_URL, "URL", 0, 0, OPT_AT(http.portal.url),
     "the self-service page's public base, as browsers reach it "
     "(https://tokens.example.com); its links start with it; docs/portal.md",
     "http:// and the Host header of the request that mints one"},
    {"portal-session-ttl", "portal", "session-ttl", OPT_COUNT, "SECONDS", 1, 86400,
     OPT_AT(http.portal.ses.ttl), "a portal session's life", NULL},
    {"portal-link-ttl", "portal", "link-ttl", OPT_COUNT, "SECONDS", 1, 3600,
     OPT_AT(http.portal.ses.code_ttl), "a portal link's one-time code's life", NULL},
    {"portal-max-sessions", "portal", "max-sessions", OPT_COUNT, "N", 1, 10000000,
     OPT_AT(http.portal.ses.max), "portal sessions and unused links at once", NULL},
    {"portal-tenant-sessions", "portal", "tenant-sessions", OPT_COUNT, "N", 1, 10000000,
     OPT_AT(http.portal.ses.per_tenant), "of them, the most one tenant may hold", NULL},
    {"portal-frame-ancestors", "portal", "frame-ancestors", OPT_CSP, "SOURCES", 0, 0,
     OPT_AT(http.portal.frame_ancestors),
     "who may frame the page: CSP frame-ancestors sources, space-separated", NULL},
};

#define OPT_N ((int)(sizeof opt_table / sizeof opt_table[0]))

/* The sections, in the order --help and --check-config show them. */
static const struct {
    const char *name, *what;
} opt_sections[] = {
    {"server", "the binary listener, the data directory, connections and the writer"},
    {"http", "the HTTP listener (docs/http.md)"},
    {"replication", "verify-only replicas over NATS JetStream (docs/scale.md)"},
    {"portal", "the self-service page (docs/portal.md)"},
};

#define OPT_NSECTIONS ((int)(sizeof opt_sections / sizeof opt_sections[0]))

int opt_count(void)
{
    return OPT_N;
}

const char *opt_flag(int i)
{
    return i >= 0 && i < OPT_N ? opt_table[i].flag : NULL;
}

const char *opt_section(int i)
{
    return i >= 0 && i < OPT_N ? opt_table[i].section : NULL;
}

const char *opt_key(int i)
{
    return i >= 0 && i < OPT_N ? opt_table[i].key : NULL;
}

static int opt_by_flag(const char *flag)
{
    for (int i = 0; i < OPT_N; i++)
        if (strcmp(opt_table[i].flag, flag) == 0)
            return i;
    return -1;
}

static int opt_by_key(const char *section, const char *key)
{
    for (int i = 0; i < OPT_N; i++)
        if (strcmp(opt_table[i].section, section) == 0 && strcmp(opt_table[i].key, key) == 0)
            return i;
    return -1;
}

static bool opt_section_known(const char *section)
{
    for (int i = 0; i < OPT_NSECTIONS; i++)
        if (strcmp(opt_sections[i].name, section) == 0)
            return true;
    return false;
}

/* ---- the state ---------------------------------------------------------- */

enum { OPT_FROM_DEFAULT, OPT_FROM_FILE, OPT_FROM_FLAG };

struct opt_cfg {
    srv_opts o;
    char *str[OPT_N];  /* the strings o points to, when not a default (owned) */
    int from[OPT_N];   /* OPT_FROM_* */
    int line[OPT_N];   /* the file's line that set it, or 0 */
    char *file;        /* the file's name, once one is loaded (owned) */
};

void opt_new(opt_cfg **out)
{
    opt_cfg *c = xcalloc(1, sizeof *c);
    srv_opts_default(&c->o);
    *out = c;
}

void opt_free(opt_cfg *c)
{
    if (!c)
        return;
    for (int i = 0; i < OPT_N; i++)
        free(c->str[i]);
    free(c->file);
    free(c);
}

const srv_opts *opt_srv(const opt_cfg *c)
{
    return &c->o;
}

/* ---- values ------------------------------------------------------------- */

typedef union opt_val {
    unsigned long long u;
    double d;
    bool b;
} opt_val;

/* An integer with an optional K or M suffix, within [min, max]. */
static bool opt_parse_count(const char *s, unsigned long long min, unsigned long long max,
                            unsigned long long *out)
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
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static bool opt_parse_seconds(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < 0.001 || v > OPT_SECONDS_MAX)
        return false;
    *out = v;
    return true;
}

static bool opt_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* Checks s as a value of d into v. On refusal: TK_EINVAL, and why says
 * "<subject><sep><s>: <explanation>", the explanation being the same
 * whoever gave the value (subject: "--max-frame" with sep " ", or
 * "FILE:LINE: [server] max-frame" with sep " = "). */
static int opt_check(const opt_def *d, const char *s, opt_val *v, const char *subject,
                     const char *sep, tk_why *why)
{
    switch (d->kind) {
    case OPT_STR: {
        const char *const *words = opt_words(d);
        for (const char *const *c = words; c && *c; c++)
            if (strcmp(*c, s) == 0)
                return 0;
        return words ? tk_say(why, TK_EINVAL, "%s%s%s: expected %s or %s", subject, sep, s,
                              words[0], words[1])
                     : 0;
    }
    case OPT_COUNT:
    case OPT_BYTES:
        if (opt_parse_count(s, d->min, d->max, &v->u))
            return 0;
        return tk_say(why, TK_EINVAL, "%s%s%s: expected a number of bytes from %llu to %llu",
                      subject, sep, s, d->min, d->max);
    case OPT_SECONDS:
        if (opt_parse_seconds(s, &v->d))
            return 0;
        return tk_say(why, TK_EINVAL, "%s%s%s: expected seconds (from 0.001)", subject, sep, s);
    case OPT_BOOL:
        if (opt_parse_bool(s, &v->b))
            return 0;
        return tk_say(why, TK_EINVAL, "%s%s%s: expected true or false", subject, sep, s);
    case OPT_URL:
        if (ptl_url_ok(s))
            return 0;
        return tk_say(why, TK_EINVAL, "%s%s%s: expected http(s)://HOST[:PORT], nothing after it",
                      subject, sep, s);
    case OPT_CSP:
        if (!strpbrk(s, ";,\r\n") && strlen(s) <= OPT_CSP_MAX)
            return 0;
        return tk_say(why, TK_EINVAL,
                      "%s: CSP sources, space-separated ('self', 'none', "
                      "https://app.example.com), at most %d bytes",
                      subject, OPT_CSP_MAX);
    }
    return tk_say(why, TK_EINVAL, "%s: unknown option type", subject);
}

static void opt_put_uint(void *field, size_t size, unsigned long long u)
{
    if (size == sizeof(uint32_t)) {
        uint32_t x = (uint32_t)u;
        memcpy(field, &x, sizeof x);
    } else {
        uint64_t x = (uint64_t)u;
        memcpy(field, &x, sizeof x);
    }
}

static unsigned long long opt_get_uint(const void *field, size_t size)
{
    if (size == sizeof(uint32_t)) {
        uint32_t x;
        memcpy(&x, field, sizeof x);
        return x;
    }
    uint64_t x;
    memcpy(&x, field, sizeof x);
    return x;
}

/* Stores option i's checked value (s as given, v as checked) into c. */
static void opt_store(opt_cfg *c, int i, const char *s, const opt_val *v)
{
    const opt_def *d = &opt_table[i];
    char *field = (char *)&c->o + d->off;
    switch (d->kind) {
    case OPT_STR:
    case OPT_URL:
    case OPT_CSP: {
        char *copy = xstrdup(s);
        const char *p = copy;
        free(c->str[i]);
        c->str[i] = copy;
        memcpy(field, &p, sizeof p);
        break;
    }
    case OPT_COUNT:
    case OPT_BYTES: opt_put_uint(field, d->size, v->u); break;
    case OPT_SECONDS: memcpy(field, &v->d, sizeof v->d); break;
    case OPT_BOOL: memcpy(field, &v->b, sizeof v->b); break;
    }
}

/* A size with a K or M suffix when it is an exact multiple. */
static void opt_fmt_bytes(unsigned long long u, char *buf, size_t cap)
{
    if (u && u % (1u << 20) == 0)
        snprintf(buf, cap, "%lluM", u >> 20);
    else if (u && u % (1u << 10) == 0)
        snprintf(buf, cap, "%lluK", u >> 10);
    else
        snprintf(buf, cap, "%llu", u);
}

/* The shortest decimal, without an exponent, that reads back as d. */
static void opt_fmt_seconds(double d, char *buf, size_t cap)
{
    for (int prec = 0; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*f", prec, d);
        if (strtod(buf, NULL) == d)
            return;
    }
}

const char *opt_value(const opt_cfg *c, int i, char *buf, size_t cap)
{
    if (cap == 0)
        return buf;
    buf[0] = '\0';
    if (i < 0 || i >= OPT_N)
        return buf;
    const opt_def *d = &opt_table[i];
    const char *field = (const char *)&c->o + d->off;
    switch (d->kind) {
    case OPT_STR:
    case OPT_URL:
    case OPT_CSP: {
        const char *s;
        memcpy(&s, field, sizeof s);
        snprintf(buf, cap, "%s", s ? s : "");
        break;
    }
    case OPT_COUNT: snprintf(buf, cap, "%llu", opt_get_uint(field, d->size)); break;
    case OPT_BYTES: opt_fmt_bytes(opt_get_uint(field, d->size), buf, cap); break;
    case OPT_SECONDS: {
        double x;
        memcpy(&x, field, sizeof x);
        opt_fmt_seconds(x, buf, cap);
        break;
    }
    case OPT_BOOL: {
        bool b;
        memcpy(&b, field, sizeof b);
        snprintf(buf, cap, "%s", b ? "true" : "false");
        break;
    }
    }
    return buf;
}

/* ---- flags -------------------------------------------------------------- */

int opt_set_flag(opt_cfg *c, const char *flag, const char *value, tk_why *why)
{
    int i = opt_by_flag(flag);
    char subject[128];
    opt_val v;
    if (i < 0)
        return tk_say(why, TK_EINVAL, "unknown option --%s (see --help)", flag);
    if (!value && opt_table[i].kind != OPT_BOOL)
        return tk_say(why, TK_EINVAL, "--%s needs a value (see --help)", flag);
    snprintf(subject, sizeof subject, "--%s", flag);
    int rc = opt_check(&opt_table[i], value ? value : "true", &v, subject, " ", why);
    if (rc)
        return rc;
    opt_store(c, i, value ? value : "true", &v);
    c->from[i] = OPT_FROM_FLAG;
    return 0;
}

enum { OPT_META_CONFIG = 1, OPT_META_CHECK, OPT_META_HELP, OPT_META_FIRST = 256 };

int opt_parse_args(opt_cfg *c, int argc, char **argv, opt_action *act, tk_why *why)
{
    struct option longopts[OPT_N + 4];
    const char *config = NULL;
    bool check = false;
    int n = 0, ch;
    for (int i = 0; i < OPT_N; i++)
        longopts[n++] = (struct option){opt_table[i].flag,
                                        opt_table[i].kind == OPT_BOOL ? optional_argument
                                                                      : required_argument,
                                        NULL, OPT_META_FIRST + i};
    longopts[n++] = (struct option){"config", required_argument, NULL, OPT_META_CONFIG};
    longopts[n++] = (struct option){"check-config", no_argument, NULL, OPT_META_CHECK};
    longopts[n++] = (struct option){"help", no_argument, NULL, OPT_META_HELP};
    longopts[n] = (struct option){NULL, 0, NULL, 0};

    *act = OPT_RUN;
    optind = 0; /* GNU: start over, as for a new program */
    opterr = 0; /* the messages are ours, in why */
    while ((ch = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        int rc;
        switch (ch) {
        case OPT_META_CONFIG:
            if (config)
                return tk_say(why, TK_EINVAL, "--config given twice (%s, %s)", config, optarg);
            config = optarg;
            break;
        case OPT_META_CHECK: check = true; break;
        case OPT_META_HELP: *act = OPT_HELP; return 0;
        case ':':
            return tk_say(why, TK_EINVAL, "%s needs a value (see --help)", argv[optind - 1]);
        case '?':
            return tk_say(why, TK_EINVAL, "unknown option %s (see --help)", argv[optind - 1]);
        default:
            if (ch < OPT_META_FIRST || ch >= OPT_META_FIRST + OPT_N)
                return tk_say(why, TK_EINVAL, "unknown option (see --help)");
            rc = opt_set_flag(c, opt_table[ch - OPT_META_FIRST].flag, optarg, why);
            if (rc)
                return rc;
        }
    }
    if (optind < argc)
        return tk_say(why, TK_EINVAL, "unexpected argument %s (see --help)", argv[optind]);
    if (config) {
        int rc = opt_load_file(c, config, why);
        if (rc)
            return rc;
    }
    *act = check ? OPT_CHECK : OPT_RUN;
    return 0;
}

/* ---- the file ------------------------------------------------------------
 *
 * libinih calls opt_on_key for every "key = value", with its section. It
 * does not say on which line, does not call us for a section without keys,
 * and Debian's build takes its options from globals (opt_ini_setup). So
 * the lines reach it through our reader (opt_read), which numbers them (one
 * call, one line: the number inih reports on a syntax error is the same),
 * refuses what inih would cut (a line over OPT_LINE_MAX, a NUL byte), and
 * checks each section header's name where it stands, by letting inih
 * parse that one line followed by a probe key (opt_probe). A refusal is
 * kept in the reader's state and stops the parse: inih then stops too
 * (ini_stop_on_first_error), or our reader returns end of file.
 */

typedef struct opt_file {
    opt_cfg *c;
    const char *name; /* for messages */
    FILE *f;          /* the file, or NULL for a string */
    const char *text; /* the rest of the string */
    char *buf;        /* one line (getline's, owned) */
    size_t cap;
    int line;         /* lines handed to inih so far */
    int err;          /* the first refusal's code, or 0 */
    tk_why *why;
} opt_file;

/* Inih's options, set before each parse: tokend is their only user in the
 * process. Whole lines up to OPT_LINE_MAX (with "\r\n" and NUL), no
 * continuation lines (an indented key is a key, not a continuation of the
 * one above), a key needs '=' (or ':'), the first error stops. ';' and '#'
 * start a comment line; " ;" starts a comment after a value. */
static void opt_ini_setup(void)
{
    ini_use_stack = false;
    ini_allow_realloc = false;
    ini_initial_alloc = OPT_LINE_MAX + 3;
    ini_max_line = OPT_LINE_MAX + 3;
    ini_allow_multiline = false;
    ini_allow_no_value = false;
    ini_stop_on_first_error = true;
    ini_allow_bom = true;
    ini_allow_inline_comments = true;
}

static int opt_probe(void *user, const char *section, const char *name, const char *value)
{
    (void)name;
    (void)value;
    snprintf(user, OPT_LINE_MAX + 1, "%s", section);
    return 1;
}

/* When line (NUL-terminated, without its newline) is a section header,
 * checks that its section is one of ours. */
static int opt_check_header(opt_file *r, const char *line)
{
    const char *p = line;
    if (r->line == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    p += strspn(p, " \t\f\v");
    if (*p != '[')
        return 0;
    char *probe = xasprintf("%s\n_=\n", p);
    char *section = xcalloc(1, OPT_LINE_MAX + 1);
    int rc = 0;
    /* A malformed header fails here and is reported by the real parse. */
    if (ini_parse_string(probe, opt_probe, section) == 0 && !opt_section_known(section))
        rc = tk_say(r->why, TK_EINVAL,
                    "%s:%d: unknown section [%s] (the sections are [server], [http] and "
                    "[portal])",
                    r->name, r->line, section);
    free(probe);
    free(section);
    return rc;
}

static char *opt_read(char *str, int num, void *stream)
{
    opt_file *r = stream;
    size_t len;
    if (r->err)
        return NULL;
    if (r->f) {
        ssize_t got = getline(&r->buf, &r->cap, r->f);
        if (got < 0) {
            if (ferror(r->f))
                r->err = tk_say(r->why, TK_EIO, "%s: cannot read: %s", r->name, strerror(errno));
            return NULL;
        }
        len = (size_t)got;
    } else {
        if (!*r->text)
            return NULL;
        const char *nl = strchr(r->text, '\n');
        len = nl ? (size_t)(nl - r->text) + 1 : strlen(r->text);
        if (len + 1 > r->cap) {
            r->cap = len + 1;
            r->buf = xrealloc(r->buf, r->cap);
        }
        memcpy(r->buf, r->text, len);
        r->buf[len] = '\0';
        r->text += len;
    }
    r->line++;
    if (strlen(r->buf) != len) {
        r->err = tk_say(r->why, TK_EINVAL, "%s:%d: a NUL byte in the line", r->name, r->line);
        return NULL;
    }
    size_t content = len;
    while (content && (r->buf[content - 1] == '\n' || r->buf[content - 1] == '\r'))
        content--;
    if (content > OPT_LINE_MAX || len + 1 > (size_t)num) {
        r->err = tk_say(r->why, TK_EINVAL, "%s:%d: line longer than %d bytes", r->name, r->line,
                        OPT_LINE_MAX);
        return NULL;
    }
    char save = r->buf[content];
    r->buf[content] = '\0';
    r->err = opt_check_header(r, r->buf);
    r->buf[content] = save;
    if (r->err)
        return NULL;
    memcpy(str, r->buf, len + 1);
    return str;
}

static int opt_on_key(void *user, const char *section, const char *name, const char *value)
{
    opt_file *r = user;
    opt_cfg *c = r->c;
    char subject[OPT_LINE_MAX + 64];
    opt_val v;
    if (r->err)
        return 0;
    if (!*section) {
        r->err = tk_say(r->why, TK_EINVAL,
                        "%s:%d: key '%s' outside a section (put it under [server], [http] or "
                        "[portal])",
                        r->name, r->line, name);
        return 0;
    }
    int i = opt_by_key(section, name);
    if (i < 0) {
        r->err = tk_say(r->why, TK_EINVAL, "%s:%d: unknown key '%s' in [%s]", r->name, r->line,
                        name, section);
        return 0;
    }
    if (c->line[i]) {
        r->err = tk_say(r->why, TK_EINVAL, "%s:%d: duplicate key '%s' in [%s] (first at line %d)",
                        r->name, r->line, name, section, c->line[i]);
        return 0;
    }
    snprintf(subject, sizeof subject, "%s:%d: [%s] %s", r->name, r->line, section, name);
    r->err = opt_check(&opt_table[i], value, &v, subject, " = ", r->why);
    if (r->err)
        return 0;
    c->line[i] = r->line;
    if (c->from[i] != OPT_FROM_FLAG) { /* a flag wins over the file */
        opt_store(c, i, value, &v);
        c->from[i] = OPT_FROM_FILE;
    }
    return 1;
}

/* Parses the lines of r (a file or a string) into r->c. */
static int opt_load_stream(opt_file *r)
{
    if (r->c->file) {
        free(r->buf);
        return tk_say(r->why, TK_EINVAL, "%s: a configuration file is loaded already (%s)",
                      r->name, r->c->file);
    }
    r->c->file = xstrdup(r->name);
    opt_ini_setup();
    int rc = ini_parse_stream(opt_read, r, opt_on_key, r);
    free(r->buf);
    r->buf = NULL;
    if (r->err)
        return r->err;
    if (rc > 0)
        return tk_say(r->why, TK_EINVAL,
                      "%s:%d: expected KEY = VALUE, [SECTION], a comment (; or #) or an empty "
                      "line",
                      r->name, rc);
    if (rc < 0)
        return tk_say(r->why, TK_ENOMEM, "%s: out of memory", r->name);
    return 0;
}

int opt_load_file(opt_cfg *c, const char *path, tk_why *why)
{
    opt_file r = {.c = c, .name = path, .why = why};
    r.f = fopen(path, "r");
    if (!r.f)
        return tk_say(why, TK_EIO, "%s: cannot open the configuration file: %s", path,
                      strerror(errno));
    int rc = opt_load_stream(&r);
    fclose(r.f);
    return rc;
}

int opt_load_string(opt_cfg *c, const char *name, const char *text, tk_why *why)
{
    opt_file r = {.c = c, .name = name, .text = text, .why = why};
    return opt_load_stream(&r);
}

/* ---- --help and --check-config ------------------------------------------ */

#define OPT_HELP_COL 27
#define OPT_HELP_WIDTH 79

/* Prints left at the margin and text wrapped beside it, from OPT_HELP_COL. */
static void opt_wrap(FILE *f, const char *left, const char *text)
{
    int col = fprintf(f, "%s", left);
    if (col < OPT_HELP_COL - 1)
        col += fprintf(f, "%*s", OPT_HELP_COL - col, "");
    else
        col += fprintf(f, "  ");
    const char *p = text;
    bool first = true;
    while (*p) {
        size_t w = strcspn(p, " ");
        if (!first && col + 1 + (int)w > OPT_HELP_WIDTH) {
            col = fprintf(f, "\n%*s", OPT_HELP_COL, "") - 1;
            first = true;
        }
        col += fprintf(f, "%s%.*s", first ? "" : " ", (int)w, p);
        first = false;
        p += w;
        p += strspn(p, " ");
    }
    fputc('\n', f);
}

/* "(default 1M, from 1K to 1024M; [server] max-frame)" and the like. */
static void opt_doc_tail(const opt_def *d, const opt_cfg *defaults, int i, char *buf, size_t cap)
{
    char val[512], range[96] = "";
    opt_value(defaults, i, val, sizeof val);
    if (d->kind == OPT_BYTES) {
        char lo[32], hi[32];
        opt_fmt_bytes(d->min, lo, sizeof lo);
        opt_fmt_bytes(d->max, hi, sizeof hi);
        snprintf(range, sizeof range, ", from %s to %s", lo, hi);
    } else if (d->kind == OPT_COUNT) {
        snprintf(range, sizeof range, ", from %llu to %llu", d->min, d->max);
    } else if (d->kind == OPT_SECONDS) {
        snprintf(range, sizeof range, ", from 0.001");
    }
    if (d->kind == OPT_BOOL)
        snprintf(buf, cap, "(default %s; [%s] %s)", val, d->section, d->key);
    else if (!val[0] && d->unset)
        snprintf(buf, cap, "(default: %s; [%s] %s)", d->unset, d->section, d->key);
    else
        snprintf(buf, cap, "(default %s%s; [%s] %s)", val, range, d->section, d->key);
}

void opt_usage(FILE *f)
{
    opt_cfg *defaults;
    opt_new(&defaults);
    fprintf(f, "usage: tokend [options]\n"
               "\n"
               "The tokend server: the binary protocol (docs/protocol.md) over TCP, and HTTP\n"
               "(docs/http.md). A flag given here wins over the configuration file, which\n"
               "wins over the defaults below. Byte sizes and counts take K/M suffixes;\n"
               "seconds take fractions.\n"
               "\n");
    opt_wrap(f, "  --config FILE",
             "read the options from FILE, an INI file: [SECTION] KEY = VALUE, the sections "
             "and keys shown below (docs/server.md, \"Flags\"; docs/tokend.conf)");
    opt_wrap(f, "  --check-config",
             "check the file and the flags, print every option with its value and where it "
             "came from, exit 0 (2 with the reason when something is wrong); opens no data "
             "directory and no socket");
    opt_wrap(f, "  --help", "this text");
    for (int s = 0; s < OPT_NSECTIONS; s++) {
        fprintf(f, "\n[%s]: %s\n", opt_sections[s].name, opt_sections[s].what);
        for (int i = 0; i < OPT_N; i++) {
            const opt_def *d = &opt_table[i];
            char left[96], tail[640], *text;
            if (strcmp(d->section, opt_sections[s].name) != 0)
                continue;
            snprintf(left, sizeof left, "  --%s%s%s", d->flag, d->arg ? " " : "",
                     d->arg ? d->arg : "");
            opt_doc_tail(d, defaults, i, tail, sizeof tail);
            text = xasprintf("%s %s", d->help, tail);
            opt_wrap(f, left, text);
            free(text);
        }
    }
    fprintf(f, "\n"
               "Memory: the start log says how much the connections and the writer can hold\n"
               "with these flags (docs/server.md, \"The memory bound\").\n"
               "Logs go to stderr, one line per event; keys and secrets are never logged.\n"
               "SIGTERM or SIGINT: stop accepting, answer what was received, exit 0.\n");
    opt_free(defaults);
}

void opt_print(const opt_cfg *c, FILE *f)
{
    fprintf(f, "; tokend's effective configuration: every option, its value and where the\n"
               "; value came from (default, FILE:LINE, or a flag, which wins over the file)\n");
    for (int s = 0; s < OPT_NSECTIONS; s++) {
        fprintf(f, "\n[%s]\n", opt_sections[s].name);
        for (int i = 0; i < OPT_N; i++) {
            const opt_def *d = &opt_table[i];
            char val[OPT_LINE_MAX + 1], line[OPT_LINE_MAX + 128], from[OPT_LINE_MAX + 64];
            if (strcmp(d->section, opt_sections[s].name) != 0)
                continue;
            opt_value(c, i, val, sizeof val);
            /* An unset value cannot be written as one: the line is a comment. */
            snprintf(line, sizeof line, "%s%s = %s", val[0] || !d->unset ? "" : "; ", d->key,
                     val);
            if (c->from[i] == OPT_FROM_FLAG && c->line[i])
                snprintf(from, sizeof from, "flag --%s (over %s:%d)", d->flag, c->file,
                         c->line[i]);
            else if (c->from[i] == OPT_FROM_FLAG)
                snprintf(from, sizeof from, "flag --%s", d->flag);
            else if (c->from[i] == OPT_FROM_FILE)
                snprintf(from, sizeof from, "%s:%d", c->file, c->line[i]);
            else if (!val[0] && d->unset)
                snprintf(from, sizeof from, "default (unset: %s)", d->unset);
            else
                snprintf(from, sizeof from, "default");
            fprintf(f, "%-40s ; %s\n", line, from);
        }
    }
}
