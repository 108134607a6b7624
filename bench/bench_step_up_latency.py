"""From an approver's resolve to the held tool running, through the SDK's long poll (issue 6: <= 1 s).

    PYTHONPATH=src python bench/bench_step_up_latency.py [--rounds 10]

The real `thoth serve` on a fresh SQLite database with a policy that steps up every call of one
tool. Each round an instrumented agent calls the tool and is held; an approver (another thread)
waits for the pending approval, waits a moment so the SDK is parked in its long poll, then sends
POST /v1/approvals/{id}/resolve. Measured: from just before that POST to the first line of the
tool's body, sync and async tools. The SDK keeps its default 5 s poll interval, so any figure
under 5 s comes from the long poll (`?wait=`), not from polling.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness  # noqa: E402  (bench/ is not a package)
from bench_sdk_overhead import TENANT  # noqa: E402

POLICY = """version: 1
name: approval-bench
rules:
  - id: wire-needs-human
    when: {tool: wire_money}
    action: step_up
    reason: money leaves the company
"""


def keys(home: str, db_url: str) -> dict[str, str]:
    import json
    import subprocess

    env = {"PYTHONPATH": _harness.SRC, "THOTH_HOME": home, "PATH": "/usr/bin:/bin"}
    out = {}
    for role in ("sdk", "approver", "admin"):
        done = subprocess.run([sys.executable, "-m", "thoth", "keys", "create", "--tenant", TENANT, "--role", role,
                               "--json", "--database-url", db_url], env=env, capture_output=True, text=True,
                              check=True)
        out[role] = str(json.loads(done.stdout)["key"])
    return out


def approver(url: str, key: str, resolved_at: list[float], settle: float) -> threading.Thread:
    def run() -> None:
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {key}"}, timeout=10) as client:
            while True:
                items = client.get("/v1/approvals", params={"status": "pending"}).json()["items"]
                if items:
                    break
                time.sleep(0.01)
            time.sleep(settle)
            resolved_at.append(time.perf_counter())
            client.post(f"/v1/approvals/{items[0]['approval_id']}/resolve", json={"decision": "approve"})

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--settle", type=float, default=0.3, help="seconds between the hold and the approval")
    options = parser.parse_args()
    from thoth.instrumentor import build_tracer

    with tempfile.TemporaryDirectory() as home:
        db_url = f"sqlite:///{home}/thoth.db"
        proc, url = _harness.start_thoth(db_url, home)
        try:
            key = keys(home, db_url)
            httpx.put(f"{url}/v1/policies", headers={"authorization": f"Bearer {key['admin']}"},
                      json={"document": POLICY}).raise_for_status()
            tracer = build_tracer(agent_id="bench", approved_scope=["wire_money"], tenant_id=TENANT,
                                  api_key=key["sdk"], api_url=url, enforcement="step_up")
            ran_at: list[float] = []

            def wire_money(amount: int) -> int:
                ran_at.append(time.perf_counter())
                return amount

            async def awire_money(amount: int) -> int:
                ran_at.append(time.perf_counter())
                return amount

            results: dict[str, list[float]] = {}
            for mode, fn in (("sync", wire_money), ("async", awire_money)):
                governed = tracer.wrap_tool("wire_money", fn)
                latencies = []
                for i in range(options.rounds):
                    resolved_at: list[float] = []
                    thread = approver(url, key["approver"], resolved_at, options.settle)
                    if mode == "sync":
                        governed(i)
                    else:
                        asyncio.run(governed(i))
                    thread.join()
                    latencies.append((ran_at[-1] - resolved_at[0]) * 1000)
                results[mode] = latencies
            tracer.flush(10)
        finally:
            _harness.stop(proc)
    print(f"approver's resolve -> tool running, real thoth serve, {options.rounds} rounds each, "
          f"SDK poll interval 5 s (long poll): milliseconds")
    for mode, latencies in results.items():
        ordered = sorted(latencies)
        print(f"{mode:6} p50 {statistics.median(ordered):7.1f}  max {ordered[-1]:7.1f}  goal <= 1000")


if __name__ == "__main__":
    main()
