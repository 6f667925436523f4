"""Offline verification of a log's stored bytes: hash chain, Merkle roots, signed checkpoints.

Pure: it consumes rows and checkpoints from any source (database, export file) and reports the
first problem with the sequence number where it shows.
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


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing found wrong, and where."""

    seq: int
    what: str


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


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    """A stored checkpoint: the size it claims and its signed note."""

    tree_size: int
    root: bytes
    note: str


class ChainVerifier:
    """Streams entries from ``start`` on, recomputing leaves, chain and frontier.

    Stops at the first problem; call :meth:`feed` with batches, then :meth:`finish`.
    """

    def __init__(
        self,
        *,
        verifiers: Sequence[Verifier],
        origin: str,
        checkpoints: Sequence[CheckpointRow] = (),
        stored_nodes: Mapping[tuple[int, int], bytes] | None = None,
        deep: bool = False,
        start: int = 0,
        chain: bytes = GENESIS_CHAIN,
        frontier: CompactRange | None = None,
    ) -> None:
        self.verifiers = verifiers
        self.origin = origin
        self.deep = deep
        self.stored_nodes = stored_nodes
        self.report = VerifyReport(chain=chain)
        self._expected = start
        self._frontier = frontier or CompactRange()
        self._last_ts = ""
        self._pending = sorted(checkpoints, key=lambda c: c.tree_size)
        self._next_cp = 0
        self._seen_node_keys = 0

    @property
    def failed(self) -> bool:
        """True once a problem was found."""
        return self.report.problem is not None

    def fail(self, seq: int, what: str) -> None:
        """Record the first problem."""
        if self.report.problem is None:
            self.report.problem = Problem(seq, what)

    def feed(self, rows: Iterable[tuple[int, bytes, bytes]]) -> bool:
        """Check a batch of (seq, data, stored chain); False once a problem was found."""
        if self.report.problem is not None:
            return False
        sha256 = hashlib.sha256
        chain = self.report.chain
        expected = self._expected
        frontier = self._frontier
        append = frontier.append
        nodes = self.stored_nodes
        cps = self._pending
        next_size = cps[self._next_cp].tree_size if self._next_cp < len(cps) else -1
        for seq, data, stored_chain in rows:
            if seq != expected:
                self.fail(expected, f"entry {expected} is missing (next stored entry is {seq})")
                break
            leaf = sha256(b"\x00" + data).digest()
            chain = sha256(chain + leaf).digest()
            if chain != stored_chain:
                self.fail(seq, "entry bytes do not match the hash chain (altered, swapped or re-chained)")
                break
            if self.deep and not self._check_entry(seq, data):
                break
            completed = append(leaf)
            if nodes is not None and completed:
                for level, index, digest in completed:
                    if level % NODE_LEVEL_STEP == 0:
                        self._seen_node_keys += 1
                        if nodes.get((level, index)) != digest:
                            self.fail(seq, f"stored Merkle node level {level} index {index} is wrong")
                            break
            expected += 1
            if expected == next_size:
                self._check_checkpoint(cps[self._next_cp], frontier.root())
                self._next_cp += 1
                next_size = cps[self._next_cp].tree_size if self._next_cp < len(cps) else -1
            if self.failed:
                break
        self._expected = expected
        self.report.chain = chain
        self.report.entries = expected
        return self.report.problem is None

    def _check_entry(self, seq: int, data: bytes) -> bool:
        try:
            doc = decode_entry(bytes(data))
        except ValueError as exc:
            self.fail(seq, f"entry is not canonical JSON: {exc}")
            return False
        if doc.get("seq") != seq:
            self.fail(seq, f"entry says it is number {doc.get('seq')!r}")
            return False
        ts = doc.get("ts")
        if not isinstance(ts, str):
            self.fail(seq, "entry has no timestamp")
            return False
        try:
            parse_ts(ts)
        except ValueError:
            self.fail(seq, f"entry timestamp {ts!r} is not RFC 3339 UTC")
            return False
        if ts < self._last_ts:
            self.fail(seq, "entry time goes backwards")
            return False
        self._last_ts = ts
        return True

    def _check_checkpoint(self, cp: CheckpointRow, root: bytes) -> None:
        seq = cp.tree_size - 1
        try:
            body = Checkpoint.parse(open_note(cp.note, self.verifiers))
        except (NoteError, ValueError) as exc:
            self.fail(seq, f"checkpoint at size {cp.tree_size}: bad signature or note ({exc})")
            return
        if body.origin != self.origin:
            self.fail(seq, f"checkpoint at size {cp.tree_size}: origin {body.origin!r} is not this log")
        elif body.size != cp.tree_size or body.root != cp.root:
            self.fail(seq, f"checkpoint at size {cp.tree_size}: stored columns disagree with the note")
        elif body.root != root:
            self.fail(seq, f"checkpoint at size {cp.tree_size}: signed root does not match the entries")
        else:
            self.report.checkpoints += 1
            self.report.checkpoint_roots[cp.tree_size] = root

    def finish(self) -> VerifyReport:
        """Close the stream: checkpoints beyond the end mean a truncated log."""
        report = self.report
        if report.problem is None and self._next_cp < len(self._pending):
            cp = self._pending[self._next_cp]
            self.fail(
                self._expected,
                f"log ends at {self._expected} entries but checkpoint covers {cp.tree_size} (truncated)",
            )
        if (
            report.problem is None
            and self.stored_nodes is not None
            and self._seen_node_keys != len(self.stored_nodes)
        ):
            self.fail(self._expected, "stored Merkle nodes exist beyond the entries (truncated tail)")
        report.tree_size = self._frontier.size
        report.root = self._frontier.root()
        return report
