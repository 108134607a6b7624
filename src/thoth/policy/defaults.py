"""The policy of a tenant that has none: the seed's semantics (scope check, mode table)."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from thoth.policy.engine import CompiledPolicy

DEFAULT_POLICY_YAML = """\
version: 1
name: default
description: >
  No policy of the tenant's own yet. A tool outside the agent's declared approved_scope is a
  violation: in progressive mode the first one in a session steps up and a repeat blocks;
  high analytics risk scores step up (>= 0.7) or block (>= 0.9).
"""


@lru_cache(maxsize=1)
def default_policy() -> CompiledPolicy:
    from thoth.policy.engine import compile_policy

    return compile_policy(DEFAULT_POLICY_YAML, version="default")
