"""Group commit: one writer per process turns many concurrent writes into one transaction.

Two ways in:

- `await writer.submit(job)`: the caller waits until the transaction holding the job has
  committed. Event batches, step-up holds (a client polls them, maybe through another process)
  and decisions with a dedup key use it: they are acknowledged only when durable.
- `await writer.record(job)`: write-behind, for plain decisions. The job joins the next group
  commit and the caller goes on at once, so a decision is answered without waiting for its
  commit (the commit runs after the answer is on the wire). Nothing is dropped: a job whose
  transaction fails for want of the database is queued again; past `MAX_BEHIND` queued jobs,
  `record` waits like `submit` (back-pressure). What a kill -9 can lose is the last group
  commit not yet written (under a millisecond of decisions).

While PostgreSQL is unreachable (docs/adr/0102-database-outages.md) the writer retries every
RETRY_SECONDS on its own; meanwhile `submit` fails at once with StorageUnavailable (503) and
`record` keeps answering, up to `MAX_OUTAGE_BACKLOG` decisions held in memory and in the
journal, all committed once the database answers again. A transaction whose connection broke
may have committed before its answer was lost: its decisions are looked up before they are
written again, so none is stored twice.

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
from typing import Any

from thoth.server.db import (
    RETRY_SECONDS,
    Connection,
    Database,
    StorageUnavailable,
    cut_socket,
    is_unavailable,
)
from thoth.server.journal import Journal
from thoth.server.records import DecisionRecord
from thoth.server.store import Store, WriteContext
from thoth.server.writeops import PostgresOps, SyncOps, run_now

__all__ = ["MAX_BEHIND", "InlineWriter", "PostgresOps", "Writer"]

log = logging.getLogger("thoth.server.writer")
_MAX_BATCH = 512  # jobs per transaction
MAX_BEHIND = 4 * _MAX_BATCH  # write-behind jobs queued before `record` waits for the commit
# How long write-behind decisions may wait for company before their commit (nobody waits for
# them; the journal has them). At one connection a commit per decision cost more CPU than the
# decision, and the next request waited for it; now ~10 share one. On PostgreSQL a transaction
# is ~0.3 ms of psycopg work on the event loop, so decisions wait longer there: with 2 ms the
# one-connection p50 was 0.29-0.40 ms, with 10 ms 0.16-0.17 ms (bench_enforce.py). Other
# processes still see a decision well within the ~30 ms that `enforce.session_history` waits for it.
COMMIT_DELAY = 0.002
PG_COMMIT_DELAY = 0.010
# After another writer appended to a tenant's chain, this process reads the head before it
# appends, for this long (a guess that fails costs a transaction).
CONTENDED_SECONDS = 5.0
# Decisions answered while the database is unreachable, held (and journaled) for its return;
# past this many, enforce answers 503 too (~1 KB of memory each).
MAX_OUTAGE_BACKLOG = 50_000


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
        decision_id = job.row.decision_id if isinstance(job, DecisionRecord) else "?"
        log.error("write-behind job failed, not recorded: %r (decision %s)", exc, decision_id)
        return False
    log.error("write failed: %r", exc)
    if not fut.done():
        if is_unavailable(exc):  # e.g. SQLite locked past its busy timeout: 503, try again
            fut.set_exception(StorageUnavailable(f"the database cannot be written now ({exc}); retry shortly"))
        else:
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
        self.down = False  # the database could not be written lately (the writer retries on its own)

    def _schedule(self, urgent: bool = True) -> None:
        """Have the queue written: at once if someone waits for it (urgent), else within
        COMMIT_DELAY, so that write-behind decisions arriving meanwhile share the commit."""
        raise NotImplementedError

    def _busy(self) -> bool:
        return False

    def _refuse(self) -> None:
        raise StorageUnavailable("the database is unreachable; retry shortly")

    async def submit(self, job: Any) -> Any:
        if self.down:  # nobody waits for a database that is not there: 503 at once
            self._refuse()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((job, fut))
        self._schedule()
        return await fut

    @property
    def backlog(self) -> int:
        """Jobs queued or being written, not yet committed."""
        return len(self._pending) + self._in_flight

    _in_flight = 0  # jobs of the transaction being written (PostgreSQL)

    async def record(self, job: Any) -> None:
        if self.down and self.journal is not None:
            # The database is unreachable: answered decisions wait for it in the journal.
            if len(self._pending) >= MAX_OUTAGE_BACKLOG:
                self._refuse()
        elif len(self._pending) >= MAX_BEHIND:  # the database is behind: wait for this one
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
        # The journal could not be written: wait for the commit. Not during an outage: the
        # decision waits in memory, and a 503 would refuse a decision that is stored all the same.
        if not await self._journaled and not self.down:
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
        self._maybe_stored: set[str] = set()  # decision ids of transactions whose answer was lost

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
            log.error("server stopped without draining: %d queued decisions not committed (the journal keeps"
                      " them for the next start)", behind)
        for _, fut in self._pending:
            if fut is not None and not fut.done():
                fut.set_exception(RuntimeError("server shutting down"))
        self._pending = []

    async def _connect(self) -> Any:
        """The writer's connection, reopened if it was lost (a restarted or failed-over database, an
        administrator terminating the backend). One try, bounded by the connect timeout; None when
        the database cannot be reached (the run loop tries again RETRY_SECONDS later)."""
        import psycopg

        if self._conn is not None and not self._conn.closed:
            return self._conn
        self._conn = None
        # Named after the process, so an operator (or a test) can find this connection.
        conninfo = self.db.conninfo(application_name=f"thoth-writer-{os.getpid()}")
        try:
            self._conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        except Exception as exc:
            log.warning("writer cannot connect: %s", str(exc).splitlines()[0] if str(exc) else exc)
            self._set_down(exc)
            return None
        return self._conn

    def _set_down(self, exc: BaseException | str, connection_lost: bool = True) -> None:
        self.down = True
        if connection_lost:  # not a statement timeout on a live connection: reads fail fast too
            self.db.mark_down(exc)

    def _set_up(self) -> None:
        if self.down:
            log.warning("writer: the database answers again; %d queued jobs to write", len(self._pending))
        self.down = False
        self.db.mark_up()

    async def _run(self) -> None:
        assert self._wake is not None
        assert self._urgent is not None
        while True:
            if self.down:
                # Unreachable: try again shortly, whether or not anything is queued, so that
                # `submit` stops refusing as soon as the database is back.
                await asyncio.sleep(RETRY_SECONDS)
                if await self._connect() is None:
                    continue
                self._set_up()
            else:
                await self._wake.wait()
                self._wake.clear()
                if not self._urgent.is_set():  # only write-behind decisions: let a few more join
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._urgent.wait(), PG_COMMIT_DELAY)
                self._urgent.clear()
            while self._pending and not self.down:
                batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
                self._writing, self._in_flight = True, len(batch)
                try:
                    await self._write(batch)
                finally:
                    self._writing, self._in_flight = False, 0

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

    def _unavailable(self, batch: list[Item], message: str, exc: BaseException | str,
                     connection_lost: bool = True) -> None:
        """The database cannot be written: every caller waiting for a commit answers 503 now (those
        queued behind this batch too: the next try is RETRY_SECONDS away); write-behind jobs are
        kept, in order, for the next transaction."""
        self._set_down(exc, connection_lost)
        error = StorageUnavailable(message)
        behind = [item for item in batch if item[1] is None]
        for _, fut in batch + self._pending:
            if fut is not None and not fut.done():
                fut.set_exception(error)
        self._pending = behind + [item for item in self._pending if item[1] is None]

    async def _skip_stored(self, conn: Any, batch: list[Item]) -> list[Item]:
        """Drop the decisions of `batch` that a transaction whose answer was lost did commit."""
        doubt = [item for item in batch
                 if isinstance(item[0], DecisionRecord) and item[0].row.decision_id in self._maybe_stored]
        if not doubt:
            return batch
        ids = [item[0].row.decision_id for item in doubt]
        cur = await conn.execute("SELECT decision_id FROM decisions WHERE decision_id = ANY(%s)", (ids,))
        stored = {row[0] for row in await cur.fetchall()}
        self._maybe_stored.difference_update(ids)
        if not stored:
            return batch
        log.warning("writer: %d decisions of a transaction whose answer was lost were committed; not writing"
                    " them again", len(stored))
        done = [item for item in doubt if item[0].row.decision_id in stored]
        self._done(done, [True] * len(done))
        return [item for item in batch
                if not (isinstance(item[0], DecisionRecord) and item[0].row.decision_id in stored)]

    def _doubt(self, batch: list[Item]) -> None:
        """The connection broke during this batch's transaction: it may have committed."""
        self._maybe_stored.update(item[0].row.decision_id for item in batch
                                  if item[1] is None and isinstance(item[0], DecisionRecord))

    async def _write(self, batch: list[Item], retry: bool = True) -> None:
        conn = await self._connect()
        if conn is None:
            self._unavailable(batch, "the database is unreachable; retry shortly", self.db.last_error)
            return
        # Tenants whose chain this process appended to last are appended to again without
        # reading the head first (one round trip less while it is locked).
        ctx = WriteContext(known_heads=self._heads)
        # A partition answers nothing and psycopg would wait forever: past the statement timeout
        # (plus a grace, so the server's own timeout answers first) the socket is shut down.
        loop = asyncio.get_running_loop()
        watch = self.db.request_seconds
        timer = loop.call_later(watch, cut_socket, conn.pgconn.socket) if watch is not None else None
        try:
            if self._maybe_stored:  # (reassigned only once the look-up answered: see _failed)
                batch = await self._skip_stored(conn, batch)
            results = await self._transaction(conn, batch, ctx) if batch else []
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            timed_out = timer is not None and timer.when() <= loop.time()
            if timer is not None:
                timer.cancel()
            await self._failed(conn, batch, retry, exc, ctx, timed_out)
            return
        finally:
            if timer is not None:  # the descriptor may be reused once the connection is closed
                timer.cancel()
        self._remember_heads(ctx.heads)
        self._set_up()
        self._done(batch, results)

    async def _transaction(self, conn: Any, batch: list[Item], ctx: WriteContext) -> list[Any]:
        """One group commit of `batch`; the jobs' results."""
        # BEGIN and COMMIT are queued like the other statements. psycopg's transaction() would
        # nest two more pipelines, whose exits each Sync and wait: 3 round trips instead of 1,
        # each also waiting for the busy loop (under load, ~3x the transaction's latency).
        async with conn.pipeline() as pipeline:
            await conn.execute("BEGIN")
            results = await self.store.write_batch(PostgresOps(conn, pipeline), [job for job, _ in batch], ctx)
            await conn.execute("COMMIT")
        # Leaving the pipeline waited for the COMMIT: only now is the batch durable.
        return results

    async def _failed(self, conn: Any, batch: list[Item], retry: bool, exc: Exception, ctx: WriteContext,
                      timed_out: bool) -> None:
        """What a failed group commit does next: retry, wait for the database, or isolate a bad job."""
        broken = conn.closed or conn.broken
        if ctx.guessed and not broken:
            # Another process appended to a chain meanwhile (the next index is taken), or an
            # event id was stored before: the same batch again, reading the heads and the ids.
            for tenant in ctx.guessed:
                self._heads.pop(tenant, None)
                self._contended[tenant] = time.monotonic() + CONTENDED_SECONDS
            with contextlib.suppress(Exception):
                await conn.rollback()
            await self._write(batch, retry)
            return
        if broken:
            # Had the commit gone through with only its answer lost, the retry must not store its
            # decisions twice (events are deduplicated on event_id anyway).
            self._doubt(batch)
            with contextlib.suppress(Exception):
                await conn.close()
            self._conn = None
            log.warning("writer lost its database connection: %s", str(exc).splitlines()[0] if str(exc) else exc)
            if retry and not timed_out:  # a terminated backend: the same batch on a new connection
                await self._write(batch, retry=False)
                return
            self._unavailable(batch, "lost the database connection; retry shortly", exc)
            return
        with contextlib.suppress(Exception):  # the transaction failed or never committed: end it
            await conn.rollback()
        if is_unavailable(exc):  # a statement timeout, a database shutting down: not the jobs' fault
            self._unavailable(batch, "the database cannot be written now; retry shortly", exc,
                              connection_lost=False)
            return
        if len(batch) == 1:
            self._lost(batch[0], exc)
            return
        for i, item in enumerate(batch):  # isolate the failing job: retry each on its own
            if self.down:  # the database went away meanwhile: keep the rest for its return
                self._unavailable(batch[i:], "the database is unreachable; retry shortly", self.db.last_error)
                return
            await self._write([item])
