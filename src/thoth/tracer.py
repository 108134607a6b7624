"""The one place a tool call is governed.

    call = tracer.govern("send_email", {"to": "x@y"})   # PRE event, enforce, step-up; may raise
    result = call.done(send_email(**call.tool_args))      # POST event

`run`/`arun` do both around a Python call and map MODIFY back onto its arguments; `wrap_tool`
returns a governed callable. Adapters use only these (docs/internals.md).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from thoth.args import ModificationError, apply_modified, json_safe, to_wire_args
from thoth.components import make_components
from thoth.events import build_event, decision_meta
from thoth.exceptions import ThothPolicyViolation
from thoth.integrations import registry
from thoth.models import DecisionType, EnforcementDecision, EnforcementMode, ThothConfig
from thoth.outputs import output_text
from thoth.plan import TaskPlans
from thoth.session import CallsSnapshot, SessionContext, _current
from thoth.user_task import TaskState
from thoth.wire import mcp_tool_id

log = logging.getLogger("thoth")

_DEDUP_SIZE = 4096
_BLOCKING = (DecisionType.BLOCK, DecisionType.DEFER)


class GovernedCall:
    """One call that passed governance; report its outcome with done() or failed()."""

    def __init__(
        self,
        tracer: Tracer,
        tool_name: str,
        tool_args: Any,
        decision: EnforcementDecision,
        call_id: str | None,
        observed: Callable[[], EnforcementDecision | None] | None = None,
        mcp_server: str | None = None,
    ) -> None:
        self.tracer = tracer
        self.tool_name = tool_name
        self.tool_args = tool_args
        self.decision = decision
        self.call_id = call_id
        self.mcp_server = mcp_server  # the MCP server of the tool; None for a local tool
        self.modified = decision.decision is DecisionType.MODIFY
        self._observed = observed
        self._started = time.perf_counter()
        self._finished = False

    def done(self, result: Any = None) -> Any:
        """Record that the tool returned `result`; returns it unchanged."""
        if not self._finished:
            self._finished = True
            self.tracer._finish(self, result=result, error=None)
        return result

    def failed(self, exc: BaseException) -> None:
        """Record that the tool raised `exc`."""
        if not self._finished:
            self._finished = True
            self.tracer._finish(self, result=None, error=exc)

    @property
    def duration_ms(self) -> float:
        return (time.perf_counter() - self._started) * 1000


class Tracer:
    def __init__(
        self,
        config: ThothConfig,
        session: SessionContext | None = None,
        emitter: Any = None,
        enforcer: Any = None,
        step_up: Any = None,
    ) -> None:
        self.config = config
        self.session = session or SessionContext(config)
        if emitter is None or enforcer is None or step_up is None:
            emitter_, enforcer_, step_up_ = make_components(config)
            emitter, enforcer, step_up = emitter or emitter_, enforcer or enforcer_, step_up or step_up_
        self.emitter = emitter
        self.enforcer = enforcer
        self.step_up = step_up
        self._seen: OrderedDict[tuple[str, str, str], EnforcementDecision] = OrderedDict()
        self._plans: TaskPlans | None = None  # made at the first task (thoth.plan)

    # Governance ----------------------------------------------------------------------------------
    def govern(self, tool_name: str, tool_args: Any = None, *, call_id: str | None = None,
               mcp_server: str | None = None) -> GovernedCall:
        cached = self._cached(tool_name, tool_args, call_id, mcp_server)
        if cached is not None:
            return cached
        request, calls = self._request(tool_name, tool_args, mcp_server)
        self._emit_pre(request, calls, call_id)
        if self.config.enforcement is EnforcementMode.OBSERVE:
            return self._observe(request, call_id)
        decision = self.enforcer.enforce(request)
        if decision.decision is DecisionType.STEP_UP:
            try:
                decision = self.step_up.wait(decision, tool_name)
            except ThothPolicyViolation as exc:
                self._emit_block(request, calls, call_id, _decision_of(exc))
                raise
        return self._conclude(request, calls, call_id, decision)

    async def agovern(self, tool_name: str, tool_args: Any = None, *, call_id: str | None = None,
                      mcp_server: str | None = None) -> GovernedCall:
        cached = self._cached(tool_name, tool_args, call_id, mcp_server)
        if cached is not None:
            return cached
        request, calls = self._request(tool_name, tool_args, mcp_server)
        self._emit_pre(request, calls, call_id)
        if self.config.enforcement is EnforcementMode.OBSERVE:
            return self._observe(request, call_id)
        decision = await self.enforcer.aenforce(request)
        if decision.decision is DecisionType.STEP_UP:
            try:
                decision = await self.step_up.await_(decision, tool_name)
            except ThothPolicyViolation as exc:
                self._emit_block(request, calls, call_id, _decision_of(exc))
                raise
        return self._conclude(request, calls, call_id, decision)

    def run(
        self,
        tool_name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        call_id: str | None = None,
    ) -> Any:
        args, kwargs = tuple(args), dict(kwargs or {})
        token = _current.set(self.session)  # activated(), without a generator on the hot path
        try:
            call = self.govern(tool_name, to_wire_args(args, kwargs), call_id=call_id)
            args, kwargs = self._rewrite(call, args, kwargs)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                call.failed(exc)
                raise
            return call.done(result)
        finally:
            _current.reset(token)

    async def arun(
        self,
        tool_name: str,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        call_id: str | None = None,
    ) -> Any:
        args, kwargs = tuple(args), dict(kwargs or {})
        token = _current.set(self.session)
        try:
            call = await self.agovern(tool_name, to_wire_args(args, kwargs), call_id=call_id)
            args, kwargs = self._rewrite(call, args, kwargs)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                call.failed(exc)
                raise
            return call.done(result)
        finally:
            _current.reset(token)

    def wrap_tool(self, name: str, fn: Any) -> Any:
        """A governed version of `fn` (sync or async; LangChain tools stay LangChain tools)."""
        framework = registry.for_tool(fn)
        if framework is not None:  # a framework's own tool object stays one (e.g. a LangChain BaseTool)
            try:
                adapter = registry.load(framework)
            except RuntimeError as exc:
                raise RuntimeError(f"'{name}' is a {framework.label} tool; {exc}") from exc
            return adapter.wrap_tool(self, name, fn)
        if not callable(fn) and callable(getattr(fn, "run", None)):
            fn = fn.run
        if not callable(fn):
            raise TypeError(f"cannot govern tool '{name}': {type(fn).__name__} is not callable")
        original = getattr(fn, "__thoth_original__", fn)  # re-instrumenting replaces the tracer
        return _governed_callable(self, name, original)

    def record_llm_usage(
        self, *, model: str, input_tokens: int = 0, output_tokens: int = 0, provider: str | None = None
    ) -> None:
        total = max(0, int(input_tokens or 0)) + max(0, int(output_tokens or 0))
        self.session.add_tokens(total)
        self._emit(
            "LLM_INVOCATION", "", f"{provider or 'llm'}:{model}",
            {
                "event_phase": "llm", "model": model, "provider": provider,
                "input_tokens": input_tokens, "output_tokens": output_tokens,
                "token_spend": self.session.token_spend,
            },
            self.session.snapshot(), source_type="agent_llm_invocation",
        )

    def flush(self, timeout: float = 5.0) -> bool:
        flush = getattr(self.emitter, "flush", None)
        return bool(flush(timeout)) if flush else True

    @contextlib.contextmanager
    def activated(self) -> Iterator[SessionContext]:
        """Make this tracer's session the current one while a tool runs (get_current_session())."""
        token = _current.set(self.session)
        try:
            yield self.session
        finally:
            _current.reset(token)

    # Internals -----------------------------------------------------------------------------------
    def _cached(self, tool_name: str, tool_args: Any, call_id: str | None,
                mcp_server: str | None = None) -> GovernedCall | None:
        """A call_id seen before in this session is not checked again (node re-runs on resume)."""
        if call_id is None:
            return None
        decision = self._seen.get(_dedup_key(call_id, mcp_tool_id(mcp_server, tool_name), tool_args))
        if decision is None:
            return None
        if decision.decision in _BLOCKING:
            raise self._violation(tool_name, decision)
        if decision.decision is DecisionType.MODIFY:
            tool_args = decision.modified_tool_args
        return GovernedCall(self, tool_name, tool_args, decision, call_id, mcp_server=mcp_server)

    def _remember(self, call_id: str | None, request: dict[str, Any], decision: EnforcementDecision) -> None:
        if call_id is None or decision.fail_mode:
            return  # fail-open/closed decisions are retried next time
        key = mcp_tool_id(request.get("mcp_server"), request["tool_name"])
        self._seen[_dedup_key(call_id, key, request["tool_args"])] = decision
        while len(self._seen) > _DEDUP_SIZE:
            self._seen.popitem(last=False)

    def _request(self, tool_name: str, tool_args: Any,
                 mcp_server: str | None = None) -> tuple[dict[str, Any], CallsSnapshot]:
        """The enforce request, and the session history as of this call for its events."""
        cfg = self.config
        if tool_args is not None and not isinstance(tool_args, dict):
            tool_args = {"input": tool_args}
        calls = self.session.snapshot(tool_name)
        request: dict[str, Any] = {
            "agent_id": cfg.agent_id,
            "tenant_id": cfg.tenant_id,
            "user_id": cfg.user_id,
            "tool_name": tool_name,
            "session_id": self.session.session_id,
            "approved_scope": list(cfg.approved_scope),
            "enforcement_mode": cfg.enforcement.value,
            "environment": cfg.environment,
            "enforcement_trace_id": self.session.session_id,
            "tool_args": json_safe(tool_args) if tool_args is not None else {},
        }
        # O(session length): only for enforcers that read it (the in-process one keeps its own).
        if getattr(self.enforcer, "wants_session_tool_calls", True):
            request["session_tool_calls"] = calls.to_list()
        if cfg.session_intent:
            request["session_intent"] = cfg.session_intent
        if mcp_server:
            request["mcp_server"] = mcp_server
        # The user's task and where each argument value came from (docs/provenance.md): computed
        # here, before the decision, from what this session has seen; never from event timing.
        session = self.session
        task = session.task
        if task is not None:
            session.sources.add_task(task.text)
            request["task"] = self._task_field(task)
            request["arg_sources"] = session.sources.sources_for(request["tool_args"])
        return request, calls

    def _task_field(self, task: TaskState) -> dict[str, Any]:
        if not task.planned:  # once per turn: the plan comes from the task text alone
            if self._plans is None:
                self._plans = TaskPlans.for_tracer(self, self.config.planner)
            task.plan = self._plans.plan(task.text, self.config.session_intent)
            task.planned = True
        field: dict[str, Any] = {"id": task.id, "plan": task.plan}
        if self.config.send_content:
            field["text"] = task.text
        return field

    def _observe(self, request: dict[str, Any], call_id: str | None) -> GovernedCall:
        """Observe: allow now; ask the server off the critical path so it still records the verdict."""
        holder: dict[str, EnforcementDecision] = {}
        submit = getattr(self.emitter, "submit", None)

        def ask() -> None:
            holder["decision"] = self.enforcer.enforce(request)

        if submit is not None:
            submit(ask)
        else:  # an emitter without a background thread (in-process mode): its engine takes µs
            ask()
        decision = EnforcementDecision(decision=DecisionType.ALLOW, reason="observe mode",
                                       decision_reason_code="observe")
        return GovernedCall(self, request["tool_name"], request["tool_args"], decision, call_id,
                            observed=lambda: holder.get("decision"), mcp_server=request.get("mcp_server"))

    def _conclude(self, request: dict[str, Any], calls: CallsSnapshot, call_id: str | None,
                  decision: EnforcementDecision) -> GovernedCall:
        tool_args = request["tool_args"]
        if decision.decision is DecisionType.MODIFY:
            if decision.modified_tool_args is None:
                decision = decision.model_copy(update={
                    "decision": DecisionType.BLOCK,
                    "reason": "MODIFY decision without modified_tool_args",
                })
            else:
                tool_args = decision.modified_tool_args
        elif decision.decision is DecisionType.STEP_UP:  # a step-up client that returned unresolved
            decision = decision.model_copy(update={"decision": DecisionType.BLOCK})
        self._remember(call_id, request, decision)
        if decision.decision in _BLOCKING:
            self._emit_block(request, calls, call_id, decision)
            raise self._violation(request["tool_name"], decision)
        return GovernedCall(self, request["tool_name"], tool_args, decision, call_id,
                            mcp_server=request.get("mcp_server"))

    def _rewrite(self, call: GovernedCall, args: tuple[Any, ...], kwargs: dict[str, Any]
                 ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if not call.modified:
            return args, kwargs
        try:
            return apply_modified(call.tool_args, args, kwargs)
        except ModificationError as exc:
            decision = call.decision.model_copy(update={
                "decision": DecisionType.BLOCK, "reason": f"policy modified the arguments but {exc}",
            })
            call._finished = True
            self._emit_block(*self._request(call.tool_name, call.tool_args, call.mcp_server), call.call_id, decision)
            raise self._violation(call.tool_name, decision) from exc

    def _violation(self, tool_name: str, decision: EnforcementDecision) -> ThothPolicyViolation:
        reason = decision.reason or decision.defer_reason or decision.decision_reason_code or "blocked by policy"
        if decision.decision is DecisionType.DEFER and decision.defer_reason:
            reason = decision.defer_reason
        return ThothPolicyViolation(
            tool_name, reason, decision.violation_id,
            decision=decision.decision.value,
            decision_reason_code=decision.decision_reason_code,
            matched_rule_ids=decision.matched_rule_ids,
            risk_score=decision.risk_score,
            hold_token=decision.hold_token,
            session_id=self.session.session_id,
            agent_id=self.config.agent_id,
            context=decision.model_dump(exclude_none=True, mode="json"),
        )

    # Events --------------------------------------------------------------------------------------
    def _emit(self, event_type: str, tool_name: str, content: str, metadata: dict[str, Any],
              calls: CallsSnapshot, decision: EnforcementDecision | None = None,
              violation_id: str | None = None, source_type: str = "agent_tool_call") -> None:
        """Hand one event to the emitter. The caller's path only captures the moment and the
        references: emitters with emit_later build the dict (ids, ISO time, the session history)
        off this path; others get it built now."""
        build = functools.partial(build_event, self.config, self.session.session_id, time.time(), event_type,
                                  tool_name, content, metadata, calls, decision, violation_id, source_type)
        later = getattr(self.emitter, "emit_later", None)
        if later is not None:
            later(build)
        else:
            self.emitter.emit(build())

    def _emit_pre(self, request: dict[str, Any], calls: CallsSnapshot, call_id: str | None) -> None:
        name = request["tool_name"]
        self._emit("TOOL_CALL_PRE", name, f"tool call requested: {name}",
                   {"event_phase": "pre", "call_id": call_id,
                    "tool_call": _tool_call(request)}, calls)

    def _emit_block(self, request: dict[str, Any], calls: CallsSnapshot, call_id: str | None,
                    decision: EnforcementDecision) -> None:
        name = request["tool_name"]
        self._emit("TOOL_CALL_BLOCK", name, f"tool call blocked: {name}: {decision.reason or decision.decision.value}",
                   {"event_phase": "block", "call_id": call_id,
                    "tool_call": _tool_call(request)},
                   calls, decision, violation_id=decision.violation_id)

    def _finish(self, call: GovernedCall, *, result: Any, error: BaseException | None) -> None:
        duration_ms = call.duration_ms
        self.session.record_tool_call(call.tool_name)
        meta: dict[str, Any] = {
            "event_phase": "post", "call_id": call.call_id,
            "tool_call": {"name": call.tool_name, "arguments": call.tool_args},  # already JSON-safe
            "duration_ms": round(duration_ms, 3),
        }
        if call.mcp_server:
            meta["tool_call"]["mcp_server"] = call.mcp_server
        if error is None:
            meta["result_type"] = type(result).__name__
            meta["result_size_bytes"] = _size(result)
            # The output is a source of later calls' arguments (arg_sources.py); its text is
            # cut here and indexed off this path, before the session's next decision.
            # Without a task there is nothing to tell the user's values from the rest by: the
            # session's calls keep today's behaviour (provenance `unknown`) at no cost.
            if self.session.task is not None:
                text = output_text(result)
                source = f"tool:{call.tool_name}#{len(self.session.tool_calls)}"
                self.session.sources.add_output(source, text)
                meta["output_source"] = source
                if self.config.send_content:
                    meta["output"] = text
            content = f"tool call completed: {call.tool_name}"
        else:
            meta["error"] = True
            meta["error_type"] = type(error).__name__
            content = f"tool call raised {type(error).__name__}: {call.tool_name}"
        calls = self.session.snapshot()  # completed calls, this one included
        observed = call._observed
        if observed is None:
            self._emit("TOOL_CALL_POST", call.tool_name, content, meta, calls, call.decision)
            return
        event = build_event(self.config, self.session.session_id, time.time(), "TOOL_CALL_POST",
                            call.tool_name, content, meta, calls, call.decision)

        def with_verdict() -> list[dict[str, Any]]:
            # Runs on the event thread after the observe enforce call (queue order).
            verdict = observed()
            event["metadata"]["observed_decision"] = decision_meta(verdict) if verdict else None
            if verdict is not None and verdict.violation_id:
                event["violation_id"] = verdict.violation_id
            if verdict is not None and verdict.fail_mode == "open":
                # The server never saw this call, which ran (observe never blocks): a fail-open like
                # any other, counted and marked. A fail-closed verdict stays inside observed_decision.
                event["metadata"]["fail_mode"] = "open"
            return [event]

        submit = getattr(self.emitter, "submit", None)
        if submit is not None:
            submit(with_verdict)
        else:
            for item in with_verdict():
                self.emitter.emit(item)


def _governed_callable(tracer: Tracer, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if _is_async(fn):
        @functools.wraps(fn)
        async def governed_async(*args: Any, **kwargs: Any) -> Any:
            return await tracer.arun(name, fn, args, kwargs)

        wrapper: Any = governed_async
    else:
        @functools.wraps(fn)
        def governed(*args: Any, **kwargs: Any) -> Any:
            return tracer.run(name, fn, args, kwargs)

        wrapper = governed
    wrapper.__thoth_original__ = fn
    wrapper.__thoth_tracer__ = tracer
    if getattr(wrapper, "__name__", None) in (None, "<lambda>"):
        wrapper.__name__ = name
    return wrapper  # type: ignore[no-any-return]


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004


def _tool_call(request: dict[str, Any]) -> dict[str, Any]:
    """An event's `tool_call`: name, arguments and, for an MCP tool, its server."""
    out = {"name": request["tool_name"], "arguments": request["tool_args"]}
    if request.get("mcp_server"):
        out["mcp_server"] = request["mcp_server"]
    return out


def _dedup_key(call_id: str, tool_name: str, tool_args: Any) -> tuple[str, str, str]:
    """A re-run of the same call (same id, tool and arguments) reuses its decision; a reused id
    with another tool or other arguments is a new call and is checked again."""
    if tool_args is not None and not isinstance(tool_args, dict):
        tool_args = {"input": tool_args}
    return call_id, tool_name, json.dumps(json_safe(tool_args), sort_keys=True, default=str)


def _decision_of(exc: ThothPolicyViolation) -> EnforcementDecision:
    fail_mode = exc.context.get("fail_mode")  # a step-up client may raise on a decision made without the server
    return EnforcementDecision(
        decision=DecisionType.BLOCK, reason=exc.reason, violation_id=exc.violation_id,
        decision_reason_code=exc.decision_reason_code, hold_token=exc.hold_token,
        fail_mode=fail_mode if isinstance(fail_mode, str) else None,
    )


def _size(result: Any) -> int:
    if result is None:
        return 0
    if isinstance(result, bytes | bytearray):
        return len(result)
    if isinstance(result, str):
        return len(result.encode("utf-8", errors="replace"))
    try:
        return len(repr(result).encode("utf-8", errors="replace"))
    except Exception:  # noqa: BLE001
        return 0
