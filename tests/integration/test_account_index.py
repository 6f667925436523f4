"""Per-account queries are complete whether or not the derived index has caught up."""

from __future__ import annotations

from tests.helpers import append
from thawline.oplog.entry import decode_entry
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork


def _accounts(runtime: Runtime, account: str, **kwargs: int) -> list[int]:
    with UnitOfWork(runtime, read_only=True) as uow:
        rows = list(uow.oplog.entries(account_id=account, **kwargs))
    assert all(decode_entry(data)["subject"]["account_id"] == account for _s, data, _c in rows)
    return [seq for seq, _d, _c in rows]


def test_account_queries_see_indexed_entries_and_the_unindexed_tail(runtime: Runtime) -> None:
    append(runtime, 30, batch=7, account="acc_a")
    append(runtime, 20, batch=5, account="acc_b")
    expected_a = list(range(30))
    assert _accounts(runtime, "acc_a") == expected_a  # nothing indexed yet: all from the bundles
    with UnitOfWork(runtime) as uow:
        assert uow.oplog.index_accounts(max_entries=40) == 40  # part of acc_b stays unindexed
        uow.commit()
    append(runtime, 10, batch=10, account="acc_a")
    assert _accounts(runtime, "acc_a") == [*expected_a, *range(50, 60)]
    assert _accounts(runtime, "acc_b") == list(range(30, 50))
    assert _accounts(runtime, "acc_b", start=35, stop=45) == list(range(35, 45))
    assert _accounts(runtime, "acc_a", limit=3) == [0, 1, 2]
    with UnitOfWork(runtime) as uow:
        assert uow.oplog.index_accounts() == 20
        uow.commit()
    with UnitOfWork(runtime) as uow:
        assert uow.oplog.index_accounts() == 0
    assert _accounts(runtime, "acc_a") == [*expected_a, *range(50, 60)]
    assert _accounts(runtime, "nobody") == []


def test_action_filter_matches_the_first_key_of_the_canonical_entry(runtime: Runtime) -> None:
    append(runtime, 5)
    with UnitOfWork(runtime, read_only=True) as uow:
        assert len(list(uow.oplog.entries(action="account.frozen"))) == 5
        assert list(uow.oplog.entries(action="account.froze")) == []
