/*
 * rules.h - the domain rules of DESIGN section 1, as pure decisions.
 *
 * The engine gathers the facts (from LMDB or the view) and asks here; so
 * each rule lives in exactly one function, and a test that removes a rule's
 * check here sees the engine's behaviour change. Which rule is where:
 *   1  api_tokens toggle          rules_token_create, rules_verify_state
 *   2  portal flag                rules_may_manage_tokens
 *   3  no stronger roles          rules_may_assign, rules_token_create
 *   7  tenant/account isolation   rules_may_see
 *   8  kinds do not mix           rules_verify_state (and view_auth_personal)
 *  11  authority at commit        rules_key_acts (with 2 and 3 read in the batch)
 * Rules 4, 5, 6 and 9 are properties of the data flow (secret.c, engine.c,
 * view.c, the listing record) and are tested there.
 */
#ifndef TK_RULES_H
#define TK_RULES_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/model.h"

/* Rule 2: a user may create, list or delete tokens only with the portal
 * flag. The operator may list and delete (support and clean-up) but does
 * not create tokens: a token always has a creating user whose roles bound
 * it (rule 3). create is true for creation. 0 or TK_EDENIED. */
int rules_may_manage_tokens(const tk_actor *a, bool user_portal, bool create);

/* Why rule 3 refused, for the refusal's message (so that no caller works
 * it out again). */
typedef struct rules_why {
    bool no_level;      /* the user has no role left, so no level */
    uint32_t strongest; /* else: the user's level (its strongest role's) */
    size_t role;        /* the first role stronger than that (index into the roles) */
} rules_why;

/* Rule 3: every role level must be >= the smallest (strongest) level among
 * the user's roles. A user with no roles may assign nothing. 0 or
 * TK_EDENIED, and then *why (may be NULL) says which role and levels. */
int rules_may_assign(const uint32_t *user_levels, size_t nuser,
                     const uint32_t *role_levels, size_t nroles, rules_why *why);

/* Rules 1 and 3 for a token creation by a user who may manage tokens
 * (rule 2 is rules_may_manage_tokens, checked before): TK_EDISABLED when
 * the toggle is off, TK_EINVAL for no roles (or more than TK_MAX_ROLES),
 * TK_EDENIED with *why for a role stronger than the user's, else 0. */
int rules_token_create(bool api_tokens_on, const uint32_t *user_levels, size_t nuser,
                       const uint32_t *role_levels, size_t nroles, rules_why *why);

/* Rule 7: may actor a see (or touch) a credential of tenant/account?
 * The operator sees everything; a user only its own tenant and account. */
bool rules_may_see(const tk_actor *a, uint32_t tenant, uint32_t account);

/* Rules 1 and 8 and expiry, at verification: want is the kind the caller
 * accepts, kind the credential's; api_tokens the tenant's toggle (ignored
 * for personal keys: they authenticate to tokend, not to the tenant's API).
 * Returns TK_V_VALID or the reason. */
tk_verdict rules_verify_state(uint8_t want, uint8_t kind, bool api_tokens,
                              int64_t expires_at, int64_t now);

/* Rule 11: a user's write or listing acts only while the personal key it
 * authenticated with still stands where the request runs (in its batch's
 * transaction, after the writes before it): found (not deleted), a
 * personal key of that same user, not expired at now. The user's portal
 * flag and roles are read there too, so a change earlier in the batch
 * already binds (rules 2 and 3). */
bool rules_key_acts(bool found, uint8_t kind, uint32_t key_user, uint32_t actor_user,
                    int64_t expires_at, int64_t now);

#endif
