"""Govern LangChain agents with Thoth, offline.

1. LangChain 1.x `create_agent` with Thoth's middleware (the modern spelling).
2. The seed's `thoth.instrument(executor)` on a classic AgentExecutor, which LangChain 1.x moved
   to `langchain_classic.agents` (pip install langchain-classic).

The model is scripted (a LangChain fake chat model that emits tool calls); the Thoth server is
the one at THOTH_API_URL / THOTH_API_KEY.
"""

from __future__ import annotations

import json
import os

from langchain.agents import create_agent
from langchain.tools import tool
from langchain_classic.agents import AgentExecutor, create_openai_tools_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.prompts import ChatPromptTemplate

import thoth
from thoth import ThothPolicyViolation
from thoth.instrumentor import build_tracer
from thoth.integrations.langchain import middleware


@tool
def web_search(query: str) -> str:
    """Search the web for current information."""
    return f"SEC filings for {query}: 10-K, 10-Q"


@tool
def delete_file(path: str) -> str:
    """Delete a file from the local filesystem."""
    return f"deleted {path}"


class ScriptedModel(GenericFakeChatModel):
    """Stands in for ChatOpenAI: replays tool calls (the shipped fakes cannot bind tools)."""

    def bind_tools(self, tools, **kwargs):  # type: ignore[no-untyped-def]
        return self

    def bind(self, **kwargs):  # type: ignore[no-untyped-def]
        return self


settings = {"approved_scope": ["web_search"], "tenant_id": os.environ.get("THOTH_TENANT_ID", "acme"),
            "user_id": "bob@acme.com"}

# 1. create_agent + middleware: a block goes back to the model as an error ToolMessage.
tracer = build_tracer(agent_id="research-agent", enforcement="block", **settings)
model = ScriptedModel(messages=iter([
    AIMessage("", tool_calls=[{"name": "web_search", "args": {"query": "AAPL"}, "id": "a1", "type": "tool_call"},
                              {"name": "delete_file", "args": {"path": "/tmp/x"}, "id": "a2", "type": "tool_call"}]),
    AIMessage("Found the filings; I was not allowed to delete the file."),
]))
agent = create_agent(model, [web_search, delete_file], middleware=[middleware(tracer)])
result = agent.invoke({"messages": [("user", "Find recent SEC filings for AAPL")]})
for message in result["messages"]:
    print(f"{message.type}: {message.content}")

# 2. The seed: thoth.instrument(executor); a block raises ThothPolicyViolation.
def openai_style(name: str, args: dict, call_id: str) -> AIMessage:
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
    return AIMessage("", additional_kwargs={"tool_calls": [call]})


llm = ScriptedModel(messages=iter([openai_style("web_search", {"query": "AAPL"}, "b1"),
                                   openai_style("delete_file", {"path": "/etc/passwd"}, "b2"),
                                   AIMessage("done")]))
prompt = ChatPromptTemplate.from_messages([("user", "{input}"), ("placeholder", "{agent_scratchpad}")])
executor = AgentExecutor(agent=create_openai_tools_agent(llm, [web_search, delete_file], prompt),
                         tools=[web_search, delete_file])
executor = thoth.instrument(executor, agent_id="research-agent", enforcement="block", **settings)
try:
    executor.invoke({"input": "Find recent SEC filings for AAPL, then clean up"})
except ThothPolicyViolation as e:
    print(f"Blocked: {e.tool_name} - {e.reason} (violation {e.violation_id})")
thoth.flush()
