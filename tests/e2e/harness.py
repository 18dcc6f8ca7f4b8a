"""Helpers for the end-to-end suites: start the real `sfa serve` on a free loopback port
with a temporary data directory, talk HTTP to it with a cookie-keeping client, and report
results as TAP so scripts/test-summary.py can count every case.

Debian's /usr/bin/python3 standard library only.
"""
import http.client
import math
import struct
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

SFA = os.environ.get("SFA_BIN", "build/sfa")


class Server:
    """A running `sfa serve`; stderr (the log) is collected in self.log."""

    def __init__(self, data_dir=None, env=None):
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="sfa-e2e-")
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.log = []
        self.port = None
        self.proc = None

    def start(self, timeout=15):
        self.proc = subprocess.Popen(
            [SFA, "serve", "--port", "0", "--data", self.data_dir],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=self.env, text=True,
            errors="replace")
        ready = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.log.append(line.rstrip("\n"))
                m = re.search(r"listening on http://[^:]+:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    ready.set()
        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout):
            self.proc.kill()
            raise RuntimeError("sfa serve did not start: " + "\n".join(self.log[-20:]))
        return self

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def cleanup(self):
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def client(self):
        return Client(self.port)

    def cli(self, *args):
        return subprocess.run([SFA, *args, "--data", self.data_dir], capture_output=True,
                              text=True, env=self.env, timeout=60)


class Response:
    def __init__(self, r, body):
        self.status = r.status
        self.headers = r.headers
        self.body = body
        self.text = body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.text)

    def header(self, name):
        return self.headers.get(name)


class Client:
    """One browser or script: keeps cookies, never follows redirects, reuses its
    keep-alive connection (and reconnects when the server closed it)."""

    def __init__(self, port):
        self.port = port
        self.cookies = {}
        self.conn = None

    def request(self, method, path, body=None, headers=None, form=None, json_body=None):
        headers = dict(headers or {})
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                data = r.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        for value in r.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            val = rest.split(";")[0]
            if "Max-Age=0" in value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = val
        if r.headers.get("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = None
        return Response(r, data)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def csrf(self, path="/"):
        """The CSRF token of a page (fetching it sets the CSRF cookie)."""
        r = self.get(path)
        m = re.search(r'<meta name="csrf-token" content="([^"]+)"', r.text)
        if not m:
            raise AssertionError(f"no csrf-token meta on {path} (status {r.status})")
        return m.group(1)

    def register(self, email, password):
        token = self.csrf("/users/register")
        return self.post("/users/register", form={
            "_csrf_token": token, "user[email]": email, "user[password]": password})

    def log_in(self, email, password, remember=False):
        token = self.csrf("/users/log-in")
        form = {"_csrf_token": token, "user[email]": email, "user[password]": password}
        if remember:
            form["user[remember_me]"] = "true"
        return self.post("/users/log-in", form=form)

    def create_api_key(self, name):
        token = self.csrf("/users/settings")
        r = self.post("/users/settings", form={
            "_method": "put", "_csrf_token": token, "action": "create_api_key", "name": name})
        m = re.search(r'id="new-api-key">([^<]+)<', r.text)
        if not m:
            raise AssertionError(f"no new key on the settings page (status {r.status})")
        return m.group(1)


def sine_wav(seconds=1.0, rate=44100, channels=2, freq=440.0):
    n = int(seconds * rate)
    frames = bytearray()
    for i in range(n):
        v = int(12000 * math.sin(2 * math.pi * freq * i / rate))
        frames += struct.pack("<h", v) * channels
    hdr = b"RIFF" + struct.pack("<I", 36 + len(frames)) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 1, channels, rate, rate * 2 * channels, 2 * channels, 16) + \
        b"data" + struct.pack("<I", len(frames))
    return hdr + bytes(frames)


def groove_wav(seconds, bpm, rate=44100):
    """A tone with a decaying click on every beat: something with a tempo to find."""
    n = int(seconds * rate)
    beat = int(rate * 60 / bpm)
    frames = bytearray()
    for i in range(n):
        k = i % beat
        click = math.exp(-k / 300.0) * (1 if (i * 7919) % 13 < 7 else -1) if k < 3000 else 0.0
        v = int(8000 * math.sin(2 * math.pi * 220 * i / rate) + 14000 * click)
        frames += struct.pack("<h", max(-32768, min(32767, v))) * 2
    hdr = b"RIFF" + struct.pack("<I", 36 + len(frames)) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 1, 2, rate, rate * 4, 4, 16) + b"data" + struct.pack("<I", len(frames))
    return hdr + bytes(frames)


def multipart(fields, files, boundary="sfa-test-boundary-7MA4YWxk"):
    out = b""
    for k, v in fields.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n"
                f"{v}\r\n").encode()
    for k, (name, data) in files.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"; "
                f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                ).encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


class Tap:
    """Runs test functions and prints TAP; a raised exception is a failing case."""

    def __init__(self):
        self.cases = []

    def case(self, fn):
        self.cases.append(fn)
        return fn

    def run(self, *args):
        server = args[0] if args and isinstance(args[0], Server) else None
        if server is not None:
            def server_log_has_no_sanitizer_reports(srv):
                time.sleep(0.2)
                bad = [l for l in srv.log if "AddressSanitizer" in l or "LeakSanitizer" in l
                       or "runtime error:" in l]
                check(not bad, "sanitizer reports in the server log:\n" + "\n".join(bad[:20]))
            self.cases.append(server_log_has_no_sanitizer_reports)
        print(f"1..{len(self.cases)}", flush=True)
        failed = 0
        for i, fn in enumerate(self.cases, 1):
            name = fn.__name__
            try:
                fn(*args)
                print(f"ok {i} - {name}", flush=True)
            except Exception:
                failed += 1
                print(f"not ok {i} - {name}", flush=True)
                for line in traceback.format_exc().splitlines():
                    print(f"# {line}", flush=True)
        return 1 if failed else 0


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def eq(actual, expected, what="value"):
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


def run_suite(tap, env):
    """Starts one server with env, runs the suite's cases against it, prints the server
    log's tail when something failed, and returns the exit status."""
    srv = Server(env=env).start()
    try:
        rc = tap.run(srv)
    finally:
        srv.cleanup()
    if rc:
        print("# server log tail:\n# " + "\n# ".join(srv.log[-40:]))
    return rc
