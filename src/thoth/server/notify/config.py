"""Who is told about a held call, and how: channels, routes per tenant / agent / rule, Slack app.

The configuration is one YAML (or JSON) file: `THOTH_NOTIFY_CONFIG`, else `<THOTH_HOME>/notify.yaml`.
Secrets may be written as `env:NAME` to read them from the environment. See docs/approvals.md.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from thoth.server.notify.channels import CHANNELS, listed
from thoth.server.notify.channels.base import Channel, NotifyConfigError, text

__all__ = ["CHANNELS", "Channel", "NotifyConfig", "NotifyConfigError", "Route", "TwoPerson", "load", "parse",
           "select"]


@dataclass(frozen=True)
class Route:
    channels: tuple[str, ...]
    tenant: str | None = None
    agent: str | None = None
    rule: str | None = None

    def matches(self, tenant: str, agent: str, rules: list[str]) -> bool:
        return ((self.tenant is None or self.tenant == tenant)
                and (self.agent is None or self.agent == agent)
                and (self.rule is None or self.rule in rules))

    @property
    def specificity(self) -> int:
        # A rule-specific route beats an agent route, which beats a tenant route.
        return (4 if self.rule else 0) + (2 if self.agent else 0) + (1 if self.tenant else 0)


@dataclass(frozen=True)
class TwoPerson:
    tools: tuple[str, ...]
    tenant: str | None = None
    approvals: int = 2


@dataclass(frozen=True)
class NotifyConfig:
    channels: dict[str, Channel] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    two_person: tuple[TwoPerson, ...] = ()
    # Each kind's own top-level section (`slack:` the Slack app, `email:` the SMTP server of
    # Settings channels), parsed by the kind: read it with `section(kind)`.
    sections: dict[str, Any] = field(default_factory=dict)
    dashboard_url: str = ""
    # Where webhook receivers send their signed decision (defaults to dashboard_url).
    public_url: str = ""
    max_arg_chars: int = 1500
    # Signed requests older than this are refused (Slack recommends five minutes).
    max_request_age_seconds: int = 300

    def section(self, kind: str) -> Any:
        """The kind's top-level section of the file (its defaults when the file has none)."""
        return self.sections[kind] if kind in self.sections else CHANNELS[kind].section(None)

    def channels_for(self, tenant: str, agent: str, rules: list[str]) -> list[Channel]:
        """The channels of the most specific matching routes (all routes tied at that level)."""
        return select(self.routes, self.channels, tenant, agent, rules)

    def required_approvals(self, tenant: str, tool_name: str) -> int:
        needed = 1
        for rule in self.two_person:
            if rule.tenant not in (None, tenant):
                continue
            if any(fnmatch.fnmatchcase(tool_name, pattern) for pattern in rule.tools):
                needed = max(needed, rule.approvals)
        return needed


def select(routes: tuple[Route, ...] | list[Route], channels: dict[str, Channel], tenant: str, agent: str,
           rules: list[str]) -> list[Channel]:
    """The channels of the most specific routes matching a held call (all routes tied at that level)."""
    matching = [r for r in routes if r.matches(tenant, agent, rules)]
    if not matching:
        return []
    best = max(r.specificity for r in matching)
    names: list[str] = []
    for route in matching:
        if route.specificity == best:
            names.extend(n for n in route.channels if n not in names)
    return [channels[n] for n in names]


def _channel(name: str, raw: Any) -> Channel:
    where = f"channels.{name}"
    if not isinstance(raw, dict):
        raise NotifyConfigError(f"{where} must be a mapping")
    name_of_kind = raw.get("type")
    kind = CHANNELS.get(name_of_kind) if isinstance(name_of_kind, str) else None
    if kind is None:
        raise NotifyConfigError(f"{where}.type must be one of {listed()}")
    return kind.from_file(name, raw, where)


def _opt(raw: dict[str, Any], name: str, where: str) -> str | None:
    value = raw.get(name)
    if value is not None and not isinstance(value, str):
        raise NotifyConfigError(f"{where}.{name} must be a string")
    return value


def parse(doc: Any) -> NotifyConfig:
    if doc is None:
        return NotifyConfig()
    if not isinstance(doc, dict):
        raise NotifyConfigError("the notification config must be a mapping")
    raw_channels = doc.get("channels") or {}
    if not isinstance(raw_channels, dict):
        raise NotifyConfigError("channels must be a mapping of name -> channel")
    channels = {str(n): _channel(str(n), c) for n, c in raw_channels.items()}
    routes = []
    for i, raw in enumerate(doc.get("routes") or []):
        where = f"routes[{i}]"
        if not isinstance(raw, dict):
            raise NotifyConfigError(f"{where} must be a mapping")
        names = raw.get("channels")
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not names:
            raise NotifyConfigError(f"{where}.channels must list channel names")
        for n in names:
            if n not in channels:
                raise NotifyConfigError(f"{where}: unknown channel {n!r}")
        routes.append(Route(tuple(names), _opt(raw, "tenant", where), _opt(raw, "agent", where),
                            _opt(raw, "rule", where)))
    two = []
    for i, raw in enumerate(doc.get("two_person") or []):
        where = f"two_person[{i}]"
        tools = raw.get("tools") if isinstance(raw, dict) else None
        if not isinstance(tools, list) or not tools or not all(isinstance(t, str) for t in tools):
            raise NotifyConfigError(f"{where}.tools must list tool names or glob patterns")
        count = int(raw.get("approvals", 2))
        if count < 2:
            raise NotifyConfigError(f"{where}.approvals must be at least 2")
        two.append(TwoPerson(tuple(tools), _opt(raw, "tenant", where), count))
    sections = {name: kind.section(doc.get(name)) for name, kind in CHANNELS.items()}
    dashboard = text(doc, "dashboard_url", "config").rstrip("/")
    config = NotifyConfig(channels=channels, routes=tuple(routes), two_person=tuple(two), sections=sections,
                          dashboard_url=dashboard, public_url=(text(doc, "public_url", "config") or dashboard).rstrip("/"),
                          max_arg_chars=int(doc.get("max_arg_chars", 1500)),
                          max_request_age_seconds=int(doc.get("max_request_age_seconds", 300)))
    for kind in CHANNELS.values():
        kind.check(config)
    return config


def config_path(home: Path) -> Path:
    env = os.environ.get("THOTH_NOTIFY_CONFIG")
    return Path(env).expanduser() if env else home / "notify.yaml"


def load(home: Path) -> NotifyConfig:
    """Read the config file; a missing file means no notifications (holds wait in the dashboard queue)."""
    path = config_path(home)
    if not path.exists():
        return NotifyConfig()
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise NotifyConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return parse(doc)
    except NotifyConfigError as exc:
        raise NotifyConfigError(f"{path}: {exc}") from None
