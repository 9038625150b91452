/*
 * crc32c.c - CRC-32C (Castagnoli, reflected polynomial 0x82F63B78); see
 * crc32c.h.
 *
 * Two paths compute the same function. On x86-64 CPUs with SSE4.2 the crc32
 * instruction does the work 8 bytes at a time (then 4, 2, 1 for the tail); the function using it is
 * compiled with a target attribute, so the rest of the build needs no
 * -msse4.2 and the binary still runs on older CPUs. Everywhere else a
 * slice-by-8 table (8 x 256 entries, 8 KiB) processes 8 bytes per step with
 * eight independent lookups. The table is built once, on first use, under
 * pthread_once so concurrent first callers are safe; the hardware path never
 * touches it.
 *
 * Convention (the usual one, as in iSCSI and ext4): the register starts at
 * ~crc and the result is inverted again, so crc32c_extend(0, ...) begins a
 * fresh CRC and crc32c_extend(crc32c_extend(0, a), b) == CRC of a||b.
 */
#include "core/crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CRC32C_HAVE_HW 1
#include <nmmintrin.h>
#endif

#define CRC32C_POLY 0x82F63B78u

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1u)));
        table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = table[0][n];
        for (int t = 1; t < 8; t++) {
            c = table[0][c & 0xFF] ^ (c >> 8);
            table[t][n] = c;
        }
    }
}

/* Little-endian 64-bit load from any alignment. */
static uint64_t load_le64(const uint8_t *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
           (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
           (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

/* Software path. Not static: the test suite compares it with the hardware
 * path (declared there, not in crc32c.h; not part of the contract). */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);

uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uint32_t c = ~crc;

    pthread_once(&table_once, table_init);
    while (len >= 8) {
        uint64_t w = load_le64(p) ^ c;
        c = table[7][w & 0xFF] ^ table[6][(w >> 8) & 0xFF] ^
            table[5][(w >> 16) & 0xFF] ^ table[4][(w >> 24) & 0xFF] ^
            table[3][(w >> 32) & 0xFF] ^ table[2][(w >> 40) & 0xFF] ^
            table[1][(w >> 48) & 0xFF] ^ table[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len--)
        c = table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return ~c;
}

#ifdef CRC32C_HAVE_HW
__attribute__((target("sse4.2")))
static uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uint64_t c = ~crc;

    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8); /* x86 is little-endian; memcpy keeps it unaligned-safe */
        c = _mm_crc32_u64(c, w);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    if (len >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        c32 = _mm_crc32_u32(c32, w);
        p += 4;
        len -= 4;
    }
    if (len >= 2) {
        uint16_t w;
        memcpy(&w, p, 2);
        c32 = _mm_crc32_u16(c32, w);
        p += 2;
        len -= 2;
    }
    if (len)
        c32 = _mm_crc32_u8(c32, *p);
    return ~c32;
}
#endif

uint32_t crc32c_extend(uint32_t crc, const void *buf, size_t len)
{
#ifdef CRC32C_HAVE_HW
    if (__builtin_cpu_supports("sse4.2"))
        return crc32c_hw(crc, buf, len);
#endif
    return crc32c_sw(crc, buf, len);
}
