"""Sessions: concurrent asyncio tasks and threads each see their own; async tools never block."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import thoth
from thoth.session import get_current_session

from .wire_server import WireServer, delivered


def _agent_settings(server: WireServer, name: str) -> dict[str, Any]:
    return {"agent_id": name, "approved_scope": ["probe"], "tenant_id": server.tenant_id,
            "api_key": server.api_key, "api_url": server.url, "session_id": f"session-{name}"}


async def test_concurrent_tasks_see_their_own_session(server: WireServer) -> None:
    async def one_agent(name: str) -> list[str | None]:
        seen: list[str | None] = []

        async def probe(step: int) -> None:
            session = get_current_session()
            seen.append(session.session_id if session else None)
            await asyncio.sleep(0.01)  # let the other tasks interleave

        agent = type("Agent", (), {})()
        agent.tools = [probe]
        thoth.instrument(agent, **_agent_settings(server, name))
        for step in range(5):
            await agent.tools[0](step)
            current = get_current_session()
            seen.append(current.session_id if current else None)
        return seen

    results = await asyncio.gather(*(one_agent(f"a{i}") for i in range(8)))
    for i, seen in enumerate(results):
        assert set(seen) == {f"session-a{i}"}
    sessions = {r["session_id"] for r in server.enforce_requests}
    assert sessions == {f"session-a{i}" for i in range(8)}


def test_threads_see_their_own_session(server: WireServer) -> None:
    def one_agent(name: str) -> set[str | None]:
        seen: set[str | None] = set()

        def probe() -> None:
            session = get_current_session()
            seen.add(session.session_id if session else None)
            time.sleep(0.005)

        agent = type("Agent", (), {})()
        agent.tools = [probe]
        thoth.instrument(agent, **_agent_settings(server, name))
        for _ in range(5):
            agent.tools[0]()
        current = get_current_session()
        seen.add(current.session_id if current else None)
        return seen

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(one_agent, [f"t{i}" for i in range(6)]))
    assert results == [{f"session-t{i}"} for i in range(6)]
    assert len(delivered(server)) == 60


def test_a_tool_shared_across_threads_reports_its_tracer_session(server: WireServer,
                                                                  make_tracer: Any) -> None:
    tracer = make_tracer(session_id="shared")
    seen: set[str | None] = set()

    def probe() -> None:
        session = get_current_session()
        seen.add(session.session_id if session else None)

    tool = tracer.wrap_tool("search", probe)
    threads = [threading.Thread(target=tool) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"shared"}
    assert get_current_session() is None or get_current_session().session_id != "shared"  # type: ignore[union-attr]


async def test_async_tools_run_concurrently(server: WireServer, make_tracer: Any) -> None:
    """Governed async calls share the loop: 20 calls of a 0.2 s tool take far less than 4 s."""
    async def slow(i: int) -> int:
        await asyncio.sleep(0.2)
        return i

    tool = make_tracer().wrap_tool("search", slow)
    started = time.monotonic()
    assert await asyncio.gather(*(tool(i) for i in range(20))) == list(range(20))
    assert time.monotonic() - started < 2.0
    assert len(server.enforce_requests) == 20


def test_async_tools_across_event_loops(server: WireServer, make_tracer: Any) -> None:
    async def echo(x: str) -> str:
        return x

    tool = make_tracer().wrap_tool("search", echo)
    assert asyncio.run(tool("one")) == "one"
    assert asyncio.run(tool("two")) == "two"  # a fresh loop gets its own async pool
