"""The analytics page's charts from the analytics engine (thoth.analytics): per agent, its drift
score and anomaly scores per window, the same numbers GET /v1/analytics/agents/{agent_id}
serves, laid onto the page's time buckets; and the features that moved.

The engine keeps one point per window (an hour by default): drift of that window against the
agent's learnt baseline, mean and peak anomaly score of its calls, and the reasons (features
whose share moved most). A bucket of the page (an hour, or a day for 30 days) shows the highest
drift, the call-weighted mean anomaly and the peak anomaly of the windows that start in it.
"""

from __future__ import annotations

from typing import Any

MAX_MOVED = 8
TOP_WINDOWS = 3


def apply(data: dict[str, Any], reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Replace each agent's series with the engine's where it has a report; mark the source."""
    xs: list[int] = data["xs"]
    step = (xs[1] - xs[0]) if len(xs) > 1 else 3600
    index = {x: i for i, x in enumerate(xs)}
    for name, agent in data["agents"].items():
        report = reports.get(name)
        if not report or not report.get("series"):
            # Not in the engine (e.g. analytics off): the risk stored with decisions, and no drift
            # rather than a second, different drift measure.
            agent["source"] = "decisions"
            agent["drift"] = [None] * len(xs)
            continue
        n = len(xs)
        drift: list[float | None] = [None] * n
        peak: list[float | None] = [None] * n
        weighted, calls = [0.0] * n, [0] * n
        shown = []
        for point in report["series"]:
            start = int(point["start"])
            i = index.get(start - (start - xs[0]) % step) if xs and start >= xs[0] else None
            if i is None:
                continue
            shown.append(point)
            drift[i] = max(drift[i] or 0.0, float(point.get("drift") or 0.0))
            if point.get("anomaly_mean") is not None:
                weighted[i] += float(point["anomaly_mean"]) * int(point.get("calls") or 0)
                calls[i] += int(point.get("calls") or 0)
                peak[i] = max(peak[i] or 0.0, float(point.get("anomaly_max") or 0.0))
        agent["drift"] = drift
        agent["max_risk"] = peak
        agent["mean_risk"] = [round(w / c, 4) if c else None for w, c in zip(weighted, calls, strict=True)]
        agent["source"] = "engine"
        now = report.get("drift") or {}
        agent["drift_now"] = now.get("score")
        agent["cold_start"] = bool(report.get("cold_start"))
        agent["moved"] = [{"text": f["text"], "recent": f["recent"], "baseline": f["baseline"]}
                          for f in (now.get("features") or [])[:MAX_MOVED]]
        # The windows that drifted most in the range, with what moved then.
        top = sorted((p for p in shown if p.get("drift") and p.get("reasons")),
                     key=lambda p: float(p["drift"]), reverse=True)[:TOP_WINDOWS]
        agent["drifted"] = [{"start": p["start"], "drift": p["drift"], "reasons": list(p["reasons"])} for p in top]
    return data
