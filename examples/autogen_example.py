"""Govern AG2 Classic (`pip install "autogen>=0.9,<1"`, `import autogen`) function maps with
Thoth, offline: the assistant's model is examples/llm_stub.py; the Thoth server is the one at
THOTH_API_URL / THOTH_API_KEY. (`pip install ag2` now installs the rewrite imported as `ag2`.)"""

from __future__ import annotations

import os

import autogen
from llm_stub import LLMStub

from thoth.instrumentor import build_tracer
from thoth.integrations.autogen import wrap_autogen_tools


def search_docs(query: str) -> str:
    return f"2 documents about {query}"


def send_email(to: str, body: str) -> str:
    return f"sent to {to}"


tracer = build_tracer(agent_id="autogen-agent", approved_scope=["search_docs"],
                      tenant_id=os.environ.get("THOTH_TENANT_ID", "acme"), enforcement="block")
governed = wrap_autogen_tools({"search_docs": search_docs, "send_email": send_email}, tracer=tracer)

plan = [[("search_docs", {"query": "onboarding"}), ("send_email", {"to": "ceo@acme.com", "body": "hi"})]]
with LLMStub(plan) as llm:
    assistant = autogen.AssistantAgent("assistant", llm_config={
        "config_list": [{"model": "gpt-4o", "api_key": "offline", "base_url": llm.openai_url}], "cache_seed": None})
    assistant.register_for_llm(name="search_docs", description="Search docs.")(search_docs)
    assistant.register_for_llm(name="send_email", description="Send an email.")(send_email)
    user_proxy = autogen.UserProxyAgent(
        name="user_proxy", human_input_mode="NEVER", code_execution_config=False,
        function_map=governed,  # Thoth enforcement runs on every function call
    )
    user_proxy.initiate_chat(assistant, message="Find onboarding docs and email the CEO", max_turns=2)
tracer.flush()
