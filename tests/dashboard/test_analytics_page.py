"""The analytics page charts the analytics engine's drift and anomaly series per agent (the same
numbers as GET /v1/analytics/agents/{id}) and lists the features that moved."""

from __future__ import annotations

import html
import json
import re
import time
from typing import Any

import httpx
from tests.support.dashboard import TENANT, Agent, Server

from thoth.server.analytics_state import stored_engine
from thoth.server.db import Database

AGENT = "drifty-bot"


def seed_history(server: Server) -> None:
    """Three days of routine work, then one hour of e-mail to new domains, learnt by another
    process (this test) into the shared analytics state."""
    db = Database(server.db_url)
    stored = stored_engine(db, TENANT)
    hour = int(time.time() // 3600) * 3600

    def call(tool: str, args: dict[str, Any], ts: float, sid: str) -> None:
        score = stored.score(AGENT, tool, args, ts, session_id=sid)
        stored.observe(AGENT, tool, args, ts, "ALLOW", session_id=sid, anomaly=score)

    for h in range(72, 48, -1):
        for i in range(10):
            call("search", {"q": f"invoice {i}"}, hour - h * 3600 + i * 60, f"routine-{h}")
        for i in range(5):
            call("read_invoice", {"id": i}, hour - h * 3600 + 700 + i * 60, f"routine-{h}")
    for i in range(15):
        call("send_email", {"to": f"x{i}@evil.test"}, hour - 24 * 3600 + i * 60, "exfil")
    stored.flush()
    db.close()


def page_data(text: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="analytics-data">(.*?)</script>', text, re.S)
    assert m
    return dict(json.loads(m.group(1)))


def test_analytics_page_charts_engine_series(server: Server) -> None:
    seed_history(server)
    agent = Agent(server, server.key(), agent_id=AGENT, scope=["search", "read_invoice"])
    for _ in range(3):
        agent.call("search", {"q": "today"})
    admin = server.login()
    r = admin.get("/analytics", params={"range": "7d"})
    assert r.status_code == 200
    data = page_data(r.text)
    mine = data["agents"][AGENT]
    assert mine["source"] == "engine"

    api = httpx.get(f"{server.url}/v1/analytics/agents/{AGENT}", headers={"x-api-key": server.key("viewer")}).json()
    series = api["analytics"]["series"]
    exfil = max(series, key=lambda p: p["drift"])
    assert exfil["drift"] > 0.3 and any("send_email" in reason for reason in exfil["reasons"])
    # The chart's points are the engine's: the drift and anomaly of each window at its hour.
    i = data["xs"].index(int(exfil["start"]))
    assert mine["drift"][i] == exfil["drift"]
    assert mine["max_risk"][i] == exfil["anomaly_max"] and mine["mean_risk"][i] == exfil["anomaly_mean"]
    charted = {x: d for x, d in zip(data["xs"], mine["drift"], strict=True) if d is not None}
    assert charted == {int(p["start"]): p["drift"] for p in series if p["start"] >= data["xs"][0]}

    # What moved: now (the open window against the baseline) and in the window that drifted most.
    text = html.unescape(r.text)
    assert api["analytics"]["drift"]["features"]
    for feature in api["analytics"]["drift"]["features"][:3]:
        assert feature["text"] in text
    assert mine["drifted"][0]["start"] == exfil["start"]
    for reason in exfil["reasons"]:
        assert reason in text
