"""What the user asked for: the task of the current turn (docs/provenance.md).

    with thoth.task("Send the Q3 report to Bob"):   # or: thoth.task("...") for the rest of the turn
        agent.invoke(...)

    thoth.instrument(agent, ..., task="...")          # a task for the whole session
    thoth.get_current_session().task                 # TaskState(text, id) or None

Adapters set it themselves where the framework shows the user's message (docs/integrations.md).
The task text is indexed as a source of argument values ("task") and planned once
(thoth.plan); the text itself stays in the agent's process unless `send_content` is on.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

MAX_TASK_CHARS = 20_000


@dataclass(slots=True)
class TaskState:
    """One user turn: its text, an id (new per turn) and, once planned, its plan."""

    text: str
    id: str = field(default_factory=lambda: f"task-{uuid.uuid4().hex[:16]}")
    plan: dict[str, Any] | None = None
    planned: bool = False  # plan computed (None is a valid answer: "no plan")


_task: ContextVar[TaskState | None] = ContextVar("thoth_task", default=None)


class TaskScope:
    """The task set by thoth.task(); leaving it (as a context manager) restores the previous one."""

    def __init__(self, state: TaskState, token: Token[TaskState | None]) -> None:
        self.state = state
        self._token: Token[TaskState | None] | None = token

    def __enter__(self) -> TaskState:
        return self.state

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._token is not None:
            try:
                _task.reset(self._token)
            except ValueError:  # left in another context than it was entered in: drop it there
                _task.set(None)
            self._token = None

    async def __aenter__(self) -> TaskState:
        return self.state

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(kind, exc, tb)


def task(text: str) -> TaskScope:
    """Set the user's task for the current context (thread or asyncio task) from now on; as a
    context manager, only inside the block (the inner task wins when nested)."""
    if not isinstance(text, str):
        raise TypeError(f"thoth.task() takes the user's request as a string, got {type(text).__name__}")
    state = TaskState(text[:MAX_TASK_CHARS])
    return TaskScope(state, _task.set(state))


def current_task() -> TaskState | None:
    """The task set by thoth.task() in this context, if any."""
    return _task.get()


def user_text(message: Any) -> str | None:
    """The text of a user message as frameworks hold it: a string, a list of content parts
    ({"type": "text", "text": ...} or objects with .text), or an object with .content."""
    if isinstance(message, str):
        return message or None
    content = message.get("content") if isinstance(message, dict) else getattr(message, "content", message)
    if isinstance(content, str):
        return content or None
    if isinstance(content, list):
        parts = []
        for part in content:
            text = part.get("text") if isinstance(part, dict) else getattr(part, "text", part if isinstance(part, str) else None)
            if isinstance(text, str):
                parts.append(text)
        return "\n".join(parts) or None
    return None
