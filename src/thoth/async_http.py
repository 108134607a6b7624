"""A small HTTP/1.1 keep-alive client on asyncio streams: the async enforce call and hold poll.

Why not httpx.AsyncClient: on this machine its async stack alone costs 1-4 ms per loopback round
trip, more than the whole 1 ms budget of a governed call; a request on an open asyncio stream
costs 0.13-0.45 ms (bench/bench_sdk_overhead.py). The client does only what those two calls need: one request at
a time per connection, `Content-Length`, chunked and read-until-close bodies, keep-alive with a
bounded pool, a deadline per request, one reconnect when a reused connection turns out to have
been closed by the server, and TLS through asyncio's ssl. Proxies are not supported: behind one,
`thoth.http.Endpoint` keeps using httpx.

Streams belong to one event loop, so there is one `AsyncPool` per loop (see `Endpoint.async_pool`).
Nothing here blocks the loop: name resolution runs in the loop's executor (`open_connection`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque

from thoth.http1 import (
    HEAD_END,
    MAX_BODY_BYTES,
    FastResponse,
    StaleConnection,
    TransportFault,
    chunk_size,
    encode_request,
    framing,
    host_header,
    keeps_alive,
    parse_head,
)


class _Connection:
    __slots__ = ("reader", "writer", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self, now: float, expiry: float) -> bool:
        # EOF or unread bytes on an idle connection mean the server closed it or misbehaved.
        return (not self.writer.is_closing() and not self.reader.at_eof()
                and not getattr(self.reader, "_buffer", b"")  # stray bytes; no public way to peek
                and now - self.idle_since < expiry)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()

    async def exchange(self, request: bytes, head_only: bool) -> tuple[FastResponse, bool]:
        """Send one request, read one response; returns it and whether the connection stays open."""
        try:
            self.writer.write(request)
            await self.writer.drain()
            head = await self.reader.readuntil(HEAD_END)
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise StaleConnection from exc
            raise
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise StaleConnection from exc
        status, headers = parse_head(head)
        while 100 <= status < 200:  # interim answers (100 Continue, 103 Early Hints) precede the real one
            status, headers = parse_head(await self.reader.readuntil(HEAD_END))
        kind, size = framing(status, headers, head_only)
        if kind == "none":
            return FastResponse(status, b"", headers), keeps_alive(headers)
        if kind == "length":
            return FastResponse(status, await self.reader.readexactly(size), headers), keeps_alive(headers)
        if kind == "chunked":
            return FastResponse(status, await self._read_chunked(), headers), keeps_alive(headers)
        body = await self.reader.read(MAX_BODY_BYTES + 1)  # no framing: the body runs until the close
        while body and len(body) <= MAX_BODY_BYTES:
            more = await self.reader.read(MAX_BODY_BYTES + 1 - len(body))
            if not more:
                break
            body += more
        if len(body) > MAX_BODY_BYTES:
            raise ValueError("response body too large")
        return FastResponse(status, body, headers), False

    async def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while size := chunk_size(await self.reader.readuntil(b"\r\n")):
            total += size
            if total > MAX_BODY_BYTES:
                raise ValueError("response body too large")
            parts.append(await self.reader.readexactly(size))
            if await self.reader.readexactly(2) != b"\r\n":
                raise ValueError("malformed chunk")
        while await self.reader.readuntil(b"\r\n") != b"\r\n":  # trailers, up to a blank line
            pass
        return b"".join(parts)


class AsyncPool:
    """Keep-alive connections to one server, for one event loop.

    At most `max_connections` are open at once (further requests wait for a slot within their
    deadline); at most `max_idle` are kept between requests, each for at most `idle_expiry` s.
    """

    def __init__(self, host: str, port: int, *, tls: bool, max_connections: int = 100, max_idle: int = 16,
                 idle_expiry: float = 30.0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.port = port
        self._ssl = (ssl_context or ssl.create_default_context()) if tls else None
        self._host_header = host_header(host, port, tls)
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: deque[_Connection] = deque()
        self._max_idle = max_idle
        self._idle_expiry = idle_expiry
        self.connects = 0  # connections opened so far (tests and diagnostics)

    async def request(self, method: str, target: str, headers: dict[str, str], body: bytes = b"",
                      timeout: float = 10.0) -> FastResponse:
        """One request; raises TransportFault when no complete answer arrived within `timeout` s."""
        try:
            message = encode_request(method, target, self._host_header, headers, body)
            async with asyncio.timeout(timeout), self._slots:
                for attempt in (1, 2):
                    conn, reused = await self._acquire()
                    try:
                        response, keep = await conn.exchange(message, method == "HEAD")
                    except StaleConnection as exc:
                        conn.close()
                        if reused and attempt == 1:
                            continue  # the server dropped an idle keep-alive connection: reconnect once
                        raise TransportFault(f"connection closed by the server: {exc.__cause__!r}") from exc
                    except BaseException:
                        conn.close()  # half-read (timeout, cancellation, bad answer): never reuse
                        raise
                    if keep:
                        self._release(conn)
                    else:
                        conn.close()
                    return response
        except TimeoutError as exc:
            raise TransportFault(f"no answer within {timeout:g} s") from exc
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise TransportFault(f"{type(exc).__name__}: {exc}") from exc
        raise TransportFault("unreachable")  # pragma: no cover (the loop returns or raises)

    async def _acquire(self) -> tuple[_Connection, bool]:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()  # the most recently used is the least likely to have expired
            if conn.usable(now, self._idle_expiry):
                return conn, True
            conn.close()
        reader, writer = await asyncio.open_connection(
            self.host, self.port, ssl=self._ssl, server_hostname=self.host if self._ssl else None)
        self.connects += 1
        return _Connection(reader, writer), False

    def _release(self, conn: _Connection) -> None:
        conn.idle_since = time.monotonic()
        self._idle.append(conn)
        while len(self._idle) > self._max_idle:
            self._idle.popleft().close()

    def close(self) -> None:
        """Close the idle connections (call on the pool's own loop)."""
        while self._idle:
            self._idle.pop().close()
