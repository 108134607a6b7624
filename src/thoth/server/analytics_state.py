"""Analytics state in the server's database, shared by every `thoth serve` process.

One `thoth.analytics.store.StoredAnalytics` per tenant keeps its agents' baselines in the
`analytics_state` table (one row per tenant and key). Its `lock(key)` makes a sync's load and
save one transaction that other processes wait for: `pg_advisory_xact_lock` on PostgreSQL,
`BEGIN IMMEDIATE` on SQLite (docs/analytics.md, "persistence").

Everything here runs on the event loop: loads happen on an agent's first call, syncs every 64
calls or 5 s per agent and on the server's flush timer; each costs a few SQLite microseconds
or a few PostgreSQL round trips, amortised over many decisions. So that a database outage
cannot hold the loop, they use the loop's own connection and are cut after db.ON_LOOP_TIMEOUT
(then the database is taken for down and analytics skips it, without a round trip, until it
answers again); a failed sync is retried by the next one (scoring is advisory).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from thoth.server.db import Connection, Database

_UPSERT = ("INSERT INTO analytics_state (tenant_id, state_key, state, updated_at) VALUES (?, ?, ?, ?)"
           " ON CONFLICT (tenant_id, state_key) DO UPDATE SET state = excluded.state,"
           " updated_at = excluded.updated_at")
_SELECT = "SELECT state FROM analytics_state WHERE tenant_id = ? AND state_key = ?"


class TenantState:
    """`load`, `save` and `lock` of one tenant's analytics, for `StoredAnalytics`."""

    def __init__(self, db: Database, tenant_id: str) -> None:
        self.db = db
        self.tenant_id = tenant_id
        self._conn: Connection | None = None  # the locked transaction's connection, while locked

    def load(self, key: str) -> bytes | None:
        if self._conn is not None:
            return self._load(self._conn, key)
        with self.db.read(on_loop=True) as conn:
            return self._load(conn, key)

    def save(self, key: str, data: bytes) -> None:
        if self._conn is not None:
            self._conn.execute(_UPSERT, (self.tenant_id, key, data, time.time()))
            return
        with self.db.transaction(on_loop=True) as conn:
            conn.execute(_UPSERT, (self.tenant_id, key, data, time.time()))

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        with self.db.transaction(on_loop=True) as conn:  # SQLite: BEGIN IMMEDIATE
            lock = conn.dialect.xact_lock(f"thoth-analytics/{self.tenant_id}/{key}")
            if lock is not None:  # PostgreSQL: an advisory lock; SQLite's BEGIN IMMEDIATE locked it all
                conn.execute(*lock)
            self._conn = conn
            try:
                yield
            finally:
                self._conn = None

    def _load(self, conn: Connection, key: str) -> bytes | None:
        row = conn.one(_SELECT, (self.tenant_id, key))
        return bytes(row[0]) if row else None


def stored_engine(db: Database, tenant_id: str) -> Any:
    """A `StoredAnalytics` for one tenant, or None when thoth.analytics is not installed."""
    try:
        from thoth.analytics.store import StoredAnalytics
    except ImportError:  # pragma: no cover - analytics ships with the package
        return None
    state = TenantState(db, tenant_id)
    # A sync runs on the event loop: load, dump, save, plus a replay of the agent's unsaved calls
    # when another process wrote the row since (a sole writer adopts its own copy). After every
    # 64 calls of an agent that was ~20 us per decision under load. Baselines are slow-moving
    # averages: sync after 1024 calls or 5 s (StoredAnalytics' default), whichever comes first.
    return StoredAnalytics(state.load, state.save, lock=state.lock, sync_every=1024)
