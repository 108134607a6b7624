"""The server's seam to the policy engine (`thoth.policy`) and analytics (`thoth.analytics`).

Both live on other branches. Until they are present, a built-in default policy (scope check
plus the enforcement-mode semantics) keeps the enforcer working, and policy documents cannot
be pushed (PUT /v1/policies answers 503 with a clear message).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

try:  # the real engine, once merged
    from thoth.policy import (  # type: ignore[attr-defined]
        CallContext,
        PolicyValidationError,
        SessionHistory,
        compile_policy,
        default_policy,
    )

    HAVE_POLICY_ENGINE = True
except ImportError:  # pragma: no cover - exercised only before the policy branch is merged
    HAVE_POLICY_ENGINE = False

try:
    from thoth.analytics import AnalyticsEngine  # type: ignore[attr-defined]

    HAVE_ANALYTICS = True
except ImportError:
    AnalyticsEngine = None  # type: ignore[misc,assignment]
    HAVE_ANALYTICS = False


if not HAVE_POLICY_ENGINE:

    class PolicyValidationError(ValueError):  # type: ignore[no-redef]
        def __init__(self, errors: list[str]) -> None:
            super().__init__("; ".join(errors))
            self.errors = errors

    @dataclass
    class CallContext:  # type: ignore[no-redef]
        tenant_id: str
        agent_id: str
        user_id: str
        tool_name: str
        tool_args: dict[str, Any]
        approved_scope: list[str] | None
        enforcement_mode: str
        environment: str
        session_intent: str | None
        risk_score: float | None
        risk_reasons: list[str]
        now: float
        session_tool_calls: list[str]

    class SessionHistory:  # type: ignore[no-redef]
        """Per-session facts kept by the server; O(1) update per call."""

        def __init__(self) -> None:
            self.calls = 0
            self.violations = 0
            self.tools: set[str] = set()

        def record(self, tool_name: str, tool_args: Any, ts: float, decision: str) -> None:
            self.calls += 1
            self.tools.add(tool_name)
            if decision in ("BLOCK", "STEP_UP"):
                self.violations += 1

    @dataclass
    class _Decision:
        decision: str
        would_decision: str
        reason: str
        reason_code: str
        matched_rule_ids: list[str] = field(default_factory=list)
        policy_references: list[str] = field(default_factory=list)
        modified_args: Any = None
        flags: list[str] = field(default_factory=list)
        risk_score: float = 0.0

    class _DefaultPolicy:
        """Scope check; the mode says what a violation becomes."""

        version = "default"

        def evaluate(self, call: CallContext, history: SessionHistory) -> _Decision:
            scope = call.approved_scope
            risk = call.risk_score or 0.0
            if scope is None or not scope or call.tool_name in scope:
                return _Decision("ALLOW", "ALLOW", "within approved scope", "policy_allow", risk_score=risk)
            mode = call.enforcement_mode
            if mode == "block":
                would = "BLOCK"
            elif mode == "step_up":
                would = "STEP_UP"
            else:  # progressive (and observe's would-be): first violation asks, repeat blocks
                would = "BLOCK" if history.violations else "STEP_UP"
            final = "ALLOW" if mode == "observe" else would
            reason = f"tool '{call.tool_name}' is outside the agent's approved scope"
            return _Decision(final, would, reason, "policy_scope_violation", ["default.scope"], risk_score=max(risk, 0.7))

    def default_policy() -> Any:  # type: ignore[misc]
        return _DefaultPolicy()

    def compile_policy(source: Any) -> Any:  # type: ignore[misc]
        raise PolicyValidationError(["the policy engine (thoth.policy) is not installed in this build"])  # type: ignore[list-item]


__all__ = [
    "HAVE_ANALYTICS",
    "HAVE_POLICY_ENGINE",
    "AnalyticsEngine",
    "CallContext",
    "PolicyValidationError",
    "SessionHistory",
    "compile_policy",
    "default_policy",
]
