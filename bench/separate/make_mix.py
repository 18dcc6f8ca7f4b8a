#!/usr/bin/python3
"""Renders a real-ish mix for bench_separate: drums, bass, piano chords and a sung-like lead
(General MIDI choir and voice patches) written as a MIDI file and played by fluidsynth with
the FluidR3 GM soundfont (Debian: fluidsynth, fluid-soundfont-gm), then stored as planar
stereo float32 at 44.1 kHz (the reference-data layout). Never run by the tests; the output
stays outside the repository.

    bench/separate/make_mix.py OUT.f32 [SECONDS]
"""
import os
import struct
import subprocess
import sys
import tempfile
import wave

TPQ = 480  # ticks per quarter note; 120 bpm


def vlq(n):
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def track(events):
    """events: (tick, bytes) in any order -> an MTrk chunk."""
    data, now = b"", 0
    for t, ev in sorted(events, key=lambda e: (e[0], e[1][0] & 0xF0 != 0x80)):
        data += vlq(t - now) + ev
        now = t
    data += b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(data)) + data


def note(ev, ch, t, dur, key, vel):
    ev.append((t, bytes([0x90 | ch, key, vel])))
    ev.append((t + dur, bytes([0x80 | ch, key, 0])))


def song(seconds):
    bars = int(seconds / 2) + 1  # 4/4 at 120 bpm: 2 s a bar
    bar = 4 * TPQ
    ev = [(0, b"\xff\x51\x03\x07\xa1\x20")]  # 500000 us a quarter
    ev += [(0, bytes([0xC0, 33])), (0, bytes([0xC1, 0])), (0, bytes([0xC2, 52])),
           (0, bytes([0xC3, 85]))]  # fingered bass, piano, choir aahs, voice lead
    chords = [(45, [57, 60, 64]), (41, [57, 60, 65]), (48, [55, 60, 64]), (43, [55, 59, 62])]
    melody = [69, 71, 72, 74, 76, 74, 72, 71, 69, 67, 69, 72, 71, 69, 67, 64]
    for b in range(bars):
        t0 = b * bar
        root, triad = chords[b % 4]
        for beat in range(4):  # drums on channel 10
            t = t0 + beat * TPQ
            note(ev, 9, t, TPQ // 4, 36 if beat % 2 == 0 else 38, 110)
            for h in range(2):
                note(ev, 9, t + h * TPQ // 2, TPQ // 8, 42, 70 + 20 * (h == 0))
        for e in range(8):  # bass eighths
            note(ev, 0, t0 + e * TPQ // 2, TPQ // 2 - 20, root - 12 + (7 if e % 4 == 3 else 0),
                 95)
        for beat in (0, 2):  # piano chords
            for k in triad:
                note(ev, 1, t0 + beat * TPQ, 2 * TPQ - 40, k, 70)
        for k in triad:  # choir pad on the even bars
            if b % 2 == 0:
                note(ev, 2, t0, bar - 40, k + 12, 45)
        if b % 8 >= 4:  # the "voice": a lead line in half the bars
            for i in range(4):
                note(ev, 3, t0 + i * TPQ, TPQ - 30, melody[(b * 4 + i) % 16], 90)
    head = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TPQ)
    return head + track(ev)


def main():
    out = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    with tempfile.TemporaryDirectory() as d:
        mid, wav = os.path.join(d, "song.mid"), os.path.join(d, "song.wav")
        with open(mid, "wb") as f:
            f.write(song(seconds))
        subprocess.run(["fluidsynth", "-ni", "-g", "0.6", "-r", "44100", "-F", wav,
                        "/usr/share/sounds/sf2/FluidR3_GM.sf2", mid], check=True,
                       capture_output=True)
        w = wave.open(wav)
        assert w.getnchannels() == 2 and w.getsampwidth() == 2 and w.getframerate() == 44100
        n = min(w.getnframes(), int(seconds * 44100))
        pcm = struct.unpack(f"<{2 * n}h", w.readframes(n))
    left = [pcm[2 * i] / 32768.0 for i in range(n)]
    right = [pcm[2 * i + 1] / 32768.0 for i in range(n)]
    with open(out, "wb") as f:
        f.write(struct.pack(f"<{n}f", *left))
        f.write(struct.pack(f"<{n}f", *right))
    peak = max(max(map(abs, left)), max(map(abs, right)))
    print(f"{out}: {n} frames ({n / 44100:.1f} s), peak {peak:.2f}")


if __name__ == "__main__":
    main()
