/* log.c - one-line stderr log with a per-event rate limiter; see log.h. */
#include "net/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 512

__attribute__((format(printf, 1, 0)))
static void emit(const char *fmt, va_list ap, uint64_t held)
{
    char line[LINE_MAX_BYTES];
    size_t n = (size_t)snprintf(line, sizeof line, "tokend: ");
    int k = vsnprintf(line + n, sizeof line - n, fmt, ap);
    n = k < 0 ? n : n + (size_t)k;
    if (n > sizeof line - 48)
        n = sizeof line - 48; /* truncated: keep room for the tail */
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
