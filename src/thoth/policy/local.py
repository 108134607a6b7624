"""In-process mode of the SDK: the same engine as the server, no server.

    THOTH_API_URL=local THOTH_POLICY=policy.yaml python agent.py

- `LocalEnforcer(config)`: decides with the policy in THOTH_POLICY (or the default policy),
  keeping one SessionHistory per session; re-reads the file when it changes (an invalid new
  version is refused and the previous one stays active).
- `LocalStepUp(config)`: answers step-ups with a local approver: THOTH_LOCAL_APPROVER=deny
  (default) or allow, or a callable installed with `set_local_approver(fn)`.
- `LocalEventSink(config)`: audit events as JSON lines in $THOTH_HOME/events.jsonl (default
  ~/.thoth), or THOTH_LOCAL_EVENTS=path. Events are buffered and written in batches so the
  governed call does not pay for file I/O; flush() and interpreter exit write the rest.

This is the only module of thoth.policy that does I/O.
"""

from __future__ import annotations

import atexit
import inspect
import json
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from thoth.enforcer_client import rejected_request
from thoth.models import DecisionType, EnforcementDecision, ThothConfig
from thoth.policy.context import CallContext, SessionHistory
from thoth.policy.decision import PolicyDecision
from thoth.policy.defaults import default_policy
from thoth.policy.engine import CompiledPolicy, compile_policy
from thoth.policy.errors import PolicyValidationError
from thoth.wire import WireError, decision_envelope

log = logging.getLogger("thoth")

MAX_SESSIONS = 10_000
RELOAD_CHECK_SECONDS = 2.0


def thoth_home() -> Path:
    return Path(os.environ.get("THOTH_HOME") or Path.home() / ".thoth")


def load_policy_file(path: str | os.PathLike[str]) -> CompiledPolicy:
    """Read and compile a policy file; PolicyValidationError names the file in its messages."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read policy file {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"policy file {p} is not UTF-8 text") from None
    return compile_policy(text, version=f"file:{p.name}")


_FIELDS = EnforcementDecision.model_fields
_DEFAULTS = {name: f.get_default(call_default_factory=True) for name, f in _FIELDS.items()}
_VIOLATION = frozenset({DecisionType.BLOCK, DecisionType.STEP_UP, DecisionType.DEFER})
_NOT_FIELDS = frozenset({"authorization_decision", "would_decision", "flags", "provenance"})


def _envelope(d: PolicyDecision, latency_ms: float) -> EnforcementDecision:
    """An EnforcementDecision from the wire contract's one envelope builder (thoth.wire). pydantic's
    validation, and even model_construct, cost more than the whole policy decision (4-7 us here),
    so the instance's state is set directly, the way model_construct does it; a test checks the
    result equals a validated model."""
    body = decision_envelope(d)
    verdict = d.decision
    if verdict in _VIOLATION:  # ids of this process only: nothing to look them up on
        body["violation_id"] = f"local-{uuid.uuid4().hex}"
        if verdict is DecisionType.STEP_UP:
            body["hold_token"] = f"local-hold-{uuid.uuid4().hex}"
    body["latency_ms"] = latency_ms
    state = _DEFAULTS.copy()
    state.update(body)
    del state["authorization_decision"]  # the SDK's model reads `decision` only
    state["decision"] = verdict
    fields = body.keys() - _NOT_FIELDS
    extra: dict[str, Any] = {}  # envelope fields the SDK's model keeps as extras
    if "would_decision" in state:
        extra["would_decision"] = state.pop("would_decision")
    if "flags" in state:
        extra["flags"] = state.pop("flags")
    if "provenance" in state:  # a held or blocked call of a request with arg_sources/task
        extra["provenance"] = state.pop("provenance")
    obj = EnforcementDecision.__new__(EnforcementDecision)
    object.__setattr__(obj, "__dict__", state)
    object.__setattr__(obj, "__pydantic_fields_set__", fields)
    object.__setattr__(obj, "__pydantic_extra__", extra)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


class LocalEnforcer:
    """The enforcer interface of the SDK (`enforce(request) -> EnforcementDecision`), in-process."""

    wants_session_tool_calls = False  # it keeps each session's history itself: the tracer skips the copy

    def __init__(self, config: ThothConfig | None = None, policy: CompiledPolicy | None = None,
                 policy_path: str | os.PathLike[str] | None = None, wire_errors: str = "raise") -> None:
        self.config = config
        # "raise": a request the wire contract refuses raises WireError (direct callers);
        # "block": it is a BLOCK (sdk_configuration_error), as the server's 422 is for the SDK.
        self.wire_errors = wire_errors
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, SessionHistory] = OrderedDict()
        path = policy_path if policy_path is not None else os.environ.get("THOTH_POLICY") or None
        self.policy_path = Path(path) if path else None
        self._mtime: float | None = None
        self._next_check = 0.0
        if policy is not None:
            self.policy = policy
        elif self.policy_path is not None:
            try:
                self.policy = load_policy_file(self.policy_path)
            except PolicyValidationError as exc:
                lines = "\n  ".join(str(e) for e in exc.errors)
                raise ValueError(f"THOTH_POLICY={self.policy_path} is not a valid policy:\n  {lines}") from None
            self._mtime = self._stat()
        else:
            self.policy = default_policy()
        self._next_check = time.perf_counter() + RELOAD_CHECK_SECONDS

    # -- the enforcer interface ----------------------------------------------------------------
    def enforce(self, request: dict[str, Any]) -> EnforcementDecision:
        """Decide one call. A request that breaks the wire contract (a wrong type, no tool_name or
        agent_id) raises thoth.wire.WireError, as the server answers 422; built for the SDK
        (wire_errors="block") it is a BLOCK (sdk_configuration_error), as the server's 422 is."""
        try:
            return self._decide(request)
        except WireError as exc:
            if self.wire_errors != "block":
                raise
            return rejected_request("the in-process engine", exc.status, exc.message)

    def _decide(self, request: dict[str, Any]) -> EnforcementDecision:
        started = time.perf_counter()
        if self.policy_path is not None and started >= self._next_check:
            self._maybe_reload()
        # The enforcer keeps each session's history itself; the client's list is not needed.
        call = CallContext.from_request(request, now=time.time(), client_history=False)
        session_id = request.get("session_id")
        key = session_id if isinstance(session_id, str) else ""
        with self._lock:
            history = self._sessions.get(key)
            if history is None:
                history = self._sessions[key] = self.policy.new_history()
                if len(self._sessions) > MAX_SESSIONS:
                    self._sessions.popitem(last=False)
            decision = self.policy.evaluate(call, history)
            history.record(call.tool_name, call.tool_args, call.now, decision)
        return _envelope(decision, (time.perf_counter() - started) * 1000)

    async def aenforce(self, request: dict[str, Any]) -> EnforcementDecision:
        return self.enforce(request)  # microseconds: no reason to leave the event loop

    def history(self, session_id: str) -> SessionHistory | None:
        return self._sessions.get(session_id)

    # -- hot reload ----------------------------------------------------------------------------
    def _stat(self) -> float | None:
        try:
            return self.policy_path.stat().st_mtime if self.policy_path else None
        except OSError:
            return None

    def _maybe_reload(self) -> None:
        self._next_check = time.perf_counter() + RELOAD_CHECK_SECONDS
        mtime = self._stat()
        if mtime is None or mtime == self._mtime or self.policy_path is None:
            return
        self._mtime = mtime
        try:
            self.policy = load_policy_file(self.policy_path)
            log.info("Thoth: reloaded policy %s", self.policy_path)
        except (PolicyValidationError, ValueError) as exc:
            log.error("Thoth: %s changed but is invalid; keeping the previous policy: %s", self.policy_path, exc)


Approver = Callable[[EnforcementDecision, str], Any]
_approver: Approver | None = None


def set_local_approver(fn: Approver | None) -> None:
    """Install the in-process step-up approver: fn(decision, tool_name) -> bool (approve), or an
    EnforcementDecision, or an awaitable of either. None restores THOTH_LOCAL_APPROVER."""
    global _approver
    _approver = fn


class LocalStepUp:
    """The step-up interface of the SDK (`wait(decision, tool_name)`), answered in-process."""

    def __init__(self, config: ThothConfig | None = None, approver: Approver | None = None) -> None:
        self.config = config
        self.approver = approver

    def _resolve(self, decision: EnforcementDecision, tool_name: str) -> Approver | str:
        fn = self.approver or _approver
        if fn is not None:
            return fn
        setting = os.environ.get("THOTH_LOCAL_APPROVER", "deny").strip().lower()
        return setting if setting in ("allow", "deny") else "deny"

    def wait(self, decision: EnforcementDecision, tool_name: str) -> EnforcementDecision:
        how = self._resolve(decision, tool_name)
        if isinstance(how, str):
            return _outcome(decision, how == "allow", f"local approver setting THOTH_LOCAL_APPROVER={how}")
        try:
            answer = how(decision, tool_name)
            if inspect.isawaitable(answer):
                import asyncio

                answer = asyncio.run(_awaited(answer))
        except Exception as exc:  # an approver that fails denies
            return _outcome(decision, False, f"local approver failed: {exc!r}")
        return _answer(decision, answer)

    async def await_(self, decision: EnforcementDecision, tool_name: str) -> EnforcementDecision:
        how = self._resolve(decision, tool_name)
        if isinstance(how, str):
            return _outcome(decision, how == "allow", f"local approver setting THOTH_LOCAL_APPROVER={how}")
        try:
            answer = how(decision, tool_name)
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception as exc:
            return _outcome(decision, False, f"local approver failed: {exc!r}")
        return _answer(decision, answer)


async def _awaited(answer: Awaitable[Any]) -> Any:
    return await answer


def _answer(decision: EnforcementDecision, answer: Any) -> EnforcementDecision:
    if isinstance(answer, EnforcementDecision):
        return answer
    return _outcome(decision, answer is True, "approved by the local approver" if answer is True
                    else "denied by the local approver")


def _outcome(decision: EnforcementDecision, approved: bool, why: str) -> EnforcementDecision:
    return decision.model_copy(update={
        "decision": DecisionType.ALLOW if approved else DecisionType.BLOCK,
        "reason": f"{decision.reason} ({why})" if decision.reason else why,
        "decision_reason_code": "step_up_approved" if approved else "step_up_denied",
    })


class _JsonlWriter:
    """One buffered writer per file per process, shared by every LocalEventSink handle."""

    BATCH = 256
    MAX_DELAY_SECONDS = 1.0

    def __init__(self, path: Path) -> None:
        self.path = path
        self.buffer: list[dict[str, Any] | Callable[[], dict[str, Any]]] = []  # events or their builders
        self.lock = threading.Lock()
        self.last_write = time.monotonic()
        self.sent = 0
        self.dropped = 0

    def emit(self, event: dict[str, Any] | Callable[[], dict[str, Any]]) -> None:
        self.buffer.append(event)  # list.append is atomic under the GIL
        if len(self.buffer) >= self.BATCH or time.monotonic() - self.last_write > self.MAX_DELAY_SECONDS:
            self.flush()

    def flush(self) -> bool:
        with self.lock:
            batch, self.buffer = self.buffer, []
            self.last_write = time.monotonic()
            if not batch:
                return True
            events = self._build(batch)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                lines = "".join(json.dumps(e, default=str, separators=(",", ":")) + "\n" for e in events)
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(lines)
                self.sent += len(events)
                return True
            except (OSError, TypeError, ValueError) as exc:
                self.dropped += len(events)
                log.error("Thoth: could not write %d events to %s: %s", len(events), self.path, exc)
                return False

    def _build(self, batch: list[dict[str, Any] | Callable[[], dict[str, Any]]]) -> list[dict[str, Any]]:
        """The batch's events, building those queued by emit_later; a failing builder loses only
        its own event (this runs inside a governed call when the batch fills up)."""
        events = []
        for item in batch:
            if isinstance(item, dict):
                events.append(item)
                continue
            try:
                events.append(item())
            except Exception:  # noqa: BLE001
                self.dropped += 1
                log.exception("Thoth: could not build an audit event")
        return events


_writers: dict[Path, _JsonlWriter] = {}
_writers_lock = threading.Lock()


def _writer(path: Path) -> _JsonlWriter:
    with _writers_lock:
        found = _writers.get(path)
        if found is None:
            found = _writers[path] = _JsonlWriter(path)
        return found


def flush_local_sinks(timeout: float = 5.0) -> bool:
    """Write every buffered in-process event now (thoth.flush() should call this in local mode)."""
    with _writers_lock:
        writers = list(_writers.values())
    return all([w.flush() for w in writers])


atexit.register(flush_local_sinks)


class LocalEventSink:
    """The emitter interface of the SDK (`emit(event)`, `flush()`), writing JSON lines."""

    BATCH = _JsonlWriter.BATCH

    def __init__(self, config: ThothConfig | None = None, path: str | os.PathLike[str] | None = None) -> None:
        self.config = config
        target = path or os.environ.get("THOTH_LOCAL_EVENTS") or thoth_home() / "events.jsonl"
        self.path = Path(target).absolute()
        self._writer = _writer(self.path)

    def emit(self, event: dict[str, Any]) -> None:
        self._writer.emit(event)

    def emit_later(self, build: Callable[[], dict[str, Any]]) -> None:
        """Queue an event that `build()` makes when its batch is written (off the governed call)."""
        self._writer.emit(build)

    def flush(self, timeout: float = 5.0) -> bool:
        return self._writer.flush()

    @property
    def sent(self) -> int:
        return self._writer.sent

    @property
    def dropped(self) -> int:
        return self._writer.dropped

    def read(self) -> list[dict[str, Any]]:
        """Every event written so far (for tests and `thoth` tooling)."""
        self.flush()
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
