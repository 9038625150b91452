/*
 * allocs.h - counting the allocations one thread makes, for the tests of
 * the paths that must not allocate (verify, the client's pipelined verify).
 *
 * In the plain build this module defines malloc, calloc, realloc and free
 * over glibc's __libc_* entry points, for every test binary (each call
 * costs one thread-local test while nobody counts). Under AddressSanitizer,
 * whose allocator cannot be replaced, its documented malloc/free hooks are
 * installed at the first allocs_start instead.
 */
#ifndef TK_TESTS_ALLOCS_H
#define TK_TESTS_ALLOCS_H

/* Starts counting, from 0, the calling thread's malloc, calloc and realloc
 * calls. Other threads are not counted. */
void allocs_start(void);

/* Stops counting; the calls counted since allocs_start. */
long allocs_stop(void);

#endif
