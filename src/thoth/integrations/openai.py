"""OpenAI Python SDK: hand-written Chat Completions and Responses loops.

The SDK never runs tools itself, so the loop's dispatch is the hook. `thoth.instrument_openai`
(the seed's API) returns governed functions called with the parsed arguments; `govern_tools`
here returns the same plus helpers that turn a model turn into the tool replies:

    tools = govern_tools({"search_docs": search_docs}, tracer, on_block="return")
    messages += tools.chat_tool_messages(msg)          # Chat Completions: role=tool messages
    input_items += tools.responses_outputs(response)    # Responses: function_call_output items
    tools.record_usage(response)                         # token spend -> session + LLM_INVOCATION

With streaming, assemble the stream first (the SDK's `stream.get_final_completion()` or your
own accumulation): tool arguments arrive in fragments and are checked only whole.
"""

from __future__ import annotations

from typing import Any

from thoth.integrations._base import GovernedTools, OnBlock, attr, capture_client_tasks


class OpenAITools(GovernedTools):
    def chat_tool_messages(self, message: Any) -> list[dict[str, Any]]:
        """One `{"role": "tool", ...}` message per tool call of an assistant message."""
        out = []
        for call in attr(message, "tool_calls") or []:
            fn = attr(call, "function")
            content, _ = self.result_for(attr(fn, "name"), attr(fn, "arguments"), attr(call, "id"))
            out.append({"role": "tool", "tool_call_id": attr(call, "id"), "content": content})
        return out

    async def achat_tool_messages(self, message: Any) -> list[dict[str, Any]]:
        out = []
        for call in attr(message, "tool_calls") or []:
            fn = attr(call, "function")
            content, _ = await self.aresult_for(attr(fn, "name"), attr(fn, "arguments"), attr(call, "id"))
            out.append({"role": "tool", "tool_call_id": attr(call, "id"), "content": content})
        return out

    def responses_outputs(self, response: Any) -> list[dict[str, Any]]:
        """One `function_call_output` item per `function_call` item of a Responses reply."""
        out = []
        for item in attr(response, "output") or []:
            if attr(item, "type") == "function_call":
                content, _ = self.result_for(attr(item, "name"), attr(item, "arguments"), attr(item, "call_id"))
                out.append({"type": "function_call_output", "call_id": attr(item, "call_id"), "output": content})
        return out

    async def aresponses_outputs(self, response: Any) -> list[dict[str, Any]]:
        out = []
        for item in attr(response, "output") or []:
            if attr(item, "type") == "function_call":
                content, _ = await self.aresult_for(attr(item, "name"), attr(item, "arguments"), attr(item, "call_id"))
                out.append({"type": "function_call_output", "call_id": attr(item, "call_id"), "output": content})
        return out

    def record_usage(self, response: Any) -> None:
        record_usage(self.tracer, response)


def govern_tools(tools: dict[str, Any], tracer: Any, *, on_block: OnBlock = "raise", client: Any = None) -> OpenAITools:
    """`client`: the loop's openai client; the last user message of each request is the task."""
    if client is not None:
        capture_client_tasks(client, tracer, "openai")
    return OpenAITools(tools, tracer, on_block=on_block)


def record_usage(tracer: Any, response: Any) -> None:
    """Token usage of a ChatCompletion, a final stream chunk, or a Responses reply."""
    usage = attr(response, "usage")
    if not usage:
        return
    tokens_in = attr(usage, "prompt_tokens", None)
    tokens_out = attr(usage, "completion_tokens", None)
    if tokens_in is None:  # the Responses API spells them differently
        tokens_in, tokens_out = attr(usage, "input_tokens", 0), attr(usage, "output_tokens", 0)
    tracer.record_llm_usage(model=str(attr(response, "model") or "unknown"), input_tokens=int(tokens_in or 0),
                            output_tokens=int(tokens_out or 0), provider="openai")
