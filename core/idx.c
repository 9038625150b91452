/*
 * idx.c - the in-memory hash index of credential IDs; see idx.h.
 *
 * Layout. Entries (64 bytes, one cache line, 64-byte aligned) live in a
 * dense array of entry numbers
 * 0, 1, 2, ... cut into chunks that are allocated as the array grows and
 * never moved or freed before idx_free. A slot table of 8-byte slots
 * {tag, loc} is searched by linear probing: tag is the low 32 bits of the
 * SipHash-2-4 (crypto_shorthash) of the id, the home slot comes from the
 * high 32 bits, and loc is the entry number plus LOC_BASE (so 0 means an
 * empty slot). A lookup is one hash, usually one slot cache line and one
 * entry cache line: the full 16-byte id is compared only when the tag
 * matches, so an absent id costs about one cache miss.
 *
 * Chunk sizes. Entry locations in [2^k, 2^(k+1)) are cut into 64 chunks of
 * 2^(k-6) entries; locations start at LOC_BASE = 1024. Uniform chunks
 * (say 65536 entries, 4.5 MiB) would waste up to a whole chunk, which at
 * small and middle sizes alone breaks the 96-byte budget; these waste at
 * most one chunk of at most 1/32 of the entries (1/64 at large sizes), for
 * a clz and a few shifts on lookup. Free entries form a LIFO list linked
 * through their ref field; a freed entry is zeroed (no secret hash lingers)
 * and loses its LIVE flag, so a stale slot that still names it never
 * matches, not even the all-zero id.
 *
 * Growth without stop-the-world. When count passes 3/4 of the table, a table
 * twice as big is allocated (calloc: a large one comes as fresh zero pages
 * from the kernel, not a memset) and becomes the current one: every insert
 * from then on goes into it. The entries already indexed are moved by
 * walking the dense entry array with a cursor, up to IDX_GROW_STEP of them
 * per idx_put/idx_del (more with idx_step); an entry is "in the current
 * table" when its EPOCH flag equals ix->epoch, which flips when growth
 * starts. Lookups check the current table, then the old one, which is
 * read-only during the move: deletes of unmoved entries leave stale slots
 * there, harmless because every match checks LIVE and the full id. When the
 * cursor reaches the end of the array as it was when growth began (later
 * entries were inserted into the new table directly), the old table is
 * freed.
 *
 * Why the move always ends before the new table must grow: entry numbers
 * are reused before new ones are handed out, so the array's length is the
 * peak count, which is at most n0 = 3C/4 + 1 when a table of C slots
 * starts growing. Each idx_put or idx_del advances the cursor by at least
 * IDX_GROW_STEP (8) positions (moving up to 8 entries, or skipping up to 64
 * free ones), so the move ends within n0/8 calls, by which time count is at
 * most 9/8 n0 ~ 0.85 C; the new table (2C) grows only past 3/2 C. The
 * synchronous finish in idx_put is a guard for that impossible case.
 *
 * Deletion in the current table is backward-shift (no tombstones): the
 * slots after the hole whose home lies at or before the hole move back.
 * Slots hold no home position, so each slot examined costs a hash of its
 * entry's id: deletes (revocations) are rarer than lookups by far.
 *
 * Bytes per entry (idx_bytes()/idx_count(), inserts only):
 *   entries        64 + chunk slack (<= 64/32 = 2; <= 1 above 64k)
 *   slots, steady  8 bytes / load; load in [3/8, 3/4] -> 10.7 .. 21.3
 *   total, steady  <= 64 + 1 + 21.3 = 86.3 at large sizes (tested <= 88
 *                  from 256 entries up); measured 81.2 at 1M
 *   during growth  both tables: 3C slots = 24C bytes for 3/4 C entries,
 *                  32 bytes per entry, so ~97 (tested <= 98 from 4096
 *                  entries up) for the n0/8 puts a move lasts.
 * Deletes never shrink the table or free chunks.
 *
 * Images (idx_save, idx_load; the end of this file) write the structure as
 * it is, SipHash key included, and read it back in place: why the key may
 * travel, and what a load checks, is noted there.
 */
#include "core/idx.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/xmalloc.h"

_Static_assert(sizeof(idx_entry) == 64, "idx_entry is one 64-byte cache line");

#define LOC_BASE_SHIFT 10
#define LOC_BASE (1u << LOC_BASE_SHIFT)
#define SPLIT_SHIFT 6 /* 64 chunks per power-of-two range of locations */
#define MIN_SLOTS 16
#define SCAN_FACTOR 8 /* free entries the cursor may skip per move allowed */
#define SLOTS_PER_LINE 8 /* 64-byte cache line / 8-byte slot */

/* internal_[0] bits */
#define F_LIVE 1u
#define F_EPOCH 2u

typedef struct idx_slot {
    uint32_t tag;
    uint32_t loc; /* entry number + LOC_BASE; 0 = empty */
} idx_slot;
_Static_assert(sizeof(idx_slot) * SLOTS_PER_LINE == 64, "8 slots per cache line");

typedef struct idx_tab {
    idx_slot *slots; /* NULL for the old table when not growing */
    uint32_t mask;   /* slots - 1; slots is a power of two <= 2^32 */
} idx_tab;

struct idx {
    idx_tab cur;            /* every insert goes here */
    idx_tab old;            /* read-only, while a move is in progress */
    idx_entry **chunks;     /* chunk i: see entry_at() */
    size_t nchunks;
    size_t chunks_cap;
    size_t chunk_bytes;     /* sum of the chunks' sizes */
    size_t count;           /* live entries */
    size_t moved;           /* entries moved by growth since idx_new */
    uint32_t hw;            /* entry numbers handed out (array length) */
    uint32_t free_head;     /* loc of the first free entry; 0 = none */
    uint32_t cursor;        /* next entry number the move examines */
    uint32_t grow_end;      /* array length when the move began */
    uint8_t epoch;          /* 0 or F_EPOCH */
    unsigned char key[crypto_shorthash_KEYBYTES];
};

static void idx_die(const char *what)
{
    fprintf(stderr, "tokend: idx: %s\n", what);
    abort();
}

static inline uint64_t idx_hash(const idx *ix, const uint8_t id[TK_ID_LEN])
{
    unsigned char out[crypto_shorthash_BYTES];
    uint64_t h;

    crypto_shorthash(out, id, TK_ID_LEN, ix->key);
    memcpy(&h, out, sizeof h);
    return h;
}

static inline uint32_t home_of(uint64_t h, uint32_t mask)
{
    return (uint32_t)(h >> 32) & mask;
}

static inline unsigned loc_level(uint32_t loc)
{
    return 31u - (unsigned)__builtin_clz(loc); /* loc >= LOC_BASE > 0 */
}

static inline size_t chunk_of(uint32_t loc, unsigned k)
{
    return ((size_t)(k - LOC_BASE_SHIFT) << SPLIT_SHIFT) |
           ((loc >> (k - SPLIT_SHIFT)) & ((1u << SPLIT_SHIFT) - 1));
}

static inline idx_entry *entry_at(const idx *ix, uint32_t loc)
{
    unsigned k = loc_level(loc);
    return &ix->chunks[chunk_of(loc, k)][loc & ((1u << (k - SPLIT_SHIFT)) - 1)];
}

static size_t chunk_len(size_t c)
{
    return (size_t)1 << ((c >> SPLIT_SHIFT) + LOC_BASE_SHIFT - SPLIT_SHIFT);
}

static inline bool id_eq(const uint8_t a[TK_ID_LEN], const uint8_t b[TK_ID_LEN])
{
    return memcmp(a, b, TK_ID_LEN) == 0;
}

static inline size_t tab_slots(const idx_tab *t)
{
    return (size_t)t->mask + 1;
}

/* Returns the slot index holding the live entry with this id, or -1. */
static inline int64_t tab_find(const idx *ix, const idx_tab *t, uint64_t h,
                               const uint8_t id[TK_ID_LEN])
{
    uint32_t tag = (uint32_t)h;
    uint32_t i = home_of(h, t->mask);

    for (;;) {
        idx_slot s = t->slots[i];
        if (s.loc == 0)
            return -1;
        if (s.tag == tag) {
            const idx_entry *e = entry_at(ix, s.loc);
            if (id_eq(e->id, id) && (e->internal_[0] & F_LIVE))
                return i;
        }
        i = (i + 1) & t->mask;
    }
}

/* Puts loc into the first empty slot of its probe sequence. The caller
 * knows the id is not in t and t has room. */
static void tab_insert(idx_tab *t, uint64_t h, uint32_t loc)
{
    uint32_t i = home_of(h, t->mask);

    while (t->slots[i].loc != 0)
        i = (i + 1) & t->mask;
    t->slots[i].tag = (uint32_t)h;
    t->slots[i].loc = loc;
}

/* Backward-shift deletion of slot i of the current table. */
static void tab_remove(const idx *ix, idx_tab *t, uint32_t i)
{
    uint32_t j = i;

    for (;;) {
        j = (j + 1) & t->mask;
        idx_slot s = t->slots[j];
        if (s.loc == 0)
            break;
        uint32_t home = home_of(idx_hash(ix, entry_at(ix, s.loc)->id), t->mask);
        /* s may fill the hole unless its home lies cyclically in (i, j]. */
        if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
            t->slots[i] = s;
            i = j;
        }
    }
    t->slots[i].tag = 0;
    t->slots[i].loc = 0;
}

static void tab_alloc(idx_tab *t, size_t nslots)
{
    t->slots = xhuge_alloc(nslots * sizeof *t->slots);
    t->mask = (uint32_t)(nslots - 1);
}

static void tab_free(idx_tab *t)
{
    if (t->slots)
        xhuge_free(t->slots, tab_slots(t) * sizeof *t->slots);
    t->slots = NULL;
}

/* Returns the loc of an entry to fill: a freed one, else a new one. */
static uint32_t entry_alloc(idx *ix)
{
    uint32_t loc = ix->free_head;

    if (loc != 0) {
        ix->free_head = entry_at(ix, loc)->ref;
        return loc;
    }
    if (ix->hw > UINT32_MAX - LOC_BASE)
        idx_die("too many entries");
    loc = ix->hw + LOC_BASE;
    size_t c = chunk_of(loc, loc_level(loc));
    if (c >= ix->nchunks) {
        if (ix->nchunks == ix->chunks_cap) {
            ix->chunks_cap = ix->chunks_cap ? ix->chunks_cap * 2 : 64;
            ix->chunks = xrealloc(ix->chunks, ix->chunks_cap * sizeof *ix->chunks);
        }
        /* Page-aligned, so every entry is exactly one cache line. */
        void *chunk = xhuge_alloc(chunk_len(c) * sizeof(idx_entry));
        ix->chunks[ix->nchunks++] = chunk;
        ix->chunk_bytes += chunk_len(c) * sizeof(idx_entry);
    }
    ix->hw++;
    return loc;
}

static void entry_release(idx *ix, uint32_t loc)
{
    idx_entry *e = entry_at(ix, loc);

    memset(e, 0, sizeof *e);
    e->ref = ix->free_head;
    ix->free_head = loc;
}

static bool growing(const idx *ix)
{
    return ix->old.slots != NULL;
}

/* Moves up to max_moves entries, skipping at most SCAN_FACTOR * max_moves
 * positions; returns the number moved. Frees the old table at the end. */
static size_t grow_step(idx *ix, size_t max_moves)
{
    size_t moves = 0, scans = 0, max_scans = max_moves * SCAN_FACTOR;

    if (max_scans / SCAN_FACTOR != max_moves)
        max_scans = SIZE_MAX;
    while (ix->cursor < ix->grow_end && moves < max_moves && scans < max_scans) {
        uint32_t loc = ix->cursor + LOC_BASE;
        idx_entry *e = entry_at(ix, loc);
        ix->cursor++;
        scans++;
        if ((e->internal_[0] & F_LIVE) && (e->internal_[0] & F_EPOCH) != ix->epoch) {
            tab_insert(&ix->cur, idx_hash(ix, e->id), loc);
            e->internal_[0] ^= F_EPOCH;
            moves++;
        }
    }
    ix->moved += moves;
    if (ix->cursor >= ix->grow_end) {
        tab_free(&ix->old);
        ix->old.mask = 0;
    }
    return moves;
}

static void grow_start(idx *ix)
{
    if (ix->cur.mask == UINT32_MAX)
        idx_die("table cannot grow past 2^32 slots");
    ix->old = ix->cur;
    tab_alloc(&ix->cur, tab_slots(&ix->old) * 2);
    ix->epoch ^= F_EPOCH;
    ix->cursor = 0;
    ix->grow_end = ix->hw;
}

int idx_new(idx **out)
{
    if (sodium_init() < 0)
        idx_die("sodium_init failed");
    idx *ix = xcalloc(1, sizeof *ix);
    crypto_shorthash_keygen(ix->key);
    tab_alloc(&ix->cur, MIN_SLOTS);
    *out = ix;
    return 0;
}

void idx_reserve(idx *ix, size_t n)
{
    if (ix->count != 0 || growing(ix))
        return;
    size_t slots = tab_slots(&ix->cur);
    while (slots - slots / 4 < n + n / 8 && slots < ((size_t)1 << 31)) /* stay under 2/3 */
        slots *= 2;
    if (slots == tab_slots(&ix->cur))
        return;
    tab_free(&ix->cur);
    tab_alloc(&ix->cur, slots);
}

void idx_free(idx *ix)
{
    if (!ix)
        return;
    for (size_t c = 0; c < ix->nchunks; c++)
        xhuge_free(ix->chunks[c], chunk_len(c) * sizeof(idx_entry));
    free(ix->chunks);
    tab_free(&ix->cur);
    tab_free(&ix->old);
    sodium_memzero(ix->key, sizeof ix->key);
    free(ix);
}

/* Finds the live entry for id in either table; its loc, or 0. *slot gets
 * its slot index in the current table, or -1 if it is only in the old one. */
static uint32_t find_loc(const idx *ix, uint64_t h, const uint8_t id[TK_ID_LEN],
                         int64_t *slot)
{
    int64_t i = tab_find(ix, &ix->cur, h, id);

    *slot = i;
    if (i >= 0)
        return ix->cur.slots[i].loc;
    if (growing(ix)) {
        i = tab_find(ix, &ix->old, h, id);
        if (i >= 0)
            return ix->old.slots[i].loc;
    }
    return 0;
}

int idx_put(idx *ix, const idx_entry *e)
{
    (void)idx_swap(ix, e, NULL);
    return 0;
}

void idx_prefetch(const idx *ix, const uint8_t id[TK_ID_LEN])
{
    __builtin_prefetch(&ix->cur.slots[home_of(idx_hash(ix, id), ix->cur.mask)]);
}

bool idx_swap(idx *ix, const idx_entry *e, idx_entry *old)
{
    uint64_t h = idx_hash(ix, e->id);
    int64_t slot;
    uint32_t loc = find_loc(ix, h, e->id, &slot);
    idx_entry *dst;
    bool had = loc != 0;

    if (loc != 0) {
        dst = entry_at(ix, loc);
        if (old)
            *old = *dst;
        uint8_t flags = dst->internal_[0];
        *dst = *e;
        dst->internal_[0] = flags;
    } else {
        loc = entry_alloc(ix);
        dst = entry_at(ix, loc);
        *dst = *e;
        dst->internal_[0] = (uint8_t)(F_LIVE | ix->epoch);
        tab_insert(&ix->cur, h, loc);
        ix->count++;
        size_t n = tab_slots(&ix->cur);
        if (ix->count > n - n / 4) {
            if (growing(ix))
                grow_step(ix, SIZE_MAX); /* unreachable; see the header */
            grow_start(ix);
        }
    }
    if (growing(ix))
        grow_step(ix, IDX_GROW_STEP);
    return had;
}

const idx_entry *idx_get(const idx *ix, const uint8_t id[TK_ID_LEN])
{
    int64_t slot;
    uint32_t loc = find_loc(ix, idx_hash(ix, id), id, &slot);

    return loc ? entry_at(ix, loc) : NULL;
}

void idx_probe_start(const idx *ix, const uint8_t id[TK_ID_LEN], idx_probe *p)
{
    p->h = idx_hash(ix, id);
    p->id = id;
    __builtin_prefetch(&ix->cur.slots[home_of(p->h, ix->cur.mask)]);
    if (growing(ix))
        __builtin_prefetch(&ix->old.slots[home_of(p->h, ix->old.mask)]);
}

/* Prefetches the entry of the first slot of h's probe sequence in t whose
 * tag matches, as far as the home slot's cache line goes (the line
 * idx_probe_start fetched: going on into the next one would wait for it,
 * which in a batch stalls the other lookups' overlap); true when there was
 * one. Tables are page-aligned, so a line is 8 slots from a multiple of 8. */
static inline bool tab_prefetch_entry(const idx *ix, const idx_tab *t, uint64_t h)
{
    uint32_t tag = (uint32_t)h, i = home_of(h, t->mask);

    do {
        idx_slot s = t->slots[i];
        if (s.loc == 0)
            return false;
        if (s.tag == tag) {
            __builtin_prefetch(entry_at(ix, s.loc));
            return true;
        }
        i = (i + 1) & t->mask;
    } while (i % SLOTS_PER_LINE != 0);
    return false;
}

bool idx_probe_next(const idx *ix, const idx_probe *p)
{
    return tab_prefetch_entry(ix, &ix->cur, p->h) ||
           (growing(ix) && tab_prefetch_entry(ix, &ix->old, p->h));
}

const idx_entry *idx_probe_get(const idx *ix, const idx_probe *p)
{
    int64_t slot;
    uint32_t loc = find_loc(ix, p->h, p->id, &slot);

    return loc ? entry_at(ix, loc) : NULL;
}

int idx_del(idx *ix, const uint8_t id[TK_ID_LEN])
{
    int64_t slot;
    uint32_t loc = find_loc(ix, idx_hash(ix, id), id, &slot);

    if (loc == 0)
        return TK_ENOTFOUND;
    if (slot >= 0)
        tab_remove(ix, &ix->cur, (uint32_t)slot);
    /* else: not moved yet; its old-table slot goes stale (LIVE cleared). */
    entry_release(ix, loc);
    ix->count--;
    if (growing(ix))
        grow_step(ix, IDX_GROW_STEP);
    return 0;
}

size_t idx_count(const idx *ix)
{
    return ix->count;
}

size_t idx_bytes(const idx *ix)
{
    size_t b = sizeof *ix + ix->chunks_cap * sizeof *ix->chunks + ix->chunk_bytes;

    b += tab_slots(&ix->cur) * sizeof(idx_slot);
    if (growing(ix))
        b += tab_slots(&ix->old) * sizeof(idx_slot);
    return b;
}

bool idx_growing(const idx *ix)
{
    return growing(ix);
}

size_t idx_moved(const idx *ix)
{
    return ix->moved;
}

void idx_step(idx *ix, unsigned n)
{
    if (growing(ix) && n > 0)
        grow_step(ix, n);
}

void idx_foreach(const idx *ix, void (*fn)(const idx_entry *e, void *arg), void *arg)
{
    for (uint32_t i = 0; i < ix->hw; i++) {
        const idx_entry *e = entry_at(ix, i + LOC_BASE);
        if (e->internal_[0] & F_LIVE)
            fn(e, arg);
    }
}

/* ---- images ------------------------------------------------------------
 *
 * idx_save writes the structure itself: a header (the sizes, the counts,
 * the free list's head, the epoch, the SipHash key), the slot table as it
 * is, then entries 0..hw-1 chunk by chunk. idx_load allocates the same
 * tables and chunks and has get fill them in place: no hash, no insert, no
 * copy, which is what makes a load of millions of entries a sequential
 * read (the rebuild from LMDB costs a SipHash and a cache miss per entry).
 *
 * The key travels with the image. That is acceptable: the image sits
 * beside LMDB (same directory, mode 0600) and is exactly as sensitive;
 * the key only keeps peers from choosing colliding IDs, and IDs are chosen
 * by tokend, not by peers (a peer's unknown IDs can only pick home slots,
 * which costs it nothing and us one probe). A key kept across restarts
 * changes none of that.
 *
 * What idx_load checks, as it reads, before anything is used: the layout
 * (entry and slot sizes, byte order), the slot count (a power of two in
 * [MIN_SLOTS, 2^32]) and that every size fits max_bytes before it is
 * allocated; count <= hw, count under the growth threshold (so a probe
 * always meets an empty slot), free_head 0 or a loc below hw; each slot
 * empty or naming an entry below hw, and as many occupied slots as count
 * (a saved index is never growing, so it has no stale slots); each entry
 * live with the index's epoch and no other flag, or free with a link 0 or
 * below hw; as many live entries as count; the free list ends within
 * hw - count steps and passes only free entries (no cycle, no live entry
 * handed out again). Not checked, because it would cost a random access
 * per entry: that a slot's tag is its entry's hash and that every live
 * entry has its slot. A failure there can only make a lookup miss, never
 * read outside the index: every access is bounded by the checks above.
 * A bit flip is the caller's CRC's to catch. */

#define IMG_ORDER 0x01020304u   /* as this machine stores it: byte order */
#define IMG_PIECE (1u << 20)    /* bytes per get, checked while in cache */

typedef struct idx_img {
    uint32_t order;
    uint16_t entry_size, slot_size;
    uint32_t loc_base, split_shift;
    uint32_t epoch, nchunks;
    uint64_t nslots;
    uint64_t count;
    uint64_t moved;
    uint32_t hw, free_head;
    unsigned char key[crypto_shorthash_KEYBYTES];
} idx_img;
_Static_assert(sizeof(idx_img) == 72, "idx_img has no padding");

/* Chunks that hold entries 0..hw-1. */
static size_t chunks_for(uint32_t hw)
{
    if (hw == 0)
        return 0;
    uint32_t loc = hw - 1 + LOC_BASE;
    return chunk_of(loc, loc_level(loc)) + 1;
}

/* The loc of chunk c's first entry. */
static uint32_t chunk_first(size_t c)
{
    unsigned k = (unsigned)(c >> SPLIT_SHIFT) + LOC_BASE_SHIFT;
    return (1u << k) | (uint32_t)((c & ((1u << SPLIT_SHIFT) - 1)) << (k - SPLIT_SHIFT));
}

/* Entries of chunk c below hw. */
static size_t chunk_used(size_t c, uint32_t hw)
{
    size_t first = chunk_first(c), end = (size_t)hw + LOC_BASE;
    return end - first < chunk_len(c) ? end - first : chunk_len(c);
}

int idx_save(idx *ix, idx_put_fn put, void *arg)
{
    idx_img h;
    int rc;

    while (growing(ix))
        grow_step(ix, SIZE_MAX);
    memset(&h, 0, sizeof h);
    h.order = IMG_ORDER;
    h.entry_size = sizeof(idx_entry);
    h.slot_size = sizeof(idx_slot);
    h.loc_base = LOC_BASE;
    h.split_shift = SPLIT_SHIFT;
    h.epoch = ix->epoch;
    h.nchunks = (uint32_t)ix->nchunks;
    h.nslots = tab_slots(&ix->cur);
    h.count = ix->count;
    h.moved = ix->moved;
    h.hw = ix->hw;
    h.free_head = ix->free_head;
    memcpy(h.key, ix->key, sizeof h.key);
    rc = put(arg, &h, sizeof h);
    sodium_memzero(&h, sizeof h);
    if (rc || (rc = put(arg, ix->cur.slots, tab_slots(&ix->cur) * sizeof(idx_slot))))
        return rc;
    for (size_t c = 0; c < ix->nchunks; c++)
        if ((rc = put(arg, ix->chunks[c], chunk_used(c, ix->hw) * sizeof(idx_entry))))
            return rc;
    return 0;
}

static bool img_header_ok(const idx_img *h, size_t max_bytes)
{
    if (h->order != IMG_ORDER || h->entry_size != sizeof(idx_entry) ||
        h->slot_size != sizeof(idx_slot) || h->loc_base != LOC_BASE ||
        h->split_shift != SPLIT_SHIFT)
        return false;
    if (h->nslots < MIN_SLOTS || h->nslots > ((uint64_t)1 << 32) ||
        (h->nslots & (h->nslots - 1)) != 0)
        return false;
    if (h->hw > UINT32_MAX - LOC_BASE || h->count > h->hw ||
        h->count > h->nslots - h->nslots / 4)
        return false;
    if (h->epoch != 0 && h->epoch != F_EPOCH)
        return false;
    if (h->free_head != 0 && (h->free_head < LOC_BASE || h->free_head - LOC_BASE >= h->hw))
        return false;
    if (h->nchunks != chunks_for(h->hw))
        return false;
    /* All within the stream, before anything is allocated: at most 2^35
     * slot bytes and 2^38 entry bytes, no overflow. */
    uint64_t need = sizeof *h + h->nslots * sizeof(idx_slot) + (uint64_t)h->hw * sizeof(idx_entry);
    return need <= max_bytes;
}

/* Reads n bytes of slots into place and checks them; occupied counts. */
static int img_slots(idx_get_fn get, void *arg, idx_slot *s, size_t n, uint32_t hw,
                     uint64_t *occupied)
{
    int rc = get(arg, s, n * sizeof *s);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (s[i].loc == 0) {
            if (s[i].tag != 0)
                return TK_ECORRUPT;
        } else if (s[i].loc < LOC_BASE || s[i].loc - LOC_BASE >= hw) {
            return TK_ECORRUPT;
        } else {
            (*occupied)++;
        }
    }
    return 0;
}

/* Reads n entries into place and checks them; live counts. */
static int img_entries(idx_get_fn get, void *arg, idx_entry *e, size_t n, const idx_img *h,
                       idx_check_fn check, void *check_arg, uint64_t *live)
{
    int rc = get(arg, e, n * sizeof *e);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        uint8_t f = e[i].internal_[0];
        if (f & F_LIVE) {
            if (f != (F_LIVE | h->epoch) || (check && check(check_arg, &e[i]) != 0))
                return TK_ECORRUPT;
            (*live)++;
        } else if (f != 0 ||
                   (e[i].ref != 0 && (e[i].ref < LOC_BASE || e[i].ref - LOC_BASE >= h->hw))) {
            return TK_ECORRUPT;
        }
    }
    return 0;
}

int idx_load(idx_get_fn get, void *arg, size_t max_bytes, idx_check_fn check, void *check_arg,
             idx **out)
{
    idx_img h;
    idx *ix = NULL;
    uint64_t occupied = 0, live = 0;
    int rc = get(arg, &h, sizeof h);

    if (rc)
        goto done;
    rc = TK_ECORRUPT;
    if (!img_header_ok(&h, max_bytes))
        goto done;
    if (sodium_init() < 0)
        idx_die("sodium_init failed");
    ix = xcalloc(1, sizeof *ix);
    memcpy(ix->key, h.key, sizeof ix->key);
    tab_alloc(&ix->cur, (size_t)h.nslots);
    for (size_t i = 0; i < h.nslots; i += IMG_PIECE / sizeof(idx_slot)) {
        size_t n = h.nslots - i < IMG_PIECE / sizeof(idx_slot) ? h.nslots - i
                                                               : IMG_PIECE / sizeof(idx_slot);
        if ((rc = img_slots(get, arg, ix->cur.slots + i, n, h.hw, &occupied)))
            goto done;
    }
    rc = TK_ECORRUPT;
    if (occupied != h.count)
        goto done;
    for (ix->chunks_cap = h.nchunks ? 64 : 0; ix->chunks_cap < h.nchunks;)
        ix->chunks_cap *= 2; /* as entry_alloc grows it, so idx_bytes agrees */
    ix->chunks = xcalloc(ix->chunks_cap ? ix->chunks_cap : 1, sizeof *ix->chunks);
    for (size_t c = 0; c < h.nchunks; c++) {
        size_t len = chunk_len(c), used = chunk_used(c, h.hw);
        ix->chunks[c] = xhuge_alloc(len * sizeof(idx_entry));
        ix->nchunks++;
        ix->chunk_bytes += len * sizeof(idx_entry);
        for (size_t i = 0; i < used; i += IMG_PIECE / sizeof(idx_entry)) {
            size_t n = used - i < IMG_PIECE / sizeof(idx_entry) ? used - i
                                                                : IMG_PIECE / sizeof(idx_entry);
            rc = img_entries(get, arg, ix->chunks[c] + i, n, &h, check, check_arg, &live);
            if (rc)
                goto done;
        }
    }
    rc = TK_ECORRUPT;
    if (live != h.count)
        goto done;
    ix->hw = h.hw; /* entry_at's bounds, for the free list's walk */
    uint64_t steps = 0;
    for (uint32_t loc = h.free_head; loc != 0; loc = entry_at(ix, loc)->ref)
        if (++steps > h.hw - h.count || (entry_at(ix, loc)->internal_[0] & F_LIVE))
            goto done;
    ix->count = (size_t)h.count;
    ix->moved = (size_t)h.moved;
    ix->free_head = h.free_head;
    ix->epoch = (uint8_t)h.epoch;
    rc = 0;
done:
    sodium_memzero(&h, sizeof h);
    if (rc) {
        idx_free(ix);
        return rc;
    }
    *out = ix;
    return 0;
}
