"""Control-plane routes: shapes, roles, and a foreign tenant's key against every route."""

from __future__ import annotations

import uuid

import pytest
from tests.support.bodies import call, event
from tests.support.server import Server, tenant


@pytest.fixture(scope="module")
def populated(server: Server) -> dict[str, str]:
    """A tenant with an allow, a block, a step-up (its approval) and events; returns ids."""
    t = tenant()
    sid = f"sess-{uuid.uuid4().hex[:6]}"
    with server.client(server.key(t)) as c:
        c.post("/v1/enforce", json=call(t, "search", session=sid))
        block = c.post("/v1/enforce", json=call(t, "wire_money", session=sid)).json()
        hold = c.post("/v1/enforce", json=call(t, "delete_repo", mode="step_up", session=sid)).json()
        c.post("/v1/events/batch", json=[event(t, session=sid) for _ in range(3)])
    admin = server.key(t, "admin")
    with server.client(admin) as a:
        approval = a.get("/v1/approvals", params={"status": "pending"}).json()["items"][0]
        key_id = a.get("/v1/keys").json()["items"][0]["key_id"]
    return {"tenant": t, "session": sid, "violation": block["violation_id"], "hold": hold["hold_token"],
            "approval": approval["approval_id"], "admin": admin, "key_id": key_id}


def test_sessions_and_timeline(server: Server, populated: dict[str, str]) -> None:
    with server.client(server.key(populated["tenant"], "viewer")) as v:
        page = v.get("/v1/sessions").json()
        assert page["next_cursor"] is None
        (s,) = page["items"]
        assert s["session_id"] == populated["session"]
        assert (s["tool_calls"], s["blocked"], s["stepped_up"]) == (3, 1, 1)
        assert s["started_at"] and s["last_event_at"] and s["risk_score"] >= 0
        detail = v.get(f"/v1/sessions/{populated['session']}").json()
        assert [d["tool_name"] for d in detail["decisions"]] == ["search", "wire_money", "delete_repo"]
        assert [d["decision"] for d in detail["decisions"]] == ["ALLOW", "BLOCK", "STEP_UP"]
        sdk_events = [e for e in detail["events"] if e.get("source_type") != "thoth_approval"]
        assert len(sdk_events) == 3 and sdk_events[0]["event_type"] == "TOOL_CALL_PRE"
        # the held call's approval request is in the timeline (and the audit chain) too
        assert [e["event_type"] for e in detail["events"] if e not in sdk_events] == ["APPROVAL_REQUESTED"]
        assert v.get("/v1/sessions", params={"agent_id": "nobody"}).json()["items"] == []
        assert v.get("/v1/sessions/unknown").status_code == 404
        assert v.get("/v1/sessions", params={"limit": "many"}).status_code == 422
        assert v.get("/v1/sessions", params={"cursor": "abc"}).status_code == 422
        violations = v.get("/v1/violations").json()["items"]
        assert {x["violation_id"] for x in violations} >= {populated["violation"]}
        analytics = v.get("/v1/analytics/agents/agent-1").json()
        assert analytics["series"] and analytics["series"][0]["tool_calls"] == 3


def test_pagination(server: Server) -> None:
    t = tenant()
    with server.client(server.key(t)) as c:
        for i in range(5):
            c.post("/v1/enforce", json=call(t, session=f"p{i}"))
    with server.client(server.key(t, "viewer")) as v:
        first = v.get("/v1/sessions", params={"limit": 2}).json()
        second = v.get("/v1/sessions", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        rest = v.get("/v1/sessions", params={"limit": 2, "cursor": second["next_cursor"]}).json()
        ids = [s["session_id"] for s in first["items"] + second["items"] + rest["items"]]
        assert sorted(ids) == [f"p{i}" for i in range(5)] and rest["next_cursor"] is None


def test_keys_api(server: Server) -> None:
    t = tenant()
    with server.client(server.key(t, "admin")) as a:
        created = a.post("/v1/keys", json={"role": "viewer", "name": "ci"})
        assert created.status_code == 201 and created.json()["key"].startswith("thk_")
        listed = a.get("/v1/keys").json()["items"]
        assert all("key" not in k and "key_hash" not in k for k in listed)
        assert a.post("/v1/keys", json={"role": "root"}).status_code == 422
        viewer = created.json()["key"]
        with server.client(viewer) as v:
            assert v.get("/v1/sessions").status_code == 200
            assert v.get("/v1/keys").status_code == 403
        assert a.delete(f"/v1/keys/{created.json()['key_id']}").status_code == 200
        with server.client(viewer) as v:
            assert v.get("/v1/sessions").status_code == 401
        assert a.delete("/v1/keys/nope").status_code == 404


def test_policies_default_and_validation(server: Server) -> None:
    t = tenant()
    with server.client(server.key(t, "admin")) as a:
        current = a.get("/v1/policies").json()
        assert current["default"] is True and current["version"] is None
        bad = a.put("/v1/policies", json={"document": "rules: [not: a valid: policy"})
        assert bad.status_code == 422 and bad.json()["message"].startswith("invalid policy")
        assert a.get("/v1/policies/versions").json()["items"] == []
        assert a.post("/v1/policies/rollback", json={"version": 7}).status_code == 404
        assert a.put("/v1/policies", content=b"{", headers={"content-type": "application/json"}).status_code == 400
    with server.client(server.key(t, "viewer")) as v:
        assert v.put("/v1/policies", json={"document": "x"}).status_code == 403


def test_docs_health_metrics(server: Server) -> None:
    with server.client() as c:
        assert c.get("/healthz").json()["status"] == "ok"
        assert "swagger" in c.get("/docs").text.lower()
        spec = c.get("/openapi.json").json()
        assert "/v1/approvals/{approval_id}/resolve" in spec["paths"]
        m = c.get("/metrics").text
        assert 'thoth_decisions_total{decision="BLOCK"}' in m and "thoth_enforce_latency_seconds_bucket" in m
        assert c.get("/v1/sessions").status_code == 401
        r = c.post("/v1/keys", content=b"x" * 2_000_000, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["message"]


ROUTES = [
    ("GET", "/v1/sessions", None),
    ("GET", "/v1/sessions/{session}", None),
    ("GET", "/v1/violations", None),
    ("GET", "/v1/approvals", None),
    ("GET", "/v1/approvals/{approval}", None),
    ("POST", "/v1/approvals/{approval}/resolve", {"decision": "approve"}),
    ("GET", "/v1/policies", None),
    ("PUT", "/v1/policies", {"document": "rules: []"}),
    ("GET", "/v1/policies/versions", None),
    ("POST", "/v1/policies/rollback", {"version": 1}),
    ("GET", "/v1/keys", None),
    ("POST", "/v1/keys", {"role": "admin"}),
    ("DELETE", "/v1/keys/{key_id}", None),
    ("GET", "/v1/analytics/agents/agent-1", None),
    ("GET", "/v1/audit/verify", None),
    ("GET", "/v1/enforce/hold/{hold}", None),
    ("POST", "/v1/enforce", "enforce"),
    ("POST", "/v1/events/batch", "events"),
]


def test_foreign_tenant_sees_nothing(server: Server, populated: dict[str, str]) -> None:
    victim = populated["tenant"]
    attacker = tenant()
    with server.client(server.key(attacker, "admin")) as c:
        c.post("/v1/events/batch", json=[event(attacker)])  # the attacker has its own data
        for method, template, body in ROUTES:
            path = template.format(**populated)
            if body == "enforce":
                body = call(victim)
            elif body == "events":
                body = [event(victim)]
            r = c.request(method, path, json=body)
            text = r.text
            assert r.status_code < 500, (method, path, r.status_code)
            assert victim not in text and populated["session"] not in text, (method, path, text[:200])
            assert populated["violation"] not in text and populated["hold"] not in text, (method, path)
        # A hold token of the victim, presented in an enforce body: unknown, not honoured.
        r = c.post("/v1/enforce", json={**call(attacker), "hold_token": populated["hold"]})
        assert r.status_code == 404 and populated["hold"] not in r.text
    # The dashboard, with an API key as a script would use it (Bearer): pages and actions.
    with server.client(server.key(attacker, "admin"), bearer=True) as d:
        for method, template, form in DASHBOARD_ROUTES:
            path = template.format(**populated)
            r = d.request(method, path, data=form)
            assert r.status_code < 500, (method, path, r.status_code)
            text = r.text
            assert victim not in text, (method, path, text[:300])
            assert populated["violation"] not in text and populated["hold"] not in text, (method, path)
            if method == "GET" and "{" not in template:
                assert r.status_code == 200, (method, path, r.status_code)  # the page itself is served
    # the victim's approval is still pending, its key still works, no policy was pushed for it
    with server.client(populated["admin"]) as a:
        assert a.get(f"/v1/approvals/{populated['approval']}").json()["status"] == "pending"
        assert a.get("/v1/keys").status_code == 200
        assert a.get("/v1/audit/verify").json()["verified"] is True
        assert a.get("/v1/policies").json()["default"] is True
        assert a.get("/v1/policies/versions").json()["items"] == []


DASHBOARD_ROUTES = [
    ("GET", "/", None),
    ("GET", "/sessions", None),
    ("GET", "/sessions/{session}", None),
    ("GET", "/violations", None),
    ("GET", "/violations/{violation}", None),
    ("GET", "/approvals", None),
    ("GET", "/approvals/live", None),
    ("GET", "/policies", None),
    ("GET", "/policies/versions/1", None),
    ("GET", "/analytics", None),
    ("GET", "/settings", None),
    ("POST", "/approvals/{approval}/resolve", {"decision": "approve", "reason": "x"}),
    ("POST", "/policies", {"document": "version: 1\nrules: []\n"}),
    ("POST", "/policies/versions/1/rollback", {}),
    ("POST", "/policies/simulate", {"document": "version: 1\nrules: []\n", "days": "7"}),
    ("POST", "/settings/keys/{key_id}/revoke", {}),
]


def test_policy_put_versions_enforce_and_rollback(server: Server) -> None:
    from pathlib import Path

    import thoth.policy

    pack = (Path(thoth.policy.__file__).parent / "packs" / "destructive_actions.yaml").read_text()
    t = tenant()
    drop = {"tenant_id": t, "agent_id": "a", "tool_name": "exec_sql", "tool_args": {"sql": "DROP TABLE users"},
            "enforcement_mode": "block", "approved_scope": ["exec_sql"]}
    with server.client(server.key(t, "admin")) as a, server.client(server.key(t)) as sdk:
        assert sdk.post("/v1/enforce", json=drop).json()["decision"] == "ALLOW"  # default policy: in scope
        r = a.put("/v1/policies", json={"document": pack, "comment": "destructive pack"})
        assert r.status_code == 200 and r.json()["version"] == 1
        assert a.get("/v1/policies").json()["document"] == pack
        blocked = sdk.post("/v1/enforce", json=drop).json()
        assert blocked["decision"] == "BLOCK" and "da-sql-destructive" in blocked["matched_rule_ids"]
        assert blocked["policy_version"] == 1
        assert a.put("/v1/policies", json={"document": "version: 1\nrules: 7\n"}).status_code == 422
        r = a.put("/v1/policies", json={"document": "version: 1\nname: empty\nrules: []\n"})
        assert r.status_code == 200 and r.json()["version"] == 2
        assert sdk.post("/v1/enforce", json=drop).json()["decision"] == "ALLOW"
        r = a.post("/v1/policies/rollback", json={"version": 1})
        assert r.status_code == 200 and r.json()["version"] == 3
        versions = a.get("/v1/policies/versions").json()["items"]
        assert [v["version"] for v in versions] == [3, 2, 1] and versions[0]["active"] is True
        assert sdk.post("/v1/enforce", json=drop).json()["decision"] == "BLOCK"
