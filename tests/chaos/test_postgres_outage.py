"""PostgreSQL goes away under load and comes back: stopped and started (a cluster of the test's
own, never the shared one), and partitioned by a proxy that stops moving bytes, then heals.

Eight HTTP connections post enforce calls and event batches while an SDK agent (sync and async)
keeps calling on a tenant of its own. During the outage the server must answer what it can, say
503 (with a message) for what it cannot, never 500, and keep answering its liveness probe; the
clients must not wait past their deadline; afterwards every answered decision and acknowledged
event is stored exactly once and the audit chain verifies.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.server import PG_URL, Server, pg_available

from thoth.http import get_endpoint, release

from .clients import TOOL_BODY, Load, SdkAgents, observe, probe
from .harness import (
    SLACK,
    Cluster,
    Ledger,
    ProxyProcess,
    assert_nothing_lost,
    audit_verify,
    kill9,
    launch,
    make_tenant,
    relaunch,
    shutdown,
    stored,
)
from .report import Report

OUTAGE = 4.0  # seconds without the database
SDK_DEADLINE = 2.0
LOAD_TIMEOUT = 15.0  # the load's own client timeout: a request that hits it is a server that hung
LIVENESS = 1.5  # /healthz must answer within this during the outage (0.6 s measured; the rest is scheduling)


class Prober:
    """Polls liveness (/healthz) and readiness (/readyz), each every 0.2 s on a thread of its own
    (a readiness check may wait for the database; liveness must not wait behind it). Keeps the
    slowest liveness answer, its failures, and the readiness statuses seen."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.slowest = 0.0
        self.failed = 0
        self.ready: Counter[int | None] = Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._live, daemon=True),
                         threading.Thread(target=self._ready, daemon=True)]

    def __enter__(self) -> Prober:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def _live(self) -> None:
        while not self._stop.is_set():
            status, took = probe(self.url, timeout=5.0)
            self.slowest = max(self.slowest, took)
            self.failed += status != 200
            self._stop.wait(0.2)

    def _ready(self) -> None:
        while not self._stop.is_set():
            self.ready[probe(self.url, "/readyz", timeout=10.0)[0]] += 1
            self._stop.wait(0.2)


def ready_again(url: str, within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if probe(url, "/readyz")[0] == 200:
            return True
        time.sleep(0.2)
    return False


def run_outage(server: Server, break_db: Callable[[], None], mend_db: Callable[[], None], fault: str,
               report: Report, unready: bool) -> None:
    """`unready`: the outage outlasts the server's database timeout, so readiness must say 503."""
    load_tenant, sdk_tenant = make_tenant(), make_tenant()
    load_ledger, sdk_ledger = Ledger(), Ledger()
    load = Load(server.url, server.key(load_tenant), load_tenant, load_ledger, connections=8,
                timeout=LOAD_TIMEOUT, pause=0.01)
    agents = SdkAgents(server.url, server.key(sdk_tenant), sdk_tenant, sdk_ledger, deadline=SDK_DEADLINE)
    time.sleep(2.1)  # past the server's key cache: the outage finds keys to look up, too
    load.start()
    agents.start()
    time.sleep(1.5)
    with Prober(server.url) as liveness:
        break_db()
        time.sleep(OUTAGE)
        mend_db()
    ready_after = ready_again(server.url)
    time.sleep(3.0)  # back to normal under load
    load.stop(drain=60)
    agents.finish(flush_timeout=60)
    load_db, sdk_db = stored(server.db_url, load_tenant), stored(server.db_url, sdk_tenant)
    load_verify, sdk_verify = audit_verify(server, load_tenant), audit_verify(server, sdk_tenant)
    after = httpx.post(server.url + "/v1/enforce", headers={"x-api-key": load.key}, timeout=LOAD_TIMEOUT,
                       json={**TOOL_BODY, "tenant_id": load_tenant, "tool_args": {"q": "after"}})
    backend = "postgres"
    report.add(f"{fault}: 8-conn load", backend, load_ledger, load_db,
               note=f"{load.requests} req, errors {dict(load_ledger.errors) or '-'}, "
                    f"healthz max {liveness.slowest:.2f}s, readyz {dict(liveness.ready)}")
    report.add(f"{fault}: SDK sync+async", backend, sdk_ledger, sdk_db, events_emitted=agents.events_emitted,
               note=f"{agents.calls} calls, {agents.dropped} dropped")

    # durability: nothing answered or acknowledged is lost, nothing stored twice; during the outage
    # 503, never 500; no request left hanging; the SDK within its deadline
    assert_nothing_lost(load_ledger, load_db, sdk_ledger, sdk_db, agents, (load_verify, sdk_verify), SDK_DEADLINE)
    assert load_ledger.errors["5xx without Retry-After and message"] == 0, dict(load_ledger.errors)
    assert liveness.failed == 0 and liveness.slowest <= LIVENESS, (liveness.failed, liveness.slowest)
    # readiness: not ready while the database is away (503, never 500), ready again after
    assert not [s for s in liveness.ready if s not in (200, 503)], liveness.ready
    assert liveness.ready[503] > 0 or not unready, liveness.ready
    assert ready_after
    assert after.status_code == 200 and after.json()["decision_id"], after.text  # deciding again


def test_postgres_stopped_and_started_under_load(cluster: Cluster, tmp_path: Path, report: Report) -> None:
    server = launch(cluster.url, tmp_path / "home")
    try:
        run_outage(server, lambda: cluster.stop("fast"), cluster.start, "PG stop/start", report, unready=True)
    finally:
        shutdown(server)


@pytest.fixture
def proxied_schema(tmp_path: Path) -> Iterator[tuple[ProxyProcess, str, str]]:
    """A schema of the shared PostgreSQL: (the proxy, the URL through it, the direct URL)."""
    from tests.support.server import pg_schema

    if not pg_available():
        pytest.skip("PostgreSQL not reachable at " + PG_URL)
    proxy = ProxyProcess(5432)
    with pg_schema("thoth_chaos") as direct:
        yield proxy, direct.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"), direct
    proxy.close()


def test_postgres_partitioned_and_healed_under_load(proxied_schema: tuple[ProxyProcess, str, str],
                                                     tmp_path: Path, report: Report) -> None:
    proxy, url, _ = proxied_schema
    server = launch(url, tmp_path / "home")
    try:
        run_outage(server, proxy.partition, proxy.heal, "PG partition/heal", report,
                   unready=False)  # 4 s: shorter than the database timeout a readiness check waits
    finally:
        proxy.heal()
        shutdown(server)


def test_kill9_while_partitioned(proxied_schema: tuple[ProxyProcess, str, str], tmp_path: Path,
                                 report: Report) -> None:
    """Decisions answered while the database is cut off exist only in the server's journal; the
    server is then killed. Started again (same THOTH_HOME) once the network heals, it must store
    every one of them, once."""
    proxy, url, direct = proxied_schema
    server = launch(url, tmp_path / "home")
    tenant = make_tenant()
    ledger = Ledger()
    agents = SdkAgents(server.url, server.key(tenant), tenant, ledger, deadline=SDK_DEADLINE)
    try:
        agents.start()
        time.sleep(1.5)
        proxy.partition()
        time.sleep(OUTAGE)  # the agents keep getting decisions the writer cannot store
        kill9(server)
        journal_only = set(ledger.answered) - stored(direct, tenant).decision_ids
        proxy.heal()
        server = relaunch(server)
        time.sleep(2.0)
        agents.finish(flush_timeout=60)
        db = stored(direct, tenant)
        code, verify = audit_verify(server, tenant)
    finally:
        proxy.heal()
        agents.stop()
        shutdown(server)
    report.add("kill -9 during a PG partition: SDK", "postgres", ledger, db, events_emitted=agents.events_emitted,
               note=f"{agents.calls} calls, {len(journal_only)} answers only in the journal at the kill, "
                    f"{agents.dropped} dropped")

    assert journal_only <= db.decision_ids, f"{len(journal_only - db.decision_ids)} answered decisions lost"
    assert set(ledger.answered) <= db.decision_ids and db.duplicated_decisions == 0
    assert agents.flushed and agents.dropped == 0 and db.events == agents.events_emitted
    assert ledger.acked <= db.event_ids and db.duplicated_events == 0
    assert not agents.failures, agents.failures[:3]
    assert code == 0 and verify["verified"] is True, verify
    assert not [s for s in ledger.statuses if s >= 500 and s != 503], dict(ledger.statuses)
    assert ledger.longest <= SDK_DEADLINE + SLACK


def test_a_held_call_waits_out_a_postgres_outage(cluster: Cluster, tmp_path: Path, report: Report) -> None:
    """An async call held for a human keeps long-polling while PostgreSQL is stopped (its polls answered
    503, never 500) and runs once the approver approves after the database is back."""
    from tests.sdk.real_server import POLICY, Tenant

    server = launch(cluster.url, tmp_path / "home")
    ledger = Ledger()
    try:
        real = Tenant(server)
        real.put_policy(POLICY)  # send_email needs a human
        observe(server.url, real.sdk_key, ledger)
        async def send_email(to: str) -> str:
            return f"sent to {to}"

        # async: its polls go through the SDK's own client on every build, so the ledger sees them
        tool = real.tracer(enforcement="step_up", step_up_timeout_minutes=0.5,
                           enforce_timeout_seconds=SDK_DEADLINE).wrap_tool("send_email", send_email)
        outcome: dict[str, object] = {}

        def call() -> None:
            started = time.monotonic()
            try:
                outcome["result"] = asyncio.run(tool("ops@example.com"))
            except Exception as exc:  # noqa: BLE001 - asserted below
                outcome["result"] = exc
            outcome["took"] = time.monotonic() - started

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        approval = real.wait_for_approval()
        cluster.stop("fast")
        time.sleep(OUTAGE)  # polls go on against a server without its database
        cluster.start()
        resolved = resolve_when_back(real, approval["approval_id"])
        caller.join(40)
        flushed = get_endpoint(server.url, real.sdk_key).transport.flush(30)
        db = stored(server.db_url, real.tenant_id, marker_key="to")
    finally:
        release(server.url)
        shutdown(server)
    ledger.waited(float(outcome.get("took", 0.0)))  # type: ignore[arg-type]
    report.add("PG stop/start: held call, approved", "postgres", ledger, db, events_emitted=2,  # PRE, POST
               note=f"(+2 approval records) answers {dict(ledger.statuses)}, resolve {resolved}, outcome {outcome.get('result')!r}")

    assert resolved == 200 and set(ledger.answered) <= db.decision_ids
    assert flushed and ledger.acked <= db.event_ids and db.duplicated_events == 0
    assert outcome.get("result") == "sent to ops@example.com", outcome
    assert not [s for s in ledger.statuses if s >= 500 and s != 503], dict(ledger.statuses)
    assert float(outcome["took"]) <= 30 + SLACK  # type: ignore[arg-type]


def resolve_when_back(real: Any, approval_id: str, within: float = 20.0) -> int:
    """Approve as soon as the server can record it (503 until its database answers again)."""
    deadline = time.monotonic() + within
    status = 0
    while time.monotonic() < deadline:
        response = httpx.post(f"{real.url}/v1/approvals/{approval_id}/resolve", timeout=10,
                              headers={"authorization": f"Bearer {real.approver_key}"},
                              json={"decision": "approve", "reason": "after the outage"})
        status = response.status_code
        if status == 200:
            break
        time.sleep(0.3)
    return status
