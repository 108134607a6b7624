"""LangGraph: the seed's Tracer.wrap_tool + create_react_agent, and the ToolNode hook in a
custom graph (parallel calls; a blocked sibling does not lose the others' results)."""

from __future__ import annotations

import asyncio
import warnings

import pytest
from langchain_core.messages import ToolMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import tools_condition

from thoth import ThothPolicyViolation
from thoth.integrations.langgraph import tool_node

from ..lc_shared.fakes import scripted
from ..lc_shared.tools import make_tools

PARALLEL = [("get_weather", {"city": "Paris"}), ("delete_file", {"path": "/etc"}),
            ("transfer_money", {"amount": "5"})]


def react_agent(model, tools):
    from langgraph.prebuilt import create_react_agent

    with warnings.catch_warnings():  # deprecated since LangGraph 1.0, still the seed's spelling
        warnings.simplefilter("ignore")
        return create_react_agent(model, tools)


def custom_graph(model, node):
    def call_model(state: MessagesState) -> dict:
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", call_model)
    graph.add_node("tools", node)
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition, {"tools": "tools", END: END})
    graph.add_edge("tools", "model")
    return graph.compile()


def by_name(result: dict) -> dict[str, ToolMessage]:
    return {m.name: m for m in result["messages"] if isinstance(m, ToolMessage)}


@pytest.mark.parametrize("asynchronous", [False, True])
def test_seed_wrap_tool_with_create_react_agent(governance, tracer, ran, asynchronous):
    tools = make_tools(ran, asynchronous=asynchronous)
    governed = [tracer.wrap_tool(t.name, t) for t in tools]
    assert [g.name for g in governed] == [t.name for t in tools]  # names and schemas survive
    assert governed[0].args == tools[0].args
    agent = react_agent(scripted([("get_weather", {"city": "Rome"})], [("transfer_money", {"amount": "3"})]), governed)
    inputs = {"messages": [("user", "go")]}
    result = asyncio.run(agent.ainvoke(inputs)) if asynchronous else agent.invoke(inputs)
    assert ran.names == ["get_weather", "transfer_money"]
    assert governance.enforce_counts() == {"get_weather": 1, "transfer_money": 1}
    assert by_name(result)["transfer_money"].content == "transfer_money ok"
    # the originals stay ungoverned
    if asynchronous:
        asyncio.run(tools[1].ainvoke({"path": "/tmp/x"}))
    else:
        tools[1].invoke({"path": "/tmp/x"})
    assert governance.enforce_counts()["delete_file"] == 0


@pytest.mark.parametrize("asynchronous", [False, True])
def test_approved_call_runs_once_and_its_repeat_is_held_anew(governance, tracer, ran, asynchronous):
    """The agent makes the same approved payment twice: each run needs an approval of its own."""
    governed = [tracer.wrap_tool(t.name, t) for t in make_tools(ran, asynchronous=asynchronous)]
    pay = ("transfer_money", {"amount": "7"})
    agent = react_agent(scripted([pay], [pay]), governed)
    inputs = {"messages": [("user", "pay twice")]}
    asyncio.run(agent.ainvoke(inputs)) if asynchronous else agent.invoke(inputs)
    assert ran.calls == [("transfer_money", {"amount": "7"})] * 2
    assert governance.enforce_counts() == {"transfer_money": 2}
    # two holds, each approved by the reviewer and used once: the first approval did not cover the repeat
    assert governance.approval_uses("transfer_money") == [("approved", 1, 1), ("approved", 1, 1)]


def test_seed_wrap_tool_block_raises_violation(governance, tracer, ran):
    governed = [tracer.wrap_tool(t.name, t) for t in make_tools(ran)]
    agent = react_agent(scripted([("delete_file", {"path": "/etc"})]), governed)
    with pytest.raises(ThothPolicyViolation) as info:
        agent.invoke({"messages": [("user", "go")]})
    assert info.value.tool_name == "delete_file"
    assert ran.names == []


@pytest.mark.parametrize("asynchronous", [False, True])
def test_tool_node_hook_parallel_calls_keep_sibling_results(governance, tracer, ran, asynchronous):
    tools = make_tools(ran, asynchronous=asynchronous)
    graph = custom_graph(scripted(PARALLEL), tool_node(tools, tracer))
    inputs = {"messages": [("user", "go")]}
    result = asyncio.run(graph.ainvoke(inputs)) if asynchronous else graph.invoke(inputs)
    assert governance.enforce_counts() == {"get_weather": 1, "delete_file": 1, "transfer_money": 1}
    assert ran.names == ["get_weather", "transfer_money"]
    messages = by_name(result)
    assert messages["delete_file"].status == "error"
    assert messages["get_weather"].content == "get_weather ok"
    assert messages["transfer_money"].content == "transfer_money ok"


def test_tool_node_hook_step_up_deny_and_raise_mode(governance, tracer, ran):
    graph = custom_graph(scripted([("wire_funds", {"amount": "9"})]), tool_node(make_tools(ran), tracer))
    result = graph.invoke({"messages": [("user", "go")]})
    assert "denied by reviewer" in by_name(result)["wire_funds"].content
    strict = custom_graph(scripted([("delete_file", {"path": "/"})]),
                          tool_node(make_tools(ran), tracer, on_block="raise"))
    with pytest.raises(ThothPolicyViolation):
        strict.invoke({"messages": [("user", "go")]})
    assert ran.names == []
    assert governance.enforce_counts() == {"wire_funds": 1, "delete_file": 1}


def test_stream_updates_mode(governance, tracer, ran):
    graph = custom_graph(scripted(PARALLEL[:2]), tool_node(make_tools(ran), tracer))
    updates = list(graph.stream({"messages": [("user", "go")]}, stream_mode="updates"))
    assert any("tools" in u for u in updates)
    assert governance.enforce_counts() == {"get_weather": 1, "delete_file": 1}
    assert ran.names == ["get_weather"]


def _task_tool(seen):
    from langchain_core.tools import tool

    import thoth

    @tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        seen.append(thoth.get_current_session().task.text)
        return "sunny"

    return get_weather


@pytest.mark.parametrize("asynchronous", [False, True])
def test_instrumented_agent_takes_the_last_human_message_as_the_task(governance, asynchronous):
    import thoth

    from ..support import instrument_settings

    seen = []
    agent = react_agent(scripted([("get_weather", {"city": "Oslo"})]), [_task_tool(seen)])
    thoth.instrument(agent, **instrument_settings(governance))
    inputs = {"messages": [("user", "an older turn"), ("ai", "ok"), ("user", "weather in Oslo?")]}
    asyncio.run(agent.ainvoke(inputs)) if asynchronous else agent.invoke(inputs)
    assert seen == ["weather in Oslo?"]


def test_tool_node_hook_takes_the_task_from_the_graph_state(governance, tracer):
    seen = []
    graph = custom_graph(scripted([("get_weather", {"city": "Oslo"})]), tool_node([_task_tool(seen)], tracer))
    with tracer.activated():
        graph.invoke({"messages": [("user", "weather in Oslo?")]})
    assert seen == ["weather in Oslo?"]
