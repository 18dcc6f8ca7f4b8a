#!/usr/bin/env bash
# Runs every libFuzzer harness in BUILD_DIR until RUNS executions or SECONDS, whichever
# comes first, JOBS harnesses at a time, each on a scratch copy of its seeds; prints one
# Markdown row per harness: executions, seconds, exec/s, coverage (cov/ft), corpus size,
# and the findings (crash/leak/timeout files are kept in fuzz/ as artifacts).
#   scripts/fuzz-counts.sh [BUILD_DIR] [RUNS] [SECONDS] [JOBS]
set -uo pipefail
build=${1:-build-fuzz}
runs=${2:-5000000}
secs=${3:-1800}
jobs=${4:-2}
out=$(mktemp -d)
run_one() {
  exe=$1; name=$(basename "$exe"); seeds="fuzz/seeds/${name#fuzz_}"
  corpus=$(mktemp -d)
  [ -d "$seeds" ] && cp -r "$seeds"/. "$corpus"/
  start=$(date +%s)
  "$exe" -runs="$runs" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="fuzz/$name-" "$corpus" > "$out/$name.log" 2>&1
  rc=$?
  took=$(( $(date +%s) - start ))
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$out/$name.log" | awk '{print $2}')
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$out/$name.log" | tail -n 1)
  files=$(ls "$corpus" | wc -l)
  finding=$([ $rc -eq 0 ] && echo "none" || grep -m1 -oE 'ERROR: [A-Za-z]+: [^ ]+|deadly signal|timeout|leak' "$out/$name.log" || echo "exit $rc")
  rate=$([ "${took:-0}" -gt 0 ] && echo $(( ${execs:-0} / took )) || echo "-")
  echo "| $name | ${execs:-?} | $took | $rate | ${cov:-?} | $files | $finding |" > "$out/$name.row"
  rm -rf "$corpus"
}
export -f run_one
export out runs secs
find "$build"/fuzz -maxdepth 1 -type f -executable -name 'fuzz_*' | sort | xargs -P "$jobs" -I{} bash -c 'run_one {}'
echo "| harness | executions | seconds | exec/s | coverage | corpus files | findings |"
echo "|---|---|---|---|---|---|---|"
sort "$out"/*.row
rm -rf "$out"
