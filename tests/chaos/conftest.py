"""Fixtures of the chaos suite and the table of figures it prints at the end of the run.

Each fault test adds one row per fault (`report.add(...)`): events emitted / stored / duplicated,
decisions answered / stored / duplicated, fail-opens, the longest time any request waited, and the
5xx answers by status. The table is printed in pytest's terminal summary (no `-s` needed) and,
with THOTH_CHAOS_REPORT=path, written there as JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.support.server import pg_schema

from .harness import Cluster, Ledger, Stored, cluster_tools, five_xx


@dataclass
class Row:
    fault: str
    backend: str
    events_emitted: int
    events_stored: int
    events_duplicated: int
    events_lost: int  # acknowledged but not stored
    decisions_answered: int
    decisions_stored: int
    decisions_duplicated: int
    decisions_lost: int  # answered but not stored
    fail_opens: int
    longest_wait_s: float
    five_xx: dict[int, int] = field(default_factory=dict)
    note: str = ""


ROWS: list[Row] = []


class Report:
    def add(self, fault: str, backend: str, ledger: Ledger, db: Stored | None, events_emitted: int | None = None,
            note: str = "") -> Row:
        emitted = len(ledger.emitted) if events_emitted is None else events_emitted
        row = Row(
            fault=fault, backend=backend, events_emitted=emitted,
            events_stored=db.events if db else 0, events_duplicated=db.duplicated_events if db else 0,
            events_lost=len(ledger.acked - db.event_ids) if db else 0,
            decisions_answered=len(ledger.answered), decisions_stored=db.decisions if db else 0,
            decisions_duplicated=db.duplicated_decisions if db else 0,
            decisions_lost=len(set(ledger.answered) - db.decision_ids) if db else 0,
            fail_opens=ledger.fail_opens, longest_wait_s=round(ledger.longest, 2),
            five_xx=five_xx(ledger.statuses), note=note,
        )
        ROWS.append(row)
        return row


@pytest.fixture(scope="session")
def report() -> Report:
    return Report()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ROWS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("chaos: figures per fault")
    header = (f"{'fault':<34} {'db':<8} {'ev emit':>7} {'stored':>6} {'dup':>3} {'lost':>4} "
              f"{'dec ans':>7} {'stored':>6} {'dup':>3} {'lost':>4} {'f-open':>6} {'longest':>7}  5xx / note")
    write(header)
    write("-" * len(header))
    for r in ROWS:
        codes = " ".join(f"{code}x{n}" for code, n in r.five_xx.items()) or "-"
        write(f"{r.fault[:34]:<34} {r.backend:<8} {r.events_emitted:>7} {r.events_stored:>6} "
              f"{r.events_duplicated:>3} {r.events_lost:>4} {r.decisions_answered:>7} {r.decisions_stored:>6} "
              f"{r.decisions_duplicated:>3} {r.decisions_lost:>4} {r.fail_opens:>6} {r.longest_wait_s:>6.2f}s  "
              f"{codes}{'  ' + r.note if r.note else ''}")
    path = os.environ.get("THOTH_CHAOS_REPORT")
    if path:
        Path(path).write_text(json.dumps([asdict(r) for r in ROWS], indent=2))


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request: Any, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(backend name, database URL): a fresh SQLite file, or a fresh schema of the shared PostgreSQL."""
    if request.param == "sqlite":
        yield "sqlite", f"sqlite:///{tmp_path / 'thoth.db'}"
    else:
        with pg_schema("thoth_chaos") as url:
            yield "postgres", url


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A PostgreSQL cluster of this module's own, on a free port, that tests may stop and start."""
    if os.geteuid() != 0 or not cluster_tools():
        pytest.skip("needs root and Debian's pg_createcluster / pg_ctlcluster to run a private PostgreSQL")
    made = Cluster()
    try:
        made.create()
    except Exception as exc:  # noqa: BLE001 - a machine that cannot make one skips, with the reason
        made.drop()
        pytest.skip(f"could not create a private PostgreSQL cluster: {exc}")
    yield made
    made.drop()


@pytest.fixture(autouse=True, scope="session")
def quiet_sdk() -> Iterator[None]:
    """Thousands of fail-opens log a WARNING each; the table counts them instead."""
    import logging

    logger = logging.getLogger("thoth")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)
