/*
 * test_tokenreplay.c - bin/tokenreplay and store/replay.c.
 *
 * The CLI cases run the real $BIN/tokenreplay (fork/exec, output captured)
 * on stores built through the engine; the logic cases call replay_*
 * directly. What is claimed: check tells an intact log from a damaged one
 * and names the place; rebuild up to a seq or a time gives the state of the
 * store that stopped there (compared canonically, and by verification);
 * compare finds the first difference and ignores internal ids; repair
 * brings a damaged log back to the history before the damage, with the
 * exact command elog_open prints, keeping every moved byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <sodium.h>

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "store/engine.h"
#include "store/head.h"
#include "store/replay.h"
#include "tests/support/fixture.h"
#include "tests/support/japi.h"
#include "tests/support/raw.h"
#include "tests/support/tkt.h"

#define NTOK 80
/* RUN(&out, "check", "--data", dir): run() with the arguments as an array. */
#define RUN(out, ...) run(out, (const char *const[]){__VA_ARGS__, NULL})
#define SEG_BYTES 4096

static const char *const ADMIN[] = {"admin", NULL};

/* ---- helpers --------------------------------------------------------- */

/* Runs $BIN/tokenreplay with args (NULL-terminated), stdout and stderr into
 * *out (malloc'd, NUL-terminated). Returns the exit code. */
static int run(char **out, const char *const *args)
{
    const char *bin = getenv("BIN");
    char exe[512], *argv[16], logpath[] = "/tmp/tokenreplay-out-XXXXXX";
    int n = 0, fd, status;
    size_t len;

    snprintf(exe, sizeof exe, "%s/tokenreplay", bin && *bin ? bin : "bin");
    argv[n++] = exe;
    for (; *args && n < 15; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    fd = mkstemp(logpath);
    assert_true(fd >= 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        execv(exe, argv);
        _exit(127);
    }
    close(fd);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    unsigned char *buf = tkt_read_file(logpath, &len);
    assert_non_null(buf);
    unlink(logpath);
    *out = realloc(buf, len + 1);
    (*out)[len] = '\0';
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* Asserts that hay contains needle, printing hay when it does not. */
static void contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("expected \"%s\" in:\n%s", needle, hay);
}

static void copy_tree(const char *from, const char *to)
{
    DIR *d = opendir(from);
    struct dirent *e;
    assert_non_null(d);
    assert_int_equal(mkdir(to, 0700), 0);
    while ((e = readdir(d))) {
        struct stat st;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *a = tkt_path(from, e->d_name), *b = tkt_path(to, e->d_name);
        assert_int_equal(lstat(a, &st), 0);
        if (S_ISDIR(st.st_mode)) {
            copy_tree(a, b);
        } else {
            size_t len;
            unsigned char *buf = tkt_read_file(a, &len);
            assert_non_null(buf);
            assert_int_equal(tkt_write_file(b, buf, len), 0);
            assert_int_equal(chmod(b, st.st_mode & 07777), 0); /* a key file stays 0600 */
            free(buf);
        }
        free(a);
        free(b);
    }
    closedir(d);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.seg names of logdir, sorted; *n set. Caller frees each and the array. */
static char **segments(const char *logdir, size_t *n)
{
    DIR *d = opendir(logdir);
    struct dirent *e;
    char **v = calloc(1024, sizeof *v);
    *n = 0;
    assert_non_null(d);
    while ((e = readdir(d)))
        if (strlen(e->d_name) == 24 && strstr(e->d_name, ".seg"))
            v[(*n)++] = strdup(e->d_name);
    closedir(d);
    qsort(v, *n, sizeof *v, cmp_names);
    return v;
}

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Finds the record with seq in logdir by the format of elog.h: its segment
 * (name into seg), the record's offset and its payload length. */
static void locate(const char *logdir, uint64_t seq, char *seg, size_t *off, size_t *plen)
{
    size_t n;
    char **names = segments(logdir, &n);
    for (size_t i = 0; i < n; i++) {
        char *p = tkt_path(logdir, names[i]);
        size_t len, o = 16;
        unsigned char *buf = tkt_read_file(p, &len);
        free(p);
        assert_non_null(buf);
        while (o + 8 <= len) {
            uint32_t l = le32(buf + o);
            uint64_t s = (uint64_t)le32(buf + o + 8) | (uint64_t)le32(buf + o + 12) << 32;
            if (s == seq) {
                strcpy(seg, names[i]);
                *off = o;
                *plen = l;
                free(buf);
                free_names(names, n);
                return;
            }
            o += 52 + l;
        }
        free(buf);
    }
    free_names(names, n);
    fail_msg("record %" PRIu64 " not found", seq);
}

/* Flips one bit in the payload of record seq. */
static void flip_bit(const char *logdir, uint64_t seq, char *seg, size_t *off)
{
    size_t plen = 0, len;
    locate(logdir, seq, seg, off, &plen);
    char *p = tkt_path(logdir, seg);
    unsigned char *buf = tkt_read_file(p, &len);
    buf[*off + 48 + plen / 2] ^= 0x10;
    assert_int_equal(tkt_write_file(p, buf, len), 0);
    free(buf);
    free(p);
}

/* A store with the fixture scenario and NTOK tokens by alice; seqs[i] is
 * the seq of token i's event. Closed on return. */
typedef struct store {
    char *root, *dir, *log;
    tk_id ids[NTOK];
    char secrets[NTOK][TK_SECRET_LEN + 1];
    uint64_t seqs[NTOK];
    fx_world w;
} store;

static store *store_new(int ntok)
{
    tk_why said = {.msg = ""};
    store *s = calloc(1, sizeof *s);
    eng_opts opts = {.segment_bytes = SEG_BYTES};
    eng *e;
    s->root = tkt_mkdtemp();
    s->dir = tkt_path(s->root, "live");
    s->log = tkt_path(s->dir, "log");
    assert_int_equal(eng_open(s->dir, &opts, &e, &said), 0);
    fx_scenario(e, &s->w);
    for (int i = 0; i < ntok; i++) {
        char desc[32];
        snprintf(desc, sizeof desc, "token %d\twith a tab", i);
        assert_int_equal(fx_token(e, &s->w.alice, desc, ADMIN, 0, &s->ids[i], s->secrets[i]), 0);
        s->seqs[i] = eng_last_seq(e);
    }
    eng_close(e);
    return s;
}

static void store_free(store *s)
{
    tkt_rmdir(s->root);
    free(s->root);
    free(s->dir);
    free(s->log);
    free(s);
}

static tk_verdict verify(eng *e, const char *secret)
{
    tk_verify v;
    return fx_verify(e, secret, &v);
}

/* ---- check ----------------------------------------------------------- */

static void check_intact_log_exits_0(void **state)
{
    tk_why said = {.msg = ""};
    (void)state;
    store *s = store_new(NTOK);
    elog_report rep;
    char *out, h[65];
    FILE *null = fopen("/dev/null", "w");

    assert_int_equal(replay_check(s->dir, null, &rep, &said), 0);
    assert_int_equal(rep.last_seq, s->seqs[NTOK - 1]);
    assert_int_equal(rep.records, rep.last_seq);
    assert_true(rep.segments > 3);
    for (int i = 0; i < 32; i++)
        sprintf(h + 2 * i, "%02x", rep.head[i]);

    assert_int_equal(RUN(&out, "check", "--data", s->dir), 0);
    contains(out, "rate       "); /* events/s, the run's last figure */
    contains(out, "result     intact");
    char want[64];
    snprintf(want, sizeof want, "last seq   %" PRIu64 "\n", rep.last_seq);
    contains(out, want);
    snprintf(want, sizeof want, "segments   %" PRIu64 "\n", rep.segments);
    contains(out, want);
    contains(out, h);
    free(out);
    /* the log directory itself is accepted too */
    assert_int_equal(RUN(&out, "check", "--data", s->log), 0);
    contains(out, h);
    free(out);
    fclose(null);
    store_free(s);
}

static void check_flipped_bit_exits_1_and_names_the_place(void **state)
{
    tk_why said = {.msg = ""};
    (void)state;
    store *s = store_new(10);
    char seg[64], *out, want[256];
    size_t off;
    elog_report rep;
    FILE *null = fopen("/dev/null", "w");

    flip_bit(s->log, 3, seg, &off);
    assert_int_equal(RUN(&out, "check", "--data", s->dir), 1);
    snprintf(want, sizeof want, "%s offset %zu (record seq 3): crc mismatch", seg, off);
    contains(out, want);
    contains(out, "DAMAGED");
    contains(out, "records    2 intact before the damage");
    free(out);

    assert_int_equal(replay_check(s->dir, null, &rep, &said), TK_ECORRUPT);
    assert_int_equal(rep.last_seq, 2);
    assert_int_equal(rep.bad_seg, 1);
    assert_int_equal(rep.bad_off, off);
    fclose(null);
    store_free(s);
}

/* A record framed intact whose payload is not an event (a newer tokend's,
 * say): check reports it as damage and where; rebuild takes what is before. */
static void check_reports_an_event_that_does_not_decode(void **state)
{
    tk_why said = {.msg = ""};
    (void)state;
    store *s = store_new(2);
    char *out, *to = tkt_path(s->root, "before"), nstr[32], want[96];
    uint64_t seq;
    elog *lg;
    eng *e;

    assert_int_equal(elog_open(s->log, NULL, &lg, &said), 0);
    assert_int_equal(elog_append(lg, "\x81\xa1t\x63", 4, &seq), 0); /* {"t": 99} */
    assert_int_equal(elog_sync(lg, &said), 0);
    elog_close(lg);
    assert_int_equal(RUN(&out, "check", "--data", s->dir), 1);
    snprintf(want, sizeof want, "event %" PRIu64 " is framed intact but does not decode", seq);
    contains(out, want);
    free(out);
    snprintf(nstr, sizeof nstr, "%" PRIu64, seq - 1);
    assert_int_equal(RUN(&out, "rebuild", "--from", s->dir, "--to", to, "--upto-seq", nstr), 0);
    free(out);
    assert_int_equal(eng_open(to, NULL, &e, &said), 0);
    assert_int_equal(verify(e, s->secrets[1]), TK_V_VALID);
    eng_close(e);
    free(to);
    store_free(s);
}

static void commands_refuse_a_log_in_use(void **state)
{
    tk_why said = {.msg = ""};
    (void)state;
    store *s = store_new(2);
    char *out, *other = tkt_path(s->root, "new");
    eng *e;

    assert_int_equal(eng_open(s->dir, NULL, &e, &said), 0);
    assert_int_equal(RUN(&out, "check", "--data", s->dir), 3);
    contains(out, "in use: a running tokend has this log open");
    free(out);
    assert_int_equal(RUN(&out, "repair", "--data", s->dir), 3);
    contains(out, "in use");
    free(out);
    assert_int_equal(RUN(&out, "rebuild", "--from", s->dir, "--to", other), 3);
    contains(out, "in use");
    free(out);
    eng_close(e);
    free(other);
    store_free(s);
}

/* ---- rebuild --------------------------------------------------------- */

static void rebuild_upto_seq_equals_the_store_stopped_there(void **state)
{
    tk_why said = {.msg = ""};
    (void)state;
    store *s = store_new(NTOK / 2);
    char *snap = tkt_path(s->root, "snap"), *to = tkt_path(s->root, "rebuilt");
    uint64_t n = s->seqs[NTOK / 2 - 1];
    char nstr[32], *out, want[128];
    tk_id later_id;
    char later[TK_SECRET_LEN + 1];
    eng *e;
    elog_report ra, rb;
    FILE *null = fopen("/dev/null", "w");

    copy_tree(s->dir, snap); /* the live store, stopped at n */
    assert_int_equal(eng_open(s->dir, NULL, &e, &said), 0);
    assert_int_equal(fx_token(e, &s->w.alice, "later", ADMIN, 0, &later_id, later), 0);
    assert_int_equal(fx_token_delete(e, &s->w.alice, &s->ids[0]), 0);
    assert_int_equal(fx_toggle(e, "umbrella", false), 0);
    eng_close(e);

    snprintf(nstr, sizeof nstr, "%" PRIu64, n);
    assert_int_equal(RUN(&out, "rebuild", "--from", s->dir, "--to", to, "--upto-seq", nstr),
                     0);
    snprintf(want, sizeof want, "events     %" PRIu64 " (seq 1..%" PRIu64 ")", n, n);
    contains(out, want);
    contains(out, "operator   key copied from");
    free(out);

    /* canonically the same as the store that stopped at n */
    assert_int_equal(RUN(&out, "compare", "--a", to, "--b", snap), 0);
    snprintf(want, sizeof want, "same state (%d credentials)", NTOK / 2 + 5);
    contains(out, want);
    free(out);
    /* and the hash chain is the same one */
    assert_int_equal(replay_check(to, null, &ra, &said), 0);
    assert_int_equal(replay_check(snap, null, &rb, &said), 0);
    assert_memory_equal(ra.head, rb.head, ELOG_HASH_LEN);

    /* the token made after n is unknown there, the one before valid */
    assert_int_equal(eng_open(to, NULL, &e, &said), 0);
    assert_int_equal(verify(e, later), TK_V_UNKNOWN);
    assert_int_equal(verify(e, s->secrets[0]), TK_V_VALID);
    assert_int_equal(verify(e, s->secrets[NTOK / 2 - 1]), TK_V_VALID);
    /* the operator key was carried over */
    tk_actor op;
    char key[128];
    size_t klen;
    char *kp = tkt_path(s->dir, "operator.key");
    unsigned char *kb = tkt_read_file(kp, &klen);
    memcpy(key, kb, 68);
    key[68] = '\0';
    assert_int_equal(eng_authenticate(e, key, 68, time(NULL), &op), 0);
    free(kb);
    free(kp);
    eng_close(e);
    fclose(null);
    free(snap);
    free(to);
    store_free(s);
}

static void rebuild_upto_time(void **state)
{
    tk_why said = {.msg = ""};
    (void)state;
    store *s = store_new(5);
    char *to = tkt_path(s->root, "t1"), *to2 = tkt_path(s->root, "t2");
    char *to3 = tkt_path(s->root, "t3"), *out, when[64], iso[64], want[64];
    char later[TK_SECRET_LEN + 1];
    eng *e;

    sleep_ms(30);
    int64_t t = now_ms();
    sleep_ms(30);
    assert_int_equal(eng_open(s->dir, NULL, &e, &said), 0);
    assert_int_equal(fx_token(e, &s->w.alice, "later", ADMIN, 0, NULL, later), 0);
    eng_close(e);

    snprintf(when, sizeof when, "%" PRId64 ".%03d", t / 1000, (int)(t % 1000));
    assert_int_equal(RUN(&out, "rebuild", "--from", s->dir, "--to", to, "--upto-time", when),
                     0);
    snprintf(want, sizeof want, "events     %" PRIu64 " ", s->seqs[4]);
    contains(out, want);
    contains(out, "after --upto-time");
    free(out);
    assert_int_equal(eng_open(to, NULL, &e, &said), 0);
    assert_int_equal(eng_last_seq(e), s->seqs[4]);
    assert_int_equal(verify(e, s->secrets[4]), TK_V_VALID);
    assert_int_equal(verify(e, later), TK_V_UNKNOWN);
    eng_close(e);

    /* the same instant in ISO 8601, with an offset */
    time_t secs = (time_t)(t / 1000) + 2 * 3600;
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t k = strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(iso + k, sizeof iso - k, ".%03d+02:00", (int)(t % 1000));
    assert_int_equal(RUN(&out, "rebuild", "--from", s->dir, "--to", to2, "--upto-time", iso),
                     0);
    contains(out, want);
    free(out);

    /* before the first event: an empty, valid store */
    assert_int_equal(RUN(&out, "rebuild", "--from", s->dir, "--to", to3, "--upto-time",
                         "2000-01-01T00:00:00Z"),
                     0);
    contains(out, "events     0 ");
    free(out);
    assert_int_equal(eng_open(to3, NULL, &e, &said), 0);
    assert_int_equal(eng_cred_count(e), 0);
    eng_close(e);
    free(to);
    free(to2);
    free(to3);
    store_free(s);
}

static void rebuild_refusals(void **state)
{
    (void)state;
    store *s = store_new(2);
    char *to = tkt_path(s->root, "x"), *out;

    /* past the end of the log */
    assert_int_equal(RUN(&out, "rebuild", "--from", s->dir, "--to", to, "--upto-seq", "100000"),
                     3);
    contains(out, "past the end of the log");
    free(out);
    /* into a directory that is not empty (what the failure left) */
    assert_int_equal(RUN(&out, "rebuild", "--from", s->dir, "--to", to), 3);
    contains(out, "is not empty");
    free(out);
    /* usage */
    assert_int_equal(RUN(&out, "rebuild", "--from", s->dir), 2);
    free(out);
    assert_int_equal(RUN(&out, "rebuild", "--from", s->dir, "--to", to, "--upto-time",
                         "2024-05-01T10:00:00"),
                     2);
    contains(out, "--upto-time takes ISO 8601 with a zone");
    free(out);
    assert_int_equal(RUN(&out, "rebuild", "--from", s->dir, "--to", to, "--upto-seq", "-1"),
                     2);
    free(out);
    assert_int_equal(RUN(&out, "frobnicate"), 2);
    free(out);
    assert_int_equal(RUN(&out, "check", "--data", s->dir, "--to", to), 2);
    free(out);
    assert_int_equal(run(&out, (const char *const[]){NULL}), 2);
    free(out);
    free(to);
    store_free(s);
}

static void rebuild_salvages_a_damaged_log_up_to_the_damage(void **state)
{
    tk_why said = {.msg = ""};
    (void)state;
    store *s = store_new(10);
    char seg[64], *out, *to = tkt_path(s->root, "salvage"), *to2 = tkt_path(s->root, "s2");
    char nstr[32];
    size_t off;
    uint64_t d = s->seqs[6];
    eng *e;

    flip_bit(s->log, d, seg, &off);
    assert_int_equal(RUN(&out, "rebuild", "--from", s->dir, "--to", to), 3);
    char want[64];
    snprintf(want, sizeof want, "--upto-seq %" PRIu64, d - 1);
    contains(out, want);
    free(out);
    snprintf(nstr, sizeof nstr, "%" PRIu64, d - 1);
    int rc = RUN(&out, "rebuild", "--from", s->dir, "--to", to2, "--upto-seq", nstr);
    if (rc != 0)
        fail_msg("exit %d:\n%s", rc, out);
    free(out);
    assert_int_equal(eng_open(to2, NULL, &e, &said), 0);
    assert_int_equal(verify(e, s->secrets[5]), TK_V_VALID);
    assert_int_equal(verify(e, s->secrets[6]), TK_V_UNKNOWN);
    eng_close(e);
    free(to);
    free(to2);
    store_free(s);
}

/* ---- compare --------------------------------------------------------- */

static void compare_same_and_different(void **state)
{
    tk_why said = {.msg = ""};
    (void)state;
    store *s = store_new(5);
    char *copy = tkt_path(s->root, "copy"), *out, id[TK_ID_STR_LEN + 1];
    eng *e;
    bool same;
    FILE *null = fopen("/dev/null", "w");

    copy_tree(s->dir, copy);
    assert_int_equal(RUN(&out, "compare", "--a", s->dir, "--b", copy), 0);
    contains(out, "same state (10 credentials)");
    free(out);

    /* a toggle */
    assert_int_equal(eng_open(copy, NULL, &e, &said), 0);
    assert_int_equal(fx_toggle(e, "umbrella", false), 0);
    eng_close(e);
    assert_int_equal(RUN(&out, "compare", "--a", s->dir, "--b", copy), 1);
    contains(out, "different: tenant umbrella: api_tokens: a has on, b has off");
    free(out);
    assert_int_equal(replay_compare(s->dir, copy, null, &same, &said), 0);
    assert_false(same);

    /* a deleted token, in both directions */
    assert_int_equal(eng_open(copy, NULL, &e, &said), 0);
    assert_int_equal(fx_toggle(e, "umbrella", true), 0);
    assert_int_equal(fx_token_delete(e, &s->w.alice, &s->ids[2]), 0);
    eng_close(e);
    secret_id_format(&s->ids[2], id);
    assert_int_equal(RUN(&out, "compare", "--a", s->dir, "--b", copy), 1);
    contains(out, "different: only in a");
    contains(out, id);
    free(out);
    assert_int_equal(RUN(&out, "compare", "--a", copy, "--b", s->dir), 1);
    contains(out, "different: only in b");
    contains(out, id);
    free(out);

    /* a role's level */
    assert_int_equal(eng_open(s->dir, NULL, &e, &said), 0);
    assert_int_equal(fx_token_delete(e, &s->w.alice, &s->ids[2]), 0);
    static const char *const viewer_p[] = {"orders:read", NULL};
    assert_int_equal(fx_role(e, "acme", "viewer", 3, viewer_p), 0);
    eng_close(e);
    assert_int_equal(RUN(&out, "compare", "--a", s->dir, "--b", copy), 1);
    contains(out, "different: role acme/viewer: level: a has 3, b has 2");
    free(out);

    /* the same directory twice, and a missing one */
    assert_int_equal(RUN(&out, "compare", "--a", s->dir, "--b", s->log), 3);
    contains(out, "same data directory");
    free(out);
    assert_int_equal(RUN(&out, "compare", "--a", s->dir, "--b", "/nonexistent/x"), 3);
    contains(out, "no such directory");
    free(out);
    fclose(null);
    free(copy);
    store_free(s);
}

/* A rebuild after the deletes is the same state: a deleted user's tokens
 * (kept, named by their creator's slug), a permission dropped from a role
 * whose key is the longest allowed, an account with its tokens gone. */
static void compare_after_deletes(void **state)
{
    tk_why said = {.msg = ""};
    (void)state;
    store *s = store_new(3);
    char *rebuilt = tkt_path(s->root, "rebuilt"), *out, longkey[TK_KEY_MAX + 1];
    eng *e;
    static const char *const read_p[] = {"orders:read", NULL};
    memset(longkey, 'r', TK_KEY_MAX);
    longkey[TK_KEY_MAX] = '\0';
    assert_int_equal(eng_open(s->dir, NULL, &e, &said), 0);
    assert_int_equal(fx_role(e, "acme", longkey, 5, read_p), 0);
    assert_int_equal(fx_delete(e, ENG_USER_DELETE, "acme", "globex", "alice", NULL), 0);
    assert_int_equal(fx_delete(e, ENG_PERM_DELETE, "acme", NULL, NULL, "orders:read"), 0);
    assert_int_equal(fx_delete(e, ENG_ACCOUNT_DELETE, "acme", "initech", NULL, NULL), 0);
    eng_close(e);
    assert_int_equal(RUN(&out, "rebuild", "--from", s->dir, "--to", rebuilt), 0);
    free(out);
    assert_int_equal(RUN(&out, "compare", "--a", s->dir, "--b", rebuilt), 0);
    contains(out, "same state");
    free(out);
    free(rebuilt);
    store_free(s);
}

/* Two histories that end in the same named state (roles defined in another
 * order, one deleted and put again) assign other internal ids: compare
 * must still call them the same. */
static void compare_ignores_internal_ids(void **state)
{
    tk_why said = {.msg = ""};
    (void)state;
    char *root = tkt_mkdtemp(), *a = tkt_path(root, "a"), *b = tkt_path(root, "b");
    static const char *const px[] = {"p1", "p2", NULL}, *const py[] = {"p2", NULL};
    static const char *const px2[] = {"p2", "p1", NULL};
    eng *e;
    bool same;
    FILE *null = fopen("/dev/null", "w");

    assert_int_equal(eng_open(a, NULL, &e, &said), 0);
    assert_int_equal(fx_tenant(e, "t"), 0);
    assert_int_equal(fx_role(e, "t", "x", 1, px), 0);
    assert_int_equal(fx_role(e, "t", "y", 2, py), 0);
    assert_int_equal(fx_account(e, "t", "acc"), 0);
    eng_close(e);
    assert_int_equal(eng_open(b, NULL, &e, &said), 0);
    assert_int_equal(fx_tenant(e, "t"), 0);
    assert_int_equal(fx_role(e, "t", "y", 2, py), 0);
    assert_int_equal(fx_role(e, "t", "x", 1, px2), 0);
    assert_int_equal(fx_role_delete(e, "t", "x"), 0);
    assert_int_equal(fx_role(e, "t", "x", 1, px), 0);
    assert_int_equal(fx_account(e, "t", "acc"), 0);
    eng_close(e);
    assert_int_equal(replay_compare(a, b, null, &same, &said), 0);
    assert_true(same);

    /* and a dump is sorted, one line per entity */
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    assert_int_equal(eng_open(a, NULL, &e, &said), 0);
    assert_int_equal(replay_dump(e, m, NULL, &said), 0);
    eng_close(e);
    fclose(m);
    assert_string_equal(buf, "1 tenant t\tapi_tokens=off\tmax_tokens=10000\tmax_roles=1000"
                             "\tmax_keys=100\tcreate_rate=10\tcreate_burst=100\n"
                             "2 permission t/p1\tdescription=\"\"\n"
                             "2 permission t/p2\tdescription=\"\"\n"
                             "3 role t/x\tname=\"x\"\tlevel=1\tpermissions=[p1,p2]\n"
                             "3 role t/y\tname=\"y\"\tlevel=2\tpermissions=[p2]\n"
                             "4 account t/acc\n");
    free(buf);
    fclose(null);
    tkt_rmdir(root);
    free(a);
    free(b);
    free(root);
}

/* ---- repair ---------------------------------------------------------- */

static void repair_keeps_the_history_before_the_damage(void **state)
{
    tk_why said = {.msg = ""};
    (void)state;
    store *s = store_new(NTOK);
    size_t nseg, off, len;
    char **names = segments(s->log, &nseg);
    char seg[64], *out;
    eng *e;

    assert_true(nseg >= 4);
    /* damage a record in the middle of the third segment */
    uint64_t first3 = strtoull(names[2], NULL, 10), first4 = strtoull(names[3], NULL, 10);
    uint64_t d = first3 + (first4 - first3) / 2;
    int k_first_lost = -1;
    for (int i = 0; i < NTOK && k_first_lost < 0; i++)
        if (s->seqs[i] >= d)
            k_first_lost = i;
    assert_true(k_first_lost > 0);
    d = s->seqs[k_first_lost]; /* a token's own event */

    flip_bit(s->log, d, seg, &off);
    assert_string_equal(seg, names[2]);
    /* the bytes as they are before the repair */
    unsigned char *orig[64];
    size_t olen[64];
    for (size_t i = 0; i < nseg; i++) {
        char *p = tkt_path(s->log, names[i]);
        orig[i] = tkt_read_file(p, &olen[i]);
        free(p);
    }

    /* tokend refuses to start, and says which command to run */
    assert_int_equal(eng_open(s->dir, NULL, &e, &said), TK_ECORRUPT);
    const char *msg = strstr(said.msg, "tokenreplay repair --data ");
    assert_non_null(msg);
    char cmd_dir[1024];
    snprintf(cmd_dir, sizeof cmd_dir, "%s", msg + strlen("tokenreplay repair --data "));

    /* exactly that command */
    assert_int_equal(RUN(&out, "repair", "--data", cmd_dir), 0);
    contains(out, "crc mismatch");
    contains(out, "cut ");
    char want[128];
    snprintf(want, sizeof want, "kept       records 1..%" PRIu64 " ", d - 1);
    contains(out, want);
    contains(out, "past the log's end");
    free(out);

    /* tokend starts again with the history up to the damage */
    assert_int_equal(eng_open(s->dir, NULL, &e, &said), 0);
    assert_int_equal(eng_last_seq(e), d - 1);
    for (int i = 0; i < NTOK; i++)
        assert_int_equal(verify(e, s->secrets[i]), i < k_first_lost ? TK_V_VALID : TK_V_UNKNOWN);
    eng_close(e);

    /* every moved byte is there, equal to the original */
    size_t na;
    char **aside = NULL, *adir = NULL;
    DIR *dd = opendir(s->log);
    struct dirent *de;
    while ((de = readdir(dd)))
        if (!strncmp(de->d_name, "damaged-", 8))
            adir = tkt_path(s->log, de->d_name);
    closedir(dd);
    assert_non_null(adir);
    aside = segments(adir, &na);
    assert_int_equal(na, nseg - 3); /* segments 4.. moved whole */
    for (size_t i = 3; i < nseg; i++) {
        char *p = tkt_path(adir, names[i]);
        unsigned char *b = tkt_read_file(p, &len);
        assert_non_null(b);
        assert_int_equal(len, olen[i]);
        assert_memory_equal(b, orig[i], len);
        free(b);
        free(p);
        p = tkt_path(s->log, names[i]);
        assert_int_equal(access(p, F_OK), -1);
        free(p);
    }
    char tail[128];
    snprintf(tail, sizeof tail, "%s.from-%zu", names[2], off);
    char *p = tkt_path(adir, tail);
    unsigned char *b = tkt_read_file(p, &len);
    assert_non_null(b);
    assert_int_equal(len, olen[2] - off);
    assert_memory_equal(b, orig[2] + off, len);
    free(b);
    free(p);
    p = tkt_path(s->log, names[2]);
    b = tkt_read_file(p, &len);
    assert_int_equal(len, off);
    assert_memory_equal(b, orig[2], off);
    free(b);
    free(p);

    /* the stale state was set aside, not removed */
    int stale = 0;
    dd = opendir(s->dir);
    while ((de = readdir(dd)))
        stale += !strncmp(de->d_name, "state.stale-", 12);
    closedir(dd);
    assert_int_equal(stale, 1);

    /* check agrees, and a second repair has nothing to do */
    assert_int_equal(RUN(&out, "check", "--data", s->dir), 0);
    free(out);
    assert_int_equal(RUN(&out, "repair", "--data", s->dir), 0);
    contains(out, "nothing to repair");
    contains(out, "within the log: kept");
    free(out);

    for (size_t i = 0; i < nseg; i++)
        free(orig[i]);
    free_names(aside, na);
    free_names(names, nseg);
    free(adir);
    store_free(s);
}

/* A *.seg file that is not a segment name, and a bad header on a segment:
 * both are moved aside whole (called directly). */
static void repair_moves_misnamed_and_headless_segments_whole(void **state)
{
    tk_why said = {.msg = ""};
    (void)state;
    store *s = store_new(NTOK);
    size_t nseg, len;
    char **names = segments(s->log, &nseg);
    char *stray = tkt_path(s->log, "backup.seg");
    replay_repair_info info;
    FILE *null = fopen("/dev/null", "w");
    eng *e;

    assert_int_equal(tkt_write_file(stray, "hello", 5), 0);
    char *p = tkt_path(s->log, names[1]);
    unsigned char *b = tkt_read_file(p, &len);
    b[0] ^= 1; /* "TKLOG001" broken */
    assert_int_equal(tkt_write_file(p, b, len), 0);

    assert_int_equal(replay_repair(s->dir, null, &info, &said), 0);
    assert_true(info.damaged);
    assert_int_equal(info.kept_seq, strtoull(names[1], NULL, 10) - 1);
    assert_int_equal(info.moved, 1 + (nseg - 1)); /* the stray one, segment 2 and later */
    assert_true(info.state_moved);
    char *moved = tkt_path(info.aside, names[1]);
    size_t mlen;
    unsigned char *mb = tkt_read_file(moved, &mlen);
    assert_int_equal(mlen, len);
    assert_memory_equal(mb, b, len);
    char *mstray = tkt_path(info.aside, "backup.seg");
    assert_int_equal(access(mstray, F_OK), 0);
    assert_int_equal(access(stray, F_OK), -1);

    assert_int_equal(eng_open(s->dir, NULL, &e, &said), 0);
    assert_int_equal(eng_last_seq(e), info.kept_seq);
    assert_int_equal(verify(e, s->secrets[0]), TK_V_VALID);
    eng_close(e);
    free(mb);
    free(moved);
    free(mstray);
    free(b);
    free(p);
    free(stray);
    free_names(names, nseg);
    fclose(null);
    store_free(s);
}

/* LMDB ahead of an intact log (its last segment lost): eng_open refuses,
 * repair sets the state aside and the next open rebuilds it. */
static void repair_sets_aside_a_state_ahead_of_the_log(void **state)
{
    tk_why said = {.msg = ""};
    (void)state;
    store *s = store_new(NTOK);
    size_t nseg;
    char **names = segments(s->log, &nseg);
    char *last = tkt_path(s->log, names[nseg - 1]);
    replay_repair_info info;
    FILE *null = fopen("/dev/null", "w");
    eng *e;

    assert_int_equal(unlink(last), 0);
    assert_int_equal(eng_open(s->dir, NULL, &e, &said), TK_ECORRUPT);
    assert_int_equal(replay_repair(s->log, null, &info, &said), 0);
    assert_false(info.damaged);
    assert_true(info.state_moved);
    assert_int_equal(eng_open(s->dir, NULL, &e, &said), 0);
    assert_int_equal(eng_last_seq(e), strtoull(names[nseg - 1], NULL, 10) - 1);
    assert_int_equal(verify(e, s->secrets[0]), TK_V_VALID);
    eng_close(e);
    free(last);
    free_names(names, nseg);
    fclose(null);
    store_free(s);
}

/* ---- time limits ----------------------------------------------------- */

static void parse_time_forms(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t ms;
    } good[] = {
        {"0", 0},
        {"1714557600", 1714557600000},
        {"1714557600.25", 1714557600250},
        {"1714557600.2509", 1714557600250},
        {"1970-01-01T00:00:00Z", 0},
        {"2024-05-01T10:00:00Z", 1714557600000},
        {"2024-05-01t10:00:00z", 1714557600000},
        {"2024-05-01 10:00Z", 1714557600000},
        {"2024-05-01T12:00:00.250+02:00", 1714557600250},
        {"2024-05-01T12:00:00+0200", 1714557600000},
        {"2024-05-01T05:30:00-04:30", 1714557600000},
        {"2024-02-29T00:00:00Z", 1709164800000},
    };
    static const char *const bad[] = {
        "", "abc", "-5", "1714557600.", "17145x", "2024-05-01", "2024-05-01T10:00:00",
        "2024-02-30T00:00:00Z", "2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z",
        "2024-05-01T24:00:00Z", "2024-05-01T10:00:00+25:00", "1969-12-31T23:59:59Z",
        "2024-05-01T10:00:00Zjunk", "2024-05-01T10:00:00+02:", "99999999999999999999",
    };
    int64_t ms;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ms = -1;
        if (replay_parse_time(good[i].s, &ms) != 0 || ms != good[i].ms)
            fail_msg("%s: got %" PRId64 ", want %" PRId64, good[i].s, ms, good[i].ms);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (replay_parse_time(bad[i], &ms) != TK_EINVAL)
            fail_msg("%s: accepted", bad[i]);
}

/* ---- check against a head ---------------------------------------------- */

/* check --verify-key: the log holds its latest signed head; a head beyond
 * the log's end (records cut) or that does not verify (forged) is
 * tampered, exit 1. --expect-head: the same against SEQ:HASH. */
static void check_against_signed_and_expected_heads(void **state)
{
    (void)state;
    tk_why why = {.msg = ""};
    char *root = tkt_mkdtemp(), *dir = tkt_path(root, "data"), *key = tkt_path(root, "k");
    char *pub = tkt_path(root, "k.pub"), *logdir = tkt_path(dir, "log"), *out;
    eng_opts o = {.sign_key = key};
    eng *e;
    assert_int_equal(eng_open(dir, &o, &e, &why), 0);
    assert_int_equal(fx_tenant(e, "acme"), 0);
    assert_int_equal(fx_tenant(e, "beta"), 0);
    uint64_t seq;
    uint8_t hash[TK_HASH_LEN];
    eng_head(e, &seq, hash);
    eng_close(e); /* signs its head */
    assert_int_equal(seq, 2);
    assert_int_equal(RUN(&out, "check", "--data", dir, "--verify-key", pub), 0);
    contains(out, "signed     seq 2 hash ");
    contains(out, "the log holds it");
    free(out);
    char good[80], bad[80];
    snprintf(good, sizeof good, "2:");
    sodium_bin2hex(good + 2, sizeof good - 2, hash, TK_HASH_LEN);
    assert_int_equal(RUN(&out, "check", "--data", dir, "--expect-head", good), 0);
    free(out);
    memcpy(bad, good, sizeof bad);
    bad[5] = bad[5] == 'a' ? 'b' : 'a';
    assert_int_equal(RUN(&out, "check", "--data", dir, "--expect-head", bad), 1);
    contains(out, "TAMPERED: at seq 2");
    free(out);
    assert_int_equal(RUN(&out, "check", "--data", dir, "--expect-head", "9:ab"), 2 + 1);
    free(out);
    /* a head the log does not reach: as if the records after 2 were cut */
    head_key *k;
    assert_int_equal(head_key_load(key, &k, &why), 0);
    head_rec h = {.seq = 5, .time_ms = 1};
    assert_int_equal(head_write(k, logdir, &h, &why), 0);
    head_key_free(k);
    assert_int_equal(RUN(&out, "check", "--data", dir, "--verify-key", pub), 1);
    contains(out, "TAMPERED: the log ends before seq 5");
    free(out);
    /* a head file changed by hand: it does not verify */
    char *hf = tkt_path(logdir, "head");
    size_t len;
    char *text = (char *)tkt_read_file(hf, &len);
    char *sp = strstr(text, " 5 ");
    sp[1] = '2';
    assert_int_equal(tkt_write_file(hf, text, len), 0);
    free(text);
    char *beside = tkt_path(root, "k.head");
    unlink(beside); /* only the log's copy is left */
    assert_int_equal(RUN(&out, "check", "--data", dir, "--verify-key", pub), 1);
    contains(out, "does not verify");
    free(out);
    free(beside), free(hf);
    tkt_rmdir(root);
    free(root), free(dir), free(key), free(pub), free(logdir);
}

/* ---- dump: who did what ---------------------------------------------- */

/* A token of the user whose Bearer header is auth, over HTTP: its id. */
static void http_token(int port, const char *auth, char *id, size_t cap)
{
    const char *h[] = {auth, NULL};
    json_t *j;
    assert_int_equal(japi_call(port, h, "POST", "/v1/tokens",
                               "{\"description\":\"audit\",\"roles\":[\"viewer\"]}", &j, NULL),
                     201);
    snprintf(id, cap, "%s", json_string_value(json_object_get(j, "client_id")));
    json_decref(j);
}

/* The JSON line of dump whose event is of type and has id, or NULL. */
static json_t *line_of(json_t *lines, const char *type, const char *id)
{
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l) {
        const char *t = json_string_value(json_object_get(l, "type"));
        const char *x = json_string_value(json_object_get(l, "id"));
        if (t && !strcmp(t, type) && (!id || (x && !strcmp(x, id))))
            return l;
    }
    fail_msg("no %s of %s in the dump", type, id ? id : "any");
    return NULL;
}

static const char *by_field(json_t *line, const char *k)
{
    json_t *v = json_object_get(json_object_get(line, "by"), k);
    return v ? json_string_value(v) : NULL;
}

/* After a mixed workload on the real server, over both listeners and a
 * portal session: every event names its actor and the client's address,
 * and a token deleted by its creator, by another user of its account and
 * by the operator are told apart (with the personal key each used). */
static void dump_names_who_made_each_change(void **state)
{
    (void)state;
    raw_server srv;
    char op[160], alice[160], bob[160], akey[128], bkey[128], t1[64], t2[64], t3[64], t4[64];
    char path[200], *out = NULL;
    json_t *j;
    raw_watchdog(60);
    assert_int_equal(raw_server_start(&srv, NULL, NULL), 0);
    int port = srv.http_port;
    char opk[128];
    assert_int_equal(raw_read_key(&srv, "operator.key", opk, sizeof opk), 0);
    snprintf(op, sizeof op, "Authorization: Bearer %s", opk);
    const char *oh[] = {op, NULL};
    japi_expect(port, oh, "POST", "/v1/tenants", "{\"tenant\":\"acme\"}", 201);
    japi_expect(port, oh, "PATCH", "/v1/tenants/acme", "{\"api_tokens\":true}", 200);
    japi_expect(port, oh, "PUT", "/v1/tenants/acme/roles/viewer",
                "{\"level\":5,\"permissions\":[\"orders:read\"]}", 200);
    japi_expect(port, oh, "POST", "/v1/tenants/acme/accounts", "{\"account\":\"bigco\"}", 201);
    japi_user(port, op, "acme", "bigco", "alice", "[\"viewer\"]", true, alice, sizeof alice,
              akey, sizeof akey);
    japi_user(port, op, "acme", "bigco", "bob", "[\"viewer\"]", true, bob, sizeof bob, bkey,
              sizeof bkey);
    http_token(port, alice, t1, sizeof t1);
    http_token(port, alice, t2, sizeof t2);
    http_token(port, alice, t3, sizeof t3);
    /* t1: by its creator, over HTTP */
    const char *ah[] = {alice, NULL};
    snprintf(path, sizeof path, "/v1/tokens/%s", t1);
    japi_expect(port, ah, "DELETE", path, NULL, 200);
    /* t2: by bob, another user of the account, over the binary protocol */
    int fd = raw_connect(srv.port);
    assert_true(fd >= 0);
    mpw b;
    mpw_init(&b);
    raw_map(&b, "key:s", bkey);
    raw_reply r;
    assert_int_equal(raw_call(fd, OP_AUTH, 1, &b, &r), 0);
    raw_reply_free(&r);
    mpw_reset(&b);
    raw_map(&b, "client_id:s", t2);
    assert_int_equal(raw_call(fd, OP_TOKEN_DELETE, 2, &b, &r), 0);
    raw_reply_free(&r);
    mpw_free(&b);
    close(fd);
    /* t3: by the operator */
    snprintf(path, sizeof path, "/v1/tokens/%s", t3);
    japi_expect(port, oh, "DELETE", path, NULL, 200);
    /* t4: made in a portal session */
    assert_int_equal(japi_call(port, oh, "POST", "/v1/portal/sessions",
                               "{\"tenant\":\"acme\",\"account\":\"bigco\",\"user\":\"alice\"}",
                               &j, NULL),
                     201);
    snprintf(path, sizeof path, "%s", strstr(json_string_value(json_object_get(j, "url")), "/portal/"));
    json_decref(j);
    hraw_resp hr;
    assert_int_equal(japi_call(port, NULL, "GET", path, NULL, NULL, &hr), 303);
    char cookie[320], sc[300];
    assert_true(hraw_header(&hr, "Set-Cookie", sc, sizeof sc));
    hraw_free(&hr);
    *strchr(sc, ';') = 0;
    snprintf(cookie, sizeof cookie, "Cookie: %s", sc);
    const char *ch[] = {cookie, NULL};
    assert_int_equal(japi_call(port, ch, "GET", "/v1/portal/session", NULL, &j, NULL), 200);
    char csrf[120];
    snprintf(csrf, sizeof csrf, "X-Tokend-CSRF: %s", json_string_value(json_object_get(j, "csrf")));
    json_decref(j);
    const char *sh[] = {cookie, csrf, NULL};
    assert_int_equal(japi_call(port, sh, "POST", "/v1/tokens", "{\"roles\":[\"viewer\"]}", &j,
                               NULL),
                     201);
    snprintf(t4, sizeof t4, "%s", json_string_value(json_object_get(j, "client_id")));
    json_decref(j);
    assert_int_equal(raw_server_stop(&srv), 0);

    /* The dump, as JSON lines. */
    assert_int_equal(RUN(&out, "dump", "--data", srv.dir, "--json"), 0);
    json_t *lines = json_array();
    size_t n = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *l = json_loads(line, 0, NULL);
        if (!l)
            fail_msg("not a JSON line: %s", line);
        json_array_append_new(lines, l);
        n++;
    }
    free(out);
    assert_int_equal(n, 13); /* every change of the workload, no more */
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l) { /* every event: an actor, a peer, a listener */
        const char *kind = by_field(l, "kind"), *peer = by_field(l, "peer");
        const char *lis = by_field(l, "listener");
        assert_non_null(kind);
        assert_non_null(peer);
        assert_memory_equal(peer, "127.0.0.1:", 10);
        assert_true(!strcmp(lis, "http") || !strcmp(lis, "binary"));
        assert_null(json_object_get(l, "hash")); /* nothing secret-derived */
    }
    char akid[64], bkid[64];
    /* the personal keys' ids, from their users' creation */
    json_t *ua = NULL, *ub = NULL;
    json_array_foreach(lines, i, l) {
        const char *t = json_string_value(json_object_get(l, "type"));
        const char *u = json_string_value(json_object_get(l, "user"));
        if (t && !strcmp(t, "user_create") && u && !strcmp(u, "alice"))
            ua = l;
        if (t && !strcmp(t, "user_create") && u && !strcmp(u, "bob"))
            ub = l;
    }
    assert_non_null(ua);
    assert_non_null(ub);
    snprintf(akid, sizeof akid, "%s", json_string_value(json_object_get(ua, "id")));
    snprintf(bkid, sizeof bkid, "%s", json_string_value(json_object_get(ub, "id")));
    json_t *d1 = line_of(lines, "token_delete", t1), *d2 = line_of(lines, "token_delete", t2),
           *d3 = line_of(lines, "token_delete", t3), *c4 = line_of(lines, "token_create", t4);
    assert_string_equal(by_field(d1, "kind"), "user");
    assert_string_equal(by_field(d1, "user"), "alice");
    assert_string_equal(by_field(d1, "key_id"), akid);
    assert_string_equal(by_field(d1, "listener"), "http");
    assert_string_equal(by_field(d2, "kind"), "user");
    assert_string_equal(by_field(d2, "user"), "bob");
    assert_string_equal(by_field(d2, "key_id"), bkid);
    assert_string_equal(by_field(d2, "listener"), "binary");
    assert_string_equal(by_field(d3, "kind"), "operator");
    assert_null(by_field(d3, "user"));
    assert_string_equal(by_field(c4, "user"), "alice");
    assert_string_equal(by_field(c4, "via"), "portal session");
    assert_null(by_field(c4, "key_id"));
    /* the text form, deletions only */
    assert_int_equal(RUN(&out, "dump", "--data", srv.dir, "--type", "token_delete"), 0);
    contains(out, "by user acme/bigco/alice via personal key");
    contains(out, "by user acme/bigco/bob via personal key");
    contains(out, "by operator key initial from 127.0.0.1:");
    assert_null(strstr(out, "token_create"));
    free(out);
    assert_int_equal(RUN(&out, "dump", "--data", srv.dir, "--type", "nope"), 3);
    contains(out, "no event type 'nope'");
    free(out);
    json_decref(lines);
    raw_server_free(&srv);
    raw_watchdog(0);
}

/* ---- a log that starts after a base (a snapshot) --------------------- */

/* check says where a based log starts and checks from there; rebuild
 * refuses it, naming the base; dump starts at its first event. */
static void a_based_log_checks_refuses_rebuild_and_dumps_from_its_base(void **state)
{
    tk_why said = {.msg = ""};
    (void)state;
    char *root = tkt_mkdtemp(), *src = tkt_path(root, "src"), *dst = tkt_path(root, "dst");
    char *snap = tkt_path(root, "s.snap"), *to = tkt_path(root, "to"), *out, want[128];
    uint8_t h[TK_HASH_LEN];
    char hx[65];
    uint64_t s;
    eng *e;
    fx_world w;

    assert_int_equal(eng_open(src, NULL, &e, &said), 0);
    fx_scenario(e, &w);
    assert_int_equal(eng_snapshot(e, snap, &s, h, &said), 0);
    eng_close(e);
    assert_int_equal(eng_bootstrap(dst, snap, &said), 0);
    assert_int_equal(eng_open(dst, NULL, &e, &said), 0);
    tk_actor alice;
    assert_int_equal(fx_auth(e, w.alice_key, &alice), 0);
    assert_int_equal(fx_token(e, &alice, "after the snapshot", ADMIN, 0, NULL, NULL), 0);
    eng_close(e);
    for (int i = 0; i < 32; i++)
        sprintf(hx + 2 * i, "%02x", h[i]);

    assert_int_equal(RUN(&out, "check", "--data", dst), 0);
    snprintf(want, sizeof want, "starts after event %" PRIu64 ", chain hash %.16s...", s, hx);
    contains(out, want);
    contains(out, "from a snapshot");
    contains(out, "records    1\n");
    snprintf(want, sizeof want, "last seq   %" PRIu64 "\n", s + 1);
    contains(out, want);
    contains(out, "result     intact");
    free(out);

    assert_int_equal(RUN(&out, "rebuild", "--from", dst, "--to", to), 3);
    snprintf(want, sizeof want, "starts after event %" PRIu64, s);
    contains(out, want);
    contains(out, "bootstrap a data directory from the snapshot");
    free(out);
    struct stat sb;
    assert_int_not_equal(stat(to, &sb), 0); /* nothing made */

    assert_int_equal(RUN(&out, "dump", "--data", dst), 0);
    contains(out, "after the snapshot");
    snprintf(want, sizeof want, "%" PRIu64 " ", s + 1);
    assert_true(strncmp(out, want, strlen(want)) == 0);
    free(out);

    tkt_rmdir(root);
    free(root), free(src), free(dst), free(snap), free(to);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(check_intact_log_exits_0),
        cmocka_unit_test(dump_names_who_made_each_change),
        cmocka_unit_test(check_against_signed_and_expected_heads),
        cmocka_unit_test(check_flipped_bit_exits_1_and_names_the_place),
        cmocka_unit_test(check_reports_an_event_that_does_not_decode),
        cmocka_unit_test(commands_refuse_a_log_in_use),
        cmocka_unit_test(rebuild_upto_seq_equals_the_store_stopped_there),
        cmocka_unit_test(rebuild_upto_time),
        cmocka_unit_test(rebuild_refusals),
        cmocka_unit_test(rebuild_salvages_a_damaged_log_up_to_the_damage),
        cmocka_unit_test(compare_same_and_different),
        cmocka_unit_test(compare_ignores_internal_ids),
        cmocka_unit_test(compare_after_deletes),
        cmocka_unit_test(repair_keeps_the_history_before_the_damage),
        cmocka_unit_test(repair_moves_misnamed_and_headless_segments_whole),
        cmocka_unit_test(repair_sets_aside_a_state_ahead_of_the_log),
        cmocka_unit_test(parse_time_forms),
        cmocka_unit_test(a_based_log_checks_refuses_rebuild_and_dumps_from_its_base),
    };
    return cmocka_run_group_tests_name("tokenreplay", tests, NULL, NULL);
}
