/*
 * fuzz_verify_reply.c - tkc_verify_decode (net/client.h), the verify reply
 * decoder a gateway runs on bytes from the network, over arbitrary bodies.
 *
 * Contract checked: 0 or TK_EPROTO, never a read outside the body (an
 * exact-size buffer from libFuzzer); on TK_EPROTO the result says invalid,
 * "malformed", with empty strings and no roles or permissions; on 0 with an
 * invalid verdict the same emptiness with the verdict's own reason; on 0 and
 * valid, a canonical lowercase client ID, tenant and account and every role
 * and permission NUL-terminated valid UTF-8 within their limits, the lists
 * inside the result's own storage, expires_at not negative. Decoding the
 * same body again into the same (reused) result gives the same answer.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/err.h"
#include "core/model.h"
#include "core/mp.h"
#include "core/secret.h"
#include "net/client.h"
#include "tests/fuzz/fuzz.h"

static void check_text(const char *s, size_t max, const char *what)
{
    size_t n = strnlen(s, max + 1);
    FZ_CHECK(n <= max, what);
    FZ_CHECK(mpr_utf8_valid(s, n), what);
}

static void check_in_store(const tkc_verify_res *r, const char *s)
{
    FZ_CHECK(s >= r->store_ && s < r->store_ + r->store_cap_, "list strings live in the store");
    FZ_CHECK(memchr(s, '\0', (size_t)(r->store_ + r->store_cap_ - s)) != NULL,
             "list strings end inside the store");
}

static void check_res(const tkc_verify_res *r, int rc)
{
    FZ_CHECK(rc == 0 || rc == TK_EPROTO, "0 or TK_EPROTO");
    FZ_CHECK(r->reason && strcmp(r->reason, model_verdict_name(r->verdict)) == 0,
             "reason names the verdict");
    if (rc != 0 || !r->valid) {
        FZ_CHECK(!r->valid && r->verdict != TK_V_VALID, "invalid");
        if (rc != 0)
            FZ_CHECK(r->verdict == TK_V_MALFORMED, "a malformed reply reads as malformed");
        FZ_CHECK(r->client_id[0] == '\0' && r->tenant[0] == '\0' && r->account[0] == '\0' &&
                     r->nroles == 0 && r->nperms == 0 && r->expires_at == 0,
                 "an invalid answer carries nothing else");
        return;
    }
    tk_id id;
    char again[TK_ID_STR_LEN + 1];
    FZ_CHECK(r->verdict == TK_V_VALID, "valid verdict");
    FZ_CHECK(strlen(r->client_id) == TK_ID_STR_LEN &&
                 secret_id_parse(r->client_id, TK_ID_STR_LEN, &id) == 0,
             "client_id is a UUID");
    secret_id_format(&id, again);
    FZ_CHECK(strcmp(again, r->client_id) == 0, "client_id is canonical lowercase");
    check_text(r->tenant, TK_SLUG_MAX, "tenant");
    check_text(r->account, TK_SLUG_MAX, "account");
    FZ_CHECK(r->nroles <= TK_MAX_ROLES && r->nperms <= TK_MAX_TENANT_PERMS, "list limits");
    for (uint32_t i = 0; i < r->nroles; i++) {
        check_in_store(r, r->roles[i]);
        check_text(r->roles[i], TK_KEY_MAX, "role");
    }
    for (uint32_t i = 0; i < r->nperms; i++) {
        check_in_store(r, r->perms[i]);
        check_text(r->perms[i], TK_KEY_MAX, "permission");
    }
    FZ_CHECK(r->expires_at >= 0, "expires_at not negative");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tkc_verify_res r = TKC_VERIFY_RES_INIT;
    int rc1, rc2;
    bool valid;
    tk_verdict v;
    uint32_t nroles, nperms;

    rc1 = tkc_verify_decode(data, size, &r);
    check_res(&r, rc1);
    valid = r.valid;
    v = r.verdict;
    nroles = r.nroles;
    nperms = r.nperms;
    rc2 = tkc_verify_decode(data, size, &r); /* reuses the store */
    check_res(&r, rc2);
    FZ_CHECK(rc1 == rc2 && valid == r.valid && v == r.verdict && nroles == r.nroles &&
                 nperms == r.nperms,
             "decoding is deterministic");
    tkc_verify_res_free(&r);
    return 0;
}
