#!/usr/bin/python3
"""End-to-end tests of POST /api/spotify/fetch against the fake Spotify
(tests/fakes/fake_spotify.py): single tracks in every link form, 120+ track albums and
playlists followed through pagination, upserts into the caller's library, and the error
codes of API.md §5 (invalid_url, spotify_error 404/502, unauthorized 503).
"""
import os
import re
import sys
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from fakes import FakeSpotify, magic  # noqa: E402
from harness import Server, Tap, check, eq, run_suite  # noqa: E402

tap = Tap()
PW = "correct horse battery"
OK_TRACK = magic("okTrack")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
fake = None


def new_user(srv):
    email = f"fetch-{uuid.uuid4().hex[:10]}@example.com"
    r = srv.cli("user", "create", "--email", email, "--password", PW)
    eq(r.returncode, 0, r.stderr)
    key = srv.cli("token", "create", "--email", email).stdout.strip()
    return {"Authorization": f"Bearer {key}"}


def fetch(srv, auth, url):
    return srv.client().post("/api/spotify/fetch", headers=auth, json_body={"url": url})


@tap.case
def track_fetched_and_upserted(srv):
    auth = new_user(srv)
    r = fetch(srv, auth, f"https://open.spotify.com/track/{OK_TRACK}?si=abc123")
    eq(r.status, 200, r.text)
    data = r.json()["data"]
    eq(data["type"], "track", "type")
    t = data["track"]
    check(UUID_RE.match(t["id"]), f"track id {t['id']!r} is a UUIDv4")
    for k, v in {"spotify_id": OK_TRACK, "title": "Fake Track 1",
                 "artist": "Artist One, Artist Two", "album": "Fake Album",
                 "album_art_url": "https://i.scdn.co/image/album-640", "duration": 213,
                 "spotify_url": f"https://open.spotify.com/track/{OK_TRACK}",
                 "source": "spotify", "audio": None}.items():
        eq(t[k], v, k)
    got = srv.client().get(f"/api/tracks/{t['id']}", headers=auth)
    eq(got.status, 200, "the track is in the library")
    eq(got.json()["data"]["title"], "Fake Track 1", "stored title")
    eq(fake.stats()["last_market"], "US", "the default market was sent")


@tap.case
def same_track_in_any_link_form_reuses_the_row(srv):
    auth = new_user(srv)
    first = fetch(srv, auth, f"spotify:track:{OK_TRACK}").json()["data"]["track"]
    forms = [f"open.spotify.com/intl-de/track/{OK_TRACK}",
             f"https://open.spotify.com/embed/track/{OK_TRACK}?utm_source=x",
             f"spotify%3Atrack%3A{OK_TRACK}"]
    for url in forms:
        r = fetch(srv, auth, url)
        eq(r.status, 200, f"{url}: {r.text}")
        eq(r.json()["data"]["track"]["id"], first["id"], f"{url} reuses the track")
    # The user's own edit of the title survives a refetch.
    c = srv.client()
    eq(c.request("PATCH", f"/api/tracks/{first['id']}", headers=auth,
                 json_body={"title": "My title"}).status, 200, "patch")
    again = fetch(srv, auth, f"spotify:track:{OK_TRACK}").json()["data"]["track"]
    eq((again["id"], again["title"]), (first["id"], "My title"), "kept the edit")
    eq(c.get("/api/tracks", headers=auth).json()["meta"]["total_count"], 1, "one track")
    # Another user gets a track of their own.
    other = new_user(srv)
    theirs = fetch(srv, other, f"spotify:track:{OK_TRACK}").json()["data"]["track"]
    check(theirs["id"] != first["id"], "libraries are per user")
    eq(theirs["title"], "Fake Track 1", "their title")


@tap.case
def album_of_123_tracks_follows_pagination(srv):
    auth = new_user(srv)
    r = fetch(srv, auth, f"https://open.spotify.com/album/{magic('bigAlbum')}")
    eq(r.status, 200, r.text)
    d = r.json()["data"]
    eq(d["type"], "album", "type")
    eq(d["album"]["spotify_id"], magic("bigAlbum"), "album id")
    eq(d["album"]["name"], "The Big Album", "album name")
    eq(d["album"]["artist"], "Album Artist, Guest", "album artist")
    eq(d["album"]["album_art_url"], "https://i.scdn.co/image/big-album-640", "album art")
    eq(d["album"]["total"], 123, "total")
    eq(len(d["tracks"]), 123, "every track")
    eq([t["title"] for t in d["tracks"][:2]], ["Album Track 1", "Album Track 2"], "order")
    eq(d["tracks"][122]["title"], "Album Track 123", "last track")
    check(all(UUID_RE.match(t["id"]) for t in d["tracks"]), "every track has a library id")
    eq(d["tracks"][0]["album"], "The Big Album", "album copied onto simplified tracks")
    eq(d["tracks"][0]["duration"], 180, "duration in seconds")
    eq(len({t["id"] for t in d["tracks"]}), 123, "distinct tracks")
    lib = srv.client().get("/api/tracks?page_size=100", headers=auth).json()
    eq(lib["meta"]["total_count"], 123, "all upserted")
    again = fetch(srv, auth, f"spotify:album:{magic('bigAlbum')}").json()["data"]
    eq([t["id"] for t in again["tracks"]], [t["id"] for t in d["tracks"]], "refetch reuses")


@tap.case
def playlist_of_126_entries_skips_null_local_and_episodes(srv):
    auth = new_user(srv)
    r = fetch(srv, auth, f"https://open.spotify.com/playlist/{magic('bigPlaylist')}?si=x")
    eq(r.status, 200, r.text)
    d = r.json()["data"]
    eq(d["type"], "playlist", "type")
    eq(d["playlist"]["owner"], "Playlist Owner", "owner")
    eq(d["playlist"]["name"], "The bigPlaylist", "name")
    eq(d["playlist"]["total"], 126, "total as Spotify reports it")
    eq(len(d["tracks"]), 123, "126 entries minus a null, a local file and an episode")
    check("track" not in d and "album" not in d, "only the playlist key")
    legacy = fetch(srv, auth, f"spotify:user:someone:playlist:{magic('legacyPlaylist')}")
    eq(legacy.status, 200, legacy.text)
    eq(len(legacy.json()["data"]["tracks"]), 60, "the /tracks fallback")


@tap.case
def invalid_urls_are_422_without_calling_spotify(srv):
    auth = new_user(srv)
    fake.reset()
    for url in ["https://example.com/track/" + OK_TRACK, "spotify:track:short",
                "https://open.spotify.com/artist/" + OK_TRACK, "not a url at all"]:
        r = fetch(srv, auth, url)
        eq(r.status, 422, f"{url}: {r.text}")
        eq(r.json()["code"], "invalid_url", "code")
        check(r.json()["error"], "a sentence")
    hits = {k: v for k, v in fake.stats()["hits"].items() if not k.startswith("/_fake")}
    eq(hits, {}, "Spotify was never called")
    c = srv.client()
    r = c.post("/api/spotify/fetch", headers=auth, json_body={"url": 5})
    eq((r.status, r.json()["code"]), (422, "validation_failed"), "wrong type")
    eq(r.json()["details"], {"url": ["must be a string"]}, "details")
    r = c.post("/api/spotify/fetch", headers=auth, json_body={})
    eq(r.json()["details"], {"url": ["can't be blank"]}, "missing")
    r = c.post("/api/spotify/fetch", headers={**auth, "Content-Type": "application/json"},
               body=b"{nope")
    eq(r.status, 400, "unparseable body")
    r = c.post("/api/spotify/fetch", json_body={"url": OK_TRACK})
    eq(r.status, 401, "no credentials")


@tap.case
def spotify_errors_map_to_404_and_502(srv):
    auth = new_user(srv)
    r = fetch(srv, auth, "https://open.spotify.com/playlist/37i9dQZF1DXcBWIGoYBM5M")
    eq(r.status, 404, r.text)
    eq(r.json()["code"], "spotify_error", "code")
    check("not available through the Spotify API" in r.json()["error"], r.json()["error"])
    r = fetch(srv, auth, f"spotify:track:{magic('missing')}")
    eq((r.status, r.json()["code"]), (404, "spotify_error"), "unknown track")
    r = fetch(srv, auth, f"spotify:track:{magic('badRequest')}")
    eq((r.status, r.json()["code"]), (502, "spotify_error"), "Spotify 400 is an upstream error")
    eq(srv.client().get("/api/tracks", headers=auth).json()["meta"]["total_count"], 0,
       "nothing was stored")


@tap.case
def not_configured_or_rejected_credentials_are_503(srv):
    for env in (fake.env(client_id=None, secret=None), fake.env(secret="wrong-secret")):
        s = Server(env={**env, "SFA_RATE_API": "100000"}).start()
        try:
            auth = new_user(s)
            r = fetch(s, auth, f"spotify:track:{OK_TRACK}")
            eq(r.status, 503, r.text)
            eq(r.json()["code"], "unauthorized", "code")
            check("client" in r.json()["error"].lower() or "configured" in r.json()["error"],
                  r.json()["error"])
            check("wrong-secret" not in r.text, "the secret is never echoed")
            # A bad link is still a bad link.
            eq(fetch(s, auth, "spotify:track:nope").status, 422, "invalid url first")
        finally:
            s.stop()
            bad = [l for l in s.log if "Sanitizer" in l or "runtime error:" in l]
            s.cleanup()
        check(not bad, "\n".join(bad))


def main():
    global fake
    fake = FakeSpotify()
    return run_suite(tap, {**fake.env(), "SFA_RATE_API": "100000"}, stop=[fake.stop])


if __name__ == "__main__":
    sys.exit(main())
