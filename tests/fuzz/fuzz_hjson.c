/*
 * fuzz_hjson.c - the JSON API's request path (net/hjson.h) over arbitrary
 * bytes: what net/http.c does with a body before the writer sees it.
 *
 * Input: one byte choosing the operation (an index into the schema's
 * table), then a JSON text. It is parsed as http.c parses bodies (jansson,
 * duplicates refused); an object goes through hj_to_body, and the msgpack
 * it makes through dispatch's decoder for that operation.
 *
 * Checked: hj_to_body takes every JSON object nested at most 8 deep (0; a
 * deeper one is TK_EINVAL with a message) and makes one msgpack map
 * that mpr reads whole (mpr_skip to the end); a refusal by dispatch is
 * TK_EINVAL or TK_ELIMIT with a printable one-line message; hj_set_param
 * with the text as a query value either sets the field or refuses with a
 * message; a reply body made of random bytes read with hj_reply never
 * crashes (NULL or an object).
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "core/err.h"
#include "core/mp.h"
#include "net/dispatch.h"
#include "net/hjson.h"
#include "net/schema.h"
#include "tests/fuzz/fuzz.h"

static void check_msg(int rc, const dsp_err *e)
{
    FZ_CHECK(rc == 0 || rc == TK_EINVAL || rc == TK_ELIMIT || rc == TK_EOPCODE,
             "0, TK_EINVAL, TK_ELIMIT or TK_EOPCODE");
    if (rc == 0)
        return;
    size_t n = strnlen(e->msg, sizeof e->msg);
    FZ_CHECK(n > 0 && n < sizeof e->msg, "a refusal says why");
    for (size_t i = 0; i < n; i++)
        FZ_CHECK(e->msg[i] >= 0x20 && e->msg[i] < 0x7f, "the message is printable ASCII");
}

/* Levels of nesting: a scalar 1, an object of scalars 2, ... */
static int depth(const json_t *v)
{
    int most = 0;
    const char *k;
    json_t *m;
    size_t i;
    if (json_is_object(v))
        json_object_foreach((json_t *)v, k, m) {
            int d = depth(m);
            most = d > most ? d : most;
        }
    else if (json_is_array(v))
        json_array_foreach(v, i, m) {
            int d = depth(m);
            most = d > most ? d : most;
        }
    else
        return 1;
    return most + 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t nops;
    const sch_op *ops = sch_all(&nops);
    const sch_op *op = &ops[data[0] % nops];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    if (j && json_is_object(j)) {
        mpw w;
        dsp_err err = {""};
        mpw_init(&w);
        int carried = hj_to_body(j, &w, &err);
        FZ_CHECK(carried == 0 || (carried == TK_EINVAL && depth(j) > 9),
                 "every object is carried, unless nested deeper than 8");
        if (carried) {
            check_msg(carried, &err);
            mpw_free(&w);
            json_decref(j);
            return 0;
        }
        mpr r;
        mpr_init(&r, w.buf.data, w.buf.size);
        FZ_CHECK(mpr_skip(&r) == 0 || json_object_size(j) > 0, "one whole value");
        const uint8_t *b = (const uint8_t *)w.buf.data;
        int rc;
        if (op->run == SCH_WRITE) {
            eng_req q;
            rc = dsp_write_req(op->code, b, w.buf.size, &q, &err);
            check_msg(rc, &err);
        } else if (op->run == SCH_READ) {
            dsp_read q;
            rc = dsp_read_req(op->code, b, w.buf.size, &q, &err);
            check_msg(rc, &err);
        } else {
            dsp_verify v;
            rc = dsp_verify_req(b, w.buf.size, &v, &err);
            check_msg(rc, &err);
        }
        mpw_free(&w);
    }
    json_decref(j);

    /* The text as a query parameter's value, for each request field. */
    char *val = strndup(text, len);
    json_t *o = json_object();
    for (const sch_use *u = op->req; SCH_USED(u); u++) {
        dsp_err err = {""};
        int rc = hj_set_param(o, op, sch_fields[u->f].name, val, &err);
        check_msg(rc, &err);
    }
    json_decref(o);
    free(val);

    json_t *rep = hj_reply(op, data + 1, len);
    FZ_CHECK(!rep || json_is_object(rep), "a reply is an object or nothing");
    json_decref(rep);
    return 0;
}
