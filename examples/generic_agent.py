"""A plain-Python agent governed by Thoth: one allowed call, one blocked call.

Run a server first (`thoth serve`), then:

    export THOTH_API_URL=http://127.0.0.1:8080 THOTH_API_KEY=<key from `thoth keys create`>
    python examples/generic_agent.py

`read_file` is in the agent's approved scope and runs; `delete_file` is not, so the server's
policy blocks it and the agent gets a ThothPolicyViolation with the violation's id.
"""

from __future__ import annotations

import os
import tempfile

import thoth
from thoth import ThothPolicyViolation


class ReadFile:
    name = "read_file"

    def run(self, path: str) -> str:
        with open(path) as handle:
            return handle.read()


def delete_file(path: str) -> str:
    """A plain function in the tools list: Thoth governs it too."""
    os.remove(path)
    return f"deleted {path}"


class FileAgent:
    def __init__(self) -> None:
        self.tools = [ReadFile(), delete_file]


def main() -> int:
    agent = thoth.instrument(
        FileAgent(),
        agent_id="file-agent",
        approved_scope=["read_file"],
        tenant_id=os.environ.get("THOTH_TENANT_ID", "default"),
        enforcement="block",
    )
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("quarterly numbers")
    reader, deleter = agent.tools
    print("read_file ->", reader.run(handle.name))
    try:
        deleter(handle.name)
        print("delete_file ran (the server allowed it)")
    except ThothPolicyViolation as exc:
        print(f"Blocked: {exc.tool_name} - {exc.reason}")
        print(f"Violation record: {exc.violation_id}")
    session = thoth.get_current_session()
    print(f"session {session.session_id if session else None}: tools called {session.tool_calls if session else []}")
    thoth.flush()
    os.path.exists(handle.name) and os.remove(handle.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
