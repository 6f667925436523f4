"""Writing the operation log: serialised appends and signed checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from thawline.adapters.db.oplog_store import Head, OplogStore, StoredCheckpoint
from thawline.domain.clock import Clock
from thawline.oplog.entry import LogRecord
from thawline.oplog.note import Checkpoint, Signer

if TYPE_CHECKING:
    from thawline.services.unit_of_work import UnitOfWork


class LogWriter:
    """Appends records inside a unit of work and signs checkpoints every N entries or on demand."""

    def __init__(self, *, clock: Clock, signer: Signer, origin: str, checkpoint_every: int) -> None:
        self.clock = clock
        self.signer = signer
        self.origin = origin
        self.checkpoint_every = checkpoint_every

    def append(self, uow: UnitOfWork, records: Sequence[LogRecord]) -> range:
        """Append ``records`` in ``uow``'s transaction (head locked until commit); return their numbers."""
        store = uow.oplog
        head = store.lock_head()
        head, appended = store.append(head, records, self.clock.now())
        if head.tree_size - head.checkpoint_size >= self.checkpoint_every:
            self._sign(store, head)
        return appended

    def checkpoint(self, uow: UnitOfWork) -> StoredCheckpoint | None:
        """Sign a checkpoint of the current tree now, unless the latest one already covers it."""
        store = uow.oplog
        head = store.lock_head()
        if head.tree_size == 0:
            return None
        if head.tree_size == head.checkpoint_size:
            return store.checkpoint(head.tree_size)
        return self._sign(store, head)

    def checkpoint_due(self, uow: UnitOfWork, every_seconds: float) -> StoredCheckpoint | None:
        """Sign a checkpoint if new entries are older than ``every_seconds`` without one."""
        head = uow.oplog.head()
        if head.tree_size == head.checkpoint_size:
            return None
        now = self.clock.now()
        if head.checkpoint_at is not None and (now - head.checkpoint_at).total_seconds() < every_seconds:
            return None
        return self.checkpoint(uow)

    def _sign(self, store: OplogStore, head: Head) -> StoredCheckpoint:
        root = head.frontier.root()
        note = self.signer.sign_note(Checkpoint(self.origin, head.tree_size, root).body())
        at = self.clock.now()
        store.add_checkpoint(head.tree_size, root, note, at)
        return StoredCheckpoint(head.tree_size, root, note, at)
