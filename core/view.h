/*
 * view.h - the in-memory state that answers verifications.
 *
 * Verification must not touch LMDB, take a lock a writer holds, or
 * allocate. So the few facts it needs are kept here, in memory: the
 * credential index (idx.h), each tenant's slug, api_tokens toggle and
 * permission keys, each role's key, level and permissions, each account's
 * slug. Tokens point at interned role sets (most tokens of a tenant share a
 * handful of role combinations), so an index entry stays at 64 bytes (one cache line) and a
 * role change is seen by all its tokens at once (rule 6).
 *
 * The view is fed by the engine after each durable commit (and built from
 * LMDB at open). It is single-threaded: mutate and read on one thread.
 * Strings handed out (tk_verify) are borrowed until the next mutation.
 */
#ifndef TK_VIEW_H
#define TK_VIEW_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/idx.h"
#include "core/model.h"
#include "core/secret.h"

typedef struct view view;

int view_new(view **out);
void view_free(view *v); /* v may be NULL */

/* Mutations: ids are the dense internal ids (model.h); strings are copied.
 * Putting an existing id replaces it. */
void view_tenant_put(view *v, uint32_t id, const char *slug, size_t n, bool api_tokens);
void view_perm_put(view *v, uint32_t tenant, uint32_t perm, const char *key, size_t n);
void view_role_put(view *v, uint32_t id, uint32_t tenant, const char *key, size_t n,
                   uint32_t level, const uint16_t *perms, uint32_t nperms);
void view_role_del(view *v, uint32_t id);
void view_account_put(view *v, uint32_t id, uint32_t tenant, const char *slug, size_t n);
/* Deletions: what is gone verifies no more. A tenant's or an account's
 * credentials answer "unknown" from the moment it is deleted (the engine
 * also deletes them one by one, in the same publish); a permission drops
 * out of every answer. */
void view_tenant_del(view *v, uint32_t id);
void view_perm_del(view *v, uint32_t tenant, uint32_t perm);
void view_account_del(view *v, uint32_t id);

/* Adds (or replaces) a credential. For TK_KIND_TOKEN, roles[0..nroles)
 * are its role ids; for TK_KIND_PERSONAL, user is the owner and roles unused. */
void view_cred_put(view *v, tk_kind kind, const tk_id *id, const uint8_t hash[TK_HASH_LEN],
                   uint32_t tenant, uint32_t account, uint32_t user,
                   const uint32_t *roles, uint32_t nroles, int64_t expires_at);
/* A hint ahead of view_cred_put(id): starts fetching its index slot. */
void view_cred_prefetch(const view *v, const tk_id *id);
/* Removes a credential; 0 or TK_ENOTFOUND. */
int view_cred_del(view *v, const tk_id *id);

/* Verifies a tenant API token for a gateway. client_id (NULL when the
 * secret alone is offered) must agree with the ID inside the secret. Fills
 * out (strings borrowed, see above) and returns out->verdict. Never
 * allocates, never blocks. now is unix seconds. */
tk_verdict view_verify(const view *v, const tk_id *client_id, const char *secret,
                       size_t len, int64_t now, tk_verify *out);

/* Batched verification, for a run of pipelined requests: the same answers
 * as view_verify, with the index's cache misses overlapped (idx_probe)
 * rather than paid one after another. view_verify_start parses and hashes
 * reqs[0..n) into probes[0..n) and starts their lookups; then
 * view_verify_finish answers each probe in turn. The view must not change
 * in between; reqs' strings need not outlive view_verify_start, probes
 * must stay in place. n is at most VIEW_BATCH. Never allocates. */
#define VIEW_BATCH 16

typedef struct view_vreq {
    const tk_id *client_id;     /* NULL: the secret alone */
    const char *secret;
    size_t len;
} view_vreq;

typedef struct view_probe {     /* fields private to view.c */
    tk_verdict verdict;         /* decided without a lookup, or TK_V_VALID: look up */
    tk_id id;
    uint8_t hash[TK_HASH_LEN];
    idx_probe ip;
} view_probe;

void view_verify_start(const view *v, const view_vreq *reqs, size_t n, view_probe *probes);
tk_verdict view_verify_finish(const view *v, const view_probe *p, int64_t now, tk_verify *out);

/* Starts the index lookups of reqs[0..n) (n at most VIEW_BATCH) and
 * returns: a hint only, that changes no answer. For verifications that are
 * about to be answered one by one but are all in hand already (a loop
 * turn's requests, one per connection), so that their cache misses
 * overlap instead of adding up. Reads only the IDs (no SHA-256, no
 * answer); a secret whose ID does not parse is passed over. */
void view_verify_prefetch(const view *v, const view_vreq *reqs, size_t n);

/* Authenticates a personal API key for a management request: on
 * TK_V_VALID fills actor (TK_ACTOR_USER). A tenant token is refused with
 * TK_V_WRONG_KIND (rule 8). */
tk_verdict view_auth_personal(const view *v, const char *secret, size_t len, int64_t now,
                              tk_actor *actor);

/* Sizes the credential index for n credentials before a bulk load. */
void view_reserve(view *v, size_t n);

/* Lets an in-progress index growth advance by a bounded amount (call when
 * idle); view_settle finishes it (after a bulk load, before serving). */
void view_step(view *v);
void view_settle(view *v);

/* Credentials held, and bytes of memory held by the credential index. */
size_t view_cred_count(const view *v);
size_t view_index_bytes(const view *v);

/* The credentials part of the view (the index and the interned role sets)
 * as a byte stream, for an image read back at the next open instead of
 * rebuilding it from LMDB (store/vimage.h). The rest of the view (tenants,
 * roles, accounts) is small and is not in the stream.
 *
 * view_save_creds writes it to put (see idx_put_fn); it finishes an index
 * growth in progress first, hence v is not const. 0 or put's error.
 *
 * view_load_creds reads it from get into a view that holds no credentials
 * yet (TK_EINVAL otherwise; tenants and the rest may come before or
 * after). max_bytes is the most the stream can hold. Everything is checked
 * before it is used, as idx_load does: a stream that is not a sound view
 * is TK_ECORRUPT (or get's error), and the view is then left as it was.
 * view_drop_creds empties the credentials again (all of them), for a
 * caller whose own check of the stream (a CRC) fails after the load. */
int view_save_creds(view *v, idx_put_fn put, void *arg);
int view_load_creds(view *v, idx_get_fn get, void *arg, size_t max_bytes);
void view_drop_creds(view *v);

#endif
