"""Registering accounts (holder identity through the vault) and reading them back."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Row, insert, select

from thawline.adapters.db.schema import account
from thawline.domain import identity
from thawline.domain.errors import ConflictError, InvalidInputError, NotFoundError
from thawline.oplog.entry import Actor, LogRecord, Subject
from thawline.services import links, vault
from thawline.services.unit_of_work import UnitOfWork

KYC_LEVELS = ("none", "basic", "full")
LANGUAGES = ("zh-CN", "en")


@dataclass(frozen=True, slots=True)
class RegisterAccount:
    """Command: register an account and its holder."""

    account_id: str
    holder_name: str
    resident_id: str | None = None
    phone: str | None = None
    email: str | None = None
    bank_cards: tuple[str, ...] = ()
    kyc_level: str = "none"
    vip_tier: int = 0
    language: str = "zh-CN"
    integrator: str = "unknown"


@dataclass(frozen=True, slots=True)
class AccountView:
    """An account as services see it (identifiers stay in the vault)."""

    id: str
    integrator: str
    holder_subject_id: str
    kyc_level: str
    vip_tier: int
    language: str
    created_at: datetime
    identity_refs: dict[str, list[str]] = field(default_factory=dict)
    probation_until: datetime | None = None


def _normalised(cmd: RegisterAccount) -> dict[str, list[str]]:
    if cmd.kyc_level not in KYC_LEVELS:
        raise InvalidInputError(f"kyc_level must be one of {', '.join(KYC_LEVELS)}", field="kyc_level")
    if cmd.language not in LANGUAGES:
        raise InvalidInputError(f"language must be one of {', '.join(LANGUAGES)}", field="language")
    if not 0 <= cmd.vip_tier <= 9:
        raise InvalidInputError("vip_tier must be 0-9", field="vip_tier")
    if not cmd.holder_name.strip():
        raise InvalidInputError("the holder's name is required", field="holder.name")
    values: dict[str, list[str]] = {"name": [cmd.holder_name.strip()]}
    if cmd.resident_id:
        values["resident_id"] = [identity.resident_id(cmd.resident_id)]
    if cmd.phone:
        values["phone"] = [identity.phone(cmd.phone)]
    if cmd.email:
        values["email"] = [identity.email(cmd.email)]
    if cmd.bank_cards:
        values["bank_card"] = [
            identity.bank_card(c, field=f"holder.bank_cards[{i}]") for i, c in enumerate(cmd.bank_cards)
        ]
    return values


def _digest(uow: UnitOfWork, cmd: RegisterAccount, values: dict[str, list[str]]) -> bytes:
    """A keyed hash of everything registered, so a replay can be told from a conflicting request."""
    key = vault.derive_keys(uow.runtime.vault_master_key).index_key
    payload = orjson.dumps(
        {"v": values, "kyc": cmd.kyc_level, "vip": cmd.vip_tier, "lang": cmd.language},
        option=orjson.OPT_SORT_KEYS,
    )
    return hmac.new(key, payload, hashlib.sha256).digest()


def register(uow: UnitOfWork, cmd: RegisterAccount, actor: Actor) -> tuple[AccountView, bool]:
    """Register an account; a replay of the same registration returns it unchanged (created=False)."""
    values = _normalised(cmd)
    digest = _digest(uow, cmd, values)
    existing = uow.conn.execute(select(account).where(account.c.id == cmd.account_id)).first()
    if existing is not None:
        if not hmac.compare_digest(bytes(existing.identity_digest), digest):
            raise ConflictError(f"account {cmd.account_id} is already registered with different details")
        return _view(existing), False
    subject_id = vault.create_subject(uow)
    refs = {kind: [vault.put(uow, subject_id, kind, v) for v in vs] for kind, vs in values.items()}
    now = uow.runtime.clock.now()
    uow.conn.execute(
        insert(account).values(
            id=cmd.account_id,
            integrator=cmd.integrator,
            holder_subject_id=subject_id,
            identity_refs=orjson.dumps(refs).decode(),
            identity_digest=digest,
            kyc_level=cmd.kyc_level,
            vip_tier=cmd.vip_tier,
            language=cmd.language,
            created_at=now,
        )
    )
    uow.mark_changed()
    # Phones and cards link accounts that share them (by keyed hash, never the value).
    index_keys = vault.derive_keys(uow.runtime.vault_master_key)
    links.record(
        uow,
        (
            (kind, vault.blind_index(index_keys, kind, v).hex(), cmd.account_id, now)
            for kind in ("phone", "bank_card")
            for v in values.get(kind, [])
        ),
    )
    uow.record(
        LogRecord(
            action="account.registered",
            actor=actor,
            subject=Subject(account_id=cmd.account_id, ref=f"subject:{subject_id}"),
            state_after={"status": "active", "kyc_level": cmd.kyc_level, "vip_tier": cmd.vip_tier},
            details={"identity_refs": refs},
        )
    )
    row = uow.conn.execute(select(account).where(account.c.id == cmd.account_id)).one()
    return _view(row), True


def get(uow: UnitOfWork, account_id: str) -> AccountView:
    """One account, or NotFoundError."""
    row = uow.conn.execute(select(account).where(account.c.id == account_id)).first()
    if row is None:
        raise NotFoundError(f"account {account_id} is not registered")
    return _view(row)


def _view(r: Row[Any]) -> AccountView:
    return AccountView(
        id=r.id,
        integrator=r.integrator,
        holder_subject_id=r.holder_subject_id,
        kyc_level=r.kyc_level,
        vip_tier=r.vip_tier,
        language=r.language,
        created_at=r.created_at,
        identity_refs=orjson.loads(r.identity_refs),
        probation_until=r.probation_until,
    )
