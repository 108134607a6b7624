"""The decision journal's file format: a header naming the columns, one row of values a line;
files of the first format (no header) and lines a kill tore are read as before."""

from __future__ import annotations

from pathlib import Path

import orjson

from thoth.server import journal
from thoth.server.journal import Journal
from thoth.server.records import DECISION_COLUMNS, DecisionRecord, DecisionRow


def _row(decision_id: str, **changes: object) -> DecisionRow:
    values: dict[str, object] = dict(
        decision_id=decision_id, tenant_id="t", session_id="s", agent_id="a", user_id="u", tool_name="search",
        tool_args='{"q": 1}', decision="ALLOW", would_decision="ALLOW", reason="ok", reason_code=None,
        matched_rule_ids="[]", risk_score=0.25, violation_id=None, hold_token=None, enforcement_mode="enforce",
        environment="prod", dedup_key=None, decided_at=1.7e9, response="")
    values.update(changes)
    return DecisionRow(**values)  # type: ignore[arg-type]


def _replayed(directory: Path) -> list[DecisionRow]:
    return [rec.row for _, records in journal.orphans(directory) for rec in records]


def test_rows_written_come_back_field_for_field(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    rows = [_row("d1"), _row("d2", dedup_key="k", response='{"decision": "BLOCK"}', reason_code="r",
                             violation_id="v", risk_score=0.9)]
    for row in rows:
        j.add(DecisionRecord(row))
    j.write()
    first = j.path.read_bytes().splitlines()[0]
    assert orjson.loads(first) == {"columns": list(DECISION_COLUMNS)}
    j.close()  # pending: the file stays, unlocked, like a dead process's
    assert _replayed(tmp_path) == rows


def test_an_emptied_journal_starts_again_with_its_header(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.add(DecisionRecord(_row("d1")))
    j.write()
    j.committed(1)  # all committed: the file is emptied
    assert j.path.read_bytes() == b""
    j.add(DecisionRecord(_row("d2")))
    j.write()
    assert orjson.loads(j.path.read_bytes().splitlines()[0]) == {"columns": list(DECISION_COLUMNS)}
    j.close()
    assert [r.decision_id for r in _replayed(tmp_path)] == ["d2"]


def test_the_first_format_and_torn_lines(tmp_path: Path) -> None:
    old = _row("d-old")
    line = orjson.dumps((old.values(), old.tenant_id, old.session_id, old.agent_id, old.user_id, old.decision,
                         old.risk_score, old.decided_at))
    (tmp_path / "decisions-1-00000000.jsonl").write_bytes(line + b"\n" + b'[["d-torn", "t' + b"\n")
    assert _replayed(tmp_path) == [old]


def test_a_header_in_another_column_order_is_followed(tmp_path: Path) -> None:
    row = _row("d-reordered")
    columns = list(reversed(DECISION_COLUMNS))
    lines = [orjson.dumps({"columns": columns}), orjson.dumps([getattr(row, c) for c in columns]),
             orjson.dumps([1, 2, 3])]  # a line that is no row of this header: skipped
    (tmp_path / "decisions-2-00000000.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    assert _replayed(tmp_path) == [row]
