"""LangChain 1.x create_agent (middleware) and classic AgentExecutor (instrument), real loops."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from langchain.agents import create_agent
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool

import thoth
from thoth import ThothPolicyViolation
from thoth.integrations.langchain import ThothMiddleware, middleware, wrap_tool

from ..lc_shared.fakes import scripted, scripted_openai_format
from ..lc_shared.tools import make_tools
from ..support import instrument_settings

PARALLEL = [("get_weather", {"city": "Paris"}), ("delete_file", {"path": "/etc"})]


def tool_messages(result: dict) -> dict[str, ToolMessage]:
    return {m.name: m for m in result["messages"] if isinstance(m, ToolMessage)}


@pytest.mark.parametrize("mode", ["sync", "async", "stream"])
def test_create_agent_middleware_governs_each_call_once(governance, tracer, ran, mode):
    tools = make_tools(ran, asynchronous=(mode == "async"))
    agent = create_agent(scripted(PARALLEL), tools, middleware=[middleware(tracer)])
    inputs = {"messages": [("user", "weather, then clean up")]}
    if mode == "sync":
        result = agent.invoke(inputs)
    elif mode == "async":
        result = asyncio.run(agent.ainvoke(inputs))
    else:
        result = None
        for chunk in agent.stream(inputs, stream_mode="values"):
            result = chunk
    assert governance.enforce_counts() == {"get_weather": 1, "delete_file": 1}
    assert ran.names == ["get_weather"]  # the blocked body never ran
    messages = tool_messages(result)
    assert messages["get_weather"].content == "get_weather ok"  # the sibling kept its result
    assert messages["delete_file"].status == "error"
    assert "blocked by Thoth" in messages["delete_file"].content
    assert tracer.session.token_spend == 2 * 18  # two model turns recorded
    assert tracer.session.tool_calls == ["get_weather"]


def test_middleware_raise_mode_stops_the_run(governance, tracer, ran):
    agent = create_agent(scripted([("delete_file", {"path": "/etc"})]), make_tools(ran),
                         middleware=[ThothMiddleware(tracer, on_block="raise")])
    with pytest.raises(ThothPolicyViolation) as info:
        agent.invoke({"messages": [("user", "clean up")]})
    assert info.value.tool_name == "delete_file"
    assert ran.names == []
    assert governance.enforce_counts() == {"delete_file": 1}


@pytest.mark.parametrize("asynchronous", [False, True])
def test_step_up_approve_and_deny_end_to_end(governance, tracer, ran, asynchronous):
    turns = [("transfer_money", {"amount": "10"}), ("wire_funds", {"amount": "99"})]
    agent = create_agent(scripted(turns), make_tools(ran, asynchronous=asynchronous), middleware=[middleware(tracer)])
    inputs = {"messages": [("user", "pay")]}
    result = asyncio.run(agent.ainvoke(inputs)) if asynchronous else agent.invoke(inputs)
    assert ran.names == ["transfer_money"]  # approved ran, denied did not
    assert governance.enforce_counts() == {"transfer_money": 1, "wire_funds": 1}
    assert governance.approvals() == {"transfer_money": "approved", "wire_funds": "denied"}  # via the API
    messages = tool_messages(result)
    assert messages["transfer_money"].content == "transfer_money ok"
    assert "denied by reviewer" in messages["wire_funds"].content


def test_middleware_and_governed_tools_together_check_once(governance, tracer, ran):
    tools = [wrap_tool(tracer, t.name, t) for t in make_tools(ran)]
    agent = create_agent(scripted(PARALLEL), tools, middleware=[middleware(tracer)])
    agent.invoke({"messages": [("user", "go")]})
    assert governance.enforce_counts() == {"get_weather": 1, "delete_file": 1}
    assert ran.names == ["get_weather"]


def test_classic_agent_executor_instrumented_raises_seed_violation(governance, ran):
    from langchain_classic.agents import AgentExecutor, create_openai_tools_agent
    from langchain_core.prompts import ChatPromptTemplate

    tools = make_tools(ran)
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are helpful."), ("user", "{input}"), ("placeholder", "{agent_scratchpad}")])
    model = scripted_openai_format([("get_weather", {"city": "Oslo"})], [("delete_file", {"path": "/etc"})])
    agent = create_openai_tools_agent(model, tools, prompt)
    executor = AgentExecutor(agent=agent, tools=tools)
    same = thoth.instrument(executor, **instrument_settings(governance, enforcement="block"))
    assert same is executor
    with pytest.raises(ThothPolicyViolation) as info:
        executor.invoke({"input": "weather, then delete"})
    assert info.value.tool_name == "delete_file"
    assert ran.names == ["get_weather"]
    assert governance.enforce_counts() == {"get_weather": 1, "delete_file": 1}


def test_classic_executor_async_sync_tool_checked_once_and_error_observation(governance, ran):
    from langchain_classic.agents import AgentExecutor, create_openai_tools_agent
    from langchain_core.prompts import ChatPromptTemplate

    tools = make_tools(ran)
    for t in tools:
        t.handle_tool_error = True  # the tool's own rule: errors become observations
    prompt = ChatPromptTemplate.from_messages(
        [("user", "{input}"), ("placeholder", "{agent_scratchpad}")])
    model = scripted_openai_format(PARALLEL)
    executor = AgentExecutor(agent=create_openai_tools_agent(model, tools, prompt), tools=tools,
                             return_intermediate_steps=True)
    thoth.instrument(executor, **instrument_settings(governance))
    result = asyncio.run(executor.ainvoke({"input": "go"}))
    assert governance.enforce_counts() == {"get_weather": 1, "delete_file": 1}  # _arun -> _run not re-checked
    assert ran.names == ["get_weather"]
    observations = {action.tool: obs for action, obs in result["intermediate_steps"]}
    assert "not allowed" in observations["delete_file"]
    assert observations["get_weather"] == "get_weather ok"


@pytest.mark.parametrize("asynchronous", [False, True])
def test_governed_tool_still_receives_config_and_callbacks(governance, tracer, asynchronous):
    """The governed _run/_arun keep the signature and type hints LangChain inspects per call."""
    seen: dict = {}

    @tool
    def get_weather(city: str, config: RunnableConfig) -> str:
        """Weather for a city."""
        seen["tags"] = config.get("tags")
        return f"sunny in {city}"

    class Starts(BaseCallbackHandler):
        starts = 0

        def on_tool_start(self, *args, **kwargs):
            Starts.starts += 1

    governed = wrap_tool(tracer, "get_weather", get_weather)
    for name in ("_run", "_arun"):  # run() passes run_manager / config only if these say so
        assert inspect.signature(getattr(governed, name)) == inspect.signature(getattr(get_weather, name))
    config = {"tags": ["t1"], "callbacks": [Starts()]}
    if asynchronous:
        out = asyncio.run(governed.ainvoke({"city": "Oslo"}, config=config))
    else:
        out = governed.invoke({"city": "Oslo"}, config=config)
    assert out == "sunny in Oslo"
    assert seen["tags"] == ["t1"] and Starts.starts == 1
    assert governance.enforce_counts() == {"get_weather": 1}
