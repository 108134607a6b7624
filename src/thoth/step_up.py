"""Wait for a human to approve a held call: poll GET /v1/enforce/hold/{token}.

Each poll asks the server to hold the answer up to `LONG_POLL_SECONDS` (`?wait=N`), so an
approval is seen as soon as it happens; a server that ignores `wait` answers at once and the
client then sleeps out the rest of `step_up_poll_interval_seconds`. Transient faults keep polling
until the client's own deadline (`step_up_timeout_minutes`), after which the call is blocked
with reason "step-up auth timeout". That deadline bounds every poll too (a poll whose answer
drips in ends with it), and a 429/503 with Retry-After delays the next poll as asked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import quote

from thoth.http import Endpoint, Response, TransportFault, error_message, get_endpoint, retry_after
from thoth.models import DecisionType, EnforcementDecision, ThothConfig, parse_decision

log = logging.getLogger("thoth")

LONG_POLL_SECONDS = 20.0
TIMEOUT_REASON = "step-up auth timeout"

Outcome = tuple[EnforcementDecision | None, float | None]  # the resolution (None: keep polling), Retry-After


class StepUpClient:
    def __init__(self, config: ThothConfig) -> None:
        self.config = config
        self._local: Any = None
        self.endpoint: Endpoint | None = None
        if config.is_local:
            self._local = _local_engine("LocalStepUp")(config)
        else:
            self.endpoint = get_endpoint(config.resolved_api_url, config.resolved_api_key)

    # Public interface (shared with thoth.policy.local.LocalStepUp) ---------------------------------
    def wait(self, decision: EnforcementDecision, tool_name: str) -> EnforcementDecision:
        if self._local is not None:
            return self._local.wait(decision, tool_name)  # type: ignore[no-any-return]
        if not decision.hold_token:
            return _no_token(decision)
        deadline = time.monotonic() + self.config.step_up_timeout_minutes * 60
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return _timeout(decision)
            started = time.monotonic()
            outcome, asked = self._poll_sync(decision, remaining)
            if outcome is not None:
                return outcome
            time.sleep(self._pause(started, deadline, asked))

    async def await_(self, decision: EnforcementDecision, tool_name: str) -> EnforcementDecision:
        if self._local is not None:
            local = getattr(self._local, "await_", None)
            if local is not None:
                return await local(decision, tool_name)  # type: ignore[no-any-return]
            return await asyncio.to_thread(self._local.wait, decision, tool_name)
        if not decision.hold_token:
            return _no_token(decision)
        deadline = time.monotonic() + self.config.step_up_timeout_minutes * 60
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return _timeout(decision)
            started = time.monotonic()
            outcome, asked = await self._poll_async(decision, remaining)
            if outcome is not None:
                return outcome
            await asyncio.sleep(self._pause(started, deadline, asked))

    # ---------------------------------------------------------------------------------------------
    @staticmethod
    def _poll(decision: EnforcementDecision, remaining: float) -> tuple[str, float]:
        """The poll's path and its deadline: the server may hold it `wait` s, and the poll ends
        with the client's own deadline whatever the server does."""
        assert decision.hold_token
        wait = _wait_seconds(remaining)
        path = f"/v1/enforce/hold/{quote(decision.hold_token, safe='')}?wait={wait}"
        return path, min(wait + 10.0, remaining)

    def _poll_sync(self, decision: EnforcementDecision, remaining: float) -> Outcome:
        assert self.endpoint is not None
        path, timeout = self._poll(decision, remaining)
        try:
            # Both spellings of the key (bearer): published servers differ on which one the poll reads.
            response = self.endpoint.send("GET", path, timeout=timeout, bearer=True)
        except TransportFault as exc:
            log.warning("Thoth hold poll failed (%s); still waiting for approval", exc)
            return None, None
        return self._read(response, decision), retry_after(response)

    async def _poll_async(self, decision: EnforcementDecision, remaining: float) -> Outcome:
        assert self.endpoint is not None
        path, timeout = self._poll(decision, remaining)
        try:
            response = await self.endpoint.asend("GET", path, timeout=timeout, bearer=True)
        except TransportFault as exc:
            log.warning("Thoth hold poll failed (%s); still waiting for approval", exc)
            return None, None
        return self._read(response, decision), retry_after(response)

    def _pause(self, started: float, deadline: float, asked: float | None) -> float:
        """Sleep the rest of the poll interval (zero if a long poll already used it up), or longer
        when the server's Retry-After asks for it; never past the deadline."""
        spent = time.monotonic() - started
        pause = max(self.config.step_up_poll_interval_seconds - spent, asked or 0.0)
        return max(0.0, min(pause, deadline - time.monotonic()))

    @staticmethod
    def _read(response: Response, held: EnforcementDecision) -> EnforcementDecision | None:
        status = response.status_code
        if status >= 500 or status in (408, 429):
            return None  # transient: keep polling until the deadline
        if status >= 400:
            return EnforcementDecision(
                decision=DecisionType.BLOCK,
                reason=f"step-up hold could not be checked ({status}: {error_message(response)})",
                decision_reason_code="step_up_hold_error",
                violation_id=held.violation_id,
                hold_token=held.hold_token,
            )
        try:
            body = response.json()
        except ValueError:
            return None
        if not isinstance(body, dict) or not body.get("resolved"):
            return None
        verdict = body.get("resolution") or body.get("decision")
        merged = {**held.model_dump(exclude_none=True), **{k: v for k, v in body.items() if v is not None}}
        merged["decision"] = parse_decision(verdict)
        if merged["decision"] in (DecisionType.STEP_UP, DecisionType.DEFER):
            merged["decision"] = DecisionType.BLOCK  # resolved yet still held: not an approval
        if merged["decision"] is DecisionType.BLOCK and not body.get("reason"):
            merged["reason"] = "step-up denied"
        return EnforcementDecision.from_wire(merged)


def _wait_seconds(remaining: float) -> int:
    """How long the server may hold one poll: the long-poll cap, never past the client's deadline."""
    return max(0, int(min(LONG_POLL_SECONDS, remaining)))


def _no_token(decision: EnforcementDecision) -> EnforcementDecision:
    # The published SDK runs the tool here; a hold nobody can resolve must not become an approval.
    return decision.model_copy(update={
        "decision": DecisionType.BLOCK,
        "reason": f"step-up required but the server sent no hold token ({decision.reason or 'no reason'})",
        "decision_reason_code": decision.decision_reason_code or "step_up_without_hold_token",
    })


def _timeout(decision: EnforcementDecision) -> EnforcementDecision:
    return decision.model_copy(update={
        "decision": DecisionType.BLOCK, "reason": TIMEOUT_REASON,
        "decision_reason_code": "step_up_timeout",
    })


def _local_engine(name: str) -> Any:
    """thoth.policy.local.<name>, imported only when api_url='local' (the engine is optional)."""
    try:
        from thoth.policy import local
    except ImportError as exc:
        raise RuntimeError(
            "api_url='local' evaluates policy in-process and needs the policy engine "
            f"(pip install 'aten-thoth[policy]'): {exc}"
        ) from exc
    return getattr(local, name)
