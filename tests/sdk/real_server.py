"""The real `thoth serve` for SDK tests: a process on SQLite, tenants with keys, policy and approvals.

Reuses tests/support (start_serve, Server); adds a restart on the same port and
database, and a per-test tenant that talks to the control plane the way an operator would.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from tests.support.serve import start_serve
from tests.support.server import Server, stop_server, tenant

from thoth.instrumentor import build_tracer
from thoth.tracer import Tracer


def launch(db_url: str, home: Path, port: int | None = None) -> Server:
    """Start `thoth serve` (on `port`, or a free one; it migrates the database) and wait for /healthz."""
    s = start_serve(db_url, home, port=port, env={"THOTH_HOLD_TIMEOUT_SECONDS": "30"},
                    drop_env=("THOTH_DATABASE_URL", "THOTH_API_URL", "THOTH_API_KEY"), stdout=subprocess.DEVNULL)
    return Server(s.url, home, db_url, s.proc)


def restart(server: Server, pause: float = 0.0) -> Server:
    """Stop the server, wait `pause` seconds, start it again on the same port and database."""
    stop_server(server)
    time.sleep(pause)
    port = int(server.url.rsplit(":", 1)[1])
    for _ in range(100):  # the port can take a moment to be free again
        try:
            return launch(server.db_url, server.home, port)
        except RuntimeError as exc:
            if "address" not in str(exc).lower() and "port" not in str(exc).lower():
                raise
            time.sleep(0.1)
    raise RuntimeError(f"port {port} did not become free")


class Tenant:
    """One tenant on a real server, with an sdk, an approver and an admin key."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.tenant_id = tenant()
        self.sdk_key = server.key(self.tenant_id, "sdk")
        self.approver_key = server.key(self.tenant_id, "approver")
        self.admin_key = server.key(self.tenant_id, "admin")

    @property
    def url(self) -> str:
        return self.server.url

    def tracer(self, **settings: Any) -> Tracer:
        options: dict[str, Any] = {
            "agent_id": "sdk-test-agent", "approved_scope": ["read_file", "search", "send_email", "post_note"],
            "tenant_id": self.tenant_id, "api_key": self.sdk_key, "api_url": self.url, "enforcement": "block",
        }
        options.update(settings)
        return build_tracer(**options)

    def _call(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> Any:
        response = httpx.request(method, self.url + path, headers={"authorization": f"Bearer {key or self.admin_key}"},
                                 timeout=10, **kwargs)
        assert response.status_code == 200, (method, path, response.status_code, response.text)
        return response.json()

    def put_policy(self, document: str) -> None:
        self._call("PUT", "/v1/policies", json={"document": document, "comment": "sdk test"})

    def session(self, session_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/sessions/{session_id}")  # type: ignore[no-any-return]

    def violations(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/violations")["items"]  # type: ignore[no-any-return]

    def wait_for_approval(self, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = self._call("GET", "/v1/approvals?status=pending", key=self.approver_key)["items"]
            if items:
                return items[0]  # type: ignore[no-any-return]
            time.sleep(0.02)
        raise AssertionError("no approval request appeared")

    def resolve(self, approval_id: str, approve: bool, reason: str | None = None) -> dict[str, Any]:
        body = {"decision": "approve" if approve else "deny", "reason": reason}
        return self._call("POST", f"/v1/approvals/{approval_id}/resolve", key=self.approver_key,  # type: ignore[no-any-return]
                          json=body)


# A policy that yields each verdict the SDK acts on, one tool per verdict.
POLICY = r"""
version: 1
name: sdk-e2e
rules:
  - id: no-passwd
    when: {tool: read_file, any_arg: {contains: /etc/passwd}}
    action: block
    reason: sensitive path
  - id: email-needs-human
    when: {tool: send_email}
    action: step_up
    reason: a human reviews outgoing mail
  - id: mask-cards
    when: {tool: post_note}
    action: modify
    modify:
      replace:
        - {arg: body, pattern: '\d{16}', with: '[CARD]'}
    reason: card numbers masked
"""
