/*
 * err.h - the one error scheme of tokend.
 *
 * Every function that can fail returns int: 0 on success, a negative TK_E*
 * code on failure. Codes are stable (they travel on the wire as status codes),
 * so new ones are only ever appended.
 */
#ifndef TK_ERR_H
#define TK_ERR_H

enum {
    TK_OK = 0,
    TK_EINVAL = -1,    /* malformed argument or input (bad slug, bad UTF-8, ...) */
    TK_ENOTFOUND = -2, /* no such entity (or not visible to this actor) */
    TK_EEXIST = -3,    /* entity already exists */
    TK_EDENIED = -4,   /* a domain rule refuses the operation for this actor */
    TK_EDISABLED = -5, /* the tenant's api_tokens toggle is off */
    TK_ELIMIT = -6,    /* a size or count limit was exceeded */
    TK_ECORRUPT = -7,  /* stored data failed a check (CRC, hash chain, decode) */
    TK_EIO = -8,       /* an operating-system I/O call failed */
    TK_EFENCED = -9,   /* the store refused writes after an earlier failure */
    TK_ENOMEM = -10,   /* out of memory where failure is reported, not fatal */
    TK_EUNAUTH = -11,  /* credential missing, malformed or wrong */
    TK_EPROTO = -12,   /* peer broke the protocol */
    TK_EOPCODE = -13,  /* unknown operation */
    TK_EBUSY = -14,    /* server at a limit (connections, queue); try again later */
    TK_ENOSPC = -15,   /* storage full: growth refused, revocations still accepted */
    TK_ERATE = -16,    /* a rate limit: try again after the hinted delay */
    TK_EREADONLY = -17, /* a replica: writes go to the primary (the message names it) */
    TK_ELAST = TK_EREADONLY /* the last code (tests walk them all) */
};

/* Returns a static, human-readable string for a TK_E* code (never NULL). */
const char *tk_strerror(int code);

/* Returns a stable snake_case name for a TK_E* code ("not_found"; "other"
 * for a code it does not know): the JSON API's "error" field and the
 * metrics' status label. */
const char *tk_errcode(int code);

/* Why something failed: one line for a person (a file, a step, the
 * system's reason, what to do). The one channel for messages across the
 * tree: a function that can say why takes a tk_why * as its last parameter
 * (NULL: the caller does not want to know) and writes it only when it
 * fails; nothing keeps a reason in global or thread-local state. */
#define TK_WHY_MAX 1024

typedef struct tk_why {
    char msg[TK_WHY_MAX];
} tk_why;

/* Formats the reason into w (when w is not NULL); returns code, so that a
 * failure is one statement: return tk_say(why, TK_EIO, "cannot ...", ...). */
int tk_say(tk_why *w, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
