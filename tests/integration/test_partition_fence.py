"""Broker mode's fence: a worker whose partition was claimed by another cannot commit a round.

The JetStream lease says who should own a partition; the epoch in ``partition_owner`` makes it so
in the database, on SQLite and PostgreSQL: a round checks its epochs inside its own transaction.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from tests import lifecycle as lc
from tests.integration.test_engine import GATEWAY, _entries, _small
from thawline.adapters.db.schema import event, partition_owner
from thawline.services import engine, partition_fence
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.verify import verify_log

STREAM = "thawline_events"


def _stored(runtime: Runtime) -> int:
    with UnitOfWork(runtime, read_only=True) as uow:
        return int(uow.conn.execute(select(func.count()).select_from(event)).scalar_one())


def _fence(held: dict[int, int]) -> Any:
    return lambda uow: partition_fence.check(uow, STREAM, held)


def test_claims_raise_the_epoch_and_are_logged(runtime: Runtime) -> None:
    assert partition_fence.claim(runtime, STREAM, 3, "worker-a") == 1
    assert partition_fence.claim(runtime, STREAM, 3, "worker-b") == 2
    assert partition_fence.claim(runtime, STREAM, 4, "worker-b") == 1
    with UnitOfWork(runtime, read_only=True) as uow:
        rows = uow.conn.execute(
            select(partition_owner.c.partition, partition_owner.c.owner, partition_owner.c.epoch).order_by(
                partition_owner.c.partition
            )
        ).all()
    assert [tuple(r) for r in rows] == [(3, "worker-b", 2), (4, "worker-b", 1)]
    claims = [e for e in _entries(runtime) if e["action"] == "broker.partition_claimed"]
    assert [(c["subject"]["ref"], c["details"]["epoch"], c["details"]["previous_owner"]) for c in claims] == [
        (f"partition:{STREAM}.3", 1, None),
        (f"partition:{STREAM}.3", 2, "worker-a"),
        (f"partition:{STREAM}.4", 1, None),
    ]
    assert verify_log(runtime).ok


def test_a_round_of_the_previous_owner_commits_nothing(runtime: Runtime) -> None:
    lc.register(runtime, kyc="full")
    old = partition_fence.claim(runtime, STREAM, 0, "worker-a")
    risk = engine.RiskEngine(runtime)
    first = risk.ingest(_small(runtime, 3), GATEWAY, fence=_fence({0: old}))
    assert len(first.accepted) == 3
    new = partition_fence.claim(runtime, STREAM, 0, "worker-b")  # worker-a paused past its lease
    log_size = len(_entries(runtime))
    with pytest.raises(partition_fence.LeaseLostError) as lost:
        risk.ingest(_small(runtime, 3, start=3), GATEWAY, fence=_fence({0: old, 1: 0}))
    assert lost.value.partitions == [0, 1]  # 1 was never claimed: not ours either
    assert _stored(runtime) == 3  # the stale round stored nothing and logged nothing
    assert len(_entries(runtime)) == log_size
    # The successor evaluates the same events (redelivered) from the state it rebuilds.
    successor = engine.RiskEngine(runtime).ingest(_small(runtime, 6), GATEWAY, fence=_fence({0: new}))
    assert len(successor.duplicates) == 3
    assert len(successor.accepted) == 3
    assert _stored(runtime) == 6
    assert verify_log(runtime).ok


def test_a_claim_waits_for_the_round_in_flight_on_postgresql(runtime: Runtime) -> None:
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises every writer with BEGIN IMMEDIATE; the row lock is PostgreSQL's")
    epoch = partition_fence.claim(runtime, STREAM, 5, "worker-a")
    checked, claimed = threading.Event(), threading.Event()
    order: list[str] = []

    def successor() -> None:
        checked.wait(10)
        partition_fence.claim(runtime, STREAM, 5, "worker-b")
        order.append("claimed")
        claimed.set()

    thread = threading.Thread(target=successor)
    thread.start()
    with UnitOfWork(runtime) as uow:
        partition_fence.check(uow, STREAM, {5: epoch})  # the round holds the row (FOR SHARE)
        checked.set()
        time.sleep(0.5)
        assert not claimed.is_set()  # the claim waits for the round to end
        order.append("round ended")  # leaving the unit of work ends the transaction
    thread.join(10)
    assert order == ["round ended", "claimed"]


def test_a_stalled_round_cannot_keep_its_partitions_on_postgresql(runtime: Runtime) -> None:
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("the stall timeout is PostgreSQL's idle_in_transaction_session_timeout")
    epoch = partition_fence.claim(runtime, STREAM, 6, "worker-a")
    with UnitOfWork(runtime) as uow:
        partition_fence.check(uow, STREAM, {6: epoch}, stall_seconds=0.5)
        time.sleep(1.5)  # worker-a stalls (paused) holding the share lock: the server ends it
        started = time.monotonic()
        assert partition_fence.claim(runtime, STREAM, 6, "worker-b", wait_seconds=5) == epoch + 1
        assert time.monotonic() - started < 5  # not kept waiting by the stalled round
        with pytest.raises(Exception, match=r"idle-in-transaction|terminat|closed"):
            uow.conn.execute(select(func.count()).select_from(partition_owner)).scalar_one()


def test_a_claim_gives_up_after_its_wait_on_postgresql(runtime: Runtime) -> None:
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("lock_timeout is PostgreSQL's")
    epoch = partition_fence.claim(runtime, STREAM, 7, "worker-a")
    with UnitOfWork(runtime) as uow:
        partition_fence.check(uow, STREAM, {7: epoch})  # a round in flight, not stalled
        started = time.monotonic()
        with pytest.raises(Exception, match="lock timeout"):
            partition_fence.claim(runtime, STREAM, 7, "worker-b", wait_seconds=0.3)
        assert time.monotonic() - started < 3
    assert partition_fence.claim(runtime, STREAM, 7, "worker-b") == epoch + 1  # later it succeeds


def test_a_round_stalled_mid_statement_is_ended_by_the_claim_on_postgresql(runtime: Runtime) -> None:
    # A worker stopped while the server was still busy with its statement (not idle in transaction,
    # so idle_in_transaction_session_timeout never fires) kept its share lock until it woke up.
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("row locks and ending server sessions are PostgreSQL's")
    epoch = partition_fence.claim(runtime, STREAM, 8, "worker-a")
    stalled: list[BaseException] = []
    locked = threading.Event()

    def paused_round() -> None:
        try:
            with UnitOfWork(runtime) as uow:
                partition_fence.check(uow, STREAM, {8: epoch})
                locked.set()
                uow.conn.exec_driver_sql("SELECT pg_sleep(30)")  # busy, not idle, holding the lock
                uow.commit()
        except BaseException as exc:  # the test reads what ended it
            stalled.append(exc)

    thread = threading.Thread(target=paused_round)
    thread.start()
    assert locked.wait(10)
    time.sleep(0.8)  # longer than twice the claim's wait
    started = time.monotonic()
    assert partition_fence.claim(runtime, STREAM, 8, "worker-b", wait_seconds=0.3) == epoch + 1
    assert time.monotonic() - started < 5
    thread.join(10)
    assert stalled, "the stalled round was ended, not committed"
    assert "terminat" in str(stalled[0]) or "closed" in str(stalled[0])
    # A round in flight for less than that is waited for, never ended.
    fresh = partition_fence.claim(runtime, STREAM, 9, "worker-a")
    with UnitOfWork(runtime) as uow:
        partition_fence.check(uow, STREAM, {9: fresh})
        with pytest.raises(Exception, match="lock timeout"):
            partition_fence.claim(runtime, STREAM, 9, "worker-b", wait_seconds=0.5)
        assert uow.conn.exec_driver_sql("SELECT 1").scalar_one() == 1  # still alive
