/*
 * idxbench.c - speed and size of the credential index (core/idx.c).
 *
 *   bin/idxbench [--tokens N] [--json]
 *
 * Inserts N random entries (default 1000000), then measures idx_get for
 * present ids in random order, for absent ids, and as a dependent chain
 * (each lookup's id is read from the entry the previous lookup returned,
 * so misses cannot overlap: that is latency, the others are throughput).
 * For reference, in the same run: one random read of an index-entry-sized record from
 * a plain N-record array (the floor for any index that must touch the
 * entry), the same as a dependent chain, a binary search in a sorted array
 * of the ids, and SipHash of one id alone. Query ids are laid out in
 * lookup order beforehand, so reading them costs no cache miss of its own.
 * Each figure is the best of 3 runs of up to 2,000,000 operations.
 */
#include <errno.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/idx.h"

#define MAX_OPS 2000000u
#define RUNS 3

typedef struct bench {
    size_t n;                     /* entries in the index */
    size_t ops;                   /* operations per measured run */
    uint8_t (*ids)[TK_ID_LEN];    /* the n present ids */
    uint8_t (*query)[TK_ID_LEN];  /* ops present ids, in lookup order */
    uint8_t (*absent)[TK_ID_LEN]; /* ops absent ids */
    uint32_t *order;              /* ops random indexes into [0, n) */
    idx_entry *plain;             /* baseline: n records in an array */
    uint8_t (*sorted)[TK_ID_LEN]; /* baseline: ids sorted */
    idx *ix;
} bench;

typedef struct result {
    double build_s, bytes_per_entry;
    double present, present_dep, absent;
    double base_read, base_read_dep, base_bsearch, siphash;
} result;

static volatile uint64_t sink;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *alloc_or_die(size_t count, size_t size)
{
    void *p = calloc(count, size);
    if (!p) {
        fprintf(stderr, "idxbench: out of memory\n");
        exit(1);
    }
    return p;
}

static uint32_t below(uint32_t n)
{
    return randombytes_uniform(n);
}

static int id_cmp(const void *a, const void *b)
{
    return memcmp(a, b, TK_ID_LEN);
}

/* Random ids; entry i's hash field holds the id of the next entry in one
 * random cycle through all n (for the dependent chains), ref its index. */
static void setup(bench *b)
{
    uint32_t *cycle = alloc_or_die(b->n, sizeof *cycle);

    b->ops = b->n < MAX_OPS ? b->n : MAX_OPS;
    b->ids = alloc_or_die(b->n, TK_ID_LEN);
    b->query = alloc_or_die(b->ops, TK_ID_LEN);
    b->absent = alloc_or_die(b->ops, TK_ID_LEN);
    b->order = alloc_or_die(b->ops, sizeof *b->order);
    b->plain = alloc_or_die(b->n, sizeof *b->plain);
    b->sorted = alloc_or_die(b->n, TK_ID_LEN);

    randombytes_buf(b->ids, b->n * TK_ID_LEN);
    randombytes_buf(b->absent, b->ops * TK_ID_LEN);
    for (size_t i = 0; i < b->n; i++)
        cycle[i] = (uint32_t)i;
    for (size_t i = b->n - 1; i > 0; i--) {
        uint32_t j = below((uint32_t)i + 1), t = cycle[i];
        cycle[i] = cycle[j];
        cycle[j] = t;
    }
    for (size_t k = 0; k < b->n; k++) {
        uint32_t i = cycle[k], next = cycle[(k + 1) % b->n];
        idx_entry *e = &b->plain[i];
        memcpy(e->id, b->ids[i], TK_ID_LEN);
        memcpy(e->hash, b->ids[next], TK_ID_LEN);
        e->ref = next;
        e->tenant = i;
        e->account = i;
        e->kind = 1;
    }
    for (size_t k = 0; k < b->ops; k++) {
        b->order[k] = below((uint32_t)b->n);
        memcpy(b->query[k], b->ids[b->order[k]], TK_ID_LEN);
    }
    memcpy(b->sorted, b->ids, b->n * TK_ID_LEN);
    qsort(b->sorted, b->n, TK_ID_LEN, id_cmp);
    free(cycle);
}

static void build(bench *b, result *r)
{
    idx_new(&b->ix);
    double t0 = now_s();
    for (size_t i = 0; i < b->n; i++)
        idx_put(b->ix, &b->plain[i]);
    r->build_s = now_s() - t0;
    r->bytes_per_entry = (double)idx_bytes(b->ix) / (double)idx_count(b->ix);
    if (idx_count(b->ix) != b->n) {
        fprintf(stderr, "idxbench: index holds %zu of %zu entries\n", idx_count(b->ix), b->n);
        exit(1);
    }
}

enum { M_PRESENT, M_PRESENT_DEP, M_ABSENT, M_READ, M_READ_DEP, M_BSEARCH, M_SIPHASH };

/* One timed run of measurement m; returns ns per operation. */
static double run_once(const bench *b, int m)
{
    uint64_t acc = 0;
    size_t misses = 0;
    uint8_t id[TK_ID_LEN];
    uint32_t cur = 0;
    unsigned char key[crypto_shorthash_KEYBYTES] = {1}, out[crypto_shorthash_BYTES];

    memcpy(id, b->ids[0], TK_ID_LEN);
    double t0 = now_s();
    for (size_t k = 0; k < b->ops; k++) {
        const idx_entry *e;
        switch (m) {
        case M_PRESENT:
            e = idx_get(b->ix, b->query[k]);
            acc += e ? e->tenant : 0;
            misses += !e;
            break;
        case M_PRESENT_DEP:
            e = idx_get(b->ix, id);
            if (!e) {
                misses++;
                break;
            }
            memcpy(id, e->hash, TK_ID_LEN);
            break;
        case M_ABSENT:
            misses += idx_get(b->ix, b->absent[k]) != NULL;
            break;
        case M_READ:
            acc += b->plain[b->order[k]].tenant;
            break;
        case M_READ_DEP:
            cur = b->plain[cur].ref;
            break;
        case M_BSEARCH:
            acc += bsearch(b->query[k], b->sorted, b->n, TK_ID_LEN, id_cmp) != NULL;
            break;
        case M_SIPHASH:
            crypto_shorthash(out, b->query[k], TK_ID_LEN, key);
            acc += out[0];
            break;
        }
    }
    double dt = now_s() - t0;
    if (misses) {
        fprintf(stderr, "idxbench: %zu wrong lookup answers\n", misses);
        exit(1);
    }
    sink = acc + cur + id[0];
    return dt * 1e9 / (double)b->ops;
}

static double best_of(const bench *b, int m)
{
    double best = run_once(b, m);
    for (int i = 1; i < RUNS; i++) {
        double t = run_once(b, m);
        if (t < best)
            best = t;
    }
    return best;
}

static void measure(const bench *b, result *r)
{
    r->present = best_of(b, M_PRESENT);
    r->present_dep = best_of(b, M_PRESENT_DEP);
    r->absent = best_of(b, M_ABSENT);
    r->base_read = best_of(b, M_READ);
    r->base_read_dep = best_of(b, M_READ_DEP);
    r->base_bsearch = best_of(b, M_BSEARCH);
    r->siphash = best_of(b, M_SIPHASH);
}

static void report(const bench *b, const result *r, int json)
{
    if (json) {
        printf("{\"tokens\":%zu,\"ops_per_run\":%zu,\"build_s\":%.3f,"
               "\"bytes_per_entry\":%.2f,\"get_present_ns\":%.1f,"
               "\"get_present_dependent_ns\":%.1f,\"get_absent_ns\":%.1f,"
               "\"baseline_read_ns\":%.1f,\"baseline_read_dependent_ns\":%.1f,"
               "\"baseline_bsearch_ns\":%.1f,\"siphash_ns\":%.1f}\n",
               b->n, b->ops, r->build_s, r->bytes_per_entry, r->present, r->present_dep,
               r->absent, r->base_read, r->base_read_dep, r->base_bsearch, r->siphash);
        return;
    }
    printf("idxbench: %zu tokens, %zu ops per run, best of %d\n", b->n, b->ops, RUNS);
    printf("  build                   %8.3f s   (%.0f ns per insert)\n", r->build_s,
           r->build_s * 1e9 / (double)b->n);
    printf("  bytes per entry         %8.2f\n", r->bytes_per_entry);
    printf("  idx_get present         %8.1f ns/op  (independent, random order)\n", r->present);
    printf("  idx_get present, chain  %8.1f ns/op  (dependent: latency)\n", r->present_dep);
    printf("  idx_get absent          %8.1f ns/op\n", r->absent);
    printf("  baseline: 64-byte read  %8.1f ns/op  (random record of an N-array)\n",
           r->base_read);
    printf("  baseline: read, chain   %8.1f ns/op  (dependent: one miss of latency)\n",
           r->base_read_dep);
    printf("  baseline: bsearch       %8.1f ns/op  (sorted array of the ids)\n",
           r->base_bsearch);
    printf("  siphash of one id       %8.1f ns/op\n", r->siphash);
}

static int usage(FILE *f, int rc)
{
    fprintf(f, "usage: idxbench [--tokens N] [--json]\n"
               "  --tokens N  entries to insert (default 1000000, at most 1000000000)\n"
               "  --json      print one JSON object instead of text\n");
    return rc;
}

int main(int argc, char **argv)
{
    bench b = {.n = 1000000};
    result r;
    int json = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--tokens") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(argv[++i], &end, 10);
            if (errno || *end || end == argv[i] || v < 2 || v > 1000000000ULL) {
                fprintf(stderr, "idxbench: --tokens wants a number in [2, 1e9]\n");
                return 2;
            }
            b.n = (size_t)v;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            return usage(stdout, 0);
        } else {
            return usage(stderr, 2);
        }
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "idxbench: sodium_init failed\n");
        return 1;
    }
    setup(&b);
    build(&b, &r);
    measure(&b, &r);
    report(&b, &r, json);
    idx_free(b.ix);
    free(b.ids);
    free(b.query);
    free(b.absent);
    free(b.order);
    free(b.plain);
    free(b.sorted);
    return 0;
}
