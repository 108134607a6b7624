"""StoredAnalytics on real SQLite (several processes) and the machine's PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from thoth.analytics.engine import AnalyticsEngine
from thoth.analytics.store import POPULATION_KEY, StoredAnalytics

T0 = 1_700_000_000.0


class SqliteKV:
    """load/save/lock over one SQLite file, as a server would write them."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.db.execute("CREATE TABLE IF NOT EXISTS analytics_state (k TEXT PRIMARY KEY, v BLOB NOT NULL)")

    def load(self, key: str) -> bytes | None:
        row = self.db.execute("SELECT v FROM analytics_state WHERE k = ?", (key,)).fetchone()
        return bytes(row[0]) if row else None

    def save(self, key: str, data: bytes) -> None:
        self.db.execute("INSERT INTO analytics_state (k, v) VALUES (?, ?) "
                        "ON CONFLICT (k) DO UPDATE SET v = excluded.v", (key, data))

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")


def calls(n: int, worker: int) -> list[tuple[str, dict[str, Any], float, str]]:
    tools = ["search_docs", "read_file", "summarize"]
    return [(tools[i % 3], {"path": f"/data/w{worker}/{i}"}, T0 + i * 7.0 + worker, f"w{worker}-s{i // 10}")
            for i in range(n)]


def run(stored: StoredAnalytics, worker: int, n: int) -> None:
    for tool, args, ts, sid in calls(n, worker):
        s = stored.score("agent", tool, args, ts, session_id=sid)
        stored.observe("agent", tool, args, ts, "ALLOW", session_id=sid, anomaly=s)
    stored.flush()


WORKER = """
import sys
sys.path.insert(0, sys.argv[3])
from test_analytics_store import SqliteKV, run
from thoth.analytics.store import StoredAnalytics
kv = SqliteKV(sys.argv[1])
run(StoredAnalytics(kv.load, kv.save, lock=kv.lock, sync_every=7), int(sys.argv[2]), 150)
"""


def test_state_survives_a_restart(tmp_path: Path) -> None:
    kv = SqliteKV(tmp_path / "a.db")
    first = StoredAnalytics(kv.load, kv.save, lock=kv.lock)
    run(first, 0, 100)
    before = first.score("agent", "send_email", {"to": "a@evil.io"}, T0 + 2000, session_id="x")
    restarted = StoredAnalytics(kv.load, kv.save, lock=kv.lock)
    after = restarted.score("agent", "send_email", {"to": "a@evil.io"}, T0 + 2000, session_id="x")
    assert after.score == pytest.approx(before.score) and after.reasons == before.reasons
    assert restarted.agent_report("agent", T0 + 2000)["calls"] == 100
    assert kv.load(POPULATION_KEY) is not None


def test_several_processes_share_one_state_without_losing_calls(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    SqliteKV(db)  # create the table before the workers race
    here = str(Path(__file__).parent)
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(Path.cwd() / "src"), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(db), str(w), here], env=env) for w in (1, 2, 3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    kv = SqliteKV(db)
    report = StoredAnalytics(kv.load, kv.save, lock=kv.lock).agent_report("agent", T0 + 5000)
    assert report["calls"] == 450  # every process's calls, none overwritten
    assert sum(t["calls"] for t in report["top_tools"]) == 450


def test_a_corrupt_row_does_not_break_scoring(tmp_path: Path) -> None:
    kv = SqliteKV(tmp_path / "c.db")
    kv.save("agent", b"garbage")
    kv.save(POPULATION_KEY, b"garbage")
    stored = StoredAnalytics(kv.load, kv.save, lock=kv.lock)
    run(stored, 0, 20)
    assert StoredAnalytics(kv.load, kv.save).agent_report("agent", T0)["calls"] == 20


def test_least_recently_used_agents_are_saved_and_dropped(tmp_path: Path) -> None:
    kv = SqliteKV(tmp_path / "l.db")
    stored = StoredAnalytics(kv.load, kv.save, lock=kv.lock, max_agents=2, sync_every=1000)
    for i, agent in enumerate(["a", "b", "c", "a"]):
        stored.observe(agent, "search_docs", {"q": "x"}, T0 + i, "ALLOW")
    assert set(stored.engine.agents) == {"c", "a"}
    stored.flush()
    assert StoredAnalytics(kv.load, kv.save).agent_report("a", T0)["calls"] == 2
    assert StoredAnalytics(kv.load, kv.save).agent_report("b", T0)["calls"] == 1


def test_a_sole_writer_saves_what_a_plain_engine_learns(tmp_path: Path) -> None:
    # The sync of an unchanged row saves the local copy without a replay: same bytes as an
    # engine that learnt the calls directly.
    kv = SqliteKV(tmp_path / "s.db")
    stored = StoredAnalytics(kv.load, kv.save, lock=kv.lock, sync_every=7)
    plain = AnalyticsEngine()
    for tool, args, ts, sid in calls(60, 0):
        stored.observe("agent", tool, args, ts, "ALLOW", session_id=sid)
        plain.observe("agent", tool, args, ts, "ALLOW", session_id=sid)
    stored.flush()
    assert kv.load("agent") == plain.dump_agent("agent")


def test_interleaved_writers_replay_onto_each_others_rows(tmp_path: Path) -> None:
    # Two engines on one store, syncing in turn: each finds the other's row and must replay its
    # calls onto it, not adopt its own stale copy.
    kv = SqliteKV(tmp_path / "i.db")
    a = StoredAnalytics(kv.load, kv.save, lock=kv.lock, sync_every=5)
    b = StoredAnalytics(kv.load, kv.save, lock=kv.lock, sync_every=3)
    for tool, args, ts, sid in calls(40, 1):
        a.observe("agent", tool, args, ts, "ALLOW", session_id=sid)
        b.observe("agent", tool, args, ts + 0.5, "ALLOW", session_id=sid)
    a.flush()
    b.flush()
    a.sync("agent")  # nothing pending, but b wrote last: a adopts the stored row
    assert StoredAnalytics(kv.load, kv.save).agent_report("agent", T0 + 1000)["calls"] == 80
    assert a.agent_report("agent", T0 + 1000)["calls"] == 80  # refreshed from the store


@pytest.mark.postgres
def test_postgres_shared_by_two_engines() -> None:
    psycopg = pytest.importorskip("psycopg")
    try:
        conns = [psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) for _ in range(2)]
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL: {exc}")
    table = f"analytics_test_{uuid.uuid4().hex[:8]}"
    conns[0].execute(f"CREATE TABLE {table} (k TEXT PRIMARY KEY, v BYTEA NOT NULL)")
    try:
        engines = []
        for conn in conns:
            def load(key: str, c: Any = conn) -> bytes | None:
                row = c.execute(f"SELECT v FROM {table} WHERE k = %s", (key,)).fetchone()
                return bytes(row[0]) if row else None

            def save(key: str, data: bytes, c: Any = conn) -> None:
                c.execute(f"INSERT INTO {table} (k, v) VALUES (%s, %s) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                          (key, data))

            @contextlib.contextmanager
            def lock(key: str, c: Any = conn) -> Iterator[None]:
                with c.transaction():
                    c.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{table}:{key}",))
                    yield

            engines.append(StoredAnalytics(load, save, lock=lock, sync_every=5))
        # Interleave the two engines' calls as two server processes would.
        for (a, b) in zip(calls(60, 1), calls(60, 2), strict=True):
            for stored, (tool, args, ts, sid) in ((engines[0], a), (engines[1], b)):
                stored.observe("agent", tool, args, ts, "ALLOW", session_id=sid)
        for stored in engines:
            stored.flush()
        assert engines[0].agent_report("agent", T0 + 1000)["calls"] == 120
    finally:
        conns[0].execute(f"DROP TABLE {table}")
        for c in conns:
            c.close()
