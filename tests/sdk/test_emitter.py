"""The event transport: batches, retries across a server restart, drops, observe-mode verdicts."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from thoth.emitter import EventTransport, HttpEmitter
from thoth.http import Endpoint, get_endpoint

from .wire_server import WireServer, delivered


def test_events_arrive_in_batches_of_at_most_ten(server: WireServer, make_tracer: Any) -> None:
    tool = make_tracer().wrap_tool("search", lambda q: q)
    for i in range(40):
        tool(str(i))
    assert len(delivered(server)) == 80
    assert max(server.batch_sizes) <= 10
    assert len(server.batch_sizes) >= 8



def test_a_failed_batch_is_retried_not_dropped(server: WireServer, make_tracer: Any) -> None:
    server.fail("/v1/events/batch", 503, times=3)
    tracer = make_tracer()
    tracer.wrap_tool("search", lambda q: q)("x")
    assert len(delivered(server)) == 2
    assert server.hits["/v1/events/batch"] >= 4
    assert tracer.emitter.dropped == 0


def test_refused_batch_is_dropped_and_counted(server: WireServer) -> None:
    emitter = HttpEmitter(api_url=server.url, api_key="not-a-key")
    emitter.emit({"event_id": "t:1", "event_type": "TOOL_CALL_PRE"})
    assert emitter.flush(5)
    assert emitter.dropped == 1 and not server.events


def test_full_queue_drops_and_counts(server: WireServer) -> None:
    endpoint = Endpoint(server.url, server.api_key)
    server.stop()
    transport = EventTransport(endpoint, max_queue=5, max_retry_seconds=0.2)
    try:
        for i in range(30):
            transport.put({"event_id": f"t:{i}"})
        assert transport.dropped >= 15  # the worker holds at most one batch, the queue five
        assert transport.flush(5)
        assert transport.dropped == 30  # the rest gave up after max_retry_seconds
    finally:
        transport.stop()


def test_emitters_share_one_thread_per_endpoint(server: WireServer) -> None:
    a = HttpEmitter(api_url=server.url, api_key=server.api_key)
    b = HttpEmitter(api_url=server.url + "/", api_key=server.api_key)
    assert a.transport is b.transport
    other = HttpEmitter(api_url=server.url, api_key="other-key")
    assert other.transport is not a.transport


def test_flush_waits_for_delivery(server: WireServer) -> None:
    emitter = HttpEmitter(api_url=server.url, api_key=server.api_key)
    server.fail("/v1/events/batch", 0, delay=0.3)
    emitter.emit({"event_id": "acme-corp:x", "event_type": "TOOL_CALL_PRE"})
    assert emitter.flush(5)
    assert "acme-corp:x" in server.events


def test_observe_never_blocks_yet_the_server_learns_the_verdict(server: WireServer,
                                                                make_tracer: Any) -> None:
    gate = threading.Event()
    server.script("rm_rf", lambda req: (gate.wait(5), {"decision": "BLOCK", "reason": "destructive"})[1])
    tracer = make_tracer(enforcement="observe")
    started = time.monotonic()
    assert tracer.wrap_tool("rm_rf", lambda: "ran")() == "ran"  # the server is still deciding
    assert time.monotonic() - started < 1
    gate.set()
    events = delivered(server)
    (request,) = server.enforce_requests
    assert request["enforcement_mode"] == "observe"
    (post,) = [e for e in events.values() if e["event_type"] == "TOOL_CALL_POST"]
    observed = post["metadata"]["observed_decision"]
    assert observed["decision"] == "BLOCK" and observed["reason"] == "destructive"
    assert post["violation_id"] == observed["violation_id"]
    assert not [e for e in events.values() if e["event_type"] == "TOOL_CALL_BLOCK"]


def test_observe_with_the_server_down(server: WireServer, make_tracer: Any) -> None:
    tracer = make_tracer(enforcement="observe", fail_closed=True)
    server.stop()
    assert tracer.wrap_tool("rm_rf", lambda: "ran")() == "ran"  # observe never blocks


@pytest.mark.parametrize("count", [1, 1000])
def test_instrument_shares_threads_and_pools(server: WireServer, count: int) -> None:
    import gc

    import httpx

    import thoth
    from thoth.async_http import AsyncPool
    from thoth.sync_http import SyncConnection

    class Agent:
        def __init__(self) -> None:
            self.tools = [lambda q: q]

    def instrument_once() -> Any:
        return thoth.instrument(Agent(), agent_id="a", approved_scope=["<lambda>"],
                                tenant_id=server.tenant_id, api_key=server.api_key, api_url=server.url)

    instrument_once().tools[0]("warm up")  # starts the endpoint's thread and pool
    delivered(server)  # ... and the event thread's connection pool
    def sdk_threads() -> int:  # the in-process test server's own handler threads don't count
        return sum("process_request" not in t.name for t in threading.enumerate())

    def pools() -> int:
        return sum(isinstance(o, httpx.Client | httpx.AsyncClient | SyncConnection | AsyncPool)
                   for o in gc.get_objects())

    gc.collect()
    threads, clients = sdk_threads(), pools()
    assert clients >= 2  # the agent's connection and the event thread's
    agents = [instrument_once() for _ in range(count)]
    for agent in agents[:20]:
        agent.tools[0]("x")
    gc.collect()
    assert sdk_threads() <= threads
    assert pools() <= clients
    assert get_endpoint(server.url, server.api_key).client is agents[-1].tools[0].__thoth_tracer__.enforcer.endpoint.client


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_uses_its_own_connections_and_event_thread(server: WireServer,
                                                                  make_tracer: Any) -> None:
    """A worker forked after instrument() (gunicorn preload, multiprocessing) must not share the
    parent's sockets (it could read the parent's verdict) and needs an event thread of its own."""
    import os

    tracer = make_tracer()
    tool = tracer.wrap_tool("search", lambda q: q)
    assert tool("parent-before") == "parent-before"  # the parent's connection and event thread exist
    endpoint = tracer.enforcer.endpoint
    pid = os.fork()
    if pid == 0:  # the child
        code = 3
        try:
            fresh = getattr(endpoint._local, "conn", None) is None
            ran = tool("child") == "child"
            code = 0 if (fresh and ran and tracer.flush(5) and tracer.enforcer.endpoint.fail_open_total == 0) else 1
        finally:
            os._exit(code)
    assert tool("parent-after") == "parent-after"
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    pre = sorted(e["metadata"]["tool_call"]["arguments"]["args"][0]
                 for e in delivered(server).values() if e["event_type"] == "TOOL_CALL_PRE")
    assert pre == ["child", "parent-after", "parent-before"]
