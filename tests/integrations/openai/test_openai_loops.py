"""OpenAI SDK loops against a loopback stub of the API (real client, real HTTP, streaming)."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
from llm_stub import LLMStub

import thoth
from thoth import ThothPolicyViolation
from thoth.integrations.openai import govern_tools

from ..support import instrument_settings

PARALLEL = [("get_weather", {"city": "Paris"}), ("delete_file", {"path": "/etc"})]
TOOLS = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
         for n in ("get_weather", "delete_file", "transfer_money", "wire_funds")]


def functions(ran):
    return {
        "get_weather": lambda city: ran("get_weather", city=city),
        "delete_file": lambda path: ran("delete_file", path=path),
        "transfer_money": lambda amount: ran("transfer_money", amount=amount),
        "wire_funds": lambda amount: ran("wire_funds", amount=amount),
    }


def last_tool_contents(stub: LLMStub) -> list[str]:
    messages = stub.requests[-1]["body"]["messages"]
    return [m["content"] for m in messages if m.get("role") == "tool"]


def test_seed_instrument_openai_chat_loop(governance, ran):
    governed = thoth.instrument_openai(functions(ran), **instrument_settings(governance, enforcement="block"))
    with LLMStub([PARALLEL]) as stub:
        client = openai.OpenAI(base_url=stub.openai_url, api_key="test", max_retries=0)
        messages: list = [{"role": "user", "content": "weather and cleanup"}]
        while True:  # the seed's loop, verbatim in spirit
            response = client.chat.completions.create(model="gpt-4o", tools=TOOLS, messages=messages)
            msg = response.choices[0].message
            if not msg.tool_calls:
                break
            messages.append(msg)
            for call in msg.tool_calls:
                try:
                    result = governed[call.function.name](json.loads(call.function.arguments))
                except ThothPolicyViolation as e:
                    result = f"[blocked: {e.reason}]"
                messages.append({"role": "tool", "tool_call_id": call.id, "content": str(result)})
        assert "[blocked: not allowed here]" in last_tool_contents(stub)
    assert ran.names == ["get_weather"]
    assert governance.enforce_counts() == {"get_weather": 1, "delete_file": 1}


def test_streaming_chat_loop_checks_whole_calls(governance, tracer, ran):
    tools = govern_tools(functions(ran), tracer, on_block="return")
    with LLMStub([PARALLEL, [("transfer_money", {"amount": "5"}), ("wire_funds", {"amount": "7"})]]) as stub:
        client = openai.OpenAI(base_url=stub.openai_url, api_key="test", max_retries=0)
        messages: list = [{"role": "user", "content": "go"}]
        while True:
            calls: dict[int, dict] = {}
            text = ""
            stream = client.chat.completions.create(model="gpt-4o", tools=TOOLS, messages=messages, stream=True,
                                                    stream_options={"include_usage": True})
            for chunk in stream:
                if chunk.usage:
                    tools.record_usage(chunk)
                for choice in chunk.choices:
                    text += choice.delta.content or ""
                    for part in choice.delta.tool_calls or []:
                        call = calls.setdefault(part.index, {"id": None, "function": {"name": "", "arguments": ""}})
                        call["id"] = part.id or call["id"]
                        call["function"]["name"] += part.function.name or ""
                        call["function"]["arguments"] += part.function.arguments or ""
            if not calls:
                break
            message = {"role": "assistant", "content": None,
                       "tool_calls": [{"type": "function", **c} for c in calls.values()]}
            messages.append(message)
            messages += tools.chat_tool_messages(message)
        contents = last_tool_contents(stub)
    assert ran.names == ["get_weather", "transfer_money"]
    assert governance.enforce_counts() == {"get_weather": 1, "delete_file": 1, "transfer_money": 1, "wire_funds": 1}
    assert sum("blocked by Thoth" in c for c in contents) == 2  # delete_file, and the denied wire_funds
    assert "denied by reviewer" in " ".join(contents)
    assert tracer.session.token_spend == 3 * 18
    assert "blocked by Thoth" in text


def test_async_responses_loop_with_async_tools(governance, tracer, ran):
    async def get_weather(city: str) -> str:
        await asyncio.sleep(0)
        return ran("get_weather", city=city)

    async def delete_file(path: str) -> str:
        return ran("delete_file", path=path)

    tools = govern_tools({"get_weather": get_weather, "delete_file": delete_file}, tracer, on_block="return")

    async def main() -> str:
        with LLMStub([PARALLEL]) as stub:
            client = openai.AsyncOpenAI(base_url=stub.openai_url, api_key="test", max_retries=0)
            items: list = [{"role": "user", "content": "go"}]
            while True:
                response = await client.responses.create(model="gpt-4o", input=items)
                tools.record_usage(response)
                outputs = await tools.aresponses_outputs(response)
                if not outputs:
                    return response.output_text
                items += [item.model_dump(exclude_none=True) for item in response.output] + outputs

    final = asyncio.run(main())
    assert "blocked by Thoth" in final and "get_weather ok" in final
    assert ran.names == ["get_weather"]
    assert governance.enforce_counts() == {"get_weather": 1, "delete_file": 1}
    assert tracer.session.token_spend == 2 * 18


def test_raise_mode_propagates_and_body_never_runs(governance, tracer, ran):
    tools = govern_tools(functions(ran), tracer)
    with pytest.raises(ThothPolicyViolation):
        tools.chat_tool_messages({"tool_calls": [
            {"id": "x1", "function": {"name": "delete_file", "arguments": '{"path": "/"}'}}]})
    assert tools["get_weather"]('{"city": "Oslo"}') == "get_weather ok"  # JSON text is accepted too
    assert ran.names == ["get_weather"]
    assert governance.enforce_counts() == {"delete_file": 1, "get_weather": 1}


def test_the_clients_last_user_message_is_the_task(governance, ran):
    """instrument_openai(..., client=client): each request's last user message is the task the
    tools run under (docs/provenance.md); tool replies in between do not replace it."""
    seen = []

    def get_weather(city):
        seen.append(thoth.get_current_session().task.text)
        return ran("get_weather", city=city)

    with LLMStub([[("get_weather", {"city": "Oslo"})], [("get_weather", {"city": "Rome"})]]) as stub:
        client = openai.OpenAI(base_url=stub.openai_url, api_key="test", max_retries=0)
        governed = thoth.instrument_openai({"get_weather": get_weather},
                                           **instrument_settings(governance, client=client))
        messages: list = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "weather in Oslo?"}]
        for _ in range(2):
            msg = client.chat.completions.create(model="gpt-4o", tools=TOOLS, messages=messages).choices[0].message
            messages.append(msg)
            for call in msg.tool_calls or []:
                out = governed[call.function.name](json.loads(call.function.arguments))
                messages.append({"role": "tool", "tool_call_id": call.id, "content": str(out)})
    assert seen == ["weather in Oslo?", "weather in Oslo?"]
