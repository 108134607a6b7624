"""Who is really asking, behind a reverse proxy: the client address and whether it used https.

Only the dashboard's login path calls this (the login throttle keys on the client address, and
cookies turn Secure over https). The data plane deliberately runs uvicorn without proxy-header
rewriting: nothing there reads the client address, and parsing headers would cost every call.

X-Forwarded-For and X-Forwarded-Proto are believed only when the TCP peer is one of the
configured trusted proxies (Settings.trusted_proxies); from anyone else they are ignored, since
any client can send them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(items: Iterable[str]) -> tuple[Network, ...]:
    """'10.0.0.5', '192.168.0.0/24', '::1' -> networks; ValueError naming a bad item."""
    out = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(f"trusted proxy {item!r} is not an IP address or network (CIDR)") from None
    return tuple(out)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.7:5123"
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class Proxies:
    def __init__(self, trusted: Iterable[str] = ()) -> None:
        self.networks = parse_networks(trusted)

    def trusts(self, address: str | None) -> bool:
        ip = _ip(address) if address else None
        return ip is not None and any(ip in net for net in self.networks)

    def _header(self, scope: Mapping[str, Any], name: bytes) -> str | None:
        values = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == name]
        return ",".join(values) if values else None

    def client_address(self, scope: Mapping[str, Any]) -> str:
        """The client's address: the TCP peer, or, when the peer is a trusted proxy, the nearest
        address in X-Forwarded-For that is not a trusted proxy itself (read right to left: each
        proxy appends the address it saw, so everything left of the first untrusted hop is the
        client's own claim)."""
        peer = (scope.get("client") or ("unknown", 0))[0]
        if not self.trusts(peer):
            return str(peer)
        forwarded = self._header(scope, b"x-forwarded-for")
        if not forwarded:
            return str(peer)
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        for hop in reversed(hops):
            ip = _ip(hop)
            if ip is None:  # garbage in the chain: stop believing it at this point
                return str(peer)
            if not self.trusts(str(ip)):
                return str(ip)
            peer = str(ip)
        return str(peer)

    def is_https(self, scope: Mapping[str, Any]) -> bool:
        """https directly (a TLS-terminating server), or a trusted proxy's X-Forwarded-Proto
        (its last value: a proxy that appends puts its own view last)."""
        if scope.get("scheme") == "https":
            return True
        peer = (scope.get("client") or ("", 0))[0]
        if not self.trusts(peer):
            return False
        proto = self._header(scope, b"x-forwarded-proto") or ""
        return proto.split(",")[-1].strip().lower() == "https"


def throttle_key(address: str) -> str:
    """The address the login throttle counts: IPv6 clients by their /64 (one host usually owns
    a whole /64, so counting single addresses would give it 2^64 fresh counters)."""
    ip = _ip(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip) if ip is not None else address[:100]
