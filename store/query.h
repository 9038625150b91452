/*
 * query.h - the engine's reads (prefix query_): listings and gets of
 * tenants, permissions, roles, accounts, users, personal keys and tokens,
 * each over one LMDB read transaction, scoped and authorised as
 * engine.h's eng_query says.
 *
 * Every listing pages by a cursor that is a position, never a lookup: the
 * name of the last row for the listings by name, and for personal keys
 * and tokens the number of the last one in its user or account (its ord:
 * creation order), base64url. So a page whose last row was deleted still
 * leads to the next, and a cursor tells nothing of what exists outside the
 * caller's scope (the scope is checked first; a cursor is only a position
 * inside it).
 */
#ifndef TK_STORE_QUERY_H
#define TK_STORE_QUERY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/engine.h"
#include "store/state.h"

/* Runs q over t at now_s (rule 11's expiry); see eng_query_run. */
int query_run(state_txn *t, const eng_query *q, int64_t now_s,
              int (*fn)(void *arg, const eng_row *row), void *arg, char *msg);

/* The user actor a portal session for tenant/account/user acts as (the
 * operator names them): 0; TK_EINVAL, TK_ENOTFOUND (msg says which),
 * TK_EDENIED (the user has no portal flag), or a store error. */
int query_portal_user(state_txn *t, tk_str tenant, tk_str account, tk_str user, tk_actor *out,
                      char *msg);

/* The slugs of user actor a, whose credential still stands (rule 11). 0,
 * TK_EUNAUTH (msg says why), or a store error. */
int query_actor_names(state_txn *t, const tk_actor *a, int64_t now_s, eng_names *out, char *msg);

/* True when text has the form of a cursor of a listing of kind (tokens
 * and keys: a number; the others: a name). */
bool query_cursor_ok(eng_kind kind, const char *text, size_t n);

#endif
