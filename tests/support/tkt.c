/* tkt.c - test helpers; see tkt.h. */
#include "tests/support/tkt.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"

char *tkt_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[PATH_MAX];
    snprintf(tmpl, sizeof tmpl, "%s/tokend-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpl))
        return NULL;
    return strdup(tmpl);
}

char *tkt_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

void tkt_rmdir(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char *p = tkt_path(path, e->d_name);
            struct stat st;
            if (p && lstat(p, &st) == 0) {
                if (S_ISDIR(st.st_mode))
                    tkt_rmdir(p);
                else
                    unlink(p);
            }
            free(p);
        }
        closedir(d);
    }
    rmdir(path);
}

unsigned char *tkt_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf)
        *len = (size_t)(n > 0 ? n : 0);
    return buf;
}

int tkt_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int rc = fwrite(data, 1, len, f) == len ? 0 : -1;
    return fclose(f) == 0 ? rc : -1;
}

int tkt_truncate(const char *path, size_t len)
{
    return truncate(path, (off_t)len);
}

static int mem_contains(const unsigned char *hay, size_t hlen, const void *needle, size_t nlen)
{
    return nlen <= hlen && memmem(hay, hlen, needle, nlen) != NULL;
}

int tkt_dir_contains(const char *dir, const void *needle, size_t nlen)
{
    DIR *d = opendir(dir);
    int found = 0;
    if (!d)
        return 0;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *p = tkt_path(dir, e->d_name);
        struct stat st;
        if (p && lstat(p, &st) == 0) {
            if (S_ISDIR(st.st_mode)) {
                found = tkt_dir_contains(p, needle, nlen);
            } else if (S_ISREG(st.st_mode)) {
                size_t n = 0;
                unsigned char *buf = tkt_read_file(p, &n);
                if (buf)
                    found = mem_contains(buf, n, needle, nlen);
                free(buf);
            }
        }
        free(p);
    }
    closedir(d);
    return found;
}

int64_t tkt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tkt_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

void tkt_base64(const char *in, char *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(in), o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned a = (unsigned char)in[i], b = i + 1 < n ? (unsigned char)in[i + 1] : 0,
                 c = i + 2 < n ? (unsigned char)in[i + 2] : 0;
        out[o++] = tbl[a >> 2];
        out[o++] = tbl[((a & 3) << 4) | (b >> 4)];
        out[o++] = i + 1 < n ? tbl[((b & 15) << 2) | (c >> 6)] : '=';
        out[o++] = i + 2 < n ? tbl[c & 63] : '=';
    }
    out[o] = 0;
}

int tkt_stream_put(void *arg, const void *p, size_t n)
{
    tkt_stream *m = arg;
    if (m->len + n > m->cap) {
        m->cap = (m->len + n) * 2;
        m->buf = realloc(m->buf, m->cap);
        if (!m->buf)
            abort();
    }
    memcpy(m->buf + m->len, p, n);
    m->len += n;
    return 0;
}

int tkt_stream_get(void *arg, void *p, size_t n)
{
    tkt_stream *m = arg;
    if (n > m->len - m->pos)
        return TK_ECORRUPT;
    memcpy(p, m->buf + m->pos, n);
    m->pos += n;
    return 0;
}
