"""``thawline account`` and ``thawline freeze``: look at accounts, lift freezes, check an operation."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated

import typer

from thawline.cli.common import CLI_ACTOR, console, print_json, runtime
from thawline.domain import authorization
from thawline.domain.freezes import Direction, Freeze, Operation
from thawline.services import accounts, freezes, selfservice, timeline
from thawline.services.unit_of_work import UnitOfWork

account_app = typer.Typer(help="Accounts and their freezes. / 账户与冻结。", no_args_is_help=True)
freeze_app = typer.Typer(help="Freezes. / 冻结。", no_args_is_help=True)


def _freeze_json(f: Freeze, lang: str) -> dict[str, object]:
    return {
        "id": f.id,
        "status": f.status.value,
        "restriction": f.restriction.as_json(),
        "category": f.category.value,
        "reason_codes": list(f.reason_codes),
        "source": f"{f.source.value}:{f.source_ref}",
        "internal_reason": f.internal_reason,
        "holder_reason": f.holder_facing_reason(lang),
        "created_at": f.created_at.isoformat(),
        "review_by": f.review_by.isoformat(),
        "expires_at": f.expires_at.isoformat() if f.expires_at else None,
        "ended_at": f.ended_at.isoformat() if f.ended_at else None,
    }


@account_app.command("show")
def show(account_id: Annotated[str, typer.Argument(help="The account id.")]) -> None:
    """An account, its derived status and every freeze (staff view). / 查看账户。"""
    with runtime() as rt, UnitOfWork(rt, read_only=True) as uow:
        view = accounts.get(uow, account_id)
        all_freezes = freezes.list_freezes(uow, account_id)
        print_json(
            {
                "id": view.id,
                "status": authorization.status(all_freezes, rt.clock.now()).value,
                "kyc_level": view.kyc_level,
                "vip_tier": view.vip_tier,
                "language": view.language,
                "created_at": view.created_at.isoformat(),
                "freezes": [_freeze_json(f, view.language) for f in all_freezes],
            }
        )


@account_app.command("timeline")
def show_timeline(
    account_id: Annotated[str, typer.Argument(help="The account id.")],
    audience: Annotated[
        timeline.Audience, typer.Option(help="holder: plain and filtered; staff: every entry.")
    ] = (timeline.Audience.STAFF),
    lang: Annotated[str | None, typer.Option(help="zh-CN or en (default: the account's language).")] = None,
) -> None:
    """What happened to the account, from the operation log. / 账户时间线。"""
    with runtime() as rt, UnitOfWork(rt, read_only=True) as uow:
        for item in timeline.timeline(uow, account_id, audience, lang):
            print(f"{item.seq:>8}  {item.ts:%Y-%m-%d %H:%M:%S}Z  {item.action:<20} {item.summary}")


@account_app.command("authorize")
def authorize(
    account_id: Annotated[str, typer.Argument(help="The account id.")],
    *,
    amount: Annotated[str, typer.Option(help="Decimal amount, e.g. 88.50.")],
    currency: Annotated[str, typer.Option(help="ISO 4217 code, e.g. CNY.")] = "CNY",
    direction: Annotated[
        Direction, typer.Option(help="debit (money out) or credit (money in).")
    ] = Direction.DEBIT,
    channel: Annotated[str | None, typer.Option()] = None,
    counterparty: Annotated[str | None, typer.Option()] = None,
) -> None:
    """May the account do this now? Exit status 0 if allowed, 3 if denied. / 交易授权检查。"""
    try:
        value = Decimal(amount)
    except InvalidOperation as exc:
        raise typer.BadParameter("not a decimal amount", param_hint="--amount") from exc
    op = Operation(direction, value, currency.upper(), channel=channel, counterparty=counterparty)
    with runtime() as rt, UnitOfWork(rt, read_only=True) as uow:
        decision = freezes.authorize(uow, account_id, op)
    print_json(
        {
            "allowed": decision.allowed,
            "code": decision.code,
            "freeze_id": decision.freeze_id,
            "category": decision.category,
            "holder_reason": decision.holder_reason,
        }
    )
    if not decision.allowed:
        raise typer.Exit(3)


@account_app.command("kyc")
def kyc(
    account_id: Annotated[str, typer.Argument(help="The account id. / 账户编号。")],
    level: Annotated[str, typer.Argument(help="none, basic or full. / KYC 等级。")],
) -> None:
    """Record a new KYC level; full KYC lifts finish-KYC freezes (self-service). / 更新 KYC 等级。"""
    with runtime() as rt, UnitOfWork(rt) as uow:
        released = selfservice.update_kyc(uow, account_id, level, CLI_ACTOR)
        view = accounts.get(uow, account_id)
        uow.commit()
    for f in released:
        console.print(f"released {f.id} ({f.category.value})")
    print_json(
        {
            "account_id": account_id,
            "kyc_level": level,
            "released": [_freeze_json(f, view.language) for f in released],
        }
    )


def _aware(value: str, param_hint: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(
            "not an ISO 8601 time, e.g. 2026-03-01T09:00:00Z", param_hint=param_hint
        ) from exc
    if parsed.tzinfo is None:
        raise typer.BadParameter(
            "give a time zone, e.g. 2026-03-01T09:00:00+08:00 or …Z", param_hint=param_hint
        )
    return parsed


@freeze_app.command("rereview")
def rereview(
    freeze_id: Annotated[str, typer.Argument(help="The freeze id. / 冻结编号。")],
    *,
    keep: Annotated[
        bool, typer.Option("--keep/--release", help="Keep the freeze, or release it. / 维持或解除。")
    ],
    note: Annotated[str, typer.Option(help="What the re-review found (recorded in the log). / 复查结论。")],
    next_review_by: Annotated[
        str | None,
        typer.Option(
            metavar="ISO-8601",
            help="With --keep: the next re-review date, with a time zone. / 下次复查时间。",
        ),
    ] = None,
) -> None:
    """Re-examine a freeze: keep it until a new re-review date, or release it. / 复查冻结。"""
    if not keep and next_review_by is not None:
        raise typer.BadParameter("--next-review-by goes with --keep", param_hint="--next-review-by")
    if keep and next_review_by is None:
        raise typer.BadParameter("keeping a freeze needs --next-review-by", param_hint="--next-review-by")
    when = None if next_review_by is None else _aware(next_review_by, "--next-review-by")
    with runtime() as rt, UnitOfWork(rt) as uow:
        after = freezes.rereview(uow, freeze_id, keep=keep, next_review_by=when, note=note, actor=CLI_ACTOR)
        uow.commit()
    if keep:
        console.print(f"kept {after.id}; next re-review by {after.review_by.isoformat()}")
    else:
        console.print(f"released {after.id} on {after.account_id}")


@freeze_app.command("release")
def release(
    freeze_id: Annotated[str, typer.Argument(help="The freeze id, e.g. frz_0123456789abcdef.")],
    reason: Annotated[str, typer.Option(help="Why the freeze is lifted (recorded in the log).")],
) -> None:
    """Lift one freeze (AML, blacklist, linked-risk, regulator: reviewed appeal only). / 解除冻结。"""
    with runtime() as rt, UnitOfWork(rt) as uow:
        released = freezes.release(uow, freeze_id, CLI_ACTOR, reason)
        uow.commit()
    console.print(f"released {released.id} on {released.account_id}")
