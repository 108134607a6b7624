"""AutoGen: AG2 Classic (`import autogen`, 0.9+: function maps) and Microsoft autogen-agentchat
0.7 (AssistantAgent tools).

    governed = wrap_autogen_tools({"search_docs": search_docs}, tracer=tracer)
    user_proxy = autogen.UserProxyAgent("user_proxy", function_map=governed)

`thoth.instrument(agent, ...)` governs a ConversableAgent's function map, or an agentchat
AssistantAgent's tools (each tool's `run_json`), in place.

Neither framework lets a tool's exception out of the run: AG2 turns it into an "Error: ..."
tool message, agentchat into an `is_error` result. So on_block="return" (default) hands the
model the block text; on_block="raise" raises ThothPolicyViolation inside the tool, which the
framework reports to the model the same way, and is kept on `tracer`-side audit as a block.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from thoth.exceptions import ThothPolicyViolation
from thoth.integrations._base import OnBlock, block_message, check_on_block

if TYPE_CHECKING:
    from thoth.tracer import Tracer

_MARK = "__thoth_tracer__"


def wrap_autogen_tools(
    fn_map: dict[str, Callable[..., Any]], tracer: Tracer, *, on_block: OnBlock = "return"
) -> dict[str, Callable[..., Any]]:
    """Governed copies of AG2 function-map callables (AG2 calls them as `fn(**arguments)`)."""
    check_on_block(on_block)
    return {name: _governed(tracer, name, fn, on_block) for name, fn in fn_map.items()}


def _governed(tracer: Tracer, name: str, fn: Callable[..., Any], on_block: OnBlock) -> Callable[..., Any]:
    if getattr(fn, _MARK, None) is tracer:
        return fn
    if inspect.iscoroutinefunction(fn):  # AG2 picks its sync or async path by this
        @functools.wraps(fn)
        async def agoverned(**kwargs: Any) -> Any:
            try:
                call = await tracer.agovern(name, kwargs)
            except ThothPolicyViolation as exc:
                if on_block == "raise":
                    raise
                return block_message(exc)
            args = call.tool_args if isinstance(call.tool_args, dict) else kwargs
            try:
                with tracer.activated():
                    result = await fn(**args)
            except Exception as exc:
                call.failed(exc)
                raise
            return call.done(result)

        wrapper: Any = agoverned
    else:
        @functools.wraps(fn)
        def governed(**kwargs: Any) -> Any:
            try:
                call = tracer.govern(name, kwargs)
            except ThothPolicyViolation as exc:
                if on_block == "raise":
                    raise
                return block_message(exc)
            args = call.tool_args if isinstance(call.tool_args, dict) else kwargs
            try:
                with tracer.activated():
                    result = fn(**args)
            except Exception as exc:
                call.failed(exc)
                raise
            return call.done(result)

        wrapper = governed
    setattr(wrapper, _MARK, tracer)
    return wrapper  # type: ignore[no-any-return]


def instrument_agent(agent: Any, tracer: Tracer, *, on_block: OnBlock = "return") -> Any:
    """Govern an AG2 ConversableAgent's function map or an agentchat agent's tools, in place."""
    function_map = getattr(agent, "_function_map", None)
    if isinstance(function_map, dict):
        function_map.update(wrap_autogen_tools(function_map, tracer, on_block=on_block))
        return agent
    for workbench in getattr(agent, "_workbench", None) or []:
        for tool in getattr(workbench, "_tools", None) or []:
            _govern_run_json(tracer, tool, on_block)
    for tool in getattr(agent, "_handoff_tools", None) or []:
        _govern_run_json(tracer, tool, on_block)
    return agent


def _govern_run_json(tracer: Tracer, tool: Any, on_block: OnBlock) -> None:
    """agentchat: each tool call reaches `tool.run_json(args, token, call_id=...)`; its workbench
    turns an exception into an is_error result (never raise from a workbench: run() hangs)."""
    inner = tool.run_json
    if getattr(inner, _MARK, None) is tracer:
        return

    async def run_json(args: Any, cancellation_token: Any, call_id: str | None = None) -> Any:
        try:
            call = await tracer.agovern(tool.name, dict(args), call_id=call_id)
        except ThothPolicyViolation as exc:
            if on_block == "raise":
                raise
            return block_message(exc)
        new_args = call.tool_args if isinstance(call.tool_args, dict) else args
        try:
            with tracer.activated():
                result = await inner(new_args, cancellation_token, call_id=call_id)
        except Exception as exc:
            call.failed(exc)
            raise
        return call.done(result)

    setattr(run_json, _MARK, tracer)
    tool.run_json = run_json
