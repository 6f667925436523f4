"""The appeal domain: the requirements matrix, the checklist and the guarded state machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thawline.domain.appeals import (
    ALLOWED,
    Appeal,
    AppealStatus,
    CategoryRequirements,
    Material,
    MaterialKind,
    RequirementsMatrix,
    missing_items,
)
from thawline.domain.errors import ConflictError
from thawline.domain.freezes import ReasonCategory
from thawline.services.runtime import load_requirements

T0 = datetime(2026, 11, 25, tzinfo=UTC)


def test_the_shipped_matrix_covers_every_category() -> None:
    matrix = load_requirements(None)
    assert set(matrix.categories) == set(ReasonCategory)
    assert matrix.for_category(ReasonCategory.HIGH_FREQUENCY).voucher_per_flagged_transaction
    assert matrix.for_category(ReasonCategory.KYC_INCOMPLETE).self_service == "finish_kyc"
    assert (matrix.rounds, matrix.first_response) == (2, timedelta(hours=48))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[categories.aml]\nmaterials = []", "missing"),
        ("[categories.nope]\nmaterials = []", "unknown"),
        ("rounds = ", "not valid TOML"),
    ],
)
def test_a_broken_matrix_is_refused_at_load(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RequirementsMatrix.from_toml(text)


def test_a_voucher_covers_only_the_transactions_it_names() -> None:
    req = CategoryRequirements((MaterialKind.EXPLANATION_LETTER,), voucher_per_flagged_transaction=True)
    vouchers = [Material("m1", MaterialKind.TRANSACTION_VOUCHER, "0" * 64, "image/png", 10, ("T1", "T3"))]
    missing = missing_items(req, ("T1", "T2", "T3", "T7"), vouchers, "why")
    assert [m.message() for m in missing] == [
        "missing: a signed explanation letter",
        "voucher missing for transactions T2 and T7",
    ]
    letter = Material("m2", MaterialKind.EXPLANATION_LETTER, "1" * 64, "application/pdf", 10)
    more = Material("m3", MaterialKind.TRANSACTION_VOUCHER, "2" * 64, "image/png", 10, ("T2", "T7"))
    assert missing_items(req, ("T1", "T2", "T3", "T7"), [*vouchers, letter, more], "why") == []


@given(st.lists(st.sampled_from(list(AppealStatus)), max_size=8))
def test_no_sequence_of_moves_leaves_the_transition_table(moves: list[AppealStatus]) -> None:
    appeal = Appeal("apl_1", "frz_1", "acc_1", 1, AppealStatus.DRAFT, "why", "in_site", "holder:acc_1", T0)
    for target in moves:
        if target in ALLOWED[appeal.status]:
            appeal = appeal.move(target, at=T0, first_response=timedelta(hours=48))
            assert appeal.status is target
        else:
            with pytest.raises(ConflictError):
                appeal.move(target, at=T0, first_response=timedelta(hours=48))
    if appeal.status in (AppealStatus.SUBMITTED, AppealStatus.RESUBMITTED):
        assert appeal.first_response_due == T0 + timedelta(hours=48)
