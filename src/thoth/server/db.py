"""Raw DB-API connections for SQLite and PostgreSQL, one SQL dialect.

Queries are written with `?` placeholders and the standard `ON CONFLICT` syntax both engines
share; for PostgreSQL the placeholders become `%s`. SQLAlchemy is used only for migrations:
the hot paths talk to sqlite3 / psycopg directly (measured 3-34 % faster).
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or opened."""


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql", "postgres:"))


def psycopg_conninfo(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest


def sqlalchemy_url(url: str) -> str:
    if is_postgres(url):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def sqlite_path(url: str) -> str:
    if not url.startswith("sqlite:///"):
        raise DatabaseUnavailable(f"unsupported database URL {url!r} (use sqlite:///PATH or postgresql://...)")
    return url[len("sqlite:///"):]


class Connection:
    """A thin wrapper: `execute` with `?` placeholders on either engine."""

    def __init__(self, raw: Any, postgres: bool) -> None:
        self.raw = raw
        self.postgres = postgres

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def execute(self, sql: str, params: Sequence[Any] = (), prepare: bool | None = None) -> Any:
        """`prepare=False`: PostgreSQL plans the query at every execution (see Store.session_history_rows)."""
        if self.postgres:
            return self.raw.execute(self._sql(sql), params, prepare=prepare)
        return self.raw.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if self.postgres:
            with self.raw.cursor() as cur:
                cur.executemany(self._sql(sql), rows)
        else:
            self.raw.executemany(sql, rows)

    def all(self, sql: str, params: Sequence[Any] = (), prepare: bool | None = None) -> list[Any]:
        return list(self.execute(sql, params, prepare).fetchall())

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.execute(sql, params).fetchone()

    def begin_write(self) -> None:
        # SQLite: take the write lock up front so concurrent writers queue instead of failing
        # half-way (several processes may share one file).
        if not self.postgres:
            self.raw.execute("BEGIN IMMEDIATE")

    def begin_snapshot(self) -> None:
        """Start a read-only transaction whose reads all see the database as of one moment
        (PostgreSQL: REPEATABLE READ; SQLite: a deferred transaction, a WAL read snapshot)."""
        if self.postgres:
            self.raw.rollback()  # SET TRANSACTION must open the transaction
            self.raw.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        else:
            self.raw.execute("BEGIN")

    def commit(self) -> None:
        self.raw.commit() if self.postgres else self.raw.execute("COMMIT")

    def rollback(self) -> None:
        if self.postgres:
            self.raw.rollback()
        elif self.raw.in_transaction:
            self.raw.execute("ROLLBACK")

    def close(self) -> None:
        self.raw.close()

    @property
    def broken(self) -> bool:
        """The server side is gone (e.g. the backend was terminated): only a new connection helps."""
        return bool(getattr(self.raw, "broken", False) or (self.postgres and self.raw.closed))


class Database:
    """Opens connections; keeps a small pool for readers (control plane, hold polls)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = is_postgres(url)
        self._pool: queue.LifoQueue[Connection] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._autocheckpoint = True  # SQLite: a commit checkpoints the WAL once it is long

    def checkpoint_in_background(self) -> None:
        """SQLite: a thread of the server checkpoints the WAL, so no connection of this process
        does it inside its own commit. Otherwise any small write on the event loop (an analytics
        sync, a policy change) pays the checkpoint's copy and fsync, ~5-10 ms, once the WAL has
        grown past 1000 pages between two background checkpoints."""
        self._autocheckpoint = False
        self.close()  # pooled connections reopen without it

    def connect(self, application_name: str | None = None) -> Connection:
        try:
            if self.postgres:
                import psycopg

                conninfo = psycopg_conninfo(self.url)
                if application_name:
                    conninfo = psycopg.conninfo.make_conninfo(conninfo, application_name=application_name)
                return Connection(psycopg.connect(conninfo, connect_timeout=5), True)
            path = sqlite_path(self.url)
            if path not in ("", ":memory:"):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            lite = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            lite.execute("PRAGMA journal_mode=WAL")
            lite.execute("PRAGMA synchronous=NORMAL")
            lite.execute("PRAGMA busy_timeout=30000")
            if not self._autocheckpoint:
                lite.execute("PRAGMA wal_autocheckpoint=0")
            return Connection(lite, False)
        except DatabaseUnavailable:
            raise
        except Exception as exc:  # driver-specific errors: report them plainly
            raise DatabaseUnavailable(f"cannot open database {redact(self.url)}: {exc}") from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A pooled connection for a short read or a small write transaction."""
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            conn = self.connect()
        ok = False
        try:
            yield conn
            ok = True
        finally:
            try:
                conn.rollback() if not ok else (conn.commit() if conn.postgres else None)
                self._pool.put(conn)
            except Exception:
                conn.close()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.read() as conn:
            conn.begin_write()
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def close(self) -> None:
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                break


def redact(url: str) -> str:
    """Hide a password in a URL before printing it."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        if ":" in cred:
            cred = cred.split(":", 1)[0] + ":***"
        return f"{scheme}://{cred}@{host}"
    return url
