/*
 * openapi.h - the JSON API's OpenAPI 3.1 document (prefix oapi_),
 * docs/openapi.yaml, written from the schema's tables (net/schema.h): each
 * route of sch_routes() becomes a path and an operation, its parameters,
 * request body and success reply come from the operation's fields, so the
 * document cannot say what the server does not do. The endpoints outside
 * the table (gateway verification, /metrics, /healthz, /readyz) are written
 * by hand here, beside the listener's rules (net/http.c) they describe.
 *
 * tests/net/test_openapi.c checks that docs/openapi.yaml is exactly this
 * output and lints it with a real OpenAPI validator (tests/openapi/).
 *
 * Pure: no state; the output is the same bytes on every run.
 */
#ifndef TK_NET_OPENAPI_H
#define TK_NET_OPENAPI_H
#include <stdbool.h>
#include <stdio.h>

/* Writes the whole document (YAML) to out. */
void oapi_write(FILE *out);

/* True when every error code the document lists under a status is what the
 * listener answers with (http_status_of): tests/net/test_openapi.c. */
bool oapi_statuses_agree(void);

#endif
