"""autogen-agentchat 0.7: real AssistantAgent runs driven by autogen-ext's
ReplayChatCompletionClient (the framework's own scripted model), governed by thoth.instrument."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.messages import ToolCallExecutionEvent
from autogen_core import FunctionCall
from autogen_core.models import CreateResult, RequestUsage
from autogen_core.tools import FunctionTool
from autogen_ext.models.replay import ReplayChatCompletionClient

import thoth
from thoth import ThothPolicyViolation

from ..support import instrument_settings

MODEL_INFO = {"vision": False, "function_calling": True, "json_output": False, "family": "unknown",
              "structured_output": False}
PARALLEL = [("get_weather", {"city": "Paris"}), ("delete_file", {"path": "/etc"})]
_ids = itertools.count()


def client(*calls: tuple[str, dict]) -> ReplayChatCompletionClient:
    import json

    turn = CreateResult(finish_reason="function_calls", cached=False,
                        usage=RequestUsage(prompt_tokens=11, completion_tokens=7),
                        content=[FunctionCall(id=f"c{next(_ids)}", name=name, arguments=json.dumps(args))
                                 for name, args in calls])
    return ReplayChatCompletionClient([turn, "done"], model_info=MODEL_INFO)  # type: ignore[arg-type]


def make_agent(model: ReplayChatCompletionClient, ran) -> AssistantAgent:
    async def get_weather(city: str) -> str:
        return ran("get_weather", city=city)

    async def delete_file(path: str) -> str:
        return ran("delete_file", path=path)

    def transfer_money(amount: str) -> str:
        return ran("transfer_money", amount=amount)

    def wire_funds(amount: str) -> str:
        return ran("wire_funds", amount=amount)

    tools = [FunctionTool(f, description=f.__name__) for f in (get_weather, delete_file, transfer_money, wire_funds)]
    return AssistantAgent("ops", model_client=model, tools=tools)


def results(task_result) -> dict[str, tuple[str, bool]]:
    out = {}
    for message in task_result.messages:
        if isinstance(message, ToolCallExecutionEvent):
            for r in message.content:
                out[r.name] = (r.content, r.is_error)
    return out


@pytest.mark.parametrize("streamed", [False, True])
def test_block_is_an_error_result_and_sibling_runs(governance, ran, streamed):
    agent = make_agent(client(*PARALLEL), ran)
    assert thoth.instrument(agent, **instrument_settings(governance)) is agent

    async def main():
        if not streamed:
            return await agent.run(task="weather, then clean up")
        last = None
        async for item in agent.run_stream(task="weather, then clean up"):
            last = item
        return last

    out = results(asyncio.run(main()))
    assert out["get_weather"] == ("get_weather ok", False)
    assert out["delete_file"][1] is True and "blocked by Thoth" in out["delete_file"][0]
    assert ran.names == ["get_weather"]
    assert governance.enforce_counts() == {"get_weather": 1, "delete_file": 1}


def test_raise_mode_raises_after_the_run(governance, ran):
    agent = make_agent(client(("delete_file", {"path": "/"})), ran)
    thoth.instrument(agent, **instrument_settings(governance, on_block="raise"))
    with pytest.raises(ThothPolicyViolation) as info:
        asyncio.run(agent.run(task="clean up"))
    assert info.value.tool_name == "delete_file"
    assert ran.names == []
    assert governance.enforce_counts() == {"delete_file": 1}


def test_step_up_approve_and_deny_and_token_usage(governance, tracer, ran):
    from thoth.integrations.autogen import instrument_agent

    agent = make_agent(client(("transfer_money", {"amount": "10"}), ("wire_funds", {"amount": "99"})), ran)
    instrument_agent(agent, tracer)
    out = results(asyncio.run(agent.run(task="pay")))
    assert out["transfer_money"] == ("transfer_money ok", False)
    assert out["wire_funds"][1] is True and "denied by reviewer" in out["wire_funds"][0]
    assert ran.names == ["transfer_money"]
    assert governance.enforce_counts() == {"transfer_money": 1, "wire_funds": 1}
    assert governance.approvals() == {"transfer_money": "approved", "wire_funds": "denied"}
    assert tracer.session.token_spend == 18  # the replayed turn reported 11 + 7 tokens


@pytest.mark.parametrize("streamed", [False, True])
def test_the_run_task_is_the_sessions_task(governance, ran, streamed):
    agent = make_agent(client(("get_weather", {"city": "Oslo"})), ran)
    thoth.instrument(agent, **instrument_settings(governance))
    session = thoth.get_current_session()

    async def main():
        if not streamed:
            return await agent.run(task="what is the weather in Oslo?")
        async for _ in agent.run_stream(task="what is the weather in Oslo?"):
            pass

    asyncio.run(main())
    assert ran.names == ["get_weather"]
    assert session.task is not None and session.task.text == "what is the weather in Oslo?"
    assert session.sources.sources_for({"city": "Oslo"}) == {"city": ["task"]}
