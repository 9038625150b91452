#!/usr/bin/env bash
# Runs each libFuzzer binary given for SECONDS seconds and prints one line per
# target with the executions done; exits non-zero if any target crashed
# (sanitizer report, broken invariant, leak, timeout, out of memory).
#
#   tests/fuzz/run.sh SECONDS MAX_LEN build/fuzz/fuzz_<name>...
#
# Corpus: build/fuzz/corpus/<name> (kept between runs, grows), seeded from
# build/fuzz/seeds/<name> (gen_corpus.c). Crash reproducers go to
# build/fuzz/crashes/<name>-crash-<sha1>; full output to build/fuzz/logs/<name>.log.
set -u
secs=$1 maxlen=$2
shift 2
root=build/fuzz
mkdir -p "$root/corpus" "$root/crashes" "$root/logs"
failed=0
t0=$(date +%s)
for bin in "$@"; do
  name=$(basename "$bin")
  name=${name#fuzz_}
  corpus=$root/corpus/$name
  seeds=$root/seeds/$name
  log=$root/logs/$name.log
  mkdir -p "$corpus" "$seeds"
  # -timeout: one input taking longer is a hang; the outer timeout catches a
  # stuck process (libFuzzer checks max_total_time only between inputs).
  timeout -k 10 $((secs + 60)) "$bin" -max_total_time="$secs" -max_len="$maxlen" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$root/crashes/$name-" "$corpus" "$seeds" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  files=$(find "$corpus" -type f | wc -l)
  if [ "$rc" -eq 0 ]; then
    printf 'ok   fuzz_%-13s %10s execs in %s s (%s/s), corpus %s inputs\n' \
      "$name" "${runs:-?}" "$secs" "${rate:-?}" "$files"
  else
    failed=$((failed + 1))
    repro=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    printf 'FAIL fuzz_%s: exit %s after %s execs; reproducer: %s; log: %s\n' \
      "$name" "$rc" "${runs:-?}" "${repro:-none}" "$log"
    [ -n "$repro" ] && echo "    rerun: $bin $repro"
    grep -E 'ERROR: |runtime error|invariant broken|SUMMARY' "$log" | head -n 5 | sed 's/^/    /'
  fi
done
echo "fuzz: $# targets, $failed failed, $(( $(date +%s) - t0 )) s"
[ "$failed" -eq 0 ]
