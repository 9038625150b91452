/*
 * fixture.h - one-call helpers that drive the engine as a user would, for
 * the engine, replay and crash suites. Each helper runs one request as its
 * own batch and returns the request's status (0 or TK_E*); a store failure
 * (eng_exec itself failing) is returned as is.
 */
#ifndef TK_TEST_FIXTURE_H
#define TK_TEST_FIXTURE_H
#include <stdbool.h>
#include <stdint.h>

#include "core/model.h"
#include "store/engine.h"

extern const tk_actor fx_operator;

/* Runs one request. res may be NULL. */
int fx_exec(eng *e, const eng_req *r, eng_res *res);

int fx_tenant(eng *e, const char *tenant);
int fx_toggle(eng *e, const char *tenant, bool on);
/* Sets the tenant's limits to lim (all five; 0 = no limit). */
int fx_limits(eng *e, const char *tenant, tk_limits lim);
/* perms: NULL-terminated list of permission keys. */
int fx_role(eng *e, const char *tenant, const char *key, uint32_t level, const char *const *perms);
int fx_role_delete(eng *e, const char *tenant, const char *key);
/* An operator's delete (ENG_USER_DELETE, ENG_ACCOUNT_DELETE, ENG_PERM_DELETE,
 * ENG_TENANT_DELETE, ...) of what the names give (NULL: none). */
int fx_delete(eng *e, eng_op op, const char *tenant, const char *account, const char *user,
              const char *key);
int fx_account(eng *e, const char *tenant, const char *account);
/* roles: NULL-terminated. On success writes the personal key into key_out
 * (TK_SECRET_LEN + 1 bytes) when it is not NULL. */
int fx_user(eng *e, const char *tenant, const char *account, const char *user, bool portal,
            const char *const *roles, char *key_out);
/* Authenticates a personal key (or the operator key) into actor. */
int fx_auth(eng *e, const char *key, tk_actor *actor);
/* Creates a token as actor; on success fills id/secret (either may be NULL). */
int fx_token(eng *e, const tk_actor *actor, const char *desc, const char *const *roles,
             int64_t expires, tk_id *id, char *secret_out);
int fx_token_delete(eng *e, const tk_actor *actor, const tk_id *id);
/* The number of roles stored for a user actor (read from LMDB). */
int fx_user_roles(eng *e, const tk_actor *user, uint32_t *n);
/* Verifies with the secret alone at the current time. */
tk_verdict fx_verify(eng *e, const char *secret, tk_verify *out);

/* The standard scenario used across suites (its tenants have no limits:
 * suites create thousands of tokens; quota tests set their own):
 *   tenant acme (api_tokens on): roles admin L0 {orders:read, orders:write},
 *     editor L1 {orders:read, orders:edit}, viewer L2 {orders:read}
 *     account globex: alice (admin, portal), bob (viewer, portal), carol (admin, no portal)
 *     account initech: dave (admin, portal)
 *   tenant umbrella (api_tokens on): role admin L0 {labs:read}
 *     account raccoon: ellen (admin, portal)
 * and fills the actors. */
typedef struct fx_world {
    tk_actor alice, bob, carol, dave, ellen;
    char alice_key[TK_SECRET_LEN + 1];
} fx_world;
void fx_scenario(eng *e, fx_world *w);

#endif

/* Test-side codec of the secret format (secret.h), written independently of
 * core/secret.c: decodes the 48 bytes id||random of a secret string (0 or
 * -1), and encodes 48 bytes under a prefix with a valid checksum. */
int fx_secret_decode(const char *secret, uint8_t out[48]);
void fx_secret_encode(const char *prefix, const uint8_t in[48], char out[TK_SECRET_LEN + 1]);
