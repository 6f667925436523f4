"""The operation log on a real database, the same tests on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from tests.helpers import append, record
from thawline.adapters.db.schema import oplog_bundle
from thawline.domain.clock import FakeClock
from thawline.domain.errors import UnrecordedChangeError
from thawline.oplog import bundles
from thawline.oplog.entry import decode_entry
from thawline.oplog.merkle import leaf_hash, root
from thawline.oplog.note import Signer
from thawline.services import proofs
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.verify import verify_log


def test_appended_entries_get_contiguous_numbers_and_verify(runtime: Runtime) -> None:
    append(runtime, 530, batch=77)
    report = verify_log(runtime, deep=True)
    assert report.ok, report.problem
    assert report.entries == 530
    # Signed at the first commit that brings 100 or more entries past the previous checkpoint.
    assert sorted(report.checkpoint_roots) == [154, 308, 462]
    with UnitOfWork(runtime, read_only=True) as uow:
        seqs = [seq for seq, _d, _c in uow.oplog.entries()]
        leaves = [leaf_hash(bytes(d)) for _s, d, _c in uow.oplog.entries()]
    assert seqs == list(range(530))
    assert report.root == root(leaves)


def test_stored_bytes_are_the_canonical_entry_with_utc_time(runtime: Runtime, clock: FakeClock) -> None:
    append(runtime, 1)
    with UnitOfWork(runtime, read_only=True) as uow:
        ((_seq, data, _chain),) = list(uow.oplog.entries())
        typed = uow.conn.execute(select(oplog_bundle.c.ts)).scalar()
    doc = decode_entry(bytes(data))
    assert doc["seq"] == 0
    assert doc["ts"] == clock.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert doc["rule"] == {"id": "high_frequency", "version": 3}
    assert typed.tzinfo is not None
    assert typed == clock.now().astimezone(UTC)


def test_log_time_never_goes_backwards(runtime: Runtime, clock: FakeClock) -> None:
    append(runtime, 2)
    clock.advance(timedelta(seconds=-30))  # a clock step back (NTP) must not reorder the log
    append(runtime, 2)
    assert verify_log(runtime, deep=True).ok


def test_a_rolled_back_unit_of_work_leaves_no_entry(runtime: Runtime) -> None:
    def failing_command() -> None:
        with UnitOfWork(runtime) as uow:
            uow.record(record(0))
            raise RuntimeError("the command failed")

    with pytest.raises(RuntimeError):
        failing_command()
    with UnitOfWork(runtime, read_only=True) as uow:
        assert uow.oplog.count() == 0


def test_a_change_without_a_record_cannot_commit(runtime: Runtime) -> None:
    with UnitOfWork(runtime) as uow:
        uow.mark_changed()
        with pytest.raises(UnrecordedChangeError):
            uow.commit()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE oplog_bundle SET accounts = 'x'",
        "DELETE FROM oplog_bundle",
        "UPDATE oplog_checkpoint SET note = 'x'",
        "DELETE FROM oplog_node",
    ],
)
def test_triggers_refuse_updates_and_deletes(runtime: Runtime, statement: str) -> None:
    append(runtime, 300)
    with pytest.raises(DBAPIError, match="append-only"), runtime.engine.begin() as conn:
        conn.execute(text(statement))


def test_inclusion_and_consistency_proofs_check_offline(runtime: Runtime) -> None:
    append(runtime, 700, batch=100)  # checkpoints at 100..700; nodes at level 8 exist
    verifier = runtime.signer.verifier()
    with UnitOfWork(runtime, read_only=True) as uow:
        for seq in (0, 255, 256, 511, 699):
            bundle = proofs.inclusion(uow, seq)
            checked = bundles.check_inclusion(bundle, [verifier])
            assert checked.seq == seq
            assert checked.checkpoint.size == (seq // 100 + 1) * 100
        latest = proofs.inclusion(uow, 3, tree_size=700)
        assert bundles.check_inclusion(latest, [verifier]).checkpoint.size == 700
        for old in (100, 200, 300, 600):
            old_cp, new_cp = bundles.check_consistency(proofs.consistency(uow, old), [verifier])
            assert (old_cp.size, new_cp.size) == (old, 700)


def test_a_proof_from_a_stranger_key_is_refused(runtime: Runtime) -> None:
    append(runtime, 100)
    stranger = Signer(runtime.settings.log_origin, Ed25519PrivateKey.generate()).verifier()
    with UnitOfWork(runtime, read_only=True) as uow:
        bundle = proofs.inclusion(uow, 5)
    with pytest.raises(bundles.BundleError, match="signature"):
        bundles.check_inclusion(bundle, [stranger])


def test_export_carries_chain_and_proofs_an_auditor_can_check(runtime: Runtime) -> None:
    append(runtime, 400, batch=100)
    with UnitOfWork(runtime, read_only=True) as uow:
        lines = list(proofs.export(uow, 150, 320, runtime.settings.log_origin))
    assert lines[0]["tree_size"] == 400
    assert bundles.check_export(lines, [runtime.signer.verifier()]) == 170
    lines[50]["entry"] = lines[51]["entry"]
    with pytest.raises(bundles.BundleError, match="entry 199"):
        bundles.check_export(lines, [runtime.signer.verifier()])


def test_on_demand_checkpoint_covers_the_tail_and_is_not_repeated(runtime: Runtime) -> None:
    append(runtime, 150)
    with UnitOfWork(runtime) as uow:
        cp = runtime.log.checkpoint(uow)
        uow.commit()
    assert cp is not None
    assert cp.tree_size == 150
    with UnitOfWork(runtime) as uow:
        again = runtime.log.checkpoint(uow)
        uow.commit()
    assert again is not None
    assert again.tree_size == 150
    with UnitOfWork(runtime, read_only=True) as uow:
        assert [c.tree_size for c in uow.oplog.checkpoints()] == [100, 150]


def test_timed_checkpoint_waits_for_its_interval(runtime: Runtime, clock: FakeClock) -> None:
    append(runtime, 120)  # checkpoint at 100
    with UnitOfWork(runtime) as uow:
        assert runtime.log.checkpoint_due(uow, 60) is None
    clock.advance(timedelta(seconds=61))
    with UnitOfWork(runtime) as uow:
        cp = runtime.log.checkpoint_due(uow, 60)
        uow.commit()
    assert cp is not None
    assert cp.tree_size == 120


def test_a_read_only_unit_of_work_does_not_block_writers(runtime: Runtime) -> None:
    """Verification and queries read in read-only units of work; appends must not wait for them."""
    append(runtime, 10)
    with UnitOfWork(runtime, read_only=True) as reader:
        assert reader.oplog.count() == 10
        with UnitOfWork(runtime) as writer:
            if writer.conn.dialect.name == "sqlite":
                writer.conn.exec_driver_sql("PRAGMA busy_timeout=0")  # fail at once instead of waiting
            writer.record(record(99))
            assert list(writer.commit()) == [10]
