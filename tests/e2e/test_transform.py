"""Key-shift and time-stretch as a user does it: upload, analyse, separate, then ask for the
song two semitones up at a target tempo; the new track appears with its parent, its own
audio at the new length, its stems rendered the same way, and its own analysis; the
refusals; deleting the original keeps the new track.
"""
import io
import os
import shutil
import sys
import uuid
import zipfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import (Tap, check, eq, groove_wav, job_finished, multipart,  # noqa: E402
                     run_suite)

tap = Tap()
PW = "correct horse battery"
FIXTURES = os.environ.get("SFA_FIXTURES", os.path.join(os.path.dirname(__file__), "..",
                                                       "fixtures"))


def new_user(srv):
    email = f"tf-{uuid.uuid4().hex[:10]}@example.com"
    srv.cli("user", "create", "--email", email, "--password", PW)
    key = srv.cli("token", "create", "--email", email).stdout.strip()
    return {"Authorization": f"Bearer {key}"}


def post(srv, auth, path, body):
    return srv.client().request("POST", path, headers=auth, json_body=body)


def track(srv, auth, tid):
    r = srv.client().get(f"/api/tracks/{tid}", headers=auth)
    return r.status, (r.json()["data"] if r.status == 200 else None)


@tap.case
def shift_and_stretch_a_separated_track(srv):
    tiny = os.path.join(FIXTURES, "nn", "tiny_htdemucs.th")
    check(os.path.exists(tiny), f"missing test fixture {tiny}")
    os.makedirs(os.path.join(srv.data_dir, "models"), exist_ok=True)
    shutil.copy(tiny, os.path.join(srv.data_dir, "models", "955717e8.th"))
    auth = new_user(srv)
    body, h = multipart({"title": "Groove", "artist": "Tester"},
                        {"file": ("groove.wav", groove_wav(6.0, 120))})
    r = srv.client().request("POST", "/api/tracks", body=body, headers={**auth, **h})
    eq(r.status, 201, r.text)
    parent = r.json()["data"]
    r = post(srv, auth, "/api/analysis/analyze", {"track_id": parent["id"], "features": ["tempo"]})
    eq(job_finished(srv, auth, r.json()["data"]["job_id"])["status"], "completed", "analysis")
    tempo = srv.client().get(f"/export/analysis/{parent['id']}", headers=auth).json()[
        "analysis"]["tempo"]
    r = post(srv, auth, "/api/processing/separate", {"track_id": parent["id"],
                                                     "model": "htdemucs"})
    eq(job_finished(srv, auth, r.json()["data"]["job_id"])["status"], "completed", "separation")

    target = round(tempo * 1.05, 1)
    r = post(srv, auth, "/api/processing/transform",
             {"track_id": parent["id"], "semitones": 2, "target_bpm": target})
    eq(r.status, 201, r.text)
    d = r.json()["data"]
    eq(r.header("Location"), f"/api/jobs/{d['job_id']}", "Location")
    eq((d["parent_id"], d["track"]["parent_id"], d["track"]["audio"]),
       (parent["id"], parent["id"], None), "the new track exists at once, without audio")
    check(d["track"]["title"].startswith("Groove (+2 st, "), d["track"]["title"])
    ratio = d["track"]["transform"]["tempo_ratio"]
    check(abs(ratio - target / tempo) < 1e-5, f"ratio {ratio}, want {target / tempo}")
    j = job_finished(srv, auth, d["job_id"])
    eq(j["status"], "completed", j.get("error"))
    eq((j["track_id"], j["type"]), (d["track_id"], "transform"), "the job is the new track's")
    status, child = track(srv, auth, d["track_id"])
    eq(status, 200, "the new track")
    check(child["audio"], "the new track has audio")
    want = 6.0 / ratio
    check(abs(child["audio"]["duration"] - want) < 0.02,
          f"duration {child['audio']['duration']}, want {want:.3f}")
    eq(child["transform"], {"semitones": 2, "tempo_ratio": ratio}, "transform recorded")
    # Its stems, rendered the same way, in the ZIP and in the mixer's list.
    z = zipfile.ZipFile(io.BytesIO(srv.client().get(f"/export/stems/{child['id']}",
                                                   headers=auth).body))
    eq(sorted(n.rsplit("(", 1)[1] for n in z.namelist()),
       ["bass).flac", "drums).flac", "other).flac", "vocals).flac"], "stems of the new track")
    # Its own analysis, at the new tempo.
    an = srv.client().get(f"/export/analysis/{child['id']}", headers=auth).json()["analysis"]
    check(abs(an["tempo"] - target) <= target * 0.02, f"tempo {an['tempo']}, want {target}")
    eq(j["result"]["tempo"], an["tempo"], "the job's result carries the tempo")
    # Deleting the original keeps the new track.
    eq(srv.client().request("DELETE", f"/api/tracks/{parent['id']}", headers=auth).status,
       204, "delete the original")
    status, child = track(srv, auth, d["track_id"])
    eq((status, child["parent_id"], bool(child["audio"])), (200, None, True), "kept")


@tap.case
def refusals(srv):
    auth = new_user(srv)
    body, h = multipart({"title": "Tone"}, {"file": ("t.wav", groove_wav(3.0, 100))})
    tid = srv.client().request("POST", "/api/tracks", body=body,
                               headers={**auth, **h}).json()["data"]["id"]
    cases = [
        ({"track_id": tid, "semitones": 13}, 422, ["semitones"]),
        ({"track_id": tid, "tempo_ratio": 3}, 422, ["tempo_ratio"]),
        ({"track_id": tid, "tempo_ratio": 1.1, "target_bpm": 120}, 422, ["target_bpm"]),
        ({"track_id": tid, "semitones": "two"}, 422, ["semitones"]),
        ({"semitones": 1}, 422, ["track_id"]),
    ]
    for req, status, fields in cases:
        r = post(srv, auth, "/api/processing/transform", req)
        eq((r.status, sorted(r.json().get("details", {}))), (status, fields), f"{req}")
    r = post(srv, auth, "/api/processing/transform", {"track_id": tid})
    eq((r.status, r.json()["code"]), (422, "validation_failed"), "nothing to change")
    check("Nothing to change" in r.json()["error"], r.text)
    r = post(srv, auth, "/api/processing/transform", {"track_id": tid, "target_bpm": 120})
    eq((r.status, r.json()["code"]), (409, "not_analysed"), "no tempo yet")
    r = post(srv, new_user(srv), "/api/processing/transform", {"track_id": tid, "semitones": 1})
    eq(r.status, 404, "another user's track")
    lib = srv.client().get("/api/tracks", headers=auth).json()
    eq(lib["meta"]["total_count"], 1, "no track was made by a refused request")


if __name__ == "__main__":
    sys.exit(run_suite(tap, {"SFA_RATE_API": "100000", "SFA_RATE_HEAVY": "100000"}))
