/*
 * fuzz.h - what every libFuzzer target in tests/fuzz/ shares.
 *
 * A target is one fuzz_<name>.c defining LLVMFuzzerTestOneInput (and
 * optionally LLVMFuzzerInitialize); libFuzzer supplies main. A broken
 * invariant is reported with FZ_CHECK, which prints what failed and aborts,
 * so libFuzzer saves the input as a crash artifact exactly as it does for a
 * sanitizer report.
 */
#ifndef TK_FUZZ_H
#define TK_FUZZ_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FZ_CHECK(cond, what)                                                  \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: fuzz invariant broken: %s (%s)\n",        \
                    __FILE__, __LINE__, what, #cond);                         \
            abort();                                                          \
        }                                                                     \
    } while (0)

/* A growing byte buffer, for the image streams (core/idx.h idx_put_fn:
 * fz_buf_put appends) of fuzz_vimage and gen_corpus; tests/support has
 * its own (tkt_stream), but fuzz builds do not link tests/support.
 * Zero-initialise; free(p) when done. */
typedef struct fz_buf {
    uint8_t *p;
    size_t len, cap;
} fz_buf;

static inline int fz_buf_put(void *arg, const void *p, size_t n)
{
    fz_buf *b = arg;
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

#endif
