/*
 * test_engine.c - the domain rules of DESIGN section 1, end to end through
 * the engine (validation, log, LMDB, view). Each rule_N test fails when
 * rule N's check is removed from core/rules.c, core/view.c or
 * store/engine.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/crc32c.h"
#include "core/err.h"
#include "core/mp.h"
#include "core/event.h"
#include "core/session.h"
#include "store/elog.h"
#include "store/engine.h"
#include "store/fio.h"
#include "store/keyfile.h"
#include "tests/support/fixture.h"
#include "tests/support/logedit.h"
#include "tests/support/tkt.h"

typedef struct ctx {
    char *dir;
    eng *e;
    fx_world w;
} ctx;

static const char *const ADMIN[] = {"admin", NULL};
static const char *const EDITOR[] = {"editor", NULL};
static const char *const VIEWER[] = {"viewer", NULL};
static const char *const VIEWER_EDITOR[] = {"viewer", "editor", NULL};
static const char *const NONE[] = {NULL};

static int setup(void **state)
{
    tk_why said = {.msg = ""};
    ctx *c = calloc(1, sizeof *c);
    c->dir = tkt_mkdtemp();
    assert_non_null(c->dir);
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

static void reopen(ctx *c)
{
    tk_why said = {.msg = ""};
    eng_close(c->e);
    assert_int_equal(eng_open(c->dir, NULL, &c->e, &said), 0);
}

static bool has(const char *const *list, uint32_t n, const char *s)
{
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

/* ---- rule 1: the api_tokens toggle ----------------------------------- */

static void rule1_create_needs_toggle_on(void **state)
{
    ctx *c = *state;
    assert_int_equal(fx_toggle(c->e, "acme", false), 0);
    assert_int_equal(fx_token(c->e, &c->w.alice, "ci", VIEWER, 0, NULL, NULL), TK_EDISABLED);
    assert_int_equal(fx_toggle(c->e, "acme", true), 0);
    assert_int_equal(fx_token(c->e, &c->w.alice, "ci", VIEWER, 0, NULL, NULL), 0);
}

static void rule1_toggle_off_fails_every_token(void **state)
{
    ctx *c = *state;
    char s1[TK_SECRET_LEN + 1], s2[TK_SECRET_LEN + 1], s3[TK_SECRET_LEN + 1];
    tk_verify v;
    assert_int_equal(fx_token(c->e, &c->w.alice, "a", VIEWER, 0, NULL, s1), 0);
    assert_int_equal(fx_token(c->e, &c->w.dave, "b", ADMIN, 0, NULL, s2), 0);
    assert_int_equal(fx_token(c->e, &c->w.ellen, "c", ADMIN, 0, NULL, s3), 0);
    assert_int_equal(fx_toggle(c->e, "acme", false), 0);
    assert_int_equal(fx_verify(c->e, s1, &v), TK_V_DISABLED);
    assert_int_equal(fx_verify(c->e, s2, &v), TK_V_DISABLED);
    assert_int_equal(fx_verify(c->e, s3, &v), TK_V_VALID); /* another tenant */
    reopen(c); /* the toggle is durable state, not only in memory */
    assert_int_equal(fx_verify(c->e, s1, &v), TK_V_DISABLED);
    assert_int_equal(fx_toggle(c->e, "acme", true), 0);
    assert_int_equal(fx_verify(c->e, s1, &v), TK_V_VALID);
    assert_int_equal(fx_verify(c->e, s2, &v), TK_V_VALID);
}

/* ---- rule 2: the portal flag ------------------------------------------ */

static int count_cb(void *arg, const eng_token_info *t)
{
    (void)t;
    (*(int *)arg)++;
    return 0;
}

static void rule2_portal_needed_to_manage(void **state)
{
    ctx *c = *state;
    tk_id id;
    int n = 0;
    tk_str none = {0};
    assert_int_equal(fx_token(c->e, &c->w.carol, "x", VIEWER, 0, NULL, NULL), TK_EDENIED);
    assert_int_equal(fx_token(c->e, &c->w.alice, "x", VIEWER, 0, &id, NULL), 0);
    assert_int_equal(eng_token_list(c->e, &c->w.carol, none, none, NULL, 100, count_cb, &n),
                     TK_EDENIED);
    assert_int_equal(fx_token_delete(c->e, &c->w.carol, &id), TK_EDENIED);
    /* Taking the flag away stops a user who had it. */
    eng_req r;
    eng_req_init(&r, ENG_USER_SET, &fx_operator);
    r.tenant = (tk_str){"acme", 4};
    r.account = (tk_str){"globex", 6};
    r.user = (tk_str){"alice", 5};
    r.flag = 0;
    assert_int_equal(fx_exec(c->e, &r, NULL), 0);
    assert_int_equal(fx_token(c->e, &c->w.alice, "x", VIEWER, 0, NULL, NULL), TK_EDENIED);
    assert_int_equal(fx_token_delete(c->e, &c->w.alice, &id), TK_EDENIED);
    r.flag = 1;
    assert_int_equal(fx_exec(c->e, &r, NULL), 0);
    assert_int_equal(fx_token_delete(c->e, &c->w.alice, &id), 0);
}

/* ---- rule 3: no role stronger than the user's own ---------------------- */

static void rule3_no_stronger_role(void **state)
{
    ctx *c = *state;
    assert_int_equal(fx_token(c->e, &c->w.bob, "x", ADMIN, 0, NULL, NULL), TK_EDENIED);
    assert_int_equal(fx_token(c->e, &c->w.bob, "x", EDITOR, 0, NULL, NULL), TK_EDENIED);
    assert_int_equal(fx_token(c->e, &c->w.bob, "x", VIEWER_EDITOR, 0, NULL, NULL), TK_EDENIED);
    assert_int_equal(fx_token(c->e, &c->w.bob, "x", VIEWER, 0, NULL, NULL), 0);
    assert_int_equal(fx_token(c->e, &c->w.alice, "x", ADMIN, 0, NULL, NULL), 0);
    assert_int_equal(fx_token(c->e, &c->w.alice, "x", VIEWER_EDITOR, 0, NULL, NULL), 0);
}

static void rule3_token_without_roles_refused(void **state)
{
    ctx *c = *state;
    assert_int_equal(fx_token(c->e, &c->w.alice, "x", NONE, 0, NULL, NULL), TK_EINVAL);
}

static void rule3_user_level_is_current(void **state)
{
    ctx *c = *state;
    /* Making viewer as strong as admin lets bob assign... only viewer
     * still (admin is 0 and viewer is now 0: same level is allowed). */
    static const char *const p[] = {"orders:read", NULL};
    assert_int_equal(fx_role(c->e, "acme", "viewer", 0, p), 0);
    assert_int_equal(fx_token(c->e, &c->w.bob, "x", ADMIN, 0, NULL, NULL), 0);
    /* A user whose only role was deleted has no level: may assign nothing. */
    assert_int_equal(fx_role_delete(c->e, "acme", "viewer"), 0);
    assert_int_equal(fx_role(c->e, "acme", "viewer", 2, p), 0); /* a new role, same key */
    assert_int_equal(fx_token(c->e, &c->w.bob, "x", VIEWER, 0, NULL, NULL), TK_EDENIED);
}

/* ---- rule 4: the secret ----------------------------------------------- */

static void rule4_secret_returned_once_and_never_stored(void **state)
{
    ctx *c = *state;
    char secret[TK_SECRET_LEN + 1];
    uint8_t raw[48];
    tk_id id;
    assert_int_equal(fx_token(c->e, &c->w.alice, "ci", VIEWER, 0, &id, secret), 0);
    assert_int_equal(strlen(secret), TK_SECRET_LEN);
    assert_memory_equal(secret, "tkt_", 4);
    assert_int_equal(fx_secret_decode(secret, raw), 0);
    assert_memory_equal(raw, id.b, 16); /* the string carries its client ID */
    reopen(c);
    /* Neither the string, nor its body, nor the 32 random bytes are on disk
     * (event log, LMDB, anything else in the data directory). */
    assert_false(tkt_dir_contains(c->dir, secret, TK_SECRET_LEN));
    assert_false(tkt_dir_contains(c->dir, secret + 4, 66));
    assert_false(tkt_dir_contains(c->dir, raw + 16, 32));
    /* The same for a personal key. */
    assert_false(tkt_dir_contains(c->dir, c->w.alice_key, TK_SECRET_LEN));
    assert_int_equal(fx_secret_decode(c->w.alice_key, raw), 0);
    assert_false(tkt_dir_contains(c->dir, raw + 16, 32));
    /* But the token is known: it verifies after the reopen. */
    tk_verify v;
    assert_int_equal(fx_verify(c->e, secret, &v), TK_V_VALID);
}

static void rule4_secrets_are_random(void **state)
{
    ctx *c = *state;
    char a[TK_SECRET_LEN + 1], b[TK_SECRET_LEN + 1];
    uint8_t ra[48], rb[48];
    assert_int_equal(fx_token(c->e, &c->w.alice, "x", VIEWER, 0, NULL, a), 0);
    assert_int_equal(fx_token(c->e, &c->w.alice, "x", VIEWER, 0, NULL, b), 0);
    fx_secret_decode(a, ra);
    fx_secret_decode(b, rb);
    assert_memory_not_equal(ra + 16, rb + 16, 32);
    int diff = 0; /* 256 random bits: both halves differ in many bits */
    for (int i = 16; i < 48; i++)
        diff += __builtin_popcount(ra[i] ^ rb[i]);
    assert_true(diff > 64);
}

/* ---- rule 5: delete is irreversible and effective at once ------------- */

static void rule5_delete_effective_before_ack(void **state)
{
    ctx *c = *state;
    char s[TK_SECRET_LEN + 1];
    tk_id id;
    tk_verify v;
    assert_int_equal(fx_token(c->e, &c->w.alice, "x", VIEWER, 0, &id, s), 0);
    assert_int_equal(fx_verify(c->e, s, &v), TK_V_VALID);
    assert_int_equal(fx_token_delete(c->e, &c->w.bob, &id), 0);
    assert_int_equal(fx_verify(c->e, s, &v), TK_V_UNKNOWN); /* right after the ack */
    assert_int_equal(fx_token_delete(c->e, &c->w.alice, &id), TK_ENOTFOUND);
    reopen(c);
    assert_int_equal(fx_verify(c->e, s, &v), TK_V_UNKNOWN);
}

/* ---- rule 6: permissions resolved at verification time ---------------- */

static void rule6_role_changes_reach_tokens(void **state)
{
    ctx *c = *state;
    char s[TK_SECRET_LEN + 1];
    tk_verify v;
    assert_int_equal(fx_token(c->e, &c->w.alice, "x", VIEWER_EDITOR, 0, NULL, s), 0);
    assert_int_equal(fx_verify(c->e, s, &v), TK_V_VALID);
    assert_int_equal(v.nroles, 2);
    assert_int_equal(v.nperms, 2); /* orders:read once, orders:edit */
    assert_true(has(v.perms, v.nperms, "orders:read"));
    assert_true(has(v.perms, v.nperms, "orders:edit"));

    static const char *const more[] = {"orders:read", "orders:list", NULL};
    assert_int_equal(fx_role(c->e, "acme", "viewer", 2, more), 0);
    assert_int_equal(fx_verify(c->e, s, &v), TK_V_VALID);
    assert_int_equal(v.nperms, 3);
    assert_true(has(v.perms, v.nperms, "orders:list"));

    assert_int_equal(fx_role_delete(c->e, "acme", "editor"), 0);
    assert_int_equal(fx_verify(c->e, s, &v), TK_V_VALID);
    assert_int_equal(v.nroles, 1);
    assert_string_equal(v.roles[0], "viewer");
    assert_false(has(v.perms, v.nperms, "orders:edit"));
    /* A new role with the deleted one's key does not come back to the token. */
    assert_int_equal(fx_role(c->e, "acme", "editor", 1, more), 0);
    assert_int_equal(fx_verify(c->e, s, &v), TK_V_VALID);
    assert_int_equal(v.nroles, 1);
    reopen(c);
    assert_int_equal(fx_verify(c->e, s, &v), TK_V_VALID);
    assert_int_equal(v.nroles, 1);
    assert_int_equal(v.nperms, 2);
}

/* ---- rule 7: tenant and account isolation ---------------------------- */

typedef struct ids_seen {
    int n;
    tk_id ids[16];
    char cursor[16][ENG_CURSOR_LEN + 1]; /* the position after each */
} ids_seen;

static int collect_ids(void *arg, const eng_token_info *t)
{
    ids_seen *s = arg;
    if (s->n < 16) {
        memcpy(s->cursor[s->n], t->cursor, sizeof s->cursor[0]);
        s->ids[s->n++] = t->client_id;
    }
    return 0;
}

static void rule7_isolation(void **state)
{
    ctx *c = *state;
    tk_id ga, in;
    tk_str none = {0};
    ids_seen seen = {0};
    assert_int_equal(fx_token(c->e, &c->w.alice, "globex", VIEWER, 0, &ga, NULL), 0);
    assert_int_equal(fx_token(c->e, &c->w.dave, "initech", VIEWER, 0, &in, NULL), 0);
    /* Another account of the same tenant: cannot see or delete. */
    assert_int_equal(eng_token_list(c->e, &c->w.dave, none, none, NULL, 100, collect_ids, &seen), 0);
    assert_int_equal(seen.n, 1);
    assert_memory_equal(seen.ids[0].b, in.b, 16);
    assert_int_equal(fx_token_delete(c->e, &c->w.dave, &ga), TK_ENOTFOUND);
    /* Another tenant: the same, and its roles are not ours to use. */
    seen.n = 0;
    assert_int_equal(eng_token_list(c->e, &c->w.ellen, none, none, NULL, 100, collect_ids, &seen), 0);
    assert_int_equal(seen.n, 0);
    assert_int_equal(fx_token_delete(c->e, &c->w.ellen, &ga), TK_ENOTFOUND);
    assert_int_equal(fx_token(c->e, &c->w.ellen, "x", VIEWER, 0, NULL, NULL), TK_ENOTFOUND);
    /* A user names another tenant/account in vain: its own scope applies. */
    seen.n = 0;
    tk_str acme = {"acme", 4}, globex = {"globex", 6};
    assert_int_equal(eng_token_list(c->e, &c->w.ellen, acme, globex, NULL, 100, collect_ids, &seen), 0);
    assert_int_equal(seen.n, 0);
    /* Users cannot touch tenants, roles, accounts or users at all. */
    eng_req r;
    eng_req_init(&r, ENG_ROLE_PUT, &c->w.alice);
    r.tenant = acme;
    r.key = (tk_str){"god", 3};
    assert_int_equal(fx_exec(c->e, &r, NULL), TK_EDENIED);
    eng_req_init(&r, ENG_TENANT_SET, &c->w.ellen);
    r.tenant = acme;
    r.flag = 0;
    assert_int_equal(fx_exec(c->e, &r, NULL), TK_EDENIED);
    /* Both tokens still there. */
    seen.n = 0;
    assert_int_equal(eng_token_list(c->e, &c->w.alice, none, none, NULL, 100, collect_ids, &seen), 0);
    assert_int_equal(seen.n, 1);
    assert_memory_equal(seen.ids[0].b, ga.b, 16);
}

/* ---- rule 8: personal keys and tenant tokens do not mix --------------- */

static void rule8_kinds_do_not_mix(void **state)
{
    ctx *c = *state;
    char tok[TK_SECRET_LEN + 1], forged[TK_SECRET_LEN + 1];
    uint8_t raw[48];
    tk_verify v;
    tk_actor a;
    assert_int_equal(fx_token(c->e, &c->w.alice, "x", VIEWER, 0, NULL, tok), 0);
    /* A personal key never verifies as a tenant token... */
    assert_int_equal(fx_verify(c->e, c->w.alice_key, &v), TK_V_WRONG_KIND);
    /* ...not even re-labelled as one with a valid checksum: the stored
     * kind decides, not the prefix. */
    assert_int_equal(fx_secret_decode(c->w.alice_key, raw), 0);
    fx_secret_encode("tkt_", raw, forged);
    assert_int_equal(fx_verify(c->e, forged, &v), TK_V_WRONG_KIND);
    /* A tenant token never authenticates a management request... */
    assert_int_equal(fx_auth(c->e, tok, &a), TK_EUNAUTH);
    assert_int_equal(fx_secret_decode(tok, raw), 0);
    fx_secret_encode("tkp_", raw, forged);
    assert_int_equal(fx_auth(c->e, forged, &a), TK_EUNAUTH);
    /* ...while the real ones do what they are for. */
    assert_int_equal(fx_verify(c->e, tok, &v), TK_V_VALID);
    assert_int_equal(fx_auth(c->e, c->w.alice_key, &a), 0);
    assert_int_equal(a.kind, TK_ACTOR_USER);
    char op[KEYFILE_KEY_LEN + 1];
    tk_why why;
    assert_int_equal(keyfile_load(c->dir, "operator.key", "tko_", op, &why), 0);
    assert_int_equal(fx_auth(c->e, op, &a), 0);
    assert_int_equal(a.kind, TK_ACTOR_OPERATOR);
}

/* ---- the keyring: named operator and gateway keys ------------------------ */

/* Adds a key called name as actor (gateway or operator): its key. */
static int ring_add(ctx *c, const tk_actor *by, const char *name, bool gateway, char *key)
{
    eng_req r;
    eng_res res;
    eng_req_init(&r, ENG_KEYRING_ADD, by);
    r.name = (tk_str){name, strlen(name)};
    r.flag = gateway;
    int rc = fx_exec(c->e, &r, &res);
    if (rc == 0 && key) {
        assert_int_equal(strlen(res.secret), KEYFILE_KEY_LEN);
        memcpy(key, res.secret, KEYFILE_KEY_LEN + 1);
    }
    return rc;
}

static int ring_remove(ctx *c, const tk_actor *by, const char *name)
{
    eng_req r;
    eng_req_init(&r, ENG_KEYRING_REMOVE, by);
    r.name = (tk_str){name, strlen(name)};
    return fx_exec(c->e, &r, NULL);
}

static int row_name(void *arg, const eng_row *row)
{
    char *names = arg;
    strcat(names, row->u.ring.name);
    strcat(names, row->u.ring.gateway ? "(gw) " : " ");
    return 0;
}

/* A new operator key acts at once; removed, it acts no more at once, and a
 * request of it already made is refused when it commits (rule 11). */
static void keyring_keys_act_and_stop_at_once(void **state)
{
    ctx *c = *state;
    char ci[KEYFILE_KEY_LEN + 1], boot[KEYFILE_KEY_LEN + 1];
    tk_actor a, b;
    tk_why why;
    assert_int_equal(keyfile_load(c->dir, "operator.key", "tko_", boot, &why), 0);
    assert_int_equal(fx_auth(c->e, boot, &b), 0);
    assert_int_equal(ring_add(c, &b, "ci", false, ci), 0);
    assert_int_equal(strlen(ci), KEYFILE_KEY_LEN);
    assert_memory_equal(ci, "tko_", 4);
    assert_int_equal(fx_auth(c->e, ci, &a), 0);
    assert_int_equal(a.kind, TK_ACTOR_OPERATOR);
    assert_int_equal(fx_tenant(c->e, "by-ci"), 0);
    assert_int_equal(fx_exec(c->e, &(eng_req){.op = ENG_TENANT_CREATE, .actor = a,
                                              .tenant = {"ci-made", 7}, .flag = -1},
                             NULL),
                     0);
    assert_int_equal(ring_remove(c, &b, "ci"), 0);
    assert_int_equal(fx_auth(c->e, ci, &a), TK_EUNAUTH);
    /* the actor authenticated before the removal: refused at commit */
    assert_int_equal(fx_exec(c->e, &(eng_req){.op = ENG_TENANT_CREATE, .actor = a,
                                              .tenant = {"too-late", 8}, .flag = -1},
                             NULL),
                     TK_EUNAUTH);
    char names[400] = "";
    eng_query q = {.kind = ENG_KEYRING, .actor = b, .limit = 100};
    assert_int_equal(eng_query_run(c->e, &q, row_name, names, NULL), 0);
    assert_string_equal(names, "initial ");
    q.actor = a;
    assert_int_equal(eng_query_run(c->e, &q, row_name, names, NULL), TK_EUNAUTH);
}

/* DIR/operator.key's key is "initial": removed (another operator key
 * first: the last one stays), it stays removed across a reopen and a
 * rebuild of the state from the log. Gateway keys are not operator keys. */
static void keyring_bootstrap_key_removed_for_good(void **state)
{
    ctx *c = *state;
    char ci[KEYFILE_KEY_LEN + 1], gw[KEYFILE_KEY_LEN + 1], boot[KEYFILE_KEY_LEN + 1];
    tk_actor a, b;
    tk_why why;
    assert_int_equal(keyfile_load(c->dir, "operator.key", "tko_", boot, &why), 0);
    assert_int_equal(fx_auth(c->e, boot, &b), 0);
    assert_int_equal(ring_remove(c, &b, "initial"), TK_EDENIED); /* the last operator key */
    assert_int_equal(ring_add(c, &b, "gw-1", true, gw), 0);
    assert_int_equal(ring_remove(c, &b, "initial"), TK_EDENIED); /* a gateway key manages nothing */
    assert_memory_equal(gw, "tkg_", 4);
    assert_true(eng_gateway_key(c->e, gw, strlen(gw)));
    assert_int_equal(fx_auth(c->e, gw, &a), TK_EUNAUTH);
    assert_false(eng_gateway_key(c->e, boot, strlen(boot)));
    assert_int_equal(ring_add(c, &b, "ci", false, ci), 0);
    assert_int_equal(fx_auth(c->e, ci, &a), 0);
    /* names: given once, slugs, the bootstrap's taken while it acts */
    assert_int_equal(ring_add(c, &b, "ci", true, NULL), TK_EEXIST);
    assert_int_equal(ring_add(c, &b, "initial", false, NULL), TK_EEXIST);
    assert_int_equal(ring_add(c, &b, "No Way", false, NULL), TK_EINVAL);
    assert_int_equal(ring_remove(c, &b, "nope"), TK_ENOTFOUND);
    /* a user manages no keys */
    assert_int_equal(ring_add(c, &c->w.alice, "mine", false, NULL), TK_EDENIED);
    uint64_t gen = eng_keyring_gen(c->e);
    assert_int_equal(ring_remove(c, &a, "initial"), 0);
    assert_true(eng_keyring_gen(c->e) != gen);
    assert_int_equal(fx_auth(c->e, boot, &b), TK_EUNAUTH);
    char names[400] = "";
    eng_query q = {.kind = ENG_KEYRING, .actor = a, .limit = 100};
    assert_int_equal(eng_query_run(c->e, &q, row_name, names, NULL), 0);
    assert_string_equal(names, "ci gw-1(gw) ");
    reopen(c);
    assert_int_equal(fx_auth(c->e, boot, &b), TK_EUNAUTH);
    assert_int_equal(fx_auth(c->e, ci, &a), 0);
    assert_true(eng_gateway_key(c->e, gw, strlen(gw)));
    /* the state rebuilt from the log alone: the same keyring */
    eng_close(c->e);
    c->e = NULL;
    char *st = tkt_path(c->dir, "state");
    tkt_rmdir(st);
    free(st);
    assert_int_equal(eng_open(c->dir, NULL, &c->e, &why), 0);
    assert_int_equal(fx_auth(c->e, boot, &b), TK_EUNAUTH);
    assert_int_equal(fx_auth(c->e, ci, &a), 0);
    assert_true(eng_gateway_key(c->e, gw, strlen(gw)));
    /* the name given again: a new key, the file's key still not */
    assert_int_equal(ring_remove(c, &a, "gw-1"), 0);
    assert_false(eng_gateway_key(c->e, gw, strlen(gw)));
    char again[KEYFILE_KEY_LEN + 1];
    assert_int_equal(ring_add(c, &a, "initial", false, again), 0);
    assert_int_equal(fx_auth(c->e, again, &b), 0);
    assert_int_equal(fx_auth(c->e, boot, &b), TK_EUNAUTH);
}

/* A log edited and chained again passes its own check (the chain is plain
 * SHA-256), but the state kept the chain hash at the seq it applied: the
 * open refuses a log whose history differs there. */
static void rechained_log_is_refused_beside_its_state(void **state)
{
    ctx *c = *state;
    tk_why why = {.msg = ""};
    for (uint64_t edit = 1; edit <= 2; edit++) {
        eng_close(c->e);
        c->e = NULL;
        char *logdir = tkt_path(c->dir, "log");
        uint64_t last;
        {
            elog *lg;
            assert_int_equal(elog_open(logdir, NULL, &lg, &why), 0);
            last = elog_last_seq(lg);
            elog_close(lg);
        }
        /* the first record, then the last one */
        char *other = tkt_mkdtemp(), *otherlog = tkt_path(other, "log");
        char *kept = tkt_path(c->dir, "log.kept");
        logedit_copy(logdir, otherlog, 0, edit == 1 ? 1 : last);
        assert_int_equal(rename(logdir, kept), 0);
        assert_int_equal(rename(otherlog, logdir), 0);
        why.msg[0] = '\0';
        assert_int_equal(eng_open(c->dir, NULL, &c->e, &why), TK_ECORRUPT);
        assert_non_null(strstr(why.msg, "history differs"));
        /* the real log back: it opens */
        tkt_rmdir(logdir);
        assert_int_equal(rename(kept, logdir), 0);
        assert_int_equal(eng_open(c->dir, NULL, &c->e, &why), 0);
        tkt_rmdir(other);
        free(other);
        free(otherlog);
        free(kept);
        free(logdir);
    }
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Edits the first record of the second segment of logdir: a payload byte
 * changed and its CRC made to match, its chain not redone. */
static void edit_keeping_the_crc(const char *logdir)
{
    char *names[256];
    size_t n = 0, len;
    DIR *d = opendir(logdir);
    struct dirent *de;
    assert_non_null(d);
    while ((de = readdir(d)) && n < 256)
        if (strstr(de->d_name, ".seg"))
            names[n++] = strdup(de->d_name);
    closedir(d);
    assert_true(n >= 3);
    qsort(names, n, sizeof *names, cmp_name);
    char *path = tkt_path(logdir, names[1]);
    unsigned char *b = tkt_read_file(path, &len);
    assert_non_null(b);
    /* header 16; record: len, hcrc, seq, prev[32], payload, crc */
    uint32_t plen = (uint32_t)b[16] | (uint32_t)b[17] << 8 | (uint32_t)b[18] << 16
                    | (uint32_t)b[19] << 24;
    assert_true(plen > 8 && 16 + 52 + plen <= len);
    b[16 + 48 + plen - 1] ^= 0x01;
    uint32_t crc = crc32c_extend(0, b + 16 + 8, 40 + plen);
    for (int i = 0; i < 4; i++)
        b[16 + 48 + plen + (size_t)i] = (unsigned char)(crc >> (8 * i));
    assert_int_equal(tkt_write_file(path, b, len), 0);
    free(b);
    free(path);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
}

static void keep_notice(void *arg, const char *msg)
{
    snprintf(arg, 2048, "%s", msg);
}

/* A record in a sealed segment edited with its CRC made to match, its
 * chain not redone: every CRC holds, so the start's fast check opens the
 * directory (LMDB has the right state), and the background check of the
 * chain then finds the broken link and fences writes, saying where, while
 * verification goes on. A full check refuses the start. */
static void chain_edit_is_found_by_the_background_check(void **state)
{
    ctx *c = *state;
    tk_why why = {.msg = ""};
    static char notice[2048];
    eng_opts small = {.segment_bytes = 4096, .notice = keep_notice, .notice_arg = notice},
             full = {.segment_bytes = 4096, .full_log_check = true};
    char secret[TK_SECRET_LEN + 1];
    tk_verify v;
    eng_res res;

    eng_close(c->e);
    assert_int_equal(eng_open(c->dir, &small, &c->e, &why), 0);
    for (int i = 0; i < 60; i++)
        assert_int_equal(fx_token(c->e, &c->w.alice, "x", ADMIN, 0, NULL, secret), 0);
    eng_close(c->e);
    c->e = NULL;
    char *logdir = tkt_path(c->dir, "log");
    edit_keeping_the_crc(logdir);
    free(logdir);

    why.msg[0] = '\0';
    assert_int_equal(eng_open(c->dir, &full, &c->e, &why), TK_ECORRUPT);
    assert_non_null(strstr(why.msg, "broken hash chain"));
    assert_null(c->e);
    assert_int_equal(eng_open(c->dir, &small, &c->e, &why), 0);
    for (int i = 0; i < 2000 && eng_log_checked(c->e) == 0; i++)
        usleep(5000);
    assert_int_equal(eng_log_checked(c->e), -1);
    assert_non_null(strstr(notice, "broken hash chain"));
    assert_non_null(strstr(notice, "tokenreplay repair"));
    assert_int_equal(fx_verify(c->e, secret, &v), TK_V_VALID);
    eng_req r;
    eng_req_init(&r, ENG_TOKEN_CREATE, &c->w.alice);
    r.items[0] = (tk_str){"admin", 5};
    r.nitems = 1;
    r.desc = (tk_str){"y", 1};
    assert_int_equal(eng_exec(c->e, &r, &res, 1), TK_EFENCED);
    assert_non_null(strstr(res.msg, "background check"));
}

/* An intact log's background check passes every link. */
static void background_check_passes_an_intact_log(void **state)
{
    ctx *c = *state;
    tk_why why = {.msg = ""};
    eng_opts small = {.segment_bytes = 4096};

    eng_close(c->e);
    assert_int_equal(eng_open(c->dir, &small, &c->e, &why), 0);
    for (int i = 0; i < 60; i++)
        assert_int_equal(fx_token(c->e, &c->w.alice, "x", ADMIN, 0, NULL, NULL), 0);
    eng_close(c->e);
    assert_int_equal(eng_open(c->dir, &small, &c->e, &why), 0);
    for (int i = 0; i < 2000 && eng_log_checked(c->e) == 0; i++)
        usleep(5000);
    assert_int_equal(eng_log_checked(c->e), 1);
    assert_int_equal(fx_token(c->e, &c->w.alice, "y", ADMIN, 0, NULL, NULL), 0);
}

/* A key file anyone else may read is refused, as ssh refuses one. */
static void key_file_mode_is_checked(void **state)
{
    ctx *c = *state;
    tk_why why = {.msg = ""};
    eng_close(c->e);
    c->e = NULL;
    char *path = tkt_path(c->dir, "operator.key");
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(eng_open(c->dir, NULL, &c->e, &why), TK_EINVAL);
    assert_non_null(strstr(why.msg, "operator.key"));
    assert_non_null(strstr(why.msg, "chmod 600"));
    assert_int_equal(chmod(path, 0600), 0);
    free(path);
    assert_int_equal(eng_open(c->dir, NULL, &c->e, &why), 0);
}

/* ---- rule 9: listing shows metadata only ------------------------------ */

typedef struct list_check {
    const char *secret;
    uint8_t raw[48];
    int n;
    eng_token_info last;
} list_check;

static int check_item(void *arg, const eng_token_info *t)
{
    list_check *lc = arg;
    /* Nothing of the secret in any byte of what a listing hands out. */
    assert_null(memmem(t, sizeof *t, lc->secret, TK_SECRET_LEN));
    assert_null(memmem(t, sizeof *t, lc->raw + 16, 32));
    lc->last = *t;
    lc->n++;
    return 0;
}

static void rule9_listing_is_metadata_only(void **state)
{
    ctx *c = *state;
    char s[TK_SECRET_LEN + 1];
    tk_id id;
    tk_str none = {0};
    list_check lc = {.secret = s};
    int64_t before = (int64_t)time(NULL) * 1000;
    assert_int_equal(fx_token(c->e, &c->w.alice, "deploy bot", VIEWER_EDITOR, 0, &id, s), 0);
    fx_secret_decode(s, lc.raw);
    assert_int_equal(eng_token_list(c->e, &c->w.bob, none, none, NULL, 100, check_item, &lc), 0);
    assert_int_equal(lc.n, 1);
    assert_memory_equal(lc.last.client_id.b, id.b, 16);
    assert_string_equal(lc.last.description, "deploy bot");
    assert_string_equal(lc.last.created_by, "alice");
    assert_int_equal(lc.last.nroles, 2);
    assert_true(lc.last.created_ms >= before - 1000);
    /* The operator lists by naming tenant and account. */
    lc.n = 0;
    tk_str acme = {"acme", 4}, globex = {"globex", 6};
    assert_int_equal(eng_token_list(c->e, &fx_operator, acme, globex, NULL, 100, check_item, &lc), 0);
    assert_int_equal(lc.n, 1);
}

/* ---- verification details --------------------------------------------- */

static void verify_answers(void **state)
{
    ctx *c = *state;
    char s1[TK_SECRET_LEN + 1], s2[TK_SECRET_LEN + 1], bad[TK_SECRET_LEN + 1];
    uint8_t raw[48];
    tk_id id1, id2;
    tk_verify v;
    assert_int_equal(fx_token(c->e, &c->w.alice, "x", ADMIN, 0, &id1, s1), 0);
    assert_int_equal(fx_token(c->e, &c->w.alice, "y", VIEWER, 0, &id2, s2), 0);
    assert_int_equal(fx_verify(c->e, s1, &v), TK_V_VALID);
    assert_string_equal(v.tenant, "acme");
    assert_string_equal(v.account, "globex");
    assert_memory_equal(v.client_id.b, id1.b, 16);
    assert_int_equal(v.nroles, 1);
    assert_string_equal(v.roles[0], "admin");
    assert_true(has(v.perms, v.nperms, "orders:write"));
    /* The pair form: client ID and secret must agree. */
    assert_int_equal(eng_verify(c->e, &id1, s1, TK_SECRET_LEN, time(NULL), &v), TK_V_VALID);
    assert_int_equal(eng_verify(c->e, &id2, s1, TK_SECRET_LEN, time(NULL), &v), TK_V_MISMATCH);
    /* A wrong secret for a real ID, well-formed: mismatch. */
    fx_secret_decode(s1, raw);
    raw[40] ^= 1;
    fx_secret_encode("tkt_", raw, bad);
    assert_int_equal(fx_verify(c->e, bad, &v), TK_V_MISMATCH);
    /* An unknown ID: unknown. */
    raw[0] ^= 1;
    fx_secret_encode("tkt_", raw, bad);
    assert_int_equal(fx_verify(c->e, bad, &v), TK_V_UNKNOWN);
    /* Typos and truncation: malformed, without a lookup. */
    memcpy(bad, s1, sizeof bad);
    bad[20] = bad[20] == 'a' ? 'b' : 'a';
    assert_int_equal(fx_verify(c->e, bad, &v), TK_V_MALFORMED);
    assert_int_equal(eng_verify(c->e, NULL, s1, TK_SECRET_LEN - 1, time(NULL), &v), TK_V_MALFORMED);
    assert_int_equal(eng_verify(c->e, NULL, "", 0, time(NULL), &v), TK_V_MALFORMED);
}

static void verify_expiry(void **state)
{
    ctx *c = *state;
    char s[TK_SECRET_LEN + 1];
    tk_verify v;
    int64_t now = time(NULL);
    assert_int_equal(fx_token(c->e, &c->w.alice, "x", VIEWER, now - 1, NULL, NULL), TK_EINVAL);
    /* Expiries are 32-bit unix seconds in the index: past 2106 is refused,
     * not silently cut. */
    assert_int_equal(fx_token(c->e, &c->w.alice, "x", VIEWER, TK_MAX_EXPIRES + 1, NULL, NULL),
                     TK_EINVAL);
    assert_int_equal(fx_token(c->e, &c->w.alice, "x", VIEWER, now + 3600, NULL, s), 0);
    assert_int_equal(eng_verify(c->e, NULL, s, TK_SECRET_LEN, now, &v), TK_V_VALID);
    assert_int_equal(v.expires_at, now + 3600);
    assert_int_equal(eng_verify(c->e, NULL, s, TK_SECRET_LEN, now + 3600, &v), TK_V_EXPIRED);
}

/* ---- management details ----------------------------------------------- */

static void names_and_duplicates(void **state)
{
    ctx *c = *state;
    assert_int_equal(fx_tenant(c->e, "acme"), TK_EEXIST);
    assert_int_equal(fx_tenant(c->e, "Bad_Slug"), TK_EINVAL);
    assert_int_equal(fx_tenant(c->e, "-x"), TK_EINVAL);
    assert_int_equal(fx_account(c->e, "acme", "globex"), TK_EEXIST);
    assert_int_equal(fx_account(c->e, "nope", "globex"), TK_ENOTFOUND);
    assert_int_equal(fx_user(c->e, "acme", "globex", "alice", true, ADMIN, NULL), TK_EEXIST);
    assert_int_equal(fx_user(c->e, "acme", "globex", "zed", true, (const char *const[]){"ghost", NULL}, NULL),
                     TK_ENOTFOUND);
    static const char *const badperm[] = {"orders read", NULL};
    assert_int_equal(fx_role(c->e, "acme", "r", 1, badperm), TK_EINVAL);
    assert_int_equal(fx_role(c->e, "acme", "r", TK_MAX_LEVEL + 1, NONE), TK_EINVAL);
    /* Bad UTF-8 in a description is refused. */
    eng_req r;
    eng_req_init(&r, ENG_TOKEN_CREATE, &c->w.alice);
    r.desc = (tk_str){"\xc3\x28", 2};
    r.items[0] = (tk_str){"viewer", 6};
    r.nitems = 1;
    assert_int_equal(fx_exec(c->e, &r, NULL), TK_EINVAL);
}

static void batch_is_one_commit_with_independent_results(void **state)
{
    ctx *c = *state;
    eng_req r[4];
    eng_res res[4];
    uint64_t seq = eng_last_seq(c->e);
    eng_req_init(&r[0], ENG_TENANT_CREATE, &fx_operator);
    r[0].tenant = (tk_str){"wayne", 5};
    eng_req_init(&r[1], ENG_ACCOUNT_CREATE, &fx_operator);
    r[1].tenant = (tk_str){"wayne", 5}; /* sees request 0 */
    r[1].account = (tk_str){"cave", 4};
    eng_req_init(&r[2], ENG_ACCOUNT_CREATE, &fx_operator);
    r[2].tenant = (tk_str){"wayne", 5};
    r[2].account = (tk_str){"cave", 4}; /* duplicate of request 1 */
    eng_req_init(&r[3], ENG_TOKEN_CREATE, &c->w.alice);
    r[3].items[0] = (tk_str){"viewer", 6};
    r[3].nitems = 1;
    assert_int_equal(eng_exec(c->e, r, res, 4), 0);
    assert_int_equal(res[0].status, 0);
    assert_int_equal(res[1].status, 0);
    assert_int_equal(res[2].status, TK_EEXIST);
    assert_int_equal(res[3].status, 0);
    assert_int_equal(eng_last_seq(c->e), seq + 3);
    tk_verify v;
    assert_int_equal(fx_verify(c->e, res[3].secret, &v), TK_V_VALID);
}

static void failed_fsync_is_not_acknowledged_and_fences(void **state)
{
    ctx *c = *state;
    char s[TK_SECRET_LEN + 1];
    eng_req r;
    eng_res res;
    tk_verify v;
    assert_int_equal(fx_token(c->e, &c->w.alice, "kept", VIEWER, 0, NULL, s), 0);
    size_t before = eng_cred_count(c->e);

    fio_fault_arm(FIO_FSYNC, 1);
    eng_req_init(&r, ENG_TOKEN_CREATE, &c->w.alice);
    r.items[0] = (tk_str){"viewer", 6};
    r.nitems = 1;
    assert_int_equal(eng_exec(c->e, &r, &res, 1), TK_EIO);
    assert_int_equal(res.status, TK_EIO);
    assert_string_equal(res.secret, ""); /* never handed out */
    assert_int_equal(eng_cred_count(c->e), before);
    /* Fenced: nothing more is written, even what would be valid. */
    assert_int_equal(fx_tenant(c->e, "later"), TK_EFENCED);
    /* Reads still work. */
    assert_int_equal(fx_verify(c->e, s, &v), TK_V_VALID);
    reopen(c);
    assert_int_equal(eng_cred_count(c->e), before);
    assert_int_equal(fx_verify(c->e, s, &v), TK_V_VALID);
    assert_int_equal(fx_tenant(c->e, "later"), 0);

    fio_fault_arm(FIO_WRITE, 1);
    assert_int_equal(fx_tenant(c->e, "never"), TK_EIO);
    reopen(c);
    assert_int_equal(fx_tenant(c->e, "never"), 0); /* it was not there */
}

/* Regression: tokens created in the same millisecond (one batch) were
 * listed in client-ID order, not creation order, once the server got fast
 * enough to create two in one millisecond. */
static void listing_keeps_creation_order_within_a_millisecond(void **state)
{
    ctx *c = *state;
    enum { N = 20 };
    eng_req r[N];
    eng_res res[N];
    ids_seen seen = {0};
    tk_str none = {0};
    for (int i = 0; i < N; i++) {
        eng_req_init(&r[i], ENG_TOKEN_CREATE, &c->w.alice);
        r[i].items[0] = (tk_str){"viewer", 6};
        r[i].nitems = 1;
    }
    assert_int_equal(eng_exec(c->e, r, res, N), 0); /* one batch: one timestamp */
    assert_int_equal(eng_token_list(c->e, &c->w.alice, none, none, NULL, 16, collect_ids, &seen), 0);
    assert_int_equal(seen.n, 16);
    for (int i = 0; i < 16; i++)
        assert_memory_equal(seen.ids[i].b, res[i].id.b, 16);
    /* Paging after the 10th gives the 11th. */
    tk_str after = {seen.cursor[9], ENG_CURSOR_LEN};
    seen.n = 0;
    assert_int_equal(eng_token_list(c->e, &c->w.alice, none, none, &after, 1, collect_ids, &seen), 0);
    assert_int_equal(seen.n, 1);
    assert_memory_equal(seen.ids[0].b, res[10].id.b, 16);
}

typedef struct info_one {
    int n;
    eng_token_info info;
} info_one;

static int keep_info(void *arg, const eng_token_info *t)
{
    info_one *o = arg;
    if (o->n++ == 0)
        o->info = *t;
    return 0;
}

/* ---- cursors: positions, not lookups ----------------------------------- */

/* Regression (issue 7): `after` was a client ID looked up in the whole
 * store, so another tenant's ID answered with the caller's tokens and a
 * made-up one with ENOTFOUND (an existence oracle), and a page whose last
 * token was deleted could not be continued. */
static void listing_continues_past_a_deleted_token(void **state)
{
    ctx *c = *state;
    tk_id id[5];
    tk_str none = {0};
    ids_seen seen = {0};
    for (int i = 0; i < 5; i++)
        assert_int_equal(fx_token(c->e, &c->w.alice, "p", VIEWER, 0, &id[i], NULL), 0);
    assert_int_equal(eng_token_list(c->e, &c->w.alice, none, none, NULL, 2, collect_ids, &seen), 0);
    assert_int_equal(seen.n, 2);
    char cur[ENG_CURSOR_LEN + 1];
    memcpy(cur, seen.cursor[1], sizeof cur);
    assert_int_equal(fx_token_delete(c->e, &c->w.alice, &id[1]), 0); /* the page's last */
    assert_int_equal(fx_token_delete(c->e, &c->w.alice, &id[2]), 0); /* and the next */
    tk_str after = {cur, ENG_CURSOR_LEN};
    seen.n = 0;
    assert_int_equal(eng_token_list(c->e, &c->w.alice, none, none, &after, 10, collect_ids, &seen), 0);
    assert_int_equal(seen.n, 2);
    assert_memory_equal(seen.ids[0].b, id[3].b, 16);
    assert_memory_equal(seen.ids[1].b, id[4].b, 16);
    /* A cursor survives a restart. */
    reopen(c);
    seen.n = 0;
    assert_int_equal(eng_token_list(c->e, &c->w.alice, none, none, &after, 10, collect_ids, &seen), 0);
    assert_int_equal(seen.n, 2);
    assert_memory_equal(seen.ids[0].b, id[3].b, 16);
}

static void listing_cursor_is_no_oracle(void **state)
{
    ctx *c = *state;
    tk_id mine, gone, theirs;
    tk_str none = {0};
    ids_seen seen = {0};
    char idstr[5][TK_ID_STR_LEN + 1];
    assert_int_equal(fx_token(c->e, &c->w.alice, "mine", VIEWER, 0, &mine, NULL), 0);
    assert_int_equal(fx_token(c->e, &c->w.alice, "gone", VIEWER, 0, &gone, NULL), 0);
    assert_int_equal(fx_token_delete(c->e, &c->w.alice, &gone), 0);
    assert_int_equal(fx_token(c->e, &c->w.ellen, "theirs", ADMIN, 0, &theirs, NULL), 0);
    secret_id_format(&mine, idstr[0]);
    secret_id_format(&gone, idstr[1]);
    secret_id_format(&theirs, idstr[2]);
    secret_id_format(&c->w.alice.key, idstr[3]); /* a personal key's id */
    snprintf(idstr[4], sizeof idstr[4], "0b3d6c2a-4f1e-4b8a-9c7d-2e5f8a1b3c4d");
    for (int i = 0; i < 5; i++) {
        tk_str after = {idstr[i], TK_ID_STR_LEN};
        assert_int_equal(eng_token_list(c->e, &c->w.alice, none, none, &after, 10, collect_ids,
                                        &seen), TK_EINVAL);
        assert_false(eng_cursor_ok(idstr[i], TK_ID_STR_LEN));
    }
    assert_int_equal(seen.n, 0);
    /* A cursor of another tenant's listing is only a position in the
     * caller's own: it shows nothing of theirs. */
    assert_int_equal(eng_token_list(c->e, &c->w.ellen, none, none, NULL, 10, collect_ids, &seen), 0);
    assert_int_equal(seen.n, 1);
    tk_str foreign = {seen.cursor[0], ENG_CURSOR_LEN};
    seen.n = 0;
    assert_int_equal(eng_token_list(c->e, &c->w.alice, none, none, &foreign, 10, collect_ids,
                                    &seen), 0);
    for (int i = 0; i < seen.n; i++)
        assert_memory_not_equal(seen.ids[i].b, theirs.b, 16);
}

/* ---- rule 11: authority at commit -------------------------------------- */

/* The operator deletes alice's key in the same batch as her create: the
 * create, behind the deletion, is refused, and nothing of it exists. */
static void rule11_key_deleted_in_the_batch_acts_no_more(void **state)
{
    ctx *c = *state;
    eng_req r[3];
    eng_res res[3];
    tk_str none = {0};
    int n = 0;
    size_t before = eng_cred_count(c->e);
    eng_req_init(&r[0], ENG_TOKEN_CREATE, &c->w.alice); /* before the deletion: stands */
    r[0].items[0] = (tk_str){"viewer", 6};
    r[0].nitems = 1;
    eng_req_init(&r[1], ENG_KEY_DELETE, &fx_operator);
    r[1].id = c->w.alice.key;
    eng_req_init(&r[2], ENG_TOKEN_CREATE, &c->w.alice);
    r[2].items[0] = (tk_str){"viewer", 6};
    r[2].nitems = 1;
    assert_int_equal(eng_exec(c->e, r, res, 3), 0);
    assert_int_equal(res[0].status, 0);
    assert_int_equal(res[1].status, 0);
    assert_int_equal(res[2].status, TK_EUNAUTH);
    assert_string_equal(res[2].secret, "");
    assert_non_null(strstr(res[2].msg, "no longer valid"));
    assert_int_equal(eng_cred_count(c->e), before); /* +1 token, -1 key */
    /* Deleting and listing with the deleted key: refused too. */
    assert_int_equal(fx_token_delete(c->e, &c->w.alice, &res[0].id), TK_EUNAUTH);
    assert_int_equal(eng_token_list(c->e, &c->w.alice, none, none, NULL, 10, count_cb, &n),
                     TK_EUNAUTH);
    assert_int_equal(n, 0);
}

static void rule11_expired_key_acts_no_more(void **state)
{
    ctx *c = *state;
    eng_req r;
    eng_res res;
    tk_actor a;
    eng_req_init(&r, ENG_KEY_CREATE, &fx_operator);
    r.tenant = (tk_str){"acme", 4};
    r.account = (tk_str){"globex", 6};
    r.user = (tk_str){"alice", 5};
    /* Three seconds: the create's fsync can take over one on a loaded machine
     * (it did, once: the key had expired before its first use). */
    r.expires = time(NULL) + 3;
    assert_int_equal(fx_exec(c->e, &r, &res), 0);
    assert_int_equal(fx_auth(c->e, res.secret, &a), 0); /* valid when authenticated */
    while (time(NULL) <= r.expires) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(fx_token(c->e, &a, "late", VIEWER, 0, NULL, NULL), TK_EUNAUTH);
}

static int count_row(void *arg, const eng_row *row)
{
    (void)row;
    (*(int *)arg)++;
    return 0;
}

/* A portal session acting as alice: minted through eng_portal_user, as
 * the HTTP listener does. */
static tk_actor session_actor(eng *e, ses_table *t, const char *user, ses_info *info)
{
    tk_actor a;
    char msg[ENG_MSG_MAX], code[SES_TEXT_LEN + 1], sid[SES_TEXT_LEN + 1];
    int64_t exp;
    ses_who w;
    memset(&w, 0, sizeof w);
    assert_int_equal(eng_portal_user(e, (tk_str){"acme", 4}, (tk_str){"globex", 6},
                                     (tk_str){user, strlen(user)}, &a, msg),
                     0);
    w.tenant = a.tenant, w.account = a.account, w.user = a.user;
    assert_int_equal(ses_mint(t, &w, time(NULL), code, &exp, msg, sizeof msg), 0);
    assert_int_equal(ses_open(t, code, strlen(code), time(NULL), sid, info), 0);
    a.session = info->handle;
    return a;
}

/* Rule 11 for portal sessions: a session acts while it is live and its
 * user keeps the portal flag; signed out, or its user's flag taken away
 * (even if given back), it acts no more, for writes and reads. */
static void rule11_portal_session_acts_while_it_stands(void **state)
{
    ctx *c = *state;
    ses_opts o;
    ses_table *t;
    ses_info info;
    char msg[ENG_MSG_MAX];
    ses_opts_default(&o);
    ses_new(&o, &t);
    eng_set_sessions(c->e, t);
    tk_actor a = session_actor(c->e, t, "alice", &info);
    assert_int_equal(fx_token(c->e, &a, "by session", VIEWER, 0, NULL, NULL), 0);
    ses_end(t, info.handle); /* signed out */
    assert_int_equal(fx_token(c->e, &a, "after", VIEWER, 0, NULL, NULL), TK_EUNAUTH);
    eng_query q = {.kind = ENG_TOKENS, .actor = a, .limit = 10};
    int rows = 0;
    assert_int_equal(eng_query_run(c->e, &q, count_row, &rows, msg), TK_EUNAUTH);

    a = session_actor(c->e, t, "alice", &info);
    eng_req r;
    eng_req_init(&r, ENG_USER_SET, &fx_operator);
    r.tenant = (tk_str){"acme", 4};
    r.account = (tk_str){"globex", 6};
    r.user = (tk_str){"alice", 5};
    r.flag = 0; /* no portal */
    assert_int_equal(fx_exec(c->e, &r, NULL), 0);
    assert_int_equal(fx_token(c->e, &a, "no portal", VIEWER, 0, NULL, NULL), TK_EUNAUTH);
    assert_false(ses_live(t, info.handle, time(NULL))); /* ended there */
    r.flag = 1;
    assert_int_equal(fx_exec(c->e, &r, NULL), 0);
    assert_int_equal(fx_token(c->e, &a, "portal again", VIEWER, 0, NULL, NULL), TK_EUNAUTH);

    /* A session's reads stand on the same: its user deleted, it ends. */
    a = session_actor(c->e, t, "alice", &info);
    q.actor = a;
    assert_int_equal(eng_query_run(c->e, &q, count_row, &rows, msg), 0);
    assert_int_equal(rows, 1); /* the token made by the first session */
    assert_int_equal(fx_delete(c->e, ENG_USER_DELETE, "acme", "globex", "alice", NULL), 0);
    assert_int_equal(eng_query_run(c->e, &q, count_row, &rows, msg), TK_EUNAUTH);
    assert_false(ses_live(t, info.handle, time(NULL)));
    eng_set_sessions(c->e, NULL);
    ses_free(t);
}

/* Only a user with the portal flag gets a session (rule 2), and only in
 * the scope named. */
static void portal_session_needs_the_portal_flag(void **state)
{
    ctx *c = *state;
    tk_actor a;
    char msg[ENG_MSG_MAX];
    assert_int_equal(eng_portal_user(c->e, (tk_str){"acme", 4}, (tk_str){"globex", 6},
                                     (tk_str){"carol", 5}, &a, msg),
                     TK_EDENIED);
    assert_int_equal(eng_portal_user(c->e, (tk_str){"acme", 4}, (tk_str){"initech", 7},
                                     (tk_str){"alice", 5}, &a, msg),
                     TK_ENOTFOUND);
    assert_int_equal(eng_portal_user(c->e, (tk_str){"umbrella", 8}, (tk_str){"globex", 6},
                                     (tk_str){"alice", 5}, &a, msg),
                     TK_ENOTFOUND);
    assert_int_equal(eng_portal_user(c->e, (tk_str){"acme", 4}, (tk_str){"globex", 6},
                                     (tk_str){"Alice", 5}, &a, msg),
                     TK_EINVAL);
    assert_int_equal(eng_portal_user(c->e, (tk_str){"acme", 4}, (tk_str){"globex", 6},
                                     (tk_str){"alice", 5}, &a, msg),
                     0);
    assert_int_equal(a.user, c->w.alice.user);
    assert_int_equal(a.account, c->w.alice.account);
    /* Without a session table, a session actor never acts. */
    a.session = 1;
    assert_int_equal(fx_token(c->e, &a, "x", VIEWER, 0, NULL, NULL), TK_EUNAUTH);
}

/* Rules 2 and 3 bind from the request that changes them on, within one
 * batch: the portal flag taken away, the roles lowered. */
static void rule11_portal_and_roles_changed_in_the_batch(void **state)
{
    ctx *c = *state;
    eng_req r[4];
    eng_res res[4];
    eng_req_init(&r[0], ENG_USER_SET, &fx_operator);
    r[0].tenant = (tk_str){"acme", 4};
    r[0].account = (tk_str){"globex", 6};
    r[0].user = (tk_str){"alice", 5};
    r[0].has_items = true;
    r[0].items[0] = (tk_str){"viewer", 6}; /* alice: admin -> viewer */
    r[0].nitems = 1;
    eng_req_init(&r[1], ENG_TOKEN_CREATE, &c->w.alice);
    r[1].items[0] = (tk_str){"admin", 5};
    r[1].nitems = 1;
    eng_req_init(&r[2], ENG_USER_SET, &fx_operator);
    r[2].tenant = (tk_str){"acme", 4};
    r[2].account = (tk_str){"globex", 6};
    r[2].user = (tk_str){"alice", 5};
    r[2].flag = 0; /* no portal */
    eng_req_init(&r[3], ENG_TOKEN_CREATE, &c->w.alice);
    r[3].items[0] = (tk_str){"viewer", 6};
    r[3].nitems = 1;
    assert_int_equal(eng_exec(c->e, r, res, 4), 0);
    assert_int_equal(res[0].status, 0);
    assert_int_equal(res[1].status, TK_EDENIED);
    assert_int_equal(res[2].status, 0);
    assert_int_equal(res[3].status, TK_EDENIED);
}

/* ---- quotas and the creation rate (issue 8) ------------------------------ */

static tk_limits limits(uint32_t tokens, uint32_t roles, uint32_t keys, uint32_t rate,
                        uint32_t burst)
{
    return (tk_limits){.tokens = tokens, .roles = roles, .keys = keys, .rate = rate,
                       .burst = burst};
}

static int key_create(eng *e, const char *user, eng_res *res)
{
    eng_req r;
    eng_req_init(&r, ENG_KEY_CREATE, &fx_operator);
    r.tenant = (tk_str){"acme", 4};
    r.account = (tk_str){"globex", 6};
    r.user = (tk_str){user, strlen(user)};
    return fx_exec(e, &r, res);
}

static void quota_live_tokens_per_account(void **state)
{
    ctx *c = *state;
    eng_res res;
    eng_req r;
    tk_id id[3];
    assert_int_equal(fx_limits(c->e, "acme", limits(3, 0, 0, 0, 0)), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(fx_token(c->e, &c->w.alice, "q", VIEWER, 0, &id[i], NULL), 0);
    eng_req_init(&r, ENG_TOKEN_CREATE, &c->w.bob); /* the account's, not the user's */
    r.items[0] = (tk_str){"viewer", 6};
    r.nitems = 1;
    assert_int_equal(fx_exec(c->e, &r, &res), TK_ELIMIT);
    assert_non_null(strstr(res.msg, "max_tokens"));
    assert_non_null(strstr(res.msg, "globex"));
    /* Another account of the tenant has its own count. */
    assert_int_equal(fx_token(c->e, &c->w.dave, "q", VIEWER, 0, NULL, NULL), 0);
    /* A delete makes room; the count survives a restart (LMDB) and a
     * rebuild from the log alone (the replay counts alike). */
    assert_int_equal(fx_token_delete(c->e, &c->w.alice, &id[0]), 0);
    reopen(c);
    assert_int_equal(fx_token(c->e, &c->w.bob, "q", VIEWER, 0, NULL, NULL), 0);
    assert_int_equal(fx_token(c->e, &c->w.bob, "q", VIEWER, 0, NULL, NULL), TK_ELIMIT);
    /* 0 is no limit. */
    assert_int_equal(fx_limits(c->e, "acme", limits(0, 0, 0, 0, 0)), 0);
    assert_int_equal(fx_token(c->e, &c->w.bob, "q", VIEWER, 0, NULL, NULL), 0);
}

static void quota_keys_per_user_and_roles_per_tenant(void **state)
{
    ctx *c = *state;
    eng_res res;
    eng_req r;
    static const char *const p[] = {"orders:read", NULL};
    assert_int_equal(fx_limits(c->e, "acme", limits(0, 4, 2, 0, 0)), 0);
    /* alice has her first key (from USER_CREATE): one more, then no. */
    assert_int_equal(key_create(c->e, "alice", &res), 0);
    tk_id second = res.id;
    assert_int_equal(key_create(c->e, "alice", &res), TK_ELIMIT);
    assert_non_null(strstr(res.msg, "max_keys"));
    assert_int_equal(key_create(c->e, "bob", &res), 0); /* per user */
    eng_req_init(&r, ENG_KEY_DELETE, &fx_operator);
    r.id = second;
    assert_int_equal(fx_exec(c->e, &r, NULL), 0);
    assert_int_equal(key_create(c->e, "alice", &res), 0);
    /* acme has three roles: one more, then no; changing one is not a new one. */
    assert_int_equal(fx_role(c->e, "acme", "auditor", 3, p), 0);
    eng_req_init(&r, ENG_ROLE_PUT, &fx_operator);
    r.tenant = (tk_str){"acme", 4};
    r.key = (tk_str){"extra", 5};
    r.name = r.key;
    r.level = 3;
    assert_int_equal(fx_exec(c->e, &r, &res), TK_ELIMIT);
    assert_non_null(strstr(res.msg, "max_roles"));
    assert_int_equal(fx_role(c->e, "acme", "auditor", 4, p), 0);
    assert_int_equal(fx_role_delete(c->e, "acme", "auditor"), 0);
    assert_int_equal(fx_role(c->e, "acme", "extra", 3, p), 0);
}

static void creation_rate_per_user(void **state)
{
    ctx *c = *state;
    eng_res res;
    eng_req r;
    assert_int_equal(fx_limits(c->e, "acme", limits(0, 0, 0, 5, 3)), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(fx_token(c->e, &c->w.alice, "burst", VIEWER, 0, NULL, NULL), 0);
    eng_req_init(&r, ENG_TOKEN_CREATE, &c->w.alice);
    r.items[0] = (tk_str){"viewer", 6};
    r.nitems = 1;
    assert_int_equal(fx_exec(c->e, &r, &res), TK_ERATE);
    assert_true(res.retry_after_ms > 0 && res.retry_after_ms <= 200); /* 5 a second */
    assert_non_null(strstr(res.msg, "retry after"));
    /* Another user has a bucket of its own. */
    assert_int_equal(fx_token(c->e, &c->w.bob, "other", VIEWER, 0, NULL, NULL), 0);
    /* After the hinted wait there is room for one. */
    struct timespec ts = {0, (long)(res.retry_after_ms + 20) * 1000000};
    nanosleep(&ts, NULL);
    assert_int_equal(fx_exec(c->e, &r, &res), 0);
    /* A batch of many is limited within the batch. */
    eng_req rs[8];
    eng_res out[8];
    for (int i = 0; i < 8; i++)
        rs[i] = r;
    assert_int_equal(fx_limits(c->e, "acme", limits(0, 0, 0, 1, 4)), 0);
    assert_int_equal(eng_exec(c->e, rs, out, 8), 0);
    int made = 0;
    for (int i = 0; i < 8; i++)
        made += out[i].status == 0;
    assert_true(made <= 4);
}

/* A limits change is one event and survives the log alone. */
static void limits_survive_a_rebuild(void **state)
{
    tk_why said = {.msg = ""};
    ctx *c = *state;
    eng_req r;
    assert_int_equal(fx_limits(c->e, "acme", limits(1, 0, 0, 0, 0)), 0);
    eng_req_init(&r, ENG_TENANT_SET, &fx_operator);
    r.tenant = (tk_str){"acme", 4};
    assert_int_equal(fx_exec(c->e, &r, NULL), TK_EINVAL); /* nothing to set */
    r.flag = 0; /* api tokens off: the limits are kept */
    assert_int_equal(fx_exec(c->e, &r, NULL), 0);
    r.flag = 1;
    assert_int_equal(fx_exec(c->e, &r, NULL), 0);
    eng_close(c->e);
    char *st = tkt_path(c->dir, "state");
    tkt_rmdir(st); /* the log alone */
    free(st);
    assert_int_equal(eng_open(c->dir, NULL, &c->e, &said), 0);
    assert_int_equal(fx_token(c->e, &c->w.alice, "one", VIEWER, 0, NULL, NULL), 0);
    assert_int_equal(fx_token(c->e, &c->w.alice, "two", VIEWER, 0, NULL, NULL), TK_ELIMIT);
}

/* ---- deletions (issue 9): effective before the acknowledgement, and
 * after a restart and a rebuild from the log alone ---------------------- */

/* Closes, and opens again: from LMDB (rebuild false) or from the log
 * alone (the state removed first). */
static void reopen_from(ctx *c, bool rebuild)
{
    tk_why said = {.msg = ""};
    eng_close(c->e);
    if (rebuild) {
        char *st = tkt_path(c->dir, "state");
        tkt_rmdir(st);
        free(st);
    }
    assert_int_equal(eng_open(c->dir, NULL, &c->e, &said), 0);
}

static void delete_user_ends_its_keys_not_its_tokens(void **state)
{
    ctx *c = *state;
    char s[TK_SECRET_LEN + 1];
    tk_verify v;
    tk_actor a;
    tk_str none = {0};
    info_one one = {0};
    assert_int_equal(fx_token(c->e, &c->w.alice, "ci", VIEWER, 0, NULL, s), 0);
    assert_int_equal(fx_delete(c->e, ENG_USER_DELETE, "acme", "globex", "alice", NULL), 0);
    /* At once: the key acts no more, the token still verifies. */
    assert_int_equal(fx_auth(c->e, c->w.alice_key, &a), TK_EUNAUTH);
    assert_int_equal(fx_token(c->e, &c->w.alice, "x", VIEWER, 0, NULL, NULL), TK_EUNAUTH);
    assert_int_equal(fx_verify(c->e, s, &v), TK_V_VALID);
    assert_int_equal(eng_token_list(c->e, &fx_operator, (tk_str){"acme", 4},
                                    (tk_str){"globex", 6}, NULL, 1, keep_info, &one), 0);
    assert_string_equal(one.info.created_by, "alice"); /* metadata, kept */
    assert_int_equal(fx_delete(c->e, ENG_USER_DELETE, "acme", "globex", "alice", NULL), TK_ENOTFOUND);
    for (int rebuild = 0; rebuild < 2; rebuild++) {
        reopen_from(c, rebuild);
        assert_int_equal(fx_auth(c->e, c->w.alice_key, &a), TK_EUNAUTH);
        assert_int_equal(fx_verify(c->e, s, &v), TK_V_VALID);
    }
    /* The slug is free again: a new alice, with nothing of the old one. */
    assert_int_equal(fx_user(c->e, "acme", "globex", "alice", true, ADMIN, NULL), 0);
    (void)none;
}

static void delete_account_ends_its_tokens_users_and_keys(void **state)
{
    ctx *c = *state;
    char mine[TK_SECRET_LEN + 1], other[TK_SECRET_LEN + 1];
    tk_verify v;
    tk_actor a;
    assert_int_equal(fx_token(c->e, &c->w.alice, "g", VIEWER, 0, NULL, mine), 0);
    assert_int_equal(fx_token(c->e, &c->w.dave, "i", VIEWER, 0, NULL, other), 0);
    assert_int_equal(fx_delete(c->e, ENG_ACCOUNT_DELETE, "acme", "globex", NULL, NULL), 0);
    assert_int_equal(fx_verify(c->e, mine, &v), TK_V_UNKNOWN);
    assert_int_equal(fx_auth(c->e, c->w.alice_key, &a), TK_EUNAUTH);
    assert_int_equal(fx_verify(c->e, other, &v), TK_V_VALID); /* another account */
    assert_int_equal(fx_user(c->e, "acme", "globex", "zed", true, ADMIN, NULL), TK_ENOTFOUND);
    for (int rebuild = 0; rebuild < 2; rebuild++) {
        reopen_from(c, rebuild);
        assert_int_equal(fx_verify(c->e, mine, &v), TK_V_UNKNOWN);
        assert_int_equal(fx_verify(c->e, other, &v), TK_V_VALID);
        assert_int_equal(fx_auth(c->e, c->w.alice_key, &a), TK_EUNAUTH);
    }
    /* Made again, it is empty. */
    assert_int_equal(fx_account(c->e, "acme", "globex"), 0);
    assert_int_equal(fx_verify(c->e, mine, &v), TK_V_UNKNOWN);
}

static void delete_permission_drops_out_of_roles(void **state)
{
    ctx *c = *state;
    char s[TK_SECRET_LEN + 1];
    tk_verify v;
    assert_int_equal(fx_token(c->e, &c->w.alice, "a", ADMIN, 0, NULL, s), 0);
    assert_int_equal(fx_verify(c->e, s, &v), TK_V_VALID);
    assert_int_equal(v.nperms, 2); /* orders:read, orders:write */
    assert_int_equal(fx_delete(c->e, ENG_PERM_DELETE, "acme", NULL, NULL, "orders:write"), 0);
    assert_int_equal(fx_verify(c->e, s, &v), TK_V_VALID);
    assert_int_equal(v.nperms, 1);
    assert_string_equal(v.perms[0], "orders:read");
    assert_int_equal(fx_delete(c->e, ENG_PERM_DELETE, "acme", NULL, NULL, "orders:write"),
                     TK_ENOTFOUND);
    /* A new permission takes the freed number; it does not come back to
     * the roles that had the old one. */
    static const char *const p[] = {"labs:run", NULL};
    assert_int_equal(fx_role(c->e, "acme", "lab", 3, p), 0);
    assert_int_equal(fx_verify(c->e, s, &v), TK_V_VALID);
    assert_int_equal(v.nperms, 1);
    assert_string_equal(v.perms[0], "orders:read");
    for (int rebuild = 0; rebuild < 2; rebuild++) {
        reopen_from(c, rebuild);
        assert_int_equal(fx_verify(c->e, s, &v), TK_V_VALID);
        assert_int_equal(v.nperms, 1);
        assert_string_equal(v.perms[0], "orders:read");
    }
}

static void delete_tenant_ends_everything_of_it(void **state)
{
    ctx *c = *state;
    char mine[TK_SECRET_LEN + 1], other[TK_SECRET_LEN + 1];
    tk_verify v;
    tk_actor a;
    assert_int_equal(fx_token(c->e, &c->w.alice, "g", VIEWER, 0, NULL, mine), 0);
    assert_int_equal(fx_token(c->e, &c->w.ellen, "u", ADMIN, 0, NULL, other), 0);
    assert_int_equal(fx_delete(c->e, ENG_TENANT_DELETE, "acme", NULL, NULL, NULL), 0);
    assert_int_equal(fx_verify(c->e, mine, &v), TK_V_UNKNOWN);
    assert_int_equal(fx_auth(c->e, c->w.alice_key, &a), TK_EUNAUTH);
    assert_int_equal(fx_verify(c->e, other, &v), TK_V_VALID);
    assert_int_equal(fx_account(c->e, "acme", "globex"), TK_ENOTFOUND);
    for (int rebuild = 0; rebuild < 2; rebuild++) {
        reopen_from(c, rebuild);
        assert_int_equal(fx_verify(c->e, mine, &v), TK_V_UNKNOWN);
        assert_int_equal(fx_verify(c->e, other, &v), TK_V_VALID);
    }
    /* The slug again: a new, empty tenant, its toggle off. */
    assert_int_equal(fx_tenant(c->e, "acme"), 0);
    assert_int_equal(fx_account(c->e, "acme", "globex"), 0);
    assert_int_equal(fx_verify(c->e, mine, &v), TK_V_UNKNOWN);
}

static void token_description_changes_and_nothing_else(void **state)
{
    ctx *c = *state;
    char s[TK_SECRET_LEN + 1];
    tk_id id;
    tk_verify v;
    eng_req r;
    eng_res res;
    info_one one = {0};
    tk_str none = {0};
    assert_int_equal(fx_token(c->e, &c->w.alice, "old", VIEWER, 0, &id, s), 0);
    eng_req_init(&r, ENG_TOKEN_SET, &c->w.bob); /* a portal user of the account */
    r.id = id;
    r.desc = (tk_str){"deploy bot", 10};
    assert_int_equal(fx_exec(c->e, &r, NULL), 0);
    assert_int_equal(eng_token_list(c->e, &c->w.alice, none, none, NULL, 1, keep_info, &one), 0);
    assert_string_equal(one.info.description, "deploy bot");
    assert_int_equal(one.info.nroles, 1);
    assert_int_equal(fx_verify(c->e, s, &v), TK_V_VALID);
    /* Rule 2, rule 7, and the text's form. */
    r.actor = c->w.carol;
    assert_int_equal(fx_exec(c->e, &r, &res), TK_EDENIED);
    r.actor = c->w.dave;
    assert_int_equal(fx_exec(c->e, &r, &res), TK_ENOTFOUND);
    assert_non_null(strstr(res.msg, "in your account"));
    r.actor = fx_operator;
    r.desc = (tk_str){"\xc3\x28", 2};
    assert_int_equal(fx_exec(c->e, &r, NULL), TK_EINVAL);
    reopen_from(c, true);
    one.n = 0;
    assert_int_equal(eng_token_list(c->e, &c->w.alice, none, none, NULL, 1, keep_info, &one), 0);
    assert_string_equal(one.info.description, "deploy bot");
}

/* ---- what a request means ---------------------------------------------- */

static void past_expiry_refused_everywhere(void **state)
{
    ctx *c = *state;
    eng_req r;
    eng_res res;
    int64_t past = time(NULL) - 10;
    assert_int_equal(fx_token(c->e, &c->w.alice, "x", VIEWER, past, NULL, NULL), TK_EINVAL);
    eng_req_init(&r, ENG_KEY_CREATE, &fx_operator);
    r.tenant = (tk_str){"acme", 4};
    r.account = (tk_str){"globex", 6};
    r.user = (tk_str){"alice", 5};
    r.expires = past;
    assert_int_equal(fx_exec(c->e, &r, &res), TK_EINVAL);
    assert_non_null(strstr(res.msg, "in the future"));
    r.expires = time(NULL); /* now is already past: dead on arrival */
    assert_int_equal(fx_exec(c->e, &r, &res), TK_EINVAL);
    r.expires = time(NULL) + 3600;
    assert_int_equal(fx_exec(c->e, &r, &res), 0);
}

static void duplicate_roles_collapse(void **state)
{
    ctx *c = *state;
    static const char *const thrice[] = {"viewer", "viewer", "editor", "viewer", NULL};
    static const char *const perms[] = {"orders:read", "orders:read", "orders:ship", NULL};
    char s[TK_SECRET_LEN + 1];
    tk_verify v;
    tk_str none = {0};
    assert_int_equal(fx_token(c->e, &c->w.alice, "dup", thrice, 0, NULL, s), 0);
    assert_int_equal(fx_verify(c->e, s, &v), TK_V_VALID);
    assert_int_equal(v.nroles, 2);
    assert_true(has(v.roles, v.nroles, "viewer") && has(v.roles, v.nroles, "editor"));
    info_one one = {0};
    assert_int_equal(eng_token_list(c->e, &c->w.alice, none, none, NULL, 1, keep_info, &one), 0);
    assert_int_equal(one.info.nroles, 2);
    /* A role's permissions, and a user's roles, likewise. */
    assert_int_equal(fx_role(c->e, "acme", "shipper", 2, perms), 0);
    static const char *const shipper[] = {"shipper", NULL};
    assert_int_equal(fx_token(c->e, &c->w.alice, "ship", shipper, 0, NULL, s), 0);
    assert_int_equal(fx_verify(c->e, s, &v), TK_V_VALID);
    assert_int_equal(v.nperms, 2);
    static const char *const admin_twice[] = {"admin", "admin", NULL};
    char key[TK_SECRET_LEN + 1];
    tk_actor zed;
    assert_int_equal(fx_user(c->e, "acme", "globex", "zed", true, admin_twice, key), 0);
    assert_int_equal(fx_auth(c->e, key, &zed), 0);
    uint32_t nroles = 0;
    assert_int_equal(fx_user_roles(c->e, &zed, &nroles), 0);
    assert_int_equal(nroles, 1);
}

static void refusals_say_why(void **state)
{
    ctx *c = *state;
    eng_req r;
    eng_res res;
    eng_req_init(&r, ENG_TOKEN_CREATE, &c->w.bob);
    r.items[0] = (tk_str){"admin", 5};
    r.nitems = 1;
    assert_int_equal(fx_exec(c->e, &r, &res), TK_EDENIED);
    assert_non_null(strstr(res.msg, "'admin' (level 0) is stronger than bob's"));
    eng_req_init(&r, ENG_TOKEN_CREATE, &c->w.carol);
    r.items[0] = (tk_str){"viewer", 6};
    r.nitems = 1;
    assert_int_equal(fx_exec(c->e, &r, &res), TK_EDENIED);
    assert_non_null(strstr(res.msg, "carol"));
    assert_non_null(strstr(res.msg, "portal"));
    assert_int_equal(fx_toggle(c->e, "acme", false), 0);
    eng_req_init(&r, ENG_TOKEN_CREATE, &c->w.alice);
    r.items[0] = (tk_str){"viewer", 6};
    r.nitems = 1;
    assert_int_equal(fx_exec(c->e, &r, &res), TK_EDISABLED);
    assert_non_null(strstr(res.msg, "switched off for tenant 'acme'"));
    eng_req_init(&r, ENG_ACCOUNT_CREATE, &fx_operator);
    r.tenant = (tk_str){"nope", 4};
    r.account = (tk_str){"x", 1};
    assert_int_equal(fx_exec(c->e, &r, &res), TK_ENOTFOUND);
    assert_string_equal(res.msg, "no tenant 'nope'");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(rule1_create_needs_toggle_on),
        T(rule1_toggle_off_fails_every_token),
        T(rule2_portal_needed_to_manage),
        T(rule3_no_stronger_role),
        T(rule3_token_without_roles_refused),
        T(rule3_user_level_is_current),
        T(rule4_secret_returned_once_and_never_stored),
        T(rule4_secrets_are_random),
        T(rule5_delete_effective_before_ack),
        T(rule6_role_changes_reach_tokens),
        T(rule7_isolation),
        T(rule8_kinds_do_not_mix),
        T(rule9_listing_is_metadata_only),
        T(verify_answers),
        T(verify_expiry),
        T(names_and_duplicates),
        T(batch_is_one_commit_with_independent_results),
        T(failed_fsync_is_not_acknowledged_and_fences),
        T(refusals_say_why),
        T(listing_keeps_creation_order_within_a_millisecond),
        T(listing_continues_past_a_deleted_token),
        T(listing_cursor_is_no_oracle),
        T(rule11_key_deleted_in_the_batch_acts_no_more),
        T(rule11_expired_key_acts_no_more),
        T(rule11_portal_session_acts_while_it_stands),
        T(keyring_keys_act_and_stop_at_once),
        T(keyring_bootstrap_key_removed_for_good),
        T(key_file_mode_is_checked),
        T(rechained_log_is_refused_beside_its_state),
        T(chain_edit_is_found_by_the_background_check),
        T(background_check_passes_an_intact_log),
        T(portal_session_needs_the_portal_flag),
        T(rule11_portal_and_roles_changed_in_the_batch),
        T(past_expiry_refused_everywhere),
        T(duplicate_roles_collapse),
        T(quota_live_tokens_per_account),
        T(quota_keys_per_user_and_roles_per_tenant),
        T(creation_rate_per_user),
        T(limits_survive_a_rebuild),
        T(delete_user_ends_its_keys_not_its_tokens),
        T(delete_account_ends_its_tokens_users_and_keys),
        T(delete_permission_drops_out_of_roles),
        T(delete_tenant_ends_everything_of_it),
        T(token_description_changes_and_nothing_else),
    };
    return cmocka_run_group_tests_name("engine", tests, NULL, NULL);
}
