"""``thawline export``: compliance exports (log ranges with proofs, accounts, cases, appeals) and the
retention report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from thawline.cli.common import CLI_ACTOR, console, print_json, runtime
from thawline.domain.errors import InvalidInputError
from thawline.services import analytics
from thawline.services import export as exports
from thawline.services.export import Dataset, Format
from thawline.services.unit_of_work import UnitOfWork

export_app = typer.Typer(
    help="Compliance exports and the retention report: ids and hashes, no personal data. / 合规导出。",
    no_args_is_help=True,
)
FormatOption = Annotated[Format, typer.Option("--format", help="csv, parquet or jsonl.")]
OutOption = Annotated[Path, typer.Option("--out", "-o", help="Directory to write the file and its manifest.")]
Since = Annotated[
    str | None, typer.Option(help="Cases created from this UTC day (YYYY-MM-DD); default: all.")
]
Until = Annotated[str | None, typer.Option(help="… up to this UTC day, inclusive; default: now.")]


def _run(
    *,
    dataset: Dataset,
    fmt: Format,
    out: Path,
    since: str | None,
    until: str | None,
    start: int,
    stop: int | None,
) -> None:
    with runtime() as rt:
        period = None
        if since or until:
            try:
                period = analytics.parse_period(since or "1970-01-01", until, rt.clock.now())
            except InvalidInputError as exc:
                raise typer.BadParameter(str(exc), param_hint=f"--{exc.field}") from exc
        with UnitOfWork(rt, read_only=True) as uow:
            manifest = exports.export(uow, dataset, fmt, out, period=period, start=start, stop=stop)
        with UnitOfWork(rt) as uow:
            exports.record(uow, manifest, CLI_ACTOR)
            uow.commit()
    console.print(f"wrote {manifest.rows} rows to {out / manifest.file} (sha256 {manifest.sha256})")


@export_app.command("log")
def export_log(
    out: OutOption,
    fmt: FormatOption = Format.JSONL,
    from_seq: Annotated[int, typer.Option("--from", help="First sequence number.")] = 0,
    to_seq: Annotated[
        int | None, typer.Option("--to", help="Exclusive end (default: latest checkpoint).")
    ] = None,
) -> None:
    """A log range with chain values and inclusion proofs against its signed checkpoint. / 导出日志及证明。"""
    _run(dataset=Dataset.LOG, fmt=fmt, out=out, since=None, until=None, start=from_seq, stop=to_seq)


@export_app.command("accounts")
def export_accounts(out: OutOption, fmt: FormatOption = Format.CSV) -> None:
    """Accounts: ids, vault subject id, KYC level, VIP tier, active freezes. / 导出账户。"""
    _run(dataset=Dataset.ACCOUNTS, fmt=fmt, out=out, since=None, until=None, start=0, stop=None)


@export_app.command("cases")
def export_cases(
    out: OutOption, fmt: FormatOption = Format.CSV, since: Since = None, until: Until = None
) -> None:
    """Freezes with cause, rule, source, times, status and appeal counts. / 导出冻结案件。"""
    _run(dataset=Dataset.CASES, fmt=fmt, out=out, since=since, until=until, start=0, stop=None)


@export_app.command("appeals")
def export_appeals(
    out: OutOption, fmt: FormatOption = Format.CSV, since: Since = None, until: Until = None
) -> None:
    """Appeals with round, status, deadlines and decisions (no explanations). / 导出申诉。"""
    _run(dataset=Dataset.APPEALS, fmt=fmt, out=out, since=since, until=until, start=0, stop=None)


@export_app.command("retention")
def export_retention(
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """What is due for deletion when (log, closed cases; per month), what is on legal hold. / 保留期报告。"""
    with runtime() as rt, UnitOfWork(rt, read_only=True) as uow:
        report = exports.retention_report(uow)
    if json_out:
        print_json(report.model_dump(mode="json"))
        return
    console.print(f"retention {report.retention_days} days; whole log on hold: {report.whole_log_on_hold}")
    for h in report.holds:
        console.print(f"hold {h.id}: {h.account_id or 'whole log'} — {h.reason}")
    for kind, rows in (("log", report.log), ("closed cases", report.closed_cases)):
        for p in rows:
            due = "DUE" if p.due else "keep"
            console.print(
                f"{kind} {p.month}: {p.records} records, keep until {p.keep_until:%Y-%m-%d} [{due}]"
            )
    console.print(report.note)
