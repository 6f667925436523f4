"""What happens after a freeze in ``thawline demo``: the case mix, decided per freeze, deterministically.

A pure planner. For each freeze the engine makes, :class:`CasePlanner` picks one :class:`Story` from
what is known about it (its category, the holder's ground-truth label, VIP tier, how much of the
demo's window is left) and a random stream seeded from the demo's seed. The first freezes that can
carry a story nobody has had yet get it (so even a small demo shows every kind of case); after that
the draw is weighted. The service layer plays each story through the real services
(``thawline.services.demo``).

The weights follow the source document: most wrongly frozen holders appeal and are released quickly
once their materials are complete; most failed appeals fail on the transaction vouchers (63 %);
abusers appeal less and are refused.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum


class Story(StrEnum):
    """One way a freeze's case goes."""

    NO_APPEAL = "no_appeal"  # nobody appeals (yet)
    SELF_SERVICE_KYC = "self_service_kyc"  # the holder finishes KYC; the freeze lifts itself
    APPROVED = "approved"  # complete materials, answered within 48 h, approved (four eyes if severe)
    EXPEDITED = "expedited"  # a VIP holder spends an expedite; decided within hours
    MORE_INFO = "more_info"  # the reviewer asks for a clearer voucher; resubmitted; approved
    FACE_RETRY = "face_retry"  # approved; the first face check fails, the second passes
    REJECTED_VOUCHER = "rejected_voucher"  # the voucher does not match the transaction; rejected
    SECOND_APPEAL = "second_appeal"  # rejected for the voucher, a second round with the right one
    REJECTED_RISK = "rejected_risk"  # the abuse is confirmed; rejected
    SECOND_REJECTED = "second_rejected"  # rejected twice: the decision is final
    SLA_BREACH = "sla_breach"  # nobody answers for 48 h: the scheduler escalates; then approved
    ABANDONED = "abandoned"  # a draft missing materials, refused at submit, left to lapse
    WITHDRAWN = "withdrawn"  # the holder withdraws the appeal
    OPEN_SUBMITTED = "open_submitted"  # left waiting in the queue
    OPEN_IN_REVIEW = "open_in_review"  # claimed by the demo reviewer, not decided
    OPEN_SECOND_APPROVAL = "open_second_approval"  # approved once, waiting for the senior reviewer
    OPEN_VERIFICATION = "open_verification"  # approved; the holder has not verified yet


# Stories whose last step must happen before the demo ends (they are for the console to show open).
OPEN_STORIES = frozenset(
    {Story.OPEN_SUBMITTED, Story.OPEN_IN_REVIEW, Story.OPEN_SECOND_APPROVAL, Story.OPEN_VERIFICATION}
)

# Every demo should show these (in this order of priority) when it has freezes that can carry them.
WANTED = (
    Story.APPROVED,
    Story.REJECTED_VOUCHER,
    Story.SECOND_APPEAL,
    Story.EXPEDITED,
    Story.SLA_BREACH,
    Story.SELF_SERVICE_KYC,
    Story.MORE_INFO,
    Story.REJECTED_RISK,
    Story.FACE_RETRY,
    Story.OPEN_SECOND_APPROVAL,
    Story.OPEN_SUBMITTED,
    Story.OPEN_IN_REVIEW,
    Story.OPEN_VERIFICATION,
    Story.SECOND_REJECTED,
    Story.ABANDONED,
    Story.WITHDRAWN,
)


@dataclass(frozen=True, slots=True)
class FreezeFacts:
    """What the planner knows about one freeze."""

    account_id: str
    category: str
    innocent: bool  # ground truth: the holder did nothing wrong (a look-alike, or someone's victim)
    vip: bool
    high_severity: bool  # releasing it takes two approvals
    vouchers: bool  # an appeal must prove payments: vouchers for flagged transactions, or statements
    self_service: bool  # lifted by the holder finishing KYC, not by an appeal
    hours_left: float  # from the freeze to the end of the demo


def eligible(story: Story, f: FreezeFacts) -> bool:
    """Whether ``story`` can happen to this freeze (in the time left)."""
    if f.self_service:
        return story in (Story.SELF_SERVICE_KYC, Story.NO_APPEAL)
    needs: dict[Story, bool] = {
        Story.SELF_SERVICE_KYC: False,
        Story.EXPEDITED: f.vip,
        Story.REJECTED_VOUCHER: f.vouchers,
        Story.SECOND_APPEAL: f.vouchers and f.hours_left > 120,
        Story.MORE_INFO: f.hours_left > 96,
        Story.SLA_BREACH: f.hours_left > 100,
        Story.SECOND_REJECTED: f.hours_left > 120,
        Story.ABANDONED: f.hours_left > 24,
        Story.OPEN_SUBMITTED: 1 < f.hours_left < 72,
        Story.OPEN_IN_REVIEW: 3 < f.hours_left < 72,
        Story.OPEN_SECOND_APPROVAL: f.high_severity and 4 < f.hours_left < 72,
        Story.OPEN_VERIFICATION: 4 < f.hours_left < 72,
        Story.APPROVED: f.hours_left > 72,
        Story.FACE_RETRY: f.hours_left > 72,
        Story.REJECTED_RISK: f.hours_left > 48,
    }
    return needs.get(story, True)


def _weights(f: FreezeFacts) -> dict[Story, float]:
    """The weighted draw once every wanted story has happened."""
    if f.self_service:
        return {Story.SELF_SERVICE_KYC: 6, Story.NO_APPEAL: 4}
    w: dict[Story, float]
    if f.innocent:
        w = {
            Story.APPROVED: 40,
            Story.EXPEDITED: 30,
            Story.MORE_INFO: 8,
            Story.FACE_RETRY: 3,
            Story.REJECTED_VOUCHER: 12,
            Story.SECOND_APPEAL: 9,
            Story.SLA_BREACH: 5,
            Story.ABANDONED: 3,
            Story.WITHDRAWN: 1,
            Story.NO_APPEAL: 8,
        }
    else:
        w = {
            Story.NO_APPEAL: 40,
            Story.REJECTED_RISK: 8,
            Story.SECOND_REJECTED: 5,
            Story.REJECTED_VOUCHER: 28,
            Story.ABANDONED: 6,
            Story.WITHDRAWN: 3,
            Story.SLA_BREACH: 2,
        }
        if f.high_severity:  # list data and AML alerts are wrong sometimes: a namesake, an explained source
            w[Story.APPROVED] = 10
    if f.hours_left < 72:  # recent freezes are what the queue is made of
        w.update(dict.fromkeys(OPEN_STORIES, 30.0))
    return {s: v for s, v in w.items() if eligible(s, f)}


class CasePlanner:
    """Picks a story for each freeze, in the order the freezes happen; deterministic in the seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(f"thawline-demo/{seed}/stories")  # noqa: S311 — a simulation, not secrets
        self.wanted = list(WANTED)
        self.counts: Counter[Story] = Counter()

    def plan(self, f: FreezeFacts) -> Story:
        """The story of this freeze."""
        story = next((s for s in self.wanted if eligible(s, f) and self._fits(s, f)), None)
        if story is not None:
            self.wanted.remove(story)
        else:
            weights = _weights(f)
            if not weights:
                story = Story.NO_APPEAL
            else:
                stories = list(weights)
                story = self.rng.choices(stories, weights=[weights[s] for s in stories])[0]
        self.counts[story] += 1
        return story

    @staticmethod
    def _fits(story: Story, f: FreezeFacts) -> bool:
        """Wanted stories go to holders they suit: approvals to the innocent, refusals to abusers."""
        if story in (Story.REJECTED_RISK, Story.SECOND_REJECTED):
            return not f.innocent
        if story in (
            Story.SELF_SERVICE_KYC,
            Story.ABANDONED,
            Story.WITHDRAWN,
            Story.REJECTED_VOUCHER,
            Story.OPEN_SUBMITTED,  # nobody has decided anything yet
            Story.OPEN_IN_REVIEW,
        ):
            return True
        return f.innocent or f.high_severity  # a listed holder may be a namesake (bad list data)
