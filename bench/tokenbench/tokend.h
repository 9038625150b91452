/*
 * tokend.h - the tokend side of tokenbench: set-up over the wire protocol
 * (docs/protocol.md) with the blocking client library (net/client.h), the
 * pipelined bulk create of `load`, and the generator drivers for VERIFY and
 * TOKEN_CREATE.
 *
 * The drivers write frames by hand (a 12-byte header and a pre-encoded or
 * fixed msgpack body: no allocation per request) and check every reply
 * with the client library's own strict decoder, so a reply that a real
 * client would refuse counts as wrong.
 */
#ifndef TB_TOKEND_H
#define TB_TOKEND_H
#include <stddef.h>
#include <stdint.h>

#include "bench/tokenbench/gen.h"
#include "bench/tokenbench/work.h"
#include "core/model.h"
#include "net/client.h"

/* What `load` and `create` set up (and reuse when it already exists). */
typedef struct tkd_world {
    const char *tenant, *account, *user, *role;
} tkd_world;

/* The permissions given to the benchmark's role. */
#define TKD_PERMS {"orders:read", "orders:list"}

/* As the operator (operator_key): creates the tenant with API tokens on,
 * the role's permissions, the role (level 1), the account and the user
 * (portal, holding the role); what exists already is kept. Writes a new
 * personal key of the user into key. Over TLS with tlso (NULL: plain). 0,
 * or -1 with the reason on stderr. */
int tkd_setup(const char *addr, const tkc_tls *tlso, const char *operator_key,
              const tkd_world *w, char key[TK_SECRET_LEN + 1]);

/* As the user (personal key): creates t->n tokens with t->roles over one
 * connection, window requests in flight, and stores their secrets in t
 * (client IDs filled too), over TLS with tlso (NULL: plain). *seconds gets
 * the time from the first request to the last reply. 0, or -1 with the
 * reason on stderr. */
int tkd_load(const char *addr, const tkc_tls *tlso, const char *key, unsigned window,
             work_tokens *t, double *seconds);

typedef struct tkd_ctx {
    const work_tokens *t;       /* borrowed; the verify driver's expectations */
    const char *key;            /* borrowed; AUTH with it on every connection, or NULL */
    uint32_t nroles;
    char roles[TK_MAX_ROLES][TK_KEY_MAX + 1];
    uint8_t create_body[512];   /* TOKEN_CREATE's body, encoded once */
    size_t create_len;
} tkd_ctx;

/* Prepares the drivers: t may be NULL (create), key may be NULL (verify
 * needs no credential), roles "r1,r2" (t->roles when NULL). 0, or -1 when
 * roles is not a list of 1..TK_MAX_ROLES keys. */
int tkd_init(tkd_ctx *x, const work_tokens *t, const char *key, const char *roles);

/* Driver: VERIFY {"secret"}; a known token must come back valid with its
 * client ID, the tenant, the account and the roles of the tokens file, an
 * unknown secret invalid with reason "unknown". The first reply for an item
 * gets that full check (the client library's strict decoder, then field by
 * field); later replies for the item must be byte-identical to it. */
void tkd_verify_driver(tkd_ctx *x, gen_driver *d);

/* Driver: TOKEN_CREATE {"roles", "description"} after AUTH with x->key; a
 * reply must carry a client ID and a well-formed secret of that ID. */
void tkd_create_driver(tkd_ctx *x, gen_driver *d);

/* Driver: TOKEN_DELETE {"client_id"} of item, after AUTH with x->key (the
 * operator's): each item once, so the pick is a counter and x->t must hold
 * more tokens than the run deletes (an item past them counts as wrong). A
 * reply must be status 0. */
void tkd_delete_driver(tkd_ctx *x, gen_driver *d);

#endif
