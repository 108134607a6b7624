"""What a kind of notification channel provides: the `ChannelKind` contract.

A configured channel (`Channel`) is a name, a kind and the kind's own options (a frozen
dataclass the kind defines: a Slack target, a webhook URL and secret, SMTP settings...). The
notifier, the config file reader, the dashboard's Settings and the callback routes never look
inside those options: they ask the channel's kind (`CHANNELS[channel.kind]`).
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from thoth.server.notify.config import NotifyConfig
    from thoth.server.notify.render import HeldCall
    from thoth.server.notify.service import Notifier

ENV_REF = re.compile(r"^env:[A-Za-z_][A-Za-z0-9_]*$")
NO_CHANNEL = "channel no longer configured"


class NotifyConfigError(ValueError):
    pass


class DeliveryError(Exception):
    """A delivery that did not work, said in a sentence (recorded on the notification)."""


@dataclass(frozen=True)
class Channel:
    name: str
    kind: str
    # The kind's own settings (its module defines the dataclass).
    options: Any = None
    # why this channel cannot deliver (e.g. an env:NAME secret that is not set): recorded as a failure
    problem: str = ""


@dataclass(frozen=True)
class Sent:
    """How a request notification went: `target` is what a later update needs (a Slack ts...)."""
    ok: bool
    attempts: int = 1
    error: str | None = None
    target: dict[str, Any] | None = None


# Callback routes call it with a verified signature: a 409 ClientError when it was used before.
FirstUse = Callable[[str], Awaitable[None]]


class ChannelKind(ABC):
    """One kind of channel. Subclass it in a module of `thoth.server.notify.channels` and set the
    module's `KIND` to an instance: that module is then the kind's only place (see docs/extending.md)."""

    name: str = ""  # `type:` in notify.yaml, the kind in Settings, notification records and events
    order: int = 100  # place in lists: the Settings form's menu, error messages
    # True when the kind tells its channels the outcome (and maybe progress) after the request.
    follows_up: bool = False

    # ---- configuration -----------------------------------------------------------------------

    @abstractmethod
    def from_file(self, name: str, raw: dict[str, Any], where: str) -> Channel:
        """`channels.<name>` of notify.yaml (`type:` is this kind); NotifyConfigError when invalid."""

    def section(self, raw: Any) -> Any:
        """The kind's own top-level section of notify.yaml (named like the kind), parsed; `raw` is
        None when absent. What `NotifyConfig.section(name)` returns. Default: the kind has none."""
        return None

    def check(self, config: NotifyConfig) -> None:
        """Checks that need the whole file (e.g. a Slack channel needs a bot token)."""
        return None  # default: nothing to do

    @abstractmethod
    def form_problem(self, target: str, secrets: Mapping[str, str]) -> str | None:
        """Why the Settings form's channel cannot be saved (a sentence), or None. `secrets`: the
        form's secret fields (secret, bot_token, signing_secret), each possibly empty."""

    def stored_target(self, target: str) -> str:
        """The target as stored (after form_problem accepted it)."""
        return target

    @abstractmethod
    def from_settings(self, name: str, target: str, secrets: Mapping[str, Any], config: NotifyConfig) -> Channel:
        """A channel of the dashboard's Settings. Secrets may be `env:NAME`: resolve them with
        `settings_secret`; what cannot be resolved goes in `Channel.problem`, never an exception."""

    # ---- delivery (run on the server's event loop: blocking calls go to asyncio.to_thread) -------

    @abstractmethod
    async def request(self, notifier: Notifier, channel: Channel, call: HeldCall,
                      approval: dict[str, Any]) -> Sent:
        """Send the request for a held call. Raise DeliveryError (or anything) when it failed."""

    async def progress(self, notifier: Notifier, channel: Channel | None, notification: dict[str, Any],
                       call: HeldCall, approval: dict[str, Any]) -> None:
        """A two-person approval got an approver so far (only for kinds that follow up)."""
        return None  # default: nothing to do

    async def outcome(self, notifier: Notifier, channel: Channel | None, notification: dict[str, Any],
                      call: HeldCall, approval: dict[str, Any]) -> tuple[bool, str | None]:
        """Tell the channel the approval was decided -> (done, error). `channel` is None when it is
        no longer configured. Only called when `follows_up`."""
        return False, NO_CHANNEL

    # ---- callbacks ----------------------------------------------------------------------------

    def mount(self, app: Any, notifier: Notifier, first_use: FirstUse) -> None:
        """Add the kind's callback routes (a reviewer's decision coming back), if it has any."""
        return None  # default: nothing to do


def file_secret(value: Any, where: str) -> str:
    """A secret of notify.yaml: the value, or `env:NAME` read from the environment (must be set)."""
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


def settings_secret(value: str, problems: list[str], what: str) -> str:
    """A secret of a Settings channel; an unset env:NAME is a problem of the channel, not an error."""
    if value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            problems.append(f"{what}: environment variable {name} is not set on the server")
            return ""
        return os.environ[name]
    return value


def text(raw: Mapping[str, Any], name: str, where: str, default: str = "") -> str:
    value = raw.get(name, default)
    if not isinstance(value, str):
        raise NotifyConfigError(f"{where}.{name} must be a string")
    return value
