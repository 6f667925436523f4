"""Timers that survive restarts: every deadline is a stored, indexed column, and a scan acts on it.

``run_due`` finds what is due (first-response deadlines, idle appeals, freeze expiries and
re-review dates, probation ends) and handles each item in its own unit of work with a
conditional update. Two schedulers running at once (``thawline serve`` and ``thawline worker``,
or two workers) may both see an item; exactly one changes it and records it, the other's
update matches nothing and it moves on. A crash between items loses nothing: the deadline is
still in the table and the next scan finds it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, select, update

from thawline.adapters.db.schema import account as account_table
from thawline.adapters.db.schema import appeal as appeal_table
from thawline.adapters.db.schema import freeze as freeze_table
from thawline.adapters.db.schema import probation
from thawline.domain.appeals import EDITABLE, QUEUED, AppealStatus
from thawline.domain.errors import ConflictError
from thawline.domain.freezes import FreezeStatus
from thawline.oplog.entry import Actor, ActorKind, LogRecord, Subject
from thawline.services import appeals, freezes, partitioning, verification
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

SCHEDULER = Actor(ActorKind.SCHEDULER, "timers")
BATCH = 500
logger = logging.getLogger("thawline.scheduler")


def _due(runtime: Runtime, query: Any) -> list[Any]:
    with UnitOfWork(runtime, read_only=True) as uow:
        return list(uow.conn.execute(query.limit(BATCH)).scalars())


def _each(runtime: Runtime, ids: list[Any], handle: Callable[[UnitOfWork, Any], bool]) -> int:
    done = 0
    for item in ids:
        with UnitOfWork(runtime) as uow:
            try:
                if not handle(uow, item):
                    continue
            except ConflictError:
                continue  # another scheduler (or a person) got there first
            uow.commit()
            done += 1
    return done


def _breach(uow: UnitOfWork, appeal_id: str) -> bool:
    current = appeals.get(uow, appeal_id)
    now = uow.runtime.clock.now()
    due = current.first_response_due
    if (
        current.status not in QUEUED
        or current.first_responded_at is not None
        or current.escalated_at is not None
        or due is None
        or due > now
    ):
        return False
    after = replace(current, escalated_at=now)
    appeals.save(uow, current, after)
    uow.record(
        appeals.record(
            "appeal.sla_breached",
            after,
            SCHEDULER,
            current,
            {"first_response_due": due.isoformat(), "escalated": True},
        )
    )
    return True


def _lapse(uow: UnitOfWork, appeal_id: str) -> bool:
    current = appeals.get(uow, appeal_id)
    now = uow.runtime.clock.now()
    if current.status not in EDITABLE or current.idle_expires_at is None or current.idle_expires_at > now:
        return False
    after = replace(current.move(AppealStatus.EXPIRED, at=now), idle_expires_at=None)
    appeals.save(uow, current, after)
    uow.record(appeals.record("appeal.expired", after, SCHEDULER, current, {"idle_since_deadline": True}))
    return True


def _expire(uow: UnitOfWork, freeze_id: str) -> bool:
    current = freezes.get(uow, freeze_id)
    now = uow.runtime.clock.now()
    if current.status is not FreezeStatus.ACTIVE or current.expires_at is None or current.expires_at > now:
        return False
    freezes.end(uow, current, FreezeStatus.EXPIRED, SCHEDULER, "the freeze reached its expiry")
    return True


def _rereview(uow: UnitOfWork, freeze_id: str) -> bool:
    now = uow.runtime.clock.now()
    flagged = uow.conn.execute(
        update(freeze_table)
        .where(
            freeze_table.c.id == freeze_id,
            freeze_table.c.status == FreezeStatus.ACTIVE.value,
            freeze_table.c.review_by <= now,
            freeze_table.c.rereview_flagged_at.is_(None),
        )
        .values(rereview_flagged_at=now)
    )
    if flagged.rowcount != 1:
        return False
    current = freezes.get(uow, freeze_id)
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="freeze.rereview_due",
            actor=SCHEDULER,
            subject=Subject(account_id=current.account_id, freeze_id=freeze_id),
            details={"review_by": current.review_by.isoformat()},
        )
    )
    return True


def _end_probation(uow: UnitOfWork, probation_id: str) -> bool:
    now = uow.runtime.clock.now()
    row = uow.conn.execute(select(probation).where(probation.c.id == probation_id)).first()
    if row is None:
        return False
    verification.lock_account(uow, row.account_id)  # a probation starting meanwhile must not be lost
    ended = uow.conn.execute(
        update(probation)
        .where(probation.c.id == probation_id, probation.c.ended_at.is_(None), probation.c.ends_at <= now)
        .values(ended_at=now)
    )
    if ended.rowcount != 1:
        return False
    remaining = uow.conn.execute(
        select(probation.c.ends_at)
        .where(probation.c.account_id == row.account_id, probation.c.ended_at.is_(None))
        .order_by(probation.c.ends_at.desc())
        .limit(1)
    ).scalar()
    uow.conn.execute(
        update(account_table).where(account_table.c.id == row.account_id).values(probation_until=remaining)
    )
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="probation.ended",
            actor=SCHEDULER,
            subject=Subject(account_id=row.account_id, freeze_id=row.freeze_id),
            details={"ends_at": row.ends_at.isoformat()},
        )
    )
    return True


def _warn(uow: UnitOfWork, appeal_id: str) -> bool:
    """Tell the case holder (or all reviewers) that a first-response deadline is near."""
    current = appeals.get(uow, appeal_id)
    if current.status not in QUEUED or current.first_responded_at is not None:
        return False
    changed = uow.conn.execute(
        update(appeal_table)
        .where(
            appeal_table.c.id == appeal_id,
            appeal_table.c.version == current.version,
            appeal_table.c.sla_warned_at.is_(None),
        )
        .values(sla_warned_at=uow.runtime.clock.now(), version=current.version + 1)
    )
    if changed.rowcount != 1:
        return False
    uow.mark_changed()
    due = current.first_response_due
    uow.record(
        appeals.record(
            "appeal.sla_warning",
            current,
            SCHEDULER,
            current,
            {"first_response_due": due.isoformat() if due else None, "assignee": current.assignee},
        )
    )
    return True


def run_due(runtime: Runtime) -> dict[str, int]:
    """Handle everything due now; returns how many items of each kind this scheduler changed."""
    now = runtime.clock.now()
    a, f, p = appeal_table.c, freeze_table.c, probation.c
    active = FreezeStatus.ACTIVE.value
    jobs: list[tuple[str, Any, Callable[[UnitOfWork, Any], bool]]] = [
        (
            "sla_breached",
            select(a.id).where(
                a.status.in_([s.value for s in QUEUED]),
                a.first_responded_at.is_(None),
                a.escalated_at.is_(None),
                a.first_response_due <= now,
            ),
            _breach,
        ),
        (
            "sla_warnings",
            select(a.id).where(
                a.status.in_([s.value for s in QUEUED]),
                a.first_responded_at.is_(None),
                a.sla_warned_at.is_(None),
                a.first_response_due > now,
                a.first_response_due <= now + timedelta(hours=runtime.settings.sla_warning_hours),
            ),
            _warn,
        ),
        (
            "appeals_expired",
            select(a.id).where(a.status.in_([s.value for s in EDITABLE]), a.idle_expires_at <= now),
            _lapse,
        ),
        ("freezes_expired", select(f.id).where(f.status == active, f.expires_at <= now), _expire),
        (
            "rereviews_due",
            select(f.id).where(and_(f.status == active, f.review_by <= now, f.rereview_flagged_at.is_(None))),
            _rereview,
        ),
        ("probations_ended", select(p.id).where(p.ended_at.is_(None), p.ends_at <= now), _end_probation),
    ]
    counts = {}
    for name, query, handle in jobs:
        counts[name] = _each(runtime, _due(runtime, query), handle)
    return counts


class Scheduler:
    """Runs :func:`run_due` every ``interval`` seconds on a background thread."""

    def __init__(self, runtime: Runtime, interval: float | None = None) -> None:
        self.runtime = runtime
        self.interval = interval or runtime.settings.scheduler_interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run_forever, name="thawline-scheduler", daemon=True)
        self.partitions = partitioning.DailyPartitions(runtime)  # PostgreSQL: next months' partitions

    def start(self) -> None:
        """Start the background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def run_forever(self) -> None:
        """Scan until stopped; a failed scan is logged and retried on the next tick. Once a day, and
        first, make sure the coming months' partitions exist (PostgreSQL)."""
        while True:
            self.partitions.tick()
            try:
                counts = run_due(self.runtime)
                if any(counts.values()):
                    logger.info("timers handled: %s", counts)
            except Exception:
                logger.exception("timer scan failed")
            if self._stop.wait(self.interval):
                return
