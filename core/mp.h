/*
 * mp.h - MessagePack reading and writing.
 *
 * Writing goes through msgpack-c's packer into a growable buffer. Reading is
 * a bounds-checked pull cursor over a borrowed byte range: msgpack-c's C
 * unpacker allocates an object tree sized by the peer's counts before the
 * caller can look at them, which breaks our rule "counts are checked before
 * anything is allocated"; this cursor allocates nothing, refuses a count
 * that cannot fit in the bytes left, and returns strings as borrowed slices.
 */
#ifndef TK_MP_H
#define TK_MP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <msgpack.h>

/* ---- writing ---------------------------------------------------------- */

typedef struct mpw {
    msgpack_sbuffer buf; /* owned; buf.data/buf.size hold the bytes so far */
    msgpack_packer pk;
} mpw;

void mpw_init(mpw *w);              /* empty buffer */
void mpw_reset(mpw *w);             /* size back to 0, memory kept */
void mpw_free(mpw *w);              /* releases the buffer */
void mpw_array(mpw *w, uint32_t n);
void mpw_map(mpw *w, uint32_t n);
void mpw_uint(mpw *w, uint64_t v);
void mpw_int(mpw *w, int64_t v);
void mpw_bool(mpw *w, bool v);
void mpw_nil(mpw *w);
void mpw_str(mpw *w, const char *s, size_t len);
/* NUL-terminated; inline so that a literal's length is known at compile time */
static inline void mpw_cstr(mpw *w, const char *s)
{
    mpw_str(w, s, strlen(s));
}
void mpw_bin(mpw *w, const void *p, size_t len);

/* ---- reading ---------------------------------------------------------- */

typedef struct mpr {
    const uint8_t *p;   /* next byte */
    const uint8_t *end; /* one past the last byte */
    int err;            /* sticky: 0, or TK_EINVAL once anything failed */
} mpr;

/* Reads from [data, data+len); the bytes are borrowed for the cursor's life. */
void mpr_init(mpr *r, const void *data, size_t len);

/* Each reader returns 0 and advances, or returns TK_EINVAL, sets r->err and
 * leaves the cursor unusable (every later call fails too). Counts returned by
 * mpr_array/mpr_map are already checked against the bytes left (each element
 * needs at least one byte), so a caller may size work by them after also
 * checking its own limit. Strings and bins are borrowed slices into the
 * input. mpr_str does NOT check UTF-8; see mpr_utf8_valid. */
int mpr_array(mpr *r, uint32_t *n);
int mpr_map(mpr *r, uint32_t *n);
int mpr_uint(mpr *r, uint64_t *v); /* positive fixint, uint 8..64; non-negative int 8..64 */
int mpr_int(mpr *r, int64_t *v);   /* any integer that fits int64 */
int mpr_bool(mpr *r, bool *v);
int mpr_nil(mpr *r);               /* 0 if next is nil (consumed), TK_EINVAL otherwise */
bool mpr_is_nil(const mpr *r);     /* peeks; never fails */
int mpr_str(mpr *r, const char **s, size_t *len);
int mpr_bin(mpr *r, const uint8_t **p, size_t *len);
int mpr_skip(mpr *r);              /* skips one whole value, nesting bounded by 32 */
bool mpr_done(const mpr *r);       /* true when no bytes are left and no error */

/* True when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates). */
bool mpr_utf8_valid(const char *s, size_t len);

#endif
