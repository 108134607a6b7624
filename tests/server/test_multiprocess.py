"""Three `thoth serve` processes on one PostgreSQL database behave as one server."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.server import start_server, stop_server

from thoth.server.migrate import upgrade


@pytest.mark.postgres
def test_hold_created_resolved_and_seen_on_three_processes(pg_schema_url: str, tmp_path: Path) -> None:
    upgrade(pg_schema_url)
    home = tmp_path / "home"  # shared THOTH_HOME: one signing key for the cluster
    servers = [start_server(pg_schema_url, home) for _ in range(3)]
    try:
        a, b, c = servers
        sdk = a.key("multi", "sdk")
        approver = a.key("multi", "approver")
        hold = httpx.post(a.url + "/v1/enforce", headers={"x-api-key": sdk}, json={
            "tenant_id": "multi", "agent_id": "ag", "tool_name": "drop_table", "approved_scope": ["select"],
            "enforcement_mode": "step_up", "tool_args": {"table": "users"}}).json()
        assert hold["decision"] == "STEP_UP"
        approvals = httpx.get(b.url + "/v1/approvals", headers={"x-api-key": approver}).json()["items"]
        (approval,) = approvals
        seen: dict[str, object] = {}

        def poll() -> None:
            seen["answer"] = httpx.get(f"{c.url}/v1/enforce/hold/{hold['hold_token']}", params={"wait": 10},
                                       headers={"Authorization": f"Bearer {sdk}"}, timeout=20).json()
            seen["at"] = time.monotonic()

        poller = threading.Thread(target=poll)
        poller.start()
        time.sleep(0.5)
        resolved_at = time.monotonic()
        r = httpx.post(f"{b.url}/v1/approvals/{approval['approval_id']}/resolve", headers={"x-api-key": approver},
                       json={"decision": "approve", "reason": "ok from b"})
        assert r.status_code == 200
        poller.join()
        answer = seen["answer"]
        assert isinstance(answer, dict) and answer["resolution"] == "ALLOW" and answer["reason"] == "ok from b"
        assert float(seen["at"]) - resolved_at < 1.0  # type: ignore[arg-type]
        # events through all three processes form one valid chain
        for i, srv in enumerate(servers):
            httpx.post(srv.url + "/v1/events/batch", headers={"x-api-key": sdk},
                       json=[{"event_id": f"multi:{i}-{j}", "tenant_id": "multi", "event_type": "TOOL_CALL_PRE"}
                             for j in range(5)])
        verify = httpx.get(a.url + "/v1/audit/verify", headers={"x-api-key": approver}).json()
        # 15 client events plus the approval loop's own records (requested, resolved)
        assert verify["verified"] is True and verify["records_checked"] == 15 + 2
    finally:
        for srv in servers:
            stop_server(srv)


@pytest.mark.postgres
def test_concurrent_ingest_on_two_processes_one_chain(pg_schema_url: str, tmp_path: Path) -> None:
    # Both processes receive every event id at the same time: each is stored once, with one chain index.
    from concurrent.futures import ThreadPoolExecutor

    upgrade(pg_schema_url)
    home = tmp_path / "home"
    servers = [start_server(pg_schema_url, home) for _ in range(2)]
    try:
        t = f"mp-{time.time_ns()}"
        sdk = servers[0].key(t, "sdk")
        batches = [[{"event_id": f"{t}:{b}-{j}", "tenant_id": t, "event_type": "TOOL_CALL_PRE"} for j in range(10)]
                   for b in range(40)]

        jobs = [(srv.url, batch) for batch in batches for srv in servers]
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda job: post_events(job[0], sdk, job[1]), jobs))
        assert sum(a["accepted"] for a in answers) == 400
        assert sum(a["duplicates"] for a in answers) == 400
        verify = httpx.get(servers[1].url + "/v1/audit/verify", headers={"x-api-key": servers[1].key(t, "viewer")})
        assert verify.json()["verified"] is True and verify.json()["records_checked"] == 400
    finally:
        for srv in servers:
            stop_server(srv)


@pytest.mark.postgres
def test_a_process_appends_after_another_did(pg_schema_url: str, tmp_path: Path) -> None:
    # A process appends to the chain head it committed last without reading it first; when another
    # process appended meanwhile (or an id is a repeat), that guess fails and the batch goes in again,
    # checked: nothing is lost or stored twice, and the chain stays whole.
    upgrade(pg_schema_url)
    home = tmp_path / "home"
    a, b = (start_server(pg_schema_url, home) for _ in range(2))
    try:
        t = f"turns-{time.time_ns()}"
        sdk = a.key(t, "sdk")

        def send(srv: Any, name: str) -> dict[str, int]:
            return post_events(srv.url, sdk, [{"event_id": f"{t}:{name}-{j}", "tenant_id": t,
                                               "event_type": "TOOL_CALL_PRE"} for j in range(10)])

        answers = [send(a, "1"), send(a, "2"), send(b, "3"), send(a, "4"), send(a, "2"), send(b, "4"), send(a, "5")]
        assert [x["accepted"] for x in answers] == [10, 10, 10, 10, 0, 0, 10]
        assert [x["duplicates"] for x in answers] == [0, 0, 0, 0, 10, 10, 0]
        verify = httpx.get(a.url + "/v1/audit/verify", headers={"x-api-key": a.key(t, "viewer")}).json()
        assert verify["verified"] is True and verify["records_checked"] == 50
    finally:
        for srv in (a, b):
            stop_server(srv)


def post_events(url: str, key: str, batch: list[dict[str, str]]) -> dict[str, int]:
    r = httpx.post(url + "/v1/events/batch", headers={"x-api-key": key}, json=batch, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())
