"""Small builders shared by tests."""

from __future__ import annotations

from thawline.oplog.entry import Actor, ActorKind, EvidenceRef, LogRecord, RuleRef, Subject
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork


def record(i: int, account: str = "acc_1") -> LogRecord:
    """A realistic freeze-like record."""
    return LogRecord(
        action="account.frozen",
        actor=Actor(ActorKind.RULE, "high_frequency"),
        subject=Subject(account_id=account, freeze_id=f"frz_{i}"),
        reason_codes=("HF_10MIN",),
        rule=RuleRef("high_frequency", 3),
        evidence=(EvidenceRef("transaction", f"tx_{i}"), EvidenceRef("ip", "ip_ref_9f2c")),
        state_before={"status": "active"},
        state_after={"status": "frozen", "scope": "full"},
        correlation_id=f"corr-{i}",
    )


def append(runtime: Runtime, count: int, *, batch: int = 50, account: str = "acc_1") -> None:
    """Append ``count`` records in transactions of ``batch``."""
    done = 0
    while done < count:
        n = min(batch, count - done)
        with UnitOfWork(runtime) as uow:
            for i in range(done, done + n):
                uow.record(record(i, account))
            uow.commit()
        done += n
