"""Prometheus text exposition, hand-rolled: a few counters and one histogram, no dependency."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    def __init__(self) -> None:
        self.decisions: Counter[str] = Counter()
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.events_ingested = 0
        self.events_duplicate = 0
        self.events_rejected = 0
        self.http_errors: Counter[int] = Counter()

    def observe_decision(self, decision: str, seconds: float) -> None:
        self.decisions[decision] += 1
        self.latency_sum += seconds
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.latency_counts[i] += 1
                return
        self.latency_counts[-1] += 1

    def render(self, holds_pending: Callable[[], dict[str, int]], unrecorded: int = 0,
               tenant_labels: bool = False) -> str:
        """`holds_pending` -> open holds per tenant, from the database (shared by all processes);
        `unrecorded`: answered decisions whose write-behind row failed on its own (see the log).
        `tenant_labels`: add the per-tenant series. /metrics needs no key, and tenant ids name
        customers, so they are listed only when Settings.metrics_tenant_labels says so."""
        pending = holds_pending()
        lines = ["# HELP thoth_decisions_total Enforce decisions by outcome.", "# TYPE thoth_decisions_total counter"]
        for outcome in ("ALLOW", "BLOCK", "STEP_UP", "MODIFY", "DEFER"):
            lines.append(f'thoth_decisions_total{{decision="{outcome}"}} {self.decisions.get(outcome, 0)}')
        lines += ["# HELP thoth_enforce_latency_seconds Server-side enforce latency.",
                  "# TYPE thoth_enforce_latency_seconds histogram"]
        running = 0
        for bound, count in zip(LATENCY_BUCKETS, self.latency_counts, strict=False):
            running += count
            lines.append(f'thoth_enforce_latency_seconds_bucket{{le="{bound}"}} {running}')
        running += self.latency_counts[-1]
        lines.append(f'thoth_enforce_latency_seconds_bucket{{le="+Inf"}} {running}')
        lines.append(f"thoth_enforce_latency_seconds_sum {self.latency_sum:.6f}")
        lines.append(f"thoth_enforce_latency_seconds_count {running}")
        lines += ["# HELP thoth_events_ingested_total Events stored.", "# TYPE thoth_events_ingested_total counter",
                  f"thoth_events_ingested_total {self.events_ingested}",
                  "# HELP thoth_events_duplicate_total Events already stored (idempotent re-sends).",
                  "# TYPE thoth_events_duplicate_total counter",
                  f"thoth_events_duplicate_total {self.events_duplicate}",
                  "# HELP thoth_events_rejected_total Events refused as invalid.",
                  "# TYPE thoth_events_rejected_total counter",
                  f"thoth_events_rejected_total {self.events_rejected}",
                  "# HELP thoth_decisions_unrecorded_total Answered decisions whose row could not be stored.",
                  "# TYPE thoth_decisions_unrecorded_total counter",
                  f"thoth_decisions_unrecorded_total {unrecorded}",
                  "# HELP thoth_holds_pending Step-up holds waiting for a decision.",
                  "# TYPE thoth_holds_pending gauge",
                  f"thoth_holds_pending {sum(pending.values())}"]
        if tenant_labels:
            lines += ["# HELP thoth_tenant_holds_pending Step-up holds waiting for a decision, per tenant.",
                      "# TYPE thoth_tenant_holds_pending gauge"]
            lines += [f'thoth_tenant_holds_pending{{tenant_id="{_label(t)}"}} {n}' for t, n in sorted(pending.items())]
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
