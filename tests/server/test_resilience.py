"""The server survives losing its PostgreSQL connections."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from tests.support.pg import terminate_writer
from tests.support.server import start_server, stop_server

from thoth.server.migrate import upgrade


@pytest.mark.postgres
def test_writer_reconnects_after_its_backend_is_terminated(pg_schema_url: str, tmp_path: Path) -> None:

    upgrade(pg_schema_url)
    srv = start_server(pg_schema_url, tmp_path / "home")
    t = f"rc-{uuid.uuid4().hex[:6]}"
    try:
        with srv.client(srv.key(t)) as c:
            body = {"tenant_id": t, "agent_id": "a", "tool_name": "search", "approved_scope": ["search"],
                    "session_id": "s1", "enforcement_mode": "block"}
            assert c.post("/v1/enforce", json=body).status_code == 200
            assert terminate_writer(srv.proc.pid) == [(True,)]
            for i in range(3):  # decisions and events are written again, on a new connection
                r = c.post("/v1/enforce", json={**body, "tool_call_id": f"c{i}"})
                assert r.status_code == 200, r.text
            r = c.post("/v1/events/batch", json=[{"event_id": f"{t}:e1", "tenant_id": t, "event_type": "TOOL_CALL_PRE"}])
            assert r.status_code == 200 and r.json()["accepted"] == 1
        with srv.client(srv.key(t, "viewer")) as v:
            assert len(v.get("/v1/sessions/s1").json()["decisions"]) == 4
    finally:
        stop_server(srv)
