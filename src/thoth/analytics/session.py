"""Short-lived state of one agent session: what the scorer needs to see sequences."""

from __future__ import annotations

from collections import deque
from typing import Any

RECENT = 8  # timestamps kept per session for the rate signal


class SessionState:
    __slots__ = ("calls", "flagged", "last_tool", "last_ts", "recent", "secret")

    def __init__(self) -> None:
        self.calls = 0
        self.last_tool: str | None = None
        self.last_ts = 0.0
        self.secret: str | None = None  # "<marker> via <tool>" once the session touched a secret
        self.flagged = 0  # earlier calls of the session that were blocked, held or deferred
        self.recent: deque[float] = deque(maxlen=RECENT)

    def to_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "last_tool": self.last_tool, "last_ts": self.last_ts,
                "secret": self.secret, "flagged": self.flagged, "recent": list(self.recent)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SessionState:
        s = cls()
        s.calls = int(d.get("calls", 0))
        s.last_tool = d.get("last_tool")
        s.last_ts = float(d.get("last_ts", 0.0))
        s.secret = d.get("secret")
        s.flagged = int(d.get("flagged", 0))
        s.recent.extend(float(t) for t in d.get("recent", [])[-RECENT:])
        return s
