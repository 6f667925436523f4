"""The gateway's authoriser gives the same answers as the unit-of-work path, and sees every commit."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from tests import lifecycle as lc
from thawline.domain.clock import FakeClock
from thawline.domain.errors import NotFoundError
from thawline.domain.freezes import Direction, Operation
from thawline.services import freezes
from thawline.services.authorizer import Authorizer
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

SMALL = Operation(Direction.DEBIT, Decimal("10"), "CNY")
LARGE = Operation(Direction.CREDIT, Decimal("60000"), "CNY")


def _both(runtime: Runtime, authorizer: Authorizer, op: Operation) -> str:
    with UnitOfWork(runtime, read_only=True) as uow:
        slow = freezes.authorize(uow, "acc_1", op)
    fast = authorizer.check("acc_1", op)
    assert fast == slow
    return fast.code


def test_the_authoriser_follows_every_change_without_a_cache_to_go_stale(
    runtime: Runtime, clock: FakeClock
) -> None:
    authorizer = Authorizer(runtime, connections=2)
    try:
        lc.register(runtime)
        assert _both(runtime, authorizer, SMALL) == "allowed"
        freeze_id = lc.freeze(runtime)
        assert _both(runtime, authorizer, SMALL) == "frozen"
        appeal_id = lc.submit_appeal(runtime, freeze_id)
        lc.claim(runtime, appeal_id, lc.ALICE)
        lc.decide(runtime, appeal_id, lc.ALICE)
        lc.pass_sms(runtime, appeal_id)
        lc.pass_face(runtime, appeal_id)
        assert _both(runtime, authorizer, SMALL) == "allowed"
        assert _both(runtime, authorizer, LARGE) == "probation"
        clock.advance(timedelta(hours=24))
        assert _both(runtime, authorizer, LARGE) == "allowed"
        with pytest.raises(NotFoundError):
            authorizer.check("acc_unknown", SMALL)
    finally:
        authorizer.close()


def test_busy_connections_fall_back_to_a_unit_of_work(runtime: Runtime) -> None:
    lc.register(runtime)
    lc.freeze(runtime)
    authorizer = Authorizer(runtime, connections=0)  # every check takes the fallback path
    assert authorizer.check("acc_1", SMALL).code == "frozen"
    authorizer.close()
