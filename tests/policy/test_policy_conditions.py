"""Condition kinds and value operators, one behaviour per test."""

from __future__ import annotations

import pytest
from policy_helpers import NOW, call, fires, policy_with

from thoth.policy import SessionHistory


@pytest.mark.parametrize(("when", "tool", "expected"), [
    ({"tool": "send_email"}, "send_email", True),
    ({"tool": "send_email"}, "send_emails", False),
    ({"tool": "db_*"}, "db_query", True),
    ({"tool": "db_*"}, "xdb_query", False),
    ({"tool": ["a", "b?"]}, "bx", True),
    ({"tool": ["a", "b?"]}, "bxx", False),
])
def test_tool_names_exact_and_glob(when: dict, tool: str, expected: bool) -> None:
    assert fires(when, tool) is expected


def test_agent_user_tenant_environment_intent() -> None:
    assert fires({"agent": "ops-*"}, agent_id="ops-1")
    assert not fires({"agent": "ops-*"}, agent_id="dev-1")
    assert fires({"user": "alice@*"}, user_id="alice@x")
    assert fires({"tenant": ["t1", "t2"]}, tenant_id="t2")
    assert fires({"environment": "prod"}, environment="prod")
    assert not fires({"environment": "prod"}, environment="dev")
    assert fires({"intent": "billing"}, session_intent="billing")
    assert not fires({"intent": "billing"}, session_intent=None)


@pytest.mark.parametrize(("spec", "value", "expected"), [
    ("x", "x", True),
    ("x", "y", False),
    (5, 5, True),
    (5, 5.0, True),
    (1, True, False),              # True is not 1
    ("1", 1, False),               # a string is not a number for equals
    (["a", "b"], "b", True),       # a list means in
    ({"in": ["a"]}, "A", False),
    ({"in": ["a"], "ignore_case": True}, "A", True),
    ({"not_in": ["a", "b"]}, "c", True),
    ({"not_in": ["a", "b"]}, "a", False),
    ({"prefix": "/secrets/"}, "/secrets/k", True),
    ({"prefix": ["/a/", "/b/"]}, "/b/x", True),
    ({"suffix": ".pem"}, "key.pem", True),
    ({"contains": ".."}, "/a/../b", True),
    ({"glob": "*.env"}, "prod.env", True),
    ({"glob": "*.env"}, "prod.envx", False),
    ({"regex": "(?i)drop\\s+table"}, "DROP  TABLE x", True),
    ({"regex": "^a$"}, "ba", False),
    ({"gt": 10}, 11, True),
    ({"gt": 10}, 10, False),
    ({"gte": 10}, 10, True),
    ({"lt": 10}, "9.5", True),      # numeric strings compare as numbers
    ({"le": 10}, "ten", False),     # not a number: the test does not hold
    ({"gt": 10, "lt": 20}, 15, True),
    ({"gt": 10, "lt": 20}, 25, False),
    ({"present": True}, None, True),  # present with a null value
    ({"len_gt": 3}, "abcd", True),
    ({"len_lt": 2}, [1, 2], False),
    ({"type": "number"}, 3, True),
    ({"type": "number"}, True, False),
    ({"type": "string"}, 3, False),
    ({"not": {"prefix": "/ws/"}}, "/etc/x", True),
    ({"not": {"prefix": "/ws/"}}, "/ws/x", False),
    ({"domain": "acme.com"}, "bob@acme.com", True),
    ({"domain": "acme.com"}, "bob@eu.acme.com", True),
    ({"domain": "acme.com"}, "bob@notacme.com", False),
    ({"domain": "acme.com"}, "https://api.acme.com/x?y=1", True),
    ({"domain": "acme.com"}, "https://acme.com.evil.example/", False),
    ({"not_domain": ["acme.com"]}, "Bob <bob@ACME.com>", False),
    ({"not_domain": ["acme.com"]}, "a@acme.com, b@evil.example", True),
    ({"not_domain": ["acme.com"]}, "no address at all", True),   # unparsable: outside (fail closed)
    ({"prefix": "/s/"}, ["/a", "/s/x"], True),                  # a list passes when any element does
    ({"equals": "x"}, {"x": 1}, False),
])
def test_value_operators(spec: object, value: object, expected: bool) -> None:
    assert fires({"args": {"v": spec}}, args={"v": value}) is expected


def test_a_missing_argument_fails_every_test_but_present_false() -> None:
    for spec in ("x", {"not_in": ["a"]}, {"not": {"prefix": "/a"}}, {"not_domain": "a.com"}, {"gt": 1},
                 {"present": True}):
        assert not fires({"args": {"v": spec}}, args={}), spec
    assert fires({"args": {"v": {"present": False}}}, args={})
    # ...while a condition-level `not` is plain negation: it fires when the argument is missing.
    assert fires({"not": {"args": {"v": "x"}}}, args={})


def test_nested_and_kwargs_arguments() -> None:
    assert fires({"args": {"card.number": {"prefix": "4"}}}, args={"card": {"number": "4111"}})
    assert fires({"args": {"to": "a"}}, args={"args": [], "kwargs": {"to": "a"}})
    assert fires({"args": {"items.1": "b"}}, args={"items": ["a", "b"]})
    assert not fires({"args": {"items.5": "b"}}, args={"items": ["a", "b"]})


def test_any_arg_scans_nested_values() -> None:
    when = {"any_arg": {"regex": "AKIA[0-9A-Z]{16}"}}
    assert fires(when, args={"a": {"b": ["x", "key AKIAABCDEFGHIJKLMNOP"]}})
    assert not fires(when, args={"a": {"b": ["x"]}})


def test_all_any_not_and_implicit_all() -> None:
    assert fires({"all": [{"tool": "t"}, {"agent": "a"}]})
    assert not fires({"all": [{"tool": "t"}, {"agent": "b"}]})
    assert fires({"any": [{"tool": "x"}, {"agent": "a"}]})
    assert not fires({"any": [{"tool": "x"}, {"agent": "b"}]})
    assert fires({"not": {"tool": "x"}})
    assert fires({"tool": "t", "agent": "a"})
    assert not fires({"tool": "t", "agent": "b"})
    assert fires([{"tool": "t"}, {"agent": "a"}])


def test_tier_and_classification_use_the_catalogue() -> None:
    from thoth.policy import compile_policy
    p = compile_policy({"tools": {"rm": {"tier": "high", "classification": "delete"}},
                        "rules": [{"id": "r", "when": {"classification": "delete", "tier": ["high"]}, "action": "flag"}]})
    assert p.evaluate(call("rm")).flags == ["r"]
    assert p.evaluate(call("ls")).flags == []


def test_risk_condition_needs_a_score() -> None:
    assert fires({"risk": 0.8}, risk_score=0.85)
    assert not fires({"risk": 0.8}, risk_score=0.5)
    assert not fires({"risk": {"gte": 0.0}}, risk_score=None)
    assert fires({"risk": {"lt": 0.2}}, risk_score=0.1)


def test_time_of_day_and_days() -> None:
    # NOW is Thursday 00:00 UTC
    assert fires({"time": {"between": ["22:00", "06:00"]}})
    assert not fires({"time": {"between": ["08:00", "18:00"]}})
    assert fires({"time": {"between": ["08:00", "18:00"]}}, now=NOW + 9 * 3600)
    assert fires({"time": {"days": ["thu"]}})
    assert not fires({"time": {"days": ["sat", "sun"]}})
    # 00:00 UTC is 01:00 in Paris
    assert fires({"time": {"between": ["00:30", "01:30"], "tz": "Europe/Paris"}})


def test_in_scope_and_in_intent_conditions() -> None:
    assert fires({"in_scope": False}, approved_scope=["x"])
    assert fires({"in_scope": True}, approved_scope=["t"])


def _history(policy: object, calls: list[tuple[str, dict, float]]) -> SessionHistory:
    h = policy.new_history()  # type: ignore[attr-defined]
    for tool, args, ts in calls:
        h.record(tool, args, ts, "ALLOW")
    return h


def test_history_called_with_argument_predicate() -> None:
    p = policy_with({"history": {"tool": "read_file", "args": {"path": {"prefix": "/secrets/"}}}})
    plain = _history(p, [("read_file", {"path": "/ws/a"}, NOW)])
    secret = _history(p, [("read_file", {"path": "/secrets/a"}, NOW), ("x", {}, NOW)])
    assert p.evaluate(call("send"), plain).matched_rule_ids == []
    assert p.evaluate(call("send"), secret).matched_rule_ids == ["r"]


def test_history_within_last_and_at_least() -> None:
    p = policy_with({"history": {"tool": "a", "within_last": 2}})
    assert p.evaluate(call(), _history(p, [("a", {}, NOW), ("b", {}, NOW)])).matched_rule_ids == ["r"]
    assert p.evaluate(call(), _history(p, [("a", {}, NOW), ("b", {}, NOW), ("c", {}, NOW)])).matched_rule_ids == []
    p2 = policy_with({"history": {"tool": "a", "at_least": 2}})
    assert p2.evaluate(call(), _history(p2, [("a", {}, NOW)])).matched_rule_ids == []
    assert p2.evaluate(call(), _history(p2, [("a", {}, NOW), ("a", {}, NOW)])).matched_rule_ids == ["r"]


def test_rate_counts_this_call_and_a_sliding_window() -> None:
    p = policy_with({"rate": {"tool": "send", "more_than": 2, "seconds": 60}})
    h = _history(p, [("send", {}, NOW - 120), ("send", {}, NOW - 30), ("send", {}, NOW - 10)])
    assert p.evaluate(call("send"), h).matched_rule_ids == ["r"]      # 2 in window + this one
    assert p.evaluate(call("other"), h).matched_rule_ids == []        # 2 in window
    assert p.evaluate(call("send", now=NOW + 40), h).matched_rule_ids == []  # 1 in window + this


def test_session_calls_count() -> None:
    p = policy_with({"session_calls": {"gt": 2}})
    assert p.evaluate(call(), _history(p, [("a", {}, NOW)] * 3)).matched_rule_ids == ["r"]
    assert p.evaluate(call(), _history(p, [("a", {}, NOW)] * 2)).matched_rule_ids == []


def test_history_from_the_clients_list_when_the_server_keeps_none() -> None:
    p = policy_with({"called": "read_file"})
    # the wire list ends with the current call, which is not history yet
    assert p.evaluate(call("read_file", session_tool_calls=["read_file"])).matched_rule_ids == []
    assert p.evaluate(call("x", session_tool_calls=["read_file", "x"])).matched_rule_ids == ["r"]


def test_a_history_rebinds_when_another_policy_version_evaluates_it() -> None:
    p1 = policy_with({"called": "a"})
    p2 = policy_with({"history": {"tool": "a", "args": {"k": 1}}})
    h = p1.new_history()
    h.record("a", {"k": 1}, NOW, "ALLOW")
    assert p1.evaluate(call(), h).matched_rule_ids == ["r"]
    assert p2.evaluate(call(), h).matched_rule_ids == ["r"]  # replayed from the kept calls
    assert p1.evaluate(call(), h).matched_rule_ids == ["r"]


def test_record_cost_does_not_grow_with_history() -> None:
    p = policy_with({"history": {"tool": "read_*", "args": {"path": {"prefix": "/s/"}}}})
    h = p.new_history()
    for i in range(5000):
        h.record("read_file" if i % 2 else "other", {"path": f"/s/{i}"}, NOW + i, "ALLOW")
    assert h.n == 5000 and h.counts["other"] == 2500
    assert next(iter(h.markers.values()))[0] == 2500


def test_document_text_never_becomes_generated_code() -> None:
    from thoth.policy import compile_policy
    nasty = "x') or __import__('os').system('echo pwned') or ('"
    key = nasty.replace(".", "_")  # a dot in an argument name means nesting
    p = compile_policy({"rules": [{"id": "r", "action": "flag", "when": {
        "tool": nasty, "agent": [nasty, "a*"], "args": {key: {"prefix": nasty}, "n": {"gt": 1}}}}]})
    [rule] = p.rules
    assert "import" not in rule.source and "pwned" not in rule.source
    assert p.evaluate(call(nasty, agent_id="ab", tool_args={key: nasty + "!", "n": 2})).flags == ["r"]
    assert p.evaluate(call(nasty, agent_id="ab", tool_args={key: "y", "n": 2})).flags == []


def test_a_history_predicate_that_cannot_judge_a_call_counts_it() -> None:
    p = policy_with({"history": {"tool": "pay", "args": {"amount": {"gt": 100}}}})
    h = p.new_history()
    h.record("pay", {"amount": float("nan")}, NOW, "ALLOW")
    assert p.evaluate(call("send"), h).matched_rule_ids == ["r"]
