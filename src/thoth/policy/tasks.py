"""The policy's `tasks:` section and what the SDK needs to plan a task (docs/policy.md, "Task
plans"): patterns of the user's request mapped to the tools (and argument constraints) such a
request may use, plus the catalogue and the intents.

The server never matches a task: the raw text stays in the agent's process. It hands this
export to the SDK (GET /v1/tasks; in-process mode reads the local policy), and the SDK's
thoth.plan computes the plan that each enforce request then carries in `task.plan`.

    tasks:
      reply_mail:
        match: ['\\breply\\b', '\\banswer\\b.*\\bmail']   # regexes, searched ignoring case
        tools: [read_inbox, send_email]
        args:                                          # optional, per tool
          send_email: {to: {source: [user, trusted]}}
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from thoth.policy.loader import Path
from thoth.policy.provenance import STATES

TASK_FIELDS = ("match", "tools", "args", "description")
MAX_PATTERN = 1000


def check_constraint(value: Any) -> str | None:
    """Why `value` is not a plan argument constraint (None when it is one). Shared with the
    SDK's planner output validation (thoth.plan)."""
    if isinstance(value, dict) and set(value) == {"in"}:
        value = value["in"]
    if isinstance(value, list):
        if not value or any(isinstance(v, dict | list) for v in value):
            return "a list of allowed values (strings or numbers) is expected"
        return None
    if isinstance(value, dict) and set(value) == {"source"}:
        states = value["source"]
        if not isinstance(states, list) or not states or any(s not in STATES for s in states):
            return f"source takes a list of states: {', '.join(STATES)}"
        return None
    return "expected a list of allowed values, {in: [...]} or {source: [states]}"


def compile_tasks(value: Any, check: Any) -> list[dict[str, Any]]:
    """Validate `tasks:` (errors through the engine's checker) into the exported entries."""
    out: list[dict[str, Any]] = []
    for name, spec in check.mapping(value, ("tasks",)).items():
        path: Path = ("tasks", str(name))
        spec = check.mapping(spec, path, TASK_FIELDS)
        if not spec:
            continue
        ok = True
        patterns = spec.get("match")
        items = patterns if isinstance(patterns, list) else [patterns]
        if not items or not all(isinstance(p, str) and p and len(p) <= MAX_PATTERN for p in items):
            check.err((*path, "match"), "match takes a regular expression or a list of them (searched in the "
                                        "user's request, ignoring case)")
            ok = False
        else:
            for i, pattern in enumerate(items):
                try:
                    re.compile(pattern, re.IGNORECASE)
                except re.error as exc:
                    check.err((*path, "match", i) if isinstance(patterns, list) else (*path, "match"),
                              f"bad regex: {exc}")
                    ok = False
        if "tools" not in spec:
            check.err(path, "a task needs tools: [...] (the tools a request like this may use)")
            continue
        tools = check.names(spec["tools"], (*path, "tools"))
        args = spec.get("args")
        constraints: dict[str, dict[str, Any]] = {}
        if args is not None:
            for tool, per_arg in check.mapping(args, (*path, "args")).items():
                for arg, constraint in check.mapping(per_arg, (*path, "args", str(tool))).items():
                    why = check_constraint(constraint)
                    if why is not None:
                        check.err((*path, "args", str(tool), str(arg)), why)
                        ok = False
                    else:
                        constraints.setdefault(str(tool), {})[str(arg)] = constraint
        if ok and tools:
            entry: dict[str, Any] = {"name": str(name), "match": list(items), "tools": list(tools)}
            if constraints:
                entry["args"] = constraints
            out.append(entry)
    return out


def task_export(doc: dict[str, Any], catalogue: dict[str, dict[str, str]], tasks: list[dict[str, Any]],
                version: Any = None) -> dict[str, Any]:
    """What the SDK plans with: the catalogue (with descriptions), the intents' tools, the tasks.
    `digest` changes whenever any of it does (the planner's cache key)."""
    tools_doc = doc.get("tools") if isinstance(doc.get("tools"), dict) else {}
    cat: dict[str, dict[str, Any]] = {}
    for name, meta in catalogue.items():
        entry: dict[str, Any] = dict(meta)
        described = (tools_doc.get(name) or {}).get("description") if isinstance(tools_doc, dict) else None
        if isinstance(described, str):
            entry["description"] = described
        cat[name] = entry
    intents: dict[str, dict[str, Any]] = {}
    raw_intents = doc.get("intents")
    if isinstance(raw_intents, dict):
        for name, spec in raw_intents.items():
            if isinstance(spec, dict) and isinstance(spec.get("tools"), list):
                intents[str(name)] = {"tools": [t for t in spec["tools"] if isinstance(t, str)]}
    body = {"catalogue": cat, "intents": intents, "tasks": tasks}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {**body, "digest": digest, "policy_version": version}
