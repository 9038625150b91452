/*
 * redis.h - the Redis side of the comparison: what a hand-rolled token
 * store on Redis would keep, and the generator drivers that read and write
 * it.
 *
 * The record of token i: key = lowercase hex SHA-256 of its secret string
 * (what a gateway computes from the bearer secret it receives), value =
 * "<client_id>|<tenant>|<account>|<roles>". A verify is one GET: a known
 * token must return exactly its record, an unknown secret nil.
 *
 * The keys are hashed once at start, not per request: the hash is the
 * gateway's work, not Redis's, and leaving it out keeps the generator's
 * cost per request no higher than for tokend (which hashes server-side).
 * This favours Redis, never tokend.
 */
#ifndef TB_REDIS_H
#define TB_REDIS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench/tokenbench/gen.h"
#include "bench/tokenbench/work.h"

#define RDS_KEY_LEN 64 /* hex SHA-256 */

typedef struct rds_ctx {
    const work_tokens *t;         /* borrowed */
    char (*key)[RDS_KEY_LEN + 1]; /* per item, owned */
    char suffix[WORK_ROLES_MAX + 2 * TK_SLUG_MAX + 4]; /* "|tenant|account|roles" */
    size_t suffix_len;
    uint64_t nonce;               /* SET keys of one run differ from any other run's */
} rds_ctx;

/* Prepares the GET workload over t (hashes every secret). */
void rds_init(rds_ctx *x, const work_tokens *t);
void rds_free(rds_ctx *x);

/* Writes the record value of item i into out (cap bytes); its length. */
size_t rds_value(const rds_ctx *x, uint32_t i, char *out, size_t cap);

/* Driver: GET key(item), answer checked against the record (known) or nil
 * (unknown). */
void rds_get_driver(rds_ctx *x, gen_driver *d);

/* Driver: SET of a fresh record per request (item = a unique counter);
 * answer "+OK". Keys are "hex SHA-256 of (nonce, item)", as for a new
 * token; x->t may be NULL. */
void rds_set_driver(rds_ctx *x, gen_driver *d);

/* Writes the record of every known token of x (pipelined SETs in batches)
 * and checks each "+OK"; over TLS with t (NULL: plain). 0 or -1 with the
 * reason on stderr; *seconds gets the time it took. */
int rds_load(const char *addr, tls *t, const rds_ctx *x, double *seconds);

/* CONFIG GET name into out (cap bytes), over TLS with t; 0 or -1. */
int rds_config_get(const char *addr, tls *t, const char *name, char *out, size_t cap);

#endif
