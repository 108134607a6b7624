"""The progressive ladder survives a restart: a session's history is rebuilt from stored
decisions the way it was counted live (verdict, would-be verdict in observe mode, and which
check was violated), on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from tests.support.server import Server, start_server, stop_server

from thoth.server.migrate import upgrade


class Session:
    def __init__(self, tenant: str, key: str) -> None:
        self.tenant, self.key = tenant, key
        self.id = f"s-{uuid.uuid4().hex[:8]}"
        self.calls: list[str] = []

    def enforce(self, server: Server, tool: str, mode: str = "progressive", **extra: Any) -> dict[str, Any]:
        self.calls.append(tool)
        body = {"tenant_id": self.tenant, "agent_id": "ops-bot", "session_id": self.id, "tool_name": tool,
                "tool_args": {"target": tool}, "approved_scope": ["search"], "enforcement_mode": mode,
                "session_tool_calls": list(self.calls), **extra}
        r = httpx.post(server.url + "/v1/enforce", json=body, headers={"x-api-key": self.key})
        assert r.status_code == 200, r.text
        return dict(r.json())


def test_ladder_survives_restart(backend: str, tmp_path: Path) -> None:
    upgrade(backend)
    home = tmp_path / "home"
    server = start_server(backend, home)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    key, admin = server.key(tenant), server.key(tenant, "admin")
    stepped, observed, approved = Session(tenant, key), Session(tenant, key), Session(tenant, key)
    try:
        first = stepped.enforce(server, "delete_db")
        assert first["decision"] == "STEP_UP" and first["decision_reason_code"] == "policy_scope_violation"
        # Observe mode allows, but the would-be step-up counts in the session's history.
        seen = observed.enforce(server, "delete_db", mode="observe")
        assert seen["decision"] == "ALLOW" and seen["would_decision"] == "STEP_UP"
        # A hold approved and its re-check allowed: stored as step_up_approved.
        held = approved.enforce(server, "delete_db")
        r = httpx.post(f"{server.url}/v1/approvals/{approval_id(server, admin, held)}/resolve",
                       json={"decision": "approve"}, headers={"x-api-key": admin})
        assert r.status_code == 200, r.text
        approved.calls.pop()  # the re-check is the same call
        recheck = approved.enforce(server, "delete_db", hold_token=held["hold_token"])
        assert recheck["decision"] == "ALLOW" and recheck["decision_reason_code"] == "step_up_approved"
    finally:
        stop_server(server)

    server = start_server(backend, home)  # a new process: no history in memory
    try:
        for session, mode in ((stepped, "progressive"), (observed, "observe"), (approved, "progressive")):
            repeat = session.enforce(server, "drop_table", mode=mode)
            verdict = repeat["would_decision"] if mode == "observe" else repeat["decision"]
            assert verdict == "BLOCK", (mode, repeat)
            assert repeat["decision_reason_code"] == "policy_scope_violation"
        # A fresh session still starts at the first rung.
        assert Session(tenant, key).enforce(server, "drop_table")["decision"] == "STEP_UP"
    finally:
        stop_server(server)


def approval_id(server: Server, admin: str, held: dict[str, Any]) -> str:
    items = httpx.get(server.url + "/v1/approvals", params={"status": "pending"},
                      headers={"x-api-key": admin}).json()["items"]
    return str(next(a["approval_id"] for a in items if a["hold_token"] == held["hold_token"]))
