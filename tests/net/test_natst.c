/*
 * test_natst.c - the NATS JetStream test servers (tests/support/natst.c),
 * and through them the libnats calls tokend's replication is to use:
 *
 *   - one node: a file stream with a duplicate window; the same message id
 *     published twice is stored once (the second ack says Duplicate), and
 *     js_GetLastMsg gives the message back with its headers;
 *   - one node: asynchronous publishes and js_PublishAsyncComplete, an
 *     ordered push consumer from a start sequence, core request/reply;
 *   - three nodes: the stream leader killed, a publish with an ack still
 *     succeeds within a few seconds (a new leader is elected), the node
 *     restarted catches up; a follower paused (SIGSTOP) while the others
 *     still acknowledge: a client connected to it fails over;
 *   - three nodes, all stopped: a publish fails within its MaxWait; all
 *     restarted, publishing works again and the stream's data is intact.
 *
 * Each case prints how long it took. Skipped when nats-server is not on
 * the PATH (a failure under CI). A case that fails keeps the servers'
 * temp dir (logs and stores) and prints its path.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>

#include "tests/support/natst.h"
#include "tests/support/raw.h"
#include "tests/support/tkt.h"

#define SEC_NS 1000000000LL

typedef struct fx {
    natst n;
    natsConnection *nc;
    jsCtx *js;
    int64_t t0;
    bool done; /* the body ran to its end: the temp dir can go */
} fx;


/* A case's time limit, in seconds: more under the sanitizers. */
#define WATCHDOG(s) ((s) * (SANITIZED ? 3 : 1))
static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    raw_watchdog(WATCHDOG(90)); /* a test may wait 30 s for a leader after 15 s of restart */
    f->t0 = tkt_now_ms();
    return 0;
}

/* Every case starts here: a skip in a setup would count as a failure. */
static void start(fx *f, int nodes)
{
    if (!natst_available()) {
        f->done = true;
        skip();
    }
    assert_int_equal(natst_start(&f->n, nodes), 0);
}

static int teardown(void **state)
{
    fx *f = *state;
    if (!f)
        return 0;
    if (!f->done)
        natst_keep(&f->n);
    jsCtx_Destroy(f->js);
    natsConnection_Destroy(f->nc);
    pid_t pids[NATST_MAX];
    for (int i = 0; i < NATST_MAX; i++)
        pids[i] = f->n.node[i].pid;
    natst_free(&f->n);
    for (int i = 0; i < NATST_MAX; i++) /* nothing left running */
        if (pids[i] > 0 && kill(pids[i], 0) == 0) {
            print_error("nats-server %d still running after natst_free\n", (int)pids[i]);
            f->done = false;
        }
    raw_watchdog(0);
    print_message("# took %lld ms\n", (long long)(tkt_now_ms() - f->t0));
    free(f);
    return 0;
}

/* The replication's connection: every node's URL, reconnecting forever,
 * every 100 ms; a server that stops answering (paused, or a dead host
 * whose TCP connection stays up) is given up after two PINGs unanswered
 * at 500 ms; JetStream calls wait 2 s by default. first >= 0: that node's
 * URL is tried first (no randomizing), else the order is random. */
static void connect_to(fx *f, int first, natsConnection **nc, jsCtx **js)
{
    natsOptions *o = NULL;
    const char *urls[NATST_MAX];
    jsOptions jo;
    int k = 0;
    if (first >= 0)
        urls[k++] = natst_node_url(&f->n, first);
    for (int i = 0; i < f->n.nodes; i++)
        if (i != first)
            urls[k++] = natst_node_url(&f->n, i);
    assert_int_equal(natsOptions_Create(&o), NATS_OK);
    assert_int_equal(natsOptions_SetServers(o, urls, f->n.nodes), NATS_OK);
    assert_int_equal(natsOptions_SetNoRandomize(o, first >= 0), NATS_OK);
    assert_int_equal(natsOptions_SetMaxReconnect(o, -1), NATS_OK);
    assert_int_equal(natsOptions_SetReconnectWait(o, 100), NATS_OK);
    assert_int_equal(natsOptions_SetTimeout(o, 1000), NATS_OK);
    assert_int_equal(natsOptions_SetPingInterval(o, 500), NATS_OK);
    assert_int_equal(natsOptions_SetMaxPingsOut(o, 2), NATS_OK);
    assert_int_equal(natsConnection_Connect(nc, o), NATS_OK);
    natsOptions_Destroy(o);
    jsOptions_Init(&jo);
    jo.Wait = 2000;
    assert_int_equal(natsConnection_JetStream(js, *nc, &jo), NATS_OK);
}

static void connect_all(fx *f)
{
    connect_to(f, -1, &f->nc, &f->js);
}

/* Stream EV on ev.>: file storage, replicas, one hour's messages, a
 * two-minute duplicate window. */
static void add_stream(fx *f, int replicas)
{
    const char *subj[] = {"ev.>"};
    jsStreamConfig sc;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    jsStreamConfig_Init(&sc);
    sc.Name = "EV";
    sc.Subjects = subj;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Replicas = replicas;
    sc.MaxAge = 3600 * SEC_NS;
    sc.Duplicates = 120 * SEC_NS;
    natsStatus s = js_AddStream(&si, f->js, &sc, NULL, &jerr);
    if (s != NATS_OK)
        print_error("js_AddStream: %s (jerr %d)\n", natsStatus_GetText(s), (int)jerr);
    assert_int_equal(s, NATS_OK);
    /* The server echoes the configuration: the units are nanoseconds. */
    assert_int_equal(si->Config->MaxAge, 3600 * SEC_NS);
    assert_int_equal(si->Config->Duplicates, 120 * SEC_NS);
    assert_int_equal(si->Config->Replicas, replicas);
    assert_int_equal(si->Config->Storage, js_FileStorage);
    jsStreamInfo_Destroy(si);
}

/* Publishes data on subj with message id id and header Tk-Kind: kind,
 * waiting at most wait_ms for the ack. The status; *seq and *dup from the
 * ack when it came. */
static natsStatus publish(fx *f, const char *subj, const char *id, const char *kind,
                          const char *data, int wait_ms, uint64_t *seq, bool *dup)
{
    natsMsg *m = NULL;
    jsPubAck *pa = NULL;
    jsPubOptions po;
    jsErrCode jerr = 0;
    natsStatus s = natsMsg_Create(&m, subj, NULL, data, (int)strlen(data));
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Tk-Kind", kind);
    if (s != NATS_OK)
        return s;
    jsPubOptions_Init(&po);
    po.MsgId = id;
    po.MaxWait = wait_ms;
    s = js_PublishMsg(&pa, f->js, m, &po, &jerr);
    if (s == NATS_OK) {
        if (seq)
            *seq = pa->Sequence;
        if (dup)
            *dup = pa->Duplicate;
    }
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
    return s;
}

/* Publishes until an ack comes (each try waiting 1 s) or deadline_ms have
 * passed; returns how long it took, or -1. */
static int64_t publish_until(fx *f, const char *subj, const char *id, int deadline_ms,
                             uint64_t *seq, bool *dup)
{
    int64_t t0 = tkt_now_ms(), end = t0 + deadline_ms;
    natsStatus s, first = NATS_OK;
    int tries = 0;
    do {
        tries++;
        s = publish(f, subj, id, "create", "payload", 1000, seq, dup);
        if (s == NATS_OK) {
            print_message("# acked after %lld ms, %d tries%s%s%s\n", (long long)(tkt_now_ms() - t0),
                          tries, tries > 1 ? " (the first failed with " : "",
                          tries > 1 ? natsStatus_GetText(first) : "", tries > 1 ? ")" : "");
            return tkt_now_ms() - t0;
        }
        if (tries == 1)
            first = s;
        tkt_sleep_ms(50);
    } while (tkt_now_ms() < end);
    print_error("no ack within %d ms: %s\n", deadline_ms, natsStatus_GetText(s));
    return -1;
}

static jsStreamInfo *stream_info(fx *f)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, f->js, "EV", NULL, &jerr);
    if (s != NATS_OK)
        print_error("js_GetStreamInfo: %s (jerr %d)\n", natsStatus_GetText(s), (int)jerr);
    assert_int_equal(s, NATS_OK);
    return si;
}

static uint64_t stream_msgs(fx *f)
{
    jsStreamInfo *si = stream_info(f);
    uint64_t n = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return n;
}

/* Reads count messages from an ordered push consumer starting at stream
 * sequence start; checks their sequences follow on, then that no more
 * comes within 200 ms. */
static void read_from(fx *f, uint64_t start, int count)
{
    natsSubscription *sub = NULL;
    jsSubOptions so;
    jsErrCode jerr = 0;
    jsSubOptions_Init(&so);
    so.Stream = "EV";
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = start;
    assert_int_equal(js_SubscribeSync(&sub, f->js, "ev.>", NULL, &so, &jerr), NATS_OK);
    for (int k = 0; k < count; k++) {
        natsMsg *m = NULL;
        jsMsgMetaData *meta = NULL;
        assert_int_equal(natsSubscription_NextMsg(&m, sub, 2000), NATS_OK);
        assert_int_equal(natsMsg_GetMetaData(&meta, m), NATS_OK);
        assert_int_equal(meta->Sequence.Stream, start + (uint64_t)k);
        jsMsgMetaData_Destroy(meta);
        natsMsg_Destroy(m);
    }
    natsMsg *extra = NULL;
    assert_int_equal(natsSubscription_NextMsg(&extra, sub, 200), NATS_TIMEOUT);
    assert_int_equal(natsSubscription_Unsubscribe(sub), NATS_OK);
    natsSubscription_Destroy(sub);
}

/* ---- one node ----------------------------------------------------------- */

static void one_node_dedup_and_headers(void **state)
{
    fx *f = *state;
    uint64_t seq = 0;
    bool dup = true;
    start(f, 1);
    connect_all(f);
    add_stream(f, 1);

    assert_int_equal(publish(f, "ev.tok", "e-1", "create", "event-1", 2000, &seq, &dup), NATS_OK);
    assert_int_equal(seq, 1);
    assert_false(dup);
    /* The same id again, other bytes even: the ack names the stored copy. */
    assert_int_equal(publish(f, "ev.tok", "e-1", "delete", "event-1b", 2000, &seq, &dup), NATS_OK);
    assert_int_equal(seq, 1);
    assert_true(dup);
    assert_int_equal(stream_msgs(f), 1);
    assert_int_equal(publish(f, "ev.other", "e-2", "create", "event-2", 2000, &seq, &dup), NATS_OK);
    assert_int_equal(seq, 2);
    assert_false(dup);

    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    const char *v = NULL;
    assert_int_equal(js_GetLastMsg(&m, f->js, "EV", "ev.tok", NULL, &jerr), NATS_OK);
    assert_int_equal(natsMsg_GetDataLength(m), 7);
    assert_memory_equal(natsMsg_GetData(m), "event-1", 7);
    assert_string_equal(natsMsg_GetSubject(m), "ev.tok");
    assert_int_equal(natsMsg_GetSequence(m), 1);
    assert_int_equal(natsMsgHeader_Get(m, "Tk-Kind", &v), NATS_OK);
    assert_string_equal(v, "create");
    assert_int_equal(natsMsgHeader_Get(m, "Nats-Msg-Id", &v), NATS_OK);
    assert_string_equal(v, "e-1");
    natsMsg_Destroy(m);

    m = NULL;
    assert_int_equal(js_GetLastMsg(&m, f->js, "EV", "ev.none", NULL, &jerr), NATS_NOT_FOUND);
    print_message("# js_GetLastMsg on an empty subject: NATS_NOT_FOUND, jerr %d\n", (int)jerr);
    assert_null(m);
    f->done = true;
}

static void on_echo(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)sub;
    (void)closure;
    natsConnection_Publish(nc, natsMsg_GetReply(msg), natsMsg_GetData(msg),
                           natsMsg_GetDataLength(msg));
    natsMsg_Destroy(msg);
}

static void one_node_async_ordered_request(void **state)
{
    fx *f = *state;
    start(f, 1);
    connect_all(f);
    add_stream(f, 1);

    jsPubOptions po;
    for (int k = 1; k <= 5; k++) {
        char id[16], data[16];
        natsMsg *m = NULL;
        snprintf(id, sizeof id, "a-%d", k);
        snprintf(data, sizeof data, "async-%d", k);
        assert_int_equal(natsMsg_Create(&m, "ev.async", NULL, data, (int)strlen(data)), NATS_OK);
        jsPubOptions_Init(&po);
        po.MsgId = id;
        assert_int_equal(js_PublishMsgAsync(f->js, &m, &po), NATS_OK);
        assert_null(m); /* the library owns it now */
        natsMsg_Destroy(m);
    }
    jsPubOptions_Init(&po);
    po.MaxWait = 2000;
    assert_int_equal(js_PublishAsyncComplete(f->js, &po), NATS_OK);
    assert_int_equal(stream_msgs(f), 5);

    read_from(f, 3, 3);
    read_from(f, 1, 5);

    natsSubscription *svc = NULL;
    natsMsg *reply = NULL;
    assert_int_equal(natsConnection_Subscribe(&svc, f->nc, "svc.echo", on_echo, NULL), NATS_OK);
    assert_int_equal(natsConnection_Flush(f->nc), NATS_OK);
    assert_int_equal(natsConnection_Request(&reply, f->nc, "svc.echo", "ping", 4, 1000), NATS_OK);
    assert_int_equal(natsMsg_GetDataLength(reply), 4);
    assert_memory_equal(natsMsg_GetData(reply), "ping", 4);
    natsMsg_Destroy(reply);
    reply = NULL;
    int64_t t0 = tkt_now_ms();
    assert_int_equal(natsConnection_Request(&reply, f->nc, "svc.nobody", "ping", 4, 1000),
                     NATS_NO_RESPONDERS);
    print_message("# request without a responder: NATS_NO_RESPONDERS after %lld ms\n",
                  (long long)(tkt_now_ms() - t0));
    assert_true(tkt_now_ms() - t0 < 500);
    natsSubscription_Destroy(svc);
    f->done = true;
}

/* ---- three nodes -------------------------------------------------------- */

/* The index of the node that leads stream EV. */
static int stream_leader(fx *f)
{
    jsStreamInfo *si = stream_info(f);
    assert_non_null(si->Cluster);
    assert_non_null(si->Cluster->Leader);
    int leader = -1;
    for (int i = 0; i < f->n.nodes; i++)
        if (!strcmp(si->Cluster->Leader, f->n.node[i].name))
            leader = i;
    jsStreamInfo_Destroy(si);
    assert_true(leader >= 0);
    return leader;
}

/* Waits at most ms for both of the stream leader's peers to be current. */
static int64_t wait_replicas_current(fx *f, int ms)
{
    int64_t t0 = tkt_now_ms();
    do {
        jsStreamInfo *si = NULL;
        jsErrCode jerr = 0;
        int current = 0;
        if (js_GetStreamInfo(&si, f->js, "EV", NULL, &jerr) == NATS_OK && si->Cluster) {
            for (int k = 0; k < si->Cluster->ReplicasLen; k++)
                current += si->Cluster->Replicas[k]->Current && !si->Cluster->Replicas[k]->Offline;
        }
        jsStreamInfo_Destroy(si);
        if (current == f->n.nodes - 1)
            return tkt_now_ms() - t0;
        tkt_sleep_ms(100);
    } while (tkt_now_ms() - t0 < ms);
    return -1;
}

static void three_nodes_leader_killed(void **state)
{
    fx *f = *state;
    char id[16];
    uint64_t seq = 0;
    int64_t t0 = tkt_now_ms();
    start(f, 3);
    print_message("# three nodes ready in %lld ms\n", (long long)(tkt_now_ms() - t0));
    connect_all(f);
    add_stream(f, 3);
    for (int k = 1; k <= 10; k++) {
        snprintf(id, sizeof id, "k-%d", k);
        assert_int_equal(publish(f, "ev.tok", id, "create", "payload", 2000, &seq, NULL), NATS_OK);
        assert_int_equal(seq, (uint64_t)k);
    }

    int leader = stream_leader(f);
    char url[64];
    assert_int_equal(natsConnection_GetConnectedUrl(f->nc, url, sizeof url), NATS_OK);
    print_message("# killing the stream leader %s; the client is on %s\n",
                  f->n.node[leader].name, url);
    assert_int_equal(natst_kill(&f->n, leader), 0);
    assert_int_equal(natst_kill(&f->n, leader), -1);
    bool dup = true;
    int64_t took = publish_until(f, "ev.tok", "k-11", 10000, &seq, &dup);
    assert_true(took >= 0 && took < 10000);
    assert_int_equal(seq, 11);
    assert_false(dup);
    int now = stream_leader(f);
    assert_int_not_equal(now, leader);
    print_message("# new stream leader %s\n", f->n.node[now].name);

    t0 = tkt_now_ms();
    assert_int_equal(natst_restart(&f->n, leader), 0);
    print_message("# restarted %s in %lld ms\n", f->n.node[leader].name,
                  (long long)(tkt_now_ms() - t0));
    assert_int_equal(natst_ready(&f->n, 20000), 0);
    int64_t caught = wait_replicas_current(f, 10000);
    print_message("# both peers current %lld ms after the restart returned\n", (long long)caught);
    assert_true(caught >= 0);
    assert_int_equal(publish(f, "ev.tok", "k-12", "create", "payload", 2000, &seq, NULL), NATS_OK);
    assert_int_equal(seq, 12);
    assert_int_equal(stream_msgs(f), 12);

    /* A paused follower hangs (its port takes the TCP connection, nothing
     * answers), while the other two still acknowledge: a client connected
     * to it fails over once its PINGs go unanswered. (A new connection to
     * the paused node is not tried: libnats's connect was seen to hang on
     * it past any timeout under the sanitizers.) */
    int follower = (now + 1) % 3;
    natsConnection *nc2 = NULL;
    jsCtx *js2 = NULL;
    char url2[64];
    connect_to(f, follower, &nc2, &js2);
    assert_int_equal(natsConnection_GetConnectedUrl(nc2, url2, sizeof url2), NATS_OK);
    assert_string_equal(url2, natst_node_url(&f->n, follower));
    assert_int_equal(natst_pause(&f->n, follower), 0);
    jsCtx *js1 = f->js;
    f->js = js2; /* publish_until publishes on f->js */
    took = publish_until(f, "ev.tok", "k-13", 5000, &seq, NULL);
    f->js = js1;
    assert_true(took >= 0 && took < 5000);
    assert_int_equal(natsConnection_GetConnectedUrl(nc2, url2, sizeof url2), NATS_OK);
    assert_string_not_equal(url2, natst_node_url(&f->n, follower));
    assert_int_equal(seq, 13);
    assert_int_equal(natst_resume(&f->n, follower), 0);
    jsCtx_Destroy(js2);
    natsConnection_Destroy(nc2);
    f->done = true;
}

static void three_nodes_all_stopped(void **state)
{
    fx *f = *state;
    uint64_t seq = 0;
    bool dup = false;
    char id[16];
    start(f, 3);
    connect_all(f);
    add_stream(f, 3);
    for (int k = 1; k <= 5; k++) {
        snprintf(id, sizeof id, "s-%d", k);
        assert_int_equal(publish(f, k == 5 ? "ev.last" : "ev.tok", id, "create", "payload", 2000,
                                 &seq, NULL),
                         NATS_OK);
    }

    /* nats-server 2.9.10 exits 1 after a clean shutdown on SIGTERM (0 on
     * SIGINT). */
    int rc = natst_stop(&f->n, 0);
    print_message("# nats-server's exit code after SIGTERM: %d\n", rc);
    assert_int_equal(rc, 1);
    natst_stop_all(&f->n);
    for (int i = 0; i < 3; i++)
        assert_int_equal(f->n.node[i].pid, 0);

    int64_t t0 = tkt_now_ms();
    natsStatus s = publish(f, "ev.tok", "s-6", "create", "outage", 1000, &seq, NULL);
    int64_t took = tkt_now_ms() - t0;
    print_message("# publish with no server: %s after %lld ms\n", natsStatus_GetText(s),
                  (long long)took);
    assert_int_not_equal(s, NATS_OK);
    assert_true(took < 1500);

    t0 = tkt_now_ms();
    assert_int_equal(natst_restart_all(&f->n), 0);
    print_message("# all three restarted and ready in %lld ms\n", (long long)(tkt_now_ms() - t0));

    /* The publish that timed out sat in the client's reconnect buffer: it
     * may have been sent, and stored, once the client reconnected. The
     * same id again is stored at most once either way. */
    /* All three restarted from their stores elect a metadata leader and
     * then the stream's own leader, each after Raft election timeouts: on a
     * busy machine the first took 12 s and the second more than 10 s more
     * (a CI run), so the publish may wait up to 30 s for a leader. */
    took = publish_until(f, "ev.tok", "s-6", 30000, &seq, &dup);
    assert_true(took >= 0);
    assert_int_equal(seq, 6);
    print_message("# the timed-out publish was %s after the restart\n",
                  dup ? "stored anyway (its retry was a duplicate)" : "lost (its retry stored it)");
    assert_int_equal(stream_msgs(f), 6);

    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    const char *v = NULL;
    assert_int_equal(js_GetLastMsg(&m, f->js, "EV", "ev.last", NULL, &jerr), NATS_OK);
    assert_int_equal(natsMsg_GetSequence(m), 5);
    assert_int_equal(natsMsgHeader_Get(m, "Nats-Msg-Id", &v), NATS_OK);
    assert_string_equal(v, "s-5");
    natsMsg_Destroy(m);
    read_from(f, 1, 6);
    f->done = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(one_node_dedup_and_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(one_node_async_ordered_request, setup, teardown),
        cmocka_unit_test_setup_teardown(three_nodes_leader_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(three_nodes_all_stopped, setup, teardown),
    };
    const char *only = getenv("NATST_CASE"); /* one case by name, "three_*" ... */
    if (only && *only)
        cmocka_set_test_filter(only);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    nats_Close();
    return rc;
}
