/*
 * hjson.c - JSON bodies to and from msgpack bodies; see hjson.h.
 */
#include "net/hjson.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

#define HJ_DEPTH 8 /* no request holds more than an array in a map */

static int hj_fail(dsp_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int hj_fail(dsp_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return TK_EINVAL;
}

/* A member's name for a message: only when it is plainly a name
 * (dsp_shown_name, into buf). */
#define SHOWN(name, buf) dsp_shown_name(name, strlen(name), buf, sizeof buf)

static int hj_value(const json_t *v, const char *name, int depth, mpw *w, dsp_err *err)
{
    char nb[40];
    if (depth > HJ_DEPTH)
        return hj_fail(err, "field \"%s\": nested too deeply", SHOWN(name, nb));
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *m;
        mpw_map(w, (uint32_t)json_object_size(v));
        json_object_foreach((json_t *)v, k, m) {
            mpw_str(w, k, strlen(k));
            int rc = hj_value(m, k, depth + 1, w, err);
            if (rc)
                return rc;
        }
        return 0;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *e;
        mpw_array(w, (uint32_t)json_array_size(v));
        json_array_foreach(v, i, e) {
            int rc = hj_value(e, name, depth + 1, w, err);
            if (rc)
                return rc;
        }
        return 0;
    }
    case JSON_STRING: mpw_str(w, json_string_value(v), json_string_length(v)); return 0;
    case JSON_INTEGER: {
        json_int_t i = json_integer_value(v);
        if (i >= 0)
            mpw_uint(w, (uint64_t)i);
        else
            mpw_int(w, i);
        return 0;
    }
    case JSON_REAL: /* carried as a float, for dispatch to refuse in its words */
        msgpack_pack_double(&w->pk, json_real_value(v));
        return 0;
    case JSON_TRUE: mpw_bool(w, true); return 0;
    case JSON_FALSE: mpw_bool(w, false); return 0;
    case JSON_NULL: mpw_nil(w); return 0;
    }
    return hj_fail(err, "field \"%s\": not a JSON value", SHOWN(name, nb));
}

int hj_to_body(const json_t *obj, mpw *w, dsp_err *err)
{
    if (!json_is_object(obj))
        return hj_fail(err, "the body must be a JSON object");
    return hj_value(obj, "", 0, w, err);
}

/* A decimal integer, the whole text. */
static int hj_number(const char *text, int64_t *out)
{
    char *end;
    errno = 0;
    if (!*text || (*text != '-' && (*text < '0' || *text > '9')))
        return -1;
    long long v = strtoll(text, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

int hj_set_param(json_t *obj, const sch_op *op, const char *name, const char *text,
                 dsp_err *err)
{
    char nb[40];
    const sch_use *u = sch_find_use(op->req, name, strlen(name));
    sch_type t = u ? sch_fields[u->f].type : SCH_STR;
    json_t *old = json_object_get(obj, name);
    json_t *v;
    int64_t n;
    if (old && t != SCH_STRS)
        return hj_fail(err, "field \"%s\": given twice", SHOWN(name, nb));
    switch (t) {
    case SCH_UINT:
    case SCH_INT:
        if (hj_number(text, &n))
            return hj_fail(err, "field \"%s\": must be an integer", SHOWN(name, nb));
        v = json_integer(n);
        break;
    case SCH_BOOL:
        if (strcmp(text, "true") == 0)
            v = json_true();
        else if (strcmp(text, "false") == 0)
            v = json_false();
        else
            return hj_fail(err, "field \"%s\": must be true or false", SHOWN(name, nb));
        break;
    case SCH_STRS:
        if (old && !json_is_array(old))
            return hj_fail(err, "field \"%s\": given twice", SHOWN(name, nb));
        if (!old) {
            old = json_array();
            json_object_set_new(obj, name, old);
        }
        if (!(v = json_string(text)))
            return hj_fail(err, "field \"%s\": not valid UTF-8", SHOWN(name, nb));
        json_array_append_new(old, v);
        return 0;
    default:
        if (!(v = json_string(text)))
            return hj_fail(err, "field \"%s\": not valid UTF-8", SHOWN(name, nb));
        break;
    }
    json_object_set_new(obj, name, v);
    return 0;
}

/* ---- replies -------------------------------------------------------------- */

static json_t *hj_map(mpr *r, const sch_op *op, const sch_use *uses);

static json_t *hj_field(mpr *r, const sch_op *op, const sch_field *f)
{
    const char *s;
    size_t n;
    bool b;
    uint64_t u;
    int64_t i;
    uint32_t cnt;
    if (mpr_is_nil(r)) {
        mpr_nil(r);
        return json_null();
    }
    switch (f->type) {
    case SCH_STR: return mpr_str(r, &s, &n) ? NULL : json_stringn(s, n);
    case SCH_BOOL: return mpr_bool(r, &b) ? NULL : json_boolean(b);
    case SCH_UINT: return mpr_uint(r, &u) ? NULL : json_integer((json_int_t)u);
    case SCH_INT: return mpr_int(r, &i) ? NULL : json_integer(i);
    case SCH_STRS:
    case SCH_ROWS: {
        if (mpr_array(r, &cnt))
            return NULL;
        json_t *a = json_array();
        for (uint32_t k = 0; k < cnt; k++) {
            json_t *e = f->type == SCH_ROWS ? hj_map(r, op, op->row)
                                            : (mpr_str(r, &s, &n) ? NULL : json_stringn(s, n));
            if (!e) {
                json_decref(a);
                return NULL;
            }
            json_array_append_new(a, e);
        }
        return a;
    }
    }
    return NULL;
}

static json_t *hj_map(mpr *r, const sch_op *op, const sch_use *uses)
{
    uint32_t n;
    if (mpr_map(r, &n))
        return NULL;
    json_t *o = json_object();
    for (uint32_t k = 0; k < n; k++) {
        const char *name;
        size_t len;
        const sch_use *u;
        json_t *v;
        if (mpr_str(r, &name, &len) || !(u = sch_find_use(uses, name, len))
            || !(v = hj_field(r, op, &sch_fields[u->f]))) {
            json_decref(o);
            return NULL;
        }
        json_object_setn_new_nocheck(o, name, len, v);
    }
    return o;
}

json_t *hj_reply(const sch_op *op, const uint8_t *body, size_t len)
{
    mpr r;
    mpr_init(&r, body, len);
    json_t *o = hj_map(&r, op, sch_reply(op));
    if (o && !mpr_done(&r)) {
        json_decref(o);
        return NULL;
    }
    return o;
}
