/*
 * replay.h - the logic of bin/tokenreplay: check, rebuild, compare and
 * repair a data directory from its event log, offline.
 *
 * The event log (elog.h) is the source of truth; these operations are what
 * an operator needs around it: prove a log intact (CRC, seq continuity, the
 * hash chain from the first record), rebuild the state from it into a new
 * directory (all of it, or as of a sequence number or a time), compare two
 * states canonically (by names, not internal ids), and bring a damaged log
 * back to the history before the damage without destroying a byte.
 *
 * Offline: each operation takes the log directory's flock (shared to read,
 * exclusive to repair; the one elog.c holds for the life of a writer), so
 * on a directory a running tokend has open it fails at once with a message
 * that says so, instead of reading or changing a log under a writer.
 * compare opens the stores with eng_open, which takes that lock too.
 *
 * Paths: every "DIR" argument is a data directory (DIR/log, DIR/state,
 * DIR/operator.key) or its log directory DIR/log itself, which is what the
 * damage message of elog_open names in "tokenreplay repair --data DIR/log".
 *
 * Output: each operation prints what it did, line by line, to `out`; on
 * failure it returns a TK_E* code and says why (why, the last parameter,
 * may be NULL).
 */
#ifndef TK_REPLAY_H
#define TK_REPLAY_H
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "store/elog.h"
#include "store/engine.h"

/* Checks the whole log of path without changing it and prints records,
 * segments, last seq, the chain head hash and the event time range; each
 * event is also decoded. rep (may be NULL) gets elog_check's report.
 * Returns 0 (intact; a torn tail is reported, not damage), TK_ECORRUPT
 * (damaged: the elog error line and the intact prefix are printed), or
 * TK_EIO / TK_EINVAL (no log there, in use, unreadable). */
int replay_check(const char *path, FILE *out, elog_report *rep, tk_why *why);

/* How much of the history rebuild takes. Both limits may be set: the first
 * one reached stops. */
typedef struct replay_limit {
    bool has_seq;
    uint64_t seq;     /* records 1..seq */
    bool has_time;
    int64_t time_ms;  /* records up to the first event with ts > time_ms */
} replay_limit;

/* Rebuilds: copies the records of from's log (up to lim; NULL = all) into
 * a fresh log in to/log through elog_append/elog_sync, copies
 * from/operator.key when there is one, then opens to with the engine so
 * to/state is built by the same replay tokend runs. to must not exist or be
 * an empty directory. A damaged source can still be rebuilt up to a limit
 * before the damage. *events (may be NULL) gets the number of records.
 * 0, TK_EINVAL (to not empty, limit past the end), TK_ECORRUPT (damage
 * before the limit, an event that does not decode or apply), TK_EIO. */
int replay_rebuild(const char *from, const char *to, const replay_limit *lim, FILE *out,
                   uint64_t *events, tk_why *why);

/* Opens both data directories with eng_open (which brings their LMDB state
 * up to their logs, as a start of tokend would) and compares their states
 * canonically: tenants (slug, toggle, limits), permissions (key,
 * description), roles (key, name, level, permission keys), accounts, users
 * (slug, portal, role keys), credentials (ID, kind, hash, tenant/account by
 * name, the creator's slug, the number in its account or user, role keys,
 * description, created, expires). The counts kept for the quotas are not
 * compared (they follow from the rest). Deleted roles are left out of
 * users and credentials, as verification leaves them out. Prints "same
 * state (N credentials)" or the first difference; *same says which.
 * 0, or TK_EINVAL / TK_EIO / TK_ECORRUPT when a store cannot be opened. */
int replay_compare(const char *a, const char *b, FILE *out, bool *same, tk_why *why);

/* What replay_repair did. */
typedef struct replay_repair_info {
    bool damaged;           /* the log was damaged (and is now cut back) */
    uint64_t kept_seq;      /* last record kept (0: none) */
    uint32_t moved;         /* files moved or written into aside */
    char aside[PATH_MAX];   /* DIR/log/damaged-<unix time>, "" when nothing moved */
    bool state_moved;       /* DIR/state was set aside ... */
    char stale[PATH_MAX];   /* ... to this path */
} replay_repair_info;

/* Repairs the log of path so that elog_open accepts it: keeps every record
 * before the first damaged one; the damaged segment's bytes from the damage
 * on (copied, fsynced, then cut) and every later segment (renamed) go to
 * DIR/log/damaged-<unix time>/, so no byte is destroyed. Then, when
 * DIR/state has applied more than the log now holds (or cannot be read),
 * renames it to DIR/state.stale-<unix time>: the next start rebuilds it
 * from the log. An intact log is left alone (its state is still checked,
 * so a repair interrupted between the two steps can be run again).
 * info may be NULL. 0, TK_EINVAL, TK_EIO. */
int replay_repair(const char *path, FILE *out, replay_repair_info *info, tk_why *why);

/* Checks path's log against a head: the latest signed head verified with
 * the public key in pub_path (FILE.pub; the copy beside its key, FILE.head,
 * is read too), and/or expect ("SEQ:HASH" taken elsewhere); either may be
 * NULL. Prints what it compared. *tampered (a log shorter than the head,
 * or another chain hash at its seq; a signed head that does not verify)
 * says the verdict. 0 (compared), TK_EINVAL (a bad key or head text),
 * TK_EIO. Call after replay_check found the log intact. */
int replay_check_head(const char *path, const char *pub_path, const char *expect, FILE *out,
                      bool *tampered, tk_why *why);

/* What dump shows. */
typedef struct replay_dump_opts {
    uint64_t from_seq;  /* the first record shown (0 or 1: all) */
    const char *type;   /* only events of this type ("token_delete"; NULL: all) */
    bool json;          /* JSON lines instead of text */
} replay_dump_opts;

/* Writes the log's events one per line, oldest first: seq, time, type,
 * the event's fields (never a hash; no secret is ever in the log) and who
 * made it ("by": the actor, the personal key or portal session, the
 * client's address and listener; absent for records written before
 * tokend recorded it). *shown (may be NULL) gets the lines written. 0,
 * TK_EINVAL (no log there, an unknown type), TK_ECORRUPT (a damaged record:
 * the lines before it are written), TK_EIO. */
int replay_log_dump(const char *path, const replay_dump_opts *o, FILE *out, uint64_t *shown,
                    tk_why *why);

/* Parses a time limit: unix seconds with an optional fraction
 * ("1714557600", "1714557600.250"), or ISO 8601 in UTC or with an offset
 * ("2024-05-01T10:00:00Z", "2024-05-01 12:00:00.250+02:00", "...+0200").
 * A date-time without a zone is refused (ambiguous). *ms gets unix ms.
 * 0 or TK_EINVAL. */
int replay_parse_time(const char *s, int64_t *ms);

/* Writes e's state in canonical form (the fields replay_compare compares),
 * one sorted line per entity, "<n> <kind> <name>\t<field>=<value>...".
 * *ncreds (may be NULL) gets the number of credentials. 0, TK_EIO,
 * TK_ECORRUPT. */
int replay_dump(eng *e, FILE *out, uint64_t *ncreds, tk_why *why);

#endif
