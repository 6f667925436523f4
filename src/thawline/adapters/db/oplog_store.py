"""SQL storage of the operation log: serialised appends, stored Merkle nodes, checkpoints, reads."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from time import perf_counter
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update

from thawline.adapters.db.schema import (
    oplog_account,
    oplog_bundle,
    oplog_checkpoint,
    oplog_head,
    oplog_node,
)
from thawline.oplog.entry import LogRecord, encode_entry, format_ts
from thawline.oplog.merkle import CompactRange, leaf_hash, node_hash

NODE_LEVEL_STEP = 8  # store aligned subtrees of 2**8, 2**16, ... leaves
GENESIS_CHAIN = b"\x00" * 32
_BUNDLE_COLUMNS = ("first_seq", "n_entries", "ts", "data", "chains", "accounts")
CHAIN_SIZE = 32


@dataclass(frozen=True, slots=True)
class Bundle:
    """One stored commit: its first sequence number and its entries, chain values and accounts."""

    first_seq: int
    ts: datetime
    entries: list[bytes]
    chains: list[bytes]
    accounts: list[str]

    @classmethod
    def of(cls, row: Row[Any]) -> Bundle:
        """Split a stored row; ValueError if its parts disagree on the number of entries."""
        entries = bytes(row.data).split(b"\n")
        chains_blob = bytes(row.chains)
        chains = [chains_blob[i : i + CHAIN_SIZE] for i in range(0, len(chains_blob), CHAIN_SIZE)]
        accounts = row.accounts.split("\n")
        if not len(entries) == len(chains) == len(accounts) == row.n_entries:
            raise ValueError(f"log bundle at {row.first_seq} is malformed (parts disagree on its size)")
        return cls(row.first_seq, row.ts, entries, chains, accounts)

    def rows(self, start: int = 0, stop: int | None = None) -> list[tuple[int, bytes, bytes]]:
        """(seq, data, chain) of the entries in [start, stop)."""
        lo = max(start - self.first_seq, 0)
        hi = len(self.entries) if stop is None else max(min(stop - self.first_seq, len(self.entries)), 0)
        return [(self.first_seq + i, self.entries[i], self.chains[i]) for i in range(lo, hi)]


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
    indexed_size: int


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A signed checkpoint as stored."""

    tree_size: int
    root: bytes
    note: str
    created_at: datetime


class OplogStore:
    """The log's tables seen through one connection (and its transaction).

    ``on_lock``, if given, is called with the ``perf_counter()`` reading taken just before the head's
    locking read, as soon as that read returns: the unit of work times the wait and the hold with it.
    """

    def __init__(self, conn: Connection, on_lock: Callable[[float], None] | None = None) -> None:
        self.conn = conn
        self.on_lock = on_lock

    def lock_head(self) -> Head:
        """Read the head with a row lock; appends are serialised on it (BEGIN IMMEDIATE on SQLite)."""
        asked = perf_counter()
        row = self.conn.execute(select(oplog_head).where(oplog_head.c.id == 1).with_for_update()).one()
        if self.on_lock is not None:
            self.on_lock(asked)
        return _head(row)

    def head(self) -> Head:
        """Read the head without locking."""
        return _head(self.conn.execute(select(oplog_head).where(oplog_head.c.id == 1)).one())

    def append(self, head: Head, records: Sequence[LogRecord], ts: datetime) -> tuple[Head, range]:
        """Encode, hash and insert ``records`` after ``head``; return the new head and their numbers."""
        if head.last_ts is not None and ts < head.last_ts:
            ts = head.last_ts  # keep log time monotonic along the sequence
        first = head.tree_size
        chain, frontier = head.chain, head.frontier
        ts_text = format_ts(ts)
        sha256 = hashlib.sha256
        entries = [encode_entry(record, first + i, ts_text) for i, record in enumerate(records)]
        leaves = [sha256(b"\x00" + data).digest() for data in entries]
        chains: list[bytes] = []
        for leaf in leaves:
            chain = sha256(chain + leaf).digest()
            chains.append(chain)
        nodes = frontier.extend(leaves, NODE_LEVEL_STEP)
        seq = first + len(entries)
        if not entries:
            return head, range(first, first)
        dialect = self.conn.dialect
        bind_ts = oplog_bundle.c.ts.type.dialect_impl(dialect).bind_processor(dialect)
        bundle = (
            first,
            len(entries),
            bind_ts(ts) if bind_ts is not None else ts,
            b"\n".join(entries),
            b"".join(chains),
            "\n".join(r.subject.account_id or "" for r in records),
        )
        # Raw DBAPI statements: the hot path of batched appends.
        self.conn.exec_driver_sql(_insert_sql(dialect.paramstyle, "oplog_bundle", _BUNDLE_COLUMNS), bundle)
        if nodes:
            self.conn.exec_driver_sql(_insert_sql(dialect.paramstyle, "oplog_node", _NODE_COLUMNS), nodes)
        self.conn.execute(
            update(oplog_head)
            .where(oplog_head.c.id == 1)
            .values(tree_size=seq, chain=chain, frontier=frontier.to_bytes(), last_ts=ts)
        )
        new_head = Head(seq, chain, frontier, ts, head.checkpoint_size, head.checkpoint_at, head.indexed_size)
        return new_head, range(first, seq)

    def add_checkpoint(self, tree_size: int, root: bytes, note: str, at: datetime) -> None:
        """Store a signed checkpoint and remember it in the head."""
        self.conn.execute(
            insert(oplog_checkpoint).values(tree_size=tree_size, root=root, note=note, created_at=at)
        )
        self.conn.execute(
            update(oplog_head).where(oplog_head.c.id == 1).values(checkpoint_size=tree_size, checkpoint_at=at)
        )

    def checkpoints(self, min_size: int = 0, limit: int | None = None) -> list[StoredCheckpoint]:
        """Checkpoints with ``tree_size >= min_size`` by tree size (all of them by default)."""
        query = select(oplog_checkpoint).where(oplog_checkpoint.c.tree_size >= min_size)
        rows = self.conn.execute(query.order_by(oplog_checkpoint.c.tree_size).limit(limit))
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

    def bundles(self, start: int = 0, stop: int | None = None) -> Iterator[Bundle]:
        """Bundles holding entries in [start, stop), in order (ValueError on a malformed one)."""
        for row in self.bundle_rows(start, stop):
            yield Bundle.of(row)

    def bundle_rows(self, start: int = 0, stop: int | None = None) -> Iterator[Row[Any]]:
        """Stored rows of the bundles holding entries in [start, stop), in order, unparsed."""
        containing = (
            select(func.coalesce(func.max(oplog_bundle.c.first_seq), 0))
            .where(oplog_bundle.c.first_seq <= start)
            .scalar_subquery()
        )
        query = select(oplog_bundle).where(oplog_bundle.c.first_seq >= containing)
        if stop is not None:
            query = query.where(oplog_bundle.c.first_seq < stop)
        yield from self.conn.execute(query.order_by(oplog_bundle.c.first_seq))

    def entry_data(self, seq: int) -> bytes | None:
        """The stored bytes of one entry."""
        for _seq, data, _chain in self.entries(start=seq, stop=seq + 1):
            return data
        return None

    def entries(
        self,
        *,
        start: int = 0,
        stop: int | None = None,
        account_id: str | None = None,
        action: str | None = None,
        limit: int | None = None,
    ) -> Iterator[tuple[int, bytes, bytes]]:
        """Yield (seq, data, chain) in sequence order, filtered by account and action."""
        if limit is not None and limit <= 0:
            return
        found = 0
        sources = (
            self._account_rows(account_id, start, stop)
            if account_id is not None
            else self._all_rows(start, stop)
        )
        needle = None if action is None else f'"action":"{action}",'.encode()
        for row in sources:
            if needle is not None and not row[1].startswith(b"{" + needle):
                continue
            yield row
            found += 1
            if limit is not None and found >= limit:
                return

    def _all_rows(self, start: int, stop: int | None) -> Iterator[tuple[int, bytes, bytes]]:
        for bundle in self.bundles(start, stop):
            yield from bundle.rows(start, stop)

    def _account_rows(
        self, account_id: str, start: int, stop: int | None
    ) -> Iterator[tuple[int, bytes, bytes]]:
        """Indexed entries of one account, then the not-yet-indexed tail read from the bundles."""
        indexed = self.head().indexed_size
        query = select(oplog_account.c.seq).where(
            oplog_account.c.account_id == account_id,
            oplog_account.c.seq >= start,
            oplog_account.c.seq < indexed,
        )
        if stop is not None:
            query = query.where(oplog_account.c.seq < stop)
        seqs = list(self.conn.execute(query.order_by(oplog_account.c.seq)).scalars())
        cached: Bundle | None = None
        for seq in seqs:
            if cached is None or not cached.first_seq <= seq < cached.first_seq + len(cached.entries):
                cached = next(self.bundles(seq, seq + 1), None)
                if cached is None:
                    return
            yield from cached.rows(seq, seq + 1)
        for bundle in self.bundles(max(start, indexed), stop):
            for i, account in enumerate(bundle.accounts):
                seq = bundle.first_seq + i
                if account == account_id and seq >= max(start, indexed) and (stop is None or seq < stop):
                    yield seq, bundle.entries[i], bundle.chains[i]

    def index_accounts(self, max_entries: int = 100_000) -> int:
        """Bring the per-account index up to the head (at most ``max_entries``); returns entries indexed.

        Call inside a writing unit of work: it holds the head lock like an append.
        """
        head = self.lock_head()
        start = head.indexed_size
        stop = min(head.tree_size, start + max_entries)
        if stop <= start:
            return 0
        pairs = [
            {"account_id": account, "seq": bundle.first_seq + i}
            for bundle in self.bundles(start, stop)
            for i, account in enumerate(bundle.accounts)
            if account and start <= bundle.first_seq + i < stop
        ]
        if pairs:
            self.conn.execute(insert(oplog_account), pairs)
        self.conn.execute(update(oplog_head).where(oplog_head.c.id == 1).values(indexed_size=stop))
        return stop - start

    def chain_at(self, seq: int) -> bytes:
        """The chain value after entry ``seq`` (the genesis value for -1)."""
        if seq < 0:
            return GENESIS_CHAIN
        for _seq, _data, chain in self.entries(start=seq, stop=seq + 1):
            return chain
        raise LookupError(f"no log entry {seq}")

    def count(self) -> int:
        """Number of stored entries, from the bundles (not trusting the head)."""
        end = self.conn.execute(
            select(func.max(oplog_bundle.c.first_seq + oplog_bundle.c.n_entries))
        ).scalar()
        return int(end or 0)

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
            entries = list(OplogStore(self.conn).entries(start=first, stop=stop))
            if [e[0] for e in entries] != list(range(first, stop)):
                raise LookupError(f"log entries {first}..{stop - 1} are incomplete")
            return [leaf_hash(e[1]) for e in entries]
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
        indexed_size=r.indexed_size,
    )
