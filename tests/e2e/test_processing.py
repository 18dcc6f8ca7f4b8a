#!/usr/bin/python3
"""End-to-end tests of stem separation through the API, with the native Demucs engine.

A tiny HTDemucs checkpoint in the official file format (random weights, from the
reference data in tests/fixtures/nn) is installed under htdemucs's signature, exactly as
`sfa models fetch` would place the real one. Upload -> separate -> stems downloadable,
each as long as the input; plus the validation and model errors of the contract.
"""
import io
import math
import os
import shutil
import struct
import sys
import time
import uuid
import wave
import zipfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import Server, Tap, check, eq, ffprobe, multipart, run_suite, sine_wav  # noqa: E402

tap = Tap()
PW = "correct horse battery"
FIXTURES = os.environ.get("SFA_FIXTURES",
                          os.path.join(os.path.dirname(__file__), "..", "fixtures"))
TINY = os.path.join(FIXTURES, "nn", "tiny_htdemucs.th")
HTDEMUCS_SIG = "955717e8"  # the single member of the official htdemucs bag


def new_user(srv):
    email = f"sep-{uuid.uuid4().hex[:10]}@example.com"
    srv.cli("user", "create", "--email", email, "--password", PW)
    key = srv.cli("token", "create", "--email", email).stdout.strip()
    return {"Authorization": f"Bearer {key}"}


def upload(srv, auth, seconds=1.0):
    body, h = multipart({"title": "Tone", "artist": "Lab"},
                        {"file": ("tone.wav", sine_wav(seconds))})
    r = srv.client().request("POST", "/api/tracks", body=body, headers={**auth, **h})
    eq(r.status, 201, r.text)
    return r.json()["data"]


def separate(c, auth, **body):
    return c.request("POST", "/api/processing/separate", headers=auth, json_body=body)


def models_dir(srv):
    return os.path.join(srv.data_dir, "models")


@tap.case
def models_listing_and_install_state(srv):
    auth = new_user(srv)
    c = srv.client()
    r = c.get("/api/processing/models", headers=auth)
    eq(r.status, 200, "status")
    models = {m["name"]: m for m in r.json()["data"]["models"]}
    eq(list(models), ["htdemucs", "htdemucs_ft", "htdemucs_6s", "mdx_extra"], "the four")
    eq((models["htdemucs_6s"]["stems"], models["htdemucs_6s"]["stem_names"]),
       (6, ["drums", "bass", "other", "vocals", "guitar", "piano"]), "6 stems")
    eq(models["htdemucs"]["installed"], False, "nothing installed yet")
    track = upload(srv, auth)
    r = separate(c, auth, track_id=track["id"])
    eq((r.status, r.json()["code"]), (422, "model_not_installed"), "not installed")
    check("sfa models fetch htdemucs" in r.json()["error"], r.text)


@tap.case
def separate_end_to_end(srv):
    check(os.path.exists(TINY), f"missing test fixture {TINY}")
    os.makedirs(models_dir(srv), exist_ok=True)
    shutil.copy(TINY, os.path.join(models_dir(srv), f"{HTDEMUCS_SIG}.th"))
    auth = new_user(srv)
    c = srv.client()
    eq({m["name"]: m["installed"] for m in
        c.get("/api/processing/models", headers=auth).json()["data"]["models"]}["htdemucs"],
       True, "installed now")
    track = upload(srv, auth, seconds=1.0)
    r = separate(c, auth, track_id=track["id"], model="htdemucs")
    eq(r.status, 201, r.text)
    d = r.json()["data"]
    eq((d["track_id"], d["model"], d["status"]), (track["id"], "htdemucs", "queued"), "enqueued")
    seen = set()
    deadline = time.time() + 60
    while time.time() < deadline:
        j = c.get(f"/api/processing/job/{d['job_id']}", headers=auth).json()["data"]
        seen.add(j["progress"])
        if j["status"] in ("completed", "failed"):
            break
        time.sleep(0.05)
    eq(j["status"], "completed", j.get("error"))
    eq(j["model"], "htdemucs", "model")
    stems = j["stems"]
    eq([s["stem_type"] for s in stems], ["drums", "bass", "other", "vocals"], "stems")
    n_in = 44100
    for s in stems:
        eq((s["engine"], s["format"]), ("local", "wav"), "engine/format")
        check(s["file_path"].startswith(f"/files/stems/{d['job_id']}/"), s["file_path"])
        f = c.get(s["file_path"], headers=auth)
        eq(f.status, 200, f"download {s['stem_type']}")
        w = wave.open(io.BytesIO(f.body))
        eq((w.getnframes(), w.getnchannels(), w.getframerate()), (n_in, 2, 44100),
           f"{s['stem_type']} has the input's length")
    z = c.get(f"/export/stems/{track['id']}", headers=auth)
    eq(z.status, 200, "zip")
    names = zipfile.ZipFile(io.BytesIO(z.body)).namelist()
    eq(names, [f"Lab - Tone ({s}).wav" for s in ("drums", "bass", "other", "vocals")], "zip")
    t = c.get(f"/api/tracks/{track['id']}", headers=auth).json()["data"]
    eq(len(t["stems"]), 4, "track shows its stems")
    # A second separation keeps the first one's stems intact.
    r2 = separate(c, auth, track_id=track["id"], output_format="flac")
    j2 = r2.json()["data"]["job_id"]
    deadline = time.time() + 60
    while c.get(f"/api/processing/job/{j2}", headers=auth).json()["data"]["status"] not in (
            "completed", "failed"):
        check(time.time() < deadline, "second separation did not finish")
        time.sleep(0.05)
    j2d = c.get(f"/api/processing/job/{j2}", headers=auth).json()["data"]
    eq([s["format"] for s in j2d["stems"]], ["flac"] * 4, "flac stems")
    for s in stems:
        eq(c.get(s["file_path"], headers=auth).status, 200, "the earlier stems remain")


def wait_sep(c, auth, jid):
    deadline = time.time() + 60
    while True:
        j = c.get(f"/api/processing/job/{jid}", headers=auth).json()["data"]
        if j["status"] in ("completed", "failed"):
            return j
        check(time.time() < deadline, f"separation {jid} did not finish")
        time.sleep(0.05)


def pcm16(c, auth, url):
    w = wave.open(io.BytesIO(c.get(url, headers=auth).body))
    raw = w.readframes(w.getnframes())
    return struct.unpack(f"<{len(raw) // 2}h", raw)


def f32(c, auth, url):
    """The samples of a 32-bit float WAV (format 3; Python's wave module reads PCM only)."""
    data = c.get(url, headers=auth).body
    at = 12
    while data[at:at + 4] != b"data":
        at += 8 + struct.unpack("<I", data[at + 4:at + 8])[0]
    n = struct.unpack("<I", data[at + 4:at + 8])[0]
    return struct.unpack(f"<{n // 4}f", data[at + 8:at + 8 + n])


@tap.case
def two_stems_are_the_stem_and_its_complement(srv):
    """two_stems=vocals gives vocals (the same as a full separation's) and no_vocals, the
    sum of drums, bass and other (within the rounding of three 16-bit files)."""
    os.makedirs(models_dir(srv), exist_ok=True)
    shutil.copy(TINY, os.path.join(models_dir(srv), f"{HTDEMUCS_SIG}.th"))
    auth = new_user(srv)
    c = srv.client()
    track = upload(srv, auth, seconds=1.0)
    full = wait_sep(c, auth, separate(c, auth, track_id=track["id"]).json()["data"]["job_id"])
    r = separate(c, auth, track_id=track["id"], two_stems="vocals")
    eq(r.status, 201, r.text)
    two = wait_sep(c, auth, r.json()["data"]["job_id"])
    eq(two["status"], "completed", two.get("error"))
    eq([s["stem_type"] for s in two["stems"]], ["vocals", "no_vocals"], "the two stems")
    by = {s["stem_type"]: pcm16(c, auth, s["file_path"]) for s in full["stems"]}
    got = {s["stem_type"]: pcm16(c, auth, s["file_path"]) for s in two["stems"]}
    eq(got["vocals"], by["vocals"], "vocals equal the full separation's")
    # Where the sum passes full scale, the one 16-bit file clips it where three did not.
    worst = max(abs(n - max(-32768, min(32767, d + b + o))) for n, d, b, o in
                zip(got["no_vocals"], by["drums"], by["bass"], by["other"]))
    check(worst <= 2, f"no_vocals differs from drums+bass+other by {worst} LSB")
    check(len(got["no_vocals"]) == len(by["drums"]), "no_vocals has the input's length")
    # In float, without the three roundings: within 1 LSB of 16-bit.
    full = wait_sep(c, auth, separate(c, auth, track_id=track["id"], output_format="f32")
                    .json()["data"]["job_id"])
    two = wait_sep(c, auth, separate(c, auth, track_id=track["id"], two_stems="vocals",
                                     output_format="f32").json()["data"]["job_id"])
    by = {s["stem_type"]: f32(c, auth, s["file_path"]) for s in full["stems"]}
    nv = f32(c, auth, next(s["file_path"] for s in two["stems"] if s["stem_type"] == "no_vocals"))
    worst = max(abs(n - (d + b + o)) for n, d, b, o in zip(nv, by["drums"], by["bass"],
                                                          by["other"]))
    check(worst <= 1 / 32768, f"no_vocals differs from drums+bass+other by {worst * 32768:.3f} LSB")
    # FLAC too, and the refusals.
    r = separate(c, auth, track_id=track["id"], two_stems="drums", output_format="flac")
    j = wait_sep(c, auth, r.json()["data"]["job_id"])
    eq([(s["stem_type"], s["format"]) for s in j["stems"]],
       [("drums", "flac"), ("no_drums", "flac")], "flac two stems")
    # 24-bit and float WAV.
    for fmt, (code, bits) in (("wav24", (1, 24)), ("f32", (3, 32))):
        j = wait_sep(c, auth, separate(c, auth, track_id=track["id"], output_format=fmt,
                                       two_stems="bass").json()["data"]["job_id"])
        eq(j["status"], "completed", j.get("error"))
        head = c.get(j["stems"][0]["file_path"], headers=auth).body[:64]
        eq(struct.unpack("<HHIIHH", head[20:36])[0::5], (code, bits), f"{fmt} WAV header")
    # MP3 at 320 kbit/s, as ffprobe sees it.
    j = wait_sep(c, auth, separate(c, auth, track_id=track["id"], output_format="mp3")
                 .json()["data"]["job_id"])
    eq(j["status"], "completed", j.get("error"))
    eq(sorted((s["stem_type"], s["format"]) for s in j["stems"]),
       [(n, "mp3") for n in ("bass", "drums", "other", "vocals")], "mp3 stems")
    r = c.get(j["stems"][0]["file_path"], headers=auth)
    eq((r.status, r.header("Content-Type")), (200, "audio/mpeg"), "served as MP3")
    info = ffprobe(r.body, ".mp3",
                   "stream=codec_name,sample_rate,channels,bit_rate:format=duration")
    s = info["streams"][0]
    eq((s["codec_name"], s["sample_rate"], s["channels"], s["bit_rate"]),
       ("mp3", "44100", 2, "320000"), "ffprobe")
    check(abs(float(info["format"]["duration"]) - 1.0) < 0.06, f"duration {info['format']}")
    r = separate(c, auth, track_id=track["id"], output_format="f32", engine="lalalai")
    eq((r.status, r.json()["details"]["output_format"]),
       (422, ["must be wav, flac or mp3 with the lalalai engine"]), r.text)
    r = separate(c, auth, track_id=track["id"], two_stems="guitar")
    eq((r.status, list(r.json()["details"])), (422, ["two_stems"]), r.text)
    check("drums,bass,other,vocals" in r.json()["details"]["two_stems"][0], r.text)
    r = separate(c, auth, track_id=track["id"], two_stems="vocals", engine="lalalai")
    eq((r.status, r.json()["details"]["two_stems"]), (422, ["is for the local engine only"]),
       r.text)


@tap.case
def mdx_extra_bag_end_to_end(srv):
    """The four-member Hybrid Demucs bag, installed from the tiny HDemucs checkpoints in
    the release order (CaC, hybrid_old magnitude, magnitude, CaC)."""
    members = [("e51eebcc", "tiny_hdemucs_cac.th"), ("a1d90b5c", "tiny_hdemucs_mag_old.th"),
               ("5d2d6c55", "tiny_hdemucs_mag.th"), ("cfa93e08", "tiny_hdemucs_cac.th")]
    os.makedirs(models_dir(srv), exist_ok=True)
    for sig, name in members:
        src = os.path.join(FIXTURES, "nn", name)
        check(os.path.exists(src), f"missing test fixture {src}")
        shutil.copy(src, os.path.join(models_dir(srv), f"{sig}.th"))
    auth = new_user(srv)
    c = srv.client()
    listed = {m["name"]: m["installed"] for m in
              c.get("/api/processing/models", headers=auth).json()["data"]["models"]}
    eq(listed["mdx_extra"], True, "mdx_extra installed")
    track = upload(srv, auth, seconds=0.5)
    r = separate(c, auth, track_id=track["id"], model="mdx_extra")
    eq(r.status, 201, r.text)
    jid = r.json()["data"]["job_id"]
    deadline = time.time() + 90
    while time.time() < deadline:
        j = c.get(f"/api/processing/job/{jid}", headers=auth).json()["data"]
        if j["status"] in ("completed", "failed"):
            break
        time.sleep(0.1)
    eq(j["status"], "completed", j.get("error"))
    eq([s["stem_type"] for s in j["stems"]], ["drums", "bass", "other", "vocals"], "stems")
    for s in j["stems"]:
        w = wave.open(io.BytesIO(c.get(s["file_path"], headers=auth).body))
        eq(w.getnframes(), 22050, f"{s['stem_type']} has the input's length")


@tap.case
def separate_validation(srv):
    auth = new_user(srv)
    c = srv.client()
    track = upload(srv, auth)
    r = separate(c, auth, track_id=track["id"], model="spleeter", engine="cloud",
                 output_format="ogg")
    eq(r.status, 422, "bad values")
    eq(sorted(r.json()["details"]), ["engine", "model", "output_format"], "every field named")
    r = separate(c, auth, track_id=track["id"], model="htdemucs_6s")
    eq((r.status, r.json()["code"]), (422, "model_not_installed"), "a model not installed")
    r = separate(c, auth, track_id=track["id"], engine="lalalai")
    eq((r.status, r.json()["code"]), (503, "not_configured"), "lal.ai without a key")
    r = separate(c, auth, track_id=str(uuid.uuid4()))
    eq(r.status, 404, "unknown track")
    other = new_user(srv)
    eq(separate(c, other, track_id=track["id"]).status, 404, "another user's track")
    eq(c.get(f"/api/processing/job/{uuid.uuid4()}", headers=auth).status, 404, "unknown job")


def cpu_has_bf16():
    with open("/proc/cpuinfo") as f:
        return any("avx512_bf16" in line.split() for line in f if line.startswith("flags"))


@tap.case
def precision_bf16(srv):
    """"precision": "bf16" runs the local engine's products in bfloat16: the stems are
    close to the fp32 ones (SNR > 25 dB on the tiny model, derived in tests/nn) but not
    the same bits; anything but fp32/bf16, or bf16 with lal.ai, is a validation error. On a
    CPU without AVX512-BF16 this case fails saying so: the refusal is checked below on a
    server told to act as such a CPU (SFA_CPU_NO_BF16=1)."""
    os.makedirs(models_dir(srv), exist_ok=True)
    shutil.copy(TINY, os.path.join(models_dir(srv), f"{HTDEMUCS_SIG}.th"))
    auth = new_user(srv)
    c = srv.client()
    track = upload(srv, auth, seconds=1.0)
    for bad in ("fp16", "BF16", 16, True):
        r = separate(c, auth, track_id=track["id"], precision=bad)
        eq((r.status, r.json()["code"]), (422, "validation_failed"), f"precision {bad!r}")
        eq(r.json()["details"]["precision"], ["must be fp32 or bf16"], "the sentence")
    r = separate(c, auth, track_id=track["id"], precision="bf16", engine="lalalai")
    eq(r.json()["details"]["precision"], ["bf16 is for the local engine only"], "lal.ai")
    check(cpu_has_bf16(), "this CPU lacks AVX512-BF16: the bf16 separation cannot be tested here")
    ref = wait_sep(c, auth, separate(c, auth, track_id=track["id"], output_format="f32",
                                     precision="fp32").json()["data"]["job_id"])
    r = separate(c, auth, track_id=track["id"], output_format="f32", precision="bf16")
    eq(r.status, 201, r.text)
    got = wait_sep(c, auth, r.json()["data"]["job_id"])
    eq(got["status"], "completed", got.get("error"))
    for a, b in zip(ref["stems"], got["stems"]):
        eq(a["stem_type"], b["stem_type"], "same stems")
        x, y = f32(c, auth, a["file_path"]), f32(c, auth, b["file_path"])
        eq(len(x), len(y), "same length")
        sig = sum(v * v for v in x)
        noise = sum((v - w) ** 2 for v, w in zip(x, y))
        check(noise > 0, f"{a['stem_type']}: bf16 gave the fp32 bits: did it run?")
        snr = 10 * math.log10(sig / noise)
        check(snr > 25, f"{a['stem_type']}: SNR of bf16 against fp32 {snr:.1f} dB")

    no = Server(env={"SFA_CPU_NO_BF16": "1"})
    no.start()
    try:
        os.makedirs(models_dir(no), exist_ok=True)
        shutil.copy(TINY, os.path.join(models_dir(no), f"{HTDEMUCS_SIG}.th"))
        auth = new_user(no)
        c = no.client()
        track = upload(no, auth, seconds=0.5)
        r = separate(c, auth, track_id=track["id"], precision="bf16")
        eq((r.status, r.json()["code"]), (422, "precision_unsupported"), "refused")
        check("AVX512-BF16" in r.json()["error"], r.text)
        eq(separate(c, auth, track_id=track["id"], precision="fp32").status, 201, "fp32 runs")
    finally:
        no.cleanup()


if __name__ == "__main__":
    sys.exit(run_suite(tap, {"SFA_RATE_API": "100000", "SFA_RATE_HEAVY": "100000"}))
