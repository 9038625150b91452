/*
 * dispatch.h - the protocol's field-level codec on the server: request
 * bodies into engine requests and reads, engine answers into reply bodies,
 * all driven by the one table of operations (net/schema.h).
 *
 * Decoding is strict, because a typo must never silently do nothing: the
 * body is one map (or empty), every key a field of that operation's request
 * and present at most once, every value of its type, every string valid
 * UTF-8 and within its limit, every array within its count (ELIMIT),
 * every number within its bound, every required field present. Counts are
 * checked by the mpr cursor before anything is sized by them; nothing here
 * allocates while decoding.
 *
 * No sockets, no threads, no state: conn.c decides where a request runs
 * (inline on the loop thread, or on the writer thread); this module only
 * says what a body means and how an answer is written. Decoded strings are
 * borrowed from the body bytes: they live as long as those bytes.
 */
#ifndef TK_NET_DISPATCH_H
#define TK_NET_DISPATCH_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/model.h"
#include "core/mp.h"
#include "net/schema.h"
#include "store/engine.h"

/* Why a body was refused: a one-line message for the error reply. It never
 * quotes the peer's bytes except a field name made only of [a-z_]. */
typedef struct dsp_err {
    char msg[128];
} dsp_err;

/* s[0..n) into buf (cap bytes) when it is plainly a field name ([a-z_]),
 * else "(not shown)": what an error message may quote of a peer's bytes. */
const char *dsp_shown_name(const char *s, size_t n, char *buf, size_t cap);

/* Where an opcode runs. */
typedef enum dsp_class {
    DSP_UNKNOWN = 0, /* not an opcode of version 1 */
    DSP_INLINE,      /* PING, AUTH, VERIFY: answered on the loop thread */
    DSP_WRITE,       /* a management change: a batch on the writer thread */
    DSP_READ,        /* a listing or a get: on the writer thread */
    DSP_HTTP,        /* a portal session's: HTTP only (net/portal.c) */
} dsp_class;

dsp_class dsp_classify(uint16_t op);

/* ---- decoding: each returns 0, TK_EINVAL or TK_ELIMIT (err filled) ---- */

int dsp_ping(const uint8_t *body, size_t len, dsp_err *err);
/* AUTH: *key borrowed from body. */
int dsp_auth(const uint8_t *body, size_t len, tk_str *key, dsp_err *err);

typedef struct dsp_verify {
    tk_str secret;        /* borrowed from body */
    bool has_client_id;
    bool client_id_ok;    /* has_client_id and it parsed as a UUID */
    tk_id client_id;
} dsp_verify;
/* VERIFY. A client_id that is not a UUID is not a request error: the
 * answer is the verdict "malformed", as for a malformed secret. */
int dsp_verify_req(const uint8_t *body, size_t len, dsp_verify *out, dsp_err *err);

/* A management change (dsp_classify(op) == DSP_WRITE) into r, ready for
 * eng_commit once the caller sets r->actor. Strings borrowed from body. */
int dsp_write_req(uint16_t op, const uint8_t *body, size_t len, eng_req *r, dsp_err *err);

#define DSP_LIST_DEFAULT 100
#define DSP_LIST_MAX 1000
#define DSP_PAGE_MAX (4u << 20) /* a page's rows at their limits: fewer when rows are big */

/* A read (dsp_classify(op) == DSP_READ): the engine's query (its actor set
 * by the caller) and the operation it answers. */
typedef struct dsp_read {
    const sch_op *op;
    eng_query q;          /* strings borrowed from body; limit: 1 .. dsp_page_max(op) */
} dsp_read;
int dsp_read_req(uint16_t op, const uint8_t *body, size_t len, dsp_read *out, dsp_err *err);

/* The most rows one page of op may have: DSP_LIST_MAX, or fewer so that a
 * page of rows at their field limits stays within DSP_PAGE_MAX (a role
 * names up to 256 permissions). */
uint32_t dsp_page_max(const sch_op *op);

/* The same for pages of at most max_rows rows within page_bytes (at least
 * one row): the HTTP listener's smaller pages. */
uint32_t dsp_page_fit(const sch_op *op, size_t page_bytes, uint32_t max_rows);

/* PORTAL_SESSION_CREATE: whom the link is for (strings borrowed from
 * body); the other portal operations take no fields (out unused). */
typedef struct dsp_portal {
    tk_str tenant, account, user;
} dsp_portal;
int dsp_portal_req(uint16_t op, const uint8_t *body, size_t len, dsp_portal *out, dsp_err *err);

/* ---- encoding: each appends one reply body to w ----------------------- */

void dsp_put_error(mpw *w, const char *msg);
/* The refusal of a write (res->status != 0): the engine's reason, or the
 * status's text, and retry_after_ms for TK_ERATE. */
void dsp_put_write_error(mpw *w, const eng_res *res);
void dsp_put_ping(mpw *w);
/* actor: "operator", "user" or "gateway". */
void dsp_put_auth(mpw *w, const char *actor);
void dsp_put_verify(mpw *w, const tk_verify *v);
/* PORTAL_SESSION_CREATE's reply. */
void dsp_put_portal_link(mpw *w, const char *url, int64_t expires_at);
/* PORTAL_SESSION_GET's: names NULL for the operator; expires_at and csrf
 * for a session only (0, NULL otherwise). */
void dsp_put_portal_who(mpw *w, const char *actor, const char *via, const eng_names *names,
                        int64_t expires_at, const char *csrf);
/* An empty reply ({}). */
void dsp_put_empty(mpw *w);
/* The reply to a write that succeeded (res->status == 0); r is its request. */
void dsp_put_write(mpw *w, const eng_req *r, const eng_res *res);

/* Runs a read (on the writer thread: it opens an LMDB read transaction)
 * and, when it succeeds, appends its reply body to w, whose buffer is then
 * trimmed to its size (the batch's reply memory is its replies' bytes).
 * Returns 0, or the engine's TK_E* code with msg (ENG_MSG_MAX bytes) saying
 * why (w then untouched). */
int dsp_run_read(eng *e, const dsp_read *r, mpw *w, char *msg);

/* The largest reply a read can get, frame header included: a page of its
 * limit's rows at every field limit. The server sizes its reply budgets
 * with it (docs/server.md, "The memory bound"). */
size_t dsp_read_reply_max(const dsp_read *r);

/* The largest reply of op with a page of limit rows (a read) ... */
size_t dsp_op_reply_max(const sch_op *op, uint32_t limit);

/* ... and of any operation, frame header included ... */
size_t dsp_reply_max(void);

/* ... and of any operation when pages are dsp_page_fit(op, page_bytes,
 * max_rows). */
size_t dsp_reply_max_paged(size_t page_bytes, uint32_t max_rows);

/* The largest reply to a write, frame header included: a created
 * credential (ID and secret) or a refusal (a reason of at most
 * ENG_MSG_MAX and a retry hint). An encoder that grows past it must
 * raise it. */
#define DSP_WRITE_REPLY_MAX 512

#endif
