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


def starter() -> str:
    """What the editor shows for a tenant without a policy: the engine's default, to edit."""
    try:
        from thoth.policy.defaults import DEFAULT_POLICY_YAML
    except ImportError:
        return ""
    return str(DEFAULT_POLICY_YAML)


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
    """Replay the tenant's most recent calls of the last `days` days through the draft (the policy
    engine's own replay: per session, in order, so rate and sequence rules see the same history)
    and compare with what was decided then."""
    engine = _engine()
    from thoth.policy.simulate import simulate as replay

    policy = engine.compile_policy(draft)
    since = time.time() - days * 86400
    with db.read() as conn:
        rows = conn.all(
            "SELECT session_id, agent_id, user_id, tool_name, tool_args, decision, enforcement_mode, environment,"
            " risk_score, decided_at FROM decisions WHERE tenant_id = ? AND decided_at >= ?"
            " ORDER BY decided_at DESC LIMIT ?", (tenant_id, since, limit + 1))
        sim = Simulation(days=days, truncated=len(rows) > limit)
        rows = sorted(rows[:limit], key=lambda r: r[9])
        context: dict[str, tuple[Any, Any]] = {}
        for sid in {r[0] for r in rows}:
            # approved_scope and intent are declared by the client on its events, not stored with
            # the decision: the session's first event says them.
            e = conn.one("SELECT body FROM events WHERE tenant_id = ? AND session_id = ? ORDER BY chain_index"
                         " LIMIT 1", (tenant_id, sid))
            body = orjson.loads(e[0]) if e else {}
            meta = body.get("metadata")
            if not isinstance(meta, dict):
                meta = {}
            context[sid] = (body.get("approved_scope"), meta.get("session_intent"))
    calls = []
    for sid, agent, user, tool, args_text, stored, mode, env, risk, ts in rows:
        args = orjson.loads(args_text) if args_text else {}
        scope, intent = context.get(sid, (None, None))
        calls.append({"tenant_id": tenant_id, "session_id": sid, "agent_id": agent or "", "user_id": user or "system",
                      "tool_name": tool, "tool_args": args if isinstance(args, dict) else {"args": args},
                      "approved_scope": scope, "session_intent": intent, "enforcement_mode": mode or "progressive",
                      "environment": env or "prod", "risk_score": risk, "decision": stored, "ts": ts})
    result = replay(policy, calls, max_items=len(calls) or 1)
    sim.calls = int(result["evaluated"])
    sim.sessions = len(context)
    for item in result["items"]:
        was, now = item["current"], item["candidate"]
        sim.changes[(was, now)] += 1
        if _strength(now) > _strength(was):
            sim.newly_blocked += 1
        elif _strength(now) < _strength(was):
            sim.newly_allowed += 1
        if len(sim.examples) < 25:
            sim.examples.append({"session_id": item["session_id"], "agent_id": item["agent_id"],
                                 "tool_name": item["tool_name"], "was": was, "now": now, "reason": item["reason"],
                                 "rules": list(item.get("matched_rule_ids") or [])})
    return sim
