/*
 * sha256.h - SHA-256, the one hash of secrets, keys and the log's chain.
 *
 * Backed by OpenSSL's libcrypto, whose SHA-256 uses the CPU's SHA
 * extensions (SHA-NI) where present: on the development machine one
 * 48-byte secret hashes in about 70 ns against about 190-400 ns for
 * libsodium's portable code, and the hash is the largest single cost of a
 * verification. Known-answer tests: tests/core/test_sha256.c.
 */
#ifndef TK_SHA256_H
#define TK_SHA256_H
#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32

/* out = SHA-256(data[0..len)). Never allocates; thread-safe. */
void sha256(uint8_t out[SHA256_LEN], const void *data, size_t len);

/* Incremental form, for hashing a record in pieces. The state is opaque
 * storage sized for OpenSSL's SHA256_CTX (checked at compile time). */
typedef struct sha256_ctx {
    _Alignas(8) unsigned char opaque[112];
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t len);
void sha256_final(sha256_ctx *c, uint8_t out[SHA256_LEN]);

#endif
