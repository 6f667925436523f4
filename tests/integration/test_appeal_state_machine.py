"""No sequence of appeal, review, verification and timer commands reaches an illegal state or changes
state without its log entry.

Every command runs against the real service layer on SQLite. Around each one the machine compares a
snapshot of every lifecycle table and the log size: a refused command changes neither, a successful
one changes the tables exactly when it appends to the log. After each step the stored appeals,
freezes and reviews are checked against the rules (legal transitions only, four eyes on
high-severity approvals, a release only after approval and second verification, at most one open
appeal per freeze).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import select

from tests import lifecycle as lc
from tests.conftest import make_settings
from thawline.adapters.db import schema
from thawline.domain.appeals import ALLOWED, OPEN, AppealStatus
from thawline.domain.clock import FakeClock
from thawline.domain.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
from thawline.domain.freezes import ReasonCategory
from thawline.domain.review import Decision
from thawline.oplog.entry import Actor
from thawline.services import appeals, freezes, review, scheduler, verification
from thawline.services.runtime import build_runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.verify import verify_log

REFUSED = (ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError)
TABLES = (
    schema.account,
    schema.freeze,
    schema.appeal,
    schema.appeal_material,
    schema.appeal_review,
    schema.release_verification,
    schema.probation,
)
REVIEWERS = {"alice": lc.ALICE, "bob": lc.BOB, "creator": lc.CREATOR}
CODES = {
    Decision.APPROVE: "false_positive",
    Decision.REJECT: "risk_confirmed",
    Decision.NEEDS_MORE_INFO: "id_unclear",
}


class AppealMachine(RuleBasedStateMachine):
    """Random walks through the way back, checked against the rules after every step."""

    freeze_ids = Bundle("freeze_ids")
    appeal_ids = Bundle("appeal_ids")

    @initialize()
    def start(self) -> None:
        """A fresh database with one registered account."""
        tmp = Path(tempfile.mkdtemp(prefix="thawline-asm-"))
        self.clock = FakeClock()
        self.runtime = build_runtime(make_settings(f"sqlite:///{tmp / 'sm.db'}", tmp), clock=self.clock)
        lc.register(self.runtime)
        self.seen: dict[str, AppealStatus] = {}

    def teardown(self) -> None:
        """Close the database."""
        if hasattr(self, "runtime"):
            self.runtime.close()

    def _snapshot(self) -> tuple[int, list[list[tuple[Any, ...]]]]:
        with UnitOfWork(self.runtime, read_only=True) as uow:
            rows = [sorted(tuple(r) for r in uow.conn.execute(select(t))) for t in TABLES]
            return uow.oplog.count(), rows

    def _run(self, command: Callable[[UnitOfWork], object]) -> object | None:
        """Run one command in its own unit of work and check it changed state only with its record."""
        count, before = self._snapshot()
        result: object | None = None
        try:
            with UnitOfWork(self.runtime) as uow:
                result = command(uow)
                uow.commit()
        except REFUSED:
            assert self._snapshot() == (count, before), "a refused command changed something"
            return None
        new_count, after = self._snapshot()
        assert (after != before) == (new_count > count), "state and log disagree"
        return result if result is not None else True

    @rule(target=freeze_ids, high=st.booleans())
    def freeze(self, high: bool) -> str:
        """Freeze the account (AML needs four eyes; manual does not)."""
        category = ReasonCategory.AML if high else ReasonCategory.MANUAL
        return lc.freeze(self.runtime, category=category)

    @rule(target=appeal_ids, freeze_id=freeze_ids)
    def open_and_submit(self, freeze_id: str) -> str:
        """Open an appeal with its materials and submit it (or be refused)."""

        def command(uow: UnitOfWork) -> str:
            made, _ = appeals.open_appeal(
                uow,
                freeze_id,
                explanation="mine",
                contact_channel="in_site",
                contact_value=None,
                actor=lc.HOLDER,
            )
            for kind in appeals.completeness(uow, made.id).required_materials:
                appeals.add_material(
                    uow, made.id, kind=kind, data=lc.pdf(kind.value), transaction_ids=(), actor=lc.HOLDER
                )
            appeals.submit(uow, made.id, lc.HOLDER)
            return made.id

        out = self._run(command)
        return out if isinstance(out, str) else "apl_refused"

    @rule(appeal_id=appeal_ids)
    def resubmit(self, appeal_id: str) -> None:
        """Resubmit after a request for more information."""
        self._run(lambda uow: appeals.submit(uow, appeal_id, lc.HOLDER))

    @rule(appeal_id=appeal_ids, dice=st.integers(0, 3))
    def withdraw(self, appeal_id: str, dice: int) -> None:
        """The holder sometimes withdraws (rarely, so that walks reach the later states)."""
        if dice == 0:
            self._run(lambda uow: appeals.withdraw(uow, appeal_id, lc.HOLDER))

    @rule(appeal_id=appeal_ids, who=st.sampled_from(sorted(REVIEWERS)))
    def claim(self, appeal_id: str, who: str) -> None:
        """A reviewer claims the case."""
        self._run(lambda uow: review.claim(uow, appeal_id, REVIEWERS[who]))

    @rule(
        appeal_id=appeal_ids, who=st.sampled_from(sorted(REVIEWERS)), decision=st.sampled_from(list(Decision))
    )
    def decide(self, appeal_id: str, who: str, decision: Decision) -> None:
        """A reviewer takes the case (if it is free) and decides."""
        reviewer: Actor = REVIEWERS[who]
        self._run(lambda uow: review.claim(uow, appeal_id, reviewer))
        self._run(
            lambda uow: review.decide(
                uow, appeal_id, decision, reason_codes=(CODES[decision],), note="", reviewer=reviewer
            )
        )

    @rule(
        appeal_id=appeal_ids,
        first=st.sampled_from(sorted(REVIEWERS)),
        second=st.sampled_from(sorted(REVIEWERS)),
    )
    def two_approvals(self, appeal_id: str, first: str, second: str) -> None:
        """Two reviewers approve one after the other (the four-eyes path; refused where it must be)."""
        for who in (first, second):
            self.decide(appeal_id, who, Decision.APPROVE)

    @rule(appeal_id=appeal_ids)
    def verify_sms(self, appeal_id: str) -> None:
        """Send a code and enter it."""
        if self._run(lambda uow: verification.send_code(uow, appeal_id, lc.HOLDER)) is None:
            return
        code = lc.last_code(self.runtime)
        self._run(lambda uow: verification.check_code(uow, appeal_id, code, lc.HOLDER))

    @rule(appeal_id=appeal_ids, passed=st.booleans())
    def verify_face(self, appeal_id: str, passed: bool) -> None:
        """Start a face session and deliver the provider's result."""
        started = self._run(lambda uow: verification.start_face(uow, appeal_id, lc.HOLDER))
        if not isinstance(started, tuple):
            return
        session = started[0].face_session
        self._run(
            lambda uow: verification.face_result(uow, session, passed=passed, score=0.9, provider_ref="sm")
        )

    @rule(freeze_id=freeze_ids)
    def release_directly(self, freeze_id: str) -> None:
        """A reviewer lifts a freeze without an appeal (refused for high severity)."""
        self._run(lambda uow: freezes.release(uow, freeze_id, lc.ALICE, "cleared"))

    @rule(hours=st.sampled_from([1, 30, 24 * 15]))
    def time_passes(self, hours: int) -> None:
        """Time passes and the scheduler runs (twice: the second run must find nothing)."""
        self.clock.advance(timedelta(hours=hours))
        count, _ = self._snapshot()
        scheduler.run_due(self.runtime)
        after, snapshot = self._snapshot()
        assert not any(scheduler.run_due(self.runtime).values())
        assert self._snapshot() == (after, snapshot)
        assert after >= count

    @invariant()
    def the_stored_state_obeys_the_rules(self) -> None:
        """Legal transitions, four eyes, releases only after verification, one open appeal per freeze."""
        if not hasattr(self, "runtime"):
            return
        with UnitOfWork(self.runtime, read_only=True) as uow:
            rows = list(uow.conn.execute(select(schema.appeal)))
            frozen = {r.id: r for r in uow.conn.execute(select(schema.freeze))}
            reviews = list(uow.conn.execute(select(schema.appeal_review)))
            checks = {r.appeal_id: r for r in uow.conn.execute(select(schema.release_verification))}
        open_per_freeze: dict[str, int] = {}
        for r in rows:
            status = AppealStatus(r.status)
            previous = self.seen.get(r.id)
            assert previous is None or status is previous or status in _reachable(previous), (
                previous,
                status,
            )
            self.seen[r.id] = status
            if status in OPEN:
                open_per_freeze[r.freeze_id] = open_per_freeze.get(r.freeze_id, 0) + 1
            high = frozen[r.freeze_id].category in {c.value for c in self.runtime.high_severity}
            if status is AppealStatus.SECOND_APPROVAL:
                assert high
            approvers = {
                v.reviewer
                for v in reviews
                if v.appeal_id == r.id and v.decision == "approve" and v.kind == "human"
            }
            if status is AppealStatus.APPROVED:
                assert len(approvers) >= (2 if high else 1)
                assert r.id in checks
        assert all(n == 1 for n in open_per_freeze.values())
        for f in frozen.values():
            if f.status == "released" and f.category in {c.value for c in self.runtime.high_severity}:
                assert any(c.freeze_id == f.id and c.status == "completed" for c in checks.values())
            if f.created_by.endswith(":rv_creator"):
                assert not any(
                    v.reviewer == "reviewer:rv_creator" and a.freeze_id == f.id
                    for v in reviews
                    for a in rows
                    if a.id == v.appeal_id
                )

    @invariant()
    def the_log_verifies(self) -> None:
        """The chain and tree stay intact."""
        if hasattr(self, "runtime"):
            assert verify_log(self.runtime).ok


def _reachable(start: AppealStatus) -> set[AppealStatus]:
    """Every status reachable from ``start`` (a step may include several moves, e.g. claim then decide)."""
    seen: set[AppealStatus] = set()
    todo = [start]
    while todo:
        for nxt in ALLOWED[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


TestAppealMachine = AppealMachine.TestCase
TestAppealMachine.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
