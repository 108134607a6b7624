"""A raw-socket HTTP/1.1 server whose framing and connection handling each test chooses.

The wire-contract server always answers with Content-Length on a connection it keeps open; this
one answers with exactly the bytes a test asks for (chunked bodies, no framing at all, a close
right after the answer without saying so, a late answer), to test the SDK's own HTTP client.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable

# (request head bytes) -> (raw response bytes, close the connection afterwards, delay before answering)
Responder = Callable[[bytes], tuple[bytes, bool, float]]


def json_answer(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"{extra}\r\n").encode() + body


def chunked_answer(body: bytes, pieces: int = 3) -> bytes:
    step = max(1, len(body) // pieces)
    out = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    for i in range(0, len(body), step):
        chunk = body[i:i + step]
        out += f"{len(chunk):x};ext=1\r\n".encode() + chunk + b"\r\n"
    return out + b"0\r\nx-trailer: yes\r\n\r\n"


class RawHttpServer:
    def __init__(self, responder: Responder, ssl_context: ssl.SSLContext | None = None) -> None:
        self.responder = responder
        self.ssl_context = ssl_context
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.connections = 0
        self.open_now = 0
        self.most_open = 0  # the most connections open at the same time
        self._lock = threading.Lock()
        self.requests: list[bytes] = []
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        if self.ssl_context is not None:
            try:
                conn = self.ssl_context.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):  # e.g. the client refused our certificate
                conn.close()
                return
        with self._lock:
            self.open_now += 1
            self.most_open = max(self.most_open, self.open_now)
        try:
            self._exchange(conn)
        finally:
            with self._lock:
                self.open_now -= 1

    def _exchange(self, conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                buffer = buffer[length:]
                self.requests.append(head)
                answer, close, delay = self.responder(head)
                if delay:
                    time.sleep(delay)
                with contextlib.suppress(OSError):
                    conn.sendall(answer)
                if close:
                    with contextlib.suppress(OSError):
                        conn.shutdown(socket.SHUT_RDWR)
                    return

    def close(self) -> None:
        self._closing = True
        self._sock.close()
