"""The fence behind broker mode's partition leases: owner epochs kept in the database.

A JetStream lease says who *should* own a partition; it cannot stop a worker that was paused (a long
GC, a frozen VM, a network split) from committing a round after its lease lapsed and a successor
took over. So a worker that takes a partition also raises the partition's epoch in
``partition_owner`` (logged as ``broker.partition_claimed``), and every round it commits first
checks, inside the round's own transaction, that the epochs it holds are still current — with
``FOR SHARE`` on PostgreSQL, so a successor's claim waits for a round in flight to commit, and a
round that starts after the claim fails the check and rolls back whole. Then no two workers'
commits for one partition ever interleave: per-account order holds even when leases go wrong, and
event-id idempotency makes what the successor redelivers harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import OperationalError

from thawline.adapters.db.schema import partition_owner
from thawline.oplog.entry import Actor, ActorKind, LogRecord, Subject
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

log = logging.getLogger("thawline.broker")


class LeaseLostError(Exception):
    """The partitions' epochs moved on: another worker owns them now; nothing was committed."""

    def __init__(self, partitions: list[int]) -> None:
        super().__init__(f"partitions {partitions} are owned by another worker now")
        self.partitions = partitions


def claim(runtime: Runtime, stream: str, partition: int, owner: str, *, wait_seconds: float = 0) -> int:
    """Record ``owner`` as the partition's owner under a new epoch and return that epoch.

    A round of the previous owner still in flight makes the claim wait for its end; with
    ``wait_seconds`` (PostgreSQL) it waits at most that long and then raises (try again later).
    If what it waited for is a round stalled for more than twice that long — a worker paused in
    the middle of a statement, which ``idle_in_transaction_session_timeout`` does not end — the
    claim ends that session (:func:`end_stalled_rounds`) and tries once more at once.
    """
    try:
        return _claim(runtime, stream, partition, owner, wait_seconds)
    except OperationalError as exc:
        if wait_seconds <= 0 or getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        if not end_stalled_rounds(runtime, stall_seconds=2 * wait_seconds):
            raise
    return _claim(runtime, stream, partition, owner, wait_seconds)


LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL: lock_timeout expired


def end_stalled_rounds(runtime: Runtime, *, stall_seconds: float) -> list[int]:
    """PostgreSQL: end the sessions that have held a lock on ``partition_owner`` inside one
    transaction for more than ``stall_seconds`` — rounds of a worker that stopped mid-round (its
    lease is gone, or no claim would be waiting). Their transactions roll back whole. Returns the
    server process ids ended (none on SQLite, where writers never overlap)."""
    if runtime.engine.dialect.name != "postgresql":
        return []
    with runtime.engine.connect() as conn:
        pids = list(
            conn.execute(
                text(
                    "SELECT DISTINCT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'relation' AND l.relation = 'partition_owner'::regclass "
                    "AND l.pid <> pg_backend_pid() "
                    "AND a.xact_start < clock_timestamp() - make_interval(secs => :stall)"
                ),
                {"stall": stall_seconds},
            ).scalars()
        )
        for pid in pids:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            log.warning("ended a round stalled for over %.1f s (server process %d)", stall_seconds, pid)
        conn.commit()
    return pids


def _claim(runtime: Runtime, stream: str, partition: int, owner: str, wait_seconds: float) -> int:
    with UnitOfWork(runtime) as uow:
        if wait_seconds > 0 and uow.conn.dialect.name == "postgresql":
            # SET takes no bind parameters; the value is a number formatted here, never input.
            uow.conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(wait_seconds * 1000)}")
        where = (partition_owner.c.stream == stream) & (partition_owner.c.partition == partition)
        row = uow.conn.execute(select(partition_owner).where(where).with_for_update()).first()
        now = runtime.clock.now()
        if row is None:
            epoch, previous = 1, None
            uow.conn.execute(
                insert(partition_owner).values(
                    stream=stream, partition=partition, owner=owner, epoch=epoch, taken_at=now
                )
            )
        else:
            epoch, previous = row.epoch + 1, row.owner
            changes = {"owner": owner, "epoch": epoch, "taken_at": now}
            uow.conn.execute(update(partition_owner).where(where).values(**changes))
        uow.mark_changed()
        uow.record(
            LogRecord(
                action="broker.partition_claimed",
                actor=Actor(ActorKind.SYSTEM, "broker-worker"),
                subject=Subject(ref=f"partition:{stream}.{partition}"),
                details={"owner": owner, "epoch": epoch, "previous_owner": previous},
            )
        )
        uow.commit()
    return epoch


def check(uow: UnitOfWork, stream: str, held: Mapping[int, int], *, stall_seconds: float = 0) -> None:
    """Raise LeaseLostError unless every partition in ``held`` (partition -> epoch) still has that
    epoch; on PostgreSQL the rows stay share-locked until ``uow`` ends, so no claim slips in.

    ``stall_seconds`` (PostgreSQL): should this worker stall inside the transaction for that long
    (paused, frozen), the server ends its session, so that the share locks it holds cannot keep a
    successor from claiming the partitions; the stalled round then fails to commit.
    """
    if not held:
        return
    if stall_seconds > 0 and uow.conn.dialect.name == "postgresql":
        # SET takes no bind parameters; the value is a number formatted here, never input.
        uow.conn.exec_driver_sql(
            f"SET LOCAL idle_in_transaction_session_timeout = {int(stall_seconds * 1000)}"
        )
    rows = uow.conn.execute(
        select(partition_owner.c.partition, partition_owner.c.epoch)
        .where(partition_owner.c.stream == stream, partition_owner.c.partition.in_(sorted(held)))
        .with_for_update(read=True)
    ).all()
    current = {row.partition: row.epoch for row in rows}
    lost = sorted(p for p, epoch in held.items() if current.get(p) != epoch)
    if lost:
        raise LeaseLostError(lost)
