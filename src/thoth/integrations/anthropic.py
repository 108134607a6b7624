"""Anthropic Python SDK: `messages.create` loops and the beta `tool_runner`.

    tools = govern_tools({"search_docs": search_docs}, tracer, on_block="return")
    results = tools.tool_results(response)      # tool_result blocks (is_error for blocks)
    tools.record_usage(response)

    runner_tools = govern_runner_tools([beta_tool(search_docs)], tracer)
    client.beta.messages.tool_runner(tools=runner_tools, ...)

The tool runner turns every exception of a tool into an `is_error` tool_result, so a block
there always goes back to the model; to stop the run on a block, use a `messages.create` loop
with on_block="raise" (the seed's spelling) or check `tools.violations` after each turn.
"""

from __future__ import annotations

import inspect
from typing import Any

from thoth.exceptions import ThothPolicyViolation
from thoth.integrations._base import GovernedTools, OnBlock, attr, block_message, capture_client_tasks


class AnthropicTools(GovernedTools):
    def tool_results(self, message: Any) -> list[dict[str, Any]]:
        """One `tool_result` block per `tool_use` block of an assistant message."""
        out = []
        for block in attr(message, "content") or []:
            if attr(block, "type") == "tool_use":
                content, is_error = self.result_for(attr(block, "name"), attr(block, "input"), attr(block, "id"))
                out.append(_result(attr(block, "id"), content, is_error))
        return out

    async def atool_results(self, message: Any) -> list[dict[str, Any]]:
        out = []
        for block in attr(message, "content") or []:
            if attr(block, "type") == "tool_use":
                content, is_error = await self.aresult_for(attr(block, "name"), attr(block, "input"), attr(block, "id"))
                out.append(_result(attr(block, "id"), content, is_error))
        return out

    def record_usage(self, message: Any) -> None:
        record_usage(self.tracer, message)


def _result(tool_use_id: Any, content: str, is_error: bool) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id, "content": content}
    if is_error:
        block["is_error"] = True
    return block


def govern_tools(tools: dict[str, Any], tracer: Any, *, on_block: OnBlock = "raise", client: Any = None) -> AnthropicTools:
    """`client`: the loop's anthropic client; the last user message of each request is the task."""
    if client is not None:
        capture_client_tasks(client, tracer, "anthropic")
    return AnthropicTools(tools, tracer, on_block=on_block)


def record_usage(tracer: Any, message: Any) -> None:
    usage = attr(message, "usage")
    if usage:
        tracer.record_llm_usage(model=str(attr(message, "model") or "unknown"),
                                input_tokens=int(attr(usage, "input_tokens", 0) or 0),
                                output_tokens=int(attr(usage, "output_tokens", 0) or 0), provider="anthropic")


class RunnerViolations(list[ThothPolicyViolation]):
    """Blocks seen by governed runner tools (the runner itself never lets them out)."""


def govern_runner_tools(tools: list[Any], tracer: Any) -> list[Any]:
    """Govern `beta_tool` / `beta_async_tool` objects for `client.beta.messages.tool_runner`, in
    place (the runner copies its tool list when built: govern first). A block becomes an
    `is_error` tool_result the model reads; the violations are kept on `governed.violations`."""
    violations = RunnerViolations()
    for tool in tools:
        if getattr(tool.call, "__thoth_tracer__", None) is tracer:
            continue
        name, inner = tool.name, tool.call
        if inspect.iscoroutinefunction(inner):
            async def acall(input: object, _name: str = name, _inner: Any = inner) -> Any:
                try:
                    governed = await tracer.agovern(_name, input if isinstance(input, dict) else {"input": input})
                except ThothPolicyViolation as exc:
                    violations.append(exc)
                    raise _runner_error(block_message(exc)) from exc
                with tracer.activated():
                    return governed.done(await _inner(governed.tool_args))

            wrapper: Any = acall
        else:
            def call(input: object, _name: str = name, _inner: Any = inner) -> Any:
                try:
                    governed = tracer.govern(_name, input if isinstance(input, dict) else {"input": input})
                except ThothPolicyViolation as exc:
                    violations.append(exc)
                    raise _runner_error(block_message(exc)) from exc
                with tracer.activated():
                    return governed.done(_inner(governed.tool_args))

            wrapper = call
        wrapper.__thoth_tracer__ = tracer
        tool.call = wrapper
    result: Any = tools
    try:
        result.violations = violations  # a plain list cannot carry attributes
    except AttributeError:
        result = _ToolList(tools, violations)
    return result  # type: ignore[no-any-return]


class _ToolList(list[Any]):
    def __init__(self, tools: list[Any], violations: RunnerViolations) -> None:
        super().__init__(tools)
        self.violations = violations


def _runner_error(text: str) -> Exception:
    """The runner shows a ToolError's content as the is_error result, without logging a traceback."""
    try:
        from anthropic.lib.tools import ToolError
    except ImportError:  # older SDKs: any exception becomes an is_error result
        return RuntimeError(text)
    return ToolError(text)
