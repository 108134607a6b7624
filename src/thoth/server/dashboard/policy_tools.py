"""Policy editing helpers: validation with line numbers, diffs, and replaying stored calls
through a draft ("this draft would have blocked 12 more calls")."""

from __future__ import annotations

import difflib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

SIMULATION_LIMIT = 20_000


class EngineMissing(RuntimeError):
    """thoth.policy is not importable in this installation."""


def _engine() -> Any:
    try:
        import thoth.policy as engine
    except ImportError as exc:  # the policy package ships with the server; say so plainly if absent
        raise EngineMissing("the policy engine (thoth.policy) is not installed") from exc
    return engine


def validate(text: str) -> list[dict[str, Any]]:
    """[] when the draft compiles, else [{"line": int | None, "message": str}, ...]."""
    engine = _engine()
    if not text.strip():
        return [{"line": None, "message": "the policy is empty"}]
    try:
        engine.compile_policy(text)
    except engine.PolicyValidationError as exc:
        errors = getattr(exc, "errors", None) or [str(exc)]
        return [_error(e) for e in errors]
    return []


def _error(e: Any) -> dict[str, Any]:
    if isinstance(e, dict):
        return {"line": e.get("line"), "message": str(e.get("message") or e)}
    line = getattr(e, "line", None)
    message = getattr(e, "message", None)
    return {"line": line if isinstance(line, int) else None, "message": str(message or e)}


def diff(old: str, new: str, old_name: str, new_name: str) -> list[tuple[str, str]]:
    """Unified diff as (kind, line) pairs: kind is add, del, hunk or ctx (rendered as text)."""
    out = []
    for line in difflib.unified_diff(old.splitlines(), new.splitlines(), old_name, new_name, lineterm=""):
        if line.startswith(("+++", "---")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        out.append((kind, line))
    return out


@dataclass
class Simulation:
    calls: int = 0
    sessions: int = 0
    days: int = 0
    truncated: bool = False
    changes: Counter[tuple[str, str]] = field(default_factory=Counter)
    newly_blocked: int = 0
    newly_allowed: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)
    errors: int = 0


def _strength(decision: str) -> int:
    return {"ALLOW": 0, "MODIFY": 1, "STEP_UP": 2, "DEFER": 2, "BLOCK": 3}.get(decision, 3)


def simulate(db: Any, tenant_id: str, draft: str, days: int, limit: int = SIMULATION_LIMIT) -> Simulation:
    """Replay the tenant's most recent calls of the last `days` days through the draft, session by
    session in order (so rate and sequence rules see the same history), and compare."""
    engine = _engine()
    policy = engine.compile_policy(draft)
    since = time.time() - days * 86400
    with db.read() as conn:
        rows = conn.all(
            "SELECT session_id, agent_id, user_id, tool_name, tool_args, decision, enforcement_mode, environment,"
            " risk_score, decided_at, violation_id FROM decisions WHERE tenant_id = ? AND decided_at >= ?"
            " ORDER BY decided_at DESC LIMIT ?", (tenant_id, since, limit + 1))
        sim = Simulation(days=days, truncated=len(rows) > limit)
        rows = sorted(rows[:limit], key=lambda r: r[9])
        scopes: dict[str, Any] = {}
        for sid in {r[0] for r in rows}:
            # approved_scope is declared by the client on each event; the session's first one says it.
            e = conn.one("SELECT body FROM events WHERE tenant_id = ? AND session_id = ? ORDER BY chain_index"
                         " LIMIT 1", (tenant_id, sid))
            body = orjson.loads(e[0]) if e else {}
            scopes[sid] = (body.get("approved_scope"), body.get("metadata", {}).get("session_intent")
                           if isinstance(body.get("metadata"), dict) else None)
    histories: dict[str, Any] = {}
    tools_so_far: dict[str, list[str]] = {}
    for sid, agent, user, tool, args_text, stored, mode, env, risk, ts, violation_id in rows:
        args = orjson.loads(args_text) if args_text else {}
        if not isinstance(args, dict):
            args = {"args": args}
        history = histories.setdefault(sid, engine.SessionHistory())
        called = tools_so_far.setdefault(sid, [])
        called.append(tool)
        scope, intent = scopes.get(sid, (None, None))
        call = engine.CallContext(
            tenant_id=tenant_id, agent_id=agent or "", user_id=user or "system", tool_name=tool, tool_args=args,
            approved_scope=scope, enforcement_mode=mode or "block", environment=env or "prod",
            session_intent=intent, risk_score=risk, risk_reasons=[], now=ts, session_tool_calls=list(called))
        try:
            result = policy.evaluate(call, history)
            new = str(getattr(result.decision, "value", result.decision))
        except Exception:  # a draft that crashes on real data must be reported, not raise
            sim.errors += 1
            continue
        history.record(tool, args, ts, new)
        sim.calls += 1
        if new != stored:
            sim.changes[(stored, new)] += 1
            if _strength(new) > _strength(stored) and new in ("BLOCK", "STEP_UP", "DEFER"):
                sim.newly_blocked += 1
            elif _strength(new) < _strength(stored):
                sim.newly_allowed += 1
            if len(sim.examples) < 25:
                sim.examples.append({"session_id": sid, "agent_id": agent, "tool_name": tool, "tool_args": args,
                                     "was": stored, "now": new, "reason": getattr(result, "reason", ""),
                                     "rules": list(getattr(result, "matched_rule_ids", []) or []),
                                     "decided_ts": ts, "violation_id": violation_id})
    sim.sessions = len(histories)
    return sim
