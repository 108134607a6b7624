"""Govern an openai-agents (OpenAI Agents SDK) agent with Thoth.

Blocks arrive through a tool input guardrail (the model reads Thoth's reason); step-ups pause
the run with `needs_approval`, and `resolve_approvals` waits for the Thoth reviewer (approvals
API, dashboard, Slack...) before the run resumes.

Runs offline: the model is the SDK's Responses model pointed at examples/llm_stub.py; the Thoth
server is the one at THOTH_API_URL / THOTH_API_KEY. pip install ".[openai-agents]" (in a clone of Thoth)
"""

from __future__ import annotations

import asyncio
import os

from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from llm_stub import LLMStub
from openai import AsyncOpenAI

import thoth
from thoth.instrumentor import build_tracer
from thoth.integrations.openai_agents import instrument_agent, resolve_approvals

set_tracing_disabled(True)  # offline: no trace export


@function_tool
def search_docs(query: str) -> str:
    """Search internal documentation."""
    return f"3 documents about {query}"


@function_tool
def delete_record(record_id: str) -> str:
    """Delete a customer record."""
    return f"deleted {record_id}"


@function_tool
def transfer_money(amount: str, to: str) -> str:
    """Move money to an account."""
    return f"moved {amount} to {to}"


async def main() -> None:
    plan = [[("search_docs", {"query": "refunds"}), ("delete_record", {"record_id": "c-42"})],
            [("transfer_money", {"amount": "25.00", "to": "acct-7"})]]
    with LLMStub(plan) as llm_api:
        model = OpenAIResponsesModel(model="gpt-4o", openai_client=AsyncOpenAI(base_url=llm_api.openai_url,
                                                                               api_key="not-needed-offline"))
        agent = Agent(name="billing", instructions="Handle billing requests.", model=model,
                      tools=[search_docs, delete_record, transfer_money])
        tracer = build_tracer(agent_id="billing-agent", approved_scope=["search_docs", "transfer_money"],
                              tenant_id=os.environ.get("THOTH_TENANT_ID", "acme"), user_id="erin@acme.com")
        instrument_agent(agent, tracer)
        result = await Runner.run(agent, "Refund the customer and clean up their record.")
        while result.interruptions:  # Thoth held a call for a human
            print("waiting for a Thoth reviewer on:", [item.tool_name for item in result.interruptions])
            result = await Runner.run(agent, await resolve_approvals(result))
        print("final:", result.final_output)
    thoth.flush()


asyncio.run(main())
