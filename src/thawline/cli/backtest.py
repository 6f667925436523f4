"""``thawline backtest``: replay history through a candidate ruleset and compare it with the live one."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from thawline.cli.common import CLI_ACTOR, console, print_json, runtime
from thawline.domain.backtest import Sweep
from thawline.domain.errors import InvalidInputError
from thawline.services import backtest as service
from thawline.services.runtime import Runtime

MAX_SWEEP_STEPS = 1000


class Format(StrEnum):
    """How the result is printed."""

    TABLE = "table"
    JSON = "json"


def parse_sweep(text: str, target: float) -> Sweep:
    """``RULE_ID:PARAM=FROM:TO:STEP`` (PARAM a feature compared with a number, or ``#n``)."""
    rule, sep, rest = text.partition(":")
    param, eq, span = rest.partition("=")
    parts = span.split(":")
    if not (sep and eq and rule and param and len(parts) == 3):
        raise InvalidInputError(
            "expected RULE_ID:PARAM=FROM:TO:STEP, e.g. hf_burst:txn_count_10m=10:30:2", field="sweep"
        )
    try:
        lo, hi, step = (float(p) for p in parts)
    except ValueError:
        raise InvalidInputError("FROM, TO and STEP must be numbers", field="sweep") from None
    if step <= 0 or hi < lo or (hi - lo) / step > MAX_SWEEP_STEPS:
        raise InvalidInputError(
            f"need STEP > 0, FROM <= TO and at most {MAX_SWEEP_STEPS} steps", field="sweep"
        )
    count = int((hi - lo) / step + 1e-9) + 1
    values = tuple(round(lo + i * step, 10) for i in range(count))
    return Sweep(rule, param, values, target)


def _when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(
            "expected a date or time such as 2026-11-01 or 2026-11-01T08:00+08:00", field=name
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def backtest(  # noqa: PLR0917 — one parameter per option
    candidate: Annotated[Path, typer.Option(help="Candidate ruleset (YAML). / 候选规则集文件。")],
    events: Annotated[
        Path | None,
        typer.Option(
            help="Events (Parquet or JSON Lines from `thawline simulate`); default: the database. "
            "/ 事件文件，缺省读数据库。"
        ),
    ] = None,
    live: Annotated[
        Path | None,
        typer.Option(
            help="Compare with this ruleset instead of the active one. / 用此规则集代替当前生效规则集。"
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Count events from (ISO date/time; UTC if no zone). / 起始时间。")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Count events before (ISO date/time). / 截止时间。")
    ] = None,
    sweep: Annotated[
        str | None,
        typer.Option(help="Sweep a threshold: RULE_ID:PARAM=FROM:TO:STEP. / 阈值扫描。"),
    ] = None,
    target_wrongful: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Target wrongful-freeze rate for the sweep. / 目标误冻率。"),
    ] = 0.05,
    output: Annotated[Format, typer.Option("--format", help="table or json. / 输出格式。")] = Format.TABLE,
    record: Annotated[
        bool, typer.Option(help="Log the what-if in the operation log (database). / 记入操作日志。")
    ] = True,
) -> None:
    """Replay events through a candidate ruleset and the live one, and compare. / 规则回测与假设分析。

    Shows freezes added and removed (which accounts), per-rule changes, the wrongful-freeze rate from
    known outcomes (simulator labels next to the events file, or appeal decisions in the database),
    precision and recall when every label is known, and, with --sweep, the recommended threshold for
    --target-wrongful. Nothing is changed; with a database the run itself is logged (rules.backtested).
    """
    try:
        cand_text = candidate.read_text("utf-8")
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot read {candidate}: {exc.strerror}", param_hint="--candidate"
        ) from None
    with runtime() as rt:
        cand = service.parse_ruleset(cand_text, field="candidate")
        plan = parse_sweep(sweep, target_wrongful) if sweep else None
        start, end = _when(since, "since"), _when(until, "until")
        version, live_rules = _live(rt, live)
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[stage]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("backtest / 回测", total=9, stage="load")

            def tick(stage: str, done: int, total: int) -> None:
                if total:
                    bar.update(task, completed=done + 1, total=total + 1, stage=stage)
                else:
                    bar.update(task, stage=f"{stage} {done:,}")

            history = (
                service.load_files(events, start, end)
                if events is not None
                else service.load_database(rt, start, end, progress=tick)
            )
            bar.update(task, completed=1, stage="features")
            report = service.run(history, live_rules, cand, sweep=plan, progress=tick)
        report["live"]["version"] = version
        if record:
            service.record(rt, CLI_ACTOR, report, version)
    if output is Format.JSON:
        print_json(report)
    else:
        _print_table(report)


def _live(rt: Runtime, path: Path | None) -> tuple[int | None, Any]:
    if path is None:
        return service.live_ruleset(rt)
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint="--live") from None
    return None, service.parse_ruleset(text, field="live")


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def _print_table(report: dict[str, Any]) -> None:
    out = Console()
    head = f"{report['events']:,} events, {report['accounts']:,} accounts ({report['source']})"
    out.print(f"[bold]Backtest / 回测[/bold]: {head}")
    summary = Table("", "live / 当前", "candidate / 候选")
    for label, key in (("frozen accounts / 冻结账户", "frozen_accounts"), ("wrongful / 误冻", "wrongful")):
        summary.add_row(label, str(report["live"][key]), str(report["candidate"][key]))
    for label, key in (
        ("wrongful-freeze rate / 误冻率", "wrongful_freeze_rate"),
        ("precision / 精确率", "precision"),
        ("recall / 召回率", "recall"),
    ):
        summary.add_row(label, _rate(report["live"].get(key)), _rate(report["candidate"].get(key)))
    out.print(summary)
    for label, key, wrong in (
        ("freezes added / 新增冻结", "freezes_added", "added_wrongful"),
        ("freezes removed / 减少冻结", "freezes_removed", "removed_wrongful"),
    ):
        sample = " ".join(report[key]["sample"][:10])
        out.print(f"{label}: {report[key]['accounts']} (wrongful / 误冻 {report[wrong]}) {sample}")
    rules = Table("rule / 规则", "live accounts", "candidate accounts", "+", "-", "wrongful rate (cand.)")
    for r in report["rules"]:
        if not r["changed"]:
            continue
        lv, cd = r["live"], r["candidate"]
        rules.add_row(
            r["rule"],
            str(lv["accounts"]) if lv else "—",
            str(cd["accounts"]) if cd else "—",
            str(len(r["accounts_added"])),
            str(len(r["accounts_removed"])),
            _rate(cd["wrongful_rate"]) if cd else "—",
        )
    if rules.row_count:
        out.print(rules)
    if "sweep" in report:
        sw = report["sweep"]
        table = Table(
            "value / 阈值",
            "accounts",
            "rightful",
            "wrongful",
            "wrongful rate",
            "ruleset frozen",
            title=f"sweep {sw['rule']}:{sw['param']}",
        )
        for row in sw["rows"]:
            mark = " ←" if row["value"] == sw["recommended"] else ""
            table.add_row(
                f"{row['value']:g}{mark}",
                *(str(row[k]) for k in ("accounts", "rightful", "wrongful")),
                _rate(row["wrongful_freeze_rate"]),
                str(row["ruleset_frozen_accounts"]),
            )
        out.print(table)
        if sw["recommended"] is None:
            out.print(f"no value meets the target {sw['target_wrongful']:.2%} / 没有满足目标误冻率的阈值")
        else:
            out.print(f"recommended / 建议: {sw['recommended']:g} → {sw['recommended_condition']}")
