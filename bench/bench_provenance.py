"""What argument provenance costs the agent (issue 16; docs/provenance.md).

    PYTHONPATH=src python bench/bench_provenance.py

1. a decision's `arg_sources` for a session holding 50 tool outputs of 2 KB each (goal: p50 <= 15 µs
   added to the decision): `SourceIndex.sources_for` on a send_email call's arguments;
2. recording a 10 KB output on the call path (goal: p50 <= 100 µs): `output_text` + `add_output`
   (indexing runs on the background thread; it is finished before the session's next decision);
3. indexing itself (off the call path) and the memory of one session's index when full.
"""

from __future__ import annotations

import random
import statistics
import string
import time
import tracemalloc

from thoth.arg_sources import MAX_OUTPUTS, MAX_TEXT, SourceIndex
from thoth.outputs import output_text

random.seed(7)
WORDS = ["meeting", "report", "budget", "travel", "hotel", "invoice", "project", "review", "team", "client",
         "schedule", "update", "please", "send", "the", "and", "for", "with", "about", "next", "week"]


def page(size: int, n: int) -> str:
    """A tool output of about `size` characters with a few identifiers in it."""
    out: list[str] = []
    while sum(len(w) + 1 for w in out) < size:
        r = random.random()
        if r < 0.02:
            out.append(f"user{random.randint(0, 999)}@site{n}.example")
        elif r < 0.03:
            out.append(f"https://site{n}.example/{''.join(random.choices(string.ascii_lowercase, k=6))}")
        elif r < 0.035:
            out.append(str(random.randint(10**9, 10**10)))
        else:
            out.append(random.choice(WORDS))
    return " ".join(out)


def p50_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def main() -> None:
    index = SourceIndex()
    index.add_task("Please send the quarterly report to bob@corp.example before the meeting next week")
    for n in range(50):
        index.add_output(f"tool:read_page#{n + 1}", page(2048, n))
    index.drain()
    args = {"to": ["bob@corp.example", "user12@site3.example"], "subject": "Quarterly report",
            "body": "Hi Bob, here is the quarterly report for the team, with the budget update we discussed "
                    "about the travel schedule and the hotel invoice. Please review it before next week."}
    for _ in range(2000):
        index.sources_for(args)
    samples = []
    for _ in range(20000):
        t0 = time.perf_counter()
        index.sources_for(args)
        samples.append(time.perf_counter() - t0)
    small = {"to": "bob@corp.example", "amount": 120}
    samples_small = []
    for _ in range(20000):
        t0 = time.perf_counter()
        index.sources_for(small)
        samples_small.append(time.perf_counter() - t0)

    ten_kb = page(10 * 1024, 99)
    rec = SourceIndex()
    rec_samples = []
    for i in range(2000):
        t0 = time.perf_counter()
        rec.add_output(f"tool:read_page#{i}", output_text(ten_kb))
        rec_samples.append(time.perf_counter() - t0)
        rec._pending.clear()  # measure the call path only (the indexer thread may see none)
    rec.drain()
    as_dict = {"items": [{"title": "t", "body": page(1000, 5)} for _ in range(10)]}
    dict_samples = []
    for _ in range(2000):
        t0 = time.perf_counter()
        output_text(as_dict)
        dict_samples.append(time.perf_counter() - t0)

    idx_samples = []
    for i in range(200):
        one = SourceIndex()
        one._pending.append((f"tool:x#{i}", ten_kb))
        t0 = time.perf_counter()
        one.drain()
        idx_samples.append(time.perf_counter() - t0)

    tracemalloc.start()
    full = SourceIndex()
    for n in range(MAX_OUTPUTS * 2):
        full._pending.append((f"tool:read_page#{n}", page(MAX_TEXT // MAX_OUTPUTS, n)))
    full.drain()
    current, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    print("provenance (SDK side), p50 over 20,000 runs unless said")
    print(f"  arg_sources, 50 outputs x 2 KB, send_email (2 recipients, subject, 190-char body): {p50_us(samples):6.1f} µs  (goal <= 15)")
    print(f"  arg_sources, same session, 2 short arguments:                                      {p50_us(samples_small):6.1f} µs")
    print(f"  recording a 10 KB string output on the call path (2,000 runs):                     {p50_us(rec_samples):6.1f} µs  (goal <= 100)")
    print(f"  recording a 10-item dict output (~10 KB of text) on the call path (2,000 runs):    {p50_us(dict_samples):6.1f} µs")
    print(f"  indexing a 10 KB output, off the call path (200 runs):                            {p50_us(idx_samples):6.1f} µs")
    print(f"  memory of one full session index ({MAX_OUTPUTS} outputs, {MAX_TEXT // 1024} KB of text): {current / 1e6:6.1f} MB")


if __name__ == "__main__":
    main()
