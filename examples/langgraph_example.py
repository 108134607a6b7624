"""Govern a LangGraph agent with Thoth, offline: the seed's Tracer.wrap_tool + create_react_agent,
and Thoth's ToolNode hook for a custom graph. The model is scripted; the Thoth server is the
one at THOTH_API_URL / THOTH_API_KEY."""

from __future__ import annotations

import os
import warnings

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import create_react_agent, tools_condition

from thoth import ThothPolicyViolation
from thoth.emitter import HttpEmitter
from thoth.enforcer_client import EnforcerClient
from thoth.integrations.langgraph import tool_node
from thoth.models import EnforcementMode, ThothConfig
from thoth.session import SessionContext
from thoth.step_up import StepUpClient
from thoth.tracer import Tracer


@tool
def search_database(query: str) -> str:
    """Search the internal knowledge base."""
    return f"Q4 revenue: 12.3M ({query})"


@tool
def send_slack_message(channel: str, message: str) -> str:
    """Post a message to Slack."""
    return f"posted to {channel}"


class ScriptedModel(GenericFakeChatModel):
    def bind_tools(self, tools, **kwargs):  # type: ignore[no-untyped-def]
        return self


def calls(*items: tuple[str, dict, str]) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": n, "args": a, "id": i, "type": "tool_call"} for n, a, i in items])


# The seed's low-level setup, unchanged.
api_key = os.environ["THOTH_API_KEY"]
config = ThothConfig(
    agent_id="langgraph-analyst",
    approved_scope=["search_database", "send_slack_message"],
    tenant_id=os.environ.get("THOTH_TENANT_ID", "acme"),
    user_id="alice@acme.com",
    enforcement=EnforcementMode.BLOCK,
    api_key=api_key,
)
session = SessionContext(config)
tracer = Tracer(config=config, session=session,
                emitter=HttpEmitter(api_url=config.resolved_api_url, api_key=api_key),
                enforcer=EnforcerClient(config), step_up=StepUpClient(config))

governed_search = tracer.wrap_tool("search_database", search_database)
governed_slack = tracer.wrap_tool("send_slack_message", send_slack_message)

llm = ScriptedModel(messages=iter([
    calls(("search_database", {"query": "Q4"}, "s1")),
    calls(("send_slack_message", {"channel": "#analytics", "message": "Q4: 12.3M"}, "s2")),
    AIMessage("posted"),
]))
with warnings.catch_warnings():  # create_react_agent is deprecated in LangGraph 1.x but still works
    warnings.simplefilter("ignore")
    agent = create_react_agent(llm, [governed_search, governed_slack])
try:
    agent.invoke({"messages": [("user", "Search for Q4 data and post it to #analytics")]})
except ThothPolicyViolation as e:
    print(f"Blocked: {e.tool_name} - {e.reason}")

# A custom graph: hook the ToolNode; a block becomes an error ToolMessage, siblings keep results.
model = ScriptedModel(messages=iter([
    calls(("search_database", {"query": "Q4"}, "t1"), ("send_slack_message", {"channel": "#x", "message": "hi"}, "t2")),
    AIMessage("searched; posting was blocked"),
]))
graph = StateGraph(MessagesState)
graph.add_node("model", lambda state: {"messages": [model.invoke(state["messages"])]})
graph.add_node("tools", tool_node([search_database, send_slack_message], tracer))
graph.add_edge(START, "model")
graph.add_conditional_edges("model", tools_condition, {"tools": "tools", END: END})
graph.add_edge("tools", "model")
for message in graph.compile().invoke({"messages": [("user", "go")]})["messages"]:
    print(f"{message.type}: {message.content}")
tracer.flush()
