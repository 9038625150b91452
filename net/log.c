/* log.c - one-line stderr log (text or JSON) with a per-event rate limiter;
 * see log.h. */
#include "net/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/mp.h"

#define LINE_MAX_BYTES 512
#define LOG_FIELD_MAX 64 /* a request line's field, at most (a peer: "[v6]:port") */

static bool json; /* set once at start (lg_set_json), before any thread */

void lg_set_json(bool on)
{
    json = on;
}

/* The message as a JSON string's body: quotes, backslashes and control
 * characters escaped, UTF-8 as it is and a byte that is not UTF-8 as
 * \u00XX, so that a line is valid JSON whatever it holds. Returns the bytes written (out holds at
 * least 6 * n + 1). */
static size_t escape(const char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch >= 0x80) { /* UTF-8 goes as it is; a stray byte as its code */
            size_t len = ch >= 0xf0 ? 4 : ch >= 0xe0 ? 3 : ch >= 0xc0 ? 2 : 1;
            if (len > 1 && i + len <= n && mpr_utf8_valid(in + i, len)) {
                memcpy(out + o, in + i, len);
                o += len;
                i += len - 1;
            } else {
                o += (size_t)snprintf(out + o, 7, "\\u%04x", ch);
            }
        } else if (ch < 0x20 || ch == 0x7f) {
            o += (size_t)snprintf(out + o, 7, "\\u%04x", ch);
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = '\0';
    return o;
}

/* Now as ISO 8601 UTC with milliseconds ("2026-12-01T16:40:00.123Z"). */
static void now_iso(char t[32])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(t, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(t + k, 32 - k, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* {"time": ISO 8601 UTC with ms, "msg": the text, "held": lines held back}. */
static size_t json_line(const char *msg, size_t n, uint64_t held, char *line, size_t cap)
{
    char esc[LINE_MAX_BYTES * 6 + 1], t[32];
    now_iso(t);
    escape(msg, n, esc);
    int w = held ? snprintf(line, cap, "{\"time\":\"%s\",\"msg\":\"%s\",\"held\":%llu}\n", t,
                            esc, (unsigned long long)held)
                 : snprintf(line, cap, "{\"time\":\"%s\",\"msg\":\"%s\"}\n", t, esc);
    return w < 0 ? 0 : (size_t)w < cap ? (size_t)w : cap - 1;
}

__attribute__((format(printf, 1, 0)))
static void emit(const char *fmt, va_list ap, uint64_t held)
{
    char line[LINE_MAX_BYTES];
    size_t n = (size_t)snprintf(line, sizeof line, "tokend: ");
    int k = vsnprintf(line + n, sizeof line - n, fmt, ap);
    n = k < 0 ? n : n + (size_t)k;
    if (n > sizeof line - 48)
        n = sizeof line - 48; /* truncated: keep room for the tail */
    if (json) {
        static _Thread_local char out[LINE_MAX_BYTES * 6 + 128];
        size_t m = json_line(line + 8, n - 8, held, out, sizeof out);
        ssize_t w = write(STDERR_FILENO, out, m);
        (void)w;
        return;
    }
    if (held)
        n += (size_t)snprintf(line + n, sizeof line - n, " (%llu more like it not shown)",
                              (unsigned long long)held);
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w; /* nowhere left to report a failed log write */
}

void lg_line(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(fmt, ap, 0);
    va_end(ap);
}

void lg_limited(lg_limit *l, const char *fmt, ...)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (l->last_ms && now - l->last_ms < 1000) {
        l->held++;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    emit(fmt, ap, l->held);
    va_end(ap);
    l->last_ms = now;
    l->held = 0;
}

void lg_request(const char *listener, const char *op, const char *result, const char *peer)
{
    if (!json) {
        lg_line("request %s %s %s from %s", listener, op, result, peer);
        return;
    }
    char line[LINE_MAX_BYTES * 2], t[32], esc[4][LOG_FIELD_MAX * 6 + 1];
    const char *f[4] = {listener, op, result, peer};
    for (int i = 0; i < 4; i++)
        escape(f[i], strnlen(f[i], LOG_FIELD_MAX), esc[i]);
    now_iso(t);
    int n = snprintf(line, sizeof line,
                     "{\"time\":\"%s\",\"msg\":\"request\",\"listener\":\"%s\",\"op\":\"%s\","
                     "\"result\":\"%s\",\"peer\":\"%s\"}\n",
                     t, esc[0], esc[1], esc[2], esc[3]);
    if (n > 0) {
        ssize_t w = write(STDERR_FILENO, line, (size_t)n < sizeof line ? (size_t)n : sizeof line);
        (void)w;
    }
}
