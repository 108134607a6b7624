"""Thoth's policy engine: a pure library (no I/O) shared by the server and the SDK's in-process mode.

    from thoth.policy import compile_policy, CallContext, SessionHistory
    policy = compile_policy(yaml_text)              # raises PolicyValidationError(.errors)
    decision = policy.evaluate(CallContext(tool_name="send_email", ...), history)
"""

from thoth.policy.context import CallContext, SessionHistory
from thoth.policy.decision import SEVERITY, PolicyDecision
from thoth.policy.defaults import default_policy
from thoth.policy.engine import CompiledPolicy, compile_policy
from thoth.policy.errors import PolicyIssue, PolicyValidationError

__all__ = [
    "SEVERITY",
    "CallContext",
    "CompiledPolicy",
    "PolicyDecision",
    "PolicyIssue",
    "PolicyValidationError",
    "SessionHistory",
    "compile_policy",
    "default_policy",
]
