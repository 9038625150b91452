/* work.c - tokens file, unknown secrets and the request picker; see work.h. */
#include "bench/tokenbench/work.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "core/xmalloc.h"

#define HEADER "# tokenbench"

static void arrays(work_tokens *t, size_t cap)
{
    t->secret = xcalloc(cap ? cap : 1, sizeof *t->secret);
    t->client_id = xcalloc(cap ? cap : 1, sizeof *t->client_id);
}

void work_tokens_alloc(work_tokens *t, size_t n, const char *tenant, const char *account,
                       const char *roles)
{
    memset(t, 0, sizeof *t);
    t->n = n;
    arrays(t, n);
    snprintf(t->tenant, sizeof t->tenant, "%s", tenant);
    snprintf(t->account, sizeof t->account, "%s", account);
    snprintf(t->roles, sizeof t->roles, "%s", roles);
}

int work_tokens_index(work_tokens *t)
{
    for (size_t i = 0; i < t->n + t->ninvalid; i++) {
        tk_kind kind;
        tk_id id;
        uint8_t hash[TK_HASH_LEN];
        if (secret_parse(t->secret[i], strlen(t->secret[i]), &kind, &id, hash) != 0
            || kind != TK_KIND_TOKEN)
            return -1;
        secret_id_format(&id, t->client_id[i]);
    }
    return 0;
}

/* Parses "key=value" out of the header line into out; 0 or -1. */
static int header_field(const char *line, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    for (const char *p = line; (p = strstr(p, key)) != NULL; p += kl) {
        if ((p == line || p[-1] == ' ') && p[kl] == '=') {
            p += kl + 1;
            size_t n = strcspn(p, " \n");
            if (n == 0 || n >= cap)
                return -1;
            memcpy(out, p, n);
            out[n] = '\0';
            return 0;
        }
    }
    return -1;
}

int work_tokens_read(const char *path, size_t ninvalid, work_tokens *t)
{
    FILE *f = fopen(path, "r");
    char line[512];
    size_t cap = 1024, lineno = 0;

    memset(t, 0, sizeof *t);
    if (!f) {
        fprintf(stderr, "tokenbench: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    t->secret = xmalloc(cap * sizeof *t->secret);
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strcspn(line, "\r\n");
        line[len] = '\0';
        if (line[0] == '#') {
            if (!strncmp(line, HEADER " ", sizeof HEADER)
                && (header_field(line, "tenant", t->tenant, sizeof t->tenant)
                    || header_field(line, "account", t->account, sizeof t->account)
                    || header_field(line, "roles", t->roles, sizeof t->roles))) {
                fprintf(stderr, "tokenbench: %s:%zu: bad header\n", path, lineno);
                goto fail;
            }
            continue;
        }
        if (len == 0)
            continue;
        if (len != TK_SECRET_LEN) {
            fprintf(stderr, "tokenbench: %s:%zu: not a secret\n", path, lineno);
            goto fail;
        }
        if (t->n == cap) {
            cap *= 2;
            t->secret = xrealloc(t->secret, cap * sizeof *t->secret);
        }
        memcpy(t->secret[t->n++], line, TK_SECRET_LEN + 1);
    }
    if (ferror(f) || t->n == 0 || !t->tenant[0]) {
        fprintf(stderr, "tokenbench: %s: %s\n", path,
                ferror(f) ? strerror(errno)
                : t->n == 0 ? "no tokens"
                            : "no '" HEADER " tenant=... account=... roles=...' header");
        goto fail;
    }
    fclose(f);
    f = NULL;
    t->ninvalid = ninvalid;
    t->secret = xrealloc(t->secret, (t->n + ninvalid) * sizeof *t->secret);
    t->client_id = xcalloc(t->n + ninvalid, sizeof *t->client_id);
    for (size_t i = t->n; i < t->n + ninvalid; i++) {
        tk_id id;
        uint8_t hash[TK_HASH_LEN];
        secret_new_id(&id);
        secret_generate(TK_KIND_TOKEN, &id, t->secret[i], hash);
    }
    if (work_tokens_index(t) != 0) {
        fprintf(stderr, "tokenbench: %s: a line is not a tenant-token secret\n", path);
        goto fail;
    }
    return 0;
fail:
    if (f)
        fclose(f);
    work_tokens_free(t);
    return -1;
}

int work_tokens_save(const char *path, const work_tokens *t)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        fprintf(stderr, "tokenbench: cannot write %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    fprintf(f, HEADER " tenant=%s account=%s roles=%s\n", t->tenant, t->account, t->roles);
    for (size_t i = 0; i < t->n; i++)
        fprintf(f, "%s\n", t->secret[i]);
    if (fclose(f) != 0) {
        fprintf(stderr, "tokenbench: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

void work_tokens_free(work_tokens *t)
{
    if (t->secret)
        sodium_memzero(t->secret, (t->n + t->ninvalid) * sizeof *t->secret);
    free(t->secret);
    free(t->client_id);
    memset(t, 0, sizeof *t);
}

int work_pick_init(work_pick *p, const work_tokens *t, double invalid_ratio, double zipf)
{
    memset(p, 0, sizeof *p);
    if (!(invalid_ratio >= 0 && invalid_ratio <= 1) || !(zipf >= 0) || t->n == 0
        || t->n + t->ninvalid > UINT32_MAX || (invalid_ratio > 0 && t->ninvalid == 0))
        return -1;
    p->n = t->n;
    p->ninvalid = t->ninvalid;
    p->invalid_below = invalid_ratio >= 1 ? UINT64_MAX : (uint64_t)(invalid_ratio * 0x1p64);
    if (zipf > 0) {
        p->cdf = xmalloc(t->n * sizeof *p->cdf);
        double sum = 0;
        for (size_t i = 0; i < t->n; i++) {
            sum += pow((double)(i + 1), -zipf);
            p->cdf[i] = sum;
        }
        for (size_t i = 0; i < t->n; i++)
            p->cdf[i] /= sum;
    }
    return 0;
}

void work_pick_free(work_pick *p)
{
    free(p->cdf);
    p->cdf = NULL;
}

uint32_t work_pick_next(const work_pick *p, uint64_t *rng)
{
    if (p->invalid_below && work_rand(rng) < p->invalid_below)
        return (uint32_t)(p->n + work_rand(rng) % p->ninvalid);
    uint64_t r = work_rand(rng);
    if (!p->cdf)
        return (uint32_t)(r % p->n);
    double u = (double)(r >> 11) * 0x1p-53;
    size_t lo = 0, hi = p->n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (uint32_t)lo;
}

uint32_t work_pick_cb(void *arg, uint64_t *rng)
{
    return work_pick_next(arg, rng);
}
