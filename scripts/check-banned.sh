#!/usr/bin/env bash
# The functions STYLE.md bans in src/ (unbounded copies, locale/overflow-prone parsing,
# hidden shells, weak randomness). Prints every use with its line and fails; a comment
# or string that merely names one is not a use. Run by `make test` (the "style" suite).
set -uo pipefail
cd "$(dirname "$0")/.."
banned='strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|strtok|rand|system|popen'
hits=$(grep -rnE "(^|[^A-Za-z0-9_.>])(${banned})[[:space:]]*\(" src --include='*.c' --include='*.h' |
       grep -vE ':[0-9]+:[[:space:]]*(/?\*|//)' |
       grep -vE '"[^"]*('"${banned}"')[[:space:]]*\([^"]*"' || true)
if [ -n "$hits" ]; then
  echo "not ok 1 - banned functions in src/ (STYLE.md: use the bounded ones):"
  echo "$hits" | sed 's/^/# /'
  echo "1..1"
  exit 1
fi
echo "ok 1 - no banned function in src/"
echo "1..1"
