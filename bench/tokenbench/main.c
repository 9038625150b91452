/*
 * main.c - tokenbench: load generator and microbenchmarks for tokend, with
 * the same workload against Redis and, over HTTP, any HTTP server
 * (docs/bench.md). Parses the options,
 * runs one mode (modes.h), prints its result: one JSON object with --json,
 * else one "name value" line per figure.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "bench/tokenbench/modes.h"

static const char usage[] =
    "usage: tokenbench MODE [options] [--json]\n"
    "  load         --addr A --key OPKEY|@FILE --tokens N --out FILE [--window W]\n"
    "  redis-load   --addr A --tokens-file F\n"
    "  verify       --addr A --tokens-file F [load options]\n"
    "  redis        --addr A --tokens-file F [load options] [--load]\n"
    "  http         --addr A | --url http://HOST:PORT/PATH --tokens-file F [load options]\n"
    "               [--expect-status N]   (--addr: tokend's HTTP listener, GET /v1/verify;\n"
    "               --url: any server, each answer N, or any 2xx)\n"
    "  create       --addr A --key OPKEY|@FILE [load options]\n"
    "  redis-create --addr A [load options]\n"
    "  delete       --addr A --key OPKEY|@FILE --tokens-file F [load options]\n"
    "               (TOKEN_DELETE, each token of F once: F must hold more than the run deletes)\n"
    "  lag          --addr PRIMARY --replicas A[,B...] --key OPKEY|@FILE [--tokens N (200)]\n"
    "               [--interval MS (10)]   (N creates on the primary, one at a time: from each\n"
    "               acknowledgement to the token verifying on every replica)\n"
    "  index        [--tokens N] [--dir DIR]\n"
    "load options: --connections C (1) --pipeline P (1) --duration S (10) --warmup S (1)\n"
    "              --threads T (1) --invalid-ratio R (0) --zipf S (0: uniform)\n"
    "set-up names: --tenant (bench) --account (acct) --user (loader) --role (reader)\n"
    "TLS (not http): --tls [--ca FILE] (the server's certificate must chain to FILE's CA\n"
    "              and name the host of --addr)\n"
    "exit: 0 clean, 1 wrong answers or broken connections, 2 usage, 3 could not run\n";

static const struct {
    const char *name;
    int (*fn)(const tb_args *, json_t **);
} modes[] = {
    {"load", mode_load},     {"redis-load", mode_redis_load},
    {"verify", mode_verify}, {"redis", mode_redis},
    {"http", mode_http},
    {"create", mode_create}, {"redis-create", mode_redis_create},
    {"delete", mode_delete}, {"lag", mode_lag},
    {"index", mode_index},
};

static int num(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "tokenbench: %s wants a number in [%g, %g], not '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static void print_plain(json_t *o)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        if (json_is_string(v))
            printf("%-22s %s\n", k, json_string_value(v));
        else if (json_is_integer(v))
            printf("%-22s %lld\n", k, (long long)json_integer_value(v));
        else if (json_is_real(v))
            printf("%-22s %.3f\n", k, json_real_value(v));
    }
}

int main(int argc, char **argv)
{
    enum { O_ADDR = 256, O_KEY, O_TOKFILE, O_OUT, O_DIR, O_TOKENS, O_CONN, O_PIPE, O_THREADS,
           O_WINDOW, O_DUR, O_WARM, O_INVALID, O_ZIPF, O_LOAD, O_JSON, O_TENANT, O_ACCOUNT,
           O_USER, O_ROLE, O_URL, O_EXPECT, O_TLS, O_CA, O_REPLICAS, O_INTERVAL, O_HELP };
    static const struct option opts[] = {
        {"addr", 1, 0, O_ADDR},          {"key", 1, 0, O_KEY},
        {"tokens-file", 1, 0, O_TOKFILE}, {"out", 1, 0, O_OUT},
        {"dir", 1, 0, O_DIR},            {"tokens", 1, 0, O_TOKENS},
        {"connections", 1, 0, O_CONN},   {"pipeline", 1, 0, O_PIPE},
        {"threads", 1, 0, O_THREADS},    {"window", 1, 0, O_WINDOW},
        {"duration", 1, 0, O_DUR},       {"warmup", 1, 0, O_WARM},
        {"invalid-ratio", 1, 0, O_INVALID}, {"zipf", 1, 0, O_ZIPF},
        {"load", 0, 0, O_LOAD},          {"json", 0, 0, O_JSON},
        {"tenant", 1, 0, O_TENANT},      {"account", 1, 0, O_ACCOUNT},
        {"user", 1, 0, O_USER},          {"role", 1, 0, O_ROLE},
        {"url", 1, 0, O_URL},            {"expect-status", 1, 0, O_EXPECT},
        {"tls", 0, 0, O_TLS},            {"ca", 1, 0, O_CA},
        {"replicas", 1, 0, O_REPLICAS},  {"interval", 1, 0, O_INTERVAL},
        {"help", 0, 0, O_HELP},          {0, 0, 0, 0},
    };
    tb_args a = {
        .connections = 1, .pipeline = 1, .threads = 1, .window = 256,
        .duration = 10, .warmup = 1, .interval_ms = 10,
        .tenant = "bench", .account = "acct", .user = "loader", .role = "reader",
    };
    bool json = false;
    double d;
    int c;

    if (argc < 2 || argv[1][0] == '-') {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? TB_USAGE : TB_OK;
    }
    a.mode = argv[1];
    optind = 2;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_ADDR: a.addr = optarg; break;
        case O_KEY: a.key = optarg; break;
        case O_TOKFILE: a.tokens_file = optarg; break;
        case O_OUT: a.out = optarg; break;
        case O_DIR: a.dir = optarg; break;
        case O_TENANT: a.tenant = optarg; break;
        case O_ACCOUNT: a.account = optarg; break;
        case O_USER: a.user = optarg; break;
        case O_ROLE: a.role = optarg; break;
        case O_URL: a.url = optarg; break;
        case O_EXPECT:
            if (num("--expect-status", optarg, 200, 599, &d)) return TB_USAGE;
            a.expect_status = (int)d;
            break;
        case O_LOAD: a.load_first = true; break;
        case O_TLS: a.tls = true; break;
        case O_CA: a.ca = optarg; break;
        case O_REPLICAS: a.replicas = optarg; break;
        case O_INTERVAL:
            if (num("--interval", optarg, 0, 60000, &a.interval_ms)) return TB_USAGE;
            break;
        case O_JSON: json = true; break;
        case O_HELP: fputs(usage, stdout); return TB_OK;
        case O_TOKENS:
            if (num("--tokens", optarg, 1, 4e9, &d)) return TB_USAGE;
            a.tokens = (size_t)d;
            break;
        case O_CONN:
            if (num("--connections", optarg, 1, 10000, &d)) return TB_USAGE;
            a.connections = (unsigned)d;
            break;
        case O_PIPE:
            if (num("--pipeline", optarg, 1, 1024, &d)) return TB_USAGE;
            a.pipeline = (unsigned)d;
            break;
        case O_THREADS:
            if (num("--threads", optarg, 1, 8, &d)) return TB_USAGE;
            a.threads = (unsigned)d;
            break;
        case O_WINDOW:
            if (num("--window", optarg, 1, 1024, &d)) return TB_USAGE;
            a.window = (unsigned)d;
            break;
        case O_DUR:
            if (num("--duration", optarg, 0.01, 86400, &a.duration)) return TB_USAGE;
            break;
        case O_WARM:
            if (num("--warmup", optarg, 0, 3600, &a.warmup)) return TB_USAGE;
            break;
        case O_INVALID:
            if (num("--invalid-ratio", optarg, 0, 1, &a.invalid_ratio)) return TB_USAGE;
            break;
        case O_ZIPF:
            if (num("--zipf", optarg, 0, 10, &a.zipf)) return TB_USAGE;
            break;
        default: fputs(usage, stderr); return TB_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tokenbench: unexpected argument '%s'\n", argv[optind]);
        return TB_USAGE;
    }
    if (a.threads > a.connections)
        a.threads = a.connections;
    if (sodium_init() < 0) {
        fprintf(stderr, "tokenbench: libsodium failed to start\n");
        return TB_FAIL;
    }
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        if (strcmp(modes[i].name, a.mode))
            continue;
        json_t *out = NULL;
        int rc = modes[i].fn(&a, &out);
        if (rc == TB_USAGE)
            fputs(usage, stderr);
        if (out) {
            if (json) {
                json_dumpf(out, stdout, JSON_COMPACT | JSON_REAL_PRECISION(10));
                putchar('\n');
            } else {
                print_plain(out);
            }
            json_decref(out);
        }
        return rc;
    }
    fprintf(stderr, "tokenbench: unknown mode '%s'\n", a.mode);
    fputs(usage, stderr);
    return TB_USAGE;
}
