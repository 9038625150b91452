/*
 * vimage.h - the view image (prefix vimg_): the credentials part of the
 * in-memory view (core/view.h: the index and the role sets) saved to
 * DIR/state/view.img at a clean close and read back at the next open, so
 * that opening millions of credentials is one sequential read instead of
 * a rebuild from LMDB (a decode, a SipHash and a cache miss per entry).
 *
 * The image is a cache: it is used only when its stamp (the LMDB applied
 * seq and the log's chain hash there) is exactly the state being opened,
 * and when its CRC and every structure check pass; otherwise the open
 * builds the view from LMDB as it always could. Deleting it is always
 * safe. It lives beside LMDB so that setting state/ aside takes it along.
 * The format is docs/storage.md's, written and read here only.
 */
#ifndef TK_VIMAGE_H
#define TK_VIMAGE_H
#include <stdint.h>

#include "core/err.h"
#include "core/secret.h"
#include "core/view.h"

/* The image's name in the state directory, and its temporary name while
 * it is written. */
#define VIMG_NAME "view.img"
#define VIMG_TMP_NAME "view.img.tmp"

/* Writes v's credentials to state_dir/view.img, stamped with seq and hash
 * (LMDB's applied seq and the chain hash there, which v must be exactly):
 * to view.img.tmp (0600), then renamed over view.img. Not fsynced: a torn
 * or lost image fails its CRC or is simply absent, and a stale one fails
 * its stamp, so the worst a crash does is a slower open. Nothing is
 * written when the disk would keep less than keep_free bytes free after
 * it. 0; or TK_ENOSPC / TK_EIO with why saying so, the temporary file
 * removed and any older view.img left as it was (stale: never used).
 * The caller only logs a failure: the image is an optimisation. */
int vimg_save(const char *state_dir, uint64_t seq, const uint8_t hash[TK_HASH_LEN], view *v,
              uint64_t keep_free, tk_why *why);

/* Reads state_dir/view.img into v, which holds no credentials yet, when
 * its stamp is seq and hash. The file is removed as it is opened, whatever
 * follows: an image serves one open (the server changes the state at once,
 * and the file would only hold disk space; the next clean close writes a
 * fresh one); a leftover view.img.tmp goes too. 0: loaded. TK_ENOTFOUND:
 * no image, or one stamped for another state or written by another format
 * version (stale). TK_ECORRUPT (or TK_EIO): a bad magic, length, CRC or
 * structure, why says which. On anything but 0, v holds no credentials,
 * as before the call, and the caller builds them from LMDB. */
int vimg_load(const char *state_dir, uint64_t seq, const uint8_t hash[TK_HASH_LEN], view *v,
              tk_why *why);

/* Removes state_dir/view.img and view.img.tmp, if there (an open that does
 * not read the image: it would be stale from the first write on). */
void vimg_remove(const char *state_dir);

#endif
