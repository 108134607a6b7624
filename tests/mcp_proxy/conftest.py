"""The MCP proxy tests: a real `thoth serve` (SQLite), real MCP servers written with the official
SDK, the SDK's own ClientSession through `thoth mcp proxy`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.serve import SRC, start_serve
from tests.support.server import Server, stop_server, tenant

try:
    import mcp  # noqa: F401
except ImportError:  # the core venv has no 'mcp' extra: these tests run in the nox session "mcp_proxy"
    collect_ignore_glob = ["test_*.py"]

HERE = Path(__file__).resolve().parent
UPSTREAM = str(HERE / "upstream_server.py")

POLICY = """
version: 1
name: mcp-proxy-tests
rules:
  - id: no-passwd
    when: {tool: read_file, any_arg: {contains: /etc/passwd}}
    action: block
    reason: sensitive path
  - id: no-forbidden-echo
    when: {tool: echo, any_arg: {contains: forbidden}}
    action: block
    reason: forbidden words are not echoed
  - id: mail-needs-human
    when: {tool: send_email}
    action: step_up
    timeout_seconds: 60
    reason: a human reviews outgoing mail
"""


class Tenant:
    """One tenant on the real server: an sdk key for the proxy, an approver, an admin; a fresh
    agent id so its sessions are its own."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.tenant_id = tenant()
        self.sdk_key = server.key(self.tenant_id, "sdk")
        self.approver_key = server.key(self.tenant_id, "approver")
        self.admin_key = server.key(self.tenant_id, "admin")
        self.agent_id = f"mcp-agent-{uuid.uuid4().hex[:6]}"
        self.call("PUT", "/v1/policies", json={"document": POLICY, "comment": "mcp proxy tests"})

    def call(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> Any:
        response = httpx.request(method, self.server.url + path, timeout=10,
                                 headers={"authorization": f"Bearer {key or self.admin_key}"}, **kwargs)
        assert response.status_code == 200, (method, path, response.status_code, response.text)
        return response.json()

    def env(self) -> dict[str, str]:
        """The proxy's environment: where Thoth is and its key (never passed on to an upstream)."""
        return {"PYTHONPATH": SRC, "THOTH_API_URL": self.server.url, "THOTH_API_KEY": self.sdk_key,
                "PATH": os.environ.get("PATH", "")}

    def proxy_args(self, *extra: str) -> list[str]:
        return ["-m", "thoth", "mcp", "proxy", "--agent-id", self.agent_id, "--tenant-id", self.tenant_id,
                "--enforcement", "progressive", *extra]

    def pending(self) -> list[dict[str, Any]]:
        return self.call("GET", "/v1/approvals?status=pending", key=self.approver_key)["items"]  # type: ignore[no-any-return]

    def wait_for_approval(self, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = self.pending()
            if items:
                return items[0]
            time.sleep(0.05)
        raise AssertionError("no approval request appeared")

    def resolve(self, approval_id: str, approve: bool) -> None:
        self.call("POST", f"/v1/approvals/{approval_id}/resolve", key=self.approver_key,
                  json={"decision": "approve" if approve else "deny", "reason": "test"})

    def events(self, timeout: float = 10.0, until: int = 1) -> list[dict[str, Any]]:
        """The events of this agent's (one) session, waiting until `until` have arrived."""
        deadline = time.monotonic() + timeout
        events: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            sessions = self.call("GET", f"/v1/sessions?agent_id={self.agent_id}")["items"]
            if sessions:
                events = self.call("GET", f"/v1/sessions/{sessions[0]['session_id']}")["events"]
                if len(events) >= until:
                    return events
            time.sleep(0.1)
        return events


@pytest.fixture(scope="session")
def thoth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("mcp-proxy-home")
    s = start_serve(f"sqlite:///{home / 'thoth.db'}", home, env={"THOTH_HOLD_TIMEOUT_SECONDS": "60"},
                    drop_env=("THOTH_DATABASE_URL", "THOTH_API_URL", "THOTH_API_KEY"), stdout=subprocess.DEVNULL)
    server = Server(s.url, home, f"sqlite:///{home / 'thoth.db'}", s.proc)
    yield server
    stop_server(server)


@pytest.fixture
def real(thoth_server: Server) -> Tenant:
    return Tenant(thoth_server)


PYTHON = sys.executable
