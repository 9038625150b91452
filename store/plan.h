/*
 * plan.h - validation: a management request, checked against the state as
 * it stands in its batch's transaction, becomes its one event, or a
 * refusal with a one-line reason.
 *
 * One planner per operation, chosen by a table (plan.c); the domain rules
 * themselves are core/rules.c's, and each is asked in one place. A planner
 * reads the state through the transaction it is given, which holds the
 * writes of the batch before this request: so a request sees exactly what
 * was committed before it, and authority (rule 11), quotas and the ceiling
 * are decided at commit, not when the request arrived. Planning changes
 * nothing: the engine applies the event (state_apply) only once the request
 * is planned whole, so a request contributes its event or nothing.
 */
#ifndef TK_STORE_PLAN_H
#define TK_STORE_PLAN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/event.h"
#include "core/ratelimit.h"
#include "core/secret.h"
#include "store/engine.h"
#include "store/state.h"

/* One request's planning. The caller sets the first four fields for a
 * batch; plan_request fills the rest for each request. */
typedef struct plan {
    state_txn *t;       /* the batch's write transaction (borrowed) */
    secret_pool *pool;  /* randomness for new credentials (borrowed) */
    rl *rate;           /* creations per user (borrowed) */
    int64_t now_ms;     /* the batch's time */
    /* Out. */
    size_t n;           /* events: 0 or 1 (one request, one event) */
    bool revokes;       /* the event only takes access away (rule 12: may use the reserve) */
    ev evs[1];
    /* Storage the event's strings may point into (valid until the next
     * plan_request with this plan). */
    char slugs[3][TK_SLUG_MAX + 1];
    char keys[TK_MAX_ROLES][TK_KEY_MAX + 1];
    char by[3][TK_SLUG_MAX + 1]; /* the event's actor: tenant, account, user */
} plan;

/* Plans r. 0: p->evs[0] is its event (p->n == 1), and for a credential's
 * creation res->id and res->secret are set (the secret is the only copy).
 * Else a TK_E* code, with res->msg saying why (one line; "" when the code
 * says enough) and, for TK_ERATE, res->retry_after_ms. TK_EIO/TK_ECORRUPT:
 * the state could not be read, which fails the whole batch. */
int plan_request(plan *p, const eng_req *r, eng_res *res);

/* Rule 11 on its own, for reads (a listing): 0 when the credential user
 * actor a authenticated with still stands in t at now_s (its personal key;
 * for a portal session, its user, with the portal flag: whether the
 * session itself is live is the engine's check); else TK_EUNAUTH (msg,
 * ENG_MSG_MAX bytes, says why) or a store error. */
int plan_actor_stands(state_txn *t, const tk_actor *a, int64_t now_s, char *msg);

/* The same for an operator actor: its key (a.key, zeros for the bootstrap
 * key) is still on the keyring. 0, TK_EUNAUTH or a store error. */
int plan_operator_stands(state_txn *t, const tk_actor *a, char *msg);

/* The tenant and account a request acts in: a user actor's own, or those
 * the operator names (checked and looked up). need_account: the account too.
 * 0, TK_EINVAL, TK_ENOTFOUND (msg, ENG_MSG_MAX bytes, says why) or a store
 * error. */
int plan_scope(state_txn *t, const tk_actor *a, tk_str tenant, tk_str account,
               bool need_account, st_tenant *tn, st_account *ac, char *msg);

/* A refusal's one line into msg (ENG_MSG_MAX bytes: the request's own
 * eng_res.msg, the one place a refusal's reason travels); returns code. */
int plan_why(char *msg, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A name from a request, printable with "%.*s" (at most 64 bytes of it). */
#define PLAN_SL(s) (int)((s).n > 64 ? 64 : (s).n), (s).p

#endif
