/*
 * test_vimage.c - the view image (store/vimage.c) through the engine: a
 * clean close saves state/view.img and the next open reads the
 * credentials from it (eng_open_stats says so) and removes it, every token
 * and personal key answering as before, deleted ones not at all, listings
 * unchanged; a stale image (an older state's), a flipped byte anywhere
 * (header, role sets, slots, entries, CRC) and a cut image are not used
 * and the open is right all the same; a save that cannot write leaves the
 * close and the next open fine; eng_opts.no_view_image turns it off.
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

#include "core/err.h"
#include "store/engine.h"
#include "store/vimage.h"
#include "tests/support/fixture.h"
#include "tests/support/tkt.h"

#define NTOK 1500 /* enough for a slot table and entry chunks of some size */

static const char *const ADMIN[] = {"admin", NULL};
static const char *const VIEWER[] = {"viewer", NULL};
static const char *const VIEWER_EDITOR[] = {"viewer", "editor", NULL};

typedef struct tok {
    tk_id id;
    char s[TK_SECRET_LEN + 1];
    bool live;
} tok;

typedef struct ctx {
    char *dir, *img, *tmp;
    eng *e;
    fx_world w;
    tok t[NTOK + 8];
    size_t n;
} ctx;

static void open_e(ctx *c, const eng_opts *o)
{
    tk_why said = {.msg = ""};
    if (eng_open(c->dir, o, &c->e, &said) != 0)
        fail_msg("open: %s", said.msg);
}

static void add_token(ctx *c, const tk_actor *a, const char *const *roles)
{
    tok *t = &c->t[c->n++];
    assert_int_equal(fx_token(c->e, a, "t", roles, 0, &t->id, t->s), 0);
    t->live = true;
}

static int setup(void **state)
{
    ctx *c = calloc(1, sizeof *c);
    c->dir = tkt_mkdtemp();
    char *sub = tkt_path(c->dir, "state");
    c->img = tkt_path(sub, VIMG_NAME);
    c->tmp = tkt_path(sub, VIMG_TMP_NAME);
    free(sub);
    open_e(c, NULL);
    fx_scenario(c->e, &c->w);
    /* Tokens of several users and role sets, some deleted (free entries). */
    const tk_actor *users[] = {&c->w.alice, &c->w.bob, &c->w.dave, &c->w.ellen};
    const char *const *roles[] = {ADMIN, VIEWER, VIEWER_EDITOR, VIEWER};
    for (size_t i = 0; i < NTOK; i++) {
        size_t u = i % 4;
        const char *const *r = u == 1 ? VIEWER : u == 3 ? ADMIN : roles[i % 3];
        add_token(c, users[u], r);
    }
    for (size_t i = 0; i < NTOK; i += 9) {
        const tk_actor *u = users[i % 4];
        assert_int_equal(fx_token_delete(c->e, u, &c->t[i].id), 0);
        c->t[i].live = false;
    }
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx *c = *state;
    eng_close(c->e);
    tkt_rmdir(c->dir);
    free(c->dir);
    free(c->img);
    free(c->tmp);
    free(c);
    return 0;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int count_cb(void *arg, const eng_token_info *t)
{
    (void)t;
    (*(size_t *)arg)++;
    return 0;
}

/* Every live token verifies, every deleted one is unknown, alice's
 * personal key authenticates, and listings count what is live. */
static void check_all(ctx *c)
{
    tk_verify v;
    tk_actor a;
    size_t live = 0;
    for (size_t i = 0; i < c->n; i++) {
        tk_verdict got = fx_verify(c->e, c->t[i].s, &v);
        if (got != (c->t[i].live ? TK_V_VALID : TK_V_UNKNOWN))
            fail_msg("token %zu (%s): verdict %d", i, c->t[i].live ? "live" : "deleted", got);
        live += c->t[i].live;
    }
    assert_int_equal(eng_cred_count(c->e) >= live, true);
    assert_int_equal(fx_auth(c->e, c->w.alice_key, &a), 0);
    size_t listed = 0;
    tk_str none = {0};
    const tk_actor *users[] = {&c->w.alice, &c->w.bob, &c->w.dave, &c->w.ellen};
    for (int u = 0; u < 4; u++)
        assert_int_equal(eng_token_list(c->e, users[u], none, none, NULL, 10000, count_cb,
                                        &listed), 0);
    assert_true(listed >= live); /* alice, an admin, may list more than her own */
}

static size_t listed_by(ctx *c, const tk_actor *a)
{
    size_t n = 0;
    tk_str none = {0};
    assert_int_equal(eng_token_list(c->e, a, none, none, NULL, 10000, count_cb, &n), 0);
    return n;
}

/* Closes, so that an image is written, and returns its bytes. */
static unsigned char *close_saved(ctx *c, size_t *len)
{
    eng_close(c->e);
    c->e = NULL;
    assert_true(exists(c->img));
    assert_false(exists(c->tmp));
    unsigned char *b = tkt_read_file(c->img, len);
    assert_non_null(b);
    struct stat st;
    assert_int_equal(stat(c->img, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    return b;
}

/* Opens; the image used or not as want_used, vimg_load's answer want_rc;
 * the image file gone either way, and the view right. */
static void reopen_expect(ctx *c, bool want_used, int want_rc)
{
    open_e(c, NULL);
    const eng_open_times *ot = eng_open_stats(c->e);
    assert_int_equal(ot->image, want_used);
    assert_int_equal(ot->image_rc, want_rc);
    assert_false(exists(c->img));
    assert_false(exists(c->tmp));
    check_all(c);
}

static void clean_close_then_open_uses_the_image(void **state)
{
    ctx *c = *state;
    size_t before[4] = {listed_by(c, &c->w.alice), listed_by(c, &c->w.bob),
                        listed_by(c, &c->w.dave), listed_by(c, &c->w.ellen)};
    size_t creds = eng_cred_count(c->e), bytes = eng_index_bytes(c->e), len;
    free(close_saved(c, &len));
    reopen_expect(c, true, 0);
    assert_int_equal(eng_open_stats(c->e)->creds, creds);
    assert_int_equal(eng_cred_count(c->e), creds);
    assert_int_equal(eng_index_bytes(c->e), bytes);
    assert_int_equal(listed_by(c, &c->w.alice), before[0]);
    assert_int_equal(listed_by(c, &c->w.bob), before[1]);
    assert_int_equal(listed_by(c, &c->w.dave), before[2]);
    assert_int_equal(listed_by(c, &c->w.ellen), before[3]);
    /* The loaded view takes changes as a built one: a delete, a new token
     * in a freed entry; and the next clean close saves it again. */
    assert_int_equal(fx_token_delete(c->e, &c->w.bob, &c->t[1].id), 0);
    c->t[1].live = false;
    add_token(c, &c->w.dave, VIEWER_EDITOR);
    add_token(c, &c->w.alice, ADMIN);
    check_all(c);
    free(close_saved(c, &len));
    reopen_expect(c, true, 0);
}

/* An image saved at an earlier state, put back after the state moved on
 * (as after a run that did not close cleanly): not used. */
static void a_stale_image_is_not_used(void **state)
{
    ctx *c = *state;
    size_t len;
    unsigned char *old = close_saved(c, &len);
    reopen_expect(c, true, 0);
    add_token(c, &c->w.alice, VIEWER);
    assert_int_equal(fx_token_delete(c->e, &c->w.dave, &c->t[2].id), 0);
    c->t[2].live = false;
    free(close_saved(c, &len));
    assert_int_equal(tkt_write_file(c->img, old, len), 0);
    reopen_expect(c, false, TK_ENOTFOUND);
    free(old);
}

/* One byte flipped, in each part of the file: not used (a flip in the
 * stamp makes it stale, anywhere else damaged), and the open is right. */
static void a_flipped_byte_anywhere_is_not_used(void **state)
{
    ctx *c = *state;
    size_t len;
    unsigned char *b = close_saved(c, &len);
    /* The body: nsets (4), the sets, the index's header (72), its slots,
     * its entries; the file's 64-byte header before, the CRC after. */
    uint32_t nsets;
    uint64_t nslots;
    memcpy(&nsets, b + 64, 4);
    size_t ix = 64 + 4 + (size_t)(nsets - 1) * (8 + 4 * TK_MAX_ROLES);
    memcpy(&nslots, b + ix + 24, 8);
    size_t slots = ix + 72, entries = slots + (size_t)nslots * 8;
    assert_true(entries < len - 4);
    struct {
        size_t off;
        int rc;
    } at[] = {
        {3, TK_ECORRUPT},                  /* magic */
        {8, TK_ENOTFOUND},                 /* version: another format's */
        {17, TK_ENOTFOUND},                /* the stamp's seq */
        {40, TK_ENOTFOUND},                /* the stamp's hash */
        {57, TK_ECORRUPT},                 /* the body's length */
        {64, TK_ECORRUPT},                 /* nsets */
        {64 + 4 + 5, TK_ECORRUPT},         /* a role set */
        {ix + 33, TK_ECORRUPT},            /* the index's count */
        {ix + 56, TK_ECORRUPT},            /* the SipHash key: only the CRC tells */
        {slots + 3, TK_ECORRUPT},          /* a slot */
        {(slots + entries) / 2, TK_ECORRUPT},
        {entries + 20, TK_ECORRUPT},       /* an entry's secret hash: only the CRC */
        {(entries + len) / 2, TK_ECORRUPT},
        {len - 6, TK_ECORRUPT},            /* the last entry */
        {len - 2, TK_ECORRUPT},            /* the CRC */
    };
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        unsigned char *d = malloc(len);
        assert_non_null(d);
        memcpy(d, b, len);
        d[at[i].off] ^= 0x10;
        if (c->e) {
            eng_close(c->e);
            c->e = NULL;
        }
        assert_int_equal(tkt_write_file(c->img, d, len), 0);
        free(d);
        open_e(c, NULL);
        const eng_open_times *ot = eng_open_stats(c->e);
        if (ot->image || ot->image_rc != at[i].rc)
            fail_msg("byte %zu of %zu flipped: image %d, rc %d", at[i].off, len, ot->image,
                     ot->image_rc);
        assert_false(exists(c->img));
        check_all(c);
    }
    free(b);
}

static void a_cut_image_is_not_used(void **state)
{
    ctx *c = *state;
    size_t len;
    unsigned char *b = close_saved(c, &len);
    size_t cuts[] = {0, 10, 64, 200, len / 2, len - 5, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        if (c->e) {
            eng_close(c->e);
            c->e = NULL;
        }
        assert_int_equal(tkt_write_file(c->img, b, cuts[i]), 0);
        reopen_expect(c, false, TK_ECORRUPT);
    }
    /* Longer than its body says: damaged too. */
    eng_close(c->e);
    c->e = NULL;
    unsigned char *d = calloc(1, len + 8);
    assert_non_null(d);
    memcpy(d, b, len);
    assert_int_equal(tkt_write_file(c->img, d, len + 8), 0);
    reopen_expect(c, false, TK_ECORRUPT);
    free(d);
    free(b);
}

/* The save cannot create its file (state/view.img.tmp is a directory, as
 * a full disk would refuse it): the close goes on, nothing is saved, and
 * the next open builds the view from LMDB. An older image is not left to
 * be used either (it was removed at the open before). */
static void a_failed_save_leaves_the_close_fine(void **state)
{
    ctx *c = *state;
    size_t len;
    free(close_saved(c, &len));
    reopen_expect(c, true, 0);
    add_token(c, &c->w.ellen, ADMIN);
    assert_int_equal(mkdir(c->tmp, 0700), 0);
    eng_close(c->e);
    c->e = NULL;
    assert_false(exists(c->img));
    assert_int_equal(rmdir(c->tmp), 0);
    reopen_expect(c, false, TK_ENOTFOUND);
}

static void no_view_image_turns_it_off(void **state)
{
    ctx *c = *state;
    eng_opts o = {.no_view_image = true};
    size_t len;
    eng_close(c->e);
    open_e(c, &o);
    eng_close(c->e);
    c->e = NULL;
    assert_false(exists(c->img));
    open_e(c, NULL); /* default: on */
    assert_false(eng_open_stats(c->e)->image);
    check_all(c);
    unsigned char *b = close_saved(c, &len);
    /* An image there is not read, and is removed. */
    open_e(c, &o);
    assert_false(eng_open_stats(c->e)->image);
    assert_false(exists(c->img));
    check_all(c);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(clean_close_then_open_uses_the_image, setup, teardown),
        cmocka_unit_test_setup_teardown(a_stale_image_is_not_used, setup, teardown),
        cmocka_unit_test_setup_teardown(a_flipped_byte_anywhere_is_not_used, setup, teardown),
        cmocka_unit_test_setup_teardown(a_cut_image_is_not_used, setup, teardown),
        cmocka_unit_test_setup_teardown(a_failed_save_leaves_the_close_fine, setup, teardown),
        cmocka_unit_test_setup_teardown(no_view_image_turns_it_off, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
