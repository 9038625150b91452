/*
 * work.h - the workload both servers are driven with: the tokens file, the
 * unknown secrets, and which token each request asks about.
 *
 * The tokens file is what `tokenbench load` leaves behind: a header line
 * "# tokenbench tenant=T account=A roles=R1,R2" naming what every token
 * carries, then one secret per line. Every other mode reads it, so tokend
 * and Redis are asked about exactly the same secrets.
 *
 * Unknown secrets (the --invalid-ratio share of requests) are well-formed
 * tenant-token secrets with fresh random IDs: they pass the format and
 * checksum and cost a lookup, as a stolen-but-revoked or guessed token
 * would; they are not garbage that a server could refuse without looking.
 *
 * The picker draws, per request, an invalid secret with probability R,
 * else a known token uniformly or by a Zipf law of exponent s (token i has
 * weight 1/(i+1)^s), from a per-thread random state; it never allocates.
 */
#ifndef TB_WORK_H
#define TB_WORK_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/model.h"
#include "core/secret.h"

#define WORK_ROLES_MAX 256 /* the roles text of the header, "r1,r2" */

typedef struct work_tokens {
    size_t n;                              /* known tokens: items [0, n) */
    size_t ninvalid;                       /* unknown secrets: items [n, n + ninvalid) */
    char (*secret)[TK_SECRET_LEN + 1];     /* n + ninvalid, owned */
    char (*client_id)[TK_ID_STR_LEN + 1];  /* n + ninvalid, owned (from the secret) */
    char tenant[TK_SLUG_MAX + 1];
    char account[TK_SLUG_MAX + 1];
    char roles[WORK_ROLES_MAX];            /* comma-separated, as on the token */
} work_tokens;

/* Reads a tokens file, then appends ninvalid fresh unknown secrets. Every
 * line is checked to be a well-formed tenant-token secret. 0, or -1 with
 * the reason on stderr. t is filled and owns its arrays (work_tokens_free). */
int work_tokens_read(const char *path, size_t ninvalid, work_tokens *t);

/* An empty set for n known tokens (secrets to be filled by the caller,
 * then work_tokens_index) with tenant/account/roles copied. */
void work_tokens_alloc(work_tokens *t, size_t n, const char *tenant, const char *account,
                       const char *roles);

/* Fills client_id[i] from secret[i] for every item; 0, or -1 when one is
 * not a well-formed token secret. */
int work_tokens_index(work_tokens *t);

/* Writes t's known tokens as a tokens file (mode 0600: the secrets are
 * live credentials); 0 or -1 with the reason on stderr. */
int work_tokens_save(const char *path, const work_tokens *t);

/* Wipes the secrets and frees t's arrays. */
void work_tokens_free(work_tokens *t);

/* ---- the picker ---------------------------------------------------------- */

typedef struct work_pick {
    size_t n, ninvalid;
    uint64_t invalid_below; /* a draw below this picks an invalid secret */
    double *cdf;            /* Zipf: cumulative weights of items [0, n); NULL = uniform */
} work_pick;

/* Prepares draws over t: invalid_ratio in [0, 1] (needs t->ninvalid > 0
 * when non-zero), zipf 0 for uniform. 0, or -1 on a bad argument. */
int work_pick_init(work_pick *p, const work_tokens *t, double invalid_ratio, double zipf);
void work_pick_free(work_pick *p);

/* The next item; rng is the caller's state (work_seed). Thread-safe for
 * distinct rng states: p is only read. */
uint32_t work_pick_next(const work_pick *p, uint64_t *rng);

/* A picker callback for gen.h (arg is a work_pick). */
uint32_t work_pick_cb(void *arg, uint64_t *rng);

/* splitmix64: the next 64 random bits of state s. */
static inline uint64_t work_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#endif
