"""``thawline lists``: import block- and allow-lists from CSV, show entries (never values), remove them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from thawline.cli.common import CLI_ACTOR, console, print_json, runtime
from thawline.domain.lists import Kind, ListType
from thawline.services import lists
from thawline.services.unit_of_work import UnitOfWork

lists_app = typer.Typer(help="Block- and allow-lists. / 黑名单与白名单。", no_args_is_help=True)


def _entry_json(e: lists.ListEntry) -> dict[str, object]:
    return {
        "id": e.id,
        "list_type": e.list_type,
        "kind": e.kind,
        "masked_name": e.masked_name,
        "reason": e.reason,
        "version": e.version,
        "added_by": e.added_by,
        "added_at": e.added_at.isoformat(),
        "active": e.active,
        "removed_at": e.removed_at.isoformat() if e.removed_at else None,
        "removed_by": e.removed_by,
        "removal_reason": e.removal_reason,
        "erroneous": e.erroneous,
    }


@lists_app.command("import")
def import_file(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="CSV file, UTF-8, columns kind,value,reason. / CSV 文件（kind,value,reason）。",
        ),
    ],
    list_type: Annotated[
        ListType, typer.Option("--list", help="block or allow. / 黑名单（block）或白名单（allow）。")
    ],
) -> None:
    """Import a CSV as a new list version; bad lines are reported and skipped. / 导入名单。

    Exit status 1 if no line was valid.
    """
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise typer.BadParameter("the file is not UTF-8 text", param_hint="FILE") from exc
    with runtime() as rt, UnitOfWork(rt) as uow:
        try:
            result = lists.import_csv(uow, text, list_type, CLI_ACTOR, file.name)
        except lists.ListImportError as exc:
            for e in exc.errors:
                console.print(f"line {e.line}: {e.field}: {e.message}")
            raise
        uow.commit()
    for e in result.errors:
        console.print(f"[yellow]skipped[/yellow] line {e.line}: {e.field}: {e.message}")
    print_json(
        {
            "version": result.version,
            "list_type": result.list_type,
            "imported": result.imported,
            "duplicates": result.duplicates,
            "rejected": len(result.errors),
            "by_kind": result.by_kind,
        }
    )


@lists_app.command("show")
def show(
    kind: Annotated[
        Kind | None, typer.Option(help="Only this kind, e.g. phone or name. / 仅显示此类型。")
    ] = None,
    list_type: Annotated[
        ListType | None, typer.Option("--list", help="block or allow (default both). / 名单类型。")
    ] = None,
    include_removed: Annotated[
        bool, typer.Option("--removed", help="Also removed entries. / 包括已移除条目。")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many. / 最多条数。")] = 100,
) -> None:
    """List entries, newest first, without their values (names masked). / 查看名单条目（不显示值）。"""
    with runtime() as rt, UnitOfWork(rt, read_only=True) as uow:
        entries = lists.list_entries(
            uow, list_type=list_type, kind=kind, include_removed=include_removed, limit=limit
        )
        version = lists.current_version(uow)
    print_json({"version": version, "entries": [_entry_json(e) for e in entries]})


@lists_app.command("remove")
def remove(
    entry_id: Annotated[str, typer.Argument(help="The entry id, e.g. le_0123456789abcdef. / 条目编号。")],
    reason: Annotated[str, typer.Option(help="Why it is removed (recorded in the log). / 移除原因。")],
    erroneous: Annotated[
        bool,
        typer.Option(
            "--erroneous",
            help="The entry was wrong (bad third-party data): re-review or release the freezes it "
            "caused, per THAWLINE_LIST_REMOVAL_ACTION. / 条目有误：复审或解除其导致的冻结。",
        ),
    ] = False,
) -> None:
    """Remove an entry from its list (a new version). / 移除名单条目。"""
    with runtime() as rt, UnitOfWork(rt) as uow:
        result = lists.remove_entry(uow, entry_id, erroneous=erroneous, reason=reason, actor=CLI_ACTOR)
        uow.commit()
    for a in result.affected:
        console.print(f"{a.action} {a.freeze_id} on {a.account_id}")
    print_json(
        {
            "entry": _entry_json(result.entry),
            "version": result.version,
            "freezes": [
                {"freeze_id": a.freeze_id, "account_id": a.account_id, "action": a.action}
                for a in result.affected
            ],
        }
    )
