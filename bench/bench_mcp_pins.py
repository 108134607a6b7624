"""MCP tool pins: what they cost on the enforce path and at list time.

    PYTHONPATH=src python bench/bench_mcp_pins.py [--postgres]

(--postgres: the machine's PostgreSQL, in a schema of the bench's own, dropped afterwards.)

Prints (in-process, no HTTP):
- the pin flags' look-up of a call naming its mcp_server (a warm per-tenant cache: a dict get);
- policy.evaluate of the same call unflagged and flagged (the built-in rule adds one proposal);
- observe() of a 30-tool server on the database (list time, off the enforce path): a first
  sight (inserts) and a repeat (updates).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from thoth.policy.context import CallContext  # noqa: E402
from thoth.policy.engine import compile_policy  # noqa: E402
from thoth.server.db import Database  # noqa: E402
from thoth.server.mcp_pins import McpPins  # noqa: E402
from thoth.server.migrate import upgrade  # noqa: E402


def per_call_ns(fn: object, n: int) -> float:
    best = []
    for _ in range(5):
        start = time.perf_counter_ns()
        for _ in range(n):
            fn()  # type: ignore[operator]
        best.append((time.perf_counter_ns() - start) / n)
    return min(best)


async def flags_ns(pins: McpPins, tenant: str, n: int) -> float:
    async def read(fn: object, *args: object) -> object:
        return fn(*args)  # type: ignore[operator]

    await pins.flags(tenant, "files", "tool_1", read)  # warm
    start = time.perf_counter_ns()
    for _ in range(n):
        await pins.flags(tenant, "files", "tool_1", read)
    return (time.perf_counter_ns() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", action="store_true")
    if parser.parse_args().postgres:
        from tests.support.pg import pg_schema

        with pg_schema("bench_mcp") as url:
            run(url)
    else:
        run(f"sqlite:///{tempfile.mkdtemp()}/bench.db")


def run(url: str) -> None:
    upgrade(url)
    db = Database(url)
    pins = McpPins(db, cache_ttl=3600)
    tenant = f"bench-{uuid.uuid4().hex[:6]}"
    tools = [{"name": f"tool_{i}", "description": f"Tool number {i}: reads things from the workspace and "
              "returns them as text.", "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}}}
             for i in range(30)]
    first, repeat = [], []
    for _ in range(5):
        t = f"{tenant}-{len(first)}"
        s = time.perf_counter()
        pins.observe(t, "files", tools)
        first.append(time.perf_counter() - s)
        s = time.perf_counter()
        pins.observe(t, "files", tools)
        repeat.append(time.perf_counter() - s)
    pins.observe(tenant, "files", tools)
    n = 200_000
    look = asyncio.run(flags_ns(pins, tenant, n))
    policy = compile_policy("version: 1\n")
    plain = CallContext(tool_name="tool_1", agent_id="a")
    flagged = CallContext(tool_name="tool_1", agent_id="a", mcp_pin=frozenset({"changed"}))
    clean = per_call_ns(lambda: policy.evaluate(plain), 50_000)
    held = per_call_ns(lambda: policy.evaluate(flagged), 50_000)
    print(f"database: {url.split('://')[0]}")
    print(f"enforce: pin flags look-up (warm cache)      {look:8.0f} ns/call")
    print(f"enforce: evaluate, unflagged MCP/local call  {clean:8.0f} ns/call")
    print(f"enforce: evaluate, changed tool (built-in)   {held:8.0f} ns/call")
    print(f"list time: observe 30 tools, first sight     {statistics.median(first) * 1000:8.2f} ms (median of 5)")
    print(f"list time: observe 30 tools, repeat          {statistics.median(repeat) * 1000:8.2f} ms (median of 5)")
    db.close()


if __name__ == "__main__":
    main()
