"""AutoGen: AG2 Classic (`import autogen`, 0.9+: function maps) and Microsoft autogen-agentchat
0.7 (AssistantAgent tools).

    governed = wrap_autogen_tools({"search_docs": search_docs}, tracer=tracer)
    user_proxy = autogen.UserProxyAgent("user_proxy", function_map=governed)

`thoth.instrument(agent, ...)` governs a ConversableAgent's function map, or an agentchat
AssistantAgent's tools (each tool's `run_json`), in place.

Neither framework lets a tool's exception out of the run: AG2 turns it into an "Error: ..."
tool message, agentchat into an `is_error` result. So:

- AG2, on_block="return" (default): the function-map callables are wrapped; the model reads
  the block text as the tool message. on_block="raise": the agent's `execute_function` /
  `a_execute_function` (AG2's documented override point) check first, and ThothPolicyViolation
  propagates out of `generate_reply` / `initiate_chat`. For an async tool on AG2's sync path
  (AG2 runs it in a helper thread, where an exception would surface as `KeyError('value')`),
  the check runs in the caller's thread before the coroutine is handed over.
- agentchat: the block is raised inside the tool's `run_json`, which the workbench turns into
  an `is_error` result with Thoth's reason (never raise from a workbench: `run()` hangs).
  on_block="raise" then also raises the ThothPolicyViolation from `agent.run()` /
  `agent.run_stream()` once that run has finished (the post-run flag: nothing earlier can
  stop an agentchat run from inside a tool). Token usage of each run's messages is recorded.
- AG2 token usage: `track_usage(llm_agent, tracer)` records what the agent's OpenAI client
  reports, after each message the agent sends (`thoth.instrument` does it for agents with an LLM).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from thoth.exceptions import ThothPolicyViolation
from thoth.integrations._base import (
    OnBlock,
    block_message,
    capture_task,
    check_on_block,
    modified,
    parse_arguments,
)

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
    check_on_block(on_block)
    function_map = getattr(agent, "_function_map", None)
    if isinstance(function_map, dict):
        if on_block == "raise":
            _govern_execute_function(agent, tracer)
        else:
            function_map.update(wrap_autogen_tools(function_map, tracer, on_block=on_block))
        if getattr(agent, "client", None) is not None:
            track_usage(agent, tracer)
        with contextlib.suppress(AttributeError, ValueError):
            track_task(agent, tracer)
        return agent
    governor = _AgentchatGovernor(tracer, on_block)
    for workbench in getattr(agent, "_workbench", None) or []:
        for tool in getattr(workbench, "_tools", None) or []:
            _govern_run_json(governor, tool)
    for tool in getattr(agent, "_handoff_tools", None) or []:
        _govern_run_json(governor, tool)
    _govern_runs(agent, governor)
    return agent


# AG2 Classic, raise mode ----------------------------------------------------------------------
def _govern_execute_function(agent: Any, tracer: Tracer) -> None:
    if getattr(agent.execute_function, _MARK, None) is tracer:
        return
    inner_sync, inner_async = agent.execute_function, agent.a_execute_function

    def prepared(func_call: dict[str, Any], call: Any, args: dict[str, Any]) -> dict[str, Any]:
        new = modified(args, call.tool_args)
        return func_call if new is None else {**func_call, "arguments": json.dumps(new)}

    def finish(call: Any, outcome: tuple[bool, dict[str, Any]]) -> tuple[bool, dict[str, Any]]:
        ok, reply = outcome
        if ok:
            call.done(reply.get("content"))
        else:
            call.failed(RuntimeError(str(reply.get("content"))))
        return outcome

    def execute_function(func_call: dict[str, Any], call_id: str | None = None,
                         verbose: bool = False) -> tuple[bool, dict[str, Any]]:
        name = func_call.get("name", "")
        if name not in agent._function_map:  # AG2 answers "function not found" itself
            return inner_sync(func_call, call_id=call_id, verbose=verbose)  # type: ignore[no-any-return]
        args = parse_arguments(func_call.get("arguments"))
        call = tracer.govern(name, args, call_id=call_id)  # a block propagates
        with tracer.activated():
            return finish(call, inner_sync(prepared(func_call, call, args), call_id=call_id, verbose=verbose))

    def a_execute_function(func_call: dict[str, Any], call_id: str | None = None, verbose: bool = False) -> Any:
        name = func_call.get("name", "")
        if name not in agent._function_map:
            return inner_async(func_call, call_id=call_id, verbose=verbose)
        args = parse_arguments(func_call.get("arguments"))
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # AG2's sync path: decide here, in the caller's thread
            call = tracer.govern(name, args, call_id=call_id)
            return _after(call, inner_async(prepared(func_call, call, args), call_id=call_id, verbose=verbose))

        async def checked() -> tuple[bool, dict[str, Any]]:
            call = await tracer.agovern(name, args, call_id=call_id)
            with tracer.activated():
                return finish(call, await inner_async(prepared(func_call, call, args), call_id=call_id,
                                                      verbose=verbose))

        return checked()

    async def _after(call: Any, pending: Any) -> tuple[bool, dict[str, Any]]:
        with tracer.activated():
            return finish(call, await pending)

    setattr(execute_function, _MARK, tracer)
    agent.execute_function = execute_function
    agent.a_execute_function = a_execute_function


def track_usage(agent: Any, tracer: Tracer) -> None:
    """Record the tokens an AG2 agent's LLM client reports, after each message it sends."""
    last: dict[str, tuple[int, int]] = {}

    def record(sender: Any = None, message: Any = None, recipient: Any = None, silent: Any = None) -> Any:
        summary = getattr(getattr(agent, "client", None), "total_usage_summary", None) or {}
        for model, usage in summary.items():
            if not isinstance(usage, dict):
                continue  # the "total_cost" entry
            now = (int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
            before = last.get(model, (0, 0))
            if now != before:
                last[model] = now
                tracer.record_llm_usage(model=model, input_tokens=now[0] - before[0],
                                        output_tokens=now[1] - before[1])
        return message

    agent.register_hook("process_message_before_send", record)


def track_task(agent: Any, tracer: Tracer) -> None:
    """The chat's initiating message (its first) is the user's task, before each reply."""

    def capture(messages: Any) -> Any:
        if isinstance(messages, list) and messages:
            first = messages[0]
            capture_task(tracer, [{"role": "user", "content": first.get("content")}] if isinstance(first, dict) else first)
        return messages

    agent.register_hook("process_all_messages_before_reply", capture)


# autogen-agentchat ----------------------------------------------------------------------------
class _AgentchatGovernor:
    def __init__(self, tracer: Tracer, on_block: OnBlock) -> None:
        self.tracer = tracer
        self.on_block = on_block
        self.violations: list[ThothPolicyViolation] = []


class _Blocked(Exception):
    """Raised in run_json so the workbench reports an is_error result carrying Thoth's text."""


def _govern_run_json(governor: _AgentchatGovernor, tool: Any) -> None:
    """agentchat: each tool call reaches `tool.run_json(args, token, call_id=...)`; its workbench
    turns an exception into an is_error result."""
    inner = tool.run_json
    if getattr(inner, _MARK, None) is governor.tracer:
        return
    tracer = governor.tracer

    async def run_json(args: Any, cancellation_token: Any, call_id: str | None = None) -> Any:
        try:
            call = await tracer.agovern(tool.name, dict(args), call_id=call_id)
        except ThothPolicyViolation as exc:
            governor.violations.append(exc)
            raise _Blocked(block_message(exc)) from None
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


def _govern_runs(agent: Any, governor: _AgentchatGovernor) -> None:
    """Record each run's token usage; in raise mode, raise a block once the run is over."""
    run, run_stream = getattr(agent, "run", None), getattr(agent, "run_stream", None)
    if run is None or run_stream is None or getattr(run, _MARK, None) is governor.tracer:
        return

    def conclude(result: Any) -> None:
        for message in getattr(result, "messages", None) or []:
            usage = getattr(message, "models_usage", None)
            if usage is not None and (usage.prompt_tokens or usage.completion_tokens):
                governor.tracer.record_llm_usage(model=str(getattr(agent, "name", "agent")),
                                                 input_tokens=usage.prompt_tokens,
                                                 output_tokens=usage.completion_tokens)
        blocked, governor.violations[:] = list(governor.violations), []
        if blocked and governor.on_block == "raise":
            raise blocked[0]

    async def governed_run(*args: Any, **kwargs: Any) -> Any:
        capture_task(governor.tracer, kwargs.get("task", args[0] if args else None))
        governor.violations.clear()
        result = await run(*args, **kwargs)
        conclude(result)
        return result

    async def governed_run_stream(*args: Any, **kwargs: Any) -> Any:
        capture_task(governor.tracer, kwargs.get("task", args[0] if args else None))
        governor.violations.clear()
        async for item in run_stream(*args, **kwargs):
            if type(item).__name__ == "TaskResult":
                conclude(item)
            yield item

    setattr(governed_run, _MARK, governor.tracer)
    agent.run = governed_run
    agent.run_stream = governed_run_stream
