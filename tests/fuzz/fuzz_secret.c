/*
 * fuzz_secret.c - secret_parse (and its steps) and secret_id_parse
 * (core/secret.h) over arbitrary strings.
 *
 * Each is checked against a slow reference written from the header's
 * description of the format, in both directions (the parser accepts exactly
 * what the reference accepts):
 *  - secret_parse accepts only a 76-character string with a "tkt_" or "tkp_"
 *    prefix (kind to match), 66 base62 body digits forming six 11-digit
 *    words each <= 2^64-1, and 6 check digits equal to crc32c(prefix||body);
 *    the id it returns is the first 16 bytes of the decoded words and the
 *    hash is SHA-256 of all 48;
 *  - its steps (secret_parse_id, then secret_parse_rest, or
 *    secret_parse_check and secret_parse_hash) accept exactly what it
 *    accepts, with its id and hash;
 *  - secret_id_parse accepts exactly the 8-4-4-4-12 hex form (either case),
 *    and secret_id_format of the result is the input in lower case;
 *  - on refusal neither writes its outputs (secret.h: "writes its outputs
 *    only on success").
 * Random bytes almost never carry a right checksum, so each 76-byte input is
 * also tried a second time with its last 6 characters replaced by the check
 * digits its first 70 call for: that drives the body decoding (alphabet,
 * the 2^64 limit per word) behind a passing checksum.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/crc32c.h"
#include "core/err.h"
#include "core/secret.h"
#include "tests/fuzz/fuzz.h"

#define PREFIX 4
#define WORDS 6
#define DIGITS 11
#define BODY (WORDS * DIGITS)
#define CHECK 6

static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static int b62(char c)
{
    const char *p = c ? strchr(alphabet, c) : NULL;
    return p ? (int)(p - alphabet) : -1;
}

/* The format of secret.h, decoded the slow way (128-bit arithmetic). */
static bool ref_secret(const char *s, size_t len, tk_kind *kind, uint8_t raw[48])
{
    unsigned __int128 check = 0;

    if (len != TK_SECRET_LEN)
        return false;
    if (memcmp(s, "tkt_", PREFIX) == 0)
        *kind = TK_KIND_TOKEN;
    else if (memcmp(s, "tkp_", PREFIX) == 0)
        *kind = TK_KIND_PERSONAL;
    else
        return false;
    for (int w = 0; w < WORDS; w++) {
        unsigned __int128 v = 0;
        for (int i = 0; i < DIGITS; i++) {
            int d = b62(s[PREFIX + w * DIGITS + i]);
            if (d < 0)
                return false;
            v = v * 62 + (unsigned)d;
        }
        if (v > UINT64_MAX)
            return false;
        for (int i = 0; i < 8; i++)
            raw[8 * w + i] = (uint8_t)(v >> (56 - 8 * i));
    }
    for (int i = 0; i < CHECK; i++) {
        int d = b62(s[PREFIX + BODY + i]);
        if (d < 0)
            return false;
        check = check * 62 + (unsigned)d;
    }
    return check == crc32c_extend(0, s, PREFIX + BODY);
}

/* The steps of a verify (secret_parse_id, then secret_parse_rest, or
 * secret_parse_check and secret_parse_hash) accept what secret_parse
 * accepts, with its id and hash; a refusal writes nothing. */
static void check_steps(const char *s, size_t len, bool ok, const tk_id *id,
                        const uint8_t hash[TK_HASH_LEN])
{
    tk_kind kind = (tk_kind)0x5a5a;
    tk_id sid, unset;
    uint8_t rhash[TK_HASH_LEN], shash[TK_HASH_LEN], unset_hash[TK_HASH_LEN];

    memset(&sid, 0xA5, sizeof sid);
    unset = sid;
    int rc = secret_parse_id(s, len, &kind, &sid);
    FZ_CHECK(rc == 0 || rc == TK_EINVAL, "secret_parse_id returns 0 or TK_EINVAL");
    if (rc != 0) {
        FZ_CHECK(!ok, "secret_parse_id refuses only what secret_parse refuses");
        FZ_CHECK(kind == (tk_kind)0x5a5a && memcmp(&sid, &unset, sizeof sid) == 0,
                 "a refused ID leaves the outputs alone");
        return;
    }
    memset(rhash, 0x5A, sizeof rhash);
    memcpy(unset_hash, rhash, sizeof rhash);
    rc = secret_parse_rest(s, &sid, rhash);
    FZ_CHECK(rc == 0 || rc == TK_EINVAL, "secret_parse_rest returns 0 or TK_EINVAL");
    FZ_CHECK((rc == 0) == ok, "id then rest accept exactly what secret_parse accepts");
    if (rc != 0)
        FZ_CHECK(memcmp(rhash, unset_hash, sizeof rhash) == 0,
                 "a refused rest leaves the hash alone");
    rc = secret_parse_check(s);
    FZ_CHECK(rc == 0 || rc == TK_EINVAL, "secret_parse_check returns 0 or TK_EINVAL");
    FZ_CHECK((rc == 0) == ok, "id then check accept exactly what secret_parse accepts");
    if (!ok)
        return;
    secret_parse_hash(s, &sid, shash);
    FZ_CHECK(memcmp(sid.b, id->b, TK_ID_LEN) == 0, "the steps' id is secret_parse's");
    FZ_CHECK(memcmp(rhash, hash, TK_HASH_LEN) == 0, "secret_parse_rest's hash is secret_parse's");
    FZ_CHECK(memcmp(shash, hash, TK_HASH_LEN) == 0, "secret_parse_hash's is secret_parse's");
}

static void check_secret(const char *s, size_t len)
{
    tk_kind kind = (tk_kind)0x5a5a, ref_kind = TK_KIND_NONE;
    tk_id id, unset_id;
    uint8_t hash[TK_HASH_LEN], unset_hash[TK_HASH_LEN], raw[48], want[TK_HASH_LEN];
    bool ok, ref_ok;

    memset(&id, 0xA5, sizeof id);
    memset(hash, 0x5A, sizeof hash);
    unset_id = id;
    memcpy(unset_hash, hash, sizeof hash);

    int rc = secret_parse(s, len, &kind, &id, hash);
    FZ_CHECK(rc == 0 || rc == TK_EINVAL, "secret_parse returns 0 or TK_EINVAL");
    ok = rc == 0;
    check_steps(s, len, ok, &id, hash);
    ref_ok = ref_secret(s, len, &ref_kind, raw);
    FZ_CHECK(ok == ref_ok, "secret_parse accepts exactly the well-formed secrets");
    if (!ok) {
        FZ_CHECK(kind == (tk_kind)0x5a5a && memcmp(&id, &unset_id, sizeof id) == 0 &&
                     memcmp(hash, unset_hash, sizeof hash) == 0,
                 "a refused secret leaves the outputs alone");
        return;
    }
    FZ_CHECK(len == TK_SECRET_LEN, "an accepted secret is 76 characters");
    FZ_CHECK((kind == TK_KIND_TOKEN && memcmp(s, "tkt_", 4) == 0) ||
                 (kind == TK_KIND_PERSONAL && memcmp(s, "tkp_", 4) == 0),
             "the kind matches the prefix");
    FZ_CHECK(kind == ref_kind, "kind");
    for (size_t i = PREFIX; i < len; i++)
        FZ_CHECK(b62(s[i]) >= 0, "body and check are base62");
    FZ_CHECK(memcmp(id.b, raw, TK_ID_LEN) == 0, "the id is the first 16 bytes");
    crypto_hash_sha256(want, raw, sizeof raw);
    FZ_CHECK(memcmp(hash, want, TK_HASH_LEN) == 0, "the hash is SHA-256(id||random)");
}

/* Replaces the last 6 characters of a 76-byte string by the check digits of
 * its first 70. */
static void fix_check(char *s)
{
    uint32_t crc = crc32c_extend(0, s, PREFIX + BODY);
    for (int i = CHECK - 1; i >= 0; i--) {
        s[PREFIX + BODY + i] = alphabet[crc % 62];
        crc /= 62;
    }
}

static void check_id(const char *s, size_t len)
{
    tk_id id, unset;
    bool ref_ok = len == TK_ID_STR_LEN;
    char out[TK_ID_STR_LEN + 1];

    memset(&id, 0xA5, sizeof id);
    unset = id;
    for (size_t i = 0; ref_ok && i < len; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        ref_ok = dash ? s[i] == '-' : isxdigit((unsigned char)s[i]) != 0;
    }
    int rc = secret_id_parse(s, len, &id);
    FZ_CHECK(rc == 0 || rc == TK_EINVAL, "secret_id_parse returns 0 or TK_EINVAL");
    FZ_CHECK((rc == 0) == ref_ok, "secret_id_parse accepts exactly the 8-4-4-4-12 hex form");
    if (rc != 0) {
        FZ_CHECK(memcmp(&id, &unset, sizeof id) == 0, "a refused id leaves the output alone");
        return;
    }
    secret_id_format(&id, out);
    for (size_t i = 0; i < len; i++)
        FZ_CHECK(out[i] == tolower((unsigned char)s[i]), "format(parse(s)) == lower(s)");
    FZ_CHECK(out[TK_ID_STR_LEN] == '\0', "formatted id is terminated");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (sodium_init() < 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;

    check_secret(s, size);
    check_id(s, size);
    if (size == TK_SECRET_LEN) {
        char *fixed = malloc(size); /* exact size: no NUL, as a peer would send it */
        FZ_CHECK(fixed != NULL, "malloc");
        memcpy(fixed, s, size);
        fix_check(fixed);
        check_secret(fixed, size);
        free(fixed);
    }
    return 0;
}
