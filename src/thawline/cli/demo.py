"""``thawline demo``: a month of simulated life in an empty database (``make run`` does this first)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import func, select

from thawline.adapters.db.schema import account
from thawline.cli.common import console
from thawline.cli.report import print_tables
from thawline.config import Settings
from thawline.domain.clock import FakeClock
from thawline.domain.errors import ThawlineError
from thawline.i18n import pick_language
from thawline.services import analytics
from thawline.services import demo as demo_service
from thawline.services.runtime import Runtime, build_runtime
from thawline.services.unit_of_work import UnitOfWork


class BarProgress:
    """The demo's phases as rich progress bars."""

    def __init__(self, bars: Progress) -> None:
        self.bars = bars
        self.task: Any = None

    def phase(self, name: str, total: int) -> None:
        """Start a bar for a new phase (the previous one is complete)."""
        if self.task is not None:
            self.bars.update(self.task, completed=self.bars.tasks[self.task].total)
        self.task = self.bars.add_task(name, total=total)

    def advance(self, units: int = 1) -> None:
        """Move the current bar."""
        if self.task is not None:
            self.bars.advance(self.task, units)


def demo(
    accounts_: Annotated[
        int, typer.Option("--accounts", min=1, max=200_000, help="Simulated holders. / 模拟账户数。")
    ] = 10_000,
    days: Annotated[int, typer.Option(min=1, max=60, help="Days of history, up to today. / 天数。")] = 30,
    seed: Annotated[
        int, typer.Option(help="Random seed: the same seed within the hour, the same demo. / 随机种子。")
    ] = 1,
) -> None:
    """Fill an empty database with a lived-in month: holders, their events through the risk engine,
    freezes, appeals filed and reviewed (vouchers, VIP expedites, second appeals, SLA escalations,
    four eyes, second verification, self-service KYC), open cases for the console; print staff
    sign-ins, an admin API key and a summary. Does nothing if accounts exist.
    / 向空数据库导入一个月的演示数据：账户、事件、冻结、申诉与审核、待处理案件，
    并打印员工登录信息与 API 密钥。"""
    settings = Settings()
    if "sqlite_synchronous" not in settings.model_fields_set:
        # A demo that dies half-way is simply built again: skip the fsync of each of its commits.
        settings = settings.model_copy(update={"sqlite_synchronous": "NORMAL"})
    # The month ends at the last full hour: the same seed within the hour builds the same demo.
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    plan = demo_service.DemoPlan(accounts=accounts_, days=days, seed=seed, end=end)
    clock = FakeClock(plan.start)
    rt = build_runtime(settings, clock=clock)
    try:
        with UnitOfWork(rt, read_only=True) as uow:
            existing = uow.conn.execute(select(func.count()).select_from(account)).scalar_one()
        if existing:
            console.print(f"demo: {existing} accounts already present; nothing loaded")
            return
        began = time.perf_counter()
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as bars:
            result = demo_service.run(rt, clock, plan, BarProgress(bars))
        elapsed = time.perf_counter() - began
        console.print(
            f"demo: {accounts_} accounts, {result.events} events over {days} day{'s' if days != 1 else ''}, "
            f"built in {elapsed:.0f} s / 演示数据已生成"
        )
        console.print("demo: seconds per phase " + ", ".join(f"{k} {v}" for k, v in result.seconds.items()))
        stories = ", ".join(f"{k} {v}" for k, v in sorted(result.stories.items()))
        if result.interrupted:  # a service refused a step (the freeze ended meanwhile): the story stops
            stories += f" ({result.interrupted} stopped early)"
        console.print(f"demo: case stories / 案件情节: {stories}", soft_wrap=True)
        print_summary(rt, since=plan.start - demo_service.SETUP_LEAD)
        _print_access(rt, result)
    except ThawlineError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    finally:
        rt.close()


def print_summary(rt: Runtime, since: datetime | None = None) -> None:
    """Print the freeze report (``thawline report``) over what the demo built, from ``since`` to now."""
    now = rt.clock.now()
    period = analytics.Period(since=since, until=now) if since else analytics.parse_period(None, None, now)
    with UnitOfWork(rt, read_only=True) as uow:
        report = analytics.build_report(uow, period)
    print_tables(report, pick_language(None), console)


def _print_access(rt: Runtime, result: demo_service.DemoResult) -> None:
    """The ways in, each shown once."""
    portal = rt.settings.portal_url.rstrip("/")
    site = portal.removesuffix("/portal")
    console.print(
        f"Staff console / 审核控制台: {site}/console — sign-ins, shown once / 员工账号（仅显示一次）:"
    )
    for login in result.staff:
        console.print(
            f"  {login.role.value:<16} {login.username:<10} password: [bold]{login.password}[/bold]"
        )
    if result.portal_link is not None:
        account_id, token, expires = result.portal_link
        console.print(
            f"Holder portal for {account_id} (one-time, until {expires:%H:%M} UTC) / 用户门户一次性链接: "
            f"{portal}/enter?token={token}",
            soft_wrap=True,
        )
    console.print(f"demo API key (admin, shown once): [bold]{result.api_key}[/bold]", soft_wrap=True)
