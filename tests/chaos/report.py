"""The table of figures the chaos suite prints at the end of the run (conftest.py prints it).

Each fault test adds one row per fault (`report.add(...)`): events emitted / stored / duplicated,
decisions answered / stored / duplicated, fail-opens, the longest time any request waited, and the
5xx answers by status. With THOTH_CHAOS_REPORT=path the rows are also written there as JSON.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .harness import Ledger, Stored, five_xx


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


def print_table(terminalreporter: Any) -> None:
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
