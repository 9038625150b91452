/*
 * fault.h - fails a chosen write or sync of a chosen file, for the fault
 * tests of the steps that store/fio.h cannot reach: LMDB's own writes and
 * syncs (its commit, its flush) and the engine's marker files.
 *
 * Every test binary gets this module's definitions of write, pwrite,
 * writev, fsync and fdatasync, which take the place of glibc's for the
 * program and the shared libraries it loads (LMDB calls these five). Each
 * passes straight through (one branch) until fault_arm; then the calls on
 * a file whose path contains the armed pattern are counted, and the nth
 * fails with the armed errno instead of being made. Process-wide; a test
 * arms, runs the step, and disarms.
 */
#ifndef TK_TESTS_FAULT_H
#define TK_TESTS_FAULT_H

typedef enum fault_op {
    FAULT_WRITE, /* write, pwrite, writev */
    FAULT_SYNC,  /* fsync, fdatasync */
} fault_op;

/* Makes the nth (1 = the next) call of op on a file whose path contains
 * path_part fail with err (errno; the call returns -1). The fault fires
 * once. path_part is borrowed until fault_disarm. */
void fault_arm(fault_op op, const char *path_part, unsigned nth, int err);

/* Disarms; returns how many faults fired since fault_arm (0 or 1). */
int fault_disarm(void);

#endif
