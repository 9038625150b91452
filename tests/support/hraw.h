/*
 * hraw.h - plain HTTP/1.1 from a test (prefix hraw_): a request written by
 * hand on a blocking loopback socket, a response read back (status line,
 * headers, a Content-Length body). Written independently of net/http.c,
 * like raw.h for the binary protocol, so the suites do not trust the code
 * they check; and able to send what no client would.
 */
#ifndef TK_TEST_HRAW_H
#define TK_TEST_HRAW_H
#include <stdbool.h>
#include <stddef.h>

typedef struct hraw_resp {
    int status;          /* 0: no response (closed or timed out) */
    char *head;          /* status line and headers, NUL-terminated (owned) */
    char *body;          /* NUL-terminated (owned) */
    size_t body_len;
} hraw_resp;

/* Sends method path with the extra header lines (each "Name: value", NULL-
 * terminated array, may be NULL) and body (may be NULL) on fd, keep-alive,
 * and reads the response. 0, or -1 (closed, timeout, unparsable). */
int hraw_call(int fd, const char *method, const char *path, const char *const *headers,
              const char *body, hraw_resp *r);

/* One request on a new connection to port, closed after. */
int hraw_once(int port, const char *method, const char *path, const char *const *headers,
              const char *body, hraw_resp *r);

/* Reads one response from fd (after hraw_send or raw bytes). */
int hraw_read(int fd, hraw_resp *r, int timeout_ms);

/* The value of header name in r (case-insensitive), copied into out; false
 * when absent. */
bool hraw_header(const hraw_resp *r, const char *name, char *out, size_t cap);

void hraw_free(hraw_resp *r);

#endif
