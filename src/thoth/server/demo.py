"""`thoth serve --demo`: a demo tenant, keys and a scripted agent's sessions (allow, block, step-up).

The script talks to the running server over HTTP exactly like an SDK would, so what the
dashboard shows afterwards is what real traffic produces.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx

from thoth.server.core import Core

TENANT = "demo"
AGENT = "support-bot"
SCOPE = ["search_docs", "read_ticket", "reply_ticket"]


def start_demo(core: Core, url: str) -> None:
    admin = core.store.create_key(TENANT, "admin", "demo admin (dashboard login)")
    sdk = core.store.create_key(TENANT, "sdk", "demo agent")
    print("Demo tenant 'demo' seeded. Dashboard and API login (admin key):", flush=True)
    print(f"  {admin['key']}", flush=True)
    print(f"  SDK key for your own agent: {sdk['key']}   THOTH_API_URL={url}", flush=True)
    threading.Thread(target=_script, args=(url, sdk["key"], admin["key"]), daemon=True, name="thoth-demo").start()


def _script(url: str, sdk_key: str, admin_key: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(100):  # wait until the server answers
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        try:
            _run_sessions(client, sdk_key, admin_key)
        except httpx.HTTPError as exc:
            print(f"demo script stopped: {exc}", flush=True)


def _call(client: httpx.Client, key: str, session: str, tool: str, args: dict[str, Any], mode: str,
          history: list[str]) -> dict[str, Any]:
    history.append(tool)
    body = {"tenant_id": TENANT, "agent_id": AGENT, "user_id": "alice", "session_id": session, "tool_name": tool,
            "tool_args": args, "approved_scope": SCOPE, "enforcement_mode": mode, "environment": "prod",
            "session_tool_calls": list(history)}
    decision: dict[str, Any] = client.post("/v1/enforce", json=body, headers={"x-api-key": key}).json()
    events = [{"event_id": f"{TENANT}:{uuid.uuid4()}", "tenant_id": TENANT, "agent_id": AGENT, "session_id": session,
               "user_id": "alice", "source_type": "agent_tool_call", "tool_name": tool,
               "event_type": "TOOL_CALL_POST" if decision.get("decision") == "ALLOW" else "TOOL_CALL_BLOCK",
               "content": f"{tool}({args})", "metadata": {"decision": decision.get("decision"),
                                                          "tool_call": {"name": tool, "arguments": args}},
               "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]
    client.post("/v1/events/batch", json=events, headers={"Authorization": f"Bearer {key}"})
    return decision


def _run_sessions(client: httpx.Client, sdk: str, admin: str) -> None:
    h1: list[str] = []
    s1 = f"demo-allow-{uuid.uuid4().hex[:8]}"
    _call(client, sdk, s1, "search_docs", {"query": "refund policy"}, "progressive", h1)
    _call(client, sdk, s1, "read_ticket", {"ticket_id": 4711}, "progressive", h1)
    _call(client, sdk, s1, "reply_ticket", {"ticket_id": 4711, "text": "Refunds take 5 days."}, "progressive", h1)

    h2: list[str] = []
    s2 = f"demo-block-{uuid.uuid4().hex[:8]}"
    _call(client, sdk, s2, "read_ticket", {"ticket_id": 4712}, "block", h2)
    _call(client, sdk, s2, "delete_customer", {"customer_id": "c-981"}, "block", h2)

    h3: list[str] = []
    s3 = f"demo-stepup-{uuid.uuid4().hex[:8]}"
    first = _call(client, sdk, s3, "issue_refund", {"order": "o-1", "amount": 420}, "step_up", h3)
    second = _call(client, sdk, s3, "issue_refund", {"order": "o-2", "amount": 9000}, "step_up", h3)
    approvals = client.get("/v1/approvals", params={"status": "pending"},
                           headers={"Authorization": f"Bearer {admin}"}).json().get("items", [])
    for approval in approvals:
        if approval.get("hold_token") == first.get("hold_token"):
            client.post(f"/v1/approvals/{approval['approval_id']}/resolve",
                        json={"decision": "approve", "reason": "small refund, customer verified"},
                        headers={"Authorization": f"Bearer {admin}"})
    print(f"Demo sessions recorded: {s1} (allow), {s2} (block), {s3} (step-up: one approved, "
          f"one pending: {second.get('hold_token')})", flush=True)
