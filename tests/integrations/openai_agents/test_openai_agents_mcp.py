"""openai-agents with an MCP server (`Agent(mcp_servers=[MCPServerStdio(...)])`): a real MCP
server written with the official SDK (tests/integrations/mcp/mcp_test_server.py) over stdio,
the Runner's model on the loopback OpenAI stub, Thoth governing the MCP server object: one
check per call as tool + server, the tools/list filter, a denied step-up read by the model as a
tool error, an approved one waited for."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from agents import Agent, OpenAIResponsesModel, RunConfig, Runner, set_tracing_disabled
from agents.mcp import MCPServerStdio
from llm_stub import LLMStub
from openai import AsyncOpenAI

from thoth.integrations.openai_agents import instrument_agent

set_tracing_disabled(True)

SERVER_SCRIPT = Path(__file__).resolve().parents[1] / "mcp" / "mcp_test_server.py"


def test_mcp_server_tools_are_governed_once(governance, tracer, tmp_path):
    runlog = tmp_path / "ran.jsonl"
    runlog.touch()
    plan = [[("get_weather", {"city": "Paris"}), ("delete_file", {"path": "/etc"})],
            [("transfer_money", {"amount": "10"}), ("wire_funds", {"amount": "99"})]]

    async def main() -> dict[str, str]:
        params = {"command": sys.executable, "args": [str(SERVER_SCRIPT), "ops", "stdio", str(runlog)]}
        async with MCPServerStdio(params=params, name="ops", cache_tools_list=True) as server:
            with LLMStub(plan) as stub:
                model = OpenAIResponsesModel(model="gpt-4o", openai_client=AsyncOpenAI(
                    base_url=stub.openai_url, api_key="test", max_retries=0))
                agent = instrument_agent(Agent(name="ops", instructions="Do what is asked.", model=model,
                                               mcp_servers=[server]), tracer)
                listed = {t.name for t in await server.list_tools()}
                assert "delete_file" not in listed and "get_weather" in listed  # hidden: blocked outright
                # delete_file is not offered; a model that names it anyway gets "not found"
                await Runner.run(agent, "weather, clean up, then pay",
                                 run_config=RunConfig(tool_not_found_behavior="return_error_to_model"))
                items = [i for r in stub.requests for i in r["body"]["input"] if isinstance(i, dict)]
        names = {i["call_id"]: i["name"] for i in items if i.get("type") == "function_call"}
        return {names[i["call_id"]]: str(i["output"]) for i in items if i.get("type") == "function_call_output"}

    sent = asyncio.run(asyncio.wait_for(main(), 60))
    assert "ops:get_weather ok" in sent["get_weather"]
    assert "not found" in sent["delete_file"].lower() and "ops:" not in sent["delete_file"]
    assert "ops:transfer_money ok" in sent["transfer_money"]  # the reviewer approved it
    assert "blocked by Thoth" in sent["wire_funds"] and "denied by reviewer" in sent["wire_funds"]
    ran = [json.loads(line) for line in runlog.read_text().splitlines()]
    assert [r["tool"] for r in ran] == ["get_weather", "transfer_money"]
    # checked by the server: a proxy verifies the marker and does not check again (ADR 0403); a
    # step-up approved through the hold poll carries none yet (the proxy would check it)
    assert [bool(r["marker"]) for r in ran] == [True, False]
    assert governance.enforce_counts() == {"get_weather": 1, "transfer_money": 1, "wire_funds": 1}
