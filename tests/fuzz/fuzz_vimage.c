/*
 * fuzz_vimage.c - the view image's body (core/view.h view_load_creds, and
 * core/idx.h idx_load under it) over arbitrary bytes: what an open reads
 * from state/view.img, which a crash can tear and anyone who can write the
 * data directory can craft.
 *
 * Input: the stream view_save_creds writes (the role sets, then the
 * index), without the file's header and CRC (store/vimage.c), so that
 * inputs reach the structure checks instead of failing the CRC.
 *
 * Checked beyond memory safety (and no allocation beyond what the input's
 * length allows, no leak): a load is 0 or TK_ECORRUPT, and a refused load
 * leaves the view without credentials; an accepted view saves again to a
 * stream that loads to the same number of credentials, verifies nothing
 * (it has no tenants: a lookup answers unknown or mismatch), and frees.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "core/secret.h"
#include "core/view.h"
#include "tests/fuzz/fuzz.h"

typedef struct src {
    const uint8_t *p;
    size_t left;
} src;

static int get(void *arg, void *p, size_t n)
{
    src *s = arg;
    if (n > s->left)
        return TK_ECORRUPT;
    memcpy(p, s->p, n);
    s->p += n;
    s->left -= n;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    view *v;
    src s = {data, size};
    view_new(&v);
    int rc = view_load_creds(v, get, &s, size);
    FZ_CHECK(rc == 0 || rc == TK_ECORRUPT, "a load is accepted or refused as corrupt");
    if (rc != 0) {
        FZ_CHECK(view_cred_count(v) == 0, "a refused load leaves no credentials");
        view_free(v);
        return 0;
    }
    size_t n = view_cred_count(v);
    char miss[TK_SECRET_LEN + 1];
    uint8_t hash[TK_HASH_LEN];
    tk_id id;
    tk_verify out;
    memset(&id, 0xa5, sizeof id);
    secret_generate(TK_KIND_TOKEN, &id, miss, hash);
    tk_verdict vd = view_verify(v, NULL, miss, TK_SECRET_LEN, (int64_t)time(NULL), &out);
    FZ_CHECK(vd == TK_V_UNKNOWN || vd == TK_V_MISMATCH,
             "a view with no tenants verifies nothing");
    fz_buf out_s = {0};
    FZ_CHECK(view_save_creds(v, fz_buf_put, &out_s) == 0, "an accepted view saves");
    view *w;
    view_new(&w);
    src again = {out_s.p, out_s.len};
    FZ_CHECK(view_load_creds(w, get, &again, out_s.len) == 0, "what it saves loads");
    FZ_CHECK(view_cred_count(w) == n, "the same credentials");
    view_free(w);
    free(out_s.p);
    view_free(v);
    return 0;
}
