"""An account's recent activity as the console's case page shows it: the events integrators sent
(logins, payments, profile changes — personal values already hashed at ingestion) with what the
engine decided, and the rules that fired on them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select

from thawline.adapters.db.schema import event, risk_decision
from thawline.services.unit_of_work import UnitOfWork

# What a reviewer needs from each event type at a glance (the rest is in the API's event log).
GLANCE = (
    "amount",
    "currency",
    "direction",
    "counterparty",
    "channel",
    "ip",
    "device_id",
    "success",
    "field",
    "level",
    "action",
)


@dataclass(frozen=True, slots=True)
class Activity:
    """One event: when, what, the engine's outcome, the fields worth a glance, and the rules that fired."""

    event_id: str
    type: str
    occurred_at: datetime
    outcome: str
    glance: dict[str, Any]
    hits: tuple[tuple[str, str], ...]  # (rule id, what was applied)


def recent(uow: UnitOfWork, account_id: str, *, limit: int = 50) -> list[Activity]:
    """The account's newest ``limit`` events (event time, newest first) with the rules that fired."""
    rows = uow.conn.execute(
        select(event.c.id, event.c.type, event.c.occurred_at, event.c.outcome, event.c.payload)
        .where(event.c.account_id == account_id)
        .order_by(event.c.occurred_at.desc(), event.c.id.desc())
        .limit(limit)
    ).all()
    hits: dict[str, list[tuple[str, str]]] = {}
    if rows:
        found = uow.conn.execute(
            select(risk_decision.c.event_id, risk_decision.c.rule_id, risk_decision.c.applied).where(
                risk_decision.c.event_id.in_([r.id for r in rows])
            )
        )
        for event_id, rule_id, applied in found:
            hits.setdefault(event_id, []).append((rule_id, applied))
    out = []
    for r in rows:
        payload = orjson.loads(r.payload)
        glance = {k: payload[k] for k in GLANCE if payload.get(k) not in (None, "")}
        out.append(
            Activity(r.id, r.type, r.occurred_at, r.outcome, glance, tuple(sorted(hits.get(r.id, []))))
        )
    return out
