"""Audit events as wire.md describes them, built from what the tracer captured on its path.

The tracer records only the moment (`ts`), the names and references it already holds; the dict,
its `event_id` and its ISO-8601 time are made here, by `build_event`, which emitters with
`emit_later(build)` run off the caller's critical path (their event thread, or when the batch is
written). The session history is a `CallsSnapshot`, copied only now.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from typing import Any

from thoth.models import EnforcementDecision, ThothConfig
from thoth.session import CallsSnapshot

SDK_VERSION = "0.2.0"
EVENT_TTL_SECONDS = 90 * 24 * 3600
HOSTNAME = socket.gethostname()


def uuid4() -> str:
    """A random (version 4) UUID from one os.urandom read: uuid.uuid4() does the same work through
    a UUID object, about four times slower. Every id is random on its own (no counter, nothing
    shared between processes, so a fork cannot repeat one); event ids are not secrets, but being
    unguessable keeps one tenant from predicting (and pre-empting, ingestion being idempotent on
    event_id) another's ids."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


_second: tuple[int, str] = (0, "1970-01-01T00:00:00")


def iso_utc(ts: float) -> str:
    """`ts` (epoch seconds) as ISO-8601 UTC with microseconds, e.g. 2026-11-26T09:46:11.042113+00:00.
    The date and time of day are formatted once per second (datetime does it in ~1.5 us)."""
    global _second
    sec = int(ts)
    micro = round((ts - sec) * 1_000_000)  # as datetime rounds it
    if micro == 1_000_000:
        sec, micro = sec + 1, 0
    cached_sec, prefix = _second  # one tuple: threads see a consistent pair
    if sec != cached_sec:
        prefix = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (sec, prefix)
    return f"{prefix}.{micro:06d}+00:00"


def build_event(
    config: ThothConfig,
    session_id: str,
    ts: float,
    event_type: str,
    tool_name: str,
    content: str,
    metadata: dict[str, Any],
    calls: CallsSnapshot,
    decision: EnforcementDecision | None = None,
    violation_id: str | None = None,
    source_type: str = "agent_tool_call",
) -> dict[str, Any]:
    """One event. `decision`, when given, adds its fields to the metadata (decision_meta)."""
    meta = {
        "sdk_language": "python", "sdk_version": SDK_VERSION, "environment": config.environment,
        "enforcement_trace_id": session_id, **metadata,
    }
    if decision is not None:
        meta.update(decision_meta(decision))
    return {
        "event_id": f"{config.tenant_id}:{uuid4()}",
        "tenant_id": config.tenant_id, "agent_id": config.agent_id,
        "session_id": session_id, "user_id": config.user_id,
        "source_type": source_type, "event_type": event_type, "content": content,
        "metadata": meta, "approved_scope": list(config.approved_scope),
        "enforcement_mode": config.enforcement.value,
        "session_tool_calls": calls.to_list(),
        "tool_name": tool_name, "endpoint_id": HOSTNAME, "hostname": HOSTNAME,
        "occurred_at": iso_utc(ts), "ingested_at": None,
        "ttl": int(ts) + EVENT_TTL_SECONDS,
        "violation_id": violation_id,
        "chain_index": None, "hash": None, "previous_hash": None, "signature": None,
    }


def decision_meta(decision: EnforcementDecision) -> dict[str, Any]:
    """The decision fields an event's metadata carries."""
    meta: dict[str, Any] = {
        "decision": decision.decision.value,
        "reason": decision.reason,
        "decision_reason_code": decision.decision_reason_code,
        "violation_id": decision.violation_id,
        "risk_score": decision.risk_score,
        "matched_rule_ids": decision.matched_rule_ids,
    }
    if decision.hold_token:
        meta["hold_token"] = decision.hold_token
    if decision.fail_mode:
        meta["fail_mode"] = decision.fail_mode
    if decision.modification_reason:
        meta["modification_reason"] = decision.modification_reason
    extra = decision.model_extra or {}
    for key in ("would_decision", "policy_decision"):
        if key in extra:
            meta[key] = extra[key]
    return meta
