#!/usr/bin/env bash
# pyflakes over every Python file in git (the e2e suites, fakes, bench and build scripts):
# an unused import or an undefined name is reported with its line and fails the run.
# Run by `make test` (the "style" suite).
set -uo pipefail
cd "$(dirname "$0")/.."
if ! command -v pyflakes3 >/dev/null; then
  echo "not ok 1 - pyflakes3 is not installed (scripts/deps.sh installs it)"
  echo "1..1"
  exit 1
fi
out=$(git ls-files -z '*.py' | xargs -0 pyflakes3 2>&1)
if [ -n "$out" ]; then
  echo "not ok 1 - pyflakes findings in the Python files:"
  echo "$out" | sed 's/^/# /'
  echo "1..1"
  exit 1
fi
echo "ok 1 - pyflakes finds nothing in the Python files"
echo "1..1"
