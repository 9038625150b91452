/*
 * idx.h - the in-memory hash index of credential IDs (the verify path).
 *
 * Maps a 16-byte credential ID to a compact fixed-size entry. Entries live
 * in a dense, chunked array (never moved once placed, so growth copies no
 * entries); the table is open addressing with linear probing over 8-byte
 * slots {tag, entry number}, keyed by SipHash-2-4 (libsodium
 * crypto_shorthash) under a random key (per index; an image, idx_save, keeps
 * it), so a peer cannot choose IDs that collide.
 *
 * Growth never stops the world: when the table passes 3/4 load a table of
 * twice the size is allocated and every later idx_put/idx_del (and
 * idx_step) moves a few entries into it; lookups consult the new table,
 * then the old one, until the move is complete and the old table is freed.
 *
 * Not thread-safe: one writer, and readers only on the writer's thread (the
 * server keeps the index on its event-loop thread).
 */
#ifndef TK_IDX_H
#define TK_IDX_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/secret.h"

/* Bytes of the secret's SHA-256 an entry keeps: the first 240 bits. That
 * leaves room for the rest in one 64-byte cache line, and 240 bits of a
 * hash of 256 random bits is far beyond any search. */
#define IDX_HASH_LEN 30

/* One credential: 64 bytes, one cache line (entries are 64-byte aligned),
 * so a lookup costs one slot line and one entry line. */
typedef struct idx_entry {
    uint8_t id[TK_ID_LEN];      /* the key */
    uint8_t hash[IDX_HASH_LEN]; /* the first IDX_HASH_LEN bytes of secret_hash */
    uint8_t kind;               /* tk_kind */
    uint8_t internal_[1];       /* owned by idx; callers leave it alone */
    uint32_t expires_at;        /* unix seconds (until 2106); 0 = never */
    uint32_t tenant;            /* tenant id */
    uint32_t account;           /* account id */
    uint32_t ref;               /* TK_KIND_TOKEN: roleset id; TK_KIND_PERSONAL: user id */
} idx_entry;

typedef struct idx idx;

/* Creates an empty index; 0 (always, allocation aborts on exhaustion). */
int idx_new(idx **out);

/* Frees the index and every entry; idx may be NULL. */
void idx_free(idx *ix);

/* Inserts e, or replaces the entry with the same id. Copies e. Returns 0. */
int idx_put(idx *ix, const idx_entry *e);

/* idx_put that also tells what it replaced, in one lookup: true and *old
 * filled when an entry with e's id was there, false otherwise. */
bool idx_swap(idx *ix, const idx_entry *e, idx_entry *old);

/* Prefetches the table slot of id, ahead of an idx_put or idx_get of it
 * (a bulk load overlaps its cache misses this way). A hint only. */
void idx_prefetch(const idx *ix, const uint8_t id[TK_ID_LEN]);

/* Returns the entry for id or NULL. The pointer is borrowed: valid until the
 * next idx_put, idx_del, idx_step or idx_free. Never allocates. */
const idx_entry *idx_get(const idx *ix, const uint8_t id[TK_ID_LEN]);

/* Lookups in steps. A lookup costs two dependent cache misses, the slot and
 * then the entry; with several IDs in hand they can overlap instead of
 * adding up, and with one the caller's own work can run while they are in
 * flight: idx_probe_start for each ID (hashes it, prefetches its slot),
 * then idx_probe_next for each (reads the slot, prefetches the entry), then
 * idx_probe_get for each, which answers exactly as idx_get. idx_probe_next
 * returns true when it found a slot of the ID's tag and started fetching
 * its entry (the ID is likely there), false otherwise (likely not): a hint
 * only, idx_probe_get decides. The probe keeps a pointer to id: it must
 * stay in place until idx_probe_get. No call in between may modify the
 * index. Never allocates. */
typedef struct idx_probe {
    uint64_t h;                 /* the ID's hash */
    const uint8_t *id;          /* borrowed */
} idx_probe;

void idx_probe_start(const idx *ix, const uint8_t id[TK_ID_LEN], idx_probe *p);
bool idx_probe_next(const idx *ix, const idx_probe *p);
const idx_entry *idx_probe_get(const idx *ix, const idx_probe *p);

/* Removes the entry for id; 0 or TK_ENOTFOUND. */
int idx_del(idx *ix, const uint8_t id[TK_ID_LEN]);

/* Number of entries. */
size_t idx_count(const idx *ix);

/* Bytes of memory the index holds (tables, entry chunks, bookkeeping). */
size_t idx_bytes(const idx *ix);

/* True while a growth move is in progress. */
bool idx_growing(const idx *ix);

/* Most entries one idx_put or idx_del moves during growth. */
#define IDX_GROW_STEP 8

/* Entries moved from an old table into a new one since idx_new, over all
 * growths (for tests and metrics: growth is incremental when no call moves
 * more than its share). */
size_t idx_moved(const idx *ix);

/* Sizes the table for n entries before a bulk load (the open of a store
 * that knows its count), so the load never grows and never moves an entry.
 * Only on an empty index; a no-op otherwise or when n is small. */
void idx_reserve(idx *ix, size_t n);

/* Moves up to n entries of an in-progress growth; a no-op otherwise.
 * Lets an idle loop finish growth without waiting for writes. */
void idx_step(idx *ix, unsigned n);

/* Calls fn for every entry (order unspecified); fn must not modify ix. */
void idx_foreach(const idx *ix, void (*fn)(const idx_entry *e, void *arg), void *arg);

/* ---- images: the index written out and read back as it is ------------- */

/* A byte sink and a byte source for idx_save and idx_load. put writes n
 * bytes of p (borrowed for the call); get fills all n bytes of p, which is
 * the index's own memory (so a load reads straight into place, no copy),
 * or fails. Both return 0 or a negative TK_E* code, which the caller of
 * idx_save / idx_load gets back as it is. */
typedef int (*idx_put_fn)(void *arg, const void *p, size_t n);
typedef int (*idx_get_fn)(void *arg, void *p, size_t n);

/* A check of each live entry as idx_load reads it (while its bytes are in
 * cache): 0 to accept, non-zero to refuse the image (TK_ECORRUPT). */
typedef int (*idx_check_fn)(void *arg, const idx_entry *e);

/* Writes ix's structure to put, as it is (the SipHash key, the slot table,
 * the entry chunks), so that idx_load rebuilds it without a hash or an
 * insert. A growth in progress is finished first (hence not const).
 * The stream is machine-specific (native byte order and layout). 0 or
 * put's error. */
int idx_save(idx *ix, idx_put_fn put, void *arg);

/* Reads an index written by idx_save from get into a new index (*out,
 * owned by the caller). Everything read is checked before it is trusted,
 * as if a peer had written it: max_bytes is the most the stream can hold
 * (the caller's file length), and sizes that need more are refused before
 * anything is allocated. check (may be NULL) is called for each live
 * entry. 0; TK_ECORRUPT for a stream that is not a sound index, or get's
 * error; on failure nothing is left allocated and *out is untouched. */
int idx_load(idx_get_fn get, void *arg, size_t max_bytes, idx_check_fn check, void *check_arg,
             idx **out);

#endif
