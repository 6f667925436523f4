"""The VIP expedite channel: three a year, never spent twice, not even by racing requests."""

from __future__ import annotations

import threading

import pytest

from thawline.domain.errors import ConflictError
from thawline.domain.freezes import FreezeScope, ReasonCategory, Restriction, SourceKind
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import accounts, appeals, expedite, freezes
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

HOLDER = Actor(ActorKind.HOLDER, "acc_vip")


def _appeals(runtime: Runtime, n: int, vip_tier: int = 1) -> list[str]:
    """n open appeals (one per freeze) of one holder."""
    ids = []
    with UnitOfWork(runtime) as uow:
        accounts.register(uow, accounts.RegisterAccount("acc_vip", "钱七", vip_tier=vip_tier), HOLDER)
        uow.commit()
    for i in range(n):
        with UnitOfWork(runtime) as uow:
            made, _ = freezes.freeze_account(
                uow,
                freezes.FreezeAccount(
                    "acc_vip",
                    Restriction(FreezeScope.CHANNEL, channel=f"ch{i}"),
                    ReasonCategory.MANUAL,
                    ("M1",),
                    SourceKind.REVIEWER,
                    "rv_1",
                    "terms",
                    "why",
                    "told",
                ),
                Actor(ActorKind.REVIEWER, "rv_1"),
            )
            appeal, _ = appeals.open_appeal(
                uow,
                made.id,
                explanation="please",
                contact_channel="in_site",
                contact_value=None,
                actor=HOLDER,
            )
            uow.commit()
        ids.append(appeal.id)
    return ids


def _expedite(runtime: Runtime, appeal_id: str) -> int:
    with UnitOfWork(runtime) as uow:
        left = expedite.expedite(uow, appeal_id, HOLDER)
        uow.commit()
    return left.remaining


def test_three_expedites_a_year_and_the_quota_is_visible(runtime: Runtime) -> None:
    ids = _appeals(runtime, 4)
    assert [_expedite(runtime, a) for a in ids[:3]] == [2, 1, 0]
    with pytest.raises(ConflictError, match="all 3 expedites"):
        _expedite(runtime, ids[3])
    with UnitOfWork(runtime, read_only=True) as uow:
        assert expedite.quota(uow, "acc_vip").remaining == 0
        assert not appeals.get(uow, ids[3]).expedited  # the refused request changed nothing
        assert len(list(uow.oplog.entries(action="appeal.expedited"))) == 3


def test_holders_without_vip_have_no_expedite_channel(runtime: Runtime) -> None:
    (appeal_id,) = _appeals(runtime, 1, vip_tier=0)
    with pytest.raises(ConflictError, match="VIP"):
        _expedite(runtime, appeal_id)


def test_the_same_appeal_twice_spends_one(runtime: Runtime) -> None:
    (appeal_id,) = _appeals(runtime, 1)
    assert _expedite(runtime, appeal_id) == 2
    with pytest.raises(ConflictError, match="already expedited"):
        _expedite(runtime, appeal_id)
    with UnitOfWork(runtime, read_only=True) as uow:
        assert expedite.quota(uow, "acc_vip").used == 1


def test_racing_requests_never_spend_more_than_the_quota(runtime: Runtime) -> None:
    ids = _appeals(runtime, 6)
    results: list[str] = []
    barrier = threading.Barrier(len(ids))

    def race(appeal_id: str) -> None:
        barrier.wait()
        try:
            _expedite(runtime, appeal_id)
            results.append("ok")
        except ConflictError:
            results.append("refused")

    threads = [threading.Thread(target=race, args=(a,)) for a in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ok"] * 3 + ["refused"] * 3
    with UnitOfWork(runtime, read_only=True) as uow:
        assert expedite.quota(uow, "acc_vip").used == 3
        assert sum(appeals.get(uow, a).expedited for a in ids) == 3
