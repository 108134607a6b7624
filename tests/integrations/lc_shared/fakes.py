"""A LangChain chat model that emits scripted tool calls (the shipped fakes cannot bind tools)."""

from __future__ import annotations

import itertools
import json
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage


class ToolCallingFakeModel(GenericFakeChatModel):
    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolCallingFakeModel:
        return self

    def bind(self, **kwargs: Any) -> Any:  # classic create_openai_tools_agent uses bind(tools=...)
        return self


_runs = itertools.count()  # tool-call ids are unique per run, as a provider's are
USAGE = {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18}


def scripted(*turns: list[tuple[str, dict[str, Any]]], final: str = "done") -> ToolCallingFakeModel:
    """A fresh model (its iterator is consumed by one run): one AIMessage per turn, then `final`."""
    messages: list[AIMessage] = []
    run = next(_runs)
    for n, calls in enumerate(turns):
        tool_calls = [{"name": name, "args": args, "id": f"r{run}c{n}_{i}", "type": "tool_call"}
                      for i, (name, args) in enumerate(calls)]
        messages.append(AIMessage("", tool_calls=tool_calls, usage_metadata=USAGE,
                                  response_metadata={"model_name": "fake-model"}))
    messages.append(AIMessage(final, usage_metadata=USAGE, response_metadata={"model_name": "fake-model"}))
    return ToolCallingFakeModel(messages=iter(messages))


def scripted_openai_format(*turns: list[tuple[str, dict[str, Any]]], final: str = "done") -> ToolCallingFakeModel:
    """For classic create_openai_tools_agent: tool calls in additional_kwargs, OpenAI style."""
    messages: list[AIMessage] = []
    run = next(_runs)
    for n, calls in enumerate(turns):
        raw = [{"id": f"r{run}c{n}_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
               for i, (name, args) in enumerate(calls)]
        messages.append(AIMessage("", additional_kwargs={"tool_calls": raw}, usage_metadata=USAGE,
                                  response_metadata={"model_name": "fake-model"}))
    messages.append(AIMessage(final, usage_metadata=USAGE, response_metadata={"model_name": "fake-model"}))
    return ToolCallingFakeModel(messages=iter(messages))
