/*
 * tokenctl.c - the command-line client of tokend (docs/tokenctl.md).
 *
 * Argument parsing and output only: every request goes through the client
 * library (net/client.h), which owns the protocol. One command, one
 * connection: connect, AUTH when a key is given, run the command, print,
 * exit with a code a script can branch on:
 *
 *     0  success
 *     1  verify: the token is not valid
 *     2  bad usage (unknown command or option, missing or bad argument,
 *        unreadable key file)
 *     3  the server refused (any non-zero status: denied, not found, ...)
 *     4  cannot connect, I/O error, timeout, or a malformed reply
 *
 * A refusal or failure prints exactly one line on stderr. Secrets: only the
 * credential that the command itself creates or verifies is ever printed;
 * copies held here are wiped before exit.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "core/err.h"
#include "core/model.h"
#include "net/client.h"
#include "net/proto.h"

enum {
    EXIT_INVALID = 1,
    EXIT_USAGE = 2,
    EXIT_REFUSED = 3,
    EXIT_IO = 4,
};

#define MAX_LIST 256 /* --role / --perm repetitions (the server's own limits are lower) */
#define MAX_POS 4

/* Global options: anywhere on the line, for every command. */
enum { G_ADDR, G_KEY, G_JSON, G_TLS, G_CA, G_CERT, G_CERT_KEY, G_TLS_NAME };
static const struct gopt {
    const char *name;
    bool arg;
} gopts[] = {
    [G_ADDR] = {"addr", true},   [G_KEY] = {"key", true},
    [G_JSON] = {"json", false},  [G_TLS] = {"tls", false},
    [G_CA] = {"ca", true},       [G_CERT] = {"cert", true},
    [G_CERT_KEY] = {"cert-key", true}, [G_TLS_NAME] = {"tls-name", true},
};

/* Command options (global ones are handled apart). */
enum {
    F_DESC = 1u << 0,
    F_ROLE = 1u << 1,
    F_PERM = 1u << 2,
    F_LEVEL = 1u << 3,
    F_NAME = 1u << 4,
    F_PORTAL = 1u << 5,
    F_NO_PORTAL = 1u << 6,
    F_API_TOKENS = 1u << 7,
    F_EXPIRES = 1u << 8,
    F_TENANT = 1u << 9,
    F_ACCOUNT = 1u << 10,
    F_LIMIT = 1u << 11,
    F_MAX_TOKENS = 1u << 12,
    F_MAX_ROLES = 1u << 13,
    F_MAX_KEYS = 1u << 14,
    F_CREATE_RATE = 1u << 15,
    F_CREATE_BURST = 1u << 16,
    F_USER = 1u << 17,
    F_GATEWAY = 1u << 18,
};

/* tenant set's limits, in tkc_limits order. */
#define F_LIMITS (F_MAX_TOKENS | F_MAX_ROLES | F_MAX_KEYS | F_CREATE_RATE | F_CREATE_BURST)
/* The scope a listing or a get names (the operator does; a user's key
 * implies its own). */
#define F_SCOPE (F_TENANT | F_ACCOUNT | F_USER)

static const struct flag {
    const char *name;
    unsigned bit;
    bool arg;
} flags[] = {
    {"description", F_DESC, true},
    {"role", F_ROLE, true},
    {"perm", F_PERM, true},
    {"level", F_LEVEL, true},
    {"name", F_NAME, true},
    {"portal", F_PORTAL, false},
    {"no-portal", F_NO_PORTAL, false},
    {"api-tokens", F_API_TOKENS, true},
    {"expires", F_EXPIRES, true},
    {"tenant", F_TENANT, true},
    {"account", F_ACCOUNT, true},
    {"user", F_USER, true},
    {"limit", F_LIMIT, true},
    {"max-tokens", F_MAX_TOKENS, true},
    {"max-roles", F_MAX_ROLES, true},
    {"max-keys", F_MAX_KEYS, true},
    {"create-rate", F_CREATE_RATE, true},
    {"create-burst", F_CREATE_BURST, true},
    {"gateway", F_GATEWAY, false},
};

typedef struct cli {
    const char *addr;
    const char *key_arg; /* as given: KEY or @FILE */
    char *key;           /* resolved key (owned, wiped) */
    bool json;
    bool tls;            /* --tls or TOKEND_TLS=1 */
    const char *ca, *cert, *cert_key, *tls_name; /* --ca, --cert, --cert-key, --tls-name */
    bool tls_flag_given; /* one of those four on the command line */
    unsigned given;
    const char *desc, *level, *name, *api_tokens, *expires, *tenant, *account, *user, *limit;
    const char *lim[5]; /* --max-tokens ... --create-burst, as given */
    tkc_limits lim_v;   /* their values: -1 unchanged, 0 none */
    const char *roles[MAX_LIST];
    size_t nroles;
    const char *perms[MAX_LIST];
    size_t nperms;
    const char *pos[MAX_POS];
    int npos;
    /* option values, checked before connecting (check_values) */
    bool api_on;
    uint32_t level_v, limit_v; /* limit 0: no limit */
    int64_t expires_v;         /* 0: never */
    int portal;                /* 0, 1 or TKC_UNCHANGED */
    const struct command *cmd;
    tkc *c;
} cli;

typedef int (*run_fn)(cli *o);
typedef struct rowkind rowkind;

typedef struct command {
    const char *group, *verb; /* verb NULL for one-word commands */
    int min_pos, max_pos;
    unsigned allowed, required;
    run_fn run;
    const char *usage;
    const rowkind *rows; /* what a list or show command prints, else NULL */
} command;

static const char *prog = "tokenctl";

/* ---- output helpers ----------------------------------------------------- */

static void errline(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errline(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int usage_error(const cli *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const cli *o, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (o && o->cmd)
        fprintf(stderr, "usage: tokenctl %s\n", o->cmd->usage);
    else
        fprintf(stderr, "usage: tokenctl [--addr HOST:PORT] [--key KEY|@FILE] [--json] COMMAND "
                        "... (tokenctl --help lists the commands)\n");
    return EXIT_USAGE;
}

/* Short names of server statuses, as a refusal line starts. */
static const char *status_name(int code)
{
    switch (code) {
    case TK_EINVAL: return "invalid";
    case TK_ENOTFOUND: return "not found";
    case TK_EEXIST: return "already exists";
    case TK_EDENIED: return "denied";
    case TK_EDISABLED: return "disabled";
    case TK_ELIMIT: return "limit";
    case TK_ECORRUPT: return "corrupt";
    case TK_EIO: return "server i/o error";
    case TK_EFENCED: return "fenced";
    case TK_ENOMEM: return "out of memory";
    case TK_EUNAUTH: return "unauthenticated";
    case TK_EPROTO: return "protocol error";
    case TK_EOPCODE: return "unknown operation";
    case TK_EBUSY: return "busy";
    case TK_ENOSPC: return "storage full";
    case TK_ERATE: return "rate limited";
    case TK_EREADONLY: return "read-only replica";
    default: return "refused";
    }
}

/* Reports a failed library call in one line and returns the exit code. */
static int report(const cli *o, int rc)
{
    if (tkc_refused(o->c)) {
        const char *msg = tkc_errmsg(o->c);
        const char *hint =
            rc == TK_EUNAUTH && !o->key ? " (no key given: use --key or TOKEND_KEY)" : "";
        /* The server's message, unless it only repeats the status's name. */
        if (msg[0] && strcasecmp(msg, status_name(rc)) && strcasecmp(msg, tk_strerror(rc)))
            errline("%s: %s%s", status_name(rc), msg, hint);
        else
            errline("%s%s", status_name(rc), hint);
        return EXIT_REFUSED;
    }
    errline("%s", tkc_errmsg(o->c)[0] ? tkc_errmsg(o->c) : tk_strerror(rc));
    return rc == TK_EINVAL ? EXIT_USAGE : EXIT_IO;
}

/* Prints v (consumed) as one line of JSON. */
static int print_json(json_t *v)
{
    if (!v) {
        errline("out of memory");
        return EXIT_IO;
    }
    char *s = json_dumps(v, JSON_ENCODE_ANY);
    json_decref(v);
    if (!s) {
        errline("out of memory");
        return EXIT_IO;
    }
    puts(s);
    sodium_memzero(s, strlen(s)); /* may hold a new secret */
    free(s);
    return 0;
}

static int print_ok(const cli *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int print_ok(const cli *o, const char *fmt, ...)
{
    if (o->json)
        return print_json(json_pack("{s:b}", "ok", 1));
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    return 0;
}

/* ISO-8601 UTC, "2025-01-31T12:00:00Z". */
static void iso_time(int64_t t, char out[32])
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (!gmtime_r(&tt, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, 32, "%" PRId64, t);
}

/* An expiry for JSON: null for never, else an ISO string. */
static json_t *json_expiry(int64_t t)
{
    char buf[32];
    if (t == 0)
        return json_null();
    iso_time(t, buf);
    return json_string(buf);
}

static json_t *json_strings(const char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

/* "a,b,c" or "(none)" into out. */
static void join(const char *const *v, size_t n, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    if (n == 0) {
        snprintf(out, cap, "(none)");
        return;
    }
    for (size_t i = 0; i < n && used < cap; i++) {
        int w = snprintf(out + used, cap - used, "%s%s", i ? "," : "", v[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* ---- argument values ---------------------------------------------------- */

/* --expires: Ns, Nm, Nh, Nd (from now), an absolute unix time, or "never". */
static int parse_expires(const char *s, int64_t *out)
{
    char *end;
    if (!strcmp(s, "never")) {
        *out = 0;
        return 0;
    }
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    if (*end == '\0') {
        if (v > INT64_MAX)
            return -1;
        *out = (int64_t)v;
        return 0;
    }
    uint64_t unit;
    switch (*end) {
    case 's': unit = 1; break;
    case 'm': unit = 60; break;
    case 'h': unit = 3600; break;
    case 'd': unit = 86400; break;
    default: return -1;
    }
    if (end[1] != '\0' || v == 0 || v > (uint64_t)INT32_MAX * 86400 / unit)
        return -1;
    *out = (int64_t)time(NULL) + (int64_t)(v * unit);
    return 0;
}

static int parse_u32(const char *s, uint32_t max, uint32_t *out)
{
    char *end;
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* Resolves --key / TOKEND_KEY: "@FILE" reads the first line of FILE. */
static int load_key(cli *o)
{
    const char *k = o->key_arg;
    if (!k || !*k)
        return 0;
    if (k[0] != '@') {
        o->key = strdup(k);
        return o->key ? 0 : usage_error(NULL, "out of memory");
    }
    FILE *f = fopen(k + 1, "r");
    if (!f) {
        errline("cannot read key file %s: %s", k + 1, strerror(errno));
        return EXIT_USAGE;
    }
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    n = strcspn(buf, "\r\n");
    while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    buf[n] = '\0';
    if (n == 0) {
        sodium_memzero(buf, sizeof buf);
        errline("key file %s is empty", k + 1);
        return EXIT_USAGE;
    }
    o->key = strdup(buf);
    sodium_memzero(buf, sizeof buf);
    if (!o->key) {
        errline("out of memory");
        return EXIT_IO;
    }
    return 0;
}

/* ---- commands ----------------------------------------------------------- */

static int cmd_ping(cli *o)
{
    uint32_t v = 0;
    int rc = tkc_ping(o->c, &v);
    if (rc)
        return report(o, rc);
    if (o->json)
        return print_json(json_pack("{s:b,s:I}", "ok", 1, "version", (json_int_t)v));
    printf("tokend at %s: protocol version %" PRIu32 "\n", o->addr, v);
    return 0;
}

static int cmd_tenant_create(cli *o)
{
    int rc = tkc_tenant_create(o->c, o->pos[0]);
    return rc ? report(o, rc) : print_ok(o, "tenant %s created", o->pos[0]);
}

static int cmd_tenant_set(cli *o)
{
    bool on = o->api_on;
    int api = o->api_tokens ? on : TKC_UNCHANGED;
    int rc = (o->given & F_LIMITS) ? tkc_tenant_limits(o->c, o->pos[0], api, &o->lim_v)
                                   : tkc_tenant_set(o->c, o->pos[0], on);
    if (rc)
        return report(o, rc);
    if (!(o->given & F_LIMITS))
        return print_ok(o, "tenant %s: api tokens %s", o->pos[0], on ? "on" : "off");
    char what[256] = "";
    const char *names[5] = {"max tokens", "max roles", "max keys", "create rate", "create burst"};
    const int64_t v[5] = {o->lim_v.max_tokens, o->lim_v.max_roles, o->lim_v.max_keys,
                          o->lim_v.create_rate, o->lim_v.create_burst};
    if (o->api_tokens)
        snprintf(what, sizeof what, ", api tokens %s", on ? "on" : "off");
    for (int i = 0; i < 5; i++) {
        if (v[i] < 0)
            continue;
        size_t n = strlen(what);
        if (v[i] == 0)
            snprintf(what + n, sizeof what - n, ", %s none", names[i]);
        else
            snprintf(what + n, sizeof what - n, ", %s %lld", names[i], (long long)v[i]);
    }
    return print_ok(o, "tenant %s:%s", o->pos[0], what + 1);
}

static int cmd_perm_put(cli *o)
{
    int rc = tkc_perm_put(o->c, o->pos[0], o->pos[1], o->desc);
    return rc ? report(o, rc) : print_ok(o, "permission %s saved in %s", o->pos[1], o->pos[0]);
}

static int cmd_role_put(cli *o)
{
    uint32_t level = o->level_v;
    char perms[4096];
    int rc = tkc_role_put(o->c, o->pos[0], o->pos[1], o->name, level, o->perms, o->nperms);
    if (rc)
        return report(o, rc);
    join(o->perms, o->nperms, perms, sizeof perms);
    return print_ok(o, "role %s saved in %s: level %" PRIu32 ", permissions %s", o->pos[1],
                    o->pos[0], level, perms);
}

static int cmd_role_delete(cli *o)
{
    int rc = tkc_role_delete(o->c, o->pos[0], o->pos[1]);
    return rc ? report(o, rc) : print_ok(o, "role %s deleted from %s", o->pos[1], o->pos[0]);
}

static int cmd_account_create(cli *o)
{
    int rc = tkc_account_create(o->c, o->pos[0], o->pos[1]);
    return rc ? report(o, rc) : print_ok(o, "account %s created in %s", o->pos[1], o->pos[0]);
}

/* Prints a new personal key (user create, key create). */
static int print_key(const cli *o, const char *user, const tkc_key *k, const char *what)
{
    if (o->json)
        return print_json(
            json_pack("{s:s,s:s}", "key_id", k->key_id, "personal_key", k->personal_key));
    printf("%s (key id %s)\n", what, k->key_id);
    printf("%s's personal key (shown once, store it now):\n%s\n", user, k->personal_key);
    return 0;
}

static int cmd_user_create(cli *o)
{
    tkc_key k;
    char what[256];
    int rc = tkc_user_create(o->c, o->pos[0], o->pos[1], o->pos[2], o->roles, o->nroles,
                             (o->given & F_PORTAL) != 0, &k);
    if (rc)
        return report(o, rc);
    snprintf(what, sizeof what, "user %s created in %s/%s", o->pos[2], o->pos[0], o->pos[1]);
    rc = print_key(o, o->pos[2], &k, what);
    sodium_memzero(&k, sizeof k);
    return rc;
}

static int cmd_user_set(cli *o)
{
    int rc = tkc_user_set(o->c, o->pos[0], o->pos[1], o->pos[2],
                          (o->given & F_ROLE) ? o->roles : NULL, o->nroles, o->portal);
    return rc ? report(o, rc) : print_ok(o, "user %s updated", o->pos[2]);
}

static int cmd_key_create(cli *o)
{
    tkc_key k;
    char what[256];
    int rc = tkc_key_create(o->c, o->pos[0], o->pos[1], o->pos[2], o->expires_v, &k);
    if (rc)
        return report(o, rc);
    snprintf(what, sizeof what, "personal key created for %s/%s/%s", o->pos[0], o->pos[1],
             o->pos[2]);
    rc = print_key(o, o->pos[2], &k, what);
    sodium_memzero(&k, sizeof k);
    return rc;
}

static int cmd_key_delete(cli *o)
{
    int rc = tkc_key_delete(o->c, o->pos[0]);
    return rc ? report(o, rc) : print_ok(o, "personal key %s deleted", o->pos[0]);
}

static int cmd_token_create(cli *o)
{
    tkc_new_token t;
    int rc = tkc_token_create(o->c, o->desc, o->roles, o->nroles, o->expires_v, &t);
    if (rc)
        return report(o, rc);
    if (o->json) {
        rc = print_json(json_pack("{s:s,s:s,s:o}", "client_id", t.client_id, "secret", t.secret,
                                  "expires_at", json_expiry(t.expires_at)));
    } else {
        char when[32];
        if (t.expires_at)
            iso_time(t.expires_at, when);
        else
            snprintf(when, sizeof when, "never");
        printf("token created, expires %s\nclient ID: %s\n"
               "secret (shown once, store it now):\n%s\n",
               when, t.client_id, t.secret);
    }
    sodium_memzero(&t, sizeof t);
    return rc;
}

static int cmd_token_delete(cli *o)
{
    int rc = tkc_token_delete(o->c, o->pos[0]);
    return rc ? report(o, rc) : print_ok(o, "token %s deleted", o->pos[0]);
}

static int cmd_token_set(cli *o)
{
    int rc = tkc_token_set(o->c, o->pos[0], o->desc);
    return rc ? report(o, rc) : print_ok(o, "token %s updated", o->pos[0]);
}

/* ---- the keyring (the operator's; docs/server.md, "The keyring") ------- */

/* Prints the new key once, on the last line (as user create does). */
static int cmd_keyring_add(cli *o)
{
    char key[TKC_RING_KEY_LEN + 1];
    bool gw = (o->given & F_GATEWAY) != 0;
    int rc = tkc_keyring_add(o->c, o->pos[0], gw, key);
    if (rc)
        return report(o, rc);
    if (o->json) {
        rc = print_json(json_pack("{s:s,s:s}", "name", o->pos[0], "key", key));
    } else {
        printf("%s key %s added to the keyring\nits key (shown once, store it now):\n%s\n",
               gw ? "gateway" : "operator", o->pos[0], key);
    }
    sodium_memzero(key, sizeof key);
    return rc;
}

static int cmd_keyring_remove(cli *o)
{
    int rc = tkc_keyring_remove(o->c, o->pos[0]);
    return rc ? report(o, rc) : print_ok(o, "key %s removed from the keyring", o->pos[0]);
}

/* ---- deletes (the operator; irreversible, no prompt: scripts run them) --- */

static int cmd_tenant_delete(cli *o)
{
    int rc = tkc_tenant_delete(o->c, o->pos[0]);
    return rc ? report(o, rc) : print_ok(o, "tenant %s deleted", o->pos[0]);
}

static int cmd_perm_delete(cli *o)
{
    int rc = tkc_perm_delete(o->c, o->pos[0], o->pos[1]);
    return rc ? report(o, rc) : print_ok(o, "permission %s deleted from %s", o->pos[1], o->pos[0]);
}

static int cmd_account_delete(cli *o)
{
    int rc = tkc_account_delete(o->c, o->pos[0], o->pos[1]);
    return rc ? report(o, rc) : print_ok(o, "account %s deleted from %s", o->pos[1], o->pos[0]);
}

static int cmd_user_delete(cli *o)
{
    int rc = tkc_user_delete(o->c, o->pos[0], o->pos[1], o->pos[2]);
    return rc ? report(o, rc)
              : print_ok(o, "user %s deleted from %s/%s", o->pos[2], o->pos[0], o->pos[1]);
}

/* ---- listings and gets ---------------------------------------------------
 *
 * Every listing and get prints rows of one kind, described once by a table
 * of its fields: the protocol's name (the JSON key, as in docs/protocol.md),
 * the column heading (lowercased, a get's "label: value" line), the column
 * width, and how the value is held and written. One printer serves every
 * kind: columns for a listing (all its pages, or --limit N rows), label
 * lines for a get, and with --json an array of objects or one object. */

typedef enum fkind {
    FK_ARR,    /* char array in the row */
    FK_STR,    /* const char * */
    FK_STRS,   /* const char *[], its uint32_t count at aux; "(none)" when empty */
    FK_UINT,   /* uint32_t */
    FK_LIMIT,  /* uint32_t, 0 = no limit ("none"; 0 in JSON, as the protocol says) */
    FK_ONOFF,  /* bool, "on"/"off" */
    FK_YESNO,  /* bool, "yes"/"no" */
    FK_TIME,   /* int64_t unix seconds; ISO-8601 */
    FK_EXPIRY, /* the same, 0 = never ("never"; null in JSON) */
    FK_SINCE,  /* the same, 0 = not known ("-"; null in JSON): the keyring's "initial" */
} fkind;

typedef struct field {
    const char *json;  /* the protocol's field name */
    const char *label; /* column heading */
    int width;         /* column width (0: the last column) */
    fkind kind;
    size_t off, aux; /* where in the row; FK_STRS: where its count is */
} field;

/* Any page: one of these is filled per run (zeroed first). */
typedef union page {
    tkc_token_page tokens;
    tkc_tenant_page tenants;
    tkc_perm_page perms;
    tkc_role_page roles;
    tkc_account_page accounts;
    tkc_user_page users;
    tkc_key_page keys;
    tkc_ring_page ring;
} page;

/* A page seen whole: n rows, each rowkind.size bytes, borrowed from it. */
typedef struct rows {
    size_t n;
    const void *rows;
    bool more;
    const char *next;
} rows;

#define ROWS(p, r) ((rows){(p)->n, (p)->r, (p)->more, (p)->next})

struct rowkind {
    const char *none; /* what an empty listing prints */
    const field *fields;
    size_t nfields;
    const uint8_t *order; /* the columns, as indexes into fields; NULL: fields' order */
    size_t size;          /* of one row */
    int (*list)(cli *o, page *p, const char *after, uint32_t limit, rows *v);
    int (*get)(cli *o, page *p, rows *v);
    void (*release)(page *p);
};

#define NF(a) (sizeof a / sizeof a[0])
#define AT(type, member) offsetof(type, member)

static const field token_fields[] = {
    {"client_id", "CLIENT ID", 36, FK_ARR, AT(tkc_token, client_id), 0},
    {"description", "DESCRIPTION", 0, FK_STR, AT(tkc_token, description), 0},
    {"roles", "ROLES", 16, FK_STRS, AT(tkc_token, roles), AT(tkc_token, nroles)},
    {"created_by", "CREATED BY", 12, FK_ARR, AT(tkc_token, created_by), 0},
    {"created_at", "CREATED", 20, FK_TIME, AT(tkc_token, created_at), 0},
    {"expires_at", "EXPIRES", 20, FK_EXPIRY, AT(tkc_token, expires_at), 0},
};
static const uint8_t token_order[] = {0, 4, 5, 3, 2, 1};

static const field tenant_fields[] = {
    {"tenant", "TENANT", 16, FK_ARR, AT(tkc_tenant, tenant), 0},
    {"api_tokens", "API TOKENS", 10, FK_ONOFF, AT(tkc_tenant, api_tokens), 0},
    {"max_tokens", "MAX TOKENS", 10, FK_LIMIT, AT(tkc_tenant, max_tokens), 0},
    {"max_roles", "MAX ROLES", 9, FK_LIMIT, AT(tkc_tenant, max_roles), 0},
    {"max_keys", "MAX KEYS", 8, FK_LIMIT, AT(tkc_tenant, max_keys), 0},
    {"create_rate", "CREATE RATE", 11, FK_LIMIT, AT(tkc_tenant, create_rate), 0},
    {"create_burst", "CREATE BURST", 12, FK_UINT, AT(tkc_tenant, create_burst), 0},
    {"role_count", "ROLES", 5, FK_UINT, AT(tkc_tenant, role_count), 0},
    {"permission_count", "PERMISSIONS", 0, FK_UINT, AT(tkc_tenant, permission_count), 0},
};

static const field perm_fields[] = {
    {"key", "KEY", 24, FK_STR, AT(tkc_perm, key), 0},
    {"description", "DESCRIPTION", 0, FK_STR, AT(tkc_perm, description), 0},
};

static const field role_fields[] = {
    {"key", "KEY", 16, FK_STR, AT(tkc_role, key), 0},
    {"name", "NAME", 16, FK_STR, AT(tkc_role, name), 0},
    {"level", "LEVEL", 5, FK_UINT, AT(tkc_role, level), 0},
    {"permissions", "PERMISSIONS", 0, FK_STRS, AT(tkc_role, perms), AT(tkc_role, nperms)},
};

static const field account_fields[] = {
    {"account", "ACCOUNT", 16, FK_ARR, AT(tkc_account, account), 0},
    {"token_count", "TOKENS", 0, FK_UINT, AT(tkc_account, token_count), 0},
};

static const field user_fields[] = {
    {"user", "USER", 16, FK_ARR, AT(tkc_user, user), 0},
    {"roles", "ROLES", 16, FK_STRS, AT(tkc_user, roles), AT(tkc_user, nroles)},
    {"portal", "PORTAL", 6, FK_YESNO, AT(tkc_user, portal), 0},
    {"key_count", "KEYS", 0, FK_UINT, AT(tkc_user, key_count), 0},
};

static const field key_fields[] = {
    {"key_id", "KEY ID", 36, FK_ARR, AT(tkc_key_info, key_id), 0},
    {"created_at", "CREATED", 20, FK_TIME, AT(tkc_key_info, created_at), 0},
    {"expires_at", "EXPIRES", 0, FK_EXPIRY, AT(tkc_key_info, expires_at), 0},
};

static const field ring_fields[] = {
    {"name", "NAME", 24, FK_ARR, AT(tkc_ring, name), 0},
    {"gateway", "GATEWAY", 7, FK_YESNO, AT(tkc_ring, gateway), 0},
    {"created_at", "CREATED", 0, FK_SINCE, AT(tkc_ring, created_at), 0},
};

/* The calls behind each kind: the scope is the options' (NULL when not
 * given: a user's own), the rest is the positionals'. */
static int tokens_list(cli *o, page *p, const char *after, uint32_t limit, rows *v)
{
    int rc = tkc_token_list(o->c, o->tenant, o->account, after, limit, &p->tokens);
    *v = ROWS(&p->tokens, tokens);
    return rc;
}
static int token_get(cli *o, page *p, rows *v)
{
    int rc = tkc_token_get(o->c, o->pos[0], &p->tokens);
    *v = ROWS(&p->tokens, tokens);
    return rc;
}
static void tokens_free(page *p)
{
    tkc_token_page_free(&p->tokens);
}

static int tenants_list(cli *o, page *p, const char *after, uint32_t limit, rows *v)
{
    int rc = tkc_tenant_list(o->c, after, limit, &p->tenants);
    *v = ROWS(&p->tenants, tenants);
    return rc;
}
static int tenant_get(cli *o, page *p, rows *v)
{
    int rc = tkc_tenant_get(o->c, o->npos ? o->pos[0] : NULL, &p->tenants);
    *v = ROWS(&p->tenants, tenants);
    return rc;
}
static void tenants_free(page *p)
{
    tkc_tenant_page_free(&p->tenants);
}

static int perms_list(cli *o, page *p, const char *after, uint32_t limit, rows *v)
{
    int rc = tkc_perm_list(o->c, o->tenant, after, limit, &p->perms);
    *v = ROWS(&p->perms, perms);
    return rc;
}
static void perms_free(page *p)
{
    tkc_perm_page_free(&p->perms);
}

static int roles_list(cli *o, page *p, const char *after, uint32_t limit, rows *v)
{
    int rc = tkc_role_list(o->c, o->tenant, after, limit, &p->roles);
    *v = ROWS(&p->roles, roles);
    return rc;
}
static void roles_free(page *p)
{
    tkc_role_page_free(&p->roles);
}

static int accounts_list(cli *o, page *p, const char *after, uint32_t limit, rows *v)
{
    int rc = tkc_account_list(o->c, o->tenant, after, limit, &p->accounts);
    *v = ROWS(&p->accounts, accounts);
    return rc;
}
static void accounts_free(page *p)
{
    tkc_account_page_free(&p->accounts);
}

static int users_list(cli *o, page *p, const char *after, uint32_t limit, rows *v)
{
    int rc = tkc_user_list(o->c, o->tenant, o->account, after, limit, &p->users);
    *v = ROWS(&p->users, users);
    return rc;
}
static int user_get(cli *o, page *p, rows *v)
{
    int rc = tkc_user_get(o->c, o->tenant, o->account, o->pos[0], &p->users);
    *v = ROWS(&p->users, users);
    return rc;
}
static void users_free(page *p)
{
    tkc_user_page_free(&p->users);
}

static int keys_list(cli *o, page *p, const char *after, uint32_t limit, rows *v)
{
    int rc = tkc_key_list(o->c, o->tenant, o->account, o->user, after, limit, &p->keys);
    *v = ROWS(&p->keys, keys);
    return rc;
}
static void keys_free(page *p)
{
    tkc_key_page_free(&p->keys);
}

static int ring_list(cli *o, page *p, const char *after, uint32_t limit, rows *v)
{
    int rc = tkc_keyring_list(o->c, after, limit, &p->ring);
    *v = ROWS(&p->ring, keyring);
    return rc;
}
static void ring_free(page *p)
{
    tkc_ring_page_free(&p->ring);
}

#define KIND(none, f, order, type, list, get, release)                                             \
    {                                                                                              \
        none, f, NF(f), order, sizeof(type), list, get, release                                    \
    }

static const rowkind token_rows =
    KIND("no tokens", token_fields, token_order, tkc_token, tokens_list, token_get, tokens_free);
static const rowkind tenant_rows =
    KIND("no tenants", tenant_fields, NULL, tkc_tenant, tenants_list, tenant_get, tenants_free);
static const rowkind perm_rows =
    KIND("no permissions", perm_fields, NULL, tkc_perm, perms_list, NULL, perms_free);
static const rowkind role_rows =
    KIND("no roles", role_fields, NULL, tkc_role, roles_list, NULL, roles_free);
static const rowkind account_rows =
    KIND("no accounts", account_fields, NULL, tkc_account, accounts_list, NULL, accounts_free);
static const rowkind user_rows =
    KIND("no users", user_fields, NULL, tkc_user, users_list, user_get, users_free);
static const rowkind key_rows =
    KIND("no keys", key_fields, NULL, tkc_key_info, keys_list, NULL, keys_free);
static const rowkind ring_rows =
    KIND("no keys on the keyring", ring_fields, NULL, tkc_ring, ring_list, NULL, ring_free);

/* A field's value in row, as text: in buf, or a string of the row's. */
static const char *field_text(const field *f, const char *row, char *buf, size_t cap)
{
    const char *at = row + f->off;
    int64_t t;
    uint32_t u;
    switch (f->kind) {
    case FK_ARR: return at;
    case FK_STR: return *(const char *const *)at;
    case FK_STRS:
        memcpy(&u, row + f->aux, sizeof u);
        join((const char *const *)at, u, buf, cap);
        return buf;
    case FK_UINT:
    case FK_LIMIT:
        memcpy(&u, at, sizeof u);
        if (f->kind == FK_LIMIT && u == 0)
            return "none";
        snprintf(buf, cap, "%" PRIu32, u);
        return buf;
    case FK_ONOFF: return *(const bool *)at ? "on" : "off";
    case FK_YESNO: return *(const bool *)at ? "yes" : "no";
    case FK_TIME:
    case FK_EXPIRY:
    case FK_SINCE:
        memcpy(&t, at, sizeof t);
        if (f->kind == FK_EXPIRY && t == 0)
            return "never";
        if (f->kind == FK_SINCE && t == 0)
            return "-";
        iso_time(t, buf); /* cap >= 32 */
        return buf;
    }
    return "";
}

/* A field's value in JSON: numbers, booleans and lists as such, the rest
 * as its text (an expiry of never is null). */
static json_t *field_json(const field *f, const char *row)
{
    const char *at = row + f->off;
    char buf[32];
    int64_t t;
    uint32_t u;
    switch (f->kind) {
    case FK_STRS:
        memcpy(&u, row + f->aux, sizeof u);
        return json_strings((const char *const *)at, u);
    case FK_UINT:
    case FK_LIMIT: memcpy(&u, at, sizeof u); return json_integer((json_int_t)u);
    case FK_ONOFF:
    case FK_YESNO: return json_boolean(*(const bool *)at);
    case FK_EXPIRY:
    case FK_SINCE:
        memcpy(&t, at, sizeof t);
        if (t == 0)
            return json_null();
        break;
    default: break;
    }
    return json_string(field_text(f, row, buf, sizeof buf));
}

/* One row as a JSON object, its keys in the protocol's order. */
static json_t *row_json(const rowkind *k, const void *row)
{
    json_t *obj = json_object();
    for (size_t i = 0; obj && i < k->nfields; i++)
        json_object_set_new(obj, k->fields[i].json, field_json(&k->fields[i], row));
    return obj;
}

/* Room for any value as text: a role's 256 permissions is the longest. */
static char textbuf[TK_MAX_ROLE_PERMS * (TK_KEY_MAX + 1) + 1];

/* One line of columns: the headings (row NULL) or a row's values. */
static void row_line(const rowkind *k, const void *row)
{
    for (size_t i = 0; i < k->nfields; i++) {
        const field *f = &k->fields[k->order ? k->order[i] : i];
        const char *s = row ? field_text(f, row, textbuf, sizeof textbuf) : f->label;
        if (i + 1 < k->nfields)
            printf("%-*s  ", f->width, s);
        else
            printf("%s\n", s);
    }
}

/* Lists every row (all pages) or --limit N of them. */
static int cmd_list(cli *o)
{
    const rowkind *k = o->cmd->rows;
    page pg;
    rows v;
    char after[TKC_CURSOR_MAX + 1] = "";
    uint32_t limit = o->limit_v; /* 0: everything */
    uint64_t shown = 0;
    json_t *arr = NULL;
    int ret = 0;

    memset(&pg, 0, sizeof pg); /* TKC_PAGE_INIT, whichever member */
    if (o->json && !(arr = json_array()))
        return print_json(NULL);
    for (;;) {
        uint32_t want = TKC_LIST_MAX;
        if (limit && limit - shown < want)
            want = (uint32_t)(limit - shown);
        int rc = k->list(o, &pg, after[0] ? after : NULL, want, &v);
        if (rc) {
            ret = report(o, rc);
            goto done;
        }
        for (size_t i = 0; i < v.n; i++) {
            const char *row = (const char *)v.rows + i * k->size;
            if (arr) {
                json_array_append_new(arr, row_json(k, row));
            } else {
                if (shown == 0)
                    row_line(k, NULL);
                row_line(k, row);
            }
            shown++;
        }
        if (!v.more || v.n == 0 || (limit && shown >= limit))
            break;
        snprintf(after, sizeof after, "%s", v.next);
    }
    if (arr) {
        ret = print_json(arr);
        arr = NULL;
    } else if (shown == 0) {
        printf("%s\n", k->none);
    }
done:
    json_decref(arr);
    k->release(&pg);
    return ret;
}

/* Shows one row: "label: value" lines in the protocol's order (the
 * headings lowercased), or one JSON object. */
static int cmd_show(cli *o)
{
    const rowkind *k = o->cmd->rows;
    page pg;
    rows v;
    int ret = 0;

    memset(&pg, 0, sizeof pg);
    int rc = k->get(o, &pg, &v);
    if (rc) {
        ret = report(o, rc);
    } else if (v.n != 1) {
        errline("malformed reply: %zu rows for one", v.n);
        ret = EXIT_IO;
    } else if (o->json) {
        ret = print_json(row_json(k, v.rows));
    } else {
        int w = 0;
        for (size_t i = 0; i < k->nfields; i++)
            if ((int)strlen(k->fields[i].label) > w)
                w = (int)strlen(k->fields[i].label);
        for (size_t i = 0; i < k->nfields; i++) {
            const field *f = &k->fields[i];
            char label[32];
            size_t n = strlen(f->label);
            for (size_t j = 0; j <= n && j < sizeof label; j++)
                label[j] = (char)tolower((unsigned char)f->label[j]);
            printf("%s:%*s%s\n", label, w + 2 - (int)n, "",
                   field_text(f, v.rows, textbuf, sizeof textbuf));
        }
    }
    k->release(&pg);
    return ret;
}

static int cmd_verify(cli *o)
{
    tkc_verify_res res = TKC_VERIFY_RES_INIT;
    const char *id = o->npos == 2 ? o->pos[0] : NULL;
    const char *secret = o->pos[o->npos - 1];
    int ret;

    int rc = tkc_verify(o->c, secret, id, &res);
    if (rc) {
        ret = report(o, rc);
        goto done;
    }
    if (o->json) {
        bool v = res.valid;
        ret = print_json(json_pack(
            "{s:b,s:s,s:o,s:o,s:o,s:o,s:o,s:o}", "valid", v, "reason", res.reason, "client_id",
            v ? json_string(res.client_id) : json_null(), "tenant",
            v ? json_string(res.tenant) : json_null(), "account",
            v ? json_string(res.account) : json_null(), "roles",
            json_strings(res.roles, res.nroles), "permissions", json_strings(res.perms, res.nperms),
            "expires_at", json_expiry(res.expires_at)));
    } else if (res.valid) {
        static char roles[4096], perms[TK_MAX_TENANT_PERMS * (TK_KEY_MAX + 1)];
        join(res.roles, res.nroles, roles, sizeof roles);
        join(res.perms, res.nperms, perms, sizeof perms);
        printf("valid: tenant %s, account %s, roles %s, permissions %s", res.tenant, res.account,
               roles, perms);
        if (res.expires_at) {
            char when[32];
            iso_time(res.expires_at, when);
            printf(", expires %s", when);
        }
        putchar('\n');
        ret = 0;
    } else {
        printf("invalid: %s\n", res.reason);
        ret = 0;
    }
    if (ret == 0 && !res.valid)
        ret = EXIT_INVALID;
done:
    tkc_verify_res_free(&res);
    return ret;
}

/* ---- the command table -------------------------------------------------- */

static const command commands[] = {
    {"tenant", "create", 1, 1, 0, 0, cmd_tenant_create, "tenant create TENANT", NULL},
    {"tenant", "set", 1, 1, F_API_TOKENS | F_LIMITS, 0, cmd_tenant_set,
     "tenant set TENANT [--api-tokens on|off] [--max-tokens N|none] [--max-roles N|none] "
     "[--max-keys N|none] [--create-rate N|none] [--create-burst N]",
     NULL},
    {"tenant", "list", 0, 0, F_LIMIT, 0, cmd_list, "tenant list [--limit N]", &tenant_rows},
    {"tenant", "show", 0, 1, 0, 0, cmd_show, "tenant show [TENANT]", &tenant_rows},
    {"tenant", "delete", 1, 1, 0, 0, cmd_tenant_delete, "tenant delete TENANT", NULL},
    {"perm", "put", 2, 2, F_DESC, 0, cmd_perm_put, "perm put TENANT KEY [--description TEXT]",
     NULL},
    {"perm", "list", 0, 0, F_TENANT | F_LIMIT, 0, cmd_list,
     "perm list [--tenant TENANT] [--limit N]", &perm_rows},
    {"perm", "delete", 2, 2, 0, 0, cmd_perm_delete, "perm delete TENANT KEY", NULL},
    {"role", "put", 2, 2, F_LEVEL | F_PERM | F_NAME, F_LEVEL, cmd_role_put,
     "role put TENANT KEY --level N [--perm PERM]... [--name NAME]", NULL},
    {"role", "list", 0, 0, F_TENANT | F_LIMIT, 0, cmd_list,
     "role list [--tenant TENANT] [--limit N]", &role_rows},
    {"role", "delete", 2, 2, 0, 0, cmd_role_delete, "role delete TENANT KEY", NULL},
    {"account", "create", 2, 2, 0, 0, cmd_account_create, "account create TENANT ACCOUNT", NULL},
    {"account", "list", 0, 0, F_TENANT | F_LIMIT, F_TENANT, cmd_list,
     "account list --tenant TENANT [--limit N]", &account_rows},
    {"account", "delete", 2, 2, 0, 0, cmd_account_delete, "account delete TENANT ACCOUNT", NULL},
    {"user", "create", 3, 3, F_ROLE | F_PORTAL, 0, cmd_user_create,
     "user create TENANT ACCOUNT USER [--role ROLE]... [--portal]", NULL},
    {"user", "set", 3, 3, F_ROLE | F_PORTAL | F_NO_PORTAL, 0, cmd_user_set,
     "user set TENANT ACCOUNT USER [--role ROLE]... [--portal|--no-portal]", NULL},
    {"user", "list", 0, 0, F_TENANT | F_ACCOUNT | F_LIMIT, 0, cmd_list,
     "user list [--tenant TENANT --account ACCOUNT] [--limit N]", &user_rows},
    {"user", "show", 1, 1, F_TENANT | F_ACCOUNT, 0, cmd_show,
     "user show USER [--tenant TENANT --account ACCOUNT]", &user_rows},
    {"user", "delete", 3, 3, 0, 0, cmd_user_delete, "user delete TENANT ACCOUNT USER", NULL},
    {"key", "create", 3, 3, F_EXPIRES, 0, cmd_key_create,
     "key create TENANT ACCOUNT USER [--expires WHEN]", NULL},
    {"key", "list", 0, 0, F_SCOPE | F_LIMIT, 0, cmd_list,
     "key list [--tenant TENANT --account ACCOUNT --user USER] [--limit N]", &key_rows},
    {"key", "delete", 1, 1, 0, 0, cmd_key_delete, "key delete KEY_ID", NULL},
    {"token", "create", 0, 0, F_DESC | F_ROLE | F_EXPIRES, F_ROLE, cmd_token_create,
     "token create --role ROLE... [--description TEXT] [--expires WHEN]", NULL},
    {"token", "list", 0, 0, F_TENANT | F_ACCOUNT | F_LIMIT, 0, cmd_list,
     "token list [--tenant TENANT --account ACCOUNT] [--limit N]", &token_rows},
    {"token", "show", 1, 1, 0, 0, cmd_show, "token show CLIENT_ID", &token_rows},
    {"token", "set", 1, 1, F_DESC, F_DESC, cmd_token_set, "token set CLIENT_ID --description TEXT",
     NULL},
    {"token", "delete", 1, 1, 0, 0, cmd_token_delete, "token delete CLIENT_ID", NULL},
    {"keyring", "add", 1, 1, F_GATEWAY, 0, cmd_keyring_add, "keyring add NAME [--gateway]", NULL},
    {"keyring", "list", 0, 0, F_LIMIT, 0, cmd_list, "keyring list [--limit N]", &ring_rows},
    {"keyring", "remove", 1, 1, 0, 0, cmd_keyring_remove, "keyring remove NAME", NULL},
    {"verify", NULL, 1, 2, 0, 0, cmd_verify, "verify [CLIENT_ID] SECRET", NULL},
    {"ping", NULL, 0, 0, 0, 0, cmd_ping, "ping", NULL},
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void help(void)
{
    printf("usage: tokenctl [--addr HOST:PORT] [--key KEY|@FILE] [--json] COMMAND ...\n"
           "\n"
           "Global options (anywhere on the line):\n"
           "  --addr HOST:PORT  server address (env TOKEND_ADDR; default %s;\n"
           "                    IPv6 as [::1]:7070)\n"
           "  --key KEY|@FILE   operator key, personal key or gateway key, or @FILE to read it\n"
           "                    from a file (env TOKEND_KEY), e.g. --key @var/operator.key\n"
           "  --json            machine-readable output on stdout\n"
           "  --tls             speak TLS (env TOKEND_TLS=1): the server's certificate must\n"
           "                    chain to the CA of --ca and name the host of --addr\n"
           "  --ca FILE         the CA certificate(s) to trust, PEM (env TOKEND_CA; default:\n"
           "                    the system's)\n"
           "  --cert FILE       a client certificate, PEM, for a server that requires one\n"
           "                    (env TOKEND_CERT), with\n"
           "  --cert-key FILE   its private key, PEM, mode 0600 (env TOKEND_CERT_KEY)\n"
           "  --tls-name NAME   the name the server's certificate must carry (default: the\n"
           "                    host of --addr)\n"
           "  --help            this text\n"
           "\n"
           "Commands:\n",
           TKC_DEFAULT_ADDR);
    for (size_t i = 0; i < NCOMMANDS; i++)
        printf("  tokenctl %s\n", commands[i].usage);
    printf("\n"
           "WHEN (--expires): Ns, Nm, Nh or Nd from now (e.g. 30d), an absolute unix time,\n"
           "or never. Every list shows all its rows (following the server's pages), or at\n"
           "most N with --limit N. The operator names the scope of a list or of user show\n"
           "with --tenant/--account/--user; a personal key implies its own. Deletes are\n"
           "irreversible and ask nothing.\n"
           "\n"
           "Exit codes:\n"
           "  0  success\n"
           "  1  verify: the token is not valid\n"
           "  2  bad usage (unknown command or option, missing argument, unreadable key file)\n"
           "  3  the server refused (denied, not found, already exists, disabled, invalid,\n"
           "     unauthenticated, ...)\n"
           "  4  cannot connect, I/O error, timeout or malformed reply\n"
           "\n"
           "See docs/tokenctl.md.\n");
}

static const struct flag *find_flag(const char *name, size_t n)
{
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (strlen(flags[i].name) == n && !memcmp(flags[i].name, name, n))
            return &flags[i];
    return NULL;
}

static void set_flag(cli *o, const struct flag *f, const char *v)
{
    switch (f->bit) {
    case F_DESC: o->desc = v; break;
    case F_LEVEL: o->level = v; break;
    case F_NAME: o->name = v; break;
    case F_API_TOKENS: o->api_tokens = v; break;
    case F_EXPIRES: o->expires = v; break;
    case F_TENANT: o->tenant = v; break;
    case F_ACCOUNT: o->account = v; break;
    case F_USER: o->user = v; break;
    case F_LIMIT: o->limit = v; break;
    case F_MAX_TOKENS: o->lim[0] = v; break;
    case F_MAX_ROLES: o->lim[1] = v; break;
    case F_MAX_KEYS: o->lim[2] = v; break;
    case F_CREATE_RATE: o->lim[3] = v; break;
    case F_CREATE_BURST: o->lim[4] = v; break;
    case F_ROLE: o->roles[o->nroles++] = v; break;
    case F_PERM: o->perms[o->nperms++] = v; break;
    default: break;
    }
    o->given |= f->bit;
}

/* Parses argv into o: options anywhere, "--" ends them. Returns 0, -1 for
 * --help, or an exit code. Positionals beyond MAX_POS are counted as errors
 * after the command is known. */
static int parse(cli *o, int argc, char **argv, const char **words, int *nwords)
{
    bool opts_done = false;
    *nwords = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (opts_done || a[0] != '-' || a[1] != '-' || a[2] == '\0') {
            if (!opts_done && !strcmp(a, "--")) {
                opts_done = true;
                continue;
            }
            if (a[0] == '-' && a[1] != '\0' && !opts_done)
                return usage_error(NULL, "unknown option %s", a);
            if (*nwords >= MAX_POS + 2)
                return usage_error(NULL, "too many arguments");
            words[(*nwords)++] = a;
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        const char *val = eq ? eq + 1 : NULL;
        bool takes = true;
        const struct flag *f = NULL;
        int g = -1;
        if (n == 4 && !memcmp(name, "help", 4))
            return -1;
        for (int k = 0; k < (int)(sizeof gopts / sizeof gopts[0]); k++)
            if (strlen(gopts[k].name) == n && !memcmp(gopts[k].name, name, n))
                g = k;
        if (g >= 0) {
            takes = gopts[g].arg;
        } else {
            f = find_flag(name, n);
            if (!f)
                return usage_error(NULL, "unknown option --%.*s", (int)n, name);
            takes = f->arg;
        }
        if (!takes && val)
            return usage_error(NULL, "option --%.*s takes no value", (int)n, name);
        if (takes && !val) {
            if (i + 1 >= argc)
                return usage_error(NULL, "option --%.*s needs a value", (int)n, name);
            val = argv[++i];
        }
        if (!f) {
            switch (g) {
            case G_ADDR: o->addr = val; break;
            case G_KEY: o->key_arg = val; break;
            case G_JSON: o->json = true; break;
            case G_TLS: o->tls = true; break;
            case G_CA: o->ca = val; break;
            case G_CERT: o->cert = val; break;
            case G_CERT_KEY: o->cert_key = val; break;
            default: o->tls_name = val; break;
            }
            o->tls_flag_given |= g == G_CA || g == G_CERT || g == G_CERT_KEY || g == G_TLS_NAME;
        } else {
            if ((f->bit == F_ROLE && o->nroles >= MAX_LIST) ||
                (f->bit == F_PERM && o->nperms >= MAX_LIST))
                return usage_error(NULL, "too many --%s options", f->name);
            set_flag(o, f, val);
        }
    }
    return 0;
}

/* Finds the command named by words; sets o->cmd and o->pos. */
static int pick_command(cli *o, const char **words, int nwords)
{
    if (nwords == 0)
        return usage_error(NULL, "no command given");
    const command *group = NULL;
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const command *c = &commands[i];
        if (strcmp(c->group, words[0]))
            continue;
        group = c;
        if (!c->verb || (nwords > 1 && !strcmp(c->verb, words[1]))) {
            o->cmd = c;
            break;
        }
    }
    if (!o->cmd) {
        if (!group)
            return usage_error(NULL, "unknown command \"%s\"", words[0]);
        fprintf(stderr, "%s: %s \"%s %s\"\n", prog,
                nwords > 1 ? "unknown command" : "missing subcommand in", words[0],
                nwords > 1 ? words[1] : "...");
        for (size_t i = 0; i < NCOMMANDS; i++)
            if (!strcmp(commands[i].group, words[0]))
                fprintf(stderr, "usage: tokenctl %s\n", commands[i].usage);
        return EXIT_USAGE;
    }
    int skip = o->cmd->verb ? 2 : 1;
    int np = nwords - skip;
    if (np < o->cmd->min_pos)
        return usage_error(o, "missing argument");
    if (np > o->cmd->max_pos)
        return usage_error(o, "unexpected argument \"%s\"", words[skip + o->cmd->max_pos]);
    for (int i = 0; i < np; i++)
        o->pos[i] = words[skip + i];
    o->npos = np;
    unsigned extra = o->given & ~o->cmd->allowed;
    for (size_t i = 0; extra && i < sizeof flags / sizeof flags[0]; i++)
        if (extra & flags[i].bit)
            return usage_error(o, "option --%s does not apply to this command", flags[i].name);
    unsigned missing = o->cmd->required & ~o->given;
    for (size_t i = 0; missing && i < sizeof flags / sizeof flags[0]; i++)
        if (missing & flags[i].bit)
            return usage_error(o, "missing --%s", flags[i].name);
    return 0;
}

/* Checks and converts option values, so bad usage is reported before any
 * connection is made. 0 or EXIT_USAGE. */
static int check_values(cli *o)
{
    o->portal = TKC_UNCHANGED;
    if (o->api_tokens) {
        if (!strcmp(o->api_tokens, "on"))
            o->api_on = true;
        else if (strcmp(o->api_tokens, "off"))
            return usage_error(o, "--api-tokens takes on or off, not \"%s\"", o->api_tokens);
    }
    if (o->level && parse_u32(o->level, TK_MAX_LEVEL, &o->level_v))
        return usage_error(o, "--level takes a number from 0 to %d, not \"%s\"", TK_MAX_LEVEL,
                           o->level);
    if (o->expires && parse_expires(o->expires, &o->expires_v))
        return usage_error(o,
                           "--expires takes Ns, Nm, Nh, Nd (from now), a unix time or "
                           "never, not \"%s\"",
                           o->expires);
    if (o->limit && (parse_u32(o->limit, UINT32_MAX, &o->limit_v) || o->limit_v == 0))
        return usage_error(o, "--limit takes a positive number, not \"%s\"", o->limit);
    static const char *const lim_names[5] = {"max-tokens", "max-roles", "max-keys", "create-rate",
                                             "create-burst"};
    int64_t *lim_to[5] = {&o->lim_v.max_tokens, &o->lim_v.max_roles, &o->lim_v.max_keys,
                          &o->lim_v.create_rate, &o->lim_v.create_burst};
    for (int i = 0; i < 5; i++) {
        uint32_t v = 0;
        *lim_to[i] = -1;
        if (!o->lim[i])
            continue;
        if (strcmp(o->lim[i], "none") && parse_u32(o->lim[i], UINT32_MAX, &v))
            return usage_error(o, "--%s takes a number or none, not \"%s\"", lim_names[i],
                               o->lim[i]);
        *lim_to[i] = v; /* none is 0: no limit */
    }
    if (o->cmd->run == cmd_tenant_set && !(o->given & (F_API_TOKENS | F_LIMITS)))
        return usage_error(o, "nothing to set: give --api-tokens and/or a limit");
    unsigned scope = o->cmd->allowed & F_SCOPE, named = o->given & F_SCOPE;
    if (named && named != scope)
        return usage_error(o, "%s go together",
                           scope == F_SCOPE ? "--tenant, --account and --user"
                                            : "--tenant and --account");
    if ((o->given & F_PORTAL) && (o->given & F_NO_PORTAL))
        return usage_error(o, "--portal and --no-portal exclude each other");
    if (o->given & F_PORTAL)
        o->portal = 1;
    else if (o->given & F_NO_PORTAL)
        o->portal = 0;
    if (o->cmd->run == cmd_user_set && !(o->given & F_ROLE) && o->portal == TKC_UNCHANGED)
        return usage_error(o, "nothing to change: give --role and/or --portal/--no-portal");
    return 0;
}

int main(int argc, char **argv)
{
    cli o;
    const char *words[MAX_POS + 2];
    int nwords, rc;

    memset(&o, 0, sizeof o);
    o.addr = getenv("TOKEND_ADDR");
    o.key_arg = getenv("TOKEND_KEY");
    const char *tls_env = getenv("TOKEND_TLS");
    o.tls = tls_env && *tls_env && strcmp(tls_env, "0") != 0;
    o.ca = getenv("TOKEND_CA");
    o.cert = getenv("TOKEND_CERT");
    o.cert_key = getenv("TOKEND_CERT_KEY");
    rc = parse(&o, argc, argv, words, &nwords);
    if (rc == -1) {
        help();
        return 0;
    }
    if (rc)
        return rc;
    if ((rc = pick_command(&o, words, nwords)) != 0 || (rc = check_values(&o)) != 0)
        return rc;
    if (!o.addr || !*o.addr)
        o.addr = TKC_DEFAULT_ADDR;
    if ((rc = load_key(&o)) != 0)
        return rc;
    if (o.tls_flag_given && !o.tls)
        return usage_error(NULL, "--ca, --cert, --cert-key and --tls-name need --tls (or "
                                 "TOKEND_TLS=1)");

    o.c = tkc_new();
    int e;
    if (o.tls) {
        tkc_tls t = {.ca = o.ca && *o.ca ? o.ca : NULL, .cert = o.cert && *o.cert ? o.cert : NULL,
                     .key = o.cert_key && *o.cert_key ? o.cert_key : NULL,
                     .server_name = o.tls_name};
        if ((e = tkc_set_tls(o.c, &t)) != 0) {
            errline("%s", tkc_errmsg(o.c));
            rc = EXIT_USAGE;
            goto done;
        }
    }
    e = tkc_connect(o.c, o.addr);
    if (e) {
        rc = e == TK_EINVAL ? usage_error(NULL, "%s", tkc_errmsg(o.c)) : report(&o, e);
        goto done;
    }
    if (o.key && (e = tkc_auth(o.c, o.key, NULL)) != 0) {
        rc = report(&o, e);
        goto done;
    }
    rc = o.cmd->run(&o);
    fflush(stdout);
    if (ferror(stdout) && rc == 0) {
        errline("cannot write the output");
        rc = EXIT_IO;
    }
done:
    if (o.key) {
        sodium_memzero(o.key, strlen(o.key));
        free(o.key);
    }
    tkc_free(o.c);
    return rc;
}
