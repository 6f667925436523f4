"""Sending SMS: the carrier interface and a local carrier for development and tests.

A real deployment plugs in its carrier's client behind :class:`SmsSender`. The local carrier
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

import orjson


@dataclass(frozen=True)
class SmsMessage:
    """One message handed to the carrier."""

    id: str
    account_id: str
    to_masked: str
    text: str
    at: str


class SmsSender(Protocol):
    """What Thawline needs from an SMS carrier."""

    def send(self, *, account_id: str, to_e164: str, text: str) -> str:
        """Hand one message to the carrier; returns the carrier's message id."""
        ...


def mask_phone(e164: str) -> str:
    """+8613800138000 → +86138****8000: enough to recognise, not enough to use."""
    return e164[:-8] + "****" + e164[-4:] if len(e164) > 8 else "****"


class LocalSmsOutbox:
    """The development carrier: messages go to a local file instead of a phone."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def send(self, *, account_id: str, to_e164: str, text: str) -> str:
        """Append the message to the outbox file."""
        message = SmsMessage(
            id="sms_" + secrets.token_hex(8),
            account_id=account_id,
            to_masked=mask_phone(to_e164),
            text=text,
            at=datetime.now(UTC).isoformat(),
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
