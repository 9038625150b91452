#!/usr/bin/env bash
# tls.sh - `make bench-tls`: verify/s over TLS (docs/bench.md, "TLS"): tokend with
# TLS against the same tokend in plain TCP, and against Redis with TLS (and plain),
# driven by one generator (bin/tokenbench), in the same rounds.
#
#   bench/tls.sh               # about 5 minutes on 2 cores
#
# In a scratch directory: a CA and a server certificate for 127.0.0.1 (EC P-256,
# made with the openssl command), then, each on a free loopback port, in the
# background, by pid: bin/tokend with --tls-cert/--tls-key, loaded with BENCH_TOKENS
# tokens over TLS (tokenbench load --tls), then stopped and its data directory
# copied, so that a plain bin/tokend serves the very same tokens; and one
# redis-server (no persistence) with a TLS port (--tls-port, --tls-auth-clients no)
# and a plain one, loaded with the same records over TLS (tokenbench redis-load
# --tls). Then, per round (BENCH_REPEAT) and per case (BENCH_TLS_CASES, C:P), four
# runs in an order rotated every round:
#
#   tokend-tls     tokenbench verify --tls --ca CA   (tokend, TLS)
#   tokend-plain   tokenbench verify                 (the same build, the same data, plain)
#   redis-tls      tokenbench redis --tls --ca CA    (GET, TLS)
#   redis-plain    tokenbench redis                  (GET, plain)
#
# Every connection makes one handshake before the measured window (warm-up first):
# these are the steady-state costs of TLS, records and crypto, not handshakes.
# Ratios are per round (paired), then the median [lowest-highest]: tokend-tls /
# tokend-plain (what TLS costs tokend), tokend-tls / redis-tls (the comparison),
# redis-tls / redis-plain (what TLS costs Redis).
#
# Writes BENCH_OUT (bench/results/tls-<commit>): runs.jsonl (every run's JSON),
# tls.json (machine, parameters, summary) and tls.txt (the table); stops everything
# it started (trap on exit, by pid).
#
# Knobs (environment): BENCH_TOKENS (200000), BENCH_DURATION (10 s per run),
# BENCH_WARMUP (2 s), BENCH_REPEAT (3), BENCH_TLS_CASES ("50:1 50:16"),
# BENCH_NICE (-10 when root; 0: off), BENCH_OUT, BIN (bin).
set -euo pipefail

BIN=${BIN:-bin}
TB=$BIN/tokenbench
TOKENS=${BENCH_TOKENS:-200000}
DUR=${BENCH_DURATION:-10}
WARM=${BENCH_WARMUP:-2}
REPEAT=${BENCH_REPEAT:-3}
CASES=${BENCH_TLS_CASES:-50:1 50:16}
NICE_LEVEL=${BENCH_NICE:--10}
NICE=""
if [ "$NICE_LEVEL" != 0 ] && [ "$(id -u)" = 0 ]; then NICE="nice -n $NICE_LEVEL"; fi

. "$(dirname "$0")/lib.sh"
for tool in "$TB" "$BIN/tokend" redis-server redis-cli openssl jq; do
  command -v "$tool" >/dev/null || { say "bench: $tool is missing (make bench-tls installs it)"; exit 1; }
done

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
OUT=${BENCH_OUT:-bench/results/tls-$commit}
[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || commit="$commit+modified"

bench_setup tls

# The CA and the server's certificate (127.0.0.1); the key mode 0600, as tokend asks.
pki=$scratch/pki
mkdir "$pki"
(
  cd "$pki"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
  openssl req -x509 -new -key ca.key -out ca.pem -days 2 -subj /CN=tokenbench-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key
  openssl req -new -key server.key -out server.csr -subj /CN=127.0.0.1
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
    -days 2 -extfile server.ext
  chmod 600 server.key ca.key
) >"$scratch/openssl.log" 2>&1 || { say "bench: openssl failed:"; cat "$scratch/openssl.log" >&2; exit 1; }
CA=$pki/ca.pem

TLS_ARGS=(--tls-cert "$pki/server.pem" --tls-key "$pki/server.key")

runs=$scratch/runs.jsonl
: >"$runs"
# tb CASE TARGET ROUND ARGS...: one tokenbench run; its JSON (with those fields)
# into runs.jsonl; a wrong answer or an error stops the benchmark.
tb() {
  local label=$1 target=$2 round=$3; shift 3
  local out
  if ! out=$($NICE "$TB" "$@" --json); then
    say "bench: tokenbench $* failed (wrong answers or errors):"; say "$out"; exit 1
  fi
  out=$(jq -c --arg c "$label" --arg t "$target" --argjson r "$round" \
          '. + {case: $c, target: $t, round: $r}' <<<"$out")
  printf '%s\n' "$out" >>"$runs"
  jq -r '"  \(.case) \(.target): \(.ops_per_sec|floor) ops/s" +
         (if .p50_us then ", p50 \(.p50_us) us, p99 \(.p99_us) us" else "" end)' <<<"$out" >&2
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
say "bench: loading $TOKENS tokens into tokend over TLS"
start_tokend tokend-load "$TOKEND" "$scratch/tokend" "${TLS_ARGS[@]}"
tb load load 0 load --addr "127.0.0.1:$TOKEND_PORT" --tls --ca "$CA" \
  --key "@$scratch/tokend/operator.key" --tokens "$TOKENS" --out "$scratch/tokens"
kill "$TOKEND_PID"
wait "$TOKEND_PID" 2>/dev/null || true
cp -a "$scratch/tokend" "$scratch/tokend-plain"
start_tokend tokend-tls "$TOKEND" "$scratch/tokend" "${TLS_ARGS[@]}"
TADDR=127.0.0.1:$TOKEND_PORT
start_tokend tokend-plain "$TOKEND" "$scratch/tokend-plain"
PADDR=127.0.0.1:$TOKEND_PORT

RTLS=$(free_port)
RPLAIN=$(free_port)
mkdir "$scratch/redis"
$NICE redis-server --bind 127.0.0.1 --port "$RPLAIN" --tls-port "$RTLS" \
  --tls-cert-file "$pki/server.pem" --tls-key-file "$pki/server.key" --tls-ca-cert-file "$CA" \
  --tls-auth-clients no --save '' --appendonly no --daemonize no --dir "$scratch/redis" \
  >"$scratch/redis.log" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do redis-cli -p "$RPLAIN" ping >/dev/null 2>&1 && break; sleep 0.05; done
redis-cli -p "$RPLAIN" ping >/dev/null 2>&1 || { say "bench: redis-server did not start:"; cat "$scratch/redis.log" >&2; exit 1; }
redis_version=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
say "bench: loading the same $TOKENS records into Redis over TLS"
tb load redis-load 0 redis-load --addr "127.0.0.1:$RTLS" --tls --ca "$CA" \
  --tokens-file "$scratch/tokens"
say "bench: tokend TLS on $TADDR, plain on $PADDR (same data); redis $redis_version TLS on :$RTLS, plain on :$RPLAIN"

common=(--tokens-file "$scratch/tokens" --duration "$DUR" --warmup "$WARM")
ORDER=(t p r q)
for r in $(seq "$REPEAT"); do
  for cp in $CASES; do
    c=${cp%%:*} p=${cp##*:}
    label="verify C=$c P=$p"
    say "bench: $label (round $r of $REPEAT)"
    for k in 0 1 2 3; do
      case ${ORDER[$(((k + r - 1) % 4))]} in
        t) tb "$label" tokend-tls "$r" verify --addr "$TADDR" --tls --ca "$CA" --connections "$c" --pipeline "$p" "${common[@]}" ;;
        p) tb "$label" tokend-plain "$r" verify --addr "$PADDR" --connections "$c" --pipeline "$p" "${common[@]}" ;;
        r) tb "$label" redis-tls "$r" redis --addr "127.0.0.1:$RTLS" --tls --ca "$CA" --connections "$c" --pipeline "$p" "${common[@]}" ;;
        q) tb "$label" redis-plain "$r" redis --addr "127.0.0.1:$RPLAIN" --connections "$c" --pipeline "$p" "${common[@]}" ;;
      esac
    done
  done
done

mkdir -p "$OUT"
cp "$runs" "$OUT/"
machine=$(jq -n --arg cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" \
  --arg cores "$(nproc)" --arg mem "$(free -g | awk '/^Mem:/ { print $2 " GiB" }')" \
  --arg kernel "$(uname -r)" --arg redis "$redis_version" \
  --arg openssl "$(openssl version | cut -d' ' -f2)" --arg commit "$commit" \
  --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --arg lb "$load_before" --arg la "$(cut -d' ' -f1-3 /proc/loadavg)" \
  '{cpu: $cpu, cores: ($cores | tonumber), memory: $mem, kernel: $kernel, redis: $redis,
    openssl: $openssl, commit: $commit, date: $date, loadavg_before: $lb, loadavg_after: $la}')
params=$(jq -n --argjson t "$TOKENS" --argjson d "$DUR" --argjson w "$WARM" --argjson r "$REPEAT" \
  --arg cases "$CASES" --arg nice "${NICE:-none}" \
  '{tokens: $t, duration_s: $d, warmup_s: $w, repeat: $r, cases: $cases, nice: $nice,
    generator_threads: 1, certificate: "EC P-256, TLS 1.3 (OpenSSL default suite)"}')
jq -s --argjson machine "$machine" --argjson params "$params" '
  def median: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
  def spread: {median: median, low: min, high: max, each: .};
  def ordered: reduce .[] as $x ([]; if index([$x]) then . else . + [$x] end);
  def med(f): map(f) | median;
  [.[] | select(.case != "load")] as $all
  | def paired($case; $a; $b):
      [$all[] | select(.case == $case and .target == $a)] as $x
      | [$all[] | select(.case == $case and .target == $b)] as $y
      | [$x[] | . as $i | ($y[] | select(.round == $i.round)) as $j | $i.ops_per_sec / $j.ops_per_sec];
  {machine: $machine, params: $params,
   cases: ([$all[].case] | ordered | map(. as $c |
     [$all[] | select(.case == $c)] as $r
     | {case: $c,
        figures: ([$r[].target] | ordered | map(. as $t | [$r[] | select(.target == $t)]
          | {target: $t, runs: length, ops_per_sec: med(.ops_per_sec),
             ops_low: (map(.ops_per_sec) | min), ops_high: (map(.ops_per_sec) | max),
             p50_us: med(.p50_us), p99_us: med(.p99_us), generator_cpu: med(.generator_cpu)})),
        ratios: {"tokend-tls/tokend-plain": (paired($c; "tokend-tls"; "tokend-plain") | spread),
                 "tokend-tls/redis-tls": (paired($c; "tokend-tls"; "redis-tls") | spread),
                 "redis-tls/redis-plain": (paired($c; "redis-tls"; "redis-plain") | spread)}})),
   runs: $all}' "$runs" >"$OUT/tls.json"

{
  jq -r '.machine | "machine: \(.cpu), \(.cores) cores, \(.memory), Linux \(.kernel), redis \(.redis), OpenSSL \(.openssl), tokend \(.commit), \(.date)",
                    "load average (1/5/15 min) before: \(.loadavg_before), after: \(.loadavg_after)"' "$OUT/tls.json"
  jq -r '.params | "each run: \(.duration_s) s after \(.warmup_s) s warm-up (the handshakes are made before it), \(.repeat) rounds (order rotated), \(.tokens) tokens, one generator thread, \(.certificate), priority: \(.nice)"' "$OUT/tls.json"
  echo "figures: medians over the rounds; ratios: the median of the per-round ratios (all targets back to back in each round) [lowest-highest]"
  echo
  printf '%-18s %-13s %10s %19s %9s\n' case target "op/s" "p50/p99 us" "gen cpu"
  jq -r '.cases[] | .case as $c | .figures[] | [$c, .target, (.ops_per_sec|floor),
           "\(.p50_us*10|round/10)/\(.p99_us*10|round/10)", (.generator_cpu*100|round/100)] | @tsv' "$OUT/tls.json" |
    awk -F'\t' '{ printf "%-18s %-13s %10s %19s %9s\n", $1, $2, $3, $4, $5 }'
  echo
  printf '%-18s %-26s %-26s %-26s\n' case "tokend-tls/tokend-plain" "tokend-tls/redis-tls" "redis-tls/redis-plain"
  jq -r 'def r2: . * 100 | round / 100; def rr: "\(.median|r2) [\(.low|r2)-\(.high|r2)]";
         .cases[] | [.case, (.ratios["tokend-tls/tokend-plain"]|rr), (.ratios["tokend-tls/redis-tls"]|rr),
                     (.ratios["redis-tls/redis-plain"]|rr)] | @tsv' "$OUT/tls.json" |
    awk -F'\t' '{ printf "%-18s %-26s %-26s %-26s\n", $1, $2, $3, $4 }'
} | tee "$OUT/tls.txt"
say "bench: results in $OUT/tls.txt, tls.json, runs.jsonl"
