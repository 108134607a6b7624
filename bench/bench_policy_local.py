"""In-process mode: overhead of one governed tool call with THOTH_API_URL=local.

    PYTHONPATH=src python bench/bench_policy_local.py [--calls 20000] [--history 200]

Goal (issue 3): governed-call overhead <= 20 us p50 (SDK tracer + in-process engine + events).
Prints the governed call against the bare call, and splits the overhead into its parts:
  engine      policy.evaluate() alone (CallContext built beforehand)
  enforcer    LocalEnforcer.enforce(request): request parsing, session history, envelope
  tracer      the SDK's Tracer with a no-op enforcer and a no-op emitter (its own cost): with
              emit_later, as the SDK's emitters have (events are built off the caller's path), and
              without it (a third-party emitter: the tracer builds each event dict before emit)
  governed    a tool wrapped by thoth.instrument(): everything, events written as JSONL
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

POLICY = Path(__file__).resolve().parents[1] / "src" / "thoth" / "policy" / "packs" / "least_privilege.yaml"


def percentiles(fn: Callable[[], Any], calls: int, reset: Callable[[], None] | None = None) -> tuple[float, float]:
    """p50/p99 in us; `reset` (untimed, every 100 calls) keeps the session at its starting length."""
    for _ in range(min(2000, calls)):
        fn()
    counter = time.perf_counter_ns
    times = []
    for i in range(calls):
        if reset is not None and i % 100 == 0:
            reset()
        t0 = counter()
        fn()
        times.append(counter() - t0)
    times.sort()
    return times[len(times) // 2] / 1000, times[int(len(times) * 0.99)] / 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--history", type=int, default=200)
    opts = parser.parse_args()
    home = tempfile.mkdtemp(prefix="thoth-bench-")
    os.environ.update({"THOTH_API_URL": "local", "THOTH_POLICY": str(POLICY), "THOTH_HOME": home})

    import thoth
    from thoth.models import DecisionType, EnforcementDecision, ThothConfig
    from thoth.policy import CallContext
    from thoth.policy.local import LocalEnforcer, flush_local_sinks
    from thoth.session import SessionContext
    from thoth.tracer import Tracer

    def search_docs(q: str) -> str:
        return q

    class Agent:
        tools = [search_docs]

    agent = thoth.instrument(Agent(), agent_id="support-bot", tenant_id="acme", approved_scope=["search_docs"],
                             enforcement="progressive")
    governed = agent.tools[0]
    for _ in range(opts.history):  # a session with history, like the engine bench
        governed(q="warm-up")
    session = thoth.get_current_session()
    assert session is not None
    start_calls = list(session.tool_calls)

    def keep_session_length() -> None:
        session.tool_calls[:] = start_calls

    results: dict[str, tuple[float, float]] = {}
    results["bare call"] = percentiles(lambda: search_docs(q="refund policy"), opts.calls)

    enforcer = LocalEnforcer(ThothConfig(agent_id="support-bot", tenant_id="acme", api_url="local"))
    policy = enforcer.policy
    history = policy.new_history()
    for i in range(opts.history):
        history.record("search_docs", {"q": "x"}, 1.0 + i, "ALLOW")
    call = CallContext(tool_name="search_docs", agent_id="support-bot", tenant_id="acme",
                       tool_args={"q": "refund policy"}, approved_scope=["search_docs"])
    results["engine: policy.evaluate"] = percentiles(lambda: policy.evaluate(call, history), opts.calls)

    request = {"agent_id": "support-bot", "tenant_id": "acme", "user_id": "system", "tool_name": "search_docs",
               "session_id": "s1", "session_tool_calls": ["search_docs"] * 50, "approved_scope": ["search_docs"],
               "enforcement_mode": "progressive", "environment": "prod", "enforcement_trace_id": "s1",
               "tool_args": {"q": "refund policy"}}
    results["enforcer: LocalEnforcer.enforce"] = percentiles(lambda: enforcer.enforce(request), opts.calls)

    class NoEnforcer:
        allow = EnforcementDecision(decision=DecisionType.ALLOW)

        def enforce(self, request: dict[str, Any]) -> EnforcementDecision:
            return self.allow

    class NoEmitter:
        def emit(self, event: dict[str, Any]) -> None:
            pass

        def emit_later(self, build: Callable[[], dict[str, Any]]) -> None:
            pass  # like LocalEventSink/HttpEmitter: the event is built later, elsewhere

    class EagerNoEmitter:
        def emit(self, event: dict[str, Any]) -> None:
            pass

    config = ThothConfig(agent_id="support-bot", tenant_id="acme", api_url="local", approved_scope=["search_docs"])
    tracer = Tracer(config=config, session=SessionContext(config), emitter=NoEmitter(), enforcer=NoEnforcer(),
                    step_up=None)
    tracer_only = tracer.wrap_tool("search_docs", search_docs)
    for _ in range(opts.history):
        tracer_only(q="warm-up")
    tracer_calls = list(tracer.session.tool_calls)

    def keep_tracer_session_length() -> None:
        tracer.session.tool_calls[:] = tracer_calls

    results["tracer alone (no-op enforcer, no-op emitter)"] = percentiles(
        lambda: tracer_only(q="refund policy"), opts.calls, keep_tracer_session_length)
    tracer.emitter = EagerNoEmitter()
    results["tracer alone, events built on the caller's path"] = percentiles(
        lambda: tracer_only(q="refund policy"), opts.calls, keep_tracer_session_length)
    results["governed call (instrument, local mode)"] = percentiles(
        lambda: governed(q="refund policy"), opts.calls, keep_session_length)
    gc.collect()

    bare = results["bare call"][0]
    print(f"in-process mode, {POLICY.name}, session of {opts.history}+ calls, {opts.calls} calls per row")
    for name, (p50, p99) in results.items():
        print(f"  {name:48s} p50 {p50:8.2f} us   p99 {p99:8.2f} us")
    g50, g99 = results["governed call (instrument, local mode)"]
    t50 = results["tracer alone (no-op enforcer, no-op emitter)"][0] - bare
    e50 = results["enforcer: LocalEnforcer.enforce"][0]
    print(f"governed-call overhead: p50 {g50 - bare:.2f} us ({(g50 - bare) / 20:.2f}x of the 20 us goal), "
          f"p99 {g99 - bare:.2f} us")
    print(f"  of which SDK tracer ~{t50:.2f} us, LocalEnforcer ~{e50:.2f} us "
          f"(engine {results['engine: policy.evaluate'][0]:.2f} us), events/rest ~{g50 - bare - t50 - e50:.2f} us")
    flush_local_sinks()


if __name__ == "__main__":
    main()
