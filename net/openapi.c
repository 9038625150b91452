/*
 * openapi.c - docs/openapi.yaml from the schema's tables; see openapi.h.
 *
 * YAML is written as text, line by line, the indentation passed down: the
 * output is regular enough that a YAML library would only add a
 * dependency. Every string that comes from a table (a summary, a note) is
 * written double-quoted (oapi_q), so none can be read back as YAML syntax;
 * the few prose blocks are literal blocks ("|"). Everything comes out in
 * the tables' order, so two runs give the same bytes.
 *
 * The tables say what an operation takes and answers; the HTTP listener
 * (net/http.c) decides how a field travels and which refusals a request
 * can meet. Those rules are stated once here, each beside the code that
 * writes it: oapi_where (path, query or body), oapi_meets (the error
 * responses), oapi_needs_key (the credential).
 */
#include "net/openapi.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/err.h"
#include "core/model.h"
#include "net/http.h"
#include "net/portal.h"
#include "net/proto.h"
#include "net/schema.h"

#define OAPI_ID_MAX 64  /* an operationId */
#define OAPI_NAME_MAX 64 /* a component's name */
#define OAPI_VERIFY "/v1/verify"

static void oapi_ln(FILE *out, int ind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* One line: ind spaces, then fmt. */
static void oapi_ln(FILE *out, int ind, const char *fmt, ...)
{
    va_list ap;
    fprintf(out, "%*s", ind, "");
    va_start(ap, fmt);
    vfprintf(out, fmt, ap);
    va_end(ap);
    fputc('\n', out);
}

/* s as a YAML double-quoted scalar. */
static void oapi_q(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\x%02x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

/* key: "val" */
static void oapi_kq(FILE *out, int ind, const char *key, const char *val)
{
    fprintf(out, "%*s%s: ", ind, "", key);
    oapi_q(out, val);
    fputc('\n', out);
}

/* key: | and text (lines ended by \n) as a literal block. */
static void oapi_block(FILE *out, int ind, const char *key, const char *text)
{
    oapi_ln(out, ind, "%s: |", key);
    while (*text) {
        const char *e = strchr(text, '\n');
        size_t n = e ? (size_t)(e - text) : strlen(text);
        if (n)
            fprintf(out, "%*s%.*s", ind + 2, "", (int)n, text);
        fputc('\n', out);
        text += n + (e != NULL);
    }
}

static void oapi_ref(FILE *out, int ind, const char *kind, const char *name)
{
    oapi_ln(out, ind, "$ref: \"#/components/%s/%s\"", kind, name);
}

/* ---- how the listener treats an operation --------------------------------- */

/* Requests that need Authorization: Bearer (http.c's api(): all but PING
 * and VERIFY, which gateways call without a management key). */
static bool oapi_needs_key(const sch_op *op)
{
    return op->code != OP_PING && op->code != OP_VERIFY;
}

static bool oapi_has_body(const sch_route *rt)
{
    return strcmp(rt->method, "POST") == 0 || strcmp(rt->method, "PUT") == 0
           || strcmp(rt->method, "PATCH") == 0;
}

/* The template has a "{name}" segment. */
static bool oapi_in_path(const char *path, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = strchr(path, '{'); p; p = strchr(p + 1, '{'))
        if (strncmp(p + 1, name, n) == 0 && p[n + 1] == '}')
            return true;
    return false;
}

typedef enum oapi_in { OAPI_NONE, OAPI_PATH, OAPI_QUERY, OAPI_BODY } oapi_in;

/* Where a request field of rt travels: its path segment, else the JSON body
 * of a POST, PUT or PATCH, else the query (http.c's gather). AUTH's key is
 * the Bearer credential itself (http.c's actor_of): no field of its own. */
static oapi_in oapi_where(const sch_route *rt, const sch_op *op, const sch_use *u)
{
    if (op->code == OP_AUTH && u->f == SF_KEY)
        return OAPI_NONE;
    if (oapi_in_path(rt->path, sch_fields[u->f].name))
        return OAPI_PATH;
    return oapi_has_body(rt) ? OAPI_BODY : OAPI_QUERY;
}

/* The refusals only some engine operations give (store/plan.c): a name
 * already taken, a rate limit. */
static const struct {
    eng_op op;
    int rc;
} oapi_only[] = {
    {ENG_TENANT_CREATE, TK_EEXIST},
    {ENG_ACCOUNT_CREATE, TK_EEXIST},
    {ENG_USER_CREATE, TK_EEXIST},
    {ENG_TOKEN_CREATE, TK_ERATE},
};

/* Which requests can meet an error status. */
typedef enum oapi_scope {
    OAPI_ALL,    /* every request: the decoder (dispatch), the header cap */
    OAPI_KEYED,  /* every request that names a credential (oapi_needs_key, VERIFY's gateway key) */
    OAPI_ENGINE, /* reads and writes: the engine and the writer's queue */
    OAPI_ONLY,   /* the engine operations oapi_only lists with the status's first code */
} oapi_scope;

/* The error responses: http.c's http_status, status by status (the two
 * must agree: oapi_statuses_agree), and the codes of core/err.c's tk_errcode that get each. */
typedef struct oapi_status {
    int status;
    const char *name; /* #/components/responses/<name> */
    const char *what;
    oapi_scope scope;
    int rc[7]; /* ended by TK_OK */
} oapi_status;

static const oapi_status oapi_statuses[] = {
    {400, "BadRequest", "The request is malformed", OAPI_ALL, {TK_EINVAL, TK_EPROTO}},
    {401, "Unauthorized", "No credential, or not a valid one", OAPI_KEYED, {TK_EUNAUTH}},
    {403, "Forbidden", "A rule refuses it to this credential, or the tenant's API tokens are off",
     OAPI_ENGINE, {TK_EDENIED, TK_EDISABLED}},
    {404, "NotFound", "No such entity, or none this credential may see", OAPI_ENGINE,
     {TK_ENOTFOUND}},
    {409, "Conflict", "The name is taken", OAPI_ONLY, {TK_EEXIST}},
    {413, "PayloadTooLarge", "A size or count limit", OAPI_ALL, {TK_ELIMIT}},
    {421, "Misdirected", "A write sent to a read-only replica (the message names the primary)",
     OAPI_ENGINE, {TK_EREADONLY}},
    {429, "TooManyRequests", "A rate limit (retry after the delay given)", OAPI_ONLY, {TK_ERATE}},
    {503, "Unavailable", "The server cannot take it now (busy, storage full or fenced, I/O)",
     OAPI_ENGINE, {TK_EBUSY, TK_ENOSPC, TK_EFENCED, TK_EIO, TK_ENOMEM, TK_ECORRUPT}},
};

#define OAPI_NSTATUS (sizeof oapi_statuses / sizeof oapi_statuses[0])

static bool oapi_meets(const sch_op *op, const oapi_status *s)
{
    switch (s->scope) {
    case OAPI_ALL: return true;
    case OAPI_KEYED: return oapi_needs_key(op) || op->code == OP_VERIFY;
    case OAPI_ENGINE: return op->run != SCH_INLINE;
    case OAPI_ONLY:
        for (size_t i = 0; i < sizeof oapi_only / sizeof oapi_only[0]; i++)
            if (op->run == SCH_WRITE && op->op == oapi_only[i].op && s->rc[0] == oapi_only[i].rc)
                return true;
        return false;
    }
    return false;
}

bool oapi_statuses_agree(void)
{
    for (size_t i = 0; i < OAPI_NSTATUS; i++)
        for (const int *rc = oapi_statuses[i].rc; *rc != TK_OK; rc++)
            if (http_status_of(*rc) != oapi_statuses[i].status)
                return false;
    return true;
}

static const oapi_status *oapi_status_of(int status)
{
    for (size_t i = 0; i < OAPI_NSTATUS; i++)
        if (oapi_statuses[i].status == status)
            return &oapi_statuses[i];
    return NULL;
}

/* ---- names ----------------------------------------------------------------- */

static bool oapi_same_uses(const sch_use *a, const sch_use *b)
{
    for (; SCH_USED(a) && SCH_USED(b); a++, b++)
        if (a->f != b->f || a->required != b->required)
            return false;
    return !SCH_USED(a) && !SCH_USED(b);
}

/* The rows field of a listing's reply, or NULL. */
static const sch_field *oapi_rows_field(const sch_op *op)
{
    for (const sch_use *u = op->reply; SCH_USED(u); u++)
        if (sch_fields[u->f].type == SCH_ROWS)
            return &sch_fields[u->f];
    return NULL;
}

static bool oapi_is_listing(const sch_op *op)
{
    return op->run == SCH_READ && !op->get && oapi_rows_field(op);
}

/* A rows field's name, singular and capitalized ("tokens" -> "Token"). */
static void oapi_noun(const sch_field *f, char *out, size_t cap)
{
    size_t n = f->len > 1 && f->name[f->len - 1] == 's' ? f->len - 1u : f->len;
    snprintf(out, cap, "%c%.*s", f->name[0] - 'a' + 'A', (int)n - 1, f->name + 1);
}

/* A listing's own row name: its rows field's noun, or "<NAME>_row" when an
 * earlier listing took it. */
static void oapi_listing_row(const sch_op *op, char *out, size_t cap)
{
    size_t nops;
    const sch_op *ops = sch_all(&nops);
    oapi_noun(oapi_rows_field(op), out, cap);
    for (const sch_op *o = ops; o < op; o++) {
        char other[OAPI_NAME_MAX];
        if (!oapi_is_listing(o))
            continue;
        oapi_noun(oapi_rows_field(o), other, sizeof other);
        if (strcmp(other, out) == 0) {
            snprintf(out, cap, "%s_row", op->name);
            return;
        }
    }
}

/* The component under #/components/schemas of op's row: a listing's, or a
 * get's when a listing of the same kind has the same row. False when op
 * has none (a get's row is then written in place). */
static bool oapi_row_name(const sch_op *op, char *out, size_t cap)
{
    if (oapi_is_listing(op)) {
        oapi_listing_row(op, out, cap);
        return true;
    }
    if (op->run != SCH_READ || !op->get)
        return false;
    size_t nops;
    const sch_op *ops = sch_all(&nops);
    for (size_t i = 0; i < nops; i++)
        if (oapi_is_listing(&ops[i]) && ops[i].kind == op->kind
            && oapi_same_uses(ops[i].row, op->row)) {
            oapi_listing_row(&ops[i], out, cap);
            return true;
        }
    return false;
}

/* Route i's operationId: its operation's name. An operation with several
 * routes gives its name to the first; a later one in a user's own scope
 * (no {tenant} in its path) adds "_own", any other "_<rank>" (2, 3, ...). */
static void oapi_op_id(const sch_route *routes, size_t i, char *out, size_t cap)
{
    const sch_op *op = sch_find(routes[i].code);
    const char *name = op ? op->name : "UNKNOWN";
    size_t rank = 1;
    bool own_taken = false;
    for (size_t k = 0; k < i; k++) {
        if (routes[k].code != routes[i].code)
            continue;
        if (++rank > 2 && !oapi_in_path(routes[k].path, "tenant"))
            own_taken = true;
    }
    if (rank == 1)
        snprintf(out, cap, "%s", name);
    else if (!oapi_in_path(routes[i].path, "tenant") && !own_taken)
        snprintf(out, cap, "%s_own", name);
    else
        snprintf(out, cap, "%s_%zu", name, rank);
}

/* ---- schemas ---------------------------------------------------------------- */

/* The schema of one field (its limits from the table). */
static void oapi_field(FILE *out, int ind, const sch_op *op, const sch_field *f)
{
    char row[OAPI_NAME_MAX];
    switch (f->type) {
    case SCH_STR:
        oapi_ln(out, ind, "type: string");
        if (f->max)
            oapi_ln(out, ind, "maxLength: %u", (unsigned)f->max);
        return;
    case SCH_BOOL: oapi_ln(out, ind, "type: boolean"); return;
    case SCH_UINT:
        oapi_ln(out, ind, "type: integer");
        oapi_ln(out, ind, "minimum: 0");
        if (f->max)
            oapi_ln(out, ind, "maximum: %u", (unsigned)f->max);
        return;
    case SCH_INT:
        oapi_ln(out, ind, "type: integer");
        oapi_ln(out, ind, "format: int64");
        return;
    case SCH_STRS:
        oapi_ln(out, ind, "type: array");
        if (f->max)
            oapi_ln(out, ind, "maxItems: %u", (unsigned)f->max);
        oapi_ln(out, ind, "items:");
        oapi_ln(out, ind + 2, "type: string");
        if (f->elem_max)
            oapi_ln(out, ind + 2, "maxLength: %u", (unsigned)f->elem_max);
        return;
    case SCH_ROWS:
        oapi_ln(out, ind, "type: array");
        oapi_ln(out, ind, "items:");
        if (oapi_row_name(op, row, sizeof row))
            oapi_ref(out, ind + 2, "schemas", row);
        else
            oapi_ln(out, ind + 2, "type: object");
        return;
    }
}

/* An object of the fields of uses (those that travel in `in` on route rt,
 * when rt is given): each a property, the required ones listed, nothing
 * else allowed. */
static void oapi_object(FILE *out, int ind, const sch_op *op, const sch_use *uses,
                        const sch_route *rt, oapi_in in)
{
    bool any = false, required = false;
    for (const sch_use *u = uses; SCH_USED(u); u++)
        if (!rt || oapi_where(rt, op, u) == in) {
            any = true;
            required |= u->required;
        }
    oapi_ln(out, ind, "type: object");
    oapi_ln(out, ind, "additionalProperties: false");
    if (!any)
        return;
    if (required) {
        oapi_ln(out, ind, "required:");
        for (const sch_use *u = uses; SCH_USED(u); u++)
            if ((!rt || oapi_where(rt, op, u) == in) && u->required)
                oapi_ln(out, ind + 2, "- %s", sch_fields[u->f].name);
    }
    oapi_ln(out, ind, "properties:");
    for (const sch_use *u = uses; SCH_USED(u); u++)
        if (!rt || oapi_where(rt, op, u) == in) {
            oapi_ln(out, ind + 2, "%s:", sch_fields[u->f].name);
            oapi_field(out, ind + 4, op, &sch_fields[u->f]);
        }
}

/* The schema of op's success reply. */
static void oapi_reply(FILE *out, int ind, const sch_op *op)
{
    char row[OAPI_NAME_MAX];
    if (op->get && oapi_row_name(op, row, sizeof row))
        oapi_ref(out, ind, "schemas", row);
    else
        oapi_object(out, ind, op, sch_reply(op), NULL, OAPI_NONE);
}

/* ---- one route --------------------------------------------------------------- */

static void oapi_param(FILE *out, int ind, const sch_op *op, const char *name, oapi_in in,
                       bool required)
{
    const sch_use *u = sch_find_use(op->req, name, strlen(name));
    oapi_ln(out, ind, "- name: %s", name);
    oapi_ln(out, ind + 2, "in: %s", in == OAPI_PATH ? "path" : "query");
    oapi_ln(out, ind + 2, "required: %s", required ? "true" : "false");
    if (u && sch_fields[u->f].type == SCH_STRS) {
        oapi_kq(out, ind + 2, "description", "repeat the parameter for each element");
        oapi_ln(out, ind + 2, "style: form");
        oapi_ln(out, ind + 2, "explode: true");
    }
    oapi_ln(out, ind + 2, "schema:");
    if (u)
        oapi_field(out, ind + 4, op, &sch_fields[u->f]);
    else /* a path segment the operation does not take: test_openapi fails it */
        oapi_ln(out, ind + 4, "type: string");
}

static void oapi_params(FILE *out, int ind, const sch_route *rt, const sch_op *op)
{
    bool any = strchr(rt->path, '{') != NULL;
    for (const sch_use *u = op->req; SCH_USED(u) && !any; u++)
        any = oapi_where(rt, op, u) == OAPI_QUERY;
    if (!any)
        return;
    oapi_ln(out, ind, "parameters:");
    for (const char *p = strchr(rt->path, '{'); p; p = strchr(p + 1, '{')) {
        char name[OAPI_NAME_MAX];
        const char *e = strchr(p, '}');
        size_t n = e ? (size_t)(e - p - 1) : strlen(p + 1);
        snprintf(name, sizeof name, "%.*s", (int)n, p + 1);
        oapi_param(out, ind + 2, op, name, OAPI_PATH, true);
    }
    for (const sch_use *u = op->req; SCH_USED(u); u++)
        if (oapi_where(rt, op, u) == OAPI_QUERY)
            oapi_param(out, ind + 2, op, sch_fields[u->f].name, OAPI_QUERY, u->required);
}

/* "content:", the media type and "schema:", at ind: the schema follows at
 * ind + 6. */
static void oapi_content(FILE *out, int ind, const char *type)
{
    oapi_ln(out, ind, "content:");
    oapi_ln(out, ind + 2, "%s:", type);
    oapi_ln(out, ind + 4, "schema:");
}

/* A hand-written parameter: a string, or an array of strings (exploded
 * form) when list. */
static void oapi_hand_param(FILE *out, int ind, const char *name, const char *in,
                            bool required, const char *desc, bool list)
{
    oapi_ln(out, ind, "- name: %s", name);
    oapi_ln(out, ind + 2, "in: %s", in);
    oapi_ln(out, ind + 2, "required: %s", required ? "true" : "false");
    oapi_kq(out, ind + 2, "description", desc);
    if (list) {
        oapi_ln(out, ind + 2, "style: form");
        oapi_ln(out, ind + 2, "explode: true");
    }
    oapi_ln(out, ind + 2, "schema:");
    oapi_ln(out, ind + 4, "type: %s", list ? "array" : "string");
    if (list) {
        oapi_ln(out, ind + 4, "items:");
        oapi_ln(out, ind + 6, "type: string");
    }
}

static void oapi_body(FILE *out, int ind, const sch_route *rt, const sch_op *op)
{
    bool any = false, required = false;
    for (const sch_use *u = op->req; SCH_USED(u); u++)
        if (oapi_where(rt, op, u) == OAPI_BODY) {
            any = true;
            required |= u->required;
        }
    if (!any)
        return;
    oapi_ln(out, ind, "requestBody:");
    oapi_ln(out, ind + 2, "required: %s", required ? "true" : "false");
    oapi_content(out, ind + 2, "application/json");
    oapi_object(out, ind + 8, op, op->req, rt, OAPI_BODY);
}

/* Who may call it, for the description. */
static const char *oapi_who(const sch_route *rt, const sch_op *op)
{
    if (op->code == OP_VERIFY)
        return "No credential; the gateway key (X-Tokend-Gateway-Key) when the server "
               "requires one.";
    if (!oapi_needs_key(op))
        return "No credential.";
    if (oapi_in_path(rt->path, "tenant")) /* a personal key gets 404 here (http.c) */
        return "The operator key.";
    switch (op->who) {
    case SCH_OPERATOR: return "The operator key.";
    case SCH_USER: return "A user's personal key.";
    case SCH_BOTH:
        return "A user's personal key, in its own scope; or the operator key, which names the "
               "scope where the operation takes one.";
    case SCH_ANYONE: break;
    }
    return "The operator key or a personal key.";
}

static void oapi_route(FILE *out, const sch_route *routes, size_t i)
{
    const sch_route *rt = &routes[i];
    const sch_op *op = sch_find(rt->code);
    char id[OAPI_ID_MAX], method[8], desc[512];
    size_t k;
    for (k = 0; rt->method[k] && k + 1 < sizeof method; k++)
        method[k] = (char)(rt->method[k] - 'A' + 'a');
    method[k] = 0;
    oapi_op_id(routes, i, id, sizeof id);
    oapi_ln(out, 4, "%s:", method);
    oapi_ln(out, 6, "operationId: %s", id);
    oapi_kq(out, 6, "summary", rt->summary);
    /* The inline operations' notes are about the binary connection. */
    const char *note = op->run != SCH_INLINE ? op->note : NULL;
    snprintf(desc, sizeof desc, "%s The protocol's %s (0x%02x)%s%s.%s", oapi_who(rt, op), op->name,
             op->code, note ? ": " : "", note ? note : "",
             oapi_is_listing(op) ? " A page of rows: while more is true, pass next as after for "
                                   "the next page."
                                 : "");
    oapi_kq(out, 6, "description", desc);
    if (op->code == OP_VERIFY) {
        oapi_ln(out, 6, "security:");
        oapi_ln(out, 8, "- {}");
        oapi_ln(out, 8, "- gatewayKey: []");
    } else if (!oapi_needs_key(op)) {
        oapi_ln(out, 6, "security: []");
    }
    oapi_params(out, 6, rt, op);
    oapi_body(out, 6, rt, op);
    oapi_ln(out, 6, "responses:");
    oapi_ln(out, 8, "\"%u\":", (unsigned)rt->ok);
    oapi_kq(out, 10, "description", rt->ok == 201 ? "Created" : "OK");
    oapi_content(out, 10, "application/json");
    oapi_reply(out, 16, op);
    if (op->code == OP_VERIFY) { /* not valid: 401 with the same reply (http.c, inline_op) */
        oapi_ln(out, 8, "\"401\":");
        oapi_kq(out, 10, "description",
                "The token is not valid (valid is false, reason says why); also the gateway "
                "key missing, as an Error");
        oapi_content(out, 10, "application/json");
        oapi_reply(out, 16, op);
    }
    for (size_t s = 0; s < OAPI_NSTATUS; s++)
        if (oapi_meets(op, &oapi_statuses[s])
            && !(op->code == OP_VERIFY && oapi_statuses[s].status == 401)) {
            oapi_ln(out, 8, "\"%d\":", oapi_statuses[s].status);
            oapi_ref(out, 10, "responses", oapi_statuses[s].name);
        }
}

/* ---- the endpoints outside the table ------------------------------------------ */

/* A response header of a string, or of an integer when number. */
static void oapi_header(FILE *out, int ind, const char *name, const char *desc, bool number)
{
    oapi_ln(out, ind, "%s:", name);
    oapi_kq(out, ind + 2, "description", desc);
    oapi_ln(out, ind + 2, "schema:");
    oapi_ln(out, ind + 4, "type: %s", number ? "integer" : "string");
}

static void oapi_error_ref(FILE *out, int ind, int status)
{
    const oapi_status *s = oapi_status_of(status);
    oapi_ln(out, ind, "\"%d\":", status);
    oapi_ref(out, ind + 2, "responses", s ? s->name : "BadRequest");
}

/* /v1/verify and the paths under it (http.c's gateway_verify): any method
 * and no body; written as the GET that gateways send. */
static void oapi_gateway(FILE *out, bool under)
{
    oapi_ln(out, 4, "get:");
    oapi_ln(out, 6, "operationId: GATEWAY_VERIFY%s", under ? "_path" : "");
    oapi_kq(out, 6, "summary",
            under ? "verify a token for a gateway, the original path appended"
                  : "verify a token for a gateway (nginx auth_request, Caddy forward_auth, "
                    "Envoy ext_authz, Traefik forwardAuth)");
    oapi_block(out, 6, "description",
               "Any method, no body (a POST to /v1/verify with a body is the JSON verification).\n"
               "The token travels as Authorization: Bearer <secret>, as Authorization: Basic\n"
               "base64(<client_id>:<secret>), or as X-API-Key: <secret>. The answer is the\n"
               "status: 200 with the token's identity in headers, 401 when it is not valid\n"
               "(or missing), 403 when it lacks a permission the request requires\n"
               "(?permission=P, repeatable, or X-Tokend-Require-Permission).\n");
    oapi_ln(out, 6, "security:");
    oapi_ln(out, 8, "- {}");
    oapi_ln(out, 8, "- gatewayKey: []");
    oapi_ln(out, 6, "parameters:");
    if (under)
        oapi_hand_param(out, 8, "path", "path", true,
                   "anything (more segments too): the verification does not depend on it",
                   false);
    oapi_hand_param(out, 8, "permission", "query", false,
               "a permission the token must carry; repeatable", true);
    oapi_hand_param(out, 8, "X-Tokend-Require-Permission", "header", false,
               "permissions the token must carry, comma-separated; the header may be repeated",
               false);
    oapi_hand_param(out, 8, "X-API-Key", "header", false,
               "the token's secret, when not in Authorization", false);
    oapi_ln(out, 6, "responses:");
    oapi_ln(out, 8, "\"200\":");
    oapi_kq(out, 10, "description", "The token is valid (and has every permission required)");
    oapi_ln(out, 10, "headers:");
    oapi_header(out, 12, "X-Tokend-Tenant", "the token's tenant", false);
    oapi_header(out, 12, "X-Tokend-Account", "the token's account", false);
    oapi_header(out, 12, "X-Tokend-Client-Id", "the token's client ID (a UUID)", false);
    oapi_header(out, 12, "X-Tokend-Roles", "its roles, comma-separated", false);
    oapi_header(out, 12, "X-Tokend-Permissions", "its roles' permissions, comma-separated", false);
    oapi_header(out, 12, "X-Tokend-Reason", "\"valid\"", false);
    oapi_ln(out, 8, "\"401\":");
    oapi_kq(out, 10, "description",
            "Not valid: {\"valid\": false, \"reason\": ...}; or the gateway key is missing "
            "or wrong (an Error)");
    oapi_ln(out, 10, "headers:");
    oapi_header(out, 12, "WWW-Authenticate", "Bearer realm=\"tokend\"", false);
    oapi_header(out, 12, "X-Tokend-Reason", "why, as the body's reason", false);
    oapi_content(out, 10, "application/json");
    oapi_ln(out, 16, "oneOf:");
    oapi_ln(out, 18, "- $ref: \"#/components/schemas/VerifyRefusal\"");
    oapi_ln(out, 18, "- $ref: \"#/components/schemas/Error\"");
    oapi_ln(out, 8, "\"403\":");
    oapi_kq(out, 10, "description", "Valid, but without a permission the request requires");
    oapi_ln(out, 10, "headers:");
    oapi_header(out, 12, "X-Tokend-Reason", "\"permission\"", false);
    oapi_content(out, 10, "application/json");
    oapi_ref(out, 16, "schemas", "PermissionDenied");
    oapi_error_ref(out, 8, 413);
}

static void oapi_metrics(FILE *out)
{
    oapi_ln(out, 2, "/metrics:");
    oapi_ln(out, 4, "get:");
    oapi_ln(out, 6, "operationId: METRICS");
    oapi_kq(out, 6, "summary", "the server's counters, in Prometheus text");
    oapi_kq(out, 6, "description",
            "Verifications by listener and result with their latency, requests by listener, "
            "operation and status, connections, the index, the log, batch and sync histograms "
            "(net/metrics.c). No credential.");
    oapi_ln(out, 6, "security: []");
    oapi_ln(out, 6, "responses:");
    oapi_ln(out, 8, "\"200\":");
    oapi_kq(out, 10, "description", "Prometheus text format 0.0.4");
    oapi_content(out, 10, "text/plain");
    oapi_ln(out, 16, "type: string");
    oapi_error_ref(out, 8, 413);
}

/* /healthz and /readyz (http.c's health). */
static void oapi_health(FILE *out, bool ready)
{
    oapi_ln(out, 2, "/%s:", ready ? "readyz" : "healthz");
    oapi_ln(out, 4, "get:");
    oapi_ln(out, 6, "operationId: %s", ready ? "READYZ" : "HEALTHZ");
    oapi_kq(out, 6, "summary",
            ready ? "whether the server is serving (a full or fenced store still verifies)"
                  : "whether the store takes writes");
    oapi_kq(out, 6, "description",
            ready ? "200 while serving, whatever the store's state; 503 (stopping) once the "
                    "server is stopping. No credential."
                  : "200 while the store takes writes; 503 when it is full (only revocations "
                    "are accepted) or fenced (it refuses writes after a failure). No credential.");
    oapi_ln(out, 6, "security: []");
    oapi_ln(out, 6, "responses:");
    for (int i = 0; i < 2; i++) {
        oapi_ln(out, 8, "\"%d\":", i ? 503 : 200);
        oapi_kq(out, 10, "description",
                i ? (ready ? "Stopping" : "Full or fenced")
                  : (ready ? "Serving" : "Takes writes"));
        oapi_content(out, 10, "application/json");
        oapi_ref(out, 16, "schemas", "Health");
    }
    oapi_error_ref(out, 8, 413);
}

/* ---- the document --------------------------------------------------------------- */

static void oapi_info(FILE *out)
{
    oapi_ln(out, 0, "# docs/openapi.yaml - generated by net/openapi.c from net/schema.c's tables;");
    oapi_ln(out, 0, "# do not edit. TOKEND_WRITE_OPENAPI=1 build/rel/tests/net/test_openapi");
    oapi_ln(out, 0, "# writes it again; tests/openapi/lint.sh lints it.");
    oapi_ln(out, 0, "openapi: 3.1.0");
    oapi_ln(out, 0, "info:");
    oapi_kq(out, 2, "title", "tokend JSON API");
    oapi_ln(out, 2, "version: \"%d\"", PROTO_VERSION);
    oapi_kq(out, 2, "summary",
            "A tenant-scoped, role-based API token store: management and verification over HTTP");
    oapi_block(out, 2, "description",
               "The JSON API is the binary protocol's operations (docs/protocol.md) over HTTP:\n"
               "each route leads to one operation, whose fields it takes from the path, the\n"
               "query (GET, DELETE) and the JSON body (POST, PUT, PATCH; Content-Type:\n"
               "application/json), by the same names; a field given twice is refused. A reply\n"
               "has exactly the operation's reply fields.\n"
               "\n"
               "Paths under /v1/tenants/{tenant} are the operator's; the short ones (/v1/tokens,\n"
               "/v1/roles, ...) are a user's own scope, where the operator names the scope in\n"
               "the query or the body instead.\n"
               "\n"
               "A refusal is {\"error\": code, \"message\": text} with its HTTP status; a path\n"
               "the API knows asked with another method gets 405 method_not_allowed with an\n"
               "Allow header, and an unknown path 404 not_found. Times are unix seconds.\n"
               "\n"
               "A string's maxLength is the server's limit in bytes of UTF-8: a string of\n"
               "fewer characters is still refused when its bytes are more.\n");
    oapi_ln(out, 0, "servers:");
    oapi_ln(out, 2, "- url: \"http://%s\"", HTTP_DEFAULT_LISTEN);
    oapi_kq(out, 4, "description", "tokend's default --http address");
    oapi_ln(out, 0, "security:");
    oapi_ln(out, 2, "- bearer: []");
    oapi_ln(out, 2, "- portalSession: []");
}

static void oapi_paths(FILE *out)
{
    size_t n;
    const sch_route *routes = sch_routes(&n);
    bool verify_done = false;
    oapi_ln(out, 0, "paths:");
    for (size_t i = 0; i < n; i++) {
        size_t k;
        for (k = 0; k < i && strcmp(routes[k].path, routes[i].path) != 0; k++)
            ;
        if (k < i) /* written with the path's first route */
            continue;
        oapi_ln(out, 2, "%s:", routes[i].path);
        bool get = false;
        for (size_t j = i; j < n; j++)
            if (strcmp(routes[j].path, routes[i].path) == 0) {
                oapi_route(out, routes, j);
                get |= strcmp(routes[j].method, "GET") == 0;
            }
        if (strcmp(routes[i].path, OAPI_VERIFY) == 0) {
            if (!get) /* http.c answers every other request there as a gateway's */
                oapi_gateway(out, false);
            verify_done = true;
        }
    }
    if (!verify_done) {
        oapi_ln(out, 2, "%s:", OAPI_VERIFY);
        oapi_gateway(out, false);
    }
    oapi_ln(out, 2, "%s/{path}:", OAPI_VERIFY);
    oapi_gateway(out, true);
    oapi_metrics(out);
    oapi_health(out, false);
    oapi_health(out, true);
}

static void oapi_error_schema(FILE *out)
{
    oapi_ln(out, 4, "Error:");
    oapi_ln(out, 6, "type: object");
    oapi_ln(out, 6, "additionalProperties: false");
    oapi_ln(out, 6, "required:");
    oapi_ln(out, 8, "- error");
    oapi_ln(out, 8, "- message");
    oapi_ln(out, 6, "properties:");
    oapi_ln(out, 8, "error:");
    oapi_kq(out, 10, "description", "what kind of refusal (core/err.c's tk_errcode)");
    oapi_ln(out, 10, "type: string");
    oapi_ln(out, 10, "enum:");
    for (int rc = TK_EINVAL; rc >= TK_ELAST; rc--)
        oapi_ln(out, 12, "- %s", tk_errcode(rc));
    oapi_ln(out, 12, "- method_not_allowed");
    oapi_ln(out, 8, "message:");
    oapi_kq(out, 10, "description", "why, for a person");
    oapi_ln(out, 10, "type: string");
    oapi_ln(out, 8, "retry_after_ms:");
    oapi_kq(out, 10, "description", "rate_limited only: when to try again");
    oapi_ln(out, 10, "type: integer");
    oapi_ln(out, 10, "minimum: 0");

    oapi_ln(out, 4, "PermissionDenied:");
    oapi_ln(out, 6, "type: object");
    oapi_ln(out, 6, "additionalProperties: false");
    oapi_ln(out, 6, "required:");
    oapi_ln(out, 8, "- error");
    oapi_ln(out, 8, "- message");
    oapi_ln(out, 6, "properties:");
    oapi_ln(out, 8, "error:");
    oapi_ln(out, 10, "type: string");
    oapi_ln(out, 10, "const: %s", tk_errcode(TK_EDENIED));
    oapi_ln(out, 8, "message:");
    oapi_ln(out, 10, "type: string");
    oapi_ln(out, 8, "permission:");
    oapi_kq(out, 10, "description", "the first permission required that the token lacks");
    oapi_ln(out, 10, "type: string");

    oapi_ln(out, 4, "VerifyRefusal:");
    oapi_ln(out, 6, "type: object");
    oapi_ln(out, 6, "additionalProperties: false");
    oapi_ln(out, 6, "required:");
    oapi_ln(out, 8, "- valid");
    oapi_ln(out, 8, "- reason");
    oapi_ln(out, 6, "properties:");
    oapi_ln(out, 8, "valid:");
    oapi_ln(out, 10, "type: boolean");
    oapi_ln(out, 10, "const: false");
    oapi_ln(out, 8, "reason:");
    oapi_ln(out, 10, "type: string");
    oapi_ln(out, 10, "enum:");
    oapi_ln(out, 12, "- missing");
    for (int v = TK_V_VALID + 1; strcmp(model_verdict_name((tk_verdict)v), "unknown_verdict") != 0;
         v++)
        oapi_ln(out, 12, "- %s", model_verdict_name((tk_verdict)v));

    oapi_ln(out, 4, "Health:");
    oapi_ln(out, 6, "type: object");
    oapi_ln(out, 6, "additionalProperties: false");
    oapi_ln(out, 6, "required:");
    oapi_ln(out, 8, "- status");
    oapi_ln(out, 8, "- reason");
    oapi_ln(out, 6, "properties:");
    oapi_ln(out, 8, "status:");
    oapi_ln(out, 10, "type: string");
    oapi_ln(out, 10, "enum:");
    oapi_ln(out, 12, "- ok");
    oapi_ln(out, 12, "- full");
    oapi_ln(out, 12, "- fenced");
    oapi_ln(out, 12, "- stopping");
    oapi_ln(out, 8, "reason:");
    oapi_kq(out, 10, "description", "empty when ok");
    oapi_ln(out, 10, "type: string");
}

/* The listings' rows, each once. */
static void oapi_rows(FILE *out)
{
    size_t nops;
    const sch_op *ops = sch_all(&nops);
    for (size_t i = 0; i < nops; i++) {
        char row[OAPI_NAME_MAX];
        if (!oapi_is_listing(&ops[i]))
            continue;
        oapi_listing_row(&ops[i], row, sizeof row);
        oapi_ln(out, 4, "%s:", row);
        oapi_object(out, 6, &ops[i], ops[i].row, NULL, OAPI_NONE);
    }
}

static void oapi_responses(FILE *out)
{
    oapi_ln(out, 2, "responses:");
    for (size_t i = 0; i < OAPI_NSTATUS; i++) {
        const oapi_status *s = &oapi_statuses[i];
        char desc[256];
        size_t n = (size_t)snprintf(desc, sizeof desc, "%s (error:", s->what);
        for (size_t k = 0; s->rc[k] != TK_OK && n < sizeof desc; k++)
            n += (size_t)snprintf(desc + n, sizeof desc - n, "%s %s", k ? "," : "",
                                  tk_errcode(s->rc[k]));
        if (n < sizeof desc)
            snprintf(desc + n, sizeof desc - n, ")");
        oapi_ln(out, 4, "%s:", s->name);
        oapi_kq(out, 6, "description", desc);
        if (s->status == 401 || s->status == 429) {
            oapi_ln(out, 6, "headers:");
            if (s->status == 401)
                oapi_header(out, 8, "WWW-Authenticate", "Bearer realm=\"tokend\"", false);
            else
                oapi_header(out, 8, "Retry-After", "seconds (retry_after_ms, rounded up)", true);
        }
        oapi_content(out, 6, "application/json");
        oapi_ref(out, 12, "schemas", "Error");
    }
}

static void oapi_components(FILE *out)
{
    oapi_ln(out, 0, "components:");
    oapi_ln(out, 2, "securitySchemes:");
    oapi_ln(out, 4, "bearer:");
    oapi_ln(out, 6, "type: http");
    oapi_ln(out, 6, "scheme: bearer");
    oapi_kq(out, 6, "description",
            "the operator key (DIR/operator.key) or a user's personal key; a tenant API "
            "token is not a management key");
    oapi_ln(out, 4, "portalSession:");
    oapi_ln(out, 6, "type: apiKey");
    oapi_ln(out, 6, "in: cookie");
    oapi_ln(out, 6, "name: " PTL_COOKIE);
    oapi_kq(out, 6, "description",
            "a portal session (docs/portal.md): the cookie a link from POST "
            "/v1/portal/sessions sets; it acts as its user, and a change made with it also "
            "needs the header " PTL_CSRF_HEADER " (the csrf of GET /v1/portal/session)");
    oapi_ln(out, 4, "gatewayKey:");
    oapi_ln(out, 6, "type: apiKey");
    oapi_ln(out, 6, "in: header");
    oapi_ln(out, 6, "name: X-Tokend-Gateway-Key");
    oapi_kq(out, 6, "description",
            "the gateway key (DIR/gateway.key), needed to verify when the server is started "
            "with --require-gateway-key");
    oapi_ln(out, 2, "schemas:");
    oapi_error_schema(out);
    oapi_rows(out);
    oapi_responses(out);
}

void oapi_write(FILE *out)
{
    oapi_info(out);
    oapi_paths(out);
    oapi_components(out);
}
