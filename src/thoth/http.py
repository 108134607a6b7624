"""One set of HTTP resources per (server URL, API key) per process.

Every instrument() call, EnforcerClient, StepUpClient and HttpEmitter for the same URL and key
shares one `Endpoint`: one sync connection pool, one async pool per event loop, one event
thread, and the fail-open counter that the next event batch reports. Calling instrument() a
thousand times therefore costs no more threads or sockets than calling it once.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import ssl
import threading
import weakref
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from thoth.http1 import FastResponse, StaleConnection, TransportFault, encode_request, host_header
from thoth.sync_http import SyncConnection

__all__ = ["Endpoint", "FastResponse", "TransportFault", "error_message", "get_endpoint"]

if TYPE_CHECKING:
    from thoth.async_http import AsyncPool
    from thoth.emitter import EventTransport

USER_AGENT = "thoth-governance-python"
_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=16, keepalive_expiry=30)


def error_message(response: Any) -> str:
    """The human-readable part of an error body (wire.md: first of message, error_description...)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("message", "error_description", "error", "reason", "detail"):
            if body.get(key):
                return str(body[key])[:500]
    text = response.text.strip()
    return text[:200] if text else response.reason_phrase


class Endpoint:
    """Shared state for one (url, api_key)."""

    def __init__(self, url: str, api_key: str | None) -> None:
        if api_key and (not api_key.isprintable() or not api_key.isascii()):
            # Would fail inside every request (or be a header injection): say so once, up front.
            raise ValueError("the Thoth API key (api_key= or THOTH_API_KEY) contains characters an HTTP "
                             "header cannot carry (a line break or non-ASCII text); copy the key again")
        self.url = url
        self.api_key = api_key
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._async_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncPool] = (
            weakref.WeakKeyDictionary()
        )
        self._transport: EventTransport | None = None
        self._local = threading.local()  # one keep-alive connection per thread for post_fast/post_bytes
        self._ssl_context: ssl.SSLContext | None = None  # made once, for https only
        parts = urlsplit(url)
        self._scheme, self._host, self._port = parts.scheme, parts.hostname or "", parts.port
        self._base_path = parts.path.rstrip("/")
        self._host_header = host_header(self._host, self._port or (443 if self._scheme == "https" else 80),
                                        self._scheme == "https")
        # The SDK's own clients know no proxies: behind one, enforce calls and events go through httpx.
        self.fast_path = not _proxied(url)
        self.fail_open_total = 0
        self._fail_open_unreported = 0
        _every_endpoint.add(self)

    def _forget_after_fork(self) -> None:
        """In a forked child: the parent's sockets, locks and event thread are not ours to use.

        A socket shared with the parent could hand one process the other's verdict; the event
        thread did not survive the fork. Fresh ones are made on first use; the parent still sends
        the events that were queued before the fork.
        """
        self._lock = threading.Lock()
        self._local = threading.local()
        self._client = None
        self._async_clients = weakref.WeakKeyDictionary()
        self._async_pools = weakref.WeakKeyDictionary()
        self._transport = None

    def headers(self, *, bearer: bool = False) -> dict[str, str]:
        headers = {"user-agent": USER_AGENT}
        if self.api_key:
            headers["x-api-key"] = self.api_key
            if bearer:
                headers["authorization"] = f"Bearer {self.api_key}"
        return headers

    @property
    def client(self) -> httpx.Client:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = httpx.Client(limits=_LIMITS, timeout=10.0)
                client = self._client
        return client

    def async_client(self) -> httpx.AsyncClient:
        """The async pool of the running event loop (httpx async connections are loop-bound)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async_clients.get(loop)
            if client is None:
                client = httpx.AsyncClient(limits=_LIMITS, timeout=10.0)
                self._async_clients[loop] = client
        return client

    def async_pool(self) -> AsyncPool:
        """The asyncio-streams keep-alive pool of the running event loop (see thoth.async_http)."""
        loop = asyncio.get_running_loop()
        pool = self._async_pools.get(loop)
        if pool is None:
            from thoth.async_http import AsyncPool

            with self._lock:
                pool = self._async_pools.get(loop)
                if pool is None:
                    default = 443 if self._scheme == "https" else 80
                    pool = AsyncPool(self._host, self._port or default, tls=self._scheme == "https")
                    self._async_pools[loop] = pool
        return pool

    async def arequest_fast(self, method: str, path: str, payload: Any = None, *, timeout: float,
                            bearer: bool = False) -> FastResponse:
        """The async twin of post_fast: one request on the loop's keep-alive pool, never blocking it.

        Raises TransportFault when no answer arrived.
        """
        headers = self.headers(bearer=bearer)
        body = b""
        if payload is not None:
            body = json.dumps(payload, separators=(",", ":")).encode()
            headers["content-type"] = "application/json"
        return await self.async_pool().request(method, self._base_path + path, headers, body, timeout)

    def post_fast(self, path: str, payload: Any, timeout: float) -> FastResponse:
        """POST JSON on this thread's keep-alive connection (thoth.sync_http).

        The sync enforce call is the hot path: a bare socket answers a loopback round trip in less
        than half of http.client's time and a fraction of httpx's. Raises TransportFault when no
        answer arrived.
        """
        return self.post_bytes(path, json.dumps(payload, separators=(",", ":")).encode(), timeout)

    def post_bytes(self, path: str, body: bytes, timeout: float) -> FastResponse:
        """post_fast with a body already encoded as JSON (the event thread's batches)."""
        headers = {**self.headers(), "content-type": "application/json"}
        try:
            request = encode_request("POST", self._base_path + path, self._host_header, headers, body)
        except ValueError as exc:
            raise TransportFault(str(exc)) from exc
        for attempt in (1, 2):
            try:
                conn = self._connection(timeout)
                reused = conn.used
                conn.used = True
                response, keep = conn.exchange(request, timeout)
            except StaleConnection as exc:
                self._drop_connection()
                if reused and attempt == 1:
                    continue  # the server closed an idle keep-alive connection: reconnect once
                raise TransportFault(f"connection closed by the server: {exc.__cause__!r}") from exc
            except (OSError, ValueError) as exc:  # refused, reset, timed out, TLS, a garbled answer
                self._drop_connection()
                raise TransportFault(f"{type(exc).__name__}: {exc}") from exc
            if not keep:
                self._drop_connection()
            return response
        raise TransportFault("unreachable")  # pragma: no cover (the loop returns or raises)

    def _connection(self, timeout: float) -> SyncConnection:
        conn: SyncConnection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.idle_closed():
            self._drop_connection()
            conn = None
        if conn is None:
            context = None
            if self._scheme == "https":
                context = self._ssl_context = self._ssl_context or ssl.create_default_context()
            conn = self._local.conn = SyncConnection(self._host, self._port or (443 if context else 80), timeout,
                                                     context)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    @property
    def transport(self) -> EventTransport:
        transport = self._transport
        if transport is None:
            from thoth.emitter import EventTransport

            with self._lock:
                if self._transport is None:
                    self._transport = EventTransport(self)
                transport = self._transport
        return transport

    # Fail-open accounting: counted here, reported by the event transport in its next batch.
    def count_fail_open(self) -> None:
        with self._lock:
            self.fail_open_total += 1
            self._fail_open_unreported += 1

    def take_fail_opens(self) -> int:
        with self._lock:
            count, self._fail_open_unreported = self._fail_open_unreported, 0
            return count

    def close(self) -> None:
        self._drop_connection()  # this thread's; other threads' close with their thread
        with self._lock:
            client, self._client = self._client, None
            async_clients = list(self._async_clients.values())
            self._async_clients = weakref.WeakKeyDictionary()
            self._async_pools = weakref.WeakKeyDictionary()  # their loops own the sockets; dropped with them
        if client is not None:
            client.close()
        for aclient in async_clients:
            # Their loops may be gone; dropping the reference is all we can do safely.
            del aclient


def _proxied(url: str) -> bool:
    import urllib.request

    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


_registry: dict[tuple[str, str | None], Endpoint] = {}
_registry_lock = threading.Lock()
_every_endpoint: weakref.WeakSet[Endpoint] = weakref.WeakSet()  # also those released but still in use


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    for endpoint in list(_every_endpoint):
        endpoint._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def get_endpoint(url: str, api_key: str | None) -> Endpoint:
    key = (url.rstrip("/"), api_key)
    endpoint = _registry.get(key)
    if endpoint is None:
        with _registry_lock:
            endpoint = _registry.get(key)
            if endpoint is None:
                endpoint = _registry[key] = Endpoint(key[0], api_key)
    return endpoint


def release(url: str) -> None:
    """Flush briefly, then stop and forget every endpoint of `url` (tests; servers that went away)."""
    with _registry_lock:
        gone = [key for key in _registry if key[0] == url.rstrip("/")]
        dropped = [_registry.pop(key) for key in gone]
    for endpoint in dropped:
        if endpoint._transport is not None:
            endpoint._transport.flush(0.5)
            endpoint._transport.stop()
        endpoint.close()


def endpoints() -> list[Endpoint]:
    with _registry_lock:
        return list(_registry.values())


def flush_all(timeout: float = 5.0) -> bool:
    """Drain every event queue; True if all of them emptied within `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    ok = True
    for endpoint in endpoints():
        transport = endpoint._transport
        if transport is not None:
            ok = transport.flush(max(0.0, deadline - time.monotonic())) and ok
    return ok


def _at_exit() -> None:
    flush_all(5.0)
    for endpoint in endpoints():
        if endpoint._transport is not None:
            endpoint._transport.stop()
        endpoint.close()


atexit.register(_at_exit)


def stats() -> dict[str, Any]:
    """Counters of every endpoint, for diagnostics and tests."""
    out: dict[str, Any] = {}
    for endpoint in endpoints():
        transport = endpoint._transport
        out[endpoint.url] = {
            "fail_open_total": endpoint.fail_open_total,
            "dropped": transport.dropped if transport else 0,
            "sent": transport.sent if transport else 0,
            "queued": transport.pending if transport else 0,
        }
    return out
