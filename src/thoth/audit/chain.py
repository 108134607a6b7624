"""What a chain record is and how it links to its predecessor (append side, pure functions).

Each stored event body is the canonical JSON (sorted keys) of the event as ingested, including
its `chain_index`, `previous_hash` and `ingested_at`. Its `hash` is SHA-256 of that body, so a
record commits to its predecessor: editing, deleting or reordering any record breaks the chain,
and the signed head catches truncation at the end.

Events a client sent also commit to the API key that sent them (`ingest_key_id`, kept in its
own column, set by the server only): their hash is SHA-256 of the body, a newline and
`ingest_key_id=<key id>` (canonical JSON never holds a raw newline, so the two parts cannot run
into each other). Records without a key id (the server's own approval records, and every event
stored before key ids were recorded) hash the body alone, as they always did: old chains verify
unchanged, and changing, adding or removing the key id of any record breaks its hash.
(docs/adr/0105: the hash input versioning; this module keeps it byte for byte.)
"""

from __future__ import annotations

import hashlib
from typing import Any

GENESIS = "0" * 64


def canonical(record: dict[str, Any]) -> bytes:
    """The stored body of a record. orjson (a server dependency) is imported here, on the
    append side only: verifying hashes the stored body as it is and never re-serialises."""
    import orjson

    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def record_hash(body: bytes, ingest_key_id: str | None) -> str:
    """The chain hash of a stored event: see the module docstring."""
    if ingest_key_id is None:
        return digest(body)
    return digest(body + b"\ningest_key_id=" + ingest_key_id.encode())


def link(event: dict[str, Any], tenant_id: str, ingested_at: str, chain_index: int, previous_hash: str,
         ingest_key_id: str | None) -> tuple[bytes, str]:
    """Append one event after `previous_hash`: (its stored body, its hash)."""
    record = {**event, "tenant_id": tenant_id, "ingested_at": ingested_at, "chain_index": chain_index,
              "previous_hash": previous_hash}
    body = canonical(record)
    return body, record_hash(body, ingest_key_id)


def head_message(tenant_id: str, chain_index: int, head_hash: str) -> bytes:
    """The bytes an Ed25519 chain-head signature covers."""
    return f"thoth-chain-head:{tenant_id}:{chain_index}:{head_hash}".encode()
