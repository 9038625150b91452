/*
 * event.h - the events of the log and their msgpack encoding.
 *
 * Every change of state is one event; the log of events alone rebuilds the
 * whole state, so an event carries everything its apply needs (names, not
 * internal ids; generated ids, hashes and timestamps, never a secret).
 *
 * Encoding: a msgpack map of short string keys, always with "t" (type) and
 * "ts" (unix milliseconds); other keys per type, in any order; unknown keys
 * are refused (a log written by a newer tokend must not be half-understood).
 * The log record adds the sequence number and the hash chain (elog.h).
 * One request is always exactly one event, so a torn log tail can drop a
 * request but never keep half of one.
 */
#ifndef TK_EVENT_H
#define TK_EVENT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/model.h"
#include "core/mp.h"
#include "core/secret.h"

typedef enum ev_type {
    EV_TENANT_CREATE = 1, /* tenant */
    EV_TENANT_SET = 2,    /* tenant, flag (api_tokens), limits? (the whole set, when changed) */
    EV_PERM_PUT = 3,      /* tenant, key, desc */
    EV_ROLE_PUT = 4,      /* tenant, key, name, level, items (perm keys) */
    EV_ROLE_DELETE = 5,   /* tenant, key */
    EV_ACCOUNT_CREATE = 6,/* tenant, account */
    EV_USER_PUT = 7,      /* tenant, account, user, flag (portal), items (role keys) */
    EV_KEY_CREATE = 8,    /* tenant, account, user, id, hash, expires */
    EV_KEY_DELETE = 9,    /* id */
    EV_TOKEN_CREATE = 10, /* tenant, account, user, id, hash, desc, items (role keys), expires */
    EV_TOKEN_DELETE = 11, /* id */
    EV_USER_CREATE = 12,  /* tenant, account, user, flag (portal), items (role keys),
                             id, hash, expires (the user's first personal key) */
    EV_TOKEN_SET = 13,    /* id, desc: a token's description changed */
    EV_USER_DELETE = 14,  /* tenant, account, user: and its personal keys */
    EV_ACCOUNT_DELETE = 15, /* tenant, account: and its tokens, users and their keys */
    EV_PERM_DELETE = 16,  /* tenant, key: and out of every role that had it */
    EV_TENANT_DELETE = 17, /* tenant: and everything in it */
    EV_KEYRING_ADD = 18,  /* key (the server key's name), flag (a gateway key; else an
                             operator key), id, hash: a named key of the server */
    EV_KEYRING_REMOVE = 19, /* key (the name): it acts no more */
    EV_TYPE_MAX = 19
} ev_type;

/* Who made a change (the audit trail): optional in every event, absent in
 * records written before it existed (kind 0) and in the engine's own. */
typedef struct ev_by {
    uint8_t kind;                 /* 0: not recorded; else TK_ACTOR_OPERATOR or TK_ACTOR_USER */
    tk_str tenant, account, user; /* TK_ACTOR_USER: whom it acted as (slugs) */
    bool has_key;
    tk_id key;                    /* the personal key it used (none for a portal session) */
    bool session;                 /* TK_ACTOR_USER: through a portal session */
    tk_str peer;                  /* the client's address and port ("" in process) */
    tk_str listener;              /* "binary", "http" ("" in process) */
    tk_str key_name;              /* TK_ACTOR_OPERATOR: the keyring name of its key ("" for
                                     none: an in-process caller) */
} ev_by;

typedef struct ev {
    ev_type type;
    int64_t ts;        /* unix milliseconds */
    tk_str tenant, account, user, key, name, desc;
    bool flag;
    uint32_t level;
    uint32_t nitems;
    tk_str items[TK_MAX_ROLE_PERMS];
    tk_id id;
    uint8_t hash[TK_HASH_LEN];
    int64_t expires;   /* unix seconds; 0 = never */
    bool has_limits;   /* EV_TENANT_SET: limits is present (absent: unchanged) */
    tk_limits limits;
    ev_by by;          /* any type: by.kind != 0 when recorded */
} ev;

/* Zeroes e and sets its type. */
void ev_init(ev *e, ev_type type, int64_t ts);

/* Appends the encoding of e to w (only the fields its type uses). */
void ev_encode(const ev *e, mpw *w);

/* Decodes one event from data[0..len). Strings in e borrow from data.
 * Checks types, lengths, name syntax and counts; 0 or TK_ECORRUPT. */
int ev_decode(const void *data, size_t len, ev *e);

const char *ev_type_name(ev_type t);

#endif
