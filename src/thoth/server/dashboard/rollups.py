"""Hourly roll-ups of decisions, so the overview and analytics never scan a million rows.

An hour that ended more than `SETTLE_SECONDS` ago no longer changes (decisions are stamped
with the server's clock when recorded), so its counts are computed once per process and kept;
only the current hour is counted on every request.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

HOUR = 3600
SETTLE_SECONDS = 120
# Closed hours kept per tenant (older ones are dropped first): 60 days.
MAX_HOURS = 24 * 60


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


def _bucket(conn: Any) -> str:
    # PostgreSQL rounds when casting a float to an integer; floor explicitly there.
    return "FLOOR(decided_at / 3600)" if conn.postgres else "CAST(decided_at / 3600 AS INTEGER)"


class Rollups:
    def __init__(self, db: Any) -> None:
        self.db = db
        self._closed: dict[str, dict[int, HourStats]] = {}
        self._lock = threading.Lock()

    def hours(self, tenant_id: str, start_hour: int, end_hour: int) -> list[tuple[int, HourStats]]:
        """Stats for each hour in [start_hour, end_hour], oldest first (the last may be open)."""
        now = time.time()
        last_closed = int((now - SETTLE_SECONDS) // HOUR) - 1
        with self._lock:
            cache = self._closed.setdefault(tenant_id, {})
            missing = [h for h in range(start_hour, min(end_hour, last_closed) + 1) if h not in cache]
        if missing:
            fresh = self._count(tenant_id, missing[0], missing[-1] + 1)
            with self._lock:
                for h in missing:
                    cache[h] = fresh.get(h) or HourStats()
                if len(cache) > MAX_HOURS:
                    for h in sorted(cache)[: len(cache) - MAX_HOURS]:
                        del cache[h]
        open_hours: dict[int, HourStats] = {}
        if end_hour > last_closed:
            open_hours = self._count(tenant_id, max(start_hour, last_closed + 1), end_hour + 1)
        out = []
        with self._lock:
            for h in range(start_hour, end_hour + 1):
                stats = cache.get(h) if h <= last_closed else open_hours.get(h)
                out.append((h, stats or HourStats()))
        return out

    def _count(self, tenant_id: str, start_hour: int, end_hour: int) -> dict[int, HourStats]:
        with self.db.read() as conn:
            rows = conn.all(
                f"SELECT {_bucket(conn)} AS h, decision, agent_id, tool_name, COUNT(*),"
                " SUM(COALESCE(risk_score, 0)), MAX(COALESCE(risk_score, 0)) FROM decisions"
                " WHERE tenant_id = ? AND decided_at >= ? AND decided_at < ?"
                " GROUP BY 1, decision, agent_id, tool_name",
                (tenant_id, float(start_hour * HOUR), float(end_hour * HOUR)))
        out: dict[int, HourStats] = {}
        for h, decision, agent, tool, n, risk_sum, risk_max in rows:
            out.setdefault(int(h), HourStats()).add(
                decision or "?", agent or "-", tool or "?", int(n), float(risk_sum or 0), float(risk_max or 0))
        return out
