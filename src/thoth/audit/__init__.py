"""The audit hash chain: append (a record's hash and its link), sign (Ed25519 chain heads) and
verify, in one package that the server's store calls and that an auditor can use offline.

Importing `thoth.audit` and `thoth.audit.verify` needs only the SDK's own dependencies (the
standard library); checking a head's Ed25519 signature needs `cryptography` (the `audit` extra),
imported only then. `thoth.audit.sign` (the server's signing key) needs `cryptography` too.
See docs/server.md ("Audit chain") and docs/adr/0154-audit-chain-package.md.
"""

from __future__ import annotations

from thoth.audit.chain import GENESIS, canonical, digest, head_message, link, record_hash
from thoth.audit.verify import Head, Row, SignatureCheckUnavailable, verify_chain, verify_signature

__all__ = [
    "GENESIS",
    "Head",
    "Row",
    "SignatureCheckUnavailable",
    "canonical",
    "digest",
    "head_message",
    "link",
    "record_hash",
    "verify_chain",
    "verify_signature",
]
