"""POST /v1/policies/simulate through `thoth policy simulate FILE --tenant T` against a real server:
recent sessions replayed through a draft, bounded by days, sessions and calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
from tests.support.server import SRC, Server, tenant

DRAFT = """
version: 1
tools:
  send_email: {tier: medium, classification: external}
rules:
  - id: no-external-mail
    description: mail outside example.com is blocked
    when: {all: [{tool: send_email}, {args: {to: {not_domain: example.com}}}]}
    action: block
    reason: external recipient
"""


def seed(server: Server, t: str, key: str) -> list[str]:
    """Three sessions under the default policy (everything allowed without a declared scope)."""
    sessions = []
    for to in ("ann@example.com", "eve@evil.test", "mallory@evil.test"):
        sid = f"s-{uuid.uuid4().hex[:8]}"
        calls: list[str] = []
        for tool, args in (("search", {"q": "invoices"}), ("send_email", {"to": to, "body": "hi"})):
            calls.append(tool)
            body = {"tenant_id": t, "agent_id": "mailer", "session_id": sid, "tool_name": tool, "tool_args": args,
                    "enforcement_mode": "progressive", "session_tool_calls": list(calls)}
            r = httpx.post(server.url + "/v1/enforce", json=body, headers={"x-api-key": key})
            assert r.json()["decision"] == "ALLOW"
        sessions.append(sid)
    return sessions


def cli(server: Server, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC, "THOTH_API_URL": server.url, "THOTH_API_KEY": key}
    return subprocess.run([sys.executable, "-m", "thoth", "policy", "simulate", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_simulate_via_cli(server: Server, tmp_path: Path) -> None:
    t = tenant()
    sessions = seed(server, t, server.key(t))
    admin = server.key(t, "admin")
    draft = tmp_path / "draft.yaml"
    draft.write_text(DRAFT)

    out = cli(server, admin, str(draft), "--tenant", t)
    assert out.returncode == 0, out.stderr
    assert "evaluated 6 calls" in out.stdout and "2 decision(s) would change" in out.stdout
    assert "this draft would have blocked or held 2 more calls" in out.stdout
    assert out.stdout.count("send_email: ALLOW -> BLOCK") == 2 and "no-external-mail" in out.stdout

    answer: dict[str, Any] = json.loads(cli(server, admin, str(draft), "--tenant", t, "--json").stdout)
    assert answer["evaluated"] == 6 and answer["decisions"] == {"ALLOW": 4, "BLOCK": 2}
    assert answer["changed"] == 2 and answer["newly_blocked"] == 2 and answer["newly_allowed"] == 0
    assert {i["session_id"] for i in answer["items"]} == set(sessions[1:])
    assert answer["sessions"] == 3 and answer["truncated"] is False

    # The active policy is untouched: nothing was pushed.
    with server.client(admin) as c:
        assert c.get("/v1/policies").json().get("version") is None


def test_simulate_is_bounded_and_refuses_bad_input(server: Server, tmp_path: Path) -> None:
    t = tenant()
    sessions = seed(server, t, server.key(t))
    admin = server.key(t, "admin")
    with server.client(admin) as c:
        # The two most recent sessions only; then a call budget that stops after the first session.
        two = c.post("/v1/policies/simulate", json={"document": DRAFT, "max_sessions": 2}).json()
        assert two["sessions"] == 2 and two["truncated"] is True and two["evaluated"] == 4
        assert {i["session_id"] for i in two["items"]} == set(sessions[1:])
        few = c.post("/v1/policies/simulate", json={"document": DRAFT, "limit": 3}).json()
        assert few["sessions"] == 1 and few["evaluated"] == 2 and few["truncated"] is True

        for body, status, words in (
            ({"document": "version: 1\nrules: [{id: x, action: explode}]"}, 422, "invalid policy"),
            ({"document": DRAFT, "days": 0}, 422, "days"),
            ({"document": DRAFT, "limit": 10**9}, 422, "limit"),
            ({"document": DRAFT, "tenant_id": "someone-else"}, 403, "tenant"),
            ({"days": 3}, 422, "document"),
        ):
            r = c.post("/v1/policies/simulate", json=body)
            assert r.status_code == status and words in r.json()["message"], (body, r.text)
    with server.client(server.key(t, "viewer")) as viewer:
        assert viewer.post("/v1/policies/simulate", json={"document": DRAFT}).status_code == 403

    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - id: x\n    action: explode\n")
    out = cli(server, admin, str(bad), "--tenant", t)
    assert out.returncode == 1 and "bad.yaml:" in out.stderr  # validated locally first, with a line
