/*
 * metrics.c - counters and their Prometheus text; see metrics.h.
 *
 * Counters are plain integers written by the loop thread only, and read by
 * it when it renders: no atomics needed. Requests are counted in a table
 * indexed by the operation's place in the schema (looked up once, at
 * met_new, for every opcode below 256) and by status, so the hot path is
 * three array indexes.
 */
#include "net/metrics.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "core/xmalloc.h"
#include "net/schema.h"

#define NSTATUS (1 - TK_ELAST + 1) /* 0 .. -TK_ELAST, then "other" */
#define MAX_OPS 64                 /* the schema's operations, and "unknown" */
#define NVERDICTS (TK_V_UNAVAILABLE + 1)

/* Verify latency buckets, ns: 1 us to 10 ms. */
static const uint64_t verify_bounds[] = {1000,   2500,   5000,    10000,   25000,  50000,
                                         100000, 250000, 500000, 1000000, 10000000};

struct met {
    uint8_t slot[256];        /* an opcode's row in req (opcodes are below 256) */
    uint64_t verify[MET_NLISTENERS][NVERDICTS];
    hist verify_ns[MET_NLISTENERS];
    uint64_t req[MET_NLISTENERS][MAX_OPS][NSTATUS];
    uint64_t submissions[MET_NIO], submitted[MET_NIO]; /* met_io */
    uint64_t prefetches, prefetched;                    /* met_prefetch */
};

static const char *const lis_name[MET_NLISTENERS] = {"binary", "http", "http-verify"};

/* The operation's index in the schema's table, or the last slot. */
static size_t op_slot(uint16_t code)
{
    size_t n;
    const sch_op *all = sch_all(&n);
    const sch_op *op = sch_find(code);
    size_t i = op ? (size_t)(op - all) : n;
    return i < MAX_OPS - 1 ? i : MAX_OPS - 1;
}

void met_new(met **out)
{
    met *m = xcalloc(1, sizeof *m);
    for (unsigned c = 0; c < 256; c++)
        m->slot[c] = (uint8_t)op_slot((uint16_t)c);
    for (int l = 0; l < MET_NLISTENERS; l++)
        hist_init(&m->verify_ns[l], verify_bounds, sizeof verify_bounds / sizeof verify_bounds[0]);
    *out = m;
}

void met_free(met *m)
{
    free(m);
}

uint64_t met_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

void met_verify(met *m, met_listener l, tk_verdict v, uint64_t ns)
{
    if ((unsigned)v < NVERDICTS)
        m->verify[l][v]++;
    hist_add(&m->verify_ns[l], ns);
}

void met_io(met *m, met_io_op op, size_t enters, size_t n)
{
    m->submissions[op] += enters;
    m->submitted[op] += n;
}

void met_prefetch(met *m, size_t n)
{
    m->prefetches++;
    m->prefetched += n;
}

void met_request(met *m, met_listener l, uint16_t code, int status)
{
    int s = status <= 0 && status >= TK_ELAST ? -status : NSTATUS - 1;
    m->req[l][code < 256 ? m->slot[code] : MAX_OPS - 1][s]++;
}

static const char *status_name(int s)
{
    return s < NSTATUS - 1 ? tk_errcode(-s) : "other";
}

static void head(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A histogram's lines; scale turns its unit into the metric's (1e-9: ns to s). */
static void render_hist(FILE *out, const char *name, const char *labels, const hist *h,
                        double scale)
{
    uint64_t cum[HIST_MAX_BUCKETS], count, sum;
    hist_read(h, cum, &count, &sum);
    const char *sep = labels[0] ? "," : "";
    for (size_t i = 0; i < h->nb; i++)
        fprintf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
                (double)h->bounds[i] * scale, (unsigned long long)cum[i]);
    fprintf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
            (unsigned long long)count);
    fprintf(out, "%s_sum%s%s%s %.9g\n", name, labels[0] ? "{" : "", labels, labels[0] ? "}" : "",
            (double)sum * scale);
    fprintf(out, "%s_count%s%s%s %llu\n", name, labels[0] ? "{" : "", labels,
            labels[0] ? "}" : "", (unsigned long long)count);
}

/* Replication's gauges (docs/scale.md), for a primary or a replica. */
static void render_repl(const met_repl *r, FILE *out)
{
    head(out, "tokend_replication_connected", "gauge",
         "1 while connected to NATS (a primary publishing, or a replica following).");
    fprintf(out, "tokend_replication_connected{role=\"%s\"} %d\n", r->role, r->connected);
    if (strcmp(r->role, "primary") == 0) {
        head(out, "tokend_replication_published_seq", "gauge",
             "The last event the stream acknowledged.");
        fprintf(out, "tokend_replication_published_seq %llu\n",
                (unsigned long long)r->published);
        head(out, "tokend_replication_replicas", "gauge",
             "Replicas holding a lease (in the revocation barrier).");
        fprintf(out, "tokend_replication_replicas %zu\n", r->replicas);
        head(out, "tokend_replication_min_applied_seq", "gauge",
             "The least event applied among the replicas holding a lease (0: none).");
        fprintf(out, "tokend_replication_min_applied_seq %llu\n",
                (unsigned long long)r->min_applied);
        head(out, "tokend_replication_barrier_waits_total", "counter",
             "Times a revocation's answer waited for the replicas.");
        fprintf(out, "tokend_replication_barrier_waits_total %llu\n",
                (unsigned long long)r->held);
        return;
    }
    head(out, "tokend_replica_available", "gauge",
         "1 while this replica answers \"valid\" (its lease runs and it has caught up).");
    fprintf(out, "tokend_replica_available %d\n", r->available);
    head(out, "tokend_replica_applied_seq", "gauge", "The last event applied here.");
    fprintf(out, "tokend_replica_applied_seq %llu\n", (unsigned long long)r->applied);
    head(out, "tokend_replica_primary_seq", "gauge",
         "The primary's last durable event, as last heard.");
    fprintf(out, "tokend_replica_primary_seq %llu\n", (unsigned long long)r->primary);
    head(out, "tokend_replica_lag_events", "gauge",
         "Events the primary holds that this replica has not applied, as last heard.");
    fprintf(out, "tokend_replica_lag_events %llu\n",
            (unsigned long long)(r->primary > r->applied ? r->primary - r->applied : 0));
    head(out, "tokend_replica_primary_silence_seconds", "gauge",
         "Since the primary last answered a lease request (-1: never).");
    fprintf(out, "tokend_replica_primary_silence_seconds %.3f\n", r->since_primary_s);
    head(out, "tokend_replica_stopped", "gauge",
         "1 once the replica stopped applying the primary's log (a gap, a broken chain: its "
         "log says why).");
    fprintf(out, "tokend_replica_stopped %d\n", r->problem[0] != 0);
}

void met_render(const met *m, const met_gauges *g, FILE *out)
{
    char labels[64];
    size_t nops;
    const sch_op *ops = sch_all(&nops);

    head(out, "tokend_verifications_total", "counter",
         "Verifications answered, by listener and result.");
    for (int l = 0; l < MET_NLISTENERS; l++)
        for (int v = 0; v < NVERDICTS; v++)
            fprintf(out, "tokend_verifications_total{listener=\"%s\",result=\"%s\"} %llu\n",
                    lis_name[l], model_verdict_name((tk_verdict)v),
                    (unsigned long long)m->verify[l][v]);
    head(out, "tokend_verify_duration_seconds", "histogram",
         "Time to answer a verification on the loop thread (a pipelined run's share).");
    for (int l = 0; l < MET_NLISTENERS; l++) {
        snprintf(labels, sizeof labels, "listener=\"%s\"", lis_name[l]);
        render_hist(out, "tokend_verify_duration_seconds", labels, &m->verify_ns[l], 1e-9);
    }
    head(out, "tokend_requests_total", "counter",
         "Requests answered, by listener, operation and status (verifications included).");
    for (int l = 0; l < MET_NLISTENERS; l++)
        for (size_t o = 0; o < MAX_OPS; o++)
            for (int s = 0; s < NSTATUS; s++) {
                if (!m->req[l][o][s])
                    continue;
                fprintf(out,
                        "tokend_requests_total{listener=\"%s\",operation=\"%s\",status=\"%s\"} "
                        "%llu\n",
                        lis_name[l], o < nops ? ops[o].name : "unknown", status_name(s),
                        (unsigned long long)m->req[l][o][s]);
            }
    static const char *const io_name[MET_NIO] = {"recv", "send"};
    head(out, "tokend_io_submissions_total", "counter",
         "io_uring submissions of a loop turn's socket reads or sends, one system call "
         "each (a turn with one connection uses read and sendmsg, uncounted; all do with "
         "--io-uring=false or without io_uring).");
    for (int i = 0; i < MET_NIO; i++)
        fprintf(out, "tokend_io_submissions_total{op=\"%s\"} %llu\n", io_name[i],
                (unsigned long long)m->submissions[i]);
    head(out, "tokend_io_submitted_total", "counter",
         "Connections' reads or sends in those submissions (per submission: the system "
         "calls one saves).");
    for (int i = 0; i < MET_NIO; i++)
        fprintf(out, "tokend_io_submitted_total{op=\"%s\"} %llu\n", io_name[i],
                (unsigned long long)m->submitted[i]);
    head(out, "tokend_verify_prefetches_total", "counter",
         "Times a loop turn started the index lookups of several connections' VERIFY "
         "requests together, before answering the first (binary listener, io_uring path).");
    fprintf(out, "tokend_verify_prefetches_total %llu\n", (unsigned long long)m->prefetches);
    head(out, "tokend_verify_prefetched_total", "counter",
         "The lookups so started (per start: the cache misses that overlapped).");
    fprintf(out, "tokend_verify_prefetched_total %llu\n", (unsigned long long)m->prefetched);
    head(out, "tokend_connections", "gauge", "Open connections, by listener.");
    for (int l = 0; l < MET_NLISTENERS; l++)
        fprintf(out, "tokend_connections{listener=\"%s\"} %zu\n", lis_name[l], g->conns[l]);
    head(out, "tokend_events_appended_total", "counter",
         "Events appended to the log since the server started.");
    fprintf(out, "tokend_events_appended_total %llu\n", (unsigned long long)g->events);
    head(out, "tokend_batch_writes", "histogram", "Writes committed per batch (one log write).");
    render_hist(out, "tokend_batch_writes", "", g->batches, 1);
    head(out, "tokend_lmdb_commit_duration_seconds", "histogram",
         "Time of LMDB's commit of written batches (its page writes; after the answers).");
    render_hist(out, "tokend_lmdb_commit_duration_seconds", "", g->lmdb_commit_ns, 1e-9);
    head(out, "tokend_lmdb_commit_batches", "histogram",
         "Batches per LMDB commit (small ones are carried over several: docs/design.md).");
    render_hist(out, "tokend_lmdb_commit_batches", "", g->lmdb_commit_batches, 1);
    head(out, "tokend_log_sync_duration_seconds", "histogram",
         "Time of the log's fdatasync (one per group of batches written).");
    render_hist(out, "tokend_log_sync_duration_seconds", "", g->syncs, 1e-9);
    head(out, "tokend_log_seq", "gauge",
         "The event log's last durable sequence number (its head: tokenreplay check).");
    fprintf(out, "tokend_log_seq %llu\n", (unsigned long long)g->log_seq);
    head(out, "tokend_log_chain_check", "gauge",
         "1 for the state of the check of every link of the log's hash chain: running (in "
         "the background, after the start), passed, or failed (damage fences the store; "
         "tokend's log says where).");
    static const char *const checks[] = {"failed", "running", "passed"};
    for (int i = 0; i < 3; i++)
        fprintf(out, "tokend_log_chain_check{state=\"%s\"} %d\n", checks[i],
                g->log_chain == i - 1);
    head(out, "tokend_portal_sessions", "gauge",
         "Live portal sessions (counted once a second).");
    fprintf(out, "tokend_portal_sessions %zu\n", g->portal_sessions);
    head(out, "tokend_index_entries", "gauge", "Credentials in the verify index.");
    fprintf(out, "tokend_index_entries %zu\n", g->index_entries);
    head(out, "tokend_index_bytes", "gauge", "Memory of the verify index.");
    fprintf(out, "tokend_index_bytes %zu\n", g->index_bytes);
    head(out, "tokend_store_state", "gauge",
         "1 for the store's state: ok, full (only revocations commit) or fenced (writes "
         "refused until restart).");
    static const char *const states[] = {"ok", "full", "fenced"};
    for (size_t i = 0; i < 3; i++)
        fprintf(out, "tokend_store_state{state=\"%s\"} %d\n", states[i],
                strcmp(states[i], g->store_state) == 0);
    if (g->repl.role)
        render_repl(&g->repl, out);
}
