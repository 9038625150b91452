/* rules.c - the domain rules as pure decisions; see rules.h. */
#include "core/rules.h"

#include "core/err.h"

int rules_may_manage_tokens(const tk_actor *a, bool user_portal, bool create)
{
    if (a->kind == TK_ACTOR_OPERATOR)
        return create ? TK_EDENIED : 0;
    if (a->kind != TK_ACTOR_USER || !user_portal)
        return TK_EDENIED;
    return 0;
}

int rules_may_assign(const uint32_t *user_levels, size_t nuser,
                     const uint32_t *role_levels, size_t nroles, rules_why *why)
{
    rules_why w = {.no_level = nuser == 0};
    if (nuser == 0) {
        if (why)
            *why = w;
        return TK_EDENIED;
    }
    uint32_t strongest = user_levels[0];
    for (size_t i = 1; i < nuser; i++)
        if (user_levels[i] < strongest)
            strongest = user_levels[i];
    for (size_t i = 0; i < nroles; i++)
        if (role_levels[i] < strongest) {
            if (why)
                *why = (rules_why){.strongest = strongest, .role = i};
            return TK_EDENIED;
        }
    return 0;
}

int rules_token_create(bool api_tokens_on, const uint32_t *user_levels, size_t nuser,
                       const uint32_t *role_levels, size_t nroles, rules_why *why)
{
    if (!api_tokens_on)
        return TK_EDISABLED;
    if (nroles == 0 || nroles > TK_MAX_ROLES)
        return TK_EINVAL;
    return rules_may_assign(user_levels, nuser, role_levels, nroles, why);
}

bool rules_may_see(const tk_actor *a, uint32_t tenant, uint32_t account)
{
    if (a->kind == TK_ACTOR_OPERATOR)
        return true;
    return a->kind == TK_ACTOR_USER && a->tenant == tenant && a->account == account;
}

tk_verdict rules_verify_state(uint8_t want, uint8_t kind, bool api_tokens,
                              int64_t expires_at, int64_t now)
{
    if (kind != want)
        return TK_V_WRONG_KIND;
    if (kind == TK_KIND_TOKEN && !api_tokens)
        return TK_V_DISABLED;
    if (expires_at != 0 && now >= expires_at)
        return TK_V_EXPIRED;
    return TK_V_VALID;
}

bool rules_key_acts(bool found, uint8_t kind, uint32_t key_user, uint32_t actor_user,
                    int64_t expires_at, int64_t now)
{
    if (!found || key_user != actor_user)
        return false;
    return rules_verify_state(TK_KIND_PERSONAL, kind, true, expires_at, now) == TK_V_VALID;
}
