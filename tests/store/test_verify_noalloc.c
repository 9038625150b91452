/*
 * test_verify_noalloc.c - the verify path allocates nothing and opens no
 * LMDB transaction.
 *
 * This binary interposes mdb_txn_begin (forwarding to LMDB through
 * dlsym(RTLD_NEXT)) and counts the test thread's allocations
 * (tests/support/allocs.h). Both counters must stay at zero across many
 * verifications of every kind of answer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dlfcn.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "store/engine.h"
#include "tests/support/allocs.h"
#include "tests/support/fixture.h"
#include "tests/support/tkt.h"

static volatile long txns;

int mdb_txn_begin(MDB_env *env, MDB_txn *parent, unsigned int flags, MDB_txn **txn)
{
    static int (*real)(MDB_env *, MDB_txn *, unsigned int, MDB_txn **);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "mdb_txn_begin");
    txns++;
    return real(env, parent, flags, txn);
}


static void verify_allocates_nothing_and_opens_no_txn(void **state)
{
    tk_why said = {.msg = ""};
    (void)state;
    char *dir = tkt_mkdtemp();
    eng *e;
    fx_world w;
    char s[TK_SECRET_LEN + 1], gone[TK_SECRET_LEN + 1], bad[TK_SECRET_LEN + 1];
    tk_id id, gone_id;
    tk_verify v;
    tk_actor a;
    static const char *const roles[] = {"viewer", "editor", NULL};

    assert_int_equal(eng_open(dir, NULL, &e, &said), 0);
    fx_scenario(e, &w);
    for (int i = 0; i < 2000; i++) /* enough to have grown the index */
        assert_int_equal(fx_token(e, &w.alice, "t", roles, 0, &id, s), 0);
    assert_int_equal(fx_token(e, &w.alice, "t", roles, 0, &gone_id, gone), 0);
    assert_int_equal(fx_token_delete(e, &w.alice, &gone_id), 0);
    memcpy(bad, s, sizeof bad);
    bad[30] = bad[30] == 'x' ? 'y' : 'x';
    int64_t now = time(NULL);

    long t0 = txns;
    allocs_start();
    for (int i = 0; i < 10000; i++) {
        assert_int_equal(eng_verify(e, NULL, s, TK_SECRET_LEN, now, &v), TK_V_VALID);
        assert_int_equal(eng_verify(e, &id, s, TK_SECRET_LEN, now, &v), TK_V_VALID);
        assert_int_equal(eng_verify(e, NULL, gone, TK_SECRET_LEN, now, &v), TK_V_UNKNOWN);
        assert_int_equal(eng_verify(e, NULL, bad, TK_SECRET_LEN, now, &v), TK_V_MALFORMED);
        assert_int_equal(eng_verify(e, NULL, w.alice_key, TK_SECRET_LEN, now, &v),
                         TK_V_WRONG_KIND);
        assert_int_equal(eng_authenticate(e, w.alice_key, TK_SECRET_LEN, now, &a), 0);
    }
    /* The batched path the server takes for pipelined requests. */
    view_vreq reqs[VIEW_BATCH];
    view_probe probes[VIEW_BATCH];
    static const tk_verdict want[5] = {TK_V_VALID, TK_V_VALID, TK_V_UNKNOWN, TK_V_MALFORMED,
                                       TK_V_WRONG_KIND};
    for (int i = 0; i < VIEW_BATCH; i++) {
        const char *const sec[5] = {s, s, gone, bad, w.alice_key};
        reqs[i] = (view_vreq){i % 5 == 1 ? &id : NULL, sec[i % 5], TK_SECRET_LEN};
    }
    for (int i = 0; i < 2000; i++) {
        eng_verify_start(e, reqs, VIEW_BATCH, probes);
        for (int j = 0; j < VIEW_BATCH; j++)
            assert_int_equal(eng_verify_finish(e, &probes[j], now, &v), want[j % 5]);
    }
    long dalloc = allocs_stop(), dtxn = txns - t0;

    /* The counters do count: a listing opens a transaction, a write allocates. */
    allocs_start();
    assert_int_equal(fx_token(e, &w.alice, "t", roles, 0, NULL, NULL), 0);
    assert_true(allocs_stop() > 0);
    assert_true(txns > t0 + dtxn);

    assert_int_equal(dalloc, 0);
    assert_int_equal(dtxn, 0);
    eng_close(e);
    tkt_rmdir(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(verify_allocates_nothing_and_opens_no_txn),
    };
    return cmocka_run_group_tests_name("verify_noalloc", tests, NULL, NULL);
}
