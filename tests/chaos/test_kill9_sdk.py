"""The SDK keeps calling while `thoth serve` is killed with SIGKILL, twice, and started again on
the same port, database and THOTH_HOME."""

from __future__ import annotations

import time
from pathlib import Path

from .clients import SdkAgents
from .harness import SLACK, Ledger, audit_verify, kill9, launch, make_tenant, relaunch, shutdown, stored
from .report import Report

DEADLINE = 2.0  # enforce_timeout_seconds of the agents


def test_sdk_calls_through_two_kill9_restarts(any_db: tuple[str, str], tmp_path: Path, report: Report) -> None:
    backend, db_url = any_db
    server = launch(db_url, tmp_path / "home")
    tenant = make_tenant()
    ledger = Ledger()
    agents = SdkAgents(server.url, server.key(tenant), tenant, ledger, deadline=DEADLINE).start()
    try:
        for _ in range(2):
            time.sleep(1.5)  # calls answered, events queued and sent
            kill9(server)  # mid-call: some answers and batches are lost in flight
            time.sleep(1.0)  # the agents fail open against a closed port
            server = relaunch(server)
        time.sleep(1.5)
        agents.finish()
        db = stored(db_url, tenant)
        code, verify = audit_verify(server, tenant)
    finally:
        agents.stop()
        shutdown(server)
    report.add("kill -9 x2, SDK sync+async", backend, ledger, db, events_emitted=agents.events_emitted,
               note=f"{agents.calls} calls, {agents.dropped} dropped")

    assert not agents.failures, agents.failures[:3]
    assert agents.flushed and agents.dropped == 0
    # every call's PRE and POST stored once; every acknowledged batch among them
    assert db.events == agents.events_emitted and db.duplicated_events == 0
    assert ledger.acked <= db.event_ids
    # every answered decision stored, none twice; the rest of the calls failed open
    assert set(ledger.answered) <= db.decision_ids and db.duplicated_decisions == 0
    assert ledger.fail_opens > 0 and len(ledger.answered) + ledger.fail_opens == agents.calls
    assert code == 0 and verify["verified"] is True and verify["records_checked"] == db.events
    assert ledger.longest <= DEADLINE + SLACK
    assert not [s for s in ledger.statuses if s >= 500 and s != 503], ledger.statuses
