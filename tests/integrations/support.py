"""What the framework tests share: the test tools' names and decisions, a tracer against a
governance server, and a recorder of which tool bodies ran."""

from __future__ import annotations

from typing import Any

from .governance_server import GovernanceServer

# The tools every framework test uses, and what the server decides for them.
ALLOWED = "get_weather"
BLOCKED = "delete_file"
APPROVED = "transfer_money"  # step-up; the reviewer approves
DENIED = "wire_funds"  # step-up; the reviewer denies
SCOPE = [ALLOWED, BLOCKED, APPROVED, DENIED]


def make_tracer(server: GovernanceServer, **settings: Any) -> Any:
    from thoth.instrumentor import build_tracer

    options: dict[str, Any] = {
        "agent_id": "framework-test", "approved_scope": SCOPE, "tenant_id": "acme", "user_id": "tester",
        "enforcement": "progressive", "api_url": server.url, "api_key": server.api_key,
        "step_up_poll_interval_seconds": 0.02, "step_up_timeout_minutes": 0.5,
    }
    options.update(settings)
    return build_tracer(**options)


def instrument_settings(server: GovernanceServer, **settings: Any) -> dict[str, Any]:
    """Keyword arguments for thoth.instrument(...) / instrument_openai(...) against `server`."""
    options: dict[str, Any] = {
        "agent_id": "framework-test", "approved_scope": SCOPE, "tenant_id": "acme", "user_id": "tester",
        "enforcement": "progressive", "api_url": server.url, "api_key": server.api_key,
        "step_up_poll_interval_seconds": 0.02, "step_up_timeout_minutes": 0.5,
    }
    options.update(settings)
    return options


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
