/*
 * tokenreplay.c - bin/tokenreplay: check, rebuild, compare, repair and
 * dump a data directory from its event log, offline. Only the command line lives
 * here; the work is store/replay.c. See docs/replay.md.
 *
 * Exit codes: 0 done (check: intact; compare: same state), 1 check found
 * damage or compare found a difference, 2 bad usage, 3 the command could
 * not be carried out (missing or busy directory, I/O error, ...).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "store/replay.h"

enum { EXIT_OK = 0, EXIT_NO = 1, EXIT_USAGE = 2, EXIT_FAILED = 3 };

static const char usage_text[] =
    "usage: tokenreplay <command> [options]   (offline: tokend must not be running on DIR)\n"
    "\n"
    "  check   --data DIR [--verify-key FILE.pub] [--expect-head SEQ:HASH]\n"
    "      verify the whole event log (CRC, seq, hash chain from the first record);\n"
    "      and that it holds its latest signed head (tokend --sign-key), or a head\n"
    "      noted elsewhere: a log cut short or edited and chained again is tampered\n"
    "  rebuild --from DIR --to NEWDIR [--upto-seq N] [--upto-time TIME]\n"
    "      rebuild the state from the log (or its history up to seq N or TIME:\n"
    "      ISO 8601 with a zone, e.g. 2024-05-01T10:00:00Z, or unix seconds)\n"
    "      into a new or empty directory\n"
    "  compare --a DIR1 --b DIR2\n"
    "      compare two states canonically; print the first difference\n"
    "  repair  --data DIR\n"
    "      keep the history before the first damaged record; move the rest aside\n"
    "  dump    --data DIR [--from-seq N] [--type TYPE] [--json]\n"
    "      the events one per line: seq, time, type, fields, and who made each\n"
    "      (actor, key or portal session, client address, listener); never a\n"
    "      secret. --type token_delete: the deletions and who made them\n"
    "\n"
    "DIR is a data directory or its log/ directory.\n"
    "exit: 0 done/intact/same, 1 damaged/different, 2 usage, 3 failed\n";

typedef struct opts {
    const char *data, *from, *to, *a, *b, *upto_seq, *upto_time, *from_seq, *type, *json;
    const char *verify_key, *expect_head;
} opts;

static int usage(const char *why)
{
    if (why)
        fprintf(stderr, "tokenreplay: %s\n", why);
    fputs(usage_text, stderr);
    return EXIT_USAGE;
}

/* Parses "--name value" and "--name=value" pairs. 0 or -1 (message printed). */
static int parse(int argc, char **argv, opts *o)
{
    const struct {
        const char *name;
        const char **slot;
    } known[] = {
        {"data", &o->data}, {"from", &o->from}, {"to", &o->to}, {"a", &o->a},
        {"b", &o->b}, {"upto-seq", &o->upto_seq}, {"upto-time", &o->upto_time},
        {"from-seq", &o->from_seq}, {"type", &o->type}, {"json", &o->json},
        {"verify-key", &o->verify_key}, {"expect-head", &o->expect_head},
    };

    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i], *val, *eq;
        size_t n, k;
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "tokenreplay: unexpected argument '%s'\n", arg);
            return -1;
        }
        arg += 2;
        eq = strchr(arg, '=');
        n = eq ? (size_t)(eq - arg) : strlen(arg);
        for (k = 0; k < sizeof known / sizeof known[0]; k++)
            if (strlen(known[k].name) == n && strncmp(known[k].name, arg, n) == 0)
                break;
        if (k == sizeof known / sizeof known[0]) {
            fprintf(stderr, "tokenreplay: unknown option '%s'\n", argv[i]);
            return -1;
        }
        if (eq) {
            val = eq + 1;
        } else if (known[k].slot == &o->json) { /* a switch: takes no value */
            val = "yes";
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            fprintf(stderr, "tokenreplay: %s needs a value\n", argv[i]);
            return -1;
        }
        *known[k].slot = val;
    }
    return 0;
}

/* Refuses options the command does not take. */
static int only(const opts *o, const char *allowed)
{
    const struct {
        const char *name, *val;
    } all[] = {{"data", o->data}, {"from", o->from}, {"to", o->to}, {"a", o->a},
               {"b", o->b}, {"upto-seq", o->upto_seq}, {"upto-time", o->upto_time},
               {"from-seq", o->from_seq}, {"type", o->type}, {"json", o->json},
               {"verify-key", o->verify_key}, {"expect-head", o->expect_head}};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        char word[32];
        snprintf(word, sizeof word, " %s ", all[i].name);
        if (all[i].val && !strstr(allowed, word)) {
            fprintf(stderr, "tokenreplay: --%s does not go with this command\n", all[i].name);
            return -1;
        }
    }
    return 0;
}

static int failed(const char *cmd, const tk_why *why)
{
    fprintf(stderr, "tokenreplay %s: %s\n", cmd, why->msg);
    return EXIT_FAILED;
}

static int cmd_rebuild(const opts *o)
{
    replay_limit lim = {0};
    tk_why why;

    if (!o->from || !o->to)
        return usage("rebuild needs --from DIR and --to NEWDIR");
    if (o->upto_seq) {
        char *end;
        errno = 0;
        lim.seq = strtoull(o->upto_seq, &end, 10);
        if (o->upto_seq[0] < '0' || o->upto_seq[0] > '9' || *end || errno)
            return usage("--upto-seq takes a sequence number (0, 1, 2, ...)");
        lim.has_seq = true;
    }
    if (o->upto_time) {
        if (replay_parse_time(o->upto_time, &lim.time_ms) != 0)
            return usage("--upto-time takes ISO 8601 with a zone (2024-05-01T10:00:00Z, "
                         "2024-05-01T12:00:00.250+02:00) or unix seconds (1714557600.250)");
        lim.has_time = true;
    }
    return replay_rebuild(o->from, o->to, &lim, stdout, NULL, &why) ? failed("rebuild", &why)
                                                                     : EXIT_OK;
}

int main(int argc, char **argv)
{
    opts o = {0};
    const char *cmd = argc > 1 ? argv[1] : "";
    tk_why why;

    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage_text, stdout);
        return EXIT_OK;
    }
    if (argc < 2)
        return usage(NULL);
    if (parse(argc, argv, &o) != 0)
        return usage(NULL);
    if (!strcmp(cmd, "check")) {
        if (only(&o, " data verify-key expect-head ") || !o.data)
            return usage("check takes --data DIR [--verify-key FILE.pub] [--expect-head SEQ:HASH]");
        int rc = replay_check(o.data, stdout, NULL, &why);
        if (rc == TK_ECORRUPT)
            return EXIT_NO;
        if (rc)
            return failed("check", &why);
        bool tampered = false;
        if ((o.verify_key || o.expect_head)
            && replay_check_head(o.data, o.verify_key, o.expect_head, stdout, &tampered, &why))
            return failed("check", &why);
        return tampered ? EXIT_NO : EXIT_OK;
    }
    if (!strcmp(cmd, "rebuild")) {
        if (only(&o, " from to upto-seq upto-time "))
            return usage(NULL);
        return cmd_rebuild(&o);
    }
    if (!strcmp(cmd, "compare")) {
        bool same;
        if (only(&o, " a b ") || !o.a || !o.b)
            return usage("compare takes --a DIR1 --b DIR2");
        if (replay_compare(o.a, o.b, stdout, &same, &why))
            return failed("compare", &why);
        return same ? EXIT_OK : EXIT_NO;
    }
    if (!strcmp(cmd, "repair")) {
        if (only(&o, " data ") || !o.data)
            return usage("repair takes --data DIR");
        return replay_repair(o.data, stdout, NULL, &why) ? failed("repair", &why) : EXIT_OK;
    }
    if (!strcmp(cmd, "dump")) {
        replay_dump_opts d = {.type = o.type, .json = o.json != NULL};
        if (only(&o, " data from-seq type json ") || !o.data)
            return usage("dump takes --data DIR [--from-seq N] [--type TYPE] [--json]");
        if (o.from_seq) {
            char *end;
            errno = 0;
            d.from_seq = strtoull(o.from_seq, &end, 10);
            if (o.from_seq[0] < '0' || o.from_seq[0] > '9' || *end || errno)
                return usage("--from-seq takes a sequence number (1, 2, ...)");
        }
        int rc = replay_log_dump(o.data, &d, stdout, NULL, &why);
        if (rc == TK_ECORRUPT) {
            fprintf(stderr, "tokenreplay dump: %s\n", why.msg);
            return EXIT_NO;
        }
        return rc ? failed("dump", &why) : EXIT_OK;
    }
    fprintf(stderr, "tokenreplay: unknown command '%s'\n", cmd);
    return usage(NULL);
}
