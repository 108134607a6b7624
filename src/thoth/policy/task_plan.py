"""Does the task's plan allow this call? (docs/policy.md, "Provenance and task conditions").

The plan travels in the enforce request's `task.plan` (docs/wire.md): `{"tools": [...],
"source": ..., "args": {tool: {argument: constraint}}}`, computed by the SDK from the task text
alone. A constraint is a list of allowed values (`["a@b.com"]`, also written `{"in": [...]}`)
or `{"source": [states]}` (every part of the argument has one of these provenance states).
A constraint in any other shape fails: a malformed plan allows less, never more.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from thoth.policy.provenance import UNKNOWN, Provenance


def tool_in(tools: list[Any], tool: str) -> bool:
    if tool in tools:  # exact names: the usual plan
        return True
    for name in tools:
        if type(name) is str and ("*" in name or "?" in name or "[" in name) and fnmatchcase(tool, name):
            return True
    return False


def plan_verdict(task: Any, tool: str, args: dict[str, Any], prov: Provenance | None) -> tuple[bool | None, str]:
    """(True, "") when the plan allows the call, (False, why) when it does not, (None, why)
    when there is no plan to ask (no task, or a task without a plan)."""
    if task is None:
        return None, "the client sent no task"
    plan = task.get("plan") if type(task) is dict else None
    if type(plan) is not dict or type(plan.get("tools")) is not list:
        return None, "the task has no plan"
    tools = plan["tools"]
    origin = plan.get("source")
    where = f" ({origin})" if type(origin) is str and origin else ""
    if not tool_in(tools, tool):
        listed = ", ".join(str(t) for t in tools[:8]) + (" ..." if len(tools) > 8 else "")
        return False, f"{tool} is not among the tools the task's plan{where} allows: {listed or 'none'}"
    constraints = plan.get("args")
    if constraints is None:
        return True, ""
    per_tool = constraints.get(tool) if type(constraints) is dict else None
    if per_tool is None:
        return True, ""
    if type(per_tool) is not dict:
        return False, f"the task's plan{where} has a malformed argument constraint for {tool}"
    for name, constraint in per_tool.items():
        ok, why = _satisfies(str(name), constraint, args, prov)
        if not ok:
            return False, f"{tool}: {why}, which the task's plan{where} does not allow"
    return True, ""


def _satisfies(name: str, constraint: Any, args: dict[str, Any], prov: Provenance | None) -> tuple[bool, str]:
    value = args.get(name)
    if type(constraint) is dict and set(constraint) == {"in"}:
        constraint = constraint["in"]
    if type(constraint) is list:
        allowed = {_fold(v) for v in constraint if type(v) is not dict and type(v) is not list}
        for leaf in _leaves(value, 0):
            if _fold(leaf) not in allowed:
                return False, f"argument {name} {str(leaf)[:60]!r} is outside the planned values"
        return True, ""
    if type(constraint) is dict and set(constraint) == {"source"} and type(constraint["source"]) is list:
        wanted = {s for s in constraint["source"] if type(s) is str}
        if value is None:
            return True, ""
        parts = prov.parts((name,), value) if prov is not None else None
        if parts is None:
            return (UNKNOWN in wanted), f"argument {name}'s provenance is unknown"
        for part in parts:
            if part.state not in wanted:
                return False, part.sentence(prov.trusted if prov is not None else frozenset())
        return True, ""
    return False, f"argument {name} has a malformed plan constraint"


def _fold(value: Any) -> Any:
    return value.casefold() if type(value) is str else value


def _leaves(value: Any, depth: int) -> list[Any]:
    if type(value) is list and depth < 6:
        return [leaf for item in value[:1000] for leaf in _leaves(item, depth + 1)]
    if type(value) is dict and depth < 6:
        return [leaf for item in list(value.values())[:1000] for leaf in _leaves(item, depth + 1)]
    return [] if value is None else [value]
