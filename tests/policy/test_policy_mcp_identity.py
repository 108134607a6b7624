"""MCP tool identity in policy (ADR 0401): a bare name matches the tool on every server and
locally, `server/tool` only that server's tool; and the tools/list visibility computed from the
compiled policy (thoth.policy.visibility)."""

from __future__ import annotations

from typing import Any

import pytest
from policy_helpers import call

from thoth.policy import compile_policy
from thoth.policy.local import LocalEnforcer
from thoth.policy.visibility import tool_visibility
from thoth.wire import mcp_tool_id, parse_claude_mcp_name, split_mcp_tool_id

POLICY: dict[str, Any] = {
    "version": 1,
    "tools": {"wipe": {"tier": "critical"}, "files/wipe": {"tier": "low"}},
    "tiers": {"critical": "block"},
    "agents": {"bot": {"tools": ["delete", "search", "files/*", "mail/send", "wipe", "purge", "archive"]},
               "narrow": {"tools": ["mail/delete"]}},
    "rules": [
        {"id": "no-mail-delete", "when": {"tool": "mail/delete"}, "action": "block"},
        {"id": "delete-anywhere", "when": {"tool": "delete", "args": {"path": {"prefix": "/etc"}}},
         "action": "step_up"},
        {"id": "purge", "when": {"tool": "purge", "agent": ["bot"]}, "action": "block", "reason": "never purge"},
        {"id": "archive-big", "when": {"tool": "archive", "args": {"n": {"gt": 10}}}, "action": "block"},
        {"id": "glob", "when": {"tool": "files/sec*"}, "action": "flag"},
    ],
}


@pytest.fixture(scope="module")
def policy() -> Any:
    return compile_policy(POLICY)


def decide(policy: Any, tool: str, server: str | None = None, agent: str = "bot", **kw: Any) -> Any:
    return policy.evaluate(call(tool, agent_id=agent, mcp_server=server, **kw))


def test_identity_helpers() -> None:
    assert mcp_tool_id("mail", "delete") == "mail/delete" and mcp_tool_id(None, "delete") == "delete"
    assert split_mcp_tool_id("mail/delete") == ("mail", "delete")
    assert split_mcp_tool_id("delete") == (None, "delete") and split_mcp_tool_id("/x") == (None, "/x")
    assert parse_claude_mcp_name("mcp__mail__delete") == ("mail", "delete")
    assert parse_claude_mcp_name("mcp__mail__a__b") == ("mail", "a__b")
    assert parse_claude_mcp_name("Bash") == (None, "Bash") and parse_claude_mcp_name("mcp__x") == (None, "mcp__x")


def test_server_qualified_rule_matches_only_that_server(policy: Any) -> None:
    assert decide(policy, "delete", "mail").decision == "BLOCK"
    assert decide(policy, "delete", "files").decision == "ALLOW"
    assert decide(policy, "delete").decision == "ALLOW"  # the local tool


def test_bare_rule_matches_every_server_and_local(policy: Any) -> None:
    args = {"path": "/etc/passwd"}
    for server in ("files", "mail", None):
        assert "delete-anywhere" in decide(policy, "delete", server, tool_args=args).matched_rule_ids


def test_scope_names_and_globs(policy: Any) -> None:
    assert decide(policy, "send", "mail").decision == "ALLOW"
    assert decide(policy, "send", "chat").decision == "STEP_UP"  # mail/send only
    assert decide(policy, "read", "files").decision == "ALLOW"  # files/*
    assert decide(policy, "delete", "mail", agent="narrow").decision == "BLOCK"
    assert decide(policy, "delete", "files", agent="narrow").reason.endswith("the tools this policy allows the agent")
    client_scope = decide(policy, "search", "web", approved_scope=["web/search"])
    assert client_scope.decision == "ALLOW"
    assert decide(policy, "search", "web", approved_scope=["other/search"]).decision == "STEP_UP"


def test_catalogue_server_entry_wins(policy: Any) -> None:
    assert decide(policy, "wipe").decision == "BLOCK"  # critical locally
    assert decide(policy, "wipe", "db").decision == "BLOCK"  # the bare entry on another server
    assert decide(policy, "wipe", "files").decision == "ALLOW"  # files/wipe is low


def test_glob_with_server(policy: Any) -> None:
    assert "glob" in decide(policy, "secrets", "files").flags
    assert "glob" not in decide(policy, "secrets", "mail").flags
    assert "glob" not in decide(policy, "secrets").flags


def test_in_process_enforcer_reads_mcp_server(policy: Any) -> None:
    enforcer = LocalEnforcer(policy=policy)
    base = {"agent_id": "bot", "tenant_id": "t", "session_id": "s", "tool_args": {}}
    assert enforcer.enforce({**base, "tool_name": "delete", "mcp_server": "mail"}).decision.value == "BLOCK"
    assert enforcer.enforce({**base, "tool_name": "delete", "mcp_server": "files"}).decision.value == "ALLOW"


@pytest.mark.parametrize(("tool", "server", "agent", "visible"), [
    ("delete", "mail", "bot", False),  # unconditional block of mail/delete
    ("delete", "files", "bot", True),  # a conditional step-up keeps it visible
    ("purge", "x", "bot", False),  # block for this agent, unconditionally
    ("archive", "x", "bot", True),  # block only above a value: conditional
    ("send", "chat", "bot", False),  # outside the agent's scope
    ("wipe", "db", "bot", False),  # the catalogue tier blocks it
    ("wipe", "files", "bot", True),  # files/wipe is low
    ("search", "web", "stranger", True),  # no scope known for this agent, none required
])
def test_visibility(policy: Any, tool: str, server: str, agent: str, visible: bool) -> None:
    seen = tool_visibility(policy, agent_id=agent, tool_name=tool, mcp_server=server)
    assert seen.visible is visible, seen
    assert (seen.reason is None) is visible


def test_visibility_modes(policy: Any) -> None:
    hidden = {"agent_id": "bot", "tool_name": "delete", "mcp_server": "mail"}
    assert tool_visibility(policy, **hidden, enforcement_mode="observe").visible
    assert tool_visibility(policy, **hidden, enforcement_mode="step_up").visible  # a non-hard block is a step-up
    hard = compile_policy({"version": 1, "rules": [{"id": "h", "when": {"tool": "x"}, "action": "block",
                                                     "hard": True}]})
    assert not tool_visibility(hard, agent_id="a", tool_name="x", enforcement_mode="step_up").visible
    assert not tool_visibility(policy, agent_id="bot", tool_name="search", mcp_server="web",
                               approved_scope=["read"]).visible
