/*
 * test_space.c - a full disk (DESIGN rule 12; store/engine.c "space"): on a
 * small tmpfs, one user's flood of creates ends in TK_ENOSPC, never EIO and
 * never a fence; then another tenant's revocations (a token delete, API
 * tokens off, a personal key delete) commit from the reserve and take
 * effect; the store opens again with the disk still full and serves
 * verification, in process and as the real bin/tokend.
 *
 * Each test runs in a child process with a mount namespace of its own, in
 * which a tmpfs of a few MiB is mounted (as root; else in a user namespace
 * too). Nothing is left mounted: the namespace goes with the child.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/err.h"
#include "net/proto.h"
#include "store/engine.h"
#include "tests/support/fixture.h"
#include "tests/support/raw.h"
#include "tests/support/tkt.h"

#define FS_MIB 24
#define RESERVE (4ull << 20)

static const char *const VIEWER[] = {"viewer", NULL};
static const char *const ADMIN[] = {"admin", NULL};

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Gives this process a mount namespace with a tmpfs of mib MiB at dir.
 * Returns how ("root" or "user namespace"), or NULL when refused. */
static const char *mount_small_fs(const char *dir, int mib)
{
    char opt[32];
    snprintf(opt, sizeof opt, "size=%dm", mib);
    if (unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0
        && mount("tmpfs", dir, "tmpfs", 0, opt) == 0)
        return "root";
    /* Not root: a user namespace maps us to root in it, where tmpfs may be
     * mounted. */
    uid_t uid = getuid();
    gid_t gid = getgid();
    char map[64];
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
        return NULL;
    snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
    if (write_file("/proc/self/setgroups", "deny") != 0 && errno != ENOENT)
        return NULL;
    if (write_file("/proc/self/uid_map", map) != 0)
        return NULL;
    snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
    if (write_file("/proc/self/gid_map", map) != 0)
        return NULL;
    return mount("tmpfs", dir, "tmpfs", 0, opt) == 0 ? "user namespace" : NULL;
}

/* Runs fn(dir) in a child with the small filesystem mounted at dir. */
static void in_small_fs(void (*fn)(const char *dir))
{
    char *dir = tkt_mkdtemp();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const char *how = mount_small_fs(dir, FS_MIB);
        if (!how) {
            fprintf(stderr, "# cannot mount a tmpfs (%s), as root or in a user namespace: "
                            "this test needs one\n", strerror(errno));
            _exit(3);
        }
        fprintf(stderr, "# a %d MiB tmpfs mounted (%s)\n", FS_MIB, how);
        fn(dir);
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    tkt_rmdir(dir);
    free(dir);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* In the child: a failed check exits non-zero with the line. */
#define CHECK(cond)                                                                         \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "# %s:%d: failed: %s\n", __FILE__, __LINE__, #cond);            \
            _exit(1);                                                                       \
        }                                                                                   \
    } while (0)

static int64_t free_bytes(const char *dir)
{
    struct statvfs sv;
    return statvfs(dir, &sv) == 0 ? (int64_t)sv.f_bavail * (int64_t)sv.f_frsize : -1;
}

typedef struct world {
    fx_world w;
    char leaked[TK_SECRET_LEN + 1]; /* a token of umbrella's */
    tk_id leaked_id;
    tk_id ellen_key2;
    char kept[TK_SECRET_LEN + 1];   /* one of alice's, made before the flood */
    int made;                       /* tokens of the flood */
} world;

/* One user creates tokens with 1 KiB descriptions, 64 a batch, until the
 * store says it is full. */
static void flood(eng *e, world *wd)
{
    enum { BATCH = 64 };
    static char desc[TK_DESC_MAX + 1];
    memset(desc, 'd', TK_DESC_MAX);
    eng_req r[BATCH];
    eng_res res[BATCH];
    for (int i = 0; i < BATCH; i++) {
        eng_req_init(&r[i], ENG_TOKEN_CREATE, &wd->w.alice);
        r[i].desc = (tk_str){desc, TK_DESC_MAX};
        r[i].items[0] = (tk_str){"viewer", 6};
        r[i].nitems = 1;
    }
    for (int round = 0; round < 10000; round++) {
        CHECK(eng_exec(e, r, res, BATCH) == 0); /* never EIO, never fenced */
        int full = 0;
        for (int i = 0; i < BATCH; i++) {
            CHECK(res[i].status == 0 || res[i].status == TK_ENOSPC);
            wd->made += res[i].status == 0;
            full += res[i].status == TK_ENOSPC;
        }
        if (full) {
            CHECK(strstr(res[BATCH - 1].msg, "storage full") != NULL);
            break;
        }
    }
    /* Then one at a time, until not even one fits. */
    for (int i = 0; i < 100000; i++) {
        CHECK(eng_exec(e, r, res, 1) == 0);
        CHECK(res[0].status == 0 || res[0].status == TK_ENOSPC);
        if (res[0].status == TK_ENOSPC)
            return;
        wd->made++;
    }
    CHECK(!"the disk never filled");
}

static void full_disk(const char *dir)
{
    tk_why said = {.msg = ""};
    eng *e;
    eng_opts o = {.reserve_bytes = RESERVE};
    world wd = {0};
    eng_res res;
    eng_req r;
    tk_verify v;

    CHECK(eng_open(dir, &o, &e, &said) == 0);
    fx_scenario(e, &wd.w);
    CHECK(fx_token(e, &wd.w.alice, "kept", VIEWER, 0, NULL, wd.kept) == 0);
    CHECK(fx_token(e, &wd.w.ellen, "leaked", ADMIN, 0, &wd.leaked_id, wd.leaked) == 0);
    eng_req_init(&r, ENG_KEY_CREATE, &fx_operator);
    r.tenant = (tk_str){"umbrella", 8};
    r.account = (tk_str){"raccoon", 7};
    r.user = (tk_str){"ellen", 5};
    CHECK(fx_exec(e, &r, &res) == 0);
    wd.ellen_key2 = res.id;
    int64_t before = free_bytes(dir);

    flood(e, &wd);
    fprintf(stderr, "# %d tokens of 1 KiB filled the disk (%lld bytes free before, %lld "
                    "after)\n", wd.made, (long long)before, (long long)free_bytes(dir));
    CHECK(wd.made > 1000);
    CHECK(!eng_fenced(e, NULL));
    CHECK(fx_token(e, &wd.w.ellen, "more", ADMIN, 0, NULL, NULL) == TK_ENOSPC);
    CHECK(fx_tenant(e, "newcomer") == TK_ENOSPC);

    /* The victim revokes: the leaked token, the toggle, a personal key. */
    CHECK(fx_token_delete(e, &wd.w.ellen, &wd.leaked_id) == 0);
    CHECK(fx_verify(e, wd.leaked, &v) == TK_V_UNKNOWN);
    CHECK(fx_toggle(e, "umbrella", false) == 0);
    eng_req_init(&r, ENG_KEY_DELETE, &fx_operator);
    r.id = wd.ellen_key2;
    CHECK(fx_exec(e, &r, NULL) == 0);
    /* A role change that only takes away goes through; one that adds does not. */
    static const char *const none[] = {NULL};
    static const char *const more[] = {"orders:read", "orders:export", NULL};
    CHECK(fx_role(e, "acme", "viewer", 2, none) == 0);
    CHECK(fx_role(e, "acme", "viewer", 2, more) == TK_ENOSPC);
    CHECK(fx_verify(e, wd.kept, &v) == TK_V_VALID);
    CHECK(!eng_fenced(e, NULL));
    eng_close(e);

    /* The store opens again on the full disk (a clean close gives back the
     * log's look-ahead, and the reserve is grown back first from it); the
     * flood fills what is left, and revocations still go through. */
    CHECK(eng_open(dir, &o, &e, &said) == 0);
    CHECK(fx_verify(e, wd.kept, &v) == TK_V_VALID);
    CHECK(fx_verify(e, wd.leaked, &v) == TK_V_UNKNOWN);
    flood(e, &wd);
    CHECK(fx_token(e, &wd.w.alice, "after", VIEWER, 0, NULL, NULL) == TK_ENOSPC);
    CHECK(fx_toggle(e, "acme", false) == 0);
    CHECK(fx_toggle(e, "acme", true) == TK_ENOSPC); /* turning on is not a revocation */
    CHECK(fx_verify(e, wd.kept, &v) == TK_V_DISABLED);
    CHECK(!eng_fenced(e, NULL));
    eng_close(e);

    /* So does the real server. */
    raw_server s;
    CHECK(raw_server_start(&s, dir, NULL) == 0);
    int fd = raw_connect(s.port);
    CHECK(fd >= 0);
    mpw body;
    raw_reply rep;
    bool valid = true;
    char reason[32];
    mpw_init(&body);
    raw_map(&body, "secret:s", wd.kept);
    CHECK(raw_call(fd, OP_VERIFY, 1, &body, &rep) == 0);
    CHECK(raw_get_bool(&rep, "valid", &valid) && !valid);
    CHECK(raw_get_str(&rep, "reason", reason, sizeof reason) && !strcmp(reason, "disabled"));
    raw_reply_free(&rep);
    close(fd);
    mpw_free(&body);
    CHECK(raw_server_stop(&s) == 0);
    raw_server_free(&s);
}

static void revocations_commit_on_a_full_disk(void **state)
{
    (void)state;
    in_small_fs(full_disk);
}

/* A store whose disk is full from the start (even the marker cannot be
 * written) opens, and verifies. */
static void opens_with_no_byte_free(const char *dir)
{
    tk_why said = {.msg = ""};
    eng *e;
    eng_opts o = {.reserve_bytes = 1u << 20};
    fx_world w;
    char s[TK_SECRET_LEN + 1];
    tk_verify v;
    CHECK(eng_open(dir, &o, &e, &said) == 0);
    fx_scenario(e, &w);
    CHECK(fx_token(e, &w.alice, "ci", VIEWER, 0, NULL, s) == 0);
    eng_close(e);
    /* Fill every byte left, reserve aside. */
    char *filler = tkt_path(dir, "filler");
    int fd = open(filler, O_WRONLY | O_CREAT, 0600);
    CHECK(fd >= 0);
    static char block[1 << 16];
    while (write(fd, block, sizeof block) > 0)
        ;
    while (write(fd, block, 512) > 0)
        ;
    close(fd);
    char *reserve = tkt_path(dir, "reserve");
    unlink(reserve); /* and no reserve either */
    while ((fd = open(filler, O_WRONLY | O_APPEND)) >= 0 && write(fd, block, 512) > 0)
        close(fd);
    if (fd >= 0)
        close(fd);
    CHECK(free_bytes(dir) < 4096);
    CHECK(eng_open(dir, &o, &e, &said) == 0);
    CHECK(fx_verify(e, s, &v) == TK_V_VALID);
    CHECK(fx_token(e, &w.alice, "no", VIEWER, 0, NULL, NULL) == TK_ENOSPC);
    eng_close(e);
    free(filler);
    free(reserve);
}

static void opens_on_a_disk_with_nothing_free(void **state)
{
    (void)state;
    in_small_fs(opens_with_no_byte_free);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(revocations_commit_on_a_full_disk),
        cmocka_unit_test(opens_on_a_disk_with_nothing_free),
    };
    return cmocka_run_group_tests_name("space", tests, NULL, NULL);
}
