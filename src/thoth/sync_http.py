"""A keep-alive HTTP/1.1 connection on a blocking socket: the sync enforce call, hold poll and event batches.

http.client parses every answer's headers with the email package; on loopback that is more than
half of its 0.22-0.25 ms round trip, while the same exchange on a bare socket takes ~0.1 ms
(bench/bench_sdk_overhead.py). Framing is shared with the async client (thoth.http1). Each
thread owns its connection (see `Endpoint.send`), so nothing here is shared or locked.

Every exchange has one deadline. A socket timeout bounds a single read, and a server that sends
its answer one byte at a time never lets a single read time out, so the connection keeps its own
buffer and every `recv` gets only what is left of the deadline (not a fresh timeout).
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time

from thoth.http1 import (
    HEAD_END,
    MAX_BODY_BYTES,
    FastResponse,
    StaleConnection,
    chunk_size,
    framing,
    keeps_alive,
    parse_head,
)

MAX_HEAD_BYTES = 65536  # status line and headers, as asyncio's StreamReader limit on the async side
_RECV_BYTES = 65536


def _left(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("timed out")
    return remaining


def _connect(host: str, port: int, deadline: float) -> socket.socket:
    """socket.create_connection, but every address tried shares the one deadline (a name with an
    IPv6 and an IPv4 address must not get the timeout twice). Resolving the name is not bounded:
    a blocking getaddrinfo cannot be interrupted (docs/sdk.md)."""
    failure: OSError = OSError(f"no address for {host!r}")
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(_left(deadline))
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            failure = exc
    raise failure


class SyncConnection:
    def __init__(self, host: str, port: int, deadline: float, ssl_context: ssl.SSLContext | None = None) -> None:
        sock = _connect(host, port, deadline)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one small write per request
            if ssl_context is not None:
                sock.settimeout(_left(deadline))  # the handshake as a whole (ssl keeps one deadline per call)
                sock = ssl_context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._buffer = bytearray()  # received, not yet consumed
        self.used = False  # has carried a request: a failure before any answer may be a stale keep-alive

    def idle_closed(self) -> bool:
        """True when the server closed (or wrote to) this idle connection: do not send on it.

        Checked before reuse, so the common case (the server's keep-alive timeout) reconnects
        without sending a request twice.
        """
        if self._buffer:
            return True  # bytes nobody asked for
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def exchange(self, request: bytes, deadline: float) -> tuple[FastResponse, bool]:
        """Send one request and read its answer by `deadline` (time.monotonic()); returns it and
        whether to keep the connection. TimeoutError when the deadline passes first.

        Raises StaleConnection when the server had closed the connection before answering anything.
        """
        try:
            self.sock.settimeout(_left(deadline))
            self.sock.sendall(request)  # one deadline for the whole send (Python >= 3.5)
            head = self._head(deadline)
        except (ConnectionResetError, BrokenPipeError) as exc:
            if self._buffer:
                raise
            raise StaleConnection from exc
        status, headers = parse_head(head)
        while 100 <= status < 200:  # interim answers (100 Continue, 103 Early Hints) precede the real one
            try:
                status, headers = parse_head(self._head(deadline))
            except StaleConnection as exc:  # the server has seen this request: never send it again
                raise ValueError("answer cut short") from exc
        kind, size = framing(status, headers, head_only=False)
        if kind == "none":
            body = b""
        elif kind == "length":
            body = self._exactly(size, deadline)
        elif kind == "chunked":
            body = self._chunked(deadline)
        else:
            return FastResponse(status, self._until_close(deadline), headers), False
        # Bytes beyond the answer are a server misbehaving: never reuse such a connection.
        return FastResponse(status, body, headers), keeps_alive(headers) and not self._buffer

    def _fill(self, deadline: float) -> bool:
        """Receive what has arrived, waiting at most until the deadline; False at the end of the connection."""
        self.sock.settimeout(_left(deadline))
        data = self.sock.recv(_RECV_BYTES)
        self._buffer += data
        return bool(data)

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _head(self, deadline: float) -> bytes:
        searched = 0
        while (end := self._buffer.find(HEAD_END, searched)) < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise ValueError("answer head too long")
            searched = max(0, len(self._buffer) - 3)
            if not self._fill(deadline):
                if not self._buffer:
                    raise StaleConnection
                raise ValueError("answer cut short")
        return self._take(end + len(HEAD_END))

    def _line(self, deadline: float) -> bytes:
        while (end := self._buffer.find(b"\r\n")) < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise ValueError("line too long")
            if not self._fill(deadline):
                raise ValueError("answer cut short")
        return self._take(end + 2)

    def _exactly(self, size: int, deadline: float) -> bytes:
        while len(self._buffer) < size:
            if not self._fill(deadline):
                raise ValueError("answer cut short")
        return self._take(size)

    def _chunked(self, deadline: float) -> bytes:
        parts: list[bytes] = []
        total = 0
        while size := chunk_size(self._line(deadline)):
            total += size
            if total > MAX_BODY_BYTES:
                raise ValueError("response body too large")
            parts.append(self._exactly(size, deadline))
            if self._exactly(2, deadline) != b"\r\n":
                raise ValueError("malformed chunk")
        while self._line(deadline) != b"\r\n":  # trailers, up to a blank line
            pass
        return b"".join(parts)

    def _until_close(self, deadline: float) -> bytes:
        """No framing: the body runs until the server closes the connection."""
        while self._fill(deadline):
            if len(self._buffer) > MAX_BODY_BYTES:
                raise ValueError("response body too large")
        return self._take(len(self._buffer))
