/*
 * ckpt.h - LMDB's checkpoints and the crash marker (prefix ckpt_), and
 * setting a state aside to be rebuilt from the log.
 *
 * Every change is durable in the event log before it is acknowledged, so
 * LMDB need not be synced at each commit: it commits with MDB_NOSYNC and
 * is flushed at checkpoints (at most CKPT_MS after a commit, and at close),
 * which saves one fsync per batch. A process crash loses nothing of LMDB
 * (its writes are in the page cache, in order). A machine crash between
 * checkpoints can leave LMDB's meta page on disk ahead of its data pages;
 * so before the first unflushed commit after a checkpoint, DIR/state.unsynced
 * is written and fsynced holding this boot's id (/proc/sys/kernel/random/
 * boot_id), and a checkpoint removes it. At open, a marker from another
 * boot means the machine went down with LMDB unflushed: the engine sets the
 * state aside and rebuilds it from the log. Where the boot id cannot be
 * read (or the marker cannot be written at open, the disk being full),
 * LMDB syncs every commit instead and no marker is needed.
 *
 * One thread at a time (the engine's writer, or its open and close).
 */
#ifndef TK_STORE_CKPT_H
#define TK_STORE_CKPT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "store/state.h"

#define CKPT_MS 1000 /* LMDB is flushed at most this long after a commit */

typedef struct ckpt ckpt;

/* The checkpoints of data directory dir (copied); reads this boot's id.
 * Never fails (allocation aborts). */
void ckpt_new(const char *dir, ckpt **out);
void ckpt_free(ckpt *k); /* k may be NULL */

/* True when LMDB may commit without syncing (the marker can tell a machine
 * crash), false when every commit must sync. */
bool ckpt_nosync(const ckpt *k);

/* From now on every LMDB commit syncs (the caller switches LMDB): no
 * marker is written any more. */
void ckpt_sync_always(ckpt *k);

/* At open: 0 when there is no marker, or this boot's (a process crash:
 * LMDB is whole); 1 when it is another boot's, or cannot be told (LMDB must
 * be rebuilt); TK_EIO when it cannot be read. */
int ckpt_found(const ckpt *k);

/* Writes and fsyncs the marker (tmp file, rename, directory fsync), before
 * the first unflushed commit; nothing when it is there already or LMDB
 * syncs every commit. 0 or TK_EIO (errno says why). */
int ckpt_mark(ckpt *k);

/* True while the marker is on disk. */
bool ckpt_dirty(const ckpt *k);

/* True when a flush is due at now_ms (CKPT_MS since the last). */
bool ckpt_due(const ckpt *k, int64_t now_ms);

/* A checkpoint: flushes every committed LMDB transaction, then removes the
 * marker. 0 or TK_EIO (errno says why); the marker stays on failure. */
int ckpt_flush(ckpt *k, state *st, int64_t now_ms);

/* Removes the marker (its state was set aside). 0 or TK_EIO (errno). */
int ckpt_clear(ckpt *k);

/* Renames the LMDB directory state_dir to state_dir.<why>-<time>[-k], a
 * name not taken yet (two set-asides can fall in one second), fsyncs dir,
 * and says so on stderr (what: the reason; later: the rebuild is at the
 * next open, not now). 0 (also when there is no state_dir), or TK_EIO
 * saying why. */
int ckpt_set_aside(const char *dir, const char *state_dir, const char *why, const char *what,
                   bool later, tk_why *w);

#endif
