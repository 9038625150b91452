/*
 * schema.c - the protocol's operations and fields; see schema.h.
 *
 * The tables below are the protocol. A name may stand for two fields of
 * different types (a role's "permissions" are strings, PERM_LIST's are
 * rows): a message never holds both, and names are looked up within the
 * message's own fields (sch_find_use).
 */
#include "net/schema.h"

#include <string.h>

#include "core/model.h"
#include "net/proto.h"

#define NO_LIMIT 0
#define CURSOR_MAX (TK_KEY_MAX + 32) /* a cursor of any listing, with room to grow */

/* A name and its length, so that a reply's keys are written without a
 * strlen (dispatch's VERIFY reply writes eight per request). */
#define F(name) name, sizeof name - 1

const sch_field sch_fields[SF_COUNT] = {
    [SF_TENANT] = {F("tenant"), SCH_STR, TK_SLUG_MAX, 0},
    [SF_ACCOUNT] = {F("account"), SCH_STR, TK_SLUG_MAX, 0},
    [SF_USER] = {F("user"), SCH_STR, TK_SLUG_MAX, 0},
    [SF_KEY] = {F("key"), SCH_STR, TK_KEY_MAX, 0},
    [SF_NAME] = {F("name"), SCH_STR, TK_NAME_MAX, 0},
    [SF_DESCRIPTION] = {F("description"), SCH_STR, TK_DESC_MAX, 0},
    [SF_API_TOKENS] = {F("api_tokens"), SCH_BOOL, 0, 0},
    [SF_PORTAL] = {F("portal"), SCH_BOOL, 0, 0},
    [SF_LEVEL] = {F("level"), SCH_UINT, TK_MAX_LEVEL, 0},
    [SF_PERMISSIONS] = {F("permissions"), SCH_STRS, TK_MAX_ROLE_PERMS, TK_KEY_MAX},
    [SF_ROLES] = {F("roles"), SCH_STRS, TK_MAX_ROLES, TK_KEY_MAX},
    [SF_EXPIRES_AT] = {F("expires_at"), SCH_INT, 0, 0},
    [SF_KEY_ID] = {F("key_id"), SCH_STR, TK_ID_STR_LEN, 0},
    [SF_CLIENT_ID] = {F("client_id"), SCH_STR, NO_LIMIT, 0},
    [SF_AFTER] = {F("after"), SCH_STR, CURSOR_MAX, 0},
    [SF_LIMIT] = {F("limit"), SCH_UINT, 0, 0},
    [SF_SECRET] = {F("secret"), SCH_STR, NO_LIMIT, 0},
    [SF_MAX_TOKENS] = {F("max_tokens"), SCH_UINT, UINT32_MAX, 0},
    [SF_MAX_ROLES] = {F("max_roles"), SCH_UINT, UINT32_MAX, 0},
    [SF_MAX_KEYS] = {F("max_keys"), SCH_UINT, UINT32_MAX, 0},
    [SF_CREATE_RATE] = {F("create_rate"), SCH_UINT, UINT32_MAX, 0},
    [SF_CREATE_BURST] = {F("create_burst"), SCH_UINT, UINT32_MAX, 0},
    /* seconds from now: the server's clock sets expires_at (ten years at most) */
    [SF_EXPIRES_IN] = {F("expires_in"), SCH_UINT, 315360000, 0},
    /* a token listing's filter: in the description, client ID or creator */
    [SF_SEARCH] = {F("search"), SCH_STR, TK_DESC_MAX, 0},
    [SF_GATEWAY] = {F("gateway"), SCH_BOOL, 0, 0},
    [SF_VERSION] = {F("version"), SCH_UINT, 0, 0},
    [SF_ACTOR] = {F("actor"), SCH_STR, 16, 0},
    [SF_VALID] = {F("valid"), SCH_BOOL, 0, 0},
    [SF_REASON] = {F("reason"), SCH_STR, 16, 0},
    [SF_PERSONAL_KEY] = {F("personal_key"), SCH_STR, TK_SECRET_LEN, 0},
    [SF_CREATED_BY] = {F("created_by"), SCH_STR, TK_SLUG_MAX, 0},
    [SF_CREATED_AT] = {F("created_at"), SCH_INT, 0, 0},
    [SF_MORE] = {F("more"), SCH_BOOL, 0, 0},
    [SF_NEXT] = {F("next"), SCH_STR, CURSOR_MAX, 0},
    [SF_TOKENS] = {F("tokens"), SCH_ROWS, 0, 0},
    [SF_TENANTS] = {F("tenants"), SCH_ROWS, 0, 0},
    [SF_ACCOUNTS] = {F("accounts"), SCH_ROWS, 0, 0},
    [SF_USERS] = {F("users"), SCH_ROWS, 0, 0},
    [SF_KEYS] = {F("keys"), SCH_ROWS, 0, 0},
    [SF_PERM_ROWS] = {F("permissions"), SCH_ROWS, 0, 0},
    [SF_ROLE_ROWS] = {F("roles"), SCH_ROWS, 0, 0},
    [SF_ROLE_COUNT] = {F("role_count"), SCH_UINT, 0, 0},
    [SF_PERM_COUNT] = {F("permission_count"), SCH_UINT, 0, 0},
    [SF_TOKEN_COUNT] = {F("token_count"), SCH_UINT, 0, 0},
    [SF_KEY_COUNT] = {F("key_count"), SCH_UINT, 0, 0},
    /* A verified token's permissions: the union of its roles', so up to
     * a tenant's, more than one role's (SF_PERMISSIONS). */
    [SF_GRANTS] = {F("permissions"), SCH_STRS, TK_MAX_TENANT_PERMS, TK_KEY_MAX},
    [SF_URL] = {F("url"), SCH_STR, 0, 0},
    [SF_VIA] = {F("via"), SCH_STR, 16, 0},
    [SF_CSRF] = {F("csrf"), SCH_STR, 64, 0},
    [SF_RING_ROWS] = {F("keyring"), SCH_ROWS, 0, 0},
};

#define END {SF_COUNT, false}
#define R(f) {f, true}  /* required */
#define O(f) {f, false} /* optional */

/* Request fields every listing takes; the reply every listing gives. */
#define PAGE O(SF_AFTER), O(SF_LIMIT)
#define PAGED(rows) {R(rows), R(SF_MORE), O(SF_NEXT), END}

/* The rows. */
#define TOKEN_ROW                                                                           \
    {R(SF_CLIENT_ID), R(SF_DESCRIPTION), R(SF_ROLES), R(SF_CREATED_BY), R(SF_CREATED_AT),   \
     R(SF_EXPIRES_AT), END}
#define TENANT_ROW                                                                          \
    {R(SF_TENANT), R(SF_API_TOKENS), R(SF_MAX_TOKENS), R(SF_MAX_ROLES), R(SF_MAX_KEYS),     \
     R(SF_CREATE_RATE), R(SF_CREATE_BURST), R(SF_ROLE_COUNT), R(SF_PERM_COUNT), END}
#define USER_ROW {R(SF_USER), R(SF_ROLES), R(SF_PORTAL), R(SF_KEY_COUNT), END}

static const sch_op ops[] = {
    {OP_PING, "PING", SCH_ANYONE, SCH_INLINE, 0, 0, false, {END}, {R(SF_VERSION), END}, {END},
     NULL},
    {OP_AUTH, "AUTH", SCH_ANYONE, SCH_INLINE, 0, 0, false, {R(SF_KEY), END},
     {R(SF_ACTOR), O(SF_TENANT), O(SF_ACCOUNT), O(SF_USER), END}, {END},
     "actor: \"operator\", \"user\" or \"gateway\""},
    {OP_VERIFY, "VERIFY", SCH_ANYONE, SCH_INLINE, 0, 0, false,
     {R(SF_SECRET), O(SF_CLIENT_ID), END},
     {R(SF_VALID), R(SF_REASON), O(SF_CLIENT_ID), O(SF_TENANT), O(SF_ACCOUNT), O(SF_ROLES),
      O(SF_GRANTS), O(SF_EXPIRES_AT), END},
     {END}, "the gateway key when the server requires it; see VERIFY below"},
    {OP_TENANT_CREATE, "TENANT_CREATE", SCH_OPERATOR, SCH_WRITE, ENG_TENANT_CREATE, 0, false,
     {R(SF_TENANT), END}, {END}, {END}, NULL},
    {OP_TENANT_SET, "TENANT_SET", SCH_OPERATOR, SCH_WRITE, ENG_TENANT_SET, 0, false,
     {R(SF_TENANT), O(SF_API_TOKENS), O(SF_MAX_TOKENS), O(SF_MAX_ROLES), O(SF_MAX_KEYS),
      O(SF_CREATE_RATE), O(SF_CREATE_BURST), END},
     {END}, {END}, "at least one field besides tenant; a limit of 0 is none"},
    {OP_PERM_PUT, "PERM_PUT", SCH_OPERATOR, SCH_WRITE, ENG_PERM_PUT, 0, false,
     {R(SF_TENANT), R(SF_KEY), O(SF_DESCRIPTION), END}, {END}, {END}, NULL},
    {OP_ROLE_PUT, "ROLE_PUT", SCH_OPERATOR, SCH_WRITE, ENG_ROLE_PUT, 0, false,
     {R(SF_TENANT), R(SF_KEY), O(SF_NAME), R(SF_LEVEL), R(SF_PERMISSIONS), END}, {END}, {END},
     "an upsert; permissions it names that do not exist are created"},
    {OP_ROLE_DELETE, "ROLE_DELETE", SCH_OPERATOR, SCH_WRITE, ENG_ROLE_DELETE, 0, false,
     {R(SF_TENANT), R(SF_KEY), END}, {END}, {END}, NULL},
    {OP_ACCOUNT_CREATE, "ACCOUNT_CREATE", SCH_OPERATOR, SCH_WRITE, ENG_ACCOUNT_CREATE, 0, false,
     {R(SF_TENANT), R(SF_ACCOUNT), END}, {END}, {END}, NULL},
    {OP_USER_CREATE, "USER_CREATE", SCH_OPERATOR, SCH_WRITE, ENG_USER_CREATE, 0, false,
     {R(SF_TENANT), R(SF_ACCOUNT), R(SF_USER), R(SF_ROLES), O(SF_PORTAL), END},
     {R(SF_KEY_ID), R(SF_PERSONAL_KEY), END}, {END}, "the user's first personal key, shown once"},
    {OP_USER_SET, "USER_SET", SCH_OPERATOR, SCH_WRITE, ENG_USER_SET, 0, false,
     {R(SF_TENANT), R(SF_ACCOUNT), R(SF_USER), O(SF_ROLES), O(SF_PORTAL), END}, {END}, {END},
     "an absent field is left as it is"},
    {OP_KEY_CREATE, "KEY_CREATE", SCH_OPERATOR, SCH_WRITE, ENG_KEY_CREATE, 0, false,
     {R(SF_TENANT), R(SF_ACCOUNT), R(SF_USER), O(SF_EXPIRES_AT), O(SF_EXPIRES_IN), END},
     {R(SF_KEY_ID), R(SF_PERSONAL_KEY), END}, {END},
     "shown once; expires_at or expires_in (seconds from now), not both"},
    {OP_KEY_DELETE, "KEY_DELETE", SCH_OPERATOR, SCH_WRITE, ENG_KEY_DELETE, 0, false,
     {R(SF_KEY_ID), END}, {END}, {END}, NULL},
    {OP_TOKEN_CREATE, "TOKEN_CREATE", SCH_USER, SCH_WRITE, ENG_TOKEN_CREATE, 0, false,
     {O(SF_DESCRIPTION), R(SF_ROLES), O(SF_EXPIRES_AT), O(SF_EXPIRES_IN), END},
     {R(SF_CLIENT_ID), R(SF_SECRET), R(SF_EXPIRES_AT), END}, {END},
     "the secret, shown once; expires_at or expires_in (seconds from now), not both"},
    {OP_TOKEN_LIST, "TOKEN_LIST", SCH_BOTH, SCH_READ, 0, ENG_TOKENS, false,
     {O(SF_TENANT), O(SF_ACCOUNT), PAGE, O(SF_SEARCH), END}, PAGED(SF_TOKENS), TOKEN_ROW,
     "the operator names tenant and account; search: in the description, client ID or "
     "creator (ASCII case-insensitive)"},
    {OP_TOKEN_DELETE, "TOKEN_DELETE", SCH_BOTH, SCH_WRITE, ENG_TOKEN_DELETE, 0, false,
     {R(SF_CLIENT_ID), END}, {END}, {END}, "irreversible"},
    {OP_TOKEN_GET, "TOKEN_GET", SCH_BOTH, SCH_READ, 0, ENG_TOKENS, true, {R(SF_CLIENT_ID), END},
     {END}, TOKEN_ROW, NULL},
    {OP_TOKEN_SET, "TOKEN_SET", SCH_BOTH, SCH_WRITE, ENG_TOKEN_SET, 0, false,
     {R(SF_CLIENT_ID), R(SF_DESCRIPTION), END}, {END}, {END},
     "the description; nothing else of a token changes"},
    {OP_TENANT_LIST, "TENANT_LIST", SCH_OPERATOR, SCH_READ, 0, ENG_TENANTS, false, {PAGE, END},
     PAGED(SF_TENANTS), TENANT_ROW, NULL},
    {OP_TENANT_GET, "TENANT_GET", SCH_BOTH, SCH_READ, 0, ENG_TENANTS, true, {O(SF_TENANT), END},
     {END}, TENANT_ROW, "a user gets its own tenant"},
    {OP_TENANT_DELETE, "TENANT_DELETE", SCH_OPERATOR, SCH_WRITE, ENG_TENANT_DELETE, 0, false,
     {R(SF_TENANT), END}, {END}, {END}, "everything of it ends; irreversible"},
    {OP_PERM_LIST, "PERM_LIST", SCH_BOTH, SCH_READ, 0, ENG_PERMS, false,
     {O(SF_TENANT), PAGE, END}, PAGED(SF_PERM_ROWS), {R(SF_KEY), R(SF_DESCRIPTION), END}, NULL},
    {OP_PERM_DELETE, "PERM_DELETE", SCH_OPERATOR, SCH_WRITE, ENG_PERM_DELETE, 0, false,
     {R(SF_TENANT), R(SF_KEY), END}, {END}, {END}, "drops out of every role"},
    {OP_ROLE_LIST, "ROLE_LIST", SCH_BOTH, SCH_READ, 0, ENG_ROLES, false,
     {O(SF_TENANT), PAGE, END}, PAGED(SF_ROLE_ROWS),
     {R(SF_KEY), R(SF_NAME), R(SF_LEVEL), R(SF_PERMISSIONS), END}, NULL},
    {OP_ACCOUNT_LIST, "ACCOUNT_LIST", SCH_OPERATOR, SCH_READ, 0, ENG_ACCOUNTS, false,
     {R(SF_TENANT), PAGE, END}, PAGED(SF_ACCOUNTS), {R(SF_ACCOUNT), R(SF_TOKEN_COUNT), END},
     NULL},
    {OP_ACCOUNT_DELETE, "ACCOUNT_DELETE", SCH_OPERATOR, SCH_WRITE, ENG_ACCOUNT_DELETE, 0, false,
     {R(SF_TENANT), R(SF_ACCOUNT), END}, {END}, {END},
     "its tokens, users and keys end; irreversible"},
    {OP_USER_LIST, "USER_LIST", SCH_BOTH, SCH_READ, 0, ENG_USERS, false,
     {O(SF_TENANT), O(SF_ACCOUNT), PAGE, END}, PAGED(SF_USERS), USER_ROW, NULL},
    {OP_USER_GET, "USER_GET", SCH_BOTH, SCH_READ, 0, ENG_USERS, true,
     {O(SF_TENANT), O(SF_ACCOUNT), R(SF_USER), END}, {END}, USER_ROW, NULL},
    {OP_USER_DELETE, "USER_DELETE", SCH_OPERATOR, SCH_WRITE, ENG_USER_DELETE, 0, false,
     {R(SF_TENANT), R(SF_ACCOUNT), R(SF_USER), END}, {END}, {END},
     "its personal keys end; its tokens stay (they belong to the account)"},
    {OP_KEY_LIST, "KEY_LIST", SCH_BOTH, SCH_READ, 0, ENG_KEYS, false,
     {O(SF_TENANT), O(SF_ACCOUNT), O(SF_USER), PAGE, END}, PAGED(SF_KEYS),
     {R(SF_KEY_ID), R(SF_CREATED_AT), R(SF_EXPIRES_AT), END}, "a user lists its own"},
    {OP_PORTAL_SESSION_CREATE, "PORTAL_SESSION_CREATE", SCH_OPERATOR, SCH_PORTAL, 0, 0, false,
     {R(SF_TENANT), R(SF_ACCOUNT), R(SF_USER), END}, {R(SF_URL), R(SF_EXPIRES_AT), END}, {END},
     "HTTP only: the page's one-time link for a user with the portal flag (docs/portal.md)"},
    {OP_PORTAL_SESSION_GET, "PORTAL_SESSION_GET", SCH_BOTH, SCH_PORTAL, 0, 0, false, {END},
     {R(SF_ACTOR), R(SF_VIA), O(SF_TENANT), O(SF_ACCOUNT), O(SF_USER), O(SF_EXPIRES_AT),
      O(SF_CSRF), END},
     {END}, "HTTP only: who the page acts as; csrf for a session"},
    {OP_PORTAL_SESSION_DELETE, "PORTAL_SESSION_DELETE", SCH_USER, SCH_PORTAL, 0, 0, false,
     {END}, {END}, {END}, "HTTP only: signs the session out"},
    {OP_KEYRING_ADD, "KEYRING_ADD", SCH_OPERATOR, SCH_WRITE, ENG_KEYRING_ADD, 0, false,
     {R(SF_NAME), O(SF_GATEWAY), END}, {R(SF_KEY), END}, {END},
     "a named operator key (or gateway key: gateway true), acting at once; the key is shown "
     "once, only its hash is kept"},
    {OP_KEYRING_LIST, "KEYRING_LIST", SCH_OPERATOR, SCH_READ, 0, ENG_KEYRING, false, {PAGE, END},
     PAGED(SF_RING_ROWS), {R(SF_NAME), R(SF_GATEWAY), R(SF_CREATED_AT), END},
     "names only; \"initial\" is DIR/operator.key's (created_at 0)"},
    {OP_KEYRING_REMOVE, "KEYRING_REMOVE", SCH_OPERATOR, SCH_WRITE, ENG_KEYRING_REMOVE, 0, false,
     {R(SF_NAME), END}, {END}, {END},
     "it acts no more, at once, on every connection; the last operator key stays"},
};

#define NOPS (sizeof ops / sizeof ops[0])

/* The JSON API's resources. Paths under /v1/tenants/{tenant} are the
 * operator's (it names the scope); the short ones (/v1/tokens, /v1/roles,
 * ...) are a user's own scope, where the operator names it in the body or
 * the query instead. */
#define TA "/v1/tenants/{tenant}/accounts/{account}"
static const sch_route routes[] = {
    {"GET", "/v1/ping", OP_PING, 200, "the protocol version (no credential)"},
    {"GET", "/v1/whoami", OP_AUTH, 200, "who the Bearer credential is"},
    {"POST", "/v1/verify", OP_VERIFY, 200, "verify a token, answered in JSON"},
    {"POST", "/v1/tenants", OP_TENANT_CREATE, 201, "create a tenant"},
    {"GET", "/v1/tenants", OP_TENANT_LIST, 200, "list the tenants"},
    {"GET", "/v1/tenants/{tenant}", OP_TENANT_GET, 200, "a tenant"},
    {"PATCH", "/v1/tenants/{tenant}", OP_TENANT_SET, 200,
     "switch API tokens on or off, set the limits"},
    {"DELETE", "/v1/tenants/{tenant}", OP_TENANT_DELETE, 200,
     "delete a tenant and everything of it (irreversible)"},
    {"GET", "/v1/tenants/{tenant}/permissions", OP_PERM_LIST, 200, "list the permissions"},
    {"PUT", "/v1/tenants/{tenant}/permissions/{key}", OP_PERM_PUT, 200,
     "create or describe a permission"},
    {"DELETE", "/v1/tenants/{tenant}/permissions/{key}", OP_PERM_DELETE, 200,
     "delete a permission (it drops out of every role)"},
    {"GET", "/v1/tenants/{tenant}/roles", OP_ROLE_LIST, 200, "list the roles"},
    {"PUT", "/v1/tenants/{tenant}/roles/{key}", OP_ROLE_PUT, 200, "create or replace a role"},
    {"DELETE", "/v1/tenants/{tenant}/roles/{key}", OP_ROLE_DELETE, 200, "delete a role"},
    {"GET", "/v1/tenants/{tenant}/accounts", OP_ACCOUNT_LIST, 200, "list the accounts"},
    {"POST", "/v1/tenants/{tenant}/accounts", OP_ACCOUNT_CREATE, 201, "create an account"},
    {"DELETE", TA, OP_ACCOUNT_DELETE, 200,
     "delete an account: its tokens, users and keys end (irreversible)"},
    {"GET", TA "/users", OP_USER_LIST, 200, "list an account's users"},
    {"POST", TA "/users", OP_USER_CREATE, 201, "create a user and its first personal key"},
    {"GET", TA "/users/{user}", OP_USER_GET, 200, "a user"},
    {"PATCH", TA "/users/{user}", OP_USER_SET, 200, "change a user's roles or portal flag"},
    {"DELETE", TA "/users/{user}", OP_USER_DELETE, 200,
     "delete a user (its keys end, its tokens stay)"},
    {"GET", TA "/users/{user}/keys", OP_KEY_LIST, 200, "list a user's personal keys"},
    {"POST", TA "/users/{user}/keys", OP_KEY_CREATE, 201, "create a personal key"},
    {"GET", TA "/tokens", OP_TOKEN_LIST, 200, "list an account's tokens"},
    {"DELETE", "/v1/keys/{key_id}", OP_KEY_DELETE, 200, "delete a personal key"},
    {"GET", "/v1/keys", OP_KEY_LIST, 200, "list your own personal keys"},
    {"GET", "/v1/tenant", OP_TENANT_GET, 200, "your own tenant"},
    {"GET", "/v1/permissions", OP_PERM_LIST, 200, "your tenant's permissions"},
    {"GET", "/v1/roles", OP_ROLE_LIST, 200, "your tenant's roles"},
    {"GET", "/v1/users", OP_USER_LIST, 200, "your account's users"},
    {"GET", "/v1/users/{user}", OP_USER_GET, 200, "a user of your account (yourself)"},
    {"POST", "/v1/tokens", OP_TOKEN_CREATE, 201,
     "create a token (the secret is in this reply only)"},
    {"GET", "/v1/tokens", OP_TOKEN_LIST, 200, "list your account's tokens"},
    {"GET", "/v1/tokens/{client_id}", OP_TOKEN_GET, 200, "a token's metadata"},
    {"PATCH", "/v1/tokens/{client_id}", OP_TOKEN_SET, 200, "change a token's description"},
    {"DELETE", "/v1/tokens/{client_id}", OP_TOKEN_DELETE, 200,
     "delete a token (irreversible; effective before this reply)"},
    {"POST", "/v1/portal/sessions", OP_PORTAL_SESSION_CREATE, 201,
     "a one-time link to the self-service page for one user"},
    {"GET", "/v1/portal/session", OP_PORTAL_SESSION_GET, 200,
     "who the page acts as (a session's cookie or a Bearer key)"},
    {"DELETE", "/v1/portal/session", OP_PORTAL_SESSION_DELETE, 200, "sign the session out"},
    {"POST", "/v1/keyring", OP_KEYRING_ADD, 201,
     "add a named operator or gateway key (shown in this reply only)"},
    {"GET", "/v1/keyring", OP_KEYRING_LIST, 200, "list the keyring's names"},
    {"DELETE", "/v1/keyring/{name}", OP_KEYRING_REMOVE, 200,
     "remove a key: it acts no more, at once"},
};
#undef TA

const sch_route *sch_routes(size_t *n)
{
    *n = sizeof routes / sizeof routes[0];
    return routes;
}

/* ops is in opcode order (tests/net/test_schema.c checks it): a binary
 * search, five steps for every frame's lookup. */
const sch_op *sch_find(uint16_t code)
{
    size_t lo = 0, hi = NOPS;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ops[mid].code == code)
            return &ops[mid];
        if (ops[mid].code < code)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const sch_op *sch_named(const char *name)
{
    for (size_t i = 0; i < NOPS; i++)
        if (strcmp(ops[i].name, name) == 0)
            return &ops[i];
    return NULL;
}

const sch_op *sch_all(size_t *n)
{
    *n = NOPS;
    return ops;
}

static const sch_field *sch_field_of(sch_fid f)
{
    return &sch_fields[f];
}

const sch_use *sch_find_use(const sch_use *uses, const char *name, size_t n)
{
    for (const sch_use *u = uses; SCH_USED(u); u++) {
        const sch_field *f = sch_field_of(u->f);
        if (f->len == n && memcmp(f->name, name, n) == 0)
            return u;
    }
    return NULL;
}

const sch_use *sch_reply(const sch_op *op)
{
    return op->get ? op->row : op->reply;
}

/* ---- the docs ------------------------------------------------------------ */

static const char *type_doc(const sch_field *f, const char *row)
{
    switch (f->type) {
    case SCH_STR: return "str";
    case SCH_BOOL: return "bool";
    case SCH_UINT: return "uint";
    case SCH_INT: return "int";
    case SCH_STRS: return "[str]";
    case SCH_ROWS: return row;
    }
    return "?";
}

static void fields_doc(FILE *out, const sch_use *uses, const char *row)
{
    fputs("`{", out);
    for (const sch_use *u = uses; SCH_USED(u); u++) {
        const sch_field *f = sch_field_of(u->f);
        char rows[40];
        snprintf(rows, sizeof rows, "[%s]", row ? row : "row");
        fprintf(out, "%s\"%s\"%s: %s", u == uses ? "" : ", ", f->name, u->required ? "" : "?",
                type_doc(f, rows));
    }
    fputs("}`", out);
}

static const char *who_doc(sch_who w)
{
    switch (w) {
    case SCH_ANYONE: return "anyone";
    case SCH_OPERATOR: return "operator";
    case SCH_USER: return "user";
    case SCH_BOTH: return "user, operator";
    }
    return "?";
}

/* The name a listing's row is called in the docs: its rows field's name
 * without the plural's s ("tokens" -> "token"; "keyring" stays). */
static void row_name(const sch_op *op, char *out, size_t cap)
{
    snprintf(out, cap, "row");
    for (const sch_use *u = op->reply; SCH_USED(u); u++) {
        const sch_field *f = sch_field_of(u->f);
        if (f->type == SCH_ROWS) {
            size_t n = strlen(f->name);
            bool plural = n > 1 && f->name[n - 1] == 's';
            snprintf(out, cap, "%.*s", (int)(plural ? n - 1 : n), f->name);
        }
    }
}

void sch_markdown(FILE *out)
{
    fputs("| opcode | name | who | request | reply | notes |\n|---|---|---|---|---|---|\n", out);
    for (size_t i = 0; i < NOPS; i++) {
        const sch_op *op = &ops[i];
        char row[32];
        row_name(op, row, sizeof row);
        fprintf(out, "| 0x%02x | %s | %s | ", op->code, op->name, who_doc(op->who));
        fields_doc(out, op->req, NULL);
        fputs(" | ", out);
        if (op->code == OP_VERIFY)
            fputs("see VERIFY below", out);
        else
            fields_doc(out, sch_reply(op), op->get ? NULL : row);
        fprintf(out, " | %s |\n", op->note ? op->note : "");
    }
    fputs("\nThe rows of the listings (a get's reply is its row):\n\n"
          "| row | of | fields |\n|---|---|---|\n", out);
    for (size_t i = 0; i < NOPS; i++) {
        const sch_op *op = &ops[i];
        if (op->run != SCH_READ || op->get)
            continue;
        char row[32];
        row_name(op, row, sizeof row);
        fprintf(out, "| `%s` | %s | ", row, op->name);
        fields_doc(out, op->row, NULL);
        fputs(" |\n", out);
    }
}
