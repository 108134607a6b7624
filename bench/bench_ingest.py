"""Event ingest throughput of `thoth serve` (1 worker): POST /v1/events/batch, 10 events per batch.

usage: PYTHONPATH=src python bench/bench_ingest.py [--seconds 5] [--connections 16] [--rounds 2] [--postgres URL]
Goals (issue 4): >= 30,000 events/s on SQLite, >= 40,000 on PostgreSQL. Every event id is
unique (idempotency is checked per event), each answer comes after the batch is durable, and
the stored count is checked against the acknowledged count at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import lua_escape, start_bare, start_thoth, stop, wrk  # noqa: E402

from thoth.server.db import Database  # noqa: E402
from thoth.server.migrate import upgrade  # noqa: E402
from thoth.server.store import Store  # noqa: E402

BATCH = 10


def event_template() -> str:
    event = {"event_id": "bench:@ID@", "tenant_id": "bench", "agent_id": "agent-3", "session_id": "s-@SESSION@",
             "user_id": "alice", "source_type": "agent_tool_call", "event_type": "TOOL_CALL_POST",
             "tool_name": "search", "content": "search(query='quarterly numbers')",
             "metadata": {"sdk_language": "python", "environment": "prod", "duration_ms": 12.5,
                          "tool_call": {"name": "search", "arguments": {"query": "quarterly numbers"}},
                          "result_type": "list", "result_size_bytes": 2048},
             "approved_scope": ["search", "read_file"], "enforcement_mode": "progressive",
             "session_tool_calls": ["search"], "occurred_at": "2026-11-26T08:00:00Z"}
    return json.dumps(event)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--postgres", default=None)
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="thoth-bench-")
    db_url = args.postgres or f"sqlite:///{home}/thoth.db"
    upgrade(db_url)
    store = Store(Database(db_url))
    key = store.create_key("bench", "sdk")["key"]
    template = event_template()
    a, rest = template.split("@ID@")
    b, c = rest.split("@SESSION@")
    # Each request carries 10 fresh event ids: a counter per request, so nothing is a duplicate.
    # Bodies are concatenated, not substituted: wrk's own CPU must not be the limit.
    lua = (f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
           f'wrk.headers["x-api-key"] = "{key}"\n'
           f'local a, b, c = "{lua_escape(a)}", "{lua_escape(b)}", "{lua_escape(c)}"\n'
           'local n = 0\nrequest = function()\n  n = n + 1\n  local parts = {}\n  local s = tostring(n % 200)\n'
           f'  for j = 1, {BATCH} do\n'
           '    parts[j] = a .. "@RUN@-" .. n .. "-" .. j .. b .. s .. c\n'
           '  end\n  return wrk.format(nil, nil, nil, "[" .. table.concat(parts, ",") .. "]")\nend\n')
    # A bare ASGI app that reads the body and answers runs next to the server, and the two are
    # loaded in turn, round after round, so that each ratio compares runs seconds apart.
    procs = {"bare ASGI": start_bare(), "thoth": start_thoth(db_url, home)}
    print(f"database: {db_url.split('?')[0]}; {args.connections} connections, {BATCH} events per batch")
    try:
        for _, url in procs.values():
            wrk(url + "/v1/events/batch", lua, 4, 1)
        for rnd in range(1, args.rounds + 1):
            res = {name: wrk(url + "/v1/events/batch", lua, args.connections, args.seconds)
                   for name, (_, url) in procs.items()}
            for name, r in res.items():
                print(f"round {rnd} {name:<9}: {r['rps'] * BATCH:>8,.0f} events/s ({r['rps']:,.0f} batches/s)  "
                      f"batch p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  non2xx {r['non2xx']:.0f}")
            print(f"round {rnd} ratio to bare: {res['thoth']['rps'] / res['bare ASGI']['rps']:.2f}x")
    finally:
        for proc, _ in procs.values():
            stop(proc)
    conn = store.db.connect()
    stored = conn.one("SELECT COUNT(*) FROM events WHERE tenant_id = 'bench'")[0]
    verified = store.verify_chain("bench")
    print(f"events stored: {stored:,}; chain verified: {verified['verified']} ({verified['records_checked']:,} records)")

if __name__ == "__main__":
    main()
