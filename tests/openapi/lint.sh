#!/usr/bin/env bash
# Lints docs/openapi.yaml with Redocly CLI, pinned in package.json and
# package-lock.json beside this script (the recommended rules, as
# redocly.yaml says). Installs it with npm ci when node_modules is missing
# or holds another version. Exit status: the lint's (non-zero on any error).
# Run from anywhere; tests/net/test_openapi.c runs it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

for tool in node npm npx; do
  if ! command -v "$tool" >/dev/null; then
    echo "lint.sh: $tool is missing (make deps installs nodejs, which carries npm)" >&2
    exit 2
  fi
done

# One install at a time (two suites may lint at once): lock this script.
exec 9<"$here/lint.sh"
flock 9

want=$(node -p "require('./package.json').devDependencies['@redocly/cli']")
have=$(node -p "try { require('./node_modules/@redocly/cli/package.json').version } catch (e) { '' }")
if [ "$have" != "$want" ]; then
  echo "lint.sh: installing @redocly/cli $want (npm ci)"
  npm ci --no-audit --no-fund
fi

export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
exec npx --no-install redocly lint --config redocly.yaml ../../docs/openapi.yaml
