#!/usr/bin/python3
"""fake_spotify.py - a fake Spotify accounts service and Web API for offline tests.

Run with Debian's /usr/bin/python3 (standard library only). It listens on 127.0.0.1 on a
port the system picks, prints that port as the first line of stdout, and serves until it
is killed or until its stdin reaches end-of-file (so it never outlives a crashed test that
holds the other end of a pipe).

Behaviour is chosen by magic ids: every id below is the name padded with '0' to the 22
base62 characters of a real Spotify id (see magic()). Tracks:
  okTrack          a normal track (two artists, three images, 212.5 s, an ISRC)
  rate429twice     429 with Retry-After: 1 twice, then 200
  rate429forever   429 with Retry-After: 86400, always
  fail503twice     503 twice, then 200
  fail500always    500, always
  badRequest       400 "Invalid base62 id" (as Spotify answers for malformed ids)
  slowTrack        answers after SLOW_SECONDS, longer than the tests' client timeout
  truncatedJson    200 whose body is cut JSON (Content-Length matches what is sent)
  cutBody          200 whose connection closes before Content-Length bytes arrived
  ok<Anything>      more normal tracks ("okSong1", "okMissing"...), each with its own
                   title "Song <name>", one artist "Artist <name>" and 30 s long (the
                   download tests map them to different audio sources)
  anything else    404 "Resource not found" (ids that are not 22 base62 chars: 400)
Albums: bigAlbum (123 tracks, pages of 50 with absolute `next` links to this server),
smallAlbum (3 tracks "sa0...01".."sa0...03", one page), strayNextAlbum (its `next` link
points to another host).
Playlists:
  bigPlaylist        126 entries through /items (`item` entries, some `track` entries),
                     of which one null, one local file and one episode; /tracks is 403
  legacyPlaylist     /items is missing (404); /tracks has 60 `track` entries
  forbiddenPlaylist  both /items and /tracks answer 403
  37i9dQZF1... / 37i9dQZEVX...  editorial: 404, like every unknown playlist
Every catalogue call must pass `market` (400 otherwise); the last one is in the stats.

Accounts: clients fake-client-id / fake-client-secret, short-lived-client (same secret,
tokens live 2 s), rotating-client (public PKCE client whose refresh rotates the refresh
token), deny-client (the user says no: /authorize answers error=access_denied).
POST /api/token speaks client_credentials, authorization_code (PKCE S256 checked) and
refresh_token (no refresh_token in the answer unless the client rotates; unknown refresh
tokens get 400 invalid_grant). GET /v1/me needs a user token.

Short links (GET /short/<name>): good (two hops, then open.spotify.com), page (200 HTML
naming the link), loop (redirects to itself), elsewhere (to a non-Spotify host),
insecure (to http://spotify.link), artist (to an open.spotify.com artist), missing (404).

Test control: GET /_fake/stats -> {"token_requests", "hits": {path: n}, "last_market",
"refresh_tokens_used": [...]}; POST /_fake/reset clears the counters; POST
/_fake/expire-tokens makes every app token stale, so the next catalogue call gets 401.
POST /_fake/next-user with a JSON body {"id", "display_name", "email"} picks the Spotify
user that the following /authorize calls log in (default the "fake-user" below; "email":
null leaves it out of /v1/me); POST /_fake/revoke-refresh revokes every refresh token
(the next refresh answers invalid_grant).
"""

import base64
import hashlib
import json
import os
import re
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler

from fake_server import serve

SLOW_SECONDS = 3
SECRET = "fake-client-secret"
CLIENTS = {  # client id -> secret (None: a public PKCE client)
    "fake-client-id": SECRET,
    "short-lived-client": SECRET,
    "deny-client": SECRET,
    "rotating-client": None,
}
BASE62_ID = re.compile(r"^[0-9A-Za-z]{22}$")


DEFAULT_USER = {"id": "fake-user", "display_name": "Fake User",
                "email": "fake.user@example.com"}


def magic(name):
    return name.ljust(22, "0")


OK_TRACK = magic("okTrack")
BIG_ALBUM = magic("bigAlbum")
ALBUM_TRACKS = 123


class State:
    """Everything the fake remembers, behind one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.tokens = {}  # access token -> (kind "app"|"user", monotonic expiry)
        self.codes = {}  # authorization code -> dict(client, redirect_uri, challenge, scope)
        self.refresh = {}  # refresh token -> client id
        self.token_user = {}  # user access or refresh token -> Spotify user dict
        self.next_user = dict(DEFAULT_USER)
        self.refresh_used = []
        self.token_requests = 0
        self.hits = {}
        self.last_market = None

    def hit(self, key):
        with self.lock:
            self.hits[key] = self.hits.get(key, 0) + 1
            return self.hits[key]

    def new_token(self, kind, life_s):
        tok = f"{kind}-{secrets.token_urlsafe(24)}"
        with self.lock:
            self.tokens[tok] = (kind, time.monotonic() + life_s)
        return tok


STATE = State()


# ---- Catalogue data ------------------------------------------------------------------

def images(prefix):
    # Deliberately not widest-first: the client must pick the widest itself.
    return [
        {"url": f"https://i.scdn.co/image/{prefix}-300", "width": 300, "height": 300},
        {"url": f"https://i.scdn.co/image/{prefix}-640", "width": 640, "height": 640},
        {"url": f"https://i.scdn.co/image/{prefix}-64", "width": 64, "height": 64},
    ]


def full_track(tid, n=1):
    return {
        "album": {"id": magic("someAlbum"), "name": "Fake Album", "type": "album",
                  "images": images("album")},
        "artists": [{"name": "Artist One", "type": "artist"},
                    {"name": "Artist Two", "type": "artist"}],
        "disc_number": 1,
        "duration_ms": 212500,
        "external_ids": {"isrc": f"USFAKE{n:06d}"},
        "external_urls": {"spotify": f"https://open.spotify.com/track/{tid}"},
        "id": tid,
        "is_local": False,
        "name": f"Fake Track {n}",
        "track_number": n,
        "type": "track",
    }


def album_track(n):
    # Simplified track objects carry no album and no external_ids.
    return {
        "artists": [{"name": "Album Artist"}],
        "disc_number": 1,
        "duration_ms": 180000 + n,
        "id": f"al{n:020d}",
        "name": f"Album Track {n}",
        "track_number": n,
        "type": "track",
    }


def playlist_entries(name):
    if name == "bigPlaylist":
        entries = []
        for i in range(126):
            if i == 50:
                entries.append({"added_at": "2024-01-01T00:00:00Z", "is_local": False,
                                "item": None})
            elif i == 17:
                entries.append({"is_local": True, "item": {
                    "id": None, "name": "My own recording", "is_local": True,
                    "type": "track", "uri": "spotify:local:Me::My+own+recording:200"}})
            elif i == 99:
                entries.append({"is_local": False, "item": {
                    "id": f"ep{i:020d}", "name": "A podcast episode", "type": "episode"}})
            elif i % 10 == 3:
                entries.append({"is_local": False, "track": full_track(f"pl{i:020d}", i)})
            else:
                entries.append({"is_local": False, "item": full_track(f"pl{i:020d}", i)})
        return entries
    if name == "legacyPlaylist":
        return [{"is_local": False, "track": full_track(f"lp{i:020d}", i)} for i in range(60)]
    return []


def page(base, path, items, offset, limit, market):
    nxt = None
    if offset + limit < len(items):
        nxt = f"{base}{path}?offset={offset + limit}&limit={limit}&market={market}"
    return {"href": f"{base}{path}?offset={offset}&limit={limit}",
            "items": items[offset:offset + limit], "limit": limit, "next": nxt,
            "offset": offset, "previous": None, "total": len(items)}


# ---- HTTP ----------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeSpotify/1.0"

    def log_message(self, fmt, *args):
        if os.environ.get("FAKE_SPOTIFY_VERBOSE"):
            sys.stderr.write("fake_spotify: " + (fmt % args) + "\n")

    @property
    def base(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def send(self, status, body=b"", ctype="application/json; charset=utf-8", headers=None):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def api_error(self, status, message, headers=None):
        self.send(status, {"error": {"status": status, "message": message}}, headers=headers)

    def oauth_error(self, error, description, status=400):
        self.send(status, {"error": error, "error_description": description})

    def redirect(self, location, status=302):
        self.send(status, b"", ctype="text/plain", headers={"Location": location})

    def form(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n).decode() if n else ""
        return {k: v[0] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}

    def bearer(self):
        auth = self.headers.get("Authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else None

    # -- dispatch --

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        STATE.hit(url.path)
        try:
            if url.path == "/authorize":
                return self.authorize(query)
            if url.path == "/_fake/stats":
                with STATE.lock:
                    return self.send(200, {"token_requests": STATE.token_requests,
                                           "hits": STATE.hits,
                                           "last_market": STATE.last_market,
                                           "refresh_tokens_used": STATE.refresh_used})
            if url.path.startswith("/short/"):
                return self.short_link(url.path[len("/short/"):])
            if url.path == "/v1/me":
                return self.me()
            if url.path.startswith("/v1/"):
                return self.catalogue(url.path[len("/v1/"):].split("/"), query)
            self.api_error(404, "Service not found")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeouts): nothing to answer

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        STATE.hit(url.path)
        if url.path == "/api/token":
            return self.token(self.form())
        if url.path == "/_fake/reset":
            with STATE.lock:
                STATE.hits.clear()
                STATE.token_requests = 0
                STATE.last_market = None
                STATE.refresh_used = []
            return self.send(200, {})
        if url.path == "/_fake/next-user":
            n = int(self.headers.get("Content-Length") or 0)
            user = json.loads(self.rfile.read(n) or b"{}")
            with STATE.lock:
                STATE.next_user = {**DEFAULT_USER, **user}
            return self.send(200, {})
        if url.path == "/_fake/revoke-refresh":
            with STATE.lock:
                STATE.refresh.clear()
            return self.send(200, {})
        if url.path == "/_fake/expire-tokens":
            with STATE.lock:
                for tok, (kind, _) in list(STATE.tokens.items()):
                    if kind == "app":
                        STATE.tokens[tok] = (kind, 0.0)
            return self.send(200, {})
        self.api_error(404, "Service not found")

    # -- accounts service --

    def client_auth(self, form):
        """Returns (client_id, confidential) or None after answering invalid_client."""
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                raw = base64.b64decode(auth[6:], validate=True).decode()
                cid, secret = (urllib.parse.unquote_plus(p) for p in raw.split(":", 1))
            except ValueError:
                cid, secret = None, None
            if cid not in CLIENTS or CLIENTS[cid] is None or CLIENTS[cid] != secret:
                self.oauth_error("invalid_client", "Invalid client")
                return None
            return cid, True
        cid = form.get("client_id")
        if cid not in CLIENTS:
            self.oauth_error("invalid_client", "Invalid client")
            return None
        return cid, False

    def token(self, form):
        if not self.headers.get("Content-Type", "").startswith(
                "application/x-www-form-urlencoded"):
            return self.oauth_error("invalid_request", "Expected a form body")
        auth = self.client_auth(form)
        if not auth:
            return
        cid, confidential = auth
        grant = form.get("grant_type")
        if grant == "client_credentials":
            if not confidential:
                return self.oauth_error("invalid_client", "Invalid client")
            with STATE.lock:
                STATE.token_requests += 1
            life = 2 if cid == "short-lived-client" else 3600
            return self.send(200, {"access_token": STATE.new_token("app", life),
                                   "token_type": "bearer", "expires_in": life})
        if grant == "authorization_code":
            with STATE.lock:
                code = STATE.codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(
                hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
            if (not code or code["client"] != cid
                    or code["redirect_uri"] != form.get("redirect_uri")
                    or code["challenge"] != challenge):
                return self.oauth_error("invalid_grant", "Invalid authorization code")
            refresh = f"refresh-{secrets.token_urlsafe(16)}"
            access = STATE.new_token("user", self.user_token_life(cid))
            with STATE.lock:
                STATE.refresh[refresh] = cid
                STATE.token_user[refresh] = code["user"]
                STATE.token_user[access] = code["user"]
            return self.send(200, {"access_token": access,
                                   "token_type": "Bearer", "scope": code["scope"],
                                   "expires_in": self.user_token_life(cid),
                                   "refresh_token": refresh})
        if grant == "refresh_token":
            rt = form.get("refresh_token", "")
            with STATE.lock:
                owner = STATE.refresh.get(rt)
                user = STATE.token_user.get(rt, DEFAULT_USER)
                STATE.refresh_used.append(rt)
            if owner != cid:
                return self.oauth_error("invalid_grant", "Refresh token revoked")
            access = STATE.new_token("user", self.user_token_life(cid))
            with STATE.lock:
                STATE.token_user[access] = user
            answer = {"access_token": access, "token_type": "Bearer",
                      "scope": "user-read-email", "expires_in": self.user_token_life(cid)}
            if cid == "rotating-client":
                new_rt = f"refresh-{secrets.token_urlsafe(16)}"
                with STATE.lock:
                    del STATE.refresh[rt]
                    STATE.refresh[new_rt] = cid
                    STATE.token_user[new_rt] = user
                answer["refresh_token"] = new_rt
            return self.send(200, answer)
        return self.oauth_error("unsupported_grant_type", f"grant_type {grant} is not supported")

    @staticmethod
    def user_token_life(cid):
        return 2 if cid == "short-lived-client" else 3600

    def authorize(self, q):
        required = ["client_id", "response_type", "redirect_uri", "state", "scope",
                    "code_challenge_method", "code_challenge"]
        missing = [k for k in required if not q.get(k)]
        if missing:
            return self.send(400, f"missing {', '.join(missing)}".encode(), ctype="text/plain")
        if q["client_id"] not in CLIENTS:
            return self.send(400, b"INVALID_CLIENT: Invalid client", ctype="text/plain")
        if q["response_type"] != "code" or q["code_challenge_method"] != "S256" or \
                not re.fullmatch(r"[A-Za-z0-9_-]{43}", q["code_challenge"]):
            return self.send(400, b"bad response_type or PKCE challenge", ctype="text/plain")
        redirect = q["redirect_uri"]
        if not (redirect.startswith("https://") or
                re.match(r"^http://127\.0\.0\.1(:\d+)?/", redirect)):
            return self.send(400, b"INVALID_CLIENT: Insecure redirect URI", ctype="text/plain")
        sep = "&" if "?" in redirect else "?"
        if q["client_id"] == "deny-client":
            args = {"error": "access_denied", "state": q["state"]}
            return self.redirect(redirect + sep + urllib.parse.urlencode(args))
        code = secrets.token_urlsafe(24)
        with STATE.lock:
            STATE.codes[code] = {"client": q["client_id"], "redirect_uri": redirect,
                                 "challenge": q["code_challenge"], "scope": q["scope"],
                                 "user": dict(STATE.next_user)}
        args = {"code": code, "state": q["state"]}
        self.redirect(redirect + sep + urllib.parse.urlencode(args))

    # -- Web API --

    def token_kind(self):
        """Returns the bearer token's kind, or None after answering 401."""
        tok = self.bearer()
        with STATE.lock:
            entry = STATE.tokens.get(tok) if tok else None
        if not entry:
            self.api_error(401, "Invalid access token")
            return None
        kind, expiry = entry
        if time.monotonic() >= expiry:
            self.api_error(401, "The access token expired")
            return None
        return kind

    def me(self):
        kind = self.token_kind()
        if kind is None:
            return
        if kind != "user":
            return self.api_error(403, "This endpoint needs a user token")
        with STATE.lock:
            user = STATE.token_user.get(self.bearer(), DEFAULT_USER)
        me = {"id": user["id"], "display_name": user["display_name"], "country": "SE",
              "product": "premium",
              "images": [{"url": "https://i.scdn.co/image/user-64", "width": 64},
                         {"url": "https://i.scdn.co/image/user-300", "width": 300}]}
        if user.get("email"):
            me["email"] = user["email"]
        self.send(200, me)

    def catalogue(self, parts, q):
        if self.token_kind() is None:
            return
        if len(parts) < 2 or parts[0] not in ("tracks", "albums", "playlists"):
            return self.api_error(404, "Service not found")
        kind, sid = parts[0], parts[1]
        if not BASE62_ID.match(sid) or sid == magic("badRequest"):
            return self.api_error(400, "Invalid base62 id")
        market = q.get("market")
        if not market:
            return self.api_error(400, "This fake insists on an explicit market")
        with STATE.lock:
            STATE.last_market = market
        offset, limit = int(q.get("offset", 0)), int(q.get("limit", 50))
        sub = parts[2] if len(parts) > 2 else None
        if kind == "tracks" and sub is None:
            return self.track(sid)
        if kind == "albums" and sid == BIG_ALBUM:
            items = [album_track(n) for n in range(1, ALBUM_TRACKS + 1)]
            path = f"/v1/albums/{sid}/tracks"
            if sub is None:
                return self.send(200, {
                    "id": sid, "name": "The Big Album", "type": "album",
                    "artists": [{"name": "Album Artist"}, {"name": "Guest"}],
                    "images": images("big-album"), "total_tracks": ALBUM_TRACKS,
                    "tracks": page(self.base, path, items, 0, 50, market)})
            if sub == "tracks":
                return self.send(200, page(self.base, path, items, offset, limit, market))
        if kind == "albums" and sid == magic("smallAlbum"):
            items = [album_track(n) for n in range(1, 4)]
            for t in items:
                t["id"] = f"sa{t['track_number']:020d}"
                t["duration_ms"] = 30000
            path = f"/v1/albums/{sid}/tracks"
            if sub is None:
                return self.send(200, {
                    "id": sid, "name": "The Small Album", "type": "album",
                    "artists": [{"name": "Album Artist"}], "images": images("small-album"),
                    "total_tracks": 3, "tracks": page(self.base, path, items, 0, 50, market)})
            if sub == "tracks":
                return self.send(200, page(self.base, path, items, offset, limit, market))
        if kind == "albums" and sid == magic("strayNextAlbum") and sub is None:
            # A next link that leaves the API: the client must not send its token there.
            first = page(self.base, "", [album_track(1)], 0, 50, market)
            first["next"] = "http://evil.example.com/v1/albums/x/tracks?offset=50&limit=50"
            return self.send(200, {"id": sid, "name": "Stray", "artists": [],
                                   "images": [], "tracks": first})
        if kind == "playlists":
            return self.playlist(sid, sub, offset, limit, market)
        self.api_error(404, "Resource not found")

    def track(self, sid):
        name = sid.rstrip("0")
        n = STATE.hit("id:" + sid)
        if sid == OK_TRACK:
            return self.send(200, full_track(sid))
        if name.startswith("ok") and len(name) > 2:
            t = full_track(sid)
            t.update({"name": f"Song {name[2:]}", "duration_ms": 30000,
                      "artists": [{"name": f"Artist {name[2:]}", "type": "artist"}]})
            return self.send(200, t)
        if name == "rate429twice":
            if n <= 2:
                return self.api_error(429, "API rate limit exceeded", {"Retry-After": "1"})
            return self.send(200, full_track(sid))
        if name == "rate429forever":
            return self.api_error(429, "API rate limit exceeded", {"Retry-After": "86400"})
        if name == "fail503twice":
            if n <= 2:
                return self.api_error(503, "Service unavailable")
            return self.send(200, full_track(sid))
        if name == "fail500always":
            return self.api_error(500, "Server error")
        if name == "slowTrack":
            time.sleep(SLOW_SECONDS)
            return self.send(200, full_track(sid))
        if name == "truncatedJson":
            body = json.dumps(full_track(sid)).encode()
            return self.send(200, body[: len(body) // 2])
        if name == "cutBody":
            body = json.dumps(full_track(sid)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.api_error(404, "Resource not found")

    def playlist(self, sid, sub, offset, limit, market):
        name = sid.rstrip("0")
        if name not in ("bigPlaylist", "legacyPlaylist", "forbiddenPlaylist"):
            return self.api_error(404, "Resource not found")  # editorial ones too
        entries = playlist_entries(name)
        if sub is None:
            return self.send(200, {
                "id": sid, "name": f"The {name}", "type": "playlist",
                "owner": {"id": "owner-id", "display_name": "Playlist Owner"},
                "images": images(name), "items": {"total": len(entries)}})
        if sub == "items":
            if name == "legacyPlaylist":
                return self.api_error(404, "Service not found")
            if name == "forbiddenPlaylist":
                return self.api_error(403, "Forbidden")
        elif sub == "tracks":
            if name in ("bigPlaylist", "forbiddenPlaylist"):
                return self.api_error(403, "Forbidden")
        else:
            return self.api_error(404, "Service not found")
        path = f"/v1/playlists/{sid}/{sub}"
        self.send(200, page(self.base, path, entries, offset, limit, market))

    # -- short links --

    def short_link(self, name):
        if name == "good":
            return self.redirect("/short/hop", status=301)  # relative, as some servers do
        if name == "hop":
            return self.redirect(f"https://open.spotify.com/track/{OK_TRACK}?si=abc", 307)
        if name == "page":
            html = ('<html><head><meta property="og:url" content="https://open.spotify.com/'
                    f'album/{BIG_ALBUM}"></head><body>Opening Spotify</body></html>')
            return self.send(200, html.encode(), ctype="text/html")
        if name == "loop":
            return self.redirect("/short/loop")
        if name == "elsewhere":
            return self.redirect(f"https://evil.example.com/track/{OK_TRACK}")
        if name == "insecure":
            return self.redirect("http://spotify.link/abc")
        if name == "artist":
            return self.redirect(f"https://open.spotify.com/artist/{OK_TRACK}")
        self.send(404, b"<html>Not found</html>", ctype="text/html")


def main():
    serve(Handler)


if __name__ == "__main__":
    main()
