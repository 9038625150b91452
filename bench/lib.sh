# lib.sh - what bench/run.sh, http.sh and tls.sh share; sourced, not run.
#
# bench_setup NAME: a scratch directory ($scratch) with a copy of the
# programs under test ($TB and $TOKEND point there: a rebuild of bin/ during
# the run, in a shared work tree, must not mix two versions in one set of
# results), and an EXIT trap that stops every pid in $pids (TERM, up to
# 10 s, then KILL), runs bench_cleanup_more if the script defines it, and
# removes $scratch. Needs $BIN and $TB set.
#
# start_redis and start_tokend start the servers of run.sh, tls.sh and
# create-syscalls.sh (http.sh defines its own start_tokend, with the
# listeners it needs).

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

# start_redis NAME ARGS...: a redis-server (under $NICE, when set) on a free
# port, its directory $scratch/NAME; sets REDIS_PORT and REDIS_PID.
start_redis() {
  local name=$1; shift
  mkdir -p "$scratch/$name"
  for _ in 1 2 3 4 5; do
    local port=$((20000 + RANDOM % 40000))
    port_free "$port" || continue
    ${NICE:-} redis-server --bind 127.0.0.1 --port "$port" --daemonize no --dir "$scratch/$name" \
      "$@" >"$scratch/$name.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do
      if redis-cli -p "$port" ping >/dev/null 2>&1; then REDIS_PORT=$port; REDIS_PID=$pid; return 0; fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
  done
  say "bench: cannot start redis-server ($name); see its log:"; cat "$scratch/$name.log" >&2
  exit 1
}

# start_tokend [NAME [BINARY [DATA [ARGS...]]]]: a tokend (default: tokend,
# $TOKEND, the build under test; under $NICE, when set) with its data in DATA
# (default $scratch/NAME) and its log in $scratch/NAME.log, on a free port,
# without its HTTP listener, with ARGS; sets TOKEND_PORT and TOKEND_PID.
start_tokend() {
  local name=${1:-tokend} prog=${2:-$TOKEND} data=${3:-$scratch/${1:-tokend}} http=()
  shift $(($# < 3 ? $# : 3))
  # No HTTP listener (it would take 7080); a baseline from before it has no flag.
  # The whole help first: grep -q would stop reading early, and under
  # pipefail the help's SIGPIPE would say "no --http" at random.
  local help
  help=$("$prog" --help 2>/dev/null || true)
  [[ $help == *"--http "* ]] && http=(--http none)
  ${NICE:-} "$prog" --listen 127.0.0.1:0 "${http[@]}" --data "$data" "$@" 2>"$scratch/$name.log" &
  pids+=("$!")
  TOKEND_PID=$!
  for _ in $(seq 300); do
    TOKEND_PORT=$(sed -n 's/^tokend: listening on [0-9.]*:\([0-9]*\).*/\1/p' "$scratch/$name.log")
    [ -n "$TOKEND_PORT" ] && return 0
    sleep 0.05
  done
  say "bench: $name did not start:"; cat "$scratch/$name.log" >&2
  exit 1
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
