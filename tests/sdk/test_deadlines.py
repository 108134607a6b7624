"""Every request the SDK makes ends by its deadline, however the server (or proxy) misbehaves.

The deadline covers the whole exchange: connecting, sending, the answer's head and its body. A
server that drips its answer one byte at a time never lets a single read time out, so a client
that only bounds each read waits for the whole body (100 s for the 1,000-byte answers here).

Written against what the SDK promises, not against its clients: a governed call, a hold poll's
wait and an event batch, each against a real loopback server (tests/sdk/faulty_server.py), over
every route the SDK has (sync and async; its own client, and httpx behind an HTTP proxy), must
come back within the deadline plus a little slack for a busy machine. The answers the servers
would eventually give are a BLOCK, an approval, an acceptance: reading one of them through would
change the outcome, so the outcome shows that the SDK gave up.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from thoth import ThothPolicyViolation
from thoth.emitter import EventTransport
from thoth.http import Endpoint, release
from thoth.models import DecisionType, EnforcementDecision
from thoth.step_up import TIMEOUT_REASON, StepUpClient

from .faulty_server import BEHAVIOURS, FaultyServer
from .routes import config, tracer_for, url_for

DEADLINE = 0.8
SLACK = 0.5  # a busy shared machine; a per-read timeout would still be waiting (the drips last 100 s)


def http_answer(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body) + body


def padded(payload: str) -> bytes:
    """A JSON answer of 1,000 bytes: the drip takes 100 s to send it."""
    return http_answer((payload[:-1] + ', "pad": "' + "x" * (970 - len(payload)) + '"}').encode())


BLOCK = padded('{"decision": "BLOCK", "reason": "the answer was read after all"}')
APPROVED = padded('{"resolved": true, "resolution": "ALLOW", "decision": "ALLOW"}')
ACCEPTED = padded('{"accepted": 1}')


@pytest.fixture
def servers() -> Iterator[list[FaultyServer]]:
    started: list[FaultyServer] = []
    yield started
    for server in started:
        server.close()


def start(servers: list[FaultyServer], behaviour: str, answer: bytes) -> FaultyServer:
    server = FaultyServer(behaviour, answer, interval=0.1)
    servers.append(server)
    return server


def check_elapsed(started: float, server: FaultyServer, route: str, deadline: float = DEADLINE) -> None:
    elapsed = time.monotonic() - started
    assert elapsed < deadline + SLACK, f"took {elapsed:.2f} s against a {deadline} s deadline"
    if server.behaviour in ("drip", "drip_body", "stall_after_headers", "stall_before_headers"):
        assert elapsed > deadline - 0.1, f"gave up after {elapsed:.2f} s, before the deadline"
        assert server.request_lines, "the request never reached the server"
        target = server.request_lines[0].split(b" ")[1]
        assert target.startswith(b"http://" if route == "proxy" else b"/")  # the proxy was (not) used


# --- the governed call (POST /v1/enforce) ------------------------------------------------------------

@pytest.mark.parametrize("fail_closed", [False, True], ids=["fail_open", "fail_closed"])
@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("behaviour", BEHAVIOURS)
async def test_a_governed_call_ends_by_its_deadline(servers: list[FaultyServer], route: str, behaviour: str,
                                                    mode: str, fail_closed: bool,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    server = start(servers, behaviour, BLOCK)
    cfg = config(url_for(server.url, route, monkeypatch), enforce_timeout_seconds=DEADLINE, fail_closed=fail_closed)
    tracer, emitter = tracer_for(cfg)

    def search(q: str) -> str:
        return f"found {q}"

    async def asearch(q: str) -> str:
        return f"found {q}"

    tool = tracer.wrap_tool("search", search if mode == "sync" else asearch)
    started = time.monotonic()
    try:
        if fail_closed:
            with pytest.raises(ThothPolicyViolation, match="fail_closed"):
                tool("x") if mode == "sync" else await tool("x")
        else:
            assert (tool("x") if mode == "sync" else await tool("x")) == "found x"
        check_elapsed(started, server, route)
        assert tracer.enforcer.endpoint.fail_open_total == (0 if fail_closed else 1)
        last = emitter.events[-1]
        assert last["event_type"] == ("TOOL_CALL_BLOCK" if fail_closed else "TOOL_CALL_POST")
        assert last["metadata"]["fail_mode"] == ("closed" if fail_closed else "open")
    finally:
        release(cfg.resolved_api_url)


# --- the hold poll (GET /v1/enforce/hold/{token}) ----------------------------------------------------

@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("behaviour", BEHAVIOURS)
async def test_waiting_for_an_approval_ends_by_its_deadline(servers: list[FaultyServer], route: str,
                                                            behaviour: str, mode: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    server = start(servers, behaviour, APPROVED)
    cfg = config(url_for(server.url, route, monkeypatch), step_up_timeout_minutes=DEADLINE / 60,
                 step_up_poll_interval_seconds=0.05)
    client = StepUpClient(cfg)
    held = EnforcementDecision(decision=DecisionType.STEP_UP, reason="needs a human", hold_token="hold-1")
    started = time.monotonic()
    try:
        outcome = client.wait(held, "search") if mode == "sync" else await client.await_(held, "search")
        check_elapsed(started, server, route)
        assert time.monotonic() - started > DEADLINE - 0.1  # the client's deadline, whatever the server did
        assert outcome.decision is DecisionType.BLOCK and outcome.reason == TIMEOUT_REASON
    finally:
        release(cfg.resolved_api_url)


# --- an event batch (POST /v1/events/batch, on the event thread) ------------------------------------

@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_an_event_batch_attempt_ends_by_its_deadline(servers: list[FaultyServer], route: str, behaviour: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The event thread (which also runs observe mode's enforce calls) is never held longer than
    one attempt's deadline; with no retries allowed the batch is then dropped and counted."""
    server = start(servers, behaviour, ACCEPTED)
    transport = EventTransport(Endpoint(url_for(server.url, route, monkeypatch), "k"), max_retry_seconds=0,
                               send_timeout_seconds=DEADLINE)
    try:
        started = time.monotonic()
        transport.put({"event_id": "t:1", "event_type": "TOOL_CALL_PRE"})
        assert transport.flush(DEADLINE + 5)
        check_elapsed(started, server, route)
        assert transport.dropped == 1 and transport.sent == 0
    finally:
        transport.stop()


# --- TLS: a handshake that never completes, a CONNECT tunnel that is never opened ------------------

@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_an_https_call_that_never_gets_through_ends_by_its_deadline(
        servers: list[FaultyServer], route: str, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Own client: the server accepts and never answers the TLS handshake. Behind a proxy: the
    proxy drips its answer to CONNECT, so the tunnel (and the handshake in it) never starts."""
    server = start(servers, "silent" if route == "own" else "drip", BLOCK)
    cfg = config(url_for(server.url, route, monkeypatch, scheme="https"), enforce_timeout_seconds=DEADLINE)
    tracer, _ = tracer_for(cfg)

    async def asearch(q: str) -> str:
        return q

    tool = tracer.wrap_tool("search", (lambda q: q) if mode == "sync" else asearch)
    started = time.monotonic()
    try:
        assert (tool("x") if mode == "sync" else await tool("x")) == "x"  # failed open
        elapsed = time.monotonic() - started
        assert DEADLINE - 0.1 < elapsed < DEADLINE + SLACK
        assert tracer.enforcer.endpoint.fail_open_total == 1
        if route == "proxy":
            assert server.request_lines[0].startswith(b"CONNECT thoth-")
    finally:
        release(cfg.resolved_api_url)
