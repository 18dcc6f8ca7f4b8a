#!/usr/bin/python3
"""Load while working: `sfa serve` answers /health, /api/tracks and a job's status to 64
keep-alive connections for 60 s while it separates a 10-minute song (the tiny test
checkpoint stands in for htdemucs unless MODELS_DIR and MODEL name a models folder and a
model in it, e.g. the random full-size mdx_extra bag of bench/make_checkpoint.py --bag,
linked under the official member names, so the separation lasts the whole run). Prints
the load generator's req/s, p50/p99 and errors (the target: 0 errors), whether the
separation kept running, and the server's peak RSS.

Usage: /usr/bin/python3 bench/http/bench_http.py [SECONDS] [MODELS_DIR MODEL]
(run from the repository root after `make build`; SFA_BIN overrides build/sfa).
"""
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from harness import Server, multipart, peak_rss_kb  # noqa: E402

SECONDS = sys.argv[1] if len(sys.argv) > 1 else "60"
MODELS_DIR = sys.argv[2] if len(sys.argv) > 3 else None
MODEL = sys.argv[3] if len(sys.argv) > 3 else "htdemucs"
TINY = os.path.join(ROOT, "tests", "fixtures", "nn", "tiny_htdemucs.th")
GEN = os.environ.get("BENCH_HTTP", os.path.join(ROOT, "build", "bench", "http", "bench_http"))


def main():
    env = {"SFA_RATE_API": "1000000", "SFA_RATE_HEAVY": "100000"}
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
        song = subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                               "sine=frequency=220:duration=600:sample_rate=44100", "-ac", "2",
                               "-c:a", "flac", "-f", "flac", "-"], capture_output=True,
                              check=True).stdout
        body, h = multipart({"title": "Load"}, {"file": ("load.flac", song)})
        tid = srv.client().request("POST", "/api/tracks", body=body,
                                   headers={**auth, **h}).json()["data"]["id"]
        jid = srv.client().post("/api/processing/separate", headers=auth, json_body={
            "track_id": tid, "model": MODEL}).json()["data"]["job_id"]
        while srv.client().get(f"/api/jobs/{jid}", headers=auth).json()["data"]["status"] != \
                "processing":
            time.sleep(0.05)
        t0 = time.time()
        r = subprocess.run([GEN, "--port", str(srv.port), "--connections", "64", "--seconds",
                            SECONDS, "--header", f"Authorization: Bearer {key}", "/health",
                            "/api/tracks", f"/api/jobs/{jid}"], capture_output=True, text=True)
        print(r.stdout.strip() or r.stderr.strip())
        job = srv.client().get(f"/api/jobs/{jid}", headers=auth).json()["data"]
        print(f"  separation meanwhile: {job['status']}, {job['progress']} % after "
              f"{time.time() - t0:.0f} s; server peak RSS {peak_rss_kb(srv.proc.pid) / 1024:.0f} MB; "
              f"HTTP threads {os.environ.get('SFA_HTTP_THREADS', '8 (default)')}")
        return r.returncode
    finally:
        srv.cleanup()


if __name__ == "__main__":
    sys.exit(main())
