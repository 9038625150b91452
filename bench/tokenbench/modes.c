/*
 * modes.c - the network modes: load and redis-load (write the same tokens
 * into each server), verify and redis (the same read workload), create and
 * redis-create (durable writes), http (the same verifications over HTTP/1.1,
 * to tokend's HTTP listener or any server by URL). Each builds its driver
 * and hands it to the one generator (gen.h), so every server sees the same
 * connections, pipelining, request mix and measurement.
 */
#include "bench/tokenbench/modes.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "bench/tokenbench/gen.h"
#include "bench/tokenbench/http.h"
#include "bench/tokenbench/redis.h"
#include "bench/tokenbench/tokend.h"
#include "bench/tokenbench/work.h"
#include "core/xmalloc.h"

#define INVALID_SECRETS 4096 /* distinct unknown secrets for --invalid-ratio */
#define KEY_MAX 256

static int need(const char *what, const void *v)
{
    if (!v)
        fprintf(stderr, "tokenbench: this mode needs %s\n", what);
    return v ? 0 : -1;
}

/* The operator key: the text itself, or "@FILE" to read it from FILE. */
static int read_key(const char *spec, char out[KEY_MAX])
{
    if (spec[0] != '@') {
        snprintf(out, KEY_MAX, "%s", spec);
        return 0;
    }
    FILE *f = fopen(spec + 1, "r");
    if (!f || !fgets(out, KEY_MAX, f)) {
        fprintf(stderr, "tokenbench: cannot read the key from %s: %s\n", spec + 1,
                f ? "empty file" : strerror(errno));
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

static void put_real(json_t *o, const char *k, double v)
{
    json_object_set_new(o, k, json_real(v));
}

static void put_int(json_t *o, const char *k, uint64_t v)
{
    json_object_set_new(o, k, json_integer((json_int_t)v));
}

static void put_str(json_t *o, const char *k, const char *v)
{
    json_object_set_new(o, k, json_string(v));
}

static json_t *header(const char *mode, const char *target, const char *addr)
{
    json_t *o = json_object();
    put_str(o, "mode", mode);
    put_str(o, "target", target);
    if (addr)
        put_str(o, "addr", addr);
    return o;
}

static uint32_t counter_pick(void *arg, uint64_t *rng)
{
    (void)rng;
    return atomic_fetch_add((_Atomic uint32_t *)arg, 1);
}

/* --tls: the client library's settings (set-up and load) in *ct, and the
 * generator's context in *gt (owned by the caller: tls_free); *gt NULL
 * without --tls. 0, or -1 with the reason on stderr. */
static int tls_of(const tb_args *a, tkc_tls *ct, tls **gt)
{
    tk_why why;
    *gt = NULL;
    *ct = (tkc_tls){.ca = a->ca};
    if (!a->tls)
        return 0;
    tls_client_opts o = {.ca = a->ca};
    if (tls_client_new(&o, gt, &why) != 0) {
        fprintf(stderr, "tokenbench: %s\n", why.msg);
        return -1;
    }
    return 0;
}

/* Runs the generator (over TLS with t) and writes its figures into o;
 * TB_OK / TB_WRONG / TB_FAIL. */
static int run(const tb_args *a, tls *t, const gen_driver *d, uint32_t (*pick)(void *, uint64_t *),
               void *pick_arg, json_t *o)
{
    gen_opts g = {
        .addr = a->addr,
        .tls = t,
        .connections = a->connections,
        .pipeline = a->pipeline,
        .threads = a->threads,
        .warmup_s = a->warmup,
        .duration_s = a->duration,
        .pick = pick,
        .pick_arg = pick_arg,
    };
    gen_result *r = xmalloc(sizeof *r);
    put_int(o, "connections", a->connections);
    put_int(o, "pipeline", a->pipeline);
    json_object_set_new(o, "tls", json_boolean(t != NULL));
    put_int(o, "threads", a->threads);
    put_real(o, "warmup_s", a->warmup);
    put_real(o, "duration_s", a->duration);
    if (gen_run(&g, d, r) != 0) {
        free(r);
        return TB_FAIL;
    }
    put_int(o, "ops", r->ops);
    put_real(o, "ops_per_sec", (double)r->ops / r->seconds);
    put_real(o, "mean_us", r->lat.count ? r->lat.sum / (double)r->lat.count / 1e3 : 0);
    put_real(o, "p50_us", (double)hist_quantile(&r->lat, 0.50) / 1e3);
    put_real(o, "p90_us", (double)hist_quantile(&r->lat, 0.90) / 1e3);
    put_real(o, "p99_us", (double)hist_quantile(&r->lat, 0.99) / 1e3);
    put_real(o, "p999_us", (double)hist_quantile(&r->lat, 0.999) / 1e3);
    put_real(o, "max_us", (double)r->lat.max / 1e3);
    put_int(o, "checked", r->checked);
    put_int(o, "wrong", r->wrong);
    put_int(o, "errors", r->errors);
    put_real(o, "generator_cpu", r->wall_s > 0 ? r->cpu_s / r->wall_s : 0);
    int rc = r->wrong || r->errors || r->ops == 0 ? TB_WRONG : TB_OK;
    if (r->wrong)
        fprintf(stderr, "tokenbench: %llu wrong answers of %llu\n",
                (unsigned long long)r->wrong, (unsigned long long)r->checked);
    free(r);
    return rc;
}

/* ---- load ------------------------------------------------------------------- */

int mode_load(const tb_args *a, json_t **out)
{
    char okey[KEY_MAX], pkey[TK_SECRET_LEN + 1];
    tkd_world w = {a->tenant, a->account, a->user, a->role};
    work_tokens t;
    double secs;

    tkc_tls ct;
    tls *gt;
    if (need("--addr", a->addr) || need("--key", a->key) || need("--out", a->out)
        || need("--tokens N > 0", a->tokens ? a : NULL))
        return TB_USAGE;
    if (tls_of(a, &ct, &gt) != 0)
        return TB_FAIL;
    tls_free(gt); /* the client library makes its own */
    if (read_key(a->key, okey) != 0
        || tkd_setup(a->addr, a->tls ? &ct : NULL, okey, &w, pkey) != 0)
        return TB_FAIL;
    work_tokens_alloc(&t, a->tokens, a->tenant, a->account, a->role);
    int rc = tkd_load(a->addr, a->tls ? &ct : NULL, pkey, a->window, &t, &secs);
    if (rc == 0)
        rc = work_tokens_save(a->out, &t);
    work_tokens_free(&t);
    sodium_memzero(pkey, sizeof pkey);
    sodium_memzero(okey, sizeof okey);
    if (rc != 0)
        return TB_FAIL;
    json_t *o = header("load", "tokend", a->addr);
    put_int(o, "tokens", a->tokens);
    put_int(o, "window", a->window);
    put_real(o, "seconds", secs);
    put_real(o, "ops_per_sec", (double)a->tokens / secs);
    put_str(o, "out", a->out);
    *out = o;
    return TB_OK;
}

int mode_redis_load(const tb_args *a, json_t **out)
{
    work_tokens t;
    rds_ctx x;
    double secs;
    tkc_tls ct;
    tls *gt;

    if (need("--addr", a->addr) || need("--tokens-file", a->tokens_file))
        return TB_USAGE;
    if (tls_of(a, &ct, &gt) != 0)
        return TB_FAIL;
    if (work_tokens_read(a->tokens_file, 0, &t) != 0) {
        tls_free(gt);
        return TB_FAIL;
    }
    rds_init(&x, &t);
    int rc = rds_load(a->addr, gt, &x, &secs);
    tls_free(gt);
    if (rc == 0) {
        json_t *o = header("redis-load", "redis", a->addr);
        put_int(o, "tokens", t.n);
        put_real(o, "seconds", secs);
        put_real(o, "ops_per_sec", (double)t.n / secs);
        *out = o;
    }
    rds_free(&x);
    work_tokens_free(&t);
    return rc == 0 ? TB_OK : TB_FAIL;
}

/* ---- verify (tokend) and redis (GET) ---------------------------------------- */

static void put_workload(json_t *o, const tb_args *a, const work_tokens *t)
{
    put_int(o, "tokens", t->n);
    put_real(o, "invalid_ratio", a->invalid_ratio);
    put_real(o, "zipf", a->zipf);
}

int mode_verify(const tb_args *a, json_t **out)
{
    work_tokens t;
    work_pick p;
    tkd_ctx x;
    gen_driver d;
    tkc_tls ct;
    tls *gt;

    if (need("--addr", a->addr) || need("--tokens-file", a->tokens_file))
        return TB_USAGE;
    if (tls_of(a, &ct, &gt) != 0)
        return TB_FAIL;
    if (work_tokens_read(a->tokens_file, INVALID_SECRETS, &t) != 0) {
        tls_free(gt);
        return TB_FAIL;
    }
    if (work_pick_init(&p, &t, a->invalid_ratio, a->zipf) != 0
        || tkd_init(&x, &t, NULL, NULL) != 0) {
        fprintf(stderr, "tokenbench: bad --invalid-ratio, --zipf or roles in the tokens file\n");
        work_tokens_free(&t);
        tls_free(gt);
        return TB_USAGE;
    }
    tkd_verify_driver(&x, &d);
    json_t *o = header("verify", "tokend", a->addr);
    put_workload(o, a, &t);
    int rc = run(a, gt, &d, work_pick_cb, &p, o);
    tls_free(gt);
    work_pick_free(&p);
    work_tokens_free(&t);
    if (rc == TB_FAIL)
        json_decref(o);
    else
        *out = o;
    return rc;
}

int mode_redis(const tb_args *a, json_t **out)
{
    work_tokens t;
    work_pick p;
    rds_ctx x;
    gen_driver d;
    double secs;
    int rc;
    tkc_tls ct;
    tls *gt;

    if (need("--addr", a->addr) || need("--tokens-file", a->tokens_file))
        return TB_USAGE;
    if (tls_of(a, &ct, &gt) != 0)
        return TB_FAIL;
    if (work_tokens_read(a->tokens_file, INVALID_SECRETS, &t) != 0) {
        tls_free(gt);
        return TB_FAIL;
    }
    if (work_pick_init(&p, &t, a->invalid_ratio, a->zipf) != 0) {
        fprintf(stderr, "tokenbench: bad --invalid-ratio or --zipf\n");
        work_tokens_free(&t);
        tls_free(gt);
        return TB_USAGE;
    }
    rds_init(&x, &t);
    rds_get_driver(&x, &d);
    json_t *o = header("redis", "redis", a->addr);
    put_workload(o, a, &t);
    if (a->load_first) {
        if (rds_load(a->addr, gt, &x, &secs) != 0) {
            rc = TB_FAIL;
            goto done;
        }
        put_real(o, "load_ops_per_sec", (double)t.n / secs);
    }
    rc = run(a, gt, &d, work_pick_cb, &p, o);
done:
    tls_free(gt);
    rds_free(&x);
    work_pick_free(&p);
    work_tokens_free(&t);
    if (rc == TB_FAIL)
        json_decref(o);
    else
        *out = o;
    return rc;
}

/* ---- http: gateway verification over HTTP/1.1 --------------------------------- */

/* --addr: tokend's HTTP listener, GET /v1/verify, identity checked; --url:
 * any server (the peer), the same request, its status checked. */
int mode_http(const tb_args *a, json_t **out)
{
    work_tokens t;
    work_pick p;
    htp_ctx *x;
    gen_driver d;
    char verify_url[HTP_HOST_MAX + 32];
    const char *url = a->url;

    if (need("--tokens-file", a->tokens_file)
        || need("--addr or --url", a->addr ? a->addr : a->url))
        return TB_USAGE;
    if (a->addr && a->url) {
        fprintf(stderr, "tokenbench: http takes --addr (tokend's HTTP listener) or --url "
                        "(any server), not both\n");
        return TB_USAGE;
    }
    if (a->tls) {
        fprintf(stderr, "tokenbench: --tls is for verify, redis, load, redis-load, create and "
                        "redis-create, not http\n");
        return TB_USAGE;
    }
    if (a->addr) {
        int n = snprintf(verify_url, sizeof verify_url, "http://%s/v1/verify", a->addr);
        if (n < 0 || (size_t)n >= sizeof verify_url) {
            fprintf(stderr, "tokenbench: --addr too long\n");
            return TB_USAGE;
        }
        url = verify_url;
    }
    if (work_tokens_read(a->tokens_file, INVALID_SECRETS, &t) != 0)
        return TB_FAIL;
    x = xmalloc(sizeof *x);
    if (work_pick_init(&p, &t, a->invalid_ratio, a->zipf) != 0
        || htp_init(x, &t, url, a->addr != NULL, a->expect_status) != 0) {
        fprintf(stderr, "tokenbench: bad --url, --expect-status, --invalid-ratio or --zipf\n");
        work_pick_free(&p);
        work_tokens_free(&t);
        free(x);
        return TB_USAGE;
    }
    htp_driver(x, &d);
    json_t *o = header("http", a->addr ? "tokend-http" : "http", x->addr);
    put_str(o, "url", url);
    if (!a->addr)
        put_int(o, "expect_status", (uint64_t)a->expect_status);
    put_workload(o, a, &t);
    tb_args b = *a;
    b.addr = x->addr;
    int rc = run(&b, NULL, &d, work_pick_cb, &p, o);
    /* Every response parsed (warm-up and drain too), by status. */
    for (int i = 0; i < HTP_STATUS_N; i++)
        if (x->counts[i]) {
            char k[24];
            snprintf(k, sizeof k, "status_%d", HTP_STATUS_MIN + i);
            put_int(o, k, x->counts[i]);
        }
    free(x);
    work_pick_free(&p);
    work_tokens_free(&t);
    if (rc == TB_FAIL)
        json_decref(o);
    else
        *out = o;
    return rc;
}

/* ---- create (tokend) and redis-create (SET) --------------------------------- */

int mode_create(const tb_args *a, json_t **out)
{
    char okey[KEY_MAX], pkey[TK_SECRET_LEN + 1];
    tkd_world w = {a->tenant, a->account, a->user, a->role};
    tkd_ctx x;
    gen_driver d;
    _Atomic uint32_t counter = 0;
    tkc_tls ct;
    tls *gt;

    if (need("--addr", a->addr) || need("--key", a->key))
        return TB_USAGE;
    if (tls_of(a, &ct, &gt) != 0)
        return TB_FAIL;
    if (read_key(a->key, okey) != 0
        || tkd_setup(a->addr, a->tls ? &ct : NULL, okey, &w, pkey) != 0) {
        tls_free(gt);
        return TB_FAIL;
    }
    sodium_memzero(okey, sizeof okey);
    if (tkd_init(&x, NULL, pkey, a->role) != 0) {
        fprintf(stderr, "tokenbench: bad --role\n");
        tls_free(gt);
        return TB_USAGE;
    }
    tkd_create_driver(&x, &d);
    json_t *o = header("create", "tokend", a->addr);
    int rc = run(a, gt, &d, counter_pick, &counter, o);
    tls_free(gt);
    sodium_memzero(pkey, sizeof pkey);
    if (rc == TB_FAIL)
        json_decref(o);
    else
        *out = o;
    return rc;
}

int mode_redis_create(const tb_args *a, json_t **out)
{
    rds_ctx x;
    gen_driver d;
    _Atomic uint32_t counter = 0;
    char aof[32] = "?", fsync[32] = "?";
    tkc_tls ct;
    tls *gt;

    if (need("--addr", a->addr))
        return TB_USAGE;
    if (tls_of(a, &ct, &gt) != 0)
        return TB_FAIL;
    if (rds_config_get(a->addr, gt, "appendonly", aof, sizeof aof) != 0
        || rds_config_get(a->addr, gt, "appendfsync", fsync, sizeof fsync) != 0) {
        fprintf(stderr, "tokenbench: CONFIG GET failed on %s\n", a->addr);
        tls_free(gt);
        return TB_FAIL;
    }
    if (strcmp(aof, "yes") || strcmp(fsync, "always"))
        fprintf(stderr, "tokenbench: warning: redis runs with appendonly %s, appendfsync %s: "
                        "its SETs are not durable when acknowledged\n", aof, fsync);
    rds_init(&x, NULL);
    rds_set_driver(&x, &d);
    json_t *o = header("redis-create", "redis", a->addr);
    put_str(o, "appendonly", aof);
    put_str(o, "appendfsync", fsync);
    int rc = run(a, gt, &d, counter_pick, &counter, o);
    tls_free(gt);
    rds_free(&x);
    if (rc == TB_FAIL)
        json_decref(o);
    else
        *out = o;
    return rc;
}

/* ---- delete (tokend) ---------------------------------------------------------- */

/* TOKEN_DELETE as the operator, each token of the file once (a counter):
 * the durable revocations that the revocation barrier holds back. */
int mode_delete(const tb_args *a, json_t **out)
{
    char okey[KEY_MAX];
    work_tokens t;
    tkd_ctx x;
    gen_driver d;
    _Atomic uint32_t counter = 0;
    tkc_tls ct;
    tls *gt;

    if (need("--addr", a->addr) || need("--key", a->key) || need("--tokens-file", a->tokens_file))
        return TB_USAGE;
    if (read_key(a->key, okey) != 0)
        return TB_FAIL;
    if (tls_of(a, &ct, &gt) != 0)
        return TB_FAIL;
    /* One unknown ID after the tokens: what an item past them deletes. */
    if (work_tokens_read(a->tokens_file, 1, &t) != 0) {
        tls_free(gt);
        return TB_FAIL;
    }
    if (tkd_init(&x, &t, okey, NULL) != 0) {
        fprintf(stderr, "tokenbench: bad roles in the tokens file\n");
        work_tokens_free(&t);
        tls_free(gt);
        return TB_USAGE;
    }
    tkd_delete_driver(&x, &d);
    json_t *o = header("delete", "tokend", a->addr);
    put_int(o, "tokens", t.n);
    int rc = run(a, gt, &d, counter_pick, &counter, o);
    put_int(o, "picked", atomic_load(&counter));
    tls_free(gt);
    work_tokens_free(&t);
    sodium_memzero(okey, sizeof okey);
    if (rc == TB_FAIL)
        json_decref(o);
    else
        *out = o;
    return rc;
}

/* ---- lag: replication delay ---------------------------------------------------- */

#define LAG_MAX_REPLICAS 64
#define LAG_TIMEOUT_NS 10000000000ull /* a token not verifying on a replica by then: a timeout */

static int cmp_u64(const void *p, const void *q)
{
    uint64_t a = *(const uint64_t *)p, b = *(const uint64_t *)q;
    return a < b ? -1 : a > b;
}

/* Quantile q of the sorted v[0..n), in microseconds. */
static double lag_q(const uint64_t *v, size_t n, double q)
{
    if (!n)
        return 0;
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return (double)v[i] / 1e3;
}

static void put_lags(json_t *o, uint64_t *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_u64);
    put_int(o, "samples", n);
    put_real(o, "p50_us", lag_q(v, n, 0.50));
    put_real(o, "p90_us", lag_q(v, n, 0.90));
    put_real(o, "p99_us", lag_q(v, n, 0.99));
    put_real(o, "max_us", n ? (double)v[n - 1] / 1e3 : 0);
}

/* As the benchmark user, N creates on the primary, one at a time, every
 * --interval ms. From each acknowledgement, VERIFY of the new secret on
 * each replica in turn, again and again, until each answers valid: the
 * time from the acknowledgement to that valid answer is the replica's
 * delay (its resolution is one round of VERIFYs over the replicas).
 * "unknown" means not there yet; any other verdict (e.g. "unavailable")
 * is counted apart and the polling goes on. */
int mode_lag(const tb_args *a, json_t **out)
{
    char okey[KEY_MAX], pkey[TK_SECRET_LEN + 1], list[1024];
    tkd_world w = {a->tenant, a->account, a->user, a->role};
    const char *raddr[LAG_MAX_REPLICAS];
    tkc *rep[LAG_MAX_REPLICAS] = {0}, *prim = NULL;
    size_t nr = 0, n = a->tokens ? a->tokens : 200, nlag = 0, timeouts = 0, other = 0;
    uint64_t *lag = NULL, *first = NULL;
    tkc_verify_res res = {0};
    int rc = TB_FAIL;

    if (need("--addr", a->addr) || need("--key", a->key) || need("--replicas", a->replicas))
        return TB_USAGE;
    snprintf(list, sizeof list, "%s", a->replicas);
    for (char *s = strtok(list, ","); s; s = strtok(NULL, ","))
        if (nr < LAG_MAX_REPLICAS)
            raddr[nr++] = s;
    if (!nr)
        return TB_USAGE;
    if (read_key(a->key, okey) != 0 || tkd_setup(a->addr, NULL, okey, &w, pkey) != 0)
        return TB_FAIL;
    sodium_memzero(okey, sizeof okey);
    prim = tkc_new();
    if (tkc_connect(prim, a->addr) != 0 || tkc_auth(prim, pkey, NULL) != 0) {
        fprintf(stderr, "tokenbench: %s: %s\n", a->addr, tkc_errmsg(prim));
        goto done;
    }
    for (size_t i = 0; i < nr; i++) {
        rep[i] = tkc_new();
        if (tkc_connect(rep[i], raddr[i]) != 0) {
            fprintf(stderr, "tokenbench: %s: %s\n", raddr[i], tkc_errmsg(rep[i]));
            goto done;
        }
    }
    lag = xmalloc(n * nr * sizeof *lag);
    first = xmalloc(n * sizeof *first); /* the first replica to verify, per create */
    const char *roles[1] = {a->role};
    for (size_t k = 0; k < n; k++) {
        tkc_new_token nt;
        if (tkc_token_create(prim, "lag", roles, 1, 0, &nt) != 0) {
            fprintf(stderr, "tokenbench: TOKEN_CREATE: %s\n", tkc_errmsg(prim));
            goto done;
        }
        uint64_t t0 = gen_now_ns(), done_mask = 0, best = UINT64_MAX;
        size_t left = nr;
        while (left) {
            for (size_t i = 0; i < nr; i++) {
                if (done_mask >> i & 1)
                    continue;
                if (tkc_verify(rep[i], nt.secret, NULL, &res) != 0) {
                    fprintf(stderr, "tokenbench: VERIFY on %s: %s\n", raddr[i], tkc_errmsg(rep[i]));
                    goto done;
                }
                uint64_t dt = gen_now_ns() - t0;
                if (res.valid) {
                    lag[nlag++] = dt;
                    if (dt < best)
                        best = dt;
                } else if (dt > LAG_TIMEOUT_NS) {
                    timeouts++;
                } else {
                    if (res.verdict != TK_V_UNKNOWN)
                        other++;
                    continue;
                }
                done_mask |= 1ull << i;
                left--;
            }
        }
        first[k] = best == UINT64_MAX ? LAG_TIMEOUT_NS : best;
        sodium_memzero(&nt, sizeof nt);
        if (a->interval_ms > 0)
            nanosleep(&(struct timespec){(time_t)(a->interval_ms / 1000),
                                         (long)(a->interval_ms * 1e6) % 1000000000L},
                      NULL);
    }
    json_t *o = header("lag", "tokend", a->addr);
    put_str(o, "replicas", a->replicas);
    put_int(o, "creates", n);
    put_real(o, "interval_ms", a->interval_ms);
    put_int(o, "timeouts", timeouts);
    put_int(o, "not_unknown_while_waiting", other);
    put_lags(o, lag, nlag); /* every (create, replica) pair */
    json_t *f = json_object();
    put_lags(f, first, n);
    json_object_set_new(o, "first_replica", f);
    put_real(o, "ops_per_sec", 0);
    *out = o;
    rc = timeouts ? TB_WRONG : TB_OK;
done:
    tkc_verify_res_free(&res);
    free(lag);
    free(first);
    sodium_memzero(pkey, sizeof pkey);
    tkc_free(prim);
    for (size_t i = 0; i < nr; i++)
        tkc_free(rep[i]);
    return rc;
}
