"""Analytics engine: scores, reasons, cold start, drift, state, bounded memory."""

from __future__ import annotations

import random

import pytest

from thoth.analytics import AnalyticsEngine, AnomalyScore, StateError, extract
from thoth.analytics.profile import CAPS

T0 = 1_700_000_000.0  # 22:13 UTC


def train(engine: AnalyticsEngine, agent: str = "agent", sessions: int = 40, seed: int = 1) -> float:
    """A research agent: searches, reads reports under /data, summarises; returns the last ts."""
    r = random.Random(seed)
    t = T0
    for s in range(sessions):
        sid = f"s{s}"
        for _ in range(8):
            t += r.uniform(5, 40)
            tool = r.choice(["search_docs", "read_file", "summarize"])
            args: dict[str, object]
            if tool == "read_file":
                args = {"path": f"/data/reports/q{r.randint(1, 4)}.csv"}
            elif tool == "search_docs":
                args = {"query": "quarterly revenue", "url": "https://docs.example.com/search"}
            else:
                args = {"text": "x" * r.randint(200, 400)}
            sc = engine.score(agent, tool, args, t, session_id=sid)
            engine.observe(agent, tool, args, t, "ALLOW", session_id=sid, anomaly=sc)
        t += 1200
    return t


def test_features_are_extracted_once_and_bounded() -> None:
    f = extract("send_email", {"to": "Bob@Evil.io", "body": "see https://paste.example.org/x",
                               "attachments": ["/home/app/.env"], "deep": [[[[[[["too deep"]]]]]]]})
    assert f.destinations == ("paste.example.org", "evil.io") or set(f.destinations) == {"paste.example.org", "evil.io"}
    assert "bob@evil.io" in f.recipients
    assert f.paths == ("/home/app",)
    assert f.sensitive == ".env"
    assert f.egress
    big = extract("search", {"q": ["a@b.com"] * 10_000})
    assert big.size <= 64 * 8  # the walk stops after 64 leaves
    assert extract("t", None).size == 8 and extract("t", "plain").egress is False


def test_usual_calls_score_low_and_unusual_calls_score_high_with_reasons() -> None:
    e = AnalyticsEngine()
    t = train(e)
    usual = e.score("agent", "read_file", {"path": "/data/reports/q2.csv"}, t + 10, session_id="n")
    assert usual.score < 0.2, usual
    new_tool = e.score("agent", "delete_records", {"table": "customers"}, t + 10, session_id="n")
    assert new_tool.score >= 0.6
    assert "first call of delete_records by this agent" in new_tool.reasons
    assert 0.0 <= new_tool.score <= 1.0


def test_send_after_secret_read_in_the_same_session() -> None:
    e = AnalyticsEngine()
    t = train(e)
    e.observe("agent", "read_file", {"path": "/home/app/.env"}, t + 1, "ALLOW", session_id="x")
    s = e.score("agent", "send_email", {"to": "drop@evil.io", "body": "k" * 2000}, t + 2, session_id="x")
    assert s.score >= 0.9
    codes = [f.code for f in s.factors]
    assert "egress_after_secret" in codes and "new_destination" in codes
    assert any(".env" in r for r in s.reasons)
    # The same send in another session (no secret read there) lacks that factor.
    other = e.score("agent", "send_email", {"to": "drop@evil.io", "body": "k" * 2000}, t + 2, session_id="y")
    assert "egress_after_secret" not in [f.code for f in other.factors]
    assert other.score < s.score


def test_rate_burst_is_reported_as_a_multiple_of_the_usual_rate() -> None:
    e = AnalyticsEngine()
    t = train(e)
    for i in range(8):
        e.observe("agent", "search_docs", {"query": "q"}, t + i * 0.5, "ALLOW", session_id="burst")
    s = e.score("agent", "search_docs", {"query": "q"}, t + 4.0, session_id="burst")
    burst = [f for f in s.factors if f.code == "rate_burst"]
    assert burst and "x the usual call rate" in burst[0].text
    assert s.score >= 0.5


def test_cold_start_uses_context_and_tenant_signals_only() -> None:
    e = AnalyticsEngine()
    train(e, agent="veteran")
    fresh = e.score("newbie", "search_docs", {"query": "q"}, T0, session_id="a")
    assert fresh.cold_start and fresh.score == 0.0
    odd = e.score("newbie", "wire_transfer", {"amount": 10_000}, T0, session_id="a")
    assert odd.cold_start and "new_tool_tenant" in [f.code for f in odd.factors]
    e.observe("newbie", "read_secret", {"name": "prod/db_password"}, T0, "ALLOW", session_id="a")
    exfil = e.score("newbie", "send_email", {"to": "x@evil.io"}, T0 + 1, session_id="a")
    assert exfil.score >= 0.75  # history-independent: a send right after a secret read


def test_blocked_calls_are_not_learnt_and_raise_the_session() -> None:
    e = AnalyticsEngine()
    t = train(e)
    for i in range(3):
        e.observe("agent", "drop_table", {"table": "users"}, t + i, "BLOCK", session_id="p")
    again = e.score("agent", "drop_table", {"table": "users"}, t + 5, session_id="p")
    assert "first call of drop_table by this agent" in again.reasons  # never learnt
    assert "flagged_session" in [f.code for f in again.factors]
    assert e.agent_report("agent", t + 5)["decisions"]["BLOCK"] == 3


def test_drift_is_explained_by_the_features_that_moved() -> None:
    e = AnalyticsEngine(window_seconds=3600)
    t = train(e, sessions=60)
    quiet = e.drift("agent", t)
    start = (t // 3600 + 1) * 3600
    for i in range(30):
        e.observe("agent", "send_email", {"to": f"u{i}@other.example"}, start + i * 10, "ALLOW", session_id="d")
    moved = e.drift("agent", start + 400)
    assert moved.score > 0.5 > quiet.score
    assert any("send_email" in r for r in moved.reasons)
    assert any(f.family == "destinations" and f.key == "other.example" for f in moved.features)
    # Closing the window appends a point to the agent's series.
    e.observe("agent", "search_docs", {"query": "q"}, start + 3600 + 5, "ALLOW", session_id="d")
    series = e.series("agent")
    assert series[-1]["start"] == start and series[-1]["drift"] == pytest.approx(moved.score, abs=1e-3)
    assert all(p["end"] - p["start"] == 3600 for p in series)


def test_unknown_agent_drift_and_report_are_empty_not_errors() -> None:
    e = AnalyticsEngine()
    d = e.drift("ghost", T0)
    assert d.score == 0.0 and d.cold_start and d.calls == 0
    rep = e.agent_report("ghost", T0)
    assert rep["known"] is False and rep["series"] == []


def test_state_round_trip_gives_identical_scores() -> None:
    e = AnalyticsEngine()
    t = train(e)
    e.observe("agent", "read_file", {"path": "/home/app/.env"}, t + 1, "ALLOW", session_id="x")
    e2 = AnalyticsEngine.load_state(e.dump_state())
    for tool, args in [("send_email", {"to": "a@evil.io"}), ("read_file", {"path": "/data/reports/q1.csv"})]:
        a = e.score("agent", tool, args, t + 2, session_id="x")
        b = e2.score("agent", tool, args, t + 2, session_id="x")
        assert a.score == pytest.approx(b.score) and a.reasons == b.reasons
    assert e2.drift("agent", t + 2) == e.drift("agent", t + 2)


@pytest.mark.parametrize("bad", [b"", b"not zlib", __import__("zlib").compress(b'{"v": 99}')])
def test_bad_state_is_a_clear_error(bad: bytes) -> None:
    with pytest.raises(StateError):
        AnalyticsEngine.load_state(bad)


def test_memory_per_agent_is_bounded() -> None:
    e = AnalyticsEngine()
    for i in range(3000):
        e.observe("a", f"tool{i}", {"to": f"u{i}@d{i}.com", "path": f"/p{i}/x/y"}, T0 + i, "ALLOW",
                  session_id=f"s{i}")
    agent = e.agents["a"]
    assert len(agent.profile.tools.counts) <= CAPS["tools"] + 1
    assert len(agent.profile.destinations.counts) <= CAPS["destinations"] + 1
    assert len(agent.profile.paths.counts) <= CAPS["paths"] + 1
    assert len(agent.sessions) <= 64
    s = e.score("a", "tool99999", {}, T0 + 4000)
    assert isinstance(s, AnomalyScore) and 0.0 <= s.score <= 1.0


def test_untrusted_arguments_never_raise() -> None:
    e = AnalyticsEngine()
    weird: list[object] = [None, 3, "x" * 100_000, {"a": {"b": [1, {"c": None}]}}, [b"bytes"], {1: 2},
                           {"to": "@@@", "url": "http://"}, {"path": "C:\\Users\\x\\secrets.txt"}]
    for i, args in enumerate(weird):
        s = e.score("w", "tool", args, T0 + i)
        e.observe("w", "tool", args, T0 + i, None, anomaly=s)
    assert e.agents["w"].profile.calls == len(weird)
