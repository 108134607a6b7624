"""The one exception a governed agent sees."""

from __future__ import annotations

from typing import Any


class ThothPolicyViolation(Exception):
    """Raised before a tool runs when policy blocks (or a step-up is denied or times out)."""

    def __init__(
        self,
        tool_name: str,
        reason: str,
        violation_id: str | None = None,
        *,
        decision: str = "BLOCK",
        decision_reason_code: str | None = None,
        matched_rule_ids: list[str] | None = None,
        risk_score: float | None = None,
        hold_token: str | None = None,
        session_id: str | None = None,
        agent_id: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        self.tool_name = tool_name
        self.reason = reason
        self.violation_id = violation_id
        self.decision = decision
        self.decision_reason_code = decision_reason_code
        self.matched_rule_ids = list(matched_rule_ids or [])
        self.risk_score = risk_score
        self.hold_token = hold_token
        self.session_id = session_id
        self.agent_id = agent_id
        self.context = dict(context or {})
        super().__init__(f"Thoth blocked tool '{tool_name}': {reason}")

    def __reduce__(self) -> tuple[Any, ...]:  # keep it picklable across process pools
        return (_rebuild, (self.__dict__,))


def _rebuild(state: dict[str, Any]) -> ThothPolicyViolation:
    exc = ThothPolicyViolation.__new__(ThothPolicyViolation)
    exc.__dict__.update(state)
    Exception.__init__(exc, f"Thoth blocked tool '{exc.tool_name}': {exc.reason}")
    return exc
