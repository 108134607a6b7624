"""claude-agent-sdk: a PreToolUse hook that checks every tool call the Claude Code agent makes
(built-in tools such as Bash and Write, and in-process MCP tools), failing closed.

    options = ClaudeAgentOptions(mcp_servers={...}, allowed_tools=[...])
    thoth.integrations.claude_agent_sdk.instrument_options(options, tracer)
    async with ClaudeSDKClient(options) as client: ...

Why this shape (claude-agent-sdk 0.2 source, bundled CLI 2.1):
- The agent loop runs in the CLI subprocess; the SDK reaches Python hooks over its control
  protocol. PreToolUse runs for every tool, including those `allowed_tools` auto-approves
  (`can_use_tool` is skipped for those: it cannot govern them).
- A hook that raises lets the tool run (fail open) unless its matcher says
  `on_failure="block"`. The Thoth hook never raises: any error of its own (an unreachable
  server included) is answered with "deny"; its matcher also sets on_failure="block".
- Deny: `permissionDecision: "deny"` with Thoth's reason; the model receives it as an
  `is_error` tool result and the session goes on (on_block="return"). on_block="raise" also
  answers `continue: false`, which ends the session (the SDK's own stop); the violation is
  kept on `.violations` of the returned governor for the caller to raise.
- Step-up: the hook is async, so it awaits the reviewer (the hold is polled); the matcher's
  timeout is set to the SDK's step-up timeout so the CLI does not give up first.
- MODIFY: `updatedInput` with "allow". PostToolUse records the tool's result;
  `governor.record_usage(result_message)` records the session's tokens.
- Names: MCP tools arrive as `mcp__<server>__<tool>`; policy sees tool `<tool>` of MCP server
  `<server>` (thoth.wire, "MCP tool identity": a rule naming `<tool>` or `<server>/<tool>` matches).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from thoth.exceptions import ThothPolicyViolation
from thoth.integrations._base import OnBlock, block_message, capture_task, check_on_block, modified
from thoth.wire import parse_claude_mcp_name

if TYPE_CHECKING:
    from thoth.tracer import GovernedCall, Tracer

log = logging.getLogger("thoth")


def policy_name(tool_name: str) -> str:
    """`mcp__server__tool` -> `tool` (the tool's own name; its server is `mcp_server`, see
    thoth.wire.parse_claude_mcp_name); built-in names (Bash, Write, ...) unchanged."""
    return parse_claude_mcp_name(tool_name)[1]


class ClaudeGovernor:
    """The PreToolUse / PostToolUse callbacks for one tracer."""

    def __init__(self, tracer: Tracer, *, on_block: OnBlock = "return",
                 proxied_mcp_servers: Iterable[str] = ()) -> None:
        self.tracer = tracer
        self.on_block = check_on_block(on_block)
        # MCP servers the agent reaches through `thoth mcp proxy`: the proxy checks their calls
        # (the CLI sends the MCP request, so no checked-once marker can ride along): one check.
        self.proxied = frozenset(proxied_mcp_servers)
        self.violations: list[ThothPolicyViolation] = []
        self._running: dict[str, GovernedCall] = {}

    async def pre_tool_use(self, input_data: Any, tool_use_id: str | None, context: Any) -> dict[str, Any]:
        try:
            server, name = parse_claude_mcp_name(str(input_data["tool_name"]))
            if server is not None and server in self.proxied:
                return {}  # the Thoth proxy in front of this server checks the call
            args = input_data.get("tool_input")
            args = dict(args) if isinstance(args, dict) else {"input": args}
            call_id = tool_use_id or input_data.get("tool_use_id")
            try:
                call = await self.tracer.agovern(name, args, call_id=call_id, mcp_server=server)
            except ThothPolicyViolation as exc:
                self.violations.append(exc)
                return self._deny(block_message(exc), stop=self.on_block == "raise")
            if call_id:
                self._running[str(call_id)] = call
            new = modified(args, call.tool_args)
            if new is None:
                return {}
            return {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "allow",
                                           "updatedInput": new}}
        except Exception as exc:  # the CLI would run the tool if we raised: fail closed
            log.warning("Thoth PreToolUse hook failed (%s: %s); denying the call", type(exc).__name__, exc)
            return self._deny(f"[blocked by Thoth] the call could not be checked ({type(exc).__name__})", stop=False)

    async def user_prompt_submit(self, input_data: Any, tool_use_id: str | None, context: Any) -> dict[str, Any]:
        """The user's prompt is the task of the turn (docs/provenance.md); never blocks it."""
        capture_task(self.tracer, input_data.get("prompt") if isinstance(input_data, dict) else None)
        return {}

    async def post_tool_use(self, input_data: Any, tool_use_id: str | None, context: Any) -> dict[str, Any]:
        call = self._running.pop(str(tool_use_id or input_data.get("tool_use_id")), None)
        if call is not None:
            call.done(input_data.get("tool_response"))
        return {}

    @staticmethod
    def _deny(reason: str, *, stop: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
                                                      "permissionDecisionReason": reason}}
        if stop:
            out.update({"continue_": False, "stopReason": reason})
        return out

    def record_usage(self, message: Any, model: str = "claude") -> None:
        """Record the token usage of a `ResultMessage` (the session's totals)."""
        usage = getattr(message, "usage", None)
        if isinstance(usage, dict) and (usage.get("input_tokens") or usage.get("output_tokens")):
            self.tracer.record_llm_usage(model=model, provider="anthropic",
                                         input_tokens=int(usage.get("input_tokens") or 0),
                                         output_tokens=int(usage.get("output_tokens") or 0))

    def raise_if_blocked(self) -> None:
        """on_block="raise": after the session, raise the first block it saw."""
        if self.violations:
            raise self.violations[0]


def hooks(tracer: Tracer, *, on_block: OnBlock = "return",
          proxied_mcp_servers: Iterable[str] = ()) -> tuple[dict[str, list[Any]], ClaudeGovernor]:
    """`ClaudeAgentOptions(hooks=...)` entries for PreToolUse/PostToolUse, and their governor."""
    from claude_agent_sdk import HookMatcher

    governor = ClaudeGovernor(tracer, on_block=on_block, proxied_mcp_servers=proxied_mcp_servers)
    timeout = max(60.0, tracer.config.step_up_timeout_minutes * 60 + 30)  # outlast a step-up wait
    try:
        pre = HookMatcher(matcher=None, hooks=[governor.pre_tool_use], timeout=timeout, on_failure="block")
    except TypeError:  # releases before on_failure: the hook's own try/except still denies
        pre = HookMatcher(matcher=None, hooks=[governor.pre_tool_use], timeout=timeout)
    return {"PreToolUse": [pre], "PostToolUse": [HookMatcher(matcher=None, hooks=[governor.post_tool_use])],
            "UserPromptSubmit": [HookMatcher(matcher=None, hooks=[governor.user_prompt_submit])]}, governor


def instrument_options(options: Any, tracer: Tracer, *, on_block: OnBlock = "return",
                       proxied_mcp_servers: Iterable[str] = ()) -> ClaudeGovernor:
    """Add Thoth's hooks to a `ClaudeAgentOptions` in place (Thoth's PreToolUse runs first).
    `proxied_mcp_servers`: MCP servers configured through `thoth mcp proxy`, whose calls the
    proxy checks (the hook leaves them to it: one check per call; docs/mcp.md)."""
    entries, governor = hooks(tracer, on_block=on_block, proxied_mcp_servers=proxied_mcp_servers)
    current = dict(options.hooks or {})
    for event, matchers in entries.items():
        current[event] = [*matchers, *current.get(event, [])]
    options.hooks = current
    return governor


def instrument_agent(options: Any, tracer: Tracer, *, on_block: OnBlock = "return") -> Any:
    """`thoth.instrument(ClaudeAgentOptions(...), ...)`: govern in place, return the same options."""
    instrument_options(options, tracer, on_block=on_block)
    return options
