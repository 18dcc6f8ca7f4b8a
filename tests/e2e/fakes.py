"""Outside services for the end-to-end suites, all on loopback: the fake Spotify
(tests/fakes/fake_spotify.py, run as a child process) and a small audio file server for
the download tests.

Debian's /usr/bin/python3 standard library only.
"""
import json
import os
import subprocess
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE_SPOTIFY = os.path.join(HERE, "..", "fakes", "fake_spotify.py")


def magic(name):
    """A fake Spotify magic id: the name padded with '0' to 22 characters."""
    return name.ljust(22, "0")


class FakeSpotify:
    """tests/fakes/fake_spotify.py on a free port. Its stdin is a pipe held here, so it
    exits by itself when this process dies."""

    def __init__(self):
        if not os.path.exists(FAKE_SPOTIFY):
            raise RuntimeError(f"missing the fake Spotify script {FAKE_SPOTIFY}")
        self.proc = subprocess.Popen(["/usr/bin/python3", FAKE_SPOTIFY], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            self.proc.kill()
            raise RuntimeError(f"the fake Spotify did not print its port (got {line!r})")
        self.port = int(line)
        self.url = f"http://127.0.0.1:{self.port}"

    def env(self, client_id="fake-client-id", secret="fake-client-secret"):
        """The SFA_SPOTIFY_* settings that point a server at this fake."""
        e = {"SFA_SPOTIFY_ACCOUNTS_URL": self.url, "SFA_SPOTIFY_API_URL": self.url}
        if client_id:
            e["SFA_SPOTIFY_CLIENT_ID"] = client_id
        if secret:
            e["SFA_SPOTIFY_CLIENT_SECRET"] = secret
        return e

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        req = urllib.request.Request(self.url + path, data=data if method == "POST" else None,
                                     method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"{}")

    def stats(self):
        return self.call("GET", "/_fake/stats")

    def reset(self):
        self.call("POST", "/_fake/reset", {})

    def next_user(self, **user):
        self.call("POST", "/_fake/next-user", user)

    def revoke_refresh_tokens(self):
        self.call("POST", "/_fake/revoke-refresh", {})

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.terminate()
            self.proc.wait(10)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def get_no_redirect(url):
    """GET url without following redirects: returns (status, Location header)."""
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=10) as r:
            return r.status, r.headers.get("Location")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Location")


class AudioServer:
    """Serves files from a dict {path: (content_type, bytes)} on a free loopback port.
    A path listed in `gates` sends its first half, then waits until the gate's Event is
    set before sending the rest, so a test can watch a download in progress without
    depending on timing. Unknown paths get 404."""

    def __init__(self, files):
        self.files = files
        self.gates = {}
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.answer(head=True)

            def do_GET(self):
                self.answer(head=False)

            def answer(self, head):
                path = self.path.split("?")[0]
                outer.requests.append(path)
                if path not in outer.files:
                    body = b"<html><body>404 Not Found</body></html>"
                    self.send_response(404)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if not head:
                        self.wfile.write(body)
                    return
                ctype, body = outer.files[path]
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if head:
                    return
                try:
                    gate = outer.gates.get(path)
                    if gate is None:
                        self.wfile.write(body)
                        return
                    half = len(body) // 2
                    self.wfile.write(body[:half])
                    self.wfile.flush()
                    gate.wait(30)
                    self.wfile.write(body[half:])
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        for g in self.gates.values():
            g.set()
        self.httpd.shutdown()
