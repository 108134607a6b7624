"""Mutual TLS: the client certificate and the CA bundle reach the server on every route.

A real loopback TLS server that refuses any client without a certificate signed by the test's
own CA (made here with `cryptography`), reached by the SDK's own clients and by httpx through a
CONNECT proxy, sync and async; the settings come from ThothConfig fields or from THOTH_CLIENT_CERT,
THOTH_CLIENT_KEY and THOTH_CA_BUNDLE.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from thoth import ThothPolicyViolation
from thoth.http import Endpoint, TransportFault, release
from thoth.instrumentor import build_tracer
from thoth.tls import TlsFiles

from .raw_http_server import RawHttpServer, json_answer
from .routes import PROXY_VARIABLES

ALLOW = b'{"decision": "ALLOW", "reason": "ok"}'
PROXIED_NAME = "thoth-mtls.proxied.test"  # a name only the proxy resolves


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # a client certificate the server's CA did not sign
    stranger_key: Path


def _write(path: Path, cert: Any, key: Any) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization

    key_path = path.with_suffix(".key")
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return path, key_path


def _issue(common_name: str, issuer: Any, issuer_key: Any, *, ca: bool = False, client: bool = False,
           names: tuple[str, ...] = ()) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.subject if issuer is not None else subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
               .not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), *(x509.DNSName(n) for n in names)]), critical=False)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key if issuer_key is not None else key, hashes.SHA256()), key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    tmp = tmp_path_factory.mktemp("pki")
    ca, ca_key = _issue("Thoth test CA", None, None, ca=True)
    other_ca, other_key = _issue("Another CA", None, None, ca=True)
    ca_path, _ = _write(tmp / "ca.pem", ca, ca_key)
    server_cert, server_key = _write(tmp / "server.pem", *_issue("127.0.0.1", ca, ca_key, names=(PROXIED_NAME,)))
    client_cert, client_key = _write(tmp / "client.pem", *_issue("agent-7", ca, ca_key, client=True))
    stranger_cert, stranger_key = _write(tmp / "stranger.pem", *_issue("agent-x", other_ca, other_key, client=True))
    return Pki(ca_path, server_cert, server_key, client_cert, client_key, stranger_cert, stranger_key)


class MtlsServer(RawHttpServer):
    """Answers ALLOW to clients whose certificate the CA signed; records who they were."""

    def __init__(self, pki: Pki) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server_cert, pki.server_key)
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca)
        self.clients: list[str] = []
        super().__init__(lambda head: (json_answer(ALLOW), False, 0.0), ssl_context=context)

    def _exchange(self, conn: socket.socket) -> None:
        peer = conn.getpeercert() if isinstance(conn, ssl.SSLSocket) else None
        if peer:
            self.clients.extend(value for rdn in peer["subject"] for key, value in rdn if key == "commonName")
        super()._exchange(conn)


class ConnectProxy:
    """An HTTP proxy that opens CONNECT tunnels to one port on loopback, whatever the name asked."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.tunnels: list[bytes] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self._sock.accept()
                threading.Thread(target=self._tunnel, args=(conn,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = client.recv(4096)
            if not data:
                client.close()
                return
            head += data
        self.tunnels.append(head.split(b"\r\n", 1)[0])
        upstream = socket.create_connection(("127.0.0.1", self.port))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        _pump(client, upstream)

    def close(self) -> None:
        self._sock.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for sock in (source, sink):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def server(pki: Pki) -> Iterator[MtlsServer]:
    mtls = MtlsServer(pki)
    yield mtls
    mtls.close()


@pytest.fixture(autouse=True)
def _no_tls_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*PROXY_VARIABLES, "THOTH_CLIENT_CERT", "THOTH_CLIENT_KEY", "THOTH_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=["own", "proxy"])
def url(request: pytest.FixtureRequest, server: MtlsServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The server's URL on the route: direct (the SDK's own clients), or through a CONNECT proxy (httpx)."""
    if request.param == "own":
        url = server.url
        yield url
    else:
        proxy = ConnectProxy(server.port)
        monkeypatch.setenv("https_proxy", proxy.url)
        url = f"https://{PROXIED_NAME}:8443"
        yield url
        assert proxy.tunnels and proxy.tunnels[0].startswith(f"CONNECT {PROXIED_NAME}:8443".encode())
        proxy.close()
    assert Endpoint(url, "k").fast_path is (request.param == "own")
    release(url)


async def _send(endpoint: Endpoint, mode: str) -> Any:
    if mode == "sync":
        return endpoint.send("POST", "/v1/enforce", b"{}", timeout=5.0)
    return await endpoint.asend("POST", "/v1/enforce", b"{}", timeout=5.0)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_the_client_certificate_is_presented_on_every_route(pki: Pki, server: MtlsServer, url: str,
                                                                   mode: str) -> None:
    endpoint = Endpoint(url, None, TlsFiles(str(pki.client_cert), str(pki.client_key), str(pki.ca)))
    for _ in range(2):
        assert (await _send(endpoint, mode)).json()["decision"] == "ALLOW"
    assert server.clients and set(server.clients) == {"agent-7"}
    endpoint.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_without_a_certificate_the_server_refuses(pki: Pki, server: MtlsServer, url: str, mode: str) -> None:
    for tls in (TlsFiles(ca_bundle=str(pki.ca)),  # no client certificate
                TlsFiles(str(pki.stranger_cert), str(pki.stranger_key), str(pki.ca))):  # one from another CA
        with pytest.raises(TransportFault):
            await _send(Endpoint(url, None, tls), mode)
    assert server.clients == []


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_without_the_ca_bundle_the_server_is_not_trusted(pki: Pki, url: str, mode: str) -> None:
    endpoint = Endpoint(url, None, TlsFiles(str(pki.client_cert), str(pki.client_key)))
    with pytest.raises(TransportFault, match="CERTIFICATE_VERIFY_FAILED"):
        await _send(endpoint, mode)


@pytest.mark.parametrize("source", ["config", "env"])
async def test_the_settings_reach_a_governed_call(pki: Pki, server: MtlsServer, url: str, source: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    files = {"client_cert": str(pki.client_cert), "client_key": str(pki.client_key), "ca_bundle": str(pki.ca)}
    settings: dict[str, Any] = {"agent_id": "a", "tenant_id": "t", "approved_scope": ["search"], "api_url": url,
                                "api_key": "k", "fail_closed": True, "enforcement": "block"}
    refused = build_tracer(**settings, ca_bundle=str(pki.ca))  # trusts the server, shows no certificate
    with pytest.raises(ThothPolicyViolation):
        refused.wrap_tool("search", lambda q: q)("x")
    if source == "config":
        settings.update(files)
    else:
        for name, value in files.items():
            monkeypatch.setenv(f"THOTH_{name.upper()}", value)
    tracer = build_tracer(**settings)
    assert tracer.wrap_tool("search", lambda q: q.upper())("x") == "X"

    async def asearch(q: str) -> str:
        return q.upper()

    assert await tracer.wrap_tool("search", asearch)("y") == "Y"
    assert "agent-7" in server.clients


def test_a_certificate_that_cannot_be_loaded_is_an_error_up_front(pki: Pki, tmp_path: Path) -> None:
    settings: dict[str, Any] = {"agent_id": "a", "tenant_id": "t", "api_url": "https://thoth.example:8443"}
    with pytest.raises(ValueError, match="client_cert"):
        build_tracer(**settings, client_cert=str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError, match="client_cert"):  # a key that is not the certificate's
        build_tracer(**settings, client_cert=str(pki.client_cert), client_key=str(pki.stranger_key))
    with pytest.raises(ValueError, match="without"):
        build_tracer(**settings, client_key=str(pki.client_key))
    with pytest.raises(ValueError, match="CA bundle"):
        build_tracer(**settings, ca_bundle=str(tmp_path / "missing-ca.pem"))
