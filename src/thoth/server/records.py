"""The rows the write path inserts, as typed records (not positional tuples).

Each row dataclass lists its fields in its table's column order: `*_COLUMNS` is read from the
fields, and `values()` is the one conversion to a tuple for an INSERT (an attrgetter: ~0.5 us
for 20 fields, the cost of building the tuple by hand). Enforce, the journal, the writer and the
tests build these; only `values()` knows the order.

The conversions of stored values (`iso`, `load_json`) are here for the store and the reads.
The jobs the writer takes (`DecisionRecord`, `EventBatch`) and what an event batch answers
(`BatchResult`) live here too, so that the store, the writer and the journal share them
without importing each other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

import orjson


def now() -> float:
    return time.time()


def iso(ts: float) -> str:
    """A stored timestamp (epoch seconds) as the API shows it."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def load_json(text: str | None) -> Any:
    """A stored JSON text column, None when empty."""
    return orjson.loads(text) if text else None


@dataclass(slots=True)
class DecisionRow:
    """One row of `decisions`, written once per enforce call."""

    decision_id: str
    tenant_id: str
    session_id: str
    agent_id: str
    user_id: str
    tool_name: str
    tool_args: str  # JSON text
    decision: str
    would_decision: str
    reason: str
    reason_code: str | None
    matched_rule_ids: str  # JSON text (a list of rule ids)
    risk_score: float
    violation_id: str | None
    hold_token: str | None
    enforcement_mode: str
    environment: str
    dedup_key: str | None
    decided_at: float
    # The answer as sent, kept only to replay it to a repeated check of the same call (dedup
    # key); "" otherwise.
    response: str

    def values(self) -> tuple[Any, ...]:
        """The row in DECISION_COLUMNS order, for the INSERT."""
        return _decision_values(self)  # type: ignore[no-any-return]


@dataclass(slots=True)
class ApprovalRow:
    """The approval row a held call (STEP_UP) inserts, field by field."""

    approval_id: str
    tenant_id: str
    hold_token: str
    violation_id: str | None
    decision_id: str
    tool_name: str
    tool_args: str  # JSON text
    args_digest: str
    agent_id: str
    session_id: str
    reason: str
    requested_at: float
    expires_at: float
    status: str
    user_id: str
    requested_by: str
    required_approvals: int
    allowed_uses: int
    valid_seconds: float

    def values(self) -> tuple[Any, ...]:
        """The row in APPROVAL_COLUMNS order, for the INSERT."""
        return _approval_values(self)  # type: ignore[no-any-return]


@dataclass(slots=True)
class EventRow:
    """One row of `events`: a link of a tenant's audit chain (thoth.audit.link made `hash`)."""

    tenant_id: str
    chain_index: int
    event_id: str
    session_id: str | None
    agent_id: str | None
    event_type: str | None
    tool_name: str | None
    occurred_at: str | None
    ingested_at: str
    previous_hash: str
    hash: str
    body: str  # the chained JSON text
    ingest_key_id: str | None

    def values(self) -> tuple[Any, ...]:
        """The row in EVENT_COLUMNS order, for the INSERT."""
        return _event_values(self)  # type: ignore[no-any-return]


DECISION_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(DecisionRow))
APPROVAL_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ApprovalRow))
EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(EventRow))
_decision_values = attrgetter(*DECISION_COLUMNS)
_approval_values = attrgetter(*APPROVAL_COLUMNS)
_event_values = attrgetter(*EVENT_COLUMNS)


@dataclass(slots=True)
class DecisionRecord:
    """One enforce decision to persist (plus the approval when it is a STEP_UP): a writer job."""

    row: DecisionRow
    approval: ApprovalRow | None = None


@dataclass
class EventBatch:
    """Events a client sent (or the server made) to be chained: a writer job."""

    tenant_id: str
    events: list[dict[str, Any]]
    key_id: str | None = None  # the API key that sent them; None: the server's own records


@dataclass
class BatchResult:
    accepted: int = 0
    duplicates: int = 0
