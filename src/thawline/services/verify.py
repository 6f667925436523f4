"""`thawline log verify`: recompute everything from the stored bytes and check every signature.

Aligned chunks (65,536 entries by default) are verified in worker processes, one per core, when
the log is large, and assembled in order, so verification runs at the speed of all cores.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from itertools import pairwise

from sqlalchemy import Connection, Engine, select

from thawline.adapters.db.engine import READ_ONLY, create_db_engine
from thawline.adapters.db.oplog_store import Bundle, OplogStore
from thawline.adapters.db.schema import oplog_node
from thawline.oplog.merkle import consistency_proof_from, verify_consistency
from thawline.oplog.note import Verifier
from thawline.oplog.verify import (
    CHUNK_LEVEL,
    GENESIS_CHAIN,
    Assembler,
    CheckpointRow,
    ChunkResult,
    Problem,
    VerifyReport,
    chunks,
    verify_chunk,
)
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

PARALLEL_FROM = 4  # chunks; below this, worker start-up costs more than it saves


def verify_log(
    runtime: Runtime,
    *,
    verifiers: list[Verifier] | None = None,
    deep: bool = False,
    workers: int | None = None,
    chunk_level: int = CHUNK_LEVEL,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Verify the whole log; ``progress(done, total)`` is called as chunks complete."""
    with UnitOfWork(runtime, read_only=True) as uow:
        store = uow.oplog
        total = store.count()
        checkpoints = [CheckpointRow(c.tree_size, c.root, c.note) for c in store.checkpoints()]
        nodes = {
            (r.level, r.idx): bytes(r.hash)
            for r in uow.conn.execute(select(oplog_node.c.level, oplog_node.c.idx, oplog_node.c.hash))
        }
    assembler = Assembler(
        verifiers=verifiers or [runtime.verifier],
        origin=runtime.settings.log_origin,
        checkpoints=checkpoints,
        stored_nodes=nodes,
        chunk_level=chunk_level,
    )
    sizes = sorted(c.tree_size for c in checkpoints)
    jobs = [
        (start, stop, [s for s in sizes if start < s <= stop]) for start, stop in chunks(total, chunk_level)
    ]
    workers = workers or min(os.cpu_count() or 1, 8)
    url = runtime.engine.url.render_as_string(hide_password=False)
    done = 0
    for result in _run(url, jobs, deep, workers if len(jobs) >= PARALLEL_FROM else 1, runtime):
        done += result.count
        if progress is not None:
            progress(done, total)
        if not assembler.add(result):
            break
    report = assembler.finish()
    if report.ok:
        with UnitOfWork(runtime, read_only=True) as uow:
            _check_head(uow, report)
            if report.ok:
                _check_consistency(uow, report)
    return report


def _run(
    url: str, jobs: list[tuple[int, int, list[int]]], deep: bool, workers: int, runtime: Runtime
) -> Iterator[ChunkResult]:
    """Yield chunk results in order, from a process pool or inline."""
    if workers <= 1:
        with runtime.engine.connect().execution_options(**{READ_ONLY: True}) as conn:
            for start, stop, sizes in jobs:
                yield _verify_range(conn, start, stop, sizes, deep)
        return
    # fork: workers inherit the imported modules, so they start in milliseconds.
    pool: Executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    with pool:
        futures = [pool.submit(_worker, url, start, stop, sizes, deep) for start, stop, sizes in jobs]
        try:
            for future in futures:
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


_worker_engine: dict[str, Engine] = {}


def _worker(url: str, start: int, stop: int, sizes: list[int], deep: bool) -> ChunkResult:
    """Verify one chunk in a worker process, on the worker's own connection."""
    engine = _worker_engine.get(url)
    if engine is None:
        engine = _worker_engine[url] = create_db_engine(url)
    # Read-only: a plain BEGIN, so workers neither serialise on nor block the write lock.
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        return _verify_range(conn, start, stop, sizes, deep)


def _verify_range(conn: Connection, start: int, stop: int, sizes: list[int], deep: bool) -> ChunkResult:
    store = OplogStore(conn)
    prev = GENESIS_CHAIN
    if start > 0:
        try:
            prev = store.chain_at(start - 1)
        except (LookupError, ValueError):
            prev = GENESIS_CHAIN  # the previous chunk reports the missing or damaged entry

    def batches() -> Iterator[list[tuple[int, bytes, bytes]]]:
        # Whole bundles come back as blobs; splitting them is the only per-entry work here.
        for row in store.bundle_rows(start, stop):
            try:
                bundle = Bundle.of(row)
            except ValueError:
                yield [(row.first_seq, b"", b"")]  # its stored chain cannot match: reported at first_seq
                continue
            rows = bundle.rows(start, stop)
            if rows:
                yield rows

    return verify_chunk(batches(), start=start, stop=stop, prev_chain=prev, checkpoint_sizes=sizes, deep=deep)


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
