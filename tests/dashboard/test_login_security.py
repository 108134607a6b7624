"""Issue 14: login throttle, forwarded headers from trusted proxies only, Secure cookies, and
settings changes that must not claim success for another tenant's users, channels or keys.

One real `thoth serve` per backend, with short lockouts (2 s doubling to 8 s) so a test can wait
one out, and 127.0.0.2 configured as the trusted reverse proxy. Clients connect from different
loopback addresses (127.0.0.x: Linux routes the whole 127/8 to lo), so "another address" is a
real TCP peer, not a header.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.dashboard.browser import browser, shot
from tests.support.dashboard import Server, csrf_of, start, stop

from thoth.server.dashboard import users
from thoth.server.notify import tenant_channels

__all__ = ["browser"]

PROXY = "127.0.0.2"
LOCKOUT = 2.0
ENV = {"THOTH_LOGIN_LOCKOUT_SECONDS": str(LOCKOUT), "THOTH_LOGIN_LOCKOUT_MAX_SECONDS": "8",
       "THOTH_LOGIN_MAX_FAILURES": "5", "THOTH_LOGIN_MAX_FAILURES_PER_ADDRESS": "8",
       "THOTH_TRUSTED_PROXIES": f"{PROXY},10.9.0.0/16"}
PASSWORD = "right-password-123"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, database_url: str | None) -> Iterator[Server]:
    s = start(tmp_path_factory.mktemp("thoth-home"), ENV, database_url)
    yield s
    stop(s)


_next_address = iter(range(10, 250))


def address() -> str:
    """A loopback address no other test has used (the throttle counts per address)."""
    return f"127.0.0.{next(_next_address)}"


class Browserish:
    """An httpx client from one source address that fetches the login form like a browser."""

    def __init__(self, server: Any, source: str, headers: dict[str, str] | None = None) -> None:
        self.c = httpx.Client(base_url=server.url, timeout=30, headers=headers or {},
                              transport=httpx.HTTPTransport(local_address=source))
        self.token = csrf_of(self.c.get("/login").text)

    def login(self, username: str, password: str, **headers: str) -> httpx.Response:
        return self.c.post("/login", data={"username": username, "password": password, "csrf_token": self.token,
                                           "next": "/"}, headers=headers)


def new_user(server: Server, tenant: str = "default", role: str = "viewer") -> str:
    name = f"u{uuid.uuid4().hex[:8]}"
    users.create_user(server.store.db, name, PASSWORD, role, tenant)
    return name


def attempts(server: Server, username: str) -> list[tuple[str, int, int]]:
    with server.store.db.read() as conn:
        rows = conn.all("SELECT client, ok, known_device FROM dashboard_login_attempts WHERE username = ?"
                        " ORDER BY attempted_at", (username,))
    return [(r[0], int(r[1]), int(r[2])) for r in rows]


# ---- login throttle ------------------------------------------------------------------------


def test_wrong_passwords_lock_the_user_out_then_the_right_one_works(srv: Server) -> None:
    name = new_user(srv)
    b = Browserish(srv, address())
    for _ in range(5):
        r = b.login(name, "wrong-password-0")
        assert r.status_code == 401 and "Wrong username or password" in r.text
    r = b.login(name, "wrong-password-0")
    assert r.status_code == 429, r.text
    assert "Too many failed sign-ins" in r.text and "Try again in" in r.text
    wait = int(r.headers["retry-after"])
    assert 1 <= wait <= LOCKOUT
    # the right password does not work during the lockout, from this address or any other
    assert b.login(name, PASSWORD).status_code == 429
    assert Browserish(srv, address()).login(name, PASSWORD).status_code == 429
    # a script asking for JSON gets the same answer as JSON
    r = b.c.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": b.token},
                 headers={"Accept": "application/json"})
    assert r.status_code == 429 and r.headers["retry-after"]
    assert "Too many failed sign-ins" in r.json()["message"] and r.json()["retry_after_seconds"] >= 1
    time.sleep(wait + 0.2)
    r = b.login(name, PASSWORD)
    assert r.status_code == 303 and "thoth_session=" in r.headers.get("set-cookie", "")
    # the success reset the user's counter: the next mistake is a plain 401, not a lockout
    assert Browserish(srv, address()).login(name, "wrong-password-1").status_code == 401
    recorded = attempts(srv, name)
    assert [ok for _, ok, _ in recorded] == [0, 0, 0, 0, 0, 1, 0]  # refusals check no password
    assert all(client.startswith("127.0.0.") for client, _, _ in recorded)


def test_server_processes_on_one_database_share_the_count(srv: Server, tmp_path: Path) -> None:
    """A second `thoth serve` on the same database: failures through either add up."""
    from tests.support.server import start_server, stop_server

    other = start_server(srv.db_url, tmp_path, ENV)
    try:
        name = new_user(srv)
        here, there = Browserish(srv, address()), Browserish(other, address())
        for b in (here, there, here, there, here):
            assert b.login(name, "wrong-password-0").status_code == 401
        assert there.login(name, PASSWORD).status_code == 429
        assert here.login(name, PASSWORD).status_code == 429
    finally:
        stop_server(other)


def test_changing_the_password_is_throttled_too(srv: Server) -> None:
    """A stolen session must not become a way to guess the current password."""
    name = new_user(srv)
    b = Browserish(srv, address())  # its own address: the failures below count there too
    assert b.login(name, PASSWORD).status_code == 303
    c = b.c
    token = csrf_of(c.get("/settings").text)
    for _ in range(5):
        r = c.post("/settings/password", data={"current": "wrong-password-0", "new": "another-password-1",
                                               "csrf_token": token})
        assert r.status_code == 422 and "Current password is wrong" in r.text
    r = c.post("/settings/password", data={"current": PASSWORD, "new": "another-password-1", "csrf_token": token})
    assert r.status_code == 429 and "Too many failed attempts" in r.text and r.headers["retry-after"]
    u = users.authenticate(srv.store.db, name, PASSWORD)
    assert u is not None  # unchanged


def test_an_admin_can_lift_a_lockout_from_the_shell(srv: Server) -> None:
    import os
    import subprocess
    import sys

    from tests.support.dashboard import SRC

    name = new_user(srv)
    b = Browserish(srv, address())
    for _ in range(5):
        b.login(name, "wrong-password-0")
    assert b.login(name, PASSWORD).status_code == 429
    r = subprocess.run([sys.executable, "-m", "thoth", "users", "--database-url", srv.db_url, "unlock", name],
                       env={**os.environ, "PYTHONPATH": SRC}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert b.login(name, PASSWORD).status_code == 303


def test_lockout_grows_and_is_capped(srv: Server) -> None:
    name = new_user(srv)
    b = Browserish(srv, address())
    for _ in range(5):
        b.login(name, "wrong-password-0")
    first = int(b.login(name, "x-wrong-123").headers["retry-after"])
    time.sleep(first + 0.2)
    assert b.login(name, "wrong-password-0").status_code == 401  # admitted, failed: locked again, longer
    second = int(b.login(name, "x-wrong-123").headers["retry-after"])
    assert second > first and second <= 8


def test_a_parallel_burst_gets_no_more_guesses_than_the_limit(srv: Server) -> None:
    """Each attempt is charged before its password is checked, in one locking transaction."""
    name = new_user(srv)
    clients = [Browserish(srv, address()) for _ in range(6)]

    def guess(i: int) -> int:
        return clients[i % len(clients)].login(name, f"wrong-{i}-password").status_code

    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(guess, range(36)))
    assert codes.count(401) == 5 and codes.count(429) == 31, codes


def test_one_address_is_throttled_across_user_names(srv: Server) -> None:
    """Password spraying: one wrong guess for each of many names, from one address."""
    victim = new_user(srv)
    sprayer = Browserish(srv, address())
    for i in range(8):
        assert sprayer.login(f"nobody{i}-{uuid.uuid4().hex[:4]}", "Summer2026!").status_code == 401
    r = sprayer.login(victim, PASSWORD)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    # the user is not locked: from another address the right password works
    assert Browserish(srv, address()).login(victim, PASSWORD).status_code == 303


def test_a_browser_that_signed_in_before_is_not_locked_out_by_strangers(srv: Server) -> None:
    name = new_user(srv)
    own = Browserish(srv, address())
    r = own.login(name, PASSWORD)
    assert r.status_code == 303 and "thoth_device=" in r.headers.get("set-cookie", "")
    own.token = csrf_of(own.c.get("/login").text)
    attacker = Browserish(srv, address())
    for _ in range(6):
        attacker.login(name, "wrong-password-0")
    assert attacker.login(name, PASSWORD).status_code == 429  # the stranger's right guess gets nothing
    assert own.login(name, PASSWORD).status_code == 303  # the user's own browser still signs in
    assert attempts(srv, name)[-1][2] == 1  # recorded as a known device
    # that browser has a counter of its own: five mistakes lock it too
    own.token = csrf_of(own.c.get("/login").text)
    for _ in range(5):
        assert own.login(name, "wrong-password-2").status_code == 401
    assert own.login(name, PASSWORD).status_code == 429


def test_forwarded_for_counts_only_from_a_trusted_proxy(srv: Server) -> None:
    # An untrusted client cannot dodge the address counter by inventing X-Forwarded-For values.
    liar = Browserish(srv, address())
    for i in range(8):
        r = liar.login(f"ghost{i}-{uuid.uuid4().hex[:4]}", "guess-password", **{"X-Forwarded-For": f"203.0.113.{i}"})
        assert r.status_code == 401
    assert liar.login("ghost-x", "guess-password", **{"X-Forwarded-For": "203.0.113.99"}).status_code == 429
    # Behind the trusted proxy each forwarded client has its own counter...
    via_proxy = Browserish(srv, PROXY)
    client = f"198.51.100.{next(_next_address)}"
    for i in range(8):
        r = via_proxy.login(f"spray{i}-{uuid.uuid4().hex[:4]}", "guess-password", **{"X-Forwarded-For": client})
        assert r.status_code == 401
    assert via_proxy.login("spray-x", "guess-password", **{"X-Forwarded-For": client}).status_code == 429
    # ... so the proxy's other clients are not locked out with it
    name, other = new_user(srv), f"198.51.100.{next(_next_address)}"
    r = via_proxy.login(name, PASSWORD, **{"X-Forwarded-For": f"{other}, 10.9.1.1"})  # a trusted inner hop
    assert r.status_code == 303
    assert attempts(srv, name) == [(other, 1, 0)]
    with srv.store.db.read() as conn:
        sql = "SELECT DISTINCT client FROM dashboard_login_attempts WHERE username LIKE ?"
        spray, ghosts = conn.all(sql, ("spray%",)), conn.all(sql, ("ghost%",))
    assert {r[0] for r in spray} == {client}
    assert len(ghosts) == 1 and ghosts[0][0].startswith("127.0.0.")


# ---- Secure cookies ------------------------------------------------------------------------


def _cookie_flags(r: httpx.Response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h.lower() for h in r.headers.get_list("set-cookie")}


def test_cookies_are_secure_when_a_trusted_proxy_says_https(srv: Server) -> None:
    name = new_user(srv)
    plain = Browserish(srv, address(), headers={"X-Forwarded-Proto": "https"})  # not a trusted peer
    r = plain.login(name, PASSWORD)
    assert r.status_code == 303
    assert all("secure" not in v for v in _cookie_flags(r).values()), r.headers.get_list("set-cookie")
    proxied = httpx.Client(base_url=srv.url, timeout=30, transport=httpx.HTTPTransport(local_address=PROXY),
                           headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.250"})
    r = post_login(proxied, name, PASSWORD)
    assert r.status_code == 303
    flags = _cookie_flags(r)
    assert "secure" in flags["thoth_session"] and "httponly" in flags["thoth_session"]
    assert "secure" in flags["thoth_device"]


def post_login(c: httpx.Client, username: str, password: str) -> httpx.Response:
    """Log in where the login form's CSRF cookie is Secure: httpx keeps Secure cookies off plain
    http (as a browser would off a non-local http site), so it is sent by hand."""
    form = c.get("/login")
    assert "; secure" in form.headers["set-cookie"].lower()
    token = csrf_of(form.text)
    return c.post("/login", data={"username": username, "password": password, "csrf_token": token},
                  headers={"Cookie": f"thoth_login_csrf={token}"})


@pytest.mark.parametrize("how", ["flag", "env"])
def test_secure_cookies_flag_and_setting(tmp_path: Path, how: str) -> None:
    if how == "flag":
        s = start(tmp_path, args=["--secure-cookies"])
    else:
        s = start(tmp_path, {"THOTH_SECURE_COOKIES": "1"})
    try:
        r = post_login(httpx.Client(base_url=s.url, timeout=30), "admin", s.admin_password)
        assert r.status_code == 303
        assert "secure" in _cookie_flags(r)["thoth_session"]
    finally:
        stop(s)


def test_bad_trusted_proxy_fails_the_start_with_a_message(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.support.dashboard import SRC

    env = {**os.environ, "THOTH_HOME": str(tmp_path), "PYTHONPATH": SRC}
    r = subprocess.run([sys.executable, "-m", "thoth", "serve", "--port", "0", "--trusted-proxy", "not-an-ip"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "not-an-ip" in r.stderr and "Traceback" not in r.stderr


# ---- another tenant's users, channels and keys ----------------------------------------------


def test_changes_to_another_tenants_things_are_refused_not_claimed(srv: Server) -> None:
    otto = new_user(srv, tenant="other", role="admin")
    otto_client = srv.login(otto, PASSWORD)
    channel = tenant_channels.add(srv.store.db, "other", "webhook", "https://hooks.example/other", "test",
                                  secret="0123456789abcdef")
    other_key = srv.store.create_key("other", "viewer")
    admin = srv.login()
    token = csrf_of(admin.get("/settings").text)

    r = admin.post(f"/settings/users/{otto}", data={"action": "disable", "csrf_token": token})
    assert r.status_code == 404 and "No user" in r.text and "disabled." not in r.text
    r = admin.post(f"/settings/users/{otto}", data={"action": "role", "role": "viewer", "csrf_token": token})
    assert r.status_code == 404 and "is now" not in r.text
    r = admin.post(f"/settings/channels/{channel}/delete", data={"csrf_token": token})
    assert r.status_code == 404 and "No such channel" in r.text and "Channel removed" not in r.text
    r = admin.post(f"/settings/keys/{other_key['key_id']}/revoke", data={"csrf_token": token})
    assert r.status_code == 404 and "No such API key" in r.text

    script = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.key('admin')}"})
    r = script.post(f"/settings/channels/{channel}/delete")
    assert r.status_code == 404 and "No such channel" in r.json()["message"]
    r = script.post(f"/settings/users/{otto}", data={"action": "disable"})
    assert r.status_code == 404 and r.json()["message"]

    # nothing changed: otto is still an enabled admin, still signed in; channel and key live
    u = users.get_user(srv.store.db, otto)
    assert u is not None and not u.disabled and u.role == "admin"
    assert otto_client.get("/settings").status_code == 200
    assert any(c["channel_id"] == channel for c in tenant_channels.listing(srv.store.db, "other"))
    assert httpx.get(srv.url + "/sessions", headers={"Authorization": f"Bearer {other_key['key']}"}).status_code == 200

    # the same forms still work on the admin's own tenant
    mine = new_user(srv)
    r = admin.post(f"/settings/users/{mine}", data={"action": "disable", "csrf_token": token})
    assert r.status_code == 200 and f"User {mine} disabled." in r.text
    r = admin.post(f"/settings/users/{mine}", data={"action": "disable", "csrf_token": token})
    assert r.status_code == 409 and "already disabled" in r.text


# ---- in Chromium ------------------------------------------------------------------------------


@pytest.mark.browser
def test_browser_shows_the_lockout_and_signs_in_after_it(srv: Server, browser: Any) -> None:
    name = new_user(srv)
    page = browser.new_page()
    statuses: list[int] = []
    page.on("response", lambda r: statuses.append(r.status) if r.url.endswith("/login") and
            r.request.method == "POST" else None)
    page.goto(srv.url + "/login")
    for _ in range(6):
        page.fill("input[name=username]", name)
        page.fill("input[name=password]", "wrong-password-0")
        page.click("button[type=submit]")
        page.wait_for_load_state()
    alert = page.locator("p.alert.error").inner_text()
    assert "Too many failed sign-ins" in alert and "second" in alert
    assert statuses == [401] * 5 + [429]
    shot(page, "login-locked-out")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert "Too many failed sign-ins" in page.locator("p.alert.error").inner_text()  # refused while locked
    time.sleep(LOCKOUT + 0.5)
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(srv.url + "/")
    page.close()


@pytest.mark.browser
def test_browser_removing_a_channel_removed_meanwhile_says_so(srv: Server, browser: Any) -> None:
    """Two admins: one removes a channel, the other's stale page then tries the same."""
    admin_name = new_user(srv, role="admin")
    channel = tenant_channels.add(srv.store.db, "default", "webhook", f"https://hooks.example/{admin_name}",
                                  "test", secret="0123456789abcdef")
    page = browser.new_page()
    page.goto(srv.url + "/login")
    page.fill("input[name=username]", admin_name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(srv.url + "/")
    page.goto(srv.url + "/settings")
    tenant_channels.delete(srv.store.db, "default", channel)  # the other admin, meanwhile
    page.locator(f"form[action='/settings/channels/{channel}/delete'] button").click()
    page.wait_for_load_state()
    assert "No such channel in this tenant" in page.locator("p.alert.error").inner_text()
    assert page.locator("p.alert.ok").count() == 0
    page.close()
