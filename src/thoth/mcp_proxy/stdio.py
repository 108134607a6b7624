"""stdio on both sides: the client talks to the proxy on its stdin/stdout, the proxy talks to the
wrapped server (a subprocess) on its pipes. Messages are newline-delimited JSON (MCP stdio)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from thoth.mcp_proxy import jsonrpc
from thoth.mcp_proxy.governance import Governance
from thoth.mcp_proxy.relay import Relay, UpstreamGone

log = logging.getLogger("thoth.mcp_proxy")
_CHUNK = 64 * 1024


async def lines(reader: asyncio.StreamReader, too_long: Callable[[int], Awaitable[None]]) -> AsyncIterator[bytes]:
    """The lines of `reader`; a line over the message limit is skipped whole (`too_long` is told its
    size so far) instead of being buffered: one oversized message does not end the stream."""
    buffer = bytearray()
    skipping = 0
    while True:
        chunk = await reader.read(_CHUNK)
        if not chunk:
            if buffer.strip() and not skipping:
                yield bytes(buffer)
            return
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
            if skipping:
                skipping = 0
            else:
                buffer += chunk[start:end]
                if buffer.strip():
                    yield bytes(buffer)
            buffer.clear()
            start = end + 1
        rest = chunk[start:]
        if skipping:
            skipping += len(rest)
        elif len(buffer) + len(rest) > jsonrpc.MAX_MESSAGE_BYTES:
            skipping = len(buffer) + len(rest)
            buffer.clear()
            await too_long(skipping)
        else:
            buffer += rest


def upstream_environment(extra: dict[str, str] | None) -> dict[str, str]:
    """The wrapped server's environment: the proxy's, less its Thoth credentials (a server never
    gets the key the proxy uses to ask Thoth), plus the upstream's own settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("THOTH_")}
    env.update(extra or {})
    return env


class StdioUpstream:
    """A local MCP server run as a subprocess; started again when it has exited."""

    def __init__(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.relay: Relay | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.close()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                env=upstream_environment(self.env), limit=_CHUNK)
        except OSError as exc:
            raise UpstreamGone(f"could not start {self.command[0]!r}: {exc}") from None
        self._reader = asyncio.create_task(self._read(self._proc))

    async def send(self, message: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            raise UpstreamGone("it is not running")
        try:
            proc.stdin.write(jsonrpc.dumps(message).encode() + b"\n")
            await proc.stdin.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise UpstreamGone(f"its input is closed ({exc})") from None

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None and self.relay is not None

        async def too_long(size: int) -> None:
            log.warning("upstream %s sent a message over %d bytes; dropped", self.name, size)

        async for line in lines(proc.stdout, too_long):
            try:
                message = jsonrpc.parse(line)
            except jsonrpc.BadMessage as exc:
                log.warning("upstream %s sent a malformed message (%s); dropped", self.name, exc)
                continue
            await self.relay.from_upstream(message)
        code = await proc.wait()
        if proc is self._proc:
            await self.relay.upstream_gone(f"its process exited with code {code}")

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._reader = None


async def serve_stdio(governance: Governance, upstream: StdioUpstream, *, agent_id: str | None = None,
                      session_id: str | None = None, timeout: float = 300.0,
                      progress_interval: float = 5.0) -> None:
    """Relay this process's stdin/stdout to `upstream` until the client closes stdin."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_CHUNK)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    out = sys.stdout.buffer

    async def to_client(message: dict[str, Any]) -> None:
        out.write(jsonrpc.dumps(message).encode() + b"\n")  # one write per message: never interleaved
        out.flush()

    relay = Relay(governance, upstream, to_client, session_id=session_id or f"mcp-{uuid.uuid4().hex}",
                  agent_id=agent_id, timeout=timeout, progress_interval=progress_interval)
    upstream.relay = relay
    await upstream.start()
    relay.mark_live()

    async def too_long(size: int) -> None:
        await to_client(jsonrpc.error(None, jsonrpc.INVALID_REQUEST, f"message over {size} bytes is over the "
                                      f"proxy's limit of {jsonrpc.MAX_MESSAGE_BYTES} bytes"))

    try:
        async for line in lines(reader, too_long):
            await relay.from_client(line)
    finally:
        await relay.close()
        await upstream.close()
        await asyncio.to_thread(governance.flush)


async def serve_stdio_hub(governance: Governance, upstreams: list[StdioUpstream], *, agent_id: str | None = None,
                          timeout: float = 300.0, progress_interval: float = 5.0) -> None:
    """Several wrapped servers behind this process's stdin/stdout, as one (thoth.mcp_proxy.hub)."""
    from thoth.mcp_proxy.hub import Hub

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_CHUNK)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    out = sys.stdout.buffer

    async def to_client(message: dict[str, Any]) -> None:
        out.write(jsonrpc.dumps(message).encode() + b"\n")
        out.flush()

    hub = Hub(to_client)
    session_id = f"mcp-{uuid.uuid4().hex}"
    for upstream in upstreams:
        relay = Relay(governance, upstream, hub.sink(upstream.name), session_id=session_id, agent_id=agent_id,
                      timeout=timeout, progress_interval=progress_interval)
        upstream.relay = relay
        hub.relays[upstream.name] = relay
        await upstream.start()
        relay.mark_live()

    async def too_long(size: int) -> None:
        await to_client(jsonrpc.error(None, jsonrpc.INVALID_REQUEST, f"message over {size} bytes is over the "
                                      f"proxy's limit of {jsonrpc.MAX_MESSAGE_BYTES} bytes"))

    try:
        async for line in lines(reader, too_long):
            await hub.from_client(line)
    finally:
        await hub.close()
        for upstream in upstreams:
            await upstream.close()
        await asyncio.to_thread(governance.flush)
