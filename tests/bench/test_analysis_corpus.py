#!/usr/bin/python3
"""The analysis corpus generator (bench/analysis-accuracy/make_corpus.py) recreates the
committed fixture songs (tests/fixtures/analysis-corpus) exactly: the same MIDI bytes and
labels from the same seed, and, rendered again with fluidsynth and the soundfont, the same
PCM as the committed FLACs. Also checks that the labels hang together (beats ascending,
downbeats among the beats, chords and sections back to back, Camelot codes).

Fails with a sentence, not a skip, when fluidsynth, ffmpeg or the soundfont is missing:
the corpus cannot be recreated without them. Prints TAP.
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "analysis-corpus")
GENERATOR = os.path.join(ROOT, "bench", "analysis-accuracy", "make_corpus.py")
RENDERED = ["f0002", "f0005"]  # tresillo and half-time; rendering all six takes too long

sys.path.insert(0, os.path.dirname(GENERATOR))
import make_corpus  # noqa: E402

n = 0
failed = 0


def tap(ok, what, detail=""):
    global n, failed
    n += 1
    failed += 0 if ok else 1
    print("%s %d - %s" % ("ok" if ok else "not ok", n, what))
    for line in detail.splitlines():
        print("# " + line)


def pcm_md5(path):
    r = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", path, "-map", "0:a",
                        "-f", "md5", "-"], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else "error: " + r.stderr.strip()


def consistent(lab):
    """A sentence about the first inconsistency in one song's labels, or ''."""
    beats, downs = lab["beats"], lab["downbeats"]
    if any(b <= a for a, b in zip(beats, beats[1:])):
        return "beats are not ascending"
    if not set(downs) <= set(beats) or downs[0] != beats[0]:
        return "downbeats are not bar starts among the beats"
    bpb = int(lab["time_signature"].split("/")[0])
    if downs != beats[::bpb]:
        return "downbeats are not every %d beats" % bpb
    for name in ("chords", "sections"):
        segs = lab[name]
        if segs[0]["start"] != 0.0 or segs[-1]["end"] != lab["duration"] or any(
                b["start"] != a["end"] for a, b in zip(segs, segs[1:])):
            return "%s are not back to back from 0 to the duration" % name
    k = lab["key"]
    tonic = make_corpus.PITCH.index(k["tonic"])
    minor = k["key"].endswith("minor")
    if k["camelot"] != make_corpus.camelot(tonic, minor) or \
            make_corpus.MODES[k["mode"]][1] != ("minor" if minor else "major"):
        return "the key's Camelot code or major/minor reading is wrong"
    if make_corpus.camelot(9, True) != "8A" or make_corpus.camelot(0, False) != "8B":
        return "Camelot codes are off the wheel (A minor 8A, C major 8B)"
    return ""


def main():
    with open(os.path.join(FIXTURES, "corpus.json")) as f:
        manifest = json.load(f)
    ids = [s["id"] for s in manifest["songs"]]
    problem = make_corpus.check_tools(make_corpus.SOUNDFONT)
    tap(problem is None, "fluidsynth, ffmpeg and the General MIDI soundfont are installed",
        problem or "")
    with tempfile.TemporaryDirectory(prefix="sfa-corpus-test-") as tmp:
        r = subprocess.run([sys.executable, GENERATOR, tmp, "--seed", str(manifest["seed"]),
                            "--count", str(manifest["count"]), "--short", "--no-render"],
                           capture_output=True, text=True)
        tap(r.returncode == 0, "make_corpus.py --no-render runs", r.stderr)
        for sid in ids:
            diffs = []
            for ext in (".mid", ".json"):
                with open(os.path.join(FIXTURES, sid + ext), "rb") as f:
                    want = f.read()
                try:
                    with open(os.path.join(tmp, sid + ext), "rb") as f:
                        got = f.read()
                except OSError:
                    got = None
                if got != want:
                    diffs.append(ext)
            tap(not diffs, "%s: MIDI and labels recreated byte for byte" % sid,
                "differs: " + " ".join(diffs) if diffs else "")
            with open(os.path.join(FIXTURES, sid + ".json")) as f:
                why = consistent(json.load(f))
            tap(not why, "%s: labels are consistent" % sid, why)
        if problem is None:
            r = subprocess.run([sys.executable, GENERATOR, tmp, "--seed", str(manifest["seed"]),
                                "--count", str(manifest["count"]), "--short",
                                "--only", ",".join(RENDERED)], capture_output=True, text=True)
            tap(r.returncode == 0, "make_corpus.py renders %s" % ", ".join(RENDERED), r.stderr)
            for sid in RENDERED:
                want = pcm_md5(os.path.join(FIXTURES, sid + ".flac"))
                got = pcm_md5(os.path.join(tmp, sid + ".flac"))
                tap(want == got and not want.startswith("error"),
                    "%s: rendered again, the PCM equals the committed FLAC's" % sid,
                    "committed %s, rendered %s" % (want, got))
        else:
            tap(False, "rendering %s: %s" % (", ".join(RENDERED), problem))
    print("1..%d" % n)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
