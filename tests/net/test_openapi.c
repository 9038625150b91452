/*
 * test_openapi.c - net/openapi.c, the JSON API's OpenAPI document:
 * docs/openapi.yaml is exactly what oapi_write writes from the tables;
 * every route of the schema is in it, as its method, under its path, with
 * an operationId of its own named after its operation, and every operation
 * has a route; each request field travels where net/http.c takes it (the
 * path, the query of a GET or DELETE, the JSON body of a POST, PUT or
 * PATCH); and the document passes a real OpenAPI validator (Redocly CLI,
 * tests/openapi/lint.sh), never skipped. Run from the top of the tree
 * (tests/run.sh does).
 *
 * TOKEND_WRITE_OPENAPI=1 build/rel/tests/net/test_openapi writes
 * docs/openapi.yaml again from the tables.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "net/openapi.h"
#include "net/proto.h"
#include "net/schema.h"
#include "tests/support/tkt.h"

#define DOC "docs/openapi.yaml"
#define REGEN "TOKEND_WRITE_OPENAPI=1 build/rel/tests/net/test_openapi"
#define LINT "tests/openapi/lint.sh"

/* oapi_write's output, NUL-terminated (the caller frees). */
static char *generate(size_t *len)
{
    char *text = NULL;
    FILE *m = open_memstream(&text, len);
    assert_non_null(m);
    oapi_write(m);
    assert_int_equal(fclose(m), 0);
    assert_non_null(text);
    return text;
}

static void the_document_is_what_the_tables_say(void **state)
{
    (void)state;
    size_t wlen, have = 0;
    char *want = generate(&wlen);
    const char *w = getenv("TOKEND_WRITE_OPENAPI");
    if (w && strcmp(w, "1") == 0) {
        if (tkt_write_file(DOC, want, wlen) != 0)
            fail_msg("cannot write " DOC " (run from the top of the tree)");
        printf("# wrote " DOC " (%zu bytes)\n", wlen);
    }
    char *doc = (char *)tkt_read_file(DOC, &have);
    if (!doc)
        fail_msg(DOC " is missing (run from the top of the tree); write it with " REGEN);
    if (have != wlen || memcmp(doc, want, wlen) != 0) {
        size_t i = 0, line = 1;
        while (i < have && i < wlen && doc[i] == want[i])
            line += doc[i++] == '\n';
        fail_msg(DOC " differs from what net/openapi.c writes from the tables at byte %zu "
                 "(line %zu); write it again with " REGEN, i, line);
    }
    free(doc);
    free(want);
}

/* The text of path's item in doc (up to the next path or section), or
 * NULL; *n its length. */
static const char *path_item(const char *doc, const char *path, size_t *n)
{
    char key[300];
    snprintf(key, sizeof key, "\n  %s:\n", path);
    const char *paths = strstr(doc, "\npaths:\n");
    const char *b = paths ? strstr(paths, key) : NULL;
    if (!b)
        return NULL;
    b += strlen(key);
    const char *e = b;
    /* ends at the next line indented less than four */
    while (*e && !(e[0] == '\n' && !(e[1] == ' ' && e[2] == ' ' && e[3] == ' ' && e[4] == ' ')))
        e++;
    *n = (size_t)(e - b);
    return b;
}

/* The text of method's operation in a path item, or NULL; *n its length. */
static const char *operation(const char *item, size_t len, const char *method, size_t *n)
{
    char key[32], lower[16];
    size_t k;
    for (k = 0; method[k] && k + 1 < sizeof lower; k++)
        lower[k] = (char)(method[k] - 'A' + 'a');
    lower[k] = 0;
    snprintf(key, sizeof key, "    %s:\n", lower);
    const char *b = item;
    size_t klen = strlen(key);
    while (b && (size_t)(b - item) + klen <= len && strncmp(b, key, klen) != 0) {
        b = memchr(b, '\n', len - (size_t)(b - item));
        b = b ? b + 1 : NULL;
    }
    if (!b || (size_t)(b - item) + klen > len)
        return NULL;
    b += klen;
    const char *e = b;
    /* ends at the next line indented four (the next method) or the item's end */
    while (e < item + len && !(e[0] == '\n' && strncmp(e + 1, "    ", 4) == 0 && e[5] != ' '))
        e++;
    *n = (size_t)(e - b);
    return b;
}

static bool within(const char *s, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(s + i, needle, m) == 0)
            return true;
    return false;
}

static void every_route_is_in_the_document(void **state)
{
    (void)state;
    size_t len, nroutes, nops;
    char *doc = generate(&len);
    const sch_route *routes = sch_routes(&nroutes);
    const sch_op *ops = sch_all(&nops);
    char ids[64][72];
    size_t nids = 0;
    assert_true(nroutes <= 64);
    for (size_t i = 0; i < nroutes; i++) {
        const sch_route *rt = &routes[i];
        const sch_op *op = sch_find(rt->code);
        size_t ilen, olen;
        if (!op)
            fail_msg("route %s %s: no operation 0x%02x", rt->method, rt->path, rt->code);
        for (size_t k = 0; k < i; k++)
            if (strcmp(routes[k].method, rt->method) == 0 && strcmp(routes[k].path, rt->path) == 0)
                fail_msg("route %s %s: twice in the table", rt->method, rt->path);
        const char *item = path_item(doc, rt->path, &ilen);
        if (!item)
            fail_msg("route %s %s: its path is not in the document", rt->method, rt->path);
        const char *o = operation(item, ilen, rt->method, &olen);
        if (!o)
            fail_msg("route %s %s: its method is not under its path", rt->method, rt->path);
        /* The operationId comes first, named after the operation. */
        const char *idk = "      operationId: ";
        if (strncmp(o, idk, strlen(idk)) != 0)
            fail_msg("route %s %s: no operationId", rt->method, rt->path);
        const char *id = o + strlen(idk);
        size_t idlen = strcspn(id, "\n"), nlen = strlen(op->name);
        if (idlen < nlen || memcmp(id, op->name, nlen) != 0 || (idlen > nlen && id[nlen] != '_'))
            fail_msg("route %s %s: operationId %.*s is not %s's", rt->method, rt->path,
                     (int)idlen, id, op->name);
        assert_true(idlen < sizeof ids[0]);
        snprintf(ids[nids], sizeof ids[0], "%.*s", (int)idlen, id);
        for (size_t k = 0; k < nids; k++)
            if (strcmp(ids[k], ids[nids]) == 0)
                fail_msg("operationId %s twice", ids[k]);
        nids++;
        char ok[16];
        snprintf(ok, sizeof ok, "\"%u\":", (unsigned)rt->ok);
        assert_true(rt->ok == 200 || rt->ok == 201);
        if (!within(o, olen, ok))
            fail_msg("route %s %s: no %u response", rt->method, rt->path, (unsigned)rt->ok);
    }
    /* Every operation of the table can be called over HTTP. */
    for (size_t i = 0; i < nops; i++) {
        bool routed = false;
        for (size_t k = 0; k < nroutes; k++)
            routed |= routes[k].code == ops[i].code;
        if (!routed)
            fail_msg("operation %s has no route in net/schema.c's sch_routes", ops[i].name);
    }
    free(doc);
}

/* The {name} segments of a route are fields of its operation's request
 * (http.c fills them from the path); every other request field is a query
 * parameter of a GET or DELETE, a body member of a POST, PUT or PATCH. */
static void every_field_travels_where_http_takes_it(void **state)
{
    (void)state;
    size_t len, nroutes;
    char *doc = generate(&len);
    const sch_route *routes = sch_routes(&nroutes);
    for (size_t i = 0; i < nroutes; i++) {
        const sch_route *rt = &routes[i];
        const sch_op *op = sch_find(rt->code);
        size_t ilen, olen;
        assert_non_null(op);
        const char *item = path_item(doc, rt->path, &ilen);
        const char *o = item ? operation(item, ilen, rt->method, &olen) : NULL;
        assert_non_null(o);
        bool body = strcmp(rt->method, "POST") == 0 || strcmp(rt->method, "PUT") == 0
                    || strcmp(rt->method, "PATCH") == 0;
        if (!body && strcmp(rt->method, "GET") != 0 && strcmp(rt->method, "DELETE") != 0)
            fail_msg("route %s %s: a method http.c does not route", rt->method, rt->path);
        for (const char *p = strchr(rt->path, '{'); p; p = strchr(p + 1, '{')) {
            size_t n = strcspn(p + 1, "}");
            if (!sch_find_use(op->req, p + 1, n))
                fail_msg("route %s %s: {%.*s} is not a field of %s's request", rt->method,
                         rt->path, (int)n, p + 1, op->name);
        }
        for (const sch_use *u = op->req; SCH_USED(u); u++) {
            const char *name = sch_fields[u->f].name;
            char want[160], where[16];
            if (op->code == OP_AUTH && u->f == SF_KEY)
                continue; /* the Bearer credential itself */
            snprintf(where, sizeof where, "{%s}", name);
            if (strstr(rt->path, where))
                snprintf(want, sizeof want, "- name: %s\n          in: path\n", name);
            else if (body)
                snprintf(want, sizeof want, "\n                %s:\n", name);
            else
                snprintf(want, sizeof want, "- name: %s\n          in: query\n", name);
            if (!within(o, olen, want))
                fail_msg("route %s %s: field %s is not %s", rt->method, rt->path, name,
                         strstr(rt->path, where) ? "a path parameter"
                         : body                  ? "in the request body"
                                                 : "a query parameter");
            if (body && !strstr(rt->path, where) && !within(o, olen, "requestBody:"))
                fail_msg("route %s %s: no requestBody", rt->method, rt->path);
        }
    }
    free(doc);
}

/* The error statuses the document gives are the listener's (http_status_of). */
static void error_statuses_are_the_listeners(void **state)
{
    (void)state;
    assert_true(oapi_statuses_agree());
}

static void the_document_passes_the_lint(void **state)
{
    (void)state;
    fflush(stdout);
    fflush(stderr);
    int st = system("bash " LINT " >&2");
    if (st == -1 || !WIFEXITED(st))
        fail_msg(LINT " did not run to its end");
    if (WEXITSTATUS(st) != 0)
        fail_msg(LINT " failed (exit %d): " DOC " is not a valid OpenAPI document by "
                 "tests/openapi/redocly.yaml's rules; the lint's report is above",
                 WEXITSTATUS(st));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_document_is_what_the_tables_say),
        cmocka_unit_test(every_route_is_in_the_document),
        cmocka_unit_test(every_field_travels_where_http_takes_it),
        cmocka_unit_test(error_statuses_are_the_listeners),
        cmocka_unit_test(the_document_passes_the_lint),
    };
    return cmocka_run_group_tests_name("openapi", tests, NULL, NULL);
}
