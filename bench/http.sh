#!/usr/bin/env bash
# http.sh - gateway verification over HTTP/1.1 keep-alive (docs/bench.md, "HTTP
# verification"): tokend's verify listener (--http-verify) and its HTTP listener
# against nginx `return 204` and against tokend's own binary VERIFY, by one
# generator (bin/tokenbench) in the same rounds,
# then a wrk cross-check and the latency nginx auth_request in front of tokend adds.
#
#   bench/http.sh              # about 5 minutes on 2 cores
#
# Starts in a scratch directory, each on a free loopback port, in the background,
# by pid: bin/tokend (--listen, --http and --http-verify on 127.0.0.1:0), and two nginx
# (/usr/sbin/nginx, daemon off, config, pid, logs and temp paths in the scratch
# directory, access_log off): one with worker_processes 1, as tokend answers HTTP on
# its one loop thread, one with worker_processes auto (one per core). Loads
# BENCH_TOKENS tokens (tokenbench load), then:
#
#   gen    per round, per case (C connections, P in flight each; BENCH_HTTP_CASES):
#          tokend-verify   tokenbench http --addr: GET /v1/verify, Bearer secret, on the
#                          verify listener; every answer must be 200 with the token's
#                          identity headers
#          tokend-http     the same on the HTTP listener (libevent's evhttp)
#          nginx-204       tokenbench http --url: the same requests to nginx
#                          `location / { return 204; }`, worker_processes 1
#          nginx-204-auto  the same, worker_processes auto
#          tokend-binary   tokenbench verify: the binary protocol's VERIFY, same tokens
#          in an order rotated every round; ratios are per round (paired), then
#          the median [lowest-highest].
#   wrk    wrk -t1 -c C (the first case's C) with bench/http-verify.lua (the same
#          Bearer secrets) against tokend-verify, tokend-http and nginx-204, in an
#          order rotated every round: the same ratios from another generator.
#   auth   nginx (worker_processes 1) location /auth: auth_request to an internal
#          location proxy_pass'ing to tokend's /v1/verify over a keepalive upstream,
#          then 204 (try_files =204: `return` would answer before auth_request runs);
#          /authv the same to the verify listener; against /plain, the same location
#          without auth_request, and tokend-verify direct; at C=1 and C=50
#          (BENCH_AUTH_CONNS): p50/p99 and what auth adds.
#   strace (if strace is installed) system calls per request of each server at C=1
#          (strace -c -f -p PID over one BENCH_STRACE_S run; strace slows the server:
#          only the counts are read).
#
# Writes BENCH_OUT (bench/results/http-<commit>): runs.jsonl (every run's JSON),
# wrk.txt and strace.txt (their raw output), nginx-*.conf, http.json (machine,
# parameters, summary) and http.txt (the table); stops everything it started
# (trap on exit, by pid).
#
# Knobs (environment): BENCH_TOKENS (200000), BENCH_DURATION (5 s per run),
# BENCH_WARMUP (1 s), BENCH_REPEAT (3), BENCH_HTTP_CASES ("50:1 50:16", C:P),
# BENCH_AUTH_CONNS ("1 50"), BENCH_HTTP_PARTS ("gen wrk auth strace"),
# BENCH_STRACE_S (1), BENCH_NICE (-10 when root; 0: off), BENCH_OUT, BIN (bin),
# NGINX (/usr/sbin/nginx).
set -euo pipefail

BIN=${BIN:-bin}
TB=$BIN/tokenbench
TOKENS=${BENCH_TOKENS:-200000}
DUR=${BENCH_DURATION:-5}
WARM=${BENCH_WARMUP:-1}
REPEAT=${BENCH_REPEAT:-3}
CASES=${BENCH_HTTP_CASES:-50:1 50:16}
AUTH_CONNS=${BENCH_AUTH_CONNS:-1 50}
PARTS=${BENCH_HTTP_PARTS:-gen wrk auth strace}
STRACE_S=${BENCH_STRACE_S:-1}
NGINX=${NGINX:-/usr/sbin/nginx}
LUA=$(cd "$(dirname "$0")" && pwd)/http-verify.lua
NICE_LEVEL=${BENCH_NICE:--10}
NICE=""
if [ "$NICE_LEVEL" != 0 ] && [ "$(id -u)" = 0 ]; then NICE="nice -n $NICE_LEVEL"; fi
for part in $PARTS; do
  case $part in gen|wrk|auth|strace) ;;
    *) echo "bench: BENCH_HTTP_PARTS: unknown '$part' (gen, wrk, auth, strace)" >&2; exit 2 ;;
  esac
done
has() { [[ " $PARTS " == *" $1 "* ]]; }

. "$(dirname "$0")/lib.sh"
for tool in "$TB" "$BIN/tokend" "$NGINX" jq; do
  command -v "$tool" >/dev/null || { say "bench: $tool is missing"; exit 1; }
done
if has wrk && ! command -v wrk >/dev/null; then
  say "bench: wrk is missing (apt-get install wrk), or leave wrk out of BENCH_HTTP_PARTS"; exit 1
fi
if has strace && ! command -v strace >/dev/null; then
  say "bench: strace is not installed: no system call counts"; PARTS=${PARTS//strace/}
fi

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
OUT=${BENCH_OUT:-bench/results/http-$commit}
[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || commit="$commit+modified"

bench_setup http
NGINX_DIRS=()
bench_cleanup_more() {
  local d
  for d in "${NGINX_DIRS[@]}"; do rm -rf "$d"; done
}

# start_tokend: sets TPORT (binary), HPORT (HTTP) and VPORT (the verify
# listener); the "http on" lines come before "listening on".
start_tokend() {
  $NICE "$TOKEND" --listen 127.0.0.1:0 --http 127.0.0.1:0 --http-verify 127.0.0.1:0 \
    --data "$scratch/tokend" 2>"$scratch/tokend.log" &
  TOKEND_PID=$!
  pids+=("$TOKEND_PID")
  for _ in $(seq 300); do
    TPORT=$(sed -n 's/^tokend: listening on [0-9.]*:\([0-9]*\).*/\1/p' "$scratch/tokend.log")
    HPORT=$(sed -n 's/^tokend: http on [0-9.]*:\([0-9]*\) .*/\1/p' "$scratch/tokend.log")
    VPORT=$(sed -n 's/^tokend: http-verify on [0-9.]*:\([0-9]*\) .*/\1/p' "$scratch/tokend.log")
    [ -n "$TPORT" ] && [ -n "$HPORT" ] && [ -n "$VPORT" ] && return 0
    kill -0 "$TOKEND_PID" 2>/dev/null || break
    sleep 0.05
  done
  say "bench: tokend did not start (or printed no http line):"; cat "$scratch/tokend.log" >&2
  exit 1
}

# nginx_upstream NAME PORT: a keep-alive upstream to tokend on PORT.
nginx_upstream() {
  cat <<EOF
    upstream $1 {
        server 127.0.0.1:$2;
        keepalive 64;
        keepalive_requests 1000000000;
    }
EOF
}

# nginx_auth PATH UPSTREAM: location PATH answers 204 after auth_request to
# UPSTREAM's /v1/verify (through the internal location PATH.verify).
nginx_auth() {
  cat <<EOF
        location = $1 { auth_request $1.verify; try_files /.none =204; }
        location = $1.verify {
            internal;
            proxy_pass http://$2/v1/verify;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }
EOF
}

# nginx_conf DIR PORT WORKERS [HTTP_PORT VERIFY_PORT]: the configuration (the
# auth locations only with the ports: the worker_processes 1 instance).
nginx_conf() {
  local dir=$1 port=$2 workers=$3 auth=${4:-} authv=${5:-}
  cat <<EOF
# bench/http.sh: nginx beside tokend, loopback only ($workers worker(s))
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/tmp-body;
    proxy_temp_path $dir/tmp-proxy;
    fastcgi_temp_path $dir/tmp-fastcgi;
    uwsgi_temp_path $dir/tmp-uwsgi;
    scgi_temp_path $dir/tmp-scgi;
    # keep-alive for the whole run (nginx closes after 1000 requests by default)
    keepalive_timeout 300s;
    keepalive_requests 1000000000;
EOF
  if [ -n "$auth" ]; then
    nginx_upstream tokend "$auth"
    nginx_upstream tokend_verify "$authv"
  fi
  cat <<EOF
    server {
        listen 127.0.0.1:$port;
        root $dir/www;
        location / { return 204; }
EOF
  if [ -n "$auth" ]; then
    cat <<EOF
        # The same answer from the content phase, with and without auth_request
        # (return runs in the rewrite phase, before auth_request's access phase).
        location = /plain { try_files /.none =204; }
EOF
    nginx_auth /auth tokend
    nginx_auth /authv tokend_verify
  fi
  printf '    }\n}\n'
}

# start_nginx NAME WORKERS [HTTP_PORT VERIFY_PORT]: sets NGINX_PORT and NGINX_PID. Its
# directory is made readable (0755) for the workers, which drop root; it holds
# no secret.
start_nginx() {
  local name=$1 workers=$2 auth=${3:-} authv=${4:-}
  local dir
  dir=$(mktemp -d "${TMPDIR:-/tmp}/tokenbench-nginx.XXXXXX")
  chmod 755 "$dir"
  mkdir "$dir/www"
  NGINX_DIRS+=("$dir")
  for _ in 1 2 3 4 5; do
    local port=$((20000 + RANDOM % 40000))
    port_free "$port" || continue
    nginx_conf "$dir" "$port" "$workers" "$auth" "$authv" >"$dir/nginx.conf"
    $NICE "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" -g 'daemon off;' \
      2>>"$dir/error.log" &
    NGINX_PID=$!
    pids+=("$NGINX_PID")
    for _ in $(seq 100); do
      if ! port_free "$port"; then
        NGINX_PORT=$port
        cp "$dir/nginx.conf" "$scratch/nginx-$name.conf"
        return 0
      fi
      kill -0 "$NGINX_PID" 2>/dev/null || break
      sleep 0.05
    done
  done
  say "bench: nginx ($name) did not start:"; cat "$dir/error.log" >&2
  exit 1
}
runs=$scratch/runs.jsonl
: >"$runs"
: >"$scratch/wrk.txt"
: >"$scratch/strace.txt"
# tb PART CASE TARGET ROUND ARGS...: one tokenbench run, its JSON with those
# fields into runs.jsonl; a wrong answer or an error stops the benchmark.
tb() {
  local part=$1 label=$2 target=$3 round=$4; shift 4
  local out
  if ! out=$($NICE "$TB" "$@" --json); then
    say "bench: tokenbench $* failed (wrong answers or errors):"; say "$out"; exit 1
  fi
  out=$(jq -c --arg p "$part" --arg c "$label" --arg t "$target" --argjson r "$round" \
          '. + {part: $p, case: $c, target: $t, round: $r}' <<<"$out")
  printf '%s\n' "$out" >>"$runs"
  jq -r '"  \(.case) \(.target): \(.ops_per_sec|floor) ops/s" +
         (if .p50_us then ", p50 \(.p50_us) us, p99 \(.p99_us) us" else "" end)' <<<"$out" >&2
}

# wrk's latency in us from "719.00us", "1.33ms", "2.01s".
wrk_us() {
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /ms$/) n *= 1000; else if (v ~ /[0-9]s$/) n *= 1000000;
                         printf "%.2f", n }'
}
# wrk_run CASE TARGET ROUND C URL: one wrk run, its figures into runs.jsonl.
wrk_run() {
  local label=$1 target=$2 round=$3 c=$4 url=$5 out
  out=$($NICE wrk -t1 -c "$c" -d "${DUR}s" --latency -s "$LUA" "$url" -- "$scratch/tokens" 2>&1)
  printf '### %s %s round %s: wrk -t1 -c %s -d %ss --latency %s\n%s\n\n' "$label" "$target" \
    "$round" "$c" "$DUR" "$url" "$out" >>"$scratch/wrk.txt"
  local rps non2xx sock p50 p99 reqs
  rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
  reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$out")
  sock=$(awk '/Socket errors:/ { s = 0; for (i = 3; i <= NF; i += 2) s += $(i + 1) + 0; print s }' <<<"$out")
  p50=$(wrk_us "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
  p99=$(wrk_us "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
  if [ -z "$rps" ] || [ "${non2xx:-0}" != 0 ] || [ "${sock:-0}" != 0 ]; then
    say "bench: wrk against $url: no rate, or answers other than 2xx, or socket errors:"
    say "$out"; exit 1
  fi
  jq -nc --arg c "$label" --arg t "$target" --argjson r "$round" --argjson rps "$rps" \
    --argjson reqs "${reqs:-0}" --argjson p50 "$p50" --argjson p99 "$p99" --arg url "$url" \
    '{part: "wrk", case: $c, target: $t, round: $r, url: $url, ops_per_sec: $rps,
      requests: $reqs, p50_us: $p50, p99_us: $p99, non2xx: 0, socket_errors: 0}' >>"$runs"
  say "  $label $target (wrk): ${rps%.*} req/s, p50 $p50 us, p99 $p99 us"
}

# strace_run TARGET PIDS ARGS...: system calls of PIDS (with their threads)
# during one tokenbench run, per request answered.
strace_run() {
  local target=$1 tpids=$2; shift 2
  local args=() p
  for p in $tpids; do args+=(-p "$p"); done
  strace -c -f -o "$scratch/strace.out" "${args[@]}" 2>/dev/null &
  local spid=$!
  pids+=("$spid")
  sleep 0.5 # attached
  local out
  out=$("$TB" "$@" --duration "$STRACE_S" --warmup 0 --json) || { say "bench: strace run failed"; exit 1; }
  kill -INT "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  local n
  n=$(jq .checked <<<"$out")
  printf '### %s: %s requests (tokenbench %s), strace -c -f -p %s\n%s\n\n' "$target" "$n" \
    "$*" "$tpids" "$(cat "$scratch/strace.out")" >>"$scratch/strace.txt"
  awk -v n="$n" -v t="$target" '
    $1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { per[$NF] = $4 / n; total += $4 }
    END { printf "{\"part\":\"strace\",\"target\":\"%s\",\"requests\":%d,\"per_request\":%.2f,\"calls\":{", t, n, total / n;
          sep = ""; for (k in per) { printf "%s\"%s\":%.2f", sep, k, per[k]; sep = "," } print "}}" }' \
    "$scratch/strace.out" >>"$runs"
  say "  strace $target: $(tail -n 1 "$runs" | jq -r '"\(.per_request) calls per request: " + ([.calls | to_entries[] | select(.value >= 0.05) | "\(.key) \(.value)"] | join(", "))')"
}

uptime_before=$(uptime)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
start_tokend
TADDR=127.0.0.1:$TPORT
HADDR=127.0.0.1:$HPORT
VADDR=127.0.0.1:$VPORT
start_nginx 1 1 "$HPORT" "$VPORT"
N1=127.0.0.1:$NGINX_PORT
N1_PID=$NGINX_PID
start_nginx auto auto
NA=127.0.0.1:$NGINX_PORT
say "bench: tokend binary on $TADDR, HTTP on $HADDR, verify listener on $VADDR; nginx (worker_processes 1) on $N1, (auto: $(nproc) here) on $NA"
say "bench: loading $TOKENS tokens"
tb load load tokend 0 load --addr "$TADDR" --key "@$scratch/tokend/operator.key" \
  --tokens "$TOKENS" --out "$scratch/tokens"

common=(--tokens-file "$scratch/tokens" --duration "$DUR" --warmup "$WARM")
ORDER=(v h n a b)
if has gen; then
  for r in $(seq "$REPEAT"); do
    for cp in $CASES; do
      c=${cp%%:*} p=${cp##*:}
      label="C=$c P=$p"
      say "bench: $label (round $r of $REPEAT)"
      for k in 0 1 2 3 4; do
        case ${ORDER[$(((k + r - 1) % 5))]} in
          v) tb gen "$label" tokend-verify "$r" http --addr "$VADDR" --connections "$c" --pipeline "$p" "${common[@]}" ;;
          h) tb gen "$label" tokend-http "$r" http --addr "$HADDR" --connections "$c" --pipeline "$p" "${common[@]}" ;;
          n) tb gen "$label" nginx-204 "$r" http --url "http://$N1/" --expect-status 204 --connections "$c" --pipeline "$p" "${common[@]}" ;;
          a) tb gen "$label" nginx-204-auto "$r" http --url "http://$NA/" --expect-status 204 --connections "$c" --pipeline "$p" "${common[@]}" ;;
          b) tb gen "$label" tokend-binary "$r" verify --addr "$TADDR" --connections "$c" --pipeline "$p" "${common[@]}" ;;
        esac
      done
    done
  done
fi

WRK_C=$(set -- $CASES; echo "${1%%:*}")
if has wrk; then
  for r in $(seq "$REPEAT"); do
    say "bench: wrk -t1 -c $WRK_C (round $r of $REPEAT)"
    WORDER=(v h n)
    for k in 0 1 2; do
      case ${WORDER[$(((k + r - 1) % 3))]} in
        v) wrk_run "C=$WRK_C" tokend-verify "$r" "$WRK_C" "http://$VADDR/v1/verify" ;;
        h) wrk_run "C=$WRK_C" tokend-http "$r" "$WRK_C" "http://$HADDR/v1/verify" ;;
        n) wrk_run "C=$WRK_C" nginx-204 "$r" "$WRK_C" "http://$N1/" ;;
      esac
    done
  done
fi

if has auth; then
  AORDER=(p a v d)
  for r in $(seq "$REPEAT"); do
    for c in $AUTH_CONNS; do
      say "bench: auth_request C=$c (round $r of $REPEAT)"
      for k in 0 1 2 3; do
        case ${AORDER[$(((k + r - 1) % 4))]} in
          p) tb auth "C=$c" nginx-plain "$r" http --url "http://$N1/plain" --expect-status 204 --connections "$c" "${common[@]}" ;;
          a) tb auth "C=$c" nginx-auth "$r" http --url "http://$N1/auth" --expect-status 204 --connections "$c" "${common[@]}" ;;
          v) tb auth "C=$c" nginx-auth-verify "$r" http --url "http://$N1/authv" --expect-status 204 --connections "$c" "${common[@]}" ;;
          d) tb auth "C=$c" tokend-verify "$r" http --addr "$VADDR" --connections "$c" "${common[@]}" ;;
        esac
      done
    done
  done
fi

if has strace; then
  say "bench: system calls per request at C=1 (strace -c, ${STRACE_S} s each)"
  workers() { ps -o pid= --ppid "$1" | tr -s ' \n' ' '; }
  strace_run tokend-verify "$TOKEND_PID" http --addr "$VADDR" --tokens-file "$scratch/tokens"
  strace_run tokend-http "$TOKEND_PID" http --addr "$HADDR" --tokens-file "$scratch/tokens"
  strace_run tokend-binary "$TOKEND_PID" verify --addr "$TADDR" --tokens-file "$scratch/tokens"
  strace_run nginx-204 "$(workers "$N1_PID")" http --url "http://$N1/" --expect-status 204 \
    --tokens-file "$scratch/tokens"
  strace_run nginx-auth "$(workers "$N1_PID") $TOKEND_PID" http --url "http://$N1/auth" \
    --expect-status 204 --tokens-file "$scratch/tokens"
  strace_run nginx-auth-verify "$(workers "$N1_PID") $TOKEND_PID" http --url "http://$N1/authv" \
    --expect-status 204 --tokens-file "$scratch/tokens"
fi

mkdir -p "$OUT"
cp "$runs" "$scratch"/nginx-*.conf "$OUT/"
has wrk && cp "$scratch/wrk.txt" "$OUT/"
has strace && cp "$scratch/strace.txt" "$OUT/"
machine=$(jq -n --arg cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" \
  --arg cores "$(nproc)" --arg mem "$(free -g | awk '/^Mem:/ { print $2 " GiB" }')" \
  --arg kernel "$(uname -r)" --arg nginx "$("$NGINX" -v 2>&1 | sed 's/.*nginx\///')" \
  --arg wrk "$(command -v wrk >/dev/null && wrk -v 2>&1 | sed -n '1s/^wrk \([^ ]*\).*/\1/p')" \
  --arg commit "$commit" --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --arg lb "$load_before" --arg la "$(cut -d' ' -f1-3 /proc/loadavg)" \
  --arg ub "$uptime_before" --arg ua "$(uptime)" \
  '{cpu: $cpu, cores: ($cores | tonumber), memory: $mem, kernel: $kernel, nginx: $nginx,
    wrk: $wrk, commit: $commit, date: $date, loadavg_before: $lb, loadavg_after: $la,
    uptime_before: $ub, uptime_after: $ua}')
params=$(jq -n --argjson t "$TOKENS" --argjson d "$DUR" --argjson w "$WARM" --argjson r "$REPEAT" \
  --arg cases "$CASES" --arg auth "$AUTH_CONNS" --arg parts "$PARTS" --arg nice "${NICE:-none}" \
  '{tokens: $t, duration_s: $d, warmup_s: $w, repeat: $r, cases: $cases, auth_connections: $auth,
    parts: $parts, nice: $nice, generator_threads: 1}')

jq -s --argjson machine "$machine" --argjson params "$params" '
  def median: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
  def spread: {median: median, low: min, high: max, each: .};
  def ordered: reduce .[] as $x ([]; if index([$x]) then . else . + [$x] end);
  def med(f): map(f) | median;
  . as $all
  # per round: f of target a over f of target b (paired), for one part and case
  | def paired($part; $case; $a; $b; f):
      [$all[] | select(.part == $part and .case == $case and .target == $a)] as $x
      | [$all[] | select(.part == $part and .case == $case and .target == $b)] as $y
      | [$x[] | . as $i | ($y[] | select(.round == $i.round)) as $j | ($i | f) / ($j | f)];
    def diff($part; $case; $a; $b; f):
      [$all[] | select(.part == $part and .case == $case and .target == $a)] as $x
      | [$all[] | select(.part == $part and .case == $case and .target == $b)] as $y
      | [$x[] | . as $i | ($y[] | select(.round == $i.round)) as $j | ($i | f) - ($j | f)];
    def figures($part; $case):
      [$all[] | select(.part == $part and .case == $case)] as $r
      | [$r[].target] | ordered
      | map(. as $t | [$r[] | select(.target == $t)]
            | {target: $t, runs: length, ops_per_sec: med(.ops_per_sec),
               ops_low: (map(.ops_per_sec) | min), ops_high: (map(.ops_per_sec) | max),
               p50_us: med(.p50_us), p99_us: med(.p99_us),
               generator_cpu: med(.generator_cpu // null)});
  {machine: $machine, params: $params,
   gen: ([$all[] | select(.part == "gen") | .case] | ordered | map(. as $c |
     {case: $c, figures: figures("gen"; $c),
      ratios: {"tokend-verify/nginx-204": (paired("gen"; $c; "tokend-verify"; "nginx-204"; .ops_per_sec) | spread),
               "tokend-verify/nginx-204-auto": (paired("gen"; $c; "tokend-verify"; "nginx-204-auto"; .ops_per_sec) | spread),
               "tokend-verify/tokend-http": (paired("gen"; $c; "tokend-verify"; "tokend-http"; .ops_per_sec) | spread),
               "tokend-verify/tokend-binary": (paired("gen"; $c; "tokend-verify"; "tokend-binary"; .ops_per_sec) | spread),
               "tokend-http/nginx-204": (paired("gen"; $c; "tokend-http"; "nginx-204"; .ops_per_sec) | spread),
               "tokend-http/nginx-204-auto": (paired("gen"; $c; "tokend-http"; "nginx-204-auto"; .ops_per_sec) | spread),
               "tokend-http/tokend-binary": (paired("gen"; $c; "tokend-http"; "tokend-binary"; .ops_per_sec) | spread)}})),
   wrk: ([$all[] | select(.part == "wrk") | .case] | ordered | map(. as $c |
     {case: $c, figures: figures("wrk"; $c),
      ratio: (paired("wrk"; $c; "tokend-http"; "nginx-204"; .ops_per_sec) | spread),
      ratio_verify: (paired("wrk"; $c; "tokend-verify"; "nginx-204"; .ops_per_sec) | spread)})),
   auth: ([$all[] | select(.part == "auth") | .case] | ordered | map(. as $c |
     {case: $c, figures: figures("auth"; $c),
      added_p50_us: (diff("auth"; $c; "nginx-auth"; "nginx-plain"; .p50_us) | spread),
      added_p99_us: (diff("auth"; $c; "nginx-auth"; "nginx-plain"; .p99_us) | spread),
      ops_ratio: (paired("auth"; $c; "nginx-auth"; "nginx-plain"; .ops_per_sec) | spread),
      verify_added_p50_us: (diff("auth"; $c; "nginx-auth-verify"; "nginx-plain"; .p50_us) | spread),
      verify_added_p99_us: (diff("auth"; $c; "nginx-auth-verify"; "nginx-plain"; .p99_us) | spread),
      verify_ops_ratio: (paired("auth"; $c; "nginx-auth-verify"; "nginx-plain"; .ops_per_sec) | spread)})),
   strace: [$all[] | select(.part == "strace")],
   runs: $all}' "$runs" >"$OUT/http.json"

{
  jq -r '.machine | "machine: \(.cpu), \(.cores) cores, \(.memory), Linux \(.kernel), nginx \(.nginx), wrk \(.wrk), tokend \(.commit), \(.date)",
                    "uptime before: \(.uptime_before | sub("^ +"; ""))",
                    "uptime after:  \(.uptime_after | sub("^ +"; ""))"' "$OUT/http.json"
  jq -r '.params | "each run: \(.duration_s) s after \(.warmup_s) s warm-up, \(.repeat) rounds (order rotated), \(.tokens) tokens, keep-alive, one generator thread (tokenbench; wrk -t1), priority: \(.nice)"' "$OUT/http.json"
  echo "nginx-204: nginx 'location / { return 204; }' with worker_processes 1 (tokend answers HTTP on its one loop thread); nginx-204-auto: worker_processes auto ($(nproc) workers); all on the same $(nproc) cores as the generator"
  echo "figures: medians over the rounds; ratios: the median of the per-round ratios (all targets back to back in each round) [lowest-highest]"
  if jq -e '.gen | length > 0' "$OUT/http.json" >/dev/null; then
    echo
    printf '%-12s %-15s %10s %19s %9s\n' case target "op/s" "p50/p99 us" "gen cpu"
    jq -r '.gen[] | .case as $c | .figures[] | [$c, .target, (.ops_per_sec|floor),
             "\(.p50_us*10|round/10)/\(.p99_us*10|round/10)", (.generator_cpu*100|round/100)] | @tsv' "$OUT/http.json" |
      awk -F'\t' '{ printf "%-12s %-15s %10s %19s %9s\n", $1, $2, $3, $4, $5 }'
    echo
    printf '%-12s %-30s %s\n' case ratio "median [lowest-highest]"
    jq -r 'def r2: . * 100 | round / 100; def rr: "\(.median|r2) [\(.low|r2)-\(.high|r2)]";
           .gen[] | .case as $c | .ratios | to_entries[] | select(.value.median != null)
           | [$c, .key, (.value|rr)] | @tsv' "$OUT/http.json" |
      awk -F'\t' '{ printf "%-12s %-30s %s\n", $1, $2, $3 }'
  fi
  if jq -e '.wrk | length > 0' "$OUT/http.json" >/dev/null; then
    echo
    jq -r 'def r2: . * 100 | round / 100; def rr: "\(.median|r2) [\(.low|r2)-\(.high|r2)]";
           . as $j | .wrk[] | .case as $c
           | (([$j.gen[] | select(.case == "\($c) P=1") | .ratios["tokend-http/nginx-204"] | rr] | first) // "-") as $tb
           | "wrk -t1 \($c): " + ([.figures[] | "\(.target) \(.ops_per_sec|floor) req/s (p50/p99 \(.p50_us)/\(.p99_us) us)"] | join(", "))
             + "; tokend-verify/nginx-204 \(.ratio_verify|rr), tokend-http/nginx-204 \(.ratio|rr) (tokenbench, \($c) P=1: \($tb))"' "$OUT/http.json"
  fi
  if jq -e '.auth | length > 0' "$OUT/http.json" >/dev/null; then
    echo
    echo "nginx auth_request in front of tokend (worker_processes 1; upstream keepalive 64 to tokend's /v1/verify: auth to the HTTP listener, authv to the verify listener) against the same location without auth_request:"
    printf '%-6s %-7s %-19s %-19s %-19s %-24s %-24s %-20s\n' case via "plain p50/p99 us" "auth p50/p99 us" "direct p50/p99 us" "added p50 us" "added p99 us" "auth/plain op/s"
    jq -r 'def r1: . * 10 | round / 10; def r2: . * 100 | round / 100;
           def f($t): (.figures[] | select(.target == $t) | "\(.p50_us|r1)/\(.p99_us|r1)") // "-";
           def s1($x): "\($x.median|r1) [\($x.low|r1)-\($x.high|r1)]";
           def s2($x): "\($x.median|r2) [\($x.low|r2)-\($x.high|r2)]";
           .auth[] | ([.case, "auth", f("nginx-plain"), f("nginx-auth"), f("tokend-verify"),
                       s1(.added_p50_us), s1(.added_p99_us), s2(.ops_ratio)] | @tsv),
                     ([.case, "authv", f("nginx-plain"), f("nginx-auth-verify"), f("tokend-verify"),
                       s1(.verify_added_p50_us), s1(.verify_added_p99_us), s2(.verify_ops_ratio)] | @tsv)' "$OUT/http.json" |
      awk -F'\t' '{ printf "%-6s %-7s %-19s %-19s %-19s %-24s %-24s %-20s\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
    echo "(direct: tokenbench http straight to tokend's verify listener at the same C, for reference)"
  fi
  if jq -e '.strace | length > 0' "$OUT/http.json" >/dev/null; then
    echo
    echo "system calls per request at C=1 (strace -c -f -p on the server; nginx-auth: the nginx worker and tokend together):"
    jq -r '.strace[] | "  \(.target): \(.per_request) (" + ([.calls | to_entries | sort_by(-.value)[] | select(.value >= 0.05) | "\(.key) \(.value)"] | join(", ")) + ")"' "$OUT/http.json"
  fi
} | tee "$OUT/http.txt"
say "bench: results in $OUT/http.txt, http.json, runs.jsonl"
