"""A real `thoth serve` for the framework tests and the example runner.

`ThothServer` starts `python -m thoth serve` (tests/support/serve.py `start_serve`, the one
way tests start a server) on a free port with a fresh THOTH_HOME (SQLite), creates an admin key with the CLI (`thoth keys create`), then an SDK key
and an approver key through the API, and pushes the test policy with PUT /v1/policies.

`Reviewer` is the human at the approvals queue: a thread that resolves each pending approval
through POST /v1/approvals/{id}/resolve with the approver key (approve or deny by tool name).

Tests count what the server recorded: `decisions(agent_id)` reads every session of that agent
through GET /v1/sessions and GET /v1/sessions/{id}.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from tests.support.serve import SRC, free_port, start_serve, stop_process

# What the tests and examples rely on: one blocked tool family, step-ups for money movement.
# Analytics is off and the ladder is lifted so every decision follows from these rules alone.
POLICY = """\
version: 1
name: framework-tests
description: Deterministic decisions for the framework adapter tests and examples.
rules:
  - id: no-deletes
    when: {tool: [delete_file, delete_record, send_slack_message, send_email]}
    action: block
    reason: not allowed here
    hard: true  # a block even in step_up mode
  - id: payments-need-a-reviewer
    when: {tool: [transfer_money, wire_funds]}
    action: step_up
    reason: money movement needs a reviewer
progressive:
  block_after_violations: 1000000
  risk_step_up: 1
  risk_block: 1
"""

# inherited settings that would point the server (or its CLI) elsewhere
_CLIENT_ENV = ("THOTH_DATABASE_URL", "THOTH_API_URL", "THOTH_API_KEY")


class ThothServer:
    def __init__(self, *, tenant: str = "acme", policy: str = POLICY) -> None:
        self.tenant = tenant
        self.policy = policy
        self.home = Path(tempfile.mkdtemp(prefix="thoth-fw-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.pythonpath = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p)
        self.env = {**os.environ, "THOTH_HOME": str(self.home), "THOTH_ANALYTICS": "off",
                    "PYTHONPATH": self.pythonpath}
        for name in _CLIENT_ENV:
            self.env.pop(name, None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.admin_key = self.api_key = self.approver_key = ""

    # lifecycle ------------------------------------------------------------------------------
    def start(self) -> ThothServer:
        self.admin_key = self._cli_key("admin")  # also creates the database and the tenant
        try:
            serve = start_serve(f"sqlite:///{self.home / 'thoth.db'}", self.home, port=self.port,
                                env={"THOTH_ANALYTICS": "off"}, drop_env=_CLIENT_ENV, stdout=subprocess.DEVNULL,
                                timeout=60, pythonpath=self.pythonpath)
        except RuntimeError:
            self.close()
            raise
        self.proc = serve.proc
        with self.client(self.admin_key) as admin:
            self.api_key = _ok(admin.post("/v1/keys", json={"role": "sdk"}))["key"]
            self.approver_key = _ok(admin.post("/v1/keys", json={"role": "approver"}))["key"]
            _ok(admin.put("/v1/policies", json={"document": self.policy, "comment": "framework tests"}))
        return self

    def close(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc.wait()
            self.proc = None
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> ThothServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _cli_key(self, role: str) -> str:
        out = subprocess.run([sys.executable, "-m", "thoth", "keys", "create", "--tenant", self.tenant,
                              "--role", role, "--json"], env=self.env, capture_output=True, check=True, timeout=60)
        return str(json.loads(out.stdout)["key"])

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"x-api-key": key or self.admin_key}, timeout=30)

    # what tests look at ---------------------------------------------------------------------
    def decisions(self, agent_id: str | None = None) -> list[dict[str, Any]]:
        """Every decision the server recorded (for one agent), oldest first."""
        out: list[dict[str, Any]] = []
        with self.client() as api:
            params = {"limit": 500, **({"agent_id": agent_id} if agent_id else {})}
            for session in _ok(api.get("/v1/sessions", params=params))["items"]:
                out += _ok(api.get(f"/v1/sessions/{session['session_id']}"))["decisions"]
        return out

    def approvals(self, status: str | None = None) -> list[dict[str, Any]]:
        with self.client() as api:
            return list(_ok(api.get("/v1/approvals", params={"status": status} if status else {}))["items"])


def _ok(response: httpx.Response) -> Any:
    if response.status_code >= 300:
        raise AssertionError(f"{response.request.method} {response.request.url.path}: "
                             f"{response.status_code} {response.text}")
    return response.json()


def enforce_counts(decisions: list[dict[str, Any]]) -> Counter[str]:
    return Counter(str(d.get("tool_name")) for d in decisions)


class Reviewer:
    """Resolves pending approvals as they appear: `answers` maps tool name -> "approve" | "deny"
    (tools not listed are left pending). Runs until closed."""

    def __init__(self, server: ThothServer, answers: dict[str, str], *, interval: float = 0.02) -> None:
        self.server = server
        self.answers = dict(answers)
        self.interval = interval
        self.resolved: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="thoth-test-reviewer")

    def start(self) -> Reviewer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> Reviewer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        with self.server.client(self.server.approver_key) as api:
            while not self._stop.is_set():
                try:
                    pending = api.get("/v1/approvals", params={"status": "pending"}).json().get("items", [])
                    for item in pending:
                        answer = self.answers.get(item.get("tool_name"))
                        if answer is None:
                            continue
                        reason = "approved by reviewer" if answer == "approve" else "denied by reviewer"
                        body = {"decision": answer, "reason": reason}
                        r = api.post(f"/v1/approvals/{item['approval_id']}/resolve", json=body)
                        if r.status_code == 200:
                            self.resolved.append(item)
                except httpx.HTTPError:
                    pass  # the server is shutting down
                self._stop.wait(self.interval)
