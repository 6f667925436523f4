"""Linked accounts: a graph of accounts that share a device, an IP (within a day), a card, a phone or a
cash-out counterparty, and who within two hops is frozen.

Edges are not stored; keys are. ``account_key`` holds, per account, every device id, IP address,
card reference, counterparty and the vault's blind index of its phone and bank cards. Two accounts
are linked when they share a key. Keys shared by more accounts than ``MAX_SHARED`` allows for their
kind (a big merchant, a carrier-grade NAT address) link nothing: they describe a crowd, not a ring.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
SKIP_WITHIN = timedelta(hours=1)
CASH_OUT_AMOUNT = 1000  # a counterparty links accounts only through payments of at least this much
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
        # Everyday purchases share merchants with half the city; a ring shares where the money goes.
        if e.counterparty and e.direction == "debit" and e.amount >= CASH_OUT_AMOUNT:
            keys.append(("counterparty", e.counterparty))
    return keys


def record(
    uow: UnitOfWork,
    rows: Iterable[tuple[str, str, str, datetime]],
    recent: dict[tuple[str, str, str], datetime] | None = None,
) -> None:
    """Remember (kind, key, account, seen at) — first and last sighting per account and key.

    ``recent`` (the caller's memory of what it wrote) skips keys whose last sighting was stored less
    than an hour before: the IP window does not need finer time, and most keys repeat all day.
    """
    latest: dict[tuple[str, str, str], datetime] = {}
    for kind, key, account_id, at in rows:
        k = (kind, key[:128], account_id)
        if k not in latest or at > latest[k]:
            latest[k] = at
    if recent is not None:
        latest = {k: at for k, at in latest.items() if k not in recent or at - recent[k] >= SKIP_WITHIN}
        if len(recent) > 1_000_000:
            recent.clear()
        # In UTC: a datetime parsed with a zone carries a zone object of its own, which the
        # garbage collector would then walk for every remembered key.
        recent.update((k, at.astimezone(UTC)) for k, at in latest.items())
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


def risky_links(uow: UnitOfWork, accounts: set[str], now: datetime) -> dict[str, list[list[Link]]]:  # noqa: PLR0912
    """For each of ``accounts``, the paths (one or two links) to frozen accounts within two hops.

    The search starts from the frozen accounts (few) rather than from the accounts asking (many).
    """
    if not accounts:
        return {}
    frozen = set(
        uow.conn.execute(
            select(freeze_table.c.account_id)
            .where(freeze_table.c.status == FreezeStatus.ACTIVE.value)
            .distinct()
        ).scalars()
    )
    if not frozen:
        return {}
    first = _neighbours(uow, frozen, now)  # frozen F — Y
    toward: dict[str, list[Link]] = {}  # Y -> links Y→F
    for link in first:
        if link.b not in frozen:
            toward.setdefault(link.b, []).append(Link(link.b, link.a, link.kind, link.key))
    second = _neighbours(uow, set(toward), now)  # Y — X
    out: dict[str, dict[str, list[Link]]] = {}
    for y, back in toward.items():
        if y in accounts:
            for step in back:
                out.setdefault(y, {}).setdefault(step.b, [step])
    for link in second:
        x, y = link.b, link.a
        if x not in accounts or x in frozen:
            continue
        for step in toward.get(y, []):
            if step.b != x:
                out.setdefault(x, {}).setdefault(step.b, [Link(x, y, link.kind, link.key), step])
    for a in accounts & frozen:  # a frozen account paying: its frozen neighbours, one hop
        for link in first:
            if link.a == a and link.b in frozen:
                out.setdefault(a, {}).setdefault(link.b, [link])
    return {a: list(paths.values()) for a, paths in out.items()}


def neighbours(uow: UnitOfWork, accounts: set[str], now: datetime) -> list[Link]:
    """The direct links of ``accounts`` (public form of the engine's lookup, for the console's graph)."""
    return _neighbours(uow, accounts, now)
