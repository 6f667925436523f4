"""``thawline demo``: load a small simulated world into an empty database (``make run`` does this)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.progress import Progress
from sqlalchemy import func, select

from thawline.adapters.db.schema import account
from thawline.cli.common import CLI_ACTOR, console, runtime
from thawline.services import accounts, apikeys, lists
from thawline.services.engine import EVENT_ADAPTER, RiskEngine
from thawline.services.unit_of_work import UnitOfWork
from thawline.sim import SimConfig, World

DEMO = "demo-gateway"


def demo(
    accounts_: Annotated[int, typer.Option("--accounts", min=1, max=5000, help="Holders. / 账户数。")] = 200,
    days: Annotated[int, typer.Option(min=1, max=60, help="Days of activity. / 天数。")] = 7,
    seed: Annotated[int, typer.Option(help="Random seed. / 随机种子。")] = 1,
) -> None:
    """Fill an empty database with demo holders, their events, a blocklist and the engine's
    decisions, and print an admin API key for trying the API. Does nothing if accounts exist.
    / 向空数据库导入演示数据。"""
    with runtime() as rt:
        with UnitOfWork(rt, read_only=True) as uow:
            existing = uow.conn.execute(select(func.count()).select_from(account)).scalar_one()
        if existing:
            console.print(f"demo: {existing} accounts already present; nothing loaded")
            return
        start = (datetime.now(UTC) - timedelta(days=days)).date()
        world = World(SimConfig(seed=seed, accounts=accounts_, days=days, start=start))
        with UnitOfWork(rt) as uow:
            for body in world.registrations():
                holder = body["holder"]
                accounts.register(
                    uow,
                    accounts.RegisterAccount(
                        account_id=body["id"],
                        holder_name=holder["name"],
                        resident_id=holder.get("resident_id"),
                        phone=holder.get("phone"),
                        bank_cards=tuple(holder.get("bank_cards", [])),
                        kyc_level=body.get("kyc_level", "basic"),
                        vip_tier=body.get("vip_tier", 0),
                        language=body.get("language", "zh-CN"),
                        integrator="demo",
                    ),
                    CLI_ACTOR,
                )
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(("kind", "value", "reason"))
            writer.writerows((e.kind, e.value, e.reason) for e in world.blocklist)
            if world.blocklist:
                lists.import_csv(uow, text.getvalue(), "block", CLI_ACTOR, "demo-blocklist.csv")
            _info, key = apikeys.create_key(uow, DEMO, ["admin"], CLI_ACTOR)
            uow.commit()
        engine = RiskEngine(rt)
        outcomes: dict[str, int] = {}
        with Progress(transient=True, console=console) as bar:
            task = bar.add_task("demo events", total=days + 1)
            for day in world.stream():
                events = [EVENT_ADAPTER.validate_python(e) for e in day]
                for start_at in range(0, len(events), 10_000):
                    result = engine.ingest(events[start_at : start_at + 10_000], CLI_ACTOR)
                    for o in result.accepted:
                        outcomes[o.outcome] = outcomes.get(o.outcome, 0) + 1
                bar.advance(task)
        console.print(f"demo: {accounts_} accounts, {sum(outcomes.values())} events, outcomes {outcomes}")
        console.print(f"demo API key (admin, shown once): [bold]{key}[/bold]")
