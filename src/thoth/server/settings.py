"""Server settings: where the data lives and how the server listens."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from thoth.server.proxies import parse_networks


def env_flag(name: str, default: bool = False) -> bool:
    """A yes/no environment variable: 1/on/true/yes, or 0/off/false/no."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    return value.strip().lower() in ("1", "on", "true", "yes")


def env_list(name: str) -> tuple[str, ...]:
    """A comma-separated environment variable as a tuple of trimmed, non-empty items."""
    return tuple(item.strip() for item in os.environ.get(name, "").split(",") if item.strip())


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {value!r}") from None


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
    # Dashboard cookies always carry the Secure flag (serve behind TLS). Without it they are
    # Secure only when the request came over https: directly, or per a trusted proxy's
    # X-Forwarded-Proto. THOTH_SECURE_COOKIES=1 or `thoth serve --secure-cookies`.
    secure_cookies: bool = field(default_factory=lambda: env_flag("THOTH_SECURE_COOKIES"))
    # Addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For / X-Forwarded-Proto
    # the dashboard's login believes; from anyone else those headers are ignored.
    # THOTH_TRUSTED_PROXIES=10.0.0.5,192.168.0.0/24 or `--trusted-proxy` (repeatable).
    trusted_proxies: tuple[str, ...] = field(default_factory=lambda: env_list("THOTH_TRUSTED_PROXIES"))
    # /metrics is unauthenticated: per-tenant series (which name tenant ids) only when asked for.
    metrics_tenant_labels: bool = field(default_factory=lambda: env_flag("THOTH_METRICS_TENANT_LABELS"))
    # Dashboard login throttle (docs/adr/0104-dashboard-login-throttle.md): failures before a
    # lockout, per user name and per client address, and the first and longest lockout.
    login_max_failures: int = field(default_factory=lambda: int(_env_float("THOTH_LOGIN_MAX_FAILURES", 5)))
    login_max_failures_per_address: int = field(
        default_factory=lambda: int(_env_float("THOTH_LOGIN_MAX_FAILURES_PER_ADDRESS", 20)))
    login_lockout_seconds: float = field(default_factory=lambda: _env_float("THOTH_LOGIN_LOCKOUT_SECONDS", 60))
    login_lockout_max_seconds: float = field(
        default_factory=lambda: _env_float("THOTH_LOGIN_LOCKOUT_MAX_SECONDS", 900))

    # MCP tool pins (docs/mcp.md): tenants that must have an admin pin a tool before it is used
    # ("1"/"*" every tenant, or a comma-separated list of tenant ids), and a pin file (JSON or
    # YAML, `thoth mcp pin`'s format) applied at start.
    mcp_require_pinning: str = field(default_factory=lambda: os.environ.get("THOTH_MCP_REQUIRE_PINNING", ""))
    mcp_pins_file: str | None = field(default_factory=lambda: os.environ.get("THOTH_MCP_PINS_FILE") or None)

    def __post_init__(self) -> None:
        parse_networks(self.trusted_proxies)  # a bad address fails the start, not a login
        if self.login_max_failures < 1 or self.login_max_failures_per_address < 1:
            raise ValueError("login failure limits must be at least 1")
        if not 0 < self.login_lockout_seconds <= self.login_lockout_max_seconds:
            raise ValueError("login lockout: need 0 < THOTH_LOGIN_LOCKOUT_SECONDS <= THOTH_LOGIN_LOCKOUT_MAX_SECONDS")

    @property
    def key_path(self) -> Path:
        env = os.environ.get("THOTH_SIGNING_KEY")
        if self.signing_key_path:
            return self.signing_key_path
        if env:
            return Path(env)
        return self.home / "audit-signing-key.pem"
