#!/usr/bin/env bash
# run.sh - `make bench`: tokend against Redis, driven by one generator
# (bin/tokenbench), in one run, printed as one table; see docs/bench.md.
#
# Starts, in a scratch directory, tokend, a redis-server without persistence
# (the verify comparison) and a redis-server with appendonly yes and
# appendfsync always (the durable create comparison), each on a free
# loopback port, in the background, by pid. Loads the same tokens into
# tokend and Redis, runs every case REPEAT times alternating which server
# goes first (the machine is shared: medians, and ratios from the same
# run), checks the generator against redis-benchmark, runs the in-process
# index benchmark, then writes bench/results/latest.{json,txt,svg} and
# stops everything it started (trap on exit, by pid).
#
# Knobs (environment): BENCH_TOKENS (200000), BENCH_DURATION (10 s per run),
# BENCH_WARMUP (2 s), BENCH_REPEAT (3), BENCH_INDEX ("1000000 10000000": index
# sizes; set but empty, BENCH_INDEX="", runs no index), BENCH_QUICK=1 (skip the
# 10M index), BENCH_OUT (bench/results), BIN (bin).
#   BENCH_CASES ("verify create gencheck"): which network parts run, any of
#     verify (the three verify cases), create (the two durable create cases),
#     gencheck (the generator against redis-benchmark); e.g. BENCH_CASES=verify.
#   BENCH_BASELINE=/path/to/tokend (unset: none): an earlier tokend build to
#     compare with. It is copied and started too (its own data directory, its own
#     free port), loaded by the same `tokenbench load` with as many tokens (its own
#     secrets: a server makes them), and runs every verify and create case in the
#     same rounds as tokend and Redis (runs with "target": "tokend-base"); the
#     order of the three in a round cycles through all six. The report adds a
#     block: the baseline's op/s and its ratio to Redis beside tokend's.
#     BENCH_BASELINE_COMMIT names its commit (default: `git rev-parse` in the
#     binary's directory, "+modified" if that work tree differs).
#   BENCH_THREADS (1): generator threads (tokenbench --threads) for every verify
#     and create run, both servers alike. At P=1 on two cores one generator thread
#     is saturated before the server (its generator_cpu near 1.0): more threads
#     show the servers' own limit, at the cost of sharing the cores three ways.
#   BENCH_VERIFY_CASES ("1:1 50:1 50:16"): the verify cases, as C:P pairs.
# With the knobs unset the run is the default `make bench`, unchanged.
set -euo pipefail

BIN=${BIN:-bin}
TB=$BIN/tokenbench
TOKENS=${BENCH_TOKENS:-200000}
DUR=${BENCH_DURATION:-10}
WARM=${BENCH_WARMUP:-2}
REPEAT=${BENCH_REPEAT:-3}
QUICK=${BENCH_QUICK:-0}
OUT=${BENCH_OUT:-bench/results}
# Every process of the benchmark (both servers, the generator,
# redis-benchmark) runs at the same raised priority when root, so that other
# work on a shared machine disturbs the comparison less; BENCH_NICE=0 turns
# it off.
NICE_LEVEL=${BENCH_NICE:--10}
NICE=""
if [ "$NICE_LEVEL" != 0 ] && [ "$(id -u)" = 0 ]; then NICE="nice -n $NICE_LEVEL"; fi
CASES=()                       # verify: connections pipeline
for cp in ${BENCH_VERIFY_CASES:-1:1 50:1 50:16}; do CASES+=("${cp%%:*} ${cp##*:}"); done
THREADS=${BENCH_THREADS:-1}
CREATE_CASES=(1 50)            # create: connections (pipeline 1)
PARTS=${BENCH_CASES:-verify create gencheck}
for part in $PARTS; do
  case $part in verify|create|gencheck) ;;
    *) echo "bench: BENCH_CASES: unknown '$part' (verify, create, gencheck)" >&2; exit 2 ;;
  esac
done
has() { [[ " $PARTS " == *" $1 "* ]]; }
BASELINE=${BENCH_BASELINE:-}

for tool in "$TB" "$BIN/tokend" redis-server redis-benchmark jq gnuplot; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (make bench installs it)" >&2; exit 1; }
done
if [ -n "$BASELINE" ] && [ ! -x "$BASELINE" ]; then
  echo "bench: BENCH_BASELINE=$BASELINE is not an executable tokend" >&2; exit 1
fi

. "$(dirname "$0")/lib.sh"
bench_setup run
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || commit="$commit+modified"
if [ -n "$BASELINE" ]; then
  cp "$BASELINE" "$scratch/bin/tokend-base"
  TOKEND_BASE=$scratch/bin/tokend-base
  base_dir=$(dirname "$BASELINE")
  base_commit=${BENCH_BASELINE_COMMIT:-$(git -C "$base_dir" rev-parse --short HEAD 2>/dev/null || echo unknown)}
  if [ -z "${BENCH_BASELINE_COMMIT:-}" ] && [ "$base_commit" != unknown ] &&
     [ -n "$(git -C "$base_dir" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    base_commit="$base_commit+modified"
  fi
  if cmp -s "$TOKEND" "$TOKEND_BASE"; then
    echo "bench: warning: BENCH_BASELINE is the same binary as $BIN/tokend" >&2
  fi
fi

runs=$scratch/runs.jsonl
: >"$runs"
# tb LABEL MODE ARGS...: one tokenbench run; its JSON (with "case") into runs.jsonl.
# TB_TARGET=NAME tb ... records the run with "target": NAME (the baseline).
tb() {
  local label=$1; shift
  local out c0="" cpu=null
  [ -n "${SPID:-}" ] && c0=$(cpu_ticks "$SPID")
  if ! out=$($NICE "$TB" "$@" --json); then
    say "bench: tokenbench $* failed (wrong answers or errors):"; say "$out"; exit 1
  fi
  [ -n "$c0" ] && cpu=$(( $(cpu_ticks "$SPID") - c0 ))
  # The server's CPU per operation: its user and system time over the run
  # (warm-up included, taken at the measured rate) per operation.
  out=$(jq -c --arg case "$label" --arg target "${TB_TARGET:-}" --argjson cpu "$cpu" \
          --argjson hz "$(getconf CLK_TCK)" \
          '. + {case: $case} + (if $target == "" then {} else {target: $target} end)
           + (if $cpu == null or (.ops_per_sec // 0) == 0 then {} else
                {server_cpu_us_per_op: ($cpu / $hz * 1e6
                   / (.ops_per_sec * ((.duration_s // 0) + (.warmup_s // 0))))} end)' <<<"$out")
  printf '%s\n' "$out" >>"$runs"
  jq -r '"  \(.case) \(.target): \(.ops_per_sec|floor) ops/s" +
         (if .p50_us then ", p50 \(.p50_us) us, p99 \(.p99_us) us" else "" end)' <<<"$out" >&2
}

# cpu_ticks PID: the process's user + system time so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
start_tokend
TADDR=127.0.0.1:$TOKEND_PORT
TPID=$TOKEND_PID
if [ -n "$BASELINE" ]; then
  start_tokend tokend-base "$TOKEND_BASE"
  BADDR=127.0.0.1:$TOKEND_PORT
  BPID=$TOKEND_PID
fi
start_redis redis --save '' --appendonly no
RPORT=$REDIS_PORT
RPID=$REDIS_PID
if has create; then
  start_redis redis-aof --save '' --appendonly yes --appendfsync always
  APORT=$REDIS_PORT
  APID=$REDIS_PID
fi
say "bench: tokend on $TADDR, redis on :$RPORT (no persistence)${APORT:+, :$APORT (appendfsync always)}${BADDR:+; baseline tokend $base_commit on $BADDR}"

say "bench: loading $TOKENS tokens into both"
tb load load --addr "$TADDR" --key "@$scratch/tokend/operator.key" --tokens "$TOKENS" \
  --out "$scratch/tokens"
tb load redis-load --addr "127.0.0.1:$RPORT" --tokens-file "$scratch/tokens"
if [ -n "$BASELINE" ]; then
  say "bench: loading $TOKENS tokens into the baseline tokend (same generator)"
  TB_TARGET=tokend-base tb load load --addr "$BADDR" --key "@$scratch/tokend-base/operator.key" \
    --tokens "$TOKENS" --out "$scratch/tokens-base"
fi

# run_round R LABEL: the runs t (tokend) and d (Redis) of one case in round R,
# alternating which goes first; with a baseline, b too, the order of the three
# cycling through all six (each server as often first, second and last, and
# each before each other as often, over six rounds).
ORDERS=("t b d" "d b t" "b d t" "t d b" "d t b" "b t d")
run_round() {
  local r=$1 label=$2 x
  if [ -z "$BASELINE" ]; then
    if [ $((r % 2)) -eq 1 ]; then SPID=$TPID tb "$label" "${t[@]}"; SPID=$DPID tb "$label" "${d[@]}"
    else SPID=$DPID tb "$label" "${d[@]}"; SPID=$TPID tb "$label" "${t[@]}"; fi
    return
  fi
  for x in ${ORDERS[$(((r - 1) % 6))]}; do
    case $x in
      t) SPID=$TPID tb "$label" "${t[@]}" ;;
      b) SPID=$BPID TB_TARGET=tokend-base tb "$label" "${b[@]}" ;;
      d) SPID=$DPID tb "$label" "${d[@]}" ;;
    esac
  done
}

common=(--duration "$DUR" --warmup "$WARM" --threads "$THREADS")
for r in $(seq "$REPEAT"); do
  if has verify; then
    for cp in "${CASES[@]}"; do
      set -- $cp
      label="verify C=$1 P=$2"
      say "bench: $label (round $r of $REPEAT)"
      t=(verify --addr "$TADDR" --tokens-file "$scratch/tokens" --connections "$1" --pipeline "$2" "${common[@]}")
      b=(verify --addr "${BADDR:-}" --tokens-file "$scratch/tokens-base" --connections "$1" --pipeline "$2" "${common[@]}")
      d=(redis --addr "127.0.0.1:$RPORT" --tokens-file "$scratch/tokens" --connections "$1" --pipeline "$2" "${common[@]}")
      DPID=$RPID
      run_round "$r" "$label"
    done
  fi
  if has create; then
    for c in "${CREATE_CASES[@]}"; do
      label="create C=$c"
      say "bench: $label, durable (round $r of $REPEAT)"
      t=(create --addr "$TADDR" --key "@$scratch/tokend/operator.key" --connections "$c" "${common[@]}")
      b=(create --addr "${BADDR:-}" --key "@$scratch/tokend-base/operator.key" --connections "$c" "${common[@]}")
      d=(redis-create --addr "127.0.0.1:$APORT" --connections "$c" "${common[@]}")
      DPID=$APID
      run_round "$r" "$label"
    done
  fi
done

# The generator against redis-benchmark, same server, same C and P, back to
# back. redis-benchmark reads its own keys (db 1, filled first, values the
# size of ours) so it gets hits, as tokenbench does.
gencheck=$scratch/gencheck.jsonl
: >"$gencheck"
if has gencheck; then
  say "bench: generator check against redis-benchmark"
  redis-benchmark -h 127.0.0.1 -p "$RPORT" --dbnum 1 -t set -r "$TOKENS" -n $((TOKENS * 2)) \
    -d 60 -c 50 -P 16 -q >/dev/null 2>&1
  # Redis's own count of GETs served: tokenbench's replies checked must match it.
  get_calls() {
    redis-cli -p "$RPORT" info commandstats | sed -n 's/^cmdstat_get:calls=\([0-9]*\).*/\1/p'
  }
  for cp in "${CASES[@]}"; do
    set -- $cp
    label="gencheck C=$1 P=$2"
    for r in $(seq "$REPEAT"); do
      g0=$(get_calls)
      tb "$label" redis --addr "127.0.0.1:$RPORT" --tokens-file "$scratch/tokens" \
        --connections "$1" --pipeline "$2" "${common[@]}"
      counted=$(( $(get_calls) - g0 ))
      checked=$(tail -n 1 "$runs" | jq '.checked')
      rate=$(tail -n 1 "$runs" | jq '.ops_per_sec | floor')
      n=$(( rate * ${DUR%.*} )); [ "$n" -ge 10000 ] || n=10000
      rb=$($NICE redis-benchmark -h 127.0.0.1 -p "$RPORT" --dbnum 1 -t get -r "$TOKENS" -c "$1" \
             -P "$2" -n "$n" --csv 2>/dev/null | awk -F'"' '$2 == "GET" { print $4 }')
      say "  $label redis-benchmark: ${rb%.*} ops/s ($n requests); redis counted $counted GETs for tokenbench's $checked replies"
      jq -nc --arg case "$label" --argjson tb "$rate" --argjson rb "${rb:-0}" --argjson n "$n" \
        --argjson counted "$counted" --argjson checked "$checked" \
        '{case: $case, tokenbench: $tb, redis_benchmark: $rb, requests: $n,
          redis_counted_gets: $counted, tokenbench_checked: $checked}' >>"$gencheck"
    done
  done
fi

sizes=${BENCH_INDEX-1000000 10000000}   # BENCH_INDEX="": none
[ "$QUICK" = 1 ] && sizes=${sizes// 10000000/}
for n in $sizes; do
  say "bench: in-process index, $n tokens"
  # in the scratch directory, so an interrupted run leaves nothing behind
  mkdir "$scratch/index-$n"
  tb "index $n" index --tokens "$n" --dir "$scratch/index-$n"
  rm -rf "$scratch/index-$n"
done

mkdir -p "$OUT"
machine=$(jq -n --arg cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" \
  --arg cores "$(nproc)" --arg mem "$(free -g | awk '/^Mem:/ { print $2 " GiB" }')" \
  --arg kernel "$(uname -r)" --arg redis "$(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/')" \
  --arg commit "$commit" \
  --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --arg lb "$load_before" --arg la "$(cut -d' ' -f1-3 /proc/loadavg)" \
  '{cpu: $cpu, cores: ($cores | tonumber), memory: $mem, kernel: $kernel, redis: $redis,
    commit: $commit, date: $date, loadavg_before: $lb, loadavg_after: $la}')
# Only a run with a knob set records it: a default run's JSON is as it was.
extra=$(jq -n --arg parts "$PARTS" --arg bpath "$BASELINE" --arg bcommit "${base_commit:-}" \
  --argjson threads "$THREADS" --arg vcases "${BENCH_VERIFY_CASES:-}" \
  '(if $parts == "verify create gencheck" then {} else {cases: $parts} end)
   + (if $bpath == "" then {} else {baseline: {path: $bpath, commit: $bcommit}} end)
   + (if $threads == 1 then {} else {generator_threads: $threads} end)
   + (if $vcases == "" then {} else {verify_cases: $vcases} end)')
jq -n --argjson machine "$machine" --arg nice "${NICE:-none}" \
  --argjson params "$(jq -n --argjson t "$TOKENS" --argjson d "$DUR" --argjson w "$WARM" \
                       --argjson r "$REPEAT" --argjson extra "$extra" \
                       '{tokens: $t, duration_s: $d, warmup_s: $w, repeat: $r} + $extra')" \
  --slurpfile runs "$runs" --slurpfile gen "$gencheck" \
  '{machine: $machine, params: ($params + {nice: $nice}), runs: $runs, gencheck: $gen}' \
  >"$scratch/raw.json"
"$(dirname "$0")/report.sh" "$scratch/raw.json" "$OUT"
