"""Overhead of one governed tool call versus the same call ungoverned, over loopback.

    PYTHONPATH=src python bench/bench_sdk_overhead.py [--server thoth|minimal] [--calls 2000]

--server thoth (default, the honest target): the real `thoth serve` on a fresh SQLite database
  with a permissive policy (no rules), so every call is ALLOW after the server's full work per call
  (auth, policy, anomaly scoring, the decision written to the database) and the SDK's events are
  ingested meanwhile, on the same 2 cores.
--server minimal: a bare uvicorn app answering a fixed ALLOW: the SDK's own cost plus one round trip.

The server process is pinned to core 0 when `taskset` exists; the variants run in alternating
rounds so that each sees the same load of the shared machine. Goal: overhead p50 <= 1 ms and
p99 <= 3 ms, sync and async. Also printed: the bare round trip of the same request with no SDK
around it (for sync a bare socket, the floor of any client, and http.client; for async raw asyncio
streams, the floor of any asyncio client, and httpx.AsyncClient), and governed / bare floor.

--clients adds, in the same alternating rounds against the same server, the same bare request
through the SDK's own client (thoth.http.Endpoint.send / asend) and through well-kept libraries,
each with a persistent pool: urllib3 2.x (sync), aiohttp and httpcore (async). For each library the
line "governed with it" estimates a governed call that used it: governed p50 - own client p50 +
library p50, as a ratio of today's governed p50 (ADR 0152: a library is taken within 1.10x).
Needs `pip install urllib3 aiohttp` (httpcore comes with httpx); a missing one is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness  # noqa: E402  (bench/ is not a package)

SESSION_CALLS = 50
TENANT = "bench"


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


def start_server(kind: str, home: str) -> tuple[subprocess.Popen[bytes], str, str]:
    """(process, url, sdk key) of a running server."""
    if kind == "minimal":
        proc, url = _harness.start_bare()
        return proc, url, "bench-key"
    db_url = f"sqlite:///{home}/thoth.db"
    proc, url = _harness.start_thoth(db_url, home)
    env = {"PYTHONPATH": _harness.SRC, "THOTH_HOME": home, "PATH": "/usr/bin:/bin"}

    def key(role: str) -> str:
        out = subprocess.run([sys.executable, "-m", "thoth", "keys", "create", "--tenant", TENANT, "--role", role,
                              "--json", "--database-url", db_url], env=env, capture_output=True, text=True, check=True)
        return str(json.loads(out.stdout)["key"])

    sdk_key, admin_key = key("sdk"), key("admin")
    response = httpx.put(f"{url}/v1/policies", headers={"authorization": f"Bearer {admin_key}"},
                         json={"document": "version: 1\nname: permissive\nrules: []\n", "comment": "bench"})
    response.raise_for_status()
    return proc, url, sdk_key


ROUNDS = 10  # variants alternate in rounds, so each sees the same (shared, noisy) machine


def run(url: str, api_key: str, calls: int, clients: bool = False) -> dict[str, list[float]]:
    import http.client

    from thoth.instrumentor import build_tracer

    tracer = build_tracer(agent_id="bench", approved_scope=["tool"], tenant_id=TENANT, api_key=api_key,
                          api_url=url, enforcement="block")
    sync_tool, async_tool = tracer.wrap_tool("tool", tool), tracer.wrap_tool("tool", atool)

    # A session sends its whole tool history with every call, so a realistic run is a session of
    # SESSION_CALLS calls; start a new one (as a new instrument() would) after that.
    def governed(query: str) -> str:
        if len(tracer.session.tool_calls) >= SESSION_CALLS:
            tracer.session.tool_calls.clear()
        return sync_tool(query)  # type: ignore[no-any-return]

    async def agoverned(query: str) -> str:
        if len(tracer.session.tool_calls) >= SESSION_CALLS:
            tracer.session.tool_calls.clear()
        return await async_tool(query)  # type: ignore[no-any-return]

    # The round trip the SDK cannot avoid: the same kind of enforce POST with no SDK around it.
    session = str(uuid.uuid4())
    payload = json.dumps({
        "tenant_id": TENANT, "agent_id": "bench", "user_id": "system", "tool_name": "tool", "session_id": session,
        "session_tool_calls": ["tool"] * (SESSION_CALLS // 2), "approved_scope": ["tool"],
        "enforcement_mode": "block", "environment": "prod", "enforcement_trace_id": session,
        "tool_args": {"args": ["q"], "kwargs": {}},
    }, separators=(",", ":")).encode()
    headers = {"content-type": "application/json", "x-api-key": api_key}
    host, port = url.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port))

    def bare_sync(_: str) -> None:
        conn.request("POST", "/v1/enforce", body=payload, headers=headers)
        json.loads(conn.getresponse().read())

    raw = socket.create_connection((host, int(port)))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rfile = raw.makefile("rb")
    request = (f"POST /v1/enforce HTTP/1.1\r\nHost: {host}:{port}\r\ncontent-type: application/json\r\n"
               f"x-api-key: {api_key}\r\nContent-Length: {len(payload)}\r\n\r\n").encode() + payload

    def bare_socket(_: str) -> None:
        """The floor of any sync client: one send, one read, on an open connection."""
        raw.sendall(request)
        length, chunked = 0, False
        while (line := rfile.readline().lower()) != b"\r\n":
            if line.startswith(b"content-length:"):
                length = int(line[15:])
            chunked = chunked or line.startswith(b"transfer-encoding:")
        if chunked:  # the minimal app sends no length
            body = b""
            while size := int(rfile.readline(), 16):
                body += rfile.read(size + 2)[:-2]
            rfile.read(2)
        else:
            body = rfile.read(length)
        json.loads(body)

    out: dict[str, list[float]] = {}
    sync_variants = {"sync ungoverned": tool, "sync governed": governed, "sync bare (socket)": bare_socket,
                     "sync bare (http.client)": bare_sync}
    if clients:
        sync_variants.update(_sync_clients(url, host, int(port), payload, headers))
    for fn in sync_variants.values():
        measure_sync(fn, 200)  # warm up: connections, server caches
    for _ in range(ROUNDS):
        for name, fn in sync_variants.items():
            out.setdefault(name, []).extend(measure_sync(fn, calls // ROUNDS))
    asyncio.run(_run_async(out, agoverned, url, host, int(port), payload, headers, calls, clients))
    assert tracer.flush(60), "events were not delivered"
    print(f"events delivered: {tracer.emitter.sent}, dropped: {tracer.emitter.dropped}, "
          f"fail-opens: {tracer.enforcer.endpoint.fail_open_total if tracer.enforcer.endpoint else 0}")
    return out


async def _run_async(out: dict[str, list[float]], agoverned: Any, url: str, host: str, port: int, payload: bytes,
                     headers: dict[str, str], calls: int, clients: bool = False) -> None:
    request = (f"POST /v1/enforce HTTP/1.1\r\nHost: {host}:{port}\r\ncontent-type: application/json\r\n"
               f"x-api-key: {headers['x-api-key']}\r\nContent-Length: {len(payload)}\r\n\r\n").encode() + payload
    reader, writer = await asyncio.open_connection(host, port)

    async def streams(_: str) -> None:
        """The floor of any asyncio client: one write, one read, on an open connection."""
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        lengths = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")]
        if lengths:
            body = await reader.readexactly(lengths[0])
        else:  # chunked (the minimal app sends no length)
            body = b""
            while size := int(await reader.readuntil(b"\r\n"), 16):
                body += (await reader.readexactly(size + 2))[:-2]
            await reader.readexactly(2)
        json.loads(body)

    async with httpx.AsyncClient() as client:
        async def via_httpx(_: str) -> None:
            (await client.post(f"{url}/v1/enforce", content=payload, headers=headers)).json()

        variants = {"async ungoverned": atool, "async governed": agoverned,
                    "async bare (asyncio streams)": streams, "async bare (httpx.AsyncClient)": via_httpx}
        closers: list[Any] = []
        if clients:
            variants.update(await _async_clients(url, payload, headers, closers))
        for fn in variants.values():
            await measure_async(fn, 200)
        for _ in range(ROUNDS):
            for name, fn in variants.items():
                out.setdefault(name, []).extend(await measure_async(fn, calls // ROUNDS))
        for close in closers:
            await close()
    writer.close()


# --- the same bare request through the SDK's own client and through libraries (--clients) -----------

def _sync_clients(url: str, host: str, port: int, payload: bytes, headers: dict[str, str]) -> dict[str, Any]:
    from thoth.http import get_endpoint

    endpoint = get_endpoint(url, headers["x-api-key"])

    def own(_: str) -> None:
        endpoint.send("POST", "/v1/enforce", payload, timeout=5.0).json()

    variants: dict[str, Any] = {"sync bare (thoth client)": own}
    try:
        import urllib3
    except ImportError:
        print("urllib3 not installed: skipped")
        return variants
    pool = urllib3.HTTPConnectionPool(host, port, maxsize=4, retries=False, timeout=urllib3.Timeout(total=5.0))

    def via_urllib3(_: str) -> None:
        json.loads(pool.request("POST", "/v1/enforce", body=payload, headers=headers).data)

    variants["sync bare (urllib3 pool)"] = via_urllib3
    return variants


async def _async_clients(url: str, payload: bytes, headers: dict[str, str], closers: list[Any]) -> dict[str, Any]:
    import httpcore

    from thoth.http import get_endpoint

    endpoint = get_endpoint(url, headers["x-api-key"])

    async def own(_: str) -> None:
        (await endpoint.asend("POST", "/v1/enforce", payload, timeout=5.0)).json()

    variants: dict[str, Any] = {"async bare (thoth client)": own}
    pool = httpcore.AsyncConnectionPool(max_connections=16, keepalive_expiry=30)
    closers.append(pool.aclose)

    async def via_httpcore(_: str) -> None:
        async with asyncio.timeout(5.0):
            response = await pool.request("POST", f"{url}/v1/enforce", content=payload, headers=headers)
        json.loads(response.content)

    variants["async bare (httpcore pool)"] = via_httpcore
    try:
        import aiohttp
    except ImportError:
        print("aiohttp not installed: skipped")
        return variants
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16, keepalive_timeout=30),
                                    timeout=aiohttp.ClientTimeout(total=5.0))
    closers.append(session.close)

    async def via_aiohttp(_: str) -> None:
        async with session.post(f"{url}/v1/enforce", data=payload, headers=headers) as response:
            json.loads(await response.read())

    variants["async bare (aiohttp session)"] = via_aiohttp
    return variants


def report(kind: str, calls: int, out: dict[str, list[float]]) -> None:
    print(f"\nserver: {kind}; {calls} calls each (sessions of {SESSION_CALLS}); milliseconds")
    print(f"{'':32} {'p50':>8} {'p99':>8}")
    for name, samples in out.items():
        p50, p99 = percentiles(samples)
        print(f"{name:32} {p50:8.3f} {p99:8.3f}")
    for mode, bare in (("sync", "sync bare (socket)"), ("async", "async bare (asyncio streams)")):
        u50, _ = percentiles(out[f"{mode} ungoverned"])
        g50, g99 = percentiles(out[f"{mode} governed"])
        b50, _ = percentiles(out[bare])
        print(f"{mode:6} overhead vs ungoverned: p50 {g50 - u50:.3f} ms, p99 {g99 - u50:.3f} ms "
              f"(goal 1 / 3 ms); governed / bare floor p50 = {g50 / b50:.2f}x")
        own = f"{mode} bare (thoth client)"
        if own not in out:
            continue
        o50, _ = percentiles(out[own])
        for name in out:
            if name.startswith(f"{mode} bare (") and name.endswith(("pool)", "session)")):
                l50, _ = percentiles(out[name])
                print(f"{mode:6} governed with {name[len(mode) + 7:-1]}: {(g50 - o50 + l50) / g50:.2f}x today's "
                      f"governed p50 (library / own client bare p50 = {l50 / o50:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--server", choices=("thoth", "minimal"), default="thoth")
    parser.add_argument("--clients", action="store_true", help="also the SDK's own client and libraries, bare")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        proc, url, key = start_server(options.server, home)
        try:
            out = run(url, key, options.calls, options.clients)
        finally:
            _harness.stop(proc)
    report(options.server, options.calls, out)


if __name__ == "__main__":
    main()
