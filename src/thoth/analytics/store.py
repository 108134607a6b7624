"""Keep an engine's state in any key-value store, shared by several server processes.

The adapter knows nothing about databases: it is given `load(key) -> bytes | None` and
`save(key, bytes)`, and optionally `lock(key)`, a context manager that makes a load followed
by a save atomic across processes (PostgreSQL: a transaction holding
`pg_advisory_xact_lock(hashtext(key))` or `SELECT ... FOR UPDATE`; SQLite: `BEGIN IMMEDIATE`).

How sharing stays exact: each process scores from its local copy and remembers the calls it
observed since its last sync (already parsed). A sync loads the stored state, replays those
calls onto it, saves the result and adopts it; when the stored row is still the one this process
last loaded or saved (no other process wrote since), the local copy already is that row plus
the calls, so it is saved as it is, without a replay. Counts from every process end up in the store
and none is lost, as long as load-and-save is atomic (the lock). Between syncs a process does
not yet see the others' latest calls: the baseline is a slow-moving average, so a few seconds
of staleness changes scores very little. Session context (secret read, then send) is only as
shared as the sessions' calls are: route a session to one process, or sync often.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from thoth.analytics.drift import DriftReport
from thoth.analytics.engine import AnalyticsEngine, StateError, _decision_name
from thoth.analytics.features import CallFeatures, extract
from thoth.analytics.provenance import ProvenanceSignals
from thoth.analytics.scoring import AnomalyScore

POPULATION_KEY = "__tenant__"  # the key of the tenant-wide tool counts (the cold-start prior)

Load = Callable[[str], bytes | None]
Save = Callable[[str, bytes], None]
Lock = Callable[[str], AbstractContextManager[Any]]
# One remembered observation: features, ts, decision name, session id, anomaly.
Pending = tuple[CallFeatures, float, str, str, float | None, ProvenanceSignals | None]


class StoredAnalytics:
    """An `AnalyticsEngine` whose agents are loaded on first use and synced to a store.

    Agents are synced when they have `sync_every` unsaved calls, or unsaved calls older than
    `sync_seconds` (checked on each observe), and by `flush()`: call it on a timer (every
    few seconds) and at shutdown. At most `max_agents` agents stay in memory (least recently
    used are synced and dropped).
    """

    def __init__(self, load: Load, save: Save, *, lock: Lock | None = None, sync_every: int = 64,
                 sync_seconds: float = 5.0, max_agents: int = 10_000, window_seconds: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = AnalyticsEngine(window_seconds=window_seconds)
        self._load, self._save = load, save
        self._lock: Lock = lock or (lambda key: contextlib.nullcontext())
        self.sync_every, self.sync_seconds, self.max_agents = sync_every, sync_seconds, max_agents
        self._clock = clock
        self._lru: OrderedDict[str, None] = OrderedDict()
        self._pending: dict[str, list[Pending]] = {}
        self._pending_since: dict[str, float] = {}
        self._population_pending: list[str] = []
        # Digest of each agent's row as this process last loaded or saved it: a sync that finds
        # the same row adopts the local copy instead of load + replay.
        self._saved: dict[str, bytes] = {}
        self._population_loaded = False

    # -- the engine's API, with loading on first use ------------------------------------------

    def score(self, agent_id: str, tool_name: str, tool_args: object, ts: float, *,
              session_id: str | None = None, provenance: ProvenanceSignals | None = None) -> AnomalyScore:
        self._ensure(agent_id)
        return self.engine.score(agent_id, tool_name, tool_args, ts, session_id=session_id, provenance=provenance)

    def observe(self, agent_id: str, tool_name: str, tool_args: object, ts: float, decision: object = None,
                *, session_id: str | None = None, anomaly: AnomalyScore | float | None = None) -> None:
        self._ensure(agent_id)
        f = anomaly.features if isinstance(anomaly, AnomalyScore) else None
        if f is None or f.tool != tool_name[:128]:
            f = extract(tool_name, tool_args)
        value = anomaly.score if isinstance(anomaly, AnomalyScore) else anomaly
        signals = anomaly.provenance if isinstance(anomaly, AnomalyScore) else None
        dname = _decision_name(decision)
        self.engine.observe_features(agent_id, f, ts, dname, session_id=session_id, anomaly=value,
                                     provenance=signals)
        pending = self._pending.setdefault(agent_id, [])
        if not pending:
            self._pending_since[agent_id] = self._clock()
        pending.append((f, ts, dname, session_id or "", value, signals))
        self._population_pending.append(f.tool)
        if len(pending) >= self.sync_every or self._clock() - self._pending_since[agent_id] >= self.sync_seconds:
            self.sync(agent_id)

    def drift(self, agent_id: str, now: float, *, refresh: bool = False) -> DriftReport:
        self._ensure(agent_id, refresh)
        return self.engine.drift(agent_id, now)

    def agent_report(self, agent_id: str, now: float, *, refresh: bool = True) -> dict[str, Any]:
        """For GET /v1/analytics/agents/{agent_id}: by default re-reads the stored state first,
        so the answer includes what other processes learnt."""
        self._ensure(agent_id, refresh)
        return self.engine.agent_report(agent_id, now)

    # -- syncing ----------------------------------------------------------------------------

    def sync(self, agent_id: str) -> None:
        """Merge this process's unsaved calls of the agent into the store and adopt the result."""
        pending = self._pending.pop(agent_id, [])
        self._pending_since.pop(agent_id, None)
        with self._lock(agent_id):
            stored = self._load(agent_id)
            merged = AnalyticsEngine(window_seconds=self.engine.window_seconds)
            local = self.engine.agents.get(agent_id)
            if stored is not None and local is not None and self._saved.get(agent_id) == _digest(stored):
                # No other process wrote since this one's last load or save: the local copy is
                # the stored row plus `pending` already.
                if not pending:
                    return
                merged.agents[agent_id] = local
                pending = []
            elif stored is not None:
                try:
                    merged.load_agent(agent_id, stored)
                except StateError:
                    # An unreadable row must not stop the tenant's analytics: start over from
                    # this process's copy (it holds at least its own history).
                    merged.agents[agent_id] = self.engine.agents[agent_id]
                    pending = []
            elif local is not None:
                # Nothing stored yet: this process's copy is the whole history.
                merged.agents[agent_id] = local
                pending = []
            for f, ts, dname, sid, value, signals in pending:
                merged.observe_features(agent_id, f, ts, dname, session_id=sid, anomaly=value, provenance=signals)
            data = merged.dump_agent(agent_id)
            if data is not None:
                self._save(agent_id, data)
                self._saved[agent_id] = _digest(data)
        if agent_id in merged.agents:
            self.engine.agents[agent_id] = merged.agents[agent_id]

    def flush(self) -> None:
        """Sync every agent with unsaved calls, and the tenant-wide counts."""
        for agent_id in list(self._pending):
            self.sync(agent_id)
        self._sync_population()

    def _sync_population(self) -> None:
        tools, self._population_pending = self._population_pending, []
        with self._lock(POPULATION_KEY):
            stored = self._load(POPULATION_KEY)
            merged = AnalyticsEngine()
            if stored is not None:
                with contextlib.suppress(StateError):
                    merged.load_population(stored)
            for t in tools:
                merged.population.add(t)
            self._save(POPULATION_KEY, merged.dump_population())
        self.engine.population = merged.population
        self._population_loaded = True

    def _ensure(self, agent_id: str, refresh: bool = False) -> None:
        if not self._population_loaded:
            stored = self._load(POPULATION_KEY)
            if stored is not None:
                with contextlib.suppress(StateError):
                    self.engine.load_population(stored)
            self._population_loaded = True
        known = agent_id in self.engine.agents
        if refresh and known:
            self.sync(agent_id)
        elif not known:
            stored = self._load(agent_id)
            if stored is not None:
                # An unreadable row: start afresh; the next sync overwrites it.
                with contextlib.suppress(StateError):
                    self.engine.load_agent(agent_id, stored)
                    self._saved[agent_id] = _digest(stored)
        self._lru[agent_id] = None
        self._lru.move_to_end(agent_id)
        while len(self._lru) > self.max_agents:
            old, _ = self._lru.popitem(last=False)
            if old in self._pending:
                self.sync(old)
            self.engine.agents.pop(old, None)
            self._saved.pop(old, None)


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()
