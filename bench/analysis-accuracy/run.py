#!/usr/bin/python3
"""run.py - key, tempo and beat accuracy of our analyser and its anchors on a corpus.

    run.py CORPUS_DIR [--build DIR] [--anchors librosa,qm,aubio] [--rerun-anchors]
                      [--limit N] [--save-ours]

CORPUS_DIR holds songs made by make_corpus.py: sNNNN.flac with sNNNN.json labels. Each
analyser runs once per song, one process at a time (wall time and peak RSS from wait4):

    ours     build/sfa analyze FILE --features tempo,key,chords,key_changes
    librosa  build/bench/analysis-accuracy/anchor_librosa: librosa's beat_track tempo and
             beats, Krumhansl-Kessler key on librosa's mean chroma (our rule before issue 17)
    qm       build/bench/analysis-accuracy/anchor_qm: Queen Mary's GetKeyMode and
             TempoTrackV2 (qm-dsp, as qm-vamp-plugins, Sonic Visualiser and Mixxx use them)
    aubio    build/bench/analysis-accuracy/anchor_aubio: aubio_tempo (no key)

The anchors' raw outputs are kept in CORPUS_DIR/anchors.json and reused, so a rerun only
runs our analyser (--rerun-anchors runs them again). Our latest outputs go to
CORPUS_DIR/ours.json with --save-ours.

Measures (mir_eval's definitions):
- key exact: the label's major/minor key (a dorian song in A is "A minor"); MIREX weighted:
  1 exact, 0.5 a fifth above in the same mode, 0.3 relative, 0.2 parallel, else 0.
- tempo Acc1: within 4 % of the labelled tempo (the median of a drifting song's curve);
  Acc2: within 4 % of it times 1, 2, 3, 1/2 or 1/3.
- beat / downbeat F-measure: one-to-one matches within +-70 ms, beats in the first 5 s
  ignored on both sides (mir_eval's trim); "n/a" where the analyser gives none.
- beat offset: the median of estimate - label over beats matched within 70 ms (a
  systematic lag shows here before it costs F-measure).
- chords (MIREX "majmin", weighted chord symbol recall): the share of the labelled time
  where the estimate has the label's root and its triad's quality, major or minor (a
  seventh counts as its triad: G:7 and G:maj7 are major, A:min7 and A:minmaj7 minor; N
  must be N). Time under a label of another quality (dim, sus, ...) is left out, time the
  estimate does not cover counts as wrong. Totalled over the corpus by duration; "root"
  is the same with the root alone (N must still be N).
- key over time (key_changes): the share of the song's time where the estimated stretch's
  key is the labelled one (key_segments for a modulating song, else its key), by duration.
- precision: on constant-tempo songs, the median |estimate - label| in BPM over the songs
  within Acc1, and the share of constant-tempo songs within +-0.1 BPM.
Prints Markdown tables: overall, then by mode, groove and condition.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PITCH = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
FLAT = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#"}
ANALYSERS = ["ours", "librosa", "qm", "aubio"]
NAMES = {"ours": "ours (sfa analyze)", "librosa": "librosa (K-K key, beat_track)",
         "qm": "Queen Mary (qm-dsp)", "aubio": "aubio"}


def command(name, build, path):
    if name == "ours":
        return [os.path.join(build, "sfa"), "analyze", path, "--features", "tempo,key,chords,key_changes"]
    return [os.path.join(build, "bench", "analysis-accuracy", "anchor_" + name), path]


def run_one(cmd):
    """(parsed JSON or None, wall seconds, peak RSS in KiB, error text)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        if p.returncode != 0:
            return None, wall, ru.ru_maxrss, err.read().decode(errors="replace").strip()
        try:
            return json.loads(out.read()), wall, ru.ru_maxrss, ""
        except ValueError as e:
            return None, wall, ru.ru_maxrss, "bad JSON: %s" % e


def parse_key(name):
    """'A minor' -> (9, True); None for no key."""
    if not name:
        return None
    parts = name.split()
    if len(parts) != 2 or parts[1] not in ("major", "minor"):
        return None
    tonic = FLAT.get(parts[0], parts[0])
    if tonic not in PITCH:
        return None
    return PITCH.index(tonic), parts[1] == "minor"


def mirex(ref, est):
    if est is None:
        return 0.0
    (rt, rm), (et, em) = ref, est
    if (rt, rm) == (et, em):
        return 1.0
    if rm == em and (et - rt) % 12 == 7:
        return 0.5
    if rm != em:
        if not rm and (rt - et) % 12 == 3:  # ref major, est its relative minor
            return 0.3
        if rm and (et - rt) % 12 == 3:      # ref minor, est its relative major
            return 0.3
        if rt == et:
            return 0.2
    return 0.0


def tempo_ok(ref, est, factors):
    if not est or est <= 0:
        return False
    return any(abs(est - ref * f) <= 0.04 * ref * f for f in factors)


def f_measure(ref, est, window=0.07, trim=5.0):
    ref = [t for t in ref if t >= trim]
    est = sorted(t for t in est if t >= trim)
    if not ref or not est:
        return 0.0
    hits, j = 0, 0
    for r in ref:  # beats are > 2 windows apart, so greedy matching is the best one
        while j < len(est) and est[j] < r - window:
            j += 1
        if j < len(est) and abs(est[j] - r) <= window:
            hits += 1
            j += 1
    if hits == 0:
        return 0.0
    p, r = hits / len(est), hits / len(ref)
    return 2 * p * r / (p + r)


def beat_offsets(ref, est, window=0.07):
    """est - ref for each labelled beat with an estimate within the window."""
    est = sorted(est)
    offs, j = [], 0
    for r in ref:
        while j + 1 < len(est) and abs(est[j + 1] - r) <= abs(est[j] - r):
            j += 1
        if est and abs(est[j] - r) <= window:
            offs.append(est[j] - r)
    return offs


REF_MAJMIN = {"maj": "maj", "7": "maj", "maj7": "maj", "min": "min", "min7": "min",
              "minmaj7": "min"}
OUR_MAJMIN = {"": "maj", "7": "maj", "maj7": "maj", "m": "min", "m7": "min"}


def ref_chord(label):
    """Harte 'A#:min7' -> (10, 'min'); 'N' -> 'N'; None for a quality majmin leaves out."""
    if label == "N":
        return "N"
    root, _, qual = label.partition(":")
    root = FLAT.get(root, root)
    if root not in PITCH or (qual or "maj") not in REF_MAJMIN:
        return None
    return PITCH.index(root), REF_MAJMIN[qual or "maj"]


def our_chord(label):
    """'A#m7' -> (10, 'min'); 'N' -> 'N'; None when unreadable."""
    if label == "N":
        return "N"
    root = label[:2] if label[1:2] == "#" else label[:1]
    qual = OUR_MAJMIN.get(label[len(root):])
    if root not in PITCH or qual is None:
        return None
    return PITCH.index(root), qual


def chord_overlap(ref, est):
    """(seconds right on majmin, seconds right on the root, seconds evaluated)."""
    est = sorted((c["start"], c["end"], our_chord(c["label"])) for c in est)
    right = root = total = 0.0
    for r in ref:
        rc = ref_chord(r["label"])
        if rc is None or r["end"] <= r["start"]:
            continue
        total += r["end"] - r["start"]
        for a, b, ec in est:
            ov = min(b, r["end"]) - max(a, r["start"])
            if ov <= 0 or ec is None:
                continue
            if ec == rc:
                right += ov
            if ec == rc or (rc != "N" and ec != "N" and ec[0] == rc[0]):
                root += ov
    return right, root, total


def score(labels, out):
    """Per-song measures of one analyser's output (None fields where it gives none)."""
    ref_key = parse_key(labels["key"]["key"])
    s = {}
    if out is None:
        return {"key_exact": 0.0, "mirex": 0.0, "acc1": 0.0, "acc2": 0.0, "beat_f": 0.0,
                "downbeat_f": None, "abs_err": None, "within_01": 0.0, "offsets": []}
    if "key" in out:
        est = parse_key(out.get("key"))
        s["key_exact"] = 1.0 if est == ref_key else 0.0
        s["mirex"] = mirex(ref_key, est)
    ref_t, est_t = labels["tempo"], out.get("tempo") or 0.0
    s["acc1"] = 1.0 if tempo_ok(ref_t, est_t, [1]) else 0.0
    s["acc2"] = 1.0 if tempo_ok(ref_t, est_t, [1, 2, 3, 0.5, 1 / 3]) else 0.0
    s["beat_f"] = f_measure(labels["beats"], out.get("beats") or [])
    s["offsets"] = beat_offsets(labels["beats"], out.get("beats") or [])
    s["downbeat_f"] = f_measure(labels["downbeats"], out["downbeats"]) \
        if out.get("downbeats") is not None else None
    if out.get("key_changes") is not None:
        segs = labels.get("key_segments") or [
            {"start": 0.0, "end": labels["duration"], "key": labels["key"]["key"]}]
        hit = sum(max(0.0, min(e["end"], r["end"]) - max(e["start"], r["start"]))
                  for r in segs for e in out["key_changes"]
                  if parse_key(e["key"]) == parse_key(r["key"]))
        s["key_time"] = (hit, sum(r["end"] - r["start"] for r in segs))
    if out.get("chords") is not None:
        s["chords"] = chord_overlap(labels["chords"], out["chords"])
    if labels["tempo_constant"]:
        s["abs_err"] = abs(est_t - ref_t) if s["acc1"] else None
        s["within_01"] = 1.0 if abs(est_t - ref_t) <= 0.1 else 0.0
    return s


def auc(scores, right):
    """Area under the ROC curve: the chance that a right answer scores above a wrong one
    (ties count half); None when either class is empty."""
    pos = [c for c, r in zip(scores, right) if r]
    neg = [c for c, r in zip(scores, right) if not r]
    if not pos or not neg:
        return None
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def groups(labels):
    g = ["all", "mode: " + labels["key"]["mode"], "groove: " + labels["groove"]]
    if abs(labels.get("tuning_cents", 0)) >= 8:
        g.append("detuned (8-40 cents)")
    if not labels["tempo_constant"]:
        g.append("tempo drift")
    if labels.get("key_segments"):
        g.append("modulating")
    if (labels.get("harmony") or {}).get("sevenths"):
        g.append("sevenths")
    if labels.get("pedal_sections"):
        g.append("pedal bass")
    if not labels.get("drums_in_intro", True):
        g.append("intro without drums")
    if labels["time_signature"] == "3/4":
        g.append("3/4")
    if labels["tempo"] < 90:
        g.append("tempo < 90")
    elif labels["tempo"] >= 150:
        g.append("tempo >= 150")
    return g


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def pct(x):
    return "n/a" if x is None else "%.1f" % (100 * x)


def fmt3(x):
    return "n/a" if x is None else "%.3f" % x


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus_dir")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--anchors", default="librosa,qm,aubio")
    ap.add_argument("--rerun-anchors", action="store_true")
    ap.add_argument("--limit", type=int, default=0, help="only the first N songs")
    ap.add_argument("--save-ours", action="store_true")
    args = ap.parse_args()

    ids = sorted(f[:-5] for f in os.listdir(args.corpus_dir)
                 if f.endswith(".json") and f[0] in "sf" and f[1:5].isdigit()
                 and os.path.exists(os.path.join(args.corpus_dir, f[:-5] + ".flac")))
    if args.limit:
        ids = ids[:args.limit]
    if not ids:
        sys.exit("No songs (sNNNN.flac with sNNNN.json) in %s: make them with make_corpus.py."
                 % args.corpus_dir)
    labels = {}
    for sid in ids:
        with open(os.path.join(args.corpus_dir, sid + ".json")) as f:
            labels[sid] = json.load(f)
    anchors = [a for a in args.anchors.split(",") if a]
    for name in ["ours"] + anchors:
        exe = command(name, args.build, "x")[0]
        if not os.access(exe, os.X_OK):
            sys.exit("%s is missing: build it with `make build` (the anchors need "
                     "scripts/deps.sh's libqm-dsp-dev, libaubio-dev, libsndfile1-dev)." % exe)

    cache_path = os.path.join(args.corpus_dir, "anchors.json")
    cache = {}
    if os.path.exists(cache_path) and not args.rerun_anchors:
        with open(cache_path) as f:
            cache = json.load(f)
    results = {}
    for name in ["ours"] + anchors:
        done = cache.setdefault(name, {}) if name != "ours" else {}
        ran = 0
        for sid in ids:
            path = os.path.join(args.corpus_dir, sid + ".flac")
            size = os.path.getsize(path)
            hit = done.get(sid)
            if hit and hit.get("size") == size:
                continue
            out, wall, rss, err = run_one(command(name, args.build, path))
            if err:
                print("%s on %s failed: %s" % (name, sid, err), file=sys.stderr)
            done[sid] = {"out": out, "wall_s": round(wall, 4), "rss_kib": rss, "size": size}
            ran += 1
            if name != "ours" and ran % 25 == 0:
                with open(cache_path, "w") as f:
                    json.dump(cache, f)
        if name != "ours" and ran:
            with open(cache_path, "w") as f:
                json.dump(cache, f)
        print("%s: %d songs run, %d from %s" % (name, ran, len(ids) - ran,
              "anchors.json" if name != "ours" else "-"), file=sys.stderr)
        results[name] = done
    if args.save_ours:
        with open(os.path.join(args.corpus_dir, "ours.json"), "w") as f:
            json.dump(results["ours"], f)

    names = ["ours"] + anchors
    per = {n: {sid: score(labels[sid], results[n][sid]["out"]) for sid in ids} for n in names}
    has_key = {n: any("key_exact" in per[n][sid] for sid in ids) for n in names}
    constant = [sid for sid in ids if labels[sid]["tempo_constant"]]
    audio_s = sum(labels[sid]["duration"] for sid in ids)

    print("Corpus: %s, %d songs, %.1f minutes of audio, %d at constant tempo.\n"
          % (args.corpus_dir, len(ids), audio_s / 60, len(constant)))
    print("| analyser | key exact % | MIREX key | tempo Acc1 % | Acc2 % | beat F | "
          "beat offset ms | downbeat F | const. tempo: median abs err (BPM) | "
          "within 0.1 BPM % | wall s (per song) | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in names:
        p = per[n]
        key_e = mean(p[s].get("key_exact") for s in ids) if has_key[n] else None
        mx = mean(p[s].get("mirex") for s in ids) if has_key[n] else None
        errs = [p[s]["abs_err"] for s in constant if p[s]["abs_err"] is not None]
        walls = [results[n][s]["wall_s"] for s in ids]
        rss = max(results[n][s]["rss_kib"] for s in ids) / 1024
        offs = [o for s in ids for o in p[s]["offsets"]]
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.1f (%.2f) | %.0f |" % (
            NAMES[n], pct(key_e), fmt3(mx), pct(mean(p[s]["acc1"] for s in ids)),
            pct(mean(p[s]["acc2"] for s in ids)), fmt3(mean(p[s]["beat_f"] for s in ids)),
            "%+.0f" % (1000 * statistics.median(offs)) if offs else "n/a",
            fmt3(mean(p[s]["downbeat_f"] for s in ids)),
            "%.2f" % statistics.median(errs) if errs else "n/a",
            pct(mean(p[s].get("within_01") for s in constant)), sum(walls),
            sum(walls) / len(walls), rss))

    group_ids = {}
    for sid in ids:
        for g in groups(labels[sid]):
            group_ids.setdefault(g, []).append(sid)
    order = sorted((g for g in group_ids if g != "all"),
                   key=lambda g: (g.split(":")[0] if ":" in g else "~", g))
    key_names = [n for n in names if has_key[n]]
    print("\nKey by group: exact % / MIREX weighted\n")
    print("| group | songs | " + " | ".join(NAMES[n] for n in key_names) + " |")
    print("|---|---|" + "---|" * len(key_names))
    for g in ["all"] + order:
        sids = group_ids[g]
        cells = ["%s / %s" % (pct(mean(per[n][s]["key_exact"] for s in sids)),
                              fmt3(mean(per[n][s]["mirex"] for s in sids))) for n in key_names]
        print("| %s | %d | %s |" % (g, len(sids), " | ".join(cells)))
    chord_names = [n for n in names if any("chords" in per[n][s] for s in ids)]
    if chord_names:
        def wcsr(n, sids, k):
            parts = [per[n][s].get("chords", (0.0, 0.0, 0.0)) for s in sids]
            total = sum(p[2] for p in parts)
            return sum(p[k] for p in parts) / total if total else None
        print("\nChords: MIREX majmin weighted chord symbol recall / root only "
              "(%.1f minutes of labels)\n" % (sum(per[chord_names[0]][s].get(
                  "chords", (0, 0, 0))[2] for s in ids) / 60))
        print("| group | songs | " + " | ".join(NAMES[n] for n in chord_names) + " |")
        print("|---|---|" + "---|" * len(chord_names))
        for g in ["all"] + order:
            sids = group_ids[g]
            cells = ["%s / %s" % (pct(wcsr(n, sids, 0)), pct(wcsr(n, sids, 1)))
                     for n in chord_names]
            print("| %s | %d | %s |" % (g, len(sids), " | ".join(cells)))
    kt_names = [n for n in names if any("key_time" in per[n][s] for s in ids)]
    if kt_names:
        print("\nKey over time (key_changes): share of the time in the labelled key\n")
        print("| group | songs | " + " | ".join(NAMES[n] for n in kt_names) + " |")
        print("|---|---|" + "---|" * len(kt_names))
        for g in ["all"] + order:
            sids = group_ids[g]
            cells = []
            for n in kt_names:
                parts = [per[n][s].get("key_time", (0.0, 0.0)) for s in sids]
                tot = sum(p[1] for p in parts)
                cells.append(pct(sum(p[0] for p in parts) / tot if tot else None))
            print("| %s | %d | %s |" % (g, len(sids), " | ".join(cells)))
    conf_names = [n for n in names
                  if any((results[n][s]["out"] or {}).get("tempo_confidence") is not None
                         for s in ids)]
    if conf_names:
        print("\nTempo confidence: AUC for telling right tempos from wrong, and the share "
              "right by confidence\n")
        bins = [(0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.01)]
        print("| analyser | AUC Acc1 | AUC Acc2 | " + " | ".join(
            "%.1f-%.1f: songs, Acc1 %%, Acc2 %%" % (lo, min(hi, 1.0)) for lo, hi in bins) + " |")
        print("|---|---|---|" + "---|" * len(bins))
        for n in conf_names:
            conf = {s: (results[n][s]["out"] or {}).get("tempo_confidence") or 0.0 for s in ids}
            cells = []
            for lo, hi in bins:
                sids = [s for s in ids if lo <= conf[s] < hi]
                cells.append("%d, %s, %s" % (len(sids), pct(mean(per[n][s]["acc1"] for s in sids)),
                                             pct(mean(per[n][s]["acc2"] for s in sids)))
                             if sids else "0")
            print("| %s | %s | %s | %s |" % (
                NAMES[n], fmt3(auc([conf[s] for s in ids], [per[n][s]["acc1"] for s in ids])),
                fmt3(auc([conf[s] for s in ids], [per[n][s]["acc2"] for s in ids])),
                " | ".join(cells)))
    print("\nTempo and beats by group: Acc1 % / Acc2 % / beat F\n")
    print("| group | songs | " + " | ".join(NAMES[n] for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for g in ["all"] + order:
        sids = group_ids[g]
        cells = ["%s / %s / %s" % (pct(mean(per[n][s]["acc1"] for s in sids)),
                                   pct(mean(per[n][s]["acc2"] for s in sids)),
                                   fmt3(mean(per[n][s]["beat_f"] for s in sids)))
                 for n in names]
        print("| %s | %d | %s |" % (g, len(sids), " | ".join(cells)))


if __name__ == "__main__":
    main()
