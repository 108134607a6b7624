"""The analytics engine of one tenant: per-agent baselines, call scores, drift over time.

Pure and in memory: no I/O, no clock (every method takes the time). The server keeps one
engine per tenant; `thoth.analytics.store.StoredAnalytics` persists it agent by agent.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterable
from typing import Any

from thoth.analytics import drift as driftmod
from thoth.analytics.drift import DriftReport, Window
from thoth.analytics.features import CallFeatures, extract
from thoth.analytics.profile import HALVE_AT, MAX_SESSION_GAP, AgentProfile, Moments, Tally
from thoth.analytics.provenance import ProvenanceSignals
from thoth.analytics.scoring import AnomalyScore, combine, factors
from thoth.analytics.session import SessionState

STATE_VERSION = 1
MAX_SESSIONS = 64  # live sessions remembered per agent (oldest forgotten first)
SESSION_IDLE = 4 * 3600.0  # a session idle this long is forgotten
FLAGGED = frozenset({"BLOCK", "STEP_UP", "DEFER", "DENY"})
# Not (yet) part of the baseline: the call never ran, or a human has not approved it. Observe a
# held call again with ALLOW once approved to learn it.
NOT_LEARNT = frozenset({"BLOCK", "DEFER", "DENY", "STEP_UP"})


def _decision_name(decision: object) -> str:
    if decision is None:
        return "UNKNOWN"
    if type(decision) is str:  # the usual case, e.g. "ALLOW": no getattr, no copy
        name = _DECISION_NAMES.get(decision)
        if name is not None:
            return name
    name = str(getattr(decision, "value", decision)).upper()
    return name[:16] or "UNKNOWN"


_DECISION_NAMES = {d: d for d in ("ALLOW", "BLOCK", "STEP_UP", "DEFER", "DENY", "MODIFY", "UNKNOWN")}


class AgentState:
    """Everything the engine knows about one agent."""

    __slots__ = ("per_window", "profile", "series", "sessions", "window")

    def __init__(self) -> None:
        self.profile = AgentProfile()
        self.sessions: dict[str, SessionState] = {}
        self.window: Window | None = None
        self.per_window = Moments()  # calls per closed, non-empty window
        self.series: list[dict[str, Any]] = []  # closed windows, oldest first

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile.to_dict(),
                "sessions": {k: s.to_dict() for k, s in self.sessions.items()},
                "window": self.window.to_dict() if self.window else None,
                "per_window": self.per_window.to_list(), "series": self.series}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AgentState:
        a = cls()
        a.profile = AgentProfile.from_dict(d.get("profile", {}))
        a.sessions = {str(k): SessionState.from_dict(v) for k, v in d.get("sessions", {}).items()}
        a.window = Window.from_dict(d["window"]) if d.get("window") else None
        a.per_window = Moments(*map(float, d.get("per_window", [0, 0, 0])))
        a.series = list(d.get("series", []))
        return a


class AnalyticsEngine:
    """Per-agent baselines, anomaly scores and drift for one tenant.

    score() reads, observe() learns; both are O(1) in the agent's history. Pass the same
    `session_id` to both to let the engine see sequences ("send after a secret read") and rates.
    """

    def __init__(self, state: bytes | dict[str, Any] | None = None, *, window_seconds: float = 3600.0,
                 max_series: int = 168) -> None:
        self.window_seconds = float(window_seconds)
        self.max_series = max_series
        self.agents: dict[str, AgentState] = {}
        self.population = Tally(1024)  # tools called by any agent of the tenant (cold start prior)
        if state is not None:
            self._load(state)

    # -- the hot path ------------------------------------------------------------------------

    def score(self, agent_id: str, tool_name: str, tool_args: object, ts: float, *,
              session_id: str | None = None, provenance: ProvenanceSignals | None = None) -> AnomalyScore:
        """Anomaly of a call about to run, in [0, 1], with its reasons. Changes nothing.
        `provenance`: the call's signals (analytics/provenance.py), None for published clients."""
        f = extract(tool_name, tool_args)
        agent = self.agents.get(agent_id)
        prof = agent.profile if agent is not None else _EMPTY_PROFILE
        sess = agent.sessions.get(session_id or "") if agent is not None else None
        if sess is not None and ts - sess.last_ts > SESSION_IDLE:
            sess = None
        found, cold = factors(prof, sess, f, ts, self.population, provenance)
        score = combine(found, cold, f)
        score.provenance = provenance
        return score

    def observe(self, agent_id: str, tool_name: str, tool_args: object, ts: float, decision: object = None,
                *, session_id: str | None = None, anomaly: AnomalyScore | float | None = None) -> None:
        """Learn one call and its decision. Pass the score() result as `anomaly` to reuse its
        parsed features and to record the score in the agent's time series."""
        f: CallFeatures | None = None
        a_value: float | None = None
        signals = None
        if isinstance(anomaly, AnomalyScore):
            a_value = anomaly.score
            signals = anomaly.provenance
            if anomaly.features is not None and anomaly.features.tool == tool_name[:128]:
                f = anomaly.features
        elif anomaly is not None:
            a_value = float(anomaly)
        if f is None:
            f = extract(tool_name, tool_args)
        self.observe_features(agent_id, f, ts, decision, session_id=session_id, anomaly=a_value, provenance=signals)

    def observe_features(self, agent_id: str, f: CallFeatures, ts: float, decision: object = None, *,
                         session_id: str | None = None, anomaly: float | None = None,
                         provenance: ProvenanceSignals | None = None) -> None:
        """observe() for a call whose features are already extracted (replays, merges)."""
        agent = self.agents.get(agent_id)
        if agent is None:
            agent = self.agents[agent_id] = AgentState()
        dname = _decision_name(decision)
        self._learn(agent, f, ts, dname, session_id or "", anomaly)
        if provenance is not None and dname not in NOT_LEARNT:
            # What this agent's allowed calls usually carry (scoring._provenance_factors).
            prof = agent.profile
            prof.prov_calls += 1
            prof.untrusted += bool(provenance.untrusted)
            prof.off_plan += provenance.off_plan is not None
        if dname not in NOT_LEARNT:
            self.population.add(f.tool)

    def _learn(self, agent: AgentState, f: CallFeatures, ts: float, dname: str, sid: str,
               anomaly: float | None) -> None:
        prof = agent.profile
        win = self._window_for(agent, ts)
        sess = agent.sessions.pop(sid, None)  # re-inserted last: dict order is recency
        if sess is None or ts - sess.last_ts > SESSION_IDLE:
            sess = SessionState()
        learnt = dname not in NOT_LEARNT
        if prof.calls == 0:
            prof.first_ts = ts
        prof.last_ts = max(prof.last_ts, ts)
        prof.calls += 1
        k = prof.decisions.add(dname)
        if win is not None:
            win.calls += 1
            d = win.counts["decisions"]
            d[k] = d.get(k, 0) + 1
            if dname in FLAGGED:
                win.flagged += 1
            if anomaly is not None:
                win.anomaly.add(anomaly)
                win.anomaly_max = max(win.anomaly_max, anomaly)
        if learnt:
            self._learn_content(prof, win, sess, f, ts)
        if dname in FLAGGED:
            sess.flagged += 1
        if sess.calls and 0.0 <= ts - sess.last_ts <= MAX_SESSION_GAP:
            prof.gaps.add(math.log(max(ts - sess.last_ts, 0.01)))
        sess.calls += 1
        sess.last_ts = ts
        sess.recent.append(ts)
        sess.last_tool = f.tool
        agent.sessions[sid] = sess
        if len(agent.sessions) > MAX_SESSIONS:
            del agent.sessions[next(iter(agent.sessions))]
        if prof.calls >= HALVE_AT:
            prof.halve()

    @staticmethod
    def _learn_content(prof: AgentProfile, win: Window | None, sess: SessionState, f: CallFeatures,
                       ts: float) -> None:
        tool = f.tool
        keys = [("tools", prof.tools.add(tool))]
        prof.transitions.add((sess.last_tool or "^") + ">" + tool)
        if f.destinations:
            keys += [("destinations", prof.destinations.add(d)) for d in f.destinations]
        if f.recipients:
            keys += [("recipients", prof.recipients.add(r)) for r in f.recipients]
        if f.paths:
            keys += [("paths", prof.paths.add(p)) for p in f.paths]
        prof.hours[int(ts // 3600) % 24] += 1
        sizes = prof.sizes.get(tool)
        if sizes is None and len(prof.sizes) < prof.tools.cap:
            sizes = prof.sizes[tool] = Moments()
        if sizes is not None:
            sizes.add(math.log2(f.size + 1.0))
        if f.sensitive is not None:
            prof.secret += 1
        if f.egress:
            prof.egress += 1
            if sess.secret is not None:
                prof.egress_after_secret += 1
        if f.sensitive is not None and sess.secret is None:
            sess.secret = f"{f.sensitive} via {tool}"
        if win is not None:
            counts = win.counts
            for family, key in keys:
                d = counts[family]
                d[key] = d.get(key, 0) + 1

    def _window_for(self, agent: AgentState, ts: float) -> Window | None:
        """The open window for `ts`, closing the previous one; None for a late, older call."""
        w = agent.window
        if w is not None and w.start <= ts < w.start + self.window_seconds:
            return w
        if w is not None and ts < w.start:
            return None
        if w is not None:
            self._close(agent, w)
        agent.window = Window(math.floor(ts / self.window_seconds) * self.window_seconds)
        return agent.window

    def _close(self, agent: AgentState, w: Window) -> None:
        if w.calls == 0:
            return
        report = driftmod.compute("", agent.profile, w, self.window_seconds, agent.per_window)
        agent.series.append(self._point(report, w))
        if len(agent.series) > self.max_series:
            del agent.series[: len(agent.series) - self.max_series]
        agent.per_window.add(float(w.calls))

    @staticmethod
    def _point(report: DriftReport, w: Window) -> dict[str, Any]:
        return {"start": w.start, "end": report.window_end, "calls": w.calls, "flagged": w.flagged,
                "drift": round(report.score, 4),
                "anomaly_mean": round(w.anomaly.mean, 4) if w.anomaly.n else None,
                "anomaly_max": round(w.anomaly_max, 4) if w.anomaly.n else None,
                "cold_start": report.cold_start, "reasons": list(report.reasons[:3])}

    # -- reading -----------------------------------------------------------------------------

    def drift(self, agent_id: str, now: float) -> DriftReport:
        """Drift of the agent's most recent window (the open one) against its baseline."""
        agent = self.agents.get(agent_id)
        if agent is None or agent.window is None:
            start = math.floor(now / self.window_seconds) * self.window_seconds
            return DriftReport(agent_id, 0.0, start, start + self.window_seconds, 0, 0, True)
        r = driftmod.compute(agent_id, agent.profile, agent.window, self.window_seconds, agent.per_window)
        return r

    def series(self, agent_id: str, now: float | None = None) -> list[dict[str, Any]]:
        """Drift and anomaly points per window, oldest first; with `now`, the open window too."""
        agent = self.agents.get(agent_id)
        if agent is None:
            return []
        points = list(agent.series)
        if now is not None and agent.window is not None and agent.window.calls:
            r = driftmod.compute(agent_id, agent.profile, agent.window, self.window_seconds, agent.per_window)
            points.append(self._point(r, agent.window) | {"open": now < r.window_end})
        return points

    def agent_report(self, agent_id: str, now: float) -> dict[str, Any]:
        """JSON-ready answer for GET /v1/analytics/agents/{agent_id}."""
        agent = self.agents.get(agent_id)
        prof = agent.profile if agent is not None else _EMPTY_PROFILE
        top = sorted(prof.tools.counts.items(), key=lambda kv: kv[1], reverse=True)[:10]
        return {
            "agent_id": agent_id,
            "known": agent is not None,
            "calls": prof.calls,
            "first_seen": prof.first_ts or None,
            "last_seen": prof.last_ts or None,
            "cold_start": prof.calls < 20,
            "window_seconds": self.window_seconds,
            "top_tools": [{"tool": k, "calls": c} for k, c in top],
            "decisions": dict(prof.decisions.counts),
            "drift": self.drift(agent_id, now).to_dict(),
            "series": self.series(agent_id, now),
        }

    def agent_ids(self) -> list[str]:
        return list(self.agents)

    # -- state -------------------------------------------------------------------------------

    def dump_agent(self, agent_id: str) -> bytes | None:
        agent = self.agents.get(agent_id)
        if agent is None:
            return None
        return _pack({"v": STATE_VERSION, "agent": agent.to_dict()})

    def load_agent(self, agent_id: str, data: bytes) -> None:
        d = _unpack(data)
        if not isinstance(d.get("agent"), dict):
            raise StateError("analytics state holds no agent")
        self.agents[agent_id] = AgentState.from_dict(d["agent"])

    def dump_population(self) -> bytes:
        return _pack({"v": STATE_VERSION, "population": self.population.to_dict()})

    def load_population(self, data: bytes) -> None:
        self.population = Tally.from_dict(_unpack(data).get("population", {}), 1024)

    def dump_state(self) -> bytes:
        """The whole engine as compact bytes (zlib-compressed JSON)."""
        return _pack({"v": STATE_VERSION, "window_seconds": self.window_seconds,
                      "population": self.population.to_dict(),
                      "agents": {k: a.to_dict() for k, a in self.agents.items()}})

    @classmethod
    def load_state(cls, data: bytes | dict[str, Any], **kwargs: Any) -> AnalyticsEngine:
        return cls(data, **kwargs)

    def _load(self, state: bytes | dict[str, Any]) -> None:
        d = _unpack(state) if isinstance(state, bytes | bytearray) else state
        if "window_seconds" in d:
            self.window_seconds = float(d["window_seconds"])
        self.population = Tally.from_dict(d.get("population", {}), 1024)
        self.agents = {str(k): AgentState.from_dict(v) for k, v in d.get("agents", {}).items()}

    def forget(self, agent_ids: Iterable[str]) -> None:
        for a in agent_ids:
            self.agents.pop(a, None)


class StateError(ValueError):
    """Saved analytics state that cannot be read."""


def _pack(d: dict[str, Any]) -> bytes:
    return zlib.compress(json.dumps(d, separators=(",", ":")).encode(), 6)


def _unpack(data: bytes | bytearray) -> dict[str, Any]:
    try:
        d = json.loads(zlib.decompress(bytes(data)))
    except (zlib.error, ValueError) as exc:
        raise StateError(f"unreadable analytics state: {exc}") from exc
    if not isinstance(d, dict) or d.get("v") != STATE_VERSION:
        raise StateError("unsupported analytics state version")
    return d


_EMPTY_PROFILE = AgentProfile()
