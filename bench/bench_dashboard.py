"""Dashboard page times with 1,000,000 stored events (goal: every page <= 300 ms).

Seeds a SQLite database through the server's own migrations (1,000,000 events, 500,000
decisions, 25,000 sessions over the last 7 days, one session of 20,000 events, approvals),
starts a real `thoth serve` on it, logs in like a browser and times every page: the first
request and the median / p95 of the following ones; the pages that read the hourly roll-ups
are also timed as the very first request of a restarted server (side by side).

    PYTHONPATH=src python bench/bench_dashboard.py [--events 1000000] [--runs 7] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for tests/support
from tests.support.ports import free_port  # noqa: E402

TENANT = "bench"
AGENTS = [f"agent-{i:02d}" for i in range(20)]
USERS = [f"user-{i:03d}" for i in range(200)]
TOOLS = ["search", "read_file", "write_file", "send_email", "http_get", "sql_query", "issue_refund", "delete_file",
         "create_ticket", "lookup_customer"]
BIG_SESSION = "big-session-20000"
H64 = "0" * 64


def seed(db_path: Path, n_events: int) -> dict[str, str]:
    from thoth.server.dashboard.schema import ensure_schema
    from thoth.server.dashboard.users import create_user
    from thoth.server.db import Database
    from thoth.server.migrate import upgrade

    url = f"sqlite:///{db_path}"
    upgrade(url)
    db = Database(url)
    ensure_schema(db)
    rnd = random.Random(7)
    now = time.time()
    span = 7 * 86400
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    n_calls = n_events // 2
    big_calls = 10_000
    n_sessions = 25_000
    sessions: dict[str, list] = {}
    chain = 0
    events, decisions, approvals = [], [], []
    a_violation = ""

    def flush() -> None:
        conn.executemany("INSERT INTO events (tenant_id, chain_index, event_id, session_id, agent_id, event_type,"
                         " tool_name, occurred_at, ingested_at, previous_hash, hash, body)"
                         " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", events)
        conn.executemany("INSERT INTO decisions (decision_id, tenant_id, session_id, agent_id, user_id, tool_name,"
                         " tool_args, decision, would_decision, reason, reason_code, matched_rule_ids, risk_score,"
                         " violation_id, hold_token, enforcement_mode, environment, dedup_key, decided_at, response)"
                         " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", decisions)
        events.clear()
        decisions.clear()

    # Calls in time order; the big session's calls are spread through the whole week too.
    times = sorted(now - span + rnd.random() * span for _ in range(n_calls))
    big_at = set(rnd.sample(range(n_calls), big_calls))
    for i, ts in enumerate(times):
        if i in big_at:
            sid, agent, user = BIG_SESSION, AGENTS[0], USERS[0]
        else:
            k = rnd.randrange(n_sessions)
            sid, agent, user = f"s-{k:06d}", AGENTS[k % len(AGENTS)], USERS[k % len(USERS)]
        tool = rnd.choice(TOOLS)
        args = {"path": f"/data/{rnd.randrange(10**6)}.csv", "limit": rnd.randrange(100)}
        r = rnd.random()
        decision = "ALLOW" if r < 0.9 else "BLOCK" if r < 0.96 else "STEP_UP"
        risk = round(rnd.random() ** 3, 3)
        vid = f"vio_{uuid.UUID(int=rnd.getrandbits(128)).hex}" if decision != "ALLOW" else None
        hold = f"hold_{uuid.UUID(int=rnd.getrandbits(128)).hex}" if decision == "STEP_UP" else None
        did = f"dec_{uuid.UUID(int=rnd.getrandbits(128)).hex}"
        a_violation = vid or a_violation
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1e6) % 10**6:06d}Z"
        for etype, meta in (("TOOL_CALL_PRE", {"tool_call": {"name": tool, "arguments": args}}),
                            ("TOOL_CALL_POST" if decision == "ALLOW" else "TOOL_CALL_BLOCK",
                             {"duration_ms": round(rnd.random() * 80, 1), "result_size_bytes": rnd.randrange(5000)})):
            chain += 1
            body = {"event_id": f"{TENANT}:{chain}", "tenant_id": TENANT, "agent_id": agent, "session_id": sid,
                    "user_id": user, "event_type": etype, "tool_name": tool, "occurred_at": iso, "metadata": meta,
                    "approved_scope": TOOLS[:6], "chain_index": chain}
            events.append((TENANT, chain, f"{TENANT}:{chain}", sid, agent, etype, tool, iso, iso, H64, H64,
                           orjson.dumps(body).decode()))
        decisions.append((did, TENANT, sid, agent, user, tool, orjson.dumps(args).decode(), decision, decision,
                          "allowed by policy" if decision == "ALLOW" else f"{tool} is outside the approved scope",
                          "policy_allow" if decision == "ALLOW" else "policy_scope_violation",
                          '["builtin.scope"]' if vid else "[]", risk, vid, hold, "progressive", "prod", None, ts + 0.001,
                          "{}"))
        if hold:
            pending = ts > now - 600
            approvals.append((f"apr_{did[4:]}", TENANT, hold, vid, did, tool, orjson.dumps(args).decode(), H64, agent,
                              sid, "outside scope", ts, ts + (900 if pending else 300),
                              "pending" if pending else rnd.choice(["approved", "denied", "expired"]),
                              None if pending else "user:bench", None, None if pending else ts + 60))
        s = sessions.setdefault(sid, [agent, user, ts, ts, 0, 0, 0, 0.0])
        s[3] = ts
        s[4] += 1
        s[5] += decision == "BLOCK"
        s[6] += decision == "STEP_UP"
        s[7] = max(s[7], risk)
        if len(events) >= 50_000:
            flush()
    flush()
    conn.executemany("INSERT INTO approvals (approval_id, tenant_id, hold_token, violation_id, decision_id, tool_name,"
                     " tool_args, args_digest, agent_id, session_id, reason, requested_at, expires_at, status,"
                     " resolved_by, resolution_reason, resolved_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                     approvals)
    conn.executemany("INSERT INTO sessions (tenant_id, session_id, agent_id, user_id, started_at, last_event_at,"
                     " tool_calls, blocked, stepped_up, risk_score) VALUES (?,?,?,?,?,?,?,?,?,?)",
                     [(TENANT, sid, *v) for sid, v in sessions.items()])
    conn.execute("INSERT INTO tenants (tenant_id, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING", (TENANT, now))
    conn.execute("INSERT INTO chain_heads (tenant_id, chain_index, hash) VALUES (?, ?, ?)", (TENANT, chain, H64))
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()
    create_user(db, "bench", "bench-password-1", "admin", TENANT)
    db.close()
    return {"violation": a_violation, "events": str(chain)}


def serve(home: Path, db_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "THOTH_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "thoth", "serve", "--port", str(port), "--database-url",
                             f"sqlite:///{db_path}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    return proc, url


def halt(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(10)


def timed(c: httpx.Client, path: str) -> tuple[float, httpx.Response]:
    t0 = time.perf_counter()
    resp = c.get(path)
    ms = (time.perf_counter() - t0) * 1000
    assert resp.status_code == 200, (path, resp.status_code)
    return ms, resp


# Pages that read the hourly roll-ups: timed again as the very first request of a restarted server.
ROLLUP_PAGES = ["/", "/?range=7d", "/?range=30d", "/analytics", "/analytics?range=30d"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--keep", help="reuse/keep the seeded database in this directory")
    ap.add_argument("--drop-rollups", action="store_true",
                    help="empty the stored roll-ups first, to time a first-ever start (counted in the background)")
    a = ap.parse_args()
    home = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="thoth-bench-"))
    home.mkdir(parents=True, exist_ok=True)
    db_path = home / "thoth.db"
    info_path = home / "bench-info.json"
    if not db_path.exists():
        t0 = time.perf_counter()
        info = seed(db_path, a.events)
        info_path.write_bytes(orjson.dumps(info))
        print(f"seeded {int(info['events']):,} events in {time.perf_counter() - t0:.0f} s "
              f"({db_path.stat().st_size / 1e6:.0f} MB)")
    info = orjson.loads(info_path.read_bytes())
    if a.drop_rollups:
        with sqlite3.connect(db_path) as conn:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'dashboard_rollups'").fetchone():
                conn.execute("DELETE FROM dashboard_rollups")
    proc, url = serve(home, db_path)
    try:
        c = httpx.Client(base_url=url, timeout=60)
        token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text).group(1)  # type: ignore[union-attr]
        r = c.post("/login", data={"username": "bench", "password": "bench-password-1", "csrf_token": token})
        assert r.status_code == 303, r.text
        # The first overview of this start: it answers at once; if hours were not stored yet it
        # says so and the background counts them (the time until complete is printed).
        t0 = time.perf_counter()
        first_ms, resp = timed(c, "/?range=30d")
        filling = "Still counting" in resp.text
        while "Still counting" in c.get("/?range=30d&part=filling", headers={"HX-Request": "true"}).text:
            time.sleep(0.2)
        print(f"first start: first /?range=30d {first_ms:.1f} ms ({'chart still filling' if filling else 'complete'});"
              f" all hours stored after {time.perf_counter() - t0:.1f} s")
        first = c.get(f"/sessions/{BIG_SESSION}").text
        after = re.search(r'href="\?after=(\d+)"', first)
        middle = f"/sessions/{BIG_SESSION}?after={int(after.group(1)) + 8000 if after else 0}"
        pages = ["/", "/?range=7d", "/?range=30d", "/sessions", f"/sessions?agent={AGENTS[3]}",
                 "/sessions?outcome=blocked&since=24h", f"/sessions?user={USERS[5]}", "/sessions?q=s-0123",
                 f"/sessions/{BIG_SESSION}", middle, f"/sessions/{BIG_SESSION}?before=9223372036854775807",
                 "/sessions/s-000042", "/violations", f"/violations?agent={AGENTS[7]}&decision=STEP_UP",
                 f"/violations/{info['violation']}", "/approvals", "/approvals/live", "/policies", "/analytics",
                 "/analytics?range=30d", "/settings"]
        results: dict[str, tuple[float, float, float]] = {}
        for path in pages:
            times = [timed(c, path)[0] for _ in range(a.runs + 1)]
            warm = sorted(times[1:])
            p95 = warm[min(len(warm) - 1, int(round(0.95 * (len(warm) - 1))))]
            results[path] = (times[0], statistics.median(warm), p95)
    finally:
        halt(proc)
    # Each roll-up page once more as the very first request of a freshly restarted server (the
    # stored roll-ups are read back; the background check runs at the same time).
    restart: dict[str, float] = {}
    for path in ROLLUP_PAGES:
        proc, url = serve(home, db_path)
        try:
            restart[path] = timed(httpx.Client(base_url=url, cookies=c.cookies, timeout=60), path)[0]
        finally:
            halt(proc)
    print(f"{'page':52} {'restart':>8} {'first':>8} {'median':>8} {'p95':>8}   (ms)")
    for path, (first_ms, median, p95) in results.items():
        cold = f"{restart[path]:8.1f}" if path in restart else f"{'-':>8}"
        print(f"{path[:52]:52} {cold} {first_ms:8.1f} {median:8.1f} {p95:8.1f}")
    worst = max(m for _, m, _ in results.values())
    worst_cold = max(restart.values())
    print("restart = the first request of a restarted server; first = the first of this page in a warm server")
    print(f"worst warm median: {worst:.1f} ms, worst first request after a restart: {worst_cold:.1f} ms"
          f" (goal <= 300 ms: {'met' if max(worst, worst_cold) <= 300 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
