"""A separate writer process for the concurrency and crash tests.

    python -m tests.integration.writer_process URL DATA_DIR NAME COUNT BATCH

Appends COUNT records in transactions of BATCH and prints "ACK <seq> <correlation id>" for every
entry once its transaction has committed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from thawline.config import Settings
from thawline.oplog.entry import Actor, ActorKind, LogRecord, Subject
from thawline.services.runtime import build_runtime
from thawline.services.unit_of_work import UnitOfWork


def main() -> None:
    """Append and acknowledge."""
    url, data_dir, name, count, batch = (
        sys.argv[1],
        Path(sys.argv[2]),
        sys.argv[3],
        int(sys.argv[4]),
        int(sys.argv[5]),
    )
    rt = build_runtime(Settings(database_url=url, data_dir=data_dir, auto_migrate=False))  # type: ignore[call-arg]
    out = sys.stdout
    for start in range(0, count, batch):
        ids = [f"{name}-{i}" for i in range(start, min(start + batch, count))]
        with UnitOfWork(rt) as uow:
            for cid in ids:
                uow.record(
                    LogRecord(
                        "test.appended", Actor(ActorKind.SYSTEM, name), Subject(ref=cid), correlation_id=cid
                    )
                )
            appended = uow.commit()
        out.write("".join(f"ACK {seq} {cid}\n" for seq, cid in zip(appended, ids, strict=True)))
        out.flush()
    rt.close()


if __name__ == "__main__":
    main()
