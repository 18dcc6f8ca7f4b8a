#!/usr/bin/python3
"""fake_lalalai.py - a fake lal.ai API v1.1 for offline tests.

Run with Debian's /usr/bin/python3 (standard library only). It listens on 127.0.0.1 on a
port the system picks, prints that port as the first line of stdout, and serves until it
is killed or its stdin reaches end-of-file (so it never outlives the test holding the pipe).

License keys: any key starting with "key-" is valid (each key is its own account, with its
own check budget and minutes); anything else answers 401 {"detail": "Invalid license key"}.

Endpoints (all POST, X-License-Key on every call):
  /api/v1/upload/              raw body; Content-Disposition filename="..." or
                               filename*=utf-8''... required (else 400 {"detail", "code"})
                               -> {id, name, size, duration, expires}; duration read from
                               a WAV header (0 otherwise)
  /api/v1/split/multistem/     {"source_id", "presets": {"stem_list", "splitter",
                               "encoder_format"}, "idempotency_key"} -> {"task_id"};
                               invalid presets -> 422 {"detail": [{"loc", "msg", "type"}]};
                               unknown source -> 400 invalid_source; a repeated idempotency
                               key -> 400 {"code": "idempotency_key_used"}
  /api/v1/check/               {"task_ids": [...]} -> {"result": {id: state}}; each check of
                               a task advances it: progress 0, progress 42, then the final
                               state. More than CHECK_LIMIT checks a minute per key -> 429
                               with Retry-After: 1.
  /api/v1/cancel/              {"task_ids"} -> {"result": {id: {"status": "success"} |
                               {"status": "server_error", "error": "Task is not in progress
                               state"}}}
  /api/v1/cancel/all/          the same for every task of the key's account
  /api/v1/delete/              {"source_id"} -> {}
  /api/v1/limits/minutes_left/ -> {"minutes_left": 1000 - minutes of successful tasks}
Result tracks are GET /_dl/<task>/<label>.wav (no key), each the uploaded file's bytes.

Behaviour by magic words in the uploaded file name:
  task-error        the task ends {"status": "error", "error": {"code", "detail"}}
  task-cancelled    the task ends {"status": "cancelled"}
  task-server-error the task ends {"status": "server_error", "error": "..."}
  task-stuck        the task stays at progress 42 until cancelled
  dl-cut-once       each track's first download closes mid-body (resume works after)
  dl-cut-always     every download closes mid-body
  dl-404            downloads answer 404
  dl-stall          downloads send 100 bytes, then stall for STALL_SECONDS
  size-lie          the announced track sizes are one byte too large

Test control: GET /_fake/stats -> {"hits": {path: n}, "tasks": {id: {"state", "checks",
"stems", "key", "idempotency_key"}}, "uploads": [{"name", "size", "key"}], "downloads":
{path: n}, "check_times": [...]}; POST /_fake/reset clears everything; POST /_fake/config
{"check_limit": N} changes the per-minute check limit.
"""

import json
import re
import secrets
import struct
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler

from fake_server import serve

STALL_SECONDS = 10
STEMS = {"vocals", "drum", "piano", "bass", "electric_guitar", "acoustic_guitar"}
NOT_IN_PROGRESS = "Task is not in progress state"


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()
        self.check_limit = 20

    def reset(self):
        self.hits = {}
        self.sources = {}  # id -> dict(data, name, key, duration)
        self.tasks = {}  # id -> dict(...)
        self.idem = set()
        self.checks = {}  # key -> [monotonic times]
        self.check_times = []
        self.uploads = []
        self.downloads = {}
        self.used = {}  # key -> minutes


S = State()


def wav_duration(data):
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return 0.0
    pos, rate, block = 12, 0, 0
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if cid == b"fmt " and size >= 16:
            _, ch, rate, _, block, _ = struct.unpack("<HHIIHH", data[pos + 8:pos + 24])
        if cid == b"data":
            return (min(size, len(data) - pos - 8) / (rate * block)) if rate and block else 0.0
        pos += 8 + size + (size & 1)
    return 0.0


def file_name(disposition):
    if not disposition:
        return None
    m = re.search(r"filename\*=utf-8''([^;]+)", disposition, re.I)
    if m:
        return urllib.parse.unquote(m.group(1).strip())
    m = re.search(r'filename="([^"]*)"', disposition)
    return m.group(1) if m and m.group(1) else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    @property
    def base(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def send(self, status, obj, headers=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def json_body(self):
        try:
            j = json.loads(self.body() or b"{}")
            return j if isinstance(j, dict) else None
        except ValueError:
            return None

    # -- GET: downloads and stats --

    def do_GET(self):
        path = urllib.parse.urlparse(self.path).path
        if path == "/_fake/stats":
            with S.lock:
                tasks = {k: {f: v[f] for f in ("state", "checks", "stems", "key",
                                                "idempotency_key")}
                         for k, v in S.tasks.items()}
                return self.send(200, {"hits": S.hits, "tasks": tasks, "uploads": S.uploads,
                                       "downloads": S.downloads,
                                       "check_times": S.check_times})
        m = re.match(r"^/_dl/([^/]+)/([a-z_]+)\.wav$", path)
        if not m:
            return self.send(404, {"detail": "Not found"})
        with S.lock:
            task = S.tasks.get(m.group(1))
            S.downloads[path] = S.downloads.get(path, 0) + 1
            n_get = S.downloads[path]
        if not task or task["state"] != "success" or m.group(2) not in task["labels"]:
            return self.send(404, {"detail": "Not found"})
        data = task["data"]
        name = task["name"]
        if "dl-404" in name:
            return self.send(404, {"detail": "Link expired"})
        start = 0
        rng = self.headers.get("Range")
        rm = re.match(r"^bytes=(\d+)-$", rng or "")
        if rm and int(rm.group(1)) < len(data):
            start = int(rm.group(1))
        part = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Content-Length", str(len(part)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Disposition", f'attachment; filename="{m.group(2)}.wav"')
        self.end_headers()
        cut = ("dl-cut-always" in name) or ("dl-cut-once" in name and n_get == 1)
        if "dl-stall" in name:
            self.wfile.write(part[:100])
            self.wfile.flush()
            time.sleep(STALL_SECONDS)
            self.close_connection = True
            return
        if cut:
            self.wfile.write(part[: len(part) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(part)

    # -- POST: the API --

    def do_POST(self):
        path = urllib.parse.urlparse(self.path).path
        with S.lock:
            S.hits[path] = S.hits.get(path, 0) + 1
        if path == "/_fake/reset":
            self.body()
            with S.lock:
                S.reset()
            return self.send(200, {})
        if path == "/_fake/config":
            j = self.json_body() or {}
            with S.lock:
                S.check_limit = int(j.get("check_limit", S.check_limit))
            return self.send(200, {})
        key = self.headers.get("X-License-Key") or ""
        if not key.startswith("key-"):
            self.body()
            return self.send(401, {"detail": "Invalid license key"})
        routes = {
            "/api/v1/upload/": self.upload,
            "/api/v1/split/multistem/": self.split,
            "/api/v1/check/": self.check,
            "/api/v1/cancel/": self.cancel,
            "/api/v1/cancel/all/": self.cancel_all,
            "/api/v1/delete/": self.delete,
            "/api/v1/limits/minutes_left/": self.minutes_left,
        }
        fn = routes.get(path)
        if not fn:
            self.body()
            return self.send(404, {"detail": "Not found"})
        fn(key)

    def upload(self, key):
        data = self.body()
        name = file_name(self.headers.get("Content-Disposition"))
        if not name:
            return self.send(400, {"detail": "File name is missing", "code": "invalid_file"})
        sid = "src-" + secrets.token_hex(8)
        dur = wav_duration(data)
        with S.lock:
            S.sources[sid] = {"data": data, "name": name, "key": key, "duration": dur}
            S.uploads.append({"name": name, "size": len(data), "key": key})
        self.send(200, {"id": sid, "name": name, "size": len(data), "duration": dur,
                        "expires": int(time.time()) + 86400})

    def split(self, key):
        j = self.json_body()
        if j is None:
            return self.send(400, {"detail": "Invalid JSON", "code": "internal_error"})
        presets = j.get("presets")
        stems = presets.get("stem_list") if isinstance(presets, dict) else None
        errors = []
        if not isinstance(stems, list) or not 1 <= len(stems) <= 6:
            errors.append({"loc": ["body", "presets", "stem_list"],
                           "msg": "must hold 1 to 6 stems", "type": "value_error"})
        else:
            for i, s in enumerate(stems):
                if s not in STEMS:
                    errors.append({"loc": ["body", "presets", "stem_list", i],
                                   "msg": f"unknown stem {s!r}", "type": "value_error"})
        if isinstance(presets, dict) and presets.get("encoder_format") not in (
                None, "wav", "mp3", "flac"):
            errors.append({"loc": ["body", "presets", "encoder_format"],
                           "msg": "invalid format", "type": "value_error"})
        if errors:
            return self.send(422, {"detail": errors})
        idem = j.get("idempotency_key")
        with S.lock:
            src = S.sources.get(j.get("source_id"))
            if not src or src["key"] != key:
                return self.send(400, {"detail": "Unknown source", "code": "invalid_source"})
            if idem:
                if idem in S.idem:
                    return self.send(400, {"detail": "Idempotency key was already used",
                                           "code": "idempotency_key_used"})
                S.idem.add(idem)
            tid = "task-" + secrets.token_hex(8)
            labels = list(stems) + ["no_multistem"]
            S.tasks[tid] = {"state": "progress", "checks": 0, "stems": stems, "key": key,
                            "idempotency_key": idem, "source_id": j["source_id"],
                            "name": src["name"], "labels": labels,
                            "data": src["data"], "duration": src["duration"]}
        self.send(200, {"task_id": tid})

    def task_state(self, tid, t):
        name = t["name"]
        if t["state"] == "cancelled":
            return {"status": "cancelled"}
        if t["state"] == "progress":
            t["checks"] += 1
            if t["checks"] == 1:
                return {"status": "progress", "progress": 0}
            if t["checks"] == 2 or "task-stuck" in name:
                return {"status": "progress", "progress": 42}
            if "task-error" in name:
                t["state"] = "error"
            elif "task-cancelled" in name:
                t["state"] = "cancelled"
            elif "task-server-error" in name:
                t["state"] = "server_error"
            else:
                t["state"] = "success"
                dur = t["duration"]
                S.used[t["key"]] = S.used.get(t["key"], 0) + dur / 60
        if t["state"] == "error":
            return {"status": "error", "error": {"code": "unsupported_audio",
                                                 "detail": "The audio could not be processed"}}
        if t["state"] == "cancelled":
            return {"status": "cancelled"}
        if t["state"] == "server_error":
            return {"status": "server_error", "error": "Processing node failed"}
        size = len(t["data"]) + (1 if "size-lie" in name else 0)
        tracks = [{"type": "stem" if lb != "no_multistem" else "back", "label": lb,
                   "url": f"{self.base}/_dl/{tid}/{lb}.wav", "size": size}
                  for lb in t["labels"]]
        return {"status": "success", "result": {
            "duration": t["duration"], "tracks": tracks}}

    def check(self, key):
        j = self.json_body() or {}
        ids = j.get("task_ids")
        if not isinstance(ids, list):
            return self.send(422, {"detail": [{"loc": ["body", "task_ids"],
                                               "msg": "field required", "type": "missing"}]})
        now = time.monotonic()
        with S.lock:
            recent = [t for t in S.checks.get(key, []) if now - t < 60]
            if len(recent) >= S.check_limit:
                S.checks[key] = recent
                return self.send(429, {"detail": "Too many requests"}, {"Retry-After": "1"})
            recent.append(now)
            S.checks[key] = recent
            S.check_times.append(time.time())
            result = {}
            for tid in ids:
                t = S.tasks.get(tid)
                if t and t["key"] == key:
                    result[tid] = self.task_state(tid, t)
        self.send(200, {"result": result})

    def cancel_ids(self, key, ids):
        result = {}
        with S.lock:
            for tid in ids:
                t = S.tasks.get(tid)
                if t and t["key"] == key and t["state"] == "progress":
                    t["state"] = "cancelled"
                    result[tid] = {"status": "success"}
                else:
                    result[tid] = {"status": "server_error", "error": NOT_IN_PROGRESS}
        self.send(200, {"result": result})

    def cancel(self, key):
        j = self.json_body() or {}
        ids = j.get("task_ids")
        if not isinstance(ids, list):
            return self.send(422, {"detail": [{"loc": ["body", "task_ids"],
                                               "msg": "field required", "type": "missing"}]})
        self.cancel_ids(key, ids)

    def cancel_all(self, key):
        self.body()
        with S.lock:
            ids = [k for k, t in S.tasks.items() if t["key"] == key]
        self.cancel_ids(key, ids)

    def delete(self, key):
        j = self.json_body() or {}
        with S.lock:
            src = S.sources.get(j.get("source_id"))
            if src and src["key"] == key:
                del S.sources[j["source_id"]]
                S.hits["deleted"] = S.hits.get("deleted", 0) + 1
        self.send(200, {})

    def minutes_left(self, key):
        self.body()
        with S.lock:
            left = 1000.0 - S.used.get(key, 0)
        self.send(200, {"minutes_left": round(left, 2)})


def main():
    serve(Handler)


if __name__ == "__main__":
    main()
