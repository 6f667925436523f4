"""Sending SMS: the carrier interface, an HTTP carrier, and a local carrier for development and tests.

A deployment either points the HTTP carrier at its SMS gateway or plugs its carrier's client in
behind :class:`SmsSender`. The HTTP carrier posts JSON signed like a Standard Webhook, so the
gateway can check who sent it and drop a resend by its idempotency key. The local carrier
appends each message to a JSON Lines file (mode 0600) so a developer or a test can read the code
the holder would have received. It never writes the full phone number: the account id and a
masked number identify the recipient.
"""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import httpx
import orjson

from thawline.adapters.delivery import DeliveryError
from thawline.domain import webhooks


@dataclass(frozen=True)
class SmsMessage:
    """One message handed to the carrier."""

    id: str
    account_id: str
    to_masked: str
    text: str
    at: str
    idempotency_key: str | None = None


class SmsSender(Protocol):
    """What Thawline needs from an SMS carrier."""

    def send(self, *, account_id: str, to_e164: str, text: str, idempotency_key: str | None = None) -> str:
        """Hand one message to the carrier; returns the carrier's message id (DeliveryError if refused)."""
        ...


def mask_phone(e164: str) -> str:
    """+8613800138000 → +86138****8000: enough to recognise, not enough to use."""
    return e164[:-8] + "****" + e164[-4:] if len(e164) > 8 else "****"


class LocalSmsOutbox:
    """The development carrier: messages go to a local file instead of a phone."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def send(self, *, account_id: str, to_e164: str, text: str, idempotency_key: str | None = None) -> str:
        """Append the message to the outbox file."""
        message = SmsMessage(
            id="sms_" + secrets.token_hex(8),
            account_id=account_id,
            to_masked=mask_phone(to_e164),
            text=text,
            at=datetime.now(UTC).isoformat(),
            idempotency_key=idempotency_key,
        )
        line = orjson.dumps(asdict(message)) + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        return message.id

    def messages(self, account_id: str | None = None) -> list[SmsMessage]:
        """Everything sent so far (to one account if given), oldest first."""
        if not self.path.exists():
            return []
        out = [SmsMessage(**orjson.loads(line)) for line in self.path.read_bytes().splitlines() if line]
        return [m for m in out if account_id is None or m.account_id == account_id]


class HttpSmsSender:
    """An SMS gateway reached over HTTP: ``POST url`` with ``{"to", "text", "idempotency_key"}``.

    The request carries Standard Webhooks headers signed with the shared secret (``whsec_…``);
    ``webhook-id`` is the idempotency key. A 2xx reply with ``{"id": …}`` is the receipt.
    """

    def __init__(self, url: str, secret: str, *, timeout: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("THAWLINE_SMS_HTTP_URL must be an http(s) URL")
        webhooks.secret_bytes(secret)  # fail at start, not at the first message
        self.url = url
        self.secret = secret
        self._client = httpx.Client(timeout=timeout)

    def send(self, *, account_id: str, to_e164: str, text: str, idempotency_key: str | None = None) -> str:
        """Post one message; 4xx other than 408/429 is permanent, everything else is retried."""
        key = idempotency_key or "sms_" + secrets.token_hex(8)
        body = orjson.dumps({"to": to_e164, "text": text, "idempotency_key": key, "account_id": account_id})
        stamp = int(datetime.now(UTC).timestamp())
        headers = webhooks.headers([self.secret], key, stamp, body)
        headers["content-type"] = "application/json"
        try:
            reply = self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"SMS gateway unreachable: {exc.__class__.__name__}") from exc
        if not reply.is_success:
            permanent = 400 <= reply.status_code < 500 and reply.status_code not in (408, 429)
            raise DeliveryError(
                f"SMS gateway answered {reply.status_code}", status=reply.status_code, permanent=permanent
            )
        try:
            receipt = str(reply.json()["id"])
        except (ValueError, KeyError, TypeError):
            receipt = key
        return receipt

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()
