/* peers.c - connections per peer address; see peers.h. */
#include "net/peers.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/xmalloc.h"

typedef struct slot {
    uint8_t key[PEERS_ADDR_LEN];
    uint32_t n; /* 0: empty */
} slot;

struct peers {
    slot *s;
    size_t mask; /* slots - 1; slots is a power of two, at least twice max */
    size_t max, used;
    uint8_t hkey[crypto_shorthash_KEYBYTES];
};

void peers_new(size_t max, peers **out)
{
    peers *p = xcalloc(1, sizeof *p);
    size_t n = 16;
    while (n < 2 * max)
        n *= 2;
    p->s = xcalloc(n, sizeof *p->s);
    p->mask = n - 1;
    p->max = max;
    randombytes_buf(p->hkey, sizeof p->hkey);
    *out = p;
}

void peers_free(peers *p)
{
    if (!p)
        return;
    free(p->s);
    free(p);
}

bool peers_key(const struct sockaddr *sa, uint8_t out[PEERS_ADDR_LEN])
{
    memset(out, 0, PEERS_ADDR_LEN);
    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        out[10] = out[11] = 0xff; /* ::ffff:a.b.c.d */
        memcpy(out + 12, &in->sin_addr, 4);
        return true;
    }
    if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        memcpy(out, &in6->sin6_addr, PEERS_ADDR_LEN);
        if (memcmp(out, mapped, sizeof mapped) != 0)
            memset(out + 8, 0, 8); /* its /64 */
        return true;
    }
    return false;
}

static size_t home(const peers *p, const uint8_t key[PEERS_ADDR_LEN])
{
    uint8_t h[crypto_shorthash_BYTES];
    uint64_t v;
    crypto_shorthash(h, key, PEERS_ADDR_LEN, p->hkey);
    memcpy(&v, h, sizeof v);
    return (size_t)v & p->mask;
}

/* The slot holding key, or the empty slot where it would go. */
static size_t find(const peers *p, const uint8_t key[PEERS_ADDR_LEN])
{
    size_t i = home(p, key);
    while (p->s[i].n && memcmp(p->s[i].key, key, PEERS_ADDR_LEN) != 0)
        i = (i + 1) & p->mask;
    return i;
}

uint32_t peers_count(const peers *p, const uint8_t key[PEERS_ADDR_LEN])
{
    return p->s[find(p, key)].n;
}

void peers_add(peers *p, const uint8_t key[PEERS_ADDR_LEN])
{
    size_t i = find(p, key);
    if (p->s[i].n == 0) {
        if (p->used == p->max) {
            fprintf(stderr, "tokend: peers_add: more than %zu addresses\n", p->max);
            abort();
        }
        memcpy(p->s[i].key, key, PEERS_ADDR_LEN);
        p->used++;
    }
    p->s[i].n++;
}

void peers_del(peers *p, const uint8_t key[PEERS_ADDR_LEN])
{
    size_t i = find(p, key);
    if (p->s[i].n == 0 || --p->s[i].n > 0)
        return;
    p->used--;
    /* Backward-shift deletion: pull later members of the run into the gap
     * when their home allows, so lookups never stop at a false gap. */
    for (size_t j = (i + 1) & p->mask; p->s[j].n; j = (j + 1) & p->mask) {
        size_t h = home(p, p->s[j].key);
        bool movable = i <= j ? (h <= i || h > j) : (h <= i && h > j);
        if (movable) {
            p->s[i] = p->s[j];
            p->s[j].n = 0;
            i = j;
        }
    }
}
