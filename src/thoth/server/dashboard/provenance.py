"""The session page's view of a held or blocked call's provenance: the `provenance` object of
its stored answer (thoth.policy.engine._summary; docs/policy.md, "Explanations") in words."""

from __future__ import annotations

from typing import Any

import orjson

STATE_WORDS = {"user": "the user's task", "trusted": "trusted output", "untrusted": "untrusted output only",
               "model": "seen nowhere (model-made)", "unknown": "not reported"}


def source_words(source: Any) -> str:
    """"task" -> the user's task; "tool:read_inbox#3" -> read_inbox (call 3)."""
    if source == "task":
        return "the user's task"
    if isinstance(source, str) and source.startswith("tool:"):
        name, sep, number = source[5:].rpartition("#")
        if sep and name:
            return f"{name} (call {number})"
    return str(source)


def provenance_view(response: Any) -> dict[str, Any] | None:
    """None unless the stored answer carries a provenance summary (only our SDK's held or
    blocked calls do). Everything in it came from the agent's client: the template escapes it."""
    if not isinstance(response, str) or '"provenance"' not in response:
        return None
    try:
        summary = orjson.loads(response).get("provenance")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(summary, dict):
        return None
    args = []
    for part in summary.get("args") or []:
        if not isinstance(part, dict):
            continue
        state = str(part.get("state", "unknown"))
        found = part.get("sources")
        sources: list[Any] = found if isinstance(found, list) else []
        args.append({"arg": str(part.get("arg", "")), "value": str(part.get("value", "")), "state": state,
                     "state_words": STATE_WORDS.get(state, state),
                     # "task" is what the state `user` already says: list the tools' outputs
                     "sources": ", ".join(source_words(s) for s in sources if s != "task") or "—"})
    plan = summary.get("plan") if isinstance(summary.get("plan"), dict) else None
    tools = plan.get("tools") if plan and isinstance(plan.get("tools"), list) else None
    return {"args": args, "plan_state": summary.get("plan_state"),
            "plan_tools": ", ".join(map(str, tools)) if tools is not None else None,
            "plan_source": plan.get("source") if plan else None, "in_plan": summary.get("in_plan"),
            "plan_reason": summary.get("plan_reason"), "task_text": summary.get("task_text")}
