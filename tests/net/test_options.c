/*
 * test_options.c - net/options.c: bin/tokend's option table, its command
 * line and its configuration file (--config, INI via libinih), --help and
 * --check-config.
 *
 * The suite keeps its own list of every option (ROWS below: flag, section,
 * key, a good and a bad value, and the srv_opts field by its own offsetof),
 * written apart from the module's table, and checks that the two agree: a
 * flag added to the table without a row here fails `table_is_covered`. Each
 * row goes through the file and through the flag and must land in the
 * field the suite names. The last tests run the real $BIN/tokend with the
 * shipped docs/tokend.conf.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/err.h"
#include "net/options.h"
#include "net/proto.h"
#include "net/server.h"
#include "tests/support/hraw.h"
#include "tests/support/raw.h"
#include "tests/support/tkt.h"

#define TEST_SECONDS 30
#define EXAMPLE "docs/tokend.conf"

/* ---- the suite's own list of the options -------------------------------- */

typedef enum { F_STR, F_U32, F_SIZE, F_DBL, F_BOOL } ftype;

typedef struct row {
    const char *flag, *section, *key;
    const char *good; /* a valid value, not the default */
    const char *bad;  /* a value the flag refuses; NULL: every string goes */
    ftype t;
    size_t off, size;
    const char *want_s;      /* F_STR: what good stores */
    unsigned long long want_u; /* F_U32, F_SIZE, F_BOOL */
    double want_d;           /* F_DBL */
} row;

#define FIELD(t, m) t, offsetof(srv_opts, m), sizeof(((srv_opts *)0)->m)

static const row ROWS[] = {
    {"listen", "server", "listen", "127.0.0.1:9999", NULL, FIELD(F_STR, listen),
     "127.0.0.1:9999", 0, 0},
    {"data", "server", "data", "/tmp/tokend-test-data", NULL, FIELD(F_STR, data_dir),
     "/tmp/tokend-test-data", 0, 0},
    {"max-frame", "server", "max-frame", "2M", "1023", FIELD(F_U32, conn.max_frame), NULL,
     2u << 20, 0},
    {"max-connections", "server", "max-connections", "77", "0",
     FIELD(F_U32, conn.max_connections), NULL, 77, 0},
    {"max-per-peer", "server", "max-per-peer", "5", "1000001", FIELD(F_U32, conn.max_per_peer),
     NULL, 5, 0},
    {"max-output", "server", "max-output", "128K", "64", FIELD(F_SIZE, conn.max_output), NULL,
     128u << 10, 0},
    {"max-queued", "server", "max-queued", "100000", "-1", FIELD(F_SIZE, conn.max_queued), NULL,
     100000, 0},
    {"batch-replies", "server", "batch-replies", "5M", "4194303", FIELD(F_SIZE, batch_replies),
     NULL, 5u << 20, 0},
    {"idle-timeout", "server", "idle-timeout", "0.25", "0", FIELD(F_DBL, conn.idle_timeout), NULL,
     0, 0.25},
    {"frame-timeout", "server", "frame-timeout", "2.5", "soon", FIELD(F_DBL, conn.frame_timeout),
     NULL, 0, 2.5},
    {"require-gateway-key", "server", "require-gateway-key", "true", "maybe",
     FIELD(F_BOOL, require_gateway), NULL, 1, 0},
    {"tls-cert", "server", "tls-cert", "/etc/tokend/tls/cert.pem", NULL, FIELD(F_STR, tls.cert),
     "/etc/tokend/tls/cert.pem", 0, 0},
    {"tls-key", "server", "tls-key", "/etc/tokend/tls/key.pem", NULL, FIELD(F_STR, tls.key),
     "/etc/tokend/tls/key.pem", 0, 0},
    {"tls-client-ca", "server", "tls-client-ca", "/etc/tokend/tls/gateways.pem", NULL,
     FIELD(F_STR, tls.client_ca), "/etc/tokend/tls/gateways.pem", 0, 0},
    {"sign-key", "server", "sign-key", "/etc/tokend/sign.key", NULL, FIELD(F_STR, sign_key),
     "/etc/tokend/sign.key", 0, 0},
    {"full-log-check", "server", "full-log-check", "true", "always",
     FIELD(F_BOOL, full_log_check), NULL, 1, 0},
    {"io-uring", "server", "io-uring", "false", "always", FIELD(F_BOOL, conn.io_uring), NULL, 0,
     0},
    {"log-format", "server", "log-format", "json", "xml", FIELD(F_STR, log_format), "json", 0,
     0},
    {"log-requests", "server", "log-requests", "100", "1000001", FIELD(F_U32, log_requests),
     NULL, 100, 0},
    {"http", "http", "listen", "none", NULL, FIELD(F_STR, http_listen), "none", 0, 0},
    {"http-verify", "http", "verify", "127.0.0.1:7081", NULL, FIELD(F_STR, verify_listen),
     "127.0.0.1:7081", 0, 0},
    {"http-max-connections", "http", "max-connections", "12", "1000001",
     FIELD(F_U32, http.max_connections), NULL, 12, 0},
    {"http-max-headers", "http", "max-headers", "16K", "1M1", FIELD(F_U32, http.max_headers),
     NULL, 16u << 10, 0},
    {"http-max-body", "http", "max-body", "1M", "2048M", FIELD(F_U32, http.max_body), NULL,
     1u << 20, 0},
    {"http-timeout", "http", "timeout", "7", "inf", FIELD(F_DBL, http.timeout), NULL, 0, 7},
    {"publish", "replication", "publish", "nats://10.0.0.5:4222", NULL, FIELD(F_STR, repl.publish),
     "nats://10.0.0.5:4222", 0, 0},
    {"follow", "replication", "follow", "nats://10.0.0.5:4222,nats://10.0.0.6:4222", NULL,
     FIELD(F_STR, repl.follow), "nats://10.0.0.5:4222,nats://10.0.0.6:4222", 0, 0},
    {"stream", "replication", "stream", "tokens-eu", NULL, FIELD(F_STR, repl.stream),
     "tokens-eu", 0, 0},
    {"stream-replicas", "replication", "stream-replicas", "3", "6",
     FIELD(F_U32, repl.stream_replicas), NULL, 3, 0},
    {"replica-name", "replication", "name", "eu-1", NULL, FIELD(F_STR, repl.name), "eu-1", 0, 0},
    {"lease", "replication", "lease", "0.5", "0", FIELD(F_DBL, repl.lease_s), NULL, 0, 0.5},
    {"snapshot-every", "replication", "snapshot-every", "60", "-1", FIELD(F_DBL, repl.snapshot_s),
     NULL, 0, 60},
    {"revocation-barrier", "replication", "revocation-barrier", "true", "maybe",
     FIELD(F_BOOL, repl.barrier), NULL, 1, 0},
    {"fail-open", "replication", "fail-open", "true", "maybe", FIELD(F_BOOL, repl.fail_open),
     NULL, 1, 0},
    {"portal-url", "portal", "url", "https://tokens.example.com", "ftp://x",
     FIELD(F_STR, http.portal.url), "https://tokens.example.com", 0, 0},
    {"portal-session-ttl", "portal", "session-ttl", "600", "86401",
     FIELD(F_U32, http.portal.ses.ttl), NULL, 600, 0},
    {"portal-link-ttl", "portal", "link-ttl", "30", "3601", FIELD(F_U32, http.portal.ses.code_ttl),
     NULL, 30, 0},
    {"portal-max-sessions", "portal", "max-sessions", "500", "0", FIELD(F_U32, http.portal.ses.max),
     NULL, 500, 0},
    {"portal-tenant-sessions", "portal", "tenant-sessions", "50", "10000001",
     FIELD(F_U32, http.portal.ses.per_tenant), NULL, 50, 0},
    {"portal-frame-ancestors", "portal", "frame-ancestors", "'self' https://app.example.com",
     "'self', https://x", FIELD(F_STR, http.portal.frame_ancestors),
     "'self' https://app.example.com", 0, 0},
};

#define NROWS ((int)(sizeof ROWS / sizeof ROWS[0]))

static const char *str_at(const srv_opts *o, const row *r)
{
    const char *s;
    memcpy(&s, (const char *)o + r->off, sizeof s);
    return s;
}

static unsigned long long uint_at(const srv_opts *o, const row *r)
{
    const char *p = (const char *)o + r->off;
    if (r->t == F_U32) {
        uint32_t x;
        memcpy(&x, p, sizeof x);
        return x;
    }
    if (r->t == F_SIZE) {
        size_t x;
        memcpy(&x, p, sizeof x);
        return x;
    }
    bool b;
    memcpy(&b, p, sizeof b);
    return b;
}

static double dbl_at(const srv_opts *o, const row *r)
{
    double d;
    memcpy(&d, (const char *)o + r->off, sizeof d);
    return d;
}

/* Row r's field is the same in a and b. */
static bool field_same(const row *r, const srv_opts *a, const srv_opts *b)
{
    switch (r->t) {
    case F_STR: {
        const char *x = str_at(a, r), *y = str_at(b, r);
        return x == y || (x && y && strcmp(x, y) == 0);
    }
    case F_DBL: return dbl_at(a, r) == dbl_at(b, r);
    default: return uint_at(a, r) == uint_at(b, r);
    }
}

/* Every field of ROWS is the same in a and b, but skip's (-1: none). */
static void all_same_but(const srv_opts *a, const srv_opts *b, int skip)
{
    for (int j = 0; j < NROWS; j++)
        if (j != skip && !field_same(&ROWS[j], a, b))
            fail_msg("option %s differs", ROWS[j].flag);
}

/* Row r's field holds what its good value means. */
static void field_is_good(const row *r, const srv_opts *o)
{
    switch (r->t) {
    case F_STR:
        assert_non_null(str_at(o, r));
        assert_string_equal(str_at(o, r), r->want_s);
        break;
    case F_DBL: assert_true(dbl_at(o, r) == r->want_d); break;
    default: assert_int_equal(uint_at(o, r), r->want_u);
    }
}

static const row *row_of(const char *flag)
{
    for (int i = 0; i < NROWS; i++)
        if (strcmp(ROWS[i].flag, flag) == 0)
            return &ROWS[i];
    return NULL;
}

/* ---- helpers ------------------------------------------------------------ */

static opt_cfg *load(const char *text, int want_rc, tk_why *why)
{
    opt_cfg *c;
    opt_new(&c);
    memset(why, 0, sizeof *why);
    int rc = opt_load_string(c, "t.conf", text, why);
    if (rc != want_rc)
        fail_msg("opt_load_string: %d, wanted %d (%s) for:\n%s", rc, want_rc, why->msg, text);
    return c;
}

/* The file text is refused with exactly msg. */
static void refused(const char *text, const char *msg)
{
    tk_why why;
    opt_cfg *c = load(text, TK_EINVAL, &why);
    if (strcmp(why.msg, msg) != 0)
        fail_msg("message:\n  %s\nwanted:\n  %s", why.msg, msg);
    opt_free(c);
}

/* Parses a command line; argv's strings are copied (getopt permutes). */
static int parse_argv(opt_cfg *c, const char *const *args, opt_action *act, tk_why *why)
{
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)"tokend";
    for (; *args; args++) {
        assert_true(n < 31);
        argv[n++] = (char *)*args;
    }
    argv[n] = NULL;
    return opt_parse_args(c, n, argv, act, why);
}

static char *print_of(const opt_cfg *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    opt_print(c, f);
    fclose(f);
    return buf;
}

static char *usage_text(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    opt_usage(f);
    fclose(f);
    return buf;
}

/* s with every run of blanks and newlines made one space (in place). */
static char *squeeze(char *s)
{
    char *w = s;
    for (const char *p = s; *p; p++) {
        if (*p == ' ' || *p == '\n') {
            if (w == s || w[-1] != ' ')
                *w++ = ' ';
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
    return s;
}

static void contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("expected \"%s\" in:\n%s", needle, hay);
}

/* The line of listing (opt_print's) for key in [section], copied into out
 * without its newline; false when there is none. */
static bool listing_line(const char *listing, const char *section, const char *key, char *out,
                         size_t cap)
{
    char head[64], want[96];
    snprintf(head, sizeof head, "\n[%s]\n", section);
    const char *p = strstr(listing, head);
    if (!p)
        return false;
    p += strlen(head);
    const char *end = strstr(p, "\n[");
    if (!end)
        end = p + strlen(p);
    snprintf(want, sizeof want, "%s = ", key);
    for (const char *l = p; l < end;) {
        const char *nl = strchr(l, '\n');
        size_t n = nl ? (size_t)(nl - l) : strlen(l);
        const char *k = l;
        if (strncmp(k, "; ", 2) == 0) /* an unset value is listed as a comment */
            k += 2;
        if (strncmp(k, want, strlen(want)) == 0) {
            snprintf(out, cap, "%.*s", (int)n, l);
            return true;
        }
        l += n + 1;
    }
    return false;
}

/* Runs $BIN/tokend with args; its exit code, stdout and stderr (owned). */
static int run_tokend(const char *const *args, char **out, char **err)
{
    const char *bin = getenv("BIN");
    char *exe = tkt_path(bin && *bin ? bin : "bin", "tokend");
    char *tmp = tkt_mkdtemp();
    char *outp = tkt_path(tmp, "out"), *errp = tkt_path(tmp, "err");
    const char *argv[32];
    int n = 0;
    argv[n++] = exe;
    for (; *args; args++) {
        assert_true(n < 31);
        argv[n++] = *args;
    }
    argv[n] = NULL;
    fflush(NULL);
    pid_t parent = getpid(), pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int fo = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0)
            _exit(127);
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    raw_track(pid, true);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    raw_track(pid, false);
    assert_true(WIFEXITED(st));
    size_t len;
    unsigned char *o = tkt_read_file(outp, &len);
    assert_non_null(o);
    *out = realloc(o, len + 1);
    (*out)[len] = '\0';
    unsigned char *e = tkt_read_file(errp, &len);
    assert_non_null(e);
    *err = realloc(e, len + 1);
    (*err)[len] = '\0';
    tkt_rmdir(tmp);
    free(tmp);
    free(outp);
    free(errp);
    free(exe);
    return WEXITSTATUS(st);
}

/* ---- the table ---------------------------------------------------------- */

/* The module's table and ROWS list the same options, each once, with the
 * same flag, section and key; each row's field type fits its size. */
static void table_is_covered(void **state)
{
    (void)state;
    assert_int_equal(opt_count(), NROWS);
    for (int i = 0; i < opt_count(); i++) {
        const row *r = row_of(opt_flag(i));
        if (!r)
            fail_msg("--%s has no row in this suite", opt_flag(i));
        assert_string_equal(opt_section(i), r->section);
        assert_string_equal(opt_key(i), r->key);
        for (int j = 0; j < i; j++) {
            assert_string_not_equal(opt_flag(i), opt_flag(j));
            if (strcmp(opt_section(i), opt_section(j)) == 0)
                assert_string_not_equal(opt_key(i), opt_key(j));
        }
    }
    for (int i = 0; i < NROWS; i++) {
        const row *r = &ROWS[i];
        size_t want = r->t == F_STR    ? sizeof(const char *)
                      : r->t == F_U32  ? sizeof(uint32_t)
                      : r->t == F_SIZE ? sizeof(size_t)
                      : r->t == F_DBL  ? sizeof(double)
                                       : sizeof(bool);
        if (r->size != want)
            fail_msg("row %s: field size %zu, type wants %zu", r->flag, r->size, want);
    }
    assert_null(opt_flag(-1));
    assert_null(opt_flag(NROWS));
}

/* Every option, set in a file to a value that is not its default, lands in
 * its own field and nowhere else; the same value as a flag (opt_set_flag,
 * and a whole command line) gives the same srv_opts; --check-config says
 * where it came from. */
static void every_option_round_trips(void **state)
{
    (void)state;
    srv_opts def;
    srv_opts_default(&def);
    for (int i = 0; i < NROWS; i++) {
        const row *r = &ROWS[i];
        char text[256], where[64], line[256];
        tk_why why;
        snprintf(text, sizeof text, "; a comment\n[%s]\n%s = %s\n", r->section, r->key, r->good);
        opt_cfg *f = load(text, 0, &why);
        field_is_good(r, opt_srv(f));
        if (field_same(r, opt_srv(f), &def))
            fail_msg("row %s: the good value is the default", r->flag);
        all_same_but(opt_srv(f), &def, i);
        char *listing = print_of(f);
        if (!listing_line(listing, r->section, r->key, line, sizeof line))
            fail_msg("no %s in [%s] in:\n%s", r->key, r->section, listing);
        snprintf(where, sizeof where, "; t.conf:3");
        contains(line, where);
        free(listing);

        opt_cfg *g;
        opt_new(&g);
        /* A bare boolean flag says true; one whose default is true is
         * tried with its value (--io-uring=false). */
        bool bare = r->t == F_BOOL && r->want_u;
        assert_int_equal(opt_set_flag(g, r->flag, bare ? NULL : r->good, &why), 0);
        all_same_but(opt_srv(g), opt_srv(f), -1);
        listing = print_of(g);
        assert_true(listing_line(listing, r->section, r->key, line, sizeof line));
        snprintf(where, sizeof where, "; flag --%s", r->flag);
        contains(line, where);
        free(listing);
        opt_free(g);

        char flagtext[128];
        snprintf(flagtext, sizeof flagtext, "--%s=%s", r->flag, r->good);
        const char *args[] = {flagtext, NULL};
        opt_action act;
        opt_new(&g);
        assert_int_equal(parse_argv(g, args, &act, &why), 0);
        assert_int_equal(act, OPT_RUN);
        all_same_but(opt_srv(g), opt_srv(f), -1);
        opt_free(g);
        opt_free(f);
    }
}

/* A bad value is refused from the file with its line and key, and with the
 * explanation its flag gives. */
static void bad_values_say_what_the_flag_says(void **state)
{
    (void)state;
    for (int i = 0; i < NROWS; i++) {
        const row *r = &ROWS[i];
        tk_why fw, cw;
        char text[256], subject[128];
        if (!r->bad)
            continue;
        opt_cfg *c;
        opt_new(&c);
        assert_int_equal(opt_set_flag(c, r->flag, r->bad, &fw), TK_EINVAL);
        opt_free(c);
        snprintf(text, sizeof text, "[%s]\n\n%s = %s\n", r->section, r->key, r->bad);
        c = load(text, TK_EINVAL, &cw);
        opt_free(c);
        /* "--FLAG VALUE: why" and "t.conf:3: [SECTION] KEY = VALUE: why";
         * the CSP check names no value. */
        snprintf(subject, sizeof subject, "--%s", r->flag);
        assert_memory_equal(fw.msg, subject, strlen(subject));
        snprintf(subject, sizeof subject, "t.conf:3: [%s] %s", r->section, r->key);
        assert_memory_equal(cw.msg, subject, strlen(subject));
        const char *fwhy = strstr(fw.msg, ": "), *cwhy = strstr(cw.msg + strlen(subject), ": ");
        assert_non_null(fwhy);
        assert_non_null(cwhy);
        assert_string_equal(fwhy, cwhy);
        if (strstr(fw.msg, r->bad)) {
            snprintf(subject, sizeof subject, "--%s %s: ", r->flag, r->bad);
            assert_memory_equal(fw.msg, subject, strlen(subject));
            snprintf(subject, sizeof subject, "[%s] %s = %s: ", r->section, r->key, r->bad);
            contains(cw.msg, subject);
        }
    }
}

/* The wording of the flags' refusals is kept (scripts and tests match it). */
static void flag_messages_kept(void **state)
{
    (void)state;
    static const struct {
        const char *flag, *value, *msg;
    } cases[] = {
        {"max-frame", "1", "--max-frame 1: expected a number of bytes from 1024 to 1073741824"},
        {"max-per-peer", "x", "--max-per-peer x: expected a number of bytes from 0 to 1000000"},
        {"idle-timeout", "0", "--idle-timeout 0: expected seconds (from 0.001)"},
        {"portal-url", "https://a/b",
         "--portal-url https://a/b: expected http(s)://HOST[:PORT], nothing after it"},
        {"portal-frame-ancestors", "a;b",
         "--portal-frame-ancestors: CSP sources, space-separated ('self', 'none', "
         "https://app.example.com), at most 256 bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        opt_cfg *c;
        tk_why why;
        opt_new(&c);
        assert_int_equal(opt_set_flag(c, cases[i].flag, cases[i].value, &why), TK_EINVAL);
        assert_string_equal(why.msg, cases[i].msg);
        opt_free(c);
    }
}

/* ---- precedence --------------------------------------------------------- */

static char *write_conf(const char *dir, const char *text)
{
    char *p = tkt_path(dir, "tokend.conf");
    assert_int_equal(tkt_write_file(p, text, strlen(text)), 0);
    return p;
}

/* A flag wins over the file wherever it stands on the command line; keys
 * the flags do not name keep the file's values. */
static void flag_overrides_file(void **state)
{
    (void)state;
    char *dir = tkt_mkdtemp();
    char *path = write_conf(dir, "[server]\n"
                                 "listen = 127.0.0.1:9001\n"
                                 "max-frame = 4M\n"
                                 "require-gateway-key = true\n"
                                 "[http]\n"
                                 "timeout = 5\n");
    const char *after[] = {"--config", path, "--max-frame", "2M", "--require-gateway-key=false",
                           NULL};
    const char *before[] = {"--max-frame", "2M", "--require-gateway-key=no", "--config", path,
                            NULL};
    const char *const *lines[] = {after, before};
    for (int k = 0; k < 2; k++) {
        opt_cfg *c;
        opt_action act;
        tk_why why;
        char line[256], want[512];
        opt_new(&c);
        assert_int_equal(parse_argv(c, lines[k], &act, &why), 0);
        assert_int_equal(act, OPT_RUN);
        const srv_opts *o = opt_srv(c);
        assert_int_equal(o->conn.max_frame, 2u << 20);
        assert_false(o->require_gateway);
        assert_string_equal(o->listen, "127.0.0.1:9001");
        assert_true(o->http.timeout == 5);
        char *listing = print_of(c);
        assert_true(listing_line(listing, "server", "max-frame", line, sizeof line));
        snprintf(want, sizeof want, "max-frame = 2M");
        contains(line, want);
        snprintf(want, sizeof want, "; flag --max-frame (over %s:3)", path);
        contains(line, want);
        assert_true(listing_line(listing, "server", "listen", line, sizeof line));
        snprintf(want, sizeof want, "; %s:2", path);
        contains(line, want);
        assert_true(listing_line(listing, "server", "data", line, sizeof line));
        contains(line, "; default");
        free(listing);
        opt_free(c);
    }
    /* The flag's switch is on by itself, without "=true". */
    opt_cfg *c;
    opt_action act;
    tk_why why;
    const char *on[] = {"--require-gateway-key", NULL};
    opt_new(&c);
    assert_int_equal(parse_argv(c, on, &act, &why), 0);
    assert_true(opt_srv(c)->require_gateway);
    opt_free(c);
    /* A flag that is set does not hide a bad value in the file. */
    free(path);
    path = write_conf(dir, "[server]\nmax-frame = 1\n");
    const char *bad[] = {"--max-frame", "2M", "--config", path, NULL};
    opt_new(&c);
    assert_int_equal(parse_argv(c, bad, &act, &why), TK_EINVAL);
    contains(why.msg, ":2: [server] max-frame = 1: expected a number of bytes");
    opt_free(c);
    tkt_rmdir(dir);
    free(dir);
    free(path);
}

/* The command line's own refusals, and --help and --check-config. */
static void command_line(void **state)
{
    (void)state;
    static const struct {
        const char *args[6];
        int rc;
        opt_action act;
        const char *msg;
    } cases[] = {
        {{"--bogus", NULL}, TK_EINVAL, OPT_RUN, "unknown option --bogus (see --help)"},
        {{"--listen", NULL}, TK_EINVAL, OPT_RUN, "--listen needs a value (see --help)"},
        {{"--listen", "a:1", "stray", NULL}, TK_EINVAL, OPT_RUN,
         "unexpected argument stray (see --help)"},
        {{"--config", "a", "--config", "b", NULL}, TK_EINVAL, OPT_RUN,
         "--config given twice (a, b)"},
        {{"--config", "/nonexistent/tokend.conf", NULL}, TK_EIO, OPT_RUN,
         "/nonexistent/tokend.conf: cannot open the configuration file: No such file or "
         "directory"},
        {{"--max-frame", "1", "--help", NULL}, TK_EINVAL, OPT_RUN,
         "--max-frame 1: expected a number of bytes from 1024 to 1073741824"},
        {{"--help", "--max-frame", "1", NULL}, 0, OPT_HELP, NULL},
        {{"--check-config", NULL}, 0, OPT_CHECK, NULL},
        {{"--listen", "127.0.0.1:1", NULL}, 0, OPT_RUN, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        opt_cfg *c;
        opt_action act = OPT_RUN;
        tk_why why;
        opt_new(&c);
        int rc = parse_argv(c, cases[i].args, &act, &why);
        if (rc != cases[i].rc)
            fail_msg("case %zu: rc %d, wanted %d (%s)", i, rc, cases[i].rc, rc ? why.msg : "");
        if (rc == 0)
            assert_int_equal(act, cases[i].act);
        else
            assert_string_equal(why.msg, cases[i].msg);
        opt_free(c);
    }
}

/* ---- the file's refusals, with their lines ------------------------------ */

static void unknown_key(void **state)
{
    (void)state;
    refused("; tokend\n\n[server]\nlisten = 127.0.0.1:7070\n\n  listn = 1\n",
            "t.conf:6: unknown key 'listn' in [server]");
    /* A key of another section is unknown here. */
    refused("[portal]\nmax-body = 1M\n", "t.conf:2: unknown key 'max-body' in [portal]");
    refused("[http]\n= 1\n", "t.conf:2: unknown key '' in [http]");
}

static void unknown_section(void **state)
{
    (void)state;
    /* Refused at its header, with or without keys under it. */
    refused("[server]\nlisten = 127.0.0.1:7070\n# next\n[srever]\n",
            "t.conf:4: unknown section [srever] (the sections are [server], [http] and "
            "[portal])");
    refused("[server]\n\n  [htpp] ; typo\nlisten = 1\n",
            "t.conf:3: unknown section [htpp] (the sections are [server], [http] and [portal])");
    refused("listen = 127.0.0.1:7070\n",
            "t.conf:1: key 'listen' outside a section (put it under [server], [http] or "
            "[portal])");
}

static void bad_value(void **state)
{
    (void)state;
    refused("[server]\nmax-frame = 1M\n[http]\n\nmax-body = 2G\n",
            "t.conf:5: [http] max-body = 2G: expected a number of bytes from 1024 to 1073741824");
    refused("[server]\nidle-timeout =\n", "t.conf:2: [server] idle-timeout = : expected seconds "
                                          "(from 0.001)");
    refused("[server]\nrequire-gateway-key = 2\n",
            "t.conf:2: [server] require-gateway-key = 2: expected true or false");
}

static void duplicate_key(void **state)
{
    (void)state;
    refused("[server]\nlisten = 127.0.0.1:1\n[http]\nlisten = none\n[server]\nlisten = "
            "127.0.0.1:2\n",
            "t.conf:6: duplicate key 'listen' in [server] (first at line 2)");
    /* Even with the same value. */
    refused("[portal]\nlink-ttl = 60\nlink-ttl = 60\n",
            "t.conf:3: duplicate key 'link-ttl' in [portal] (first at line 2)");
}

static void line_without_equals(void **state)
{
    (void)state;
    refused("[server]\nlisten = 127.0.0.1:1\n\n; fine\nmax-frame 2M\n",
            "t.conf:5: expected KEY = VALUE, [SECTION], a comment (; or #) or an empty line");
    refused("[server\nlisten = 1\n",
            "t.conf:1: expected KEY = VALUE, [SECTION], a comment (; or #) or an empty line");
}

static void long_line(void **state)
{
    (void)state;
    size_t n = OPT_LINE_MAX - strlen("data = ");
    char *text = malloc(OPT_LINE_MAX + 64);
    assert_non_null(text);
    int off = sprintf(text, "[server]\ndata = ");
    memset(text + off, 'd', n);
    strcpy(text + off + n, "\nmax-frame = 2M\n");
    tk_why why;
    opt_cfg *c = load(text, 0, &why);
    assert_int_equal(strlen(opt_srv(c)->data_dir), n);
    assert_int_equal(opt_srv(c)->conn.max_frame, 2u << 20);
    opt_free(c);
    text[off + n] = 'd'; /* one byte more: the newline becomes part of it */
    memmove(text + off + n + 1, "\nmax-frame = 2M\n", sizeof "\nmax-frame = 2M\n");
    char msg[64];
    snprintf(msg, sizeof msg, "t.conf:2: line longer than %d bytes", OPT_LINE_MAX);
    refused(text, msg);
    free(text);
}

/* Comments, blank and indented lines, CRLF, a BOM, inline comments and
 * ':' for '=' are what inih accepts; the values are what they say. */
static void what_inih_accepts(void **state)
{
    (void)state;
    tk_why why;
    opt_cfg *c = load("\xEF\xBB\xBF# tokend\r\n"
                      "[server]\r\n"
                      "  listen = 127.0.0.1:7000   ; the binary listener\r\n"
                      "\tmax-frame=2M\r\n"
                      "\r\n"
                      "[portal]\n"
                      "frame-ancestors = 'self' https://a.example.com\n"
                      "link-ttl: 30\n",
                      0, &why);
    const srv_opts *o = opt_srv(c);
    assert_string_equal(o->listen, "127.0.0.1:7000");
    assert_int_equal(o->conn.max_frame, 2u << 20);
    assert_string_equal(o->http.portal.frame_ancestors, "'self' https://a.example.com");
    assert_int_equal(o->http.portal.ses.code_ttl, 30);
    opt_free(c);
}

static void empty_file_is_the_defaults(void **state)
{
    (void)state;
    srv_opts def;
    srv_opts_default(&def);
    const char *texts[] = {"", "\n\n", "; only a comment\n", "[server]\n[http]\n[portal]\n"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        tk_why why;
        opt_cfg *c = load(texts[i], 0, &why);
        all_same_but(opt_srv(c), &def, -1);
        char *listing = print_of(c);
        assert_null(strstr(listing, "t.conf"));
        free(listing);
        opt_free(c);
    }
}

static void missing_and_unreadable_files(void **state)
{
    (void)state;
    char *dir = tkt_mkdtemp();
    char *path = tkt_path(dir, "none.conf");
    opt_cfg *c;
    tk_why why;
    opt_new(&c);
    assert_int_equal(opt_load_file(c, path, &why), TK_EIO);
    contains(why.msg, path);
    contains(why.msg, ": cannot open the configuration file: No such file or directory");
    opt_free(c);
    /* A directory opens but cannot be read. */
    opt_new(&c);
    assert_int_equal(opt_load_file(c, dir, &why), TK_EIO);
    contains(why.msg, "cannot read");
    opt_free(c);
    /* A NUL byte, which inih would cut the line at. */
    static const char nul[] = "[server]\nlisten = 1\0x\n";
    free(path);
    path = tkt_path(dir, "nul.conf");
    assert_int_equal(tkt_write_file(path, nul, sizeof nul - 1), 0);
    opt_new(&c);
    assert_int_equal(opt_load_file(c, path, &why), TK_EINVAL);
    contains(why.msg, "nul.conf:2: a NUL byte in the line");
    /* One file per set of options. */
    assert_int_equal(opt_load_string(c, "again.conf", "", &why), TK_EINVAL);
    contains(why.msg, "is loaded already");
    opt_free(c);
    tkt_rmdir(dir);
    free(dir);
    free(path);
}

/* Every prefix of the example parses, or is refused at a line it has. */
static void every_prefix_of_the_example(void **state)
{
    (void)state;
    size_t len;
    char *text = (char *)tkt_read_file(EXAMPLE, &len);
    assert_non_null(text);
    char *cut = malloc(len + 1);
    assert_non_null(cut);
    for (size_t n = 0; n <= len; n++) {
        memcpy(cut, text, n);
        cut[n] = '\0';
        int lines = 1;
        for (size_t k = 0; k < n; k++)
            lines += cut[k] == '\n';
        opt_cfg *c;
        tk_why why;
        opt_new(&c);
        int rc = opt_load_string(c, "t.conf", cut, &why);
        if (rc) {
            int at = 0;
            assert_int_equal(rc, TK_EINVAL);
            assert_int_equal(sscanf(why.msg, "t.conf:%d:", &at), 1);
            assert_true(at >= 1 && at <= lines);
        }
        opt_free(c);
    }
    free(cut);
    free(text);
}

/* ---- --check-config's listing and --help -------------------------------- */

/* The listing is itself a configuration: read back, it gives the same
 * options. */
static void listing_reads_back(void **state)
{
    (void)state;
    char text[2048] = "";
    for (int i = 0; i < NROWS; i++) {
        char line[256];
        snprintf(line, sizeof line, "[%s]\n%s = %s\n", ROWS[i].section, ROWS[i].key,
                 ROWS[i].good);
        strcat(text, line);
    }
    tk_why why;
    opt_cfg *a = load(text, 0, &why);
    for (int i = 0; i < NROWS; i++)
        field_is_good(&ROWS[i], opt_srv(a));
    char *listing = print_of(a);
    opt_cfg *b = load(listing, 0, &why);
    all_same_but(opt_srv(a), opt_srv(b), -1);
    free(listing);
    opt_free(b);
    opt_free(a);
    /* The defaults too, with the unset portal URL as a comment. */
    opt_new(&a);
    listing = print_of(a);
    contains(listing, "; url = ");
    b = load(listing, 0, &why);
    srv_opts def;
    srv_opts_default(&def);
    all_same_but(opt_srv(b), &def, -1);
    free(listing);
    opt_free(b);
    opt_free(a);
}

/* --help lists every flag with its argument, its default and its key. */
static void help_lists_every_flag(void **state)
{
    (void)state;
    char *text = squeeze(usage_text());
    opt_cfg *def;
    opt_new(&def);
    contains(text, "--config FILE");
    contains(text, "--check-config");
    for (int i = 0; i < opt_count(); i++) {
        char want[256], val[128];
        snprintf(want, sizeof want, " --%s ", opt_flag(i));
        contains(text, want);
        snprintf(want, sizeof want, "; [%s] %s)", opt_section(i), opt_key(i));
        contains(text, want);
        opt_value(def, i, val, sizeof val);
        if (val[0]) {
            snprintf(want, sizeof want, "(default %s", val);
            contains(text, want);
        }
    }
    contains(text, "(default 1M, from 1K to 1024M; [server] max-frame)");
    contains(text, "(default: http:// and the Host header of the request that mints one; "
                   "[portal] url)");
    /* No line wider than 80 columns. */
    free(text);
    text = usage_text();
    for (char *l = text; *l;) {
        size_t n = strcspn(l, "\n");
        if (n > 80)
            fail_msg("a --help line of %zu columns: %.*s", n, (int)n, l);
        l += n + (l[n] == '\n');
    }
    free(text);
    opt_free(def);
}

/* ---- the shipped example and the real program --------------------------- */

/* docs/tokend.conf sets every key (but the unset portal URL and TLS) to exactly
 * the built-in default, keeps the data directory relative and says to set
 * it for a real install. */
static void example_is_the_defaults(void **state)
{
    (void)state;
    opt_cfg *c;
    tk_why why;
    srv_opts def;
    srv_opts_default(&def);
    opt_new(&c);
    if (opt_load_file(c, EXAMPLE, &why) != 0)
        fail_msg("%s", why.msg);
    all_same_but(opt_srv(c), &def, -1);
    assert_true(opt_srv(c)->data_dir[0] != '/');
    char *listing = print_of(c);
    for (int i = 0; i < NROWS; i++) {
        char line[512];
        if (!listing_line(listing, ROWS[i].section, ROWS[i].key, line, sizeof line))
            fail_msg("no %s in [%s]", ROWS[i].key, ROWS[i].section);
        /* Unset by default, so commented out there: the portal's URL, TLS, the
         * signing key, the verify listener. */
        if (strcmp(ROWS[i].flag, "portal-url") != 0 && strncmp(ROWS[i].flag, "tls-", 4) != 0
            && strcmp(ROWS[i].flag, "sign-key") != 0 && strcmp(ROWS[i].flag, "http-verify") != 0
            && strcmp(ROWS[i].flag, "publish") != 0 && strcmp(ROWS[i].flag, "follow") != 0
            && strcmp(ROWS[i].flag, "replica-name") != 0)
            contains(line, "; " EXAMPLE ":");
    }
    free(listing);
    opt_free(c);
    size_t len;
    char *text = (char *)tkt_read_file(EXAMPLE, &len);
    assert_non_null(text);
    text = realloc(text, len + 1);
    text[len] = '\0';
    contains(text, "; url = https://");
    contains(text, "; verify = 127.0.0.1:7081");
    contains(text, "/var/lib/tokend");
    free(text);
}

/* docs/server.md's "Flags" names every flag and every key. */
static void server_md_names_every_option(void **state)
{
    (void)state;
    size_t len;
    char *text = (char *)tkt_read_file("docs/server.md", &len);
    assert_non_null(text);
    text = realloc(text, len + 1);
    text[len] = '\0';
    const char *flags = strstr(text, "\n## Flags");
    assert_non_null(flags);
    for (int i = 0; i < NROWS; i++) {
        char want[128];
        snprintf(want, sizeof want, "`--%s", ROWS[i].flag);
        contains(flags, want);
        snprintf(want, sizeof want, "`%s`", ROWS[i].key);
        contains(flags, want);
    }
    contains(flags, "--check-config");
    contains(flags, "inih");
    free(text);
}

/* bin/tokend --check-config --config docs/tokend.conf: exit 0, every option
 * on stdout under its section; nothing opened (the data directory is not
 * created). With a bad file: exit 2, the reason on stderr, nothing on
 * stdout. */
static void check_config_runs(void **state)
{
    (void)state;
    raw_watchdog(TEST_SECONDS);
    char *dir = tkt_mkdtemp();
    char *data = tkt_path(dir, "data");
    char *out, *err;
    const char *ok[] = {"--check-config", "--config", EXAMPLE, "--data", data, NULL};
    int rc = run_tokend(ok, &out, &err);
    if (rc != 0)
        fail_msg("exit %d: %s", rc, err);
    assert_string_equal(err, "");
    for (int i = 0; i < NROWS; i++) {
        char line[512];
        if (!listing_line(out, ROWS[i].section, ROWS[i].key, line, sizeof line))
            fail_msg("no %s in [%s] in:\n%s", ROWS[i].key, ROWS[i].section, out);
    }
    char want[512];
    snprintf(want, sizeof want, "data = %s", data);
    contains(out, want);
    contains(out, "; flag --data (over " EXAMPLE ":");
    contains(out, "; " EXAMPLE ":");
    struct stat st;
    assert_int_equal(stat(data, &st), -1);
    free(out);
    free(err);

    char *path = write_conf(dir, "[server]\nlisten = 127.0.0.1:0\n\nlistn = 1\n");
    const char *bad[] = {"--check-config", "--config", path, NULL};
    assert_int_equal(run_tokend(bad, &out, &err), 2);
    assert_string_equal(out, "");
    snprintf(want, sizeof want, "tokend: %s:4: unknown key 'listn' in [server]\n", path);
    assert_string_equal(err, want);
    free(out);
    free(err);
    /* A bad flag, checked or not. */
    const char *flag[] = {"--check-config", "--max-frame", "1", NULL};
    assert_int_equal(run_tokend(flag, &out, &err), 2);
    assert_string_equal(err, "tokend: --max-frame 1: expected a number of bytes from 1024 to "
                             "1073741824\n");
    free(out);
    free(err);
    const char *help[] = {"--help", NULL};
    assert_int_equal(run_tokend(help, &out, &err), 0);
    contains(out, "usage: tokend");
    contains(out, "--portal-frame-ancestors");
    free(out);
    free(err);
    tkt_rmdir(dir);
    free(dir);
    free(data);
    free(path);
    raw_watchdog(0);
}

/* The real server started with the shipped example, its listeners and
 * data directory given as flags, serves both listeners. */
static void serves_with_the_example(void **state)
{
    (void)state;
    raw_watchdog(TEST_SECONDS);
    raw_server s;
    const char *extra[] = {"--config", EXAMPLE, NULL};
    assert_int_equal(raw_server_start(&s, NULL, extra), 0);
    assert_true(s.port > 0 && s.port != 7070);
    assert_true(s.http_port > 0 && s.http_port != 7080);
    int fd = raw_connect(s.port);
    assert_true(fd >= 0);
    raw_reply r;
    assert_int_equal(raw_call(fd, OP_PING, 1, NULL, &r), 0);
    raw_reply_free(&r);
    close(fd);
    hraw_resp h;
    assert_int_equal(hraw_once(s.http_port, "GET", "/healthz", NULL, NULL, &h), 0);
    assert_int_equal(h.status, 200);
    hraw_free(&h);
    char key[256];
    assert_int_equal(raw_read_key(&s, "operator.key", key, sizeof key), 0);
    assert_int_equal(raw_server_stop(&s), 0);
    raw_server_free(&s);
    raw_watchdog(0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(table_is_covered),
        cmocka_unit_test(every_option_round_trips),
        cmocka_unit_test(bad_values_say_what_the_flag_says),
        cmocka_unit_test(flag_messages_kept),
        cmocka_unit_test(flag_overrides_file),
        cmocka_unit_test(command_line),
        cmocka_unit_test(unknown_key),
        cmocka_unit_test(unknown_section),
        cmocka_unit_test(bad_value),
        cmocka_unit_test(duplicate_key),
        cmocka_unit_test(line_without_equals),
        cmocka_unit_test(long_line),
        cmocka_unit_test(what_inih_accepts),
        cmocka_unit_test(empty_file_is_the_defaults),
        cmocka_unit_test(missing_and_unreadable_files),
        cmocka_unit_test(every_prefix_of_the_example),
        cmocka_unit_test(listing_reads_back),
        cmocka_unit_test(help_lists_every_flag),
        cmocka_unit_test(example_is_the_defaults),
        cmocka_unit_test(server_md_names_every_option),
        cmocka_unit_test(check_config_runs),
        cmocka_unit_test(serves_with_the_example),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
