"""Moved to `thoth.audit` (append, sign, verify in one package that imports without the server).

Kept so that imports from before the move keep working; new code imports `thoth.audit`.
"""

from __future__ import annotations

from thoth.audit.chain import GENESIS, canonical, digest, head_message, record_hash
from thoth.audit.sign import Signer
from thoth.audit.verify import verify_chain, verify_signature

__all__ = ["GENESIS", "Signer", "canonical", "digest", "head_message", "record_hash", "verify_chain",
           "verify_signature"]
