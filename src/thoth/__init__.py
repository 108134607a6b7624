"""Thoth: governance for AI agents' tool calls.

    agent = thoth.instrument(agent, agent_id="...", approved_scope=[...], tenant_id="...")

Every tool call of the agent is then checked against policy before it runs.
"""

from __future__ import annotations

from thoth.exceptions import ThothPolicyViolation
from thoth.instrumentor import flush, instrument, instrument_anthropic, instrument_openai
from thoth.models import EnforcementMode, ThothConfig
from thoth.session import SessionContext, get_current_session
from thoth.user_task import task

__all__ = [
    "EnforcementMode",
    "SessionContext",
    "ThothConfig",
    "ThothPolicyViolation",
    "flush",
    "get_current_session",
    "instrument",
    "instrument_anthropic",
    "instrument_openai",
    "task",
]
__version__ = "0.2.0"
