"""The personal-data vault: identifiers encrypted with a key per data subject, matched by keyed hash.

Personal identifiers never enter the operation log; the log refers to vault ids. Erasing a subject
destroys its data key (crypto-shredding): its values become unreadable, its blind indexes are
dropped, and the log, which never held them, still verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import insert, select, update

from thawline.adapters.db.schema import vault_subject, vault_value
from thawline.domain.errors import ConflictError, InvalidInputError, NotFoundError
from thawline.oplog.entry import Actor, LogRecord, Subject
from thawline.services.unit_of_work import UnitOfWork

KINDS = frozenset({"name", "resident_id", "phone", "bank_card", "email", "address", "document"})


@dataclass(frozen=True, slots=True)
class VaultKeys:
    """Keys derived from the master key: one wraps subject keys, one makes blind indexes."""

    kek: bytes
    index_key: bytes
    otp_key: bytes  # keys the hashes of one-time codes
    secrets_key: bytes  # seals operational secrets: webhook signing secrets, codes waiting in the outbox


@lru_cache(maxsize=8)
def derive_keys(master: bytes) -> VaultKeys:
    """Derive the vault's working keys from the master key (HKDF-SHA256)."""

    def hkdf(info: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)

    return VaultKeys(
        kek=hkdf(b"thawline/vault/kek/v1"),
        index_key=hkdf(b"thawline/vault/blind-index/v1"),
        otp_key=hkdf(b"thawline/otp/v1"),
        secrets_key=hkdf(b"thawline/secrets/v1"),
    )


def blind_index(keys: VaultKeys, kind: str, value: str) -> bytes:
    """Keyed hash of a normalised value, for equality matching without decrypting."""
    return hmac.new(keys.index_key, kind.encode() + b"\x00" + value.encode(), hashlib.sha256).digest()


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
    nonce = os.urandom(12)
    return nonce, AESGCM(key).encrypt(nonce, plaintext, aad)


def seal_secret(keys: VaultKeys, plaintext: bytes, context: str) -> bytes:
    """AES-256-GCM under the secrets key; ``context`` (e.g. the row id) is bound as associated data."""
    nonce, ciphertext = _seal(keys.secrets_key, plaintext, context.encode())
    return nonce + ciphertext


def open_secret(keys: VaultKeys, sealed: bytes, context: str) -> bytes:
    """Undo :func:`seal_secret`; ConflictError if the value was altered or moved to another row."""
    try:
        return AESGCM(keys.secrets_key).decrypt(sealed[:12], sealed[12:], context.encode())
    except InvalidTag as exc:
        raise ConflictError(f"sealed secret for {context} fails authentication") from exc


def _value_aad(value_id: str, subject_id: str, kind: str) -> bytes:
    # Binds the ciphertext to its row: moving it to another row or subject makes it undecryptable.
    return f"thawline/vault/value/v1|{value_id}|{subject_id}|{kind}".encode()


def create_subject(uow: UnitOfWork) -> str:
    """Create a data subject with a fresh data key; returns its id."""
    keys = derive_keys(uow.runtime.vault_master_key)
    subject_id = "ds_" + secrets.token_hex(8)
    nonce, wrapped = _seal(
        keys.kek, secrets.token_bytes(32), f"thawline/vault/subject/v1|{subject_id}".encode()
    )
    uow.conn.execute(
        insert(vault_subject).values(
            id=subject_id, wrapped_key=nonce + wrapped, created_at=uow.runtime.clock.now()
        )
    )
    uow.mark_changed()
    return subject_id


def _subject_key(uow: UnitOfWork, subject_id: str) -> bytes | None:
    row = uow.conn.execute(
        select(vault_subject.c.wrapped_key).where(vault_subject.c.id == subject_id)
    ).first()
    if row is None:
        raise NotFoundError(f"data subject {subject_id} does not exist")
    if row.wrapped_key is None:
        return None
    blob = bytes(row.wrapped_key)
    keys = derive_keys(uow.runtime.vault_master_key)
    aad = f"thawline/vault/subject/v1|{subject_id}".encode()
    return AESGCM(keys.kek).decrypt(blob[:12], blob[12:], aad)


def put(uow: UnitOfWork, subject_id: str, kind: str, value: str) -> str:
    """Encrypt and store one identifier of a subject; returns the vault value id."""
    if kind not in KINDS:
        raise InvalidInputError(f"unknown vault kind {kind!r}", field="kind")
    key = _subject_key(uow, subject_id)
    if key is None:
        raise ConflictError(f"data subject {subject_id} has been erased")
    value_id = "pv_" + secrets.token_hex(8)
    nonce, ciphertext = _seal(key, value.encode(), _value_aad(value_id, subject_id, kind))
    uow.conn.execute(
        insert(vault_value).values(
            id=value_id,
            subject_id=subject_id,
            kind=kind,
            blind_index=blind_index(derive_keys(uow.runtime.vault_master_key), kind, value),
            nonce=nonce,
            ciphertext=ciphertext,
            created_at=uow.runtime.clock.now(),
        )
    )
    uow.mark_changed()
    return value_id


def reveal(uow: UnitOfWork, value_id: str) -> str | None:
    """Decrypt a value; None once its subject was erased."""
    row = uow.conn.execute(select(vault_value).where(vault_value.c.id == value_id)).first()
    if row is None:
        raise NotFoundError(f"vault value {value_id} does not exist")
    key = _subject_key(uow, row.subject_id)
    if key is None:
        return None
    aad = _value_aad(row.id, row.subject_id, row.kind)
    try:
        return AESGCM(key).decrypt(bytes(row.nonce), bytes(row.ciphertext), aad).decode()
    except InvalidTag as exc:
        raise ConflictError(f"vault value {value_id} fails authentication (moved or altered)") from exc


def find(uow: UnitOfWork, kind: str, value: str) -> list[tuple[str, str]]:
    """(value id, subject id) of every stored value equal to ``value``."""
    digest = blind_index(derive_keys(uow.runtime.vault_master_key), kind, value)
    rows = uow.conn.execute(
        select(vault_value.c.id, vault_value.c.subject_id).where(
            vault_value.c.blind_index == digest, vault_value.c.kind == kind
        )
    )
    return [(r.id, r.subject_id) for r in rows]


def erase_subject(uow: UnitOfWork, subject_id: str, actor: Actor, reason: str) -> None:
    """Crypto-shred a subject: destroy its data key and blind indexes, and record that it happened."""
    row = uow.conn.execute(select(vault_subject).where(vault_subject.c.id == subject_id)).first()
    if row is None:
        raise NotFoundError(f"data subject {subject_id} does not exist")
    if row.erased_at is not None:
        raise ConflictError(f"data subject {subject_id} is already erased")
    now = uow.runtime.clock.now()
    uow.conn.execute(
        update(vault_subject).where(vault_subject.c.id == subject_id).values(wrapped_key=None, erased_at=now)
    )
    uow.conn.execute(
        update(vault_value).where(vault_value.c.subject_id == subject_id).values(blind_index=None)
    )
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="subject.erased",
            actor=actor,
            subject=Subject(ref=f"subject:{subject_id}"),
            reason_codes=(reason,),
            state_before={"erased": False},
            state_after={"erased": True},
        )
    )
