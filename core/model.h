/*
 * model.h - the domain's vocabulary: limits, name syntax, actors, and the
 * answer of a verification. Pure definitions and validators; no state.
 *
 * Entities (DESIGN section 1): tenant (slug) > account (slug) > user (slug);
 * a tenant also holds permissions (key) and roles (key, level, permissions).
 * Credentials are tenant API tokens and personal API keys (secret.h).
 * Internally every entity has a dense uint32 id (from 1) assigned in event
 * order, so a replay of the log assigns the same ids.
 */
#ifndef TK_MODEL_H
#define TK_MODEL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/secret.h"

#define TK_SLUG_MAX 63          /* tenant, account, user: [a-z0-9][a-z0-9-]{0,62} */
#define TK_KEY_MAX 128          /* role and permission keys */
#define TK_NAME_MAX 128         /* role display names (UTF-8 bytes) */
#define TK_DESC_MAX 1024        /* descriptions (UTF-8 bytes) */
#define TK_MAX_ROLE_PERMS 256   /* permissions in one role */
#define TK_MAX_TENANT_PERMS 1024 /* permissions defined in one tenant */
#define TK_MAX_ROLES 16         /* roles on one token or one user */
#define TK_MAX_LEVEL 65535      /* role levels are 0 (strongest) .. this */
#define TK_MAX_EXPIRES 4294967295LL /* expiries are unix seconds up to 2106 (32 bits) */
#define TK_PEER_MAX 64          /* a client's address in an audit record: "[v6]:port" */

/* A tenant's quotas, set by the operator (TENANT_SET); 0 means no limit.
 * They bound what one tenant's users can make the store hold or do, so
 * that one tenant cannot take space or the writer from the others. */
typedef struct tk_limits {
    uint32_t tokens; /* live API tokens per account */
    uint32_t roles;  /* roles in the tenant */
    uint32_t keys;   /* live personal keys per user */
    uint32_t rate;   /* token creations per user per second (the bucket's refill) */
    uint32_t burst;  /* token creations a user may make at once (the bucket's size) */
} tk_limits;

/* A new tenant's quotas (docs/protocol.md, "Quotas and rate limits"). */
#define TK_LIMITS_DEFAULT ((tk_limits){.tokens = 10000, .roles = 1000, .keys = 100, \
                                       .rate = 10, .burst = 100})

/* Who performs a management operation. */
typedef enum tk_actor_kind {
    TK_ACTOR_OPERATOR = 1, /* the vendor's backend: the operator key */
    TK_ACTOR_USER = 2,     /* a user, through a personal API key */
} tk_actor_kind;

/* A user actor names the credential it authenticated with, so that a
 * write is checked against it as it stands when the write commits (DESIGN
 * rule 11): a personal key deleted or expired meanwhile acts no more, nor
 * does a portal session that ended or whose user lost the portal flag. */
typedef struct tk_actor {
    tk_actor_kind kind;
    uint32_t tenant;  /* TK_ACTOR_USER: the user's tenant, account and id */
    uint32_t account;
    uint32_t user;
    tk_id key;        /* TK_ACTOR_USER through a personal key: its id */
    uint64_t session; /* TK_ACTOR_USER through a portal session: its handle
                         (core/session.h); 0 for a personal key */
} tk_actor;

/* A borrowed byte slice (not NUL-terminated unless said). */
typedef struct tk_str {
    const char *p;
    size_t n;
} tk_str;

/* Validators: true when the text is acceptable for that field. */
bool model_slug_ok(const char *s, size_t n);
bool model_key_ok(const char *s, size_t n);  /* [A-Za-z0-9][A-Za-z0-9:._-]*, <= TK_KEY_MAX */
bool model_text_ok(const char *s, size_t n, size_t max); /* UTF-8, no control chars but \t */

/* An expiry given at creation: 0 (never), or a unix time after now and
 * at most TK_MAX_EXPIRES. A credential dead on arrival is refused. */
bool model_expiry_ok(int64_t expires, int64_t now);

/* Drops the later copies of any string given twice in items[0..*n), keeping
 * the first of each in order, and updates *n: a set of roles or
 * permissions named twice means that set once. */
void model_dedup(tk_str *items, uint32_t *n);

/* Why a verification failed (or TK_V_VALID). Stable: travels on the wire. */
typedef enum tk_verdict {
    TK_V_VALID = 0,
    TK_V_MALFORMED = 1, /* not a well-formed secret (format or checksum) */
    TK_V_UNKNOWN = 2,   /* no such credential (never existed or deleted) */
    TK_V_MISMATCH = 3,  /* wrong secret, or client ID and secret disagree */
    TK_V_WRONG_KIND = 4,/* a personal API key offered as a tenant token */
    TK_V_DISABLED = 5,  /* the tenant's api_tokens toggle is off */
    TK_V_EXPIRED = 6,   /* past expires_at */
    TK_V_UNAVAILABLE = 7, /* a replica that lost the primary past its lease: it cannot
                             vouch for anything now (fail closed); ask another */
} tk_verdict;

const char *model_verdict_name(tk_verdict v);

/* The answer of a verification. Strings are borrowed from the view that
 * produced it: valid until that view next changes (view.h). */
typedef struct tk_verify {
    tk_verdict verdict;
    tk_id client_id;
    const char *tenant;
    const char *account;
    int64_t expires_at; /* 0 = never */
    uint32_t nroles;
    const char *roles[TK_MAX_ROLES];
    uint32_t nperms;
    const char *perms[TK_MAX_TENANT_PERMS];
} tk_verify;

#endif
