/* head.c - signed heads of the event log; see head.h. */
#include "store/head.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "core/le.h"
#include "core/xmalloc.h"
#include "store/fio.h"

#define SEED_PREFIX "tksk_"
#define PUB_PREFIX "tkpk_"
#define LINE_MAX_BYTES 512

struct head_key {
    char *path;
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
    uint8_t sk[crypto_sign_SECRETKEYBYTES];
};

static char *with_suffix(const char *path, const char *suffix)
{
    size_t n = strlen(path) + strlen(suffix) + 1;
    char *p = xmalloc(n);
    snprintf(p, n, "%s%s", path, suffix);
    return p;
}

/* Writes text to path through path.tmp, fsynced, renamed, the directory
 * fsynced: a reader sees the old file or the new one, whole. */
static int write_atomic(const char *path, const char *text, mode_t mode, tk_why *why)
{
    char *tmp = with_suffix(path, ".tmp");
    int rc = 0, fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0 || fio_write_all(fd, text, strlen(text)) != 0 || fio_fsync(fd) != 0
        || rename(tmp, path) != 0) {
        rc = tk_say(why, TK_EIO, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
    }
    if (fd >= 0)
        close(fd);
    if (!rc) {
        char *dir = xstrdup(path), *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        if (fio_fsync_dir(slash ? dir : ".") != 0)
            rc = tk_say(why, TK_EIO, "cannot fsync the directory of %s: %s", path,
                        strerror(errno));
        free(dir);
    }
    free(tmp);
    return rc;
}

/* Reads a one-line file of prefix + hex into out (n bytes). */
static int read_hex_file(const char *path, const char *prefix, uint8_t *out, size_t n,
                         bool secret, tk_why *why)
{
    char buf[LINE_MAX_BYTES];
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return tk_say(why, errno == ENOENT ? TK_ENOTFOUND : TK_EIO, "cannot read %s: %s", path,
                      strerror(errno));
    if (secret && fstat(fd, &st) == 0 && (st.st_mode & 077)) {
        close(fd);
        return tk_say(why, TK_EINVAL, "%s may be read by others (mode %04o): chmod 600 %s", path,
                      (unsigned)(st.st_mode & 07777), path);
    }
    ssize_t r = read(fd, buf, sizeof buf - 1);
    close(fd);
    size_t plen = strlen(prefix);
    if (r > 0)
        buf[r] = '\0';
    if (r <= 0 || strncmp(buf, prefix, plen) != 0
        || sodium_hex2bin(out, n, buf + plen, (size_t)r - plen, "\n", &len, NULL) != 0
        || len != n) {
        sodium_memzero(buf, sizeof buf);
        return tk_say(why, TK_EINVAL, "%s is not a %s key file (%s and %zu hex digits)", path,
                      secret ? "signing" : "public", prefix, 2 * n);
    }
    sodium_memzero(buf, sizeof buf);
    return 0;
}

static int write_hex_file(const char *path, const char *prefix, const uint8_t *in, size_t n,
                          mode_t mode, tk_why *why)
{
    char line[LINE_MAX_BYTES];
    size_t plen = strlen(prefix);
    memcpy(line, prefix, plen);
    sodium_bin2hex(line + plen, sizeof line - plen - 1, in, n);
    strcat(line, "\n");
    int rc = write_atomic(path, line, mode, why);
    sodium_memzero(line, sizeof line);
    return rc;
}

int head_key_load(const char *path, head_key **out, tk_why *why)
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    head_key *k = xcalloc(1, sizeof *k);
    int rc = read_hex_file(path, SEED_PREFIX, seed, sizeof seed, true, why);
    if (rc == TK_ENOTFOUND) { /* first use: a new key, and its public half beside it */
        char *pub = with_suffix(path, ".pub");
        randombytes_buf(seed, sizeof seed);
        crypto_sign_seed_keypair(k->pk, k->sk, seed);
        rc = write_hex_file(path, SEED_PREFIX, seed, sizeof seed, 0600, why);
        if (!rc)
            rc = write_hex_file(pub, PUB_PREFIX, k->pk, sizeof k->pk, 0644, why);
        free(pub);
    } else if (!rc) {
        crypto_sign_seed_keypair(k->pk, k->sk, seed);
    }
    sodium_memzero(seed, sizeof seed);
    if (rc) {
        head_key_free(k);
        return rc;
    }
    k->path = xstrdup(path);
    *out = k;
    return 0;
}

void head_key_free(head_key *k)
{
    if (!k)
        return;
    free(k->path);
    sodium_memzero(k, sizeof *k);
    free(k);
}

void head_key_pub(const head_key *k, uint8_t pub[32])
{
    memcpy(pub, k->pk, 32);
}

int head_pub_load(const char *path, uint8_t pub[32], tk_why *why)
{
    return read_hex_file(path, PUB_PREFIX, pub, 32, false, why);
}

/* What is signed: a domain tag, then seq, hash and time. */
static void signed_bytes(const head_rec *h, uint8_t out[12 + 8 + TK_HASH_LEN + 8])
{
    memcpy(out, "tokend-head", 12); /* with its NUL */
    le_put64(out + 12, h->seq);
    le_put64(out + 12 + 8 + TK_HASH_LEN, (uint64_t)h->time_ms);
    memcpy(out + 20, h->hash, TK_HASH_LEN);
}

int head_write(const head_key *k, const char *logdir, const head_rec *h, tk_why *why)
{
    uint8_t msg[12 + 8 + TK_HASH_LEN + 8], sig[crypto_sign_BYTES];
    char hash[2 * TK_HASH_LEN + 1], s[2 * crypto_sign_BYTES + 1], line[LINE_MAX_BYTES];
    signed_bytes(h, msg);
    crypto_sign_detached(sig, NULL, msg, sizeof msg, k->sk);
    sodium_bin2hex(hash, sizeof hash, h->hash, TK_HASH_LEN);
    sodium_bin2hex(s, sizeof s, sig, sizeof sig);
    snprintf(line, sizeof line, "tokend-head 1 %" PRIu64 " %s %" PRId64 " %s\n", h->seq, hash,
             h->time_ms, s);
    char *inlog = xmalloc(strlen(logdir) + sizeof HEAD_FILE + 1);
    sprintf(inlog, "%s/" HEAD_FILE, logdir);
    char *beside = with_suffix(k->path, ".head");
    int rc = write_atomic(inlog, line, 0644, why);
    if (!rc)
        rc = write_atomic(beside, line, 0600, why);
    free(inlog);
    free(beside);
    return rc;
}

/* Reads and verifies one head file: 0 and *h; TK_ENOTFOUND; TK_ECORRUPT. */
static int read_head(const uint8_t pub[32], const char *path, head_rec *h, tk_why *why)
{
    char buf[LINE_MAX_BYTES], hash[2 * TK_HASH_LEN + 2], sig[2 * crypto_sign_BYTES + 2];
    uint8_t s[crypto_sign_BYTES], msg[12 + 8 + TK_HASH_LEN + 8];
    size_t n;
    int version;
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT ? TK_ENOTFOUND
                               : tk_say(why, TK_EIO, "cannot read %s: %s", path, strerror(errno));
    bool got = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    memset(h, 0, sizeof *h);
    if (!got
        || sscanf(buf, "tokend-head %d %" SCNu64 " %65s %" SCNd64 " %129s", &version, &h->seq,
                  hash, &h->time_ms, sig)
               != 5
        || version != 1
        || sodium_hex2bin(h->hash, TK_HASH_LEN, hash, strlen(hash), NULL, &n, NULL) != 0
        || n != TK_HASH_LEN
        || sodium_hex2bin(s, sizeof s, sig, strlen(sig), NULL, &n, NULL) != 0
        || n != sizeof s)
        return tk_say(why, TK_ECORRUPT, "%s is not a signed head", path);
    signed_bytes(h, msg);
    if (crypto_sign_verify_detached(s, msg, sizeof msg, pub) != 0)
        return tk_say(why, TK_ECORRUPT,
                      "%s does not verify with the signing key: forged, damaged, or signed with "
                      "another key",
                      path);
    return 0;
}

int head_latest(const uint8_t pub[32], const char *logdir, const char *key_path,
                head_rec *out, bool *found, tk_why *why)
{
    char *paths[2] = {xmalloc(strlen(logdir) + sizeof HEAD_FILE + 1),
                      key_path ? with_suffix(key_path, ".head") : NULL};
    sprintf(paths[0], "%s/" HEAD_FILE, logdir);
    int rc = 0;
    *found = false;
    for (int i = 0; i < 2 && !rc; i++) {
        head_rec h;
        if (!paths[i])
            continue;
        int r = read_head(pub, paths[i], &h, why);
        if (r == TK_ENOTFOUND)
            continue;
        if (r) {
            rc = r;
            break;
        }
        if (!*found || h.seq > out->seq) /* the copy that went furthest */
            *out = h;
        *found = true;
    }
    free(paths[0]);
    free(paths[1]);
    return rc;
}

int head_parse(const char *text, head_rec *out)
{
    char hash[2 * TK_HASH_LEN + 2];
    size_t n;
    memset(out, 0, sizeof *out);
    if (sscanf(text, "%" SCNu64 ":%65s", &out->seq, hash) != 2 || text[0] < '0' || text[0] > '9'
        || sodium_hex2bin(out->hash, TK_HASH_LEN, hash, strlen(hash), NULL, &n, NULL) != 0
        || n != TK_HASH_LEN || strlen(hash) != 2 * TK_HASH_LEN)
        return TK_EINVAL;
    return 0;
}
