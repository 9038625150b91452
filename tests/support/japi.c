/* japi.c - the JSON API from a test; see japi.h. */
#include "tests/support/japi.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int japi_call(int port, const char *const *headers, const char *method, const char *path,
              const char *body, json_t **out, hraw_resp *keep)
{
    hraw_resp r;
    if (out)
        *out = NULL;
    if (hraw_once(port, method, path, headers, body, &r) != 0)
        return 0;
    if (out)
        *out = json_loadb(r.body, r.body_len, 0, NULL);
    int st = r.status;
    if (keep)
        *keep = r;
    else
        hraw_free(&r);
    return st;
}

static void show(const char *method, const char *path, int st, json_t *j, const char *want)
{
    char *s = j ? json_dumps(j, 0) : NULL;
    fprintf(stderr, "# %s %s: %d %s, expected %s\n", method, path, st, s ? s : "", want);
    free(s);
}

void japi_expect(int port, const char *const *headers, const char *method, const char *path,
                 const char *body, int status)
{
    json_t *j;
    int st = japi_call(port, headers, method, path, body, &j, NULL);
    if (st != status) {
        char want[16];
        snprintf(want, sizeof want, "%d", status);
        show(method, path, st, j, want);
    }
    json_decref(j);
    assert_int_equal(st, status);
}

void japi_refused(int port, const char *const *headers, const char *method, const char *path,
                  const char *body, int status, const char *code)
{
    json_t *j;
    int st = japi_call(port, headers, method, path, body, &j, NULL);
    const char *e = j ? json_string_value(json_object_get(j, "error")) : NULL;
    if (st != status || !e || strcmp(e, code) != 0) {
        char want[64];
        snprintf(want, sizeof want, "%d %s", status, code);
        show(method, path, st, j, want);
    }
    assert_int_equal(st, status);
    assert_non_null(e);
    assert_string_equal(e, code);
    assert_non_null(json_object_get(j, "message"));
    json_decref(j);
}

void japi_user(int port, const char *auth, const char *tenant, const char *account,
               const char *user, const char *roles, bool portal, char *bearer, size_t bcap,
               char *key, size_t kcap)
{
    char path[160], body[300];
    const char *h[] = {auth, NULL};
    json_t *j;
    snprintf(path, sizeof path, "/v1/tenants/%s/accounts/%s/users", tenant, account);
    snprintf(body, sizeof body, "{\"user\":\"%s\",\"roles\":%s,\"portal\":%s}", user, roles,
             portal ? "true" : "false");
    assert_int_equal(japi_call(port, h, "POST", path, body, &j, NULL), 201);
    const char *pk = json_string_value(json_object_get(j, "personal_key"));
    assert_non_null(pk);
    snprintf(bearer, bcap, "Authorization: Bearer %s", pk);
    if (key)
        snprintf(key, kcap, "%s", pk);
    json_decref(j);
}
