"""`thoth policy push` / `simulate` against a real `thoth serve` on a free port (SQLite)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.serve import SRC, start_serve

pytest.importorskip("thoth.server")

POLICY = "version: 1\nname: pushed\nrules:\n  - id: no-shell\n    when: {tool: run_shell}\n    action: block\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    home = tmp_path_factory.mktemp("home")
    env = {**os.environ, "THOTH_HOME": str(home), "PYTHONPATH": SRC}
    env.pop("THOTH_DATABASE_URL", None)
    db = f"sqlite:///{home}/thoth.db"
    started = start_serve(db, home, stdout=subprocess.DEVNULL)
    url, proc = started.url, started.proc
    try:
        keys = {}
        for role in ("admin", "sdk"):
            out = subprocess.run([sys.executable, "-m", "thoth", "keys", "create", "--tenant", "acme", "--role", role,
                                  "--json", "--database-url", db], env=env, capture_output=True, text=True,
                                 timeout=60)
            assert out.returncode == 0, out.stderr
            keys[role] = json.loads(out.stdout)["key"]
        yield url, keys
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def thoth(*args: str, url: str, key: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC, "THOTH_API_URL": url, "THOTH_API_KEY": key}
    return subprocess.run([sys.executable, "-m", "thoth", "policy", *args], capture_output=True, text=True,
                          timeout=60, env=env)


def test_push_activates_the_policy_on_the_server(server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    url, keys = server
    path = tmp_path / "p.yaml"
    path.write_text(POLICY)
    pushed = thoth("push", str(path), "--comment", "first", url=url, key=keys["admin"])
    assert pushed.returncode == 0, pushed.stderr
    assert "pushed pushed (1 rules)" in pushed.stdout and "version" in pushed.stdout
    active = httpx.get(f"{url}/v1/policies", headers={"Authorization": f"Bearer {keys['admin']}"}).json()
    assert "no-shell" in active["document"]
    body = {"tenant_id": "acme", "agent_id": "a", "tool_name": "run_shell", "session_id": "s",
            "approved_scope": [], "enforcement_mode": "progressive", "tool_args": {}}
    decision = httpx.post(f"{url}/v1/enforce", json=body, headers={"x-api-key": keys["sdk"]}).json()
    assert decision["decision"] == "BLOCK" and decision["matched_rule_ids"] == ["no-shell"]


def test_push_with_a_key_that_may_not_write_is_refused(server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    url, keys = server
    path = tmp_path / "p.yaml"
    path.write_text(POLICY)
    refused = thoth("push", str(path), url=url, key=keys["sdk"])
    assert refused.returncode == 1 and "refused" in refused.stderr and "Traceback" not in refused.stderr


def test_simulate_reports_a_missing_endpoint_clearly(server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    url, keys = server
    path = tmp_path / "p.yaml"
    path.write_text(POLICY)
    out = thoth("simulate", str(path), url=url, key=keys["admin"])
    if out.returncode == 0:  # the server implements POST /v1/policies/simulate
        assert "evaluated" in out.stdout
    else:
        assert out.returncode == 2 and "/v1/policies/simulate" in out.stderr


def test_the_servers_progressive_ladder_uses_the_engine(server: tuple[str, dict[str, str]]) -> None:
    url, keys = server
    body = {"tenant_id": "acme", "agent_id": "b", "tool_name": "delete_repo", "session_id": "ladder",
            "approved_scope": ["read_file"], "enforcement_mode": "progressive", "tool_args": {}}
    with httpx.Client(headers={"x-api-key": keys["sdk"]}, timeout=30) as c:
        first = c.post(f"{url}/v1/enforce", json=body).json()
        second = c.post(f"{url}/v1/enforce", json=body).json()
    assert first["decision"] == "STEP_UP" and first["decision_reason_code"] == "policy_scope_violation"
    assert second["decision"] == "BLOCK"
