#!/usr/bin/python3
"""End-to-end tests of POST /api/daw/export (API.md §5): the real server mixes uploaded and
stored stems by a manifest, and every mix is compared sample by sample with a reference
mixer written here, independently of the C code, from the spec's rules.

The reference decodes stems with the `ffmpeg` command-line tool (a build dependency):
PCM as x / 32768 and other rates through its soxr resampler, then applies the manifest
with a per-frame gain table (not the C code's block/operation structure) in Python
floats (doubles). Generated stems are 16-bit WAV written here from seeded noise and
tones, mono and stereo, at several rates and lengths.
"""
import http.client
import json
import math
import os
import random
import sqlite3
import struct
import subprocess
import sys
import time
import uuid
from array import array

sys.path.insert(0, os.path.dirname(__file__))
from harness import Server, Tap, check, eq, peak_rss_kb, processes_with, settles  # noqa: E402

tap = Tap()
PW = "correct horse battery"


# ---- stems ---------------------------------------------------------------------------

def wav16(channels, rate, ints):
    """A 16-bit PCM WAV from interleaved ints."""
    data = array("h", ints).tobytes()
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
            + b"data" + struct.pack("<I", len(data)) + data)


def stem(seconds, rate=44100, channels=2, seed=1, amp=0.5, freq=220.0):
    """A tone plus seeded noise: (wav bytes, rate, channels, frames)."""
    rnd = random.Random(seed)
    n = int(round(seconds * rate))
    out = []
    for i in range(n):
        base = amp * 0.7 * math.sin(2 * math.pi * freq * i / rate)
        for c in range(channels):
            v = base * (1 if c == 0 else -0.8) + amp * 0.3 * (rnd.random() * 2 - 1)
            out.append(max(-32768, min(32767, int(round(v * 32767)))))
    return wav16(channels, rate, out), rate, channels, n


def square(seconds, rate=44100, level=0.9, period=100):
    n = int(round(seconds * rate))
    v = int(level * 32767)
    out = []
    for i in range(n):
        s = v if (i // (period // 2)) % 2 == 0 else -v
        out += [s, s]
    return wav16(2, rate, out), rate, 2, n


# ---- the reference mixer --------------------------------------------------------------

def ref_decode(wav, in_rate, channels, n_in, rate, tmpdir):
    """Stereo float lists at rate, as the spec says: mono duplicated, soxr resampling,
    exactly ceil(n_in * rate / in_rate) frames."""
    path = os.path.join(tmpdir, f"ref-{uuid.uuid4().hex}.wav")
    with open(path, "wb") as f:
        f.write(wav)
    args = ["ffmpeg", "-v", "error", "-i", path]
    if rate != in_rate:
        args += ["-af", "aresample=resampler=soxr", "-ar", str(rate)]
    args += ["-f", "f32le", "-c:a", "pcm_f32le", "-"]
    p = subprocess.run(args, capture_output=True)
    os.unlink(path)
    eq(p.returncode, 0, f"ffmpeg (the reference's decoder) failed: {p.stderr[-300:]}")
    v = array("f")
    v.frombytes(p.stdout)
    left = list(v[0::channels])
    right = list(v[1::channels]) if channels > 1 else left[:]
    n = (n_in * rate + in_rate - 1) // in_rate
    left = (left + [0.0] * n)[:n]
    right = (right + [0.0] * n)[:n]
    return left, right


def ref_mix(manifest, sources):
    """sources[i] = (left, right) of manifest stem i at the output rate. Returns (left,
    right, gain) before quantisation, with the normalisation gain."""
    rate = manifest["_rate"]

    def frames(ms):
        x = ms * rate / 1000.0
        f = math.floor(x)
        return f + (1 if x - f >= 0.5 else 0)

    any_solo = any(s.get("solo", False) for s in manifest["stems"])
    clips = []
    n_mix = 0
    for s, (sl, sr) in zip(manifest["stems"], sources):
        n = len(sl)
        g = [1.0] * n
        start, end, pos = 0, n, 0
        for e in s.get("edits", []):
            length = end - start
            t = e["type"]
            if t in ("trim", "gain", "silence"):
                a = start + min(frames(e.get("start_ms", 0)), length)
                b = start + min(frames(e["end_ms"]), length) if "end_ms" in e else end
                b = max(a, b)
                if t == "trim":
                    start, end = a, b
                else:
                    level = e["level"] if t == "gain" else 0.0
                    for f in range(a, b):
                        g[f] *= level
            elif t == "offset":
                pos = frames(e["position_ms"])
            elif t == "fade_in":
                d = frames(e["duration_ms"])
                for i in range(min(d, length)):
                    g[start + i] *= i / d
            elif t == "fade_out":
                d = frames(e["duration_ms"])
                for i in range(min(d, length)):
                    g[end - 1 - i] *= i / d
        vol, pan = s.get("volume", 1.0), s.get("pan", 0.0)
        audible = not s.get("mute", False) and (not any_solo or s.get("solo", False))
        n_mix = max(n_mix, pos + end - start)
        if audible:
            clips.append((sl, sr, g, start, end, pos, vol * (1 - max(pan, 0)),
                          vol * (1 + min(pan, 0))))
    left, right = [0.0] * n_mix, [0.0] * n_mix
    for sl, sr, g, start, end, pos, gl, gr in clips:
        for f in range(start, end):
            t = pos + f - start
            left[t] += sl[f] * g[f] * gl
            right[t] += sr[f] * g[f] * gr
    gain = 1.0
    if manifest.get("normalize"):
        peak = max([abs(x) for x in left + right] or [0.0])
        if peak > 0:
            gain = 10 ** (-1 / 20) / peak
    return left, right, gain


def ref_output(left, right, gain, bits):
    """Interleaved output values and the clipped count."""
    out, clipped = [], 0
    for l, r in zip(left, right):
        for x in (l * gain, r * gain):
            if bits == 32:
                out.append(x)
                continue
            scale = 1 << (bits - 1)
            q = round(x * scale)  # ties to even, like lrint
            if q > scale - 1:
                q, clipped = scale - 1, clipped + 1
            elif q < -scale:
                q, clipped = -scale, clipped + 1
            out.append(q)
    return out, clipped


def parse_wav(body):
    check(body[:4] == b"RIFF" and body[8:12] == b"WAVE", "not a RIFF/WAVE file")
    pos, fmt = 12, None
    while pos + 8 <= len(body):
        cid, size = body[pos:pos + 4], struct.unpack("<I", body[pos + 4:pos + 8])[0]
        if cid == b"fmt ":
            fmt = struct.unpack("<HHIIHH", body[pos + 8:pos + 24])
        if cid == b"data":
            data = body[pos + 8:pos + 8 + size]
            eq(len(data), size, "data chunk length")
            eq(pos + 8 + size, len(body), "nothing after the data chunk")
            break
        pos += 8 + size + (size & 1)
    tag, ch, rate, _, _, bits = fmt
    eq(ch, 2, "channels")
    if bits == 16:
        v = array("h")
        v.frombytes(data)
        vals = list(v)
    elif bits == 24:
        vals = [int.from_bytes(data[i:i + 3], "little", signed=True)
                for i in range(0, len(data), 3)]
    else:
        eq(tag, 3, "float format tag")
        v = array("f")
        v.frombytes(data)
        vals = list(v)
    return rate, bits, vals


# ---- requests --------------------------------------------------------------------------

def new_user(srv):
    email = f"daw-{uuid.uuid4().hex[:10]}@example.com"
    uid = srv.cli("user", "create", "--email", email, "--password", PW).stdout.strip()
    key = srv.cli("token", "create", "--email", email).stdout.strip()
    return uid, {"Authorization": f"Bearer {key}"}


def db(srv):
    c = sqlite3.connect(os.path.join(srv.data_dir, "sfa.db"), timeout=10)
    c.execute("PRAGMA foreign_keys=ON")
    return c


def make_track(srv, uid, title="Blinding Lights", artist="The Weeknd"):
    tid = str(uuid.uuid4())
    now = int(time.time())
    with db(srv) as c:
        c.execute("INSERT INTO tracks (id, user_id, title, artist, album, source, created_at, "
                  "updated_at) VALUES (?,?,?,?,?,?,?,?)",
                  (tid, uid, title, artist, "After Hours", "upload", now, now))
    return tid


def make_stored_stem(srv, uid, tid, wav, name="vocals"):
    jid, sid = str(uuid.uuid4()), str(uuid.uuid4())
    rel = f"stems/{jid}/{name}.wav"
    path = os.path.join(srv.data_dir, "uploads", rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(wav)
    with db(srv) as c:
        c.execute("INSERT INTO stems (id, user_id, track_id, job_id, stem_type, file_path, "
                  "file_size, format, duration, engine, model, created_at) "
                  "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                  (sid, uid, tid, jid, name, rel, len(wav), "wav", 1.0, "local", "htdemucs",
                   int(time.time())))
    return sid


def multipart(fields, files, boundary="sfa-daw-boundary-Q2xpcHM"):
    out = []
    for k, v in fields.items():
        out.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n"
                   .encode() + (v if isinstance(v, bytes) else v.encode()) + b"\r\n")
    for k, name, data in files:
        out.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"; "
                   f"filename=\"{name}\"\r\nContent-Type: audio/wav\r\n\r\n".encode() + data +
                   b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def export(c, auth, track_id, manifest, wavs, extra_files=None):
    fields = {}
    if track_id is not None:
        fields["track_id"] = track_id
    if manifest is not None:
        fields["manifest"] = manifest if isinstance(manifest, (str, bytes)) else \
            json.dumps(manifest)
    files = [("stems[]", f"stem{i}.wav", w) for i, w in enumerate(wavs)] + (extra_files or [])
    body, h = multipart(fields, files)
    return c.request("POST", "/api/daw/export", body=body, headers={**auth, **h})


def check_mix(srv, manifest, stems, srcs=None, auth=None, tid=None, tol_lsb=1):
    """Exports stems (a list of stem() tuples) with manifest and compares the result
    with the reference. srcs maps manifest stems to stems (default: their "file")."""
    if auth is None:
        uid, auth = new_user(srv)
        tid = make_track(srv, uid)
    r = export(srv.client(), auth, tid, manifest, [s[0] for s in stems])
    eq(r.status, 200, r.text[:500])
    rate, bits, got = parse_wav(r.body)
    first = stems[manifest["stems"][0].get("file", 0)] if srcs is None else srcs[0]
    want_rate = manifest.get("sample_rate", first[1])
    eq(rate, want_rate, "sample rate")
    eq(bits, manifest.get("bit_depth", 16), "bit depth")
    m = dict(manifest, _rate=rate)
    sources = []
    for i, s in enumerate(manifest["stems"]):
        wav, in_rate, ch, n = srcs[i] if srcs is not None else stems[s["file"]]
        sources.append(ref_decode(wav, in_rate, ch, n, rate, srv.data_dir))
    left, right, gain = ref_mix(m, sources)
    want, clipped = ref_output(left, right, gain, bits)
    eq(len(got), len(want), "number of samples (the mix length)")
    tol = tol_lsb if bits == 16 else tol_lsb * 256 if bits == 24 else tol_lsb / 32768
    worst = max([abs(a - b) for a, b in zip(got, want)] or [0])
    print(f"# worst difference {worst} (allowed {tol}), {len(got)} samples", flush=True)
    check(worst <= tol, f"differs from the reference by {worst} (allowed {tol})")
    eq(int(r.header("X-SFA-Clipped-Samples")), clipped, "X-SFA-Clipped-Samples")
    return r, got, want


# ---- cases -------------------------------------------------------------------------------

@tap.case
def every_edit_type_matches_the_reference(srv):
    a = stem(1.2, seed=1)
    b = stem(0.8, channels=1, seed=2, freq=330)
    c = stem(1.0, seed=3, freq=110)
    manifest = {"stems": [
        {"file": 0, "volume": 0.8, "pan": 0.0, "edits": [
            {"type": "trim", "start_ms": 100, "end_ms": 1100},
            {"type": "gain", "start_ms": 200, "end_ms": 400.4, "level": 0.25},
            {"type": "fade_in", "duration_ms": 150},
            {"type": "fade_out", "duration_ms": 333.3},
            {"type": "silence", "start_ms": 500, "end_ms": 520.01},
            {"type": "trim", "start_ms": 10},                  # relative to the trimmed clip
        ]},
        {"file": 1, "volume": 1.5, "pan": -1.0, "edits": [
            {"type": "offset", "position_ms": 250.5},
            {"type": "gain", "level": 3.5, "start_ms": 300},
            {"type": "fade_out", "duration_ms": 2000},         # longer than the clip
            {"type": "fade_in", "duration_ms": 1},             # 44 frames: off-by-ones show
        ]},
        {"file": 2, "pan": 1.0, "edits": [
            {"type": "silence", "end_ms": 100},
            {"type": "offset", "position_ms": 900},
            {"type": "trim", "end_ms": 600},
            {"type": "fade_in", "duration_ms": 0.01},
            {"type": "fade_out", "duration_ms": 2},
        ]},
    ]}
    r, got, _ = check_mix(srv, manifest, [a, b, c])
    eq(len(got) // 2, round(0.9 * 44100) + round(0.6 * 44100), "ends with the last clip")
    # Hard pans: the left-panned mono stem is absent from the right channel where it plays
    # alone... and stem 2 (pan 1) puts nothing on the left after the others end.
    tail = got[2 * (round(1.25 * 44100) + 10):]
    check(all(v == 0 for v in tail[0::2]), "a hard right pan leaked into the left channel")
    check(any(v != 0 for v in tail[1::2]), "the right channel is silent")


@tap.case
def solo_and_mute(srv):
    stems = [stem(0.5, seed=s, freq=100 + 50 * s) for s in range(4)]
    for flags in ([{"mute": True}, {}, {}, {}],
                  [{"solo": True}, {}, {"solo": True}, {"mute": True}],
                  [{"solo": True, "mute": True}, {}, {}, {}],
                  [{"mute": True}, {"mute": True}, {"mute": True}, {"mute": True}]):
        manifest = {"stems": [dict(file=i, pan=[-0.5, 0.25, 0, 0.75][i], **f)
                              for i, f in enumerate(flags)]}
        _, got, _ = check_mix(srv, manifest, stems)
        if all(f.get("mute") for f in flags) or flags[0] == {"solo": True, "mute": True}:
            eq(set(got), {0}, "everything silenced")


@tap.case
def sample_rates_lengths_and_mono(srv):
    a = stem(0.7, rate=48000, seed=5)
    b = stem(1.1, rate=22050, channels=1, seed=6)
    c = stem(0.3, rate=44100, seed=7)
    base = [{"file": 0, "volume": 0.5}, {"file": 1, "volume": 0.7, "pan": 0.4},
            {"file": 2, "edits": [{"type": "offset", "position_ms": 1000}]}]
    check_mix(srv, {"stems": base}, [a, b, c])                          # the first's 48 kHz
    check_mix(srv, {"sample_rate": 32000, "stems": base}, [a, b, c])     # explicit
    check_mix(srv, {"stems": [base[1], base[0]]}, [a, b, c])             # 22.05 kHz
    # The same upload used twice.
    check_mix(srv, {"stems": [{"file": 0}, {"file": 0, "pan": -1,
                                             "edits": [{"type": "offset", "position_ms": 5}]}]},
              [a])


@tap.case
def bit_depths_and_normalisation(srv):
    a = stem(0.6, seed=8, amp=0.3)
    b = stem(0.5, seed=9, amp=0.3, channels=1)
    base = [{"file": 0, "volume": 0.3}, {"file": 1, "volume": 0.2,
                                         "edits": [{"type": "offset", "position_ms": 200}]}]
    r, got, _ = check_mix(srv, {"normalize": True, "stems": base}, [a, b])
    peak = max(abs(v) for v in got) / 32768
    check(abs(20 * math.log10(peak) + 1) < 0.01, f"normalised peak {20 * math.log10(peak)} dBFS")
    check_mix(srv, {"bit_depth": 24, "normalize": True, "stems": base}, [a, b])
    check_mix(srv, {"bit_depth": 24, "stems": base}, [a, b])
    loud = [{"file": 0, "volume": 4}, {"file": 1, "volume": 4}]
    r, got, _ = check_mix(srv, {"bit_depth": 32, "stems": loud}, [a, b])
    check(max(abs(v) for v in got) > 1.0, "float output keeps values over full scale")
    eq(r.header("X-SFA-Clipped-Samples"), "0", "nothing is clipped in float")
    r, got, _ = check_mix(srv, {"bit_depth": 32, "normalize": True, "stems": loud}, [a, b])


@tap.case
def clipping_is_counted(srv):
    a = square(0.4, level=0.9)
    b = square(0.3, level=0.6, period=60)
    manifest = {"stems": [{"file": 0}, {"file": 1, "edits": [{"type": "offset",
                                                                "position_ms": 50}]}]}
    r, got, want = check_mix(srv, manifest, [a, b])
    n = int(r.header("X-SFA-Clipped-Samples"))
    check(n > 1000, f"only {n} clipped samples")
    eq(max(got), 32767, "clipped to the maximum")
    eq(min(got), -32768, "clipped to the minimum")
    r, _, _ = check_mix(srv, dict(manifest, bit_depth=24), [a, b])
    eq(int(r.header("X-SFA-Clipped-Samples")), n, "the same samples clip at 24 bits")
    r, _, _ = check_mix(srv, dict(manifest, normalize=True), [a, b])
    eq(r.header("X-SFA-Clipped-Samples"), "0", "normalised: nothing clips")


@tap.case
def stored_stems_by_id(srv):
    uid, auth = new_user(srv)
    tid = make_track(srv, uid)
    v = stem(0.5, seed=11, rate=48000)
    d = stem(0.4, seed=12, channels=1)
    up = stem(0.3, seed=13)
    sv = make_stored_stem(srv, uid, tid, v[0], "vocals")
    sd = make_stored_stem(srv, uid, tid, d[0], "drums")
    manifest = {"stems": [{"stem_id": sv, "volume": 0.5},
                          {"stem_id": sd, "pan": -0.3, "edits": [{"type": "fade_in",
                                                                   "duration_ms": 100}]},
                          {"file": 0, "edits": [{"type": "offset", "position_ms": 300}]}]}
    check_mix(srv, manifest, [up], srcs=[v, d, up], auth=auth, tid=tid)
    # Another user's stem is reported like one that does not exist.
    ouid, oauth = new_user(srv)
    otid = make_track(srv, ouid)
    r = export(srv.client(), oauth, otid, {"stems": [{"stem_id": sv}, {"stem_id":
                                                                         str(uuid.uuid4())}]}, [])
    eq(r.status, 422, r.text)
    eq(r.json()["details"], {"stems[0].stem_id": ["is not one of your stems"],
                             "stems[1].stem_id": ["is not one of your stems"]}, "details")


@tap.case
def every_validation_error_at_once(srv):
    uid, auth = new_user(srv)
    tid = make_track(srv, uid)
    wav = stem(0.2)[0]
    manifest = {
        "sample_rate": 1000, "bit_depth": 20, "normalize": "yes", "unknown": 1,
        "stems": [
            {"file": 2, "volume": 5, "pan": -1.5, "mute": 1, "edits": [
                {"type": "reverse"},
                {"type": "trim", "start_ms": -10, "end_ms": 5},
                {"type": "gain", "start_ms": 500, "end_ms": 100, "level": 9},
                {"type": "fade_in"},
                {"type": "offset", "position_ms": "soon"},
                {"type": "silence", "start_ms": 100, "end_ms": 100},
                "trim",
                {},
            ]},
            {"file": 0, "stem_id": str(uuid.uuid4())},
            {"volume": 1},
            {"stem_id": "not-a-uuid", "solo": "yes", "edits": {"type": "trim"}},
            {"file": -1, "edits": [{"type": "fade_out", "duration_ms": 3600001},
                                   {"type": "gain", "start_ms": 0}]},
            {"stem_id": str(uuid.uuid4())},
            {"file": 0.5},
        ]}
    r = export(srv.client(), auth, tid, manifest, [wav, wav])
    eq((r.status, r.json()["code"]), (422, "validation_failed"), r.text)
    d = r.json()["details"]
    want = {
        "sample_rate", "bit_depth", "normalize",
        "stems[0].file", "stems[0].volume", "stems[0].pan", "stems[0].mute",
        "stems[0].edits[0].type", "stems[0].edits[1].start_ms", "stems[0].edits[2].end_ms",
        "stems[0].edits[2].level", "stems[0].edits[3].duration_ms",
        "stems[0].edits[4].position_ms", "stems[0].edits[5].end_ms", "stems[0].edits[6]",
        "stems[0].edits[7].type",
        "stems[1]", "stems[2]", "stems[3].stem_id", "stems[3].solo", "stems[3].edits",
        "stems[4].file", "stems[4].edits[0].duration_ms", "stems[4].edits[1].level",
        "stems[5].stem_id", "stems[6].file",
    }
    eq(set(d), want, "every error, keyed by JSON path")
    check("unknown edit type \"reverse\"" in d["stems[0].edits[0].type"][0], d)
    check("out of range" in d["stems[0].file"][0] and "0 to 1" in d["stems[0].file"][0], d)
    check("negative" in d["stems[0].edits[1].start_ms"][0], d)
    check("reversed" in d["stems[0].edits[2].end_ms"][0], d)
    check("empty" in d["stems[0].edits[5].end_ms"][0], d)
    check("16, 24" in d["bit_depth"][0], d)
    check("between 0 and 4" in d["stems[0].volume"][0], d)
    check("-1" in d["stems[0].pan"][0], d)
    eq(d["stems[5].stem_id"], ["is not one of your stems"], "unknown stem_id")
    check("not both" in d["stems[1]"][0], d)
    # Each error alone, too.
    for bad, key in (({"bit_depth": 8}, "bit_depth"),
                     ({"stems": []}, "stems"),
                     ({"stems": [{"file": 0, "volume": -0.1}]}, "stems[0].volume"),
                     ({"stems": [{"file": 0, "pan": 1.01}]}, "stems[0].pan"),
                     ({"stems": [{"file": 1}]}, "stems[0].file"),
                     ({"stems": [{"file": 0, "edits": [{"type": "fade"}]}]},
                      "stems[0].edits[0].type")):
        m = {"stems": [{"file": 0}]}
        m.update(bad)
        r = export(srv.client(), auth, tid, m, [wav])
        eq((r.status, list(r.json().get("details", {}))), (422, [key]), json.dumps(bad))


@tap.case
def request_errors(srv):
    uid, auth = new_user(srv)
    tid = make_track(srv, uid)
    wav = stem(0.2)[0]
    good = {"stems": [{"file": 0}]}
    c = srv.client()
    r = export(c, auth, None, None, [wav])
    eq((r.status, set(r.json()["details"])), (422, {"track_id", "manifest"}), r.text)
    r = export(c, auth, tid, "{\"stems\": [", [wav])
    eq(r.status, 422, r.text)
    check("not valid JSON" in r.json()["details"]["manifest"][0], r.text)
    r = export(c, auth, tid, "[1, 2]", [wav])
    eq(list(r.json()["details"]), ["manifest"], r.text)
    ouid, oauth = new_user(srv)
    eq(export(c, oauth, tid, good, [wav]).status, 404, "another user's track")
    eq(export(c, auth, str(uuid.uuid4()), good, [wav]).status, 404, "no such track")
    eq(export(c, auth, "x" * 100, good, [wav]).status, 404, "a malformed id")
    eq(export(c, {}, tid, good, [wav]).status, 401, "no credentials")
    r = c.request("POST", "/api/daw/export", headers=auth, json_body=good)
    eq(r.status, 415, "JSON instead of multipart")
    r = export(c, auth, tid, good, [], extra_files=[("file", "a.wav", wav)])
    eq(r.status, 400, "a file under another name")
    r = export(c, auth, tid, good, [b"this is not audio" * 100, wav])
    eq((r.status, r.json()["code"]), (422, "invalid_audio"), r.text)
    check(list(r.json()["details"]) == ["stems[0].file"] and
          "stem0.wav" in r.json()["details"]["stems[0].file"][0], r.text)
    r = export(c, auth, tid, {"stems": [{"file": 0}, {"file": 1}]}, [wav, b""])
    eq((r.status, list(r.json()["details"])), (422, ["stems[1].file"]), r.text)
    body, h = multipart({"track_id": tid, "manifest": json.dumps(good)},
                        [("stems[]", "a.wav", wav)])
    r = c.request("POST", "/api/daw/export", body=body[:-40], headers={**auth, **h})
    eq(r.status, 400, "a body cut short")
    settles(lambda: daw_tmp(srv), [], "temporary files left")


@tap.case
def headers_and_session_csrf(srv):
    c = srv.client()
    email = f"dawb-{uuid.uuid4().hex[:8]}@example.com"
    eq(c.register(email, PW).status, 302, "register")
    with db(srv) as d:
        uid = d.execute("SELECT id FROM users WHERE email = ?", (email,)).fetchone()[0]
    tid = make_track(srv, uid, title="Levitating", artist="Dua Lipa")
    s = stem(0.25)
    manifest = {"stems": [{"file": 0}]}
    r = export(c, {}, tid, manifest, [s[0]])
    eq((r.status, r.json()["code"]), (403, "forbidden"), "session without x-csrf-token")
    token = c.csrf("/")
    r = export(c, {"x-csrf-token": token}, tid, manifest, [s[0]])
    eq(r.status, 200, r.text[:300])
    eq(r.header("Content-Type"), "audio/wav", "type")
    check('filename="Dua Lipa - Levitating (mix).wav"' in r.header("Content-Disposition"),
          r.header("Content-Disposition"))
    eq(int(r.header("Content-Length")), len(r.body), "Content-Length")
    eq(len(r.body), 44 + round(0.25 * 44100) * 4, "size")
    eq(r.header("X-SFA-Clipped-Samples"), "0", "clipped")
    check(r.header("X-RateLimit-Limit"), "rate limit headers")


def daw_tmp(srv):
    """What is left in the exports' scratch directory."""
    d = os.path.join(srv.data_dir, "tmp", "daw")
    return os.listdir(d) if os.path.isdir(d) else []


def renderers(srv):
    """daw-render processes working for this server."""
    return [pid for pid, _ in processes_with("daw-render", srv.data_dir)]


def long_manifest():
    return {"stems": [{"file": 0},
                      {"file": 1, "edits": [{"type": "offset", "position_ms": 330000}]}]}


def long_stems():
    one = stem(1.0, seed=21)[0]
    data = one[44:] * 30     # 30 s, built from one generated second
    wav = one[:4] + struct.pack("<I", 36 + len(data)) + one[8:40] + \
        struct.pack("<I", len(data)) + data
    return [wav, wav]


@tap.case
def a_long_mix_streams_in_constant_server_memory(srv):
    uid, auth = new_user(srv)
    tid = make_track(srv, uid)
    fields = {"track_id": tid, "manifest": json.dumps(long_manifest())}
    body, h = multipart(fields, [("stems[]", f"s{i}.wav", w) for i, w in
                                 enumerate(long_stems())])
    before = peak_rss_kb(srv.proc.pid)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
    conn.request("POST", "/api/daw/export", body=body, headers={**auth, **h})
    r = conn.getresponse()
    eq(r.status, 200, "status")
    want = 44 + 360 * 44100 * 4
    eq(int(r.getheader("Content-Length")), want, "Content-Length of six minutes")
    total, first, silent_middle = 0, None, True
    while True:
        chunk = r.read(1 << 20)
        if not chunk:
            break
        if first is None:
            first = chunk[:44 + 4 * 1000]
        lo, hi = total, total + len(chunk)
        a, b = 44 + 31 * 44100 * 4, 44 + 329 * 44100 * 4   # between the two clips
        if hi > a and lo < b:
            seg = chunk[max(a - lo, 0):min(b - lo, len(chunk))]
            silent_middle &= seg.count(0) == len(seg)
        total += len(chunk)
    conn.close()
    eq(total, want, "bytes received")
    check(silent_middle, "the gap between the clips is not silent")
    after = peak_rss_kb(srv.proc.pid)
    grew = (after - before) / 1024
    print(f"# server peak RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB while "
          f"mixing {total / (1 << 20):.0f} MiB")
    check(grew < 16, f"the server's peak memory grew by {grew:.1f} MiB")
    settles(lambda: daw_tmp(srv), [], "temporary files left")
    settles(lambda: renderers(srv), [], "renderer processes left")


@tap.case
def a_client_that_hangs_up_stops_the_renderer(srv):
    uid, auth = new_user(srv)
    tid = make_track(srv, uid)
    fields = {"track_id": tid, "manifest": json.dumps(long_manifest())}
    body, h = multipart(fields, [("stems[]", f"s{i}.wav", w) for i, w in
                                 enumerate(long_stems())])
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    conn.request("POST", "/api/daw/export", body=body, headers={**auth, **h})
    r = conn.getresponse()
    eq(r.status, 200, "status")
    r.read(1 << 16)
    check(renderers(srv), "no renderer while streaming")
    conn.sock.close()
    conn.close()
    deadline = time.time() + 10
    while time.time() < deadline and (renderers(srv) or
                                      daw_tmp(srv)):
        time.sleep(0.1)
    eq(renderers(srv), [], "renderer processes left")
    eq(daw_tmp(srv), [], "temporary files left")
    eq(srv.client().get("/health").status, 200, "the server still answers")


def limits_server_cases():
    """Size limits and the heavy bucket, on a server with small limits."""
    srv = Server(env={"SFA_MAX_UPLOAD_MB": "1", "SFA_RATE_HEAVY": "3",
                      "SFA_RATE_API": "100000"})
    # What a crashed server left behind is swept before the first export.
    stale = os.path.join(srv.data_dir, "tmp", "daw", str(uuid.uuid4()))
    os.makedirs(stale)
    with open(os.path.join(stale, "0.part"), "wb") as f:
        f.write(b"left over")
    srv.start()
    try:
        uid, auth = new_user(srv)
        tid = make_track(srv, uid)
        c = srv.client()
        small = stem(0.1)[0]
        m = {"stems": [{"file": 0}]}
        r = export(c, auth, tid, m, [small] * 17)
        eq((r.status, r.json()["code"]), (413, "payload_too_large"), "17 files")
        check(not os.path.exists(stale), "a stale scratch directory was not swept")
        check("16" in r.json()["error"], r.text)
        r = export(c, auth, tid, m, [small + b"\0" * (1 << 20)])
        eq((r.status, r.json()["code"]), (413, "payload_too_large"), "a file over 1 MB")
        ok = stem(5.5)[0]       # 0.97 MB each, under the per-file limit
        check(len(ok) < 1 << 20, "test stem too big")
        r = export(c, auth, tid, m, [ok] * 4)
        eq((r.status, r.json()["code"]), (413, "payload_too_large"), "4 MB in all")
        r = c.request("POST", "/api/daw/export", headers=auth, json_body={})
        eq((r.status, r.json()["code"]), (429, "rate_limited"), "the heavy bucket")
        check(r.header("Retry-After"), "Retry-After")
        settles(lambda: daw_tmp(srv), [], "temporary files left")
        bad = [l for l in srv.log if "AddressSanitizer" in l or "runtime error:" in l]
        check(not bad, "\n".join(bad[:10]))
    finally:
        srv.cleanup()


@tap.case
def size_limits_and_heavy_bucket(srv):
    limits_server_cases()


@tap.case
def the_renderer_limits_its_scratch_disk(srv):
    """`sfa daw-render` itself, as the server runs it, with a 1 MiB decode budget."""
    work = os.path.join(srv.data_dir, "tmp", "render-test")
    os.makedirs(work, exist_ok=True)
    paths = []
    for i in range(2):
        paths.append(os.path.join(work, f"{i}.wav"))
        with open(paths[-1], "wb") as f:
            f.write(stem(2.0, seed=30 + i)[0])   # 2 s: 0.7 MiB of decoded float each
    man = os.path.join(work, "m.json")
    with open(man, "w") as f:
        json.dump({"stems": [{"file": 0}, {"file": 1}]}, f)
    args = [os.environ.get("SFA_BIN", "build/sfa"), "daw-render", "--manifest", man, "--work",
            work, "--file", paths[0], "--file", paths[1]]
    p = subprocess.run(args + ["--max-decoded-mb", "1"], capture_output=True, timeout=60)
    eq(p.returncode, 1, p.stderr)
    line = json.loads(p.stdout.split(b"\n")[0])
    eq((line["code"], line["stem"]), ("too_long", 1), line)
    check("at most 1 MiB" in line["error"], line)
    p = subprocess.run(args + ["--max-decoded-mb", "2"], capture_output=True, timeout=60)
    eq(p.returncode, 0, p.stderr)
    head, _, wav = p.stdout.partition(b"\n")
    info = json.loads(head)
    eq((info["frames"], info["bytes"], len(wav)), (88200, 44 + 88200 * 4, 44 + 88200 * 4),
       "the first line announces the WAV that follows")
    eq(sorted(os.listdir(work)), ["0.wav", "1.wav", "m.json"], "decoded files are anonymous")


def main():
    srv = Server(env={"SFA_RATE_API": "100000", "SFA_RATE_HEAVY": "100000"}).start()
    os.makedirs(os.path.join(srv.data_dir, "tmp", "daw"), exist_ok=True)
    try:
        rc = tap.run(srv)
    finally:
        srv.cleanup()
    if rc:
        print("# server log tail:\n# " + "\n# ".join(srv.log[-30:]))
    return rc


if __name__ == "__main__":
    sys.exit(main())
