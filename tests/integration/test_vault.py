"""The personal-data vault: encrypted per subject, matched by keyed hash, crypto-shredded on erasure."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.helpers import append
from thawline.domain.errors import ConflictError
from thawline.oplog.entry import Actor, ActorKind, LogRecord, Subject
from thawline.services import vault
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.verify import verify_log

ADMIN = Actor(ActorKind.SYSTEM, "test")
RESIDENT_ID = "11010519491231002X"
PHONE = "+8613800138000"


def _store(runtime: Runtime) -> tuple[str, str, str]:
    with UnitOfWork(runtime) as uow:
        subject = vault.create_subject(uow)
        rid = vault.put(uow, subject, "resident_id", RESIDENT_ID)
        phone = vault.put(uow, subject, "phone", PHONE)
        uow.record(
            LogRecord(
                "holder.registered",
                ADMIN,
                Subject(ref=f"subject:{subject}"),
                details={"resident_id": rid, "phone": phone},
            )
        )
        uow.commit()
    return subject, rid, phone


def test_values_are_encrypted_at_rest_and_readable_through_the_vault(runtime: Runtime) -> None:
    _subject, rid, phone = _store(runtime)
    with runtime.engine.connect() as conn:
        blobs = b"".join(bytes(r[0]) for r in conn.execute(text("SELECT ciphertext FROM vault_value")))
        log_bytes = b"".join(bytes(r[0]) for r in conn.execute(text("SELECT data FROM oplog_bundle")))
    for plain in (RESIDENT_ID.encode(), PHONE.encode(), b"13800138000"):
        assert plain not in blobs
        assert plain not in log_bytes
    with UnitOfWork(runtime, read_only=True) as uow:
        assert vault.reveal(uow, rid) == RESIDENT_ID
        assert vault.reveal(uow, phone) == PHONE
        assert [v for v, _s in vault.find(uow, "phone", PHONE)] == [phone]
        assert vault.find(uow, "resident_id", PHONE) == []


def test_a_ciphertext_moved_to_another_row_does_not_decrypt(runtime: Runtime) -> None:
    _subject, rid, phone = _store(runtime)
    with runtime.engine.begin() as conn:
        row = conn.execute(text("SELECT nonce, ciphertext FROM vault_value WHERE id = :i"), {"i": rid}).one()
        conn.execute(
            text("UPDATE vault_value SET nonce = :n, ciphertext = :c WHERE id = :i"),
            {"n": row.nonce, "c": row.ciphertext, "i": phone},
        )
    with UnitOfWork(runtime, read_only=True) as uow, pytest.raises(ConflictError, match="authentication"):
        vault.reveal(uow, phone)


def test_erasing_a_subject_shreds_its_data_and_the_log_still_verifies(runtime: Runtime) -> None:
    subject, rid, _phone = _store(runtime)
    append(runtime, 120)
    with UnitOfWork(runtime) as uow:
        vault.erase_subject(uow, subject, ADMIN, "pipl_deletion")
        uow.commit()
    with UnitOfWork(runtime, read_only=True) as uow:
        assert vault.reveal(uow, rid) is None
        assert vault.find(uow, "resident_id", RESIDENT_ID) == []
    report = verify_log(runtime, deep=True)
    assert report.ok, report.problem
    with UnitOfWork(runtime, read_only=True) as uow:
        actions = [bytes(d) for _s, d, _c in uow.oplog.entries(action="subject.erased")]
    assert len(actions) == 1
    with UnitOfWork(runtime) as uow, pytest.raises(ConflictError):
        vault.put(uow, subject, "phone", PHONE)


def test_the_log_refuses_an_identifier_in_plaintext() -> None:
    with pytest.raises(ValueError, match=r"details\.note") as caught:
        LogRecord(
            "holder.registered",
            ADMIN,
            Subject(account_id="acc_1"),
            details={"note": f"call {PHONE[3:]} back"},
        )
    assert PHONE[3:] not in str(caught.value)
