/*
 * japi.h - the JSON API from a test (prefix japi_): one request on a new
 * loopback connection (hand-written HTTP, tests/support/hraw.h), its body
 * parsed with jansson, and the assertions the HTTP suites share: a status,
 * or a refusal's status and error code. Failures print what came back.
 */
#ifndef TK_TEST_JAPI_H
#define TK_TEST_JAPI_H
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "tests/support/hraw.h"

/* method path with the header lines (NULL-terminated, may be NULL) and
 * body (may be NULL) to 127.0.0.1:port. The body parsed into *out (may be
 * NULL; the caller decrefs; NULL when not JSON) and the response kept in
 * *keep (may be NULL; the caller hraw_frees it). Returns the status, 0
 * when no response came. */
int japi_call(int port, const char *const *headers, const char *method, const char *path,
              const char *body, json_t **out, hraw_resp *keep);

/* Asserts the status of the call. */
void japi_expect(int port, const char *const *headers, const char *method, const char *path,
                 const char *body, int status);

/* Asserts a refusal: the status, the "error" code and a "message". */
void japi_refused(int port, const char *const *headers, const char *method, const char *path,
                  const char *body, int status, const char *code);

/* Creates a user through the operator's API (auth: "Authorization: Bearer
 * <operator key>"): roles a JSON array. Its personal key into key (kcap
 * bytes, may be NULL) and "Authorization: Bearer <key>" into bearer. */
void japi_user(int port, const char *auth, const char *tenant, const char *account,
               const char *user, const char *roles, bool portal, char *bearer, size_t bcap,
               char *key, size_t kcap);

#endif
