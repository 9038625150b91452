/*
 * logedit.h - logs edited as someone who can write the data directory
 * would (prefix logedit_): records copied into a fresh log with some cut
 * off or one changed, and every record chained again, so that the log's
 * own check passes and only what is kept elsewhere (the state's chain hash,
 * a signed head) can tell.
 */
#ifndef TK_TEST_LOGEDIT_H
#define TK_TEST_LOGEDIT_H
#include <stdint.h>

/* Writes the records of the log in from (a log directory) into a new log
 * in to: the first keep of them (0: all), record edit (1-based; 0: none)
 * with its timestamp one second later. Asserts on failure. */
void logedit_copy(const char *from, const char *to, uint64_t keep, uint64_t edit);

/* The same, in place: logdir is replaced by its edited copy (its other
 * files, a signed head among them, kept as they were). */
void logedit_replace(const char *logdir, uint64_t keep, uint64_t edit);

#endif
