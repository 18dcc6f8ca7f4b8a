#!/usr/bin/python3
"""End-to-end tests of live progress over WebSocket (spec section 6).

The real `sfa serve`, driven by the official `phoenix` JavaScript client under Node (with
`ws` as its transport, tests/e2e/phx_client.mjs) and by a raw-socket WebSocket client
written here, for the handshake and the protocol errors a library client never makes.
Job events themselves are covered by the unit tests (tests/api) until jobs exist.
"""
import base64
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from harness import Raw, Server, Tap, check, eq, phx_until, run_suite  # noqa: E402

tap = Tap()
PW = "correct horse battery"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def new_user(srv):
    """A registered, logged-in client, its user id and an API key."""
    c = srv.client()
    eq(c.register(f"ws-{uuid.uuid4().hex[:10]}@example.com", PW).status, 302, "register")
    key = c.create_api_key("socket")
    me = c.get("/api/me", headers={"Authorization": f"Bearer {key}"})
    eq(me.status, 200, "/api/me")
    body = me.json()
    uid = (body.get("data") or body)["id"]
    return c, uid, key


def phx(srv, **cfg):
    """Runs tests/e2e/phx_client.mjs with cfg; returns what it saw."""
    check(shutil.which("node"), "node is not installed (scripts/deps.sh installs nodejs)")
    for mod in ("phoenix", "ws"):
        check(os.path.isdir(os.path.join(ROOT, "node_modules", mod)),
              f"node_modules/{mod} is missing: run `npm ci` in the repository root")
    cfg.setdefault("url", f"ws://127.0.0.1:{srv.port}/socket")
    cfg.setdefault("joins", [])
    r = subprocess.run(["node", os.path.join(ROOT, "tests", "e2e", "phx_client.mjs"),
                        json.dumps(cfg)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    eq(r.returncode, 0, f"phx_client failed: {r.stderr.strip()[-800:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    check(not out.get("timedOut"), f"the phoenix client timed out: {out}")
    return out


# ---- a raw WebSocket client ----

def no_sanitizer_reports(log):
    """Under `make test SANITIZE=1` the server reports leaks and errors on stderr at exit."""
    bad = [line for line in log if "Sanitizer" in line or "runtime error:" in line]
    check(not bad, "sanitizer report in the server log:\n" + "\n".join(log[-60:]))


def accept_of(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


# ---- the phoenix client ----

@tap.case
def phoenix_client_joins_own_topic_pings_and_heartbeats(srv):
    _, uid, key = new_user(srv)
    _, other_uid, _ = new_user(srv)
    topics = [f"user:{uid}", f"user:{other_uid}", f"jobs:{uuid.uuid4()}", "rooms:lobby"]
    out = phx(srv, token=key, joins=topics, ping=f"user:{uid}", heartbeats=3)
    check(out["opened"], f"the socket did not open: {out}")
    eq(out["joins"][f"user:{uid}"], {"status": "ok", "response": {}}, "own user topic")
    refused = {"status": "error", "response": {"reason": "unauthorized"}}
    eq(out["joins"][f"user:{other_uid}"], refused, "another user's topic")
    eq(out["joins"][topics[2]], refused, "a job that is not the caller's")
    eq(out["joins"]["rooms:lobby"], refused, "an unknown topic")
    eq(out["ping"], {"status": "ok", "response": {"pong": True}}, "ping reply")
    check(out["heartbeats"] >= 3, f"heartbeats answered: {out['heartbeats']}")
    eq(out["opens"], 1, "connections opened (a missed heartbeat reply makes it reconnect)")
    eq(out["errors"], 0, "socket errors")


@tap.case
def phoenix_client_auth_token_subprotocol(srv):
    _, uid, key = new_user(srv)
    out = phx(srv, authToken=key, joins=[f"user:{uid}"])
    check(out["opened"], f"the socket did not open with authToken: {out}")
    eq(out["joins"][f"user:{uid}"]["status"], "ok", "join with authToken")


@tap.case
def bad_token_is_refused(srv):
    out = phx(srv, token="sfa_" + "x" * 43, joins=["user:nobody"])
    check(not out["opened"], "a bad token opened a socket")
    check(any("403" in m for m in out["errorMessages"]), f"errors: {out['errorMessages']}")
    r = Raw(srv.port, token="sfa_nope")
    eq(r.status, 403, "raw status")
    eq(json.loads(r.body)["code"], "forbidden", "error code")
    r.close()
    r = Raw(srv.port)
    eq(r.status, 403, "no credentials at all")
    r.close()


@tap.case
def session_cookie_with_same_origin(srv):
    c, uid, _ = new_user(srv)
    cookie = f"_sfa_session={c.cookies['_sfa_session']}"
    origin = f"http://127.0.0.1:{srv.port}"
    out = phx(srv, headers={"Cookie": cookie, "Origin": origin}, joins=[f"user:{uid}"])
    check(out["opened"], f"the session did not open a socket: {out}")
    eq(out["joins"][f"user:{uid}"]["status"], "ok", "join with the session")


@tap.case
def session_cookie_from_foreign_origin_is_refused(srv):
    c, uid, _ = new_user(srv)
    cookie = f"_sfa_session={c.cookies['_sfa_session']}"
    out = phx(srv, headers={"Cookie": cookie, "Origin": "http://evil.example"},
              joins=[f"user:{uid}"])
    check(not out["opened"], "a foreign Origin opened a socket with the session")
    check(any("403" in m for m in out["errorMessages"]), f"errors: {out['errorMessages']}")
    r = Raw(srv.port, headers={"Cookie": cookie})
    eq(r.status, 403, "a session without Origin")
    r.close()
    r = Raw(srv.port, headers={"Cookie": "_sfa_session=forged",
                               "Origin": f"http://127.0.0.1:{srv.port}"})
    eq(r.status, 403, "a forged session")
    r.close()


# ---- the handshake ----

@tap.case
def handshake_accept_and_refusals(srv):
    _, _, key = new_user(srv)
    r = Raw(srv.port, token=key, key="dGhlIHNhbXBsZSBub25jZQ==")
    eq(r.status, 101, "status")
    eq(r.headers.get("sec-websocket-accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "RFC 6455 example")
    eq(r.headers.get("upgrade", "").lower(), "websocket", "Upgrade header")
    r.close()
    r = Raw(srv.port, token=key, headers={"Upgrade": None, "Connection": None})
    eq(r.status, 426, "a plain GET")
    r.close()
    r = Raw(srv.port, token=key, headers={"Sec-WebSocket-Version": "8"})
    eq(r.status, 426, "an old version")
    eq(r.headers.get("sec-websocket-version"), "13", "the version we speak")
    r.close()
    r = Raw(srv.port, token=key, key="dG9vc2hvcnQ=")
    eq(r.status, 400, "a key that is not 16 bytes")
    r.close()
    r = Raw(srv.port, path="/socket/websocket?vsn=1.0.0", token=key)
    eq(r.status, 400, "the v1 serializer")
    r.close()


@tap.case
def pipelined_frame_after_handshake(srv):
    """Bytes sent right behind the request reach the socket (libmicrohttpd's extra_in)."""
    _, _, key = new_user(srv)
    frame_payload = b'[null,"1","phoenix","heartbeat",{}]'
    k = os.urandom(4)
    frame = bytes([0x81, 0x80 | len(frame_payload)]) + k + bytes(
        c ^ k[i % 4] for i, c in enumerate(frame_payload))
    r = Raw(srv.port, token=key, extra=frame)
    eq(r.status, 101, "status")
    eq(r.recv_json(), [None, "1", "phoenix", "phx_reply", {"status": "ok", "response": {}}],
       "heartbeat reply")
    r.close()


# ---- framing and protocol errors over a raw socket ----

def open_raw(srv):
    _, uid, key = new_user(srv)
    r = Raw(srv.port, token=key)
    eq(r.status, 101, "handshake")
    return r, uid


@tap.case
def ping_pong_fragments_and_close_echo(srv):
    r, uid = open_raw(srv)
    r.send(0x9, b"are you there")
    eq(r.recv(), (0xA, b"are you there"), "pong echoes the ping payload")
    # A join split in three fragments, with a ping between two of them.
    msg = json.dumps(["1", "1", f"user:{uid}", "phx_join", {}]).encode()
    r.send(0x1, msg[:5], fin=False)
    r.send(0x0, msg[5:9], fin=False)
    r.send(0x9, b"mid")
    r.send(0x0, msg[9:], fin=True)
    eq(r.recv(), (0xA, b"mid"), "pong in the middle of a fragmented message")
    eq(r.recv_json(), ["1", "1", f"user:{uid}", "phx_reply", {"status": "ok", "response": {}}],
       "join reply")
    r.text(json.dumps(["1", "2", f"user:{uid}", "ping", {}]))
    eq(r.recv_json()[4], {"status": "ok", "response": {"pong": True}}, "ping push")
    r.text(json.dumps(["1", "3", f"user:{uid}", "dance", {}]))
    eq(r.recv_json()[4], {"status": "error", "response": {"reason": "unknown event"}},
       "unknown event")
    r.text(json.dumps(["1", "4", f"user:{uid}", "phx_leave", {}]))
    eq(r.recv_json()[4], {"status": "ok", "response": {}}, "leave")
    r.text(json.dumps(["1", "5", f"user:{uid}", "ping", {}]))
    eq(r.recv_json()[4], {"status": "error", "response": {"reason": "unmatched topic"}},
       "after leaving")
    r.send(0x8, struct.pack("!H", 1000) + b"bye")
    code, _ = r.recv_close()
    eq(code, 1000, "the server echoes the close code")
    check(r.eof(), "the server did not close the TCP connection after the handshake")
    r.close()


@tap.case
def unmasked_frame_closes_1002(srv):
    r, _ = open_raw(srv)
    r.send(0x1, b'[null,"1","phoenix","heartbeat",{}]', mask=False)
    eq(r.recv_close()[0], 1002, "close code")
    r.close()


@tap.case
def protocol_violations_close_1002(srv):
    cases = [
        ("reserved bit", dict(opcode=0x1, payload=b"x", rsv=4)),
        ("unknown opcode", dict(opcode=0x3, payload=b"")),
        ("fragmented ping", dict(opcode=0x9, payload=b"", fin=False)),
        ("continuation first", dict(opcode=0x0, payload=b"x")),
    ]
    for what, kw in cases:
        r, _ = open_raw(srv)
        r.send(**kw)
        eq(r.recv_close()[0], 1002, what)
        r.close()
    r, _ = open_raw(srv)
    r.send(0x9, b"p" * 126)
    eq(r.recv_close()[0], 1002, "ping longer than 125 bytes")
    r.close()


@tap.case
def oversized_frame_closes_1009(srv):
    r, _ = open_raw(srv)
    # Only the header: the server refuses from the announced length, before any payload.
    r.send(0x1, b"", length=2 << 20)
    eq(r.recv_close()[0], 1009, "close code for a 2 MiB frame")
    r.close()
    r, _ = open_raw(srv)
    chunk = b"a" * (600 * 1024)
    r.send(0x1, chunk, fin=False)
    r.send(0x0, chunk, fin=True)
    eq(r.recv_close()[0], 1009, "close code for a 1.2 MiB message in two fragments")
    r.close()


@tap.case
def invalid_utf8_closes_1007(srv):
    r, _ = open_raw(srv)
    r.text(b'["1","1","phoenix","heartbeat",{"x":"\xc3\x28"}]')
    eq(r.recv_close()[0], 1007, "close code")
    r.close()


@tap.case
def malformed_phoenix_messages_close(srv):
    for what, frame, code in [
        ("not JSON", (0x1, b"hello"), 1007),
        ("not a 5-array", (0x1, b'{"topic":"phoenix"}'), 1007),
        ("topic not a string", (0x1, b'[null,"1",7,"heartbeat",{}]'), 1007),
        ("binary", (0x2, b"\x00\x01\x02"), 1003),
    ]:
        r, _ = open_raw(srv)
        r.send(*frame)
        eq(r.recv_close()[0], code, what)
        r.close()


@tap.case
def per_user_socket_cap(srv):
    _, _, key = new_user(srv)
    raws = []
    try:
        for i in range(32):
            r = Raw(srv.port, token=key)
            eq(r.status, 101, f"socket {i + 1}")
            raws.append(r)
        r = Raw(srv.port, token=key)
        eq(r.status, 429, "the 33rd socket of one account")
        eq(json.loads(r.body)["code"], "rate_limited", "error code")
        r.close()
        _, _, other_key = new_user(srv)
        r = Raw(srv.port, token=other_key)
        eq(r.status, 101, "another account is not affected")
        r.close()
        # Closing one (with the handshake) frees its slot once its thread has ended.
        first = raws.pop(0)
        first.send(0x8, struct.pack("!H", 1000))
        eq(first.recv_close()[0], 1000, "close echo")
        check(first.eof(), "no EOF after the close handshake")
        first.close()
        deadline = time.monotonic() + 10
        while True:
            r = Raw(srv.port, token=key)
            if r.status == 101 or time.monotonic() > deadline:
                break
            r.close()
            time.sleep(0.02)
        eq(r.status, 101, "a slot freed by closing a socket")
        raws.append(r)
    finally:
        for r in raws:
            r.close()


@tap.case
def shutdown_closes_open_sockets(srv):
    s = Server(env={"SFA_RATE_AUTH": "100000"}).start()
    try:
        _, _, key = new_user(s)
        raws = [Raw(s.port, token=key) for _ in range(3)]
        for r in raws:
            eq(r.status, 101, "handshake")
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        for r in raws:
            eq(r.recv_close()[0], 1001, "going away")
            r.send(0x8, struct.pack("!H", 1001))  # complete the handshake, as a client does
        rc = s.proc.wait(20)
        took = time.monotonic() - t0
        eq(rc, 0, "exit status")
        check(took < 8, f"shutdown took {took:.1f} s with sockets open")
        check(any("closing 3 WebSocket" in line for line in s.log),
              "no log line about closing the sockets")
        no_sanitizer_reports(s.log)
        for r in raws:
            r.close()
    finally:
        s.cleanup()


@tap.case
def silent_client_does_not_block_shutdown(srv):
    """A client that never answers the close frame is dropped after the close wait."""
    s = Server(env={"SFA_RATE_AUTH": "100000"}).start()
    try:
        _, _, key = new_user(s)
        r = Raw(s.port, token=key)
        eq(r.status, 101, "handshake")
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        rc = s.proc.wait(20)
        eq(rc, 0, "exit status")
        took = time.monotonic() - t0
        check(took < 8, f"shutdown took {took:.1f} s")
        eq(r.recv_close()[0], 1001, "going away")
        r.close()
        no_sanitizer_reports(s.log)
    finally:
        s.cleanup()


def wait_status(srv, auth, jid, want, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        j = srv.client().get(f"/api/jobs/{jid}", headers=auth).json()["data"]
        if j["status"] in want:
            return j
        time.sleep(0.05)
    raise AssertionError(f"job {jid} never reached {want}")


@tap.case
def job_events_reach_the_phoenix_client(srv):
    """A real probe job's progress and completion arrive on jobs:<id> and user:<id>."""
    email = f"ev-{uuid.uuid4().hex[:8]}@example.com"
    uid = srv.cli("user", "create", "--email", email, "--password", PW).stdout.strip()
    key = srv.cli("token", "create", "--email", email).stdout.strip()
    auth = {"Authorization": f"Bearer {key}"}
    # A queued job that starts only after the client has joined: occupy both probe slots.
    blockers = [srv.cli("job", "enqueue", "--email", email, "--type", "probe", "--payload",
                        '{"steps": 20, "step_ms": 100}').stdout.strip() for _ in range(2)]
    for b in blockers:
        wait_status(srv, auth, b, ("running",))
    jid = srv.cli("job", "enqueue", "--email", email, "--type", "probe", "--payload",
                  '{"steps": 4, "step_ms": 50}').stdout.strip()
    seen = phx(srv, url=f"ws://127.0.0.1:{srv.port}/socket", token=key,
               joins=[f"jobs:{jid}", f"user:{uid}"],
               # user:<id> is published after jobs:<id>, so both are in once it arrives
               until={"topic": f"user:{uid}", "event": "job:completed", "job_id": jid},
               timeoutMs=20000)
    eq(seen["joins"][f"jobs:{jid}"]["status"], "ok", "join own job")
    mine = [e for e in seen["events"] if e["topic"] == f"jobs:{jid}"]
    kinds = [e["event"] for e in mine]
    check("job:progress" in kinds and kinds[-1] == "job:completed", f"events: {kinds}")
    progress = [e["payload"]["progress"] for e in mine if e["event"] == "job:progress"]
    eq(progress, sorted(progress), "progress arrives in order")
    p = next(e["payload"] for e in mine if e["event"] == "job:progress")
    eq(sorted(p), ["job_id", "message", "progress", "status"], "job:progress fields")
    done = mine[-1]["payload"]
    eq((done["job_id"], done["job_type"], done["result"]["steps"]), (jid, "probe", 4),
       "job:completed payload")
    on_user = [e for e in seen["events"] if e["topic"] == f"user:{uid}"]
    check(any(e["event"] == "job:completed" and e["payload"]["job_id"] == jid for e in on_user),
          "the user topic did not get the completion")
    # A cancelled job ends with job:failed, error "cancelled".
    jid2 = srv.cli("job", "enqueue", "--email", email, "--type", "probe", "--payload",
                   '{"steps": 100, "step_ms": 100}').stdout.strip()
    t, out = phx_until(srv, key, f"jobs:{jid2}", "job:failed", timeout_ms=20000)
    wait_status(srv, auth, jid2, ("running",))
    eq(srv.client().request("DELETE", f"/api/jobs/{jid2}", headers=auth).status, 202, "cancel")
    t.join(30)
    eq(out.get("rc"), 0, f"phoenix client: {out.get('stderr', '')[-400:]}")
    failed = [e for e in out["seen"]["events"] if e["event"] == "job:failed"]
    eq([f["payload"] for f in failed], [{"job_id": jid2, "job_type": "probe",
                                         "error": "cancelled"}], "job:failed")
    for b in blockers:
        srv.client().request("DELETE", f"/api/jobs/{b}", headers=auth)


@tap.case
def server_stops_cleanly_after_the_suite(srv):
    """Last: the shared server, after every case above, exits 0 with nothing leaked."""
    eq(srv.stop(), 0, "exit status")
    no_sanitizer_reports(srv.log)


if __name__ == "__main__":
    sys.exit(run_suite(tap, {"SFA_RATE_AUTH": "100000"}))
