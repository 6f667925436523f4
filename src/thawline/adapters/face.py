"""Face verification: the provider interface, a local provider, and the signed callback.

Face matching is done by an outside provider. Thawline starts a session with the provider, the
holder completes it on the provider's page, and the provider calls back
``POST /v1/callbacks/face`` with the result. The callback is authenticated by
``X-Thawline-Signature: v1=<hex HMAC-SHA256(key, "<timestamp>.<body>")>`` and
``X-Thawline-Timestamp: <unix seconds>``; a timestamp more than five minutes away from now is
refused, so a captured callback cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Protocol

import orjson

SIGNATURE_HEADER = "X-Thawline-Signature"
TIMESTAMP_HEADER = "X-Thawline-Timestamp"
TOLERANCE_SECONDS = 300
_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # ASCII digits only: "²" or 400 digits are refused, not crashed on


@dataclass(frozen=True, slots=True)
class FaceSession:
    """A started session: where the holder goes to show their face."""

    session_id: str
    url: str


class FaceProvider(Protocol):
    """What Thawline needs from a face-verification provider."""

    def start(self, *, session_id: str, account_id: str) -> FaceSession:
        """Open a session for the holder of ``account_id``; the result arrives by callback."""
        ...


class LocalFaceProvider:
    """The development provider: the session page is local and the result is posted by hand.

    ``thawline dev face-result SESSION --pass`` (or a test) builds the callback with
    :func:`callback_request` and posts it, signed with the same key a real provider would hold.
    """

    def __init__(self, base_url: str = "http://127.0.0.1:8000") -> None:
        self.base_url = base_url.rstrip("/")

    def start(self, *, session_id: str, account_id: str) -> FaceSession:
        """Nothing to call: the session exists once Thawline has recorded it."""
        del account_id  # a real provider uses it to fetch the reference photo
        return FaceSession(session_id, f"{self.base_url}/dev/face/{session_id}")


def sign(key: bytes, timestamp: int, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def check_signature(key: bytes, *, signature: str, timestamp: str, body: bytes, now: float) -> str | None:
    """None when the callback is authentic and fresh, else why it is refused (never an exception)."""
    if not _TIMESTAMP.fullmatch(timestamp):
        return "missing or malformed timestamp"
    sent = int(timestamp)
    if abs(now - sent) > TOLERANCE_SECONDS:
        return "timestamp outside the five-minute window"
    presented = signature.strip()
    if not presented.isascii():
        return "signature does not match"
    if not hmac.compare_digest(sign(key, sent, body).encode(), presented.encode()):
        return "signature does not match"
    return None


def callback_request(
    key: bytes, *, session_id: str, passed: bool, score: float, timestamp: int, provider_ref: str = "local"
) -> tuple[bytes, dict[str, str]]:
    """The body and headers a provider sends with a result."""
    body = orjson.dumps(
        {"session_id": session_id, "passed": passed, "score": score, "provider_ref": provider_ref}
    )
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(key, timestamp, body),
    }
    return body, headers
