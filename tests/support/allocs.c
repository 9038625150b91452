/*
 * allocs.c - counting one thread's allocations; see allocs.h.
 */
#include "tests/support/allocs.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h> /* the prototypes this file defines */

static _Thread_local bool counting;
static _Thread_local long counted;

#if defined(__SANITIZE_ADDRESS__)
/* From the sanitizer runtime (compiler-rt's allocator_interface.h, which
 * gcc does not install). */
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *));

static void on_malloc(const volatile void *p, size_t n)
{
    (void)p;
    (void)n;
    if (counting)
        counted++;
}

static void on_free(const volatile void *p)
{
    (void)p;
}

static void hooks_once(void)
{
    static bool installed;
    if (!installed)
        __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
    installed = true;
}
#else
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

void *malloc(size_t n)
{
    if (counting)
        counted++;
    return __libc_malloc(n);
}

void *calloc(size_t a, size_t b)
{
    if (counting)
        counted++;
    return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
    if (counting)
        counted++;
    return __libc_realloc(p, n);
}

void free(void *p)
{
    __libc_free(p);
}

static void hooks_once(void)
{
}
#endif

void allocs_start(void)
{
    hooks_once();
    counted = 0;
    counting = true;
}

long allocs_stop(void)
{
    counting = false;
    return counted;
}
