/* keyring.c - the server's named keys in memory; see keyring.h. */
#include "core/keyring.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/secret.h"
#include "core/xmalloc.h"

typedef struct kr_entry {
    bool used;
    uint8_t kind;
    char name[TK_SLUG_MAX + 1];
    tk_id id;
    uint8_t hash[TK_HASH_LEN];
} kr_entry;

struct kr {
    kr_entry e[KR_MAX];
    uint64_t gen;
};

void kr_new(kr **out)
{
    *out = xcalloc(1, sizeof **out);
}

void kr_free(kr *k)
{
    if (!k)
        return;
    sodium_memzero(k, sizeof *k);
    free(k);
}

static kr_entry *named(kr *k, const char *name, size_t n)
{
    for (size_t i = 0; i < KR_MAX; i++)
        if (k->e[i].used && strlen(k->e[i].name) == n && memcmp(k->e[i].name, name, n) == 0)
            return &k->e[i];
    return NULL;
}

bool kr_put(kr *k, const char *name, size_t n, kr_kind kind, const tk_id *id,
            const uint8_t hash[TK_HASH_LEN])
{
    kr_entry *x = named(k, name, n);
    for (size_t i = 0; !x && i < KR_MAX; i++)
        if (!k->e[i].used)
            x = &k->e[i];
    if (!x || n > TK_SLUG_MAX)
        return false;
    if (x->used) /* replaced: what acted under the name acts no more */
        k->gen++;
    x->used = true;
    x->kind = (uint8_t)kind;
    memcpy(x->name, name, n);
    x->name[n] = '\0';
    x->id = *id;
    memcpy(x->hash, hash, TK_HASH_LEN);
    return true;
}

void kr_del(kr *k, const char *name, size_t n)
{
    kr_entry *x = named(k, name, n);
    if (x)
        sodium_memzero(x, sizeof *x);
    k->gen++;
}

bool kr_has(const kr *k, const char *name, size_t n)
{
    return named((kr *)k, name, n) != NULL;
}

bool kr_find(const kr *k, const uint8_t hash[TK_HASH_LEN], kr_kind kind, tk_id *id,
             char name[TK_SLUG_MAX + 1])
{
    const kr_entry *hit = NULL;
    for (size_t i = 0; i < KR_MAX; i++) {
        /* Every entry is compared, used or not: the time says nothing. */
        bool same = secret_hash_equal(k->e[i].hash, hash);
        if (same && k->e[i].used && k->e[i].kind == kind)
            hit = &k->e[i];
    }
    if (!hit)
        return false;
    if (id)
        *id = hit->id;
    if (name)
        memcpy(name, hit->name, sizeof hit->name);
    return true;
}

uint64_t kr_gen(const kr *k)
{
    return k->gen;
}
