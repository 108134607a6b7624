"""The per-tool / per-agent rule index only skips rules that could not have matched."""

from __future__ import annotations

from thoth.policy import CallContext, compile_policy
from thoth.policy.conditions import Eval
from thoth.policy.context import SessionHistory

POLICY = """
version: 1
rules:
  - {id: only-a, when: {agent: agent-a, not: {tool: [read]}}, action: block}
  - {id: a-or-b, when: {any: [{agent: agent-a}, {agent: agent-b}], tool: write}, action: step_up}
  - {id: glob-agent, when: {agent: "ops-*", tool: write}, action: block}
  - {id: not-a, when: {not: {agent: agent-a}, tool: write}, action: flag}
  - {id: everyone, when: {tool: write}, action: flag}
"""


def matched(agent: str, tool: str) -> list[str]:
    policy = compile_policy(POLICY)
    decision = policy.evaluate(CallContext(tool_name=tool, agent_id=agent))
    return [r for r in decision.matched_rule_ids if not r.startswith("builtin.")]


def test_agent_rules_apply_only_to_their_agents() -> None:
    assert matched("agent-a", "write") == ["only-a", "a-or-b", "everyone"]
    assert matched("agent-a", "read") == []
    assert matched("agent-b", "write") == ["a-or-b", "not-a", "everyone"]
    assert matched("ops-1", "write") == ["glob-agent", "not-a", "everyone"]
    assert matched("agent-A", "write") == ["not-a", "everyone"]  # names are case-sensitive


def test_index_agrees_with_evaluating_every_rule() -> None:
    policy = compile_policy(POLICY)
    for agent in ("agent-a", "agent-b", "ops-9", "x"):
        for tool in ("read", "write", "other"):
            call = CallContext(tool_name=tool, agent_id=agent)
            ev = Eval(call, SessionHistory(), True, True)
            every = [r.id for r in policy.rules if r.cond(ev)]
            assert [r.id for r in policy.rules_for(tool, agent) if r.cond(ev)] == every
