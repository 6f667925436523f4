"""``thawline rescreen``: re-evaluate every account after a list or ruleset change."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from thawline.cli.common import CLI_ACTOR, print_json, runtime
from thawline.services import rescreen as service


def rescreen(
    reason: Annotated[str, typer.Option(help="Why, e.g. 'AML policy 2026-11'. / 原因。")] = "policy update",
    resume: Annotated[str | None, typer.Option(help="Continue this job (rs_…). / 继续指定任务。")] = None,
    chunk: Annotated[
        int, typer.Option(min=1, max=5000, help="Accounts per transaction. / 每批账户数。")
    ] = 200,
) -> None:
    """Re-screen all accounts against the current lists and ruleset; resumable. / 重新筛查全部账户。

    Starts a job (or continues the running one), shows progress, and prints the finished job as JSON.
    Interrupting it is safe: run it again (or with --resume) to continue where it stopped.
    """
    with runtime() as rt:
        job = service.get(rt, resume) if resume else service.start(rt, reason, CLI_ACTOR)
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task(f"re-screen {job.id}", total=job.total, completed=job.processed)
            done = service.run(
                rt, job.id, chunk=chunk, progress=lambda j: bar.update(task, completed=j.processed)
            )
        print_json(
            {
                "id": done.id,
                "status": done.status,
                "accounts": done.processed,
                "flagged": done.flagged,
                "ruleset_version": done.ruleset_version,
                "list_version": done.list_version,
            }
        )
