"""Group commit: one writer per process turns many concurrent writes into one transaction.

Two ways in:

- `await writer.submit(job)`: the caller waits until the transaction holding the job has
  committed. Event batches, step-up holds (a client polls them, maybe through another process)
  and decisions with a dedup key use it: they are acknowledged only when durable.
- `await writer.record(job)`: write-behind, for plain decisions. The job joins the next group
  commit and the caller goes on at once, so a decision is answered without waiting for its
  commit (the commit runs after the answer is on the wire). Nothing is dropped: a job whose
  transaction fails for want of the database is queued again; past `MAX_BEHIND` queued jobs,
  `record` waits like `submit` (back-pressure, and a 503 if the database stays down). What a
  kill -9 can lose is the last group commit not yet written (under a millisecond of decisions).

`await writer.settled()` waits until everything queued before it has committed: the control
plane calls it first, so a read sees the decisions this process has answered.

Both writers run on the event loop, not in a thread: a writer thread pays a GIL hand-off (up to
the interpreter's switch interval) after every database round trip, which made a PostgreSQL
transaction take ~8 ms under load.

- SQLite (`InlineWriter`): writes cost microseconds and never wait on a network, so every request
  handled in one loop iteration joins one transaction, written synchronously when the loop gets
  to it (WAL, synchronous=NORMAL: a commit survives a crash of the process; the last commits
  before a power loss may not).
- PostgreSQL (`Writer`): one task with psycopg's async connection in pipeline mode; while a
  transaction is in flight, the next group collects. Round trips are awaited, so the loop keeps
  serving requests. The chain head row (SELECT ... FOR UPDATE, held to the commit) is the
  per-tenant lock that keeps chain indexes unique across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any

import orjson

from thoth.server.db import Connection, Database, psycopg_conninfo
from thoth.server.journal import Journal
from thoth.server.store import Store, SyncOps, WriteContext, run_now

log = logging.getLogger("thoth.server.writer")
_MAX_BATCH = 512  # jobs per transaction
MAX_BEHIND = 4 * _MAX_BATCH  # write-behind jobs queued before `record` waits for the commit
# How long write-behind decisions may wait for company before their commit (nobody waits for
# them; the journal has them). At one connection a commit per decision cost more CPU than the
# decision, and the next request waited for it; now ~10 share one. On PostgreSQL a transaction
# is ~0.3 ms of psycopg work on the event loop, so decisions wait longer there: with 2 ms the
# one-connection p50 was 0.29-0.40 ms, with 10 ms 0.16-0.17 ms (bench_enforce.py). Other
# processes still see a decision well within the ~30 ms that `Core._history` waits for it.
COMMIT_DELAY = 0.002
PG_COMMIT_DELAY = 0.010
# After another writer appended to a tenant's chain, this process reads the head before it
# appends, for this long (a guess that fails costs a transaction).
CONTENDED_SECONDS = 5.0
_RECONNECT_DELAYS = (0.1, 0.5, 1.0)
_MAX_JSON_BYTES = 64 << 20  # rows per insert statement, as JSON (PostgresOps.copy)
_JSON_INSERTS: dict[tuple[str, tuple[str, ...]], str] = {}  # (table, columns) -> SQL; same in every schema


class StorageUnavailable(RuntimeError):
    """The database cannot be written now; the request answers 503 (the client may retry)."""


class PostgresOps:
    """The same operations over psycopg's AsyncConnection in pipeline mode: statements whose
    answer is not needed are only queued, and go out with the next one that waits for an answer
    (or with the commit). Under load every round trip of the writer also waits for the loop to
    get back to it, so round trips, not the database, bounded throughput (8 per transaction)."""

    postgres = True

    def __init__(self, conn: Any, pipeline: Any) -> None:
        self.conn = conn
        self.pipeline = pipeline

    async def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        await self.conn.execute(sql.replace("?", "%s"), params)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = await self.conn.execute(sql.replace("?", "%s"), params)
        await self.pipeline.sync()
        return int(cur.rowcount)

    async def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = await self.conn.execute(sql.replace("?", "%s"), params)
        return await cur.fetchone()

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        cur = await self.conn.execute(sql.replace("?", "%s"), params)
        return list(await cur.fetchall())

    async def query(self, sql: str, params: Sequence[Any] = (), prepare: bool | None = None) -> Any:
        """Queue a query without waiting for its answer; `fetch(handle)` waits for the rows.
        prepare=False: planned at every execution (psycopg prepares a statement at its 5th)."""
        return await self.conn.execute(sql.replace("?", "%s"), params, prepare=prepare)

    async def fetch(self, handle: Any) -> list[Any]:
        return list(await handle.fetchall())

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        async with self.conn.cursor() as cur:
            await cur.executemany(sql.replace("?", "%s"), rows)

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
            # Each value is cast to its column's type, read from the catalog once per process
            # (without the length of varchar(n): the assignment then still refuses a value too long).
            types = dict(await self.all("SELECT attname, atttypid::regtype::text FROM pg_attribute"
                                        " WHERE attrelid = ?::regclass AND attnum > 0 AND NOT attisdropped",
                                        (table,)))
            values = ", ".join(f"(r->>{i})::{types[c]}" for i, c in enumerate(columns))
            sql = _JSON_INSERTS[key] = (f"INSERT INTO {table} ({', '.join(columns)})"
                                        f" SELECT {values} FROM jsonb_array_elements(?::jsonb) AS r")
        return sql


# A queued job and the future its caller waits on (None: write-behind, nobody waits).
Item = tuple[Any, "asyncio.Future[Any] | None"]


def _resolve(batch: list[Item], results: list[Any]) -> None:
    for (_, fut), result in zip(batch, results, strict=True):
        if fut is not None and not fut.done():
            fut.set_result(result)


def _fail(item: Item, exc: BaseException) -> bool:
    """A job that fails on its own (not for want of the database). False if nobody was told."""
    job, fut = item
    if fut is None:
        row = getattr(job, "row", None) or ("?",)
        log.error("write-behind job failed, not recorded: %r (decision %s)", exc, row[0])
        return False
    log.error("write failed: %r", exc)
    if not fut.done():
        fut.set_exception(RuntimeError(f"storage write failed: {exc}"))
    return True


class _GroupCommit:
    """The queue both writers share: `submit`, `record` (write-behind) and `settled`."""

    def __init__(self, db: Database, store: Store) -> None:
        self.db = db
        self.store = store
        self._pending: list[Item] = []
        self.unrecorded = 0  # write-behind jobs that failed on their own (logged; see /metrics)
        self._behind = 0  # decisions that had to wait for their commit (back-pressure)
        self.journal: Journal | None = None  # set by the server: write-behind jobs go there first
        self._journaled: asyncio.Future[bool] | None = None  # resolved when the buffered records are written

    def _schedule(self, urgent: bool = True) -> None:
        """Have the queue written: at once if someone waits for it (urgent), else within
        COMMIT_DELAY, so that write-behind decisions arriving meanwhile share the commit."""
        raise NotImplementedError

    def _busy(self) -> bool:
        return False

    async def submit(self, job: Any) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((job, fut))
        self._schedule()
        return await fut

    async def record(self, job: Any) -> None:
        if len(self._pending) >= MAX_BEHIND:  # the database is behind (or down): wait for this one
            self._behind += 1
            if self._behind in (1, 1000) or self._behind % 100_000 == 0:
                log.warning("the database is %d decisions behind: answering after the commit (%d times so far)",
                            len(self._pending), self._behind)
            await self.submit(job)
            return
        self._pending.append((job, None))
        if self.journal is None:
            self._schedule(urgent=False)
            return
        # The record reaches the journal before the answer is sent (a killed process's next start
        # stores it): one write per loop iteration for all the decisions made in it.
        self.journal.add(job)
        if self._journaled is None:
            self._journaled = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(self._write_journal)
        if not await self._journaled:  # the journal could not be written: wait for the commit
            await self.settled()

    def _write_journal(self) -> None:
        assert self.journal is not None and self._journaled is not None
        done, self._journaled = self._journaled, None
        try:
            self.journal.write()
            done.set_result(True)
        except OSError as exc:
            log.warning("decision journal not written (%s): answering after the commit", exc)
            done.set_result(False)
        # Scheduled after the wake-ups of the requests just journaled: their answers go out first.
        self._schedule(urgent=False)

    async def settled(self) -> None:
        if self._pending or self._busy():
            await self.submit(None)  # a barrier: writes nothing, resolves once all before it committed

    def _done(self, batch: list[Item], results: list[Any]) -> None:
        _resolve(batch, results)
        if self.journal is not None and self.journal.pending:
            behind = sum(1 for _, fut in batch if fut is None)
            if behind:
                self.journal.committed(behind)

    def _lost(self, item: Item, exc: BaseException) -> None:
        if not _fail(item, exc):
            self.unrecorded += 1
            if self.journal is not None:
                self.journal.committed(1)


class InlineWriter(_GroupCommit):
    """Group commit inside the event loop, for SQLite (see the module docstring)."""

    CHECKPOINT_SECONDS = 0.5
    RETRY_SECONDS = 0.2

    def __init__(self, db: Database, store: Store) -> None:
        super().__init__(db, store)
        self._scheduled = False  # a flush is due in this loop iteration
        self._timer: asyncio.TimerHandle | None = None  # a flush due within COMMIT_DELAY
        self._conn: Connection | None = None
        self._stopping = threading.Event()
        self._checkpointer: threading.Thread | None = None

    def start(self) -> None:
        # SQLite checkpoints the WAL inside the commit that crosses 1000 pages, with an fsync:
        # a 4 ms stall of the event loop every ~100 commits (the p99). A thread checkpoints
        # instead (sqlite releases the GIL while it copies and syncs), for every connection of
        # the process: the pool's too (analytics syncs, control-plane writes).
        self.db.checkpoint_in_background()
        self._conn = self.db.connect()
        self._stopping.clear()
        self._checkpointer = threading.Thread(target=self._checkpoint_forever, name="thoth-checkpoint", daemon=True)
        self._checkpointer.start()

    def _checkpoint_forever(self) -> None:
        conn = self.db.connect()
        try:
            while not self._stopping.wait(self.CHECKPOINT_SECONDS):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except Exception:  # busy or locked: the next round catches up
                    log.debug("WAL checkpoint skipped", exc_info=True)
        finally:
            conn.close()

    async def drain(self) -> None:
        if self._pending:
            self._flush()

    def stop(self) -> None:
        if self._pending:
            self._flush()
        self._stopping.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=10)
            self._checkpointer = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _schedule(self, urgent: bool = True) -> None:
        # Every request handled in this loop iteration joins the transaction; it is written after
        # they have sent their answers (the callback runs once the current task step is done).
        if self._scheduled:
            return
        loop = asyncio.get_running_loop()
        if urgent:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._scheduled = True
            loop.call_soon(self._flush)
        elif self._timer is None:
            self._timer = loop.call_later(COMMIT_DELAY, self._flush)

    async def settled(self) -> None:
        if self._pending:
            self._flush()  # a SQLite commit takes microseconds: write now rather than wait a turn

    def _flush(self) -> None:
        self._scheduled = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        for i in range(0, len(batch), _MAX_BATCH):
            self._write(batch[i:i + _MAX_BATCH])

    def _write(self, batch: list[Item]) -> None:
        assert self._conn is not None
        conn = self._conn
        try:
            conn.begin_write()
            results = run_now(self.store.write_batch(SyncOps(conn), [job for job, _ in batch]))
            conn.commit()
        except Exception as exc:
            conn.rollback()
            if len(batch) > 1:
                for item in batch:  # isolate the failing job: retry each on its own
                    self._write([item])
            elif batch[0][1] is None and isinstance(exc, sqlite3.OperationalError):
                # Locked by another process past the busy timeout, disk full, I/O error: keep the
                # decision and try again shortly (record() waits once too many are queued).
                log.warning("write-behind job queued again: %s", exc)
                self._pending.insert(0, batch[0])
                asyncio.get_running_loop().call_later(self.RETRY_SECONDS, self._schedule)
            else:
                self._lost(batch[0], exc)
            return
        self._done(batch, results)


class Writer(_GroupCommit):
    """Group commit for PostgreSQL: one task on the event loop with psycopg's async connection."""

    DRAIN_SECONDS = 10.0

    def __init__(self, db: Database, store: Store) -> None:
        super().__init__(db, store)
        self._wake: asyncio.Event | None = None
        self._urgent: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None
        self._writing = False
        # tenant -> (chain_index, hash) of the chain head this process committed last; a tenant
        # another writer appended to is left out until _contended says otherwise.
        self._heads: dict[str, tuple[int, str]] = {}
        self._contended: dict[str, float] = {}  # tenant -> until when its head is read first again

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()  # someone waits for the queue's commit: no commit delay
        self._task = asyncio.get_running_loop().create_task(self._run(), name="thoth-writer")

    def _schedule(self, urgent: bool = True) -> None:
        assert self._wake is not None and self._urgent is not None, "writer not started"
        self._wake.set()
        if urgent:
            self._urgent.set()

    def _busy(self) -> bool:
        return self._writing

    async def drain(self) -> None:
        """Write what is queued and close the connection (server shutdown)."""
        deadline = asyncio.get_running_loop().time() + self.DRAIN_SECONDS
        while (self._pending or self._writing) and self._task is not None and not self._task.done():
            if asyncio.get_running_loop().time() > deadline:  # the database is gone: stop() reports the loss
                break
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._conn is not None:  # not drained: drop the socket without a round trip
            with contextlib.suppress(Exception):
                self._conn.pgconn.finish()
            self._conn = None
        behind = sum(1 for _, fut in self._pending if fut is None)
        if behind:
            log.error("server stopped without draining: %d queued decisions not recorded", behind)
        for _, fut in self._pending:
            if fut is not None and not fut.done():
                fut.set_exception(RuntimeError("server shutting down"))
        self._pending = []

    async def _connect(self) -> Any:
        """The writer's connection, reopened if it was lost (a restarted or failed-over database, an
        administrator terminating the backend). None when the database stays unreachable."""
        import psycopg

        if self._conn is not None and not self._conn.closed:
            return self._conn
        self._conn = None
        # Named after the process, so an operator (or a test) can find this connection.
        conninfo = psycopg.conninfo.make_conninfo(psycopg_conninfo(self.db.url),
                                                  application_name=f"thoth-writer-{os.getpid()}")
        for delay in _RECONNECT_DELAYS:
            try:
                self._conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True, connect_timeout=5)
                return self._conn
            except Exception as exc:
                log.warning("writer cannot connect: %s", exc)
                await asyncio.sleep(delay)
        return None

    async def _run(self) -> None:
        assert self._wake is not None
        assert self._urgent is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._urgent.is_set():  # only write-behind decisions: let a few more join
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._urgent.wait(), PG_COMMIT_DELAY)
            self._urgent.clear()
            while self._pending:
                batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
                self._writing = True
                try:
                    await self._write(batch)
                finally:
                    self._writing = False

    def _remember_heads(self, heads: dict[str, tuple[int, str]]) -> None:
        """The chain heads as of the commit just done (their rows were locked), but not of the
        tenants another writer appended to lately: those are read first for a while."""
        ts = time.monotonic()
        for tenant, head in heads.items():
            if tenant in self._contended:
                if self._contended[tenant] > ts:
                    continue
                del self._contended[tenant]
            self._heads[tenant] = head

    def _unavailable(self, batch: list[Item], message: str) -> None:
        """The database cannot be reached: waiting callers answer 503; write-behind jobs are kept
        and go out with the next transaction (the reconnect delays pace the retries)."""
        behind = [item for item in batch if item[1] is None]
        for _, fut in batch:
            if fut is not None and not fut.done():
                fut.set_exception(StorageUnavailable(message))
        if behind:
            self._pending[:0] = behind

    async def _write(self, batch: list[Item], retry: bool = True) -> None:
        conn = await self._connect()
        if conn is None:
            self._unavailable(batch, "the database is unreachable; retry later")
            return
        # Tenants whose chain this process appended to last are appended to again without
        # reading the head first (one round trip less while it is locked).
        ctx = WriteContext(known_heads=self._heads)
        try:
            # BEGIN and COMMIT are queued like the other statements. psycopg's transaction() would
            # nest two more pipelines, whose exits each Sync and wait: 3 round trips instead of 1,
            # each also waiting for the busy loop (under load, ~3x the transaction's latency).
            async with conn.pipeline() as pipeline:
                await conn.execute("BEGIN")
                results = await self.store.write_batch(PostgresOps(conn, pipeline), [job for job, _ in batch], ctx)
                await conn.execute("COMMIT")
            # Leaving the pipeline waited for the COMMIT: only now is the batch durable.
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if ctx.guessed and not (conn.closed or conn.broken):
                # Another process appended to a chain meanwhile (the next index is taken), or an
                # event id was stored before: the same batch again, reading the heads and the ids.
                for tenant in ctx.guessed:
                    self._heads.pop(tenant, None)
                    self._contended[tenant] = time.monotonic() + CONTENDED_SECONDS
                with contextlib.suppress(Exception):
                    await conn.rollback()
                await self._write(batch, retry)
                return
            if conn.closed or conn.broken:
                # The same batch again on a new connection. Had the commit gone through with only its
                # answer lost, the retry stores nothing twice: decision ids are unique and events are
                # deduplicated on event_id.
                log.warning("writer lost its database connection: %s", exc)
                if retry:
                    await self._write(batch, retry=False)
                    return
                self._unavailable(batch, "lost the database connection; retry later")
                return
            with contextlib.suppress(Exception):  # the transaction failed or never committed: end it
                await conn.rollback()
            if len(batch) == 1:
                self._lost(batch[0], exc)
                return
            for item in batch:  # isolate the failing job: retry each on its own
                await self._write([item])
            return
        self._remember_heads(ctx.heads)
        self._done(batch, results)
