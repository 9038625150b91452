/*
 * test_schema.c - net/schema.c, the one table of operations: it is
 * consistent (every opcode once, every field name once in a message, every
 * change an engine operation, every read an engine read), and
 * docs/protocol.md's operation table is exactly what it generates. Run from
 * the top of the tree (tests/run.sh does).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/proto.h"
#include "net/schema.h"
#include "tests/support/tkt.h"

#define DOC "docs/protocol.md"
#define BEGIN "<!-- ops:begin -->\n"
#define END "<!-- ops:end -->"

static void each_message_names_a_field_once(const sch_use *uses, const char *what)
{
    for (const sch_use *u = uses; SCH_USED(u); u++)
        for (const sch_use *v = u + 1; SCH_USED(v); v++)
            if (strcmp(sch_fields[u->f].name, sch_fields[v->f].name) == 0)
                fail_msg("%s names \"%s\" twice", what, sch_fields[u->f].name);
}

static void the_table_is_consistent(void **state)
{
    (void)state;
    size_t n;
    const sch_op *ops = sch_all(&n);
    bool seen_op[ENG_OP_MAX + 1] = {0};
    for (int f = 0; f < SF_COUNT; f++)
        assert_int_equal(sch_fields[f].len, strlen(sch_fields[f].name));
    assert_null(sch_find(0x00));
    assert_null(sch_find(0x7f));
    assert_null(sch_find(0xffff));
    for (size_t i = 0; i < n; i++) {
        const sch_op *op = &ops[i];
        assert_ptr_equal(sch_find(op->code), op);
        assert_ptr_equal(sch_named(op->name), op);
        if (i > 0 && ops[i - 1].code >= op->code)
            fail_msg("%s: opcodes out of order", op->name);
        each_message_names_a_field_once(op->req, op->name);
        each_message_names_a_field_once(op->reply, op->name);
        each_message_names_a_field_once(op->row, op->name);
        switch (op->run) {
        case SCH_WRITE:
            assert_true(op->op >= 1 && op->op <= ENG_OP_MAX);
            if (seen_op[op->op])
                fail_msg("%s: a second opcode for one engine operation", op->name);
            seen_op[op->op] = true;
            break;
        case SCH_READ:
            assert_true(op->kind >= 1 && op->kind <= ENG_KIND_MAX);
            assert_true(SCH_USED(op->row)); /* a read has rows, or is one */
            if (!op->get) { /* a listing pages */
                assert_non_null(sch_find_use(op->req, "after", 5));
                assert_non_null(sch_find_use(op->req, "limit", 5));
                assert_non_null(sch_find_use(op->reply, "more", 4));
                assert_non_null(sch_find_use(op->reply, "next", 4));
            }
            break;
        case SCH_INLINE:
            assert_true(op->code == OP_PING || op->code == OP_AUTH || op->code == OP_VERIFY);
            break;
        case SCH_PORTAL:
            assert_true(op->code == OP_PORTAL_SESSION_CREATE || op->code == OP_PORTAL_SESSION_GET
                        || op->code == OP_PORTAL_SESSION_DELETE);
            break;
        }
    }
    /* Every engine operation has its opcode. */
    for (int o = 1; o <= ENG_OP_MAX; o++)
        if (!seen_op[o])
            fail_msg("engine operation %d has no opcode", o);
    assert_null(sch_find(0x7fff));
    assert_null(sch_named("NOPE"));
}

static void the_docs_say_what_the_table_says(void **state)
{
    (void)state;
    size_t len;
    char *doc = (char *)tkt_read_file(DOC, &len);
    assert_non_null(doc);
    char *want = NULL;
    size_t wlen = 0;
    FILE *m = open_memstream(&want, &wlen);
    sch_markdown(m);
    fclose(m);
    char *b = strstr(doc, BEGIN), *e = b ? strstr(b, END) : NULL;
    if (!b || !e)
        fail_msg(DOC " has no " BEGIN " ... " END " block");
    b += strlen(BEGIN);
    size_t have = (size_t)(e - b);
    if (have != wlen || memcmp(b, want, wlen) != 0) {
        /* Say where, and leave the table to paste. */
        size_t i = 0;
        while (i < have && i < wlen && b[i] == want[i])
            i++;
        FILE *out = fopen("build/protocol-ops.md", "w");
        if (out) {
            fwrite(want, 1, wlen, out);
            fclose(out);
        }
        fail_msg(DOC "'s operation table differs from net/schema.c's at byte %zu; the table "
                 "as the schema says it is in build/protocol-ops.md", i);
    }
    free(want);
    free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_table_is_consistent),
        cmocka_unit_test(the_docs_say_what_the_table_says),
    };
    return cmocka_run_group_tests_name("schema", tests, NULL, NULL);
}
