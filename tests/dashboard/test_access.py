"""Login, cookies, CSRF, roles and API-key access, against a real `thoth serve`."""

from __future__ import annotations

import httpx
from tests.support.dashboard import Server, csrf_of

PAGES = ["/", "/sessions", "/violations", "/approvals", "/policies", "/analytics", "/settings"]


def test_anonymous_browser_is_sent_to_login(server: Server) -> None:
    for path in PAGES:
        r = httpx.get(server.url + path)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/login?next=")


def test_login_sets_a_safe_cookie_and_every_page_renders(server: Server) -> None:
    c = httpx.Client(base_url=server.url)
    token = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"username": "admin", "password": server.admin_password, "csrf_token": token})
    assert r.status_code == 303
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "thoth_session=" in cookie
    for path in PAGES:
        page = c.get(path)
        assert page.status_code == 200, (path, page.text[:500])
        assert "text/html" in page.headers["content-type"]
        assert "script-src 'self'" in page.headers["content-security-policy"]


def test_wrong_password_and_missing_login_csrf_are_refused(server: Server) -> None:
    c = httpx.Client(base_url=server.url)
    token = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"username": "admin", "password": "not-the-password", "csrf_token": token})
    assert r.status_code == 401 and "Wrong username or password" in r.text
    r = c.post("/login", data={"username": "nobody", "password": "x" * 12, "csrf_token": token})
    assert r.status_code == 401
    fresh = httpx.Client(base_url=server.url)  # no login-CSRF cookie: a cross-site login attempt
    r = fresh.post("/login", data={"username": "admin", "password": server.admin_password, "csrf_token": token})
    assert r.status_code == 403 and "thoth_session" not in r.headers.get("set-cookie", "")


def test_login_redirect_stays_on_this_server(server: Server) -> None:
    c = httpx.Client(base_url=server.url)
    token = csrf_of(c.get("/login").text)
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        r = c.post("/login", data={"username": "admin", "password": server.admin_password, "csrf_token": token,
                                   "next": evil})
        assert r.headers["location"] == "/"
        token = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"username": "admin", "password": server.admin_password, "csrf_token": token,
                               "next": "/violations?agent=x"})
    assert r.headers["location"] == "/violations?agent=x"


def test_forms_without_the_csrf_token_are_refused(server: Server) -> None:
    c = server.login()
    r = c.post("/settings/keys", data={"role": "viewer", "name": "forged"})
    assert r.status_code == 403
    r = c.post("/settings/keys", data={"role": "viewer", "name": "forged", "csrf_token": "wrong"})
    assert r.status_code == 403
    assert "forged" not in c.get("/settings").text
    token = csrf_of(c.get("/settings").text)
    r = c.post("/settings/keys", data={"role": "viewer", "name": "real", "csrf_token": token})
    assert r.status_code == 200 and "will not be shown again" in r.text
    # htmx sends the token as a header instead of a field
    r = c.post("/policies/validate", data={"document": "x"}, headers={"X-CSRF-Token": token})
    assert r.status_code == 200


def test_logout_ends_the_session(server: Server) -> None:
    c = server.login()
    token = csrf_of(c.get("/").text)
    cookie = c.cookies.get("thoth_session")
    assert c.post("/logout", data={"csrf_token": token}).status_code == 303
    stale = httpx.Client(base_url=server.url, cookies={"thoth_session": cookie or ""})
    assert stale.get("/").status_code == 303


def test_api_keys_of_viewer_and_above_get_the_same_html(server: Server) -> None:
    for role in ("viewer", "approver", "admin"):
        key = server.key(role)
        for path in PAGES:
            r = httpx.get(server.url + path, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200, (role, path, r.text[:300])
    sdk = server.key("sdk")
    r = httpx.get(server.url + "/sessions", headers={"Authorization": f"Bearer {sdk}"})
    assert r.status_code == 401 and r.json()["message"]
    r = httpx.get(server.url + "/sessions", headers={"Authorization": "Bearer thk_nonsense"})
    assert r.status_code == 401 and r.json()["message"]


def test_roles_limit_what_a_user_may_change(server: Server) -> None:
    admin = server.login()
    token = csrf_of(admin.get("/settings").text)
    r = admin.post("/settings/users", data={"username": "vera", "password": "viewer-password-1",
                                            "role": "viewer", "csrf_token": token})
    assert r.status_code == 200 and "vera" in r.text
    r = admin.post("/settings/users", data={"username": "bad name", "password": "short", "role": "viewer",
                                            "csrf_token": token})
    assert r.status_code == 422
    vera = server.login("vera", "viewer-password-1")
    vtoken = csrf_of(vera.get("/settings").text)
    assert "Create key" not in vera.get("/settings").text
    assert vera.post("/settings/keys", data={"role": "admin", "csrf_token": vtoken}).status_code == 403
    assert vera.post("/policies", data={"document": "x", "csrf_token": vtoken}).status_code == 403
    assert vera.post("/approvals/nope/resolve", data={"decision": "approve",
                                                      "csrf_token": vtoken}).status_code == 403
    # disabling vera signs her out everywhere
    r = admin.post("/settings/users/vera", data={"action": "disable", "csrf_token": token})
    assert r.status_code == 200
    assert vera.get("/", follow_redirects=False).status_code == 303


def test_bad_input_gets_a_clear_answer_not_a_500(server: Server) -> None:
    c = server.login()
    token = csrf_of(c.get("/").text)
    for path in ("/sessions/does-not-exist", "/violations/vio_missing", "/policies/versions/999",
                 "/policies/versions/abc"):
        assert c.get(path).status_code == 404
    for path in ("/sessions?cursor=garbage&since=forever&outcome=%00", "/sessions/x?after=abc&before=-",
                 "/?range=nonsense", "/analytics?range=%ff", "/violations?decision=<b>&cursor=1|"):
        assert c.get(path).status_code in (200, 404, 422), path
    r = c.post("/approvals/nope/resolve", data={"decision": "maybe", "csrf_token": token})
    assert r.status_code == 422
    r = c.post("/approvals/nope/resolve", data={"decision": "approve", "csrf_token": token})
    assert r.status_code == 404


def test_nul_characters_in_forms_are_refused(server: Server) -> None:
    """PostgreSQL cannot store NUL in text: every form refuses it with a 4xx, on both backends."""
    c = server.login()
    token = csrf_of(c.get("/settings").text)
    for path, data in (("/settings/channels", {"kind": "webhook", "target": "https://x.example/\x00",
                                               "secret": "0123456789abcdef\x00"}),
                       ("/settings/keys", {"role": "viewer", "name": "k\x00"}),
                       ("/policies", {"document": "version: 1\n", "comment": "c\x00"})):
        r = c.post(path, data={**data, "csrf_token": token})
        assert r.status_code == 422 and "NUL" in r.text, (path, r.status_code)
