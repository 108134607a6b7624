"""What a client may put in the audit chain: nesting depth, the server's reserved event types,
and the API key recorded (and chained) with every event it sends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.bodies import MAIL_STEP_UP_POLICY as POLICY
from tests.support.bodies import event, mail
from tests.support.server import (
    Server,
    cli_verify,
    pg_schema,
    start_server,
    stop_server,
    tenant,
)

from thoth.server import audit
from thoth.server.core import MAX_JSON_DEPTH
from thoth.server.db import Database


def nested(levels: int) -> Any:
    """A value that is `levels` objects deep ({"k": {"k": ... 1}})."""
    value: Any = 1
    for _ in range(levels):
        value = {"k": value}
    return value


def stored_events(server: Server, t: str) -> list[tuple[Any, ...]]:
    with server.store.db.read() as conn:
        return list(conn.all("SELECT chain_index, event_id, ingest_key_id, body FROM events WHERE tenant_id = ?"
                             " ORDER BY chain_index", (t,)))


# ---- nesting depth ---------------------------------------------------------------------------


def test_enforce_refuses_nesting_beyond_the_limit(server: Server) -> None:
    t = tenant()
    call = {"agent_id": "a1", "tool_name": "search", "session_id": "deep"}
    with server.client(server.key(t)) as c:
        # The body is level 1: tool_args may be MAX_JSON_DEPTH - 1 levels deep.
        ok = c.post("/v1/enforce", json={**call, "tool_args": nested(MAX_JSON_DEPTH - 1)})
        assert ok.status_code == 200 and ok.json()["decision"] == "ALLOW"
        for levels in (MAX_JSON_DEPTH, 254, 255, 600):  # 255: where orjson's encoder stopped (a 500)
            r = c.post("/v1/enforce", json={**call, "tool_args": nested(levels)})
            assert r.status_code == 422, levels
            assert r.json()["message"] == f"JSON nested deeper than {MAX_JSON_DEPTH} levels (objects and arrays)"
        # Deep arrays too, and depth anywhere in the body, not only in tool_args.
        assert c.post("/v1/enforce", json={**call, "tool_args": {"a": [[[]] * 2] * 2},
                                           "metadata": [[[[[[[[]]]]]]]] * 10}).status_code == 200
        r = c.post("/v1/enforce", json={**call, "metadata": {"x": [nested(MAX_JSON_DEPTH)]}})
        assert r.status_code == 422
        # Many brackets but shallow (the cheap pre-check counts them; the walk finds nothing).
        r = c.post("/v1/enforce", json={**call, "tool_args": {"rows": [[i] for i in range(500)], "s": "{[" * 99}})
        assert r.status_code == 200
    with server.client(server.key(t, "viewer")) as v:
        decisions = v.get("/v1/sessions/deep").json()["decisions"]
    assert len(decisions) == 3  # the refused calls left no decision behind


def test_event_batch_refuses_deep_nesting_and_stores_none_of_it(server: Server) -> None:
    t = tenant()
    with server.client(server.key(t)) as c:
        good = event(t)
        # event metadata 254 deep answered 500 before (the batch was lost), now 422 at parse time.
        for levels in (MAX_JSON_DEPTH - 1, 254):
            r = c.post("/v1/events/batch", json=[good, event(t, metadata=nested(levels))])
            assert r.status_code == 422
            assert r.json()["message"] == f"event 1: JSON nested deeper than {MAX_JSON_DEPTH} levels (objects and arrays)"
        # Any field: content, and fields the server does not know (stored as sent).
        for deep in ({"content": [nested(MAX_JSON_DEPTH - 2)]}, {"extra": {"x": nested(MAX_JSON_DEPTH)}}):
            r = c.post("/v1/events/batch", json=[event(t, **deep), good])
            assert r.status_code == 422 and r.json()["message"].startswith("event 0: JSON nested deeper")
        assert stored_events(server, t) == []  # nothing half-stored
        # The deepest allowed: array (1) > event (2) > metadata (3) ... MAX_JSON_DEPTH levels in all.
        deepest = event(t, metadata=nested(MAX_JSON_DEPTH - 2))
        r = c.post("/v1/events/batch", json=[good, deepest])
        assert r.status_code == 200 and r.json()["accepted"] == 2
        r = c.post("/v1/events/batch", json={"events": [event(t, metadata=nested(MAX_JSON_DEPTH - 2))]})
        assert r.status_code == 422  # {"events": [...]} is one level more
    assert [row[1] for row in stored_events(server, t)] == [good["event_id"], deepest["event_id"]]
    with server.client(server.key(t, "viewer")) as v:
        assert v.get("/v1/audit/verify").json()["verified"] is True


def test_control_plane_json_bodies_too_deep_are_a_4xx(server: Server) -> None:
    # Policy documents are stored as text (not re-serialized by orjson); the loader refuses deep
    # ones, and bodies too deep for the JSON parser are a 400: never a 500.
    t = tenant()
    with server.client(server.key(t, "admin")) as admin:
        for levels in (MAX_JSON_DEPTH + 1, 300, 5000):
            raw = '{"document": ' + '{"a": ' * levels + '1' + '}' * levels + '}'
            for method, path in (("PUT", "/v1/policies"), ("POST", "/v1/policies/simulate")):
                r = admin.request(method, path, content=raw, headers={"content-type": "application/json"})
                assert r.status_code in (400, 422) and r.json()["message"], (path, levels)
        assert admin.get("/v1/policies").json()["version"] is None  # nothing was activated


# ---- the server's own records cannot be forged -----------------------------------------------


def test_server_event_types_are_reserved(server: Server) -> None:
    t = tenant()
    sid = f"s-{uuid.uuid4().hex[:6]}"
    with server.client(server.key(t)) as c, server.client(server.key(t, "admin")) as admin:
        assert admin.put("/v1/policies", json={"document": POLICY}).status_code == 200
        held = c.post("/v1/enforce", json=mail(t, sid)).json()
        assert held["decision"] == "STEP_UP"
        (approval,) = [a for a in admin.get("/v1/approvals").json()["items"] if a["hold_token"] == held["hold_token"]]
        approval_id = approval["approval_id"]
        assert admin.post(f"/v1/approvals/{approval_id}/resolve", json={"decision": "approve"}).status_code == 200
        server_events = admin.get(f"/v1/sessions/{sid}").json()["events"]
        kinds = {e["event_type"] for e in server_events}
        assert {"APPROVAL_REQUESTED", "APPROVAL_RESOLVED"} <= kinds
        assert all(e["ingest_key_id"] is None for e in server_events)  # written by the server, not a key

        # Each record the server wrote, sent back by a client as a fresh event: refused, the batch
        # with it, naming the event. Also with the type alone or the source alone, in any case.
        for i, e in enumerate(server_events):
            forged = {k: v for k, v in e.items() if k not in ("hash", "chain_index", "previous_hash")}
            forged["event_id"] = f"{t}:{uuid.uuid4()}"
            r = c.post("/v1/events/batch", json=[event(t), forged])
            assert r.status_code == 422, i
            assert r.json()["message"].startswith("event 1: source_type 'thoth_*' is reserved")
        forged_type = event(t, event_type="approval_resolved", content="send_email approved by user:ciso")
        r = c.post("/v1/events/batch", json=[forged_type])
        assert r.status_code == 422 and r.json()["message"].startswith("event 0: event_type 'APPROVAL_*'")
        camel = event(t, sourceType="Thoth_Approval")
        del camel["source_type"]  # (snake_case wins when both are sent)
        r = c.post("/v1/events/batch", json={"events": [event(t), camel]})
        assert r.status_code == 422 and "event 1" in r.json()["message"]
        # Near misses are ordinary events.
        fine = [event(t, session=sid, event_type="APPROVALS_LISTED"), event(t, session=sid, source_type="thoth")]
        assert c.post("/v1/events/batch", json=fine).json()["accepted"] == 2
        after = admin.get(f"/v1/sessions/{sid}").json()["events"]
    assert [e["event_id"] for e in after] == [e["event_id"] for e in server_events] + [e["event_id"] for e in fine]


# ---- the key that sent an event ---------------------------------------------------------------


def test_events_record_the_key_that_sent_them(server: Server) -> None:
    t = tenant()
    sdk = server.store.create_key(t, "sdk")
    ingest = server.store.create_key(t, "ingest")
    sid = f"s-{uuid.uuid4().hex[:6]}"
    with server.client(sdk["key"]) as c:
        # A client-sent ingest_key_id (either spelling) is ignored: the server sets it.
        r = c.post("/v1/events/batch", json=[event(t, session=sid, ingest_key_id="admin-key"),
                                             event(t, session=sid, ingestKeyId="admin-key")])
        assert r.json()["accepted"] == 2
    with server.client() as c:
        r = c.post("/v1/events/batch", json=[event(t, session=sid)],
                   headers={"X-Thoth-Event-Ingest-Token": ingest["key"]})
        assert r.json()["accepted"] == 1
    rows = stored_events(server, t)
    assert [row[2] for row in rows] == [sdk["key_id"], sdk["key_id"], ingest["key_id"]]
    assert all("ingest_key_id" not in row[3] and "admin-key" not in row[3] for row in rows)
    for row in rows:  # the id only: no part of any secret is stored with the events
        assert sdk["key"].split("_", 2)[2] not in row[3] and ingest["key"].split("_", 2)[2] not in row[3]
    with server.client(server.key(t, "viewer")) as v:
        events = v.get(f"/v1/sessions/{sid}").json()["events"]
        assert [e["ingest_key_id"] for e in events] == [row[2] for row in rows]
        assert v.get("/v1/audit/verify").json()["verified"] is True
    assert cli_verify(server, t).returncode == 0


@pytest.mark.parametrize("tamper", ["change", "clear", "move"])
def test_verify_detects_a_changed_key_id(server: Server, tamper: str) -> None:
    t = tenant()
    key = server.store.create_key(t, "sdk")
    other = server.store.create_key(t, "sdk")
    with server.client(key["key"]) as c:
        assert c.post("/v1/events/batch", json=[event(t) for _ in range(4)]).json()["accepted"] == 4
    assert cli_verify(server, t).returncode == 0
    with server.store.db.transaction() as conn:
        if tamper == "change":  # blame another key for event 2
            conn.execute("UPDATE events SET ingest_key_id = ? WHERE tenant_id = ? AND chain_index = 2",
                         (other["key_id"], t))
        elif tamper == "clear":  # make event 2 look like a record from before key ids
            conn.execute("UPDATE events SET ingest_key_id = NULL WHERE tenant_id = ? AND chain_index = 2", (t,))
        else:  # or into the body, where a reader might look for it
            body = conn.one("SELECT body FROM events WHERE tenant_id = ? AND chain_index = 2", (t,))[0]
            conn.execute("UPDATE events SET ingest_key_id = NULL, body = ? WHERE tenant_id = ? AND chain_index = 2",
                         (body[:-1] + f',"ingest_key_id":"{other["key_id"]}"}}', t))
    with server.client(server.key(t, "viewer")) as v:
        result = v.get("/v1/audit/verify").json()
    assert result["verified"] is False and result["breach"]["type"] == "edited_record"
    assert result["breach"]["chain_index"] == 2
    proc = cli_verify(server, t)
    assert proc.returncode == 1 and "BROKEN" in proc.stderr and "Traceback" not in proc.stderr


# ---- chains written before key ids ------------------------------------------------------------

OLD_REVISION = "0004_lean_decision_indexes"  # the schema before events had ingest_key_id


def _migrate_to(url: str, revision: str) -> None:
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from thoth.server import migrate
    from thoth.server.db import sqlalchemy_url

    cfg = Config()
    cfg.set_main_option("script_location", str(migrate._SCRIPTS))
    engine = sa.create_engine(sqlalchemy_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            conn.commit()
    finally:
        engine.dispose()


def _write_old_chain(url: str, home: Path, t: str, count: int) -> list[str]:
    """Events as the server stored them before key ids: hash = SHA-256 of the body, signed head."""
    signer = audit.Signer(home / "audit-signing-key.pem")  # the key the server will start with
    db = Database(url)
    ids, prev = [], audit.GENESIS
    try:
        with db.transaction() as conn:
            conn.execute("INSERT INTO tenants (tenant_id, created_at) VALUES (?, ?)", (t, 1.0))
            for i in range(count):
                event_id = f"{t}:old-{i}"
                # Event 1 carries a field a client could send then: it names no key now.
                record = {"event_id": event_id, "tenant_id": t, "session_id": "old", "event_type": "TOOL_CALL_PRE",
                          "tool_name": "search", "ingested_at": "2026-01-01T00:00:00Z", "chain_index": i,
                          "previous_hash": prev, **({"ingest_key_id": "forged"} if i == 1 else {})}
                body = audit.canonical(record)
                h = audit.digest(body)
                conn.execute("INSERT INTO events (tenant_id, chain_index, event_id, session_id, agent_id, event_type,"
                             " tool_name, occurred_at, ingested_at, previous_hash, hash, body)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (t, i, event_id, "old", None, "TOOL_CALL_PRE", "search", None, record["ingested_at"],
                              prev, h, body.decode()))
                ids.append(event_id)
                prev = h
            conn.execute("INSERT INTO chain_heads (tenant_id, chain_index, hash, signature, public_key, signed_at)"
                         " VALUES (?, ?, ?, ?, ?, ?)",
                         (t, count - 1, prev, signer.sign(t, count - 1, prev), signer.public_key_hex, 1.0))
    finally:
        db.close()
    return ids


@pytest.fixture(params=["sqlite", "postgres"])
def old_database(request: Any, tmp_path: Path) -> Iterator[str]:
    """A database at the schema before this change (fresh for each test: it gets upgraded)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
    else:
        with pg_schema("thoth_old") as url:
            yield url


def test_an_old_chain_still_verifies_after_the_upgrade(old_database: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    t = tenant()
    _migrate_to(old_database, OLD_REVISION)
    old_ids = _write_old_chain(old_database, home, t, 3)
    server = start_server(old_database, home)  # migrates to head on start
    try:
        assert cli_verify(server, t).returncode == 0
        key = server.store.create_key(t, "sdk")
        with server.client(key["key"]) as c:
            new = [event(t, session="old") for _ in range(3)]
            assert c.post("/v1/events/batch", json=new).json()["accepted"] == 3
        with server.client(server.key(t, "viewer")) as v:
            result = v.get("/v1/audit/verify").json()
            assert result["verified"] is True and result["records_checked"] == 6
            events = v.get("/v1/sessions/old").json()["events"]
        assert [e["event_id"] for e in events] == old_ids + [e["event_id"] for e in new]
        # Old records name no key (not even the one a client once wrote into its body); new ones do.
        assert [e["ingest_key_id"] for e in events] == [None] * 3 + [key["key_id"]] * 3
        assert cli_verify(server, t).returncode == 0

        # An old record given a key id afterwards no longer matches its hash.
        with server.store.db.transaction() as conn:
            conn.execute("UPDATE events SET ingest_key_id = ? WHERE tenant_id = ? AND chain_index = 0",
                         (key["key_id"], t))
        proc = cli_verify(server, t)
        assert proc.returncode == 1 and "edited_record" in proc.stdout + proc.stderr
    finally:
        stop_server(server)
