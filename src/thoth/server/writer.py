"""Group commit: one writer thread per process turns many concurrent writes into one transaction.

Request handlers `await writer.submit(job)`; the answer is sent only after the transaction that
holds the job has committed, so an acknowledged decision or event batch is never lost, while
64 concurrent requests cost one commit instead of 64.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sys
import threading
import time
from typing import Any

from thoth.server.db import Connection, Database
from thoth.server.store import Store

log = logging.getLogger("thoth.server.writer")
_STOP = object()
_MAX_BATCH = 512
_RECONNECT_DELAYS = (0.1, 0.5, 1.0)


class StorageUnavailable(RuntimeError):
    """The database cannot be written now; the request answers 503 (the client may retry)."""


class Writer:
    def __init__(self, db: Database, store: Store) -> None:
        self.db = db
        self.store = store
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: Connection | None = None

    def start(self) -> None:
        self._conn = self._connect()
        # Each PostgreSQL round trip releases the GIL; getting it back waits for the event loop's
        # switch interval (5 ms by default), which turns a transaction of 20 round trips into
        # ~100 ms. A short interval keeps the writer's transactions near network speed.
        sys.setswitchinterval(0.0002)
        self._thread = threading.Thread(target=self._run, name="thoth-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=10)
            self._thread = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def submit(self, job: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.put((job, fut, loop))
        return await fut

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            stop = False
            while len(batch) < _MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            self._write(batch)
            if stop:
                return

    def _connect(self) -> Connection:
        # Named after the process, so an operator (or a test) can find this connection.
        return self.db.connect(application_name=f"thoth-writer-{os.getpid()}")

    def _connection(self) -> Connection | None:
        """The writer's connection, reopened if it was lost (a restarted or failed-over database,
        an administrator terminating the backend). None when the database stays unreachable."""
        if self._conn is not None and not self._conn.broken:
            return self._conn
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        for delay in _RECONNECT_DELAYS:
            try:
                self._conn = self._connect()
                log.warning("writer reconnected to the database")
                return self._conn
            except Exception as exc:
                log.warning("writer cannot reconnect: %s", exc)
                time.sleep(delay)
        return None

    def _write(self, batch: list[tuple[Any, asyncio.Future[Any], asyncio.AbstractEventLoop]],
               retry: bool = True) -> None:
        conn = self._connection()
        if conn is None:
            for item in batch:
                _settle(item, None, StorageUnavailable("the database is unreachable; retry later"))
            return
        try:
            conn.begin_write()
            results = self.store.write_batch(conn, [job for job, _, _ in batch])
            conn.commit()
        except Exception:
            if conn.broken:
                # The same batch again on a new connection. Had the commit gone through with only its
                # answer lost, the retry stores nothing twice: decision ids are unique and events are
                # deduplicated on event_id.
                if retry:
                    self._write(batch, retry=False)
                else:
                    for item in batch:
                        _settle(item, None, StorageUnavailable("lost the database connection; retry later"))
                return
            conn.rollback()
            if len(batch) == 1:
                log.exception("write failed")
                _settle(batch[0], None, RuntimeError("storage write failed"))
                return
            for item in batch:  # isolate the failing job: retry each on its own
                self._write([item])
            return
        # One wake-up per event loop for the whole batch, not one per request.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
        for (_, fut, loop), result in zip(batch, results, strict=True):
            by_loop.setdefault(loop, []).append((fut, result))
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(_resolve_all, settled)


def _resolve_all(settled: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for fut, result in settled:
        if not fut.done():
            fut.set_result(result)


def _settle(item: tuple[Any, asyncio.Future[Any], asyncio.AbstractEventLoop], result: Any,
            error: BaseException | None) -> None:
    _, fut, loop = item

    def done() -> None:
        if fut.done():
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)

    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(done)


class InlineWriter:
    """Group commit inside the event loop, for SQLite.

    SQLite writes cost tens of microseconds and never wait on a network, so doing them on the
    loop itself beats a writer thread: no GIL hand-offs (which add up to a 5 ms switch interval
    of latency under load) and no cross-thread wake-ups. Every request handled in one loop
    iteration joins the same transaction; answers go out only after its commit.
    """

    def __init__(self, db: Database, store: Store) -> None:
        self.db = db
        self.store = store
        self._pending: list[tuple[Any, asyncio.Future[Any]]] = []
        self._scheduled = False
        self._conn: Connection | None = None

    def start(self) -> None:
        self._conn = self.db.connect()

    def stop(self) -> None:
        if self._pending:
            self._flush()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def submit(self, job: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((job, fut))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if batch:
            self._write(batch)

    def _write(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        assert self._conn is not None
        conn = self._conn
        try:
            conn.begin_write()
            results = self.store.write_batch(conn, [job for job, _ in batch])
            conn.commit()
        except Exception as exc:
            conn.rollback()
            if len(batch) == 1:
                log.exception("write failed")
                if not batch[0][1].done():
                    batch[0][1].set_exception(RuntimeError(f"storage write failed: {exc}"))
                return
            for item in batch:
                self._write([item])
            return
        for (_, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(result)
