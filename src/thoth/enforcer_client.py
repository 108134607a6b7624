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
        self.config = config
        self._local: Any = None
        self.endpoint: Endpoint | None = None
        self.wants_session_tool_calls = not config.is_local  # the local engine keeps its own history
        if config.is_local:
            self._local = _local_engine("LocalEnforcer")(config)
        else:
            self.endpoint = get_endpoint(config.resolved_api_url, config.resolved_api_key)

    @property
    def url(self) -> str:
        assert self.endpoint is not None
        return f"{self.endpoint.url}/v1/enforce"

    def enforce(self, request: dict[str, Any]) -> EnforcementDecision:
        if self._local is not None:
            return self._local.enforce(request)  # type: ignore[no-any-return]
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
            pause = retry_pause(response, deadline, attempt)
            if pause is None:
                return self._decide(response, request)
            log.debug("Thoth enforcer answered %d; asking again in %.3f s", response.status_code, pause)
            time.sleep(pause)
            attempt += 1

    async def aenforce(self, request: dict[str, Any]) -> EnforcementDecision:
        if self._local is not None:
            local = getattr(self._local, "aenforce", None)
            if local is not None:
                return await local(request)  # type: ignore[no-any-return]
            return self._local.enforce(request)  # type: ignore[no-any-return]
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
            pause = retry_pause(response, deadline, attempt)
            if pause is None:
                return self._decide(response, request)
            log.debug("Thoth enforcer answered %d; asking again in %.3f s", response.status_code, pause)
            await asyncio.sleep(pause)
            attempt += 1

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
            return self._config_error(
                f"the Thoth server rejected the enforce request ({status}: {error_message(response)}). "
                "Check api_url / THOTH_API_URL points at a Thoth server and the agent's settings"
            )
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

    @staticmethod
    def _config_error(message: str) -> EnforcementDecision:
        log.error("Thoth: %s", message)
        return EnforcementDecision(
            decision=DecisionType.BLOCK,
            reason=message,
            decision_reason_code="sdk_configuration_error",
            fail_mode="config",
        )


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
