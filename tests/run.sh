#!/usr/bin/env bash
# Runs each test binary given as an argument (cmocka suites), each in its own
# process with a time limit, and prints one total line over all suites:
# "N passed, N failed". A suite that crashes or times out counts as one more
# failure. Full output goes to build/test-logs/<suite>.log.
set -u
logdir=build/test-logs
mkdir -p "$logdir"
limit=${TEST_TIMEOUT:-300}
passed=0 failed=0
for t in "$@"; do
  name=$(basename "$t")
  log="$logdir/$name.log"
  CMOCKA_MESSAGE_OUTPUT=TAP timeout -k 10 "$limit" "$t" >"$log" 2>&1
  rc=$?
  p=$(grep -cE '^ok [0-9]+' "$log")
  f=$(grep -cE '^not ok [0-9]+' "$log")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    f=1
    echo "FAIL $name: exit $rc (crash, sanitizer report or timeout); see $log"
    tail -n 20 "$log" | sed 's/^/    /'
  elif [ "$f" -gt 0 ]; then
    echo "FAIL $name: $f failed; see $log"
    # cmocka writes a failure's message to stderr (unbuffered), so it can sit
    # far from its "not ok" line: show both.
    grep -E -A3 '^not ok|ERROR:' "$log" | head -n 40 | sed 's/^/    /'
  else
    echo "ok   $name: $p passed"
  fi
  passed=$((passed + p)); failed=$((failed + f))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
