/*
 * test_tbunits.c - tokenbench's pure modules: the histogram's bucket
 * bounds and quantiles (bench/tokenbench/hist.c), the strict RESP parser
 * fed whole, split at every offset and fed bad input (resp.c), the request
 * picker and the tokens file (work.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "bench/tokenbench/hist.h"
#include "bench/tokenbench/resp.h"
#include "bench/tokenbench/work.h"
#include "tests/support/tkt.h"

/* Every value lies in its bucket, within 1/HIST_SUB of the bucket's top,
 * and indexes never go down as values go up. */
static void hist_buckets_bound_values(void **state)
{
    (void)state;
    uint32_t last = 0;
    for (uint64_t v = 0; v < 5000000; v += 1 + v / 97) {
        uint32_t i = hist_index(v);
        assert_true(i < HIST_BUCKETS);
        assert_true(i >= last);
        last = i;
        uint64_t high = hist_bucket_high(i);
        assert_true(high >= v);
        assert_true((double)(high - v) <= (double)v / HIST_SUB + 1);
        if (i > 0)
            assert_true(hist_bucket_high(i - 1) < v);
    }
    assert_true(hist_index(UINT64_MAX) == HIST_BUCKETS - 1);
    assert_true(hist_bucket_high(HIST_BUCKETS - 1) == UINT64_MAX);
}

static void hist_quantiles_are_close_and_never_below(void **state)
{
    (void)state;
    hist *h = malloc(sizeof *h), *g = malloc(sizeof *g);
    hist_reset(h);
    hist_reset(g);
    assert_int_equal(hist_quantile(h, 0.5), 0);
    /* 1..100000 ns: the q-quantile is q * 100000 */
    for (uint64_t v = 1; v <= 100000; v++)
        hist_record(v % 2 ? h : g, v);
    hist_merge(h, g);
    assert_int_equal(h->count, 100000);
    assert_int_equal(h->min, 1);
    assert_int_equal(h->max, 100000);
    const double qs[] = {0.5, 0.9, 0.99, 0.999};
    for (int i = 0; i < 4; i++) {
        double want = qs[i] * 100000;
        double got = (double)hist_quantile(h, qs[i]);
        assert_true(got >= want);
        assert_true(got <= want * (1 + 1.0 / HIST_SUB) + 1);
    }
    assert_int_equal(hist_quantile(h, 1.0), 100000);
    /* one outlier: the maximum is exact, not a bucket's top */
    hist_record(h, 123456789);
    assert_int_equal(hist_quantile(h, 1.0), 123456789);
    free(h);
    free(g);
}

/* ---- RESP ----------------------------------------------------------------- */

typedef struct resp_case {
    const char *in;
    resp_kind kind;
    const char *s; /* expected bytes (status, error, bulk) */
    int64_t num;
} resp_case;

static const resp_case good[] = {
    {"+OK\r\n", RESP_STATUS, "OK", 0},
    {"-ERR wrong type\r\n", RESP_ERROR, "ERR wrong type", 0},
    {":0\r\n", RESP_INT, NULL, 0},
    {":-42\r\n", RESP_INT, NULL, -42},
    {"$-1\r\n", RESP_NIL, NULL, 0},
    {"*-1\r\n", RESP_NIL, NULL, 0},
    {"$0\r\n\r\n", RESP_BULK, "", 0},
    {"$5\r\nab\r\nc\r\n", RESP_BULK, "ab\r\nc", 0},
    {"*2\r\n", RESP_ARRAY, NULL, 2},
};

static void resp_whole_and_split(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof good / sizeof good[0]; c++) {
        const uint8_t *in = (const uint8_t *)good[c].in;
        size_t len = strlen(good[c].in);
        resp_reply r;
        /* every proper prefix is incomplete, never an error */
        for (size_t cut = 0; cut < len; cut++)
            assert_int_equal(resp_parse(in, cut, &r), 0);
        /* whole, and with the next reply glued on: takes exactly its bytes */
        char two[128];
        snprintf(two, sizeof two, "%s+NEXT\r\n", good[c].in);
        assert_int_equal(resp_parse(in, len, &r), (long)len);
        assert_int_equal(resp_parse((const uint8_t *)two, strlen(two), &r), (long)len);
        assert_int_equal(r.kind, good[c].kind);
        assert_true(r.num == good[c].num);
        if (good[c].s) {
            assert_int_equal(r.len, strlen(good[c].s));
            assert_memory_equal(r.s, good[c].s, r.len);
        }
    }
}

static void resp_refuses_what_is_not_resp2(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "?\r\n",          "OK\r\n",        "+OK\n",        "+O\rK\r\n", ":+1\r\n",
        ":01\r\n",        ":-0\r\n",       ":1a\r\n",      ":\r\n",     "$-2\r\n",
        "$3\r\nabcd\r\n", "$3\r\nabc\n\n", "$99999999999\r\n",
        ":99999999999999999999\r\n",       "$2097152\r\n", "*-2\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        resp_reply r;
        long k = resp_parse((const uint8_t *)bad[i], strlen(bad[i]), &r);
        if (k != -1)
            fail_msg("accepted %zu: '%s' (%ld)", i, bad[i], k);
    }
    /* a line longer than the limit is refused, not waited for */
    size_t n = RESP_LINE_MAX + 10;
    uint8_t *big = malloc(n);
    memset(big, 'x', n);
    big[0] = '+';
    resp_reply r;
    assert_int_equal(resp_parse(big, n, &r), -1);
    free(big);
}

static void resp_command_round_trip(void **state)
{
    (void)state;
    uint8_t out[128];
    const char *argv[3] = {"SET", "k", "v\r\n"};
    size_t argl[3] = {3, 1, 3};
    size_t n = resp_command(out, sizeof out, 3, argv, argl);
    const char want[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n";
    assert_int_equal(n, sizeof want - 1);
    assert_memory_equal(out, want, n);
    assert_int_equal(resp_command(out, 10, 3, argv, argl), 0); /* no room: nothing */
}

/* ---- workload ------------------------------------------------------------- */

static void picker_mixes_and_skews(void **state)
{
    (void)state;
    char *dir = tkt_mkdtemp(), *path = tkt_path(dir, "tokens");
    work_tokens t, back;
    work_tokens_alloc(&t, 1000, "acme", "globex", "viewer,editor");
    for (size_t i = 0; i < t.n; i++) {
        tk_id id;
        uint8_t hash[TK_HASH_LEN];
        secret_new_id(&id);
        secret_generate(TK_KIND_TOKEN, &id, t.secret[i], hash);
    }
    assert_int_equal(work_tokens_index(&t), 0);
    assert_int_equal(work_tokens_save(path, &t), 0);
    assert_int_equal(work_tokens_read(path, 64, &back), 0);
    assert_int_equal(back.n, 1000);
    assert_int_equal(back.ninvalid, 64);
    assert_string_equal(back.tenant, "acme");
    assert_string_equal(back.account, "globex");
    assert_string_equal(back.roles, "viewer,editor");
    for (size_t i = 0; i < t.n; i++) {
        assert_string_equal(back.secret[i], t.secret[i]);
        assert_string_equal(back.client_id[i], t.client_id[i]);
    }

    work_pick p;
    uint64_t rng = 1;
    enum { DRAWS = 200000 };
    assert_int_equal(work_pick_init(&p, &back, 0.25, 0), 0);
    size_t invalid = 0;
    for (int i = 0; i < DRAWS; i++)
        invalid += work_pick_next(&p, &rng) >= 1000;
    assert_true(invalid > DRAWS * 0.24 && invalid < DRAWS * 0.26);
    work_pick_free(&p);

    assert_int_equal(work_pick_init(&p, &back, 0, 1.0), 0);
    size_t first = 0, last = 0;
    for (int i = 0; i < DRAWS; i++) {
        uint32_t k = work_pick_next(&p, &rng);
        assert_true(k < 1000);
        first += k == 0;
        last += k == 999;
    }
    /* Zipf(1) over 1000: item 0 has weight 1/H(1000) ~ 13 %, item 999 ~ 0.013 % */
    assert_true(first > DRAWS / 10 && first < DRAWS / 6);
    assert_true(last < DRAWS / 1000);
    work_pick_free(&p);
    assert_int_equal(work_pick_init(&p, &t, 0.5, 0), -1); /* no unknown secrets to draw */

    work_tokens_free(&t);
    work_tokens_free(&back);
    tkt_rmdir(dir);
    free(path);
    free(dir);
}

static void tokens_file_refuses_garbage(void **state)
{
    (void)state;
    char *dir = tkt_mkdtemp(), *path = tkt_path(dir, "tokens");
    work_tokens t;
    const char *nohdr = "tkt_notasecret\n";
    assert_int_equal(tkt_write_file(path, nohdr, strlen(nohdr)), 0);
    assert_int_equal(work_tokens_read(path, 0, &t), -1);
    char body[256];
    snprintf(body, sizeof body, "# tokenbench tenant=a account=b roles=c\n%.76s\n",
             "tkt_0000000000000000000000000000000000000000000000000000000000000000000000x");
    assert_int_equal(tkt_write_file(path, body, strlen(body)), 0);
    assert_int_equal(work_tokens_read(path, 0, &t), -1); /* bad checksum */
    tkt_rmdir(dir);
    free(path);
    free(dir);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hist_buckets_bound_values),
        cmocka_unit_test(hist_quantiles_are_close_and_never_below),
        cmocka_unit_test(resp_whole_and_split),
        cmocka_unit_test(resp_refuses_what_is_not_resp2),
        cmocka_unit_test(resp_command_round_trip),
        cmocka_unit_test(picker_mixes_and_skews),
        cmocka_unit_test(tokens_file_refuses_garbage),
    };
    return cmocka_run_group_tests_name("tbunits", tests, NULL, NULL);
}
