/* http.c - HTTP/1.1 response parser and the gateway verification driver; see http.h. */
#include "bench/tokenbench/http.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/xmalloc.h"

/* ---- the parser ------------------------------------------------------------ */

static bool is_tchar(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A byte of a reason phrase or a field value: HTAB, SP, VCHAR, obs-text. */
static bool is_text(uint8_t c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool is_ows(uint8_t c)
{
    return c == ' ' || c == '\t';
}

/* s[0..n) equals the NUL-terminated want, ignoring ASCII case. */
static bool ieq(const uint8_t *s, size_t n, const char *want)
{
    return strlen(want) == n && strncasecmp((const char *)s, want, n) == 0;
}

/* The comma-separated list v[0..n) holds token tok (ignoring case). */
static bool has_token(const uint8_t *v, size_t n, const char *tok)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (is_ows(v[i]) || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && is_ows(v[e - 1]))
            e--;
        if (e > s && ieq(v + s, e - s, tok))
            return true;
    }
    return false;
}

/* The length of the line at s (up to its CR), which must end in CRLF
 * within n bytes and hold only text; -1 otherwise. */
static long text_line(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n && is_text(s[i]))
        i++;
    if (i + 1 >= n || s[i] != '\r' || s[i + 1] != '\n')
        return -1;
    return (long)i;
}

/* One header line "name: value" of line[0..n) (n without the CRLF) into
 * name and value (blanks around the value trimmed); 0 or -1. */
static int header_split(const uint8_t *line, size_t n, const uint8_t **name, size_t *nlen,
                        const uint8_t **val, size_t *vlen)
{
    size_t i = 0;
    while (i < n && is_tchar(line[i]))
        i++;
    if (i == 0 || i == n || line[i] != ':') /* empty name, obs-fold, blank before ':' */
        return -1;
    *name = line;
    *nlen = i;
    size_t s = i + 1, e = n;
    while (s < e && is_ows(line[s]))
        s++;
    while (e > s && is_ows(line[e - 1]))
        e--;
    *val = line + s;
    *vlen = e - s;
    return 0;
}

/* Content-Length's value: 1 to 10 digits (HTP_BODY_MAX is far below);
 * -1 when not digits, -2 when too large. */
static long long content_length(const uint8_t *v, size_t n)
{
    long long x = 0;
    if (n == 0 || n > 10)
        return n > 10 ? -2 : -1;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        x = x * 10 + (v[i] - '0');
    }
    return x > (long long)HTP_BODY_MAX ? -2 : x;
}

long htp_parse(const uint8_t *in, size_t len, htp_resp *r)
{
    static const char version[] = "HTTP/1.";
    size_t vn = sizeof version - 1;
    if (memcmp(in, version, len < vn ? len : vn) != 0)
        return HTP_EBAD; /* refused at once, not after HTP_HEAD_MAX bytes of garbage */
    size_t lim = len < HTP_HEAD_MAX ? len : HTP_HEAD_MAX;
    const uint8_t *blank = lim >= 4 ? memmem(in, lim, "\r\n\r\n", 4) : NULL;
    if (!blank) {
        /* A bare LF would keep the blank line from ever being found: say
         * so now (this runs only for a head still incomplete). */
        for (const uint8_t *lf = memchr(in, '\n', lim); lf;
             lf = memchr(lf + 1, '\n', lim - (size_t)(lf + 1 - in)))
            if (lf == in || lf[-1] != '\r')
                return HTP_EBAD;
        return len >= HTP_HEAD_MAX ? HTP_ETOOBIG : 0;
    }
    size_t head_end = (size_t)(blank - in) + 2; /* just past the last line's CRLF */
    size_t body_at = head_end + 2;

    memset(r, 0, sizeof *r);
    /* The status line: HTTP/1.x SP 3DIGIT [SP reason] CRLF. The reason
     * is optional (some servers send none, and nothing reads it). */
    long sl = text_line(in, head_end);
    if (sl < 12 || in[7] < '0' || in[7] > '9' || in[8] != ' ' || in[9] < '1' || in[9] > '5'
        || in[10] < '0' || in[10] > '9' || in[11] < '0' || in[11] > '9'
        || (sl > 12 && in[12] != ' '))
        return HTP_EBAD;
    r->minor = in[7] - '0';
    r->status = (in[9] - '0') * 100 + (in[10] - '0') * 10 + (in[11] - '0');
    r->head = in + sl + 2;
    r->head_len = head_end - ((size_t)sl + 2);

    long long clen = -1;
    bool te = false, close = false, keep = false;
    for (size_t at = (size_t)sl + 2; at < head_end;) {
        long n = text_line(in + at, head_end - at);
        const uint8_t *name, *val;
        size_t nlen, vlen;
        if (n <= 0 || header_split(in + at, (size_t)n, &name, &nlen, &val, &vlen) != 0)
            return HTP_EBAD;
        if (ieq(name, nlen, "Content-Length")) {
            long long v = content_length(val, vlen);
            if (v == -2)
                return HTP_ETOOBIG;
            if (v < 0 || (clen >= 0 && v != clen)) /* two that differ: which one frames? */
                return HTP_EBAD;
            clen = v;
        } else if (ieq(name, nlen, "Transfer-Encoding")) {
            te = true;
        } else if (ieq(name, nlen, "Connection")) {
            close |= has_token(val, vlen, "close");
            keep |= has_token(val, vlen, "keep-alive");
        }
        at += (size_t)n + 2;
    }
    if (r->status < 200)
        return HTP_EINTERIM;
    if (te)
        return HTP_ECHUNKED;
    r->close = close || (r->minor == 0 && !keep);
    r->body = in + body_at;
    if (r->status == 204 || r->status == 304)
        return (long)body_at; /* never a body, whatever a Content-Length says (RFC 9112 6.3) */
    if (clen < 0)
        return HTP_EUNTIL;
    if (len - body_at < (size_t)clen)
        return 0;
    r->body_len = (size_t)clen;
    return (long)(body_at + (size_t)clen);
}

const char *htp_strerror(long code)
{
    switch (code) {
    case HTP_EBAD: return "a response that is not HTTP/1.x with CRLF lines (or a bad header)";
    case HTP_ECHUNKED:
        return "Transfer-Encoding (chunked) in a response: not supported, tokenbench needs "
               "Content-Length";
    case HTP_EUNTIL:
        return "a response without Content-Length whose body runs until the server closes: "
               "not keep-alive";
    case HTP_ETOOBIG: return "a response head over 16 KiB or a Content-Length over 64 KiB";
    case HTP_EINTERIM: return "an interim 1xx response (tokenbench sends no Expect or Upgrade)";
    default: return "no error";
    }
}

/* The next header line of r at *off: its name and value; false at the end. */
static bool next_header(const htp_resp *r, size_t *off, const uint8_t **name, size_t *nlen,
                        const uint8_t **val, size_t *vlen)
{
    if (*off >= r->head_len)
        return false;
    long n = text_line(r->head + *off, r->head_len - *off);
    if (n <= 0 || header_split(r->head + *off, (size_t)n, name, nlen, val, vlen) != 0)
        return false; /* not from htp_parse */
    *off += (size_t)n + 2;
    return true;
}

bool htp_header(const htp_resp *r, const char *name, const uint8_t **val, size_t *len)
{
    const uint8_t *n, *v;
    size_t nl, vl, off = 0;
    while (next_header(r, &off, &n, &nl, &v, &vl))
        if (ieq(n, nl, name)) {
            *val = v;
            *len = vl;
            return true;
        }
    return false;
}

int htp_url(const char *url, char addr[HTP_HOST_MAX], char host[HTP_HOST_MAX],
            char path[HTP_PATH_MAX])
{
    if (strncasecmp(url, "http://", 7) != 0)
        return -1;
    const char *a = url + 7, *slash = strchr(a, '/');
    size_t an = slash ? (size_t)(slash - a) : strlen(a);
    const char *p = slash ? slash : "/";
    if (an == 0 || an >= HTP_HOST_MAX - 4 || strlen(p) >= HTP_PATH_MAX)
        return -1;
    for (size_t i = 0; i < an; i++)
        if ((!is_tchar((uint8_t)a[i]) && !strchr(":[]", a[i])) || a[i] == '#')
            return -1; /* no userinfo, blanks or fragment */
    for (const char *q = p; *q; q++)
        if ((uint8_t)*q <= ' ' || *q == 0x7f || *q == '#')
            return -1;
    memcpy(host, a, an);
    host[an] = '\0';
    /* The port follows the last ':' outside an IPv6 literal's brackets. */
    const char *close = memchr(a, ']', an);
    if (a[0] == '[' && !close)
        return -1;
    const char *from = close ? close + 1 : a;
    const char *colon = memchr(from, ':', an - (size_t)(from - a));
    if (close && from != a + an && !colon)
        return -1; /* "[::1]x" */
    if (colon) {
        size_t pn = an - (size_t)(colon + 1 - a);
        long port = 0;
        if (pn == 0 || pn > 5 || colon == a)
            return -1;
        for (size_t i = 0; i < pn; i++) {
            if (colon[1 + i] < '0' || colon[1 + i] > '9')
                return -1;
            port = port * 10 + (colon[1 + i] - '0');
        }
        if (port < 1 || port > 65535)
            return -1;
        snprintf(addr, HTP_HOST_MAX, "%s", host);
    } else {
        snprintf(addr, HTP_HOST_MAX, "%s:80", host);
    }
    snprintf(path, HTP_PATH_MAX, "%s", p);
    return 0;
}

/* ---- the driver ------------------------------------------------------------ */

int htp_init(htp_ctx *x, const work_tokens *t, const char *url, bool tokend, int expect)
{
    char host[HTP_HOST_MAX], path[HTP_PATH_MAX];
    memset(x, 0, sizeof *x);
    x->t = t;
    x->tokend = tokend;
    x->expect = expect;
    if (htp_url(url, x->addr, host, path) != 0) {
        fprintf(stderr, "tokenbench: bad URL '%s' (want http://HOST[:PORT][/PATH])\n", url);
        return -1;
    }
    if (expect != 0 && (expect < 200 || expect > 599)) {
        fprintf(stderr, "tokenbench: --expect-status wants 200..599\n");
        return -1;
    }
    for (const char *p = t->roles; *p;) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n > TK_KEY_MAX || x->nroles == TK_MAX_ROLES) {
            fprintf(stderr, "tokenbench: bad roles '%s' in the tokens file\n", t->roles);
            return -1;
        }
        memcpy(x->roles[x->nroles], p, n);
        x->roles[x->nroles++][n] = '\0';
        p += n + (p[n] == ',');
    }
    int n = snprintf(x->req, sizeof x->req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer ", path, host);
    if (n < 0 || (size_t)n + TK_SECRET_LEN + 4 > GEN_REQ_MAX) {
        fprintf(stderr, "tokenbench: the URL makes a request over %d bytes\n", GEN_REQ_MAX);
        return -1;
    }
    x->req_len = (size_t)n;
    return 0;
}

typedef struct htp_local {
    htp_ctx *x;
    uint64_t counts[HTP_STATUS_N];
} htp_local;

static void *drv_local_new(void *ctx)
{
    htp_local *l = xcalloc(1, sizeof *l);
    l->x = ctx;
    return l;
}

/* Called once per thread after the threads are joined: no race on x. */
static void drv_local_free(void *local)
{
    htp_local *l = local;
    for (size_t i = 0; i < HTP_STATUS_N; i++)
        l->x->counts[i] += l->counts[i];
    free(l);
}

static size_t drv_encode(void *local, uint32_t item, uint32_t id, uint8_t *out)
{
    const htp_ctx *x = ((const htp_local *)local)->x;
    (void)id;
    memcpy(out, x->req, x->req_len);
    memcpy(out + x->req_len, x->t->secret[item], TK_SECRET_LEN);
    memcpy(out + x->req_len + TK_SECRET_LEN, "\r\n\r\n", 4);
    return x->req_len + TK_SECRET_LEN + 4;
}

static bool bytes_are(const uint8_t *v, size_t n, const char *want)
{
    return strlen(want) == n && memcmp(v, want, n) == 0;
}

/* The comma-separated roles v[0..n) are exactly x's (as a set). */
static bool same_roles(const htp_ctx *x, const uint8_t *v, size_t n)
{
    uint32_t seen = 0;
    for (size_t i = 0; i <= n;) {
        size_t e = i;
        while (e < n && v[e] != ',')
            e++;
        bool found = false;
        for (uint32_t k = 0; k < x->nroles && !found; k++)
            found = bytes_are(v + i, e - i, x->roles[k]);
        if (!found)
            return false;
        seen++;
        i = e + 1;
    }
    return seen == x->nroles;
}

/* Whether r is the right answer for item; when not, why into why. */
static bool check(const htp_ctx *x, uint32_t item, const htp_resp *r, char *why, size_t cap)
{
    if (r->close) {
        snprintf(why, cap, "status %d with the connection closing (not keep-alive)", r->status);
        return false;
    }
    if (!x->tokend) {
        if (x->expect ? r->status == x->expect : r->status / 100 == 2)
            return true;
        snprintf(why, cap, "status %d (want %d)", r->status, x->expect ? x->expect : 200);
        return false;
    }
    const uint8_t *v;
    size_t vl;
    if (item >= x->t->n) {
        if (r->status == 401)
            return true;
        snprintf(why, cap, "status %d for an unknown secret (want 401)", r->status);
        return false;
    }
    if (r->status != 200) {
        bool has = htp_header(r, "X-Tokend-Reason", &v, &vl);
        snprintf(why, cap, "status %d for a known token (want 200; X-Tokend-Reason: %.*s)",
                 r->status, has ? (int)(vl < 64 ? vl : 64) : 1, has ? (const char *)v : "-");
        return false;
    }
    if (r->body_len != 0) {
        snprintf(why, cap, "a 200 with a body of %zu bytes (want none)", r->body_len);
        return false;
    }
    /* One pass over the headers: each identity field present once, and right. */
    static const char *const names[] = {"X-Tokend-Client-Id", "X-Tokend-Tenant",
                                        "X-Tokend-Account", "X-Tokend-Roles"};
    const uint8_t *n;
    size_t nl, off = 0;
    unsigned good = 0, seen = 0, twice = 0;
    while (next_header(r, &off, &n, &nl, &v, &vl)) {
        unsigned f = 0;
        while (f < 4 && !ieq(n, nl, names[f]))
            f++;
        if (f == 4)
            continue;
        bool ok = f == 0   ? bytes_are(v, vl, x->t->client_id[item])
                  : f == 1 ? bytes_are(v, vl, x->t->tenant)
                  : f == 2 ? bytes_are(v, vl, x->t->account)
                           : same_roles(x, v, vl);
        twice |= seen & (1u << f);
        seen |= 1u << f;
        if (ok)
            good |= 1u << f;
    }
    if (good == 15 && !twice)
        return true;
    unsigned b = 0;
    while (b < 3 && (good & (1u << b)) && !(twice & (1u << b)))
        b++;
    snprintf(why, cap, "a 200 whose %s is %s", names[b],
             twice & (1u << b)  ? "there twice"
             : seen & (1u << b) ? "not the token's"
                                : "missing");
    return false;
}

static long drv_parse(void *local, const uint8_t *in, size_t len, uint32_t item, uint32_t id,
                      bool *ok)
{
    htp_local *l = local;
    htp_ctx *x = l->x;
    htp_resp r;
    char why[200];
    (void)id;
    long k = htp_parse(in, len, &r);
    if (k < 0) {
        if (!(atomic_fetch_or(&x->said, 2) & 2))
            fprintf(stderr, "tokenbench: http: %s\n", htp_strerror(k));
        return -1;
    }
    if (k == 0)
        return 0;
    l->counts[r.status - HTP_STATUS_MIN]++;
    *ok = check(x, item, &r, why, sizeof why);
    if (!*ok && !(atomic_fetch_or(&x->said, 1) & 1))
        fprintf(stderr, "tokenbench: http: first wrong answer: %s\n", why);
    return k;
}

void htp_driver(htp_ctx *x, gen_driver *d)
{
    memset(d, 0, sizeof *d);
    d->ctx = x;
    d->local_new = drv_local_new;
    d->local_free = drv_local_free;
    d->encode = drv_encode;
    d->parse = drv_parse;
}
