"""Audit events built off the caller's path: ids, timestamps, history snapshots, laziness."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from thoth.events import iso_utc, uuid4
from thoth.models import DecisionType, EnforcementDecision, ThothConfig
from thoth.policy.local import LocalEnforcer, LocalEventSink
from thoth.session import SessionContext
from thoth.tracer import Tracer

WIRE_FIELDS = {
    "event_id", "tenant_id", "agent_id", "session_id", "user_id", "source_type", "event_type", "content",
    "metadata", "approved_scope", "enforcement_mode", "session_tool_calls", "tool_name", "endpoint_id",
    "hostname", "occurred_at", "ingested_at", "ttl", "violation_id", "chain_index", "hash", "previous_hash",
    "signature",
}


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_iso_utc_is_what_datetime_prints(ts: float) -> None:
    assert iso_utc(ts) == datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")


def test_uuid4_is_a_random_rfc4122_version_4_uuid() -> None:
    ids = [uuid4() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:500]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # Random in every position that is not fixed by the format (not a prefix plus a counter).
    assert len({text[:8] for text in ids}) > 19_000 and len({text[-12:] for text in ids}) > 19_000


def test_snapshot_is_a_prefix_unchanged_by_later_calls() -> None:
    session = SessionContext(ThothConfig(agent_id="a", tenant_id="t", api_url="local"))
    first = session.snapshot("search")
    session.record_tool_call("search")
    second = session.snapshot("search")  # already last: not appended again
    third = session.snapshot("send")
    done = session.snapshot()
    session.record_tool_call("send")
    assert first.to_list() == ["search"]
    assert second.to_list() == ["search"]
    assert third.to_list() == ["search", "send"]
    assert done.to_list() == ["search"]
    assert session.history_for("send") == ["search", "send"]


class Recorder:
    """An emitter without emit_later: the tracer builds each event before emit()."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)


class Allow:
    allow = EnforcementDecision(decision=DecisionType.ALLOW)

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def enforce(self, request: dict[str, Any]) -> EnforcementDecision:
        self.requests.append(request)
        return self.allow


def _config() -> ThothConfig:
    return ThothConfig(agent_id="bot", tenant_id="acme", api_url="local", approved_scope=["search"],
                       session_id="s-1")


def test_lazy_and_eager_events_are_the_same_wire_events(tmp_path: Path) -> None:
    sink = LocalEventSink(path=tmp_path / "events.jsonl")
    recorder = Recorder()
    lazy = Tracer(config=_config(), emitter=sink, enforcer=Allow(), step_up=object())
    eager = Tracer(config=_config(), emitter=recorder, enforcer=Allow(), step_up=object())
    for tracer in (lazy, eager):
        search = tracer.wrap_tool("search", lambda q: q.upper())
        assert search("a") == "A" and search(q="b") == "B"
        tracer.record_llm_usage(model="m", input_tokens=3, output_tokens=4)
    written = sink.read()
    assert [e["event_type"] for e in written] == [e["event_type"] for e in recorder.events] == [
        "TOOL_CALL_PRE", "TOOL_CALL_POST", "TOOL_CALL_PRE", "TOOL_CALL_POST", "LLM_INVOCATION"]
    for a, b in zip(written, recorder.events, strict=True):
        assert set(a) == set(b) == WIRE_FIELDS
        assert re.fullmatch(r"acme:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", a["event_id"])
        assert datetime.fromisoformat(a["occurred_at"]).tzinfo is not None
        assert a["ttl"] - datetime.fromisoformat(a["occurred_at"]).timestamp() > 89 * 24 * 3600
        a_meta = {k: v for k, v in a["metadata"].items() if k != "duration_ms"}
        b_meta = {k: v for k, v in b["metadata"].items() if k != "duration_ms"}
        assert a_meta == b_meta
        same = WIRE_FIELDS - {"event_id", "occurred_at", "ttl", "metadata"}
        assert {k: a[k] for k in same} == {k: b[k] for k in same}
    # History as of each event, although the lazy events were built after every call had run.
    assert [e["session_tool_calls"] for e in written] == [
        ["search"], ["search"], ["search"], ["search", "search"], ["search", "search"]]
    assert written[1]["metadata"]["decision"] == "ALLOW"


def test_request_carries_history_only_for_enforcers_that_read_it() -> None:
    remote = Allow()
    tracer = Tracer(config=_config(), emitter=Recorder(), enforcer=remote, step_up=object())
    search = tracer.wrap_tool("search", lambda: None)
    search()
    search()
    assert [r["session_tool_calls"] for r in remote.requests] == [["search"], ["search"]]

    local = LocalEnforcer(_config())
    assert local.wants_session_tool_calls is False
    tracer = Tracer(config=_config(), emitter=Recorder(), enforcer=local, step_up=object())
    request, calls = tracer._request("search", {"q": "x"})
    assert "session_tool_calls" not in request and calls.to_list() == ["search"]
    assert local.enforce(request).decision is DecisionType.ALLOW


def test_a_failing_builder_loses_only_its_own_event(tmp_path: Path) -> None:
    sink = LocalEventSink(path=tmp_path / "events.jsonl")
    sink.emit({"event_type": "A"})

    def broken() -> dict[str, Any]:
        raise RuntimeError("cannot build")

    sink.emit_later(broken)
    sink.emit_later(lambda: {"event_type": "B"})
    assert sink.flush()
    assert [e["event_type"] for e in sink.read()] == ["A", "B"]
    assert sink.dropped == 1 and sink.sent == 2
