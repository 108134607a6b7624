"""Behavioural analytics: per-agent baselines, per-call anomaly scores, drift over time.

Pure library, no I/O. See docs/analytics.md.

    engine = AnalyticsEngine()
    s = engine.score(agent_id, tool_name, tool_args, ts, session_id=sid)   # s.score, s.reasons
    engine.observe(agent_id, tool_name, tool_args, ts, decision, session_id=sid, anomaly=s)
    engine.drift(agent_id, now)                                            # DriftReport
"""

from __future__ import annotations

from thoth.analytics.drift import DriftFeature, DriftReport
from thoth.analytics.engine import AnalyticsEngine, StateError
from thoth.analytics.features import CallFeatures, extract
from thoth.analytics.scoring import AnomalyScore, Factor

__all__ = [
    "AnalyticsEngine",
    "AnomalyScore",
    "CallFeatures",
    "DriftFeature",
    "DriftReport",
    "Factor",
    "StateError",
    "extract",
]
