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

CHANNEL_KINDS = ("slack", "webhook", "email")


class NotifyConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Channel:
    name: str
    kind: str
    # slack: channel (a channel id, #name or a user id for a DM)
    slack_channel: str = ""
    # webhook
    url: str = ""
    secret: str = ""
    max_attempts: int = 4
    backoff_seconds: float = 0.5
    timeout_seconds: float = 5.0
    # email
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_username: str = ""
    smtp_password: str = ""
    mail_from: str = "thoth@localhost"
    mail_to: tuple[str, ...] = ()
    # slack channels from the dashboard's Settings may bring their own Slack app
    slack_token: str = ""
    slack_signing_secret: str = ""
    # why this channel cannot deliver (e.g. an env:NAME secret that is not set): recorded as a failure
    problem: str = ""


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
class SlackApp:
    bot_token: str = ""
    signing_secret: str = ""
    base_url: str = "https://slack.com/api/"
    # Slack user id -> Thoth identity recorded as the approver.
    users: dict[str, str] = field(default_factory=dict)
    # When true, a click by a Slack user missing from `users` is refused.
    require_mapping: bool = False


@dataclass(frozen=True)
class NotifyConfig:
    channels: dict[str, Channel] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    two_person: tuple[TwoPerson, ...] = ()
    slack: SlackApp = field(default_factory=SlackApp)
    dashboard_url: str = ""
    # Where webhook receivers send their signed decision (defaults to dashboard_url).
    public_url: str = ""
    max_arg_chars: int = 1500
    # Signed requests older than this are refused (Slack recommends five minutes).
    max_request_age_seconds: int = 300

    # SMTP server (and sender) of e-mail channels configured in the dashboard's Settings: `email:`.
    email_defaults: Channel = field(default_factory=lambda: Channel("email", "email"))

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


def _secret(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise NotifyConfigError(f"{where} must be a string")
    if value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise NotifyConfigError(f"{where}: environment variable {name} is not set")
        return os.environ[name]
    return value


def _str(raw: dict[str, Any], name: str, where: str, default: str = "") -> str:
    value = raw.get(name, default)
    if not isinstance(value, str):
        raise NotifyConfigError(f"{where}.{name} must be a string")
    return value


def _channel(name: str, raw: Any) -> Channel:
    where = f"channels.{name}"
    if not isinstance(raw, dict):
        raise NotifyConfigError(f"{where} must be a mapping")
    kind = raw.get("type")
    if kind not in CHANNEL_KINDS:
        raise NotifyConfigError(f"{where}.type must be one of {', '.join(CHANNEL_KINDS)}")
    if kind == "slack":
        target = _str(raw, "channel", where)
        if not target:
            raise NotifyConfigError(f"{where}.channel is required (a channel id, #name or user id)")
        return Channel(name, kind, slack_channel=target)
    if kind == "webhook":
        url = _str(raw, "url", where)
        secret = _secret(raw.get("secret"), f"{where}.secret")
        if not url.startswith(("http://", "https://")):
            raise NotifyConfigError(f"{where}.url must be an http(s) URL")
        if len(secret) < 16:
            raise NotifyConfigError(f"{where}.secret must be at least 16 characters")
        return Channel(name, kind, url=url, secret=secret, max_attempts=int(raw.get("max_attempts", 4)),
                       backoff_seconds=float(raw.get("backoff_seconds", 0.5)),
                       timeout_seconds=float(raw.get("timeout_seconds", 5.0)))
    to = raw.get("to")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not to or not all(isinstance(t, str) for t in to):
        raise NotifyConfigError(f"{where}.to must be an address or a list of addresses")
    return Channel(name, kind, smtp_host=_str(raw, "host", where, "127.0.0.1"), smtp_port=int(raw.get("port", 25)),
                   smtp_starttls=bool(raw.get("starttls", False)),
                   smtp_username=_secret(raw.get("username"), f"{where}.username"),
                   smtp_password=_secret(raw.get("password"), f"{where}.password"),
                   mail_from=_str(raw, "from", where, "thoth@localhost"), mail_to=tuple(to))


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
    raw_slack = doc.get("slack") or {}
    if not isinstance(raw_slack, dict):
        raise NotifyConfigError("slack must be a mapping")
    users = raw_slack.get("users") or {}
    if not isinstance(users, dict):
        raise NotifyConfigError("slack.users must map Slack user ids to Thoth identities")
    slack = SlackApp(bot_token=_secret(raw_slack.get("bot_token"), "slack.bot_token"),
                     signing_secret=_secret(raw_slack.get("signing_secret"), "slack.signing_secret"),
                     base_url=_str(raw_slack, "base_url", "slack", "https://slack.com/api/"),
                     users={str(k): str(v) for k, v in users.items()},
                     require_mapping=bool(raw_slack.get("require_mapping", False)))
    if any(c.kind == "slack" for c in channels.values()) and not slack.bot_token:
        raise NotifyConfigError("a slack channel needs slack.bot_token")
    raw_email = doc.get("email")
    email = Channel("email", "email")
    if raw_email is not None:
        if not isinstance(raw_email, dict):
            raise NotifyConfigError("email must be a mapping (host, port, from, starttls, username, password)")
        email = _channel("email", {"type": "email", "to": ["unused@localhost"], **raw_email})
        email = Channel("email", "email", smtp_host=email.smtp_host, smtp_port=email.smtp_port,
                        smtp_starttls=email.smtp_starttls, smtp_username=email.smtp_username,
                        smtp_password=email.smtp_password, mail_from=email.mail_from)
    dashboard = _str(doc, "dashboard_url", "config").rstrip("/")
    return NotifyConfig(channels=channels, routes=tuple(routes), two_person=tuple(two), slack=slack,
                        email_defaults=email,
                        dashboard_url=dashboard, public_url=(_str(doc, "public_url", "config") or dashboard).rstrip("/"),
                        max_arg_chars=int(doc.get("max_arg_chars", 1500)),
                        max_request_age_seconds=int(doc.get("max_request_age_seconds", 300)))


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
