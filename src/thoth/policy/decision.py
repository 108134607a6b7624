"""The engine's answer for one call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from thoth.models import DecisionType
from thoth.wire import decision_envelope

# Precedence, most restrictive first. Documented in docs/policy.md; never reorder silently.
SEVERITY: dict[DecisionType, int] = {
    DecisionType.BLOCK: 4,
    DecisionType.DEFER: 3,
    DecisionType.STEP_UP: 2,
    DecisionType.MODIFY: 1,
    DecisionType.ALLOW: 0,
}
VIOLATION_DECISIONS = frozenset({DecisionType.BLOCK, DecisionType.DEFER, DecisionType.STEP_UP})


@dataclass(slots=True)
class Proposal:
    """One source's proposed outcome (a rule, a built-in check, Cedar); the most severe wins.
    A compiled `engine.Rule` has the same fields and stands in for its own proposal."""

    decision: DecisionType
    kind: str
    rule_id: str
    reason: str
    code: str
    hard: bool = False
    references: tuple[str, ...] = ()
    timeout: float | None = None
    approval_valid: float | None = None
    approval_uses: int | None = None
    # What a rule's provenance conditions named, for the decision's reason (cond_provenance).
    explain: tuple[tuple[str | None, frozenset[str] | None], ...] = ()


@dataclass(slots=True)
class PolicyDecision:
    decision: DecisionType
    would_decision: DecisionType
    reason: str
    reason_code: str
    matched_rule_ids: list[str] = field(default_factory=list)
    policy_references: list[str] = field(default_factory=list)
    modified_args: dict[str, Any] | None = None
    flags: list[str] = field(default_factory=list)
    risk_score: float | None = None
    # Which built-in checks were violated: "scope", "intent", "risk", "rule", "tier", "source", "error".
    violations: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    step_up_timeout_seconds: float | None = None
    defer_timeout_seconds: float | None = None
    policy_version: str | None = None
    # How the decision came about, step by step (for `thoth policy explain`).
    trace: list[str] = field(default_factory=list)
    # For a STEP_UP: how long its approval stays usable and for how many calls (None: the server's default).
    approval_valid_seconds: float | None = None
    approval_uses: int | None = None
    # For a held or blocked call of our SDK (it sent arg_sources or task): where its arguments
    # came from and what the task's plan says (engine._summary); None otherwise.
    provenance: dict[str, Any] | None = None

    @property
    def is_violation(self) -> bool:
        return self.would_decision in VIOLATION_DECISIONS

    def to_wire(self) -> dict[str, Any]:
        """The decision fields of a /v1/enforce response (the server adds ids and tokens)."""
        return decision_envelope(self)
