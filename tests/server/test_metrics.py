"""GET /metrics: Prometheus text that moves with the traffic."""

from __future__ import annotations

from pathlib import Path

import httpx
from tests.support.bodies import call, event
from tests.support.server import Server, held, scrape, start_server, stop_server, tenant


def test_metrics_count_decisions_latency_events_and_holds(server: Server) -> None:
    t = tenant()
    before = scrape(server.url)
    with server.client(server.key(t)) as c:
        c.post("/v1/enforce", json=call(t, "search"))
        c.post("/v1/enforce", json=call(t, "wire_money"))
        c.post("/v1/enforce", json=call(t, "wire_money", mode="step_up"))
        c.post("/v1/enforce", json=call(t, "drop_db", mode="step_up"))
        assert c.post("/v1/events/batch", json=[event(t), event(t)]).status_code == 200
        assert c.post("/v1/events/batch", json=[event(t), {"tenant_id": t}]).status_code == 422
    after = scrape(server.url)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert delta('thoth_decisions_total{decision="ALLOW"}') == 1
    assert delta('thoth_decisions_total{decision="BLOCK"}') == 1
    assert delta('thoth_decisions_total{decision="STEP_UP"}') == 2
    assert delta("thoth_enforce_latency_seconds_count") == 4
    assert delta('thoth_enforce_latency_seconds_bucket{le="+Inf"}') == 4 and delta("thoth_enforce_latency_seconds_sum") > 0
    assert delta("thoth_events_ingested_total") == 2 and delta("thoth_events_rejected_total") == 2
    assert after["thoth_holds_pending"] >= 2


def test_metrics_name_no_tenant_by_default(server: Server) -> None:
    """/metrics needs no key: tenant ids (customer names) stay out of it unless asked for."""
    t = tenant()
    with server.client(server.key(t)) as c:
        assert c.post("/v1/enforce", json=call(t, "wire_money", mode="step_up")).status_code == 200
    text = httpx.get(server.url + "/metrics").text
    assert "thoth_holds_pending" in text
    assert t not in text and "tenant_id" not in text and "thoth_tenant_holds_pending" not in text


def test_metrics_tenant_labels_when_enabled(backend: str, tmp_path: Path) -> None:
    srv = start_server(backend, tmp_path, {"THOTH_METRICS_TENANT_LABELS": "1", "THOTH_HOLD_TIMEOUT_SECONDS": "120"})
    try:
        t = tenant()
        with srv.client(srv.key(t)) as c:
            c.post("/v1/enforce", json=call(t, "wire_money", mode="step_up"))
            c.post("/v1/enforce", json=call(t, "drop_db", mode="step_up"))
        values = scrape(srv.url)
        assert held(values, t) == 2
    finally:
        stop_server(srv)
