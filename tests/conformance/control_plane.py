"""What an operator does while a published client runs: read sessions, resolve approvals.

Talks to our server's control-plane API (docs: ../../../shared/contract/control-plane.md
in the project) with an approver key, over real HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from thoth_server import ServerInfo

# Events reach the server from the clients' background threads a few hundred ms late.
ARRIVAL_TIMEOUT_S = 15.0
# After the expected events arrived, look again once so that late duplicates are seen.
SETTLE_S = 0.6


def wait_for[T](probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll `probe` until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class ControlPlane:
    def __init__(self, server: ServerInfo) -> None:
        self._http = httpx.Client(
            base_url=server.url,
            headers={"Authorization": f"Bearer {server.approver_key}"},
            timeout=10.0,
            # A fresh connection per request: the step-up tests sit idle for about the server's
            # keep-alive timeout (5 s), and reusing a connection the server is just closing
            # resets it (a race of the test client, not of the clients under test).
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, **params: Any) -> Any:
        response = self._http.get(path, params=params)
        assert response.status_code == 200, f"GET {path} -> {response.status_code}: {response.text}"
        return response.json()

    def session(self, session_id: str) -> dict[str, Any] | None:
        response = self._http.get(f"/v1/sessions/{session_id}")
        if response.status_code == 404:
            return None
        assert response.status_code == 200, f"GET session -> {response.status_code}: {response.text}"
        body: dict[str, Any] = response.json()
        return body

    def wait_session(self, session_id: str, *, events: int, decisions: int) -> dict[str, Any]:
        """The session's timeline once it holds at least the expected events and decisions."""

        def complete() -> dict[str, Any] | None:
            timeline = self.session(session_id)
            if timeline is None:
                return None
            if len(timeline.get("events", [])) < events or len(timeline.get("decisions", [])) < decisions:
                return None
            return timeline

        wait_for(complete, ARRIVAL_TIMEOUT_S, f"{events} events and {decisions} decisions of session {session_id}")
        time.sleep(SETTLE_S)
        timeline = self.session(session_id)
        assert timeline is not None
        return timeline

    def pending_approval(self, session_id: str, tool_name: str) -> dict[str, Any] | None:
        for item in self._get("/v1/approvals", status="pending")["items"]:
            if item.get("session_id") == session_id and item.get("tool_name") == tool_name:
                found: dict[str, Any] = item
                return found
        return None

    def approvals(self, status: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._get("/v1/approvals", status=status)["items"]
        return items

    def resolve(self, approval_id: str, decision: str, reason: str) -> None:
        response = self._http.post(
            f"/v1/approvals/{approval_id}/resolve", json={"decision": decision, "reason": reason}
        )
        assert response.status_code in (200, 201, 204), f"resolve -> {response.status_code}: {response.text}"

    def violations(self, agent_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._get("/v1/violations", agent_id=agent_id, limit=100)["items"]
        return items
