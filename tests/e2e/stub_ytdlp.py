#!/usr/bin/python3
"""STUB yt-dlp FOR TESTS ONLY - it never talks to YouTube or any other site.

The search-mode e2e test (test_downloads.py) points SFA_YTDLP at this script, because a
real search needs YouTube, which offline tests cannot reach. It mimics the two yt-dlp
calls the download worker makes:

  * `... --flat-playlist --dump-json -- ytsearchN:<query>` prints canned search results,
    one JSON object per line (durations 150, 230, 205 and 216 s), like yt-dlp does.
  * `... -o <dir>/source.%(ext)s -- <url>` "downloads" by copying the WAV file named by
    $STUB_YTDLP_AUDIO to <dir>/source.wav, printing PROG progress lines as the real
    --progress-template produces them.

Every call is appended to $STUB_YTDLP_LOG as one JSON line (the argv), so the test can see
which search result was picked. Anything else exits 2, like yt-dlp given bad options.
"""
import json
import os
import shutil
import sys

RESULTS = [
    {"id": "aaaaaaaaaaa", "title": "Too short", "duration": 150},
    {"id": "bbbbbbbbbbb", "title": "Too long", "duration": 230},
    {"id": "ccccccccccc", "title": "Close", "duration": 205},
    {"id": "ddddddddddd", "title": "Closest", "duration": 216.0},
]


def main(argv):
    log = os.environ.get("STUB_YTDLP_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps(argv) + "\n")
    if "--" not in argv:
        print("ERROR: stub: expected -- before the URL", file=sys.stderr)
        return 2
    target = argv[argv.index("--") + 1]
    if "--dump-json" in argv:
        if not target.startswith("ytsearch"):
            return 2
        for r in RESULTS:
            print(json.dumps({"_type": "url", "ie_key": "Youtube",
                              "url": f"https://www.youtube.com/watch?v={r['id']}", **r}))
        return 0
    if "-o" not in argv:
        return 2
    out = argv[argv.index("-o") + 1].replace("%(ext)s", "wav")
    src = os.environ["STUB_YTDLP_AUDIO"]
    size = os.path.getsize(src)
    for done in (0, size // 2, size):
        print(f"PROG {done} {size} NA", flush=True)
    shutil.copyfile(src, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
