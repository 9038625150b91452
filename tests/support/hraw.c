/*
 * hraw.c - plain HTTP/1.1 from a test; see hraw.h.
 */
#include "tests/support/hraw.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/raw.h"

#define HRAW_MAX (8u << 20)

void hraw_free(hraw_resp *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

bool hraw_header(const hraw_resp *r, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    for (const char *p = r->head ? strstr(r->head, "\r\n") : NULL; p && p[2];
         p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t len = e ? (size_t)(e - v) : strlen(v);
            snprintf(out, cap, "%.*s", (int)len, v);
            return true;
        }
    }
    return false;
}

/* Peeks until one whole response is buffered, then reads exactly it, so
 * that pipelined responses stay for the next call. */
int hraw_read(int fd, hraw_resp *r, int timeout_ms)
{
    memset(r, 0, sizeof *r);
    size_t cap = 4096, have = 0, need = 0, hl = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) <= 0)
            goto fail;
        ssize_t n = recv(fd, buf, cap, MSG_PEEK);
        if (n <= 0 || (size_t)n == have) {
            if (n <= 0)
                goto fail;
            /* nothing new yet: wait a little for more */
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        have = (size_t)n;
        buf[have] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        if (end && !need) {
            hl = (size_t)(end - buf) + 4;
            free(r->head);
            r->head = strndup(buf, hl - 2);
            char cl[32];
            size_t body = hraw_header(r, "Content-Length", cl, sizeof cl) ? strtoul(cl, NULL, 10) : 0;
            need = hl + body;
        }
        if (need && have >= need)
            break;
        if (have == cap) {
            if (cap >= HRAW_MAX)
                goto fail;
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
    }
    if (read(fd, buf, need) != (ssize_t)need)
        goto fail;
    r->body_len = need - hl;
    r->body = strndup(buf + hl, r->body_len);
    if (sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1)
        goto fail;
    free(buf);
    return 0;
fail:
    free(buf);
    hraw_free(r);
    return -1;
}

int hraw_call(int fd, const char *method, const char *path, const char *const *headers,
              const char *body, hraw_resp *r)
{
    char *req = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&req, &n);
    fprintf(f, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n", method, path);
    for (; headers && *headers; headers++)
        fprintf(f, "%s\r\n", *headers);
    if (body)
        fprintf(f, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                strlen(body), body);
    else
        fputs("\r\n", f);
    fclose(f);
    int rc = raw_write(fd, req, n);
    free(req);
    if (rc)
        return -1;
    return hraw_read(fd, r, 10000);
}

int hraw_once(int port, const char *method, const char *path, const char *const *headers,
              const char *body, hraw_resp *r)
{
    int fd = raw_connect(port);
    if (fd < 0)
        return -1;
    int rc = hraw_call(fd, method, path, headers, body, r);
    close(fd);
    return rc;
}
