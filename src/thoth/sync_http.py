"""A keep-alive HTTP/1.1 connection on a blocking socket: the sync enforce call and the event batches.

http.client parses every answer's headers with the email package; on loopback that is more than
half of its 0.22-0.25 ms round trip, while the same exchange on a bare socket takes ~0.1 ms
(bench/bench_sdk_overhead.py). Framing is shared with the async client (thoth.http1). Each
thread owns its connection (see `Endpoint.post_bytes`), so nothing here is shared or locked.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time

from thoth.http1 import (
    MAX_BODY_BYTES,
    FastResponse,
    StaleConnection,
    chunk_size,
    framing,
    keeps_alive,
    parse_head,
)

_MAX_HEAD_LINE = 65536


class SyncConnection:
    def __init__(self, host: str, port: int, timeout: float, ssl_context: ssl.SSLContext | None = None) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one small write per request
            if ssl_context is not None:
                sock = ssl_context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.rfile = sock.makefile("rb")
        self.used = False  # has carried a request: a failure before any answer may be a stale keep-alive

    def idle_closed(self) -> bool:
        """True when the server closed (or wrote to) this idle connection: do not send on it.

        Checked before reuse, so the common case (the server's keep-alive timeout) reconnects
        without sending a request twice.
        """
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.rfile.close()
        with contextlib.suppress(OSError):
            self.sock.close()

    def exchange(self, request: bytes, timeout: float) -> tuple[FastResponse, bool]:
        """Send one request and read its answer within `timeout` s; returns it and whether to keep the connection.

        Raises StaleConnection when the server had closed the connection before answering anything.
        """
        deadline = time.monotonic() + timeout
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(request)
            self._budget(deadline)
            first = self.rfile.readline(_MAX_HEAD_LINE)
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise StaleConnection from exc
        if not first:
            raise StaleConnection
        status, headers = parse_head(self._rest_of_head(first, deadline))
        while 100 <= status < 200:  # interim answers (100 Continue, 103 Early Hints) precede the real one
            status, headers = parse_head(self._rest_of_head(self._line(deadline), deadline))
        kind, size = framing(status, headers, head_only=False)
        if kind == "none":
            return FastResponse(status, b""), keeps_alive(headers)
        if kind == "length":
            return FastResponse(status, self._exactly(size, deadline)), keeps_alive(headers)
        if kind == "chunked":
            return FastResponse(status, self._chunked(deadline)), keeps_alive(headers)
        self._budget(deadline)
        body = self.rfile.read(MAX_BODY_BYTES + 1)  # no framing: the body runs until the close
        if len(body) > MAX_BODY_BYTES:
            raise ValueError("response body too large")
        return FastResponse(status, body), False

    def _budget(self, deadline: float) -> None:
        """Each blocking read gets what is left of the call's deadline, not a fresh timeout."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out")
        self.sock.settimeout(remaining)

    def _line(self, deadline: float) -> bytes:
        self._budget(deadline)
        line = self.rfile.readline(_MAX_HEAD_LINE)
        if not line.endswith(b"\r\n"):
            raise ValueError("answer cut short or a header line too long")
        return line

    def _rest_of_head(self, first: bytes, deadline: float) -> bytes:
        lines = [first]
        while lines[-1] != b"\r\n":
            lines.append(self._line(deadline))
            if len(lines) > 200:
                raise ValueError("too many header lines")
        return b"".join(lines)

    def _exactly(self, size: int, deadline: float) -> bytes:
        self._budget(deadline)
        data = self.rfile.read(size)
        if len(data) != size:
            raise ValueError("answer cut short")
        return data

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
