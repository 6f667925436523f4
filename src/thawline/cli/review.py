"""``thawline review``: the review queue, claiming and assigning cases, decisions, conflicts of interest.

The CLI is an operator tool. A command that acts as a reviewer names them with
``--as reviewer:<id>``; commands that do not (assigning, declaring a conflict) act as the CLI.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from thawline.cli.common import CLI_ACTOR, console, print_json, runtime
from thawline.domain.appeals import Appeal, AppealStatus
from thawline.domain.review import REASON_CODES, Decision
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import appeals, freezes, review
from thawline.services.unit_of_work import UnitOfWork

review_app = typer.Typer(
    help="Review appeals: queue, claim, decide, four eyes. / 申诉审核：队列、领取、决定、双人复核。",
    no_args_is_help=True,
)
# Tables are the command's output, so they go to stdout (messages go to stderr).
out = Console()

AppealArg = Annotated[str, typer.Argument(help="The appeal id, e.g. apl_0123456789abcdef. / 申诉编号。")]
AsOption = Annotated[
    str,
    typer.Option(
        "--as",
        metavar="reviewer:<id>",
        help="The reviewer acting, e.g. reviewer:rv_1. / 操作审核员。",
    ),
]


def reviewer_actor(value: str, param_hint: str = "--as") -> Actor:
    """The reviewer named by ``--as reviewer:<id>`` (or another option, named by ``param_hint``)."""
    kind, sep, ident = value.partition(":")
    if not sep or kind != ActorKind.REVIEWER.value or not ident.strip():
        raise typer.BadParameter(
            "name the reviewer as 'reviewer:<id>', e.g. reviewer:rv_1", param_hint=param_hint
        )
    return Actor(ActorKind.REVIEWER, ident.strip())


def _ts(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def appeal_json(a: Appeal) -> dict[str, Any]:
    """The staff view of an appeal as JSON."""
    return {
        "id": a.id,
        "freeze_id": a.freeze_id,
        "account_id": a.account_id,
        "round": a.round,
        "status": a.status.value,
        "explanation": a.explanation,
        "contact_channel": a.contact_channel,
        "created_by": a.created_by,
        "created_at": a.created_at.isoformat(),
        "submitted_at": _ts(a.submitted_at),
        "first_response_due": _ts(a.first_response_due),
        "first_responded_at": _ts(a.first_responded_at),
        "escalated_at": _ts(a.escalated_at),
        "expedited": a.expedited,
        "assignee": a.assignee,
        "claimed_at": _ts(a.claimed_at),
        "first_approver": a.first_approver,
        "decided_at": _ts(a.decided_at),
        "idle_expires_at": _ts(a.idle_expires_at),
    }


def _review_json(r: review.Review) -> dict[str, Any]:
    return {
        "id": r.id,
        "kind": r.kind,
        "reviewer": r.reviewer,
        "decision": r.decision.value,
        "reason_codes": list(r.reason_codes),
        "note": r.note,
        "confidence": None if r.confidence is None else str(r.confidence),
        "findings": r.findings,
        "agrees_with_machine": r.agrees_with_machine,
        "created_at": r.created_at.isoformat(),
    }


@review_app.command("queue")
def queue(
    mine: Annotated[
        str | None,
        typer.Option(
            "--mine", metavar="reviewer:<id>", help="Only cases held by this reviewer. / 我的案件。"
        ),
    ] = None,
    unassigned: Annotated[bool, typer.Option(help="Only cases nobody holds. / 仅未分配。")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many cases. / 数量上限。")] = 100,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output. / JSON 输出。")] = False,
) -> None:
    """Open cases: expedited first, then by first-response deadline. / 待审核队列。"""
    assignee = None if mine is None else reviewer_actor(mine, "--mine").ref
    with runtime() as rt, UnitOfWork(rt, read_only=True) as uow:
        items = review.queue(uow, assignee=assignee, unassigned=unassigned, limit=limit)
    if json_out:
        print_json(
            [
                appeal_json(i.appeal)
                | {
                    "category": i.category,
                    "high_severity": i.high_severity,
                    "breached": i.breached,
                    "machine_recommendation": None if i.machine is None else i.machine.value,
                }
                for i in items
            ]
        )
        return
    table = Table()
    for name in ("appeal", "account"):
        table.add_column(name, no_wrap=True)  # ids are copied from here: never fold them
    for name in ("category", "status", "assignee", "due (UTC)", "flags", "machine"):
        table.add_column(name)
    for i in items:
        a = i.appeal
        flags = [
            name
            for name, on in (
                ("expedited", a.expedited),
                ("4-eyes", i.high_severity),
                ("BREACHED", i.breached),
            )
            if on
        ]
        table.add_row(
            a.id,
            a.account_id,
            i.category,
            a.status.value,
            a.assignee or "",
            f"{a.first_response_due:%Y-%m-%d %H:%M}" if a.first_response_due else "",
            " ".join(flags),
            i.machine.value if i.machine else "",
        )
    out.print(table)
    console.print(f"{len(items)} case(s)")


@review_app.command("claim")
def claim(appeal_id: AppealArg, acting: AsOption) -> None:
    """Take an unassigned case (counts as the first response). / 领取案件。"""
    reviewer = reviewer_actor(acting)
    with runtime() as rt, UnitOfWork(rt) as uow:
        after = review.claim(uow, appeal_id, reviewer)
        uow.commit()
    console.print(f"{after.id} held by {after.assignee} ({after.status.value})")


@review_app.command("assign")
def assign(
    appeal_id: AppealArg,
    reviewer: Annotated[
        str, typer.Argument(metavar="reviewer:<id>", help="Who gets the case, e.g. reviewer:rv_2. / 指派给。")
    ],
) -> None:
    """Give a case to a reviewer, taking it from whoever held it (a lead's action). / 指派案件。"""
    with runtime() as rt, UnitOfWork(rt) as uow:
        after = review.assign(uow, appeal_id, reviewer, CLI_ACTOR)
        uow.commit()
    console.print(f"{after.id} assigned to {after.assignee} ({after.status.value})")


@review_app.command("unclaim")
def unclaim(
    appeal_id: AppealArg,
    acting: Annotated[
        str | None,
        typer.Option(
            "--as",
            metavar="reviewer:<id>",
            help="The reviewer giving the case back. / 归还案件的审核员。",
        ),
    ] = None,
    lead: Annotated[
        bool, typer.Option(help="Put back a case someone else holds (a lead's action). / 组长收回。")
    ] = False,
) -> None:
    """Put a case back in the queue. / 退回队列。"""
    if acting is None and not lead:
        raise typer.BadParameter(
            "say who gives the case back: --as reviewer:<id> (or --lead)", param_hint="--as"
        )
    actor = CLI_ACTOR if acting is None else reviewer_actor(acting)
    with runtime() as rt, UnitOfWork(rt) as uow:
        after = review.unclaim(uow, appeal_id, actor, lead=lead)
        uow.commit()
    console.print(f"{after.id} is back in the queue ({after.status.value})")


def _codes_help() -> str:
    known = "; ".join(f"{d.value}: {', '.join(sorted(REASON_CODES[d]))}" for d in Decision)
    return f"A reason code; repeat for more ({known}). / 原因代码，可重复。"


@review_app.command("decide")
def decide(
    appeal_id: AppealArg,
    decision: Annotated[Decision, typer.Argument(help="approve, reject or needs_more_info. / 审核决定。")],
    *,
    reason: Annotated[list[str], typer.Option("--reason", metavar="CODE", help=_codes_help())],
    acting: AsOption,
    note: Annotated[
        str, typer.Option(help="The reviewer's note (the log keeps its hash). / 审核备注。")
    ] = "",
) -> None:
    """Decide a case you hold; high-severity approvals need a second reviewer. / 作出审核决定。"""
    reviewer = reviewer_actor(acting)
    with runtime() as rt, UnitOfWork(rt) as uow:
        after = review.decide(
            uow, appeal_id, decision, reason_codes=tuple(reason), note=note, reviewer=reviewer
        )
        uow.commit()
    if after.status is AppealStatus.SECOND_APPROVAL:
        console.print(f"{after.id}: first approval recorded; a second, different reviewer must approve")
    else:
        console.print(f"{after.id} {after.status.value}")
    if after.status is AppealStatus.APPROVED:
        console.print(f"second verification opened: thawline verification show {after.id}")


@review_app.command("show")
def show(appeal_id: AppealArg) -> None:
    """An appeal and every review of it: the machine's, the people's, where they disagree. / 查看审核记录。"""
    with runtime() as rt, UnitOfWork(rt, read_only=True) as uow:
        a = appeals.get(uow, appeal_id)
        frozen = freezes.get(uow, a.freeze_id)
        opinions = review.reviews(uow, appeal_id)
        high = frozen.category in rt.high_severity
    machine = [r for r in opinions if r.kind == "machine"]
    humans = [r for r in opinions if r.kind != "machine"]
    print_json(
        {
            "appeal": appeal_json(a),
            "freeze": {"id": frozen.id, "category": frozen.category.value, "status": frozen.status.value},
            "four_eyes": high,
            "reviews": [_review_json(r) for r in opinions],
            "machine_recommendation": machine[-1].decision.value if machine else None,
            "human_decisions": [r.decision.value for r in humans],
            "disagreements": [
                {"reviewer": r.reviewer, "decision": r.decision.value, "review_id": r.id}
                for r in humans
                if r.agrees_with_machine is False
            ],
        }
    )


@review_app.command("conflict")
def conflict(
    reviewer: Annotated[
        str,
        typer.Argument(metavar="reviewer:<id>", help="The linked reviewer, e.g. reviewer:rv_2. / 审核员。"),
    ],
    account_id: Annotated[str, typer.Argument(help="The account they are linked to. / 关联账户。")],
    note: Annotated[
        str, typer.Option(help="How they are linked (the log keeps its hash). / 关联说明。")
    ] = "",
) -> None:
    """Declare that a reviewer is linked to an account and must not review it. / 登记利益冲突。"""
    with runtime() as rt, UnitOfWork(rt) as uow:
        added = review.declare_conflict(uow, reviewer, account_id, note, CLI_ACTOR)
        uow.commit()
    if added:
        console.print(f"{reviewer} may no longer review {account_id}")
    else:
        console.print(f"{reviewer} was already recorded as linked to {account_id}")
