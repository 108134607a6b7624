"""Cost of the analytics on the decision path.

    PYTHONPATH=src python bench/bench_analytics.py [--n 20000]

Goal: score() adds <= 20 us p50 to a decision. Prints p50/p99 per operation, and each p50 as
a ratio against json.dumps of the same arguments (a cost every decision already pays to log
the call), so figures from a noisy shared machine can be compared.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable

from thoth.analytics import AnalyticsEngine, extract

ARGS: dict[str, dict[str, object]] = {
    "small": {"query": "quarterly revenue 2025"},
    "email": {"to": "bob@customer.example", "subject": "Re: your ticket", "body": "Hello Bob, " + "x" * 600},
    "nested": {"records": [{"id": i, "path": f"/data/reports/q{i}.csv", "owner": f"u{i}@corp.example"}
                           for i in range(12)], "options": {"format": "csv", "limit": 500}},
}


def train(engine: AnalyticsEngine, agents: int = 50, calls: int = 400) -> float:
    r = random.Random(7)
    t = 1_700_000_000.0
    tools = ["search_docs", "read_file", "send_email", "summarize", "run_sql"]
    for a in range(agents):
        for i in range(calls):
            t += r.uniform(1, 30)
            tool = r.choice(tools)
            args = ARGS[r.choice(list(ARGS))]
            engine.observe(f"agent-{a}", tool, args, t, "ALLOW", session_id=f"s{a}-{i // 10}")
    return t


def timed(fn: Callable[[int], object], n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        fn(i)
        out.append((time.perf_counter_ns() - t0) / 1000.0)
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    n = ap.parse_args().n
    engine = AnalyticsEngine()
    t = train(engine)
    print(f"engine: {len(engine.agents)} agents x 400 calls learnt; {n} timed calls per row (us)")
    print(f"{'operation':34s} {'p50':>8s} {'p99':>8s} {'p50 / json.dumps':>17s}")
    for name, args in ARGS.items():
        base = statistics.median(timed(lambda i, a=args: json.dumps(a), n))  # type: ignore[misc]
        rows = {
            f"json.dumps(args) [{name}]": timed(lambda i, a=args: json.dumps(a), n),  # type: ignore[misc]
            f"extract [{name}]": timed(lambda i, a=args: extract("send_email", a), n),  # type: ignore[misc]
            f"score [{name}]": timed(lambda i, a=args: engine.score(  # type: ignore[misc]
                f"agent-{i % 50}", "send_email", a, t + i, session_id=f"s{i % 50}-39"), n),
            f"score+observe [{name}]": timed(lambda i, a=args: engine.observe(  # type: ignore[misc]
                f"agent-{i % 50}", "send_email", a, t + i, "ALLOW", session_id=f"s{i % 50}-40",
                anomaly=engine.score(f"agent-{i % 50}", "send_email", a, t + i, session_id=f"s{i % 50}-40")), n),
        }
        for label, xs in rows.items():
            print(f"{label:34s} {pct(xs, 0.5):8.1f} {pct(xs, 0.99):8.1f} {pct(xs, 0.5) / base:16.1f}x")
    blob = engine.dump_agent("agent-0") or b""
    dump = timed(lambda i: engine.dump_agent("agent-0"), 300)
    load = timed(lambda i: engine.load_agent("agent-x", blob), 300)
    drift = timed(lambda i: engine.drift(f"agent-{i % 50}", t), 300)
    print(f"{'dump_agent':34s} {pct(dump, 0.5):8.1f} {pct(dump, 0.99):8.1f}   ({len(blob)} bytes per agent)")
    print(f"{'load_agent':34s} {pct(load, 0.5):8.1f} {pct(load, 0.99):8.1f}")
    print(f"{'drift (off the hot path)':34s} {pct(drift, 0.5):8.1f} {pct(drift, 0.99):8.1f}")


if __name__ == "__main__":
    main()
