"""Linked accounts: a graph of accounts that share a device, an IP (within a day), a card, a phone or a
personal counterparty, and who within two hops is frozen.

Edges are not stored; keys are. ``account_key`` holds, per account, every device id, IP address,
card reference, counterparty and the vault's blind index of its phone and bank cards. Two accounts
are linked when they share a key. Keys shared by more than ``MAX_SHARED`` accounts (a big
merchant, a carrier-grade NAT address) link nothing: they describe a crowd, not a ring.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select

from thawline.adapters.db.schema import account_key
from thawline.adapters.db.schema import freeze as freeze_table
from thawline.adapters.db.upsert import upsert_keys
from thawline.domain.freezes import FreezeStatus
from thawline.services.unit_of_work import UnitOfWork

MAX_SHARED = 20
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
    if not accounts:
        return []
    k1, k2 = account_key.alias("k1"), account_key.alias("k2")
    since = now - IP_WINDOW
    shared = (
        select(account_key.c.kind, account_key.c.key)
        .group_by(account_key.c.kind, account_key.c.key)
        .having(func.count() <= MAX_SHARED)
        .where(
            account_key.c.key.in_(
                select(account_key.c.key).where(account_key.c.account_id.in_(sorted(accounts)))
            )
        )
        .subquery()
    )
    query = (
        select(k1.c.account_id, k2.c.account_id, k1.c.kind, k1.c.key)
        .join(k2, and_(k1.c.kind == k2.c.kind, k1.c.key == k2.c.key, k1.c.account_id != k2.c.account_id))
        .join(shared, and_(shared.c.kind == k1.c.kind, shared.c.key == k1.c.key))
        .where(
            k1.c.account_id.in_(sorted(accounts)),
            or_(k1.c.kind != "ip", and_(k1.c.last_seen >= since, k2.c.last_seen >= since)),
        )
    )
    return [Link(a, b, kind, key) for a, b, kind, key in uow.conn.execute(query)]


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
