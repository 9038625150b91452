/*
 * session.h - portal sessions (prefix ses_): the one-time codes a vendor's
 * backend mints for one user, and the browser sessions they open
 * (docs/portal.md).
 *
 * In memory only, never logged: a session is a short-lived login, not
 * state; a restart ends them all and the vendor mints another. The table
 * is a fixed array of slots, so its memory is bounded by its size
 * (ses_bytes), and one tenant holds at most per_tenant of them.
 *
 * A code and a session's cookie are the same kind of text: base64url of
 * the slot's index, its generation and 32 random bytes. The index finds
 * the slot without a search; only the SHA-256 of the random part is kept,
 * compared in constant time. A slot's generation changes when its code is
 * used and when it is freed, so a used code, an ended session and a stale
 * handle all fail the same way.
 *
 * Thread-safe (one mutex): the loop thread mints, opens, finds and ends;
 * the writer thread asks ses_live when a request of a session commits
 * (rule 11) and ends a session whose user no longer stands.
 */
#ifndef TK_SESSION_H
#define TK_SESSION_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/model.h"

#define SES_TEXT_LEN 54 /* base64url of 4 + 4 + 32 bytes, unpadded */
#define SES_CSRF_LEN 43 /* base64url of 32 bytes, unpadded */

typedef struct ses_opts {
    uint32_t max;        /* slots: codes and sessions together (default 10000) */
    uint32_t per_tenant; /* of them one tenant may hold (default 1000) */
    uint32_t ttl;        /* seconds a session lasts from its opening (default 900) */
    uint32_t code_ttl;   /* seconds a code may wait to be used (default 60) */
} ses_opts;

/* The documented defaults (docs/portal.md). */
void ses_opts_default(ses_opts *o);

/* Whom a session acts as: ids for the engine, slugs to show. */
typedef struct ses_who {
    uint32_t tenant, account, user;
    char tenant_slug[TK_SLUG_MAX + 1];
    char account_slug[TK_SLUG_MAX + 1];
    char user_slug[TK_SLUG_MAX + 1];
} ses_who;

/* A live session, copied out. */
typedef struct ses_info {
    uint64_t handle;  /* for tk_actor.session; never 0 */
    ses_who who;
    char csrf[SES_CSRF_LEN + 1];
    int64_t expires;  /* unix seconds */
} ses_info;

typedef struct ses_table ses_table;

/* A table with o's sizes (allocation aborts). */
void ses_new(const ses_opts *o, ses_table **out);
void ses_free(ses_table *t); /* t may be NULL */

/* The table's memory with o's sizes (the server's memory bound). */
size_t ses_bytes(const ses_opts *o);

/* Mints a one-time code for who at now (unix seconds), valid for the
 * code_ttl: code gets its text, *expires when it stops being valid.
 * 0, or TK_ELIMIT when the table, or who's tenant's share of it, is full
 * (msg, cap bytes, says which). */
int ses_mint(ses_table *t, const ses_who *who, int64_t now, char code[SES_TEXT_LEN + 1],
             int64_t *expires, char *msg, size_t cap);

/* Uses a code: once, before it expires. The code's slot becomes a session
 * lasting ttl from now: sid gets its text (the cookie's value), *out what
 * it is. 0, or TK_EUNAUTH (unknown, used or expired code). */
int ses_open(ses_table *t, const char *code, size_t n, int64_t now, char sid[SES_TEXT_LEN + 1],
             ses_info *out);

/* The live session whose text is sid, into *out: 0, or TK_EUNAUTH. */
int ses_find(ses_table *t, const char *sid, size_t n, int64_t now, ses_info *out);

/* True while the session of handle is live (not ended, not expired). */
bool ses_live(ses_table *t, uint64_t handle, int64_t now);

/* Ends the session of handle (signed out, or its user no longer stands).
 * A stale handle does nothing. */
void ses_end(ses_table *t, uint64_t handle);

/* Frees the slots of expired codes and sessions; returns the live
 * sessions left. Call once a second or so: a full table also sweeps. */
size_t ses_sweep(ses_table *t, int64_t now);

#endif
