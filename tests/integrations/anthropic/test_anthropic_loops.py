"""Anthropic SDK: the seed's messages.create loop, streaming, and the beta tool_runner,
against a loopback stub of the Messages API."""

from __future__ import annotations

import asyncio

import anthropic
import pytest
from anthropic import beta_async_tool, beta_tool
from llm_stub import LLMStub

import thoth
from thoth import ThothPolicyViolation
from thoth.integrations.anthropic import govern_runner_tools, govern_tools

from ..support import instrument_settings

PARALLEL = [("get_weather", {"city": "Paris"}), ("delete_file", {"path": "/etc"})]
TOOLS = [{"name": n, "description": n, "input_schema": {"type": "object"}}
         for n in ("get_weather", "delete_file", "transfer_money", "wire_funds")]


def functions(ran):
    return {
        "get_weather": lambda city: ran("get_weather", city=city),
        "delete_file": lambda path: ran("delete_file", path=path),
        "transfer_money": lambda amount: ran("transfer_money", amount=amount),
        "wire_funds": lambda amount: ran("wire_funds", amount=amount),
    }


def sent_results(stub: LLMStub) -> list[dict]:
    return [b for m in stub.requests[-1]["body"]["messages"] if isinstance(m["content"], list)
            for b in m["content"] if b.get("type") == "tool_result"]


def test_seed_instrument_anthropic_loop(governance, ran):
    governed = thoth.instrument_anthropic(functions(ran), **instrument_settings(governance, enforcement="step_up"))
    with LLMStub([PARALLEL, [("transfer_money", {"amount": "1"})]]) as stub:
        client = anthropic.Anthropic(base_url=stub.url, api_key="test", max_retries=0)
        messages: list = [{"role": "user", "content": "Find our data retention policy."}]
        while True:
            response = client.messages.create(model="claude-opus-4-6", max_tokens=1024, tools=TOOLS, messages=messages)
            if response.stop_reason == "end_turn":
                break
            tool_results = []
            for block in response.content:
                if block.type == "tool_use":
                    try:
                        result = governed[block.name](block.input)
                    except ThothPolicyViolation as e:
                        result = f"[blocked: {e.reason}]"
                    tool_results.append({"type": "tool_result", "tool_use_id": block.id, "content": str(result)})
            messages += [{"role": "assistant", "content": response.content}, {"role": "user", "content": tool_results}]
        assert "[blocked: not allowed here]" in [r["content"] for r in sent_results(stub)]
    assert ran.names == ["get_weather", "transfer_money"]
    assert governance.enforce_counts() == {"get_weather": 1, "delete_file": 1, "transfer_money": 1}


@pytest.mark.parametrize("asynchronous", [False, True])
def test_streaming_loop_with_error_results(governance, tracer, ran, asynchronous):
    tools = govern_tools(functions(ran), tracer, on_block="return")
    plan = [PARALLEL, [("wire_funds", {"amount": "3"})]]

    def run_sync(stub: LLMStub) -> str:
        client = anthropic.Anthropic(base_url=stub.url, api_key="test", max_retries=0)
        messages: list = [{"role": "user", "content": "go"}]
        while True:
            with client.messages.stream(model="claude-sonnet-4-5", max_tokens=256, tools=TOOLS, messages=messages) as s:
                message = s.get_final_message()
            tools.record_usage(message)
            if message.stop_reason != "tool_use":
                return message.content[0].text
            messages += [{"role": "assistant", "content": message.content},
                         {"role": "user", "content": tools.tool_results(message)}]

    async def run_async(stub: LLMStub) -> str:
        client = anthropic.AsyncAnthropic(base_url=stub.url, api_key="test", max_retries=0)
        messages: list = [{"role": "user", "content": "go"}]
        while True:
            async with client.messages.stream(model="claude-sonnet-4-5", max_tokens=256, tools=TOOLS,
                                              messages=messages) as s:
                message = await s.get_final_message()
            tools.record_usage(message)
            if message.stop_reason != "tool_use":
                return message.content[0].text
            messages += [{"role": "assistant", "content": message.content},
                         {"role": "user", "content": await tools.atool_results(message)}]

    with LLMStub(plan) as stub:
        final = asyncio.run(run_async(stub)) if asynchronous else run_sync(stub)
        errors = [r for r in sent_results(stub) if r.get("is_error")]
    assert len(errors) == 2 and "denied by reviewer" in final
    assert ran.names == ["get_weather"]
    assert governance.enforce_counts() == {"get_weather": 1, "delete_file": 1, "wire_funds": 1}
    assert tracer.session.token_spend == 3 * 18


def test_tool_runner_sync_and_async(governance, tracer, ran):
    @beta_tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return ran("get_weather", city=city)

    @beta_tool
    def delete_file(path: str) -> str:
        """Delete a file."""
        return ran("delete_file", path=path)

    tools = govern_runner_tools([get_weather, delete_file], tracer)
    with LLMStub([PARALLEL]) as stub:
        client = anthropic.Anthropic(base_url=stub.url, api_key="test", max_retries=0)
        runner = client.beta.messages.tool_runner(model="claude-sonnet-4-5", max_tokens=256, tools=tools,
                                                  messages=[{"role": "user", "content": "go"}])
        final = runner.until_done()
        assert "blocked by Thoth" in final.content[0].text
    assert [v.tool_name for v in tools.violations] == ["delete_file"]

    @beta_async_tool
    async def wire_funds(amount: str) -> str:
        """Wire money."""
        return ran("wire_funds", amount=amount)

    @beta_async_tool
    async def transfer_money(amount: str) -> str:
        """Transfer money."""
        return ran("transfer_money", amount=amount)

    async_tools = govern_runner_tools([wire_funds, transfer_money], tracer)

    async def main() -> str:
        with LLMStub([[("wire_funds", {"amount": "9"}), ("transfer_money", {"amount": "2"})]]) as stub:
            client = anthropic.AsyncAnthropic(base_url=stub.url, api_key="test", max_retries=0)
            runner = client.beta.messages.tool_runner(model="claude-sonnet-4-5", max_tokens=256, tools=async_tools,
                                                      messages=[{"role": "user", "content": "go"}])
            message = await runner.until_done()
            return message.content[0].text

    assert "denied by reviewer" in asyncio.run(main())
    assert ran.names == ["get_weather", "transfer_money"]
    assert governance.enforce_counts() == {"get_weather": 1, "delete_file": 1, "wire_funds": 1, "transfer_money": 1}


def test_the_clients_last_user_message_is_the_task(governance, ran):
    """instrument_anthropic(..., client=client): the user's message is the task; the tool_result
    turns the loop sends back as role "user" carry no text and leave it as it was."""
    seen = []

    def get_weather(city):
        seen.append(thoth.get_current_session().task.text)
        return ran("get_weather", city=city)

    with LLMStub([[("get_weather", {"city": "Oslo"})], [("get_weather", {"city": "Rome"})]]) as stub:
        client = anthropic.Anthropic(base_url=stub.url, api_key="test", max_retries=0)
        governed = thoth.instrument_anthropic({"get_weather": get_weather},
                                              **instrument_settings(governance, client=client))
        messages: list = [{"role": "user", "content": [{"type": "text", "text": "weather in Oslo?"}]}]
        for _ in range(2):
            response = client.messages.create(model="claude-opus-4-6", max_tokens=64, tools=TOOLS, messages=messages)
            results = [{"type": "tool_result", "tool_use_id": b.id, "content": str(governed[b.name](b.input))}
                       for b in response.content if b.type == "tool_use"]
            messages += [{"role": "assistant", "content": response.content}, {"role": "user", "content": results}]
    assert seen == ["weather in Oslo?", "weather in Oslo?"]
