"""Server settings: where the data lives and how the server listens."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def thoth_home() -> Path:
    return Path(os.environ.get("THOTH_HOME") or Path.home() / ".thoth").expanduser()


def default_database_url() -> str:
    url = os.environ.get("THOTH_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{thoth_home() / 'thoth.db'}"


@dataclass
class Settings:
    database_url: str = field(default_factory=default_database_url)
    home: Path = field(default_factory=thoth_home)
    host: str = "127.0.0.1"
    port: int = 8080
    # Ed25519 key that signs audit chain heads; generated under home on first start.
    signing_key_path: Path | None = None
    max_body_bytes: int = 1_048_576
    # Seconds a STEP_UP hold stays open before it resolves to BLOCK.
    hold_timeout_seconds: float = field(default_factory=lambda: float(os.environ.get("THOTH_HOLD_TIMEOUT_SECONDS", "900")))
    # How often a long-polling hold request re-reads the database (other processes resolve holds).
    hold_poll_interval: float = 0.2
    # Seconds a cached API key / active policy is trusted before re-reading it (multi-process).
    cache_ttl: float = 2.0
    # PostgreSQL: the bound on connecting, on the data plane's look-ups and on the writer's
    # commits (the client cuts the connection a second later): a partition costs an SDK call at
    # most this + 1 s, under the SDKs' 5 s enforce timeout.
    db_timeout_seconds: float = field(default_factory=lambda: float(os.environ.get("THOTH_DB_TIMEOUT_SECONDS", "2")))
    # PostgreSQL: any statement (server-side statement_timeout; the client cuts a second later),
    # control-plane and dashboard reads included, which may scan a lot.
    db_statement_timeout_seconds: float = field(
        default_factory=lambda: float(os.environ.get("THOTH_DB_STATEMENT_TIMEOUT_SECONDS", "30")))
    # How often each process merges its analytics baselines into the database (and at shutdown).
    analytics_flush_seconds: float = 2.0
    demo: bool = False
    # Per-call anomaly scoring (thoth.analytics) feeding risk_score; THOTH_ANALYTICS=off disables it.
    analytics: bool = field(default_factory=lambda: os.environ.get("THOTH_ANALYTICS", "on").lower() not in ("0", "off", "false", "no"))

    @property
    def key_path(self) -> Path:
        env = os.environ.get("THOTH_SIGNING_KEY")
        if self.signing_key_path:
            return self.signing_key_path
        if env:
            return Path(env)
        return self.home / "audit-signing-key.pem"
