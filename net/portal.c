/*
 * portal.c - the self-service page and its sessions; see portal.h.
 *
 * The flow (docs/portal.md): the vendor's backend POSTs
 * /v1/portal/sessions with the operator key and gets a link
 * BASE/portal/?code=C, valid once for a minute; the user's browser opens
 * it; we exchange the code for a session cookie (HttpOnly, SameSite=Strict,
 * Secure when BASE is https) and redirect to /portal/ so that the code
 * leaves the address bar and the history. The page then calls the JSON
 * API with the cookie, sending the session's CSRF token (from
 * GET /v1/portal/session) on every change.
 */
#include "net/portal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <sodium.h>

#include "core/err.h"
#include "core/xmalloc.h"
#include "net/portal_files.h"
#include "net/proto.h"

struct ptl {
    ptl_opts o;
    eng *e;
    ses_table *t;
    size_t live;   /* sessions at the last sweep */
    bool secure;   /* the base is https: the cookie is Secure */
    char csp[512];
};

void ptl_opts_default(ptl_opts *o)
{
    o->url = NULL;
    o->frame_ancestors = "'self'";
    ses_opts_default(&o->ses);
}

size_t ptl_memory_bound(const ptl_opts *o)
{
    return sizeof(ptl) + ses_bytes(&o->ses);
}

bool ptl_url_ok(const char *url)
{
    const char *host;
    if (strncmp(url, "https://", 8) == 0)
        host = url + 8;
    else if (strncmp(url, "http://", 7) == 0)
        host = url + 7;
    else
        return false;
    size_t n = strlen(host);
    if (n > 0 && host[n - 1] == '/')
        n--;
    if (n == 0 || strlen(url) > PTL_BASE_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)host[i]) && !strchr(".-:[]", host[i]))
            return false;
    return true;
}

void ptl_open(const ptl_opts *o, eng *e, ptl **out)
{
    ptl *p = xcalloc(1, sizeof *p);
    p->o = *o;
    p->e = e;
    p->secure = o->https || (o->url && strncmp(o->url, "https://", 8) == 0);
    snprintf(p->csp, sizeof p->csp,
             "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
             "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors %s",
             o->frame_ancestors ? o->frame_ancestors : "'self'");
    ses_new(&o->ses, &p->t);
    eng_set_sessions(e, p->t);
    *out = p;
}

void ptl_free(ptl *p)
{
    if (!p)
        return;
    eng_set_sessions(p->e, NULL);
    ses_free(p->t);
    free(p);
}

void ptl_sweep(ptl *p)
{
    p->live = ses_sweep(p->t, time(NULL));
}

size_t ptl_sessions(const ptl *p)
{
    return p->live;
}

/* ---- the page ------------------------------------------------------------- */

/* What every answer of the page carries: no script but ours, no framing
 * but the allowed, and no Referer, which would carry a link's code. */
static void page_headers(ptl *p, struct evhttp_request *req, const char *type, bool store)
{
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    evhttp_add_header(oh, "Content-Security-Policy", p->csp);
    evhttp_add_header(oh, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(oh, "Referrer-Policy", "no-referrer");
    evhttp_add_header(oh, "Cross-Origin-Opener-Policy", "same-origin");
    evhttp_add_header(oh, "Cache-Control", store ? "no-cache" : "no-store");
    if (type)
        evhttp_add_header(oh, "Content-Type", type);
}

static const char link_error[] =
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    "<title>Link not valid - API tokens</title>"
    "<link rel=\"stylesheet\" href=\"/portal/portal.css\"></head>"
    "<body><main class=\"notice\" id=\"link-error\"><h1>This link is not valid</h1>"
    "<p>It has expired or was already used: a link to this page works once, within a "
    "minute of being made. Open the API tokens page again from the application that sent "
    "you here.</p></main></body></html>\n";

/* The value of query's code=..., or NULL. */
static const char *code_of(const char *query, size_t *n)
{
    for (const char *q = query; q && *q;) {
        const char *end = strchr(q, '&');
        size_t len = end ? (size_t)(end - q) : strlen(q);
        if (len > 5 && strncmp(q, "code=", 5) == 0) {
            *n = len - 5;
            return q + 5;
        }
        q = end ? end + 1 : NULL;
    }
    return NULL;
}

/* /portal/?code=C: the session, the cookie, and a redirect to /portal/;
 * else the page saying the link is not valid. */
static void open_session(ptl *p, struct evhttp_request *req, const char *code, size_t n)
{
    char sid[SES_TEXT_LEN + 1], cookie[SES_TEXT_LEN + 128];
    ses_info info;
    if (ses_open(p->t, code, n, time(NULL), sid, &info) != 0) {
        page_headers(p, req, "text/html; charset=utf-8", false);
        evbuffer_add(evhttp_request_get_output_buffer(req), link_error, sizeof link_error - 1);
        evhttp_send_reply(req, 401, "Unauthorized", NULL);
        return;
    }
    snprintf(cookie, sizeof cookie, PTL_COOKIE "=%s; Path=/v1/; Max-Age=%u; HttpOnly; "
                                    "SameSite=Strict%s",
             sid, p->o.ses.ttl, p->secure ? "; Secure" : "");
    sodium_memzero(sid, sizeof sid);
    page_headers(p, req, NULL, false);
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    evhttp_add_header(oh, "Set-Cookie", cookie);
    evhttp_add_header(oh, "Location", "/portal/");
    sodium_memzero(cookie, sizeof cookie);
    evhttp_send_reply(req, 303, "See Other", NULL);
}

bool ptl_page(ptl *p, struct evhttp_request *req, const char *path, const char *query)
{
    if (strcmp(path, "/favicon.ico") == 0) { /* browsers ask for it beside every page */
        page_headers(p, req, NULL, true);
        evhttp_send_reply(req, 204, "No Content", NULL);
        return true;
    }
    if (strcmp(path, "/portal") == 0) {
        /* The link's code goes along (it is base64url, or not a code). */
        char loc[80] = "/portal/";
        size_t n = 0;
        const char *code = code_of(query, &n);
        if (code && n == SES_TEXT_LEN && strspn(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn"
                                                      "opqrstuvwxyz0123456789-_") >= n)
            snprintf(loc, sizeof loc, "/portal/?code=%.*s", (int)n, code);
        page_headers(p, req, NULL, false);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Location", loc);
        evhttp_send_reply(req, 308, "Permanent Redirect", NULL);
        return true;
    }
    if (strncmp(path, "/portal/", 8) != 0)
        return false;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
        page_headers(p, req, NULL, false);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        evhttp_send_reply(req, 405, "Method Not Allowed", NULL);
        return true;
    }
    size_t n = 0;
    const char *code = strcmp(path, "/portal/") == 0 ? code_of(query, &n) : NULL;
    if (code) {
        open_session(p, req, code, n);
        return true;
    }
    ptl_file f;
    if (!ptl_file_at(path, &f)) {
        page_headers(p, req, "text/plain; charset=utf-8", false);
        evbuffer_add_printf(evhttp_request_get_output_buffer(req), "no such file\n");
        evhttp_send_reply(req, 404, "Not Found", NULL);
        return true;
    }
    page_headers(p, req, f.type, true);
    evbuffer_add_reference(evhttp_request_get_output_buffer(req), f.data, f.len, NULL, NULL);
    evhttp_send_reply(req, 200, "OK", NULL);
    return true;
}

/* ---- the cookie ----------------------------------------------------------- */

/* The session cookie's value among req's Cookie headers, or NULL. */
static const char *cookie_of(struct evhttp_request *req, size_t *n)
{
    const size_t nlen = sizeof PTL_COOKIE - 1;
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    for (struct evkeyval *kv = in->tqh_first; kv; kv = kv->next.tqe_next) {
        if (evutil_ascii_strcasecmp(kv->key, "Cookie") != 0)
            continue;
        for (const char *c = kv->value; c && *c;) {
            while (*c == ' ' || *c == '\t')
                c++;
            const char *end = strchr(c, ';');
            size_t len = end ? (size_t)(end - c) : strlen(c);
            if (len > nlen && strncmp(c, PTL_COOKIE, nlen) == 0 && c[nlen] == '=') {
                *n = len - nlen - 1;
                return c + nlen + 1;
            }
            c = end ? end + 1 : NULL;
        }
    }
    return NULL;
}

static bool changes(struct evhttp_request *req)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    return m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD && m != EVHTTP_REQ_OPTIONS;
}

int ptl_credential(ptl *p, struct evhttp_request *req, tk_actor *a, ses_info *info,
                   const char **msg)
{
    size_t n = 0;
    const char *sid = cookie_of(req, &n);
    if (!sid)
        return PTL_NO_COOKIE;
    if (ses_find(p->t, sid, n, time(NULL), info) != 0) {
        *msg = "the portal session has ended (expired or signed out): open the page again "
               "from its link";
        return TK_EUNAUTH;
    }
    if (changes(req)) {
        const char *t = evhttp_find_header(evhttp_request_get_input_headers(req),
                                           PTL_CSRF_HEADER);
        if (!t || strlen(t) != SES_CSRF_LEN || sodium_memcmp(t, info->csrf, SES_CSRF_LEN) != 0) {
            *msg = "a change made with the session cookie needs the session's CSRF token in "
                   "X-Tokend-CSRF (GET /v1/portal/session gives it)";
            return TK_EDENIED;
        }
    }
    *a = (tk_actor){.kind = TK_ACTOR_USER, .tenant = info->who.tenant,
                    .account = info->who.account, .user = info->who.user,
                    .session = info->handle};
    return 0;
}

/* ---- the operations ------------------------------------------------------- */

/* The link's base: --portal-url, or http:// (https:// over TLS) and the
 * request's Host. */
static int base_of(ptl *p, struct evhttp_request *req, char *out, char *msg)
{
    if (p->o.url) {
        size_t n = strlen(p->o.url);
        snprintf(out, PTL_BASE_MAX + 1, "%.*s", (int)(n && p->o.url[n - 1] == '/' ? n - 1 : n),
                 p->o.url);
        return 0;
    }
    const char *host = evhttp_find_header(evhttp_request_get_input_headers(req), "Host");
    char url[PTL_BASE_MAX + 16];
    snprintf(url, sizeof url, "%s://%s", p->o.https ? "https" : "http", host ? host : "");
    if (!host || !ptl_url_ok(url)) {
        snprintf(msg, ENG_MSG_MAX, "no usable Host header to make the link from: start tokend "
                                   "with --portal-url (docs/portal.md)");
        return TK_EINVAL;
    }
    memcpy(out, url, strlen(url) + 1); /* ptl_url_ok: at most PTL_BASE_MAX bytes */
    return 0;
}

int ptl_call_init(ptl *p, struct evhttp_request *req, const sch_op *op, const tk_actor *a,
                  const ses_info *info, const uint8_t *body, size_t len, ptl_call *c, char *msg)
{
    dsp_err err = {""};
    memset(c, 0, sizeof *c);
    c->op = op;
    c->actor = *a;
    if (a->session)
        c->info = *info;
    int rc = dsp_portal_req(op->code, body, len, &c->who, &err);
    if (rc) {
        snprintf(msg, ENG_MSG_MAX, "%s", err.msg);
        return rc;
    }
    switch (op->code) {
    case OP_PORTAL_SESSION_CREATE:
        if (a->kind != TK_ACTOR_OPERATOR) {
            snprintf(msg, ENG_MSG_MAX, "only the operator key mints portal sessions");
            return TK_EDENIED;
        }
        return base_of(p, req, c->base, msg);
    case OP_PORTAL_SESSION_DELETE:
        if (!a->session) {
            snprintf(msg, ENG_MSG_MAX, "only a portal session signs out (a key has no session)");
            return TK_EINVAL;
        }
        /* Whatever happens next, the browser forgets the cookie. */
        evhttp_add_header(evhttp_request_get_output_headers(req), "Set-Cookie",
                          PTL_COOKIE "=; Path=/v1/; Max-Age=0; HttpOnly; SameSite=Strict");
        return 0;
    default: return 0;
    }
}

int ptl_run(ptl *p, eng *e, const ptl_call *c, mpw *w, char *msg)
{
    int rc;
    eng_names names;
    switch (c->op->code) {
    case OP_PORTAL_SESSION_CREATE: {
        tk_actor a;
        ses_who who;
        char code[SES_TEXT_LEN + 1], url[PTL_BASE_MAX + SES_TEXT_LEN + 32];
        int64_t expires;
        if ((rc = eng_portal_user(e, c->who.tenant, c->who.account, c->who.user, &a, msg)))
            return rc;
        memset(&who, 0, sizeof who);
        who.tenant = a.tenant, who.account = a.account, who.user = a.user;
        snprintf(who.tenant_slug, sizeof who.tenant_slug, "%.*s", (int)c->who.tenant.n,
                 c->who.tenant.p);
        snprintf(who.account_slug, sizeof who.account_slug, "%.*s", (int)c->who.account.n,
                 c->who.account.p);
        snprintf(who.user_slug, sizeof who.user_slug, "%.*s", (int)c->who.user.n,
                 c->who.user.p);
        if ((rc = ses_mint(p->t, &who, time(NULL), code, &expires, msg, ENG_MSG_MAX)))
            return rc;
        snprintf(url, sizeof url, "%s/portal/?code=%s", c->base, code);
        dsp_put_portal_link(w, url, expires);
        sodium_memzero(code, sizeof code);
        sodium_memzero(url, sizeof url);
        return 0;
    }
    case OP_PORTAL_SESSION_GET:
        if (c->actor.kind == TK_ACTOR_OPERATOR) {
            dsp_put_portal_who(w, "operator", "key", NULL, 0, NULL);
            return 0;
        }
        if ((rc = eng_actor_names(e, &c->actor, &names, msg)))
            return rc;
        if (c->actor.session)
            dsp_put_portal_who(w, "user", "session", &names, c->info.expires, c->info.csrf);
        else
            dsp_put_portal_who(w, "user", "key", &names, 0, NULL);
        return 0;
    case OP_PORTAL_SESSION_DELETE:
        ses_end(p->t, c->actor.session);
        dsp_put_empty(w);
        return 0;
    default:
        snprintf(msg, ENG_MSG_MAX, "not a portal operation");
        return TK_EOPCODE;
    }
}
