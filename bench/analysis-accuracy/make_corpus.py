#!/usr/bin/python3
"""make_corpus.py - a labelled corpus of rendered songs for the analysis accuracy bench.

    make_corpus.py OUT_DIR [--seed N] [--count N] [--short] [--only s0003,s0017]
                           [--no-render] [--soundfont PATH]

Composes songs as Standard MIDI Files from a seed, renders each with fluidsynth and a
General MIDI soundfont, and writes beside it the ground truth as JSON:

    OUT_DIR/s0000.mid    the song (format 0, 480 ticks per quarter note)
    OUT_DIR/s0000.flac   44.1 kHz mono 16-bit, rendered (not with --no-render)
    OUT_DIR/s0000.json   labels: key (tonic, mode, the contract's major/minor name and
                         Camelot code, segment keys when it modulates), tempo (and its curve
                         when it drifts), beats, downbeats, time signature, chords,
                         sections, groove, tuning
    OUT_DIR/corpus.json  the manifest: seed, count, one line per song

What makes the songs hard on purpose: progressions in all 24 keys and in seven modes
(ionian, lydian, mixolydian, aeolian, dorian, phrygian, harmonic minor) whose tonic is not
the loudest chord, borrowed chords, pedal bass, modulations for the last part of a song,
grooves that fool periodicity (half-time, shuffle, tresillo 3-3-2, breakbeats), 60-190 BPM,
slow tempo drift, detuning up to +-40 cents (pitch bend on every melodic channel), intros
without drums, and sections whose instrumentation and loudness change.

Determinism: song i depends only on (seed, i) through random.Random("seed:i") (string
seeds hash with SHA-512, stable across Python versions and platforms), so the same seed
gives byte-identical MIDI and labels, and any subset can be regenerated alone (--only).
Times are computed from the integer MIDI tempi (microseconds per quarter) and rounded to
0.1 ms in the labels. Rendering is fluidsynth's fast file renderer in float, downmixed and
converted to 16 bit by ffmpeg without dither; with the same fluidsynth and soundfont it is
identical run to run.

--short makes 5-8 s songs (an intro bar, then the drop) for the committed fixtures.
Python standard library only; fluidsynth, the soundfont and ffmpeg only when rendering.
"""
import argparse
import json
import math
import os
import random
import struct
import subprocess
import sys
import tempfile

GENERATOR_VERSION = 1
PPQ = 480
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
PITCH = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]

# scale steps and the contract's major/minor reading of each mode (same tonic)
MODES = {
    "ionian": ([0, 2, 4, 5, 7, 9, 11], "major"),
    "lydian": ([0, 2, 4, 6, 7, 9, 11], "major"),
    "mixolydian": ([0, 2, 4, 5, 7, 9, 10], "major"),
    "aeolian": ([0, 2, 3, 5, 7, 8, 10], "minor"),
    "dorian": ([0, 2, 3, 5, 7, 9, 10], "minor"),
    "phrygian": ([0, 1, 3, 5, 7, 8, 10], "minor"),
    "harmonic_minor": ([0, 2, 3, 5, 7, 8, 11], "minor"),
}
MODE_WEIGHTS = {
    "major": [("ionian", 6), ("mixolydian", 3), ("lydian", 1)],
    "minor": [("aeolian", 5), ("dorian", 3), ("harmonic_minor", 2), ("phrygian", 1)],
}
# progressions as 0-based scale degrees; each starts on the tonic or returns to it
PROGRESSIONS = {
    "ionian": [[0, 4, 5, 3], [0, 5, 3, 4], [5, 3, 0, 4], [0, 3, 4, 3], [1, 4, 0, 0],
               [0, 3, 0, 4], [0, 2, 3, 4], [3, 4, 0, 5]],
    "lydian": [[0, 1, 0, 1], [0, 1, 4, 0], [0, 1, 6, 0], [0, 4, 1, 0]],
    "mixolydian": [[0, 6, 3, 0], [0, 6, 0, 3], [0, 4, 6, 3], [0, 3, 6, 0], [0, 0, 6, 3]],
    "aeolian": [[0, 5, 2, 6], [0, 6, 5, 6], [0, 3, 4, 0], [0, 5, 6, 0], [5, 6, 0, 0],
                [0, 2, 6, 3], [0, 3, 5, 6]],
    "dorian": [[0, 3, 0, 3], [0, 1, 0, 3], [0, 3, 6, 0], [0, 6, 3, 0], [0, 2, 3, 0]],
    "phrygian": [[0, 1, 0, 6], [0, 1, 2, 1], [0, 6, 5, 1], [0, 1, 0, 0]],
    "harmonic_minor": [[0, 3, 4, 0], [0, 5, 4, 0], [0, 3, 5, 4], [0, 5, 3, 4]],
}
CHORD_STEPS = {
    "maj": [0, 4, 7], "min": [0, 3, 7], "dim": [0, 3, 6], "aug": [0, 4, 8],
    "7": [0, 4, 7, 10], "maj7": [0, 4, 7, 11], "min7": [0, 3, 7, 10],
    "hdim7": [0, 3, 6, 10], "minmaj7": [0, 3, 7, 11], "dim7": [0, 3, 6, 9],
}
TRIAD_OF = {(4, 7): "maj", (3, 7): "min", (3, 6): "dim", (4, 8): "aug"}
SEVENTH_OF = {("maj", 11): "maj7", ("maj", 10): "7", ("min", 10): "min7",
              ("dim", 10): "hdim7", ("min", 11): "minmaj7", ("dim", 9): "dim7"}
# chords borrowed from the parallel mode: (semitones above the tonic, quality)
BORROWED = {
    "major": [(8, "maj"), (10, "maj"), (5, "min"), (3, "maj")],
    "minor": [(5, "maj"), (7, "maj"), (1, "maj"), (0, "maj")],
}

# groove name -> (beats per bar, grid steps per beat, tempo range, weight)
GROOVES = {
    "four_on_floor": (4, 4, (112, 150), 6),
    "backbeat": (4, 4, (70, 160), 5),
    "half_time": (4, 4, (130, 175), 4),
    "shuffle": (4, 3, (75, 135), 3),
    "tresillo": (4, 4, (88, 155), 4),
    "breakbeat": (4, 4, (115, 180), 4),
    "waltz": (3, 4, (80, 190), 2),
    "ballad": (4, 4, (60, 80), 2),
}
KICK, RIM, SNARE, CLAP, SNARE2, CHAT, PHAT, OHAT, CRASH, RIDE, SHAKER = (
    36, 37, 38, 39, 40, 42, 44, 46, 49, 51, 70)

DRUM_KITS = [0, 0, 8, 16, 24, 25, 0]  # GM bank 128 programs: standard, room, power, ...
PADS = [88, 89, 90, 91, 94, 95, 48, 49, 50, 19]
KEYS = [0, 1, 4, 5, 16, 11, 24, 25, 27]
BASSES = [32, 33, 34, 35, 38, 39, 87]
LEADS = [80, 81, 73, 61, 56, 65, 82, 11, 71, 85]


def weighted(rng, pairs):
    total = sum(w for _, w in pairs)
    x = rng.uniform(0, total)
    for item, w in pairs:
        x -= w
        if x <= 0:
            return item
    return pairs[-1][0]


def camelot(pc, minor):
    ref = 9 if minor else 0
    fifths = ((pc - ref) % 12) * 7 % 12
    return "%d%s" % ((fifths + 7) % 12 + 1, "A" if minor else "B")


def key_label(tonic, mode):
    quality = MODES[mode][1]
    return {"tonic": PITCH[tonic], "mode": mode,
            "key": "%s %s" % (PITCH[tonic], quality),
            "camelot": camelot(tonic, quality == "minor")}


def chord_label(root_pc, quality):
    return "%s:%s" % (PITCH[root_pc % 12], quality)


def diatonic_chord(steps, degree, seventh):
    root = steps[degree % 7]
    third = (steps[(degree + 2) % 7] - root) % 12
    fifth = (steps[(degree + 4) % 7] - root) % 12
    quality = TRIAD_OF.get((third, fifth), "maj")
    if seventh:
        sev = (steps[(degree + 6) % 7] - root) % 12
        quality = SEVENTH_OF.get((quality, sev), quality)
    return root, quality


# --- Standard MIDI File -------------------------------------------------------------

def vlq(n):
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


class Midi:
    """Events of one format-0 file: (tick, order, seq, bytes). order puts meta events,
    then controls, then note-offs, then note-ons at the same tick."""

    def __init__(self):
        self.events = []

    def add(self, tick, order, data):
        self.events.append((int(tick), order, len(self.events), bytes(data)))

    def meta(self, tick, kind, payload):
        self.add(tick, 0, bytes([0xFF, kind]) + vlq(len(payload)) + payload)

    def control(self, tick, ch, cc, value):
        self.add(tick, 1, [0xB0 | ch, cc, value])

    def program(self, tick, ch, prog):
        self.add(tick, 1, [0xC0 | ch, prog])

    def bend(self, tick, ch, value):
        self.add(tick, 1, [0xE0 | ch, value & 0x7F, value >> 7])

    def note(self, tick_on, tick_off, ch, key, vel):
        if tick_off <= tick_on or not 0 <= key <= 127:
            return
        vel = max(1, min(127, int(vel)))
        self.add(tick_on, 3, [0x90 | ch, key, vel])
        self.add(tick_off, 2, [0x80 | ch, key, 0])

    def to_bytes(self, end_tick):
        body = bytearray()
        last = 0
        for tick, _, _, data in sorted(self.events):
            body += vlq(tick - last) + data
            last = tick
        body += vlq(max(0, end_tick - last)) + b"\xFF\x2F\x00"
        return (b"MThd" + struct.pack(">IHHH", 6, 0, 1, PPQ)
                + b"MTrk" + struct.pack(">I", len(body)) + bytes(body))


# --- composition ---------------------------------------------------------------------

def plan_sections(rng, n_bars, short):
    """[(label, bars)] summing to n_bars."""
    if short:
        return [("intro", 1), ("drop", n_bars - 1)]
    templates = [
        ["intro", "build", "drop", "breakdown", "build", "drop", "outro"],
        ["intro", "build", "drop", "breakdown", "drop", "outro"],
        ["intro", "drop", "breakdown", "drop", "outro"],
        ["intro", "build", "drop", "outro"],
        ["intro", "drop", "outro"],
    ]
    unit = 4
    units = n_bars // unit
    seq = None
    for t in templates[rng.randrange(3):]:
        if len(t) <= units:
            seq = t
            break
    if seq is None:
        seq = ["intro", "drop"][:max(1, units)]
    alloc = [1] * len(seq)
    prefer = {"drop": 4, "breakdown": 2, "build": 1, "intro": 2, "outro": 1}
    pairs = [(i, prefer[s]) for i, s in enumerate(seq)]
    for _ in range(units - len(seq)):
        alloc[weighted(rng, pairs)] += 1
    out = [(s, a * unit) for s, a in zip(seq, alloc)]
    rest = n_bars - units * unit
    if rest:
        out[-1] = (out[-1][0], out[-1][1] + rest)
    return out


def drum_pattern(rng, groove, variant):
    """Hits of one bar as [(step, note, velocity)] on the groove's grid."""
    h = []
    if groove == "four_on_floor":
        h += [(s, KICK, 118) for s in (0, 4, 8, 12)]
        h += [(s, CLAP if variant % 2 else SNARE, 100) for s in (4, 12)]
        h += [(s, OHAT if variant == 2 else CHAT, 80) for s in (2, 6, 10, 14)]
        if variant >= 1:
            h += [(s, CHAT, 50) for s in (1, 3, 5, 7, 9, 11, 13, 15)]
    elif groove == "backbeat":
        kicks = [(0, 8), (0, 6, 8), (0, 8, 10), (0, 3, 8)][variant % 4]
        h += [(s, KICK, 112) for s in kicks]
        h += [(s, SNARE, 110) for s in (4, 12)]
        h += [(s, CHAT, 78 if s % 4 == 0 else 62) for s in range(0, 16, 2)]
    elif groove == "half_time":
        h += [(s, KICK, 120) for s in ((0, 10), (0, 3, 10), (0, 7, 14), (0, 11))[variant % 4]]
        h += [(8, SNARE, 120)]
        h += [(s, CHAT, 70 if s % 2 == 0 else 48) for s in range(16)]
    elif groove == "shuffle":  # triplet grid: swung eighths on 0 and 2 of each beat
        h += [(s, KICK, 112) for s in ((0, 6), (0, 5, 6), (0, 8))[variant % 3]]
        h += [(s, SNARE, 105) for s in (3, 9)]
        h += [(s, RIDE if variant == 1 else CHAT, 80 if s % 3 == 0 else 60)
              for s in range(12) if s % 3 != 1]
    elif groove == "tresillo":
        if variant % 2 == 0:  # 3-3-2 in sixteenths, twice a bar
            h += [(s, KICK, 118) for s in (0, 3, 6, 8, 11, 14)]
            h += [(s, RIM, 90) for s in (4, 12)]
        else:  # dembow: kick on the beat, snare on the 3-3-2 offsets
            h += [(s, KICK, 118) for s in (0, 4, 8, 12)]
            h += [(s, SNARE, 100) for s in (3, 6, 11, 14)]
        h += [(s, SHAKER, 60) for s in range(0, 16, 2)]
    elif groove == "breakbeat":
        h += [(s, KICK, 118) for s in ((0, 10), (0, 2, 10), (0, 10, 11), (0, 6, 10))[variant % 4]]
        h += [(s, SNARE, 112) for s in (4, 12)]
        h += [(s, SNARE, 55) for s in ((7, 9, 15), (7, 14), (9, 15), (7,))[variant % 4]]
        h += [(s, CHAT if variant % 2 else RIDE, 72) for s in range(0, 16, 2)]
    elif groove == "waltz":  # 3/4 on sixteenths
        h += [(0, KICK, 115)]
        if variant % 2:
            h += [(s, SNARE, 85) for s in (4, 8)]
        else:
            h += [(6, KICK, 90), (4, SNARE, 95), (8, SNARE, 95)]
        h += [(s, CHAT, 70) for s in range(0, 12, 2)]
    elif groove == "ballad":
        h += [(0, KICK, 100), (10, KICK, 85)]
        h += [(s, SNARE2, 90) for s in (4, 12)]
        h += [(s, CHAT, 55) for s in range(0, 16, 2)]
    return h


def bass_rhythm(groove, variant, bpb, spb):
    """[(step, length in steps)] of one bar's bass line."""
    if groove == "four_on_floor":
        return [(s, 2) for s in (2, 6, 10, 14)] if variant % 2 == 0 else \
            [(s, 1) for s in range(16) if s % 4 != 0]
    if groove == "backbeat":
        return [(0, 4), (6, 2), (8, 4), (12, 2), (14, 2)]
    if groove == "half_time":
        return [(0, 10), (10, 6)]
    if groove == "shuffle":
        return [(0, 2), (3, 2), (5, 1), (6, 2), (9, 2), (11, 1)]
    if groove == "tresillo":
        return [(0, 3), (3, 3), (6, 2), (8, 3), (11, 3), (14, 2)]
    if groove == "breakbeat":
        return [(0, 6), (10, 6)]
    if groove == "waltz":
        return [(0, 4), (4, 4), (8, 4)]
    return [(0, 8), (8, 8)]


def build_song(seed, index, short):
    rng = random.Random("%d:%d" % (seed, index))
    song = {"id": "%s%04d" % ("f" if short else "s", index)}

    # key: every 24 songs cover all 24 contract keys; the mode is drawn within the quality
    quality = "major" if index % 2 == 0 else "minor"
    tonic = (index // 2 * 7 + seed) % 12
    mode = weighted(rng, MODE_WEIGHTS[quality])
    steps = MODES[mode][0]

    groove = weighted(rng, [(g, v[3]) for g, v in GROOVES.items()])
    bpb, spb, (lo, hi), _ = GROOVES[groove]
    bpm = rng.uniform(lo, hi)
    bpm = round(bpm) if rng.random() < 0.6 else round(bpm, 1)
    bpm = max(60.0, min(190.0, float(bpm)))
    drift = None
    if not short and rng.random() < 0.2:
        drift = {"kind": rng.choice(["ramp", "wave"]),
                 "depth": round(rng.uniform(0.02, 0.06), 3) * rng.choice([-1, 1]),
                 "period_bars": rng.choice([8, 16, 32])}
    cents = 0
    if rng.random() < 0.3:
        cents = rng.choice([-1, 1]) * rng.randint(8, 40)

    if short:
        seconds = rng.uniform(3.0, 4.5)
    else:
        seconds = 30 + 90 * rng.random() ** 2.5
    bar_s = bpb * 60.0 / bpm
    n_bars = max(2 if short else 8, int(round(seconds / bar_s)))
    if not short:
        n_bars = max(8, -(-n_bars // 4) * 4)
        while n_bars > 8 and (n_bars + bpb) * bar_s > 118:
            n_bars -= 4
    sections = plan_sections(rng, n_bars, short)

    # harmony: a progression, sometimes with sevenths and a borrowed chord
    degrees = rng.choice(PROGRESSIONS[mode])
    sevenths = rng.random() < 0.3
    prog = [diatonic_chord(steps, d, sevenths) for d in degrees]
    if rng.random() < 0.3:
        i = rng.randrange(1, len(prog))
        prog[i] = rng.choice(BORROWED[quality])
    if mode == "harmonic_minor" or (quality == "minor" and rng.random() < 0.3):
        # the raised leading tone: v -> V (or V7) where the progression has a v
        prog = [(r, ("7" if sevenths else "maj")) if r == 7 and q in ("min", "min7") else (r, q)
                for r, q in prog]
    bars_per_chord = rng.choice([1, 1, 2]) if bpm < 150 else rng.choice([1, 2, 2])
    chords_per_bar = 2 if (not short and bpm < 100 and rng.random() < 0.3) else 1
    pedal_sections = set()
    if rng.random() < 0.25:
        pedal_sections = {"intro", "breakdown"} if rng.random() < 0.6 else \
            {"intro", "build", "drop", "breakdown", "outro"}
    modulation = None
    if not short and rng.random() < 0.15 and len(sections) >= 4:
        # the last drop and outro (or the last two sections) move to a new key
        shift = rng.choice([1, 2, 5, 7, -2, 3 if quality == "major" else -3])
        start_sec = len(sections) - 2
        for j in range(len(sections) - 1, 0, -1):
            if sections[j][0] == "drop":
                start_sec = j
                break
        modulation = {"shift": shift, "from_section": start_sec}

    drumless_intro = rng.random() < 0.6
    kit = rng.choice(DRUM_KITS)
    pad = rng.choice(PADS)
    keys = rng.choice(KEYS)
    bass = rng.choice(BASSES)
    lead = rng.choice(LEADS)
    comp = rng.choice(["pad", "stabs", "arp", "strum"])
    variant = rng.randrange(4)
    ticks_per_step = PPQ // spb

    # tempo map: one tempo per beat (constant, or drifting)
    n_beats = n_bars * bpb
    tempos = []
    for b in range(n_beats + 1):
        f = 1.0
        if drift:
            period = drift["period_bars"] * bpb
            if drift["kind"] == "ramp":
                f = 1.0 + drift["depth"] * b / n_beats
            else:
                f = 1.0 + drift["depth"] * math.sin(2 * math.pi * b / period)
        tempos.append(int(round(60e6 / (bpm * f))))
    beat_time = [0.0]
    for b in range(n_beats + 1):
        beat_time.append(beat_time[-1] + tempos[b] / 1e6)

    def t_of_tick(tick):
        b = min(tick // PPQ, len(tempos) - 1)
        r = tick - b * PPQ
        return beat_time[b] + r / PPQ * tempos[b] / 1e6

    midi = Midi()
    midi.meta(0, 0x58, bytes([bpb, 2, 24, 8]))
    last_us = None
    for b, us in enumerate(tempos):
        if us != last_us:
            midi.meta(b * PPQ, 0x51, us.to_bytes(3, "big"))
            last_us = us
    # channels: 0 pad/keys, 1 bass, 2 lead, 3 arp/stabs, 9 drums
    chan_prog = {0: pad if comp == "pad" else keys, 1: bass, 2: lead,
                 3: keys if comp != "pad" else pad}
    for ch, program in chan_prog.items():
        midi.program(0, ch, program)
        midi.control(0, ch, 7, 100)
        midi.control(0, ch, 10, [64, 64, 44, 84][ch])
        midi.control(0, ch, 91, rng.randint(20, 70))
        midi.control(0, ch, 101, 0)  # RPN 0: pitch-bend range +-2 semitones
        midi.control(0, ch, 100, 0)
        midi.control(0, ch, 6, 2)
        midi.control(0, ch, 38, 0)
        if cents:
            midi.bend(0, ch, 8192 + int(round(cents / 200.0 * 8192)))
    midi.program(0, 9, kit)
    midi.control(0, 9, 7, 110)
    midi.control(0, 9, 91, 20)

    def tick(bar, step):
        return (bar * bpb) * PPQ + step * ticks_per_step

    steps_per_bar = bpb * spb
    drums = drum_pattern(rng, groove, variant)
    bass_rh = bass_rhythm(groove, variant, bpb, spb)
    if spb == 3:  # bass rhythm is written on a sixteenth grid; shuffle uses triplets
        bass_rh = [(s, n) for s, n in bass_rh if s < steps_per_bar]
    motif_len = rng.choice([1, 2])
    motif = []
    pos = 0
    while pos < motif_len * steps_per_bar:
        dur = rng.choice([spb // 2 or 1, spb, spb, spb * 2]) if spb == 4 else rng.choice([1, 2, 3])
        dur = max(1, min(dur, motif_len * steps_per_bar - pos))
        rest = rng.random() < 0.2
        motif.append((pos, dur, None if rest else rng.randrange(-3, 5)))
        pos += dur
    melody_octave = 72 if rng.random() < 0.5 else 67

    chords_out, sections_out, key_segments = [], [], []
    bar = 0
    cur_key = None
    chord_index = 0
    for si, (label, nb) in enumerate(sections):
        sec_tonic = tonic
        if modulation and si >= modulation["from_section"]:
            sec_tonic = (tonic + modulation["shift"]) % 12
        if cur_key != sec_tonic:
            if key_segments:
                key_segments[-1]["end"] = round(beat_time[bar * bpb], 4)
            seg = key_label(sec_tonic, mode)
            seg.update({"start": round(beat_time[bar * bpb], 4), "end": None})
            key_segments.append(seg)
            cur_key = sec_tonic
        energy = {"intro": 0.3, "build": 0.6, "drop": 1.0, "breakdown": 0.4,
                  "outro": 0.4}[label]
        sections_out.append({"start": round(beat_time[bar * bpb], 4),
                             "end": round(beat_time[(bar + nb) * bpb], 4),
                             "label": label, "bar": bar, "energy": energy})
        for k in range(nb):
            b = bar + k
            frac = k / max(1, nb - 1)
            vel_scale = {"intro": 0.75, "build": 0.7 + 0.3 * frac, "drop": 1.0,
                         "breakdown": 0.7, "outro": 1.0 - 0.4 * frac}[label]
            # drums
            play_drums = not (label == "intro" and drumless_intro) and label != "breakdown"
            if label == "breakdown" and rng.random() < 0.3:
                for s in range(0, steps_per_bar, spb):
                    midi.note(tick(b, s), tick(b, s) + 60, 9, CHAT, 50)
            if play_drums:
                for s, n, v in drums:
                    if label in ("intro", "outro") and n in (SNARE, CLAP, RIM) and k % 2 == 0:
                        continue
                    if label == "build" and frac < 0.5 and n == KICK and s != 0:
                        continue
                    v = v * vel_scale * rng.uniform(0.9, 1.0)
                    midi.note(tick(b, s), tick(b, s) + 60, 9, n, v)
                if label == "build" and k == nb - 1:
                    for s in range(steps_per_bar // 2, steps_per_bar):
                        midi.note(tick(b, s), tick(b, s) + 40, 9, SNARE, 60 + 3 * s)
                if k == 0 and label == "drop":
                    midi.note(tick(b, 0), tick(b, 0) + PPQ, 9, CRASH, 110)
            # chords: which chord sounds in this bar (or half bar)
            for half in range(chords_per_bar):
                span = steps_per_bar // chords_per_bar
                s0 = half * span
                root, q = prog[(chord_index // bars_per_chord if chords_per_bar == 1 else
                                chord_index) % len(prog)]
                chord_index += 1
                root_pc = (sec_tonic + root) % 12
                t0, t1 = tick(b, s0), tick(b, s0 + span)
                lab = chord_label(root_pc, q)
                start = round(t_of_tick(t0), 4)
                if chords_out and chords_out[-1]["label"] == lab and \
                        chords_out[-1]["end"] == start:
                    chords_out[-1]["end"] = round(t_of_tick(t1), 4)
                else:
                    chords_out.append({"start": start, "end": round(t_of_tick(t1), 4),
                                       "label": lab})
                tones = [(root_pc + x) for x in CHORD_STEPS[q]]
                voicing = sorted(55 + (t - 55) % 12 for t in tones)
                cvel = 70 * vel_scale
                if comp == "pad" or label in ("intro", "breakdown"):
                    for nt in voicing:
                        midi.note(t0, t1 - 10, 0, nt, cvel)
                if comp == "stabs" and label not in ("breakdown",):
                    for s in range(s0, s0 + span):
                        if (s % spb == spb // 2 and groove != "shuffle") or \
                                (groove == "shuffle" and s % 3 == 2):
                            for nt in voicing:
                                midi.note(tick(b, s), tick(b, s) + ticks_per_step, 3, nt,
                                          cvel * 1.1)
                if comp == "arp":
                    seq = voicing + [voicing[0] + 12]
                    for j, s in enumerate(range(s0, s0 + span, 1 if spb == 3 else 2)):
                        nt = seq[j % len(seq)]
                        midi.note(tick(b, s), tick(b, s) + ticks_per_step * 2 - 10, 3, nt,
                                  cvel * 0.9)
                if comp == "strum":
                    for j, nt in enumerate(voicing):
                        for s in range(s0, s0 + span, spb * 2 if span >= spb * 2 else span):
                            midi.note(tick(b, s) + 12 * j, tick(b, s) + spb * 2 *
                                      ticks_per_step - 10, 3, nt, cvel)
                # bass: the chord root, or the pedal tone
                bass_pc = sec_tonic if label in pedal_sections else root_pc
                bnote = 36 + (bass_pc - 36) % 12
                if label != "breakdown" or label in pedal_sections:
                    for s, n in bass_rh:
                        if s0 <= s < s0 + span:
                            octave = 12 if (groove == "four_on_floor" and variant % 2
                                            and s % 4 == 2) else 0
                            midi.note(tick(b, s), tick(b, min(s + n, steps_per_bar)) - 15, 1,
                                      bnote + octave, 95 * vel_scale)
                # melody in the drops and breakdowns: the motif on the key's scale, chord
                # tones on the downbeats
                if label in ("drop", "breakdown") or (label == "build" and k >= nb // 2):
                    scale = [(sec_tonic + x) % 12 for x in steps]
                    bar_in_motif = k % motif_len
                    for pos, dur, deg in motif:
                        ms = pos - bar_in_motif * steps_per_bar
                        if deg is None or not s0 <= ms < s0 + span:
                            continue
                        if ms % spb == 0:
                            pc = tones[abs(deg) % len(tones)] % 12
                        else:
                            pc = scale[deg % 7]
                        nt = melody_octave + (pc - melody_octave) % 12
                        midi.note(tick(b, ms), tick(b, ms + dur) - 10, 2, nt,
                                  90 * vel_scale)
        bar += nb
    # a last chord on the tonic, held while the reverb dies away
    end_t = tick(bar, 0)
    final = [(cur_key + x) for x in (CHORD_STEPS["min"] if quality == "minor"
                                     else CHORD_STEPS["maj"])]
    for nt in final:
        midi.note(end_t, end_t + PPQ * bpb, 0, 55 + (nt - 55) % 12, 60)
    midi.note(end_t, end_t + PPQ * bpb, 1, 36 + (cur_key - 36) % 12, 80)
    chords_out.append({"start": round(t_of_tick(end_t), 4),
                       "end": round(t_of_tick(end_t + PPQ * bpb), 4),
                       "label": chord_label(cur_key, "min" if quality == "minor" else "maj")})
    end_tick = end_t + PPQ * bpb + PPQ  # one more beat of tail
    duration = round(t_of_tick(end_tick), 4)
    chords_out.append({"start": chords_out[-1]["end"], "end": duration, "label": "N"})
    key_segments[-1]["end"] = duration
    sections_out.append({"start": sections_out[-1]["end"], "end": duration,
                         "label": "end", "bar": bar, "energy": 0.1})

    beats = [round(beat_time[b], 4) for b in range(n_beats)]
    downbeats = [round(beat_time[b], 4) for b in range(0, n_beats, bpb)]
    local = [60e6 / us for us in tempos[:n_beats]]
    local_sorted = sorted(local)
    median_bpm = local_sorted[len(local_sorted) // 2]
    main_key = max(key_segments, key=lambda s: s["end"] - s["start"])
    labels = {
        "id": song["id"], "generator": GENERATOR_VERSION, "seed": seed, "index": index,
        "duration": duration,
        "key": {k: main_key[k] for k in ("key", "camelot", "tonic", "mode")},
        "key_segments": key_segments if len(key_segments) > 1 else None,
        "tuning_cents": cents,
        "tempo": round(median_bpm, 4),
        "tempo_constant": drift is None,
        "tempo_curve": [[beats[b], round(local[b], 4)] for b in range(0, n_beats, bpb)]
        if drift else None,
        "tempo_drift": drift,
        "time_signature": "%d/4" % bpb,
        "groove": groove,
        "drums_in_intro": not drumless_intro,
        "pedal_sections": sorted(pedal_sections),
        "harmony": {"progression": [chord_label((tonic + r) % 12, q) for r, q in prog],
                    "sevenths": sevenths, "bars_per_chord": bars_per_chord
                    if chords_per_bar == 1 else 0.5},
        "instruments": {"drum_kit": kit, "chords": chan_prog[0], "bass": bass,
                        "lead": lead, "comp": comp},
        "beats": beats,
        "downbeats": downbeats,
        "chords": chords_out,
        "sections": sections_out,
    }
    return midi.to_bytes(end_tick), labels


# --- rendering -----------------------------------------------------------------------

def render(mid_path, flac_path, soundfont):
    """fluidsynth renders float stereo WAV; ffmpeg downmixes to 16-bit mono FLAC."""
    with tempfile.TemporaryDirectory(prefix="sfa-corpus-") as tmp:
        wav = os.path.join(tmp, "out.wav")
        subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.5", "-r", "44100", "-O", "float",
                        "-T", "wav", "-F", wav, soundfont, mid_path],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", wav,
                        "-af", "pan=mono|c0=0.5*c0+0.5*c1", "-c:a", "flac", "-sample_fmt",
                        "s16", "-compression_level", "8", "-bitexact", "-map_metadata",
                        "-1", flac_path], check=True)


def check_tools(soundfont):
    """A sentence naming what is missing for rendering, or None."""
    missing = []
    for tool, pkg in (("fluidsynth", "fluidsynth"), ("ffmpeg", "ffmpeg")):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ.get("PATH", "/usr/bin").split(os.pathsep)):
            missing.append("%s (Debian package %s)" % (tool, pkg))
    if not os.path.isfile(soundfont):
        missing.append("the soundfont %s (Debian package fluid-soundfont-gm)" % soundfont)
    if missing:
        return "Rendering needs " + " and ".join(missing) + \
            " (scripts/deps.sh installs it all)."
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--short", action="store_true", help="5-8 s songs (the fixtures)")
    ap.add_argument("--only", default="", help="comma-separated song ids to (re)make")
    ap.add_argument("--no-render", action="store_true", help="MIDI and labels only")
    ap.add_argument("--soundfont", default=SOUNDFONT)
    args = ap.parse_args()

    if not args.no_render:
        problem = check_tools(args.soundfont)
        if problem:
            sys.exit(problem)
    os.makedirs(args.out_dir, exist_ok=True)
    only = {s for s in args.only.split(",") if s}
    manifest = []
    for i in range(args.count):
        data, labels = build_song(args.seed, i, args.short)
        sid = labels["id"]
        manifest.append({"id": sid, "key": labels["key"]["key"],
                         "mode": labels["key"]["mode"], "tempo": labels["tempo"],
                         "groove": labels["groove"], "duration": labels["duration"]})
        if only and sid not in only:
            continue
        base = os.path.join(args.out_dir, sid)
        with open(base + ".mid", "wb") as f:
            f.write(data)
        with open(base + ".json", "w") as f:
            json.dump(labels, f, indent=1, sort_keys=True)
            f.write("\n")
        if not args.no_render:
            render(base + ".mid", base + ".flac", args.soundfont)
        print("%s %-9s %-14s %6.1f BPM %-13s %5.1f s" % (
            sid, labels["key"]["key"], labels["key"]["mode"], labels["tempo"],
            labels["groove"], labels["duration"]), flush=True)
    if not only:
        with open(os.path.join(args.out_dir, "corpus.json"), "w") as f:
            json.dump({"generator": GENERATOR_VERSION, "seed": args.seed,
                       "count": args.count, "short": args.short, "songs": manifest},
                      f, indent=1, sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    main()
