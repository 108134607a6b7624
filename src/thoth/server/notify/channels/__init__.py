"""The one registry of notification channel kinds: `CHANNELS[kind_name] -> ChannelKind`.

Every module of this package except `base` is a channel kind and must define `KIND`, an instance
of `ChannelKind`: the registry imports them all, so adding a kind is adding its module (and its
tests). The config file reader, the dashboard's Settings, the notifier and the callback routes
only read this registry.
"""

from __future__ import annotations

import importlib
import pkgutil

from thoth.server.notify.channels.base import Channel, ChannelKind, DeliveryError, NotifyConfigError, Sent


def discover(path: list[str], package: str) -> dict[str, ChannelKind]:
    """The kinds of a package's modules (all but `base` and `_private` ones), in listing order."""
    found: dict[str, ChannelKind] = {}
    for info in pkgutil.iter_modules(path):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        kind = getattr(module, "KIND", None)
        if not isinstance(kind, ChannelKind) or not kind.name:
            raise TypeError(f"{module.__name__} must define KIND, a named ChannelKind")
        if kind.name in found:
            raise TypeError(f"{module.__name__}: channel kind {kind.name!r} is defined twice")
        found[kind.name] = kind
    return dict(sorted(found.items(), key=lambda item: (item[1].order, item[0])))


CHANNELS: dict[str, ChannelKind] = discover(__path__, __name__)


def listed(joiner: str = ", ") -> str:
    """The kinds for a message: 'slack, webhook, email' (or '... or email' with joiner ' or ')."""
    names = list(CHANNELS)
    if joiner == ", " or len(names) < 2:
        return ", ".join(names)
    return ", ".join(names[:-1]) + joiner + names[-1]


__all__ = ["CHANNELS", "Channel", "ChannelKind", "DeliveryError", "NotifyConfigError", "Sent", "discover", "listed"]
