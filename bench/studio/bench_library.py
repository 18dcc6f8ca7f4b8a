#!/usr/bin/python3
"""Library page with a large library: how long until it is usable in Chromium.

Starts `sfa serve` on a temporary data directory, uploads N short tracks through the API
(default 1,000), then opens the studio's library page in Debian's Chromium five times and
reports, per load: time to the first track link being visible (interactive), the server's
time for GET /api/tracks, and the server's peak RSS. The issue's target: interactive within
1 s with 1,000 tracks (paged, 25 a page).

Usage: /usr/bin/python3 bench/studio/bench_library.py [N] (run from the repository root,
after `make build`; SFA_BIN overrides build/sfa).
"""
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from harness import Server, multipart, peak_rss_kb, sine_wav  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
PW = "benchmark password"


def main():
    srv = Server(env={"SFA_RATE_API": "1000000", "SFA_RATE_HEAVY": "1000000",
                      "SFA_RATE_AUTH": "1000000"}).start()
    try:
        email = "bench@example.com"
        srv.cli("user", "create", "--email", email, "--password", PW)
        key = srv.cli("token", "create", "--email", email).stdout.strip()
        auth = {"Authorization": f"Bearer {key}"}
        wav = sine_wav(0.2)
        c = srv.client()
        t0 = time.time()
        for i in range(N):
            body, h = multipart({"title": f"Track {i:04d}", "artist": f"Artist {i % 37}"},
                                {"file": (f"t{i}.wav", wav)})
            r = c.request("POST", "/api/tracks", body=body, headers={**auth, **h})
            if r.status != 201:
                raise SystemExit(f"upload {i} failed: {r.status} {r.text}")
        print(f"uploaded {N} tracks in {time.time() - t0:.1f} s "
              f"({(time.time() - t0) / N * 1000:.1f} ms per upload)")
        out = subprocess.run(["node", os.path.join(ROOT, "bench", "studio", "library_load.mjs"),
                              f"http://127.0.0.1:{srv.port}", email, PW], capture_output=True,
                             text=True, timeout=300, cwd=ROOT)
        if out.returncode:
            raise SystemExit(out.stderr)
        runs = json.loads(out.stdout.strip().splitlines()[-1])
        api_ms = [int(m.group(1)) for line in srv.log
                  for m in [re.search(r"GET /api/tracks\?[^ ]*\bpage=1&[^ ]* 200 \d+ (\d+)ms", line)]
                  if m]
        ms = sorted(runs["interactive_ms"])
        print(f"library page, {N} tracks, 25 a page, {len(ms)} loads: interactive median "
              f"{ms[len(ms) // 2]:.0f} ms (min {ms[0]:.0f}, max {ms[-1]:.0f}); "
              f"GET /api/tracks median {sorted(api_ms)[len(api_ms) // 2] if api_ms else '?'} ms; "
              f"per track shown {ms[len(ms) // 2] / 25:.1f} ms; "
              f"server peak RSS {peak_rss_kb(srv.proc.pid) / 1024:.0f} MB; target < 1000 ms: "
              f"{'met' if ms[len(ms) // 2] < 1000 else 'NOT met'}")
    finally:
        srv.cleanup()


if __name__ == "__main__":
    main()
