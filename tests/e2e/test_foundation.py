#!/usr/bin/python3
"""End-to-end tests of the foundation: the real `sfa serve` driven over HTTP.

Accounts, sessions, CSRF, API keys, rate limits, health, errors, keep-alive, the CLI and
graceful shutdown. Each case is independent (fresh users), prints one TAP line.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from harness import SFA, Server, Tap, check, eq, run_suite  # noqa: E402

tap = Tap()
PW = "correct horse battery"


def new_email():
    return f"dj-{uuid.uuid4().hex[:10]}@example.com"


def user_with_key(srv):
    c = srv.client()
    email = new_email()
    eq(c.register(email, PW).status, 302, "register status")
    return c, email, c.create_api_key("test key")


@tap.case
def health_is_exact(srv):
    c = srv.client()
    r = c.get("/health")
    eq(r.status, 200, "status")
    eq(r.text, '{"status":"ok"}', "body")
    eq(r.header("Content-Type"), "application/json", "content type")
    r = c.get("/health/ready")
    eq(r.status, 200, "ready status")
    eq(r.json()["status"], "ok", "ready body")


@tap.case
def security_headers(srv):
    c = srv.client()
    r = c.get("/users/log-in")
    eq(r.status, 200, "status")
    eq(r.header("X-Content-Type-Options"), "nosniff", "nosniff")
    eq(r.header("X-Frame-Options"), "DENY", "frame options")
    check(r.header("Referrer-Policy"), "Referrer-Policy missing")
    csp = r.header("Content-Security-Policy") or ""
    check("default-src 'self'" in csp and "frame-ancestors 'none'" in csp, f"CSP: {csp}")
    check('name="_csrf_token"' in r.text, "the form has no CSRF field")
    check(c.cookies.get("_sfa_csrf"), "no CSRF cookie was set")
    check("script-src 'self';" in csp and "unsafe-eval" not in csp, f"scripts: {csp}")
    m = re.search(r'<link rel="stylesheet" href="(/assets/app-[0-9a-f]{12}\.css)">', r.text)
    check(m, "the page links its content-hashed stylesheet")
    css = c.get(m.group(1))
    eq((css.status, css.header("Cache-Control")), (200, "public, max-age=31536000, immutable"),
       "embedded assets are cached for a year")
    eq(c.get(m.group(1), headers={"If-None-Match": css.header("ETag")}).status, 304, "ETag")
    eq(c.get("/assets/app-000000000000.css").status, 404, "another build's name")


@tap.case
def register_settings_key_me(srv):
    c = srv.client()
    email = new_email()
    r = c.register(email, PW)
    eq(r.status, 302, "register")
    eq(r.header("Location"), "/", "redirect")
    check("_sfa_session" in c.cookies, "no session cookie after registering")
    home = c.get("/")
    check(email in home.text, "home page does not show the email")
    check("Account created" in home.text, "no flash message")
    r = c.get("/users/settings")
    eq(r.status, 200, "settings")
    key = c.create_api_key("my script")
    check(key.startswith("sfa_") and len(key) == 47, f"key shape: {key}")
    s = c.get("/users/settings")
    check(key not in s.text, "the key is shown again after creation")
    check("my script" in s.text and key[:12] in s.text, "the key is not listed")
    api = srv.client()
    r = api.get("/api/me", headers={"Authorization": f"Bearer {key}"})
    eq(r.status, 200, "/api/me")
    data = r.json()["data"]
    eq(data["email"], email, "email")
    check(re.fullmatch(r"[0-9a-f-]{36}", data["id"]), "id is not a uuid")
    check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["created_at"]), "created_at")
    # The session cookie authenticates /api too.
    eq(c.get("/api/me").json()["data"]["id"], data["id"], "session /api/me")


@tap.case
def wrong_and_revoked_keys_get_401(srv):
    c, email, key = user_with_key(srv)
    api = srv.client()
    r = api.get("/api/me", headers={"Authorization": "Bearer sfa_" + "x" * 43})
    eq(r.status, 401, "wrong key")
    eq(r.json()["code"], "unauthorized", "code")
    check(r.json()["error"], "no error sentence")
    eq(api.get("/api/me", headers={"Authorization": "Basic abc"}).status, 401, "not bearer")
    eq(api.get("/api/me").status, 401, "no credentials")
    eq(api.get("/api/me", headers={"Authorization": f"Bearer {key}"}).status, 200, "valid key")
    page = c.get("/users/settings").text
    key_id = re.search(r'name="key_id" value="([^"]+)"', page).group(1)
    r = c.post("/users/settings", form={"_method": "put", "_csrf_token": c.csrf("/users/settings"),
                                        "action": "revoke_api_key", "key_id": key_id})
    eq(r.status, 302, "revoke")
    r = api.get("/api/me", headers={"Authorization": f"Bearer {key}"})
    eq(r.status, 401, "revoked key")


@tap.case
def csrf_missing_is_403(srv):
    c = srv.client()
    c.csrf("/users/register")  # gets the CSRF cookie, but the form omits the token
    r = c.post("/users/register", form={"user[email]": new_email(), "user[password]": PW})
    eq(r.status, 403, "register without token")
    r = c.post("/users/register", form={"_csrf_token": "forged", "user[email]": new_email(),
                                        "user[password]": PW})
    eq(r.status, 403, "register with a forged token")
    fresh = srv.client()  # no CSRF cookie at all
    r = fresh.post("/users/log-in", form={"_csrf_token": "x", "user[email]": "a@b.co",
                                          "user[password]": PW})
    eq(r.status, 403, "log-in without a CSRF cookie")
    c2, email, key = user_with_key(srv)
    r = c2.post("/users/settings", form={"_method": "put", "action": "create_api_key",
                                         "name": "sneaky"})
    eq(r.status, 403, "settings without token")
    r = c2.post("/users/log-out", form={"_method": "delete"})
    eq(r.status, 403, "log-out without token")
    eq(c2.get("/users/settings").status, 200, "still logged in")


@tap.case
def short_password_is_422(srv):
    c = srv.client()
    email = new_email()
    r = c.register(email, "short pw")
    eq(r.status, 422, "status")
    check("should be at least 12 characters" in r.text, "message missing")
    check("_sfa_session" not in c.cookies, "a session was started")
    eq(c.log_in(email, "short pw").status, 401, "the user must not exist")
    r = c.register("not-an-email", PW)
    eq(r.status, 422, "bad email")
    check("must have the @ sign" in r.text, "email message")
    r = c.register(email, "x" * 73)
    eq(r.status, 422, "long password")
    check("at most 72" in r.text, "long message")


@tap.case
def duplicate_email_is_422(srv):
    c = srv.client()
    email = new_email()
    eq(c.register(email, PW).status, 302, "first")
    other = srv.client()
    r = other.register(email.upper(), PW)
    eq(r.status, 422, "second, other case")
    check("has already been taken" in r.text, "message")


@tap.case
def log_in_is_generic_and_remember_me(srv):
    c = srv.client()
    email = new_email()
    c.register(email, PW)
    b = srv.client()
    r = b.log_in(email, "wrong password here")
    eq(r.status, 401, "wrong password")
    check("Invalid email or password" in r.text, "generic message")
    r2 = b.log_in("nobody-" + email, PW)
    eq(r2.status, 401, "unknown email")
    check("Invalid email or password" in r2.text, "same message for unknown emails")
    r = b.log_in(email, PW)
    eq(r.status, 302, "log in")
    cookie = [v for v in r.headers.get_all("Set-Cookie") if v.startswith("_sfa_session=")][0]
    check("Max-Age" not in cookie, "a session cookie without remember-me must end with the browser")
    check("HttpOnly" in cookie and "SameSite=Lax" in cookie, cookie)
    r = srv.client().log_in(email, PW, remember=True)
    cookie = [v for v in r.headers.get_all("Set-Cookie") if v.startswith("_sfa_session=")][0]
    check("Max-Age=1209600" in cookie, f"remember-me cookie: {cookie}")


@tap.case
def log_out_invalidates_session(srv):
    c = srv.client()
    c.register(new_email(), PW)
    old = c.cookies["_sfa_session"]
    token = c.csrf("/")
    r = c.post("/users/log-out", form={"_method": "delete", "_csrf_token": token})
    eq(r.status, 302, "log-out")
    check("_sfa_session" not in c.cookies, "cookie not cleared")
    replay = srv.client()
    replay.cookies["_sfa_session"] = old
    r = replay.get("/users/settings")
    eq(r.status, 302, "old session must be dead")
    eq(r.header("Location"), "/users/log-in", "redirect to log-in")
    eq(replay.get("/api/me").status, 401, "old session on /api")


@tap.case
def password_change_kills_other_sessions(srv):
    a = srv.client()
    email = new_email()
    a.register(email, PW)
    b = srv.client()
    eq(b.log_in(email, PW).status, 302, "second browser")
    eq(b.get("/users/settings").status, 200, "b logged in")
    r = a.post("/users/settings", form={
        "_method": "put", "_csrf_token": a.csrf("/users/settings"), "action": "update_password",
        "current_password": "not the password", "user[password]": "brand new password"})
    eq(r.status, 422, "wrong current password")
    check("is not valid" in r.text, "message")
    r = a.post("/users/settings", form={
        "_method": "put", "_csrf_token": a.csrf("/users/settings"), "action": "update_password",
        "current_password": PW, "user[password]": "brand new password"})
    eq(r.status, 302, "change password")
    eq(a.get("/users/settings").status, 200, "the changing session survives")
    eq(b.get("/users/settings").status, 302, "the other session is gone")
    eq(srv.client().log_in(email, "brand new password").status, 302, "new password works")


@tap.case
def email_change(srv):
    a = srv.client()
    a.register(new_email(), PW)
    new = new_email()
    r = a.post("/users/settings", form={
        "_method": "put", "_csrf_token": a.csrf("/users/settings"), "action": "update_email",
        "current_password": PW, "user[email]": new})
    eq(r.status, 302, "change email")
    check(new in a.get("/users/settings").text, "new email shown")
    eq(srv.client().log_in(new, PW).status, 302, "log in with the new email")


@tap.case
def api_rate_limit_61st_is_429(srv):
    _, _, key = user_with_key(srv)
    api = srv.client()
    h = {"Authorization": f"Bearer {key}"}
    first = api.get("/api/me", headers=h)
    eq(first.header("X-RateLimit-Limit"), "60", "limit header")
    eq(first.header("X-RateLimit-Remaining"), "59", "remaining after the first")
    reset = int(first.header("X-RateLimit-Reset"))
    check(time.time() < reset <= time.time() + 61, f"reset {reset} is not within a minute")
    for i in range(2, 61):
        r = api.get("/api/me", headers=h)
        eq(r.status, 200, f"request {i}")
    eq(r.header("X-RateLimit-Remaining"), "0", "remaining after the 60th")
    r = api.get("/api/me", headers=h)
    eq(r.status, 429, "the 61st")
    body = r.json()
    eq(body["code"], "rate_limited", "code")
    eq(body["error"], "rate limit exceeded", "error")
    retry = int(r.header("Retry-After"))
    check(1 <= retry <= 60, f"Retry-After {retry}")
    eq(body["retry_after"], retry, "retry_after in the body")
    eq(r.header("X-RateLimit-Remaining"), "0", "remaining on 429")
    eq(r.header("X-RateLimit-Reset"), str(reset), "reset on 429")
    # Another user has a bucket of their own.
    _, _, key2 = user_with_key(srv)
    eq(api.get("/api/me", headers={"Authorization": f"Bearer {key2}"}).status, 200, "other user")


@tap.case
def unknown_routes_are_json(srv):
    c = srv.client()
    r = c.get("/api/does-not-exist")
    eq(r.status, 404, "404")
    eq(r.json()["code"], "not_found", "code")
    r = c.request("POST", "/api/me")
    eq(r.status, 405, "405")
    eq(r.header("Allow"), "GET", "Allow")
    eq(r.json()["code"], "method_not_allowed", "code")
    r = c.get("/no/such/page")
    eq(r.status, 404, "html 404")


@tap.case
def keep_alive_reuses_the_connection(srv):
    c = srv.client()
    c.get("/health")
    sock = c.conn.sock
    check(sock is not None, "no socket")
    for _ in range(3):
        eq(c.get("/health").status, 200, "health")
    check(c.conn is not None and c.conn.sock is sock, "the connection was not kept alive")
    # A request with a body keeps the connection too.
    c.register(new_email(), PW)
    c.get("/health")
    sock = c.conn.sock
    c.post("/users/settings", form={"_method": "put", "_csrf_token": c.csrf("/users/settings"),
                                    "action": "create_api_key", "name": "k"})
    check(c.conn is not None, "connection closed after a POST")


@tap.case
def oversized_body_is_413(srv):
    c = srv.client()
    r = c.post("/users/log-in", body=b"a=" + b"x" * (1 << 20 + 1),
               headers={"Content-Type": "application/x-www-form-urlencoded"})
    eq(r.status, 413, "status")
    eq(r.json()["code"], "payload_too_large", "code")


@tap.case
def access_log_levels(srv):
    """SFA_ACCESS_LOG=errors logs only failed requests; sample:3 one success in three; a
    bad value stops the start with a sentence."""
    s = Server(env={"SFA_ACCESS_LOG": "errors"}).start()
    try:
        c = s.client()
        eq(c.get("/health?mark=ok").status, 200, "health")
        eq(c.get("/no-such-page?mark=missing").status, 404, "a missing page")
        check(s.wait_log("mark=missing"), "the 404 was not logged")
        check(not any("mark=ok" in line for line in s.log), "a 200 was logged under errors")
    finally:
        s.cleanup()
    s = Server(env={"SFA_ACCESS_LOG": "sample:3"}).start()
    try:
        c = s.client()
        for i in range(9):  # any nine successes in a row hold three multiples of three
            c.get(f"/health?n={i}")
        c.get("/no-such-page?mark=missing")
        check(s.wait_log("mark=missing"), "the 404 was not logged")
        eq(len([line for line in s.log if "GET /health?n=" in line]), 3, "one success in three")
    finally:
        s.cleanup()
    r = subprocess.run([SFA, "serve", "--port", "0"],
                       env={**os.environ, "SFA_ACCESS_LOG": "some", "SFA_DATA_DIR": srv.data_dir},
                       capture_output=True, text=True, timeout=30)
    check(r.returncode != 0 and "SFA_ACCESS_LOG must be all, errors, off or sample:N" in r.stderr,
          f"a bad setting: {r.returncode} {r.stderr[-300:]}")


@tap.case
def access_log_redacts_secrets(srv):
    c = srv.client()
    c.get("/health?token=sfa_supersecretvalue&page=2")
    check(srv.wait_log("GET /health?"), "no access log line")
    lines = [l for l in srv.log if "GET /health?" in l]
    check(lines, "no access log line")
    check("supersecret" not in "\n".join(srv.log), "a secret reached the log")
    check("token=[FILTERED]&page=2" in lines[-1] and " 200 " in lines[-1], lines[-1])


@tap.case
def cli_user_and_token(srv):
    email = new_email()
    r = srv.cli("user", "create", "--email", email, "--password", PW)
    eq(r.returncode, 0, f"user create: {r.stderr}")
    uid = r.stdout.strip()
    check(re.fullmatch(r"[0-9a-f-]{36}", uid), f"user id: {uid!r}")
    r = srv.cli("token", "create", "--email", email, "--name", "ci")
    eq(r.returncode, 0, f"token create: {r.stderr}")
    key = r.stdout.strip()
    check(re.fullmatch(r"sfa_[A-Za-z0-9_-]{43}", key), f"only the key is printed: {r.stdout!r}")
    me = srv.client().get("/api/me", headers={"Authorization": f"Bearer {key}"})
    eq(me.json()["data"]["id"], uid, "key belongs to the user")
    r = srv.cli("user", "create", "--email", email, "--password", "short")
    eq(r.returncode, 1, "bad password")
    check("password should be at least 12 characters" in r.stderr, r.stderr)
    r = srv.cli("token", "create", "--email", "nobody@example.com")
    eq(r.returncode, 1, "unknown user")
    r = srv.cli("user", "create", "--colour", "red")
    eq(r.returncode, 2, "unknown flag")
    check("unknown option" in r.stderr, r.stderr)


@tap.case
def cli_errors_are_one_line(srv):
    busy = subprocess.run([SFA, "serve", "--port", str(srv.port), "--data", srv.data_dir],
                          capture_output=True, text=True, timeout=30)
    eq(busy.returncode, 1, "busy port exit")
    check(f"Port {srv.port} on 127.0.0.1 is already in use" in busy.stderr, busy.stderr)
    r = subprocess.run([SFA, "serve", "--port", "nope"], capture_output=True, text=True)
    eq(r.returncode, 2, "bad flag exit")
    check("--port must be a number" in r.stderr, r.stderr)
    r = subprocess.run([SFA, "serve", "--data", "/proc/sfa-no/such"], capture_output=True,
                       text=True)
    eq(r.returncode, 1, "bad data dir exit")
    check("Cannot create the data directory" in r.stderr, r.stderr)
    r = subprocess.run([SFA, "frobnicate"], capture_output=True, text=True)
    eq(r.returncode, 2, "unknown command")
    r = subprocess.run([SFA, "version"], capture_output=True, text=True)
    check(r.stdout.startswith("sfa "), r.stdout)


@tap.case
def auth_rate_limit_per_ip_and_email(_srv):
    s = Server(env={"SFA_RATE_AUTH": "3"}).start()
    try:
        c = s.client()
        email = new_email()
        for i in range(3):
            eq(c.log_in(email, "wrong password xx").status, 401, f"attempt {i + 1}")
        r = c.log_in(email, "wrong password xx")
        eq(r.status, 429, "4th attempt")
        check(r.header("Content-Type").startswith("text/html") and "Please wait" in r.text,
              f"a page for people, not JSON: {r.text[:200]}")
        eq(r.header("X-RateLimit-Limit"), "3", "limit")
        check(r.header("Retry-After"), "Retry-After missing")
    finally:
        s.cleanup()


@tap.case
def graceful_shutdown_loses_nothing(_srv):
    s = Server(env={"SFA_RATE_AUTH": "1000"}).start()
    data_dir = s.data_dir
    try:
        emails = [new_email() for _ in range(6)]
        clients = [s.client() for _ in emails]
        tokens = [c.csrf("/users/register") for c in clients]
        results = [None] * len(emails)
        sent = [threading.Event() for _ in emails]

        def go(i):
            c = clients[i]
            body = urllib.parse.urlencode({"_csrf_token": tokens[i], "user[email]": emails[i],
                                           "user[password]": PW})
            cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
            c.conn.request("POST", "/users/register", body=body, headers={
                "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
            sent[i].set()
            results[i] = c.conn.getresponse().status
        threads = [threading.Thread(target=go, args=(i,)) for i in range(len(emails))]
        for t in threads:
            t.start()
        for e in sent:
            check(e.wait(10), "a request could not be sent")
        time.sleep(0.2)  # read by the server; several are still hashing passwords
        rc = s.stop(signal.SIGTERM)
        for t in threads:
            t.join(30)
        eq(rc, 0, "exit status")
        eq(results, [302] * len(emails), "every in-flight request completed")
        check(any("finishing" in l for l in s.log), "no shutdown log line")
        check(any("database closed" in l for l in s.log), "the database was not closed")
        with socket.socket() as probe:
            check(probe.connect_ex(("127.0.0.1", s.port)) != 0, "still accepting connections")
        s2 = Server(data_dir=data_dir, env={"SFA_RATE_AUTH": "1000"}).start()
        try:
            for e in emails:
                eq(s2.client().log_in(e, PW).status, 302, f"{e} survived the restart")
        finally:
            s2.stop()
    finally:
        s.cleanup()


@tap.case
def browser_register_key_and_use_it(srv):
    """The whole first-use path in Debian's Chromium (tests/e2e/browser_flow.mjs)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    check(shutil.which("node"), "node is not installed (scripts/deps.sh installs nodejs)")
    check(os.path.isdir(os.path.join(root, "node_modules", "playwright-core")),
          "node_modules/playwright-core is missing: run `npm ci` in the repository root")
    check(os.path.exists(os.environ.get("SFA_CHROMIUM", "/usr/bin/chromium")),
          "Chromium is missing: `apt-get install chromium` (scripts/deps.sh does)")
    r = subprocess.run(["node", os.path.join(root, "tests", "e2e", "browser_flow.mjs"),
                        f"http://127.0.0.1:{srv.port}"], capture_output=True, text=True,
                       timeout=120, cwd=root)
    eq(r.returncode, 0, f"browser flow failed: {r.stderr.strip()[-800:]}")
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    eq(seen["me_status"], 200, "the key made in the browser works on /api/me")


if __name__ == "__main__":
    sys.exit(run_suite(tap, {"SFA_RATE_AUTH": "100000"}))
