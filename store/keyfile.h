/*
 * keyfile.h - the data directory's key files (operator.key, gateway.key).
 *
 * A key is a 4-character prefix ("tko_", "tkg_") and 64 hex digits of 32
 * bytes from libsodium's CSPRNG, stored on one line in DIR/NAME, mode 0600,
 * created (and fsynced, with the directory) at first use. The file holds
 * the key itself: its owner has to read it to use it.
 */
#ifndef TK_KEYFILE_H
#define TK_KEYFILE_H
#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

#define KEYFILE_KEY_LEN 68 /* prefix + 64 hex digits, without NUL */

/* Whether s[0..n) is exactly one key of this form: the 4-character prefix
 * and 64 lowercase hex digits (the files', and the keyring's keys, which
 * the server makes the same way). */
bool keyfile_key_ok(const char *s, size_t n, const char *prefix);

/* A new key of this form: prefix and 32 bytes of libsodium's CSPRNG in
 * hex (the caller wipes it when done). */
void keyfile_new_key(const char *prefix, char key[KEYFILE_KEY_LEN + 1]);

/* Reads DIR/name into key (NUL-terminated), creating it if missing.
 * prefix is the 4-character prefix the key must carry. 0, or TK_EIO (cannot
 * read or create) / TK_EINVAL (not a key file), saying why. */
int keyfile_load(const char *dir, const char *name, const char *prefix,
                 char key[KEYFILE_KEY_LEN + 1], tk_why *why);

#endif
