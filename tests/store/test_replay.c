/*
 * test_replay.c - the log alone rebuilds the state.
 *
 * A live store goes through a varied history (every kind of event, across
 * many small log segments). Its log segments are then copied into an empty
 * directory and opened: the rebuilt store must give the same answer to
 * every verification and authentication, and the same listings, as the
 * live one.
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
#include <time.h>

#include "core/err.h"
#include "store/engine.h"
#include "tests/support/fixture.h"
#include "tests/support/tkt.h"

#define NTOK 300

static void copy_log(const char *from, const char *to)
{
    char *src = tkt_path(from, "log"), *dst = tkt_path(to, "log");
    assert_int_equal(mkdir(to, 0700), 0);
    assert_int_equal(mkdir(dst, 0700), 0);
    DIR *d = opendir(src);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d))) {
        if (!strstr(de->d_name, ".seg"))
            continue;
        char *a = tkt_path(src, de->d_name), *b = tkt_path(dst, de->d_name);
        size_t len;
        unsigned char *buf = tkt_read_file(a, &len);
        assert_non_null(buf);
        assert_int_equal(tkt_write_file(b, buf, len), 0);
        free(buf);
        free(a);
        free(b);
        n++;
    }
    closedir(d);
    assert_true(n > 3); /* the history spans several segments */
    free(src);
    free(dst);
}

static void same_verify(eng *a, eng *b, const char *secret, int64_t now)
{
    tk_verify va, vb;
    tk_verdict ra = eng_verify(a, NULL, secret, strlen(secret), now, &va);
    tk_verdict rb = eng_verify(b, NULL, secret, strlen(secret), now, &vb);
    assert_int_equal(ra, rb);
    if (ra != TK_V_VALID)
        return;
    assert_string_equal(va.tenant, vb.tenant);
    assert_string_equal(va.account, vb.account);
    assert_int_equal(va.expires_at, vb.expires_at);
    assert_int_equal(va.nroles, vb.nroles);
    for (uint32_t i = 0; i < va.nroles; i++)
        assert_string_equal(va.roles[i], vb.roles[i]);
    assert_int_equal(va.nperms, vb.nperms);
    for (uint32_t i = 0; i < va.nperms; i++)
        assert_string_equal(va.perms[i], vb.perms[i]);
}

typedef struct rows {
    eng_token_info *r;
    size_t n;
} rows;

static int keep_row(void *arg, const eng_token_info *t)
{
    rows *r = arg;
    r->r[r->n++] = *t;
    return 0;
}

static void same_listing(eng *a, eng *b, const char *tenant, const char *account)
{
    rows ra = {calloc(NTOK + 10, sizeof(eng_token_info)), 0};
    rows rb = {calloc(NTOK + 10, sizeof(eng_token_info)), 0};
    tk_str t = {tenant, strlen(tenant)}, ac = {account, strlen(account)};
    assert_int_equal(eng_token_list(a, &fx_operator, t, ac, NULL, NTOK + 10, keep_row, &ra), 0);
    assert_int_equal(eng_token_list(b, &fx_operator, t, ac, NULL, NTOK + 10, keep_row, &rb), 0);
    assert_int_equal(ra.n, rb.n);
    for (size_t i = 0; i < ra.n; i++)
        assert_memory_equal(&ra.r[i], &rb.r[i], sizeof(eng_token_info));
    free(ra.r);
    free(rb.r);
}

static void log_alone_rebuilds_the_same_state(void **state)
{
    tk_why said = {.msg = ""};
    (void)state;
    char *root = tkt_mkdtemp();
    char *live_dir = tkt_path(root, "live"), *copy_dir = tkt_path(root, "copy");
    eng_opts opts = {.segment_bytes = 4096};
    eng *live, *copy;
    fx_world w;
    static char secrets[NTOK][TK_SECRET_LEN + 1];
    tk_id ids[NTOK];
    static const char *const sets[3][3] = {{"viewer", NULL}, {"editor", "viewer", NULL}, {"admin", NULL}};
    int64_t now = time(NULL);

    assert_int_equal(eng_open(live_dir, &opts, &live, &said), 0);
    fx_scenario(live, &w);
    char bob_key[TK_SECRET_LEN + 1];
    assert_int_equal(fx_user(live, "acme", "globex", "bobby", true, sets[0], bob_key), 0);
    for (int i = 0; i < NTOK; i++) {
        const tk_actor *who = i % 3 == 0 ? &w.alice : i % 3 == 1 ? &w.dave : &w.ellen;
        if (i > 200 && who == &w.ellen) /* umbrella's tokens are off by then */
            who = &w.alice;
        const char *const *roles = who == &w.ellen ? sets[2] : sets[i > 150 ? 0 : i % 3];
        char desc[32];
        snprintf(desc, sizeof desc, "token %d", i);
        assert_int_equal(fx_token(live, who, desc, roles, i % 5 ? 0 : now + 1000 + i, &ids[i],
                                  secrets[i]), 0);
        if (i % 7 == 3)
            assert_int_equal(fx_token_delete(live, who, &ids[i]), 0);
        if (i == 100) {
            static const char *const p[] = {"orders:read", "orders:export", NULL};
            assert_int_equal(fx_role(live, "acme", "viewer", 2, p), 0);
        }
        if (i == 150)
            assert_int_equal(fx_role_delete(live, "acme", "editor"), 0);
        if (i == 200)
            assert_int_equal(fx_toggle(live, "umbrella", false), 0);
    }
    /* Users and keys change too. */
    eng_req r;
    eng_req_init(&r, ENG_USER_SET, &fx_operator);
    r.tenant = (tk_str){"acme", 4};
    r.account = (tk_str){"globex", 6};
    r.user = (tk_str){"bob", 3};
    r.flag = 0;
    assert_int_equal(fx_exec(live, &r, NULL), 0);
    eng_res res;
    eng_req_init(&r, ENG_KEY_CREATE, &fx_operator);
    r.tenant = (tk_str){"acme", 4};
    r.account = (tk_str){"initech", 7};
    r.user = (tk_str){"dave", 4};
    assert_int_equal(fx_exec(live, &r, &res), 0);
    char dave_key2[TK_SECRET_LEN + 1];
    memcpy(dave_key2, res.secret, sizeof dave_key2);
    tk_actor bobby;
    assert_int_equal(fx_auth(live, bob_key, &bobby), 0);
    eng_req_init(&r, ENG_KEY_DELETE, &fx_operator);
    uint8_t raw[48];
    fx_secret_decode(bob_key, raw);
    memcpy(r.id.b, raw, 16);
    assert_int_equal(fx_exec(live, &r, NULL), 0);

    copy_log(live_dir, copy_dir);
    assert_int_equal(eng_open(copy_dir, &opts, &copy, &said), 0);
    assert_int_equal(eng_last_seq(copy), eng_last_seq(live));
    assert_int_equal(eng_cred_count(copy), eng_cred_count(live));

    for (int i = 0; i < NTOK; i++) {
        same_verify(live, copy, secrets[i], now);
        same_verify(live, copy, secrets[i], now + 1000 + NTOK); /* past some expiries */
    }
    same_listing(live, copy, "acme", "globex");
    same_listing(live, copy, "acme", "initech");
    same_listing(live, copy, "umbrella", "raccoon");
    const char *keys[] = {w.alice_key, bob_key, dave_key2};
    for (int i = 0; i < 3; i++) {
        tk_actor x, y;
        int rx = eng_authenticate(live, keys[i], TK_SECRET_LEN, now, &x);
        int ry = eng_authenticate(copy, keys[i], TK_SECRET_LEN, now, &y);
        assert_int_equal(rx, ry);
        if (rx == 0)
            assert_memory_equal(&x, &y, sizeof x);
    }
    assert_int_equal(eng_authenticate(copy, bob_key, TK_SECRET_LEN, now, &bobby), TK_EUNAUTH);
    eng_close(live);
    eng_close(copy);
    tkt_rmdir(root);
    free(live_dir);
    free(copy_dir);
    free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(log_alone_rebuilds_the_same_state),
    };
    return cmocka_run_group_tests_name("replay", tests, NULL, NULL);
}
