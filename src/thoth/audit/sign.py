"""The server's Ed25519 key that signs chain heads (needs `cryptography`: the server extra)."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from thoth.audit.chain import head_message


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
            # Written whole to a file of its own, then linked into place: link() never replaces, so
            # when several processes start together the first key wins, and no process can read a
            # key file that another is still writing (an O_EXCL create was visible while empty).
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(pem)
                with contextlib.suppress(FileExistsError):
                    os.link(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return key

    def sign(self, tenant_id: str, chain_index: int, head_hash: str) -> str:
        return self.key.sign(head_message(tenant_id, chain_index, head_hash)).hex()
