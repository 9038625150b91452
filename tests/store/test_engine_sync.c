/*
 * test_engine_sync.c - LMDB is flushed at checkpoints, not at each commit
 * (store/engine.c, "LMDB checkpoints"): a clean close leaves no marker; a
 * process crash on the same boot keeps LMDB; a marker from another boot
 * (the machine went down with unflushed commits) makes the open set LMDB
 * aside and rebuild it from the log, even when LMDB is garbage. And the
 * commit point is the log's fsync: a failure of any step after it (the
 * marker, the LMDB commit, the LMDB flush; injected with
 * tests/support/fault.h) still answers the batch as committed, fences,
 * and the next open shows exactly what was answered.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "core/err.h"
#include "store/engine.h"
#include "tests/support/fault.h"
#include "tests/support/fixture.h"
#include "tests/support/tkt.h"

static const char *const VIEWER[] = {"viewer", NULL};

static bool exists(const char *dir, const char *name)
{
    char *p = tkt_path(dir, name);
    struct stat st;
    bool ok = stat(p, &st) == 0;
    free(p);
    return ok;
}

static int count_prefix(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

/* The names in dir, sorted, joined by spaces. */
static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_dir(const char *dir, char *out, size_t cap)
{
    char *names[64];
    size_t n = 0;
    DIR *d = opendir(dir);
    struct dirent *de;
    assert_non_null(d);
    while ((de = readdir(d)) != NULL && n < 64)
        if (de->d_name[0] != '.')
            names[n++] = strdup(de->d_name);
    closedir(d);
    qsort(names, n, sizeof *names, name_cmp);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        strncat(out, names[i], cap - strlen(out) - 2);
        strncat(out, " ", cap - strlen(out) - 1);
        free(names[i]);
    }
}

/* A child's work on the store: 0, or the child's exit status saying what
 * failed; it puts what the parent gets into out. */
typedef int (*child_work)(eng *e, fx_world *w, void *out);

/* A child opens the store on dir, builds fx_scenario's world, runs work
 * and dies without closing: a process crash (no eng_close: LMDB not
 * flushed, the marker stays). The n bytes work put into out come back
 * through a pipe into the parent's out. */
static void crash_in_child(const char *dir, child_work work, void *out, size_t n)
{
    tk_why said = {.msg = ""};
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        eng *e;
        fx_world w;
        if (eng_open(dir, NULL, &e, &said) != 0)
            _exit(3);
        fx_scenario(e, &w);
        int rc = work(e, &w, out);
        if (rc != 0)
            _exit(rc);
        _exit(write(fds[1], out, n) == (ssize_t)n ? 0 : 5);
    }
    close(fds[1]);
    ssize_t got = read(fds[0], out, n);
    close(fds[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(got, (ssize_t)n);
}

/* crash_in_child's work: a token (its secret into out). */
static int create_one(eng *e, fx_world *w, void *out)
{
    return fx_token(e, &w->alice, "ci", VIEWER, 0, NULL, out) == 0 ? 0 : 4;
}

static void crash_after_create(const char *dir, char secret[TK_SECRET_LEN + 1])
{
    crash_in_child(dir, create_one, secret, TK_SECRET_LEN + 1);
}

/* A batch of n creates as alice through the pipeline's steps, as the
 * server's writer, sync and loop threads take them (net/writer.c); 0 or
 * the first status that is not. */
static int piped_creates(eng *e, const fx_world *w, size_t n)
{
    eng_req r[8];
    eng_res res[8];
    uint64_t batch, durable;
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        eng_req_init(&r[i], ENG_TOKEN_CREATE, &w->alice);
        r[i].items[0] = (tk_str){"viewer", 6};
        r[i].nitems = 1;
    }
    int rc = eng_commit(e, r, res, n, &batch);
    eng_apply_some(e);
    if (rc == 0 && eng_sync(e, &durable) != 0)
        rc = TK_EIO;
    eng_publish(e);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = res[i].status;
    return rc;
}

static int piped_create(eng *e, const fx_world *w)
{
    return piped_creates(e, w, 1);
}

static int count_row(void *arg, const eng_row *row)
{
    (void)row;
    (*(int *)arg)++;
    return 0;
}

static int tokens_of(eng *e, const fx_world *w)
{
    eng_query q = {.kind = ENG_TOKENS, .actor = w->alice, .limit = 1000};
    int rows = 0;
    assert_int_equal(eng_query_run(e, &q, count_row, &rows, NULL), 0);
    return rows;
}

#define PIPED 64

/* The pipeline carries LMDB's write transaction over small batches: 64
 * batches of one create, one after the other, make one commit per 16
 * batches or 5 ms (plus the one in progress), not one each; a listing
 * commits what is carried first, and sees every batch. A batch of more
 * than 4 requests commits what is carried first, and is committed on its
 * own. */
static void lmdb_commit_carried_over_batches(void **state)
{
    tk_why said = {.msg = ""};
    (void)state;
    char *dir = tkt_mkdtemp();
    eng *e;
    fx_world w;
    struct timespec a, b;
    assert_int_equal(eng_open(dir, NULL, &e, &said), 0);
    fx_scenario(e, &w);
    uint64_t before = eng_lmdb_commits(e);
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < PIPED; i++)
        assert_int_equal(piped_create(e, &w), 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    uint64_t commits = eng_lmdb_commits(e) - before;
    double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    uint64_t bound = 1 + PIPED / 16 + (uint64_t)(ms / 5);
    print_message("# %d batches in %.1f ms: %llu LMDB commits (at most %llu)\n", PIPED, ms,
                  (unsigned long long)commits, (unsigned long long)bound);
    assert_true(bound < PIPED); /* else the run was too slow to tell */
    assert_true(commits <= bound);
    assert_int_equal(tokens_of(e, &w), PIPED);
    assert_false(eng_carrying(e)); /* the listing committed it */

    /* A batch alone begins a carry, which the listing commits and sees. */
    assert_int_equal(piped_create(e, &w), 0);
    assert_true(eng_carrying(e));
    assert_int_equal(tokens_of(e, &w), PIPED + 1);
    assert_false(eng_carrying(e));
    assert_int_equal(piped_create(e, &w), 0);
    assert_true(eng_carrying(e));
    before = eng_lmdb_commits(e);
    assert_int_equal(piped_creates(e, &w, 8), 0);
    assert_false(eng_carrying(e));
    assert_int_equal(eng_lmdb_commits(e) - before, 2); /* the carried one, then its own */
    assert_int_equal(piped_creates(e, &w, 8), 0);
    assert_false(eng_carrying(e));
    assert_int_equal(eng_lmdb_commits(e) - before, 3);
    assert_int_equal(tokens_of(e, &w), PIPED + 18);
    eng_close(e);
    tkt_rmdir(dir);
    free(dir);
}

/* crash_in_child's work: 5 creates through the pipeline, the last ones
 * still carried when the child dies (alice's actor into out). */
static int create_carried(eng *e, fx_world *w, void *out)
{
    for (int i = 0; i < 5; i++)
        if (piped_create(e, w) != 0)
            return 4;
    memcpy(out, &w->alice, sizeof w->alice);
    return eng_carrying(e) ? 0 : 6;
}

/* A process crash with LMDB's transaction carried (uncommitted batches,
 * acknowledged: durable in the log) loses none of them: the open replays
 * the log past LMDB's applied seq. */
static void crash_with_carried_batches_loses_none(void **state)
{
    tk_why said = {.msg = ""};
    (void)state;
    char *dir = tkt_mkdtemp();
    fx_world w;
    crash_in_child(dir, create_carried, &w.alice, sizeof w.alice);
    eng *e;
    assert_int_equal(eng_open(dir, NULL, &e, &said), 0);
    assert_int_equal(tokens_of(e, &w), 5);
    eng_close(e);
    tkt_rmdir(dir);
    free(dir);
}

static void clean_close_leaves_no_marker(void **state)
{
    tk_why said = {.msg = ""};
    (void)state;
    char *dir = tkt_mkdtemp();
    eng *e;
    fx_world w;
    assert_int_equal(eng_open(dir, NULL, &e, &said), 0);
    fx_scenario(e, &w);
    assert_true(exists(dir, "state.unsynced")); /* commits since the open's checkpoint */
    eng_close(e);
    assert_false(exists(dir, "state.unsynced"));
    tkt_rmdir(dir);
    free(dir);
}

static void process_crash_keeps_lmdb(void **state)
{
    tk_why said = {.msg = ""};
    (void)state;
    char *dir = tkt_mkdtemp();
    char secret[TK_SECRET_LEN + 1];
    eng *e;
    tk_verify v;
    crash_after_create(dir, secret);
    assert_true(exists(dir, "state.unsynced"));
    assert_int_equal(eng_open(dir, NULL, &e, &said), 0);
    assert_int_equal(count_prefix(dir, "state.untrusted-"), 0); /* same boot: trusted */
    assert_false(exists(dir, "state.unsynced"));                /* the open checkpoints */
    assert_int_equal(fx_verify(e, secret, &v), TK_V_VALID);
    eng_close(e);
    tkt_rmdir(dir);
    free(dir);
}

static void machine_crash_rebuilds_lmdb_from_the_log(void **state)
{
    tk_why said = {.msg = ""};
    (void)state;
    char *dir = tkt_mkdtemp();
    char secret[TK_SECRET_LEN + 1];
    eng *e;
    tk_verify v;
    crash_after_create(dir, secret);
    /* As after a power cut: the marker names another boot, and LMDB's
     * pages on disk are not to be trusted (here: garbage). */
    char *marker = tkt_path(dir, "state.unsynced");
    assert_int_equal(tkt_write_file(marker, "00000000-0000-0000-0000-000000000000", 36), 0);
    char *mdb = tkt_path(dir, "state/data.mdb");
    static unsigned char junk[1 << 16];
    memset(junk, 0xA5, sizeof junk);
    assert_int_equal(tkt_write_file(mdb, junk, sizeof junk), 0);

    assert_int_equal(eng_open(dir, NULL, &e, &said), 0);
    assert_int_equal(count_prefix(dir, "state.untrusted-"), 1); /* kept, not deleted */
    assert_false(exists(dir, "state.unsynced"));
    assert_int_equal(fx_verify(e, secret, &v), TK_V_VALID);
    assert_string_equal(v.tenant, "acme");
    eng_close(e);

    /* A second one (within the same second, most likely): the first state
     * set aside is not in the way, and both are kept. */
    assert_int_equal(tkt_write_file(marker, "00000000-0000-0000-0000-000000000000", 36), 0);
    assert_int_equal(eng_open(dir, NULL, &e, &said), 0);
    assert_int_equal(count_prefix(dir, "state.untrusted-"), 2);
    assert_int_equal(fx_verify(e, secret, &v), TK_V_VALID);
    eng_close(e);
    free(marker);
    free(mdb);
    tkt_rmdir(dir);
    free(dir);
}

/* A state written with an older record layout (here: its "format" mark
 * removed, as a tokend before the mark left it) is set aside and rebuilt
 * from the log, not misread. */
static void older_layout_is_rebuilt_from_the_log(void **state)
{
    tk_why said = {.msg = ""};
    (void)state;
    char *dir = tkt_mkdtemp();
    char secret[TK_SECRET_LEN + 1];
    eng *e;
    tk_verify v;
    fx_world w;
    assert_int_equal(eng_open(dir, NULL, &e, &said), 0);
    fx_scenario(e, &w);
    assert_int_equal(fx_token(e, &w.alice, "ci", VIEWER, 0, NULL, secret), 0);
    eng_close(e);

    char *sdir = tkt_path(dir, "state");
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val k = {6, "format"};
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 32);
    assert_int_equal(mdb_env_open(env, sdir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    assert_int_equal(eng_open(dir, NULL, &e, &said), 0);
    assert_int_equal(count_prefix(dir, "state.oldformat-"), 1);
    assert_int_equal(fx_verify(e, secret, &v), TK_V_VALID);
    eng_close(e);
    /* Rebuilt with the current layout: the next open keeps it. */
    assert_int_equal(eng_open(dir, NULL, &e, &said), 0);
    assert_int_equal(count_prefix(dir, "state.oldformat-"), 1);
    eng_close(e);
    free(sdir);
    tkt_rmdir(dir);
    free(dir);
}

/* The log's full check runs beside the state's load at open: damage in a
 * segment before the last still fails the open, with the place named,
 * whether or not there is anything to replay; mended, it opens. */
static void damaged_log_refused_at_open(void **state)
{
    tk_why said = {.msg = ""};
    (void)state;
    char *dir = tkt_mkdtemp();
    eng_opts o = {.segment_bytes = 2048};
    eng *e;
    fx_world w;
    char s[TK_SECRET_LEN + 1];
    tk_verify v;
    assert_int_equal(eng_open(dir, &o, &e, &said), 0);
    fx_scenario(e, &w);
    for (int i = 0; i < 40; i++)
        assert_int_equal(fx_token(e, &w.alice, "ci", VIEWER, 0, NULL, s), 0);
    eng_close(e);

    char *seg = tkt_path(dir, "log/00000000000000000001.seg");
    size_t len = 0;
    unsigned char *orig = tkt_read_file(seg, &len);
    assert_non_null(orig);
    unsigned char *bad = malloc(len);
    memcpy(bad, orig, len);
    bad[len / 2] ^= 0x04;
    assert_int_equal(tkt_write_file(seg, bad, len), 0);
    assert_int_not_equal(eng_open(dir, &o, &e, &said), 0);
    assert_non_null(strstr(said.msg, "00000000000000000001.seg offset"));
    assert_non_null(strstr(said.msg, "tokenreplay repair"));

    /* ... also when the open would otherwise set the state aside (a marker
     * from another boot) or build a new one (no state): refused first, the
     * directory left exactly as it was. */
    char before[512], after[512];
    char *marker = tkt_path(dir, "state.unsynced");
    assert_int_equal(tkt_write_file(marker, "00000000-0000-0000-0000-000000000000", 36), 0);
    list_dir(dir, before, sizeof before);
    assert_int_not_equal(eng_open(dir, &o, &e, &said), 0);
    assert_non_null(strstr(said.msg, "00000000000000000001.seg offset"));
    list_dir(dir, after, sizeof after);
    assert_string_equal(before, after);
    assert_int_equal(count_prefix(dir, "state.untrusted-"), 0);
    unlink(marker);
    char *sdir = tkt_path(dir, "state"), *moved = tkt_path(dir, "state.moved");
    assert_int_equal(rename(sdir, moved), 0);
    list_dir(dir, before, sizeof before);
    assert_int_not_equal(eng_open(dir, &o, &e, &said), 0);
    list_dir(dir, after, sizeof after);
    assert_string_equal(before, after); /* no new, empty state */
    assert_int_equal(rename(moved, sdir), 0);

    assert_int_equal(tkt_write_file(seg, orig, len), 0);
    assert_int_equal(eng_open(dir, &o, &e, &said), 0);
    assert_int_equal(fx_verify(e, s, &v), TK_V_VALID);
    eng_close(e);

    /* ... and when LMDB is behind the log (here: an older copy of it), the
     * damaged log is refused before anything is replayed into it. */
    char *mdb = tkt_path(dir, "state/data.mdb");
    size_t old_len = 0, now_len = 0;
    unsigned char *old_mdb = tkt_read_file(mdb, &old_len);
    assert_non_null(old_mdb);
    assert_int_equal(eng_open(dir, &o, &e, &said), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(fx_token(e, &w.alice, "late", VIEWER, 0, NULL, s), 0);
    eng_close(e);
    assert_int_equal(tkt_write_file(mdb, old_mdb, old_len), 0);
    assert_int_equal(tkt_write_file(seg, bad, len), 0);
    assert_int_not_equal(eng_open(dir, &o, &e, &said), 0);
    assert_non_null(strstr(said.msg, "00000000000000000001.seg offset"));
    unsigned char *now_mdb = tkt_read_file(mdb, &now_len);
    assert_int_equal(now_len, old_len);
    assert_memory_equal(now_mdb, old_mdb, old_len); /* nothing replayed */
    assert_int_equal(tkt_write_file(seg, orig, len), 0);
    assert_int_equal(eng_open(dir, &o, &e, &said), 0); /* mended: the replay brings it up */
    assert_int_equal(fx_verify(e, s, &v), TK_V_VALID);
    eng_close(e);
    free(mdb);
    free(old_mdb);
    free(now_mdb);
    free(orig);
    free(bad);
    free(seg);
    free(marker);
    free(sdir);
    free(moved);
    tkt_rmdir(dir);
    free(dir);
}

/* ---- failures after the commit point ------------------------------------ */

typedef struct late_case {
    const char *name;  /* the step, as the fence message names it */
    fault_op op;
    const char *file;  /* a part of the failing file's path */
    bool wait_flush;   /* the step is the flush: wait until one is due */
} late_case;

typedef struct id_set {
    int n;
    tk_id ids[64];
} id_set;

static int keep_id(void *arg, const eng_token_info *t)
{
    id_set *s = arg;
    if (s->n < 64)
        s->ids[s->n++] = t->client_id;
    return 0;
}

static bool has_id(const id_set *s, const tk_id *id)
{
    for (int i = 0; i < s->n; i++)
        if (memcmp(s->ids[i].b, id->b, TK_ID_LEN) == 0)
            return true;
    return false;
}

/* One batch deletes token A and creates token B while the step fails. */
static void late_failure_case(const late_case *lc)
{
    tk_why said = {.msg = ""};
    char *dir = tkt_mkdtemp();
    eng *e;
    fx_world w;
    char sa[TK_SECRET_LEN + 1];
    tk_id a;
    tk_verify v;
    tk_str none = {0};
    const char *why;
    id_set seen = {0};

    assert_int_equal(eng_open(dir, NULL, &e, &said), 0);
    fx_scenario(e, &w);
    assert_int_equal(fx_token(e, &w.alice, "old", VIEWER, 0, &a, sa), 0);
    eng_close(e); /* the open's checkpoint: the next batch writes the marker first */
    assert_int_equal(eng_open(dir, NULL, &e, &said), 0);
    if (lc->wait_flush) {
        struct timespec ts = {1, 200 * 1000 * 1000}; /* a checkpoint is due after 1 s */
        nanosleep(&ts, NULL);
    }

    eng_req r[2];
    eng_res res[2];
    eng_req_init(&r[0], ENG_TOKEN_DELETE, &w.alice);
    r[0].id = a;
    eng_req_init(&r[1], ENG_TOKEN_CREATE, &w.alice);
    r[1].items[0] = (tk_str){"viewer", 6};
    r[1].nitems = 1;
    fault_arm(lc->op, lc->file, 1, ENOSPC);
    assert_int_equal(eng_exec(e, r, res, 2), 0); /* committed: the log holds it */
    assert_int_equal(fault_disarm(), 1);
    assert_int_equal(res[0].status, 0);
    assert_int_equal(res[1].status, 0);
    char sb[TK_SECRET_LEN + 1];
    memcpy(sb, res[1].secret, sizeof sb);
    tk_id b = res[1].id;
    /* As answered: A is gone, B verifies. */
    assert_int_equal(fx_verify(e, sa, &v), TK_V_UNKNOWN);
    assert_int_equal(fx_verify(e, sb, &v), TK_V_VALID);
    /* Fenced, saying why; listings (LMDB lacks the batch) refused too. */
    assert_true(eng_fenced(e, &why));
    assert_non_null(strstr(why, lc->name));
    assert_non_null(strstr(why, strerror(ENOSPC)));
    eng_res later;
    eng_req t;
    eng_req_init(&t, ENG_TENANT_CREATE, &fx_operator);
    t.tenant = (tk_str){"later", 5};
    assert_int_equal(eng_exec(e, &t, &later, 1), TK_EFENCED);
    assert_non_null(strstr(later.msg, lc->name));
    assert_int_equal(eng_token_list(e, &w.alice, none, none, NULL, 64, keep_id, &seen),
                     TK_EFENCED);
    assert_int_equal(count_prefix(dir, "state.failed-"), 1); /* set aside for the rebuild */
    eng_close(e);

    /* The next start agrees with every answer given. */
    assert_int_equal(eng_open(dir, NULL, &e, &said), 0);
    assert_int_equal(fx_verify(e, sa, &v), TK_V_UNKNOWN);
    assert_int_equal(fx_verify(e, sb, &v), TK_V_VALID);
    assert_int_equal(eng_token_list(e, &w.alice, none, none, NULL, 64, keep_id, &seen), 0);
    assert_false(has_id(&seen, &a));
    assert_true(has_id(&seen, &b));
    assert_false(eng_fenced(e, NULL));
    assert_int_equal(fx_tenant(e, "later"), 0);
    eng_close(e);
    assert_int_equal(eng_open(dir, NULL, &e, &said), 0); /* and once more: nothing lost */
    assert_int_equal(fx_verify(e, sb, &v), TK_V_VALID);
    assert_int_equal(fx_tenant(e, "later"), TK_EEXIST);
    eng_close(e);
    tkt_rmdir(dir);
    free(dir);
}

static void marker_write_fails_after_the_fsync(void **state)
{
    (void)state;
    late_case lc = {"writing state.unsynced", FAULT_WRITE, "state.unsynced", false};
    late_failure_case(&lc);
}

static void marker_fsync_fails_after_the_fsync(void **state)
{
    (void)state;
    late_case lc = {"writing state.unsynced", FAULT_SYNC, "state.unsynced", false};
    late_failure_case(&lc);
}

static void lmdb_commit_fails_after_the_fsync(void **state)
{
    (void)state;
    late_case lc = {"the LMDB commit", FAULT_WRITE, "state/data.mdb", false};
    late_failure_case(&lc);
}

static void lmdb_flush_fails_after_the_fsync(void **state)
{
    (void)state;
    late_case lc = {"flushing LMDB", FAULT_SYNC, "state/data.mdb", true};
    late_failure_case(&lc);
}

/* Rule 12 when the file system, not the free-space count, says full (the
 * disk filled since the check, or a quota): the log's write is refused for
 * room, and the batch is staged again with growth refused, so its delete
 * commits (from the reserve) and only its create is refused; the log goes
 * on, nothing is fenced, and the next start agrees. */
static void log_without_room_still_takes_revocations(void **state)
{
    (void)state;
    tk_why said = {.msg = ""};
    char *dir = tkt_mkdtemp();
    eng *e;
    fx_world w;
    char sa[TK_SECRET_LEN + 1];
    tk_id a;
    tk_verify v;
    tk_str none = {0};
    id_set seen = {0};

    assert_int_equal(eng_open(dir, NULL, &e, &said), 0);
    fx_scenario(e, &w);
    assert_int_equal(fx_token(e, &w.alice, "old", VIEWER, 0, &a, sa), 0);
    eng_req r[2];
    eng_res res[2];
    eng_req_init(&r[0], ENG_TOKEN_DELETE, &w.alice);
    r[0].id = a;
    eng_req_init(&r[1], ENG_TOKEN_CREATE, &w.alice);
    r[1].items[0] = (tk_str){"viewer", 6};
    r[1].nitems = 1;
    fault_arm(FAULT_WRITE, ".seg", 1, ENOSPC);
    assert_int_equal(eng_exec(e, r, res, 2), 0);
    assert_int_equal(fault_disarm(), 1);
    assert_int_equal(res[0].status, 0);
    assert_int_equal(res[1].status, TK_ENOSPC);
    assert_non_null(strstr(res[1].msg, "storage full"));
    assert_non_null(strstr(res[1].msg, "only revocations"));
    assert_int_equal(fx_verify(e, sa, &v), TK_V_UNKNOWN);
    assert_false(eng_fenced(e, NULL));
    assert_int_equal(fx_tenant(e, "after"), 0); /* the log goes on */
    eng_close(e);

    assert_int_equal(eng_open(dir, NULL, &e, &said), 0);
    assert_int_equal(fx_verify(e, sa, &v), TK_V_UNKNOWN);
    assert_int_equal(eng_token_list(e, &w.alice, none, none, NULL, 64, keep_id, &seen), 0);
    assert_int_equal(seen.n, 0); /* neither the old token nor the refused one */
    eng_close(e);
    tkt_rmdir(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(clean_close_leaves_no_marker),
        cmocka_unit_test(process_crash_keeps_lmdb),
        cmocka_unit_test(machine_crash_rebuilds_lmdb_from_the_log),
        cmocka_unit_test(older_layout_is_rebuilt_from_the_log),
        cmocka_unit_test(damaged_log_refused_at_open),
        cmocka_unit_test(marker_write_fails_after_the_fsync),
        cmocka_unit_test(marker_fsync_fails_after_the_fsync),
        cmocka_unit_test(lmdb_commit_carried_over_batches),
        cmocka_unit_test(crash_with_carried_batches_loses_none),
        cmocka_unit_test(lmdb_commit_fails_after_the_fsync),
        cmocka_unit_test(lmdb_flush_fails_after_the_fsync),
        cmocka_unit_test(log_without_room_still_takes_revocations),
    };
    return cmocka_run_group_tests_name("engine_sync", tests, NULL, NULL);
}
