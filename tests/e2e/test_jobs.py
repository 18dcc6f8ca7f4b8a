#!/usr/bin/python3
"""End-to-end tests of the durable job system and the jobs/tracks routes.

Jobs of the built-in "probe" type (a diagnostic that reports steps and can be told to
fail or crash) are queued with `sfa job enqueue`, exactly as an operator would, and are
watched through the REST API. Covers progress, retries with backoff, crashes, cancel
(queued and running), ownership, kill -9 of the server and restart, graceful shutdown.
"""
import json
import os
import signal
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from harness import Server, Tap, check, eq, run_suite  # noqa: E402

tap = Tap()
PW = "correct horse battery"
ENV = {"SFA_JOB_RETRY_BASE_S": "0", "SFA_RATE_API": "100000"}


def new_user(srv):
    email = f"jobs-{uuid.uuid4().hex[:10]}@example.com"
    r = srv.cli("user", "create", "--email", email, "--password", PW)
    eq(r.returncode, 0, r.stderr)
    key = srv.cli("token", "create", "--email", email).stdout.strip()
    return email, {"Authorization": f"Bearer {key}"}


def enqueue(srv, email, payload, type_="probe"):
    r = srv.cli("job", "enqueue", "--email", email, "--type", type_, "--payload",
                json.dumps(payload))
    eq(r.returncode, 0, r.stderr)
    return r.stdout.strip()


def job(srv, auth, jid):
    r = srv.client().get(f"/api/jobs/{jid}", headers=auth)
    eq(r.status, 200, f"GET job {jid}")
    return r.json()["data"]


def wait_job(srv, auth, jid, want=("completed", "failed"), timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        j = job(srv, auth, jid)
        if j["status"] in want:
            return j
        time.sleep(0.1)
    raise AssertionError(f"job {jid} still {j['status']} after {timeout}s")


def workers_of(job_ids):
    """PIDs of live `sfa job-exec <id>` processes for the given jobs."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if len(argv) > 2 and argv[1] == b"job-exec" and argv[2].decode() in job_ids \
                and state != "Z":
            pids.append(int(pid))
    return pids


@tap.case
def probe_completes_with_progress(srv):
    email, auth = new_user(srv)
    jid = enqueue(srv, email, {"steps": 5, "step_ms": 150})
    seen = set()
    deadline = time.time() + 20
    while time.time() < deadline:
        j = job(srv, auth, jid)
        seen.add(j["progress"])
        if j["status"] == "completed":
            break
        time.sleep(0.05)
    eq(j["status"], "completed", "status")
    eq(j["progress"], 100, "progress")
    eq(j["result"], {"steps": 5, "attempt": 1}, "result")
    check(any(0 < p < 100 for p in seen), f"no intermediate progress was seen: {sorted(seen)}")
    check(j["started_at"] and j["finished_at"], "timestamps")
    eq(j["error"], None, "error")


@tap.case
def failed_attempt_is_retried(srv):
    email, auth = new_user(srv)
    jid = enqueue(srv, email, {"fail_attempts": 1})
    j = wait_job(srv, auth, jid)
    eq(j["status"], "completed", "status after the retry")
    eq(j["attempts"], 2, "attempts")
    eq(j["result"]["attempt"], 2, "the second attempt produced the result")


@tap.case
def crash_fails_only_that_job_with_a_sentence(srv):
    email, auth = new_user(srv)
    jid = enqueue(srv, email, {"crash": True})
    ok = enqueue(srv, email, {"steps": 1})
    j = wait_job(srv, auth, jid)
    eq(j["status"], "failed", "status")
    eq(j["attempts"], j["max_attempts"], "every attempt was used")
    check("crashed" in j["error"] and "signal 6" in j["error"], j["error"])
    eq(wait_job(srv, auth, ok)["status"], "completed", "the other job")
    eq(srv.client().get("/health").status, 200, "the server lives on")


@tap.case
def cancel_queued_and_running(srv):
    email, auth = new_user(srv)
    # probe runs 2 at a time: two long jobs occupy the slots, the third waits.
    long1 = enqueue(srv, email, {"steps": 100, "step_ms": 100})
    long2 = enqueue(srv, email, {"steps": 100, "step_ms": 100})
    wait_job(srv, auth, long1, want=("running",))
    wait_job(srv, auth, long2, want=("running",))
    queued = enqueue(srv, email, {"steps": 1})
    c = srv.client()
    r = c.request("DELETE", f"/api/jobs/{queued}", headers=auth)
    eq(r.status, 200, "cancel queued")
    eq(r.json()["data"]["status"], "failed", "queued job fails at once")
    eq(r.json()["data"]["error"], "cancelled", "error")
    r = c.request("DELETE", f"/api/jobs/{long1}", headers=auth)
    eq(r.status, 202, "cancel running")
    t0 = time.time()
    j = wait_job(srv, auth, long1, timeout=10)
    eq((j["status"], j["error"]), ("failed", "cancelled"), "running job cancelled")
    check(time.time() - t0 < 5, "the worker did not stop within a few seconds")
    check(not os.path.exists(os.path.join(srv.data_dir, "tmp", "jobs", long1)),
          "the job's scratch directory was left behind")
    r = c.request("DELETE", f"/api/jobs/{long1}", headers=auth)
    eq(r.status, 409, "cancel a finished job")
    c.request("DELETE", f"/api/jobs/{long2}", headers=auth)
    wait_job(srv, auth, long2, timeout=10)


@tap.case
def jobs_are_private_and_listed(srv):
    email, auth = new_user(srv)
    _, other = new_user(srv)
    ids = [enqueue(srv, email, {"steps": 1}) for _ in range(3)]
    for jid in ids:
        wait_job(srv, auth, jid)
    c = srv.client()
    eq(c.get(f"/api/jobs/{ids[0]}", headers=other).status, 404, "another user's job")
    eq(c.request("DELETE", f"/api/jobs/{ids[0]}", headers=other).status, 404, "cancel another's")
    eq(c.get("/api/jobs/not-a-uuid", headers=auth).status, 404, "malformed id")
    r = c.get("/api/jobs?page_size=2&type=probe&status=completed", headers=auth)
    eq(r.status, 200, "list")
    body = r.json()
    eq(len(body["data"]), 2, "page size")
    eq(body["meta"], {"page": 1, "page_size": 2, "total_count": 3, "total_pages": 2}, "meta")
    eq(c.get("/api/jobs", headers=other).json()["meta"]["total_count"], 0, "other sees none")
    r = c.get("/api/jobs?page=0", headers=auth)
    eq(r.status, 422, "bad page")
    check("page" in r.json()["details"], "details name the field")


@tap.case
def tracks_routes_basics(srv):
    email, auth = new_user(srv)
    c = srv.client()
    r = c.get("/api/tracks", headers=auth)
    eq(r.status, 200, "list")
    eq(r.json(), {"data": [], "meta": {"page": 1, "page_size": 20, "total_count": 0,
                                      "total_pages": 0}}, "empty library")
    missing = str(uuid.uuid4())
    eq(c.get(f"/api/tracks/{missing}", headers=auth).status, 404, "get missing")
    eq(c.request("DELETE", f"/api/tracks/{missing}", headers=auth).status, 404, "delete missing")
    r = c.request("PATCH", f"/api/tracks/{missing}", headers=auth, json_body={"title": 5})
    eq(r.status, 422, "wrong type")
    eq(r.json()["details"], {"title": ["must be a string"]}, "details")
    r = c.request("PATCH", f"/api/tracks/{missing}", headers=auth, body=b"{",
                  )
    eq(r.status, 400, "not JSON")


@tap.case
def kill_9_then_restart_finishes_every_job(_srv):
    s = Server(env=ENV).start()
    data_dir = s.data_dir
    try:
        email, auth = new_user(s)
        running = [enqueue(s, email, {"steps": 50, "step_ms": 100}) for _ in range(2)]
        for jid in running:
            wait_job(s, auth, jid, want=("running",))
        queued = [enqueue(s, email, {"steps": 2}) for _ in range(3)]
        s.stop(signal.SIGKILL)
        time.sleep(0.3)
        # The workers die with the server (PR_SET_PDEATHSIG): none is left running.
        eq(workers_of(running), [], "orphaned workers")
        s2 = Server(data_dir=data_dir, env=ENV).start()
        try:
            check(any("recovered 2 job(s)" in l for l in s2.log), "\n".join(s2.log[-5:]))
            for jid in running + queued:
                j = wait_job(s2, auth, jid, timeout=40)
                eq(j["status"], "completed", f"job {jid}")
            eq(job(s2, auth, running[0])["attempts"], 2, "the interrupted attempt counted")
        finally:
            s2.stop()
    finally:
        s.cleanup()


@tap.case
def graceful_stop_requeues_running_jobs(_srv):
    s = Server(env=ENV).start()
    data_dir = s.data_dir
    try:
        email, auth = new_user(s)
        jid = enqueue(s, email, {"steps": 50, "step_ms": 100})
        wait_job(s, auth, jid, want=("running",))
        eq(s.stop(signal.SIGTERM), 0, "exit status")
        s2 = Server(data_dir=data_dir, env=ENV).start()
        try:
            j = wait_job(s2, auth, jid, timeout=30)
            eq(j["status"], "completed", "completed after the restart")
            eq(j["attempts"], 1, "a graceful stop does not use up an attempt")
        finally:
            s2.stop()
    finally:
        s.cleanup()


if __name__ == "__main__":
    sys.exit(run_suite(tap, ENV))
