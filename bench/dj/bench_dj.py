#!/usr/bin/python3
"""The DJ toolkit on a 4-minute song (generated with ffmpeg's lavfi: a chord pad, a kick on
every beat at 124 BPM, stereo 44.1 kHz): for each command, the wall time, the speed in
minutes of audio per second, and the peak RSS (GNU time's maximum resident set).

  sfa transform +2 semitones at 1.05x (librubberband R3, offline)
  sfa analyze --features loudness (EBU R128 with libebur128, streamed)
  sfa analyze --features tempo (the refined tempo: reads within 0.1 BPM of 124)
  sfa nistems-render (five AAC tracks from the song and four 4-minute stems)
  the Rekordbox and Traktor documents of a 1,000-track library (GET /export/*.xml|nml)

Usage: /usr/bin/python3 bench/dj/bench_dj.py [SECONDS] (default 240), after `make build`.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SFA = os.environ.get("SFA_BIN", os.path.join(ROOT, "build", "sfa"))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from harness import Server, sine_wav  # noqa: E402

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 240.0


def timed(argv):
    t0 = time.time()
    r = subprocess.run(["/usr/bin/time", "-f", "RSS %M", *argv], capture_output=True, text=True)
    wall = time.time() - t0
    if r.returncode != 0:
        sys.exit(f"{argv[1]} failed: {r.stderr[-800:]}")
    rss = next(int(line.split()[1]) for line in r.stderr.splitlines() if line.startswith("RSS"))
    return wall, rss / 1024, r.stdout


def row(what, wall, rss, minutes):
    print(f"{what:<46} {wall:7.2f} s  {minutes / wall:6.2f} min of audio/s  peak RSS {rss:6.0f} MB")


def main():
    with tempfile.TemporaryDirectory() as d:
        song = os.path.join(d, "song.wav")
        spb = 60.0 / 124
        pad = "0.2*sin(2*PI*220*t)+0.15*sin(2*PI*277.2*t)"
        kick = f"0.9*sin(2*PI*55*t)*exp(-mod(t,{spb})*30)"
        graph = f"aevalsrc=exprs='{pad}+{kick}|{pad}+{kick}':s=44100:d={SECONDS}"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", graph, song],
                       check=True)
        minutes = SECONDS / 60
        print(f"# a {SECONDS:.0f} s stereo song at 44.1 kHz, 124 BPM; {os.cpu_count()} cores")
        out = os.path.join(d, "shifted.flac")
        wall, rss, _ = timed([SFA, "transform", song, "--semitones", "2", "--tempo-ratio", "1.05",
                              "--out", out])
        row("transform +2 st, 1.05x (R3)", wall, rss, minutes)
        wall, rss, text = timed([SFA, "analyze", song, "--features", "loudness"])
        row(f"loudness ({json.loads(text)['loudness']['integrated_lufs']:.1f} LUFS)", wall, rss,
            minutes)
        wall, rss, text = timed([SFA, "analyze", song, "--features", "tempo"])
        row(f"tempo ({json.loads(text)['tempo']:.2f} BPM, true 124)", wall, rss, minutes)
        ni = os.path.join(d, "song.stem.mp4")
        wall, rss, _ = timed([SFA, "nistems-render", ni, song, song, song, song, song,
                              "--title", "Bench", "--artist", "Bench"])
        row(f"NI Stems, 5 x AAC ({os.path.getsize(ni) / 1e6:.1f} MB)", wall, rss, minutes * 5)

        srv = Server(env={"SFA_RATE_API": "1000000"}).start()
        try:
            srv.cli("user", "create", "--email", "dj@example.com", "--password", "bench password")
            uid = srv.cli("user", "create", "--email", "x@example.com", "--password", "x" * 12)
            key = srv.cli("token", "create", "--email", "dj@example.com").stdout.strip()
            auth = {"Authorization": f"Bearer {key}"}
            import sqlite3
            db = sqlite3.connect(os.path.join(srv.data_dir, "sfa.db"), timeout=10)
            user = db.execute("SELECT id FROM users WHERE email = 'dj@example.com'").fetchone()[0]
            os.makedirs(os.path.join(srv.data_dir, "uploads", "downloads"), exist_ok=True)
            audio = sine_wav(0.1)
            with db:
                for i in range(1000):
                    tid = f"00000000-0000-4000-8000-{i:012d}"
                    rel = f"downloads/{tid}.wav"
                    with open(os.path.join(srv.data_dir, "uploads", rel), "wb") as f:
                        f.write(audio)
                    db.execute("INSERT INTO tracks (id, user_id, title, artist, source, audio_path,"
                               " audio_format, audio_size, audio_rate, audio_channels, "
                               "audio_duration, created_at, updated_at) VALUES "
                               "(?,?,?,?,'upload',?,'wav',?,44100,2,240,?,?)",
                               (tid, user, f"Track {i} & <Friends>", f"Artist {i % 37}", rel,
                                len(audio), i, i))
                    db.execute("INSERT INTO analyses (user_id, track_id, job_id, result, created_at,"
                               " tempo, key_name, camelot, first_beat) VALUES (?,?,?,?,?,?,?,?,?)",
                               (user, tid, tid, "{}", i, 120 + i % 10, "A minor", "8A", 0.1))
            del uid
            for path in ("/export/rekordbox.xml", "/export/traktor.nml"):
                t0 = time.time()
                r = srv.client().get(path, headers=auth)
                wall = time.time() - t0
                if r.status != 200:
                    sys.exit(f"{path}: {r.status} {r.text[:300]}")
                print(f"{path + ', 1,000 tracks':<46} {wall * 1000:7.1f} ms  "
                      f"{len(r.body) / 1e6:.2f} MB")
        finally:
            srv.cleanup()


if __name__ == "__main__":
    main()
