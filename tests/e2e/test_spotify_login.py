#!/usr/bin/python3
"""End-to-end tests of the Spotify log-in (API.md §7) against the fake Spotify accounts
service: /auth/spotify → the fake's /authorize (PKCE S256 checked) → the callback, driven
by the harness's cookie-keeping Client as a browser would. Covers creating a user, logging
in, linking from the settings page, refusing to hijack an account, state binding
(another browser, reuse, tampering), access_denied, unlinking, token refresh keeping the
old refresh token, and invalid_grant unlinking. The server uses the fake's
"short-lived-client", whose user tokens live 2 s, so every use refreshes.
"""
import os
import re
import sqlite3
import sys
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from fakes import FakeSpotify, get_no_redirect  # noqa: E402
from harness import Server, Tap, check, eq, run_suite  # noqa: E402

tap = Tap()
PW = "correct horse battery"
fake = None


def begin(c):
    """GET /auth/spotify; returns the fake's authorize URL."""
    r = c.get("/auth/spotify")
    eq(r.status, 302, r.text)
    loc = r.header("Location")
    check(loc.startswith(fake.url + "/authorize?"), loc)
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query)
    eq(q["code_challenge_method"], ["S256"], "PKCE method")
    eq(len(q["code_challenge"][0]), 43, "challenge length")
    check(q["redirect_uri"][0].endswith("/auth/spotify/callback"), q["redirect_uri"])
    check(len(q["state"][0]) >= 32, "a long random state")
    return loc


def approve(authorize_url):
    """What Spotify does when the user approves: the callback path with code and state."""
    status, loc = get_no_redirect(authorize_url)
    eq(status, 302, "the fake redirects back")
    u = urllib.parse.urlsplit(loc)
    return f"{u.path}?{u.query}"


def spotify_login(srv, c, **user):
    """The whole dance for one browser; returns the callback's response."""
    fake.next_user(**user)
    return c.get(approve(begin(c)))


def me(c, headers=None):
    r = c.get("/api/me", headers=headers)
    eq(r.status, 200, r.text)
    return r.json()["data"]


def settings_state(c):
    r = c.get("/users/settings")
    eq(r.status, 200, "settings")
    m = re.search(r'<p id="spotify-state">(.*?)</p>', r.text)
    check(m, "the settings page has a Spotify section")
    return m.group(1)


def password_user(srv):
    email = f"pw-{uuid.uuid4().hex[:8]}@example.com"
    eq(srv.cli("user", "create", "--email", email, "--password", PW).returncode, 0, "create")
    c = srv.client()
    eq(c.log_in(email, PW).status, 302, "log in")
    return email, c


@tap.case
def unknown_account_creates_a_user_and_logs_in(srv):
    c = srv.client()
    r = spotify_login(srv, c, id="alice-sp", display_name="Alice", email="alice@example.com")
    eq((r.status, r.header("Location")), (302, "/"), r.text)
    check("_sfa_session" in c.cookies, "a session started")
    eq(me(c)["email"], "alice@example.com", "the user has Spotify's email")
    home = c.get("/")
    check("Account created with Spotify" in home.text, "flash")
    state = settings_state(c)
    check("Alice" in state and "alice-sp" in state, state)


@tap.case
def linked_account_logs_in_the_same_user(srv):
    first = srv.client()
    spotify_login(srv, first, id="erin-sp", display_name="Erin", email="erin@example.com")
    uid = me(first)["id"]
    second = srv.client()  # another browser, logged out
    r = spotify_login(srv, second, id="erin-sp", display_name="Erin", email="erin@example.com")
    eq((r.status, r.header("Location")), (302, "/"), r.text)
    eq(me(second)["id"], uid, "the same user")
    check("Welcome back" in second.get("/").text, "flash")


@tap.case
def logged_in_user_links_then_logs_in_with_spotify(srv):
    email, c = password_user(srv)
    check(settings_state(c).startswith("Not linked"), "not linked yet")
    r = spotify_login(srv, c, id="bob-sp", display_name="Bob", email="other-bob@example.com")
    eq((r.status, r.header("Location")), (302, "/users/settings"), r.text)
    page = c.get("/users/settings").text
    check("Your Spotify account is linked." in page, "flash")
    check("bob-sp" in settings_state(c), "link state shown")
    eq(me(c)["email"], email, "the email did not change")
    other = srv.client()
    spotify_login(srv, other, id="bob-sp", display_name="Bob", email="other-bob@example.com")
    eq(me(other)["email"], email, "Spotify log-in reaches the linked user")
    # Bob cannot take over a Spotify account that someone else linked.
    r = spotify_login(srv, c, id="alice-sp", display_name="Alice", email="alice@example.com")
    eq(r.status, 409, "already linked elsewhere")
    check("already linked to another" in r.text, "says why")


@tap.case
def existing_email_is_never_linked_automatically(srv):
    email, _ = password_user(srv)
    c = srv.client()
    r = spotify_login(srv, c, id="mallory-sp", display_name="M", email=email)
    eq(r.status, 409, r.text)
    check("already exists" in r.text, "tells the user to log in with the password")
    check("_sfa_session" not in c.cookies, "no session")


@tap.case
def account_without_email_gets_a_placeholder(srv):
    c = srv.client()
    r = spotify_login(srv, c, id="Dave.SP", display_name="Dave", email=None)
    eq(r.status, 302, r.text)
    eq(me(c)["email"], "spotify-dave.sp@users.invalid", "placeholder address")


@tap.case
def state_is_bound_to_the_browser_and_single_use(srv):
    a, b = srv.client(), srv.client()
    b.get("/users/log-in")  # b has its own CSRF cookie
    fake.next_user(id="frank-sp", display_name="Frank", email="frank@example.com")
    callback = approve(begin(a))
    r = b.get(callback)
    eq(r.status, 400, "another browser")
    check("another browser" in r.text, r.text)
    r = a.get(callback)
    eq(r.status, 400, "the state was used up by the failed attempt")
    callback = approve(begin(a))
    r = a.get(callback.replace("state=", "state=x"))
    eq(r.status, 400, "tampered state")
    eq(a.get("/auth/spotify/callback?code=abc").status, 400, "no state")
    eq(a.get(callback).status, 302, "the genuine callback still works once")
    eq(a.get(callback).status, 400, "and only once")


@tap.case
def access_denied_is_a_flash_not_an_error(srv):
    c = srv.client()
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(begin(c)).query)
    r = c.get("/auth/spotify/callback?" + urllib.parse.urlencode(
        {"error": "access_denied", "state": q["state"][0]}))
    eq((r.status, r.header("Location")), (302, "/users/log-in"), r.text)
    check("Spotify log-in was cancelled" in c.get("/users/log-in").text, "flash")
    check("_sfa_session" not in c.cookies, "no session")


@tap.case
def refresh_keeps_the_old_refresh_token_and_tokens_are_sealed(srv):
    email, c = password_user(srv)
    spotify_login(srv, c, id="gina-sp", display_name="Gina", email="gina@example.com")
    fake.reset()
    for i in range(2):
        r = c.get("/api/spotify/me")
        eq(r.status, 200, r.text)
        d = r.json()["data"]
        eq((d["linked"], d["spotify_id"], d["display_name"]), (True, "gina-sp", "Gina"), "me")
    used = fake.stats()["refresh_tokens_used"]
    eq(len(used), 2, "the 2-second token was refreshed on each use")
    eq(used[0], used[1], "Spotify sent no new refresh token, so the old one was kept")
    db = sqlite3.connect(os.path.join(srv.data_dir, "sfa.db"))
    try:
        rows = db.execute("SELECT l.access_token, l.refresh_token FROM spotify_links l "
                          "JOIN users u ON u.id = l.user_id WHERE u.email = ?",
                          (email,)).fetchall()
    finally:
        db.close()
    eq(len(rows), 1, "one link")
    for value in rows[0]:
        check(value.startswith("v1.") and used[0] not in value and "refresh-" not in value,
              "tokens are stored sealed")


@tap.case
def invalid_grant_unlinks(srv):
    _, c = password_user(srv)
    spotify_login(srv, c, id="hank-sp", display_name="Hank", email="hank@example.com")
    eq(c.get("/api/spotify/me").json()["data"]["linked"], True, "linked")
    fake.revoke_refresh_tokens()
    r = c.get("/api/spotify/me")
    eq(r.status, 200, r.text)
    d = r.json()["data"]
    eq(d["linked"], False, "unlinked")
    check("link your Spotify account again" in d["message"], d["message"])
    check(settings_state(c).startswith("Not linked"), "the settings page agrees")


@tap.case
def unlink_from_the_settings_page(srv):
    _, c = password_user(srv)
    spotify_login(srv, c, id="ivy-sp", display_name="Ivy", email="ivy@example.com")
    page = c.get("/users/settings").text
    check('action="/auth/spotify"' in page and 'value="delete"' in page, "an unlink form")
    token = c.csrf("/users/settings")
    r = c.post("/auth/spotify", form={"_method": "delete"})
    eq(r.status, 403, "CSRF is required")
    r = c.post("/auth/spotify", form={"_method": "delete", "_csrf_token": token})
    eq((r.status, r.header("Location")), (302, "/users/settings"), r.text)
    check("Your Spotify account was unlinked." in c.get("/users/settings").text, "flash")
    check(settings_state(c).startswith("Not linked"), "not linked")
    eq(c.get("/api/spotify/me").json()["data"], {"linked": False, "message": None}, "api")
    # The Spotify account is free again: logging in with it now creates a new user.
    other = srv.client()
    r = spotify_login(srv, other, id="ivy-sp", display_name="Ivy", email="ivy@example.com")
    eq(r.status, 302, r.text)


@tap.case
def spotify_made_account_sets_a_first_password(srv):
    c = srv.client()
    r = spotify_login(srv, c, id="nopw-sp", display_name="No Password",
                      email="nopw@example.com")
    eq(r.status, 302, r.text)
    page = c.get("/users/settings").text
    check('id="no-password"' in page and "Set password" in page, "the form offers a first password")
    r = c.post("/users/settings", form={
        "_method": "put", "_csrf_token": c.csrf("/users/settings"), "action": "update_password",
        "user[password]": "a first password here"})
    eq(r.status, 302, r.text)
    eq(srv.client().log_in("nopw@example.com", "a first password here").status, 302,
       "log in with the new password")
    page = c.get("/users/settings").text
    check('id="password_current"' in page, "from now on the current password is asked")
    r = c.post("/users/settings", form={
        "_method": "put", "_csrf_token": c.csrf("/users/settings"), "action": "update_password",
        "user[password]": "another password here"})
    eq(r.status, 422, "a second change needs the current password")


@tap.case
def not_configured_is_explained(_srv):
    s = Server(env=fake.env(client_id=None, secret=None)).start()
    try:
        c = s.client()
        r = c.get("/auth/spotify")
        eq(r.status, 503, r.text)
        check("SFA_SPOTIFY_CLIENT_ID" in r.text, "names the setting")
        check("Log in with Spotify" not in c.get("/users/log-in").text, "no button")
    finally:
        s.cleanup()


def main():
    global fake
    fake = FakeSpotify()
    return run_suite(tap, {**fake.env(client_id="short-lived-client"), "SFA_RATE_API": "100000",
                           "SFA_RATE_AUTH": "100000"}, stop=[fake.stop])


if __name__ == "__main__":
    sys.exit(main())
