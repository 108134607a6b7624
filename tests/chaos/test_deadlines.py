"""The SDK's deadline holds against servers that refuse, stall, drip or stay busy.

Every way the SDK waits on a server — a governed tool call (a generic agent under
`thoth.instrument`, sync, and a `Tracer`-wrapped async tool; bounded by `enforce_timeout_seconds`), the hold poll (sync and async, bounded by the approval deadline
`step_up_timeout_minutes`) and an event batch (the event thread's request, given its timeout) —
must come back within its deadline plus a little slack, whatever the server does.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

import thoth
from thoth.http import TransportFault, get_endpoint, release
from thoth.instrumentor import build_tracer
from thoth.models import DecisionType, EnforcementDecision, EnforcementMode, ThothConfig
from thoth.step_up import StepUpClient

from .harness import SLACK, FaultyServer, Ledger, free_port
from .report import Report

DEADLINE = 1.0
MODES = ["refuse", "stall", "drip", "busy"]


@pytest.fixture(params=MODES)
def faulty(request: Any) -> Iterator[tuple[str, str]]:
    """(mode, url) of a server misbehaving in that way; `refuse` is a port nobody listens on."""
    if request.param == "refuse":
        yield "refuse", f"http://127.0.0.1:{free_port()}"
        return
    server = FaultyServer(request.param)
    yield request.param, server.url
    server.close()
    release(server.url)


def config(url: str, **extra: Any) -> ThothConfig:
    return ThothConfig(agent_id="deadline", approved_scope=["search"], tenant_id="t", api_key=KEY,
                       api_url=url, enforcement=EnforcementMode.BLOCK, enforce_timeout_seconds=DEADLINE, **extra)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    try:
        outcome = fn()
    except Exception as exc:  # noqa: BLE001 - the caller checks what came back
        outcome = exc
    return outcome, time.monotonic() - started


KEY = "thk_x_y"
HELD = EnforcementDecision(decision=DecisionType.STEP_UP, hold_token="hold-chaos", reason="held")
# The approval deadline: short, so a poll that honours it ends in seconds.
HOLD_DEADLINE_MINUTES = 2.0 / 60


def enforce_sync(url: str) -> tuple[Any, float]:
    # A generic agent under thoth.instrument: the governed call is what the user waits on.
    agent = SimpleNamespace(tools=[lambda q: f"ran {q}"])
    thoth.instrument(agent, agent_id="deadline", approved_scope=["search"], tenant_id="t", api_key=KEY,
                     api_url=url, enforcement="block", enforce_timeout_seconds=DEADLINE)
    return timed(lambda: agent.tools[0]("x"))


def enforce_async(url: str) -> tuple[Any, float]:
    async def search(q: str) -> str:
        return f"ran {q}"

    tool = build_tracer(agent_id="deadline", approved_scope=["search"], tenant_id="t", api_key=KEY, api_url=url,
                        enforcement="block", enforce_timeout_seconds=DEADLINE).wrap_tool("search", search)
    return timed(lambda: asyncio.run(tool("x")))


def hold_sync(url: str) -> tuple[Any, float]:
    client = StepUpClient(config(url, step_up_timeout_minutes=HOLD_DEADLINE_MINUTES,
                                 step_up_poll_interval_seconds=0.2))
    return timed(lambda: client.wait(HELD, "search"))


def hold_async(url: str) -> tuple[Any, float]:
    client = StepUpClient(config(url, step_up_timeout_minutes=HOLD_DEADLINE_MINUTES,
                                 step_up_poll_interval_seconds=0.2))
    return timed(lambda: asyncio.run(client.await_(HELD, "search")))


def event_batch(url: str) -> tuple[Any, float]:
    # The event thread's own request (what EventTransport._send makes, its send timeout being the
    # deadline): a batch that gets no answer in time is retried later, not waited on.
    body = json.dumps([{"event_id": "t:chaos", "tenant_id": "t", "event_type": "TOOL_CALL_PRE"}]).encode()
    return timed(lambda: get_endpoint(url, KEY).send("POST", "/v1/events/batch", body, timeout=DEADLINE))


PATHS: dict[str, tuple[Callable[[str], tuple[Any, float]], float]] = {
    "enforce sync": (enforce_sync, DEADLINE),
    "enforce async": (enforce_async, DEADLINE),
    "hold poll sync": (hold_sync, HOLD_DEADLINE_MINUTES * 60),
    "hold poll async": (hold_async, HOLD_DEADLINE_MINUTES * 60),
    "event batch": (event_batch, DEADLINE),
}


@pytest.mark.parametrize("path", list(PATHS))
def test_the_sdk_deadline_holds(faulty: tuple[str, str], path: str, report: Report) -> None:
    mode, url = faulty
    call, deadline = PATHS[path]
    outcome, waited = call(url)
    fail_opens = get_endpoint(url, KEY).fail_open_total
    release(url)
    ledger = Ledger(longest=waited, fail_opens=fail_opens)
    report.add(f"{mode}: {path}", "-", ledger, None, events_emitted=0,
               note=f"deadline {deadline:g} s -> {_describe(outcome)}")

    assert waited <= deadline + SLACK, f"waited {waited:.1f} s for a {deadline:g} s deadline"
    if path.startswith("enforce"):  # no answer in time: the tool runs (fail-open, the default), counted
        assert outcome == "ran x" and fail_opens == 1
    elif path.startswith("hold"):  # no approval in time: blocked, never run
        assert isinstance(outcome, EnforcementDecision) and outcome.decision is DecisionType.BLOCK
    elif mode == "busy":
        assert getattr(outcome, "status_code", None) == 503  # answered: the thread retries it later
    else:
        assert isinstance(outcome, TransportFault)


def _describe(outcome: Any) -> str:
    if isinstance(outcome, str):
        return f"tool ran: {outcome!r}"
    if isinstance(outcome, EnforcementDecision):
        return f"{outcome.decision.value} ({outcome.decision_reason_code})"
    if isinstance(outcome, Exception):
        return type(outcome).__name__
    return f"HTTP {getattr(outcome, 'status_code', '?')}"
