"""Standard Webhooks signatures (https://www.standardwebhooks.com/): sign, and verify as a receiver would.

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; the signature is
HMAC-SHA256 under the secret's bytes (``whsec_`` + base64), sent as ``v1,<base64>``. During a
secret rotation the header carries one signature per valid secret, separated by spaces, so a
receiver holding either secret accepts the message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

PREFIX = "whsec_"
TOLERANCE = timedelta(minutes=5)


class SignatureError(ValueError):
    """A webhook failed verification (bad signature, stale or future timestamp, bad headers)."""


def new_secret() -> str:
    """A fresh 192-bit signing secret in the ``whsec_`` format."""
    return PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def secret_bytes(secret: str) -> bytes:
    """The key bytes of a ``whsec_…`` secret."""
    raw = secret.removeprefix(PREFIX)
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except ValueError as exc:
        raise SignatureError("a webhook secret is 'whsec_' followed by base64") from exc


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(secret_bytes(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every currently valid secret."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in secrets_),
    }


def verify(secret: str, received: dict[str, str], body: bytes, now: datetime) -> None:
    """Check a delivery as a receiver does; raises SignatureError, returns None when genuine."""
    lowered = {k.lower(): v for k, v in received.items()}
    try:
        msg_id = lowered["webhook-id"]
        stamp = int(lowered["webhook-timestamp"])
        offered = lowered["webhook-signature"].split(" ")
    except (KeyError, ValueError) as exc:
        raise SignatureError("missing or malformed webhook-* headers") from exc
    if abs(now.timestamp() - stamp) > TOLERANCE.total_seconds():
        raise SignatureError("timestamp outside the 5-minute tolerance (a replay?)")
    expected = signature(secret, msg_id, stamp, body)
    if not any(hmac.compare_digest(expected, s) for s in offered):
        raise SignatureError("no matching signature")
