/*
 * secret.c - client IDs, credential strings and their hashes; see secret.h
 * for the format.
 *
 * Why it is built this way:
 *  - The string carries id||random, so one string alone verifies, and a
 *    prefix + CRC-32C checksum, so a gateway or a secret scanner throws out
 *    a mistyped, truncated or re-prefixed secret before any lookup or hash.
 *  - Each 64-bit word is exactly 11 base62 digits (62^11 > 2^64), so the
 *    length is fixed, the string is copy/paste and URL safe, and decoding is
 *    a table lookup plus a multiply per digit. 11 digits can spell values up
 *    to 62^11-1; anything above 2^64-1 is refused so every credential has
 *    exactly one spelling.
 *  - secret_parse is on the verify hot path: a 256-entry digit table,
 *    straight-line multiply-adds in short independent chains, one alphabet
 *    test per step at its end, one CRC-32C over 70 bytes, then one SHA-256
 *    block. Measured about 35 ns before the SHA-256 (about 50 ns more with
 *    SHA-NI). It never allocates and writes its outputs only on success.
 *    It is cut in steps so that a verify can start its index lookup on the
 *    ID (secret_parse_id: the length, the prefix and the ID's two words)
 *    and do the rest while the lookup's cache misses are in flight:
 *    secret_parse_rest (the rest of the format and the hash in one pass;
 *    secret_parse is the two steps in a row), or secret_parse_check and,
 *    only for an ID that is indexed, secret_parse_hash. Each rule is one
 *    helper that every step calls.
 *  - A word's one spelling (at most 2^64-1 in 11 digits) is checked on the
 *    digits themselves, in byte order (group_canonical), not on the decoded
 *    value: the check needs no decoding, so an unknown ID is answered
 *    without its random words ever being decoded.
 *  - The stored value is SHA-256(id||random): 48 bytes, one compression
 *    block. A slow password hash would add nothing for 256-bit random secrets
 *    (DESIGN.md section 1).
 *  - libsodium is initialised once through pthread_once: sodium_init() takes
 *    a lock on every call, which the hot path must not.
 *  - Raw random bytes live only in stack buffers that are wiped before
 *    return, or, not yet handed out, in a secret_pool (locked,
 *    wipe-on-fork pages, each byte wiped as it goes); they leave this file
 *    only inside the secret string.
 */
#include "core/secret.h"

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/crc32c.h"
#include "core/err.h"
#include "core/sha256.h"

#define PREFIX_LEN 4
#define GROUP_DIGITS 11 /* base62 digits per 64-bit word */
#define WORDS 6         /* (TK_ID_LEN + TK_RAND_LEN) / 8 */
#define BODY_LEN (WORDS * GROUP_DIGITS)
#define CHECK_DIGITS 6  /* 62^6 > 2^32 */
#define RAW_LEN (TK_ID_LEN + TK_RAND_LEN)
#define ID_WORDS (TK_ID_LEN / 8) /* the body's first two words are the id */

_Static_assert(PREFIX_LEN + BODY_LEN + CHECK_DIGITS == TK_SECRET_LEN, "secret length");
_Static_assert(RAW_LEN == WORDS * 8, "id||random is six 64-bit words");

static const char prefix_token[PREFIX_LEN + 1] = "tkt_";
static const char prefix_personal[PREFIX_LEN + 1] = "tkp_";

static const char b62_digit[62] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "abcdefghijklmnopqrstuvwxyz";

/* Value of each byte as a base62 digit; BAD (bit 7 set) outside the alphabet. */
#define BAD 0xFF
static const uint8_t b62_value[256] = {
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
      0,   1,   2,   3,   4,   5,   6,   7,   8,   9, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD,  10,  11,  12,  13,  14,  15,  16,  17,  18,  19,  20,  21,  22,  23,  24,
     25,  26,  27,  28,  29,  30,  31,  32,  33,  34,  35, BAD, BAD, BAD, BAD, BAD,
    BAD,  36,  37,  38,  39,  40,  41,  42,  43,  44,  45,  46,  47,  48,  49,  50,
     51,  52,  53,  54,  55,  56,  57,  58,  59,  60,  61, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
    BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD, BAD,
};

static const char hex_digit[16] = "0123456789abcdef";

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

static void sodium_start(void)
{
    if (sodium_init() < 0) {
        fprintf(stderr, "tokend: libsodium failed to initialise\n");
        abort();
    }
}

static void ensure_sodium(void)
{
    pthread_once(&sodium_once, sodium_start);
}

/* Big-endian words, as one load or store each (the hot path reads the
 * digits in 8-byte pieces too). */
static inline uint64_t load_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline void store_be64(uint8_t *p, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, sizeof v);
}

/* Writes v as exactly n base62 digits, most significant first. */
static void b62_put(char *out, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        out[i] = b62_digit[v % 62];
        v /= 62;
    }
}

/* Decoding is written out digit by digit: the verify hot path wants no
 * loop counters here, and short independent multiply chains. A digit outside
 * the alphabet sets bit 7 of *bad; the values computed meanwhile are garbage
 * (unsigned, so wrap is defined) and the caller discards them. */
#define DIG(i) (t[g[i]])

/* The 11-digit group at g as a 64-bit word, modulo 2^64: group_canonical
 * says whether the digits spell at most 2^64-1. */
static inline uint64_t b62_group(const uint8_t *g, unsigned *bad)
{
    const uint8_t *t = b62_value;
    unsigned d0 = DIG(0), d1 = DIG(1), d2 = DIG(2), d3 = DIG(3), d4 = DIG(4);
    unsigned d5 = DIG(5), d6 = DIG(6), d7 = DIG(7), d8 = DIG(8), d9 = DIG(9);
    unsigned d10 = DIG(10);
    *bad |= d0 | d1 | d2 | d3 | d4 | d5 | d6 | d7 | d8 | d9 | d10;
    uint64_t a = ((uint64_t)d0 * 62 + d1) * (62 * 62) + (d2 * 62 + d3); /* < 62^4 */
    uint64_t b = ((uint64_t)d4 * 62 + d5) * (62 * 62) + (d6 * 62 + d7); /* < 62^4 */
    uint64_t c = (uint64_t)d8 * (62 * 62) + d9 * 62 + d10;              /* < 62^3 */
    return (a * (62 * 62 * 62 * 62) + b) * (62 * 62 * 62) + c;
}

/* The alphabet test of b62_group alone, for digits not decoded yet. */
static inline void b62_digits(const uint8_t *g, unsigned *bad)
{
    const uint8_t *t = b62_value;
    *bad |= DIG(0) | DIG(1) | DIG(2) | DIG(3) | DIG(4) | DIG(5) | DIG(6) | DIG(7) | DIG(8) |
            DIG(9) | DIG(10);
}

/* The 6 check digits at g (62^6 < 2^64: no overflow). */
static inline uint64_t b62_check(const uint8_t *g, unsigned *bad)
{
    const uint8_t *t = b62_value;
    unsigned d0 = DIG(0), d1 = DIG(1), d2 = DIG(2), d3 = DIG(3), d4 = DIG(4);
    unsigned d5 = DIG(5);
    *bad |= d0 | d1 | d2 | d3 | d4 | d5;
    return ((uint64_t)d0 * 62 + d1) * (62 * 62 * 62 * 62) +
           (uint64_t)((d2 * 62 + d3) * 62 + d4) * 62 + d5;
}
#undef DIG

/* 2^64-1 in 11 digits, "LygHa16AHYF", as its first 8 and last 3 bytes read
 * big-endian. The alphabet is in ASCII order ('0' < 'A' < 'a'), so a group
 * of valid digits spells at most 2^64-1 exactly when its bytes compare <=
 * these: 11 digits can spell up to 62^11-1, and only the values that fit
 * 64 bits are a word's one spelling. */
#define GROUP_MAX_HI 0x4C79674861313641ull /* "LygHa16A" */
#define GROUP_MAX_LO 0x485946u             /* "HYF" */

static inline bool group_canonical(const uint8_t *g)
{
    uint64_t hi = load_be64(g), lo = load_be64(g + 3) & 0xFFFFFF; /* bytes 0-7, 8-10 */
    return hi < GROUP_MAX_HI || (hi == GROUP_MAX_HI && lo <= GROUP_MAX_LO);
}

static inline const uint8_t *group_at(const char *s, int w)
{
    return (const uint8_t *)s + PREFIX_LEN + w * GROUP_DIGITS;
}

/* Encodes prefix, raw (id||random) and checksum into out (NUL-terminated). */
static void secret_encode(const char *prefix, const uint8_t raw[RAW_LEN],
                          char out[TK_SECRET_LEN + 1])
{
    memcpy(out, prefix, PREFIX_LEN);
    for (int w = 0; w < WORDS; w++)
        b62_put(out + PREFIX_LEN + w * GROUP_DIGITS, load_be64(raw + 8 * w), GROUP_DIGITS);
    uint32_t check = crc32c_extend(0, out, PREFIX_LEN + BODY_LEN);
    b62_put(out + PREFIX_LEN + BODY_LEN, check, CHECK_DIGITS);
    out[TK_SECRET_LEN] = '\0';
}

static void uuid_v4_bits(tk_id *id)
{
    id->b[6] = (uint8_t)((id->b[6] & 0x0F) | 0x40); /* version 4 */
    id->b[8] = (uint8_t)((id->b[8] & 0x3F) | 0x80); /* variant 10 */
}

void secret_new_id(tk_id *out)
{
    ensure_sodium();
    randombytes_buf(out->b, TK_ID_LEN);
    uuid_v4_bits(out);
}

void secret_id_format(const tk_id *id, char out[TK_ID_STR_LEN + 1])
{
    char *o = out;
    for (int i = 0; i < TK_ID_LEN; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex_digit[id->b[i] >> 4];
        *o++ = hex_digit[id->b[i] & 0x0F];
    }
    *o = '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int secret_id_parse(const char *s, size_t len, tk_id *out)
{
    tk_id id;
    size_t i = 0;

    if (len != TK_ID_STR_LEN)
        return TK_EINVAL;
    for (int b = 0; b < TK_ID_LEN; b++) {
        if (b == 4 || b == 6 || b == 8 || b == 10) {
            if (s[i++] != '-')
                return TK_EINVAL;
        }
        int hi = hex_value(s[i++]);
        int lo = hex_value(s[i++]);
        if (hi < 0 || lo < 0)
            return TK_EINVAL;
        id.b[b] = (uint8_t)(hi << 4 | lo);
    }
    *out = id;
    return 0;
}

/* Kind must be TK_KIND_TOKEN or TK_KIND_PERSONAL; anything else is a bug in
 * the caller, and this void function has no way to report it: abort rather
 * than mint a credential of the wrong kind. */
/* The string and hash of raw = id||random (wiped by the caller). */
static void make_secret(tk_kind kind, const uint8_t raw[RAW_LEN], char out[TK_SECRET_LEN + 1],
                        uint8_t hash[TK_HASH_LEN])
{
    const char *prefix;

    if (kind == TK_KIND_TOKEN) {
        prefix = prefix_token;
    } else if (kind == TK_KIND_PERSONAL) {
        prefix = prefix_personal;
    } else {
        fprintf(stderr, "tokend: secret_generate: bad kind %d\n", (int)kind);
        abort();
    }
    secret_encode(prefix, raw, out);
    sha256(hash, raw, RAW_LEN);
}

void secret_generate(tk_kind kind, const tk_id *id, char out[TK_SECRET_LEN + 1],
                     uint8_t hash[TK_HASH_LEN])
{
    uint8_t raw[RAW_LEN];

    ensure_sodium();
    memcpy(raw, id->b, TK_ID_LEN);
    randombytes_buf(raw + TK_ID_LEN, TK_RAND_LEN);
    make_secret(kind, raw, out, hash);
    sodium_memzero(raw, sizeof raw);
}

/* ---- the pool ---------------------------------------------------------- */

#define POOL_CREDENTIALS 64

struct secret_pool {
    uint64_t armed;  /* nonzero while buf is ours: a forked child reads 0 */
    size_t left;     /* bytes not handed out yet, at the end of buf */
    uint8_t buf[POOL_CREDENTIALS * RAW_LEN];
};

static size_t pool_pages(void)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t pg = page > 0 ? (size_t)page : 4096;
    return (sizeof(secret_pool) + pg - 1) / pg * pg;
}

secret_pool *secret_pool_new(void)
{
    size_t size = pool_pages();
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    if (madvise(m, size, MADV_WIPEONFORK) != 0) { /* no fork safety, no pool */
        munmap(m, size);
        return NULL;
    }
    (void)mlock(m, size); /* best effort: keep it out of swap */
    ensure_sodium();
    return m; /* zero-filled: armed = 0, left = 0 */
}

void secret_pool_free(secret_pool *p)
{
    if (!p)
        return;
    size_t size = pool_pages();
    sodium_memzero(p, size);
    munlock(p, size);
    munmap(p, size);
}

/* n bytes from the pool (refilled with one draw when short, or when a fork
 * wiped it), each wiped from the pool as it goes. */
static void pool_take(secret_pool *p, uint8_t *out, size_t n)
{
    if (!p) {
        ensure_sodium();
        randombytes_buf(out, n);
        return;
    }
    if (!p->armed || p->left < n) {
        randombytes_buf(p->buf, sizeof p->buf);
        p->left = sizeof p->buf;
        p->armed = 1;
    }
    uint8_t *src = p->buf + sizeof p->buf - p->left;
    memcpy(out, src, n);
    sodium_memzero(src, n);
    p->left -= n;
}

void secret_new_credential(secret_pool *p, tk_kind kind, tk_id *id,
                           char out[TK_SECRET_LEN + 1], uint8_t hash[TK_HASH_LEN])
{
    uint8_t raw[RAW_LEN];

    pool_take(p, raw, sizeof raw);
    memcpy(id->b, raw, TK_ID_LEN);
    uuid_v4_bits(id);
    memcpy(raw, id->b, TK_ID_LEN);
    make_secret(kind, raw, out, hash);
    sodium_memzero(raw, sizeof raw);
}

int secret_parse_id(const char *s, size_t len, tk_kind *kind, tk_id *id)
{
    unsigned bad = 0;
    tk_kind k;

    if (len != TK_SECRET_LEN)
        return TK_EINVAL;
    if (memcmp(s, prefix_token, PREFIX_LEN) == 0)
        k = TK_KIND_TOKEN;
    else if (memcmp(s, prefix_personal, PREFIX_LEN) == 0)
        k = TK_KIND_PERSONAL;
    else
        return TK_EINVAL;
    uint64_t w0 = b62_group(group_at(s, 0), &bad), w1 = b62_group(group_at(s, 1), &bad);
    if ((bad & 0x80) || !group_canonical(group_at(s, 0)) || !group_canonical(group_at(s, 1)))
        return TK_EINVAL;
    *kind = k;
    store_be64(id->b, w0);
    store_be64(id->b + 8, w1);
    return 0;
}

/* The end of the format: the check digits spell crc32c(prefix||body) and
 * no digit seen so far (bad) was outside the alphabet. */
static inline bool check_ok(const char *s, unsigned bad)
{
    uint64_t check = b62_check((const uint8_t *)s + PREFIX_LEN + BODY_LEN, &bad);
    return !(bad & 0x80) && check == crc32c_extend(0, s, PREFIX_LEN + BODY_LEN);
}

int secret_parse_check(const char *s)
{
    unsigned bad = 0;
    bool canonical = true;

    for (int w = ID_WORDS; w < WORDS; w++) {
        b62_digits(group_at(s, w), &bad);
        canonical &= group_canonical(group_at(s, w));
    }
    return canonical && check_ok(s, bad) ? 0 : TK_EINVAL;
}

/* The random words of s after id in raw, decoded (the alphabet's bits
 * into *bad, the spelling into *canonical). */
static inline void rest_words(const char *s, const tk_id *id, uint8_t raw[RAW_LEN],
                              unsigned *bad, bool *canonical)
{
    memcpy(raw, id->b, TK_ID_LEN);
    for (int w = ID_WORDS; w < WORDS; w++) {
        store_be64(raw + 8 * w, b62_group(group_at(s, w), bad));
        *canonical &= group_canonical(group_at(s, w));
    }
}

static void hash_raw(uint8_t raw[RAW_LEN], uint8_t hash[TK_HASH_LEN])
{
    ensure_sodium();
    sha256(hash, raw, RAW_LEN);
    sodium_memzero(raw, RAW_LEN);
}

int secret_parse_rest(const char *s, const tk_id *id, uint8_t hash[TK_HASH_LEN])
{
    uint8_t raw[RAW_LEN];
    unsigned bad = 0;
    bool canonical = true;

    rest_words(s, id, raw, &bad, &canonical);
    if (!canonical || !check_ok(s, bad)) {
        sodium_memzero(raw, sizeof raw);
        return TK_EINVAL;
    }
    hash_raw(raw, hash);
    return 0;
}

void secret_parse_hash(const char *s, const tk_id *id, uint8_t hash[TK_HASH_LEN])
{
    uint8_t raw[RAW_LEN];
    unsigned bad = 0; /* the caller had secret_parse_check test the digits */
    bool canonical = true;

    rest_words(s, id, raw, &bad, &canonical);
    hash_raw(raw, hash);
}

int secret_parse(const char *s, size_t len, tk_kind *kind, tk_id *id,
                 uint8_t hash[TK_HASH_LEN])
{
    tk_kind k;
    tk_id got;

    if (secret_parse_id(s, len, &k, &got) || secret_parse_rest(s, &got, hash))
        return TK_EINVAL;
    *kind = k;
    *id = got;
    return 0;
}

bool secret_equal(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;
    uint64_t d = 0;
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        uint64_t u, v;
        memcpy(&u, x + i, 8);
        memcpy(&v, y + i, 8);
        d |= u ^ v;
        __asm__("" : "+r"(d)); /* no early exit: the compiler may not test d here */
    }
    for (; i < n; i++) {
        d |= (uint64_t)(x[i] ^ y[i]);
        __asm__("" : "+r"(d));
    }
    return d == 0;
}

bool secret_hash_equal(const uint8_t a[TK_HASH_LEN], const uint8_t b[TK_HASH_LEN])
{
    return secret_equal(a, b, TK_HASH_LEN);
}
