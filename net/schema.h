/*
 * schema.h - the one table of the protocol's operations (prefix sch_).
 *
 * For each operation: its opcode and name, who may call it, where it runs,
 * the engine operation or read it becomes, its request fields (each with
 * its type, limit, and whether it is required) and its reply fields (and,
 * for a listing, the fields of its rows). The server's decoder and reply
 * encoder (net/dispatch.c) and the C client's encoders and decoders
 * (net/client.c) walk this table; docs/protocol.md's operation table is
 * generated from it (sch_markdown; tests/net/test_schema.c checks the two
 * agree). A field is written here once: adding one touches this file.
 *
 * Pure data and a few lookups: no I/O, no state.
 */
#ifndef TK_NET_SCHEMA_H
#define TK_NET_SCHEMA_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "store/engine.h"

/* The wire types. */
typedef enum sch_type {
    SCH_STR,   /* a UTF-8 string of at most max bytes (0: no limit but the frame's) */
    SCH_BOOL,
    SCH_UINT,  /* unsigned, at most max when max > 0 */
    SCH_INT,   /* signed (times: unix seconds) */
    SCH_STRS,  /* an array of at most max strings, each at most elem_max bytes */
    SCH_ROWS,  /* an array of maps: a listing's rows (sch_op.row) */
} sch_type;

/* Every field name of the protocol, requests and replies. */
typedef enum sch_fid {
    SF_TENANT, SF_ACCOUNT, SF_USER, SF_KEY, SF_NAME, SF_DESCRIPTION, SF_API_TOKENS, SF_PORTAL,
    SF_LEVEL, SF_PERMISSIONS, SF_ROLES, SF_EXPIRES_AT, SF_KEY_ID, SF_CLIENT_ID, SF_AFTER,
    SF_LIMIT, SF_SECRET, SF_MAX_TOKENS, SF_MAX_ROLES, SF_MAX_KEYS, SF_CREATE_RATE,
    SF_CREATE_BURST, SF_EXPIRES_IN, SF_SEARCH, SF_GATEWAY,
    /* replies only */
    SF_VERSION, SF_ACTOR, SF_VALID, SF_REASON, SF_PERSONAL_KEY, SF_CREATED_BY, SF_CREATED_AT,
    SF_MORE, SF_NEXT, SF_TOKENS, SF_TENANTS, SF_ACCOUNTS, SF_USERS, SF_KEYS, SF_PERM_ROWS,
    SF_ROLE_ROWS, SF_ROLE_COUNT, SF_PERM_COUNT, SF_TOKEN_COUNT, SF_KEY_COUNT, SF_GRANTS,
    SF_URL, SF_VIA, SF_CSRF, SF_RING_ROWS,
    SF_COUNT
} sch_fid;

typedef struct sch_field {
    const char *name;
    uint8_t len;       /* strlen(name) */
    sch_type type;
    uint32_t max;      /* SCH_STR: bytes; SCH_STRS: elements; SCH_UINT: value (0: any) */
    uint32_t elem_max; /* SCH_STRS: bytes per element */
} sch_field;

extern const sch_field sch_fields[SF_COUNT];

/* A field's place in a message. */
typedef struct sch_use {
    sch_fid f;
    bool required;
} sch_use;

/* Who may call an operation (the engine decides, in store/plan.c and
 * store/query.c; this is what it decides, for the docs and the client). */
typedef enum sch_who {
    SCH_ANYONE,   /* no credential needed (PING, AUTH; VERIFY unless a gateway key is) */
    SCH_OPERATOR, /* the operator key */
    SCH_USER,     /* a user's personal key (rule 2 where it applies) */
    SCH_BOTH,     /* either: a user in its own scope, the operator in the scope it names */
} sch_who;

/* Where an operation runs. */
typedef enum sch_run {
    SCH_INLINE, /* PING, AUTH, VERIFY: answered on the loop thread */
    SCH_WRITE,  /* a change: a batch on the writer thread (eng_commit) */
    SCH_READ,   /* a listing or a get: on the writer thread (eng_query_run) */
    SCH_PORTAL, /* a portal session's (net/portal.c): over HTTP only, where a
                   browser is; the binary protocol answers them `opcode` */
} sch_run;

#define SCH_MAX_USES 12

typedef struct sch_op {
    uint16_t code;
    const char *name;
    sch_who who;
    sch_run run;
    eng_op op;      /* SCH_WRITE: what it becomes */
    eng_kind kind;  /* SCH_READ: what it reads ... */
    bool get;       /* ... one row (its fields at the top of the reply), or a listing */
    sch_use req[SCH_MAX_USES];    /* ended by the first use with f == SF_COUNT */
    sch_use reply[SCH_MAX_USES];  /* a listing: SCH_ROWS, "more", "next" */
    sch_use row[SCH_MAX_USES];    /* a listing's row, or a get's reply */
    const char *note;             /* one line for the docs, or NULL */
} sch_op;

/* The operation with opcode code, or NULL. */
const sch_op *sch_find(uint16_t code);

/* The operation named name (e.g. "TOKEN_CREATE"), or NULL. */
const sch_op *sch_named(const char *name);

/* Every operation, in opcode order: *n of them. */
const sch_op *sch_all(size_t *n);

/* The use of the field named name[0..n) in uses, or NULL. (A name may
 * stand for two fields of different types in two messages, never in one:
 * "permissions" are strings in ROLE_PUT and rows in PERM_LIST's reply.) */
const sch_use *sch_find_use(const sch_use *uses, const char *name, size_t n);

/* Iterates a use list: for (const sch_use *u = op->req; SCH_USED(u); u++). */
#define SCH_USED(u) ((u)->f != SF_COUNT)

/* The reply fields an operation writes (a get's are its row's). */
const sch_use *sch_reply(const sch_op *op);

/* A route of the JSON API (net/http.c, docs/http.md): an HTTP method and
 * a path template whose "{name}" segments are request fields of the
 * operation code (each a field of its request, taken from the path), the
 * status of a success, and one line for docs/openapi.yaml. Several routes
 * may lead to one operation (a user's own scope, and the operator's). */
typedef struct sch_route {
    const char *method; /* "GET", "POST", "PUT", "PATCH" or "DELETE" */
    const char *path;   /* e.g. "/v1/tenants/{tenant}/roles/{key}" */
    uint16_t code;
    uint16_t ok;        /* 200 or 201 */
    const char *summary;
} sch_route;

/* Every route of the JSON API: *n of them. */
const sch_route *sch_routes(size_t *n);

/* Writes docs/protocol.md's table of operations (the lines between
 * "<!-- ops:begin -->" and "<!-- ops:end -->"). */
void sch_markdown(FILE *out);

#endif
