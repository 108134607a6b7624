"""Overhead of one governed tool call versus the same call ungoverned, over loopback.

    PYTHONPATH=src python bench/bench_sdk_overhead.py [--calls 2000]

The server is a minimal ASGI app under uvicorn in a separate process (a fixed ALLOW envelope,
events acknowledged), so the figures are the SDK's cost plus one loopback round trip, not
policy evaluation. Goal: overhead p50 <= 1 ms, p99 <= 3 ms, sync and async.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

SESSION_CALLS = 50
ALLOW = json.dumps({"decision": "ALLOW", "authorization_decision": "ALLOW", "reason": "ok",
                    "risk_score": 0.0, "latency_ms": 0.01}).encode()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The smallest server that honours the wire contract's happy path."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    body = ALLOW if scope["path"] == "/v1/enforce" else b'{"accepted":true}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def serve(port: int) -> None:
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", http="httptools",
                loop="uvloop", access_log=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("benchmark server did not start")


def tool(query: str) -> str:
    return query.upper()


async def atool(query: str) -> str:
    return query.upper()


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


def measure_sync(fn: Any, calls: int) -> list[float]:
    out = []
    for i in range(calls):
        start = time.perf_counter()
        fn(f"q{i}")
        out.append((time.perf_counter() - start) * 1000)
    return out


async def measure_async(fn: Any, calls: int) -> list[float]:
    out = []
    for i in range(calls):
        start = time.perf_counter()
        await fn(f"q{i}")
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        serve(options.serve)
        return

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], env=os.environ.copy())
    try:
        wait_ready(port)
        from thoth.instrumentor import build_tracer

        tracer = build_tracer(agent_id="bench", approved_scope=["tool"], tenant_id="bench",
                              api_key="bench-key", api_url=f"http://127.0.0.1:{port}", enforcement="block")
        sync_tool, async_tool = tracer.wrap_tool("tool", tool), tracer.wrap_tool("tool", atool)

        # A session sends its whole tool history with every call, so a realistic run is a
        # session of SESSION_CALLS calls; start a new one (as a new instrument() would) after that.
        def governed(query: str) -> str:
            if len(tracer.session.tool_calls) >= SESSION_CALLS:
                tracer.session.tool_calls.clear()
            return sync_tool(query)  # type: ignore[no-any-return]

        async def agoverned(query: str) -> str:
            if len(tracer.session.tool_calls) >= SESSION_CALLS:
                tracer.session.tool_calls.clear()
            return await async_tool(query)  # type: ignore[no-any-return]

        calls = options.calls
        measure_sync(governed, 200)  # warm the pool
        base_sync = measure_sync(tool, calls)
        gov_sync = measure_sync(governed, calls)

        async def run_async() -> tuple[list[float], list[float]]:
            await measure_async(agoverned, 200)
            return await measure_async(atool, calls), await measure_async(agoverned, calls)

        base_async, gov_async = asyncio.run(run_async())

        # The bare round trip the SDK cannot avoid: the same POST, no SDK around it.
        import http.client

        import httpx

        payload = json.dumps({"tool_name": "tool", "tool_args": {"args": ["q"], "kwargs": {}}}).encode()
        conn = http.client.HTTPConnection("127.0.0.1", port)

        def bare_sync(_: str) -> None:
            conn.request("POST", "/v1/enforce", body=payload, headers={"content-type": "application/json"})
            json.loads(conn.getresponse().read())

        async def bare_async_run() -> list[float]:
            async with httpx.AsyncClient() as client:
                async def bare(_: str) -> None:
                    (await client.post(f"http://127.0.0.1:{port}/v1/enforce", content=payload)).json()

                await measure_async(bare, 200)
                return await measure_async(bare, calls)

        rtt_sync, rtt_async = measure_sync(bare_sync, calls), asyncio.run(bare_async_run())
        assert tracer.flush(30), "events were not delivered"
        print(f"governed vs ungoverned call, {calls} calls each (sessions of {SESSION_CALLS}), "
              "loopback uvicorn server in another process")
        print(f"{'mode':6} {'ungoverned p50':>15} {'governed p50':>13} {'governed p99':>13} "
              f"{'overhead p50':>13} {'overhead p99':>13}")
        for mode, base, gov in (("sync", base_sync, gov_sync), ("async", base_async, gov_async)):
            b50, _ = percentiles(base)
            g50, g99 = percentiles(gov)
            print(f"{mode:6} {b50 * 1000:12.1f} µs {g50:10.3f} ms {g99:10.3f} ms "
                  f"{g50 - b50:10.3f} ms {g99 - b50:10.3f} ms")
        for mode, rtt, gov in (("sync", rtt_sync, gov_sync), ("async", rtt_async, gov_async)):
            r50, r99 = percentiles(rtt)
            g50, _ = percentiles(gov)
            print(f"{mode:6} bare round trip p50 {r50:.3f} ms p99 {r99:.3f} ms "
                  f"({'http.client' if mode == 'sync' else 'httpx.AsyncClient'}); "
                  f"governed/bare p50 = {g50 / r50:.2f}x")
        print(f"events delivered: {tracer.emitter.sent}, dropped: {tracer.emitter.dropped}")
    finally:
        server.terminate()
        server.wait(5)


if __name__ == "__main__":
    main()
