/*
 * test_idx.c - the credential index: exact answers at a million entries,
 * before, during and after growth; deleted ids never come back through
 * reused entries or stale slots; the size budget; growth is incremental.
 *
 * Ids come from a seeded splitmix64, so a failure replays. Present ids have
 * the low bit of byte 15 clear and absent ids have it set, so "absent" is
 * exact, not merely likely. Entry contents are derived from the id's index
 * i and a generation g (bumped on replace), and every lookup compares all
 * 69 caller-visible bytes of the entry. Images (idx_save, idx_load) come
 * back answering the same, and a cut or damaged one is refused whole.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/idx.h"
#include "tests/support/tkt.h"

#if defined(__SANITIZE_ADDRESS__)
#define BIG_N 250000u /* sanitizer builds: same checks, fewer entries */
#else
#define BIG_N 1000000u
#endif

typedef struct ids {
    uint8_t (*present)[TK_ID_LEN];
    uint8_t (*absent)[TK_ID_LEN];
    size_t n;
} ids;

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void random_id(uint64_t *rng, uint8_t id[TK_ID_LEN], int absent)
{
    uint64_t a = splitmix64(rng), b = splitmix64(rng);
    memcpy(id, &a, 8);
    memcpy(id + 8, &b, 8);
    id[15] = (uint8_t)((id[15] & ~1u) | (absent ? 1u : 0u));
}

static ids make_ids(size_t n, uint64_t seed)
{
    ids s = {malloc(n * TK_ID_LEN), malloc(n * TK_ID_LEN), n};
    assert_non_null(s.present);
    assert_non_null(s.absent);
    for (size_t i = 0; i < n; i++) {
        random_id(&seed, s.present[i], 0);
        random_id(&seed, s.absent[i], 1);
    }
    return s;
}

static void free_ids(ids *s)
{
    free(s->present);
    free(s->absent);
}

static idx_entry make_entry(const uint8_t id[TK_ID_LEN], uint32_t i, uint32_t g)
{
    idx_entry e;
    memset(&e, 0, sizeof e);
    memcpy(e.id, id, TK_ID_LEN);
    for (int j = 0; j < IDX_HASH_LEN; j++)
        e.hash[j] = (uint8_t)(i * 31u + (uint32_t)j * 7u + g);
    e.expires_at = i * 1000u + g;
    e.tenant = i ^ 0xa5a5a5a5u;
    e.account = i * 3u + 1u;
    e.ref = i + g * 0x10000000u;
    e.kind = (uint8_t)(1 + (i & 1));
    e.internal_[0] = 0xff; /* the index must ignore what callers put here */
    return e;
}

static void put(idx *ix, const uint8_t id[TK_ID_LEN], uint32_t i, uint32_t g)
{
    idx_entry e = make_entry(id, i, g);
    assert_int_equal(idx_put(ix, &e), 0);
}

/* The entry for id is present with exactly the contents of (i, g). */
static void expect(const idx *ix, const uint8_t id[TK_ID_LEN], uint32_t i, uint32_t g)
{
    const idx_entry *got = idx_get(ix, id);
    idx_entry want = make_entry(id, i, g);
    assert_non_null(got);
    /* Everything but the index's own byte. */
    size_t cut = offsetof(idx_entry, internal_), after = cut + sizeof want.internal_;
    assert_memory_equal(got, &want, cut);
    assert_memory_equal((const char *)got + after, (const char *)&want + after,
                        sizeof want - after);
    assert_int_equal((uintptr_t)got % 64, 0); /* one cache line each */
}

static void expect_none(const idx *ix, const uint8_t id[TK_ID_LEN])
{
    assert_null(idx_get(ix, id));
}

static void basic_put_get_replace_del(void **state)
{
    (void)state;
    uint8_t a[TK_ID_LEN], b[TK_ID_LEN], zero[TK_ID_LEN] = {0};
    uint64_t rng = 1;
    idx *ix;

    random_id(&rng, a, 0);
    random_id(&rng, b, 0);
    assert_int_equal(idx_new(&ix), 0);
    assert_int_equal(idx_count(ix), 0);
    expect_none(ix, a);
    expect_none(ix, zero);
    assert_int_equal(idx_del(ix, a), TK_ENOTFOUND);

    put(ix, a, 1, 0);
    assert_int_equal(idx_count(ix), 1);
    expect(ix, a, 1, 0);
    expect_none(ix, b);

    put(ix, a, 1, 5); /* replace in place: same count, new contents */
    assert_int_equal(idx_count(ix), 1);
    expect(ix, a, 1, 5);

    put(ix, b, 2, 0);
    put(ix, zero, 3, 0); /* the all-zero id is an id like any other */
    assert_int_equal(idx_count(ix), 3);
    expect(ix, zero, 3, 0);

    assert_int_equal(idx_del(ix, a), 0);
    expect_none(ix, a);
    assert_int_equal(idx_del(ix, a), TK_ENOTFOUND);
    assert_int_equal(idx_count(ix), 2);
    expect(ix, b, 2, 0);

    assert_int_equal(idx_del(ix, zero), 0);
    expect_none(ix, zero); /* freed entries are zeroed: must still miss */
    assert_int_equal(idx_del(ix, b), 0);
    assert_int_equal(idx_count(ix), 0);
    expect_none(ix, b);
    assert_false(idx_growing(ix));
    idx_free(ix);
    idx_free(NULL);
}

/* Insert n, check all present and n absent, delete every other, check all,
 * delete the rest. With during_growth, lookups, deletes (so freed entries
 * get reused mid-move) and in-place replaces (of moved and unmoved entries)
 * are interleaved with the inserts. */
static void million(bool during_growth)
{
    ids s = make_ids(BIG_N, during_growth ? 22 : 11);
    uint8_t *alive = calloc(s.n, 1), *gen = calloc(s.n, 1);
    uint64_t rng = 99;
    size_t live = 0, growing_puts = 0, episodes = 0;
    bool was_growing = false;
    idx *ix;

    assert_non_null(alive);
    assert_non_null(gen);
    assert_int_equal(idx_new(&ix), 0);
    for (uint32_t i = 0; i < s.n; i++) {
        put(ix, s.present[i], i, 0);
        alive[i] = 1;
        live++;
        /* Delete a random earlier id: moved or not, its entry is reused
         * by the next put, anywhere in the range the move still walks. */
        uint32_t d = UINT32_MAX;
        if (during_growth && i % 3 == 2) {
            d = (uint32_t)(splitmix64(&rng) % i);
            if (alive[d]) {
                assert_int_equal(idx_del(ix, s.present[d]), 0);
                alive[d] = 0;
                live--;
            } else {
                assert_int_equal(idx_del(ix, s.present[d]), TK_ENOTFOUND);
            }
        }
        assert_int_equal(idx_count(ix), live);
        bool g = idx_growing(ix);
        episodes += g && !was_growing;
        was_growing = g;
        if (!during_growth || !g)
            continue;
        growing_puts++;
        expect(ix, s.present[i], i, 0);
        uint32_t j = (uint32_t)(splitmix64(&rng) % (i + 1));
        if (alive[j] && i % 5 == 0) {
            gen[j]++;
            put(ix, s.present[j], j, gen[j]);
            assert_int_equal(idx_count(ix), live);
        }
        if (alive[j])
            expect(ix, s.present[j], j, gen[j]);
        else
            expect_none(ix, s.present[j]);
        if (d != UINT32_MAX)
            expect_none(ix, s.present[d]);
        expect_none(ix, s.absent[i]);
    }
    if (during_growth) {
        /* Growth was seen, many times, while the lookups above were exact. */
        assert_true(episodes >= 10);
        assert_true(growing_puts > s.n / 20);
    }
    for (uint32_t i = 0; i < s.n; i++) {
        if (alive[i])
            expect(ix, s.present[i], i, gen[i]);
        else
            expect_none(ix, s.present[i]);
        expect_none(ix, s.absent[i]);
    }
    for (uint32_t i = 0; i < s.n; i += 2) {
        if (alive[i]) {
            assert_int_equal(idx_del(ix, s.present[i]), 0);
            alive[i] = 0;
            live--;
        } else {
            assert_int_equal(idx_del(ix, s.present[i]), TK_ENOTFOUND);
        }
    }
    assert_int_equal(idx_count(ix), live);
    for (uint32_t i = 0; i < s.n; i++) {
        if (alive[i])
            expect(ix, s.present[i], i, gen[i]);
        else
            expect_none(ix, s.present[i]);
    }
    for (uint32_t i = 0; i < s.n; i++) {
        if (alive[i])
            assert_int_equal(idx_del(ix, s.present[i]), 0);
    }
    assert_int_equal(idx_count(ix), 0);
    for (uint32_t i = 0; i < s.n; i += 7)
        expect_none(ix, s.present[i]);
    idx_free(ix);
    free(alive);
    free(gen);
    free_ids(&s);
}

static void million_exact(void **state)
{
    (void)state;
    million(false);
}

static void million_exact_during_growth(void **state)
{
    (void)state;
    million(true);
}

/* Deleting A and inserting B into A's freed entry must not make A findable:
 * not through the current table, and not through a stale old-table slot
 * that still names the entry while growth is in progress. */
static void reuse_after_delete_does_not_resurrect(void **state)
{
    (void)state;
    ids s = make_ids(20000, 33);
    uint8_t b1[TK_ID_LEN], b2[TK_ID_LEN], b3[TK_ID_LEN];
    uint64_t rng = 7;
    idx *ix;
    uint32_t n = 0;

    random_id(&rng, b1, 0);
    random_id(&rng, b2, 0);
    random_id(&rng, b3, 0);
    assert_int_equal(idx_new(&ix), 0);

    /* Not growing. */
    for (; n < 90; n++)
        put(ix, s.present[n], n, 0);
    assert_false(idx_growing(ix));
    const idx_entry *pa = idx_get(ix, s.present[50]);
    assert_int_equal(idx_del(ix, s.present[50]), 0);
    put(ix, b1, 1000001, 0);
    assert_ptr_equal(idx_get(ix, b1), pa); /* B really took A's entry */
    expect_none(ix, s.present[50]);
    expect(ix, b1, 1000001, 0);
    assert_int_equal(idx_del(ix, s.present[50]), TK_ENOTFOUND);

    /* Growing: A_late was inserted just before growth began and is not
     * moved yet (only in the old table); A_early was moved already. */
    while (!(idx_growing(ix) && idx_count(ix) > 5000)) {
        put(ix, s.present[n], n, 0);
        n++;
    }
    uint32_t late = n - 1, early = 0;
    const idx_entry *pl = idx_get(ix, s.present[late]);
    const idx_entry *pe = idx_get(ix, s.present[early]);
    assert_int_equal(idx_del(ix, s.present[late]), 0);
    put(ix, b2, 1000002, 0);
    assert_ptr_equal(idx_get(ix, b2), pl);
    assert_int_equal(idx_del(ix, s.present[early]), 0);
    put(ix, b3, 1000003, 0);
    assert_ptr_equal(idx_get(ix, b3), pe);
    assert_true(idx_growing(ix));
    expect_none(ix, s.present[late]);
    expect_none(ix, s.present[early]);
    expect(ix, b2, 1000002, 0);
    expect(ix, b3, 1000003, 0);
    assert_int_equal(idx_del(ix, s.present[late]), TK_ENOTFOUND);

    /* A deleted id may come back only by being put again. */
    put(ix, s.present[late], late, 9);
    expect(ix, s.present[late], late, 9);
    assert_true(idx_growing(ix));

    while (idx_growing(ix))
        idx_step(ix, 100);
    expect_none(ix, s.present[early]);
    expect_none(ix, s.present[50]);
    expect(ix, s.present[late], late, 9);
    expect(ix, b1, 1000001, 0);
    expect(ix, b2, 1000002, 0);
    expect(ix, b3, 1000003, 0);
    for (uint32_t i = 1; i < late; i++) {
        if (i != 50)
            expect(ix, s.present[i], i, 0);
    }
    assert_int_equal(idx_count(ix), n + 1);

    /* Entries reused mid-move must also survive the next growth. */
    bool grew = false;
    while (!grew || idx_growing(ix)) {
        grew = grew || idx_growing(ix);
        put(ix, s.present[n], n, 0);
        n++;
    }
    expect(ix, b1, 1000001, 0);
    expect(ix, b2, 1000002, 0);
    expect(ix, b3, 1000003, 0);
    expect(ix, s.present[late], late, 9);
    for (uint32_t i = 1; i < n; i++) {
        if (i != 50 && i != late)
            expect(ix, s.present[i], i, 0);
    }
    assert_int_equal(idx_count(ix), n + 1);
    idx_free(ix);
    free_ids(&s);
}

/* Ids that agree on their first 12 (or 15) bytes are told apart. */
static void shared_prefix_ids(void **state)
{
    (void)state;
    const uint32_t n = 200000;
    uint8_t id[TK_ID_LEN];
    idx *ix;

    assert_int_equal(idx_new(&ix), 0);
    memset(id, 0xab, 12);
    for (uint32_t i = 0; i < n; i++) {
        memcpy(id + 12, &i, 4);
        put(ix, id, i, 0);
    }
    assert_int_equal(idx_count(ix), n);
    for (uint32_t i = 0; i < 2 * n; i++) {
        memcpy(id + 12, &i, 4);
        if (i < n)
            expect(ix, id, i, 0);
        else
            expect_none(ix, id);
    }
    for (uint32_t i = 0; i < n; i += 2) {
        memcpy(id + 12, &i, 4);
        assert_int_equal(idx_del(ix, id), 0);
    }
    for (uint32_t i = 0; i < n; i++) {
        memcpy(id + 12, &i, 4);
        if (i % 2)
            expect(ix, id, i, 0);
        else
            expect_none(ix, id);
    }
    idx_free(ix);

    assert_int_equal(idx_new(&ix), 0);
    memset(id, 0, sizeof id);
    for (uint32_t i = 0; i < 256; i++) {
        id[15] = (uint8_t)i;
        put(ix, id, i, 1);
    }
    for (uint32_t i = 0; i < 256; i++) {
        id[15] = (uint8_t)i;
        expect(ix, id, i, 1);
    }
    assert_int_equal(idx_count(ix), 256);
    idx_free(ix);
}

/* Budget: <= 88 bytes per entry outside growth from 256 entries up (below
 * that the fixed minimum sizes dominate), and at 1M; while both tables are
 * held it is ~97 from 4096 up (see idx.c).
 * Sizes depend only on the sequence of counts, so these are exact. */
static void bytes_per_entry(void **state)
{
    (void)state;
    ids s = make_ids(BIG_N, 44);
    idx *ix;

    assert_int_equal(idx_new(&ix), 0);
    for (uint32_t i = 0; i < s.n; i++) {
        put(ix, s.present[i], i, 0);
        size_t c = idx_count(ix), b = idx_bytes(ix);
        assert_true(b >= c * sizeof(idx_entry));
        if (c < 256)
            continue;
        if (!idx_growing(ix))
            assert_true(b <= c * 88);
        else if (c >= 4096)
            assert_true(b <= c * 98);
    }
    assert_int_equal(idx_count(ix), s.n);
    assert_true(idx_bytes(ix) / idx_count(ix) <= 88);
    idx_free(ix);
    free_ids(&s);
}

/* Growth is incremental: no idx_put or idx_del moves more than
 * IDX_GROW_STEP entries and no idx_step(n) more than n; each growth moves
 * every entry it found exactly once (so it is a real move, spread over at
 * least n0 / IDX_GROW_STEP calls) and ends long before the count reaches
 * the point where the new table itself must grow (about 2 * n0). */
/* idx_swap: false for a new id; for a present one, true and the entry it
 * replaced, in full. idx_prefetch is only a hint: it changes nothing. */
static void swap_tells_what_it_replaced(void **state)
{
    (void)state;
    ids s = make_ids(1000, 91);
    idx *ix;
    assert_int_equal(idx_new(&ix), 0);
    for (uint32_t i = 0; i < s.n; i++) {
        idx_entry e = make_entry(s.present[i], i, 0), old;
        idx_prefetch(ix, s.present[i]);
        assert_false(idx_swap(ix, &e, &old));
    }
    for (uint32_t i = 0; i < s.n; i++) {
        idx_entry e = make_entry(s.present[i], i, 1), old, was = make_entry(s.present[i], i, 0);
        memset(&old, 0xee, sizeof old);
        assert_true(idx_swap(ix, &e, &old));
        size_t cut = offsetof(idx_entry, internal_), after = cut + sizeof was.internal_;
        assert_memory_equal(&old, &was, cut);
        assert_memory_equal((const char *)&old + after, (const char *)&was + after,
                            sizeof was - after);
        expect(ix, s.present[i], i, 1);
    }
    assert_int_equal(idx_count(ix), s.n);
    idx_free(ix);
    free_ids(&s);
}

/* The batched lookup (idx_probe_*) answers exactly as idx_get: present,
 * absent and deleted IDs, in a table at rest and in one mid-growth (both
 * tables consulted), in batches of every size up to 16. idx_probe_next's
 * hint is true for most IDs found (those whose slot is in the home slot's
 * cache line: 88% here, at loads up to 3/4) and false for an ID never put
 * (its 32-bit tag is in no slot). */
static void probes_answer_as_get(void **state)
{
    (void)state;
    ids s = make_ids(50000, 77);
    idx *ix;
    assert_int_equal(idx_new(&ix), 0);
    size_t checked = 0, mid_growth = 0, found = 0, found_hinted = 0, absent_hinted = 0;
    for (uint32_t i = 0; i < s.n; i++) {
        put(ix, s.present[i], i, 0);
        if (i % 3 == 2)
            assert_int_equal(idx_del(ix, s.present[i - 1]), 0);
        if (i % 97 != 0)
            continue;
        mid_growth += idx_growing(ix);
        for (size_t n = 1; n <= 16; n++) {
            const uint8_t *batch[16];
            idx_probe p[16];
            for (size_t k = 0; k < n; k++) {
                uint32_t j = (uint32_t)((i * 31u + k * 7u) % (i + 1));
                batch[k] = k % 4 == 3 ? s.absent[j] : s.present[j];
            }
            for (size_t k = 0; k < n; k++)
                idx_probe_start(ix, batch[k], &p[k]);
            bool hint[16];
            for (size_t k = 0; k < n; k++)
                hint[k] = idx_probe_next(ix, &p[k]);
            for (size_t k = 0; k < n; k++) {
                const idx_entry *e = idx_probe_get(ix, &p[k]);
                assert_ptr_equal(e, idx_get(ix, batch[k]));
                checked++;
                found += e != NULL;
                found_hinted += e && hint[k];
                absent_hinted += k % 4 == 3 && hint[k];
            }
        }
    }
    assert_true(mid_growth > 10);
    assert_true(checked > 50000);
    assert_true(found_hinted >= found - found / 5);
    assert_true(absent_hinted <= 2);
    idx_free(ix);
    free_ids(&s);
}

static void growth_is_incremental(void **state)
{
    (void)state;
    ids s = make_ids(BIG_N, 55);
    size_t episodes = 0, n0 = 0, base = 0, calls = 0;
    idx *ix;

    assert_int_equal(idx_new(&ix), 0);
    for (uint32_t i = 0; i < s.n; i++) {
        bool was = idx_growing(ix);
        size_t before = idx_moved(ix);
        put(ix, s.present[i], i, 0);
        size_t delta = idx_moved(ix) - before;
        assert_true(delta <= IDX_GROW_STEP);
        bool now = idx_growing(ix);
        if (!was && (now || delta > 0)) {
            episodes++;
            n0 = idx_count(ix);
            base = before;
            calls = 0;
        }
        calls += delta > 0;
        if ((was || delta > 0) && !now) {
            assert_int_equal(idx_moved(ix) - base, n0);
            assert_true(calls >= n0 / IDX_GROW_STEP);
            /* the new table grows only past ~2 * n0 */
            assert_true(idx_count(ix) <= n0 + n0 / IDX_GROW_STEP + 1);
        }
    }
    assert_true(episodes >= 15);

    /* A move with deletes and reuse, exactly accounted: entries deleted
     * before the cursor (which walks the entry array from 0) reached them
     * are never moved, and entries put during the move go into the new
     * table directly and are not moved again. Deletes step the move within
     * the same bound as puts. */
    uint32_t a = 0;
    while (!idx_growing(ix)) {
        base = idx_moved(ix);
        put(ix, s.absent[a], a, 3);
        a++;
    }
    n0 = idx_count(ix);
    for (uint32_t j = 0; j < 1000; j++) { /* the oldest: moved already */
        size_t before = idx_moved(ix);
        assert_int_equal(idx_del(ix, s.present[j]), 0);
        assert_true(idx_moved(ix) - before <= IDX_GROW_STEP);
    }
    for (uint32_t j = a - 1000; j < a; j++) /* the newest: not reached yet */
        assert_int_equal(idx_del(ix, s.absent[j]), 0);
    for (uint32_t j = a; j < a + 2000; j++) /* these reuse the 2000 entries */
        put(ix, s.absent[j], j, 4);
    /* idx_step(n) moves at most n, and finishes the move. */
    assert_true(idx_growing(ix));
    while (idx_growing(ix)) {
        size_t before = idx_moved(ix);
        idx_step(ix, 3);
        assert_true(idx_moved(ix) - before <= 3);
    }
    assert_int_equal(idx_moved(ix) - base, n0 - 1000);
    size_t before = idx_moved(ix);
    idx_step(ix, 1000);
    assert_int_equal(idx_moved(ix), before);
    for (uint32_t j = 0; j < s.n; j++) {
        if (j < 1000)
            expect_none(ix, s.present[j]);
        else
            expect(ix, s.present[j], j, 0);
    }
    for (uint32_t j = 0; j < a + 2000; j++) {
        if (j < a - 1000)
            expect(ix, s.absent[j], j, 3);
        else if (j < a)
            expect_none(ix, s.absent[j]);
        else
            expect(ix, s.absent[j], j, 4);
    }
    assert_int_equal(idx_count(ix), s.n - 1000 + a - 1000 + 2000);
    idx_free(ix);
    free_ids(&s);
}

typedef struct visit {
    const ids *s;
    const uint8_t *alive;
    uint8_t *seen;
    size_t n;
} visit;

static void visit_one(const idx_entry *e, void *arg)
{
    visit *v = arg;
    uint32_t i = e->tenant ^ 0xa5a5a5a5u;
    assert_true(i < v->s->n);
    assert_true(v->alive[i]);
    assert_false(v->seen[i]);
    assert_memory_equal(e->id, v->s->present[i], TK_ID_LEN);
    v->seen[i] = 1;
    v->n++;
}

/* idx_foreach visits each live entry once, during growth too. */
static void foreach_visits_live_entries_once(void **state)
{
    (void)state;
    ids s = make_ids(30000, 66);
    uint8_t *alive = calloc(s.n, 1), *seen = calloc(s.n, 1);
    bool checked_growing = false;
    idx *ix;

    assert_non_null(alive);
    assert_non_null(seen);
    assert_int_equal(idx_new(&ix), 0);
    for (uint32_t i = 0; i < s.n; i++) {
        put(ix, s.present[i], i, 0);
        alive[i] = 1;
        if (i % 5 == 4) {
            assert_int_equal(idx_del(ix, s.present[i - 2]), 0);
            alive[i - 2] = 0;
        }
        bool check = idx_growing(ix) && idx_count(ix) > 10000 && !checked_growing;
        if (check || i + 1 == s.n) {
            visit v = {&s, alive, seen, 0};
            memset(seen, 0, s.n);
            idx_foreach(ix, visit_one, &v);
            assert_int_equal(v.n, idx_count(ix));
            checked_growing = checked_growing || idx_growing(ix);
        }
    }
    assert_true(checked_growing);
    idx_free(ix);
    free(alive);
    free(seen);
    free_ids(&s);
}

/* A bulk load into a reserved index never grows it: no entry is moved, and
 * the answers are exact. */
static void reserve_then_load_never_grows(void **state)
{
    (void)state;
    enum { N = 100000 };
    ids s = make_ids(N, 77);
    idx *ix;
    assert_int_equal(idx_new(&ix), 0);
    idx_reserve(ix, N);
    for (uint32_t i = 0; i < N; i++) {
        put(ix, s.present[i], i, 0);
        assert_false(idx_growing(ix));
    }
    assert_int_equal(idx_moved(ix), 0);
    for (uint32_t i = 0; i < N; i++)
        expect(ix, s.present[i], i, 0);
    assert_true(idx_bytes(ix) / idx_count(ix) <= 88);
    idx_free(ix);
    free_ids(&s);
}

/* ---- images (idx_save, idx_load) -------------------------------------- */

/* Loads buf[0..len) as an image; the rc, and *out (NULL on failure). */
static int load_bytes(const uint8_t *buf, size_t len, idx **out)
{
    tkt_stream m = {(uint8_t *)buf, len, len, 0};
    idx *sentinel = (idx *)(uintptr_t)1;
    *out = sentinel;
    int rc = idx_load(tkt_stream_get, &m, len, NULL, NULL, out);
    if (rc) {
        assert_ptr_equal(*out, sentinel); /* untouched on failure */
        *out = NULL;
    }
    return rc;
}

/* The fields of the image's header, at their offsets in core/idx.c's
 * idx_img (the test must know them to damage each). */
enum {
    H_ORDER = 0, H_ENTRY_SIZE = 4, H_SLOT_SIZE = 6, H_LOC_BASE = 8, H_SPLIT = 12,
    H_EPOCH = 16, H_NCHUNKS = 20, H_NSLOTS = 24, H_COUNT = 32, H_MOVED = 40, H_HW = 48,
    H_FREE_HEAD = 52, H_KEY = 56, H_SIZE = 72
};
#define ENTRY_FLAGS 47 /* offsetof(idx_entry, internal_) */
#define LOC0 1024u     /* LOC_BASE */

static uint64_t get_u(const uint8_t *b, size_t off, size_t w)
{
    uint64_t v = 0;
    memcpy(&v, b + off, w); /* native order, as the image */
    return v;
}

static void set_u(uint8_t *b, size_t off, size_t w, uint64_t v)
{
    memcpy(b + off, &v, w);
}

/* A saved index with a growth in progress at save time, deletes (so a
 * free list) and entries put again after them: every id answers the same
 * after idx_load, count and bytes agree, and both indexes then go on
 * identically (the free list and the epoch came back right). */
static void image_round_trip(void **state)
{
    (void)state;
    size_t n = BIG_N / 4;
    ids s = make_ids(n + 64, 71);
    uint8_t *gone = calloc(n + 64, 1);
    idx *ix, *back;
    assert_non_null(gone);
    assert_int_equal(idx_new(&ix), 0);
    size_t k = 0;
    for (; k < n; k++)
        put(ix, s.present[k], (uint32_t)k, 0);
    for (size_t i = 0; i < n; i += 7) {
        assert_int_equal(idx_del(ix, s.present[i]), 0);
        gone[i] = 1;
    }
    for (size_t i = 3; i < n; i += 11)
        if (!gone[i])
            put(ix, s.present[i], (uint32_t)i, 1); /* replaced in place */
    /* Insert on until a growth is under way, and save in its middle. */
    while (!idx_growing(ix) && k < n + 64)
        put(ix, s.present[k], (uint32_t)k, 0), k++;
    if (!idx_growing(ix)) { /* the table had room left: delete and refill until it grows */
        for (uint32_t g = 2; !idx_growing(ix); g++) {
            uint8_t extra[TK_ID_LEN];
            uint64_t rng = g * 977u;
            random_id(&rng, extra, 0);
            extra[0] = 0xee; /* apart from s */
            idx_entry e = make_entry(extra, g, 0);
            idx_put(ix, &e);
        }
    }
    assert_true(idx_growing(ix));
    tkt_stream m = {0};
    assert_int_equal(idx_save(ix, tkt_stream_put, &m), 0);
    assert_false(idx_growing(ix)); /* finished first */
    assert_int_equal(load_bytes(m.buf, m.len, &back), 0);
    assert_int_equal(idx_count(back), idx_count(ix));
    assert_int_equal(idx_bytes(back), idx_bytes(ix));
    assert_int_equal(idx_moved(back), idx_moved(ix));
    assert_false(idx_growing(back));
    for (size_t i = 0; i < k; i++) {
        if (gone[i]) {
            expect_none(back, s.present[i]);
        } else {
            expect(back, s.present[i], (uint32_t)i, i < n && i % 11 == 3 ? 1 : 0);
        }
        expect_none(back, s.absent[i]);
    }
    /* The same changes to both, through a growth: the same answers. */
    for (size_t i = 0; i < n; i += 5) {
        uint32_t g = 7;
        if (gone[i]) {
            put(ix, s.present[i], (uint32_t)i, g); /* reuses freed entries */
            put(back, s.present[i], (uint32_t)i, g);
            gone[i] = 2;
        } else {
            assert_int_equal(idx_del(ix, s.present[i]), 0);
            assert_int_equal(idx_del(back, s.present[i]), 0);
            gone[i] = 1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t id[TK_ID_LEN];
        memcpy(id, s.absent[i], TK_ID_LEN);
        id[15] &= (uint8_t)~1u; /* new present ids */
        id[0] ^= 0x5a;
        put(ix, id, (uint32_t)i, 9);
        put(back, id, (uint32_t)i, 9);
    }
    assert_int_equal(idx_count(back), idx_count(ix));
    assert_int_equal(idx_bytes(back), idx_bytes(ix));
    for (size_t i = 0; i < k; i++) {
        const idx_entry *a = idx_get(ix, s.present[i]), *b = idx_get(back, s.present[i]);
        assert_true((a == NULL) == (b == NULL));
        if (a)
            assert_memory_equal(a, b, sizeof *a);
        assert_true(a == NULL || gone[i] != 1);
    }
    free(m.buf);
    free(gone);
    free_ids(&s);
    idx_free(ix);
    idx_free(back);
}

/* An image of a few thousand entries with deletes (a free list). */
static idx *small_image(tkt_stream *m, ids *s)
{
    idx *ix;
    *s = make_ids(3000, 5);
    assert_int_equal(idx_new(&ix), 0);
    for (size_t i = 0; i < s->n; i++)
        put(ix, s->present[i], (uint32_t)i, 0);
    for (size_t i = 0; i < s->n; i += 3)
        assert_int_equal(idx_del(ix, s->present[i]), 0);
    memset(m, 0, sizeof *m);
    assert_int_equal(idx_save(ix, tkt_stream_put, m), 0);
    return ix;
}

/* Cut anywhere, the image is refused, with nothing allocated left
 * behind (the sanitizer build checks that) and no crash. */
static void image_truncated_is_refused(void **state)
{
    (void)state;
    tkt_stream m;
    ids s;
    idx *ix = small_image(&m, &s), *back;
    assert_int_equal(load_bytes(m.buf, m.len, &back), 0);
    idx_free(back);
    size_t slots_end = H_SIZE + (size_t)get_u(m.buf, H_NSLOTS, 8) * 8;
    size_t cuts[] = {0, 1, H_SIZE - 1, H_SIZE, H_SIZE + 8, slots_end - 1, slots_end,
                     slots_end + 64, m.len - 64, m.len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
        assert_int_equal(load_bytes(m.buf, cuts[i], &back), TK_ECORRUPT);
    for (size_t cut = 0; cut < m.len; cut += 997)
        assert_int_equal(load_bytes(m.buf, cut, &back), TK_ECORRUPT);
    /* max_bytes alone refuses before allocating: the whole stream there,
     * but the caller says it holds less. */
    tkt_stream r = {m.buf, m.len, m.len, 0};
    back = NULL;
    assert_int_equal(idx_load(tkt_stream_get, &r, m.len - 1, NULL, NULL, &back), TK_ECORRUPT);
    assert_null(back);
    free(m.buf);
    free_ids(&s);
    idx_free(ix);
}

/* Each field idx_load checks, made wrong on its own: TK_ECORRUPT. */
static void image_bad_fields_are_refused(void **state)
{
    (void)state;
    tkt_stream m;
    ids s;
    idx *ix = small_image(&m, &s), *back;
    uint8_t *b = malloc(m.len);
    assert_non_null(b);
    uint64_t nslots = get_u(m.buf, H_NSLOTS, 8), count = get_u(m.buf, H_COUNT, 8);
    uint64_t hw = get_u(m.buf, H_HW, 4), epoch = get_u(m.buf, H_EPOCH, 4);
    size_t slots = H_SIZE, entries = H_SIZE + (size_t)nslots * 8;
    assert_true(hw == s.n && count < hw);
    /* A live entry and a free one, and an empty and a used slot. */
    size_t live = SIZE_MAX, dead = SIZE_MAX, empty = SIZE_MAX, used = SIZE_MAX;
    for (size_t i = 0; i < hw; i++) {
        uint8_t f = m.buf[entries + i * 64 + ENTRY_FLAGS];
        if (f & 1)
            live = live == SIZE_MAX ? i : live;
        else
            dead = dead == SIZE_MAX ? i : dead;
    }
    for (size_t i = 0; i < nslots; i++) {
        if (get_u(m.buf, slots + i * 8 + 4, 4) == 0)
            empty = empty == SIZE_MAX ? i : empty;
        else
            used = used == SIZE_MAX ? i : used;
    }
    assert_true(live != SIZE_MAX && dead != SIZE_MAX && empty != SIZE_MAX && used != SIZE_MAX);
    size_t free_head = (size_t)get_u(m.buf, H_FREE_HEAD, 4) - LOC0;
    struct {
        const char *what;
        size_t off, width;
        uint64_t value;
    } bad[] = {
        {"byte order", H_ORDER, 4, 0x04030201u},
        {"entry size", H_ENTRY_SIZE, 2, 32},
        {"slot size", H_SLOT_SIZE, 2, 16},
        {"loc base", H_LOC_BASE, 4, 2048},
        {"chunk split", H_SPLIT, 4, 5},
        {"epoch not a flag", H_EPOCH, 4, 1},
        {"epoch not the entries'", H_EPOCH, 4, epoch ^ 2u},
        {"chunk count", H_NCHUNKS, 4, get_u(m.buf, H_NCHUNKS, 4) + 1},
        {"slots not a power of two", H_NSLOTS, 8, nslots + 1},
        {"slots below the minimum", H_NSLOTS, 8, 8},
        {"slots past 2^32", H_NSLOTS, 8, (uint64_t)1 << 33},
        {"slots twice as many", H_NSLOTS, 8, nslots * 2},
        {"slots half as many", H_NSLOTS, 8, nslots / 2},
        {"count one more", H_COUNT, 8, count + 1},
        {"count one less", H_COUNT, 8, count - 1},
        {"count past hw", H_COUNT, 8, hw + 1},
        {"hw one more", H_HW, 4, hw + 1},
        {"hw one less", H_HW, 4, hw - 1},
        {"hw past 2^32 locs", H_HW, 4, 0xffffffffu},
        {"free head below the base", H_FREE_HEAD, 4, 5},
        {"free head past hw", H_FREE_HEAD, 4, LOC0 + hw},
        {"free head a live entry", H_FREE_HEAD, 4, LOC0 + live},
        {"slot loc past hw", slots + used * 8 + 4, 4, LOC0 + hw},
        {"slot loc below the base", slots + used * 8 + 4, 4, 3},
        {"empty slot with a tag", slots + empty * 8, 4, 0x1234},
        {"one slot more than count", slots + empty * 8, 8, 0x1234 | (uint64_t)(LOC0 + live) << 32},
        {"live entry's flags", entries + live * 64 + ENTRY_FLAGS, 1, 0xff},
        {"free entry's flags", entries + dead * 64 + ENTRY_FLAGS, 1, 2},
        {"free entry's link past hw", entries + dead * 64 + 60, 4, LOC0 + hw},
        {"free list loops", entries + free_head * 64 + 60, 4, LOC0 + free_head},
        {"free list reaches a live entry", entries + free_head * 64 + 60, 4, LOC0 + live},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(b, m.buf, m.len);
        set_u(b, bad[i].off, bad[i].width, bad[i].value);
        if (load_bytes(b, m.len, &back) != TK_ECORRUPT)
            fail_msg("%s: not refused", bad[i].what);
    }
    /* The key is not checked (any key is one): a changed key loads and
     * finds nothing where it should, the tags no longer agreeing. */
    memcpy(b, m.buf, m.len);
    b[H_KEY] ^= 1;
    assert_int_equal(load_bytes(b, m.len, &back), 0);
    idx_free(back);
    free(b);
    free(m.buf);
    free_ids(&s);
    idx_free(ix);
}

/* idx_load's entry check sees every live entry, and its refusal is the
 * load's. */
static int count_live(void *arg, const idx_entry *e)
{
    size_t *n = arg;
    (*n)++;
    return e->tenant == 0xdeadbeefu ? -1 : 0;
}

static void image_check_sees_each_live_entry(void **state)
{
    (void)state;
    tkt_stream m;
    ids s;
    idx *ix = small_image(&m, &s), *back = NULL;
    size_t seen = 0;
    tkt_stream r = {m.buf, m.len, m.len, 0};
    assert_int_equal(idx_load(tkt_stream_get, &r, m.len, count_live, &seen, &back), 0);
    assert_int_equal(seen, idx_count(ix));
    idx_free(back);
    back = NULL;
    idx_entry e = make_entry(s.present[1], 1, 0);
    e.tenant = 0xdeadbeefu;
    idx_put(ix, &e);
    m.len = 0;
    assert_int_equal(idx_save(ix, tkt_stream_put, &m), 0);
    r = (tkt_stream){m.buf, m.len, m.len, 0};
    assert_int_equal(idx_load(tkt_stream_get, &r, m.len, count_live, &seen, &back), TK_ECORRUPT);
    assert_null(back);
    free(m.buf);
    free_ids(&s);
    idx_free(ix);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(basic_put_get_replace_del),
        cmocka_unit_test(million_exact),
        cmocka_unit_test(million_exact_during_growth),
        cmocka_unit_test(reuse_after_delete_does_not_resurrect),
        cmocka_unit_test(shared_prefix_ids),
        cmocka_unit_test(bytes_per_entry),
        cmocka_unit_test(reserve_then_load_never_grows),
        cmocka_unit_test(swap_tells_what_it_replaced),
        cmocka_unit_test(probes_answer_as_get),
        cmocka_unit_test(growth_is_incremental),
        cmocka_unit_test(foreach_visits_live_entries_once),
        cmocka_unit_test(image_round_trip),
        cmocka_unit_test(image_truncated_is_refused),
        cmocka_unit_test(image_bad_fields_are_refused),
        cmocka_unit_test(image_check_sees_each_live_entry),
    };
    return cmocka_run_group_tests_name("idx", tests, NULL, NULL);
}
