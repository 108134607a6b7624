"""Rules of the approval loop that every resolution path shares (API, CLI, Slack, webhook, dashboard).

Pure functions, no I/O: `thoth.server.store` calls them inside its resolve transaction.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

SOURCE_TYPE = "thoth_approval"


def requester_identities(approval: dict[str, Any]) -> set[str]:
    """Identities that made the held call: its user and the API key that sent it."""
    ids: set[str] = set()
    user = approval.get("user_id")
    if user and user != "system":  # the SDK's default user names nobody in particular
        ids.update({user, f"user:{user}"})
    key_id = approval.get("requested_by")
    if key_id:
        ids.add(f"key:{key_id}")
    return ids


def is_self_approval(approval: dict[str, Any], resolver: str) -> bool:
    return resolver in requester_identities(approval)


def approval_event(kind: str, approval: dict[str, Any], ts: float, **metadata: Any) -> dict[str, Any]:
    """An audit-chain event of the approval loop (APPROVAL_REQUESTED, _NOTIFIED, _REVIEWED, _RESOLVED).

    It goes into the tenant's hash chain next to the SDK's events, so it shows in the session
    timeline and `thoth audit verify` covers it.
    """
    tenant = approval["tenant_id"]
    meta = {"approval_id": approval["approval_id"], "hold_token": approval.get("hold_token"),
            "args_digest": approval.get("args_digest"), "violation_id": approval.get("violation_id"),
            "event_phase": kind.lower()}
    meta.update(metadata)
    return {
        "event_id": f"{tenant}:{uuid.uuid4()}",
        "tenant_id": tenant,
        "agent_id": approval.get("agent_id"),
        "session_id": approval.get("session_id"),
        "user_id": approval.get("user_id"),
        "source_type": SOURCE_TYPE,
        "event_type": kind,
        "tool_name": approval.get("tool_name"),
        "occurred_at": datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z"),
        "content": _content(kind, approval, meta),
        "metadata": meta,
        "violation_id": approval.get("violation_id"),
    }


def _content(kind: str, approval: dict[str, Any], meta: dict[str, Any]) -> str:
    tool = approval.get("tool_name")
    if kind == "APPROVAL_REQUESTED":
        return f"approval requested for {tool}"
    if kind == "APPROVAL_NOTIFIED":
        return f"{meta.get('channel')} ({meta.get('channel_kind')}): {meta.get('delivery_status')}"
    if kind == "APPROVAL_REVIEWED":
        return f"{tool} approved by {meta.get('reviewer')} ({meta.get('approvals_received')} of " \
               f"{meta.get('approvals_required')})"
    return f"{tool} {meta.get('status')} by {meta.get('resolved_by')}"
