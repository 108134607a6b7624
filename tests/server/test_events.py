"""POST /v1/events/batch and the audit chain (API and `thoth audit verify`)."""

from __future__ import annotations

import os
import uuid

import pytest
from tests.support.bodies import event
from tests.support.server import Server, cli_verify, tenant


def test_both_shapes_camel_case_and_idempotency(server: Server) -> None:
    t = tenant()
    batch = [event(t) for _ in range(10)]
    with server.client(server.key(t)) as c:
        r = c.post("/v1/events/batch", json=batch)
        assert r.status_code == 200 and r.json()["accepted"] == 10
        r = c.post("/v1/events/batch", json=batch)
        assert r.json() == {"accepted": 0, "duplicates": 10, "status": "ok"}
        camel = {"eventId": f"{t}:{uuid.uuid4()}", "tenantId": t, "agentId": "a1", "sessionId": "s1",
                 "eventType": "TOOL_CALL_POST", "toolName": "search", "metadata": {"duration_ms": 3}}
        r = c.post("/v1/events/batch", json={"events": [camel, camel]})
        assert r.json()["accepted"] == 1 and r.json()["duplicates"] == 1
    with server.client(server.key(t, "viewer")) as v:
        events = v.get("/v1/sessions/s1").json()["events"]
        assert [e["chain_index"] for e in events] == list(range(11))
        assert events[-1]["event_type"] == "TOOL_CALL_POST" and events[-1]["tool_name"] == "search"
        assert all(e["ingested_at"] and e["hash"] and e["previous_hash"] for e in events)
        assert events[1]["previous_hash"] == events[0]["hash"]
        result = v.get("/v1/audit/verify").json()
        assert result["verified"] is True and result["records_checked"] == 11 and result["breach"] is None


def test_idempotency_with_unusual_event_ids(server: Server) -> None:
    # Ids with JSON, SQL-array and unicode syntax in them: the known-id lookup must match them exactly.
    t = tenant()
    ids = [f'{t}:"q"', f"{t}:back\\slash", f"{t}:{{a,b}}", f"{t}:ünï 漢 🙂", f"{t}:tab\there", f"{t}:'"]
    with server.client(server.key(t)) as c:
        r = c.post("/v1/events/batch", json=[event(t, event_id=i) for i in ids])
        assert r.json()["accepted"] == len(ids)
        r = c.post("/v1/events/batch", json=[event(t, event_id=i) for i in [*ids, f"{t}:new"]])
        assert r.json() == {"accepted": 1, "duplicates": len(ids), "status": "ok"}
    with server.client(server.key(t, "viewer")) as v:
        events = v.get("/v1/sessions/s1").json()["events"]
        assert [e["event_id"] for e in events] == [*ids, f"{t}:new"]
        assert [e["chain_index"] for e in events] == list(range(len(ids) + 1))
        assert v.get("/v1/audit/verify").json()["verified"] is True


def test_ingest_token_header_and_rejections(server: Server) -> None:
    t = tenant()
    key = server.key(t, "ingest")
    with server.client() as c:
        r = c.post("/v1/events/batch", json=[event(t)], headers={"X-Thoth-Event-Ingest-Token": key})
        assert r.status_code == 200 and r.json()["accepted"] == 1
        # an ingest-only key cannot enforce
        assert c.post("/v1/enforce", json={}, headers={"x-api-key": key}).status_code == 403
    with server.client(server.key(t)) as c:
        assert c.post("/v1/events/batch", content=b"[{", headers={"content-type": "application/json"}).status_code == 400
        assert c.post("/v1/events/batch", json={"nope": 1}).status_code == 422
        assert c.post("/v1/events/batch", json=[{"tenant_id": t}]).status_code == 422  # no event_id
        assert c.post("/v1/events/batch", json=[event(t, metadata="x")]).status_code == 422
        assert c.post("/v1/events/batch", json=[event(t, ttl="soon")]).status_code == 422
        r = c.post("/v1/events/batch", json=[event(t), event(tenant())])
        assert r.status_code == 403 and r.json()["message"]
        assert c.post("/v1/events/batch", json=[]).json()["accepted"] == 0
        metrics = c.get("/metrics").text
        assert "thoth_events_rejected_total" in metrics and "thoth_holds_pending" in metrics


@pytest.mark.parametrize("tamper", ["edit", "delete", "reorder", "truncate"])
def test_audit_detects_tampering(server: Server, tamper: str) -> None:
    t = tenant()
    with server.client(server.key(t)) as c:
        assert c.post("/v1/events/batch", json=[event(t) for _ in range(6)]).json()["accepted"] == 6
    assert cli_verify(server, t).returncode == 0
    with server.store.db.transaction() as conn:
        if tamper == "edit":
            body = conn.one("SELECT body FROM events WHERE tenant_id = ? AND chain_index = 2", (t,))[0]
            conn.execute("UPDATE events SET body = ? WHERE tenant_id = ? AND chain_index = 2",
                         (body.replace("search(q)", "nothing"), t))
        elif tamper == "delete":
            conn.execute("DELETE FROM events WHERE tenant_id = ? AND chain_index = 3", (t,))
        elif tamper == "reorder":
            conn.execute("UPDATE events SET chain_index = 100 WHERE tenant_id = ? AND chain_index = 1", (t,))
            conn.execute("UPDATE events SET chain_index = 1 WHERE tenant_id = ? AND chain_index = 4", (t,))
            conn.execute("UPDATE events SET chain_index = 4 WHERE tenant_id = ? AND chain_index = 100", (t,))
        else:
            conn.execute("DELETE FROM events WHERE tenant_id = ? AND chain_index = 5", (t,))
    with server.client(server.key(t, "viewer")) as v:
        result = v.get("/v1/audit/verify").json()
    assert result["verified"] is False and result["breach"]["type"]
    proc = cli_verify(server, t)
    assert proc.returncode == 1 and "BROKEN" in proc.stderr and "Traceback" not in proc.stderr


def test_nul_characters_are_refused_not_a_500(server: Server) -> None:
    # PostgreSQL text cannot store NUL; every database refuses it the same way, with a 422.
    t = "nul-" + os.urandom(3).hex()
    with server.client(server.key(t)) as c:
        r = c.post("/v1/enforce", content=b'{"agent_id": "a\\u0000", "tool_name": "t"}',
                   headers={"content-type": "application/json"})
        assert r.status_code == 422 and "NUL" in r.json()["message"]
        r = c.post("/v1/events/batch", content=b'[{"event_id": "e\\u0000"}]', headers={"content-type": "application/json"})
        assert r.status_code == 422
        assert c.get("/v1/enforce/hold/hold_%00x").status_code == 404


def test_verify_while_events_keep_arriving(server: Server) -> None:
    # The events and the signed head are read as of one moment: a batch committed between the two
    # reads must not look like a truncated or extended chain.
    import threading

    import httpx

    t = tenant()
    stop = threading.Event()
    sent: list[int] = []

    def ingest() -> None:
        with httpx.Client(base_url=server.url, headers={"x-api-key": server.key(t)}, timeout=30) as c:
            while not stop.is_set():
                r = c.post("/v1/events/batch", json=[event(t) for _ in range(20)])
                assert r.status_code == 200
                sent.append(r.json()["accepted"])

    writers = [threading.Thread(target=ingest) for _ in range(3)]
    for w in writers:
        w.start()
    results = []
    try:
        with server.client(server.key(t, "viewer")) as v:
            while len(results) < 25 or sum(sent) < 400:
                results.append(v.get("/v1/audit/verify").json())
    finally:
        stop.set()
        for w in writers:
            w.join()
    breaches = [r["breach"] for r in results if not r["verified"]]
    assert breaches == []
    checked = [r["records_checked"] for r in results]
    assert checked == sorted(checked) and checked[-1] > 0
