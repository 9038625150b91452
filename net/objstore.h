/*
 * objstore.h - files in a JetStream object store bucket (prefix obj_),
 * for the primary's snapshots and a new replica's bootstrap. libnats 3.4
 * has no object store, so this speaks its layout (NATS ADR-20), the one
 * the nats CLI and the other clients read: the stream OBJ_<bucket> with
 * subjects $O.<bucket>.C.> (chunks) and $O.<bucket>.M.> (one JSON meta
 * per object: name, nuid, size, chunks, digest "SHA-256=<base64url>",
 * published with Nats-Rollup: sub so only the latest stays). A put's
 * chunks go under a fresh nuid before its meta, and the old version's
 * chunks are purged after: a reader sees the old object or the new one,
 * whole, never a mix.
 *
 * Blocking calls: run them on a thread of their own, never the loop.
 */
#ifndef TK_NET_OBJSTORE_H
#define TK_NET_OBJSTORE_H
#include <stdint.h>

#include <nats/nats.h>

#include "core/err.h"

/* Puts the file at path as object name in bucket (made when missing, with
 * `replicas` copies). 0, or TK_EIO with why (NATS away, the file
 * unreadable). */
int obj_put_file(jsCtx *js, const char *bucket, uint32_t replicas, const char *name,
                 const char *path, tk_why *why);

/* Gets object name of bucket into the file at path (written to PATH.tmp,
 * checked against the meta's size and digest, then renamed). 0,
 * TK_ENOTFOUND (no bucket, or no such object), TK_ECORRUPT (the chunks do
 * not match the meta), TK_EIO (NATS away, a file error) with why. */
int obj_get_file(jsCtx *js, const char *bucket, const char *name, const char *path,
                 tk_why *why);

#endif
