"""Queries over the log: entries, proofs, exports, all tied to signed checkpoints."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from thawline.domain.errors import ConflictError, NotFoundError
from thawline.oplog import bundles
from thawline.oplog.merkle import consistency_proof_from, inclusion_proof_from
from thawline.services.unit_of_work import UnitOfWork


def inclusion(uow: UnitOfWork, seq: int, tree_size: int | None = None) -> dict[str, Any]:
    """Inclusion bundle for entry ``seq`` against a checkpoint (the given size, or the first covering it)."""
    store = uow.oplog
    data = store.entry_data(seq)
    if data is None:
        raise NotFoundError(f"log entry {seq} does not exist")
    checkpoint = store.covering_checkpoint(seq) if tree_size is None else store.checkpoint(tree_size)
    if checkpoint is None:
        if tree_size is not None:
            raise NotFoundError(f"no signed checkpoint at tree size {tree_size}")
        raise ConflictError(f"entry {seq} is not covered by a signed checkpoint yet; request one first")
    if checkpoint.tree_size <= seq:
        raise ConflictError(f"checkpoint {checkpoint.tree_size} does not include entry {seq}")
    proof = inclusion_proof_from(store.subtrees(checkpoint.tree_size), seq, checkpoint.tree_size)
    return bundles.inclusion_bundle(seq, bytes(data), proof, checkpoint.note, checkpoint.tree_size)


def consistency(uow: UnitOfWork, old_size: int, new_size: int | None = None) -> dict[str, Any]:
    """Consistency bundle between two signed checkpoints (newest if ``new_size`` is None)."""
    store = uow.oplog
    new = store.checkpoint(new_size)
    old = store.checkpoint(old_size)
    if old is None or new is None:
        missing = old_size if old is None else new_size
        raise NotFoundError(f"no signed checkpoint at tree size {missing}")
    if old.tree_size > new.tree_size:
        raise ConflictError("old_size must not exceed new_size")
    proof = consistency_proof_from(store.subtrees(new.tree_size), old.tree_size, new.tree_size)
    return bundles.consistency_bundle(old.note, new.note, old.tree_size, new.tree_size, proof)


def export(uow: UnitOfWork, start: int, stop: int | None, origin: str) -> Iterator[dict[str, Any]]:
    """Export entries [start, stop) with proofs against the first checkpoint covering ``stop``."""
    store = uow.oplog
    checkpoint = store.covering_checkpoint(stop - 1) if stop is not None else store.checkpoint()
    if checkpoint is None:
        raise ConflictError("the range is not covered by a signed checkpoint yet; request one first")
    stop = checkpoint.tree_size if stop is None else stop
    if not 0 <= start <= stop:
        raise ConflictError(f"bad range {start}..{stop}")
    yield bundles.export_header(
        origin,
        start,
        stop,
        prev_chain=store.chain_at(start - 1),
        note=checkpoint.note,
        tree_size=checkpoint.tree_size,
    )
    reader = store.subtrees(checkpoint.tree_size)
    for seq, data, chain in store.entries(start=start, stop=stop):
        proof = inclusion_proof_from(reader, seq, checkpoint.tree_size)
        yield bundles.export_line(seq, bytes(data), bytes(chain), proof)
