"""claude-agent-sdk: real sessions of the SDK's bundled Claude Code CLI, pointed at the loopback
Anthropic stub with ANTHROPIC_BASE_URL (streaming /v1/messages), governed by Thoth's PreToolUse
hook. In-process MCP tools record which bodies ran."""

from __future__ import annotations

import asyncio
import tempfile

import pytest
from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient, create_sdk_mcp_server, tool
from claude_agent_sdk.types import ResultMessage, ToolResultBlock, UserMessage
from llm_stub import LLMStub

from thoth import ThothPolicyViolation
from thoth.integrations.claude_agent_sdk import ClaudeGovernor, instrument_options, policy_name

NAMES = ("get_weather", "delete_file", "transfer_money", "wire_funds")


def mcp(name: str) -> str:
    return f"mcp__thoth_test__{name}"


def make_options(stub: LLMStub, ran) -> ClaudeAgentOptions:
    def make(name: str, param: str):
        @tool(name, f"{name} tool", {param: str})
        async def body(args):
            return {"content": [{"type": "text", "text": ran(name, **args)}]}

        return body

    params = {"get_weather": "city", "delete_file": "path", "transfer_money": "amount", "wire_funds": "amount"}
    server = create_sdk_mcp_server("thoth_test", "1.0.0", tools=[make(n, params[n]) for n in NAMES])
    home = tempfile.mkdtemp(prefix="claude-home-")
    env = {"ANTHROPIC_BASE_URL": stub.url, "ANTHROPIC_API_KEY": "sk-test", "HOME": home, "CLAUDE_CONFIG_DIR": home,
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1",
           "DISABLE_ERROR_REPORTING": "1"}
    # allowed_tools auto-approves every tool: only the PreToolUse hook stands between model and tool.
    return ClaudeAgentOptions(mcp_servers={"thoth_test": server}, tools=[], allowed_tools=[mcp(n) for n in NAMES],
                              setting_sources=[], env=env, cwd=home, model="claude-sonnet-4-5", max_turns=4)


def session(options: ClaudeAgentOptions, governor: ClaudeGovernor | None = None) -> dict[str, tuple[str, bool]]:
    """Run one session; tool_use id -> (result text, is_error) in order, keyed by call order."""
    out: dict[str, tuple[str, bool]] = {}

    async def main() -> None:
        async with ClaudeSDKClient(options) as client:
            await client.query("go")
            async for message in client.receive_response():
                if isinstance(message, UserMessage) and isinstance(message.content, list):
                    for block in message.content:
                        if isinstance(block, ToolResultBlock):
                            text = block.content if isinstance(block.content, str) else " ".join(
                                part.get("text", "") for part in block.content or [])
                            out[block.tool_use_id] = (text, bool(block.is_error))
                if isinstance(message, ResultMessage) and governor is not None:
                    governor.record_usage(message)

    asyncio.run(main())
    return out


def by_tool(stub: LLMStub, results: dict[str, tuple[str, bool]]) -> dict[str, tuple[str, bool]]:
    names = {b["id"]: policy_name(b["name"]) for r in stub.requests for m in r["body"].get("messages", [])
             if m.get("role") == "assistant" and isinstance(m.get("content"), list)
             for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_use"}
    return {names[i]: v for i, v in results.items() if i in names}


def test_block_denied_by_the_hook_and_sibling_runs(governance, tracer, ran):
    with LLMStub([[(mcp("get_weather"), {"city": "Paris"}), (mcp("delete_file"), {"path": "/etc"})]]) as stub:
        options = make_options(stub, ran)
        governor = instrument_options(options, tracer)
        out = by_tool(stub, session(options, governor))
    assert out["get_weather"] == ("get_weather ok", False)
    assert out["delete_file"][1] is True and "blocked by Thoth" in out["delete_file"][0]
    assert ran.names == ["get_weather"]
    assert governance.enforce_counts() == {"get_weather": 1, "delete_file": 1}  # policy saw the plain names
    assert tracer.session.token_spend == 2 * 18  # the session's two model turns


def test_step_up_approve_and_deny_end_to_end(governance, tracer, ran):
    plan = [[(mcp("transfer_money"), {"amount": "10"}), (mcp("wire_funds"), {"amount": "99"})]]
    with LLMStub(plan) as stub:
        options = make_options(stub, ran)
        instrument_options(options, tracer)
        out = by_tool(stub, session(options))
    assert ran.names == ["transfer_money"]
    assert out["transfer_money"] == ("transfer_money ok", False)
    assert "denied by reviewer" in out["wire_funds"][0]
    assert governance.enforce_counts() == {"transfer_money": 1, "wire_funds": 1}
    assert governance.approvals() == {"transfer_money": "approved", "wire_funds": "denied"}


def test_raise_mode_ends_the_session(governance, tracer, ran):
    plan = [[(mcp("delete_file"), {"path": "/"})], [(mcp("get_weather"), {"city": "Oslo"})]]
    with LLMStub(plan) as stub:
        options = make_options(stub, ran)
        governor = instrument_options(options, tracer, on_block="raise")
        session(options)
        model_turns = len(stub.requests)
    assert model_turns == 1  # continue: false stopped the session after the block
    assert ran.names == []
    with pytest.raises(ThothPolicyViolation):
        governor.raise_if_blocked()
    assert governance.enforce_counts() == {"delete_file": 1}


class BrokenTracer:
    """A tracer whose check fails with an unexpected error (not a policy decision)."""

    class config:  # noqa: N801 - the attribute the hook matcher reads
        step_up_timeout_minutes = 0.1

    async def agovern(self, tool_name, tool_args=None, *, call_id=None):
        raise RuntimeError("enforcer client bug")


def test_hook_fails_closed_on_its_own_errors(ran):
    with LLMStub([[(mcp("get_weather"), {"city": "Rome"})]]) as stub:
        options = make_options(stub, ran)
        instrument_options(options, BrokenTracer())  # type: ignore[arg-type]
        out = by_tool(stub, session(options))
    assert ran.names == []  # the CLI runs the tool when a hook raises; this one denies instead
    assert out["get_weather"][1] is True and "could not be checked" in out["get_weather"][0]


def test_task_captured_from_the_prompt(governance, tracer, ran):
    """The UserPromptSubmit hook makes the prompt the session's task: the city the user named is
    `task` in the call's arg_sources."""
    prompt = "What is the weather in Reykjavik today?"
    with LLMStub([[(mcp("get_weather"), {"city": "Reykjavik"})]]) as stub:
        options = make_options(stub, ran)
        instrument_options(options, tracer)

        async def main() -> None:
            async with ClaudeSDKClient(options) as client:
                await client.query(prompt)
                async for _ in client.receive_response():
                    pass

        asyncio.run(main())
    assert ran.names == ["get_weather"]
    task = tracer.session.task
    assert task is not None and task.text == prompt
    assert tracer.session.sources.sources_for({"city": "Reykjavik"}) == {"city": ["task"]}
