"""Plain decisions are answered before their group commit (write-behind) and never lost:
the journal keeps what a killed process answered, the next start stores it, exactly once."""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import orjson
import pytest
from tests.support.pg import terminate_writer
from tests.support.server import Server, start_server, stop_server

from thoth.server.db import Database
from thoth.server.journal import Journal
from thoth.server.migrate import upgrade
from thoth.server.records import DECISION_COLUMNS, DecisionRecord, DecisionRow


def _body(tenant: str, session: str, i: int) -> dict[str, object]:
    return {"tenant_id": tenant, "agent_id": "a", "session_id": session, "tool_name": "search",
            "tool_args": {"q": f"call {i}"}, "approved_scope": ["search"]}


def _decisions(db_url: str, tenant: str, session: str) -> list[str]:
    conn = Database(db_url).connect()
    try:
        rows = conn.all("SELECT decision_id FROM decisions WHERE tenant_id = ? AND session_id = ?", (tenant, session))
        return [r[0] for r in rows]
    finally:
        conn.close()


def _stored_row(db_url: str, decision_id: str) -> DecisionRow:
    conn = Database(db_url).connect()
    try:
        row = conn.one(f"SELECT {', '.join(DECISION_COLUMNS)} FROM decisions WHERE decision_id = ?", (decision_id,))
        return DecisionRow(*row)
    finally:
        conn.close()


def test_killed_under_load_loses_no_answered_decision(backend: str, tmp_path: Path) -> None:
    upgrade(backend)
    home = tmp_path / "home"
    srv = start_server(backend, home)
    tenant, session = f"t-{uuid.uuid4().hex[:8]}", "s-kill"
    key = srv.key(tenant)
    answered: list[str] = []
    try:
        with ThreadPoolExecutor(8) as pool, httpx.Client(base_url=srv.url, headers={"x-api-key": key}) as c:
            def call(i: int) -> str:
                r = c.post("/v1/enforce", json=_body(tenant, session, i))
                assert r.status_code == 200, r.text
                return str(r.json()["decision_id"])

            answered = list(pool.map(call, range(400)))
        srv.proc.kill()  # no shutdown: whatever was not committed yet is only in the journal
        srv.proc.wait(10)
    finally:
        stop_server(srv)
    srv = start_server(backend, home)
    try:
        stored = _decisions(backend, tenant, session)
        assert sorted(stored) == sorted(answered)  # every answered decision, none twice
        with srv.client(srv.key(tenant, "viewer")) as v:
            assert v.get(f"/v1/sessions/{session}").json()["session"]["tool_calls"] == 400
    finally:
        stop_server(srv)
    assert [p.name for p in (home / "journal").iterdir()] == []  # a clean stop leaves no journal


def test_a_dead_process_journal_is_replayed_once_and_skips_what_was_committed(backend: str, tmp_path: Path) -> None:
    upgrade(backend)
    home = tmp_path / "home"
    srv = start_server(backend, home)
    tenant, session = f"t-{uuid.uuid4().hex[:8]}", "s-journal"
    try:
        with srv.client(srv.key(tenant)) as c:
            committed = c.post("/v1/enforce", json=_body(tenant, session, 0)).json()["decision_id"]
    finally:
        stop_server(srv)
    # What a process killed mid-way leaves: the record of a decision it committed, two it did not,
    # and a line torn by the kill.
    row = _stored_row(backend, committed)
    journal = Journal(home / "journal")
    lost = [f"dec_lost{i}_{uuid.uuid4().hex[:6]}" for i in range(2)]
    for decision_id in (committed, *lost):
        journal.add(DecisionRecord(replace(row, decision_id=decision_id)))
    journal.write()
    journal.close()  # pending records: the file stays, unlocked, like a dead process's
    with open(journal.path, "ab") as f:
        f.write(b'[["dec_torn", "t')
    srv = start_server(backend, home)
    try:
        assert sorted(_decisions(backend, tenant, session)) == sorted([committed, *lost])
        assert not journal.path.exists()
        with srv.client(srv.key(tenant, "viewer")) as v:
            assert v.get(f"/v1/sessions/{session}").json()["session"]["tool_calls"] == 3
    finally:
        stop_server(srv)
    srv = start_server(backend, home)  # replayed once: a second start stores nothing more
    try:
        assert len(_decisions(backend, tenant, session)) == 3
    finally:
        stop_server(srv)


def test_read_your_writes_after_a_write_behind_answer(server: Server) -> None:
    tenant, session = f"t-{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex[:8]}"
    key, viewer = server.key(tenant), server.key(tenant, "viewer")
    with httpx.Client(base_url=server.url) as c:
        for i in range(20):
            r = c.post("/v1/enforce", json=_body(tenant, session, i), headers={"x-api-key": key})
            assert r.status_code == 200
            # The very next read through the control plane sees it (same process).
            got = c.get(f"/v1/sessions/{session}", headers={"x-api-key": viewer}).json()
            assert got["session"]["tool_calls"] == i + 1


@pytest.mark.postgres
def test_write_behind_decisions_survive_a_lost_writer_connection(pg_schema_url: str, tmp_path: Path) -> None:
    upgrade(pg_schema_url)
    srv = start_server(pg_schema_url, tmp_path / "home")
    tenant, session = f"t-{uuid.uuid4().hex[:8]}", "s-lost-conn"
    try:
        with srv.client(srv.key(tenant)) as c:
            assert c.post("/v1/enforce", json=_body(tenant, session, 0)).status_code == 200
            assert terminate_writer(srv.proc.pid) == [(True,)]
            for i in range(1, 6):
                assert c.post("/v1/enforce", json=_body(tenant, session, i)).status_code == 200
        with srv.client(srv.key(tenant, "viewer")) as v:
            assert v.get(f"/v1/sessions/{session}").json()["session"]["tool_calls"] == 6
    finally:
        stop_server(srv)


def test_a_journal_written_before_the_header_format_replays(backend: str, tmp_path: Path) -> None:
    """A dead process of the previous release left its journal in the first format: one
    `[row, tenant, session, agent, user, decision, risk, decided_at]` per line, no header."""
    upgrade(backend)
    home = tmp_path / "home"
    srv = start_server(backend, home)
    tenant, session = f"t-{uuid.uuid4().hex[:8]}", "s-old-journal"
    try:
        with srv.client(srv.key(tenant)) as c:
            committed = c.post("/v1/enforce", json=_body(tenant, session, 0)).json()["decision_id"]
    finally:
        stop_server(srv)
    template = _stored_row(backend, committed)
    lost = [f"dec_old{i}_{uuid.uuid4().hex[:6]}" for i in range(2)]
    lines = []
    for decision_id in (committed, *lost):
        row = (decision_id, *template.values()[1:])  # the tuple the old enforce built
        lines.append(orjson.dumps((row, tenant, session, template.agent_id, template.user_id, template.decision,
                                   template.risk_score, template.decided_at)))
    path = home / "journal" / f"decisions-{os.getpid()}-0ld0ld00.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n" + b'[["dec_torn", "t')  # and a line torn by the kill
    srv = start_server(backend, home)
    try:
        assert sorted(_decisions(backend, tenant, session)) == sorted([committed, *lost])
        assert not path.exists()
        with srv.client(srv.key(tenant, "viewer")) as v:
            got = v.get(f"/v1/sessions/{session}").json()
            assert got["session"]["tool_calls"] == 3
            assert {d["decision_id"]: d["tool_args"] for d in got["decisions"]}[lost[0]] == {"q": "call 0"}
    finally:
        stop_server(srv)
