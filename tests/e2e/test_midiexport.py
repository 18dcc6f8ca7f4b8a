"""GET /export/midi/:track_id: the analysis's beat grid, chords and sections as a Standard
MIDI File, read back with a real reader (Debian's python3-mido) and checked against the
analysis the API reports: every detected beat on a quarter note of the tempo map, the
first bar on a bar line, one block chord and one text event per chord, a marker per
section; and the refusals, as the other /export routes answer them.
"""
import io
import math
import os
import struct
import sys
import time
import uuid

import mido

sys.path.insert(0, os.path.dirname(__file__))
from harness import Tap, check, eq, multipart, run_suite, sine_wav  # noqa: E402

tap = Tap()
PW = "correct horse battery"
PITCHES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
QUALITY = {"": (0, 4, 7), "m": (0, 3, 7), "7": (0, 4, 7, 10), "maj7": (0, 4, 7, 11),
           "m7": (0, 3, 7, 10)}
RATE = 22050


def chord_song(bpm=120, bars=16, prog=((0, 4, 7), (9, 12, 16), (5, 9, 12), (7, 11, 14))):
    """Mono 16-bit WAV: a block chord per 4/4 bar (C, Am, F, G: triads with a bass note,
    three partials each), a click on every beat, louder on the bar's first; the second
    half twice as loud, so the song has parts."""
    spb = 60.0 / bpm
    n = int(bars * 4 * spb * RATE)
    x = [0.0] * n
    bar_len = int(4 * spb * RATE)
    for b in range(bars):
        notes = [48 + prog[b % len(prog)][0]] + [60 + p for p in prog[b % len(prog)]]
        level = 0.3 if b < bars // 2 else 0.6
        start = b * bar_len
        for m in notes:
            f = 440.0 * 2 ** ((m - 69) / 12)
            for k in (1, 2, 3):
                w = 2 * math.pi * f * k / RATE
                a = level * 0.12 / k
                for i in range(bar_len):
                    x[start + i] += a * math.sin(w * i) * (1.0 - i / (bar_len * 1.3))
    beat = int(spb * RATE)
    for j in range(bars * 4):
        amp = 0.5 if j % 4 == 0 else 0.3
        for i in range(600):
            if j * beat + i < n:
                x[j * beat + i] += amp * math.exp(-i / 90.0) * (1 if (i * 7919) % 13 < 7 else -1)
    frames = struct.pack("<%dh" % n, *(max(-32768, min(32767, int(v * 20000))) for v in x))
    return (b"RIFF" + struct.pack("<I", 36 + len(frames)) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, RATE, RATE * 2, 2, 16) + b"data" +
            struct.pack("<I", len(frames)) + frames)


def new_user(srv):
    email = f"midi-{uuid.uuid4().hex[:10]}@example.com"
    srv.cli("user", "create", "--email", email, "--password", PW)
    key = srv.cli("token", "create", "--email", email).stdout.strip()
    return {"Authorization": f"Bearer {key}"}


def upload(srv, auth, title, data):
    body, h = multipart({"title": title, "artist": "Test"}, {"file": ("a.wav", data)})
    r = srv.client().request("POST", "/api/tracks", body=body, headers={**auth, **h})
    eq(r.status, 201, r.text)
    return r.json()["data"]["id"]


def analyse(srv, auth, tid, features):
    c = srv.client()
    r = c.request("POST", "/api/analysis/analyze", headers=auth,
                  json_body={"track_id": tid, "features": features})
    eq(r.status, 201, r.text)
    jid = r.json()["data"]["job_id"]
    deadline = time.time() + 90
    while True:
        j = c.get(f"/api/analysis/job/{jid}", headers=auth).json()["data"]
        if j["status"] in ("completed", "failed"):
            break
        check(time.time() < deadline, "the analysis did not finish")
        time.sleep(0.05)
    eq(j["status"], "completed", j.get("error"))
    return j["result"]


def seconds_of(tempo_map, tick, ppq):
    """The time of tick under tempo_map [(tick, microseconds per quarter)], as a player
    reads it."""
    t, at, us = 0.0, 0, 500000
    for tk, tempo in tempo_map:
        if tk >= tick:
            break
        t += (tk - at) * us / ppq / 1e6
        at, us = tk, tempo
    return t + (tick - at) * us / ppq / 1e6


def absolute(track):
    at, out = 0, []
    for msg in track:
        at += msg.time
        out.append((at, msg))
    return out


@tap.case
def midi_file_follows_the_analysis(srv):
    auth = new_user(srv)
    tid = upload(srv, auth, "Chord Song", chord_song())
    an = analyse(srv, auth, tid, ["all"])
    r = srv.client().get(f"/export/midi/{tid}", headers=auth)
    eq(r.status, 200, r.text)
    eq(r.header("Content-Type"), "audio/midi", "type")
    check('filename="Test - Chord Song.mid"' in (r.header("Content-Disposition") or ""),
          r.header("Content-Disposition"))
    mid = mido.MidiFile(file=io.BytesIO(r.body))  # raises on a malformed file
    eq((mid.type, mid.ticks_per_beat, len(mid.tracks)), (1, 480, 2), "format 1, 480 PPQ")
    conductor, chords = absolute(mid.tracks[0]), absolute(mid.tracks[1])
    eq([m.name for _, m in conductor if m.type == "track_name"], ["Chord Song"], "title")
    tempo_map = [(t, m.tempo) for t, m in conductor if m.type == "set_tempo"]
    check(tempo_map and tempo_map[0][0] == 0, f"a tempo from the start: {tempo_map[:3]}")

    # Every detected beat falls on a quarter note (lead quarters before the first).
    beats = an["beats"]
    check(len(beats) > 20, f"only {len(beats)} beats")
    lead = 0
    while seconds_of(tempo_map, lead * 480, 480) < beats[0] - 0.001:
        lead += 1
    for i, b in enumerate(beats):
        got = seconds_of(tempo_map, (lead + i) * 480, 480)
        check(abs(got - b) < 0.0011, f"beat {i} at {b:.4f} s is quarter {lead + i} at {got:.4f}")

    # The time signature; the first bar starts on a bar line.
    sigs = [(t, m.numerator, m.denominator) for t, m in conductor if m.type == "time_signature"]
    eq((sigs[-1][1], sigs[-1][2]), tuple(int(v) for v in an["time_signature"].split("/")),
       "time signature")
    first_bar = (lead + beats.index(an["downbeats"][0])) * 480
    bar_lines, (at, num) = set(), (0, sigs[0][1])
    for t, n, _ in sigs[1:] + [(first_bar + 1, None, None)]:
        bar_lines.update(range(at, min(t, first_bar + 1), num * 480))
        at, num = t, n
    check(first_bar in bar_lines, f"the first bar (tick {first_bar}) is not on a bar line {sigs}")

    # The chords: one text event and one block chord each, at their times.
    played = [c for c in an["chords"] if c["label"] != "N"]
    check(played, f"no chords: {an['chords']}")
    texts = [(t, m.text) for t, m in chords if m.type == "text"]
    eq([x for _, x in texts], [c["label"] for c in played], "a text event per chord")
    for (t, _), c in zip(texts, played):
        check(abs(seconds_of(tempo_map, t, 480) - c["start"]) < 0.002, f"{c} at tick {t}")
        name = c["label"][:2] if c["label"][1:2] == "#" else c["label"][:1]
        want = sorted({(PITCHES.index(name) + i) % 12 for i in QUALITY[c["label"][len(name):]]})
        ons = sorted({m.note % 12 for tk, m in chords
                      if tk == t and m.type == "note_on" and m.velocity > 0})
        eq(ons, want, f"the notes of {c['label']}")
    offs = [tk for tk, m in chords if m.type == "note_off" or
            (m.type == "note_on" and m.velocity == 0)]
    check(abs(seconds_of(tempo_map, max(offs), 480) - played[-1]["end"]) < 0.002,
          "the last chord ends where the analysis says")
    # What the song plays (C, Am, F, G a bar each) is what the analysis reads, most of the
    # time after the first bar.
    want = ["C", "Am", "F", "G"]
    right = total = 0.0
    for c in an["chords"]:
        for k in range(1, 16):
            a, b = max(c["start"], 2.0 * k), min(c["end"], 2.0 * k + 2.0)
            if b > a:
                total += b - a
                right += (b - a) * (c["label"] == want[k % 4])
    check(right / total >= 0.8, f"chords right {right / total:.0%} of the time: {an['chords']}")

    print(f"# {len(beats)} beats after {lead} lead quarter(s), {len(played)} chords "
          f"({right / total:.0%} right), {len(an['sections'])} sections, signatures {sigs}")
    # A marker per section, at its start.
    markers = [(seconds_of(tempo_map, t, 480), m.text) for t, m in conductor
               if m.type == "marker"]
    eq([x for _, x in markers], [s["label"] for s in an["sections"]], "section markers")
    for (t, _), s in zip(markers, an["sections"]):
        check(abs(t - s["start"]) < 0.002, f"marker at {t}, section at {s['start']}")


@tap.case
def refusals_like_the_other_exports(srv):
    auth = new_user(srv)
    tid = upload(srv, auth, "Tone", sine_wav(3.0))
    r = srv.client().get(f"/export/midi/{tid}", headers=auth)
    eq((r.status, r.json()["code"]), (409, "conflict"), "no analysis yet")
    check("analy" in r.json()["error"], r.text)
    analyse(srv, auth, tid, ["energy"])
    r = srv.client().get(f"/export/midi/{tid}", headers=auth)
    eq((r.status, r.json()["code"]), (409, "conflict"), "an analysis without beats")
    check("beats" in r.json()["error"], r.text)
    other = new_user(srv)
    r = srv.client().get(f"/export/midi/{tid}", headers=other)
    eq((r.status, r.json()["code"]), (404, "not_found"), "another user's track")
    eq(srv.client().get(f"/export/midi/{uuid.uuid4()}", headers=auth).status, 404, "unknown")
    eq(srv.client().get("/export/midi/nope", headers=auth).status, 404, "not an id")
    r = srv.client().get(f"/export/midi/{tid}")
    eq((r.status, r.json()["code"]), (401, "unauthorized"), "no credentials")


if __name__ == "__main__":
    sys.exit(run_suite(tap, {"SFA_RATE_API": "100000", "SFA_RATE_HEAVY": "100000"}))
