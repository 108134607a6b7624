"""Every read the dashboard pages make, written against the server's tables.

Each query is bounded (keyset pagination, LIMIT) and served by an index listed in schema.py or
the server's migration, so a page costs the same with a million stored events as with ten.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any

import orjson

from thoth.server.dashboard import timeline
from thoth.server.dashboard.provenance import provenance_view
from thoth.server.dashboard.rollups import HOUR, Rollups

PAGE = 50
TIMELINE_PAGE = 200
SINCE = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
RANGES = {"24h": 24, "7d": 24 * 7, "30d": 24 * 30}
OUTCOMES = ("blocked", "stepped_up", "clean")
DECISIONS = ("ALLOW", "BLOCK", "STEP_UP", "MODIFY", "DEFER")


def _load(text: Any) -> Any:
    if text is None or text == "":
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def split_cursor(cursor: str | None) -> tuple[float, str] | None:
    """Cursors are "<timestamp>|<id>": a tie-breaker so equal timestamps never skip rows."""
    if not cursor or "|" not in cursor:
        return None
    ts, _, key = cursor.partition("|")
    try:
        value = float(ts)
    except ValueError:
        return None
    return (value, key) if math.isfinite(value) else None


# ---- overview and analytics ----------------------------------------------------------------


def overview(rollups: Rollups, tenant_id: str, range_key: str) -> dict[str, Any]:
    hours = RANGES.get(range_key, 24)
    end = int(time.time() // HOUR)
    window = rollups.window(tenant_id, end - hours + 1, end)
    stats = window.hours
    # Longer ranges are drawn by day: 720 hourly bars are too thin to read.
    step = 1 if hours <= 24 * 7 else 24
    series: dict[str, list[int]] = {d: [] for d in DECISIONS}
    xs: list[int] = []
    totals: Counter[str] = Counter()
    agents: Counter[str] = Counter()
    blocked: Counter[str] = Counter()
    stepped: Counter[str] = Counter()
    for i in range(0, len(stats), step):
        chunk = stats[i: i + step]
        xs.append(chunk[0][0] * HOUR)
        for d in DECISIONS:
            series[d].append(sum(s.by_decision.get(d, 0) for _, s in chunk))
        for _, s in chunk:
            totals.update(s.by_decision)
            agents.update(s.by_agent)
            blocked.update(s.blocked_tools)
            stepped.update(s.stepped_up_tools)
    return {
        "xs": xs, "series": {d: v for d, v in series.items() if any(v) or d in ("ALLOW", "BLOCK", "STEP_UP")},
        "totals": {d: totals.get(d, 0) for d in DECISIONS}, "total": sum(totals.values()),
        "top_agents": agents.most_common(8), "top_blocked": blocked.most_common(8),
        "top_stepped_up": stepped.most_common(8), "step": step,
        # Hours still being counted in the background: the page says so and refreshes itself.
        "filling": window.missing, "hours": hours,
    }


def _js_divergence(p: Counter[str], q: Counter[str]) -> float:
    """Jensen-Shannon divergence (base 2, 0..1) between two tool mixes."""
    tp, tq = sum(p.values()), sum(q.values())
    if not tp or not tq:
        return 0.0
    out = 0.0
    for k in set(p) | set(q):
        a, b = p.get(k, 0) / tp, q.get(k, 0) / tq
        m = (a + b) / 2
        if a:
            out += 0.5 * a * math.log2(a / m)
        if b:
            out += 0.5 * b * math.log2(b / m)
    return max(0.0, min(1.0, out))


def agent_series(rollups: Rollups, tenant_id: str, range_key: str) -> dict[str, Any]:
    """Per agent: mean and max risk (the anomaly score the server stored with each decision) and
    tool-mix drift against the agent's preceding 7 days, per hour (per day for 30 days)."""
    hours = RANGES.get(range_key, 24 * 7)
    end = int(time.time() // HOUR)
    base_len = 24 * 7
    stats = [s for _, s in rollups.hours(tenant_id, end - hours - base_len + 1, end)]
    shown = stats[base_len:]
    step = 1 if hours <= 24 * 7 else 24
    xs = [(end - hours + 1 + i) * HOUR for i in range(0, len(shown), step)]
    agents: Counter[str] = Counter()
    for s in shown:
        agents.update(s.by_agent)
    out: dict[str, Any] = {}
    for agent, calls in agents.most_common(20):
        mixes = [s.agent_tools.get(agent) for s in stats]
        # Sliding 7-day baseline: the hours [start - 7d, start) before each bucket.
        base: Counter[str] = Counter()
        for m in mixes[:base_len]:
            if m:
                base.update(m)
        mean, peak, drift = [], [], []
        for i in range(0, len(shown), step):
            start = base_len + i
            n = total = mx = 0.0
            mix: Counter[str] = Counter()
            for s in shown[i: i + step]:
                r = s.agent_risk.get(agent)
                if r:
                    n, total, mx = n + r[0], total + r[1], max(mx, r[2])
                m = s.agent_tools.get(agent)
                if m:
                    mix.update(m)
            mean.append(round(total / n, 4) if n else None)
            peak.append(round(mx, 4) if n else None)
            drift.append(round(_js_divergence(mix, base), 4) if n and sum(base.values()) else None)
            for k in range(start, min(start + step, len(stats))):  # slide the window by one bucket
                if mixes[k]:
                    base.update(mixes[k])
                if mixes[k - base_len]:
                    base.subtract(mixes[k - base_len])
            base = +base  # drop zero counts
        out[agent] = {"calls": calls, "mean_risk": mean, "max_risk": peak, "drift": drift}
    return {"xs": xs, "agents": out}


# ---- sessions --------------------------------------------------------------------------------

_SESSION_COLS = ("session_id, agent_id, user_id, started_at, last_event_at, tool_calls, blocked, stepped_up,"
                 " risk_score")


def _session(r: Any) -> dict[str, Any]:
    return {"session_id": r[0], "agent_id": r[1], "user_id": r[2], "started_at": r[3], "last_event_at": r[4],
            "tool_calls": r[5], "blocked": r[6], "stepped_up": r[7], "risk_score": r[8]}


def list_sessions(db: Any, tenant_id: str, *, agent: str = "", user: str = "", outcome: str = "",
                  since: str = "", q: str = "", cursor: str | None = None,
                  limit: int = PAGE) -> tuple[list[dict[str, Any]], str | None]:
    sql = f"SELECT {_SESSION_COLS} FROM sessions WHERE tenant_id = ?"
    params: list[Any] = [tenant_id]
    if agent:
        sql += " AND agent_id = ?"
        params.append(agent)
    if user:
        sql += " AND user_id = ?"
        params.append(user)
    if q:  # a session id or its beginning
        sql += " AND session_id >= ? AND session_id < ?"
        params += [q, q + "\U0010ffff"]
    if outcome == "blocked":
        sql += " AND blocked > 0"
    elif outcome == "stepped_up":
        sql += " AND stepped_up > 0"
    elif outcome == "clean":
        sql += " AND blocked = 0 AND stepped_up = 0"
    if since in SINCE:
        sql += " AND last_event_at >= ?"
        params.append(time.time() - SINCE[since])
    after = split_cursor(cursor)
    if after:
        sql += " AND (last_event_at < ? OR (last_event_at = ? AND session_id < ?))"
        params += [after[0], after[0], after[1]]
    sql += " ORDER BY last_event_at DESC, session_id DESC LIMIT ?"
    params.append(limit + 1)
    with db.read() as conn:
        rows = conn.all(sql, params)
    items = [_session(r) for r in rows[:limit]]
    nxt = f"{items[-1]['last_event_at']!r}|{items[-1]['session_id']}" if len(rows) > limit else None
    return items, nxt


def known_agents(db: Any, tenant_id: str, limit: int = 200) -> list[str]:
    with db.read() as conn:
        rows = conn.all("SELECT DISTINCT agent_id FROM sessions WHERE tenant_id = ? AND agent_id IS NOT NULL"
                        " ORDER BY agent_id LIMIT ?", (tenant_id, limit))
    return [r[0] for r in rows]


def get_session(db: Any, tenant_id: str, session_id: str) -> dict[str, Any] | None:
    with db.read() as conn:
        r = conn.one(f"SELECT {_SESSION_COLS} FROM sessions WHERE tenant_id = ? AND session_id = ?",
                     (tenant_id, session_id))
        if r is not None:
            return _session(r)
        e = conn.one("SELECT agent_id, body FROM events WHERE tenant_id = ? AND session_id = ?"
                     " ORDER BY chain_index LIMIT 1", (tenant_id, session_id))
    if e is None:
        return None
    body = _load(e[1]) or {}
    ts = timeline.parse_ts(body.get("occurred_at")) or 0.0
    return {"session_id": session_id, "agent_id": e[0], "user_id": body.get("user_id"), "started_at": ts,
            "last_event_at": ts, "tool_calls": 0, "blocked": 0, "stepped_up": 0, "risk_score": 0.0}


_DECISION_COLS = ("decision_id, tool_name, tool_args, decision, would_decision, reason, reason_code,"
                  " matched_rule_ids, risk_score, violation_id, hold_token, enforcement_mode, environment,"
                  " decided_at, agent_id, user_id, session_id, response")


def _decision(r: Any) -> dict[str, Any]:
    return {"decision_id": r[0], "tool_name": r[1], "tool_args": _load(r[2]), "decision": r[3],
            "would_decision": r[4], "reason": r[5], "reason_code": r[6], "matched_rule_ids": _load(r[7]) or [],
            "risk_score": r[8], "violation_id": r[9], "hold_token": r[10], "enforcement_mode": r[11],
            "environment": r[12], "decided_ts": r[13], "agent_id": r[14], "user_id": r[15], "session_id": r[16],
            "provenance": provenance_view(r[17])}


def session_timeline(db: Any, tenant_id: str, session_id: str, *, after: int | None = None,
                     before: int | None = None, limit: int = TIMELINE_PAGE) -> dict[str, Any]:
    """One page of the session's timeline, by chain position of its events.

    Decisions belong to the page whose event time window contains them, so each appears on
    exactly one page: [first event of this page, first event of the next page).
    """
    with db.read() as conn:
        base = "SELECT chain_index, body, ingest_key_id FROM events WHERE tenant_id = ? AND session_id = ?"
        params: list[Any] = [tenant_id, session_id]
        if before is not None:
            rows = conn.all(base + " AND chain_index < ? ORDER BY chain_index DESC LIMIT ?",
                            params + [before, limit + 1])
            has_older = len(rows) > limit
            rows = list(reversed(rows[:limit]))
        else:
            if after is not None:
                rows = conn.all(base + " AND chain_index > ? ORDER BY chain_index LIMIT ?",
                                params + [after, limit + 1])
            else:
                rows = conn.all(base + " ORDER BY chain_index LIMIT ?", params + [limit + 1])
            rows = rows[:limit]
            has_older = after is not None
        nxt = None
        if rows:
            nxt = conn.one(base + " AND chain_index > ? ORDER BY chain_index LIMIT 1", params + [rows[-1][0]])
        has_newer = nxt is not None
        total = int(conn.one("SELECT COUNT(*) FROM events WHERE tenant_id = ? AND session_id = ?",
                             (tenant_id, session_id))[0])
        events = []
        for idx, body, key_id in rows:
            e = _load(body) or {}
            e["chain_index"] = idx
            e["ingest_key_id"] = key_id  # the chained column, never a field a client once sent
            events.append(e)
        first_ts = timeline.parse_ts(events[0].get("occurred_at")) if events and has_older else None
        next_ts = timeline.parse_ts((_load(nxt[1]) or {}).get("occurred_at")) if nxt else None
        dsql = f"SELECT {_DECISION_COLS} FROM decisions WHERE tenant_id = ? AND session_id = ?"
        dparams: list[Any] = [tenant_id, session_id]
        if first_ts is not None:
            dsql += " AND decided_at >= ?"
            dparams.append(first_ts)
        if next_ts is not None:
            dsql += " AND decided_at < ?"
            dparams.append(next_ts)
        # A session's decisions are bounded by its events except when the SDK sent no events.
        drows = conn.all(dsql + " ORDER BY decided_at LIMIT ?", dparams + [limit * 2])
        decisions = [_decision(r) for r in drows]
        ids = [d["decision_id"] for d in decisions if d["hold_token"]]
        approvals: dict[str, dict[str, Any]] = {}
        if ids:
            marks = ", ".join("?" * len(ids))
            for a in conn.all(f"SELECT decision_id, approval_id, status, resolved_by, resolution_reason,"
                              f" resolved_at FROM approvals WHERE tenant_id = ? AND decision_id IN ({marks})",
                              [tenant_id, *ids]):
                approvals[a[0]] = {"approval_id": a[1], "status": a[2], "resolved_by": a[3], "reason": a[4],
                                   "resolved_at": a[5]}
    return {
        "rows": timeline.build(events, decisions, approvals), "total_events": total,
        "first_index": events[0]["chain_index"] if events else None,
        "last_index": events[-1]["chain_index"] if events else None,
        "has_older": has_older, "has_newer": has_newer,
    }


# ---- violations ------------------------------------------------------------------------------


def list_violations(db: Any, tenant_id: str, *, agent: str = "", decision: str = "", cursor: str | None = None,
                    limit: int = PAGE) -> tuple[list[dict[str, Any]], str | None]:
    sql = f"SELECT {_DECISION_COLS} FROM decisions WHERE tenant_id = ? AND violation_id IS NOT NULL"
    params: list[Any] = [tenant_id]
    if agent:
        sql += " AND agent_id = ?"
        params.append(agent)
    if decision in DECISIONS:
        sql += " AND decision = ?"
        params.append(decision)
    after = split_cursor(cursor)
    if after:
        sql += " AND (decided_at < ? OR (decided_at = ? AND decision_id < ?))"
        params += [after[0], after[0], after[1]]
    sql += " ORDER BY decided_at DESC, decision_id DESC LIMIT ?"
    params.append(limit + 1)
    with db.read() as conn:
        rows = conn.all(sql, params)
    items = [_decision(r) for r in rows[:limit]]
    nxt = f"{items[-1]['decided_ts']!r}|{items[-1]['decision_id']}" if len(rows) > limit else None
    return items, nxt


def violation(db: Any, tenant_id: str, violation_id: str) -> dict[str, Any] | None:
    with db.read() as conn:
        r = conn.one(f"SELECT {_DECISION_COLS} FROM decisions WHERE tenant_id = ? AND violation_id = ?"
                     " ORDER BY decided_at LIMIT 1", (tenant_id, violation_id))
        if r is None:
            return None
        d = _decision(r)
        a = conn.one("SELECT approval_id, status, resolved_by, resolution_reason, resolved_at, expires_at"
                     " FROM approvals WHERE tenant_id = ? AND decision_id = ?", (tenant_id, d["decision_id"]))
    d["approval"] = ({"approval_id": a[0], "status": a[1], "resolved_by": a[2], "reason": a[3],
                      "resolved_at": a[4], "expires_at": a[5]} if a else None)
    return d


# ---- approvals -------------------------------------------------------------------------------

_APPROVAL_COLS = ("approval_id, hold_token, violation_id, decision_id, tool_name, tool_args, agent_id,"
                  " session_id, reason, requested_at, expires_at, status, resolved_by, resolution_reason,"
                  " resolved_at, uses, allowed_uses, valid_seconds, valid_until")


def _approval(r: Any) -> dict[str, Any]:
    return {"approval_id": r[0], "hold_token": r[1], "violation_id": r[2], "decision_id": r[3],
            "tool_name": r[4], "tool_args": _load(r[5]), "agent_id": r[6], "session_id": r[7],
            "request_reason": r[8], "requested_at": r[9], "expires_at": r[10], "status": r[11],
            "resolved_by": r[12], "reason": r[13], "resolved_at": r[14], "uses": r[15], "allowed_uses": r[16],
            "valid_seconds": r[17], "valid_until": r[18],
            # An approved call may still run (docs/approvals.md, "Uses"): window open, a use left.
            "usable": r[11] == "approved" and r[18] is not None and r[18] > time.time() and r[15] < r[16]}


def pending_approvals(db: Any, tenant_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """Pending and not yet expired (an expired hold already answers BLOCK to the agent)."""
    with db.read() as conn:
        rows = conn.all(f"SELECT {_APPROVAL_COLS} FROM approvals WHERE tenant_id = ? AND status = 'pending'"
                        " AND expires_at > ? ORDER BY requested_at LIMIT ?", (tenant_id, time.time(), limit))
        items = [_approval(r) for r in rows]
        # The approver sees where the held call's arguments came from (our SDK's calls only).
        ids = [a["decision_id"] for a in items if a["decision_id"]]
        answers: dict[str, Any] = {}
        if ids:
            marks = ", ".join("?" * len(ids))
            answers = dict(conn.all(f"SELECT decision_id, response FROM decisions WHERE tenant_id = ?"
                                    f" AND decision_id IN ({marks}) AND response != ''", [tenant_id, *ids]))
    for a in items:
        a["provenance"] = provenance_view(answers.get(a["decision_id"]))
    return items


def resolved_approvals(db: Any, tenant_id: str, limit: int = 50) -> list[dict[str, Any]]:
    with db.read() as conn:
        rows = conn.all(f"SELECT {_APPROVAL_COLS} FROM approvals WHERE tenant_id = ? AND resolved_at IS NOT NULL"
                        " ORDER BY resolved_at DESC LIMIT ?", (tenant_id, limit))
    return [_approval(r) for r in rows]


def approvals_version(db: Any, tenant_id: str) -> str:
    """Changes whenever an approval is created, resolved or expires: the queue's live-update signal."""
    now = time.time()
    with db.read() as conn:
        pending = conn.one("SELECT COUNT(*), MAX(requested_at) FROM approvals WHERE tenant_id = ?"
                           " AND status = 'pending' AND expires_at > ?", (tenant_id, now))
        # Uses taken also change the page (the approved rows' "uses" column).
        resolved = conn.one("SELECT COUNT(*), MAX(resolved_at), SUM(uses) FROM approvals WHERE tenant_id = ?"
                            " AND resolved_at > ?", (tenant_id, now - 86400))
    return f"{pending[0]}:{pending[1]}:{resolved[0]}:{resolved[1]}:{resolved[2]}"
