"""Reviewers' declared conflicts of interest, looked up by reviewer id whatever kind they act as."""

from __future__ import annotations

from sqlalchemy import select

from thawline.adapters.db.schema import reviewer_conflict
from thawline.domain.review import actor_id
from thawline.services.unit_of_work import UnitOfWork

PREFIX = "reviewer:"


def normalise(reviewer: str) -> str:
    """``reviewer:<id>`` for any ``kind:<id>`` reference."""
    return PREFIX + actor_id(reviewer)


def conflicted(uow: UnitOfWork, reviewer: str, account_id: str) -> bool:
    """True when the reviewer declared (or was declared) linked to the account."""
    row = uow.conn.execute(
        select(reviewer_conflict.c.reviewer).where(
            reviewer_conflict.c.reviewer == normalise(reviewer), reviewer_conflict.c.account_id == account_id
        )
    ).first()
    return row is not None
