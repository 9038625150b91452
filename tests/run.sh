#!/usr/bin/env bash
# Runs each test binary given as an argument (cmocka suites), each in its own
# process with a time limit, and prints one total line over all suites:
# "N passed, N failed, N skipped". A suite that crashes or times out counts as
# one more failure. Full output goes to build/test-logs/<suite>.log.
#
# cmocka 1.1's TAP output (CMOCKA_MESSAGE_OUTPUT=TAP), line by line:
#   ok 1 - name                 passed
#   not ok 2 # SKIP name        skip() in the test body: neither passed nor failed
#   not ok 3 - name             failed (also "not ok 0 - group [ FAILED ] GROUP
#                               SETUP", and skip() in a setup, which cmocka
#                               reports as "Could not run test": a failure)
# A skip means something the suite needs was missing (redis-server, say):
# it is shown per suite ("ok   name: N passed, K skipped") and in the total.
# Under CI=true any skip fails the run.
set -u
logdir=build/test-logs
mkdir -p "$logdir"
limit=${TEST_TIMEOUT:-300}
passed=0 failed=0 skipped=0
ci_skips=()
for t in "$@"; do
  name=$(basename "$t")
  log="$logdir/$name.log"
  CMOCKA_MESSAGE_OUTPUT=TAP timeout -k 10 "$limit" "$t" >"$log" 2>&1
  rc=$?
  p=$(grep -cE '^ok [0-9]+' "$log")
  s=$(grep -cE '^not ok [0-9]+ # SKIP' "$log")
  f=$(grep -E '^not ok [0-9]+' "$log" | grep -cvE '^not ok [0-9]+ # SKIP')
  skips=""
  if [ "$s" -gt 0 ]; then
    skips=$(sed -n 's/^not ok [0-9]* # SKIP *//p' "$log" | paste -sd, - | sed 's/,/, /g')
  fi
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    f=1
    echo "FAIL $name: exit $rc (crash, sanitizer report or timeout); see $log"
    tail -n 20 "$log" | sed 's/^/    /'
  elif [ "$f" -gt 0 ]; then
    echo "FAIL $name: $f failed${skips:+, $s skipped}; see $log"
    # cmocka writes a failure's message to stderr (unbuffered), so it can sit
    # far from its "not ok" line: show both.
    grep -E -A3 '^not ok [0-9]+ [^#]|ERROR:' "$log" | head -n 40 | sed 's/^/    /'
  elif [ "$s" -gt 0 ] && [ "${CI:-}" = true ]; then
    echo "FAIL $name: $p passed, $s skipped ($skips; see $log): under CI=true a skip fails the run"
  elif [ "$s" -gt 0 ]; then
    echo "ok   $name: $p passed, $s skipped ($skips; see $log)"
  else
    echo "ok   $name: $p passed"
  fi
  if [ "$s" -gt 0 ] && [ "${CI:-}" = true ]; then
    ci_skips+=("$name: $skips")
  fi
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
done
for c in "${ci_skips[@]}"; do
  echo "FAIL CI=true: skipped tests fail the run: $c"
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "${#ci_skips[@]}" -eq 0 ]
