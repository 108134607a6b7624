"""The SDK's own HTTP/1.1 clients of the hot path, sync (thoth.sync_http) and async
(thoth.async_http), against real sockets.

Framing (Content-Length, chunked, read-until-close), keep-alive reuse and reconnects, deadlines,
the async pool's bound, TLS, and what the enforcer makes of their faults (fail-open).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from thoth.async_http import AsyncPool
from thoth.http import Endpoint, TransportFault, release
from thoth.instrumentor import build_tracer

from .raw_http_server import RawHttpServer, chunked_answer, json_answer

ALLOW = json.dumps({"decision": "ALLOW", "reason": "ok"}).encode()


@pytest.fixture
def servers() -> Iterator[list[RawHttpServer]]:
    started: list[RawHttpServer] = []
    yield started
    for server in started:
        release(server.url)
        server.close()


def serve(servers: list[RawHttpServer], responder: Any) -> RawHttpServer:
    server = RawHttpServer(responder)
    servers.append(server)
    return server


def pool_for(server: RawHttpServer, **options: Any) -> AsyncPool:
    return AsyncPool("127.0.0.1", server.port, tls=False, **options)


async def post(pool: AsyncPool, body: bytes = b"{}", timeout: float = 2.0) -> Any:
    response = await pool.request("POST", "/v1/enforce", {"content-type": "application/json"}, body, timeout)
    return response.status_code, response.json()


class Client:
    """One of the two clients, pointed at a test server: `post()` is the enforce call's exchange."""

    def __init__(self, kind: str, server: RawHttpServer) -> None:
        self.kind = kind
        self.pool = pool_for(server)
        self.endpoint = Endpoint(server.url, None)  # its post_bytes runs on the sync client

    async def post(self, timeout: float = 2.0) -> Any:
        if self.kind == "async":
            return await post(self.pool, timeout=timeout)
        response = self.endpoint.post_bytes("/v1/enforce", b"{}", timeout)  # blocks this loop: fine in a test
        return response.status_code, response.json()


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_content_length_answers_reuse_one_connection(servers: list[RawHttpServer], kind: str) -> None:
    server = serve(servers, lambda head: (json_answer(ALLOW), False, 0.0))
    client = Client(kind, server)
    for _ in range(5):
        assert await client.post() == (200, {"decision": "ALLOW", "reason": "ok"})
    assert server.connections == 1
    assert server.requests[0].startswith(b"POST /v1/enforce HTTP/1.1\r\n")
    assert b"Host: 127.0.0.1:" in server.requests[0] and b"Content-Length: 2" in server.requests[0]


async def test_chunked_answers_with_extensions_and_trailers(servers: list[RawHttpServer], kind: str) -> None:
    body = json.dumps({"decision": "BLOCK", "reason": "x" * 100}).encode()
    server = serve(servers, lambda head: (chunked_answer(body, pieces=4), False, 0.0))
    client = Client(kind, server)
    for _ in range(3):
        status, verdict = await client.post()
        assert status == 200 and verdict["reason"] == "x" * 100
    assert server.connections == 1  # the chunked framing left the connection clean for reuse


async def test_an_answer_without_framing_runs_until_close(servers: list[RawHttpServer], kind: str) -> None:
    server = serve(servers, lambda head: (b"HTTP/1.1 200 OK\r\n\r\n" + ALLOW, True, 0.0))
    client = Client(kind, server)
    assert (await client.post())[1]["decision"] == "ALLOW"
    assert (await client.post())[1]["decision"] == "ALLOW"
    assert server.connections == 2


async def test_interim_answers_are_skipped(servers: list[RawHttpServer], kind: str) -> None:
    server = serve(servers, lambda head: (b"HTTP/1.1 100 Continue\r\n\r\n" + json_answer(ALLOW), False, 0.0))
    assert (await Client(kind, server).post())[1]["decision"] == "ALLOW"


async def test_connection_close_header_is_honoured(servers: list[RawHttpServer], kind: str) -> None:
    server = serve(servers, lambda head: (json_answer(ALLOW, extra="connection: close\r\n"), True, 0.0))
    client = Client(kind, server)
    for _ in range(3):
        assert (await client.post())[0] == 200
    assert server.connections == 3


async def test_server_closing_keep_alive_connections_silently(servers: list[RawHttpServer], kind: str) -> None:
    """Answers without saying it will close, then closes: every request still gets its answer."""
    server = serve(servers, lambda head: (json_answer(ALLOW), True, 0.0))
    client = Client(kind, server)
    for _ in range(5):
        assert (await client.post())[0] == 200
        await asyncio.sleep(0.01)
    assert server.connections == 5


async def test_a_reused_connection_dropped_mid_request_is_retried_once(servers: list[RawHttpServer], kind: str) -> None:
    # 1st request answered (connection kept), 2nd: the server closes the idle connection as the
    # request arrives, without answering (an idle timeout racing the request), 3rd: answered on a new one.
    plan = [(json_answer(ALLOW), False), (b"", True), (json_answer(b'{"decision":"BLOCK"}'), False)]
    server = serve(servers, lambda head: (*plan.pop(0), 0.0))
    client = Client(kind, server)
    assert (await client.post())[1]["decision"] == "ALLOW"
    assert (await client.post())[1]["decision"] == "BLOCK"
    assert server.connections == 2 and len(server.requests) == 3


async def test_a_fresh_connection_dropped_is_a_fault_not_a_loop(servers: list[RawHttpServer], kind: str) -> None:
    server = serve(servers, lambda head: (b"", True, 0.0))
    with pytest.raises(TransportFault, match="closed"):
        await Client(kind, server).post()
    assert len(server.requests) == 1


async def test_garbage_is_a_fault(servers: list[RawHttpServer], kind: str) -> None:
    server = serve(servers, lambda head: (b"SSH-2.0-OpenSSH\r\n\r\n", True, 0.0))
    with pytest.raises(TransportFault, match="not an HTTP"):
        await Client(kind, server).post()


async def test_timeout_is_a_fault_and_the_late_answer_is_never_read(servers: list[RawHttpServer], kind: str) -> None:
    plan = [(json_answer(b'{"late": true}'), False, 0.5), (json_answer(b'{"late": false}'), False, 0.0)]
    server = serve(servers, lambda head: plan.pop(0))
    client = Client(kind, server)
    with pytest.raises(TransportFault, match="no answer within 0.1 s|timed out"):
        await client.post(timeout=0.1)
    assert await client.post() == (200, {"late": False})  # a new connection, not the half-read one
    assert server.connections == 2


async def test_the_pool_is_bounded(servers: list[RawHttpServer]) -> None:
    server = serve(servers, lambda head: (json_answer(ALLOW), False, 0.05))
    pool = pool_for(server, max_connections=3, max_idle=3)
    answers = await asyncio.gather(*(post(pool) for _ in range(12)))
    assert all(status == 200 for status, _ in answers)
    assert server.most_open <= 3  # the fourth to twelfth requests waited for a free connection
    assert len(pool._idle) == 3


async def test_a_slow_server_never_blocks_the_loop(servers: list[RawHttpServer]) -> None:
    server = serve(servers, lambda head: (json_answer(ALLOW), False, 0.3))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    assert (await post(pool_for(server)))[0] == 200
    task.cancel()
    assert ticks >= 10


async def test_cancelled_request_does_not_poison_the_pool(servers: list[RawHttpServer]) -> None:
    plan = [(json_answer(b'{"n": 1}'), False, 0.3), (json_answer(b'{"n": 2}'), False, 0.0)]
    server = serve(servers, lambda head: plan.pop(0))
    pool = pool_for(server)
    task = asyncio.create_task(post(pool))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await post(pool) == (200, {"n": 2})


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_tls(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    listener = await asyncio.start_server(_tls_echo, "127.0.0.1", 0, ssl=server_ctx)
    port = listener.sockets[0].getsockname()[1]
    try:
        pool = AsyncPool("127.0.0.1", port, tls=True, ssl_context=ssl.create_default_context(cafile=str(cert)))
        assert await post(pool) == (200, {"decision": "ALLOW", "reason": "ok"})
        assert await post(pool) == (200, {"decision": "ALLOW", "reason": "ok"})
        assert pool.connects == 1
        untrusted = AsyncPool("127.0.0.1", port, tls=True)  # the system's CAs do not know this cert
        with pytest.raises(TransportFault, match="CERTIFICATE_VERIFY_FAILED"):
            await post(untrusted)
        pool.close()
    finally:
        listener.close()


def test_sync_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server = RawHttpServer(lambda head: (json_answer(ALLOW), False, 0.0), ssl_context=server_ctx)
    try:
        with pytest.raises(TransportFault, match="CERTIFICATE_VERIFY_FAILED"):
            Endpoint(server.url, None).post_bytes("/v1/enforce", b"{}", 2.0)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # how a user trusts a private CA
        endpoint = Endpoint(server.url, None)
        for _ in range(2):
            assert endpoint.post_bytes("/v1/enforce", b"{}", 2.0).json()["decision"] == "ALLOW"
        assert server.connections == 2  # the refused handshake, then one kept-alive connection
    finally:
        server.close()


async def _tls_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            writer.write(json_answer(ALLOW))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


# --- through the SDK: the enforcer's fail-open on these faults -----------------------------------

def _tracer(server: RawHttpServer, **settings: Any) -> Any:
    return build_tracer(agent_id="a", approved_scope=["search"], tenant_id="t", api_key="k", api_url=server.url,
                        enforcement="block", **settings)


def _enforce_or_events(verdict: bytes, delay: float = 0.0) -> Any:
    def respond(head: bytes) -> tuple[bytes, bool, float]:
        if head.startswith(b"POST /v1/enforce "):
            return json_answer(verdict), False, delay
        return json_answer(b'{"accepted": 1}'), False, 0.0
    return respond


async def test_async_enforce_timeout_fails_open(servers: list[RawHttpServer]) -> None:
    server = serve(servers, _enforce_or_events(b'{"decision": "BLOCK"}', delay=0.5))

    async def search(q: str) -> str:
        return f"found {q}"

    tracer = _tracer(server, enforce_timeout_seconds=0.1)
    assert await tracer.wrap_tool("search", search)("x") == "found x"  # the late BLOCK is never seen
    assert tracer.enforcer.endpoint.fail_open_total == 1


async def test_async_enforce_reads_chunked_verdicts(servers: list[RawHttpServer]) -> None:
    from thoth import ThothPolicyViolation

    def respond(head: bytes) -> tuple[bytes, bool, float]:
        if head.startswith(b"POST /v1/enforce "):
            return chunked_answer(b'{"decision": "BLOCK", "reason": "chunked no", "violation_id": "vio_1"}'), \
                False, 0.0
        return json_answer(b'{"accepted": 1}'), False, 0.0

    server = serve(servers, respond)

    async def search(q: str) -> str:
        raise AssertionError("must not run")

    with pytest.raises(ThothPolicyViolation) as info:
        await _tracer(server).wrap_tool("search", search)("x")
    assert info.value.reason == "chunked no" and info.value.violation_id == "vio_1"


def test_pools_are_per_event_loop(servers: list[RawHttpServer]) -> None:
    server = serve(servers, _enforce_or_events(ALLOW))
    tracer = _tracer(server)

    async def search(q: str) -> str:
        return q

    tool = tracer.wrap_tool("search", search)
    pools = []

    def run_in_own_loop() -> None:
        async def go() -> None:
            await tool("a")
            await tool("b")
            pools.append(tracer.enforcer.endpoint.async_pool())
        asyncio.run(go())

    threads = [threading.Thread(target=run_in_own_loop) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(p) for p in pools}) == 3 and all(p.connects == 1 for p in pools)


async def test_uvicorn_closing_idle_keep_alive_connections() -> None:
    """uvicorn (what `thoth serve` runs on) closes idle connections after its keep-alive timeout."""
    import socket

    import uvicorn

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": ALLOW})

    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", timeout_keep_alive=1, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        pool = AsyncPool("127.0.0.1", sock.getsockname()[1], tls=False)
        assert (await post(pool))[0] == 200
        assert (await post(pool))[0] == 200
        assert pool.connects == 1
        sync = Endpoint(f"http://127.0.0.1:{sock.getsockname()[1]}", None)  # the sync path, likewise
        assert sync.post_fast("/v1/enforce", {}, 2.0).json()["decision"] == "ALLOW"
        await asyncio.sleep(1.5)  # uvicorn has closed both idle connections by now
        assert (await post(pool))[0] == 200
        assert pool.connects == 2
        assert sync.post_fast("/v1/enforce", {}, 2.0).json()["decision"] == "ALLOW"  # reconnected, no fault
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()


async def test_a_header_that_cannot_be_sent_is_a_fault(servers: list[RawHttpServer]) -> None:
    server = serve(servers, lambda head: (json_answer(ALLOW), False, 0.0))
    pool = pool_for(server)
    with pytest.raises(TransportFault, match="line break"):
        await pool.request("GET", "/", {"x-api-key": "k\r\nx-injected: 1"})
    with pytest.raises(TransportFault, match="UnicodeEncodeError"):
        await pool.request("GET", "/", {"x-api-key": "clé-ü€"})
    assert server.requests == []  # nothing was sent
