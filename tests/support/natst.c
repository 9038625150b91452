/* natst.c - nats-server processes for tests; see natst.h. */
#include "tests/support/natst.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nats/nats.h>

#include "tests/support/raw.h"
#include "tests/support/tkt.h"

#define NATST_WAIT_MS 20000
#define NATST_TRIES 3
#define NATST_READY_STREAM "NATST_READY"

/* ---- ports -------------------------------------------------------------- */

/* Chooses count distinct free loopback ports: every socket is held until
 * all are chosen, so the kernel cannot hand the same port out twice. */
static int natst_ports(int *out, int count)
{
    int fds[2 * NATST_MAX];
    int rc = 0, k;
    for (k = 0; k < count; k++) {
        struct sockaddr_in a = {.sin_family = AF_INET};
        socklen_t len = sizeof a;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fds[k] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fds[k] < 0 || bind(fds[k], (struct sockaddr *)&a, sizeof a) != 0 ||
            getsockname(fds[k], (struct sockaddr *)&a, &len) != 0) {
            rc = -1;
            k++;
            break;
        }
        out[k] = ntohs(a.sin_port);
    }
    while (k-- > 0)
        if (fds[k] >= 0)
            close(fds[k]);
    return rc;
}

/* ---- the processes ------------------------------------------------------ */

static bool natst_log_has(const natst_node *d, const char *needle)
{
    size_t len;
    unsigned char *text = tkt_read_file(d->log, &len);
    bool found = text && memmem(text, len, needle, strlen(needle)) != NULL;
    free(text);
    return found;
}

/* Forks and execs nats-server for node i; argv is built before the fork
 * (the child only opens its log, sets its death signal and execs: libnats
 * threads may hold locks in the parent). */
static int natst_spawn(natst *n, int i)
{
    natst_node *d = &n->node[i];
    char port[16], listen[48], routes[3 * 40];
    const char *argv[24];
    int argc = 0;

    snprintf(port, sizeof port, "%d", d->port);
    argv[argc++] = "nats-server";
    argv[argc++] = "-a";
    argv[argc++] = "127.0.0.1";
    argv[argc++] = "-p";
    argv[argc++] = port;
    argv[argc++] = "-n";
    argv[argc++] = d->name;
    argv[argc++] = "-js";
    argv[argc++] = "-sd";
    argv[argc++] = d->store;
    if (n->nodes > 1) {
        size_t used = 0;
        routes[0] = '\0';
        for (int k = 0; k < n->nodes; k++)
            if (k != i)
                used += (size_t)snprintf(routes + used, sizeof routes - used, "%snats://127.0.0.1:%d",
                                         used ? "," : "", n->node[k].cport);
        snprintf(listen, sizeof listen, "nats://127.0.0.1:%d", d->cport);
        argv[argc++] = "--cluster";
        argv[argc++] = listen;
        argv[argc++] = "--cluster_name";
        argv[argc++] = "natst";
        argv[argc++] = "--routes";
        argv[argc++] = routes;
    }
    argv[argc] = NULL;

    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "# natst: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0)
            _exit(120);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        if (getppid() != parent)
            _exit(121);
        execvp("nats-server", (char *const *)argv);
        _exit(122);
    }
    d->pid = pid;
    d->paused = false;
    raw_track(pid, true);
    return 0;
}

static void natst_reaped(natst_node *d)
{
    raw_track(d->pid, false);
    d->pid = 0;
    d->paused = false;
}

/* Non-blocking: true (and the node marked stopped) if it has exited. */
static bool natst_exited(natst_node *d, int *status)
{
    int st;
    if (d->pid <= 0)
        return true;
    if (waitpid(d->pid, &st, WNOHANG) != d->pid)
        return false;
    if (status)
        *status = st;
    natst_reaped(d);
    return true;
}

static int natst_decode(int st)
{
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void natst_sigkill(natst_node *d)
{
    int st;
    if (d->pid <= 0)
        return;
    kill(d->pid, SIGKILL);
    waitpid(d->pid, &st, 0);
    natst_reaped(d);
}

/* ---- readiness ---------------------------------------------------------- */

/* One connection to url that does not reconnect, with short timeouts. */
static natsStatus natst_connect(natsConnection **nc, const char *url)
{
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, url);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, 500);
    if (s == NATS_OK)
        s = natsOptions_SetAllowReconnect(o, false);
    if (s == NATS_OK)
        s = natsConnection_Connect(nc, o);
    natsOptions_Destroy(o);
    return s;
}

/* The step a readiness check reached, and why it stopped. */
typedef struct natst_why {
    char text[256];
} natst_why;

static void natst_say(natst_why *w, const char *step, natsStatus s, jsErrCode jerr)
{
    snprintf(w->text, sizeof w->text, "%s: %s (status %d, JetStream error %d)", step,
             nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(s), (int)s,
             (int)jerr);
}

/* Node url takes a client connection (js false), or also answers
 * js_GetAccountInfo (js true) and, with replicas > 1, lets a memory stream
 * with that many replicas be created and deleted. 0 or -1 (why set). */
static int natst_probe(const char *url, bool js, int replicas, natst_why *w)
{
    natsConnection *nc = NULL;
    jsCtx *jc = NULL;
    jsAccountInfo *ai = NULL;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    jsOptions jo;
    int rc = -1;

    natsStatus s = natst_connect(&nc, url);
    if (s != NATS_OK) {
        natst_say(w, "connect", s, 0);
        goto done;
    }
    if (!js) {
        rc = 0;
        goto done;
    }
    jsOptions_Init(&jo);
    jo.Wait = 2000;
    if ((s = natsConnection_JetStream(&jc, nc, &jo)) != NATS_OK) {
        natst_say(w, "JetStream context", s, 0);
        goto done;
    }
    if ((s = js_GetAccountInfo(&ai, jc, NULL, &jerr)) != NATS_OK) {
        natst_say(w, "js_GetAccountInfo", s, jerr);
        goto done;
    }
    if (replicas > 1) {
        const char *subj[] = {"natst.ready"};
        jsStreamConfig sc;
        jsStreamConfig_Init(&sc);
        sc.Name = NATST_READY_STREAM;
        sc.Subjects = subj;
        sc.SubjectsLen = 1;
        sc.Storage = js_MemoryStorage;
        sc.Replicas = replicas;
        if ((s = js_AddStream(&si, jc, &sc, NULL, &jerr)) != NATS_OK) {
            natst_say(w, "js_AddStream R>1", s, jerr);
            goto done;
        }
        if ((s = js_DeleteStream(jc, NATST_READY_STREAM, NULL, &jerr)) != NATS_OK) {
            natst_say(w, "js_DeleteStream", s, jerr);
            goto done;
        }
    }
    rc = 0;
done:
    jsStreamInfo_Destroy(si);
    jsAccountInfo_Destroy(ai);
    jsCtx_Destroy(jc);
    natsConnection_Destroy(nc);
    return rc;
}

/* Waits until deadline for node i to pass natst_probe (see there). A node
 * that exits meanwhile ends the wait: *exited is set. 0 or -1. */
static int natst_wait_node(natst *n, int i, bool js, int replicas, int64_t deadline, bool *exited,
                           natst_why *w)
{
    natst_node *d = &n->node[i];
    int st = 0;
    *exited = false;
    snprintf(w->text, sizeof w->text, "no answer yet");
    for (;;) {
        if (natst_exited(d, &st)) {
            *exited = true;
            snprintf(w->text, sizeof w->text, "exited (status %d)", natst_decode(st));
            return -1;
        }
        if (natst_probe(d->url, js, replicas, w) == 0)
            return 0;
        if (tkt_now_ms() >= deadline)
            return -1;
        tkt_sleep_ms(50);
    }
}

static void natst_fail(natst *n, int i, const char *what, const natst_why *w)
{
    fprintf(stderr, "# natst: node %s (%s): %s: %s; log %s\n", n->node[i].name, n->node[i].url,
            what, w->text, n->node[i].log);
    natst_keep(n);
}

int natst_ready(natst *n, int timeout_ms)
{
    int64_t deadline = tkt_now_ms() + timeout_ms;
    natst_why w;
    bool exited;
    int first = -1;
    for (int i = 0; i < n->nodes; i++) {
        if (n->node[i].pid <= 0 || n->node[i].paused)
            continue;
        if (natst_wait_node(n, i, true, 1, deadline, &exited, &w)) {
            natst_fail(n, i, "JetStream not ready", &w);
            return -1;
        }
        if (first < 0)
            first = i;
    }
    if (n->nodes > 1 && first >= 0 &&
        natst_wait_node(n, first, true, n->nodes, deadline, &exited, &w)) {
        natst_fail(n, first, "no replicated stream (meta leader, peers)", &w);
        return -1;
    }
    return 0;
}

/* ---- the cluster -------------------------------------------------------- */

static void natst_set_urls(natst *n)
{
    size_t used = 0;
    n->urls[0] = '\0';
    for (int i = 0; i < n->nodes; i++) {
        natst_node *d = &n->node[i];
        snprintf(d->url, sizeof d->url, "nats://127.0.0.1:%d", d->port);
        used += (size_t)snprintf(n->urls + used, sizeof n->urls - used, "%s%s", i ? "," : "", d->url);
    }
}

/* One attempt of natst_start on fresh ports: 0, 1 if a node could not
 * bind its port (try again), -1 otherwise. */
static int natst_try(natst *n)
{
    int ports[2 * NATST_MAX];
    int64_t deadline = tkt_now_ms() + NATST_WAIT_MS;
    natst_why w;
    bool exited;
    if (natst_ports(ports, 2 * n->nodes)) {
        fprintf(stderr, "# natst: no free port: %s\n", strerror(errno));
        return -1;
    }
    for (int i = 0; i < n->nodes; i++) {
        n->node[i].port = ports[2 * i];
        n->node[i].cport = n->nodes > 1 ? ports[2 * i + 1] : 0;
    }
    natst_set_urls(n);
    for (int i = 0; i < n->nodes; i++)
        if (natst_spawn(n, i))
            return -1;
    for (int i = 0; i < n->nodes; i++) {
        if (natst_wait_node(n, i, false, 1, deadline, &exited, &w) == 0)
            continue;
        if (exited && natst_log_has(&n->node[i], "address already in use")) {
            fprintf(stderr, "# natst: node %s: a port was taken; trying new ones\n",
                    n->node[i].name);
            return 1;
        }
        natst_fail(n, i, "no client connection", &w);
        return -1;
    }
    return natst_ready(n, (int)(deadline - tkt_now_ms()));
}

bool natst_available(void)
{
    const char *path = getenv("PATH");
    char buf[PATH_MAX];
    while (path && *path) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        snprintf(buf, sizeof buf, "%.*s/nats-server", (int)len, path);
        if (access(buf, X_OK) == 0)
            return true;
        path = end ? end + 1 : NULL;
    }
    return false;
}

int natst_start(natst *n, int nodes)
{
    memset(n, 0, sizeof *n);
    if (nodes != 1 && nodes != 3) {
        fprintf(stderr, "# natst: %d nodes: 1 or 3\n", nodes);
        return -1;
    }
    n->nodes = nodes;
    if (!(n->tmp = tkt_mkdtemp()))
        return -1;
    for (int i = 0; i < nodes; i++) {
        natst_node *d = &n->node[i];
        char name[24];
        snprintf(d->name, sizeof d->name, "n%d", i);
        snprintf(name, sizeof name, "%s.log", d->name);
        d->store = tkt_path(n->tmp, d->name);
        d->log = tkt_path(n->tmp, name);
        if (!d->store || !d->log || mkdir(d->store, 0700) != 0)
            return -1;
    }
    for (int t = 0; t < NATST_TRIES; t++) {
        int rc = natst_try(n);
        if (rc == 0)
            return 0;
        for (int i = 0; i < nodes; i++)
            natst_sigkill(&n->node[i]);
        if (rc < 0)
            return -1;
        for (int i = 0; i < nodes; i++) { /* no state of the failed attempt */
            tkt_rmdir(n->node[i].store);
            if (mkdir(n->node[i].store, 0700) != 0)
                return -1;
        }
    }
    fprintf(stderr, "# natst: ports taken %d times; logs in %s\n", NATST_TRIES, n->tmp);
    natst_keep(n);
    return -1;
}

const char *natst_url(const natst *n)
{
    return n->urls;
}

const char *natst_node_url(const natst *n, int i)
{
    return n->node[i].url;
}

int natst_kill(natst *n, int i)
{
    if (n->node[i].pid <= 0)
        return -1;
    natst_sigkill(&n->node[i]);
    return 0;
}

/* Waits until deadline for node d to exit; its exit code, or -1. */
static int natst_wait_exit(natst_node *d, int64_t deadline)
{
    int st = 0;
    for (;;) {
        if (natst_exited(d, &st))
            return natst_decode(st);
        if (tkt_now_ms() >= deadline)
            return -1;
        tkt_sleep_ms(5);
    }
}

static void natst_term(natst_node *d)
{
    kill(d->pid, SIGTERM);
    if (d->paused) /* a stopped process takes SIGTERM only once continued */
        kill(d->pid, SIGCONT);
}

int natst_stop(natst *n, int i)
{
    natst_node *d = &n->node[i];
    if (d->pid <= 0)
        return -1;
    natst_term(d);
    int rc = natst_wait_exit(d, tkt_now_ms() + 10000);
    if (rc < 0 && d->pid > 0) {
        fprintf(stderr, "# natst: node %s ignored SIGTERM for 10 s: killed\n", d->name);
        natst_sigkill(d);
    }
    return rc;
}

void natst_stop_all(natst *n)
{
    int64_t deadline = tkt_now_ms() + 10000;
    for (int i = 0; i < n->nodes; i++)
        if (n->node[i].pid > 0)
            natst_term(&n->node[i]);
    for (int i = 0; i < n->nodes; i++) {
        natst_node *d = &n->node[i];
        if (d->pid > 0 && natst_wait_exit(d, deadline) < 0 && d->pid > 0) {
            fprintf(stderr, "# natst: node %s ignored SIGTERM for 10 s: killed\n", d->name);
            natst_sigkill(d);
        }
    }
}

int natst_restart(natst *n, int i)
{
    natst_node *d = &n->node[i];
    int64_t deadline = tkt_now_ms() + NATST_WAIT_MS;
    natst_why w;
    bool exited;
    if (d->pid > 0) {
        fprintf(stderr, "# natst: restart of node %s, which is running\n", d->name);
        return -1;
    }
    if (natst_spawn(n, i))
        return -1;
    if (natst_wait_node(n, i, false, 1, deadline, &exited, &w)) {
        natst_fail(n, i, exited ? "restart failed (port taken?)" : "no client connection after restart",
                   &w);
        natst_sigkill(d);
        return -1;
    }
    int up = 0;
    for (int k = 0; k < n->nodes; k++)
        up += n->node[k].pid > 0 && !n->node[k].paused;
    if (2 * up <= n->nodes)
        return 0;
    if (natst_wait_node(n, i, true, 1, deadline, &exited, &w)) {
        natst_fail(n, i, "no JetStream after restart", &w);
        return -1;
    }
    return 0;
}

int natst_restart_all(natst *n)
{
    /* A cluster restarted whole elects its JetStream meta leader in 6-10 s
     * on nats-server 2.9, and was seen to take over 20 s on a loaded
     * machine: twice the usual wait. */
    int64_t deadline = tkt_now_ms() + 2 * NATST_WAIT_MS;
    natst_why w;
    bool exited;
    for (int i = 0; i < n->nodes; i++)
        if (n->node[i].pid <= 0 && natst_spawn(n, i))
            return -1;
    for (int i = 0; i < n->nodes; i++)
        if (natst_wait_node(n, i, false, 1, deadline, &exited, &w)) {
            natst_fail(n, i, "no client connection after restart", &w);
            return -1;
        }
    return natst_ready(n, (int)(deadline - tkt_now_ms()));
}

/* 1 when every thread of pid is in the stopped state ('T' in its
 * /proc/PID/task/TID/stat), 0 when one is not yet, -1 on error. */
static int natst_all_stopped(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *dir = opendir(path);
    if (!dir)
        return -1;
    int all = 1;
    struct dirent *e;
    while (all == 1 && (e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char stat[320], text[512];
        snprintf(stat, sizeof stat, "/proc/%d/task/%s/stat", (int)pid, e->d_name);
        FILE *fp = fopen(stat, "r");
        if (!fp)
            continue; /* the thread has just ended */
        size_t len = fread(text, 1, sizeof text - 1, fp);
        fclose(fp);
        text[len] = '\0';
        /* "tid (comm) S ...": comm may hold spaces or ')', so the state
         * follows the last ')'. */
        const char *close = strrchr(text, ')');
        if (close && close[1] == ' ' && close[2] != 'T' && close[2] != 't')
            all = 0;
    }
    closedir(dir);
    return all;
}

/* kill(SIGSTOP) returns before the node has stopped: the kernel wakes one
 * thread to take the signal, and the others run on until it has been
 * scheduled and stops them. On a busy machine that took long enough for a
 * "paused" node to route a publish and deliver its ack (seen in CI), so
 * this returns only once every thread is stopped. */
int natst_pause(natst *n, int i)
{
    natst_node *d = &n->node[i];
    if (d->pid <= 0 || kill(d->pid, SIGSTOP) != 0)
        return -1;
    d->paused = true;
    int64_t deadline = tkt_now_ms() + 5000;
    int st;
    while ((st = natst_all_stopped(d->pid)) == 0 && tkt_now_ms() < deadline)
        tkt_sleep_ms(1);
    if (st != 1)
        fprintf(stderr, "# natst: node %s not stopped 5 s after SIGSTOP\n", d->name);
    return st == 1 ? 0 : -1;
}

int natst_resume(natst *n, int i)
{
    natst_node *d = &n->node[i];
    if (d->pid <= 0 || kill(d->pid, SIGCONT) != 0)
        return -1;
    d->paused = false;
    return 0;
}

void natst_keep(natst *n)
{
    if (!n->keep && n->tmp)
        fprintf(stderr, "# natst: keeping %s (logs n*.log, stores n*/)\n", n->tmp);
    n->keep = true;
}

void natst_free(natst *n)
{
    const char *env = getenv("NATST_KEEP");
    for (int i = 0; i < n->nodes; i++)
        natst_sigkill(&n->node[i]);
    if (env && *env && strcmp(env, "0") != 0)
        natst_keep(n);
    if (n->tmp && !n->keep)
        tkt_rmdir(n->tmp);
    for (int i = 0; i < NATST_MAX; i++) {
        free(n->node[i].store);
        free(n->node[i].log);
    }
    free(n->tmp);
    memset(n, 0, sizeof *n);
}
