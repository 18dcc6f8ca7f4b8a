#!/usr/bin/python3
"""Several nodes on one PostgreSQL database (issue 15): two API nodes (`sfa serve --no-jobs`)
and two `sfa worker`s on loopback, sharing one data directory and secret, with a private
PostgreSQL cluster (tests/with-postgres.sh; run alone, this file starts one itself).

- Tracks uploaded on node A, 8 analyses and 2 separations (the tiny test checkpoint stands
  in for htdemucs) queued on node B: a Phoenix socket on node A sees every job's progress
  and completion, though workers ran them (LISTEN/NOTIFY).
- `kill -9` of the worker running a separation: the other takes the job back once its
  lease (SFA_JOB_LEASE_S=3 here) has passed, and completes it.
- A cancel on node B stops a job running on a worker within seconds.
- Rate limits hold across nodes: log-in attempts from one address, alternating between
  nodes A and B, meet the limit after SFA_RATE_AUTH attempts in all, not per node.
- lal.ai's check budget is one per license key whichever node checks: three lal.ai
  separations at once on the two workers (against tests/fakes/fake_lalalai.py) make their
  check calls one interval apart in all, not one interval apart per job.

Waits are for log lines, events and job states, never fixed sleeps.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import Tap, check, eq, groove_wav, multipart, phx_until, sine_wav  # noqa: E402
from test_lalalai import FakeLalalai  # noqa: E402

FIXTURES = os.environ.get("SFA_FIXTURES", os.path.join(harness.ROOT, "tests", "fixtures"))
TINY = os.path.join(FIXTURES, "nn", "tiny_htdemucs.th")
HTDEMUCS_SIG = "955717e8"  # the single member of the official htdemucs bag

if not os.environ.get("SFA_TEST_PG_HOST"):
    # Run alone: start the private cluster around this very script.
    os.execvp("bash", ["bash", os.path.join(harness.ROOT, "tests", "with-postgres.sh"),
                       sys.executable, os.path.abspath(__file__)])

tap = Tap()
STARTED = []
PW = "correct horse battery"
DATA = tempfile.mkdtemp(prefix="sfa-multinode-")
ENV = {
    "SFA_DATABASE_URL": f"postgresql://sfa@/postgres?host={os.environ['SFA_TEST_PG_HOST']}",
    "SFA_SECRET_KEY_BASE": "multinode-" + "0123456789abcdef" * 3,
    "SFA_JOB_LEASE_S": "3",
    "SFA_JOB_RETRY_BASE_S": "0",
    "SFA_RATE_API": "100000",
    "SFA_RATE_HEAVY": "100000",
    "SFA_RATE_AUTH": "6",
    "SFA_LALALAI_LICENSE_KEY": "key-multinode-shared",
    "SFA_LALALAI_CHECK_INTERVAL_MS": "300",
    "SFA_JOBS_LALALAI": "2",
}
CHECK_INTERVAL_S = 0.3
FAKE_LAL = None


class Cluster:
    def __init__(self):
        self.api_a = self.api_b = None
        self.workers = []

    def start_worker(self, name):
        w = harness.Worker(data_dir=DATA, env={**ENV, "SFA_NODE_ID": name},
                           args=["--types", "analysis,probe,lalalai,processing"])
        STARTED.append(w)
        w.name = name
        self.workers.append(w.start())
        return w

    def start(self):
        os.makedirs(os.path.join(DATA, "models"), exist_ok=True)
        shutil.copy(TINY, os.path.join(DATA, "models", HTDEMUCS_SIG + ".th"))
        for attr, name in (("api_a", "api-a"), ("api_b", "api-b")):
            s = harness.Server(data_dir=DATA, env={**ENV, "SFA_NODE_ID": name},
                               args=["--no-jobs"])
            STARTED.append(s)
            setattr(self, attr, s.start())
        self.start_worker("worker-1")
        self.start_worker("worker-2")
        return self

    def runner_of(self, jid):
        """The live worker whose log says it started jid, if any."""
        for w in self.workers:
            if w.proc.poll() is None and any(f"job {jid} (" in l and ") started" in l
                                             for l in w.log):
                return w
        return None

    def stop(self):
        for p in self.workers + [self.api_a, self.api_b]:
            if p:
                p.stop()


def new_user(srv):
    email = f"multi-{uuid.uuid4().hex[:10]}@example.com"
    uid = srv.cli("user", "create", "--email", email, "--password", PW).stdout.strip()
    key = srv.cli("token", "create", "--email", email).stdout.strip()
    check(uid and key.startswith("sfa_"), "user and key creation failed")
    return email, uid, key, {"Authorization": f"Bearer {key}"}


def job(srv, auth, jid):
    r = srv.client().get(f"/api/jobs/{jid}", headers=auth)
    eq(r.status, 200, r.text)
    return r.json()["data"]


def wait_job(srv, auth, jid, want=("completed", "failed"), timeout=60):
    deadline = time.time() + timeout
    while True:
        j = job(srv, auth, jid)
        if j["status"] in want:
            return j
        check(time.time() < deadline, f"job {jid} still {j['status']} after {timeout}s")
        time.sleep(0.05)


def enqueue_probe(srv, email, payload):
    r = srv.cli("job", "enqueue", "--email", email, "--type", "probe", "--payload",
                json.dumps(payload))
    eq(r.returncode, 0, r.stderr)
    return r.stdout.strip()


def wait_until(fn, what, timeout=30):
    deadline = time.time() + timeout
    while not (v := fn()):
        check(time.time() < deadline, what)
        time.sleep(0.02)
    return v


C = Cluster()


def upload(srv, auth, i, seconds):
    body, h = multipart({"title": f"Groove {i}", "artist": "Lab"},
                        {"file": (f"g{i}.wav", groove_wav(seconds, bpm=100 + 5 * i))})
    r = srv.client().request("POST", "/api/tracks", body=body, headers={**auth, **h})
    eq(r.status, 201, r.text)
    return r.json()["data"]["id"]


def library(srv, auth):
    r = srv.client().get("/api/tracks?page_size=100", headers=auth)
    eq(r.status, 200, r.text)
    return {t["id"]: t for t in r.json()["data"]}


def separation(srv, auth, jid):
    r = srv.client().get(f"/api/processing/job/{jid}", headers=auth)
    eq(r.status, 200, r.text)
    return r.json()["data"]


def separate(srv, auth, tid):
    r = srv.client().request("POST", "/api/processing/separate", headers=auth,
                             json_body={"track_id": tid, "model": "htdemucs"})
    eq(r.status, 201, r.text)
    return r.json()["data"]["job_id"]


@tap.case
def socket_on_a_sees_jobs_that_workers_run(_):
    _, uid, key, auth = new_user(C.api_a)
    tracks = [upload(C.api_a, auth, i, 1.0) for i in range(8)]
    # Node A's library list before the jobs, twice (the second from its rendered-list cache).
    for _ in range(2):
        rows = library(C.api_a, auth)
        eq([(rows[tid]["analysis"], rows[tid]["stem_count"]) for tid in tracks],
           [(None, 0)] * 8, "node A's library list before any job")
    t, seen = phx_until(C.api_a, key, f"user:{uid}", "job:completed", count=10,
                        timeout_ms=180000)
    analyses, separations = [], []
    for tid in tracks:
        r = C.api_b.client().request("POST", "/api/analysis/analyze", headers=auth,
                                     json_body={"track_id": tid, "features": ["tempo", "key"]})
        eq(r.status, 201, r.text)
        analyses.append(r.json()["data"]["job_id"])
    separations = [separate(C.api_b, auth, tid) for tid in tracks[:2]]
    t.join(200)
    eq(seen.get("rc"), 0, f"phoenix client: {seen.get('stderr', '')[-400:]}")
    events = seen["seen"]["events"]
    check(not seen["seen"].get("timedOut"), f"the socket timed out: {events}")
    for jid in analyses + separations:
        mine = [e for e in events if e["payload"].get("job_id") == jid]
        kinds = [e["event"] for e in mine]
        check("job:progress" in kinds, f"no progress of {jid} on node A's socket: {kinds}")
        eq(kinds.count("job:completed"), 1, f"completions of {jid} on node A's socket")
        eq(job(C.api_a, auth, jid)["status"], "completed", f"job {jid}")
        done = next(e for e in mine if e["event"] == "job:completed")
        if jid in analyses:
            check("tempo" in json.dumps(done["payload"]["result"]), done["payload"])
    for jid, tid in zip(separations, tracks):
        stems = separation(C.api_a, auth, jid)["stems"]
        eq(len(stems), 4, f"the stems of {jid}")
        # Written by a worker into the shared folder, read by either API node.
        for s in stems:
            r = C.api_b.client().get(s["file_path"], headers=auth)
            eq((r.status, r.body[:4]), (200, b"RIFF"), f"{s['stem_type']} of {jid} from node B")
        r = C.api_a.client().get(f"/export/stems/{tid}", headers=auth)
        eq((r.status, r.body[:2]), (200, b"PK"), f"the stems of {jid} as a ZIP from node A")
    # What the workers wrote, and a rename on node B, show in node A's list at once.
    # (One second of audio is too short for a tempo: the analyses leave the rows' summary
    # empty, the separations' stems show.)
    rows = library(C.api_a, auth)
    eq([rows[tid]["stem_count"] for tid in tracks], [4, 4] + [0] * 6,
       "stem counts in node A's library list")
    r = C.api_b.client().request("PATCH", f"/api/tracks/{tracks[0]}", headers=auth,
                                 json_body={"title": "Renamed on B"})
    eq(r.status, 200, r.text)
    eq(library(C.api_a, auth)[tracks[0]]["title"], "Renamed on B",
       "node A's library list after a rename on node B")
    # Workers ran them; the API nodes ran none.
    ran = {w.name: sum(f"job {jid} (" in l and ") completed" in l for l in w.log
                       for jid in analyses + separations) for w in C.workers}
    eq(sum(ran.values()), len(analyses) + len(separations), f"jobs completed by the workers: {ran}")
    for api in (C.api_a, C.api_b):
        check(not any(") started" in l for l in api.log), "an API node ran a job")
    print(f"# jobs per worker {ran}", flush=True)


@tap.case
def kill_9_a_worker_and_the_other_finishes_its_separation(_):
    email, uid, key, auth = new_user(C.api_a)
    # Long enough that the separation is still running when its worker is killed.
    jid = separate(C.api_b, auth, upload(C.api_a, auth, 0, 20.0))
    t, seen = phx_until(C.api_a, key, f"jobs:{jid}", "job:completed", job_id=jid,
                        timeout_ms=150000)
    victim = wait_until(lambda: C.runner_of(jid), f"no worker started {jid}", timeout=60)
    wait_job(C.api_a, auth, jid, want=("running", "processing"))
    other = next(w for w in C.workers if w is not victim and w.proc.poll() is None)
    t0 = time.time()
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(10)
    # Its child dies with it (PR_SET_PDEATHSIG); the job stays running until its lease
    # passes and another node puts it back in the queue.
    check(other.wait_log(f"job {jid} (processing) started, attempt 2 of", timeout=30),
          "\n".join(other.log[-10:]))
    taken_back_s = time.time() - t0
    check(taken_back_s >= 2, f"taken back after {taken_back_s:.1f} s, before its lease passed")
    j = wait_job(C.api_b, auth, jid, timeout=120)
    eq((j["status"], j["attempts"]), ("completed", 2), "completed by the other worker")
    eq(len(separation(C.api_a, auth, jid)["stems"]), 4, "its stems")
    check(other.wait_log(f"job {jid} (processing) completed"), "\n".join(other.log[-10:]))
    t.join(60)
    eq(seen.get("rc"), 0, f"phoenix client: {seen.get('stderr', '')[-400:]}")
    kinds = [e["event"] for e in seen["seen"]["events"]]
    check("job:completed" in kinds, f"node A's socket missed the completion: {kinds}")
    print(f"# taken back {taken_back_s:.1f} s after kill -9 (lease 3 s)", flush=True)
    C.workers.remove(victim)
    C.start_worker("worker-3")


@tap.case
def cancel_on_b_stops_a_job_running_on_a_worker(_):
    email, uid, key, auth = new_user(C.api_a)
    jid = enqueue_probe(C.api_a, email, {"steps": 300, "step_ms": 100})
    t, seen = phx_until(C.api_a, key, f"jobs:{jid}", "job:failed", job_id=jid,
                        timeout_ms=60000)
    runner = wait_until(lambda: C.runner_of(jid), f"no worker started {jid}")
    wait_job(C.api_a, auth, jid, want=("running",))
    t0 = time.time()
    r = C.api_b.client().request("DELETE", f"/api/jobs/{jid}", headers=auth)
    eq(r.status, 202, r.text)
    j = wait_job(C.api_a, auth, jid, want=("failed",), timeout=10)
    eq(j["error"], "cancelled", "error")
    check(time.time() - t0 < 5, f"the cancel took {time.time() - t0:.1f} s")
    check(runner.wait_log(f"job {jid} cancelled"), "\n".join(runner.log[-10:]))
    wait_until(lambda: not harness.processes_with("job-exec", jid), "its worker process lives on",
               timeout=10)
    t.join(60)
    eq(seen.get("rc"), 0, f"phoenix client: {seen.get('stderr', '')[-400:]}")
    failed = [e for e in seen["seen"]["events"] if e["event"] == "job:failed"]
    check(failed and failed[0]["payload"]["error"] == "cancelled", f"node A's socket: {failed}")


@tap.case
def rate_limits_hold_across_nodes(_):
    email, _, _, _ = new_user(C.api_a)
    clients = [C.api_a.client(), C.api_b.client()]
    statuses = []
    for i in range(10):
        r = clients[i % 2].log_in(email, "not the password")
        statuses.append(r.status)
    refused = [i for i, st in enumerate(statuses) if st == 429]
    # 6 attempts in all pass (3 per node); per-node counting would let all 10 through.
    eq(refused, list(range(6, 10)), f"attempts refused (statuses {statuses})")
    r = clients[0].log_in(email, PW)
    eq(r.status, 429, "the right password is refused too while the window lasts")


@tap.case
def lalalai_checks_of_one_key_are_spaced_across_nodes(_):
    _, _, _, auth = new_user(C.api_a)
    jobs = []
    for i in range(3):
        # "task-stuck" in the name: the fake's task stays in progress until cancelled, so
        # the three jobs keep checking side by side for as long as the test watches.
        body, h = multipart({"title": f"task-stuck {i}", "artist": "Lab"},
                            {"file": (f"c{i}.wav", sine_wav(0.5))})
        r = C.api_a.client().request("POST", "/api/tracks", body=body, headers={**auth, **h})
        eq(r.status, 201, r.text)
        r = C.api_b.client().request("POST", "/api/processing/separate", headers=auth,
                                     json_body={"track_id": r.json()["data"]["id"],
                                                "engine": "lalalai"})
        eq(r.status, 201, r.text)
        jobs.append(r.json()["data"]["job_id"])
    mine = lambda st: {t: v for t, v in st["tasks"].items() if v["idempotency_key"] in jobs}
    # From the moment all three tasks exist, all three jobs are checking.
    st = wait_until(lambda: (s := FAKE_LAL.stats()) and len(mine(s)) == 3 and s,
                    "the three lal.ai tasks were not all started", timeout=120)
    n_from = len(st["check_times"])
    checks_from = {t: v["checks"] for t, v in mine(st).items()}
    st = wait_until(lambda: (s := FAKE_LAL.stats()) and all(
        v["checks"] >= checks_from[t] + 3 for t, v in mine(s).items()) and s,
        "the tasks were not checked three times more each", timeout=120)
    times = st["check_times"][n_from:]
    for jid in jobs:
        r = C.api_b.client().request("DELETE", f"/api/jobs/{jid}", headers=auth)
        eq(r.status, 202, r.text)
    for jid in jobs:
        wait_job(C.api_a, auth, jid, want=("failed",))
    # Three jobs checking on their own would make three checks every interval, so gaps of
    # about a third of it; sharing the key's slots keeps every gap about an interval (half
    # of it allows for a call that reached the fake late).
    gaps = [b - a for a, b in zip(times, times[1:])]
    check(min(gaps) >= CHECK_INTERVAL_S / 2,
          f"checks {min(gaps) * 1000:.0f} ms apart (interval {CHECK_INTERVAL_S * 1000:.0f} ms)")
    ran = {w.name: sum(f"job {jid} (lalalai) started" in l for l in w.log for jid in jobs)
           for w in C.workers}
    eq(sum(ran.values()), len(jobs), f"lal.ai jobs started by the workers: {ran}")
    print(f"# lal.ai jobs per worker {ran}; {len(times)} checks, the closest "
          f"{min(gaps) * 1000:.0f} ms apart", flush=True)


@tap.case
def no_sanitizer_reports(_):
    bad = [line for p in STARTED for line in p.log
           if "AddressSanitizer" in line or "LeakSanitizer" in line or "runtime error:" in line]
    check(not bad, "sanitizer reports:\n" + "\n".join(bad[:20]))


if __name__ == "__main__":
    rc = 1
    FAKE_LAL = FakeLalalai()
    FAKE_LAL.call("POST", "/_fake/config", {"check_limit": 100000})
    ENV["SFA_LALALAI_URL"] = FAKE_LAL.url
    try:
        C.start()
        rc = tap.run(None)
    finally:
        C.stop()
        FAKE_LAL.stop()
        subprocess.run(["rm", "-rf", DATA])
    if rc:
        for p in STARTED:
            print(f"# log of {' '.join(p.command()[1:2])} {p.args}:\n# " +
                  "\n# ".join(p.log[-25:]))
    sys.exit(rc)
