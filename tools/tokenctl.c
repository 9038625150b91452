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
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
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
};

/* tenant set's limits, in tkc_limits order. */
#define F_LIMITS (F_MAX_TOKENS | F_MAX_ROLES | F_MAX_KEYS | F_CREATE_RATE | F_CREATE_BURST)

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
    {"limit", F_LIMIT, true},
    {"max-tokens", F_MAX_TOKENS, true},
    {"max-roles", F_MAX_ROLES, true},
    {"max-keys", F_MAX_KEYS, true},
    {"create-rate", F_CREATE_RATE, true},
    {"create-burst", F_CREATE_BURST, true},
};

typedef struct cli {
    const char *addr;
    const char *key_arg; /* as given: KEY or @FILE */
    char *key;           /* resolved key (owned, wiped) */
    bool json;
    unsigned given;
    const char *desc, *level, *name, *api_tokens, *expires, *tenant, *account, *limit;
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

typedef struct command {
    const char *group, *verb; /* verb NULL for one-word commands */
    int min_pos, max_pos;
    unsigned allowed, required;
    run_fn run;
    const char *usage;
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

static json_t *json_token(const tkc_token *t)
{
    char created[32];
    iso_time(t->created_at, created);
    return json_pack("{s:s,s:s,s:o,s:s,s:s,s:o}", "client_id", t->client_id, "description",
                     t->description, "roles", json_strings(t->roles, t->nroles), "created_by",
                     t->created_by, "created_at", created, "expires_at",
                     json_expiry(t->expires_at));
}

static void print_token_row(const tkc_token *t)
{
    char created[32], expires[32], roles[2200];
    iso_time(t->created_at, created);
    if (t->expires_at)
        iso_time(t->expires_at, expires);
    else
        snprintf(expires, sizeof expires, "never");
    join(t->roles, t->nroles, roles, sizeof roles);
    printf("%-36s  %-20s  %-20s  %-12s  %-16s  %s\n", t->client_id, created, expires, t->created_by,
           roles, t->description);
}

static int cmd_token_list(cli *o)
{
    tkc_token_page page = TKC_TOKEN_PAGE_INIT;
    char after[TKC_CURSOR_MAX + 1] = "";
    uint32_t limit = o->limit_v; /* 0: everything */
    uint64_t shown = 0;
    json_t *arr = NULL;
    int rc, ret = 0;

    if (o->json && !(arr = json_array()))
        return print_json(NULL);
    for (;;) {
        uint32_t want = TKC_LIST_MAX;
        if (limit && limit - shown < want)
            want = (uint32_t)(limit - shown);
        rc = tkc_token_list(o->c, o->tenant, o->account, after[0] ? after : NULL, want, &page);
        if (rc) {
            ret = report(o, rc);
            goto done;
        }
        for (size_t i = 0; i < page.n; i++) {
            if (arr) {
                json_array_append_new(arr, json_token(&page.tokens[i]));
            } else {
                if (shown == 0)
                    printf("%-36s  %-20s  %-20s  %-12s  %-16s  %s\n", "CLIENT ID", "CREATED",
                           "EXPIRES", "CREATED BY", "ROLES", "DESCRIPTION");
                print_token_row(&page.tokens[i]);
            }
            shown++;
        }
        if (!page.more || page.n == 0 || (limit && shown >= limit))
            break;
        memcpy(after, page.next, sizeof after);
    }
    if (arr) {
        ret = print_json(arr);
        arr = NULL;
    } else if (shown == 0) {
        printf("no tokens\n");
    }
done:
    json_decref(arr);
    tkc_token_page_free(&page);
    return ret;
}

static int cmd_token_delete(cli *o)
{
    int rc = tkc_token_delete(o->c, o->pos[0]);
    return rc ? report(o, rc) : print_ok(o, "token %s deleted", o->pos[0]);
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
    {"tenant", "create", 1, 1, 0, 0, cmd_tenant_create, "tenant create TENANT"},
    {"tenant", "set", 1, 1, F_API_TOKENS | F_LIMITS, 0, cmd_tenant_set,
     "tenant set TENANT [--api-tokens on|off] [--max-tokens N|none] [--max-roles N|none] "
     "[--max-keys N|none] [--create-rate N|none] [--create-burst N]"},
    {"perm", "put", 2, 2, F_DESC, 0, cmd_perm_put, "perm put TENANT KEY [--description TEXT]"},
    {"role", "put", 2, 2, F_LEVEL | F_PERM | F_NAME, F_LEVEL, cmd_role_put,
     "role put TENANT KEY --level N [--perm PERM]... [--name NAME]"},
    {"role", "delete", 2, 2, 0, 0, cmd_role_delete, "role delete TENANT KEY"},
    {"account", "create", 2, 2, 0, 0, cmd_account_create, "account create TENANT ACCOUNT"},
    {"user", "create", 3, 3, F_ROLE | F_PORTAL, 0, cmd_user_create,
     "user create TENANT ACCOUNT USER [--role ROLE]... [--portal]"},
    {"user", "set", 3, 3, F_ROLE | F_PORTAL | F_NO_PORTAL, 0, cmd_user_set,
     "user set TENANT ACCOUNT USER [--role ROLE]... [--portal|--no-portal]"},
    {"key", "create", 3, 3, F_EXPIRES, 0, cmd_key_create,
     "key create TENANT ACCOUNT USER [--expires WHEN]"},
    {"key", "delete", 1, 1, 0, 0, cmd_key_delete, "key delete KEY_ID"},
    {"token", "create", 0, 0, F_DESC | F_ROLE | F_EXPIRES, F_ROLE, cmd_token_create,
     "token create --role ROLE... [--description TEXT] [--expires WHEN]"},
    {"token", "list", 0, 0, F_TENANT | F_ACCOUNT | F_LIMIT, 0, cmd_token_list,
     "token list [--tenant TENANT --account ACCOUNT] [--limit N]"},
    {"token", "delete", 1, 1, 0, 0, cmd_token_delete, "token delete CLIENT_ID"},
    {"verify", NULL, 1, 2, 0, 0, cmd_verify, "verify [CLIENT_ID] SECRET"},
    {"ping", NULL, 0, 0, 0, 0, cmd_ping, "ping"},
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
           "  --help            this text\n"
           "\n"
           "Commands:\n",
           TKC_DEFAULT_ADDR);
    for (size_t i = 0; i < NCOMMANDS; i++)
        printf("  tokenctl %s\n", commands[i].usage);
    printf("\n"
           "WHEN (--expires): Ns, Nm, Nh or Nd from now (e.g. 30d), an absolute unix time,\n"
           "or never. token list --limit N shows at most N tokens (all pages otherwise).\n"
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
        if (n == 4 && !memcmp(name, "help", 4))
            return -1;
        if (n == 4 && !memcmp(name, "json", 4)) {
            takes = false;
        } else if (!((n == 4 && !memcmp(name, "addr", 4)) || (n == 3 && !memcmp(name, "key", 3)))) {
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
            if (n == 4 && !memcmp(name, "json", 4))
                o->json = true;
            else if (n == 4)
                o->addr = val;
            else
                o->key_arg = val;
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
    if (!(o->given & F_TENANT) != !(o->given & F_ACCOUNT))
        return usage_error(o, "--tenant and --account go together");
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

    o.c = tkc_new();
    int e = tkc_connect(o.c, o.addr);
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
