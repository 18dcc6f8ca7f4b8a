#!/usr/bin/python3
"""Counts the individual test cases of a `meson test` run and prints `N passed, N failed`.

Every suite speaks TAP, so each `ok` / `not ok` line in a test's output is one case. A
test program that failed without reporting any failing case (a crash, a timeout, a
missing tool) counts as one failed case, so nothing that broke can be read as green.
"""
import json
import re
import sys

log = sys.argv[1] if len(sys.argv) > 1 else "build/meson-logs/testlog.json"
passed = failed = skipped = 0
broken = []
with open(log, encoding="utf-8") as f:
    for line in f:
        t = json.loads(line)
        out = t.get("stdout") or ""
        ok = len(re.findall(r"^ok\b(?!.*# SKIP)", out, re.M))
        skip = len(re.findall(r"^ok\b.*# SKIP", out, re.M))
        bad = len(re.findall(r"^not ok\b", out, re.M))
        passed += ok
        skipped += skip
        failed += bad
        if t.get("result") not in ("OK", "EXPECTEDFAIL", "SKIP") and bad == 0:
            failed += 1
            broken.append(f'{t["name"]} ({t.get("result")})')
        if ok + bad + skip == 0 and t.get("result") == "OK":
            passed += 1  # a plain exit-code test
for b in broken:
    print(f"test program failed without a failing case: {b}")
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed else 0)
