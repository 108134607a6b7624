"""LangChain 1.x and langchain-classic.

Three ways in, all checking each tool call exactly once:

- `ThothMiddleware(tracer)` for `langchain.agents.create_agent(..., middleware=[...])`: it sees
  every tool call (sync, async, streaming, parallel) at the agent's dispatch, and records the
  model's token usage.
- `wrap_tool(tracer, name, tool)` for any consumer of a `BaseTool` (LangGraph `ToolNode`,
  `create_react_agent`, custom nodes): a governed copy of the tool. It patches the copy's
  private `_run`/`_arun` (a pydantic model refuses `tool.run = ...`) and keeps their
  signatures, which LangChain inspects.
- `instrument_agent(executor, tracer)`: what `thoth.instrument()` calls for a classic
  `AgentExecutor` (now `langchain_classic.agents.AgentExecutor`) or a compiled graph; it
  governs the executor's tools in place and records token usage through a callback.

A context variable marks the tool being run under governance, so the layers never check twice
(a sync tool under `ainvoke` runs `_arun` -> `_run`; a middleware-governed call reaches a
governed tool).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import typing
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from thoth.exceptions import ThothPolicyViolation
from thoth.integrations._base import OnBlock, block_message, call_args, capture_task, check_on_block, modified

if TYPE_CHECKING:
    from thoth.tracer import Tracer

# Name of the tool whose call is already governed in this context (thread / task).
_governing: ContextVar[str | None] = ContextVar("thoth_langchain_governing", default=None)
_RESERVED = ("run_manager", "config", "callbacks")
_MARK = "__thoth_tracer__"


# Tool level ---------------------------------------------------------------------------------
def wrap_tool(tracer: Tracer, name: str, tool: Any, *, on_block: OnBlock = "raise") -> Any:
    """A governed copy of a LangChain `BaseTool` (the original is left untouched)."""
    if getattr(tool._run, _MARK, None) is tracer:  # already governed by this tracer
        return tool
    return govern_tool_in_place(tracer, tool.model_copy(), name=name, on_block=on_block)


def govern_tool_in_place(tracer: Tracer, tool: Any, *, name: str | None = None, on_block: OnBlock = "raise") -> Any:
    """Govern `tool` itself (what `instrument()` does to an executor's tools)."""
    check_on_block(on_block)
    if getattr(tool._run, _MARK, None) is tracer:
        return tool
    policy_name = name or tool.name
    inner_run, inner_arun = tool._run, tool._arun

    def _run(*args: Any, **kwargs: Any) -> Any:
        if _governing.get() == policy_name:
            return inner_run(*args, **kwargs)
        policy_args = _policy_args(args, kwargs)
        try:
            governed = tracer.govern(policy_name, policy_args)
        except ThothPolicyViolation as exc:
            if on_block == "return":
                return block_message(exc)
            raise as_tool_exception(exc) from None
        args, kwargs = _apply(args, kwargs, modified(policy_args, governed.tool_args))
        token = _governing.set(policy_name)
        try:
            with tracer.activated():
                result = inner_run(*args, **kwargs)
        except Exception as exc:
            governed.failed(exc)
            raise
        finally:
            _governing.reset(token)
        governed.done(result)
        return result

    async def _arun(*args: Any, **kwargs: Any) -> Any:
        if _governing.get() == policy_name:
            return await inner_arun(*args, **kwargs)
        policy_args = _policy_args(args, kwargs)
        try:
            governed = await tracer.agovern(policy_name, policy_args)
        except ThothPolicyViolation as exc:
            if on_block == "return":
                return block_message(exc)
            raise as_tool_exception(exc) from None
        args, kwargs = _apply(args, kwargs, modified(policy_args, governed.tool_args))
        token = _governing.set(policy_name)  # the default _arun runs _run in an executor
        try:
            with tracer.activated():
                result = await inner_arun(*args, **kwargs)
        except Exception as exc:
            governed.failed(exc)
            raise
        finally:
            _governing.reset(token)
        governed.done(result)
        return result

    _mirror(_run, inner_run)
    _mirror(_arun, inner_arun)
    setattr(_run, _MARK, tracer)
    setattr(_arun, _MARK, tracer)
    # Underscore names are not pydantic fields: assignment goes to the instance.
    tool._run = _run
    tool._arun = _arun
    return tool


def _mirror(wrapper: Any, inner: Any) -> None:
    """Give `wrapper` the calling surface LangChain inspects on every call: `run()` reads the
    signature of `_run` (does it take run_manager?) and its type hints (a RunnableConfig
    parameter?). Both are computed once here, resolved: no `__wrapped__` to walk, and no
    string annotations to compile per call, which is what `functools.wraps` cost (~20 µs)."""
    for name in ("__module__", "__name__", "__qualname__", "__doc__"):
        with contextlib.suppress(AttributeError):
            setattr(wrapper, name, getattr(inner, name))
    with contextlib.suppress(TypeError, ValueError):
        wrapper.__signature__ = inspect.signature(inner)
    try:
        wrapper.__annotations__ = typing.get_type_hints(inner)
    except Exception:  # unresolvable names: LangChain would fail to resolve them too
        wrapper.__annotations__ = dict(getattr(inner, "__annotations__", {}))


def _policy_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    return call_args(args, {k: v for k, v in kwargs.items() if k not in _RESERVED})


def _apply(args: tuple[Any, ...], kwargs: dict[str, Any], new: dict[str, Any] | None) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Put MODIFY-rewritten arguments back into the call's own shape."""
    if new is None:
        return args, kwargs
    reserved = {k: v for k, v in kwargs.items() if k in _RESERVED}
    if not args:
        return (), {**new, **reserved}
    if len(args) == 1 and not set(kwargs) - set(_RESERVED):
        return ((new if isinstance(args[0], dict) else new.get("input", args[0])),), kwargs
    if isinstance(new.get("args"), list) and isinstance(new.get("kwargs"), dict):
        return tuple(new["args"]), {**new["kwargs"], **reserved}
    return args, kwargs


@functools.cache
def _tool_exception_class() -> type[ThothPolicyViolation]:
    from langchain_core.tools import ToolException

    class LangChainPolicyViolation(ThothPolicyViolation, ToolException):
        """A block that is also a ToolException, so a tool's `handle_tool_error` applies."""

    return LangChainPolicyViolation


def as_tool_exception(exc: ThothPolicyViolation) -> ThothPolicyViolation:
    cls = _tool_exception_class()
    new = cls.__new__(cls)
    new.__dict__.update(exc.__dict__)
    Exception.__init__(new, *exc.args)
    return new


# Dispatch level (create_agent middleware, ToolNode hooks) ---------------------------------------
def gate_tool_call(tracer: Tracer, on_block: OnBlock, request: Any, handler: Callable[[Any], Any]) -> Any:
    """One governed call for a `ToolCallRequest`: what `wrap_tool_call` hooks do."""
    capture_task(tracer, getattr(request, "state", None))  # the graph's messages: the last human one
    call = request.tool_call
    name, args = call["name"], dict(call.get("args") or {})
    try:
        governed = tracer.govern(name, args, call_id=call.get("id"))
    except ThothPolicyViolation as exc:
        if on_block == "raise":
            raise
        return _blocked_message(call, exc)
    request = _override_args(request, call, modified(args, governed.tool_args))
    token = _governing.set(name)
    try:
        with tracer.activated():
            result = handler(request)
    except Exception as exc:
        governed.failed(exc)
        raise
    finally:
        _governing.reset(token)
    governed.done(getattr(result, "content", result))
    return result


async def agate_tool_call(
    tracer: Tracer, on_block: OnBlock, request: Any, handler: Callable[[Any], Awaitable[Any]]
) -> Any:
    capture_task(tracer, getattr(request, "state", None))
    call = request.tool_call
    name, args = call["name"], dict(call.get("args") or {})
    try:
        governed = await tracer.agovern(name, args, call_id=call.get("id"))
    except ThothPolicyViolation as exc:
        if on_block == "raise":
            raise
        return _blocked_message(call, exc)
    request = _override_args(request, call, modified(args, governed.tool_args))
    token = _governing.set(name)
    try:
        with tracer.activated():
            result = await handler(request)
    except Exception as exc:
        governed.failed(exc)
        raise
    finally:
        _governing.reset(token)
    governed.done(getattr(result, "content", result))
    return result


def _blocked_message(call: Any, exc: ThothPolicyViolation) -> Any:
    from langchain_core.messages import ToolMessage

    return ToolMessage(content=block_message(exc), tool_call_id=call.get("id") or "", name=call["name"], status="error")


def _override_args(request: Any, call: Any, new: dict[str, Any] | None) -> Any:
    return request if new is None else request.override(tool_call={**call, "args": new})


# Token usage --------------------------------------------------------------------------------
def record_message_usage(tracer: Tracer, messages: Any) -> None:
    """Record `usage_metadata` of the AI messages in a model response."""
    items = getattr(messages, "result", messages)
    if not isinstance(items, (list, tuple)):
        items = [items]
    for message in items:
        usage = getattr(message, "usage_metadata", None)
        if usage:
            meta = getattr(message, "response_metadata", None) or {}
            tracer.record_llm_usage(
                model=str(meta.get("model_name") or meta.get("model") or "unknown"),
                input_tokens=int(usage.get("input_tokens") or 0),
                output_tokens=int(usage.get("output_tokens") or 0),
            )


@functools.cache
def _middleware_class() -> type:
    from langchain.agents.middleware import AgentMiddleware

    class ThothMiddleware(AgentMiddleware):  # type: ignore[misc]
        """Governs every tool call of a `create_agent` agent; records model token usage.

        on_block="return" (default): the model gets an error ToolMessage and the run goes on;
        sibling parallel calls keep their results. on_block="raise": ThothPolicyViolation
        propagates out of `invoke` / `ainvoke`.
        """

        def __init__(self, tracer: Tracer, *, on_block: OnBlock = "return", record_usage: bool = True) -> None:
            super().__init__()
            self.tracer = tracer
            self.on_block = check_on_block(on_block)
            self.record_usage = record_usage

        @property
        def name(self) -> str:
            return "ThothMiddleware"

        def wrap_tool_call(self, request: Any, handler: Any) -> Any:
            return gate_tool_call(self.tracer, self.on_block, request, handler)

        async def awrap_tool_call(self, request: Any, handler: Any) -> Any:
            return await agate_tool_call(self.tracer, self.on_block, request, handler)

        def wrap_model_call(self, request: Any, handler: Any) -> Any:
            response = handler(request)
            if self.record_usage:
                record_message_usage(self.tracer, response)
            return response

        async def awrap_model_call(self, request: Any, handler: Any) -> Any:
            response = await handler(request)
            if self.record_usage:
                record_message_usage(self.tracer, response)
            return response

    return ThothMiddleware


def middleware(tracer: Tracer, *, on_block: OnBlock = "return", record_usage: bool = True) -> Any:
    """`create_agent(model, tools, middleware=[thoth.integrations.langchain.middleware(tracer)])`."""
    return _middleware_class()(tracer, on_block=on_block, record_usage=record_usage)


def __getattr__(name: str) -> Any:  # `from thoth.integrations.langchain import ThothMiddleware`
    if name == "ThothMiddleware":
        return _middleware_class()
    raise AttributeError(name)


@functools.cache
def _usage_callback_class() -> type:
    from langchain_core.callbacks import BaseCallbackHandler

    class ThothUsageCallback(BaseCallbackHandler):  # type: ignore[misc]
        def __init__(self, tracer: Tracer) -> None:
            self.tracer = tracer

        def on_llm_end(self, response: Any, **kwargs: Any) -> None:
            for generations in getattr(response, "generations", []) or []:
                record_message_usage(self.tracer, [getattr(g, "message", None) for g in generations])

    return ThothUsageCallback


# instrument() ---------------------------------------------------------------------------------
def instrument_agent(agent: Any, tracer: Tracer, *, on_block: OnBlock = "raise") -> Any:
    """Govern an `AgentExecutor` (classic), a compiled LangGraph / create_agent graph, or any
    object with a `.tools` list of LangChain tools, in place. Returns the same object."""
    tools = _tools_of(agent)
    for tool in tools:
        govern_tool_in_place(tracer, tool, on_block=on_block)
    capture_inputs(agent, tracer)
    callbacks = getattr(agent, "callbacks", None) if hasattr(agent, "callbacks") else None
    if isinstance(callbacks, list) or (callbacks is None and _is_classic_executor(agent)):
        handler = _usage_callback_class()(tracer)
        with contextlib.suppress(AttributeError, TypeError, ValueError):  # frozen: usage is optional
            agent.callbacks = [*(callbacks or []), handler]
    return agent


def capture_inputs(agent: Any, tracer: Tracer) -> None:
    """Each run's input (`{"messages": [...]}` or `{"input": "..."}`) sets the task: the last
    human message. The agent's own entry points are wrapped on this instance only."""
    for name in ("invoke", "ainvoke", "stream", "astream"):
        inner = getattr(agent, name, None)
        if inner is None or getattr(inner, "__thoth_task__", False):
            continue

        def entry(input: Any, *args: Any, _inner: Any = inner, **kwargs: Any) -> Any:
            capture_task(tracer, input)
            return _inner(input, *args, **kwargs)  # a coroutine or an iterator for the async ones

        entry.__thoth_task__ = True  # type: ignore[attr-defined]
        with contextlib.suppress(AttributeError, TypeError, ValueError):
            object.__setattr__(agent, name, entry)


def _is_classic_executor(agent: Any) -> bool:
    return type(agent).__name__ == "AgentExecutor"


def _tools_of(agent: Any) -> list[Any]:
    tools = getattr(agent, "tools", None)
    if isinstance(tools, (list, tuple)):
        return [t for t in tools if hasattr(t, "_run")]
    nodes = getattr(agent, "nodes", None)  # a compiled graph: govern its ToolNodes' tools
    found: list[Any] = []
    if isinstance(nodes, dict):
        for node in nodes.values():
            by_name = getattr(getattr(node, "bound", None), "tools_by_name", None)
            if isinstance(by_name, dict):
                found.extend(by_name.values())
    return found
