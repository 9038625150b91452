#!/usr/bin/env bash
# scale.sh - `make bench-scale`: verify-only replicas over NATS JetStream on one
# machine (docs/scale.md), measured in the same run by one generator (bin/tokenbench):
#
#   (a) verify/s against the primary alone, and against one replica alone;
#   (b) verify/s with the primary and every replica driven together: one tokenbench
#       per server, started at once, the same total connections split between them,
#       their op/s summed;
#   (c) the replication delay: from a create's acknowledgement on the primary to the
#       token verifying on each replica (tokenbench lag), idle and under a write load
#       (tokenbench create on the primary at the same time), the latter again on the
#       primary restarted without and with --revocation-barrier (part d);
#   (d) the revocation barrier's cost: durable deletes/s (tokenbench delete) on the
#       primary without and with --revocation-barrier (the primary restarted on the
#       same data between the two; the replicas keep following).
#
#   bench/scale.sh             # about 6 minutes on 2 cores at the defaults
#
# In a scratch directory, each on a free loopback port, in the background, by pid:
# nats-server -js, bin/tokend --publish (the primary), BENCH_REPLICAS bin/tokend
# --follow. BENCH_TOKENS tokens are created on the primary (tokenbench load) and
# replicated; every replica is checked to verify a token made after them before any
# measurement. Per round (BENCH_REPEAT) the verify runs go in an order rotated every
# round; the two delete runs alternate which goes first, and the primary is back without
# the barrier before the next round's verify runs. Ratios are per round (paired),
# then the median [lowest-highest]: together / primary alone, replica alone / primary
# alone, barrier / no barrier. On 2 cores NATS, the primary, the replicas and the
# generators share the same cores: read docs/scale.md, "Measured on one machine" before the figures.
#
# Writes BENCH_OUT (bench/results/scale-<commit>): runs.jsonl (every run's JSON, with
# the load average read after it), scale.json (machine, parameters, summary) and
# scale.txt (the table); stops everything it started (trap on exit, by pid).
#
# Knobs (environment): BENCH_REPLICAS (2), BENCH_TOKENS (200000), BENCH_DURATION
# (10 s per verify run), BENCH_WARMUP (2 s), BENCH_REPEAT (2), BENCH_SCALE_CASES
# ("50:1 50:16", C:P), BENCH_LAG_SAMPLES (200 creates per lag run under writes, a
# quarter of that idle), BENCH_LAG_LOAD (16: the connections of the write load under
# (c)), BENCH_LAG_LOAD_DURATION (12 s: it must outlast the lag run; the table says), BENCH_DELETE_DURATION (5 s),
# BENCH_DELETE_TOKENS (200000 per delete run), BENCH_DELETE_C (50), BENCH_NICE (-10
# when root; 0: off), BENCH_OUT, BIN (bin).
set -euo pipefail

BIN=${BIN:-bin}
TB=$BIN/tokenbench
NREP=${BENCH_REPLICAS:-2}
TOKENS=${BENCH_TOKENS:-200000}
DUR=${BENCH_DURATION:-10}
WARM=${BENCH_WARMUP:-2}
REPEAT=${BENCH_REPEAT:-2}
CASES=${BENCH_SCALE_CASES:-50:1 50:16}
LAG_N=${BENCH_LAG_SAMPLES:-200}
LAG_LOAD_S=${BENCH_LAG_LOAD_DURATION:-12}
LAG_LOAD=${BENCH_LAG_LOAD:-16}
DEL_DUR=${BENCH_DELETE_DURATION:-5}
DEL_TOKENS=${BENCH_DELETE_TOKENS:-200000}
DEL_C=${BENCH_DELETE_C:-50}
NICE_LEVEL=${BENCH_NICE:--10}
NICE=""
if [ "$NICE_LEVEL" != 0 ] && [ "$(id -u)" = 0 ]; then NICE="nice -n $NICE_LEVEL"; fi

. "$(dirname "$0")/lib.sh"
for tool in "$TB" "$BIN/tokend" nats-server jq; do
  command -v "$tool" >/dev/null || { say "bench: $tool is missing (make bench-scale installs it)"; exit 1; }
done
[ "$NREP" -ge 1 ] 2>/dev/null || { say "bench: BENCH_REPLICAS must be 1 or more"; exit 1; }

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
OUT=${BENCH_OUT:-bench/results/scale-$commit}
[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || commit="$commit+modified"

bench_setup scale

NPORT=$(free_port)
$NICE nats-server -js -a 127.0.0.1 -p "$NPORT" -sd "$scratch/nats" >"$scratch/nats.log" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do port_free "$NPORT" || break; sleep 0.05; done
port_free "$NPORT" && { say "bench: nats-server did not start:"; cat "$scratch/nats.log" >&2; exit 1; }
NATS=nats://127.0.0.1:$NPORT

# start_tokend NAME DIR ARGS...: sets PORT and TOKEND_PID.
start_tokend() {
  local name=$1 dir=$2; shift 2
  $NICE "$TOKEND" --listen 127.0.0.1:0 --http none --data "$dir" "$@" 2>>"$scratch/$name.log" &
  pids+=("$!")
  TOKEND_PID=$!
  for _ in $(seq 300); do
    PORT=$(sed -n 's/^tokend: listening on [0-9.]*:\([0-9]*\).*/\1/p' "$scratch/$name.log" | tail -n 1)
    [ -n "$PORT" ] && kill -0 "$TOKEND_PID" 2>/dev/null && return 0
    sleep 0.05
  done
  say "bench: $name did not start:"; cat "$scratch/$name.log" >&2
  exit 1
}

# stop_pid PID: TERM, wait; the pid leaves $pids.
stop_pid() {
  local p=$1 q keep=()
  kill "$p" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  for q in "${pids[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
  pids=("${keep[@]}")
}

# The primary on its data directory, with the extra flags given (a log file per
# start: primary-N.log); sets PADDR and PRIMARY_PID.
PSTARTS=0
start_primary() {
  PSTARTS=$((PSTARTS + 1))
  start_tokend "primary-$PSTARTS" "$scratch/primary" --publish "$NATS" "$@"
  PADDR=127.0.0.1:$PORT
  PRIMARY_PID=$TOKEND_PID
}

runs=$scratch/runs.jsonl
: >"$runs"
# record CASE TARGET ROUND JSON: the run's JSON, with those fields and the load
# average, into runs.jsonl.
record() {
  jq -c --arg c "$1" --arg t "$2" --argjson r "$3" --arg la "$(cut -d' ' -f1-3 /proc/loadavg)" \
    '. + {case: $c, target: $t, round: $r, loadavg: $la}' <<<"$4" >>"$runs"
}
# tb CASE TARGET ROUND ARGS...: one tokenbench run, recorded; a wrong answer or an
# error stops the benchmark.
tb() {
  local label=$1 target=$2 round=$3; shift 3
  local out
  if ! out=$(timeout 600 $NICE "$TB" "$@" --json); then
    say "bench: tokenbench $* failed (wrong answers, errors or a timeout):"; say "$out"; exit 1
  fi
  record "$label" "$target" "$round" "$out"
  jq -r '"  \(.case) \(.target): " + (if .mode == "lag"
           then "delay p50 \(.p50_us|floor) us, p99 \(.p99_us|floor) us, max \(.max_us|floor) us (\(.samples) samples)"
           else "\(.ops_per_sec|floor) ops/s" + (if .p50_us then ", p50 \(.p50_us) us, p99 \(.p99_us) us" else "" end) end)' \
    <(tail -n 1 "$runs") >&2
}

# caught_up: one create on the primary must verify on every replica (the log is
# ordered, so everything before it is applied), within lag's own timeout.
caught_up() {
  local out
  if ! out=$(timeout 60 "$TB" lag --addr "$PADDR" --replicas "$RLIST" --key "@$scratch/primary/operator.key" \
             --tokens 1 --interval 0 --json); then
    say "bench: a replica did not verify a new token within 10 s:"; say "$out"
    for i in $(seq "$NREP"); do say "--- replica r$i:"; tail -n 5 "$scratch/r$i.log" >&2; done
    exit 1
  fi
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
start_primary
RADDR=()
for i in $(seq "$NREP"); do
  start_tokend "r$i" "$scratch/r$i" --follow "$NATS" --replica-name "r$i"
  RADDR+=("127.0.0.1:$PORT")
done
RLIST=$(IFS=,; echo "${RADDR[*]}")
say "bench: nats-server on :$NPORT; primary on $PADDR; replicas on $RLIST"
say "bench: creating $TOKENS tokens on the primary"
tb load load 0 load --addr "$PADDR" --key "@$scratch/primary/operator.key" --tokens "$TOKENS" \
  --out "$scratch/tokens"
t0=$(date +%s.%N)
caught_up
say "bench: every replica verifies a token made after the load ($(echo "$(date +%s.%N) - $t0" | bc) s)"

common=(--tokens-file "$scratch/tokens" --duration "$DUR" --warmup "$WARM")

# together ROUND C P: one tokenbench per server, started at once, C split between
# them; each run recorded, then their sum.
together() {
  local r=$1 c=$2 p=$3 label="verify C=$2 P=$3" n=$((NREP + 1)) k cs addrs=("$PADDR" "${RADDR[@]}")
  local tpids=() names=(primary)
  for i in $(seq "$NREP"); do names+=("r$i"); done
  for k in $(seq 0 $((n - 1))); do
    cs=$((c / n + (k < c % n ? 1 : 0)))
    timeout 600 $NICE "$TB" verify --addr "${addrs[$k]}" --connections "$cs" --pipeline "$p" "${common[@]}" \
      --json >"$scratch/together.$k" &
    tpids+=("$!")
  done
  for k in $(seq 0 $((n - 1))); do
    wait "${tpids[$k]}" || { say "bench: together: tokenbench against ${names[$k]} failed:"; cat "$scratch/together.$k" >&2; exit 1; }
    record "$label" "together-${names[$k]}" "$r" "$(cat "$scratch/together.$k")"
  done
  local sum
  sum=$(jq -s -c '{mode: "verify", ops_per_sec: (map(.ops_per_sec) | add), servers: length,
                   connections: (map(.connections) | add), pipeline: .[0].pipeline,
                   p50_us: (map(.p50_us) | max), p99_us: (map(.p99_us) | max)}' "$scratch"/together.*)
  record "$label" together "$r" "$sum"
  say "  $label together ($n servers): $(jq -r '.ops_per_sec|floor' <<<"$sum") ops/s summed"
  rm -f "$scratch"/together.*
}

# lag ROUND [SUFFIX]: the replication delay under a write load (tokenbench create on
# the primary at the same time), and idle first when no SUFFIX is given.
lag() {
  local r=$1 sfx=${2:-} cpid t0 t1
  if [ -z "$sfx" ]; then
    tb "lag idle" lag "$r" lag --addr "$PADDR" --replicas "$RLIST" --key "@$scratch/primary/operator.key" \
      --tokens "$((LAG_N / 4 > 0 ? LAG_N / 4 : 1))"
  fi
  timeout 600 $NICE "$TB" create --addr "$PADDR" --key "@$scratch/primary/operator.key" \
    --connections "$LAG_LOAD" --duration "$LAG_LOAD_S" --warmup 1 --json >"$scratch/create.json" &
  cpid=$!
  sleep 1.5
  t0=$(date +%s.%N)
  tb "lag under writes$sfx" lag "$r" lag --addr "$PADDR" --replicas "$RLIST" --key "@$scratch/primary/operator.key" \
    --tokens "$LAG_N"
  t1=$(date +%s.%N)
  wait "$cpid" || { say "bench: the write load failed:"; cat "$scratch/create.json" >&2; exit 1; }
  record "lag under writes$sfx" write-load "$r" "$(jq -c --argjson s "$(echo "$t1 - $t0" | bc)" \
    '. + {lag_seconds: $s}' "$scratch/create.json")"
  say "  lag under writes$sfx: the write load made $(jq -r '.ops_per_sec|floor' "$scratch/create.json") creates/s; the lag run took $(echo "$t1 - $t0" | bc) s of its $LAG_LOAD_S s"
}

# delete ROUND BARRIER(0|1): the primary restarted with or without the barrier,
# fresh tokens created and replicated, then TOKEN_DELETE of them.
delete_run() {
  local r=$1 b=$2 target flags=()
  if [ "$b" = 1 ]; then target=barrier; flags=(--revocation-barrier); else target=no-barrier; fi
  stop_pid "$PRIMARY_PID"
  start_primary "${flags[@]}"
  sleep 2.5 # the barrier answers no revocation for one lease (2 s) after the start
  tb "delete load" "$target" "$r" load --addr "$PADDR" --key "@$scratch/primary/operator.key" \
    --tokens "$DEL_TOKENS" --out "$scratch/del-tokens"
  caught_up
  tb "delete C=$DEL_C" "$target" "$r" delete --addr "$PADDR" --key "@$scratch/primary/operator.key" \
    --tokens-file "$scratch/del-tokens" --connections "$DEL_C" --duration "$DEL_DUR" --warmup 1
  caught_up
  lag "$r" " ($target)"
}

ORDER=(a r b)
for r in $(seq "$REPEAT"); do
  for cp in $CASES; do
    c=${cp%%:*} p=${cp##*:}
    label="verify C=$c P=$p"
    say "bench: $label (round $r of $REPEAT)"
    for k in 0 1 2; do
      case ${ORDER[$(((k + r - 1) % 3))]} in
        a) tb "$label" primary "$r" verify --addr "$PADDR" --connections "$c" --pipeline "$p" "${common[@]}" ;;
        r) tb "$label" replica "$r" verify --addr "${RADDR[0]}" --connections "$c" --pipeline "$p" "${common[@]}" ;;
        b) together "$r" "$c" "$p" ;;
      esac
    done
  done
  say "bench: replication delay (round $r of $REPEAT)"
  lag "$r"
  say "bench: durable deletes, without and with the barrier (round $r of $REPEAT)"
  if [ $((r % 2)) = 1 ]; then delete_run "$r" 0; delete_run "$r" 1; else delete_run "$r" 1; delete_run "$r" 0; fi
  # the next round's verify and lag runs against a primary without the barrier, as the first's
  if [ $((r % 2)) = 1 ] && [ "$r" != "$REPEAT" ]; then stop_pid "$PRIMARY_PID"; start_primary; sleep 2.5; caught_up; fi
done
# Anything the servers said about replication (a stop, a problem) goes with the results.
problems=$(grep -h -E "replica: stopped|publish: publishing|cannot read|not put|answering \"unavailable\"" "$scratch"/primary-*.log "$scratch"/r*.log || true)

mkdir -p "$OUT"
cp "$runs" "$OUT/"
machine=$(jq -n --arg cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" \
  --arg cores "$(nproc)" --arg mem "$(free -g | awk '/^Mem:/ { print $2 " GiB" }')" \
  --arg kernel "$(uname -r)" --arg nats "$(nats-server --version | sed 's/^nats-server: v//')" \
  --arg commit "$commit" --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --arg lb "$load_before" --arg la "$(cut -d' ' -f1-3 /proc/loadavg)" \
  '{cpu: $cpu, cores: ($cores | tonumber), memory: $mem, kernel: $kernel, nats_server: $nats,
    commit: $commit, date: $date, loadavg_before: $lb, loadavg_after: $la}')
params=$(jq -n --argjson n "$NREP" --argjson t "$TOKENS" --argjson d "$DUR" --argjson w "$WARM" \
  --argjson r "$REPEAT" --arg cases "$CASES" --argjson ln "$LAG_N" --argjson ll "$LAG_LOAD" \
  --argjson dd "$DEL_DUR" --argjson dt "$DEL_TOKENS" --argjson dc "$DEL_C" --arg nice "${NICE:-none}" \
  --arg problems "$problems" \
  '{replicas: $n, tokens: $t, duration_s: $d, warmup_s: $w, repeat: $r, cases: $cases,
    lag_samples: $ln, lag_write_connections: $ll, delete_duration_s: $dd, delete_tokens: $dt,
    delete_connections: $dc, nice: $nice, server_messages: $problems}')
jq -s --argjson machine "$machine" --argjson params "$params" '
  def median: sort | if length == 0 then null
                     elif length % 2 == 1 then .[(length - 1) / 2]
                     else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def spread: {median: median, low: min, high: max, each: .};
  def med(f): map(f) | median;
  . as $all
  | def paired($case; $a; $b; f):
      [$all[] | select(.case == $case and .target == $a)] as $x
      | [$all[] | select(.case == $case and .target == $b)] as $y
      | [$x[] | . as $i | ($y[] | select(.round == $i.round)) as $j | ($i | f) / ($j | f)];
    def ops($c; $t): [$all[] | select(.case == $c and .target == $t)] | med(.ops_per_sec);
  {machine: $machine, params: $params,
   verify: ([$all[] | select(.case | startswith("verify")) | .case] | unique | map(. as $c |
     {case: $c, primary: ops($c; "primary"), replica: ops($c; "replica"), together: ops($c; "together"),
      "together/primary": (paired($c; "together"; "primary"; .ops_per_sec) | spread),
      "replica/primary": (paired($c; "replica"; "primary"; .ops_per_sec) | spread)})),
   lag: ([$all[] | select(.mode == "lag" and .round > 0)] | group_by(.case) | map(
     {case: .[0].case, runs: length, p50_us: med(.p50_us), p99_us: med(.p99_us), max_us: med(.max_us),
      p50_low: (map(.p50_us) | min), p50_high: (map(.p50_us) | max),
      p99_low: (map(.p99_us) | min), p99_high: (map(.p99_us) | max),
      first_p50_us: med(.first_replica.p50_us), timeouts: (map(.timeouts) | add)})),
   write_load: [$all[] | select(.target == "write-load") | {case: .case, ops: .ops_per_sec, lag_s: .lag_seconds, duration_s: .duration_s}],
   delete: ([$all[] | select(.mode == "delete")] | group_by(.target) | map(
     {target: .[0].target, runs: length, ops_per_sec: med(.ops_per_sec),
      ops_low: (map(.ops_per_sec) | min), ops_high: (map(.ops_per_sec) | max),
      p50_us: med(.p50_us), p99_us: med(.p99_us)})),
   "barrier/no-barrier": ("delete C=\($params.delete_connections)" as $d |
     {ops: (paired($d; "barrier"; "no-barrier"; .ops_per_sec) | spread),
      p50: (paired($d; "barrier"; "no-barrier"; .p50_us) | spread),
      p99: (paired($d; "barrier"; "no-barrier"; .p99_us) | spread)}),
   loadavg_during: ([$all[] | select(.round > 0) | .loadavg | split(" ")[0] | tonumber]
                    | {min: min, median: median, max: max}),
   runs: $all}' "$runs" >"$OUT/scale.json"

{
  jq -r '.machine | "machine: \(.cpu), \(.cores) cores, \(.memory), Linux \(.kernel), nats-server \(.nats_server), tokend \(.commit), \(.date)",
                    "load average (1/5/15 min) before: \(.loadavg_before), after: \(.loadavg_after)"' "$OUT/scale.json"
  jq -r '"1-min load average read after each run: \(.loadavg_during.min)-\(.loadavg_during.max) (median \(.loadavg_during.median))"' "$OUT/scale.json"
  jq -r '.params | "\(.replicas) replicas, \(.tokens) tokens; verify runs \(.duration_s) s after \(.warmup_s) s warm-up, \(.repeat) rounds (order rotated); priority: \(.nice)"' "$OUT/scale.json"
  echo "figures: medians over the rounds; ratios: the median of the per-round ratios [lowest-highest]"
  echo
  printf '%-18s %11s %11s %11s %26s %26s\n' case primary replica together "together/primary" "replica/primary"
  jq -r 'def r2: . * 100 | round / 100; def rr: "\(.median|r2) [\(.low|r2)-\(.high|r2)]";
         .verify[] | [.case, (.primary|floor), (.replica|floor), (.together|floor),
                      (.["together/primary"]|rr), (.["replica/primary"]|rr)] | @tsv' "$OUT/scale.json" |
    awk -F'\t' '{ printf "%-18s %11s %11s %11s %26s %26s\n", $1, $2, $3, $4, $5, $6 }'
  echo
  echo "replication delay, create acknowledged on the primary -> valid on a replica (every create x replica):"
  jq -r '.lag[] | "  \(.case): p50 \(.p50_us/1000*10|round/10) ms [\(.p50_low/1000*10|round/10)-\(.p50_high/1000*10|round/10)], p99 \(.p99_us/1000*10|round/10) ms [\(.p99_low/1000*10|round/10)-\(.p99_high/1000*10|round/10)], max \(.max_us/1000*10|round/10) ms; first replica p50 \(.first_p50_us/1000*10|round/10) ms; \(.timeouts) timeouts"' "$OUT/scale.json"
  jq -r '"  the write load under each (tokenbench create, C=\(.params.lag_write_connections)), per round:",
         (.write_load[] | "    \(.case): \(.ops|floor) creates/s (the lag run took \(.lag_s*10|round/10) s of its \(.duration_s) s)")' "$OUT/scale.json"
  echo
  echo "durable deletes on the primary (C=$DEL_C, P=1, ${DEL_DUR} s), with $NREP replicas following:"
  jq -r '.delete[] | "  \(.target): \(.ops_per_sec|floor) deletes/s [\(.ops_low|floor)-\(.ops_high|floor)], p50 \(.p50_us|round) us, p99 \(.p99_us|round) us"' "$OUT/scale.json"
  jq -r 'def r2: . * 100 | round / 100; def rr: "\(.median|r2) [\(.low|r2)-\(.high|r2)]";
         .["barrier/no-barrier"] | "  barrier/no-barrier: deletes/s \(.ops|rr), p50 \(.p50|rr), p99 \(.p99|rr)"' "$OUT/scale.json"
  if [ -n "$problems" ]; then echo; echo "the servers said:"; sed 's/^/  /' <<<"$problems"; fi
} | tee "$OUT/scale.txt"
say "bench: results in $OUT/scale.txt, scale.json, runs.jsonl"
