#!/usr/bin/env bash
# fresh-machine.sh - the README's two commands on a fresh Debian machine, from
# nothing: `make test`, then `make run` (started in the background, checked,
# stopped). Opt-in: make test does not run it. Needs root (debootstrap,
# chroot, mount) and the Debian package mirror; loopback only otherwise.
#
#   tests/fresh-machine.sh   (from anywhere; ~2 min on a fast mirror, the first run
#                            adds the debootstrap, ~30 s)
#
# The "fresh machine" is a chroot of debootstrap --variant=minbase $FRESH_SUITE
# (bookworm) plus two packages installed with it: make (the README's commands
# are make targets) and ca-certificates. Nothing else: no git (the checkout is
# made on the host), no compiler, no library; all of that must come from
# `make deps`. The chroot also gets, as any installed machine has them:
# /etc/resolv.conf (the host's), /etc/hosts (localhost, if debootstrap left
# none) and apt sources naming the mirrors the host's own apt sources use
# ($FRESH_SUITE, -updates and -security where the host has them). One thing a
# real machine would differ in: /usr/sbin/policy-rc.d refuses service starts,
# so installing redis-server does not start a system redis-server, which
# would listen on the host's 127.0.0.1:6379 (the chroot shares the host's
# kernel and network) and outlive the run. The tests start their own
# redis-server and tokend on free ports. And one thing every machine of this
# kind has that minbase does not: Node.js 20 with npm (NodeSource's nodejs
# package; the OpenAPI lint runs on it, and Debian's own nodejs 18 and npm 9
# are too old for it): the host's nodejs package (rebuilt with dpkg-repack)
# and the host's npm (upgraded on the image past the package's), with npm's
# configuration and the certificate authorities the image adds (npm reaches
# its registry through the workplace's egress), are put in the chroot before
# make runs, as the image has them.
#
# Steps:
#   1. base: $FRESH_DIR/base-$FRESH_SUITE-minbase.tar, made with debootstrap the
#      first time and reused after (FRESH_REBUILD=1 makes it again).
#   2. $FRESH_DIR/root: the base unpacked afresh, and a `git clone` of this
#      checkout's HEAD in /root/tokend (uncommitted changes are not in it).
#   3. In a mount namespace of its own (unshare -m): the root bound on itself
#      (so that / is a mount point), /proc, /sys (read-only), /dev/pts and
#      /dev/shm mounted in the chroot, unmounted by the exit trap.
#   4. In the chroot, as root, in /root/tokend: `make test` (log:
#      $FRESH_DIR/make-test.log), then `make run` in the background: its
#      "tokend: listening on" line, a `bin/tokenctl ping`, then SIGTERM to
#      tokend by pid, which must exit 0 (log: $FRESH_DIR/make-run.log).
#      If 127.0.0.1:7070 is taken on the host, make run gets
#      TOKEND_FLAGS="--listen 127.0.0.1:<a free port>" (the README's pass-through).
#   5. The exit trap stops whatever it started (by pid), unmounts what it
#      mounted, checks nothing is left mounted, and removes the root
#      (FRESH_KEEP=1 keeps it, for a look inside with chroot).
#
# Prints make test's final line ("N passed, N failed, N skipped") and the
# durations; exits non-zero if anything failed, a test was skipped (on a
# fresh machine with `make deps` done, nothing may be missing), or make run
# did not come up and stop cleanly.
#
# Environment: FRESH_DIR (/tmp/tokend-fresh), FRESH_SUITE (bookworm),
# FRESH_MIRROR (the host's apt mirror for FRESH_SUITE, else
# http://deb.debian.org/debian), FRESH_REBUILD=1, FRESH_KEEP=1,
# FRESH_TIMEOUT (3600: seconds for make test, package installation included).
set -euo pipefail

say() { printf 'fresh-machine: %s\n' "$*"; }
die() { say "FAIL: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mount)"

# Everything below runs in a private mount namespace: whatever happens, no
# mount made here is seen by (or left behind on) the host; the trap unmounts
# them all the same.
if [ "${FRESH_IN_NS:-}" != 1 ] && command -v unshare >/dev/null; then
  exec unshare --mount --propagation private env FRESH_IN_NS=1 bash "$(realpath "$0")" "$@"
fi

repo=$(cd "$(dirname "$(realpath "$0")")/.." && pwd)
SUITE=${FRESH_SUITE:-bookworm}
DIR=$(realpath -m "${FRESH_DIR:-/tmp/tokend-fresh}")
BASE=$DIR/base-$SUITE-minbase.tar
ROOT=$DIR/root
SRC=/root/tokend
TIMEOUT=${FRESH_TIMEOUT:-3600}
t_start=$SECONDS

# "URI SUITE" for every enabled deb source of the host's apt.
host_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed 's/#.*//' "$f" | awk '$1 == "deb" {
      i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
      print $i, $(i + 1) }'
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'function flush(  u, s) {
           if (deb && on) for (u = 1; u <= nu; u++) for (s = 1; s <= ns; s++) print U[u], S[s]
           deb = 0; on = 1; nu = 0; ns = 0 }
         BEGIN { on = 1 }
         /^[ \t]*#/ { next }
         /^[ \t]*$/ { flush(); next }
         tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
         tolower($1) == "uris:" { for (i = 2; i <= NF; i++) U[++nu] = $i }
         tolower($1) == "suites:" { for (i = 2; i <= NF; i++) S[++ns] = $i }
         tolower($1) == "enabled:" { on = (tolower($2) != "no") }
         END { flush() }' "$f"
  done
}
sources=$(host_sources)
uri_for() { awk -v s="$1" '$2 == s { print $1; exit }' <<<"$sources"; }
MIRROR=${FRESH_MIRROR:-$(uri_for "$SUITE")}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
UPDATES=$(uri_for "$SUITE-updates")
SECURITY=$(uri_for "$SUITE-security")

mkdir -p "$DIR"
exec 9>"$DIR/lock"
flock -n 9 || die "another fresh-machine.sh is using $DIR"

# ---- cleanup: by pid, then the mounts, then the root -----------------------
mounted=()
pids=()
in_root_pids() { # processes whose root directory is the chroot
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOT" ] && echo "${p#/proc/}"
  done
  return 0
}
cleanup() {
  local rc=$? p i left
  trap - EXIT INT TERM
  set +e # every step below runs, whatever fails
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  left=$(in_root_pids)
  if [ -n "$left" ]; then
    say "processes still running in the chroot (killed): $(tr '\n' ' ' <<<"$left")"
    for p in $left; do kill -KILL "$p" 2>/dev/null || true; done
    sleep 0.5
    [ "$rc" -ne 0 ] || rc=1
  fi
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" || true
  done
  if grep -qF " $ROOT/" /proc/self/mountinfo || grep -qF " $ROOT " /proc/self/mountinfo; then
    say "FAIL: still mounted under $ROOT:"; grep -F " $ROOT" /proc/self/mountinfo >&2
    exit 1
  fi
  if [ "${FRESH_KEEP:-}" = 1 ]; then
    say "kept $ROOT (chroot $ROOT; rm -rf $ROOT when done)"
  else
    rm -rf --one-file-system "$ROOT"
  fi
  rm -rf --one-file-system "$DIR/base-build"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mount_in() { # mount_in TYPE OPTIONS PATH-IN-ROOT
  mkdir -p "$ROOT$3"
  mount -t "$1" -o "$2" "$1" "$ROOT$3"
  mounted+=("$ROOT$3")
}

# in_root [NAME=VALUE...] COMMAND...: in the chroot, as root, with a clean environment
in_root=(chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb
         PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)

# alive PID: running (a zombie, exited but not yet waited for, is not)
alive() {
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

# ---- 1. the base -------------------------------------------------------------
if ! command -v debootstrap >/dev/null; then
  say "installing debootstrap on the host"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap
fi
if [ "${FRESH_REBUILD:-}" = 1 ] || [ ! -s "$BASE" ]; then
  t0=$SECONDS
  say "debootstrap --variant=minbase $SUITE from $MIRROR (once; cached in $BASE)"
  rm -rf --one-file-system "$DIR/base-build"
  if ! debootstrap --variant=minbase --include=make,ca-certificates "$SUITE" \
         "$DIR/base-build" "$MIRROR" >"$DIR/debootstrap.log" 2>&1; then
    tail -n 20 "$DIR/debootstrap.log" >&2
    die "debootstrap failed; see $DIR/debootstrap.log"
  fi
  chroot "$DIR/base-build" apt-get clean
  printf '#!/bin/sh\n# fresh-machine.sh: no service starts in this chroot\nexit 101\n' \
    >"$DIR/base-build/usr/sbin/policy-rc.d"
  chmod 755 "$DIR/base-build/usr/sbin/policy-rc.d"
  tar --numeric-owner -C "$DIR/base-build" -cf "$BASE.tmp" .
  mv "$BASE.tmp" "$BASE"
  rm -rf --one-file-system "$DIR/base-build"
  say "base made in $((SECONDS - t0)) s"
else
  say "base: $BASE (cached; FRESH_REBUILD=1 makes it again)"
fi

# ---- 2. the root and the checkout -------------------------------------------
grep -qF " $ROOT" /proc/self/mountinfo && die "something is mounted under $ROOT"
rm -rf --one-file-system "$ROOT"
mkdir -p "$ROOT"
tar --numeric-owner -C "$ROOT" -xpf "$BASE"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
[ -s "$ROOT/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
  >"$ROOT/etc/hosts"
{
  echo "deb $MIRROR $SUITE main"
  [ -z "$UPDATES" ] || echo "deb $UPDATES $SUITE-updates main"
  [ -z "$SECURITY" ] || echo "deb $SECURITY $SUITE-security main"
} >"$ROOT/etc/apt/sources.list"
rm -f "$ROOT"/etc/apt/sources.list.d/*

head=$(git -C "$repo" rev-parse HEAD)
dirty=""
[ -z "$(git -C "$repo" status --porcelain --untracked-files=no)" ] ||
  dirty=" (the work tree has uncommitted changes: not included)"
git clone -q --no-hardlinks "$repo" "$ROOT$SRC"
git -C "$ROOT$SRC" checkout -q --detach "$head"
say "checkout: $(git -C "$repo" log -1 --format='%h %s' "$head" | cut -c1-72)$dirty"
say "apt sources in the chroot: $(paste -sd';' "$ROOT/etc/apt/sources.list")"

# ---- 3. mounts ---------------------------------------------------------------
# The root on itself first, so that / is a mount point in the chroot, as on a
# machine: test_space makes / private in a mount namespace of its own before
# it mounts its small tmpfs, which fails (EINVAL) where / is no mount point.
mount --bind "$ROOT" "$ROOT"
mounted+=("$ROOT")
mount_in proc nosuid,nodev,noexec /proc
mount_in sysfs ro,nosuid,nodev,noexec /sys
mount_in devpts newinstance,ptmxmode=0666,mode=0620,gid=5 /dev/pts
mount_in tmpfs mode=1777,nosuid,nodev /dev/shm

# Node.js as the machine image has it (see the top): the host's package,
# rebuilt from its installed files with dpkg-repack (the image installed it
# from a .deb that no apt source serves).
if dpkg -s nodejs >/dev/null 2>&1; then
  if ! command -v dpkg-repack >/dev/null; then
    say "installing dpkg-repack on the host"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpkg-repack
  fi
  (cd "$ROOT/tmp" && dpkg-repack nodejs >"$DIR/dpkg-repack.log" 2>&1) ||
    die "cannot rebuild the host's nodejs package (dpkg-repack nodejs; see $DIR/dpkg-repack.log)"
  "${in_root[@]}" bash -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq /tmp/nodejs_*.deb >/dev/null && rm -f /tmp/nodejs_*.deb' ||
    die "cannot install nodejs in the chroot"
  # The image's npm is newer than the package's (npm install -g over it): its
  # files are not the package's, so they come as they are.
  rm -rf "$ROOT/usr/lib/node_modules/npm"
  cp -a /usr/lib/node_modules/npm "$ROOT/usr/lib/node_modules/npm"
  # And npm's configuration with the certificate authorities the image
  # trusts (the npm registry is reached through the workplace's egress,
  # whose CA is among them).
  for f in /etc/npmrc /usr/etc/npmrc; do
    [ ! -f "$f" ] || { mkdir -p "$(dirname "$ROOT$f")" && cp "$f" "$ROOT$f"; }
  done
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
    "${in_root[@]}" update-ca-certificates >/dev/null 2>&1 ||
      die "update-ca-certificates failed in the chroot"
  fi
  say "nodejs in the chroot, as on the image: node $("${in_root[@]}" node --version)," \
      "npm $("${in_root[@]}" npm --version)"
fi

# ---- 4a. make test -----------------------------------------------------------
t0=$SECONDS
say "make test in the chroot (log: $DIR/make-test.log)"
set +e
timeout -k 30 "$TIMEOUT" "${in_root[@]}" bash -c "cd $SRC && make test" \
  >"$DIR/make-test.log" 2>&1
test_rc=$?
set -e
t_test=$((SECONDS - t0))
grep -E '^installing:' "$DIR/make-test.log" | cut -c1-200 | sed 's/^/  /' || true
grep -E '^(ok   |FAIL )' "$DIR/make-test.log" | sed 's/^/  /' || true
final=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$DIR/make-test.log" | tail -n 1 || true)
failed=0
if [ -z "$final" ]; then
  say "make test printed no final line (exit $test_rc); the end of its log:"
  tail -n 30 "$DIR/make-test.log" | sed 's/^/  /'
  failed=1
elif [ "$test_rc" -ne 0 ]; then
  failed=1
elif ! [[ "$final" =~ ,\ 0\ failed,\ 0\ skipped$ ]]; then
  say "a test was skipped: something make deps should install is missing"
  failed=1
fi
say "make test: exit $test_rc in ${t_test} s: ${final:-(no final line)}"

# ---- 4b. make run ------------------------------------------------------------
port=7070
if (exec 3<>/dev/tcp/127.0.0.1/7070) 2>/dev/null; then
  for _ in $(seq 50); do
    port=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
  done
  say "127.0.0.1:7070 is in use on the host (shared network): make run on $port instead"
fi
hport=7080
if (exec 3<>/dev/tcp/127.0.0.1/7080) 2>/dev/null; then
  for _ in $(seq 50); do
    hport=$((20000 + RANDOM % 40000))
    [ "$hport" != "$port" ] || continue
    (exec 3<>"/dev/tcp/127.0.0.1/$hport") 2>/dev/null || break
  done
  say "127.0.0.1:7080 is in use on the host: make run's HTTP on $hport instead"
fi
flags=()
tf=""
[ "$port" = 7070 ] || tf="--listen 127.0.0.1:$port"
[ "$hport" = 7080 ] || tf="${tf:+$tf }--http 127.0.0.1:$hport"
[ -z "$tf" ] || flags=(TOKEND_FLAGS="$tf")
t0=$SECONDS
say "make run${flags[*]:+ ${flags[*]}} in the chroot, in the background (log: $DIR/make-run.log)"
"${in_root[@]}" "${flags[@]}" bash -c "cd $SRC && exec make run" >"$DIR/make-run.log" 2>&1 &
mpid=$!   # chroot, env and bash each exec the next: this becomes make's pid
pids+=("$mpid")
run_ok=0 line="" tpid=""
for _ in $(seq 600); do # 60 s
  line=$(grep -m1 '^tokend: listening on ' "$DIR/make-run.log" || true)
  [ -n "$line" ] && break
  alive "$mpid" || break
  sleep 0.1
done
if [ -z "$line" ]; then
  say "make run: no \"tokend: listening on\" line; its log:"
  tail -n 20 "$DIR/make-run.log" | sed 's/^/  /'
else
  say "make run: $line"
  # tokend is make's child (make runs the one-command recipe without a shell)
  for c in $(cat "/proc/$mpid/task/$mpid/children" 2>/dev/null); do
    [ "$(cat "/proc/$c/comm" 2>/dev/null)" = tokend ] && tpid=$c
  done
  ping=$("${in_root[@]}" "$SRC/bin/tokenctl" --addr "127.0.0.1:$port" ping 2>&1) && pinged=1 || pinged=0
  say "tokenctl ping: $ping"
  if [ -z "$tpid" ]; then
    say "make run: cannot find tokend among make's children"
  elif [[ "$line" != "tokend: listening on 127.0.0.1:$port, data in ./var (0 credentials)"* ]]; then
    say "make run: the listening line is not the README's"
  elif [ "$pinged" = 1 ]; then
    kill -TERM "$tpid"
    for _ in $(seq 200); do alive "$mpid" || break; sleep 0.1; done
    if alive "$mpid"; then
      say "make run: tokend (pid $tpid) still running 20 s after SIGTERM"
    else
      wait "$mpid" && run_rc=0 || run_rc=$?
      pids=() # reaped: its pid may be reused, the trap must not signal it
      if [ "$run_rc" = 0 ]; then
        run_ok=1
        say "make run: SIGTERM to tokend (pid $tpid): stopped, make exit 0 ($((SECONDS - t0)) s from start to stop)"
      else
        say "make run: exit $run_rc after SIGTERM to tokend; its log:"
        tail -n 10 "$DIR/make-run.log" | sed 's/^/  /'
      fi
    fi
  fi
fi
[ "$run_ok" = 1 ] || failed=1

say "total $((SECONDS - t_start)) s (make test ${t_test} s)"
echo "${final:-no final line from make test}"
if [ "$failed" -ne 0 ]; then
  say "FAIL"
  exit 1
fi
say "ok: a fresh $SUITE passes"
