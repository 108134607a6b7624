"""Govern an Anthropic tool-use loop with Thoth (the seed's spelling), offline against
examples/llm_stub.py and the Thoth server at THOTH_API_URL."""

from __future__ import annotations

import os

import anthropic
from llm_stub import LLMStub

import thoth
from thoth import ThothPolicyViolation


def search_docs(query: str) -> str:
    return f"Retention policy: 7 years ({query})"


def delete_record(record_id: str) -> str:
    return f"deleted {record_id}"


TOOLS = [
    {"name": "search_docs", "description": "Search documents.",
     "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}},
    {"name": "delete_record", "description": "Delete a record.",
     "input_schema": {"type": "object", "properties": {"record_id": {"type": "string"}}}},
]

governed = thoth.instrument_anthropic(
    {"search_docs": search_docs, "delete_record": delete_record},
    agent_id="claude-research-agent",
    approved_scope=["search_docs"],
    tenant_id=os.environ.get("THOTH_TENANT_ID", "acme"),
    user_id="alice@acme.com",
    enforcement="step_up",
)

plan = [[("search_docs", {"query": "data retention"}), ("delete_record", {"record_id": "r-17"})]]
with LLMStub(plan) as llm:
    client = anthropic.Anthropic(base_url=llm.url, api_key="offline")
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
                print(f"{block.name}: {result}")
                tool_results.append({"type": "tool_result", "tool_use_id": block.id, "content": str(result)})
        messages += [{"role": "assistant", "content": response.content}, {"role": "user", "content": tool_results}]
    print("model:", response.content[0].text)
thoth.flush()
