"""Adapter overhead per tool call over the bare framework call, with an in-process decision
(an enforcer object answering ALLOW and an emitter that drops events), so only the adapter and
the Tracer are measured, not HTTP or policy evaluation.

    .nox/langchain/bin/python bench/bench_adapters.py     # frameworks importable there
    PYTHONPATH=src python bench/bench_adapters.py          # the dict adapters only

Prints p50 / p90 per call for the bare call, the governed call, and their difference.
Goal: overhead <= 50 µs p50.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from thoth.models import DecisionType, EnforcementDecision, ThothConfig
from thoth.session import SessionContext
from thoth.tracer import Tracer

N = 3000


class AllowEnforcer:
    decision = EnforcementDecision(decision=DecisionType.ALLOW, reason="bench")

    def enforce(self, request: dict[str, Any]) -> EnforcementDecision:
        return self.decision

    async def aenforce(self, request: dict[str, Any]) -> EnforcementDecision:
        return self.decision


class DropEmitter:
    def emit(self, event: dict[str, Any]) -> None:
        pass


def tracer() -> Tracer:
    config = ThothConfig(agent_id="bench", tenant_id="acme", approved_scope=["add"], api_url="http://unused")
    return Tracer(config=config, session=SessionContext(config), emitter=DropEmitter(),
                  enforcer=AllowEnforcer(), step_up=object())


def timed(fn: Callable[[], Any]) -> list[float]:
    for _ in range(200):
        fn()
    out = []
    for _ in range(N):
        start = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - start) / 1000)
    return out


def report(name: str, bare: Callable[[], Any], governed: Callable[[], Any]) -> None:
    b, g = timed(bare), timed(governed)
    pb, pg = statistics.median(b), statistics.median(g)
    qb, qg = statistics.quantiles(b, n=10)[-1], statistics.quantiles(g, n=10)[-1]
    print(f"{name:<34} bare p50 {pb:8.1f} µs  governed p50 {pg:8.1f} µs  overhead p50 {pg - pb:7.1f} µs"
          f"  (p90 {qg - qb:7.1f} µs)")


def add(a: int, b: int) -> int:
    return a + b


def main() -> None:
    print(f"python {sys.version.split()[0]}, {N} calls each")
    from thoth.integrations.openai import govern_tools

    tools = govern_tools({"add": add}, tracer())
    report("openai/anthropic dict (args dict)", lambda: add(**{"a": 1, "b": 2}), lambda: tools["add"]({"a": 1, "b": 2}))

    from thoth.integrations.autogen import wrap_autogen_tools

    ag = wrap_autogen_tools({"add": add}, tracer())["add"]
    report("autogen function map", lambda: add(a=1, b=2), lambda: ag(a=1, b=2))

    try:
        from langchain_core.tools import StructuredTool
    except ImportError:
        print("langchain: not installed here (run with .nox/langchain/bin/python)")
        return
    from thoth.integrations.langchain import wrap_tool

    lc = StructuredTool.from_function(add, name="add", description="add")
    governed = wrap_tool(tracer(), "add", lc)
    report("langchain BaseTool.invoke", lambda: lc.invoke({"a": 1, "b": 2}), lambda: governed.invoke({"a": 1, "b": 2}))

    from langchain_core.messages import ToolMessage

    from thoth.integrations.langchain import gate_tool_call

    class Request:
        tool_call = {"name": "add", "args": {"a": 1, "b": 2}, "id": None}

    def execute(request: Any) -> ToolMessage:
        return ToolMessage(content=str(add(**request.tool_call["args"])), tool_call_id="x")

    t = tracer()
    report("langchain middleware / ToolNode hook", lambda: execute(Request()),
           lambda: gate_tool_call(t, "return", Request(), execute))


if __name__ == "__main__":
    main()
