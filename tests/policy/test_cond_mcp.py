"""The MCP pin condition kinds and the built-in hold (defaults.mcp_*), in-process: the flags
are what the server puts in CallContext.mcp_pin for a call naming its mcp_server."""

from __future__ import annotations

import pytest

from thoth.policy.context import CallContext
from thoth.policy.engine import PolicyValidationError, compile_policy


def decide(policy: str, *flags: str, tool: str = "read") -> tuple[str, str, list[str]]:
    d = compile_policy(policy).evaluate(CallContext(tool_name=tool, agent_id="a", mcp_pin=frozenset(flags)))
    return str(d.decision), d.reason_code, list(d.matched_rule_ids)


@pytest.mark.parametrize("flag, code", [("changed", "mcp_description_changed"),
                                        ("suspicious", "mcp_description_suspicious"),
                                        ("unpinned", "mcp_tool_unpinned")])
def test_default_holds_a_flagged_tool(flag: str, code: str) -> None:
    assert decide("version: 1\n", flag) == ("STEP_UP", code, ["builtin.mcp_pin"])
    assert decide("version: 1\n")[0] == "ALLOW"  # no flags: a local tool or a pinned MCP tool


def test_defaults_change_the_builtin() -> None:
    policy = "version: 1\ndefaults: {mcp_description_changed: allow, mcp_description_suspicious: block}\n"
    assert decide(policy, "changed")[0] == "ALLOW"
    assert decide(policy, "suspicious")[0] == "BLOCK"
    assert decide(policy, "changed", "suspicious")[0] == "BLOCK"
    assert decide(policy, "unpinned")[0] == "STEP_UP"


def test_condition_kinds() -> None:
    policy = """
version: 1
defaults: {mcp_description_changed: allow, mcp_description_suspicious: allow, mcp_tool_unpinned: allow}
rules:
  - {id: c, when: {mcp_description_changed: true, tool: read}, action: block}
  - {id: s, when: {mcp_description_suspicious: true}, action: step_up}
  - {id: u, when: {mcp_tool_unpinned: true}, action: defer}
  - {id: clean, when: {not: {any: [{mcp_description_changed: true}, {mcp_description_suspicious: true}]}}, action: flag}
"""
    assert decide(policy, "changed") == ("BLOCK", "rule_block", ["c"])
    assert decide(policy, "changed", tool="search")[0] == "ALLOW"
    assert decide(policy, "suspicious")[2] == ["s"]
    assert decide(policy, "unpinned")[0] == "DEFER"
    assert decide(policy)[2] == ["clean"]


@pytest.mark.parametrize("doc, message", [
    ("rules: [{id: x, when: {mcp_description_changed: yes please}, action: block}]", "takes true or false"),
    ("rules: [{id: x, when: {mcp_tool_unpinned: 1}, action: block}]", "takes true or false"),
    ("defaults: {mcp_description_suspicious: modify}", "mcp_description_suspicious"),
])
def test_bad_values_are_policy_errors(doc: str, message: str) -> None:
    with pytest.raises(PolicyValidationError, match=message):
        compile_policy("version: 1\n" + doc + "\n")


def test_policy_unit_tests_can_set_the_flags() -> None:
    from thoth.policy.testing import load_tests, run_tests

    policy = compile_policy("version: 1\ndefaults: {mcp_description_suspicious: block}\n")
    data, marks = load_tests("""
tests:
  - name: a rug-pulled tool is held
    call: {tool: read, mcp_pin: [changed]}
    expect: {decision: STEP_UP, reason_code: mcp_description_changed, matched: [builtin.mcp_pin]}
  - name: a poisoned description blocks
    call: {tool: read, mcp_pin: [changed, suspicious]}
    expect: {decision: BLOCK}
  - name: a pinned tool runs
    call: {tool: read}
    expect: {decision: ALLOW}
""")
    results = run_tests(policy, data, marks)
    assert [r.passed for r in results] == [True, True, True], [r.failures for r in results]
