/* session.c - portal sessions in a fixed table of slots; see session.h. */
#include "core/session.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "core/err.h"
#include "core/le.h"
#include "core/secret.h"
#include "core/sha256.h"
#include "core/xmalloc.h"

#define RAND_LEN 32
#define RAW_LEN (4 + 4 + RAND_LEN)

typedef enum ses_state { SLOT_FREE = 0, SLOT_CODE, SLOT_LIVE } ses_state;

typedef struct ses_slot {
    uint32_t gen;     /* changes when the code is used and when the slot is freed */
    uint8_t state;    /* ses_state */
    uint8_t hash[SHA256_LEN]; /* of the random part of the code, or of the cookie */
    int64_t expires;  /* of the code (SLOT_CODE), of the session (SLOT_LIVE) */
    ses_who who;
    char csrf[SES_CSRF_LEN + 1];
} ses_slot;

struct ses_table {
    pthread_mutex_t mu;
    ses_opts o;
    ses_slot *slots;
    uint32_t *free;   /* a stack of free slot indexes */
    uint32_t nfree;
};

void ses_opts_default(ses_opts *o)
{
    *o = (ses_opts){.max = 10000, .per_tenant = 1000, .ttl = 900, .code_ttl = 60};
}

void ses_new(const ses_opts *o, ses_table **out)
{
    ses_table *t = xcalloc(1, sizeof *t);
    t->o = *o;
    if (t->o.max == 0)
        t->o.max = 1;
    t->slots = xcalloc(t->o.max, sizeof *t->slots);
    t->free = xcalloc(t->o.max, sizeof *t->free);
    for (uint32_t i = 0; i < t->o.max; i++)
        t->free[t->nfree++] = t->o.max - 1 - i; /* slot 0 first */
    pthread_mutex_init(&t->mu, NULL);
    *out = t;
}

void ses_free(ses_table *t)
{
    if (!t)
        return;
    sodium_memzero(t->slots, (size_t)t->o.max * sizeof *t->slots);
    free(t->slots);
    free(t->free);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

size_t ses_bytes(const ses_opts *o)
{
    return sizeof(ses_table) + (size_t)(o->max ? o->max : 1) * (sizeof(ses_slot) + 4);
}

/* New random text for slot i at its generation; the slot keeps its hash. */
static void new_text(ses_slot *s, uint32_t i, char text[SES_TEXT_LEN + 1])
{
    uint8_t raw[RAW_LEN];
    le_put32(raw, i);
    le_put32(raw + 4, s->gen);
    randombytes_buf(raw + 8, RAND_LEN);
    sha256(s->hash, raw + 8, RAND_LEN);
    sodium_bin2base64(text, SES_TEXT_LEN + 1, raw, RAW_LEN,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof raw);
}

/* The slot a text names when it is in state want and its random part
 * matches, else NULL. */
static ses_slot *slot_of(ses_table *t, const char *text, size_t n, uint8_t want, int64_t now)
{
    uint8_t raw[RAW_LEN], hash[SHA256_LEN];
    size_t len = 0;
    if (n != SES_TEXT_LEN
        || sodium_base642bin(raw, sizeof raw, text, n, NULL, &len, NULL,
                             sodium_base64_VARIANT_URLSAFE_NO_PADDING)
               != 0
        || len != RAW_LEN)
        return NULL;
    uint32_t i = le_get32(raw), gen = le_get32(raw + 4);
    sha256(hash, raw + 8, RAND_LEN);
    sodium_memzero(raw, sizeof raw);
    if (i >= t->o.max)
        return NULL;
    ses_slot *s = &t->slots[i];
    bool same = secret_hash_equal(hash, s->hash); /* whatever the rest says: no early exit */
    if (!same || s->gen != gen || s->state != want || now >= s->expires)
        return NULL;
    return s;
}

static void release(ses_table *t, ses_slot *s)
{
    uint32_t gen = s->gen + 1;
    sodium_memzero(s, sizeof *s);
    s->gen = gen;
    t->free[t->nfree++] = (uint32_t)(s - t->slots);
}

static size_t sweep_locked(ses_table *t, int64_t now)
{
    size_t live = 0;
    for (uint32_t i = 0; i < t->o.max; i++) {
        ses_slot *s = &t->slots[i];
        if (s->state != SLOT_FREE && now >= s->expires)
            release(t, s);
        else if (s->state == SLOT_LIVE)
            live++;
    }
    return live;
}

static uint32_t tenant_holds(const ses_table *t, uint32_t tenant)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < t->o.max; i++)
        n += t->slots[i].state != SLOT_FREE && t->slots[i].who.tenant == tenant;
    return n;
}

int ses_mint(ses_table *t, const ses_who *who, int64_t now, char code[SES_TEXT_LEN + 1],
             int64_t *expires, char *msg, size_t cap)
{
    pthread_mutex_lock(&t->mu);
    if (t->nfree == 0 || tenant_holds(t, who->tenant) >= t->o.per_tenant)
        sweep_locked(t, now);
    int rc = 0;
    if (t->nfree == 0) {
        snprintf(msg, cap, "the server holds its most portal sessions (%u); try again later",
                 t->o.max);
        rc = TK_ELIMIT;
    } else if (tenant_holds(t, who->tenant) >= t->o.per_tenant) {
        snprintf(msg, cap, "tenant '%s' holds its most portal sessions (%u); try again later",
                 who->tenant_slug, t->o.per_tenant);
        rc = TK_ELIMIT;
    } else {
        uint32_t i = t->free[--t->nfree];
        ses_slot *s = &t->slots[i];
        s->state = SLOT_CODE;
        s->who = *who;
        s->expires = now + t->o.code_ttl;
        *expires = s->expires;
        new_text(s, i, code);
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

static void info_of(const ses_table *t, const ses_slot *s, ses_info *out)
{
    out->handle = (uint64_t)s->gen << 32 | ((uint64_t)(s - t->slots) + 1);
    out->who = s->who;
    memcpy(out->csrf, s->csrf, sizeof out->csrf);
    out->expires = s->expires;
}

int ses_open(ses_table *t, const char *code, size_t n, int64_t now, char sid[SES_TEXT_LEN + 1],
             ses_info *out)
{
    pthread_mutex_lock(&t->mu);
    ses_slot *s = slot_of(t, code, n, SLOT_CODE, now);
    if (s) {
        uint8_t raw[32];
        s->gen++; /* the code is used: its text names this slot no more */
        s->state = SLOT_LIVE;
        s->expires = now + t->o.ttl;
        randombytes_buf(raw, sizeof raw);
        sodium_bin2base64(s->csrf, sizeof s->csrf, raw, sizeof raw,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        sodium_memzero(raw, sizeof raw);
        new_text(s, (uint32_t)(s - t->slots), sid);
        info_of(t, s, out);
    }
    pthread_mutex_unlock(&t->mu);
    return s ? 0 : TK_EUNAUTH;
}

int ses_find(ses_table *t, const char *sid, size_t n, int64_t now, ses_info *out)
{
    pthread_mutex_lock(&t->mu);
    ses_slot *s = slot_of(t, sid, n, SLOT_LIVE, now);
    if (s)
        info_of(t, s, out);
    pthread_mutex_unlock(&t->mu);
    return s ? 0 : TK_EUNAUTH;
}

/* The live slot of handle, or NULL. */
static ses_slot *slot_by_handle(ses_table *t, uint64_t handle)
{
    uint64_t i = (handle & 0xffffffffu);
    if (i == 0 || i > t->o.max)
        return NULL;
    ses_slot *s = &t->slots[i - 1];
    return s->state == SLOT_LIVE && s->gen == (uint32_t)(handle >> 32) ? s : NULL;
}

bool ses_live(ses_table *t, uint64_t handle, int64_t now)
{
    pthread_mutex_lock(&t->mu);
    ses_slot *s = slot_by_handle(t, handle);
    bool live = s && now < s->expires;
    pthread_mutex_unlock(&t->mu);
    return live;
}

void ses_end(ses_table *t, uint64_t handle)
{
    pthread_mutex_lock(&t->mu);
    ses_slot *s = slot_by_handle(t, handle);
    if (s)
        release(t, s);
    pthread_mutex_unlock(&t->mu);
}

size_t ses_sweep(ses_table *t, int64_t now)
{
    pthread_mutex_lock(&t->mu);
    /* Every slot free: nothing to walk (the table is 3 MB at its default
     * size, and the loop thread sweeps it every second). */
    size_t live = t->nfree == t->o.max ? 0 : sweep_locked(t, now);
    pthread_mutex_unlock(&t->mu);
    return live;
}
