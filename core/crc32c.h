/*
 * crc32c.h - CRC-32C (Castagnoli), used to frame event-log records and to
 * checksum secrets. Hardware (SSE4.2) when the CPU has it, a table otherwise.
 * Debian ships no C library for CRC-32C, hence this small module.
 */
#ifndef TK_CRC32C_H
#define TK_CRC32C_H
#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) over len bytes of buf; returns the new CRC.
 * crc32c_extend(0, "123456789", 9) == 0xE3069283. */
uint32_t crc32c_extend(uint32_t crc, const void *buf, size_t len);

#endif
