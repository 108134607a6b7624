"""The governed mcp ClientSession's overhead per `call_tool`, in-process mode.

    PYTHONPATH=src python bench/bench_mcp_adapter.py [--calls 2000]

An MCPServer with one tool, reached in-process (mcp's in-memory transport, so the MCP round
trip itself is as cheap as it gets and the difference is Thoth's); `call_tool` timed bare and
through thoth.integrations.mcp (api_url="local": the in-process engine decides, events go to a
JSONL file). Also `list_tools` of 50 tools, bare and filtered. Prints p50/p99 in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

POLICY = """\
version: 1
rules:
  - id: no-deletes
    when: {tool: delete_7}
    action: block
"""


def p(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def timed(a: Callable[[], Awaitable[Any]], b: Callable[[], Awaitable[Any]],
                calls: int) -> tuple[list[float], list[float]]:
    """Both callables, interleaved call by call: a loaded machine's noise hits both alike."""
    for _ in range(min(200, calls)):  # warm up
        await a()
        await b()
    out: tuple[list[float], list[float]] = ([], [])
    for _ in range(calls):
        for fn, values in ((a, out[0]), (b, out[1])):
            started = time.perf_counter()
            await fn()
            values.append((time.perf_counter() - started) * 1e6)
    return out


async def main(calls: int) -> None:
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

    import thoth
    from thoth.integrations.mcp import govern_session

    server = MCPServer("bench")

    @server.tool()
    async def echo(text: str) -> str:  # async: a sync tool runs in a worker thread, whose jitter hides ours
        """Echo the text."""
        return text

    for i in range(49):
        server.add_tool(lambda text="": text, name=f"delete_{i}" if i == 7 else f"tool_{i}", description="x")

    home = Path(tempfile.mkdtemp(prefix="thoth-bench-mcp-"))
    (home / "policy.yaml").write_text(POLICY)
    os.environ.update({"THOTH_HOME": str(home), "THOTH_POLICY": str(home / "policy.yaml")})
    async with Client(server) as bare, Client(server) as governed:
        from thoth.instrumentor import build_tracer

        tracer = build_tracer(agent_id="bench", tenant_id="t", api_url="local", enforcement="block")
        govern_session(governed.session, tracer, server="bench", list_cache_seconds=0)
        call_bare, call_governed = await timed(lambda: bare.session.call_tool("echo", {"text": "hi"}),
                                               lambda: governed.session.call_tool("echo", {"text": "hi"}), calls)
        list_bare, list_filtered = await timed(lambda: bare.session.list_tools(),
                                               lambda: governed.session.list_tools(), max(50, calls // 10))
        rows = [("call_tool bare", call_bare), ("call_tool governed (local)", call_governed),
                ("list_tools (50) bare", list_bare), ("list_tools (50) filtered", list_filtered)]
        assert len((await governed.session.list_tools()).tools) == 49  # delete_7 hidden
    thoth.flush()
    print(f"mcp adapter, in-process Thoth, in-memory MCP transport, {calls} calls")
    for name, values in rows:
        print(f"  {name:32s} p50 {p(values, 0.5):9.1f} us   p99 {p(values, 0.99):9.1f} us"
              f"   mean {statistics.fmean(values):9.1f} us")
    print(f"governed call_tool overhead: p50 {p(rows[1][1], 0.5) - p(rows[0][1], 0.5):.1f} us")
    print(f"filtered list_tools overhead: p50 {p(rows[3][1], 0.5) - p(rows[2][1], 0.5):.1f} us (no cache)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    asyncio.run(main(parser.parse_args().calls))
