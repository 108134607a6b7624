"""approval_valid_seconds / approval_uses: the step-up that holds a call says how far its approval reaches."""

from __future__ import annotations

import pytest
from policy_helpers import call

from thoth.policy import PolicyValidationError, compile_policy

DOC = {
    "version": 1,
    "defaults": {"approval_valid_seconds": 300, "approval_uses": 2},
    "rules": [
        {"id": "wire", "when": {"tool": "wire"}, "action": "step_up", "approval_valid_seconds": 30,
         "approval_uses": 1},
        {"id": "refund", "when": {"tool": "refund"}, "action": "step_up"},
        {"id": "nope", "when": {"tool": "drop"}, "action": "block", "approval_uses": 5},
    ],
}


def test_the_deciding_rule_wins_then_the_defaults() -> None:
    p = compile_policy(DOC)
    wire = p.evaluate(call("wire"))
    assert (wire.approval_valid_seconds, wire.approval_uses) == (30, 1)
    refund = p.evaluate(call("refund"))
    assert (refund.approval_valid_seconds, refund.approval_uses) == (300, 2)
    # a step-up from the scope check, not a rule: the defaults
    scope = p.evaluate(call("other", approved_scope=["wire"], enforcement_mode="step_up"))
    assert str(scope.decision.value) == "STEP_UP" and scope.approval_uses == 2
    # a block carries no reach of its own: nothing is approved
    assert p.evaluate(call("drop")).approval_uses == 2


def test_nothing_set_leaves_the_servers_default() -> None:
    p = compile_policy({"version": 1, "rules": [{"id": "r", "when": {"tool": "x"}, "action": "step_up"}]})
    d = p.evaluate(call("x"))
    assert (d.approval_valid_seconds, d.approval_uses) == (None, None)


@pytest.mark.parametrize("field, value", [("approval_uses", 0), ("approval_uses", 1001), ("approval_uses", 1.5),
                                          ("approval_uses", True), ("approval_valid_seconds", 0),
                                          ("approval_valid_seconds", "10m")])
def test_bad_values_are_reported_with_their_path(field: str, value: object) -> None:
    rule = {"id": "r", "when": {"tool": "x"}, "action": "step_up", field: value}
    with pytest.raises(PolicyValidationError) as info:
        compile_policy({"version": 1, "rules": [rule]})
    assert field in str(info.value)
