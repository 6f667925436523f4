"""The freeze domain: what each scope blocks, the guarded state machine, no tipping-off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thawline.domain import authorization
from thawline.domain.errors import ConflictError, InvalidInputError
from thawline.domain.freezes import (
    ALLOWED,
    Direction,
    Freeze,
    FreezeScope,
    FreezeStatus,
    Operation,
    ReasonCategory,
    Restriction,
    SourceKind,
)

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def make(
    restriction: Restriction, category: ReasonCategory = ReasonCategory.BEHAVIOR, minutes: int = 0
) -> Freeze:
    """A freeze created ``minutes`` after T0."""
    return Freeze(
        id=f"frz_{minutes}_{restriction.scope}",
        account_id="acc_1",
        restriction=restriction,
        category=category,
        reason_codes=("R1",),
        source=SourceKind.REVIEWER,
        source_ref="rv_1",
        legal_basis="terms §4",
        internal_reason="internal",
        holder_reason="Many profile changes in a day",
        created_by="reviewer:rv_1",
        created_at=T0 + timedelta(minutes=minutes),
        review_by=T0 + timedelta(days=30),
    )


DEBIT_100 = Operation(Direction.DEBIT, Decimal("100"), "CNY", channel="card", counterparty="m_1")
CREDIT_100 = Operation(Direction.CREDIT, Decimal("100"), "CNY", channel="bank", counterparty="m_2")


@pytest.mark.parametrize(
    ("restriction", "debit_blocked", "credit_blocked"),
    [
        (Restriction(FreezeScope.FULL), True, True),
        (Restriction(FreezeScope.DEBIT), True, False),
        (Restriction(FreezeScope.CREDIT), False, True),
        (Restriction(FreezeScope.AMOUNT_ABOVE, limit=Decimal("100"), currency="CNY"), False, False),
        (Restriction(FreezeScope.AMOUNT_ABOVE, limit=Decimal("99.99"), currency="CNY"), True, True),
        (Restriction(FreezeScope.CHANNEL, channel="card"), True, False),
        (Restriction(FreezeScope.COUNTERPARTY, counterparty="m_2"), False, True),
    ],
)
def test_each_scope_blocks_exactly_what_it_names(
    restriction: Restriction, debit_blocked: bool, credit_blocked: bool
) -> None:
    assert restriction.blocks(DEBIT_100) is debit_blocked
    assert restriction.blocks(CREDIT_100) is credit_blocked


def test_a_scope_without_its_parameter_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidInputError) as caught:
        Restriction(FreezeScope.CHANNEL)
    assert caught.value.field == "restriction.channel"


def test_the_broadest_oldest_freeze_is_the_one_named() -> None:
    freezes = [
        make(Restriction(FreezeScope.DEBIT), minutes=1),
        make(Restriction(FreezeScope.FULL), minutes=5),
    ]
    decision = authorization.authorize(freezes, DEBIT_100, T0 + timedelta(hours=1))
    assert decision.freeze_id == freezes[1].id
    assert authorization.status(freezes, T0 + timedelta(hours=1)) is authorization.AccountStatus.FROZEN
    assert (
        authorization.status(freezes[:1], T0 + timedelta(hours=1)) is authorization.AccountStatus.RESTRICTED
    )


@pytest.mark.parametrize("category", [ReasonCategory.AML, ReasonCategory.REGULATOR])
def test_aml_and_regulator_freezes_show_the_holder_a_neutral_text(category: ReasonCategory) -> None:
    freeze = make(Restriction(FreezeScope.FULL), category)
    assert freeze.holder_facing_reason("zh-CN") == "您的账户因例行合规审查暂时受限，审查完成后将通知您。"
    assert "profile" not in freeze.holder_facing_reason("en")


@given(st.lists(st.sampled_from(list(FreezeStatus)), max_size=6))
def test_no_sequence_of_moves_leaves_the_table_of_allowed_transitions(moves: list[FreezeStatus]) -> None:
    freeze = make(Restriction(FreezeScope.FULL))
    for target in moves:
        before = freeze
        if target in ALLOWED[freeze.status]:
            freeze = freeze.move(target, by="reviewer:rv_2", reason="r", at=T0 + timedelta(hours=1))
            assert freeze.status is target
        else:
            with pytest.raises(ConflictError):
                freeze.move(target, by="reviewer:rv_2", reason="r", at=T0 + timedelta(hours=1))
            assert freeze == before
    assert freeze.status is FreezeStatus.ACTIVE or freeze.ended_at is not None
