#!/usr/bin/python3
"""End-to-end tests of POST /api/download/track and GET /api/download/job/:id.

Metadata comes from the fake Spotify; the audio is downloaded by the REAL yt-dlp (Debian's
package) and converted by the real ffmpeg, from a local HTTP server, in URL-template mode
(SFA_DOWNLOAD_QUERY=http://127.0.0.1:PORT/{spotify_id}.wav). Each quality is checked with
ffprobe; progress is watched in order (the source server holds back the second half of one
file until the test has seen a real percentage, so nothing depends on timing); a 404, an
HTML page and a non-audio file fail with a sentence and leave no file behind; a cancel
kills yt-dlp. Search mode runs against tests/e2e/stub_ytdlp.py, a clearly labelled stub
that prints canned search results (a real search would need YouTube).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from fakes import AudioServer, FakeSpotify, magic  # noqa: E402
from harness import Server, Tap, check, eq, settles  # noqa: E402

tap = Tap()
PW = "correct horse battery"
OK_TRACK = magic("okTrack")
HERE = os.path.dirname(os.path.abspath(__file__))
fake = audio = tmp = None


def need(tool):
    if not shutil.which(tool):
        raise RuntimeError(f"missing {tool}: apt-get install {tool} (scripts/deps.sh does)")


def make_wav(path, seconds, freq=440):
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                    f"sine=frequency={freq}:duration={seconds}:sample_rate=44100", "-ac", "2",
                    "-y", path], check=True)
    with open(path, "rb") as f:
        return f.read()


def new_user(srv):
    email = f"dl-{uuid.uuid4().hex[:10]}@example.com"
    r = srv.cli("user", "create", "--email", email, "--password", PW)
    eq(r.returncode, 0, r.stderr)
    key = srv.cli("token", "create", "--email", email).stdout.strip()
    return {"Authorization": f"Bearer {key}"}


def start_download(srv, auth, url, quality=None, want=201):
    body = {"url": url}
    if quality:
        body["quality"] = quality
    r = srv.client().post("/api/download/track", headers=auth, json_body=body)
    eq(r.status, want, r.text)
    return r


def job(srv, auth, jid):
    r = srv.client().get(f"/api/download/job/{jid}", headers=auth)
    eq(r.status, 200, r.text)
    return r.json()["data"]


def wait_done(srv, auth, jid, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        j = job(srv, auth, jid)
        if j["status"] in ("completed", "failed"):
            return j
        time.sleep(0.05)
    raise AssertionError(f"download {jid} still {j['status']} after {timeout} s")


def ffprobe(path):
    r = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                        "stream=codec_name,bit_rate,sample_rate,channels", "-of", "json", path],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)["streams"][0]


def no_files_left(srv, track_id, job_id):
    d = os.path.join(srv.data_dir, "uploads", "downloads", track_id)
    check(not os.path.exists(d) or not os.listdir(d), f"files left in {d}: "
          f"{os.listdir(d) if os.path.exists(d) else ''}")
    # The scheduler removes the scratch directory right after recording the outcome.
    scratch = os.path.join(srv.data_dir, "tmp", "jobs", job_id)
    deadline = time.time() + 5
    while os.path.exists(scratch) and time.time() < deadline:
        time.sleep(0.02)
    check(not os.path.exists(scratch), "the job's scratch directory was left behind")


def processes_mentioning(text):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


@tap.case
def each_quality_gives_its_codec_and_bitrate(srv):
    want = {"lossless": ("flac", None), "high": ("mp3", "320000"),
            "medium": ("mp3", "192000"), "low": ("mp3", "128000"), None: ("mp3", "320000")}
    started = []
    for quality in want:  # one user each: the same Spotify track, separate libraries
        auth = new_user(srv)
        r = start_download(srv, auth, f"https://open.spotify.com/track/{OK_TRACK}", quality)
        d = r.json()["data"]
        eq(sorted(d), ["job_id", "status", "track_id"], "the reference's shape")
        eq(d["status"], "queued", "status")
        eq(r.header("Location"), f"/api/download/job/{d['job_id']}", "Location")
        started.append((quality, auth, d))
    for quality, auth, d in started:
        j = wait_done(srv, auth, d["job_id"])
        eq(j["status"], "completed", f"{quality}: {j.get('error')}")
        eq((j["progress"], j["error"]), (100, None), "progress and error")
        ext, rate = want[quality]
        name = f"artist-one-artist-two-fake-track-1.{ext}"
        eq(j["output_path"], f"/files/downloads/{d['track_id']}/{name}", "output path")
        path = os.path.join(srv.data_dir, "uploads", "downloads", d["track_id"], name)
        eq(j["file_size"], os.path.getsize(path), "file size")
        s = ffprobe(path)
        eq(s["codec_name"], ext, f"{quality} codec")
        if rate:
            eq(s["bit_rate"], rate, f"{quality} bitrate")
        eq(s["sample_rate"], "44100", "sample rate")
        t = srv.client().get(f"/api/tracks/{d['track_id']}", headers=auth).json()["data"]
        eq(t["audio"]["url"], j["output_path"], "the track's audio")
        eq(t["audio"]["format"], ext, "format")
        check(abs(t["audio"]["duration"] - 3.0) < 0.2, f"duration {t['audio']['duration']}")
        f = srv.client().get(j["output_path"], headers=auth)
        eq((f.status, len(f.body)), (200, j["file_size"]), "served under /files")
        eq(os.listdir(os.path.dirname(path)), [name], "only the finished file")
        no_files_left_scratch = os.path.join(srv.data_dir, "tmp", "jobs", d["job_id"])
        deadline = time.time() + 5
        while os.path.exists(no_files_left_scratch) and time.time() < deadline:
            time.sleep(0.02)
        check(not os.path.exists(no_files_left_scratch), "the scratch directory remains")


@tap.case
def progress_is_real_and_in_order(srv):
    auth = new_user(srv)
    gate = threading.Event()
    audio.gates[f"/{magic('okGated')}.wav"] = gate
    r = start_download(srv, auth, f"spotify:track:{magic('okGated')}", "medium")
    jid = r.json()["data"]["job_id"]
    # While it runs, the same track answers with the same job (200).
    again = start_download(srv, auth, f"spotify:track:{magic('okGated')}", want=200)
    eq(again.json()["data"]["job_id"], jid, "the active job is returned")
    seen = []
    deadline = time.time() + 30
    try:
        while time.time() < deadline:
            j = job(srv, auth, jid)
            seen.append((j["status"], j["progress"]))
            # Half the file arrived; yt-dlp reads in growing blocks, so it has reported
            # at least a third of that half (> 11 %), short of the 70 % download share.
            if j["status"] == "downloading" and 5 <= j["progress"] < 70:
                break
            check(j["status"] in ("queued", "downloading"), f"status {j['status']}: {j}")
            time.sleep(0.02)
    finally:
        gate.set()
    check(seen and seen[-1][0] == "downloading" and 5 <= seen[-1][1] < 70,
          f"no real download percentage was seen: {seen[-10:]}")
    while True:
        j = job(srv, auth, jid)
        seen.append((j["status"], j["progress"]))
        if j["status"] in ("completed", "failed"):
            break
        time.sleep(0.02)
    eq(j["status"], "completed", j.get("error"))
    order = ["queued", "downloading", "processing", "completed"]
    ranks = [order.index(s) for s, _ in seen]
    eq(ranks, sorted(ranks), f"statuses in order: {seen}")
    progress = [p for _, p in seen]
    eq(progress, sorted(progress), f"progress never goes back: {seen}")


@tap.case
def bad_sources_fail_cleanly_without_retry(srv):
    cases = {"okMissing": "unavailable", "okNotAudio": "not audio that can be decoded",
             "okHtml": "not audio or video"}
    started = []
    for name, phrase in cases.items():
        auth = new_user(srv)
        d = start_download(srv, auth, f"spotify:track:{magic(name)}").json()["data"]
        started.append((name, phrase, auth, d))
    for name, phrase, auth, d in started:
        j = wait_done(srv, auth, d["job_id"])
        eq(j["status"], "failed", name)
        check(phrase in j["error"], f"{name}: {j['error']!r} should say {phrase!r}")
        check(srv.data_dir not in j["error"] and "/tmp/" not in j["error"],
              f"a server path leaked: {j['error']}")
        eq((j["output_path"], j["file_size"]), (None, None), "no output")
        full = srv.client().get(f"/api/jobs/{d['job_id']}", headers=auth).json()["data"]
        eq(full["attempts"], 1, f"{name}: a permanent failure is not retried")
        no_files_left(srv, d["track_id"], d["job_id"])
        t = srv.client().get(f"/api/tracks/{d['track_id']}", headers=auth).json()["data"]
        eq(t["audio"], None, "the track still has no audio")


@tap.case
def album_fans_out_one_job_per_track(srv):
    auth = new_user(srv)
    r = start_download(srv, auth, f"https://open.spotify.com/album/{magic('smallAlbum')}", "low")
    d = r.json()["data"]
    eq((d["type"], d["spotify_id"], len(d["jobs"])), ("album", magic("smallAlbum"), 3), "shape")
    for ref in d["jobs"]:
        eq(sorted(ref), ["job_id", "status", "track_id"], "job entries")
    paths = set()
    for ref in d["jobs"]:
        j = wait_done(srv, auth, ref["job_id"])
        eq(j["status"], "completed", j.get("error"))
        paths.add(j["output_path"])
    eq(len(paths), 3, "one file per track")
    check(all(p.endswith(".mp3") and "album-artist-album-track-" in p for p in paths), paths)


@tap.case
def cancel_stops_ytdlp_and_leaves_nothing(srv):
    auth = new_user(srv)
    gate = threading.Event()
    audio.gates[f"/{magic('okCancel')}.wav"] = gate
    d = start_download(srv, auth, f"spotify:track:{magic('okCancel')}").json()["data"]
    jid = d["job_id"]
    deadline = time.time() + 20
    while time.time() < deadline:
        if job(srv, auth, jid)["progress"] >= 5:
            break
        time.sleep(0.02)
    scratch = os.path.join(srv.data_dir, "tmp", "jobs", jid)
    check(processes_mentioning(scratch), "yt-dlp is running in the job's scratch directory")
    r = srv.client().request("DELETE", f"/api/jobs/{jid}", headers=auth)
    eq(r.status, 202, r.text)
    j = wait_done(srv, auth, jid, timeout=10)
    eq((j["status"], j["error"]), ("failed", "cancelled"), "cancelled")
    settles(lambda: processes_mentioning(scratch), [], "no yt-dlp or ffmpeg survives the cancel")
    gate.set()
    no_files_left(srv, d["track_id"], jid)


@tap.case
def requests_are_validated_and_scoped(srv):
    auth = new_user(srv)
    c = srv.client()
    r = c.post("/api/download/track", headers=auth,
               json_body={"url": f"spotify:track:{OK_TRACK}", "quality": "ultra"})
    eq((r.status, r.json()["code"]), (422, "validation_failed"), "bad quality")
    check("quality" in r.json()["details"], "details name the field")
    r = c.post("/api/download/track", headers=auth, json_body={"quality": "low"})
    eq((r.status, r.json()["code"]), (422, "validation_failed"), "missing url")
    r = c.post("/api/download/track", headers=auth, json_body={"url": "https://example.com/x"})
    eq((r.status, r.json()["code"]), (422, "invalid_url"), "not a Spotify link")
    eq(c.get("/api/tracks", headers=auth).json()["meta"]["total_count"], 0, "nothing stored")
    d = start_download(srv, auth, f"spotify:track:{magic('okMissing')}").json()["data"]
    other = new_user(srv)
    eq(c.get(f"/api/download/job/{d['job_id']}", headers=other).status, 404, "another user")
    eq(c.get("/api/download/job/nope", headers=auth).status, 404, "malformed id")
    eq(c.get(f"/api/download/job/{uuid.uuid4()}", headers=auth).status, 404, "unknown id")
    eq(c.post("/api/download/track", json_body={"url": OK_TRACK}).status, 401, "no key")
    wait_done(srv, auth, d["job_id"])


def download_fails_with(env, words):
    """A download on a server with env fails, its error holding every one of words, and
    leaves no file behind."""
    s = Server(env={**fake.env(), "SFA_DOWNLOAD_QUERY": f"{audio.url}/{{spotify_id}}.wav",
                    **env}).start()
    try:
        auth = new_user(s)
        d = start_download(s, auth, f"spotify:track:{OK_TRACK}").json()["data"]
        j = wait_done(s, auth, d["job_id"])
        eq(j["status"], "failed", "status")
        check(all(w in j["error"] for w in words), j["error"])
        no_files_left(s, d["track_id"], d["job_id"])
    finally:
        s.cleanup()


@tap.case
def missing_ytdlp_is_explained(_srv):
    download_fails_with({"SFA_YTDLP": "/nonexistent/yt-dlp"},
                        ["yt-dlp was not found", "pip install -U yt-dlp"])


@tap.case
def timeout_kills_ytdlp_and_is_retried_later(_srv):
    gate = threading.Event()  # never set while the attempt runs: the source stalls
    audio.gates[f"/{magic('okStall')}.wav"] = gate
    s = Server(env={**fake.env(), "SFA_DOWNLOAD_TIMEOUT_S": "5", "SFA_JOB_RETRY_BASE_S": "600",
                    "SFA_DOWNLOAD_QUERY": f"{audio.url}/{{spotify_id}}.wav"}).start()
    try:
        auth = new_user(s)
        d = start_download(s, auth, f"spotify:track:{magic('okStall')}").json()["data"]
        deadline = time.time() + 30
        while time.time() < deadline:
            full = s.client().get(f"/api/jobs/{d['job_id']}", headers=auth).json()["data"]
            if full["status"] == "queued" and full["attempts"] == 1:
                break
            time.sleep(0.1)
        eq((full["status"], full["attempts"]), ("queued", 1), "queued again after the timeout")
        check("did not finish within 5 s" in (full["error"] or ""), full["error"])
        scratch = os.path.join(s.data_dir, "tmp", "jobs", d["job_id"])
        eq(processes_mentioning(scratch), [], "yt-dlp was killed with its process group")
        no_files_left(s, d["track_id"], d["job_id"])
    finally:
        gate.set()
        s.cleanup()


@tap.case
def missing_ffmpeg_is_explained(_srv):
    empty = tempfile.mkdtemp(prefix="sfa-nopath-")
    try:
        download_fails_with({"PATH": empty, "SFA_YTDLP": shutil.which("yt-dlp")},
                            ["ffmpeg is not installed", "apt-get install ffmpeg"])
    finally:
        os.rmdir(empty)


@tap.case
def search_mode_picks_the_closest_duration_with_a_stub_ytdlp(_srv):
    """Uses tests/e2e/stub_ytdlp.py (canned search results), NOT the real yt-dlp."""
    log = os.path.join(tmp, "stub.log")
    s = Server(env={**fake.env(), "SFA_YTDLP": os.path.join(HERE, "stub_ytdlp.py"),
                    "STUB_YTDLP_LOG": log, "STUB_YTDLP_AUDIO": os.path.join(tmp, "src.wav"),
                    "SFA_JOB_RETRY_BASE_S": "0",
                    "SFA_RATE_API": "100000"}).start()  # polled every 50 ms however slow
    try:
        auth = new_user(s)
        # okTrack lasts 212.5 s: results of 150, 230, 205 and 216 s; 216 is closest.
        d = start_download(s, auth, f"spotify:track:{OK_TRACK}", "high").json()["data"]
        j = wait_done(s, auth, d["job_id"])
        eq(j["status"], "completed", j.get("error"))
        calls = [json.loads(line) for line in open(log)]
        search = [c for c in calls if "--dump-json" in c]
        eq(len(search), 1, "one search")
        eq(search[0][-1], "ytsearch5:Fake Track 1 Artist One, Artist Two", "the query")
        fetches = [c for c in calls if "--dump-json" not in c]
        eq(fetches[0][-1], "https://www.youtube.com/watch?v=ddddddddddd", "closest result")
        path = os.path.join(s.data_dir, "uploads", j["output_path"][len("/files/"):])
        eq(ffprobe(path)["bit_rate"], "320000", "converted")
        # okSong1 lasts 30 s: no result is within 10 s.
        d = start_download(s, auth, f"spotify:track:{magic('okSong1')}").json()["data"]
        j = wait_done(s, auth, d["job_id"])
        eq(j["status"], "failed", "status")
        check(j["error"].startswith("No match") and "within 10 s" in j["error"], j["error"])
        full = s.client().get(f"/api/jobs/{d['job_id']}", headers=auth).json()["data"]
        eq(full["attempts"], 1, "no match is not retried")
    finally:
        s.cleanup()


@tap.case
def fan_out_is_capped(_srv):
    s = Server(env={**fake.env(), "SFA_DOWNLOAD_MAX_TRACKS": "100"}).start()
    try:
        auth = new_user(s)
        r = start_download(s, auth, f"https://open.spotify.com/album/{magic('bigAlbum')}", "low",
                           want=422)
        eq((r.status, r.json()["code"]), (422, "too_many_tracks"), r.text)
        check("123 tracks" in r.json()["error"] and "at most 100" in r.json()["error"],
              r.json()["error"])
        jobs = s.client().get("/api/jobs", headers=auth).json()["meta"]["total_count"]
        eq(jobs, 0, "nothing was queued")
    finally:
        s.cleanup()


def main():
    global fake, audio, tmp
    for tool in ("yt-dlp", "ffmpeg", "ffprobe"):
        need(tool)
    tmp = tempfile.mkdtemp(prefix="sfa-dl-")
    wav = make_wav(os.path.join(tmp, "src.wav"), 3)
    files = {f"/{magic(n)}.wav": ("audio/wav", wav)
             for n in ("okTrack", "okGated", "okCancel", "okStall")}
    for i in (1, 2, 3):
        files[f"/sa{i:020d}.wav"] = ("audio/wav", wav)
    files[f"/{magic('okNotAudio')}.wav"] = ("audio/mpeg", b"this is not audio\n" * 4000)
    files[f"/{magic('okHtml')}.wav"] = ("text/html", b"<html><body>Just a page</body></html>")
    audio = AudioServer(files)
    fake = FakeSpotify()
    env = {**fake.env(), "SFA_RATE_API": "100000", "SFA_RATE_HEAVY": "100000",
           "SFA_JOBS_DOWNLOAD": "4", "SFA_JOB_RETRY_BASE_S": "0",
           "SFA_DOWNLOAD_QUERY": f"{audio.url}/{{spotify_id}}.wav"}
    srv = Server(env=env).start()
    try:
        rc = tap.run(srv)
    finally:
        srv.cleanup()
        fake.stop()
        audio.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if rc:
        print("# server log tail:\n# " + "\n# ".join(srv.log[-40:]))
    return rc


if __name__ == "__main__":
    sys.exit(main())
