"""Replay a tenant's recent sessions through a draft policy: what would it decide differently?

Serves `POST /v1/policies/simulate` (the CLI's `thoth policy simulate`) and the dashboard's
simulate button. The cost is bounded: only sessions active in the last `days` days, the most
recent `max_sessions` of them, and at most `max_calls` calls in all. Whole sessions are replayed,
oldest call first, so history conditions and the progressive ladder see what they saw live.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import orjson

DEFAULT_DAYS = 7
MAX_DAYS = 90
DEFAULT_SESSIONS = 500
MAX_SESSIONS = 5_000
DEFAULT_CALLS = 20_000
MAX_CALLS = 50_000
DEFAULT_ITEMS = 50

_STRENGTH = {"ALLOW": 0, "MODIFY": 1, "STEP_UP": 2, "DEFER": 2, "BLOCK": 3}


def recent_calls(db: Any, tenant_id: str, days: int, max_sessions: int, max_calls: int,
                 now: float | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The enforce requests of the tenant's most recent sessions, oldest first, each with the
    decision it got (`decision`) and its time (`ts`); and what was covered."""
    since = (now or time.time()) - days * 86400
    calls: list[dict[str, Any]] = []
    sessions = 0
    truncated = False
    with db.read() as conn:
        ids = conn.all("SELECT session_id FROM sessions WHERE tenant_id = ? AND last_event_at >= ?"
                       " ORDER BY last_event_at DESC LIMIT ?", (tenant_id, since, max_sessions + 1))
        if len(ids) > max_sessions:
            truncated, ids = True, ids[:max_sessions]
        for (sid,) in ids:
            room = max_calls - len(calls)
            rows = conn.all("SELECT agent_id, user_id, tool_name, tool_args, decision, would_decision, reason_code,"
                            " enforcement_mode, environment, risk_score, decided_at FROM decisions"
                            " WHERE tenant_id = ? AND session_id = ? ORDER BY decided_at LIMIT ?",
                            (tenant_id, sid, room + 1))
            if not rows:
                continue  # a session known only from its events: nothing was decided
            if len(rows) > room:
                truncated = True
                break
            # approved_scope and intent are declared by the client on its events, not stored with
            # the decision: the session's first event says them.
            first = conn.one("SELECT body FROM events WHERE tenant_id = ? AND session_id = ?"
                             " ORDER BY chain_index LIMIT 1", (tenant_id, sid))
            event = orjson.loads(first[0]) if first else {}
            meta = event.get("metadata")
            if not isinstance(meta, dict):
                meta = {}
            scope, intent = event.get("approved_scope"), meta.get("session_intent")
            sessions += 1
            for agent, user, tool, args_text, decision, would, code, mode, env, risk, ts in rows:
                args = orjson.loads(args_text) if args_text else {}
                # An approved hold's re-check is stored as ALLOW; the policy itself said `would`.
                current = would if code == "step_up_approved" and would else decision
                calls.append({"tenant_id": tenant_id, "session_id": sid, "agent_id": agent or "",
                              "user_id": user or "system", "tool_name": tool,
                              "tool_args": args if isinstance(args, dict) else {"args": args},
                              "approved_scope": scope, "session_intent": intent,
                              "enforcement_mode": mode or "progressive", "environment": env or "prod",
                              "risk_score": risk, "decision": current, "ts": ts})
    calls.sort(key=lambda c: c["ts"])
    return calls, {"days": days, "sessions": sessions, "truncated": truncated}


def run(db: Any, tenant_id: str, policy: Any, *, days: int = DEFAULT_DAYS, max_sessions: int = DEFAULT_SESSIONS,
        max_calls: int = DEFAULT_CALLS, max_items: int = DEFAULT_ITEMS) -> dict[str, Any]:
    """The contract of docs/policy.md (evaluated, decisions, changed, items) plus the window
    covered and the direction of the changes: newly_blocked (stricter), newly_allowed."""
    from thoth.policy.simulate import simulate

    calls, window = recent_calls(db, tenant_id, days, max_sessions, max_calls)
    result = simulate(policy, calls, max_items=len(calls) or 1)
    changes: Counter[tuple[str, str]] = Counter()
    stricter = lenient = 0
    for item in result["items"]:
        was, now = item["current"], item["candidate"]
        changes[(was, now)] += 1
        if _STRENGTH.get(now, 3) > _STRENGTH.get(was, 3):
            stricter += 1
        elif _STRENGTH.get(now, 3) < _STRENGTH.get(was, 3):
            lenient += 1
    # The examples people read first: calls the draft would stop, then the rest.
    items = sorted(result["items"], key=lambda i: _STRENGTH.get(i["current"], 3) - _STRENGTH.get(i["candidate"], 3))
    return {**window, "evaluated": result["evaluated"], "decisions": result["decisions"],
            "changed": result["changed"], "newly_blocked": stricter, "newly_allowed": lenient,
            "changes": [{"current": was, "candidate": now, "count": n} for (was, now), n in changes.most_common()],
            "summary": summary(stricter, lenient, result["evaluated"], window),
            "items": items[:max_items]}


def summary(stricter: int, lenient: int, evaluated: int, window: dict[str, Any]) -> str:
    scope = f"{evaluated} calls in {window['sessions']} sessions of the last {window['days']} days"
    if window["truncated"]:
        scope += " (the most recent only)"
    if not stricter and not lenient:
        return f"this draft would decide all {scope} the same way"
    parts = []
    if stricter:
        parts.append(f"would have blocked or held {stricter} more call{'s' if stricter != 1 else ''}")
    if lenient:
        parts.append(f"would have let {lenient} more call{'s' if lenient != 1 else ''} through")
    return f"this draft {' and '.join(parts)} (of {scope})"
