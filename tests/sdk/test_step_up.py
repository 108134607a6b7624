"""STEP_UP: the hold poll, approvals, denials, timeouts and holds without a token."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from thoth import ThothPolicyViolation

from .wire_server import WireServer


def _resolve_soon(server: WireServer, resolution: str, delay: float = 0.2, **extra: Any) -> None:
    def later() -> None:
        deadline = time.monotonic() + 5
        while not server.holds and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        server.resolve(next(iter(server.holds)), resolution, **extra)

    threading.Thread(target=later, daemon=True).start()


# Approve and deny against the real server: test_real_server.py. Here: what it cannot produce.

def test_a_server_that_ignores_wait_is_polled(server: WireServer, make_tracer: Any) -> None:
    server.long_poll = False
    server.script("send_email", {"decision": "STEP_UP", "reason": "needs a human"})
    _resolve_soon(server, "ALLOW")
    tool = make_tracer(enforcement="step_up").wrap_tool("send_email", lambda to: f"sent to {to}")
    assert tool("bob") == "sent to bob"
    assert server.hits["hold"] >= 2  # polled again every 50 ms until the resolution



def test_resolution_may_modify(server: WireServer, make_tracer: Any) -> None:
    server.script("send_email", {"decision": "STEP_UP"})
    _resolve_soon(server, "MODIFY", modified_tool_args={"to": "team@acme"})
    tool = make_tracer().wrap_tool("send_email", lambda to: f"sent to {to}")
    assert tool(to="everyone@acme") == "sent to team@acme"


def test_timeout_blocks_with_the_seed_reason(server: WireServer, make_tracer: Any) -> None:
    server.script("send_email", {"decision": "STEP_UP"})
    tool = make_tracer(step_up_timeout_minutes=0.5 / 60).wrap_tool("send_email", lambda to: to)
    started = time.monotonic()
    with pytest.raises(ThothPolicyViolation) as info:
        tool("x")
    assert info.value.reason == "step-up auth timeout"
    assert time.monotonic() - started < 3


def test_step_up_without_hold_token_blocks(server: WireServer, make_tracer: Any) -> None:
    server.script("send_email", {"decision": "STEP_UP", "hold_token": ""})
    ran: list[Any] = []
    with pytest.raises(ThothPolicyViolation, match="no hold token"):
        make_tracer().wrap_tool("send_email", ran.append)("x")
    assert ran == [] and server.hits.get("hold", 0) == 0


def test_unknown_hold_token_blocks(server: WireServer, make_tracer: Any) -> None:
    server.script("send_email", {"decision": "STEP_UP"})
    tool = make_tracer().wrap_tool("send_email", lambda to: to)

    def forget() -> None:
        while not server.holds:
            time.sleep(0.01)
        server.holds.clear()
        with server._cond:
            server._cond.notify_all()

    threading.Thread(target=forget, daemon=True).start()
    with pytest.raises(ThothPolicyViolation, match="404"):
        tool("x")


def test_hold_survives_a_server_restart(server: WireServer, make_tracer: Any) -> None:
    server.long_poll = False
    server.script("send_email", {"decision": "STEP_UP"})

    def bounce() -> None:
        while not server.holds:
            time.sleep(0.01)
        server.stop()
        time.sleep(0.3)
        server.start()
        server.resolve(next(iter(server.holds)), "ALLOW")

    threading.Thread(target=bounce, daemon=True).start()
    assert make_tracer().wrap_tool("send_email", lambda to: to)("x") == "x"


async def test_async_step_up_does_not_block_the_loop(server: WireServer, make_tracer: Any) -> None:
    server.script("send_email", {"decision": "STEP_UP"})
    _resolve_soon(server, "ALLOW", delay=0.3)

    async def send(to: str) -> str:
        return f"sent to {to}"

    tool = make_tracer().wrap_tool("send_email", send)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    assert await tool("bob") == "sent to bob"
    task.cancel()
    assert ticks >= 10  # the loop kept running while the call was held
