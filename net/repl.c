/*
 * repl.c - the names and message forms of replication; see repl.h.
 *
 * The lease messages are fixed little-endian fields then a text (the name,
 * or the primary's address): a magic and a version first, so that a peer
 * of another version is refused, not misread.
 */
#include "net/repl.h"

#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "core/le.h"

#define LEASE_MAGIC "TKL1"
#define REQ_FIXED (4 + 8 + 8 + 1)
#define REP_FIXED (4 + 8 + 8 + 8 + 4 + 1 + 1)

void repl_log_subject(const char *stream, char *out)
{
    snprintf(out, REPL_SUBJECT_MAX, "%s.log", stream);
}

void repl_lease_subject(const char *stream, char *out)
{
    snprintf(out, REPL_SUBJECT_MAX, "%s.lease", stream);
}

bool repl_stream_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* With a connected callback, a connect that fails goes on in the
 * background (without one, libnats retries inside natsConnection_Connect,
 * for ever with MaxReconnect -1, and the server would never start). */
static void connected_cb(natsConnection *nc, void *arg)
{
    (void)nc;
    (void)arg;
}

/* urls split at the commas into servers[] (pointers into copy). */
static int split_urls(char *copy, const char **servers, int max)
{
    int n = 0;
    for (char *save = NULL, *u = strtok_r(copy, ",", &save); u && n < max;
         u = strtok_r(NULL, ",", &save))
        if (*u)
            servers[n++] = u;
    return n;
}

int repl_connect(const char *urls, const char *name, natsConnection **out, tk_why *why)
{
    natsOptions *o = NULL;
    const char *servers[REPL_MAX_URLS];
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", urls);
    int n = split_urls(copy, servers, REPL_MAX_URLS);
    if (n == 0 || strlen(urls) >= sizeof copy)
        return tk_say(why, TK_EINVAL, "NATS URLs \"%s\": expected nats://HOST:PORT[,...]", urls);
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetServers(o, servers, n);
    if (s == NATS_OK)
        s = natsOptions_SetName(o, name);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(o, 250);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, 1000);
    /* A server that hangs (rather than closes) is noticed within about a
     * second and left for another: the default is two minutes. */
    if (s == NATS_OK)
        s = natsOptions_SetPingInterval(o, 500);
    if (s == NATS_OK)
        s = natsOptions_SetMaxPingsOut(o, 2);
    if (s == NATS_OK)
        s = natsOptions_SetRetryOnFailedConnect(o, true, connected_cb, NULL);
    if (s != NATS_OK) {
        natsOptions_Destroy(o);
        return tk_say(why, TK_EINVAL, "NATS options for %s: %s", urls, natsStatus_GetText(s));
    }
    s = natsConnection_Connect(out, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED)
        return tk_say(why, TK_EIO, "NATS at %s: %s", urls, natsStatus_GetText(s));
    return 0;
}

natsStatus repl_record_msg(natsMsg **out, const char *subject, uint64_t seq,
                           const uint8_t hash[TK_HASH_LEN], const void *payload, size_t len)
{
    char num[24], hex[2 * TK_HASH_LEN + 1];
    snprintf(num, sizeof num, "%llu", (unsigned long long)seq);
    sodium_bin2hex(hex, sizeof hex, hash, TK_HASH_LEN);
    natsStatus s = natsMsg_Create(out, subject, NULL, payload, (int)len);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(*out, "Tokend-Seq", num);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(*out, "Tokend-Hash", hex);
    if (s != NATS_OK) {
        natsMsg_Destroy(*out);
        *out = NULL;
    }
    return s;
}

int repl_record_of(natsMsg *m, uint64_t *seq, uint8_t hash[TK_HASH_LEN])
{
    const char *num = NULL, *hex = NULL;
    size_t bin = 0;
    if (natsMsgHeader_Get(m, "Tokend-Seq", &num) != NATS_OK
        || natsMsgHeader_Get(m, "Tokend-Hash", &hex) != NATS_OK)
        return TK_EPROTO;
    uint64_t v = 0;
    if (!num[0] || strlen(num) > 19)
        return TK_EPROTO;
    for (const char *p = num; *p; p++) {
        if (*p < '0' || *p > '9')
            return TK_EPROTO;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (v == 0 || strlen(hex) != 2 * TK_HASH_LEN
        || sodium_hex2bin(hash, TK_HASH_LEN, hex, strlen(hex), NULL, &bin, NULL) != 0
        || bin != TK_HASH_LEN)
        return TK_EPROTO;
    *seq = v;
    return 0;
}

/* Copies a text field of n bytes (no NUL, no control byte) into out. */
static int text_get(const uint8_t *p, size_t n, char *out, size_t cap)
{
    if (n >= cap)
        return TK_EPROTO;
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] == 0x7f)
            return TK_EPROTO;
    memcpy(out, p, n);
    out[n] = 0;
    return 0;
}

size_t repl_lease_req_put(const repl_lease_req *r, uint8_t *out)
{
    size_t n = strnlen(r->name, REPL_NAME_MAX);
    memcpy(out, LEASE_MAGIC, 4);
    le_put64(out + 4, r->applied);
    le_put64(out + 12, r->sent_ns);
    out[20] = r->join ? 1 : 0;
    memcpy(out + REQ_FIXED, r->name, n);
    return REQ_FIXED + n;
}

int repl_lease_req_get(const void *p, size_t n, repl_lease_req *out)
{
    const uint8_t *b = p;
    if (n < REQ_FIXED || memcmp(b, LEASE_MAGIC, 4) != 0 || b[20] > 1)
        return TK_EPROTO;
    out->applied = le_get64(b + 4);
    out->sent_ns = le_get64(b + 12);
    out->join = b[20] == 1;
    if (n == REQ_FIXED)
        return TK_EPROTO; /* a name is required */
    return text_get(b + REQ_FIXED, n - REQ_FIXED, out->name, sizeof out->name);
}

size_t repl_lease_rep_put(const repl_lease_rep *r, uint8_t *out)
{
    size_t n = strnlen(r->addr, REPL_ADDR_MAX);
    memcpy(out, LEASE_MAGIC, 4);
    le_put64(out + 4, r->sent_ns);
    le_put64(out + 12, r->durable);
    le_put64(out + 20, r->catch_up);
    le_put32(out + 28, r->lease_ms);
    out[32] = r->barrier ? 1 : 0;
    out[33] = r->granted ? 1 : 0;
    memcpy(out + REP_FIXED, r->addr, n);
    return REP_FIXED + n;
}

int repl_lease_rep_get(const void *p, size_t n, repl_lease_rep *out)
{
    const uint8_t *b = p;
    if (n < REP_FIXED || memcmp(b, LEASE_MAGIC, 4) != 0 || b[32] > 1 || b[33] > 1)
        return TK_EPROTO;
    out->granted = b[33] == 1;
    out->sent_ns = le_get64(b + 4);
    out->durable = le_get64(b + 12);
    out->catch_up = le_get64(b + 20);
    out->lease_ms = le_get32(b + 28);
    out->barrier = b[32] == 1;
    return text_get(b + REP_FIXED, n - REP_FIXED, out->addr, sizeof out->addr);
}
