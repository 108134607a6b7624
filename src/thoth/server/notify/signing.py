"""Request signatures: Slack's v0 scheme (inbound) and Thoth's webhook scheme (both ways).

Thoth webhook scheme, modelled on Slack's and Stripe's:

    X-Thoth-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

A receiver recomputes the HMAC over the exact bytes it received, compares in constant time and
refuses timestamps more than five minutes off. Callbacks to Thoth use the same header.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from slack_sdk.signature import Clock, SignatureVerifier

SIGNATURE_HEADER = "X-Thoth-Signature"


class SignatureError(Exception):
    """A signed request that must be refused; `message` says why (never which byte differed)."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def sign_webhook(secret: str, body: bytes, ts: int | None = None) -> str:
    ts = int(time.time()) if ts is None else ts
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def _fresh(ts: int, max_age: int, now: float | None) -> None:
    if abs((time.time() if now is None else now) - ts) > max_age:
        raise SignatureError(f"stale request: timestamp is more than {max_age} seconds from the server's clock")


def verify_webhook(secret: str, header: str | None, body: bytes, max_age: int = 300,
                   now: float | None = None) -> str:
    """Check an X-Thoth-Signature header; returns the signature (the replay nonce)."""
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header: expected t=<unix>,v1=<hex>") from None
    _fresh(ts, max_age, now)
    expected = sign_webhook(secret, body, ts).split("v1=", 1)[1]
    if not hmac.compare_digest(expected, given):
        raise SignatureError("invalid signature")
    return given


def verify_slack(signing_secret: str, timestamp: str | None, signature: str | None, body: bytes,
                 max_age: int = 300, now: float | None = None) -> str:
    """Slack's v0 signature: HMAC-SHA256(signing secret, "v0:<timestamp>:<body>"); returns the signature."""
    if not signing_secret:
        raise SignatureError("Slack interactivity is not configured (slack.signing_secret)", 404)
    if not timestamp or not signature:
        raise SignatureError("missing X-Slack-Request-Timestamp or X-Slack-Signature header")
    try:
        ts = int(timestamp)
    except ValueError:
        raise SignatureError("malformed X-Slack-Request-Timestamp header") from None
    _fresh(ts, max_age, now)
    # slack-sdk's own verifier (constant-time compare); the freshness check above gives a clearer error.
    verifier = SignatureVerifier(signing_secret, clock=_FixedClock(ts))
    if not verifier.is_valid(body, timestamp, signature):
        raise SignatureError("invalid Slack signature")
    return signature


class _FixedClock(Clock):
    """slack-sdk checks age with its own clock; we already did, so give it the request's time."""

    def __init__(self, ts: int) -> None:
        self.ts = ts

    def now(self) -> float:
        return float(self.ts)
