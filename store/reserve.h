/*
 * reserve.h - the disk space kept back for revocations (prefix rsv_;
 * DESIGN rule 12: revocation always goes through).
 *
 * DIR/reserve holds `want` bytes of the filesystem: allocated with
 * posix_fallocate, so they are really taken and statvfs counts them as
 * used. When the store is full (store/engine.c compares rsv_free with a
 * batch's needs), the requests that only take access away may use it:
 * rsv_shrink gives bytes of it back to the filesystem for them. What they
 * took is owed (rsv_owed): until the reserve is whole again that much of
 * the free space is not free for growth, and rsv_grow takes it back as soon
 * as the room is there. One thread at a time.
 */
#ifndef TK_STORE_RESERVE_H
#define TK_STORE_RESERVE_H
#include <stdbool.h>
#include <stdint.h>

/* Room kept free beyond a batch's own log bytes: LMDB's copy-on-write
 * pages, the crash marker, the log's look-ahead. */
#define RSV_SLACK (2ll << 20)

typedef struct reserve reserve;

/* Opens DIR/reserve (0600), creating it, and grows it to want bytes when
 * the filesystem has the room. Never fails: a store that could make no
 * reserve still refuses growth when full; its revocations just have no room
 * kept for them. dir is copied. */
void rsv_open(const char *dir, uint64_t want, reserve **out);
void rsv_close(reserve *r); /* r may be NULL */

/* Free bytes in dir's filesystem (as an unprivileged writer sees them), or
 * INT64_MAX when statvfs cannot tell. */
int64_t rsv_free(const reserve *r);

/* Bytes the reserve lacks of its size (0 when there is no reserve file). */
int64_t rsv_owed(const reserve *r);

/* Bytes it holds now. */
uint64_t rsv_have(const reserve *r);

/* Grows the reserve back to its size when spare bytes (free beyond what the
 * caller needs) leave room for it and RSV_SLACK. Best effort; true when it
 * tried (the free space changed). */
bool rsv_grow(reserve *r, int64_t spare);

/* Gives `bytes` of the reserve (and 1 MiB more: the estimate of LMDB's
 * pages is rough) back to the filesystem. */
void rsv_shrink(reserve *r, uint64_t bytes);

#endif
