/*
 * log.h - the server's log: one line per event on stderr.
 *
 * Every line is "tokend: <message>\n" (or one JSON object: lg_set_json),
 * written with a single write(2) so lines from the loop and writer threads
 * never interleave. Nothing secret
 * is ever passed here (keys, secrets, request bodies): callers log what
 * happened and the peer's address, never what the peer sent.
 *
 * Events a peer can trigger at will (protocol violations, limit hits) go
 * through a limiter, so a flood of bad connections costs one line a second
 * instead of filling the disk.
 */
#ifndef TK_NET_LOG_H
#define TK_NET_LOG_H
#include <stdbool.h>
#include <stdint.h>

/* JSON lines instead of text (--log-format json): each line one object,
 * {"time": "2026-12-01T16:40:00.123Z", "msg": "...", "held": N} ("held",
 * the lines a limiter held back, only when there were some). Call once at
 * start, before any thread logs. */
void lg_set_json(bool on);

/* Writes one line. Thread-safe. */
void lg_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A limiter for one kind of event: at most one line per second; the lines
 * held back are counted and reported with the next line that gets out.
 * Zero-initialise. Not thread-safe: one limiter per thread. */
typedef struct lg_limit {
    int64_t last_ms;
    uint64_t held;
} lg_limit;

void lg_limited(lg_limit *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Request logging (--log-requests N): one request in every N gets a line,
 * {"msg": "request", "listener", "op", "result", "peer"} in JSON (text:
 * "request binary VERIFY valid from 127.0.0.1:5000"); never a key, a
 * secret or a body. One sampler per listener, on its thread. */
typedef struct lg_sampler {
    uint32_t every; /* 0: none */
    uint32_t n;
} lg_sampler;

/* True for the request that gets a line: one call site per answer, so its
 * cost when off is one test. */
static inline bool lg_sampled(lg_sampler *s)
{
    if (!s->every || ++s->n < s->every)
        return false;
    s->n = 0;
    return true;
}

void lg_request(const char *listener, const char *op, const char *result, const char *peer);

#endif
