"""A TCP proxy that can partition: `python partition_proxy.py UPSTREAM_PORT` prints its own port,
forwards 127.0.0.1:port to 127.0.0.1:UPSTREAM_PORT, partitions on SIGUSR1 and heals on SIGUSR2.

While partitioned it still accepts connections but moves no byte either way (a network that
drops packets, not one that resets): the server's open connections hang rather than fail.
Healing lets the held bytes through. Run as its own process by tests/chaos/harness.ProxyProcess.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import threading


class PartitionProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.flowing = threading.Event()
        self.flowing.set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]

    def serve(self) -> None:
        while True:
            client, _ = self._listener.accept()
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self.flowing.wait()  # a connection made during the partition reaches nothing until it heals
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                self.flowing.wait()  # partitioned: hold the bytes (and stop reading) until healed
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def main() -> None:
    proxy = PartitionProxy(int(sys.argv[1]))
    signal.signal(signal.SIGUSR1, lambda *_: proxy.flowing.clear())
    signal.signal(signal.SIGUSR2, lambda *_: proxy.flowing.set())
    print(proxy.port, flush=True)
    proxy.serve()


if __name__ == "__main__":
    main()
