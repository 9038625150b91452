/*
 * test_snap.c - snapshots of the state (store/snap.c) and data directories
 * bootstrapped from them (eng_snapshot, eng_bootstrap): the same answers
 * as the source, writes that continue the chain, refusals of a damaged
 * snapshot, of a used directory and of a damaged based log, and the rule
 * that a snapshot never holds a batch the log has not made durable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/crc32c.h"
#include "core/err.h"
#include "store/elog.h"
#include "store/engine.h"
#include "store/fio.h"
#include "store/replay.h"
#include "tests/support/fixture.h"
#include "tests/support/tkt.h"

#define SNAP_HDR_LEN 64 /* store/snap.h's (its state.h would shadow cmocka's `state`) */

static const char *const ADMIN[] = {"admin", NULL};
static const char *const VIEWER[] = {"viewer", NULL};

typedef struct ctx {
    char *root;       /* a temp dir holding everything below */
    char *src, *dst, *snap;
    eng *e;           /* the source engine, open */
    fx_world w;
    char tok[3][TK_SECRET_LEN + 1]; /* tok[1] is deleted */
    tk_id ids[3];
} ctx;

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static int setup(void **state)
{
    tk_why said = {.msg = ""};
    ctx *c = calloc(1, sizeof *c);
    c->root = tkt_mkdtemp();
    c->src = tkt_path(c->root, "src");
    c->dst = tkt_path(c->root, "dst");
    c->snap = tkt_path(c->root, "state.snap");
    assert_int_equal(eng_open(c->src, NULL, &c->e, &said), 0);
    fx_scenario(c->e, &c->w);
    assert_int_equal(fx_token(c->e, &c->w.alice, "ci", ADMIN, 0, &c->ids[0], c->tok[0]), 0);
    assert_int_equal(fx_token(c->e, &c->w.alice, "old", VIEWER, 0, &c->ids[1], c->tok[1]), 0);
    assert_int_equal(fx_token(c->e, &c->w.ellen, "labs", ADMIN, 0, &c->ids[2], c->tok[2]), 0);
    assert_int_equal(fx_token_delete(c->e, &c->w.alice, &c->ids[1]), 0);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx *c = *state;
    eng_close(c->e);
    tkt_rmdir(c->root);
    free(c->root);
    free(c->src);
    free(c->dst);
    free(c->snap);
    free(c);
    return 0;
}

/* replay_dump's canonical text of e's state (the caller frees). */
static char *dump_of(eng *e)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    tk_why said = {.msg = ""};
    assert_int_equal(replay_dump(e, f, NULL, &said), 0);
    fclose(f);
    return buf;
}

static void take(ctx *c, uint64_t *seq, uint8_t hash[TK_HASH_LEN])
{
    tk_why said = {.msg = ""};
    assert_int_equal(eng_snapshot(c->e, c->snap, seq, hash, &said), 0);
}

/* e answers every token of the world as the source did. */
static void same_answers(ctx *c, eng *e)
{
    for (int i = 0; i < 3; i++) {
        tk_verify a, b;
        tk_verdict va = fx_verify(c->e, c->tok[i], &a), vb = fx_verify(e, c->tok[i], &b);
        assert_int_equal(va, vb);
        assert_int_equal(vb, i == 1 ? TK_V_UNKNOWN : TK_V_VALID);
        if (vb == TK_V_VALID) {
            assert_string_equal(a.tenant, b.tenant);
            assert_string_equal(a.account, b.account);
            assert_int_equal(a.nperms, b.nperms);
            assert_int_equal(a.nroles, b.nroles);
        }
    }
}

static void bootstrap_answers_as_the_source_and_goes_on(void **state)
{
    ctx *c = *state;
    tk_why said = {.msg = ""};
    uint64_t s;
    uint8_t h[TK_HASH_LEN], head[TK_HASH_LEN];
    eng *e;

    take(c, &s, h);
    assert_int_equal(s, eng_last_seq(c->e));
    eng_head(c->e, &s, head);
    assert_memory_equal(h, head, TK_HASH_LEN);
    assert_int_equal(eng_bootstrap(c->dst, c->snap, &said), 0);
    char *key = tkt_path(c->dst, "operator.key");
    assert_false(exists(key)); /* per server: the open makes one */
    assert_int_equal(eng_open(c->dst, NULL, &e, &said), 0);
    assert_true(exists(key));
    free(key);
    assert_int_equal(eng_last_seq(e), s);
    same_answers(c, e);
    char *a = dump_of(c->e), *b = dump_of(e);
    assert_string_equal(a, b);
    free(b);

    /* writes go on at S+1, linking to H; the personal key still acts */
    tk_actor alice;
    char tok[TK_SECRET_LEN + 1];
    tk_verify v;
    assert_int_equal(fx_auth(e, c->w.alice_key, &alice), 0);
    assert_int_equal(fx_token(e, &alice, "after", ADMIN, 0, NULL, tok), 0);
    assert_int_equal(fx_token_delete(e, &alice, &c->ids[0]), 0);
    assert_int_equal(eng_last_seq(e), s + 2);
    eng_close(e);
    assert_int_equal(eng_open(c->dst, NULL, &e, &said), 0);
    assert_int_equal(eng_last_seq(e), s + 2);
    assert_int_equal(fx_verify(e, tok, &v), TK_V_VALID);
    assert_int_equal(fx_verify(e, c->tok[0], &v), TK_V_UNKNOWN);
    assert_int_equal(fx_verify(e, c->tok[2], &v), TK_V_VALID);
    b = dump_of(e);
    assert_string_not_equal(a, b);
    free(a);
    free(b);
    eng_close(e);

    char *log = tkt_path(c->dst, "log");
    elog_report rep;
    elog_iter *it;
    uint64_t seq;
    const void *p;
    size_t len;
    assert_int_equal(elog_check(log, NULL, NULL, &rep, &said), 0);
    assert_int_equal(rep.base_seq, s);
    assert_memory_equal(rep.base_hash, h, TK_HASH_LEN);
    assert_int_equal(rep.records, 2);
    assert_int_equal(rep.last_seq, s + 2);
    assert_int_equal(elog_iter_open(log, s + 1, &it, &said), 0);
    assert_memory_equal(elog_iter_hash(it), h, TK_HASH_LEN);
    assert_int_equal(elog_iter_next(it, &seq, &p, &len, &said), 1);
    assert_int_equal(seq, s + 1);
    elog_iter_free(it);
    free(log);
}

/* A copy of the snapshot with one bit flipped at off is refused as
 * damaged, and leaves nothing behind. */
static void refused_flipped(ctx *c, const uint8_t *img, size_t n, size_t off)
{
    tk_why said = {.msg = ""};
    char *bad = tkt_path(c->root, "bad.snap"), *tmp = NULL;
    uint8_t *copy = malloc(n);
    memcpy(copy, img, n);
    copy[off] ^= 0x10;
    assert_int_equal(tkt_write_file(bad, copy, n), 0);
    int rc = eng_bootstrap(c->dst, bad, &said);
    if (rc != TK_ECORRUPT)
        fail_msg("flip at %zu of %zu: %d %s", off, n, rc, said.msg);
    assert_non_null(strstr(said.msg, "damaged"));
    assert_false(exists(c->dst));
    tmp = malloc(strlen(c->dst) + 16);
    sprintf(tmp, "%s.bootstrap", c->dst);
    assert_false(exists(tmp));
    free(tmp);
    free(copy);
    free(bad);
}

static void flipped_bits_anywhere_are_refused(void **state)
{
    ctx *c = *state;
    tk_why said = {.msg = ""};
    uint64_t s;
    uint8_t h[TK_HASH_LEN];
    size_t n;

    take(c, &s, h);
    uint8_t *img = tkt_read_file(c->snap, &n);
    assert_non_null(img);
    assert_true(n > SNAP_HDR_LEN + 32);
    for (size_t off = 0; off < SNAP_HDR_LEN; off++) /* the header, every byte */
        refused_flipped(c, img, n, off);
    for (size_t off = SNAP_HDR_LEN; off < n - 32; off += 997) /* the data */
        refused_flipped(c, img, n, off);
    refused_flipped(c, img, n, n - 33);
    for (size_t off = n - 32; off < n; off++) /* the digest, every byte */
        refused_flipped(c, img, n, off);
    /* cut short */
    char *bad = tkt_path(c->root, "short.snap");
    assert_int_equal(tkt_write_file(bad, img, n - 1), 0);
    assert_int_equal(eng_bootstrap(c->dst, bad, &said), TK_ECORRUPT);
    assert_false(exists(c->dst));
    free(bad);
    /* and the intact one still goes in */
    assert_int_equal(eng_bootstrap(c->dst, c->snap, &said), 0);
    free(img);
}

static void bootstrap_only_into_a_new_directory(void **state)
{
    ctx *c = *state;
    tk_why said = {.msg = ""};
    uint64_t s;
    uint8_t h[TK_HASH_LEN];

    take(c, &s, h);
    assert_int_equal(eng_bootstrap(c->src, c->snap, &said), TK_EEXIST);
    assert_non_null(strstr(said.msg, "already holds a"));
    assert_int_equal(mkdir(c->dst, 0700), 0);
    char *stray = tkt_path(c->dst, "notes.txt");
    assert_int_equal(tkt_write_file(stray, "x", 1), 0);
    assert_int_equal(eng_bootstrap(c->dst, c->snap, &said), TK_EEXIST);
    assert_non_null(strstr(said.msg, "not empty"));
    unlink(stray);
    free(stray);
    /* a leftover of a killed bootstrap is started over */
    char *tmp = malloc(strlen(c->dst) + 16);
    sprintf(tmp, "%s.bootstrap", c->dst);
    assert_int_equal(mkdir(tmp, 0700), 0);
    char *junk = tkt_path(tmp, "state");
    assert_int_equal(mkdir(junk, 0700), 0);
    free(junk);
    assert_int_equal(eng_bootstrap(c->dst, c->snap, &said), 0); /* the empty dir is fine */
    assert_false(exists(tmp));
    assert_int_equal(eng_bootstrap(c->dst, c->snap, &said), TK_EEXIST);
    free(tmp);
}

/* Writes DIR/base with seq and hash, a valid crc (as elog.h defines it). */
static void write_base(const char *log, uint64_t seq, const uint8_t hash[TK_HASH_LEN])
{
    uint8_t b[52];
    memcpy(b, "TKBASE01", 8);
    for (int i = 0; i < 8; i++)
        b[8 + i] = (uint8_t)(seq >> (8 * i));
    memcpy(b + 16, hash, TK_HASH_LEN);
    uint32_t crc = crc32c_extend(0, b, 48);
    for (int i = 0; i < 4; i++)
        b[48 + i] = (uint8_t)(crc >> (8 * i));
    char *p = tkt_path(log, "base");
    assert_int_equal(tkt_write_file(p, b, sizeof b), 0);
    free(p);
}

static void refused_log(const char *log, const char *needle)
{
    tk_why said = {.msg = ""};
    elog_report rep;
    elog *lg = NULL;
    assert_int_equal(elog_open(log, NULL, &lg, &said), TK_ECORRUPT);
    assert_null(lg);
    if (!strstr(said.msg, needle))
        fail_msg("expected \"%s\" in: %s", needle, said.msg);
    said.msg[0] = '\0';
    assert_int_equal(elog_check(log, NULL, NULL, &rep, &said), TK_ECORRUPT);
    assert_non_null(strstr(said.msg, needle));
}

static void a_damaged_base_is_refused(void **state)
{
    ctx *c = *state;
    tk_why said = {.msg = ""};
    uint64_t s;
    uint8_t h[TK_HASH_LEN], other[TK_HASH_LEN];
    eng *e;
    tk_actor alice;

    take(c, &s, h);
    assert_int_equal(eng_bootstrap(c->dst, c->snap, &said), 0);
    assert_int_equal(eng_open(c->dst, NULL, &e, &said), 0);
    assert_int_equal(fx_auth(e, c->w.alice_key, &alice), 0);
    assert_int_equal(fx_token(e, &alice, "after", ADMIN, 0, NULL, NULL), 0);
    eng_close(e);
    char *log = tkt_path(c->dst, "log"), *base = tkt_path(log, "base");
    size_t n;
    uint8_t *orig = tkt_read_file(base, &n);

    /* another chain hash, the crc made right: the first record does not link */
    memcpy(other, h, sizeof other);
    other[5] ^= 1;
    write_base(log, s, other);
    refused_log(log, "does not link to the base");
    assert_int_equal(eng_open(c->dst, NULL, &e, &said), TK_ECORRUPT);
    /* another seq: the first segment is not where the base says */
    write_base(log, s - 1, h);
    refused_log(log, "says its first event is");
    /* a flipped bit, crc not fixed: not a base file */
    orig[20] ^= 1;
    assert_int_equal(tkt_write_file(base, orig, n), 0);
    refused_log(log, "not a valid base file");
    orig[20] ^= 1;
    /* removed: the log starts at S+1 with nothing before it */
    assert_int_equal(unlink(base), 0);
    refused_log(log, "with no base file");
    assert_int_equal(eng_open(c->dst, NULL, &e, &said), TK_ECORRUPT);
    /* put back: whole again */
    assert_int_equal(tkt_write_file(base, orig, n), 0);
    assert_int_equal(eng_open(c->dst, NULL, &e, &said), 0);
    assert_int_equal(eng_last_seq(e), s + 1);
    eng_close(e);
    free(orig);
    free(base);
    free(log);
}

/* The state behind a based log cannot be rebuilt from it: a state moved
 * away is refused at open, naming the base, not rebuilt short. */
static void a_based_log_does_not_rebuild_a_missing_state(void **state)
{
    ctx *c = *state;
    tk_why said = {.msg = ""};
    uint64_t s;
    uint8_t h[TK_HASH_LEN];
    eng *e;

    take(c, &s, h);
    assert_int_equal(eng_bootstrap(c->dst, c->snap, &said), 0);
    char *st = tkt_path(c->dst, "state");
    tkt_rmdir(st);
    free(st);
    assert_int_not_equal(eng_open(c->dst, NULL, &e, &said), 0);
    assert_non_null(strstr(said.msg, "starts after event"));
}

/* eng_apply commits a batch to LMDB before eng_sync made it durable: a
 * snapshot taken then holds it only once the log does. */
static void snapshot_never_holds_an_undurable_batch(void **state)
{
    ctx *c = *state;
    tk_why said = {.msg = ""};
    eng_req r;
    eng_res res;
    uint64_t batch, s, durable;
    uint8_t h[TK_HASH_LEN];

    eng_req_init(&r, ENG_ACCOUNT_CREATE, &fx_operator);
    r.tenant = (tk_str){"acme", 4};
    r.account = (tk_str){"hooli", 5};
    uint64_t before = eng_last_seq(c->e);
    assert_int_equal(eng_commit(c->e, &r, &res, 1, &batch), 0);
    assert_int_equal(res.status, 0);
    eng_apply(c->e);
    assert_int_equal(eng_last_seq(c->e), before); /* LMDB ahead of the durable log */
    assert_int_equal(eng_snapshot(c->e, c->snap, &s, h, &said), 0);
    assert_int_equal(s, before + 1);
    assert_true(eng_last_seq(c->e) >= s);
    assert_int_equal(eng_sync(c->e, &durable), 0);
    eng_publish(c->e);

    /* the same when the log's flush fails: no snapshot at all */
    unlink(c->snap);
    r.account = (tk_str){"pied", 4};
    assert_int_equal(eng_commit(c->e, &r, &res, 1, &batch), 0);
    eng_apply(c->e);
    fio_fault_arm(FIO_FSYNC, 1);
    assert_int_not_equal(eng_snapshot(c->e, c->snap, &s, h, &said), 0);
    fio_fault_arm(FIO_FSYNC, 0);
    assert_false(exists(c->snap));
    char *tmp = malloc(strlen(c->snap) + 8);
    sprintf(tmp, "%s.tmp", c->snap);
    assert_false(exists(tmp));
    free(tmp);
    assert_true(eng_fenced(c->e, NULL));
    (void)eng_sync(c->e, &durable);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(bootstrap_answers_as_the_source_and_goes_on, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(flipped_bits_anywhere_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(bootstrap_only_into_a_new_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(a_damaged_base_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(a_based_log_does_not_rebuild_a_missing_state, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(snapshot_never_holds_an_undurable_batch, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
