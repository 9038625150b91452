/*
 * modes.h - tokenbench's modes, each one function from parsed options to
 * one JSON object of results (main.c prints it). Every result holds
 * "ops_per_sec"; the load-generator modes also hold latency quantiles.
 *
 * Exit status, the same for every mode: 0 when the run was clean, 1 when it
 * ran but saw a wrong answer or a broken connection (the JSON is printed
 * all the same), 2 for a usage error, 3 when it could not run.
 */
#ifndef TB_MODES_H
#define TB_MODES_H
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

typedef struct tb_args {
    const char *mode;
    const char *addr;          /* --addr HOST:PORT */
    const char *url;           /* --url http://HOST:PORT/PATH (http: a peer server) */
    int expect_status;         /* --expect-status (http --url): 0 = any 2xx */
    const char *key;           /* --key: the operator key (text, or @FILE to read it) */
    const char *tokens_file;   /* --tokens-file */
    const char *out;           /* --out (load) */
    const char *dir;           /* --dir (index: keep the data directory there) */
    size_t tokens;             /* --tokens N (load, index) */
    unsigned connections;      /* --connections */
    unsigned pipeline;         /* --pipeline */
    unsigned threads;          /* --threads (generator threads) */
    unsigned window;           /* --window (load: creates in flight) */
    double duration, warmup;   /* --duration, --warmup (seconds) */
    double invalid_ratio;      /* --invalid-ratio */
    double zipf;               /* --zipf */
    bool load_first;           /* --load (redis: write the records first) */
    bool tls;                  /* --tls: every connection over TLS (not http) */
    const char *ca;            /* --ca FILE: the CA the server's certificate must chain to
                                  and name the host of --addr (NULL: the system's) */
    const char *tenant, *account, *user, *role; /* load/create: what to set up */
    const char *replicas;      /* --replicas A,B,... (lag) */
    double interval_ms;        /* --interval (lag: pause between two creates) */
} tb_args;

enum { TB_OK = 0, TB_WRONG = 1, TB_USAGE = 2, TB_FAIL = 3 };

/* Each returns a TB_* status and, unless TB_USAGE or TB_FAIL, sets *out to
 * a new JSON object (owned by the caller). */
int mode_load(const tb_args *a, json_t **out);
int mode_redis_load(const tb_args *a, json_t **out);
int mode_verify(const tb_args *a, json_t **out);  /* tokend */
int mode_redis(const tb_args *a, json_t **out);   /* redis GET, same workload */
int mode_http(const tb_args *a, json_t **out);    /* GET /v1/verify (tokend), or a URL */
int mode_create(const tb_args *a, json_t **out);
int mode_redis_create(const tb_args *a, json_t **out);
int mode_delete(const tb_args *a, json_t **out); /* TOKEN_DELETE of a tokens file's tokens */
int mode_lag(const tb_args *a, json_t **out);    /* replication delay, create -> replica verifies */
int mode_index(const tb_args *a, json_t **out);

#endif
