"""``thawline demo``: playing each freeze's story (``thawline.sim.story``) through the real services.

A story is a generator: it performs one step (an appeal opened, a voucher uploaded, a case claimed,
a code checked …), each in its own unit of work, and yields how long until its next step. The demo's
timeline (``thawline.services.demo``) sets the clock to that time and resumes it, so every step is
recorded in the operation log at a plausible moment of the past month. A step the services refuse
(the freeze expired, was lifted meanwhile, …) ends that story; a step due after the demo ends never
happens, which leaves the case open for the console.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from thawline.adapters.sms import LocalSmsOutbox
from thawline.domain.appeals import AppealStatus, MaterialKind
from thawline.domain.errors import ConflictError
from thawline.domain.review import Decision, FlaggedTransaction
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import appeals, expedite, freezes, review, selfservice, verification
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.sim.story import OPEN_STORIES, Story

Steps = Generator[timedelta, None, None]
CHINA = timedelta(hours=8)  # holders and reviewers keep China Standard Time

EXPLANATIONS = (
    "这些交易都是我本人操作的，是给店里进货的货款。/ These were my own payments for stock.",
    "我在外地出差，换了手机登录。/ I was travelling and logged in from a new phone.",
    "收到的是客户的货款，附上订单截图。/ These are customers' payments; order screenshots attached.",
    "账户被盗用后我已修改密码。/ My account was misused; I have changed the password.",
)
APPROVE_CODES = ("evidence_sufficient", "false_positive", "identity_confirmed", "risk_resolved")
VOUCHER_REJECT_CODES = ("voucher_mismatch", "voucher_mismatch", "voucher_unreadable")
NOTES = {
    Decision.APPROVE: "材料齐全，核实无误。/ Materials complete and verified.",
    Decision.REJECT: "凭证与交易记录不符，或风险已确认。/ Vouchers do not match, or risk confirmed.",
    Decision.NEEDS_MORE_INFO: "请补充清晰的凭证或流水。/ Please send a clear voucher or statement.",
}
RISK_REJECT_CODES = ("risk_confirmed", "risk_confirmed", "insufficient_evidence", "identity_mismatch")


@dataclass(slots=True)
class Case:
    """One freeze and where its story stands."""

    freeze_id: str
    account_id: str
    category: str
    story: Story
    innocent: bool
    proof: str  # "vouchers" (one per flagged transaction), "statements" (bank statements) or ""
    appeal_id: str | None = None
    outcome: str = "open"


@dataclass(frozen=True, slots=True)
class Team:
    """The staff who work the demo's cases, and the integrator that filed for holders."""

    reviewer: Actor
    senior: Actor
    integrator: Actor


@dataclass
class Tally:
    """What the stories did (for the summary when no analytics report is available)."""

    stories: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    refused_incomplete: int = 0
    interrupted: int = 0


def pdf(text: str) -> bytes:
    """A minimal one-page PDF (an order screenshot or statement, as far as the upload check can tell)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out


class CasePlayer:
    """Plays stories through the services; one instance per demo run."""

    def __init__(self, runtime: Runtime, team: Team, seed: int) -> None:
        self.rt = runtime
        self.team = team
        self.rng = random.Random(f"thawline-demo/{seed}/steps")  # noqa: S311 — a simulation, not secrets
        self.tally = Tally()
        self.local_sms = isinstance(runtime.sms, LocalSmsOutbox)

    # -- time ------------------------------------------------------------------------------------

    def _within(self, delay: timedelta, first_hour: int, last_hour: int) -> timedelta:
        """``delay``, moved on so the step falls between ``first_hour`` and ``last_hour`` China time."""
        at = self.rt.clock.now() + delay
        local = at + CHINA
        if first_hour <= local.hour < last_hour:
            return delay
        morning = local.replace(hour=first_hour, minute=0, second=0, microsecond=0)
        if local.hour >= last_hour:
            morning += timedelta(days=1)
        return delay + (morning - local) + timedelta(minutes=self.rng.uniform(0, 90))

    def holder(self, low_h: float, high_h: float) -> timedelta:
        """A holder's next move, ``low_h``–``high_h`` hours from now, while they are awake."""
        return self._within(timedelta(hours=self.rng.uniform(low_h, high_h)), 8, 23)

    def office(self, low_h: float, high_h: float) -> timedelta:
        """A reviewer's next move, ``low_h``–``high_h`` hours from now, during the review shift."""
        return self._within(timedelta(hours=self.rng.uniform(low_h, high_h)), 9, 21)

    def minutes(self, low: float, high: float) -> timedelta:
        """A few minutes (the same sitting)."""
        return timedelta(minutes=self.rng.uniform(low, high))

    # -- the stories -----------------------------------------------------------------------------

    def play(self, case: Case) -> Steps:
        """The steps of ``case``'s story; ends early (recorded as interrupted) if a service refuses one."""
        self.tally.stories[case.story.value] += 1
        try:
            yield from self._story(case)
        except ConflictError:
            self.tally.interrupted += 1
            case.outcome = "interrupted"
        self.tally.outcomes[case.outcome] += 1

    def _story(self, c: Case) -> Steps:
        s = c.story
        if s is Story.NO_APPEAL:
            return
        if s is Story.SELF_SERVICE_KYC:
            yield self.holder(2, 96)
            self._finish_kyc(c)
            return
        quick = s in OPEN_STORIES  # a recent freeze: its case must reach the queue before the demo ends
        yield self.holder(0.3, 3) if quick else self.holder(1, 30)  # the holder reads the notice
        self._open(c)
        yield self.minutes(3, 40)
        if s is Story.ABANDONED:
            self._upload(c, vouchers="none", partial=True)
            if not self._submit(c):
                c.outcome = "abandoned"  # the idle draft lapses through the scheduler
            return
        wrong = bool(c.proof) and (
            s in (Story.REJECTED_VOUCHER, Story.SECOND_APPEAL)
            or (s is Story.SECOND_REJECTED and self.rng.random() < 0.5)
        )
        self._upload(c, vouchers="wrong" if wrong else "right")
        yield self.minutes(1, 10)
        self._submit(c)
        if s is Story.WITHDRAWN:
            yield self.holder(2, 20)
            self._withdraw(c)
        elif s is not Story.OPEN_SUBMITTED:
            yield from self._review(c, wrong=wrong)

    def _review(self, c: Case, *, wrong: bool) -> Steps:
        """From the queue to a decision (and on to release, or a second round)."""
        s = c.story
        if s is Story.EXPEDITED:
            yield self.minutes(1, 8)
            self._expedite(c)
            yield self.office(0.3, 4)
        elif s is Story.SLA_BREACH:
            yield timedelta(hours=self.rng.uniform(50, 80))  # past the 48 h first-response deadline
        else:
            yield self.office(0.5, 4) if s in OPEN_STORIES else self.office(2, 40)
        reviewer = self._first_reviewer(c)
        self._claim(c, reviewer)
        if s is Story.OPEN_IN_REVIEW:
            return
        yield self.minutes(10, 150)
        if s is Story.MORE_INFO:
            code = {"vouchers": "voucher_unclear", "statements": "statement_needed"}.get(
                c.proof, "explanation_unclear"
            )
            self._decide(c, reviewer, Decision.NEEDS_MORE_INFO, code)
            yield self.holder(4, 48)
            reviewer = yield from self._resubmit(c)
        if wrong:  # a voucher for another order, or a statement that does not show the payments
            code = self.rng.choice(VOUCHER_REJECT_CODES) if c.proof == "vouchers" else "voucher_unreadable"
            self._decide(c, reviewer, Decision.REJECT, code)
        elif s is Story.SECOND_REJECTED or (s in (Story.REJECTED_RISK, Story.SLA_BREACH) and not c.innocent):
            self._decide(c, reviewer, Decision.REJECT, self.rng.choice(RISK_REJECT_CODES))
        elif s is Story.REJECTED_RISK:
            self._decide(c, reviewer, Decision.REJECT, "insufficient_evidence")
        else:
            yield from self._approve(c, reviewer, face_fails=1 if s is Story.FACE_RETRY else 0)
            return
        c.outcome = "rejected"
        if s in (Story.SECOND_APPEAL, Story.SECOND_REJECTED):
            yield self.holder(20, 96)  # a second round with supplementary materials
            self._open(c)
            yield self.minutes(3, 30)
            reviewer = yield from self._resubmit(c)
            if s is Story.SECOND_REJECTED:
                self._decide(c, reviewer, Decision.REJECT, self.rng.choice(RISK_REJECT_CODES))
                c.outcome = "rejected_final"
                return
            yield from self._approve(c, reviewer, face_fails=0)

    def _resubmit(self, c: Case) -> Generator[timedelta, None, Actor]:
        """Send the right vouchers and a statement, submit, and wait for a reviewer to claim it."""
        self._upload(c, vouchers="right", statement=True)
        yield self.minutes(1, 10)
        self._submit(c)
        yield self.office(2, 36)
        reviewer = self._first_reviewer(c)
        self._claim(c, reviewer)
        yield self.minutes(10, 120)
        return reviewer

    def _approve(self, c: Case, reviewer: Actor, *, face_fails: int) -> Steps:
        """Approve (with the senior's second approval when the freeze is severe), then verify."""
        status = self._decide(c, reviewer, Decision.APPROVE, self.rng.choice(APPROVE_CODES))
        if status is AppealStatus.SECOND_APPROVAL:
            if c.story is Story.OPEN_SECOND_APPROVAL:
                return
            yield self.office(1, 20)
            self._claim(c, self.team.senior)  # four eyes: the senior reviewer gives the second approval
            yield self.minutes(5, 60)
            self._decide(c, self.team.senior, Decision.APPROVE, self.rng.choice(APPROVE_CODES))
        c.outcome = "approved"
        if c.story is Story.OPEN_VERIFICATION or not self.local_sms:
            return
        yield self.holder(0.1, 10)  # the holder does the second verification
        code = self._send_code(c)
        yield self.minutes(0.5, 3)
        self._check_code(c, code)
        for attempt in range(face_fails + 1):
            yield self.minutes(1, 8)
            session = self._start_face(c)
            yield self.minutes(0.5, 3)
            self._face_result(session, passed=attempt == face_fails)
        c.outcome = "released"

    def _first_reviewer(self, c: Case) -> Actor:
        """Severe cases start with the reviewer (the senior gives the second approval); others either."""
        if c.category in {x.value for x in self.rt.high_severity} or self.rng.random() < 0.7:
            return self.team.reviewer
        return self.team.senior

    # -- one unit of work per step ----------------------------------------------------------------

    def _holder(self, c: Case) -> Actor:
        return Actor(ActorKind.HOLDER, c.account_id)

    def _finish_kyc(self, c: Case) -> None:
        with UnitOfWork(self.rt) as uow:
            released = selfservice.update_kyc(uow, c.account_id, "full", self.team.integrator)
            uow.commit()
        c.outcome = "released" if released else "kyc_updated"

    def _open(self, c: Case) -> None:
        with UnitOfWork(self.rt) as uow:
            made, _ = appeals.open_appeal(
                uow,
                c.freeze_id,
                explanation=self.rng.choice(EXPLANATIONS),
                contact_channel="in_site",
                contact_value=None,
                actor=self._holder(c),
            )
            uow.commit()
        c.appeal_id = made.id

    def _upload(self, c: Case, *, vouchers: str, statement: bool = False, partial: bool = False) -> None:
        """Upload what the checklist asks for; ``vouchers``: right, wrong (another order) or none.

        ``partial`` leaves out the last document the checklist names (a holder who gives up half-way).
        """
        appeal_id = self._appeal(c)
        with UnitOfWork(self.rt) as uow:
            check = appeals.completeness(uow, appeal_id)
            flagged = {t.id: t for t in freezes.flagged(uow, c.freeze_id)}
            kinds = [k for k in check.required_materials if k is not MaterialKind.TRANSACTION_VOUCHER]
            if partial:
                kinds = kinds[:-1]
            if statement:
                kinds.append(MaterialKind.BANK_STATEMENT)
            for kind in kinds:
                appeals.add_material(
                    uow,
                    appeal_id,
                    kind=kind,
                    data=self._document(kind, appeal_id),
                    transaction_ids=(),
                    actor=self._holder(c),
                )
            if vouchers != "none":
                for tx in check.flagged_transactions:
                    appeals.add_material(
                        uow,
                        appeal_id,
                        kind=MaterialKind.TRANSACTION_VOUCHER,
                        data=pdf(f"order voucher {tx} {appeal_id} {vouchers}"),
                        transaction_ids=(tx,),
                        actor=self._holder(c),
                        declared=self._declared(flagged.get(tx), wrong=vouchers == "wrong"),
                    )
            uow.commit()

    def _document(self, kind: MaterialKind, appeal_id: str) -> bytes:
        if kind is MaterialKind.EXPLANATION_LETTER:
            return f"{self.rng.choice(EXPLANATIONS)}\n({appeal_id})\n".encode()
        return pdf(f"{kind.value} {appeal_id}")

    def _declared(self, tx: FlaggedTransaction | None, *, wrong: bool) -> appeals.VoucherData:
        """What the holder types in about a voucher: the recorded facts, or those of another order."""
        if tx is None:
            return appeals.VoucherData()
        amount = tx.amount
        if wrong and amount is not None:
            amount = (amount * Decimal(self.rng.choice(("10", "0.5", "3")))).quantize(Decimal("0.01"))
        order = tx.order_ref
        if wrong and order is not None:
            order = f"{order}-{self.rng.randint(2, 9)}"
        return appeals.VoucherData(order_ref=order, amount=amount, occurred_at=tx.occurred_at)

    def _submit(self, c: Case) -> bool:
        """Submit; an incomplete appeal is refused (nothing changes) and False is returned."""
        with UnitOfWork(self.rt) as uow:
            try:
                appeals.submit(uow, self._appeal(c), self._holder(c))
            except appeals.IncompleteAppealError:
                self.tally.refused_incomplete += 1
                return False
            uow.commit()
        return True

    def _expedite(self, c: Case) -> None:
        with UnitOfWork(self.rt) as uow:
            expedite.expedite(uow, self._appeal(c), self._holder(c))
            uow.commit()

    def _withdraw(self, c: Case) -> None:
        with UnitOfWork(self.rt) as uow:
            appeals.withdraw(uow, self._appeal(c), self._holder(c))
            uow.commit()
        c.outcome = "withdrawn"

    def _claim(self, c: Case, who: Actor) -> None:
        with UnitOfWork(self.rt) as uow:
            review.claim(uow, self._appeal(c), who)
            uow.commit()

    def _decide(self, c: Case, who: Actor, decision: Decision, code: str) -> AppealStatus:
        note = NOTES[decision]
        with UnitOfWork(self.rt) as uow:
            after = review.decide(
                uow, self._appeal(c), decision, reason_codes=(code,), note=note, reviewer=who
            )
            uow.commit()
        return after.status

    def _send_code(self, c: Case) -> str:
        appeal_id = self._appeal(c)
        with UnitOfWork(self.rt) as uow:
            verification.send_code(uow, appeal_id, self._holder(c))
            uow.commit()  # the local carrier receives the code right after this commit
        sms = self.rt.sms
        assert isinstance(sms, LocalSmsOutbox)
        match = re.search(r"\b(\d{6})\b", sms.messages(c.account_id)[-1].text)
        if match is None:
            raise ConflictError("the local SMS carrier holds no code for this holder")
        return match.group(1)

    def _check_code(self, c: Case, code: str) -> None:
        with UnitOfWork(self.rt) as uow:
            verification.check_code(uow, self._appeal(c), code, self._holder(c))
            uow.commit()

    def _start_face(self, c: Case) -> str:
        with UnitOfWork(self.rt) as uow:
            view, _url = verification.start_face(uow, self._appeal(c), self._holder(c))
            uow.commit()
        assert view.face_session is not None
        return view.face_session

    def _face_result(self, session: str, *, passed: bool) -> None:
        score = self.rng.uniform(0.9, 0.99) if passed else self.rng.uniform(0.3, 0.6)
        with UnitOfWork(self.rt) as uow:
            verification.face_result(uow, session, passed=passed, score=score, provider_ref="local-demo")
            uow.commit()

    @staticmethod
    def _appeal(c: Case) -> str:
        if c.appeal_id is None:
            raise ConflictError("the case has no appeal yet")
        return c.appeal_id
