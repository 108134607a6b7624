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

        def record(self, tool_name: str, tool_args: Any, ts: float, decision: str,
                   reason_code: str | None = None) -> None:
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


# What the ladder counts of a stored decision: the engine's built-in checks name their rules.
_CODE_OF_RULE = {"builtin.scope": "policy_scope_violation", "builtin.intent": "intent_violation"}
_LADDER_CODES = frozenset({"policy_scope_violation", "intent_violation", "intent_unknown"})
_VIOLATIONS = frozenset({"BLOCK", "STEP_UP", "DEFER"})


def replay_decision(history: Any, tool_name: str, tool_args: Any, ts: float, decision: str,
                    would_decision: str | None, reason_code: str | None, matched_rule_ids: list[str]) -> None:
    """Add one stored decision to a rebuilt session history, counted as when it was decided.

    Observe-mode rows allowed the call but count what the policy would have done; a call whose
    hold was approved is stored with reason_code step_up_approved, so the violated check (scope,
    intent) comes from its matched rule ids. Without this the progressive ladder ("a repeat
    out-of-scope call blocks") would start over after a restart or in another process."""
    verdict = would_decision if would_decision in _VIOLATIONS else decision
    code = reason_code if reason_code in _LADDER_CODES else None
    if code is None:
        code = next((_CODE_OF_RULE[r] for r in matched_rule_ids if r in _CODE_OF_RULE), reason_code)
    history.record(tool_name, tool_args, ts, verdict, reason_code=code)


__all__ = [
    "HAVE_ANALYTICS",
    "HAVE_POLICY_ENGINE",
    "AnalyticsEngine",
    "CallContext",
    "PolicyValidationError",
    "SessionHistory",
    "compile_policy",
    "default_policy",
    "replay_decision",
]
