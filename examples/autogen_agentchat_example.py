"""Govern a Microsoft autogen-agentchat 0.7 AssistantAgent with Thoth.

`thoth.instrument(agent)` governs each tool's `run_json`: a block reaches the model as an
`is_error` tool result carrying Thoth's reason; with on_block="raise", `agent.run()` raises the
ThothPolicyViolation once the run is over (agentchat never lets a tool error stop a run).

Runs offline: the model is autogen-ext's ReplayChatCompletionClient (scripted replies); the
Thoth server is the one at THOTH_API_URL / THOTH_API_KEY. pip install ".[autogen-agentchat]" (in a clone of Thoth)
"""

from __future__ import annotations

import asyncio
import os

from autogen_agentchat.agents import AssistantAgent
from autogen_core import FunctionCall
from autogen_core.models import CreateResult, RequestUsage
from autogen_ext.models.replay import ReplayChatCompletionClient

import thoth
from thoth import ThothPolicyViolation


async def search_docs(query: str) -> str:
    """Search internal documentation."""
    return f"3 documents about {query}"


async def delete_record(record_id: str) -> str:
    """Delete a customer record."""
    return f"deleted {record_id}"


def scripted_model() -> ReplayChatCompletionClient:
    calls = CreateResult(finish_reason="function_calls", cached=False,
                         usage=RequestUsage(prompt_tokens=40, completion_tokens=12),
                         content=[FunctionCall(id="1", name="search_docs", arguments='{"query": "retention"}'),
                                  FunctionCall(id="2", name="delete_record", arguments='{"record_id": "c-42"}')])
    info = {"vision": False, "function_calling": True, "json_output": False, "family": "unknown",
            "structured_output": False}
    return ReplayChatCompletionClient([calls, "done"], model_info=info)  # type: ignore[arg-type]


settings = {"approved_scope": ["search_docs"], "tenant_id": os.environ.get("THOTH_TENANT_ID", "acme"),
            "user_id": "frank@acme.com", "enforcement": "block"}


async def main() -> None:
    agent = AssistantAgent("records", model_client=scripted_model(), tools=[search_docs, delete_record])
    thoth.instrument(agent, agent_id="records-agent", **settings)
    result = await agent.run(task="Find the retention policy and delete record c-42.")
    print("last message:", result.messages[-1].to_text())

    agent = AssistantAgent("records", model_client=scripted_model(), tools=[search_docs, delete_record])
    thoth.instrument(agent, agent_id="records-agent", on_block="raise", **settings)
    try:
        await agent.run(task="Find the retention policy and delete record c-42.")
    except ThothPolicyViolation as e:
        print(f"Blocked: {e.tool_name} - {e.reason} (violation {e.violation_id})")
    thoth.flush()


asyncio.run(main())
