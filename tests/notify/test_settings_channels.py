"""Channels configured on the dashboard's Settings page reach the notifier: a webhook, e-mail
recipients and a Slack reviewer with the tenant's own bot token, routed per agent; notify.yaml
still serves tenants without Settings channels; secrets are never shown back."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.dashboard import Server, csrf_of, start, stop
from tests.support.fixtures import database_url  # noqa: F401  (a fixture)
from tests.support.notify import slack_headers, slack_payload
from tests.support.stubs import SlackStub, SmtpSink, WebhookReceiver, wait_for

HOOK_SECRET = "settings-hook-secret-0123456789"
FILE_SECRET = "file-hook-secret-0123456789abcd"
SLACK_SIGNING = "tenant-signing-secret-abcdef0123456789"


class Rig:
    def __init__(self, server: Server, hook: WebhookReceiver, file_hook: WebhookReceiver, smtp: SmtpSink,
                 slack: SlackStub) -> None:
        self.server, self.hook, self.file_hook, self.smtp, self.slack = server, hook, file_hook, smtp, slack

    def hold(self, agent: str, tenant: str = "default") -> dict[str, Any]:
        body = {"tenant_id": tenant, "agent_id": agent, "user_id": "dana", "tool_name": "drop_table",
                "session_id": str(uuid.uuid4()), "approved_scope": ["search"], "enforcement_mode": "step_up",
                "tool_args": {"table": "users"}}
        r = httpx.post(self.server.url + "/v1/enforce", json=body,
                       headers={"x-api-key": self.server.key("sdk", tenant)}).json()
        assert r["decision"] == "STEP_UP", r
        items = httpx.get(self.server.url + "/v1/approvals", params={"status": "pending"},
                          headers={"x-api-key": self.server.key("admin", tenant)}).json()["items"]
        return dict(next(a for a in items if a["hold_token"] == r["hold_token"]))

    def status(self, approval_id: str) -> str:
        r = httpx.get(f"{self.server.url}/v1/approvals/{approval_id}", headers={"x-api-key": self.server.key("admin")})
        return str(r.json()["status"])


__all__ = ["database_url"]  # the fixture: SQLite and PostgreSQL


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, database_url: str | None) -> Iterator[Rig]:
    hook, file_hook = WebhookReceiver(HOOK_SECRET), WebhookReceiver(FILE_SECRET)
    smtp, slack = SmtpSink(), SlackStub()
    home = Path(tmp_path_factory.mktemp("settings-channels"))
    # The file: a webhook for every tenant, the SMTP server for Settings' e-mail channels, Slack's API.
    (home / "notify.yaml").write_text(f"""
dashboard_url: http://dash.example/
slack: {{base_url: "{slack.base_url}"}}
email: {{host: 127.0.0.1, port: {smtp.port}, from: thoth@example.com}}
channels:
  filehook: {{type: webhook, url: "{file_hook.url}", secret: "{FILE_SECRET}"}}
routes:
  - channels: [filehook]
""")
    server = start(home, {"THOTH_HOLD_TIMEOUT_SECONDS": "120", "TENANT_SLACK_TOKEN": "xoxb-test-token",
                          "TENANT_SLACK_SIGNING": SLACK_SIGNING}, database_url)
    yield Rig(server, hook, file_hook, smtp, slack)
    stop(server)
    for s in (hook, file_hook, smtp, slack):
        s.close()


def add_channel(c: httpx.Client, **fields: str) -> httpx.Response:
    token = csrf_of(c.get("/settings").text)
    return c.post("/settings/channels", data={**fields, "csrf_token": token})


def test_settings_channels_drive_the_notifier(rig: Rig) -> None:
    admin = rig.server.login()
    short = add_channel(admin, kind="webhook", target=rig.hook.url, secret="short")
    assert short.status_code == 422 and "signing secret" in short.text
    assert add_channel(admin, kind="webhook", target=rig.hook.url, secret=HOOK_SECRET).status_code == 200
    assert add_channel(admin, kind="email", target="sec@example.com, ops@example.com", agent="mailer").status_code == 200
    page = add_channel(admin, kind="slack", target="U0REVIEWER1", agent="slacker", bot_token="env:TENANT_SLACK_TOKEN",
                       signing_secret="env:TENANT_SLACK_SIGNING")
    assert page.status_code == 200
    # Secrets are written once: the page says they are set, never what they are.
    settings = admin.get("/settings").text
    assert HOOK_SECRET not in settings and "TENANT_SLACK_TOKEN" not in settings and "secret set" in settings
    assert "bot_token set" in settings and "mailer" in settings
    (hook_id,) = re.findall(r'/settings/channels/([0-9a-f]+)/delete', page.text)[:1]

    # Tenant-wide: the Settings webhook, signed with its secret; notify.yaml's route is not used.
    held = rig.hold("ops-bot")
    aid = held["approval_id"]
    body = wait_for(lambda: next((b for b in rig.hook.verified("approval.requested") if b["approval_id"] == aid), None))
    assert body["tool_name"] == "drop_table" and body["agent_id"] == "ops-bot" and body["tool_args"] == {"table": "users"}
    assert body["callback_url"].endswith(f"/v1/notify/webhook/tenant-{hook_id}/callback")
    assert not [b for b in rig.file_hook.received if b["body"].get("approval_id") == aid]
    # Its signed callback resolves the approval.
    raw = json.dumps({"approval_id": aid, "decision": "approve", "actor": "frank"}).encode()
    ts = int(time.time())
    mac = hmac.new(HOOK_SECRET.encode(), f"{ts}.".encode() + raw, hashlib.sha256).hexdigest()
    r = httpx.post(f"{rig.server.url}/v1/notify/webhook/tenant-{hook_id}/callback", content=raw,
                   headers={"content-type": "application/json", "x-thoth-signature": f"t={ts},v1={mac}"})
    assert r.status_code == 200 and r.json()["status"] == "approved" and r.json()["resolved_by"] == "frank"
    forged = hmac.new(b"not-the-secret-0123456789", f"{ts}.".encode() + raw, hashlib.sha256).hexdigest()
    r = httpx.post(f"{rig.server.url}/v1/notify/webhook/tenant-{hook_id}/callback", content=raw,
                   headers={"content-type": "application/json", "x-thoth-signature": f"t={ts},v1={forged}"})
    assert r.status_code == 401

    # An agent's own channel wins over the tenant-wide one: e-mail to both recipients, no webhook.
    mailed = rig.hold("mailer")["approval_id"]
    rcpt, msg = wait_for(lambda: next(((r, m) for r, m in rig.smtp.messages if mailed in m.as_string()), None))
    assert sorted(rcpt) == ["ops@example.com", "sec@example.com"] and msg["From"] == "thoth@example.com"
    time.sleep(0.5)
    assert not [b for b in rig.hook.received if b["body"].get("approval_id") == mailed]

    # Slack: a DM to the reviewer with the tenant's bot token; a click signed with the tenant's
    # signing secret resolves it.
    sent = rig.hold("slacker")["approval_id"]
    post = wait_for(lambda: next((c for c in rig.slack.posted("chat.postMessage") if sent in json.dumps(c["body"])),
                                 None))
    assert post["body"]["channel"] == "U0REVIEWER1" and post["auth"] == "Bearer xoxb-test-token"
    click = slack_payload(sent, "U_ALICE", "thoth_approve")
    assert httpx.post(rig.server.url + "/v1/notify/slack/interactivity", content=click,
                      headers=slack_headers(click, secret="a-wrong-signing-secret-000000")).status_code == 401
    r = httpx.post(rig.server.url + "/v1/notify/slack/interactivity", content=click,
                   headers=slack_headers(click, secret=SLACK_SIGNING))
    assert r.status_code == 200 and r.json()["status"] == "approved"
    wait_for(lambda: rig.slack.posted("chat.update"))

    # Another tenant has no Settings channels: notify.yaml's route still delivers.
    other = rig.hold("ops-bot", tenant="acme")["approval_id"]
    wait_for(lambda: next((b for b in rig.file_hook.verified("approval.requested") if b["approval_id"] == other),
                          None))
    # Deliveries are recorded under the Settings channel's name.
    items = httpx.get(f"{rig.server.url}/v1/approvals/{aid}/notifications",
                      headers={"x-api-key": rig.server.key("admin")}).json()["items"]
    assert [(n["channel"], n["status"]) for n in items] == [(f"tenant-{hook_id}", "sent")]
