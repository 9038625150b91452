/*
 * secret.h - identifiers, secrets, secret hashes.
 *
 * A credential is a 16-byte ID (UUID v4) and 32 random bytes from libsodium's
 * CSPRNG. Its string form carries both, so one string alone can be verified:
 *
 *     <prefix><body><check>
 *     prefix  "tkt_" for a tenant API token, "tkp_" for a personal API key
 *     body    66 base62 chars: the 48 bytes id||random as six big-endian
 *             64-bit words, each written as exactly 11 base62 digits
 *     check   6 base62 digits of crc32c(prefix||body)
 *
 * 76 characters in all (TK_SECRET_LEN). The checksum lets a gateway or a
 * secret scanner reject a mistyped or truncated secret without a lookup.
 * Only secret_hash() of the secret is ever stored: SHA-256 over id||random
 * (one compression block), compared in constant time.
 */
#ifndef TK_SECRET_H
#define TK_SECRET_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TK_ID_LEN 16
#define TK_RAND_LEN 32
#define TK_HASH_LEN 32
#define TK_SECRET_LEN 76   /* characters, without NUL */
#define TK_ID_STR_LEN 36   /* canonical UUID text, without NUL */

typedef enum tk_kind {
    TK_KIND_NONE = 0,
    TK_KIND_TOKEN = 1,    /* tenant API token: verifies for gateways */
    TK_KIND_PERSONAL = 2, /* personal API key: authenticates a user to tokend */
} tk_kind;

typedef struct tk_id {
    uint8_t b[TK_ID_LEN];
} tk_id;

/* Fills out with a fresh random UUID v4 (version and variant bits set). */
void secret_new_id(tk_id *out);

/* Writes the canonical lowercase 8-4-4-4-12 form plus NUL into out. */
void secret_id_format(const tk_id *id, char out[TK_ID_STR_LEN + 1]);

/* Parses the canonical form (either case); 0 or TK_EINVAL. */
int secret_id_parse(const char *s, size_t len, tk_id *out);

/* Generates a new credential of the given kind for id: writes the secret
 * string (TK_SECRET_LEN chars plus NUL) into out and its hash into hash.
 * The random bytes never leave this function except inside out. */
void secret_generate(tk_kind kind, const tk_id *id, char out[TK_SECRET_LEN + 1],
                     uint8_t hash[TK_HASH_LEN]);

/* A pool of random bytes for making many credentials: one draw from the
 * CSPRNG (randombytes_buf) serves many credentials instead of two system
 * calls each (~2.6 us against ~0.3 us per credential here). The pool lives
 * in its own locked pages marked MADV_WIPEONFORK, so a forked child never
 * hands out its parent's bytes (it finds the pool empty and draws anew);
 * each byte is wiped as it is handed out. One thread at a time.
 * secret_pool_new returns NULL where such pages cannot be had; a NULL pool
 * draws from the CSPRNG for each credential. */
typedef struct secret_pool secret_pool;

secret_pool *secret_pool_new(void);
void secret_pool_free(secret_pool *p); /* p may be NULL */

/* secret_new_id and secret_generate in one, from the pool's bytes: a new
 * random ID, and the credential string and hash for it. */
void secret_new_credential(secret_pool *p, tk_kind kind, tk_id *id,
                           char out[TK_SECRET_LEN + 1], uint8_t hash[TK_HASH_LEN]);

/* Parses a secret string: checks length, prefix, alphabet, canonical
 * encoding and checksum, without any lookup. On success fills kind, id and
 * hash (the value to compare against the stored one) and returns 0;
 * otherwise TK_EINVAL. Never allocates. */
int secret_parse(const char *s, size_t len, tk_kind *kind, tk_id *id,
                 uint8_t hash[TK_HASH_LEN]);

/* secret_parse in steps, for a verify that starts its index lookup on the
 * ID before the rest of the format is checked. A secret is well formed
 * exactly when secret_parse_id and then secret_parse_rest (or
 * secret_parse_check) return 0; each returns TK_EINVAL otherwise.
 *  - secret_parse_id checks the length, the prefix and the ID's digits and
 *    fills kind and id; it is not the format check.
 *  - secret_parse_rest checks the rest of a secret secret_parse_id accepted
 *    and fills hash, in one pass (secret_parse is the two in a row).
 *  - secret_parse_check checks the rest without hashing, for a verify that
 *    hashes only when the ID is indexed: secret_parse_hash then fills hash
 *    (for a secret the check refused, some 32 bytes).
 * id is the one secret_parse_id took from s. None allocates, and none
 * writes its outputs on failure. */
int secret_parse_id(const char *s, size_t len, tk_kind *kind, tk_id *id);
int secret_parse_rest(const char *s, const tk_id *id, uint8_t hash[TK_HASH_LEN]);
int secret_parse_check(const char *s);
void secret_parse_hash(const char *s, const tk_id *id, uint8_t hash[TK_HASH_LEN]);

/* Constant-time equality of n bytes: the time depends on n only. A word
 * at a time (sodium_memcmp goes a volatile byte at a time, several per
 * cent of a verify). */
bool secret_equal(const void *a, const void *b, size_t n);

/* secret_equal of two whole hashes. */
bool secret_hash_equal(const uint8_t a[TK_HASH_LEN], const uint8_t b[TK_HASH_LEN]);

#endif
