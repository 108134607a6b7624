"""Slack: the real slack-sdk WebClient against a local Web API stub; signed clicks to our real server."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.support.notify import Rig, slack_headers, slack_payload
from tests.support.stubs import wait_for


def _message_for(rig: Rig, approval_id: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        for call in rig.slack.posted("chat.postMessage"):
            if approval_id in json.dumps(call["body"].get("blocks")):
                return call
        return None
    return wait_for(find)  # type: ignore[no-any-return]


def _update_for(rig: Rig, approval_id: str) -> dict[str, Any]:
    """The chat.update that edited the request message of this approval (same channel and ts)."""
    post = _message_for(rig, approval_id)

    def find() -> dict[str, Any] | None:
        for call in rig.slack.posted("chat.update"):
            if call["body"].get("ts") == post["ts"] and call["body"].get("channel") == post["body"]["channel"]:
                return call
        return None
    return wait_for(find)  # type: ignore[no-any-return]


def _all_text(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


def test_request_message_click_approve_and_outcome(rig: Rig) -> None:
    evil = {"cmd": "<!channel> ```*pwn* <https://evil.example|click me>``` \u202egnp.exe", "blob": "x" * 5000}
    held = rig.hold(tool="delete_repo", agent="agent-1", user="dana", args=evil)
    call = _message_for(rig, held["approval_id"])
    assert call["auth"] == "Bearer xoxb-test-token" and call["body"]["channel"] == "C_REVIEW"
    text = _all_text(call["body"]["blocks"])
    for shown in ("agent-1", "dana", "delete_repo", "Risk score", "Matched rules", "Arguments",
                  "http://dash.example/sessions/" + held["session_id"]):
        assert shown in text
    # attacker-controlled arguments: no live mention, link or code-block escape; invisible chars shown
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert "<https://evil.example" not in text and "\\\\u202e" in text
    assert "x" * 400 not in text, text[text.index("x" * 400) - 300:text.index("x" * 400)]
    assert "(+4700 chars)" in text
    buttons = [b for b in call["body"]["blocks"] if b["type"] == "actions"][0]["elements"]
    assert [(b["action_id"], b.get("value")) for b in buttons[:2]] == [
        ("thoth_approve", held["approval_id"]), ("thoth_deny", held["approval_id"])]

    clicked = rig.click(held["approval_id"], user="U_ALICE")
    assert clicked.status_code == 200, clicked.text
    assert clicked.json()["status"] == "approved" and clicked.json()["resolved_by"] == "alice"
    with rig.client(rig.sdk_key) as c:
        hold = c.get(f"/v1/enforce/hold/{held['hold_token']}").json()
    assert hold["resolved"] is True and hold["resolution"] == "ALLOW" and hold["resolved_by"] == "alice"

    update = _update_for(rig, held["approval_id"])
    assert "Approved by alice" in _all_text(update["body"]["blocks"])
    assert not [b for b in update["body"]["blocks"] if b["type"] == "actions"]

    kinds = [(e["event_type"], e["metadata"].get("delivery_status"), e["metadata"].get("via"))
             for e in rig.timeline(held["session_id"]) if e.get("source_type") == "thoth_approval"]
    assert kinds == [("APPROVAL_REQUESTED", None, None), ("APPROVAL_NOTIFIED", "sent", None),
                     ("APPROVAL_RESOLVED", None, "slack")]
    with rig.client(rig.admin_key) as c:
        assert c.get("/v1/audit/verify").json()["verified"] is True
    sent = rig.notifications(held["approval_id"])["items"]
    assert [(n["kind"], n["status"]) for n in sent] == [("slack", "sent")]
    wait_for(lambda: rig.notifications(held["approval_id"])["items"][0]["outcome_status"] == "sent")


def _unchanged(rig: Rig, approval_id: str, status: str = "pending") -> None:
    a = rig.approval(approval_id)
    assert a["status"] == status, a


def test_forged_stale_replayed_unknown_rejected_without_change(rig: Rig) -> None:
    held = rig.hold()
    aid = held["approval_id"]
    _message_for(rig, aid)

    forged = rig.click(aid, secret="not-the-signing-secret")
    assert forged.status_code == 401 and forged.json()["message"] == "invalid Slack signature"
    _unchanged(rig, aid)

    body = slack_payload(aid, "U_ALICE", "thoth_approve")
    tampered = slack_headers(body)
    import httpx
    r = httpx.post(rig.server.url + "/v1/notify/slack/interactivity", content=body.replace(b"U_ALICE", b"U_BOB__"),
                   headers=tampered)
    assert r.status_code == 401
    _unchanged(rig, aid)

    stale = rig.click(aid, ts=int(time.time()) - 600)
    assert stale.status_code == 401 and "stale" in stale.json()["message"]
    _unchanged(rig, aid)

    missing = httpx.post(rig.server.url + "/v1/notify/slack/interactivity", content=body)
    assert missing.status_code == 401 and "missing" in missing.json()["message"]

    unknown = rig.click("apr_does_not_exist")
    assert unknown.status_code == 404 and unknown.json()["message"] == "unknown approval"

    garbage = rig.click(aid, raw=b"payload=%7Bnot-json")
    assert garbage.status_code == 400 and "payload" in garbage.json()["message"]
    _unchanged(rig, aid)

    # a valid deny, then the exact same signed request again: a replay
    headers = slack_headers(body := slack_payload(aid, "U_BOB", "thoth_deny"))
    first = httpx.post(rig.server.url + "/v1/notify/slack/interactivity", content=body, headers=headers)
    assert first.status_code == 200 and first.json()["status"] == "denied"
    replay = httpx.post(rig.server.url + "/v1/notify/slack/interactivity", content=body, headers=headers)
    assert replay.status_code == 409 and "replayed" in replay.json()["message"]
    _unchanged(rig, aid, "denied")

    # a fresh, correctly signed click on an already decided approval
    double = rig.click(aid, user="U_ALICE")
    assert double.status_code == 409 and double.json()["message"] == "approval is already denied"
    _unchanged(rig, aid, "denied")
    assert rig.approval(aid)["resolved_by"] == "bob"


def test_resolution_after_expiry_rejected(rig: Rig) -> None:
    held = rig.hold()
    aid = held["approval_id"]
    _message_for(rig, aid)
    with rig.server.store.db.transaction() as conn:  # let the clock run out without waiting for it
        conn.execute("UPDATE approvals SET expires_at = ? WHERE approval_id = ?", (time.time() - 1, aid))
    late = rig.click(aid)
    assert late.status_code == 409 and late.json()["message"] == "approval is already expired"
    with rig.client(rig.approver_key) as c:
        api = c.post(f"/v1/approvals/{aid}/resolve", json={"decision": "approve"})
    assert api.status_code == 409 and api.json()["message"] == "approval is already expired"
    _unchanged(rig, aid, "expired")
    with rig.client(rig.sdk_key) as c:
        assert c.get(f"/v1/enforce/hold/{held['hold_token']}").json()["resolution"] == "BLOCK"
    update = _update_for(rig, aid)  # the reconcile loop edits the message
    assert "Expired" in _all_text(update["body"]["blocks"])
    kinds = [e["metadata"].get("status") for e in rig.timeline(held["session_id"])
             if e["event_type"] == "APPROVAL_RESOLVED"]
    assert kinds == ["expired"]


def test_requester_cannot_approve_own_call(rig: Rig) -> None:
    held = rig.hold(user="alice")
    own = rig.click(held["approval_id"], user="U_ALICE")
    assert own.status_code == 403 and "cannot approve" in own.json()["message"]
    _unchanged(rig, held["approval_id"])
    # the admin key that sent the call cannot approve it through the API either
    mine = rig.hold(user="system", key=rig.admin_key)
    with rig.client(rig.admin_key) as c:
        r = c.post(f"/v1/approvals/{mine['approval_id']}/resolve", json={"decision": "approve"})
    assert r.status_code == 403 and "cannot approve" in r.json()["message"]
    _unchanged(rig, mine["approval_id"])
    with rig.client(rig.approver_key) as c:
        ok = c.post(f"/v1/approvals/{mine['approval_id']}/resolve", json={"decision": "approve"})
    assert ok.status_code == 200 and ok.json()["status"] == "approved"


def test_two_person_rule_for_critical_tools(rig: Rig) -> None:
    held = rig.hold(tool="wire_transfer", args={"amount": 1_000_000, "to": "acct-9"})
    aid = held["approval_id"]
    assert held["required_approvals"] == 2
    assert "2 different approvers" in _all_text(_message_for(rig, aid)["body"]["blocks"])
    first = rig.click(aid, user="U_BOB")
    assert first.status_code == 200 and first.json()["status"] == "pending"
    again = rig.click(aid, user="U_BOB")
    assert again.status_code == 409 and "second, different approver" in again.json()["message"]
    _unchanged(rig, aid)
    with rig.client(rig.sdk_key) as c:
        assert c.get(f"/v1/enforce/hold/{held['hold_token']}").json()["resolved"] is False
    second = rig.click(aid, user="U_CAROL")
    assert second.status_code == 200 and second.json()["status"] == "approved"
    assert rig.approval(aid)["resolved_by"] == "bob, carol"
    reviews = rig.notifications(aid)["reviews"]
    assert [(r["reviewer"], r["via"]) for r in reviews] == [("bob", "slack"), ("carol", "slack")]
    kinds = [e["event_type"] for e in rig.timeline(held["session_id"]) if e.get("source_type") == "thoth_approval"]
    assert kinds == ["APPROVAL_REQUESTED", "APPROVAL_NOTIFIED", "APPROVAL_REVIEWED", "APPROVAL_RESOLVED"]


def test_failed_delivery_keeps_hold_pending_and_visible(rig: Rig) -> None:
    held = rig.hold(agent="agent-broken")
    aid = held["approval_id"]
    def delivered() -> list[dict[str, Any]] | None:
        got = rig.notifications(aid)["items"]
        return got if len(got) == 2 and all(n["status"] != "queued" for n in got) else None

    items = wait_for(delivered)
    by_channel = {n["channel"]: n for n in items}
    assert by_channel["broken"]["status"] == "failed" and "channel_not_found" in by_channel["broken"]["error"]
    assert by_channel["deadhook"]["status"] == "failed" and by_channel["deadhook"]["attempts"] == 2
    _unchanged(rig, aid)
    with rig.client(rig.viewer_key) as c:
        failed = c.get("/v1/notifications", params={"status": "failed"}).json()["items"]
        pending = c.get("/v1/approvals", params={"status": "pending"}).json()["items"]
    assert {n["approval_id"] for n in failed} >= {aid}
    assert aid in {a["approval_id"] for a in pending}
    statuses = sorted(e["metadata"]["delivery_status"] for e in rig.timeline(held["session_id"])
                      if e["event_type"] == "APPROVAL_NOTIFIED")
    assert statuses == ["failed", "failed"]
    # the queue still works: an approver resolves it through the API
    with rig.client(rig.approver_key) as c:
        assert c.post(f"/v1/approvals/{aid}/resolve", json={"decision": "deny"}).json()["status"] == "denied"
