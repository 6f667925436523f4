"""``thawline serve``, ``db``, ``apikey`` and ``vault`` commands."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
import uvicorn
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from thawline.adapters.db.engine import create_db_engine
from thawline.adapters.db.migrate import current, upgrade
from thawline.api.app import create_app
from thawline.cli.common import CLI_ACTOR, console, print_json, runtime
from thawline.config import Settings
from thawline.services import apikeys, logs, partitioning, vault
from thawline.services.gc_pause import freeze_startup_heap
from thawline.services.runtime import build_runtime
from thawline.services.unit_of_work import UnitOfWork

db_app = typer.Typer(help="Database schema and partitions. / 数据库结构与分区。", no_args_is_help=True)
apikey_app = typer.Typer(
    help="Integrator API keys (stored hashed). / 接入方 API 密钥。", no_args_is_help=True
)
vault_app = typer.Typer(help="The personal-data vault. / 个人数据保险库。", no_args_is_help=True)


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Run the HTTP API (migrates the database and creates keys on first start). / 启动服务。"""
    rt = build_runtime()
    logs.configure(rt.settings.log_format)
    partitioning.DailyPartitions(rt).tick()  # PostgreSQL: the coming months' partitions (then daily)
    console.print(f"Thawline on http://{host}:{port}  (database: {rt.engine.url.render_as_string()})")
    try:
        # Our handler formats uvicorn's lines too; thawline.http replaces its access log.
        app = create_app(rt)
        freeze_startup_heap()  # full collections skip what lives as long as the process
        uvicorn.run(app, host=host, port=port, log_level="info", log_config=None, access_log=False)
    finally:
        rt.close()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations. / 执行迁移。"""
    settings = Settings()
    engine = create_db_engine(settings.database_url)
    upgrade(engine)
    console.print(f"database at revision {current(engine)}")
    engine.dispose()


@db_app.command("current")
def db_current() -> None:
    """Print the applied migration revision. / 显示当前版本。"""
    engine = create_db_engine(Settings().database_url)
    print(current(engine) or "empty")
    engine.dispose()


@db_app.command("partitions")
def db_partitions(
    split_default: Annotated[
        bool,
        typer.Option(
            "--split-default",
            help="Move the rows of the default partitions into monthly partitions, in one transaction "
            "(writers to events and the log wait until it commits). / 把默认分区中的行移入按月分区。",
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """PostgreSQL: list the monthly partitions of events and the log with their row counts. / 按月分区。"""
    with runtime() as rt:
        if rt.engine.dialect.name != "postgresql":
            console.print(
                "Partitions are a PostgreSQL feature: SQLite keeps events and the log in plain tables."
            )
            return
        if split_default:
            months = partitioning.default_months(rt)
            total = sum(len(m) for m in months.values())
            with Progress(
                TextColumn("moving rows out of the default partitions"),
                BarColumn(),
                MofNCompleteColumn(),
                console=console,
                disable=json_out or not sys.stderr.isatty() or total == 0,
                transient=True,
            ) as bar:
                task = bar.add_task("split", total=total)
                moved = partitioning.split_default(rt, lambda _t, _m, _n: bar.advance(task))
            for name, per_month in moved.items():
                for month, rows in per_month.items():
                    console.print(f"moved {rows} rows of {month} into {name}_{month.suffix}")
        found = partitioning.list_partitions(rt)
    if json_out:
        print_json(
            [
                {
                    "table": p.table,
                    "partition": p.name,
                    "month": None if p.month is None else str(p.month),
                    "rows": p.rows,
                }
                for p in found
            ]
        )
        return
    listing = Table("table", "partition", "month", "rows")
    for p in found:
        listing.add_row(p.table, p.name, "default" if p.month is None else str(p.month), str(p.rows))
    console.print(listing)
    defaults = sum(p.rows or 0 for p in found if p.month is None)
    if defaults and not split_default:
        console.print(
            f"{defaults} rows sit in the default partitions: `thawline db partitions --split-default` "
            "moves them into monthly partitions."
        )


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Option(help="Who the key is for, e.g. 'gateway-prod'.")],
    scope: Annotated[list[str], typer.Option(help="A scope to grant; repeat for more.")],
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Create an API key; the key is printed once and stored only as a hash. / 创建密钥。"""
    with runtime() as rt, UnitOfWork(rt) as uow:
        info, presented = apikeys.create_key(uow, name, scope, CLI_ACTOR)
        uow.commit()
    if json_out:
        print_json({"id": info.id, "name": info.name, "scopes": sorted(info.scopes), "key": presented})
    else:
        console.print(f"created {info.id} ({', '.join(sorted(info.scopes))}); store this key now:")
        print(presented)


@apikey_app.command("list")
def apikey_list(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List API keys (never their secrets). / 列出密钥。"""
    with runtime() as rt, UnitOfWork(rt, read_only=True) as uow:
        keys = apikeys.list_keys(uow)
    if json_out:
        print_json(
            [
                {
                    "id": k.id,
                    "name": k.name,
                    "scopes": sorted(k.scopes),
                    "created_at": k.created_at.isoformat(),
                    "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
                }
                for k in keys
            ]
        )
        return
    table = Table("id", "name", "scopes", "created", "revoked")
    for k in keys:
        table.add_row(
            k.id,
            k.name,
            " ".join(sorted(k.scopes)),
            f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "",
        )
    console.print(table)


@apikey_app.command("revoke")
def apikey_revoke(key_id: Annotated[str, typer.Argument(help="The key id, e.g. ak_0123456789ab.")]) -> None:
    """Revoke an API key at once. / 吊销密钥。"""
    with runtime() as rt, UnitOfWork(rt) as uow:
        apikeys.revoke_key(uow, key_id, CLI_ACTOR)
        uow.commit()
    console.print(f"revoked {key_id}")


@vault_app.command("erase")
def vault_erase(
    subject_id: Annotated[str, typer.Argument(help="The data subject id, e.g. ds_0123456789abcdef.")],
    reason: Annotated[str, typer.Option(help="Reason code, e.g. gdpr_erasure or pipl_deletion.")],
) -> None:
    """Crypto-shred a data subject: destroy its key; the log still verifies. / 删除个人数据（销毁密钥）。"""
    with runtime() as rt, UnitOfWork(rt) as uow:
        vault.erase_subject(uow, subject_id, CLI_ACTOR, reason)
        uow.commit()
    console.print(f"erased {subject_id}")
