"""A loopback TCP server that misbehaves the way slow or broken servers (and proxies) do.

Every connection gets the same treatment, chosen by the test:

- "drip": reads the request and sends a complete, valid answer one byte every `interval` s
  (no single read ever waits long, so only a deadline over the whole exchange ends it);
- "drip_body": the answer's head at once, then its body one byte every `interval` s;
- "stall_after_headers": the answer's head and the first bytes of its body, then nothing;
- "stall_before_headers": reads the request, then sends nothing, the connection left open;
- "silent": accepts the connection and never reads or writes anything;
- "refused": nothing listens on the port (it stays bound, so nobody else takes it).

Connections are held open until close(), which also ends every drip.
"""

from __future__ import annotations

import contextlib
import socket
import threading

BEHAVIOURS = ("drip", "drip_body", "stall_after_headers", "stall_before_headers", "silent", "refused")


class FaultyServer:
    def __init__(self, behaviour: str, answer: bytes, interval: float = 0.1) -> None:
        assert behaviour in BEHAVIOURS, behaviour
        self.behaviour = behaviour
        self.answer = answer  # the full HTTP answer a healthy server would send
        self.interval = interval
        self.request_lines: list[bytes] = []  # first line of each request read
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        if behaviour == "refused":
            self._sock = socket.socket()
            self._sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        else:
            self._sock = socket.create_server(("127.0.0.1", 0))
            threading.Thread(target=self._accept, daemon=True).start()
        self.port = self._sock.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            if self.behaviour == "silent":
                self._stop.wait()
                return
            self._read_request(conn)
            head_end = self.answer.index(b"\r\n\r\n") + 4
            if self.behaviour == "drip":
                self._drip(conn, self.answer)
            elif self.behaviour == "drip_body":
                conn.sendall(self.answer[:head_end])
                self._drip(conn, self.answer[head_end:])
            elif self.behaviour == "stall_after_headers":
                conn.sendall(self.answer[:head_end + 3])
            self._stop.wait()

    def _drip(self, conn: socket.socket, data: bytes) -> None:
        for i in range(len(data)):
            if self._stop.is_set():
                return
            conn.sendall(data[i:i + 1])
            self._stop.wait(self.interval)

    def _read_request(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                raise OSError("client went away")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        self.request_lines.append(head.split(b"\r\n", 1)[0])
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                raise OSError("client went away")
            body += chunk

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading it
                with contextlib.suppress(OSError):
                    conn.close()
