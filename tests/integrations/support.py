"""What the framework tests share: the test tools' names and decisions, a per-test view of the
real `thoth serve` (one agent id per test), a tracer talking HTTP to it, and a recorder of which
tool bodies ran."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from .thoth_server import Reviewer, ThothServer, enforce_counts

# The tools every framework test uses, and what the server's test policy decides for them.
ALLOWED = "get_weather"
BLOCKED = "delete_file"
APPROVED = "transfer_money"  # step-up; the reviewer approves
DENIED = "wire_funds"  # step-up; the reviewer denies
SCOPE = [ALLOWED, BLOCKED, APPROVED, DENIED]
REVIEWER_ANSWERS = {APPROVED: "approve", DENIED: "deny"}


class Governance:
    """One test's slice of the shared server: its own agent id, so counts never mix."""

    def __init__(self, server: ThothServer, reviewer: Reviewer) -> None:
        self.server = server
        self.reviewer = reviewer
        self.agent_id = f"fw-{uuid.uuid4().hex[:10]}"
        self.url = server.url
        self.api_key = server.api_key

    def decisions(self) -> list[dict[str, Any]]:
        return self.server.decisions(self.agent_id)

    def enforce_counts(self) -> Counter[str]:
        """Decisions the server recorded for this test, by tool: one per governed tool call."""
        return enforce_counts(self.decisions())

    def approvals(self) -> dict[str, str]:
        """tool name -> approval status, for this test's step-ups."""
        return {a["tool_name"]: a["status"] for a in self.server.approvals() if a.get("agent_id") == self.agent_id}

    def approval_uses(self, tool_name: str) -> list[tuple[str, int, int]]:
        """(status, uses taken, uses allowed) of each of this test's approvals of one tool, oldest first."""
        found = [a for a in self.server.approvals() if a.get("agent_id") == self.agent_id
                 and a["tool_name"] == tool_name]
        return [(a["status"], a["uses"], a["allowed_uses"]) for a in reversed(found)]


def instrument_settings(governance: Governance, **settings: Any) -> dict[str, Any]:
    """Keyword arguments for thoth.instrument(...) / instrument_openai(...) against the server."""
    options: dict[str, Any] = {
        "agent_id": governance.agent_id, "approved_scope": SCOPE, "tenant_id": governance.server.tenant,
        "user_id": "tester", "enforcement": "progressive", "api_url": governance.url,
        "api_key": governance.api_key, "step_up_poll_interval_seconds": 0.02, "step_up_timeout_minutes": 0.5,
    }
    options.update(settings)
    return options


def make_tracer(governance: Governance, **settings: Any) -> Any:
    from thoth.instrumentor import build_tracer

    return build_tracer(**instrument_settings(governance, **settings))


class Ran:
    """Which tool bodies actually ran (thread-safe enough: list.append is atomic)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, **args: Any) -> str:
        self.calls.append((name, args))
        return f"{name} ok"

    @property
    def names(self) -> list[str]:
        return sorted(name for name, _ in self.calls)
