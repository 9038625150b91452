/* logedit.c - logs edited and chained again; see logedit.h. */
#include "tests/support/logedit.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/event.h"
#include "core/mp.h"
#include "store/elog.h"
#include "tests/support/tkt.h"

void logedit_copy(const char *from, const char *to, uint64_t keep, uint64_t edit)
{
    elog *lg;
    elog_iter *it;
    tk_why why;
    uint64_t seq;
    const void *p;
    size_t len;
    assert_int_equal(elog_open(to, NULL, &lg, &why), 0);
    assert_int_equal(elog_iter_open(from, 1, &it, &why), 0);
    while (elog_iter_next(it, &seq, &p, &len, &why) == 1 && (keep == 0 || seq <= keep)) {
        ev x;
        mpw w;
        mpw_init(&w);
        assert_int_equal(ev_decode(p, len, &x), 0);
        if (seq == edit)
            x.ts += 1000;
        ev_encode(&x, &w);
        assert_int_equal(elog_append(lg, w.buf.data, w.buf.size, NULL), 0);
        mpw_free(&w);
    }
    elog_iter_free(it);
    assert_int_equal(elog_sync(lg, &why), 0);
    elog_close(lg);
}

void logedit_replace(const char *logdir, uint64_t keep, uint64_t edit)
{
    char *tmp = tkt_mkdtemp(), *copy = tkt_path(tmp, "log");
    logedit_copy(logdir, copy, keep, edit);
    /* what is not a segment (a signed head, torn-*.bin) goes along */
    DIR *d = opendir(logdir);
    struct dirent *x;
    assert_non_null(d);
    while ((x = readdir(d))) {
        size_t n = strlen(x->d_name);
        if (x->d_name[0] == '.' || (n > 4 && !strcmp(x->d_name + n - 4, ".seg"))
            || !strcmp(x->d_name, "lock"))
            continue;
        char *a = tkt_path(logdir, x->d_name), *b = tkt_path(copy, x->d_name);
        size_t len;
        unsigned char *buf = tkt_read_file(a, &len);
        if (buf) {
            assert_int_equal(tkt_write_file(b, buf, len), 0);
            free(buf);
        }
        free(a), free(b);
    }
    closedir(d);
    tkt_rmdir(logdir);
    assert_int_equal(rename(copy, logdir), 0);
    tkt_rmdir(tmp);
    free(copy), free(tmp);
}
