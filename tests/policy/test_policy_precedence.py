"""Precedence, the enforcement modes, the progressive ladder, scope and intents, modify."""

from __future__ import annotations

import pytest
from policy_helpers import NOW, call

from thoth.models import DecisionType
from thoth.policy import compile_policy, default_policy


def rules(*specs: tuple[str, str]) -> list[dict]:
    return [{"id": rid, "when": {"tool": "t"}, "action": action, "reason": f"because {rid}"}
            for rid, action in specs]


@pytest.mark.parametrize(("actions", "expected"), [
    (["allow", "block"], "BLOCK"),
    (["step_up", "defer"], "DEFER"),
    (["modify", "step_up"], "STEP_UP"),
    (["flag", "modify"], "MODIFY"),
    (["flag", "allow"], "ALLOW"),
])
def test_most_restrictive_wins(actions: list[str], expected: str) -> None:
    specs = [(f"r{i}", a) for i, a in enumerate(actions)]
    extra = {"modify": {"redact": ["x"]}}
    doc = {"rules": [{**r, **(extra if r["action"] == "modify" else {})} for r in rules(*specs)]}
    d = compile_policy(doc).evaluate(call("t", tool_args={"x": "secret"}))
    assert d.decision.value == expected
    assert d.matched_rule_ids == [f"r{i}" for i in range(len(actions))]


def test_first_match_within_a_level_gives_the_reason() -> None:
    d = compile_policy({"rules": rules(("a", "step_up"), ("b", "block"), ("c", "block"))}).evaluate(call("t"))
    assert d.reason == "because b"
    assert d.matched_rule_ids == ["a", "b", "c"]


def test_references_are_collected_from_every_matched_rule() -> None:
    doc = {"rules": [{"id": "a", "when": {"tool": "t"}, "action": "flag", "references": ["SOC2 CC6.1"]},
                     {"id": "b", "when": {"tool": "t"}, "action": "block", "references": ["PCI 3.4", "SOC2 CC6.1"]}]}
    d = compile_policy(doc).evaluate(call("t"))
    assert d.policy_references == ["SOC2 CC6.1", "PCI 3.4"]
    assert d.flags == ["a"]


def test_modes_map_a_violation() -> None:
    p = compile_policy({"rules": rules(("a", "step_up"))})
    assert p.evaluate(call("t", enforcement_mode="block")).decision is DecisionType.BLOCK
    assert p.evaluate(call("t", enforcement_mode="step_up")).decision is DecisionType.STEP_UP
    assert p.evaluate(call("t", enforcement_mode="progressive")).decision is DecisionType.STEP_UP
    observed = p.evaluate(call("t", enforcement_mode="observe"))
    assert observed.decision is DecisionType.ALLOW and observed.would_decision is DecisionType.STEP_UP
    # an unknown mode from a client is treated as progressive
    assert p.evaluate(call("t", enforcement_mode="chaos")).decision is DecisionType.STEP_UP


def test_block_in_step_up_mode_asks_unless_hard() -> None:
    soft = compile_policy({"rules": rules(("a", "block"))})
    assert soft.evaluate(call("t", enforcement_mode="step_up")).decision is DecisionType.STEP_UP
    hard = compile_policy({"rules": [{"id": "a", "when": {"tool": "t"}, "action": "block", "hard": True}]})
    assert hard.evaluate(call("t", enforcement_mode="step_up")).decision is DecisionType.BLOCK


def test_modify_survives_block_mode_and_rewrites_in_document_order() -> None:
    doc = {"rules": [
        {"id": "m1", "when": {"tool": "t"}, "action": "modify", "modify": {"redact": ["ssn", "missing"]}},
        {"id": "m2", "when": {"tool": "t"}, "action": "modify",
         "modify": {"set": {"limit": 10}, "remove": ["debug"],
                    "replace": [{"arg": "note.text", "pattern": "[0-9]{3}", "with": "###"}]}},
    ]}
    args = {"ssn": "123", "debug": True, "note": {"text": "call 555 now"}}
    d = compile_policy(doc).evaluate(call("t", tool_args=args, enforcement_mode="block"))
    assert d.decision is DecisionType.MODIFY
    assert d.modified_args == {"ssn": "[REDACTED]", "limit": 10, "note": {"text": "call ### now"}}
    assert args["ssn"] == "123"  # the caller's arguments are not touched
    assert d.to_wire()["modified_tool_args"] == d.modified_args


def test_observe_never_modifies() -> None:
    doc = {"rules": [{"id": "m", "when": {"tool": "t"}, "action": "modify", "modify": {"redact": ["x"]}}]}
    d = compile_policy(doc).evaluate(call("t", tool_args={"x": 1}, enforcement_mode="observe"))
    assert d.decision is DecisionType.ALLOW and d.would_decision is DecisionType.MODIFY
    assert d.modified_args is None


def test_default_policy_scope_ladder() -> None:
    p = default_policy()
    h = p.new_history()
    first = p.evaluate(call("x", approved_scope=["y"]), h)
    assert first.decision is DecisionType.STEP_UP and first.reason_code == "policy_scope_violation"
    h.record("x", {}, NOW, first)
    second = p.evaluate(call("x", approved_scope=["y"]), h)
    assert second.decision is DecisionType.BLOCK
    assert p.evaluate(call("y", approved_scope=["y"]), h).decision is DecisionType.ALLOW
    # no declared scope and no server scope: nothing to check against
    assert p.evaluate(call("x", approved_scope=[])).decision is DecisionType.ALLOW


def test_effective_scope_is_what_both_allow() -> None:
    p = compile_policy({"agents": {"bot": {"tools": ["a", "b*"]}}})
    assert p.evaluate(call("a", agent_id="bot", approved_scope=["a"])).decision is DecisionType.ALLOW
    # the client may not widen the server's scope...
    assert p.evaluate(call("c", agent_id="bot", approved_scope=["c"])).decision is DecisionType.STEP_UP
    # ...and its own declaration narrows it
    assert p.evaluate(call("b1", agent_id="bot", approved_scope=["a"])).decision is DecisionType.STEP_UP
    assert p.evaluate(call("b1", agent_id="bot")).decision is DecisionType.ALLOW


def test_repeated_violations_escalate_step_ups_to_blocks() -> None:
    p = compile_policy({"rules": rules(("a", "step_up")), "progressive": {"block_after_violations": 2}})
    h = p.new_history()
    for expected in ("STEP_UP", "STEP_UP", "BLOCK"):
        d = p.evaluate(call("t"), h)
        assert d.decision.value == expected
        h.record("t", {}, NOW, d)
    assert d.reason_code == "repeated_violation"


def test_risk_thresholds() -> None:
    p = compile_policy({"progressive": {"risk_step_up": 0.5, "risk_block": 0.8}})
    assert p.evaluate(call(risk_score=0.4)).decision is DecisionType.ALLOW
    assert p.evaluate(call(risk_score=0.5)).reason_code == "step_up_high_risk"
    assert p.evaluate(call(risk_score=0.8)).decision is DecisionType.BLOCK


def test_intents_step_up_or_block_as_configured() -> None:
    p = compile_policy({"intents": {"billing": {"tools": ["invoice_*"]},
                                    "support": {"tools": ["ticket"], "on_violation": "block"}}})
    assert p.evaluate(call("invoice_new", session_intent="billing")).decision is DecisionType.ALLOW
    d = p.evaluate(call("delete_all", session_intent="billing"))
    assert d.decision is DecisionType.STEP_UP and d.reason_code == "intent_violation"
    assert p.evaluate(call("x", session_intent="support")).decision is DecisionType.BLOCK
    # an intent the policy does not define is allowed unless defaults.unknown_intent says otherwise
    assert p.evaluate(call("x", session_intent="other")).decision is DecisionType.ALLOW


def test_tier_defaults_and_allow_rules() -> None:
    doc = {"tools": {"rm": {"tier": "critical", "classification": "delete"}},
           "defaults": {"unknown_tool": "step_up"},
           "rules": [{"id": "ok", "when": {"tool": "rm", "args": {"path": {"prefix": "/tmp/"}}}, "action": "allow"}]}
    p = compile_policy(doc)
    assert p.evaluate(call("rm", tool_args={"path": "/etc"})).decision is DecisionType.BLOCK
    assert p.evaluate(call("rm", tool_args={"path": "/tmp/x"})).decision is DecisionType.ALLOW
    assert p.evaluate(call("new_tool")).decision is DecisionType.STEP_UP


def test_an_allow_rule_does_not_override_another_rules_block() -> None:
    p = compile_policy({"rules": rules(("ok", "allow"), ("no", "block"))})
    assert p.evaluate(call("t")).decision is DecisionType.BLOCK


def test_evaluation_errors_fail_closed() -> None:
    p = compile_policy({"rules": [{"id": "n", "when": {"args": {"amount": {"gt": 5}}}, "action": "allow"}]})
    d = p.evaluate(call("t", tool_args={"amount": float("nan")}))
    assert d.decision is DecisionType.BLOCK and d.reason_code == "policy_evaluation_error"
    assert d.errors and "n" in d.matched_rule_ids
    # even in step_up mode an error is a block
    assert p.evaluate(call("t", tool_args={"amount": float("inf")}, enforcement_mode="step_up")).decision \
        is DecisionType.BLOCK


def test_timeouts_come_from_the_winning_rule_or_the_defaults() -> None:
    doc = {"defaults": {"step_up_timeout_seconds": 600},
           "rules": [{"id": "a", "when": {"tool": "a"}, "action": "step_up", "timeout_seconds": 60},
                     {"id": "b", "when": {"tool": "b"}, "action": "step_up"},
                     {"id": "c", "when": {"tool": "c"}, "action": "defer", "timeout_seconds": 30}]}
    p = compile_policy(doc)
    assert p.evaluate(call("a")).step_up_timeout_seconds == 60
    assert p.evaluate(call("b")).step_up_timeout_seconds == 600
    wire = p.evaluate(call("c")).to_wire()
    assert wire["decision"] == wire["authorization_decision"] == "DEFER"
    assert wire["defer_timeout_seconds"] == 30


def test_explain_trace_says_why() -> None:
    p = compile_policy({"agents": {"bot": {"tools": ["a"]}}, "rules": rules(("r", "flag"))})
    d = p.evaluate(call("t", agent_id="bot"), explain=True)
    text = "\n".join(d.trace)
    assert "not in effective scope" in text and "rule r matched" in text and "mode progressive" in text
    assert p.evaluate(call("t", agent_id="bot")).trace == []


def test_the_scope_ladder_works_when_record_gets_only_the_verdict_string() -> None:
    p = default_policy()
    h = p.new_history()
    first = p.evaluate(call("x", approved_scope=["y"]), h)
    h.record("x", {}, NOW, first.decision.value)  # what a server storing strings passes
    assert p.evaluate(call("x", approved_scope=["y"]), h).decision is DecisionType.BLOCK
    # replaying stored decisions: the reason code says which check was violated
    replayed = p.new_history()
    replayed.record("x", {}, NOW, "STEP_UP", reason_code="policy_scope_violation")
    assert p.evaluate(call("x", approved_scope=["y"]), replayed).decision is DecisionType.BLOCK
    # a plain string without either counts as a violation, not as a scope violation
    plain = p.new_history()
    plain.record("x", {}, NOW, "STEP_UP")
    assert plain.violations == 1 and plain.scope_violations == 0
