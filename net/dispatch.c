/*
 * dispatch.c - request bodies into engine requests and answers into reply
 * bodies; see dispatch.h.
 *
 * One table says which fields each opcode takes (and which it requires),
 * one table says each field's wire type and limit, and one decoder walks the
 * map against them. So the strictness rules (unknown key, duplicate, wrong
 * type, bad UTF-8, over-long string, over-long array, missing field) live in
 * one place and hold for every opcode alike; the per-opcode code only moves
 * decoded values into the engine's request.
 */
#include "net/dispatch.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "core/xmalloc.h"
#include "net/proto.h"

/* ---- fields ------------------------------------------------------------ */

typedef enum fid {
    F_TENANT,
    F_ACCOUNT,
    F_USER,
    F_KEY,
    F_NAME,
    F_DESCRIPTION,
    F_API_TOKENS,
    F_PORTAL,
    F_LEVEL,
    F_PERMISSIONS,
    F_ROLES,
    F_EXPIRES_AT,
    F_KEY_ID,
    F_CLIENT_ID,
    F_AFTER,
    F_LIMIT,
    F_SECRET,
    F_MAX_TOKENS,
    F_MAX_ROLES,
    F_MAX_KEYS,
    F_CREATE_RATE,
    F_CREATE_BURST,
    NFIELDS
} fid;

typedef enum ftype { T_STR, T_BOOL, T_UINT, T_INT, T_STRS } ftype;

#define NO_LIMIT 0

static const struct field {
    const char *name;
    ftype type;
    uint32_t max;      /* T_STR: bytes; T_STRS: elements */
    uint32_t elem_max; /* T_STRS: bytes per element */
} FIELDS[NFIELDS] = {
    [F_TENANT] = {"tenant", T_STR, TK_SLUG_MAX, 0},
    [F_ACCOUNT] = {"account", T_STR, TK_SLUG_MAX, 0},
    [F_USER] = {"user", T_STR, TK_SLUG_MAX, 0},
    [F_KEY] = {"key", T_STR, TK_KEY_MAX, 0},
    [F_NAME] = {"name", T_STR, TK_NAME_MAX, 0},
    [F_DESCRIPTION] = {"description", T_STR, TK_DESC_MAX, 0},
    [F_API_TOKENS] = {"api_tokens", T_BOOL, 0, 0},
    [F_PORTAL] = {"portal", T_BOOL, 0, 0},
    [F_LEVEL] = {"level", T_UINT, 0, 0},
    [F_PERMISSIONS] = {"permissions", T_STRS, TK_MAX_ROLE_PERMS, TK_KEY_MAX},
    [F_ROLES] = {"roles", T_STRS, TK_MAX_ROLES, TK_KEY_MAX},
    [F_EXPIRES_AT] = {"expires_at", T_INT, 0, 0},
    [F_KEY_ID] = {"key_id", T_STR, TK_ID_STR_LEN, 0},
    [F_CLIENT_ID] = {"client_id", T_STR, NO_LIMIT, 0},
    [F_AFTER] = {"after", T_STR, DSP_CURSOR_MAX, 0},
    [F_LIMIT] = {"limit", T_UINT, 0, 0},
    [F_SECRET] = {"secret", T_STR, NO_LIMIT, 0},
    [F_MAX_TOKENS] = {"max_tokens", T_UINT, 0, 0},
    [F_MAX_ROLES] = {"max_roles", T_UINT, 0, 0},
    [F_MAX_KEYS] = {"max_keys", T_UINT, 0, 0},
    [F_CREATE_RATE] = {"create_rate", T_UINT, 0, 0},
    [F_CREATE_BURST] = {"create_burst", T_UINT, 0, 0},
};

#define B(f) (1u << (f))

/* Fields an opcode accepts, and those it requires. */
typedef struct opspec {
    uint32_t allowed, required;
} opspec;

static bool op_spec(uint16_t op, opspec *s)
{
    const uint32_t tn = B(F_TENANT), ac = B(F_ACCOUNT), us = B(F_USER);
    switch (op) {
    case OP_PING: *s = (opspec){0, 0}; break;
    case OP_AUTH: *s = (opspec){B(F_KEY), B(F_KEY)}; break;
    case OP_VERIFY: *s = (opspec){B(F_SECRET) | B(F_CLIENT_ID), B(F_SECRET)}; break;
    case OP_TENANT_CREATE: *s = (opspec){tn, tn}; break;
    case OP_TENANT_SET:
        *s = (opspec){tn | B(F_API_TOKENS) | B(F_MAX_TOKENS) | B(F_MAX_ROLES) | B(F_MAX_KEYS)
                          | B(F_CREATE_RATE) | B(F_CREATE_BURST),
                      tn};
        break;
    case OP_PERM_PUT: *s = (opspec){tn | B(F_KEY) | B(F_DESCRIPTION), tn | B(F_KEY)}; break;
    case OP_ROLE_PUT:
        *s = (opspec){tn | B(F_KEY) | B(F_NAME) | B(F_LEVEL) | B(F_PERMISSIONS),
                      tn | B(F_KEY) | B(F_LEVEL) | B(F_PERMISSIONS)};
        break;
    case OP_ROLE_DELETE: *s = (opspec){tn | B(F_KEY), tn | B(F_KEY)}; break;
    case OP_ACCOUNT_CREATE: *s = (opspec){tn | ac, tn | ac}; break;
    case OP_USER_CREATE:
        *s = (opspec){tn | ac | us | B(F_ROLES) | B(F_PORTAL), tn | ac | us | B(F_ROLES)};
        break;
    case OP_USER_SET: *s = (opspec){tn | ac | us | B(F_ROLES) | B(F_PORTAL), tn | ac | us}; break;
    case OP_KEY_CREATE: *s = (opspec){tn | ac | us | B(F_EXPIRES_AT), tn | ac | us}; break;
    case OP_KEY_DELETE: *s = (opspec){B(F_KEY_ID), B(F_KEY_ID)}; break;
    case OP_TOKEN_CREATE:
        *s = (opspec){B(F_DESCRIPTION) | B(F_ROLES) | B(F_EXPIRES_AT), B(F_ROLES)};
        break;
    case OP_TOKEN_LIST: *s = (opspec){tn | ac | B(F_AFTER) | B(F_LIMIT), 0}; break;
    case OP_TOKEN_DELETE: *s = (opspec){B(F_CLIENT_ID), B(F_CLIENT_ID)}; break;
    default: return false;
    }
    return true;
}

dsp_class dsp_classify(uint16_t op)
{
    switch (op) {
    case OP_PING:
    case OP_AUTH:
    case OP_VERIFY: return DSP_INLINE;
    case OP_TOKEN_LIST: return DSP_LIST;
    default: break;
    }
    opspec s;
    return op_spec(op, &s) ? DSP_WRITE : DSP_UNKNOWN;
}

/* Decoded values, valid where the bit is set in seen. Only the slots of
 * the fields present are written: a verify decodes without clearing the
 * rest. */
typedef struct fields {
    uint32_t seen;
    tk_str s[NFIELDS];
    bool b[NFIELDS];
    uint64_t u[NFIELDS];
    int64_t i[NFIELDS];
    tk_str *items;     /* where the one array field goes (NULL: none allowed) */
    uint32_t nitems;
} fields;

static int fail(dsp_err *err, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(dsp_err *err, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return rc;
}

/* A field name from the peer, shown in an error only if it is plainly a
 * name (so an error reply never echoes arbitrary bytes). */
static const char *shown_name(const char *s, size_t n, char *buf, size_t cap)
{
    if (n == 0 || n >= cap)
        return "(not shown)";
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_'))
            return "(not shown)";
    memcpy(buf, s, n);
    buf[n] = '\0';
    return buf;
}

static int find_field(const char *s, size_t n)
{
    for (int f = 0; f < NFIELDS; f++)
        if (strlen(FIELDS[f].name) == n && memcmp(FIELDS[f].name, s, n) == 0)
            return f;
    return -1;
}

static int read_str(mpr *r, uint32_t max, tk_str *out, const char *name, dsp_err *err)
{
    if (mpr_str(r, &out->p, &out->n))
        return fail(err, TK_EINVAL, "field \"%s\": expected a string", name);
    if (max != NO_LIMIT && out->n > max) {
        return fail(err, TK_EINVAL, "field \"%s\": longer than %u bytes", name, max);
    }
    if (!mpr_utf8_valid(out->p, out->n))
        return fail(err, TK_EINVAL, "field \"%s\": not valid UTF-8", name);
    return 0;
}

static int read_value(mpr *r, int f, fields *fs, dsp_err *err)
{
    const struct field *d = &FIELDS[f];
    switch (d->type) {
    case T_STR: return read_str(r, d->max, &fs->s[f], d->name, err);
    case T_BOOL:
        if (mpr_bool(r, &fs->b[f]))
            return fail(err, TK_EINVAL, "field \"%s\": expected a boolean", d->name);
        return 0;
    case T_UINT:
        if (mpr_uint(r, &fs->u[f]))
            return fail(err, TK_EINVAL, "field \"%s\": expected an unsigned integer", d->name);
        return 0;
    case T_INT:
        if (mpr_int(r, &fs->i[f]))
            return fail(err, TK_EINVAL, "field \"%s\": expected an integer", d->name);
        return 0;
    case T_STRS: {
        uint32_t n;
        if (!fs->items) /* no opcode without an items buffer allows an array */
            return fail(err, TK_EINVAL, "field \"%s\": not expected", d->name);
        if (mpr_array(r, &n))
            return fail(err, TK_EINVAL, "field \"%s\": expected an array of strings", d->name);
        if (n > d->max) {
            return fail(err, TK_ELIMIT, "field \"%s\": more than %u elements", d->name, d->max);
        }
        for (uint32_t k = 0; k < n; k++) {
            int rc = read_str(r, d->elem_max, &fs->items[k], d->name, err);
            if (rc)
                return rc;
        }
        fs->nitems = n;
        return 0;
    }
    }
    return TK_EINVAL;
}

/* Decodes body against op's fields into fs. */
static int decode(uint16_t op, const uint8_t *body, size_t len, fields *fs, dsp_err *err)
{
    opspec spec;
    mpr r;
    uint32_t n = 0;
    char shown[24];

    fs->seen = 0;
    fs->nitems = 0;
    if (!op_spec(op, &spec))
        return fail(err, TK_EOPCODE, "%s", "unknown opcode");
    mpr_init(&r, body, len);
    if (len > 0 && mpr_map(&r, &n))
        return fail(err, TK_EINVAL, "%s", "the body is not a MessagePack map");
    for (uint32_t k = 0; k < n; k++) {
        const char *name;
        size_t nlen;
        if (mpr_str(&r, &name, &nlen))
            return fail(err, TK_EINVAL, "%s", "a map key is not a string");
        int f = find_field(name, nlen);
        if (f < 0 || !(spec.allowed & B(f)))
            return fail(err, TK_EINVAL, "unknown field \"%s\"",
                        shown_name(name, nlen, shown, sizeof shown));
        if (fs->seen & B(f))
            return fail(err, TK_EINVAL, "field \"%s\" given twice", FIELDS[f].name);
        int rc = read_value(&r, f, fs, err);
        if (rc)
            return rc;
        fs->seen |= B(f);
    }
    if (len > 0 && !mpr_done(&r))
        return fail(err, TK_EINVAL, "%s", "bytes after the body's map");
    uint32_t missing = spec.required & ~fs->seen;
    for (int f = 0; f < NFIELDS; f++)
        if (missing & B(f))
            return fail(err, TK_EINVAL, "missing field \"%s\"", FIELDS[f].name);
    return 0;
}

static tk_str opt_str(const fields *fs, int f)
{
    return (fs->seen & B(f)) ? fs->s[f] : (tk_str){"", 0};
}

/* ---- requests ---------------------------------------------------------- */

int dsp_ping(const uint8_t *body, size_t len, dsp_err *err)
{
    fields fs;
    fs.items = NULL;
    return decode(OP_PING, body, len, &fs, err);
}

int dsp_auth(const uint8_t *body, size_t len, tk_str *key, dsp_err *err)
{
    fields fs;
    fs.items = NULL;
    int rc = decode(OP_AUTH, body, len, &fs, err);
    if (rc == 0)
        *key = fs.s[F_KEY];
    return rc;
}

int dsp_verify_req(const uint8_t *body, size_t len, dsp_verify *out, dsp_err *err)
{
    fields fs;
    fs.items = NULL;
    int rc = decode(OP_VERIFY, body, len, &fs, err);
    if (rc)
        return rc;
    out->secret = fs.s[F_SECRET];
    out->has_client_id = (fs.seen & B(F_CLIENT_ID)) != 0;
    out->client_id_ok = out->has_client_id
                        && secret_id_parse(fs.s[F_CLIENT_ID].p, fs.s[F_CLIENT_ID].n,
                                           &out->client_id) == 0;
    return 0;
}

static eng_op eng_op_of(uint16_t op)
{
    switch (op) {
    case OP_TENANT_CREATE: return ENG_TENANT_CREATE;
    case OP_TENANT_SET: return ENG_TENANT_SET;
    case OP_PERM_PUT: return ENG_PERM_PUT;
    case OP_ROLE_PUT: return ENG_ROLE_PUT;
    case OP_ROLE_DELETE: return ENG_ROLE_DELETE;
    case OP_ACCOUNT_CREATE: return ENG_ACCOUNT_CREATE;
    case OP_USER_CREATE: return ENG_USER_CREATE;
    case OP_USER_SET: return ENG_USER_SET;
    case OP_KEY_CREATE: return ENG_KEY_CREATE;
    case OP_KEY_DELETE: return ENG_KEY_DELETE;
    case OP_TOKEN_CREATE: return ENG_TOKEN_CREATE;
    default: return ENG_TOKEN_DELETE; /* OP_TOKEN_DELETE; callers checked the class */
    }
}

static int parse_id(const fields *fs, int f, tk_id *out, dsp_err *err)
{
    if (secret_id_parse(fs->s[f].p, fs->s[f].n, out))
        return fail(err, TK_EINVAL, "field \"%s\": not a UUID", FIELDS[f].name);
    return 0;
}

int dsp_write_req(uint16_t op, const uint8_t *body, size_t len, eng_req *r, dsp_err *err)
{
    static const tk_actor nobody;
    fields fs;
    if (dsp_classify(op) != DSP_WRITE)
        return fail(err, TK_EOPCODE, "%s", "not a management change");
    eng_req_init(r, eng_op_of(op), &nobody);
    fs.items = r->items;
    int rc = decode(op, body, len, &fs, err);
    if (rc)
        return rc;
    r->tenant = opt_str(&fs, F_TENANT);
    r->account = opt_str(&fs, F_ACCOUNT);
    r->user = opt_str(&fs, F_USER);
    r->key = opt_str(&fs, F_KEY);
    r->desc = opt_str(&fs, F_DESCRIPTION);
    /* A role's display name defaults to its key. */
    r->name = (fs.seen & B(F_NAME)) ? fs.s[F_NAME] : r->key;
    r->nitems = fs.nitems;
    r->has_items = (fs.seen & (B(F_ROLES) | B(F_PERMISSIONS))) != 0;
    if (fs.seen & B(F_API_TOKENS))
        r->flag = fs.b[F_API_TOKENS];
    if (fs.seen & B(F_PORTAL))
        r->flag = fs.b[F_PORTAL];
    else if (op == OP_USER_CREATE)
        r->flag = 0;
    /* TENANT_SET's limits: 0 is "no limit"; at most 2^32-1. */
    const struct {
        int f;
        unsigned bit;
        uint32_t *to;
    } lims[] = {
        {F_MAX_TOKENS, ENG_LIM_TOKENS, &r->limits.tokens},
        {F_MAX_ROLES, ENG_LIM_ROLES, &r->limits.roles},
        {F_MAX_KEYS, ENG_LIM_KEYS, &r->limits.keys},
        {F_CREATE_RATE, ENG_LIM_RATE, &r->limits.rate},
        {F_CREATE_BURST, ENG_LIM_BURST, &r->limits.burst},
    };
    for (size_t i = 0; i < sizeof lims / sizeof lims[0]; i++) {
        if (!(fs.seen & B(lims[i].f)))
            continue;
        if (fs.u[lims[i].f] > UINT32_MAX)
            return fail(err, TK_EINVAL, "field \"%s\": above 4294967295", FIELDS[lims[i].f].name);
        *lims[i].to = (uint32_t)fs.u[lims[i].f];
        r->limits_set |= lims[i].bit;
    }
    if (fs.seen & B(F_LEVEL)) {
        if (fs.u[F_LEVEL] > TK_MAX_LEVEL)
            return fail(err, TK_EINVAL, "field \"%s\": above 65535", "level");
        r->level = (uint32_t)fs.u[F_LEVEL];
    }
    if (fs.seen & B(F_EXPIRES_AT)) {
        if (fs.i[F_EXPIRES_AT] < 0)
            return fail(err, TK_EINVAL, "field \"%s\": negative", "expires_at");
        r->expires = fs.i[F_EXPIRES_AT];
    }
    if (fs.seen & B(F_KEY_ID))
        return parse_id(&fs, F_KEY_ID, &r->id, err);
    if (fs.seen & B(F_CLIENT_ID))
        return parse_id(&fs, F_CLIENT_ID, &r->id, err);
    return 0;
}

int dsp_list_req(const uint8_t *body, size_t len, dsp_list *out, dsp_err *err)
{
    fields fs;
    fs.items = NULL;
    int rc = decode(OP_TOKEN_LIST, body, len, &fs, err);
    if (rc)
        return rc;
    memset(out, 0, sizeof *out);
    out->tenant = opt_str(&fs, F_TENANT);
    out->account = opt_str(&fs, F_ACCOUNT);
    out->limit = DSP_LIST_DEFAULT;
    if ((fs.seen & B(F_LIMIT)) && fs.u[F_LIMIT] > 0)
        out->limit = fs.u[F_LIMIT] > DSP_LIST_MAX ? DSP_LIST_MAX : (uint32_t)fs.u[F_LIMIT];
    if (fs.seen & B(F_AFTER)) {
        out->has_after = true;
        out->after = fs.s[F_AFTER];
        /* Whatever else it is (a client ID of any account, a made-up
         * string), a text that is not a cursor gets this one answer. */
        if (!eng_cursor_ok(out->after.p, out->after.n))
            return fail(err, TK_EINVAL, "field \"after\": not a listing cursor (pass the "
                                        "\"next\" of the page before)");
    }
    return 0;
}

/* ---- replies ----------------------------------------------------------- */

static void put_id(mpw *w, const char *key, const tk_id *id)
{
    char s[TK_ID_STR_LEN + 1];
    secret_id_format(id, s);
    mpw_cstr(w, key);
    mpw_str(w, s, TK_ID_STR_LEN);
}

void dsp_put_error(mpw *w, const char *msg)
{
    mpw_map(w, 1);
    mpw_cstr(w, "error");
    mpw_cstr(w, msg);
}

void dsp_put_write_error(mpw *w, const eng_res *res)
{
    bool retry = res->status == TK_ERATE;
    mpw_map(w, retry ? 2 : 1);
    mpw_cstr(w, "error");
    mpw_cstr(w, res->msg[0] ? res->msg : tk_strerror(res->status));
    if (retry) {
        mpw_cstr(w, "retry_after_ms");
        mpw_uint(w, res->retry_after_ms);
    }
}

void dsp_put_ping(mpw *w)
{
    mpw_map(w, 1);
    mpw_cstr(w, "version");
    mpw_uint(w, PROTO_VERSION);
}

void dsp_put_auth(mpw *w, const char *actor)
{
    mpw_map(w, 1);
    mpw_cstr(w, "actor");
    mpw_cstr(w, actor);
}

void dsp_put_verify(mpw *w, const tk_verify *v)
{
    if (v->verdict != TK_V_VALID) {
        mpw_map(w, 2);
        mpw_cstr(w, "valid");
        mpw_bool(w, false);
        mpw_cstr(w, "reason");
        mpw_cstr(w, model_verdict_name(v->verdict));
        return;
    }
    mpw_map(w, 8);
    mpw_cstr(w, "valid");
    mpw_bool(w, true);
    mpw_cstr(w, "reason");
    mpw_cstr(w, "valid");
    put_id(w, "client_id", &v->client_id);
    mpw_cstr(w, "tenant");
    mpw_cstr(w, v->tenant);
    mpw_cstr(w, "account");
    mpw_cstr(w, v->account);
    mpw_cstr(w, "roles");
    mpw_array(w, v->nroles);
    for (uint32_t i = 0; i < v->nroles; i++)
        mpw_cstr(w, v->roles[i]);
    mpw_cstr(w, "permissions");
    mpw_array(w, v->nperms);
    for (uint32_t i = 0; i < v->nperms; i++)
        mpw_cstr(w, v->perms[i]);
    mpw_cstr(w, "expires_at");
    mpw_int(w, v->expires_at);
}

void dsp_put_write(mpw *w, const eng_req *r, const eng_res *res)
{
    switch (r->op) {
    case ENG_USER_CREATE:
    case ENG_KEY_CREATE:
        mpw_map(w, 2);
        put_id(w, "key_id", &res->id);
        mpw_cstr(w, "personal_key");
        mpw_str(w, res->secret, TK_SECRET_LEN);
        break;
    case ENG_TOKEN_CREATE:
        mpw_map(w, 3);
        put_id(w, "client_id", &res->id);
        mpw_cstr(w, "secret");
        mpw_str(w, res->secret, TK_SECRET_LEN);
        mpw_cstr(w, "expires_at");
        mpw_int(w, r->expires);
        break;
    default:
        mpw_map(w, 0);
        break;
    }
}

/* ---- listing (writer thread) ------------------------------------------- */

#define LIST_STOP 1 /* list_one's "enough": positive, so never a TK_E* code */
#define ARRAY16_LEN 3 /* the tokens' array header, written before their count is known */

typedef struct list_acc {
    mpw *w;     /* the reply: the tokens are encoded straight into it */
    uint32_t n, limit;
    bool more;
    char next[ENG_CURSOR_LEN + 1]; /* after the last token shown */
} list_acc;

static int list_one(void *arg, const eng_token_info *t)
{
    list_acc *a = arg;
    if (a->n == a->limit) { /* the engine was asked for one more than shown */
        a->more = true;
        return LIST_STOP;
    }
    mpw *w = a->w;
    mpw_map(w, 6);
    put_id(w, "client_id", &t->client_id);
    mpw_cstr(w, "description");
    mpw_cstr(w, t->description);
    mpw_cstr(w, "roles");
    mpw_array(w, t->nroles);
    for (uint32_t i = 0; i < t->nroles; i++)
        mpw_cstr(w, t->roles[i]);
    mpw_cstr(w, "created_by");
    mpw_cstr(w, t->created_by);
    mpw_cstr(w, "created_at");
    mpw_int(w, t->created_ms / 1000);
    mpw_cstr(w, "expires_at");
    mpw_int(w, t->expires);
    memcpy(a->next, t->cursor, sizeof a->next);
    a->n++;
    return 0;
}

/* The tokens are encoded straight into w (one buffer, no copy of a page
 * that may be megabytes) behind room for an array16 header; once their
 * count is known the header is written in its smallest form and the tokens
 * moved up to it. */
int dsp_run_list(eng *e, const dsp_list *l, mpw *w)
{
    static const uint8_t room[ARRAY16_LEN];
    list_acc a = {.w = w, .limit = l->limit};
    size_t start = w->buf.size;
    mpw_map(w, 3); /* patched to 2 below when there is no "next" */
    mpw_cstr(w, "tokens");
    size_t at = w->buf.size;
    w->pk.callback(w->pk.data, (const char *)room, sizeof room);
    int rc = eng_token_list(e, &l->actor, l->tenant, l->account, l->has_after ? &l->after : NULL,
                            l->limit + 1, list_one, &a);
    if (rc == LIST_STOP)
        rc = 0;
    if (rc) {
        w->buf.size = start;
        return rc;
    }
    size_t body = w->buf.size - at - ARRAY16_LEN;
    w->buf.size = at;
    mpw_array(w, a.n);
    size_t hdr = w->buf.size - at;
    memmove(w->buf.data + at + hdr, w->buf.data + at + ARRAY16_LEN, body);
    w->buf.size = at + hdr + body;
    if (!a.more)
        w->buf.data[start] = (char)0x82; /* fixmap of 2: tokens, more */
    mpw_cstr(w, "more");
    mpw_bool(w, a.more);
    if (a.more) {
        mpw_cstr(w, "next");
        mpw_cstr(w, a.next);
    }
    /* Trimmed: a reply held in a batch costs its bytes, not its doubling
     * buffer's capacity. */
    w->buf.data = xrealloc(w->buf.data, w->buf.size);
    w->buf.alloc = w->buf.size;
    return 0;
}

/* Bytes of a MessagePack string of n bytes. */
static size_t mp_str_len(size_t n)
{
    return n + (n < 32 ? 1 : n < 256 ? 2 : n < 65536 ? 3 : 5);
}

#define MP_INT_MAX_LEN 9    /* an int64 */
#define MP_COUNT_MAX_LEN 5  /* an array or map header */

size_t dsp_list_reply_max(uint32_t limit)
{
    size_t entry = MP_COUNT_MAX_LEN
                   + mp_str_len(9) + mp_str_len(TK_ID_STR_LEN)             /* client_id */
                   + mp_str_len(11) + mp_str_len(TK_DESC_MAX)              /* description */
                   + mp_str_len(5) + MP_COUNT_MAX_LEN
                   + TK_MAX_ROLES * mp_str_len(TK_KEY_MAX)                 /* roles */
                   + mp_str_len(10) + mp_str_len(TK_SLUG_MAX)              /* created_by */
                   + 2 * (mp_str_len(10) + MP_INT_MAX_LEN);                /* created_at, expires_at */
    size_t page = PROTO_HEADER_LEN + MP_COUNT_MAX_LEN + mp_str_len(6) + MP_COUNT_MAX_LEN
                  + (size_t)limit * entry + mp_str_len(4) + 1 + mp_str_len(4)
                  + mp_str_len(DSP_CURSOR_MAX);
    return page > DSP_WRITE_REPLY_MAX ? page : DSP_WRITE_REPLY_MAX; /* an error reply */
}
