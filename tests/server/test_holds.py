"""A hold is bound to one exact call: tool, arguments digest, agent and session."""

from __future__ import annotations

import time
import uuid
from typing import Any

from tests.support.bodies import MAIL_STEP_UP_POLICY as POLICY
from tests.support.bodies import mail
from tests.support.server import Server, tenant


def pending(admin: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = admin.get("/v1/approvals", params={"status": "pending"}).json()["items"]
    return items


def test_rule_timeout_sets_expiry_and_an_approval_covers_only_its_call(server: Server) -> None:
    t = tenant()
    sid = f"s-{uuid.uuid4().hex[:6]}"
    with server.client(server.key(t)) as c, server.client(server.key(t, "admin")) as admin:
        assert admin.put("/v1/policies", json={"document": POLICY}).status_code == 200
        first = c.post("/v1/enforce", json=mail(t, sid)).json()
        assert first["decision"] == "STEP_UP" and first["step_up_timeout_seconds"] == 120
        (approval,) = pending(admin)
        assert approval["hold_token"] == first["hold_token"]
        assert 119 < _ts(approval["expires_at"]) - _ts(approval["requested_at"]) < 121  # the rule's timeout

        # The held call re-checked with its token while pending: the same hold, no second approval.
        again = c.post("/v1/enforce", json=mail(t, sid, hold_token=first["hold_token"])).json()
        assert again["decision"] == "STEP_UP" and again["hold_token"] == first["hold_token"]
        assert len(pending(admin)) == 1

        resolved = admin.post(f"/v1/approvals/{approval['approval_id']}/resolve",
                              json={"decision": "approve", "reason": "known customer"})
        assert resolved.status_code == 200

        # Re-check with the hold token: allowed (the approval's one use; tests/server/test_approval_uses.py).
        with_token = c.post("/v1/enforce", json=mail(t, sid, hold_token=first["hold_token"])).json()
        assert with_token["decision"] == "ALLOW" and with_token["decision_reason_code"] == "step_up_approved"
        assert "known customer" in with_token["reason"] and with_token["violation_id"] is None

        # Other arguments, another session or another agent: the approval does not cover them.
        # (step_up mode: progressive would block a further violation in this session.)
        token = {"hold_token": first["hold_token"], "enforcement_mode": "step_up"}
        other_args = c.post("/v1/enforce", json=mail(t, sid, to="eve@evil.test", **token))
        other_session = c.post("/v1/enforce", json=mail(t, sid + "-2", **token))
        other_agent = c.post("/v1/enforce", json={**mail(t, sid, **token), "agent_id": "other"})
        tokens = set()
        for r in (other_args, other_session, other_agent):
            body = r.json()
            assert body["decision"] == "STEP_UP" and body["hold_token"] != first["hold_token"]
            tokens.add(body["hold_token"])
        assert len(tokens) == 3 and len(pending(admin)) == 3

        unknown = c.post("/v1/enforce", json=mail(t, sid, hold_token="hold_" + "0" * 32))
        assert unknown.status_code == 404 and "hold" in unknown.json()["message"]


def test_denied_hold_is_not_reused_and_default_timeout_applies(server: Server) -> None:
    t = tenant()
    sid = f"s-{uuid.uuid4().hex[:6]}"
    with server.client(server.key(t)) as c, server.client(server.key(t, "admin")) as admin:
        # No pushed policy: the default policy steps up out-of-scope calls; THOTH_HOLD_TIMEOUT_SECONDS=3.
        body = {"tenant_id": t, "agent_id": "a", "session_id": sid, "tool_name": "rm", "approved_scope": ["ls"],
                "enforcement_mode": "step_up", "tool_args": {"path": "/tmp"}}
        first = c.post("/v1/enforce", json=body).json()
        assert first["decision"] == "STEP_UP" and first["step_up_timeout_seconds"] == 3
        (approval,) = pending(admin)
        admin.post(f"/v1/approvals/{approval['approval_id']}/resolve", json={"decision": "deny"})
        denied = c.post("/v1/enforce", json={**body, "hold_token": first["hold_token"]}).json()
        assert denied["decision"] == "STEP_UP" and denied["hold_token"] != first["hold_token"]


def _ts(iso: str) -> float:
    return time.mktime(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + iso[19:].rstrip("Z"))
