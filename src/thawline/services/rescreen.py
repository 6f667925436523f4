"""Re-screening: every account re-evaluated against the current lists and ruleset (an AML policy update).

A job walks the accounts in id order, a chunk per unit of work. For each account it checks the
holder's identifiers against the block-list, and replays the account's stored events of the last
30 days through fresh features and the active ruleset. A rule that now acts (freeze or restrict),
or a block-list match, freezes the account with source ``policy_rescreen`` — unless a freeze from
the same rule is already active. The job's cursor and counters move in the same transaction as the
chunk's freezes, so a job stopped at any point resumes where it left off, and a chunk is never
applied twice. Each chunk and the end of the job are logged.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, func, insert, select, update

from thawline.adapters.db.schema import account, event, rescreen_job, rule_suppression
from thawline.adapters.db.schema import freeze as freeze_table
from thawline.domain.errors import ConflictError, NotFoundError
from thawline.domain.features import AccountState
from thawline.domain.freezes import FreezeScope, FreezeStatus, ReasonCategory, Restriction, SourceKind
from thawline.domain.rules import Action, Rule
from thawline.oplog.entry import Actor, ActorKind, EvidenceRef, LogRecord, Subject
from thawline.services import freezes, lists
from thawline.services.engine import EVENT_ADAPTER, REBUILD_WINDOW, RiskEngine, jsonable
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

RESCREEN = Actor(ActorKind.SYSTEM, "rescreen")
CHUNK = 200


@dataclass(frozen=True, slots=True)
class Job:
    """A re-screening run."""

    id: str
    reason: str
    ruleset_version: int
    list_version: int
    status: str
    cursor: str
    total: int
    processed: int
    flagged: int


def _job(r: Row[Any]) -> Job:
    return Job(
        r.id, r.reason, r.ruleset_version, r.list_version, r.status, r.cursor, r.total, r.processed, r.flagged
    )


def start(runtime: Runtime, reason: str, actor: Actor) -> Job:
    """Start a job (or return the one still running: one re-screen at a time)."""
    engine = RiskEngine(runtime)
    with UnitOfWork(runtime) as uow:
        running = uow.conn.execute(select(rescreen_job).where(rescreen_job.c.status == "running")).first()
        if running is not None:
            return _job(running)
        version, _rules = engine.active_ruleset(uow)
        total = uow.conn.execute(select(func.count()).select_from(account)).scalar_one()
        job_id = "rs_" + secrets.token_hex(8)
        uow.conn.execute(
            insert(rescreen_job).values(
                id=job_id, reason=reason, ruleset_version=version, list_version=lists.current_version(uow),
                status="running", cursor="", total=total, processed=0, flagged=0,
                created_by=actor.ref, started_at=runtime.clock.now(),
            )
        )  # fmt: skip
        uow.mark_changed()
        uow.record(
            LogRecord(
                action="rescreen.started",
                actor=actor,
                subject=Subject(ref=f"rescreen:{job_id}"),
                details={"reason_length": len(reason), "ruleset_version": version, "accounts": total},
            )
        )
        uow.commit()
        return _job(uow.conn.execute(select(rescreen_job).where(rescreen_job.c.id == job_id)).one())


def get(runtime: Runtime, job_id: str) -> Job:
    """One job, or NotFoundError."""
    with UnitOfWork(runtime, read_only=True) as uow:
        row = uow.conn.execute(select(rescreen_job).where(rescreen_job.c.id == job_id)).first()
    if row is None:
        raise NotFoundError(f"re-screen job {job_id} does not exist")
    return _job(row)


def run(
    runtime: Runtime, job_id: str, *, progress: Callable[[Job], None] | None = None, chunk: int = CHUNK
) -> Job:
    """Work through the job's remaining accounts, a chunk per transaction; returns the finished job."""
    engine = RiskEngine(runtime)
    while True:
        with UnitOfWork(runtime) as uow:
            row = uow.conn.execute(select(rescreen_job).where(rescreen_job.c.id == job_id)).first()
            if row is None:
                raise NotFoundError(f"re-screen job {job_id} does not exist")
            job = _job(row)
            if job.status != "running":
                return job
            ids = list(
                uow.conn.execute(
                    select(account.c.id).where(account.c.id > job.cursor).order_by(account.c.id).limit(chunk)
                ).scalars()
            )
            if not ids:
                _finish(uow, job)
                uow.commit()
                return get(runtime, job_id)
            flagged = sum(_screen(uow, engine, a) for a in ids)
            moved = uow.conn.execute(
                update(rescreen_job)
                .where(rescreen_job.c.id == job_id, rescreen_job.c.cursor == job.cursor)
                .values(cursor=ids[-1], processed=job.processed + len(ids), flagged=job.flagged + flagged)
            )
            if moved.rowcount != 1:
                raise ConflictError(f"re-screen job {job_id} is being run elsewhere")
            uow.mark_changed()
            uow.record(
                LogRecord(
                    action="rescreen.progressed",
                    actor=RESCREEN,
                    subject=Subject(ref=f"rescreen:{job_id}"),
                    details={"from": ids[0], "to": ids[-1], "accounts": len(ids), "flagged": flagged},
                )
            )
            uow.commit()
        if progress is not None:
            progress(get(runtime, job_id))


def _finish(uow: UnitOfWork, job: Job) -> None:
    uow.conn.execute(
        update(rescreen_job)
        .where(rescreen_job.c.id == job.id)
        .values(status="finished", finished_at=uow.runtime.clock.now())
    )
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="rescreen.finished",
            actor=RESCREEN,
            subject=Subject(ref=f"rescreen:{job.id}"),
            details={
                "accounts": job.processed,
                "flagged": job.flagged,
                "ruleset_version": job.ruleset_version,
            },
        )
    )


def _active_refs(uow: UnitOfWork, account_id: str) -> set[str]:
    return set(
        uow.conn.execute(
            select(freeze_table.c.source_ref).where(
                freeze_table.c.account_id == account_id, freeze_table.c.status == FreezeStatus.ACTIVE.value
            )
        ).scalars()
    )


def _screen(uow: UnitOfWork, engine: RiskEngine, account_id: str) -> int:
    """Re-evaluate one account; returns how many freezes it made."""
    version, rules = engine.active_ruleset(uow)
    index = engine.list_index(uow)
    blocked = (
        [m.entry_id for m in lists.account_matches(uow, account_id, index) if m.list_type == "block"]
        if index.size
        else []
    )
    active = _active_refs(uow, account_id)
    made = 0
    if blocked and "rescreen:blocklist" not in active:
        evidence = tuple(EvidenceRef("list_entry", b) for b in blocked)
        _freeze(uow, account_id, None, version=version, evidence=evidence, values={})
        made += 1
    kyc = uow.conn.execute(select(account.c.kyc_level).where(account.c.id == account_id)).scalar_one()
    st = AccountState(account_id, kyc_level=kyc)
    now = uow.runtime.clock.now()
    acted: dict[str, tuple[Rule, str, dict[str, Any]]] = {}
    rows = uow.conn.execute(
        select(event.c.id, event.c.payload)
        .where(event.c.account_id == account_id, event.c.occurred_at >= now - REBUILD_WINDOW)
        .order_by(event.c.occurred_at, event.c.id)
    )
    for event_id, payload in rows:
        features = st.observe(EVENT_ADAPTER.validate_json(payload), engine.ip_ranges, engine.thresholds)
        features["blacklisted"] = bool(blocked)
        for hit in rules.evaluate(features):
            rule = hit.rule
            if rule.shadow or rule.action < Action.RESTRICT or rule.id in acted:
                continue
            acted[rule.id] = (rule, event_id, jsonable(hit.values))
    suppressed = set(
        uow.conn.execute(
            select(rule_suppression.c.rule_id).where(
                rule_suppression.c.account_id == account_id, rule_suppression.c.until > now
            )
        ).scalars()
    )
    for rule_id, (rule, event_id, values) in sorted(acted.items()):
        if (
            rule_id in active
            or f"rescreen:{rule_id}" in active
            or rule_id in suppressed  # a known false positive stays one
            or (rule.category is ReasonCategory.BLACKLIST and blocked)
            or _acted_on(uow, account_id, rule_id, event_id)
        ):
            continue
        _freeze(
            uow, account_id, rule, version=version, evidence=(EvidenceRef("event", event_id),), values=values
        )
        made += 1
    return made


def _acted_on(uow: UnitOfWork, account_id: str, rule_id: str, event_id: str) -> bool:
    """A freeze from this rule already answered this event (e.g. one since released on appeal)."""
    row = uow.conn.execute(
        select(freeze_table.c.id).where(
            freeze_table.c.account_id == account_id,
            freeze_table.c.source_ref.in_([rule_id, f"rescreen:{rule_id}"]),
            freeze_table.c.evidence.contains(f"event:{event_id}"),
        )
    ).first()
    return row is not None


def _freeze(
    uow: UnitOfWork,
    account_id: str,
    rule: Rule | None,
    *,
    version: int,
    evidence: tuple[EvidenceRef, ...],
    values: dict[str, Any],
) -> None:
    lang = uow.conn.execute(select(account.c.language).where(account.c.id == account_id)).scalar_one()
    if rule is None:
        category, scope, ref = ReasonCategory.BLACKLIST, Restriction(FreezeScope.FULL), "rescreen:blocklist"
        name = "Identity on a blocklist (re-screen)"
        told = {
            "en": "Details on your account match a blocklist entry.",
            "zh-CN": "账户信息与黑名单记录匹配。",
        }
    else:
        category, scope, ref = rule.category, Restriction(rule.scope), f"rescreen:{rule.id}"
        name, told = rule.name["en"] + " (re-screen)", dict(rule.explanation)
    freezes.freeze_account(
        uow,
        freezes.FreezeAccount(
            account_id=account_id,
            restriction=scope,
            category=category,
            reason_codes=("RESCREEN", (rule.id if rule else "blocklist").upper()),
            source=SourceKind.POLICY_RESCREEN,
            source_ref=ref,
            legal_basis=f"policy re-screen under ruleset version {version}",
            internal_reason=name + (": " + rule.when if rule else ""),
            holder_reason=told.get(lang, told["en"]),
            evidence=evidence,
            details={"ruleset_version": version, "features": values},
        ),
        RESCREEN,
    )
