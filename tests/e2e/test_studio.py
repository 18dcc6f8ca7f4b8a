#!/usr/bin/python3
"""The studio (the browser app in web/) driven through the real server by Debian's Chromium
(tests/e2e/studio_flow.mjs): import, analyse, separate with live progress, the mixer's
audio graph, DAW edits and export, downloads, delete; axe-core on every page at 1440 and
390 px. Screenshots are kept in SFA_ARTIFACTS (default: a temporary folder)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from fakes import AudioServer, FakeSpotify, magic  # noqa: E402
from harness import Tap, check, eq, groove_wav, run_suite  # noqa: E402

tap = Tap()
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.environ.get("SFA_FIXTURES", os.path.join(ROOT, "tests", "fixtures"))
TINY = os.path.join(FIXTURES, "nn", "tiny_htdemucs.th")
ARTIFACTS = os.environ.get("SFA_ARTIFACTS") or tempfile.mkdtemp(prefix="sfa-studio-")
SPOTIFY_TRACK = magic("okStudio")  # the fake Spotify's "Song Studio", 30 s
# what its download gives: a 15 s rendered breakbeat, long enough for sections
STUDIO_SONG = os.path.join(FIXTURES, "dsp", "corpus_breakbeat_126.flac")


def node_ready():
    check(shutil.which("node"), "node is not installed (scripts/deps.sh installs nodejs)")
    for mod in ("playwright-core", "axe-core"):
        check(os.path.isdir(os.path.join(ROOT, "node_modules", mod)),
              f"node_modules/{mod} is missing: run `npm ci` in the repository root")
    check(os.path.exists(os.environ.get("SFA_CHROMIUM", "/usr/bin/chromium")),
          "Chromium is missing: `apt-get install chromium` (scripts/deps.sh does)")


@tap.case
def studio_journey_in_chromium(srv):
    node_ready()
    check(os.path.exists(TINY), f"missing test fixture {TINY}")
    models = os.path.join(srv.data_dir, "models")
    os.makedirs(models, exist_ok=True)
    shutil.copy(TINY, os.path.join(models, "955717e8.th"))
    audio = os.path.join(srv.data_dir, "Studio Groove.wav")
    with open(audio, "wb") as f:
        f.write(groove_wav(6.0, bpm=120))
    r = subprocess.run(["node", os.path.join(ROOT, "tests", "e2e", "studio_flow.mjs"),
                        f"http://127.0.0.1:{srv.port}", audio, ARTIFACTS,
                        f"https://open.spotify.com/track/{SPOTIFY_TRACK}"],
                       capture_output=True, text=True, timeout=240, cwd=ROOT)
    eq(r.returncode, 0, f"studio flow failed: {r.stderr.strip()[-1500:]}")
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    eq(seen["audio_context"], "running", "the mixer's AudioContext runs")
    check(all(n == 0 for n in seen["axe"].values()), f"axe: {seen['axe']}")
    print(f"# screenshots in {ARTIFACTS}: {', '.join(seen['pages'])}")


def main():
    """The server talks to the fake Spotify, and downloads (the real yt-dlp and ffmpeg)
    come from a local audio server in URL-template mode."""
    check(os.path.exists(STUDIO_SONG), f"missing test fixture {STUDIO_SONG}")
    with open(STUDIO_SONG, "rb") as f:
        audio_src = AudioServer({f"/{SPOTIFY_TRACK}.flac": ("audio/flac", f.read())})
    fake = FakeSpotify()
    return run_suite(tap, {**fake.env(), "SFA_RATE_AUTH": "100000", "SFA_RATE_API": "100000",
                           "SFA_RATE_HEAVY": "100000",
                           "SFA_DOWNLOAD_QUERY": f"{audio_src.url}/{{spotify_id}}.flac"},
                     stop=(fake.stop, audio_src.stop))


if __name__ == "__main__":
    sys.exit(main())
