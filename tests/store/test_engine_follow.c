/*
 * test_engine_follow.c - the engine's side of replication (store/engine.h):
 * the tap gives a primary's durable records in order and nothing before
 * its fsync; eng_follow on a replica's engine takes them (same seqs, same
 * chain hashes, same answers), skips a redelivery, and refuses a gap, a
 * broken chain or a forged payload with nothing applied; a read-only
 * engine refuses writes; an unavailable one vouches for no token; a
 * result says its seq and whether it takes access away (the barrier's).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/hist.h"
#include "store/engine.h"
#include "tests/support/fixture.h"
#include "tests/support/tkt.h"

static const char *const VIEWER[] = {"viewer", NULL};

/* The records a tap gave, copied. */
typedef struct taped {
    eng_rec r[256];
    uint8_t hash[256][TK_HASH_LEN];
    void *payload[256];
    size_t n;
} taped;

static void tap(void *arg, const eng_rec *r)
{
    taped *t = arg;
    assert_true(t->n < 256);
    if (t->n)
        assert_int_equal(r->seq, t->r[t->n - 1].seq + 1); /* in order, none missing */
    memcpy(t->hash[t->n], r->hash, TK_HASH_LEN);
    t->payload[t->n] = malloc(r->len ? r->len : 1);
    memcpy(t->payload[t->n], r->payload, r->len);
    t->r[t->n] = (eng_rec){r->seq, t->hash[t->n], t->payload[t->n], r->len};
    t->n++;
}

static void taped_free(taped *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->payload[i]);
    free(t);
}

typedef struct two {
    char *dir;
    eng *p, *r; /* the primary, a replica */
    taped *t;
    fx_world w;
} two;

static int setup(void **state)
{
    two *s = calloc(1, sizeof *s);
    tk_why why;
    s->dir = tkt_mkdtemp();
    s->t = calloc(1, sizeof *s->t);
    char *pd = tkt_path(s->dir, "p"), *rd = tkt_path(s->dir, "r");
    assert_int_equal(eng_open(pd, NULL, &s->p, &why), 0);
    assert_int_equal(eng_open(rd, NULL, &s->r, &why), 0);
    free(pd);
    free(rd);
    eng_set_tap(s->p, tap, s->t);
    fx_scenario(s->p, &s->w);
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    two *s = *state;
    eng_close(s->p);
    eng_close(s->r);
    tkt_rmdir(s->dir);
    free(s->dir);
    taped_free(s->t);
    free(s);
    return 0;
}

/* A replica's batch through the whole pipeline, as the writer runs it. */
static int follow(eng *e, const eng_rec *recs, size_t n, tk_why *why)
{
    uint64_t batch, last, durable;
    int rc = eng_follow(e, recs, n, &batch, &last, why);
    eng_apply(e);
    if (rc == 0 && batch && eng_sync(e, &durable) != 0)
        rc = TK_EIO;
    eng_publish(e);
    return rc;
}

static void same_head(eng *a, eng *b)
{
    uint64_t sa, sb;
    uint8_t ha[TK_HASH_LEN], hb[TK_HASH_LEN];
    eng_head(a, &sa, ha);
    eng_head(b, &sb, hb);
    assert_int_equal(sa, sb);
    assert_memory_equal(ha, hb, TK_HASH_LEN);
}

static void a_replica_answers_as_its_primary(void **state)
{
    two *s = *state;
    char secret[TK_SECRET_LEN + 1];
    tk_verify a, b;
    tk_why why;
    assert_int_equal(fx_token(s->p, &s->w.bob, "ci", VIEWER, 0, NULL, secret), 0);
    assert_int_equal(s->t->n, eng_last_seq(s->p)); /* every durable record, from seq 1 */
    for (size_t i = 0; i < s->t->n; i++) {
        uint8_t h[TK_HASH_LEN];
        assert_int_equal(eng_log_hash(s->p, s->t->r[i].seq, h, &why), 0);
        assert_memory_equal(h, s->t->r[i].hash, TK_HASH_LEN); /* the log's own chain hash */
    }
    assert_int_equal(follow(s->r, s->t->r, s->t->n, &why), 0);
    same_head(s->p, s->r);
    assert_int_equal(fx_verify(s->r, secret, &b), TK_V_VALID);
    assert_int_equal(fx_verify(s->p, secret, &a), TK_V_VALID);
    assert_string_equal(a.tenant, b.tenant);
    assert_string_equal(a.account, b.account);
    assert_int_equal(a.nperms, b.nperms);
    /* Personal keys are part of the log: alice's works on the replica. */
    tk_actor alice;
    assert_int_equal(fx_auth(s->r, s->w.alice_key, &alice), 0);
}

static uint64_t syncs(const eng *e)
{
    uint64_t cum[HIST_MAX_BUCKETS], count, sum;
    hist_read(eng_sync_hist(e), cum, &count, &sum);
    return count;
}

/* A replica's log is lazy (eng_set_lazy_sync): its records show without an
 * fdatasync, and its durable head lags until a real flush. */
static void a_lazy_replica_shows_records_before_its_flush(void **state)
{
    two *s = *state;
    char secret[TK_SECRET_LEN + 1];
    tk_verify v;
    tk_why why;
    eng_set_lazy_sync(s->r, true);
    assert_int_equal(follow(s->r, s->t->r, 1, &why), 0); /* the first real flush */
    assert_int_equal(fx_token(s->p, &s->w.bob, "ci", VIEWER, 0, NULL, secret), 0);
    uint64_t n = syncs(s->r);
    assert_int_equal(follow(s->r, s->t->r, s->t->n, &why), 0);
    assert_int_equal(fx_verify(s->r, secret, &v), TK_V_VALID);
    assert_int_equal(syncs(s->r), n);                       /* no fdatasync */
    assert_true(eng_last_seq(s->r) < eng_last_seq(s->p));  /* not on disk yet */
    char *rd = tkt_path(s->dir, "r");
    eng_close(s->r);
    assert_int_equal(eng_open(rd, NULL, &s->r, &why), 0);
    free(rd);
    same_head(s->p, s->r); /* reopened: the primary's log, record for record */
    assert_int_equal(fx_verify(s->r, secret, &v), TK_V_VALID);
}

static void a_redelivery_is_skipped(void **state)
{
    two *s = *state;
    tk_why why;
    size_t half = s->t->n / 2;
    assert_int_equal(follow(s->r, s->t->r, half, &why), 0);
    assert_int_equal(follow(s->r, s->t->r, s->t->n, &why), 0); /* the first half again */
    assert_int_equal(follow(s->r, s->t->r + 2, 3, &why), 0);   /* all old: nothing to do */
    same_head(s->p, s->r);
}

static void a_gap_is_refused_with_nothing_applied(void **state)
{
    two *s = *state;
    char secret[TK_SECRET_LEN + 1];
    tk_verify v;
    tk_why why = {.msg = ""};
    size_t before = s->t->n;
    assert_int_equal(fx_token(s->p, &s->w.bob, "ci", VIEWER, 0, NULL, secret), 0);
    assert_int_equal(follow(s->r, s->t->r, before - 1, &why), 0);
    uint64_t seq = eng_last_seq(s->r);
    /* The record before the token's is missing: the token's is refused too. */
    assert_int_equal(follow(s->r, s->t->r + before, s->t->n - before, &why), TK_ECORRUPT);
    assert_non_null(strstr(why.msg, "gap"));
    assert_int_equal(eng_last_seq(s->r), seq);
    assert_int_equal(fx_verify(s->r, secret, &v), TK_V_UNKNOWN);
    /* The right records still go in after it. */
    assert_int_equal(follow(s->r, s->t->r + before - 1, s->t->n - before + 1, &why), 0);
    assert_int_equal(fx_verify(s->r, secret, &v), TK_V_VALID);
    same_head(s->p, s->r);
}

static void a_broken_chain_is_refused_with_nothing_applied(void **state)
{
    two *s = *state;
    char secret[TK_SECRET_LEN + 1];
    tk_verify v;
    tk_why why = {.msg = ""};
    size_t before = s->t->n;
    assert_int_equal(fx_token(s->p, &s->w.bob, "ci", VIEWER, 0, NULL, secret), 0);
    size_t last = s->t->n - 1;
    assert_int_equal(follow(s->r, s->t->r, before, &why), 0);
    uint64_t seq = eng_last_seq(s->r);
    /* A hash that is not the record's. */
    s->t->hash[last][5] ^= 1;
    assert_int_equal(follow(s->r, s->t->r + before, s->t->n - before, &why), TK_ECORRUPT);
    assert_non_null(strstr(why.msg, "breaks the chain"));
    s->t->hash[last][5] ^= 1;
    /* A payload changed under the primary's hash (a forged record). */
    ((uint8_t *)s->t->payload[last])[s->t->r[last].len - 1] ^= 1;
    int rc = follow(s->r, s->t->r + before, s->t->n - before, &why);
    assert_int_equal(rc, TK_ECORRUPT);
    ((uint8_t *)s->t->payload[last])[s->t->r[last].len - 1] ^= 1;
    assert_int_equal(eng_last_seq(s->r), seq);
    assert_int_equal(fx_verify(s->r, secret, &v), TK_V_UNKNOWN);
    assert_int_equal(follow(s->r, s->t->r + before, s->t->n - before, &why), 0);
    assert_int_equal(fx_verify(s->r, secret, &v), TK_V_VALID);
}

static void the_tap_waits_for_the_fsync(void **state)
{
    two *s = *state;
    eng_req r;
    eng_res res;
    uint64_t batch, durable;
    eng_req_init(&r, ENG_TENANT_CREATE, &fx_operator);
    r.tenant = (tk_str){"initrode", 8};
    size_t n = s->t->n;
    assert_int_equal(eng_commit(s->p, &r, &res, 1, &batch), 0);
    eng_apply(s->p);
    eng_publish(s->p); /* not durable yet: nothing published, nothing tapped */
    assert_int_equal(s->t->n, n);
    assert_int_equal(eng_sync(s->p, &durable), 0);
    assert_int_equal(s->t->n, n);
    eng_publish(s->p);
    assert_int_equal(s->t->n, n + 1);
    assert_int_equal(s->t->r[n].seq, res.seq);
}

static void a_result_says_its_seq_and_whether_it_revokes(void **state)
{
    two *s = *state;
    eng_req r;
    eng_res res;
    tk_id id;
    assert_int_equal(fx_token(s->p, &s->w.bob, "ci", VIEWER, 0, &id, NULL), 0);
    eng_req_init(&r, ENG_TOKEN_DELETE, &s->w.bob);
    r.id = id;
    assert_int_equal(fx_exec(s->p, &r, &res), 0);
    assert_true(res.revokes);
    assert_int_equal(res.seq, eng_last_seq(s->p));
    eng_req_init(&r, ENG_TENANT_SET, &fx_operator);
    r.tenant = (tk_str){"acme", 4};
    r.flag = 0; /* API tokens off */
    assert_int_equal(fx_exec(s->p, &r, &res), 0);
    assert_true(res.revokes);
    r.flag = 1;
    assert_int_equal(fx_exec(s->p, &r, &res), 0);
    assert_false(res.revokes);
    eng_req_init(&r, ENG_TOKEN_CREATE, &s->w.bob);
    r.items[0] = (tk_str){"viewer", 6};
    r.nitems = 1;
    assert_int_equal(fx_exec(s->p, &r, &res), 0);
    assert_false(res.revokes);
    assert_int_equal(res.seq, eng_last_seq(s->p));
}

static void a_read_only_engine_refuses_writes(void **state)
{
    two *s = *state;
    eng_req r;
    eng_res res;
    eng_set_readonly(s->p, "a replica: write to the primary at 10.0.0.1:7070");
    eng_req_init(&r, ENG_TENANT_CREATE, &fx_operator);
    r.tenant = (tk_str){"initrode", 8};
    uint64_t seq = eng_last_seq(s->p);
    assert_int_equal(fx_exec(s->p, &r, &res), TK_EREADONLY);
    assert_string_equal(res.msg, "a replica: write to the primary at 10.0.0.1:7070");
    assert_int_equal(eng_last_seq(s->p), seq);
    eng_set_readonly(s->p, NULL);
    assert_int_equal(fx_exec(s->p, &r, &res), 0);
}

static void an_unavailable_engine_vouches_for_nothing(void **state)
{
    two *s = *state;
    char secret[TK_SECRET_LEN + 1];
    tk_verify v;
    assert_int_equal(fx_token(s->p, &s->w.bob, "ci", VIEWER, 0, NULL, secret), 0);
    eng_set_available(s->p, false);
    assert_false(eng_available(s->p));
    assert_int_equal(fx_verify(s->p, secret, &v), TK_V_UNAVAILABLE);
    assert_null(v.tenant);
    assert_int_equal(v.nroles, 0);
    eng_set_available(s->p, true);
    assert_int_equal(fx_verify(s->p, secret, &v), TK_V_VALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_replica_answers_as_its_primary, setup, teardown),
        cmocka_unit_test_setup_teardown(a_lazy_replica_shows_records_before_its_flush, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_redelivery_is_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(a_gap_is_refused_with_nothing_applied, setup, teardown),
        cmocka_unit_test_setup_teardown(a_broken_chain_is_refused_with_nothing_applied, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(the_tap_waits_for_the_fsync, setup, teardown),
        cmocka_unit_test_setup_teardown(a_result_says_its_seq_and_whether_it_revokes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_read_only_engine_refuses_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(an_unavailable_engine_vouches_for_nothing, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
