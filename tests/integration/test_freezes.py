"""Accounts, freezes and authorisation through the service layer, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from thawline.domain.clock import FakeClock
from thawline.domain.errors import ConflictError, InvalidInputError, NotFoundError
from thawline.domain.freezes import Direction, FreezeScope, Operation, ReasonCategory, Restriction, SourceKind
from thawline.oplog.entry import Actor, ActorKind, EvidenceRef, decode_entry
from thawline.services import accounts, freezes
from thawline.services.accounts import RegisterAccount
from thawline.services.freezes import FreezeAccount
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.verify import verify_log

GATEWAY = Actor(ActorKind.INTEGRATOR, "ak_gateway")
RULE = Actor(ActorKind.RULE, "high_frequency")
REVIEWER = Actor(ActorKind.REVIEWER, "rv_li")
PAY = Operation(Direction.DEBIT, Decimal("120.00"), "CNY", channel="card", counterparty="m_1")


def _register(runtime: Runtime, account_id: str = "acc_1", **kwargs: object) -> None:
    cmd = RegisterAccount(
        account_id,
        "李雷",
        resident_id="11010519491231002x",
        phone="13800138000",
        bank_cards=("4111 1111 1111 1111",),
        **kwargs,
    )  # type: ignore[arg-type]
    with UnitOfWork(runtime) as uow:
        accounts.register(uow, cmd, GATEWAY)
        uow.commit()


def _freeze(
    runtime: Runtime,
    restriction: Restriction,
    category: ReasonCategory = ReasonCategory.HIGH_FREQUENCY,
    **kwargs: object,
) -> str:
    cmd = FreezeAccount(
        "acc_1",
        restriction,
        category,
        ("HF_10MIN",),
        SourceKind.RULE,
        "high_frequency",
        "Payment services rules art. 9",
        "42 payments in 10 minutes",
        "Unusually many payments in a short time",
        rule_version=3,
        evidence=(EvidenceRef("transaction", "tx_7"),),
        **kwargs,  # type: ignore[arg-type]
    )
    with UnitOfWork(runtime) as uow:
        made, _created = freezes.freeze_account(uow, cmd, RULE)
        uow.commit()
    return made.id


def _authorize(runtime: Runtime, op: Operation = PAY) -> tuple[bool, str | None]:
    with UnitOfWork(runtime, read_only=True) as uow:
        decision = freezes.authorize(uow, "acc_1", op)
    return decision.allowed, decision.freeze_id


def test_a_freeze_denies_what_it_covers_until_it_is_released(runtime: Runtime) -> None:
    _register(runtime)
    assert _authorize(runtime) == (True, None)
    freeze_id = _freeze(runtime, Restriction(FreezeScope.DEBIT))
    assert _authorize(runtime) == (False, freeze_id)
    assert _authorize(runtime, Operation(Direction.CREDIT, Decimal(5), "CNY")) == (True, None)
    with UnitOfWork(runtime) as uow:
        freezes.release(uow, freeze_id, REVIEWER, "customer proved the payments were payroll")
        uow.commit()
    assert _authorize(runtime) == (True, None)
    with UnitOfWork(runtime, read_only=True) as uow:
        entries = [decode_entry(d) for _s, d, _c in uow.oplog.entries(account_id="acc_1")]
    assert [e["action"] for e in entries] == ["account.registered", "account.frozen", "freeze.released"]
    frozen = entries[1]
    assert frozen["rule"] == {"id": "high_frequency", "version": 3}
    assert frozen["evidence"] == [{"id": "tx_7", "kind": "transaction"}]
    assert (frozen["state_before"]["account"], frozen["state_after"]["account"]) == ("active", "restricted")
    assert entries[2]["state_after"]["freeze"]["status"] == "released"
    assert verify_log(runtime, deep=True).ok


def test_personal_identifiers_never_reach_the_log(runtime: Runtime) -> None:
    _register(runtime)
    with UnitOfWork(runtime, read_only=True) as uow:
        log_text = b"".join(d for _s, d, _c in uow.oplog.entries())
    for plain in (b"11010519491231002", b"13800138000", b"4111111111111111", "李雷".encode()):
        assert plain not in log_text


def test_registering_again_is_a_harmless_replay_but_different_details_conflict(runtime: Runtime) -> None:
    _register(runtime)
    _register(runtime)  # a client retry: nothing new
    with UnitOfWork(runtime, read_only=True) as uow:
        assert uow.oplog.count() == 1
    with pytest.raises(ConflictError, match="different details"):
        _register(runtime, vip_tier=2)


def test_bad_identifiers_are_refused_with_the_field_named(runtime: Runtime) -> None:
    with UnitOfWork(runtime) as uow, pytest.raises(InvalidInputError) as caught:
        accounts.register(
            uow, RegisterAccount("acc_1", "韩梅梅", bank_cards=("4111 1111 1111 1112",)), GATEWAY
        )
    assert caught.value.field == "holder.bank_cards[0]"


def test_the_strictest_freeze_wins_and_amount_limits_are_per_currency(runtime: Runtime) -> None:
    _register(runtime)
    limit = _freeze(runtime, Restriction(FreezeScope.AMOUNT_ABOVE, limit=Decimal("100.00"), currency="CNY"))
    assert _authorize(runtime, Operation(Direction.DEBIT, Decimal("99.99"), "CNY")) == (True, None)
    assert _authorize(runtime) == (False, limit)
    assert _authorize(runtime, Operation(Direction.DEBIT, Decimal("1"), "USD")) == (False, limit)
    full = _freeze(runtime, Restriction(FreezeScope.FULL))
    assert _authorize(runtime, Operation(Direction.DEBIT, Decimal("1"), "CNY")) == (False, full)


def test_an_aml_freeze_tells_the_holder_nothing_and_cannot_be_released_directly(runtime: Runtime) -> None:
    _register(runtime, language="en")
    freeze_id = _freeze(runtime, Restriction(FreezeScope.FULL), category=ReasonCategory.AML)
    with UnitOfWork(runtime, read_only=True) as uow:
        decision = freezes.authorize(uow, "acc_1", PAY)
    assert decision.holder_reason is not None
    assert "payments" not in decision.holder_reason
    assert "compliance review" in decision.holder_reason
    with UnitOfWork(runtime) as uow, pytest.raises(ConflictError, match="four eyes"):
        freezes.release(uow, freeze_id, REVIEWER, "looks fine")
    assert _authorize(runtime) == (False, freeze_id)


def test_releasing_twice_is_a_conflict_and_records_nothing(runtime: Runtime) -> None:
    _register(runtime)
    freeze_id = _freeze(runtime, Restriction(FreezeScope.FULL))
    with UnitOfWork(runtime) as uow:
        freezes.release(uow, freeze_id, REVIEWER, "ok")
        uow.commit()
    with UnitOfWork(runtime, read_only=True) as uow:
        before = uow.oplog.count()
    with UnitOfWork(runtime) as uow, pytest.raises(ConflictError, match="released"):
        freezes.release(uow, freeze_id, REVIEWER, "again")
    with UnitOfWork(runtime, read_only=True) as uow:
        assert uow.oplog.count() == before


def test_an_expired_freeze_no_longer_binds(runtime: Runtime, clock: FakeClock) -> None:
    _register(runtime)
    _freeze(runtime, Restriction(FreezeScope.FULL), expires_at=clock.now() + timedelta(hours=2))
    assert _authorize(runtime)[0] is False
    clock.advance(timedelta(hours=2))
    assert _authorize(runtime) == (True, None)


def test_a_replayed_freeze_with_its_idempotency_key_changes_nothing(runtime: Runtime) -> None:
    _register(runtime)
    first = _freeze(runtime, Restriction(FreezeScope.FULL), idempotency_key="req-1")
    again = _freeze(runtime, Restriction(FreezeScope.FULL), idempotency_key="req-1")
    assert first == again
    with UnitOfWork(runtime, read_only=True) as uow:
        assert len(freezes.list_freezes(uow, "acc_1")) == 1


def test_unknown_accounts_are_not_silently_allowed(runtime: Runtime) -> None:
    with UnitOfWork(runtime, read_only=True) as uow, pytest.raises(NotFoundError):
        freezes.authorize(uow, "acc_nobody", PAY)
