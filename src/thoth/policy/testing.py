"""Policy unit tests written in YAML: given this call and this session, expect this decision.

    policy: least_privilege.yaml        # relative to the tests file (ignored when given directly)
    tests:
      - name: a second out-of-scope call blocks
        session:                        # earlier calls, each decided by the policy then recorded
          - {tool: delete_repo, agent: dev-bot}
        call: {tool: delete_repo, agent: dev-bot, mode: progressive}
        expect: {decision: BLOCK, matched: [builtin.scope]}

Call fields: tool, agent, user, tenant, environment, intent, args, scope (approved_scope), mode,
risk, at (seconds relative to the test's clock; session entries default to one second apart),
arg_sources and task (our SDK's provenance fields, as on the wire: docs/wire.md),
mcp_pin (an MCP tool's pin flags as the server would set them: [changed, suspicious, unpinned]).
Expect fields: decision, would_decision, reason_code, matched (each must be listed),
not_matched, matched_exactly, modified_args, flags, reason_contains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from thoth.policy.context import CallContext
from thoth.policy.engine import CompiledPolicy
from thoth.policy.errors import PolicyIssue, PolicyValidationError
from thoth.policy.loader import Marks, load_document

CLOCK = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a Thursday: tests are deterministic
CALL_FIELDS = ("tool", "agent", "user", "tenant", "environment", "intent", "args", "scope", "mode", "risk", "at",
               "decision", "arg_sources", "task", "mcp_pin")
EXPECT_FIELDS = ("decision", "would_decision", "reason_code", "matched", "not_matched", "matched_exactly",
                 "modified_args", "flags", "reason_contains")


@dataclass
class TestResult:
    name: str
    passed: bool
    failures: list[str] = field(default_factory=list)
    decision: str | None = None
    line: int | None = None


def load_tests(source: str | dict[str, Any]) -> tuple[dict[str, Any], Marks]:
    data, marks = load_document(source)
    if not isinstance(data, dict) or not isinstance(data.get("tests"), list):
        raise PolicyValidationError([PolicyIssue("tests", "a tests file needs tests: [ ... ]")])
    return data, marks


def make_call(spec: dict[str, Any], now: float) -> CallContext:
    return CallContext(
        tool_name=str(spec.get("tool", "")),
        agent_id=str(spec.get("agent", "test-agent")),
        user_id=str(spec.get("user", "test-user")),
        tenant_id=str(spec.get("tenant", "test-tenant")),
        environment=str(spec.get("environment", "prod")),
        session_intent=spec.get("intent"),
        tool_args=spec.get("args") or {},
        approved_scope=spec.get("scope"),
        enforcement_mode=str(spec.get("mode", "progressive")),
        risk_score=spec.get("risk"),
        now=now + float(spec.get("at", 0)),
        arg_sources=spec.get("arg_sources"),
        task=spec.get("task"),
        mcp_pin=frozenset(str(f) for f in pins) if isinstance(pins := spec.get("mcp_pin"), list) else frozenset(),
    )


def run_tests(policy: CompiledPolicy, data: dict[str, Any], marks: Marks | None = None) -> list[TestResult]:
    marks = marks or Marks()
    results = []
    for i, case in enumerate(data.get("tests", [])):
        line = marks.by_path.get(("tests", i), (None, None))[0]
        results.append(_run_one(policy, case, i, line))
    return results


def _run_one(policy: CompiledPolicy, case: Any, index: int, line: int | None) -> TestResult:
    name = str(case.get("name", f"test {index + 1}")) if isinstance(case, dict) else f"test {index + 1}"
    problems = _check_shape(case)
    if problems:
        return TestResult(name, False, problems, line=line)
    history = policy.new_history()
    session = case.get("session") or []
    defaults = {k: v for k, v in case["call"].items() if k in ("agent", "user", "tenant", "environment", "intent",
                                                               "scope", "mode")}
    for j, earlier in enumerate(session):
        spec = {**defaults, **earlier}
        call = make_call(spec, CLOCK - (len(session) - j))
        recorded: Any = spec.get("decision")
        if recorded is None:
            recorded = policy.evaluate(call, history)
        history.record(call.tool_name, call.tool_args, call.now, recorded)
    decision = policy.evaluate(make_call(case["call"], CLOCK), history, explain=True)
    expect = case["expect"]
    failures = []
    if "decision" in expect and decision.decision.value != str(expect["decision"]).upper():
        failures.append(f"decision {decision.decision.value}, expected {expect['decision']}")
    if "would_decision" in expect and decision.would_decision.value != str(expect["would_decision"]).upper():
        failures.append(f"would_decision {decision.would_decision.value}, expected {expect['would_decision']}")
    if "reason_code" in expect and decision.reason_code != expect["reason_code"]:
        failures.append(f"reason_code {decision.reason_code!r}, expected {expect['reason_code']!r}")
    for rule in expect.get("matched", []):
        if rule not in decision.matched_rule_ids:
            failures.append(f"rule {rule} did not match (matched: {decision.matched_rule_ids})")
    for rule in expect.get("not_matched", []):
        if rule in decision.matched_rule_ids:
            failures.append(f"rule {rule} matched but should not")
    if "matched_exactly" in expect and sorted(expect["matched_exactly"]) != sorted(decision.matched_rule_ids):
        failures.append(f"matched {decision.matched_rule_ids}, expected exactly {expect['matched_exactly']}")
    if "modified_args" in expect and decision.modified_args != expect["modified_args"]:
        failures.append(f"modified_args {decision.modified_args}, expected {expect['modified_args']}")
    if "flags" in expect and sorted(decision.flags) != sorted(expect["flags"]):
        failures.append(f"flags {decision.flags}, expected {expect['flags']}")
    if "reason_contains" in expect and str(expect["reason_contains"]) not in decision.reason:
        failures.append(f"reason {decision.reason!r} lacks {expect['reason_contains']!r}")
    if failures:
        failures.append("trace: " + " | ".join(decision.trace))
    return TestResult(name, not failures, failures, decision.decision.value, line)


def _check_shape(case: Any) -> list[str]:
    if not isinstance(case, dict):
        return ["a test is a mapping with call: and expect:"]
    problems = []
    call, expect = case.get("call"), case.get("expect")
    if not isinstance(call, dict) or "tool" not in call:
        problems.append("call: {tool: NAME, ...} is required")
    elif unknown := [k for k in call if k not in CALL_FIELDS]:
        problems.append(f"unknown call field(s) {unknown}; known: {', '.join(CALL_FIELDS)}")
    if not isinstance(expect, dict) or not expect:
        problems.append("expect: {decision: ..., matched: [...]} is required")
    elif unknown := [k for k in expect if k not in EXPECT_FIELDS]:
        problems.append(f"unknown expect field(s) {unknown}; known: {', '.join(EXPECT_FIELDS)}")
    session = case.get("session", [])
    if not isinstance(session, list) or not all(isinstance(s, dict) and "tool" in s for s in session):
        problems.append("session: must be a list of calls, each with a tool")
    return problems
