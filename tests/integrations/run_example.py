"""Run one example script offline: start a governance server, point THOTH_API_URL at it, run
the script, and fail if it fails. CI (noxfile.py) runs every framework's example this way."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from integrations.governance_server import GovernanceServer  # noqa: E402


def main(script: str) -> int:
    with GovernanceServer(block={"delete_file", "send_slack_message", "send_email", "delete_record"},
                          step_up={"transfer_money": "ALLOW"}) as server:
        env = {**os.environ, "THOTH_API_URL": server.url, "THOTH_API_KEY": server.api_key,
               "THOTH_TENANT_ID": "acme", "PYTHONPATH": os.pathsep.join([str(ROOT / "examples"),
                                                                       os.environ.get("PYTHONPATH", "")])}
        code = subprocess.call([sys.executable, str(ROOT / script)], env=env, timeout=120)
        checks = len(server.enforce_requests)
    if code == 0 and checks == 0:
        print(f"{script}: ran, but never asked the server for a decision", file=sys.stderr)
        return 1
    print(f"{script}: exit {code}, {checks} enforce calls")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
