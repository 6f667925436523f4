"""Rate limits in memory: a sliding window of attempts per key (a username, a client address, an
account), checked before any costly or guessable work is done."""

from __future__ import annotations

import threading
from collections import deque
from datetime import datetime, timedelta


class AttemptLimiter:
    """At most ``limit`` attempts per key in any ``window`` (a sliding window, in memory, thread-safe).

    The console throttles sign-in per username and per client address before any password is hashed;
    the portal throttles entering and its forms per client address and per account.
    """

    def __init__(self, limit: int, window: timedelta = timedelta(minutes=1)) -> None:
        self.limit = limit
        self.window = window
        self._seen: dict[str, deque[datetime]] = {}
        self._lock = threading.Lock()

    def attempt(self, key: str, now: datetime) -> timedelta | None:
        """Count an attempt; None if allowed, else how long until one is (the attempt is not counted)."""
        with self._lock:
            seen = self._seen.setdefault(key, deque())
            while seen and seen[0] <= now - self.window:
                seen.popleft()
            if len(seen) >= self.limit:
                return seen[0] + self.window - now
            seen.append(now)
            if len(self._seen) > 10_000:  # forget idle keys so a flood of names cannot grow memory
                self._seen = {k: v for k, v in self._seen.items() if v and v[-1] > now - self.window}
            return None
