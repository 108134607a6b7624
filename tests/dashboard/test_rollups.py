"""Stored hourly roll-ups (dashboard/rollups.py), on a real `thoth serve` over SQLite and PostgreSQL:
the overview answers while hours are still being counted, the stored counts match a direct
count, survive a restart without a recount, and pick up decisions recorded late into a closed hour."""

from __future__ import annotations

import os
import re
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from tests.dashboard.browser import browser, shot
from tests.support.dashboard import Server, start, stop

from thoth.server.dashboard.rollups import HOUR, last_closed_hour
from thoth.server.dashboard.users import create_user

__all__ = ["browser"]  # a fixture

PG_URL = os.environ.get("THOTH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
PASSWORD = "rollup-password-1"
DECISIONS = ("ALLOW", "ALLOW", "ALLOW", "BLOCK", "STEP_UP")
TOOLS = ("search", "read_file", "send_email")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def db_url(request: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('rollups') / 'thoth.db'}"
        return
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(PG_URL, connect_timeout=2).close()
    except Exception:
        pytest.skip("PostgreSQL not reachable at " + PG_URL)
    schema = f"thoth_rollups_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def rollups_write_locked(db_url: str) -> Iterator[None]:
    """Hold off every write to dashboard_rollups (reads still work), like a long writer would."""
    if db_url.startswith("sqlite"):
        lite = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        lite.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            lite.execute("ROLLBACK")
            lite.close()
        return
    import psycopg

    from thoth.server.db import psycopg_conninfo

    with psycopg.connect(psycopg_conninfo(db_url)) as conn:
        conn.execute("LOCK TABLE dashboard_rollups IN EXCLUSIVE MODE")
        yield
        conn.rollback()


def insert_decisions(server: Server, tenant: str, times: list[float]) -> None:
    rows = [(f"dec_{uuid.uuid4().hex}", tenant, f"s-{i % 4}", f"agent-{i % 3}", "alice", TOOLS[i % len(TOOLS)],
             DECISIONS[i % len(DECISIONS)], (i % 10) / 10, ts, "{}") for i, ts in enumerate(times)]
    with server.store.db.transaction() as conn:
        conn.executemany("INSERT INTO decisions (decision_id, tenant_id, session_id, agent_id, user_id, tool_name,"
                         " decision, risk_score, decided_at, response) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)


def shown_total(html: str) -> int:
    m = re.search(r'<span class="label">Tool calls</span><span class="value">([\d,]+)</span>', html)
    assert m, "no total on the overview"
    return int(m.group(1).replace(",", ""))


def login(server: Server, username: str) -> httpx.Client:
    return server.login(username, PASSWORD)


def wait_for(check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


def stored(server: Server, tenant: str) -> dict[int, tuple[int, str, float]]:
    with server.store.db.read() as conn:
        return {int(h): (int(n), s, float(t)) for h, n, s, t in conn.all(
            "SELECT hour, calls, stats, counted_at FROM dashboard_rollups WHERE tenant_id = ?", (tenant,))}


def direct(server: Server, tenant: str) -> dict[int, Counter[str]]:
    """Decisions per closed hour and outcome, counted straight from the decisions table."""
    out: dict[int, Counter[str]] = {}
    with server.store.db.read() as conn:
        for decision, at in conn.all("SELECT decision, decided_at FROM decisions WHERE tenant_id = ?", (tenant,)):
            out.setdefault(int(at // HOUR), Counter())[decision] += 1
    return out


def restarted(server: Server) -> None:
    """Called before stopping a server that will be started again on its database."""
    # start() expects the password a first start prints, which happens while no user exists.
    with server.store.db.transaction() as conn:
        conn.execute("DELETE FROM dashboard_users")


def test_overview_answers_while_hours_are_missing_and_rollups_survive_a_restart(db_url: str, tmp_path: Path) -> None:
    env = {"THOTH_DASHBOARD_ROLLUP_CHECK_SECONDS": "1"}
    server = start(tmp_path, env, db_url)
    tenant, user = f"t-{uuid.uuid4().hex[:8]}", f"roll-{uuid.uuid4().hex[:6]}"
    create_user(server.store.db, user, PASSWORD, "viewer", tenant)
    closed = last_closed_hour(time.time())
    # 26 closed hours of decisions, 5..30 hours back, plus two in the open hour.
    times = [(h * HOUR) + 60 + 97 * k for h in range(closed - 30, closed - 4) for k in range(7 + h % 5)]
    times += [time.time() - 1, time.time() - 0.5]
    insert_decisions(server, tenant, times)
    c = login(server, user)
    try:
        with rollups_write_locked(db_url):
            # Nothing can be stored: the page still answers, with what there is, and says so.
            r = c.get("/?range=7d", timeout=10)
            assert r.status_code == 200
            assert "Still counting" in r.text and 'hx-trigger="every 2s"' in r.text
            assert shown_total(r.text) < len(times)
            poll = c.get("/?range=7d&part=filling", headers={"HX-Request": "true"}, timeout=10)
            assert poll.status_code == 200 and "Still counting" in poll.text and "HX-Refresh" not in poll.headers
        # Once the background stored every hour, the poll tells the page to reload.
        wait_for(lambda: c.get("/?range=7d&part=filling", headers={"HX-Request": "true"}).headers.get("HX-Refresh")
                 == "true")
        r = c.get("/?range=7d")
        assert "Still counting" not in r.text and shown_total(r.text) == len(times)

        rows, counts = stored(server, tenant), direct(server, tenant)
        for h in range(closed - 30, closed - 4):
            calls, stats, _ = rows[h]
            assert calls == sum(counts[h].values())
            assert orjson.loads(stats)["d"] == dict(counts[h])
        assert all(rows[h][0] == 0 for h in rows if h not in counts)
        assert max(rows) <= last_closed_hour(time.time())  # the open hour is never stored

        restarted(server)
        stop(server)
        server = start(tmp_path, env, db_url)
        create_user(server.store.db, user, PASSWORD, "viewer", tenant)
        c = login(server, user)
        r = c.get("/?range=7d")
        assert r.status_code == 200
        assert "Still counting" not in r.text and shown_total(r.text) == len(times)
        after = stored(server, tenant)
        assert {h: v[2] for h, v in after.items() if h in rows} == {h: v[2] for h, v in rows.items()}, \
            "a restart recounted hours it had stored"

        # A decision recorded late into a closed, stored hour shows up without a restart.
        late_hour = closed - 10
        insert_decisions(server, tenant, [late_hour * HOUR + 5])
        wait_for(lambda: stored(server, tenant)[late_hour][0] == sum(counts[late_hour].values()) + 1)
        wait_for(lambda: shown_total(c.get("/?range=7d").text) == len(times) + 1)
    finally:
        stop(server)


@pytest.mark.browser
def test_overview_in_a_browser_refreshes_itself_until_the_chart_is_complete(browser: Any, tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'thoth.db'}"
    server = start(tmp_path, None, db_url)
    tenant, user = f"t-{uuid.uuid4().hex[:8]}", f"roll-{uuid.uuid4().hex[:6]}"
    create_user(server.store.db, user, PASSWORD, "viewer", tenant)
    closed = last_closed_hour(time.time())
    times = [h * HOUR + 30 * k for h in range(closed - 40, closed - 2) for k in range(3)]
    insert_decisions(server, tenant, times)
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    try:
        # Log in without opening the overview, so nothing is counted before the lock is held.
        page.goto(server.url + "/login?next=/sessions")
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(server.url + "/sessions")
        with rollups_write_locked(db_url):
            page.goto(server.url + "/?range=7d")
            assert "Still counting" in page.inner_text("#overview-filling")
            shot(page, "overview-filling")
        # No navigation from here: the notice polls, then the page reloads itself complete.
        page.wait_for_selector("#overview-filling", state="detached", timeout=30_000)
        page.wait_for_load_state()
        assert shown_total(page.content()) == len(times)
    finally:
        page.close()
        stop(server)
