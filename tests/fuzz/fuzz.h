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

#endif
