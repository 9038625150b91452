/*
 * objstore.c - files in a JetStream object store bucket; see objstore.h.
 */
#include "net/objstore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "core/xmalloc.h"
#include "store/fio.h"

#define OBJ_CHUNK (128u * 1024)   /* the clients' default chunk */
#define OBJ_WAIT_MS 10000
#define OBJ_NUID_LEN 22

typedef struct obj_names {
    char stream[160], meta[300];
} obj_names;

static void obj_names_of(const char *bucket, const char *name, obj_names *n)
{
    char enc[sodium_base64_ENCODED_LEN(128, sodium_base64_VARIANT_URLSAFE)];
    size_t len = strlen(name) > 128 ? 128 : strlen(name);
    sodium_bin2base64(enc, sizeof enc, (const unsigned char *)name, len,
                      sodium_base64_VARIANT_URLSAFE);
    snprintf(n->stream, sizeof n->stream, "OBJ_%s", bucket);
    snprintf(n->meta, sizeof n->meta, "$O.%s.M.%s", bucket, enc);
}

static void chunk_subject(const char *bucket, const char *nuid, char *out, size_t cap)
{
    snprintf(out, cap, "$O.%s.C.%s", bucket, nuid);
}

static void new_nuid(char out[OBJ_NUID_LEN + 1])
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    for (int i = 0; i < OBJ_NUID_LEN; i++)
        out[i] = abc[randombytes_uniform(sizeof abc - 1)];
    out[OBJ_NUID_LEN] = 0;
}

static void digest_text(const uint8_t sum[crypto_hash_sha256_BYTES], char *out, size_t cap)
{
    char b64[sodium_base64_ENCODED_LEN(crypto_hash_sha256_BYTES, sodium_base64_VARIANT_URLSAFE)];
    sodium_bin2base64(b64, sizeof b64, sum, crypto_hash_sha256_BYTES,
                      sodium_base64_VARIANT_URLSAFE);
    snprintf(out, cap, "SHA-256=%s", b64);
}

/* The bucket's stream, made when missing. */
static int ensure_bucket(jsCtx *js, const char *bucket, uint32_t replicas, const obj_names *n,
                         tk_why *why)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    if (js_GetStreamInfo(&si, js, n->stream, NULL, &jerr) == NATS_OK) {
        jsStreamInfo_Destroy(si);
        return 0;
    }
    char c[200], m[200];
    snprintf(c, sizeof c, "$O.%s.C.>", bucket);
    snprintf(m, sizeof m, "$O.%s.M.>", bucket);
    const char *subjects[] = {c, m};
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = n->stream;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 2;
    cfg.Storage = js_FileStorage;
    cfg.Replicas = replicas ? (int64_t)replicas : 1;
    cfg.Discard = js_DiscardNew;
    cfg.AllowRollup = true;
    cfg.AllowDirect = true;
    natsStatus s = js_AddStream(&si, js, &cfg, NULL, &jerr);
    if (s != NATS_OK)
        return tk_say(why, TK_EIO, "object store %s: %s (%d)", bucket, natsStatus_GetText(s),
                      (int)jerr);
    jsStreamInfo_Destroy(si);
    return 0;
}

/* The object's meta (a JSON object the caller decrefs), or NULL:
 * *rc TK_ENOTFOUND or TK_EIO. */
static json_t *meta_get(jsCtx *js, const obj_names *n, int *rc, tk_why *why)
{
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetLastMsg(&m, js, n->stream, n->meta, NULL, &jerr);
    if (s != NATS_OK) {
        *rc = jerr == JSStreamNotFoundErr || jerr == JSNoMessageFoundErr || s == NATS_NOT_FOUND
                  ? TK_ENOTFOUND
                  : tk_say(why, TK_EIO, "object store %s: %s", n->stream, natsStatus_GetText(s));
        return NULL;
    }
    json_error_t e;
    json_t *j = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, &e);
    natsMsg_Destroy(m);
    if (!json_is_object(j)) {
        json_decref(j);
        *rc = tk_say(why, TK_ECORRUPT, "object store %s: the meta of %s is not JSON", n->stream,
                     n->meta);
        return NULL;
    }
    *rc = 0;
    return j;
}

int obj_put_file(jsCtx *js, const char *bucket, uint32_t replicas, const char *name,
                 const char *path, tk_why *why)
{
    obj_names n;
    char nuid[OBJ_NUID_LEN + 1], subj[200], digest[80], mtime[40];
    uint8_t sum[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_state st;
    uint64_t size = 0, chunks = 0;
    int rc, fd = -1;
    uint8_t *buf = NULL;
    json_t *old = NULL, *meta = NULL;
    char *text = NULL;
    natsMsg *m = NULL;

    obj_names_of(bucket, name, &n);
    if ((rc = ensure_bucket(js, bucket, replicas, &n, why)))
        return rc;
    old = meta_get(js, &n, &rc, why);
    if (rc && rc != TK_ENOTFOUND)
        return rc;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        rc = tk_say(why, TK_EIO, "cannot read %s: %s", path, strerror(errno));
        goto out;
    }
    new_nuid(nuid);
    chunk_subject(bucket, nuid, subj, sizeof subj);
    crypto_hash_sha256_init(&st);
    buf = xmalloc(OBJ_CHUNK);
    for (;;) {
        ssize_t got = read(fd, buf, OBJ_CHUNK);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = tk_say(why, TK_EIO, "cannot read %s: %s", path, strerror(errno));
            goto out;
        }
        if (got == 0)
            break;
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = OBJ_WAIT_MS;
        jsErrCode jerr = 0;
        natsStatus s = js_Publish(NULL, js, subj, buf, (int)got, &po, &jerr);
        if (s != NATS_OK) {
            rc = tk_say(why, TK_EIO, "object store %s: a chunk of %s: %s", bucket, name,
                        natsStatus_GetText(s));
            goto out; /* the chunks sent stay orphaned until the next put purges by nuid */
        }
        crypto_hash_sha256_update(&st, buf, (unsigned long long)got);
        size += (uint64_t)got;
        chunks++;
    }
    crypto_hash_sha256_final(&st, sum);
    digest_text(sum, digest, sizeof digest);
    time_t now = time(NULL);
    strftime(mtime, sizeof mtime, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    meta = json_pack("{s:s,s:s,s:s,s:I,s:s,s:I,s:s,s:{s:i}}", "name", name, "bucket", bucket,
                     "nuid", nuid, "size", (json_int_t)size, "mtime", mtime, "chunks",
                     (json_int_t)chunks, "digest", digest, "options", "max_chunk_size",
                     (int)OBJ_CHUNK);
    text = meta ? json_dumps(meta, JSON_COMPACT) : NULL;
    if (!text || natsMsg_Create(&m, n.meta, NULL, text, (int)strlen(text)) != NATS_OK
        || natsMsgHeader_Set(m, "Nats-Rollup", "sub") != NATS_OK) {
        rc = tk_say(why, TK_EIO, "object store %s: cannot make the meta of %s", bucket, name);
        goto out;
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = OBJ_WAIT_MS;
    jsErrCode jerr = 0;
    natsStatus s = js_PublishMsg(NULL, js, m, &po, &jerr);
    if (s != NATS_OK) {
        rc = tk_say(why, TK_EIO, "object store %s: the meta of %s: %s", bucket, name,
                    natsStatus_GetText(s));
        goto out;
    }
    /* The old version's chunks, now that nobody is sent to them. */
    const char *was = old ? json_string_value(json_object_get(old, "nuid")) : NULL;
    if (was && strlen(was) < 64) {
        char oldsubj[200];
        jsOptions o;
        jsOptions_Init(&o);
        chunk_subject(bucket, was, oldsubj, sizeof oldsubj);
        o.Stream.Purge.Subject = oldsubj;
        (void)js_PurgeStream(js, n.stream, &o, &jerr);
    }
    rc = 0;
out:
    natsMsg_Destroy(m);
    free(text);
    json_decref(meta);
    json_decref(old);
    free(buf);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* Writes every chunk of the object into fd, checking count, size and
 * digest against the meta. */
static int read_chunks(jsCtx *js, const char *bucket, const obj_names *n, json_t *meta, int fd,
                       tk_why *why)
{
    const char *nuid = json_string_value(json_object_get(meta, "nuid"));
    const char *want = json_string_value(json_object_get(meta, "digest"));
    json_int_t size = json_integer_value(json_object_get(meta, "size"));
    json_int_t chunks = json_integer_value(json_object_get(meta, "chunks"));
    if (!nuid || strlen(nuid) >= 64 || !want || size < 0 || chunks < 0)
        return tk_say(why, TK_ECORRUPT, "object store %s: a malformed meta", bucket);
    char subj[200], got[80];
    uint8_t sum[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    chunk_subject(bucket, nuid, subj, sizeof subj);
    natsSubscription *sub = NULL;
    jsSubOptions so;
    jsErrCode jerr = 0;
    jsSubOptions_Init(&so);
    so.Stream = n->stream;
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverAll;
    int rc = 0;
    json_int_t total = 0;
    if (chunks > 0 && js_SubscribeSync(&sub, js, subj, NULL, &so, &jerr) != NATS_OK)
        return tk_say(why, TK_EIO, "object store %s: cannot read the chunks", bucket);
    for (json_int_t i = 0; i < chunks && rc == 0; i++) {
        natsMsg *m = NULL;
        natsStatus s = natsSubscription_NextMsg(&m, sub, OBJ_WAIT_MS);
        if (s != NATS_OK) {
            rc = tk_say(why, s == NATS_TIMEOUT ? TK_ECORRUPT : TK_EIO,
                        "object store %s: chunk %lld of %lld: %s", bucket, (long long)i + 1,
                        (long long)chunks, natsStatus_GetText(s));
            break;
        }
        const char *d = natsMsg_GetData(m);
        size_t len = (size_t)natsMsg_GetDataLength(m);
        crypto_hash_sha256_update(&st, (const unsigned char *)d, len);
        total += (json_int_t)len;
        if (fio_write_all(fd, d, len) != 0)
            rc = tk_say(why, TK_EIO, "cannot write the snapshot: %s", strerror(errno));
        natsMsg_Destroy(m);
    }
    if (sub) {
        natsSubscription_Unsubscribe(sub);
        natsSubscription_Destroy(sub);
    }
    if (rc)
        return rc;
    crypto_hash_sha256_final(&st, sum);
    digest_text(sum, got, sizeof got);
    if (total != size || strcmp(got, want) != 0)
        return tk_say(why, TK_ECORRUPT, "object store %s: the object's chunks do not match its "
                      "meta (%lld bytes, %s; the meta says %lld, %s)", bucket, (long long)total,
                      got, (long long)size, want);
    return 0;
}

int obj_get_file(jsCtx *js, const char *bucket, const char *name, const char *path,
                 tk_why *why)
{
    obj_names n;
    int rc;
    obj_names_of(bucket, name, &n);
    json_t *meta = meta_get(js, &n, &rc, why);
    if (!meta)
        return rc;
    if (json_is_true(json_object_get(meta, "deleted"))) {
        json_decref(meta);
        return TK_ENOTFOUND;
    }
    char *tmp = xasprintf("%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = tk_say(why, TK_EIO, "cannot write %s: %s", tmp, strerror(errno));
    } else {
        rc = read_chunks(js, bucket, &n, meta, fd, why);
        if (!rc && fio_fsync(fd) != 0)
            rc = tk_say(why, TK_EIO, "cannot write %s: %s", tmp, strerror(errno));
        close(fd);
        if (!rc && rename(tmp, path) != 0)
            rc = tk_say(why, TK_EIO, "cannot rename %s: %s", tmp, strerror(errno));
        if (rc)
            unlink(tmp);
    }
    free(tmp);
    json_decref(meta);
    return rc;
}
