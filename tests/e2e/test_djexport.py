"""The library for DJ software: Rekordbox XML, Traktor NML and the bundle ZIP, read back with
Python's own XML parser (independent of libxml2, which writes them) and checked against the
analysis the API reports: BPM, beat grid, key, paths under the root, names with special
characters, and the refusals; NI Stems files, read with ffprobe and an MP4 box reader of
this file's own.
"""
import io
import json
import os
import re
import shutil
import sqlite3
import struct
import sys
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
import zipfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import (Tap, check, eq, ffprobe, groove_wav, job_finished, multipart,  # noqa: E402
                     run_suite, sine_wav)

tap = Tap()
PW = "correct horse battery"
FIXTURES = os.environ.get("SFA_FIXTURES", os.path.join(os.path.dirname(__file__), "..",
                                                       "fixtures"))
PITCHES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
RB_MAJOR = ["C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
RB_MINOR = ["Cm", "C#m", "Dm", "Ebm", "Em", "Fm", "F#m", "Gm", "G#m", "Am", "Bbm", "Bm"]
TRICKY = 'Café "Noir" & <Friends>/Part 1'
SAFE = "Café _Noir_ & _Friends__Part 1"  # as a file name on any system


def new_user(srv):
    email = f"dj-{uuid.uuid4().hex[:10]}@example.com"
    uid = srv.cli("user", "create", "--email", email, "--password", PW).stdout.strip()
    key = srv.cli("token", "create", "--email", email).stdout.strip()
    return uid, {"Authorization": f"Bearer {key}"}


def upload(srv, auth, title, artist, data, name="a.wav"):
    body, h = multipart({"title": title, "artist": artist}, {"file": (name, data)})
    r = srv.client().request("POST", "/api/tracks", body=body, headers={**auth, **h})
    eq(r.status, 201, r.text)
    return r.json()["data"]


def analyse(srv, auth, tid):
    c = srv.client()
    r = c.request("POST", "/api/analysis/analyze", headers=auth,
                  json_body={"track_id": tid, "features": ["tempo", "key", "sections"]})
    eq(r.status, 201, r.text)
    jid = r.json()["data"]["job_id"]
    deadline = time.time() + 60
    while True:
        j = c.get(f"/api/analysis/job/{jid}", headers=auth).json()["data"]
        if j["status"] in ("completed", "failed"):
            break
        check(time.time() < deadline, "the analysis did not finish")
        time.sleep(0.05)
    eq(j["status"], "completed", j.get("error"))
    return c.get(f"/export/analysis/{tid}", headers=auth).json()["analysis"]


def get(srv, auth, path):
    return srv.client().get(path, headers=auth)


def key_of(analysis):
    name, mode = analysis["key"].split(" ")
    pc = PITCHES.index(name)
    return pc, mode == "minor"


def library(srv):
    """One user's library: an analysed track with a tricky title, a second of the same
    name (its bundle name must differ), and one never analysed."""
    uid, auth = new_user(srv)
    a = upload(srv, auth, TRICKY, "Björk", groove_wav(20.0, 120))
    b = upload(srv, auth, TRICKY, "Björk", sine_wav(1.0), name="b.wav")
    c = upload(srv, auth, "Plain", "", sine_wav(0.5), name="c.wav")
    return uid, auth, a, b, c, analyse(srv, auth, a["id"])


@tap.case
def rekordbox_xml_carries_the_analysis(srv):
    uid, auth, a, b, c, an = library(srv)
    r = get(srv, auth, "/export/rekordbox.xml")
    eq(r.status, 200, r.text)
    check(r.header("Content-Type").startswith("application/xml"), r.header("Content-Type"))
    check("rekordbox.xml" in r.header("Content-Disposition"), r.header("Content-Disposition"))
    root = ET.fromstring(r.body)
    eq(root.tag, "DJ_PLAYLISTS", "document element")
    coll = root.find("COLLECTION")
    tracks = coll.findall("TRACK")
    eq((coll.get("Entries"), len(tracks)), ("3", 3), "every track with audio")
    required = ("TrackID", "Name", "Artist", "Album", "Kind", "Size", "TotalTime", "AverageBpm",
                "Tonality", "Location", "DateAdded", "SampleRate", "BitRate")
    for t in tracks:
        missing = [k for k in required if t.get(k) is None]
        eq(missing, [], f"attributes of {t.attrib}")
    by_title = {}
    for t in tracks:
        by_title.setdefault(t.get("Name"), []).append(t)
    eq(sorted(by_title), sorted([TRICKY, "Plain"]), "titles survive escaping")
    first = next(t for t in tracks if t.find("TEMPO") is not None)
    eq((first.get("Name"), first.get("Artist")), (TRICKY, "Björk"), "the analysed track")
    eq(first.get("AverageBpm"), f"{an['tempo']:.2f}", "BPM equals the analysis")
    tempo = first.find("TEMPO")
    eq((tempo.get("Bpm"), tempo.get("Metro"), tempo.get("Battito")),
       (f"{an['tempo']:.2f}", "4/4", "1"), "grid")
    anchor = (an["downbeats"] or an["beats"])[0]
    check(abs(float(tempo.get("Inizio")) - anchor) < 0.0006,
          f"grid anchored at {tempo.get('Inizio')}, first bar {anchor}")
    # A memory cue at each section's start, named after it.
    check(an["sections"], f"the analysis found no sections: {an.get('sections')}")
    eq([(m.get("Name"), m.get("Type"), m.get("Num"), round(float(m.get("Start")), 3))
        for m in first.findall("POSITION_MARK")],
       [(x["label"], "0", "-1", round(x["start"], 3)) for x in an["sections"]], "cues")
    if an["key"]:
        pc, minor = key_of(an)
        eq(first.get("Tonality"), (RB_MINOR if minor else RB_MAJOR)[pc], "key")
    eq(first.get("Kind"), "WAV File", "kind")
    eq(int(first.get("TotalTime")), 20, "duration")
    plain = by_title["Plain"][0]
    eq((plain.get("AverageBpm"), plain.find("TEMPO"), plain.get("Tonality")),
       ("0.00", None, ""), "an unanalysed track has no grid")
    # Without a root, the locations are the server's own files.
    for t in tracks:
        loc = t.get("Location")
        check(loc.startswith("file://localhost/"), loc)
        path = urllib.parse.unquote(loc[len("file://localhost"):])
        check(os.path.isfile(path), f"{path} is not the server's file")
        check(os.path.realpath(path).startswith(os.path.realpath(srv.data_dir)), path)
    # The playlist lists every track.
    node = root.find("PLAYLISTS/NODE/NODE")
    eq(sorted(k.get("Key") for k in node.findall("TRACK")), ["1", "2", "3"], "playlist")


@tap.case
def traktor_nml_with_a_windows_root(srv):
    uid, auth, a, b, c, an = library(srv)
    r = get(srv, auth, "/export/traktor.nml?root=" + urllib.parse.quote("C:\\Music\\Alchemy"))
    eq(r.status, 200, r.text)
    root = ET.fromstring(r.body)
    eq(root.tag, "NML", "document element")
    entries = root.findall("COLLECTION/ENTRY")
    eq(len(entries), 3, "entries")
    files = set()
    for e in entries:
        loc = e.find("LOCATION")
        eq((loc.get("VOLUME"), loc.get("DIR")), ("C:", "/:Music/:Alchemy/:"), "location")
        files.add(loc.get("FILE"))
        check(e.find("INFO").get("PLAYTIME") is not None, "INFO")
    eq(len(files), 3, f"file names are unique: {files}")
    for name in (f"Björk - {SAFE}.wav", f"Björk - {SAFE} (2).wav", "Plain.wav"):
        check(name in files, f"{name} is not among the bundle names {files}")
    tk = next(e for e in entries if e.find("TEMPO") is not None)
    eq(tk.get("TITLE"), TRICKY, "title")
    check(abs(float(tk.find("TEMPO").get("BPM")) - an["tempo"]) < 1e-4, "BPM")
    grid, *cues = tk.findall("CUE_V2")
    eq((grid.get("TYPE"), grid.get("NAME")), ("4", "AutoGrid"), "grid marker")
    check(abs(float(grid.get("START")) - (an["downbeats"] or an["beats"])[0] * 1000) < 0.01,
          "grid in ms")
    eq([(q.get("NAME"), q.get("TYPE"), q.get("HOTCUE"), round(float(q.get("START")))) for q in cues],
       [(x["label"], "0", "-1", round(x["start"] * 1000)) for x in an["sections"]], "cues")
    if an["key"]:
        pc, minor = key_of(an)
        eq(tk.find("MUSICAL_KEY").get("VALUE"), str(pc + 12 * minor), "Traktor key")
    keys = [k.get("KEY") for k in root.findall("PLAYLISTS/NODE/SUBNODES/NODE/PLAYLIST/ENTRY/"
                                               "PRIMARYKEY")]
    eq(sorted(keys), sorted(f"C:/:Music/:Alchemy/:{f}" for f in files), "playlist keys")


@tap.case
def library_zip_unpacks_where_the_collection_points(srv):
    uid, auth, a, b, c, an = library(srv)
    root_dir = "/Users/dj/Music/Sound Forge"
    r = get(srv, auth, "/export/library.zip?root=" + urllib.parse.quote(root_dir))
    eq(r.status, 200, r.text)
    z = zipfile.ZipFile(io.BytesIO(r.body))
    names = z.namelist()
    eq(len([n for n in names if not n.endswith((".xml", ".nml"))]), 3, names)
    check("rekordbox.xml" in names and "collection.nml" in names, names)
    for info in z.infolist():
        check(info.filename.isascii() or info.flag_bits & 0x800,
              f"{info.filename!r} lacks the UTF-8 flag")
    rb = ET.fromstring(z.read("rekordbox.xml"))
    for t in rb.findall("COLLECTION/TRACK"):
        path = urllib.parse.unquote(t.get("Location")[len("file://localhost"):])
        check(path.startswith(root_dir + "/"), path)
        name = path[len(root_dir) + 1:]
        check(name in names, f"{name} is not in the bundle: {names}")
        eq(len(z.read(name)), int(t.get("Size")), f"{name} size")
    # The analysed track's entry holds its uploaded audio.
    t = next(t for t in rb.findall("COLLECTION/TRACK") if t.find("TEMPO") is not None)
    name = urllib.parse.unquote(t.get("Location"))[len("file://localhost" + root_dir) + 1:]
    original = get(srv, auth, a["audio"]["url"]).body
    check(z.read(name) == original, f"{name} does not hold the uploaded audio")


def mp4_boxes(data, start=0, end=None):
    """(type, body start, body end) of each box in data[start:end] - an MP4 reader of our
    own, independent of FFmpeg's."""
    end = len(data) if end is None else end
    while start < end:
        size, kind = struct.unpack(">I4s", data[start:start + 8])
        check(size >= 8 and start + size <= end, f"bad box size {size} at {start}")
        yield kind.decode("latin-1"), start + 8, start + size
        start += size


def separate(srv, auth, tid, **extra):
    r = srv.client().request("POST", "/api/processing/separate", headers=auth,
                             json_body={"track_id": tid, "model": "htdemucs", **extra})
    eq(r.status, 201, r.text)
    j = job_finished(srv, auth, r.json()["data"]["job_id"])
    eq(j["status"], "completed", j.get("error"))
    return j["id"]


@tap.case
def ni_stems_for_traktor(srv):
    tiny = os.path.join(FIXTURES, "nn", "tiny_htdemucs.th")
    check(os.path.exists(tiny), f"missing test fixture {tiny}")
    os.makedirs(os.path.join(srv.data_dir, "models"), exist_ok=True)
    shutil.copy(tiny, os.path.join(srv.data_dir, "models", "955717e8.th"))
    uid, auth = new_user(srv)
    t = upload(srv, auth, "Groove", "Tester", groove_wav(3.0, 120))
    eq(get(srv, auth, f"/export/nistems/{t['id']}").status, 404, "no stems yet")
    four = separate(srv, auth, t["id"])
    r = get(srv, auth, f"/export/nistems/{t['id']}")
    eq((r.status, r.header("Content-Type")), (200, "audio/mp4"), r.text[:300])
    check("Tester - Groove.stem.mp4" in r.header("Content-Disposition"),
          r.header("Content-Disposition"))
    streams = ffprobe(r.body, ".stem.mp4",
                      "stream=codec_name,codec_type,duration:stream_disposition=default")["streams"]
    eq([(s["codec_type"], s["codec_name"]) for s in streams], [("audio", "aac")] * 5,
       "five AAC tracks: the master and four stems")
    for s in streams:
        check(abs(float(s["duration"]) - 3.0) < 0.05, f"track length {s['duration']}")
    eq([s["disposition"]["default"] for s in streams], [1, 0, 0, 0, 0], "the master first")
    moov = [(b, e) for k, b, e in mp4_boxes(r.body) if k == "moov"]
    eq(len(moov), 1, "one moov box")
    udta = [(b, e) for k, b, e in mp4_boxes(r.body, *moov[0]) if k == "udta"]
    eq(len(udta), 1, "one udta box")
    stem = [r.body[b:e] for k, b, e in mp4_boxes(r.body, *udta[0]) if k == "stem"]
    eq(len(stem), 1, "one stem box")
    meta = json.loads(stem[0])
    eq([s["name"] for s in meta["stems"]], ["Drums", "Bass", "Other", "Vocals"], "NI's order")
    check(all(re.fullmatch(r"#[0-9A-F]{6}", s["color"]) for s in meta["stems"]), meta)
    eq((meta["version"], sorted(meta["mastering_dsp"])), (1, ["compressor", "limiter"]), meta)
    # Made once: the second answer is the same file.
    again = get(srv, auth, f"/export/nistems/{t['id']}?job_id={four}")
    eq((again.status, again.header("ETag")), (200, r.header("ETag")), "cached")
    # The bundle carries the NI Stems file made for the track, beside its audio.
    z = zipfile.ZipFile(io.BytesIO(get(srv, auth, "/export/library.zip?root=/Music/Alchemy").body))
    eq(sorted(z.namelist()), ["Tester - Groove.stem.mp4", "Tester - Groove.wav", "collection.nml",
                              "rekordbox.xml"], "bundle entries")
    eq(z.read("Tester - Groove.stem.mp4") == again.body, True, "the NI Stems file in the bundle")
    two = separate(srv, auth, t["id"], two_stems="vocals")
    r = get(srv, auth, f"/export/nistems/{t['id']}?job_id={two}")
    eq((r.status, r.json()["code"]), (422, "not_four_stems"), r.text)
    _, other = new_user(srv)
    eq(get(srv, other, f"/export/nistems/{t['id']}").status, 404, "another user's track")
    eq(srv.client().request("DELETE", f"/api/tracks/{t['id']}", headers=auth).status, 204, "del")
    check(not os.path.exists(os.path.join(srv.data_dir, "uploads", "stems", four)),
          "the NI Stems file went with the track")


@tap.case
def subsets_and_refusals(srv):
    uid, auth, a, b, c, an = library(srv)
    r = get(srv, auth, f"/export/rekordbox.xml?track_ids={c['id']},{a['id']}")
    eq(r.status, 200, r.text)
    names = [t.get("Name") for t in ET.fromstring(r.body).findall("COLLECTION/TRACK")]
    eq(names, ["Plain", TRICKY], "only the listed tracks, in order")
    _, other = new_user(srv)
    r = get(srv, other, f"/export/rekordbox.xml?track_ids={a['id']}")
    eq(r.status, 404, "another user's track")
    r = get(srv, auth, f"/export/traktor.nml?track_ids={uuid.uuid4()}")
    eq(r.status, 404, "unknown track")
    r = get(srv, auth, "/export/rekordbox.xml?track_ids=nope")
    eq((r.status, r.json()["code"]), (422, "validation_failed"), "malformed ids")
    r = get(srv, auth, f"/export/rekordbox.xml?track_ids={a['id']},{a['id']}")
    eq(r.status, 422, "an id twice")
    r = get(srv, auth, "/export/rekordbox.xml?root=Music/relative")
    eq(r.status, 422, "a relative root")
    check("absolute" in r.json()["error"], r.text)
    r = get(srv, auth, "/export/library.zip")
    eq((r.status, list(r.json()["details"])), (422, ["root"]), "the bundle needs a root")
    # A track still without audio: left out of the whole library, refused when listed.
    bare = str(uuid.uuid4())
    with sqlite3.connect(os.path.join(srv.data_dir, "sfa.db"), timeout=10) as d:
        d.execute("INSERT INTO tracks (id, user_id, spotify_id, title, source, created_at, "
                  "updated_at) VALUES (?,?,?,?,?,?,?)",
                  (bare, uid, "4uLU6hMCjMI75M1A2tKUQC", "Not Yet", "spotify", 1, 1))
    r = get(srv, auth, "/export/rekordbox.xml")
    eq(len(ET.fromstring(r.body).findall("COLLECTION/TRACK")), 3, "no track without audio")
    r = get(srv, auth, f"/export/rekordbox.xml?track_ids={bare}")
    eq((r.status, r.json()["code"]), (409, "audio_not_ready"), r.text)
    # An empty library is a valid, empty collection.
    _, empty = new_user(srv)
    r = get(srv, empty, "/export/traktor.nml")
    eq((r.status, ET.fromstring(r.body).find("COLLECTION").get("ENTRIES")), (200, "0"), "empty")
    eq(get(srv, {}, "/export/rekordbox.xml").status, 401, "no credentials")


if __name__ == "__main__":
    sys.exit(run_suite(tap, {"SFA_RATE_API": "100000", "SFA_RATE_HEAVY": "100000"}))
