/*
 * gateway.c - gateway verification over HTTP; see gateway.h.
 *
 * Values arrive as (pointer, length), not strings: the verify listener's
 * point into its input buffer. A required permission from the query is
 * %-decoded ('+' is a space, as in forms) with libevent's decoder, the one
 * the main listener has always used.
 */
#include "net/gateway.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/http.h>
#include <jansson.h>
#include <sodium.h>

#include "core/err.h"
#include "core/secret.h"
#include "core/sha256.h"
#include "core/xmalloc.h"
#include "store/keyfile.h"

#define BASIC_MAX 512   /* a Basic credential, decoded */
#define PERM_SHOWN 128  /* of a missing permission, at most this much is named */

void gw_key_init(gw_key *k, const char *text)
{
    memset(k, 0, sizeof *k);
    if (text) {
        sha256(k->hash, text, strlen(text));
        k->set = true;
    }
}

bool gw_key_ok(const gw_key *k, eng *e, const char *key, size_t n)
{
    uint8_t hash[GW_HASH_LEN];
    if (!k->set && !keyfile_key_ok(key, n, "tkg_"))
        return false;
    sha256(hash, key, n); /* once, for the file's key and the keyring's */
    if (k->set && secret_equal(hash, k->hash, GW_HASH_LEN))
        return true;
    return keyfile_key_ok(key, n, "tkg_") && eng_gateway_hash(e, hash);
}

static const char *field(const gw_in *in, const char *name, size_t *n)
{
    return in->field(in->arg, name, 0, n);
}

bool gw_allowed(eng *e, const gw_key *k, const gw_in *in, int64_t now)
{
    size_t n;
    if (!k->set)
        return true;
    const char *v = field(in, "X-Tokend-Gateway-Key", &n);
    if (!v)
        return false;
    if (gw_key_ok(k, e, v, n))
        return true;
    tk_actor a;
    return eng_authenticate(e, v, n, now, &a) == 0 && a.kind == TK_ACTOR_OPERATOR;
}

const char *gw_scheme(const char *v, size_t *n, const char *name)
{
    size_t k = strlen(name);
    if (*n <= k || strncasecmp(v, name, k) != 0 || v[k] != ' ')
        return NULL;
    size_t i = k;
    while (i < *n && v[i] == ' ')
        i++;
    *n -= i;
    return v + i;
}

typedef struct cred {
    const char *secret;
    size_t len;
    bool has_id;
    tk_id id;
    char buf[BASIC_MAX];      /* a Basic value, decoded */
} cred;

/* The credential: 0 (c->secret set, maybe c->id), TK_V_MALFORMED (a Basic
 * value that does not decode), or -1 when none was given. */
static int credential(const gw_in *in, cred *c)
{
    size_t n;
    const char *a = field(in, "Authorization", &n), *v;
    size_t vn = n;
    c->has_id = false;
    if (a && (v = gw_scheme(a, &vn, "Bearer"))) {
        while (vn && v[vn - 1] == ' ')
            vn--;
        c->secret = v;
        c->len = vn;
        return 0;
    }
    vn = n;
    if (a && (v = gw_scheme(a, &vn, "Basic"))) {
        size_t dn;
        if (sodium_base642bin((unsigned char *)c->buf, BASIC_MAX - 1, v, vn, " ", &dn, NULL,
                              sodium_base64_VARIANT_ORIGINAL)
            != 0)
            return TK_V_MALFORMED;
        c->buf[dn] = 0;
        char *colon = memchr(c->buf, ':', dn);
        if (!colon)
            return TK_V_MALFORMED;
        if (colon > c->buf) {
            if (secret_id_parse(c->buf, (size_t)(colon - c->buf), &c->id) != 0)
                return TK_V_MALFORMED;
            c->has_id = true;
        }
        c->secret = colon + 1;
        c->len = dn - (size_t)(colon + 1 - c->buf);
        return 0;
    }
    if ((v = field(in, "X-API-Key", &n))) {
        c->secret = v;
        c->len = n;
        return 0;
    }
    return -1;
}

static bool has_perm(const tk_verify *v, const char *p, size_t n)
{
    for (uint32_t i = 0; i < v->nperms; i++)
        if (strlen(v->perms[i]) == n && memcmp(v->perms[i], p, n) == 0)
            return true;
    return false;
}

static void name_missing(char *out, size_t cap, const char *p, size_t n)
{
    snprintf(out, cap, "%.*s", (int)(n < PERM_SHOWN ? n : PERM_SHOWN), p);
}

/* The first permission of list[0..len) (comma-separated) that v lacks,
 * named in out; false when it has them all. */
static bool lacks_from(const tk_verify *v, const char *list, size_t len, char *out, size_t cap)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (list[i] == ' ' || list[i] == ','))
            i++;
        size_t s = i;
        while (i < len && list[i] != ',')
            i++;
        size_t e = i;
        while (e > s && list[e - 1] == ' ')
            e--;
        if (e > s && !has_perm(v, list + s, e - s)) {
            name_missing(out, cap, list + s, e - s);
            return true;
        }
    }
    return false;
}

/* Every permission the request requires (?permission=P, repeatable;
 * X-Tokend-Require-Permission, comma-separated, repeatable): the first
 * missing in out, or false. The query is read item by item: an item
 * without '=' (?x&permission=P) must not make a requirement drop. */
static bool lacks(const gw_in *in, const char *query, size_t qlen, const tk_verify *v, char *out,
                  size_t cap)
{
    size_t n;
    const char *f;
    for (size_t i = 0; (f = in->field(in->arg, "X-Tokend-Require-Permission", i, &n)); i++)
        if (lacks_from(v, f, n, out, cap))
            return true;
    size_t i = 0;
    while (i < qlen) {
        const char *p = query + i;
        const char *amp = memchr(p, '&', qlen - i);
        size_t len = amp ? (size_t)(amp - p) : qlen - i;
        i += len + 1;
        if (len > 11 && memcmp(p, "permission=", 11) == 0) {
            char *raw = xstrndup(p + 11, len - 11);
            char *want = evhttp_uridecode(raw, 1, NULL);
            free(raw);
            bool missing = !want || !has_perm(v, want, strlen(want));
            if (missing) {
                if (want)
                    name_missing(out, cap, want, strlen(want));
                else
                    snprintf(out, cap, "(undecodable)");
            }
            free(want);
            if (missing)
                return true;
        } else if (len == 10 && memcmp(p, "permission", 10) == 0) {
            snprintf(out, cap, "(empty)");
            return true;
        }
    }
    return false;
}

static void body_text(gw_answer *a, const char *text)
{
    size_t n = strlen(text);
    if (n > GW_BODY_MAX - 2)
        n = GW_BODY_MAX - 2;
    memcpy(a->body, text, n);
    a->body[n++] = '\n';
    a->body[n] = 0;
    a->body_len = n;
}

int gw_refused_code(tk_verdict v, int *status)
{
    bool unavail = v == TK_V_UNAVAILABLE;
    *status = unavail ? TK_EBUSY : TK_EUNAUTH;
    return unavail ? 503 : 401;
}

static void refuse(gw_answer *a, const char *reason, tk_verdict verdict)
{
    char text[96];
    a->code = gw_refused_code(verdict, &a->status);
    a->reason = reason;
    a->v.verdict = verdict;
    snprintf(text, sizeof text, "{\"valid\":false,\"reason\":\"%s\"}", reason);
    body_text(a, text);
}

void gw_verify(eng *e, const gw_key *k, const gw_in *in, const char *query, size_t qlen,
               int64_t now, gw_answer *a)
{
    cred c;
    char missing[PERM_SHOWN + 2];
    /* Field by field: a->v's arrays (8 KiB of pointers) are the view's to
     * fill, and clearing them costed each verification a memset. */
    a->code = 0;
    a->status = 0;
    a->keyless = false;
    a->reason = "";
    a->v.verdict = TK_V_MALFORMED;
    a->v.nroles = a->v.nperms = 0;
    a->body_len = 0;
    if (!gw_allowed(e, k, in, now)) { /* an error, as for any unauthenticated request */
        char text[160];
        a->code = 401;
        a->status = TK_EUNAUTH;
        a->keyless = true;
        snprintf(text, sizeof text, "{\"error\":\"%s\",\"message\":\"verification needs the "
                 "gateway key (X-Tokend-Gateway-Key)\"}", tk_errcode(TK_EUNAUTH));
        body_text(a, text);
        return;
    }
    int rc = credential(in, &c);
    if (rc < 0) {
        refuse(a, "missing", TK_V_MALFORMED);
        return;
    }
    if (rc > 0 || eng_verify(e, c.has_id ? &c.id : NULL, c.secret, c.len, now, &a->v)
                      != TK_V_VALID) {
        tk_verdict v = rc > 0 ? TK_V_MALFORMED : a->v.verdict;
        refuse(a, model_verdict_name(v), v);
        return;
    }
    if (lacks(in, query, qlen, &a->v, missing, sizeof missing)) {
        a->code = 403;
        a->status = TK_EDENIED;
        a->reason = "permission";
        json_t *b = json_pack("{s:s,s:s,s:s?}", "error", "denied", "message",
                              "the token lacks a permission this route requires", "permission",
                              missing);
        char *s = b ? json_dumps(b, JSON_COMPACT) : NULL;
        body_text(a, s ? s : "{\"error\":\"denied\"}");
        free(s);
        json_decref(b);
        return;
    }
    a->code = 200;
    a->status = 0;
    a->reason = "valid";
}

/* The items of a list joined by commas, in scratch (from its start). */
static const char *joined(h1_out *scratch, const char *const *items, uint32_t n, size_t *len)
{
    scratch->n = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (i)
            h1_put(scratch, ",", 1);
        h1_puts(scratch, items[i]);
    }
    h1_put(scratch, "", 1); /* a string for whoever wants one */
    *len = scratch->n - 1;
    return scratch->p;
}

void gw_each_field(const gw_answer *a, h1_out *scratch,
                   void (*fn)(void *arg, const char *name, const char *value, size_t n),
                   void *arg)
{
    size_t n;
    if (a->keyless) { /* the fields of the main listener's error replies */
        fn(arg, "Cache-Control", "no-store", 8);
        fn(arg, "WWW-Authenticate", "Bearer realm=\"tokend\"", 21);
        fn(arg, "Content-Type", "application/json", 16);
        return;
    }
    fn(arg, "Cache-Control", "no-store", 8);
    if (a->code == 200) {
        char id[TK_ID_STR_LEN + 1];
        secret_id_format(&a->v.client_id, id);
        fn(arg, "X-Tokend-Tenant", a->v.tenant, strlen(a->v.tenant));
        fn(arg, "X-Tokend-Account", a->v.account, strlen(a->v.account));
        fn(arg, "X-Tokend-Client-Id", id, strlen(id));
        const char *l = joined(scratch, a->v.roles, a->v.nroles, &n);
        fn(arg, "X-Tokend-Roles", l, n);
        l = joined(scratch, a->v.perms, a->v.nperms, &n);
        fn(arg, "X-Tokend-Permissions", l, n);
    } else if (a->code == 401) {
        fn(arg, "WWW-Authenticate", "Bearer realm=\"tokend\"", 21);
    }
    if (a->body_len)
        fn(arg, "Content-Type", "application/json", 16);
    fn(arg, "X-Tokend-Reason", a->reason, strlen(a->reason));
}
