"""Per-tenant hash chain over ingested events, with Ed25519-signed chain heads.

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
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS = "0" * 64


def canonical(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def record_hash(body: bytes, ingest_key_id: str | None) -> str:
    """The chain hash of a stored event: see the module docstring."""
    if ingest_key_id is None:
        return digest(body)
    return digest(body + b"\ningest_key_id=" + ingest_key_id.encode())


def head_message(tenant_id: str, chain_index: int, head_hash: str) -> bytes:
    return f"thoth-chain-head:{tenant_id}:{chain_index}:{head_hash}".encode()


class Signer:
    """Loads (or creates once, atomically) the Ed25519 key that signs chain heads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.key = self._load_or_create(path)
        self.public_key_hex = self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        ).hex()

    @staticmethod
    def _load_or_create(path: Path) -> Ed25519PrivateKey:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            try:  # O_EXCL: when several processes start together, the first key wins
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(pem)
            except FileExistsError:
                pass
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return key

    def sign(self, tenant_id: str, chain_index: int, head_hash: str) -> str:
        return self.key.sign(head_message(tenant_id, chain_index, head_hash)).hex()


def verify_signature(public_key_hex: str, signature_hex: str, tenant_id: str, index: int, head_hash: str) -> bool:
    try:
        pub = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
        pub.verify(bytes.fromhex(signature_hex), head_message(tenant_id, index, head_hash))
        return True
    except Exception:
        return False


def verify_chain(
    tenant_id: str,
    rows: list[tuple[int, str, str, str, str | None]],
    head: tuple[int, str, str | None, str | None] | None,
    trusted_public_key_hex: str | None = None,
) -> dict[str, Any]:
    """rows: (chain_index, previous_hash, hash, body, ingest_key_id) ordered by chain_index.
    head: (chain_index, hash, signature, public_key) of the signed head, or None."""
    expected_prev = GENESIS
    checked = 0
    for i, (index, prev, stored_hash, body, key_id) in enumerate(rows):
        breach = None
        try:
            record = orjson.loads(body)
        except orjson.JSONDecodeError:
            record = {}
        if index != i:
            breach = {"type": "missing_or_reordered", "expected_index": i}
        elif prev != expected_prev or record.get("previous_hash") != expected_prev:
            breach = {"type": "broken_link"}
        elif record.get("chain_index") != index or record.get("tenant_id") != tenant_id:
            breach = {"type": "moved_record"}
        elif record_hash(body.encode(), key_id) != stored_hash:
            breach = {"type": "edited_record"}
        if breach:
            breach.update({"chain_index": index, "event_id": record.get("event_id")})
            return _result(False, checked, expected_prev, breach)
        expected_prev = stored_hash
        checked += 1
    if head is None:
        if rows:
            return _result(False, checked, expected_prev, {"type": "unsigned_chain"})
        return _result(True, 0, None, None)
    h_index, h_hash, h_sig, h_pub = head
    if h_index != len(rows) - 1 or h_hash != expected_prev:
        return _result(False, checked, expected_prev, {"type": "truncated_or_extended", "signed_index": h_index})
    pub = trusted_public_key_hex or h_pub
    if rows and not (h_sig and pub and verify_signature(pub, h_sig, tenant_id, h_index, h_hash)):
        return _result(False, checked, expected_prev, {"type": "bad_head_signature"})
    return _result(True, checked, expected_prev if rows else None, None)


def _result(ok: bool, checked: int, head: str | None, breach: dict[str, Any] | None) -> dict[str, Any]:
    return {"verified": ok, "records_checked": checked, "chain_head": head, "breach": breach}
