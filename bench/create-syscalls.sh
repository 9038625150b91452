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
TB=$BIN/tokenbench
OUT=${1:-}
SECS=${BENCH_SC_SECONDS:-3}
command -v strace >/dev/null || { echo "create-syscalls: strace is not installed" >&2; exit 2; }
. bench/lib.sh
bench_setup syscalls

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

# tokend_case NAME BINARY: that tokend, loaded with 2,000 tokens, at C=1 and 50.
tokend_case() {
  start_tokend "$1" "$2"
  local key=@$scratch/$1/operator.key addr=127.0.0.1:$TOKEND_PORT
  "$TB" load --addr "$addr" --key "$key" --tokens 2000 --out "$scratch/$1.tok" >/dev/null
  for c in 1 50; do count "$1" "$TOKEND_PID" "$c" create --addr "$addr" --key "$key"; done
}

# A brace group, not a pipeline: it runs in this shell, so the servers'
# pids reach bench_cleanup (and no reader of a pipe waits on their stdout).
{
  echo "system calls per create (strace -c -f over one ${SECS} s run; $(uname -r), $(date -u +%Y-%m-%dT%H:%M:%SZ), tokend $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
  tokend_case tokend "$TOKEND"
  if [ -n "${BENCH_BASELINE:-}" ]; then
    cp "$BENCH_BASELINE" "$scratch/bin/tokend-base"
    tokend_case tokend-base "$scratch/bin/tokend-base"
  fi
  start_redis redis --save '' --appendonly yes --appendfsync always
  for c in 1 50; do count redis "$REDIS_PID" "$c" redis-create --addr "127.0.0.1:$REDIS_PORT"; done
} >"$scratch/out"
cat "$scratch/out"
[ -z "$OUT" ] || cp "$scratch/out" "$OUT"
