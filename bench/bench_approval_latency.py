"""Click-to-run latency of a held call: approver's click -> the SDK runs the tool.

Starts a real `thoth serve` (SQLite, temp dir) wired to a local Slack Web API stub, then for each
round: the real SDK (Tracer + StepUpClient, long-poll `?wait=`) makes a STEP_UP call in a thread,
the bench resolves it (a signed Slack interactivity POST, or POST /v1/approvals/{id}/resolve)
and measures the time until the tool body starts. Goal: <= 1 s. Baseline for the ratio: the
SDK's default 5 s poll interval (what a client without long-poll would wait on average: 2.5 s).

    PYTHONPATH=src:. /work/venv312/bin/python bench/bench_approval_latency.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.notify import HOOK_SECRET, SLACK_SECRET, Rig, notify_yaml  # noqa: E402
from tests.support.notify import held_call_latency as _held_call_latency  # noqa: E402
from tests.support.server import start_server, stop_server  # noqa: E402
from tests.support.stubs import SlackStub, SmtpSink, WebhookReceiver  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    rounds = parser.parse_args().rounds
    slack, hook, smtp = SlackStub(), WebhookReceiver(HOOK_SECRET), SmtpSink()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "notify.yaml").write_text(notify_yaml(slack, hook, smtp))
        env = {"TEST_SLACK_BOT_TOKEN": "xoxb-test-token", "TEST_SLACK_SIGNING_SECRET": SLACK_SECRET,
               "TEST_HOOK_SECRET": HOOK_SECRET, "THOTH_HOLD_TIMEOUT_SECONDS": "60"}
        server = start_server(f"sqlite:///{home / 'thoth.db'}", home, env)
        try:
            rig = Rig(server, slack, hook, smtp)
            import httpx

            def by_slack(approval_id: str) -> None:
                assert rig.click(approval_id, user="U_BOB").status_code == 200

            def by_api(approval_id: str) -> None:
                r = httpx.post(f"{server.url}/v1/approvals/{approval_id}/resolve", json={"decision": "approve"},
                               headers={"x-api-key": rig.approver_key})
                assert r.status_code == 200

            for name, resolve in (("slack click", by_slack), ("resolve API", by_api)):
                samples = sorted(_held_call_latency(rig, resolve) * 1000 for _ in range(rounds))
                p95 = samples[min(len(samples) - 1, int(0.95 * len(samples)))]
                print(f"{name:12s} -> tool runs: median {statistics.median(samples):6.1f} ms  p95 {p95:6.1f} ms"
                      f"  max {samples[-1]:6.1f} ms  (n={rounds}; goal 1000 ms; "
                      f"{2500 / statistics.median(samples):.0f}x faster than a 5 s poll's mean wait)")
        finally:
            stop_server(server)
            slack.close()
            hook.close()
            smtp.close()


if __name__ == "__main__":
    main()
