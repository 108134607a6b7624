"""One real `thoth serve` (SQLite) wired to a Slack stub, a webhook receiver and an SMTP sink."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from tests.notify.stubs import SlackStub, SmtpSink, WebhookReceiver, closed_port
from tests.support.server import Server, start_server, stop_server

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


@pytest.fixture(scope="session")
def rig_parts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, SlackStub, WebhookReceiver,
                                                                           SmtpSink]]:
    slack = SlackStub(fail_channels=("C_FAIL",))
    hook = WebhookReceiver(HOOK_SECRET, fail_first=2)
    smtp = SmtpSink()
    home = Path(tmp_path_factory.mktemp("approvals-home"))
    (home / "notify.yaml").write_text(notify_yaml(slack, hook, smtp))
    env = {"TEST_SLACK_BOT_TOKEN": "xoxb-test-token", "TEST_SLACK_SIGNING_SECRET": SLACK_SECRET,
           "TEST_HOOK_SECRET": HOOK_SECRET, "THOTH_HOLD_TIMEOUT_SECONDS": "60"}
    server = start_server(f"sqlite:///{home / 'thoth.db'}", home, env)
    yield server, slack, hook, smtp
    stop_server(server)
    slack.close()
    hook.close()
    smtp.close()


@pytest.fixture
def rig(rig_parts: tuple[Server, SlackStub, WebhookReceiver, SmtpSink]) -> Rig:
    return Rig(*rig_parts)
