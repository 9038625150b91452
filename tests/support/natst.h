/*
 * natst.h - real NATS JetStream servers for a test: one nats-server, or a
 * cluster of three, as child processes on loopback, each with its own store
 * directory and log file under one temp dir, that a test can kill, stop,
 * pause and restart one by one (the replication tests' failures).
 *
 * Child processes rather than anything in-process: the replicas must meet
 * the server the way they will in production, with its elections, its
 * timeouts and its files. Each child gets SIGKILL when the thread that
 * started it dies (PR_SET_PDEATHSIG: start nodes from the test's main
 * thread) and is tracked for raw_watchdog (tests/support/raw.h).
 *
 * Ports: each node's client and route ports are chosen by binding
 * 127.0.0.1:0 and closing; another process may take one before nats-server
 * binds it, so natst_start tries again with new ports (three times) when a
 * node fails to start. natst_restart reuses the node's ports.
 *
 * Nodes are numbered 0 .. nodes-1. Prefix natst_.
 */
#ifndef TK_TEST_NATST_H
#define TK_TEST_NATST_H
#include <stdbool.h>
#include <sys/types.h>

#define NATST_MAX 3

typedef struct natst_node {
    pid_t pid;     /* 0 when not running */
    bool paused;   /* SIGSTOPped by natst_pause */
    int port;      /* client port */
    int cport;     /* route (cluster) port; 0 for a single node */
    char name[16]; /* server name: n0, n1, n2 */
    char url[32];  /* nats://127.0.0.1:port */
    char *store;   /* JetStream store dir (-sd), under the temp dir (owned) */
    char *log;     /* stdout and stderr, appended to across restarts (owned) */
} natst_node;

typedef struct natst {
    int nodes;
    natst_node node[NATST_MAX];
    char *tmp;                   /* the temp dir (owned) */
    char urls[NATST_MAX * 32];   /* every node's url, comma-separated */
    bool keep;                   /* natst_free keeps tmp (natst_keep) */
} natst;

/* Starts nodes (1 or 3) nats-server processes with JetStream (-js) on
 * fresh ports and store dirs; three form a cluster ("natst", full routes).
 * Returns once every node answers a JetStream request (js_GetAccountInfo
 * over its own connection) and, for a cluster, a memory stream with three
 * replicas could be created and deleted (a meta leader is elected and
 * every peer is known): at most 20 s. 0, or -1 with the reason on stderr;
 * on -1 everything started is killed and the temp dir is kept (its path
 * printed), and n must still be given to natst_free. */
/* True when nats-server is on PATH (make deps installs it). */
bool natst_available(void);

int natst_start(natst *n, int nodes);

/* Every node's URL, comma-separated, for natsOptions_SetURL or
 * natsConnection_ConnectTo: borrowed from n. */
const char *natst_url(const natst *n);

/* Node i's URL, borrowed from n. */
const char *natst_node_url(const natst *n, int i);

/* SIGKILL node i and reap it. 0, or -1 if it was not running. */
int natst_kill(natst *n, int i);

/* SIGTERM node i (SIGCONT first if paused), wait at most 10 s, then
 * SIGKILL. Its exit code (128 + signal if a signal ended it), or -1 if it
 * was not running or had to be killed. */
int natst_stop(natst *n, int i);

/* Starts node i again (it must not be running) with the same name, ports,
 * store dir and routes. Waits at most 20 s for its client port to take a
 * connection and, when a majority of the nodes is then running, for
 * JetStream to answer on it; a lone node of a stopped cluster answers
 * nothing until a quorum is back (natst_ready waits for that). 0 or -1. */
int natst_restart(natst *n, int i);

/* Starts every node that is not running, all at once (a cluster's
 * elections after a full stop go faster with every voter present than
 * one restart at a time), then natst_ready: at most 40 s in all. 0 or -1. */
int natst_restart_all(natst *n);

/* Waits at most timeout_ms for every running node to answer JetStream
 * and, for a cluster, for a replicated stream to be creatable as in
 * natst_start (it is deleted again). 0, or -1 with the reason on stderr. */
int natst_ready(natst *n, int timeout_ms);

/* SIGSTOP / SIGCONT node i: a node that hangs (its sockets stay open,
 * nothing answers) rather than dies. natst_pause returns once every
 * thread of the node has stopped. 0, or -1 if it is not running (or, for
 * natst_pause, has not stopped within 5 s). */
int natst_pause(natst *n, int i);
int natst_resume(natst *n, int i);

/* natst_stop on every running node. */
void natst_stop_all(natst *n);

/* natst_free will keep the temp dir (logs and stores); prints its path.
 * NATST_KEEP=1 in the environment does the same for every natst. */
void natst_keep(natst *n);

/* Kills (SIGKILL) and reaps every node still running, removes the temp
 * dir unless kept, frees what n owns and zeroes it. Safe on a zeroed n. */
void natst_free(natst *n);

#endif
