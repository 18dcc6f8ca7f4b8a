#!/usr/bin/python3
"""End-to-end tests of /files, /export and track deletion.

Tracks, stems and analyses are created the way the engines will create them: files under
data/uploads and rows in the database (through SQLite directly, as the issue allows until
the engines land). Then everything is fetched over HTTP: ownership, traversal, Range,
validators, the streamed stems ZIP (checked with `unzip -t`, and the server's peak memory
measured while it streams 200 MB), and deletion.
"""
import http.client
import json
import os
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import (Tap, check, eq, multipart, peak_rss_kb, run_suite, settles,  # noqa: E402
                     sine_wav)

tap = Tap()
PW = "correct horse battery"


def new_user(srv):
    email = f"files-{uuid.uuid4().hex[:10]}@example.com"
    uid = srv.cli("user", "create", "--email", email, "--password", PW).stdout.strip()
    key = srv.cli("token", "create", "--email", email).stdout.strip()
    return uid, {"Authorization": f"Bearer {key}"}


def wav_bytes(n_frames, seed=0):
    data = bytes((i * 7 + seed) & 0xFF for i in range(n_frames * 4))
    hdr = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 1, 2, 44100, 44100 * 4, 4, 16) + b"data" + struct.pack("<I", len(data))
    return hdr + data


class PgDb:
    """The suite's rows on PostgreSQL (the -pg run): sqlite3's execute with ? placeholders,
    committed when the with-block ends."""

    def __init__(self, url):
        import psycopg2  # Debian's python3-psycopg2 (scripts/deps.sh)
        self.c = psycopg2.connect(url)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        (self.c.commit if kind is None else self.c.rollback)()
        self.c.close()

    def execute(self, sql, params=()):
        cur = self.c.cursor()
        cur.execute(sql.replace("?", "%s"), params)
        return cur


def db(srv):
    if srv.env.get("SFA_DATABASE_URL"):
        return PgDb(srv.env["SFA_DATABASE_URL"])
    c = sqlite3.connect(os.path.join(srv.data_dir, "sfa.db"), timeout=10)
    c.execute("PRAGMA foreign_keys=ON")
    return c


def make_track(srv, uid, title="Blinding Lights", artist="The Weeknd", audio=b""):
    tid = str(uuid.uuid4())
    rel = f"downloads/{tid}/the-weeknd-blinding-lights.wav"
    path = os.path.join(srv.data_dir, "uploads", rel)
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(audio or wav_bytes(1000))
    now = int(time.time())
    with db(srv) as c:
        c.execute("INSERT INTO tracks (id, user_id, title, artist, album, source, audio_path, "
                  "audio_format, audio_size, audio_rate, audio_channels, audio_duration, "
                  "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                  (tid, uid, title, artist, "After Hours", "upload", rel, "wav",
                   os.path.getsize(path), 44100, 2, 1.0, now, now))
    return tid, rel, path


def make_stems(srv, uid, tid, sizes, created=None):
    jid = str(uuid.uuid4())
    out = []
    with db(srv) as c:
        for i, (name, size) in enumerate(sizes):
            rel = f"stems/{jid}/{name}.wav"
            path = os.path.join(srv.data_dir, "uploads", rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                block = os.urandom(1 << 20)
                left = size
                while left > 0:
                    f.write(block[:min(left, len(block))])
                    left -= len(block)
            sid = str(uuid.uuid4())
            c.execute("INSERT INTO stems (id, user_id, track_id, job_id, stem_type, file_path, "
                      "file_size, format, duration, engine, model, created_at) "
                      "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                      (sid, uid, tid, jid, name, rel, size, "wav", 1.0, "local", "htdemucs",
                       (created or int(time.time())) + i))
            out.append((sid, rel, path))
    return jid, out


@tap.case
def owner_gets_file_with_validators(srv):
    uid, auth = new_user(srv)
    body = wav_bytes(5000)
    tid, rel, path = make_track(srv, uid, audio=body)
    c = srv.client()
    r = c.get(f"/files/{rel}", headers=auth)
    eq(r.status, 200, "status")
    eq(r.body, body, "bytes")
    eq(r.header("Content-Type"), "audio/wav", "type")
    eq(int(r.header("Content-Length")), len(body), "length")
    eq(r.header("Accept-Ranges"), "bytes", "accept-ranges")
    etag, lm = r.header("ETag"), r.header("Last-Modified")
    check(etag and lm, "validators missing")
    eq(c.get(f"/files/{rel}", headers={**auth, "If-None-Match": etag}).status, 304, "etag")
    eq(c.get(f"/files/{rel}", headers={**auth, "If-Modified-Since": lm}).status, 304, "ims")
    h = c.request("HEAD", f"/files/{rel}", headers=auth)
    eq((h.status, h.body), (200, b""), "HEAD")
    # The track JSON points at the same URL.
    t = c.get(f"/api/tracks/{tid}", headers=auth).json()["data"]
    eq(t["audio"]["url"], f"/files/{rel}", "audio url")
    eq(t["audio"]["file_size"], len(body), "file size")


@tap.case
def ranges(srv):
    uid, auth = new_user(srv)
    body = wav_bytes(3000)
    _, rel, _ = make_track(srv, uid, audio=body)
    c = srv.client()
    n = len(body)
    r = c.get(f"/files/{rel}", headers={**auth, "Range": "bytes=0-9"})
    eq((r.status, r.body, r.header("Content-Range")), (206, body[:10], f"bytes 0-9/{n}"), "first")
    r = c.get(f"/files/{rel}", headers={**auth, "Range": "bytes=-5"})
    eq((r.status, r.body), (206, body[-5:]), "suffix")
    r = c.get(f"/files/{rel}", headers={**auth, "Range": f"bytes={n - 3}-"})
    eq((r.status, r.body, r.header("Content-Range")), (206, body[-3:], f"bytes {n-3}-{n-1}/{n}"),
       "open end")
    r = c.get(f"/files/{rel}", headers={**auth, "Range": f"bytes={n}-"})
    eq((r.status, r.header("Content-Range")), (416, f"bytes */{n}"), "past the end")
    r = c.get(f"/files/{rel}", headers={**auth, "Range": "bytes=0-1,4-5"})
    eq((r.status, len(r.body)), (200, n), "several ranges: whole file")
    r = c.get(f"/files/{rel}", headers={**auth, "Range": "bytes=0-9", "If-Range": '"stale"'})
    eq((r.status, len(r.body)), (200, n), "stale If-Range: whole file")
    etag = c.get(f"/files/{rel}", headers=auth).header("ETag")
    r = c.get(f"/files/{rel}", headers={**auth, "Range": "bytes=0-9", "If-Range": etag})
    eq(r.status, 206, "fresh If-Range")


@tap.case
def others_and_traversal_get_404(srv):
    uid, auth = new_user(srv)
    _, other = new_user(srv)
    _, rel, path = make_track(srv, uid)
    c = srv.client()
    eq(c.get(f"/files/{rel}", headers=other).status, 404, "another user's file")
    eq(c.get(f"/files/{rel}").status, 401, "no credentials")
    for bad in ["/files/../sfa.db", "/files/downloads/..%2F..%2Fsfa.db", "/files/%2e%2e/sfa.db",
                f"/files/{rel}%00", "/files/secret.key", "/files/downloads", "/files/..",
                "/files/downloads/./x", "/files/downloads/%2e/x"]:
        r = c.get(bad, headers=auth)
        eq(r.status, 404, f"{bad}")
        check(srv.data_dir not in r.text, "a server path leaked")
    # A symlink out of the data directory is never followed, even when a row names it.
    tid2, _, _ = make_track(srv, uid)
    jid = str(uuid.uuid4())
    link_rel = f"stems/{jid}/vocals.wav"
    link = os.path.join(srv.data_dir, "uploads", link_rel)
    os.makedirs(os.path.dirname(link))
    os.symlink(os.path.join(srv.data_dir, "secret.key"), link)
    with db(srv) as d:
        d.execute("INSERT INTO stems VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                  (str(uuid.uuid4()), uid, tid2, jid, "vocals", link_rel, 10, "wav", 1.0,
                   "local", "htdemucs", int(time.time())))
    r = c.get(f"/files/{link_rel}", headers=auth)
    eq(r.status, 404, "symlink")


@tap.case
def export_one_stem(srv):
    uid, auth = new_user(srv)
    tid, _, _ = make_track(srv, uid)
    _, stems = make_stems(srv, uid, tid, [("vocals", 1000), ("drums", 2000)])
    c = srv.client()
    r = c.get(f"/export/stem/{stems[1][0]}", headers=auth)
    eq(r.status, 200, "status")
    eq(len(r.body), 2000, "bytes")
    cd = r.header("Content-Disposition")
    check('filename="The Weeknd - Blinding Lights (drums).wav"' in cd, cd)
    _, other = new_user(srv)
    eq(c.get(f"/export/stem/{stems[1][0]}", headers=other).status, 404, "another user")
    eq(c.get(f"/export/stem/{uuid.uuid4()}", headers=auth).status, 404, "missing")
    eq(c.get(f"/export/stem/{stems[1][0]}").status, 401, "no credentials")


@tap.case
def export_stems_zip_and_job_choice(srv):
    uid, auth = new_user(srv)
    tid, _, _ = make_track(srv, uid)
    c = srv.client()
    r = c.get(f"/export/stems/{tid}", headers=auth)
    eq(r.status, 404, "no stems yet")
    old_job, old = make_stems(srv, uid, tid, [("vocals", 3000), ("other", 100)],
                              created=int(time.time()) - 100)
    new_job, new = make_stems(srv, uid, tid, [("vocals", 5000), ("drums", 6000), ("bass", 7),
                                              ("other", 0)])
    for job, stems in ((None, new), (old_job, old), (new_job, new)):
        q = f"?job_id={job}" if job else ""
        r = c.get(f"/export/stems/{tid}{q}", headers=auth)
        eq(r.status, 200, "zip status")
        eq(r.header("Content-Type"), "application/zip", "type")
        with tempfile.NamedTemporaryFile(suffix=".zip") as f:
            f.write(r.body)
            f.flush()
            t = subprocess.run(["unzip", "-t", f.name], capture_output=True, text=True)
            eq(t.returncode, 0, t.stdout + t.stderr)
            z = zipfile.ZipFile(f.name)
            names = z.namelist()
            want = [f"The Weeknd - Blinding Lights ({os.path.basename(rel)[:-4]}).wav"
                    for _, rel, _ in stems]
            eq(names, want, "entry names")
            for (_, _, path), name in zip(stems, names):
                with open(path, "rb") as src:
                    eq(z.read(name), src.read(), f"content of {name}")
    eq(c.get(f"/export/stems/{tid}?job_id={uuid.uuid4()}", headers=auth).status, 404, "no job")


@tap.case
def zip_of_200mb_streams_in_constant_memory(srv):
    uid, auth = new_user(srv)
    tid, _, _ = make_track(srv, uid)
    mb = 1 << 20
    _, stems = make_stems(srv, uid, tid, [(n, 50 * mb) for n in
                                          ("vocals", "drums", "bass", "other")])
    before = peak_rss_kb(srv.proc.pid)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    conn.request("GET", f"/export/stems/{tid}", headers=auth)
    r = conn.getresponse()
    eq(r.status, 200, "status")
    with tempfile.NamedTemporaryFile(suffix=".zip") as f:
        total = 0
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            total += len(chunk)
            f.write(chunk)
        f.flush()
        check(total > 200 * mb, f"archive is only {total} bytes")
        t = subprocess.run(["unzip", "-t", f.name], capture_output=True, text=True)
        eq(t.returncode, 0, t.stdout[-500:] + t.stderr)
    after = peak_rss_kb(srv.proc.pid)
    grew = (after - before) / 1024
    print(f"# server peak RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB while "
          f"streaming {total / mb:.0f} MiB")
    # Constant memory: the 200 MiB never sit in the server (a sanitizer build's allocator
    # quarantine accounts for most of the allowance).
    check(grew < 32, f"the server's peak memory grew by {grew:.1f} MiB")


@tap.case
def analysis_export_and_track_summary(srv):
    uid, auth = new_user(srv)
    tid, _, _ = make_track(srv, uid)
    c = srv.client()
    r = c.get(f"/export/analysis/{tid}", headers=auth)
    eq(r.status, 404, "before analysis")
    check("analyze" in r.json()["error"], r.text)
    result = {"tempo": 128.0, "key": "A minor", "energy": 0.74, "spectral_centroid": 1823.4,
              "features": {"mfcc": [[1, 2]], "chroma": [[0.5]]}, "beats": [0.5, 1.0]}
    with db(srv) as d:
        d.execute("INSERT INTO analyses (user_id, track_id, job_id, result, created_at) "
                  "VALUES (?,?,?,?,?)", (uid, tid, str(uuid.uuid4()), json.dumps(result),
                                         int(time.time())))
    r = c.get(f"/export/analysis/{tid}", headers=auth)
    eq(r.status, 200, "after analysis")
    eq(r.json(), {"track_id": tid, "title": "Blinding Lights", "artist": "The Weeknd",
                  "analysis": result}, "export body")
    t = c.get(f"/api/tracks/{tid}", headers=auth).json()["data"]
    eq(t["analysis"], {"tempo": 128.0, "key": "A minor", "energy": 0.74,
                       "spectral_centroid": 1823.4}, "summary without per-frame data")
    _, other = new_user(srv)
    eq(c.get(f"/export/analysis/{tid}", headers=other).status, 404, "another user")


@tap.case
def delete_track_removes_files_rows_and_jobs(srv):
    uid, auth = new_user(srv)
    tid, rel, path = make_track(srv, uid)
    _, stems = make_stems(srv, uid, tid, [("vocals", 100), ("drums", 100)])
    c = srv.client()
    t = c.get(f"/api/tracks/{tid}", headers=auth).json()["data"]
    eq([s["stem_type"] for s in t["stems"]], ["vocals", "drums"], "stems listed")
    eq(c.get("/api/tracks", headers=auth).json()["meta"]["total_count"], 1, "listed")
    _, other = new_user(srv)
    eq(c.request("DELETE", f"/api/tracks/{tid}", headers=other).status, 404, "not the owner")
    r = c.request("DELETE", f"/api/tracks/{tid}", headers=auth)
    eq(r.status, 204, "delete")
    check(not os.path.exists(path), "the audio file is still there")
    for _, _, p in stems:
        check(not os.path.exists(p), f"{p} is still there")
    eq(c.get(f"/api/tracks/{tid}", headers=auth).status, 404, "gone")
    eq(c.get(f"/files/{rel}", headers=auth).status, 404, "file gone")
    with db(srv) as d:
        eq(d.execute("SELECT count(*) FROM stems WHERE track_id = ?", (tid,)).fetchone()[0], 0,
           "stem rows")


@tap.case
def track_search_and_patch(srv):
    uid, auth = new_user(srv)
    a, _, _ = make_track(srv, uid, title="Midnight City", artist="M83")
    make_track(srv, uid, title="Around the World", artist="Daft Punk")
    make_track(srv, uid, title="100% Pure", artist="Someone")
    c = srv.client()
    eq([t["title"] for t in c.get("/api/tracks?q=daft", headers=auth).json()["data"]],
       ["Around the World"], "search by artist")
    eq([t["title"] for t in c.get("/api/tracks?q=100%25", headers=auth).json()["data"]],
       ["100% Pure"], "a literal %")
    r = c.get("/api/tracks?page_size=2&page=2", headers=auth).json()
    eq(r["meta"], {"page": 2, "page_size": 2, "total_count": 3, "total_pages": 2}, "paging")
    # Sorted by the server across pages: page 2 of the titles holds the last one.
    eq([t["title"] for t in c.get("/api/tracks?sort=title&page_size=2&page=2",
                                  headers=auth).json()["data"]], ["Midnight City"], "by title")
    eq([t["artist"] for t in c.get("/api/tracks?sort=artist", headers=auth).json()["data"]],
       ["Daft Punk", "M83", "Someone"], "by artist")
    r = c.get("/api/tracks?sort=bpm", headers=auth)
    eq((r.status, list(r.json()["details"])), (422, ["sort"]), "an unknown order")
    r = c.request("PATCH", f"/api/tracks/{a}", headers=auth,
                  json_body={"title": "Midnight City (Remix)", "unknown": 1})
    eq(r.status, 200, "patch")
    eq((r.json()["data"]["title"], r.json()["data"]["artist"]), ("Midnight City (Remix)", "M83"),
       "only the given field changed")
    r = c.request("PATCH", f"/api/tracks/{a}", headers=auth, json_body={"title": ""})
    eq(r.status, 422, "blank title")


def upload(c, auth, fields, files, **kw):
    body, h = multipart(fields, files, **kw)
    return c.request("POST", "/api/tracks", body=body, headers={**auth, **h})


def leftovers(srv):
    """Files left in the upload scratch area and the library folders."""
    found = []
    for sub in ("tmp/uploads", "uploads/downloads"):
        root = os.path.join(srv.data_dir, sub)
        for dirpath, _, files in os.walk(root):
            found += [os.path.join(dirpath, f) for f in files]
    return found


@tap.case
def upload_wav_creates_a_track(srv):
    uid, auth = new_user(srv)
    c = srv.client()
    before = leftovers(srv)
    data = sine_wav(1.5)
    r = upload(c, auth, {"title": "Sine Song", "artist": "Test Tones", "album": "Lab"},
               {"file": ("take 1.wav", data)})
    eq(r.status, 201, r.text)
    t = r.json()["data"]
    eq(r.header("Location"), f"/api/tracks/{t['id']}", "Location")
    eq((t["title"], t["artist"], t["album"], t["source"]), ("Sine Song", "Test Tones", "Lab",
                                                             "upload"), "fields")
    a = t["audio"]
    eq(a["url"], f"/files/downloads/{t['id']}/test-tones-sine-song.wav", "url")
    eq((a["format"], a["sample_rate"], a["channels"], a["file_size"]), ("wav", 44100, 2,
                                                                        len(data)), "audio")
    check(abs(a["duration"] - 1.5) < 0.01, f"duration {a['duration']}")
    eq(t["duration"], 2, "whole seconds, rounded")
    eq(c.get(a["url"], headers=auth).body, data, "the stored file is the upload")
    eq(len(leftovers(srv)), len(before) + 1, "exactly one new file")


@tap.case
def upload_mp3_takes_tags_then_filename(srv):
    uid, auth = new_user(srv)
    c = srv.client()
    with tempfile.TemporaryDirectory() as d:
        wav = os.path.join(d, "in.wav")
        with open(wav, "wb") as f:
            f.write(sine_wav(1.0))
        mp3 = os.path.join(d, "out.mp3")
        p = subprocess.run(["ffmpeg", "-loglevel", "error", "-i", wav, "-metadata",
                            "title=Tagged Title", "-metadata", "artist=Tag Artist", "-b:a",
                            "128k", mp3], capture_output=True, text=True)
        eq(p.returncode, 0, f"ffmpeg (needed to make the test file): {p.stderr}")
        with open(mp3, "rb") as f:
            mp3_bytes = f.read()
    r = upload(c, auth, {}, {"file": ("whatever.mp3", mp3_bytes)})
    eq(r.status, 201, r.text)
    t = r.json()["data"]
    eq((t["title"], t["artist"], t["audio"]["format"]), ("Tagged Title", "Tag Artist", "mp3"),
       "from the tags")
    r = upload(c, auth, {}, {"file": ("My Demo (final).wav", sine_wav(0.5))})
    eq(r.status, 201, r.text)
    eq(r.json()["data"]["title"], "My Demo (final)", "from the file name")
    eq(r.json()["data"]["audio"]["url"].rsplit("/", 1)[1], "my-demo-final.wav", "slug")


@tap.case
def bad_uploads_leave_nothing(srv):
    uid, auth = new_user(srv)
    c = srv.client()
    before = sorted(leftovers(srv))
    n_tracks = c.get("/api/tracks", headers=auth).json()["meta"]["total_count"]
    r = upload(c, auth, {}, {"file": ("notes.txt", b"this is not audio at all\n" * 100)})
    eq((r.status, r.json()["code"]), (422, "invalid_audio"), "text file")
    check("not audio" in r.json()["error"], r.text)
    r = upload(c, auth, {}, {"file": ("empty.wav", b"")})
    eq((r.status, r.json()["code"]), (422, "invalid_audio"), "empty file")
    r = upload(c, auth, {"title": "x"}, {})
    eq((r.status, r.json()["details"]), (422, {"file": ["can't be blank"]}), "no file")
    r = upload(c, auth, {}, {"file": ("cut.wav", sine_wav(2.0)[:20000])})
    eq((r.status, r.json()["code"]), (422, "invalid_audio"), "truncated wav")
    body, h = multipart({}, {"file": ("a.wav", sine_wav(0.2))})
    r = c.request("POST", "/api/tracks", body=body[:-30], headers={**auth, **h})
    eq(r.status, 400, "body cut before the closing boundary")
    r = c.request("POST", "/api/tracks", json_body={"file": "x"}, headers=auth)
    eq(r.status, 415, "JSON instead of multipart")
    r = upload(c, auth, {}, {"file": ("big.wav", b"\0" * (6 << 20))})
    eq((r.status, r.json()["code"]), (413, "payload_too_large"), "over SFA_MAX_UPLOAD_MB")
    r = upload(c, {}, {}, {"file": ("a.wav", sine_wav(0.2))})
    eq(r.status, 401, "no credentials")
    settles(lambda: sorted(leftovers(srv)), before, "files left behind")
    eq(c.get("/api/tracks", headers=auth).json()["meta"]["total_count"], n_tracks, "rows")


@tap.case
def browser_upload_needs_csrf_header(srv):
    c = srv.client()
    email = f"up-{uuid.uuid4().hex[:8]}@example.com"
    eq(c.register(email, PW).status, 302, "register")
    r = upload(c, {}, {}, {"file": ("a.wav", sine_wav(0.2))})
    eq(r.status, 403, "session upload without x-csrf-token")
    token = c.csrf("/")
    r = upload(c, {"x-csrf-token": token}, {}, {"file": ("a.wav", sine_wav(0.2))})
    eq(r.status, 201, "with the token")


@tap.case
def probe_job_decodes_an_uploaded_track(srv):
    email = f"probe-{uuid.uuid4().hex[:8]}@example.com"
    srv.cli("user", "create", "--email", email, "--password", PW)
    auth = {"Authorization": "Bearer " + srv.cli("token", "create", "--email",
                                                 email).stdout.strip()}
    c = srv.client()
    t = upload(c, auth, {}, {"file": ("tone.wav", sine_wav(1.0, rate=22050, channels=1))})
    tid = t.json()["data"]["id"]
    jid = srv.cli("job", "enqueue", "--email", email, "--type", "probe", "--track", tid,
                  "--payload", "{}").stdout.strip()
    deadline = time.time() + 20
    while time.time() < deadline:
        j = c.get(f"/api/jobs/{jid}", headers=auth).json()["data"]
        if j["status"] in ("completed", "failed"):
            break
        time.sleep(0.1)
    eq(j["status"], "completed", j.get("error"))
    eq((j["track_id"], j["result"]["audio"]["sample_rate"], j["result"]["audio"]["channels"]),
       (tid, 22050, 1), "probe result")


def clicks_wav(bpm=120.0, seconds=8.0, rate=22050):
    n = int(seconds * rate)
    period = 60.0 / bpm
    samples = [0] * n
    t = 0.0
    while t < seconds:
        start = int(t * rate)
        for k in range(200):
            if start + k < n:
                samples[start + k] = int(20000 * (1 - k / 200) * (1 if k % 2 else -1))
        t += period
    frames = b"".join(struct.pack("<h", v) for v in samples)
    return b"RIFF" + struct.pack("<I", 36 + len(frames)) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" + struct.pack("<I", len(frames)) \
        + frames


@tap.case
def analysis_job_end_to_end(srv):
    uid, auth = new_user(srv)
    c = srv.client()
    tid = upload(c, auth, {"title": "Clicks"}, {"file": ("clicks.wav", clicks_wav())}) \
        .json()["data"]["id"]
    r = c.request("POST", "/api/analysis/analyze", headers=auth,
                  json_body={"track_id": tid, "features": ["tempo", "key", "energy"]})
    eq(r.status, 201, r.text)
    d = r.json()["data"]
    eq((d["track_id"], d["status"]), (tid, "queued"), "enqueued")
    eq(r.header("Location"), f"/api/analysis/job/{d['job_id']}", "Location")
    deadline = time.time() + 30
    while time.time() < deadline:
        j = c.get(f"/api/analysis/job/{d['job_id']}", headers=auth).json()["data"]
        if j["status"] in ("completed", "failed"):
            break
        time.sleep(0.1)
    eq(j["status"], "completed", j.get("error"))
    res = j["result"]
    check(abs(res["tempo"] - 120) <= 120 * 0.04, f"tempo {res['tempo']}")
    check(isinstance(res.get("tempo_confidence"), float) and 0.0 <= res["tempo_confidence"] <= 1.0,
          f"tempo_confidence {res.get('tempo_confidence')}")
    check("features" not in res and "spectral_centroid" not in res, "unrequested features")
    check(isinstance(res["energy"], float), "energy")
    check(res["beats"] and all(b2 > b1 for b1, b2 in zip(res["beats"], res["beats"][1:])),
          "beats")
    exp = c.get(f"/export/analysis/{tid}", headers=auth).json()
    eq(exp["analysis"], res, "export equals the job result")
    summary = c.get(f"/api/tracks/{tid}", headers=auth).json()["data"]["analysis"]
    eq(summary["tempo"], res["tempo"], "track summary")
    r = c.request("POST", "/api/analysis/analyze", headers=auth, json_body={"track_id": tid})
    j2 = r.json()["data"]["job_id"]
    deadline = time.time() + 30
    while c.get(f"/api/analysis/job/{j2}", headers=auth).json()["data"]["status"] != "completed":
        check(time.time() < deadline, "default (all features) analysis did not finish")
        time.sleep(0.1)
    full = c.get(f"/api/analysis/job/{j2}", headers=auth).json()["data"]["result"]
    eq(len(full["features"]["mfcc"]), 13, "13 MFCC rows")
    eq(len(full["features"]["chroma"]), 12, "12 chroma rows")
    eq(len(full["features"]["mfcc"][0]), 16, "2 columns per second for 8 s")
    eq(sorted(full["loudness"]), ["integrated_lufs", "range_lu", "true_peak_dbtp"], "loudness")
    check(-70 < full["loudness"]["integrated_lufs"] < 0, f"loudness {full['loudness']}")


@tap.case
def analysis_validation(srv):
    uid, auth = new_user(srv)
    c = srv.client()
    tid = upload(c, auth, {}, {"file": ("a.wav", sine_wav(0.5))}).json()["data"]["id"]
    r = c.request("POST", "/api/analysis/analyze", headers=auth,
                  json_body={"track_id": tid, "features": ["tempo", "bpm", 3]})
    eq(r.status, 422, "unknown features")
    eq(sorted(r.json()["details"]), ["features[1]", "features[2]"], "details by JSON path")
    r = c.request("POST", "/api/analysis/analyze", headers=auth, json_body={})
    eq((r.status, list(r.json()["details"])), (422, ["track_id"]), "no track")
    r = c.request("POST", "/api/analysis/analyze", headers=auth,
                  json_body={"track_id": str(uuid.uuid4())})
    eq(r.status, 404, "unknown track")
    _, other = new_user(srv)
    r = c.request("POST", "/api/analysis/analyze", headers=other, json_body={"track_id": tid})
    eq(r.status, 404, "another user's track")
    bare = str(uuid.uuid4())
    with db(srv) as d:
        d.execute("INSERT INTO tracks (id, user_id, spotify_id, title, source, created_at, "
                  "updated_at) VALUES (?,?,?,?,?,?,?)", (bare, uid, "4uLU6hMCjMI75M1A2tKUQC",
                                                         "No Audio Yet", "spotify", 1, 1))
    r = c.request("POST", "/api/analysis/analyze", headers=auth, json_body={"track_id": bare})
    eq((r.status, r.json()["code"]), (409, "audio_not_ready"), "no audio")
    eq(c.get(f"/api/analysis/job/{uuid.uuid4()}", headers=auth).status, 404, "unknown job")


@tap.case
def heavy_bucket_limits_the_11th(srv):
    uid, auth = new_user(srv)
    c = srv.client()
    tid = upload(c, auth, {}, {"file": ("a.wav", sine_wav(0.3))}).json()["data"]["id"]
    for i in range(10):
        r = c.request("POST", "/api/analysis/analyze", headers=auth, json_body={"track_id": tid})
        eq(r.status, 201, f"request {i + 1}")
    eq(r.header("X-RateLimit-Limit"), "10", "heavy limit header")
    r = c.request("POST", "/api/analysis/analyze", headers=auth, json_body={"track_id": tid})
    eq((r.status, r.json()["code"]), (429, "rate_limited"), "the 11th")
    eq(c.get("/api/me", headers=auth).status, 200, "the api bucket still has room")


if __name__ == "__main__":
    sys.exit(run_suite(tap, {"SFA_RATE_API": "100000", "SFA_MAX_UPLOAD_MB": "5"}))
