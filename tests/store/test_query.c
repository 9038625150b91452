/*
 * test_query.c - store/query.c through eng_query_run: every listing and
 * get, its rows (metadata only), its pages (a cursor is a position), and
 * who may read what (rules 2, 7, 8, 11).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "store/engine.h"
#include "tests/support/fixture.h"
#include "tests/support/tkt.h"

typedef struct ctx {
    char *dir;
    eng *e;
    fx_world w;
} ctx;

static const char *const VIEWER[] = {"viewer", NULL};

static int setup(void **state)
{
    tk_why said = {.msg = ""};
    ctx *c = calloc(1, sizeof *c);
    c->dir = tkt_mkdtemp();
    assert_int_equal(eng_open(c->dir, NULL, &c->e, &said), 0);
    fx_scenario(c->e, &c->w);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx *c = *state;
    eng_close(c->e);
    tkt_rmdir(c->dir);
    free(c->dir);
    free(c);
    return 0;
}

/* What a read gave: the rows' main names joined with commas, the last
 * cursor, and a copy of the first row. */
typedef struct got {
    int n;
    char names[2048];
    char cursor[ENG_ROW_CURSOR_MAX + 1];
    eng_row first;
    char first_item[TK_KEY_MAX + 1]; /* its first permission or role: a row's lists are
                                        borrowed for the call only */
} got;

static const char *row_name(const eng_row *r, char *buf)
{
    switch (r->kind) {
    case ENG_TENANTS: return r->u.tenant.slug;
    case ENG_PERMS: return r->u.perm.key;
    case ENG_ROLES: return r->u.role.key;
    case ENG_ACCOUNTS: return r->u.account.slug;
    case ENG_USERS: return r->u.user.slug;
    case ENG_KEYS: secret_id_format(&r->u.key.id, buf); return buf;
    case ENG_TOKENS: return r->u.token.description;
    case ENG_KEYRING: return r->u.ring.name;
    }
    return "?";
}

static int keep(void *arg, const eng_row *r)
{
    got *g = arg;
    char id[TK_ID_STR_LEN + 1];
    if (g->n++ == 0) {
        g->first = *r;
        const char *item = r->kind == ENG_ROLES && r->u.role.nperms   ? r->u.role.perms[0]
                           : r->kind == ENG_USERS && r->u.user.nroles ? r->u.user.roles[0]
                                                                      : "";
        snprintf(g->first_item, sizeof g->first_item, "%s", item);
    }
    if (g->names[0])
        strcat(g->names, ",");
    strcat(g->names, row_name(r, id));
    snprintf(g->cursor, sizeof g->cursor, "%s", r->cursor);
    return 0;
}

static tk_str S(const char *s)
{
    return (tk_str){s, s ? strlen(s) : 0};
}

/* Runs a listing of kind by actor a in tenant/account/user, after cursor
 * (NULL: from the start), limit rows. */
static int list(ctx *c, eng_kind kind, const tk_actor *a, const char *tenant,
                const char *account, const char *user, const char *after, uint32_t limit,
                got *g)
{
    eng_query q = {.kind = kind, .actor = *a, .tenant = S(tenant), .account = S(account),
                   .user = S(user), .limit = limit};
    char msg[ENG_MSG_MAX];
    memset(g, 0, sizeof *g);
    if (after) {
        q.has_after = true;
        q.after = S(after);
    }
    return eng_query_run(c->e, &q, keep, g, msg);
}

static void every_listing_of_the_operator(void **state)
{
    ctx *c = *state;
    got g;
    assert_int_equal(list(c, ENG_TENANTS, &fx_operator, NULL, NULL, NULL, NULL, 100, &g), 0);
    assert_string_equal(g.names, "acme,umbrella");
    assert_true(g.first.u.tenant.api_tokens);
    assert_int_equal(g.first.u.tenant.roles, 3);
    assert_int_equal(g.first.u.tenant.permissions, 3);
    assert_int_equal(list(c, ENG_PERMS, &fx_operator, "acme", NULL, NULL, NULL, 100, &g), 0);
    assert_string_equal(g.names, "orders:edit,orders:read,orders:write");
    assert_int_equal(list(c, ENG_ROLES, &fx_operator, "acme", NULL, NULL, NULL, 100, &g), 0);
    assert_string_equal(g.names, "admin,editor,viewer");
    assert_int_equal(g.first.u.role.level, 0);
    assert_int_equal(g.first.u.role.nperms, 2);
    assert_string_equal(g.first_item, "orders:read");
    assert_int_equal(list(c, ENG_ACCOUNTS, &fx_operator, "acme", NULL, NULL, NULL, 100, &g), 0);
    assert_string_equal(g.names, "globex,initech");
    assert_int_equal(list(c, ENG_USERS, &fx_operator, "acme", "globex", NULL, NULL, 100, &g), 0);
    assert_string_equal(g.names, "alice,bob,carol");
    assert_true(g.first.u.user.portal);
    assert_int_equal(g.first.u.user.nroles, 1);
    assert_string_equal(g.first_item, "admin");
    assert_int_equal(g.first.u.user.keys, 1);
    assert_int_equal(list(c, ENG_KEYS, &fx_operator, "acme", "globex", "alice", NULL, 100, &g), 0);
    assert_int_equal(g.n, 1);
    assert_memory_equal(g.first.u.key.id.b, c->w.alice.key.b, TK_ID_LEN);
    assert_int_equal(g.first.u.key.expires, 0);
    assert_true(g.first.u.key.created_ms > 0);
    /* No secret, no hash, anywhere in a row (rule 9): a row has no field
     * for them; the key's secret is not in the row's bytes either. */
    assert_null(memmem(&g.first, sizeof g.first, c->w.alice_key, TK_SECRET_LEN));
}

/* Every listing pages by a cursor, one row at a time, to the same rows. */
static void pages_walk_to_the_end(void **state)
{
    ctx *c = *state;
    static const struct {
        eng_kind kind;
        const char *tenant, *account, *user, *all;
    } cases[] = {
        {ENG_TENANTS, NULL, NULL, NULL, "acme,umbrella"},
        {ENG_PERMS, "acme", NULL, NULL, "orders:edit,orders:read,orders:write"},
        {ENG_ROLES, "acme", NULL, NULL, "admin,editor,viewer"},
        {ENG_ACCOUNTS, "acme", NULL, NULL, "globex,initech"},
        {ENG_USERS, "acme", "globex", NULL, "alice,bob,carol"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char joined[2048] = "", cursor[ENG_ROW_CURSOR_MAX + 1] = "";
        got g;
        for (int page = 0; page < 10; page++) {
            assert_int_equal(list(c, cases[i].kind, &fx_operator, cases[i].tenant,
                                  cases[i].account, cases[i].user, page ? cursor : NULL, 1, &g),
                             0);
            if (g.n == 0)
                break;
            if (joined[0])
                strcat(joined, ",");
            strcat(joined, g.names);
            strcpy(cursor, g.cursor);
        }
        assert_string_equal(joined, cases[i].all);
    }
    /* Keys page by their number: three keys of alice, one a page. */
    eng_req r;
    eng_res res;
    eng_req_init(&r, ENG_KEY_CREATE, &fx_operator);
    r.tenant = S("acme");
    r.account = S("globex");
    r.user = S("alice");
    assert_int_equal(fx_exec(c->e, &r, &res), 0);
    assert_int_equal(fx_exec(c->e, &r, &res), 0);
    got g;
    char cursor[ENG_ROW_CURSOR_MAX + 1];
    int seen = 0;
    assert_int_equal(list(c, ENG_KEYS, &fx_operator, "acme", "globex", "alice", NULL, 1, &g), 0);
    while (g.n) {
        seen++;
        strcpy(cursor, g.cursor);
        assert_int_equal(list(c, ENG_KEYS, &fx_operator, "acme", "globex", "alice", cursor, 1, &g),
                         0);
    }
    assert_int_equal(seen, 3);
}

/* A user reads its tenant's roles and permissions and its account's users
 * and tokens (with the portal flag), its own keys (without); never tenants,
 * accounts, or anything of another account or tenant. */
static void what_a_user_may_read(void **state)
{
    ctx *c = *state;
    got g;
    assert_int_equal(list(c, ENG_ROLES, &c->w.alice, "umbrella", NULL, NULL, NULL, 100, &g), 0);
    assert_string_equal(g.names, "admin,editor,viewer"); /* its own tenant's: the names ignored */
    assert_int_equal(list(c, ENG_PERMS, &c->w.bob, NULL, NULL, NULL, NULL, 100, &g), 0);
    assert_int_equal(list(c, ENG_USERS, &c->w.dave, "acme", "globex", NULL, NULL, 100, &g), 0);
    assert_string_equal(g.names, "dave"); /* initech's: its own account */
    assert_int_equal(list(c, ENG_TENANTS, &c->w.alice, NULL, NULL, NULL, NULL, 100, &g),
                     TK_EDENIED);
    assert_int_equal(list(c, ENG_ACCOUNTS, &c->w.alice, "acme", NULL, NULL, NULL, 100, &g),
                     TK_EDENIED);
    /* Rule 2: carol has no portal flag: no roles, users or tokens... */
    assert_int_equal(list(c, ENG_ROLES, &c->w.carol, NULL, NULL, NULL, NULL, 100, &g), TK_EDENIED);
    assert_int_equal(list(c, ENG_TOKENS, &c->w.carol, NULL, NULL, NULL, NULL, 100, &g),
                     TK_EDENIED);
    /* ... but her own keys, whatever user she names. */
    assert_int_equal(list(c, ENG_KEYS, &c->w.carol, NULL, NULL, "alice", NULL, 100, &g), 0);
    assert_int_equal(g.n, 1);
    assert_memory_equal(g.first.u.key.id.b, c->w.carol.key.b, TK_ID_LEN);
    /* Rule 11: a deleted key reads nothing. */
    eng_req r;
    eng_req_init(&r, ENG_KEY_DELETE, &fx_operator);
    r.id = c->w.bob.key;
    assert_int_equal(fx_exec(c->e, &r, NULL), 0);
    assert_int_equal(list(c, ENG_ROLES, &c->w.bob, NULL, NULL, NULL, NULL, 100, &g), TK_EUNAUTH);
}

static int get(ctx *c, eng_kind kind, const tk_actor *a, const char *tenant, const char *account,
               const char *user, const tk_id *id, got *g, char *msg)
{
    eng_query q = {.kind = kind, .actor = *a, .tenant = S(tenant), .account = S(account),
                   .user = S(user), .get = true};
    if (id)
        q.id = *id;
    memset(g, 0, sizeof *g);
    return eng_query_run(c->e, &q, keep, g, msg);
}

static void gets(void **state)
{
    ctx *c = *state;
    got g;
    char msg[4][ENG_MSG_MAX];
    tk_id mine, theirs, gone;
    assert_int_equal(fx_limits(c->e, "acme", (tk_limits){.tokens = 7, .rate = 5, .burst = 9}), 0);
    assert_int_equal(get(c, ENG_TENANTS, &fx_operator, "acme", NULL, NULL, NULL, &g, msg[0]), 0);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.first.u.tenant.slug, "acme");
    assert_int_equal(g.first.u.tenant.limits.tokens, 7);
    assert_int_equal(g.first.u.tenant.limits.burst, 9);
    assert_int_equal(get(c, ENG_TENANTS, &c->w.ellen, "acme", NULL, NULL, NULL, &g, msg[0]), 0);
    assert_string_equal(g.first.u.tenant.slug, "umbrella"); /* her own */
    assert_int_equal(get(c, ENG_USERS, &fx_operator, "acme", "globex", "bob", NULL, &g, msg[0]), 0);
    assert_string_equal(g.first.u.user.slug, "bob");
    assert_int_equal(get(c, ENG_USERS, &fx_operator, "acme", "globex", "nobody", NULL, &g, msg[0]),
                     TK_ENOTFOUND);

    /* A token by ID: the operator's any; a user's of its account only, and
     * another account's, a deleted one and one that never was all answer
     * alike (rule 7). */
    assert_int_equal(fx_token(c->e, &c->w.alice, "mine", VIEWER, 0, &mine, NULL), 0);
    assert_int_equal(fx_token(c->e, &c->w.dave, "theirs", VIEWER, 0, &theirs, NULL), 0);
    assert_int_equal(fx_token(c->e, &c->w.alice, "gone", VIEWER, 0, &gone, NULL), 0);
    assert_int_equal(fx_token_delete(c->e, &c->w.alice, &gone), 0);
    assert_int_equal(get(c, ENG_TOKENS, &fx_operator, NULL, NULL, NULL, &theirs, &g, msg[0]), 0);
    assert_string_equal(g.first.u.token.description, "theirs");
    assert_int_equal(get(c, ENG_TOKENS, &c->w.bob, NULL, NULL, NULL, &mine, &g, msg[0]), 0);
    assert_string_equal(g.first.u.token.created_by, "alice");
    tk_id never;
    memset(&never, 0x42, sizeof never);
    const tk_id *probes[3] = {&theirs, &gone, &never};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(get(c, ENG_TOKENS, &c->w.bob, NULL, NULL, NULL, probes[i], &g, msg[i]),
                         TK_ENOTFOUND);
        assert_int_equal(g.n, 0);
        assert_non_null(strstr(msg[i], "in your account"));
    }
    /* A personal key's ID is not a token's (rule 8). */
    assert_int_equal(get(c, ENG_TOKENS, &fx_operator, NULL, NULL, NULL, &c->w.alice.key, &g,
                         msg[0]), TK_ENOTFOUND);
    /* Only tenants, users and tokens are got one by one. */
    assert_int_equal(get(c, ENG_ROLES, &fx_operator, "acme", NULL, NULL, NULL, &g, msg[0]),
                     TK_EINVAL);
}

/* A cursor is a position: any text of the wrong form is one answer, a
 * name that does not exist is a place in the order, and deleting the last
 * row of a page does not break the next. */
static void cursors_are_positions(void **state)
{
    ctx *c = *state;
    got g;
    assert_int_equal(list(c, ENG_ROLES, &fx_operator, "acme", NULL, NULL, "Bad Key!", 10, &g),
                     TK_EINVAL);
    assert_int_equal(list(c, ENG_ROLES, &fx_operator, "acme", NULL, NULL, "b", 10, &g), 0);
    assert_string_equal(g.names, "editor,viewer");
    assert_int_equal(list(c, ENG_USERS, &fx_operator, "acme", "globex", NULL, NULL, 2, &g), 0);
    assert_string_equal(g.names, "alice,bob");
    char cursor[ENG_ROW_CURSOR_MAX + 1];
    strcpy(cursor, g.cursor);
    eng_req r;
    eng_req_init(&r, ENG_USER_DELETE, &fx_operator);
    r.tenant = S("acme");
    r.account = S("globex");
    r.user = S("bob");
    assert_int_equal(fx_exec(c->e, &r, NULL), 0);
    assert_int_equal(list(c, ENG_USERS, &fx_operator, "acme", "globex", NULL, cursor, 2, &g), 0);
    assert_string_equal(g.names, "carol");
    assert_int_equal(list(c, ENG_KEYS, &fx_operator, "acme", "globex", "alice", "alice", 2, &g),
                     TK_EINVAL); /* a name is not a key's cursor */
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(every_listing_of_the_operator),
        T(pages_walk_to_the_end),
        T(what_a_user_may_read),
        T(gets),
        T(cursors_are_positions),
    };
    return cmocka_run_group_tests_name("query", tests, NULL, NULL);
}
