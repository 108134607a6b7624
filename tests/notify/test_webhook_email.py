"""Webhook channel (HMAC-signed, retried, signed callback) and e-mail over SMTP, against local receivers."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.support.notify import Rig
from tests.support.stubs import wait_for


def _delivered(rig: Rig, approval_id: str, event: str) -> dict[str, Any]:
    return wait_for(lambda: next((b for b in rig.hook.verified(event) if b["approval_id"] == approval_id), None))  # type: ignore[no-any-return]


def test_webhook_signed_retried_and_resolved_by_callback(rig: Rig) -> None:
    held = rig.hold(agent="agent-hook", user="erin", args={"path": "/etc/passwd", "note": "<script>x</script>"})
    aid = held["approval_id"]
    body = _delivered(rig, aid, "approval.requested")
    attempts = [r for r in rig.hook.received if r["body"].get("approval_id") == aid]
    # the receiver refused the first two with 503; the third, signed afresh, was accepted
    assert [r["status"] for r in attempts] == [503, 503, 200] and all(r["valid"] for r in attempts)
    assert len({r["delivery"] for r in attempts}) == 1
    assert body["tool_name"] == "delete_repo" and body["agent_id"] == "agent-hook" and body["user_id"] == "erin"
    assert body["tool_args"] == {"path": "/etc/passwd", "note": "<script>x</script>"}
    assert body["callback_url"].endswith("/v1/notify/webhook/hook/callback")
    assert body["session_url"] == f"http://dash.example/sessions/{held['session_id']}"
    note = [n for n in rig.notifications(aid)["items"] if n["channel"] == "hook"][0]
    assert note["status"] == "sent" and note["attempts"] == 3

    forged = rig.callback({"approval_id": aid, "decision": "approve"}, secret="wrong-secret-0123456789")
    assert forged.status_code == 401 and forged.json()["message"] == "invalid signature"
    stale = rig.callback({"approval_id": aid, "decision": "approve"}, ts=int(time.time()) - 3600)
    assert stale.status_code == 401 and "stale" in stale.json()["message"]
    unknown = rig.callback({"approval_id": "apr_nope", "decision": "approve"})
    assert unknown.status_code == 404 and unknown.json()["message"] == "unknown approval"
    bad = rig.callback({"approval_id": aid, "decision": "maybe"})
    assert bad.status_code == 422 and "decision" in bad.json()["message"]
    assert rig.approval(aid)["status"] == "pending"

    raw = json.dumps({"approval_id": aid, "decision": "approve", "actor": "frank", "reason": "ticket OPS-1"}).encode()
    ok = rig.callback({}, raw=raw, ts=int(time.time()))
    assert ok.status_code == 200 and ok.json()["status"] == "approved" and ok.json()["resolved_by"] == "frank"
    replay = rig.callback({}, raw=raw, ts=int(ok.request.headers["x-thoth-signature"].split(",")[0][2:]))
    assert replay.status_code == 409 and "replayed" in replay.json()["message"]
    double = rig.callback({"approval_id": aid, "decision": "deny"})
    assert double.status_code == 409 and double.json()["message"] == "approval is already approved"
    assert rig.approval(aid)["status"] == "approved"
    resolved = _delivered(rig, aid, "approval.resolved")
    assert resolved["status"] == "approved" and resolved["resolved_by"] == "frank"
    with rig.client(rig.sdk_key) as c:
        assert c.get(f"/v1/enforce/hold/{held['hold_token']}").json()["resolution"] == "ALLOW"


def test_unknown_webhook_channel(rig: Rig) -> None:
    r = rig.callback({"approval_id": "x", "decision": "approve"}, channel="nope")
    assert r.status_code == 404 and r.json()["message"] == "unknown webhook channel"


def test_email_notification(rig: Rig) -> None:
    held = rig.hold(agent="agent-mail", tool="drop_table", args={"table": "<b>users</b>", "why": "a" * 3000})
    aid = held["approval_id"]
    rcpt, msg = wait_for(lambda: next(((r, m) for r, m in rig.smtp.messages if aid in m.as_string()), None))
    assert rcpt == ["sec@example.com"] and msg["From"] == "thoth@example.com"
    assert "drop_table" in msg["Subject"] and "agent-mail" in msg["Subject"]
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "<b>users</b>" in text and "&lt;b&gt;users&lt;/b&gt;" in html and "<b>users</b>" not in html
    assert "a" * 400 not in text and f"thoth approvals approve {aid}" in text
    assert "http://dash.example/approvals" in text
    wait_for(lambda: rig.notifications(aid)["items"][0]["status"] == "sent")
