/*
 * vhttp.c - the verify listener's requests; see vhttp.h.
 *
 * A response is written whole into the caller's buffer: status line, the
 * answer's fields (net/gateway.h), Date, Content-Length, Connection when it
 * closes, then the body (none for HEAD). Error bodies are the JSON of the
 * main listener's errors: {"error": code, "message": why}.
 */
#include "net/vhttp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/err.h"
#include "core/xmalloc.h"
#include "net/gateway.h"
#include "net/log.h"
#include "net/proto.h"

#define ERR_BODY_MAX 320

struct vh {
    eng *e;
    met *m;
    gw_key gw;
    vh_opts o;
    lg_sampler sample;
    h1_out lists;             /* an answer's joined roles and permissions */
};

void vh_new(eng *e, met *m, const char *gateway_key, const vh_opts *o, vh **out)
{
    vh *v = xcalloc(1, sizeof *v);
    v->e = e;
    v->m = m;
    v->o = *o;
    v->sample.every = o->log_requests;
    gw_key_init(&v->gw, gateway_key);
    *out = v;
}

void vh_free(vh *v)
{
    if (!v)
        return;
    h1_out_free(&v->lists);
    free(v);
}

/* gw_in over a parsed request's fields. */
static const char *req_field(const void *arg, const char *name, size_t i, size_t *n)
{
    const tk_str *f = h1_find(arg, name, i);
    if (!f)
        return NULL;
    *n = f->n;
    return f->p;
}

static void add_field(void *arg, const char *name, const char *value, size_t n)
{
    h1_field_put(arg, name, value, n);
}

static void error_body(h1_out *out, int code, int rc, const char *msg, bool keep, int minor,
                       bool head)
{
    char body[ERR_BODY_MAX];
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\",\"message\":\"%s\"}\n",
                     tk_errcode(rc), msg);
    if (n < 0 || (size_t)n >= sizeof body)
        n = snprintf(body, sizeof body, "{\"error\":\"%s\"}\n", tk_errcode(rc));
    h1_status(out, code);
    h1_head_end(out, (size_t)n, "application/json", keep, minor);
    if (!head)
        h1_put(out, body, (size_t)n);
}

size_t vh_reply_max(void)
{
    /* The lists, comma-joined, and everything else of a head with room. */
    return (size_t)TK_MAX_ROLES * (TK_KEY_MAX + 1) + (size_t)TK_MAX_TENANT_PERMS * (TK_KEY_MAX + 1)
           + 2 * TK_SLUG_MAX + 1024;
}

void vh_busy(h1_out *out, const char *why)
{
    error_body(out, 503, TK_EBUSY, why, false, 1, false);
}

static bool is_verify_path(const tk_str *p)
{
    return p->n >= 10 && memcmp(p->p, "/v1/verify", 10) == 0 && (p->n == 10 || p->p[10] == '/');
}

/* A request counted: code OP_VERIFY, or 0 for one that is not a verification. */
static void count(vh *v, uint16_t code, int rc)
{
    if (v->m)
        met_request(v->m, MET_VERIFY_HTTP, code, rc);
}

/* The verification of r, its response into out. */
static void verify(vh *v, const h1_req *r, const char *peer, bool keep, bool head, h1_out *out)
{
    uint64_t t0 = v->m ? met_now_ns() : 0;
    gw_in in = {req_field, r};
    gw_answer a;
    gw_verify(v->e, &v->gw, &in, r->query.p, r->query.n, time(NULL), &a);
    h1_status(out, a.code);
    gw_each_field(&a, &v->lists, add_field, out);
    h1_head_end(out, a.body_len, NULL, keep, r->minor); /* Content-Type: gw_each_field's */
    if (!head)
        h1_put(out, a.body, a.body_len);
    if (v->m && !a.keyless)
        met_verify(v->m, MET_VERIFY_HTTP, a.v.verdict, met_now_ns() - t0);
    count(v, OP_VERIFY, a.status);
    if (lg_sampled(&v->sample))
        lg_request("http-verify", "VERIFY", a.keyless ? tk_errcode(TK_EUNAUTH) : a.reason, peer);
}

/* A whole request head follows at b (after one whose body is all in). */
static bool next_whole(const vh *v, const uint8_t *b, size_t len)
{
    h1_req r;
    const char *why;
    return len > 0 && h1_parse(b, len, v->o.max_head, &r, &why) == 0;
}

int vh_answer(vh *v, const uint8_t *b, size_t len, const char *peer, bool stopping, h1_out *out,
              vh_result *res)
{
    h1_req r;
    const char *why;
    memset(res, 0, sizeof *res);
    int rc = h1_parse(b, len, v->o.max_head, &r, &why);
    if (rc == H1_PARTIAL) {
        res->want = v->o.max_head;
        return VH_PARTIAL;
    }
    if (rc) { /* unreadable: say why, then the connection ends */
        int status = rc == 431 ? TK_ELIMIT : TK_EPROTO;
        error_body(out, rc, status, why, false, 1, false);
        count(v, 0, status);
        res->used = len;
        res->close = true;
        return 0;
    }
    bool head = r.method.n == 4 && memcmp(r.method.p, "HEAD", 4) == 0;
    if (r.body_len > v->o.max_body) {
        error_body(out, 413, TK_ELIMIT, "a request body over --http-max-body", false, r.minor,
                   head);
        count(v, 0, TK_ELIMIT);
        res->used = len;
        res->close = true;
        return 0;
    }
    size_t in_body = len - r.head_len;
    if (in_body > r.body_len)
        in_body = (size_t)r.body_len;
    res->used = r.head_len + in_body;
    res->skip = r.body_len - in_body;
    /* Stopping: every whole request received is answered, the last of them
     * with Connection: close. */
    bool keep = r.keep_alive && (!stopping || next_whole(v, b + res->used, len - res->used));
    if (is_verify_path(&r.path)) {
        verify(v, &r, peer, keep, head, out);
    } else {
        error_body(out, 404, TK_ENOTFOUND,
                   "the verify listener answers /v1/verify and the paths under it only "
                   "(docs/gateways.md)",
                   keep, r.minor, head);
        count(v, 0, TK_ENOTFOUND);
    }
    res->close = !keep;
    return 0;
}
