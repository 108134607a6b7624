"""Streamable HTTP on both sides: the proxy listens at /mcp and forwards to the upstream's URL.

The proxy works at the HTTP level so that sessions (Mcp-Session-Id), server-sent-event streams,
resumption (Last-Event-ID), the server's own requests and DELETE pass through as the upstream
sends them; it reads only what it governs: a POSTed tools/call (checked before it is forwarded),
the answer to it (recorded) and the answer to tools/list (filtered).

The listener never runs open: a caller presents a configured token (Authorization: Bearer),
which also names the agent. That token stays here: the upstream gets only its own configured
headers (the MCP authorization specification forbids passing a client's token through).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from thoth.mcp_proxy import jsonrpc
from thoth.mcp_proxy.config import ConfigError, ProxySettings, UpstreamSpec
from thoth.mcp_proxy.governance import Governance, Verdict
from thoth.mcp_proxy.relay import record_answer

log = logging.getLogger("thoth.mcp_proxy")

# Headers of the MCP transport passed between client and upstream; nothing else is (never the
# client's Authorization, cookies or forwarding headers).
_TO_UPSTREAM = ("accept", "content-type", "mcp-session-id", "mcp-protocol-version", "last-event-id")
_TO_CLIENT = ("content-type", "mcp-session-id", "cache-control")


class HttpProxy:
    def __init__(self, governance: Governance, upstream: UpstreamSpec, tokens: dict[str, str | None], *,
                 timeout: float = 300.0, progress_interval: float = 5.0, thoth_keys: bool = False,
                 client: httpx.AsyncClient | None = None) -> None:
        if thoth_keys and governance.api_url is None:
            raise ConfigError("--thoth-keys needs a Thoth server to check keys (not api_url 'local')")
        if not tokens and not thoth_keys:
            raise ConfigError("the HTTP listener needs at least one token (--token-env NAME or [listen] tokens) "
                              "or --thoth-keys: it never runs as an open proxy")
        assert upstream.url is not None
        self.governance = governance
        self.upstream = upstream
        self.url: str = upstream.url
        self.tokens = tokens
        self.timeout = timeout
        self.progress_interval = progress_interval
        self.client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=10.0))
        self.thoth_keys = thoth_keys
        self._valid_keys: dict[str, float] = {}  # a caller's Thoth key -> when its check expires
        self._held: dict[tuple[str, Any], asyncio.Task[Verdict]] = {}
        self.app = Starlette(routes=[Route("/mcp", self.endpoint, methods=["GET", "POST", "DELETE"])])

    # ---- the endpoint ---------------------------------------------------------------------------
    async def endpoint(self, request: Request) -> Response:
        found, agent, thoth_key = await self._caller(request)
        if not found:
            return JSONResponse({"message": "a token is required: Authorization: Bearer <token>"}, status_code=401,
                                headers={"www-authenticate": "Bearer"})
        request.state.thoth_caller = (agent, thoth_key, request.headers.get("mcp-session-id") or "")
        if request.method != "POST":
            return await self._pass(request)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > jsonrpc.MAX_MESSAGE_BYTES:
            return _rpc_error(None, jsonrpc.INVALID_REQUEST, f"message of {declared} bytes is over the proxy's "
                              f"limit of {jsonrpc.MAX_MESSAGE_BYTES} bytes", 413)
        body = await _read_capped(request)
        if body is None:
            return _rpc_error(None, jsonrpc.INVALID_REQUEST,
                              f"message over the proxy's limit of {jsonrpc.MAX_MESSAGE_BYTES} bytes", 413)
        try:
            message = jsonrpc.parse(body)
        except jsonrpc.BadMessage as exc:
            return JSONResponse(exc.error, status_code=400)
        session = request.headers.get("mcp-session-id") or "no-session"
        method, msg_id = message.get("method"), message.get("id")
        if method == "notifications/cancelled":
            params = message.get("params")
            held = self._held.pop((session, params.get("requestId") if isinstance(params, dict) else None), None)
            if held is not None:
                held.cancel()  # never forwarded: the upstream never saw the call
                return Response(status_code=202)
        if method == "tools/call" and msg_id is not None:
            return await self._tools_call(request, message, session, agent, thoth_key)
        return await self._forward(request, body, message)

    async def _caller(self, request: Request) -> tuple[bool, str | None, str | None]:
        """(known, its agent, the caller's Thoth key when that is the credential)."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False, None, None
        for known, agent in self.tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return True, agent, None
        if self.thoth_keys and await self._is_thoth_key(token):
            return True, None, token
        return False, None, None

    async def _is_thoth_key(self, key: str) -> bool:
        """Thoth knows this data-plane key: a hold lookup with it is answered 404 (unknown hold),
        not 401/403. No side effect on the server; a yes is kept for a minute."""
        now = time.monotonic()
        if self._valid_keys.get(key, 0.0) > now:
            return True
        try:
            answer = await self.client.get(f"{self.governance.api_url}/v1/enforce/hold/mcp-proxy-key-check",
                                           headers={"x-api-key": key}, timeout=10.0)
        except httpx.HTTPError:
            return False
        if answer.status_code != 404:
            return False
        if len(self._valid_keys) > 1024:
            self._valid_keys.clear()
        self._valid_keys[key] = now + 60.0
        return True

    # ---- governed calls ---------------------------------------------------------------------------
    async def _tools_call(self, request: Request, message: dict[str, Any], session: str,
                          agent: str | None, thoth_key: str | None) -> Response:
        msg_id = message["id"]
        params = message.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        arguments = params.get("arguments", {}) if isinstance(params, dict) else None
        if not isinstance(name, str) or not isinstance(arguments, dict | None):
            return _rpc_error(msg_id, jsonrpc.INVALID_PARAMS,
                              "tools/call needs params.name (a string) and params.arguments (an object)")
        task = asyncio.create_task(self.governance.check(
            agent_id=agent, session_id=session, server=self.upstream.name, tool=name, arguments=arguments or {},
            api_key=thoth_key, meta=params.get("_meta") if isinstance(params, dict) else None))
        self._held[(session, msg_id)] = task
        token = _progress_token(message)
        wants_stream = "text/event-stream" in request.headers.get("accept", "")
        if token is not None and wants_stream:
            return StreamingResponse(self._held_stream(request, message, session, task, token),
                                     media_type="text/event-stream", headers={"cache-control": "no-cache"})
        verdict = await self._verdict(session, msg_id, task)
        if verdict is None:
            return _rpc_error(msg_id, jsonrpc.INTERNAL_ERROR, "the call was cancelled while held")
        if not verdict.allowed:
            return JSONResponse(jsonrpc.tool_error(msg_id, verdict.reason))
        return await self._forward(request, _body_with(message, verdict, arguments), message, verdict)

    async def _verdict(self, session: str, msg_id: Any, task: asyncio.Task[Verdict]) -> Verdict | None:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                return None
            task.cancel()  # the client went away: its hold is abandoned, never forwarded
            raise
        finally:
            self._held.pop((session, msg_id), None)

    async def _held_stream(self, request: Request, message: dict[str, Any], session: str,
                           task: asyncio.Task[Verdict], token: Any) -> AsyncIterator[bytes]:
        """A held call whose client asked for progress: notices while it waits, then the answer."""
        msg_id = message["id"]
        notices = 0
        while not task.done():
            done, _ = await asyncio.wait({task}, timeout=self.progress_interval)
            if done:
                break
            notices += 1
            yield _sse({"jsonrpc": "2.0", "method": "notifications/progress", "params": {
                "progressToken": token, "progress": notices,
                "message": "held by Thoth: waiting for a human to approve this call"}})
        verdict = await self._verdict(session, msg_id, task)
        if verdict is None:
            return
        if not verdict.allowed:
            yield _sse(jsonrpc.tool_error(msg_id, verdict.reason))
            return
        params = message.get("params") or {}
        response = await self._forward(request, _body_with(message, verdict, params.get("arguments")), message,
                                       verdict)
        if isinstance(response, StreamingResponse):
            async for chunk in response.body_iterator:
                yield chunk if isinstance(chunk, bytes) else str(chunk).encode()
        else:
            yield b"event: message\ndata: " + bytes(response.body) + b"\n\n"

    # ---- forwarding -----------------------------------------------------------------------------
    def _upstream_headers(self, request: Request) -> dict[str, str]:
        headers = {k: v for k, v in request.headers.items() if k.lower() in _TO_UPSTREAM}
        headers.update(self.upstream.headers)  # the upstream's own credentials, nothing of the caller's
        return headers

    async def _forward(self, request: Request, body: bytes, message: dict[str, Any],
                       verdict: Verdict | None = None) -> Response:
        msg_id = message.get("id") if jsonrpc.is_request(message) else None
        caller: tuple[str | None, str | None, str] = getattr(request.state, "thoth_caller", (None, None, ""))
        try:
            upstream = await self.client.send(
                self.client.build_request("POST", self.url, content=body, headers=self._upstream_headers(request)),
                stream=True)
        except httpx.TimeoutException:
            return self._failed(msg_id, verdict, jsonrpc.UPSTREAM_TIMEOUT,
                                f"upstream '{self.upstream.name}' did not answer within {self.timeout:g} s")
        except httpx.HTTPError as exc:
            return self._failed(msg_id, verdict, jsonrpc.UPSTREAM_UNAVAILABLE,
                                f"upstream '{self.upstream.name}' is unavailable: {type(exc).__name__}")
        headers = {k: v for k, v in upstream.headers.items() if k.lower() in _TO_CLIENT}
        kind = upstream.headers.get("content-type", "")
        if kind.startswith("text/event-stream"):
            return StreamingResponse(self._events(upstream, message, verdict, caller), status_code=upstream.status_code,
                                     headers=headers)
        try:
            content = await upstream.aread()
        except httpx.HTTPError as exc:
            return self._failed(msg_id, verdict, jsonrpc.UPSTREAM_UNAVAILABLE,
                                f"upstream '{self.upstream.name}' broke off its answer: {type(exc).__name__}")
        finally:
            await upstream.aclose()
        answer = _json(content) if msg_id is not None and kind.startswith("application/json") else None
        if answer is not None and answer.get("id") == msg_id:
            content = await self._answered(message, answer, verdict, content, caller)
        elif verdict is not None:
            Governance.record(verdict, error=f"upstream answered HTTP {upstream.status_code}")
            if upstream.status_code >= 400 and not content:
                return _rpc_error(msg_id, jsonrpc.UPSTREAM_UNAVAILABLE,
                                  f"upstream '{self.upstream.name}' answered HTTP {upstream.status_code}")
        return Response(content, status_code=upstream.status_code, headers=headers)

    def _failed(self, msg_id: Any, verdict: Verdict | None, code: int, text: str) -> Response:
        if verdict is not None:
            Governance.record(verdict, error=text)
        if msg_id is None:
            return JSONResponse({"message": text}, status_code=502)
        return _rpc_error(msg_id, code, text)

    async def _answered(self, request: dict[str, Any], answer: dict[str, Any], verdict: Verdict | None,
                        raw: bytes, caller: tuple[str | None, str | None, str]) -> bytes:
        """The upstream's answer to `request`, as the client gets it (recorded, or filtered)."""
        if verdict is not None:
            record_answer(verdict, answer)
            return raw
        if request.get("method") == "tools/list":
            result = answer.get("result")
            if isinstance(result, dict) and isinstance(result.get("tools"), list):
                agent, thoth_key, session = caller
                tools = await self.governance.visible(agent, self.upstream.name, result["tools"], session_id=session,
                                                      api_key=thoth_key)
                if len(tools) != len(result["tools"]):
                    return jsonrpc.dumps({**answer, "result": {**result, "tools": tools}}).encode()
        return raw

    async def _events(self, upstream: httpx.Response, request: dict[str, Any],
                      verdict: Verdict | None, caller: tuple[str | None, str | None, str]) -> AsyncIterator[bytes]:
        """The upstream's event stream, event by event; the answer to the request is read."""
        msg_id = request.get("id") if jsonrpc.is_request(request) else None
        answered = False
        event: list[str] = []
        try:
            async for line in upstream.aiter_lines():
                if line:
                    event.append(line)
                    continue
                if event:
                    out, answered_now = await self._event(event, request, msg_id, verdict, caller)
                    answered = answered or answered_now
                    yield out
                    event = []
        except httpx.HTTPError as exc:
            if msg_id is not None and not answered:
                answered = True
                if isinstance(exc, httpx.TimeoutException):
                    code = jsonrpc.UPSTREAM_TIMEOUT
                    text = f"upstream '{self.upstream.name}' did not answer within {self.timeout:g} s"
                else:
                    code = jsonrpc.UPSTREAM_UNAVAILABLE
                    text = f"upstream '{self.upstream.name}' broke off its answer: {type(exc).__name__}"
                if verdict is not None:
                    Governance.record(verdict, error=text)
                yield _sse(jsonrpc.error(msg_id, code, text))
        finally:
            await upstream.aclose()
            if verdict is not None and not answered:
                Governance.record(verdict, error="the upstream's stream ended without an answer")

    async def _event(self, lines: list[str], request: dict[str, Any], msg_id: Any,
                     verdict: Verdict | None, caller: tuple[str | None, str | None, str]) -> tuple[bytes, bool]:
        raw = ("\n".join(lines) + "\n\n").encode()
        data = "\n".join(line[5:].removeprefix(" ") for line in lines if line.startswith("data:"))
        if msg_id is None or not data:
            return raw, False
        answer = _json(data.encode())
        if answer is None or answer.get("id") != msg_id or not jsonrpc.is_response(answer):
            return raw, False
        content = await self._answered(request, answer, verdict, data.encode(), caller)
        if content is data.encode():
            return raw, True
        kept = [line for line in lines if not line.startswith("data:")]
        return ("\n".join([*kept, "data: " + content.decode()]) + "\n\n").encode(), True

    async def _pass(self, request: Request) -> Response:
        """GET (the server's own stream) and DELETE (end of session), passed through."""
        try:
            upstream = await self.client.send(
                self.client.build_request(request.method, self.url, headers=self._upstream_headers(request),
                                          timeout=httpx.Timeout(None, connect=10.0)), stream=True)
        except httpx.HTTPError as exc:
            return JSONResponse({"message": f"upstream '{self.upstream.name}' is unavailable: "
                                            f"{type(exc).__name__}"}, status_code=502)
        headers = {k: v for k, v in upstream.headers.items() if k.lower() in _TO_CLIENT}

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            except httpx.HTTPError:
                return
            finally:
                await upstream.aclose()

        return StreamingResponse(body(), status_code=upstream.status_code, headers=headers)


async def _read_capped(request: Request) -> bytes | None:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > jsonrpc.MAX_MESSAGE_BYTES:
            return None
    return bytes(body)


def _json(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _sse(message: dict[str, Any]) -> bytes:
    return b"event: message\ndata: " + jsonrpc.dumps(message).encode() + b"\n\n"


def _rpc_error(msg_id: Any, code: int, text: str, status: int = 200) -> Response:
    return JSONResponse(jsonrpc.error(msg_id, code, text), status_code=status)


def _progress_token(message: dict[str, Any]) -> Any:
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    return meta.get("progressToken") if isinstance(meta, dict) else None


def _body_with(message: dict[str, Any], verdict: Verdict, arguments: Any) -> bytes:
    params = message.get("params")
    if verdict.arguments != (arguments or {}) and isinstance(params, dict):  # MODIFY: the policy's arguments
        message = {**message, "params": {**params, "arguments": verdict.arguments}}
    return jsonrpc.dumps(message).encode()


async def serve_http(governance: Governance, settings: ProxySettings) -> None:
    import uvicorn

    spec = settings.upstreams[0]
    if spec.url is None:
        raise ConfigError("--listen forwards to an upstream URL (--upstream URL or url = ... in --config)")
    proxy = HttpProxy(governance, spec, settings.tokens, timeout=settings.timeout,
                      progress_interval=settings.progress_interval, thoth_keys=settings.thoth_keys)
    assert settings.listen is not None
    host, port = settings.listen
    server = uvicorn.Server(uvicorn.Config(proxy.app, host=host, port=port, log_level="warning",
                                           access_log=False, lifespan="off"))
    try:
        await server.serve()
    finally:
        await proxy.client.aclose()
        await asyncio.to_thread(governance.flush)

