/*
 * tkt.h - small helpers shared by the test suites (cmocka).
 */
#ifndef TK_TEST_SUPPORT_H
#define TK_TEST_SUPPORT_H
#include <stddef.h>
#include <stdint.h>

/* SANITIZED: 1 in a build with AddressSanitizer (time limits and load
 * sizes of a suite may differ there), else 0. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* Creates a fresh empty directory under $TMPDIR (or /tmp) and returns its
 * path; caller frees with tkt_rmdir (removes it recursively) then free(). */
char *tkt_mkdtemp(void);

/* Removes path recursively (files and subdirectories). */
void tkt_rmdir(const char *path);

/* Joins dir and name into a malloc'd path. */
char *tkt_path(const char *dir, const char *name);

/* Reads a whole file into a malloc'd buffer; returns NULL if it cannot. */
unsigned char *tkt_read_file(const char *path, size_t *len);

/* Writes len bytes to path (created or truncated); 0 on success. */
int tkt_write_file(const char *path, const void *data, size_t len);

/* Truncates path to len bytes; 0 on success. */
int tkt_truncate(const char *path, size_t len);

/* True when the bytes needle[0..nlen) occur in any regular file under dir. */
int tkt_dir_contains(const char *dir, const void *needle, size_t nlen);

/* Standard base64 (with padding) of the string in, into out (room for
 * 4/3 of it and a NUL). Written here, not taken from the server's library,
 * which the HTTP Basic form is checked against. */
void tkt_base64(const char *in, char *out);

/* Milliseconds of the monotonic clock; a sleep of ms milliseconds. */
int64_t tkt_now_ms(void);
void tkt_sleep_ms(int ms);

/* A byte stream in memory, for the image round trips (idx_put_fn and
 * idx_get_fn, core/idx.h): tkt_stream_put appends (growing buf), and
 * tkt_stream_get reads on from pos and fails with TK_ECORRUPT past len, as
 * a file that ends early. Zero-initialise; free(buf) when done. */
typedef struct tkt_stream {
    uint8_t *buf;
    size_t len, cap, pos;
} tkt_stream;

int tkt_stream_put(void *arg, const void *p, size_t n);
int tkt_stream_get(void *arg, void *p, size_t n);

#endif
