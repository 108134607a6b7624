"""A published Thoth client (aten-thoth 0.1.15 or atensec-thoth 0.5.25) against our `thoth serve`.

`thoth` here is the published client, installed alone in this environment. Every flow goes
through the client's own code: instrument(), its enforcer call, its hold polling, its event
emitter thread; the server is ours, on loopback. Decisions come from the default policy of a
tenant without a policy: in approved_scope -> ALLOW; outside it -> BLOCK in "block" mode and
STEP_UP (held for approval) in "step_up" mode.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from control_plane import SETTLE_S, ControlPlane, wait_for
from thoth_server import ServerInfo

import thoth
from thoth import ThothPolicyViolation

IN_SCOPE = "search_docs"
OUT_OF_SCOPE = "delete_records"
SHAPES = ["agent", "openai"]
# Both clients poll a hold every 5 s; an approval must reach the client within two polls.
HELD_CALL_TIMEOUT_S = 30.0

Call = tuple[str, str]
Tool = Callable[[str], str]


@pytest.fixture
def control(server: ServerInfo) -> Iterator[ControlPlane]:
    plane = ControlPlane(server)
    yield plane
    plane.close()


class RecordingTool:
    """A generic agent's tool: a `name` and a `run` method, the shape both clients wrap."""

    def __init__(self, name: str, calls: list[Call]) -> None:
        self.name = name
        self.description = f"conformance tool {name}"
        self._calls = calls

    def run(self, query: str) -> str:
        self._calls.append((self.name, query))
        return f"{self.name}:{query}"


class GenericAgent:
    """Any object with a `.tools` list is a generic agent to the clients."""

    def __init__(self, tools: list[RecordingTool]) -> None:
        self.tools = tools


def new_ids(shape: str) -> tuple[str, str]:
    return f"conf-{shape}-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())


def governed_tools(
    shape: str, settings: dict[str, Any], *, agent_id: str, session_id: str, enforcement: str, calls: list[Call]
) -> dict[str, Tool]:
    """The two tools, governed by the published client; each takes a query string."""
    common = {
        "agent_id": agent_id,
        "approved_scope": [IN_SCOPE],
        "session_id": session_id,
        "enforcement": enforcement,
        **settings,
    }
    if shape == "agent":
        agent = GenericAgent([RecordingTool(IN_SCOPE, calls), RecordingTool(OUT_OF_SCOPE, calls)])
        assert thoth.instrument(agent, **common) is agent
        return {tool.name: tool.run for tool in agent.tools}

    def make(name: str) -> Callable[[dict[str, Any]], str]:
        # An OpenAI tool loop calls each function with the parsed `arguments` dict.
        def tool(arguments: dict[str, Any]) -> str:
            calls.append((name, arguments["query"]))
            return f"{name}:{arguments['query']}"

        return tool

    wrapped = thoth.instrument_openai({IN_SCOPE: make(IN_SCOPE), OUT_OF_SCOPE: make(OUT_OF_SCOPE)}, **common)
    return {name: (lambda query, fn=fn: fn({"query": query})) for name, fn in wrapped.items()}


# The server adds its own records to a session's timeline (APPROVAL_REQUESTED, APPROVAL_RESOLVED,
# ...); these tests look at what the client sent.
CLIENT_EVENT_TYPES = frozenset({"TOOL_CALL_PRE", "TOOL_CALL_POST", "TOOL_CALL_BLOCK", "LLM_INVOCATION"})


def event_sequence(timeline: dict[str, Any]) -> list[tuple[str, str]]:
    return [(event["event_type"], event["tool_name"]) for event in timeline["events"]
            if event["event_type"] in CLIENT_EVENT_TYPES]


def decision_sequence(timeline: dict[str, Any]) -> list[tuple[str, str]]:
    return [(decision["tool_name"], decision["decision"]) for decision in timeline["decisions"]]


def check_events(timeline: dict[str, Any], server: ServerInfo, expected: list[tuple[str, str]]) -> None:
    """The session shows exactly the client's events, in order, each once."""
    assert event_sequence(timeline) == expected
    client_events = [event for event in timeline["events"] if event["event_type"] in CLIENT_EVENT_TYPES]
    event_ids = [event["event_id"] for event in client_events]
    assert len(set(event_ids)) == len(event_ids), f"an event was stored twice: {event_ids}"
    for event in client_events:
        assert event["event_id"].startswith(f"{server.tenant}:")
        assert event["metadata"]["tool_call"]["name"] == event["tool_name"]


class HeldCall:
    """Runs a governed call on a daemon thread: the client blocks while it polls the hold.

    Not a thread pool: a server that never resolves would keep a pool's worker (and the test
    run) alive until the client's 15-minute deadline.
    """

    def __init__(self, tool: Tool, query: str) -> None:
        self.result: str | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(tool, query), daemon=True)
        self._thread.start()

    def _run(self, tool: Tool, query: str) -> None:
        try:
            self.result = tool(query)
        except BaseException as exc:
            self.error = exc

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self) -> None:
        self._thread.join(HELD_CALL_TIMEOUT_S)
        assert not self._thread.is_alive(), "the client was still polling the hold after it was resolved"


def hold_for_approval(
    control: ControlPlane, shape: str, settings: dict[str, Any], query: str
) -> tuple[HeldCall, dict[str, Any], str, str, list[Call]]:
    """Start an out-of-scope call in step_up mode and return it once the server shows its approval."""
    agent_id, session_id = new_ids(shape)
    calls: list[Call] = []
    tools = governed_tools(
        shape, settings, agent_id=agent_id, session_id=session_id, enforcement="step_up", calls=calls
    )
    held = HeldCall(tools[OUT_OF_SCOPE], query)
    approval = wait_for(
        lambda: control.pending_approval(session_id, OUT_OF_SCOPE), 15, "the step-up approval request"
    )
    assert approval["hold_token"]
    assert approval["agent_id"] == agent_id
    assert held.running, f"the client did not wait for the approval: {held.error or held.result!r}"
    assert calls == [], "the held tool ran before anyone approved it"
    return held, approval, agent_id, session_id, calls


@pytest.mark.parametrize("shape", SHAPES)
def test_allow(shape: str, client_settings: dict[str, Any], control: ControlPlane, server: ServerInfo) -> None:
    agent_id, session_id = new_ids(shape)
    calls: list[Call] = []
    tools = governed_tools(
        shape, client_settings, agent_id=agent_id, session_id=session_id, enforcement="block", calls=calls
    )

    assert tools[IN_SCOPE]("quarterly report") == f"{IN_SCOPE}:quarterly report"
    assert calls == [(IN_SCOPE, "quarterly report")]

    timeline = control.wait_session(session_id, events=2, decisions=1)
    check_events(timeline, server, [("TOOL_CALL_PRE", IN_SCOPE), ("TOOL_CALL_POST", IN_SCOPE)])
    assert decision_sequence(timeline) == [(IN_SCOPE, "ALLOW")]
    assert timeline["session"]["agent_id"] == agent_id


@pytest.mark.parametrize("shape", SHAPES)
def test_block(shape: str, client_settings: dict[str, Any], control: ControlPlane, server: ServerInfo) -> None:
    agent_id, session_id = new_ids(shape)
    calls: list[Call] = []
    tools = governed_tools(
        shape, client_settings, agent_id=agent_id, session_id=session_id, enforcement="block", calls=calls
    )

    with pytest.raises(ThothPolicyViolation) as raised:
        tools[OUT_OF_SCOPE]("all rows")
    violation = raised.value
    assert calls == []
    assert violation.tool_name == OUT_OF_SCOPE
    # A transport or auth failure also raises, but without a violation record.
    assert violation.violation_id, f"blocked without a violation_id: {violation.reason}"

    timeline = control.wait_session(session_id, events=2, decisions=1)
    check_events(timeline, server, [("TOOL_CALL_PRE", OUT_OF_SCOPE), ("TOOL_CALL_BLOCK", OUT_OF_SCOPE)])
    [decision] = timeline["decisions"]
    assert (decision["tool_name"], decision["decision"]) == (OUT_OF_SCOPE, "BLOCK")
    assert decision["violation_id"] == violation.violation_id
    recorded = {item["violation_id"] for item in control.violations(agent_id)}
    assert violation.violation_id in recorded


@pytest.mark.parametrize("shape", SHAPES)
def test_step_up_approved(shape: str, client_settings: dict[str, Any], control: ControlPlane, server: ServerInfo) -> None:
    held, approval, _, session_id, calls = hold_for_approval(control, shape, client_settings, "stale rows")

    control.resolve(approval["approval_id"], "approve", "conformance: approved")
    held.join()

    assert held.error is None, f"approved call failed: {held.error!r}"
    assert held.result == f"{OUT_OF_SCOPE}:stale rows"
    assert calls == [(OUT_OF_SCOPE, "stale rows")]
    [resolved] = [a for a in control.approvals("approved") if a["approval_id"] == approval["approval_id"]]
    assert resolved["resolved_by"]
    assert resolved["reason"] == "conformance: approved"

    timeline = control.wait_session(session_id, events=2, decisions=1)
    check_events(timeline, server, [("TOOL_CALL_PRE", OUT_OF_SCOPE), ("TOOL_CALL_POST", OUT_OF_SCOPE)])
    first = timeline["decisions"][0]
    assert (first["tool_name"], first["decision"]) == (OUT_OF_SCOPE, "STEP_UP")
    assert first["hold_token"] == approval["hold_token"]


@pytest.mark.parametrize("shape", SHAPES)
def test_approved_call_runs_once_and_a_replay_is_held(
    shape: str, client_settings: dict[str, Any], control: ControlPlane, server: ServerInfo
) -> None:
    """An approval allows its call once: the client's hold poll takes the use, and the same call
    made again is held anew (docs/approvals.md, "Uses")."""
    agent_id, session_id = new_ids(shape)
    calls: list[Call] = []
    tools = governed_tools(
        shape, client_settings, agent_id=agent_id, session_id=session_id, enforcement="step_up", calls=calls
    )
    first = HeldCall(tools[OUT_OF_SCOPE], "one refund")
    approval = wait_for(lambda: control.pending_approval(session_id, OUT_OF_SCOPE), 15, "the first approval")
    control.resolve(approval["approval_id"], "approve", "conformance: once")
    first.join()
    assert first.error is None and calls == [(OUT_OF_SCOPE, "one refund")]
    [used] = [a for a in control.approvals("approved") if a["approval_id"] == approval["approval_id"]]
    assert (used["uses"], used["allowed_uses"]) == (1, 1) and used["valid_until"]

    replay = HeldCall(tools[OUT_OF_SCOPE], "one refund")  # the same call, the same session
    again = wait_for(lambda: control.pending_approval(session_id, OUT_OF_SCOPE), 15, "the replay's approval")
    assert again["approval_id"] != approval["approval_id"] and again["hold_token"] != approval["hold_token"]
    assert replay.running and calls == [(OUT_OF_SCOPE, "one refund")], "the replay ran on the first approval"
    control.resolve(again["approval_id"], "deny", "conformance: not twice")
    replay.join()
    assert isinstance(replay.error, ThothPolicyViolation), f"the replay was not refused: {replay.result!r}"
    assert calls == [(OUT_OF_SCOPE, "one refund")]


@pytest.mark.parametrize("shape", SHAPES)
def test_step_up_denied(shape: str, client_settings: dict[str, Any], control: ControlPlane, server: ServerInfo) -> None:
    held, approval, _, session_id, calls = hold_for_approval(control, shape, client_settings, "every row")

    control.resolve(approval["approval_id"], "deny", "conformance: denied")
    held.join()

    assert isinstance(held.error, ThothPolicyViolation), f"denied call did not raise: {held.error or held.result!r}"
    assert held.error.tool_name == OUT_OF_SCOPE
    assert held.error.violation_id
    assert calls == []
    [resolved] = [a for a in control.approvals("denied") if a["approval_id"] == approval["approval_id"]]
    assert resolved["resolved_by"]

    timeline = control.wait_session(session_id, events=2, decisions=1)
    check_events(timeline, server, [("TOOL_CALL_PRE", OUT_OF_SCOPE), ("TOOL_CALL_BLOCK", OUT_OF_SCOPE)])
    first = timeline["decisions"][0]
    assert (first["tool_name"], first["decision"]) == (OUT_OF_SCOPE, "STEP_UP")


@pytest.mark.parametrize("shape", SHAPES)
def test_session_records_every_call_once(
    shape: str, client_settings: dict[str, Any], control: ControlPlane, server: ServerInfo
) -> None:
    """Two identical calls are two calls (aten-thoth 0.1.15 sends no call id); nothing is stored twice."""
    agent_id, session_id = new_ids(shape)
    calls: list[Call] = []
    tools = governed_tools(
        shape, client_settings, agent_id=agent_id, session_id=session_id, enforcement="block", calls=calls
    )

    tools[IN_SCOPE]("same query")
    tools[IN_SCOPE]("same query")
    with pytest.raises(ThothPolicyViolation):
        tools[OUT_OF_SCOPE]("all rows")
    assert calls == [(IN_SCOPE, "same query")] * 2

    timeline = control.wait_session(session_id, events=6, decisions=3)
    check_events(
        timeline,
        server,
        [
            ("TOOL_CALL_PRE", IN_SCOPE),
            ("TOOL_CALL_POST", IN_SCOPE),
            ("TOOL_CALL_PRE", IN_SCOPE),
            ("TOOL_CALL_POST", IN_SCOPE),
            ("TOOL_CALL_PRE", OUT_OF_SCOPE),
            ("TOOL_CALL_BLOCK", OUT_OF_SCOPE),
        ],
    )
    assert decision_sequence(timeline) == [(IN_SCOPE, "ALLOW"), (IN_SCOPE, "ALLOW"), (OUT_OF_SCOPE, "BLOCK")]
    assert timeline["session"]["agent_id"] == agent_id


def test_async_tools_allow_and_block(client_settings: dict[str, Any], control: ControlPlane, server: ServerInfo) -> None:
    """Coroutine tools take the clients' async path (their async HTTP clients)."""
    agent_id, session_id = new_ids("async")
    calls: list[Call] = []

    def make(name: str) -> Callable[[dict[str, Any]], Any]:
        async def tool(arguments: dict[str, Any]) -> str:
            calls.append((name, arguments["query"]))
            return f"{name}:{arguments['query']}"

        return tool

    wrapped = thoth.instrument_openai(
        {IN_SCOPE: make(IN_SCOPE), OUT_OF_SCOPE: make(OUT_OF_SCOPE)},
        agent_id=agent_id,
        approved_scope=[IN_SCOPE],
        session_id=session_id,
        enforcement="block",
        **client_settings,
    )

    async def scenario() -> BaseException | None:
        assert await wrapped[IN_SCOPE]({"query": "async"}) == f"{IN_SCOPE}:async"
        try:
            await wrapped[OUT_OF_SCOPE]({"query": "async"})
        except ThothPolicyViolation as exc:
            return exc
        return None

    violation = asyncio.run(scenario())
    assert isinstance(violation, ThothPolicyViolation) and violation.violation_id
    assert calls == [(IN_SCOPE, "async")]

    timeline = control.wait_session(session_id, events=4, decisions=2)
    check_events(
        timeline,
        server,
        [
            ("TOOL_CALL_PRE", IN_SCOPE),
            ("TOOL_CALL_POST", IN_SCOPE),
            ("TOOL_CALL_PRE", OUT_OF_SCOPE),
            ("TOOL_CALL_BLOCK", OUT_OF_SCOPE),
        ],
    )
    assert decision_sequence(timeline) == [(IN_SCOPE, "ALLOW"), (OUT_OF_SCOPE, "BLOCK")]


def test_foreign_tenant_is_refused(client_settings: dict[str, Any], control: ControlPlane) -> None:
    """A key used for another tenant's calls is refused; the client then blocks the tool."""
    agent_id, session_id = new_ids("foreign")
    calls: list[Call] = []
    settings = {**client_settings, "tenant_id": f"{client_settings['tenant_id']}-other"}
    tools = governed_tools(
        "openai", settings, agent_id=agent_id, session_id=session_id, enforcement="block", calls=calls
    )

    with pytest.raises(ThothPolicyViolation) as raised:
        tools[IN_SCOPE]("anything")
    assert calls == []
    assert "status=403" in raised.value.reason
    assert raised.value.violation_id is None
    # Nothing was recorded under the key's own tenant either.
    time.sleep(SETTLE_S)
    assert control.session(session_id) is None
