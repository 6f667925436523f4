"""``thawline log``: verify, checkpoints, proofs, offline checks, export, retention."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from thawline.cli.common import CLI_ACTOR, console, print_json, runtime
from thawline.i18n import pick_language, t
from thawline.oplog import bundles
from thawline.oplog.entry import decode_entry
from thawline.oplog.note import Verifier, parse_vkey
from thawline.services import proofs, retention
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.verify import verify_log

log_app = typer.Typer(help="The tamper-evident operation log. / 防篡改操作日志。", no_args_is_help=True)
prove_app = typer.Typer(
    help="Produce proofs an auditor can check offline. / 生成证明。", no_args_is_help=True
)
hold_app = typer.Typer(help="Legal holds that extend retention. / 法律保全。", no_args_is_help=True)
log_app.add_typer(prove_app, name="prove")
log_app.add_typer(hold_app, name="hold")

VkeyOption = Annotated[
    list[str] | None,
    typer.Option(
        "--vkey", help="Verifier key (name+id+key) to trust; repeat for several. Default: this log's."
    ),
]


def _verifiers(vkeys: list[str] | None) -> list[Verifier] | None:
    if not vkeys:
        return None
    try:
        return [parse_vkey(v) for v in vkeys]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--vkey") from exc


@log_app.command("verify")
def verify(
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    deep: Annotated[
        bool, typer.Option(help="Also parse every entry: canonical form, seq, time order.")
    ] = False,
    vkey: VkeyOption = None,
) -> None:
    """Recompute chain and Merkle roots from the stored bytes and check every checkpoint. / 校验日志。"""
    lang = pick_language(None)
    with runtime() as rt:
        show = not json_out and sys.stderr.isatty()
        with Progress(
            TextColumn("verifying"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not show,
            transient=True,
        ) as bar:
            task = bar.add_task("verify", total=None)
            report = verify_log(
                rt,
                verifiers=_verifiers(vkey),
                deep=deep,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    result: dict[str, Any] = {
        "ok": report.ok,
        "entries": report.entries,
        "checkpoints": report.checkpoints,
        "root": report.root.hex(),
    }
    if report.problem is not None:
        result["problem"] = {"seq": report.problem.seq, "what": report.problem.what}
    if json_out:
        print_json(result)
    elif report.problem is None:
        print(
            t(
                "verify_ok",
                lang,
                entries=report.entries,
                checkpoints=report.checkpoints,
                root=report.root.hex(),
            )
        )
    else:
        print(t("verify_fail", lang, seq=report.problem.seq, what=report.problem.what))
    if not report.ok:
        raise typer.Exit(1)


@log_app.command("checkpoint")
def checkpoint() -> None:
    """Sign a checkpoint of the current tree now. / 立即签署检查点。"""
    with runtime() as rt, UnitOfWork(rt) as uow:
        cp = rt.log.checkpoint(uow)
        uow.commit()
    if cp is None:
        console.print("the log is empty; nothing to sign")
        raise typer.Exit(1)
    sys.stdout.write(cp.note)


@log_app.command("public-key")
def public_key(
    pem: Annotated[bool, typer.Option(help="PEM (SubjectPublicKeyInfo) instead of a vkey.")] = False,
) -> None:
    """Print the checkpoint verification key for auditors. / 导出公钥。"""
    with runtime() as rt:
        print(rt.public_key_pem().decode().strip() if pem else rt.signer.vkey)


def _emit(doc: dict[str, Any], out: Path | None) -> None:
    data = orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
    if out is None:
        sys.stdout.write(data.decode())
    else:
        out.write_bytes(data)


@prove_app.command("inclusion")
def prove_inclusion(
    seq: Annotated[int, typer.Argument(help="Sequence number of the entry.")],
    tree_size: Annotated[int | None, typer.Option(help="Prove against this checkpoint size.")] = None,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Write the bundle here.")] = None,
) -> None:
    """Inclusion bundle for one entry. / 包含性证明。"""
    with runtime() as rt, UnitOfWork(rt, read_only=True) as uow:
        _emit(proofs.inclusion(uow, seq, tree_size), out)


@prove_app.command("consistency")
def prove_consistency(
    old_size: Annotated[int, typer.Argument(help="Older checkpoint size.")],
    new_size: Annotated[int | None, typer.Argument(help="Newer checkpoint size (default: latest).")] = None,
    out: Annotated[Path | None, typer.Option("-o", "--out")] = None,
) -> None:
    """Consistency bundle between two checkpoints. / 一致性证明。"""
    with runtime() as rt, UnitOfWork(rt, read_only=True) as uow:
        _emit(proofs.consistency(uow, old_size, new_size), out)


@log_app.command("check")
def check(
    path: Annotated[Path, typer.Argument(help="A bundle (.json) or an export (.jsonl).", exists=True)],
    vkey: Annotated[list[str], typer.Option("--vkey", help="The log's verifier key (required: offline).")],
) -> None:
    """Check a proof bundle or export offline, with only the public key (no database). / 离线验证。"""
    lang = pick_language(None)
    verifiers = _verifiers(vkey) or []
    text = path.read_bytes()
    try:
        first = (
            orjson.loads(text.split(b"\n", 1)[0])
            if text.lstrip().startswith(b'{"type":"thawline.export')
            else None
        )
        if first is not None:
            lines = (orjson.loads(line) for line in text.splitlines() if line.strip())
            count = bundles.check_export(lines, verifiers)
            what = f"export of {count} entries, chain and proofs against tree size {first['tree_size']}"
        else:
            doc = orjson.loads(text)
            if doc.get("type") == bundles.CONSISTENCY:
                old, new = bundles.check_consistency(doc, verifiers)
                what = f"tree {new.size} ({new.root.hex()}) extends tree {old.size} ({old.root.hex()})"
            else:
                checked = bundles.check_inclusion(doc, verifiers)
                action = decode_entry(checked.data).get("action")
                what = f"entry {checked.seq} ({action}) is in signed tree of size {checked.checkpoint.size}"
    except (bundles.BundleError, orjson.JSONDecodeError, ValueError) as exc:
        print(t("proof_fail", lang, what=exc))
        raise typer.Exit(1) from exc
    print(t("proof_ok", lang, what=what))


@log_app.command("export")
def export(
    out: Annotated[Path, typer.Option("-o", "--out", help="JSON Lines file to write.")],
    from_seq: Annotated[int, typer.Option("--from", help="First sequence number.")] = 0,
    to_seq: Annotated[
        int | None, typer.Option("--to", help="Exclusive end (default: latest checkpoint).")
    ] = None,
) -> None:
    """Export a range with proofs and its covering checkpoint. / 导出日志及证明。"""
    count = 0
    with runtime() as rt, UnitOfWork(rt, read_only=True) as uow, out.open("wb") as handle:
        for line in proofs.export(uow, from_seq, to_seq, rt.settings.log_origin):
            handle.write(orjson.dumps(line) + b"\n")
            count += 1
    console.print(f"wrote {count - 1} entries to {out}")


@log_app.command("show")
def show(
    account: Annotated[str | None, typer.Option(help="Only entries about this account.")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action, e.g. account.frozen.")] = None,
    from_seq: Annotated[int, typer.Option("--from")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 50,
) -> None:
    """Print entries as JSON Lines. / 查看日志。"""
    with runtime() as rt, UnitOfWork(rt, read_only=True) as uow:
        for _seq, data, _chain in uow.oplog.entries(
            start=from_seq, account_id=account, action=action, limit=limit
        ):
            sys.stdout.write(bytes(data).decode() + "\n")


@log_app.command("retention")
def retention_status(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Retention period, oldest entry and active legal holds. / 保留期限。"""
    with runtime() as rt, UnitOfWork(rt, read_only=True) as uow:
        st = retention.status(uow)
    doc = {
        "retention_days": st.retention_days,
        "entries": st.entries,
        "oldest_entry_at": st.oldest_entry_at.isoformat() if st.oldest_entry_at else None,
        "oldest_kept_until": st.keep_until.isoformat() if st.keep_until else None,
        "past_retention_before": st.eligible_before.isoformat() if st.eligible_before else None,
        "held_accounts": st.held_accounts,
        "active_holds": [
            {"id": h.id, "account_id": h.account_id, "reason": h.reason} for h in st.active_holds
        ],
        "deletes": "never automatic; triggers refuse UPDATE and DELETE on the log",
    }
    print_json(doc) if json_out else console.print(doc)


@hold_app.command("add")
def hold_add(
    reason: Annotated[str, typer.Option(help="Why, e.g. the case or order number.")],
    account: Annotated[str | None, typer.Option(help="Account to hold (default: the whole log).")] = None,
) -> None:
    """Place a legal hold. / 设置法律保全。"""
    with runtime() as rt, UnitOfWork(rt) as uow:
        hold = retention.place_hold(uow, account, reason, CLI_ACTOR)
        uow.commit()
    print(hold.id)


@hold_app.command("list")
def hold_list(
    all_holds: Annotated[bool, typer.Option("--all", help="Include released holds.")] = False,
) -> None:
    """List legal holds. / 列出法律保全。"""
    with runtime() as rt, UnitOfWork(rt, read_only=True) as uow:
        found = retention.holds(uow, active_only=not all_holds)
    print_json(
        [
            {
                "id": h.id,
                "account_id": h.account_id,
                "reason": h.reason,
                "created_by": h.created_by,
                "created_at": h.created_at.isoformat(),
                "released_at": h.released_at.isoformat() if h.released_at else None,
            }
            for h in found
        ]
    )


@hold_app.command("release")
def hold_release(hold_id: Annotated[str, typer.Argument()]) -> None:
    """Release a legal hold. / 解除法律保全。"""
    with runtime() as rt, UnitOfWork(rt) as uow:
        retention.release_hold(uow, hold_id, CLI_ACTOR)
        uow.commit()
    console.print(f"released {hold_id}")
