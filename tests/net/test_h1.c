/*
 * test_h1.c - net/h1.c, the verify listener's HTTP/1.x: request heads read
 * strictly (docs/http.md, "The verify listener": what is taken, what is
 * refused with which status) and responses written into a byte buffer.
 *
 * Every refusal is a complete head that would parse (0) if the rule it
 * breaks were gone; each is paired with the same head made valid. Heads
 * are also cut at every offset (H1_PARTIAL until the last byte) and parsed
 * back to back from one buffer, as the listener reads pipelined requests.
 * tests/fuzz/fuzz_h1.c runs the parser on arbitrary bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "net/h1.h"

#define MAX_HEAD 8192

/* A string literal as bytes and length (it may hold NUL bytes). */
#define LIT(s) (const uint8_t *)(s), sizeof(s) - 1

static int parse(const char *s, size_t max_head, h1_req *r, const char **why)
{
    return h1_parse((const uint8_t *)s, strlen(s), max_head, r, why);
}

static void assert_span(const tk_str *t, const char *want)
{
    assert_non_null(t);
    if (t->n != strlen(want) || memcmp(t->p, want, t->n) != 0)
        fail_msg("\"%.*s\" where \"%s\" was expected", (int)t->n, t->p, want);
}

/* Parses s whole (0 expected) into *r. */
static void parse_ok(const char *s, h1_req *r)
{
    const char *why = NULL;
    int rc = parse(s, MAX_HEAD, r, &why);
    if (rc != 0)
        fail_msg("%d (%s) for \"%s\"", rc, why ? why : "?", s);
    assert_int_equal(r->head_len, strlen(s));
}

/* b[0..n) must be refused with status, and say why. */
static void refused(const uint8_t *b, size_t n, int status)
{
    h1_req r;
    const char *why = NULL;
    int rc = h1_parse(b, n, MAX_HEAD, &r, &why);
    if (rc != status)
        fail_msg("%d where %d was expected for \"%.*s\"", rc, status, (int)n, (const char *)b);
    assert_non_null(why);
    assert_true(strlen(why) > 0);
}

/* ---- valid requests ----------------------------------------------------- */

static void get_splits_path_and_query(void **state)
{
    (void)state;
    h1_req r;
    parse_ok("GET /v1/verify/a?permission=x:y&z HTTP/1.1\r\nHost: h\r\n\r\n", &r);
    assert_span(&r.method, "GET");
    assert_span(&r.path, "/v1/verify/a");
    assert_span(&r.query, "permission=x:y&z");
    assert_int_equal(r.minor, 1);
    assert_int_equal(r.nfields, 1);
    assert_span(&r.fields[0].name, "Host");
    assert_span(&r.fields[0].value, "h");

    parse_ok("GET /v1/verify HTTP/1.1\r\n\r\n", &r);
    assert_span(&r.path, "/v1/verify");
    assert_int_equal(r.query.n, 0);
    assert_int_equal(r.nfields, 0);

    parse_ok("GET /p? HTTP/1.1\r\n\r\n", &r); /* an empty query */
    assert_span(&r.path, "/p");
    assert_int_equal(r.query.n, 0);

    parse_ok("GET /a?b?c HTTP/1.1\r\n\r\n", &r); /* the first '?' splits */
    assert_span(&r.path, "/a");
    assert_span(&r.query, "b?c");

    parse_ok("GET / HTTP/1.1\r\n\r\n", &r);
    assert_span(&r.path, "/");
}

static void any_token_method_as_sent(void **state)
{
    (void)state;
    static const char *const methods[] = {"HEAD", "POST", "DELETE", "M-SEARCH", "get",
                                          "X!#$%&'*+-.^_`|~9z"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        char req[128];
        h1_req r;
        snprintf(req, sizeof req, "%s /x HTTP/1.1\r\n\r\n", methods[i]);
        parse_ok(req, &r);
        assert_span(&r.method, methods[i]);
        assert_span(&r.path, "/x");
    }
}

static void http_1_0_and_1_1(void **state)
{
    (void)state;
    h1_req r;
    parse_ok("GET / HTTP/1.0\r\n\r\n", &r);
    assert_int_equal(r.minor, 0);
    parse_ok("GET / HTTP/1.1\r\n\r\n", &r);
    assert_int_equal(r.minor, 1);
}

static void fields_found_case_insensitively(void **state)
{
    (void)state;
    h1_req r;
    parse_ok("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\nAccept: */*\r\nX-A: 3\r\n\r\n", &r);
    assert_int_equal(r.nfields, 5);
    assert_span(h1_find(&r, "host", 0), "h");
    assert_span(h1_find(&r, "HOST", 0), "h");
    assert_null(h1_find(&r, "Host", 1));
    assert_span(h1_find(&r, "x-A", 0), "1");
    assert_span(h1_find(&r, "X-a", 1), "2");
    assert_span(h1_find(&r, "X-A", 2), "3");
    assert_null(h1_find(&r, "X-A", 3));
    assert_ptr_equal(h1_find(&r, "x-a", 2), &r.fields[4].value);
    assert_null(h1_find(&r, "X-", 0)); /* a prefix is not the name */
    assert_null(h1_find(&r, "X-AB", 0));
    assert_null(h1_find(&r, "Missing", 0));
    assert_span(&r.fields[2].name, "x-a"); /* names as sent */
}

static void values_trimmed_of_blanks(void **state)
{
    (void)state;
    h1_req r;
    parse_ok("GET / HTTP/1.1\r\nA: \t  a  b \t \r\nB:v\r\nC:\t\"x\"\t\r\n"
             "D: tab\tinside\r\nE: caf\xc3\xa9\r\n\r\n",
             &r);
    assert_span(h1_find(&r, "A", 0), "a  b");
    assert_span(h1_find(&r, "B", 0), "v");
    assert_span(h1_find(&r, "C", 0), "\"x\"");
    assert_span(h1_find(&r, "D", 0), "tab\tinside"); /* a tab inside is kept */
    assert_span(h1_find(&r, "E", 0), "caf\xc3\xa9"); /* obs-text is a value byte */
}

static void empty_value(void **state)
{
    (void)state;
    h1_req r;
    parse_ok("GET / HTTP/1.1\r\nA:\r\nB:    \r\nC: \t\n\r\n", &r);
    assert_int_equal(r.nfields, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(r.fields[i].value.n, 0);
        /* still a slice of the input, right after the name's colon or blanks */
        assert_true(r.fields[i].value.p >= r.fields[i].name.p + r.fields[i].name.n);
    }
}

static void crlf_and_bare_lf_lines(void **state)
{
    (void)state;
    static const char *const reqs[] = {
        "GET /p?q HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n",
        "GET /p?q HTTP/1.1\nA: 1\nB: 2\n\n",
        "GET /p?q HTTP/1.1\r\nA: 1\nB: 2\r\n\n",
        "GET /p?q HTTP/1.1\nA: 1\r\nB: 2\n\r\n",
    };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        h1_req r;
        parse_ok(reqs[i], &r);
        assert_span(&r.path, "/p");
        assert_span(&r.query, "q");
        assert_int_equal(r.minor, 1);
        assert_int_equal(r.nfields, 2);
        assert_span(&r.fields[0].value, "1"); /* no CR left in a value */
        assert_span(&r.fields[1].value, "2");
    }
}

static void empty_lines_before_the_request_line_skipped(void **state)
{
    (void)state;
    h1_req r;
    parse_ok("\r\n\n\r\nGET /x HTTP/1.1\r\nA: 1\r\n\r\n", &r);
    assert_span(&r.method, "GET");
    assert_span(&r.path, "/x");
    assert_int_equal(r.nfields, 1);
}

static void head_len_exact_and_pipelined(void **state)
{
    (void)state;
    static const char first[] = "GET /a HTTP/1.1\r\nX: 1\r\n\r\n";
    static const char second[] = "POST /b?c HTTP/1.0\nContent-Length: 3\nConnection: keep-alive\n\n";
    static const char third[] = "\r\nHEAD /c HTTP/1.1\r\nConnection: close\r\n\r\n";
    char buf[512];
    int n = snprintf(buf, sizeof buf, "%s%sabc%sGET /partial HT", first, second, third);
    const uint8_t *b = (const uint8_t *)buf;
    size_t len = (size_t)n, at = 0;
    h1_req r;
    const char *why;

    assert_int_equal(h1_parse(b, len, MAX_HEAD, &r, &why), 0);
    assert_int_equal(r.head_len, strlen(first));
    assert_span(&r.path, "/a");
    assert_int_equal(r.body_len, 0);
    assert_true(r.keep_alive);
    at += r.head_len + r.body_len;

    assert_int_equal(h1_parse(b + at, len - at, MAX_HEAD, &r, &why), 0);
    assert_int_equal(r.head_len, strlen(second));
    assert_span(&r.method, "POST");
    assert_span(&r.path, "/b");
    assert_span(&r.query, "c");
    assert_int_equal(r.body_len, 3);
    assert_true(r.keep_alive);
    assert_int_equal(memcmp(b + at + r.head_len, "abc", 3), 0);
    at += r.head_len + r.body_len;

    assert_int_equal(h1_parse(b + at, len - at, MAX_HEAD, &r, &why), 0);
    assert_int_equal(r.head_len, strlen(third));
    assert_span(&r.method, "HEAD");
    assert_false(r.keep_alive);
    at += r.head_len + r.body_len;

    assert_int_equal(h1_parse(b + at, len - at, MAX_HEAD, &r, &why), H1_PARTIAL);
}

static void content_length_into_body_len(void **state)
{
    (void)state;
    h1_req r;
    parse_ok("POST / HTTP/1.1\r\nContent-Length: 42\r\n\r\n", &r);
    assert_int_equal(r.body_len, 42);
    parse_ok("POST / HTTP/1.1\r\ncontent-LENGTH:  7 \r\n\r\n", &r);
    assert_int_equal(r.body_len, 7);
    parse_ok("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &r);
    assert_int_equal(r.body_len, 0);
    parse_ok("POST / HTTP/1.1\r\nContent-Length: 007\r\n\r\n", &r);
    assert_int_equal(r.body_len, 7);
    parse_ok("POST / HTTP/1.1\r\nContent-Length: 999999999999999999\r\n\r\n", &r);
    assert_true(r.body_len == 999999999999999999ull);
    parse_ok("POST / HTTP/1.1\r\nHost: h\r\n\r\n", &r);
    assert_int_equal(r.body_len, 0);
}

static void two_equal_content_lengths_accepted(void **state)
{
    (void)state;
    h1_req r;
    parse_ok("POST / HTTP/1.1\r\nContent-Length: 5\r\nHost: h\r\ncontent-length: 05\r\n\r\n", &r);
    assert_int_equal(r.body_len, 5);
}

/* The field struct after the parsed ones is not read: a second parse of a
 * shorter request must not show the first one's values. */
static void a_second_parse_starts_clean(void **state)
{
    (void)state;
    h1_req r;
    parse_ok("POST /a?b HTTP/1.0\r\nContent-Length: 9\r\nConnection: keep-alive\r\nX: 1\r\n\r\n",
             &r);
    parse_ok("GET /c HTTP/1.1\r\n\r\n", &r);
    assert_int_equal(r.nfields, 0);
    assert_int_equal(r.body_len, 0);
    assert_int_equal(r.query.n, 0);
    assert_null(h1_find(&r, "X", 0));
}

/* ---- keep-alive ------------------------------------------------------------ */

static bool keep(const char *req)
{
    h1_req r;
    parse_ok(req, &r);
    return r.keep_alive;
}

static void keep_alive_matrix(void **state)
{
    (void)state;
    assert_true(keep("GET / HTTP/1.1\r\n\r\n"));
    assert_true(keep("GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"));
    assert_true(keep("GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n"));
    assert_true(keep("GET / HTTP/1.1\r\nConnection: closed\r\n\r\n")); /* a token, not a prefix */
    assert_false(keep("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
    assert_false(keep("GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n"));
    assert_false(keep("GET / HTTP/1.1\r\nConnection: close,keep-alive\r\n\r\n"));
    assert_false(keep("GET / HTTP/1.1\r\nConnection: CLOSE\r\n\r\n"));
    assert_false(keep("GET / HTTP/1.1\r\nConnection: foo ,  Close  \r\n\r\n"));
    assert_false(keep("GET / HTTP/1.1\r\nConnection: te\r\nconnection: close\r\n\r\n"));

    assert_false(keep("GET / HTTP/1.0\r\n\r\n"));
    assert_false(keep("GET / HTTP/1.0\r\nConnection: close\r\n\r\n"));
    assert_false(keep("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"));
    assert_true(keep("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    assert_true(keep("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    assert_true(keep("GET / HTTP/1.0\r\nConnection: foo, keep-alive\r\n\r\n"));
    assert_false(keep("GET / HTTP/1.0\r\nKeep-Alive: timeout=5\r\n\r\n")); /* not Connection */
}

/* ---- partial heads --------------------------------------------------------- */

static void every_prefix_is_partial(void **state)
{
    (void)state;
    static const char *const reqs[] = {
        "\r\n\nPOST /v1/verify?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n"
        "Connection: keep-alive, close\r\nX-Empty:\r\nX-Blank: \t \r\n\r\n",
        "GET / HTTP/1.0\nA: b\n\n",
        "GET / HTTP/1.1\r\n\r\n",
    };
    for (size_t k = 0; k < sizeof reqs / sizeof reqs[0]; k++) {
        const uint8_t *b = (const uint8_t *)reqs[k];
        size_t len = strlen(reqs[k]);
        h1_req r;
        const char *why;
        for (size_t cut = 0; cut < len; cut++) {
            int rc = h1_parse(b, cut, MAX_HEAD, &r, &why);
            if (rc != H1_PARTIAL)
                fail_msg("request %zu cut at %zu: %d (%s), not H1_PARTIAL", k, cut, rc, why);
            /* the same with the head's own length as the limit */
            rc = h1_parse(b, cut, len, &r, &why);
            if (rc != H1_PARTIAL)
                fail_msg("request %zu cut at %zu, max_head %zu: %d (%s)", k, cut, len, rc, why);
        }
        assert_int_equal(h1_parse(b, len, MAX_HEAD, &r, &why), 0);
        assert_int_equal(r.head_len, len);
        assert_int_equal(h1_parse(b, len, len, &r, &why), 0);
        assert_int_equal(r.head_len, len);
    }
}

/* ---- refusals -------------------------------------------------------------- */

static void valid_forms_of_the_refused_ones(void **state)
{
    (void)state;
    /* each refusal below differs from one of these by the one thing refused */
    h1_req r;
    parse_ok("GET / HTTP/1.1\r\nX: ab\r\n\r\n", &r);
    parse_ok("GET /x HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    parse_ok("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n", &r);
    parse_ok("GET / HTTP/1.1\r\nTE: trailers\r\nX-Transfer-Encoding: chunked\r\n\r\n", &r);
}

static void no_request_line_structure_400(void **state)
{
    (void)state;
    refused(LIT("GET\r\n\r\n"), 400);
    refused(LIT("GET /\r\n\r\n"), 400);
    refused(LIT("GET / \r\n\r\n"), 400);
    refused(LIT("GET  / HTTP/1.1\r\n\r\n"), 400);
    refused(LIT("GET /  HTTP/1.1\r\n\r\n"), 400);
    refused(LIT(" GET / HTTP/1.1\r\n\r\n"), 400);
    refused(LIT("GET\t/ HTTP/1.1\r\n\r\n"), 400);
    refused(LIT("GET /\tHTTP/1.1\r\n\r\n"), 400);
    refused(LIT("/ HTTP/1.1\r\n\r\n"), 400);
    refused(LIT(" / HTTP/1.1\r\n\r\n"), 400); /* an empty method */
    refused(LIT("GET / http/1.1\r\n\r\n"), 400); /* HTTP-name is case-sensitive */
    refused(LIT("GET / FTP/1.1\r\n\r\n"), 400);
    refused(LIT("GET /a b HTTP/1.1\r\n\r\n"), 400);
    refused(LIT("GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n"), 400); /* a target is visible ASCII */
}

static void target_not_a_path_400(void **state)
{
    (void)state;
    refused(LIT("GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
    refused(LIT("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
    refused(LIT("CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
    refused(LIT("GET ?a HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
    refused(LIT("GET x/ HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
}

static void control_byte_in_a_value_400(void **state)
{
    (void)state;
    refused(LIT("GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n"), 400);
    refused(LIT("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n"), 400);
    refused(LIT("GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n"), 400);
    refused(LIT("GET / HTTP/1.1\r\nX: \x1b[0m\r\n\r\n"), 400);
    refused(LIT("GET / HTTP/1.1\r\nX: a\x0b\r\n\r\n"), 400);
    refused(LIT("GET / HTTP/1.1\r\nX: \x7f\r\n\r\n"), 400);
}

static void folded_line_400(void **state)
{
    (void)state;
    static const char *const reqs[] = {
        "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n",
        "GET / HTTP/1.1\r\n X: a\r\n\r\n", /* the first field line */
        "GET / HTTP/1.1\r\nX: a\r\n \r\n\r\n",
    };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        h1_req r;
        const char *why = NULL;
        refused((const uint8_t *)reqs[i], strlen(reqs[i]), 400);
        /* *why says what: a fold, not just a bad name (the answer's message) */
        h1_parse((const uint8_t *)reqs[i], strlen(reqs[i]), MAX_HEAD, &r, &why);
        if (!strstr(why, "fold"))
            fail_msg("\"%s\" for a folded line", why);
    }
}

static void field_name_not_a_token_400(void **state)
{
    (void)state;
    refused(LIT("GET / HTTP/1.1\r\nHost : x\r\n\r\n"), 400);
    refused(LIT("GET / HTTP/1.1\r\nHost\t: x\r\n\r\n"), 400);
    refused(LIT("GET / HTTP/1.1\r\n: x\r\n\r\n"), 400);
    refused(LIT("GET / HTTP/1.1\r\nX Y: x\r\n\r\n"), 400);
    refused(LIT("GET / HTTP/1.1\r\nX(y): x\r\n\r\n"), 400);
    refused(LIT("GET / HTTP/1.1\r\nX\x01: x\r\n\r\n"), 400);
    refused(LIT("GET / HTTP/1.1\r\nno colon\r\n\r\n"), 400);
    refused(LIT("GET / HTTP/1.1\r\nnocolon\r\n\r\n"), 400);
}

static void bad_content_length_400(void **state)
{
    (void)state;
    refused(LIT("POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n"), 400);
    refused(LIT("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n"), 400);
    refused(LIT("POST / HTTP/1.1\r\nContent-Length:   \r\n\r\n"), 400);
    refused(LIT("POST / HTTP/1.1\r\nContent-Length: 3a\r\n\r\n"), 400);
    refused(LIT("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), 400);
    refused(LIT("POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n"), 400);
    refused(LIT("POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n"), 400);
    refused(LIT("POST / HTTP/1.1\r\nContent-Length: 3 4\r\n\r\n"), 400);
    refused(LIT("POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n"), 400);
    /* beyond 18 digits: refused, never overflowed */
    refused(LIT("POST / HTTP/1.1\r\nContent-Length: 1000000000000000000\r\n\r\n"), 400);
    refused(LIT("POST / HTTP/1.1\r\nContent-Length: 18446744073709551617\r\n\r\n"), 400);
}

static void disagreeing_content_lengths_400(void **state)
{
    (void)state;
    refused(LIT("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"), 400);
    refused(LIT("POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 0\r\n\r\n"), 400);
    refused(LIT("POST / HTTP/1.1\r\nContent-Length: 0\r\nX: y\r\nCONTENT-LENGTH: 1\r\n\r\n"), 400);
}

static void cr_not_before_lf_400(void **state)
{
    (void)state;
    refused(LIT("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"), 400);
    refused(LIT("GET / HTTP/1.1\r\nX: a\r\r\n\r\n"), 400);
    refused(LIT("GET / HTTP/1.1\r\r\n\r\n"), 400);
    refused(LIT("GET / HTTP/1.1\r\nX: a\r\n\r\r\n"), 400); /* the blank line */
    refused(LIT("\r\r\nGET / HTTP/1.1\r\n\r\n"), 400);
    refused(LIT("GET / HTTP/1.1\r\nX\r: a\r\n\r\n"), 400);
}

static void ctl_in_the_method_400(void **state)
{
    (void)state;
    refused(LIT("G\x01T / HTTP/1.1\r\n\r\n"), 400);
    refused(LIT("GE\x7f / HTTP/1.1\r\n\r\n"), 400);
    refused(LIT("\x00GET / HTTP/1.1\r\n\r\n"), 400);
    refused(LIT("GET\x00 / HTTP/1.1\r\n\r\n"), 400);
    refused(LIT("G(T / HTTP/1.1\r\n\r\n"), 400); /* a delimiter is not a token byte */
}

static void head_over_max_head_while_partial_431(void **state)
{
    (void)state;
    char buf[256];
    h1_req r;
    const char *why;
    /* a head without its blank line, 64 bytes: 431 at max_head 64 */
    memset(buf, 'a', sizeof buf);
    memcpy(buf, "GET / HTTP/1.1\r\nX: ", 19);
    const uint8_t *b = (const uint8_t *)buf;
    assert_int_equal(h1_parse(b, 63, 64, &r, &why), H1_PARTIAL);
    assert_int_equal(h1_parse(b, 64, 64, &r, &why), 431);
    assert_true(strlen(why) > 0);
    assert_int_equal(h1_parse(b, 200, 64, &r, &why), 431);
    /* a request line without its end */
    memset(buf, 'a', sizeof buf);
    memcpy(buf, "GET /", 5);
    assert_int_equal(h1_parse(b, 99, 100, &r, &why), H1_PARTIAL);
    assert_int_equal(h1_parse(b, 100, 100, &r, &why), 431);
    assert_true(strlen(why) > 0);
    /* nothing but empty lines */
    for (size_t i = 0; i < sizeof buf; i += 2)
        memcpy(buf + i, "\r\n", 2);
    assert_int_equal(h1_parse(b, 62, 64, &r, &why), H1_PARTIAL);
    assert_int_equal(h1_parse(b, 64, 64, &r, &why), 431);
}

static void complete_head_over_max_head_431(void **state)
{
    (void)state;
    static const char req[] = "GET /a/long/path?q=1 HTTP/1.1\r\nHost: example\r\nX: y\r\n\r\n";
    const uint8_t *b = (const uint8_t *)req;
    size_t len = strlen(req);
    h1_req r;
    const char *why;
    assert_int_equal(h1_parse(b, len, len, &r, &why), 0);
    assert_int_equal(h1_parse(b, len, len - 1, &r, &why), 431); /* by the blank line */
    assert_true(strlen(why) > 0);
    assert_int_equal(h1_parse(b, len, 40, &r, &why), 431); /* by a field line */
    assert_int_equal(h1_parse(b, len, 20, &r, &why), 431); /* by the request line */
    /* empty lines before the request line count */
    static const char lead[] = "\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    len = strlen(lead);
    b = (const uint8_t *)lead;
    assert_int_equal(h1_parse(b, len, len, &r, &why), 0);
    assert_int_equal(h1_parse(b, len, len - 1, &r, &why), 431);
}

static void more_than_max_fields_431(void **state)
{
    (void)state;
    size_t cap = 64 + (H1_MAX_FIELDS + 1) * 16;
    char *buf = malloc(cap);
    assert_non_null(buf);
    h1_req r;
    const char *why;
    for (int extra = 0; extra <= 1; extra++) {
        size_t n = (size_t)snprintf(buf, cap, "GET / HTTP/1.1\r\n");
        for (int i = 0; i < H1_MAX_FIELDS + extra; i++)
            n += (size_t)snprintf(buf + n, cap - n, "X-%d: %d\r\n", i, i);
        n += (size_t)snprintf(buf + n, cap - n, "\r\n");
        int rc = h1_parse((const uint8_t *)buf, n, MAX_HEAD, &r, &why);
        if (extra == 0) {
            assert_int_equal(rc, 0);
            assert_int_equal(r.nfields, H1_MAX_FIELDS);
            assert_span(h1_find(&r, "x-99", 0), "99");
        } else {
            assert_int_equal(rc, 431);
            assert_true(strlen(why) > 0);
        }
    }
    free(buf);
}

static void transfer_encoding_501(void **state)
{
    (void)state;
    refused(LIT("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), 501);
    refused(LIT("POST / HTTP/1.1\r\ntransfer-encoding: identity\r\n\r\n"), 501);
    refused(LIT("POST / HTTP/1.1\r\nTRANSFER-ENCODING: gzip, chunked\r\n\r\n"), 501);
    refused(LIT("POST / HTTP/1.0\r\nContent-Length: 3\r\nTransfer-Encoding:\r\n\r\n"), 501);
}

static void other_versions_505(void **state)
{
    (void)state;
    refused(LIT("GET / HTTP/2.0\r\n\r\n"), 505);
    refused(LIT("GET / HTTP/1.2\r\n\r\n"), 505);
    refused(LIT("GET / HTTP/1.9\r\n\r\n"), 505);
    refused(LIT("GET / HTTP/3\r\n\r\n"), 505);
    refused(LIT("GET / HTTP/0.9\r\n\r\n"), 505);
    /* Not a version at all (HTTP-version is "HTTP/" DIGIT "." DIGIT): 400. */
    refused(LIT("GET / HTTP/1.10\r\n\r\n"), 400);
    refused(LIT("GET / HTTP/1.1 \r\n\r\n"), 400);
    refused(LIT("GET / HTTP/1.1x\r\n\r\n"), 400);
    refused(LIT("GET / HTTP/\r\n\r\n"), 400);
}

/* A CR followed by anything but LF is refused as soon as it is seen, not
 * once the head reaches its limit. */
static void stray_cr_refused_early(void **state)
{
    (void)state;
    refused(LIT("GET / HTTP/1.1\rX: y"), 400);
    refused(LIT("GET / HTTP/1.1\r\nX: a\rb"), 400);
}

/* ---- responses ------------------------------------------------------------- */

/* o's bytes as a string (a copy, freed by the caller). */
static char *text(const h1_out *o)
{
    char *s = malloc(o->n + 1);
    assert_non_null(s);
    memcpy(s, o->p, o->n);
    s[o->n] = 0;
    return s;
}

static void status_lines(void **state)
{
    (void)state;
    static const struct {
        int code;
        const char *line;
    } want[] = {
        {200, "HTTP/1.1 200 OK\r\n"},
        {401, "HTTP/1.1 401 Unauthorized\r\n"},
        {403, "HTTP/1.1 403 Forbidden\r\n"},
        {404, "HTTP/1.1 404 Not Found\r\n"},
        {431, "HTTP/1.1 431 Request Header Fields Too Large\r\n"},
        {503, "HTTP/1.1 503 Service Unavailable\r\n"},
        {400, "HTTP/1.1 400 Bad Request\r\n"},
        {501, "HTTP/1.1 501 Not Implemented\r\n"},
        {505, "HTTP/1.1 505 HTTP Version Not Supported\r\n"},
        {299, "HTTP/1.1 299 Unknown\r\n"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        h1_out o = {0};
        h1_status(&o, want[i].code);
        char *s = text(&o);
        assert_string_equal(s, want[i].line);
        free(s);
        h1_out_free(&o);
        assert_null(o.p);
        assert_int_equal(o.n, 0);
    }
}

static void field_put_format(void **state)
{
    (void)state;
    h1_out o = {0};
    h1_field_put(&o, "X-Tokend-Tenant", "acme", 4);
    h1_field_put(&o, "X-Empty", "", 0);
    h1_field_put(&o, "X-Part", "abcdef", 3); /* n bytes of value, no more */
    char *s = text(&o);
    assert_string_equal(s, "X-Tokend-Tenant: acme\r\nX-Empty: \r\nX-Part: abc\r\n");
    free(s);
    h1_out_free(&o);
}

/* The head written by h1_head_end, without its Date line (checked and
 * removed here: the first line, IMF-fixdate, within seconds of now). */
static char *head_end(size_t body_len, const char *type, bool keep_alive, int minor)
{
    h1_out o = {0};
    time_t before = time(NULL);
    h1_head_end(&o, body_len, type, keep_alive, minor);
    time_t after = time(NULL);
    char *s = text(&o);
    h1_out_free(&o);

    /* "Date: Tue, 01 Dec 2026 21:27:48 GMT\r\n" */
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    const char *shape = "Date: www, 00 mmm 0000 00:00:00 GMT\r\n";
    if (strlen(s) < strlen(shape))
        fail_msg("no Date line: \"%s\"", s);
    for (size_t i = 0; shape[i]; i++) {
        bool ok = shape[i] == '0'   ? s[i] >= '0' && s[i] <= '9'
                  : shape[i] == 'w' ? true
                  : shape[i] == 'm' ? true
                                    : s[i] == shape[i];
        if (!ok)
            fail_msg("Date line \"%.37s\" is not IMF-fixdate (byte %zu)", s, i);
    }
    int wday = -1, mon = -1;
    for (int i = 0; i < 7; i++)
        if (memcmp(s + 6, days[i], 3) == 0)
            wday = i;
    for (int i = 0; i < 12; i++)
        if (memcmp(s + 14, months[i], 3) == 0)
            mon = i;
    assert_true(wday >= 0 && mon >= 0);
    struct tm tm = {0};
    tm.tm_mday = atoi(s + 11);
    tm.tm_mon = mon;
    tm.tm_year = atoi(s + 18) - 1900;
    tm.tm_hour = atoi(s + 23);
    tm.tm_min = atoi(s + 26);
    tm.tm_sec = atoi(s + 29);
    time_t t = timegm(&tm);
    assert_true(t >= before - 1 && t <= after);
    struct tm check;
    gmtime_r(&t, &check);
    assert_int_equal(check.tm_wday, wday); /* the day name is that date's */

    size_t dl = strlen(shape);
    memmove(s, s + dl, strlen(s + dl) + 1);
    return s;
}

static void head_end_fields(void **state)
{
    (void)state;
    char *s;
    /* no body: Content-Length 0, no Content-Type, 1.1 keep-alive says nothing */
    s = head_end(0, "application/json", true, 1);
    assert_string_equal(s, "Content-Length: 0\r\n\r\n");
    free(s);
    s = head_end(17, "application/json", true, 1);
    assert_string_equal(s, "Content-Length: 17\r\nContent-Type: application/json\r\n\r\n");
    free(s);
    s = head_end(17, NULL, true, 1); /* the caller wrote its own */
    assert_string_equal(s, "Content-Length: 17\r\n\r\n");
    free(s);
    s = head_end(5, "text/plain", false, 1);
    assert_string_equal(s, "Content-Length: 5\r\nContent-Type: text/plain\r\n"
                           "Connection: close\r\n\r\n");
    free(s);
    s = head_end(0, NULL, false, 0);
    assert_string_equal(s, "Content-Length: 0\r\nConnection: close\r\n\r\n");
    free(s);
    s = head_end(0, NULL, true, 0); /* a 1.0 client that asked for keep-alive */
    assert_string_equal(s, "Content-Length: 0\r\nConnection: keep-alive\r\n\r\n");
    free(s);
    s = head_end(123456789, "application/json", true, 0);
    assert_string_equal(s, "Content-Length: 123456789\r\nContent-Type: application/json\r\n"
                           "Connection: keep-alive\r\n\r\n");
    free(s);
}

static void a_whole_response(void **state)
{
    (void)state;
    h1_out o = {0};
    h1_status(&o, 404);
    h1_field_put(&o, "X-A", "b", 1);
    h1_head_end(&o, 2, "application/json", false, 1);
    h1_puts(&o, "{}");
    char *s = text(&o);
    assert_int_equal(strncmp(s, "HTTP/1.1 404 Not Found\r\nX-A: b\r\nDate: ", 38), 0);
    const char *end = strstr(s, "\r\n\r\n");
    assert_non_null(end);
    assert_string_equal(end, "\r\n\r\n{}"); /* one blank line: the head's end */
    assert_non_null(strstr(s, "\r\nContent-Length: 2\r\n"));
    assert_non_null(strstr(s, "\r\nConnection: close\r\n"));
    free(s);
    h1_out_free(&o);
}

static void growth_keeps_the_bytes(void **state)
{
    (void)state;
    h1_out o = {0};
    size_t want = 0, k = 0;
    uint8_t chunk[1500];
    while (want < 70 * 1024) { /* past 64 KiB, in uneven pieces */
        size_t n = 1 + (k * 37) % sizeof chunk;
        for (size_t i = 0; i < n; i++)
            chunk[i] = (uint8_t)((want + i) * 131 + 7);
        h1_put(&o, (const char *)chunk, n);
        want += n;
        k++;
        assert_int_equal(o.n, want);
        assert_true(o.cap >= o.n);
    }
    h1_puts(&o, "end");
    assert_int_equal(o.n, want + 3);
    for (size_t i = 0; i < want; i++)
        if ((uint8_t)o.p[i] != (uint8_t)(i * 131 + 7))
            fail_msg("byte %zu changed after growth", i);
    assert_int_equal(memcmp(o.p + want, "end", 3), 0);
    h1_put(&o, "", 0);
    assert_int_equal(o.n, want + 3);
    h1_out_free(&o);
    assert_null(o.p);
    assert_int_equal(o.cap, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(get_splits_path_and_query),
        cmocka_unit_test(any_token_method_as_sent),
        cmocka_unit_test(http_1_0_and_1_1),
        cmocka_unit_test(fields_found_case_insensitively),
        cmocka_unit_test(values_trimmed_of_blanks),
        cmocka_unit_test(empty_value),
        cmocka_unit_test(crlf_and_bare_lf_lines),
        cmocka_unit_test(empty_lines_before_the_request_line_skipped),
        cmocka_unit_test(head_len_exact_and_pipelined),
        cmocka_unit_test(content_length_into_body_len),
        cmocka_unit_test(two_equal_content_lengths_accepted),
        cmocka_unit_test(a_second_parse_starts_clean),
        cmocka_unit_test(keep_alive_matrix),
        cmocka_unit_test(every_prefix_is_partial),
        cmocka_unit_test(valid_forms_of_the_refused_ones),
        cmocka_unit_test(no_request_line_structure_400),
        cmocka_unit_test(target_not_a_path_400),
        cmocka_unit_test(control_byte_in_a_value_400),
        cmocka_unit_test(folded_line_400),
        cmocka_unit_test(field_name_not_a_token_400),
        cmocka_unit_test(bad_content_length_400),
        cmocka_unit_test(disagreeing_content_lengths_400),
        cmocka_unit_test(cr_not_before_lf_400),
        cmocka_unit_test(ctl_in_the_method_400),
        cmocka_unit_test(head_over_max_head_while_partial_431),
        cmocka_unit_test(complete_head_over_max_head_431),
        cmocka_unit_test(more_than_max_fields_431),
        cmocka_unit_test(transfer_encoding_501),
        cmocka_unit_test(other_versions_505),
        cmocka_unit_test(stray_cr_refused_early),
        cmocka_unit_test(status_lines),
        cmocka_unit_test(field_put_format),
        cmocka_unit_test(head_end_fields),
        cmocka_unit_test(a_whole_response),
        cmocka_unit_test(growth_keeps_the_bytes),
    };
    return cmocka_run_group_tests_name("h1", tests, NULL, NULL);
}
