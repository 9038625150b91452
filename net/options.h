/*
 * options.h - bin/tokend's options (prefix opt_): the command line, the
 * configuration file (--config FILE, INI) and --check-config, all filling
 * one srv_opts (net/server.h).
 *
 * One table in options.c holds every option once: its flag, its section
 * and key in the file, its type and range, its help text and the srv_opts
 * field it sets. getopt_long's table, --help, the INI reader and the
 * --check-config listing are all made from it, so a flag cannot exist
 * without its key and its documentation. The defaults themselves are
 * srv_opts_default's (net/server.c and the modules it calls); the table
 * reads them from there. The file is parsed by libinih (Debian's
 * libinih-dev); this module only says what its keys mean. The mapping and
 * the precedence (defaults, then the file, then the flags) are in
 * docs/server.md, "Flags"; docs/tokend.conf lists every key.
 */
#ifndef TK_NET_OPTIONS_H
#define TK_NET_OPTIONS_H
#include <stdio.h>

#include "core/err.h"
#include "net/server.h"

/* The longest line of a configuration file, newline excluded. */
#define OPT_LINE_MAX 4096

/* One program's options: the effective srv_opts, where each option's value
 * came from (default, FILE:LINE or a flag) and the strings it points to. */
typedef struct opt_cfg opt_cfg;

/* A new set of options at srv_opts_default's values, every one marked as
 * the default. Owned by the caller (opt_free). Never fails (allocation
 * aborts). */
void opt_new(opt_cfg **out);

/* Frees c and the strings its srv_opts points to (c may be NULL). */
void opt_free(opt_cfg *c);

/* The effective options (borrowed: valid until c's next change or
 * opt_free; the strings are c's). */
const srv_opts *opt_srv(const opt_cfg *c);

/* What the command line asks the program to do. */
typedef enum opt_action {
    OPT_RUN,   /* start the server with opt_srv(c) */
    OPT_HELP,  /* --help: print opt_usage and exit 0 */
    OPT_CHECK, /* --check-config: print opt_print and exit 0 */
} opt_action;

/* Parses a whole command line (argv[0] is the program) into c: the file of
 * --config FILE first, then every flag over it, whatever their order. Flags
 * are checked in argv's order first (a bad flag is reported before the
 * file is read); --help stops at once with OPT_HELP. 0 with *act set, or
 * TK_EINVAL (a bad flag, value or file; TK_EIO when the file cannot be
 * read) with one line in why, without the "tokend: " prefix. Uses getopt
 * (resets optind), so it is not thread-safe. */
int opt_parse_args(opt_cfg *c, int argc, char **argv, opt_action *act, tk_why *why);

/* Reads the INI file at path into c: every key must be one of the table's,
 * in its section, at most once, with a value its flag would accept. Keys
 * already set by a flag keep the flag's value (flags win). 0, TK_EIO when
 * the file cannot be opened or read, TK_EINVAL for anything in it that is
 * refused; why says "PATH:LINE: ...". c may be partly changed on failure:
 * free it. */
int opt_load_file(opt_cfg *c, const char *path, tk_why *why);

/* The same for a configuration given as a string; name stands for the file
 * in messages and in where each value came from (copied). */
int opt_load_string(opt_cfg *c, const char *name, const char *text, tk_why *why);

/* Sets one option as its flag would ("max-frame", without the dashes; value
 * NULL for a flag without argument, which means true). 0, or TK_EINVAL with
 * the flag's message ("--max-frame 1: expected a number of bytes from 1024
 * to 1073741824") when the flag is unknown or the value is refused. */
int opt_set_flag(opt_cfg *c, const char *flag, const char *value, tk_why *why);

/* Prints --help: every flag with its argument, its help text, its default
 * and its key in the configuration file. */
void opt_usage(FILE *f);

/* Prints the effective configuration, for --check-config: one line per
 * option, in the file's syntax (so the listing is itself a valid
 * configuration), each with a comment saying where its value came from
 * ("default", "FILE:LINE" or "flag --NAME"). */
void opt_print(const opt_cfg *c, FILE *f);

/* ---- the table, for tests and documentation tools ----------------------- */

/* The number of options in the table. */
int opt_count(void);

/* Option i's flag (without "--"), section and key; NULL when i is out of
 * range. Static strings. */
const char *opt_flag(int i);
const char *opt_section(int i);
const char *opt_key(int i);

/* Option i's current value, formatted as --check-config prints it (and as
 * the file and the flag accept it) into buf; "" when it is unset. Returns
 * buf. */
const char *opt_value(const opt_cfg *c, int i, char *buf, size_t cap);

#endif
