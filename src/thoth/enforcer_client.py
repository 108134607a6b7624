"""POST /v1/enforce: ask the server for a decision on one tool call.

`enforce_timeout_seconds` is the deadline of the whole call: connecting, sending, the answer's
head and body, and the retries. A 429 or 503 ("come back later") is asked again within that
deadline, after its Retry-After or a short jittered backoff (thoth.http.retry_pause).
Faults of the infrastructure (connection errors, the deadline passing, 5xx, 429/503 still
answered at the deadline, an unreadable answer) fail open: the call is allowed, a WARNING is
logged and the fail-open is counted (the next event batch reports the count). With
`fail_closed=True` / THOTH_FAIL_CLOSED=1 they block instead. A configuration error (401, 403,
any other 4xx) always blocks, with a message saying what to fix.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from thoth.http import Endpoint, Response, TransportFault, error_message, get_endpoint, retry_pause
from thoth.models import DecisionType, EnforcementDecision, ThothConfig

log = logging.getLogger("thoth")


class EnforcerClient:
    def __init__(self, config: ThothConfig) -> None:
        if config.is_local:
            raise ValueError("api_url='local' has no HTTP server; thoth.components.make_components picks "
                             "thoth.policy.local.LocalEnforcer for it")
        self.config = config
        self.endpoint: Endpoint | None = get_endpoint(config.resolved_api_url, config.resolved_api_key, config.tls)
        self.wants_session_tool_calls = True  # the server keeps no session history of its own

    @property
    def url(self) -> str:
        assert self.endpoint is not None
        return f"{self.endpoint.url}/v1/enforce"

    # Two thin loops, one per I/O style; what an answer means is decided once, in _step.
    def enforce(self, request: dict[str, Any]) -> EnforcementDecision:
        endpoint = self.endpoint
        assert endpoint is not None
        body = json.dumps(request, separators=(",", ":")).encode()
        deadline = time.monotonic() + self.config.enforce_timeout_seconds
        attempt = 0
        while True:
            try:
                response = endpoint.send("POST", "/v1/enforce", body, timeout=deadline - time.monotonic())
            except TransportFault as exc:
                return self._fault(str(exc), request)
            step = self._step(response, request, deadline, attempt)
            if isinstance(step, EnforcementDecision):
                return step
            time.sleep(step)
            attempt += 1

    async def aenforce(self, request: dict[str, Any]) -> EnforcementDecision:
        endpoint = self.endpoint
        assert endpoint is not None
        body = json.dumps(request, separators=(",", ":")).encode()
        deadline = time.monotonic() + self.config.enforce_timeout_seconds
        attempt = 0
        while True:
            try:
                response = await endpoint.asend("POST", "/v1/enforce", body, timeout=deadline - time.monotonic())
            except TransportFault as exc:
                return self._fault(str(exc), request)
            step = self._step(response, request, deadline, attempt)
            if isinstance(step, EnforcementDecision):
                return step
            await asyncio.sleep(step)
            attempt += 1

    def _step(self, response: Response, request: dict[str, Any], deadline: float,
              attempt: int) -> EnforcementDecision | float:
        """The decision an answer gives, or how long to wait before asking again (429/503 within
        the deadline)."""
        pause = retry_pause(response, deadline, attempt)
        if pause is None:
            return self._decide(response, request)
        log.debug("Thoth enforcer answered %d; asking again in %.3f s", response.status_code, pause)
        return pause

    # ---------------------------------------------------------------------------------------------
    def _decide(self, response: Response, request: dict[str, Any]) -> EnforcementDecision:
        status = response.status_code
        if status >= 500 or status == 429:
            return self._fault(f"HTTP {status} from {self.url}: {error_message(response)}", request)
        if status in (401, 403):
            return self._config_error(
                f"the Thoth server refused the API key ({status}: {error_message(response)}). "
                f"Set THOTH_API_KEY (or api_key=...) to a valid key of tenant '{self.config.tenant_id}'"
            )
        if status >= 400:
            return self._rejected(status, error_message(response))
        try:
            body = response.json()
        except ValueError:
            return self._fault(f"unreadable answer from {self.url} (HTTP {status}, not JSON)", request)
        if not isinstance(body, dict):
            return self._fault(f"unreadable answer from {self.url} (JSON {type(body).__name__})", request)
        return EnforcementDecision.from_wire(body)

    def _fault(self, problem: str, request: dict[str, Any]) -> EnforcementDecision:
        tool = request.get("tool_name")
        if self.config.fail_closed:
            log.warning("Thoth enforcer unavailable (%s); fail_closed is set, blocking %s", problem, tool)
            return EnforcementDecision(
                decision=DecisionType.BLOCK,
                reason=f"Thoth enforcer unavailable and fail_closed is set: {problem}",
                decision_reason_code="enforcer_unavailable",
                fail_mode="closed",
            )
        if self.endpoint is not None:
            self.endpoint.count_fail_open()
        log.warning("Thoth enforcer unavailable (%s); failing open, allowing %s", problem, tool)
        return EnforcementDecision(
            decision=DecisionType.ALLOW,
            reason=f"fail-open: {problem}",
            decision_reason_code="enforcer_unavailable",
            fail_mode="open",
        )

    def _rejected(self, status: int, message: str) -> EnforcementDecision:
        """A request the server refuses (its 4xx): BLOCK."""
        return rejected_request("the Thoth server", status, message)

    @staticmethod
    def _config_error(message: str) -> EnforcementDecision:
        log.error("Thoth: %s", message)
        return EnforcementDecision(
            decision=DecisionType.BLOCK,
            reason=message,
            decision_reason_code="sdk_configuration_error",
            fail_mode="config",
        )


def rejected_request(where: str, status: int, message: str) -> EnforcementDecision:
    """A request the wire contract refuses (the server's 4xx, or thoth.wire.WireError in-process): BLOCK."""
    return EnforcerClient._config_error(
        f"{where} rejected the enforce request ({status}: {message}). "
        "Check api_url / THOTH_API_URL points at a Thoth server and the agent's settings"
    )
