"""Approval notifications: Slack, signed webhooks and e-mail for held calls, and their callbacks.

`register(app, core)` (called by `thoth.server.app`) loads the channel configuration, starts the
background notifier and mounts the Slack interactivity and webhook callback routes. Importing
this package is cheap: `rules` is used by the store on every resolution.
"""

from __future__ import annotations

from typing import Any


def register(app: Any, core: Any) -> Any:
    from thoth.server.notify.service import register as _register

    return _register(app, core)


__all__ = ["register"]
