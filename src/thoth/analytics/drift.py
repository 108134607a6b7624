"""Drift: how far an agent's recent window moved from its baseline, and which features moved.

Calls are grouped in fixed, aligned time windows (an hour by default). A window keeps the same
counts as the profile, for the calls it holds; the baseline is the profile minus the window,
so a window is never compared with itself. Each feature family gives a Jensen-Shannon
divergence in [0, 1]; families are combined by noisy-OR, weighted, and damped for windows of
few calls (sampling noise alone makes small windows look different).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from thoth.analytics.profile import AgentProfile, Moments

# Hour of day is left to the per-call score: a one-hour window always sits in a single hour.
FAMILIES = {"tools": 1.0, "destinations": 0.8, "recipients": 0.5, "paths": 0.6, "decisions": 0.8}
_LABEL = {"tools": "tool", "destinations": "destination", "recipients": "recipient", "paths": "path prefix",
          "decisions": "decision"}
MIN_BASELINE = 30  # calls in the baseline before drift is judged
DAMP = 10.0  # a window of DAMP calls counts half


class Window:
    """Counts of one time window (keys as the profile counts them)."""

    __slots__ = ("anomaly", "anomaly_max", "calls", "counts", "flagged", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.calls = 0
        self.flagged = 0
        self.counts: dict[str, dict[str, int]] = {name: {} for name in FAMILIES}
        self.anomaly = Moments()
        self.anomaly_max = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "calls": self.calls, "flagged": self.flagged, "counts": self.counts,
                "anomaly": self.anomaly.to_list(), "anomaly_max": self.anomaly_max}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Window:
        w = cls(float(d.get("start", 0.0)))
        w.calls = int(d.get("calls", 0))
        w.flagged = int(d.get("flagged", 0))
        counts = d.get("counts", {})
        w.counts = {name: {str(k): int(v) for k, v in counts.get(name, {}).items()} for name in FAMILIES}
        w.anomaly = Moments(*map(float, d.get("anomaly", [0, 0, 0])))
        w.anomaly_max = float(d.get("anomaly_max", 0.0))
        return w


@dataclass(slots=True, frozen=True)
class DriftFeature:
    family: str
    key: str
    recent: float  # share of the window's calls
    baseline: float  # share of the baseline's calls
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "key": self.key, "recent": round(self.recent, 4),
                "baseline": round(self.baseline, 4), "text": self.text}


@dataclass(slots=True, frozen=True)
class DriftReport:
    agent_id: str
    score: float  # in [0, 1]
    window_start: float
    window_end: float
    calls: int  # calls in the window
    baseline_calls: int
    cold_start: bool
    features: tuple[DriftFeature, ...] = ()
    families: tuple[tuple[str, float], ...] = ()  # per family divergence

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(f.text for f in self.features)

    def to_dict(self) -> dict[str, Any]:
        return {"agent_id": self.agent_id, "score": round(self.score, 4), "window_start": self.window_start,
                "window_end": self.window_end, "calls": self.calls, "baseline_calls": self.baseline_calls,
                "cold_start": self.cold_start, "reasons": list(self.reasons),
                "features": [f.to_dict() for f in self.features],
                "families": {k: round(v, 4) for k, v in self.families}}


def _js(p: dict[str, float], q: dict[str, float]) -> float:
    """Jensen-Shannon divergence, base 2, of two distributions given as shares."""
    total = 0.0
    for k in p.keys() | q.keys():
        a, b = p.get(k, 0.0), q.get(k, 0.0)
        m = (a + b) / 2.0
        if a > 0.0:
            total += a * math.log2(a / m)
        if b > 0.0:
            total += b * math.log2(b / m)
    return max(0.0, min(1.0, total / 2.0))


def _baseline_counts(prof: AgentProfile, family: str, win: Window) -> dict[str, int]:
    full: dict[str, int] = getattr(prof, family).counts
    wc = win.counts[family]
    out = {}
    for k, c in full.items():
        rest = c - wc.get(k, 0)
        if rest > 0:
            out[k] = rest
    return out


def compute(agent_id: str, prof: AgentProfile, win: Window, window_seconds: float,
            per_window: Moments) -> DriftReport:
    """Drift of `win` against the rest of the profile. Cost: the size of the tallies, once."""
    base_calls = max(0, prof.calls - win.calls)
    end = win.start + window_seconds
    if base_calls < MIN_BASELINE or win.calls == 0:
        return DriftReport(agent_id, 0.0, win.start, end, win.calls, base_calls, base_calls < MIN_BASELINE)
    damp = win.calls / (win.calls + DAMP)
    keep = 1.0
    fams: list[tuple[str, float]] = []
    moved: list[tuple[float, DriftFeature]] = []
    for family, weight in FAMILIES.items():
        wc = win.counts[family]
        wt = sum(wc.values())
        bc = _baseline_counts(prof, family, win)
        bt = sum(bc.values())
        if wt == 0 or bt == 0:
            continue
        p = {k: c / wt for k, c in wc.items()}
        q = {k: c / bt for k, c in bc.items()}
        js = _js(p, q)
        fams.append((family, js))
        keep *= 1.0 - weight * js * damp
        label = _LABEL[family]
        for k in p.keys() | q.keys():
            a, b = p.get(k, 0.0), q.get(k, 0.0)
            if abs(a - b) < 0.1:
                continue
            if b == 0.0:
                text = f"new {label} {k}: {a:.0%} of recent calls, never in the baseline"
            else:
                text = f"{label} {k}: {a:.0%} of recent calls (baseline {b:.0%})"
            moved.append((weight * abs(a - b), DriftFeature(family, k, a, b, text)))
    if per_window.n >= 3 and per_window.mean > 0:
        ratio = win.calls / per_window.mean
        if ratio >= 3.0 or (ratio <= 1 / 3 and win.calls >= 5):
            js_rate = min(1.0, abs(math.log(ratio)) / math.log(20.0))
            fams.append(("rate", js_rate))
            keep *= 1.0 - 0.6 * js_rate
            moved.append((0.6 * js_rate, DriftFeature(
                "rate", "calls", float(win.calls), per_window.mean,
                f"{win.calls} calls in the window, {ratio:.1f}x the usual {per_window.mean:.0f}")))
    moved.sort(key=lambda x: x[0], reverse=True)
    return DriftReport(agent_id, 1.0 - keep, win.start, end, win.calls, base_calls, False,
                       tuple(f for _, f in moved[:5]), tuple(fams))
