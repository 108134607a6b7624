"""Property-based tests: precedence, operators against plain-Python references, robustness."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_helpers import call

from thoth.models import DecisionType
from thoth.policy import CallContext, PolicyValidationError, SessionHistory, compile_policy
from thoth.policy.decision import SEVERITY

ACTIONS = ["allow", "flag", "block", "step_up", "modify", "defer"]
VERDICT = {"allow": "ALLOW", "flag": "ALLOW", "block": "BLOCK", "step_up": "STEP_UP", "modify": "MODIFY",
           "defer": "DEFER"}
PACKS = Path(__file__).resolve().parents[2] / "src" / "thoth" / "policy" / "packs"
PACK_POLICIES = [compile_policy(p.read_text()) for p in sorted(PACKS.glob("*.yaml")) if not p.name.endswith(".tests.yaml")]
FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.lists(st.tuples(st.sampled_from(ACTIONS), st.booleans()), min_size=1, max_size=12),
       st.sampled_from(["progressive", "block", "step_up", "observe"]))
def test_precedence_is_the_most_restrictive_matching_rule(rules: list[tuple[str, bool]], mode: str) -> None:
    doc = {"rules": [{"id": f"r{i}", "action": action, "reason": f"reason {i}",
                      "when": {"tool": "t" if hit else "other"},
                      **({"modify": {"redact": ["x"]}} if action == "modify" else {})}
                     for i, (action, hit) in enumerate(rules)]}
    d = compile_policy(doc).evaluate(call("t", tool_args={"x": 1}, enforcement_mode=mode))
    hits = [(i, a) for i, (a, hit) in enumerate(rules) if hit]
    # every matching rule is listed, in document order
    assert d.matched_rule_ids == [f"r{i}" for i, _ in hits]
    expected = max((VERDICT[a] for _, a in hits), key=lambda v: SEVERITY[DecisionType(v)], default="ALLOW")
    progressive = d.would_decision if mode == "observe" else d.decision
    if mode in ("progressive", "observe"):
        assert progressive.value == expected
    violation = expected in ("BLOCK", "STEP_UP", "DEFER")
    if mode == "observe":
        assert d.decision is DecisionType.ALLOW
    elif mode == "block":
        assert d.decision.value == ("BLOCK" if violation else expected)
    elif mode == "step_up":
        assert d.decision.value == ("STEP_UP" if violation else expected)
    # the reason is the first rule at the winning level
    if hits and expected != "ALLOW":
        first = next(i for i, a in hits if VERDICT[a] == expected)
        assert d.reason == f"reason {first}"
    # a decision is deterministic
    again = compile_policy(doc).evaluate(call("t", tool_args={"x": 1}, enforcement_mode=mode))
    assert (again.decision, again.matched_rule_ids, again.reason) == (d.decision, d.matched_rule_ids, d.reason)


scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=False, allow_infinity=False, width=32), st.text(max_size=12))


def _fires(spec: Any, value: Any) -> bool:
    p = compile_policy({"rules": [{"id": "r", "when": {"args": {"v": spec}}, "action": "flag"}]})
    return p.evaluate(call(tool_args={"v": value})).flags == ["r"]


@FAST
@given(st.text(max_size=8), st.text(max_size=16))
def test_prefix_suffix_contains_match_python(word: str, value: str) -> None:
    if not word:
        return
    assert _fires({"prefix": word}, value) is value.startswith(word)
    assert _fires({"suffix": word}, value) is value.endswith(word)
    assert _fires({"contains": word}, value) is (word in value)


@FAST
@given(st.lists(st.text(max_size=5), min_size=1, max_size=5), st.text(max_size=5))
def test_in_and_not_in_are_complements_for_present_strings(items: list[str], value: str) -> None:
    assert _fires({"in": items}, value) is (value in items)
    assert _fires({"not_in": items}, value) is (value not in items)


@FAST
@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9),
       st.one_of(st.integers(-10**9, 10**9), st.floats(allow_nan=False, allow_infinity=False,
                                                       min_value=-1e9, max_value=1e9)))
def test_numeric_operators_match_python(limit: float, value: float) -> None:
    assert _fires({"gt": limit}, value) is (value > limit)
    assert _fires({"gte": limit}, value) is (value >= limit)
    assert _fires({"lt": limit}, value) is (value < limit)
    assert _fires({"lte": limit}, value) is (value <= limit)
    assert _fires({"gt": limit}, str(value)) is (float(str(value)) > limit)


@FAST
@given(scalars, scalars)
def test_equals_and_not_equals_are_complements_for_present_values(spec: Any, value: Any) -> None:
    if isinstance(spec, float) and math.isnan(spec):
        return
    assert _fires({"equals": spec}, value) is not _fires({"not_equals": spec}, value)


@FAST
@given(st.dictionaries(st.text(max_size=6), st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=10), max_size=5), st.sampled_from(["progressive", "observe", "block", "step_up", "???"]),
    st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
    st.lists(st.text(max_size=8), max_size=10))
def test_any_call_gets_a_decision_from_the_packs(args: dict, mode: str, risk: float | None, history: list[str]) -> None:
    for p in PACK_POLICIES:
        for tool in ("send_email", "get_patient_record", "transfer_funds", "exec_sql", "x"):
            d = p.evaluate(CallContext(tool_name=tool, tool_args=args, enforcement_mode=mode, risk_score=risk,
                                       session_tool_calls=history, session_intent="billing"))
            assert isinstance(d.decision, DecisionType)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10),
              st.sampled_from(["tool", "args", "all", "any", "not", "block", "when", "id", "rules", "regex", "("])),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["id", "when", "action", "rules", "tools", "agents", "intents", "args", "tool", "all",
                         "any", "not", "regex", "gt", "history", "rate", "expr", "time", "tier", "modify",
                         "cedar", "defaults", "progressive", "x"]), inner, max_size=4),
    max_leaves=25)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_malformed_documents_never_crash(doc: Any) -> None:
    try:
        p = compile_policy(doc if isinstance(doc, dict) else {"rules": doc})
    except PolicyValidationError as exc:
        assert exc.errors
        return
    p.evaluate(call("t"), SessionHistory())


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes(text: str) -> None:
    try:
        compile_policy(text)
    except PolicyValidationError as exc:
        assert all(isinstance(str(e), str) for e in exc.errors)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["version: 1\n", "rules:\n", "  - id: a\n", "    when: {tool: x}\n",
                                 "    action: block\n", "  - ", "    when:\n", "      args: {a: {gt: ", "]\n",
                                 "tools: {x: {tier: high}}\n", "&a [*a]\n", "!!python/object:os.system\n",
                                 "\t", "- [\n"]), max_size=12))
def test_mangled_yaml_never_crashes(parts: list[str]) -> None:
    with contextlib.suppress(PolicyValidationError):
        compile_policy("".join(parts))
