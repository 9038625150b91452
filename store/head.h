/*
 * head.h - signed heads of the event log (prefix head_): a record of the
 * log's last seq and chain hash at a time, signed with an Ed25519 key
 * kept outside the data directory (libsodium's crypto_sign).
 *
 * The chain alone proves nothing to someone who can write the log: they can
 * cut it at a record boundary or edit a record and chain the rest again. A
 * head signed with a key they do not hold, and kept in two places (the log
 * directory and beside the key), says how far the history went and what it
 * was: a log shorter than its latest head, or whose chain hash at the head's
 * seq differs, is tampered. A head taken elsewhere (a backup, a monitoring
 * system) as "SEQ:HASH" checks the same without the key.
 *
 * Files: the key FILE holds "tksk_" and the 32-byte seed in hex (mode 0600,
 * made when missing); FILE.pub "tkpk_" and the public key in hex; a head is
 * one line "tokend-head 1 SEQ HASH TIME_MS SIG" (hex), written to a
 * temporary file, fsynced and renamed over DIR/log/head and FILE.head.
 */
#ifndef TK_STORE_HEAD_H
#define TK_STORE_HEAD_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/model.h"

#define HEAD_FILE "head" /* in the log directory */

typedef struct head_rec {
    uint64_t seq;
    uint8_t hash[TK_HASH_LEN];
    int64_t time_ms;
} head_rec;

typedef struct head_key head_key; /* the signing key (its secret half) */

/* Reads the key FILE, creating it (and FILE.pub) when missing. 0, TK_EIO,
 * TK_EINVAL (not a key file, or others may read it); why says which. */
int head_key_load(const char *path, head_key **out, tk_why *why);
void head_key_free(head_key *k); /* wipes it; k may be NULL */

/* Signs h and writes it to DIR/log/head (logdir) and beside the key. 0 or
 * TK_EIO. */
int head_write(const head_key *k, const char *logdir, const head_rec *h, tk_why *why);

/* The public key of a FILE.pub (or of a key, head_key_pub). 0, TK_EIO,
 * TK_EINVAL. */
int head_pub_load(const char *path, uint8_t pub[32], tk_why *why);
void head_key_pub(const head_key *k, uint8_t pub[32]);

/* The latest head verified with pub among DIR/log/head and the key's own
 * copy (key_path.head; key_path may be NULL): *found false when there is
 * none. A head file that does not verify is an error: TK_ECORRUPT (forged
 * or damaged), why saying which file. */
int head_latest(const uint8_t pub[32], const char *logdir, const char *key_path,
                head_rec *out, bool *found, tk_why *why);

/* Parses "SEQ:HASH" (--expect-head). 0 or TK_EINVAL. */
int head_parse(const char *text, head_rec *out);

#endif
