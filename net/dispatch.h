/*
 * dispatch.h - the protocol's field-level codec: request bodies into engine
 * requests, engine answers into reply bodies (docs/protocol.md,
 * "Operations").
 *
 * Decoding is strict, because a typo must never silently do nothing: the
 * body is one map (or empty), every key a known field of that opcode and
 * present at most once, every value of the documented type, every string
 * valid UTF-8 and within its length limit, every array within its count
 * limit (ELIMIT) and every required field present. Counts are checked by
 * the mpr cursor before anything is sized by them; nothing here allocates
 * while decoding.
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
#include "store/engine.h"

/* Why a body was refused: a one-line message for the error reply. It never
 * quotes the peer's bytes except a field name made only of [a-z_]. */
typedef struct dsp_err {
    char msg[128];
} dsp_err;

/* Where an opcode runs. */
typedef enum dsp_class {
    DSP_UNKNOWN = 0, /* not an opcode of version 1 */
    DSP_INLINE,      /* PING, AUTH, VERIFY: answered on the loop thread */
    DSP_WRITE,       /* a management change: a batch on the writer thread */
    DSP_LIST,        /* TOKEN_LIST: a read on the writer thread */
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
#define DSP_CURSOR_MAX 64 /* the protocol's bound on a cursor; today's are ENG_CURSOR_LEN */

typedef struct dsp_list {
    tk_actor actor;       /* set by the caller */
    tk_str tenant, account; /* borrowed from body; empty when absent */
    bool has_after;
    tk_str after;         /* a cursor (the "next" of a page), borrowed from body */
    uint32_t limit;       /* 1..DSP_LIST_MAX (absent or 0: the default) */
} dsp_list;
int dsp_list_req(const uint8_t *body, size_t len, dsp_list *out, dsp_err *err);

/* ---- encoding: each appends one reply body to w ----------------------- */

void dsp_put_error(mpw *w, const char *msg);
/* The refusal of a write (res->status != 0): the engine's reason, or the
 * status's text, and retry_after_ms for TK_ERATE. */
void dsp_put_write_error(mpw *w, const eng_res *res);
void dsp_put_ping(mpw *w);
/* actor: "operator", "user" or "gateway". */
void dsp_put_auth(mpw *w, const char *actor);
void dsp_put_verify(mpw *w, const tk_verify *v);
/* The reply to a write that succeeded (res->status == 0); r is its request. */
void dsp_put_write(mpw *w, const eng_req *r, const eng_res *res);

/* Runs a listing (on the writer thread: it opens an LMDB read transaction)
 * and, when it succeeds, appends its reply body to w, whose buffer is then
 * trimmed to its size (the batch's reply memory is its replies' bytes).
 * Returns 0 or the engine's TK_E* code (w then untouched). */
int dsp_run_list(eng *e, const dsp_list *l, mpw *w);

/* The largest reply a listing of `limit` tokens can get, frame header
 * included: every entry at its field limits (a description of
 * TK_DESC_MAX bytes, TK_MAX_ROLES roles of TK_KEY_MAX, ...). The server
 * sizes its reply budgets with it (docs/server.md, "The memory bound"). */
size_t dsp_list_reply_max(uint32_t limit);

/* The largest reply to a write, frame header included: a created
 * credential (ID and secret) or a refusal (a reason of at most
 * sizeof(eng_res.msg) and a retry hint). An encoder that grows past it
 * must raise it. */
#define DSP_WRITE_REPLY_MAX 512

#endif
