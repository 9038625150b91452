/*
 * fuzz_h1.c - the verify listener's HTTP/1.x request heads (net/h1.h) over
 * arbitrary bytes, then a response written with the same module.
 *
 * Input: the bytes a client sends on one connection. h1_parse reads them
 * with no limit (the reference), then with max_head 64, 8192 and the
 * input's length; a complete head is parsed again alone and cut short, and
 * the requests after it (at head_len + body_len, as the listener skips a
 * body) are parsed in turn, up to 8.
 *
 * Checked beyond memory safety: the result is 0, H1_PARTIAL, 400, 431, 501
 * or 505; a refusal says why in printable ASCII (it is the answer's
 * message); max_head only ever turns a result into 431 (exactly when the
 * head, or the bytes in, reach past it), and a limit above the input's
 * length changes nothing; an accepted head ends with its LF within len and
 * max_head, every slice (method, path, query, names, values) lies in the
 * head, the method and names are tokens, the path starts with '/' and
 * holds no '?', values are trimmed and free of control bytes, minor is 0
 * or 1, there is no Transfer-Encoding, body_len is the Content-Length,
 * h1_find finds each field at its rank; the head alone parses the same, a
 * proper prefix of it is H1_PARTIAL. A response written for it has its
 * status line, Content-Length and Connection as h1_head_end says, and is
 * freed (LeakSanitizer at exit).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "net/h1.h"
#include "tests/fuzz/fuzz.h"

static bool tchar(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool named(const tk_str *s, const char *name)
{
    return s->n == strlen(name) && strncasecmp(s->p, name, s->n) == 0;
}

static bool within(const tk_str *s, const uint8_t *b, size_t len)
{
    const char *lo = (const char *)b;
    return s->p >= lo && s->n <= len && s->p <= lo + len - s->n;
}

static bool same_slice(const tk_str *a, const tk_str *b)
{
    return a->p == b->p && a->n == b->n;
}

static bool same_req(const h1_req *a, const h1_req *b)
{
    if (!same_slice(&a->method, &b->method) || !same_slice(&a->path, &b->path)
        || !same_slice(&a->query, &b->query) || a->minor != b->minor
        || a->head_len != b->head_len || a->body_len != b->body_len
        || a->keep_alive != b->keep_alive || a->nfields != b->nfields)
        return false;
    for (size_t i = 0; i < a->nfields; i++)
        if (!same_slice(&a->fields[i].name, &b->fields[i].name)
            || !same_slice(&a->fields[i].value, &b->fields[i].value))
            return false;
    return true;
}

static void check_rc(int rc, const char *why)
{
    FZ_CHECK(rc == 0 || rc == H1_PARTIAL || rc == 400 || rc == 431 || rc == 501 || rc == 505,
             "0, H1_PARTIAL, 400, 431, 501 or 505");
    if (rc == 0 || rc == H1_PARTIAL)
        return;
    FZ_CHECK(why != NULL && why[0] != 0, "a refusal says why");
    for (const char *p = why; *p; p++)
        FZ_CHECK(*p >= 0x20 && *p < 0x7f, "why is printable ASCII");
}

/* What an accepted head must be, b[0..len) read with max_head. */
static void check_req(const uint8_t *b, size_t len, size_t max_head, const h1_req *r)
{
    size_t h = r->head_len;
    FZ_CHECK(h > 0 && h <= len && h <= max_head, "head_len within the bytes and max_head");
    FZ_CHECK(b[h - 1] == '\n', "the head ends with its blank line's LF");
    FZ_CHECK(r->nfields <= H1_MAX_FIELDS, "at most H1_MAX_FIELDS fields");
    FZ_CHECK(r->minor == 0 || r->minor == 1, "HTTP/1.0 or 1.1");

    FZ_CHECK(within(&r->method, b, h) && r->method.n > 0, "the method is in the head");
    for (size_t i = 0; i < r->method.n; i++)
        FZ_CHECK(tchar((uint8_t)r->method.p[i]), "the method is a token");
    FZ_CHECK(within(&r->path, b, h) && r->path.n > 0 && r->path.p[0] == '/',
             "the path is in the head and starts with '/'");
    for (size_t i = 0; i < r->path.n; i++)
        FZ_CHECK(r->path.p[i] > 0x20 && r->path.p[i] < 0x7f && r->path.p[i] != '?',
                 "the path is visible ASCII up to '?'");
    FZ_CHECK(within(&r->query, b, h), "the query is in the head");
    for (size_t i = 0; i < r->query.n; i++)
        FZ_CHECK(r->query.p[i] > 0x20 && r->query.p[i] < 0x7f, "the query is visible ASCII");
    if (r->query.n > 0)
        FZ_CHECK(r->query.p == r->path.p + r->path.n + 1 && r->query.p[-1] == '?',
                 "the query follows the path's '?'");

    const tk_str *cl = NULL, *conn = NULL;
    for (size_t k = 0; k < r->nfields; k++) {
        const h1_field *f = &r->fields[k];
        FZ_CHECK(within(&f->name, b, h) && within(&f->value, b, h), "a field is in the head");
        FZ_CHECK(f->name.n > 0, "a field has a name");
        for (size_t i = 0; i < f->name.n; i++)
            FZ_CHECK(tchar((uint8_t)f->name.p[i]), "a field name is a token");
        for (size_t i = 0; i < f->value.n; i++) {
            uint8_t c = (uint8_t)f->value.p[i];
            FZ_CHECK(c == '\t' || (c >= 0x20 && c != 0x7f), "no control byte in a value");
        }
        if (f->value.n > 0) {
            char first = f->value.p[0], last = f->value.p[f->value.n - 1];
            FZ_CHECK(first != ' ' && first != '\t' && last != ' ' && last != '\t',
                     "a value is trimmed");
        }
        FZ_CHECK(!named(&f->name, "Transfer-Encoding"), "Transfer-Encoding is refused");
        if (named(&f->name, "Content-Length") && !cl)
            cl = &f->value;
        if (named(&f->name, "Connection") && !conn)
            conn = &f->value;

        /* h1_find gives this field at its rank among the same name */
        char name[256];
        if (f->name.n < sizeof name) {
            memcpy(name, f->name.p, f->name.n);
            name[f->name.n] = 0;
            size_t rank = 0;
            for (size_t j = 0; j < k; j++)
                rank += named(&r->fields[j].name, name);
            FZ_CHECK(h1_find(r, name, rank) == &f->value, "h1_find finds the field at its rank");
        }
    }
    FZ_CHECK(h1_find(r, "Content-Length", 0) == cl, "h1_find finds the first Content-Length");
    if (cl) {
        uint64_t n = 0;
        FZ_CHECK(cl->n > 0, "a Content-Length has digits");
        for (size_t i = 0; i < cl->n; i++) {
            FZ_CHECK(cl->p[i] >= '0' && cl->p[i] <= '9', "a Content-Length is digits");
            n = n * 10 + (uint64_t)(cl->p[i] - '0');
        }
        FZ_CHECK(n == r->body_len, "body_len is the Content-Length");
    } else {
        FZ_CHECK(r->body_len == 0, "body_len 0 without a Content-Length");
    }
    if (!conn)
        FZ_CHECK(r->keep_alive == (r->minor == 1), "keep-alive by default in 1.1 only");
}

/* A response to r (status 0), or to a refusal or a partial head, written,
 * checked and freed. */
static void respond(int status, const h1_req *r, const uint8_t *b, size_t len)
{
    h1_out o = {0};
    bool keep = status == 0 && r->keep_alive;
    int minor = status == 0 ? r->minor : 1;
    int code = status == 0 ? (len % 2 ? 200 : 401) : status == H1_PARTIAL ? 408 : status;
    size_t body = len % 97 < len ? len % 97 : len; /* some of the input, as the body */
    h1_status(&o, code);
    if (status == 0)
        h1_field_put(&o, "X-Path", r->path.p, r->path.n);
    h1_head_end(&o, body, "application/json", keep, minor);
    h1_put(&o, (const char *)b, body);

    char want[64];
    int n = snprintf(want, sizeof want, "HTTP/1.1 %03d %s\r\n", code, h1_reason(code));
    FZ_CHECK(o.n > (size_t)n && memcmp(o.p, want, (size_t)n) == 0, "the status line first");
    const char *end = memmem(o.p, o.n, "\r\n\r\n", 4);
    FZ_CHECK(end && (size_t)(end + 4 - o.p) + body == o.n,
             "the head ends with the first blank line, the body after it");
    size_t head = (size_t)(end + 2 - o.p);
    n = snprintf(want, sizeof want, "\r\nContent-Length: %zu\r\n", body);
    FZ_CHECK(memmem(o.p, head, want, (size_t)n) != NULL, "a Content-Length");
    FZ_CHECK(memmem(o.p, head, "\r\nDate: ", 8) != NULL, "a Date");
    FZ_CHECK((memmem(o.p, head, "\r\nContent-Type: application/json\r\n", 34) != NULL)
                 == (body > 0),
             "a Content-Type with a body only");
    bool says_close = memmem(o.p, head, "\r\nConnection: close\r\n", 21) != NULL;
    FZ_CHECK(says_close == !keep, "Connection: close exactly when the connection ends");
    h1_out_free(&o);
}

/* One request at the front of b[0..len): every limit, then the head alone
 * and cut short. Returns the reference result (no limit) in *r. */
static int one(const uint8_t *b, size_t len, h1_req *r)
{
    static h1_req m;
    const char *why;
    int ref = h1_parse(b, len, SIZE_MAX, r, &why);
    check_rc(ref, why);
    FZ_CHECK(ref != 431 || r->nfields == H1_MAX_FIELDS, "431 without a limit: too many fields");
    if (ref == 0)
        check_req(b, len, SIZE_MAX, r);

    const size_t limits[] = {64, 8192, len, len + 1, len ? len - 1 : 0};
    for (size_t k = 0; k < sizeof limits / sizeof limits[0]; k++) {
        size_t max = limits[k];
        int rc = h1_parse(b, len, max, &m, &why);
        check_rc(rc, why);
        if (rc == H1_PARTIAL)
            FZ_CHECK(len < max, "H1_PARTIAL only while under max_head");
        if (max > len)
            FZ_CHECK(rc == ref, "a limit above the bytes in changes nothing");
        if (ref == 0)
            FZ_CHECK(rc == (r->head_len <= max ? 0 : 431), "a whole head: 0 within max_head, else 431");
        else if (ref == H1_PARTIAL)
            FZ_CHECK(rc == (len < max ? H1_PARTIAL : 431), "a partial head: 431 once at max_head");
        else
            FZ_CHECK(rc == ref || rc == 431, "a limit only turns a refusal into 431");
        if (rc == 0) {
            check_req(b, len, max, &m);
            FZ_CHECK(same_req(&m, r), "the limit does not change what is read");
        }
    }
    if (ref != 0)
        return ref;

    size_t h = r->head_len;
    int rc = h1_parse(b, h, h, &m, &why);
    FZ_CHECK(rc == 0 && same_req(&m, r), "the head alone parses the same");
    size_t cuts[] = {h - 1, h / 2, (size_t)b[0] % h};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        rc = h1_parse(b, cuts[k], h, &m, &why);
        FZ_CHECK(rc == H1_PARTIAL, "a proper prefix of a head is H1_PARTIAL");
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static h1_req r;
    size_t at = 0;
    int rc = one(data, size, &r);
    respond(rc, &r, data, size);
    /* pipelined requests: the next at head_len + body_len */
    for (int k = 0; k < 8 && rc == 0; k++) {
        if (r.body_len > size - at - r.head_len)
            break;
        at += r.head_len + (size_t)r.body_len;
        rc = one(data + at, size - at, &r);
    }
    return 0;
}
