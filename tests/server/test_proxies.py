"""thoth.server.proxies: which forwarded headers the dashboard login believes."""

from __future__ import annotations

import pytest

from thoth.server.proxies import Proxies, throttle_key


def scope(peer: str, **headers: str) -> dict[str, object]:
    return {"client": (peer, 5000), "scheme": "http",
            "headers": [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()]}


def test_forwarded_headers_are_ignored_from_untrusted_peers() -> None:
    p = Proxies(["10.0.0.5"])
    s = scope("203.0.113.9", X_Forwarded_For="1.2.3.4", X_Forwarded_Proto="https")
    assert p.client_address(s) == "203.0.113.9" and not p.is_https(s)
    assert not Proxies().is_https(scope("10.0.0.5", X_Forwarded_Proto="https"))  # none trusted by default


def test_trusted_proxy_chain_is_read_right_to_left() -> None:
    p = Proxies(["10.0.0.0/24", "::1"])
    # the client's own claim (left of the first untrusted hop) is not believed
    s = scope("10.0.0.5", X_Forwarded_For="6.6.6.6, 198.51.100.7, 10.0.0.9", X_Forwarded_Proto="http, https")
    assert p.client_address(s) == "198.51.100.7" and p.is_https(s)
    assert p.client_address(scope("::1", X_Forwarded_For="[2001:db8::7]:443")) == "2001:db8::7"
    assert p.client_address(scope("10.0.0.5", X_Forwarded_For="10.0.0.6")) == "10.0.0.6"  # all trusted
    assert p.client_address(scope("10.0.0.5", X_Forwarded_For="bogus, 198.51.100.7")) == "198.51.100.7"
    assert p.client_address(scope("10.0.0.5", X_Forwarded_For="198.51.100.7, bogus")) == "10.0.0.5"
    assert not p.is_https(scope("10.0.0.5", X_Forwarded_Proto="https, http"))
    assert p.is_https({"client": ("203.0.113.1", 1), "scheme": "https", "headers": []})


def test_throttle_key_groups_ipv6_by_64() -> None:
    assert throttle_key("2001:db8:1:2:aaaa::1") == throttle_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert throttle_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert throttle_key("192.0.2.1") == "192.0.2.1"


def test_bad_proxy_address_is_refused() -> None:
    with pytest.raises(ValueError, match="not-an-ip"):
        Proxies(["not-an-ip"])
