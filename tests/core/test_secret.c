/* test_secret.c - IDs, the secret string format and its hash.
 *
 * The suite installs its own libsodium randombytes implementation (public
 * API, randombytes_set_implementation) before anything else runs. By default
 * it forwards to the system CSPRNG and records what it handed out, so a test
 * can check what became of the random bytes; in "fixed" mode it hands out
 * chosen bytes, so secret_generate's output can be compared with known
 * answers computed independently (Python hashlib / sha256sum; the script is
 * quoted next to the vectors). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "core/crc32c.h"
#include "core/err.h"
#include "core/secret.h"

static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "abcdefghijklmnopqrstuvwxyz";

/* ---- controllable randomness ------------------------------------------- */

static const uint8_t *fixed_next; /* when set, the next buf() call copies these */
static uint8_t last_rand[64];
static size_t last_rand_len;

static const char *test_rand_name(void)
{
    return "tokend-test";
}

static uint32_t test_rand_random(void)
{
    return randombytes_sysrandom_implementation.random();
}

static void test_rand_buf(void *const buf, const size_t size)
{
    if (fixed_next) {
        memcpy(buf, fixed_next, size);
        fixed_next = NULL;
    } else {
        randombytes_sysrandom_implementation.buf(buf, size);
    }
    last_rand_len = size < sizeof last_rand ? size : sizeof last_rand;
    memcpy(last_rand, buf, last_rand_len);
}

static randombytes_implementation test_rand = {
    .implementation_name = test_rand_name,
    .random = test_rand_random,
    .buf = test_rand_buf,
};

/* ---- helpers ------------------------------------------------------------ */

static void hex_lower(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
}

static void hex_upper(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02X", p[i]);
}

static void unhex(const char *h, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

/* Rewrites the 6 check digits of s[0..76) from crc32c of s[0..70),
 * independently of secret.c, so a test can craft a string whose only fault
 * is the one under test. */
static void fix_checksum(char *s)
{
    uint32_t c = crc32c_extend(0, s, 70);
    for (int i = 75; i >= 70; i--) {
        s[i] = alphabet[c % 62];
        c /= 62;
    }
}

/* secret_parse of s, after checking that the steps a verify takes give
 * the same answer, kind, id and hash: secret_parse_id then
 * secret_parse_rest, and secret_parse_id then secret_parse_check and
 * secret_parse_hash. Every case below is also one for them. */
static int parse(const char *s, size_t len)
{
    tk_kind kind, k2;
    tk_id id, id2;
    uint8_t hash[TK_HASH_LEN], h2[TK_HASH_LEN], h3[TK_HASH_LEN];
    int rc = secret_parse(s, len, &kind, &id, hash);
    int rc_id = secret_parse_id(s, len, &k2, &id2);
    int rc_rest = rc_id ? rc_id : secret_parse_rest(s, &id2, h2);
    int rc_check = rc_id ? rc_id : secret_parse_check(s);
    assert_int_equal(rc_rest, rc);
    assert_int_equal(rc_check, rc);
    if (rc == 0) {
        secret_parse_hash(s, &id2, h3);
        assert_int_equal(k2, kind);
        assert_memory_equal(id2.b, id.b, TK_ID_LEN);
        assert_memory_equal(h2, hash, TK_HASH_LEN);
        assert_memory_equal(h3, hash, TK_HASH_LEN);
    }
    return rc;
}

/* ---- known answers ------------------------------------------------------ */

/* python3:
 *   idb = bytes.fromhex("0f1e2d3c4b5a4978a695b4c3d2e1f001")
 *   rnd = bytes((i*37+11) & 0xff for i in range(32))
 *   words = [int.from_bytes((idb+rnd)[i:i+8], "big") for i in range(0, 48, 8)]
 *   body = "".join(base62(w, 11) for w in words)       # alphabet 0-9A-Za-z
 *   s = prefix + body; s += base62(crc32c(s.encode()), 6)
 *   hashlib.sha256(idb+rnd).hexdigest()               # == sha256sum */
static const char kat_id_hex[] = "0f1e2d3c4b5a4978a695b4c3d2e1f001";
static const char kat_rand_hex[] =
    "0b30557a9fc4e90e33587da2c7ec11365b80a5caef14395e83a8cdf2173c6186";
static const char kat_token[] =
    "tkt_1ITGmfJN0o4EIj4Ij9t1DV0xYZxieaakw4PJKU78jDx07r450VbjjfqBIopWpPDOis3mbeoF";
static const char kat_personal[] =
    "tkp_1ITGmfJN0o4EIj4Ij9t1DV0xYZxieaakw4PJKU78jDx07r450VbjjfqBIopWpPDOis3Ub4gR";
static const char kat_hash_hex[] =
    "c657d4a007f9699871e3837b6f19348fc4bbc95a278abc2e9f9a774a526f59b7";

/* All 48 bytes 0xFF: every word is 2^64-1 = "LygHa16AHYF", the largest
 * canonical group. */
static const char kat_max[] =
    "tkt_LygHa16AHYFLygHa16AHYFLygHa16AHYFLygHa16AHYFLygHa16AHYFLygHa16AHYF3016wW";
static const char kat_max_hash_hex[] =
    "80a76a18acf8cb64fec3a659ffc4bab4a87cd9a6fde4dab2161a8751d136c9d2";

static void generate_fixed(tk_kind kind, const char *id_hex, const char *rand_hex,
                           char out[TK_SECRET_LEN + 1], uint8_t hash[TK_HASH_LEN])
{
    tk_id id;
    uint8_t rnd[TK_RAND_LEN];
    unhex(id_hex, id.b, TK_ID_LEN);
    unhex(rand_hex, rnd, TK_RAND_LEN);
    fixed_next = rnd;
    secret_generate(kind, &id, out, hash);
    assert_null(fixed_next); /* the fixed bytes were used */
}

static void encoding_known_answer(void **state)
{
    (void)state;
    char out[TK_SECRET_LEN + 1];
    uint8_t hash[TK_HASH_LEN], want[TK_HASH_LEN];
    unhex(kat_hash_hex, want, TK_HASH_LEN);

    generate_fixed(TK_KIND_TOKEN, kat_id_hex, kat_rand_hex, out, hash);
    assert_string_equal(out, kat_token);
    assert_memory_equal(hash, want, TK_HASH_LEN);

    generate_fixed(TK_KIND_PERSONAL, kat_id_hex, kat_rand_hex, out, hash);
    assert_string_equal(out, kat_personal);
    assert_memory_equal(hash, want, TK_HASH_LEN); /* the hash covers id||random only */
}

static void hash_known_answer(void **state)
{
    (void)state;
    tk_kind kind = TK_KIND_NONE;
    tk_id id, want_id;
    uint8_t hash[TK_HASH_LEN], want[TK_HASH_LEN];
    unhex(kat_hash_hex, want, TK_HASH_LEN);
    unhex(kat_id_hex, want_id.b, TK_ID_LEN);

    assert_int_equal(secret_parse(kat_token, TK_SECRET_LEN, &kind, &id, hash), 0);
    assert_int_equal(kind, TK_KIND_TOKEN);
    assert_memory_equal(id.b, want_id.b, TK_ID_LEN);
    assert_memory_equal(hash, want, TK_HASH_LEN);

    assert_int_equal(secret_parse(kat_personal, TK_SECRET_LEN, &kind, &id, hash), 0);
    assert_int_equal(kind, TK_KIND_PERSONAL);
    assert_memory_equal(id.b, want_id.b, TK_ID_LEN);
    assert_memory_equal(hash, want, TK_HASH_LEN);
}

/* The steps on their own: the ID comes out of a secret whose other words
 * or checksum are wrong (it is not the format check; secret_parse_rest and
 * secret_parse_check are), and a refusal writes nothing. */
static void parse_in_steps(void **state)
{
    (void)state;
    tk_kind kind = (tk_kind)77;
    tk_id id, want_id;
    uint8_t hash[TK_HASH_LEN], want[TK_HASH_LEN];
    unhex(kat_hash_hex, want, TK_HASH_LEN);
    unhex(kat_id_hex, want_id.b, TK_ID_LEN);

    assert_int_equal(secret_parse_id(kat_token, TK_SECRET_LEN, &kind, &id), 0);
    assert_int_equal(kind, TK_KIND_TOKEN);
    assert_memory_equal(id.b, want_id.b, TK_ID_LEN);
    assert_int_equal(secret_parse_check(kat_token), 0);
    secret_parse_hash(kat_token, &id, hash);
    assert_memory_equal(hash, want, TK_HASH_LEN);
    memset(hash, 0, sizeof hash);
    assert_int_equal(secret_parse_rest(kat_token, &id, hash), 0);
    assert_memory_equal(hash, want, TK_HASH_LEN);

    /* A wrong digit in the first random word (position 26) or in the check
     * (75), the checksum not fixed: the ID is read all the same, the check
     * refuses. */
    char s[TK_SECRET_LEN + 1];
    for (int pos = 26; pos < TK_SECRET_LEN; pos += 49) {
        memcpy(s, kat_token, sizeof s);
        s[pos] = s[pos] == 'a' ? 'b' : 'a';
        memset(&id, 0xA5, sizeof id);
        assert_int_equal(secret_parse_id(s, TK_SECRET_LEN, &kind, &id), 0);
        assert_memory_equal(id.b, want_id.b, TK_ID_LEN);
        assert_int_equal(secret_parse_check(s), TK_EINVAL);
        memset(hash, 0x5A, sizeof hash);
        assert_int_equal(secret_parse_rest(s, &id, hash), TK_EINVAL);
        for (int i = 0; i < TK_HASH_LEN; i++)
            assert_int_equal(hash[i], 0x5A);
    }

    /* Refused by the first step: length, prefix, an ID digit outside the
     * alphabet, an ID word past 2^64-1; kind and id untouched. */
    const char *why[] = {"length", "prefix", "alphabet", "canonical"};
    for (int k = 0; k < 4; k++) {
        size_t len = TK_SECRET_LEN;
        memcpy(s, kat_token, sizeof s);
        if (k == 0)
            len--;
        else if (k == 1)
            s[2] = 'x';
        else if (k == 2)
            s[10] = '-';
        else
            memcpy(s + 15, "zzzzzzzzzzz", 11);
        fix_checksum(s);
        kind = (tk_kind)77;
        memset(&id, 0xA5, sizeof id);
        if (secret_parse_id(s, len, &kind, &id) != TK_EINVAL)
            fail_msg("secret_parse_id accepted a bad %s", why[k]);
        assert_int_equal(kind, 77);
        for (int i = 0; i < TK_ID_LEN; i++)
            assert_int_equal(id.b[i], 0xA5);
    }
}

static void largest_words_known_answer(void **state)
{
    (void)state;
    char out[TK_SECRET_LEN + 1];
    uint8_t hash[TK_HASH_LEN], want[TK_HASH_LEN], got[TK_HASH_LEN];
    tk_kind kind;
    tk_id id;
    unhex(kat_max_hash_hex, want, TK_HASH_LEN);

    generate_fixed(TK_KIND_TOKEN, "ffffffffffffffffffffffffffffffff",
                   "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                   out, hash);
    assert_string_equal(out, kat_max);
    assert_memory_equal(hash, want, TK_HASH_LEN);
    assert_int_equal(secret_parse(kat_max, TK_SECRET_LEN, &kind, &id, got), 0);
    assert_memory_equal(got, want, TK_HASH_LEN);
}

/* ---- round trips -------------------------------------------------------- */

static void round_trip_both_kinds(void **state)
{
    (void)state;
    const tk_kind kinds[] = {TK_KIND_TOKEN, TK_KIND_PERSONAL};
    const char *prefixes[] = {"tkt_", "tkp_"};
    for (int k = 0; k < 2; k++) {
        for (int n = 0; n < 100; n++) {
            tk_id id, got_id;
            char s[TK_SECRET_LEN + 1];
            uint8_t hash[TK_HASH_LEN], got_hash[TK_HASH_LEN], want[TK_HASH_LEN];
            uint8_t raw[TK_ID_LEN + TK_RAND_LEN];
            tk_kind kind = TK_KIND_NONE;

            secret_new_id(&id);
            secret_generate(kinds[k], &id, s, hash);
            assert_int_equal(last_rand_len, TK_RAND_LEN);
            assert_int_equal(strlen(s), TK_SECRET_LEN);
            assert_memory_equal(s, prefixes[k], 4);
            for (int i = 4; i < TK_SECRET_LEN; i++)
                assert_non_null(strchr(alphabet, s[i]));

            /* The hash handed back is SHA-256(id||random). */
            memcpy(raw, id.b, TK_ID_LEN);
            memcpy(raw + TK_ID_LEN, last_rand, TK_RAND_LEN);
            crypto_hash_sha256(want, raw, sizeof raw);
            assert_memory_equal(hash, want, TK_HASH_LEN);

            assert_int_equal(secret_parse(s, TK_SECRET_LEN, &kind, &got_id, got_hash), 0);
            assert_int_equal(kind, kinds[k]);
            assert_memory_equal(got_id.b, id.b, TK_ID_LEN);
            assert_true(secret_hash_equal(got_hash, hash));
        }
    }
}

static void secret_is_base62_not_hex_of_random(void **state)
{
    (void)state;
    char s[TK_SECRET_LEN + 1];
    uint8_t hash[TK_HASH_LEN];
    char lo[2 * TK_RAND_LEN + 1], up[2 * TK_RAND_LEN + 1];
    tk_id id;

    for (int n = 0; n < 200; n++) {
        secret_new_id(&id);
        secret_generate(n % 2 ? TK_KIND_TOKEN : TK_KIND_PERSONAL, &id, s, hash);
        assert_int_equal(last_rand_len, TK_RAND_LEN);
        hex_lower(last_rand, TK_RAND_LEN, lo);
        hex_upper(last_rand, TK_RAND_LEN, up);
        /* No 4-byte run of the random bytes appears as hex in either case. */
        for (size_t i = 0; i + 8 <= 2 * TK_RAND_LEN; i += 2) {
            char lo8[9], up8[9];
            memcpy(lo8, lo + i, 8);
            memcpy(up8, up + i, 8);
            lo8[8] = up8[8] = '\0';
            assert_null(strstr(s, lo8));
            assert_null(strstr(s, up8));
        }
        /* Nor any 8-byte run raw. */
        for (size_t i = 0; i + 8 <= TK_RAND_LEN; i++)
            assert_null(memmem(s, TK_SECRET_LEN, last_rand + i, 8));
    }
    /* And the fixed vector: the random part is not spelled in hex. */
    assert_null(strstr(kat_token, kat_rand_hex));
    assert_null(strstr(kat_token, kat_id_hex));
}

static void two_secrets_differ(void **state)
{
    (void)state;
    tk_id id;
    char a[TK_SECRET_LEN + 1], b[TK_SECRET_LEN + 1];
    uint8_t ha[TK_HASH_LEN], hb[TK_HASH_LEN], ra[TK_RAND_LEN], rb[TK_RAND_LEN];

    secret_new_id(&id);
    secret_generate(TK_KIND_TOKEN, &id, a, ha);
    memcpy(ra, last_rand, TK_RAND_LEN);
    secret_generate(TK_KIND_TOKEN, &id, b, hb);
    memcpy(rb, last_rand, TK_RAND_LEN);

    assert_string_not_equal(a, b);
    /* Same id: the id groups agree, the random groups (chars 26..70) differ. */
    assert_memory_equal(a, b, 4 + 22);
    assert_memory_not_equal(a + 26, b + 26, 44);
    assert_memory_not_equal(ra, rb, TK_RAND_LEN);
    assert_false(secret_hash_equal(ha, hb));
}

/* ---- rejection ---------------------------------------------------------- */

static void every_substitution_rejected(void **state)
{
    (void)state;
    char s[TK_SECRET_LEN + 1];
    uint8_t hash[TK_HASH_LEN];
    tk_id id;

    secret_new_id(&id);
    secret_generate(TK_KIND_TOKEN, &id, s, hash);
    assert_int_equal(parse(s, TK_SECRET_LEN), 0);
    for (int pos = 0; pos < TK_SECRET_LEN; pos++) {
        char orig = s[pos];
        for (int c = 0; c < 256; c++) {
            if ((char)c == orig)
                continue;
            s[pos] = (char)c;
            assert_int_equal(parse(s, TK_SECRET_LEN), TK_EINVAL);
        }
        s[pos] = orig;
    }
    assert_int_equal(parse(s, TK_SECRET_LEN), 0);
}

static void every_truncation_and_extension_rejected(void **state)
{
    (void)state;
    char s[TK_SECRET_LEN + 2];
    uint8_t hash[TK_HASH_LEN];
    tk_id id;

    secret_new_id(&id);
    secret_generate(TK_KIND_PERSONAL, &id, s, hash);
    for (size_t len = 0; len < TK_SECRET_LEN; len++) {
        assert_int_equal(parse(s, len), TK_EINVAL); /* prefix of the string */
        assert_int_equal(parse(s + TK_SECRET_LEN - len, len), TK_EINVAL); /* suffix */
    }
    s[TK_SECRET_LEN] = 'a';
    s[TK_SECRET_LEN + 1] = '\0';
    assert_int_equal(parse(s, TK_SECRET_LEN + 1), TK_EINVAL);
    assert_int_equal(parse(s, TK_SECRET_LEN), 0);
}

static void prefix_swap_rejected(void **state)
{
    (void)state;
    char s[TK_SECRET_LEN + 1];
    memcpy(s, kat_token, sizeof s);
    s[2] = 'p'; /* tkt_ -> tkp_, checksum left as it was */
    assert_int_equal(parse(s, TK_SECRET_LEN), TK_EINVAL);
    memcpy(s, kat_personal, sizeof s);
    s[2] = 't';
    assert_int_equal(parse(s, TK_SECRET_LEN), TK_EINVAL);

    /* Unknown prefixes are refused even with a valid checksum. */
    const char *bad[] = {"tkx_", "TKT_", "tkt-", "xkt_", "tk__"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(s, kat_token, sizeof s);
        memcpy(s, bad[i], 4);
        fix_checksum(s);
        assert_int_equal(parse(s, TK_SECRET_LEN), TK_EINVAL);
    }
    /* Control: fix_checksum really produces a valid checksum. */
    memcpy(s, kat_token, sizeof s);
    s[2] = 'p';
    fix_checksum(s);
    assert_string_equal(s, kat_personal);
    assert_int_equal(parse(s, TK_SECRET_LEN), 0);
}

/* The checksum alone would catch a stray character; this checks the
 * alphabet rule by itself, with the checksum recomputed over the bad string. */
static void alphabet_enforced_even_with_valid_checksum(void **state)
{
    (void)state;
    char s[TK_SECRET_LEN + 1];
    int rejected = 0;
    for (int pos = 4; pos < 70; pos++) {
        for (int c = 0; c < 256; c++) {
            if (c != 0 && strchr(alphabet, c))
                continue;
            memcpy(s, kat_token, sizeof s);
            s[pos] = (char)c;
            fix_checksum(s);
            assert_int_equal(parse(s, TK_SECRET_LEN), TK_EINVAL);
            rejected++;
        }
    }
    assert_int_equal(rejected, 66 * (256 - 62));
}

/* The same for the check digits, which is subtler: a decoder that read a
 * non-digit as some value (here 255, the table's marker) could be matched by
 * a crafted check field. For each check position but the first (255 * 62^5
 * exceeds any CRC) find a body whose CRC equals such a field, then put every
 * non-alphabet byte there: all must be refused. */
static void alphabet_enforced_in_check_digits(void **state)
{
    (void)state;
    char s[TK_SECRET_LEN + 1];
    for (int pos = 1; pos < 6; pos++) {
        uint64_t weight = 255;
        for (int k = pos; k < 5; k++)
            weight *= 62;
        bool found = false;
        for (uint32_t n = 0; n < 62u * 62 * 62 * 62 && !found; n++) {
            memcpy(s, kat_token, sizeof s);
            /* Vary digits 2..5 of the first group (its lead digit is '1', so
             * the group stays canonical). */
            uint32_t m = n;
            for (int i = 9; i >= 6; i--) {
                s[i] = alphabet[m % 62];
                m /= 62;
            }
            uint32_t crc = crc32c_extend(0, s, 70);
            if (crc < weight)
                continue;
            uint64_t rest = crc - weight;
            char digits[6];
            for (int i = 5; i >= 0; i--) {
                digits[i] = alphabet[rest % 62];
                rest /= 62;
            }
            if (digits[pos] != '0')
                continue;
            found = true;
            memcpy(s + 70, digits, 6);
            for (int c = 0; c < 256; c++) {
                if (c != 0 && strchr(alphabet, c))
                    continue;
                s[70 + pos] = (char)c;
                assert_int_equal(parse(s, TK_SECRET_LEN), TK_EINVAL);
            }
        }
        assert_true(found);
    }
}

static void non_canonical_group_rejected(void **state)
{
    (void)state;
    char s[TK_SECRET_LEN + 1];
    for (int g = 0; g < 6; g++) {
        char *grp = s + 4 + 11 * g;

        memcpy(s, kat_token, sizeof s);
        memcpy(grp, "zzzzzzzzzzz", 11); /* 62^11 - 1 > 2^64 - 1 */
        fix_checksum(s);
        assert_int_equal(parse(s, TK_SECRET_LEN), TK_EINVAL);

        memcpy(s, kat_token, sizeof s);
        memcpy(grp, "LygHa16AHYG", 11); /* exactly 2^64 */
        fix_checksum(s);
        assert_int_equal(parse(s, TK_SECRET_LEN), TK_EINVAL);

        memcpy(s, kat_token, sizeof s);
        memcpy(grp, "LygHa16AHYF", 11); /* 2^64 - 1: still canonical */
        fix_checksum(s);
        assert_int_equal(parse(s, TK_SECRET_LEN), 0);

        /* The limit is decided on the digits, in byte order: each of these
         * differs from 2^64-1 in one digit, first in the leading 8 or in
         * the last 3 (python3: int(base62) against 2**64-1). */
        static const struct {
            const char *digits;
            int rc;
        } near[] = {
            {"LygHa16AHZ0", TK_EINVAL}, /* 2^64 + 46: 'Z' > 'Y' at 9 */
            {"LygHa16AHYE", 0},         /* 2^64 - 2 */
            {"LygHa16B000", TK_EINVAL}, /* 'B' > 'A' at 7, zeros after */
            {"LygHa15zzzz", 0},         /* '5' < '6' at 6, the most after */
            {"M0000000000", TK_EINVAL}, /* the first digit alone */
            {"KzzzzzzzzzZ", 0},
        };
        for (size_t i = 0; i < sizeof near / sizeof near[0]; i++) {
            memcpy(s, kat_token, sizeof s);
            memcpy(grp, near[i].digits, 11);
            fix_checksum(s);
            if (parse(s, TK_SECRET_LEN) != near[i].rc)
                fail_msg("group %d spelled %s", g, near[i].digits);
        }
    }
}

static void check_digits_must_match_exactly(void **state)
{
    (void)state;
    char s[TK_SECRET_LEN + 1];
    memcpy(s, kat_token, sizeof s);
    /* A check field spelling crc + 62^k for any k still differs as a number. */
    s[70] = (char)(s[70] == '0' ? '1' : '0');
    assert_int_equal(parse(s, TK_SECRET_LEN), TK_EINVAL);
    memcpy(s, kat_token, sizeof s);
    memcpy(s + 70, "zzzzzz", 6);
    assert_int_equal(parse(s, TK_SECRET_LEN), TK_EINVAL);
}

static void failed_parse_leaves_outputs_alone(void **state)
{
    (void)state;
    char s[TK_SECRET_LEN + 1];
    tk_kind kind = (tk_kind)77;
    tk_id id;
    uint8_t hash[TK_HASH_LEN];
    memset(&id, 0xA5, sizeof id);
    memset(hash, 0x5A, sizeof hash);
    memcpy(s, kat_token, sizeof s);
    s[40] = s[40] == 'a' ? 'b' : 'a';
    assert_int_equal(secret_parse(s, TK_SECRET_LEN, &kind, &id, hash), TK_EINVAL);
    assert_int_equal(kind, 77);
    for (int i = 0; i < TK_ID_LEN; i++)
        assert_int_equal(id.b[i], 0xA5);
    for (int i = 0; i < TK_HASH_LEN; i++)
        assert_int_equal(hash[i], 0x5A);
}

static void generate_with_no_kind_aborts(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        tk_id id;
        char s[TK_SECRET_LEN + 1];
        uint8_t hash[TK_HASH_LEN];
        memset(&id, 0, sizeof id);
        (void)freopen("/dev/null", "w", stderr);
        secret_generate(TK_KIND_NONE, &id, s, hash);
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGABRT);
}

/* ---- IDs ---------------------------------------------------------------- */

static void new_ids_are_uuid_v4(void **state)
{
    (void)state;
    tk_id prev;
    memset(&prev, 0, sizeof prev);
    for (int n = 0; n < 1000; n++) {
        tk_id id;
        char s[TK_ID_STR_LEN + 1];
        secret_new_id(&id);
        assert_int_equal(id.b[6] >> 4, 4);      /* version */
        assert_int_equal(id.b[8] >> 6, 2);      /* variant 10 */
        assert_memory_not_equal(id.b, prev.b, TK_ID_LEN);
        secret_id_format(&id, s);
        assert_int_equal(s[14], '4');
        assert_non_null(strchr("89ab", s[19]));
        prev = id;
    }
}

static void id_format_and_parse(void **state)
{
    (void)state;
    tk_id id, got;
    char s[TK_ID_STR_LEN + 1];
    for (int i = 0; i < TK_ID_LEN; i++)
        id.b[i] = (uint8_t)(i * 0x11);
    memset(s, 'X', sizeof s);
    secret_id_format(&id, s);
    assert_string_equal(s, "00112233-4455-6677-8899-aabbccddeeff");

    memset(&got, 0, sizeof got);
    assert_int_equal(secret_id_parse(s, TK_ID_STR_LEN, &got), 0);
    assert_memory_equal(got.b, id.b, TK_ID_LEN);
    memset(&got, 0, sizeof got);
    assert_int_equal(secret_id_parse("00112233-4455-6677-8899-AABBCCDDEEFF", 36, &got), 0);
    assert_memory_equal(got.b, id.b, TK_ID_LEN);
    assert_int_equal(secret_id_parse("00112233-4455-6677-8899-AaBbCcDdEeFf", 36, &got), 0);
    assert_memory_equal(got.b, id.b, TK_ID_LEN);

    /* Random round trips. */
    for (int n = 0; n < 100; n++) {
        secret_new_id(&id);
        secret_id_format(&id, s);
        assert_int_equal(strlen(s), TK_ID_STR_LEN);
        assert_int_equal(secret_id_parse(s, strlen(s), &got), 0);
        assert_memory_equal(got.b, id.b, TK_ID_LEN);
    }
}

static void id_parse_rejects(void **state)
{
    (void)state;
    const char *ok = "00112233-4455-6677-8899-aabbccddeeff";
    const char *bad[] = {
        "00112233-4455-6677-8899-aabbccddeef",    /* 35 */
        "00112233-4455-6677-8899-aabbccddeeff0",  /* 37 */
        "001122334-455-6677-8899-aabbccddeeff",   /* dash moved */
        "00112233044550667708899-aabbccddeeff",   /* dashes replaced */
        "00112233-4455-6677-8899-aabbccddeefg",   /* non-hex */
        "0011223g-4455-6677-8899-aabbccddeeff",
        "00112233-4455-6677-8899 aabbccddeeff",   /* space for dash */
        " 0112233-4455-6677-8899-aabbccddeeff",
        "00112233-4455-6677-8899-aabbccddeef+",
        "{0112233-4455-6677-8899-aabbccddeeff",
        "00112233_4455_6677_8899_aabbccddeeff",
        "0x112233-4455-6677-8899-aabbccddeeff",
        "00112233445566778899aabbccddeeff",       /* no dashes at all */
        "",
    };
    tk_id got;
    memset(&got, 0x77, sizeof got);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(secret_id_parse(bad[i], strlen(bad[i]), &got), TK_EINVAL);
    for (int i = 0; i < TK_ID_LEN; i++)
        assert_int_equal(got.b[i], 0x77); /* untouched on failure */

    /* Right length, NUL inside. */
    char s[TK_ID_STR_LEN + 1];
    memcpy(s, ok, sizeof s);
    s[10] = '\0';
    assert_int_equal(secret_id_parse(s, TK_ID_STR_LEN, &got), TK_EINVAL);
    /* Length is what counts, not the NUL: a valid id read with the wrong len. */
    assert_int_equal(secret_id_parse(ok, TK_ID_STR_LEN - 1, &got), TK_EINVAL);
    /* Every single-position substitution with a char of the wrong class. */
    for (int pos = 0; pos < TK_ID_STR_LEN; pos++) {
        memcpy(s, ok, sizeof s);
        bool dash = pos == 8 || pos == 13 || pos == 18 || pos == 23;
        s[pos] = dash ? 'a' : '-';
        assert_int_equal(secret_id_parse(s, TK_ID_STR_LEN, &got), TK_EINVAL);
        s[pos] = dash ? '0' : 'G';
        assert_int_equal(secret_id_parse(s, TK_ID_STR_LEN, &got), TK_EINVAL);
    }
    assert_int_equal(secret_id_parse(ok, TK_ID_STR_LEN, &got), 0);
}

static void hash_equal(void **state)
{
    (void)state;
    uint8_t a[TK_HASH_LEN], b[TK_HASH_LEN];
    for (int i = 0; i < TK_HASH_LEN; i++)
        a[i] = (uint8_t)(i * 7 + 1);
    memcpy(b, a, sizeof b);
    assert_true(secret_hash_equal(a, b));
    for (int i = 0; i < TK_HASH_LEN; i++) {
        b[i] ^= 1;
        assert_false(secret_hash_equal(a, b));
        b[i] ^= 1;
    }
    assert_true(secret_hash_equal(a, b));

    /* secret_equal at every length up to 40 (the index keeps 30 bytes):
     * every bit of every byte counts, the tail after the words too. */
    uint8_t x[40], y[40];
    for (int i = 0; i < 40; i++)
        x[i] = y[i] = (uint8_t)(i * 13 + 5);
    for (size_t n = 0; n <= 40; n++) {
        assert_true(secret_equal(x, y, n));
        for (size_t i = 0; i < n; i++)
            for (int bit = 0; bit < 8; bit++) {
                y[i] ^= (uint8_t)(1u << bit);
                assert_false(secret_equal(x, y, n));
                y[i] ^= (uint8_t)(1u << bit);
            }
        if (n < 40) { /* a byte past n does not count */
            y[n] ^= 0xff;
            assert_true(secret_equal(x, y, n));
            y[n] ^= 0xff;
        }
    }
}

/* ---- the pool ------------------------------------------------------------ */

/* A pool credential is exactly secret_generate's for the same bytes: the
 * first 16 (with the UUID v4 bits set) are the ID, the next 32 the random
 * part. Checked with chosen bytes for the pool's whole first draw. */
static void pool_credential_equals_generate(void **state)
{
    (void)state;
    static uint8_t chosen[64 * 48];
    for (size_t i = 0; i < sizeof chosen; i++)
        chosen[i] = (uint8_t)(i * 37 + 11);
    secret_pool *p = secret_pool_new();
    assert_non_null(p); /* Linux >= 4.14: MADV_WIPEONFORK */
    fixed_next = chosen; /* the pool's one draw */
    for (int k = 0; k < 3; k++) {
        tk_id id, want_id;
        char s[TK_SECRET_LEN + 1], want[TK_SECRET_LEN + 1];
        uint8_t h[TK_HASH_LEN], want_h[TK_HASH_LEN];
        secret_new_credential(p, k == 1 ? TK_KIND_PERSONAL : TK_KIND_TOKEN, &id, s, h);
        memcpy(want_id.b, chosen + 48 * k, TK_ID_LEN);
        want_id.b[6] = (uint8_t)((want_id.b[6] & 0x0F) | 0x40);
        want_id.b[8] = (uint8_t)((want_id.b[8] & 0x3F) | 0x80);
        assert_memory_equal(id.b, want_id.b, TK_ID_LEN);
        fixed_next = chosen + 48 * k + 16; /* secret_generate's own draw */
        secret_generate(k == 1 ? TK_KIND_PERSONAL : TK_KIND_TOKEN, &want_id, want, want_h);
        assert_string_equal(s, want);
        assert_memory_equal(h, want_h, TK_HASH_LEN);
        tk_kind kind;
        tk_id got;
        uint8_t gh[TK_HASH_LEN];
        assert_int_equal(secret_parse(s, TK_SECRET_LEN, &kind, &got, gh), 0);
        assert_memory_equal(got.b, id.b, TK_ID_LEN);
        assert_memory_equal(gh, h, TK_HASH_LEN);
    }
    fixed_next = NULL;
    secret_pool_free(p);
}

/* Many pool credentials (several refills): every ID and secret differs. */
static void pool_credentials_all_differ(void **state)
{
    (void)state;
    enum { N = 5000 };
    static tk_id ids[N];
    static char secrets[N][TK_SECRET_LEN + 1];
    secret_pool *p = secret_pool_new();
    assert_non_null(p);
    for (int i = 0; i < N; i++) {
        uint8_t h[TK_HASH_LEN];
        secret_new_credential(p, TK_KIND_TOKEN, &ids[i], secrets[i], h);
    }
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++) {
            assert_memory_not_equal(ids[i].b, ids[j].b, TK_ID_LEN);
            assert_string_not_equal(secrets[i], secrets[j]);
        }
    secret_pool_free(p);
}

/* A forked child does not hand out its parent's pooled bytes: the child's
 * next credential differs from the parent's next one (without the
 * wipe-on-fork pages they would be the same). */
static void pool_is_not_shared_with_a_child(void **state)
{
    (void)state;
    secret_pool *p = secret_pool_new();
    assert_non_null(p);
    tk_id first, mine, theirs;
    char s[TK_SECRET_LEN + 1];
    uint8_t h[TK_HASH_LEN];
    secret_new_credential(p, TK_KIND_TOKEN, &first, s, h); /* the pool is full now */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        tk_id c;
        secret_new_credential(p, TK_KIND_TOKEN, &c, s, h);
        _exit(write(fds[1], c.b, TK_ID_LEN) == TK_ID_LEN ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(read(fds[0], theirs.b, TK_ID_LEN), TK_ID_LEN);
    close(fds[0]);
    close(fds[1]);
    secret_new_credential(p, TK_KIND_TOKEN, &mine, s, h);
    assert_memory_not_equal(mine.b, theirs.b, TK_ID_LEN);
    assert_memory_not_equal(first.b, theirs.b, TK_ID_LEN);
    secret_pool_free(p);
}

int main(void)
{
    /* Before sodium_init, which draws random bytes of its own. */
    if (randombytes_set_implementation(&test_rand) != 0 || sodium_init() < 0) {
        fprintf(stderr, "cannot set up libsodium\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encoding_known_answer),
        cmocka_unit_test(hash_known_answer),
        cmocka_unit_test(parse_in_steps),
        cmocka_unit_test(largest_words_known_answer),
        cmocka_unit_test(round_trip_both_kinds),
        cmocka_unit_test(secret_is_base62_not_hex_of_random),
        cmocka_unit_test(two_secrets_differ),
        cmocka_unit_test(every_substitution_rejected),
        cmocka_unit_test(every_truncation_and_extension_rejected),
        cmocka_unit_test(prefix_swap_rejected),
        cmocka_unit_test(alphabet_enforced_even_with_valid_checksum),
        cmocka_unit_test(alphabet_enforced_in_check_digits),
        cmocka_unit_test(non_canonical_group_rejected),
        cmocka_unit_test(check_digits_must_match_exactly),
        cmocka_unit_test(failed_parse_leaves_outputs_alone),
        cmocka_unit_test(generate_with_no_kind_aborts),
        cmocka_unit_test(new_ids_are_uuid_v4),
        cmocka_unit_test(id_format_and_parse),
        cmocka_unit_test(id_parse_rejects),
        cmocka_unit_test(hash_equal),
        cmocka_unit_test(pool_credential_equals_generate),
        cmocka_unit_test(pool_credentials_all_differ),
        cmocka_unit_test(pool_is_not_shared_with_a_child),
    };
    return cmocka_run_group_tests_name("secret", tests, NULL, NULL);
}
