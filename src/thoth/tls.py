"""TLS settings of the SDK: whose CAs to trust, and the client certificate for mutual TLS.

One `TlsFiles` per endpoint; every client the SDK has (its own sync and async ones, httpx behind
a proxy) gets the same `ssl.SSLContext` from it, so a setting holds on every route. Each setting
comes from ThothConfig (client_cert, client_key, ca_bundle) or, when that is not given, from the
environment (THOTH_CLIENT_CERT, THOTH_CLIENT_KEY, THOTH_CA_BUNDLE). With no CA bundle the
system's CAs are trusted (SSL_CERT_FILE / SSL_CERT_DIR still apply); a CA bundle replaces them.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass


@dataclass(frozen=True)
class TlsFiles:
    client_cert: str | None = None  # PEM: the client certificate (and any intermediates)
    client_key: str | None = None  # PEM, unencrypted; None when the key is in client_cert's file
    ca_bundle: str | None = None  # PEM: the CAs that may sign the server's certificate

    @classmethod
    def resolve(cls, client_cert: str | None = None, client_key: str | None = None,
                ca_bundle: str | None = None) -> TlsFiles:
        """The given settings, each falling back to its environment variable."""
        return cls(client_cert or _env("THOTH_CLIENT_CERT"), client_key or _env("THOTH_CLIENT_KEY"),
                   ca_bundle or _env("THOTH_CA_BUNDLE"))

    def context(self) -> ssl.SSLContext:
        """A client context with these files loaded; ValueError naming the setting that is wrong."""
        if self.client_key and not self.client_cert:
            raise ValueError("THOTH_CLIENT_KEY / client_key is set without THOTH_CLIENT_CERT / client_cert")
        try:
            context = ssl.create_default_context(cafile=self.ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the CA bundle THOTH_CA_BUNDLE / ca_bundle={self.ca_bundle!r}: {exc}") from exc
        if self.client_cert:
            try:
                context.load_cert_chain(self.client_cert, self.client_key)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"cannot load the client certificate THOTH_CLIENT_CERT / client_cert="
                                 f"{self.client_cert!r} with its key ({self.client_key or 'in the same file'!r}): "
                                 f"{exc}") from exc
        return context

    @property
    def configured(self) -> bool:
        return bool(self.client_cert or self.client_key or self.ca_bundle)


def _env(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None
