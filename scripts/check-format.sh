#!/usr/bin/env bash
# Every C file under src/, tests/, fuzz/ and bench/ is as .clang-format lays it out (Debian
# 12's clang-format 14, installed by scripts/deps.sh). Prints the files that differ and how
# to fix them, and fails. Run by `make test` (the "style" suite).
set -uo pipefail
cd "$(dirname "$0")/.."
if ! command -v clang-format >/dev/null; then
  echo "not ok 1 - clang-format is not installed: run scripts/deps.sh (Debian package clang-format)"
  echo "1..1"
  exit 1
fi
bad=$(find src tests fuzz bench \( -name '*.c' -o -name '*.h' -o -name '*.cpp' \) -print0 |
      sort -z | xargs -0 clang-format --dry-run 2>&1 | grep -oE '^[^:]+\.(c|h|cpp):' | sort -u)
if [ -n "$bad" ]; then
  echo "not ok 1 - files not laid out as .clang-format says; run: clang-format -i FILE"
  echo "$bad" | sed 's/:$//; s/^/# /'
  echo "1..1"
  exit 1
fi
echo "ok 1 - every C file is formatted"
echo "1..1"
