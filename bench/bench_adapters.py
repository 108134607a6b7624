"""Adapter overhead per tool call over the bare framework call, per framework, with the SDK's
in-process decision mode (api_url="local": the policy engine in-process, audit events to a
local file), so neither HTTP nor a server is measured.

    PYTHONPATH=src python bench/bench_adapters.py [--null]       # the dict adapters, AG2 maps
    PYTHONPATH=src .nox/langchain/bin/python bench/bench_adapters.py  # + LangChain
    (likewise .nox/crewai, .nox/openai_agents, .nox/autogen_agentchat, .nox/claude_agent_sdk)

Each line: p50 of the bare call, of the governed call, and their difference (p90 difference in
brackets). "sdk core" is Tracer.govern + done alone (what every adapter pays: with
api_url="local" that includes evaluating the policy and writing the audit events); an adapter's
own cost is its overhead minus that. `--null` swaps in a free ALLOW decision and drops events,
which leaves only the adapter and the Tracer. Goal: overhead <= 50 µs p50.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

N = 3000
WARMUP = 300
HOME = tempfile.mkdtemp(prefix="thoth-bench-")
os.environ.update(THOTH_HOME=HOME, THOTH_LOCAL_EVENTS=os.path.join(HOME, "events.jsonl"))
os.environ.pop("THOTH_POLICY", None)  # the default policy: "add" is in scope, so ALLOW

from thoth.instrumentor import build_tracer  # noqa: E402
from thoth.session import SessionContext  # noqa: E402
from thoth.tracer import Tracer  # noqa: E402

DECISION = "null" if "--null" in sys.argv else "local"


class AllowEnforcer:
    """--null: a decision that costs nothing, so only the adapter and the Tracer are measured."""

    def __init__(self) -> None:
        from thoth.models import DecisionType, EnforcementDecision

        self.decision = EnforcementDecision(decision=DecisionType.ALLOW, reason="bench")

    def enforce(self, request: dict[str, Any]) -> Any:
        return self.decision

    async def aenforce(self, request: dict[str, Any]) -> Any:
        return self.decision


class DropEmitter:
    def emit(self, event: dict[str, Any]) -> None:
        pass


# Every tracer made here. Per-call cost grows with the session's length (the SDK copies the
# call history into each request and event; the in-process engine keeps a history per session),
# so between calls (outside the timed region) the bench starts a new session every
# SESSION_CALLS calls: it measures agent runs of realistic length, not one endless session.
TRACERS: list[Tracer] = []
SESSION_CALLS = 50


def fresh_sessions() -> None:
    for t in TRACERS:
        if len(t.session.tool_calls) >= SESSION_CALLS:
            t.session = SessionContext(t.config)


def tracer() -> Tracer:
    t = build_tracer(agent_id="bench", tenant_id="acme", approved_scope=["add"], api_url="local",
                     enforcement="progressive")
    if DECISION == "null":
        t.enforcer, t.emitter = AllowEnforcer(), DropEmitter()
    TRACERS.append(t)
    return t


def summarize(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples), statistics.quantiles(samples, n=10)[-1]


def timed(fn: Callable[[], Any]) -> list[float]:
    for _ in range(WARMUP):
        fn()
    out = []
    clock = time.perf_counter_ns
    for _ in range(N):
        fresh_sessions()
        start = clock()
        fn()
        out.append((clock() - start) / 1000)
    return out


def atimed(fn: Callable[[], Awaitable[Any]]) -> list[float]:
    async def run() -> list[float]:
        for _ in range(WARMUP):
            await fn()
        out = []
        clock = time.perf_counter_ns
        for _ in range(N):
            fresh_sessions()
            start = clock()
            await fn()
            out.append((clock() - start) / 1000)
        return out

    return asyncio.run(run())


def report(name: str, bare: list[float], governed: list[float]) -> None:
    (pb, qb), (pg, qg) = summarize(bare), summarize(governed)
    print(f"{name:<46} bare {pb:7.1f} µs  governed {pg:7.1f} µs  overhead {pg - pb:6.1f} µs  (p90 {qg - qb:6.1f})")


def add(a: int, b: int) -> int:
    return a + b


async def aadd(a: int, b: int) -> int:
    return a + b


def core() -> None:
    t = tracer()
    report("sdk core: Tracer.govern + done", timed(lambda: add(a=1, b=2)),
           timed(lambda: t.govern("add", {"a": 1, "b": 2}).done(add(a=1, b=2))))


def dict_adapters() -> None:
    from thoth.integrations.autogen import wrap_autogen_tools
    from thoth.integrations.openai import govern_tools

    tools = govern_tools({"add": add}, tracer())
    report("openai/anthropic loops: governed dict", timed(lambda: add(**{"a": 1, "b": 2})),
           timed(lambda: tools["add"]({"a": 1, "b": 2})))
    ag = wrap_autogen_tools({"add": add}, tracer())["add"]
    report("AG2 classic: function map", timed(lambda: add(a=1, b=2)), timed(lambda: ag(a=1, b=2)))


def langchain() -> None:
    from langchain_core.messages import ToolMessage
    from langchain_core.tools import StructuredTool

    from thoth.integrations.langchain import _mirror, gate_tool_call, wrap_tool

    lc = StructuredTool.from_function(add, name="add", description="add")
    governed = wrap_tool(tracer(), "add", lc)
    bare = timed(lambda: lc.invoke({"a": 1, "b": 2}))
    report("langchain BaseTool.invoke (wrap_tool)", bare, timed(lambda: governed.invoke({"a": 1, "b": 2})))
    # The governed _run carries a precomputed signature and resolved type hints, which saves the
    # per-call annotation compiling LangChain does on a bare tool; against a pass-through wrapper
    # with the same surface, the line below is Thoth's own cost on this path.
    same = lc.model_copy()
    inner = same._run

    def passthrough(*args: Any, **kwargs: Any) -> Any:
        return inner(*args, **kwargs)

    _mirror(passthrough, inner)
    same._run = passthrough
    report("langchain BaseTool.invoke vs pass-through", timed(lambda: same.invoke({"a": 1, "b": 2})),
           timed(lambda: governed.invoke({"a": 1, "b": 2})))

    class Request:
        tool_call = {"name": "add", "args": {"a": 1, "b": 2}, "id": None}

    def execute(request: Any) -> ToolMessage:
        return ToolMessage(content=str(add(**request.tool_call["args"])), tool_call_id="x")

    t = tracer()
    report("langchain middleware / ToolNode hook", timed(lambda: execute(Request())),
           timed(lambda: gate_tool_call(t, "return", Request(), execute)))


def crewai() -> None:
    os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    from crewai.hooks import ToolCallHookContext
    from crewai.hooks.tool_hooks import run_after_tool_call_hooks, run_before_tool_call_hooks

    from thoth.integrations import crewai as adapter

    class FakeAgent:  # what the hook context carries: only the id is read
        id = "bench-agent"
        verbose = False

    def call(agent: Any) -> Any:
        args = {"a": 1, "b": 2}
        before = ToolCallHookContext(tool_name="add", tool_input=args, tool=None, agent=agent, task=None, crew=None)
        run_before_tool_call_hooks(before)
        result = add(**args)
        after = ToolCallHookContext(tool_name="add", tool_input=args, tool=None, agent=agent, task=None,
                                    crew=None, tool_result=str(result))
        return run_after_tool_call_hooks(after)

    bare = timed(lambda: call(None))  # no hooks registered: CrewAI's fast path
    adapter.instrument_agent(FakeAgent(), tracer())
    # With any hook registered CrewAI also emits a HookDispatchedEvent per dispatch (its cost,
    # paid by every hook): the second line shows the adapter against that dispatch alone.
    dispatch_only = timed(lambda: call(None))  # Thoth's hooks registered, this agent not governed
    governed = timed(lambda: call(FakeAgent))
    report("crewai before/after tool-call hooks", bare, governed)
    report("crewai hooks vs CrewAI's dispatch with hooks", dispatch_only, governed)


def openai_agents() -> None:
    from thoth.integrations.openai_agents import _Governor

    governor = _Governor(tracer(), "return")
    governor.tracer.session = governor.user_tracer.session = SessionContext(governor.tracer.config)
    TRACERS.remove(governor.user_tracer)
    TRACERS.append(governor.tracer)  # the Tracer that governs; it shares no state with the user's
    counter = iter(range(10**9))

    async def governed() -> Any:
        call_id = f"c{next(counter)}"
        await governor.decide("add", {"a": 1, "b": 2}, call_id)  # needs_approval
        await governor.gate("add", {"a": 1, "b": 2}, call_id)  # input guardrail
        result = await aadd(1, 2)
        governor.finished(call_id, result)  # output guardrail
        return result

    report("openai-agents needs_approval + guardrails", atimed(lambda: aadd(1, 2)), atimed(governed))


def autogen_agentchat() -> None:
    from autogen_core import CancellationToken
    from autogen_core.tools import FunctionTool

    from thoth.integrations.autogen import _AgentchatGovernor, _govern_run_json

    bare, governed = FunctionTool(aadd, description="add", name="add"), FunctionTool(aadd, description="add", name="add")
    _govern_run_json(_AgentchatGovernor(tracer(), "return"), governed)
    token = CancellationToken()
    report("autogen-agentchat tool.run_json", atimed(lambda: bare.run_json({"a": 1, "b": 2}, token)),
           atimed(lambda: governed.run_json({"a": 1, "b": 2}, token)))


def claude_agent_sdk() -> None:
    from thoth.integrations.claude_agent_sdk import ClaudeGovernor

    governor = ClaudeGovernor(tracer())
    counter = iter(range(10**9))

    async def governed() -> Any:
        call_id = f"t{next(counter)}"
        data = {"tool_name": "mcp__bench__add", "tool_input": {"a": 1, "b": 2}, "tool_use_id": call_id}
        await governor.pre_tool_use(data, call_id, None)
        result = await aadd(1, 2)
        await governor.post_tool_use({**data, "tool_response": result}, call_id, None)
        return result

    report("claude-agent-sdk PreToolUse + PostToolUse hooks", atimed(lambda: aadd(1, 2)), atimed(governed))


SECTIONS: list[tuple[str, str | None, Callable[[], None]]] = [
    ("core", None, core), ("dict", None, dict_adapters), ("langchain", "langchain_core", langchain),
    ("crewai", "crewai", crewai), ("openai_agents", "agents", openai_agents),
    ("autogen_agentchat", "autogen_agentchat", autogen_agentchat),
    ("claude_agent_sdk", "claude_agent_sdk", claude_agent_sdk),
]


def main() -> None:
    import importlib.util

    what = "in-process decisions (api_url='local')" if DECISION == "local" else "null decisions (--null)"
    print(f"python {sys.version.split()[0]}, {N} calls each, {what}")
    for _name, module, section in SECTIONS:
        if module is not None and importlib.util.find_spec(module) is None:
            continue
        section()


if __name__ == "__main__":
    main()
