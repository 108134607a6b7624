"""POST /v1/enforce and the hold poll, against a real server on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from tests.support.bodies import call
from tests.support.server import Server, tenant


def test_allow_and_block_envelopes(server: Server) -> None:
    t = tenant()
    with server.client(server.key(t)) as c:
        ok = c.post("/v1/enforce", json=call(t, "search")).json()
        assert ok["decision"] == ok["authorization_decision"] == "ALLOW"
        assert ok["violation_id"] is None and ok["hold_token"] is None
        assert isinstance(ok["latency_ms"], float) and isinstance(ok["matched_rule_ids"], list)
        for name in ("risk_score", "reason", "decision_reason_code", "policy_references", "regulatory_regimes",
                     "matched_control_ids", "model_signals"):
            assert name in ok
        bad = c.post("/v1/enforce", json=call(t, "wire_money")).json()
        assert bad["decision"] == bad["authorization_decision"] == "BLOCK"
        assert bad["violation_id"].startswith("vio_")
        assert bad["decision_reason_code"] == "policy_scope_violation"


def test_camel_case_unknown_fields_and_bearer(server: Server) -> None:
    t = tenant()
    body = {"tenantId": t, "agentId": "a", "toolName": "wire_money", "sessionId": "s-camel",
            "approvedScope": ["search"], "enforcementMode": "block", "someFutureField": {"x": 1},
            "identity_binding": {"sub": "u"}}
    with server.client(server.key(t), bearer=True) as c:
        r = c.post("/v1/enforce", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["decision"] == "BLOCK"
        assert r.json()["session_id"] == "s-camel"


def test_auth_and_tenant_checks(server: Server) -> None:
    t, other = tenant(), tenant()
    with server.client() as c:
        r = c.post("/v1/enforce", json=call(t))
        assert r.status_code == 401 and r.json()["message"]
        r = c.post("/v1/enforce", json=call(t), headers={"x-api-key": "thk_nope_nope"})
        assert r.status_code == 401
    with server.client(server.key(other)) as c:
        r = c.post("/v1/enforce", json=call(t))
        assert r.status_code == 403 and "tenant" in r.json()["message"]
    with server.client(server.key(t, "viewer")) as c:
        assert c.post("/v1/enforce", json=call(t)).status_code == 403


def test_bad_input(server: Server) -> None:
    t = tenant()
    with server.client(server.key(t)) as c:
        r = c.post("/v1/enforce", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["message"]
        assert c.post("/v1/enforce", json=[1, 2]).status_code == 422
        assert c.post("/v1/enforce", json={**call(t), "tool_name": 5}).status_code == 422
        assert c.post("/v1/enforce", json={**call(t), "approved_scope": "search"}).status_code == 422
        assert c.post("/v1/enforce", json={**call(t), "tool_args": "x"}).status_code == 422
        r = c.post("/v1/enforce", json={**call(t), "tool_args": {"blob": "x" * 2_000_000}})
        assert r.status_code == 413 and r.json()["message"]
        assert c.get("/v1/enforce").status_code == 405


def test_dedup_by_tool_call_id(server: Server) -> None:
    t = tenant()
    sid = str(uuid.uuid4())
    with server.client(server.key(t)) as c:
        first = c.post("/v1/enforce", json=call(t, "wire_money", session=sid, tool_call_id="tc-1")).json()
        again = c.post("/v1/enforce", json=call(t, "wire_money", session=sid, tool_call_id="tc-1")).json()
        assert again["decision_id"] == first["decision_id"]
        other = c.post("/v1/enforce", json=call(t, "wire_money", session=sid, action_attestation_id="att-9")).json()
        assert other["decision_id"] != first["decision_id"]
    with server.client(server.key(t, "viewer")) as c:
        session = c.get(f"/v1/sessions/{sid}").json()
        assert session["session"]["tool_calls"] == 2
        assert len(session["decisions"]) == 2


def test_observe_mode_records_would_be_decision(server: Server) -> None:
    t = tenant()
    sid = str(uuid.uuid4())
    with server.client(server.key(t)) as c:
        r = c.post("/v1/enforce", json=call(t, "wire_money", mode="observe", session=sid)).json()
        assert r["decision"] == "ALLOW" and r["would_decision"] in ("BLOCK", "STEP_UP")
    with server.client(server.key(t, "viewer")) as c:
        items = c.get("/v1/violations").json()["items"]
        assert len(items) == 1 and items[0]["decision"] == "ALLOW" and items[0]["session_id"] == sid


def _step_up(c: Any, t: str) -> dict[str, Any]:
    r = c.post("/v1/enforce", json=call(t, "delete_repo", mode="step_up")).json()
    assert r["decision"] == "STEP_UP" and r["hold_token"] and r["violation_id"]
    assert r["step_up_timeout_seconds"] == 3
    return r


def test_hold_pending_approve_with_long_poll(server: Server) -> None:
    t = tenant()
    sdk = server.client(server.key(t))
    approver = server.client(server.key(t, "approver"))
    hold = _step_up(sdk, t)
    token = hold["hold_token"]
    pending = sdk.get(f"/v1/enforce/hold/{token}", headers={"Authorization": sdk.headers["x-api-key"]}).json()
    assert pending["resolved"] is False and pending["resolution"] is None and pending["decision"] == "STEP_UP"
    # Bearer on the poll, as one published client does.
    bearer = server.client(sdk.headers["x-api-key"], bearer=True)
    items = approver.get("/v1/approvals", params={"status": "pending"}).json()["items"]
    (approval,) = [a for a in items if a["hold_token"] == token]
    assert approval["tool_name"] == "delete_repo" and approval["tool_args"] == {"q": "x"}
    assert approval["agent_id"] == "agent-1" and approval["expires_at"]

    def resolve() -> None:
        time.sleep(0.4)
        approver.post(f"/v1/approvals/{approval['approval_id']}/resolve",
                      json={"decision": "approve", "reason": "looks fine"})

    thread = threading.Thread(target=resolve)
    started = time.monotonic()
    thread.start()
    answer = bearer.get(f"/v1/enforce/hold/{token}", params={"wait": 10}).json()
    thread.join()
    assert time.monotonic() - started < 3
    assert answer["resolved"] is True and answer["resolution"] == answer["decision"] == "ALLOW"
    done = approver.get(f"/v1/approvals/{approval['approval_id']}").json()
    assert done["status"] == "approved" and done["reason"] == "looks fine" and done["resolved_by"].startswith("key:")
    again = approver.post(f"/v1/approvals/{approval['approval_id']}/resolve", json={"decision": "deny"})
    assert again.status_code == 409
    for client in (sdk, approver, bearer):
        client.close()


def test_hold_deny_unknown_and_expiry(server: Server) -> None:
    t = tenant()
    with server.client(server.key(t)) as sdk, server.client(server.key(t, "admin")) as admin:
        denied = _step_up(sdk, t)
        aid = admin.get("/v1/approvals").json()["items"][0]["approval_id"]
        r = admin.post(f"/v1/approvals/{aid}/resolve", json={"decision": "deny", "reason": "no"})
        assert r.status_code == 200 and r.json()["status"] == "denied"
        answer = sdk.get(f"/v1/enforce/hold/{denied['hold_token']}").json()
        assert answer["resolved"] is True and answer["resolution"] == "BLOCK" and answer["reason"] == "no"
        r = sdk.get("/v1/enforce/hold/hold_doesnotexist")
        assert r.status_code == 404 and r.json()["message"]
        assert sdk.get(f"/v1/enforce/hold/{denied['hold_token']}", params={"wait": "soon"}).status_code == 422
        expiring = _step_up(sdk, t)
        answer = sdk.get(f"/v1/enforce/hold/{expiring['hold_token']}", params={"wait": 6}).json()
        assert answer["resolved"] is True and answer["resolution"] == "BLOCK"
        assert admin.get("/v1/approvals", params={"status": "expired"}).json()["items"]
        sdk_role = admin.post(f"/v1/approvals/{aid}/resolve", json={"decision": "approve"},
                              headers={"x-api-key": server.key(t, "sdk")})
        assert sdk_role.status_code == 403
    with server.client(server.key(tenant())) as foreign:
        assert foreign.get(f"/v1/enforce/hold/{denied['hold_token']}").status_code == 404
