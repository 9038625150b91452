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
/* Copies len bytes of s and NUL-terminates; caller owns the result. */
char *xstrndup(const char *s, size_t len);
char *xstrdup(const char *s);
/* printf into a new string; caller owns the result. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "dir/name" in a new string; caller owns the result. */
char *xpath(const char *dir, const char *name);

#endif
