"""openai-agents (the OpenAI Agents SDK): every `FunctionTool` of an agent governed once per call.

    agent = Agent(name="ops", tools=[get_weather, delete_file], ...)
    thoth.integrations.openai_agents.instrument_agent(agent, tracer)
    result = await Runner.run(agent, "...")
    while result.interruptions:                       # calls Thoth holds for a human
        state = await resolve_approvals(result)       # waits for the Thoth reviewer's answer
        result = await Runner.run(agent, state)

How it maps onto the SDK (openai-agents 0.24 source):
- `needs_approval` runs first for each call, with its call id: this is where Thoth decides (the
  one /v1/enforce of the call). ALLOW and BLOCK answer "no approval needed"; STEP_UP answers
  "needs approval", so the run stops with the call in `result.interruptions`, and the decision
  (with its hold token) is kept.
- A tool input guardrail then runs before the tool: it reads the remembered decision (no second
  check). A block becomes `reject_content` (the model reads Thoth's reason; on_block="return")
  or `raise_exception` (on_block="raise": `Runner.run` raises
  `ToolInputGuardrailTripwireTriggered`, whose `.output.output_info` is the ThothPolicyViolation;
  the SDK abandons the whole tool batch).
- `resolve_approvals(result)` waits on each held call's Thoth hold (the approvals queue,
  dashboard, Slack...) and calls `RunState.approve` / `RunState.reject` with the outcome; resume
  with `Runner.run(agent, state)`. Held calls that are not Thoth's are left to the app.
- A tool output guardrail records the tool's result; `on_llm_end` agent hooks record tokens.

The Tracer decides and waits in one step; the adapter splits the two by giving its own Tracer
(same config, session, emitter) an enforcer and a step-up client that park a STEP_UP instead of
waiting, and replay it when `resolve_approvals` asks. The call's PRE event is therefore emitted
twice for a held call (once when held, once when resolved).
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from thoth.exceptions import ThothPolicyViolation
from thoth.integrations._base import OnBlock, block_message, capture_task, check_on_block, parse_arguments
from thoth.models import EnforcementDecision

if TYPE_CHECKING:
    from thoth.tracer import GovernedCall, Tracer

_MARK = "__thoth_governor__"


class _HoldPending(Exception):
    """A STEP_UP the adapter parks (the run interrupts) instead of waiting for it in place."""

    def __init__(self, decision: EnforcementDecision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


def _held_key(request: dict[str, Any]) -> tuple[str, str, str]:
    args = json.dumps(request.get("tool_args"), sort_keys=True, default=str)
    return str(request.get("session_id")), str(request.get("tool_name")), args


class _ReplayEnforcer:
    """The tracer's enforcer, except that a parked call's second look replays its STEP_UP."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.parked: dict[tuple[str, str, str], list[EnforcementDecision]] = defaultdict(list)
        self._lock = threading.Lock()

    def park(self, request_key: tuple[str, str, str], decision: EnforcementDecision) -> None:
        with self._lock:
            self.parked[request_key].append(decision)

    def _replay(self, request: dict[str, Any]) -> EnforcementDecision | None:
        key = _held_key(request)
        with self._lock:
            queue = self.parked.get(key)
            if not queue:
                return None
            decision = queue.pop(0)
            if not queue:
                del self.parked[key]
            return decision

    def enforce(self, request: dict[str, Any]) -> EnforcementDecision:
        return self._replay(request) or self.inner.enforce(request)

    async def aenforce(self, request: dict[str, Any]) -> EnforcementDecision:
        return self._replay(request) or await self.inner.aenforce(request)


class _ParkingStepUp:
    """Parks a STEP_UP (raises _HoldPending) unless `resolve_approvals` is waiting for it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.resolving: set[str] = set()

    def wait(self, decision: EnforcementDecision, tool_name: str) -> EnforcementDecision:
        if decision.hold_token in self.resolving:
            self.resolving.discard(decision.hold_token)
            return self.inner.wait(decision, tool_name)  # type: ignore[no-any-return]
        raise _HoldPending(decision)

    async def await_(self, decision: EnforcementDecision, tool_name: str) -> EnforcementDecision:
        if decision.hold_token in self.resolving:
            self.resolving.discard(decision.hold_token)
            return await self.inner.await_(decision, tool_name)  # type: ignore[no-any-return]
        raise _HoldPending(decision)


_Held = tuple["_Governor", EnforcementDecision, str, dict[str, Any], tuple[str, str, str]]


class _Governor:
    """Per instrumented agent: the splitting Tracer and the calls waiting for a decision."""

    def __init__(self, tracer: Tracer, on_block: OnBlock) -> None:
        from thoth.tracer import Tracer

        self.user_tracer = tracer
        self.on_block = on_block
        self.enforcer = _ReplayEnforcer(tracer.enforcer)
        self.step_up = _ParkingStepUp(tracer.step_up)
        self.tracer = Tracer(config=tracer.config, session=tracer.session, emitter=tracer.emitter,
                             enforcer=self.enforcer, step_up=self.step_up)
        self.running: dict[str, GovernedCall] = {}  # call id -> allowed call, until its output

    async def decide(self, name: str, args: dict[str, Any], call_id: str) -> bool:
        """needs_approval: check the call once; True when Thoth holds it for a human."""
        try:
            await self.tracer.agovern(name, args, call_id=call_id)
        except ThothPolicyViolation:
            return False  # remembered by call id: the input guardrail rejects it
        except _HoldPending as held:
            request = {"session_id": self.tracer.session.session_id, "tool_name": name, "tool_args": args}
            _held[call_id] = (self, held.decision, name, args, _held_key(request))
            return True
        return False

    async def gate(self, name: str, args: dict[str, Any], call_id: str) -> Any:
        """The input guardrail: the remembered decision (no second check). A held call the app
        approved itself still waits for Thoth's hold here."""
        from agents import ToolGuardrailFunctionOutput

        entry = _held.pop(call_id, None)
        if entry is not None:
            self.replay(entry)
        try:
            call = await self.tracer.agovern(name, args, call_id=call_id)
        except ThothPolicyViolation as exc:
            if self.on_block == "raise":
                return ToolGuardrailFunctionOutput.raise_exception(output_info=exc)
            return ToolGuardrailFunctionOutput.reject_content(block_message(exc), output_info=exc)
        self.running[call_id] = call
        return ToolGuardrailFunctionOutput.allow()

    def replay(self, entry: _Held) -> None:
        """Make the next check of a parked call replay its STEP_UP and wait on its hold."""
        _, decision, _, _, key = entry
        self.enforcer.park(key, decision)
        self.step_up.resolving.add(str(decision.hold_token))

    def finished(self, call_id: str, output: Any) -> None:
        call = self.running.pop(call_id, None)
        if call is not None:
            call.done(output)


# call id -> (governor, STEP_UP decision, tool name, args, replay key), until resolved
_held: dict[str, _Held] = {}


def instrument_agent(agent: Any, tracer: Tracer, *, on_block: OnBlock = "return", record_usage: bool = True) -> Any:
    """Govern every FunctionTool of an openai-agents `Agent` in place; returns the agent.

    Tools are changed in place (the `FunctionTool` objects): instrument before sharing them with
    agents that should not be governed.
    """
    from agents import FunctionTool, tool_input_guardrail, tool_output_guardrail

    check_on_block(on_block)
    governor = _Governor(tracer, on_block)
    for tool in agent.tools:
        if not isinstance(tool, FunctionTool) or getattr(tool, _MARK, None) is not None:
            continue
        name = tool.name
        user_rule = tool.needs_approval

        async def needs_approval(ctx: Any, params: dict[str, Any], call_id: str, *, _name: str = name,
                                 _user: Any = user_rule) -> bool:
            held = await governor.decide(_name, dict(params or {}), call_id)
            if held or _user is False or _user is None:
                return held
            if _user is True:
                return True
            answer = _user(ctx, params, call_id)
            return bool(await answer if hasattr(answer, "__await__") else answer)

        @tool_input_guardrail
        async def thoth_gate(data: Any, _name: str = name) -> Any:
            context = data.context
            return await governor.gate(_name, parse_arguments(context.tool_arguments), context.tool_call_id)

        @tool_output_guardrail
        async def thoth_result(data: Any) -> Any:
            from agents import ToolGuardrailFunctionOutput

            governor.finished(data.context.tool_call_id, data.output)
            return ToolGuardrailFunctionOutput.allow()

        tool.needs_approval = needs_approval
        tool.tool_input_guardrails = [thoth_gate, *(tool.tool_input_guardrails or [])]
        tool.tool_output_guardrails = [*(tool.tool_output_guardrails or []), thoth_result]
        setattr(tool, _MARK, governor)
    # MCP servers' tools become FunctionTools only at run time (never in agent.tools): their
    # calls are governed at the server object, once, as tool + MCP server (docs/mcp.md).
    servers = getattr(agent, "mcp_servers", None) or []
    if servers:
        from thoth.integrations.mcp import govern_mcp_server

        for server in servers:
            govern_mcp_server(server, tracer, on_block=on_block)
    if getattr(agent, "hooks", None) is None:
        agent.hooks = _usage_hooks_class()(tracer, record_usage)
    return agent


def _usage_hooks_class() -> type:
    from agents import AgentHooks

    class ThothUsageHooks(AgentHooks):  # type: ignore[misc,type-arg]
        """The run's input (the user's task) before each model call; token usage after it."""

        def __init__(self, tracer: Tracer, record_usage: bool = True) -> None:
            self.tracer = tracer
            self.record_usage = record_usage

        async def on_llm_start(self, context: Any, agent: Any, system_prompt: Any, input_items: Any) -> None:
            capture_task(self.tracer, input_items)  # the run input: a string or the user's items

        async def on_llm_end(self, context: Any, agent: Any, response: Any) -> None:
            if not self.record_usage:
                return
            usage = getattr(response, "usage", None)
            if usage is not None and (usage.input_tokens or usage.output_tokens):
                model = getattr(agent, "model", None)
                self.tracer.record_llm_usage(model=str(getattr(model, "model", model) or "unknown"),
                                             input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)

    return ThothUsageHooks


def _call_id(item: Any) -> str | None:
    raw = getattr(item, "raw_item", None)
    value = raw.get("call_id") if isinstance(raw, dict) else getattr(raw, "call_id", None)
    return str(value) if value else None


async def resolve_approvals(result: Any, state: Any = None) -> Any:
    """Wait for Thoth's answer on every held call of `result` and approve or reject it in the run
    state; returns the state to resume with (`await Runner.run(agent, state)`)."""
    state = state if state is not None else result.to_state()
    for item in result.interruptions:
        entry = _held.pop(_call_id(item) or "", None)
        if entry is None:
            continue  # not held by Thoth: the app approves or rejects it
        governor, _, name, args, _ = entry
        governor.replay(entry)
        try:
            await governor.tracer.agovern(name, args, call_id=_call_id(item))
        except ThothPolicyViolation as exc:
            state.reject(item, rejection_message=block_message(exc))
        else:
            state.approve(item)
    return state


def resolve_approvals_sync(result: Any, state: Any = None) -> Any:
    """`resolve_approvals` for code that runs agents with `Runner.run_sync`."""
    state = state if state is not None else result.to_state()
    for item in result.interruptions:
        entry = _held.pop(_call_id(item) or "", None)
        if entry is None:
            continue
        governor, _, name, args, _ = entry
        governor.replay(entry)
        try:
            governor.tracer.govern(name, args, call_id=_call_id(item))
        except ThothPolicyViolation as exc:
            state.reject(item, rejection_message=block_message(exc))
        else:
            state.approve(item)
    return state

