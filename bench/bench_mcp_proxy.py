"""The governing MCP proxy's own cost per tools/call, over a direct connection to the same server.

    PYTHONPATH=src python bench/bench_mcp_proxy.py [--calls 400] [--rounds 8]

One run, side by side, alternating rounds so each variant sees the same load of the machine:
the SDK's ClientSession calling one tool of a real MCP server (tests/mcp_proxy/upstream_server.py,
written with the official SDK) over stdio and over streamable HTTP,

- direct: straight to the server;
- proxy/local: through `thoth mcp proxy` with in-process policy (api_url=local);
- proxy/serve: through the proxy with a real `thoth serve` (SQLite, no rules) deciding.

Printed: p50/p95/p99 per call of each variant and the proxy's overhead (proxied p50 - direct p50).
Goal (issue 17): overhead p50 <= 1 ms with in-process policy, stdio and HTTP.
Needs the 'mcp' extra (pip install '.[server,policy,mcp]').
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
from _harness import ROOT, free_port, start_thoth, stop, wait_up
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

SRC = str(ROOT / "src")
UPSTREAM = str(ROOT / "tests" / "mcp_proxy" / "upstream_server.py")
PY = sys.executable
TOKEN = "bench-token"


def proxy_args(tenant: str) -> list[str]:
    return ["-m", "thoth", "mcp", "proxy", "--agent-id", "bench-agent", "--tenant-id", tenant,
            "--enforcement", "progressive"]


@asynccontextmanager
async def stdio_session(command: str, args: list[str], env: dict[str, str]) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=command, args=args, env=env)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


@asynccontextmanager
async def http_session(url: str) -> AsyncIterator[ClientSession]:
    client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    async with client, streamable_http_client(url, http_client=client) as (read, write, *_), \
            ClientSession(read, write) as session:
        await session.initialize()
        yield session


def spawn(args: list[str], url: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_up(url, proc)
    return proc


async def timed(session: ClientSession, calls: int, out: list[float]) -> None:
    for i in range(calls):
        started = time.perf_counter()
        result = await session.call_tool("search", {"q": f"bench {i}"})
        out.append((time.perf_counter() - started) * 1000)
        if result.is_error:
            raise SystemExit(f"a call failed: {result.content}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=400, help="calls per variant in all")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    base_env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": SRC}
    procs: list[subprocess.Popen[bytes]] = []
    home = tempfile.mkdtemp(prefix="bench-mcp-proxy-")
    db_url = f"sqlite:///{home}/thoth.db"
    thoth_proc, thoth_url = start_thoth(db_url, home)
    procs.append(thoth_proc)
    from thoth.server.db import Database
    from thoth.server.store import Store

    tenant = f"bench-{uuid.uuid4().hex[:6]}"
    store = Store(Database(db_url))
    key = str(store.create_key(tenant, "sdk")["key"])
    local_env = {**base_env, "THOTH_API_URL": "local", "PROXY_TOKEN": TOKEN}
    serve_env = {**base_env, "THOTH_API_URL": thoth_url, "THOTH_API_KEY": key, "PROXY_TOKEN": TOKEN}
    try:
        up_port = free_port()
        up_url = f"http://127.0.0.1:{up_port}/mcp"
        procs.append(spawn([PY, UPSTREAM, "http", str(up_port)], up_url, base_env))
        proxy_urls = {}
        for name, env in (("local", local_env), ("serve", serve_env)):
            port = free_port()
            proxy_urls[name] = f"http://127.0.0.1:{port}/mcp"
            procs.append(spawn([PY, *proxy_args(tenant), "--listen", f"127.0.0.1:{port}", "--upstream", up_url,
                                "--token-env", "PROXY_TOKEN"], proxy_urls[name], env))
        variants: dict[str, Callable[[], Any]] = {
            "stdio direct": lambda: stdio_session(PY, [UPSTREAM], base_env),
            "stdio proxy/local": lambda: stdio_session(PY, [*proxy_args(tenant), "--", PY, UPSTREAM], local_env),
            "stdio proxy/serve": lambda: stdio_session(PY, [*proxy_args(tenant), "--", PY, UPSTREAM], serve_env),
            "http direct": lambda: http_session(up_url),
            "http proxy/local": lambda: http_session(proxy_urls["local"]),
            "http proxy/serve": lambda: http_session(proxy_urls["serve"]),
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        async with AsyncExitStack() as stack:
            sessions = {name: await stack.enter_async_context(make()) for name, make in variants.items()}
            for session in sessions.values():  # warm-up: imports, connections, first policy load
                await timed(session, 30, [])
            per_round = max(1, args.calls // args.rounds)
            for _ in range(args.rounds):
                for name, session in sessions.items():
                    await timed(session, per_round, times[name])
        print(f"tools/call latency per call, ms ({per_round * args.rounds} calls per variant, {args.rounds} "
              f"alternating rounds; ClientSession of mcp, server {Path(UPSTREAM).name})")
        print(f"{'variant':<20}{'p50':>8}{'p95':>8}{'p99':>8}{'mean':>8}   overhead p50 over direct")
        for name, values in times.items():
            transport = name.split()[0]
            direct = statistics.median(times[f"{transport} direct"])
            extra = "" if "direct" in name else f"   +{statistics.median(values) - direct:.3f} ms"
            print(f"{name:<20}{pct(values, 0.5):>8.3f}{pct(values, 0.95):>8.3f}{pct(values, 0.99):>8.3f}"
                  f"{statistics.mean(values):>8.3f}{extra}")
        print("goal: proxy/local overhead p50 <= 1 ms (stdio and HTTP)")
    finally:
        for proc in procs:
            stop(proc)
        store.db.close()


if __name__ == "__main__":
    asyncio.run(main())
