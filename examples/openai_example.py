"""Govern an OpenAI tool-calling loop with Thoth (the seed's spelling).

Runs offline: the model is examples/llm_stub.py (a loopback stand-in of the OpenAI API); the
Thoth server is whatever THOTH_API_URL / THOTH_API_KEY point at (e.g. `thoth serve`).
"""

from __future__ import annotations

import json
import os

import openai
from llm_stub import LLMStub

import thoth
from thoth import ThothPolicyViolation


def search_docs(query: str) -> str:
    return f"3 documents about {query}"


def send_email(to: str, subject: str, body: str) -> str:
    return f"sent to {to}"


TOOLS = [
    {"type": "function", "function": {"name": "search_docs", "parameters": {
        "type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}},
    {"type": "function", "function": {"name": "send_email", "parameters": {
        "type": "object", "properties": {"to": {"type": "string"}, "subject": {"type": "string"},
                                         "body": {"type": "string"}}}}},
]

governed = thoth.instrument_openai(
    {"search_docs": search_docs, "send_email": send_email},
    agent_id="openai-agent",
    approved_scope=["search_docs"],
    tenant_id=os.environ.get("THOTH_TENANT_ID", "acme"),
    user_id="charlie@acme.com",
    enforcement="block",
)

plan = [[("search_docs", {"query": "access control"}),
         ("send_email", {"to": "all@acme.com", "subject": "docs", "body": "see attached"})]]
with LLMStub(plan) as llm:
    client = openai.OpenAI(base_url=llm.openai_url, api_key="offline")
    messages: list = [{"role": "user", "content": "Find docs about access control"}]
    while True:
        response = client.chat.completions.create(model="gpt-4o", tools=TOOLS, messages=messages)
        msg = response.choices[0].message
        if not msg.tool_calls:
            break
        messages.append(msg)
        for call in msg.tool_calls:
            try:
                result = governed[call.function.name](json.loads(call.function.arguments))
            except ThothPolicyViolation as e:
                result = f"[blocked: {e.reason}]"
            print(f"{call.function.name}: {result}")
            messages.append({"role": "tool", "tool_call_id": call.id, "content": str(result)})
    print("model:", msg.content)
thoth.flush()
