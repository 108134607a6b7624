"""MCP tool identity on the SDK's paths, in-process (the real engine): the tracer sends
`mcp_server`, the Claude Agent SDK hook reads `mcp__server__tool` as tool + server (it judged
`mcp__mail__delete` as plain `delete` before), and the mcp adapter's list filter uses the local
policy without a request."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from thoth.integrations.claude_agent_sdk import ClaudeGovernor
from thoth.integrations.mcp import filter_tools, visible_tools
from thoth.models import ThothConfig
from thoth.policy import compile_policy
from thoth.policy.local import LocalEnforcer
from thoth.tracer import Tracer

POLICY = {"version": 1, "rules": [
    {"id": "no-mail-delete", "when": {"tool": "mail/delete"}, "action": "block", "reason": "not on mail"},
    {"id": "no-wipe", "when": {"tool": "wipe"}, "action": "block"},
]}


class Recording(LocalEnforcer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requests: list[dict[str, Any]] = []

    def enforce(self, request: dict[str, Any]) -> Any:
        self.requests.append(dict(request))
        return super().enforce(request)


@pytest.fixture
def tracer() -> Tracer:
    config = ThothConfig(agent_id="bot", tenant_id="t", api_url="local", enforcement="block")
    return Tracer(config, enforcer=Recording(config, policy=compile_policy(POLICY), wire_errors="block"))


def test_tracer_sends_the_server_and_policy_tells_servers_apart(tracer: Tracer) -> None:
    from thoth.exceptions import ThothPolicyViolation

    with pytest.raises(ThothPolicyViolation):
        tracer.govern("delete", {"id": 1}, mcp_server="mail")
    tracer.govern("delete", {"id": 1}, mcp_server="files").done("ok")
    tracer.govern("delete", {"id": 1}).done("ok")
    sent = [(r["tool_name"], r.get("mcp_server")) for r in tracer.enforcer.requests]  # type: ignore[attr-defined]
    assert sent == [("delete", "mail"), ("delete", "files"), ("delete", None)]


def test_claude_hook_judges_tool_and_server(tracer: Tracer) -> None:
    governor = ClaudeGovernor(tracer)

    async def main() -> list[dict[str, Any]]:
        return [await governor.pre_tool_use({"tool_name": name, "tool_input": {"id": 1}}, f"tu-{i}", None)
                for i, name in enumerate(["mcp__mail__delete", "mcp__files__delete", "Bash"])]

    mail, files, bash = asyncio.run(main())
    assert mail["hookSpecificOutput"]["permissionDecision"] == "deny"
    assert "not on mail" in mail["hookSpecificOutput"]["permissionDecisionReason"]
    assert files == {} and bash == {}
    sent = [(r["tool_name"], r.get("mcp_server")) for r in tracer.enforcer.requests]  # type: ignore[attr-defined]
    assert sent == [("delete", "mail"), ("delete", "files"), ("Bash", None)]


def test_list_filter_in_process(tracer: Tracer) -> None:
    tools = [{"name": n, "description": "", "input_schema": {}} for n in ("delete", "wipe", "read")]
    on_mail = asyncio.run(visible_tools(tracer, "mail", tools))
    assert [a["visible"] for a in on_mail] == [False, False, True] and on_mail[0]["reason"] == "not on mail"
    assert [t["name"] for t in asyncio.run(filter_tools(tracer, "files", tools))] == ["delete", "read"]
    assert tracer.enforcer.requests == []  # type: ignore[attr-defined]  # no enforce call per tool
