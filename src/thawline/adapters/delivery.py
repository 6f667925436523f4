"""What a channel reports when a delivery fails, so the dispatcher can retry or give up."""

from __future__ import annotations


class DeliveryError(Exception):
    """A delivery attempt failed; ``permanent`` means retrying cannot help (e.g. 410 Gone, 550)."""

    def __init__(self, reason: str, *, status: int | None = None, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.permanent = permanent
