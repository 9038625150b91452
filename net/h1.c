/*
 * h1.c - HTTP/1.x request heads and responses; see h1.h.
 *
 * Lines end with CRLF or a bare LF (as evhttp, the main listener, takes
 * them); a CR anywhere else is refused. Empty lines before the request
 * line are skipped (RFC 9112, 2.2). Content-Length must be digits only;
 * two of them must agree. Connection is a comma-separated list of tokens.
 */
#include "net/h1.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/xmalloc.h"

#define CL_DIGITS_MAX 18 /* a Content-Length beyond 10^18 is refused, not overflowed */

/* RFC 9110 tchar: the bytes of a token (methods, field names). */
static bool is_tchar(uint8_t c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A field value's bytes: VCHAR, obs-text, space and tab. */
static bool is_vbyte(uint8_t c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* The end of the line starting at b[i]: *eol at its LF, *next after it.
 * 0, H1_PARTIAL (no LF yet) or 400 (a CR not before the LF). */
static int line_end(const uint8_t *b, size_t len, size_t i, size_t *eol, size_t *next)
{
    const uint8_t *lf = memchr(b + i, '\n', len - i);
    if (!lf) { /* a CR already followed by something else is no line end */
        const uint8_t *cr = memchr(b + i, '\r', len - i);
        *eol = *next = len;
        return cr && cr + 1 < b + len ? 400 : H1_PARTIAL;
    }
    size_t e = (size_t)(lf - b);
    *next = e + 1;
    if (e > i && b[e - 1] == '\r')
        e--;
    if (memchr(b + i, '\r', e - i))
        return 400;
    *eol = e;
    return 0;
}

static bool span_is(const tk_str *s, const char *word)
{
    size_t n = strlen(word);
    return s->n == n && strncasecmp(s->p, word, n) == 0;
}

/* Connection's tokens: close, keep-alive (others are ignored). */
static void connection_tokens(const tk_str *v, bool *close, bool *keep)
{
    size_t i = 0;
    while (i < v->n) {
        while (i < v->n && (v->p[i] == ' ' || v->p[i] == '\t' || v->p[i] == ','))
            i++;
        size_t s = i;
        while (i < v->n && v->p[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v->p[e - 1] == ' ' || v->p[e - 1] == '\t'))
            e--;
        tk_str t = {v->p + s, e - s};
        if (span_is(&t, "close"))
            *close = true;
        else if (span_is(&t, "keep-alive"))
            *keep = true;
    }
}

static int content_length(const tk_str *v, uint64_t *out, const char **why)
{
    uint64_t n = 0;
    if (v->n == 0 || v->n > CL_DIGITS_MAX) {
        *why = "a Content-Length that is not a number of bytes";
        return 400;
    }
    for (size_t i = 0; i < v->n; i++) {
        if (v->p[i] < '0' || v->p[i] > '9') {
            *why = "a Content-Length that is not a number of bytes";
            return 400;
        }
        n = n * 10 + (uint64_t)(v->p[i] - '0');
    }
    *out = n;
    return 0;
}

/* The request line: method SP request-target SP HTTP-version. */
static int request_line(const uint8_t *b, size_t s, size_t e, h1_req *r, const char **why)
{
    size_t i = s;
    while (i < e && is_tchar(b[i]))
        i++;
    if (i == s || i >= e || b[i] != ' ') {
        *why = "a request line that is not METHOD SP PATH SP HTTP/1.x";
        return 400;
    }
    r->method = (tk_str){(const char *)b + s, i - s};
    size_t t = ++i;
    while (i < e && b[i] > 0x20 && b[i] < 0x7f)
        i++;
    if (i == t || i >= e || b[i] != ' ') {
        *why = "a request line that is not METHOD SP PATH SP HTTP/1.x";
        return 400;
    }
    if (b[t] != '/') {
        *why = "a request-target that is not a path (origin form)";
        return 400;
    }
    const uint8_t *q = memchr(b + t, '?', i - t);
    size_t pe = q ? (size_t)(q - b) : i;
    r->path = (tk_str){(const char *)b + t, pe - t};
    r->query = q ? (tk_str){(const char *)q + 1, i - pe - 1} : (tk_str){(const char *)b + i, 0};
    i++;
    /* HTTP-version: "HTTP/" DIGIT "." DIGIT; "HTTP/2" and "HTTP/3" are
     * versions too, just not ones spoken here. */
    const uint8_t *v = b + i;
    size_t vn = e - i;
    bool digits = vn == 8 && memcmp(v, "HTTP/", 5) == 0 && v[5] >= '0' && v[5] <= '9'
                  && v[6] == '.' && v[7] >= '0' && v[7] <= '9';
    bool major = vn == 6 && memcmp(v, "HTTP/", 5) == 0 && v[5] >= '0' && v[5] <= '9';
    if (!digits && !major) {
        *why = "a request line that is not METHOD SP PATH SP HTTP/1.x";
        return 400;
    }
    if (!digits || v[5] != '1' || (v[7] != '0' && v[7] != '1')) {
        *why = "only HTTP/1.0 and HTTP/1.1 are spoken here";
        return 505;
    }
    r->minor = v[7] - '0';
    return 0;
}

/* One field line b[s..e): name ":" OWS value OWS. */
static int field_line(const uint8_t *b, size_t s, size_t e, h1_field *f, const char **why)
{
    size_t i = s;
    if (b[s] == ' ' || b[s] == '\t') {
        *why = "a folded header line (obs-fold)";
        return 400;
    }
    while (i < e && is_tchar(b[i]))
        i++;
    if (i == s || i >= e || b[i] != ':') {
        *why = "a header line that is not NAME: VALUE";
        return 400;
    }
    f->name = (tk_str){(const char *)b + s, i - s};
    i++;
    while (i < e && (b[i] == ' ' || b[i] == '\t'))
        i++;
    size_t v = i;
    for (; i < e; i++)
        if (!is_vbyte(b[i])) {
            *why = "a control byte in a header value";
            return 400;
        }
    while (e > v && (b[e - 1] == ' ' || b[e - 1] == '\t'))
        e--;
    f->value = (tk_str){(const char *)b + v, e - v};
    return 0;
}

/* The head's length must stay within max_head: else 431 once that many
 * bytes are in, or H1_PARTIAL while fewer are. */
static int partial_or_431(size_t len, size_t max_head, const char **why)
{
    if (len < max_head)
        return H1_PARTIAL;
    *why = "request line and headers over the listener's --http-max-headers";
    return 431;
}

int h1_parse(const uint8_t *b, size_t len, size_t max_head, h1_req *r, const char **why)
{
    size_t i = 0, eol, next;
    int rc;
    *why = "";
    memset(r, 0, offsetof(h1_req, fields));
    for (;;) { /* empty lines before the request line */
        if ((rc = line_end(b, len, i, &eol, &next)) == H1_PARTIAL)
            return partial_or_431(len, max_head, why);
        if (rc) {
            *why = "a CR that does not end a line";
            return rc;
        }
        if (eol > i)
            break;
        i = next;
    }
    if (next > max_head)
        return partial_or_431(next, max_head, why);
    if ((rc = request_line(b, i, eol, r, why)))
        return rc;
    bool close = false, keep = false, has_cl = false;
    for (i = next;;) {
        if ((rc = line_end(b, len, i, &eol, &next)) == H1_PARTIAL)
            return partial_or_431(len, max_head, why);
        if (next > max_head)
            return partial_or_431(next, max_head, why);
        if (rc) {
            *why = "a CR that does not end a line";
            return rc;
        }
        if (eol == i)
            break; /* the blank line */
        if (r->nfields == H1_MAX_FIELDS) {
            *why = "more than 100 header fields";
            return 431;
        }
        h1_field *f = &r->fields[r->nfields];
        if ((rc = field_line(b, i, eol, f, why)))
            return rc;
        r->nfields++;
        if (span_is(&f->name, "Transfer-Encoding")) {
            *why = "Transfer-Encoding: this listener takes no chunked body";
            return 501;
        }
        if (span_is(&f->name, "Content-Length")) {
            uint64_t n;
            if ((rc = content_length(&f->value, &n, why)))
                return rc;
            if (has_cl && n != r->body_len) {
                *why = "two Content-Length fields that disagree";
                return 400;
            }
            r->body_len = n;
            has_cl = true;
        } else if (span_is(&f->name, "Connection")) {
            connection_tokens(&f->value, &close, &keep);
        }
        i = next;
    }
    r->head_len = next;
    r->keep_alive = r->minor == 1 ? !close : keep && !close;
    return 0;
}

const tk_str *h1_find(const h1_req *r, const char *name, size_t i)
{
    for (size_t k = 0; k < r->nfields; k++)
        if (span_is(&r->fields[k].name, name) && i-- == 0)
            return &r->fields[k].value;
    return NULL;
}

/* ---- responses ------------------------------------------------------------ */

void h1_put(h1_out *o, const char *s, size_t n)
{
    if (o->n + n > o->cap) {
        size_t cap = o->cap ? o->cap : 512;
        while (cap < o->n + n)
            cap *= 2;
        o->p = xrealloc(o->p, cap);
        o->cap = cap;
    }
    memcpy(o->p + o->n, s, n);
    o->n += n;
}

void h1_puts(h1_out *o, const char *s)
{
    h1_put(o, s, strlen(s));
}

const char *h1_reason(int code)
{
    switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* The decimal digits of v, without printf (it was a tenth of a verify
 * answer's user time). */
static void put_uint(h1_out *o, uint64_t v)
{
    char d[20];
    size_t n = 0;
    do
        d[sizeof d - ++n] = (char)('0' + v % 10);
    while ((v /= 10) && n < sizeof d);
    h1_put(o, d + sizeof d - n, n);
}

void h1_status(h1_out *o, int code)
{
    h1_put(o, "HTTP/1.1 ", 9);
    put_uint(o, (uint64_t)code);
    h1_put(o, " ", 1);
    h1_puts(o, h1_reason(code));
    h1_put(o, "\r\n", 2);
}

void h1_field_put(h1_out *o, const char *name, const char *value, size_t n)
{
    h1_puts(o, name);
    h1_put(o, ": ", 2);
    h1_put(o, value, n);
    h1_put(o, "\r\n", 2);
}

/* "Date: ...\r\n", formatted once a second. Only the loop thread writes
 * responses, so the cache needs no lock. */
static const char *date_line(size_t *n)
{
    static time_t last = -1;
    static char line[64];
    static size_t len;
    time_t now = time(NULL);
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        len = strftime(line, sizeof line, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        last = now;
    }
    *n = len;
    return line;
}

void h1_head_end(h1_out *o, size_t body_len, const char *content_type, bool keep_alive,
                 int minor)
{
    size_t dn;
    const char *d = date_line(&dn);
    h1_put(o, d, dn);
    h1_put(o, "Content-Length: ", 16);
    put_uint(o, body_len);
    h1_put(o, "\r\n", 2);
    if (body_len > 0 && content_type)
        h1_field_put(o, "Content-Type", content_type, strlen(content_type));
    if (!keep_alive)
        h1_puts(o, "Connection: close\r\n");
    else if (minor == 0)
        h1_puts(o, "Connection: keep-alive\r\n");
    h1_put(o, "\r\n", 2);
}

void h1_out_free(h1_out *o)
{
    free(o->p);
    o->p = NULL;
    o->n = o->cap = 0;
}
