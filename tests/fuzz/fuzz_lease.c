/*
 * fuzz_lease.c - the lease messages of replication (net/repl.h) over
 * arbitrary bytes: what a primary reads from any NATS client on
 * STREAM.lease, and what a replica reads back.
 *
 * Input: one message body, decoded as a request and as a reply.
 *
 * Checked beyond memory safety: a decode is 0 or TK_EPROTO; a request
 * decoded has a name of 1 to REPL_NAME_MAX printable bytes, a reply an
 * address of at most REPL_ADDR_MAX; what decodes encodes back to exactly
 * the input (one form per message), and the encoding decodes to the same
 * fields.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "net/repl.h"
#include "tests/fuzz/fuzz.h"

static bool printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t out[REPL_LEASE_MAX];
    repl_lease_req q, q2;
    repl_lease_rep r, r2;
    int rc = repl_lease_req_get(data, size, &q);
    FZ_CHECK(rc == 0 || rc == TK_EPROTO, "a request decodes or is refused");
    if (rc == 0) {
        size_t n = strlen(q.name);
        FZ_CHECK(n >= 1 && n <= REPL_NAME_MAX && printable(q.name), "a request's name");
        size_t m = repl_lease_req_put(&q, out);
        FZ_CHECK(m == size && memcmp(out, data, size) == 0, "a request encodes back");
        FZ_CHECK(repl_lease_req_get(out, m, &q2) == 0 && q2.applied == q.applied
                     && q2.sent_ns == q.sent_ns && q2.join == q.join
                     && strcmp(q2.name, q.name) == 0,
                 "a request's encoding decodes the same");
    }
    rc = repl_lease_rep_get(data, size, &r);
    FZ_CHECK(rc == 0 || rc == TK_EPROTO, "a reply decodes or is refused");
    if (rc == 0) {
        FZ_CHECK(strlen(r.addr) <= REPL_ADDR_MAX && printable(r.addr), "a reply's address");
        size_t m = repl_lease_rep_put(&r, out);
        FZ_CHECK(m == size && memcmp(out, data, size) == 0, "a reply encodes back");
        FZ_CHECK(repl_lease_rep_get(out, m, &r2) == 0 && r2.sent_ns == r.sent_ns
                     && r2.durable == r.durable && r2.catch_up == r.catch_up
                     && r2.lease_ms == r.lease_ms && r2.barrier == r.barrier
                     && r2.granted == r.granted && strcmp(r2.addr, r.addr) == 0,
                 "a reply's encoding decodes the same");
    }
    return 0;
}
