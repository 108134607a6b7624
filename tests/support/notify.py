"""The notify rig: a real `thoth serve` wired to a Slack stub, a webhook receiver and an SMTP sink
(the fixtures that build it are in tests/notify/conftest.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx

from thoth.instrumentor import build_tracer

from .server import Server
from .stubs import SlackStub, SmtpSink, WebhookReceiver, closed_port, wait_for

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
HOOK_SECRET = "whsec-test-0123456789abcdef"


def notify_yaml(slack: SlackStub, hook: WebhookReceiver, smtp: SmtpSink) -> str:
    return f"""
dashboard_url: http://dash.example/
slack:
  bot_token: env:TEST_SLACK_BOT_TOKEN
  signing_secret: env:TEST_SLACK_SIGNING_SECRET
  base_url: {slack.base_url}
  users: {{U_ALICE: alice, U_BOB: bob, U_CAROL: carol}}
channels:
  reviewers: {{type: slack, channel: C_REVIEW}}
  broken: {{type: slack, channel: C_FAIL}}
  hook: {{type: webhook, url: "{hook.url}", secret: env:TEST_HOOK_SECRET, max_attempts: 4, backoff_seconds: 0.05}}
  deadhook: {{type: webhook, url: "http://127.0.0.1:{closed_port()}/", secret: env:TEST_HOOK_SECRET,
              max_attempts: 2, backoff_seconds: 0.05, timeout_seconds: 1}}
  mail: {{type: email, host: 127.0.0.1, port: {smtp.port}, from: thoth@example.com, to: [sec@example.com]}}
routes:
  - channels: [reviewers]
  - agent: agent-broken
    channels: [broken, deadhook]
  - agent: agent-hook
    channels: [hook]
  - agent: agent-mail
    channels: [mail]
two_person:
  - tools: ["wire_*"]
"""


class Rig:
    def __init__(self, server: Server, slack: SlackStub, hook: WebhookReceiver, smtp: SmtpSink) -> None:
        self.server = server
        self.slack = slack
        self.hook = hook
        self.smtp = smtp
        self.tenant = f"t-{uuid.uuid4().hex[:8]}"
        self.sdk_key = server.key(self.tenant, "sdk")
        self.approver_key = server.key(self.tenant, "approver")
        self.admin_key = server.key(self.tenant, "admin")
        self.viewer_key = server.key(self.tenant, "viewer")

    def client(self, key: str | None = None) -> httpx.Client:
        return self.server.client(key)

    def hold(self, tool: str = "delete_repo", agent: str = "agent-1", user: str = "dana",
             args: Any = None, key: str | None = None) -> dict[str, Any]:
        body = {"tenant_id": self.tenant, "agent_id": agent, "user_id": user, "tool_name": tool,
                "session_id": str(uuid.uuid4()), "approved_scope": ["search"], "enforcement_mode": "step_up",
                "session_tool_calls": [tool], "tool_args": {"repo": "acme/prod"} if args is None else args}
        with self.client(key or self.sdk_key) as c:
            r = c.post("/v1/enforce", json=body).json()
        assert r["decision"] == "STEP_UP", r
        with self.client(self.admin_key) as c:
            items = c.get("/v1/approvals", params={"status": "pending"}).json()["items"]
        approval = next(a for a in items if a["hold_token"] == r["hold_token"])
        return {**approval, "envelope": r, "body": body}

    def approval(self, approval_id: str) -> dict[str, Any]:
        with self.client(self.admin_key) as c:
            return dict(c.get(f"/v1/approvals/{approval_id}").json())

    def notifications(self, approval_id: str) -> dict[str, Any]:
        with self.client(self.admin_key) as c:
            return dict(c.get(f"/v1/approvals/{approval_id}/notifications").json())

    def timeline(self, session_id: str) -> list[dict[str, Any]]:
        with self.client(self.admin_key) as c:
            return list(c.get(f"/v1/sessions/{session_id}").json()["events"])

    def click(self, approval_id: str, user: str = "U_ALICE", action: str = "thoth_approve",
              ts: int | None = None, secret: str = SLACK_SECRET, raw: bytes | None = None) -> httpx.Response:
        body = raw if raw is not None else slack_payload(approval_id, user, action)
        headers = slack_headers(body, ts, secret)
        return httpx.post(self.server.url + "/v1/notify/slack/interactivity", content=body, headers=headers)

    def callback(self, body: dict[str, Any], secret: str = HOOK_SECRET, channel: str = "hook",
                 raw: bytes | None = None, ts: int | None = None) -> httpx.Response:
        data = raw if raw is not None else json.dumps(body).encode()
        ts = int(time.time()) if ts is None else ts
        mac = hmac.new(secret.encode(), f"{ts}.".encode() + data, hashlib.sha256).hexdigest()
        return httpx.post(f"{self.server.url}/v1/notify/webhook/{channel}/callback", content=data,
                          headers={"content-type": "application/json", "x-thoth-signature": f"t={ts},v1={mac}"})


def slack_payload(approval_id: str, user: str, action: str) -> bytes:
    payload = {"type": "block_actions", "user": {"id": user, "username": user.lower()}, "team": {"id": "T1"},
               "container": {"type": "message", "channel_id": "C_REVIEW"},
               "actions": [{"action_id": action, "value": approval_id, "type": "button",
                            "block_id": f"thoth:{approval_id}", "action_ts": str(time.time())}],
               "trigger_id": uuid.uuid4().hex}
    return urlencode({"payload": json.dumps(payload)}).encode()


def slack_headers(body: bytes, ts: int | None = None, secret: str = SLACK_SECRET) -> dict[str, str]:
    """Slack's v0 signing, written from Slack's documentation (not with our module)."""
    stamp = str(int(time.time()) if ts is None else ts)
    sig = "v0=" + hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"content-type": "application/x-www-form-urlencoded", "x-slack-request-timestamp": stamp,
            "x-slack-signature": sig}


def held_call_latency(rig: Rig, resolve: Any) -> float:
    """Seconds from `resolve(approval_id)` (an approver's click) to the held tool running in a real
    SDK agent (bench/bench_approval_latency.py repeats it)."""
    agent = f"agent-lat-{uuid.uuid4().hex[:6]}"
    tracer = build_tracer(agent_id=agent, approved_scope=["search"], tenant_id=rig.tenant, user_id="dana",
                          enforcement="step_up", api_key=rig.sdk_key, api_url=rig.server.url,
                          step_up_poll_interval_seconds=30, step_up_timeout_minutes=1)
    ran: dict[str, Any] = {}

    def tool(repo: str) -> str:
        ran["at"] = time.perf_counter()
        return f"deleted {repo}"

    def agent_thread() -> None:
        try:
            ran["result"] = tracer.run("delete_repo", tool, (), {"repo": "acme/prod"})
        except Exception as exc:  # surfaced by the assertions below
            ran["error"] = exc

    worker = threading.Thread(target=agent_thread)
    worker.start()
    post = wait_for(lambda: next((c for c in rig.slack.posted("chat.postMessage")
                                  if agent in json.dumps(c["body"]["blocks"])), None))
    approval_id = next(b for b in post["body"]["blocks"] if b["type"] == "actions")["elements"][0]["value"]
    time.sleep(0.3)  # the SDK is now inside its long-poll
    clicked = time.perf_counter()
    resolve(approval_id)
    worker.join(timeout=10)
    assert not worker.is_alive(), "the tool did not run: the long-poll did not wake on the approval"
    assert "error" not in ran, ran.get("error")
    assert ran["result"] == "deleted acme/prod"
    return float(ran["at"] - clicked)
