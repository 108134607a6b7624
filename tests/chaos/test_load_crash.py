"""64 connections of load, the server killed with SIGKILL in the middle, and started again."""

from __future__ import annotations

import time
from pathlib import Path

from .clients import Load, SdkAgents
from .harness import (
    Ledger,
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

SDK_DEADLINE = 2.0
LOAD_TIMEOUT = 15.0


def test_64_connections_through_a_kill9(any_db: tuple[str, str], tmp_path: Path, report: Report) -> None:
    backend, db_url = any_db
    server = launch(db_url, tmp_path / "home")
    load_tenant, sdk_tenant = make_tenant(), make_tenant()
    load_ledger, sdk_ledger = Ledger(), Ledger()
    load = Load(server.url, server.key(load_tenant), load_tenant, load_ledger, connections=64,
                timeout=LOAD_TIMEOUT)
    agents = SdkAgents(server.url, server.key(sdk_tenant), sdk_tenant, sdk_ledger, deadline=SDK_DEADLINE)
    try:
        load.start()
        agents.start()
        time.sleep(3.0)
        answered_before = len(load_ledger.answered)
        kill9(server)  # 64 requests in flight: answered-but-unstored decisions sit in the journal
        time.sleep(0.5)
        # What the dead server had answered but not yet stored: only its journal holds it now.
        journal_only = set(load_ledger.answered) - stored(db_url, load_tenant).decision_ids
        server = relaunch(server)
        time.sleep(3.0)
        load.stop(drain=60)
        agents.finish(flush_timeout=60)
        load_db, sdk_db = stored(db_url, load_tenant), stored(db_url, sdk_tenant)
        load_verify, sdk_verify = audit_verify(server, load_tenant), audit_verify(server, sdk_tenant)
    finally:
        load.stop(drain=0)
        agents.stop()
        shutdown(server)
    report.add("kill -9 under 64-conn load", backend, load_ledger, load_db,
               note=f"{load.requests} req ({answered_before} answered before the kill, {len(journal_only)} "
                    f"of them then only in the journal), "
                    f"errors {dict(load_ledger.errors) or '-'}")
    report.add("kill -9 under 64-conn load: SDK", backend, sdk_ledger, sdk_db, events_emitted=agents.events_emitted,
               note=f"{agents.calls} calls, {agents.dropped} dropped")

    assert answered_before > 0 and len(load_ledger.answered) > answered_before  # load on both sides of the kill
    assert journal_only <= load_db.decision_ids  # the restarted server stored them
    assert load_db.events == len(load_ledger.emitted)
    assert_nothing_lost(load_ledger, load_db, sdk_ledger, sdk_db, agents, (load_verify, sdk_verify), SDK_DEADLINE)
