"""Configuration and decision types shared by the SDK, the engine and the server."""

from __future__ import annotations

import os
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from thoth.tls import TlsFiles
from thoth.wire import verdict_of

LOCAL_API_URL = "local"
"""`api_url="local"` (or THOTH_API_URL=local) evaluates policy in-process, no server."""


class EnforcementMode(StrEnum):
    OBSERVE = "observe"
    STEP_UP = "step_up"
    BLOCK = "block"
    PROGRESSIVE = "progressive"


class DecisionType(StrEnum):
    ALLOW = "ALLOW"
    BLOCK = "BLOCK"
    STEP_UP = "STEP_UP"
    MODIFY = "MODIFY"
    DEFER = "DEFER"


# Verdict spellings other servers use; anything else (or nothing) counts as BLOCK.
DECISION_ALIASES: dict[str, DecisionType] = {
    "DENY": DecisionType.BLOCK,
    "CHALLENGE": DecisionType.STEP_UP,
    "ESCALATE": DecisionType.STEP_UP,
    "REVIEW": DecisionType.STEP_UP,
    "TRANSFORM": DecisionType.MODIFY,
    "HOLD": DecisionType.DEFER,
}


def parse_decision(value: Any) -> DecisionType:
    """Map a wire verdict to a DecisionType; missing or unknown verdicts block."""
    if isinstance(value, str):
        text = value.strip().upper()
        if text in DecisionType.__members__:
            return DecisionType[text]
        if text in DECISION_ALIASES:
            return DECISION_ALIASES[text]
    return DecisionType.BLOCK


class ThothConfig(BaseModel):
    """Everything one governed agent needs to know. Field names follow the seed's table."""

    model_config = ConfigDict(use_enum_values=False, validate_assignment=True)

    agent_id: str
    approved_scope: list[str] = Field(default_factory=list)
    tenant_id: str
    user_id: str = "system"
    enforcement: EnforcementMode = EnforcementMode.PROGRESSIVE
    api_key: str | None = None
    api_url: str | None = None
    session_id: str | None = None
    step_up_timeout_minutes: float = 15
    step_up_poll_interval_seconds: float = 5
    # Extensions of ours (all optional, all with safe defaults).
    environment: str = "prod"
    session_intent: str | None = None
    fail_closed: bool = Field(default_factory=lambda: _env_flag("THOTH_FAIL_CLOSED"))
    enforce_timeout_seconds: float = 5.0
    # TLS to the server (thoth.tls): mutual TLS and a private CA; each falls back to its THOTH_* variable.
    client_cert: str | None = None
    client_key: str | None = None
    ca_bundle: str | None = None
    # The user's task and argument provenance (docs/provenance.md).
    task: str | None = None  # the session's task, when no adapter or thoth.task() sets one
    send_content: bool = Field(default_factory=lambda: _env_flag("THOTH_SEND_CONTENT"))  # task text and outputs to the server
    planner: Any = None  # thoth.plan.Planner: plans tasks no `tasks:` pattern matches (off by default)

    @field_validator("enforcement", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return EnforcementMode(value.strip().lower())
            except ValueError:
                allowed = ", ".join(m.value for m in EnforcementMode)
                raise ValueError(f"enforcement must be one of {allowed}, got {value!r}") from None
        return value

    @field_validator("environment", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def resolved_api_key(self) -> str | None:
        return self.api_key or os.environ.get("THOTH_API_KEY") or None

    @property
    def resolved_api_url(self) -> str:
        """THOTH_API_URL overrides api_url (the seed's precedence); one of them is required."""
        url = os.environ.get("THOTH_API_URL") or self.api_url
        if not url:
            raise ValueError(
                "Thoth needs the URL of its server: pass api_url=... or set THOTH_API_URL "
                "(for example http://127.0.0.1:8080 for a local `thoth serve`, or 'local' to "
                "evaluate a policy file in-process)."
            )
        url = url.strip()
        return url if url == LOCAL_API_URL else url.rstrip("/")

    @property
    def tls(self) -> TlsFiles:
        """client_cert, client_key, ca_bundle, or THOTH_CLIENT_CERT, THOTH_CLIENT_KEY, THOTH_CA_BUNDLE."""
        return TlsFiles.resolve(self.client_cert, self.client_key, self.ca_bundle)

    @property
    def is_local(self) -> bool:
        return self.resolved_api_url == LOCAL_API_URL


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


class EnforcementDecision(BaseModel):
    """The decision envelope of POST /v1/enforce, as the SDK sees it."""

    model_config = ConfigDict(extra="allow")

    decision: DecisionType = DecisionType.BLOCK
    reason: str | None = None
    decision_reason_code: str | None = None
    violation_id: str | None = None
    hold_token: str | None = None
    step_up_timeout_seconds: float | None = None
    modified_tool_args: Any = None
    modification_reason: str | None = None
    defer_reason: str | None = None
    defer_timeout_seconds: float | None = None
    risk_score: float | None = None
    latency_ms: float | None = None
    matched_rule_ids: list[str] = Field(default_factory=list)
    policy_references: list[str] = Field(default_factory=list)
    # Set by the SDK, never by a server: the decision was made without one (fail-open / fail-closed).
    fail_mode: str | None = None

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> EnforcementDecision:
        data = dict(body)
        data["decision"] = parse_decision(verdict_of(data))  # thoth.wire: the one rule for reading it
        for key in ("matched_rule_ids", "policy_references"):
            if not isinstance(data.get(key), list):
                data.pop(key, None)
        return cls.model_validate(data)
