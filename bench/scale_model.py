#!/usr/bin/env python3
"""scale_model.py - a model of tokend's verify-only replicas past one machine.

R replicas, each on a machine of its own, follow one primary through one NATS
JetStream server (docs/scale.md). The model is arithmetic on stated inputs, not a
measurement: bench/scale.sh measures the inputs it can on one 2-core machine
(docs/scale.md, "Measured on one machine" says which, and how far to trust them).

Assumptions (each a parameter below; change them with --set NAME=VALUE):
  V         verifications/s one server answers. The verify path is one event-loop
            thread, so this is a per-core figure. bench/scale.sh measured a replica
            alone at replica/primary ~0.9-1.0 of the primary in the same round, so
            a replica verifies as fast as the primary; V is the primary's rate at
            C=50, P=1 on this machine with the generator on the other core.
  D50, D99  one replica's replication delay (create acknowledged on the primary ->
            valid on the replica), fitted as a lognormal by its p50 and p99, taken
            from bench/scale.sh's "lag under writes" (docs/scale.md, "Measured on
            one machine"; idle it is p50 1.7 ms here).
            Replicas are independent and identically distributed: a shared cause
            (NATS itself, the primary's fsync) is in every replica's delay at once,
            so the real max over R grows more slowly than this model's.
  RTT       one NATS hop back, replica -> primary (its progress report), seconds.
  FSYNC     the primary's own durable write before it publishes, seconds.
  M         messages/s the NATS server moves (stored, or delivered to a consumer):
            not measured here; NATS's own benchmarks give millions/s for core
            NATS and a few hundred thousand to ~1M/s for file-backed JetStream.
  LEASE     2 s (--lease); a replica renews every LEASE/4 and reports each
            progress at once (one request in flight).
  P_SLOW    the fraction of time one replica is slow or cut off (it stops
            reporting): a revocation then waits for the barrier to drop it, up to
            LEASE after it was last heard, and that replica answers "unavailable".
  BAR_MAX   256: net/barrier.h's BAR_MAX_REPLICAS; a replica past it gets no lease.
"""
import math
import sys
from statistics import NormalDist

P = dict(
    V=100000.0,      # verify/s per server (one event-loop core), C=50 P=1
    V16=850000.0,    # the same at P=16 (pipelined)
    D50=0.018,       # s, replication delay p50 under writes (bench runs 1-3, round 1: median)
    D99=0.100,       # s, its p99
    RTT=0.0005,      # s, replica -> primary report
    FSYNC=0.002,     # s, the primary's group commit
    M=500000.0,      # NATS messages/s (JetStream, file store)
    LEASE=2.0,       # s
    P_SLOW=1e-4,     # fraction of time one replica is slow/partitioned
    BAR_MAX=256,
)
REPLICAS = [1, 2, 4, 8, 16, 32, 64]
Z = NormalDist()


def lognormal(p50, p99):
    """mu, sigma of the lognormal with this median and 99th percentile."""
    return math.log(p50), (math.log(p99) - math.log(p50)) / Z.inv_cdf(0.99)


def max_quantile(q, r, mu, sigma):
    """q-quantile of the max of r iid lognormals: F^-1(q^(1/r))."""
    return math.exp(mu + sigma * Z.inv_cdf(q ** (1.0 / r)))


def fanout_saturation(r, p):
    """Writes/s W at which NATS is full: each write is stored once and delivered
    r times; each replica reports its progress after an apply (a request and a
    reply, one in flight: min(W, 1/RTT) reports/s); the leases add 2 messages per
    LEASE/4 per replica. Solves M = W(1+r) + 2r min(W, 1/RTT) + leases."""
    leases = r * 2 * 4 / p["LEASE"]
    w = (p["M"] - leases) / (1 + 3 * r)
    if w > 1 / p["RTT"]:
        w = (p["M"] - leases - 2 * r / p["RTT"]) / (1 + r)
    return max(0.0, w)


def revocation(r, p, mu, sigma):
    """p50 and p99 of a revocation's wait with the barrier, all replicas healthy:
    the primary's fsync, then the slowest replica's delay, then its report."""
    base = p["FSYNC"] + p["RTT"]
    return base + max_quantile(0.5, r, mu, sigma), base + max_quantile(0.99, r, mu, sigma)


def slow_effect(r, p, p99_healthy):
    """With one replica slow or cut off: P(a revocation finds one), the wait it
    then has (the barrier drops the replica LEASE after it was last heard; it was
    heard at most LEASE/4 before it went quiet), and the revocation p99 over time."""
    p_any = 1 - (1 - p["P_SLOW"]) ** r
    wait_lo, wait_hi = p["LEASE"] - p["LEASE"] / 4, p["LEASE"]
    p99 = wait_hi if p_any > 0.01 else p99_healthy
    return p_any, (wait_lo, wait_hi), p99


def main(argv):
    args = iter(argv)
    for a in args:
        if a == "--set":
            a = "--set=" + next(args)
        if a.startswith("--set="):
            k, v = a[6:].split("=", 1)
            if k not in P:
                sys.exit("scale_model: no parameter %s (have: %s)" % (k, ", ".join(P)))
            P[k] = float(v)
    mu, sigma = lognormal(P["D50"], P["D99"])
    print("inputs: " + ", ".join("%s=%g" % kv for kv in P.items()))
    print("replication delay: lognormal mu=%.3f sigma=%.3f (p50 %.1f ms, p99 %.1f ms)"
          % (mu, sigma, P["D50"] * 1e3, P["D99"] * 1e3))
    print()
    hdr = ("R", "verify/s P=1", "verify/s P=16", "revoke p50", "revoke p99",
           "NATS full at", "P(slow in R)", "revoke p99*")
    print("%4s %13s %14s %11s %11s %13s %13s %12s" % hdr)
    for r in REPLICAS:
        if r > P["BAR_MAX"]:
            break
        v1 = (r + 1) * P["V"]      # the primary verifies too
        v16 = (r + 1) * P["V16"]
        r50, r99 = revocation(r, P, mu, sigma)
        sat = fanout_saturation(r, P)
        p_any, _, p99s = slow_effect(r, P, r99)
        print("%4d %13.0f %14.0f %9.1f ms %9.1f ms %9.0f w/s %13.4f %10.0f ms"
              % (r, v1, v16, r50 * 1e3, r99 * 1e3, sat, p_any, p99s * 1e3))
    lo, hi = P["LEASE"] * 3 / 4, P["LEASE"]
    print()
    print("verify/s: (R+1) x V, linear: verification needs nothing from other servers.")
    print("  It stops being linear when writes do: every replica applies every write, and")
    print("  NATS delivers each one R times (the 'NATS full at' column: writes/s at which M")
    print("  is used up, with the leases and progress reports).")
    print("revoke p50/p99: fsync + the slowest of R replicas' delay + one report hop,")
    print("  all replicas healthy (order statistics of R iid lognormal delays).")
    print("P(slow in R): the chance a revocation finds one of R replicas slow or cut off")
    print("  (P_SLOW each); it then waits %.1f-%.1f s (the barrier drops that replica one" % (lo, hi))
    print("  lease after it was last heard) and that replica answers 'unavailable'.")
    print("revoke p99*: the p99 over time with that: the lease once P(slow in R) > 1%.")
    print("A replica past %d (BAR_MAX_REPLICAS) gets no lease and never answers 'valid'."
          % P["BAR_MAX"])


if __name__ == "__main__":
    main(sys.argv[1:])
