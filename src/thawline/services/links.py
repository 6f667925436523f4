"""Linked accounts: a graph of accounts that share a device, an IP (within a day), a card, a phone or a
personal counterparty, and who within two hops is frozen.

Edges are not stored; keys are. ``account_key`` holds, per account, every device id, IP address,
card reference, counterparty and the vault's blind index of its phone and bank cards. Two accounts
are linked when they share a key. Keys shared by more accounts than ``MAX_SHARED`` allows for their
kind (a big merchant, a carrier-grade NAT address) link nothing: they describe a crowd, not a ring.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, tuple_

from thawline.adapters.db.schema import account_key
from thawline.adapters.db.schema import freeze as freeze_table
from thawline.adapters.db.upsert import upsert_keys
from thawline.domain.freezes import FreezeStatus
from thawline.services.unit_of_work import UnitOfWork

# A key shared by more accounts than this describes a crowd, not a ring (a shop's counterparty id, a
# carrier-grade NAT address). Mule rings share a device, an IP or a cash-out account among a handful.
MAX_SHARED = {"device": 10, "ip": 10, "card": 5, "counterparty": 5, "phone": 5, "bank_card": 5}
IP_WINDOW = timedelta(hours=24)
KINDS = ("device", "ip", "card", "counterparty", "phone", "bank_card")


@dataclass(frozen=True, slots=True)
class Link:
    """One step of a path: ``a`` and ``b`` share ``kind`` (the key itself is not shown for phones/cards)."""

    a: str
    b: str
    kind: str
    key: str

    def as_json(self) -> dict[str, str]:
        """JSON form."""
        shown = self.key if self.kind in ("device", "ip", "counterparty", "card") else self.key[:12] + "…"
        return {"from": self.a, "to": self.b, "via": f"{self.kind}:{shown}"}


def event_keys(e: Any) -> list[tuple[str, str]]:
    """The linkable keys an event carries."""
    keys = []
    device = getattr(e, "device_id", None) if e.type in ("login", "transaction", "device_binding") else None
    if device:
        keys.append(("device", device))
    ip = getattr(e, "ip", None) if e.type in ("login", "transaction") else None
    if ip:
        keys.append(("ip", ip))
    if e.type == "transaction":
        if e.card_ref:
            keys.append(("card", e.card_ref))
        if e.counterparty:
            keys.append(("counterparty", e.counterparty))
    return keys


def record(uow: UnitOfWork, rows: Iterable[tuple[str, str, str, datetime]]) -> None:
    """Remember (kind, key, account, seen at) — first and last sighting per account and key."""
    latest: dict[tuple[str, str, str], datetime] = {}
    for kind, key, account_id, at in rows:
        k = (kind, key[:128], account_id)
        if k not in latest or at > latest[k]:
            latest[k] = at
    if latest:
        upsert_keys(uow.conn, [(k, v, a, at) for (k, v, a), at in latest.items()])


def _neighbours(uow: UnitOfWork, accounts: set[str], now: datetime) -> list[Link]:
    """Accounts sharing a (not too popular) key with ``accounts``: two indexed lookups, no joins."""
    if not accounts:
        return []
    since = now - IP_WINDOW
    c = account_key.c
    mine: set[tuple[str, str]] = set()
    for chunk in _chunks(sorted(accounts), 500):
        rows = uow.conn.execute(select(c.kind, c.key, c.last_seen).where(c.account_id.in_(chunk)))
        mine.update((kind, key) for kind, key, seen in rows if kind != "ip" or seen >= since)
    holders: dict[tuple[str, str], list[str]] = {}
    for chunk in _chunks(sorted(mine), 300):
        found = uow.conn.execute(
            select(c.kind, c.key, c.account_id, c.last_seen).where(tuple_(c.kind, c.key).in_(chunk))
        )
        for kind, key, account_id, seen in found:
            if kind != "ip" or seen >= since:
                holders.setdefault((kind, key), []).append(account_id)
    out: list[Link] = []
    for (kind, key), members in holders.items():
        if len(members) < 2 or len(members) > MAX_SHARED.get(kind, 5):
            continue
        for a in members:
            if a in accounts:
                out.extend(Link(a, b, kind, key) for b in members if b != a)
    return out


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def risky_links(uow: UnitOfWork, accounts: set[str], now: datetime) -> dict[str, list[list[Link]]]:
    """For each account, the paths (one or two links) to frozen accounts within two hops."""
    first = _neighbours(uow, accounts, now)
    hop1: dict[str, list[Link]] = {}
    for link in first:
        hop1.setdefault(link.a, []).append(link)
    second = _neighbours(uow, {link.b for link in first} - accounts, now)
    via: dict[str, list[Link]] = {}
    for link in second:
        via.setdefault(link.a, []).append(link)
    reachable = {link.b for link in first} | {link.b for link in second}
    if not reachable:
        return {}
    frozen = set(
        uow.conn.execute(
            select(freeze_table.c.account_id).where(
                freeze_table.c.account_id.in_(sorted(reachable)),
                freeze_table.c.status == FreezeStatus.ACTIVE.value,
            )
        ).scalars()
    )
    out: dict[str, list[list[Link]]] = {}
    for start, links in hop1.items():
        paths: dict[str, list[Link]] = {}
        for link in links:
            if link.b in frozen and link.b != start:
                paths.setdefault(link.b, [link])
            for onward in via.get(link.b, []):
                if onward.b in frozen and onward.b != start and onward.b not in paths:
                    paths[onward.b] = [link, onward]
        if paths:
            out[start] = list(paths.values())
    return out
