"""Offline verification of a log's stored bytes: hash chain, Merkle roots, signed checkpoints.

Pure: it consumes rows and checkpoints from any source and reports the first problem with the
sequence number where it shows. The log is checked in aligned chunks of 2**CHUNK_LEVEL entries, which
are independent (each starts from the stored chain value before it, which the previous chunk
checks), so they can be verified in parallel and assembled in order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from thawline.oplog.entry import decode_entry, parse_ts
from thawline.oplog.merkle import CompactRange
from thawline.oplog.note import Checkpoint, NoteError, Verifier, open_note

GENESIS_CHAIN = b"\x00" * 32
NODE_LEVEL_STEP = 8
CHUNK_LEVEL = 16


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing found wrong, and where."""

    seq: int
    what: str


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    """A stored checkpoint: the size it claims, its root column and its signed note."""

    tree_size: int
    root: bytes
    note: str


@dataclass
class ChunkResult:
    """What one chunk [start, start + count) computed."""

    start: int
    count: int = 0
    problem: Problem | None = None
    last_chain: bytes = GENESIS_CHAIN
    frontier: list[bytes] = field(default_factory=list)  # perfect subtrees of the chunk, left to right
    partials: dict[int, list[bytes]] = field(default_factory=dict)  # checkpoint size -> local frontier
    nodes: list[tuple[int, int, bytes]] = field(default_factory=list)  # aligned nodes at stored levels
    first_ts: str = ""
    last_ts: str = ""


@dataclass
class VerifyReport:
    """What verification found."""

    entries: int = 0
    checkpoints: int = 0
    tree_size: int = 0
    root: bytes = b""
    chain: bytes = GENESIS_CHAIN
    problem: Problem | None = None
    checkpoint_roots: dict[int, bytes] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing was wrong."""
        return self.problem is None


def chunks(total: int, level: int = CHUNK_LEVEL) -> list[tuple[int, int]]:
    """The aligned [start, stop) chunks of 2**level entries covering ``total`` entries."""
    width = 1 << level
    return [(start, min(start + width, total)) for start in range(0, total, width)]


def verify_chunk(
    batches: Iterable[Sequence[tuple[int, bytes, bytes]]],
    *,
    start: int,
    stop: int,
    prev_chain: bytes,
    checkpoint_sizes: Sequence[int] = (),
    deep: bool = False,
) -> ChunkResult:
    """Recompute leaves and chain of entries [start, stop) and their Merkle subtrees.

    ``batches`` yields (seq, data, stored chain) rows in sequence order; ``prev_chain`` is the
    stored chain value of entry ``start - 1``; ``checkpoint_sizes`` are the checkpoint tree sizes
    in (start, stop] whose local frontier the caller needs.
    """
    result = ChunkResult(start)
    sha256 = hashlib.sha256
    chain = prev_chain
    leaves: list[bytes] = []
    last_ts = ""
    for batch in batches:
        expected = start + len(leaves)
        rows = batch
        # Sequence numbers ascend without repeats: first and last right means none is missing.
        if rows[0][0] != expected or rows[-1][0] != expected + len(rows) - 1:
            gap = next(expected + i for i, row in enumerate(rows) if row[0] != expected + i)
            result.problem = Problem(gap, f"entry {gap} is missing")
            rows = rows[: gap - expected]
        batch_leaves = [sha256(b"\x00" + row[1]).digest() for row in rows]
        for row, leaf in zip(rows, batch_leaves, strict=True):
            chain = sha256(chain + leaf).digest()
            if chain != row[2]:
                result.problem = Problem(
                    row[0], "entry bytes do not match the hash chain (altered, swapped or re-chained)"
                )
                break
            if deep:
                checked = _check_entry(row[0], bytes(row[1]), last_ts)
                if isinstance(checked, Problem):
                    result.problem = checked
                    break
                last_ts = checked
                result.first_ts = result.first_ts or last_ts
            leaves.append(leaf)
        if result.problem is not None:
            break
    result.count = len(leaves)
    result.last_chain = chain
    result.last_ts = last_ts
    if result.problem is None and start + len(leaves) != stop:
        missing = start + len(leaves)
        result.problem = Problem(missing, f"entry {missing} is missing")
    levels = _levels(leaves)
    result.frontier = _frontier(levels, len(leaves))
    result.partials = {s: _frontier(levels, s - start) for s in checkpoint_sizes if s - start <= len(leaves)}
    for level in range(NODE_LEVEL_STEP, len(levels), NODE_LEVEL_STEP):
        base = start >> level
        result.nodes.extend((level, base + j, digest) for j, digest in enumerate(levels[level]))
    return result


def _levels(leaves: list[bytes]) -> list[list[bytes]]:
    """All complete levels of the (left-aligned) perfect subtrees over ``leaves``."""
    sha256 = hashlib.sha256
    levels = [leaves]
    current = leaves
    while len(current) > 1:
        current = [
            sha256(b"\x01" + current[i] + current[i + 1]).digest() for i in range(0, len(current) - 1, 2)
        ]
        levels.append(current)
    return levels


def _frontier(levels: list[list[bytes]], size: int) -> list[bytes]:
    """The perfect-subtree hashes (largest first) of the first ``size`` leaves."""
    hashes = []
    offset = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            hashes.append(levels[level][offset >> level])
            offset += 1 << level
    return hashes


def _check_entry(seq: int, data: bytes, last_ts: str) -> str | Problem:
    try:
        doc = decode_entry(data)
    except ValueError as exc:
        return Problem(seq, f"entry is not canonical JSON: {exc}")
    if doc.get("seq") != seq:
        return Problem(seq, f"entry says it is number {doc.get('seq')!r}")
    ts = doc.get("ts")
    try:
        parse_ts(ts if isinstance(ts, str) else "")
    except ValueError:
        return Problem(seq, f"entry timestamp {ts!r} is not RFC 3339 UTC")
    assert isinstance(ts, str)
    if ts < last_ts:
        return Problem(seq, "entry time goes backwards")
    return ts


def _extend(frontier: CompactRange, size: int, hashes: list[bytes]) -> list[tuple[int, int, bytes]]:
    """Append the perfect subtrees (``hashes``, largest first) of ``size`` leaves; return completed nodes."""
    levels = [level for level in range(size.bit_length() - 1, -1, -1) if size >> level & 1]
    completed: list[tuple[int, int, bytes]] = []
    for level, digest in zip(levels, hashes, strict=True):
        completed += frontier.append_subtree(level, digest)
    return completed


class Assembler:
    """Combines chunk results in order: Merkle frontier, checkpoint signatures, stored nodes."""

    def __init__(
        self,
        *,
        verifiers: Sequence[Verifier],
        origin: str,
        checkpoints: Sequence[CheckpointRow],
        stored_nodes: Mapping[tuple[int, int], bytes],
        chunk_level: int = CHUNK_LEVEL,
    ) -> None:
        self.chunk_level = chunk_level
        self.verifiers = verifiers
        self.origin = origin
        self.checkpoints = {c.tree_size: c for c in checkpoints}
        self.stored_nodes = stored_nodes
        self.report = VerifyReport()
        self._frontier = CompactRange()
        self._checked_nodes = 0
        self._last_ts = ""

    def fail(self, seq: int, what: str) -> None:
        """Record the first problem."""
        if self.report.problem is None:
            self.report.problem = Problem(seq, what)

    def add(self, chunk: ChunkResult) -> bool:  # noqa: PLR0911 (one return per kind of failure)
        """Fold in the next chunk; False once a problem was found."""
        report = self.report
        if report.problem is not None:
            return False
        if chunk.first_ts and chunk.first_ts < self._last_ts:
            self.fail(chunk.start, "entry time goes backwards")
            return False
        self._last_ts = chunk.last_ts or self._last_ts
        base = self._frontier
        for size in sorted(chunk.partials):
            at_size = CompactRange(base.size, base.hashes)
            _extend(at_size, size - chunk.start, chunk.partials[size])
            if not self._check_checkpoint(self.checkpoints[size], at_size.root()):
                return False
        if chunk.problem is not None:
            report.problem = chunk.problem
            return False
        for level, index, digest in chunk.nodes:
            if not self._check_node(level, index, digest):
                return False
        for level, index, digest in _extend(base, chunk.count, chunk.frontier):
            if level % NODE_LEVEL_STEP == 0 and not self._check_node(level, index, digest):
                return False
        report.entries = self._frontier.size
        report.chain = chunk.last_chain
        return True

    def _check_node(self, level: int, index: int, digest: bytes) -> bool:
        self._checked_nodes += 1
        if self.stored_nodes.get((level, index)) != digest:
            last = ((index + 1) << level) - 1
            self.fail(last, f"stored Merkle node level {level} index {index} is wrong or missing")
            return False
        return True

    def _check_checkpoint(self, cp: CheckpointRow, root: bytes) -> bool:
        seq = cp.tree_size - 1
        try:
            body = Checkpoint.parse(open_note(cp.note, self.verifiers))
        except (NoteError, ValueError) as exc:
            self.fail(seq, f"checkpoint at size {cp.tree_size}: bad signature or note ({exc})")
            return False
        if body.origin != self.origin:
            self.fail(seq, f"checkpoint at size {cp.tree_size}: origin {body.origin!r} is not this log")
        elif body.size != cp.tree_size or body.root != cp.root:
            self.fail(seq, f"checkpoint at size {cp.tree_size}: stored columns disagree with the note")
        elif body.root != root:
            self.fail(seq, f"checkpoint at size {cp.tree_size}: signed root does not match the entries")
        else:
            self.report.checkpoints += 1
            self.report.checkpoint_roots[cp.tree_size] = root
            return True
        return False

    def finish(self) -> VerifyReport:
        """Close: checkpoints or nodes beyond the entries mean a truncated log."""
        report = self.report
        size = self._frontier.size
        beyond = [s for s in self.checkpoints if s > size]
        if report.problem is None and beyond:
            self.fail(size, f"log ends at {size} entries but a checkpoint covers {min(beyond)} (truncated)")
        if report.problem is None and self._checked_nodes != len(self.stored_nodes):
            self.fail(size, "stored Merkle nodes exist beyond the entries (truncated tail)")
        report.tree_size = size
        report.root = self._frontier.root()
        return report
