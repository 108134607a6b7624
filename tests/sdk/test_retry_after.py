"""429/503 ("come back later"): asked again within the call's deadline, as Retry-After says.

A real loopback server (tests/sdk/raw_http_server.py) answers 503 or 429, with or without
Retry-After, then the real decision, or keeps answering 503; on every route (own client, httpx
behind a proxy) and both modes. The governed call gets the real decision without a fail-open, or
fails open (closed with fail_closed) at its deadline, never later, and at once when Retry-After
asks for longer than the deadline leaves.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from thoth import ThothPolicyViolation
from thoth.emitter import EventTransport
from thoth.http import Endpoint, FastResponse, release, retry_after
from thoth.models import DecisionType, EnforcementDecision
from thoth.step_up import StepUpClient

from .raw_http_server import RawHttpServer, json_answer
from .routes import config, request_target, tracer_for, url_for

DEADLINE = 0.8
SLACK = 0.5
BLOCK = b'{"decision": "BLOCK", "reason": "the real decision", "violation_id": "vio_9"}'


class Script:
    """Answers from a list (the last one repeats), noting when each request arrived and for what."""

    def __init__(self, *answers: bytes) -> None:
        self.answers = list(answers)
        self.seen: list[tuple[float, bytes]] = []

    def __call__(self, head: bytes) -> tuple[bytes, bool, float]:
        self.seen.append((time.monotonic(), request_target(head.split(b"\r\n", 1)[0])))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer, False, 0.0

    def gaps(self) -> list[float]:
        times = [at for at, _ in self.seen]
        return [b - a for a, b in zip(times, times[1:], strict=False)]


def unavailable(status: int = 503, after: str | None = None) -> bytes:
    reason = "Service Unavailable" if status == 503 else "Too Many Requests"
    extra = f"retry-after: {after}\r\n" if after is not None else ""
    return json_answer(b'{"message": "busy"}', status=f"{status} {reason}", extra=extra)


@pytest.fixture
def serve() -> Iterator[Callable[[Script], RawHttpServer]]:
    started: list[RawHttpServer] = []

    def start(script: Script) -> RawHttpServer:
        server = RawHttpServer(script)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


async def governed(tracer: Any, mode: str) -> Any:
    def search(q: str) -> str:
        return f"found {q}"

    async def asearch(q: str) -> str:
        return f"found {q}"

    tool = tracer.wrap_tool("search", search if mode == "sync" else asearch)
    return tool("x") if mode == "sync" else await tool("x")


# --- the governed call -------------------------------------------------------------------------------

@pytest.mark.parametrize("after", ["1", None], ids=["retry_after", "no_retry_after"])
@pytest.mark.parametrize("status", [503, 429])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_come_back_later_then_the_real_decision(serve: Any, route: str, mode: str, status: int,
                                                      after: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(unavailable(status, after), json_answer(BLOCK))
    cfg = config(url_for(serve(script).url, route, monkeypatch), enforce_timeout_seconds=3.0)
    tracer, emitter = tracer_for(cfg)
    try:
        with pytest.raises(ThothPolicyViolation) as info:
            await governed(tracer, mode)
        assert info.value.reason == "the real decision" and info.value.violation_id == "vio_9"
        assert tracer.enforcer.endpoint.fail_open_total == 0
        assert [target for _, target in script.seen] == [b"/v1/enforce"] * 2
        gap = script.gaps()[0]
        assert (0.95 <= gap < 1.5) if after else (0.02 <= gap < 0.3)  # as asked / a short backoff
        assert "fail_mode" not in emitter.events[-1]["metadata"]
    finally:
        release(cfg.resolved_api_url)


@pytest.mark.parametrize("fail_closed", [False, True], ids=["fail_open", "fail_closed"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_server_that_keeps_answering_503_fails_at_the_deadline(
        serve: Any, route: str, mode: str, fail_closed: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(unavailable(503, "0"))  # Retry-After: 0 must not become a busy loop
    cfg = config(url_for(serve(script).url, route, monkeypatch), enforce_timeout_seconds=DEADLINE,
                 fail_closed=fail_closed)
    tracer, emitter = tracer_for(cfg)
    started = time.monotonic()
    try:
        if fail_closed:
            with pytest.raises(ThothPolicyViolation, match="HTTP 503"):
                await governed(tracer, mode)
        else:
            assert await governed(tracer, mode) == "found x"
        elapsed = time.monotonic() - started
        assert DEADLINE - 0.3 < elapsed < DEADLINE + SLACK  # the last backoff ends a margin before it
        assert 3 <= len(script.seen) <= 12  # asked again with backoff: 25-50 ms doubling
        assert tracer.enforcer.endpoint.fail_open_total == (0 if fail_closed else 1)  # once per call
        assert emitter.events[-1]["metadata"]["fail_mode"] == ("closed" if fail_closed else "open")
    finally:
        release(cfg.resolved_api_url)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_retry_after_beyond_the_deadline_fails_at_once(serve: Any, route: str, mode: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(unavailable(503, "120"), json_answer(BLOCK))
    cfg = config(url_for(serve(script).url, route, monkeypatch), enforce_timeout_seconds=5.0)
    tracer, _ = tracer_for(cfg)
    started = time.monotonic()
    try:
        assert await governed(tracer, mode) == "found x"  # failed open: the server said not before 120 s
        assert time.monotonic() - started < 1.0
        assert len(script.seen) == 1
        assert tracer.enforcer.endpoint.fail_open_total == 1
    finally:
        release(cfg.resolved_api_url)


def test_retry_after_forms() -> None:
    def of(value: str) -> float | None:
        return retry_after(FastResponse(503, b"", {"retry-after": value}))

    assert of("3") == 3.0 and of(" 0 ") == 0.0 and of("1.5") == 1.5
    assert of("-4") == 0.0
    assert of("soon") is None and of("") is None and of("nan") is None and of("inf") is None
    in_ten = email.utils.formatdate(time.time() + 10, usegmt=True)  # the HTTP-date form
    assert 8.5 < (of(in_ten) or 0) <= 10.5
    assert of(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0
    assert retry_after(FastResponse(503, b"")) is None


# --- the hold poll -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_hold_poll_waits_as_retry_after_asks(serve: Any, route: str, mode: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    approved = json_answer(b'{"resolved": true, "resolution": "ALLOW", "decision": "ALLOW"}')
    script = Script(unavailable(503, "1"), approved)
    cfg = config(url_for(serve(script).url, route, monkeypatch), step_up_timeout_minutes=0.1,
                 step_up_poll_interval_seconds=0.05)
    client = StepUpClient(cfg)
    held = EnforcementDecision(decision=DecisionType.STEP_UP, reason="needs a human", hold_token="hold-1")
    try:
        outcome = client.wait(held, "search") if mode == "sync" else await client.await_(held, "search")
        assert outcome.decision is DecisionType.ALLOW
        assert len(script.seen) == 2 and script.seen[0][1].startswith(b"/v1/enforce/hold/hold-1?wait=")
        assert 0.95 <= script.gaps()[0] < 1.5  # not the 50 ms poll interval
    finally:
        release(cfg.resolved_api_url)


# --- event batches -----------------------------------------------------------------------------------

def test_an_event_batch_waits_as_retry_after_asks_even_when_flushed(serve: Any, route: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(unavailable(503, "1"), json_answer(b'{"accepted": 1}'))
    transport = EventTransport(Endpoint(url_for(serve(script).url, route, monkeypatch), "k"))
    try:
        transport.put({"event_id": "t:1", "event_type": "TOOL_CALL_PRE"})
        assert transport.flush(5)  # a flush cuts a backoff short, not the server's Retry-After
        assert transport.sent == 1 and transport.dropped == 0 and transport.batches == 1
        assert [target for _, target in script.seen] == [b"/v1/events/batch"] * 2
        assert 0.95 <= script.gaps()[0] < 1.5
    finally:
        transport.stop()
