"""Enforce throughput and latency of `thoth serve` (1 worker) next to a bare ASGI app, same run.

usage: PYTHONPATH=src python bench/bench_enforce.py [--seconds 5] [--rounds 2] [--postgres URL]
           [--baseline DIR] [--floor] [--provenance]
--provenance: the request also carries our SDK's `task` (with a plan) and `arg_sources` for 10
arguments of 3 sources each (issue 16); without it, the request is a published client's.
Goals (issue 4): >= 15,000 decisions/s and >= 0.6x bare at 64 connections, p99 <= 10 ms,
p50 <= 0.2 ms at 1 connection. Server pinned to core 0, wrk to core 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import SRC, lua_escape, start_bare, start_thoth, stop, wrk  # noqa: E402

from thoth.server.db import Database  # noqa: E402

POLICY_FILE = Path(__file__).with_name("policy_50_rules.yaml")


def request_body() -> dict[str, object]:
    # A realistic call: send_email with 5 earlier calls in the session (about 1.7 KB like the research corpus).
    return {
        "tenant_id": "bench", "agent_id": "agent-07", "user_id": "alice", "tool_name": "send_email",
        "session_id": str(uuid.uuid4()), "enforcement_mode": "progressive", "environment": "prod",
        "approved_scope": ["send_email", "read_file", "search", "query_db", "http_get", "write_file"],
        "session_tool_calls": ["send_email"],  # the session's calls so far, this one last (see session_calls)
        "tool_args": {"to": "bob@acme.com", "cc": ["carol@acme.com"], "subject": "Quarterly numbers",
                      "body": "Hi Bob, please find the summary below. " * 25},
        "session_intent": "answer customer questions about invoices",
        "metadata": {"sdk_language": "python", "framework": "langgraph"},
    }


SESSION_LENGTH = 20


def session_calls(position: int) -> list[str]:
    """session_tool_calls of the call at `position` (0-based) of a bench session: every call of a
    bench session is the same send_email, so the list the SDK sends grows by one each call."""
    return ["send_email"] * (position + 1)


def with_provenance(body: dict[str, object]) -> dict[str, object]:
    """10 arguments, each value seen in 3 places, and the task's plan (docs/wire.md)."""
    args = dict(body["tool_args"])  # type: ignore[call-overload]
    for i in range(6):
        args[f"note{i}"] = f"reference {i} from the quarterly report"
    sources: dict[str, list[str]] = {}
    for i, name in enumerate(list(args)[:10]):
        first = "task" if i % 2 == 0 else "tool:query_db#3"  # half of the values from the user's task
        sources[name] = [first, f"tool:read_file#{i + 1}", f"tool:search#{i + 2}"]
    return {**body, "tool_args": args, "arg_sources": sources,
            "task": {"id": "task-1", "plan": {"tools": ["read_file", "search", "send_email"], "source": "tasks:report"}}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--postgres", default=None, help="postgresql://... (default: SQLite in a temp dir)")
    ap.add_argument("--baseline", default=None,
                    help="another checkout (e.g. `git archive main | tar -x -C /tmp/base`): its server runs too")
    ap.add_argument("--floor", action="store_true",
                    help="also run bench/floor_app.py: parse + policy + answer only, the least enforce can cost")
    ap.add_argument("--provenance", action="store_true", help="send task + arg_sources (10 args x 3 sources)")
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="thoth-bench-")
    names = {"bare": "bare ASGI", "on": "thoth /v1/enforce", "off": "thoth, analytics off"}
    if args.baseline:
        names["base"] = "baseline thoth"
    if args.floor:
        names["floor"] = "floor (policy only)"
    # Each server has a database of its own: sharing one, their writes and analytics syncs
    # would contend with each other, which is not what a server meets in production.
    dbs = {mode: database(args.postgres, home, mode) for mode in names if mode not in ("bare", "floor")}
    keys: dict[str, str] = {}
    for mode, db_url in dbs.items():
        # The baseline's database is set up by the baseline's code (its own migrations).
        keys[mode] = prepare(db_url, str(Path(args.baseline) / "src") if mode == "base" else SRC)
    policy_note = POLICY_FILE.name
    base = with_provenance(request_body()) if args.provenance else request_body()
    body = json.dumps({**base, "session_id": "SESSION", "session_tool_calls": ["CALLS"]})
    head, rest = body.split("SESSION")
    mid, tail = rest.split('"CALLS"')
    # Sessions of 20 calls (a realistic agent session; the policy's "longer than 50 calls" rule
    # stays quiet), each run with its own session ids: new sessions keep arriving, as in production.
    # Each call lists the session's calls so far, as the SDK does. wrk calls request() once before
    # the run to check the script, on the same Lua state: n starts at -2 so that the first request
    # sent is call 0 of session 0. (From 0, session 0's first call claimed an earlier call that no
    # server had seen, which makes a server wait ~30 ms for it to arrive from another process;
    # wrk's correction for coordinated omission turned that one request into c1 p99s of 10+ ms.)
    calls = ", ".join(f'"{lua_escape(json.dumps(session_calls(k))[1:-1])}"' for k in range(SESSION_LENGTH))
    lua = (f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
           'wrk.headers["x-api-key"] = "@KEY@"\n'
           f'local head, mid, tail = "{lua_escape(head)}", "{lua_escape(mid)}", "{lua_escape(tail)}"\n'
           f'local calls = {{{calls}}}\n'
           'local run = "@RUN@"\nlocal n = -2\n'
           'request = function()\n  n = n + 1\n'
           f'  local k = n % {SESSION_LENGTH}\n'
           f'  return wrk.format(nil, nil, nil, head .. "bench-" .. run .. "-" .. math.floor(n / {SESSION_LENGTH})'
           ' .. mid .. calls[k + 1] .. tail)\nend\n')
    print(f"request {len(body)} bytes; policy: {policy_note}; databases: {args.postgres or 'SQLite'}, one per server")
    # All servers run at once (pinned to core 0, idle unless loaded) and are loaded in turn,
    # round after round: on a shared machine the load from others drifts, and alternating short
    # runs lets each ratio compare servers measured within seconds of each other.
    procs = {}
    scripts = {mode: lua.replace("@KEY@", keys.get(mode, "")) for mode in names}
    try:
        for mode in names:
            if mode == "bare":
                procs[mode] = start_bare()
            elif mode == "floor":
                procs[mode] = start_bare(str(Path(__file__).with_name("floor_app.py")), str(POLICY_FILE))
            elif mode == "base":
                procs[mode] = start_thoth(dbs[mode], f"{home}/{mode}", str(Path(args.baseline) / "src"),
                                          THOTH_ANALYTICS="on")
            else:
                procs[mode] = start_thoth(dbs[mode], f"{home}/{mode}", THOTH_ANALYTICS=mode)
        for mode, (_, url) in procs.items():
            wrk(url + "/v1/enforce", scripts[mode], 16, 2)  # warm-up
        ratios: dict[str, list[float]] = {"on": [], "off": []}
        for rnd in range(1, args.rounds + 1):
            loaded = {m: wrk(url + "/v1/enforce", scripts[m], 64, args.seconds) for m, (_, url) in procs.items()}
            single = {m: wrk(url + "/v1/enforce", scripts[m], 1, max(2, args.seconds // 2))
                      for m, (_, url) in procs.items()}
            for mode, name in names.items():
                lo, si = loaded[mode], single[mode]
                print(f"round {rnd} {name:<20} c64: {lo['rps']:>7,.0f} req/s  p50 {lo['p50_ms']:.3f} ms  "
                      f"p99 {lo['p99_ms']:.3f} ms  non2xx {lo['non2xx']:.0f} | c1: {si['rps']:,.0f} req/s  "
                      f"p50 {si['p50_ms']:.3f} ms  p99 {si['p99_ms']:.3f} ms")
            for mode in ratios:
                ratios[mode].append(loaded[mode]["rps"] / loaded["bare"]["rps"])
            print(f"round {rnd} ratio to bare at 64 connections: thoth {ratios['on'][-1]:.2f}x, "
                  f"analytics off {ratios['off'][-1]:.2f}x; c1 p50 thoth / bare "
                  f"{single['on']['p50_ms'] / single['bare']['p50_ms']:.2f}x")
            if "floor" in loaded:
                print(f"round {rnd} floor (parse + policy + answer, nothing recorded) / bare at 64 connections: "
                      f"{loaded['floor']['rps'] / loaded['bare']['rps']:.2f}x")
            if "base" in loaded:
                print(f"round {rnd} thoth / baseline: c64 req/s {loaded['on']['rps'] / loaded['base']['rps']:.2f}x, "
                      f"c64 p99 {loaded['on']['p99_ms'] / loaded['base']['p99_ms']:.2f}x, "
                      f"c1 p50 {single['on']['p50_ms'] / single['base']['p50_ms']:.2f}x")
    finally:
        for proc, _ in procs.values():
            stop(proc)
    print(f"server logs: {home}/*/server.log")
    for mode, db_url in dbs.items():
        conn = Database(db_url).connect()
        print(f"decisions recorded by {names[mode]}: {conn.one('SELECT COUNT(*) FROM decisions')[0]:,}")
        conn.close()


def database(postgres: str | None, home: str, mode: str) -> str:
    """A fresh database for one server: a SQLite file, or a schema of its own on PostgreSQL."""
    if not postgres:
        return f"sqlite:///{home}/{mode}.db"
    import psycopg

    schema = f"bench_{mode}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{postgres}{'&' if '?' in postgres else '?'}options=-csearch_path%3D{schema}"


def prepare(db_url: str, src: str) -> str:
    """Migrate, create the bench tenant's key and policy with the code in `src`; returns the key."""
    script = ("import sys\nfrom thoth.server.db import Database\nfrom thoth.server.migrate import upgrade\n"
              "from thoth.server.store import Store\nupgrade(sys.argv[1])\nstore = Store(Database(sys.argv[1]))\n"
              "print(store.create_key('bench', 'sdk')['key'])\n"
              "store.add_policy_version('bench', open(sys.argv[2]).read(), 'bench')\n")
    out = subprocess.run([sys.executable, "-c", script, db_url, str(POLICY_FILE)], env={**os.environ, "PYTHONPATH": src},
                         capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


if __name__ == "__main__":
    main()
