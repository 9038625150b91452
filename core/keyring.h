/*
 * keyring.h - the server's named keys in memory (prefix kr_): operator keys
 * (the vendor's backend) and gateway keys (connections that only verify),
 * each by name and kept only as the SHA-256 of the key, never the key.
 *
 * Filled by the engine from the state at open and from each committed
 * batch (EV_KEYRING_*); asked on the loop thread, for every management
 * credential and gateway key presented. A handful of keys at most, so a
 * lookup compares the presented key's hash with every entry, in constant
 * time, with no early exit. One thread (the engine's loop thread).
 */
#ifndef TK_KEYRING_H
#define TK_KEYRING_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/model.h"

#define KR_MAX 64            /* named keys, operator and gateway together */
#define KR_BOOTSTRAP "initial" /* the name of DIR/operator.key's key */

typedef enum kr_kind { KR_OPERATOR = 1, KR_GATEWAY = 2 } kr_kind;

typedef struct kr kr;

void kr_new(kr **out); /* allocation aborts */
void kr_free(kr *k);   /* k may be NULL */

/* Puts (or replaces) the key called name. False when the ring is full. */
bool kr_put(kr *k, const char *name, size_t n, kr_kind kind, const tk_id *id,
            const uint8_t hash[TK_HASH_LEN]);

/* Removes the key called name (nothing when there is none). Every removal
 * changes kr_gen. */
void kr_del(kr *k, const char *name, size_t n);

bool kr_has(const kr *k, const char *name, size_t n);

/* The key of kind whose hash is hash: true, with its id and name (either
 * may be NULL). */
bool kr_find(const kr *k, const uint8_t hash[TK_HASH_LEN], kr_kind kind, tk_id *id,
             char name[TK_SLUG_MAX + 1]);

/* Changes whenever a key is removed: a connection that authenticated with
 * a key before checks it again when this moved. */
uint64_t kr_gen(const kr *k);

#endif
