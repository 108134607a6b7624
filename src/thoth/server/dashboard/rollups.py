"""Hourly roll-ups of decisions, so the overview and analytics never scan a million rows.

An hour that ended more than `SETTLE_SECONDS` ago is "closed": it is counted once and stored in
the dashboard's own table `dashboard_rollups` (one row per tenant and hour: its decision count
and its stats as JSON), so a restarted process reads it back instead of recounting 30 days.
Only the open hours are counted on every request.

A request never waits for a long recount: closed hours not stored yet (first start, a new
tenant, a long outage) are counted by a background thread, newest first, and the page is told
how many are still missing. The same thread checks every `CHECK_SECONDS` that each stored
hour's count still matches the decisions table (an index-only count) and recounts the hours
that differ, so decisions recorded late into a closed hour show up without a restart.

Several server processes may share the table: every write is an idempotent upsert that keeps
the row counted last.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from thoth.server.db import is_unavailable

log = logging.getLogger(__name__)

HOUR = 3600
SETTLE_SECONDS = 120
# Closed hours kept in memory per tenant (older ones are dropped first): 60 days.
MAX_HOURS = 24 * 60
# What the pages read: 30 days plus the analytics' 7-day baseline. The background keeps these filled.
KEEP_HOURS = 24 * 37
# Missing hours counted inside a request (the hour that just closed; kept in memory, stored by
# the background); with more missing the request answers with what is stored.
SYNC_HOURS = 3
# Hours counted per background query: small enough to yield the database to requests often.
CHUNK_HOURS = 12
CHECK_SECONDS = float(os.environ.get("THOTH_DASHBOARD_ROLLUP_CHECK_SECONDS", "60"))


@dataclass
class HourStats:
    by_decision: Counter[str] = field(default_factory=Counter)
    by_agent: Counter[str] = field(default_factory=Counter)
    blocked_tools: Counter[str] = field(default_factory=Counter)
    stepped_up_tools: Counter[str] = field(default_factory=Counter)
    # agent -> [calls, sum of risk, max risk]
    agent_risk: dict[str, list[float]] = field(default_factory=dict)
    # agent -> tool -> calls (the tool mix, for drift)
    agent_tools: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, decision: str, agent: str, tool: str, n: int, risk_sum: float, risk_max: float) -> None:
        self.by_decision[decision] += n
        self.by_agent[agent] += n
        if decision == "BLOCK":
            self.blocked_tools[tool] += n
        elif decision == "STEP_UP":
            self.stepped_up_tools[tool] += n
        r = self.agent_risk.setdefault(agent, [0, 0.0, 0.0])
        r[0] += n
        r[1] += risk_sum
        r[2] = max(r[2], risk_max)
        self.agent_tools.setdefault(agent, Counter())[tool] += n

    @property
    def calls(self) -> int:
        return sum(self.by_decision.values())

    def to_json(self) -> bytes:
        # by_agent is not stored: it is the first field of agent_risk.
        return orjson.dumps({"d": self.by_decision, "b": self.blocked_tools, "s": self.stepped_up_tools,
                             "r": self.agent_risk, "t": self.agent_tools})

    @classmethod
    def from_json(cls, text: str | bytes) -> HourStats:
        raw = orjson.loads(text)
        risk = {a: [float(x) for x in r] for a, r in raw["r"].items()}
        return cls(by_decision=Counter(raw["d"]), by_agent=Counter({a: int(r[0]) for a, r in risk.items()}),
                   blocked_tools=Counter(raw["b"]), stepped_up_tools=Counter(raw["s"]), agent_risk=risk,
                   agent_tools={a: Counter(m) for a, m in raw["t"].items()})


@dataclass
class Window:
    hours: list[tuple[int, HourStats]]
    # Closed hours of the window not counted yet (shown as empty until the background fills them).
    missing: int


def _bucket(conn: Any) -> str:
    return str(conn.dialect.hour_bucket("decided_at"))


def last_closed_hour(now: float) -> int:
    return int((now - SETTLE_SECONDS) // HOUR) - 1


def _runs(hours: Iterable[int], size: int) -> list[tuple[int, int]]:
    """Contiguous [first, last] runs of at most `size` hours, newest first."""
    out: list[tuple[int, int]] = []
    for h in sorted(set(hours), reverse=True):
        if out and out[-1][0] - 1 == h and out[-1][1] - h < size:
            out[-1] = (h, out[-1][1])
        else:
            out.append((h, h))
    return out


class Rollups:
    def __init__(self, db: Any) -> None:
        self.db = db
        self._closed: dict[str, dict[int, HourStats]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._wanted: set[str] = set()
        self._tenants: Callable[[], list[str]] | None = None
        self._thread: threading.Thread | None = None

    # ---- what pages call ------------------------------------------------------------------

    def hours(self, tenant_id: str, start_hour: int, end_hour: int) -> list[tuple[int, HourStats]]:
        """Stats for each hour in [start_hour, end_hour], oldest first (the last may be open)."""
        return self.window(tenant_id, start_hour, end_hour).hours

    def window(self, tenant_id: str, start_hour: int, end_hour: int) -> Window:
        """Like `hours`, without ever waiting for a long count: see `Window.missing`."""
        last_closed = last_closed_hour(time.time())
        with self._lock:
            cache = self._closed.setdefault(tenant_id, {})
            need = [h for h in range(start_hour, min(end_hour, last_closed) + 1) if h not in cache]
        if need:
            stored = self._load(tenant_id, need[0], need[-1])
            with self._lock:
                cache.update(stored)
                self._trim(cache)
            need = [h for h in need if h not in stored]
        if need and len(need) <= SYNC_HOURS:
            # Counted here but stored by the background: a request never waits for a write lock.
            self._recount(tenant_id, need, store=False)
            need = []
            self.want(tenant_id)
        elif need:
            self.want(tenant_id)
        open_hours: dict[int, HourStats] = {}
        if end_hour > last_closed:
            open_hours = self._count(tenant_id, max(start_hour, last_closed + 1), end_hour)
        out = []
        with self._lock:
            for h in range(start_hour, end_hour + 1):
                stats = cache.get(h) if h <= last_closed else open_hours.get(h)
                out.append((h, stats or HourStats()))
        return Window(out, len(need))

    # ---- the background filler ------------------------------------------------------------

    def start(self, tenants: Callable[[], list[str]] | None = None) -> None:
        """Run the background filler (once per process); `tenants` lists every tenant to keep
        filled and checked, else only the tenants pages asked for are."""
        with self._lock:
            if tenants is not None:
                self._tenants = tenants
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="thoth-dashboard-rollups", daemon=True)
                self._thread.start()

    def want(self, tenant_id: str) -> None:
        """Ask the background to fill a tenant's missing hours now."""
        with self._lock:
            self._wanted.add(tenant_id)
        self.start()
        self._wake.set()

    def _run(self) -> None:
        next_check = 0.0
        while True:
            with self._lock:
                wanted, self._wanted = self._wanted, set()
                known = set(self._closed)
            check = time.monotonic() >= next_check
            if check:
                next_check = time.monotonic() + CHECK_SECONDS
            try:
                tenants = set(wanted)
                if check:  # also look for late decisions in every tenant's stored hours
                    tenants |= known | set(self._tenants() if self._tenants else ())
                for tenant in sorted(tenants):
                    self.fill(tenant)
            except Exception as exc:  # the database may be briefly unavailable: try again next round
                if is_unavailable(exc):
                    log.warning("dashboard roll-ups: skipped, the database is unavailable (%s)", exc)
                else:
                    log.exception("dashboard roll-ups: background pass failed")
            self._wake.wait(timeout=max(0.1, next_check - time.monotonic()))
            self._wake.clear()

    def fill(self, tenant_id: str) -> int:
        """Store every missing or outdated closed hour of the last `KEEP_HOURS`; returns how many
        hours were (re)counted."""
        last_closed = last_closed_hour(time.time())
        first = last_closed - KEEP_HOURS + 1
        with self.db.read() as conn:
            stored = {int(h): int(n) for h, n in conn.all(
                "SELECT hour, calls FROM dashboard_rollups WHERE tenant_id = ? AND hour >= ? AND hour <= ?",
                (tenant_id, first, last_closed))}
            actual = {int(h): int(n) for h, n in conn.all(
                f"SELECT {_bucket(conn)} AS h, COUNT(*) FROM decisions"
                " WHERE tenant_id = ? AND decided_at >= ? AND decided_at < ? GROUP BY 1",
                (tenant_id, float(first * HOUR), float((last_closed + 1) * HOUR)))}
        todo = [h for h in range(first, last_closed + 1) if stored.get(h) != actual.get(h, 0)]
        # Hours without decisions need no counting query.
        empty = [h for h in todo if not actual.get(h)]
        if empty:
            self._store(tenant_id, {h: HourStats() for h in empty}, time.time())
        with self._lock:  # this process may hold an hour another process recounted since
            cache = self._closed.get(tenant_id, {})
            for h in [h for h in cache if h >= first and cache[h].calls != actual.get(h, 0)]:
                del cache[h]
        busy = [h for h in todo if actual.get(h)]
        for lo, hi in _runs(busy, CHUNK_HOURS):
            self._recount(tenant_id, [h for h in busy if lo <= h <= hi])
        return len(todo)

    # ---- counting and storage -------------------------------------------------------------

    def _recount(self, tenant_id: str, hours: list[int], store: bool = True) -> None:
        counted_at = time.time()
        fresh: dict[int, HourStats] = {}
        for lo, hi in _runs(hours, CHUNK_HOURS):
            fresh.update(self._count(tenant_id, lo, hi))
        stats = {h: fresh.get(h) or HourStats() for h in hours}
        if store:
            self._store(tenant_id, stats, counted_at)
        with self._lock:
            cache = self._closed.setdefault(tenant_id, {})
            cache.update(stats)
            self._trim(cache)

    def _count(self, tenant_id: str, first_hour: int, last_hour: int) -> dict[int, HourStats]:
        with self.db.read() as conn:
            rows = conn.all(
                f"SELECT {_bucket(conn)} AS h, decision, agent_id, tool_name, COUNT(*),"
                " SUM(COALESCE(risk_score, 0)), MAX(COALESCE(risk_score, 0)) FROM decisions"
                " WHERE tenant_id = ? AND decided_at >= ? AND decided_at < ?"
                " GROUP BY 1, decision, agent_id, tool_name",
                (tenant_id, float(first_hour * HOUR), float((last_hour + 1) * HOUR)))
        out: dict[int, HourStats] = {}
        for h, decision, agent, tool, n, risk_sum, risk_max in rows:
            out.setdefault(int(h), HourStats()).add(
                decision or "?", agent or "-", tool or "?", int(n), float(risk_sum or 0), float(risk_max or 0))
        return out

    def _store(self, tenant_id: str, stats: dict[int, HourStats], counted_at: float) -> None:
        # Idempotent across processes; a count that started earlier never overwrites a later one.
        rows = [(tenant_id, h, s.calls, s.to_json().decode(), counted_at) for h, s in stats.items()]
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT INTO dashboard_rollups (tenant_id, hour, calls, stats, counted_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (tenant_id, hour) DO UPDATE SET calls = excluded.calls, stats = excluded.stats,"
                " counted_at = excluded.counted_at WHERE dashboard_rollups.counted_at <= excluded.counted_at",
                rows)

    def _load(self, tenant_id: str, first_hour: int, last_hour: int) -> dict[int, HourStats]:
        with self.db.read() as conn:
            rows = conn.all("SELECT hour, stats FROM dashboard_rollups WHERE tenant_id = ? AND hour >= ? AND hour <= ?",
                            (tenant_id, first_hour, last_hour))
        return {int(h): HourStats.from_json(text) for h, text in rows}

    @staticmethod
    def _trim(cache: dict[int, HourStats]) -> None:
        if len(cache) > MAX_HOURS:
            for h in sorted(cache)[: len(cache) - MAX_HOURS]:
                del cache[h]
