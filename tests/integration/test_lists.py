"""Block- and allow-lists on both backends: versioned imports, blind-index matching, erroneous removals."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from tests.conftest import make_settings
from thawline.adapters.db.schema import freeze as freeze_table
from thawline.adapters.db.schema import list_entry, list_version
from thawline.domain.clock import FakeClock
from thawline.domain.errors import ConflictError, InvalidInputError
from thawline.domain.freezes import FreezeScope, FreezeStatus, ReasonCategory, Restriction, SourceKind
from thawline.oplog.entry import Actor, ActorKind, EvidenceRef, decode_entry
from thawline.services import accounts, freezes, lists, vault
from thawline.services.runtime import Runtime, build_runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.verify import verify_log

STAFF = Actor(ActorKind.SYSTEM, "risk_ops")
RESIDENT_ID = "11010519491231002X"
PHONE = "+8613800138000"
CARD = "4111111111111111"
CSV = (
    "kind,value,reason\n"
    "resident_id,11010519491231002x,court order list\n"
    "phone,138 0013 8000,fraud ring\n"
    "bank_card,4111-1111-1111-1111,card testing\n"
    "name,王 芳,sanctions list\n"
    "device,dev_9,emulator farm\n"
    "ip,10.9.8.7,open proxy\n"
    "phone,12345,unusable line\n"
)
# Everything the file or the account holds that must never reach the log.
SECRETS = (
    RESIDENT_ID,
    "11010519491231002x",
    PHONE,
    "13800138000",
    "138 0013 8000",
    CARD,
    "4111-1111-1111-1111",
    "王芳",
    "王 芳",
    "dev_9",
    "10.9.8.7",
    "12345",
)


@pytest.fixture
def release_runtime(database_url: str, tmp_path: Path, clock: FakeClock) -> Iterator[Runtime]:
    """A runtime whose erroneous list removals release the freezes they caused."""
    settings = make_settings(database_url, tmp_path, list_removal_action="release")
    rt = build_runtime(settings, clock=clock)
    try:
        yield rt
    finally:
        rt.close()


def _register(runtime: Runtime, account_id: str = "acc_1", name: str = "王芳") -> None:
    with UnitOfWork(runtime) as uow:
        accounts.register(
            uow,
            accounts.RegisterAccount(
                account_id, name, resident_id=RESIDENT_ID, phone="13800138000", bank_cards=(CARD,)
            ),
            STAFF,
        )
        uow.commit()


def _import(runtime: Runtime, csv_text: str = CSV, list_type: str = "block") -> lists.ImportResult:
    with UnitOfWork(runtime) as uow:
        result = lists.import_csv(uow, csv_text, list_type, STAFF, "feed-2026-11.csv")
        uow.commit()
    return result


def _entry_ids(runtime: Runtime, **where: str) -> dict[str, str]:
    """kind -> id of the active entries."""
    with UnitOfWork(runtime, read_only=True) as uow:
        return {e.kind: e.id for e in lists.list_entries(uow, **where)}  # type: ignore[arg-type]


def _matches(runtime: Runtime, account_id: str = "acc_1") -> list[lists.ListMatch]:
    with UnitOfWork(runtime, read_only=True) as uow:
        return lists.account_matches(uow, account_id, lists.load_index(uow))


def _log(runtime: Runtime, action: str) -> list[dict[str, object]]:
    with UnitOfWork(runtime, read_only=True) as uow:
        return [decode_entry(data) for _s, data, _c in uow.oplog.entries(action=action)]


def _all_log_bytes(runtime: Runtime) -> bytes:
    with runtime.engine.connect() as conn:
        return b"".join(bytes(r[0]) for r in conn.execute(text("SELECT data FROM oplog_bundle")))


def _blacklist_freeze(runtime: Runtime, *entry_ids: str, account_id: str = "acc_1") -> str:
    with UnitOfWork(runtime) as uow:
        made, _ = freezes.freeze_account(
            uow,
            freezes.FreezeAccount(
                account_id,
                Restriction(FreezeScope.FULL),
                category=ReasonCategory.BLACKLIST,
                reason_codes=("BLOCKLIST_HIT",),
                source=SourceKind.RULE,
                source_ref="blocklist",
                legal_basis="AML policy §3",
                internal_reason="block-list hit",
                holder_reason="Your account matches a restricted list",
                evidence=tuple(EvidenceRef("list_entry", i) for i in entry_ids),
                rule_version=1,
            ),
            Actor(ActorKind.RULE, "blocklist"),
        )
        uow.commit()
    return made.id


def _remove(runtime: Runtime, entry_id: str, *, erroneous: bool = True) -> lists.RemovalResult:
    with UnitOfWork(runtime) as uow:
        result = lists.remove_entry(
            uow, entry_id, erroneous=erroneous, reason="provider withdrew the record", actor=STAFF
        )
        uow.commit()
    return result


def test_an_import_makes_one_version_and_one_log_entry_without_any_value(runtime: Runtime) -> None:
    result = _import(runtime)
    assert (result.version, result.imported, result.duplicates) == (1, 6, 0)
    assert [(e.line, e.field) for e in result.errors] == [(8, "value")]
    assert result.by_kind == {"bank_card": 1, "device": 1, "ip": 1, "name": 1, "phone": 1, "resident_id": 1}
    with runtime.engine.connect() as conn:
        versions = conn.execute(select(list_version)).all()
        stored = conn.execute(select(list_entry.c.value_hash, list_entry.c.name, list_entry.c.version)).all()
    assert [(v.version, v.list_type, v.change, v.source_name, v.entries, v.rejected) for v in versions] == [
        (1, "block", "import", "feed-2026-11.csv", 6, 1)
    ]
    assert versions[0].created_by == "system:risk_ops"
    assert {r.version for r in stored} == {1}
    assert sorted(r.name for r in stored if r.name) == ["王芳"]  # only names are kept as text
    keys = vault.derive_keys(runtime.vault_master_key)
    assert vault.blind_index(keys, "phone", PHONE) in {bytes(r.value_hash) for r in stored}

    [entry] = _log(runtime, "list.imported")
    assert entry["subject"] == {"ref": "list_version:1"}
    assert entry["details"]["imported"] == 6  # type: ignore[index]
    assert entry["details"]["rejected"] == 1  # type: ignore[index]
    log_bytes = _all_log_bytes(runtime)
    for secret in SECRETS:
        assert secret.encode() not in log_bytes, secret
    assert verify_log(runtime).ok


def test_a_repeated_import_adds_nothing_but_is_a_new_version(runtime: Runtime) -> None:
    _import(runtime)
    again = _import(runtime)
    assert (again.version, again.imported, again.duplicates) == (2, 0, 6)
    with UnitOfWork(runtime, read_only=True) as uow:
        assert lists.current_version(uow) == 2
        assert len(lists.list_entries(uow)) == 6
    assert len(_log(runtime, "list.imported")) == 2


def test_a_file_with_nothing_valid_changes_nothing(runtime: Runtime) -> None:
    with UnitOfWork(runtime) as uow, pytest.raises(lists.ListImportError) as caught:
        lists.import_csv(uow, "phone,12345,x\nfoo,bar\n", "block", STAFF, "bad.csv")
    assert [(e.line, e.field) for e in caught.value.errors] == [(1, "value"), (2, "line")]
    with UnitOfWork(runtime, read_only=True) as uow:
        assert lists.current_version(uow) == 0
        assert uow.oplog.count() == 0


def test_a_registered_account_matches_by_blind_index_and_fuzzy_name(runtime: Runtime) -> None:
    _register(runtime)
    _register(runtime, "acc_2", "李雷")  # same identifiers (a shared phone), another name
    _import(runtime)
    ids = _entry_ids(runtime)
    found = _matches(runtime)
    assert [(m.kind, m.entry_id, m.list_type) for m in found] == [
        ("bank_card", ids["bank_card"], "block"),
        ("name", ids["name"], "block"),
        ("phone", ids["phone"], "block"),
        ("resident_id", ids["resident_id"], "block"),
    ]
    assert "name" not in {m.kind for m in _matches(runtime, "acc_2")}
    with UnitOfWork(runtime, read_only=True) as uow:
        index = lists.load_index(uow)
        events = lists.account_matches(uow, "acc_2", index, device="dev_9", ip="10.9.8.7")
    assert {"device", "ip"} <= {m.kind for m in events}
    assert index.version == 1
    assert index.size == 6


def test_allow_beats_block_of_the_same_kind(runtime: Runtime) -> None:
    _register(runtime)
    _import(runtime)
    allowed = _import(runtime, "phone,+86 13800138000,verified shared business line\n", "allow")
    assert allowed.imported == 1
    found = _matches(runtime)
    allow_id = _entry_ids(runtime, list_type="allow")["phone"]
    assert found[0] == lists.ListMatch(allow_id, "phone", "allow")
    assert [(m.kind, m.list_type) for m in found[1:]] == [
        ("bank_card", "block"),
        ("name", "block"),
        ("resident_id", "block"),
    ]


def test_an_erased_holder_matches_nothing(runtime: Runtime) -> None:
    _register(runtime)
    _import(runtime)
    with UnitOfWork(runtime) as uow:
        vault.erase_subject(uow, accounts.get(uow, "acc_1").holder_subject_id, STAFF, "ERASURE_REQUEST")
        uow.commit()
    assert _matches(runtime) == []


def test_removing_an_erroneous_entry_flags_its_freeze_for_rereview(
    runtime: Runtime, clock: FakeClock
) -> None:
    _register(runtime)
    _import(runtime)
    phone_entry = _entry_ids(runtime)["phone"]
    freeze_id = _blacklist_freeze(runtime, phone_entry)
    unrelated = _blacklist_freeze(runtime, _entry_ids(runtime)["bank_card"])
    clock.advance(timedelta(hours=1))
    result = _remove(runtime, phone_entry)
    assert [(a.freeze_id, a.action) for a in result.affected] == [(freeze_id, "rereview")]
    assert result.version == 2
    assert not result.entry.active
    assert result.entry.erroneous is True
    with UnitOfWork(runtime, read_only=True) as uow:
        row = uow.conn.execute(select(freeze_table).where(freeze_table.c.id == freeze_id)).one()
        assert row.status == "active"
        assert row.rereview_flagged_at == clock.now()
        assert row.review_by <= clock.now()  # due now: a reviewer can act at once
        other = uow.conn.execute(select(freeze_table).where(freeze_table.c.id == unrelated)).one()
        assert other.rereview_flagged_at is None
        assert phone_entry not in {
            m.entry_id for m in lists.account_matches(uow, "acc_1", lists.load_index(uow))
        }
    [due] = _log(runtime, "freeze.rereview_due")
    assert due["subject"] == {"account_id": "acc_1", "freeze_id": freeze_id}
    assert due["details"]["reason"] == "list entry removed as erroneous"  # type: ignore[index]
    [removed] = _log(runtime, "list.entry_removed")
    assert removed["details"]["freezes"] == [{"freeze_id": freeze_id, "action": "rereview"}]  # type: ignore[index]


def test_removing_an_erroneous_entry_releases_its_blacklist_freeze_when_so_configured(
    release_runtime: Runtime,
) -> None:
    runtime = release_runtime
    _register(runtime)
    _import(runtime)
    ids = _entry_ids(runtime)
    only_phone = _blacklist_freeze(runtime, ids["phone"])
    phone_and_card = _blacklist_freeze(runtime, ids["phone"], ids["bank_card"])
    result = _remove(runtime, ids["phone"])
    assert {a.freeze_id: a.action for a in result.affected} == {
        only_phone: "release",
        phone_and_card: "rereview",  # the card entry still supports it
    }
    with UnitOfWork(runtime, read_only=True) as uow:
        released = freezes.get(uow, only_phone)
        kept = freezes.get(uow, phone_and_card)
    assert released.status is FreezeStatus.RELEASED
    assert released.end_reason == "list entry removed as erroneous"
    assert kept.status is FreezeStatus.ACTIVE
    [logged] = _log(runtime, "freeze.released")
    assert logged["details"]["reason"] == "list entry removed as erroneous"  # type: ignore[index]
    assert logged["details"]["list_entry"] == ids["phone"]  # type: ignore[index]


def test_a_plain_removal_leaves_freezes_alone(release_runtime: Runtime) -> None:
    runtime = release_runtime
    _register(runtime)
    _import(runtime)
    phone_entry = _entry_ids(runtime)["phone"]
    freeze_id = _blacklist_freeze(runtime, phone_entry)
    result = _remove(runtime, phone_entry, erroneous=False)
    assert result.affected == ()
    with UnitOfWork(runtime, read_only=True) as uow:
        assert freezes.get(uow, freeze_id).status is FreezeStatus.ACTIVE
    with pytest.raises(ConflictError):
        _remove(runtime, phone_entry)


def test_a_removed_name_is_cleared_and_the_entry_kept_for_audit(runtime: Runtime) -> None:
    _import(runtime)
    name_entry = _entry_ids(runtime)["name"]
    _remove(runtime, name_entry, erroneous=False)
    with UnitOfWork(runtime, read_only=True) as uow:
        row = uow.conn.execute(select(list_entry).where(list_entry.c.id == name_entry)).one()
        assert row.name is None
        assert row.removed_version == 2
        assert [e.id for e in lists.list_entries(uow, kind="name", include_removed=True)] == [name_entry]
        assert lists.list_entries(uow, kind="name") == []


def test_add_entry_is_a_version_and_refuses_a_duplicate(runtime: Runtime) -> None:
    with UnitOfWork(runtime) as uow:
        entry = lists.add_entry(uow, "block", "ip", "10.1.1.1", reason="botnet", actor=STAFF)
        uow.commit()
    assert (entry.kind, entry.version, entry.active) == ("ip", 1, True)
    with UnitOfWork(runtime) as uow, pytest.raises(ConflictError):
        lists.add_entry(uow, "block", "ip", "::ffff:10.1.1.1", reason="again", actor=STAFF)
    with UnitOfWork(runtime) as uow:  # the other list may hold it
        lists.add_entry(uow, "allow", "ip", "10.1.1.1", reason="our office", actor=STAFF)
        uow.commit()
    assert len(_log(runtime, "list.entry_added")) == 2


def test_an_identifier_in_a_free_text_reason_is_refused(runtime: Runtime) -> None:
    _import(runtime)
    phone_entry = _entry_ids(runtime)["phone"]
    with UnitOfWork(runtime) as uow, pytest.raises(InvalidInputError) as caught:
        lists.remove_entry(uow, phone_entry, erroneous=True, reason="13800138000 is not hers", actor=STAFF)
    assert caught.value.field == "reason"
    with UnitOfWork(runtime, read_only=True) as uow:
        assert lists.get_entry(uow, phone_entry).active
