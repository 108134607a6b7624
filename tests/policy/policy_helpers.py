from __future__ import annotations

from typing import Any

from thoth.policy import CallContext, compile_policy

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def call(tool: str = "t", **kw: Any) -> CallContext:
    kw.setdefault("now", NOW)
    kw.setdefault("agent_id", "a")
    return CallContext(tool_name=tool, **kw)


def policy_with(when: Any, action: str = "block", **extra: Any) -> Any:
    rule = {"id": "r", "when": when, "action": action, **extra}
    return compile_policy({"version": 1, "rules": [rule]})


def fires(when: Any, tool: str = "t", args: dict[str, Any] | None = None, **kw: Any) -> bool:
    p = policy_with(when)
    return "r" in p.evaluate(call(tool, tool_args=args or {}, **kw)).matched_rule_ids
