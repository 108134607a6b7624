"""Event ingestion: validate a batch (thoth.wire.parse_event, one event at a time) and hand it
to the writer. `Core.ingest` is this function."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from thoth.server.store import EventBatch, KeyInfo
from thoth.wire import MAX_EVENTS_PER_BATCH, MAX_JSON_DEPTH, parse_event
from thoth.wire import WireError as ClientError

if TYPE_CHECKING:
    from thoth.server.core import Core


async def ingest(core: Core, key: KeyInfo, body: Any) -> dict[str, Any]:
    # How deep a value inside an event may nest: the body nests the event's fields 2 deep
    # (array, event), or 3 in {"events": [...]}. Checked per event, on its few object/array
    # fields, rather than by a walk of the whole body.
    levels = MAX_JSON_DEPTH - 2
    if isinstance(body, dict) and "events" in body:
        body = body["events"]
        levels -= 1
    if not isinstance(body, list):
        core.metrics.events_rejected += 1
        raise ClientError(422, "the body must be a JSON array of events or {\"events\": [...]}")
    if len(body) > MAX_EVENTS_PER_BATCH:
        core.metrics.events_rejected += len(body)
        raise ClientError(413, f"at most {MAX_EVENTS_PER_BATCH} events per batch")
    events = []
    try:
        for i, raw in enumerate(body):
            events.append(parse_event(i, raw, levels, key.tenant_id))
    except ClientError:
        core.metrics.events_rejected += len(body)
        raise
    if not events:
        return {"accepted": 0, "duplicates": 0, "status": "ok"}
    result = await core.writer.submit(EventBatch(key.tenant_id, events, key.key_id))
    core.metrics.events_ingested += result.accepted
    core.metrics.events_duplicate += result.duplicates
    return {"accepted": result.accepted, "duplicates": result.duplicates, "status": "ok"}
