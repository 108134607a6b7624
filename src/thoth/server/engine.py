"""The server's seam to the policy engine (`thoth.policy`) and analytics (`thoth.analytics`)."""

from __future__ import annotations

from typing import Any

from thoth.analytics import AnalyticsEngine
from thoth.policy import CallContext, PolicyValidationError, SessionHistory, compile_policy, default_policy

# Reported by /healthz and the analytics API; both engines ship with the server.
HAVE_POLICY_ENGINE = True
HAVE_ANALYTICS = True


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
