"""Partitioning by account: a stable hash, the same in every process, language and release.

The broker routes each event to the partition of its account, and exactly one worker owns a
partition at a time, so one account's events are evaluated by one engine, in order. The hash is
the first 8 bytes of SHA-256 of the account id (big-endian) modulo the partition count: Python's
``hash()`` is salted per process and would scatter an account across partitions.
"""

from __future__ import annotations

import hashlib


def partition_of(account_id: str, partitions: int) -> int:
    """The partition (0 … partitions−1) that owns ``account_id``."""
    if partitions < 1:
        raise ValueError("partitions must be at least 1")
    digest = hashlib.sha256(account_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % partitions
