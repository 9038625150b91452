/*
 * test_head.c - store/head.c and the engine's signed heads: a key made
 * once and read back, heads that verify and heads that do not, and a
 * tokend with a signing key refusing a log cut short (at a record
 * boundary, inside the last record, whole segments) or edited and chained
 * again, which the chain alone cannot tell.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/event.h"
#include "core/mp.h"
#include "store/elog.h"
#include "store/engine.h"
#include "store/head.h"
#include "tests/support/fixture.h"
#include "tests/support/logedit.h"
#include "tests/support/tkt.h"

typedef struct ctx {
    char *root, *dir, *key, *pub;
} ctx;

static int setup(void **state)
{
    ctx *c = calloc(1, sizeof *c);
    c->root = tkt_mkdtemp();
    c->dir = tkt_path(c->root, "data");
    c->key = tkt_path(c->root, "sign.key"); /* outside the data directory */
    c->pub = tkt_path(c->root, "sign.key.pub");
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx *c = *state;
    tkt_rmdir(c->root);
    free(c->root), free(c->dir), free(c->key), free(c->pub);
    free(c);
    return 0;
}

static int open_signed(ctx *c, eng **e, tk_why *why)
{
    eng_opts o = {.sign_key = c->key};
    why->msg[0] = '\0';
    return eng_open(c->dir, &o, e, why);
}

/* A store with n tenants, closed (its last head signed at close). */
static void make_store(ctx *c, int n, uint64_t segment_bytes)
{
    eng *e;
    tk_why why;
    eng_opts o = {.sign_key = c->key, .segment_bytes = segment_bytes};
    assert_int_equal(eng_open(c->dir, &o, &e, &why), 0);
    for (int i = 0; i < n; i++) {
        char t[32];
        snprintf(t, sizeof t, "t%d", i);
        assert_int_equal(fx_tenant(e, t), 0);
    }
    eng_close(e);
}

static void key_made_once_then_read_back(void **state)
{
    ctx *c = *state;
    head_key *k, *k2;
    tk_why why;
    uint8_t p1[32], p2[32], pub[32];
    assert_int_equal(head_key_load(c->key, &k, &why), 0);
    struct stat st;
    assert_int_equal(stat(c->key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    head_key_pub(k, p1);
    assert_int_equal(head_key_load(c->key, &k2, &why), 0);
    head_key_pub(k2, p2);
    assert_memory_equal(p1, p2, 32);
    assert_int_equal(head_pub_load(c->pub, pub, &why), 0);
    assert_memory_equal(p1, pub, 32);
    head_key_free(k2);
    /* a key others may read is refused */
    assert_int_equal(chmod(c->key, 0644), 0);
    assert_int_equal(head_key_load(c->key, &k2, &why), TK_EINVAL);
    assert_non_null(strstr(why.msg, "chmod 600"));
    assert_int_equal(chmod(c->key, 0600), 0);

    /* a head verifies with its key, a changed one does not */
    char *logdir = tkt_path(c->root, "log");
    mkdir(logdir, 0700);
    head_rec h = {.seq = 42, .time_ms = 1700000000000}, got;
    memset(h.hash, 0xab, sizeof h.hash);
    bool found;
    assert_int_equal(head_latest(p1, logdir, c->key, &got, &found, &why), 0);
    assert_false(found);
    assert_int_equal(head_write(k, logdir, &h, &why), 0);
    assert_int_equal(head_latest(p1, logdir, c->key, &got, &found, &why), 0);
    assert_true(found);
    assert_int_equal(got.seq, 42);
    assert_memory_equal(got.hash, h.hash, 32);
    char *hf = tkt_path(logdir, "head");
    size_t len;
    char *text = (char *)tkt_read_file(hf, &len);
    char *sp = strstr(text, " 42 ");
    sp[2] = '3'; /* seq 43: the signature no longer covers it */
    assert_int_equal(tkt_write_file(hf, text, len), 0);
    assert_int_equal(head_latest(p1, logdir, c->key, &got, &found, &why), TK_ECORRUPT);
    assert_non_null(strstr(why.msg, "does not verify"));
    free(text);
    free(hf);
    free(logdir);
    head_key_free(k);
    /* --expect-head's form */
    char ok[80] = "7:";
    memset(ok + 2, 'a', 64);
    ok[66] = '\0';
    assert_int_equal(head_parse(ok, &got), 0);
    assert_int_equal(got.seq, 7);
    assert_int_equal(head_parse("7:abc", &got), TK_EINVAL);
    assert_int_equal(head_parse("x:aa", &got), TK_EINVAL);
}

/* The segment files of the log, sorted. */
static int seg_names(const char *logdir, char names[][64], int max)
{
    DIR *d = opendir(logdir);
    struct dirent *x;
    int n = 0;
    while ((x = readdir(d)) && n < max)
        if (strlen(x->d_name) > 4 && !strcmp(x->d_name + strlen(x->d_name) - 4, ".seg"))
            snprintf(names[n++], 64, "%s", x->d_name);
    closedir(d);
    qsort(names, (size_t)n, 64, (int (*)(const void *, const void *))strcmp);
    return n;
}

/* The log cut to its first keep records (a cut at a record boundary, the
 * log then ending cleanly; its signed head left where it was), and state/
 * gone, as after a rebuild or a set-aside. */
static void cut_records(ctx *c, uint64_t keep)
{
    char *logdir = tkt_path(c->dir, "log"), *st = tkt_path(c->dir, "state");
    logedit_replace(logdir, keep, 0);
    tkt_rmdir(st);
    free(st), free(logdir);
}

static void cut_at_a_boundary_is_refused(void **state)
{
    ctx *c = *state;
    eng *e;
    tk_why why;
    make_store(c, 20, 0);
    cut_records(c, 17); /* the last three gone */
    assert_int_equal(open_signed(c, &e, &why), TK_ECORRUPT);
    assert_non_null(strstr(why.msg, "tampered"));
    assert_non_null(strstr(why.msg, "ends at event 17, before its signed head at 20"));
    /* without the key the history looks whole: the chain cannot tell */
    assert_int_equal(eng_open(c->dir, NULL, &e, &why), 0);
    assert_int_equal(eng_last_seq(e), 17);
    eng_close(e);
}

static void cut_inside_the_last_record_is_refused(void **state)
{
    ctx *c = *state;
    eng *e;
    tk_why why;
    char names[8][64];
    make_store(c, 5, 0);
    char *logdir = tkt_path(c->dir, "log");
    int n = seg_names(logdir, names, 8);
    char *seg = tkt_path(logdir, names[n - 1]);
    struct stat st;
    assert_int_equal(stat(seg, &st), 0);
    assert_int_equal(truncate(seg, st.st_size - 5), 0); /* a torn tail: cut at the next start */
    char *sd = tkt_path(c->dir, "state");
    tkt_rmdir(sd);
    assert_int_equal(open_signed(c, &e, &why), TK_ECORRUPT);
    assert_non_null(strstr(why.msg, "before its signed head at 5"));
    free(sd), free(seg), free(logdir);
}

static void whole_segments_removed_are_refused(void **state)
{
    ctx *c = *state;
    eng *e;
    tk_why why;
    char names[64][64];
    make_store(c, 40, 1024); /* small segments: several */
    char *logdir = tkt_path(c->dir, "log");
    int n = seg_names(logdir, names, 64);
    assert_true(n >= 3);
    char *last = tkt_path(logdir, names[n - 1]);
    assert_int_equal(unlink(last), 0); /* the last segment gone */
    char *sd = tkt_path(c->dir, "state");
    tkt_rmdir(sd);
    assert_int_equal(open_signed(c, &e, &why), TK_ECORRUPT);
    assert_non_null(strstr(why.msg, "tampered"));
    free(sd), free(last), free(logdir);
}

static void rechained_edit_is_refused(void **state)
{
    ctx *c = *state;
    eng *e;
    tk_why why;
    make_store(c, 6, 0);
    /* record 3 changed and every later one chained again, the head kept;
     * state/ gone, so the state's own chain hash cannot tell either */
    char *logdir = tkt_path(c->dir, "log"), *sd = tkt_path(c->dir, "state");
    logedit_replace(logdir, 0, 3);
    tkt_rmdir(sd);
    assert_int_equal(open_signed(c, &e, &why), TK_ECORRUPT);
    assert_non_null(strstr(why.msg, "a record up to there was changed"));
    free(sd), free(logdir);
}

/* Heads come while writes come, and the log that holds its head opens. */
static void heads_follow_the_writes(void **state)
{
    ctx *c = *state;
    eng *e;
    tk_why why;
    make_store(c, 3, 0);
    assert_int_equal(open_signed(c, &e, &why), 0);
    assert_int_equal(fx_tenant(e, "later"), 0);
    tkt_sleep_ms(1100);
    assert_int_equal(fx_tenant(e, "later-2"), 0); /* a second on: signed now */
    uint8_t pub[32];
    head_rec h;
    bool found;
    char *logdir = tkt_path(c->dir, "log");
    assert_int_equal(head_pub_load(c->pub, pub, &why), 0);
    assert_int_equal(head_latest(pub, logdir, c->key, &h, &found, &why), 0);
    assert_true(found);
    assert_int_equal(h.seq, 5);
    eng_close(e);
    assert_int_equal(open_signed(c, &e, &why), 0);
    eng_close(e);
    free(logdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(key_made_once_then_read_back, setup, teardown),
        cmocka_unit_test_setup_teardown(cut_at_a_boundary_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(cut_inside_the_last_record_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(whole_segments_removed_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(rechained_edit_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(heads_follow_the_writes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
