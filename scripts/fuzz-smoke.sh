#!/usr/bin/env bash
# Runs every libFuzzer harness in BUILD_DIR for SECONDS each on a scratch copy of its seed
# corpus (fuzz/seeds/<name without fuzz_>). Fails on the first crash, leak or timeout.
set -euo pipefail
build=${1:-build-fuzz}
secs=${2:-30}
status=0
for exe in "$build"/fuzz/fuzz_*; do
  [ -f "$exe" ] && [ -x "$exe" ] || continue
  name=$(basename "$exe")
  seeds="fuzz/seeds/${name#fuzz_}"
  corpus=$(mktemp -d)
  [ -d "$seeds" ] && cp -r "$seeds"/. "$corpus"/
  echo "== $name (${secs}s)"
  if ! "$exe" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix=fuzz/ "$corpus" 2>&1 | tail -n 3; then
    echo "FAIL: $name found a problem (see fuzz/crash-* etc.)"
    status=1
  fi
  rm -rf "$corpus"
done
exit $status
