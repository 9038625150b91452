/*
 * gateway.h - gateway verification over HTTP (prefix gw_): the rules of
 * /v1/verify (docs/http.md, "Gateway verification") for nginx auth_request,
 * Caddy forward_auth, Envoy ext_authz and Traefik forwardAuth, written once
 * for both HTTP listeners: the main one (evhttp, net/http.c) and the verify
 * listener (net/vhttp.c). Each hands over its request's header fields
 * through a gw_in, gets a gw_answer, and writes the answer's fields
 * (gw_each_field) and body its own way.
 *
 * Also the gateway key (DIR/gateway.key, or a gateway key of the keyring),
 * which the binary listener's AUTH accepts too.
 *
 * Loop thread only: an answer's strings are the view's, valid until the
 * callback that asked returns.
 */
#ifndef TK_NET_GATEWAY_H
#define TK_NET_GATEWAY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/model.h"
#include "net/h1.h"
#include "store/engine.h"

#define GW_HASH_LEN 32
#define GW_BODY_MAX 384 /* the longest answer body: a 403 naming a 128-byte permission */

/* DIR/gateway.key, by its SHA-256 (the key itself is not kept). */
typedef struct gw_key {
    bool set;
    uint8_t hash[GW_HASH_LEN];
} gw_key;

/* From the key's text, or none (text NULL). */
void gw_key_init(gw_key *k, const char *text);

/* key (n bytes) is DIR/gateway.key or a gateway key of e's keyring. */
bool gw_key_ok(const gw_key *k, eng *e, const char *key, size_t n);

/* A request's header fields, as the listener holds them. */
typedef struct gw_in {
    /* The value of the i-th field (from 0, in order) named name, compared
     * case-insensitively, and its length in *n; NULL past the last. Values
     * come without their leading and trailing blanks. */
    const char *(*field)(const void *arg, const char *name, size_t i, size_t *n);
    const void *arg;
} gw_in;

/* With k set, the request carries k's key, a keyring gateway key or the
 * operator key in X-Tokend-Gateway-Key (as AUTH on the binary listener);
 * without, every request may verify. */
bool gw_allowed(eng *e, const gw_key *k, const gw_in *in, int64_t now);

/* An Authorization value v[0..*n) of scheme name ("Bearer", compared
 * case-insensitively) followed by a space: its credential, leading spaces
 * skipped, with *n its length; NULL for another scheme. */
const char *gw_scheme(const char *v, size_t *n, const char *name);

/* The HTTP status of a verification that is not valid, *status its
 * request counters' status: 401 and TK_EUNAUTH; for a replica past its
 * lease (TK_V_UNAVAILABLE: it vouches for nothing) 503 and TK_EBUSY, so
 * that a gateway fails closed and a load balancer asks another. */
int gw_refused_code(tk_verdict v, int *status);

typedef struct gw_answer {
    int code;                 /* 200, 401, 403 or 503 (gw_refused_code) */
    int status;               /* for the request counters: 0, TK_EUNAUTH, TK_EDENIED or
                                 TK_EBUSY */
    bool keyless;             /* refused before any lookup: no gateway key (an error
                                 reply, not a verdict: no X-Tokend-Reason, not counted
                                 as a verification) */
    const char *reason;       /* X-Tokend-Reason: a verdict's name, "missing", "permission" */
    tk_verify v;              /* v.verdict always; on 200 the identity (the view's strings) */
    char body[GW_BODY_MAX];   /* 401, 403: the JSON body and its newline */
    size_t body_len;
} gw_answer;

/* Answers a verification: the gateway key when k is set (the header
 * X-Tokend-Gateway-Key: k's key, a keyring gateway key or the operator
 * key), the credential (Authorization Bearer or Basic, X-API-Key), the
 * lookup at time now, and the permissions required by the query
 * (permission=P items of query[0..qlen)) and by X-Tokend-Require-Permission
 * fields. */
void gw_verify(eng *e, const gw_key *k, const gw_in *in, const char *query, size_t qlen,
               int64_t now, gw_answer *a);

/* The answer's header fields, in order, through fn(arg, name, value, n):
 * Cache-Control, then the identity (200) or WWW-Authenticate (401), then
 * Content-Type (application/json) when there is a body, then
 * X-Tokend-Reason; for a keyless refusal Cache-Control, WWW-Authenticate
 * and Content-Type. Lists (roles, permissions) are joined in *scratch. Each
 * value is also a string (NUL at value[n]). */
void gw_each_field(const gw_answer *a, h1_out *scratch,
                   void (*fn)(void *arg, const char *name, const char *value, size_t n),
                   void *arg);

#endif
