"""A stand-in for the SDK's provenance, used by bench/eval_injection.py only while the SDK under
test has no `thoth.task` (issue 16's SDK half not merged yet): `--provenance harness`.

It sends what docs/wire.md, "The task and argument provenance", says the SDK sends, computed
from the same facts the SDK holds (the user's request, the outputs of the session's earlier
calls): `task` (id and plan; the plan from `thoth.plan.TaskPlans`, the SDK's own planning code)
and `arg_sources` (each argument part of 3+ characters, or any number, looked up after
normalisation in the task text and in each earlier output, by substring). Figures made with it
are labelled so; the SDK's own lookup replaces it as soon as `thoth.task` exists.
"""

from __future__ import annotations

import json
from typing import Any

from thoth.plan import TaskPlans, normalize_text

MIN_CHARS = 3


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def parts(value: Any, path: str, depth: int = 0) -> list[tuple[str, str]]:
    """(path, normalised text) of each string/number part worth looking up."""
    if depth > 6:
        return []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in parts(v, f"{path}.{k}", depth + 1)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in parts(v, f"{path}[{i}]", depth + 1)]
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, (int, float)):
        return [(path, normalize_text(str(value)))]
    if isinstance(value, str) and len(value.strip()) >= MIN_CHARS:
        return [(path, normalize_text(value))]
    return []


class SessionFacts:
    """The task and the outputs the agent saw so far (the replay appends them)."""

    def __init__(self, task: str, task_id: str) -> None:
        self.task = normalize_text(task)
        self.task_text = task
        self.task_id = task_id
        self.outputs: list[tuple[str, str]] = []  # (source name, normalised output)
        self.counts = 0

    def saw(self, tool: str, output: Any) -> None:
        self.counts += 1
        self.outputs.append((f"tool:{tool}#{self.counts}", normalize_text(_text(output))))

    def sources(self, args: dict[str, Any]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for name, value in args.items():
            for path, text in parts(value, name):
                where = ["task"] if text in self.task else []
                where += [src for src, out in self.outputs if text in out]
                found[path] = where
        return found


class WithProvenance:
    """Wraps a tracer's enforcer: each request gets `task` and `arg_sources` before it is sent."""

    def __init__(self, inner: Any, facts: SessionFacts, plans: TaskPlans) -> None:
        self.inner = inner
        self.facts = facts
        self.plan = plans.plan(facts.task_text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _add(self, request: dict[str, Any]) -> dict[str, Any]:
        return {**request, "task": {"id": self.facts.task_id, "plan": self.plan},
                "arg_sources": self.facts.sources(request.get("tool_args") or {})}

    def enforce(self, request: dict[str, Any]) -> Any:
        return self.inner.enforce(self._add(request))

    async def aenforce(self, request: dict[str, Any]) -> Any:
        return await self.inner.aenforce(self._add(request))
