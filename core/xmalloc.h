/*
 * xmalloc.h - allocation that cannot fail.
 *
 * Internal allocations whose failure leaves nothing sensible to do go through
 * these; they print one line and abort() on exhaustion (as Redis zmalloc).
 * Sizes chosen by a peer must be checked against a limit *before* calling them.
 */
#ifndef TK_XMALLOC_H
#define TK_XMALLOC_H
#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
/* Zeroed memory for a large table that is touched at random (the
 * credentials index): its own mapping, asked to be backed by huge pages
 * (madvise MADV_HUGEPAGE), so that filling it takes a page fault per 2 MiB
 * instead of per 4 KiB and a lookup misses the TLB less. Page-aligned.
 * Freed with xhuge_free and the same n. */
void *xhuge_alloc(size_t n);
void xhuge_free(void *p, size_t n);
/* Copies len bytes of s and NUL-terminates; caller owns the result. */
char *xstrndup(const char *s, size_t len);
char *xstrdup(const char *s);
/* printf into a new string; caller owns the result. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "dir/name" in a new string; caller owns the result. */
char *xpath(const char *dir, const char *name);

#endif
