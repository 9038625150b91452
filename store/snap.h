/*
 * snap.h - a snapshot of the LMDB state, in one file (prefix snap_).
 *
 * A verify-only replica (DESIGN section 6) starts from a snapshot of the
 * primary's state plus the event log after it, so the primary's stream
 * may drop old events. The file, all integers little-endian:
 *
 *     off  0  u8  magic[8]     "TKSNAP01"
 *     off  8  u32 version      SNAP_VERSION
 *     off 12  u32 reserved     0
 *     off 16  u64 seq          S: the last event the state holds
 *     off 24  u8  hash[32]     H: the log's chain hash at S
 *     off 56  u64 data_len     bytes of LMDB data that follow
 *     off 64  u8  data[data_len]  a compacted LMDB data.mdb (state_copy)
 *     then    u8  digest[32]   SHA-256 of every byte before it
 *
 * The digest covers the header too, so any flipped bit anywhere is found
 * before a byte of the data is trusted. The data is LMDB's own file: it
 * opens as DIR/state/data.mdb unchanged, and its meta record says S and
 * H again (the bootstrap checks the two agree).
 *
 * Written atomically: PATH.tmp, fsync, rename to PATH, directory fsync; a
 * failure or a kill leaves no file at PATH (at most a PATH.tmp, rewritten
 * by the next try).
 */
#ifndef TK_SNAP_H
#define TK_SNAP_H
#include <stdint.h>

#include "core/err.h"
#include "core/secret.h"
#include "store/state.h"

#define SNAP_MAGIC "TKSNAP01"
#define SNAP_VERSION 1u
#define SNAP_HDR_LEN 64u

/* What a snapshot holds. */
typedef struct snap_info {
    uint64_t seq;                /* S */
    uint8_t hash[TK_HASH_LEN];   /* H */
    uint64_t data_len;           /* bytes of LMDB data */
} snap_info;

/* Decides, once the copy is made and before the file is finished, whether
 * a copy holding events up to seq may be kept: 0 to keep it, else a TK_E*
 * code (and why) that snap_write returns, removing the file. hash (in/out)
 * is the copy's chain hash at seq, or zeros when the state kept none: the
 * function may check it against the log or fill it in. */
typedef int (*snap_keep_fn)(void *arg, uint64_t seq, uint8_t hash[TK_HASH_LEN], tk_why *why);

/* Writes a snapshot of st to path as above; keep (not NULL) decides. out
 * (may be NULL) gets what it holds. Runs beside writes to st (state_copy);
 * one snapshot per path at a time. 0, TK_EBUSY (a commit ran during the
 * copy: try again), keep's code, TK_EIO; no file at path on failure. */
int snap_write(state *st, const char *path, snap_keep_fn keep, void *arg, snap_info *out,
               tk_why *why);

/* Checks the snapshot at path (magic, lengths, digest, version) while
 * writing its LMDB data to state_dir/data.mdb (state_dir is created: it
 * must not exist), fsynced with the directory. out gets its header. 0;
 * TK_ECORRUPT (the file is damaged, or not a snapshot: why says which
 * check failed), TK_EINVAL (another format version), TK_EEXIST
 * (state_dir exists), TK_EIO. On failure the caller removes state_dir. */
int snap_install(const char *path, const char *state_dir, snap_info *out, tk_why *why);

#endif
