"""Replay recorded tool calls against a candidate policy and report what would change.

Pure: the caller (the CLI with a JSONL file, or the server with its stored decisions) supplies
the calls. Each call is a /v1/enforce request body, optionally with the decision it got
(`decision`) and its time (`ts`). Calls are replayed per session, in order, through one
SessionHistory per session, exactly as the live engine would have seen them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from thoth.policy.context import CallContext, SessionHistory
from thoth.policy.engine import CompiledPolicy
from thoth.wire import WireError


def simulate(policy: CompiledPolicy, calls: list[dict[str, Any]], *, max_items: int = 100) -> dict[str, Any]:
    histories: dict[str, SessionHistory] = {}
    counts: Counter[str] = Counter()
    changed: list[dict[str, Any]] = []
    n_changed = 0
    for body in calls:
        if not isinstance(body, dict) or not isinstance(body.get("tool_name"), str):
            continue
        ts = body.get("ts")
        try:
            call = CallContext.from_request(body, risk_score=_float(body.get("risk_score")),
                                            now=ts if isinstance(ts, int | float) else None)
        except WireError:  # a record the server would have refused (422) decides nothing
            continue
        session = str(body.get("session_id") or "")
        history = histories.get(session)
        if history is None:
            history = histories[session] = policy.new_history()
        decision = policy.evaluate(call, history)
        history.record(call.tool_name, call.tool_args, call.now, decision)
        verdict = decision.decision.value
        counts[verdict] += 1
        before = body.get("decision")
        if isinstance(before, str) and before.upper() != verdict:
            n_changed += 1
            if len(changed) < max_items:
                changed.append({"session_id": session, "tool_name": call.tool_name, "agent_id": call.agent_id,
                                "current": before.upper(), "candidate": verdict, "reason": decision.reason,
                                "matched_rule_ids": decision.matched_rule_ids})
    return {"evaluated": sum(counts.values()), "decisions": dict(counts), "changed": n_changed, "items": changed}


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def calls_from_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Enforce requests rebuilt from TOOL_CALL_PRE audit events (what the SDK records), with the
    decision taken from the following TOOL_CALL_BLOCK/POST event of the same call when present."""
    calls: list[dict[str, Any]] = []
    for event in events:
        if not isinstance(event, dict) or event.get("event_type") != "TOOL_CALL_PRE":
            continue
        meta: dict[str, Any] = event["metadata"] if isinstance(event.get("metadata"), dict) else {}
        tool_call: dict[str, Any] = meta["tool_call"] if isinstance(meta.get("tool_call"), dict) else {}
        calls.append({
            "tool_name": event.get("tool_name") or tool_call.get("name"),
            "agent_id": event.get("agent_id"), "tenant_id": event.get("tenant_id"),
            "user_id": event.get("user_id"), "session_id": event.get("session_id"),
            "approved_scope": event.get("approved_scope"), "enforcement_mode": event.get("enforcement_mode"),
            "environment": meta.get("environment", "prod"), "session_intent": meta.get("session_intent"),
            "tool_args": tool_call.get("arguments") if isinstance(tool_call.get("arguments"), dict) else {},
        })
    return calls
