"""`thawline log verify`: recompute everything from the stored bytes and check every signature."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

from sqlalchemy import select

from thawline.adapters.db.schema import oplog_node
from thawline.oplog.merkle import consistency_proof_from, verify_consistency
from thawline.oplog.note import Verifier
from thawline.oplog.verify import ChainVerifier, CheckpointRow, Problem, VerifyReport
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

BATCH = 20_000


def verify_log(
    runtime: Runtime,
    *,
    verifiers: list[Verifier] | None = None,
    deep: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Verify the whole log in one read-only snapshot; ``progress(done, total)`` is called per batch."""
    with UnitOfWork(runtime, read_only=True) as uow:
        store = uow.oplog
        total = store.count()
        checkpoints = [CheckpointRow(c.tree_size, c.root, c.note) for c in store.checkpoints()]
        nodes = {
            (r.level, r.idx): bytes(r.hash)
            for r in uow.conn.execute(select(oplog_node.c.level, oplog_node.c.idx, oplog_node.c.hash))
        }
        checker = ChainVerifier(
            verifiers=verifiers or [runtime.verifier],
            origin=runtime.settings.log_origin,
            checkpoints=checkpoints,
            stored_nodes=nodes,
            deep=deep,
        )
        # Raw DBAPI rows: this loop is the verify hot path (hundreds of thousands of rows a second).
        result = uow.conn.exec_driver_sql("SELECT seq, data, chain FROM oplog_entry ORDER BY seq")
        done = 0
        while True:
            batch = result.fetchmany(BATCH)
            if not batch:
                break
            if not checker.feed((seq, bytes(data), bytes(chain)) for seq, data, chain in batch):
                break
            done += len(batch)
            if progress is not None:
                progress(done, total)
        result.close()
        report = checker.finish()
        if report.ok:
            _check_head(uow, report)
        if report.ok:
            _check_consistency(uow, report)
    return report


def _check_head(uow: UnitOfWork, report: VerifyReport) -> None:
    head = uow.oplog.head()
    if head.tree_size != report.entries or head.chain != report.chain:
        report.problem = Problem(
            min(head.tree_size, report.entries),
            f"log head says {head.tree_size} entries but {report.entries} are stored (truncated or forged)",
        )


def _check_consistency(uow: UnitOfWork, report: VerifyReport) -> None:
    """Prove each checkpoint consistent with the next, from the stored Merkle nodes."""
    sizes = sorted(report.checkpoint_roots)
    if not sizes:
        return
    reader = uow.oplog.subtrees(sizes[-1])
    for old, new in pairwise(sizes):
        try:
            proof = consistency_proof_from(reader, old, new)
        except LookupError as exc:
            report.problem = Problem(new - 1, f"cannot build consistency proof {old}→{new}: {exc}")
            return
        if not verify_consistency(
            old, new, report.checkpoint_roots[old], report.checkpoint_roots[new], proof
        ):
            report.problem = Problem(new - 1, f"checkpoints {old} and {new} are not consistent")
            return
