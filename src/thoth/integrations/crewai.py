"""CrewAI 1.x: `thoth.instrument(agent_or_crew, ...)` governs every tool call through CrewAI's
own before/after tool-call hooks (ReAct text and native function calling, parallel calls too).

    researcher = Agent(role="Researcher", goal=..., backstory=..., tools=[search, delete_file])
    thoth.instrument(researcher, agent_id="researcher", approved_scope=["search"], tenant_id="acme")
    Crew(agents=[researcher], tasks=[...]).kickoff()

Why hooks, and why this shape (CrewAI 1.15 source):
- A before-tool-call hook runs once per model-requested call, before the tool and before its
  cache. It blocks only by raising `HookAborted` (or returning False): any other exception is
  swallowed and the tool runs. So every error of ours, including an unreachable server, is
  turned into a `HookAborted` here: the hook fails closed.
- Raising from inside a tool instead makes CrewAI retry the call with other argument forms (up
  to 6 checks for one call); a hook is called exactly once.
- CrewAI tells the model "Tool execution blocked by hook"; the after-tool-call hook (which CrewAI
  runs for blocked calls too) replaces that with Thoth's reason.
- on_block="raise" stops the run: the after hook raises `CrewAIPolicyViolation`, which is both
  `ThothPolicyViolation` and CrewAI's `HookAborted`; CrewAI passes `HookAborted` through its
  retry loop, so `kickoff()` raises it once, without retries.
- Step-up: hooks are synchronous, so the hook waits for the reviewer (polling the hold).

Token usage: CrewAI reports each model call as an `LLMCallCompletedEvent` (with usage) on its
event bus; a handler records it on the agent's session (CrewAI runs handlers on a worker
thread, so the figure can lag the kickoff by a moment).

One pair of global hooks serves every instrumented agent; each call is routed by the calling
agent's id, so agents that were not instrumented are left alone.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any

from thoth.exceptions import ThothPolicyViolation
from thoth.integrations._base import OnBlock, block_message, capture_task, check_on_block, modified

if TYPE_CHECKING:
    from thoth.tracer import Tracer

# str(agent id) -> (tracer, on_block). Agent ids are UUIDs CrewAI gives every agent.
_agents: dict[Any, tuple[Tracer, OnBlock]] = {}
# id(tool_input dict) -> what the before hook decided; CrewAI passes the same dict object to
# the before and the after hook of one call, and the after hook pops it.
_pending: dict[int, Any] = {}
_lock = threading.Lock()
_installed = False


def instrument_agent(agent: Any, tracer: Tracer, *, on_block: OnBlock = "return") -> Any:
    """Govern a CrewAI `Agent` (or every agent of a `Crew`) in place; returns the same object."""
    check_on_block(on_block)
    agents = getattr(agent, "agents", None)
    targets = list(agents) if isinstance(agents, list) else [agent]
    for target in targets:
        key = getattr(target, "id", None)
        if key is None:
            raise TypeError(f"thoth.instrument(): {type(target).__qualname__} is not a CrewAI agent or crew")
        _agents[str(key)] = (tracer, on_block)
    _install_hooks()
    return agent


def uninstrument_agent(agent: Any) -> None:
    """Stop governing `agent` (or a crew's agents)."""
    agents = getattr(agent, "agents", None)
    for target in list(agents) if isinstance(agents, list) else [agent]:
        _agents.pop(str(getattr(target, "id", None)), None)


def _install_hooks() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        from crewai.hooks import register_after_tool_call_hook, register_before_tool_call_hook

        register_before_tool_call_hook(_before_tool_call)
        register_after_tool_call_hook(_after_tool_call)
        try:
            from crewai.events.event_bus import crewai_event_bus
            from crewai.events.types.llm_events import LLMCallCompletedEvent
        except ImportError:  # usage is optional; governance is not
            pass
        else:
            crewai_event_bus.on(LLMCallCompletedEvent)(_record_usage)
        _installed = True


@functools.cache
def _violation_class() -> type[ThothPolicyViolation]:
    from crewai.hooks import HookAborted

    class CrewAIPolicyViolation(ThothPolicyViolation, HookAborted):
        """A block that CrewAI treats as its own abort: it stops the tool and the run."""

    return CrewAIPolicyViolation


def _as_abort(exc: ThothPolicyViolation) -> ThothPolicyViolation:
    cls = _violation_class()
    new = cls.__new__(cls)
    new.__dict__.update(exc.__dict__)
    Exception.__init__(new, *exc.args)
    new.reason = exc.reason  # HookAborted's field, same meaning
    setattr(new, "source", "thoth")  # noqa: B010 - HookAborted field, unknown to ThothPolicyViolation
    return new


def _route(ctx: Any) -> tuple[Tracer, OnBlock] | None:
    agent = getattr(ctx, "agent", None)
    return _agents.get(str(getattr(agent, "id", None))) if agent is not None else None


def _before_tool_call(ctx: Any) -> Any:
    route = _route(ctx)
    if route is None:
        return None
    tracer, _ = route
    task = getattr(ctx, "task", None)  # the CrewAI task the agent works on: the user's request
    if task is not None:
        capture_task(tracer, getattr(task, "description", None))
    args = ctx.tool_input if isinstance(ctx.tool_input, dict) else {"input": ctx.tool_input}
    try:
        governed = tracer.govern(ctx.tool_name, dict(args))
    except ThothPolicyViolation as exc:
        _pending[id(ctx.tool_input)] = exc
        raise _as_abort(exc) from None
    except Exception as exc:  # CrewAI would swallow it and run the tool: fail closed
        from crewai.hooks import HookAborted

        raise HookAborted(reason=f"Thoth could not check this call ({type(exc).__name__}); not run",
                          source="thoth") from exc
    new = modified(args, governed.tool_args)
    if new is not None and isinstance(ctx.tool_input, dict):  # CrewAI reads the same dict back
        ctx.tool_input.clear()
        ctx.tool_input.update(new)
    _pending[id(ctx.tool_input)] = governed
    return None


def _after_tool_call(ctx: Any) -> Any:
    route = _route(ctx)
    if route is None:
        return None
    _, on_block = route
    outcome = _pending.pop(id(ctx.tool_input), None)
    if isinstance(outcome, ThothPolicyViolation):
        if on_block == "raise":
            raise _as_abort(outcome)
        return block_message(outcome)  # replaces "Tool execution blocked by hook"
    if outcome is not None:
        outcome.done(ctx.tool_result)
    return None


def _record_usage(source: Any, event: Any) -> None:
    route = _agents.get(str(getattr(event, "agent_id", None)))
    usage = getattr(event, "usage", None)
    if route is None or not isinstance(usage, dict):
        return
    tokens_in = usage.get("prompt_tokens", usage.get("input_tokens")) or 0
    tokens_out = usage.get("completion_tokens", usage.get("output_tokens")) or 0
    if tokens_in or tokens_out:
        route[0].record_llm_usage(model=str(getattr(event, "model", None) or "unknown"),
                                  input_tokens=int(tokens_in), output_tokens=int(tokens_out))
