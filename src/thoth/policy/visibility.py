"""Which tools an agent may ever use: the `tools/list` filter of MCP (docs/mcp.md, ADR 0402).

A tool is hidden when no call of it could ever be allowed for this agent, judged from the
compiled policy alone (no enforce call per tool, no arguments, no session):

- it is outside the agent's scope (the policy's `agents:` entry, the client's approved_scope,
  or `require_scope` with neither);
- a BLOCK rule matches it unconditionally: the rule's `when` only names tools, agents or
  `always` (anything else, arguments, history, time, makes the rule conditional and the tool
  stays visible: the enforce call of each use decides);
- its catalogue tier (or unknown_tool) blocks it and no allow rule could lift that default.

In `step_up` mode a non-hard BLOCK becomes a step-up, so only hard rules hide there; in
`observe` mode nothing is hidden. Cedar policies are not consulted (they are evaluated per call).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from thoth.policy.context import CallContext, SessionHistory
from thoth.policy.decision import DecisionType
from thoth.policy.values import name_matcher

BLOCK = DecisionType.BLOCK
_STATIC_KEYS = frozenset({"tool", "agent", "always", "all", "any"})


@dataclass(frozen=True, slots=True)
class Visibility:
    name: str
    visible: bool
    reason: str | None = None


def tool_visibility(policy: Any, *, agent_id: str, tool_name: str, mcp_server: str | None = None,
                    approved_scope: list[str] | None = None, enforcement_mode: str = "progressive") -> Visibility:
    """Whether `agent_id` may ever use this tool under `policy` (a CompiledPolicy)."""
    if enforcement_mode == "observe":
        return Visibility(tool_name, True)
    call = CallContext(tool_name=tool_name, agent_id=agent_id, approved_scope=approved_scope,
                       enforcement_mode=enforcement_mode, mcp_server=mcp_server, now=1.0)
    found: list[Any] = []
    if not policy._scope_check(call, SessionHistory(), found, None):
        return Visibility(tool_name, False, found[0].reason if found else "outside the agent's scope")
    allow_possible = False
    for rule in policy.rules:
        if rule.constraint is not None and tool_name not in rule.constraint:
            continue  # the rule names other tools only
        when = _whens(policy).get(rule.id)
        if rule.action == "allow":
            allow_possible = True
            continue
        if rule.decision is not BLOCK or (enforcement_mode == "step_up" and not rule.hard):
            continue
        if when is not None and _always(when, call) is True:
            return Visibility(tool_name, False, rule.reason or f"rule {rule.id} blocks this tool")
    if not allow_possible and enforcement_mode != "step_up":
        entry = call.tool_id if call.tool_id is not None and call.tool_id in policy.catalogue else tool_name
        tier: list[Any] = []
        policy._tier_default(entry, False, tier, None)
        if tier and tier[0].decision is BLOCK:
            return Visibility(tool_name, False, tier[0].reason)
    return Visibility(tool_name, True)


def filter_visible(policy: Any, tools: list[str], **identity: Any) -> list[Visibility]:
    """tool_visibility for each name of a tools/list answer, in order."""
    return [tool_visibility(policy, tool_name=name, **identity) for name in tools]


def _whens(policy: Any) -> dict[str, Any]:
    """rule id -> its `when` as written (the compiled rule keeps only generated code)."""
    cached = policy.__dict__.get("_visibility_whens")
    if cached is None:
        raw = policy.document.get("rules") if isinstance(policy.document, dict) else None
        cached = {r["id"]: r.get("when") for r in raw or () if isinstance(r, dict) and isinstance(r.get("id"), str)}
        policy.__dict__["_visibility_whens"] = cached
    return cached


@functools.lru_cache(maxsize=1024)
def _matcher(names: tuple[str, ...]) -> Any:
    return name_matcher(list(names))


def _always(node: Any, call: CallContext) -> bool | None:
    """True/False when `node` is decided by the tool and agent alone; None when it depends on
    anything else (then the rule is conditional)."""
    if isinstance(node, list):
        node = {"all": node}
    if not isinstance(node, dict) or not node or not set(node) <= _STATIC_KEYS:
        return None
    result = True
    for key, value in node.items():
        if key == "tool" or key == "agent":
            items = value if isinstance(value, list) else [value]
            if not items or not all(isinstance(v, str) and v for v in items):
                return None
            match = _matcher(tuple(items))
            ok = call.names(match) if key == "tool" else bool(match(call.agent_id))
        elif key == "always":
            if not isinstance(value, bool):
                return None
            ok = value
        elif key == "all" and isinstance(value, list):
            parts = [_always(item, call) for item in value]
            if any(p is False for p in parts):
                ok = False
            elif any(p is None for p in parts):
                return None
            else:
                ok = True
        elif key == "any" and isinstance(value, list):
            parts = [_always(item, call) for item in value]
            if any(p is True for p in parts):
                ok = True
            elif any(p is None for p in parts):
                return None
            else:
                ok = False
        else:
            return None
        result = result and ok
    return result
