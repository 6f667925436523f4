"""Exports handed to a browser or an API client as a file: written by ``services.export`` into a
private temporary folder, recorded in the log (who, what, how many rows, the file's digest), sent,
then deleted."""

from __future__ import annotations

import tempfile
from pathlib import Path

from starlette.background import BackgroundTask
from starlette.responses import FileResponse

from thawline.oplog.entry import Actor
from thawline.services import export as exports
from thawline.services.analytics import Period
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

MEDIA = {
    exports.Format.CSV: "text/csv",
    exports.Format.PARQUET: "application/vnd.apache.parquet",
    exports.Format.JSONL: "application/x-ndjson",  # as GET /v1/log/export
}


def export_file(
    runtime: Runtime,
    dataset: exports.Dataset,
    fmt: exports.Format,
    actor: Actor,
    *,
    period: Period | None = None,
    start: int = 0,
    stop: int | None = None,
) -> FileResponse:
    """Write the export, record it as ``actor``'s, and answer with the file (digest in headers)."""
    workdir = Path(tempfile.mkdtemp(prefix="thawline-export-"))
    try:
        with UnitOfWork(runtime, read_only=True) as uow:
            manifest = exports.export(uow, dataset, fmt, workdir, period=period, start=start, stop=stop)
        with UnitOfWork(runtime) as uow:
            exports.record(uow, manifest, actor)
            uow.commit()
    except BaseException:
        _cleanup(workdir)
        raise
    headers = {
        "X-Thawline-Rows": str(manifest.rows),
        "X-Thawline-SHA256": manifest.sha256,
        "X-Thawline-Checkpoint-Size": str(manifest.checkpoint_tree_size or 0),
    }
    return FileResponse(
        workdir / manifest.file,
        media_type=MEDIA[fmt],
        filename=manifest.file,
        headers=headers,
        background=BackgroundTask(_cleanup, workdir),
    )


def _cleanup(workdir: Path) -> None:
    for path in workdir.iterdir():
        path.unlink()
    workdir.rmdir()
