/*
 * test_concurrency.c - verifications racing creates and deletes.
 *
 * The real bin/tokend runs; one writer connection creates tokens and
 * deletes some, while four verifier connections (threads) verify random
 * tokens in a loop. For each token the test keeps three atomic moments:
 * create acknowledged, delete sent, delete acknowledged. Each verification
 * reads them before sending and after its reply, and then:
 *   - a token whose delete was acknowledged before the verify was sent must
 *     be refused (rule 5: effective before the acknowledgement);
 *   - a token created (acknowledged) before the verify was sent, whose
 *     delete had not been sent when the reply came, must be valid.
 * Between "delete sent" and "delete acknowledged" either answer is right.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "net/client.h"
#include "tests/support/raw.h"

#define MAX_TOK 20000
#define VERIFIERS 4
#define RUN_MS 3000

enum { T_NONE, T_LIVE, T_DELETING, T_DELETED };

typedef struct tok {
    char secret[TK_SECRET_LEN + 1];
    char client_id[TK_ID_STR_LEN + 1];
    _Atomic int state;
} tok;

static tok toks[MAX_TOK];
static _Atomic size_t ntok;
static _Atomic bool stop;
static char addr[64];
static char user_key[TK_SECRET_LEN + 1];

typedef struct vstats {
    long checked_live, checked_deleted, in_between, wrong;
    char first_wrong[200];
} vstats;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void *verifier(void *arg)
{
    vstats *st = arg;
    tkc *c = tkc_new();
    tkc_verify_res res = TKC_VERIFY_RES_INIT;
    unsigned seed = (unsigned)(uintptr_t)arg;
    if (tkc_connect(c, addr) != 0) {
        st->wrong = -1;
        snprintf(st->first_wrong, sizeof st->first_wrong, "connect: %s", tkc_errmsg(c));
        goto done;
    }
    while (!atomic_load(&stop)) {
        size_t n = atomic_load(&ntok);
        if (n == 0) {
            usleep(1000);
            continue;
        }
        tok *t = &toks[(size_t)rand_r(&seed) % n];
        int before = atomic_load(&t->state);
        if (tkc_verify(c, t->secret, NULL, &res) != 0) {
            st->wrong++;
            snprintf(st->first_wrong, sizeof st->first_wrong, "verify failed: %s", tkc_errmsg(c));
            break;
        }
        int after = atomic_load(&t->state);
        if (before == T_DELETED) {
            st->checked_deleted++;
            if (res.valid) {
                st->wrong++;
                snprintf(st->first_wrong, sizeof st->first_wrong,
                         "%s verified after its delete was acknowledged", t->client_id);
            }
        } else if (before == T_LIVE && after == T_LIVE) {
            st->checked_live++;
            if (!res.valid) {
                st->wrong++;
                snprintf(st->first_wrong, sizeof st->first_wrong, "live %s refused: %s",
                         t->client_id, res.reason);
            }
        } else {
            st->in_between++;
        }
    }
done:
    tkc_verify_res_free(&res);
    tkc_free(c);
    return NULL;
}

static void verify_races_writes(void **state)
{
    (void)state;
    raw_server s;
    char opkey[128];
    raw_watchdog(120);
    assert_int_equal(raw_server_start(&s, NULL, NULL), 0);
    assert_int_equal(raw_read_key(&s, "operator.key", opkey, sizeof opkey), 0);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", s.port);

    tkc *op = tkc_new();
    tkc_key key;
    static const char *const perms[] = {"orders:read"};
    static const char *const roles[] = {"viewer"};
    assert_int_equal(tkc_connect(op, addr), 0);
    assert_int_equal(tkc_auth(op, opkey, NULL), 0);
    assert_int_equal(tkc_tenant_create(op, "acme"), 0);
    assert_int_equal(tkc_tenant_set(op, "acme", true), 0);
    tkc_limits none = {0, 0, 0, 0, 0}; /* the race makes tokens as fast as it can */
    assert_int_equal(tkc_tenant_limits(op, "acme", TKC_UNCHANGED, &none), 0);
    assert_int_equal(tkc_role_put(op, "acme", "viewer", "Viewer", 2, perms, 1), 0);
    assert_int_equal(tkc_account_create(op, "acme", "globex"), 0);
    assert_int_equal(tkc_user_create(op, "acme", "globex", "writer", roles, 1, true, &key), 0);
    memcpy(user_key, key.personal_key, sizeof user_key);
    tkc_free(op);

    tkc *w = tkc_new();
    assert_int_equal(tkc_connect(w, addr), 0);
    assert_int_equal(tkc_auth(w, user_key, NULL), 0);

    pthread_t th[VERIFIERS];
    vstats st[VERIFIERS];
    memset(st, 0, sizeof st);
    for (int i = 0; i < VERIFIERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, verifier, &st[i]), 0);

    uint64_t end = now_ms() + RUN_MS;
    unsigned seed = 7;
    long created = 0, deleted = 0;
    while (now_ms() < end && atomic_load(&ntok) < MAX_TOK) {
        tkc_new_token nt;
        size_t n = atomic_load(&ntok);
        if (n < 20 || rand_r(&seed) % 2) {
            assert_int_equal(tkc_token_create(w, "race", roles, 1, 0, &nt), 0);
            tok *t = &toks[n];
            memcpy(t->secret, nt.secret, sizeof t->secret);
            memcpy(t->client_id, nt.client_id, sizeof t->client_id);
            atomic_store(&t->state, T_LIVE); /* acknowledged */
            atomic_store(&ntok, n + 1);
            created++;
        } else {
            tok *t = &toks[(size_t)rand_r(&seed) % n];
            if (atomic_load(&t->state) != T_LIVE)
                continue;
            atomic_store(&t->state, T_DELETING); /* about to be sent */
            assert_int_equal(tkc_token_delete(w, t->client_id), 0);
            atomic_store(&t->state, T_DELETED); /* acknowledged */
            deleted++;
        }
    }
    atomic_store(&stop, true);
    long live = 0, dead = 0, between = 0;
    for (int i = 0; i < VERIFIERS; i++) {
        pthread_join(th[i], NULL);
        if (st[i].wrong)
            fail_msg("verifier %d: %ld wrong answers, first: %s", i, st[i].wrong, st[i].first_wrong);
        live += st[i].checked_live;
        dead += st[i].checked_deleted;
        between += st[i].in_between;
    }
    print_message("%ld creates, %ld deletes; verifications: %ld of live tokens, %ld of deleted, "
                  "%ld in a delete's window\n", created, deleted, live, dead, between);
    assert_true(created > 50 && deleted > 20);
    assert_true(live > 500 && dead > 50);
    tkc_free(w);
    assert_int_equal(raw_server_stop(&s), 0);
    raw_server_free(&s);
    raw_watchdog(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(verify_races_writes),
    };
    return cmocka_run_group_tests_name("concurrency", tests, NULL, NULL);
}
