"""`thoth serve --demo` / `thoth demo`: a demo tenant with a real policy and a scripted agent.

Seeds tenant `demo`: a policy pushed as a policy version (as `PUT /v1/policies` would), an SDK
key, an admin key for the script, and a dashboard login. Then a scripted support agent talks to
the running server over HTTP exactly like an SDK client (enforce, then events), so the
dashboard shows what real traffic produces: an allowed session, a blocked one, and step-ups —
one approved, one denied, one left pending in the approvals queue.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from typing import Any

import httpx

from thoth.server import engine
from thoth.server.core import Core

TENANT = "demo"
AGENT = "support-bot"
SCOPE = ["search_docs", "read_ticket", "reply_ticket", "issue_refund"]
DONE_LINE = "Demo sessions recorded"

POLICY = """\
version: 1
name: demo-support
description: What the demo support agent may do on its own, and what needs a human.

tools:
  search_docs:     {tier: low, classification: read}
  read_ticket:     {tier: low, classification: read}
  reply_ticket:    {tier: medium, classification: external}
  issue_refund:    {tier: high, classification: write}
  delete_customer: {tier: critical, classification: delete}

rules:
  - id: demo-never-delete-customers
    description: Agents never delete customer records
    when: {tool: delete_customer}
    action: block
    reason: Deleting customer records is not allowed for agents
    references: ["SOC2 CC6.1"]

  - id: demo-refunds-need-a-human
    description: Every refund is approved by a person
    when: {tool: issue_refund}
    action: step_up
    timeout_seconds: 86400
    reason: Refunds are approved by a person
    references: ["SOC2 CC6.8"]
"""


def seed(core: Core) -> dict[str, Any]:
    """Tenant, policy version, keys and a dashboard login. Safe to run again on the same database."""
    engine.compile_policy(POLICY)  # the demo ships a policy that validates; fail loudly otherwise
    active = core.store.active_policy(TENANT)
    if active is None or active["document"] != POLICY:
        core.store.add_policy_version(TENANT, POLICY, "demo", "demo policy")
        core.forget_policy(TENANT)
    admin = core.store.create_key(TENANT, "admin", "demo script")
    sdk = core.store.create_key(TENANT, "sdk", "demo agent")
    return {"admin_key": admin["key"], "sdk_key": sdk["key"], "login": _dashboard_login(core)}


def _dashboard_login(core: Core) -> tuple[str, str] | None:
    """(username, password) of an admin of tenant demo; the password is new on every demo start."""
    try:
        from thoth.server.dashboard import users
    except ImportError:  # pragma: no cover - the dashboard ships with the server
        return None
    password = secrets.token_urlsafe(12)
    username = "demo"
    existing = users.get_user(core.store.db, username)
    if existing is not None and existing.tenant_id != TENANT:
        username = f"demo-{secrets.token_hex(3)}"
        existing = None
    if existing is None:
        users.create_user(core.store.db, username, password, "admin", TENANT)
    else:
        users.set_password(core.store.db, username, password)
    return username, password


def start_demo(core: Core, url: str) -> None:
    seeded = seed(core)
    print(f"Demo tenant '{TENANT}' seeded with policy 'demo-support'.", flush=True)
    print(f"  Dashboard  {url}/", flush=True)
    if seeded["login"] is not None:
        user, password = seeded["login"]
        print(f"  Login      user {user}  password {password}", flush=True)
    print(f"  SDK key    {seeded['sdk_key']}", flush=True)
    print("  Try it with your own agent:", flush=True)
    print("    import thoth", flush=True)
    print(f'    agent = thoth.instrument(agent, agent_id="my-agent", approved_scope=["search_docs"], '
          f'tenant_id="{TENANT}", api_key="{seeded["sdk_key"]}", api_url="{url}")', flush=True)
    threading.Thread(target=_script, args=(url, seeded["sdk_key"], seeded["admin_key"]), daemon=True,
                     name="thoth-demo").start()


def _script(url: str, sdk_key: str, admin_key: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(300):  # wait until the server answers
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        try:
            _run_sessions(client, sdk_key, admin_key)
        except httpx.HTTPError as exc:
            print(f"demo script stopped: {exc}", flush=True)


class _Session:
    """One agent session, sent like an SDK client: enforce before the call, events after it."""

    def __init__(self, client: httpx.Client, key: str, kind: str) -> None:
        self.client, self.key = client, key
        self.id = f"demo-{kind}-{uuid.uuid4().hex[:8]}"
        self.calls: list[str] = []

    def call(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(tool)
        body = {"tenant_id": TENANT, "agent_id": AGENT, "user_id": "alice", "session_id": self.id,
                "tool_name": tool, "tool_args": args, "approved_scope": SCOPE, "enforcement_mode": "progressive",
                "environment": "prod", "session_tool_calls": list(self.calls)}
        decision: dict[str, Any] = self.client.post("/v1/enforce", json=body,
                                                    headers={"x-api-key": self.key}).json()
        ran = decision.get("decision") == "ALLOW"
        self._event(tool, args, "TOOL_CALL_POST" if ran else "TOOL_CALL_BLOCK", decision)
        return decision

    def _event(self, tool: str, args: dict[str, Any], kind: str, decision: dict[str, Any]) -> None:
        event = {"event_id": f"{TENANT}:{uuid.uuid4()}", "tenant_id": TENANT, "agent_id": AGENT,
                 "session_id": self.id, "user_id": "alice", "source_type": "agent_tool_call", "tool_name": tool,
                 "event_type": kind, "content": f"{tool}({args})", "session_tool_calls": list(self.calls),
                 "metadata": {"decision": decision.get("decision"), "tool_call": {"name": tool, "arguments": args},
                              "violation_id": decision.get("violation_id")},
                 "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.client.post("/v1/events/batch", json=[event], headers={"Authorization": f"Bearer {self.key}"})


def _run_sessions(client: httpx.Client, sdk: str, admin: str) -> None:
    allowed = _Session(client, sdk, "allow")
    allowed.call("search_docs", {"query": "refund policy"})
    allowed.call("read_ticket", {"ticket_id": 4711})
    allowed.call("reply_ticket", {"ticket_id": 4711, "text": "Refunds take 5 days."})

    blocked = _Session(client, sdk, "block")
    blocked.call("read_ticket", {"ticket_id": 4712})
    blocked.call("delete_customer", {"customer_id": "c-981"})

    outcomes = []
    for kind, order, amount, verdict, reason in (
            ("approved", "o-1", 42, "approve", "small refund, customer verified"),
            ("denied", "o-2", 9000, "deny", "amount too high for a support refund"),
            ("pending", "o-3", 250, None, None)):
        session = _Session(client, sdk, f"stepup-{kind}")
        session.call("read_ticket", {"ticket_id": order})
        held = session.call("issue_refund", {"order": order, "amount": amount})
        if verdict is not None:
            _resolve(client, admin, held.get("hold_token"), verdict, reason)
            # The agent's client learns the answer from the hold, as the SDK does.
            client.get(f"/v1/enforce/hold/{held.get('hold_token')}", headers={"x-api-key": sdk})
        outcomes.append(f"{session.id} ({kind})")
    print(f"{DONE_LINE}: {allowed.id} (allow), {blocked.id} (block), step-ups: {', '.join(outcomes)}",
          flush=True)


def _resolve(client: httpx.Client, admin: str, hold_token: Any, verdict: str, reason: str | None) -> None:
    headers = {"Authorization": f"Bearer {admin}"}
    approvals = client.get("/v1/approvals", params={"status": "pending"}, headers=headers).json().get("items", [])
    for approval in approvals:
        if approval.get("hold_token") == hold_token:
            client.post(f"/v1/approvals/{approval['approval_id']}/resolve",
                        json={"decision": verdict, "reason": reason}, headers=headers)
