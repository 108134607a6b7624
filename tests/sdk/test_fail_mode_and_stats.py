"""Which events say that a decision was made without the server, and what the event counters count.

`metadata.fail_mode` ("open", "closed") is on every event that follows a decision made without the
server (TOOL_CALL_POST, TOOL_CALL_BLOCK, observe mode's POST) and on none of a healthy call's. The
TOOL_CALL_PRE event is queued before the decision exists and never carries one (docs/sdk.md).
`sent` counts events delivered, not queue items (a builder job and its event are one event).
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from thoth import ThothPolicyViolation
from thoth.http import stats

from .wire_server import WireServer, delivered


def by_type(events: dict[str, dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    found = [e for e in events.values() if e["event_type"] == event_type]
    return sorted(found, key=lambda e: e["occurred_at"])


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_every_event_after_a_failed_open_decision_is_marked(server: WireServer, make_tracer: Any,
                                                                   mode: str) -> None:
    server.fail("/v1/enforce", 500, times=2)  # a 500 is not asked again: the first two calls fail open
    tracer = make_tracer()

    def search(q: str) -> str:
        if q == "boom":
            raise RuntimeError("tool failed")
        return q

    async def asearch(q: str) -> str:
        return search(q)

    tool = tracer.wrap_tool("search", search if mode == "sync" else asearch)
    for q in ("a", "boom", "c"):  # failed open, failed open (the tool raises), decided by the server
        with contextlib.suppress(RuntimeError):
            tool(q) if mode == "sync" else await tool(q)
    events = delivered(server)
    posts = by_type(events, "TOOL_CALL_POST")
    assert [p["metadata"].get("fail_mode") for p in posts] == ["open", "open", None]
    assert posts[1]["metadata"]["error_type"] == "RuntimeError"
    assert posts[0]["metadata"]["decision_reason_code"] == "enforcer_unavailable"
    pres = by_type(events, "TOOL_CALL_PRE")
    assert len(pres) == 3 and all("fail_mode" not in p["metadata"] and "decision" not in p["metadata"]
                                  for p in pres)
    assert tracer.enforcer.endpoint.fail_open_total == 2


def test_the_block_of_a_failed_closed_call_is_marked(server: WireServer, make_tracer: Any) -> None:
    server.fail("/v1/enforce", 500)
    tool = make_tracer(fail_closed=True).wrap_tool("search", lambda q: q)
    with pytest.raises(ThothPolicyViolation):
        tool("x")
    (block,) = by_type(delivered(server), "TOOL_CALL_BLOCK")
    assert block["metadata"]["fail_mode"] == "closed"
    assert block["metadata"]["decision_reason_code"] == "enforcer_unavailable"


def test_observe_mode_marks_a_verdict_the_server_never_gave(server: WireServer, make_tracer: Any) -> None:
    server.fail("/v1/enforce", 500)  # the first call's background enforce fails open, the second's does not
    tracer = make_tracer(enforcement="observe")
    tool = tracer.wrap_tool("search", lambda q: q)
    assert tool("a") == "a" and tool("b") == "b"
    first, second = by_type(delivered(server), "TOOL_CALL_POST")
    assert first["metadata"]["fail_mode"] == "open"
    assert first["metadata"]["observed_decision"]["fail_mode"] == "open"
    assert "fail_mode" not in second["metadata"] and second["metadata"]["observed_decision"]["decision"] == "ALLOW"
    assert tracer.enforcer.endpoint.fail_open_total == 1


def test_observe_mode_with_fail_closed_ran_the_call_so_its_post_is_not_marked(server: WireServer,
                                                                              make_tracer: Any) -> None:
    server.fail("/v1/enforce", 500)
    tracer = make_tracer(enforcement="observe", fail_closed=True)
    assert tracer.wrap_tool("search", lambda q: q)("a") == "a"
    (post,) = by_type(delivered(server), "TOOL_CALL_POST")
    assert "fail_mode" not in post["metadata"]  # the call ran: not a fail-closed call
    assert post["metadata"]["observed_decision"]["fail_mode"] == "closed"


@pytest.mark.parametrize("enforcement", ["block", "observe"])
def test_sent_counts_events_and_batches(server: WireServer, make_tracer: Any, enforcement: str) -> None:
    """Each event is queued as a job that builds it (and observe adds one enforce job per call):
    none of those jobs is an event sent."""
    tracer = make_tracer(enforcement=enforcement)
    tool = tracer.wrap_tool("search", lambda q: q)
    for i in range(7):
        tool(str(i))
    events = delivered(server)
    assert len(events) == 14
    counters = stats()[server.url]
    assert counters["sent"] == 14 == tracer.emitter.sent
    assert counters["batches"] == len(server.batch_sizes) >= 2  # at most ten events a batch
    assert counters["dropped"] == 0 and counters["queued"] == 0
