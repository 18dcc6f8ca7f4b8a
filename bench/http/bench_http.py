#!/usr/bin/python3
"""The read path under load while working (issue 19): `sfa serve` answers /health, /api/me,
/api/tracks (the first page, 20 of the user's 100 tracks; and all 100 in one page) and a
job's status, each in turn to 64 keep-alive
connections from wrk (Debian's `wrk`), while it separates a 10-minute song (the tiny test
checkpoint stands in for htdemucs unless MODELS_DIR and MODEL name a models folder and a
model in it, e.g. the random full-size mdx_extra bag of bench/make_checkpoint.py --bag,
linked under the official member names, so the separation lasts the whole run).

Prints, per endpoint: requests per second, p50/p99 latency and non-2xx answers (the
target: 0), beside issue 19's goals (/api/me >= 30 k req/s, /api/tracks >= 10 k, job status
>= 20 k, p99 < 20 ms); then whether the separation kept running and the server's peak RSS.

Usage: /usr/bin/python3 bench/http/bench_http.py [SECONDS_PER_ENDPOINT] [MODELS_DIR MODEL]
(run from the repository root after `make build`; SFA_BIN overrides build/sfa; wrk must be
installed: apt-get install wrk).

On PostgreSQL: the server takes SFA_DATABASE_URL from the environment; or, on a private
cluster made for the run, as the -pg e2e suites do:
  SFA_E2E_ON_PG=1 bash tests/with-postgres.sh /usr/bin/python3 bench/http/bench_http.py 10
"""
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from harness import Server, multipart, peak_rss_kb  # noqa: E402

SECONDS = sys.argv[1] if len(sys.argv) > 1 else "15"
MODELS_DIR = sys.argv[2] if len(sys.argv) > 3 else None
MODEL = sys.argv[3] if len(sys.argv) > 3 else "htdemucs"
TINY = os.path.join(ROOT, "tests", "fixtures", "nn", "tiny_htdemucs.th")
N_TRACKS = 100


def flac(seconds, freq=220):
    return subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                           f"sine=frequency={freq}:duration={seconds}:sample_rate=44100",
                           "-ac", "2", "-c:a", "flac", "-f", "flac", "-"],
                          capture_output=True, check=True).stdout


def ms(text):
    """wrk's latency ("812.00us", "1.20ms", "2.01s") in milliseconds."""
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def wrk(port, key, path):
    out = subprocess.run(["wrk", "-t", "2", "-c", "64", "-d", f"{SECONDS}s", "--latency",
                          "-H", f"Authorization: Bearer {key}",
                          f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:.*", out)
    return rps, p50, p99, int(bad.group(1)) if bad else 0, errs.group(0) if errs else ""


def main():
    if not shutil.which("wrk"):
        print("wrk is missing: install Debian's wrk (apt-get install wrk) and run again.")
        return 2
    # Limits no run reaches (the endpoints together pass a million requests a minute).
    env = {"SFA_RATE_API": "1000000000", "SFA_RATE_HEAVY": "100000",
           "SFA_ACCESS_LOG": "errors"}
    if MODELS_DIR:
        env["SFA_MODELS_DIR"] = MODELS_DIR
    srv = Server(env=env).start()
    try:
        if not MODELS_DIR:
            os.makedirs(os.path.join(srv.data_dir, "models"), exist_ok=True)
            shutil.copy(TINY, os.path.join(srv.data_dir, "models", "955717e8.th"))
        srv.cli("user", "create", "--email", "load@example.com", "--password", "load password 1")
        key = srv.cli("token", "create", "--email", "load@example.com").stdout.strip()
        auth = {"Authorization": f"Bearer {key}"}
        small = flac(1)
        for i in range(N_TRACKS):
            body, h = multipart({"title": f"Track {i:03d}"}, {"file": (f"t{i}.flac", small)})
            r = srv.client().request("POST", "/api/tracks", body=body, headers={**auth, **h})
            assert r.status == 201, r.body
        body, h = multipart({"title": "Load"}, {"file": ("load.flac", flac(600))})
        tid = srv.client().request("POST", "/api/tracks", body=body,
                                   headers={**auth, **h}).json()["data"]["id"]
        jid = srv.client().post("/api/processing/separate", headers=auth, json_body={
            "track_id": tid, "model": MODEL}).json()["data"]["job_id"]
        while srv.client().get(f"/api/jobs/{jid}", headers=auth).json()["data"]["status"] != \
                "processing":
            time.sleep(0.05)
        t0 = time.time()
        backend = "PostgreSQL" if srv.env.get("SFA_DATABASE_URL") else "SQLite"
        print(f"wrk, 2 threads, 64 connections, {SECONDS} s per endpoint, while separating "
              f"10 min of audio with {MODEL if MODELS_DIR else 'the tiny test checkpoint'}; "
              f"database: {backend}")
        goals = {"/api/me": 30000, "/api/tracks": 10000, f"/api/jobs/{jid}": 20000}
        for path in ["/health", "/api/me", "/api/tracks", "/api/tracks?page_size=100",
                     f"/api/jobs/{jid}"]:
            rps, p50, p99, bad, errs = wrk(srv.port, key, path)
            goal = goals.get(path)
            verdict = "" if goal is None else (
                f"  goal >= {goal // 1000} k req/s, p99 < 20 ms: "
                f"{'met' if rps >= goal and p99 < 20 and bad == 0 else 'not met'}")
            name = "/api/jobs/:id" if path.startswith("/api/jobs/") else path
            print(f"  {name:28s} {rps:9.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
                  f"non-2xx {bad}{'  ' + errs if errs else ''}{verdict}")
        job = srv.client().get(f"/api/jobs/{jid}", headers=auth).json()["data"]
        print(f"  separation meanwhile: {job['status']}, {job['progress']} % after "
              f"{time.time() - t0:.0f} s; server peak RSS {peak_rss_kb(srv.proc.pid) / 1024:.0f} MB; "
              f"HTTP threads {os.environ.get('SFA_HTTP_THREADS', '8 (default)')}")
        return 0
    finally:
        srv.cleanup()


if __name__ == "__main__":
    sys.exit(main())
