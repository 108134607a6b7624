"""The safe expression form: what it can say, and what it refuses."""

from __future__ import annotations

import pytest
from policy_helpers import NOW, call, fires

from thoth.policy import PolicyValidationError, compile_policy


@pytest.mark.parametrize(("expr", "args", "kw", "expected"), [
    ("args.amount > 1000", {"amount": 1500}, {}, True),
    ("args.amount > 1000", {"amount": "1500"}, {}, True),
    ("args.amount > 1000", {"amount": "lots"}, {}, False),
    ("args.amount > 1000", {}, {}, False),
    ("args.amount * 2 >= 10", {"amount": 5}, {}, True),
    ("1000 < args.amount <= 2000", {"amount": 2000}, {}, True),
    ("tool == 't' and agent == 'a'", {}, {}, True),
    ("tool in ['x', 't']", {}, {}, True),
    ("tool not in ['x', 't']", {}, {}, False),
    ("'@' in args.to and domain(args.to) == 'acme.com'", {"to": "b@acme.com"}, {}, True),
    ("lower(args.cmd) == 'ls'", {"cmd": "LS"}, {}, True),
    ("len(args.cc) > 2", {"cc": ["a", "b", "c"]}, {}, True),
    ("matches(args.q, '(?i)select .* from users')", {"q": "SELECT * FROM users"}, {}, True),
    ("glob(args.path, '/secrets/*')", {"path": "/secrets/k"}, {}, True),
    ("startswith(args.path, '/tmp') or endswith(args.path, '.log')", {"path": "/var/x.log"}, {}, True),
    ("has(args.token)", {"token": None}, {}, True),
    ("not has(args.token)", {}, {}, True),
    ("args['content-type'] == 'json'", {"content-type": "json"}, {}, True),
    ("args.items[1] == 'b'", {"items": ["a", "b"]}, {}, True),
    ("risk >= 0.8", {}, {"risk_score": 0.9}, True),
    ("risk >= 0.8", {}, {}, False),
    ("intent == 'billing'", {}, {"session_intent": "billing"}, True),
    ("hour == 0 and weekday == 3", {}, {}, True),
    ("args.n == 1", {"n": True}, {}, False),
    ("-args.n < 0", {"n": 3}, {}, True),
    ("number(args.n) > 2", {"n": "3"}, {}, True),
    ("not in_scope", {}, {"approved_scope": ["x"]}, True),
    ("args.a != 'x'", {}, {}, False),   # a missing argument fails every comparison
])
def test_expressions(expr: str, args: dict, kw: dict, expected: bool) -> None:
    assert fires({"expr": expr}, args=args, **kw) is expected


def test_history_functions() -> None:
    p = compile_policy({"rules": [{"id": "r", "action": "block",
                                   "when": {"expr": "called('read_*') and count('send') >= 2 and "
                                                    "calls_within('send', 60) == 1 and session_calls == 3"}}]})
    h = p.new_history()
    h.record("read_file", {}, NOW - 200, "ALLOW")
    h.record("send", {}, NOW - 100, "ALLOW")
    h.record("send", {}, NOW - 10, "ALLOW")
    assert p.evaluate(call(), h).matched_rule_ids == ["r"]


@pytest.mark.parametrize("expr", [
    "__import__('os').system('id')",
    "args.__class__",
    "tool.__class__.__mro__",
    "open('/etc/passwd')",
    "(lambda: 1)()",
    "[x for x in args]",
    "args.a if True else 1",
    "eval('1')",
    "tool is None",
    "f'{tool}'",
    "args.a ** 99999999",
    "matches(args.a, tool)",
    "called(tool)",
    "unknown_name == 1",
    "x := 1",
    "",
    "a" * 3000,
])
def test_unsafe_or_unknown_expressions_are_refused(expr: str) -> None:
    with pytest.raises(PolicyValidationError) as info:
        compile_policy({"rules": [{"id": "r", "when": {"expr": expr}, "action": "block"}]})
    assert info.value.errors[0].path.startswith("rules[0].when.expr")


def test_arithmetic_on_text_fails_closed() -> None:
    p = compile_policy({"rules": [{"id": "r", "when": {"expr": "args.a + 1 > 2"}, "action": "allow"}]})
    d = p.evaluate(call(tool_args={"a": "text"}))
    assert d.decision.value == "BLOCK" and d.reason_code == "policy_evaluation_error"
    d = p.evaluate(call(tool_args={"a": 1}))
    assert d.decision.value == "ALLOW"
