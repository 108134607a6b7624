"""Govern a Claude Agent SDK session with Thoth: a PreToolUse hook checks every tool call the
agent makes (built-in tools and in-process MCP tools alike), and fails closed.

Runs offline: the SDK's bundled Claude Code CLI talks to examples/llm_stub.py (a loopback
stand-in of the Anthropic API, via ANTHROPIC_BASE_URL); the Thoth server is the one at
THOTH_API_URL / THOTH_API_KEY. pip install ".[claude-agent-sdk]" (in a clone of Thoth)
"""

from __future__ import annotations

import asyncio
import os
import tempfile

from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient, create_sdk_mcp_server, tool
from claude_agent_sdk.types import ResultMessage
from llm_stub import LLMStub

import thoth
from thoth.instrumentor import build_tracer
from thoth.integrations.claude_agent_sdk import instrument_options


@tool("search_docs", "Search internal documentation", {"query": str})
async def search_docs(args: dict) -> dict:
    return {"content": [{"type": "text", "text": f"3 documents about {args['query']}"}]}


@tool("delete_record", "Delete a customer record", {"record_id": str})
async def delete_record(args: dict) -> dict:
    return {"content": [{"type": "text", "text": f"deleted {args['record_id']}"}]}


async def main() -> None:
    plan = [[("mcp__records__search_docs", {"query": "retention"}), ("mcp__records__delete_record", {"record_id": "c-42"})]]
    home = tempfile.mkdtemp(prefix="claude-example-")
    with LLMStub(plan) as llm_api:
        env = {"ANTHROPIC_BASE_URL": llm_api.url, "ANTHROPIC_API_KEY": "not-needed-offline", "HOME": home,
               "CLAUDE_CONFIG_DIR": home, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
               "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1"}
        options = ClaudeAgentOptions(
            mcp_servers={"records": create_sdk_mcp_server("records", "1.0.0", tools=[search_docs, delete_record])},
            tools=[], allowed_tools=["mcp__records__search_docs", "mcp__records__delete_record"],
            setting_sources=[], env=env, cwd=home, model="claude-sonnet-4-5", max_turns=4)
        tracer = build_tracer(agent_id="claude-records-agent", approved_scope=["search_docs"],
                              tenant_id=os.environ.get("THOTH_TENANT_ID", "acme"), user_id="gina@acme.com")
        governor = instrument_options(options, tracer)  # adds Thoth's PreToolUse/PostToolUse hooks
        async with ClaudeSDKClient(options) as client:
            await client.query("Find the retention policy, then delete record c-42.")
            async for message in client.receive_response():
                if isinstance(message, ResultMessage):
                    governor.record_usage(message)
                    print("result:", message.result)
    thoth.flush()


asyncio.run(main())
