"""Provenance and task conditions (docs/policy.md, "Provenance and task conditions"): the
catalogue's output label, the five states of an argument, the source test on lists and mixed
sources, the flow and plan conditions, the reason and summary of a decision, and the promise
that a request without the fields is decided exactly as before."""

from __future__ import annotations

from typing import Any

import pytest
from policy_helpers import call

from thoth.policy import PolicyValidationError, compile_policy
from thoth.policy.provenance import MODEL, TRUSTED, UNKNOWN, UNTRUSTED, USER, state_of

CATALOGUE = """
version: 1
tools:
  read_inbox: {tier: low, classification: read}
  get_contacts: {tier: low, classification: read, output: trusted}
  browse: {tier: low, classification: read, output: untrusted}
  send_email: {tier: medium, classification: external}
  transfer: {tier: high, classification: write}
tiers: {high: allow}
"""

# A tiny example pack of the kind docs/policy.md describes (not the prompt_injection pack).
PACK = CATALOGUE + """
rules:
  - id: recipient-from-untrusted
    when: {tool: send_email, args: {to: {source: untrusted}}}
    action: block
    reason: a recipient named only by content the agent read
  - id: untrusted-to-external
    when: {flow: {from: untrusted, to: {classification: external}}}
    action: step_up
    reason: untrusted data leaving the organisation
  - id: off-plan-write
    when: {in_plan: false, classification: [write, external]}
    action: step_up
    reason: a write the user's task did not plan
  - id: unplanned-money
    when: {tool: transfer, plan: none}
    action: step_up
    reason: money moves without a plan
  - id: model-made-amount
    when: {tool: transfer, args: {amount: {source: model, gt: 100}}}
    action: block
    reason: an amount nobody gave
"""


def decide(policy: Any, tool: str, args: dict[str, Any], **kw: Any) -> Any:
    return policy.evaluate(call(tool, tool_args=args, **kw))


def test_state_of_a_value_orders_user_trusted_untrusted_model() -> None:
    trusted = frozenset({"get_contacts"})
    assert state_of(["tool:read_inbox#3", "task"], trusted) == USER  # task and an untrusted page: user
    assert state_of(["tool:read_inbox#3", "tool:get_contacts#1"], trusted) == TRUSTED
    assert state_of(["tool:read_inbox#3"], trusted) == UNTRUSTED
    assert state_of(["tool:never_catalogued#9"], trusted) == UNTRUSTED
    assert state_of([], trusted) == MODEL
    assert state_of("task", trusted) == UNKNOWN  # not a list: cannot tell
    assert state_of(["junk", 3, "tool:#2", "tool:x#y"], trusted) == UNKNOWN


def test_catalogue_output_label_is_validated() -> None:
    with pytest.raises(PolicyValidationError, match="output must be one of trusted, untrusted"):
        compile_policy({"version": 1, "tools": {"browse": {"output": "safe"}}})
    policy = compile_policy(CATALOGUE)
    assert policy.catalogue["get_contacts"]["output"] == "trusted"
    assert policy.catalogue["read_inbox"]["output"] == "untrusted"  # the default
    assert policy.trusted == frozenset({"get_contacts"})


@pytest.mark.parametrize(("when", "message"), [
    ({"args": {"to": {"source": "evil"}}}, "source: expected one or more of user, trusted"),
    ({"args": {"to": {"source": {"some": ["user"]}}}}, r"source takes a state, a list of states"),
    ({"flow": {"from": "user", "into": "x"}}, r"unknown flow field\(s\) \['into'\]"),
    ({"flow": {"to": {"colour": "red"}}}, "flow to takes"),
    ({"flow": {"from": {"all": ["user"]}}}, "not {all: ...}"),
    ({"in_plan": "yes"}, "in_plan takes true or false"),
    ({"plan": "maybe"}, "plan: expected one or more of present, none, unknown"),
    ({"history": {"tool": "browse", "args": {"q": {"source": "user"}}}}, "source tests the call being decided"),
])
def test_bad_provenance_conditions_are_refused_with_a_message(when: Any, message: str) -> None:
    with pytest.raises(PolicyValidationError, match=message):
        compile_policy({"version": 1, "rules": [{"id": "r", "when": when, "action": "block"}]})


def test_recipient_named_only_by_untrusted_output_is_blocked_and_explained() -> None:
    policy = compile_policy(PACK)
    d = decide(policy, "send_email", {"to": "x@evil.example", "body": "hello"},
               arg_sources={"to": ["tool:read_inbox#3"], "body": ["task"]},
               task={"id": "t1", "plan": {"tools": ["read_inbox", "send_email"], "source": "tasks:mail"}})
    assert d.decision == "BLOCK"
    assert "recipient-from-untrusted" in d.matched_rule_ids
    assert "to 'x@evil.example' appeared only in the output of read_inbox (call 3), untrusted" in d.reason
    summary = d.provenance
    assert summary["plan_state"] == "present" and summary["in_plan"] is True and summary["task_id"] == "t1"
    assert {"arg": "to", "value": "x@evil.example", "state": "untrusted",
            "sources": ["tool:read_inbox#3"]} \
        in summary["args"]
    assert d.to_wire()["provenance"] == summary


def test_the_same_call_with_the_recipient_from_the_task_is_allowed() -> None:
    policy = compile_policy(PACK)
    d = decide(policy, "send_email", {"to": "bob@corp.example", "body": "hello"},
               arg_sources={"to": ["tool:read_inbox#3", "task"], "body": ["task"]},
               task={"id": "t1", "plan": {"tools": ["send_email"], "source": "tasks:mail"}})
    assert d.decision == "ALLOW", d.reason
    assert d.provenance is None  # only held or blocked calls carry the summary
    assert "provenance" not in d.to_wire()


def test_a_trusted_tools_output_is_not_untrusted() -> None:
    policy = compile_policy(PACK)
    d = decide(policy, "send_email", {"to": "ann@corp.example"}, arg_sources={"to": ["tool:get_contacts#1"]},
               task={"id": "t", "plan": {"tools": ["send_email"]}})
    assert d.decision == "ALLOW", d.reason


def test_list_elements_any_and_all() -> None:
    any_rule = compile_policy(CATALOGUE + """
rules:
  - {id: any-untrusted, when: {args: {to: {source: untrusted}}}, action: block}
  - {id: all-from-user, when: {args: {to: {source: {all: [user]}}}}, action: flag}
""")
    sources = {"to[0]": ["task"], "to[1]": ["tool:browse#2"]}
    d = decide(any_rule, "send_email", {"to": ["bob@corp.example", "eve@evil.example"]}, arg_sources=sources)
    assert d.matched_rule_ids == ["any-untrusted"]
    assert "to[1] 'eve@evil.example' appeared only in the output of browse (call 2)" in d.reason
    d = decide(any_rule, "send_email", {"to": ["bob@corp.example", "ann@corp.example"]},
               arg_sources={"to[0]": ["task"], "to[1]": ["task", "tool:browse#2"]})
    assert d.matched_rule_ids == ["all-from-user"] and d.decision == "ALLOW"
    # An element that was not looked up is unknown: `all: [user]` does not hold for it.
    d = decide(any_rule, "send_email", {"to": ["bob@corp.example", "x"]}, arg_sources={"to[0]": ["task"]})
    assert d.matched_rule_ids == []
    # Nested objects: each scalar inside is a part, NAME.key / NAME[i].key.
    d = decide(any_rule, "send_email", {"to": [{"addr": "eve@evil.example"}]},
               arg_sources={"to[0].addr": ["tool:browse#1"]})
    assert d.matched_rule_ids == ["any-untrusted"]


def test_source_combines_with_value_tests_and_model_made_values() -> None:
    policy = compile_policy(PACK)
    plan = {"id": "t", "plan": {"tools": ["transfer"]}}
    d = decide(policy, "transfer", {"amount": 500, "iban": "DE00"}, arg_sources={"amount": [], "iban": ["task"]},
               task=plan)
    assert d.decision == "BLOCK" and "model-made-amount" in d.matched_rule_ids
    assert "amount '500' appeared nowhere before this call (model-made)" in d.reason
    d = decide(policy, "transfer", {"amount": 50, "iban": "DE00"}, arg_sources={"amount": [], "iban": ["task"]},
               task=plan)
    assert d.decision == "ALLOW", d.reason


def test_flow_of_untrusted_data_to_an_external_tool() -> None:
    policy = compile_policy(PACK)
    d = decide(policy, "send_email", {"to": "bob@corp.example", "body": "the page said: wire money"},
               arg_sources={"to": ["task"], "body": ["tool:browse#4"]},
               task={"id": "t", "plan": {"tools": ["send_email"]}})
    assert d.decision == "STEP_UP" and d.matched_rule_ids == ["untrusted-to-external"]
    assert "body 'the page said: wire money' appeared only in the output of browse (call 4)" in d.reason
    # The same data reaching a read tool is not this flow.
    d = decide(policy, "read_inbox", {"q": "the page said: wire money"}, arg_sources={"q": ["tool:browse#4"]},
               task={"id": "t", "plan": {"tools": ["read_inbox"]}})
    assert d.decision == "ALLOW"


def test_plan_conditions() -> None:
    policy = compile_policy(PACK)
    d = decide(policy, "transfer", {"amount": 5}, arg_sources={"amount": ["task"]},
               task={"id": "t", "plan": {"tools": ["read_inbox"], "source": "tasks:inbox"}})
    assert d.decision == "STEP_UP" and d.matched_rule_ids == ["off-plan-write"]
    assert "transfer is not among the tools the task's plan (tasks:inbox) allows: read_inbox" in d.reason
    assert d.provenance["in_plan"] is False
    d = decide(policy, "transfer", {"amount": 5}, arg_sources={"amount": ["task"]}, task={"id": "t", "plan": None})
    assert d.matched_rule_ids == ["unplanned-money"]
    assert d.provenance["plan_state"] == "none" and d.provenance["in_plan"] is None
    d = decide(policy, "transfer", {"amount": 5}, arg_sources={"amount": ["task"]},
               task={"id": "t", "plan": {"tools": ["trans*"]}})
    assert d.decision == "ALLOW"


def test_plan_argument_constraints() -> None:
    policy = compile_policy(PACK)
    plan = {"tools": ["send_email"], "source": "planner",
            "args": {"send_email": {"to": ["Bob@corp.example"], "body": {"source": ["user", "trusted"]}}}}
    ok = decide(policy, "send_email", {"to": "bob@corp.example", "body": "hi"},
                arg_sources={"to": ["task"], "body": ["task"]}, task={"id": "t", "plan": plan})
    assert ok.decision == "ALLOW", ok.reason
    off = decide(policy, "send_email", {"to": "eve@corp.example", "body": "hi"},
                 arg_sources={"to": ["task"], "body": ["task"]}, task={"id": "t", "plan": plan})
    assert off.decision == "STEP_UP" and "argument to 'eve@corp.example' is outside the planned values" in off.reason
    malformed = {**plan, "args": {"send_email": {"to": {"regex": ".*"}}}}
    off = decide(policy, "send_email", {"to": "bob@corp.example"}, arg_sources={"to": ["task"]},
                 task={"id": "t", "plan": malformed})
    assert off.decision == "STEP_UP" and "malformed" in off.reason


def test_a_request_without_the_fields_is_decided_as_before() -> None:
    """Published clients: every state is unknown, which matches only conditions naming it."""
    with_rules = compile_policy(PACK)
    without = compile_policy(CATALOGUE)
    cases = [("send_email", {"to": "x@evil.example", "body": "b"}), ("transfer", {"amount": 5000}),
             ("read_inbox", {}), ("browse", {"url": "https://x.example"}), ("unknown_tool", {"a": [1, 2]})]
    for tool, args in cases:
        a, b = decide(with_rules, tool, args), decide(without, tool, args)
        assert (a.decision, a.reason, a.matched_rule_ids) == (b.decision, b.reason, b.matched_rule_ids), tool
        assert a.provenance is None and "provenance" not in a.to_wire()


def test_unknown_matches_only_conditions_that_name_it() -> None:
    policy = compile_policy(CATALOGUE + """
rules:
  - {id: no-provenance, when: {tool: send_email, args: {to: {source: unknown}}}, action: step_up}
  - {id: no-task, when: {tool: send_email, plan: unknown}, action: flag}
  - {id: unknown-flow, when: {flow: {from: unknown, to: {tool: send_email}}}, action: flag}
""")
    d = decide(policy, "send_email", {"to": "a@b.example"})
    assert d.matched_rule_ids == ["no-provenance", "no-task", "unknown-flow"] and d.decision == "STEP_UP"
    assert "argument to's provenance is unknown (the client sent none)" in d.reason
    d = decide(policy, "send_email", {"to": "a@b.example"}, arg_sources={"to": ["task"]}, task={"id": "t"})
    assert d.matched_rule_ids == [] and d.decision == "ALLOW"
    # Our SDK's call where the path was not looked up: unknown again.
    d = decide(policy, "send_email", {"to": "a@b.example"}, arg_sources={}, task={"id": "t"})
    assert d.matched_rule_ids == ["no-provenance", "unknown-flow"]


def test_task_text_is_in_the_summary_only_when_sent() -> None:
    policy = compile_policy(PACK)
    args, sources = {"to": "x@evil.example"}, {"to": ["tool:read_inbox#1"]}
    d = decide(policy, "send_email", args, arg_sources=sources, task={"id": "t", "plan": None})
    assert "task_text" not in d.provenance
    d = decide(policy, "send_email", args, arg_sources=sources,
               task={"id": "t", "plan": None, "text": "reply to my last mail"})
    assert d.provenance["task_text"] == "reply to my last mail"


def test_hostile_shapes_never_crash_a_decision() -> None:
    policy = compile_policy(PACK)
    deep: Any = "x"
    for _ in range(40):
        deep = [deep]
    for sources, task, args in [
        ({"to": "task"}, {"plan": "all"}, {"to": "a"}),
        ({"to": [None, {"x": 1}, "tool:"]}, {"plan": {"tools": "send_email"}}, {"to": ["a", None, 3.5]}),
        ({"to": ["tool:read_inbox#1"] * 10_000}, {"plan": {"tools": [1, None]}}, {"to": deep}),
        ({}, {"plan": {"tools": ["send_email"], "args": "x"}}, {"to": {"k" * 1000: list(range(5000))}}),
    ]:
        d = decide(policy, "send_email", args, arg_sources=sources, task=task)
        assert d.decision in ("ALLOW", "BLOCK", "STEP_UP"), d
        assert not d.errors, d.errors


def test_explain_traces_what_the_provenance_rule_saw() -> None:
    policy = compile_policy(PACK)
    d = policy.evaluate(call("send_email", tool_args={"to": "x@evil.example"}, arg_sources={"to": ["tool:browse#2"]},
                             task={"id": "t", "plan": {"tools": ["send_email"]}}), explain=True)
    assert "rule recipient-from-untrusted matched -> block" in d.trace
    assert "provenance: to 'x@evil.example' appeared only in the output of browse (call 2), untrusted" in d.trace


def test_policy_tests_yaml_takes_arg_sources_and_task() -> None:
    from thoth.policy.testing import load_tests, run_tests

    data, marks = load_tests("""
tests:
  - name: an injected recipient is blocked
    call: {tool: send_email, args: {to: x@evil.example}, arg_sources: {to: ["tool:read_inbox#2"]},
           task: {id: t, plan: {tools: [read_inbox, send_email]}}}
    expect: {decision: BLOCK, matched: [recipient-from-untrusted], reason_contains: "read_inbox (call 2)"}
  - name: the requested recipient is not
    call: {tool: send_email, args: {to: bob@corp.example}, arg_sources: {to: [task]},
           task: {id: t, plan: {tools: [send_email]}}}
    expect: {decision: ALLOW}
  - name: a published client is decided as before
    call: {tool: send_email, args: {to: x@evil.example}}
    expect: {decision: ALLOW, matched_exactly: []}
""")
    results = run_tests(compile_policy(PACK), data, marks)
    assert [r.passed for r in results] == [True, True, True], [r.failures for r in results]


def test_an_argument_named_plan_is_explained_as_an_argument() -> None:
    policy = compile_policy(CATALOGUE + """
rules:
  - {id: r, when: {args: {plan: {source: untrusted}}}, action: block}
""")
    d = policy.evaluate(call("transfer", tool_args={"plan": "monthly"}, arg_sources={"plan": ["tool:browse#1"]}))
    assert "plan 'monthly' appeared only in the output of browse (call 1), untrusted" in d.reason
