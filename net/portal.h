/*
 * portal.h - the self-service page (prefix ptl_): its files at /portal/,
 * the one-time links a vendor's backend mints for a user, the session
 * cookies they open, and the portal operations of the JSON API
 * (docs/portal.md). Part of the HTTP listener (net/http.c calls it).
 *
 * A session acts as its user under every rule, as the user's personal key
 * would: the engine checks at commit that the session is live and that
 * its user still has the portal flag (store/engine.h, eng_set_sessions).
 * A cookie is ambient (the browser sends it with any request to us), so a
 * request it authenticates that changes anything must also carry the
 * session's CSRF token, which only our page can read.
 */
#ifndef TK_NET_PORTAL_H
#define TK_NET_PORTAL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/http.h>

#include "core/mp.h"
#include "core/session.h"
#include "net/dispatch.h"
#include "net/schema.h"
#include "store/engine.h"

#define PTL_COOKIE "tokend_portal"
#define PTL_CSRF_HEADER "X-Tokend-CSRF"
#define PTL_BASE_MAX 256 /* the page's public URL, scheme and authority */
#define PTL_REPLY_MAX 1024 /* a portal operation's reply, msgpack, at most */

typedef struct ptl_opts {
    const char *url;             /* the page's public base ("https://tokens.example.com";
                                    NULL: http:// and the request's Host) (borrowed) */
    const char *frame_ancestors; /* CSP frame-ancestors sources (default "'self'") */
    bool https;                  /* the listener speaks TLS: without url, links are
                                    https:// and the request's Host; the cookie is Secure */
    ses_opts ses;                /* the session table's sizes and lifetimes */
} ptl_opts;

/* The documented defaults (docs/portal.md). */
void ptl_opts_default(ptl_opts *o);

/* The memory the portal holds with options o (its session table). */
size_t ptl_memory_bound(const ptl_opts *o);

/* A well-formed --portal-url: http:// or https://, a host, no path beyond
 * "/", at most PTL_BASE_MAX bytes. */
bool ptl_url_ok(const char *url);

typedef struct ptl ptl;

/* The portal of engine e (which learns of its sessions: eng_set_sessions,
 * until ptl_free). o's strings are borrowed for the portal's life.
 * Allocation aborts. */
void ptl_open(const ptl_opts *o, eng *e, ptl **out);
void ptl_free(ptl *p); /* p may be NULL */

/* Frees expired sessions and codes (call once a second). */
void ptl_sweep(ptl *p);

/* Live sessions, for /metrics. */
size_t ptl_sessions(const ptl *p);

/* Answers req when path is the page's (/portal, /portal/, its files, and
 * /portal/?code=... which opens a session); false when it is not. */
bool ptl_page(ptl *p, struct evhttp_request *req, const char *path, const char *query);

/* The session cookie's credential: 0 and *a (a user actor with its
 * session) and *info; PTL_NO_COOKIE when req has none; TK_EUNAUTH (no such
 * live session) or TK_EDENIED (a change without the session's CSRF token),
 * *msg saying why. */
#define PTL_NO_COOKIE 1
int ptl_credential(ptl *p, struct evhttp_request *req, tk_actor *a, ses_info *info,
                   const char **msg);

/* A portal operation (an op with run SCH_PORTAL), made on the loop thread
 * by ptl_call_init and run on the writer thread by ptl_run. */
typedef struct ptl_call {
    const sch_op *op;
    tk_actor actor;
    ses_info info;              /* when actor.session */
    dsp_portal who;             /* PORTAL_SESSION_CREATE's fields (borrowed from the body) */
    char base[PTL_BASE_MAX + 1]; /* the link's base URL */
} ptl_call;

/* Fills c from the request's decoded body (msgpack, borrowed until the
 * run) and its credential. 0, or a TK_E* refusal with msg (ENG_MSG_MAX
 * bytes). Sets the header that clears the cookie on a sign-out. */
int ptl_call_init(ptl *p, struct evhttp_request *req, const sch_op *op, const tk_actor *a,
                  const ses_info *info, const uint8_t *body, size_t len, ptl_call *c, char *msg);

/* Writer thread: runs c against e and appends its reply to w. 0, or a
 * TK_E* code with msg (ENG_MSG_MAX bytes). */
int ptl_run(ptl *p, eng *e, const ptl_call *c, mpw *w, char *msg);

#endif
