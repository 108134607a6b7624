"""The one module of the proxy that asks Thoth: a verdict before a tools/call is forwarded, the
call's outcome as an audit event afterwards, and which tools an agent may see at all.

It goes through the SDK's shared MCP functions (thoth.integrations.mcp: `govern_call`,
`visible_tools`) on the SDK's own Tracer (policy, step-up wait, PRE/POST/BLOCK events), one
Tracer per (agent, MCP session) so each MCP session is one Thoth session. A call that an SDK
adapter already checked carries a marker (`_meta["dev.thoth/decision"]`): verified with the
Thoth server, it is forwarded without a second check (ADR 0403). The relay and the HTTP side
see only `check`, `record` and `visible`.
"""

from __future__ import annotations

import contextvars
import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from thoth.components import Components, make_components
from thoth.exceptions import ThothPolicyViolation
from thoth.integrations.mcp import MARKER_KEY, govern_call, tool_entry, visible_tools
from thoth.models import ThothConfig
from thoth.session import SessionContext
from thoth.tracer import GovernedCall, Tracer

# The call's id for the request the Tracer is building right now (the Tracer builds it inside
# agovern; a context variable reaches it without widening the Tracer's API).
_CALL_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("thoth_mcp_call_id", default=None)


class _McpTracer(Tracer):
    """A Tracer whose enforce requests carry the call's id (`tool_call_id`): the server answers a
    repeated check of one call with its first answer, so a retry of a call cancelled while held
    finds the same hold and its approval."""

    def _request(self, tool_name: str, tool_args: Any,
                 mcp_server: str | None = None) -> tuple[dict[str, Any], Any]:
        request, calls = super()._request(tool_name, tool_args, mcp_server)
        call_id = _CALL_ID.get()
        if call_id:
            request["tool_call_id"] = call_id
        return request, calls


@dataclass
class Verdict:
    """The answer for one tools/call: forward `arguments` (policy may have modified them) and
    report the outcome with Governance.record, or answer the client with `reason`."""

    allowed: bool
    reason: str = ""
    arguments: dict[str, Any] | None = None
    call: GovernedCall | None = None


@dataclass
class Settings:
    """Who the proxy's calls are for, and where Thoth is (api_url 'local' = in-process policy)."""

    tenant_id: str
    agent_id: str
    api_url: str | None = None
    api_key: str | None = None
    approved_scope: list[str] = field(default_factory=list)
    enforcement: str = "progressive"
    user_id: str = "system"
    extra: dict[str, Any] = field(default_factory=dict)  # further ThothConfig fields


class Governance:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._base = ThothConfig(
            agent_id=settings.agent_id, tenant_id=settings.tenant_id, api_url=settings.api_url,
            api_key=settings.api_key, approved_scope=list(settings.approved_scope),
            enforcement=settings.enforcement, user_id=settings.user_id,  # type: ignore[arg-type]
            **settings.extra,
        )
        self._base.resolved_api_url  # noqa: B018 - a missing URL fails at start, not at the first call
        self._components: Components = make_components(self._base)
        self._by_key: dict[str, Components] = {}  # callers' own Thoth keys (HTTP, --thoth-keys)
        self._tracers: dict[tuple[str, str, str | None], Tracer] = {}
        self._lock = threading.Lock()
        # (agent, session, server, tool, arguments) of a call cancelled while held -> its call id.
        self._held_ids: dict[tuple[str, str, str, str, str], str] = {}

    def tracer(self, agent_id: str | None, session_id: str, api_key: str | None = None) -> Tracer:
        """The Tracer of one agent's MCP session; with `api_key` (a caller's own Thoth key) its
        checks and events go to Thoth under that key, not the proxy's."""
        agent = agent_id or self.settings.agent_id
        key = (agent, session_id, api_key)
        with self._lock:
            tracer = self._tracers.get(key)
            if tracer is None:
                update: dict[str, Any] = {"agent_id": agent, "session_id": session_id}
                components = self._components
                if api_key is not None:
                    update["api_key"] = api_key
                    components = self._by_key.get(api_key) or make_components(
                        self._base.model_copy(update={"api_key": api_key}))
                    self._by_key[api_key] = components
                config = self._base.model_copy(update=update)
                emitter, enforcer, step_up = components
                tracer = _McpTracer(config, SessionContext(config), emitter, enforcer, step_up)
                self._tracers[key] = tracer
            return tracer

    async def check(self, *, agent_id: str | None, session_id: str, server: str, tool: str,
                    arguments: dict[str, Any], api_key: str | None = None, meta: Any = None) -> Verdict:
        """Policy for one call (waits out a step-up). Cancelling the awaiting task while a hold is
        pending keeps the call's id: a retry of the same call asks about the same hold."""
        tracer = self.tracer(agent_id, session_id, api_key)
        marker = meta.get(MARKER_KEY) if isinstance(meta, dict) else None
        if isinstance(marker, str) and marker and await _verified(tracer, marker, server, tool, arguments):
            return Verdict(True, arguments=arguments)  # checked (and recorded) by the agent's own SDK
        held_key = (tracer.config.agent_id, session_id, server, tool,
                    json.dumps(arguments, sort_keys=True, default=str))
        call_id = self._held_ids.get(held_key) or uuid.uuid4().hex
        call_token = _CALL_ID.set(call_id)
        try:
            call = await govern_call(tracer, server=server, tool=tool, arguments=arguments, call_id=call_id)
        except ThothPolicyViolation as exc:
            self._held_ids.pop(held_key, None)
            return Verdict(False, f"Thoth blocked this call: {exc.reason}")
        except BaseException:  # cancelled (the client gave up) or failed: a retry reuses the id
            self._held_ids[held_key] = call_id
            if len(self._held_ids) > 4096:
                self._held_ids.pop(next(iter(self._held_ids)))
            raise
        finally:
            _CALL_ID.reset(call_token)
        self._held_ids.pop(held_key, None)
        args = call.tool_args if isinstance(call.tool_args, dict) else arguments
        return Verdict(True, arguments=args, call=call)

    @staticmethod
    def record(verdict: Verdict, result: Any = None, error: str | None = None) -> None:
        """The outcome of a forwarded call, once (GovernedCall ignores a second report)."""
        if verdict.call is None:
            return
        if error is None:
            verdict.call.done(_output(result))
        else:
            verdict.call.failed(UpstreamError(error))

    async def visible(self, agent_id: str | None, server: str, tools: list[Any], *, session_id: str = "",
                      api_key: str | None = None) -> list[Any]:
        """The tools this agent may use at all (thoth.integrations.mcp.visible_tools: outside its
        scope or under an unconditional BLOCK, they are hidden). Listing never fails: when Thoth
        cannot answer, every tool stays visible and each call is still checked."""
        entries = [t for t in tools if isinstance(t, dict)]
        if not entries:
            return tools
        tracer = self.tracer(agent_id, session_id or "mcp-tools-list", api_key)
        answers = await visible_tools(tracer, server, [tool_entry(t) for t in entries])
        hidden = {id(t) for t, a in zip(entries, answers, strict=True) if a.get("visible", True) is False}
        return [t for t in tools if id(t) not in hidden]

    def flush(self, timeout: float = 5.0) -> None:
        for components in (self._components, *self._by_key.values()):
            flush = getattr(components.emitter, "flush", None)
            if flush is not None:
                flush(timeout)

    @property
    def api_url(self) -> str | None:
        """Thoth's URL, or None in the in-process mode."""
        return None if self._base.is_local else self._base.resolved_api_url


async def _verified(tracer: Tracer, marker: str, server: str, tool: str, arguments: dict[str, Any]) -> bool:
    """Whether the Thoth server vouches for this marker (POST /v1/mcp/verify: genuine, for this
    tenant, server, tool and arguments, unexpired, first use). In-process: never (no markers)."""
    endpoint = getattr(tracer.enforcer, "endpoint", None)
    if endpoint is None:
        return False
    body = {"marker": marker, "mcp_server": server, "tool_name": tool, "tool_args": arguments}
    try:
        response = await endpoint.asend("POST", "/v1/mcp/verify", json.dumps(body, default=str).encode(),
                                        timeout=tracer.config.enforce_timeout_seconds)
        answer = response.json() if response.status_code == 200 else None
    except Exception:  # noqa: BLE001 - any fault: the proxy checks the call itself
        return False
    return isinstance(answer, dict) and answer.get("verified") is True


def _output(result: Any) -> Any:
    """What is recorded as the tool's output (as thoth.integrations.mcp.result_output, for the
    answer's dict): the structured content, else the text items joined."""
    if not isinstance(result, dict):
        return result
    if result.get("structuredContent") is not None:
        return result["structuredContent"]
    parts = [str(c["text"]) if isinstance(c.get("text"), str) else f"[{c.get('type', 'content')}]"
             for c in result.get("content") or [] if isinstance(c, dict)]
    return "\n".join(parts)


class UpstreamError(Exception):
    """The upstream answered a forwarded call with an error (or not at all)."""
