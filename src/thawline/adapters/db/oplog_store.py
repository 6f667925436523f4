"""SQL storage of the operation log: serialised appends, stored Merkle nodes, checkpoints, reads."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update

from thawline.adapters.db.schema import oplog_checkpoint, oplog_entry, oplog_head, oplog_node
from thawline.oplog.entry import LogRecord, encode_entry, format_ts
from thawline.oplog.merkle import CompactRange, leaf_hash, node_hash

NODE_LEVEL_STEP = 8  # store aligned subtrees of 2**8, 2**16, ... leaves
GENESIS_CHAIN = b"\x00" * 32
_ENTRY_COLUMNS = ("seq", "ts", "action", "account_id", "data", "chain")
_NODE_COLUMNS = ("level", "idx", "hash")


def _insert_sql(paramstyle: str, table: str, columns: tuple[str, ...]) -> str:
    marker = "?" if paramstyle == "qmark" else "%s"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([marker] * len(columns))})"  # noqa: S608 (fixed names)


@dataclass(frozen=True, slots=True)
class Head:
    """The log's current size, chain value, Merkle frontier and last checkpoint."""

    tree_size: int
    chain: bytes
    frontier: CompactRange
    last_ts: datetime | None
    checkpoint_size: int
    checkpoint_at: datetime | None


@dataclass(frozen=True, slots=True)
class AppendedEntry:
    """Where a record landed."""

    seq: int
    ts: datetime
    leaf_hash: bytes


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A signed checkpoint as stored."""

    tree_size: int
    root: bytes
    note: str
    created_at: datetime


class OplogStore:
    """The log's tables seen through one connection (and its transaction)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def lock_head(self) -> Head:
        """Read the head with a row lock; appends are serialised on it (BEGIN IMMEDIATE on SQLite)."""
        row = self.conn.execute(select(oplog_head).where(oplog_head.c.id == 1).with_for_update()).one()
        return _head(row)

    def head(self) -> Head:
        """Read the head without locking."""
        return _head(self.conn.execute(select(oplog_head).where(oplog_head.c.id == 1)).one())

    def append(
        self, head: Head, records: Sequence[LogRecord], ts: datetime
    ) -> tuple[Head, list[AppendedEntry]]:
        """Encode, hash and insert ``records`` after ``head``; return the new head and the positions."""
        if head.last_ts is not None and ts < head.last_ts:
            ts = head.last_ts  # keep log time monotonic along the sequence
        seq, chain, frontier = head.tree_size, head.chain, head.frontier
        ts_text = format_ts(ts)
        # The hot path: raw DBAPI executemany with the timestamp bound once per batch.
        dialect = self.conn.dialect
        bind_ts = oplog_entry.c.ts.type.dialect_impl(dialect).bind_processor(dialect)
        ts_param = bind_ts(ts) if bind_ts is not None else ts
        sha256 = hashlib.sha256
        rows: list[tuple[object, ...]] = []
        nodes: list[tuple[int, int, bytes]] = []
        appended: list[AppendedEntry] = []
        for record in records:
            data = encode_entry(record, seq, ts_text)
            leaf = sha256(b"\x00" + data).digest()
            chain = sha256(chain + leaf).digest()
            for level, index, digest in frontier.append(leaf):
                if level % NODE_LEVEL_STEP == 0:
                    nodes.append((level, index, digest))
            rows.append((seq, ts_param, record.action, record.subject.account_id, data, chain))
            appended.append(AppendedEntry(seq, ts, leaf))
            seq += 1
        if rows:
            self.conn.exec_driver_sql(_insert_sql(dialect.paramstyle, "oplog_entry", _ENTRY_COLUMNS), rows)
        if nodes:
            self.conn.exec_driver_sql(_insert_sql(dialect.paramstyle, "oplog_node", _NODE_COLUMNS), nodes)
        new_head = Head(seq, chain, frontier, ts, head.checkpoint_size, head.checkpoint_at)
        self.conn.execute(
            update(oplog_head)
            .where(oplog_head.c.id == 1)
            .values(tree_size=seq, chain=chain, frontier=frontier.to_bytes(), last_ts=ts)
        )
        return new_head, appended

    def add_checkpoint(self, tree_size: int, root: bytes, note: str, at: datetime) -> None:
        """Store a signed checkpoint and remember it in the head."""
        self.conn.execute(
            insert(oplog_checkpoint).values(tree_size=tree_size, root=root, note=note, created_at=at)
        )
        self.conn.execute(
            update(oplog_head).where(oplog_head.c.id == 1).values(checkpoint_size=tree_size, checkpoint_at=at)
        )

    def checkpoints(self) -> list[StoredCheckpoint]:
        """All checkpoints by tree size."""
        rows = self.conn.execute(select(oplog_checkpoint).order_by(oplog_checkpoint.c.tree_size))
        return [StoredCheckpoint(r.tree_size, r.root, r.note, r.created_at) for r in rows]

    def checkpoint(self, tree_size: int | None = None) -> StoredCheckpoint | None:
        """The checkpoint at ``tree_size``, or the latest one."""
        query = select(oplog_checkpoint)
        if tree_size is None:
            query = query.order_by(oplog_checkpoint.c.tree_size.desc()).limit(1)
        else:
            query = query.where(oplog_checkpoint.c.tree_size == tree_size)
        r = self.conn.execute(query).first()
        return None if r is None else StoredCheckpoint(r.tree_size, r.root, r.note, r.created_at)

    def covering_checkpoint(self, seq: int) -> StoredCheckpoint | None:
        """The smallest checkpoint that includes entry ``seq``."""
        r = self.conn.execute(
            select(oplog_checkpoint)
            .where(oplog_checkpoint.c.tree_size > seq)
            .order_by(oplog_checkpoint.c.tree_size)
            .limit(1)
        ).first()
        return None if r is None else StoredCheckpoint(r.tree_size, r.root, r.note, r.created_at)

    def entry_data(self, seq: int) -> bytes | None:
        """The stored bytes of one entry."""
        return self.conn.execute(select(oplog_entry.c.data).where(oplog_entry.c.seq == seq)).scalar()

    def entries(
        self,
        *,
        start: int = 0,
        stop: int | None = None,
        account_id: str | None = None,
        action: str | None = None,
        limit: int | None = None,
    ) -> Iterator[tuple[int, bytes, bytes]]:
        """Yield (seq, data, chain) in sequence order, filtered."""
        query = select(oplog_entry.c.seq, oplog_entry.c.data, oplog_entry.c.chain).where(
            oplog_entry.c.seq >= start
        )
        if stop is not None:
            query = query.where(oplog_entry.c.seq < stop)
        if account_id is not None:
            query = query.where(oplog_entry.c.account_id == account_id)
        if action is not None:
            query = query.where(oplog_entry.c.action == action)
        query = query.order_by(oplog_entry.c.seq)
        if limit is not None:
            query = query.limit(limit)
        for row in self.conn.execute(query):
            yield row.seq, row.data, row.chain

    def chain_at(self, seq: int) -> bytes:
        """The chain value after entry ``seq`` (the genesis value for -1)."""
        if seq < 0:
            return GENESIS_CHAIN
        value = self.conn.execute(select(oplog_entry.c.chain).where(oplog_entry.c.seq == seq)).scalar()
        if value is None:
            raise LookupError(f"no log entry {seq}")
        return bytes(value)

    def count(self) -> int:
        """Number of stored entries (not trusting the head)."""
        return int(self.conn.execute(select(func.count()).select_from(oplog_entry)).scalar_one())

    def subtrees(self, tree_size: int) -> SubtreeReader:
        """A Merkle subtree source over the first ``tree_size`` entries, for proofs."""
        return SubtreeReader(self.conn, tree_size)


class SubtreeReader:
    """Computes Merkle subtree hashes from stored nodes and entries, with a per-reader cache."""

    def __init__(self, conn: Connection, tree_size: int) -> None:
        self.conn = conn
        self.tree_size = tree_size
        self._aligned: dict[tuple[int, int], bytes] = {}

    def __call__(self, start: int, end: int) -> bytes:
        """Hash of leaves [start, end)."""
        if not 0 <= start < end <= self.tree_size:
            raise ValueError(f"subtree [{start}, {end}) outside tree of size {self.tree_size}")
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:
            return self._aligned_hash(n.bit_length() - 1, start // n)
        k = 1 << ((n - 1).bit_length() - 1)  # largest power of two below n
        return node_hash(self(start, start + k), self(start + k, end))

    def _aligned_hash(self, level: int, index: int) -> bytes:
        key = (level, index)
        cached = self._aligned.get(key)
        if cached is not None:
            return cached
        base = level - level % NODE_LEVEL_STEP
        if base == level and level > 0:
            stored = self.conn.execute(
                select(oplog_node.c.hash).where(oplog_node.c.level == level, oplog_node.c.idx == index)
            ).scalar()
            if stored is None:
                raise LookupError(f"Merkle node level {level} index {index} is missing")
            digest = bytes(stored)
        else:
            width = 1 << (level - base)
            first = index * width
            hashes = self._level_hashes(base, first, first + width)
            while len(hashes) > 1:
                hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
            digest = hashes[0]
        self._aligned[key] = digest
        return digest

    def _level_hashes(self, level: int, first: int, stop: int) -> list[bytes]:
        """Hashes of aligned nodes ``first..stop-1`` at a stored level (0 = leaves)."""
        if level == 0:
            rows = self.conn.execute(
                select(oplog_entry.c.seq, oplog_entry.c.data)
                .where(oplog_entry.c.seq >= first, oplog_entry.c.seq < stop)
                .order_by(oplog_entry.c.seq)
            ).all()
            if len(rows) != stop - first:
                raise LookupError(f"log entries {first}..{stop - 1} are incomplete")
            return [leaf_hash(bytes(r.data)) for r in rows]
        rows = self.conn.execute(
            select(oplog_node.c.idx, oplog_node.c.hash)
            .where(oplog_node.c.level == level, oplog_node.c.idx >= first, oplog_node.c.idx < stop)
            .order_by(oplog_node.c.idx)
        ).all()
        if len(rows) != stop - first:
            raise LookupError(f"Merkle nodes level {level} {first}..{stop - 1} are incomplete")
        return [bytes(r.hash) for r in rows]


def _head(r: Row[Any]) -> Head:
    return Head(
        tree_size=r.tree_size,
        chain=bytes(r.chain),
        frontier=CompactRange.from_bytes(bytes(r.frontier)),
        last_ts=r.last_ts,
        checkpoint_size=r.checkpoint_size,
        checkpoint_at=r.checkpoint_at,
    )
