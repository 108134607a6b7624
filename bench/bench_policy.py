"""Policy engine benchmark: decision latency with 100 rules and a 200-call session history,
and compile time for 1,000 rules.

    PYTHONPATH=src python bench/bench_policy.py [--calls 20000] [--rules 100] [--history 200]

Goals (issue 3): p50 <= 10 us, p99 <= 50 us per decision; the 1,000-rule compile is reported.
Provenance (issue 16): the same policy plus provenance and plan rules, decided for requests
without `arg_sources`/`task` (published clients: must cost nothing measurable) and for
requests with 10 arguments x 3 sources each and a plan.
Each decision is timed alone with perf_counter_ns, GC enabled, after a warm-up, cycling through a
seeded corpus of requests over 17 tools, with varied arguments.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

from thoth.policy import CallContext, compile_policy

TOOLS = ["read_file", "write_file", "delete_file", "send_email", "http_get", "http_post", "query_db", "exec_sql",
         "run_shell", "deploy", "transfer_funds", "refund_payment", "create_ticket", "search_docs",
         "get_secret", "post_slack", "upload_file"]


def make_rules(n: int, rng: random.Random) -> list[dict[str, Any]]:
    """A mix of every condition kind, like a real policy: mostly tool-specific, some global."""
    kinds = [
        lambda t: {"tool": t, "args": {"path": {"prefix": ["/secrets/", "/etc/"]}}},
        lambda t: {"tool": t, "args": {"to": {"not_domain": ["acme.com", "acme.io"]}}},
        lambda t: {"tool": t, "args": {"amount": {"gt": rng.randint(100, 10000)}}},
        lambda t: {"tool": t, "args": {"sql": {"regex": r"(?i)\b(drop|truncate)\b"}}},
        lambda t: {"all": [{"tool": t}, {"history": {"tool": "read_file",
                                                     "args": {"path": {"prefix": "/secrets/"}}}}]},
        lambda t: {"all": [{"tool": t}, {"rate": {"tool": t, "more_than": 20, "seconds": 60}}]},
        lambda t: {"tool": t, "environment": "prod", "agent": f"agent-{rng.randint(0, 9)}*"},
        lambda t: {"tool": t, "args": {"url": {"glob": "https://*.internal.acme.com/*"}}},
        lambda t: {"all": [{"tool": t}, {"history": {"tool": "http_get", "within_last": 5}}]},
        lambda t: {"tool": t, "expr": "args.amount > 500 and risk >= 0.5"},
        lambda t: {"tool": t, "any": [{"user": "blocked-*"}, {"args": {"cc": {"len_gt": 5}}}]},
        lambda t: {"tool": t, "not": {"args": {"path": {"prefix": "/workspace/"}}}},
    ]
    global_kinds = [
        lambda: {"session_calls": {"gt": 500}},
        lambda: {"any_arg": {"regex": "AKIA[0-9A-Z]{16}"}},
        lambda: {"risk": {"gte": 0.95}},
        lambda: {"user": "blocked-*"},
    ]
    actions = ["block", "step_up", "flag", "allow", "step_up", "block"]
    rules = []
    for i in range(n):
        if i % 25 == 0:
            when = global_kinds[(i // 25) % len(global_kinds)]()
        else:
            when = kinds[i % len(kinds)](TOOLS[rng.randrange(len(TOOLS))])
        rules.append({"id": f"R{i:04d}", "description": f"rule {i}", "when": when, "action": actions[i % len(actions)],
                      "reason": f"reason {i}", "references": ["SOC2 CC6.1"] if i % 3 == 0 else []})
    return rules


def make_policy_doc(n_rules: int, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    return {
        "version": 1, "name": f"bench-{n_rules}",
        "tools": {t: {"tier": rng.choice(["low", "medium", "high"]), "classification": "read"} for t in TOOLS},
        "agents": {f"agent-{i}": {"tools": rng.sample(TOOLS, 12)} for i in range(10)} | {"*": {"tools": ["*"]}},
        "intents": {"support": {"tools": TOOLS[:10]}},
        "rules": make_rules(n_rules, rng),
    }


def make_args(tool: str, rng: random.Random) -> dict[str, Any]:
    return {
        "path": rng.choice(["/workspace/a.py", "/secrets/k", "/etc/passwd", "/workspace/docs/x.md"]),
        "to": rng.choice(["bob@acme.com", "eve@evil.example", "ops@eu.acme.io"]),
        "amount": rng.choice([5, 250, 1200, 50000]),
        "sql": rng.choice(["select * from t", "DROP TABLE users"]),
        "url": rng.choice(["https://api.internal.acme.com/v1", "https://example.org/"]),
        "body": "x" * rng.randint(10, 400),
    } if rng.random() < 0.8 else {"q": "hello"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rules", type=int, default=100)
    parser.add_argument("--history", type=int, default=200)
    opts = parser.parse_args()
    rng = random.Random(1)

    doc = make_policy_doc(opts.rules)
    policy = compile_policy(doc)

    # One 200-call session (the server keeps its derived facts), then a corpus of next calls.
    history = policy.new_history()
    start = 1_767_225_600.0
    for i in range(opts.history):
        tool = rng.choice(TOOLS)
        history.record(tool, make_args(tool, rng), start + i, "ALLOW")
    now = start + opts.history
    corpus = []
    for _ in range(2000):
        tool = rng.choice(TOOLS)
        corpus.append(CallContext(
            tool_name=tool, agent_id=f"agent-{rng.randint(0, 14)}", tenant_id="t", user_id=rng.choice(["u1", "blocked-x"]),
            tool_args=make_args(tool, rng), approved_scope=None, enforcement_mode="progressive",
            environment=rng.choice(["prod", "dev"]), session_intent=rng.choice([None, "support"]),
            risk_score=rng.random(), now=now, session_tool_calls=None))

    evaluate = policy.evaluate
    for c in corpus[:1000]:
        evaluate(c, history)
    times = []
    counter = time.perf_counter_ns
    decisions: dict[str, int] = {}
    for i in range(opts.calls):
        c = corpus[i % len(corpus)]
        t0 = counter()
        d = evaluate(c, history)
        times.append(counter() - t0)
        decisions[d.decision.value] = decisions.get(d.decision.value, 0) + 1
    times.sort()
    p50 = times[len(times) // 2] / 1000
    p99 = times[int(len(times) * 0.99)] / 1000
    mean = statistics.fmean(times) / 1000
    print(f"decision latency: {opts.rules} rules, {opts.history}-call history, {opts.calls} decisions")
    print(f"  p50 {p50:.2f} us   p99 {p99:.2f} us   mean {mean:.2f} us   ({1e6 / mean:,.0f} decisions/s on one core)")
    print(f"  goal p50 <= 10 us: {p50 / 10:.2f}x of budget;  p99 <= 50 us: {p99 / 50:.2f}x of budget")
    print(f"  decision mix: {dict(sorted(decisions.items()))}")

    # record() cost: O(1) regardless of history length.
    h = policy.new_history()
    rec = []
    for i in range(5000):
        tool = rng.choice(TOOLS)
        args = make_args(tool, rng)
        t0 = counter()
        h.record(tool, args, start + i, "ALLOW")
        rec.append(counter() - t0)
    first, last = sorted(rec[:500]), sorted(rec[-500:])
    print(f"history.record(): p50 {first[250] / 1000:.2f} us for calls 1-500, {last[250] / 1000:.2f} us for calls 4501-5000")

    bench_provenance(opts.rules, opts.calls, history, now)

    for n in (100, 1000):
        big = make_policy_doc(n)
        t0 = time.perf_counter()
        compile_policy(big)
        dict_ms = (time.perf_counter() - t0) * 1000
        import yaml
        text = yaml.safe_dump(big, sort_keys=False)
        t0 = time.perf_counter()
        compile_policy(text)
        yaml_ms = (time.perf_counter() - t0) * 1000
        print(f"compile {n} rules: {dict_ms:.1f} ms from a dict, {yaml_ms:.1f} ms from YAML text "
              f"({len(text) / 1024:.0f} KiB, with line tracking)")


PROVENANCE_RULES = [
    {"id": "P1", "when": {"tool": "send_email", "args": {"to": {"source": "untrusted"}}}, "action": "block"},
    {"id": "P2", "when": {"flow": {"from": "untrusted", "to": {"tool": ["http_post", "post_slack"]}}},
     "action": "step_up"},
    {"id": "P3", "when": {"in_plan": False, "tool": ["transfer_funds", "deploy", "send_email"]}, "action": "step_up"},
    {"id": "P4", "when": {"tool": "transfer_funds", "args": {"amount": {"source": "model", "gt": 1000}}},
     "action": "block"},
    {"id": "P5", "when": {"plan": "none", "tool": "run_shell"}, "action": "step_up"},
]


def provenance_fields(rng: random.Random) -> tuple[dict[str, Any], dict[str, Any]]:
    """10 arguments, each value seen in 3 places (the task or tools' outputs), and a plan."""
    args = {f"a{i}": f"value-{i}-{rng.randint(0, 10**6)}@x.example" for i in range(10)}
    tools = ["read_file", "http_get", "search_docs", "query_db"]
    sources: dict[str, Any] = {}
    for name in args:
        picks = rng.sample(["task", *(f"tool:{t}#{rng.randint(1, 50)}" for t in tools)], 3)
        sources[name] = picks
    task = {"id": "t1", "plan": {"tools": rng.sample(TOOLS, 8), "source": "tasks:bench"}}
    return {**args, "to": args["a0"], "amount": rng.choice([5, 5000])}, {"arg_sources": sources, "task": task}


def bench_provenance(n_rules: int, calls: int, history: Any, now: float) -> None:
    rng = random.Random(3)
    plain = compile_policy(make_policy_doc(n_rules))
    doc = make_policy_doc(n_rules)
    doc["tools"]["http_get"]["output"] = "trusted"
    doc["rules"] = doc["rules"] + PROVENANCE_RULES
    with_rules = compile_policy(doc)

    def corpus(fields: bool) -> list[CallContext]:
        out = []
        r = random.Random(5)
        for _ in range(2000):
            tool = r.choice(TOOLS)
            args, extra = provenance_fields(r) if fields else (make_args(tool, r), {})
            out.append(CallContext(tool_name=tool, agent_id=f"agent-{r.randint(0, 14)}", tenant_id="t",
                                   tool_args=args, now=now, risk_score=r.random(), **extra))
        return out

    def run(policy: Any, items: list[CallContext]) -> list[int]:
        for c in items[:500]:
            policy.evaluate(c, history)
        times = []
        counter = time.perf_counter_ns
        for i in range(calls):
            c = items[i % len(items)]
            c.provenance = None  # a fresh request: nothing cached from the previous round
            t0 = counter()
            policy.evaluate(c, history)
            times.append(counter() - t0)
        times.sort()
        return times

    def fig(times: list[int]) -> str:
        return f"p50 {times[len(times) // 2] / 1000:.2f} us  p99 {times[int(len(times) * 0.99)] / 1000:.2f} us"

    without = corpus(False)
    with_fields = corpus(True)
    same_args = [CallContext(tool_name=c.tool_name, agent_id=c.agent_id, tenant_id="t", tool_args=c.tool_args,
                             now=now, risk_score=c.risk_score) for c in with_fields]
    del rng
    # Interleaved rounds, best of 3: the two no-field figures differ only by noise if the new
    # conditions cost a published client's request nothing.
    rounds: dict[str, list[list[int]]] = {"a": [], "b": [], "c": [], "d": []}
    for _ in range(3):
        rounds["a"].append(run(plain, without))
        rounds["b"].append(run(with_rules, without))
        rounds["c"].append(run(with_rules, with_fields))
        rounds["d"].append(run(with_rules, same_args))
    best = {k: min(v, key=lambda t: t[len(t) // 2]) for k, v in rounds.items()}
    print(f"provenance ({n_rules} rules + {len(PROVENANCE_RULES)} provenance/plan rules), best of 3 rounds:")
    print(f"  no arg_sources/task, policy without the new rules: {fig(best['a'])}")
    print(f"  no arg_sources/task, policy with the new rules:    {fig(best['b'])}")
    print(f"  10 args x 3 sources + plan, policy with the rules: {fig(best['c'])}")
    print(f"  the same calls without arg_sources/task:           {fig(best['d'])}")
    # The states alone: only the provenance rules, every tool low tier (few calls held).
    only = compile_policy({"version": 1, "tools": {t: {"tier": "low", "output": "trusted" if t == "http_get" else
                                                       "untrusted"} for t in TOOLS}, "rules": PROVENANCE_RULES})
    cheap = {"e": [], "f": []}
    for _ in range(3):
        cheap["e"].append(run(only, with_fields))
        cheap["f"].append(run(only, same_args))
    low = {k: min(v, key=lambda t: t[len(t) // 2]) for k, v in cheap.items()}
    held = sum(1 for c in with_fields if only.evaluate(c, history).is_violation)
    print(f"  only the {len(PROVENANCE_RULES)} provenance rules ({held * 100 // len(with_fields)}% held/blocked): "
          f"with the fields {fig(low['e'])}; without {fig(low['f'])}")
    print("  (held and blocked calls also build the envelope's provenance summary; most of this corpus is)")


if __name__ == "__main__":
    main()
