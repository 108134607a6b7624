"""The write operations of a group-commit transaction: one protocol, one class per engine.

`Store.write_batch` (and the chain appends of the control plane) are written once, as coroutines
over a `WriteOps`; each engine implements it:

- `SyncOps`, over a blocking `thoth.server.db.Connection` (SQLite's writer, the journal replay,
  control-plane transactions on either engine). Its coroutines never suspend: `run_now` runs
  them to their result.
- `PostgresOps`, over psycopg's AsyncConnection in pipeline mode (PostgreSQL's writer): `run`,
  `query` and `executemany` only queue a statement; `one`, `all`, `fetch` and `execute`'s row
  count wait for the answers, so a transaction costs about three round trips.

Where the SQL itself differs between the engines, the code asks `ops.dialect`
(thoth.server.dialect). Model: MLflow's `AbstractStore` and its SQL/file implementations, here
at the level of the statements a transaction sends rather than of whole entities, because the
store's logic (chain links, dedup, session counts) is the same on every engine.
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any, Protocol

import orjson

from thoth.server.db import Connection
from thoth.server.dialect import POSTGRES, Dialect

_MAX_JSON_BYTES = 64 << 20  # rows per insert statement, as JSON (PostgresOps.copy)
_JSON_INSERTS: dict[tuple[str, tuple[str, ...]], str] = {}  # (table, columns) -> SQL; same in every schema


class WriteOps(Protocol):
    """What a write transaction may do. SQL is written with `?` placeholders."""

    dialect: Dialect

    async def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Send a statement whose answer is not needed (may only be queued)."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Send a statement and wait for its row count (an upsert that inserted nothing: 0)."""

    async def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first row of a query, or None."""

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of a query."""

    async def query(self, sql: str, params: Sequence[Any] = (), prepare: bool | None = None) -> Any:
        """Send a query without waiting for its answer; `fetch(handle)` gives its rows.
        prepare=False: planned at every execution (PostgreSQL; ignored elsewhere)."""

    async def fetch(self, handle: Any) -> list[Any]:
        """The rows of a query sent with `query`."""

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement, once per row of parameters."""

    async def copy(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert many rows (in `columns` order) the engine's fastest way."""


class SyncOps:
    """`WriteOps` over a blocking connection (never suspends: run its coroutines with `run_now`)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dialect: Dialect = conn.dialect

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self.conn.execute(sql, params).rowcount)

    async def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.conn.execute(sql, params)

    async def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.one(sql, params)

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self.conn.all(sql, params)

    async def query(self, sql: str, params: Sequence[Any] = (), prepare: bool | None = None) -> Any:
        # The rows at once; `prepare` is left out: these connections run the control plane's few
        # writes and the SQLite writer, whose plans do not go stale the way PostgreSQL's may.
        return self.conn.all(sql, params)

    async def fetch(self, handle: Any) -> list[Any]:
        return list(handle)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    async def copy(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        marks = ", ".join("?" * len(columns))
        self.conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def run_now(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (the store's writes over SyncOps) to its result."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("a blocking write tried to suspend")


class PostgresOps:
    """`WriteOps` over psycopg's AsyncConnection in pipeline mode: statements whose answer is not
    needed are only queued, and go out with the next one that waits for an answer (or with the
    commit). Under load every round trip of the writer also waits for the loop to get back to it,
    so round trips, not the database, bounded throughput (8 per transaction)."""

    dialect: Dialect = POSTGRES

    def __init__(self, conn: Any, pipeline: Any) -> None:
        self.conn = conn
        self.pipeline = pipeline

    async def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        await self.conn.execute(self.dialect.sql(sql), params)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = await self.conn.execute(self.dialect.sql(sql), params)
        await self.pipeline.sync()
        return int(cur.rowcount)

    async def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = await self.conn.execute(self.dialect.sql(sql), params)
        return await cur.fetchone()

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        cur = await self.conn.execute(self.dialect.sql(sql), params)
        return list(await cur.fetchall())

    async def query(self, sql: str, params: Sequence[Any] = (), prepare: bool | None = None) -> Any:
        # psycopg prepares a statement at its 5th execution unless prepare=False.
        return await self.conn.execute(self.dialect.sql(sql), params, prepare=prepare)

    async def fetch(self, handle: Any) -> list[Any]:
        return list(await handle.fetchall())

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        async with self.conn.cursor() as cur:
            await cur.executemany(self.dialect.sql(sql), rows)

    async def copy(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert many rows with one statement: they travel as one JSON array of arrays, unpacked by
        the server. A pipelined executemany sends a Bind/Execute per row and adapts every value in
        Python (~10 us of client CPU per event row, ~20 us of server CPU); orjson writes the array
        in ~1.5 us a row and the server inserts it in ~15. COPY costs the same client CPU (~2 us
        less on the server) but cannot run in pipeline mode: the transaction would leave and
        re-enter it, 2-3 more round trips, each waiting for the busy event loop while the chain
        head is locked. (JSON has no NaN or infinity: they are stored as NULL, as SQLite stores NaN.)"""
        if not rows:
            return
        doc = orjson.dumps(rows)
        if len(doc) > _MAX_JSON_BYTES and len(rows) > 1:  # a jsonb value is capped at 256 MB
            half = len(rows) // 2
            await self.copy(table, columns, rows[:half])
            await self.copy(table, columns, rows[half:])
            return
        await self.run(await self._json_insert(table, columns), (doc.decode(),))

    async def _json_insert(self, table: str, columns: Sequence[str]) -> str:
        key = (table, tuple(columns))
        sql = _JSON_INSERTS.get(key)
        if sql is None:
            # Each value is cast to its column's type, read from the catalog once per process.
            types = dict(await self.all(POSTGRES.COLUMN_TYPES, (table,)))
            sql = _JSON_INSERTS[key] = POSTGRES.json_insert(table, columns, types)
        return sql


def _implements(sync: SyncOps, pg: PostgresOps) -> tuple[WriteOps, WriteOps]:
    """Never called: mypy checks here that both classes satisfy the protocol."""
    return sync, pg
