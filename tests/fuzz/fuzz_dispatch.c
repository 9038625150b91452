/*
 * fuzz_dispatch.c - the server's request body decoders (net/dispatch.h)
 * over arbitrary bodies.
 *
 * Input: one byte, the opcode, then the body. Every decoder runs on the
 * body (dsp_ping, dsp_auth, dsp_verify_req, dsp_read_req, and
 * dsp_write_req with the opcode byte as given, which picks the fields it
 * accepts), so each sees every body the corpus holds.
 *
 * Checked: each returns 0, TK_EINVAL, TK_ELIMIT (TK_EOPCODE for an opcode
 * that is not a management change, given to dsp_write_req); a refusal comes
 * with a one-line message that never echoes the peer's bytes (printable
 * ASCII only); an accepted request is within the documented limits, its
 * strings are slices of the body and valid UTF-8, a verify's client_id_ok
 * implies has_client_id, a listing's limit is 1..DSP_LIST_MAX.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/err.h"
#include "core/model.h"
#include "core/mp.h"
#include "net/dispatch.h"
#include "net/proto.h"
#include "store/engine.h"
#include "tests/fuzz/fuzz.h"

static const uint8_t *body_start, *body_end;

static void check_err(int rc, const dsp_err *e)
{
    FZ_CHECK(rc == 0 || rc == TK_EINVAL || rc == TK_ELIMIT || rc == TK_EOPCODE,
             "0, TK_EINVAL, TK_ELIMIT or TK_EOPCODE");
    if (rc == 0)
        return;
    size_t n = strnlen(e->msg, sizeof e->msg);
    FZ_CHECK(n > 0 && n < sizeof e->msg, "a refusal says why, in a terminated line");
    for (size_t i = 0; i < n; i++)
        FZ_CHECK(e->msg[i] >= 0x20 && e->msg[i] < 0x7f, "the message echoes no peer bytes");
}

/* An accepted string: empty, or a valid UTF-8 slice of the body. */
static void check_str(tk_str s, size_t max, const char *what)
{
    FZ_CHECK(s.n <= max, what);
    if (s.n == 0)
        return;
    FZ_CHECK((const uint8_t *)s.p >= body_start && (const uint8_t *)s.p + s.n <= body_end,
             "strings are slices of the body");
    FZ_CHECK(mpr_utf8_valid(s.p, s.n), "strings are UTF-8");
}

static void check_write(const eng_req *r)
{
    check_str(r->tenant, TK_SLUG_MAX, "tenant length");
    check_str(r->account, TK_SLUG_MAX, "account length");
    check_str(r->user, TK_SLUG_MAX, "user length");
    check_str(r->key, TK_KEY_MAX, "key length");
    check_str(r->name, TK_KEY_MAX > TK_NAME_MAX ? TK_KEY_MAX : TK_NAME_MAX, "name length");
    check_str(r->desc, TK_DESC_MAX, "description length");
    FZ_CHECK(r->nitems <= TK_MAX_ROLE_PERMS, "item count");
    for (uint32_t i = 0; i < r->nitems; i++)
        check_str(r->items[i], TK_KEY_MAX, "item length");
    FZ_CHECK(r->level <= TK_MAX_LEVEL, "level");
    FZ_CHECK(r->expires >= 0, "expires not negative");
    FZ_CHECK(r->flag >= -1 && r->flag <= 1, "flag");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static eng_req req; /* large (256 items): not on the stack */
    const uint8_t *body;
    size_t len;
    uint16_t op;
    dsp_err err;
    dsp_class cls;
    int rc;

    if (size < 1)
        return 0;
    op = data[0];
    body = data + 1;
    len = size - 1;
    body_start = body;
    body_end = body + len;
    cls = dsp_classify(op);
    FZ_CHECK(cls == DSP_UNKNOWN || cls == DSP_INLINE || cls == DSP_WRITE || cls == DSP_READ
                 || cls == DSP_HTTP,
             "class");

    memset(&err, 0, sizeof err);
    rc = dsp_ping(body, len, &err);
    check_err(rc, &err);
    FZ_CHECK(rc != TK_EOPCODE, "ping is an opcode");

    tk_str key = {NULL, 0};
    rc = dsp_auth(body, len, &key, &err);
    check_err(rc, &err);
    if (rc == 0)
        check_str(key, len, "auth key");

    dsp_verify v;
    rc = dsp_verify_req(body, len, &v, &err);
    check_err(rc, &err);
    if (rc == 0) {
        check_str(v.secret, len, "secret");
        FZ_CHECK(!v.client_id_ok || v.has_client_id, "client_id_ok implies has_client_id");
    }

    rc = dsp_write_req(op, body, len, &req, &err);
    check_err(rc, &err);
    FZ_CHECK((rc == TK_EOPCODE) == (cls != DSP_WRITE), "only management changes are writes");
    if (rc == 0)
        check_write(&req);

    dsp_read l;
    rc = dsp_read_req(op, body, len, &l, &err);
    check_err(rc, &err);
    FZ_CHECK((rc == TK_EOPCODE) == (cls != DSP_READ), "only reads are reads");
    if (rc == 0) {
        check_str(l.q.tenant, TK_SLUG_MAX, "read tenant");
        check_str(l.q.account, TK_SLUG_MAX, "read account");
        check_str(l.q.user, TK_SLUG_MAX, "read user");
        FZ_CHECK(l.q.limit >= 1 && l.q.limit <= dsp_page_max(l.op), "read limit");
        FZ_CHECK(dsp_read_reply_max(&l) <= dsp_reply_max(), "reply bound");
        check_str(l.q.search, TK_DESC_MAX, "read search");
    }

    dsp_portal pt;
    rc = dsp_portal_req(op, body, len, &pt, &err);
    check_err(rc, &err);
    FZ_CHECK((rc == TK_EOPCODE) == (cls != DSP_HTTP), "only the portal's are portal operations");
    if (rc == 0) {
        check_str(pt.tenant, TK_SLUG_MAX, "portal tenant");
        check_str(pt.account, TK_SLUG_MAX, "portal account");
        check_str(pt.user, TK_SLUG_MAX, "portal user");
    }
    return 0;
}
