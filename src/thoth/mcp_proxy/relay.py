"""The protocol layer of the proxy, the same for every transport: one client, one upstream server.

Client -> upstream: `tools/call` is checked first (governance.check) and forwarded only when
allowed; a BLOCK answers the client with a tool error carrying the reason. Everything else
(initialize, resources, prompts, completions, pings, notifications, progress, cancellation,
the client's answers to the server's own requests) is forwarded as sent.

Upstream -> client: the answer to a forwarded call is recorded as the call's output before it is
passed on, an answer to `tools/list` loses the tools this agent may never use, and everything
else is passed on as sent.

Failures answer the client and keep the relay serving: a malformed or oversized message gets a
JSON-RPC error; an upstream that exits fails its open requests (error -32001) and is started
again (its initialize replayed) at the next message; an upstream that does not answer within
`timeout` seconds fails that request (-32002), is told to cancel it, and its late answer is
dropped. Each forwarded call is recorded exactly once, whichever of these ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from thoth.mcp_proxy import jsonrpc
from thoth.mcp_proxy.governance import Governance, Verdict

log = logging.getLogger("thoth.mcp_proxy")

Send = Callable[[dict[str, Any]], Awaitable[None]]


class Upstream(Protocol):
    """An MCP server the relay forwards to. `start` (re)connects; messages from it reach the
    relay through relay.from_upstream, its end through relay.upstream_gone."""

    name: str

    async def start(self) -> None: ...

    async def send(self, message: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


class UpstreamGone(Exception):
    """The upstream cannot take a message (its process exited, its connection failed)."""


@dataclass
class _Pending:
    """A client request the upstream has not answered yet."""

    method: str
    verdict: Verdict | None = None  # a governed tools/call: its outcome is recorded once
    timer: asyncio.TimerHandle | None = None
    progress_token: Any = None
    progress_offset: int = 0  # progress notices the proxy sent while the call was held


@dataclass
class _Held:
    """A tools/call waiting for its verdict (a step-up may take minutes)."""

    task: asyncio.Task[None]
    progress_token: Any = None
    notices: int = field(default=0)


class Relay:
    def __init__(self, governance: Governance, upstream: Upstream, to_client: Send, *, session_id: str,
                 agent_id: str | None = None, timeout: float = 300.0, progress_interval: float = 5.0) -> None:
        self.governance = governance
        self.upstream = upstream
        self.to_client = to_client
        self.session_id = session_id
        self.agent_id = agent_id
        self.timeout = timeout
        self.progress_interval = progress_interval
        self._pending: dict[Any, _Pending] = {}
        self._held: dict[Any, _Held] = {}
        self._initialize: dict[str, Any] | None = None  # replayed to a restarted upstream
        self._initialized: dict[str, Any] | None = None
        self._live = False
        self._restart_lock = asyncio.Lock()
        self._reinit: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- client -> upstream -------------------------------------------------------------------
    async def from_client(self, raw: bytes | str) -> None:
        try:
            message = jsonrpc.parse(raw)
        except jsonrpc.BadMessage as exc:
            await self.to_client(exc.error)
            return
        await self.handle_client(message)

    async def handle_client(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        msg_id = message.get("id")
        if method == "tools/call" and msg_id is not None:
            self._start_held(message)
            return
        if method == "notifications/cancelled" and self._cancel_held(message):
            return  # the upstream never saw the request: nothing to tell it
        if method == "initialize":
            self._initialize = message
        elif method == "notifications/initialized":
            self._initialized = message
        if jsonrpc.is_request(message):
            self._track(msg_id, _Pending(str(method), progress_token=_progress_token(message)))
        await self._forward(message)

    async def _forward(self, message: dict[str, Any]) -> None:
        msg_id = message.get("id") if jsonrpc.is_request(message) else None
        try:
            await self._ensure_live()
            await self.upstream.send(message)
        except UpstreamGone as exc:
            self._live = False
            if msg_id is not None:
                await self._fail(msg_id, jsonrpc.UPSTREAM_UNAVAILABLE, f"upstream '{self.upstream.name}' is "
                                 f"unavailable: {exc}")

    def _track(self, msg_id: Any, pending: _Pending) -> None:
        pending.timer = asyncio.get_running_loop().call_later(self.timeout, self._expire, msg_id)
        self._pending[msg_id] = pending

    # ---- governed calls ---------------------------------------------------------------------------
    def _start_held(self, message: dict[str, Any]) -> None:
        msg_id = message["id"]
        task = asyncio.create_task(self._govern(message))
        self._held[msg_id] = _Held(task, _progress_token(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _govern(self, message: dict[str, Any]) -> None:
        msg_id = message["id"]
        params = message.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        arguments = params.get("arguments", {}) if isinstance(params, dict) else None
        if not isinstance(name, str) or not isinstance(arguments, dict | None):
            self._held.pop(msg_id, None)
            await self.to_client(jsonrpc.error(msg_id, jsonrpc.INVALID_PARAMS,
                                               "tools/call needs params.name (a string) and params.arguments "
                                               "(an object)"))
            return
        held = self._held[msg_id]
        notifier = asyncio.create_task(self._notify_while_held(msg_id, held)) if held.progress_token is not None \
            else None
        try:
            verdict = await self.governance.check(agent_id=self.agent_id, session_id=self.session_id,
                                                  server=self.upstream.name, tool=name, arguments=arguments or {},
                                                  meta=params.get("_meta") if isinstance(params, dict) else None)
        except asyncio.CancelledError:
            return  # cancelled by the client while held: never forwarded
        except Exception as exc:  # noqa: BLE001 - the client gets an answer whatever failed
            log.exception("governing %s failed", name)
            self._held.pop(msg_id, None)
            await self.to_client(jsonrpc.error(msg_id, jsonrpc.INTERNAL_ERROR, f"the proxy could not check "
                                               f"this call with Thoth: {type(exc).__name__}"))
            return
        finally:
            if notifier is not None:
                notifier.cancel()
        if self._held.pop(msg_id, None) is None:
            return  # cancelled just as the verdict came
        if not verdict.allowed:
            await self.to_client(jsonrpc.tool_error(msg_id, verdict.reason))
            return
        if verdict.arguments != (arguments or {}) and isinstance(params, dict):  # MODIFY: policy's arguments
            message = {**message, "params": {**params, "arguments": verdict.arguments}}
        self._track(msg_id, _Pending("tools/call", verdict, progress_token=held.progress_token,
                                     progress_offset=held.notices))
        await self._forward(message)

    async def _notify_while_held(self, msg_id: Any, held: _Held) -> None:
        """Progress notices while a call waits for a human: the client's own timeout (reset by
        progress in the SDKs that support it) does not run out, and a user sees why it waits."""
        while True:  # the first notice after one interval: a call allowed at once sends none
            await asyncio.sleep(self.progress_interval)
            held.notices += 1
            await self.to_client({"jsonrpc": "2.0", "method": "notifications/progress", "params": {
                "progressToken": held.progress_token, "progress": held.notices,
                "message": "held by Thoth: waiting for a human to approve this call"}})

    def _cancel_held(self, message: dict[str, Any]) -> bool:
        params = message.get("params")
        request_id = params.get("requestId") if isinstance(params, dict) else None
        held = self._held.pop(request_id, None)
        if held is None:
            return False
        held.task.cancel()
        return True

    # ---- upstream -> client -------------------------------------------------------------------
    async def from_upstream(self, message: dict[str, Any]) -> None:
        if jsonrpc.is_response(message):
            msg_id = message.get("id")
            waiter = self._reinit.pop(msg_id, None)
            if waiter is not None:
                if not waiter.done():
                    waiter.set_result(message)
                return
            pending = self._pending.pop(msg_id, None)
            if pending is None:
                return  # answered already (timed out, upstream restarted): dropped, never twice
            if pending.timer is not None:
                pending.timer.cancel()
            if pending.method == "tools/list":
                message = await self._filtered(message)
            elif pending.verdict is not None:
                record_answer(pending.verdict, message)
        elif message.get("method") == "notifications/progress":
            message = self._progress_seen(message)
        await self.to_client(message)

    async def _filtered(self, message: dict[str, Any]) -> dict[str, Any]:
        result = message.get("result")
        if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
            return message
        tools = await self.governance.visible(self.agent_id, self.upstream.name, result["tools"],
                                              session_id=self.session_id)
        if len(tools) == len(result["tools"]):
            return message
        return {**message, "result": {**result, "tools": tools}}

    def _progress_seen(self, message: dict[str, Any]) -> dict[str, Any]:
        """Progress on a forwarded request restarts its clock (a long tool that reports progress
        is alive; the MCP spec lets a client reset its timeout so). After the proxy's own notices
        of a hold, the server's progress is shifted past them: progress only ever increases."""
        params = message.get("params")
        token = params.get("progressToken") if isinstance(params, dict) else None
        if token is None:
            return message
        for msg_id, pending in self._pending.items():
            if pending.progress_token != token:
                continue
            if pending.timer is not None:
                pending.timer.cancel()
                pending.timer = asyncio.get_running_loop().call_later(self.timeout, self._expire, msg_id)
            offset = pending.progress_offset
            assert isinstance(params, dict)
            if offset and isinstance(params.get("progress"), int | float):
                shifted = {**params, "progress": params["progress"] + offset}
                if isinstance(params.get("total"), int | float):
                    shifted["total"] = params["total"] + offset
                return {**message, "params": shifted}
        return message

    # ---- failures -------------------------------------------------------------------------------
    def _expire(self, msg_id: Any) -> None:
        task = asyncio.ensure_future(self._timed_out(msg_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _timed_out(self, msg_id: Any) -> None:
        if msg_id not in self._pending:
            return
        await self._fail(msg_id, jsonrpc.UPSTREAM_TIMEOUT,
                         f"upstream '{self.upstream.name}' did not answer within {self.timeout:g} s")
        with contextlib.suppress(UpstreamGone):
            await self.upstream.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                      "params": {"requestId": msg_id, "reason": "timed out at the proxy"}})

    async def _fail(self, msg_id: Any, code: int, text: str) -> None:
        pending = self._pending.pop(msg_id, None)
        if pending is not None:
            if pending.timer is not None:
                pending.timer.cancel()
            if pending.verdict is not None:
                self.governance.record(pending.verdict, error=text)
        await self.to_client(jsonrpc.error(msg_id, code, text))

    async def upstream_gone(self, why: str) -> None:
        """The upstream ended: every request it had not answered fails now, once."""
        self._live = False
        for waiter in self._reinit.values():
            if not waiter.done():
                waiter.set_exception(UpstreamGone(why))
        for msg_id in list(self._pending):
            await self._fail(msg_id, jsonrpc.UPSTREAM_UNAVAILABLE, f"upstream '{self.upstream.name}' ended: {why}")

    async def _ensure_live(self) -> None:
        if self._live:
            return
        async with self._restart_lock:
            if self._live:
                return
            await self.upstream.start()
            self._live = True
            if self._initialize is not None:
                await self._replay_initialize()

    async def _replay_initialize(self) -> None:
        """A restarted upstream is a new MCP session: it gets the client's initialize again (its
        answer stays here: the client already has one) before any other message."""
        assert self._initialize is not None
        replay_id = f"thoth-proxy-reinitialize-{id(self)}-{len(self._tasks)}"
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._reinit[replay_id] = waiter
        await self.upstream.send({**self._initialize, "id": replay_id})
        try:
            await asyncio.wait_for(waiter, self.timeout)
        except (TimeoutError, UpstreamGone) as exc:
            self._live = False
            raise UpstreamGone(f"it did not answer initialize again: {exc}") from None
        finally:
            self._reinit.pop(replay_id, None)
        if self._initialized is not None:
            await self.upstream.send(self._initialized)

    def mark_live(self) -> None:
        """The transport started the upstream itself (at the relay's start)."""
        self._live = True

    async def close(self) -> None:
        for held in self._held.values():
            held.task.cancel()
        for pending in self._pending.values():
            if pending.timer is not None:
                pending.timer.cancel()
            if pending.verdict is not None:
                self.governance.record(pending.verdict, error="the proxy closed before the upstream answered")
        self._pending.clear()
        for task in list(self._tasks):
            task.cancel()


def _progress_token(message: dict[str, Any]) -> Any:
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    return meta.get("progressToken") if isinstance(meta, dict) else None


def record_answer(verdict: Verdict, message: dict[str, Any]) -> None:
    """The upstream's answer to a governed call, as its outcome: a result, or an error."""
    if "error" in message:
        err = message["error"]
        text = err.get("message") if isinstance(err, dict) else None
        Governance.record(verdict, error=str(text or err))
        return
    result = message.get("result")
    if isinstance(result, dict) and result.get("isError"):
        Governance.record(verdict, error=_text_of(result) or "the tool reported an error")
        return
    Governance.record(verdict, result=result)


def _text_of(result: dict[str, Any]) -> str:
    content = result.get("content")
    if isinstance(content, list):
        return " ".join(c.get("text", "") for c in content if isinstance(c, dict))[:500]
    return ""
