"""AG2 Classic (`import autogen`): the seed's wrap_autogen_tools function map, a real
two-agent chat against the OpenAI API stub, and thoth.instrument() on a UserProxyAgent."""

from __future__ import annotations

import asyncio
import json

import autogen
from llm_stub import LLMStub

import thoth
from thoth.integrations.autogen import wrap_autogen_tools

from ..support import instrument_settings


def functions(ran):
    def get_weather(city: str) -> str:
        return ran("get_weather", city=city)

    def delete_file(path: str) -> str:
        return ran("delete_file", path=path)

    async def wire_funds(amount: str) -> str:
        return ran("wire_funds", amount=amount)

    def transfer_money(amount: str) -> str:
        return ran("transfer_money", amount=amount)

    return {f.__name__: f for f in (get_weather, delete_file, wire_funds, transfer_money)}


def tool_call_message(*calls):
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": f"c{i}-{name}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
        for i, (name, args) in enumerate(calls)]}


def test_seed_function_map_generate_reply_sync_and_async(governance, tracer, ran):
    proxy = autogen.UserProxyAgent("user_proxy", human_input_mode="NEVER", code_execution_config=False,
                                   function_map=wrap_autogen_tools(functions(ran), tracer=tracer))
    assistant = autogen.AssistantAgent("assistant", llm_config=False)
    reply = proxy.generate_reply(messages=[tool_call_message(("get_weather", {"city": "Paris"}),
                                                             ("delete_file", {"path": "/etc"}))], sender=assistant)
    contents = {r["tool_call_id"].split("-", 1)[1]: r["content"] for r in reply["tool_responses"]}
    assert contents["get_weather"] == "get_weather ok"
    assert "blocked by Thoth" in contents["delete_file"]
    reply = asyncio.run(proxy.a_generate_reply(
        messages=[tool_call_message(("wire_funds", {"amount": "5"}), ("transfer_money", {"amount": "1"}))],
        sender=assistant))
    contents = {r["tool_call_id"].split("-", 1)[1]: r["content"] for r in reply["tool_responses"]}
    assert "denied by reviewer" in contents["wire_funds"]
    assert contents["transfer_money"] == "transfer_money ok"
    assert ran.names == ["get_weather", "transfer_money"]
    assert governance.enforce_counts() == {"get_weather": 1, "delete_file": 1, "wire_funds": 1, "transfer_money": 1}


def test_instrument_user_proxy_real_chat_against_stub(governance, ran):
    with LLMStub([[("get_weather", {"city": "Rome"}), ("delete_file", {"path": "/"})]]) as stub:
        config = {"config_list": [{"model": "stub", "api_key": "x", "base_url": stub.openai_url}], "cache_seed": None}
        fns = functions(ran)
        assistant = autogen.AssistantAgent("assistant", llm_config=config)
        for name in ("get_weather", "delete_file"):
            assistant.register_for_llm(name=name, description=name)(fns[name])
        proxy = autogen.UserProxyAgent("user_proxy", human_input_mode="NEVER", code_execution_config=False,
                                       function_map={"get_weather": fns["get_weather"], "delete_file": fns["delete_file"]})
        assert thoth.instrument(proxy, **instrument_settings(governance)) is proxy
        proxy.initiate_chat(assistant, message="weather then cleanup", max_turns=2, silent=True)
        sent = [m for r in stub.requests for m in r["body"]["messages"] if m.get("role") == "tool"]
    assert any("blocked by Thoth" in m["content"] for m in sent)
    assert ran.names == ["get_weather"]
    assert governance.enforce_counts() == {"get_weather": 1, "delete_file": 1}
