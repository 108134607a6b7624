"""PostgresOps.copy: many rows in one statement, as JSON; every value must come back as it went in."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from thoth.server import writeops, writer
from thoth.server.migrate import upgrade
from thoth.server.store import DECISION_COLUMNS, EVENT_COLUMNS

TRICKY = ['quote " and backslash \\ and \\u0041', "line\nbreak\ttab\r", "é ü 漢字 🙂 \u2028\u2029", '{"a": 1}',
          "[1, 2]", "12", "", "null", "x" * 5000, "\x01\x1f control"]


async def _copy_and_read(url: str, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]],
                         key: str, ids: list[Any]) -> list[tuple[Any, ...]]:
    import psycopg

    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        async with conn.pipeline() as pipeline, conn.transaction():
            await writer.PostgresOps(conn, pipeline).copy(table, columns, rows)
        cur = await conn.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE {key} = ANY(%s) ORDER BY {key}",
                                 [ids])
        return [tuple(r) for r in await cur.fetchall()]
    finally:
        await conn.close()


def _decision(i: int, text: str, number: float) -> tuple[Any, ...]:
    row: dict[str, Any] = dict.fromkeys(DECISION_COLUMNS)
    row.update(decision_id=f"d-{uuid.uuid4().hex[:12]}-{i:04d}", tenant_id="bulk", session_id=text,
               tool_name=text, tool_args=text, decision="ALLOW", risk_score=number, decided_at=number, response=text)
    return tuple(row[c] for c in DECISION_COLUMNS)


@pytest.mark.postgres
def test_values_round_trip_exactly(pg_schema_url: str) -> None:
    upgrade(pg_schema_url)
    numbers = [0.1, 1e-7, 1764147600.1234567, 1e300, -0.0, 5e-324, 2.0**53 + 2, 1 / 3]
    rows = [_decision(i, text, numbers[i % len(numbers)]) for i, text in enumerate(TRICKY * 3)]
    rows[1] = tuple(None if c in ("tool_args", "risk_score") else v for c, v in zip(DECISION_COLUMNS, rows[1],
                                                                                       strict=True))
    ids = [r[0] for r in rows]
    back = asyncio.run(_copy_and_read(pg_schema_url, "decisions", DECISION_COLUMNS, rows, "decision_id", ids))
    assert back == sorted(rows)  # (-0.0 comes back as 0.0: jsonb numbers are decimals)

    events = [("bulk", 2**62 + i, f"e-{uuid.uuid4().hex}", text, None, "T", "t", None, "now", "0" * 64, "1" * 64, text,
               text[:64] or None) for i, text in enumerate(TRICKY)]
    back = asyncio.run(_copy_and_read(pg_schema_url, "events", EVENT_COLUMNS, events, "chain_index",
                                      [e[1] for e in events]))
    assert back == events


@pytest.mark.postgres
def test_too_long_values_are_refused_not_truncated(pg_schema_url: str) -> None:
    import psycopg

    upgrade(pg_schema_url)
    row = list(_decision(0, "x", 1.0))
    row[DECISION_COLUMNS.index("decision")] = "D" * 17  # varchar(16)
    with pytest.raises(psycopg.errors.StringDataRightTruncation):
        asyncio.run(_copy_and_read(pg_schema_url, "decisions", DECISION_COLUMNS, [tuple(row)], "decision_id", []))


@pytest.mark.postgres
def test_large_inserts_are_split(pg_schema_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    upgrade(pg_schema_url)
    monkeypatch.setattr(writeops, "_MAX_JSON_BYTES", 2000)  # ~3 rows per statement
    rows = [_decision(i, f"split-{i}", float(i)) for i in range(40)]
    back = asyncio.run(_copy_and_read(pg_schema_url, "decisions", DECISION_COLUMNS, rows, "decision_id",
                                      [r[0] for r in rows]))
    assert back == sorted(rows)


@pytest.mark.postgres
def test_a_failing_job_is_isolated_and_the_writer_goes_on(pg_schema_url: str, tmp_path: Path) -> None:
    from thoth.server.audit import Signer
    from thoth.server.db import Database
    from thoth.server.records import DecisionRecord, DecisionRow, EventBatch
    from thoth.server.store import Store

    upgrade(pg_schema_url)
    store = Store(Database(pg_schema_url), Signer(tmp_path / "chain.key"))
    t = f"iso-{uuid.uuid4().hex[:6]}"
    row = list(_decision(0, "x", 1.0))
    row[DECISION_COLUMNS.index("decision")] = "D" * 17  # varchar(16): the database refuses the row
    bad = DecisionRecord(DecisionRow(*row))

    def batch(i: int) -> EventBatch:
        return EventBatch(t, [{"event_id": f"{t}:{i}", "tenant_id": t, "event_type": "TOOL_CALL_PRE"}])

    async def go() -> tuple[list[Any], Any]:
        w = writer.Writer(store.db, store)
        w.start()
        try:  # submitted together: one transaction, which fails; each job is then tried on its own
            together = await asyncio.gather(w.submit(batch(0)), w.submit(bad), w.submit(batch(1)),
                                            return_exceptions=True)
            return together, await w.submit(batch(2))  # the connection is not left in a failed transaction
        finally:
            await w.drain()

    together, after = asyncio.run(go())
    assert together[0].accepted == 1 and together[2].accepted == 1 and after.accepted == 1
    assert isinstance(together[1], RuntimeError) and "storage write failed" in str(together[1])
    chain = store.verify_chain(t)
    assert chain["verified"] is True and chain["records_checked"] == 3
    store.db.close()
