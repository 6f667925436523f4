"""The log's append lock is timed: the wait for it and the hold to the end of COMMIT, as histograms."""

from __future__ import annotations

import threading
import time

import pytest

from tests.helpers import record
from thawline.services import metrics
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

WAIT = "thawline_oplog_lock_wait_seconds"
HOLD = "thawline_oplog_lock_hold_seconds"


def _sample(name: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name)
    assert value is not None, name
    return value


def _counts() -> tuple[float, float, float, float]:
    return (
        _sample(f"{WAIT}_count"),
        _sample(f"{WAIT}_sum"),
        _sample(f"{HOLD}_count"),
        _sample(f"{HOLD}_sum"),
    )


def test_a_commit_counts_one_wait_and_one_hold(runtime: Runtime) -> None:
    before = _counts()
    with UnitOfWork(runtime) as uow:
        uow.record(record(1))
        uow.commit()
    after = _counts()
    assert after[0] - before[0] == 1
    assert after[2] - before[2] == 1
    assert after[1] - before[1] == pytest.approx(uow.lock_wait)
    assert after[3] - before[3] == pytest.approx(uow.lock_held)
    assert uow.lock_wait >= 0
    assert uow.lock_held > 0
    exposed = metrics.exposition().decode()
    assert f"{WAIT}_bucket" in exposed
    assert f"{HOLD}_bucket" in exposed


def test_reading_takes_no_lock_and_counts_nothing(runtime: Runtime) -> None:
    before = _counts()
    with UnitOfWork(runtime, read_only=True) as uow:
        assert uow.oplog.head().tree_size == 0
    assert _counts() == before
    assert uow.lock_held == 0


def test_a_writer_that_does_not_append_holds_the_lock_only_on_sqlite(runtime: Runtime) -> None:
    before = _counts()
    with UnitOfWork(runtime) as uow:
        uow.oplog.head()  # no lock_head: on PostgreSQL the head row is not locked
    counted = _counts()[2] - before[2]
    # SQLite's BEGIN IMMEDIATE takes the database's write lock up front: it blocks appenders too.
    assert counted == (1 if runtime.engine.dialect.name == "sqlite" else 0)


def test_a_rollback_after_locking_counts_the_hold(runtime: Runtime) -> None:
    before = _counts()
    with UnitOfWork(runtime) as uow:
        uow.oplog.lock_head()
        time.sleep(0.05)
        # left without committing: rolled back on exit, which releases the lock
    after = _counts()
    assert after[2] - before[2] == 1
    assert uow.lock_held >= 0.05
    assert after[3] - before[3] == pytest.approx(uow.lock_held)


def test_a_second_writer_waits_while_the_first_holds_the_lock(runtime: Runtime) -> None:
    locked = threading.Event()
    holder: list[UnitOfWork] = []
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with UnitOfWork(runtime) as uow:
                uow.oplog.lock_head()
                locked.set()
                time.sleep(0.3)
                uow.record(record(1))
                uow.commit()
                holder.append(uow)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            locked.set()

    before = _counts()
    first = threading.Thread(target=hold)
    first.start()
    assert locked.wait(10)
    with UnitOfWork(runtime) as second:
        second.record(record(2))
        appended = second.commit()
    first.join(10)
    assert not errors
    assert list(appended) == [1]  # it appended after the first writer's entry
    assert holder[0].lock_held >= 0.3
    assert second.lock_wait >= 0.2  # the rest of the first writer's hold, at least
    after = _counts()
    assert after[0] - before[0] == 2
    assert after[1] - before[1] >= second.lock_wait
    assert after[3] - before[3] >= holder[0].lock_held
