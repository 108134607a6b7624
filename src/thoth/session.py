"""Per-session state of one governed agent, reachable through a ContextVar."""

from __future__ import annotations

import threading
import uuid
from contextvars import ContextVar, Token

from thoth.arg_sources import SourceIndex
from thoth.models import ThothConfig
from thoth.user_task import MAX_TASK_CHARS, TaskState, current_task

_current: ContextVar[SessionContext | None] = ContextVar("thoth_session", default=None)


class SessionContext:
    """What Thoth knows about the running session: its id, the tools called, the tokens spent."""

    def __init__(self, config: ThothConfig, session_id: str | None = None) -> None:
        self.config = config
        self.session_id = session_id or config.session_id or str(uuid.uuid4())
        self.tool_calls: list[str] = []  # append-only: snapshots are prefixes of it
        self.token_spend: int = 0
        self._lock = threading.Lock()
        # What the agent has seen (the task, tool outputs): where argument values came from.
        self.sources = SourceIndex()
        self._task: TaskState | None = TaskState(config.task[:MAX_TASK_CHARS]) if config.task else None

    @property
    def task(self) -> TaskState | None:
        """The current turn's task: thoth.task() in this context, else the session's own
        (instrument(task=...) or what an adapter captured from the user's message)."""
        return current_task() or self._task

    def set_task(self, text: str | None) -> TaskState | None:
        """A new user turn (adapters call this with the user's message); the same text again is
        the same turn. Returns the session's task."""
        if text and isinstance(text, str):
            text = text[:MAX_TASK_CHARS]
            if self._task is None or self._task.text != text:
                self._task = TaskState(text)
        return self._task

    @property
    def agent_id(self) -> str:
        return self.config.agent_id

    def is_in_scope(self, tool_name: str) -> bool:
        return tool_name in self.config.approved_scope

    def record_tool_call(self, tool_name: str) -> None:
        with self._lock:
            self.tool_calls.append(tool_name)

    def add_tokens(self, count: int) -> None:
        with self._lock:
            self.token_spend += max(0, int(count))

    def history_for(self, tool_name: str) -> list[str]:
        """`session_tool_calls` for the wire: completed calls, plus this one unless already last."""
        return self.snapshot(tool_name).to_list()

    def snapshot(self, tool_name: str | None = None) -> CallsSnapshot:
        """`history_for(tool_name)` (or the completed calls, without a name) in O(1): copied only
        when an event is serialized, off the caller's path."""
        calls = self.tool_calls
        n = len(calls)
        current = tool_name if tool_name is not None and (not n or calls[n - 1] != tool_name) else None
        return CallsSnapshot(calls, n, current)

    # ContextVar plumbing -------------------------------------------------------------------------
    def activate(self) -> Token[SessionContext | None]:
        return _current.set(self)

    @staticmethod
    def deactivate(token: Token[SessionContext | None]) -> None:
        _current.reset(token)

    def __repr__(self) -> str:
        return f"SessionContext(session_id={self.session_id!r}, agent_id={self.agent_id!r}, tool_calls={len(self.tool_calls)})"


class CallsSnapshot:
    """The session's first `n` calls (plus `current`). `SessionContext.tool_calls` only ever
    grows by appending, so a prefix of it never changes and needs no copy until it is read."""

    __slots__ = ("_calls", "_n", "_current")

    def __init__(self, calls: list[str], n: int, current: str | None) -> None:
        self._calls, self._n, self._current = calls, n, current

    def to_list(self) -> list[str]:
        calls = self._calls[: self._n]
        if self._current is not None:
            calls.append(self._current)
        return calls


def get_current_session() -> SessionContext | None:
    """The session of the governed agent running in this context (task or thread), if any."""
    return _current.get()


def set_current_session(session: SessionContext | None) -> Token[SessionContext | None]:
    return _current.set(session)
