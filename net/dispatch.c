/*
 * dispatch.c - request bodies into engine requests and reads, answers into
 * reply bodies; see dispatch.h.
 *
 * Everything an operation's message holds comes from net/schema.h: one
 * decoder walks a request map against the operation's request fields (so
 * the strictness rules hold for every operation alike), one function per
 * direction moves decoded values into the engine's request or query by
 * field (not by operation), and one encoder writes a reply's fields in the
 * schema's order, its map size counted from the schema. VERIFY's reply is
 * written by hand (the hot path), with the schema's names.
 */
#include "net/dispatch.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "core/xmalloc.h"
#include "net/proto.h"

_Static_assert(SF_COUNT <= 64, "the decoder's seen mask holds one bit per field");

/* ---- decoding ------------------------------------------------------------ */

/* Decoded values, valid where the field's bit is set in seen. Only the
 * slots of the fields present are written: a verify decodes without
 * clearing the rest. */
typedef struct vals {
    uint64_t seen;
    tk_str s[SF_COUNT];
    bool b[SF_COUNT];
    uint64_t u[SF_COUNT];
    int64_t i[SF_COUNT];
    tk_str *items;     /* where the one array field goes (NULL: none allowed) */
    uint32_t nitems;
} vals;

#define HAS(v, f) (((v)->seen >> (f)) & 1)

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
const char *dsp_shown_name(const char *s, size_t n, char *buf, size_t cap)
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

static int read_str(mpr *r, uint32_t max, tk_str *out, const char *name, dsp_err *err)
{
    if (mpr_str(r, &out->p, &out->n))
        return fail(err, TK_EINVAL, "field \"%s\": expected a string", name);
    if (max && out->n > max)
        return fail(err, TK_EINVAL, "field \"%s\": longer than %u bytes", name, max);
    if (!mpr_utf8_valid(out->p, out->n))
        return fail(err, TK_EINVAL, "field \"%s\": not valid UTF-8", name);
    return 0;
}

static int read_value(mpr *r, sch_fid f, vals *v, dsp_err *err)
{
    const sch_field *d = &sch_fields[f];
    switch (d->type) {
    case SCH_STR: return read_str(r, d->max, &v->s[f], d->name, err);
    case SCH_BOOL:
        if (mpr_bool(r, &v->b[f]))
            return fail(err, TK_EINVAL, "field \"%s\": expected a boolean", d->name);
        return 0;
    case SCH_UINT:
        if (mpr_uint(r, &v->u[f]))
            return fail(err, TK_EINVAL, "field \"%s\": expected an unsigned integer", d->name);
        if (d->max && v->u[f] > d->max)
            return fail(err, TK_EINVAL, "field \"%s\": above %u", d->name, d->max);
        return 0;
    case SCH_INT:
        if (mpr_int(r, &v->i[f]))
            return fail(err, TK_EINVAL, "field \"%s\": expected an integer", d->name);
        return 0;
    case SCH_STRS: {
        uint32_t n;
        if (!v->items) /* a request with an array field gives room for it */
            return fail(err, TK_EINVAL, "field \"%s\": not expected", d->name);
        if (mpr_array(r, &n))
            return fail(err, TK_EINVAL, "field \"%s\": expected an array of strings", d->name);
        if (n > d->max)
            return fail(err, TK_ELIMIT, "field \"%s\": more than %u elements", d->name, d->max);
        for (uint32_t k = 0; k < n; k++) {
            int rc = read_str(r, d->elem_max, &v->items[k], d->name, err);
            if (rc)
                return rc;
        }
        v->nitems = n;
        return 0;
    }
    case SCH_ROWS: break; /* replies only */
    }
    return fail(err, TK_EINVAL, "field \"%s\": not expected", d->name);
}

/* Decodes body against op's request fields into v. */
static int decode(const sch_op *op, const uint8_t *body, size_t len, vals *v, dsp_err *err)
{
    mpr r;
    uint32_t n = 0;
    char shown[24];

    v->seen = 0;
    v->nitems = 0;
    mpr_init(&r, body, len);
    if (len > 0 && mpr_map(&r, &n))
        return fail(err, TK_EINVAL, "%s", "the body is not a MessagePack map");
    for (uint32_t k = 0; k < n; k++) {
        const char *name;
        size_t nlen;
        if (mpr_str(&r, &name, &nlen))
            return fail(err, TK_EINVAL, "%s", "a map key is not a string");
        const sch_use *u = sch_find_use(op->req, name, nlen);
        if (!u)
            return fail(err, TK_EINVAL, "unknown field \"%s\"",
                        dsp_shown_name(name, nlen, shown, sizeof shown));
        if (HAS(v, u->f))
            return fail(err, TK_EINVAL, "field \"%s\" given twice", sch_fields[u->f].name);
        int rc = read_value(&r, u->f, v, err);
        if (rc)
            return rc;
        v->seen |= 1ull << u->f;
    }
    if (len > 0 && !mpr_done(&r))
        return fail(err, TK_EINVAL, "%s", "bytes after the body's map");
    for (const sch_use *u = op->req; SCH_USED(u); u++)
        if (u->required && !HAS(v, u->f))
            return fail(err, TK_EINVAL, "missing field \"%s\"", sch_fields[u->f].name);
    return 0;
}

static tk_str given_str(const vals *v, sch_fid f)
{
    return HAS(v, f) ? v->s[f] : (tk_str){"", 0};
}

static int parse_id(const vals *v, sch_fid f, tk_id *out, dsp_err *err)
{
    if (secret_id_parse(v->s[f].p, v->s[f].n, out))
        return fail(err, TK_EINVAL, "field \"%s\": not a UUID", sch_fields[f].name);
    return 0;
}

dsp_class dsp_classify(uint16_t code)
{
    const sch_op *op = sch_find(code);
    if (!op)
        return DSP_UNKNOWN;
    switch (op->run) {
    case SCH_INLINE: return DSP_INLINE;
    case SCH_WRITE: return DSP_WRITE;
    case SCH_READ: return DSP_READ;
    case SCH_PORTAL: return DSP_HTTP;
    }
    return DSP_UNKNOWN;
}

/* ---- requests ---------------------------------------------------------- */

int dsp_ping(const uint8_t *body, size_t len, dsp_err *err)
{
    vals v;
    v.items = NULL;
    return decode(sch_find(OP_PING), body, len, &v, err);
}

int dsp_auth(const uint8_t *body, size_t len, tk_str *key, dsp_err *err)
{
    vals v;
    v.items = NULL;
    int rc = decode(sch_find(OP_AUTH), body, len, &v, err);
    if (rc == 0)
        *key = v.s[SF_KEY];
    return rc;
}

int dsp_verify_req(const uint8_t *body, size_t len, dsp_verify *out, dsp_err *err)
{
    vals v;
    v.items = NULL;
    int rc = decode(sch_find(OP_VERIFY), body, len, &v, err);
    if (rc)
        return rc;
    out->secret = v.s[SF_SECRET];
    out->has_client_id = HAS(&v, SF_CLIENT_ID);
    out->client_id_ok = out->has_client_id
                        && secret_id_parse(v.s[SF_CLIENT_ID].p, v.s[SF_CLIENT_ID].n,
                                           &out->client_id) == 0;
    return 0;
}

/* The values of a write's fields into the engine's request: by field, the
 * same for every operation. */
int dsp_write_req(uint16_t code, const uint8_t *body, size_t len, eng_req *r, dsp_err *err)
{
    static const tk_actor nobody;
    const sch_op *op = sch_find(code);
    vals v;
    if (!op || op->run != SCH_WRITE)
        return fail(err, TK_EOPCODE, "%s", "not a management change");
    eng_req_init(r, op->op, &nobody);
    v.items = r->items;
    int rc = decode(op, body, len, &v, err);
    if (rc)
        return rc;
    r->tenant = given_str(&v, SF_TENANT);
    r->account = given_str(&v, SF_ACCOUNT);
    r->user = given_str(&v, SF_USER);
    r->key = given_str(&v, SF_KEY);
    r->desc = given_str(&v, SF_DESCRIPTION);
    r->name = HAS(&v, SF_NAME) ? v.s[SF_NAME] : r->key; /* a role's name defaults to its key */
    r->nitems = v.nitems;
    r->has_items = HAS(&v, SF_ROLES) || HAS(&v, SF_PERMISSIONS);
    if (HAS(&v, SF_API_TOKENS))
        r->flag = v.b[SF_API_TOKENS];
    if (HAS(&v, SF_GATEWAY))
        r->flag = v.b[SF_GATEWAY];
    else if (op->op == ENG_KEYRING_ADD)
        r->flag = 0; /* an operator key */
    if (HAS(&v, SF_PORTAL))
        r->flag = v.b[SF_PORTAL];
    else if (op->op == ENG_USER_CREATE)
        r->flag = 0;
    if (HAS(&v, SF_LEVEL))
        r->level = (uint32_t)v.u[SF_LEVEL];
    if (HAS(&v, SF_EXPIRES_AT)) {
        if (v.i[SF_EXPIRES_AT] < 0)
            return fail(err, TK_EINVAL, "field \"%s\": negative", "expires_at");
        r->expires = v.i[SF_EXPIRES_AT];
    }
    if (HAS(&v, SF_EXPIRES_IN)) {
        if (HAS(&v, SF_EXPIRES_AT))
            return fail(err, TK_EINVAL, "give expires_at or expires_in, not both");
        if (v.u[SF_EXPIRES_IN] == 0)
            return fail(err, TK_EINVAL, "field \"%s\": must be at least 1", "expires_in");
        r->expires = (int64_t)time(NULL) + (int64_t)v.u[SF_EXPIRES_IN];
    }
    const struct {
        sch_fid f;
        unsigned bit;
        uint32_t *to;
    } lims[] = {
        {SF_MAX_TOKENS, ENG_LIM_TOKENS, &r->limits.tokens},
        {SF_MAX_ROLES, ENG_LIM_ROLES, &r->limits.roles},
        {SF_MAX_KEYS, ENG_LIM_KEYS, &r->limits.keys},
        {SF_CREATE_RATE, ENG_LIM_RATE, &r->limits.rate},
        {SF_CREATE_BURST, ENG_LIM_BURST, &r->limits.burst},
    };
    for (size_t i = 0; i < sizeof lims / sizeof lims[0]; i++)
        if (HAS(&v, lims[i].f)) {
            *lims[i].to = (uint32_t)v.u[lims[i].f]; /* the schema bounds it: 0 is none */
            r->limits_set |= lims[i].bit;
        }
    if (HAS(&v, SF_KEY_ID))
        return parse_id(&v, SF_KEY_ID, &r->id, err);
    if (HAS(&v, SF_CLIENT_ID))
        return parse_id(&v, SF_CLIENT_ID, &r->id, err);
    return 0;
}

/* ---- reads -------------------------------------------------------------- */

/* The largest string reply field f of an answer about kind can hold: its
 * limit, or what the server writes there (an ID; a cursor of kind's). */
static size_t str_max(sch_fid f, eng_kind kind)
{
    if (f == SF_CLIENT_ID || f == SF_KEY_ID)
        return TK_ID_STR_LEN;
    if (f == SF_NEXT)
        return kind == ENG_TOKENS || kind == ENG_KEYS ? ENG_CURSOR_LEN
               : kind == ENG_PERMS || kind == ENG_ROLES ? TK_KEY_MAX
                                                        : TK_SLUG_MAX;
    return sch_fields[f].max ? sch_fields[f].max : TK_SECRET_LEN;
}

/* Bytes of a MessagePack string of n bytes. */
static size_t mp_str_len(size_t n)
{
    return n + (n < 32 ? 1 : n < 256 ? 2 : n < 65536 ? 3 : 5);
}

#define MP_NUM_MAX_LEN 9   /* an int64 or uint64 */
#define MP_COUNT_MAX_LEN 5 /* an array or map header */

/* The largest encoding of the fields of uses (a map), at their limits. */
static size_t fields_max(const sch_use *uses, eng_kind kind)
{
    size_t n = MP_COUNT_MAX_LEN;
    for (const sch_use *u = uses; SCH_USED(u); u++) {
        const sch_field *f = &sch_fields[u->f];
        n += mp_str_len(f->len);
        switch (f->type) {
        case SCH_STR: n += mp_str_len(str_max(u->f, kind)); break;
        case SCH_BOOL: n += 1; break;
        case SCH_UINT:
        case SCH_INT: n += MP_NUM_MAX_LEN; break;
        case SCH_STRS: n += MP_COUNT_MAX_LEN + (size_t)f->max * mp_str_len(f->elem_max); break;
        case SCH_ROWS: n += MP_COUNT_MAX_LEN; break; /* the rows are counted apart */
        }
    }
    return n;
}

uint32_t dsp_page_fit(const sch_op *op, size_t page_bytes, uint32_t max_rows)
{
    size_t row = fields_max(op->row, op->kind);
    size_t fit = page_bytes / (row ? row : 1);
    return fit < max_rows ? (uint32_t)(fit ? fit : 1) : max_rows;
}

uint32_t dsp_page_max(const sch_op *op)
{
    return dsp_page_fit(op, DSP_PAGE_MAX, DSP_LIST_MAX);
}

size_t dsp_op_reply_max(const sch_op *op, uint32_t limit)
{
    size_t n = PROTO_HEADER_LEN + fields_max(sch_reply(op), op->kind);
    if (!op->get)
        n += (size_t)limit * fields_max(op->row, op->kind);
    return n > DSP_WRITE_REPLY_MAX ? n : DSP_WRITE_REPLY_MAX; /* an error reply */
}

size_t dsp_read_reply_max(const dsp_read *r)
{
    return dsp_op_reply_max(r->op, r->q.get ? 1 : r->q.limit);
}

size_t dsp_reply_max(void)
{
    return dsp_reply_max_paged(DSP_PAGE_MAX, DSP_LIST_MAX);
}

size_t dsp_reply_max_paged(size_t page_bytes, uint32_t max_rows)
{
    size_t n, most = DSP_WRITE_REPLY_MAX;
    const sch_op *ops = sch_all(&n);
    for (size_t i = 0; i < n; i++) {
        size_t m = dsp_op_reply_max(&ops[i], dsp_page_fit(&ops[i], page_bytes, max_rows));
        if (ops[i].run == SCH_READ && m > most)
            most = m;
    }
    return most;
}

int dsp_read_req(uint16_t code, const uint8_t *body, size_t len, dsp_read *out, dsp_err *err)
{
    const sch_op *op = sch_find(code);
    vals v;
    if (!op || op->run != SCH_READ)
        return fail(err, TK_EOPCODE, "%s", "not a read");
    v.items = NULL;
    int rc = decode(op, body, len, &v, err);
    if (rc)
        return rc;
    memset(out, 0, sizeof *out);
    out->op = op;
    eng_query *q = &out->q;
    q->kind = op->kind;
    q->get = op->get;
    q->tenant = given_str(&v, SF_TENANT);
    q->account = given_str(&v, SF_ACCOUNT);
    q->user = given_str(&v, SF_USER);
    q->search = given_str(&v, SF_SEARCH);
    uint32_t most = dsp_page_max(op);
    q->limit = DSP_LIST_DEFAULT < most ? DSP_LIST_DEFAULT : most;
    if (HAS(&v, SF_LIMIT) && v.u[SF_LIMIT] > 0)
        q->limit = v.u[SF_LIMIT] > most ? most : (uint32_t)v.u[SF_LIMIT];
    if (HAS(&v, SF_AFTER)) {
        q->has_after = true;
        q->after = v.s[SF_AFTER];
        /* Whatever else it is (a client ID of any account, a made-up
         * string), a text that is not a cursor gets this one answer. */
        if (op->kind == ENG_TOKENS && !eng_cursor_ok(q->after.p, q->after.n))
            return fail(err, TK_EINVAL, "field \"after\": not a listing cursor (pass the "
                                        "\"next\" of the page before)");
    }
    if (HAS(&v, SF_CLIENT_ID))
        return parse_id(&v, SF_CLIENT_ID, &q->id, err);
    return 0;
}

/* ---- replies ----------------------------------------------------------- */

static void put_key(mpw *w, sch_fid f)
{
    mpw_str(w, sch_fields[f].name, sch_fields[f].len);
}

static void put_id(mpw *w, const tk_id *id)
{
    char s[TK_ID_STR_LEN + 1];
    secret_id_format(id, s);
    mpw_str(w, s, TK_ID_STR_LEN);
}

static void put_strs(mpw *w, const char *const *s, uint32_t n)
{
    mpw_array(w, n);
    for (uint32_t i = 0; i < n; i++)
        mpw_cstr(w, s[i]);
}

static uint32_t count(const sch_use *uses)
{
    uint32_t n = 0;
    for (const sch_use *u = uses; SCH_USED(u); u++)
        n++;
    return n;
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

int dsp_portal_req(uint16_t code, const uint8_t *body, size_t len, dsp_portal *out, dsp_err *err)
{
    const sch_op *op = sch_find(code);
    vals v;
    if (!op || op->run != SCH_PORTAL)
        return fail(err, TK_EOPCODE, "%s", "not a portal operation");
    v.items = NULL;
    int rc = decode(op, body, len, &v, err);
    if (rc)
        return rc;
    out->tenant = given_str(&v, SF_TENANT);
    out->account = given_str(&v, SF_ACCOUNT);
    out->user = given_str(&v, SF_USER);
    return 0;
}

void dsp_put_portal_link(mpw *w, const char *url, int64_t expires_at)
{
    mpw_map(w, 2);
    put_key(w, SF_URL);
    mpw_cstr(w, url);
    put_key(w, SF_EXPIRES_AT);
    mpw_int(w, expires_at);
}

void dsp_put_portal_who(mpw *w, const char *actor, const char *via, const eng_names *names,
                        int64_t expires_at, const char *csrf)
{
    mpw_map(w, 2 + (names ? 3 : 0) + (expires_at ? 1 : 0) + (csrf ? 1 : 0));
    put_key(w, SF_ACTOR);
    mpw_cstr(w, actor);
    put_key(w, SF_VIA);
    mpw_cstr(w, via);
    if (names) {
        put_key(w, SF_TENANT);
        mpw_cstr(w, names->tenant);
        put_key(w, SF_ACCOUNT);
        mpw_cstr(w, names->account);
        put_key(w, SF_USER);
        mpw_cstr(w, names->user);
    }
    if (expires_at) {
        put_key(w, SF_EXPIRES_AT);
        mpw_int(w, expires_at);
    }
    if (csrf) {
        put_key(w, SF_CSRF);
        mpw_cstr(w, csrf);
    }
}

void dsp_put_empty(mpw *w)
{
    mpw_map(w, 0);
}

void dsp_put_ping(mpw *w)
{
    mpw_map(w, 1);
    put_key(w, SF_VERSION);
    mpw_uint(w, PROTO_VERSION);
}

void dsp_put_auth(mpw *w, const char *actor)
{
    mpw_map(w, 1);
    put_key(w, SF_ACTOR);
    mpw_cstr(w, actor);
}

/* By hand, for speed: the schema's VERIFY reply, its optional fields all
 * there when the token is valid and none when it is not. */
void dsp_put_verify(mpw *w, const tk_verify *v)
{
    if (v->verdict != TK_V_VALID) {
        mpw_map(w, 2);
        put_key(w, SF_VALID);
        mpw_bool(w, false);
        put_key(w, SF_REASON);
        mpw_cstr(w, model_verdict_name(v->verdict));
        return;
    }
    mpw_map(w, 8);
    put_key(w, SF_VALID);
    mpw_bool(w, true);
    put_key(w, SF_REASON);
    mpw_cstr(w, "valid");
    put_key(w, SF_CLIENT_ID);
    put_id(w, &v->client_id);
    put_key(w, SF_TENANT);
    mpw_cstr(w, v->tenant);
    put_key(w, SF_ACCOUNT);
    mpw_cstr(w, v->account);
    put_key(w, SF_ROLES);
    put_strs(w, v->roles, v->nroles);
    put_key(w, SF_GRANTS);
    put_strs(w, v->perms, v->nperms);
    put_key(w, SF_EXPIRES_AT);
    mpw_int(w, v->expires_at);
}

/* A write's reply: the fields its operation's reply names, from the
 * result (a created credential) and the request. */
void dsp_put_write(mpw *w, const eng_req *r, const eng_res *res)
{
    const sch_op *op = NULL;
    size_t n;
    const sch_op *ops = sch_all(&n);
    for (size_t i = 0; i < n && !op; i++)
        if (ops[i].run == SCH_WRITE && ops[i].op == r->op)
            op = &ops[i];
    const sch_use *uses = op ? op->reply : (sch_use[]){{SF_COUNT, false}};
    mpw_map(w, count(uses));
    for (const sch_use *u = uses; SCH_USED(u); u++) {
        put_key(w, u->f);
        switch (u->f) {
        case SF_KEY_ID:
        case SF_CLIENT_ID: put_id(w, &res->id); break;
        case SF_PERSONAL_KEY:
        case SF_SECRET: mpw_str(w, res->secret, TK_SECRET_LEN); break;
        case SF_KEY: mpw_cstr(w, res->secret); break; /* KEYRING_ADD's key */
        case SF_EXPIRES_AT: mpw_int(w, r->expires); break;
        default: mpw_nil(w); break; /* a field the table names and this does not know */
        }
    }
}

/* One field of a row, from the engine's row. */
static void put_row_field(mpw *w, sch_fid f, const eng_row *row)
{
    switch (row->kind) {
    case ENG_TOKENS: {
        const eng_token_info *t = &row->u.token;
        switch (f) {
        case SF_CLIENT_ID: put_id(w, &t->client_id); return;
        case SF_DESCRIPTION: mpw_cstr(w, t->description); return;
        case SF_ROLES:
            mpw_array(w, t->nroles);
            for (uint32_t i = 0; i < t->nroles; i++)
                mpw_cstr(w, t->roles[i]);
            return;
        case SF_CREATED_BY: mpw_cstr(w, t->created_by); return;
        case SF_CREATED_AT: mpw_int(w, t->created_ms / 1000); return;
        case SF_EXPIRES_AT: mpw_int(w, t->expires); return;
        default: break;
        }
        break;
    }
    case ENG_TENANTS: {
        const tk_limits *l = &row->u.tenant.limits;
        switch (f) {
        case SF_TENANT: mpw_cstr(w, row->u.tenant.slug); return;
        case SF_API_TOKENS: mpw_bool(w, row->u.tenant.api_tokens); return;
        case SF_MAX_TOKENS: mpw_uint(w, l->tokens); return;
        case SF_MAX_ROLES: mpw_uint(w, l->roles); return;
        case SF_MAX_KEYS: mpw_uint(w, l->keys); return;
        case SF_CREATE_RATE: mpw_uint(w, l->rate); return;
        case SF_CREATE_BURST: mpw_uint(w, l->burst); return;
        case SF_ROLE_COUNT: mpw_uint(w, row->u.tenant.roles); return;
        case SF_PERM_COUNT: mpw_uint(w, row->u.tenant.permissions); return;
        default: break;
        }
        break;
    }
    case ENG_PERMS:
        if (f == SF_KEY) {
            mpw_cstr(w, row->u.perm.key);
            return;
        }
        if (f == SF_DESCRIPTION) {
            mpw_cstr(w, row->u.perm.description);
            return;
        }
        break;
    case ENG_ROLES:
        switch (f) {
        case SF_KEY: mpw_cstr(w, row->u.role.key); return;
        case SF_NAME: mpw_cstr(w, row->u.role.name); return;
        case SF_LEVEL: mpw_uint(w, row->u.role.level); return;
        case SF_PERMISSIONS: put_strs(w, row->u.role.perms, row->u.role.nperms); return;
        default: break;
        }
        break;
    case ENG_ACCOUNTS:
        if (f == SF_ACCOUNT) {
            mpw_cstr(w, row->u.account.slug);
            return;
        }
        if (f == SF_TOKEN_COUNT) {
            mpw_uint(w, row->u.account.tokens);
            return;
        }
        break;
    case ENG_USERS:
        switch (f) {
        case SF_USER: mpw_cstr(w, row->u.user.slug); return;
        case SF_ROLES: put_strs(w, row->u.user.roles, row->u.user.nroles); return;
        case SF_PORTAL: mpw_bool(w, row->u.user.portal); return;
        case SF_KEY_COUNT: mpw_uint(w, row->u.user.keys); return;
        default: break;
        }
        break;
    case ENG_KEYS:
        switch (f) {
        case SF_KEY_ID: put_id(w, &row->u.key.id); return;
        case SF_CREATED_AT: mpw_int(w, row->u.key.created_ms / 1000); return;
        case SF_EXPIRES_AT: mpw_int(w, row->u.key.expires); return;
        default: break;
        }
        break;
    case ENG_KEYRING:
        switch (f) {
        case SF_NAME: mpw_cstr(w, row->u.ring.name); return;
        case SF_GATEWAY: mpw_bool(w, row->u.ring.gateway); return;
        case SF_CREATED_AT: mpw_int(w, row->u.ring.created_ms / 1000); return;
        default: break;
        }
        break;
    }
    mpw_nil(w); /* a field the table names and this does not know: test_schema catches it */
}

static void put_row(mpw *w, const sch_op *op, const eng_row *row)
{
    mpw_map(w, count(op->row));
    for (const sch_use *u = op->row; SCH_USED(u); u++) {
        put_key(w, u->f);
        put_row_field(w, u->f, row);
    }
}

/* ---- reads (writer thread) --------------------------------------------- */

#define PAGE_STOP 1   /* read_row's "enough": positive, so never a TK_E* code */
#define ARRAY32_LEN 5 /* the rows' array header, written before their count is known */

typedef struct page {
    mpw *w;       /* the reply: the rows are encoded straight into it */
    const sch_op *op;
    uint32_t n, limit;
    bool more;
    char next[ENG_ROW_CURSOR_MAX + 1]; /* after the last row shown */
} page;

static int read_row(void *arg, const eng_row *row)
{
    page *pg = arg;
    if (pg->op->get) {
        put_row(pg->w, pg->op, row);
        pg->n++;
        return PAGE_STOP;
    }
    if (pg->n == pg->limit) { /* the engine was asked for one more than shown */
        pg->more = true;
        return PAGE_STOP;
    }
    put_row(pg->w, pg->op, row);
    memcpy(pg->next, row->cursor, sizeof pg->next);
    pg->n++;
    return 0;
}

/* A listing's rows are encoded straight into w (one buffer, no copy of a
 * page that may be megabytes) behind room for an array header; once their
 * count is known the header is written in its smallest form and the rows
 * moved up to it. A get's row is the whole reply. */
int dsp_run_read(eng *e, const dsp_read *r, mpw *w, char *msg)
{
    static const uint8_t room[ARRAY32_LEN];
    const sch_op *op = r->op;
    page pg = {.w = w, .op = op, .limit = r->q.limit};
    eng_query q = r->q;
    size_t start = w->buf.size, at = 0;
    sch_fid rows = SF_COUNT;
    for (const sch_use *u = op->reply; SCH_USED(u); u++)
        if (sch_fields[u->f].type == SCH_ROWS)
            rows = u->f;
    if (!op->get) {
        q.limit = r->q.limit + 1; /* one more: is there more? */
        mpw_map(w, 3);            /* patched to 2 below when there is no "next" */
        put_key(w, rows);
        at = w->buf.size;
        w->pk.callback(w->pk.data, (const char *)room, sizeof room);
    }
    int rc = eng_query_run(e, &q, read_row, &pg, msg);
    if (rc == PAGE_STOP)
        rc = 0;
    if (rc == 0 && op->get && pg.n == 0)
        rc = TK_ENOTFOUND;
    if (rc) {
        w->buf.size = start;
        return rc;
    }
    if (!op->get) {
        size_t body = w->buf.size - at - ARRAY32_LEN;
        w->buf.size = at;
        mpw_array(w, pg.n);
        size_t hdr = w->buf.size - at;
        memmove(w->buf.data + at + hdr, w->buf.data + at + ARRAY32_LEN, body);
        w->buf.size = at + hdr + body;
        if (!pg.more)
            w->buf.data[start] = (char)0x82; /* fixmap of 2: rows, more */
        put_key(w, SF_MORE);
        mpw_bool(w, pg.more);
        if (pg.more) {
            put_key(w, SF_NEXT);
            mpw_cstr(w, pg.next);
        }
    }
    /* Trimmed: a reply held in a batch costs its bytes, not its doubling
     * buffer's capacity. */
    w->buf.data = xrealloc(w->buf.data, w->buf.size);
    w->buf.alloc = w->buf.size;
    return 0;
}
