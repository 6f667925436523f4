"""The linked-account graph a reviewer sees on a case: the account, the accounts sharing a device, an
IP, a card, a phone or a cash-out counterparty with it, and theirs (two hops), each marked frozen or
not — drawn as a server-rendered SVG (the console runs no script).

The links are :mod:`thawline.services.links`' (the same keys and crowd limits the engine uses), so the
picture shows what the "linked to a frozen account" feature saw. Phone and bank-card keys are blind
indexes and are never shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from xml.sax.saxutils import escape

from sqlalchemy import select

from thawline.adapters.db.schema import freeze as freeze_table
from thawline.domain.freezes import FreezeStatus
from thawline.services import links
from thawline.services.unit_of_work import UnitOfWork

MAX_NODES = 40
SIZE = 520
SHOWN_KEYS = ("device", "ip", "counterparty", "card")


@dataclass(frozen=True, slots=True)
class Node:
    """An account in the picture: how many hops from the case's account, and whether it is frozen."""

    account_id: str
    hop: int
    frozen: bool


@dataclass(frozen=True, slots=True)
class Edge:
    """Two accounts sharing a key of ``kind`` (``label``: the key, or its kind for phones and cards)."""

    a: str
    b: str
    kind: str
    label: str


@dataclass(frozen=True, slots=True)
class LinkGraph:
    """The neighbourhood; ``truncated`` when more accounts were linked than the picture holds."""

    center: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    truncated: bool

    def shared(self) -> list[tuple[str, list[str]]]:
        """Each shared key (its label) with the accounts in the picture that share it, for a list
        that reads "device:… — acc_1, acc_2, acc_3" instead of one line per pair."""
        holders: dict[str, set[str]] = {}
        for e in self.edges:
            holders.setdefault(e.label, set()).update((e.a, e.b))
        return sorted((label, sorted(accounts)) for label, accounts in holders.items())


def neighbourhood(
    uow: UnitOfWork, account_id: str, now: datetime, *, max_nodes: int = MAX_NODES
) -> LinkGraph:
    """The account's links up to two hops, at most ``max_nodes`` accounts (nearest first)."""
    hops = {account_id: 0}
    found: list[links.Link] = []
    frontier = {account_id}
    truncated = False
    for hop in (1, 2):
        step = links.neighbours(uow, frontier, now)
        found.extend(step)
        frontier = set()
        for link in sorted(step, key=lambda lk: (lk.b, lk.kind)):
            if link.b in hops:
                continue
            if len(hops) >= max_nodes:
                truncated = True
                break
            hops[link.b] = hop
            frontier.add(link.b)
    frozen = set(
        uow.conn.execute(
            select(freeze_table.c.account_id).where(
                freeze_table.c.account_id.in_(sorted(hops)),
                freeze_table.c.status == FreezeStatus.ACTIVE.value,
            )
        ).scalars()
    )
    edges: dict[tuple[str, str, str], Edge] = {}
    for link in found:
        if link.a in hops and link.b in hops:
            a, b = sorted((link.a, link.b))
            label = f"{link.kind}:{link.key}" if link.kind in SHOWN_KEYS else link.kind
            edges.setdefault((a, b, link.kind), Edge(a, b, link.kind, label))
    nodes = tuple(Node(a, h, a in frozen) for a, h in sorted(hops.items(), key=lambda kv: (kv[1], kv[0])))
    return LinkGraph(account_id, nodes, tuple(edges.values()), truncated)


def _positions(graph: LinkGraph) -> dict[str, tuple[float, float]]:
    """Rings around the centre: one hop on the inner ring, two hops on the outer."""
    middle = SIZE / 2
    spots = {graph.center: (middle, middle)}
    for hop, radius in ((1, SIZE * 0.24), (2, SIZE * 0.43)):
        ring = [n.account_id for n in graph.nodes if n.hop == hop]
        for i, account_id in enumerate(ring):
            angle = 2 * math.pi * i / max(len(ring), 1) - math.pi / 2 + (0.3 if hop == 2 else 0)
            spots[account_id] = (middle + radius * math.cos(angle), middle + radius * math.sin(angle))
    return spots


def render_svg(graph: LinkGraph, *, title: str, frozen_label: str, link_path: str = "") -> str:
    """The graph as an accessible SVG: a title, one labelled circle per account (frozen in red), one
    line per shared key with its kind as a tooltip. ``link_path`` (e.g. ``/console/accounts/{}``)
    makes each account a link."""
    spots = _positions(graph)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {SIZE} {SIZE}" role="img" '
        f'aria-labelledby="graph-title" class="link-graph">',
        f'<title id="graph-title">{escape(title)}</title>',
    ]
    for e in graph.edges:
        (x1, y1), (x2, y2) = spots[e.a], spots[e.b]
        out.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" class="edge edge-{e.kind}">'
            f"<title>{escape(e.a)} — {escape(e.b)}: {escape(e.label)}</title></line>"
        )
    for n in graph.nodes:
        x, y = spots[n.account_id]
        classes = "node" + (" frozen" if n.frozen else "") + (" center" if n.hop == 0 else "")
        label = escape(n.account_id) + (f" ({escape(frozen_label)})" if n.frozen else "")
        circle = (
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{14 if n.hop == 0 else 9}"><title>{label}</title></circle>'
            f'<text x="{x:.1f}" y="{y + 24:.1f}" text-anchor="middle">{escape(n.account_id)}</text>'
        )
        if link_path:
            href = escape(link_path.format(n.account_id), {'"': "&quot;"})
            circle = f'<a href="{href}">{circle}</a>'
        out.append(
            f'<g class="{classes}" data-account="{escape(n.account_id)}" data-hop="{n.hop}">{circle}</g>'
        )
    out.append("</svg>")
    return "".join(out)
