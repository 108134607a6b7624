"""One set of HTTP resources per (server URL, API key) per process.

Every instrument() call, EnforcerClient, StepUpClient and HttpEmitter for the same URL and key
shares one `Endpoint`: one sync connection pool, one async pool per event loop, one event
thread, and the fail-open counter that the next event batch reports. Calling instrument() a
thousand times therefore costs no more threads or sockets than calling it once.

`Endpoint.send` / `asend` are the SDK's only ways to talk to the server. Each bounds the whole
exchange (connect, send, the answer's head and its body) by one deadline, whichever client
carries it: the SDK's own (thoth.sync_http, thoth.async_http) or httpx behind a proxy.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import email.utils
import json
import logging
import math
import os
import random
import ssl
import threading
import time
import weakref
from datetime import UTC
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpcore
import httpx

from thoth.http1 import FastResponse, StaleConnection, TransportFault, encode_request, host_header
from thoth.sync_http import SyncConnection

__all__ = ["Endpoint", "FastResponse", "Response", "TransportFault", "error_message", "get_endpoint",
           "retry_after", "retry_pause"]

if TYPE_CHECKING:
    from thoth.async_http import AsyncPool
    from thoth.emitter import EventTransport

log = logging.getLogger("thoth")

USER_AGENT = "aten-thoth-python"
_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=16, keepalive_expiry=30)

Response = FastResponse | httpx.Response  # status_code, headers, json(), text, reason_phrase

# "Come back later": the server did not act on the request (overload shedding, rate limit), so
# asking again is safe. Other 5xx may come after the server acted (a recorded decision) and are not retried.
RETRY_STATUSES = frozenset({429, 503})
_RETRY_MARGIN_SECONDS = 0.02  # a retry needs at least this much of the deadline left to be worth sending


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
        # The SDK's own clients know no proxies: behind one, every request goes through httpx.
        self.proxy = _proxy_for(url)
        self.fast_path = self.proxy is None
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
        """httpx through this endpoint's proxy (the one `_proxy_for` chose), every exchange bounded
        by the deadline of `send` (see _DeadlineBackend)."""
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    transport = _bounded_by_deadline(httpx.HTTPTransport(proxy=self.proxy, limits=_LIMITS))
                    self._client = httpx.Client(transport=transport, timeout=10.0)
                client = self._client
        return client

    def async_client(self) -> httpx.AsyncClient:
        """The async pool of the running event loop (httpx async connections are loop-bound)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async_clients.get(loop)
            if client is None:
                transport = httpx.AsyncHTTPTransport(proxy=self.proxy, limits=_LIMITS)
                client = httpx.AsyncClient(transport=transport, timeout=10.0)
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

    def _headers_for(self, body: bytes, bearer: bool) -> dict[str, str]:
        headers = self.headers(bearer=bearer)
        if body:
            headers["content-type"] = "application/json"  # every body the SDK sends is JSON
        return headers

    def send(self, method: str, path: str, body: bytes = b"", *, timeout: float, bearer: bool = False) -> Response:
        """One request whose whole exchange ends within `timeout` s: the answer, or TransportFault.

        The own sync client when there is no proxy (the enforce call is the hot path: a bare socket
        answers a loopback round trip in less than half of http.client's time and a fraction of
        httpx's), httpx through the proxy otherwise. `path` may carry a query string.
        """
        if self.fast_path:
            return self._send_fast(method, path, body, timeout, bearer)
        if timeout <= 0:
            raise TransportFault("no time left before the call's deadline")
        token = _DEADLINE.set(time.monotonic() + timeout)
        try:
            return self.client.request(method, self.url + path, content=body or None,
                                       headers=self._headers_for(body, bearer), timeout=timeout)
        except httpx.HTTPError as exc:
            raise TransportFault(f"{type(exc).__name__}: {exc}") from exc
        finally:
            _DEADLINE.reset(token)

    async def asend(self, method: str, path: str, body: bytes = b"", *, timeout: float,
                    bearer: bool = False) -> Response:
        """The async twin of `send`, never blocking the loop: the loop's own keep-alive pool, or httpx."""
        if self.fast_path:
            return await self.async_pool().request(method, self._base_path + path, self._headers_for(body, bearer),
                                                   body, timeout)
        try:
            async with asyncio.timeout(timeout):  # httpx's timeouts bound each read, not the exchange
                return await self.async_client().request(method, self.url + path, content=body or None,
                                                         headers=self._headers_for(body, bearer), timeout=timeout)
        except TimeoutError as exc:
            raise TransportFault(f"no answer within {timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise TransportFault(f"{type(exc).__name__}: {exc}") from exc

    def post_fast(self, path: str, payload: Any, timeout: float) -> FastResponse:
        """POST JSON on this thread's keep-alive connection (thoth.sync_http), whatever the proxies."""
        return self.post_bytes(path, json.dumps(payload, separators=(",", ":")).encode(), timeout)

    def post_bytes(self, path: str, body: bytes, timeout: float) -> FastResponse:
        """post_fast with a body already encoded as JSON."""
        return self._send_fast("POST", path, body, timeout, False)

    def _send_fast(self, method: str, path: str, body: bytes, timeout: float, bearer: bool) -> FastResponse:
        deadline = time.monotonic() + timeout  # one deadline: connect, send, head and body, and a reconnect
        try:
            request = encode_request(method, self._base_path + path, self._host_header,
                                     self._headers_for(body, bearer), body)
        except ValueError as exc:
            raise TransportFault(str(exc)) from exc
        for attempt in (1, 2):
            try:
                conn = self._connection(deadline)
                reused = conn.used
                conn.used = True
                response, keep = conn.exchange(request, deadline)
            except StaleConnection as exc:
                self._drop_connection()
                if reused and attempt == 1:
                    continue  # the server closed an idle keep-alive connection: reconnect once
                raise TransportFault(f"connection closed by the server: {exc.__cause__!r}") from exc
            except TimeoutError as exc:
                self._drop_connection()  # half-read: never reuse
                raise TransportFault(f"no answer within {timeout:g} s") from exc
            except (OSError, ValueError) as exc:  # refused, reset, TLS, a garbled answer
                self._drop_connection()
                raise TransportFault(f"{type(exc).__name__}: {exc}") from exc
            if not keep:
                self._drop_connection()
            return response
        raise TransportFault("unreachable")  # pragma: no cover (the loop returns or raises)

    def _connection(self, deadline: float) -> SyncConnection:
        conn: SyncConnection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.idle_closed():
            self._drop_connection()
            conn = None
        if conn is None:
            context = None
            if self._scheme == "https":
                context = self._ssl_context = self._ssl_context or ssl.create_default_context()
            conn = self._local.conn = SyncConnection(self._host, self._port or (443 if context else 80), deadline,
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


def _proxy_for(url: str) -> str | None:
    """The proxy that HTTP(S)_PROXY / ALL_PROXY / NO_PROXY name for `url`, or None."""
    import urllib.request

    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


# --- one deadline for httpx's sync exchanges --------------------------------------------------------
# httpx's timeouts bound each connect, write and read on its own: a server (or proxy) that drips
# its answer a byte at a time never trips one. The sync client has no cancellation, so its network
# backend takes every timeout from what is left of the deadline `Endpoint.send` set for the call.

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("thoth_http_deadline", default=None)


def _clamp(timeout: float | None, expired: type[Exception]) -> float | None:
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise expired("the call's deadline has passed")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        tls = self._inner.start_tls(ssl_context, server_hostname, _clamp(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, _clamp(timeout, httpcore.ConnectTimeout), local_address,
                                         socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(path, _clamp(timeout, httpcore.ConnectTimeout), socket_options)
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _bounded_by_deadline(transport: httpx.HTTPTransport) -> httpx.HTTPTransport:
    """Put _DeadlineBackend under the transport's connection pool.

    httpx has no public way to choose httpcore's network backend; the pool reads the attribute
    whenever it opens a connection. Should a new httpx rename it, the warning says so and the
    proxy path is left with httpx's per-read timeouts (tests/sdk/test_deadlines.py then fails).
    """
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.NetworkBackend):
        pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]
    else:
        log.warning("Thoth: this httpx (%s) hides its network backend; behind a proxy a request's "
                    "deadline bounds each read, not the whole answer", httpx.__version__)
    return transport


# --- "come back later" answers ----------------------------------------------------------------------

def retry_after(response: Response) -> float | None:
    """Seconds the answer's Retry-After asks to wait (delta-seconds or an HTTP-date), or None."""
    value = (response.headers.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - time.time()  # an HTTP-date is wall-clock time
    return max(0.0, seconds) if math.isfinite(seconds) else None


def retry_pause(response: Response, deadline: float, attempt: int) -> float | None:
    """How long to wait before asking again, or None: not a 429/503, or no retry fits before
    `deadline` (time.monotonic()). A Retry-After longer than what is left means no retry at all (the
    server said it will not answer in time); without one, a jittered backoff (25-50 ms, doubling
    up to 1 s) that ends before the deadline. Never less than the backoff: Retry-After: 0 must not
    become a busy loop."""
    if response.status_code not in RETRY_STATUSES:
        return None
    left = deadline - time.monotonic() - _RETRY_MARGIN_SECONDS
    if left <= 0:
        return None
    backoff = min(0.05 * 2 ** attempt, 1.0) * random.uniform(0.5, 1.0)
    asked = retry_after(response)
    if asked is not None and asked > left:
        return None
    return min(max(asked or 0.0, backoff), left)


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
            "batches": transport.batches if transport else 0,
            "queued": transport.pending if transport else 0,
        }
    return out
