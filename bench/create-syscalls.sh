#!/usr/bin/env bash
# create-syscalls.sh - system calls per durable create, counted by
# `strace -c -f -p` over one run of tokenbench's creates, for tokend (and an
# earlier build, BENCH_BASELINE) and Redis with appendfsync always, at C=1
# and C=50 (docs/bench.md, "System calls per create").
#
#   bench/create-syscalls.sh [OUT_FILE]
#
# Counts, not times: strace slows every system call, so the rates it runs at
# are not the servers' (and at C=50 its batches are not the usual size); the
# calls per operation at C=1, where every create is a batch of its own, are
# what the server does. BIN (bin), BENCH_BASELINE (none), BENCH_SC_SECONDS (3).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
OUT=${1:-}
SECS=${BENCH_SC_SECONDS:-3}
TB=$BIN/tokenbench
command -v strace >/dev/null || { echo "create-syscalls: strace is not installed" >&2; exit 2; }
scratch=$(mktemp -d "${TMPDIR:-/tmp}/create-syscalls.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT

# count NAME PID C MODE ARGS...: strace PID over one tokenbench run; prints
# "NAME C=c ops: call per-op, ..." (the eight most frequent).
count() {
  local name=$1 pid=$2 c=$3; shift 3
  strace -c -f -p "$pid" -o "$scratch/st" >/dev/null 2>&1 &
  local s=$!
  sleep 0.5 # attached to every thread before the first request
  "$TB" "$@" --connections "$c" --duration "$SECS" --warmup 0 --json >"$scratch/res"
  kill -INT "$s"
  wait "$s" 2>/dev/null || true
  local ops
  ops=$(jq '.ops' "$scratch/res")
  # per call: count / creates, most frequent first (mawk has no sorted arrays)
  awk -v n="$ops" 'NR > 2 && $NF != "total" && $4 + 0 > 0 { printf "%s %.2f\n", $NF, $4 / n }' \
    "$scratch/st" | sort -k2,2 -rn >"$scratch/per"
  printf '%-12s C=%-3s %7d creates, %6.2f calls each:' "$name" "$c" "$ops" \
    "$(awk '{ t += $2 } END { print t + 0 }' "$scratch/per")"
  head -n 8 "$scratch/per" | awk '{ printf " %s %s", $1, $2 } END { printf "\n" }'
}

tokend_case() {
  local name=$1 prog=$2 http=()
  local help
  help=$("$prog" --help 2>/dev/null || true)
  [[ $help == *"--http "* ]] && http=(--http none)
  "$prog" --listen 127.0.0.1:0 "${http[@]}" --data "$scratch/$name" 2>"$scratch/$name.log" &
  local pid=$!
  pids+=("$pid")
  local port=""
  for _ in $(seq 200); do
    port=$(sed -n 's/^tokend: listening on [0-9.]*:\([0-9]*\).*/\1/p' "$scratch/$name.log")
    [ -n "$port" ] && break
    sleep 0.05
  done
  [ -n "$port" ] || { echo "create-syscalls: $name did not start" >&2; cat "$scratch/$name.log" >&2; exit 1; }
  local key=@$scratch/$name/operator.key
  "$TB" load --addr "127.0.0.1:$port" --key "$key" --tokens 2000 --out "$scratch/$name.tok" >/dev/null
  for c in 1 50; do count "$name" "$pid" "$c" create --addr "127.0.0.1:$port" --key "$key"; done
  kill "$pid"
}

# A brace group, not a pipeline: it runs in this shell, so the servers'
# pids reach the cleanup (and no reader of a pipe waits on their stdout).
{
  echo "system calls per create (strace -c -f over one ${SECS} s run; $(uname -r), $(date -u +%Y-%m-%dT%H:%M:%SZ), tokend $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
  tokend_case tokend "$BIN/tokend"
  [ -n "${BENCH_BASELINE:-}" ] && tokend_case tokend-base "$BENCH_BASELINE"
  mkdir -p "$scratch/redis"
  rport=$((20000 + RANDOM % 40000))
  redis-server --bind 127.0.0.1 --port "$rport" --dir "$scratch/redis" --save '' --appendonly yes \
    --appendfsync always --daemonize no >"$scratch/redis.log" 2>&1 &
  rpid=$!
  pids+=("$rpid")
  for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
  for c in 1 50; do count redis "$rpid" "$c" redis-create --addr "127.0.0.1:$rport"; done
} >"$scratch/out"
cat "$scratch/out"
[ -z "$OUT" ] || cp "$scratch/out" "$OUT"
