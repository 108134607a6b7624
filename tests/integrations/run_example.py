"""Run one example script offline against a real `thoth serve`: start the server (fresh
THOTH_HOME, the test policy), point THOTH_API_URL / THOTH_API_KEY at it, approve step-ups of
`transfer_money` through the approvals API while the script runs, and fail if the script fails
or never asked the server for a decision. CI (noxfile.py) runs every framework's example this way."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests/ as a package (its support/ is stdlib only)

from tests.integrations.thoth_server import Reviewer, ThothServer, enforce_counts  # noqa: E402


def main(script: str) -> int:
    with ThothServer() as server, Reviewer(server, {"transfer_money": "approve"}):
        env = {**server.env, "THOTH_API_URL": server.url, "THOTH_API_KEY": server.api_key,
               "THOTH_TENANT_ID": server.tenant,
               "PYTHONPATH": os.pathsep.join([str(ROOT / "examples"), server.env.get("PYTHONPATH", "")])}
        code = subprocess.call([sys.executable, str(ROOT / script)], env=env, timeout=120)
        counts = enforce_counts(server.decisions())
    if code == 0 and not counts:
        print(f"{script}: ran, but the server recorded no decision", file=sys.stderr)
        return 1
    print(f"{script}: exit {code}; decisions recorded by thoth serve: {dict(counts)}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
