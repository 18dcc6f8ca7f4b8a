#!/usr/bin/python3
"""The authorization matrix, generated from the route table (`sfa routes`): every route is
called with no credentials, as another user aimed at the first user's ids, with a revoked
key, with an API key on a page, and with a session but without the CSRF token. Each cell
must answer what the contract says (401, 302 to the log-in page, 404, 403), never a 5xx,
and never show another user's data. A route added to the table is covered here without
anyone remembering to add it."""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from harness import SFA, Tap, check, eq, groove_wav, multipart, run_suite  # noqa: E402

tap = Tap()
PW = "correct horse battery"
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.environ.get("SFA_FIXTURES", os.path.join(ROOT, "tests", "fixtures"))


# Routes whose body names the track they work on (A's track, in the matrix).
TRACK_BODY_ROUTES = {"/api/analysis/analyze", "/api/processing/separate", "/api/daw/export"}


def routes():
    r = subprocess.run([SFA, "routes"], capture_output=True, text=True, timeout=30)
    eq(r.returncode, 0, r.stderr)
    table = json.loads(r.stdout)
    check(len(table) > 30, f"the route table looks too small: {len(table)} routes")
    return table


class Owner:
    """User A and everything they own, made through the API."""

    def __init__(self, srv):
        os.makedirs(os.path.join(srv.data_dir, "models"), exist_ok=True)
        shutil.copy(os.path.join(FIXTURES, "nn", "tiny_htdemucs.th"),
                    os.path.join(srv.data_dir, "models", "955717e8.th"))
        self.email, self.key, self.client = make_user(srv)
        auth = {"Authorization": f"Bearer {self.key}"}
        self.title = f"Secret-{uuid.uuid4().hex[:8]}"
        body, h = multipart({"title": self.title}, {"file": ("a.wav", groove_wav(2.0, 120))})
        r = srv.client().request("POST", "/api/tracks", body=body, headers={**auth, **h})
        eq(r.status, 201, r.text)
        self.track = r.json()["data"]
        c = srv.client()
        self.analysis_job = c.post("/api/analysis/analyze", headers=auth, json_body={
            "track_id": self.track["id"], "features": ["tempo"]}).json()["data"]["job_id"]
        self.sep_job = c.post("/api/processing/separate", headers=auth, json_body={
            "track_id": self.track["id"], "model": "htdemucs"}).json()["data"]["job_id"]
        for jid in (self.analysis_job, self.sep_job):
            deadline = time.time() + 60
            while c.get(f"/api/jobs/{jid}", headers=auth).json()["data"]["status"] != "completed":
                check(time.time() < deadline, f"job {jid} did not finish")
                time.sleep(0.05)
        self.stems = c.get(f"/api/processing/job/{self.sep_job}", headers=auth).json()["data"][
            "stems"]
        check(self.stems, "A's separation made stems")
        self.secrets = [self.track["id"], self.title, self.email, self.sep_job,
                        self.analysis_job] + [s["id"] for s in self.stems]

    def path_for(self, pattern):
        """The route's pattern filled with A's ids."""
        if pattern.startswith("/files/"):
            return self.stems[0]["file_path"]
        if pattern.startswith("/assets/"):
            return "/assets/app.css"
        ids = {
            "/api/tracks/:id": self.track["id"], "/tracks/:id": self.track["id"],
            "/api/jobs/:id": self.analysis_job, "/api/jobs/:id/retry": self.analysis_job,
            "/api/analysis/job/:id": self.analysis_job,
            "/api/processing/job/:id": self.sep_job, "/api/download/job/:id": self.sep_job,
            "/export/stem/:id": self.stems[0]["id"],
        }
        if pattern in ids:
            return pattern.replace(":id", ids[pattern])
        return pattern.replace(":track_id", self.track["id"])

    def body_for(self, method, path):
        """A plausible body aimed at A's track (JSON, or multipart for the upload routes)."""
        if method == "GET":
            return None, {}
        if path in ("/api/tracks", "/api/daw/export"):
            body, h = multipart({"track_id": self.track["id"], "manifest": json.dumps(
                {"stems": [{"stem_id": self.stems[0]["id"]}]})}, {})
            return body, h
        return json.dumps({"track_id": self.track["id"], "model": "htdemucs",
                           "features": ["tempo"], "url": "https://open.spotify.com/track/"
                           "4uLU6hMCjMI75M1A2tKUQC"}).encode(), {"Content-Type": "application/json"}


def make_user(srv):
    email = f"authz-{uuid.uuid4().hex[:10]}@example.com"
    srv.cli("user", "create", "--email", email, "--password", PW)
    key = srv.cli("token", "create", "--email", email).stdout.strip()
    c = srv.client()
    eq(c.log_in(email, PW).status, 302, "log in")
    return email, key, c


def contract_5xx(route, r):
    """The 503s the contract names for a server without Spotify or lal.ai credentials:
    not_configured, Spotify's unauthorized (API.md, "Spotify credentials not configured"),
    and the Spotify log-in page saying the log-in is off."""
    if r.status != 503:
        return False
    if route["path"].startswith("/auth/spotify"):
        return "Spotify log-in is off" in r.text
    try:
        code = r.json().get("code")
    except ValueError:
        return False
    return code == "not_configured" or (code == "unauthorized" and "spotify" in route["path"]
                                         or code == "unauthorized" and "download" in route["path"])


@tap.case
def every_route_in_every_credential_state(srv):
    table = routes()
    a = Owner(srv)
    b_email, b_key, b_session = make_user(srv)
    revoked_key = srv.cli("token", "create", "--email", b_email, "--name", "old").stdout.strip()
    page = b_session.get("/users/settings").text
    ids = re.findall(r'name="key_id" value="([0-9a-f-]{36})"', page)
    check(ids, "B's keys are listed")
    # Revoke the newest key ("old") through the page, as a user would.
    token = b_session.csrf("/users/settings")
    eq(b_session.post("/users/settings", form={"_method": "put", "_csrf_token": token,
                                               "action": "revoke_api_key",
                                               "key_id": ids[0]}).status, 302, "revoke")
    problems = []
    cells = 0

    def cell(route, state, r, want):
        nonlocal cells
        cells += 1
        where = f"{route['method']} {route['path']} [{state}]"
        if r.status >= 500 and not contract_5xx(route, r):
            problems.append(f"{where}: {r.status} {r.text[:120]}")
            return
        leaked = [s for s in a.secrets if s in r.text]
        if state != "owner" and leaked and not route["path"].startswith("/assets/"):
            problems.append(f"{where}: shows A's data {leaked[:2]}")
        if want and r.status not in want:
            problems.append(f"{where}: {r.status}, expected {sorted(want)}: {r.text[:120]}")

    for route in table:
        m, access = route["method"], route["access"]
        if route["path"] in ("/socket/websocket", "/users/log-out"):
            continue  # the socket has its own suite; log-out would end B's session
        path = a.path_for(route["path"])
        body, h = a.body_for(m, route["path"])
        has_ids = ":" in route["path"] or "*" in route["path"]
        guest = srv.client()
        # 1. No credentials.
        r = guest.request(m, path, body=body, headers=dict(h))
        # A page's form posted without a session fails its CSRF check first (403).
        want = {"api": {401}, "files": {401},
                "page_auth": {302} if m == "GET" else {302, 403}}.get(access)
        cell(route, "none", r, want)
        if access == "page_auth" and r.status == 302:
            eq(r.header("Location"), "/users/log-in", f"{m} {path} redirects to log in")
        # 2. Another user (B) aimed at A's resources.
        if access in ("api", "files"):
            r = srv.client().request(m, path, body=body,
                                     headers={**h, "Authorization": f"Bearer {b_key}"})
            aimed = has_ids or route["path"] in TRACK_BODY_ROUTES
            cell(route, "other", r, {404} if aimed else None)
        elif access == "page_auth" and m == "GET":
            cell(route, "other", b_session.request(m, path), {200})
        # 3. A revoked key.
        if access in ("api", "files"):
            r = srv.client().request(m, path, body=body,
                                     headers={**h, "Authorization": f"Bearer {revoked_key}"})
            cell(route, "revoked", r, {401})
        # 4. A valid API key on a page: pages take only the session.
        if access == "page_auth":
            r = srv.client().request(m, path, body=body,
                                     headers={**h, "Authorization": f"Bearer {b_key}"})
            cell(route, "key-on-page", r, {302} if m == "GET" else {302, 403})
        # 5. B's session without the CSRF token, on writes.
        if m != "GET" and access != "public":
            r = b_session.request(m, path, body=body, headers=dict(h))
            cell(route, "no-csrf", r, {403} if access != "guest" else {302, 403})
    # A's things are all still there.
    auth = {"Authorization": f"Bearer {a.key}"}
    eq(srv.client().get(f"/api/tracks/{a.track['id']}", headers=auth).status, 200, "A's track")
    eq(srv.client().get(a.stems[0]["file_path"], headers=auth).status, 200, "A's stem file")
    check(not problems, f"{len(problems)} of {cells} cells broke the contract:\n  " +
          "\n  ".join(problems))
    print(f"# {cells} cells over {len(table)} routes")


if __name__ == "__main__":
    sys.exit(run_suite(tap, {"SFA_RATE_AUTH": "1000000", "SFA_RATE_API": "1000000",
                             "SFA_RATE_HEAVY": "1000000"}))
