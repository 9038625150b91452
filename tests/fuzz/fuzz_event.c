/*
 * fuzz_event.c - ev_decode (core/event.h) over arbitrary bytes.
 *
 * Whatever the bytes, ev_decode returns 0 or TK_ECORRUPT and reads nothing
 * outside them. When it accepts:
 *  - the event is well-formed: a known type, names that pass the model's
 *    validators, counts and numbers within their limits, every string a
 *    slice of the input, fields the type does not carry left zero;
 *  - ev_encode of it decodes again (from an exact-size copy) to an equal
 *    event, field by field, and encoding that gives the same bytes;
 *  - the encoding is no longer than the input (the writer picks the
 *    smallest forms, and the decoder refuses extra or unknown keys).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/event.h"
#include "core/model.h"
#include "core/mp.h"
#include "tests/fuzz/fuzz.h"

static bool str_eq(tk_str a, tk_str b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

static bool ev_equal(const ev *a, const ev *b)
{
    if (a->type != b->type || a->ts != b->ts || a->flag != b->flag || a->level != b->level ||
        a->nitems != b->nitems || a->expires != b->expires ||
        memcmp(a->id.b, b->id.b, TK_ID_LEN) != 0 || memcmp(a->hash, b->hash, TK_HASH_LEN) != 0 ||
        a->has_limits != b->has_limits)
        return false;
    if (a->has_limits &&
        (a->limits.tokens != b->limits.tokens || a->limits.roles != b->limits.roles ||
         a->limits.keys != b->limits.keys || a->limits.rate != b->limits.rate ||
         a->limits.burst != b->limits.burst))
        return false;
    if (!str_eq(a->tenant, b->tenant) || !str_eq(a->account, b->account) ||
        !str_eq(a->user, b->user) || !str_eq(a->key, b->key) || !str_eq(a->name, b->name) ||
        !str_eq(a->desc, b->desc))
        return false;
    for (uint32_t i = 0; i < a->nitems; i++)
        if (!str_eq(a->items[i], b->items[i]))
            return false;
    return true;
}

static void check_slice(tk_str s, const uint8_t *data, size_t size)
{
    if (s.n == 0)
        return;
    FZ_CHECK((const uint8_t *)s.p >= data && s.n <= size &&
                 (const uint8_t *)s.p + s.n <= data + size,
             "decoded strings borrow from the input");
}

static void check_event(const ev *e, const uint8_t *data, size_t size)
{
    static const uint8_t zero[TK_HASH_LEN];

    FZ_CHECK(e->type >= 1 && e->type <= EV_TYPE_MAX, "known type");
    FZ_CHECK(strcmp(ev_type_name(e->type), "unknown") != 0, "the type has a name");
    FZ_CHECK(e->nitems <= TK_MAX_ROLE_PERMS, "item count within limit");
    FZ_CHECK(e->level <= TK_MAX_LEVEL, "level within limit");
    FZ_CHECK(e->expires >= 0, "expires is not negative");
    if (e->tenant.n)
        FZ_CHECK(model_slug_ok(e->tenant.p, e->tenant.n), "tenant is a slug");
    if (e->account.n)
        FZ_CHECK(model_slug_ok(e->account.p, e->account.n), "account is a slug");
    if (e->user.n)
        FZ_CHECK(model_slug_ok(e->user.p, e->user.n), "user is a slug");
    if (e->key.n)
        FZ_CHECK(model_key_ok(e->key.p, e->key.n), "key is a key");
    FZ_CHECK(model_text_ok(e->name.p, e->name.n, TK_NAME_MAX), "name is text");
    FZ_CHECK(model_text_ok(e->desc.p, e->desc.n, TK_DESC_MAX), "desc is text");
    check_slice(e->tenant, data, size);
    check_slice(e->account, data, size);
    check_slice(e->user, data, size);
    check_slice(e->key, data, size);
    check_slice(e->name, data, size);
    check_slice(e->desc, data, size);
    for (uint32_t i = 0; i < e->nitems; i++) {
        FZ_CHECK(model_key_ok(e->items[i].p, e->items[i].n), "items are keys");
        check_slice(e->items[i], data, size);
    }
    for (uint32_t i = e->nitems; i < TK_MAX_ROLE_PERMS; i++)
        FZ_CHECK(e->items[i].p == NULL && e->items[i].n == 0, "unused items stay zero");
    /* Types without an id or hash field leave them zero. */
    if (e->type == EV_TENANT_CREATE || e->type == EV_TENANT_SET || e->type == EV_PERM_PUT ||
        e->type == EV_ROLE_PUT || e->type == EV_ROLE_DELETE || e->type == EV_ACCOUNT_CREATE ||
        e->type == EV_USER_PUT)
        FZ_CHECK(memcmp(e->id.b, zero, TK_ID_LEN) == 0 && memcmp(e->hash, zero, TK_HASH_LEN) == 0,
                 "id and hash absent for this type");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ev *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    mpw w1, w2;
    uint8_t *copy = NULL;
    int rc;

    FZ_CHECK(a && b, "malloc");
    rc = ev_decode(data, size, a);
    FZ_CHECK(rc == 0 || rc == TK_ECORRUPT, "ev_decode returns 0 or TK_ECORRUPT");
    if (rc != 0)
        goto out;
    check_event(a, data, size);

    mpw_init(&w1);
    mpw_init(&w2);
    ev_encode(a, &w1);
    FZ_CHECK(w1.buf.size <= size, "the encoding is no longer than the input");
    copy = malloc(w1.buf.size ? w1.buf.size : 1);
    FZ_CHECK(copy != NULL, "malloc");
    memcpy(copy, w1.buf.data, w1.buf.size);
    FZ_CHECK(ev_decode(copy, w1.buf.size, b) == 0, "the re-encoding decodes");
    check_event(b, copy, w1.buf.size);
    FZ_CHECK(ev_equal(a, b), "decode(encode(e)) == e");
    ev_encode(b, &w2);
    FZ_CHECK(w2.buf.size == w1.buf.size && memcmp(w2.buf.data, w1.buf.data, w1.buf.size) == 0,
             "encode is deterministic");
    mpw_free(&w1);
    mpw_free(&w2);
out:
    free(copy);
    free(a);
    free(b);
    return 0;
}
