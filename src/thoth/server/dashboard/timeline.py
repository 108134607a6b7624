"""Turn a page of stored events and decisions into one row per tool call.

A governed call leaves up to three traces: the client's TOOL_CALL_PRE event, the server's
decision, and a TOOL_CALL_POST (ran) or TOOL_CALL_BLOCK (stopped) event. Nothing on the wire
links them by id, so they are paired by order: within one session, calls of the same tool are
checked and finished in the order they started. Rows are chronological.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class CallRow:
    kind: str  # "tool", "llm" or "event"
    tool_name: str
    at: float | None
    event_type: str = ""
    args: Any = None
    decision: dict[str, Any] | None = None
    approval: dict[str, Any] | None = None
    outcome: str = ""  # ran / blocked / failed / pending / "" (unknown)
    duration_ms: float | None = None
    result_size: int | None = None
    result_type: str | None = None
    content: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    anchor: str = ""
    senders: list[str] = field(default_factory=list)  # who sent its events: "key <id>" or "server"


def parse_ts(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _meta(event: dict[str, Any]) -> dict[str, Any]:
    meta = event.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _args(event: dict[str, Any]) -> Any:
    call = _meta(event).get("tool_call")
    if isinstance(call, dict) and "arguments" in call:
        return call["arguments"]
    return event.get("tool_args")


def _sender(event: dict[str, Any]) -> str:
    """Who put this event in the chain: the API key the server recorded, or the server itself
    (its approval records). "" for events stored before key ids were recorded."""
    key_id = event.get("ingest_key_id")
    if key_id:
        return f"key {key_id}"
    if str(event.get("source_type") or "").startswith("thoth_"):
        return "server"
    return ""


def _add_sender(row: CallRow, event: dict[str, Any]) -> None:
    sender = _sender(event)
    if sender and sender not in row.senders:
        row.senders.append(sender)


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def build(events: list[dict[str, Any]], decisions: list[dict[str, Any]],
          approvals: dict[str, dict[str, Any]]) -> list[CallRow]:
    """events: parsed bodies in chain order; decisions in decided order (decided_ts floats);
    approvals by decision_id."""
    rows: list[CallRow] = []
    open_calls: dict[str, deque[CallRow]] = defaultdict(deque)  # waiting for POST/BLOCK
    undecided: dict[str, deque[CallRow]] = defaultdict(deque)  # waiting for a decision
    for event in events:
        etype = str(event.get("event_type") or "")
        tool = str(event.get("tool_name") or "")
        at = parse_ts(event.get("occurred_at"))
        meta = _meta(event)
        anchor = f"e{event.get('chain_index', len(rows))}"
        if etype == "TOOL_CALL_PRE":
            row = CallRow("tool", tool, at, etype, args=_args(event), outcome="pending", anchor=anchor)
            rows.append(row)
            open_calls[tool].append(row)
            undecided[tool].append(row)
            _add_sender(row, event)
        elif etype in ("TOOL_CALL_POST", "TOOL_CALL_BLOCK"):
            if open_calls[tool]:
                row = open_calls[tool].popleft()
            else:  # its PRE is on an earlier page, or was never sent
                row = CallRow("tool", tool, at, etype, args=_args(event), anchor=anchor)
                rows.append(row)
            _add_sender(row, event)
            if etype == "TOOL_CALL_POST":
                row.outcome = "failed" if meta.get("error") or meta.get("status") == "error" else "ran"
                row.duration_ms = _number(meta.get("duration_ms"))
                size = _number(meta.get("result_size_bytes"))
                row.result_size = int(size) if size is not None else None
                row.result_type = meta.get("result_type")
            else:
                row.outcome = "blocked"
                row.extra["block_reason"] = meta.get("reason") or meta.get("decision_reason")
        elif etype == "LLM_INVOCATION":
            rows.append(CallRow("llm", str(meta.get("model") or tool or "LLM"), at, etype,
                                content=event.get("content"), extra=meta, anchor=anchor))
            _add_sender(rows[-1], event)
        else:
            rows.append(CallRow("event", tool, at, etype, content=event.get("content"), extra=meta,
                                anchor=anchor))
            _add_sender(rows[-1], event)
    for d in decisions:
        tool = str(d.get("tool_name") or "")
        if undecided[tool]:
            row = undecided[tool].popleft()
        else:  # a decision whose events are elsewhere (or an SDK that sends none)
            row = CallRow("tool", tool, d.get("decided_ts"), "DECISION", args=d.get("tool_args"),
                          anchor=f"d{d.get('decision_id', '')}")
            rows.append(row)
        row.decision = d
        if row.args is None:
            row.args = d.get("tool_args")
        row.approval = approvals.get(str(d.get("decision_id")))
        if row.outcome in ("", "pending") and d.get("decision") == "BLOCK":
            row.outcome = "blocked"
    rows.sort(key=lambda r: r.at if r.at is not None else float("inf"))
    return rows
