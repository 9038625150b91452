#!/usr/bin/env bash
# report.sh - turns one make-bench run into bench/results/latest.{json,txt,svg}
# (docs/bench.md). Kept apart from run.sh so a run's raw figures can be
# summarised again without running anything:
#
#   bench/report.sh RAW.json OUT_DIR
#
# RAW.json is what run.sh writes ({machine, params, runs, gencheck}), or an
# earlier latest.json (its runs and generator_check are read back).
#
# Per case, each round ran tokend and Redis back to back, so the ratio
# reported is the median of the per-round ratios (paired: a drift of the
# machine's load between rounds cancels out), with their range; the
# throughput and latency figures are medians over the rounds.
#
# A run with an earlier tokend build (BENCH_BASELINE, runs with "target":
# "tokend-base", in the same rounds) gets, per case, "baseline" (its medians),
# "baseline_ratio" (baseline / Redis, per round, as "ratio") and "vs_baseline"
# (tokend / baseline, per round), and a second block in the table.
set -euo pipefail
RAW=$1
OUT=$2
mkdir -p "$OUT"
jq '
  def median: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
  def summary: {ops_per_sec: (map(.ops_per_sec) | median), p50_us: (map(.p50_us) | median),
                p99_us: (map(.p99_us) | median), runs: length,
                ops_min: (map(.ops_per_sec) | min), ops_max: (map(.ops_per_sec) | max)}
                 + (map(.server_cpu_us_per_op // empty) as $c
                    | if ($c | length) == 0 then {} else {server_cpu_us_per_op: ($c | median)} end);
  def ordered: reduce .[] as $x ([]; if index([$x]) then . else . + [$x] end);
  def paired($t; $r; f): [range(0; [($t | length), ($r | length)] | min)
                          | ($t[.] | f) / ($r[.] | f)];
  .runs as $all
  | (.gencheck // [.generator_check[].each[]]) as $gen
  | {machine, params,
     cases: ([$all[] | select(.case | test("^(verify|create)")) | .case] | ordered
             | map(. as $c
                   | [$all[] | select(.case == $c and .target == "tokend")] as $t
                   | [$all[] | select(.case == $c and .target == "redis")] as $r
                   | [$all[] | select(.case == $c and .target == "tokend-base")] as $b
                   | paired($t; $r; .ops_per_sec) as $ops
                   | {case: $c, tokend: ($t | summary), redis: ($r | summary),
                      ratio: {ops: ($ops | median), ops_low: ($ops | min), ops_high: ($ops | max),
                              ops_each: $ops,
                              p50: (paired($t; $r; .p50_us) | median),
                              p99: (paired($t; $r; .p99_us) | median)}}
                     + if ($b | length) == 0 then {} else
                         paired($b; $r; .ops_per_sec) as $bops
                         | paired($t; $b; .ops_per_sec) as $tb
                         | {baseline: ($b | summary),
                            baseline_ratio: {ops: ($bops | median), ops_low: ($bops | min),
                                             ops_high: ($bops | max), ops_each: $bops,
                                             p50: (paired($b; $r; .p50_us) | median),
                                             p99: (paired($b; $r; .p99_us) | median)},
                            vs_baseline: {ops: ($tb | median), ops_low: ($tb | min),
                                          ops_high: ($tb | max), ops_each: $tb}}
                       end)),
     index: [$all[] | select(.mode == "index")],
     load: [$all[] | select(.case == "load")],
     generator_check: ([$gen[].case] | ordered | map(. as $c | [$gen[] | select(.case == $c)]
       | (map(.tokenbench / .redis_benchmark)) as $ratios
       | {case: $c, runs: length, tokenbench_ops_per_sec: (map(.tokenbench) | median),
          redis_benchmark_ops_per_sec: (map(.redis_benchmark) | median),
          ratio: ($ratios | median), ratio_low: ($ratios | min), ratio_high: ($ratios | max),
          counts_agree: (map(.redis_counted_gets == .tokenbench_checked) | all), each: .})),
     runs: $all}' "$RAW" >"$OUT/latest.json.tmp"
mv "$OUT/latest.json.tmp" "$OUT/latest.json"

# The table: one line per case, tokend | Redis | ratio (tokend / Redis).
{
  jq -r '.machine | "machine: \(.cpu), \(.cores) cores, \(.memory), Linux \(.kernel), redis \(.redis), tokend \(.commit), \(.date)",
                    "load average (1/5/15 min) before: \(.loadavg_before), after: \(.loadavg_after) (other work on the machine)"' "$OUT/latest.json"
  jq -r '.params | "each case: \(.repeat) rounds of \(.duration_s) s (after \(.warmup_s) s warm-up) per server, \(.tokens) tokens, priority: \(.nice)\(if .generator_threads then ", generator threads: \(.generator_threads)" else "" end)",
    "figures: medians over the rounds; ratio = tokend / Redis, the median of the per-round ratios (both servers back to back in each round), [lowest-highest]"' "$OUT/latest.json"
  printf '%-18s %11s %11s %17s | %17s %17s | %9s %9s\n' case "tokend op/s" "Redis op/s" "ratio [range]" \
    "tokend p50/p99us" "Redis p50/p99us" "p50 ratio" "p99 ratio"
  jq -r 'def r2: . * 100 | round / 100;
         .cases[] | [.case, (.tokend.ops_per_sec|floor), (.redis.ops_per_sec|floor),
           "\(.ratio.ops|r2) [\(.ratio.ops_low|r2)-\(.ratio.ops_high|r2)]",
           "\(.tokend.p50_us*10|round/10)/\(.tokend.p99_us*10|round/10)",
           "\(.redis.p50_us*10|round/10)/\(.redis.p99_us*10|round/10)",
           (.ratio.p50|r2), (.ratio.p99|r2)] | @tsv' "$OUT/latest.json" |
    awk -F'\t' '{ printf "%-18s %11s %11s %17s | %17s %17s | %9s %9s\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
  jq -r 'def r2: . * 100 | round / 100;
         .generator_check[] | [.case, .tokenbench_ops_per_sec, (.redis_benchmark_ops_per_sec|floor),
           "\(.ratio|r2) [\(.ratio_low|r2)-\(.ratio_high|r2)]",
           (if .counts_agree then "equal to" else "NOT equal to" end)] | @tsv' "$OUT/latest.json" |
    awk -F'\t' '{ printf "%-18s %11s %11s %17s | tokenbench redis / redis-benchmark GET, same server; replies %s cmdstat_get\n", $1, $2, $3, $4, $5 }'
  jq -r '.index[] | [.case, (.ops_per_sec|floor), "-", "-",
           "verify \(.verify_ns*10|round/10) ns (batched \(.verify_batch_ns // 0 | .*10|round/10)), \(.index_bytes_per_token*10|round/10) B/token, open \(.build_s*100|round/100) s (\(.open_over_read // 0 | .*10|round/10)x the files read once)"] | @tsv' "$OUT/latest.json" |
    awk -F'\t' '{ printf "%-18s %11s %11s %17s | %s (in-process, one core)\n", $1, $2, $3, $4, $5 }'
  # The servers' own CPU per operation (run.sh: user + system time over the run).
  if jq -e 'any(.cases[]; .tokend.server_cpu_us_per_op)' "$OUT/latest.json" >/dev/null; then
    echo "server CPU per operation (us, user + system, medians over the rounds):"
    jq -r 'def r1: if . == null then "-" else . * 10 | round / 10 end;
           .cases[] | select(.tokend.server_cpu_us_per_op) | [.case, (.tokend.server_cpu_us_per_op|r1),
             (.redis.server_cpu_us_per_op|r1), (.baseline.server_cpu_us_per_op|r1)] | @tsv' "$OUT/latest.json" |
      awk -F'\t' '{ printf "%-18s tokend %7s  Redis %7s  base %7s\n", $1, $2, $3, $4 }'
  fi
  # An earlier build run in the same rounds (BENCH_BASELINE): its figures beside tokend's.
  if jq -e 'any(.cases[]; .baseline)' "$OUT/latest.json" >/dev/null; then
    jq -r '"baseline: tokend \(.params.baseline.commit // "?") (\(.params.baseline.path // "?")), in the same rounds as tokend \(.machine.commit) and Redis (order rotated); ratios: medians of the per-round ratios [lowest-highest]"' "$OUT/latest.json"
    printf '%-18s %11s %11s %11s %17s %17s %17s | %17s\n' case "tokend op/s" "base op/s" "Redis op/s" \
      "tokend/Redis" "base/Redis" "tokend/base" "base p50/p99us"
    jq -r 'def r2: . * 100 | round / 100;
           def rr: "\(.ops|r2) [\(.ops_low|r2)-\(.ops_high|r2)]";
           .cases[] | select(.baseline) | [.case, (.tokend.ops_per_sec|floor), (.baseline.ops_per_sec|floor),
             (.redis.ops_per_sec|floor), (.ratio|rr), (.baseline_ratio|rr), (.vs_baseline|rr),
             "\(.baseline.p50_us*10|round/10)/\(.baseline.p99_us*10|round/10)"] | @tsv' "$OUT/latest.json" |
      awk -F'\t' '{ printf "%-18s %11s %11s %11s %17s %17s %17s | %17s\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
  fi
} | tee "$OUT/latest.txt"

# The chart: throughput and latency per case, tokend beside Redis.
scratch=$(mktemp -d "${TMPDIR:-/tmp}/tokenbench-report.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
jq -r '.cases[] | [(.case | gsub(" "; "_")), .tokend.ops_per_sec, .redis.ops_per_sec,
         .tokend.p50_us, .redis.p50_us, .tokend.p99_us, .redis.p99_us] | @tsv' \
  "$OUT/latest.json" >"$scratch/chart.dat"
gnuplot <<GP
set terminal svg size 1100,480 dynamic font "sans,11" background rgb "white"
set output "$OUT/latest.svg"
set multiplot layout 1,2 title "tokend vs Redis — $(jq -r '.machine | "\(.cores) cores, \(.date), tokend \(.commit)"' "$OUT/latest.json") (medians of $(jq -r .params.repeat "$OUT/latest.json") rounds)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xtics rotate by -30 noenhanced
set key top left
set grid ytics
set title "throughput (ops/s, log scale, higher is better)"
set logscale y
plot "$scratch/chart.dat" using 2:xtic(1) title "tokend" lc rgb "#1f77b4", \
     "" using 3 title "Redis" lc rgb "#d62728"
set title "latency (us, log scale, lower is better)"
plot "$scratch/chart.dat" using 4:xtic(1) title "tokend p50" lc rgb "#1f77b4", \
     "" using 5 title "Redis p50" lc rgb "#d62728", \
     "" using 6 title "tokend p99" lc rgb "#aec7e8", \
     "" using 7 title "Redis p99" lc rgb "#ff9896"
unset multiplot
GP
echo >&2 "bench: results in $OUT/latest.json, $OUT/latest.txt, $OUT/latest.svg"