#!/usr/bin/python3
"""End-to-end tests of where jobs run: `sfa serve --no-jobs` (or SFA_RUN_JOBS=0) serves HTTP
and runs no job, `sfa worker [--types ...] [--concurrency N]` runs jobs and no HTTP, and a
plain `sfa serve` does both (the other suites). Here on SQLite, one machine: an HTTP node and
workers sharing one data directory; tests/e2e/test_multinode.py does it on PostgreSQL.

Waits are for log lines and job states, never fixed sleeps.
"""
import json
import os
import signal
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import SFA, Tap, check, eq  # noqa: E402

tap = Tap()
STARTED = []  # every process started, for the sanitizer check at the end
PW = "correct horse battery"
ENV = {"SFA_JOB_RETRY_BASE_S": "0", "SFA_RATE_API": "100000"}


class Server(harness.Server):
    def start(self, timeout=15):
        STARTED.append(self)
        return super().start(timeout)


class Worker(harness.Worker):
    def start(self, timeout=15):
        STARTED.append(self)
        return super().start(timeout)


def new_user(srv):
    email = f"modes-{uuid.uuid4().hex[:10]}@example.com"
    r = srv.cli("user", "create", "--email", email, "--password", PW)
    eq(r.returncode, 0, r.stderr)
    key = srv.cli("token", "create", "--email", email).stdout.strip()
    return email, {"Authorization": f"Bearer {key}"}


def enqueue(srv, email, payload):
    r = srv.cli("job", "enqueue", "--email", email, "--type", "probe", "--payload",
                json.dumps(payload))
    eq(r.returncode, 0, r.stderr)
    return r.stdout.strip()


def wait_job(srv, auth, jid, want=("completed", "failed"), timeout=30):
    deadline = time.time() + timeout
    while True:
        j = srv.client().get(f"/api/jobs/{jid}", headers=auth).json()["data"]
        if j["status"] in want:
            return j
        check(time.time() < deadline, f"job {jid} still {j['status']} after {timeout}s")
        time.sleep(0.05)


def line_index(proc, text):
    return next(i for i, line in enumerate(proc.log) if text in line)


@tap.case
def help_names_the_modes(_):
    r = subprocess.run([SFA, "--help"], capture_output=True, text=True)
    eq(r.returncode, 0, "exit status")
    for word in ("worker [--types", "--concurrency N", "--no-jobs", "SFA_RUN_JOBS",
                 "SFA_JOB_LEASE_S"):
        check(word in r.stdout, f"--help does not mention {word}")
    r = subprocess.run([SFA, "serve", "--bogus"], capture_output=True, text=True)
    eq(r.returncode, 2, "exit status of an unknown serve flag")
    check("--no-jobs" in r.stderr, r.stderr)


@tap.case
def worker_refuses_bad_flags(_):
    data = Server().data_dir
    r = subprocess.run([SFA, "worker", "--data", data, "--types", "probe,nonesuch"],
                       capture_output=True, text=True, timeout=30)
    eq(r.returncode, 2, "exit status of an unknown type")
    check('no job type "nonesuch"' in r.stderr, r.stderr)
    r = subprocess.run([SFA, "worker", "--data", data, "--concurrency", "0"],
                       capture_output=True, text=True, timeout=30)
    eq(r.returncode, 2, "exit status of a bad concurrency")
    check("--concurrency" in r.stderr, r.stderr)
    r = subprocess.run([SFA, "worker", "--data", data, "--port", "1"],
                       capture_output=True, text=True, timeout=30)
    eq(r.returncode, 2, "a worker has no port")
    subprocess.run(["rm", "-rf", data])


@tap.case
def jobs_run_only_on_workers_of_their_type(_):
    api = Server(env=ENV, args=["--no-jobs"]).start()
    workers = []
    try:
        check(api.wait_log("runs no jobs"), "the --no-jobs server's scheduler runs jobs")
        email, auth = new_user(api)
        other = Worker(data_dir=api.data_dir, env=ENV, args=["--types", "analysis"]).start()
        workers.append(other)
        check(other.wait_log("runs analysis"), "\n".join(other.log))
        # The HTTP API works without a scheduler running jobs: this one is queued.
        jid = enqueue(api, email, {"steps": 2})
        eq(api.client().get(f"/api/jobs/{jid}", headers=auth).json()["data"]["status"],
           "queued", "status before a probe worker exists")
        probe = Worker(data_dir=api.data_dir, env=ENV, args=["--types", "probe"]).start()
        workers.append(probe)
        j = wait_job(api, auth, jid)
        eq(j["status"], "completed", "completed by the probe worker")
        check(probe.wait_log(f"job {jid} (probe) completed"), "\n".join(probe.log[-10:]))
        for p in (api, other):
            check(not any(f"job {jid} (probe) started" in line for line in p.log),
                  f"another process ran {jid}")
        # Socket events of a job run by a worker process reach this node's sockets through
        # the database on PostgreSQL only (test_multinode); the row is what the API shows.
    finally:
        for w in workers:
            w.stop()
        api.cleanup()


@tap.case
def sfa_run_jobs_0_is_no_jobs(_):
    api = Server(env={**ENV, "SFA_RUN_JOBS": "0"}).start()
    try:
        check(api.wait_log("runs no jobs"), "\n".join(api.log))
    finally:
        api.cleanup()
    r = subprocess.run([SFA, "serve", "--port", "0"], env={**os.environ, "SFA_RUN_JOBS": "2"},
                       capture_output=True, text=True, timeout=30)
    eq(r.returncode, 1, "exit status of a bad SFA_RUN_JOBS")
    check("SFA_RUN_JOBS" in r.stderr, r.stderr)


@tap.case
def concurrency_limits_a_worker(_):
    api = Server(env=ENV, args=["--no-jobs"]).start()
    w = None
    try:
        email, auth = new_user(api)
        ids = [enqueue(api, email, {"steps": 3, "step_ms": 100}) for _ in range(3)]
        w = Worker(data_dir=api.data_dir, env=ENV,
                   args=["--types", "probe", "--concurrency", "1"]).start()
        for jid in ids:
            eq(wait_job(api, auth, jid)["status"], "completed", f"job {jid}")
        # One at a time: each job starts only after the one before completed.
        for a, b in zip(ids, ids[1:]):
            check(line_index(w, f"job {a} (probe) completed") <
                  line_index(w, f"job {b} (probe) started"), "\n".join(w.log))
    finally:
        if w:
            w.stop()
        api.cleanup()


@tap.case
def a_stopped_worker_gives_its_jobs_back(_):
    api = Server(env=ENV, args=["--no-jobs"]).start()
    try:
        email, auth = new_user(api)
        jid = enqueue(api, email, {"steps": 100, "step_ms": 100})
        w = Worker(data_dir=api.data_dir, env=ENV, args=["--types", "probe"]).start()
        wait_job(api, auth, jid, want=("running",))
        eq(w.stop(signal.SIGTERM), 0, "exit status of a stopped worker")
        check(w.wait_log(f"job {jid} (probe) stopped with the server; queued again"),
              "\n".join(w.log[-10:]))
        j = api.client().get(f"/api/jobs/{jid}", headers=auth).json()["data"]
        eq((j["status"], j["attempts"]), ("queued", 0), "queued again, attempt refunded")
        w2 = Worker(data_dir=api.data_dir, env=ENV, args=["--types", "probe"]).start()
        try:
            eq(wait_job(api, auth, jid, timeout=40)["status"], "completed", "finished by another")
        finally:
            w2.stop()
    finally:
        api.cleanup()


@tap.case
def no_sanitizer_reports(_):
    bad = [line for p in STARTED for line in p.log
           if "AddressSanitizer" in line or "LeakSanitizer" in line or "runtime error:" in line]
    check(not bad, "sanitizer reports:\n" + "\n".join(bad[:20]))


if __name__ == "__main__":
    sys.exit(tap.run(None))
