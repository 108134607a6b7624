"""Verify a tenant's chain: the links, the hashes and the signed head.

Imports only the standard library: an auditor checks an export (thoth.audit.export) without
the server's dependencies. Checking the head's Ed25519 signature needs `cryptography`
(`pip install 'thoth-governance[audit]'`), imported when a signature is checked; without it
the check stops with SignatureCheckUnavailable rather than pass a chain it could not check.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from thoth.audit.chain import GENESIS, head_message, record_hash

# (chain_index, previous_hash, hash, body, ingest_key_id), ordered by chain_index
Row = tuple[int, str, str, str, str | None]
# (chain_index, hash, signature, public_key) of the signed head
Head = tuple[int, str, str | None, str | None]

INSTALL_HINT = "pip install 'thoth-governance[audit]' (or: pip install cryptography)"


class SignatureCheckUnavailable(RuntimeError):
    """The chain head's signature cannot be checked: `cryptography` is not installed."""


def _json_loader() -> Callable[[str], Any]:
    # The body only supplies fields to compare (the hash covers its bytes as stored), so either
    # parser gives the same verdict; orjson is faster where the server has it. The standard
    # parser is held to what orjson accepts: no NaN/Infinity.
    try:
        import orjson
    except ImportError:
        def loads(body: str) -> Any:
            return json.loads(body, parse_constant=_reject_constant)
        return loads
    return orjson.loads


def _reject_constant(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")


_loads = _json_loader()


def _parse(body: str) -> dict[str, Any]:
    try:
        record = _loads(body)
    except (ValueError, RecursionError):  # orjson.JSONDecodeError is a ValueError
        return {}
    return record if isinstance(record, dict) else {}


def verify_signature(public_key_hex: str, signature_hex: str, tenant_id: str, index: int, head_hash: str) -> bool:
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError as exc:
        raise SignatureCheckUnavailable(f"checking the chain head's Ed25519 signature needs the "
                                        f"'cryptography' package: {INSTALL_HINT}") from exc
    try:
        pub = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
        pub.verify(bytes.fromhex(signature_hex), head_message(tenant_id, index, head_hash))
        return True
    except Exception:
        return False


def verify_chain(
    tenant_id: str,
    rows: Sequence[Row],
    head: Head | None,
    trusted_public_key_hex: str | None = None,
) -> dict[str, Any]:
    """rows: (chain_index, previous_hash, hash, body, ingest_key_id) ordered by chain_index.
    head: (chain_index, hash, signature, public_key) of the signed head, or None."""
    expected_prev = GENESIS
    checked = 0
    for i, (index, prev, stored_hash, body, key_id) in enumerate(rows):
        breach = None
        record = _parse(body)
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
