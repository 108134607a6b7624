"""A small TCP proxy for fault tests: put it between a server and its database, then cut or stall.

- `cut()`: the database is down. The listening socket is closed (new connections are refused)
  and every open connection is closed (their next read sees the end of the stream).
- `stall()`: a network partition. New connections are accepted but nothing is forwarded, and
  open connections stop forwarding in both directions: bytes sent meanwhile are held (like
  packets a partitioned network keeps retransmitting) and delivered after `heal()`, unless
  an end gave up and closed its side first.
- `lose_answers()`: a partition that falls between a request and its answer. What the clients
  send still reaches the database (a COMMIT commits), what the database sends back is held:
  the client cannot tell whether its transaction committed.
- `heal()`: forward again (listening again on the same port after a cut).

Threads, not asyncio, so a test drives it from plain synchronous code:

    with TcpProxy("127.0.0.1", 5432) as proxy:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
        ...
        proxy.stall(); ...; proxy.heal()
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self._up = threading.Event()  # set: client -> database bytes flow; clear: held
        self._down = threading.Event()  # set: database -> client bytes flow; clear: held
        self._up.set()
        self._down.set()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._closed = False
        self.accepted = 0  # connections accepted so far (for a test's figures)
        self.port = self._listen(port)

    # ---- faults ---------------------------------------------------------------------------

    def cut(self) -> None:
        """Refuse new connections and close the open ones (a stopped database)."""
        self._open_gates()  # pumps blocked on a stall wake up and find their sockets closed
        self._stop_listening()
        self._close_all()

    def stall(self) -> None:
        """Accept connections but forward nothing (a partition: no answer, no error)."""
        self._up.clear()
        self._down.clear()

    def lose_answers(self) -> None:
        """Forward requests, hold the answers (commits happen, their acknowledgements do not arrive)."""
        self._down.clear()

    def heal(self) -> None:
        with self._lock:
            listening = self._listener is not None
        if not listening and not self._closed:
            self._listen(self.port)
        self._open_gates()

    def _open_gates(self) -> None:
        self._up.set()
        self._down.set()

    def close(self) -> None:
        self._closed = True
        self._open_gates()
        self._stop_listening()
        self._close_all()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- plumbing -------------------------------------------------------------------------

    def _listen(self, port: int) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
        with self._lock:
            self._listener = sock
        threading.Thread(target=self._accept, args=(sock,), name="proxy-accept", daemon=True).start()
        return int(sock.getsockname()[1])

    def _stop_listening(self) -> None:
        with self._lock:
            sock, self._listener = self._listener, None
        if sock is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone may not.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _close_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, set()
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # the listener was closed (cut or close)
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(client,), name="proxy-conn", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self._conns.add(client)
        self._up.wait()  # stalled: the client is connected, the database never hears of it
        try:
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
        except OSError:
            self._drop(client)
            return
        with self._lock:
            if client not in self._conns:  # cut while connecting
                upstream.close()
                return
            self._conns.add(upstream)
        threading.Thread(target=self._pump, args=(upstream, client, self._down), name="proxy-down",
                         daemon=True).start()
        self._pump(client, upstream, self._up)

    def _pump(self, src: socket.socket, dst: socket.socket, gate: threading.Event) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                gate.wait()  # held while stalled, delivered on heal
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(src)
            self._drop(dst)

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.discard(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()
