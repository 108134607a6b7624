"""mcp (the official Python MCP SDK, 2.x): a governed client session.

    async with ClientSession(read, write) as session:
        await session.initialize()
        thoth.instrument(session, agent_id=..., approved_scope=[...], tenant_id=..., mcp_server="mail")
        # or: govern_session(session, tracer, server="mail")
        result = await session.call_tool("delete", {"id": 7})   # checked before the request leaves

What the governed session does (docs/mcp.md, "In the SDK"):
- `call_tool` asks Thoth first, exactly once per call, as tool `name` of MCP server `server`
  (thoth.wire, "MCP tool identity"). BLOCK comes back as an MCP tool error result carrying the
  reason (`is_error=True`): the model reads it and the agent loop goes on (on_block="raise"
  raises ThothPolicyViolation instead). STEP_UP waits for the reviewer as for local tools.
  MODIFY sends the policy's arguments. The tool's result is recorded as the call's output.
- `list_tools` drops the tools this agent may never use (POST /v1/mcp/tools, or the in-process
  policy directly): one request per listing, the answer cached for `list_cache_seconds`.
- An allowed call carries a marker in its request `_meta` (MARKER_KEY): a Thoth proxy between
  this session and the server verifies it with the Thoth server and does not check the call a
  second time (ADR 0403).

The session is patched in place (its type stays ClientSession: frameworks that take a session,
and mcp's own `Client`, keep working; `Client.call_tool` goes through `session.call_tool`).

openai-agents' MCP servers (`Agent(mcp_servers=[...])`) are governed by `govern_mcp_server`,
which `thoth.instrument(agent)` / `thoth.integrations.openai_agents.instrument_agent` call for
each of the agent's MCP servers (its MCP tools are built at run time, so never checked twice).

The proxy (`thoth mcp proxy`) reuses the module-level functions: `govern_call`,
`blocked_result`, `visible_tools` and `filter_tools`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from thoth.exceptions import ThothPolicyViolation
from thoth.integrations._base import OnBlock, block_message, check_on_block, modified

if TYPE_CHECKING:
    from thoth.tracer import GovernedCall, Tracer

log = logging.getLogger("thoth")

# The request `_meta` key of the "already checked by Thoth" marker (ADR 0403). A `_meta` key's
# prefix is a reverse-DNS label followed by a slash (MCP specification, "_meta").
MARKER_KEY = "dev.thoth/decision"
LIST_CACHE_SECONDS = 30.0


class McpToolError(Exception):
    """A tool that answered with an MCP error result (`is_error`): recorded as a failed call."""


# ---- the functions the proxy and the session share ----------------------------------------------

async def govern_call(tracer: Tracer, *, server: str, tool: str, arguments: dict[str, Any] | None,
                      call_id: str | None = None) -> GovernedCall:
    """Check one MCP tool call (PRE event, enforce, step-up wait). Returns the GovernedCall, whose
    `tool_args` are the arguments to send (MODIFY) and whose done()/failed() record the outcome;
    raises ThothPolicyViolation on BLOCK, DEFER or a denied step-up."""
    args = dict(arguments) if isinstance(arguments, dict) else ({} if arguments is None else {"input": arguments})
    return await tracer.agovern(tool, args, call_id=call_id, mcp_server=server)


def blocked_result(exc: ThothPolicyViolation) -> Any:
    """The MCP tool error result the model reads instead of the tool's answer."""
    from mcp import types

    return types.CallToolResult(content=[types.TextContent(type="text", text=block_message(exc))], is_error=True)


def result_output(result: Any) -> Any:
    """What is recorded as the tool's output: the structured content when there is some, else the
    text of the text items joined (other items by kind); the text the model reads."""
    structured = getattr(result, "structured_content", None)
    if structured is not None:
        return structured
    parts: list[str] = []
    for item in getattr(result, "content", None) or ():
        text = getattr(item, "text", None)
        parts.append(text if isinstance(text, str) else f"[{getattr(item, 'type', 'content')}]")
    return "\n".join(parts)


def finish(call: GovernedCall, result: Any) -> Any:
    """Record the answer of a governed call: an error result is a failed call, else its output."""
    if getattr(result, "is_error", False):
        call.failed(McpToolError(str(result_output(result))[:500]))
    else:
        call.done(result_output(result))
    return result


def with_marker(meta: Any, call: GovernedCall) -> Any:
    """The request `_meta` with the marker of this call's decision added (ADR 0403), when the
    Thoth server issued one (in-process decisions have none: a proxy checks those itself)."""
    marker = getattr(call.decision, "mcp_marker", None)
    if not isinstance(marker, str) or not marker:
        return meta
    out = dict(meta or {})
    out[MARKER_KEY] = marker
    return out


async def visible_tools(tracer: Tracer, server: str, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Which of `tools` ({name, description, input_schema}) this tracer's agent may see: one
    answer {name, visible, pin, reason?} per tool, in order. In-process: the local policy; else
    POST /v1/mcp/tools. Listing never fails the agent: when Thoth cannot answer, every tool
    stays visible (each call is still checked) and a WARNING is logged."""
    cfg = tracer.config
    identity: dict[str, Any] = {"agent_id": cfg.agent_id, "mcp_server": server,
                                "approved_scope": list(cfg.approved_scope) or None,
                                "enforcement_mode": cfg.enforcement.value}
    policy = getattr(tracer.enforcer, "policy", None)
    if policy is not None and hasattr(policy, "rules"):  # the in-process engine: no request at all
        from thoth.policy.visibility import tool_visibility

        out = []
        for tool in tools:
            seen = tool_visibility(policy, tool_name=tool["name"], **{k: v for k, v in identity.items()
                                                                       if k != "mcp_server"}, mcp_server=server)
            out.append({"name": tool["name"], "visible": seen.visible, "pin": None, "reason": seen.reason})
        return out
    endpoint = getattr(tracer.enforcer, "endpoint", None)
    everything = [{"name": t["name"], "visible": True, "pin": None} for t in tools]
    if endpoint is None:
        return everything
    body = {**identity, "tenant_id": cfg.tenant_id, "session_id": tracer.session.session_id, "tools": tools}
    try:
        response = await endpoint.asend("POST", "/v1/mcp/tools", json.dumps(body, default=str).encode(),
                                        timeout=cfg.enforce_timeout_seconds)
        answer = response.json() if response.status_code == 200 else None
    except Exception as exc:  # noqa: BLE001 - any transport fault: show the tools, calls stay governed
        log.warning("Thoth could not filter the tools of MCP server %r (%s); showing all", server, exc)
        return everything
    if not isinstance(answer, dict) or not isinstance(answer.get("tools"), list) \
            or len(answer["tools"]) != len(tools):
        log.warning("Thoth could not filter the tools of MCP server %r (HTTP %s); showing all", server,
                    response.status_code)
        return everything
    return [a if isinstance(a, dict) else {"name": t["name"], "visible": True, "pin": None}
            for a, t in zip(answer["tools"], tools, strict=True)]


async def filter_tools(tracer: Tracer, server: str, tools: list[Any]) -> list[Any]:
    """The MCP `Tool` objects (or dicts) of `tools` this agent may see, in order."""
    if not tools:
        return []
    answers = await visible_tools(tracer, server, [tool_entry(t) for t in tools])
    return [t for t, a in zip(tools, answers, strict=True) if a.get("visible", True) is not False]


def tool_entry(tool: Any) -> dict[str, Any]:
    """{name, description, input_schema} of an MCP Tool object or a tools/list dict."""
    if isinstance(tool, dict):
        return {"name": str(tool.get("name", "")), "description": tool.get("description"),
                "input_schema": tool.get("inputSchema", tool.get("input_schema"))}
    return {"name": tool.name, "description": getattr(tool, "description", None),
            "input_schema": getattr(tool, "input_schema", None)}


# ---- the governed ClientSession -------------------------------------------------------------------

class McpGovernor:
    """The governance of one ClientSession (`session.__thoth_mcp__`)."""

    def __init__(self, tracer: Tracer, server: str, *, on_block: OnBlock = "return",
                 list_cache_seconds: float = LIST_CACHE_SECONDS) -> None:
        if not isinstance(server, str) or not server:
            raise ValueError("an MCP session is governed under its server's configured name: pass mcp_server='...'")
        self.tracer = tracer
        self.server = server
        self.on_block = check_on_block(on_block)
        self.list_cache_seconds = list_cache_seconds
        self._listing: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        # request_state of an input-required answer -> its governed call: the continuation of a
        # call is the same call (one check), a request_state we never saw is checked afresh.
        self._continuing: dict[str, GovernedCall] = {}

    async def call_tool(self, send: Callable[..., Awaitable[Any]], name: str, arguments: dict[str, Any] | None,
                        args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        state = kwargs.get("request_state")
        call = self._continuing.pop(state, None) if isinstance(state, str) else None
        if call is None:
            try:
                call = await govern_call(self.tracer, server=self.server, tool=name, arguments=arguments)
            except ThothPolicyViolation as exc:
                if self.on_block == "raise":
                    raise
                return blocked_result(exc)
            new = modified(arguments if isinstance(arguments, dict) else {}, call.tool_args)
            if new is not None:
                arguments = new
        kwargs["meta"] = with_marker(kwargs.get("meta"), call)
        try:
            result = await send(name, arguments, *args, **kwargs)
        except BaseException as exc:
            call.failed(exc)
            raise
        next_state = getattr(result, "request_state", None)
        if getattr(result, "input_requests", None) is not None and isinstance(next_state, str):
            self._continuing[next_state] = call  # answered later by the continuation
            return result
        return finish(call, result)

    async def list_tools(self, send: Callable[..., Awaitable[Any]], args: tuple[Any, ...],
                         kwargs: dict[str, Any]) -> Any:
        result = await send(*args, **kwargs)
        tools = list(getattr(result, "tools", None) or ())
        if not tools:
            return result
        entries = [tool_entry(t) for t in tools]
        key = json.dumps(entries, sort_keys=True, default=str)
        cached = self._listing.get(key)
        if cached is not None and cached[0] > time.monotonic():
            answers = cached[1]
        else:
            answers = await visible_tools(self.tracer, self.server, entries)
            self._listing = {key: (time.monotonic() + self.list_cache_seconds, answers)}  # the latest only
        kept = [t for t, a in zip(tools, answers, strict=True) if a.get("visible", True) is not False]
        if len(kept) == len(tools):
            return result
        return result.model_copy(update={"tools": kept})


def govern_session(session: Any, tracer: Tracer, *, server: str, on_block: OnBlock = "return",
                   list_cache_seconds: float = LIST_CACHE_SECONDS) -> Any:
    """Govern an mcp ClientSession (or an mcp `Client`'s session) in place; returns it.
    Governing it again replaces the tracer and server (never two checks per call)."""
    target = getattr(session, "session", None) if type(session).__name__ == "Client" else session
    if target is None:
        raise TypeError("an mcp Client is governed once it is connected (inside `async with`)")
    governor = McpGovernor(tracer, server, on_block=on_block, list_cache_seconds=list_cache_seconds)
    original_call = getattr(target.call_tool, "__thoth_original__", target.call_tool)
    original_list = getattr(target.list_tools, "__thoth_original__", target.list_tools)

    async def call_tool(name: str, arguments: dict[str, Any] | None = None, *args: Any, **kwargs: Any) -> Any:
        return await governor.call_tool(original_call, name, arguments, args, kwargs)

    async def list_tools(*args: Any, **kwargs: Any) -> Any:
        return await governor.list_tools(original_list, args, kwargs)

    call_tool.__thoth_original__ = original_call  # type: ignore[attr-defined]
    list_tools.__thoth_original__ = original_list  # type: ignore[attr-defined]
    target.call_tool = call_tool
    target.list_tools = list_tools
    target.__thoth_mcp__ = governor
    return session


def govern_mcp_server(server: Any, tracer: Tracer, *, name: str | None = None, on_block: OnBlock = "return",
                      list_cache_seconds: float = LIST_CACHE_SECONDS) -> Any:
    """Govern a framework's MCP server object in place (openai-agents' MCPServerStdio,
    MCPServerStreamableHttp, ...: `call_tool(tool_name, arguments, meta=None)` and `list_tools()`
    returning a list of Tools). It is governed, not its current session, so a reconnect (a new
    ClientSession) stays governed. `name` defaults to the object's `.name`."""
    server_name = name or getattr(server, "name", None)
    governor = McpGovernor(tracer, str(server_name or ""), on_block=on_block, list_cache_seconds=list_cache_seconds)
    original_call = getattr(server.call_tool, "__thoth_original__", server.call_tool)
    original_list = getattr(server.list_tools, "__thoth_original__", server.list_tools)

    async def call_tool(tool_name: str, arguments: dict[str, Any] | None = None, *args: Any, **kwargs: Any) -> Any:
        return await governor.call_tool(original_call, tool_name, arguments, args, kwargs)

    async def list_tools(*args: Any, **kwargs: Any) -> Any:
        tools = await original_list(*args, **kwargs)
        if not isinstance(tools, list):
            return tools
        return await filter_tools(tracer, governor.server, tools)

    call_tool.__thoth_original__ = original_call  # type: ignore[attr-defined]
    list_tools.__thoth_original__ = original_list  # type: ignore[attr-defined]
    server.call_tool = call_tool
    server.list_tools = list_tools
    server.__thoth_mcp__ = governor
    return server


def instrument_agent(session: Any, tracer: Tracer, *, on_block: OnBlock = "return",
                     mcp_server: str | None = None) -> Any:
    """`thoth.instrument(session, ..., mcp_server="mail")`: govern in place, return the same session."""
    if not mcp_server:
        raise ValueError("thoth.instrument(<mcp session>, ...) needs mcp_server='<the server's configured name>'")
    return govern_session(session, tracer, server=mcp_server, on_block=on_block)
