"""Helpers for the end-to-end suites: start the real `sfa serve` on a free loopback port
with a temporary data directory, talk HTTP to it with a cookie-keeping client, and report
results as TAP so scripts/test-summary.py can count every case.

Debian's /usr/bin/python3 standard library only.
"""
import base64
import hashlib
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import traceback
import urllib.parse

SFA = os.environ.get("SFA_BIN", "build/sfa")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# With SFA_E2E_ON_PG=1 under tests/with-postgres.sh (the "-pg" e2e suites), every server
# keeps its state in the private PostgreSQL cluster instead of a SQLite file: one database
# per data directory, made when first needed, so a restart on the same directory finds it,
# and a fixed node id for it (SFA_NODE_ID), so a restarted server takes back its own jobs
# at once, as a deployment's nodes do.
PG_HOST = os.environ.get("SFA_TEST_PG_HOST") if os.environ.get("SFA_E2E_ON_PG") else None


def pg_database(data_dir):
    """(database URL, node id) of data_dir's database."""
    name = "e2e_" + hashlib.sha1(os.path.realpath(data_dir).encode()).hexdigest()[:16]
    psql = [shutil.which("psql") or "psql", "-h", PG_HOST, "-U", "sfa", "-d", "postgres",
            "-v", "ON_ERROR_STOP=1", "-tAc"]
    have = subprocess.run(psql + [f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
                          capture_output=True, text=True, check=True).stdout.strip()
    if have != "1":
        subprocess.run(psql + [f"CREATE DATABASE {name}"], capture_output=True, check=True)
    return f"postgresql://sfa@/{name}?host={PG_HOST}", name


class Server:
    """A running `sfa serve`; stderr (the log) is collected in self.log."""

    def __init__(self, data_dir=None, env=None, args=()):
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="sfa-e2e-")
        self.env = dict(os.environ)
        self.env.update(env or {})
        if PG_HOST and "SFA_DATABASE_URL" not in (env or {}):
            url, node = pg_database(self.data_dir)
            self.env.setdefault("SFA_DATABASE_URL", url)
            self.env.setdefault("SFA_NODE_ID", node)
        self.args = list(args)  # more `serve` flags, such as --no-jobs
        self.log = []
        self.port = None
        self.proc = None

    def command(self):
        return [SFA, "serve", "--port", "0", "--data", self.data_dir, *self.args]

    def ready(self, line):
        """Whether this log line says the process is ready (for serve: its port)."""
        m = re.search(r"listening on http://[^:]+:(\d+)", line)
        if m:
            self.port = int(m.group(1))
        return bool(m)

    def start(self, timeout=15):
        self.proc = subprocess.Popen(
            self.command(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=self.env,
            text=True, errors="replace")
        ready = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.log.append(line.rstrip("\n"))
                if not ready.is_set() and self.ready(line):
                    ready.set()
        self.pump = threading.Thread(target=pump, daemon=True)
        self.pump.start()
        if not ready.wait(timeout):
            self.proc.kill()
            raise RuntimeError(" ".join(self.command()[1:2]) + " did not start: " +
                               "\n".join(self.log[-20:]))
        return self

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.pump.join(10)  # the log is complete once its pipe is drained
        return self.proc.returncode

    def wait_log(self, text, timeout=15):
        """Whether a log line containing text arrives within timeout seconds (the log is
        read on another thread, so a line the server has written may not be here yet)."""
        deadline = time.time() + timeout
        while not any(text in l for l in self.log):
            if time.time() > deadline:
                return False
            time.sleep(0.02)
        return True

    def cleanup(self):
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def client(self):
        return Client(self.port)

    def cli(self, *args):
        return subprocess.run([SFA, *args, "--data", self.data_dir], capture_output=True,
                              text=True, env=self.env, timeout=60)


class Worker(Server):
    """A running `sfa worker` (jobs, no HTTP) on a data directory; args such as --types."""

    def command(self):
        return [SFA, "worker", "--data", self.data_dir, *self.args]

    def ready(self, line):
        return "worker ready" in line


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


class Raw:
    """One TCP connection: sends a handshake, then frames; reads frames back."""

    def __init__(self, port, path="/socket/websocket?vsn=2.0.0", token=None, headers=None,
                 key=None, extra=b""):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.key = key or base64.b64encode(os.urandom(16)).decode()
        if token:
            path += f"&token={token}"
        h = {"Host": f"127.0.0.1:{port}", "Upgrade": "websocket", "Connection": "Upgrade",
             "Sec-WebSocket-Key": self.key, "Sec-WebSocket-Version": "13"}
        h.update(headers or {})
        req = f"GET {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in h.items() if v is not None) + "\r\n"
        self.sock.sendall(req.encode() + extra)
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed during the handshake: {self.buf!r}")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.body = b""
        if self.status != 101:
            n = int(self.headers.get("content-length", "0"))
            while len(self.buf) < n:
                self.buf += self.sock.recv(65536)
            self.body = self.buf[:n]

    def send(self, opcode, payload=b"", fin=True, mask=True, rsv=0, length=None):
        n = len(payload) if length is None else length
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        if n < 126:
            hdr = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
        if mask:
            k = os.urandom(4)
            payload = bytes(c ^ k[i % 4] for i, c in enumerate(payload))
            hdr += k
        self.sock.sendall(hdr + payload)

    def text(self, s):
        self.send(0x1, s.encode() if isinstance(s, str) else s)

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the server closed the connection")
            self.buf += chunk

    def recv(self):
        """(opcode, payload) of the next server frame; server frames are never masked."""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        check(not b1 & 0x80, "a server frame was masked")
        n, at = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, at = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, at = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(at + n)
        payload, self.buf = self.buf[at:at + n], self.buf[at + n:]
        return b0 & 0x0F, payload

    def recv_close(self):
        """Skips data frames; returns (code, reason) of the server's close frame."""
        while True:
            op, p = self.recv()
            if op == 0x8:
                if len(p) < 2:
                    return None, ""
                return struct.unpack("!H", p[:2])[0], p[2:].decode()

    def recv_json(self):
        op, p = self.recv()
        eq(op, 0x1, "opcode of a reply")
        return json.loads(p)

    def eof(self, timeout=5):
        """True when the server closes the TCP connection (after its close frame)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, socket.timeout):
            return False

    def close(self):
        self.sock.close()


def processes_with(*words):
    """Live processes (not zombies) whose command line has every one of words (bytes or
    str) among its arguments or inside one: [(pid, command line)]."""
    want = [w.encode() if isinstance(w, str) else w for w in words]
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                raw = f.read()
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and all(w in raw for w in want):
            found.append((int(pid), raw.replace(b"\0", b" ")[:160].decode("utf-8", "replace")))
    return found


def peak_rss_kb(pid):
    """The peak resident memory of a live process (VmHWM), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmHWM for process {pid}")


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


def phx_until(srv, key, topic, event, timeout_ms=60000, job_type=None, job_id=None, count=1):
    """Starts the official phoenix client joined to topic until event arrives (for a job of
    job_type or the job job_id, when given: an earlier job's late event must not end the
    wait; count times), and returns (thread, result dict filled when it ends) once the join
    has been answered."""
    for mod in ("phoenix", "ws"):
        check(os.path.isdir(os.path.join(ROOT, "node_modules", mod)),
              f"node_modules/{mod} is missing: run `npm ci` in the repository root")
    out = {}
    ready = os.path.join(srv.data_dir, f"phx-ready-{os.urandom(8).hex()}")
    cfg = {"url": f"ws://127.0.0.1:{srv.port}/socket", "token": key, "joins": [topic],
           "until": {"topic": topic, "event": event, "job_type": job_type, "job_id": job_id,
                     "count": count},
           "timeoutMs": timeout_ms,
           "readyFile": ready}

    def run():
        r = subprocess.run(["node", os.path.join(ROOT, "tests", "e2e", "phx_client.mjs"),
                            json.dumps(cfg)], capture_output=True, text=True,
                           timeout=timeout_ms / 1000 + 30, cwd=ROOT)
        out["rc"] = r.returncode
        out["stderr"] = r.stderr
        lines = r.stdout.strip().splitlines()
        out["seen"] = json.loads(lines[-1]) if lines else {}
    t = threading.Thread(target=run)
    t.start()
    deadline = time.time() + 30
    while not os.path.exists(ready) and t.is_alive() and time.time() < deadline:
        time.sleep(0.02)
    check(os.path.exists(ready), f"the phoenix client did not join {topic}: {out}")
    return t, out


def job_finished(srv, auth, jid, timeout=120):
    """Polls GET /api/jobs/<jid> until the job is completed or failed; returns it."""
    deadline = time.time() + timeout
    while True:
        j = srv.client().get(f"/api/jobs/{jid}", headers=auth).json()["data"]
        if j["status"] in ("completed", "failed"):
            return j
        check(time.time() < deadline, f"job {jid} did not finish: {j}")
        time.sleep(0.05)


def ffprobe(data, suffix, entries):
    """ffprobe's JSON for the file data (written with suffix) and -show_entries entries."""
    with tempfile.NamedTemporaryFile(suffix=suffix) as f:
        f.write(data)
        f.flush()
        p = subprocess.run(["ffprobe", "-v", "error", "-show_entries", entries, "-of", "json",
                            f.name], capture_output=True, text=True, timeout=30)
    eq(p.returncode, 0, f"ffprobe: {p.stderr}")
    return json.loads(p.stdout)


def settles(get, expected, what="value", timeout=10):
    """eq for state the server reaches shortly after answering (files removed, processes
    reaped): polls get() until it returns expected, failing after timeout seconds."""
    deadline = time.time() + timeout
    while (actual := get()) != expected and time.time() < deadline:
        time.sleep(0.05)
    eq(actual, expected, what)


def run_suite(tap, env, stop=()):
    """Starts one server with env, runs the suite's cases against it, prints the server
    log's tail when something failed, and returns the exit status. stop: functions that
    end what the suite started beside the server (fakes), called in order at the end."""
    srv = Server(env=env).start()
    try:
        rc = tap.run(srv)
    finally:
        srv.cleanup()
        for fn in stop:
            fn()
    if rc:
        print("# server log tail:\n# " + "\n# ".join(srv.log[-40:]))
    return rc
