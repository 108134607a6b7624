"""Raw DB-API connections for SQLite and PostgreSQL, one SQL dialect.

Queries are written with `?` placeholders and the standard `ON CONFLICT` syntax both engines
share; what SQL differs in is asked of `Connection.dialect` (thoth.server.dialect). This module
keeps the differences of the drivers: how to connect, commit, bound a round trip. SQLAlchemy is used only for migrations:
the hot paths talk to sqlite3 / psycopg directly (measured 3-34 % faster).

Outages (PostgreSQL; docs/adr/0102-database-outages.md): the server's connections have a
connect timeout and a server-side `statement_timeout`, and a round trip still unanswered past
its bound has its socket shut down by a watchdog thread (a partition answers nothing, so only
the client can end the wait). The bound is short (`timeout` + 1 s) for the look-ups of the data
plane and the writer's commits, long (`statement_timeout` + 1 s) for control-plane reads that
may scan a lot. Once a connection could not be opened or broke, `read()` fails at once, every
statement still waiting is cut, and a prober thread reconnects every `RETRY_SECONDS`: an
outage costs a request a fast 503, not a wait, and the first answer ends it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from thoth.server.dialect import POSTGRES, SQLITE, Dialect, for_url

log = logging.getLogger("thoth.server.db")
RETRY_SECONDS = 1.0  # after a failure to reach the database: fail fast this long, then try again
RETRY_AFTER = "1"  # the Retry-After header of a 503 for want of the database (seconds)
# The watchdog cuts a statement this long after the server's own statement_timeout would have
# ended it: a reachable but slow server answers first, with an error that keeps the connection.
WATCHDOG_GRACE = 1.0
# Round trips made on the event loop itself (analytics state) are cut after this: a healthy
# database answers them in milliseconds, and the loop must not wait out a partition.
ON_LOOP_TIMEOUT = 0.5
# The bound of the round trips made for a data-plane request (`Database.request_bound`), set on
# the event loop and inherited by the thread that runs the look-up (asyncio.to_thread copies it).
_REQUEST_BOUND: ContextVar[float | None] = ContextVar("thoth_db_request_bound", default=None)


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or opened."""


class StorageUnavailable(DatabaseUnavailable):
    """The database cannot be read or written now; the request answers 503 (the client may retry)."""


_SQLITE_UNAVAILABLE = ("locked", "busy", "disk i/o", "unable to open", "disk is full", "readonly")


def is_unavailable(exc: BaseException) -> bool:
    """An error that says the database cannot be reached or used now (503), not that the request
    or the server is wrong: refused or lost connections, timeouts, a database shutting down or
    starting up (psycopg's OperationalError family), a SQLite file locked past busy_timeout."""
    if isinstance(exc, DatabaseUnavailable):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return any(part in text for part in _SQLITE_UNAVAILABLE)
    psycopg = sys.modules.get("psycopg")  # not imported: the error cannot be one of its
    return psycopg is not None and isinstance(exc, psycopg.OperationalError)


def storage_errors() -> tuple[type[Exception], ...]:
    """The exception classes `is_unavailable` may accept, for frameworks that dispatch on the class
    (a handler then checks `is_unavailable`: a SQLite OperationalError can also be a bug)."""
    errors: list[type[Exception]] = [DatabaseUnavailable, sqlite3.OperationalError]
    with contextlib.suppress(ImportError):
        import psycopg

        errors.append(psycopg.OperationalError)
    return tuple(errors)


def cut_socket(fileno: int) -> None:
    """Shut a connection's socket down under whoever waits on it: their wait ends with an error
    at once. shutdown() acts on the socket, not on this duplicate descriptor, and unlike close()
    it cannot hand the descriptor number to another file while the owner still uses it."""
    with contextlib.suppress(OSError):
        sock = socket.socket(fileno=socket.dup(fileno))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


class _Watchdog:
    """One daemon thread that cuts the sockets of statements past their deadline."""

    TICK = 0.05

    def __init__(self) -> None:
        # id(token) -> (deadline, socket fileno, the Database it belongs to)
        self._watched: dict[int, tuple[float, int, object]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, token: object, fileno: int, seconds: float, owner: object) -> None:
        with self._lock:
            self._watched[id(token)] = (time.monotonic() + seconds, fileno, owner)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="thoth-db-watchdog", daemon=True)
                self._thread.start()

    def unwatch(self, token: object) -> None:
        # Under the lock: once this returns, the descriptor (which its owner may close and the
        # OS hand to another socket) is never cut by a late pass of the watchdog.
        with self._lock:
            self._watched.pop(id(token), None)

    def _run(self) -> None:
        while True:
            time.sleep(self.TICK)
            now = time.monotonic()
            with self._lock:
                late = [(key, fileno) for key, (deadline, fileno, _) in self._watched.items() if deadline <= now]
                for key, fileno in late:
                    del self._watched[key]
                    log.warning("a database statement got no answer in time: cutting its connection")
                    cut_socket(fileno)

    def cut_all(self, owner: object) -> None:
        """The database is unreachable: every statement still waiting on it gets its error now."""
        with self._lock:
            mine = [(key, fileno) for key, (_, fileno, who) in self._watched.items() if who is owner]
            for key, fileno in mine:
                del self._watched[key]
                cut_socket(fileno)


WATCHDOG = _Watchdog()


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

    def __init__(self, raw: Any, postgres: bool, timeout: float | None = None, owner: object = None) -> None:
        self.raw = raw
        self.postgres = postgres  # the driver (psycopg or sqlite3): how to commit, watch, poll
        self.dialect: Dialect = POSTGRES if postgres else SQLITE  # how its SQL is spelled
        # PostgreSQL: seconds a round trip may wait for its answer before the watchdog cuts the
        # socket (None: no limit); a data-plane request's bound may be shorter (_REQUEST_BOUND).
        self.timeout = timeout
        self.owner = owner

    def _sql(self, sql: str) -> str:
        return self.dialect.sql(sql)

    @contextmanager
    def _bounded(self) -> Iterator[None]:
        """A round trip that cannot outlast its bound (psycopg itself would wait forever)."""
        limit = self.timeout
        if limit is None:
            yield
            return
        bound = _REQUEST_BOUND.get()
        WATCHDOG.watch(self, self.raw.pgconn.socket, limit if bound is None else min(bound, limit), self.owner)
        try:
            yield
        finally:
            WATCHDOG.unwatch(self)

    def execute(self, sql: str, params: Sequence[Any] = (), prepare: bool | None = None) -> Any:
        """`prepare=False`: PostgreSQL plans the query at every execution (see Store.session_history_rows)."""
        if self.postgres:
            with self._bounded():  # a client-side cursor's execute also fetches the rows
                return self.raw.execute(self._sql(sql), params, prepare=prepare)
        return self.raw.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if self.postgres:
            with self._bounded(), self.raw.cursor() as cur:
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
            with self._bounded():
                self.raw.rollback()  # SET TRANSACTION must open the transaction
                self.raw.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        else:
            self.raw.execute("BEGIN")

    def commit(self) -> None:
        if self.postgres:
            with self._bounded():
                self.raw.commit()
        else:
            self.raw.execute("COMMIT")

    def rollback(self) -> None:
        if self.postgres:
            with self._bounded():
                self.raw.rollback()
        elif self.raw.in_transaction:
            self.raw.execute("ROLLBACK")

    def close(self) -> None:
        self.raw.close()

    @property
    def broken(self) -> bool:
        """The server side is gone (e.g. the backend was terminated): only a new connection helps."""
        return bool(getattr(self.raw, "broken", False) or (self.postgres and self.raw.closed))

    def stale(self) -> bool:
        """PostgreSQL: an idle connection with something to read was told it is over (the server
        restarted, an administrator ended it) or its socket is closed; one poll, no round trip."""
        if not self.postgres:
            return False
        if self.broken:
            return True
        try:
            readable, _, _ = select.select([self.raw.pgconn.socket], [], [], 0)
        except Exception:  # no socket any more
            return True
        return bool(readable)


class Database:
    """Opens connections; keeps a small pool for readers (control plane, hold polls).

    PostgreSQL bounds (seconds; see the module docstring), None for psycopg's defaults (the
    command-line tools): `timeout` for connecting, the data plane's look-ups and the writer's
    commits; `statement_timeout` for any statement (server side, then the watchdog)."""

    def __init__(self, url: str, timeout: float | None = None, statement_timeout: float | None = None) -> None:
        self.url = url
        self.postgres = is_postgres(url)
        self.dialect: Dialect = for_url(url)
        self.timeout = timeout
        self.statement_timeout = statement_timeout if statement_timeout is not None else timeout
        # psycopg refuses a connect timeout under 2 s.
        self.connect_timeout = max(2, round(timeout)) if timeout else 5
        self._pool: queue.LifoQueue[Connection] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._autocheckpoint = True  # SQLite: a commit checkpoints the WAL once it is long
        self.down = False  # a connection could not be opened or broke; a prober retries (PostgreSQL)
        self._prober: threading.Thread | None = None
        self._loop_conn: Connection | None = None  # PostgreSQL: the event loop's (read(on_loop=True))
        self.last_error = ""

    def checkpoint_in_background(self) -> None:
        """SQLite: a thread of the server checkpoints the WAL, so no connection of this process
        does it inside its own commit. Otherwise any small write on the event loop (an analytics
        sync, a policy change) pays the checkpoint's copy and fsync, ~5-10 ms, once the WAL has
        grown past 1000 pages between two background checkpoints."""
        self._autocheckpoint = False
        self.close()  # pooled connections reopen without it

    def conninfo(self, application_name: str | None = None) -> str:
        """psycopg's connection string, with the outage bounds: a connect timeout, TCP keepalives
        and a user timeout (a partition that drops packets ends a connection), and the server's
        statement_timeout (added to the URL's own `options`, e.g. a search_path)."""
        import psycopg

        params = psycopg.conninfo.conninfo_to_dict(psycopg_conninfo(self.url))
        params.setdefault("connect_timeout", str(self.connect_timeout))
        if application_name:
            params["application_name"] = application_name
        if self.request_seconds is not None:
            params.setdefault("keepalives", "1")
            params.setdefault("keepalives_idle", "5")
            params.setdefault("keepalives_interval", "2")
            params.setdefault("keepalives_count", "3")
            params.setdefault("tcp_user_timeout", str(int(self.request_seconds * 1000)))
        if self.statement_timeout is not None:
            options = str(params.get("options") or "")
            if "statement_timeout" not in options:
                ms = int(self.statement_timeout * 1000)
                params["options"] = f"{options} -c statement_timeout={ms}".strip()
        return str(psycopg.conninfo.make_conninfo("", **params))

    @property
    def watch_seconds(self) -> float | None:
        """How long the watchdog lets any statement wait (None: forever)."""
        return None if self.statement_timeout is None else self.statement_timeout + WATCHDOG_GRACE

    @property
    def request_seconds(self) -> float | None:
        """How long a data-plane look-up or a commit may wait (None: forever)."""
        return None if self.timeout is None else self.timeout + WATCHDOG_GRACE

    @contextmanager
    def request_bound(self) -> Iterator[None]:
        """Round trips started in this context (and the threads it starts) wait at most
        `request_seconds`: the data plane's small look-ups, which a client is waiting for."""
        token = _REQUEST_BOUND.set(self.request_seconds)
        try:
            yield
        finally:
            _REQUEST_BOUND.reset(token)

    # ---- availability -----------------------------------------------------------------

    def check(self) -> None:
        """Fail at once while the database is known to be unreachable (a prober thread finds out
        when it is back): during an outage a request costs a fast 503, not a wait."""
        if self.down:
            raise StorageUnavailable("the database is unavailable; retry shortly")

    def mark_down(self, exc: BaseException | str) -> None:
        """A connection could not be opened or broke: PostgreSQL is unreachable until the prober
        (or the writer) reaches it again. SQLite is a local file: nothing to wait for."""
        if not self.postgres:
            return
        text = str(exc)
        self.last_error = text.splitlines()[0][:200] if text else type(exc).__name__
        with self._lock:
            if self.down:
                return
            log.warning("the database is unreachable: %s", self.last_error)
            self.down = True
            self._prober = threading.Thread(target=self._probe_until_up, name="thoth-db-probe", daemon=True)
            self._prober.start()
        WATCHDOG.cut_all(self)  # statements still waiting on a partition would wait their whole bound
        self._drain_pool()  # pooled connections are as dead as the one that failed (or will be)

    def mark_up(self) -> None:
        if self.down:
            with self._lock:
                if self.down:
                    log.warning("the database answers again")
                self.down = False

    def _probe_until_up(self) -> None:
        while self.down:
            time.sleep(RETRY_SECONDS)
            try:
                conn = self.connect()
                try:
                    with self.request_bound():
                        conn.execute("SELECT 1")
                except BaseException:
                    conn.close()
                    raise
            except Exception as exc:
                self.last_error = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                continue
            self._pool.put(conn)
            self.mark_up()

    def ping(self) -> None:
        """One bounded round trip (readiness): raises when the database cannot answer."""
        with self.read() as conn:
            conn.execute("SELECT 1")

    def connect(self, application_name: str | None = None) -> Connection:
        try:
            if self.postgres:
                import psycopg

                raw = psycopg.connect(self.conninfo(application_name))
                return Connection(raw, True, self.watch_seconds, owner=self)
            path = sqlite_path(self.url)
            if path not in ("", ":memory:"):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            lite = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            lite.execute("PRAGMA busy_timeout=30000")
            _wal(lite)
            lite.execute("PRAGMA synchronous=NORMAL")
            if not self._autocheckpoint:
                lite.execute("PRAGMA wal_autocheckpoint=0")
            return Connection(lite, False)
        except DatabaseUnavailable:
            raise
        except Exception as exc:  # driver-specific errors: report them plainly
            raise DatabaseUnavailable(f"cannot open database {redact(self.url)}: {exc}") from exc

    def _checkout(self, on_loop: bool) -> Connection:
        if on_loop and self.postgres:
            # The event loop's own connection, opened only while the database is not known to be
            # down (`check`): a connect on the loop could wait the whole connect timeout.
            conn = self._loop_conn
            if conn is None or conn.stale():
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                self._loop_conn = None
                conn = self._loop_conn = self.connect()
            if conn.timeout is not None:
                conn.timeout = min(ON_LOOP_TIMEOUT, conn.timeout)
            return conn
        while True:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                return self.connect()
            if not conn.stale():
                return conn
            with contextlib.suppress(Exception):
                conn.close()

    @contextmanager
    def read(self, on_loop: bool = False) -> Iterator[Connection]:
        """A pooled connection for a short read or a small write transaction.

        While the database is unreachable this fails at once (`check`). `on_loop`: the caller
        runs on the event loop (analytics state): PostgreSQL round trips are cut after
        ON_LOOP_TIMEOUT, on a connection of its own (never one a thread left stalled)."""
        self.check()
        try:
            conn = self._checkout(on_loop)
        except Exception as exc:
            if is_unavailable(exc):
                self.mark_down(exc)
            raise
        ok = False
        try:
            yield conn
            ok = True
        except Exception as exc:
            if conn.postgres and conn.broken:  # not a statement timeout: the connection is gone
                self.mark_down(exc)
            raise
        finally:
            self._checkin(conn, ok, on_loop)

    def _checkin(self, conn: Connection, ok: bool, on_loop: bool) -> None:
        try:
            conn.rollback() if not ok else (conn.commit() if conn.postgres else None)
            if conn.broken:
                raise DatabaseUnavailable("connection lost")
            if conn.postgres:
                conn.timeout = self.watch_seconds
            if not (on_loop and conn is self._loop_conn):
                self._pool.put(conn)
            if ok:
                self.mark_up()
        except Exception:
            if conn is self._loop_conn:
                self._loop_conn = None
            with contextlib.suppress(Exception):
                conn.close()

    @contextmanager
    def transaction(self, on_loop: bool = False) -> Iterator[Connection]:
        with self.read(on_loop) as conn:
            conn.begin_write()
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def _drain_pool(self) -> None:
        while True:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                break
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        self._drain_pool()
        conn, self._loop_conn = self._loop_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def redact(url: str) -> str:
    """Hide a password in a URL before printing it."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        if ":" in cred:
            cred = cred.split(":", 1)[0] + ":***"
        return f"{scheme}://{cred}@{host}"
    return url


def _wal(lite: sqlite3.Connection) -> None:
    """WAL mode, once per database file (it persists). Switching needs the file to itself and
    SQLite answers "database is locked" at once, without waiting, when another connection of a
    starting server is open: ask first, and retry the switch briefly."""
    if str(lite.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    for attempt in range(100):
        try:
            lite.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or attempt == 99:
                raise
            time.sleep(0.05)
