"""Cedar as an extra policy source: a deny from any source blocks; errors deny."""

from __future__ import annotations

import pytest
from policy_helpers import NOW, call

from thoth.models import DecisionType
from thoth.policy import PolicyValidationError, compile_policy

pytest.importorskip("cedarpy")

CEDAR = """
permit(principal, action, resource);

@id("no-prod-shell")
forbid(principal, action == Action::"run_shell", resource)
when { context.environment == "prod" };

@id("big-amount")
forbid(principal, action == Action::"pay", resource)
when { context.args.amount > 1000 };

@id("risky-after-secrets")
forbid(principal, action, resource)
when { context.session.tools.contains("get_secret") && context.classification == "external" };

@id("risk")
forbid(principal, action, resource) when { context.risk >= 80 };
"""


def policy(**extra: object) -> object:
    return compile_policy({"tools": {"send": {"tier": "low", "classification": "external"}},
                           "cedar": {"policies": CEDAR}, **extra})


def test_cedar_permits_and_forbids() -> None:
    p = policy()
    assert p.evaluate(call("ls")).decision is DecisionType.ALLOW  # type: ignore[attr-defined]
    d = p.evaluate(call("run_shell", environment="prod"))  # type: ignore[attr-defined]
    assert d.decision is DecisionType.BLOCK
    assert "cedar.no-prod-shell" in d.matched_rule_ids and d.reason_code == "cedar_deny"
    assert p.evaluate(call("run_shell", environment="dev")).decision is DecisionType.ALLOW  # type: ignore[attr-defined]


def test_cedar_reads_arguments_session_facts_and_risk() -> None:
    p = policy()
    assert p.evaluate(call("pay", tool_args={"amount": 5000})).decision is DecisionType.BLOCK  # type: ignore[attr-defined]
    assert p.evaluate(call("pay", tool_args={"amount": 5})).decision is DecisionType.ALLOW  # type: ignore[attr-defined]
    h = p.new_history()  # type: ignore[attr-defined]
    h.record("get_secret", {}, NOW, "ALLOW")
    assert p.evaluate(call("send"), h).decision is DecisionType.BLOCK  # type: ignore[attr-defined]
    assert p.evaluate(call("send", risk_score=0.85)).matched_rule_ids[-1] == "cedar.risk"  # type: ignore[attr-defined]


def test_a_cedar_evaluation_error_blocks_instead_of_allowing() -> None:
    # amount as a string makes the forbid error; Cedar alone would skip it and allow.
    d = policy().evaluate(call("pay", tool_args={"amount": "5000"}))  # type: ignore[attr-defined]
    assert d.decision is DecisionType.BLOCK and d.reason_code == "policy_evaluation_error"
    # floats (which Cedar cannot hold) are passed as text rather than failing the whole request
    d = policy().evaluate(call("ls", tool_args={"ratio": 0.5}))  # type: ignore[attr-defined]
    assert d.decision is DecisionType.ALLOW


def test_a_cedar_deny_blocks_even_in_step_up_mode() -> None:
    d = policy().evaluate(call("run_shell", environment="prod", enforcement_mode="step_up"))  # type: ignore[attr-defined]
    assert d.decision is DecisionType.BLOCK


def test_cedar_without_a_permit_denies_everything() -> None:
    p = compile_policy({"cedar": 'forbid(principal, action == Action::"x", resource);'})
    assert p.evaluate(call("y")).decision is DecisionType.BLOCK


def test_cedar_syntax_errors_are_validation_errors_with_a_line() -> None:
    with pytest.raises(PolicyValidationError) as info:
        compile_policy("version: 1\ncedar:\n  policies: |\n    permit(principal, action\n")
    [err] = info.value.errors
    assert err.path == "cedar.policies" and err.line == 3
