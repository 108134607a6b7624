"""Request bodies the server tests send: an enforce call, an event, a held e-mail, and the
policy that holds it."""

from __future__ import annotations

import uuid
from typing import Any


def call(tenant_id: str, tool: str = "search", mode: str = "block", session: str | None = None,
         **extra: Any) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "agent_id": "agent-1", "tool_name": tool, "session_id": session or str(uuid.uuid4()),
            "approved_scope": ["search", "read"], "enforcement_mode": mode, "session_tool_calls": [tool],
            "tool_args": {"q": "x"}, **extra}


def event(t: str, session: str = "s1", **extra: Any) -> dict[str, Any]:
    return {"event_id": f"{t}:{uuid.uuid4()}", "tenant_id": t, "agent_id": "a1", "session_id": session,
            "user_id": "u", "source_type": "agent_tool_call", "event_type": "TOOL_CALL_PRE", "tool_name": "search",
            "content": "search(q)", "metadata": {"tool_call": {"name": "search", "arguments": {"q": 1}}},
            "occurred_at": "2026-11-26T08:00:00Z", "chain_index": None, "hash": "", "previous_hash": "",
            "signature": "", **extra}


MAIL_STEP_UP_POLICY = """
version: 1
tools:
  send_email: {tier: medium, classification: external}
  search: {tier: low, classification: read}
rules:
  - id: ext-mail
    description: external mail needs a human
    when: {tool: send_email}
    action: step_up
    timeout_seconds: 120
    reason: external mail needs a human
"""


def mail(t: str, session: str, to: str = "bob@example.org", **extra: Any) -> dict[str, Any]:
    return {"tenant_id": t, "agent_id": "mailer", "session_id": session, "tool_name": "send_email",
            "tool_args": {"to": to, "body": "hi"}, "approved_scope": ["send_email", "search"],
            "enforcement_mode": "progressive", **extra}
