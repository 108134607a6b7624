"""The `thoth` server commands as a user runs them: keys, approvals, serve errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.server import SRC, Server, free_port


def thoth(*args: str, home: Path, db: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC, "THOTH_HOME": str(home)}
    env.pop("THOTH_DATABASE_URL", None)
    if db:
        env["THOTH_DATABASE_URL"] = db
    return subprocess.run([sys.executable, "-m", "thoth", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_keys_create_list_revoke_default_sqlite_home(tmp_path: Path) -> None:
    made = thoth("keys", "create", "--tenant", "acme", "--role", "sdk", "--json", home=tmp_path)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert key["tenant_id"] == "acme" and key["role"] == "sdk" and key["key"].startswith("thk_")
    assert (tmp_path / "thoth.db").exists()
    listed = thoth("keys", "list", "--json", home=tmp_path)
    (entry,) = json.loads(listed.stdout)
    assert entry["key_id"] == key["key_id"] and key["key"] not in listed.stdout
    raw = (tmp_path / "thoth.db").read_bytes()
    assert key["key"].encode() not in raw  # hashed at rest
    assert thoth("keys", "revoke", key["key_id"], home=tmp_path).returncode == 0
    assert json.loads(thoth("keys", "list", "--json", home=tmp_path).stdout)[0]["revoked"] is True
    bad = thoth("keys", "create", "--tenant", "acme", "--role", "root", home=tmp_path)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_serve_port_taken_and_db_unreachable(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = thoth("serve", "--port", str(port), home=tmp_path)
    assert r.returncode == 1 and "cannot listen" in r.stderr and "Traceback" not in r.stderr
    r = thoth("serve", "--port", str(free_port()), "--database-url",
              "postgresql://nobody@127.0.0.1:1/none", home=tmp_path)
    assert r.returncode == 1 and "cannot reach database" in r.stderr and "Traceback" not in r.stderr
    r = thoth("keys", "list", home=tmp_path, db="postgresql://nobody@127.0.0.1:1/none")
    assert r.returncode == 1 and "Traceback" not in r.stderr


# The hold's own timeout: each CLI command below is a new Python process (1-3 s on a loaded
# machine), so the test servers' 3-second default let the hold expire before the deny landed.
HELD_RM = """
version: 1
rules:
  - id: rm-needs-human
    when: {tool: rm}
    action: step_up
    timeout_seconds: 300
"""


def test_approvals_cli_resolves_a_live_hold(server: Server, tmp_path: Path) -> None:
    t = "cli-" + os.urandom(3).hex()
    with server.client(server.key(t, "admin")) as admin:
        assert admin.put("/v1/policies", json={"document": HELD_RM}).status_code == 200
    with server.client(server.key(t)) as c:
        hold = c.post("/v1/enforce", json={"tenant_id": t, "agent_id": "a", "tool_name": "rm",
                                           "approved_scope": ["ls", "rm"], "enforcement_mode": "step_up",
                                           "tool_args": {"path": "/"}}).json()
        assert hold["step_up_timeout_seconds"] == 300
        listed = thoth("approvals", "list", "--tenant", t, "--json", home=tmp_path, db=server.db_url)
        (approval,) = json.loads(listed.stdout)
        assert approval["hold_token"] == hold["hold_token"]
        r = thoth("approvals", "deny", approval["approval_id"], "--reason", "not on prod", home=tmp_path,
                  db=server.db_url)
        assert r.returncode == 0 and "denied" in r.stdout, r.stderr
        answer = c.get(f"/v1/enforce/hold/{hold['hold_token']}", params={"wait": 5}).json()
        assert answer["resolution"] == "BLOCK" and answer["reason"] == "not on prod"
        assert answer["resolved_by"].startswith("cli:")
        again = thoth("approvals", "approve", approval["approval_id"], home=tmp_path, db=server.db_url)
        assert again.returncode == 1 and "already denied" in again.stderr


def test_a_malformed_setting_is_one_line_not_a_traceback(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("THOTH_TRUSTED_PROXIES", "not-an-ip")
    for args in (("keys", "create", "--tenant", "acme", "--role", "sdk"), ("keys", "list")):
        done = thoth(*args, home=tmp_path)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert "trusted proxy 'not-an-ip'" in done.stderr and len(done.stderr.strip().splitlines()) == 1
