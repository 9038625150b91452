# lib.sh - what bench/run.sh, http.sh and tls.sh share; sourced, not run.
#
# bench_setup NAME: a scratch directory ($scratch) with a copy of the
# programs under test ($TB and $TOKEND point there: a rebuild of bin/ during
# the run, in a shared work tree, must not mix two versions in one set of
# results), and an EXIT trap that stops every pid in $pids (TERM, up to
# 10 s, then KILL), runs bench_cleanup_more if the script defines it, and
# removes $scratch. Needs $BIN and $TB set.

say() { printf '%s\n' "$*" >&2; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A free loopback port on stdout (exits the script when none is found).
free_port() {
  local p
  for _ in $(seq 20); do
    p=$((20000 + RANDOM % 40000))
    port_free "$p" && { echo "$p"; return 0; }
  done
  say "bench: no free port"; exit 1
}

bench_cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if declare -F bench_cleanup_more >/dev/null; then bench_cleanup_more; fi
  rm -rf "$scratch"
}

bench_setup() {
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/tokenbench-$1.XXXXXX")
  mkdir "$scratch/bin"
  cp "$BIN/tokend" "$TB" "$scratch/bin/"
  TB=$scratch/bin/tokenbench
  TOKEND=$scratch/bin/tokend
  pids=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}
