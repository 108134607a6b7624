"""The two kinds of client the chaos suite runs against a server under fault.

- `SdkAgents`: the SDK as users run it — a generic agent with a `.tools` list under
  `thoth.instrument` (sync) and a `Tracer`-wrapped async tool, each calling in a loop. What the
  SDK was told is read off its own transport (the shared `Endpoint`'s request methods are wrapped
  to note each answer), so a decision counts as answered exactly when the SDK got a 200 with a
  `decision_id`, and an event as acknowledged when its batch got a 2xx.
- `Load`: N concurrent HTTP connections (httpx, asyncio) posting enforce calls and event batches
  the way a busy fleet does, retrying unacknowledged batches (and calls carrying a tool_call_id)
  until the server takes them, counting every status.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from types import SimpleNamespace
from typing import Any

import httpx

import thoth
from thoth.http import get_endpoint, release
from thoth.instrumentor import build_tracer

from .harness import Ledger

TOOL_BODY = {"agent_id": "load", "tool_name": "search", "approved_scope": ["search"],
             "enforcement_mode": "block"}


# The SDK -------------------------------------------------------------------------------------
def _note(ledger: Ledger, path: str, request: Any, status: int, answer: bytes) -> None:
    """Record one HTTP answer the SDK received."""
    ledger.statuses[status] += 1
    if path.startswith("/v1/enforce") and not path.startswith("/v1/enforce/hold") and status == 200:
        body = json.loads(answer)
        if body.get("decision_id"):
            ledger.answered[body["decision_id"]] = _sdk_marker(request)
    elif path.startswith("/v1/events/batch") and 200 <= status < 300:
        ledger.acked.update(event["event_id"] for event in json.loads(request))


def _sdk_marker(request: Any) -> str:
    body = json.loads(request) if isinstance(request, (bytes, str)) else request
    args = body.get("tool_args") or {}
    return str(args.get("q") or (args.get("args") or [""])[0])


def observe(url: str, key: str, ledger: Ledger) -> None:
    """Wrap the endpoint's request methods so every answer lands in `ledger`: every SDK request
    (enforce, hold poll, event batch) goes through `send` (sync) or `asend` (async)."""
    endpoint = get_endpoint(url, key)

    def record(path: str, body: Any, call: Any) -> Any:
        try:
            response = call()
        except Exception as exc:
            ledger.errors[type(exc).__name__] += 1
            raise
        _note(ledger, path, body, response.status_code, response.content)
        return response

    async def arecord(path: str, body: Any, call: Any) -> Any:
        try:
            response = await call()
        except Exception as exc:
            ledger.errors[type(exc).__name__] += 1
            raise
        _note(ledger, path, body, response.status_code, response.content)
        return response

    send, asend = endpoint.send, endpoint.asend
    endpoint.send = lambda method, path, body=b"", **kw: record(  # type: ignore[method-assign]
        path, body, lambda: send(method, path, body, **kw))
    endpoint.asend = lambda method, path, body=b"", **kw: arecord(  # type: ignore[method-assign]
        path, body, lambda: asend(method, path, body, **kw))


class SdkAgents:
    """A sync agent (thoth.instrument, generic `.tools` list) and an async one (Tracer.wrap_tool),
    each calling its tool in a loop on a thread of its own until `stop()`."""

    def __init__(self, url: str, key: str, tenant: str, ledger: Ledger, deadline: float = 2.0) -> None:
        self.url, self.key, self.tenant, self.ledger, self.deadline = url, key, tenant, ledger, deadline
        self.calls = 0
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        observe(url, key, ledger)
        settings: dict[str, Any] = {"tenant_id": tenant, "api_key": key, "api_url": url, "enforcement": "block",
                                    "enforce_timeout_seconds": deadline}

        def search(q: str) -> str:
            return f"result {q}"

        self.agent = SimpleNamespace(tools=[search])
        thoth.instrument(self.agent, agent_id="chaos-sync", approved_scope=["search"], **settings)
        self.session_ids = {thoth.get_current_session().session_id}  # type: ignore[union-attr]
        self.tracer = build_tracer(agent_id="chaos-async", approved_scope=["search"], **settings)
        self.session_ids.add(self.tracer.session.session_id)

        async def asearch(q: str) -> str:
            return f"result {q}"

        self.asearch = self.tracer.wrap_tool("search", asearch)
        self._threads = [threading.Thread(target=self._sync_loop, daemon=True),
                         threading.Thread(target=lambda: asyncio.run(self._async_loop()), daemon=True)]

    def start(self) -> SdkAgents:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _count(self, started: float) -> None:
        with self.ledger.lock:
            self.calls += 1
        self.ledger.waited(time.monotonic() - started)

    def _sync_loop(self) -> None:
        n = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                assert self.agent.tools[0](f"sync-{n}") == f"result sync-{n}"
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.failures.append(exc)
            self._count(started)
            n += 1
            time.sleep(0.01)

    async def _async_loop(self) -> None:
        n = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                assert await self.asearch(f"async-{n}") == f"result async-{n}"
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.failures.append(exc)
            self._count(started)
            n += 1
            await asyncio.sleep(0.01)

    def finish(self, flush_timeout: float = 60.0) -> None:
        """Stop calling, send every queued event, and take the fail-open count."""
        self.stop()
        endpoint = get_endpoint(self.url, self.key)
        self.flushed = endpoint.transport.flush(flush_timeout)
        self.dropped = endpoint.transport.dropped
        self.ledger.fail_opens += endpoint.fail_open_total
        self.events_emitted = 2 * self.calls  # a PRE and a POST per allowed call
        release(self.url)


# Raw HTTP load -------------------------------------------------------------------------------
class Load:
    """`connections` workers on one event loop (its own thread), each: enforce one call, then post
    its two events; run until stop(), then retry unacknowledged batches until taken (`drain`)."""

    def __init__(self, url: str, key: str, tenant: str, ledger: Ledger, connections: int = 8,
                 timeout: float = 15.0, pause: float = 0.0) -> None:
        self.url, self.key, self.tenant, self.ledger = url, key, tenant, ledger
        self.connections, self.timeout, self.pause = connections, timeout, pause
        self.requests = 0
        self._stop = threading.Event()
        self._drain_until = 0.0
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self, drain: float = 60.0) -> None:
        self._drain_until = time.monotonic() + drain
        self._stop.set()
        self._thread.join(drain + self.timeout + 10)

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=self.connections, max_keepalive_connections=self.connections)
        async with httpx.AsyncClient(base_url=self.url, headers={"x-api-key": self.key}, timeout=self.timeout,
                                     limits=limits) as client:
            await asyncio.gather(*(self._worker(client, w) for w in range(self.connections)))

    async def _post(self, client: httpx.AsyncClient, path: str, body: Any) -> httpx.Response | None:
        started = time.monotonic()
        self.requests += 1
        try:
            response = await client.post(path, json=body)
        except httpx.TimeoutException:
            self.ledger.errors["timeout"] += 1
            response = None
        except httpx.TransportError as exc:
            self.ledger.errors[type(exc).__name__] += 1
            response = None
        self.ledger.waited(time.monotonic() - started)
        if response is None:
            await asyncio.sleep(0.05)  # the server is down: do not spin
        else:
            self.ledger.statuses[response.status_code] += 1
            if response.status_code >= 500 and not _explained(response):
                self.ledger.errors["5xx without Retry-After and message"] += 1
        return response

    async def _worker(self, client: httpx.AsyncClient, w: int) -> None:
        unacked: list[list[dict[str, Any]]] = []
        n = 0
        while not self._stop.is_set():
            marker = f"w{w}-{n}"
            body = {**TOOL_BODY, "tenant_id": self.tenant, "session_id": f"{self.tenant}-s{w}",
                    "tool_args": {"q": marker}}
            retry = n % 4 == 0
            if retry:  # a host that names its calls may ask again: the server must record it once
                body["tool_call_id"] = marker
            for _ in range(20 if retry else 1):
                response = await self._post(client, "/v1/enforce", body)
                if response is not None and response.status_code == 200:
                    decision_id = response.json().get("decision_id")
                    if decision_id:
                        self.ledger.answered[decision_id] = marker
                    break
                if self._stop.is_set():
                    break
            batch = [{"event_id": f"{self.tenant}:{marker}-{k}", "tenant_id": self.tenant, "agent_id": "load",
                      "session_id": f"{self.tenant}-s{w}", "event_type": "TOOL_CALL_PRE", "tool_name": "search"}
                     for k in ("pre", "post")]
            self.ledger.emitted.update(e["event_id"] for e in batch)
            unacked.append(batch)
            await self._send_events(client, unacked, once=True)
            n += 1
            if self.pause:
                await asyncio.sleep(self.pause)
        while unacked and time.monotonic() < self._drain_until:
            await self._send_events(client, unacked, once=False)

    async def _send_events(self, client: httpx.AsyncClient, unacked: list[list[dict[str, Any]]],
                           once: bool) -> None:
        """Post the oldest unacknowledged batch (all of them when not `once`); keep those refused."""
        for batch in list(unacked[:3] if once else unacked):  # three a turn: a backlog shrinks
            response = await self._post(client, "/v1/events/batch", batch)
            if response is not None and 200 <= response.status_code < 300:
                self.ledger.acked.update(e["event_id"] for e in batch)
                unacked.remove(batch)
            elif not once:
                await asyncio.sleep(0.2)


def _explained(response: httpx.Response) -> bool:
    """A 5xx a client can act on: Retry-After says when to ask again, a JSON `message` says why."""
    try:
        message = response.json().get("message")
    except ValueError:
        message = None
    return bool(message) and "retry-after" in response.headers


def probe(url: str, path: str = "/healthz", timeout: float = 10.0) -> tuple[int | None, float]:
    """One GET: (status or None, seconds it took)."""
    started = time.monotonic()
    try:
        status: int | None = httpx.get(url + path, timeout=timeout).status_code
    except httpx.HTTPError:
        status = None
    return status, time.monotonic() - started
