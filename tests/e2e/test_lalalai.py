#!/usr/bin/python3
"""End-to-end tests of cloud separation with lal.ai, against tests/fakes/fake_lalalai.py.

The server runs with SFA_LALALAI_URL pointing at the fake and a 100 ms check interval (the
production default is 3 s, lal.ai's 20 checks a minute). Behaviours are picked by the
track's title, which becomes the uploaded file's name (see the fake's magic words).
Covers: the settings key (set, masked, sealed at rest, replace, remove), 503 without a key,
upload -> separate -> downloadable lal.ai stems (4 and 6 stems, wav and flac, a resumed
download), failed tasks, cancel / cancel-all of only the caller's tasks, DELETE of a
running job reaching lal.ai, the quota, a rejected key, the server-wide key, and lal.ai's
own job slots: a cloud job never holds up another user's local separation, it is shown as
a "processing" job everywhere (job JSON, ?type, socket events), and a row an earlier
version stored as "processing" still runs after the upgrade.
"""
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
import wave

sys.path.insert(0, os.path.dirname(__file__))
from harness import Server, Tap, check, eq, multipart, phx_until, sine_wav  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, "..", "fakes", "fake_lalalai.py")
FIXTURES = os.environ.get("SFA_FIXTURES", os.path.join(HERE, "..", "fixtures"))
TINY = os.path.join(FIXTURES, "nn", "tiny_htdemucs.th")
HTDEMUCS_SIG = "955717e8"  # the single member of the official htdemucs bag
PW = "correct horse battery"
tap = Tap()


class FakeLalalai:
    def __init__(self):
        if not os.path.exists(FAKE):
            raise RuntimeError(f"missing the fake lal.ai script {FAKE}")
        self.proc = subprocess.Popen(["/usr/bin/python3", FAKE], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            self.proc.kill()
            raise RuntimeError(f"the fake lal.ai did not print its port (got {line!r})")
        self.url = f"http://127.0.0.1:{line}"

    def call(self, method, path, body=None):
        import urllib.request
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"{}")

    def stats(self):
        return self.call("GET", "/_fake/stats")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.terminate()
            self.proc.wait(10)


FAKE_LAL = None


def user(srv, lal_key=None):
    """A logged-in browser client and bearer headers for a new user; optionally with
    their own lal.ai key saved through the settings page."""
    c = srv.client()
    email = f"lal-{uuid.uuid4().hex[:10]}@example.com"
    eq(c.register(email, PW).status, 302, "register")
    key = c.create_api_key("e2e")
    auth = {"Authorization": f"Bearer {key}"}
    if lal_key:
        r = set_key(c, lal_key)
        eq(r.status, 302, f"saving the lal.ai key: {r.text[:300]}")
    return c, auth


def set_key(c, key):
    token = c.csrf("/users/settings")
    return c.post("/users/settings", form={"_method": "put", "_csrf_token": token,
                                            "action": "set_lalalai_key", "lalalai_key": key})


def upload(srv, auth, title, seconds=1.0):
    body, h = multipart({"title": title, "artist": "Lab"},
                        {"file": ("tone.wav", sine_wav(seconds))})
    r = srv.client().request("POST", "/api/tracks", body=body, headers={**auth, **h})
    eq(r.status, 201, r.text)
    return r.json()["data"]


def separate(srv, auth, track, **kw):
    body = {"track_id": track["id"], "engine": "lalalai", **kw}
    return srv.client().request("POST", "/api/processing/separate", headers=auth,
                                json_body=body)


def job(srv, auth, jid):
    r = srv.client().get(f"/api/processing/job/{jid}", headers=auth)
    eq(r.status, 200, r.text)
    return r.json()["data"]


def wait(srv, auth, jid, until=lambda j: j["status"] in ("completed", "failed"), timeout=30):
    deadline = time.time() + timeout
    seen = []
    while time.time() < deadline:
        j = job(srv, auth, jid)
        seen.append((j["progress"], j["status"]))
        if until(j):
            return j, seen
        time.sleep(0.05)
    raise AssertionError(f"job {jid} did not get there in {timeout} s: {seen[-3:]}")


def fake_task(task_id):
    return FAKE_LAL.stats()["tasks"].get(task_id)


@tap.case
def settings_key_is_sealed_masked_replaced_removed(srv):
    c, _ = user(srv)
    page = c.get("/users/settings").text
    check("No lal.ai license key" in page, "no key yet")
    eq(set_key(c, "key-alice-0123456789").status, 302, "saved")
    page = c.get("/users/settings").text
    check("****6789" in page, "masked hint shown")
    check("key-alice-0123456789" not in page, "the full key is never shown again")
    check("Remove key" in page and "Replace your lal.ai license key" in page, "replace/remove")
    for name in ("sfa.db", "sfa.db-wal"):
        path = os.path.join(srv.data_dir, name)
        if os.path.exists(path):
            check(b"key-alice-0123456789" not in open(path, "rb").read(),
                  f"the key is stored in clear in {name}")
    r = set_key(c, "short")
    eq(r.status, 422, "too short")
    check("8 to 200 characters" in r.text, r.text[:200])
    r = set_key(c, "has space inside")
    eq(r.status, 422, "spaces")
    eq(set_key(c, "key-alice-new-abcd").status, 302, "replaced")
    check("****abcd" in c.get("/users/settings").text, "new hint")
    token = c.csrf("/users/settings")
    r = c.post("/users/settings", form={"_method": "put", "_csrf_token": token,
                                        "action": "remove_lalalai_key"})
    eq(r.status, 302, "removed")
    check("No lal.ai license key" in c.get("/users/settings").text, "gone")


@tap.case
def without_a_key_not_configured(srv):
    _, auth = user(srv)
    track = upload(srv, auth, "Tone")
    r = separate(srv, auth, track)
    eq((r.status, r.json()["code"]), (503, "not_configured"), r.text)
    cl = srv.client()
    eq(cl.get("/api/lalalai/quota", headers=auth).status, 503, "quota")
    eq(cl.post("/api/lalalai/cancel-all", headers=auth, json_body={}).status, 503, "cancel-all")
    r = cl.post("/api/lalalai/cancel", headers=auth, json_body={"task_id": "task-nope"})
    eq(r.status, 404, "unknown task")


@tap.case
def upload_to_downloadable_stems(srv):
    _, auth = user(srv, "key-e2e-main-0001")
    track = upload(srv, auth, "Tone")
    r = separate(srv, auth, track, model="htdemucs")
    eq(r.status, 201, r.text)
    d = r.json()["data"]
    eq((d["track_id"], d["model"], d["status"]), (track["id"], "htdemucs", "queued"), "queued")
    check(r.header("Location").endswith(d["job_id"]), "Location")
    j, seen = wait(srv, auth, d["job_id"])
    eq(j["status"], "completed", j.get("error"))
    eq(j["engine"], "lalalai", "engine")
    progress = sorted({p for p, _ in seen})
    check(any(20 <= p < 70 for p in progress) or len(progress) >= 2,
          f"progress moved through lal.ai's phase: {progress}")
    task = fake_task(j["lalalai_task_id"])
    check(task is not None, "the task id is lal.ai's")
    eq(task["stems"], ["vocals", "drum", "bass"], "stem list sent to lal.ai")
    check(task["idempotency_key"], "an idempotency key was sent")
    ups = [u for u in FAKE_LAL.stats()["uploads"] if u["key"] == "key-e2e-main-0001"]
    eq(ups[-1]["name"], "Lab - Tone.wav", "upload file name from the track")
    stems = j["stems"]
    eq([s["stem_type"] for s in stems], ["drums", "bass", "other", "vocals"], "stems")
    c = srv.client()
    for s in stems:
        eq((s["engine"], s["format"]), ("lalalai", "wav"), "engine/format")
        check(s["file_path"].startswith(f"/files/stems/{d['job_id']}/"), s["file_path"])
        f = c.get(s["file_path"], headers=auth)
        eq(f.status, 200, f"download {s['stem_type']}")
        w = wave.open(io.BytesIO(f.body))
        eq((w.getnframes(), w.getnchannels(), w.getframerate()), (44100, 2, 44100),
           f"{s['stem_type']} as long as the input")
    q = c.get("/api/lalalai/quota", headers=auth)
    eq(q.status, 200, q.text)
    qd = q.json()["data"]
    eq(qd["used_minutes"], 0.02, "one second used this month")
    eq(qd["remaining_minutes"], 999.98, "lal.ai's minutes_left")
    eq(qd["quota_minutes"], 1000.0, "their sum")
    check(FAKE_LAL.stats()["hits"].get("deleted", 0) >= 1, "the upload was deleted at lal.ai")


@tap.case
def six_stems_flac_with_a_resumed_download(srv):
    _, auth = user(srv, "key-e2e-six-0002")
    track = upload(srv, auth, "dl-cut-once")
    r = separate(srv, auth, track, model="htdemucs_6s", output_format="flac")
    eq(r.status, 201, r.text)
    j, _ = wait(srv, auth, r.json()["data"]["job_id"])
    eq(j["status"], "completed", j.get("error"))
    eq([s["stem_type"] for s in j["stems"]],
       ["drums", "bass", "other", "vocals", "guitar", "piano"], "six stems")
    eq({s["format"] for s in j["stems"]}, {"flac"}, "flac")
    eq(fake_task(j["lalalai_task_id"])["stems"],
       ["vocals", "drum", "bass", "piano", "electric_guitar", "acoustic_guitar"], "6-stem list")
    dl = FAKE_LAL.stats()["downloads"]
    check(any(k.startswith(f"/_dl/{j['lalalai_task_id']}/") and v >= 2 for k, v in dl.items()),
          "a cut download was resumed")
    f = srv.client().get(j["stems"][4]["file_path"], headers=auth)
    eq((f.status, f.body[:4]), (200, b"fLaC"), "a FLAC file")


@tap.case
def failed_tasks_explain_themselves(srv):
    _, auth = user(srv, "key-e2e-fail-0003")
    for title, words in (("task-error", "could not be processed"),
                         ("task-server-error", "Processing node failed")):
        track = upload(srv, auth, title)
        r = separate(srv, auth, track)
        j, _ = wait(srv, auth, r.json()["data"]["job_id"])
        eq(j["status"], "failed", title)
        check(words in (j["error"] or ""), f"{title}: {j['error']}")
        eq(j["stems"], [], "no stems")
    # A retry is a new request to lal.ai (a new idempotency key): it fails for the task's
    # own reason again, not because lal.ai saw its key before.
    r = srv.client().request("POST", f"/api/jobs/{j['id']}/retry", headers=auth)
    eq(r.status, 201, r.text)
    j2, _ = wait(srv, auth, r.json()["data"]["id"])
    eq(j2["status"], "failed", "the retried job")
    check(words in (j2["error"] or ""), f"the retry: {j2['error']}")


@tap.case
def rejected_key(srv):
    c, auth = user(srv, "bad-key-000000")
    r = c.get("/api/lalalai/quota", headers=auth)
    eq((r.status, r.json()["code"]), (502, "lalalai_error"), r.text)
    check("lal.ai rejected the license key" in r.json()["error"], r.text)
    track = upload(srv, auth, "Tone")
    j, _ = wait(srv, auth, separate(srv, auth, track).json()["data"]["job_id"])
    eq(j["status"], "failed", "job")
    check("lal.ai rejected the license key" in j["error"], j["error"])
    check("bad-key" not in j["error"], "the key is not in the error")


def stuck_job(srv, auth):
    track = upload(srv, auth, "task-stuck")
    jid = separate(srv, auth, track).json()["data"]["job_id"]
    j, _ = wait(srv, auth, jid, until=lambda j: j.get("lalalai_task_id") and j["progress"] >= 20)
    return jid, j["lalalai_task_id"]


@tap.case
def cancel_only_own_tasks(srv):
    _, auth = user(srv, "key-e2e-cancel-0004")
    _, other = user(srv, "key-e2e-other-0005")
    jid, tid = stuck_job(srv, auth)
    cl = srv.client()
    r = cl.post("/api/lalalai/cancel", headers=other, json_body={"task_id": tid})
    eq(r.status, 404, "another user's task")
    eq(cl.post("/api/lalalai/cancel", headers=auth, json_body={}).status, 422, "no task id")
    r = cl.post("/api/lalalai/cancel", headers=auth, json_body={"task_id": tid})
    eq(r.status, 200, r.text)
    eq(r.json()["data"], {"task_id": tid, "job_id": jid, "status": "cancelled"}, "answer")
    j, _ = wait(srv, auth, jid)
    eq((j["status"], j["error"]), ("failed", "cancelled"), "job cancelled")
    eq(fake_task(tid)["state"], "cancelled", "lal.ai cancelled it")
    r = cl.post("/api/lalalai/cancel", headers=auth, json_body={"task_id": tid})
    eq((r.status, r.json()["code"]), (409, "conflict"), "nothing left to cancel")


@tap.case
def cancel_all_only_the_callers(srv):
    _, auth = user(srv, "key-e2e-all-0006")
    _, other = user(srv, "key-e2e-all-0007")
    mine = [stuck_job(srv, auth) for _ in range(2)]
    theirs = stuck_job(srv, other)
    r = srv.client().post("/api/lalalai/cancel-all", headers=auth, json_body={})
    eq(r.status, 200, r.text)
    eq(sorted(r.json()["data"]["cancelled"]), sorted(t for _, t in mine), "my tasks")
    for jid, tid in mine:
        j, _ = wait(srv, auth, jid)
        eq((j["status"], j["error"]), ("failed", "cancelled"), "cancelled")
    eq(fake_task(theirs[1])["state"], "progress", "the other user's task runs on")
    eq(job(srv, other, theirs[0])["status"], "processing", "their job too")
    # DELETE /api/jobs/:id of a running lal.ai job reaches lal.ai as well.
    r = srv.client().request("DELETE", f"/api/jobs/{theirs[0]}", headers=other)
    eq(r.status, 202, r.text)
    j, _ = wait(srv, other, theirs[0])
    eq((j["status"], j["error"]), ("failed", "cancelled"), "deleted job")
    deadline = time.time() + 5
    while fake_task(theirs[1])["state"] != "cancelled":
        check(time.time() < deadline, "the worker did not cancel the task at lal.ai")
        time.sleep(0.05)


@tap.case
def server_key_is_the_fallback(srv):
    env = dict(srv.env)
    env["SFA_LALALAI_LICENSE_KEY"] = "key-server-wide-99"
    s2 = Server(env=env).start()
    try:
        c, auth = user(s2)
        check("this server's key is used" in c.get("/users/settings").text, "settings says so")
        track = upload(s2, auth, "Tone")
        r = separate(s2, auth, track)
        eq(r.status, 201, r.text)
        j, _ = wait(s2, auth, r.json()["data"]["job_id"])
        eq(j["status"], "completed", j.get("error"))
        ups = FAKE_LAL.stats()["uploads"]
        eq(ups[-1]["key"], "key-server-wide-99", "the server's key was used")
        eq(s2.client().get("/api/lalalai/quota", headers=auth).status, 200, "quota")
    finally:
        s2.cleanup()


@tap.case
def socket_and_filters_show_a_processing_job(srv):
    c, auth = user(srv, "key-e2e-shown-0008")
    uid = c.get("/api/me", headers=auth).json()["data"]["id"]
    key = auth["Authorization"].split(" ", 1)[1]
    t, seen = phx_until(srv, key, f"user:{uid}", "job:completed", job_type="processing")
    track = upload(srv, auth, "Tone")
    jid = separate(srv, auth, track).json()["data"]["job_id"]
    j, _ = wait(srv, auth, jid)
    eq(j["status"], "completed", j.get("error"))
    t.join(60)
    eq(seen.get("rc"), 0, f"phoenix client: {seen.get('stderr', '')[-400:]}")
    done = [e for e in seen["seen"].get("events", []) if e["event"] == "job:completed"]
    eq([(e["payload"]["job_id"], e["payload"]["job_type"]) for e in done],
       [(jid, "processing")],
       f"the socket's job:completed (the connection closed {seen['seen'].get('closes')} times)")
    cl = srv.client()
    eq(cl.get(f"/api/jobs/{jid}", headers=auth).json()["data"]["type"], "processing", "type")
    listed = cl.get("/api/jobs?type=processing", headers=auth).json()["data"]
    eq([x["id"] for x in listed], [jid], "?type=processing lists the lal.ai job")
    r = cl.get("/api/jobs?type=lalalai", headers=auth)
    eq(r.status, 422, "the stored type is no filter clients know")
    check("lalalai" not in r.json()["details"]["type"][0], r.text)


def local_server(env_extra):
    env = dict(BASE_ENV)
    env.update(env_extra)
    s = Server(env=env).start()
    check(os.path.exists(TINY), f"missing test fixture {TINY}")
    os.makedirs(os.path.join(s.data_dir, "models"), exist_ok=True)
    shutil.copy(TINY, os.path.join(s.data_dir, "models", f"{HTDEMUCS_SIG}.th"))
    return s


@tap.case
def a_cloud_job_never_holds_up_a_local_one(srv):
    """One local slot (the default), one lal.ai slot: two users' stuck lal.ai jobs take
    turns in theirs, while a third user's local separation runs and completes at once."""
    s2 = local_server({"SFA_JOBS_PROCESSING": "1", "SFA_JOBS_LALALAI": "1"})
    try:
        _, alice = user(s2, "key-e2e-slots-0009")
        _, bob = user(s2, "key-e2e-slots-0010")
        first, first_task = stuck_job(s2, alice)
        track = upload(s2, bob, "task-stuck")
        second = separate(s2, bob, track).json()["data"]["job_id"]
        _, carol = user(s2)
        track = upload(s2, carol, "Tone")
        r = s2.client().request("POST", "/api/processing/separate", headers=carol,
                                json_body={"track_id": track["id"], "model": "htdemucs"})
        eq(r.status, 201, r.text)
        local, _ = wait(s2, carol, r.json()["data"]["job_id"], timeout=90)
        eq(local["status"], "completed", local.get("error"))
        eq(len(local["stems"]), 4, "the local stems")
        eq(job(s2, alice, first)["status"], "processing", "the cloud job still runs")
        eq(job(s2, bob, second)["status"], "queued", "SFA_JOBS_LALALAI=1: the next one waits")
        eq(fake_task(first_task)["state"], "progress", "lal.ai still has the first task")
        eq(s2.client().request("DELETE", f"/api/jobs/{first}", headers=alice).status, 202,
           "cancel the first")
        j, _ = wait(s2, bob, second, until=lambda j: j.get("lalalai_task_id"))
        eq(j["status"], "processing", "the second got the freed lal.ai slot")
        eq(s2.client().request("DELETE", f"/api/jobs/{second}", headers=bob).status, 202,
           "cancel the second")
        wait(s2, bob, second)
    finally:
        s2.cleanup()


@tap.case
def a_processing_row_of_an_earlier_version_still_runs(srv):
    """Earlier versions stored lal.ai separations as type "processing": the upgrade's
    migration makes them "lalalai" jobs, which run in lal.ai's slots and complete."""
    s2 = Server(env=BASE_ENV).start()
    try:
        c, auth = user(s2, "key-e2e-upgrade-0011")
        uid = c.get("/api/me", headers=auth).json()["data"]["id"]
        track = upload(s2, auth, "Tone")
        eq(s2.stop(), 0, "stopped")
        jid = str(uuid.uuid4())
        payload = json.dumps({"model": "htdemucs", "engine": "lalalai", "output_format": "wav",
                              "idempotency_key": str(uuid.uuid4())}, separators=(",", ":"))
        db = sqlite3.connect(os.path.join(s2.data_dir, "sfa.db"))
        with db:
            # As the version before lal.ai's own type (migration 13) left it; the later
            # migrations run again too, so they must be repeatable (14: IF NOT EXISTS).
            db.execute("UPDATE schema_version SET version = 12")
            db.execute("INSERT INTO jobs (id, user_id, track_id, type, status, max_attempts, "
                       "run_at, payload, created_at) VALUES (?, ?, ?, 'processing', 'queued', "
                       "2, 0, ?, ?)", (jid, uid, track["id"], payload, int(time.time())))
        db.close()
        s2.log.clear()
        s2.start()
        j, _ = wait(s2, auth, jid)
        eq(j["status"], "completed", j.get("error"))
        eq((j["engine"], len(j["stems"])), ("lalalai", 4), "lal.ai's stems")
        check(fake_task(j["lalalai_task_id"]) is not None, "it ran at lal.ai")
        eq(s2.client().get(f"/api/jobs/{jid}", headers=auth).json()["data"]["type"],
           "processing", "still shown as processing")
        check(any(f"job {jid} (lalalai) started" in line for line in s2.log),
              "it ran as a lalalai job")
    finally:
        s2.cleanup()


BASE_ENV = {}


def main():
    global FAKE_LAL
    FAKE_LAL = FakeLalalai()
    FAKE_LAL.call("POST", "/_fake/config", {"check_limit": 100000})
    env = {"SFA_RATE_API": "100000", "SFA_RATE_HEAVY": "100000", "SFA_RATE_AUTH": "100000",
           "SFA_LALALAI_URL": FAKE_LAL.url, "SFA_LALALAI_CHECK_INTERVAL_MS": "100",
           "SFA_JOB_RETRY_BASE_S": "0"}
    BASE_ENV.update(env)
    srv = Server(env={**env, "SFA_JOBS_LALALAI": "4"}).start()
    try:
        rc = tap.run(srv)
    finally:
        srv.cleanup()
        FAKE_LAL.stop()
    if rc:
        print("# server log tail:\n# " + "\n# ".join(srv.log[-60:]))
    return rc


if __name__ == "__main__":
    sys.exit(main())
