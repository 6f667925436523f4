"""One-time SMS codes: six digits, stored as a keyed hash, five minutes, five tries, throttled resends."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

DIGITS = 6
LIFETIME = timedelta(minutes=5)
MAX_ATTEMPTS = 5
RESEND_AFTER = timedelta(seconds=60)
SENDS_PER_WINDOW = 5
SEND_WINDOW = timedelta(hours=1)


def new_code() -> str:
    """A uniformly random six-digit code."""
    return f"{secrets.randbelow(10**DIGITS):0{DIGITS}d}"


def code_hash(key: bytes, scope: str, code: str) -> bytes:
    """Keyed hash of a code bound to its verification: a million codes cannot be tried offline."""
    return hmac.new(key, scope.encode() + b"\x00" + code.encode(), hashlib.sha256).digest()


def matches(key: bytes, scope: str, code: str, stored: bytes) -> bool:
    """Constant-time comparison of a presented code with the stored hash."""
    return hmac.compare_digest(code_hash(key, scope, code), stored)


def resend_wait(
    now: datetime, last_sent: datetime | None, window_start: datetime | None, sends_in_window: int
) -> timedelta | None:
    """How long the holder must wait before another code may be sent, or None if it may be sent now."""
    if last_sent is not None and now < last_sent + RESEND_AFTER:
        return last_sent + RESEND_AFTER - now
    if window_start is not None and now < window_start + SEND_WINDOW and sends_in_window >= SENDS_PER_WINDOW:
        return window_start + SEND_WINDOW - now
    return None
