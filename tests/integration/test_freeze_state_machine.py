"""No sequence of freeze/release commands reaches an illegal state or changes state without a log entry."""

from __future__ import annotations

import tempfile
from decimal import Decimal
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from tests.conftest import make_settings
from thawline.domain.clock import FakeClock
from thawline.domain.errors import ConflictError
from thawline.domain.freezes import Direction, FreezeScope, Operation, ReasonCategory, Restriction, SourceKind
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import accounts, freezes
from thawline.services.runtime import build_runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.verify import verify_log

ACTOR = Actor(ActorKind.REVIEWER, "rv_1")
SCOPES = {
    FreezeScope.FULL: Restriction(FreezeScope.FULL),
    FreezeScope.DEBIT: Restriction(FreezeScope.DEBIT),
    FreezeScope.CREDIT: Restriction(FreezeScope.CREDIT),
}


class FreezeMachine(RuleBasedStateMachine):
    """A model of active freezes per account, checked against the real service layer on SQLite."""

    freeze_ids = Bundle("freeze_ids")

    @initialize()
    def start(self) -> None:
        """A fresh database with two accounts."""
        tmp = Path(tempfile.mkdtemp(prefix="thawline-sm-"))
        self.runtime = build_runtime(make_settings(f"sqlite:///{tmp / 'sm.db'}", tmp), clock=FakeClock())
        self.active: dict[str, tuple[str, FreezeScope, ReasonCategory]] = {}
        self.ended: set[str] = set()
        for account_id in ("acc_a", "acc_b"):
            with UnitOfWork(self.runtime) as uow:
                accounts.register(uow, accounts.RegisterAccount(account_id, "Holder"), ACTOR)
                uow.commit()
        self.entries = 2

    def teardown(self) -> None:
        """Close the database."""
        if hasattr(self, "runtime"):
            self.runtime.close()

    @rule(
        target=freeze_ids,
        account=st.sampled_from(["acc_a", "acc_b"]),
        scope=st.sampled_from(list(SCOPES)),
        category=st.sampled_from([ReasonCategory.HIGH_FREQUENCY, ReasonCategory.AML]),
    )
    def freeze(self, account: str, scope: FreezeScope, category: ReasonCategory) -> str:
        """Freeze an account."""
        cmd = freezes.FreezeAccount(
            account, SCOPES[scope], category, ("R1",), SourceKind.REVIEWER, "rv_1", "basis", "why", "told"
        )
        with UnitOfWork(self.runtime) as uow:
            made, _created = freezes.freeze_account(uow, cmd, ACTOR)
            uow.commit()
        self.active[made.id] = (account, scope, category)
        self.entries += 1
        return made.id

    @rule(freeze_id=freeze_ids)
    def release(self, freeze_id: str) -> None:
        """Release a freeze: allowed once, and never directly for AML."""
        legal = freeze_id in self.active and self.active[freeze_id][2] is not ReasonCategory.AML
        try:
            with UnitOfWork(self.runtime) as uow:
                freezes.release(uow, freeze_id, ACTOR, "cleared")
                uow.commit()
        except ConflictError:
            assert not legal
            return
        assert legal
        del self.active[freeze_id]
        self.ended.add(freeze_id)
        self.entries += 1

    @invariant()
    def authorisation_matches_the_model(self) -> None:
        """A debit is denied exactly when a full or debit freeze is in force on the account."""
        if not hasattr(self, "runtime"):
            return
        op = Operation(Direction.DEBIT, Decimal(10), "CNY")
        for account in ("acc_a", "acc_b"):
            blocked = any(
                a == account and s in (FreezeScope.FULL, FreezeScope.DEBIT)
                for a, s, _c in self.active.values()
            )
            with UnitOfWork(self.runtime, read_only=True) as uow:
                assert freezes.authorize(uow, account, op).allowed is not blocked

    @invariant()
    def every_change_has_exactly_its_log_entry(self) -> None:
        """The log holds one entry per successful command and nothing for refused ones."""
        if not hasattr(self, "runtime"):
            return
        with UnitOfWork(self.runtime, read_only=True) as uow:
            assert uow.oplog.count() == self.entries
            stored = {f.id: f.status.value for a in ("acc_a", "acc_b") for f in freezes.list_freezes(uow, a)}
        assert {k for k, v in stored.items() if v == "active"} == set(self.active)
        assert {k for k, v in stored.items() if v == "released"} == self.ended

    @invariant()
    def the_log_verifies(self) -> None:
        """The chain and tree stay intact."""
        if hasattr(self, "runtime"):
            assert verify_log(self.runtime).ok


TestFreezeMachine = FreezeMachine.TestCase
TestFreezeMachine.settings = settings(max_examples=15, stateful_step_count=12, deadline=None)
